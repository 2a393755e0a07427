//! Checkers: pure functions from a history (and, for some, facts gathered at the end of a run)
//! to a [`Verdict`]. They need no root and no cluster, so they are tested on hand-written
//! histories.
//!
//! # Layout
//! - [`linear`]: a Wing–Gong / Lowe / Porcupine linearizability search over any [`linear::Model`],
//!   and the per-key register checker built on it.
//! - [`set`]: acknowledged adds are present, acknowledged deletes stay deleted, no stale reads.
//! - [`cluster`]: one leader per term, monotonic terms and applied indexes, the same state on
//!   every member, removed members refuse reads, recovery after the final heal, no crashes.
//! - [`auth`]: no answer without a valid token; secrets never appear in answers or files.
//! - [`schedule`]: each due slot of a scheduled job is fired once or recorded missed or
//!   skipped (steward's fire records) within a bound, never twice, never early, never
//!   overlapping, never for a deleted job.

pub mod auth;
pub mod cluster;
pub mod linear;
pub mod schedule;
pub mod set;

use serde::{Serialize, Serializer};
use serde_json::Value;

/// A checker's answer, as Jepsen's `:valid?`: `true`, `false` or `"unknown"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Valid,
    Invalid,
    /// The checker could not decide (a search ran out of budget, final reads never succeeded).
    Unknown,
}

impl Validity {
    /// The validity of several results: invalid wins, then unknown.
    pub fn all(it: impl IntoIterator<Item = Validity>) -> Validity {
        let mut out = Validity::Valid;
        for v in it {
            match v {
                Validity::Invalid => return Validity::Invalid,
                Validity::Unknown => out = Validity::Unknown,
                Validity::Valid => {}
            }
        }
        out
    }
}

impl Serialize for Validity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::Valid => s.serialize_bool(true),
            Validity::Invalid => s.serialize_bool(false),
            Validity::Unknown => s.serialize_str("unknown"),
        }
    }
}

/// What one checker found.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub checker: String,
    pub valid: Validity,
    /// One line for people.
    pub summary: String,
    /// Counts and counterexamples, checker-specific.
    pub details: Value,
}

impl Verdict {
    pub fn new(checker: &str, valid: Validity, summary: impl Into<String>, details: Value) -> Verdict {
        Verdict { checker: checker.into(), valid, summary: summary.into(), details }
    }
}

/// Keeps at most `n` examples of a kind of anomaly, and counts them all.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Examples {
    pub count: usize,
    pub examples: Vec<Value>,
}

impl Examples {
    pub const KEEP: usize = 20;

    pub fn push(&mut self, v: Value) {
        self.count += 1;
        if self.examples.len() < Self::KEEP {
            self.examples.push(v);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Seconds, for reports, from history nanoseconds.
pub fn secs(ns: u64) -> f64 {
    (ns as f64 / 1e9 * 1000.0).round() / 1000.0
}
