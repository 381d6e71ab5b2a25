//! Sandboxed instances that outlive the platform process. Each run has a folder of its own,
//! `<runtime>/instances/<instance id>/` (root's, mode 0700), holding:
//!
//! - the frames its monitor keeps (`monitor.rs`: its output, its exit code) and the cursor of
//!   what is stored of them;
//! - `record.json`: what a later platform process needs to take it back — its unit, its
//!   process, where it serves;
//! - `lock`: held (`flock`) by the platform process that follows it, so that two never follow
//!   the same instance: a second one waits until the first let go (or died).
//!
//! A run is *followed*: its frames go into the deployment's logs and its exit is reported. It
//! can be *detached* — followed no more, left running — and *attached* again by any platform
//! process on this machine.

use super::{
    isolation::Unit,
    monitor::{Frame, Tail},
    Local,
};
use crate::{
    logs::LogSink,
    runtime::{
        procfs,
        sandbox::{network::NetLease, Launch},
        RuntimeError,
    },
};
use serde::{Deserialize, Serialize};
use std::{
    fs::{self, File, OpenOptions},
    io,
    net::SocketAddr,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::fs::{DirBuilderExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, OnceLock},
    time::Duration,
};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What a later platform process needs to take an instance back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record {
    pub instance_id: Uuid,
    /// This run of the instance: the key of its stored position (`instance_log_cursors`).
    #[serde(default)]
    pub run_id: Uuid,
    pub deployment_id: Uuid,
    pub environment_id: Uuid,
    pub unit: String,
    /// bubblewrap's outer process, the one `Unit::terminate` reaches the instance through.
    pub pid: i32,
    pub monitor_pid: i32,
    /// The network namespace it runs in, and where it listens there.
    pub network: Option<String>,
    pub addr: SocketAddr,
}

/// How long attaching waits for another platform process to let go of an instance.
const ATTACH_WAIT: Duration = Duration::from_secs(30);
/// How long following lets go of an instance at most (its last lines stored meanwhile).
const DETACH_WAIT: Duration = Duration::from_secs(5);
/// How soon a follower with nothing new looks again: at first, and at most.
const POLL: Duration = Duration::from_millis(20);
const POLL_IDLE: Duration = Duration::from_millis(80);
/// About this many bytes of frames are read, handed to the logs and stored at a time.
const BATCH: usize = 256 * 1024;

/// One followed run of a sandboxed instance.
pub(super) struct Monitored {
    pub unit: Arc<Unit>,
    pub pid: i32,
    monitor_pid: i32,
    dir: PathBuf,
    /// The exit code once its frame was read (`Some(None)`: it ended, code unknown).
    exit: watch::Receiver<Option<Option<i32>>>,
    /// The exit status the platform saw itself, when it is bubblewrap's parent.
    reaped: Arc<OnceLock<i32>>,
    follower: JoinHandle<()>,
    stop_following: CancellationToken,
    network: Option<NetLease>,
    _lock: File,
    run: Uuid,
    /// Where the run's stored position is forgotten once it ended.
    db: Option<sqlx::PgPool>,
}

impl Local {
    pub(super) fn instances_dir(&self) -> PathBuf {
        self.root.join("instances")
    }

    fn instance_dir(&self, id: Uuid) -> PathBuf {
        self.instances_dir().join(id.to_string())
    }

