//! A linearizable register per key, Jepsen's `independent` style: a few keys are active at a
//! time, each gets a bounded number of operations (about 100–200, randomised so keys finish
//! out of step) and is then retired for a fresh key, which keeps every per-key search small.
//! Reads and writes go to random members; every written value is unique, which makes the
//! checker's search cheap and turns a re-applied write into a visible anomaly.
//!
//! The register lives behind a [`Backend`]:
//! - [`KeyStorage`] (the default): a public key of key storage (`/storage/keys/jepsen/rK`), the
//!   one kind of key whose content the API returns. Rundeck's key storage API has no
//!   compare-and-set, so the register is read/write only.
//! - [`ProjectConfig`]: a project config key (`PUT/GET /project/{p}/config/{key}`; no
//!   compare-and-set there either).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};

use super::{Ctx, EveryMember, Worker, Workload};
use crate::checker::{linear, Verdict};
use crate::client::{read_outcome, write_outcome, Body, Cred, API};
use crate::history::OpType;
use crate::net::Host;

/// Where a register is stored.
pub trait Backend: Send + Sync {
    /// Creates what keys need (before faults).
    fn setup<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Reads key `k`: `Ok(None)` when unset, `Err((kind, error))` when the read failed.
    fn read<'a>(&'a self, ctx: &'a Ctx, host: &'a Host, k: u64)
        -> BoxFuture<'a, Result<Option<i64>, (OpType, String)>>;
    /// Writes `v` to key `k`: the outcome for the history.
    fn write<'a>(&'a self, ctx: &'a Ctx, host: &'a Host, k: u64, v: i64) -> BoxFuture<'a, (OpType, Option<String>)>;
}

/// Registers as project config keys: key `k` is config key `k{k}` of project `jr-{k % 16}`.
/// Keys active together fall in different projects, so writes to them never contend on one
/// project record (steward rewrites the whole project, guarded on its revision).
pub struct ProjectConfig;

const PROJECTS: u64 = 16;

impl ProjectConfig {
    fn path(k: u64) -> String {
        format!("{API}/project/jr-{}/config/k{k}", k % PROJECTS)
    }
}

impl Backend for ProjectConfig {
    fn setup<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            for p in 0..PROJECTS {
                super::ensure_project(ctx, &format!("jr-{p}"), "jepsen register keys", p as usize).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn read<'a>(
        &'a self,
        ctx: &'a Ctx,
        host: &'a Host,
        k: u64,
    ) -> BoxFuture<'a, Result<Option<i64>, (OpType, String)>> {
        async move {
            let res = ctx.api.request(host, Method::GET, &Self::path(k), &Cred::Admin, None, None).await;
            match &res {
                Ok(a) if a.ok() => a.body["value"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .map(Some)
                    .ok_or_else(|| (OpType::Fail, format!("unreadable value: {}", a.body))),
                // 404 from a config read: the key is not set (the project always exists).
                Ok(a) if a.status == 404 => Ok(None),
                _ => {
                    let (kind, e) = read_outcome(&res);
                    Err((kind, e.unwrap_or_default()))
                }
            }
        }
        .boxed()
    }

    fn write<'a>(&'a self, ctx: &'a Ctx, host: &'a Host, k: u64, v: i64) -> BoxFuture<'a, (OpType, Option<String>)> {
        async move {
            let body = json!({ "value": v.to_string() });
            let res = ctx.api.request(host, Method::PUT, &Self::path(k), &Cred::Admin, Some(&body), None).await;
            write_outcome(&res)
        }
        .boxed()
    }
}

/// Registers as public keys of key storage: key `k` is `keys/jepsen/r{k}`, its content the
/// value in decimal. Private keys and passwords are write-only, so a public key
/// (`application/pgp-keys`) is the readable type; the values are unique numbers, not keys.
pub struct KeyStorage;

/// The content type of a public key: readable through the API.
const PUBLIC_KEY: &str = "application/pgp-keys";

impl KeyStorage {
    fn path(k: u64) -> String {
        format!("{API}/storage/keys/jepsen/r{k}")
    }

    async fn send(
        ctx: &Ctx,
        host: &Host,
        method: Method,
        k: u64,
        v: i64,
    ) -> Result<crate::client::Answer, crate::client::NoAnswer> {
        let bytes = v.to_string();
        let body = Body::Raw { content_type: PUBLIC_KEY, bytes: bytes.as_bytes() };
        ctx.api.send(host, method, &Self::path(k), &Cred::Admin, body, None, None).await
    }
}

impl Backend for KeyStorage {
    fn setup<'a>(&'a self, _ctx: &'a Ctx) -> BoxFuture<'a, anyhow::Result<()>> {
        // Keys are created by their first write.
        async { Ok(()) }.boxed()
    }

