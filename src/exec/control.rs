//! Stopping an execution from outside: abort (also `forceIncomplete`) and the timeout.

use std::future::pending;

use tokio::sync::watch;
use tokio::time::Instant;

/// How an execution is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortKind {
    /// Rundeck's abort: the processes get SIGTERM, then SIGKILL after the grace period; the
    /// outcome is `aborted`.
    Abort,
    /// Rundeck's abort with `forceIncomplete=true`: the processes get SIGKILL at once (also
    /// when an abort is already waiting out its grace period); the outcome is `incomplete`.
    ForceIncomplete,
}

/// Why an execution stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Aborted,
    ForceIncomplete,
    TimedOut,
}

/// Asks an execution to stop. Held by whoever may abort it (the API handler, the scheduler).
#[derive(Debug)]
pub struct AbortHandle {
    tx: watch::Sender<Option<AbortKind>>,
}

/// What the executor watches. Cloning it is cheap.
#[derive(Debug, Clone)]
pub struct AbortSignal {
    rx: watch::Receiver<Option<AbortKind>>,
}

/// A connected handle and signal.
pub fn abort_pair() -> (AbortHandle, AbortSignal) {
    let (tx, rx) = watch::channel(None);
    (AbortHandle { tx }, AbortSignal { rx })
}

impl AbortHandle {
    /// Requests an abort. A second request changes nothing, except that `ForceIncomplete`
    /// overrides a pending `Abort`.
    pub fn abort(&self, kind: AbortKind) {
        self.tx.send_if_modified(|current| match (*current, kind) {
            (None, k) => {
                *current = Some(k);
                true
            }
            (Some(AbortKind::Abort), AbortKind::ForceIncomplete) => {
                *current = Some(AbortKind::ForceIncomplete);
                true
            }
            _ => false,
        });
    }

    /// Another signal for the same handle.
    pub fn signal(&self) -> AbortSignal {
        AbortSignal { rx: self.tx.subscribe() }
    }
}

impl AbortSignal {
    /// A signal that never fires (no one can abort).
    pub fn never() -> AbortSignal {
        let (tx, rx) = watch::channel(None);
        // The receiver keeps the last value when the sender goes; `requested` then waits forever.
        drop(tx);
        AbortSignal { rx }
    }

    /// The abort requested so far, if any.
    pub fn get(&self) -> Option<AbortKind> {
        *self.rx.borrow()
    }

    /// Waits until an abort is requested. Never returns if the handle is dropped first.
    pub async fn requested(&self) -> AbortKind {
        let mut rx = self.rx.clone();
        // Copy the value out: the borrow guard must not live across the await below.
        let kind = rx.wait_for(Option::is_some).await.map(|kind| kind.unwrap_or(AbortKind::Abort));
        match kind {
            Ok(kind) => kind,
            Err(_) => pending().await,
        }
    }

    /// Waits for a `ForceIncomplete` request.
    pub(crate) async fn force_requested(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|k| *k == Some(AbortKind::ForceIncomplete)).await.is_err() {
            pending::<()>().await;
        }
    }
}

/// The abort signal and the deadline of one execution: what every step watches.
#[derive(Debug, Clone)]
pub struct Control {
    abort: AbortSignal,
    deadline: Option<Instant>,
}

impl Control {
    pub fn new(abort: AbortSignal, deadline: Option<Instant>) -> Control {
        Control { abort, deadline }
    }

    /// Why the execution must stop, if it must. An abort wins over the timeout, and a
    /// `forceIncomplete` over an abort.
    pub fn interrupted(&self) -> Option<Interrupt> {
        match self.abort.get() {
            Some(AbortKind::ForceIncomplete) => Some(Interrupt::ForceIncomplete),
            Some(AbortKind::Abort) => Some(Interrupt::Aborted),
            None if self.deadline.is_some_and(|d| Instant::now() >= d) => Some(Interrupt::TimedOut),
            None => None,
        }
    }

    /// Waits until the execution must stop.
    pub async fn until_interrupted(&self) -> Interrupt {
        let deadline = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => pending().await,
            }
        };
        tokio::select! {
            kind = self.abort.requested() => match kind {
                AbortKind::Abort => Interrupt::Aborted,
                AbortKind::ForceIncomplete => Interrupt::ForceIncomplete,
            },
            _ = deadline => Interrupt::TimedOut,
        }
    }

    pub(crate) fn abort_signal(&self) -> &AbortSignal {
        &self.abort
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn force_incomplete_overrides_abort_but_not_the_reverse() {
        let (h, s) = abort_pair();
        let c = Control::new(s.clone(), None);
        assert_eq!(c.interrupted(), None);
        h.abort(AbortKind::Abort);
        assert_eq!(c.until_interrupted().await, Interrupt::Aborted);
        h.abort(AbortKind::ForceIncomplete);
        assert_eq!(c.interrupted(), Some(Interrupt::ForceIncomplete));
        h.abort(AbortKind::Abort);
        assert_eq!(s.get(), Some(AbortKind::ForceIncomplete));
    }

    #[tokio::test]
    async fn the_deadline_interrupts_and_a_never_signal_does_not() {
        let c = Control::new(AbortSignal::never(), Some(Instant::now() + std::time::Duration::from_millis(20)));
        assert_eq!(c.until_interrupted().await, Interrupt::TimedOut);
        assert_eq!(c.interrupted(), Some(Interrupt::TimedOut));
    }
}
