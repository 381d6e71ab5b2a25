//! What a project environment and its services become in a cluster, as k8s-openapi objects.
//! Pure functions of the service's settings and the deployment: the golden files in `golden/`
//! show every kind (stateless, volume, database, cron, image, build job), reviewed by eye.
//!
//! - Environment → Namespace `rh-<project>-<environment>`, a NetworkPolicy that lets in only the
//!   namespace's own pods, the ingress controller's and the platform's (the cluster's
//!   counterpart of the local sandbox's network), and a ResourceQuota from the owner's plan.
//! The platform's engine rolls deployments out itself, on every runtime alike (start the new
//! instances, wait until they are ready, move traffic, stop the old ones: the same states and
//! logs whichever runtime runs them), so what the cluster gets is per *instance*:
//! - Instance → a Secret with its resolved variables (`envFrom`).
//! - Instance of a stateless service → a Deployment of one pod (`<service>-<instance>`), which
//!   the cluster reschedules if its node goes. The service's Service and Ingress select every
//!   ready pod of the service, so the old and the new instances share traffic during a switch.
//! - Instance of a service with a volume, or of a database → the service's StatefulSet (one
//!   per service, so its volume claim `data-<service>-0` outlives deployments), taken over by
//!   each new instance + headless Service + Service.
//! - A one-off run (a pre-deploy command, a cron run; the platform keeps the schedule so that
//!   it checks suspension and billing before each run) → a Job of one try.
//! - Source build → Job running the builder, pushing to the configured registry.
//!
//! Every object carries `app.kubernetes.io/managed-by=roundhouse` and the project,
//! environment, service, deployment and instance it belongs to, so what is no longer needed can
//! be found and pruned by label. Pods run as non-root, without privilege escalation or capabilities,
//! with the default seccomp profile and no service account token.

use super::Settings;
use app::services::{Service, SourceKind};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet, StatefulSetSpec},
        batch::v1::{Job, JobSpec},
        core::v1::{
            Capabilities, Container, ContainerPort, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, LimitRange, LimitRangeItem,
            LimitRangeSpec, LocalObjectReference, Namespace,
            PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceQuota,
            ResourceQuotaSpec, ResourceRequirements, SeccompProfile, Secret, SecretEnvSource, SecretKeySelector, SecurityContext,
            Service as KService, ServicePort, ServiceSpec, TCPSocketAction, VolumeMount, VolumeResourceRequirements,
        },
        networking::v1::{
            HTTPIngressPath, HTTPIngressRuleValue, IPBlock, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
            IngressTLS, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
            NetworkPolicySpec, ServiceBackendPort,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

pub const MANAGED_BY: &str = "roundhouse";
const LABEL_PROJECT: &str = "roundhouse.dev/project";
pub const LABEL_ENVIRONMENT: &str = "roundhouse.dev/environment";
pub const LABEL_SERVICE: &str = "roundhouse.dev/service";
const LABEL_DEPLOYMENT: &str = "roundhouse.dev/deployment";
pub const LABEL_INSTANCE: &str = "roundhouse.dev/instance";
/// Which installation of Roundhouse made it: two installations may share a cluster, and
/// neither lists, adopts or deletes the other's objects.
const LABEL_INSTALLATION: &str = "roundhouse.dev/installation";
/// What a pod is for: `serve` (an instance taking traffic: only these are behind the
/// service's Service), `run` (a one-off run) or `build` (a build, whose instance label is its
/// deployment; builds are never adopted as instances).
pub const LABEL_ROLE: &str = "roundhouse.dev/role";

/// A project environment, as the cluster names it.
#[derive(Debug, Clone)]
pub struct Target {
    pub project_id: Uuid,
    pub project_slug: String,
    pub environment_id: Uuid,
    pub environment: String,
    /// The installation's name (`ROUNDHOUSE_K8S_INSTALLATION`).
    pub installation: String,
}

/// What the owner's plan allows an environment, for its ResourceQuota.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub services: i32,
    pub replicas: i32,
    pub cpu_millis: i32,
    pub memory_mb: i32,
    pub volume_gb: i32,
}

/// One instance of a deployment of a service.
#[derive(Debug, Clone)]
pub struct Workload<'a> {
    pub target: &'a Target,
    pub service: &'a Service,
    pub deployment_id: Uuid,
    pub instance_id: Uuid,
    /// A one-off command run once instead of the service (a pre-deploy step, a cron run).
    pub command: Option<&'a str>,
    /// What runs: the image source, the build's pushed image, or the database's image.
    pub image: String,
    pub env: &'a BTreeMap<String, String>,
    /// The volume's size (the plan's volume size).
    pub volume_gb: i32,
}

