//! How the local runtime runs a process: in the sandbox (the default), or — in the explicit
//! single-user mode `ROUNDHOUSE_SANDBOX=off`, for admins' projects only — as the platform's
//! own user in a process group of its own. Everything else in the runtime is the same for both.

use super::super::{
    net, procfs,
    sandbox::{self, cgroup::Cgroup, network::NetLease, Launch, Sandbox},
};
use std::{
    collections::BTreeMap,
    process::Stdio,
    sync::atomic::{AtomicI32, Ordering},
};

pub enum Isolation {
    Sandboxed(Sandbox),
    Host(Host),
    /// The sandbox is required and cannot be set up here: nothing runs, for this reason.
    Unavailable(String),
}

/// The unsandboxed spawner: a clean environment with the runtime's tag and a marker per unit.
pub struct Host {
    pub tag: (String, String),
    /// Variables every process gets from the platform's own environment (PATH and the like).
    pub base_env: Vec<(String, String)>,
    pub static_server: String,
}

/// Everything one launch holds: the command, what to stop it by, and its network.
pub struct Prepared {
    pub command: tokio::process::Command,
    pub unit: Unit,
    pub network: Option<NetLease>,
}

/// What a build or an instance is, for stopping and measuring it.
pub enum Unit {
    /// Its cgroup: every process it ever started.
    Cgroup(Cgroup),
    /// Its process group and the marker in its processes' environment.
    Host { marker: String, pgid: AtomicI32 },
}

impl Unit {
    /// Called with the pid of the process just spawned.
    pub fn started(&self, pid: i32) {
        if let Unit::Host { pgid, .. } = self {
            pgid.store(pid, Ordering::SeqCst);
        }
    }

    /// Asks the unit's main process to stop (SIGTERM): the process the command started as,
    /// inside the sandbox below bubblewrap's own `outer` process and its init.
    pub fn terminate(&self, outer: i32) {
        match self {
            Unit::Host { pgid, .. } => procfs::signal_group(pgid.load(Ordering::SeqCst), libc::SIGTERM),
            Unit::Cgroup(c) => {
                let parents: Vec<(i32, i32)> = c.pids().into_iter().filter_map(|p| procfs::stat(p).map(|s| (p, s.ppid))).collect();
                let inits: Vec<i32> = parents.iter().filter(|(_, pp)| *pp == outer).map(|(p, _)| *p).collect();
                for (pid, _) in parents.iter().filter(|(_, pp)| inits.contains(pp)) {
                    procfs::signal(*pid, libc::SIGTERM);
                }
            }
        }
    }

    /// SIGKILL to everything of the unit.
    pub fn kill_all(&self) {
        match self {
            Unit::Cgroup(c) => c.kill_all(),
            Unit::Host { marker, pgid } => {
                procfs::signal_group(pgid.load(Ordering::SeqCst), libc::SIGKILL);
                for pid in procfs::tagged(marker) {
                    procfs::signal(pid, libc::SIGKILL);
                }
            }
        }
    }

    /// CPU nanoseconds used so far and resident bytes now.
    pub fn usage(&self) -> (u64, u64) {
        match self {
            Unit::Cgroup(c) => (c.cpu_nanos(), c.memory_bytes()),
            Unit::Host { pgid, .. } => {
                let (ticks, bytes) = procfs::group_usage(pgid.load(Ordering::SeqCst));
                (ticks * 1_000_000_000 / procfs::ticks_per_second(), bytes)
            }
        }
    }

    /// Whether no process is left in it (a unit without a cgroup cannot tell: never empty).
    pub fn is_empty(&self) -> bool {
        match self {
            Unit::Cgroup(c) => c.is_empty(),
            Unit::Host { .. } => false,
        }
    }

    pub fn oom_kills(&self) -> u64 {
        match self {
            Unit::Cgroup(c) => c.oom_kills(),
            Unit::Host { .. } => 0,
        }
    }

    /// Removes what is left of the unit (kill first).
    pub fn remove(&self) {
        if let Unit::Cgroup(c) = self {
            c.remove();
        }
    }
}

impl Isolation {
    pub fn sandboxed(&self) -> bool {
        matches!(self, Isolation::Sandboxed(_))
    }

    /// The path a mounted folder has for the process.
    pub fn visible(&self, m: &sandbox::Mount) -> String {
        match self {
            Isolation::Sandboxed(_) => m.at.clone(),
            Isolation::Host(_) | Isolation::Unavailable(_) => m.host.to_string_lossy().into_owned(),
        }
    }

