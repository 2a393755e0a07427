//! The scheduler of one member: it fires the slots of the jobs this member owns.
//!
//! It keeps, in memory, the jobs whose `owner/` record names this member, rebuilt from the
//! replicated state at start and after a snapshot install, and kept current from the change
//! feed. A timer wakes at the earliest due slot; every due slot of every job is decided in
//! batches of guarded transactions (see [`super::fire`]). A slot that could not be decided
//! (no leader, timeout) stays due and is tried again; slots overdue past the job's misfire
//! window are recorded as missed, so every slot ends as a fire or a record.
//!
//! A burst (many slots at the same moment, e.g. thousands of jobs on the same minute) takes
//! longer to commit than its runs can wait: its slots are decided ahead, by the time this
//! member's recent bursts took per slot (see `Scheduler::lead`), and their runs wait for the
//! slot to start.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use steward_raft::Member;
use steward_storage::{Event, KvReader};
use tokio::sync::{broadcast, mpsc, watch};

use super::catalog::{Catalog, JobEntry};
use super::fire::{fire_batch, interpret, DueSlot, ScheduledJob, SlotAction, SlotResult};
use super::records::{FIRES, JOBS, OWNERS};
use super::stopped;
use crate::jobs::schedule::{plan_due_slots, JobSchedule, MisfirePolicy, SlotOutcome};

/// Slots decided per log entry.
pub const BATCH: usize = 64;

/// Most slots of one job decided per wake-up (a long outage of a frequent job is worked off in
/// bounded rounds).
const PER_JOB: usize = 1000;

/// A burst expected to commit in less than this is decided at its time.
const AHEAD_MIN_MS: f64 = 50.0;

/// The furthest ahead of its time a slot is decided.
const AHEAD_MAX_MS: f64 = 10_000.0;

/// What a slot is assumed to cost to commit before a burst of 100 or more has been measured:
/// 10 000 slots at once cost three members sharing two cores 150–450 µs a slot in `steward
/// bench fires`, depending on how the members' bursts overlap; a member whose cores are busy
/// with other work (steps starting, a test suite beside it) took about 3 ms, and its first
/// burst, decided with 500 µs, committed every slot late. A first guess that is too high only
/// decides the first burst earlier than needed; the measured cost replaces it.
const INITIAL_SLOT_COST_US: f64 = 2000.0;

/// The margin on a burst's expected commit time when it is decided ahead.
const AHEAD_MARGIN: f64 = 1.5;

/// The longest the scheduler sleeps before it reads the wall clock again. A sleep is measured
/// on the monotonic clock but computed from the wall clock; if the wall clock is stepped back
/// (NTP, a resumed VM) while the loop sleeps toward a slot that then looked far away, it must
/// not sleep through the slots that come once the clock is right again.
const WALL_CLOCK_RECHECK: Duration = Duration::from_secs(1);

/// Waits until the wall clock reads `at_ms`, reading it again at least every
/// [`WALL_CLOCK_RECHECK`], so a clock stepped back while waiting delays the wake-up by no
/// more than that once it is right again.
pub(crate) async fn sleep_until_wall(at_ms: i64) {
    loop {
        let left = wake_after(Some(at_ms), 0, Utc::now().timestamp_millis());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left).await;
    }
}

/// How long to sleep before deciding the next slot, `next_ms` (none queued: `None`), decided
/// `lead_ms` ahead, at wall time `now_ms`: never longer than [`WALL_CLOCK_RECHECK`].
fn wake_after(next_ms: Option<i64>, lead_ms: i64, now_ms: i64) -> Duration {
    let until = match next_ms {
        Some(t) => Duration::from_millis((t - lead_ms).saturating_sub(now_ms).max(0) as u64),
        None => WALL_CLOCK_RECHECK,
    };
    until.min(WALL_CLOCK_RECHECK)
}

/// The timer's queue: (next slot ms, job uuid), and for each instant how many of its jobs allow
/// concurrent runs: the size of a burst that may be decided ahead (`Scheduler::lead`), kept
/// here so that the timer does not count a burst of thousands at every turn of its loop (every
/// job imported is one).
#[derive(Default)]
struct Queue {
    slots: BTreeSet<(i64, String)>,
    concurrent: BTreeMap<i64, usize>,
}

