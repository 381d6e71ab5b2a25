//! Fair, bounded queues of lines: one per deployment, served round-robin by the writer.
//!
//! Each deployment's queue has [`QUEUE_BYTES`] of room, accounted with a semaphore of its own.
//! A line holds its room from the moment it is queued until the writer drops it after storing
//! it, so a producer that floods waits for its own lines to be stored — and only for those.

use super::Record;
use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// Bytes of lines (and their bookkeeping) one deployment may have queued or being stored.
pub const QUEUE_BYTES: usize = 2 * 1024 * 1024;
const _: () = assert!(QUEUE_BYTES >= 4 * super::MAX_LINE, "a queue must hold several of the longest lines");

/// A queued line and the room it takes in its deployment's queue, given back when it is dropped.
pub(super) struct Queued {
    pub record: Record,
    room: OwnedSemaphorePermit,
}

impl Queued {
    /// Bytes this line counts for in queues and batches.
    pub fn cost(&self) -> usize {
        self.room.num_permits()
    }
}

/// What a line counts for: its text and its bookkeeping, never more than a whole queue (so a
/// line can always be queued once the queue is empty).
fn cost(record: &Record) -> u32 {
    let bytes = record.line.len().saturating_add(std::mem::size_of::<Queued>());
    // QUEUE_BYTES fits in u32.
    bytes.min(QUEUE_BYTES) as u32
}

/// The handle producers queue lines through. Cheap to clone; when the last clone is dropped the
/// writer stores what is queued and ends.
#[derive(Clone)]
pub struct LogTx {
    handle: Arc<Handle>,
}

struct Handle {
    queues: Arc<Queues>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.queues.closed.store(true, Ordering::Release);
        self.queues.wake.notify_one();
    }
}

impl LogTx {
    /// A handle and the queues it feeds (for the writer).
    pub(super) fn new() -> (LogTx, Arc<Queues>) {
        let queues = Arc::new(Queues { state: Mutex::default(), wake: Notify::new(), closed: AtomicBool::new(false) });
        (LogTx { handle: Arc::new(Handle { queues: queues.clone() }) }, queues)
    }

    /// Queues a line behind the earlier lines of its deployment; waits while that deployment's
    /// queue is full.
    pub async fn send(&self, record: Record) {
        let queues = &self.handle.queues;
        let cost = cost(&record);
        let room = {
            let mut state = queues.lock();
            let queue = state.queues.entry(record.deployment_id).or_insert_with(Queue::new);
            match queue.room.clone().try_acquire_many_owned(cost) {
                Ok(room) => {
                    state.push(record, room);
                    drop(state);
                    queues.wake.notify_one();
                    return;
                }
                // Holding this clone keeps the queue from being swept while we wait.
                Err(_) => queue.room.clone(),
            }
        };
        // The semaphore is never closed.
        let Ok(room) = room.acquire_many_owned(cost).await else { return };
        queues.lock().push(record, room);
        queues.wake.notify_one();
    }
}

impl LogTx {
    /// Waits until every line of `deployment` queued so far is stored: its queue has all its
    /// room back. (While the database is away, that is when it is back.)
    pub async fn flushed(&self, deployment: uuid::Uuid) {
        let room = match self.handle.queues.lock().queues.get(&deployment) {
            Some(queue) => queue.room.clone(),
            None => return,
        };
        let _ = room.acquire_many(QUEUE_BYTES as u32).await;
    }
}

/// The queues of every deployment with lines on their way, shared by the producers and the
/// writer.
pub(super) struct Queues {
    state: Mutex<State>,
    /// Wakes the writer: lines were queued, or the last handle is gone.
    wake: Notify,
    closed: AtomicBool,
}

#[derive(Default)]
struct State {
    queues: HashMap<Uuid, Queue>,
    /// The deployments whose queue holds lines, each once, in the order the writer serves them.
    ring: VecDeque<Uuid>,
    /// Lines in all queues.
    queued: usize,
}

struct Queue {
    lines: VecDeque<Queued>,
    /// The room left: QUEUE_BYTES permits, minus those held by queued lines and lines being
    /// stored.
    room: Arc<Semaphore>,
}

