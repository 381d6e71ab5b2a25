//! The audit log: every privileged or destructive action, who did it, to what, from where.

use sqlx::PgExecutor;
use uuid::Uuid;

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
