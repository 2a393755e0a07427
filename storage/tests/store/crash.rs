//! Crash test: a child process writes through the store and reports every acknowledgement;
//! the parent kills it with SIGKILL at random moments, reopens the store and checks that
//! everything acknowledged survived and that the log has no hole.
//!
//! The child is this test binary run again with only [`crash_child`] selected and
//! [`CHILD_DIR_ENV`] set; in a normal test run that test returns at once. The kill moments
//! come from a seed printed at the start; rerun with `STEWARD_CRASH_SEED=<seed>` to replay
//! the same choices (process timing still varies).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{Entry, Vote};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use steward_storage::Txn;

use crate::common::{log_id, open_store, txn_entry, TestConfig};

/// Tells [`crash_child`] to act as the child, writing to the store in this directory.
const CHILD_DIR_ENV: &str = "STEWARD_STORAGE_CRASH_CHILD_DIR";
/// Seeds the child's own choices (batch sizes, when to vote and purge).
const CHILD_SEED_ENV: &str = "STEWARD_STORAGE_CRASH_CHILD_SEED";
/// Replays a previous run's kill schedule.
const SEED_ENV: &str = "STEWARD_CRASH_SEED";

const KILLS: usize = 60;
/// A child that has not acknowledged anything for this long is considered stuck.
const STALL: Duration = Duration::from_secs(30);
/// The child stops on its own after this long, should its parent fail to kill it.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

/// The entry the child writes at `index`; the parent checks the log holds exactly this.
fn entry_for(index: u64) -> Entry<TestConfig> {
    txn_entry(index, Txn::put(format!("k/{index:010}"), index.to_be_bytes().to_vec()))
}

/// One acknowledgement printed by the child, printed only after the store confirmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ack {
    /// `append` called its flush callback for entries up to this index.
    Log(u64),
    /// `apply` returned for entries up to this index.
    Applied(u64),
    /// `save_vote` returned for a vote with this term.
    Vote(u64),
    /// `purge` returned for this index.
    Purged(u64),
}

impl Ack {
    fn line(self) -> String {
        match self {
            Ack::Log(i) => format!("LOG {i}"),
            Ack::Applied(i) => format!("APPLIED {i}"),
            Ack::Vote(t) => format!("VOTE {t}"),
            Ack::Purged(i) => format!("PURGED {i}"),
        }
    }

    fn parse(line: &str) -> Option<Ack> {
        let (kind, n) = line.split_once(' ')?;
        let n: u64 = n.parse().ok()?;
        Some(match kind {
            "LOG" => Ack::Log(n),
            "APPLIED" => Ack::Applied(n),
            "VOTE" => Ack::Vote(n),
            "PURGED" => Ack::Purged(n),
            _ => return None,
        })
    }
}

fn say(ack: Ack) {
    let mut out = std::io::stdout().lock();
    // The parent treats a line as acknowledged once it reads it, so flush each one.
    writeln!(out, "{}", ack.line()).unwrap();
    out.flush().unwrap();
}

/// The child half. Does nothing unless started by [`crash_kill_reopen`].
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    // Die with the parent test, whatever happens to it.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    let seed: u64 = std::env::var(CHILD_SEED_ENV).unwrap().parse().unwrap();
    // libtest has printed "test crash::crash_child ... " without a newline: end that line.
    println!();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(child(PathBuf::from(dir), StdRng::seed_from_u64(seed)));
}

