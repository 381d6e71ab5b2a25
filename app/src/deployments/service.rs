//! Deployments in Postgres. Users' calls reach a deployment through its service's project,
//! scoped by owner; the reconciler (unscoped) moves deployments through their states with
//! `transition`, which records the event and tells every replica (`NOTIFY rh_status`).

use super::{environment, Deployment, DeploymentDetail, Event, Instance, LogLine, MetricPoint, Status, Stream, Trigger};
use crate::{
    error::{AppError, AppResult},
    infra::{Admission, AppState},
    services::{self, SourceKind},
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// Channel the reconciler listens on: "there is work".
pub const DEPLOY_CHANNEL: &str = "rh_deploy";
/// Channel of status changes (payload: a `StatusChange` as JSON).
pub const STATUS_CHANNEL: &str = "rh_status";
/// Channel of new log lines (payload: the deployment id).
pub const LOGS_CHANNEL: &str = "rh_logs";
/// Channel of routing changes (payload empty).
pub const ROUTES_CHANNEL: &str = "rh_routes";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Rollback,
    Redeploy,
    Restart,
    Cancel,
    Stop,
}

impl Action {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "rollback" => Action::Rollback,
            "redeploy" => Action::Redeploy,
            "restart" => Action::Restart,
            "cancel" => Action::Cancel,
            "stop" => Action::Stop,
            _ => return None,
        })
    }
}

const SELECT: &str = "SELECT d.id, d.service_id, d.number, d.status, d.reason, d.trigger, d.rollback_of, d.created_at,
    d.updated_at, d.running_at, d.finished_at FROM deployments d";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    service_id: Uuid,
    number: i32,
    status: Status,
    reason: String,
    trigger: String,
    rollback_of: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    running_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<Row> for Deployment {
    fn from(r: Row) -> Self {
        Deployment {
            id: r.id,
            service_id: r.service_id,
            number: r.number,
            status: r.status,
            reason: r.reason,
            trigger: Trigger::parse(&r.trigger).unwrap_or(Trigger::Deploy),
            rollback_of: r.rollback_of,
            created_at: r.created_at,
            updated_at: r.updated_at,
            running_at: r.running_at,
            finished_at: r.finished_at,
        }
    }
}

const OWNED: &str = "JOIN services s ON s.id = d.service_id JOIN environments e ON e.id = s.environment_id
    JOIN projects p ON p.id = e.project_id";

/// The deployments of a service, newest first (the latest 50).
pub async fn list(db: &PgPool, owner: Uuid, service_id: Uuid) -> AppResult<Vec<Deployment>> {
    services::service::get(db, owner, service_id).await?;
    let rows: Vec<Row> = sqlx::query_as(&format!("{SELECT} WHERE d.service_id = $1 ORDER BY d.number DESC LIMIT 50"))
        .bind(service_id)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Deployment::from).collect())
}

/// The newest deployment of each service of a project.
pub async fn latest_per_service(db: &PgPool, owner: Uuid, project_id: Uuid) -> AppResult<Vec<Deployment>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT DISTINCT ON (d.service_id) d.id, d.service_id, d.number, d.status, d.reason, d.trigger, d.rollback_of,
            d.created_at, d.updated_at, d.running_at, d.finished_at
         FROM deployments d {OWNED} WHERE p.id = $1 AND p.owner_id = $2 ORDER BY d.service_id, d.number DESC"
    ))
    .bind(project_id)
    .bind(owner)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Deployment::from).collect())
}

pub async fn get(db: &PgPool, owner: Uuid, id: Uuid) -> AppResult<Deployment> {
    let row: Option<Row> = sqlx::query_as(&format!("{SELECT} {OWNED} WHERE d.id = $1 AND p.owner_id = $2"))
        .bind(id)
        .bind(owner)
        .fetch_optional(db)
        .await?;
    row.map(Deployment::from).ok_or_else(|| AppError::not_found("Deployment"))
}

