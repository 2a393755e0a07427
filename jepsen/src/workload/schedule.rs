//! Scheduled jobs: do their slots fire exactly once, on time, never overlapping?
//!
//! At set-up, one job per member is imported *through that member* (a job is owned by the
//! member that created it, so ownership is spread), on 1–2 s Quartz schedules with seconds,
//! some with `multipleExecutions: false` and a step longer than the period. During the run one
//! client keeps creating a short-lived job through a random member and deleting it 6–15 s
//! later, so creates and deletes happen under faults too. Every job's step (bash, in its
//! member's network namespace) reports `start` and `end` of each run, with `RD_JOB_ID`,
//! `RD_JOB_SCHEDULEDEXECUTION`, `RD_JOB_SERVERUUID` and `RD_JOB_EXECID`, to a TCP sink the
//! harness runs in the hub namespace (198.18.0.254); the sink records each report with the
//! harness's wall clock (and the member it came from, by its address). At the end, after the
//! final heal and recovery, steward's list of executions is read once, then every job's fire
//! records (`GET /job/{id}/fires`: what became of each slot, fired, missed or skipped, by whom
//! and when) through a member that answers; a deleted job's records went with it (404).
//! [`crate::checker::schedule`] judges it all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::FutureExt;
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Ctx, Worker, Workload};
use crate::checker::{schedule, Verdict};
use crate::client::{write_outcome, Cred, API};
use crate::history::{Op, OpType, Process, Recorder};
use crate::net::{Host, HUB_HOST, SUBNET};

const PROJECT: &str = "jsched";

/// A kind of job: its schedule, period, whether runs may overlap, and how long its step runs.
struct Kind {
    cron: &'static str,
    interval_ms: u64,
    multiple: bool,
    step_ms: u64,
}

/// One per member at set-up (cycled), and drawn from for the short-lived jobs.
const KINDS: [Kind; 5] = [
    Kind { cron: "*/1 * * * * ? *", interval_ms: 1000, multiple: true, step_ms: 100 },
    Kind { cron: "*/2 * * * * ? *", interval_ms: 2000, multiple: false, step_ms: 500 },
    // Longer than its period: every other slot is skipped, never run beside the running one.
    Kind { cron: "*/1 * * * * ? *", interval_ms: 1000, multiple: false, step_ms: 1500 },
    // Longer than its period, overlapping allowed.
    Kind { cron: "*/2 * * * * ? *", interval_ms: 2000, multiple: true, step_ms: 2500 },
    Kind { cron: "*/1 * * * * ? *", interval_ms: 1000, multiple: false, step_ms: 300 },
];

/// The jobs of `--schedule-burst`: all on the same slots, decided ahead as one burst.
const BURST: Kind = Kind { cron: "*/5 * * * * ? *", interval_ms: 5000, multiple: true, step_ms: 0 };

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The short-lived job of the churn client.
struct Churn {
    id: String,
    born: Instant,
    life: Duration,
}

pub struct ScheduleWorkload {
    /// The takeover bound (the checker adds each job's period).
    bound: Duration,
    require_takeover: bool,
    sink: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    port: AtomicU64,
    churn: Mutex<Option<Churn>>,
    next: AtomicU64,
    /// Every job a create was sent for (even an indeterminate one), for the final reads.
    created: std::sync::Mutex<Vec<String>>,
    /// Jobs of the burst kind created at set-up.
    burst: usize,
}

impl ScheduleWorkload {
    pub fn new(bound: Duration, require_takeover: bool, burst: usize) -> ScheduleWorkload {
        ScheduleWorkload {
            bound,
            require_takeover,
            sink: std::sync::Mutex::new(None),
            port: AtomicU64::new(0),
            churn: Mutex::new(None),
            next: AtomicU64::new(0),
            created: std::sync::Mutex::new(Vec::new()),
            burst,
        }
    }

    /// The step: reports its start and end to the sink over bash's `/dev/tcp`.
    fn script(&self, step_ms: u64) -> String {
        let port = self.port.load(Ordering::Relaxed);
        let [a, b, c] = SUBNET;
        format!(
            "#!/bin/bash\n\
             r() {{ echo \"$1 $RD_JOB_ID ${{RD_JOB_SCHEDULEDEXECUTION:-none}} ${{RD_JOB_SERVERUUID:-none}} $RD_JOB_EXECID\" \
             > /dev/tcp/{a}.{b}.{c}.{HUB_HOST}/{port}; }}\n\
             r start\n\
             sleep {}.{:03}\n\
             r end\n",
            step_ms / 1000,
            step_ms % 1000
        )
    }