    pub fn static_server(&self) -> String {
        match self {
            Isolation::Sandboxed(s) => s.static_server(),
            Isolation::Host(h) => h.static_server.clone(),
            Isolation::Unavailable(_) => String::new(),
        }
    }

    /// The unit called `name` that an earlier run left, if it still exists (in the sandbox).
    pub fn existing_unit(&self, name: &str) -> Option<Unit> {
        match self {
            Isolation::Sandboxed(s) => s.cgroups().existing(name).map(Unit::Cgroup),
            _ => None,
        }
    }

    /// The network (namespace path) services of the environment share; `None` on the host's.
    pub async fn network(&self, environment: uuid::Uuid) -> Result<Option<NetLease>, String> {
        match self {
            Isolation::Sandboxed(s) => s.network(environment).await.map(Some),
            Isolation::Host(_) => Ok(None),
            Isolation::Unavailable(why) => Err(unavailable(why).shown()),
        }
    }

    /// Writes the hosts file of the environment's sandboxes (nothing to write without one).
    pub async fn write_hosts(&self, project: uuid::Uuid, environment: uuid::Uuid, hosts: &str) -> Result<(), String> {
        match self {
            Isolation::Sandboxed(s) => s.write_hosts(project, environment, hosts).await,
            Isolation::Host(_) | Isolation::Unavailable(_) => Ok(()),
        }
    }

    /// A port nothing listens on in the environment's network.
    pub async fn free_port(&self, network: Option<&NetLease>) -> Result<u16, String> {
        net::free_port(network.map(NetLease::path)).await.map_err(|e| format!("No free port: {e}"))
    }

    /// The command of `launch`, ready to spawn. `status`: see `Sandbox::prepare` (only the
    /// sandbox writes one).
    pub async fn prepare(&self, launch: Launch, status: Option<std::os::fd::OwnedFd>) -> Result<Prepared, crate::runtime::RuntimeError> {
        match self {
            Isolation::Sandboxed(s) => {
                let p = s.prepare(launch, status).await?;
                Ok(Prepared { command: p.command, unit: Unit::Cgroup(p.unit), network: Some(p.network) })
            }
            Isolation::Host(h) => Ok(h.prepare(launch)),
            Isolation::Unavailable(why) => Err(unavailable(why)),
        }
    }
}

fn unavailable(why: &str) -> crate::runtime::RuntimeError {
    crate::runtime::RuntimeError::internal("Nothing runs on this machine until its sandbox can be set up: an administrator must fix it.", why)
}


impl Host {
    fn prepare(&self, launch: Launch) -> Prepared {
        let marker = ("ROUNDHOUSE_UNIT".to_string(), launch.unit.clone());
        let cwd = &launch.workdir.host;
        let mut c = tokio::process::Command::new("/bin/sh");
        let mut env: BTreeMap<String, String> = self.base_env.iter().cloned().collect();
        env.insert("LANG".into(), "C.UTF-8".into());
        env.insert("HOME".into(), launch.home.to_string_lossy().into_owned());
        if cwd.join(".venv/bin").is_dir() {
            let path = env.get("PATH").cloned().unwrap_or_default();
            env.insert("PATH".into(), format!("{}:{path}", cwd.join(".venv/bin").display()));
            env.insert("VIRTUAL_ENV".into(), cwd.join(".venv").to_string_lossy().into_owned());
        }
        let _ = std::fs::create_dir_all(&launch.home);
        // SAFETY: geteuid has no preconditions.
        if launch.refuses_root && unsafe { libc::geteuid() } == 0 {
            let (uid, gid) = system_user();
            for dir in [&launch.workdir.host, &launch.home] {
                let _ = std::os::unix::fs::lchown(dir, Some(uid), Some(gid));
            }
            c.uid(uid).gid(gid);
        }
        c.arg("-c")
            .arg(sandbox::simple_exec(&launch.script))
            .current_dir(cwd)
            .env_clear()
            .envs(&env)
            .envs(&launch.env)
            .env(&self.tag.0, &self.tag.1)
            .env(&marker.0, &marker.1)
            .stdin(if launch.stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        Prepared { command: c, unit: Unit::Host { marker: format!("{}={}", marker.0, marker.1), pgid: AtomicI32::new(0) }, network: None }
    }
}

/// The `postgres` system user (or `nobody`), for programs that refuse to run as root.
pub(super) fn system_user() -> (u32, u32) {
    for name in [c"postgres", c"nobody"] {
        // SAFETY: getpwnam returns NULL or a pointer to a static record read at once.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: checked non-null above.
            return unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        }
    }
    (65534, 65534)
}
