//! The auth checker: a client without a valid token gets nothing from any member in any state,
//! and the admin token and the cluster secret never appear in what members send or write.
//!
//! Operations (workload `auth`):
//! - `probe`: a request with a bad credential (none, a wrong token, the cluster secret used as
//!   a token, a wrong cluster secret on the internal join route); value `{credential, method,
//!   path}`, result `{status}`. A probe that got no answer (member down or paused) proves
//!   nothing and is fine;
//! - `leak`: a secret found where it must not be (value `{secret, where}`): in an HTTP answer
//!   (the client scans every body) or in a member's log or data files (scanned at the end).
//!
//! Violations: any 2xx or 3xx answer to a probe; any leak.

use std::collections::BTreeMap;

use serde_json::json;

use super::{secs, Examples, Validity, Verdict};
use crate::history::{pairs, Op, OpType};

pub fn check(history: &[Op]) -> Verdict {
    let mut served = Examples::default();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut probes = 0usize;
    for p in pairs(history).iter().filter(|p| p.invoke.workload == "auth" && p.invoke.f == "probe") {
        probes += 1;
        if p.outcome() != OpType::Ok {
            *statuses.entry("no answer".into()).or_default() += 1;
            continue;
        }
        let status = p.result()["status"].as_u64().unwrap_or(0);
        *statuses.entry(status.to_string()).or_default() += 1;
        if (200..400).contains(&status) {
            served.push(json!({
                "node": p.invoke.node, "at_s": secs(p.start()), "request": p.invoke.value, "status": status,
            }));
        }
    }
    let mut leaks = Examples::default();
    for o in history.iter().filter(|o| o.workload == "auth" && o.f == "leak") {
        leaks.push(json!({ "at_s": secs(o.time), "node": o.node, "leak": o.value }));
    }
    let valid = if served.is_empty() && leaks.is_empty() { Validity::Valid } else { Validity::Invalid };
    let summary =
        format!("{probes} probes without a valid credential: {} answered; {} leaks", served.count, leaks.count);
    Verdict::new(
        "auth",
        valid,
        summary,
        json!({ "probes": probes, "statuses": statuses, "served": served, "leaks": leaks }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;

    fn probe(p: u64, status: Option<u64>) -> Vec<Op> {
        let inv = Op::new(OpType::Invoke, Process::Client(p), "auth", "probe")
            .node("n1")
            .value(json!({ "credential": "none", "method": "GET", "path": "/api/45/projects" }));
        let done = match status {
            Some(s) => Op::new(OpType::Ok, Process::Client(p), "auth", "probe").value(json!({ "status": s })),
            None => Op::new(OpType::Info, Process::Client(p), "auth", "probe").error("timeout"),
        };
        vec![inv, done]
    }

    #[test]
    fn refusals_and_silence_are_valid() {
        let mut h = probe(1, Some(401));
        h.extend(probe(2, Some(503)));
        h.extend(probe(3, None));
        assert_eq!(check(&h).valid, Validity::Valid);
    }

    #[test]
    fn an_answer_without_a_token_and_a_leak_are_violations() {
        let h = probe(1, Some(200));
        assert_eq!(check(&h).valid, Validity::Invalid);
        let leak = vec![Op::new(OpType::Info, Process::Named("scanner".into()), "auth", "leak")
            .value(json!({ "secret": "admin token", "where": "n1/steward.log" }))];
        let v = check(&leak);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["leaks"]["count"], 1);
    }
}
