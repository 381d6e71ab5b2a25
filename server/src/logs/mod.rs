//! Captured build and runtime output: cleaned and redacted by a [`LogSink`], queued per
//! deployment ([`LogTx`]), stored by one writer per platform process with `COPY` and announced
//! with `NOTIFY rh_logs`, and pruned to a byte budget per deployment.
//!
//! Invariants (every deployed service is assumed hostile):
//! - **Fair share.** Each deployment has a bounded queue of its own: a flooding producer waits
//!   only for room in its own queue (which back-pressures its process's pipe), never for another
//!   deployment's. The writer composes each batch round-robin across the queues that hold lines,
//!   so every active deployment gets an equal share of every batch.
//! - **Order.** A deployment's lines are stored in the order they were queued, and line ids
//!   (`bigserial`) follow commit order because one writer stores batch after batch — so a
//!   follower reading "after id N" never skips a line.
//! - **Nothing dropped** on the way in: a full queue makes its producer wait. Lines are only
//!   changed by the sink (NULs removed, secrets masked, cut at [`MAX_LINE`]); a batch that cannot
//!   be stored after retries is reported and dropped, and lines of a deployment that was deleted
//!   meanwhile are dropped without failing anyone else's.
//! - **Bounded.** Memory: at most [`QUEUE_BYTES`] queued per deployment. Disk: `retention`
//!   deletes the oldest lines of a deployment past its byte budget.

mod copy;
mod queues;
mod redact;
pub mod retention;
mod sink;
mod writer;

use app::deployments::Stream;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use queues::{LogTx, QUEUE_BYTES};
pub use redact::{Redactor, MASK};
pub use sink::{LogSink, MAX_LINE};
pub use writer::spawn_writer;

/// A sink whose lines are kept for a test to read (`Captured::lines`), not stored.
#[cfg(test)]
pub(crate) fn capture(deployment: Uuid) -> (LogSink, Captured) {
    let (tx, queues) = LogTx::new();
    (LogSink::new(tx, deployment, std::sync::Arc::new(Redactor::default())), Captured(queues))
}

#[cfg(test)]
pub(crate) struct Captured(std::sync::Arc<queues::Queues>);

#[cfg(test)]
impl Captured {
    /// The lines queued since the last call, in order, with their stream.
    pub fn lines(&self) -> Vec<(Stream, String)> {
        self.0.take(usize::MAX, usize::MAX).into_iter().map(|q| (q.record.stream, q.record.line.clone())).collect()
    }
}

/// One captured line on its way to `deployment_logs`.
#[derive(Debug)]
pub struct Record {
    pub deployment_id: Uuid,
    pub at: DateTime<Utc>,
    pub stream: Stream,
    pub replica: Option<i32>,
    pub line: String,
    /// Where the line's source stands once it is stored (a line an instance's monitor kept):
    /// saved in the same transaction as the line.
    pub cursor: Option<Cursor>,
}

/// A position in the output one run of an instance's monitor kept, just after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub run: Uuid,
    pub segment: u64,
    pub offset: u64,
}

/// What a stored line counts against its deployment's budget: its text plus an estimate of its
/// row's own size (header, columns, index entries), so a flood of empty lines is bounded too.
/// The writer (`deployment_log_usage`) and the pruning must agree on it.
pub const STORED_LINE_OVERHEAD: i64 = 100;
