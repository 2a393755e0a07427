//! One checked policy and the choice it makes.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;

use super::file::PolicyConfigFile;
use super::rules::Rules;
use super::{Candidate, NoEligibleMember, PlacementError};

/// Default `Load` criteria: both measures Rundeck offers, equally weighted.
pub const DEFAULT_CRITERIA: [Criterion; 2] = [Criterion::ThreadRatio, Criterion::Load];
/// Default `Load` group weights: the less loaded half of the eligible members, one of them at
/// random. Always taking the single least loaded member would send every execution decided
/// between two heartbeats to that same member, as its load only shows in the next heartbeat.
pub const DEFAULT_GROUP_WEIGHT: [f64; 2] = [1.0, 0.0];

/// A checked remote-execution policy: which member runs an execution of the projects it covers.
#[derive(Debug, Clone)]
pub struct Policy {
    kind: Kind,
    rules: Rules,
    /// The profile this policy comes from, `None` for the default policy; for messages.
    profile: Option<String>,
}

#[derive(Debug, Clone)]
enum Kind {
    None,
    Preset { uuid: String },
    Random,
    RoundRobin,
    Load(Load),
}

/// What `Load` measures, each a fraction where 1.0 is "full".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criterion {
    /// `threadRatio`: executions running over capacity. A member reporting capacity 0 counts
    /// as full (1.0).
    ThreadRatio,
    /// `load`: 1-minute load average per CPU. A member reporting 0 CPUs counts as one CPU; a
    /// negative or non-finite load counts as full (1.0).
    Load,
}

impl Criterion {
    fn parse(name: &str) -> Option<Criterion> {
        match name {
            "threadRatio" => Some(Criterion::ThreadRatio),
            "load" => Some(Criterion::Load),
            _ => None,
        }
    }

    fn measure(self, member: &Candidate) -> f64 {
        match self {
            Criterion::ThreadRatio if member.capacity == 0 => 1.0,
            Criterion::ThreadRatio => f64::from(member.running) / f64::from(member.capacity),
            Criterion::Load if member.load1.is_finite() && member.load1 >= 0.0 => {
                member.load1 / f64::from(member.cpus.max(1))
            }
            Criterion::Load => 1.0,
        }
    }
}

/// The checked `Load` settings.
#[derive(Debug, Clone)]
struct Load {
    criteria: Vec<(Criterion, f64)>,
    group_weight: Vec<f64>,
}

impl Load {
    fn parse(config: &PolicyConfigFile, prefix: &str) -> Result<Load, PlacementError> {
        let criteria: Vec<Criterion> = match &config.criteria {
            None => DEFAULT_CRITERIA.to_vec(),
            Some(list) => {
                let setting = format!("{prefix}.criteria");
                let mut criteria = Vec::new();
                for name in list.items(&setting)? {
                    let Some(criterion) = Criterion::parse(&name) else {
                        return Err(PlacementError::new(
                            &setting,
                            format!("unknown criterion {name:?} (expected threadRatio or load)"),
                        ));
                    };
                    if criteria.contains(&criterion) {
                        return Err(PlacementError::new(&setting, format!("{name} is listed twice")));
                    }
                    criteria.push(criterion);
                }
                criteria
            }
        };
        let weights = match &config.weights {
            // One weight per criterion, all equal, when only the criteria are given.
            None => vec![1.0; criteria.len()],
            Some(list) => {
                let setting = format!("{prefix}.weights");
                let weights = list.numbers(&setting)?;
                if weights.len() != criteria.len() {
                    return Err(PlacementError::new(
                        &setting,
                        format!(
                            "{} weights for {} criteria; give one weight per criterion",
                            weights.len(),
                            criteria.len()
                        ),
                    ));
                }
                if weights.iter().all(|w| *w == 0.0) {
                    return Err(PlacementError::new(&setting, "every weight is 0, so no load would count"));
                }
                weights
            }
        };
        let group_weight = match &config.group_weight {
            None => DEFAULT_GROUP_WEIGHT.to_vec(),
            Some(list) => {
                let setting = format!("{prefix}.groupWeight");
                let group_weight = list.numbers(&setting)?;
                if group_weight.iter().all(|w| *w == 0.0) {
                    return Err(PlacementError::new(&setting, "every group weight is 0, so no group could be chosen"));
                }
                group_weight
            }
        };
        Ok(Load { criteria: criteria.into_iter().zip(weights).collect(), group_weight })
    }

    fn score(&self, member: &Candidate) -> f64 {
        self.criteria.iter().map(|(criterion, weight)| weight * criterion.measure(member)).sum()
    }

    /// Rundeck's groups: the members sorted by score, least loaded first (ties by uuid, so the
    /// order does not depend on the heartbeat table's), cut into one group per weight of
    /// ceil(n / groups) members each; a group is drawn in proportion to its weight and a member
    /// of it at random.
    fn pick<'m>(&self, members: Vec<&'m Candidate>, rng: &mut impl Rng) -> &'m Candidate {
        let mut scored: Vec<(f64, &Candidate)> = members.into_iter().map(|m| (self.score(m), m)).collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.uuid.cmp(&b.1.uuid)));
        let size = scored.len().div_ceil(self.group_weight.len());
        let groups: Vec<&[(f64, &Candidate)]> = scored.chunks(size).collect();
        // With fewer members than groups the trailing groups are empty; if every group that
        // has members weighs 0 (e.g. `0,1` and one member), the least loaded group runs it
        // rather than nobody.
        let group = weighted_index(&self.group_weight[..groups.len()], rng).unwrap_or(0);
        groups[group][rng.random_range(0..groups[group].len())].1
    }
}