pub async fn detail(state: &AppState, owner: Uuid, id: Uuid) -> AppResult<DeploymentDetail> {
    let deployment = get(&state.db, owner, id).await?;
    let service = services::service::get(&state.db, owner, deployment.service_id).await?;
    let slug: String = sqlx::query_scalar("SELECT slug FROM projects WHERE id = $1").bind(service.project_id).fetch_one(&state.db).await?;
    let events: Vec<(Status, String, DateTime<Utc>)> =
        sqlx::query_as("SELECT status, reason, at FROM deployment_events WHERE deployment_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&state.db)
            .await?;
    let instances: Vec<(i32, String, i32, Option<i32>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT replica, state, restarts, exit_code, started_at FROM instances WHERE deployment_id = $1 AND state <> 'stopped' ORDER BY replica",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    Ok(DeploymentDetail {
        public_url: state.config.service_url(&service.name, &service.environment, &slug),
        service_name: service.name,
        project_id: service.project_id,
        project_name: service.project,
        events: events
            .into_iter()
            .map(|(status, reason, at)| Event { status, reason, at })
            .collect(),
        instances: instances
            .into_iter()
            .map(|(replica, state, restarts, exit_code, started_at)| Instance { replica, state, restarts, exit_code, started_at })
            .collect(),
        deployment,
    })
}

/// Deploys the service's current source and settings.
pub async fn deploy(state: &AppState, owner: Uuid, service_id: Uuid) -> AppResult<Deployment> {
    let service = services::service::get(&state.db, owner, service_id).await?;
    let spec = serde_json::to_value(&service).map_err(|_| AppError::Internal)?;
    create(state, owner, &service, Trigger::Deploy, spec, None, None).await
}

/// Whether this service may be deployed at all: the platform's containment allows its owner,
/// its source is one its owner may use, and an upload service has an archive.
async fn admit(state: &AppState, service: &services::Service) -> AppResult<()> {
    let owner = crate::auth::service::find_user(&state.db, project_owner(&state.db, service.project_id).await?).await?;
    admit_owner(state, &owner)?;
    services::service::check_source_policy(&state.config, &owner, service.source_kind, &service.source)?;
    crate::billing::holds::admit(&state.db, owner.id).await?;
    // The plan as it is now (it may have shrunk since the service was made: a cancelled
    // subscription), for this service and its project.
    {
        use crate::billing::allowance::{self, Ask};
        let mut conn = state.db.acquire().await?;
        let services_in_project = allowance::services_in_project(&mut conn, service.project_id).await?;
        let ask = Ask { services_in_project, adding: 0, replicas: service.replicas, memory_mb: service.memory_mb, cpu_millis: service.cpu_millis };
        allowance::check(&mut conn, owner.id, ask).await?;
    }
    if service.source_kind == SourceKind::Upload && service.source.is_empty() {
        return Err(AppError::validation("source", "Upload an archive of your code first (a .tar.gz), then deploy."));
    }
    Ok(())
}

/// Whether the platform's containment lets `owner`'s projects deploy at all.
pub fn admit_owner(state: &AppState, owner: &crate::auth::User) -> AppResult<()> {
    match state.admission() {
        Admission::Everyone => {}
        Admission::AdminsOnly if owner.is_admin() => {}
        Admission::AdminsOnly => {
            return Err(AppError::forbidden(
                "This platform runs in single-user mode (ROUNDHOUSE_SANDBOX=off): only its admins' projects deploy.",
            ))
        }
        Admission::Nobody(why) => {
            return Err(AppError::conflict("runtime", {
                // Why (host paths, missing programs) is the operator's: /readyz and the logs say it.
                tracing::warn!(%why, "a deploy was refused: the sandbox cannot be set up");
                "Deployments are paused: this machine cannot sandbox what runs. An administrator must fix it."
            }))
        }
    }
    Ok(())
}

async fn project_owner(db: &PgPool, project_id: Uuid) -> AppResult<Uuid> {
    Ok(sqlx::query_scalar("SELECT owner_id FROM projects WHERE id = $1").bind(project_id).fetch_one(db).await?)
}

