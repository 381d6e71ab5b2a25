//! An instance's output: its pod's log, followed through the pod log API with the kubelet's
//! timestamps. When the container restarts, or the pod is replaced, the log is opened again
//! from the last line's time, and the lines already stored (the API's `sinceTime` has whole
//! seconds) are skipped, so no line is stored twice.

use super::pods::{Observed, PodState};
use crate::logs::LogSink;
use futures_util::{AsyncBufReadExt, StreamExt};
use k8s_openapi::{api::core::v1::Pod, jiff::Timestamp};
use kube::{api::LogParams, Api, Client};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// `2026-11-30T07:00:00.123456789Z the line` → its time and the line.
pub fn split(line: &str) -> (Option<Timestamp>, &str) {
    match line.split_once(' ') {
        Some((at, rest)) => match at.parse::<Timestamp>() {
            Ok(at) => (Some(at), rest),
            Err(_) => (None, line),
        },
        None => (line.parse::<Timestamp>().ok(), if line.parse::<Timestamp>().is_ok() { "" } else { line }),
    }
}

fn has_run(state: &PodState) -> bool {
    matches!(state, PodState::Running { .. } | PodState::BackingOff { .. } | PodState::Ended { .. })
}

/// Follows the pod of `pod` into `sink` until `cancel`, or until a one-off run's pod ended and
/// its whole log is stored.
pub async fn follow(client: Client, mut pod: watch::Receiver<Observed>, sink: LogSink, cancel: CancellationToken) {
    let mut last: Option<Timestamp> = None;
    loop {
        let (namespace, name, ended) = loop {
            {
                let now = pod.borrow_and_update();
                if let (Some(ns), Some(name), true) = (&now.namespace, &now.pod, has_run(&now.state)) {
                    break (ns.clone(), name.clone(), matches!(now.state, PodState::Ended { .. }));
                }
            }
            tokio::select! {
                changed = pod.changed() => if changed.is_err() { return },
                _ = cancel.cancelled() => return,
            }
        };
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let params = LogParams { follow: !ended, timestamps: true, since_time: last, ..Default::default() };
        match api.log_stream(&name, &params).await {
            Ok(stream) => {
                let mut lines = std::pin::pin!(stream.lines());
                loop {
                    let line = tokio::select! {
                        line = lines.next() => line,
                        _ = cancel.cancelled() => return,
                    };
                    let Some(Ok(line)) = line else { break };
                    let (at, text) = split(&line);
                    if let (Some(at), Some(before)) = (at, last) {
                        if at <= before {
                            continue;
                        }
                    }
                    match at {
                        Some(at) => {
                            last = Some(at);
                            let at = chrono::DateTime::from_timestamp(at.as_second(), at.subsec_nanosecond() as u32).unwrap_or_else(chrono::Utc::now);
                            sink.line_at(text, at).await;
                        }
                        None => sink.line(text).await,
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, pod = %name, "opening a pod's log"),
        }
        if ended {
            return;
        }
        // The log ends with the container's run: wait for the next one (or the pod's next
        // state), a moment at most.
        tokio::select! {
            _ = pod.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_is_split_into_the_kubelets_time_and_the_line() {
        let (at, text) = split("2026-11-30T07:00:00.123456789Z listening on :3000");
        assert_eq!(at.unwrap().to_string(), "2026-11-30T07:00:00.123456789Z");
        assert_eq!(text, "listening on :3000");
        assert_eq!(split("no time here"), (None, "no time here"));
        let (at, text) = split("2026-11-30T07:00:01Z");
        assert!(at.is_some());
        assert_eq!(text, "");
    }
}
