//! Deployments: one attempt to run a service's source with its settings. The desired state
//! lives here, in Postgres; the reconciler (server crate) converges a runtime to it.
//!
//! `queued → building → deploying → running | failed | crashed | cancelled | removed`, each
//! transition recorded as an event with its reason.

#[cfg(feature = "ssr")]
pub mod environment;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod service;

use crate::error::AppError;
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A deployment's state, stored as its name (`deployments.status`, checked by the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, sqlx::Type))]
#[cfg_attr(feature = "ssr", sqlx(type_name = "text", rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Building,
    Deploying,
    Running,
    Failed,
    Crashed,
    Cancelled,
    Removed,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Queued,
        Status::Building,
        Status::Deploying,
        Status::Running,
        Status::Failed,
        Status::Crashed,
        Status::Cancelled,
        Status::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Building => "building",
            Status::Deploying => "deploying",
            Status::Running => "running",
            Status::Failed => "failed",
            Status::Crashed => "crashed",
            Status::Cancelled => "cancelled",
            Status::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Still on its way to running.
    pub fn in_progress(self) -> bool {
        matches!(self, Status::Queued | Status::Building | Status::Deploying)
    }

    /// Nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Failed | Status::Crashed | Status::Cancelled | Status::Removed)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A deploy of the service's current source and settings.
    Deploy,
    /// The same source and settings as an earlier deployment, built again.
    Redeploy,
    /// An earlier successful deployment's build, run again.
    Rollback,
    /// The running deployment's build, started afresh.
    Restart,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Deploy => "deploy",
            Trigger::Redeploy => "redeploy",
            Trigger::Rollback => "rollback",
            Trigger::Restart => "restart",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Trigger::Deploy, Trigger::Redeploy, Trigger::Rollback, Trigger::Restart].into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Deployment {
    pub id: Uuid,
    pub service_id: Uuid,
    /// 1, 2, 3… per service.
    pub number: i32,
    pub status: Status,
    /// Why it is in its status (the last transition's reason).
    pub reason: String,
    pub trigger: Trigger,
    /// For a rollback: the deployment whose build it runs.
    pub rollback_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When it first took traffic; a deployment that did is "successful" and can be rolled back to.
    pub running_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Event {
    pub status: Status,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Instance {
    pub replica: i32,
    pub state: String,
    pub restarts: i32,
    pub exit_code: Option<i32>,
    pub started_at: DateTime<Utc>,
}

/// A deployment with what its page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeploymentDetail {
    pub deployment: Deployment,
    pub service_name: String,
    pub project_id: Uuid,
    pub project_name: String,
    /// Where the service answers through the platform's proxy.
    pub public_url: String,
    pub events: Vec<Event>,
    pub instances: Vec<Instance>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Build,
    Stdout,
    Stderr,
    System,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Build => "build",
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::System => "system",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Stream::Build, Stream::Stdout, Stream::Stderr, Stream::System].into_iter().find(|t| t.as_str() == s)
    }
}

/// One captured line. `id` orders all lines of a deployment and is where a follower resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LogLine {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub stream: Stream,
    pub replica: Option<i32>,
    pub line: String,
}

/// A CPU and memory sample of a service (all its running instances together).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct MetricPoint {
    pub at: DateTime<Utc>,
    pub cpu_percent: f32,
    pub memory_bytes: i64,
}

/// What changed, as the live status stream sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub deployment_id: Uuid,
    pub service_id: Uuid,
    pub project_id: Uuid,
    pub status: Status,
}

#[server(endpoint = "list_deployments")]
pub async fn list_deployments(service_id: Uuid) -> Result<Vec<Deployment>, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::list(&request::state()?.db, auth.user.id, service_id).await
    })
    .await
}

#[server(endpoint = "deploy_service")]
pub async fn deploy_service(service_id: Uuid) -> Result<Deployment, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let state = request::state()?;
        let d = service::deploy(&state, auth.user.id, service_id).await?;
        leptos_axum::redirect(&format!("/deployments/{}", d.id));
        Ok(d)
    })
    .await
}

#[server(endpoint = "get_deployment")]
pub async fn get_deployment(id: Uuid) -> Result<DeploymentDetail, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let state = request::state()?;
        service::detail(&state, auth.user.id, id).await
    })
    .await
}

/// `action`: rollback, redeploy, restart, cancel or stop. Rollback, redeploy and restart make
/// a new deployment and answer with it; cancel and stop answer with this one.
#[server(endpoint = "deployment_action")]
pub async fn deployment_action(id: Uuid, action: String) -> Result<Deployment, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let state = request::state()?;
        let action = service::Action::parse(&action)
            .ok_or_else(|| AppError::validation("action", "Choose rollback, redeploy, restart, cancel or stop."))?;
        let d = service::act(&state, auth.user.id, id, action).await?;
        leptos_axum::redirect(&format!("/deployments/{}", d.id));
        Ok(d)
    })
    .await
}

#[server(endpoint = "service_metrics")]
pub async fn service_metrics(service_id: Uuid) -> Result<Vec<MetricPoint>, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::metrics(&request::state()?.db, auth.user.id, service_id).await
    })
    .await
}

/// The newest deployment of each service of a project.
#[server(endpoint = "latest_deployments")]
pub async fn latest_deployments(project_id: Uuid) -> Result<Vec<Deployment>, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::latest_per_service(&request::state()?.db, auth.user.id, project_id).await
    })
    .await
}