/// Any object this module writes, serialised with its `apiVersion` and `kind`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Object {
    Namespace(Namespace),
    NetworkPolicy(NetworkPolicy),
    ResourceQuota(ResourceQuota),
    LimitRange(LimitRange),
    Secret(Secret),
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    Service(KService),
    Ingress(Ingress),
    Job(Job),
}

/// A DNS label: lowercase letters, digits and dashes, at most `max` long, not starting or
/// ending with a dash.
fn dns_label(s: &str, max: usize) -> String {
    let mut out: String = s.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    out.truncate(max);
    out.trim_matches('-').to_string()
}

/// `rh-<environment id>`: by id, so no two environments (whatever their projects' slugs and
/// names, now or after a project is deleted and its slug taken again) share a namespace.
pub fn namespace_name(t: &Target) -> String {
    namespace_of(t.environment_id)
}

pub fn namespace_of(environment: Uuid) -> String {
    format!("rh-{}", environment.simple())
}

fn labels(t: &Target, service: Option<&Service>, deployment: Option<Uuid>) -> BTreeMap<String, String> {
    labels_of(t, service, deployment, None)
}

fn instance_labels(w: &Workload) -> BTreeMap<String, String> {
    labels_of(w.target, Some(w.service), Some(w.deployment_id), Some(w.instance_id))
}

fn labels_of(t: &Target, service: Option<&Service>, deployment: Option<Uuid>, instance: Option<Uuid>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        ("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string()),
        (LABEL_INSTALLATION.to_string(), t.installation.clone()),
        (LABEL_PROJECT.to_string(), t.project_id.to_string()),
        (LABEL_ENVIRONMENT.to_string(), t.environment_id.to_string()),
    ]);
    if let Some(s) = service {
        l.insert("app.kubernetes.io/name".into(), dns_label(&s.name, 63));
        l.insert(LABEL_SERVICE.into(), s.id.to_string());
    }
    if let Some(d) = deployment {
        l.insert(LABEL_DEPLOYMENT.into(), d.to_string());
    }
    if let Some(i) = instance {
        l.insert(LABEL_INSTANCE.into(), i.to_string());
    }
    l
}

/// The label selector of every object this installation manages in a cluster.
pub fn managed_selector(installation: &str) -> String {
    format!("app.kubernetes.io/managed-by={MANAGED_BY},{LABEL_INSTALLATION}={installation}")
}

/// The label selector of one instance's objects.
pub fn instance_selector(instance: Uuid) -> String {
    format!("{LABEL_INSTANCE}={instance}")
}


fn meta(name: &str, namespace: Option<String>, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_string()), namespace, labels: Some(labels), ..Default::default() }
}

/// The serving pods of one service (the selector its StatefulSet and Services share): not its
/// builds, not its one-off runs.
fn selector(w: &Workload) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_SERVICE.to_string(), w.service.id.to_string()), (LABEL_ROLE.to_string(), "serve".to_string())])
}

fn quantity(s: String) -> Quantity {
    Quantity(s)
}

/// The disk a container may write outside its volume (its image's layer, logs, temporary
/// files), so that one tenant cannot fill a node's disk.
const EPHEMERAL_GB: i64 = 4;

/// Where an environment's pods may connect to: each other, the cluster's DNS, and the
/// internet — not the cluster's own networks, private ranges or cloud metadata (the platform,
/// its database, the API server, the kubelets, other tenants' pods by address).
fn egress(own_pods: NetworkPolicyPeer, settings: &Settings) -> Vec<NetworkPolicyEgressRule> {
    let dns = ["UDP", "TCP"].map(|protocol| NetworkPolicyPort { port: Some(IntOrString::Int(53)), protocol: Some(protocol.into()), ..Default::default() });
    let everywhere_but = |cidr: &str, except: Vec<String>| NetworkPolicyPeer { ip_block: Some(IPBlock { cidr: cidr.into(), except: Some(except) }), ..Default::default() };
    let mut v4: Vec<String> = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "0.0.0.0/8"].map(String::from).to_vec();
    let mut v6: Vec<String> = ["fc00::/7", "fe80::/10", "::1/128", "fd00:ec2::254/128"].map(String::from).to_vec();
    for cidr in &settings.blocked_cidrs {
        if cidr.contains(':') { v6.push(cidr.clone()) } else { v4.push(cidr.clone()) }
    }
    vec![
        NetworkPolicyEgressRule { to: Some(vec![own_pods]), ..Default::default() },
        // The apps' public hosts, and the platform's: a load balancer's address is rewritten
        // to the ingress controller's pods inside the cluster.
        NetworkPolicyEgressRule { to: Some(vec![namespace_peer(&settings.ingress_namespace)]), ..Default::default() },
        NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer { namespace_selector: Some(LabelSelector::default()), ..Default::default() }]),
            ports: Some(dns.to_vec()),
        },
        NetworkPolicyEgressRule { to: Some(vec![everywhere_but("0.0.0.0/0", v4), everywhere_but("::/0", v6)]), ..Default::default() },
    ]
}