impl Queue {
    fn new() -> Self {
        Queue { lines: VecDeque::new(), room: Arc::new(Semaphore::new(QUEUE_BYTES)) }
    }

    /// Nothing queued, being stored or waiting for room: the map entry can go.
    fn idle(&self) -> bool {
        self.lines.is_empty() && Arc::strong_count(&self.room) == 1
    }
}

impl State {
    fn push(&mut self, record: Record, room: OwnedSemaphorePermit) {
        let id = record.deployment_id;
        let queue = self.queues.entry(id).or_insert_with(Queue::new);
        if queue.lines.is_empty() {
            self.ring.push_back(id);
        }
        queue.lines.push_back(Queued { record, room });
        self.queued += 1;
    }

    /// Round-robin rounds over the deployments with queued lines: in each round every one of
    /// them may add an equal share of the room left (at least one line). A batch full in the
    /// middle of a round leaves the deployments not yet served at the front for the next batch.
    fn take(&mut self, max_lines: usize, max_bytes: usize) -> Vec<Queued> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let full = |batch: &Vec<Queued>, bytes: usize| batch.len() >= max_lines || bytes >= max_bytes;
        while !full(&batch, bytes) && !self.ring.is_empty() {
            let share = ((max_lines - batch.len()) / self.ring.len()).max(1);
            for _ in 0..self.ring.len() {
                if full(&batch, bytes) {
                    break;
                }
                let Some(id) = self.ring.pop_front() else { break };
                let Some(queue) = self.queues.get_mut(&id) else { continue };
                for _ in 0..share {
                    if full(&batch, bytes) {
                        break;
                    }
                    let Some(line) = queue.lines.pop_front() else { break };
                    bytes += line.cost();
                    batch.push(line);
                }
                if !queue.lines.is_empty() {
                    self.ring.push_back(id);
                }
            }
        }
        self.queued -= batch.len();
        batch
    }
}

impl Queues {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one still holds consistent queues.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until lines are queued (true), or until every handle is gone and nothing is
    /// queued (false).
    pub async fn ready(&self) -> bool {
        loop {
            if self.queued() > 0 {
                return true;
            }
            if self.closed.load(Ordering::Acquire) {
                return self.queued() > 0;
            }
            // A wake-up sent since the last wait is kept, so none is missed.
            self.wake.notified().await;
        }
    }

    /// Lines in all queues.
    pub fn queued(&self) -> usize {
        self.lock().queued
    }

    /// The next batch: at most `max_lines` lines, stopping once `max_bytes` is reached, shared
    /// fairly between the deployments with queued lines; each deployment's lines in their order.
    pub fn take(&self, max_lines: usize, max_bytes: usize) -> Vec<Queued> {
        self.lock().take(max_lines, max_bytes)
    }

    /// Forgets the queues of deployments that went quiet, so the map holds only deployments
    /// with lines on their way.
    pub fn sweep(&self) {
        self.lock().queues.retain(|_, q| !q.idle());
    }