/// Checks what can be checked before anything starts, then queues the deployment.
async fn create(
    state: &AppState,
    actor: Uuid,
    service: &services::Service,
    trigger: Trigger,
    spec: serde_json::Value,
    artifact: Option<String>,
    rollback_of: Option<Uuid>,
) -> AppResult<Deployment> {
    let db = &state.db;
    admit(state, service).await?;
    // What the runtime says it cannot run (a container image on the local runtime).
    if let Some(why) = state.refused_source(service.source_kind.as_str()) {
        return Err(AppError::validation("source", why));
    }
    environment::assign_private_ports(db, &state.config, service.environment_id).await?;
    let env = environment::load(db, &state.secrets, &state.config, service.environment_id).await?;
    if let Err(message) = env.resolve(service.id) {
        return Err(AppError::validation("variables", message));
    }
    let mut tx = db.begin().await?;
    // One deployment number at a time per service.
    sqlx::query("SELECT 1 FROM services WHERE id = $1 FOR UPDATE").bind(service.id).execute(&mut *tx).await?;
    let reason = match trigger {
        Trigger::Deploy => "Deploy requested",
        Trigger::Redeploy => "Redeploy requested",
        Trigger::Rollback => "Rollback requested",
        Trigger::Restart => "Restart requested",
    };
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO deployments (service_id, number, status, reason, trigger, rollback_of, spec, artifact, created_by)
         VALUES ($1, (SELECT COALESCE(MAX(number), 0) + 1 FROM deployments WHERE service_id = $1), 'queued', $2, $3, $4, $5, $6, $7)
         RETURNING id",
    )
    .bind(service.id)
    .bind(reason)
    .bind(trigger.as_str())
    .bind(rollback_of)
    .bind(&spec)
    .bind(&artifact)
    .bind(actor)
    .fetch_one(&mut *tx)
    .await?;
    record_event(&mut tx, id, Status::Queued, reason).await?;
    // Read before the commit: once committed, the reconciler may move it on at once, and the
    // answer is the deployment as it was queued.
    let row: Option<Row> = sqlx::query_as(&format!("{SELECT} {OWNED} WHERE d.id = $1 AND p.owner_id = $2"))
        .bind(id)
        .bind(actor)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(deployment_id = %id, service_id = %service.id, trigger = trigger.as_str(), "deployment queued");
    row.map(Deployment::from).ok_or_else(|| AppError::not_found("Deployment"))
}

/// Records that a deployment entered `status`, and tells every replica (page streams) and the
/// reconciler, when the transaction commits.
async fn record_event(tx: &mut sqlx::PgConnection, id: Uuid, status: Status, reason: &str) -> AppResult<()> {
    sqlx::query("INSERT INTO deployment_events (deployment_id, status, reason) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(status.as_str())
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "SELECT pg_notify($2, json_build_object('deployment_id', d.id, 'service_id', d.service_id,
            'project_id', e.project_id, 'status', d.status)::text)
         FROM deployments d JOIN services s ON s.id = d.service_id JOIN environments e ON e.id = s.environment_id
         WHERE d.id = $1",
    )
    .bind(id)
    .bind(STATUS_CHANNEL)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')").bind(DEPLOY_CHANNEL).execute(&mut *tx).await?;
    Ok(())
}

/// Moves a deployment to `to` if it is in one of `from`, recording why. Answers whether it
/// moved. `deadline`: when the new phase fails if it has not moved on.
pub async fn transition(db: &PgPool, id: Uuid, from: &[Status], to: Status, reason: &str, deadline: Option<DateTime<Utc>>) -> AppResult<bool> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let mut tx = db.begin().await?;
    let moved = sqlx::query(
        "UPDATE deployments SET status = $2, reason = $3, updated_at = now(), deadline = $5,
            running_at = CASE WHEN $2 = 'running' THEN COALESCE(running_at, now()) ELSE running_at END,
            finished_at = CASE WHEN $2 IN ('failed', 'crashed', 'cancelled', 'removed') THEN now() ELSE finished_at END,
            stop_requested = stop_requested OR $2 IN ('failed', 'crashed', 'cancelled', 'removed')
         WHERE id = $1 AND status = ANY($4)",
    )
    .bind(id)
    .bind(to.as_str())
    .bind(reason)
    .bind(&from)
    .bind(deadline)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if moved {
        record_event(&mut tx, id, to, reason).await?;
    }
    tx.commit().await?;
    Ok(moved)
}

