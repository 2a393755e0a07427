//! A test-only fault layer for member-to-member calls: delay with jitter, and duplication of
//! Raft RPCs, for the chaos harness (`jepsen/`), whose kernel has no `tc netem`.
//!
//! It is inert unless the environment variable [`ENV`] names a file when the member starts.
//! Without it, [`NetFaults::from_env`] answers `None` and the transport checks one `Option` per
//! call and does nothing else. With it, the file is re-read at most every
//! [`REREAD_EVERY`] (like libfaketime's timestamp file), so the harness changes faults while
//! the member runs. The file holds JSON (an empty file, `{}` or a missing file mean no fault):
//!
//! ```json
//! { "delay_ms": 40, "jitter_ms": 80, "duplicate_pct": 20, "to": ["198.18.0.2:4441"] }
//! ```
//!
//! - every call to a peer in `to` (every peer when `to` is empty) waits `delay_ms` plus a
//!   uniform `0..=jitter_ms` before it is sent; calls in flight together are reordered by the
//!   jitter;
//! - a Raft RPC (AppendEntries, Vote) is sent a second time, `duplicate_pct` percent of the
//!   time, after its own random delay, and the copy's answer is dropped: a late copy is a stale,
//!   reordered request. Raft's RPCs are idempotent by design. The `Cluster` service's calls
//!   (a forwarded client `Write`, `Join`, `Leave`, `ReadIndex`, `Status`) are delayed but never
//!   duplicated: a forwarded write is a client request, and steward never repeats one it cannot
//!   prove unsent.
//!
//! Snapshot transfers are delayed, never duplicated.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Deserialize;

/// Names the fault file. Only the chaos harness sets it.
pub const ENV: &str = "STEWARD_TEST_NET_FAULTS";

/// How often the file is read again, at most.
pub const REREAD_EVERY: Duration = Duration::from_millis(200);

/// What the fault file asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSpec {
    pub delay_ms: u64,
    pub jitter_ms: u64,
    /// 0 to 100.
    pub duplicate_pct: u32,
    /// Raft addresses (`host:port`) of the peers whose calls are affected; empty: all.
    pub to: Vec<String>,
}

impl FaultSpec {
    /// Parses the file's content; blank means no fault.
    pub fn parse(text: &str) -> Result<FaultSpec, serde_json::Error> {
        if text.trim().is_empty() {
            return Ok(FaultSpec::default());
        }
        serde_json::from_str(text)
    }

    fn applies_to(&self, addr: &str) -> bool {
        self.to.is_empty() || self.to.iter().any(|t| t == addr)
    }
}

/// What to do with one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallPlan {
    /// Wait this long before sending.
    pub delay: Duration,
    /// Send a copy after this long (only for calls that may be duplicated).
    pub duplicate: Option<Duration>,
}

/// The fault file and its last reading.
#[derive(Debug)]
pub struct NetFaults {
    path: PathBuf,
    cached: Mutex<(Option<Instant>, FaultSpec)>,
}

impl NetFaults {
    /// The layer, when [`ENV`] names a file; `None` (no cost) otherwise.
    pub fn from_env() -> Option<Arc<NetFaults>> {
        let path = std::env::var_os(ENV).filter(|p| !p.is_empty())?;
        tracing::warn!(file = %PathBuf::from(&path).display(), "test-only network fault layer enabled ({ENV})");
        Some(Arc::new(NetFaults::new(PathBuf::from(path))))
    }

    pub fn new(path: PathBuf) -> NetFaults {
        NetFaults { path, cached: Mutex::new((None, FaultSpec::default())) }
    }

    /// The faults in force: the file as read at most [`REREAD_EVERY`] ago.
    pub fn current(&self) -> FaultSpec {
        let mut c = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if c.0.is_none_or(|t| t.elapsed() >= REREAD_EVERY) {
            c.0 = Some(Instant::now());
            c.1 = match std::fs::read_to_string(&self.path) {
                Ok(text) => FaultSpec::parse(&text).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "unreadable network fault file; no faults");
                    FaultSpec::default()
                }),
                // No file: no faults.
                Err(_) => FaultSpec::default(),
            };
        }
        c.1.clone()
    }

    /// The plan for one call to `addr`; `duplicable` for idempotent Raft RPCs only.
    pub fn plan(&self, addr: &str, duplicable: bool) -> CallPlan {
        let spec = self.current();
        if !spec.applies_to(addr) {
            return CallPlan::default();
        }
        let mut rng = rand::rng();
        let mut draw = || Duration::from_millis(spec.delay_ms + rng.random_range(0..=spec.jitter_ms));
        let delay = draw();
        let duplicate = (duplicable && spec.duplicate_pct > 0 && rand::rng().random_range(0..100) < spec.duplicate_pct)
            .then(&mut draw);
        CallPlan { delay, duplicate }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_parsed_blank_means_no_fault_and_unknown_fields_are_refused() {
        assert_eq!(FaultSpec::parse("").unwrap(), FaultSpec::default());
        assert_eq!(FaultSpec::parse(" {} \n").unwrap(), FaultSpec::default());
        let s = FaultSpec::parse(r#"{"delay_ms": 5, "jitter_ms": 10, "duplicate_pct": 50, "to": ["a:1"]}"#).unwrap();
        assert_eq!(s, FaultSpec { delay_ms: 5, jitter_ms: 10, duplicate_pct: 50, to: vec!["a:1".into()] });
        assert!(FaultSpec::parse(r#"{"delay": 5}"#).is_err());
    }

    #[test]
    fn plans_follow_the_file_its_targets_and_duplicate_only_what_may_be() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults.json");
        let f = NetFaults::new(path.clone());
        assert_eq!(f.plan("a:1", true), CallPlan::default(), "no file: no fault");

        std::fs::write(&path, r#"{"delay_ms": 20, "jitter_ms": 30, "duplicate_pct": 100, "to": ["a:1"]}"#).unwrap();
        // The first reading was cached; a new one comes at most every REREAD_EVERY.
        std::thread::sleep(REREAD_EVERY + Duration::from_millis(20));
        for _ in 0..50 {
            let p = f.plan("a:1", true);
            assert!((20..=50).contains(&p.delay.as_millis()), "{p:?}");
            let d = p.duplicate.expect("100 % duplication");
            assert!((20..=50).contains(&d.as_millis()), "{p:?}");
            assert_eq!(f.plan("a:1", false).duplicate, None, "a client request is never duplicated");
            assert_eq!(f.plan("b:2", true), CallPlan::default(), "another peer is not affected");
        }

        std::fs::write(&path, "{}").unwrap();
        std::thread::sleep(REREAD_EVERY + Duration::from_millis(20));
        assert_eq!(f.plan("a:1", true), CallPlan::default(), "healed");
    }
}
