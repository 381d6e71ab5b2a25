//! Bounded log volume: each deployment keeps its newest lines within a byte budget
//! (`ROUNDHOUSE_LOG_MB_PER_DEPLOYMENT`), so a flood cannot fill the disk, and no line older
//! than `ROUNDHOUSE_LOG_DAYS`.
//!
//! The writer adds every stored line's size (text + [`STORED_LINE_OVERHEAD`]) to its
//! deployment's row of `deployment_log_usage` in the transaction that stores it; pruning
//! deletes the oldest lines and subtracts what it deleted in one statement. So only deployments
//! over budget are examined, and several replicas may prune at once: a line deleted by one is
//! neither deleted nor subtracted again by another.

use super::STORED_LINE_OVERHEAD;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// The budget when `ROUNDHOUSE_LOG_MB_PER_DEPLOYMENT` is not set.
pub const DEFAULT_MB: u32 = 64;
/// How long lines are kept when `ROUNDHOUSE_LOG_DAYS` is not set.
pub const DEFAULT_DAYS: u32 = 30;
/// Lines looked at per deployment and statement when deleting by age (oldest first), so that
/// no statement holds a deployment's lines for long.
const AGE_BATCH: i64 = 10_000;
/// How often the budget is enforced: a deployment may hold up to a minute of lines past it.
pub const EVERY: Duration = Duration::from_secs(60);

/// For one deployment over budget: the oldest lines whose sizes add up to what is over the
/// budget (as the usage row says now), deleted, and their sizes subtracted from the usage.
/// Reads only those oldest lines (the running sum stops at the first line that reaches it).
const PRUNE: &str = "
    WITH over AS (
        SELECT bytes - $2 AS bytes FROM deployment_log_usage WHERE deployment_id = $1 AND bytes > $2
    ), cut AS (
        SELECT id FROM (
            SELECT id, sum(octet_length(line) + $3) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS oldest
            FROM deployment_logs WHERE deployment_id = $1
        ) lines
        WHERE oldest >= (SELECT bytes FROM over)
        ORDER BY id LIMIT 1
    ), gone AS (
        DELETE FROM deployment_logs WHERE deployment_id = $1 AND id <= (SELECT id FROM cut)
        RETURNING octet_length(line) + $3 AS bytes
    ), counted AS (
        UPDATE deployment_log_usage SET bytes = bytes - (SELECT coalesce(sum(bytes), 0) FROM gone)
        WHERE deployment_id = $1
    )
    SELECT count(*) FROM gone";

/// Of one deployment's oldest `$3` lines, those up to the last one written before `$2`,
/// deleted, and their sizes subtracted from its usage.
const PRUNE_OLD: &str = "
    WITH cut AS (
        SELECT max(id) AS id FROM (
            SELECT id, at FROM deployment_logs WHERE deployment_id = $1 ORDER BY id LIMIT $3
        ) oldest WHERE at < $2
    ), gone AS (
        DELETE FROM deployment_logs WHERE deployment_id = $1 AND id <= (SELECT id FROM cut)
        RETURNING octet_length(line) + $4 AS bytes
    ), counted AS (
        UPDATE deployment_log_usage SET bytes = bytes - (SELECT coalesce(sum(bytes), 0) FROM gone)
        WHERE deployment_id = $1
    )
    SELECT count(*) FROM gone";

/// How much is kept: bytes per deployment, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub budget: i64,
    pub max_age: chrono::Duration,
}

impl Policy {
    /// From `ROUNDHOUSE_LOG_MB_PER_DEPLOYMENT` and `ROUNDHOUSE_LOG_DAYS`.
    pub fn from_env() -> Policy {
        Policy::read(std::env::var("ROUNDHOUSE_LOG_MB_PER_DEPLOYMENT").ok(), std::env::var("ROUNDHOUSE_LOG_DAYS").ok())
    }

    /// Whole MiB and whole days, at least 1 each; a bad value is reported and the default used.
    pub fn read(mb: Option<String>, days: Option<String>) -> Policy {
        let mb = whole("ROUNDHOUSE_LOG_MB_PER_DEPLOYMENT", "MiB", mb, DEFAULT_MB);
        let days = whole("ROUNDHOUSE_LOG_DAYS", "days", days, DEFAULT_DAYS);
        Policy { budget: i64::from(mb) * 1024 * 1024, max_age: chrono::Duration::days(i64::from(days)) }
    }
}

