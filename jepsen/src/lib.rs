//! steward's Jepsen-style chaos harness: real `steward` members on their own network hosts,
//! faults drawn from a seed, client workloads, and checkers that judge the recorded history.
//! `README.md` beside this crate states the contract.
//!
//! # Layout
//! - [`cli`]: the options; [`run`]: one run from preflight to teardown.
//! - [`sys`]: tools, root, the register of created resources (teardown, `--cleanup`), signals.
//! - [`net`]: namespaces, the bridge, and the nftables firewall that partitions and drops.
//! - [`db`]: member processes: start in a namespace, kill, pause, wipe, clock, fiu, power loss.
//! - [`client`]: the HTTP client and how answers become history outcomes.
//! - [`history`]: the history (Jepsen's invoke/ok/fail/info) and its JSON-lines file.
//! - [`nemesis`]: fault packages, the seeded schedule, the executor and the final heal.
//! - [`workload`]: the `Workload` trait and the register, set, cluster and auth workloads.
//! - [`checker`]: pure checkers (linearizability, set, cluster, auth, schedule).
//! - [`report`]: the HTML report with SVG timeline, latency and throughput plots.

pub mod checker;
pub mod cli;
pub mod client;
pub mod db;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod report;
pub mod run;
pub mod sys;
pub mod workload;
