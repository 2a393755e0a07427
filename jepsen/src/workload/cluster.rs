//! The cluster workload: one sampler per member asks it, about twice a second, for its own
//! health (term, applied index) and for the cluster's members (the leader and its term), and
//! at the end every member's whole applied state is read and compared.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use reqwest::Method;
use serde_json::{json, Value};

use super::{Ctx, Worker, Workload};
use crate::checker::{cluster, Verdict};
use crate::client::{read_outcome, Cred, API};
use crate::history::{Op, OpType};
use crate::net::Host;

pub struct ClusterWorkload {
    members: usize,
}

impl ClusterWorkload {
    pub fn new(members: usize) -> ClusterWorkload {
        ClusterWorkload { members }
    }
}

/// Short: a paused member must not hold a sampler for long.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything `host` serves: every project with its config. `Err` when a read failed.
async fn state_of(ctx: &Ctx, host: &Host) -> Result<BTreeMap<String, Value>, String> {
    let get = |path: String| async move {
        let res = ctx.api.request(host, Method::GET, &path, &Cred::Admin, None, None).await;
        match res {
            Ok(a) if a.ok() => Ok(a.body),
            other => Err(read_outcome(&other).1.unwrap_or_default()),
        }
    };
    let list = get(format!("{API}/projects")).await?;
    let names: BTreeSet<String> =
        list.as_array().into_iter().flatten().filter_map(|p| p["name"].as_str().map(str::to_string)).collect();
    let mut state = BTreeMap::new();
    for name in names {
        let config = get(format!("{API}/project/{name}/config")).await?;
        state.insert(name, config);
    }
    Ok(state)
}

fn digest(state: &BTreeMap<String, Value>) -> String {
    // SipHash with fixed keys: stable within a run, which is all the comparison needs.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(state).unwrap_or_default().hash(&mut h);
    format!("{:016x}", h.finish())
}

impl Workload for ClusterWorkload {
    fn name(&self) -> &'static str {
        "cluster"
    }

    fn workers(&self) -> usize {
        self.members
    }

    fn stagger(&self) -> Duration {
        Duration::from_millis(500)
    }

    fn setup<'a>(&'a self, _ctx: &'a Ctx) -> BoxFuture<'a, anyhow::Result<()>> {
        async { Ok(()) }.boxed()
    }

    /// Worker `i` samples member `i`.
    fn step<'a>(&'a self, ctx: &'a Ctx, w: &'a mut Worker) -> BoxFuture<'a, ()> {
        async move {
            let host = ctx.hosts[w.id % ctx.hosts.len()].clone();
            let inv = w.invoke(ctx, "health", None, Value::Null, &host);
            let res = ctx.api.request(&host, Method::GET, "/health", &Cred::None, None, Some(SAMPLE_TIMEOUT)).await;
            match &res {
                // 503 is an answer too: the member's own view while it knows no leader.
                Ok(a) if a.status == 200 || a.status == 503 => {
                    let b = &a.body;
                    let v = json!({ "status": a.status, "member": b["member"], "term": b["term"], "applied": b["applied"], "leader": b["leader"], "vote": b["vote"] });
                    w.complete(ctx, inv, OpType::Ok, v, None);
                }
                _ => {
                    let (kind, e) = read_outcome(&res);
                    w.complete(ctx, inv, if kind == OpType::Ok { OpType::Fail } else { kind }, Value::Null, e);
                }
            }
            let inv = w.invoke(ctx, "members", None, Value::Null, &host);
            let res =
                ctx.api.request(&host, Method::GET, &format!("{API}/cluster/members"), &Cred::Admin, None, Some(SAMPLE_TIMEOUT)).await;
            match &res {
                Ok(a) if a.ok() => {
                    let members = a.body["members"].as_array();
                    let leader_raft_id = members
                        .and_then(|ms| ms.iter().find(|m| m["id"] == a.body["leader"]))
                        .map(|m| m["raftId"].clone());
                    let v = json!({
                        "term": a.body["term"], "leader": a.body["leader"], "leader_raft_id": leader_raft_id,
                        "members": members.map(|m| m.len()),
                    });
                    w.complete(ctx, inv, OpType::Ok, v, None);
                }
                _ => {
                    let (kind, e) = read_outcome(&res);
                    w.complete(ctx, inv, kind, Value::Null, e);
                }
            }
        }
        .boxed()
    }

    /// Reads every member's state; when they differ, reads again (up to three rounds, 2 s
    /// apart) so that a write still being applied is not mistaken for divergence.
    fn finish<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, ()> {
        async move {
            let mut w = ctx.worker("cluster", usize::MAX, rand::SeedableRng::seed_from_u64(0));
            for round in 0..3 {
                let mut digests = BTreeSet::new();
                for host in &ctx.hosts {
                    let inv = w.invoke(ctx, "final-state", None, json!({ "round": round }), host);
                    match state_of(ctx, host).await {
                        Ok(state) => {
                            let d = digest(&state);
                            digests.insert(d.clone());
                            w.complete(
                                ctx,
                                inv,
                                OpType::Ok,
                                json!({ "digest": d, "projects": state.len(), "state": state }),
                                None,
                            );
                        }
                        Err(e) => {
                            digests.insert(format!("error on {}", host.name));
                            w.complete(ctx, inv, OpType::Fail, Value::Null, Some(e));
                        }
                    }
                }
                if digests.len() <= 1 {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        .boxed()
    }

    fn check(&self, history: &[Op]) -> Verdict {
        cluster::check(history)
    }
}
