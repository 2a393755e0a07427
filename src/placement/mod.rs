//! Which cluster member runs an execution: Rundeck's cluster remote execution policy
//! (`rundeck.clusterMode.remoteExecution.*`), as pure decisions. Nothing here does I/O or knows
//! the cluster: the caller passes the members as the leader's heartbeat table sees them
//! ([`Candidate`]), a round-robin counter and a random number generator, and gets a uuid back.
//!
//! # Layout
//! - `file`: the `[remoteExecution]` section of the configuration file ([`RemoteExecutionFile`]).
//! - `rules`: eligibility (passive, `activeOnly`, `allowed`, `allowedTags`) and `preferredTags`.
//! - `policy`: one checked [`Policy`] and [`Policy::choose`].
//! - this file: [`Placement`], the default policy with the per-project profiles, and the errors.
//!
//! # Configuration
//! Rundeck's keys without the `rundeck.clusterMode.remoteExecution` prefix; key names and
//! policy names are case-sensitive, as in Rundeck. A list may be a comma-separated string
//! (Rundeck's way) or a TOML array; an array element is one item, so a regex with a comma in it
//! goes in an array.
//! ```toml
//! [remoteExecution]
//! policy = "RoundRobin"                    # None (default) | Preset | Random | RoundRobin | Load
//! config.allowed = "Other"                 # Self, Other, <uuid>, /regex/, * (default *)
//! config.allowedTags = "worker,secondary"  # , = or, + = and, * = any, Self = this member
//! config.preferredTags = "fast+linux"
//! config.activeOnly = true                 # default true
//!
//! [remoteExecution.profiles.linux]
//! projects = "Example, Test1"              # or ["Example", "Test1"]
//! policy = "Preset"
//! config.uuid = "1C519C5A-4E78-4BE9-85EC-5C2E6B2F0A11"
//!
//! [remoteExecution.profiles.batch]
//! projects = ["Reports"]
//! policy = "Load"
//! config.criteria = "threadRatio,load"     # default threadRatio,load
//! config.weights = [1.0, 1.5]              # default 1 per criterion
//! config.groupWeight = "4,3,2"             # default 1,0
//! ```
//!
//! # Semantics, and the choices Rundeck's documentation leaves open
//! - **None** chooses the deciding member (`me`) whatever the heartbeats say. **Preset** chooses
//!   `config.uuid`, which must pass the eligibility rules below; if it does not, nobody runs the
//!   execution (no fallback to another member: the setting names one member on purpose).
//!   **Random** draws uniformly among the eligible members. **RoundRobin** sorts them by uuid
//!   and takes the counter's next value modulo their number. **Load**: see below.
//! - **Eligibility**, for every policy but None: a passive member never runs anything. With
//!   `activeOnly` (default `true`) only members whose heartbeat is active may run; with `false`
//!   any member the caller lists may, active or not: the caller decides which members still
//!   belong in the table (a [`Candidate`] only says active or not, it does not tell an inactive
//!   member from a dead one). Then `allowed` (any one item must match; `*` or absent lets any
//!   member through): `Self` is `me`, `Other` every other member, a `/regex/` must match the
//!   whole uuid (it is anchored at both ends), anything else is a uuid. Then `allowedTags`.
//!   `me` is eligible only through its own entry in the members list.
//! - **Tag expressions** (`allowedTags`, `preferredTags`): `,` separates alternatives, one of
//!   which must hold; `+` joins tags that must all be on the member; `*` as an alternative is any
//!   member, tagged or not. Tags compare case-sensitively. The tag `Self` is on `me` only.
//!   Spaces around items are trimmed; an empty alternative or tag, a space inside a tag, or a `*`
//!   joined with `+` is an error.
//! - **preferredTags**: when some eligible members match, the choice is made among them only;
//!   when none does, among all eligible members (Rundeck's fallback). Preset ignores it.
//! - **Load**: each eligible member's score is the weighted sum of its `criteria`:
//!   `threadRatio` (running / capacity) and `load` (1-minute load average / CPUs). Members are
//!   sorted by score, least loaded first, ties by uuid; cut into one group per `groupWeight`
//!   entry of ceil(n / groups) members; a group is drawn in proportion to its weight, then a
//!   member of it at random. Defaults: `criteria = "threadRatio,load"` (both measures Rundeck
//!   has), `weights` 1 per criterion (neither dominates), `groupWeight = "1,0"`: one of the less
//!   loaded half at random. That prefers the least loaded members, but does not send every
//!   execution decided between two heartbeats to the one member that looked idlest in the last
//!   one. With fewer members than groups, the trailing groups are empty; if every non-empty
//!   group weighs 0, the least loaded group is used.
//! - **Profiles** map projects to a policy of their own. A profile is a whole policy: it
//!   inherits nothing from the top-level `policy` or `config` (its `policy` defaults to None).
//!   A project in two profiles is an error; a project in none uses the default policy.
//! - **Checks**: every key is checked whatever the policy, so a mistake shows before a policy
//!   that uses the key is switched on; keys a policy does not use are otherwise ignored, as in
//!   Rundeck. [`Placement::check_members`] checks the uuids (Preset's and literal `allowed`
//!   ones) against the member list, which the configuration alone does not know.

