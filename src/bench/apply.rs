//! `steward bench apply`: what applying scheduled fires costs one member's state machine.
//!
//! The fire burst of `steward bench fires` spends most of its CPU applying fire transactions,
//! on every member. This measures that part alone, without Raft, the network or other
//! processes: the same transactions the scheduler proposes ([`fire_batch`], 64 slots each, one
//! log entry each) applied to a store of its own through openraft's `RaftStateMachine::apply`,
//! a few entries per call as openraft hands them over, with one change-feed subscriber
//! draining (a member always has some). It reports wall time and the process's CPU time per
//! fired slot, so a change to the apply path can be measured on a noisy host.

use std::time::Instant;

use anyhow::Context;
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use steward_raft::TypeConfig;
use steward_storage::{Op, StoreOptions, Txn};

use crate::engine::fire::{fire_batch, interpret, DueSlot, ScheduledJob, SlotAction, SlotResult};
use crate::engine::records::{owner_key, RUNNING};
use crate::engine::scheduler::BATCH;

#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    /// Jobs, each firing once per round (like a one-minute schedule, every job at once).
    #[arg(long, default_value_t = 10_000)]
    pub jobs: usize,
    /// Rounds of fires (slots per job).
    #[arg(long, default_value_t = 5)]
    pub rounds: u64,
    /// Log entries per apply call.
    #[arg(long, default_value_t = 4)]
    pub entries_per_apply: usize,
    /// Where to put the store [default: a temporary directory].
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// CPU time (user + system) of this process so far.
fn process_cpu() -> std::time::Duration {
    // SAFETY: getrusage only writes the struct it is given.
    #[allow(unsafe_code)]
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn entry(index: u64, txn: Txn) -> Entry<TypeConfig> {
    Entry { log_id: LogId::new(CommittedLeaderId::new(1, 0), index), payload: EntryPayload::Normal(txn) }
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let root = super::bench_root(args.dir.as_ref())?;
    let result = measure(&args, &root).await;
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

async fn measure(args: &ApplyArgs, root: &std::path::Path) -> anyhow::Result<()> {
    let (_log, mut sm) = steward_storage::open::<TypeConfig>(&root.join("store"), StoreOptions::default())
        .context("opening the bench store")?;
    let mut feed = sm.reader().subscribe();
    let events = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = events.clone();
    let drain = tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let n = match feed.recv().await {
                Ok(_) => 1,
                Err(RecvError::Lagged(n)) => n,
                Err(RecvError::Closed) => return,
            };
            counted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    });

    let me = "member-1";
    let owner_record = b"bench owner record".to_vec();
    let jobs: Vec<ScheduledJob> = (0..args.jobs)
        .map(|i| ScheduledJob {
            uuid: format!("00000000-0000-4000-8000-{i:012}"),
            project: "bench".into(),
            name: format!("job-{i}"),
            group: "bench/apply".into(),
            owner_record: owner_record.clone(),
            // As `steward bench fires` defines its jobs.
            multiple_executions: true,
            loglevel: "INFO".into(),
            options: Default::default(),
            user: "admin".into(),
        })
        .collect();
    let mut index = 1;
    let owners =
        Txn::ops(jobs.iter().map(|j| Op::Put { key: owner_key(&j.uuid), value: owner_record.clone() }).collect());
    sm.apply(vec![entry(index, owners)]).await?;
    index += 1;

    println!(
        "steward bench apply: {} jobs, {} rounds, {} slots per entry, {} entries per apply; {}",
        args.jobs,
        args.rounds,
        BATCH,
        args.entries_per_apply,
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    );
    let base_ms = chrono::Utc::now().timestamp_millis() / 60_000 * 60_000;
    for round in 0..args.rounds {
        let slot_ms = base_ms + round as i64 * 60_000;
        let due: Vec<DueSlot<'_>> =
            jobs.iter().map(|job| DueSlot { job, slot_ms, action: SlotAction::Fire, runs_on: None }).collect();
        let batches: Vec<&[DueSlot<'_>]> = due.chunks(BATCH).collect();
        let txns: Vec<Txn> = batches.iter().map(|b| fire_batch(me, Some("runner-1"), b, slot_ms)).collect();
        let (wall, cpu) = (Instant::now(), process_cpu());
        let mut results = Vec::with_capacity(txns.len());
        let mut pending = txns.into_iter().peekable();
        while pending.peek().is_some() {
            let entries: Vec<_> = pending
                .by_ref()
                .take(args.entries_per_apply)
                .map(|txn| {
                    index += 1;
                    entry(index - 1, txn)
                })
                .collect();
            results.extend(sm.apply(entries).await?);
        }
        let (wall, cpu) = (wall.elapsed(), process_cpu() - cpu);
        let fired = batches
            .iter()
            .zip(&results)
            .flat_map(|(slots, r)| interpret(slots, r))
            .filter(|r| matches!(r, SlotResult::Fired(_)))
            .count();
        anyhow::ensure!(fired == args.jobs, "round {round}: {fired} of {} slots fired", args.jobs);
        // The runs end before the next round, as they do between one-minute slots: their
        // running index goes (not measured).
        sm.apply(vec![entry(index, Txn::ops(vec![Op::DeletePrefix { prefix: RUNNING.into() }]))]).await?;
        index += 1;
        println!(
            "round {round}: {fired} fired in {:.0} ms wall, {:.0} ms CPU: {:.1} µs wall and {:.1} µs CPU per fire",
            wall.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3,
            wall.as_secs_f64() * 1e6 / fired as f64,
            cpu.as_secs_f64() * 1e6 / fired as f64,
        );
    }
    drain.abort();
    println!("change-feed events: {}", events.load(std::sync::atomic::Ordering::Relaxed));
    Ok(())
}
