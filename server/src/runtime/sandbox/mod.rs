//! The sandbox every build and instance of the local runtime runs in. What it guarantees:
//!
//! - **Identity**: the project's own unprivileged uid/gid (never the platform's), no new
//!   privileges (setuid binaries do nothing), no further user namespaces, a session of its own.
//! - **Filesystem**: a read-only `/usr` and a generated `/etc`, its build at `/app`, its own home
//!   (`/home/app`, with its package caches), its volume, a private `/tmp` and `/proc` — nothing
//!   else of the host: not the platform's data folder, not other services' builds or volumes.
//! - **Network**: the project environment's own network namespace (`network`).
//! - **Limits**: memory, CPU and process count through a cgroup per unit (`cgroup`), which is
//!   also what stops it: killing the unit ends every process it ever started.
//!
//! Mechanism: bubblewrap, started as the project's uid inside the environment's network
//! namespace and the unit's cgroup (both joined between `fork` and `exec`). Every host folder it
//! mounts is passed as an open descriptor (`--bind-fd`), so the project's uid needs no access to
//! the folders above them.

pub mod cgroup;
pub mod identity;
pub mod network;
pub mod probe;
pub mod seccomp;

use super::RuntimeError;
use cgroup::{Cgroup, CgroupRoot, Limits};
use network::{NetLease, Networks};
use std::{
    collections::BTreeMap,
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, OwnedFd, RawFd},
        unix::fs::OpenOptionsExt,
    },
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
};
use uuid::Uuid;

/// Where things are inside every sandbox.
pub const APP_DIR: &str = "/app";
pub const HOME_DIR: &str = "/home/app";
const PLATFORM_EXE: &str = "/opt/roundhouse/roundhouse";
const TOOLCHAIN_DIR: &str = "/opt/rust";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A folder of the host mounted into the sandbox.
#[derive(Debug, Clone)]
pub struct Mount {
    pub host: PathBuf,
    pub at: String,
    pub writable: bool,
}

/// One sandboxed process and what it may use.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The cgroup unit: `b-<deployment>` for a build, `i-<instance>` for an instance.
    pub unit: String,
    pub project: Uuid,
    pub environment: Uuid,
    /// Where it runs (its build, or a database's data folder).
    pub workdir: Mount,
    /// The host folder that becomes its home.
    pub home: PathBuf,
    pub volume: Option<Mount>,
    pub script: String,
    pub env: BTreeMap<String, String>,
    pub limits: Limits,
    /// Whether the caller writes to its standard input.
    pub stdin: bool,
    /// The program refuses to run as root (PostgreSQL): only matters without the sandbox,
    /// where it then runs as the `postgres` (or `nobody`) system user.
    pub refuses_root: bool,
    /// Mount the environment's hosts file (`Sandbox::write_hosts`) as its `/etc/hosts`.
    pub hosts: bool,
}

/// A command ready to spawn, with what it holds.
pub struct Prepared {
    pub command: tokio::process::Command,
    pub unit: Cgroup,
    pub network: NetLease,
    pub uid: u32,
}

/// The hosts file of an environment's sandboxes: outside the project's `/etc` folder (so one
/// environment's sandboxes never see another's), one per environment.
fn hosts_path(etc_root: &Path, uid: u32, environment: Uuid) -> PathBuf {
    etc_root.join(format!("{uid}.hosts")).join(environment.to_string())
}

pub struct Sandbox {
    bwrap: PathBuf,
    cgroups: CgroupRoot,
    networks: Arc<Networks>,
    identities: identity::Identities,
    etc_root: PathBuf,
    outbound: bool,
    /// Read-only extras: the platform's binary (for `serve-static`) and a Rust toolchain.
    exe: PathBuf,
    toolchain: Option<PathBuf>,
    tag: (String, String),
    /// The system-call filter (`seccomp`), compiled once.
    seccomp: Vec<u8>,
}