    #[cfg(test)]
    pub fn deployments(&self) -> usize {
        self.lock().queues.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::deployments::Stream;
    use chrono::Utc;
    use futures_util::FutureExt;

    fn record(deployment_id: Uuid, line: String) -> Record {
        Record { deployment_id, at: Utc::now(), stream: Stream::Stdout, replica: Some(0), line, cursor: None }
    }

    /// Queues `n` lines `"<tag> <i>"` for a deployment; each must be queued without waiting.
    fn fill(tx: &LogTx, id: Uuid, tag: &str, n: usize) {
        for i in 0..n {
            assert!(tx.send(record(id, format!("{tag} {i}"))).now_or_never().is_some(), "line {i} of {tag} had to wait");
        }
    }

    #[test]
    fn a_quiet_deployment_is_served_in_the_first_batch_despite_a_flood() {
        let (tx, queues) = LogTx::new();
        let (flood, quiet) = (Uuid::new_v4(), Uuid::new_v4());
        fill(&tx, flood, "flood", 10_000);
        fill(&tx, quiet, "quiet", 10);
        let batch = queues.take(crate::logs::writer::BATCH_LINES, crate::logs::writer::BATCH_BYTES);
        let quiet_lines: Vec<&str> = batch.iter().filter(|q| q.record.deployment_id == quiet).map(|q| q.record.line.as_str()).collect();
        assert_eq!(quiet_lines, (0..10).map(|i| format!("quiet {i}")).collect::<Vec<_>>());
        assert!(batch.len() < 10_010, "the batch is bounded");
    }

    #[test]
    fn flooding_deployments_share_each_batch_equally_and_keep_their_order() {
        let (tx, queues) = LogTx::new();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        for (n, id) in ids.iter().enumerate() {
            fill(&tx, *id, &format!("d{n}"), 1000);
        }
        let mut next = [0usize; 3];
        while queues.queued() > 0 {
            let batch = queues.take(300, usize::MAX);
            for (n, id) in ids.iter().enumerate() {
                let lines: Vec<&Queued> = batch.iter().filter(|q| q.record.deployment_id == *id).collect();
                assert_eq!(lines.len(), 100, "deployment {n} got {} of 300", lines.len());
                for q in lines {
                    assert_eq!(q.record.line, format!("d{n} {}", next[n]));
                    next[n] += 1;
                }
            }
        }
        assert_eq!(next, [1000; 3]);
    }

    #[test]
    fn when_a_batch_is_too_small_for_everyone_the_next_one_starts_with_the_others() {
        let (tx, queues) = LogTx::new();
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            fill(&tx, *id, "x", 5);
        }
        let first: Vec<Uuid> = queues.take(2, usize::MAX).iter().map(|q| q.record.deployment_id).collect();
        let second: Vec<Uuid> = queues.take(2, usize::MAX).iter().map(|q| q.record.deployment_id).collect();
        assert_eq!(first, ids[..2]);
        assert_eq!(second, ids[2..]);
    }

    #[test]
    fn a_full_queue_makes_only_its_own_producer_wait_until_its_lines_are_stored() {
        let (tx, queues) = LogTx::new();
        let (flood, quiet) = (Uuid::new_v4(), Uuid::new_v4());
        let long = "x".repeat(crate::logs::MAX_LINE);
        let mut queued = 0;
        while tx.send(record(flood, long.clone())).now_or_never().is_some() {
            queued += 1;
            assert!(queued * crate::logs::MAX_LINE <= QUEUE_BYTES, "the queue is bounded");
        }
        // The line that had to wait was given up (its future dropped): not queued.
        assert!(tx.send(record(quiet, "hello".into())).now_or_never().is_some(), "another deployment is not held up");

        let mut blocked = Box::pin(tx.send(record(flood, long.clone())));
        assert!((&mut blocked).now_or_never().is_none());
        let batch = queues.take(usize::MAX, usize::MAX);
        assert_eq!(batch.len(), queued + 1);
        assert!((&mut blocked).now_or_never().is_none(), "room comes back only when the batch is stored (dropped)");
        drop(batch);
        assert!(blocked.now_or_never().is_some());
    }

    #[test]
    fn queues_of_deployments_that_went_quiet_are_forgotten() {
        let (tx, queues) = LogTx::new();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        fill(&tx, a, "a", 2);
        fill(&tx, b, "b", 5);
        let batch = queues.take(4, usize::MAX);
        queues.sweep();
        assert_eq!(queues.deployments(), 2, "lines being stored keep their queue");
        drop(batch);
        queues.sweep();
        assert_eq!(queues.deployments(), 1, "b still has queued lines");
        drop(queues.take(usize::MAX, usize::MAX));
        queues.sweep();
        assert_eq!(queues.deployments(), 0);
    }

    #[test]
    fn the_writer_is_told_when_the_last_handle_is_gone() {
        let (tx, queues) = LogTx::new();
        let other = tx.clone();
        fill(&tx, Uuid::new_v4(), "x", 1);
        drop(tx);
        drop(other);
        assert_eq!(queues.ready().now_or_never(), Some(true), "queued lines are still served");
        drop(queues.take(usize::MAX, usize::MAX));
        assert_eq!(queues.ready().now_or_never(), Some(false));
    }
}
