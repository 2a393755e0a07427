//! The JSON shape of Rundeck's `GET /api/N/execution/{id}/output`.
//!
//! Rundeck sends `id`, `offset` and `lastModified` as strings and the rest as JSON numbers and
//! booleans; clients (rundeck-cli, the web UI) read them that way, so this does too. What the
//! log store cannot know about the execution (its state, whether it has ended, its duration)
//! comes from the replicated execution record through [`ExecInfo`].

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::entry::LogEntry;
use super::reader::OutputChunk;

/// What the execution record says, for the output API.
#[derive(Debug, Clone, Default)]
pub struct ExecInfo {
    /// The execution has ended (Rundeck's `execCompleted`).
    pub completed: bool,
    /// Rundeck's `execState`: `running`, `succeeded`, `failed`, `aborted`, `timedout`, ...
    pub state: String,
    pub has_failed_nodes: bool,
    /// Milliseconds the execution ran (so far).
    pub duration_ms: i64,
    /// Set in cluster mode: whether the execution runs on another member, and on which.
    pub cluster_exec: Option<bool>,
    pub server_node_uuid: Option<String>,
}

/// Rundeck's `filter` object, when the output was asked for one node or step.
#[derive(Debug, Clone, Serialize)]
pub struct OutputFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stepctx: Option<String>,
}

/// One entry as the output API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OutputEntry {
    /// `HH:MM:SS`, UTC.
    pub time: String,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub absolute_time: String,
    pub level: &'static str,
    pub log: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stepctx: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl From<LogEntry> for OutputEntry {
    fn from(e: LogEntry) -> Self {
        OutputEntry {
            time: e.time.format("%H:%M:%S").to_string(),
            absolute_time: e.time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            level: e.level.as_str(),
            log: e.log,
            user: e.user,
            stepctx: e.step_ctx,
            node: e.node,
        }
    }
}

/// The output API's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputResponse {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub unmodified: bool,
    /// No output exists (yet).
    pub empty: bool,
    /// The offset to send with the next request.
    pub offset: String,
    /// The log is complete and this answer reaches its end: stop polling.
    pub completed: bool,
    pub exec_completed: bool,
    pub has_failed_nodes: bool,
    pub exec_state: String,
    /// ms since the epoch of the last change of the log, as a string ("0": none yet).
    pub last_modified: String,
    pub exec_duration: i64,
    pub percent_loaded: f64,
    pub total_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<OutputFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_exec: Option<bool>,
    #[serde(rename = "serverNodeUUID", skip_serializing_if = "Option::is_none")]
    pub server_node_uuid: Option<String>,
    pub compacted: bool,
    pub entries: Vec<OutputEntry>,
}

impl OutputResponse {
    /// The answer for `chunk`, read from execution `exec_id`'s log, described by `exec`.
    pub fn new(exec_id: u64, chunk: OutputChunk, exec: &ExecInfo) -> OutputResponse {
        let percent_loaded =
            if chunk.total_size == 0 { 100.0 } else { chunk.offset as f64 * 100.0 / chunk.total_size as f64 };
        let completed = chunk.completed();
        OutputResponse {
            id: exec_id.to_string(),
            message: None,
            error: None,
            unmodified: chunk.unmodified,
            empty: chunk.total_size == 0,
            offset: chunk.offset.to_string(),
            completed,
            exec_completed: exec.completed,
            has_failed_nodes: exec.has_failed_nodes,
            exec_state: exec.state.clone(),
            last_modified: chunk.last_modified.as_ref().map_or(0, DateTime::<Utc>::timestamp_millis).to_string(),
            exec_duration: exec.duration_ms,
            percent_loaded,
            total_size: chunk.total_size,
            filter: None,
            cluster_exec: exec.cluster_exec,
            server_node_uuid: exec.server_node_uuid.clone(),
            compacted: false,
            entries: chunk.entries.into_iter().map(OutputEntry::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogLevel;
    use serde_json::json;

    #[test]
    fn the_answer_has_rundecks_field_names_and_types() {
        let time = DateTime::from_timestamp_millis(1_700_000_001_500).unwrap();
        let chunk = OutputChunk {
            entries: vec![LogEntry {
                time,
                level: LogLevel::Normal,
                log: "hello".into(),
                step_ctx: Some("1".into()),
                node: Some("m1".into()),
                user: Some("admin".into()),
            }],
            offset: 80,
            total_size: 160,
            finished: false,
            last_modified: Some(time),
            unmodified: false,
        };
        let exec = ExecInfo {
            completed: false,
            state: "running".into(),
            duration_ms: 1200,
            server_node_uuid: Some("u-1".into()),
            cluster_exec: Some(true),
            ..Default::default()
        };
        let v = serde_json::to_value(OutputResponse::new(7, chunk, &exec)).unwrap();
        assert_eq!(v["id"], json!("7"));
        assert_eq!(v["offset"], json!("80"));
        assert_eq!(v["totalSize"], json!(160));
        assert_eq!(v["completed"], json!(false));
        assert_eq!(v["execCompleted"], json!(false));
        assert_eq!(v["execState"], json!("running"));
        assert_eq!(v["lastModified"], json!("1700000001500"));
        assert_eq!(v["percentLoaded"], json!(50.0));
        assert_eq!(v["serverNodeUUID"], json!("u-1"));
        assert_eq!(v["clusterExec"], json!(true));
        let e = &v["entries"][0];
        assert_eq!(e["time"], json!("22:13:21"));
        assert_eq!(e["absolute_time"], json!("2023-11-14T22:13:21Z"));
        assert_eq!(e["level"], json!("NORMAL"));
        assert_eq!(e["log"], json!("hello"));
        assert_eq!(e["stepctx"], json!("1"));
        assert_eq!(e["node"], json!("m1"));
        assert_eq!(e["user"], json!("admin"));
    }
}
