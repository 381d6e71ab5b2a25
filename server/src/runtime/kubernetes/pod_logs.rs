//! An instance's output: its pod's log, followed through the pod log API with the kubelet's
//! timestamps. When the container restarts, or the pod is replaced, the log is opened again
//! from the last line's time, and the lines already stored (the API's `sinceTime` has whole
//! seconds) are skipped, so no line is stored twice.

use super::pods::{Observed, PodState};
use crate::logs::{LogSink, MAX_LINE};
use futures_util::{AsyncBufRead, AsyncBufReadExt};
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

/// The longest line kept: the kubelet's time, a space, and what the sink keeps of a line.
const KEPT: usize = 40 + MAX_LINE;

/// The next line of `reader`, at most [`KEPT`] bytes of it: the rest of a longer line is read
/// and dropped, never held (the kubelet joins a container's partial lines, so a line may be as
/// long as its output). `None` at the end.
pub async fn next_line<R: AsyncBufRead + Unpin>(reader: &mut R, line: &mut Vec<u8>) -> Option<()> {
    line.clear();
    let mut read_any = false;
    loop {
        let buf = reader.fill_buf().await.ok()?;
        if buf.is_empty() {
            return read_any.then_some(());
        }
        read_any = true;
        let (chunk, ends) = match buf.iter().position(|b| *b == b'\n') {
            Some(at) => (&buf[..at], Some(at + 1)),
            None => (buf, None),
        };
        let room = KEPT.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = ends.unwrap_or(buf.len());
        reader.consume_unpin(used);
        if ends.is_some() {
            return Some(());
        }
    }
}

/// Follows the pod of `pod` into `sink` until `cancel`, or until a one-off run's pod ended and
/// its whole log is stored. `since`: where the log was already read to (an instance another
/// process followed: lines from before it was taken back are not read again).
pub async fn follow(client: Client, mut pod: watch::Receiver<Observed>, sink: LogSink, cancel: CancellationToken, since: Option<Timestamp>) {
    let mut last: Option<Timestamp> = since;
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
                let mut stream = std::pin::pin!(stream);
                let mut bytes = Vec::new();
                loop {
                    let more = tokio::select! {
                        more = next_line(&mut stream, &mut bytes) => more,
                        _ = cancel.cancelled() => return,
                    };
                    if more.is_none() {
                        break;
                    }
                    let line = String::from_utf8_lossy(&bytes);
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
        // The log ends with the container's run: open it again when the pod changes (its next
        // run, a new pod), or after a while should the connection alone have ended.
        tokio::select! {
            _ = pod.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_line_longer_than_kept_is_cut_without_being_held() {
        let long = "x".repeat(KEPT * 3);
        let text = format!("first\n{long}\nlast");
        let mut reader = futures_util::io::BufReader::with_capacity(4096, futures_util::io::Cursor::new(text.into_bytes()));
        let mut line = Vec::new();
        let mut lines = Vec::new();
        while next_line(&mut reader, &mut line).await.is_some() {
            assert!(line.capacity() < KEPT * 2, "the long line was never held whole");
            lines.push(line.len());
        }
        assert_eq!(lines, [5, KEPT, 4]);
    }

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