impl Sandbox {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        bwrap: PathBuf,
        cgroups: CgroupRoot,
        networks: Arc<Networks>,
        identities: identity::Identities,
        etc_root: PathBuf,
        outbound: bool,
        exe: PathBuf,
        toolchain: Option<PathBuf>,
        tag: (String, String),
    ) -> Self {
        let seccomp = seccomp::program().unwrap_or_else(|e| {
            tracing::error!(error = %e, "no system-call filter for sandboxes");
            Vec::new()
        });
        Sandbox { bwrap, cgroups, networks, identities, etc_root, outbound, exe, toolchain, tag, seccomp }
    }

    pub fn cgroups(&self) -> &CgroupRoot {
        &self.cgroups
    }

    pub fn networks(&self) -> &Arc<Networks> {
        &self.networks
    }

    /// The project's uid (allocated on first use).
    pub async fn uid(&self, project: Uuid) -> Result<u32, String> {
        self.identities.uid(project).await
    }

    /// The environment's network, for a listener of the platform's in it.
    pub async fn network(&self, environment: Uuid) -> Result<NetLease, String> {
        let networks = self.networks.clone();
        tokio::task::spawn_blocking(move || networks.acquire(environment)).await.map_err(|e| e.to_string())?
    }

    /// Writes the `/etc/hosts` of an environment's sandboxes (`net::hosts_file`). Written in
    /// place, never replaced — sandboxes already running have it mounted and see the change —
    /// and never empty on the way: the new text is written over the old, then the file cut to
    /// its length.
    pub async fn write_hosts(&self, project: Uuid, environment: Uuid, hosts: &str) -> Result<(), String> {
        use std::io::{Seek, Write};
        static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let uid = self.identities.uid(project).await?;
        let path = hosts_path(&self.etc_root, uid, environment);
        let written = (|| -> io::Result<()> {
            let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
            if std::fs::read_to_string(&path).ok().as_deref() == Some(hosts) {
                return Ok(());
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o644).custom_flags(libc::O_NOFOLLOW).open(&path)?;
            f.seek(io::SeekFrom::Start(0))?;
            f.write_all(hosts.as_bytes())?;
            f.set_len(hosts.len() as u64)
        })();
        written.map_err(|e| format!("Could not write the environment's hosts file: {e}"))
    }

    /// The start command of the platform's static file server, as seen inside.
    pub fn static_server(&self) -> String {
        format!("{PLATFORM_EXE} serve-static .")
    }

    /// Everything a launch needs, set up: identity, `/etc`, network, cgroup, and the command.
    /// `status`: where bubblewrap writes its status documents, the exit code last
    /// (`--json-status-fd`), for a monitor that outlives the platform process.
    pub async fn prepare(&self, launch: Launch, status: Option<OwnedFd>) -> Result<Prepared, RuntimeError> {
        let uid = self.identities.uid(launch.project).await?;
        let etc = identity::etc_files(&self.etc_root, uid, self.outbound).map_err(|e| RuntimeError::internal("Could not set up the sandbox's /etc.", e))?;
        for dir in [&launch.home, &launch.workdir.host].into_iter().chain(launch.volume.as_ref().map(|v| &v.host)) {
            let prepared = match dir.parent() {
                Some(parent) => group_only(parent, uid).and_then(|_| own_dir(dir, uid)),
                None => own_dir(dir, uid),
            };
            prepared.map_err(|e| RuntimeError::internal("Could not prepare the sandbox's folders.", format!("{}: {e}", dir.display())))?;
        }
        let network = self.network(launch.environment).await?;
        let unit = self
            .cgroups
            .create(&launch.unit, &launch.limits)
            .map_err(|e| RuntimeError::internal("Could not set the resource limits.", format!("cgroup {}: {e}", launch.unit)))?;
        match self.command(&launch, uid, &etc, &network, &unit, status) {
            Ok(command) => Ok(Prepared { command, unit, network, uid }),
            Err(e) => {
                unit.remove();
                Err(RuntimeError::internal("Could not prepare the sandbox.", e))
            }
        }
    }

    fn command(&self, launch: &Launch, uid: u32, etc: &Path, network: &NetLease, unit: &Cgroup, status: Option<OwnedFd>) -> io::Result<tokio::process::Command> {
        let mut fds: Vec<OwnedFd> = Vec::new();
        let mut args: Vec<String> = Vec::new();
        if let Some(fd) = status {
            args.extend(["--json-status-fd".into(), fd.as_raw_fd().to_string()]);
            fds.push(fd);
        }
        let mut pass = |path: &Path| -> io::Result<RawFd> {
            let fd: OwnedFd = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)?
                .into();
            let raw = fd.as_raw_fd();
            fds.push(fd);
            Ok(raw)
        };
        args.extend([
            "--unshare-user".into(),
            "--unshare-pid".into(),
            "--unshare-ipc".into(),
            "--unshare-uts".into(),
            "--unshare-cgroup-try".into(),
            "--disable-userns".into(),
            "--new-session".into(),
            "--hostname".into(),
            "roundhouse".into(),
            "--ro-bind".into(),
            "/usr".into(),
            "/usr".into(),
        ]);
        // Merged /usr (Debian 12 and most others): /bin, /lib… are links into /usr.
        for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            let host = Path::new("/").join(top);
            match std::fs::read_link(&host) {
                Ok(target) => args.extend(["--symlink".into(), target.to_string_lossy().into_owned(), format!("/{top}")]),
                Err(_) if host.is_dir() => args.extend(["--ro-bind".into(), host.to_string_lossy().into_owned(), format!("/{top}")]),
                Err(_) => {}
            }
        }
        args.extend(["--proc".into(), "/proc".into(), "--dev".into(), "/dev".into(), "--tmpfs".into(), "/tmp".into()]);
        args.extend(["--ro-bind-fd".into(), pass(etc)?.to_string(), "/etc".into()]);
        if launch.hosts {
            let file = hosts_path(&self.etc_root, uid, launch.environment);
            if file.exists() {
                args.extend(["--ro-bind-fd".into(), pass(&file)?.to_string(), "/etc/hosts".into()]);
            }
        }
        for entry in identity::HOST_ETC {
            let host = Path::new("/etc").join(entry);
            if host.exists() {
                args.extend(["--ro-bind".into(), host.to_string_lossy().into_owned(), format!("/etc/{entry}")]);
            }
        }
        args.extend(["--ro-bind-fd".into(), pass(&self.exe)?.to_string(), PLATFORM_EXE.into()]);
        if let Some(t) = &self.toolchain {
            args.extend(["--ro-bind-fd".into(), pass(t)?.to_string(), TOOLCHAIN_DIR.into()]);
        }
        let bind = |m: &Mount| if m.writable { "--bind-fd" } else { "--ro-bind-fd" };
        args.extend([bind(&launch.workdir).into(), pass(&launch.workdir.host)?.to_string(), launch.workdir.at.clone()]);
        args.extend(["--bind-fd".into(), pass(&launch.home)?.to_string(), HOME_DIR.into()]);
        if let Some(v) = &launch.volume {
            args.extend([bind(v).into(), pass(&v.host)?.to_string(), v.at.clone()]);
        }
        // Nothing more can be mounted or written at the top: what is writable was mounted so.
        args.extend(["--remount-ro".into(), "/".into(), "--chdir".into(), launch.workdir.at.clone()]);
        // The environment is the sandboxed process's only: bubblewrap itself runs with none
        // (a tenant's LD_PRELOAD must never reach it), and the values travel in the argument
        // file, not on a command line other users of the host could read.
        let filter = if self.seccomp.is_empty() { None } else { Some(data_file(c"seccomp", &self.seccomp)?) };
        if let Some(f) = &filter {
            args.extend(["--seccomp".into(), f.as_raw_fd().to_string()]);
        }
        args.push("--clearenv".into());
        for (k, v) in self.env(launch) {
            args.extend(["--setenv".into(), k, v]);
        }
        let argfile = args_file(&args)?;

        // Options from the file; the command (which bubblewrap takes only from its own command
        // line) after them. It holds no secret: a git URL reaches the clone as a variable.
        let mut cmd = tokio::process::Command::new(&self.bwrap);
        cmd.arg("--args").arg(argfile.as_raw_fd().to_string()).args(["--", "/bin/sh", "-c"]).arg(simple_exec(&launch.script)).env_clear().stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        cmd.stdin(if launch.stdin { Stdio::piped() } else { Stdio::null() });

        let procs = unit.procs_files()?;
        let netns: OwnedFd = std::fs::File::open(network.path())?.into();
        let mut inherited: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        inherited.push(argfile.as_raw_fd());
        inherited.extend(filter.as_ref().map(AsRawFd::as_raw_fd));
        let root = CString::new("/").map_err(io::Error::other)?;
        // SAFETY: between fork and exec only async-signal-safe syscalls run, on descriptors
        // opened before the fork (the closure owns them until the child execs).
        unsafe {
            cmd.pre_exec(move || {
                let _keep = (&fds, &procs, &netns, &argfile, &filter);
                cgroup::join_in_child(&procs)?;
                if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                for &fd in &inherited {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if libc::chdir(root.as_ptr()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The platform raised its own open-files limit; a tenant gets a bounded one.
                let files = libc::rlimit { rlim_cur: OPEN_FILES, rlim_max: OPEN_FILES };
                libc::setrlimit(libc::RLIMIT_NOFILE, &files);
                if libc::setgroups(0, std::ptr::null()) != 0 || libc::setresgid(uid, uid, uid) != 0 || libc::setresuid(uid, uid, uid) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // A session keyring of its own: never the platform's, never another tenant's.
                libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, 0 as libc::c_long);
                Ok(())
            });
        }
        Ok(cmd)
    }

    /// The environment inside: a clean one, with the platform's tag (so `adopt` finds what an
    /// earlier run left), then the service's own variables.
    fn env(&self, launch: &Launch) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        // The build's virtualenv, if it made one (a link there is not followed).
        let venv = std::fs::symlink_metadata(launch.workdir.host.join(".venv")).is_ok_and(|m| m.is_dir())
            && std::fs::symlink_metadata(launch.workdir.host.join(".venv/bin")).is_ok_and(|m| m.is_dir());
        let mut path = String::new();
        if venv {
            path.push_str(&format!("{}/.venv/bin:", launch.workdir.at));
            env.insert("VIRTUAL_ENV".into(), format!("{}/.venv", launch.workdir.at));
        }
        if self.toolchain.is_some() {
            path.push_str(&format!("{TOOLCHAIN_DIR}/bin:"));
        }
        path.push_str(PATH);
        for (k, v) in [("PATH", path.as_str()), ("HOME", HOME_DIR), ("USER", identity::USER), ("LOGNAME", identity::USER), ("LANG", "C.UTF-8"), ("TMPDIR", "/tmp")] {
            env.insert(k.into(), v.into());
        }
        env.insert(self.tag.0.clone(), self.tag.1.clone());
        env.extend(launch.env.clone());
        env
    }
}

