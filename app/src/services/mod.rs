//! Services: what runs in an environment — its source and its settings. Every query reaches a
//! service through its project, scoped by the project's owner.

#[cfg(feature = "ssr")]
pub mod service;
#[cfg(feature = "ssr")]
pub mod upload;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A folder on the platform's machine (local runtime; admins only, under the configured
    /// source roots).
    Directory,
    /// A git URL (https or ssh), cloned at deploy.
    Git,
    /// A `.tar.gz` archive uploaded to `POST /services/{id}/source`.
    Upload,
    /// A container image (Kubernetes runtime).
    Image,
    /// A database engine run by the platform: `postgres` or `redis`.
    Database,
}

/// The name a service is reached by where names are DNS labels (a cluster's Service): lower
/// case, `-` for anything but letters and digits, at most 63 characters, no dash at either end.
pub fn dns_name(name: &str) -> String {
    let mut out: String = name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    out.truncate(63);
    out.trim_matches('-').to_string()
}

/// The port a database engine is known by (`db:5432`).
pub fn engine_port(engine: &str) -> Option<u16> {
    match engine {
        "postgres" => Some(5432),
        "redis" => Some(6379),
        _ => None,
    }
}

impl SourceKind {
    pub const ALL: [SourceKind; 5] = [SourceKind::Directory, SourceKind::Git, SourceKind::Upload, SourceKind::Image, SourceKind::Database];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Directory => "directory",
            SourceKind::Git => "git",
            SourceKind::Upload => "upload",
            SourceKind::Image => "image",
            SourceKind::Database => "database",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "directory" => SourceKind::Directory,
            "git" => SourceKind::Git,
            "upload" => SourceKind::Upload,
            "image" => SourceKind::Image,
            "database" => SourceKind::Database,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on_failure",
            RestartPolicy::Never => "never",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "always" => RestartPolicy::Always,
            "on_failure" => RestartPolicy::OnFailure,
            "never" => RestartPolicy::Never,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Service {
    pub id: Uuid,
    pub project_id: Uuid,
    pub project: String,
    pub environment_id: Uuid,
    pub environment: String,
    pub name: String,
    pub source_kind: SourceKind,
    pub source: String,
    pub build_command: Option<String>,
    pub start_command: Option<String>,
    pub port: Option<u16>,
    pub replicas: i32,
    pub cpu_millis: i32,
    pub memory_mb: i32,
    pub healthcheck_path: Option<String>,
    pub healthcheck_timeout_secs: i32,
    pub restart_policy: RestartPolicy,
    pub restart_max: i32,
    /// Processes (and threads) an instance may have at once.
    pub max_processes: i32,
    pub volume_path: Option<String>,
    pub cron_schedule: Option<String>,
    /// Run once before each deployment takes traffic (e.g. migrations); a failure fails it.
    pub pre_deploy_command: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A source archive accepted for an upload service (its bytes stay on the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, sqlx::FromRow))]
pub struct SourceUpload {
    pub id: Uuid,
    pub service_id: Uuid,
    /// Hex SHA-256 of the archive as uploaded.
    pub sha256: String,
    pub size_bytes: i64,
    /// Entries in the archive.
    pub files: i32,
    pub created_at: DateTime<Utc>,
}

/// Settings to create a service with, or to change (absent fields stay as they are; an empty
/// string clears an optional setting).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ServiceInput {
    pub name: Option<String>,
    /// The environment to create the service in (default: production). Create only.
    pub environment_id: Option<Uuid>,
    pub source_kind: Option<SourceKind>,
    pub source: Option<String>,
    pub build_command: Option<String>,
    pub start_command: Option<String>,
    pub port: Option<u32>,
    pub replicas: Option<i32>,
    pub cpu_millis: Option<i32>,
    pub memory_mb: Option<i32>,
    pub healthcheck_path: Option<String>,
    pub healthcheck_timeout_secs: Option<i32>,
    pub restart_policy: Option<RestartPolicy>,
    pub restart_max: Option<i32>,
    pub max_processes: Option<i32>,
    pub volume_path: Option<String>,
    pub cron_schedule: Option<String>,
    pub pre_deploy_command: Option<String>,
}

pub mod canvas;
pub mod pages;

/// A cron schedule of five fields (minute hour day-of-month month day-of-week), each made of
/// digits, `*`, `/`, `,` and `-`.
pub fn valid_cron(s: &str) -> bool {
    let fields: Vec<&str> = s.split_whitespace().collect();
    fields.len() == 5 && fields.iter().all(|f| f.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c)))
}

use crate::{error::AppError, variables::Variable};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
fn parse_number<T: std::str::FromStr>(field: &str, raw: Option<String>, what: &str) -> Result<Option<T>, AppError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| AppError::validation(field, format!("{what} must be a whole number."))),
    }
}

/// A reference between two services of one environment: `from`'s variables refer to `to`
/// (`${{Postgres.DATABASE_URL}}`), so `from` uses `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ServiceLink {
    pub from: Uuid,
    pub to: Uuid,
}

/// The references between a project's services (the arrows of its canvas). Only names are
/// read out of the values; no value leaves the server.
#[server(endpoint = "service_links")]
pub async fn service_links(project_id: Uuid) -> Result<Vec<ServiceLink>, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let state = request::state()?;
        service::links(&state.db, &state.secrets, auth.user.id, project_id).await
    })
    .await
}

#[server(endpoint = "list_services")]
pub async fn list_services(project_id: Uuid) -> Result<Vec<Service>, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::list(&request::state()?.db, auth.user.id, project_id).await
    })
    .await
}

