//! Linearizability checking: Wing & Gong's search with Lowe's memoisation, as Porcupine and
//! Knossos's `wgl` implement it, plus the per-key register checker built on it.
//!
//! The history of one object becomes a doubly linked list of call and return entries in time
//! order (calls before returns at equal times, the permissive choice). The search walks the
//! list: at a call it tries to linearize that operation now (the model must accept it, and the
//! pair (set of linearized operations, model state) must be new: the cache is what makes the
//! search practical); at a return of an operation not yet linearized it must backtrack. An
//! empty list means every operation found a place.
//!
//! Indeterminate operations (`info`: timed out, or a 5xx after the request may have reached a
//! leader) get their return at +∞: they may take effect at any point after their invocation,
//! or never; the search may leave them in the list at the end. Failed operations certainly did
//! not happen and are dropped before the search, as are indeterminate reads (no effect).
//!
//! Linearizability is local (Herlihy & Wing), so a history of many keys is linearizable iff
//! each key's sub-history is: [`check_registers`] checks keys independently on up to two
//! threads, each with a step budget after which the key is `unknown` rather than hanging.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use serde_json::{json, Value};

use super::{secs, Validity, Verdict};
use crate::history::{pairs, Op, OpType};

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Input;
    fn init(&self) -> Self::State;
    /// The state after applying `input` to `state`, or `None` if the operation (with the output
    /// it observed, carried in `input`) is impossible in `state`.
    fn step(&self, state: &Self::State, input: &Self::Input) -> Option<Self::State>;
}

/// One operation of a single object's history.
#[derive(Debug, Clone)]
pub struct Call<I> {
    /// Where the operation came from (its invocation's history index), for reports.
    pub id: u64,
    pub call: u64,
    /// `None`: indeterminate; it may take effect at any time after `call`.
    pub ret: Option<u64>,
    pub input: I,
}

/// Result of a search.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Linearizable,
    /// No order exists. `stuck` is the history id of the operation whose return could not be
    /// reached in the deepest partial linearization found, `prefix` that linearization's ids.
    Illegal {
        stuck: u64,
        prefix: Vec<u64>,
    },
    /// The step budget ran out.
    Unknown {
        steps: u64,
    },
}

const NIL: usize = usize::MAX;