/// Every pod of the namespace called `name`.
fn namespace_peer(name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".to_string(), name.to_string())])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The environment's Namespace, NetworkPolicy and ResourceQuota.
pub fn environment(t: &Target, quota: Quota, settings: &Settings) -> Vec<Object> {
    let ns = namespace_name(t);
    let l = labels(t, None, None);
    let everything = LabelSelector::default();
    let own_pods = NetworkPolicyPeer { pod_selector: Some(everything.clone()), ..Default::default() };
    let policy = NetworkPolicy {
        metadata: meta("roundhouse-isolation", Some(ns.clone()), l.clone()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(everything.clone()),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            egress: Some(egress(own_pods.clone(), settings)),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    // the environment's own pods
                    own_pods,
                    // the ingress controller
                    namespace_peer(&settings.ingress_namespace),
                    // the platform (its proxy, when the apps' hosts point at it)
                    namespace_peer(&settings.platform_namespace),
                ]),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    };
    // Everything the plan allows running twice over (a switch runs the old and the new
    // instances side by side), plus a build and a one-off run; each pod at the plan's largest.
    let pods = i64::from(quota.services) * i64::from(quota.replicas) * 2 + 2;
    let hard = BTreeMap::from([
        ("pods".to_string(), quantity(pods.to_string())),
        ("limits.cpu".to_string(), quantity(format!("{}m", i64::from(quota.cpu_millis) * pods))),
        ("limits.memory".to_string(), quantity(format!("{}Mi", i64::from(quota.memory_mb) * pods))),
        ("limits.ephemeral-storage".to_string(), quantity(format!("{}Gi", EPHEMERAL_GB * pods))),
        ("requests.storage".to_string(), quantity(format!("{}Gi", i64::from(quota.volume_gb) * i64::from(quota.services)))),
        ("persistentvolumeclaims".to_string(), quantity(quota.services.to_string())),
        // An instance's variables, the pull secret, TLS certificates and cert-manager's keys.
        ("secrets".to_string(), quantity((pods * 2 + 10).to_string())),
    ]);
    let mut namespace = meta(&ns, None, l.clone());
    // For people reading the cluster: which project and environment it is.
    namespace.annotations = Some(BTreeMap::from([("roundhouse.dev/name".to_string(), format!("{}/{}", t.project_slug, t.environment))]));
    vec![
        Object::Namespace(Namespace { metadata: namespace, ..Default::default() }),
        Object::NetworkPolicy(policy),
        Object::ResourceQuota(ResourceQuota {
            metadata: meta("roundhouse-plan", Some(ns.clone()), l.clone()),
            spec: Some(ResourceQuotaSpec { hard: Some(hard), ..Default::default() }),
            ..Default::default()
        }),
        // The quota needs every container to state its limits: those Roundhouse writes do;
        // this gives small ones to those others write there (cert-manager's HTTP-01 solver).
        Object::LimitRange(LimitRange {
            metadata: meta("roundhouse-defaults", Some(ns), l),
            spec: Some(LimitRangeSpec {
                limits: vec![LimitRangeItem {
                    type_: "Container".into(),
                    default: Some(BTreeMap::from([
                        ("cpu".to_string(), quantity("100m".into())),
                        ("memory".to_string(), quantity("64Mi".into())),
                        ("ephemeral-storage".to_string(), quantity("256Mi".into())),
                    ])),
                    ..Default::default()
                }],
            }),
        }),
    ]
}

/// `<service>-<first 8 hex digits of the instance>`: what a Deployment or Job of one instance
/// is called (the id itself is a label).
pub fn instance_name(w: &Workload) -> String {
    let short = &w.instance_id.simple().to_string()[..8];
    format!("{}-{short}", dns_label(&w.service.name, 54))
}

/// The platform's image pull secret, copied into an environment's namespace (its type and
/// data only).
pub fn pull_secret(t: &Target, name: &str, original: Secret) -> Object {
    Object::Secret(Secret {
        metadata: meta(name, Some(namespace_name(t)), labels(t, None, None)),
        data: original.data,
        type_: original.type_,
        ..Default::default()
    })
}

fn secret_name(w: &Workload) -> String {
    format!("{}-env", instance_name(w))
}

