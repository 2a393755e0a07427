//! The writer thread: the only place that makes sled writes durable.
//!
//! Writes are applied to sled by their callers (so they are readable at once, and in call
//! order); what the callers then need is an fsync that covers them. They hand a completion
//! ("waiter") to this thread, which drains everything queued, calls ONE blocking
//! [`sled::Db::flush`] and only then completes every waiter it drained. This is group commit:
//! one fsync acknowledges many appends, votes and apply batches.
//!
//! Why a dedicated thread and a blocking `flush()`:
//! - sled 0.34.7's `flush_async` can deadlock when called concurrently (sled#1308, #1241,
//!   #1357); we never call it.
//! - A flush is Db-wide (all trees share one log), so one thread issuing all flushes is
//!   enough, and it keeps fsyncs from piling up in parallel on a small machine.
//!
//! sled 0.34's `flush()` is not enough on its own: on Linux it ends with `sync_file_range`,
//! which writes the pages but neither commits the file's metadata (the size of a log that
//! grew) nor flushes the device's cache. A power loss could then take acknowledged entries
//! away (the chaos harness's `power` nemesis showed it). So after each flush this thread also
//! `fdatasync`s sled's log file: only then is a write durable in the sense openraft requires.
//! Values over a quarter of a segment go to blob files; vendored sled fsyncs each one, and its
//! directory, as it writes it, before the log message that points at it (vendor/README.md), so
//! they need nothing here.
//!
//! A waiter is completed only after a flush that *started after the waiter was queued*, and
//! a waiter is queued only after its write was applied, so every completed waiter's write is
//! covered by a successful fsync. After a flush fails, every later waiter fails too: the
//! store is in an unknown state and the Raft node must stop rather than limp on.

use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::StoreError;

/// What a waiter learns: whether the flush that covers its write succeeded.
pub(crate) type FlushResult = Result<(), sled::Error>;

type Waiter = Box<dyn FnOnce(FlushResult) + Send + 'static>;

/// Background work done between flushes, a piece per call; returns whether there is more.
pub(crate) type Chore = Box<dyn FnMut() -> bool + Send + 'static>;

enum Work {
    Flush(Waiter),
    Chore(Chore),
}

/// Handle on the writer thread. Dropping it stops the thread after it has completed every
/// queued waiter, and waits for that, so that the sled files are released when the store is.
pub(crate) struct Writer {
    tx: Option<mpsc::Sender<Work>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread for `db`, whose files are in `sled_dir`.
    pub(crate) fn start(db: sled::Db, sled_dir: &Path) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel::<Work>();
        // sled's log file, which its own flush does not make durable (see the module docs).
        let log = File::open(sled_dir.join("db"))?;
        let thread =
            std::thread::Builder::new().name("steward-storage-writer".to_string()).spawn(move || run(db, log, rx))?;
        Ok(Writer { tx: Some(tx), thread: Some(thread) })
    }

    /// Calls `done` after a flush that covers every write applied before this call.
    ///
    /// If the writer thread is gone, `done` is called at once with an error and
    /// [`StoreError::WriterStopped`] is returned.
    pub(crate) fn after_flush(&self, done: impl FnOnce(FlushResult) + Send + 'static) -> Result<(), StoreError> {
        let waiter: Waiter = Box::new(done);
        let Some(tx) = &self.tx else {
            waiter(Err(stopped()));
            return Err(StoreError::WriterStopped);
        };
        if let Err(mpsc::SendError(Work::Flush(waiter))) = tx.send(Work::Flush(waiter)) {
            waiter(Err(stopped()));
            return Err(StoreError::WriterStopped);
        }
        Ok(())
    }

    /// Runs `chore` on the writer thread a piece at a time, between flushes, until it says it
    /// is done or the store is closed. For work that must not hold up its caller and may be
    /// left unfinished by a crash (the next open redoes it); a closed store drops it.
    pub(crate) fn in_background(&self, chore: impl FnMut() -> bool + Send + 'static) {
        if let Some(tx) = &self.tx {
            // A stopped writer means a closed store: the chore is dropped, as documented.
            let _ = tx.send(Work::Chore(Box::new(chore)));
        }
    }

    /// Like [`Writer::flushed`], for a caller outside the async runtime (opening the store).
    pub(crate) fn flushed_blocking(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel();
        self.after_flush(move |res| {
            let _ = tx.send(res);
        })?;
        match rx.recv() {
            Ok(res) => res.map_err(StoreError::Sled),
            Err(_) => Err(StoreError::WriterStopped),
        }
    }

    /// Waits until a flush covers every write applied before this call.
    pub(crate) async fn flushed(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.after_flush(move |res| {
            // The receiver may be gone if the caller was cancelled; nothing to do then.
            let _ = tx.send(res);
        })?;
        match rx.await {
            Ok(res) => res.map_err(StoreError::Sled),
            Err(_) => Err(StoreError::WriterStopped),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once the queue is empty.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the storage writer thread panicked");
            }
        }
    }
}

