//! Captured build and runtime output: redacted, batched into Postgres by a single writer (so
//! line ids follow commit order and a follower never skips one), announced with `NOTIFY`.

use app::deployments::{service::LOGS_CHANNEL, Stream};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::{collections::BTreeSet, sync::Arc, time::Duration};
use tokio::sync::mpsc;
use uuid::Uuid;

/// What replaces a secret value in logs.
pub const MASK: &str = "••••••";
/// Longer lines are cut (a runaway line must not fill the database).
pub const MAX_LINE: usize = 16 * 1024;
const BATCH: usize = 2000;

#[derive(Debug)]
pub struct Record {
    pub deployment_id: Uuid,
    pub at: DateTime<Utc>,
    pub stream: Stream,
    pub replica: Option<i32>,
    pub line: String,
}

/// Replaces every secret value in a line, longest first (so a secret that contains another is
/// masked whole).
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: &BTreeSet<String>) -> Self {
        let mut secrets: Vec<String> = secrets.iter().filter(|s| !s.is_empty()).cloned().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    pub fn redact(&self, line: &str) -> String {
        let mut out = line.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

/// Where one deployment's lines go. Cheap to clone; `send` waits when the writer is behind,
/// which slows the producer rather than dropping lines.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Record>,
    pub deployment_id: Uuid,
    stream: Stream,
    replica: Option<i32>,
    redactor: Arc<Redactor>,
}

impl LogSink {
    pub fn new(tx: mpsc::Sender<Record>, deployment_id: Uuid, redactor: Arc<Redactor>) -> Self {
        LogSink { tx, deployment_id, stream: Stream::System, replica: None, redactor }
    }

    pub fn stream(&self, stream: Stream, replica: Option<i32>) -> Self {
        LogSink { stream, replica, ..self.clone() }
    }

    pub async fn line(&self, line: &str) {
        let mut line = self.redactor.redact(line.trim_end_matches(['\n', '\r']));
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" …");
        }
        // Postgres text cannot hold NUL.
        if line.contains('\0') {
            line = line.replace('\0', "");
        }
        let record = Record { deployment_id: self.deployment_id, at: Utc::now(), stream: self.stream, replica: self.replica, line };
        let _ = self.tx.send(record).await;
    }

    /// A line from Roundhouse itself about this deployment.
    pub async fn system(&self, line: &str) {
        self.stream(Stream::System, self.replica).line(line).await
    }
}

/// Starts the writer; lines sent to the returned channel are stored in order.
pub fn spawn_writer(db: PgPool) -> mpsc::Sender<Record> {
    let (tx, mut rx) = mpsc::channel::<Record>(16 * 1024);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            if rx.recv_many(&mut batch, BATCH).await == 0 {
                return;
            }
            // A short pause gathers a burst into one insert.
            if batch.len() < BATCH {
                tokio::time::sleep(Duration::from_millis(15)).await;
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
            }
            let mut attempt = 0;
            loop {
                match store(&db, &batch).await {
                    Ok(()) => break,
                    Err(e) if attempt < 5 => {
                        attempt += 1;
                        tracing::warn!(error = %e, attempt, "storing log lines failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, lines = batch.len(), "log lines could not be stored");
                        break;
                    }
                }
            }
            batch.clear();
        }
    });
    tx
}

async fn store(db: &PgPool, batch: &[Record]) -> sqlx::Result<()> {
    let ids: Vec<Uuid> = batch.iter().map(|r| r.deployment_id).collect();
    let at: Vec<DateTime<Utc>> = batch.iter().map(|r| r.at).collect();
    let streams: Vec<&str> = batch.iter().map(|r| r.stream.as_str()).collect();
    let replicas: Vec<Option<i32>> = batch.iter().map(|r| r.replica).collect();
    let lines: Vec<&str> = batch.iter().map(|r| r.line.as_str()).collect();
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO deployment_logs (deployment_id, at, stream, replica, line)
         SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[], $4::int[], $5::text[])",
    )
    .bind(&ids)
    .bind(&at)
    .bind(&streams)
    .bind(&replicas)
    .bind(&lines)
    .execute(&mut *tx)
    .await?;
    let distinct: BTreeSet<Uuid> = ids.into_iter().collect();
    for id in distinct {
        sqlx::query("SELECT pg_notify($1, $2)").bind(LOGS_CHANNEL).bind(id.to_string()).execute(&mut *tx).await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_longest_first() {
        let r = Redactor::new(&["hunter2".to_string(), "hunter2-extended".to_string()].into_iter().collect());
        assert_eq!(r.redact("a hunter2-extended b hunter2"), format!("a {MASK} b {MASK}"));
        assert_eq!(r.redact("nothing here"), "nothing here");
    }
}