/// The instance's resolved variables.
pub fn secret(w: &Workload) -> Object {
    let mut data: BTreeMap<String, String> = w.env.clone();
    data.insert("PORT".into(), port(w.service).to_string());
    Object::Secret(Secret {
        metadata: meta(&secret_name(w), Some(namespace_name(w.target)), instance_labels(w)),
        string_data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    })
}

/// The port the service listens on in its pod (and is known by in its namespace).
pub fn port(s: &Service) -> u16 {
    match (s.source_kind, s.source.as_str()) {
        (SourceKind::Database, "postgres") => 5432,
        (SourceKind::Database, "redis") => 6379,
        _ => s.port.unwrap_or(8080),
    }
}

/// The official image of a database engine.
pub fn database_image(engine: &str) -> Option<&'static str> {
    match engine {
        // Debian's: its postgres user is uid 999, as the pod runs it (Alpine's is 70).
        "postgres" => Some("postgres:17"),
        "redis" => Some("redis:7-alpine"),
        _ => None,
    }
}

fn container(w: &Workload) -> Container {
    let s = w.service;
    let p = i32::from(port(s));
    let probe_action = |initial: i32| match (&s.healthcheck_path, s.source_kind) {
        (Some(path), k) if k != SourceKind::Database => Probe {
            http_get: Some(HTTPGetAction { path: Some(path.clone()), port: IntOrString::Int(p), ..Default::default() }),
            initial_delay_seconds: Some(initial),
            period_seconds: Some(5),
            timeout_seconds: Some(3),
            ..Default::default()
        },
        _ => Probe {
            tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(p), ..Default::default() }),
            initial_delay_seconds: Some(initial),
            period_seconds: Some(5),
            ..Default::default()
        },
    };
    let mut env = Vec::new();
    if s.source_kind == SourceKind::Database && s.source == "postgres" {
        // The official image's names for what the platform provisioned.
        for (name, key) in [("POSTGRES_USER", "PGUSER"), ("POSTGRES_PASSWORD", "PGPASSWORD"), ("POSTGRES_DB", "PGDATABASE")] {
            env.push(EnvVar {
                name: name.into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector { name: secret_name(w), key: key.into(), optional: Some(true) }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        env.push(EnvVar { name: "PGDATA".into(), value: Some("/var/lib/postgresql/data/pgdata".into()), ..Default::default() });
    }
    let (cpu_request, memory_request) = ((s.cpu_millis / 4).max(50), (s.memory_mb / 4).max(64));
    Container {
        name: dns_label(&s.name, 63),
        image: Some(w.image.clone()),
        command: w
            .command
            .map(str::to_string)
            .or_else(|| s.start_command.clone().filter(|_| s.source_kind != SourceKind::Database))
            .map(|c| vec!["/bin/sh".into(), "-c".into(), c]),
        env: (!env.is_empty()).then_some(env),
        env_from: Some(vec![EnvFromSource { secret_ref: Some(SecretEnvSource { name: secret_name(w), optional: None }), ..Default::default() }]),
        ports: Some(vec![ContainerPort { container_port: p, name: Some("main".into()), ..Default::default() }]),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".to_string(), quantity(format!("{}m", s.cpu_millis))),
                ("memory".to_string(), quantity(format!("{}Mi", s.memory_mb))),
                ("ephemeral-storage".to_string(), quantity(format!("{EPHEMERAL_GB}Gi"))),
            ])),
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), quantity(format!("{cpu_request}m"))),
                ("memory".to_string(), quantity(format!("{memory_request}Mi"))),
            ])),
            ..Default::default()
        }),
        // A one-off run is not probed: it is done when it exits.
        readiness_probe: (!one_off(w)).then(|| probe_action(1)),
        liveness_probe: (!one_off(w)).then(|| Probe { failure_threshold: Some(6), ..probe_action(s.healthcheck_timeout_secs.clamp(5, 600)) }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
            ..Default::default()
        }),
        volume_mounts: volume_path(s).map(|at| vec![VolumeMount { name: "data".into(), mount_path: at, ..Default::default() }]),
        ..Default::default()
    }
}

/// Where the service's volume is mounted: its volume path, or the database's data folder.
fn volume_path(s: &Service) -> Option<String> {
    match (s.source_kind, s.source.as_str()) {
        (SourceKind::Database, "postgres") => Some("/var/lib/postgresql/data".into()),
        (SourceKind::Database, "redis") => Some("/data".into()),
        _ => s.volume_path.clone(),
    }
}

