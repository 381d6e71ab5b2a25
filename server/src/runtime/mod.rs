//! Runtimes run what deployments describe. The trait says *what* runs — a build of a source,
//! instances of a build with their variables, readiness, stopping — and each runtime decides
//! *how*: `local` runs supervised process groups on this machine; a Kubernetes runtime runs
//! the same specs as pods.

pub mod kubernetes;
pub mod local;
pub mod net;
pub mod procfs;
pub mod sandbox;
pub mod stack;

use crate::logs::LogSink;
use app::{
    infra::live::Endpoint,
    services::{Service, SourceKind},
};
use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Why a runtime could not do something. `user` is what the deployment's owner is told (its
/// reason, its logs); `internal` is for the platform's own log only — paths on the host, system
/// errors, what a cluster answered — and never reaches a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeError {
    pub user: String,
    pub internal: Option<String>,
}

impl RuntimeError {
    /// An error whose whole story is the user's to read.
    pub fn user(message: impl Into<String>) -> Self {
        RuntimeError { user: message.into(), internal: None }
    }

    /// `user` for the owner, `detail` for the platform's log.
    pub fn internal(user: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        RuntimeError { user: user.into(), internal: Some(detail.to_string()) }
    }

    /// Logs the internal part, if any, and answers what the user is told: where the error
    /// leaves the runtime for a user's eyes.
    pub fn shown(self) -> String {
        if let Some(detail) = &self.internal {
            tracing::warn!(error = %detail, "{}", self.user);
        }
        self.user
    }
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.user)
    }
}

impl From<String> for RuntimeError {
    fn from(user: String) -> Self {
        RuntimeError::user(user)
    }
}

impl From<&str> for RuntimeError {
    fn from(user: &str) -> Self {
        RuntimeError::user(user)
    }
}

/// What to build: a deployment's source, with its resolved variables (builds may read them).
#[derive(Debug, Clone)]
pub struct BuildJob {
    pub deployment_id: Uuid,
    pub spec: Service,
    pub env: BTreeMap<String, String>,
    /// The uploaded archive of an `upload` source (checked when it was accepted).
    pub archive: Option<Arc<Vec<u8>>>,
}

/// One instance to run: a replica of a deployment's build.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub instance_id: Uuid,
    pub deployment_id: Uuid,
    pub replica: i32,
    pub spec: Service,
    /// Where the build is (from `Runtime::build`).
    pub artifact: String,
    /// The service's resolved variables; the runtime adds `PORT`.
    pub env: BTreeMap<String, String>,
    /// The service's stable private port (a database listens on it itself).
    pub private_port: u16,
    /// A one-off command to run instead of the build's start command (a pre-deploy step).
    pub command: Option<String>,
    /// The services of its environment (itself included): what their bare names reach.
    pub peers: Vec<Peer>,
}

/// A service of an environment as the others address it: by its bare name (`db`, `db:5432`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub private_port: u16,
}

impl Peer {
    pub fn of(env: &app::deployments::environment::DeployEnvironment) -> Vec<Peer> {
        env.services.iter().filter(|s| s.private_port != 0).map(|s| Peer { name: s.name.clone(), private_port: s.private_port }).collect()
    }
}

/// What happens to an instance after it was started, reported by the runtime.
#[derive(Debug, Clone)]
pub enum InstanceEvent {
    /// `pid`: the host process that stands for the instance (for the record only).
    Started { instance_id: Uuid, pid: u32 },
    /// It exited and will be started again after `restart_in`.
    Restarting { instance_id: Uuid, exit_code: Option<i32>, restart_in: Duration },
    /// It exited for good (restart policy exhausted, or it was stopped).
    Exited { instance_id: Uuid, exit_code: Option<i32>, reason: String, stopped: bool },
}

/// What a runtime found when a replica began to lead (`Runtime::adopt`).
#[derive(Debug, Default)]
pub struct Adoption {
    /// Instances this process runs, or is restarting per their policy.
    pub running: Vec<Uuid>,
    /// Instances that run without this process following them: an earlier process of the
    /// platform (or another replica) started them. `start` with one of their ids takes it back
    /// as it is (same process, same address); `stop` ends it.
    pub found: Vec<Uuid>,
    /// Leftovers it removed (processes, cgroups, networks, objects).
    pub cleaned: usize,
}

/// CPU and memory of one instance.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_percent: f32,
    pub memory_bytes: u64,
}