async fn child(dir: PathBuf, mut rng: StdRng) {
    let started = Instant::now();
    let (mut log, mut sm) = open_store(&dir).unwrap();
    let reader = sm.reader();
    let mut term = log.read_vote().await.unwrap().map_or(0, |v| v.leader_id.term);
    let state = log.get_log_state().await.unwrap();
    let mut next = state.last_log_id.map_or(1, |id| id.index + 1);

    // Apply what is logged but not applied yet, as openraft does after a restart.
    let applied = reader.applied_index();
    if applied + 1 < next {
        let pending = log.try_get_log_entries(applied + 1..next).await.unwrap();
        assert_eq!(pending.len() as u64, next - applied - 1, "log entries to re-apply are missing");
        sm.apply(pending).await.unwrap();
        say(Ack::Applied(next - 1));
    }

    while started.elapsed() < CHILD_LIFETIME {
        if rng.random_ratio(1, 6) {
            term += 1;
            log.save_vote(&Vote::new(term, 1)).await.unwrap();
            say(Ack::Vote(term));
        }
        let n = rng.random_range(1..=4);
        let batch: Vec<_> = (next..next + n).map(entry_for).collect();
        // Waits for the `LogFlushed` callback, i.e. for the flush that covers the batch.
        log.blocking_append(batch.clone()).await.unwrap();
        next += n;
        say(Ack::Log(next - 1));
        sm.apply(batch).await.unwrap();
        say(Ack::Applied(next - 1));
        if rng.random_ratio(1, 15) && next > 30 {
            // Purge applied entries only, keeping a tail, as openraft does.
            let upto = next - 1 - rng.random_range(0..20);
            log.purge(log_id(1, upto)).await.unwrap();
            say(Ack::Purged(upto));
        }
    }
}

/// The highest acknowledgement of each kind seen so far, across all children.
#[derive(Debug, Default)]
struct Acked {
    log: u64,
    applied: u64,
    vote: u64,
    purged: u64,
}

impl Acked {
    fn record(&mut self, ack: Ack) {
        match ack {
            Ack::Log(i) => self.log = self.log.max(i),
            Ack::Applied(i) => self.applied = self.applied.max(i),
            Ack::Vote(t) => self.vote = self.vote.max(t),
            Ack::Purged(i) => self.purged = self.purged.max(i),
        }
    }
}

/// A running child; killed and reaped if the test panics.
struct ChildGuard(Child);

impl ChildGuard {
    fn kill(&mut self) {
        let pid = self.0.id() as libc::pid_t;
        // SIGKILL: no destructor, no flush, no chance to finish anything.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.kill();
        }
    }
}

/// Forwards complete lines (a line cut short by the kill is not an acknowledgement).
fn spawn_line_reader(stdout: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line.ends_with('\n') => {
                    if tx.send(line.trim_end().to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => return,
            }
        }
    });
    rx
}

