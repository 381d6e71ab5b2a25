//! Bounded log volume: each deployment keeps its newest lines within a byte budget
//! (`ROUNDHOUSE_LOG_MB_PER_DEPLOYMENT`), so a flood cannot fill the disk.
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

/// The budget in bytes from the value of `ROUNDHOUSE_LOG_MB_PER_DEPLOYMENT` (whole MiB, at
/// least 1); a bad value is reported and the default used.
pub fn budget(value: Option<String>) -> i64 {
    let mb = match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => DEFAULT_MB,
        Some(v) => match v.parse::<u32>() {
            Ok(mb) if mb >= 1 => mb,
            _ => {
                tracing::error!(value = v, "ROUNDHOUSE_LOG_MB_PER_DEPLOYMENT must be a whole number of MiB, at least 1; using {DEFAULT_MB}");
                DEFAULT_MB
            }
        },
    };
    i64::from(mb) * 1024 * 1024
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

/// Prunes every [`EVERY`], for as long as the process runs.
pub async fn run(db: PgPool, budget: i64) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match prune(&db, budget).await {
            Ok(0) => {}
            Ok(lines) => tracing::info!(lines, "old log lines of deployments over their budget deleted"),
            Err(e) => tracing::warn!(error = %e, "pruning logs failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_read_in_mib_with_a_default_for_bad_values() {
        assert_eq!(budget(None), 64 * 1024 * 1024);
        assert_eq!(budget(Some(" 2 ".into())), 2 * 1024 * 1024);
        assert_eq!(budget(Some("".into())), 64 * 1024 * 1024);
        for bad in ["0", "-1", "1.5", "lots"] {
            assert_eq!(budget(Some(bad.into())), 64 * 1024 * 1024, "{bad}");
        }
    }
}