    /// The records of instance folders, with the folders: `None` where a folder holds no
    /// readable record (a run that was being set up).
    pub(super) fn records(&self) -> Vec<(PathBuf, Option<Record>)> {
        fs::read_dir(self.instances_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<Uuid>().is_ok()))
            .map(|e| {
                let record = fs::read(e.path().join("record.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
                (e.path(), record)
            })
            .collect()
    }

    /// Starts `launch` in its sandbox with a monitor keeping its output, and follows it.
    pub(super) async fn spawn_monitored(&self, launch: Launch, instance_id: Uuid, deployment_id: Uuid, addr: SocketAddr, logs: (LogSink, LogSink)) -> Result<Monitored, RuntimeError> {
        let dir = self.instance_dir(instance_id);
        let internal = |what: &str, e: io::Error| RuntimeError::internal("Could not start the instance's monitor.", format!("{what}: {e}"));
        let _ = fs::remove_dir_all(&dir);
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| internal("folder", e))?;
        let lock = lock_file(&dir).map_err(|e| internal("lock", e))?;
        if !try_lock(&lock) {
            return Err(RuntimeError::user("Another process of the platform follows this instance."));
        }
        let (out_r, out_w) = pipe().map_err(|e| internal("pipe", e))?;
        let (err_r, err_w) = pipe().map_err(|e| internal("pipe", e))?;
        let (status_r, status_w) = pipe().map_err(|e| internal("pipe", e))?;
        let monitor = self.spawn_monitor(&dir, [out_r, err_r, status_r]).map_err(|e| internal("spawn", e))?;
        let monitor_pid = monitor.id().unwrap_or(0) as i32;
        reap(monitor, None);

        let environment_id = launch.environment;
        let unit_name = launch.unit.clone();
        let prepared = match self.isolation.prepare(launch, Some(status_w)).await {
            Ok(p) => p,
            Err(e) => {
                // The monitor ends as its pipes close (their write ends are dropped here).
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let super::isolation::Prepared { mut command, unit, network } = prepared;
        // The instance must not end with the platform process: nothing kills it on drop, and
        // its output goes to the monitor, not through the platform.
        command.stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w)).kill_on_drop(false);
        let unit = Arc::new(unit);
        let spawned = super::unless_retired(&self.root, || command.spawn()).unwrap_or_else(|| Err(io::Error::other("the runtime was taken down")));
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let u = unit.clone();
                let _ = tokio::task::spawn_blocking(move || u.remove()).await;
                let _ = fs::remove_dir_all(&dir);
                return Err(RuntimeError::internal("Could not start the process.", e));
            }
        };
        drop(command);
        let pid = child.id().unwrap_or(0) as i32;
        unit.started(pid);
        let reaped = Arc::new(OnceLock::new());
        reap(child, Some(reaped.clone()));
        let run_id = Uuid::new_v4();
        let record = Record {
            instance_id,
            run_id,
            deployment_id,
            environment_id,
            unit: unit_name,
            pid,
            monitor_pid,
            network: network.as_ref().map(|n| n.path().to_string()),
            addr,
        };
        if let Err(e) = write_record(&dir, &record) {
            // Nothing could take it back: it does not run on unrecorded.
            let u = unit.clone();
            let _ = tokio::task::spawn_blocking(move || {
                u.kill_all();
                u.remove();
            })
            .await;
            let _ = fs::remove_dir_all(&dir);
            return Err(internal("record", e));
        }
        let mut m = follow(dir, run_id, None, unit, pid, monitor_pid, reaped, network, lock, logs);
        m.db = Some(self.db.clone());
        Ok(m)
    }

    /// Follows again an instance an earlier platform process (or this one, before it let go)
    /// started: `None` when nothing is left of it (its folder is removed then).
    pub(super) async fn attach(&self, record: &Record, logs: (LogSink, LogSink)) -> Result<Option<Monitored>, RuntimeError> {
        let dir = self.instance_dir(record.instance_id);
        let lock = lock_file(&dir).map_err(|e| RuntimeError::internal("Could not take the instance back.", e))?;
        let deadline = tokio::time::Instant::now() + ATTACH_WAIT;
        while !try_lock(&lock) {
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::user("Another process of the platform still follows this instance."));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // One that ended while no platform followed is followed all the same: its last output
        // (a crash's trace) reaches the logs, and its exit is reported as any other.
        let Some(unit) = self.isolation.existing_unit(&record.unit) else {
            self.discard(record).await;
            return Ok(None);
        };
        let network = self.isolation.network(record.environment_id).await?;
        // Exactly after the last line stored (saved with it), whatever the folder's cursor says.
        // A record without a run id (written before runs had one) starts a run of its own,
        // from the folder's cursor.
        let (run, from) = if record.run_id.is_nil() {
            let run = Uuid::new_v4();
            write_record(&dir, &Record { run_id: run, ..record.clone() }).map_err(|e| RuntimeError::internal("Could not take the instance back.", e))?;
            (run, None)
        } else {
            let stored: Option<(i64, i64)> = sqlx::query_as("SELECT segment, \"offset\" FROM instance_log_cursors WHERE run_id = $1")
                .bind(record.run_id)
                .fetch_optional(&self.db)
                .await
                .map_err(|e| RuntimeError::internal("Could not take the instance back.", e))?;
            (record.run_id, stored.map(|(segment, offset)| super::monitor::Position { segment: segment as u64, offset: offset as u64 }))
        };
        let mut m = follow(dir, run, from, Arc::new(unit), record.pid, record.monitor_pid, Arc::new(OnceLock::new()), network, lock, logs);
        m.db = Some(self.db.clone());
        Ok(Some(m))
    }

    /// Ends an instance no one follows (it is not wanted any more, or no longer runs) and
    /// removes its folder.
    pub(super) async fn discard(&self, record: &Record) {
        if let Some(unit) = self.isolation.existing_unit(&record.unit) {
            let unit = Arc::new(unit);
            unit.terminate(record.pid);
            let deadline = tokio::time::Instant::now() + super::instance::GRACE;
            while !unit.is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = tokio::task::spawn_blocking(move || {
                unit.kill_all();
                unit.remove();
            })
            .await;
        }
        let dir = self.instance_dir(record.instance_id);
        end_monitor(record.monitor_pid, &dir);
        let _ = fs::remove_dir_all(dir);
    }

    fn spawn_monitor(&self, dir: &Path, fds: [OwnedFd; 3]) -> io::Result<tokio::process::Child> {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("monitor").arg(dir).env_clear().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let _keep = &fds;
                // Out of the way of 3, 4 and 5 first, then onto them (dup2 clears CLOEXEC).
                let mut high = [0; 3];
                for (i, fd) in raw.iter().enumerate() {
                    high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10);
                    if high[i] < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                for (i, fd) in high.iter().enumerate() {
                    if libc::dup2(*fd, super::monitor::FDS[i]) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd.spawn()
    }
}