#[test]
fn crash_kill_reopen() {
    let seed: u64 = match std::env::var(SEED_ENV) {
        Ok(s) => s.parse().expect("STEWARD_CRASH_SEED must be a u64"),
        Err(_) => rand::random(),
    };
    println!("crash test seed: {seed} (replay with {SEED_ENV}={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();

    let mut acked = Acked::default();
    for round in 0..KILLS {
        let stderr_path = tmp.path().join(format!("child-{round}.stderr"));
        let mut child = ChildGuard(
            Command::new(&exe)
                .args(["--exact", "crash::crash_child", "--nocapture", "--test-threads=1"])
                .env(CHILD_DIR_ENV, &store_dir)
                .env(CHILD_SEED_ENV, rng.random::<u64>().to_string())
                .stdout(Stdio::piped())
                .stderr(File::create(&stderr_path).unwrap())
                .spawn()
                .unwrap(),
        );
        let lines = spawn_line_reader(child.0.stdout.take().unwrap());
        let fail = |what: &str| -> ! {
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("seed {seed}, round {round}: {what}\nchild stderr:\n{stderr}");
        };

        // Kill after a random number of acknowledgements, then either a random short delay
        // (kills land anywhere in the append / flush / apply / vote / purge cycle) or, in
        // some rounds, right after the next acknowledgement of one kind, which is when an
        // acknowledgement given before its flush would be lost. Zero acknowledgements with a
        // longer delay kills the child while it starts up and recovers the store.
        let target = rng.random_range(0..=100u32);
        let then_kill_after: Option<fn(&Ack) -> bool> = match rng.random_range(0..8) {
            0 => Some(|a| matches!(a, Ack::Vote(_))),
            1 => Some(|a| matches!(a, Ack::Log(_))),
            2 => Some(|a| matches!(a, Ack::Applied(_))),
            3 => Some(|a| matches!(a, Ack::Purged(_))),
            _ => None,
        };
        let delay_us = match (target, then_kill_after) {
            (_, Some(_)) => 0,
            (0, None) => rng.random_range(0..80_000),
            _ => rng.random_range(0..2_000),
        };
        let (mut seen, mut last) = (0, None);
        loop {
            let done = match then_kill_after {
                None => seen >= target,
                Some(kind) => seen > target && last.as_ref().is_some_and(kind),
            };
            if done {
                break;
            }
            last = match lines.recv_timeout(STALL) {
                Ok(line) => Ack::parse(&line),
                Err(mpsc::RecvTimeoutError::Timeout) => fail("the child stopped acknowledging"),
                Err(mpsc::RecvTimeoutError::Disconnected) => fail("the child exited on its own"),
            };
            if let Some(ack) = last {
                acked.record(ack);
                seen += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(delay_us));
        child.kill();
        // Whatever it printed before dying was acknowledged too.
        for line in lines.iter() {
            if let Some(ack) = Ack::parse(&line) {
                acked.record(ack);
            }
        }

        if let Err(e) = verify(&store_dir, &acked) {
            fail(&format!("after the kill: {e}\nacknowledged: {acked:?}"));
        }
    }
    println!(
        "crash test: {KILLS} kills in {:.1?}; acknowledged up to log {}, applied {}, vote {}, purge {}",
        started.elapsed(),
        acked.log,
        acked.applied,
        acked.vote,
        acked.purged
    );
    assert!(acked.log > 0, "no entry was ever acknowledged");
}

/// Reopens the store and checks it against what was acknowledged; closes it again.
fn verify(dir: &Path, acked: &Acked) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (mut log, mut sm) = open_store(dir).map_err(|e| format!("reopen failed: {e}"))?;
        let reader = sm.reader();
        let state = log.get_log_state().await.map_err(|e| e.to_string())?;
        let purged = state.last_purged_log_id.map_or(0, |id| id.index);
        let last = state.last_log_id.map_or(0, |id| id.index);
        if purged < acked.purged {
            return Err(format!("purge up to {} was acknowledged, store says {purged}", acked.purged));
        }
        if last < acked.log {
            return Err(format!("entries up to {} were acknowledged, log ends at {last}", acked.log));
        }

        // No hole: exactly the entries (purged, last], each the one that was written.
        let entries = log.try_get_log_entries(..).await.map_err(|e| e.to_string())?;
        let expected: Vec<u64> = (purged + 1..=last).collect();
        let found: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
        if found != expected {
            return Err(format!("log holds {found:?}, expected {expected:?}"));
        }
        if let Some(bad) = entries.iter().find(|e| **e != entry_for(e.log_id.index)) {
            return Err(format!("entry {} holds {bad:?}", bad.log_id.index));
        }

        let vote = log.read_vote().await.map_err(|e| e.to_string())?;
        let term = vote.map_or(0, |v| v.leader_id.term);
        if term < acked.vote {
            return Err(format!("vote of term {} was acknowledged, store has {vote:?}", acked.vote));
        }

        // Applied state: never ahead of the log, data consistent with it, and nothing that was
        // applied is lost — what the state machine lacks is still in the log to re-apply (the
        // state machine is not flushed on its own; the log is the durable record).
        let applied = reader.applied_index();
        let (applied_id, _) = sm.applied_state().await.map_err(|e| e.to_string())?;
        if applied_id.map_or(0, |id| id.index) != applied {
            return Err(format!("applied watch {applied} disagrees with {applied_id:?}"));
        }
        if applied > last {
            return Err(format!("applied {applied} is ahead of the log, which ends at {last}"));
        }
        if applied < purged {
            return Err(format!(
                "applied {applied} is behind the purged log ({purged}): applied entries were lost (acknowledged applied {})",
                acked.applied
            ));
        }
        let keys = reader.range("k/").map_err(|e| e.to_string())?;
        if keys.len() as u64 != applied {
            return Err(format!("{} keys for {applied} applied entries", keys.len()));
        }
        if let Some((key, kv)) = keys.last() {
            if kv.mod_revision != applied || kv.value != applied.to_be_bytes() {
                return Err(format!("last key {key} is {kv:?}, applied is {applied}"));
            }
        }
        Ok(())
    })
}