    /// Imports a job of `kind` through `host`, recorded as a `create`; answers the job's id
    /// unless the create certainly failed. The uuid is ours, so an indeterminate create still
    /// names the job it may have made.
    async fn create(&self, ctx: &Ctx, w: &mut Worker, host: &Host, kind: &Kind) -> Option<String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:08x}-0000-4000-8000-{:012x}", rand::rng().random::<u32>(), n);
        let job = json!([{
            "name": format!("sj-{n}"),
            "uuid": id,
            "schedule": { "crontab": kind.cron },
            "multipleExecutions": kind.multiple,
            "sequence": { "commands": [{ "script": self.script(kind.step_ms) }] },
        }]);
        let inv = w.invoke(
            ctx,
            "create",
            Some(id.clone()),
            json!({ "id": id, "interval_ms": kind.interval_ms, "multiple_executions": kind.multiple, "wall_ms": wall_ms() }),
            host,
        );
        let res = ctx
            .api
            .request(
                host,
                Method::POST,
                &format!("{API}/project/{PROJECT}/jobs/import"),
                &Cred::Admin,
                Some(&job),
                None,
            )
            .await;
        let done = json!({ "wall_ms": wall_ms() });
        let (kind, err) = match &res {
            Ok(a) if a.ok() => {
                let imported = a.body["succeeded"].as_array().into_iter().flatten().any(|j| j["id"] == json!(id));
                if imported {
                    (OpType::Ok, None)
                } else {
                    (OpType::Fail, Some(format!("not imported: {}", a.body)))
                }
            }
            _ => write_outcome(&res),
        };
        w.complete(ctx, inv, kind, done, err);
        if kind != OpType::Fail {
            self.created.lock().unwrap_or_else(|p| p.into_inner()).push(id.clone());
        }
        (kind != OpType::Fail).then_some(id)
    }

    /// Reads every job's fire records, each from the first member that answers (reads are
    /// linearizable on every member, so any member's answer is the cluster's). A 404 means the
    /// job is gone, and its records with it. Recorded as one `fires` op per job (`ok`, value
    /// `{job, found, fires, wall_ms}`), or an `info` when no member answered in time; a
    /// `fires-read` op first gives the time the reads began, and the members' current uuids.
    async fn read_fires(&self, ctx: &Ctx) {
        let harness = Process::Named("harness".into());
        let mut uuids = serde_json::Map::new();
        for (i, h) in ctx.hosts.iter().enumerate() {
            if let Some(u) = ctx.members.uuid(i).await {
                uuids.insert(u, json!(h.name));
            }
        }
        ctx.recorder.record(
            Op::new(OpType::Info, harness.clone(), "schedule", "fires-read")
                .value(json!({ "wall_ms": wall_ms(), "uuids": uuids })),
        );
        let jobs = self.created.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let deadline = Instant::now() + ctx.final_patience;
        for (n, job) in jobs.iter().enumerate() {
            ctx.recorder.record(Op::new(OpType::Invoke, harness.clone(), "schedule", "fires").key(job.clone()));
            let mut outcome = None;
            let mut last = String::new();
            'read: loop {
                // Start with a different member for each job: one slow member does not hold
                // every read up.
                for k in 0..ctx.hosts.len() {
                    let host = &ctx.hosts[(n + k) % ctx.hosts.len()];
                    let res = ctx
                        .api
                        .request(
                            host,
                            Method::GET,
                            &format!("{API}/job/{job}/fires?max=100000"),
                            &Cred::Admin,
                            None,
                            Some(Duration::from_secs(20)),
                        )
                        .await;
                    match res {
                        Ok(a) if a.ok() => {
                            outcome = Some((host.name.clone(), true, a.body["fires"].clone()));
                            break 'read;
                        }
                        Ok(a) if a.status == 404 => {
                            outcome = Some((host.name.clone(), false, json!([])));
                            break 'read;
                        }
                        Ok(a) => last = format!("{}: {}", host.name, a.error()),
                        Err(e) => last = format!("{}: {e}", host.name),
                    }
                }
                if Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let op = match outcome {
                Some((node, found, fires)) => Op::new(OpType::Ok, harness.clone(), "schedule", "fires")
                    .key(job.clone())
                    .node(node)
                    .value(json!({ "job": job, "found": found, "fires": fires, "wall_ms": wall_ms() })),
                None => Op::new(OpType::Info, harness.clone(), "schedule", "fires")
                    .key(job.clone())
                    .error(format!("no member answered: {last}")),
            };
            ctx.recorder.record(op);
        }
    }

    async fn delete(&self, ctx: &Ctx, w: &mut Worker, host: &Host, id: &str) {
        let inv = w.invoke(ctx, "delete", Some(id.to_string()), json!({ "id": id, "wall_ms": wall_ms() }), host);
        let res = ctx.api.request(host, Method::DELETE, &format!("{API}/job/{id}"), &Cred::Admin, None, None).await;
        let (kind, err) = write_outcome(&res);
        w.complete(ctx, inv, kind, json!({ "wall_ms": wall_ms() }), err);
    }
}