impl Queue {
    fn insert(&mut self, t: i64, uuid: &str, concurrent: bool) {
        if self.slots.insert((t, uuid.to_string())) && concurrent {
            *self.concurrent.entry(t).or_default() += 1;
        }
    }

    fn remove(&mut self, t: i64, uuid: &str, concurrent: bool) {
        if self.slots.remove(&(t, uuid.to_string())) && concurrent {
            if let Some(n) = self.concurrent.get_mut(&t) {
                *n -= 1;
                if *n == 0 {
                    self.concurrent.remove(&t);
                }
            }
        }
    }

    /// The earliest queued instant.
    fn first(&self) -> Option<i64> {
        self.slots.first().map(|(t, _)| *t)
    }

    /// Jobs allowing concurrent runs queued at instant `t`.
    fn concurrent_at(&self, t: i64) -> usize {
        self.concurrent.get(&t).copied().unwrap_or(0)
    }
}

/// One owned job in the scheduler.
struct Owned {
    job: Arc<ScheduledJob>,
    schedule: Arc<JobSchedule>,
    misfire: MisfirePolicy,
    /// The last slot decided (ms), or the moment scheduling started.
    after: i64,
    /// The next slot to decide (ms), if the schedule has one.
    next: Option<i64>,
    /// The epoch of the owner record this member schedules under.
    epoch: u64,
}

