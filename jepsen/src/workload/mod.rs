//! Workloads: what clients do during a run, what they read at the end, and which checker
//! judges it.
//!
//! # Layout
//! - [`Workload`]: the trait. A workload sets up what it needs, runs `workers()` concurrent
//!   client loops of `step`s, reads its final state in `finish` (after the final heal, on every
//!   member), and turns the history into a verdict in `check`.
//! - [`register`]: a linearizable register per key, on any [`register::Backend`] (public keys
//!   of key storage, or project config keys).
//! - [`set`]: project creates and deletes (job creates later).
//! - [`cluster`]: leader, term and applied-index samples from every member; final states.
//! - [`auth`]: requests without a valid credential to every member in every state; secret scans.
//! - [`schedule`]: jobs on 1–2 s schedules report their runs to a sink in the harness; judged
//!   by [`crate::checker::schedule`].

pub mod auth;
pub mod cluster;
pub mod register;
pub mod schedule;
pub mod set;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::checker::Verdict;
use crate::client::Api;
use crate::db::Members;
use crate::history::{Op, OpType, Process, Recorder};
use crate::net::Host;

/// What every workload can reach.
pub struct Ctx {
    pub api: Arc<Api>,
    pub members: Arc<Members>,
    pub recorder: Arc<Recorder>,
    pub hosts: Vec<Host>,
    pub secret: String,
    /// The run folder.
    pub out: PathBuf,
    /// How long final reads keep retrying a member that does not answer.
    pub final_patience: Duration,
    next_process: AtomicU64,
}

impl Ctx {
    pub fn new(
        api: Arc<Api>,
        members: Arc<Members>,
        recorder: Arc<Recorder>,
        hosts: Vec<Host>,
        secret: String,
        out: PathBuf,
        final_patience: Duration,
    ) -> Ctx {
        Ctx { api, members, recorder, hosts, secret, out, final_patience, next_process: AtomicU64::new(0) }
    }

    /// A process id never used before.
    pub fn new_process(&self) -> u64 {
        self.next_process.fetch_add(1, Ordering::Relaxed)
    }

    /// A worker for `workload`, seeded from the run's seed and its own number.
    pub fn worker(&self, workload: &'static str, id: usize, rng: ChaCha8Rng) -> Worker {
        Worker { id, process: self.new_process(), rng, workload }
    }
}

/// One client loop: a logical process (renewed after an indeterminate operation, as in
/// Jepsen) and its own seeded random source.
pub struct Worker {
    pub id: usize,
    pub process: u64,
    pub rng: ChaCha8Rng,
    pub workload: &'static str,
}

/// An invoked operation waiting for its completion.
pub struct Invocation {
    f: String,
    key: Option<String>,
    node: String,
}

impl Worker {
    /// A random member.
    pub fn pick<'a>(&mut self, hosts: &'a [Host]) -> &'a Host {
        &hosts[self.rng.random_range(0..hosts.len())]
    }

    /// Records the invocation of `f` on `node`.
    pub fn invoke(&self, ctx: &Ctx, f: &str, key: Option<String>, value: Value, node: &Host) -> Invocation {
        let mut op = Op::new(OpType::Invoke, Process::Client(self.process), self.workload, f)
            .value(value)
            .node(node.name.clone());
        op.key = key.clone();
        ctx.recorder.record(op);
        Invocation { f: f.to_string(), key, node: node.name.clone() }
    }

    /// Records the completion of `inv`; after an indeterminate one the worker continues as a
    /// new process, since the old one may still be acting.
    pub fn complete(&mut self, ctx: &Ctx, inv: Invocation, kind: OpType, value: Value, error: Option<String>) {
        let mut op = Op::new(kind, Process::Client(self.process), self.workload, &inv.f).value(value).node(inv.node);
        op.key = inv.key;
        op.error = error;
        ctx.recorder.record(op);
        if kind == OpType::Info {
            self.process = ctx.new_process();
        }
    }
}

/// A workload: its client loops, its final reads and its checker.
pub trait Workload: Send + Sync {
    fn name(&self) -> &'static str;
    /// How many client loops run concurrently.
    fn workers(&self) -> usize;
    /// Longest pause between two operations of one loop (drawn uniformly below it).
    fn stagger(&self) -> Duration;
    /// Before faults start (members are healthy).
    fn setup<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, anyhow::Result<()>>;
    /// One operation of worker `w`.
    fn step<'a>(&'a self, ctx: &'a Ctx, w: &'a mut Worker) -> BoxFuture<'a, ()>;
    /// After the final heal and recovery: final reads, recorded in the history.
    fn finish<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, ()>;
    /// The verdict on `history`.
    fn check(&self, history: &[Op]) -> Verdict;
}

/// Final reads on every member: each round hands out the members still to do; a member whose
/// read failed is handed out again in the next round, 500 ms later, until `deadline`.
///
/// ```ignore
/// let mut every = EveryMember::new(ctx, deadline);
/// while let Some(hosts) = every.round().await {
///     for h in hosts { if !read(h).await { every.retry(h) } }
/// }
/// ```
pub struct EveryMember {
    pending: Vec<Host>,
    deadline: tokio::time::Instant,
    first: bool,
}

impl EveryMember {
    pub fn new(ctx: &Ctx, deadline: tokio::time::Instant) -> EveryMember {
        EveryMember { pending: ctx.hosts.clone(), deadline, first: true }
    }

    /// The members to try now, or `None` when all succeeded or time is up.
    pub async fn round(&mut self) -> Option<Vec<Host>> {
        if self.pending.is_empty() || (!self.first && tokio::time::Instant::now() >= self.deadline) {
            return None;
        }
        if !self.first {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.first = false;
        Some(std::mem::take(&mut self.pending))
    }

    /// Tries `h` again next round.
    pub fn retry(&mut self, h: Host) {
        self.pending.push(h);
    }
}

/// Creates project `name` (or finds it there), trying the members in turn from `first`: a
/// workload's setup runs before any fault, but an election may still be under way.
pub(crate) async fn ensure_project(ctx: &Ctx, name: &str, description: &str, first: usize) -> anyhow::Result<()> {
    let body = serde_json::json!({ "name": name, "description": description });
    for attempt in 0..20 {
        let host = &ctx.hosts[(first + attempt) % ctx.hosts.len()];
        let path = format!("{}/projects", crate::client::API);
        let res = ctx.api.request(host, reqwest::Method::POST, &path, &crate::client::Cred::Admin, Some(&body), None);
        match res.await {
            Ok(a) if a.ok() || a.status == 409 => return Ok(()),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    anyhow::bail!("could not create project {name}")
}
