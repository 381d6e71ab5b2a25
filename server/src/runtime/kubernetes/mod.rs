//! The Kubernetes runtime (`ROUNDHOUSE_RUNTIME=kubernetes`, docs/kubernetes.md): a project
//! environment becomes a Namespace; each instance becomes the objects `manifests.rs` writes,
//! applied by `cluster.rs` (kube-rs, server-side apply under the field manager `roundhouse`,
//! RBAC checked at start, pruning by label). `runtime.rs` is the `Runtime`: states from one
//! watch of the cluster's pods (`pods.rs`), output from the pod log API (`pod_logs.rs`), CPU and
//! memory from metrics.k8s.io (`usage.rs`).

pub mod cluster;
/// The fake API server the tests run against (shared with the integration tests).
#[cfg(test)]
#[path = "../../../tests/support/fake_kube_api.rs"]
pub(crate) mod fake_api;
pub mod manifests;
pub mod plans;
pub mod pod_logs;
pub mod pods;
pub mod runtime;
pub mod usage;

pub use runtime::{KubernetesRuntime, ProjectFacts, Projects};

/// How the objects are written for a cluster: configuration, not code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Services answer at `<service>.<project>.<base domain>`.
    pub base_domain: String,
    pub ingress_class: Option<String>,
    /// A cert-manager ClusterIssuer: when set, each Ingress gets TLS from it.
    pub cert_issuer: Option<String>,
    /// A Secret of the platform's own namespace that each environment's pods pull images with
    /// (copied into each environment's namespace).
    pub image_pull_secret: Option<String>,
    /// The namespace the platform runs in (where the pull secret is read from).
    pub platform_namespace: String,
    /// This installation's name, on every object it makes (two installations may share a
    /// cluster without touching each other's objects).
    pub installation: String,
    /// Networks besides the private ranges that tenants' pods may not connect to (the
    /// cluster's pod and service ranges, when they are public addresses).
    pub blocked_cidrs: Vec<String>,
    /// How long a build may run (`ROUNDHOUSE_BUILD_TIMEOUT_SECS`): its Job's deadline.
    pub build_timeout_secs: u64,
    /// Where source builds push their images (`registry.example.com/roundhouse`).
    pub registry: Option<String>,
    /// The builder a build Job runs (BuildKit's or kaniko's executor image).
    pub builder_image: String,
    /// The namespace the ingress controller runs in: the only one besides the environment's
    /// own whose pods may reach its pods.
    pub ingress_namespace: String,
}

impl Settings {
    /// From the environment: `ROUNDHOUSE_APPS_DOMAIN` (the same hosts the platform's own proxy
    /// answers for) and the `ROUNDHOUSE_K8S_*` variables.
    pub fn from_env(apps_domain: &str, build_timeout_secs: u64) -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let defaults = Settings::default();
        let installation = var("ROUNDHOUSE_K8S_INSTALLATION").unwrap_or(defaults.installation);
        anyhow::ensure!(
            installation.len() <= 63 && !installation.is_empty() && installation.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'),
            "ROUNDHOUSE_K8S_INSTALLATION must be a label value (letters, digits, -, _ and ., at most 63), not {installation:?}"
        );
        let blocked_cidrs: Vec<String> = var("ROUNDHOUSE_K8S_BLOCKED_CIDRS").map(|v| v.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()).unwrap_or_default();
        for cidr in &blocked_cidrs {
            let (ip, bits) = cidr.split_once('/').unwrap_or((cidr, ""));
            let max = match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(_)) => 32,
                Ok(std::net::IpAddr::V6(_)) => 128,
                Err(_) => 0,
            };
            anyhow::ensure!(max > 0 && bits.parse::<u8>().is_ok_and(|b| b <= max), "ROUNDHOUSE_K8S_BLOCKED_CIDRS: {cidr:?} is not a CIDR (10.0.0.0/8)");
        }
        Ok(Settings {
            base_domain: apps_domain.to_string(),
            ingress_class: var("ROUNDHOUSE_K8S_INGRESS_CLASS"),
            cert_issuer: var("ROUNDHOUSE_K8S_CERT_ISSUER"),
            image_pull_secret: var("ROUNDHOUSE_K8S_IMAGE_PULL_SECRET"),
            registry: var("ROUNDHOUSE_K8S_REGISTRY"),
            builder_image: var("ROUNDHOUSE_K8S_BUILDER_IMAGE").unwrap_or(defaults.builder_image),
            ingress_namespace: var("ROUNDHOUSE_K8S_INGRESS_NAMESPACE").unwrap_or(defaults.ingress_namespace),
            // The service account's own namespace when in the cluster.
            platform_namespace: var("ROUNDHOUSE_K8S_NAMESPACE")
                .or_else(|| std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok().map(|n| n.trim().to_string()))
                .unwrap_or(defaults.platform_namespace),
            installation,
            blocked_cidrs,
            build_timeout_secs,
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            base_domain: "apps.example.com".into(),
            ingress_class: None,
            cert_issuer: None,
            image_pull_secret: None,
            registry: None,
            builder_image: "gcr.io/kaniko-project/executor:v1.23.2".into(),
            ingress_namespace: "ingress-nginx".into(),
            platform_namespace: "roundhouse".into(),
            installation: "default".into(),
            blocked_cidrs: Vec::new(),
            build_timeout_secs: 900,
        }
    }
}

/// A project environment and a service shared by the tests of this runtime.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::manifests::Target;
    use app::services::{RestartPolicy, Service, SourceKind};
    use chrono::TimeZone;
    use uuid::Uuid;

    pub fn target() -> Target {
        Target {
            project_id: Uuid::from_u128(0x11),
            project_slug: "shop".into(),
            environment_id: Uuid::from_u128(0x22),
            environment: "production".into(),
            installation: "default".into(),
        }
    }

    pub fn service(name: &str, kind: SourceKind, source: &str) -> Service {
        let at = chrono::Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap();
        Service {
            id: Uuid::from_u128(0x33),
            project_id: Uuid::from_u128(0x11),
            project: "shop".into(),
            environment_id: Uuid::from_u128(0x22),
            environment: "production".into(),
            name: name.into(),
            source_kind: kind,
            source: source.into(),
            build_command: None,
            start_command: None,
            port: Some(3000),
            replicas: 2,
            cpu_millis: 500,
            memory_mb: 512,
            healthcheck_path: Some("/healthz".into()),
            healthcheck_timeout_secs: 30,
            restart_policy: RestartPolicy::OnFailure,
            restart_max: 3,
            max_processes: 256,
            volume_path: None,
            cron_schedule: None,
            pre_deploy_command: None,
            created_at: at,
            updated_at: at,
        }
    }
}
