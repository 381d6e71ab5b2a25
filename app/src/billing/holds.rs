//! Holds stop every service of an account and let nothing deploy until they are released:
//! the hard spend limit (`limits.rs`) and a payment left unpaid past the grace period
//! (`subscription.rs`). Services start again by themselves once no hold remains.

use crate::{
    deployments::{self, Status},
    error::{AppError, AppResult},
    infra::AppState,
};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The period's bill reached the hard limit.
    Limit,
    /// A payment failed and the grace period ended.
    Payment,
}

impl Hold {
    fn column(self) -> &'static str {
        match self {
            Hold::Limit => "limit_stopped_at",
            Hold::Payment => "payment_stopped_at",
        }
    }
}

/// Refuses a deploy while a hold keeps the account's services stopped, or the account is
/// suspended.
pub async fn admit(db: &PgPool, owner: Uuid) -> AppResult<()> {
    let held: Option<(bool, bool, bool)> = sqlx::query_as(
        "SELECT limit_stopped_at IS NOT NULL, payment_stopped_at IS NOT NULL, suspended_at IS NOT NULL FROM users WHERE id = $1",
    )
    .bind(owner)
    .fetch_optional(db)
    .await?;
    let (limit, payment, suspended) = held.unwrap_or_default();
    if suspended {
        return Err(AppError::forbidden("This account is suspended: nothing of it deploys. Contact the platform administrators."));
    }
    match (limit, payment) {
        (_, true) => Err(AppError::PlanLimit {
            message: "A payment is overdue, so your services are stopped and nothing deploys. Pay the open invoice (Manage billing on the billing page) to start them again.".into(),
        }),
        (true, _) => Err(AppError::PlanLimit {
            message: "This period's bill reached your usage limit (your hard limit, or what your plan includes when you have no paid subscription), so your services are stopped and nothing deploys. Raise the limit or choose a paid plan on the billing page to start them again.".into(),
        }),
        (false, false) => Ok(()),
    }
}

/// Puts `hold` on the account and stops every running or starting deployment of it,
/// remembering the running ones; answers how many were stopped.
pub async fn stop_all(db: &PgPool, owner: Uuid, hold: Hold, reason: &str) -> AppResult<usize> {
    sqlx::query(&format!("UPDATE users SET {0} = coalesce({0}, now()) WHERE id = $1", hold.column())).bind(owner).execute(db).await?;
    let stopped = stop_active(db, owner, reason).await?;
    for &(id, was_running) in &stopped {
        if was_running {
            sqlx::query("INSERT INTO usage_limit_stops (deployment_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING").bind(id).bind(owner).execute(db).await?;
        }
    }
    Ok(stopped.len())
}

/// Stops every running deployment of `owner` (`removed`) and cancels every one on its way
/// (`queued`, `building`, `deploying`), each with `reason`: the reconciler stops their
/// instances and the proxy stops routing to them. Answers each deployment stopped, and
/// whether it was running. Also what an admin's suspension does.
pub async fn stop_active(db: &PgPool, owner: Uuid, reason: &str) -> AppResult<Vec<(Uuid, bool)>> {
    // A deployment may move on (deploying → running) or be queued between the read and the
    // transition: go again until nothing of the owner is active (a few rounds at most).
    let mut stopped = Vec::new();
    for _ in 0..5 {
        match stop_active_once(db, owner, reason).await? {
            None => break,
            Some(round) => stopped.extend(round),
        }
    }
    Ok(stopped)
}

/// One round: None when nothing of the owner was active.
async fn stop_active_once(db: &PgPool, owner: Uuid, reason: &str) -> AppResult<Option<Vec<(Uuid, bool)>>> {
    let active: Vec<(Uuid, Status)> = sqlx::query_as(
        "SELECT d.id, d.status FROM deployments d JOIN services s ON s.id = d.service_id JOIN environments e ON e.id = s.environment_id
         JOIN projects p ON p.id = e.project_id WHERE p.owner_id = $1 AND d.status IN ('queued', 'building', 'deploying', 'running')",
    )
    .bind(owner)
    .fetch_all(db)
    .await?;
    if active.is_empty() {
        return Ok(None);
    }
    let mut stopped = Vec::new();
    for (id, status) in active {
        let running = status == Status::Running;
        let moved = if running {
            deployments::service::transition(db, id, &[Status::Running], Status::Removed, reason, None).await?
        } else {
            deployments::service::transition(db, id, &[Status::Queued, Status::Building, Status::Deploying], Status::Cancelled, reason, None).await?
        };
        if moved {
            stopped.push((id, running));
        }
    }
    Ok(Some(stopped))
}

/// Lifts `hold`. When no other hold remains, starts again what the holds stopped (the newest
/// stopped deployment of each service that has nothing newer) and answers how many; `None`
/// while another hold still keeps them stopped.
pub async fn release(state: &AppState, owner: Uuid, hold: Hold) -> AppResult<Option<usize>> {
    let db = &state.db;
    let still_held: bool = sqlx::query_scalar(&format!(
        "UPDATE users SET {} = NULL WHERE id = $1 RETURNING limit_stopped_at IS NOT NULL OR payment_stopped_at IS NOT NULL",
        hold.column()
    ))
    .bind(owner)
    .fetch_optional(db)
    .await?
    .unwrap_or(true);
    if still_held {
        return Ok(None);
    }
    let stopped: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT ON (d.service_id) d.id FROM usage_limit_stops l JOIN deployments d ON d.id = l.deployment_id
         WHERE l.user_id = $1 AND l.resumed_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM deployments n WHERE n.service_id = d.service_id AND n.number > d.number)
         ORDER BY d.service_id, d.number DESC",
    )
    .bind(owner)
    .fetch_all(db)
    .await?;
    let mut started = 0;
    for id in stopped {
        match deployments::service::resume(state, owner, id).await {
            Ok(new) => {
                sqlx::query("UPDATE usage_limit_stops SET resumed_at = now(), resumed_as = $2 WHERE deployment_id = $1").bind(id).bind(new.id).execute(db).await?;
                started += 1;
            }
            Err(e) => tracing::warn!(deployment_id = %id, error = %e, "could not start a deployment a hold stopped"),
        }
    }
    // Stops whose service was deployed anew meanwhile need nothing more.
    sqlx::query("UPDATE usage_limit_stops SET resumed_at = now() WHERE user_id = $1 AND resumed_at IS NULL").bind(owner).execute(db).await?;
    Ok(Some(started))
}
