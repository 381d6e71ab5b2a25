//! `KubernetesRuntime`: the `Runtime` trait on a cluster. Each instance is applied as the
//! objects `manifests.rs` writes (server-side apply, field manager `roundhouse`); its state
//! comes from the cluster-wide pod watch (`pods.rs`), its output from the pod log API
//! (`pod_logs.rs`), its CPU and memory from metrics.k8s.io (`usage.rs`). Nothing lives only in
//! this process: a restarted platform, or another replica, finds every instance by its labels
//! (`adopt`) and follows it again without restarting it.

use super::{
    cluster::Cluster,
    manifests::{self, Quota, Target, Workload},
    pod_logs,
    pods::{Observed, PodState, Pods, NO_ROOM},
    usage, Settings,
};
use crate::{
    logs::LogSink,
    runtime::{Adoption, BuildJob, InstanceEvent, InstanceSpec, PrivateListener, Runtime, RuntimeError, Usage},
};
use app::{
    deployments::Stream,
    infra::live::Endpoint,
    services::{RestartPolicy, Service, SourceKind},
};
use kube::Client;
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What the runtime asks the platform about a project: the slug its namespaces are named by,
/// and what its owner's plan allows (the namespace's ResourceQuota).
#[derive(Debug, Clone)]
pub struct ProjectFacts {
    pub slug: String,
    pub quota: Quota,
}

#[async_trait::async_trait]
pub trait Projects: Send + Sync + 'static {
    async fn project(&self, id: Uuid) -> anyhow::Result<ProjectFacts>;
}

/// How long `stop` waits for an instance's pods to be gone.
const STOP_PATIENCE: Duration = Duration::from_secs(90);
/// What a restart is announced with (the kubelet's back-off starts at 10 s).
const RESTART_IN: Duration = Duration::from_secs(10);

/// An instance this process follows: its supervisor and log follower end with `cancel`.
struct Followed {
    cancel: CancellationToken,
    events: mpsc::UnboundedSender<InstanceEvent>,
}

pub struct KubernetesRuntime {
    cluster: Cluster,
    settings: Settings,
    projects: Arc<dyn Projects>,
    pods: Arc<Pods>,
    watching: tokio::task::JoinHandle<()>,
    followed: Arc<Mutex<HashMap<Uuid, Followed>>>,
    /// Instances `adopt` found running without this process, and when: their logs are
    /// followed from then on, not read again from their start.
    found: Mutex<HashMap<Uuid, k8s_openapi::jiff::Timestamp>>,
    holders: Arc<Holders>,
}

/// For each service with a StatefulSet, the instances that applied it, oldest first: the last
/// holds it. A newer instance that ends (a failed deploy) hands it back to the one before
/// that this process still follows, rather than deleting what still serves. Kept in memory: a
/// restarted platform relaunches the running deployment, whose instance applies it again.
#[derive(Default)]
struct Holders(Mutex<HashMap<Uuid, Vec<(Uuid, manifests::Object)>>>);

impl Holders {
    fn took(&self, service: Uuid, instance: Uuid, set: manifests::Object) {
        let mut holders = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let list = holders.entry(service).or_default();
        list.retain(|(i, _)| *i != instance);
        list.push((instance, set));
    }

    /// Takes `instance` off its service's holders; answers the StatefulSet of the latest
    /// instance before it that is still `alive`, when `instance` held it.
    fn hand_back(&self, instance: Uuid, alive: impl Fn(&Uuid) -> bool) -> Option<manifests::Object> {
        let mut holders = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (service, list) = holders.iter_mut().find(|(_, list)| list.iter().any(|(i, _)| *i == instance))?;
        let service = *service;
        let held = list.last().is_some_and(|(i, _)| *i == instance);
        list.retain(|(i, _)| *i != instance && alive(i));
        let previous = if held { list.last().map(|(_, set)| set.clone()) } else { None };
        if list.is_empty() {
            holders.remove(&service);
        }
        previous
    }
}

