//! [`LogWriter`]: one execution's output on its way to the store.
//!
//! [`LogSink::emit`] only appends the encoded entry to an in-memory buffer (under a mutex held
//! for a copy, never across I/O), so the tasks reading a step's pipes never wait on the store.
//! A background task cuts the buffer into a segment every checkpoint interval (and as soon as
//! the buffer reaches the segment size), and writes it with `PutMode::Create`. Segments are
//! written one at a time, in order, and a failed write is retried with the same number and the
//! same bytes, so the log never has a hole and never changes under a reader.
//!
//! A write can fail after the store has in fact taken it (a timeout on the way back). The retry
//! then finds the object present, reads it back, and counts it as written when the bytes are
//! ours; if they are not, another writer took the number, and this one moves on to the next.
//!
//! While the store is unreachable the buffer grows up to `max_pending_bytes`; lines beyond that
//! are dropped and counted, and a `WARN` entry saying how many is written once the store
//! answers again. [`LogWriter::finish`] writes what is left and the completion marker. A writer
//! dropped without `finish` (or a member that crashes) leaves its segments readable and the log
//! incomplete; `LogStore::seal` completes such a log.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use object_store::{ObjectStoreExt, PutMode, PutPayload};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::entry::{encode, LogEntry, LogLevel, LogSink};
use super::{LogError, LogStore};

/// Once finishing (or abandoned), a segment write is tried this many times before the writer
/// gives up; while the execution runs it is retried for as long as it takes.
const FINAL_ATTEMPTS: u32 = 5;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What a finished writer wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSummary {
    /// Segments in the log (including any written before a restart).
    pub segments: u64,
    /// Bytes in the log: the `totalSize` a reader sees.
    pub size: u64,
    /// Lines this writer wrote.
    pub lines: u64,
    /// Lines dropped because the store stayed unreachable for too long.
    pub dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    Open,
    /// Write what is left, then the marker.
    Finish,
    /// Write what is left, no marker: the writer was dropped without finishing.
    Abandon,
}

struct Pending {
    buf: Vec<u8>,
    lines: u64,
    dropped: u64,
    close: Close,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Notify,
    segment_bytes: usize,
    max_pending: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // The guarded section only copies bytes; a panic there leaves the buffer usable.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, entry: &LogEntry) {
        let mut p = self.lock();
        if p.close != Close::Open {
            return;
        }
        let before = p.buf.len();
        encode(entry, &mut p.buf);
        if p.buf.len() > self.max_pending {
            p.buf.truncate(before);
            p.dropped += 1;
            return;
        }
        p.lines += 1;
        let full = p.buf.len() >= self.segment_bytes;
        drop(p);
        if full {
            self.wake.notify_one();
        }
    }

    /// Takes the buffered bytes (with a notice of dropped lines appended) and the close state.
    fn take(&self) -> (Vec<u8>, u64, u64, Close) {
        let mut p = self.lock();
        let mut buf = std::mem::take(&mut p.buf);
        let lines = std::mem::take(&mut p.lines);
        let dropped = std::mem::take(&mut p.dropped);
        if dropped > 0 {
            let notice = LogEntry::now(
                LogLevel::Warn,
                format!("steward: {dropped} lines of output were dropped: the log store was unreachable"),
            );
            encode(&notice, &mut buf);
        }
        (buf, lines, dropped, p.close)
    }

    fn close(&self, how: Close) {
        let mut p = self.lock();
        if p.close == Close::Open {
            p.close = how;
        }
        drop(p);
        self.wake.notify_one();
    }

    fn closing(&self) -> bool {
        self.lock().close != Close::Open
    }
}

/// Writes one execution's log. It is the [`LogSink`] the executor is given; call
/// [`LogWriter::finish`] when the execution has ended.
pub struct LogWriter {
    exec_id: u64,
    shared: Arc<Shared>,
    task: Option<JoinHandle<Result<LogSummary, LogError>>>,
}

