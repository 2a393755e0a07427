//! Stopping a member's background tasks: one rule for the job engine, the cluster tasks and the
//! servers, so that a member's shutdown is bounded the same way everywhere.

use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Waits for `tasks` to end, until `deadline` (for all of them together, not each); aborts the
/// ones still running then and waits for them to unwind. `None` waits as long as they take.
pub async fn join_by(tasks: Vec<JoinHandle<()>>, deadline: Option<Instant>) {
    for mut t in tasks {
        match deadline {
            None => {
                let _ = t.await;
            }
            Some(d) => {
                if tokio::time::timeout_at(d, &mut t).await.is_err() {
                    t.abort();
                    let _ = t.await;
                }
            }
        }
    }
}