/// Ends an instance's objects: hands its StatefulSet back to the instance before (then only its
/// variables go), or deletes what it made.
async fn retire(cluster: &Cluster, holders: &Holders, followed: &Mutex<HashMap<Uuid, Followed>>, instance: Uuid) {
    let previous = holders.hand_back(instance, |i| followed.lock().unwrap_or_else(|e| e.into_inner()).contains_key(i));
    match previous {
        Some(previous) => {
            if let Err(e) = cluster.apply(&[previous]).await {
                tracing::warn!(error = %e, %instance, "handing a StatefulSet back to the instance before");
            }
            if let Err(e) = cluster.remove_secrets(instance).await {
                tracing::warn!(error = %e, %instance, "deleting an instance's variables");
            }
        }
        None => remove(cluster, instance).await,
    }
}

impl Drop for KubernetesRuntime {
    fn drop(&mut self) {
        self.watching.abort();
        for f in self.followed.lock().unwrap_or_else(|e| e.into_inner()).values() {
            f.cancel.cancel();
        }
    }
}

impl KubernetesRuntime {
    /// A runtime on `client`'s cluster; starts watching its pods.
    pub fn new(client: Client, settings: Settings, projects: Arc<dyn Projects>) -> Self {
        let (pods, watching) = Pods::watch(client.clone(), &settings.installation);
        let cluster = Cluster::new(client).for_installation(&settings.installation);
        KubernetesRuntime { cluster, settings, projects, pods, watching, followed: Arc::default(), found: Mutex::default(), holders: Arc::default() }
    }

    /// The cluster of `KUBECONFIG` or the service account, checked before anything is
    /// deployed: a cluster that cannot be reached or RBAC that lacks a verb is named at start.
    pub async fn connect(settings: Settings, projects: Arc<dyn Projects>) -> anyhow::Result<Self> {
        let cluster = Cluster::connect().await?;
        let missing = cluster.missing_permissions().await.map_err(|e| anyhow::anyhow!("the Kubernetes cluster cannot be reached: {e}"))?;
        anyhow::ensure!(
            missing.is_empty(),
            "Roundhouse's service account may not {} in the cluster: apply deploy/kubernetes/rbac.yaml (docs/kubernetes.md)",
            missing.join(", ")
        );
        Ok(KubernetesRuntime::new(cluster.client().clone(), settings, projects))
    }

    /// How long the cluster has not answered the pod watch, if it has not (for `/readyz`).
    pub fn unreachable_for(&self) -> Option<Duration> {
        self.pods.failing_for()
    }

    fn client(&self) -> &Client {
        self.cluster.client()
    }

    async fn target(&self, s: &Service) -> Result<(Target, Quota), RuntimeError> {
        let facts = self.projects.project(s.project_id).await.map_err(|e| RuntimeError::internal("The platform could not read the project.", e))?;
        let target = Target {
            project_id: s.project_id,
            project_slug: facts.slug,
            environment_id: s.environment_id,
            environment: s.environment.clone(),
            installation: self.settings.installation.clone(),
        };
        Ok((target, facts.quota))
    }

    /// The environment's Namespace, NetworkPolicy and ResourceQuota, and a copy of the
    /// platform's image pull secret when one is configured.
    async fn environment(&self, target: &Target, quota: Quota) -> Result<Vec<manifests::Object>, RuntimeError> {
        let mut objects = manifests::environment(target, quota, &self.settings);
        if let Some(name) = &self.settings.image_pull_secret {
            let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(self.client().clone(), &self.settings.platform_namespace);
            let original = api.get(name).await.map_err(|e| RuntimeError::internal("The platform's image pull secret could not be read.", e))?;
            objects.push(manifests::pull_secret(target, name, original));
        }
        Ok(objects)
    }

