//! The auth workload: a client with no valid credential knocks on every route of every member,
//! whatever state the member is in (starting, paused, partitioned, removed, rejoining); and at
//! the end the run's secrets are searched for in every member's log and data dir.
//!
//! Credentials tried: none; a random token; the cluster secret as a token (a member must not
//! confuse the two); a prefix of the admin token (a comparison that stops early would accept
//! it); a random bearer token; a wrong cluster secret on the internal routes.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use rand::distr::{Alphanumeric, SampleString};
use rand::seq::IndexedRandom;
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};

use super::{Ctx, Worker, Workload};
use crate::checker::{auth, Verdict};
use crate::client::{Cred, API};
use crate::history::{Op, OpType, Process};

pub struct AuthWorkload {
    next: AtomicU64,
}

impl AuthWorkload {
    pub fn new() -> AuthWorkload {
        AuthWorkload { next: AtomicU64::new(0) }
    }
}

impl Default for AuthWorkload {
    fn default() -> Self {
        Self::new()
    }
}

/// Files that legitimately hold a secret: the member's own copies, mode 0600.
const SECRET_FILES: [&str; 2] = ["admin.token", "cluster.secret"];

/// Files under `dir` (recursively) containing `needle`, skipping [`SECRET_FILES`].
fn files_containing(dir: &Path, needle: &[u8], out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            files_containing(&p, needle, out);
        } else if ft.is_file() && !SECRET_FILES.iter().any(|f| p.file_name().is_some_and(|n| n == *f)) {
            if let Ok(bytes) = std::fs::read(&p) {
                if !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle) {
                    out.push(p.display().to_string());
                }
            }
        }
    }
}

impl Workload for AuthWorkload {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn workers(&self) -> usize {
        1
    }

    fn stagger(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn setup<'a>(&'a self, _ctx: &'a Ctx) -> BoxFuture<'a, anyhow::Result<()>> {
        async { Ok(()) }.boxed()
    }

    fn step<'a>(&'a self, ctx: &'a Ctx, w: &'a mut Worker) -> BoxFuture<'a, ()> {
        async move {
            let host = w.pick(&ctx.hosts).clone();
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let random = Alphanumeric.sample_string(&mut w.rng, 32);
            let token = ctx.api.token().to_string();
            let (cred_name, cred) = match w.rng.random_range(0..5) {
                0 => ("none", Cred::None),
                1 => ("random token", Cred::Token(random.clone())),
                2 => ("cluster secret as token", Cred::Token(ctx.secret.clone())),
                3 => ("admin token prefix", Cred::Token(token[..token.len() - 1].to_string())),
                _ => ("random bearer", Cred::Bearer(random.clone())),
            };
            let routes: [(Method, String, Option<Value>); 9] = [
                (Method::GET, format!("{API}/projects"), None),
                (Method::GET, format!("{API}/system/info"), None),
                (Method::GET, format!("{API}/cluster/members"), None),
                (Method::POST, format!("{API}/projects"), Some(json!({ "name": format!("auth-probe-{n}") }))),
                (Method::GET, format!("{API}/project/jr-0/config"), None),
                (Method::PUT, format!("{API}/project/jr-0/config/probe"), Some(json!({ "value": "x" }))),
                (Method::DELETE, format!("{API}/project/jr-0"), None),
                // A well-formed join of a member that does not exist (198.18.0.200 is no host),
                // so that the secret check, not body parsing, decides.
                (
                    Method::POST,
                    "/internal/cluster/join".into(),
                    Some(json!({
                        "nodeId": (1_000_000 + n).to_string(), "uuid": format!("00000000-0000-4000-8000-{n:012}"),
                        "raftAddress": "198.18.0.200:4441", "httpAddress": "198.18.0.200:4440", "clusterId": null,
                    })),
                ),
                (Method::POST, "/internal/cluster/check".into(), None),
            ];
            let (method, path, body) = routes.choose(&mut w.rng).expect("routes").clone();
            // The internal routes take the cluster secret, not a token: send a wrong one.
            let (cred_name, cred) = if path.starts_with("/internal") {
                ("wrong cluster secret", Cred::Secret(random))
            } else {
                (cred_name, cred)
            };
            let inv = w.invoke(
                ctx,
                "probe",
                None,
                json!({ "credential": cred_name, "method": method.as_str(), "path": path }),
                &host,
            );
            match ctx.api.request(&host, method, &path, &cred, body.as_ref(), Some(Duration::from_secs(3))).await {
                Ok(a) => w.complete(ctx, inv, OpType::Ok, json!({ "status": a.status }), None),
                Err(e) => w.complete(ctx, inv, OpType::Fail, Value::Null, Some(e.to_string())),
            }
        }
        .boxed()
    }

    /// Scans logs and data dirs for the secrets; checks that no probe created a project.
    fn finish<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, ()> {
        async move {
            let scanner = Process::Named("scanner".into());
            let leak = |node: &str, what: &str, place: String| {
                ctx.recorder.record(
                    Op::new(OpType::Info, scanner.clone(), "auth", "leak")
                        .node(node)
                        .value(json!({ "secret": what, "where": place })),
                );
            };
            let secrets = [("admin token", ctx.api.token().to_string()), ("cluster secret", ctx.secret.clone())];
            let mut places = Vec::new();
            for h in &ctx.hosts {
                places.push((h.name.clone(), ctx.members.log_path(&h.name).parent().map(Path::to_path_buf)));
            }
            for (name, dir) in ctx.members.data_dirs().await {
                places.push((name, Some(dir)));
            }
            for (node, dir) in places {
                let Some(dir) = dir else { continue };
                for (what, secret) in &secrets {
                    let mut found = Vec::new();
                    files_containing(&dir, secret.as_bytes(), &mut found);
                    for f in found {
                        leak(&node, what, f);
                    }
                }
            }
            // A probe's create must never have happened.
            if let Some(host) = ctx.hosts.first() {
                if let Ok(a) =
                    ctx.api.request(host, Method::GET, &format!("{API}/projects"), &Cred::Admin, None, None).await
                {
                    for p in a.body.as_array().into_iter().flatten() {
                        if let Some(name) = p["name"].as_str().filter(|n| n.starts_with("auth-probe-")) {
                            leak(&host.name, "an unauthenticated write", format!("project {name} exists"));
                        }
                    }
                }
            }
        }
        .boxed()
    }

    fn check(&self, history: &[Op]) -> Verdict {
        auth::check(history)
    }
}