struct Node {
    /// Index into the calls; `NIL` for the head sentinel.
    op: usize,
    is_call: bool,
    /// The other entry of the same operation.
    other: usize,
    prev: usize,
    next: usize,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Searches for a linearization of `calls` under `model`, giving up after `budget` steps.
pub fn check<M: Model>(model: &M, calls: &[Call<M::Input>], budget: u64) -> Outcome {
    // Entries: node 0 is the head; then a call and a return per operation, in time order.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(calls.len() * 2);
    for (i, c) in calls.iter().enumerate() {
        events.push((c.call, false, i));
        events.push((c.ret.unwrap_or(u64::MAX), true, i));
    }
    // At equal times calls come first (false < true): overlapping operations are concurrent.
    events.sort_by_key(|&(t, is_ret, i)| (t, is_ret, i));
    let mut nodes = Vec::with_capacity(events.len() + 1);
    nodes.push(Node { op: NIL, is_call: false, other: NIL, prev: NIL, next: NIL });
    let mut call_node = vec![NIL; calls.len()];
    for (k, &(_, is_ret, i)) in events.iter().enumerate() {
        let idx = k + 1;
        nodes.push(Node { op: i, is_call: !is_ret, other: NIL, prev: idx - 1, next: NIL });
        nodes[idx - 1].next = idx;
        if is_ret {
            let c = call_node[i];
            nodes[c].other = idx;
            nodes[idx].other = c;
        } else {
            call_node[i] = idx;
        }
    }

    fn lift(nodes: &mut [Node], c: usize) {
        let (p, n) = (nodes[c].prev, nodes[c].next);
        nodes[p].next = n;
        if n != NIL {
            nodes[n].prev = p;
        }
        let r = nodes[c].other;
        let (p, n) = (nodes[r].prev, nodes[r].next);
        nodes[p].next = n;
        if n != NIL {
            nodes[n].prev = p;
        }
    }
    fn unlift(nodes: &mut [Node], c: usize) {
        let r = nodes[c].other;
        let (p, n) = (nodes[r].prev, nodes[r].next);
        nodes[p].next = r;
        if n != NIL {
            nodes[n].prev = r;
        }
        let (p, n) = (nodes[c].prev, nodes[c].next);
        nodes[p].next = c;
        if n != NIL {
            nodes[n].prev = c;
        }
    }

    let mut linearized = Bits::new(calls.len());
    let mut cache: HashMap<u64, Vec<(Bits, M::State)>> = HashMap::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut entry = nodes[0].next;
    let mut steps = 0u64;
    // The deepest partial linearization seen, for the report.
    let mut best: (usize, u64, Vec<u64>) = (0, 0, Vec::new());

    while nodes[0].next != NIL {
        steps += 1;
        if steps > budget {
            return Outcome::Unknown { steps };
        }
        if entry == NIL {
            // Only reachable if a return precedes its call, which sorting rules out.
            return Outcome::Unknown { steps };
        }
        let node = &nodes[entry];
        if node.is_call {
            let op = node.op;
            if let Some(next_state) = model.step(&state, &calls[op].input) {
                let mut bits = linearized.clone();
                bits.set(op);
                let mut h = DefaultHasher::new();
                bits.hash(&mut h);
                next_state.hash(&mut h);
                let bucket = cache.entry(h.finish()).or_default();
                if !bucket.iter().any(|(b, s)| *b == bits && *s == next_state) {
                    bucket.push((bits.clone(), next_state.clone()));
                    stack.push((entry, std::mem::replace(&mut state, next_state)));
                    linearized = bits;
                    lift(&mut nodes, entry);
                    entry = nodes[0].next;
                    continue;
                }
            }
            entry = nodes[entry].next;
        } else {
            // A return of an operation not linearized yet: this branch cannot work.
            if stack.len() >= best.0 {
                best = (stack.len(), calls[node.op].id, stack.iter().map(|(e, _)| calls[nodes[*e].op].id).collect());
            }
            let Some((c, prev_state)) = stack.pop() else {
                return Outcome::Illegal { stuck: best.1, prefix: best.2 };
            };
            linearized.clear(nodes[c].op);
            state = prev_state;
            unlift(&mut nodes, c);
            entry = nodes[c].next;
        }
    }
    Outcome::Linearizable
}

/// A read/write register. Values are unique per write, which keeps the search small.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

/// A register operation with what it observed.
#[derive(Debug, Clone, PartialEq)]
pub enum RegInput {
    /// A read that returned this value (`None`: the key was unset).
    Read(Option<i64>),
    Write(i64),
}

impl Model for Register {
    type State = Option<i64>;
    type Input = RegInput;
    fn init(&self) -> Option<i64> {
        None
    }
    fn step(&self, state: &Option<i64>, input: &RegInput) -> Option<Option<i64>> {
        match input {
            RegInput::Read(v) => (v == state).then_some(*state),
            RegInput::Write(v) => Some(Some(*v)),
        }
    }
}

/// A cheap, sound test for the most common anomaly, which the search can take exponentially
/// long to prove when many writes are indeterminate: with unique values, a read that starts
/// after a write `u` ended, where `u` itself started after the write `v` the read returned had
/// ended, is stale (`v` ≺ `u` ≺ read in real time, and nothing writes `v` again). A read of
/// the initial value after any acknowledged write, and a read of a value never written (or
/// whose write failed), are stale or phantom the same way. Returns the first such read's id.
pub fn stale_read(calls: &[Call<RegInput>]) -> Option<(u64, &'static str)> {
    let mut writes: HashMap<i64, &Call<RegInput>> = HashMap::new();
    // Acknowledged writes as (invocation, completion).
    let mut acked: Vec<(u64, u64)> = Vec::new();
    for c in calls {
        if let RegInput::Write(v) = c.input {
            writes.insert(v, c);
            if let Some(r) = c.ret {
                acked.push((c.call, r));
            }
        }
    }
    for c in calls {
        let RegInput::Read(seen) = c.input else { continue };
        let start = c.call;
        match seen {
            None => {
                if acked.iter().any(|&(_, r)| r < start) {
                    return Some((c.id, "read the initial value after an acknowledged write"));
                }
            }
            Some(v) => match writes.get(&v) {
                None => return Some((c.id, "read a value that was never (successfully) written")),
                Some(w) => {
                    if w.call > c.ret.unwrap_or(u64::MAX) {
                        return Some((c.id, "read a value before its write began"));
                    }
                    if let Some(w_end) = w.ret {
                        if acked.iter().any(|&(call, r)| call > w_end && r < start) {
                            return Some((c.id, "stale read: a later write had completed before the read began"));
                        }
                    }
                }
            },
        }
    }
    None
}

/// Steps allowed per key before it is reported unknown.
pub const DEFAULT_BUDGET: u64 = 5_000_000;

/// The register operations of one key, from the history: ok reads, ok and indeterminate writes.
pub fn register_calls(history: &[Op], workload: &str) -> BTreeMap<String, Vec<Call<RegInput>>> {
    let mut by_key: BTreeMap<String, Vec<Call<RegInput>>> = BTreeMap::new();
    for p in pairs(history) {
        if p.invoke.workload != workload {
            continue;
        }
        let Some(key) = &p.invoke.key else { continue };
        let input = match (p.invoke.f.as_str(), p.outcome()) {
            (_, OpType::Fail) => continue,
            ("read", OpType::Ok) => RegInput::Read(p.result().as_i64()),
            ("read", _) => continue,
            ("write", _) => match p.invoke.value.as_i64() {
                Some(v) => RegInput::Write(v),
                None => continue,
            },
            _ => continue,
        };
        by_key.entry(key.clone()).or_default().push(Call { id: p.invoke.index, call: p.start(), ret: p.end(), input });
    }
    by_key
}

/// One key's operations.
type KeyCalls = (String, Vec<Call<RegInput>>);
/// One key's result: key, operations, the search's outcome, the quick test's finding.
type KeyResult = (String, usize, Outcome, Option<(u64, &'static str)>);

/// Checks every key of the `workload` register history, on up to two threads.
pub fn check_registers(history: &[Op], workload: &str, budget: u64) -> Verdict {
    let keys: Vec<KeyCalls> = register_calls(history, workload).into_iter().collect();
    let results: Vec<KeyResult> = {
        let chunks: Vec<&[KeyCalls]> = keys.chunks(keys.len().div_ceil(2).max(1)).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|(k, calls)| {
                                (k.clone(), calls.len(), check(&Register, calls, budget), stale_read(calls))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        })
    };
    let by_index: HashMap<u64, &Op> = history.iter().map(|o| (o.index, o)).collect();
    let describe = |id: u64| -> Value {
        match by_index.get(&id) {
            Some(o) => {
                let done = pairs(history).into_iter().find(|p| p.invoke.index == id).and_then(|p| p.done);
                json!({
                    "index": id, "f": o.f, "value": o.value, "node": o.node, "process": o.process,
                    "invoked_s": secs(o.time),
                    "completed_s": done.map(|d| secs(d.time)),
                    "outcome": done.map(|d| d.kind),
                    "result": done.map(|d| d.value.clone()),
                })
            }
            None => json!({ "index": id }),
        }
    };
    let mut invalid = Vec::new();
    let mut unknown = Vec::new();
    let mut ops = 0;
    for (key, n, outcome, stale) in &results {
        ops += n;
        match outcome {
            // The search's verdict is authoritative; the quick test only decides keys the
            // search gave up on (and would be a checker bug if it disagreed with a search
            // that finished: reported, not hidden).
            Outcome::Linearizable if stale.is_some() => {
                let (id, why) = stale.expect("checked");
                invalid.push(json!({ "key": key, "operations": n, "stuck": describe(id), "why": why, "note": "quick test disagrees with the search" }))
            }
            Outcome::Unknown { .. } if stale.is_some() => {
                let (id, why) = stale.expect("checked");
                invalid.push(json!({ "key": key, "operations": n, "stuck": describe(id), "why": why }))
            }
            Outcome::Linearizable => {}
            Outcome::Illegal { stuck, prefix } => invalid.push(json!({
                "key": key,
                "operations": n,
                "stuck": describe(*stuck),
                "linearized_before": prefix.iter().rev().take(8).rev().map(|id| describe(*id)).collect::<Vec<_>>(),
            })),
            Outcome::Unknown { steps } => unknown.push(json!({ "key": key, "operations": n, "steps": steps })),
        }
    }
    let valid = if !invalid.is_empty() {
        Validity::Invalid
    } else if !unknown.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    let summary = format!(
        "{} keys, {ops} operations checked: {} not linearizable, {} undecided",
        results.len(),
        invalid.len(),
        unknown.len()
    );
    Verdict::new(
        workload,
        valid,
        summary,
        json!({ "keys": results.len(), "operations": ops, "non_linearizable": invalid, "unknown": unknown }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;

    fn call(id: u64, call: u64, ret: Option<u64>, input: RegInput) -> Call<RegInput> {
        Call { id, call, ret, input }
    }

    #[test]
    fn sequential_writes_and_reads_are_linearizable() {
        let h = vec![
            call(0, 0, Some(1), RegInput::Read(None)),
            call(1, 2, Some(3), RegInput::Write(1)),
            call(2, 4, Some(5), RegInput::Read(Some(1))),
            call(3, 6, Some(7), RegInput::Write(2)),
            call(4, 8, Some(9), RegInput::Read(Some(2))),
        ];
        assert_eq!(check(&Register, &h, 1000), Outcome::Linearizable);
    }

    #[test]
    fn a_stale_read_is_rejected() {
        // write 1 completes, write 2 completes, then a read returns 1.
        let h = vec![
            call(0, 0, Some(1), RegInput::Write(1)),
            call(1, 2, Some(3), RegInput::Write(2)),
            call(2, 4, Some(5), RegInput::Read(Some(1))),
        ];
        assert!(matches!(check(&Register, &h, 1000), Outcome::Illegal { stuck: 2, .. }));
    }

    #[test]
    fn a_lost_write_is_rejected() {
        // An acknowledged write is never seen: a later read returns the initial value.
        let h = vec![call(0, 0, Some(1), RegInput::Write(7)), call(1, 2, Some(3), RegInput::Read(None))];
        assert!(matches!(check(&Register, &h, 1000), Outcome::Illegal { .. }));
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // Two overlapping writes; reads after both see either, but consistently.
        let h = vec![
            call(0, 0, Some(10), RegInput::Write(1)),
            call(1, 1, Some(9), RegInput::Write(2)),
            call(2, 2, Some(8), RegInput::Read(Some(2))),
            call(3, 11, Some(12), RegInput::Read(Some(1))),
        ];
        assert_eq!(check(&Register, &h, 1000), Outcome::Linearizable);
        // …but once 1 was read after both ended, 2 cannot come back.
        let mut bad = h.clone();
        bad.push(call(4, 13, Some(14), RegInput::Read(Some(2))));
        assert!(matches!(check(&Register, &bad, 1000), Outcome::Illegal { .. }));
    }

    #[test]
    fn an_indeterminate_write_may_take_effect_late_or_never() {
        // A timed-out write of 5, invoked early, shows up long after later operations.
        let late = vec![
            call(0, 0, None, RegInput::Write(5)),
            call(1, 10, Some(11), RegInput::Write(6)),
            call(2, 12, Some(13), RegInput::Read(Some(6))),
            call(3, 20, Some(21), RegInput::Read(Some(5))),
        ];
        assert_eq!(check(&Register, &late, 1000), Outcome::Linearizable);
        // …or never.
        let never = vec![call(0, 0, None, RegInput::Write(5)), call(1, 10, Some(11), RegInput::Read(None))];
        assert_eq!(check(&Register, &never, 1000), Outcome::Linearizable);
        // But it cannot be seen before it was invoked.
        let early = vec![call(0, 0, Some(1), RegInput::Read(Some(5))), call(1, 10, None, RegInput::Write(5))];
        assert!(matches!(check(&Register, &early, 1000), Outcome::Illegal { .. }));
    }

    #[test]
    fn the_budget_turns_a_long_search_into_unknown() {
        let h: Vec<_> = (0..30).map(|i| call(i, 0, Some(100), RegInput::Write(i as i64))).collect();
        let mut h = h;
        h.push(call(99, 200, Some(201), RegInput::Read(Some(-1))));
        assert!(matches!(check(&Register, &h, 50), Outcome::Unknown { .. }));
    }

    #[test]
    fn the_quick_test_finds_stale_and_phantom_reads_and_accepts_late_indeterminate_writes() {
        let stale = vec![
            call(0, 0, Some(1), RegInput::Write(1)),
            call(1, 2, Some(3), RegInput::Write(2)),
            call(2, 4, Some(5), RegInput::Read(Some(1))),
        ];
        assert_eq!(stale_read(&stale).map(|s| s.0), Some(2));
        let initial = vec![call(0, 0, Some(1), RegInput::Write(1)), call(1, 2, Some(3), RegInput::Read(None))];
        assert_eq!(stale_read(&initial).map(|s| s.0), Some(1));
        let phantom = vec![call(0, 0, Some(1), RegInput::Read(Some(9)))];
        assert_eq!(stale_read(&phantom).map(|s| s.0), Some(0));
        // An indeterminate write of 1 may land after the write of 2.
        let late = vec![
            call(0, 0, None, RegInput::Write(1)),
            call(1, 2, Some(3), RegInput::Write(2)),
            call(2, 4, Some(5), RegInput::Read(Some(1))),
        ];
        assert_eq!(stale_read(&late), None);
        assert_eq!(check(&Register, &late, 1000), Outcome::Linearizable);
    }

    #[test]
    fn a_key_the_search_gives_up_on_is_still_invalid_when_a_read_is_stale() {
        // Many concurrent indeterminate writes make the search long; the stale read at the
        // end is still found.
        let mut h: Vec<_> = (0..40).map(|i| call(i, i, None, RegInput::Write(i as i64 + 100))).collect();
        h.push(call(50, 100, Some(101), RegInput::Write(1)));
        h.push(call(51, 102, Some(103), RegInput::Write(2)));
        h.push(call(52, 104, Some(105), RegInput::Read(Some(1))));
        let mut ops = Vec::new();
        for c in &h {
            let (f, value) = match c.input {
                RegInput::Write(v) => ("write", json!(v)),
                RegInput::Read(v) => ("read", json!(v)),
            };
            let mut inv = Op::new(OpType::Invoke, Process::Client(c.id), "register", f).key("k").at(c.call);
            if f == "write" {
                inv.value = value.clone();
            }
            ops.push(inv);
            let kind = if c.ret.is_some() { OpType::Ok } else { OpType::Info };
            ops.push(
                Op::new(kind, Process::Client(c.id), "register", f).key("k").value(value).at(c.ret.unwrap_or(200)),
            );
        }
        ops.sort_by_key(|o| o.time);
        for (i, o) in ops.iter_mut().enumerate() {
            o.index = i as u64;
        }
        let v = check_registers(&ops, "register", 2_000);
        assert_eq!(v.valid, Validity::Invalid, "{}", v.details);
        assert_eq!(v.details["non_linearizable"][0]["stuck"]["f"], "read");
    }

    fn op(kind: OpType, p: u64, f: &str, key: &str, t: u64) -> Op {
        Op::new(kind, Process::Client(p), "register", f).key(key).at(t)
    }

    /// Hand-written histories in the recorder's shape: the register checker splits them by key.
    fn indexed(mut h: Vec<Op>) -> Vec<Op> {
        for (i, o) in h.iter_mut().enumerate() {
            o.index = i as u64;
        }
        h
    }

    #[test]
    fn the_register_checker_splits_by_key_and_names_the_bad_key() {
        let h = indexed(vec![
            op(OpType::Invoke, 1, "write", "a", 0).value(1),
            op(OpType::Ok, 1, "write", "a", 1).value(1),
            op(OpType::Invoke, 2, "write", "b", 2).value(2),
            op(OpType::Ok, 2, "write", "b", 3).value(2),
            // Key a reads its own value; key b's read is stale (the initial value).
            op(OpType::Invoke, 1, "read", "a", 4),
            op(OpType::Ok, 1, "read", "a", 5).value(1),
            op(OpType::Invoke, 2, "read", "b", 6),
            op(OpType::Ok, 2, "read", "b", 7),
        ]);
        let v = check_registers(&h, "register", DEFAULT_BUDGET);
        assert_eq!(v.valid, Validity::Invalid, "{v:?}");
        let bad = v.details["non_linearizable"].as_array().unwrap();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0]["key"], "b");
        assert_eq!(bad[0]["stuck"]["f"], "read");
    }

    #[test]
    fn the_register_checker_accepts_info_and_drops_failures() {
        let h = indexed(vec![
            op(OpType::Invoke, 1, "write", "a", 0).value(1),
            op(OpType::Info, 1, "write", "a", 5).value(1).error("timeout"),
            // A failed write never happened, even though it was invoked.
            op(OpType::Invoke, 3, "write", "a", 1).value(9),
            op(OpType::Fail, 3, "write", "a", 2).value(9),
            op(OpType::Invoke, 2, "read", "a", 10),
            op(OpType::Ok, 2, "read", "a", 11),
            op(OpType::Invoke, 2, "read", "a", 12),
            op(OpType::Ok, 2, "read", "a", 13).value(1),
            // A timed-out read says nothing.
            op(OpType::Invoke, 4, "read", "a", 14),
            op(OpType::Info, 4, "read", "a", 15),
        ]);
        let v = check_registers(&h, "register", DEFAULT_BUDGET);
        assert_eq!(v.valid, Validity::Valid, "{v:?}");
        // The same history where the failed write is observed is not linearizable.
        let mut bad = h.clone();
        bad[7].value = json!(9);
        assert_eq!(check_registers(&bad, "register", DEFAULT_BUDGET).valid, Validity::Invalid);
    }
}
