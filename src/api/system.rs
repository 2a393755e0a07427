//! `GET /api/{v}/system/info` in Rundeck's shape, and the load balancer's `GET /health`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::version::{ApiVersion, API_VERSION_MAX};
use super::{base_url, ApiError, ApiResult, AppState};
use crate::auth::Principal;
use crate::cluster::mode::{self, ExecutionMode};

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "epoch": t.timestamp_millis(),
        "unit": "ms",
        "datetime": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

use crate::cluster::heartbeat::load_average;

/// A `kB` field of a /proc status-like file, in bytes.
fn proc_kb(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

fn os_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

pub async fn info(State(state): State<AppState>, _v: ApiVersion) -> Json<Value> {
    let now = chrono::Utc::now();
    let mode = mode::local(&state.member, &state.member.node().uuid);
    let threads = proc_kb("/proc/self/status", "Threads:").map(|b| b / 1024);
    let base = base_url(&state);
    Json(json!({
        "system": {
            "timestamp": timestamp(now),
            "rundeck": {
                "version": env!("CARGO_PKG_VERSION"),
                "build": format!("steward {}", env!("CARGO_PKG_VERSION")),
                "buildGit": "",
                "node": hostname(),
                "base": state.data_dir.display().to_string(),
                "apiversion": API_VERSION_MAX,
                "serverUUID": state.member.node().uuid,
            },
            "executions": { "active": mode == ExecutionMode::Active, "executionMode": mode.as_str() },
            "os": {
                "arch": std::env::consts::ARCH,
                "name": std::env::consts::OS,
                "version": os_version(),
            },
            "jvm": {
                "name": "steward (native)",
                "vendor": "steward",
                "version": env!("CARGO_PKG_VERSION"),
                "implementationVersion": env!("CARGO_PKG_VERSION"),
            },
            "stats": {
                "uptime": {
                    "duration": state.started.elapsed().as_millis() as u64,
                    "unit": "ms",
                    "since": timestamp(state.started_at),
                },
                "cpu": {
                    "loadAverage": { "unit": "percent", "average": load_average() },
                    "processors": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                },
                "memory": {
                    "unit": "byte",
                    "max": proc_kb("/proc/meminfo", "MemTotal:"),
                    "free": proc_kb("/proc/meminfo", "MemAvailable:"),
                    "total": proc_kb("/proc/self/status", "VmRSS:"),
                },
                "scheduler": { "running": state.slots.busy(), "threadPoolSize": state.slots.capacity() },
                "threads": { "active": threads },
            },
            "metrics": { "href": format!("{base}/api/{API_VERSION_MAX}/metrics/metrics"), "contentType": "application/json" },
            "threadDump": { "href": format!("{base}/api/{API_VERSION_MAX}/metrics/threads"), "contentType": "text/plain" },
            "healthcheck": { "href": format!("{base}/health"), "contentType": "application/json" },
            "ping": { "href": format!("{base}/api/{API_VERSION_MAX}/metrics/ping"), "contentType": "text/plain" },
        }
    }))
}

/// 200 while this member knows a leader and has applied what it knows to be committed;
/// 503 otherwise. No token: load balancers call it.
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let m = state.member.raft().metrics().borrow().clone();
    let healthy = state.member.is_healthy();
    let body = json!({
        "healthy": healthy,
        "member": state.member.node().uuid,
        "leader": m.current_leader.is_some(),
        "term": m.current_term,
        // The vote as openraft orders it: by term, then by the candidate's Raft id, then
        // committed over not. Two members may each lead one term (the greater id wins), so
        // "one leader per term" is not a property to watch; a vote going backwards is.
        "vote": {
            "term": m.vote.leader_id().term,
            "node": m.vote.leader_id().node_id.to_string(),
            "committed": m.vote.is_committed(),
        },
        "applied": m.last_applied.map(|l| l.index),
    });
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}