/// Accepts the steps' reports: one line per connection, `start|end JOB SLOT MEMBER EXECID`.
/// The connection's source address names the member whose namespace ran the step, which ties
/// a member uuid to a node (the checker needs it to apply a node's clock offsets to what that
/// uuid recorded).
async fn sink(listener: tokio::net::TcpListener, recorder: Arc<Recorder>, hosts: Vec<Host>) {
    loop {
        let Ok((conn, peer)) = listener.accept().await else { continue };
        let from = hosts.iter().find(|h| std::net::IpAddr::V4(h.ip) == peer.ip()).map(|h| h.name.clone());
        let recorder = recorder.clone();
        tokio::spawn(async move {
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(conn);
            let read = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
            let arrived = wall_ms();
            if !matches!(read, Ok(Ok(n)) if n > 0) {
                return;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [what, job, slot, member, exec] = parts[..] else {
                recorder.record(
                    Op::new(OpType::Info, Process::Named("sink".into()), "schedule", "garbage").value(json!(line)),
                );
                return;
            };
            let slot_ms = chrono::DateTime::parse_from_rfc3339(slot).ok().map(|t| t.timestamp_millis().max(0) as u64);
            let f = if what == "start" { "run-start" } else { "run-end" };
            recorder.record(Op::new(OpType::Info, Process::Named("sink".into()), "schedule", f).value(json!({
                "job": job, "slot_ms": slot_ms, "slot": slot, "member": member, "execution": exec, "wall_ms": arrived,
                "from": from,
            })));
        });
    }
}

impl Workload for ScheduleWorkload {
    fn name(&self) -> &'static str {
        "schedule"
    }

    fn workers(&self) -> usize {
        1
    }

    fn stagger(&self) -> Duration {
        Duration::from_millis(1000)
    }

    fn setup<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            // The harness lives in the hub namespace: members reach this address directly.
            let [a, b, c] = SUBNET;
            let listener = tokio::net::TcpListener::bind(format!("{a}.{b}.{c}.{HUB_HOST}:0")).await?;
            self.port.store(u64::from(listener.local_addr()?.port()), Ordering::Relaxed);
            *self.sink.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(tokio::spawn(sink(listener, ctx.recorder.clone(), ctx.hosts.clone())));
            let mut uuids = serde_json::Map::new();
            for (i, h) in ctx.hosts.iter().enumerate() {
                if let Some(u) = ctx.members.uuid(i).await {
                    uuids.insert(u, json!(h.name));
                }
            }
            ctx.recorder.record(Op::new(OpType::Info, Process::Named("harness".into()), "schedule", "config").value(
                json!({
                    "wall_ms": wall_ms(),
                    "bound_ms": self.bound.as_millis() as u64,
                    "early_tolerance_ms": 200,
                    "require_takeover": self.require_takeover,
                    "nodes": ctx.hosts.iter().map(|h| h.name.clone()).collect::<Vec<_>>(),
                    "sink_port": self.port.load(Ordering::Relaxed),
                    "uuids": uuids,
                }),
            ));
            super::ensure_project(ctx, PROJECT, "jepsen scheduled jobs", 0).await?;
            let mut w = ctx.worker("schedule", usize::MAX - 1, rand::SeedableRng::seed_from_u64(1));
            for (i, host) in ctx.hosts.iter().enumerate() {
                let id = self.create(ctx, &mut w, host, &KINDS[i % KINDS.len()]).await;
                anyhow::ensure!(id.is_some(), "could not create a scheduled job through {}", host.name);
            }
            for _ in 0..self.burst {
                let id = self.create(ctx, &mut w, &ctx.hosts[0], &BURST).await;
                anyhow::ensure!(id.is_some(), "could not create a burst job through {}", ctx.hosts[0].name);
            }
            Ok(())
        }
        .boxed()
    }

    /// The churn: a short-lived job, created through one member and deleted through another.
    fn step<'a>(&'a self, ctx: &'a Ctx, w: &'a mut Worker) -> BoxFuture<'a, ()> {
        async move {
            let mut churn = self.churn.lock().await;
            match churn.as_ref() {
                None => {
                    let host = w.pick(&ctx.hosts).clone();
                    let kind = &KINDS[w.rng.random_range(0..KINDS.len())];
                    if let Some(id) = self.create(ctx, w, &host, kind).await {
                        let life = Duration::from_millis(w.rng.random_range(6_000..15_000));
                        *churn = Some(Churn { id, born: Instant::now(), life });
                    }
                }
                Some(c) if c.born.elapsed() >= c.life => {
                    let host = w.pick(&ctx.hosts).clone();
                    let id = c.id.clone();
                    // Whatever the outcome, the job is let go: its delete was invoked, so the
                    // checker no longer requires its slots.
                    self.delete(ctx, w, &host, &id).await;
                    *churn = None;
                }
                Some(_) => {}
            }
        }
        .boxed()
    }

    /// Reads steward's executions once (from the first member that answers), and each
    /// member's fire counters for the report.
    fn finish<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, ()> {
        async move {
            let harness = Process::Named("harness".into());
            ctx.recorder
                .record(Op::new(OpType::Info, harness.clone(), "schedule", "read").value(json!({ "wall_ms": wall_ms() })));
            let deadline = Instant::now() + ctx.final_patience;
            ctx.recorder.record(Op::new(OpType::Invoke, harness.clone(), "schedule", "executions"));
            let mut outcome = None;
            'read: while Instant::now() < deadline {
                for host in &ctx.hosts {
                    let res = ctx
                        .api
                        .request(
                            host,
                            Method::GET,
                            &format!("{API}/project/{PROJECT}/executions?max=10000000"),
                            &Cred::Admin,
                            None,
                            Some(Duration::from_secs(20)),
                        )
                        .await;
                    if let Some(a) = res.as_ref().ok().filter(|a| a.ok()) {
                        let list: Vec<Value> = a.body["executions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|e| e["executionType"] == json!("scheduled"))
                            .map(|e| {
                                json!({
                                    "id": e["id"].to_string(), "job": e["job"]["id"], "slot_ms": e["dateScheduled"]["unixtime"],
                                    "status": e["status"], "member": e["serverUUID"],
                                })
                            })
                            .collect();
                        outcome = Some((host.name.clone(), list));
                        break 'read;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            match outcome {
                Some((node, list)) => ctx
                    .recorder
                    .record(Op::new(OpType::Ok, harness.clone(), "schedule", "executions").value(json!(list)).node(node)),
                None => ctx.recorder.record(
                    Op::new(OpType::Info, harness.clone(), "schedule", "executions").error("no member listed executions"),
                ),
            };
            let mut counters = serde_json::Map::new();
            for host in &ctx.hosts {
                let res = ctx.api.request(host, Method::GET, &format!("{API}/metrics/metrics"), &Cred::Admin, None, None).await;
                if let Ok(a) = res {
                    let c = &a.body["counters"];
                    counters.insert(
                        host.name.clone(),
                        json!({
                            "fired": c["steward.scheduler.fired"]["count"],
                            "missed": c["steward.scheduler.missed"]["count"],
                            "skipped": c["steward.scheduler.skipped"]["count"],
                        }),
                    );
                }
            }
            ctx.recorder.record(
                Op::new(OpType::Info, harness, "schedule", "counters").value(json!({ "since_each_members_start": counters })),
            );
            self.read_fires(ctx).await;
            if let Some(t) = self.sink.lock().unwrap_or_else(|p| p.into_inner()).take() {
                t.abort();
            }
        }
        .boxed()
    }

    fn check(&self, history: &[Op]) -> Verdict {
        schedule::check_history(history)
    }
}
