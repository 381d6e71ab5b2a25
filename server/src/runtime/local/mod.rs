//! The local runtime: every build and instance is a supervised process tree on this machine,
//! in a sandbox of its own (`runtime::sandbox`) — the project's uid, the environment's
//! network, a cgroup with the service's limits — with its output captured line by line.
//!
//! Everything it starts carries `ROUNDHOUSE_RUNTIME_ID=<id of this data folder>` and lives in
//! a cgroup under `roundhouse-<id>`, so whatever a crashed platform left behind is found and
//! stopped the first time a new process leads (`adopt`).

mod build;
mod database;
mod instance;
mod isolation;
pub mod monitor;
mod monitored;
mod pump;
mod run;
mod stage;
mod volumes;

use super::{
    sandbox::{
        self,
        cgroup::{CgroupRoot, Limits},
        identity::Identities,
        network::Networks,
        probe, Launch, Mount, Sandbox,
    },
    procfs, Adoption, BuildJob, InstanceEvent, InstanceSpec, PrivateListener, Runtime, RuntimeError, Usage,
};
use crate::logs::LogSink;
use app::{
    deployments::Stream,
    infra::{live::Endpoint, Admission, Config, SandboxMode},
    services::{Service, SourceKind},
};
use instance::{Ctl, Plan, State};
use monitored::Record;
use isolation::{Host, Isolation};
use sqlx::PgPool;
use std::{
    collections::HashMap,
    net::SocketAddr,
    ops::Deref,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What the local runtime is configured with (from `Config`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub sandbox: SandboxMode,
    pub uids: (u32, u32),
    pub outbound: bool,
    pub build_limits: Limits,
    pub build_disk_bytes: u64,
    /// Files and folders one build may make (each takes an inode, whatever its size).
    pub build_max_files: u64,
    /// The `roundhouse` binary static sites are served with (`serve-static`); this process's
    /// own when unset.
    pub platform_exe: Option<PathBuf>,
    /// CA certificates git clones trust besides the system's (`ROUNDHOUSE_GIT_CA_FILE`).
    pub git_ca_file: Option<PathBuf>,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Settings {
            data_dir: c.data_dir.clone(),
            sandbox: c.sandbox,
            uids: c.sandbox_uids,
            outbound: c.sandbox_outbound,
            build_limits: Limits { memory_bytes: u64::from(c.build_memory_mb) << 20, cpu_millis: c.build_cpu_millis, pids: 1024 },
            build_disk_bytes: c.build_disk_mb << 20,
            build_max_files: c.build_max_files,
            platform_exe: None,
            git_ca_file: c.git_ca_file.clone(),
        }
    }
}

pub struct LocalRuntime(Arc<Local>);

/// The runtime folders taken down in this process (`LocalRuntime::destroy`): nothing starts
/// there any more, even from a supervisor or pipeline of that runtime still at work (instances
/// outlive their platform process, so one started after the teardown would be left behind).
static RETIRED: std::sync::RwLock<Vec<PathBuf>> = std::sync::RwLock::new(Vec::new());

/// Runs `spawn` unless the runtime at `root` was taken down; a teardown waits for it, so what it
/// starts is there to be taken down.
pub(super) fn unless_retired<T>(root: &Path, spawn: impl FnOnce() -> T) -> Option<T> {
    let retired = RETIRED.read().unwrap_or_else(|e| e.into_inner());
    (!retired.iter().any(|r| r == root)).then(spawn)
}

impl Deref for LocalRuntime {
    type Target = Local;
    fn deref(&self) -> &Local {
        &self.0
    }
}