/// A Dropwizard histogram (the shape of Rundeck's metrics) of `samples`.
fn histogram<'a>(samples: impl IntoIterator<Item = &'a i64>) -> Value {
    let mut v: Vec<i64> = samples.into_iter().copied().collect();
    v.sort_unstable();
    let q = |p: f64| -> i64 {
        if v.is_empty() {
            return 0;
        }
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    let mean = if v.is_empty() { 0.0 } else { v.iter().sum::<i64>() as f64 / v.len() as f64 };
    json!({
        "count": v.len(),
        "min": v.first().copied().unwrap_or(0),
        "max": v.last().copied().unwrap_or(0),
        "mean": mean,
        "p50": q(0.50), "p75": q(0.75), "p95": q(0.95), "p98": q(0.98), "p99": q(0.99), "p999": q(0.999),
    })
}

/// `GET /api/{v}/metrics/metrics`: this member's metrics in Dropwizard's JSON shape, as Rundeck
/// serves them. `steward.scheduler.fireLateness` is the time from a slot to the commit of its
/// fire (ms, negative for a slot decided ahead), over the most recent fires;
/// `steward.executions.startLateness` the time from a slot to the start of its run's steps on
/// this member (after any wait for `member.capacity`).
pub async fn metrics(State(state): State<AppState>, _v: ApiVersion) -> Json<Value> {
    let stats = state.fire_stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let rss = proc_kb("/proc/self/status", "VmRSS:");
    let peak = proc_kb("/proc/self/status", "VmHWM:");
    let m = state.member.raft().metrics().borrow().clone();
    Json(json!({
        "version": "4.0.0",
        "gauges": {
            "steward.memory.rss": { "value": rss },
            "steward.memory.peakRss": { "value": peak },
            "steward.raft.term": { "value": m.current_term },
            "steward.raft.lastApplied": { "value": m.last_applied.map(|l| l.index) },
            "steward.raft.lastLogIndex": { "value": m.last_log_index },
            "steward.executions.running": { "value": state.slots.busy() },
            "steward.executions.waiting": { "value": state.slots.waiting_count() },
            "steward.executions.capacity": { "value": state.slots.capacity() },
        },
        "counters": {
            "steward.scheduler.fired": { "count": stats.fired },
            "steward.scheduler.missed": { "count": stats.missed },
            "steward.scheduler.skipped": { "count": stats.skipped },
            "steward.scheduler.alreadyRecorded": { "count": stats.already_recorded },
        },
        "histograms": {
            "steward.scheduler.fireLateness": histogram(stats.lateness_ms.iter()),
            "steward.executions.startLateness": histogram(state.slots.start_lateness().iter()),
        },
        "meters": {},
        "timers": {},
    }))
}

/// Sets the execution mode of member `uuid` and answers in Rundeck's shape.
async fn set_mode(state: &AppState, principal: &Principal, uuid: &str, to: ExecutionMode) -> ApiResult<Json<Value>> {
    let known = crate::cluster::heartbeat::nodes(&state.member).iter().any(|(_, n)| n.uuid == uuid);
    if !known {
        return Err(ApiError::not_found(format!("no cluster member with uuid {uuid}")));
    }
    mode::set(&state.member, uuid, to, &principal.user).await?;
    tracing::info!(member = %uuid, mode = to.as_str(), user = %principal.user, "execution mode changed");
    Ok(Json(json!({ "executionMode": to.as_str() })))
}

/// `POST /api/{v}/system/executions/enable`: this member runs executions and owns schedules.
pub async fn enable_executions(
    State(state): State<AppState>,
    _v: ApiVersion,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let me = state.member.node().uuid.clone();
    set_mode(&state, &principal, &me, ExecutionMode::Active).await
}

/// `POST /api/{v}/system/executions/disable`: this member turns passive; its jobs move to
/// active members and it starts no execution.
pub async fn disable_executions(
    State(state): State<AppState>,
    _v: ApiVersion,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let me = state.member.node().uuid.clone();
    set_mode(&state, &principal, &me, ExecutionMode::Passive).await
}

#[derive(Debug, serde::Deserialize)]
pub struct UuidParam {
    pub uuid: Option<String>,
}

/// Rundeck Enterprise's `POST /api/{v}/enterprise/cluster/executions/enable|disable?uuid=`:
/// the same for any member (this one without `uuid`).
async fn cluster_mode(
    state: AppState,
    principal: Principal,
    q: UuidParam,
    to: ExecutionMode,
) -> ApiResult<Json<Value>> {
    let uuid = q.uuid.unwrap_or_else(|| state.member.node().uuid.clone());
    let Json(mut v) = set_mode(&state, &principal, &uuid, to).await?;
    v["uuid"] = json!(uuid);
    v["status"] = json!("complete");
    Ok(Json(v))
}

pub async fn cluster_enable_executions(
    State(state): State<AppState>,
    _v: ApiVersion,
    Extension(principal): Extension<Principal>,
    Query(q): Query<UuidParam>,
) -> ApiResult<Json<Value>> {
    cluster_mode(state, principal, q, ExecutionMode::Active).await
}

pub async fn cluster_disable_executions(
    State(state): State<AppState>,
    _v: ApiVersion,
    Extension(principal): Extension<Principal>,
    Query(q): Query<UuidParam>,
) -> ApiResult<Json<Value>> {
    cluster_mode(state, principal, q, ExecutionMode::Passive).await
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusParams {
    pub passive_as503: Option<bool>,
}

/// `GET /api/{v}/system/executions/status`: 200 with the mode; when passive, 503 with
/// `passiveAs503=true` (and always before API 36, as Rundeck).
pub async fn executions_status(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Query(q): Query<StatusParams>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let m = mode::get(&state.member, &state.member.node().uuid).await?;
    let as_503 = q.passive_as503.unwrap_or(v < 36);
    let status = if m == ExecutionMode::Passive && as_503 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    Ok((status, Json(json!({ "executionMode": m.as_str() }))))
}