    fn follow(&self, spec: &InstanceSpec, logs: LogSink, events: mpsc::UnboundedSender<InstanceEvent>) {
        let id = spec.instance_id;
        let cancel = CancellationToken::new();
        let previous = self.followed.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Followed { cancel: cancel.clone(), events: events.clone() });
        if let Some(previous) = previous {
            previous.cancel.cancel();
        }
        let out = logs.stream(Stream::Stdout, Some(spec.replica));
        let since = self.found.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        tokio::spawn(pod_logs::follow(self.client().clone(), self.pods.subscribe(id), out, cancel.clone(), since));
        let supervisor = Supervisor {
            id,
            one_off: spec.command.is_some() || spec.spec.cron_schedule.is_some(),
            policy: spec.spec.restart_policy,
            max: spec.spec.restart_max.max(0),
            cluster: self.cluster.clone(),
            holders: self.holders.clone(),
            followed: self.followed.clone(),
            logs: logs.stream(Stream::System, Some(spec.replica)),
            events,
        };
        tokio::spawn(supervisor.run(self.pods.subscribe(id), cancel));
    }

    /// Runs a build Job to its end: its log into `logs`, the image it pushed as the answer.
    async fn build_in_cluster(&self, job: BuildJob, logs: LogSink, cancel: CancellationToken) -> Result<String, RuntimeError> {
        let registry = self.settings.registry.clone().ok_or("Building from source on this cluster needs a registry to push to: the platform's administrator sets ROUNDHOUSE_K8S_REGISTRY.")?;
        let (target, quota) = self.target(&job.spec).await?;
        let env = BTreeMap::new();
        let w = Workload {
            target: &target,
            service: &job.spec,
            deployment_id: job.deployment_id,
            instance_id: job.deployment_id,
            command: None,
            image: String::new(),
            env: &env,
            volume_gb: quota.volume_gb,
        };
        let build = manifests::build_job(&w, &self.settings, manifests::BuildLimits::of(quota, self.settings.build_timeout_secs))?;
        let image = manifests::built_image(&w, &registry);
        let mut objects = self.environment(&target, quota).await?;
        objects.push(build);
        self.cluster.apply(&objects).await.map_err(|e| RuntimeError::internal("The cluster refused the build.", e))?;
        // Should this future be dropped (the build timed out, the platform shuts down), the
        // Job goes too; its own deadline covers a platform that dies.
        let mut guard = BuildGuard { cluster: self.cluster.clone(), deployment: job.deployment_id, armed: true };
        logs.system("Building the image in the cluster").await;
        let stop = CancellationToken::new();
        let output = tokio::spawn(pod_logs::follow(self.client().clone(), self.pods.subscribe(job.deployment_id), logs.stream(Stream::Build, None), stop.clone(), None));
        let mut pod = self.pods.subscribe(job.deployment_id);
        let outcome = loop {
            let state = pod.borrow_and_update().state.clone();
            match state {
                PodState::Ended { exit_code: Some(0) } => break Ok(image),
                PodState::Ended { exit_code } => {
                    break Err(RuntimeError::user(format!("The build failed (exit code {}): its log above says why.", exit_code.map_or("unknown".into(), |c| c.to_string()))))
                }
                PodState::Stuck { user, internal } | PodState::Pulling { user, internal } => {
                    break Err(RuntimeError::internal(format!("The build could not run: {user}"), internal))
                }
                PodState::Gone => break Err(RuntimeError::user("The build's pod was deleted before it finished.")),
                _ => {}
            }
            tokio::select! {
                changed = pod.changed() => if changed.is_err() { break Err(RuntimeError::user("The build's pod is gone.")) },
                _ = cancel.cancelled() => break Err(RuntimeError::user("The build was cancelled.")),
            }
        };
        // A finished build's whole log is stored (the follower ends by itself); a failed or
        // cancelled one's Job goes at once.
        guard.armed = false;
        if outcome.is_ok() {
            let _ = output.await;
        } else {
            stop.cancel();
            if let Err(e) = self.cluster.remove_instance(job.deployment_id).await {
                tracing::warn!(error = %e, deployment = %job.deployment_id, "deleting a build's Job");
            }
        }
        self.pods.forget(job.deployment_id);
        outcome
    }
}

#[async_trait::async_trait]
impl Runtime for KubernetesRuntime {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn supports(&self, kind: SourceKind) -> Result<(), String> {
        match kind {
            SourceKind::Image | SourceKind::Database => Ok(()),
            SourceKind::Git if self.settings.registry.is_some() => Ok(()),
            SourceKind::Git => Err("This platform builds no git sources (its cluster has no registry to push builds to): deploy an image.".into()),
            SourceKind::Upload => Err("Uploaded sources are not built on this platform's cluster yet: deploy an image or a git repository.".into()),
            SourceKind::Directory => Err("A folder of the platform's machine cannot run on a cluster.".into()),
        }
    }

