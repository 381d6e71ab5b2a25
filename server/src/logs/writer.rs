//! The one writer of a platform process: takes fair batches from the queues and stores each in
//! one transaction — `COPY` of the lines, the bytes added to each deployment's usage, one
//! `NOTIFY rh_logs` per deployment — then gives the lines' room back to their producers.

use super::{
    copy,
    queues::{Queued, Queues},
    LogTx, STORED_LINE_OVERHEAD,
};
use app::deployments::service::LOGS_CHANNEL;
use sqlx::PgPool;
use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::Duration,
};
use uuid::Uuid;

/// The most lines, and (about) the most bytes of lines, stored in one transaction.
pub(super) const BATCH_LINES: usize = 10_000;
pub(super) const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// With fewer lines than this waiting, the writer waits `GATHER` for more, so a trickle is
/// stored in fewer transactions; with more, it stores them at once.
const GATHER_BELOW: usize = 256;
const GATHER: Duration = Duration::from_millis(10);
/// How long batches are retried while Postgres is away (restarting, a failover) before they
/// are dropped. Meanwhile producers wait for room, so a service logging through a short
/// outage loses no line, and one logging through a long one is held up at most this long.
const OUTAGE_BUDGET: Duration = Duration::from_secs(60);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(2);

/// Adds each deployment's bytes to its usage (for retention) and notifies its followers; runs
/// in the transaction of the `COPY`, so followers are told only of committed lines, and its
/// foreign key is the check that each line's deployment exists. The ids are
/// sorted, so two writers (a leader change) lock usage rows in the same order.
const USAGE_AND_NOTIFY: &str = "
    WITH counted AS (
        INSERT INTO deployment_log_usage AS u (deployment_id, bytes)
        SELECT * FROM UNNEST($1::uuid[], $2::bigint[])
        ON CONFLICT (deployment_id) DO UPDATE SET bytes = u.bytes + excluded.bytes
    )
    SELECT pg_notify($3, id::text) FROM UNNEST($1::uuid[]) AS id";

/// Starts the writer of this process; lines queued through the returned handle are stored in
/// order. It ends once every handle is dropped and everything queued is stored.
pub fn spawn_writer(db: PgPool) -> LogTx {
    let (tx, queues) = LogTx::new();
    tokio::spawn(run(db, queues));
    tx
}

async fn run(db: PgPool, queues: Arc<Queues>) {
    let mut rows = Vec::new();
    let mut away_since = None;
    while queues.ready().await {
        if queues.queued() < GATHER_BELOW {
            tokio::time::sleep(GATHER).await;
        }
        metrics::gauge!("roundhouse_log_queue_lines").set(queues.queued() as f64);
        let mut batch = queues.take(BATCH_LINES, BATCH_BYTES);
        store_with_retries(&db, &mut batch, &mut rows, &mut away_since).await;
        // Only now may their producers queue more.
        drop(batch);
        queues.sweep();
    }
}