    fn read<'a>(
        &'a self,
        ctx: &'a Ctx,
        host: &'a Host,
        k: u64,
    ) -> BoxFuture<'a, Result<Option<i64>, (OpType, String)>> {
        async move {
            let res =
                ctx.api.send(host, Method::GET, &Self::path(k), &Cred::Admin, Body::None, Some(PUBLIC_KEY), None).await;
            match &res {
                // The content comes back as it was written: digits, which the client parses as
                // a JSON number.
                Ok(a) if a.ok() => a
                    .body
                    .as_i64()
                    .or_else(|| a.body.as_str().and_then(|t| t.trim().parse().ok()))
                    .map(Some)
                    .ok_or_else(|| (OpType::Fail, format!("unreadable value: {}", a.body))),
                Ok(a) if a.status == 404 => Ok(None),
                _ => {
                    let (kind, e) = read_outcome(&res);
                    Err((kind, e.unwrap_or_default()))
                }
            }
        }
        .boxed()
    }

    /// Rundeck's key storage replaces with PUT (404 if the key is missing) and creates with POST
    /// (409 if it exists), so a write is PUT, then POST if the key did not exist, then PUT again
    /// if another client created it meanwhile. Each attempt before the last was answered 4xx,
    /// so it certainly did nothing: the operation's outcome is the last attempt's.
    fn write<'a>(&'a self, ctx: &'a Ctx, host: &'a Host, k: u64, v: i64) -> BoxFuture<'a, (OpType, Option<String>)> {
        async move {
            let res = Self::send(ctx, host, Method::PUT, k, v).await;
            if !matches!(&res, Ok(a) if a.status == 404) {
                return write_outcome(&res);
            }
            let res = Self::send(ctx, host, Method::POST, k, v).await;
            if !matches!(&res, Ok(a) if a.status == 409) {
                return write_outcome(&res);
            }
            write_outcome(&Self::send(ctx, host, Method::PUT, k, v).await)
        }
        .boxed()
    }
}

struct Keys {
    /// (key, operations left).
    active: Vec<(u64, u32)>,
    next: u64,
}

/// The register workload.
pub struct Register<B: Backend> {
    backend: B,
    workers: usize,
    keys: Mutex<Keys>,
    next_value: AtomicI64,
}

/// Keys in use at once.
const ACTIVE_KEYS: usize = 3;

impl<B: Backend> Register<B> {
    pub fn new(backend: B, workers: usize) -> Register<B> {
        Register {
            backend,
            workers,
            keys: Mutex::new(Keys { active: Vec::new(), next: 0 }),
            next_value: AtomicI64::new(1),
        }
    }

    /// A key to operate on; retires keys that had their share.
    fn key(&self, rng: &mut impl Rng) -> u64 {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        while keys.active.len() < ACTIVE_KEYS {
            let k = keys.next;
            keys.next += 1;
            let ops = rng.random_range(100..200);
            keys.active.push((k, ops));
        }
        let i = rng.random_range(0..keys.active.len());
        let (k, left) = keys.active[i];
        if left <= 1 {
            keys.active.remove(i);
        } else {
            keys.active[i].1 = left - 1;
        }
        k
    }

    fn used_keys(&self) -> u64 {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).next
    }
}

impl<B: Backend> Workload for Register<B> {
    fn name(&self) -> &'static str {
        "register"
    }

    fn workers(&self) -> usize {
        self.workers
    }

    fn stagger(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn setup<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, anyhow::Result<()>> {
        self.backend.setup(ctx)
    }

    fn step<'a>(&'a self, ctx: &'a Ctx, w: &'a mut Worker) -> BoxFuture<'a, ()> {
        async move {
            let k = self.key(&mut w.rng);
            let host = w.pick(&ctx.hosts).clone();
            let key = Some(format!("r{k}"));
            if w.rng.random_bool(0.5) {
                let inv = w.invoke(ctx, "read", key, Value::Null, &host);
                match self.backend.read(ctx, &host, k).await {
                    Ok(v) => w.complete(ctx, inv, OpType::Ok, json!(v), None),
                    Err((kind, e)) => w.complete(ctx, inv, kind, Value::Null, Some(e)),
                }
            } else {
                let v = self.next_value.fetch_add(1, Ordering::Relaxed);
                let inv = w.invoke(ctx, "write", key, json!(v), &host);
                let (kind, e) = self.backend.write(ctx, &host, k, v).await;
                w.complete(ctx, inv, kind, json!(v), e);
            }
        }
        .boxed()
    }

    /// Reads every key used from every member: each member must agree with the history.
    fn finish<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, ()> {
        async move {
            let keys = self.used_keys();
            let deadline = tokio::time::Instant::now() + ctx.final_patience;
            let mut w = ctx.worker("register", usize::MAX, rand::SeedableRng::seed_from_u64(0));
            let mut every = EveryMember::new(ctx, deadline);
            while let Some(hosts) = every.round().await {
                'host: for host in hosts {
                    for k in 0..keys {
                        let inv = w.invoke(ctx, "read", Some(format!("r{k}")), Value::Null, &host);
                        match self.backend.read(ctx, &host, k).await {
                            Ok(v) => w.complete(ctx, inv, OpType::Ok, json!(v), None),
                            Err((kind, e)) => {
                                w.complete(ctx, inv, kind, Value::Null, Some(e));
                                every.retry(host);
                                continue 'host;
                            }
                        }
                    }
                }
            }
        }
        .boxed()
    }

    fn check(&self, history: &[crate::history::Op]) -> Verdict {
        linear::check_registers(history, "register", linear::DEFAULT_BUDGET)
    }
}
