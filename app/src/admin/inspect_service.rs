//! The queries behind the admin's inspection pages (`inspect.rs`). Not scoped to an owner, on
//! purpose: only `require_admin` callers reach them.

use super::inspect::{DeploymentListing, AdminDeploymentPage, AdminDeploymentView, AdminProject, AdminSession, UserInspection, DeploymentFilter};
use crate::{
    audit,
    auth::{ApiToken, User},
    deployments::{LogLine, Status, Stream},
    error::{AppError, AppResult},
    infra::AppState,
};
use sqlx::PgPool;
use uuid::Uuid;

/// Deployments listed at most, newest first.
pub const LIST_SIZE: i64 = 100;
/// Log lines shown of one deployment, the newest.
pub const LOG_LINES: i64 = 500;

const DEPLOYMENTS: &str = "SELECT d.id, d.number, d.status, d.reason, u.email AS owner, p.name AS project, s.name AS service, d.created_at, d.deadline
     FROM deployments d JOIN services s ON s.id = d.service_id JOIN environments e ON e.id = s.environment_id
     JOIN projects p ON p.id = e.project_id JOIN users u ON u.id = p.owner_id";

#[derive(sqlx::FromRow)]
struct DeploymentRow {
    id: Uuid,
    number: i32,
    status: Status,
    reason: String,
    owner: String,
    project: String,
    service: String,
    created_at: chrono::DateTime<chrono::Utc>,
    deadline: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<DeploymentRow> for DeploymentListing {
    fn from(r: DeploymentRow) -> Self {
        DeploymentListing { id: r.id, number: r.number, status: r.status, reason: r.reason, owner: r.owner, project: r.project, service: r.service, created_at: r.created_at, deadline: r.deadline }
    }
}

fn filter_sql(filter: DeploymentFilter) -> &'static str {
    match filter {
        DeploymentFilter::All => "TRUE",
        DeploymentFilter::Failed => "d.status = 'failed'",
        DeploymentFilter::Crashed => "d.status = 'crashed'",
        DeploymentFilter::Stuck => "d.status IN ('building', 'deploying') AND d.deadline < now()",
        DeploymentFilter::Running => "d.status = 'running'",
    }
}

pub async fn deployments(db: &PgPool, filter: DeploymentFilter) -> AppResult<AdminDeploymentPage> {
    let condition = filter_sql(filter);
    let rows: Vec<DeploymentRow> = sqlx::query_as(&format!("{DEPLOYMENTS} WHERE {condition} ORDER BY d.created_at DESC LIMIT $1"))
        .bind(LIST_SIZE)
        .fetch_all(db)
        .await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM deployments d WHERE {condition}")).fetch_one(db).await?;
    Ok(AdminDeploymentPage { deployments: rows.into_iter().map(Into::into).collect(), total })
}

pub async fn user_detail(db: &PgPool, admin: &User, user_id: Uuid, ip: &str) -> AppResult<UserInspection> {
    let user: User = crate::auth::service::find_user(db, user_id).await.map_err(|_| AppError::not_found("User"))?;
    let projects: Vec<(Uuid, String, i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT p.id, p.name, (SELECT count(*) FROM services s JOIN environments e ON e.id = s.environment_id WHERE e.project_id = p.id), p.created_at
         FROM projects p WHERE p.owner_id = $1 ORDER BY p.created_at",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    let deployments: Vec<DeploymentRow> = sqlx::query_as(&format!("{DEPLOYMENTS} WHERE p.owner_id = $1 ORDER BY d.created_at DESC LIMIT 20"))
        .bind(user_id)
        .fetch_all(db)
        .await?;
    let sessions: Vec<(String, Option<String>, Option<String>, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT kind, ip, user_agent, created_at, last_seen_at FROM sessions WHERE user_id = $1 AND expires_at > now() ORDER BY last_seen_at DESC LIMIT 50",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    let tokens: Vec<ApiToken> =
        sqlx::query_as("SELECT id, name, prefix, scope, expires_at, created_at, last_used_at FROM api_tokens WHERE user_id = $1 ORDER BY created_at").bind(user_id).fetch_all(db).await?;
    let bill = crate::billing::service::bill_so_far(db, user_id, chrono::Utc::now()).await?;
    audit::record(db, Some(admin.id), "user.inspect", &format!("user:{user_id}"), serde_json::json!({}), ip).await?;
    Ok(UserInspection {
        user,
        projects: projects.into_iter().map(|(id, name, services, created_at)| AdminProject { id, name, services, created_at }).collect(),
        deployments: deployments.into_iter().map(Into::into).collect(),
        sessions: sessions
            .into_iter()
            .map(|(kind, ip, user_agent, created_at, last_seen_at)| AdminSession { kind, ip, user_agent, created_at, last_seen_at })
            .collect(),
        tokens,
        bill_cents: bill.bill.total_cents,
    })
}

/// One deployment of anyone's, with its events, instances and newest log lines; the look is
/// recorded in the audit log.
pub async fn deployment(state: &AppState, admin: &User, id: Uuid, ip: &str) -> AppResult<AdminDeploymentView> {
    let owner: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT u.id, u.email FROM deployments d JOIN services s ON s.id = d.service_id JOIN environments e ON e.id = s.environment_id
         JOIN projects p ON p.id = e.project_id JOIN users u ON u.id = p.owner_id WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(&state.db)
    .await?;
    let (owner_id, owner) = owner.ok_or_else(|| AppError::not_found("Deployment"))?;
    let detail = crate::deployments::service::detail(state, owner_id, id).await?;
    let newest: Vec<(i64, chrono::DateTime<chrono::Utc>, String, Option<i32>, String)> = sqlx::query_as(
        "SELECT id, at, stream, replica, line FROM deployment_logs WHERE deployment_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(id)
    .bind(LOG_LINES)
    .fetch_all(&state.db)
    .await?;
    let logs: Vec<LogLine> = newest
        .into_iter()
        .rev()
        .map(|(id, at, stream, replica, line)| LogLine { id, at, stream: Stream::parse(&stream).unwrap_or(Stream::System), replica, line })
        .collect();
    audit::record(&state.db, Some(admin.id), "deployment.inspect", &format!("deployment:{id}"), serde_json::json!({ "owner": owner }), ip).await?;
    Ok(AdminDeploymentView { owner, owner_id, detail, logs })
}
