//! The cluster checker: Raft-level facts sampled from every member during the run, and the
//! members' states compared at the end.
//!
//! Operations (workload `cluster`):
//! - `members`: a `GET /api/45/cluster/members` sample; result `{term, leader, leader_raft_id}`
//!   (the leader's view, reached through the member asked);
//! - `health`: a `GET /health` sample; result `{status, member, term, vote, applied}` (that
//!   member's own view; `vote` is `{term, node, committed}`);
//! - `final-state`: after the final heal, one per member: `{digest, projects}` of everything it
//!   serves;
//! - `removed-read`: a linearizable read sent to a member after its removal was acknowledged;
//! - `recovery`: whether the cluster served again after the final heal, and how fast;
//! - `start`: the harness started a member process (first start or restart);
//! - `exit`: a member process that ended without the nemesis killing it (`expected` says
//!   whether a fault explains it: removal, an injected disk error).
//!
//! Violations: one leader id (term and Raft id) reported for two members; a member's term or
//! vote going backwards, or its applied index within one process's life (steward's state
//! machine is not fsynced on apply: after a crash it restarts from an earlier applied index and
//! re-applies the durable log, as `storage/README.md` documents); two members with different
//! final states; a removed member answering a read; no recovery; an unexplained exit.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::{secs, Examples, Validity, Verdict};
use crate::history::{pairs, Op, OpType, Pair};