pub struct Local {
    root: PathBuf,
    /// Where host files are mounted for sandboxes (`stage`), unmounted at shutdown.
    stage_dir: PathBuf,
    settings: Settings,
    isolation: Isolation,
    admission: Admission,
    tag: String,
    instances: Mutex<HashMap<Uuid, Arc<Ctl>>>,
    /// Instances that run but that this process does not follow, found by `adopt`: `start`
    /// takes them back, `stop` ends them.
    found: Mutex<HashMap<Uuid, Record>>,
    /// The platform's binary: instance monitors run it (`roundhouse monitor`).
    exe: PathBuf,
    /// Where instances' stored log positions are read from (`monitored.rs`).
    db: PgPool,
    /// Set while this replica does not lead (after `release`, until `adopt`): it starts nothing.
    released: std::sync::atomic::AtomicBool,
    /// Whether this process removed what earlier ones left (`adopt`, once).
    swept: std::sync::atomic::AtomicBool,
    last_cpu: Mutex<HashMap<Uuid, (u64, Instant)>>,
}

/// The names a runtime's resources have on this machine, all derived from its data folder.
struct Names {
    id: String,
    root: PathBuf,
}

impl Names {
    fn of(data_dir: &Path) -> std::io::Result<Self> {
        let root = super::runtime_dir(data_dir);
        std::fs::create_dir_all(&root)?;
        let root = root.canonicalize()?;
        use sha2::{Digest, Sha256};
        let id = hex::encode(&Sha256::digest(root.to_string_lossy().as_bytes())[..8]);
        Ok(Names { id, root })
    }
    fn tag(&self) -> (String, String) {
        ("ROUNDHOUSE_RUNTIME_ID".into(), self.id.clone())
    }
    fn cgroup(&self) -> String {
        format!("roundhouse-{}", self.id)
    }
    fn run_dir(&self) -> PathBuf {
        PathBuf::from("/run/roundhouse").join(&self.id)
    }
    fn netns_dir(&self) -> PathBuf {
        self.run_dir().join("netns")
    }
    /// Read-only views of host files the sandbox shows (the toolchain, the platform's binary),
    /// mounted where bubblewrap, running as a project's uid, can reach them. One per platform
    /// process, so replicas sharing a data folder never unmount each other's.
    fn stage_dir(&self) -> PathBuf {
        self.run_dir().join(format!("stage-{}", std::process::id()))
    }

    /// Stage folders of platform processes that are gone.
    fn stale_stages(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.run_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let pid: i32 = name.strip_prefix("stage-")?.parse().ok()?;
                (pid != std::process::id() as i32 && !procfs::alive(pid)).then(|| e.path())
            })
            .collect()
    }
}