fn pod_spec(w: &Workload, settings: &Settings, restart: &str) -> PodSpec {
    // The official database images run as their own user 999 and own their data through it.
    let user = (w.service.source_kind == SourceKind::Database).then_some(999);
    PodSpec {
        containers: vec![container(w)],
        restart_policy: Some(restart.into()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        image_pull_secrets: settings.image_pull_secret.as_ref().map(|n| vec![LocalObjectReference { name: n.clone() }]),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: user.or(Some(10001)),
            fs_group: user.or(Some(10001)),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn template(w: &Workload, settings: &Settings, restart: &str) -> PodTemplateSpec {
    let mut l = instance_labels(w);
    l.insert(LABEL_ROLE.into(), if one_off(w) { "run" } else { "serve" }.into());
    PodTemplateSpec { metadata: Some(ObjectMeta { labels: Some(l), ..Default::default() }), spec: Some(pod_spec(w, settings, restart)) }
}

/// The service's Service and Ingress: its name as the others address it.
fn name(w: &Workload) -> String {
    service_dns_name(&w.service.name)
}

/// The name a service is reached by in its namespace (`db`, `api`); the same rule as the
/// built-in variables' (`PGHOST=db`).
pub fn service_dns_name(name: &str) -> String {
    app::services::dns_name(name)
}

/// `state-<service id>`: the StatefulSet of a service with a volume, and its headless Service
/// (its claim is `data-state-<service id>-0`). By id, so a renamed service keeps its data and a
/// new service of an old name never mounts another's.
pub fn stateful_name(s: &Service) -> String {
    format!("state-{}", s.id.simple())
}

/// The Service other services reach it at, by its bare name (`db:5432`, `http://api/`).
fn service(w: &Workload, headless: bool) -> Object {
    let p = i32::from(port(w.service));
    let name = if headless { stateful_name(w.service) } else { name(w) };
    // An HTTP service also answers on 80 (`http://api/`); a database only on its own port.
    let known = if headless || p == 80 || w.service.source_kind == SourceKind::Database { vec![p] } else { vec![p, 80] };
    Object::Service(KService {
        metadata: meta(&name, Some(namespace_name(w.target)), labels(w.target, Some(w.service), None)),
        spec: Some(ServiceSpec {
            selector: Some(selector(w)),
            cluster_ip: headless.then(|| "None".to_string()),
            ports: Some(
                known
                    .into_iter()
                    .map(|at| ServicePort { name: Some(format!("p{at}")), port: at, target_port: Some(IntOrString::Int(p)), ..Default::default() })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// `<service>.<project>.<base domain>` (production) or `<service>-<environment>.<project>.…`.
pub fn host(w: &Workload, settings: &Settings) -> String {
    let service = if w.target.environment == "production" { name(w) } else { dns_label(&format!("{}-{}", w.service.name, w.target.environment), 63) };
    format!("{service}.{}.{}", dns_label(&w.target.project_slug, 63), settings.base_domain)
}

fn ingress(w: &Workload, settings: &Settings) -> Object {
    let host = host(w, settings);
    let mut metadata = meta(&name(w), Some(namespace_name(w.target)), labels(w.target, Some(w.service), None));
    if let Some(issuer) = &settings.cert_issuer {
        metadata.annotations = Some(BTreeMap::from([("cert-manager.io/cluster-issuer".to_string(), issuer.clone())]));
    }
    Object::Ingress(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: settings.ingress_class.clone(),
            tls: settings.cert_issuer.as_ref().map(|_| vec![IngressTLS { hosts: Some(vec![host.clone()]), secret_name: Some(format!("{}-tls", name(w))) }]),
            rules: Some(vec![IngressRule {
                host: Some(host),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: name(w),
                                port: Some(ServiceBackendPort { number: Some(i32::from(port(w.service))), ..Default::default() }),
                            }),
                            ..Default::default()
                        },
                    }],
                }),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Whether the instance runs once, to its end: a pre-deploy command, or a run of a cron service.
fn one_off(w: &Workload) -> bool {
    w.command.is_some() || w.service.cron_schedule.is_some()
}

/// Whether the service's instances take over one StatefulSet (a volume, a database) rather
/// than each running its own Deployment.
pub fn stateful(s: &Service) -> bool {
    s.source_kind == SourceKind::Database || s.volume_path.is_some()
}

/// Everything one instance needs, after the environment's objects: its Secret, what runs it,
/// and the service's Service(s) and Ingress (the same for every instance of the service).
pub fn workload(w: &Workload, settings: &Settings) -> Vec<Object> {
    let s = w.service;
    let ns = namespace_name(w.target);
    let mut out = vec![secret(w)];
    if one_off(w) {
        out.push(Object::Job(Job {
            metadata: meta(&instance_name(w), Some(ns), instance_labels(w)),
            spec: Some(JobSpec {
                // One try: the platform decides what a failure means (a failed pre-deploy step
                // fails the deployment; a cron run is retried per the service's policy).
                backoff_limit: Some(0),
                ttl_seconds_after_finished: Some(600),
                template: template(w, settings, "Never"),
                ..Default::default()
            }),
            ..Default::default()
        }));
        return out;
    }
    if stateful(s) {
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some("data".into()), labels: Some(labels(w.target, Some(s), None)), ..Default::default() },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_string(), quantity(format!("{}Gi", w.volume_gb.max(1))))])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        out.push(Object::StatefulSet(StatefulSet {
            metadata: meta(&stateful_name(s), Some(ns), instance_labels(w)),
            spec: Some(StatefulSetSpec {
                // One writer of the volume at a time: a new instance replaces the old pod.
                replicas: Some(1),
                // Not OrderedReady: a pod that never got ready is replaced when the template is
                // handed back (OrderedReady would wait for it for ever).
                pod_management_policy: Some("Parallel".into()),
                // Immutable once created: the service only, never the instance.
                selector: LabelSelector { match_labels: Some(selector(w)), ..Default::default() },
                service_name: Some(stateful_name(s)),
                template: template(w, settings, "Always"),
                volume_claim_templates: Some(vec![claim]),
                ..Default::default()
            }),
            ..Default::default()
        }));
        out.push(service(w, true));
    } else {
        let own = BTreeMap::from([(LABEL_SERVICE.to_string(), s.id.to_string()), (LABEL_INSTANCE.to_string(), w.instance_id.to_string())]);
        out.push(Object::Deployment(Deployment {
            metadata: meta(&instance_name(w), Some(ns), instance_labels(w)),
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                selector: LabelSelector { match_labels: Some(own), ..Default::default() },
                // Should the cluster replace the pod (a node drained), the new one is ready
                // before the old goes.
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment { max_unavailable: Some(IntOrString::Int(0)), max_surge: Some(IntOrString::Int(1)) }),
                }),
                template: template(w, settings, "Always"),
                ..Default::default()
            }),
            ..Default::default()
        }));
    }
    out.push(service(w, false));
    if s.source_kind != SourceKind::Database {
        out.push(ingress(w, settings));
    }
    out
}

