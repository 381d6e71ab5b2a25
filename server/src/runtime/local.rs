//! The local runtime: every instance is a supervised process group on this machine, with its
//! own working directory, environment and port, and its output captured line by line.
//!
//! Every process it starts carries `ROUNDHOUSE_RUNTIME_ID=<id of this data folder>` and
//! `ROUNDHOUSE_INSTANCE_ID` in its environment, so whatever a crashed platform left behind —
//! even a process that left its group — is found in /proc and stopped (`recover`).

use super::{procfs, stack, BuildJob, InstanceEvent, InstanceSpec, Runtime, Usage};
use crate::logs::LogSink;
use app::{
    deployments::Stream,
    services::{RestartPolicy, SourceKind},
};
use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        atomic::{AtomicI32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::{mpsc, oneshot, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a stopped process has between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process that neither listens nor has a health check counts as ready once it has run this long.
const WORKER_SETTLE: Duration = Duration::from_secs(3);
/// Build-tree entries never copied from a directory source.
const SKIPPED: [&str; 5] = [".git", "node_modules", "target", ".venv", "__pycache__"];
const START_FILE: &str = ".roundhouse-start";

#[derive(Debug, Clone, PartialEq)]
enum State {
    Running { since: Instant },
    Restarting,
    Gone(String),
}

struct Ctl {
    spec: InstanceSpec,
    port: u16,
    pgid: AtomicI32,
    stop: CancellationToken,
    state: watch::Sender<State>,
    done: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Makes the commands of this runtime: a clean environment plus the runtime's tag.
struct Spawner {
    tag: String,
    /// Variables every process gets from the platform's own environment (PATH and the like).
    base_env: Vec<(String, String)>,
}

pub struct LocalRuntime {
    root: PathBuf,
    static_server: String,
    spawner: Arc<Spawner>,
    instances: Mutex<HashMap<Uuid, Arc<Ctl>>>,
    last_cpu: Mutex<HashMap<Uuid, (u64, Instant)>>,
}

impl LocalRuntime {
    /// `data_dir`: the platform's data folder; the runtime keeps builds and volumes under
    /// `<data_dir>/runtime`.
    pub fn new(data_dir: &Path) -> anyhow::Result<Self> {
        let root = super::runtime_dir(data_dir);
        std::fs::create_dir_all(root.join("builds"))?;
        std::fs::create_dir_all(root.join("volumes"))?;
        let root = root.canonicalize()?;
        use sha2::{Digest, Sha256};
        let id = hex::encode(&Sha256::digest(root.to_string_lossy().as_bytes())[..8]);
        let exe = std::env::current_exe()?;
        let base_env = ["PATH", "HOME", "LANG", "TZ", "CARGO_HOME", "RUSTUP_HOME", "USER"]
            .into_iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        Ok(LocalRuntime {
            root,
            static_server: format!("{} serve-static .", shell_quote(&exe.to_string_lossy())),
            spawner: Arc::new(Spawner { tag: format!("ROUNDHOUSE_RUNTIME_ID={id}"), base_env }),
            instances: Mutex::new(HashMap::new()),
            last_cpu: Mutex::new(HashMap::new()),
        })
    }

    /// The `KEY=value` entry that marks this runtime's processes.
    pub fn tag(&self) -> &str {
        &self.spawner.tag
    }

    fn ctl(&self, id: Uuid) -> Option<Arc<Ctl>> {
        self.instances.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    fn command(&self, script: &str, cwd: &Path, env: &BTreeMap<String, String>, marker: (&str, String)) -> Command {
        self.spawner.command(script, cwd, env, marker)
    }

    /// Runs a command to completion with its output in `logs`; answers its exit code.
    async fn run_logged(&self, mut cmd: Command, logs: &LogSink, cancel: &CancellationToken, marker: &str) -> Result<i32, String> {
        let mut child = cmd.spawn().map_err(|e| format!("Could not start the command: {e}"))?;
        let pid = child.id().unwrap_or(0) as i32;
        let pumps = pump_both(&mut child, logs.stream(Stream::Build, None));
        let status = tokio::select! {
            s = child.wait() => s.map_err(|e| e.to_string())?,
            _ = cancel.cancelled() => {
                terminate(pid, &mut child, Duration::from_secs(3)).await;
                kill_marked(marker);
                return Err("Cancelled".into());
            }
        };
        procfs::signal_group(pid, libc::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(2), pumps).await;
        Ok(status.code().unwrap_or(-1))
    }

    fn volume(&self, service: Uuid) -> PathBuf {
        self.root.join("volumes").join(service.to_string())
    }

    /// The start command of a database service, preparing its data folder on first use.
    async fn database_command(&self, spec: &InstanceSpec, logs: &LogSink) -> Result<(String, Option<(u32, u32)>), String> {
        let vol = self.volume(spec.spec.id);
        let port = spec.private_port;
        match spec.spec.source.as_str() {
            "postgres" => {
                let bin = postgres_bindir().ok_or(MISSING_POSTGRES)?;
                let user = run_as_unprivileged();
                let data = vol.join("pgdata");
                let sock = vol.join("socket");
                for d in [&vol, &sock] {
                    std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
                    chown(d, user);
                }
                if !data.join("PG_VERSION").exists() {
                    logs.system("Creating the database cluster (initdb)").await;
                    let pwfile = vol.join(".pwfile");
                    let password = spec.env.get("PGPASSWORD").cloned().unwrap_or_default();
                    std::fs::write(&pwfile, &password).map_err(|e| e.to_string())?;
                    chown(&pwfile, user);
                    let pguser = spec.env.get("PGUSER").cloned().unwrap_or_else(|| "postgres".into());
                    let script = format!(
                        "{}/initdb -D {} -U {} --pwfile={} --auth=scram-sha-256 -E UTF8 --no-instructions",
                        bin.display(),
                        shell_quote(&data.to_string_lossy()),
                        shell_quote(&pguser),
                        shell_quote(&pwfile.to_string_lossy())
                    );
                    let mut cmd = self.command(&script, &vol, &BTreeMap::new(), ("ROUNDHOUSE_INSTANCE_ID", spec.instance_id.to_string()));
                    if let Some((uid, gid)) = user {
                        cmd.uid(uid).gid(gid);
                    }
                    let code = self.run_logged(cmd, logs, &CancellationToken::new(), &format!("ROUNDHOUSE_INSTANCE_ID={}", spec.instance_id)).await;
                    let _ = std::fs::remove_file(&pwfile);
                    match code {
                        Ok(0) => {}
                        Ok(c) => return Err(format!("initdb exited with code {c}")),
                        Err(e) => return Err(e),
                    }
                }
                let script = format!(
                    "exec {}/postgres -D {} -h 127.0.0.1 -p {port} -k {}",
                    bin.display(),
                    shell_quote(&data.to_string_lossy()),
                    shell_quote(&sock.to_string_lossy())
                );
                Ok((script, user))
            }
            "redis" => {
                let server = which("redis-server").ok_or(MISSING_REDIS)?;
                std::fs::create_dir_all(&vol).map_err(|e| e.to_string())?;
                let conf = vol.join("redis.conf");
                let password = spec.env.get("REDISPASSWORD").cloned().unwrap_or_default();
                write_private(&conf, &format!("bind 127.0.0.1\nport {port}\ndir {}\nrequirepass {password}\nappendonly yes\nprotected-mode yes\n", vol.display()))
                    .map_err(|e| e.to_string())?;
                Ok((format!("exec {} {}", server.display(), shell_quote(&conf.to_string_lossy())), None))
            }
            other => Err(format!("Unknown database engine {other:?}: use postgres or redis.")),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn supervise(
        spawner: Arc<Spawner>,
        ctl: Arc<Ctl>,
        script: String,
        cwd: PathBuf,
        env: BTreeMap<String, String>,
        user: Option<(u32, u32)>,
        logs: LogSink,
        events: mpsc::UnboundedSender<InstanceEvent>,
        first: oneshot::Sender<Result<(), String>>,
    ) {
        let id = ctl.spec.instance_id;
        let replica = Some(ctl.spec.replica);
        let policy = ctl.spec.spec.restart_policy;
        let max = ctl.spec.spec.restart_max.max(0) as u32;
        let marker = format!("ROUNDHOUSE_INSTANCE_ID={id}");
        let mut first = Some(first);
        let mut restarts = 0u32;
        let mut backoff = Duration::from_secs(1);
        let gone = |reason: String, code: Option<i32>, stopped: bool| {
            ctl.state.send_replace(State::Gone(reason.clone()));
            let _ = events.send(InstanceEvent::Exited { instance_id: id, exit_code: code, reason, stopped });
        };
        loop {
            let mut cmd = spawner.command(&script, &cwd, &env, ("ROUNDHOUSE_INSTANCE_ID", id.to_string()));
            if let Some((uid, gid)) = user {
                cmd.uid(uid).gid(gid);
            }
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    let reason = format!("Could not start the process: {e}");
                    logs.system(&reason).await;
                    if let Some(f) = first.take() {
                        let _ = f.send(Err(reason.clone()));
                    }
                    gone(reason, None, false);
                    return;
                }
            };
            let pid = child.id().unwrap_or(0) as i32;
            ctl.pgid.store(pid, Ordering::SeqCst);
            let started = Instant::now();
            ctl.state.send_replace(State::Running { since: started });
            let _ = events.send(InstanceEvent::Started { instance_id: id, pid: pid as u32 });
            if let Some(f) = first.take() {
                let _ = f.send(Ok(()));
            }
            let pumps = pump_split(&mut child, logs.stream(Stream::Stdout, replica), logs.stream(Stream::Stderr, replica));
            let status = tokio::select! {
                s = child.wait() => Some(s),
                _ = ctl.stop.cancelled() => None,
            };
            let Some(status) = status else {
                terminate(pid, &mut child, GRACE).await;
                kill_marked(&marker);
                let _ = tokio::time::timeout(Duration::from_secs(2), pumps).await;
                ctl.pgid.store(0, Ordering::SeqCst);
                gone("Stopped".into(), None, true);
                return;
            };
            // Whatever the process left in its group goes with it.
            procfs::signal_group(pid, libc::SIGKILL);
            kill_marked(&marker);
            let _ = tokio::time::timeout(Duration::from_secs(2), pumps).await;
            ctl.pgid.store(0, Ordering::SeqCst);
            let code = status.as_ref().ok().and_then(|s| s.code());
            let how = describe_exit(status.as_ref().ok());
            if started.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_secs(1);
            }
            let restart = match policy {
                RestartPolicy::Never => false,
                RestartPolicy::OnFailure => code != Some(0) && restarts < max,
                RestartPolicy::Always => true,
            };
            if !restart || ctl.stop.is_cancelled() {
                let reason = if restarts > 0 { format!("{how} after {restarts} restarts") } else { how };
                logs.system(&reason).await;
                gone(reason, code, ctl.stop.is_cancelled());
                return;
            }
            restarts += 1;
            logs.system(&format!("{how}; restarting in {}s (restart {restarts})", backoff.as_secs())).await;
            ctl.state.send_replace(State::Restarting);
            let _ = events.send(InstanceEvent::Restarting { instance_id: id, exit_code: code, restart_in: backoff });
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = ctl.stop.cancelled() => {
                    gone("Stopped".into(), code, true);
                    return;
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Stops every instance (the platform is shutting down).
    pub async fn stop_all(&self) {
        let ids: Vec<Uuid> = self.instances.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        futures_util::future::join_all(ids.into_iter().map(|id| self.stop(id))).await;
    }
}

impl Spawner {
    fn command(&self, script: &str, cwd: &Path, env: &BTreeMap<String, String>, marker: (&str, String)) -> Command {
        let mut c = Command::new("/bin/sh");
        // A simple command replaces the shell, so the service's own process gets the signals.
        let simple = !script.contains(['&', '|', ';', '\n', '(', '`', '$', '<', '>']) && !script.starts_with("exec ");
        c.arg("-c")
            .arg(if simple { format!("exec {script}") } else { script.to_string() })
            .current_dir(cwd)
            .env_clear()
            .envs(self.base_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("LANG", "C.UTF-8")
            .envs(env)
            .env(self.tag.split_once('=').map(|(k, _)| k).unwrap_or_default(), self.tag.split_once('=').map(|(_, v)| v).unwrap_or_default())
            .env(marker.0, marker.1)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // A virtualenv made by the build comes first on PATH.
        if cwd.join(".venv/bin").is_dir() {
            let path = env.get("PATH").cloned().or_else(|| std::env::var("PATH").ok()).unwrap_or_default();
            c.env("PATH", format!("{}:{path}", cwd.join(".venv/bin").display()));
            c.env("VIRTUAL_ENV", cwd.join(".venv"));
        }
        c
    }

}

const MISSING_POSTGRES: &str =
    "PostgreSQL server binaries (initdb, postgres) are not installed on this machine: install the `postgresql` package.";
const MISSING_REDIS: &str = "redis-server is not installed on this machine: install the `redis-server` package.";

#[async_trait::async_trait]
impl Runtime for LocalRuntime {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn recover(&self) -> anyhow::Result<usize> {
        let found = procfs::tagged(&self.spawner.tag);
        for &pid in &found {
            match procfs::stat(pid) {
                Some(s) if s.pgrp == pid => procfs::signal_group(pid, libc::SIGKILL),
                _ => procfs::signal(pid, libc::SIGKILL),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while found.iter().any(|&p| procfs::alive(p)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(found.len())
    }

    async fn build(&self, job: BuildJob, logs: LogSink, cancel: CancellationToken) -> Result<String, String> {
        let dir = self.root.join("builds").join(job.deployment_id.to_string());
        let app = dir.join("app");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("Could not create the build folder: {e}"))?;
        let spec = &job.spec;
        match spec.source_kind {
            SourceKind::Image => {
                return Err("The local runtime cannot run container images: that needs the Kubernetes runtime.".into());
            }
            SourceKind::Database => {
                match spec.source.as_str() {
                    "postgres" if postgres_bindir().is_none() => return Err(MISSING_POSTGRES.into()),
                    "redis" if which("redis-server").is_none() => return Err(MISSING_REDIS.into()),
                    _ => {}
                }
                logs.stream(Stream::Build, None).line(&format!("Database: {} (system binaries, no build)", spec.source)).await;
                return Ok(dir.to_string_lossy().into_owned());
            }
            SourceKind::Directory => {
                let from = PathBuf::from(&spec.source);
                if !from.is_dir() {
                    return Err(format!("The source directory {} does not exist on this machine.", spec.source));
                }
                logs.stream(Stream::Build, None).line(&format!("Copying {}", spec.source)).await;
                let to = app.clone();
                let copied = tokio::task::spawn_blocking(move || copy_tree(&from, &to))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("Copying the source failed: {e}"))?;
                logs.stream(Stream::Build, None).line(&format!("Copied {copied} files")).await;
            }
            SourceKind::Git => {
                logs.stream(Stream::Build, None).line(&format!("Cloning {}", spec.source)).await;
                let script = format!("git clone --depth 1 --quiet {} app", shell_quote(&spec.source));
                let mut env = BTreeMap::new();
                env.insert("GIT_TERMINAL_PROMPT".to_string(), "0".to_string());
                let marker = format!("ROUNDHOUSE_BUILD_ID={}", job.deployment_id);
                let cmd = self.command(&script, &dir, &env, ("ROUNDHOUSE_BUILD_ID", job.deployment_id.to_string()));
                match self.run_logged(cmd, &logs, &cancel, &marker).await? {
                    0 => {}
                    c => return Err(format!("git clone exited with code {c}: check the URL and that the repository is reachable from this machine.")),
                }
            }
        }
        let plan = stack::detect(&app, spec.build_command.as_deref(), spec.start_command.as_deref(), &self.static_server);
        let build_log = logs.stream(Stream::Build, None);
        build_log.line(&format!("Detected: {}", plan.stack)).await;
        let Some(start) = plan.start else {
            return Err("Roundhouse cannot tell how to start this service: set a start command, or add a Cargo.toml, package.json, requirements.txt, pyproject.toml, Procfile or index.html.".into());
        };
        std::fs::write(app.join(START_FILE), &start).map_err(|e| e.to_string())?;
        if let Some(build) = plan.build {
            build_log.line(&format!("$ {build}")).await;
            let marker = format!("ROUNDHOUSE_BUILD_ID={}", job.deployment_id);
            let cmd = self.command(&build, &app, &job.env, ("ROUNDHOUSE_BUILD_ID", job.deployment_id.to_string()));
            let started = Instant::now();
            match self.run_logged(cmd, &logs, &cancel, &marker).await? {
                0 => build_log.line(&format!("Build finished in {:.1}s", started.elapsed().as_secs_f64())).await,
                c => return Err(format!("The build command exited with code {c}.")),
            }
        }
        build_log.line(&format!("Start command: {start}")).await;
        Ok(dir.to_string_lossy().into_owned())
    }

    fn has_artifact(&self, artifact: &str) -> bool {
        let p = Path::new(artifact);
        p.starts_with(&self.root) && p.is_dir()
    }

    async fn start(&self, spec: InstanceSpec, logs: LogSink, events: mpsc::UnboundedSender<InstanceEvent>) -> Result<SocketAddr, String> {
        let is_db = spec.spec.source_kind == SourceKind::Database;
        let port = if is_db { spec.private_port } else { free_port().map_err(|e| format!("No free port: {e}"))? };
        let mut env = spec.env.clone();
        env.insert("PORT".into(), port.to_string());
        if spec.spec.volume_path.is_some() && !is_db {
            let vol = self.volume(spec.spec.id).join("data");
            std::fs::create_dir_all(&vol).map_err(|e| e.to_string())?;
            env.insert("ROUNDHOUSE_VOLUME_MOUNT_PATH".into(), vol.to_string_lossy().into_owned());
        }
        let (script, cwd, user) = if is_db {
            let (script, user) = self.database_command(&spec, &logs).await?;
            (script, self.volume(spec.spec.id), user)
        } else {
            let app = PathBuf::from(&spec.artifact).join("app");
            let start = std::fs::read_to_string(app.join(START_FILE)).map_err(|_| "The build of this deployment is gone: deploy again.".to_string())?;
            (start, app, None)
        };
        let ctl = Arc::new(Ctl {
            spec: spec.clone(),
            port,
            pgid: AtomicI32::new(0),
            stop: CancellationToken::new(),
            state: watch::channel(State::Restarting).0,
            done: Mutex::new(None),
        });
        self.instances.lock().unwrap_or_else(|e| e.into_inner()).insert(spec.instance_id, ctl.clone());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(Self::supervise(self.spawner.clone(), ctl.clone(), script, cwd, env, user, logs, events, tx));
        *ctl.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        match rx.await {
            Ok(Ok(())) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("The instance supervisor ended before the process started.".into()),
        }
    }

    async fn ready(&self, instance_id: Uuid, deadline: Instant) -> Result<(), String> {
        let ctl = self.ctl(instance_id).ok_or("The instance is gone.")?;
        let s = &ctl.spec.spec;
        let health = s.healthcheck_path.clone().filter(|_| s.source_kind != SourceKind::Database);
        let worker_ok = health.is_none() && s.port.is_none() && s.source_kind != SourceKind::Database;
        let addr = SocketAddr::from(([127, 0, 0, 1], ctl.port));
        let mut state = ctl.state.subscribe();
        let mut last = String::from("no answer yet");
        loop {
            let current = state.borrow_and_update().clone();
            match current {
                State::Gone(reason) => return Err(format!("The process ended before it was ready: {reason}")),
                State::Running { since } => {
                    match &health {
                        Some(path) => match http_status(addr, path).await {
                            Ok(code) if (200..400).contains(&code) => return Ok(()),
                            Ok(code) => last = format!("it answered {code}"),
                            Err(e) => last = e,
                        },
                        None => {
                            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                                return Ok(());
                            }
                            if worker_ok && since.elapsed() >= WORKER_SETTLE {
                                return Ok(());
                            }
                        }
                    }
                }
                State::Restarting => {}
            }
            if Instant::now() >= deadline {
                let secs = s.healthcheck_timeout_secs;
                return Err(match &health {
                    Some(path) => format!("The health check GET {path} did not succeed within {secs}s ({last})."),
                    None => format!("The process did not listen on its PORT ({}) within {secs}s.", ctl.port),
                });
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), state.changed()).await;
        }
    }

    async fn stop(&self, instance_id: Uuid) {
        let Some(ctl) = self.ctl(instance_id) else { return };
        ctl.stop.cancel();
        let task = ctl.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.instances.lock().unwrap_or_else(|e| e.into_inner()).remove(&instance_id);
        self.last_cpu.lock().unwrap_or_else(|e| e.into_inner()).remove(&instance_id);
    }

    fn usage(&self) -> Vec<(Uuid, Usage)> {
        let ctls: Vec<Arc<Ctl>> = self.instances.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let tps = procfs::ticks_per_second() as f64;
        let mut last = self.last_cpu.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        ctls.iter()
            .filter_map(|c| {
                let pgid = c.pgid.load(Ordering::SeqCst);
                if pgid <= 0 {
                    return None;
                }
                let (ticks, bytes) = procfs::group_usage(pgid);
                let id = c.spec.instance_id;
                let cpu = match last.insert(id, (ticks, now)) {
                    Some((t0, at)) if ticks >= t0 => {
                        let secs = now.duration_since(at).as_secs_f64().max(0.001);
                        ((ticks - t0) as f64 / tps / secs * 100.0) as f32
                    }
                    _ => 0.0,
                };
                Some((id, Usage { cpu_percent: cpu, memory_bytes: bytes }))
            })
            .collect()
    }
}

/// SIGTERM to the group, SIGKILL after `grace`.
async fn terminate(pid: i32, child: &mut Child, grace: Duration) {
    procfs::signal_group(pid, libc::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        procfs::signal_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    procfs::signal_group(pid, libc::SIGKILL);
}

/// Kills processes that carry `marker` in their environment (ones that left their group).
fn kill_marked(marker: &str) {
    for pid in procfs::tagged(marker) {
        procfs::signal(pid, libc::SIGKILL);
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

async fn pump<R: AsyncRead + Unpin>(reader: R, sink: LogSink) {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => sink.line(&String::from_utf8_lossy(&buf)).await,
        }
    }
}

fn pump_split(child: &mut Child, out: LogSink, err: LogSink) -> impl std::future::Future<Output = ()> {
    let a = child.stdout.take().map(|s| tokio::spawn(pump(s, out)));
    let b = child.stderr.take().map(|s| tokio::spawn(pump(s, err)));
    async move {
        if let Some(a) = a {
            let _ = a.await;
        }
        if let Some(b) = b {
            let _ = b.await;
        }
    }
}

fn pump_both(child: &mut Child, sink: LogSink) -> impl std::future::Future<Output = ()> {
    pump_split(child, sink.clone(), sink)
}

/// The status code of `GET path` (HTTP/1.1, no body read).
async fn http_status(addr: SocketAddr, path: &str) -> Result<u16, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|_| "not listening".to_string())?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: roundhouse-health\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut head = [0u8; 64];
        let n = s.read(&mut head).await.map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&head[..n]);
        line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| "not an HTTP answer".to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), attempt).await.map_err(|_| "timed out".to_string())?
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(to)?;
    let mut n = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if SKIPPED.iter().any(|s| name == *s) {
            continue;
        }
        let kind = entry.file_type()?;
        let target = to.join(&name);
        if kind.is_dir() {
            n += copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
            n += 1;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
            n += 1;
        }
    }
    Ok(n)
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(|d| Path::new(d).join(program)))
        .find(|p| p.is_file())
}