pub fn check(history: &[Op]) -> Verdict {
    let all = pairs(history);
    let ps: Vec<&Pair<'_>> = all.iter().filter(|p| p.invoke.workload == "cluster").collect();
    fn ok<'p, 'a>(ps: &'p [&'p Pair<'a>], f: &'static str) -> impl Iterator<Item = &'p Pair<'a>> + 'p {
        ps.iter().filter(move |p| p.invoke.f == f && p.outcome() == OpType::Ok).copied()
    }

    // One member per leader id. openraft (without its `single-term-leader` feature) names a
    // leader by term and Raft id, and orders candidates of one term by id: two may both win a
    // term, the greater later, and the lesser's entries lose to the greater's. So a term may
    // have two leaders (counted, not a violation); one leader id naming two members would be.
    let mut leaders: BTreeMap<(u64, String), BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for p in ok(&ps, "members") {
        let r = p.result();
        if let (Some(term), Some(leader)) = (r["term"].as_u64(), r["leader"].as_str()) {
            let via = p.invoke.node.clone().unwrap_or_default();
            let raft_id = r["leader_raft_id"].as_str().unwrap_or(leader).to_string();
            leaders.entry((term, raft_id)).or_default().entry(leader.to_string()).or_default().push(via);
        }
    }
    let mut terms: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for ((term, _), by_leader) in &leaders {
        terms.entry(*term).or_default().extend(by_leader.keys().map(String::as_str));
    }
    let mut split_brain = Examples::default();
    for ((term, raft_id), by_leader) in &leaders {
        if by_leader.len() > 1 {
            split_brain.push(
                json!({ "term": term, "raft_id": raft_id, "leaders": by_leader.iter().map(|(l, via)| json!({
                "leader": l, "reported_via": via.iter().collect::<BTreeSet<_>>()
            })).collect::<Vec<_>>() }),
            );
        }
    }
    let shared_terms: Vec<Value> =
        terms.iter().filter(|(_, ls)| ls.len() > 1).map(|(t, ls)| json!({ "term": t, "leaders": ls })).collect();

    // Terms, votes and applied indexes never go backwards on a member (by uuid: a wiped member that
    // rejoins is a new member). Only samples that did not overlap in time are compared.
    let mut by_member: BTreeMap<String, Vec<&Pair<'_>>> = BTreeMap::new();
    for p in ok(&ps, "health") {
        if let Some(m) = p.result()["member"].as_str() {
            by_member.entry(m.to_string()).or_default().push(p);
        }
    }
    // When each node's processes were started.
    let mut starts: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for op in history.iter().filter(|o| o.workload == "cluster" && o.f == "start") {
        if let Some(n) = op.node.as_deref() {
            starts.entry(n).or_default().push(op.time);
        }
    }
    let restarted_between = |node: Option<&str>, from: u64, to: u64| {
        node.and_then(|n| starts.get(n)).is_some_and(|ts| ts.iter().any(|t| *t >= from && *t <= to))
    };
    let mut regressions = Examples::default();
    for (member, samples) in by_member.iter_mut() {
        samples.sort_by_key(|p| p.start());
        let mut term = Highest::default();
        let mut applied = Highest::default();
        // The vote is saved before it is acted on, so it never goes backwards, not even across
        // a restart: a member that forgot its vote could vote twice in one term.
        let mut vote = Highest::default();
        for p in samples.iter() {
            let r = p.result();
            let (start, end) = (p.start(), p.end().unwrap_or(u64::MAX));
            if applied.best.is_some_and(|(_, b_end)| restarted_between(p.invoke.node.as_deref(), b_end, start)) {
                applied.best = None;
            }
            let mut regressed = |field: &str, before: Value, after: Value| {
                regressions.push(json!({
                    "member": member, "field": field, "before": before, "after": after,
                    "at_s": secs(start), "node": p.invoke.node,
                }));
            };
            if let Some(v) = r["term"].as_u64() {
                if let Some(b) = term.see(v, start, end) {
                    regressed("term", json!(b), json!(v));
                }
            }
            if let Some(v) = r["applied"].as_u64() {
                if let Some(b) = applied.see(v, start, end) {
                    regressed("applied", json!(b), json!(v));
                }
            }
            if let Some(v) = vote_of(&r["vote"]) {
                if let Some(b) = vote.see(v, start, end) {
                    regressed("vote", vote_json(b), vote_json(v));
                }
            }
        }
    }

    // The same state everywhere at the end.
    let mut finals: BTreeMap<String, Value> = BTreeMap::new();
    let mut final_missing = Vec::new();
    for p in ps.iter().filter(|p| p.invoke.f == "final-state") {
        let node = p.invoke.node.clone().unwrap_or_default();
        if p.outcome() == OpType::Ok {
            finals.insert(node, p.result().clone());
        } else {
            final_missing.push(node);
        }
    }
    let digests: BTreeSet<String> = finals.values().filter_map(|v| v["digest"].as_str().map(str::to_string)).collect();
    let mut divergent = Examples::default();
    if digests.len() > 1 {
        divergent.push(json!({
            "digests": finals.iter().map(|(n, v)| (n.clone(), v["digest"].clone())).collect::<BTreeMap<_, _>>(),
            "differences": differences(&finals),
        }));
    }

    // Removed members refuse reads.
    let mut removed_served = Examples::default();
    for p in ps.iter().filter(|p| p.invoke.f == "removed-read" && p.outcome() == OpType::Ok) {
        if p.result()["status"].as_u64().is_some_and(|s| (200..300).contains(&s)) {
            removed_served.push(json!({ "node": p.invoke.node, "at_s": secs(p.start()), "removal": p.invoke.value }));
        }
    }
    let removed_reads = ps.iter().filter(|p| p.invoke.f == "removed-read").count();

    let mut not_recovered = Examples::default();
    let mut recovery = Vec::new();
    for p in ps.iter().filter(|p| p.invoke.f == "recovery") {
        let r = p.result();
        recovery.push(r.clone());
        if r["recovered"] != json!(true) {
            not_recovered.push(r.clone());
        }
    }

    let mut crashes = Examples::default();
    let mut exits = Vec::new();
    for o in history.iter().filter(|o| o.workload == "cluster" && o.f == "exit") {
        exits.push(o.value.clone());
        if o.value["expected"] != json!(true) {
            crashes.push(json!({ "at_s": secs(o.time), "exit": o.value }));
        }
    }

    let bad = [&split_brain, &regressions, &divergent, &removed_served, &not_recovered, &crashes]
        .iter()
        .any(|x| !x.is_empty());
    let valid = if bad {
        Validity::Invalid
    } else if finals.is_empty() || !final_missing.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    let summary = format!(
        "{} terms seen, {} led by two members (allowed), {} leader ids naming two members; {} regressions; {} members compared at the end ({} unreachable), {}; \
         {} reads to removed members, {} served; {} unexplained exits; recovered: {}",
        terms.len(),
        shared_terms.len(),
        split_brain.count,
        regressions.count,
        finals.len(),
        final_missing.len(),
        if digests.len() <= 1 { "identical" } else { "DIFFERENT" },
        removed_reads,
        removed_served.count,
        crashes.count,
        if not_recovered.is_empty() { "yes" } else { "NO" },
    );
    Verdict::new(
        "cluster",
        valid,
        summary,
        json!({
            "terms": terms.len(),
            "terms_with_two_leaders": shared_terms,
            "split_brain": split_brain,
            "regressions": regressions,
            "final_states": finals.iter().map(|(n, v)| (n.clone(), json!({ "digest": v["digest"], "projects": v["projects"] }))).collect::<BTreeMap<_, _>>(),
            "final_state_unavailable": final_missing,
            "divergent": divergent,
            "removed_reads": removed_reads,
            "removed_served": removed_served,
            "recovery": recovery,
            "not_recovered": not_recovered,
            "exits": exits,
            "unexplained_exits": crashes,
        }),
    )
}