impl Monitored {
    /// Waits until the run's main process ended: its exit code, if known.
    pub async fn exited(&mut self) -> Option<i32> {
        loop {
            if let Some(code) = *self.exit.borrow_and_update() {
                return code.or_else(|| self.reaped.get().copied());
            }
            // Written by the monitor at once: an exit is seen however far behind the logs are.
            if let Some(code) = super::monitor::read_exit(&self.dir) {
                return code.or_else(|| self.reaped.get().copied());
            }
            // A monitor that died without a word (killed from outside) ends the run too.
            if !procfs::alive(self.monitor_pid) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Some(code) = *self.exit.borrow() {
                    return code.or_else(|| self.reaped.get().copied());
                }
                return self.reaped.get().copied();
            }
            // The exit frame wakes this at once; the file and the monitor are looked at once a
            // second (they matter only when the logs are far behind, or the monitor died).
            let _ = tokio::time::timeout(Duration::from_secs(1), self.exit.changed()).await;
        }
    }

    /// After its main process ended (or was stopped): everything left in its unit is killed,
    /// its last output stored, and its unit and folder removed. Answers whether the kernel
    /// killed one of its processes for going over its memory limit.
    pub async fn finish(mut self) -> bool {
        let killer = self.unit.clone();
        let _ = tokio::task::spawn_blocking(move || killer.kill_all()).await;
        // The follower ends at the monitor's end frame, once the pipes closed.
        if tokio::time::timeout(Duration::from_secs(5), &mut self.follower).await.is_err() {
            self.stop_following.cancel();
            let _ = tokio::time::timeout(DETACH_WAIT, &mut self.follower).await;
            self.follower.abort();
        }
        let oom = self.unit.oom_kills() > 0;
        let unit = self.unit.clone();
        let _ = tokio::task::spawn_blocking(move || unit.remove()).await;
        end_monitor(self.monitor_pid, &self.dir);
        let _ = fs::remove_dir_all(&self.dir);
        drop(self.network.take());
        if let Some(db) = &self.db {
            let _ = sqlx::query("DELETE FROM instance_log_cursors WHERE run_id = $1").bind(self.run).execute(db).await;
        }
        oom
    }

    /// Stops following the run and leaves it running, for a later process to attach: what
    /// was read of it is stored first (for a few seconds at most), its network stays up.
    pub async fn detach(mut self) {
        self.stop_following.cancel();
        if tokio::time::timeout(DETACH_WAIT, &mut self.follower).await.is_err() {
            self.follower.abort();
        }
        if let Some(lease) = self.network.take() {
            lease.keep();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn follow(
    dir: PathBuf,
    run: Uuid,
    from: Option<super::monitor::Position>,
    unit: Arc<Unit>,
    pid: i32,
    monitor_pid: i32,
    reaped: Arc<OnceLock<i32>>,
    network: Option<NetLease>,
    lock: File,
    logs: (LogSink, LogSink),
) -> Monitored {
    let (exit_tx, exit) = watch::channel(None);
    let stop_following = CancellationToken::new();
    let follower = tokio::spawn(follower(dir.clone(), run, from, logs, exit_tx, stop_following.clone()));
    Monitored { unit, pid, monitor_pid, dir, exit, reaped, follower, stop_following, network, _lock: lock, run, db: None }
}

/// Hands the monitor's frames to the logs in batches — each line with the position after it,
/// stored in the same transaction — until the end frame (or until told to stop, between
/// batches). The folder's own cursor follows once a batch is stored: it lets the monitor drop
/// what was read.
async fn follower(dir: PathBuf, run: Uuid, from: Option<super::monitor::Position>, (out, err): (LogSink, LogSink), exit: watch::Sender<Option<Option<i32>>>, stop: CancellationToken) {
    let mut tail = match Tail::open(&dir, from) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot follow an instance's output");
            let _ = exit.send(Some(None));
            return;
        }
    };
    let mut idle = Duration::ZERO;
    loop {
        if stop.is_cancelled() {
            // Let go only once what was handed to the logs is stored: the next follower starts
            // after it.
            out.flushed().await;
            return;
        }
        let read = tokio::task::spawn_blocking(move || {
            let frames = tail.read(BATCH);
            (tail, frames)
        })
        .await;
        let Ok((t, frames)) = read else { return };
        tail = t;
        let frames = match frames {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "reading an instance's output");
                Vec::new()
            }
        };
        if frames.is_empty() {
            // Quick after output, slower while the instance is quiet.
            idle = (idle * 2).clamp(POLL, POLL_IDLE);
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = stop.cancelled() => {}
            }
            continue;
        }
        idle = Duration::ZERO;
        let mut ended = false;
        for (frame, after) in frames {
            let cursor = crate::logs::Cursor { run, segment: after.segment, offset: after.offset };
            match frame {
                Frame::Stdout(at, line) => out.kept_line(&line, at, cursor).await,
                Frame::Stderr(at, line) => err.kept_line(&line, at, cursor).await,
                Frame::Exit(code) => {
                    let _ = exit.send(Some(code));
                }
                Frame::End => ended = true,
                Frame::Lost(0) => {}
                Frame::Lost(bytes) => out.system(&format!("About {} MB of output were dropped: nobody followed this instance meanwhile", bytes.div_ceil(1 << 20))).await,
            }
        }
        out.flushed().await;
        if let Err(e) = tail.commit() {
            tracing::warn!(dir = %dir.display(), error = %e, "saving an instance's log cursor");
        }
        if ended {
            // An end without an exit frame: a monitor that could not tell the code.
            exit.send_if_modified(|e| e.is_none().then(|| *e = Some(None)).is_some());
            return;
        }
    }
}