/// The image a source build pushes: one per deployment, under the configured registry.
pub fn built_image(w: &Workload, registry: &str) -> String {
    format!("{}/{}:{}", registry.trim_end_matches('/'), w.service.id, w.deployment_id)
}

fn build_labels(w: &Workload) -> BTreeMap<String, String> {
    let mut l = labels_of(w.target, Some(w.service), Some(w.deployment_id), Some(w.deployment_id));
    l.insert(LABEL_ROLE.into(), "build".into());
    l
}

/// `build-<service>-<first 8 hex digits of the deployment>`.
pub fn build_name(w: &Workload) -> String {
    format!("build-{}-{}", dns_label(&w.service.name, 48), &w.deployment_id.simple().to_string()[..8])
}

/// A Job building a git source with the builder and pushing the image. Without a registry
/// there is nowhere to push to: the error says what to configure.
/// What a build may use: the plan's largest service, at most a core and 2 GiB, for at most the
/// platform's build timeout.
#[derive(Debug, Clone, Copy)]
pub struct BuildLimits {
    pub cpu_millis: i32,
    pub memory_mb: i32,
    pub timeout_secs: u64,
}

impl BuildLimits {
    pub fn of(quota: Quota, timeout_secs: u64) -> Self {
        BuildLimits { cpu_millis: quota.cpu_millis.clamp(100, 1000), memory_mb: quota.memory_mb.clamp(256, 2048), timeout_secs }
    }
}