impl LocalRuntime {
    /// A runtime keeping its builds and volumes under `<data_dir>/runtime`. With the sandbox on,
    /// it checks at once that the sandbox works here; if not, it runs nothing and `admission`
    /// says why.
    pub fn new(settings: Settings, db: PgPool) -> anyhow::Result<Self> {
        let names = Names::of(&settings.data_dir)?;
        for sub in ["builds", "volumes", "homes", "etc", "instances"] {
            std::fs::create_dir_all(names.root.join(sub))?;
        }
        // Projects' uids may pass through (not list) the runtime's folders: bubblewrap, running
        // as one of them, mounts its own folders from there.
        use std::os::unix::fs::PermissionsExt;
        for dir in [names.root.clone(), names.root.join("builds"), names.root.join("volumes"), names.root.join("homes"), names.root.join("etc")] {
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711));
        }
        // What instances' monitors keep (their output) is the platform's alone.
        let _ = std::fs::set_permissions(names.root.join("instances"), std::fs::Permissions::from_mode(0o700));
        let exe = match &settings.platform_exe {
            Some(exe) => exe.clone(),
            None => std::env::current_exe()?,
        };
        let (isolation, admission) = match settings.sandbox {
            SandboxMode::Off => {
                let base_env = ["PATH", "HOME", "LANG", "TZ", "CARGO_HOME", "RUSTUP_HOME", "USER"]
                    .into_iter()
                    .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
                    .collect();
                let host = Host { tag: names.tag(), base_env, static_server: format!("{} serve-static .", build::shell_quote(&exe.to_string_lossy())) };
                (Isolation::Host(host), Admission::AdminsOnly)
            }
            SandboxMode::On => match sandbox_here(&settings, &names, db.clone(), exe.clone()) {
                Ok(s) => (Isolation::Sandboxed(s), Admission::Everyone),
                Err(problems) => {
                    let why = problems.join("; ");
                    tracing::error!(missing = %why, "the sandbox cannot be set up on this machine: deployments are refused");
                    (Isolation::Unavailable(why.clone()), Admission::Nobody(why))
                }
            },
        };
        let tag = format!("{}={}", names.tag().0, names.tag().1);
        Ok(LocalRuntime(Arc::new(Local {
            stage_dir: names.stage_dir(),
            root: names.root,
            settings,
            isolation,
            admission,
            tag,
            instances: Mutex::new(HashMap::new()),
            found: Mutex::new(HashMap::new()),
            exe,
            db,
            released: Default::default(),
            swept: std::sync::atomic::AtomicBool::new(false),
            last_cpu: Mutex::new(HashMap::new()),
        })))
    }

    /// Who may deploy, given what the sandbox can do here.
    pub fn admission(&self) -> Admission {
        self.admission.clone()
    }

    /// The `KEY=value` entry that marks this runtime's processes.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Units (builds, instances) with a live process right now.
    pub fn live_units(&self) -> Vec<String> {
        match &self.isolation {
            Isolation::Sandboxed(_) => Self::live_units_of(&self.settings.data_dir),
            _ => procfs::tagged(&self.tag).into_iter().map(|p| p.to_string()).collect(),
        }
    }

    /// The sandboxed units with a live process of the runtime on `data_dir` (any process's).
    pub fn live_units_of(data_dir: &Path) -> Vec<String> {
        let Ok(names) = Names::of(data_dir) else { return Vec::new() };
        let Ok(root) = CgroupRoot::open(Path::new("/sys/fs/cgroup"), &names.cgroup()) else { return Vec::new() };
        let mut live: Vec<String> = root.units().into_iter().filter(|u| root.existing(u).is_some_and(|c| !c.is_empty())).collect();
        live.sort();
        live
    }

    /// The host uid of a project's sandbox.
    pub async fn project_uid(&self, project: Uuid) -> Result<u32, String> {
        self.uid(project).await
    }

    /// At shutdown, after the reconciler let go of everything: removes the staged mounts this
    /// process made on the host (not another replica's). The environments' networks stay:
    /// instances left running use them, and the next process adopts them (or removes those
    /// nothing uses).
    pub fn release_host_resources(&self) {
        stage::Stage::new(self.stage_dir.clone()).remove();
        // Empty once no replica of this data folder uses them (removing a folder in use fails).
        if let Some(run_dir) = self.stage_dir.parent() {
            let _ = std::fs::remove_dir(run_dir.join("netns"));
            let _ = std::fs::remove_dir(run_dir);
        }
    }

    /// The limits the kernel enforces on a unit of the runtime on `data_dir` (`i-<instance>`,
    /// `b-<deployment>`), while it exists.
    pub fn unit_limits(data_dir: &Path, unit: &str) -> Option<Limits> {
        let names = Names::of(data_dir).ok()?;
        CgroupRoot::open(Path::new("/sys/fs/cgroup"), &names.cgroup()).ok()?.existing(unit)?.limits()
    }

    /// Kills and removes everything a runtime on `data_dir` ever made on this machine —
    /// processes, cgroups, networks — without a database. For tests that end, and for tools.
    pub fn destroy(data_dir: &Path) {
        let Ok(names) = Names::of(data_dir) else { return };
        RETIRED.write().unwrap_or_else(|e| e.into_inner()).push(names.root.clone());
        let tag = format!("{}={}", names.tag().0, names.tag().1);
        for pid in procfs::tagged(&tag) {
            procfs::signal(pid, libc::SIGKILL);
        }
        if let Ok(root) = CgroupRoot::open(Path::new("/sys/fs/cgroup"), &names.cgroup()) {
            root.destroy();
        }
        if let Ok(nets) = Networks::new(names.netns_dir(), None, names.tag()) {
            nets.destroy_all();
        }
        stage::Stage::new(names.stage_dir()).remove();
        for stale in names.stale_stages() {
            stage::Stage::new(stale).remove();
        }
        let _ = std::fs::remove_dir(names.netns_dir());
        let _ = std::fs::remove_dir(names.run_dir());
    }
}

