//! The set checker (Jepsen's `set-full`, simplified): elements are added once each with unique
//! names and deleted at most once after their add was acknowledged.
//!
//! Operations (workload `set`): `add` and `delete` with the element as value; `read` (during the
//! run) and `final-read` (one per member after the final heal) with the list of elements seen.
//!
//! Violations:
//! - **lost**: an acknowledged add, never deleted (or whose delete certainly failed), missing
//!   from a final read;
//! - **resurrected**: an acknowledged delete whose element is in a final read;
//! - **answered 4xx but applied**: an add that certainly failed (4xx) whose element is seen, or
//!   a delete that certainly failed whose element disappears after it (reported once per
//!   element);
//! - **never added**: an element present in a read that no add created;
//! - **stale read**: a read that started after an add (delete) was acknowledged and misses
//!   (still shows) the element, while no delete of it was in flight;
//! - **future read**: a read that shows an element whose add was invoked after the read ended.
//!
//! Indeterminate adds and deletes may or may not have happened; the checker accepts either.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::{secs, Examples, Validity, Verdict};
use crate::history::{pairs, Op, OpType, Pair};

#[derive(Default)]
struct Element<'a> {
    add: Option<Pair<'a>>,
    delete: Option<Pair<'a>>,
}

fn elements_of(v: &Value) -> Option<BTreeSet<String>> {
    v.as_array().map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
}