    async fn adopt(&self) -> anyhow::Result<Adoption> {
        let all = self.cluster.instances().await.map_err(|e| anyhow::anyhow!("listing the cluster's instances: {e}"))?;
        // Builds an earlier leader ran have nobody waiting for them: their deployments are
        // built again or failed by the reconciler.
        let cleaned = if self.followed.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
            self.cluster.remove_builds().await.map_err(|e| anyhow::anyhow!("deleting orphaned builds: {e}"))?
        } else {
            0
        };
        let (running, found): (Vec<Uuid>, Vec<Uuid>) = {
            let followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
            all.into_iter().partition(|id| followed.contains_key(id))
        };
        let now = k8s_openapi::jiff::Timestamp::now();
        self.found.lock().unwrap_or_else(|e| e.into_inner()).extend(found.iter().map(|id| (*id, now)));
        Ok(Adoption { running, found, cleaned })
    }

    async fn release(&self) {
        for (_, f) in self.followed.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            f.cancel.cancel();
        }
    }

    async fn build(&self, job: BuildJob, logs: LogSink, cancel: CancellationToken) -> Result<String, RuntimeError> {
        match job.spec.source_kind {
            SourceKind::Image => {
                // The platform's registry holds every tenant's builds; they are deployed
                // through their own services' builds, never named by another tenant.
                if let Some(registry) = &self.settings.registry {
                    let registry = registry.trim_end_matches('/').to_ascii_lowercase();
                    let source = job.spec.source.to_ascii_lowercase();
                    let host = |r: &str| r.split('/').next().unwrap_or_default().split(':').next().unwrap_or_default().to_string();
                    if source.starts_with(&format!("{registry}/")) || source == registry || host(&source) == host(&registry) {
                        return Err(RuntimeError::user("Images of the platform's own registry are deployed through the services that build them."));
                    }
                }
                logs.system(&format!("Deploying the image {}", job.spec.source)).await;
                Ok(job.spec.source.clone())
            }
            SourceKind::Database => manifests::database_image(&job.spec.source)
                .map(str::to_string)
                .ok_or_else(|| RuntimeError::user(format!("No database engine is called {:?}.", job.spec.source))),
            SourceKind::Git => self.build_in_cluster(job, logs, cancel).await,
            kind => Err(RuntimeError::user(self.supports(kind).err().unwrap_or_default())),
        }
    }

    /// Images live in registries the platform cannot list cheaply: a rollback pulls again, and
    /// an image gone from its registry shows as the instance's pull error.
    async fn has_artifact(&self, artifact: &str) -> bool {
        !artifact.is_empty()
    }

    async fn start(&self, spec: InstanceSpec, logs: LogSink, events: mpsc::UnboundedSender<InstanceEvent>) -> Result<Endpoint, RuntimeError> {
        if spec.replica > 0 && spec.command.is_none() && manifests::stateful(&spec.spec) {
            return Err(RuntimeError::user("A service with a volume runs one instance on a cluster (one writer of its volume): set its replicas to 1."));
        }
        let (target, quota) = self.target(&spec.spec).await?;
        let w = Workload {
            target: &target,
            service: &spec.spec,
            deployment_id: spec.deployment_id,
            instance_id: spec.instance_id,
            command: spec.command.as_deref(),
            image: spec.artifact.clone(),
            env: &spec.env,
            volume_gb: quota.volume_gb,
        };
        let mut objects = self.environment(&target, quota).await?;
        objects.extend(manifests::workload(&w, &self.settings));
        for object in objects.iter_mut() {
            if let manifests::Object::StatefulSet(set) = object {
                // A claim template cannot change once made (the plan's volume size may have):
                // the one the StatefulSet has is kept.
                let existing = self.cluster.claim_templates(&manifests::namespace_name(&target), &manifests::stateful_name(&spec.spec)).await;
                if let (Ok(Some(claims)), Some(set_spec)) = (existing, set.spec.as_mut()) {
                    set_spec.volume_claim_templates = Some(claims);
                }
                self.holders.took(spec.spec.id, spec.instance_id, manifests::Object::StatefulSet(set.clone()));
            }
        }
        // Applying what already runs (an instance taken back) changes nothing, so nothing restarts.
        let applied = self.cluster.apply(&objects).await.map_err(|e| RuntimeError::internal("The cluster refused the service's objects.", e))?;
        self.follow(&spec, logs, events);
        let ip = applied.cluster_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(Endpoint { network: None, addr: SocketAddr::new(ip, manifests::port(&spec.spec)) })
    }

    async fn ready(&self, instance_id: Uuid, deadline: Instant) -> Result<(), RuntimeError> {
        let mut pod = self.pods.subscribe(instance_id);
        let mut crashed: Option<Option<i32>> = None;
        let mut no_room: Option<String> = None;
        let mut pulling: Option<(String, String)> = None;
        loop {
            let now = pod.borrow_and_update().state.clone();
            match now {
                PodState::Running { ready: true, .. } => return Ok(()),
                PodState::Stuck { user, internal } => return Err(RuntimeError::internal(user, internal)),
                // The kubelet keeps trying; said at the deadline if it never succeeds.
                PodState::Pulling { user, internal } => pulling = Some((user, internal)),
                PodState::Ended { exit_code } => return Err(RuntimeError::user(exited(exit_code))),
                PodState::Gone => return Err(RuntimeError::user("It was stopped before it was ready.")),
                PodState::BackingOff { last_exit, .. } => crashed = Some(last_exit),
                // It may yet be scheduled before the deadline.
                PodState::Unschedulable { internal } => no_room = Some(internal),
                PodState::Running { .. } | PodState::Pending => {}
            }
            tokio::select! {
                changed = pod.changed() => if changed.is_err() { return Err(RuntimeError::user("It was stopped before it was ready.")) },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(match (pulling, crashed, no_room) {
                        (Some((user, internal)), _, _) => RuntimeError::internal(user, internal),
                        (None, Some(code), _) => RuntimeError::user(format!("It was not ready in time: it keeps crashing ({}).", exited(code))),
                        (None, None, Some(internal)) => RuntimeError::internal(format!("It was not ready in time. {NO_ROOM}"), internal),
                        (None, None, None) => RuntimeError::user("It was not ready in time: its health check never passed."),
                    });
                }
            }
        }
    }

    async fn stop(&self, instance_id: Uuid) {
        // The supervisor ends first, so the pods' going reads as a stop, not a crash.
        let followed = self.followed.lock().unwrap_or_else(|e| e.into_inner()).remove(&instance_id);
        if let Some(f) = &followed {
            f.cancel.cancel();
        }
        // A newer instance stopped while an older one still serves: the older one's StatefulSet
        // is applied again (its pod comes back), and only this one's variables go.
        retire(&self.cluster, &self.holders, &self.followed, instance_id).await;
        self.pods.forget(instance_id);
        if let Some(f) = followed {
            let _ = f.events.send(InstanceEvent::Exited { instance_id, exit_code: None, reason: "Stopped".into(), stopped: true });
        }
    }

    async fn usage(&self) -> Vec<(Uuid, Usage)> {
        usage::usage(self.client(), &self.settings.installation).await.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "the cluster's metrics API did not answer (is metrics-server installed?)");
            Vec::new()
        })
    }

    /// What each volume claim holds for its service (its provisioned size: what a cluster bills).
    async fn volume_sizes(&self) -> Vec<(Uuid, u64)> {
        self.cluster.volume_claims().await.unwrap_or_default()
    }

    async fn remove_volume(&self, service_id: Uuid) -> Result<(), RuntimeError> {
        self.cluster.remove_claims(service_id).await.map_err(|e| RuntimeError::internal("The volume could not be removed.", e))
    }

    async fn environments(&self) -> Result<Vec<Uuid>, RuntimeError> {
        self.cluster.namespaces().await.map_err(|e| RuntimeError::internal("The cluster's namespaces could not be listed.", e))
    }

    async fn remove_environment(&self, environment_id: Uuid) -> Result<(), RuntimeError> {
        self.cluster.remove_namespace(&manifests::namespace_of(environment_id)).await.map_err(|e| RuntimeError::internal("The environment's namespace could not be removed.", e))
    }

    async fn private_listener(&self, _environment_id: Uuid, _addr: std::net::SocketAddrV4) -> Result<PrivateListener, RuntimeError> {
        Err(RuntimeError::user("Services on a cluster reach each other through its Services."))
    }

    /// None: an environment's namespace resolves each service's bare name to its Service.
    fn private_addrs(&self, _private_port: u16, _known_ports: &[u16], _itself_on_private_port: bool) -> Vec<std::net::SocketAddrV4> {
        Vec::new()
    }
}

