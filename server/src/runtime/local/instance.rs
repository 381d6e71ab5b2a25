//! One running instance: started in its sandbox, supervised (restarted with back-off per its
//! policy), probed for readiness, measured, and stopped — SIGTERM to its main process, then
//! after the grace period SIGKILL to everything its unit holds. A sandboxed instance can also
//! be let go of, still running (`monitored.rs`), and taken back by a later platform process.

use super::{isolation::Unit, monitored::Monitored, run::Running, Local};
use crate::{
    logs::LogSink,
    runtime::{
        net,
        sandbox::{network::NetLease, Launch},
        InstanceEvent, InstanceSpec,
    },
};
use app::{deployments::Stream, infra::live::Endpoint, services::RestartPolicy};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

/// How long a stopped process has between SIGTERM and SIGKILL.
pub(super) const GRACE: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process up this long has its back-off reset.
const STABLE: Duration = Duration::from_secs(60);
/// A process that neither listens nor has a health check counts as ready once it has run this long.
const WORKER_SETTLE: Duration = Duration::from_secs(3);

/// The wait before each restart: 1 s, doubling up to 30 s; a process that stayed up for a
/// minute starts again from 1 s.
#[derive(Debug)]
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_secs(1))
    }
}

impl Backoff {
    /// The wait before restarting a process that was up for `up_for`.
    fn next(&mut self, up_for: Duration) -> Duration {
        if up_for > STABLE {
            self.0 = Duration::from_secs(1);
        }
        let wait = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        wait
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum State {
    Running { since: Instant },
    Restarting,
    Gone(String),
}

pub(super) struct Ctl {
    pub spec: InstanceSpec,
    pub endpoint: Endpoint,
    /// The network stays up while the instance exists.
    pub _network: Option<NetLease>,
    pub stop: CancellationToken,
    /// Let go of the instance, leaving it running (a sandboxed one; others stop).
    pub detach: CancellationToken,
    pub state: watch::Sender<State>,
    pub done: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The unit of the current run, for measuring it.
    pub unit: Mutex<Option<Arc<Unit>>>,
}

/// What the supervisor runs each time.
pub(super) struct Plan {
    pub launch: Launch,
    pub memory_mb: i32,
}

/// One run of an instance's process tree: with its output through the platform (unsandboxed,
/// gone with the platform), or kept by a monitor (sandboxed, able to outlive it).
pub(super) enum Proc {
    Piped(Running),
    Monitored(Monitored),
}

/// How a run ended: its exit code if known, and in words.
struct Exit {
    code: Option<i32>,
    how: String,
}

impl Proc {
    fn pid(&self) -> i32 {
        match self {
            Proc::Piped(r) => r.pid,
            Proc::Monitored(m) => m.pid,
        }
    }

    fn unit(&self) -> Arc<Unit> {
        match self {
            Proc::Piped(r) => r.unit.clone(),
            Proc::Monitored(m) => m.unit.clone(),
        }
    }

    async fn exited(&mut self) -> Exit {
        match self {
            Proc::Piped(r) => {
                let status = r.child.wait().await.ok();
                Exit { code: status.and_then(|s| s.code()), how: describe_exit(status.as_ref()) }
            }
            Proc::Monitored(m) => {
                let code = m.exited().await;
                Exit { code, how: code.map_or_else(|| "The process ended".to_string(), |c| format!("The process exited with code {c}")) }
            }
        }
    }

    async fn finish(self) -> bool {
        match self {
            Proc::Piped(r) => r.finish().await,
            Proc::Monitored(m) => m.finish().await,
        }
    }
}

enum Outcome {
    Exited(Exit),
    Stop,
    Detach,
}

impl Local {
    /// Runs the instance (or follows `adopted`, a run taken back) until it is stopped, let go
    /// of, or ends for good per its restart policy.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn supervise(
        self: Arc<Self>,
        ctl: Arc<Ctl>,
        plan: Plan,
        logs: LogSink,
        events: mpsc::UnboundedSender<InstanceEvent>,
        first: oneshot::Sender<Result<(), String>>,
        mut adopted: Option<Monitored>,
    ) {
        let id = ctl.spec.instance_id;
        let replica = Some(ctl.spec.replica);
        let policy = ctl.spec.spec.restart_policy;
        let max = ctl.spec.spec.restart_max.max(0) as u32;
        let mut first = Some(first);
        let mut restarts = 0u32;
        let mut backoff = Backoff::default();
        let gone = |reason: String, code: Option<i32>, stopped: bool| {
            ctl.state.send_replace(State::Gone(reason.clone()));
            let _ = events.send(InstanceEvent::Exited { instance_id: id, exit_code: code, reason, stopped });
        };
        loop {
            let run = match adopted.take() {
                Some(m) => Ok(Proc::Monitored(m)),
                None => self.launch(&ctl, &plan, &logs, replica).await,
            };
            let mut proc = match run {
                Ok(proc) => proc,
                Err(e) => {
                    let reason = e.shown();
                    logs.system(&reason).await;
                    if let Some(f) = first.take() {
                        let _ = f.send(Err(reason.clone()));
                    }
                    gone(reason, None, false);
                    return;
                }
            };
            let pid = proc.pid();
            *ctl.unit.lock().unwrap_or_else(|e| e.into_inner()) = Some(proc.unit());
            let started = Instant::now();
            ctl.state.send_replace(State::Running { since: started });
            let _ = events.send(InstanceEvent::Started { instance_id: id, pid: pid as u32 });
            if let Some(f) = first.take() {
                let _ = f.send(Ok(()));
            }
            let outcome = tokio::select! {
                e = proc.exited() => Outcome::Exited(e),
                _ = ctl.stop.cancelled() => Outcome::Stop,
                _ = ctl.detach.cancelled() => Outcome::Detach,
            };
            let proc = match (outcome, proc) {
                (Outcome::Detach, Proc::Monitored(m)) => {
                    *ctl.unit.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    m.detach().await;
                    ctl.state.send_replace(State::Gone("Let go of, still running".into()));
                    return;
                }
                (Outcome::Exited(exit), proc) => Ok((exit, proc)),
                // Stopped, or let go of while it cannot outlive the platform: stopped.
                (_, mut proc) => {
                    proc.unit().terminate(pid);
                    if tokio::time::timeout(GRACE, proc.exited()).await.is_err() {
                        logs.system(&format!("Still running {}s after SIGTERM: killed", GRACE.as_secs())).await;
                    }
                    Err(proc)
                }
            };
            // Whatever the process left behind (daemons, orphans) ends with it.
            *ctl.unit.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let (exit, proc) = match proc {
                Ok(ended) => ended,
                Err(stopped) => {
                    stopped.finish().await;
                    gone("Stopped".into(), None, true);
                    return;
                }
            };
            let oom = proc.finish().await;
            let code = exit.code;
            let how = if oom { format!("out of memory ({} MB limit)", plan.memory_mb) } else { exit.how };
            let restart = match policy {
                RestartPolicy::Never => false,
                RestartPolicy::OnFailure => code != Some(0) && restarts < max,
                RestartPolicy::Always => true,
            };
            let leaving = ctl.stop.is_cancelled() || ctl.detach.is_cancelled();
            if !restart || leaving {
                let reason = if restarts > 0 { format!("{how} after {restarts} restarts") } else { how };
                logs.system(&reason).await;
                gone(reason, code, leaving);
                return;
            }
            restarts += 1;
            let wait = backoff.next(started.elapsed());
            logs.system(&format!("{how}; restarting in {}s (restart {restarts})", wait.as_secs())).await;
            ctl.state.send_replace(State::Restarting);
            let _ = events.send(InstanceEvent::Restarting { instance_id: id, exit_code: code, restart_in: wait });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = ctl.stop.cancelled() => {
                    gone("Stopped".into(), code, true);
                    return;
                }
                _ = ctl.detach.cancelled() => {
                    gone("Stopped".into(), code, true);
                    return;
                }
            }
        }
    }