fn stopped() -> sled::Error {
    sled::Error::ReportableBug("the storage writer thread has stopped".to_string())
}

fn run(db: sled::Db, log: File, rx: mpsc::Receiver<Work>) {
    // Sticky: once a flush failed, nothing written afterwards may be acknowledged.
    let mut failed: Option<sled::Error> = None;
    let mut chores: VecDeque<Chore> = VecDeque::new();
    loop {
        // Block for work only when no chore is pending; a closed channel ends the thread and
        // drops pending chores.
        let first = if chores.is_empty() {
            match rx.recv() {
                Ok(work) => Some(work),
                Err(_) => break,
            }
        } else {
            match rx.try_recv() {
                Ok(work) => Some(work),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        };
        // Group commit: everything queued so far is covered by the one flush below, because
        // each waiter was queued after its write had been applied.
        let mut waiters = Vec::new();
        for work in first.into_iter().chain(rx.try_iter()) {
            match work {
                Work::Flush(w) => waiters.push(w),
                Work::Chore(c) => chores.push_back(c),
            }
        }
        if waiters.is_empty() {
            // Flushes first; a chore runs one piece when none is waiting.
            if let Some(mut chore) = chores.pop_front() {
                if chore() {
                    chores.push_back(chore);
                }
            }
            continue;
        }

        let res = match &failed {
            Some(e) => Err(e.clone()),
            None => db.flush().map(|_| ()).and_then(|()| log.sync_data().map_err(sled::Error::Io)),
        };
        if let Err(e) = &res {
            if failed.is_none() {
                tracing::error!(error = %e, "sled flush failed; the store stops acknowledging writes");
                failed = Some(e.clone());
            }
        }
        for waiter in waiters {
            waiter(res.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Writer;

    /// A writer thread on a new database in a temporary directory (kept alive by the first).
    fn new_writer() -> (tempfile::TempDir, sled::Db, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let sled_dir = dir.path().join("sled");
        let db = sled::Config::new().path(&sled_dir).open().unwrap();
        let writer = Writer::start(db.clone(), &sled_dir).unwrap();
        (dir, db, writer)
    }

    #[test]
    fn flushes_are_served_while_a_chore_has_work_left() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let (_dir, db, writer) = new_writer();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        let go_on = stop.clone();
        // Has more work until told to stop; its sender goes when it is dropped.
        writer.in_background(move || {
            let _keep = &done_tx;
            !go_on.load(Ordering::SeqCst)
        });
        db.insert("k", "v").unwrap();
        writer.flushed_blocking().unwrap();
        // The chore is still pending: nothing was sent and its sender is alive.
        assert_eq!(done_rx.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty));
        stop.store(true, Ordering::SeqCst);
        // Once it says it is done, it is dropped.
        assert_eq!(done_rx.recv(), Err(std::sync::mpsc::RecvError));
    }

    #[test]
    fn a_chore_runs_to_its_end_in_pieces_in_order() {
        let (_dir, db, writer) = new_writer();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut left = 5;
        writer.in_background(move || {
            left -= 1;
            tx.send(left).unwrap();
            left > 0
        });
        db.insert("k", "v").unwrap();
        writer.flushed_blocking().unwrap();
        // The chore (and its sender) is dropped once it says it is done, which ends the
        // iteration: every piece ran, in order.
        assert_eq!(rx.iter().collect::<Vec<_>>(), vec![4, 3, 2, 1, 0]);
    }
}