/// How long the cluster may fail to answer before `/readyz` says so.
const UNREACHABLE_AFTER: Duration = Duration::from_secs(30);

/// Keeps `/readyz` in step with the cluster: while it has not answered for
/// [`UNREACHABLE_AFTER`], the replica reports it (admission is left alone: an outage holds
/// reconciling up, it must not fail or stop anyone's deployment).
pub fn report_health(runtime: Arc<KubernetesRuntime>, state: app::infra::AppState) {
    let runtime = Arc::downgrade(&runtime);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let Some(runtime) = runtime.upgrade() else { return };
            let trouble = match runtime.unreachable_for() {
                Some(away) if away >= UNREACHABLE_AFTER => Some(format!("the Kubernetes cluster has not answered for {}s", away.as_secs())),
                _ => None,
            };
            state.set_runtime_trouble(trouble);
        }
    });
}

fn exited(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("it exited with code {c}"),
        None => "it exited".to_string(),
    }
}

/// Deletes an instance's objects, waits for its pods, and prunes its service's Service and
/// Ingress if it was the service's last instance.
async fn remove(cluster: &Cluster, instance_id: Uuid) {
    match cluster.remove_instance(instance_id).await {
        Ok(retired) => {
            let owner = retired.owner;
            if !cluster.pods_gone(instance_id, STOP_PATIENCE).await {
                tracing::warn!(instance = %instance_id, "its pods were still there {}s after it was deleted", STOP_PATIENCE.as_secs());
            }
            if let Some((namespace, service)) = owner {
                // A StatefulSet being deleted must be gone before the service's next instance
                // applies one of the same name.
                if let (true, Ok(id)) = (retired.stateful_set, service.parse::<Uuid>()) {
                    cluster.stateful_set_gone(&namespace, &format!("state-{}", id.simple()), STOP_PATIENCE).await;
                }
                if let Err(e) = cluster.prune_service(&namespace, &service).await {
                    tracing::warn!(error = %e, %namespace, %service, "pruning a service's Service and Ingress");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, instance = %instance_id, "deleting an instance's objects"),
    }
}

/// Deletes a build's Job if the build is dropped before it finished.
struct BuildGuard {
    cluster: Cluster,
    deployment: Uuid,
    armed: bool,
}

impl Drop for BuildGuard {
    fn drop(&mut self) {
        if self.armed {
            let (cluster, deployment) = (self.cluster.clone(), self.deployment);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(e) = cluster.remove_instance(deployment).await {
                        tracing::warn!(error = %e, %deployment, "deleting an abandoned build's Job");
                    }
                });
            }
        }
    }
}