/// Rollback, redeploy, restart (each a new deployment), cancel or stop (this one).
pub async fn act(state: &AppState, owner: Uuid, id: Uuid, action: Action) -> AppResult<Deployment> {
    let db = &state.db;
    let d = get(db, owner, id).await?;
    let service = services::service::get(db, owner, d.service_id).await?;
    let (spec, artifact): (serde_json::Value, Option<String>) =
        sqlx::query_as("SELECT spec, artifact FROM deployments WHERE id = $1").bind(id).fetch_one(db).await?;
    let not_now = |what: &str| AppError::conflict("action", format!("Deployment #{} is {}: it cannot be {what}.", d.number, d.status));
    match action {
        Action::Rollback => {
            if d.running_at.is_none() {
                return Err(AppError::conflict("action", format!("Deployment #{} never ran successfully: roll back to one that did.", d.number)));
            }
            if d.status == Status::Running {
                return Err(AppError::conflict("action", format!("Deployment #{} is the one running.", d.number)));
            }
            // Its build was removed by retention: an uploaded archive is built again as it was,
            // but a git branch or a folder has moved on, and a rollback must not deploy new code.
            let moving_source = matches!(spec.get("source_kind").and_then(|k| k.as_str()), Some("git" | "directory"));
            if artifact.is_none() && moving_source {
                return Err(AppError::conflict(
                    "action",
                    format!("The build of deployment #{} was removed (only the newest builds of a service are kept), and its source has moved on since: deploy again instead.", d.number),
                ));
            }
            create(state, owner, &service, Trigger::Rollback, spec, artifact, Some(d.id)).await
        }
        Action::Redeploy => create(state, owner, &service, Trigger::Redeploy, spec, None, None).await,
        Action::Restart => {
            if d.status != Status::Running {
                return Err(not_now("restarted"));
            }
            create(state, owner, &service, Trigger::Restart, spec, artifact, None).await
        }
        Action::Cancel => {
            if !d.status.in_progress() {
                return Err(not_now("cancelled"));
            }
            transition(db, id, &[Status::Queued, Status::Building, Status::Deploying], Status::Cancelled, "Cancelled by the user", None).await?;
            get(db, owner, id).await
        }
        Action::Stop => {
            if d.status != Status::Running {
                return Err(not_now("stopped"));
            }
            transition(db, id, &[Status::Running], Status::Removed, "Stopped by the user", None).await?;
            get(db, owner, id).await
        }
    }
}

/// Starts a stopped deployment's build again as a new deployment (the hard usage limit
/// stopped it, and now allows it): `reason` says why, in its events.
pub async fn resume(state: &AppState, owner: Uuid, stopped: Uuid) -> AppResult<Deployment> {
    let d = get(&state.db, owner, stopped).await?;
    let service = services::service::get(&state.db, owner, d.service_id).await?;
    let (spec, artifact): (serde_json::Value, Option<String>) =
        sqlx::query_as("SELECT spec, artifact FROM deployments WHERE id = $1").bind(stopped).fetch_one(&state.db).await?;
    create(state, owner, &service, Trigger::Restart, spec, artifact, None).await
}

/// A page of a deployment's logs after `after` (a line id), optionally only lines containing
/// `search` (case-insensitive). Ownership is checked by the caller (`get`).
pub async fn logs_after(db: &PgPool, id: Uuid, after: i64, limit: i64, search: Option<&str>) -> AppResult<Vec<LogLine>> {
    let pattern = search.filter(|s| !s.is_empty()).map(crate::domain::like_pattern);
    let rows: Vec<(i64, DateTime<Utc>, String, Option<i32>, String)> = sqlx::query_as(
        "SELECT id, at, stream, replica, line FROM deployment_logs
         WHERE deployment_id = $1 AND id > $2 AND ($4::text IS NULL OR line ILIKE $4)
         ORDER BY id LIMIT $3",
    )
    .bind(id)
    .bind(after)
    .bind(limit)
    .bind(pattern)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, at, stream, replica, line)| LogLine { id, at, stream: Stream::parse(&stream).unwrap_or(Stream::System), replica, line })
        .collect())
}

/// The service's CPU and memory over the last hour.
pub async fn metrics(db: &PgPool, owner: Uuid, service_id: Uuid) -> AppResult<Vec<MetricPoint>> {
    services::service::get(db, owner, service_id).await?;
    let rows: Vec<(DateTime<Utc>, f32, i64)> = sqlx::query_as(
        "SELECT at, cpu_percent, memory_bytes FROM service_metrics
         WHERE service_id = $1 AND at > now() - interval '1 hour' ORDER BY at",
    )
    .bind(service_id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(at, cpu_percent, memory_bytes)| MetricPoint { at, cpu_percent, memory_bytes }).collect())
}