    /// One run of the instance: kept by a monitor in the sandbox, through pipes without it.
    async fn launch(&self, ctl: &Ctl, plan: &Plan, logs: &LogSink, replica: Option<i32>) -> Result<Proc, crate::runtime::RuntimeError> {
        let (out, err) = (logs.stream(Stream::Stdout, replica), logs.stream(Stream::Stderr, replica));
        if self.isolation.sandboxed() {
            let spec = &ctl.spec;
            let m = self.spawn_monitored(plan.launch.clone(), spec.instance_id, spec.deployment_id, ctl.endpoint.addr, (out, err)).await?;
            Ok(Proc::Monitored(m))
        } else {
            Ok(Proc::Piped(self.run(plan.launch.clone(), out, err, None).await?))
        }
    }

    pub(super) async fn wait_ready(&self, ctl: Arc<Ctl>, deadline: Instant) -> Result<(), String> {
        let s = &ctl.spec.spec;
        let is_db = s.source_kind == app::services::SourceKind::Database;
        let health = s.healthcheck_path.clone().filter(|_| !is_db);
        let worker_ok = health.is_none() && s.port.is_none() && !is_db;
        let mut state = ctl.state.subscribe();
        let mut last = String::from("no answer yet");
        loop {
            let current = state.borrow_and_update().clone();
            match current {
                State::Gone(reason) => return Err(format!("The process ended before it was ready: {reason}")),
                State::Running { since } => match &health {
                    Some(path) => match http_status(&ctl.endpoint, path).await {
                        Ok(code) if (200..400).contains(&code) => return Ok(()),
                        Ok(code) => last = format!("it answered {code}"),
                        Err(e) => last = e,
                    },
                    None => {
                        if net::connect(&ctl.endpoint).await.is_ok() {
                            return Ok(());
                        }
                        if worker_ok && since.elapsed() >= WORKER_SETTLE {
                            return Ok(());
                        }
                    }
                },
                State::Restarting => {}
            }
            if Instant::now() >= deadline {
                let secs = s.healthcheck_timeout_secs;
                return Err(match &health {
                    Some(path) => format!("The health check GET {path} did not succeed within {secs}s ({last})."),
                    None => format!("The process did not listen on its PORT ({}) within {secs}s.", ctl.endpoint.addr.port()),
                });
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), state.changed()).await;
        }
    }
}

fn describe_exit(status: Option<&std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("The process exited with code {c}"),
            (None, Some(sig)) => format!("The process was killed by signal {sig}"),
            _ => "The process ended".into(),
        },
        None => "The process ended".into(),
    }
}

/// The status code of `GET path` (HTTP/1.1, no body read).
async fn http_status(ep: &Endpoint, path: &str) -> Result<u16, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = net::connect(ep).await.map_err(|_| "not listening".to_string())?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: roundhouse-health\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut head = [0u8; 64];
        let n = s.read(&mut head).await.map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&head[..n]);
        line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| "not an HTTP answer".to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), attempt).await.map_err(|_| "timed out".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_doubling_to_thirty_seconds_and_start_over_after_a_minute_up() {
        let mut b = Backoff::default();
        let crashing = Duration::from_millis(200);
        let waits: Vec<u64> = (0..7).map(|_| b.next(crashing).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.next(Duration::from_secs(61)).as_secs(), 1, "up for a minute: from 1 s again");
        assert_eq!(b.next(crashing).as_secs(), 2);
    }
}
