//! Admins look into any account and any deployment: a user's projects, deployments, sessions,
//! tokens and bill so far; deployments across the platform by state (failed, crashed, stuck
//! past their deadline); one deployment's events and logs. Logs are shown as stored — secrets
//! were masked when they were captured — and no secret value is ever revealed here. Each look
//! at a tenant's deployment is audited.

use crate::{
    auth::{ApiToken, User},
    deployments::{DeploymentDetail, LogLine, Status},
    error::AppError,
};
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminProject {
    pub id: Uuid,
    pub name: String,
    pub services: i64,
    pub created_at: DateTime<Utc>,
}

/// A signed-in session of a user, as an admin sees it (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSession {
    pub kind: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// A deployment in a list across the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentListing {
    pub id: Uuid,
    pub number: i32,
    pub status: Status,
    pub reason: String,
    pub owner: String,
    pub project: String,
    pub service: String,
    pub created_at: DateTime<Utc>,
    pub deadline: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInspection {
    pub user: User,
    pub projects: Vec<AdminProject>,
    pub deployments: Vec<DeploymentListing>,
    pub sessions: Vec<AdminSession>,
    pub tokens: Vec<ApiToken>,
    /// The period's bill so far, in cents (fee included).
    pub bill_cents: i64,
}

/// Which deployments to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentFilter {
    All,
    Failed,
    Crashed,
    /// Building or deploying past its deadline, with no one making progress.
    Stuck,
    Running,
}

impl DeploymentFilter {
    pub const ALL: [DeploymentFilter; 5] = [DeploymentFilter::All, DeploymentFilter::Failed, DeploymentFilter::Crashed, DeploymentFilter::Stuck, DeploymentFilter::Running];

    pub fn parse(s: Option<&str>) -> Result<Self, AppError> {
        match s.unwrap_or("all") {
            "all" | "" => Ok(DeploymentFilter::All),
            "failed" => Ok(DeploymentFilter::Failed),
            "crashed" => Ok(DeploymentFilter::Crashed),
            "stuck" => Ok(DeploymentFilter::Stuck),
            "running" => Ok(DeploymentFilter::Running),
            other => Err(AppError::validation("state", format!("Unknown state {other:?}: use all, failed, crashed, stuck or running."))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentFilter::All => "all",
            DeploymentFilter::Failed => "failed",
            DeploymentFilter::Crashed => "crashed",
            DeploymentFilter::Stuck => "stuck",
            DeploymentFilter::Running => "running",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminDeploymentPage {
    pub deployments: Vec<DeploymentListing>,
    pub total: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminDeploymentView {
    pub owner: String,
    pub owner_id: Uuid,
    pub detail: DeploymentDetail,
    /// The newest lines (at most `LOG_LINES`), oldest first.
    pub logs: Vec<LogLine>,
}

#[server(endpoint = "admin_user_detail")]
pub async fn admin_user_detail(user_id: Uuid) -> Result<UserInspection, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let admin = crate::auth::guard::require_admin()?;
        super::inspect_service::user_detail(&request::state()?.db, &admin.user, user_id, &request::client_ip()).await
    })
    .await
}

#[server(endpoint = "admin_deployments")]
pub async fn admin_deployments(state: Option<String>) -> Result<AdminDeploymentPage, AppError> {
    crate::infra::request::with_status(async move {
        crate::auth::guard::require_admin()?;
        let filter = DeploymentFilter::parse(state.as_deref())?;
        super::inspect_service::deployments(&crate::infra::request::state()?.db, filter).await
    })
    .await
}

#[server(endpoint = "admin_deployment")]
pub async fn admin_deployment(id: Uuid) -> Result<AdminDeploymentView, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let admin = crate::auth::guard::require_admin()?;
        super::inspect_service::deployment(&request::state()?, &admin.user, id, &request::client_ip()).await
    })
    .await
}