mod file;
mod policy;
mod rules;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

pub use file::{NumberList, PolicyConfigFile, ProfileFile, RemoteExecutionFile, StringList};
pub use policy::{Criterion, Policy, DEFAULT_CRITERIA, DEFAULT_GROUP_WEIGHT};

/// The setting prefix every error names, as in Rundeck without `rundeck.clusterMode.`.
const PREFIX: &str = "remoteExecution";

/// What the policy knows of one member (from the leader's heartbeat table).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub uuid: String,
    /// The heartbeat says the member is alive and recent (Rundeck's "active" heartbeat state).
    pub active: bool,
    /// Execution mode passive (runs nothing, ever).
    pub passive: bool,
    pub tags: Vec<String>,
    /// Executions it is running now, and how many it is willing to run at once.
    pub running: u32,
    pub capacity: u32,
    /// 1-minute load average and CPU count.
    pub load1: f64,
    pub cpus: u32,
}

/// A setting of `[remoteExecution]` that is wrong; `setting` is its full name, e.g.
/// `remoteExecution.profiles.linux.config.allowedTags`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct PlacementError {
    pub setting: String,
    pub message: String,
}

impl PlacementError {
    pub(crate) fn new(setting: &str, message: impl Into<String>) -> PlacementError {
        PlacementError { setting: setting.to_owned(), message: message.into() }
    }
}

/// No member may run the execution under its policy; `reason` says why, member by member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no cluster member may run this execution under the {policy} remote execution policy{}: {reason}",
    .profile.as_ref().map(|p| format!(" of profile {p:?}")).unwrap_or_default())]
pub struct NoEligibleMember {
    /// The policy's name, as [`Policy::name`].
    pub policy: &'static str,
    /// The profile the policy comes from; `None` for the default policy.
    pub profile: Option<String>,
    pub reason: String,
}

/// The remote execution configuration: the default policy and the per-project profiles.
#[derive(Debug, Clone)]
pub struct Placement {
    default: Policy,
    profiles: Vec<Policy>,
    /// Project name to index in `profiles`.
    by_project: HashMap<String, usize>,
}

impl Default for Placement {
    fn default() -> Placement {
        Placement::none()
    }
}

impl Placement {
    /// The default: every member runs its own executions.
    pub fn none() -> Placement {
        Placement { default: Policy::none(), profiles: Vec::new(), by_project: HashMap::new() }
    }

    /// Checks the whole section; the error names the first wrong setting.
    pub fn from_file(f: &RemoteExecutionFile) -> Result<Placement, PlacementError> {
        let default = Policy::parse(f.policy.as_deref(), &f.config, PREFIX, None)?;
        let mut profiles: Vec<Policy> = Vec::with_capacity(f.profiles.len());
        let mut by_project: HashMap<String, usize> = HashMap::new();
        for (name, profile) in &f.profiles {
            let prefix = format!("{PREFIX}.profiles.{name}");
            if name.trim().is_empty() {
                return Err(PlacementError::new(&prefix, "a profile needs a name"));
            }
            let projects_setting = format!("{prefix}.projects");
            let Some(projects) = &profile.projects else {
                return Err(PlacementError::new(
                    &projects_setting,
                    "is missing; list the projects that use this profile",
                ));
            };
            for project in projects.items(&projects_setting)? {
                if let Some(&other) = by_project.get(&project) {
                    if other == profiles.len() {
                        continue; // listed twice in this profile: harmless
                    }
                    let other = profiles[other].profile().unwrap_or_default();
                    return Err(PlacementError::new(
                        &projects_setting,
                        format!(
                            "project {project:?} is also in profile {other:?}; a project may be in one profile only"
                        ),
                    ));
                }
                by_project.insert(project, profiles.len());
            }
            profiles.push(Policy::parse(profile.policy.as_deref(), &profile.config, &prefix, Some(name))?);
        }
        Ok(Placement { default, profiles, by_project })
    }

    /// The policy of `project`: its profile's, or the default one.
    pub fn policy_for(&self, project: &str) -> &Policy {
        self.by_project.get(project).map_or(&self.default, |&i| &self.profiles[i])
    }

    /// Checks the settings that name members (Preset's `config.uuid`, uuids in `allowed`)
    /// against the cluster's member uuids; the error names the setting.
    pub fn check_members(&self, members: &[String]) -> Result<(), PlacementError> {
        for policy in std::iter::once(&self.default).chain(&self.profiles) {
            let prefix = match policy.profile() {
                None => format!("{PREFIX}.config"),
                Some(name) => format!("{PREFIX}.profiles.{name}.config"),
            };
            let unknown = |uuid: &str| format!("{uuid:?} is not a cluster member (members: {})", members.join(", "));
            if let Some(uuid) = policy.preset_uuid() {
                if !members.iter().any(|m| m == uuid) {
                    return Err(PlacementError::new(&format!("{prefix}.uuid"), unknown(uuid)));
                }
            }
            if let Some(uuid) = policy.allowed_uuids().find(|uuid| !members.iter().any(|m| m == uuid)) {
                return Err(PlacementError::new(&format!("{prefix}.allowed"), unknown(uuid)));
            }
        }
        Ok(())
    }
}
