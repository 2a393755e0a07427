//! One log entry, the sink the executor hands entries to, and how an entry is stored.
//!
//! Stored form: one JSON object per line (UTF-8, `\n`-terminated), with short keys because
//! every line of every execution carries them:
//!
//! ```text
//! {"t":1700000000123,"l":"NORMAL","s":"1","n":"member-a","u":"admin","m":"hello"}
//! ```
//!
//! `t` is milliseconds since the Unix epoch (UTC); `s`, `n` and `u` are left out when absent.
//! JSON escapes control characters, so a line of output never spans two stored lines: the byte
//! offsets of the output API always land on entry boundaries.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Rundeck's log levels, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Error,
    Warn,
    Normal,
    Verbose,
    Debug,
}

impl LogLevel {
    /// The name Rundeck's API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "ERROR",
            LogLevel::Warn => "WARN",
            LogLevel::Normal => "NORMAL",
            LogLevel::Verbose => "VERBOSE",
            LogLevel::Debug => "DEBUG",
        }
    }
}

/// One line of an execution's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When the line was read from the process (or written by steward).
    pub time: DateTime<Utc>,
    /// `NORMAL` for stdout, `ERROR` for stderr; steward's own messages use what fits.
    pub level: LogLevel,
    /// The text, without the line terminator.
    pub log: String,
    /// Rundeck's step context: `"1"`, `"2e"` (the error handler of step 2), `"3/1"` (step 1 of
    /// the job referenced by step 3).
    pub step_ctx: Option<String>,
    /// The node the line comes from.
    pub node: Option<String>,
    /// The user the execution runs as.
    pub user: Option<String>,
}

impl LogEntry {
    /// An entry stamped now.
    pub fn now(level: LogLevel, log: impl Into<String>) -> LogEntry {
        LogEntry { time: Utc::now(), level, log: log.into(), step_ctx: None, node: None, user: None }
    }
}

/// Where an execution's output goes. The log store's [`LogWriter`](super::LogWriter) is one;
/// tests collect into memory.
pub trait LogSink: Send + Sync {
    /// Takes one entry. Must not block: it is called by the tasks that read a step's output,
    /// and a slow sink would stall the step's pipes.
    fn emit(&self, entry: LogEntry);
}

impl<T: LogSink + ?Sized> LogSink for Arc<T> {
    fn emit(&self, entry: LogEntry) {
        (**self).emit(entry)
    }
}

impl<T: LogSink + ?Sized> LogSink for &T {
    fn emit(&self, entry: LogEntry) {
        (**self).emit(entry)
    }
}

#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    t: i64,
    l: LogLevel,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    s: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    n: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    u: Option<Cow<'a, str>>,
    #[serde(borrow)]
    m: Cow<'a, str>,
}

/// Appends the stored form of `entry`, newline included, to `out`.
pub(crate) fn encode(entry: &LogEntry, out: &mut Vec<u8>) {
    let stored = Stored {
        t: entry.time.timestamp_millis(),
        l: entry.level,
        s: entry.step_ctx.as_deref().map(Cow::Borrowed),
        n: entry.node.as_deref().map(Cow::Borrowed),
        u: entry.user.as_deref().map(Cow::Borrowed),
        m: Cow::Borrowed(&entry.log),
    };
    // Serialising a struct of strings and numbers into a Vec cannot fail.
    serde_json::to_writer(&mut *out, &stored).expect("a log entry serialises");
    out.push(b'\n');
}

/// Parses one stored line (without its newline).
pub(crate) fn decode(line: &[u8]) -> Result<LogEntry, String> {
    let s: Stored<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let time = DateTime::from_timestamp_millis(s.t).ok_or_else(|| format!("time {} is out of range", s.t))?;
    Ok(LogEntry {
        time,
        level: s.l,
        log: s.m.into_owned(),
        step_ctx: s.s.map(Cow::into_owned),
        node: s.n.map(Cow::into_owned),
        user: s.u.map(Cow::into_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_stay_on_one_line() {
        let e = LogEntry {
            time: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
            level: LogLevel::Error,
            log: "two\nlines and \"quotes\" and ünïcode".into(),
            step_ctx: Some("2e".into()),
            node: Some("m1".into()),
            user: None,
        };
        let mut out = Vec::new();
        encode(&e, &mut out);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(out.ends_with(b"\n"));
        assert_eq!(decode(&out[..out.len() - 1]).unwrap(), e);
    }
}