/// The sandbox, if every piece of it works here; otherwise what is missing.
fn sandbox_here(settings: &Settings, names: &Names, db: PgPool, exe: PathBuf) -> Result<Sandbox, Vec<String>> {
    let (bwrap, slirp) = probe::programs(settings.outbound)?;
    let mut problems = Vec::new();
    if let Some(closed) = probe::closed_ancestor(&names.root) {
        problems.push(format!(
            "the sandbox's processes cannot reach {} because {} is closed to other users: make it traversable (chmod o+x {}) or move ROUNDHOUSE_DATA_DIR",
            names.root.display(),
            closed.display(),
            closed.display()
        ));
    }
    for stale in names.stale_stages() {
        stage::Stage::new(stale).remove();
    }
    let staged = stage::Stage::new(names.stage_dir());
    let exe = staged.file("roundhouse", &exe).map_err(|e| vec![format!("cannot show the platform's binary to sandboxes ({e})")])?;
    let toolchain = rust_toolchain().and_then(|t| match staged.dir("rust", &t) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, toolchain = %t.display(), "the Rust toolchain cannot be shown to sandboxes: Rust builds will not find cargo");
            None
        }
    });
    let cgroups = CgroupRoot::open(Path::new("/sys/fs/cgroup"), &names.cgroup()).map_err(|e| problems.push(e)).ok();
    // The last uid of the range: the one given to a project last, if ever.
    if let Err(e) = probe::trial_run(&bwrap, settings.uids.1) {
        problems.push(e);
    }
    let networks = match Networks::new(names.netns_dir(), slirp, names.tag()) {
        Ok(n) => {
            // A network made and taken down: namespaces (and the uplink) work here.
            match n.acquire(Uuid::new_v4()) {
                Ok(lease) => drop(lease),
                Err(e) => problems.push(e),
            }
            Some(n)
        }
        Err(e) => {
            problems.push(format!("cannot keep network namespaces in {} ({e})", names.netns_dir().display()));
            None
        }
    };
    if !problems.is_empty() {
        staged.remove();
    }
    match (cgroups, networks) {
        (Some(cgroups), Some(networks)) if problems.is_empty() => Ok(Sandbox::new(
            bwrap,
            cgroups,
            networks,
            Identities::new(db, settings.uids),
            names.root.join("etc"),
            settings.outbound,
            exe,
            toolchain,
            names.tag(),
        )),
        _ => Err(problems),
    }
}

/// Writes a private file (mode 0600) for a process of the runtime into a folder its project's
/// uid owns: whatever is at that name (a link the project left, say) is replaced, never followed.
fn sandbox_file(path: &Path, body: &[u8], owner: Option<u32>) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)?;
    if let Some(uid) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(uid))?;
    }
    f.write_all(body)
}

/// The sysroot of the Rust toolchain the platform's user has, offered read-only to builds.
fn rust_toolchain() -> Option<PathBuf> {
    let out = std::process::Command::new("rustc").args(["--print", "sysroot"]).output().ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && dir.join("bin/cargo").is_file()).then_some(dir)
}

impl Local {
    async fn uid(&self, project: Uuid) -> Result<u32, String> {
        match &self.isolation {
            Isolation::Sandboxed(s) => s.uid(project).await,
            // SAFETY: geteuid has no preconditions.
            _ => Ok(unsafe { libc::geteuid() }),
        }
    }