/// Where scheduling a job owned under owner-record `epoch` resumes (see `Scheduler::track`):
/// after `tracked`'s progress when it was made under the same epoch, else after the last slot
/// recorded in the cluster, never before `since_ms`.
fn resume_after(
    tracked: Option<(u64, i64)>,
    epoch: u64,
    last_recorded: impl FnOnce() -> Option<i64>,
    since_ms: i64,
) -> i64 {
    match tracked {
        Some((e, after)) if e == epoch => after,
        _ => last_recorded().unwrap_or(since_ms).max(since_ms),
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_else(Utc::now)
}

/// Lateness samples kept for the metrics (the most recent ones).
pub const LATENESS_SAMPLES: usize = 100_000;

/// The most recent [`LATENESS_SAMPLES`] values of a metric (ms), oldest first.
#[derive(Debug, Default, Clone)]
pub struct Samples(std::collections::VecDeque<i64>);

impl Samples {
    pub fn push(&mut self, ms: i64) {
        if self.0.len() >= LATENESS_SAMPLES {
            self.0.pop_front();
        }
        self.0.push_back(ms);
    }

    pub fn iter(&self) -> impl Iterator<Item = &i64> {
        self.0.iter()
    }
}

/// Fire statistics, for the metrics endpoint and benchmarks.
#[derive(Debug, Default, Clone)]
pub struct FireStats {
    /// Milliseconds from slot time to the commit of its fire record (negative for a slot
    /// decided ahead).
    pub lateness_ms: Samples,
    pub fired: u64,
    pub missed: u64,
    pub skipped: u64,
    /// Slots found already recorded when this member decided them: another member's, or this
    /// member's own after a write that timed out but took effect. The latter's lateness is
    /// unknown, so it is not in `lateness_ms`; a benchmark must say so when this is not zero.
    pub already_recorded: u64,
}

/// What the feed follower tells the scheduler.
enum Note {
    /// A job or owner record changed.
    Key(String),
    /// The state was replaced or changes were missed: re-read everything.
    Rebuild,
}

/// Forwards the job and owner changes of the feed.
async fn follow_feed(mut feed: broadcast::Receiver<Event>, tx: mpsc::UnboundedSender<Note>) {
    loop {
        let note = match feed.recv().await {
            Ok(Event::Change(c)) if c.key.starts_with(JOBS) || c.key.starts_with(OWNERS) => Note::Key(c.key),
            Ok(Event::Change(_)) => continue,
            Ok(Event::Reset { .. }) | Err(broadcast::error::RecvError::Lagged(_)) => Note::Rebuild,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if tx.send(note).is_err() {
            return;
        }
    }
}

pub struct Scheduler {
    member: Member,
    catalog: Catalog,
    me: String,
    /// This member's runner incarnation, written into the executions fires create.
    runner: String,
    owned: HashMap<String, Owned>,
    queue: Queue,
    stats: Arc<std::sync::Mutex<FireStats>>,
    /// Which member runs each fired slot.
    placer: Arc<crate::cluster::Placer>,
    /// Wall time a slot took to commit in this member's recent bursts (µs per slot; it follows
    /// a costlier burst at once and a cheaper one slowly): how far ahead the next burst must be
    /// decided to commit by its time.
    slot_cost_us: f64,
}

impl Scheduler {
    pub fn new(
        member: Member,
        catalog: Catalog,
        runner: String,
        stats: Arc<std::sync::Mutex<FireStats>>,
        placer: Arc<crate::cluster::Placer>,
    ) -> Self {
        let me = member.node().uuid.clone();
        Scheduler {
            member,
            catalog,
            me,
            runner,
            owned: HashMap::new(),
            queue: Queue::default(),
            stats,
            placer,
            slot_cost_us: INITIAL_SLOT_COST_US,
        }
    }

    /// How far ahead of its time the earliest slot in the queue is decided (ms): a burst of
    /// `n` slots of jobs that allow concurrent runs, all due at the same moment, is decided
    /// early enough to commit by then (`n` times the measured cost per slot, with a margin), so
    /// that its runs start on time. A burst expected to take under [`AHEAD_MIN_MS`] is decided
    /// at its time, as is every slot of a job that forbids concurrent runs: whether a run is
    /// still going can only be known at the slot.
    fn lead(&self) -> i64 {
        let Some(first) = self.queue.first() else { return 0 };
        let n = self.queue.concurrent_at(first);
        let expected = n as f64 * self.slot_cost_us / 1000.0 * AHEAD_MARGIN;
        if expected < AHEAD_MIN_MS {
            0
        } else {
            expected.min(AHEAD_MAX_MS) as i64
        }
    }

    /// The member that runs a fired slot of `project`: this one under policy `None`, else the
    /// policy's choice; when no member qualifies, this one (the slot still runs, and the log
    /// says why it runs here).
    fn runs_on(&self, project: &str, candidates: &mut Option<Vec<crate::placement::Candidate>>) -> Option<String> {
        if self.placer.is_local(project) {
            return None;
        }
        match self.placer.choose(project, &self.me, candidates) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, project, "no member qualifies for a scheduled run; running it on its owner");
                None
            }
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        // The change feed is read by a task of its own that keeps only what concerns the
        // scheduler: a burst of fires (thousands of changes) never makes this loop, busy
        // writing, fall behind the feed and rebuild.
        let (tx, mut notes) = mpsc::unbounded_channel();
        let follower = tokio::spawn(follow_feed(self.member.kv().subscribe(), tx));
        let mut needs_rebuild = true;
        loop {
            if needs_rebuild {
                match self.rebuild().await {
                    Ok(()) => needs_rebuild = false,
                    Err(e) => tracing::warn!(error = %e, "scheduler cannot read the jobs yet; retrying"),
                }
            }
            let sleep = if needs_rebuild {
                Duration::from_millis(200)
            } else {
                wake_after(self.queue.first(), self.lead(), Utc::now().timestamp_millis())
            };
            tokio::select! {
                _ = stopped(&mut stop) => break,
                note = notes.recv() => match note {
                    Some(Note::Key(key)) => self.refresh_key(&key),
                    Some(Note::Rebuild) => {
                        tracing::warn!("the scheduler fell behind the change feed; re-reading the jobs");
                        needs_rebuild = true;
                    }
                    None => break,
                },
                _ = tokio::time::sleep(sleep) => {
                    if !needs_rebuild && !self.fire_due().await {
                        // Nothing could be decided (no leader): try again shortly.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        follower.abort();
    }

    /// Re-reads every job and owner record and the last recorded slot of each owned job.
    ///
    /// The progress of jobs it already schedules (the last slot decided) is kept: a rebuild
    /// after falling behind the feed, in the middle of a burst of fires, must not make every
    /// job look up its last recorded slot again before anything fires.
    async fn rebuild(&mut self) -> Result<(), String> {
        let started = std::time::Instant::now();
        self.member.read_barrier().await.map_err(|e| e.to_string())?;
        let entries = self.catalog.all_jobs().map_err(|e| e.to_string())?;
        let seen: std::collections::HashSet<String> = entries.iter().map(|e| e.job.uuid.clone()).collect();
        let gone: Vec<String> = self.owned.keys().filter(|u| !seen.contains(*u)).cloned().collect();
        for uuid in gone {
            self.untrack(&uuid);
        }
        let count = entries.len();
        for entry in entries {
            self.track(entry);
        }
        if !self.owned.is_empty() || count > 0 {
            tracing::info!(
                jobs = count,
                owned = self.owned.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "scheduler read the jobs"
            );
        }
        Ok(())
    }

    fn refresh_key(&mut self, key: &str) {
        let uuid = key.rsplit('/').next().unwrap_or_default().to_string();
        match self.catalog.job_entry(&uuid) {
            Ok(Some(entry)) => self.track(entry),
            Ok(None) => self.untrack(&uuid),
            Err(e) => tracing::warn!(error = %e, job = %uuid, "cannot read job"),
        }
    }

    fn untrack(&mut self, uuid: &str) {
        if let Some(o) = self.owned.remove(uuid) {
            if let Some(n) = o.next {
                self.queue.remove(n, uuid, o.job.multiple_executions);
            }
        }
    }

    /// Starts (or stops) scheduling a job as its records now say.
    fn track(&mut self, entry: JobEntry) {
        let uuid = entry.job.uuid.clone();
        let owned_by_me = entry.owner.as_ref().is_some_and(|o| o.member == self.me);
        let Some(schedule) = entry.schedule.filter(|_| owned_by_me) else {
            self.untrack(&uuid);
            return;
        };
        // Resume after the last decided slot: this member's own progress under the same owner
        // record, else the last slot recorded in the cluster (a restart or a takeover), else the
        // job's last change — a new or newly enabled job does not fire slots from before it
        // existed, and the slots of a job whose owner died before it recorded any are still
        // decided by the new owner. A new epoch means the job was someone else's meanwhile
        // (taken over and given back, perhaps before this member saw it leave): the slots it
        // "decided" then were refused by the owner guard and recorded by nobody, so its own
        // progress does not count.
        let epoch = entry.owner.as_ref().map_or(0, |o| o.epoch);
        let tracked = self.owned.get(&uuid).map(|o| (o.epoch, o.after));
        let after = resume_after(tracked, epoch, || latest_recorded_slot(self.member.kv(), &uuid), entry.since_ms);
        self.untrack(&uuid);
        let next = schedule.next_after(at(after)).map(ms);
        if let Some(n) = next {
            self.queue.insert(n, &uuid, entry.job.multiple_executions);
        }
        self.owned
            .insert(uuid, Owned { job: Arc::new(entry.job), schedule, misfire: entry.misfire, after, next, epoch });
    }

    /// Decides every due slot. Returns false when nothing could be written.
    async fn fire_due(&mut self) -> bool {
        if crate::cluster::mode::local(&self.member, &self.me) == crate::cluster::ExecutionMode::Passive {
            // A passive member fires nothing; the leader moves its jobs to an active member.
            return false;
        }
        let now = Utc::now();
        let now_ms = ms(now);
        let horizon = now_ms + self.lead();
        let mut due: Vec<(String, i64, SlotAction, Option<String>)> = Vec::new();
        let mut candidates = None;
        for (t, uuid) in self.queue.slots.iter() {
            if *t > horizon {
                break;
            }
            let Some(o) = self.owned.get(uuid) else { continue };
            if *t > now_ms {
                // Decided ahead (see `lead`): only its next slot, and only if the job allows
                // concurrent runs. Its execution waits for the slot to start.
                if o.job.multiple_executions {
                    due.push((uuid.clone(), *t, SlotAction::Fire, self.runs_on(&o.job.project, &mut candidates)));
                }
                continue;
            }
            // Every slot from the last decided one up to now: on time, late (at most one, by
            // the job's misfire policy), or missed — none is left without a record.
            let plan = plan_due_slots(&o.schedule, &o.misfire, at(o.after), now, PER_JOB);
            for d in plan.decisions {
                let action = match d.outcome {
                    SlotOutcome::Fire | SlotOutcome::FireLate => SlotAction::Fire,
                    SlotOutcome::Missed => SlotAction::RecordMissed,
                };
                let runs_on = match action {
                    SlotAction::Fire => self.runs_on(&o.job.project, &mut candidates),
                    SlotAction::RecordMissed => None,
                };
                due.push((uuid.clone(), ms(d.slot), action, runs_on));
            }
        }
        if due.is_empty() {
            return true;
        }
        let mut progressed = false;
        let mut decided: BTreeMap<String, i64> = BTreeMap::new();
        // The earliest slot of each job whose batch could not be written: the job must not
        // move past it (a later batch of the same job may have succeeded).
        let mut undecided: BTreeMap<String, i64> = BTreeMap::new();
        // Every batch is proposed at once: Raft carries them in the same round trips, so a
        // burst of thousands of slots commits in about the time of one batch.
        let batches: Vec<Vec<DueSlot<'_>>> = due
            .chunks(BATCH)
            .map(|chunk| {
                chunk
                    .iter()
                    .filter_map(|(uuid, slot, action, runs_on)| {
                        self.owned.get(uuid).map(|o| DueSlot {
                            job: &o.job,
                            slot_ms: *slot,
                            action: *action,
                            runs_on: runs_on.clone(),
                        })
                    })
                    .collect()
            })
            .collect();
        let now = Utc::now().timestamp_millis();
        let writes = batches.iter().map(|slots| {
            let txn = fire_batch(&self.me, Some(&self.runner), slots, now);
            let member = self.member.clone();
            async move {
                let r = member.write(txn).await;
                (r, Utc::now().timestamp_millis())
            }
        });
        let results = futures::future::join_all(writes).await;
        let took_ms = Utc::now().timestamp_millis() - now_ms;
        tracing::debug!(
            slots = due.len(),
            batches = batches.len(),
            took_ms,
            ahead_ms = horizon - now_ms,
            "decided the due slots"
        );
        if due.len() >= 100 && results.iter().all(|(r, _)| r.is_ok()) {
            // Up at once, down slowly: a burst costs more when the other members' bursts
            // overlap it, and deciding too late is what this estimate is for avoiding.
            let cost = took_ms.max(0) as f64 * 1000.0 / due.len() as f64;
            self.slot_cost_us = if cost > self.slot_cost_us { cost } else { 0.75 * self.slot_cost_us + 0.25 * cost };
        }
        for (slots, (result, committed)) in batches.iter().zip(results) {
            match result {
                Ok(result) => {
                    progressed = true;
                    let outcomes = interpret(slots, &result);
                    let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
                    for (s, r) in slots.iter().zip(outcomes) {
                        match r {
                            SlotResult::Fired(id) => {
                                stats.fired += 1;
                                stats.lateness_ms.push(committed - s.slot_ms);
                                tracing::debug!(job = %s.job.uuid, slot = s.slot_ms, execution = id, "fired");
                            }
                            SlotResult::Missed => {
                                stats.missed += 1;
                                tracing::warn!(job = %s.job.uuid, slot = s.slot_ms, "slot recorded as missed");
                            }
                            SlotResult::Skipped => {
                                stats.skipped += 1;
                                tracing::info!(job = %s.job.uuid, slot = s.slot_ms, "slot skipped: a run is still going");
                            }
                            SlotResult::AlreadyRecorded => stats.already_recorded += 1,
                            SlotResult::NotOwner => {
                                tracing::info!(job = %s.job.uuid, "no longer the owner; not firing");
                            }
                        }
                        let e = decided.entry(s.job.uuid.clone()).or_insert(s.slot_ms);
                        *e = (*e).max(s.slot_ms);
                    }
                }
                Err(e) => {
                    // These slots stay due; a later round decides them (the guards make a
                    // repeat harmless).
                    tracing::warn!(error = %e, slots = slots.len(), "could not record due slots; will retry");
                    for s in slots {
                        let e = undecided.entry(s.job.uuid.clone()).or_insert(s.slot_ms);
                        *e = (*e).min(s.slot_ms);
                    }
                }
            }
        }
        // Advance each job past the slots that were decided.
        for (uuid, mut last) in decided {
            if let Some(first_open) = undecided.get(&uuid) {
                last = last.min(first_open - 1);
            }
            if let Some(o) = self.owned.get_mut(&uuid) {
                let concurrent = o.job.multiple_executions;
                if let Some(n) = o.next {
                    self.queue.remove(n, &uuid, concurrent);
                }
                o.after = last;
                o.next = o.schedule.next_after(at(last)).map(ms);
                if let Some(n) = o.next {
                    self.queue.insert(n, &uuid, concurrent);
                }
            }
        }
        progressed
    }
}

/// The latest slot recorded for job `uuid` (fired, skipped or missed) in `kv`.
///
/// A job's history can hold millions of records, so the last key is read alone: slots are ms
/// since the epoch, 13 digits from 2001 to 2286, so the last key is the latest slot. A last key
/// of another form (a slot of a clock set before 2001) sends it to a full scan.
pub fn latest_recorded_slot(kv: &KvReader, uuid: &str) -> Option<i64> {
    let prefix = format!("{FIRES}{uuid}/");
    let (last, _) = kv.last_under(&prefix).ok()??;
    let slot = last.strip_prefix(&prefix)?;
    if slot.len() == 13 && slot.bytes().all(|b| b.is_ascii_digit()) {
        return slot.parse().ok();
    }
    let rows = kv.range(&prefix).ok()?;
    rows.iter().filter_map(|(k, _)| k.strip_prefix(&prefix)?.parse::<i64>().ok()).max()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{resume_after, wake_after, Queue, WALL_CLOCK_RECHECK};

    #[test]
    fn a_job_given_back_under_a_new_epoch_resumes_after_the_clusters_records_not_its_own_progress() {
        let (since, recorded, own) = (1_000, 80_000, 120_000);
        // Same owner record: its own progress (slots it decided that the cluster may not show
        // yet, decided ahead).
        assert_eq!(resume_after(Some((4, own)), 4, || Some(recorded), since), own);
        // Taken over and given back while it went on "deciding" slots its owner guard refused:
        // those were recorded by nobody, so it resumes after the last record.
        assert_eq!(resume_after(Some((4, own)), 6, || Some(recorded), since), recorded);
        // Newly owned: the last record, else the job's last change.
        assert_eq!(resume_after(None, 6, || Some(recorded), since), recorded);
        assert_eq!(resume_after(None, 1, || None, since), since);
    }

    #[test]
    fn the_scheduler_reads_the_wall_clock_again_within_a_second_however_far_the_next_slot() {
        let now = 1_795_000_000_000;
        // A clock stepped back 512 s makes the next slot look 512 s away: the loop must wake
        // within a second, not sleep those 512 s on the monotonic clock.
        assert_eq!(wake_after(Some(now + 512_000), 0, now), WALL_CLOCK_RECHECK);
        assert_eq!(wake_after(None, 0, now), WALL_CLOCK_RECHECK);
        assert_eq!(wake_after(Some(now + 300), 0, now), Duration::from_millis(300));
        assert_eq!(wake_after(Some(now + 300), 100, now), Duration::from_millis(200), "decided ahead");
        assert_eq!(wake_after(Some(now - 5_000), 0, now), Duration::ZERO, "a slot already due");
    }

    #[test]
    fn the_queue_counts_each_instants_jobs_that_allow_concurrent_runs_once() {
        let mut q = Queue::default();
        q.insert(1000, "a", true);
        q.insert(1000, "a", true); // already queued: not counted again
        q.insert(1000, "b", false);
        q.insert(1000, "c", true);
        q.insert(2000, "d", true);
        assert_eq!((q.first(), q.concurrent_at(1000), q.concurrent_at(2000)), (Some(1000), 2, 1));
        q.remove(1000, "x", true); // not queued: nothing to uncount
        q.remove(1000, "a", true);
        q.remove(1000, "b", false);
        assert_eq!(q.concurrent_at(1000), 1);
        q.remove(1000, "c", true);
        assert_eq!((q.first(), q.concurrent_at(1000)), (Some(2000), 0));
        assert!(!q.concurrent.contains_key(&1000), "an instant with no job left is forgotten");
    }
}
