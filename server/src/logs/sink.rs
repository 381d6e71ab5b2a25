//! The producer side: one deployment's stream of lines, cleaned before it is queued.

use super::{Cursor, LogTx, Record, Redactor};
use app::deployments::Stream;
use chrono::Utc;
use std::sync::Arc;
use uuid::Uuid;

/// Longer lines are cut (a runaway line must not fill the database).
pub const MAX_LINE: usize = 16 * 1024;

/// Where one deployment's lines go. Cheap to clone; `line` waits while this deployment's queue
/// is full, which slows the producer rather than dropping lines — and never waits for another
/// deployment's lines.
#[derive(Clone)]
pub struct LogSink {
    tx: LogTx,
    pub deployment_id: Uuid,
    stream: Stream,
    replica: Option<i32>,
    redactor: Arc<Redactor>,
}

impl LogSink {
    pub fn new(tx: LogTx, deployment_id: Uuid, redactor: Arc<Redactor>) -> Self {
        LogSink { tx, deployment_id, stream: Stream::System, replica: None, redactor }
    }

    pub fn stream(&self, stream: Stream, replica: Option<i32>) -> Self {
        LogSink { stream, replica, ..self.clone() }
    }

    pub async fn line(&self, line: &str) {
        self.send(line, Utc::now(), None).await
    }

    /// A line another system stamped (a cluster's pod log: when the container wrote it).
    pub async fn line_at(&self, line: &str, at: chrono::DateTime<Utc>) {
        self.send(line, at, None).await
    }

    /// A line an instance's monitor kept, read at `micros` (since the epoch; now, if that
    /// cannot be a time); `cursor` is where its output stands once the line is stored.
    pub async fn kept_line(&self, line: &str, micros: i64, cursor: Cursor) {
        self.send(line, chrono::DateTime::from_timestamp_micros(micros).unwrap_or_else(Utc::now), Some(cursor)).await
    }

    async fn send(&self, line: &str, at: chrono::DateTime<Utc>, cursor: Option<Cursor>) {
        let line = clean(line, &self.redactor);
        let record = Record { deployment_id: self.deployment_id, at, stream: self.stream, replica: self.replica, line, cursor };
        self.tx.send(record).await;
    }

    /// Waits until the lines of this deployment queued so far are stored.
    pub async fn flushed(&self) {
        self.tx.flushed(self.deployment_id).await
    }

    /// A line from Roundhouse itself about this deployment.
    pub async fn system(&self, line: &str) {
        self.stream(Stream::System, self.replica).line(line).await
    }
}

/// The line as it is stored: without its line ending or NULs (Postgres text cannot hold them;
/// removed before redaction so a NUL inside a secret cannot hide it), secrets masked, at most
/// [`MAX_LINE`] bytes (cut on a character boundary, then marked).
fn clean(line: &str, redactor: &Redactor) -> String {
    let line = line.trim_end_matches(['\n', '\r']);
    let mut line = if line.contains('\0') { redactor.redact(&line.replace('\0', "")) } else { redactor.redact(line) };
    if line.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str(" …");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::MASK;

    #[test]
    fn lines_lose_their_ending_and_nuls_and_long_ones_are_cut_on_a_char_boundary() {
        let none = Redactor::default();
        assert_eq!(clean("hello\r\n", &none), "hello");
        assert_eq!(clean("a\0b\0", &none), "ab");
        let long = "é".repeat(MAX_LINE); // 2 bytes each
        let cut = clean(&long, &none);
        assert!(cut.len() <= MAX_LINE + " …".len());
        assert!(cut.ends_with(" …"));
        assert!(cut.trim_end_matches(" …").chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_nul_inside_a_secret_does_not_hide_it() {
        let r = Redactor::new(&["hunter2".to_string()].into_iter().collect());
        assert_eq!(clean("pw=hun\0ter2", &r), format!("pw={MASK}"));
    }
}