    fn instance_limits(&self, s: &Service) -> Limits {
        Limits { memory_bytes: (s.memory_mb.max(16) as u64) << 20, cpu_millis: s.cpu_millis.max(10) as u32, pids: s.max_processes.max(16) as u32 }
    }

    fn ctl(&self, id: Uuid) -> Option<Arc<Ctl>> {
        self.instances.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    /// What starting `spec` takes, checked before anything starts: its plan, its endpoint
    /// and its network. `port`: the one it has (an instance taken back), else a free one.
    async fn prepare_start(&self, spec: &InstanceSpec, logs: &LogSink, port: Option<u16>) -> Result<(Plan, Endpoint, Option<sandbox::network::NetLease>), String> {
        let s = &spec.spec;
        let is_db = s.source_kind == SourceKind::Database;
        let network = self.isolation.network(s.environment_id).await?;
        let port = match port {
            Some(port) => port,
            None if is_db => spec.private_port,
            None => self.isolation.free_port(network.as_ref()).await?,
        };

        if !is_db {
            // Fresh at every start (not at restarts): the services of the environment now.
            self.isolation.write_hosts(s.project_id, s.environment_id, &super::net::hosts_file(&spec.peers)).await?;
        }
        let mut env = spec.env.clone();
        env.insert("PORT".into(), port.to_string());
        let mut volume = None;
        if let (Some(path), false) = (&s.volume_path, is_db) {
            let mount = Mount { host: self.volume_dir(s.id).join("data"), at: path.clone(), writable: true };
            env.insert("ROUNDHOUSE_VOLUME_MOUNT_PATH".into(), self.isolation.visible(&mount));
            volume = Some(mount);
        }
        let (workdir, script) = if is_db {
            (self.database_mount(spec), self.database_command(spec, logs).await?)
        } else {
            let artifact = PathBuf::from(&spec.artifact);
            let start = match &spec.command {
                Some(command) => command.clone(),
                None => std::fs::read_to_string(artifact.join(build::START_FILE)).map_err(|_| "The build of this deployment is gone: deploy again.".to_string())?,
            };
            (Mount { host: artifact.join("app"), at: sandbox::APP_DIR.into(), writable: false }, start)
        };
        let plan = Plan {
            launch: Launch {
                unit: format!("i-{}", spec.instance_id),
                project: s.project_id,
                environment: s.environment_id,
                workdir,
                home: self.home_dir(s.id),
                volume,
                script,
                env,
                limits: self.instance_limits(s),
                stdin: false,
                refuses_root: is_db && s.source == "postgres",
                hosts: !is_db,
            },
            memory_mb: s.memory_mb,
        };
        let endpoint = Endpoint { network: network.as_ref().map(|n| n.path().to_string()), addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        Ok((plan, endpoint, network))
    }

    /// Kills what runs under this runtime's tag and removes its cgroups and networks — all
    /// but the units (and their networks) of `keep`.
    async fn sweep(&self, keep: &[Record]) -> anyhow::Result<usize> {
        let units: std::collections::HashSet<String> = keep.iter().map(|r| r.unit.clone()).collect();
        let environments: std::collections::HashSet<Uuid> = keep.iter().map(|r| r.environment_id).collect();
        let uplinks: Vec<i32> = match &self.isolation {
            Isolation::Sandboxed(s) => s.networks().uplink_pids(&environments),
            _ => Vec::new(),
        };
        // A process of a kept unit is spared by where it is (its cgroup), not by a list of pids
        // taken earlier: one it forks meanwhile is spared too.
        let in_kept_unit = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.lines().any(|l| units.iter().any(|u| l.ends_with(&format!("/{u}")))))
        };
        let found: Vec<i32> = procfs::tagged(&self.tag).into_iter().filter(|p| !uplinks.contains(p) && !in_kept_unit(*p)).collect();
        for &pid in &found {
            procfs::signal(pid, libc::SIGKILL);
        }
        let mut cleaned = found.len();
        if let Isolation::Sandboxed(s) = &self.isolation {
            let (cgroups, networks) = (s.cgroups().clone(), s.networks().clone());
            cleaned += tokio::task::spawn_blocking(move || {
                let mut n = 0;
                for unit in cgroups.units().into_iter().filter(|u| !units.contains(u)) {
                    if let Some(g) = cgroups.existing(&unit) {
                        g.kill_all();
                        g.remove();
                        n += 1;
                    }
                }
                n + networks.destroy_except(&environments)
            })
            .await?;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while found.iter().any(|&p| procfs::alive(p)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(cleaned)
    }

    /// The instances no process of the platform follows — an earlier process started them, or
    /// this one before it let go; running, or ended with their last output still to be read —
    /// and those another process follows still (a replica that has not let go yet: taking one
    /// back waits for it). Folders with nothing left to take back are removed.
    async fn unfollowed(&self) -> Vec<Record> {
        let followed: std::collections::HashSet<Uuid> = self.instances.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        let mut found = Vec::new();
        for (dir, record) in self.records() {
            let Some(id) = dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<Uuid>().ok()) else { continue };
            if followed.contains(&id) {
                continue;
            }
            let busy = monitor::followed(&dir);
            match record {
                Some(r) if busy || self.isolation.existing_unit(&r.unit).is_some() => found.push(r),
                Some(r) => self.discard(&r).await,
                // Being set up by another process.
                None if busy => {}
                None => {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
        found
    }

    async fn stop_instance(&self, instance_id: Uuid) {
        let found = self.found.lock().unwrap_or_else(|e| e.into_inner()).remove(&instance_id);
        if let Some(record) = found {
            self.discard(&record).await;
            return;
        }
        let Some(ctl) = self.ctl(instance_id) else { return };
        ctl.stop.cancel();
        let task = ctl.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.instances.lock().unwrap_or_else(|e| e.into_inner()).remove(&instance_id);
        self.last_cpu.lock().unwrap_or_else(|e| e.into_inner()).remove(&instance_id);
    }
}

#[async_trait::async_trait]
impl Runtime for LocalRuntime {
    fn supports(&self, kind: SourceKind) -> Result<(), String> {
        match kind {
            SourceKind::Image => Err(
                "This platform runs services as local processes and cannot run a container image: that needs the Kubernetes runtime. Use a directory or git source instead."
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    fn name(&self) -> &'static str {
        "local"
    }

    async fn adopt(&self) -> anyhow::Result<Adoption> {
        let first = !self.swept.swap(true, std::sync::atomic::Ordering::SeqCst);
        self.released.store(false, std::sync::atomic::Ordering::SeqCst);
        // Sandboxed instances outlive the process that started them (`monitored.rs`): those
        // no process follows are found, their networks taken over, and everything else an
        // earlier process left (builds, processes, networks of nothing) removed. Unsandboxed
        // ones die with their platform process: whatever is left of them goes.
        let found = if self.isolation.sandboxed() { self.unfollowed().await } else { Vec::new() };
        if let Isolation::Sandboxed(s) = &self.isolation {
            let mut environments: std::collections::HashSet<Uuid> = found.iter().map(|r| r.environment_id).collect();
            environments.extend(self.instances.lock().unwrap_or_else(|e| e.into_inner()).values().map(|c| c.spec.spec.environment_id));
            s.networks().adopt(&environments);
            s.networks().retain(false);
        }
        let cleaned = if first { self.sweep(&found).await? } else { 0 };
        let running = self
            .instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, ctl)| !matches!(*ctl.state.borrow(), State::Gone(_)))
            .map(|(id, _)| *id)
            .collect();
        for r in &found {
            tracing::info!(instance_id = %r.instance_id, deployment_id = %r.deployment_id, pid = r.pid, "found an instance still running");
        }
        let ids = found.iter().map(|r| r.instance_id).collect();
        *self.found.lock().unwrap_or_else(|e| e.into_inner()) = found.into_iter().map(|r| (r.instance_id, r)).collect();
        Ok(Adoption { running, found: ids, cleaned })
    }

    async fn release(&self) {
        self.released.store(true, std::sync::atomic::Ordering::SeqCst);
        if !self.isolation.sandboxed() {
            // Nothing outlives this process without the sandbox: everything stops.
            let ids: Vec<Uuid> = self.instances.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
            futures_util::future::join_all(ids.into_iter().map(|id| self.stop_instance(id))).await;
            return;
        }
        if let Isolation::Sandboxed(s) = &self.isolation {
            s.networks().retain(true);
        }
        let ctls: Vec<Arc<Ctl>> = self.instances.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, c)| c).collect();
        for ctl in &ctls {
            ctl.detach.cancel();
        }
        for ctl in ctls {
            let task = ctl.done.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(task) = task {
                let _ = task.await;
            }
        }
        self.found.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.last_cpu.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    async fn build(&self, job: BuildJob, logs: LogSink, cancel: CancellationToken) -> Result<String, RuntimeError> {
        // A build that fails, is cancelled or is dropped (past its deadline) leaves no folder:
        // only a build that ran can be rolled back to.
        struct Discard(Option<PathBuf>);
        impl Drop for Discard {
            fn drop(&mut self) {
                if let Some(dir) = self.0.take() {
                    std::thread::spawn(move || std::fs::remove_dir_all(dir));
                }
            }
        }
        let mut discard = Discard(Some(self.build_dir(job.deployment_id)));
        let built = self.build_job(job, logs, cancel).await;
        if built.is_ok() {
            discard.0 = None;
        }
        built.map_err(RuntimeError::user)
    }

    async fn has_artifact(&self, artifact: &str) -> bool {
        let p = PathBuf::from(artifact);
        p.starts_with(&self.root) && tokio::fs::metadata(&p).await.is_ok_and(|m| m.is_dir())
    }

    async fn builds(&self) -> Result<Vec<(Uuid, String)>, RuntimeError> {
        Local::builds(self).await.map_err(|e| RuntimeError::internal("Could not list the builds.", e))
    }

    async fn remove_build(&self, artifact: &str) -> Result<(), RuntimeError> {
        Local::remove_build(self, artifact).await.map_err(|e| RuntimeError::internal("Could not remove a build.", e))
    }

    async fn start(&self, spec: InstanceSpec, logs: LogSink, events: mpsc::UnboundedSender<InstanceEvent>) -> Result<Endpoint, RuntimeError> {
        if self.released.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(RuntimeError::user("This replica no longer leads: the instance is left to the one that does."));
        }
        // An instance that still runs (found by `adopt`) is taken back as it is, at its address.
        let found = self.found.lock().unwrap_or_else(|e| e.into_inner()).remove(&spec.instance_id);
        let prepared = self.prepare_start(&spec, &logs, found.as_ref().map(|r| r.addr.port())).await;
        let (plan, endpoint, network) = match prepared {
            Ok(p) => p,
            Err(e) => {
                // Still found: the reconciler stops it, or a later try takes it back.
                if let Some(record) = found {
                    self.found.lock().unwrap_or_else(|e| e.into_inner()).insert(record.instance_id, record);
                }
                return Err(e.into());
            }
        };
        let adopted = match found {
            Some(record) => {
                let streams = (logs.stream(Stream::Stdout, Some(spec.replica)), logs.stream(Stream::Stderr, Some(spec.replica)));
                match self.attach(&record, streams).await {
                    Ok(m) => m.map(|m| (m, record)),
                    Err(e) => {
                        self.found.lock().unwrap_or_else(|e| e.into_inner()).insert(record.instance_id, record);
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        if let Some((_, record)) = &adopted {
            logs.system(&format!("Instance {} ran on while Roundhouse was away (process {}): following it again", spec.replica, record.pid)).await;
        }
        let ctl = Arc::new(Ctl {
            spec: spec.clone(),
            endpoint: endpoint.clone(),
            _network: network,
            stop: CancellationToken::new(),
            detach: CancellationToken::new(),
            state: watch::channel(State::Restarting).0,
            done: Mutex::new(None),
            unit: Mutex::new(None),
        });
        self.instances.lock().unwrap_or_else(|e| e.into_inner()).insert(spec.instance_id, ctl.clone());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(self.0.clone().supervise(ctl.clone(), plan, logs, events, tx, adopted.map(|(m, _)| m)));
        *ctl.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        match rx.await {
            Ok(Ok(())) => Ok(endpoint),
            Ok(Err(e)) => Err(RuntimeError::user(e)),
            Err(_) => Err(RuntimeError::user("The instance supervisor ended before the process started.")),
        }
    }

    async fn ready(&self, instance_id: Uuid, deadline: Instant) -> Result<(), RuntimeError> {
        let ctl = self.ctl(instance_id).ok_or("The instance is gone.")?;
        Ok(self.wait_ready(ctl, deadline).await?)
    }

    async fn stop(&self, instance_id: Uuid) {
        self.stop_instance(instance_id).await
    }

    async fn volume_sizes(&self) -> Vec<(Uuid, u64)> {
        let dir = self.root.join("volumes");
        tokio::task::spawn_blocking(move || volumes::sizes(&dir)).await.unwrap_or_default()
    }

    async fn remove_volume(&self, service_id: Uuid) -> Result<(), RuntimeError> {
        let dir = self.root.join("volumes").join(service_id.to_string());
        match tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Ok(Err(e)) => Err(RuntimeError::internal("The volume could not be removed.", e)),
            Err(e) => Err(RuntimeError::internal("The volume could not be removed.", e)),
        }
    }

    async fn usage(&self) -> Vec<(Uuid, Usage)> {
        let ctls: Vec<Arc<Ctl>> = self.instances.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let mut last = self.last_cpu.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        ctls.iter()
            .filter_map(|c| {
                let unit = c.unit.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
                let (nanos, bytes) = unit.usage();
                let id = c.spec.instance_id;
                let cpu = match last.insert(id, (nanos, now)) {
                    Some((n0, at)) if nanos >= n0 => {
                        let secs = now.duration_since(at).as_secs_f64().max(0.001);
                        ((nanos - n0) as f64 / 1e9 / secs * 100.0) as f32
                    }
                    _ => 0.0,
                };
                Some((id, Usage { cpu_percent: cpu, memory_bytes: bytes }))
            })
            .collect()
    }

    async fn private_listener(&self, environment_id: Uuid, addr: std::net::SocketAddrV4) -> Result<PrivateListener, RuntimeError> {
        let network = self.isolation.network(environment_id).await?;
        let listener = super::net::listen(network.as_ref().map(|n| n.path()), SocketAddr::V4(addr))
            .await
            .map_err(|e| RuntimeError::internal(format!("Cannot listen at {addr}."), e))?;
        Ok(PrivateListener { listener, hold: Box::new(network) })
    }

    fn private_addrs(&self, private_port: u16, known_ports: &[u16], itself_on_private_port: bool) -> Vec<std::net::SocketAddrV4> {
        let own = super::net::private_ip(private_port);
        let mut out = Vec::new();
        if !itself_on_private_port {
            out.push(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, private_port));
        }
        // Without the sandbox there is no network of the environment's own: names do not
        // resolve there, and the host's ports 80, 5432… are not the platform's to take.
        if !self.isolation.sandboxed() {
            return out;
        }
        for port in std::iter::once(private_port).chain(known_ports.iter().copied()) {
            let addr = std::net::SocketAddrV4::new(own, port);
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
        out
    }
}