fn whole(name: &str, unit: &str, value: Option<String>, default: u32) -> u32 {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => default,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => {
                tracing::error!(value = v, "{name} must be a whole number of {unit}, at least 1; using {default}");
                default
            }
        },
    }
}

/// Deletes the oldest lines of every deployment whose logs take more than `budget` bytes,
/// keeping its newest lines within the budget. Returns how many lines were deleted.
pub async fn prune(db: &PgPool, budget: i64) -> sqlx::Result<u64> {
    let over: Vec<Uuid> = sqlx::query_scalar("SELECT deployment_id FROM deployment_log_usage WHERE bytes > $1").bind(budget).fetch_all(db).await?;
    let mut deleted = 0;
    for id in over {
        let n: i64 = sqlx::query_scalar(PRUNE).bind(id).bind(budget).bind(STORED_LINE_OVERHEAD).fetch_one(db).await?;
        deleted += n.unsigned_abs();
    }
    Ok(deleted)
}

/// Deletes every line written more than `max_age` ago. Only deployments whose oldest line is
/// that old are touched (one index probe each), oldest lines first, in batches. Returns how
/// many lines were deleted.
pub async fn prune_old(db: &PgPool, max_age: chrono::Duration) -> sqlx::Result<u64> {
    let before = chrono::Utc::now() - max_age;
    let old: Vec<Uuid> = sqlx::query_scalar(
        "SELECT u.deployment_id FROM deployment_log_usage u
         WHERE u.bytes > 0
           AND (SELECT l.at FROM deployment_logs l WHERE l.deployment_id = u.deployment_id ORDER BY l.id LIMIT 1) < $1",
    )
    .bind(before)
    .fetch_all(db)
    .await?;
    // The stored positions of instance runs quiet that long: a run that resumes without one
    // starts from its folder's own cursor.
    sqlx::query("DELETE FROM instance_log_cursors WHERE updated_at < $1").bind(before).execute(db).await?;
    let mut deleted = 0;
    for id in old {
        loop {
            // One deployment failing (a lock timeout) does not stop the others'.
            let n: i64 = match sqlx::query_scalar(PRUNE_OLD).bind(id).bind(before).bind(AGE_BATCH).bind(STORED_LINE_OVERHEAD).fetch_one(db).await {
                Ok(n) => n,
                Err(e) if app::infra::db::is_unavailable(&e) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, deployment_id = %id, "pruning a deployment's old log lines failed");
                    break;
                }
            };
            deleted += n.unsigned_abs();
            if n < AGE_BATCH {
                break;
            }
        }
    }
    Ok(deleted)
}

/// Prunes every [`EVERY`], for as long as the process runs.
pub async fn run(db: PgPool, policy: Policy) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match prune(&db, policy.budget).await {
            Ok(0) => {}
            Ok(lines) => tracing::info!(lines, "old log lines of deployments over their budget deleted"),
            Err(e) => tracing::warn!(error = %e, "pruning logs failed"),
        }
        match prune_old(&db, policy.max_age).await {
            Ok(0) => {}
            Ok(lines) => tracing::info!(lines, "log lines past their age deleted"),
            Err(e) => tracing::warn!(error = %e, "pruning old logs failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_read_in_mib_and_days_with_defaults_for_bad_values() {
        let default = Policy { budget: 64 * 1024 * 1024, max_age: chrono::Duration::days(30) };
        assert_eq!(Policy::read(None, None), default);
        assert_eq!(Policy::read(Some(" 2 ".into()), Some("7".into())), Policy { budget: 2 * 1024 * 1024, max_age: chrono::Duration::days(7) });
        assert_eq!(Policy::read(Some("".into()), Some(" ".into())), default);
        for bad in ["0", "-1", "1.5", "lots"] {
            assert_eq!(Policy::read(Some(bad.into()), Some(bad.into())), default, "{bad}");
        }
    }
}