/// A Job building a git source with the builder and pushing the image. Without a registry
/// there is nowhere to push to: the error says what to configure. The builder runs the
/// tenant's build steps as root in its container, so the pod gets only the capabilities an
/// image build needs, the runtime's default seccomp profile, no service account token, a
/// deadline and a disk limit.
pub fn build_job(w: &Workload, settings: &Settings, limits: BuildLimits) -> Result<Object, String> {
    let s = w.service;
    let registry = settings.registry.as_deref().ok_or("Building from source on Kubernetes needs a registry to push to: set ROUNDHOUSE_K8S_REGISTRY.")?;
    if s.source_kind != SourceKind::Git {
        return Err(format!("The Kubernetes runtime builds git sources; a {} source is not built there yet.", s.source_kind.as_str()));
    }
    // Credentials in the URL would land in the Job's arguments, readable by anyone who can read
    // the cluster's Jobs; ssh is not spoken by the builder.
    let rest = s.source.strip_prefix("https://").ok_or("On this platform's cluster, a git source is cloned over https (https://host/owner/repo).")?;
    if rest.split('/').next().unwrap_or_default().contains('@') {
        return Err("On this platform's cluster, a git URL cannot carry credentials: use a public repository.".into());
    }
    let context = format!("git://{rest}");
    let builder = Container {
        name: "build".into(),
        image: Some(settings.builder_image.clone()),
        args: Some(vec![format!("--context={context}"), format!("--destination={}", built_image(w, registry)), "--cache=true".into()]),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".to_string(), quantity(format!("{}m", limits.cpu_millis))),
                ("memory".to_string(), quantity(format!("{}Mi", limits.memory_mb))),
                ("ephemeral-storage".to_string(), quantity(format!("{EPHEMERAL_GB}Gi"))),
            ])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                // What unpacking layers and running build steps as their users needs.
                add: Some(["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID"].map(String::from).to_vec()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(Object::Job(Job {
        metadata: meta(&build_name(w), Some(namespace_name(w.target)), build_labels(w)),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(limits.timeout_secs as i64),
            ttl_seconds_after_finished: Some(3600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(build_labels(w)), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![builder],
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    image_pull_secrets: settings.image_pull_secret.as_ref().map(|n| vec![LocalObjectReference { name: n.clone() }]),
                    security_context: Some(PodSecurityContext {
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::runtime::kubernetes::fixtures::{service, target};

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([("DATABASE_URL".to_string(), "postgres://app:secret@db:5432/app".to_string())])
    }

    fn make<'a>(t: &'a Target, s: &'a Service, env: &'a BTreeMap<String, String>, image: &str) -> Workload<'a> {
        Workload { target: t, service: s, deployment_id: Uuid::from_u128(0x44), instance_id: Uuid::from_u128(0x55 << 120), command: None, image: image.into(), env, volume_gb: 50 }
    }

    fn settings() -> Settings {
        Settings {
            base_domain: "apps.example.com".into(),
            ingress_class: Some("nginx".into()),
            cert_issuer: Some("letsencrypt".into()),
            image_pull_secret: Some("registry-auth".into()),
            registry: Some("registry.example.com/roundhouse".into()),
            ..Settings::default()
        }
    }

    /// Compares with `golden/<name>.json`; `UPDATE_GOLDEN=1` writes it instead (then review
    /// the diff by eye).
    fn golden(name: &str, objects: &[Object]) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/runtime/kubernetes/golden").join(format!("{name}.json"));
        let rendered = serde_json::to_string_pretty(objects).unwrap() + "\n";
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &rendered).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} is missing: run with UPDATE_GOLDEN=1", path.display()));
        assert_eq!(rendered, expected, "{name} differs from its golden file (UPDATE_GOLDEN=1 to accept, then review the diff)");
    }

    #[test]
    fn an_environment_is_a_namespace_fenced_to_itself_and_the_ingress_with_the_plans_quota() {
        let quota = Quota { services: 3, replicas: 1, cpu_millis: 1000, memory_mb: 512, volume_gb: 1 };
        golden("environment", &environment(&target(), quota, &settings()));
    }

    #[test]
    fn a_stateless_instance_is_a_deployment_of_one_pod_behind_the_services_service_and_ingress() {
        let (t, s, e) = (target(), service("web", SourceKind::Image, "nginx:1.27"), env());
        let objects = super::workload(&workload_of(&t, &s, &e, "nginx:1.27"), &settings());
        golden("stateless", &objects);
        let kinds: Vec<&str> = objects.iter().map(kind).collect();
        assert_eq!(kinds, ["Secret", "Deployment", "Service", "Ingress"]);
        // The Deployment owns only its instance's pod; the Service reaches every pod of the service.
        let (Object::Deployment(d), Object::Service(svc)) = (&objects[1], &objects[2]) else { unreachable!() };
        let own = d.spec.as_ref().unwrap().selector.match_labels.as_ref().unwrap();
        assert_eq!(own.get(LABEL_INSTANCE).map(String::as_str), Some("55000000-0000-0000-0000-000000000000"));
        assert!(!svc.spec.as_ref().unwrap().selector.as_ref().unwrap().contains_key(LABEL_INSTANCE));
        assert_eq!(d.metadata.name.as_deref(), Some("web-55000000"));
    }

    fn workload_of<'a>(t: &'a Target, s: &'a Service, e: &'a BTreeMap<String, String>, image: &str) -> Workload<'a> {
        make(t, s, e, image)
    }

    fn kind(o: &Object) -> &'static str {
        match o {
            Object::Namespace(_) => "Namespace",
            Object::NetworkPolicy(_) => "NetworkPolicy",
            Object::ResourceQuota(_) => "ResourceQuota",
            Object::LimitRange(_) => "LimitRange",
            Object::Secret(_) => "Secret",
            Object::Deployment(_) => "Deployment",
            Object::StatefulSet(_) => "StatefulSet",
            Object::Service(_) => "Service",
            Object::Ingress(_) => "Ingress",
            Object::Job(_) => "Job",
        }
    }

    #[test]
    fn a_service_with_a_volume_is_a_stateful_set_with_a_claim() {
        let (t, e) = (target(), env());
        let mut s = service("uploads", SourceKind::Git, "https://github.com/acme/uploads");
        s.volume_path = Some("/data".into());
        s.replicas = 1;
        let w = workload_of(&t, &s, &e, "registry.example.com/roundhouse/x:y");
        let objects = super::workload(&w, &settings());
        golden("volume", &objects);
        assert_eq!(objects.iter().map(kind).collect::<Vec<_>>(), ["Secret", "StatefulSet", "Service", "Service", "Ingress"]);
    }

    #[test]
    fn databases_run_their_official_images_with_no_ingress() {
        let (t, e) = (target(), env());
        for engine in ["postgres", "redis"] {
            let mut s = service("db", SourceKind::Database, engine);
            s.port = None;
            s.healthcheck_path = None;
            let w = workload_of(&t, &s, &e, database_image(engine).unwrap());
            let objects = super::workload(&w, &Settings::default());
            golden(&format!("database-{engine}"), &objects);
            assert!(!objects.iter().any(|o| matches!(o, Object::Ingress(_))), "a database is private");
        }
    }

    #[test]
    fn a_cron_run_is_a_job_of_one_try_without_probes() {
        let (t, e) = (target(), env());
        let mut s = service("nightly", SourceKind::Image, "alpine:3");
        s.cron_schedule = Some("0 3 * * *".into());
        s.start_command = Some("./backup.sh".into());
        let objects = super::workload(&workload_of(&t, &s, &e, "alpine:3"), &settings());
        golden("cron", &objects);
        assert_eq!(objects.iter().map(kind).collect::<Vec<_>>(), ["Secret", "Job"]);
        let Object::Job(job) = &objects[1] else { unreachable!() };
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert!(pod.containers[0].readiness_probe.is_none());
        // A pre-deploy step runs its own command, once.
        let mut w = workload_of(&t, &s, &e, "alpine:3");
        w.command = Some("./migrate");
        let Object::Job(job) = &super::workload(&w, &settings())[1] else { panic!("a one-off run is a Job") };
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.containers[0].command.as_deref().unwrap(), ["/bin/sh", "-c", "./migrate"]);
    }

    #[test]
    fn a_git_source_builds_in_a_job_pushing_to_the_registry_and_says_when_there_is_none() {
        let (t, e) = (target(), env());
        let s = service("api", SourceKind::Git, "https://github.com/acme/api");
        let w = workload_of(&t, &s, &e, "");
        let limits = BuildLimits::of(Quota { services: 3, replicas: 1, cpu_millis: 1000, memory_mb: 512, volume_gb: 1 }, 900);
        golden("build-job", &[build_job(&w, &settings(), limits).unwrap()]);
        let err = build_job(&w, &Settings::default(), limits).unwrap_err();
        assert!(err.contains("ROUNDHOUSE_K8S_REGISTRY"), "{err}");
        let upload = service("api", SourceKind::Upload, "");
        assert!(build_job(&workload_of(&t, &upload, &e, ""), &settings(), limits).is_err());
        // No credentials in a Job's arguments, no ssh.
        for source in ["https://user:token@github.com/acme/api", "git@github.com:acme/api.git"] {
            let s = service("api", SourceKind::Git, source);
            assert!(build_job(&workload_of(&t, &s, &e, ""), &settings(), limits).is_err(), "{source}");
        }
    }

    #[test]
    fn names_are_dns_labels_and_hosts_follow_the_environment() {
        let mut t = target();
        t.project_slug = "My_Shop!".into();
        t.environment = "Staging".into();
        // By the environment's id: no slug or name, however long or alike, makes two the same.
        assert_eq!(namespace_name(&t), "rh-00000000000000000000000000000022");
        let other = Target { project_slug: "my".into(), environment: "shop--staging".into(), environment_id: Uuid::from_u128(0x23), ..t.clone() };
        assert_ne!(namespace_name(&other), namespace_name(&t));
        let (s, e) = (service("web", SourceKind::Image, "nginx"), env());
        assert_eq!(host(&workload_of(&target(), &s, &e, "nginx"), &settings()), "web.shop.apps.example.com");
        assert_eq!(host(&workload_of(&t, &s, &e, "nginx"), &settings()), "web-staging.my-shop.apps.example.com");
    }
}
