//! Command-line options.

use std::path::PathBuf;

use clap::Parser;

use crate::nemesis::Package;

/// steward's chaos harness: real members in their own network namespaces, faults drawn from a
/// seed, workloads with checkers. Needs root. Exit status: 0 valid, 1 a violation, 2 the
/// harness failed, 3 undecided.
#[derive(Debug, Clone, Parser)]
#[command(name = "jepsen", version)]
pub struct Opts {
    /// Seconds of workload under faults (set-up, recovery and final reads come on top).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub time_limit: u64,
    /// Faults to mix: all, none, or a comma-separated list of partition, kill, pause, clock,
    /// member, packet, disk, power, netfault.
    #[arg(long, default_value = "all", value_parser = Packages::parse)]
    pub nemesis: Packages,
    /// Roughly how long each fault lasts, in seconds (faults come about this often).
    #[arg(long, default_value_t = 8, value_name = "SECS")]
    pub nemesis_interval: u64,
    /// Seed of the fault schedule and of the clients' choices [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of members (3 to 9).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(3..=9))]
    pub nodes: u8,
    /// Workloads: a comma-separated list of register, set, cluster, auth, schedule.
    #[arg(long, default_value = "register,set,cluster,auth,schedule", value_delimiter = ',')]
    pub workload: Vec<String>,
    /// Seconds a due slot may wait for a decision (fire, or recorded missed) when its owner
    /// cannot act: steward's considerDead (5 s) + takeover delay (0 s) + 2 s; each job adds its
    /// period.
    #[arg(long, default_value_t = 7, value_name = "SECS")]
    pub schedule_bound: u64,
    /// Judge slots of owners the nemesis killed, paused, cut off or removed like any other:
    /// steward's leader moves a dead member's jobs to a live one (autotakeover), so they must
    /// be decided within the bound too. `--require-takeover=false` only counts them (for a
    /// build without takeover).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub require_takeover: bool,
    /// Also create this many jobs through the first member, all on the same 5-second slots: a
    /// burst that steward decides ahead of its time (from about 70 slots at once), so the
    /// invariants are judged on runs that wait for their slot after their fire committed.
    #[arg(long, default_value_t = 0, value_name = "JOBS")]
    pub schedule_burst: usize,
    /// Concurrent register clients.
    #[arg(long, default_value_t = 6)]
    pub register_workers: usize,
    /// Where registers live: `keys` (public keys of key storage) or `config` (project config
    /// keys).
    #[arg(long, default_value = "keys", value_parser = ["keys", "config"])]
    pub register_on: String,
    /// Concurrent set clients.
    #[arg(long, default_value_t = 2)]
    pub set_workers: usize,
    /// The steward binary [default: target/release/steward, else target/debug/steward].
    #[arg(long, value_name = "PATH")]
    pub steward: Option<PathBuf>,
    /// Run folder [default: store/<time>-seed<N>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// steward's snapshot-every: low, so snapshots and their installation happen in a run.
    #[arg(long, default_value_t = 200)]
    pub snapshot_every: u64,
    /// Seconds the cluster gets after the final heal to serve again before that is a violation.
    #[arg(long, default_value_t = 20, value_name = "SECS")]
    pub recovery_timeout: u64,
    /// Seconds final reads keep retrying a member that does not answer.
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    pub final_patience: u64,
    /// Remove what runs that died without tearing down left behind, then exit.
    #[arg(long)]
    pub cleanup: bool,
    /// Only check an existing run folder's history again (no root needed).
    #[arg(long, value_name = "DIR", conflicts_with = "cleanup")]
    pub recheck: Option<PathBuf>,
}

/// The `--nemesis` list.
#[derive(Debug, Clone)]
pub struct Packages(pub Vec<Package>);

impl Packages {
    fn parse(s: &str) -> Result<Packages, String> {
        Package::parse_list(s).map(Packages)
    }
}
