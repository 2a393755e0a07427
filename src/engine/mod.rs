//! The job engine's replicated core: how jobs, schedules, fires and executions are kept in the
//! replicated KV, and the per-member tasks that act on them.
//!
//! # Layout
//! - [`records`]: the keys and stored records (jobs, owners, fires, executions, indexes).
//! - [`fire`]: the scheduled fire — one guarded transaction per slot, batched per log entry.
//! - [`executions`]: reading and changing execution records (guarded read-modify-write).
//! - [`view`]: executions in Rundeck's JSON shapes.
//! - [`catalog`]: job records read from the applied state, turned into schedules and run plans.
//! - [`scheduler`]: the member task that fires the slots of the jobs this member owns.
//! - [`runner`]: the member task that runs the executions assigned to this member.

pub mod catalog;
pub mod executions;
pub mod fire;
pub mod history;
pub mod records;
pub mod runner;
pub mod scheduler;
pub mod view;

use std::sync::{Arc, Mutex};

use steward_raft::Member;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::exec::Executor;
use crate::logs::LogStore;

/// Resolves once `stop` turns true (or its sender is gone). A function of its own so that the
/// watch's read guard never lives across an await in the tasks' `select!`s.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The job engine's tasks on one member: its scheduler and its runner.
pub struct Engine {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// What the scheduler fired, for benchmarks and tests.
    pub stats: Arc<Mutex<scheduler::FireStats>>,
    runner: Arc<runner::Runner>,
}

impl Engine {
    /// Starts the scheduler and the runner. `scratch` is where inline scripts are written;
    /// `capacity` is how many executions run their steps at once (`member.capacity`).
    pub fn start(
        member: Member,
        logs: LogStore,
        keys: crate::keys::KeyStore,
        scratch: std::path::PathBuf,
        placer: Arc<crate::cluster::Placer>,
        capacity: usize,
    ) -> Engine {
        let (stop, _) = watch::channel(false);
        let stats = Arc::new(Mutex::new(scheduler::FireStats::default()));
        let catalog = catalog::Catalog::new(member.clone());
        let executor = Executor::new()
            .with_scratch_dir(scratch)
            .with_job_refs(Arc::new(catalog::CatalogJobRefs { catalog: catalog.clone(), keys: keys.clone() }));
        let runner = runner::Runner::new(
            member.clone(),
            catalog.clone(),
            logs.clone(),
            executor,
            keys,
            placer.clone(),
            capacity,
        );
        let sched =
            scheduler::Scheduler::new(member.clone(), catalog, runner.incarnation().to_string(), stats.clone(), placer);
        let tasks = vec![
            tokio::spawn(sched.run(stop.subscribe())),
            tokio::spawn(runner.clone().run(stop.subscribe())),
            tokio::spawn(history::clean_up(member.clone(), stop.subscribe())),
            tokio::spawn(history::remove_deleted_logs(member, logs, stop.subscribe())),
        ];
        Engine { stop, tasks, stats, runner }
    }

    /// How many executions run their steps and wait to, for the metrics.
    pub fn slots(&self) -> Arc<runner::Slots> {
        self.runner.slots()
    }

    /// How many executions this member runs now, for its heartbeats.
    ///
    /// It holds the runner weakly: the runner reaches the heartbeats through its placer, and a
    /// strong reference back would keep the member (and its store's lock) alive after shutdown.
    pub fn running_counter(&self) -> Box<dyn Fn() -> u32 + Send + Sync> {
        let runner = Arc::downgrade(&self.runner);
        Box::new(move || runner.upgrade().map_or(0, |r| r.running_count()))
    }

    /// Stops the scheduler and the runner; the runner stops the executions it runs (they end
    /// `incomplete`) before it returns. With a `deadline`, a task still busy then (e.g. a write
    /// to a leader that is cut off, waiting out its timeout) is aborted.
    pub async fn shutdown(self, deadline: Option<tokio::time::Instant>) {
        let _ = self.stop.send(true);
        crate::tasks::join_by(self.tasks, deadline).await;
    }
}