/// Checks the `set` workload of `history`.
pub fn check(history: &[Op]) -> Verdict {
    let all = pairs(history);
    let ps: Vec<&Pair<'_>> = all.iter().filter(|p| p.invoke.workload == "set").collect();
    let mut elems: BTreeMap<String, Element<'_>> = BTreeMap::new();
    for p in &ps {
        let Some(e) = p.invoke.value.as_str() else { continue };
        match p.invoke.f.as_str() {
            "add" => elems.entry(e.to_string()).or_default().add = Some(**p),
            "delete" => elems.entry(e.to_string()).or_default().delete = Some(**p),
            _ => {}
        }
    }
    let mut lost = Examples::default();
    let mut resurrected = Examples::default();
    let mut unexpected = Examples::default();
    // Elements whose add or delete was answered with a 4xx (certainly not applied) and which
    // nevertheless took effect: one entry per element, not per read.
    let mut failed_applied: BTreeMap<String, Value> = BTreeMap::new();
    let mut stale = Examples::default();
    let mut future = Examples::default();
    let mut reads = 0usize;
    let mut final_reads = 0usize;
    let mut final_failed = Vec::new();

    for p in &ps {
        let f = p.invoke.f.as_str();
        if f != "read" && f != "final-read" {
            continue;
        }
        if p.outcome() != OpType::Ok {
            if f == "final-read" {
                final_failed.push(p.invoke.node.clone().unwrap_or_default());
            }
            continue;
        }
        let Some(seen) = elements_of(p.result()) else { continue };
        let (start, end) = (p.start(), p.end().unwrap_or(u64::MAX));
        let node = p.invoke.node.clone().unwrap_or_default();
        if f == "read" {
            reads += 1;
        } else {
            final_reads += 1;
        }
        for e in &seen {
            match elems.get(e).and_then(|el| el.add.as_ref()) {
                None => unexpected.push(json!({ "element": e, "node": node, "why": "never added", "read_at_s": secs(start) })),
                Some(add) if add.outcome() == OpType::Fail => {
                    failed_applied.entry(e.clone()).or_insert_with(|| json!({
                        "element": e, "op": "add", "answer": add.done.and_then(|d| d.error.clone()),
                        "invoked_s": secs(add.start()), "seen_on": node, "seen_at_s": secs(start),
                    }));
                }
                Some(add) if add.start() > end => {
                    future.push(json!({ "element": e, "node": node, "read_ended_s": secs(end), "add_invoked_s": secs(add.start()) }))
                }
                _ => {}
            }
        }
        for (e, el) in &elems {
            let Some(add) = el.add.as_ref().filter(|a| a.outcome() == OpType::Ok) else { continue };
            let present = seen.contains(e);
            // A delete answered with a 4xx that took effect anyway: one anomaly, reported once,
            // rather than a "lost" element and a stale read per later read.
            if let Some(d) = el.delete.as_ref().filter(|d| d.outcome() == OpType::Fail && d.start() <= end) {
                if !present && add.end().is_some_and(|t| t < start) {
                    failed_applied.entry(e.clone()).or_insert_with(|| {
                        json!({
                            "element": e, "op": "delete", "answer": d.done.and_then(|x| x.error.clone()),
                            "invoked_s": secs(d.start()), "seen_on": node, "seen_at_s": secs(start),
                        })
                    });
                    continue;
                }
            }
            let delete_ok_before = el.delete.as_ref().filter(|d| d.outcome() == OpType::Ok).and_then(|d| d.end());
            // A delete that may have happened by the time this read ended.
            let delete_maybe_by_end =
                el.delete.as_ref().is_some_and(|d| d.outcome() != OpType::Fail && d.start() <= end);
            if f == "final-read" {
                if !present && !delete_maybe_by_end {
                    lost.push(json!({ "element": e, "node": node, "added_s": secs(add.end().unwrap_or(0)) }));
                }
                if present && delete_ok_before.is_some() {
                    resurrected
                        .push(json!({ "element": e, "node": node, "deleted_s": secs(delete_ok_before.unwrap_or(0)) }));
                }
                continue;
            }
            let added_before = add.end().is_some_and(|t| t < start);
            if added_before && !present && !delete_maybe_by_end {
                stale.push(json!({
                    "element": e, "node": node, "why": "acknowledged add missing",
                    "added_s": secs(add.end().unwrap_or(0)), "read_s": [secs(start), secs(end)],
                }));
            }
            if present && delete_ok_before.is_some_and(|t| t < start) {
                stale.push(json!({
                    "element": e, "node": node, "why": "acknowledged delete still visible",
                    "deleted_s": secs(delete_ok_before.unwrap_or(0)), "read_s": [secs(start), secs(end)],
                }));
            }
        }
    }

    let count = |t: OpType, f: &str| {
        elems.values().filter_map(|el| if f == "add" { el.add } else { el.delete }).filter(|p| p.outcome() == t).count()
    };
    let details = json!({
        "adds": { "ok": count(OpType::Ok, "add"), "fail": count(OpType::Fail, "add"), "info": count(OpType::Info, "add") },
        "deletes": { "ok": count(OpType::Ok, "delete"), "fail": count(OpType::Fail, "delete"), "info": count(OpType::Info, "delete") },
        "reads": reads,
        "final_reads": final_reads,
        "final_reads_failed": final_failed,
        "lost": lost,
        "resurrected": resurrected,
        "unexpected": unexpected,
        "failed_but_applied": failed_applied.values().collect::<Vec<_>>(),
        "stale_reads": stale,
        "future_reads": future,
    });
    let bad =
        [&lost, &resurrected, &unexpected, &stale, &future].iter().any(|x| !x.is_empty()) || !failed_applied.is_empty();
    let valid = if bad {
        Validity::Invalid
    } else if final_reads == 0 {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    let summary = format!(
        "{} elements, {final_reads} final reads: {} lost, {} resurrected, {} never added, {} answered 4xx but applied, \
         {} stale reads, {} future reads",
        elems.len(),
        lost.count,
        resurrected.count,
        unexpected.count,
        failed_applied.len(),
        stale.count,
        future.count
    );
    Verdict::new("set", valid, summary, details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;

    /// Builds a history from (process, type, f, value, time) rows.
    fn h(rows: &[(u64, OpType, &str, Value, u64)]) -> Vec<Op> {
        rows.iter()
            .enumerate()
            .map(|(i, (p, t, f, v, time))| {
                let mut o = Op::new(*t, Process::Client(*p), "set", f).value(v.clone()).node("n1").at(*time);
                o.index = i as u64;
                o
            })
            .collect()
    }

    use OpType::*;

    #[test]
    fn a_correct_history_with_indeterminate_operations_is_valid() {
        let hist = h(&[
            (1, Invoke, "add", json!("a"), 0),
            (1, Ok, "add", json!("a"), 1),
            (2, Invoke, "add", json!("b"), 2),
            (2, Info, "add", json!("b"), 3),
            (1, Invoke, "add", json!("c"), 4),
            (1, Ok, "add", json!("c"), 5),
            (1, Invoke, "delete", json!("c"), 6),
            (1, Ok, "delete", json!("c"), 7),
            (3, Invoke, "add", json!("d"), 8),
            (3, Fail, "add", json!("d"), 9),
            (1, Invoke, "read", Value::Null, 10),
            (1, Ok, "read", json!(["a", "b"]), 11),
            (1, Invoke, "final-read", Value::Null, 20),
            (1, Ok, "final-read", json!(["a"]), 21),
        ]);
        let v = check(&hist);
        assert_eq!(v.valid, Validity::Valid, "{}", v.details);
    }

    #[test]
    fn a_lost_add_and_a_resurrected_delete_are_violations() {
        let hist = h(&[
            (1, Invoke, "add", json!("a"), 0),
            (1, Ok, "add", json!("a"), 1),
            (1, Invoke, "add", json!("c"), 2),
            (1, Ok, "add", json!("c"), 3),
            (1, Invoke, "delete", json!("c"), 4),
            (1, Ok, "delete", json!("c"), 5),
            (1, Invoke, "final-read", Value::Null, 20),
            (1, Ok, "final-read", json!(["c"]), 21),
        ]);
        let v = check(&hist);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["lost"]["count"], 1);
        assert_eq!(v.details["resurrected"]["count"], 1);
    }

    #[test]
    fn a_stale_read_and_a_failed_add_that_took_effect_are_violations() {
        let hist = h(&[
            (1, Invoke, "add", json!("a"), 0),
            (1, Ok, "add", json!("a"), 1),
            (2, Invoke, "add", json!("x"), 2),
            (2, Fail, "add", json!("x"), 3),
            (1, Invoke, "read", Value::Null, 4),
            (1, Ok, "read", json!(["x"]), 5),
            (1, Invoke, "final-read", Value::Null, 20),
            (1, Ok, "final-read", json!(["a"]), 21),
        ]);
        let v = check(&hist);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["stale_reads"]["count"], 1);
        assert_eq!(v.details["failed_but_applied"][0]["op"], "add");
    }

    #[test]
    fn a_delete_answered_404_that_took_effect_is_one_anomaly_not_a_lost_element() {
        let hist = h(&[
            (1, Invoke, "add", json!("a"), 0),
            (1, Ok, "add", json!("a"), 1),
            (2, Invoke, "delete", json!("a"), 2),
            (2, Fail, "delete", json!("a"), 3),
            (1, Invoke, "read", Value::Null, 4),
            (1, Ok, "read", json!([]), 5),
            (1, Invoke, "final-read", Value::Null, 20),
            (1, Ok, "final-read", json!([]), 21),
        ]);
        let v = check(&hist);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["lost"]["count"], 0);
        assert_eq!(v.details["stale_reads"]["count"], 0);
        assert_eq!(v.details["failed_but_applied"].as_array().unwrap().len(), 1);
        assert_eq!(v.details["failed_but_applied"][0]["op"], "delete");
    }

    #[test]
    fn without_a_final_read_the_answer_is_unknown() {
        let hist = h(&[(1, Invoke, "add", json!("a"), 0), (1, Ok, "add", json!("a"), 1)]);
        assert_eq!(check(&hist).valid, Validity::Unknown);
    }
}
