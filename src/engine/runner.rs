//! The runner of one member: it runs the executions assigned to this member.
//!
//! It follows the change feed for execution records naming this member. Before it starts any
//! process it **claims** the execution through Raft, writing this process's incarnation id into
//! the record under a revision guard: an execution is launched only by the incarnation whose
//! claim committed. At start-up it first catches up with the leader (read barrier: everything
//! committed, including what a crash made it re-apply, is applied), then looks at its
//! unfinished executions: one claimed by an earlier incarnation was running when this member
//! stopped and is recorded `incomplete` (its processes died with it or are orphans; it is
//! never started twice); one never claimed is started now. A scheduled slot decided ahead is
//! claimed at its fire and waits for its time; one an earlier incarnation claimed whose time
//! is still a second or more away was certainly not started, and is claimed again.
//!
//! Right before a run's steps start, the runner confirms that the run is still its own, then
//! looks at the record again. A member that was cut off from the leader, or is applying a
//! backlog, may learn of a run (a fire it proposed, committed while it was away) before it
//! learns that the leader has since recorded that run `incomplete` and given the job to another
//! member; starting from that stale state would run one exclusive job twice at once
//! (jepsen/README.md, bug 13). The confirmation is the member's heartbeat lease when it holds
//! one ([`crate::cluster::Heartbeats::lease`]: the leader heard from it recently and it has
//! applied what the leader had then), which costs nothing; else a read barrier (everything the
//! leader had committed by then is applied here), shared by the runs that start together
//! ([`StartGate`]). A user's abort the member has not applied yet does not hold a run back
//! under the lease: it stops the run once it arrives, as it always did.
//!
//! While an execution runs, its output goes to the log store in segments (checkpointed at least
//! once a second, so any member can serve it); an abort request on the record reaches the
//! process group through the executor's abort handle. The end state is committed through
//! Raft; a failed or timed-out run of a job with retries left becomes a new execution (Rundeck
//! gives each attempt its own id) after the retry delay.
//!
//! At most `member.capacity` executions run their steps at once (Rundeck's execution thread
//! pool); the others wait, in the order they came, for one to finish. Without that bound a burst
//! of scheduled slots (thousands of jobs on the same minute) starts thousands of processes, log
//! writers and tasks at once: the members' memory grows by hundreds of MiB and the fires still
//! being committed starve for CPU. The bound applies to the steps only: the fire, the claim and
//! the end are recorded whatever it says.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steward_raft::{Consistency, Member};
use steward_storage::{Event, Txn};
use tokio::sync::{broadcast, watch};

use super::catalog::{Catalog, RunPlan};
use super::executions::{self, ExecError};
use super::fire::create_execution_op;
use super::records::{exec_id, ExecStatus, ExecutionRecord, Trigger, RUNNING};
use super::scheduler::Samples;
use super::stopped;
use crate::cluster::ExecutionMode;
use crate::exec::{abort_pair, AbortHandle, AbortKind, Executor, Status};
use crate::keys::KeyStore;
use crate::logs::{LogEntry, LogLevel, LogSink, LogStore};

/// The bound on executions whose steps run at once on this member.
pub struct Slots {
    sem: tokio::sync::Semaphore,
    capacity: usize,
    waiting: std::sync::atomic::AtomicUsize,
    /// Milliseconds from a scheduled slot to the moment its execution got a slot and began its
    /// steps.
    start_lateness: Mutex<Samples>,
}