/// Turns an instance's pod states into the platform's instance events, and applies the
/// service's restart policy (the kubelet restarts a container always; the platform ends an
/// instance whose policy says it is done — a run later than on the local runtime, where the
/// platform decides before restarting: under `never`, a crashed container may have been
/// started once more when it is deleted).
struct Supervisor {
    id: Uuid,
    /// A one-off run (a Job): its end is the instance's. A serving pod that ends (evicted, its
    /// node lost) is replaced by its controller instead.
    one_off: bool,
    policy: RestartPolicy,
    max: i32,
    cluster: Cluster,
    holders: Arc<Holders>,
    followed: Arc<Mutex<HashMap<Uuid, Followed>>>,
    logs: LogSink,
    events: mpsc::UnboundedSender<InstanceEvent>,
}

impl Supervisor {
    async fn run(self, mut pod: watch::Receiver<Observed>, cancel: CancellationToken) {
        let id = self.id;
        let mut started = false;
        // The restarts of each pod this process has seen: counted from the first look, so
        // restarts before it followed the instance (taken back) are not told again, and a
        // replacement pod's count starts afresh.
        let mut seen: Option<(String, i32)> = None;
        let mut told = false;
        loop {
            let now = pod.borrow_and_update().clone();
            match now.state {
                PodState::Running { restarts, last_exit, .. } | PodState::BackingOff { restarts, last_exit } => {
                    let name = now.pod.clone().unwrap_or_default();
                    let before = match &seen {
                        Some((p, n)) if *p == name => *n,
                        // A pod that replaced one this process saw: all its restarts are new.
                        Some(_) => 0,
                        None => restarts,
                    };
                    seen = Some((name, restarts));
                    if restarts > before {
                        let code = last_exit;
                        let restart = match self.policy {
                            RestartPolicy::Never => false,
                            RestartPolicy::OnFailure => code != Some(0) && restarts <= self.max,
                            RestartPolicy::Always => true,
                        };
                        if !restart {
                            let how = exited(code);
                            let reason = if restarts > 1 { format!("{how} after {} restarts", restarts - 1) } else { how };
                            self.end(reason, code).await;
                            return;
                        }
                        self.logs.line(&format!("It exited ({}); the cluster starts it again (restart {restarts})", exited(code))).await;
                        let _ = self.events.send(InstanceEvent::Restarting { instance_id: id, exit_code: code, restart_in: RESTART_IN });
                        started = false;
                    }
                    if matches!(now.state, PodState::Running { .. }) && !started {
                        started = true;
                        let _ = self.events.send(InstanceEvent::Started { instance_id: id, pid: 0 });
                    }
                    told = false;
                }
                PodState::Ended { exit_code } if self.one_off => {
                    self.finish(exited(exit_code), exit_code).await;
                    return;
                }
                PodState::Ended { .. } if !told => {
                    told = true;
                    self.logs.line("Its pod ended (evicted, or its node went away); the cluster starts another.").await;
                }
                // Told once; the cluster keeps trying (a node may free up, an image appear).
                PodState::Stuck { user, internal } | PodState::Pulling { user, internal } if !told => {
                    told = true;
                    tracing::info!(instance = %id, detail = %internal, "{user}");
                    self.logs.line(&user).await;
                }
                PodState::Unschedulable { internal } if !told => {
                    told = true;
                    tracing::info!(instance = %id, detail = %internal, "{NO_ROOM}");
                    self.logs.line(NO_ROOM).await;
                }
                // A pod the cluster replaces (a node drained): its successor is on its way.
                PodState::Ended { .. } | PodState::Stuck { .. } | PodState::Pulling { .. } | PodState::Unschedulable { .. } | PodState::Pending | PodState::Gone => {}
            }
            tokio::select! {
                changed = pod.changed() => if changed.is_err() { return },
                _ = cancel.cancelled() => return,
            }
        }
    }

    fn unfollow(&self) {
        if let Some(f) = self.followed.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id) {
            f.cancel.cancel();
        }
    }

    /// The policy says it is done: its objects go, and the platform is told why.
    async fn end(&self, reason: String, code: Option<i32>) {
        self.logs.line(&reason).await;
        self.unfollow();
        retire(&self.cluster, &self.holders, &self.followed, self.id).await;
        let _ = self.events.send(InstanceEvent::Exited { instance_id: self.id, exit_code: code, reason, stopped: false });
    }

    /// A one-off run ended by itself: its variables go at once; its Job stays for the
    /// cluster's TTL (its log follower stores the last lines and ends by itself).
    async fn finish(&self, reason: String, code: Option<i32>) {
        self.followed.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
        self.holders.hand_back(self.id, |_| false);
        if let Err(e) = self.cluster.remove_secrets(self.id).await {
            tracing::warn!(error = %e, instance = %self.id, "deleting a finished run's variables");
        }
        let _ = self.events.send(InstanceEvent::Exited { instance_id: self.id, exit_code: code, reason, stopped: false });
    }
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod tests;
