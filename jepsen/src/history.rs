//! The history: every operation's invocation and completion, in Jepsen's shape.
//!
//! An operation is recorded twice: an `invoke` when a client starts it and an `ok`, `fail` or
//! `info` when it ends. `fail` means it certainly did not take effect; `info` means the outcome
//! is unknown (a timeout, a 5xx after the request may have reached a leader), so checkers treat
//! it as possibly applied at any time after its invocation. As in Jepsen, a client process
//! whose operation ended in `info` continues under a fresh process id, so a process never has
//! two operations open and pairs are found by process alone.
//!
//! Times are nanoseconds since the run started, read from the harness's monotonic clock, never
//! from a member's (possibly faked) wall clock.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Kind of a history entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// Who performed an operation: a client process (a number) or a named actor such as the
/// nemesis.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    Client(u64),
    Named(String),
}

impl Process {
    pub fn nemesis() -> Process {
        Process::Named("nemesis".into())
    }
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history (0, 1, 2, …).
    pub index: u64,
    /// Nanoseconds since the run started (the harness's monotonic clock).
    pub time: u64,
    #[serde(rename = "type")]
    pub kind: OpType,
    pub process: Process,
    /// The workload the operation belongs to (`register`, `set`, `cluster`, `auth`, `nemesis`).
    pub workload: String,
    /// The function: `read`, `write`, `add`, `delete`, `sample`, `probe`, `start`, `stop`, …
    pub f: String,
    /// The independent key the operation is about, when the workload has keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Invocation: the argument (`null` for reads). Completion: the result.
    #[serde(default)]
    pub value: Value,
    /// The member the request was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why an operation failed or is indeterminate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Op {
    /// A bare entry, for building histories by hand (tests) and by the recorder.
    pub fn new(kind: OpType, process: Process, workload: &str, f: &str) -> Op {
        Op {
            index: 0,
            time: 0,
            kind,
            process,
            workload: workload.into(),
            f: f.into(),
            key: None,
            value: Value::Null,
            node: None,
            error: None,
        }
    }

    pub fn key(mut self, key: impl Into<String>) -> Op {
        self.key = Some(key.into());
        self
    }

    pub fn value(mut self, value: impl Into<Value>) -> Op {
        self.value = value.into();
        self
    }

    pub fn node(mut self, node: impl Into<String>) -> Op {
        self.node = Some(node.into());
        self
    }

    pub fn error(mut self, error: impl Into<String>) -> Op {
        self.error = Some(error.into());
        self
    }

    pub fn at(mut self, time: u64) -> Op {
        self.time = time;
        self
    }
}

/// An operation with its completion, if it has one.
#[derive(Debug, Clone, Copy)]
pub struct Pair<'a> {
    pub invoke: &'a Op,
    pub done: Option<&'a Op>,
}

impl<'a> Pair<'a> {
    /// `Ok`, `Fail` or `Info`; an operation that never completed is `Info`.
    pub fn outcome(&self) -> OpType {
        self.done.map(|d| d.kind).unwrap_or(OpType::Info)
    }

    pub fn start(&self) -> u64 {
        self.invoke.time
    }

    /// Completion time of an operation known to have ended (`ok` or `fail`); `None` when its
    /// effect may still happen later.
    pub fn end(&self) -> Option<u64> {
        match self.outcome() {
            OpType::Ok | OpType::Fail => self.done.map(|d| d.time),
            _ => None,
        }
    }

    /// The completion's value (what a read returned).
    pub fn result(&self) -> &'a Value {
        static NULL: Value = Value::Null;
        self.done.map(|d| &d.value).unwrap_or(&NULL)
    }
}

/// Pairs invocations with their completions, by process. Entries that are not invocations
/// and have no open invocation are ignored.
pub fn pairs(ops: &[Op]) -> Vec<Pair<'_>> {
    let mut open: std::collections::HashMap<&Process, usize> = std::collections::HashMap::new();
    let mut out: Vec<Pair<'_>> = Vec::new();
    for op in ops {
        if op.kind == OpType::Invoke {
            open.insert(&op.process, out.len());
            out.push(Pair { invoke: op, done: None });
        } else if let Some(i) = open.remove(&op.process) {
            out[i].done = Some(op);
        }
    }
    out
}

/// Collects the history in memory and streams it to `history.jsonl` as it grows, so a run that
/// is interrupted still leaves what it recorded.
pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    ops: Vec<Op>,
    out: Option<BufWriter<File>>,
}

impl Recorder {
    pub fn new(file: Option<&Path>) -> std::io::Result<Recorder> {
        let out = match file {
            Some(p) => Some(BufWriter::new(File::create(p)?)),
            None => None,
        };
        Ok(Recorder { start: Instant::now(), inner: Mutex::new(Inner { ops: Vec::new(), out }) })
    }

    /// Nanoseconds since the run started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records `op`, stamping its index and time. Returns the index.
    pub fn record(&self, mut op: Op) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // The time is read under the lock so that indices and times agree in order.
        op.time = self.now();
        op.index = inner.ops.len() as u64;
        if let Some(out) = inner.out.as_mut() {
            // A full disk must not stop the run; the in-memory history is what the checkers use.
            let _ = serde_json::to_writer(&mut *out, &op).map(|_| out.write_all(b"\n"));
        }
        let index = op.index;
        inner.ops.push(op);
        index
    }

    /// A copy of the history so far.
    pub fn snapshot(&self) -> Vec<Op> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).ops.clone()
    }

    /// Flushes the history file.
    pub fn flush(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(out) = inner.out.as_mut() {
            let _ = out.flush();
        }
    }
}

/// Reads a `history.jsonl` file back.
pub fn load(path: &Path) -> anyhow::Result<Vec<Op>> {
    let text = std::fs::read_to_string(path)?;
    let mut ops = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        ops.push(serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_follow_processes_and_leave_crashed_operations_open() {
        let h = vec![
            Op::new(OpType::Invoke, Process::Client(1), "register", "write").value(1),
            Op::new(OpType::Invoke, Process::Client(2), "register", "read"),
            Op::new(OpType::Ok, Process::Client(2), "register", "read").value(1),
            Op::new(OpType::Info, Process::Client(1), "register", "write").value(1),
            Op::new(OpType::Invoke, Process::Client(3), "register", "read"),
        ];
        let p = pairs(&h);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].outcome(), OpType::Info);
        assert_eq!(p[1].outcome(), OpType::Ok);
        assert_eq!(p[1].result(), &Value::from(1));
        assert!(p[2].done.is_none());
        assert_eq!(p[2].outcome(), OpType::Info);
    }

    #[test]
    fn history_lines_round_trip() {
        let dir = std::env::temp_dir().join(format!("jepsen-hist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("history.jsonl");
        let r = Recorder::new(Some(&file)).unwrap();
        r.record(Op::new(OpType::Invoke, Process::Client(7), "set", "add").value("s-1").node("n2"));
        r.record(Op::new(OpType::Info, Process::nemesis(), "nemesis", "start").value(serde_json::json!({"k": 1})));
        r.flush();
        let back = load(&file).unwrap();
        assert_eq!(back, r.snapshot());
        assert_eq!(back[1].process, Process::nemesis());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