impl LogWriter {
    /// Starts the writer task; `next_seq` and `size` say what the log already holds.
    pub(crate) fn start(store: LogStore, exec_id: u64, next_seq: u64, size: u64) -> LogWriter {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending { buf: Vec::new(), lines: 0, dropped: 0, close: Close::Open }),
            wake: Notify::new(),
            segment_bytes: store.segment_bytes(),
            max_pending: store.max_pending_bytes(),
        });
        let summary = LogSummary { segments: next_seq, size, lines: 0, dropped: 0 };
        let task = tokio::spawn(run(store, exec_id, summary, shared.clone()));
        LogWriter { exec_id, shared, task: Some(task) }
    }

    /// The execution this writer writes.
    pub fn exec_id(&self) -> u64 {
        self.exec_id
    }

    /// Writes what is still buffered and the completion marker, and says what the log holds.
    /// After this, readers see the log as complete.
    pub async fn finish(mut self) -> Result<LogSummary, LogError> {
        self.shared.close(Close::Finish);
        let Some(task) = self.task.take() else { return Err(LogError::WriterGone(self.exec_id)) };
        match task.await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(exec_id = self.exec_id, error = %e, "the log writer task failed");
                Err(LogError::WriterGone(self.exec_id))
            }
        }
    }
}

impl LogSink for LogWriter {
    fn emit(&self, entry: LogEntry) {
        self.shared.push(&entry);
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if self.task.is_some() {
            // Not finished: the task writes what is buffered (best effort) and leaves the log
            // incomplete, as a crash would, minus the loss of the last interval's lines.
            self.shared.close(Close::Abandon);
        }
    }
}

async fn run(
    store: LogStore,
    exec_id: u64,
    mut summary: LogSummary,
    shared: Arc<Shared>,
) -> Result<LogSummary, LogError> {
    let interval = store.checkpoint_interval();
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shared.wake.notified() => {}
        }
        let (batch, lines, dropped, close) = shared.take();
        if !batch.is_empty() {
            let len = batch.len() as u64;
            let seq = put_segment(&store, exec_id, summary.segments, batch, &shared).await?;
            summary.segments = seq + 1;
            summary.size += len;
            summary.lines += lines;
            summary.dropped += dropped;
        }
        match close {
            Close::Open => {}
            Close::Abandon => return Ok(summary),
            Close::Finish => {
                let mut failures = 0;
                loop {
                    match store.put_marker(exec_id, summary.segments, summary.size).await {
                        Ok(()) => return Ok(summary),
                        Err(e) => {
                            failures += 1;
                            if failures >= FINAL_ATTEMPTS {
                                return Err(e);
                            }
                            tracing::warn!(exec_id, error = %e, "could not write the log's completion marker; retrying");
                            tokio::time::sleep(backoff(failures)).await;
                        }
                    }
                }
            }
        }
    }
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_MIN.saturating_mul(1 << failures.min(6)).min(BACKOFF_MAX)
}

/// Writes `body` as segment `seq` (or the next free number, should another writer hold
/// `seq`); returns the number used.
async fn put_segment(
    store: &LogStore,
    exec_id: u64,
    mut seq: u64,
    body: Vec<u8>,
    shared: &Shared,
) -> Result<u64, LogError> {
    let mut failures = 0u32;
    loop {
        let path = store.segment_path(exec_id, seq);
        let err = match store.store().put_opts(&path, PutPayload::from(body.clone()), PutMode::Create.into()).await {
            Ok(_) => return Ok(seq),
            Err(object_store::Error::AlreadyExists { .. }) => match store.store().get(&path).await {
                Ok(got) => match got.bytes().await {
                    Ok(existing) if existing.as_ref() == body.as_slice() => return Ok(seq),
                    Ok(_) => {
                        tracing::warn!(exec_id, seq, "another writer holds this log segment; using the next");
                        seq += 1;
                        continue;
                    }
                    Err(e) => e,
                },
                Err(e) => e,
            },
            Err(e) => e,
        };
        failures += 1;
        if failures == 1 || failures.is_multiple_of(10) {
            tracing::warn!(exec_id, seq, failures, error = %err, "could not write a log segment; retrying");
        }
        if shared.closing() && failures >= FINAL_ATTEMPTS {
            return Err(err.into());
        }
        tokio::time::sleep(backoff(failures)).await;
    }
}
