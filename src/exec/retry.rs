//! Rundeck's job retry: run again, after a delay, when an attempt failed or timed out (never
//! after an abort). Each attempt is a new execution in Rundeck, so the caller makes one per
//! attempt (with `RD_JOB_RETRYATTEMPT`); this only loops and waits.

use std::future::Future;
use std::time::Duration;

use super::control::AbortSignal;
use super::{Outcome, Status};

/// A job's `retry`: how many more attempts after the first, and the pause before each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    pub count: u32,
    pub delay: Duration,
}

/// Whether an attempt's result calls for another attempt.
pub trait Retryable {
    fn should_retry(&self) -> bool;
}

impl Retryable for Outcome {
    fn should_retry(&self) -> bool {
        matches!(self.status, Status::Failed | Status::TimedOut)
    }
}

/// Runs `attempt(0)`, then `attempt(1)`, … while the result asks for a retry and the policy
/// allows one, waiting `policy.delay` before each retry. An abort during the wait ends the loop
/// with the last result. Returns the last result and its attempt number.
pub async fn retry<T, F, Fut>(policy: RetryPolicy, abort: &AbortSignal, mut attempt: F) -> (T, u32)
where
    T: Retryable,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = T>,
{
    let mut n = 0;
    loop {
        let result = attempt(n).await;
        if n >= policy.count || !result.should_retry() || abort.get().is_some() {
            return (result, n);
        }
        tokio::select! {
            _ = tokio::time::sleep(policy.delay) => {}
            _ = abort.requested() => return (result, n),
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{abort_pair, AbortKind};

    struct R(bool);
    impl Retryable for R {
        fn should_retry(&self) -> bool {
            self.0
        }
    }

    #[tokio::test]
    async fn retries_up_to_the_count_and_stops_at_the_first_success() {
        let policy = RetryPolicy { count: 3, delay: Duration::from_millis(1) };
        let (r, n) = retry(policy, &AbortSignal::never(), |_| async { R(true) }).await;
        assert!(r.0);
        assert_eq!(n, 3);
        let (r, n) = retry(policy, &AbortSignal::never(), |i| async move { R(i < 1) }).await;
        assert!(!r.0);
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn an_abort_ends_the_wait_for_the_next_attempt() {
        let (h, s) = abort_pair();
        let policy = RetryPolicy { count: 5, delay: Duration::from_secs(3600) };
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let run = retry(policy, &s, |_| {
            attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { R(true) }
        });
        let abort = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            h.abort(AbortKind::Abort);
        };
        let ((_, n), ()) = tokio::join!(run, abort);
        assert_eq!(n, 0);
        assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
