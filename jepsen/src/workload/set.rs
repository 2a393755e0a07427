//! The set workload on projects: create `js-N` projects (each name once), delete some of the
//! acknowledged ones (each at most once), list them from random members during the run, and
//! list them from every member at the end. Jobs replace projects as elements once jobs exist:
//! only `add`, `delete` and `list` change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};

use super::{Ctx, EveryMember, Worker, Workload};
use crate::checker::{set, Verdict};
use crate::client::{read_outcome, write_outcome, Cred, NoAnswer, API};
use crate::history::{Op, OpType};
use crate::net::Host;

const PREFIX: &str = "js-";

pub struct SetWorkload {
    workers: usize,
    next: AtomicU64,
    /// Acknowledged adds not yet picked for deletion.
    deletable: Mutex<Vec<String>>,
}

impl SetWorkload {
    pub fn new(workers: usize) -> SetWorkload {
        SetWorkload { workers, next: AtomicU64::new(0), deletable: Mutex::new(Vec::new()) }
    }

    /// The set's elements as `host` lists them.
    async fn list(ctx: &Ctx, host: &Host) -> (OpType, Value, Option<String>) {
        let res = ctx.api.request(host, Method::GET, &format!("{API}/projects"), &Cred::Admin, None, None).await;
        list_result(&res)
    }
}

fn list_result(res: &Result<crate::client::Answer, NoAnswer>) -> (OpType, Value, Option<String>) {
    match res {
        Ok(a) if a.ok() => match a.body.as_array() {
            Some(ps) => {
                let mut names: Vec<&str> =
                    ps.iter().filter_map(|p| p["name"].as_str()).filter(|n| n.starts_with(PREFIX)).collect();
                names.sort();
                (OpType::Ok, json!(names), None)
            }
            None => (OpType::Fail, Value::Null, Some(format!("not a list: {}", a.body))),
        },
        _ => {
            let (kind, e) = read_outcome(res);
            (kind, Value::Null, e)
        }
    }
}

impl Workload for SetWorkload {
    fn name(&self) -> &'static str {
        "set"
    }

    fn workers(&self) -> usize {
        self.workers
    }

    fn stagger(&self) -> Duration {
        Duration::from_millis(150)
    }

    fn setup<'a>(&'a self, _ctx: &'a Ctx) -> BoxFuture<'a, anyhow::Result<()>> {
        async { Ok(()) }.boxed()
    }

    fn step<'a>(&'a self, ctx: &'a Ctx, w: &'a mut Worker) -> BoxFuture<'a, ()> {
        async move {
            let host = w.pick(&ctx.hosts).clone();
            let roll: f64 = w.rng.random();
            let victim = if roll < 0.2 {
                let mut d = self.deletable.lock().unwrap_or_else(|p| p.into_inner());
                (!d.is_empty()).then(|| {
                    let i = w.rng.random_range(0..d.len());
                    d.swap_remove(i)
                })
            } else {
                None
            };
            if let Some(name) = victim {
                let inv = w.invoke(ctx, "delete", None, json!(name), &host);
                let res = ctx
                    .api
                    .request(&host, Method::DELETE, &format!("{API}/project/{name}"), &Cred::Admin, None, None)
                    .await;
                let (kind, e) = write_outcome(&res);
                w.complete(ctx, inv, kind, json!(name), e);
            } else if roll < 0.35 {
                let inv = w.invoke(ctx, "read", None, Value::Null, &host);
                let (kind, v, e) = Self::list(ctx, &host).await;
                w.complete(ctx, inv, kind, v, e);
            } else {
                let name = format!("{PREFIX}{}", self.next.fetch_add(1, Ordering::Relaxed));
                let inv = w.invoke(ctx, "add", None, json!(name), &host);
                let body = json!({ "name": name });
                let res = ctx
                    .api
                    .request(&host, Method::POST, &format!("{API}/projects"), &Cred::Admin, Some(&body), None)
                    .await;
                let (kind, e) = write_outcome(&res);
                if kind == OpType::Ok {
                    self.deletable.lock().unwrap_or_else(|p| p.into_inner()).push(name.clone());
                }
                w.complete(ctx, inv, kind, json!(name), e);
            }
        }
        .boxed()
    }

    fn finish<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, ()> {
        async move {
            let deadline = tokio::time::Instant::now() + ctx.final_patience;
            let mut w = ctx.worker("set", usize::MAX, rand::SeedableRng::seed_from_u64(0));
            let mut every = EveryMember::new(ctx, deadline);
            while let Some(hosts) = every.round().await {
                for host in hosts {
                    let inv = w.invoke(ctx, "final-read", None, Value::Null, &host);
                    let (kind, v, e) = Self::list(ctx, &host).await;
                    w.complete(ctx, inv, kind, v, e);
                    if kind != OpType::Ok {
                        every.retry(host);
                    }
                }
            }
        }
        .boxed()
    }

    fn check(&self, history: &[Op]) -> Verdict {
        set::check(history)
    }
}