/// Counts an execution as waiting for as long as it lives.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Slots {
    fn new(capacity: usize) -> Slots {
        let capacity = capacity.max(1);
        Slots {
            sem: tokio::sync::Semaphore::new(capacity),
            capacity,
            waiting: Default::default(),
            start_lateness: Default::default(),
        }
    }

    fn started_late(&self, ms: i64) {
        self.start_lateness.lock().unwrap_or_else(|p| p.into_inner()).push(ms);
    }

    /// The start lateness samples (see the field).
    pub fn start_lateness(&self) -> Samples {
        self.start_lateness.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(&self.waiting)
    }

    /// How many executions may run their steps at once (`member.capacity`).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many executions run their steps now.
    pub fn busy(&self) -> usize {
        self.capacity - self.sem.available_permits()
    }

    /// How many executions wait for a free slot now.
    pub fn waiting_count(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// How far ahead of now a slot decided ahead must still be for a restarted member to take it
/// over from its earlier incarnation. "It has not started" rests on the wall clock; the margin
/// keeps a clock stepped back across the restart from making a run that did start look
/// unstarted.
const RECLAIM_MARGIN_MS: i64 = 1000;

/// True when `rec` is a scheduled run waiting for a time at least `margin_ms` from now.
fn not_due_for(rec: &ExecutionRecord, margin_ms: i64) -> bool {
    rec.status == ExecStatus::Scheduled
        && rec.scheduled_ms.is_some_and(|at| at - chrono::Utc::now().timestamp_millis() >= margin_ms)
}

/// Read barriers shared by the runs about to start: a run waits for a barrier that began after
/// it asked, so that the barrier's read index covers everything committed before that moment;
/// a burst of runs starting together costs one or two barriers, not one each.
#[derive(Default)]
struct StartGate {
    /// Barriers begun so far.
    begun: std::sync::atomic::AtomicU64,
    /// The number (in order of beginning) of the latest barrier that succeeded.
    confirmed: std::sync::atomic::AtomicU64,
    /// One barrier at a time: those who arrive meanwhile share the next one.
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl StartGate {
    /// Returns once this member has applied everything committed before the call.
    async fn pass(&self, member: &Member) -> Result<(), steward_raft::ClusterError> {
        use std::sync::atomic::Ordering::SeqCst;
        let arrived = self.begun.load(SeqCst);
        let _turn = self.one_at_a_time.lock().await;
        if self.confirmed.load(SeqCst) > arrived {
            return Ok(()); // a barrier that began after this call succeeded meanwhile
        }
        let n = self.begun.fetch_add(1, SeqCst) + 1;
        member.read_barrier().await?;
        self.confirmed.fetch_max(n, SeqCst);
        Ok(())
    }
}

/// Why a run did not start its steps after all.
enum NotStarted {
    /// Its record is final, or names another runner: it was decided elsewhere (the leader
    /// recorded it incomplete while this member was away); there is nothing to record.
    Decided,
    /// Aborted before its steps started: the end to record.
    Ended(ExecStatus, Option<String>),
}

impl From<(ExecStatus, Option<String>)> for NotStarted {
    fn from((status, message): (ExecStatus, Option<String>)) -> NotStarted {
        NotStarted::Ended(status, message)
    }
}

/// What the abort request on an execution's record asks of the process.
fn abort_kind(a: &super::records::AbortRequest) -> AbortKind {
    if a.force_incomplete {
        AbortKind::ForceIncomplete
    } else {
        AbortKind::Abort
    }
}

/// Runs the executions assigned to this member.
pub struct Runner {
    member: Member,
    catalog: Catalog,
    logs: LogStore,
    executor: Executor,
    keys: KeyStore,
    me: String,
    /// This process's id: a claim names the incarnation that may run the execution.
    incarnation: String,
    /// Executions this incarnation runs or waits to run, with their abort handles.
    active: Mutex<HashMap<u64, Arc<AbortHandle>>>,
    /// Executions of `active` whose processes are done and whose end this runner is committing:
    /// their record turning final is this runner's own doing.
    finishing: Mutex<std::collections::HashSet<u64>>,
    /// Where a retry runs.
    placer: Arc<crate::cluster::Placer>,
    /// Which executions may run their steps now (`member.capacity`).
    slots: Arc<Slots>,
    /// The read barrier before a run's steps start.
    gate: StartGate,
    /// Set when the member stops: an end that cannot be recorded then is left to the leader
    /// (or to this member's next start) instead of being retried forever.
    stopping: std::sync::atomic::AtomicBool,
}

impl Runner {
    pub fn new(
        member: Member,
        catalog: Catalog,
        logs: LogStore,
        executor: Executor,
        keys: KeyStore,
        placer: Arc<crate::cluster::Placer>,
        capacity: usize,
    ) -> Arc<Runner> {
        let me = member.node().uuid.clone();
        let incarnation = format!("{me}/{}", uuid::Uuid::new_v4().simple());
        let (active, finishing) = (Mutex::new(HashMap::new()), Mutex::new(Default::default()));
        let stopping = Default::default();
        let slots = Arc::new(Slots::new(capacity));
        Arc::new(Runner {
            member,
            catalog,
            logs,
            executor,
            keys,
            me,
            incarnation,
            active,
            finishing,
            placer,
            stopping,
            slots,
            gate: StartGate::default(),
        })
    }

    /// This process's incarnation id. The scheduler writes it into the executions its fires
    /// create (they run on this member): the fire's commit is then also the claim.
    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// How many executions this incarnation runs or waits to run.
    pub fn running_count(&self) -> u32 {
        self.active().len() as u32
    }

    /// The execution slots: how many run and wait now.
    pub fn slots(&self) -> Arc<Slots> {
        self.slots.clone()
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<AbortHandle>>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops every execution this incarnation runs (as `forceIncomplete`: the member is going
    /// away, the runs have no outcome) and waits up to `grace` for them to record their end.
    pub async fn stop_all(&self, grace: Duration) {
        let handles: Vec<Arc<AbortHandle>> = self.active().values().cloned().collect();
        if handles.is_empty() {
            return;
        }
        tracing::info!(executions = handles.len(), "stopping the executions of this member");
        for h in handles {
            h.abort(AbortKind::ForceIncomplete);
        }
        let until = tokio::time::Instant::now() + grace;
        while !self.active().is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs until `stop` turns true; then stops the executions it runs.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        self.clone().follow(stop).await;
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        self.stop_all(Duration::from_secs(10)).await;
    }

    async fn follow(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut feed = self.member.kv().subscribe();
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return,
                r = self.member.read_barrier() => match r {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "runner waiting for the cluster");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        self.clone().sweep(true).await;
        let mode_key = crate::cluster::mode::mode_key(&self.me);
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return,
                ev = feed.recv() => match ev {
                    Ok(Event::Change(c)) if c.key == mode_key => {
                        // Active again: start what waited while this member was passive.
                        self.clone().sweep(false).await;
                    }
                    Ok(Event::Change(c)) => {
                        if let (Some(id), Some(new)) = (exec_id(&c.key), c.new.as_ref()) {
                            match crate::codec::decode::<ExecutionRecord>(&new.value) {
                                Ok(rec) => self.clone().consider(id, rec),
                                Err(e) => tracing::warn!(error = %e, execution = id, "unreadable execution record"),
                            }
                        }
                    }
                    Ok(Event::Reset { .. }) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.clone().sweep(false).await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    /// Looks at every unfinished execution assigned to this member. At start-up, those claimed
    /// by an earlier incarnation are recorded incomplete.
    async fn sweep(self: Arc<Self>, startup: bool) {
        let rows = match self.member.range(RUNNING, Consistency::Local).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "runner cannot list unfinished executions");
                return;
            }
        };
        for (_, kv) in rows {
            let Some(id) = steward_storage::kv::decode_seq(&kv.value) else { continue };
            let Ok(Some((rec, _))) = executions::load(&self.member, id, Consistency::Local).await else { continue };
            if rec.member != self.me {
                continue;
            }
            let orphan = rec.runner.as_deref().is_some_and(|r| r != self.incarnation);
            if startup && orphan && not_due_for(&rec, RECLAIM_MARGIN_MS) {
                // A slot decided ahead whose time has not come: the earlier incarnation never
                // started it (it starts nothing before the slot), so this one takes it over.
                if let Some(rec) = self.reclaim(id, rec.runner.clone()).await {
                    self.clone().consider(id, rec);
                    continue;
                }
            }
            if startup && orphan && !rec.status.is_final() {
                // Retried like any end: a restart often meets an election, and an orphan left
                // `running` would hold its job's run lock until the next restart. On a task of
                // its own, so that the sweep goes on meanwhile.
                let runner = self.clone();
                tokio::spawn(async move {
                    let msg = "its member stopped while it ran".to_string();
                    match runner.record_end(id, ExecStatus::Incomplete, Some(msg)).await {
                        Ok(_) => tracing::warn!(
                            execution = id,
                            "execution left running by an earlier run of this member: incomplete"
                        ),
                        Err(e) => tracing::warn!(error = %e, execution = id, "could not record an orphaned execution"),
                    }
                });
                continue;
            }
            self.clone().consider(id, rec);
        }
    }

    /// Claims for this incarnation execution `id`, claimed by `earlier` (an incarnation of
    /// this member that is gone) and still waiting for its slot. `None` when that no longer
    /// holds or the write failed.
    async fn reclaim(&self, id: u64, earlier: Option<String>) -> Option<ExecutionRecord> {
        let inc = self.incarnation.clone();
        let result = executions::update(&self.member, id, |r| {
            if r.runner != earlier || !not_due_for(r, RECLAIM_MARGIN_MS) || r.abort.is_some() {
                return false;
            }
            r.runner = Some(inc.clone());
            true
        })
        .await;
        match result {
            Ok(rec) if rec.runner.as_deref() == Some(self.incarnation.as_str()) => {
                tracing::info!(execution = id, "took over a slot an earlier run of this member had decided ahead");
                Some(rec)
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, execution = id, "could not take over a slot decided ahead");
                None
            }
        }
    }

    /// Acts on the current state of execution `id`.
    fn consider(self: Arc<Self>, id: u64, rec: ExecutionRecord) {
        if rec.member != self.me {
            return;
        }
        if let Some(handle) = self.active().get(&id).cloned() {
            if let Some(a) = &rec.abort {
                handle.abort(abort_kind(a));
            } else if rec.status.is_final() && !self.finishing.lock().unwrap_or_else(|p| p.into_inner()).contains(&id) {
                // Ended by someone else while it runs here: the leader recorded it incomplete
                // while this member was silent (paused, partitioned). Its outcome is decided;
                // what still runs here must stop.
                tracing::warn!(execution = id, status = rec.status.as_str(), "execution ended elsewhere; stopping it");
                handle.abort(AbortKind::ForceIncomplete);
            }
            return;
        }
        let claimed_at_creation = rec.runner.as_deref() == Some(self.incarnation.as_str());
        if rec.status.is_final() || rec.abort.is_some() || (rec.runner.is_some() && !claimed_at_creation) {
            return;
        }
        if !claimed_at_creation && crate::cluster::mode::local(&self.member, &self.me) == ExecutionMode::Passive {
            // A passive member starts nothing; the leader gives the execution to another member.
            return;
        }
        let (handle, signal) = abort_pair();
        self.active().insert(id, Arc::new(handle));
        tokio::spawn(async move {
            let wait = rec.scheduled_ms.filter(|_| rec.status == ExecStatus::Scheduled);
            if let Some(at) = wait {
                let s = signal.clone();
                tokio::select! {
                    _ = crate::engine::scheduler::sleep_until_wall(at) => {}
                    _ = s.requested() => {
                        self.active().remove(&id);
                        return;
                    }
                }
            }
            let run = if claimed_at_creation {
                self.clone().run_claimed(id, rec, signal).await
            } else {
                self.clone().claim_and_run(id, signal).await
            };
            if let Err(e) = run {
                tracing::warn!(error = %e, execution = id, "execution failed to run");
            }
            self.active().remove(&id);
            self.finishing.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        });
    }

    /// Claims execution `id` for this incarnation; runs it if the claim committed.
    async fn claim_and_run(self: Arc<Self>, id: u64, signal: crate::exec::AbortSignal) -> Result<(), ExecError> {
        let now = chrono::Utc::now().timestamp_millis();
        let inc = self.incarnation.clone();
        let rec = executions::update(&self.member, id, |r| {
            if r.status.is_final() || r.runner.is_some() || r.abort.is_some() {
                return false;
            }
            r.runner = Some(inc.clone());
            r.status = ExecStatus::Running;
            r.started_ms = Some(now);
            true
        })
        .await?;
        if rec.runner.as_deref() != Some(self.incarnation.as_str()) {
            return Ok(()); // someone else's, or it ended or was aborted meanwhile
        }
        self.run_claimed(id, rec, signal).await
    }

    /// Runs execution `id`, claimed by this incarnation, and records its end.
    async fn run_claimed(
        self: Arc<Self>,
        id: u64,
        rec: ExecutionRecord,
        signal: crate::exec::AbortSignal,
    ) -> Result<(), ExecError> {
        // The slot is held until the end is committed: in a burst, thousands of runs that end
        // at once would otherwise flood the leader with their ends while fires are still being
        // committed. It is given back before a retry's delay.
        let (slot, (status, message)) = match self.wait_for_slot(id, &signal).await {
            Ok((permit, waited)) => match self.still_ours(id, &signal).await {
                Ok(()) => {
                    if let (Trigger::Schedule, Some(slot)) = (rec.trigger, rec.scheduled_ms) {
                        if rec.attempt == 1 {
                            self.slots.started_late(chrono::Utc::now().timestamp_millis() - slot);
                        }
                    }
                    let outcome = match self.catalog.run_plan(&rec, id, &self.keys).await {
                        Ok(plan) => self.execute(id, &rec, plan, signal, waited).await,
                        Err(e) => {
                            let msg = format!("cannot run: {e}");
                            self.note(id, LogLevel::Error, &msg).await;
                            (ExecStatus::Failed, Some(msg))
                        }
                    };
                    (Some(permit), outcome)
                }
                Err(NotStarted::Decided) => return Ok(()),
                Err(NotStarted::Ended(status, message)) => (None, (status, message)),
            },
            Err(ended) => (None, ended),
        };
        self.finishing.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
        // Kept until the execution leaves `active`: the feed may bring the final record later.
        let ended = self.record_end(id, status, message).await?;
        drop(slot);
        self.retry_if_asked(id, &ended).await;
        Ok(())
    }

    /// Waits until execution `id` may run its steps; answers with the line its log gets when
    /// the wait took a second or more, so that a late start is explained where users look. An
    /// abort while it waits ends it without running anything (`aborted`, or `incomplete` for
    /// `forceIncomplete`).
    async fn wait_for_slot(
        &self,
        id: u64,
        signal: &crate::exec::AbortSignal,
    ) -> Result<(tokio::sync::SemaphorePermit<'_>, Option<String>), (ExecStatus, Option<String>)> {
        if let Ok(permit) = self.slots.sem.try_acquire() {
            return Ok((permit, None));
        }
        let waited = std::time::Instant::now();
        let _waiting = self.slots.waiting();
        tokio::select! {
            permit = self.slots.sem.acquire() => {
                // The semaphore is never closed.
                let permit = permit.expect("the execution slots are never closed");
                let secs = waited.elapsed().as_secs_f64();
                let line = (secs >= 1.0).then(|| {
                    format!(
                        "waited {secs:.1} s for a free execution slot ({} executions run at once on this member)",
                        self.slots.capacity
                    )
                });
                Ok((permit, line))
            }
            kind = signal.requested() => Err(self.ended_before_steps(id, kind, "waiting for a free execution slot").await),
        }
    }

    /// The end of execution `id`, aborted before its steps started while it was `doing` what
    /// it says; the line its log gets.
    async fn ended_before_steps(&self, id: u64, kind: AbortKind, doing: &str) -> (ExecStatus, Option<String>) {
        let (status, msg) = match kind {
            AbortKind::Abort => (ExecStatus::Aborted, format!("aborted while {doing}")),
            AbortKind::ForceIncomplete => (ExecStatus::Incomplete, format!("stopped (forceIncomplete) while {doing}")),
        };
        self.note(id, LogLevel::Warn, &msg).await;
        (status, Some(msg))
    }

    /// Confirms, right before its steps start, that execution `id` is still this incarnation's
    /// to run (module docs), from its record as of the confirmation.
    async fn still_ours(&self, id: u64, signal: &crate::exec::AbortSignal) -> Result<(), NotStarted> {
        const DOING: &str = "confirming the run with the leader";
        let rec = match self.confirmed_record(id, signal).await {
            Ok(Some(rec)) => rec,
            // Gone: its project was deleted meanwhile.
            Ok(None) => return Err(NotStarted::Decided),
            Err(kind) => return Err(self.ended_before_steps(id, kind, DOING).await.into()),
        };
        if rec.status.is_final() || rec.runner.as_deref() != Some(self.incarnation.as_str()) {
            tracing::warn!(
                execution = id,
                status = rec.status.as_str(),
                "execution decided elsewhere before its steps started; not starting it"
            );
            return Err(NotStarted::Decided);
        }
        match &rec.abort {
            None => Ok(()),
            Some(a) => Err(self.ended_before_steps(id, abort_kind(a), DOING).await.into()),
        }
    }

    /// Execution `id`'s record once this member may trust its applied state about it: at once
    /// under the heartbeat lease, else after a read barrier, retried while there is no leader
    /// (a member cut off from the leader starts nothing once its lease is over). `Err` with
    /// the abort requested meanwhile.
    async fn confirmed_record(
        &self,
        id: u64,
        signal: &crate::exec::AbortSignal,
    ) -> Result<Option<ExecutionRecord>, AbortKind> {
        let mut wait = Duration::from_millis(100);
        loop {
            let passed = if self.placer.heartbeats().lease() {
                Ok(())
            } else {
                tokio::select! {
                    passed = self.gate.pass(&self.member) => passed,
                    kind = signal.requested() => return Err(kind),
                }
            };
            let read = match passed {
                Ok(()) => executions::load(&self.member, id, Consistency::Local).await.map_err(|e| e.to_string()),
                // The member is stopping: `stop_all` ends the run through `signal`.
                Err(steward_raft::ClusterError::Fatal(_)) => return Err(signal.requested().await),
                Err(e) => Err(e.to_string()),
            };
            match read {
                Ok(found) => return Ok(found.map(|(rec, _)| rec)),
                Err(e) => {
                    tracing::info!(execution = id, error = %e, "cannot confirm the run with the leader yet; waiting")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                kind = signal.requested() => return Err(kind),
            }
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    /// Commits the end of execution `id`, retrying while the cluster cannot take it (no leader,
    /// an indeterminate answer): the processes are done, and an execution left `running` would
    /// hold its job's run lock (`jobrun/`) until this member restarts. Repeating is safe: the
    /// update re-reads the record and changes nothing once it is final.
    async fn record_end(
        &self,
        id: u64,
        status: ExecStatus,
        message: Option<String>,
    ) -> Result<ExecutionRecord, ExecError> {
        let mut wait = Duration::from_millis(100);
        loop {
            match executions::finish(&self.member, id, status, message.clone()).await {
                Ok(rec) => return Ok(rec),
                Err(ExecError::Cluster(e))
                    if !matches!(e, steward_raft::ClusterError::Fatal(_))
                        && !self.stopping.load(std::sync::atomic::Ordering::Relaxed) =>
                {
                    tracing::warn!(execution = id, error = %e, "could not record the end yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes one line to an execution's log (for failures before any process ran).
    async fn note(&self, id: u64, level: LogLevel, text: &str) {
        let w = self.logs.writer(id);
        w.emit(LogEntry::now(level, text));
        let _ = w.finish().await;
    }

    async fn execute(
        &self,
        id: u64,
        rec: &ExecutionRecord,
        plan: RunPlan,
        signal: crate::exec::AbortSignal,
        waited: Option<String>,
    ) -> (ExecStatus, Option<String>) {
        // Starting a writer needs no round trip to the store: a run starts while the store is
        // down, and its output is buffered until the store answers.
        let writer = self.logs.writer(id);
        if let Some(line) = waited {
            writer.emit(LogEntry::now(LogLevel::Warn, &line));
        }
        tracing::info!(execution = id, job = %rec.job_uuid, "execution started");
        let outcome = self.executor.run(&plan.execution, &writer, signal).await;
        if let Err(e) = writer.finish().await {
            tracing::warn!(error = %e, execution = id, "could not complete the execution log");
        }
        let status = match outcome.status {
            Status::Succeeded => ExecStatus::Succeeded,
            Status::Failed => ExecStatus::Failed,
            Status::Aborted => ExecStatus::Aborted,
            Status::TimedOut => ExecStatus::Timedout,
            Status::Incomplete => ExecStatus::Incomplete,
        };
        let message = match status {
            ExecStatus::Failed => outcome.failed_step().map(|s| {
                let why = s.reason.as_ref().map(|r| r.to_string()).unwrap_or_else(|| "failed".into());
                format!("step {} failed: {why}", s.step_ctx)
            }),
            ExecStatus::Timedout => plan.execution.timeout.map(|t| format!("timed out after {t:?}")),
            _ => None,
        };
        tracing::info!(execution = id, status = status.as_str(), "execution ended");
        (status, message)
    }

    /// After a failed or timed-out attempt of a job with retries left: waits the retry delay
    /// (an abort of the job meanwhile cancels it) and creates the next attempt, assigned to
    /// this member.
    async fn retry_if_asked(&self, id: u64, ended: &ExecutionRecord) {
        if !matches!(ended.status, ExecStatus::Failed | ExecStatus::Timedout) {
            return;
        }
        let Ok(Some(policy)) = self.catalog.retry_policy(&ended.job_uuid) else { return };
        if ended.attempt > policy.count {
            return;
        }
        tokio::time::sleep(policy.delay).await;
        // Rundeck evaluates the policy again for every execution, retries included.
        let to = match self.placer.choose(&ended.project, &self.me, &mut None) {
            Ok(to) => to,
            Err(e) => {
                tracing::warn!(execution = id, error = %e, "not retried: no member may run the retry");
                return;
            }
        };
        let next = executions::next_attempt(id, ended, &to, 0);
        let mut guards = vec![steward_storage::Guard::Exists(super::records::job_index_key(&ended.job_uuid))];
        if next.exclusive {
            guards.push(steward_storage::Guard::Absent(super::records::job_run_key(&ended.job_uuid)));
        }
        let txn = Txn::guarded(guards, vec![create_execution_op(&next, Vec::new())]);
        match self.member.write(txn).await {
            Ok(r) if r.succeeded => {
                tracing::info!(execution = id, retry = ?r.allocated.first(), attempt = next.attempt, "retrying")
            }
            Ok(_) => tracing::info!(execution = id, "not retried: the job is gone or already running"),
            Err(e) => tracing::warn!(error = %e, execution = id, "could not create the retry"),
        }
    }
}