#[server(endpoint = "create_service")]
pub async fn create_service(
    project_id: Uuid,
    environment_id: Option<Uuid>,
    name: String,
    source_kind: String,
    source: String,
    port: Option<String>,
) -> Result<Service, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let kind = SourceKind::parse(&source_kind)
            .ok_or_else(|| AppError::validation("source_kind", "Choose a source: upload, git, directory, image or database."))?;
        let input = ServiceInput {
            name: Some(name),
            environment_id,
            source_kind: Some(kind),
            source: Some(source),
            port: parse_number("port", port, "The port")?,
            ..Default::default()
        };
        let state = request::state()?;
        let created = service::create(&state.db, &state.config, &auth.user, project_id, &input).await?;
        leptos_axum::redirect(&format!("/services/{}", created.id));
        Ok(created)
    })
    .await
}

#[server(endpoint = "get_service")]
pub async fn get_service(id: Uuid) -> Result<Service, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::get(&request::state()?.db, auth.user.id, id).await
    })
    .await
}

/// The settings form: every field is sent, empty means "none".
#[allow(clippy::too_many_arguments)]
#[server(endpoint = "update_service")]
pub async fn update_service(
    id: Uuid,
    name: String,
    source: String,
    build_command: String,
    start_command: String,
    port: String,
    replicas: String,
    cpu_millis: String,
    memory_mb: String,
    healthcheck_path: String,
    healthcheck_timeout_secs: String,
    restart_policy: String,
    restart_max: String,
    max_processes: String,
    volume_path: String,
    cron_schedule: String,
    #[server(default)] pre_deploy_command: String,
) -> Result<Service, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let policy = RestartPolicy::parse(&restart_policy)
            .ok_or_else(|| AppError::validation("restart_policy", "Restart always, on failure, or never."))?;
        let input = ServiceInput {
            name: Some(name),
            source: Some(source),
            build_command: Some(build_command),
            start_command: Some(start_command),
            port: Some(parse_number("port", Some(port), "The port")?.unwrap_or(0)),
            replicas: parse_number("replicas", Some(replicas), "Replicas")?,
            cpu_millis: parse_number("cpu_millis", Some(cpu_millis), "CPU")?,
            memory_mb: parse_number("memory_mb", Some(memory_mb), "Memory")?,
            healthcheck_path: Some(healthcheck_path),
            healthcheck_timeout_secs: parse_number("healthcheck_timeout_secs", Some(healthcheck_timeout_secs), "The timeout")?,
            restart_policy: Some(policy),
            restart_max: parse_number("restart_max", Some(restart_max), "The restart limit")?,
            max_processes: parse_number("max_processes", Some(max_processes), "The process limit")?,
            volume_path: Some(volume_path),
            cron_schedule: Some(cron_schedule),
            pre_deploy_command: Some(pre_deploy_command),
            ..Default::default()
        };
        let state = request::state()?;
        service::update(&state.db, &state.config, &auth.user, id, &input).await
    })
    .await
}

/// The archive an upload service deploys from now, if one was uploaded.
#[server(endpoint = "current_upload")]
pub async fn current_upload(service_id: Uuid) -> Result<Option<SourceUpload>, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        upload::current(&request::state()?.db, auth.user.id, service_id).await
    })
    .await
}

#[server(endpoint = "delete_service")]
pub async fn delete_service(id: Uuid) -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let state = request::state()?;
        let s = service::get(&state.db, auth.user.id, id).await?;
        service::delete(&state.db, auth.user.id, id, &request::client_ip()).await?;
        leptos_axum::redirect(&format!("/projects/{}", s.project_id));
        Ok(())
    })
    .await
}

#[server(endpoint = "list_variables")]
pub async fn list_variables(service_id: Uuid) -> Result<Vec<Variable>, AppError> {
    crate::infra::request::with_status(async move {
        use crate::{infra::request, variables::service as vars};
        let auth = crate::auth::guard::require_user()?;
        let state = request::state()?;
        let scope = vars::service_scope(&state.db, auth.user.id, service_id).await?;
        vars::list(&state.db, &state.secrets, scope).await
    })
    .await
}

#[server(endpoint = "set_variable")]
pub async fn set_variable(service_id: Uuid, name: String, value: String, secret: Option<String>) -> Result<Variable, AppError> {
    crate::infra::request::with_status(async move {
        use crate::{infra::request, variables::{service as vars, SetVariable}};
        let auth = crate::auth::guard::require_user()?;
        let state = request::state()?;
        let scope = vars::service_scope(&state.db, auth.user.id, service_id).await?;
        let input = SetVariable { value, secret: secret.is_some_and(|s| !s.is_empty() && s != "false") };
        vars::set(&state.db, &state.secrets, scope, &name, &input).await
    })
    .await
}

#[server(endpoint = "delete_variable")]
pub async fn delete_variable(service_id: Uuid, name: String) -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        use crate::{infra::request, variables::service as vars};
        let auth = crate::auth::guard::require_user()?;
        let state = request::state()?;
        let scope = vars::service_scope(&state.db, auth.user.id, service_id).await?;
        vars::delete(&state.db, scope, &name).await
    })
    .await
}

/// The value of one variable; for a secret this is audited.
#[server(endpoint = "reveal_variable")]
pub async fn reveal_variable(service_id: Uuid, name: String) -> Result<String, AppError> {
    crate::infra::request::with_status(async move {
        use crate::{infra::request, variables::service as vars};
        let auth = crate::auth::guard::require_user()?;
        let state = request::state()?;
        let scope = vars::service_scope(&state.db, auth.user.id, service_id).await?;
        vars::reveal(&state.db, &state.secrets, scope, &name, auth.user.id, &request::client_ip()).await
    })
    .await
}
