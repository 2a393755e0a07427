//! The `[remoteExecution]` section of the configuration file, as written: Rundeck's key names
//! (`rundeck.clusterMode.remoteExecution.*` without the prefix), values not yet checked.
//! [`super::Placement::from_file`] turns it into policies and names the setting of any mistake.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::PlacementError;

/// The `[remoteExecution]` section: the default policy and per-project profiles.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteExecutionFile {
    /// `None` (the default: every member runs its own executions), `Preset`, `Random`,
    /// `RoundRobin` or `Load`. Case-sensitive, as in Rundeck.
    pub policy: Option<String>,
    /// Settings of the default policy.
    #[serde(default)]
    pub config: PolicyConfigFile,
    /// Profiles by name: each maps some projects to a policy of its own.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileFile>,
}

/// `[remoteExecution.profiles.NAME]`: the policy of the projects it lists.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    /// The projects that use this profile (required, non-empty). An `Option` so that a missing
    /// list is reported with the setting's full name rather than serde's "missing field".
    pub projects: Option<StringList>,
    /// As the top-level `policy`; `None` when absent.
    pub policy: Option<String>,
    /// As the top-level `config`. Nothing is inherited from it: a profile is a whole policy.
    #[serde(default)]
    pub config: PolicyConfigFile,
}

/// `config`: the settings of one policy. Every key is optional; which ones a policy uses is in
/// the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyConfigFile {
    /// Which members may run: `Self`, `Other`, a member uuid, `/regex/` on the uuid, or `*`.
    pub allowed: Option<StringList>,
    /// Tag expression the member must match: `,` = or, `+` = and, `*` = any member.
    pub allowed_tags: Option<StringList>,
    /// Tag expression of the members to prefer among the allowed ones.
    pub preferred_tags: Option<StringList>,
    /// Only members whose heartbeat is active (default `true`).
    pub active_only: Option<bool>,
    /// The member a `Preset` policy sends executions to.
    pub uuid: Option<String>,
    /// `Load`: what load means, from `threadRatio` and `load`.
    pub criteria: Option<StringList>,
    /// `Load`: one non-negative weight per criterion.
    pub weights: Option<NumberList>,
    /// `Load`: the relative chance of each group of members, least loaded group first.
    pub group_weight: Option<NumberList>,
}

/// A list written either Rundeck's way, as one comma-separated string (`"Self, Other"`), or as a
/// TOML array (`["Self", "Other"]`). An array element is one item even if it holds a comma, which
/// is how a `/regex/` with a comma in it is written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged, expecting = "a comma-separated string or an array of strings")]
pub enum StringList {
    Text(String),
    Items(Vec<String>),
}

impl StringList {
    /// The trimmed items; an empty list or an empty item is an error naming `setting`.
    pub(crate) fn items(&self, setting: &str) -> Result<Vec<String>, PlacementError> {
        let items: Vec<String> = match self {
            StringList::Text(text) if text.trim().is_empty() => Vec::new(),
            StringList::Text(text) => text.split(',').map(|s| s.trim().to_owned()).collect(),
            StringList::Items(items) => items.iter().map(|s| s.trim().to_owned()).collect(),
        };
        if items.is_empty() {
            return Err(PlacementError::new(setting, "is empty; leave the setting out instead"));
        }
        if items.iter().any(String::is_empty) {
            return Err(PlacementError::new(setting, format!("has an empty item in {}", self.display())));
        }
        Ok(items)
    }

    /// The value as the user wrote it, for messages.
    pub(crate) fn display(&self) -> String {
        match self {
            StringList::Text(text) => format!("{text:?}"),
            StringList::Items(items) => format!("{items:?}"),
        }
    }
}

/// A list of numbers: a comma-separated string (`"4,3,2"`, Rundeck's way), one number, or a TOML
/// array (`[4, 3, 2]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged, expecting = "a comma-separated string, a number or an array of numbers")]
pub enum NumberList {
    Text(String),
    One(f64),
    Items(Vec<f64>),
}

impl NumberList {
    /// The numbers, each finite and not negative; anything else is an error naming `setting`.
    pub(crate) fn numbers(&self, setting: &str) -> Result<Vec<f64>, PlacementError> {
        let numbers = match self {
            NumberList::Text(text) => StringList::Text(text.clone())
                .items(setting)?
                .iter()
                .map(|item| {
                    item.parse::<f64>().map_err(|_| PlacementError::new(setting, format!("{item:?} is not a number")))
                })
                .collect::<Result<Vec<f64>, _>>()?,
            NumberList::One(n) => vec![*n],
            NumberList::Items(items) => items.clone(),
        };
        if numbers.is_empty() {
            return Err(PlacementError::new(setting, "is empty; leave the setting out instead"));
        }
        if let Some(bad) = numbers.iter().find(|n| !n.is_finite() || **n < 0.0) {
            return Err(PlacementError::new(setting, format!("{bad} is not a finite, non-negative number")));
        }
        Ok(numbers)
    }
}