/// Draws an index in proportion to `weights`; `None` when they sum to 0.
fn weighted_index(weights: &[f64], rng: &mut impl Rng) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let mut x = rng.random_range(0.0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return Some(i);
        }
        x -= w;
    }
    // Rounding can leave x just above the last step; the last weighted index is then right.
    weights.iter().rposition(|w| *w > 0.0)
}

impl Policy {
    /// The default policy: every member runs its own executions.
    pub(crate) fn none() -> Policy {
        Policy { kind: Kind::None, rules: Rules::open(), profile: None }
    }

    /// Checks one policy; `prefix` is its setting path (`remoteExecution` or
    /// `remoteExecution.profiles.NAME`).
    pub(crate) fn parse(
        policy: Option<&str>,
        config: &PolicyConfigFile,
        prefix: &str,
        profile: Option<&str>,
    ) -> Result<Policy, PlacementError> {
        let config_prefix = format!("{prefix}.config");
        // Every key is checked whatever the policy, so a mistake shows before the policy is
        // switched to one that uses the key.
        let rules = Rules::parse(config, &config_prefix)?;
        let load = Load::parse(config, &config_prefix)?;
        let uuid = match config.uuid.as_deref().map(str::trim) {
            Some("") => return Err(PlacementError::new(&format!("{config_prefix}.uuid"), "is empty")),
            uuid => uuid,
        };
        let kind = match policy.unwrap_or("None") {
            "None" => Kind::None,
            "Preset" => match uuid {
                Some(uuid) => Kind::Preset { uuid: uuid.to_owned() },
                None => {
                    return Err(PlacementError::new(
                        &format!("{config_prefix}.uuid"),
                        "the Preset policy needs the uuid of the member that runs the executions",
                    ))
                }
            },
            "Random" => Kind::Random,
            "RoundRobin" => Kind::RoundRobin,
            "Load" => Kind::Load(load),
            other => {
                return Err(PlacementError::new(
                    &format!("{prefix}.policy"),
                    format!("unknown policy {other:?} (expected None, Preset, Random, RoundRobin or Load)"),
                ))
            }
        };
        Ok(Policy { kind, rules, profile: profile.map(str::to_owned) })
    }

    /// Rundeck's name of the policy: `None`, `Preset`, `Random`, `RoundRobin` or `Load`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::None => "None",
            Kind::Preset { .. } => "Preset",
            Kind::Random => "Random",
            Kind::RoundRobin => "RoundRobin",
            Kind::Load(_) => "Load",
        }
    }

    /// The profile this policy comes from; `None` for the default policy.
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    /// The `Preset` target, if this is a `Preset` policy.
    pub fn preset_uuid(&self) -> Option<&str> {
        match &self.kind {
            Kind::Preset { uuid } => Some(uuid),
            _ => None,
        }
    }

    /// The member uuids named literally in `allowed`.
    pub(crate) fn allowed_uuids(&self) -> impl Iterator<Item = &str> {
        self.rules.allowed_uuids()
    }

    /// Chooses the member that runs an execution. `me` is the deciding member's uuid and must
    /// be in `members` (with its own heartbeat state) to be chosen by any policy but `None`.
    /// `rr` is the round-robin counter the caller keeps per policy; `rng` draws for `Random`
    /// and `Load`. Err when no member qualifies, saying why for each.
    pub fn choose(
        &self,
        me: &str,
        members: &[Candidate],
        rr: &AtomicU64,
        rng: &mut impl Rng,
    ) -> Result<String, NoEligibleMember> {
        let chosen = match &self.kind {
            // Rundeck's default: no forwarding at all, whatever the heartbeats say.
            Kind::None => return Ok(me.to_owned()),
            Kind::Preset { uuid } => {
                let Some(member) = members.iter().find(|m| m.uuid == *uuid) else {
                    return Err(self.no_member(format!("the preset member {uuid} is not in the heartbeat table")));
                };
                if let Some(why) = self.rules.rejection(me, member) {
                    return Err(self.no_member(format!("the preset member {why}")));
                }
                member
            }
            Kind::Random => {
                let eligible = self.rules.eligible(me, members).map_err(|why| self.no_member(why))?;
                eligible[rng.random_range(0..eligible.len())]
            }
            Kind::RoundRobin => {
                let mut eligible = self.rules.eligible(me, members).map_err(|why| self.no_member(why))?;
                // A stable order, so consecutive counter values walk the members in turn. When
                // the eligible set changes the walk shifts; Rundeck's does too.
                eligible.sort_by(|a, b| a.uuid.cmp(&b.uuid));
                let turn = rr.fetch_add(1, Ordering::Relaxed) % eligible.len() as u64;
                eligible[turn as usize]
            }
            Kind::Load(load) => {
                let eligible = self.rules.eligible(me, members).map_err(|why| self.no_member(why))?;
                load.pick(eligible, rng)
            }
        };
        Ok(chosen.uuid.clone())
    }

    fn no_member(&self, reason: String) -> NoEligibleMember {
        NoEligibleMember { policy: self.name(), profile: self.profile.clone(), reason }
    }
}