/// Stores a batch, retrying while Postgres is away. The outage budget is shared by the
/// batches: once Postgres has been away for `OUTAGE_BUDGET`, each batch gets one attempt and
/// is dropped (and counted) if it fails, so the services whose lines wait are never blocked on
/// their logs for longer than that, however long the outage lasts.
async fn store_with_retries(db: &PgPool, batch: &mut Vec<Queued>, rows: &mut Vec<u8>, away_since: &mut Option<tokio::time::Instant>) {
    let mut wait = Duration::from_millis(100);
    for attempt in 1.. {
        let e = match store(db, batch, rows).await {
            Ok(()) => {
                if away_since.take().is_some() {
                    tracing::info!("log lines are stored again");
                }
                return;
            }
            Err(e) => e,
        };
        // A deployment deleted (its logs with it) while its lines waited fails the whole COPY:
        // drop its lines, not everyone else's.
        if is_foreign_key_violation(&e) {
            match retain_existing(db, batch).await {
                Ok(dropped) if dropped > 0 => {
                    tracing::info!(dropped, "log lines of deleted deployments dropped");
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "checking the deployments of log lines failed"),
            }
        }
        let unavailable = app::infra::db::is_unavailable(&e);
        let away_too_long = unavailable && away_since.get_or_insert_with(tokio::time::Instant::now).elapsed() + wait > OUTAGE_BUDGET;
        // Anything but Postgres being away gets a few attempts, not the outage budget.
        if away_too_long || (!unavailable && attempt >= 5) {
            metrics::counter!("roundhouse_log_lines_dropped_total").increment(batch.len() as u64);
            tracing::error!(error = %e, lines = batch.len(), "log lines could not be stored: dropped");
            return;
        }
        tracing::warn!(error = %e, attempt, "storing log lines failed; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RETRY_WAIT);
    }
}

async fn store(db: &PgPool, batch: &[Queued], rows: &mut Vec<u8>) -> sqlx::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    rows.clear();
    copy::start(rows);
    let mut usage: BTreeMap<Uuid, i64> = BTreeMap::new();
    for q in batch {
        copy::push_row(rows, &q.record);
        // A line is at most MAX_LINE (+ a marker) long: no overflow.
        *usage.entry(q.record.deployment_id).or_default() += q.record.line.len() as i64 + STORED_LINE_OVERHEAD;
    }
    copy::finish(rows);
    // Where each monitored run stands after its last line of this batch (lines of a run are
    // in order within a batch).
    let mut cursors: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
    for c in batch.iter().filter_map(|q| q.record.cursor) {
        cursors.insert(c.run, (c.segment as i64, c.offset as i64));
    }
    let (ids, bytes): (Vec<Uuid>, Vec<i64>) = usage.into_iter().unzip();
    let mut tx = db.begin().await?;
    // First, so each deployment's usage row is written (and locked) before its lines go in:
    // - a deployment deleted before: its usage row is gone, the insert's foreign key check
    //   fails the batch here (and `retain_existing` drops its lines);
    // - deleted meanwhile: the new row's check waits on the deleter's lock on the deployment,
    //   or the deleter's cascade to the existing usage row waits on ours; either way its
    //   statement-level trigger deletes lines only after this commit, and sees these.
    // (`deployment_logs` has no foreign key of its own.)
    sqlx::query(USAGE_AND_NOTIFY).bind(&ids).bind(&bytes).bind(LOGS_CHANNEL).execute(&mut *tx).await?;
    let mut copy = tx.copy_in_raw(copy::STATEMENT).await?;
    copy.send(rows.as_slice()).await?;
    copy.finish().await?;
    if !cursors.is_empty() {
        let (runs, positions): (Vec<Uuid>, Vec<(i64, i64)>) = cursors.into_iter().unzip();
        let (segments, offsets): (Vec<i64>, Vec<i64>) = positions.into_iter().unzip();
        sqlx::query(
            "INSERT INTO instance_log_cursors AS c (run_id, segment, \"offset\")
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[])
             ON CONFLICT (run_id) DO UPDATE SET segment = excluded.segment, \"offset\" = excluded.\"offset\", updated_at = now()
             -- Never backwards: a replica that let go may store its last lines after the next
             -- one stored further ones.
             WHERE (c.segment, c.\"offset\") < (excluded.segment, excluded.\"offset\")",
        )
        .bind(&runs)
        .bind(&segments)
        .bind(&offsets)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23503"))
}

/// Drops the lines of deployments that no longer exist; returns how many.
async fn retain_existing(db: &PgPool, batch: &mut Vec<Queued>) -> sqlx::Result<usize> {
    let ids: Vec<Uuid> = batch.iter().map(|q| q.record.deployment_id).collect::<HashSet<_>>().into_iter().collect();
    let existing: HashSet<Uuid> =
        sqlx::query_scalar("SELECT id FROM deployments WHERE id = ANY($1)").bind(&ids).fetch_all(db).await?.into_iter().collect();
    let before = batch.len();
    batch.retain(|q| existing.contains(&q.record.deployment_id));
    Ok(before - batch.len())
}