/// Waits for a child of this process in the background (no zombie), keeping its exit code.
fn reap(mut child: tokio::process::Child, code: Option<Arc<OnceLock<i32>>>) {
    tokio::spawn(async move {
        if let Ok(status) = child.wait().await {
            use std::os::unix::process::ExitStatusExt;
            let c = status.code().or_else(|| status.signal().map(|s| 128 + s));
            if let (Some(slot), Some(c)) = (code, c) {
                let _ = slot.set(c);
            }
        }
    });
}

/// A monitor normally ends by itself once its pipes close; one that does not (its instance's
/// unit is gone, so nothing writes) is ended — if the process at that pid is still it.
fn end_monitor(pid: i32, dir: &Path) {
    if pid <= 0 || !procfs::alive(pid) {
        return;
    }
    if procfs::has_arg(pid, dir.as_os_str().as_encoded_bytes()) {
        procfs::signal(pid, libc::SIGKILL);
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned here alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn lock_file(dir: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW).open(dir.join("lock"))
}

/// Takes the lock unless another open file of it holds it (released when the file closes,
/// or its process dies).
fn try_lock(f: &File) -> bool {
    // SAFETY: flock on an open descriptor.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

fn write_record(dir: &Path, record: &Record) -> io::Result<()> {
    let tmp = dir.join("record.json.tmp");
    fs::write(&tmp, serde_json::to_vec(record)?)?;
    fs::rename(tmp, dir.join("record.json"))
}
