//! Usage metering: what services use becomes per-minute usage records (`usage_records`), each
//! written once, which billing prices (`app::billing`).
//!
//! - CPU and memory: the leader's runtime samples (`service_metrics`, every 5 s), averaged per
//!   service and minute once the minute is over. The first write of a minute wins, so a
//!   restart or a new leader re-reading the same samples never counts a minute twice.
//! - Volumes: what each service's volume folder holds, measured by the leader's runtime once a
//!   minute and recorded once per minute (MiB, rounded up), running or not.
//! - Egress: the body bytes each replica's proxy sent for a service, added to that replica's
//!   record of the minute when taken (every minute, and at shutdown); a failed write puts the
//!   counts back.

use app::infra::AppState;
use std::time::Duration;

/// How often each replica stores what its proxy sent.
const EGRESS_EVERY: Duration = Duration::from_secs(60);

/// Averages the runtime samples of the minutes that ended (up to an hour back) into usage
/// records; answers how many were written.
pub async fn record_runtime_minutes(db: &sqlx::PgPool) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "INSERT INTO usage_records (service_id, owner_id, project_id, resource, minute, source, quantity)
         SELECT m.service_id, p.owner_id, p.id, r.resource, date_trunc('minute', m.at), 'runtime',
                CASE r.resource WHEN 'cpu' THEN round(avg(m.cpu_percent)::numeric * 10)::bigint
                                ELSE round(avg(m.memory_bytes)::numeric / 1048576)::bigint END
         FROM service_metrics m
         JOIN services s ON s.id = m.service_id
         JOIN environments e ON e.id = s.environment_id
         JOIN projects p ON p.id = e.project_id
         CROSS JOIN (VALUES ('cpu'), ('memory')) AS r(resource)
         WHERE m.at >= date_trunc('minute', now()) - interval '1 hour' AND m.at < date_trunc('minute', now())
         GROUP BY m.service_id, p.owner_id, p.id, r.resource, date_trunc('minute', m.at)
         ON CONFLICT DO NOTHING",
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Records what each service's volume holds in this minute (MiB, rounded up: a volume is
/// billed for what it occupies), and keeps the size on the service for its page. The first
/// write of a minute wins, like the runtime's samples.
pub async fn record_volumes(db: &sqlx::PgPool, sizes: &[(uuid::Uuid, u64)]) -> sqlx::Result<u64> {
    if sizes.is_empty() {
        return Ok(0);
    }
    let ids: Vec<uuid::Uuid> = sizes.iter().map(|s| s.0).collect();
    let bytes: Vec<i64> = sizes.iter().map(|s| i64::try_from(s.1).unwrap_or(i64::MAX)).collect();
    sqlx::query("UPDATE services s SET volume_bytes = v.bytes FROM UNNEST($1::uuid[], $2::bigint[]) AS v(id, bytes) WHERE s.id = v.id")
        .bind(&ids)
        .bind(&bytes)
        .execute(db)
        .await?;
    let done = sqlx::query(
        "INSERT INTO usage_records (service_id, owner_id, project_id, resource, minute, source, quantity)
         SELECT v.id, p.owner_id, p.id, 'volume', date_trunc('minute', now()), 'runtime', (v.bytes + 1048575) / 1048576
         FROM UNNEST($1::uuid[], $2::bigint[]) AS v(id, bytes)
         JOIN services s ON s.id = v.id JOIN environments e ON e.id = s.environment_id JOIN projects p ON p.id = e.project_id
         WHERE v.bytes > 0
         ON CONFLICT DO NOTHING",
    )
    .bind(&ids)
    .bind(&bytes)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Stores what this replica's proxy sent since the last time, in this minute's records.
pub async fn flush_egress(state: &AppState) -> sqlx::Result<()> {
    let meter = &state.live.egress;
    let counts = meter.take();
    if counts.is_empty() {
        return Ok(());
    }
    let services: Vec<uuid::Uuid> = counts.keys().copied().collect();
    let bytes: Vec<i64> = services.iter().map(|s| i64::try_from(counts[s]).unwrap_or(i64::MAX)).collect();
    let stored = sqlx::query(
        "INSERT INTO usage_records (service_id, owner_id, project_id, resource, minute, source, quantity)
         SELECT c.service, p.owner_id, p.id, 'egress', date_trunc('minute', now()), $3, c.bytes
         FROM UNNEST($1::uuid[], $2::bigint[]) AS c(service, bytes)
         JOIN services s ON s.id = c.service
         JOIN environments e ON e.id = s.environment_id
         JOIN projects p ON p.id = e.project_id
         ON CONFLICT (service_id, resource, minute, source) DO UPDATE SET quantity = usage_records.quantity + EXCLUDED.quantity",
    )
    .bind(&services)
    .bind(&bytes)
    .bind(&meter.source)
    .execute(&state.db)
    .await;
    if stored.is_err() {
        meter.put_back(counts);
    }
    stored.map(|_| ())
}

/// Every replica stores its proxy's egress every minute (and once more at shutdown: main).
pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(EGRESS_EVERY).await;
            if let Err(e) = flush_egress(&state).await {
                tracing::warn!(error = %e, "storing egress usage failed; kept for the next try");
            }
        }
    });
}
