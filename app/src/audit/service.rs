//! Writing and reading the audit log.

use super::{AuditEntry, AuditPage};
use crate::error::AppResult;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

pub const PAGE_SIZE: i64 = 50;
/// The most entries of a user's own security log shown.
pub const SECURITY_LOG_SIZE: i64 = 50;

pub async fn record<'e>(
    db: impl PgExecutor<'e>,
    actor: Option<Uuid>,
    action: &str,
    target: &str,
    details: serde_json::Value,
    ip: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_log (actor_id, action, target, details, ip) VALUES ($1, $2, $3, $4, $5)")
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(details)
        .bind(ip)
        .execute(db)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    created_at: chrono::DateTime<chrono::Utc>,
    actor: Option<String>,
    action: String,
    target: String,
    details: serde_json::Value,
    ip: Option<String>,
}

impl From<Row> for AuditEntry {
    fn from(r: Row) -> Self {
        AuditEntry { id: r.id, at: r.created_at, actor: r.actor, action: r.action, target: r.target, details: r.details.to_string(), ip: r.ip }
    }
}

const SELECT: &str = "SELECT a.id, a.created_at, u.email AS actor, a.action, a.target, a.details, a.ip
     FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id";

pub async fn search(db: &PgPool, q: Option<&str>, offset: i64) -> AppResult<AuditPage> {
    let pattern = crate::admin::service::search_pattern(q, offset)?;
    let filter = "($1::text IS NULL OR a.action ILIKE $1 OR a.target ILIKE $1 OR u.email ILIKE $1 OR a.ip ILIKE $1)";
    let rows: Vec<Row> = sqlx::query_as(&format!("{SELECT} WHERE {filter} ORDER BY a.id DESC LIMIT $2 OFFSET $3"))
        .bind(&pattern)
        .bind(PAGE_SIZE)
        .bind(offset)
        .fetch_all(db)
        .await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id WHERE {filter}"))
        .bind(&pattern)
        .fetch_one(db)
        .await?;
    Ok(AuditPage { entries: rows.into_iter().map(Into::into).collect(), total, offset, page_size: PAGE_SIZE })
}

/// What `user` did, and what was done or tried to their account, newest first. Who else
/// acted, and from where, is shown only for attempts on the account (a failed sign-in's
/// address is the user's to know); an administrator's own email and address are not.
pub async fn of_user(db: &PgPool, user: Uuid) -> AppResult<Vec<AuditEntry>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.id, a.created_at,
                CASE WHEN a.actor_id = $1 THEN u.email WHEN a.actor_id IS NULL THEN NULL ELSE 'an administrator' END AS actor,
                a.action, a.target, a.details,
                CASE WHEN a.actor_id = $1 OR a.action = 'auth.sign_in_failed' THEN a.ip END AS ip
         FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
         WHERE a.actor_id = $1 OR a.target = $2 ORDER BY a.id DESC LIMIT $3",
    )
    .bind(user)
    .bind(format!("user:{user}"))
    .bind(SECURITY_LOG_SIZE)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}