fn postgres_bindir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    dirs.sort_by_key(|p| p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()));
    dirs.pop().or_else(|| which("initdb").and_then(|p| p.parent().map(Path::to_path_buf)))
}

/// PostgreSQL refuses to run as root: when the platform is root, databases run as the
/// `postgres` system user (or `nobody`).
fn run_as_unprivileged() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    for name in ["postgres", "nobody"] {
        let cname = std::ffi::CString::new(name).ok()?;
        // SAFETY: getpwnam returns NULL or a pointer to a static record we read at once.
        let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: checked non-null above.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Some((uid, gid));
        }
    }
    Some((65534, 65534))
}

fn chown(path: &Path, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    }
}

fn write_private(path: &Path, body: &str) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_tree_copy_skips_build_output_and_vcs() {
        let base = std::env::temp_dir().join(format!("rh-copy-{}", std::process::id()));
        let src = base.join("src");
        std::fs::create_dir_all(src.join("node_modules/x")).unwrap();
        std::fs::create_dir_all(src.join("lib")).unwrap();
        std::fs::write(src.join("lib/a.txt"), "a").unwrap();
        std::fs::write(src.join("node_modules/x/b"), "b").unwrap();
        assert_eq!(copy_tree(&src, &base.join("dst")).unwrap(), 1);
        assert!(base.join("dst/lib/a.txt").is_file());
        assert!(!base.join("dst/node_modules").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