const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
/// Open files per sandboxed process.
const OPEN_FILES: libc::rlim_t = 65_536;

/// bubblewrap's arguments, NUL-separated, in an anonymous in-memory file (`--args FD`).
fn args_file(args: &[String]) -> io::Result<OwnedFd> {
    let mut bytes = Vec::new();
    for a in args {
        if a.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an argument holds a NUL byte"));
        }
        bytes.extend_from_slice(a.as_bytes());
        bytes.push(0);
    }
    data_file(c"bwrap-args", &bytes)
}

/// `bytes` in an anonymous in-memory file, read from its start.
fn data_file(name: &std::ffi::CStr, bytes: &[u8]) -> io::Result<OwnedFd> {
    use std::{io::{Seek, Write}, os::fd::FromRawFd};
    // SAFETY: memfd_create with a valid name; the descriptor is owned right away.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file.into())
}

/// A plain command replaces the shell, so it is the process that gets the signals.
pub fn simple_exec(script: &str) -> String {
    let simple = !script.contains(['&', '|', ';', '\n', '(', '`', '$', '<', '>']) && !script.starts_with("exec ");
    if simple {
        format!("exec {script}")
    } else {
        script.to_string()
    }
}

/// Makes `dir` (if needed) and gives it to the project's uid, mode 0700. Never follows a link:
/// a folder a tenant could have replaced by one is refused.
pub fn own_dir(dir: &Path, uid: u32) -> io::Result<()> {
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::create_dir_all(dir)?;
    }
    // Opened without following a link, then changed through the descriptor: a link swapped in
    // at that name makes the open fail instead of redirecting root's chown and chmod.
    let folder = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("not a folder ({e})")))?;
    std::os::unix::fs::fchown(&folder, Some(uid), Some(uid))?;
    use std::os::unix::fs::PermissionsExt;
    folder.set_permissions(std::fs::Permissions::from_mode(0o700))
}

/// The platform's folder around a project's own (`builds/<deployment>`, `homes/<service>`,
/// `volumes/<service>`): root's, passable by the project's group only (0710). Bubblewrap, as
/// the project's uid, reaches the folder inside; no other user of the host can, whatever the
/// project does to the permissions of its own folder.
fn group_only(dir: &Path, gid: u32) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let folder = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC).open(dir)?;
    std::os::unix::fs::fchown(&folder, Some(0), Some(gid))?;
    use std::os::unix::fs::PermissionsExt;
    folder.set_permissions(std::fs::Permissions::from_mode(0o710))
}

/// Gives a whole tree to the project's uid (after the platform copied a directory source into
/// it), without following links.
pub fn own_tree(dir: &Path, uid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(uid))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            own_tree(&entry.path(), uid)?;
        } else {
            std::os::unix::fs::lchown(entry.path(), Some(uid), Some(uid))?;
        }
    }
    Ok(())
}
