//! Executions in Rundeck's JSON shapes (`GET /api/{v}/execution/{id}` and the lists).

use serde_json::{json, Value};

use super::records::{ExecStatus, ExecutionRecord, Trigger};

fn date(ms: i64) -> Value {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    json!({ "unixtime": ms, "date": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true) })
}

/// Rundeck's argument string for a set of option values: `-name value`, quoted when needed.
pub fn arg_string(options: &std::collections::BTreeMap<String, String>) -> String {
    options
        .iter()
        .map(|(k, v)| {
            if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'') {
                format!("-{k} \"{}\"", v.replace('"', "\\\""))
            } else {
                format!("-{k} {v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One execution as Rundeck's API shows it.
pub fn execution_json(base: &str, v: u32, id: u64, e: &ExecutionRecord) -> Value {
    let href = format!("{base}/api/{v}/execution/{id}");
    let job_href = format!("{base}/api/{v}/job/{}", e.job_uuid);
    let execution_type = match (e.trigger, e.scheduled_ms) {
        (Trigger::Schedule, _) => "scheduled",
        (Trigger::User, Some(_)) => "user-scheduled",
        (Trigger::User, None) => "user",
        (Trigger::Retry, _) => "user",
    };
    let mut out = json!({
        "id": id,
        "href": href,
        "permalink": format!("{base}/project/{}/execution/show/{id}", e.project),
        "status": e.status_now().as_str(),
        "project": e.project,
        "executionType": execution_type,
        "user": e.user,
        "serverUUID": e.member,
        "description": if e.job_group.is_empty() { e.job_name.clone() } else { format!("{}/{}", e.job_group, e.job_name) },
        "argstring": if e.arg_string.is_empty() { arg_string(&e.options) } else { e.arg_string.clone() },
        "job": {
            "id": e.job_uuid,
            "name": e.job_name,
            "group": e.job_group,
            "project": e.project,
            "href": job_href,
            "permalink": format!("{base}/project/{}/job/show/{}", e.project, e.job_uuid),
            "options": e.options,
        },
        "retryAttempt": e.attempt,
        "successfulNodes": [],
        "failedNodes": [],
    });
    if let Some(ms) = e.started_ms.or(e.scheduled_ms) {
        out["date-started"] = date(ms);
    }
    if let Some(ms) = e.ended_ms {
        out["date-ended"] = date(ms);
    }
    if let Some(ms) = e.scheduled_ms {
        out["dateScheduled"] = date(ms);
    }
    if let Some(r) = e.retry_of {
        out["retriedExecution"] = json!({ "id": r, "href": format!("{base}/api/{v}/execution/{r}") });
    }
    if let Some(m) = &e.message {
        out["message"] = json!(m);
    }
    if e.status == ExecStatus::Aborted {
        if let Some(a) = &e.abort {
            out["abortedby"] = json!(a.user);
        }
    }
    out
}

/// Rundeck's `executionState` spelling.
pub fn execution_state(s: ExecStatus) -> &'static str {
    match s {
        ExecStatus::Scheduled => "WAITING",
        ExecStatus::Running => "RUNNING",
        ExecStatus::Succeeded => "SUCCEEDED",
        ExecStatus::Failed => "FAILED",
        ExecStatus::Aborted => "ABORTED",
        ExecStatus::Timedout => "TIMEDOUT",
        ExecStatus::Incomplete => "INCOMPLETE",
    }
}