#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Whether this runtime can run services of `kind`; `Err` says why not, for the user (the
    /// domain asks before queueing a deployment: `AppState::refused_source`).
    fn supports(&self, kind: SourceKind) -> Result<(), String> {
        let _ = kind;
        Ok(())
    }

    /// Called each time this replica begins to lead: answers the instances that run and may be
    /// kept. The reconciler keeps those its desired state still wants and replaces only the
    /// rest, so a leadership change (a database restart, a control-plane rollout) restarts no
    /// one's service. What the runtime cannot account for (what an earlier process of the
    /// platform left and nothing can take back) it removes, and counts.
    async fn adopt(&self) -> anyhow::Result<Adoption>;

    /// This replica stops leading (it shuts down, or another one leads): the runtime lets go
    /// of what it follows and leaves it running for the next leader to adopt. A runtime whose
    /// workloads cannot outlive this process stops them.
    async fn release(&self);

    /// Builds a deployment; answers where the build is. Logs go to `logs`; `cancel` stops it.
    async fn build(&self, job: BuildJob, logs: LogSink, cancel: CancellationToken) -> Result<String, RuntimeError>;

    /// Whether a build from an earlier deployment can still be run (a folder here; an image a
    /// registry still holds, on a cluster).
    async fn has_artifact(&self, artifact: &str) -> bool;

    /// The builds this runtime holds: the deployment each was made for, and its artifact (what
    /// `build` answered). A runtime whose builds live elsewhere (an image registry) lists none.
    async fn builds(&self) -> Result<Vec<(Uuid, String)>, RuntimeError> {
        Ok(Vec::new())
    }

    /// Removes one build for good (retention). It is out of reach at once (`has_artifact` is
    /// false as this returns); the space may be freed later.
    async fn remove_build(&self, artifact: &str) -> Result<(), RuntimeError> {
        let _ = artifact;
        Ok(())
    }

    /// Starts an instance and keeps it running per its restart policy, reporting on `events`.
    /// Answers where it serves (reach it with `net::connect`). An instance `adopt` found is
    /// taken back instead: nothing new starts.
    async fn start(&self, spec: InstanceSpec, logs: LogSink, events: mpsc::UnboundedSender<InstanceEvent>) -> Result<Endpoint, RuntimeError>;

    /// Waits until the instance is ready for traffic: its health check answers, or it listens.
    async fn ready(&self, instance_id: Uuid, deadline: Instant) -> Result<(), RuntimeError>;

    /// Stops an instance (graceful, then forced) and waits until it is gone.
    async fn stop(&self, instance_id: Uuid);

    /// CPU and memory per running instance (its cgroup here; metrics.k8s.io on a cluster).
    async fn usage(&self) -> Vec<(Uuid, Usage)>;

    /// What each service's volume holds, in bytes (volumes are billed while they exist,
    /// running or not).
    async fn volume_sizes(&self) -> Vec<(Uuid, u64)> {
        Vec::new()
    }

    /// Removes what a deleted service left behind that outlives its instances: its volume.
    /// Called only for services the platform no longer has.
    async fn remove_volume(&self, service_id: Uuid) -> Result<(), RuntimeError> {
        let _ = service_id;
        Ok(())
    }

    /// The environments this runtime holds something of their own for (a cluster's
    /// namespaces); `remove_environment` removes it once the environment is deleted.
    async fn environments(&self) -> Result<Vec<Uuid>, RuntimeError> {
        Ok(Vec::new())
    }

    async fn remove_environment(&self, environment_id: Uuid) -> Result<(), RuntimeError> {
        let _ = environment_id;
        Ok(())
    }

    /// A listener at `addr` in the network the environment's services share: how a service is
    /// reachable by the others at a stable address (`ROUNDHOUSE_PRIVATE_DOMAIN`, and its bare
    /// name: see `private_addrs`). The network stays up while the listener lives.
    async fn private_listener(&self, environment_id: Uuid, addr: std::net::SocketAddrV4) -> Result<PrivateListener, RuntimeError>;

    /// Where a service answers the others of its environment: its private port on the
    /// network's loopback, and the addresses its bare name resolves to with the ports it is
    /// known by (`known_ports`).
    /// `itself_on_private_port`: the service listens on its private port itself (a database).
    fn private_addrs(&self, private_port: u16, known_ports: &[u16], itself_on_private_port: bool) -> Vec<std::net::SocketAddrV4>;
}

/// What `runtime` refuses, by source kind, as the app state keeps it for the domain.
pub fn refusals(runtime: &dyn Runtime) -> Vec<(String, String)> {
    SourceKind::ALL.iter().filter_map(|k| runtime.supports(*k).err().map(|why| (k.as_str().to_string(), why))).collect()
}

/// A listener in a runtime's network, holding that network up while it lives.
pub struct PrivateListener {
    pub listener: tokio::net::TcpListener,
    pub hold: Box<dyn std::any::Any + Send + Sync>,
}

/// Data folders of the runtime, for tests and docs.
pub fn runtime_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("runtime")
}
