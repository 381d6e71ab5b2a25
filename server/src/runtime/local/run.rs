//! One sandboxed process tree from start to end, as builds, one-off commands and instances all
//! run it: spawn the prepared command in its unit, pump its output into the logs, feed its
//! standard input, and at the end kill whatever it left in its unit, drain its output and
//! remove the unit — answering whether the kernel killed something for lack of memory.

use super::{
    isolation::{Prepared, Unit},
    pump::pump,
    Local,
};
use crate::{
    logs::LogSink,
    runtime::{
        sandbox::{network::NetLease, Launch},
        RuntimeError,
    },
};
use std::{sync::Arc, time::Duration};
use tokio::{io::AsyncWriteExt, process::Child, task::JoinHandle};

pub(super) struct Running {
    pub child: Child,
    pub unit: Arc<Unit>,
    /// The host pid of the process spawned (bubblewrap's outer process in the sandbox).
    pub pid: i32,
    network: Option<NetLease>,
    pumps: Vec<JoinHandle<()>>,
    finished: bool,
}

/// A run dropped before `finish` (its future was cancelled: a build past its deadline, a
/// pipeline that stopped) still leaves nothing behind.
impl Drop for Running {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (unit, network) = (self.unit.clone(), self.network.take());
        std::thread::spawn(move || {
            unit.kill_all();
            unit.remove();
            drop(network);
        });
    }
}

impl Local {
    /// Starts `launch` with its stdout and stderr going to `out` and `err`, and `stdin` (if
    /// any) written to it.
    pub(super) async fn run(&self, launch: Launch, out: LogSink, err: LogSink, stdin: Option<Vec<u8>>) -> Result<Running, RuntimeError> {
        let Prepared { mut command, unit, network } = self.isolation.prepare(launch, None).await?;
        let unit = Arc::new(unit);
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                let u = unit.clone();
                let _ = tokio::task::spawn_blocking(move || u.remove()).await;
                return Err(RuntimeError::internal("Could not start the process.", e));
            }
        };
        let pid = child.id().unwrap_or(0) as i32;
        unit.started(pid);
        if let (Some(bytes), Some(mut input)) = (stdin, child.stdin.take()) {
            tokio::spawn(async move {
                let _ = input.write_all(&bytes).await;
            });
        }
        let mut pumps = Vec::new();
        if let Some(s) = child.stdout.take() {
            pumps.push(tokio::spawn(pump(s, out)));
        }
        if let Some(s) = child.stderr.take() {
            pumps.push(tokio::spawn(pump(s, err)));
        }
        Ok(Running { child, unit, pid, network, pumps, finished: false })
    }
}

impl Running {
    /// After its main process ended (or was stopped): everything left in the unit is killed,
    /// the output drained, the unit removed and the network released. Answers whether the
    /// kernel killed a process of the unit for going over its memory limit.
    pub async fn finish(mut self) -> bool {
        self.finished = true;
        let killer = self.unit.clone();
        let _ = tokio::task::spawn_blocking(move || killer.kill_all()).await;
        let _ = self.child.wait().await;
        for pump in self.pumps.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
        }
        let oom = self.unit.oom_kills() > 0;
        let remover = self.unit.clone();
        let _ = tokio::task::spawn_blocking(move || remover.remove()).await;
        drop(self.network.take());
        oom
    }
}
