use super::{AdminUser, UserPage};
use crate::{
    audit,
    auth::{service::{UserRow, USER_COLUMNS}, Role, User},
    error::{AppError, AppResult},
};
use sqlx::PgPool;
use uuid::Uuid;

pub const PAGE_SIZE: i64 = 50;
/// What a suspended user's deployments show as the reason they stopped.
pub const SUSPENDED_REASON: &str = "Stopped: the account was suspended by an administrator.";

/// An admin list's search and page: the words looked for (at most 100 characters) as an
/// `ILIKE` pattern, none when empty; a negative offset is refused.
pub fn search_pattern(q: Option<&str>, offset: i64) -> AppResult<Option<String>> {
    let q = q.map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 100) {
        return Err(AppError::validation("q", "Search for at most 100 characters."));
    }
    if offset < 0 {
        return Err(AppError::validation("offset", "The offset cannot be negative."));
    }
    Ok(q.map(crate::domain::like_pattern))
}

pub async fn list_users(db: &PgPool, q: Option<&str>, offset: i64) -> AppResult<UserPage> {
    let pattern = search_pattern(q, offset)?;
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        user: UserRow,
        project_count: i64,
    }
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS}, (SELECT count(*) FROM projects p WHERE p.owner_id = u.id) AS project_count
         FROM users u WHERE ($1::text IS NULL OR u.email ILIKE $1 OR u.name ILIKE $1)
         ORDER BY u.created_at DESC LIMIT $2 OFFSET $3"
    ))
    .bind(&pattern)
    .bind(PAGE_SIZE)
    .bind(offset)
    .fetch_all(db)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM users u WHERE ($1::text IS NULL OR u.email ILIKE $1 OR u.name ILIKE $1)")
        .bind(&pattern)
        .fetch_one(db)
        .await?;
    Ok(UserPage {
        users: rows.into_iter().map(|r| AdminUser { user: r.user.into(), project_count: r.project_count }).collect(),
        total,
    })
}

pub async fn set_role(db: &PgPool, actor: &User, user_id: Uuid, role: Role, ip: &str) -> AppResult<()> {
    if actor.id == user_id && role != Role::Admin {
        return Err(AppError::validation("role", "You cannot remove your own admin role; ask another admin."));
    }
    let mut tx = db.begin().await?;
    let done = sqlx::query("UPDATE users SET role = $2, updated_at = now() WHERE id = $1")
        .bind(user_id)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::not_found("User"));
    }
    audit::record(&mut *tx, Some(actor.id), "user.role", &format!("user:{user_id}"), serde_json::json!({ "role": role.as_str() }), ip).await?;
    tx.commit().await?;
    Ok(())
}

/// Suspending ends every session of the user, stops their API tokens from working
/// (authentication checks the flag; open live streams end within 15 s) and stops every service
/// of theirs: running deployments are `removed`, those on their way `cancelled`, each with the
/// reason, and nothing of theirs deploys while the suspension lasts. Unsuspending lets them
/// sign in and deploy again; it starts nothing by itself.
pub async fn set_suspended(db: &PgPool, actor: &User, user_id: Uuid, suspended: bool, ip: &str) -> AppResult<()> {
    if actor.id == user_id {
        return Err(AppError::validation("user", "You cannot suspend yourself."));
    }
    if suspended {
        let is_admin: Option<bool> = sqlx::query_scalar("SELECT role = 'admin' FROM users WHERE id = $1").bind(user_id).fetch_optional(db).await?;
        if is_admin == Some(true) {
            return Err(AppError::validation("user", "An administrator cannot be suspended: make them a user first."));
        }
    }
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE users SET suspended_at = CASE WHEN $2 THEN coalesce(suspended_at, now()) ELSE NULL END, updated_at = now() WHERE id = $1",
    )
    .bind(user_id)
    .bind(suspended)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::not_found("User"));
    }
    if suspended {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
    }
    let action = if suspended { "user.suspend" } else { "user.unsuspend" };
    audit::record(&mut *tx, Some(actor.id), action, &format!("user:{user_id}"), serde_json::json!({}), ip).await?;
    tx.commit().await?;
    if suspended {
        let stopped = crate::billing::holds::stop_active(db, user_id, SUSPENDED_REASON).await?;
        tracing::info!(user_id = %user_id, deployments = stopped.len(), "user suspended: their deployments were stopped");
    } else {
        tracing::info!(user_id = %user_id, "user unsuspended");
    }
    Ok(())
}