/// The highest value one member reported, with the end of the sample that reported it.
struct Highest<T> {
    best: Option<(T, u64)>,
}

impl<T> Default for Highest<T> {
    fn default() -> Self {
        Highest { best: None }
    }
}

impl<T: PartialOrd + Copy> Highest<T> {
    /// Takes a sample of `v` taken from `start` to `end`; returns the higher value it went back
    /// from, when an earlier sample that ended before this one started reported more.
    fn see(&mut self, v: T, start: u64, end: u64) -> Option<T> {
        let back = self.best.filter(|(b, b_end)| *b_end < start && v < *b).map(|(b, _)| b);
        if self.best.is_none_or(|(b, _)| v >= b) {
            self.best = Some((v, end));
        }
        back
    }
}

/// A `/health` sample's vote as openraft orders votes: term, then candidate id, then committed.
fn vote_of(v: &Value) -> Option<(u64, u64, bool)> {
    Some((v["term"].as_u64()?, v["node"].as_str()?.parse().ok()?, v["committed"].as_bool()?))
}

fn vote_json((term, node, committed): (u64, u64, bool)) -> Value {
    json!({ "term": term, "node": node.to_string(), "committed": committed })
}

/// Which entries of the members' `state` maps differ, for the report (at most 20).
fn differences(finals: &BTreeMap<String, Value>) -> Vec<Value> {
    let mut keys = BTreeSet::new();
    for v in finals.values() {
        if let Some(m) = v["state"].as_object() {
            keys.extend(m.keys().cloned());
        }
    }
    let mut out = Vec::new();
    for k in keys {
        let vals: BTreeMap<&String, &Value> = finals.iter().map(|(n, v)| (n, &v["state"][&k])).collect();
        let distinct: BTreeSet<String> = vals.values().map(|v| v.to_string()).collect();
        if distinct.len() > 1 {
            out.push(json!({ "key": k, "by_member": vals }));
            if out.len() >= 20 {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;

    fn pair(p: u64, f: &str, node: &str, t: u64, result: Value) -> Vec<Op> {
        vec![
            Op::new(OpType::Invoke, Process::Client(p), "cluster", f).node(node).at(t),
            Op::new(OpType::Ok, Process::Client(p), "cluster", f).node(node).at(t + 1).value(result),
        ]
    }

    fn final_states(digests: &[&str]) -> Vec<Op> {
        digests
            .iter()
            .enumerate()
            .flat_map(|(i, d)| {
                pair(
                    90 + i as u64,
                    "final-state",
                    &format!("n{}", i + 1),
                    1000,
                    json!({ "digest": d, "projects": 1, "state": { "p": d } }),
                )
            })
            .collect()
    }

    #[test]
    fn one_leader_per_term_and_identical_states_are_valid() {
        let mut h = Vec::new();
        h.extend(pair(1, "members", "n1", 0, json!({ "term": 1, "leader": "A" })));
        h.extend(pair(2, "members", "n2", 0, json!({ "term": 1, "leader": "A" })));
        h.extend(pair(1, "members", "n1", 10, json!({ "term": 2, "leader": "B", "leader_raft_id": "7" })));
        // openraft lets a greater id win a term already won: A (9) after B (7) in term 2.
        h.extend(pair(2, "members", "n2", 12, json!({ "term": 2, "leader": "A", "leader_raft_id": "9" })));
        let vote = |node: &str, committed| json!({ "term": 2, "node": node, "committed": committed });
        h.extend(pair(
            1,
            "health",
            "n1",
            20,
            json!({ "member": "A", "term": 2, "vote": vote("7", true), "applied": 5 }),
        ));
        h.extend(pair(
            1,
            "health",
            "n1",
            25,
            json!({ "member": "A", "term": 2, "vote": vote("9", false), "applied": 6 }),
        ));
        h.extend(pair(
            1,
            "health",
            "n1",
            30,
            json!({ "member": "A", "term": 2, "vote": vote("9", true), "applied": 7 }),
        ));
        h.extend(final_states(&["x", "x", "x"]));
        let v = check(&h);
        assert_eq!(v.valid, Validity::Valid, "{}", v.details);
        assert_eq!(v.details["terms_with_two_leaders"][0]["term"], 2, "{}", v.details);
    }

    #[test]
    fn one_leader_id_for_two_members_regressions_and_divergence_are_violations() {
        let mut h = Vec::new();
        h.extend(pair(1, "members", "n1", 0, json!({ "term": 3, "leader": "A", "leader_raft_id": "5" })));
        h.extend(pair(2, "members", "n2", 0, json!({ "term": 3, "leader": "B", "leader_raft_id": "5" })));
        let vote = |node: &str| json!({ "term": 3, "node": node, "committed": true });
        h.extend(pair(1, "health", "n1", 20, json!({ "member": "A", "term": 3, "vote": vote("5"), "applied": 9 })));
        h.extend(pair(1, "health", "n1", 30, json!({ "member": "A", "term": 3, "vote": vote("4"), "applied": 4 })));
        h.extend(final_states(&["x", "y", "x"]));
        let v = check(&h);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["split_brain"]["count"], 1);
        let fields: Vec<&Value> =
            v.details["regressions"]["examples"].as_array().unwrap().iter().map(|e| &e["field"]).collect();
        assert_eq!(fields, vec![&json!("applied"), &json!("vote")], "{}", v.details);
        assert_eq!(v.details["divergent"]["count"], 1);
        assert_eq!(v.details["divergent"]["examples"][0]["differences"][0]["key"], "p");
    }

    #[test]
    fn the_applied_index_may_restart_lower_with_a_new_process_but_the_term_may_not() {
        let mut h = Vec::new();
        h.extend(pair(1, "health", "n1", 20, json!({ "member": "A", "term": 3, "applied": 9 })));
        h.push(Op::new(OpType::Info, Process::Named("monitor".into()), "cluster", "start").node("n1").at(25));
        h.extend(pair(1, "health", "n1", 30, json!({ "member": "A", "term": 3, "applied": 7 })));
        h.extend(pair(1, "health", "n1", 40, json!({ "member": "A", "term": 3, "applied": 6 })));
        h.extend(pair(1, "health", "n1", 50, json!({ "member": "A", "term": 2, "applied": 8 })));
        h.extend(final_states(&["x"]));
        let v = check(&h);
        let fields: Vec<&Value> =
            v.details["regressions"]["examples"].as_array().unwrap().iter().map(|e| &e["field"]).collect();
        assert_eq!(fields, vec![&json!("applied"), &json!("term")], "7 -> 6 in one life, and the term: {}", v.details);
    }

    #[test]
    fn a_removed_member_serving_a_read_and_a_crash_are_violations() {
        let mut h = final_states(&["x"]);
        h.extend(pair(5, "removed-read", "n4", 50, json!({ "status": 200 })));
        h.push(
            Op::new(OpType::Info, Process::Named("monitor".into()), "cluster", "exit")
                .value(json!({ "node": "n2", "expected": false })),
        );
        let v = check(&h);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["removed_served"]["count"], 1);
        assert_eq!(v.details["unexplained_exits"]["count"], 1);
    }
}
