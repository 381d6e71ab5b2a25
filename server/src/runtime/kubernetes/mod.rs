//! The Kubernetes runtime, being built (issue 10): a project environment becomes a Namespace;
//! each service becomes the objects `manifests.rs` writes, applied by `cluster.rs` (kube-rs,
//! server-side apply under the field manager `roundhouse`, RBAC checked at start, pruning by
//! label). Status from watches, pod logs and adoption come next, so `ROUNDHOUSE_RUNTIME` does
//! not accept `kubernetes` yet.

pub mod cluster;
pub mod manifests;

/// How the objects are written for a cluster: configuration, not code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Services answer at `<service>.<project>.<base domain>`.
    pub base_domain: String,
    pub ingress_class: Option<String>,
    /// A cert-manager ClusterIssuer: when set, each Ingress gets TLS from it.
    pub cert_issuer: Option<String>,
    /// A Secret of the platform's namespace copied into each environment's for image pulls.
    pub image_pull_secret: Option<String>,
    /// Where source builds push their images (`registry.example.com/roundhouse`).
    pub registry: Option<String>,
    /// The builder a build Job runs (BuildKit's or kaniko's executor image).
    pub builder_image: String,
    /// The namespace the ingress controller runs in: the only one besides the environment's
    /// own whose pods may reach its pods.
    pub ingress_namespace: String,
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
