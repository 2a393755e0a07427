//! The cluster-scheduling settings, under Rundeck's names: `[heartbeat]`, `[autotakeover]` and
//! `[member]` (this member's tags and capacity, which its heartbeats report).
//!
//! Durations are seconds (a number, as in Rundeck's properties) or a string with a unit
//! (`"500ms"`, `"5s"`, `"1m"`). The defaults are ours, not Rundeck's: a silent member is dead
//! after 5 s, not 300, and its jobs move at once (`delay` 0), so a scheduled job is unowned for
//! seconds instead of minutes.

use std::time::Duration;

use serde::Deserialize;

/// Default `heartbeat.interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default `heartbeat.considerInactive`.
pub const DEFAULT_CONSIDER_INACTIVE: Duration = Duration::from_secs(2);
/// Default `heartbeat.considerDead`.
pub const DEFAULT_CONSIDER_DEAD: Duration = Duration::from_secs(5);
/// Default `autotakeover.delay`.
pub const DEFAULT_TAKEOVER_DELAY: Duration = Duration::ZERO;

/// A duration setting as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationText {
    Seconds(f64),
    Text(String),
}

impl DurationText {
    fn parse(&self, setting: &'static str) -> Result<Duration, SettingError> {
        let bad = |why: String| SettingError { setting, message: why };
        match self {
            DurationText::Seconds(s) if s.is_finite() && *s >= 0.0 => Ok(Duration::from_secs_f64(*s)),
            DurationText::Seconds(s) => Err(bad(format!("{s} is not a number of seconds"))),
            DurationText::Text(t) => crate::jobs::duration::parse_duration(t).map_err(|e| bad(e.to_string())),
        }
    }
}

/// A list setting: Rundeck's comma-separated string, or a TOML array.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ListText {
    Comma(String),
    Items(Vec<String>),
}

impl ListText {
    pub fn items(&self) -> Vec<String> {
        let raw: Vec<String> = match self {
            ListText::Comma(s) => s.split(',').map(str::to_string).collect(),
            ListText::Items(v) => v.clone(),
        };
        raw.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    }
}

/// `[heartbeat]` in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatFile {
    pub interval: Option<DurationText>,
    #[serde(rename = "considerInactive")]
    pub consider_inactive: Option<DurationText>,
    #[serde(rename = "considerDead")]
    pub consider_dead: Option<DurationText>,
}

/// `[autotakeover]` in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutotakeoverFile {
    pub enabled: Option<bool>,
    pub policy: Option<String>,
    pub delay: Option<DurationText>,
    #[serde(default)]
    pub config: AutotakeoverConfigFile,
}

/// `[autotakeover.config]` in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutotakeoverConfigFile {
    pub allowed: Option<ListText>,
}

/// `[member]` in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberFile {
    pub tags: Option<ListText>,
    pub capacity: Option<u32>,
}

/// A setting that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct SettingError {
    pub setting: &'static str,
    pub message: String,
}

/// Heartbeat timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatSettings {
    /// How often each member sends its heartbeat to the leader.
    pub interval: Duration,
    /// A member silent this long is `inactive`: it gets no new executions.
    pub consider_inactive: Duration,
    /// A member silent this long is `dead`: after `autotakeover.delay` it loses its jobs.
    pub consider_dead: Duration,
}

impl Default for HeartbeatSettings {
    fn default() -> Self {
        HeartbeatSettings {
            interval: DEFAULT_INTERVAL,
            consider_inactive: DEFAULT_CONSIDER_INACTIVE,
            consider_dead: DEFAULT_CONSIDER_DEAD,
        }
    }
}

/// Which dead members' jobs are taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TakeoverPolicy {
    /// Every dead member's.
    Any,
    /// Only those of the members listed (`autotakeover.config.allowed`).
    Static(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutotakeoverSettings {
    pub enabled: bool,
    pub policy: TakeoverPolicy,
    /// How long past `considerDead` the leader waits before moving a member's jobs.
    pub delay: Duration,
}

impl Default for AutotakeoverSettings {
    fn default() -> Self {
        AutotakeoverSettings { enabled: true, policy: TakeoverPolicy::Any, delay: DEFAULT_TAKEOVER_DELAY }
    }
}

impl AutotakeoverSettings {
    /// Whether the jobs of the dead member `uuid` may be taken over.
    pub fn may_take_from(&self, uuid: &str) -> bool {
        self.enabled
            && match &self.policy {
                TakeoverPolicy::Any => true,
                TakeoverPolicy::Static(allowed) => allowed.iter().any(|a| a == uuid),
            }
    }
}

/// What this member's heartbeats report about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSettings {
    /// Tags the remote execution policy matches (`allowedTags`, `preferredTags`).
    pub tags: Vec<String>,
    /// How many executions run their steps at once; more wait for a free slot. Also the
    /// denominator of the Load policy's `threadRatio`.
    pub capacity: u32,
}

/// Default `member.capacity`. Rundeck's execution thread pool has 10 threads by default (its
/// tuning guide covers raising it); with 32, a member's memory stays bounded in a burst of
/// thousands of scheduled runs (BENCHMARKS.md) while fewer jobs wait than with 10.
pub const DEFAULT_CAPACITY: u32 = 32;

impl Default for MemberSettings {
    fn default() -> Self {
        MemberSettings { tags: Vec::new(), capacity: DEFAULT_CAPACITY }
    }
}

/// All the cluster-scheduling settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulingSettings {
    pub heartbeat: HeartbeatSettings,
    pub autotakeover: AutotakeoverSettings,
    pub member: MemberSettings,
}

impl SchedulingSettings {
    /// Reads and checks the three sections.
    pub fn from_file(
        hb: &HeartbeatFile,
        at: &AutotakeoverFile,
        member: &MemberFile,
    ) -> Result<SchedulingSettings, SettingError> {
        let mut s = SchedulingSettings::default();
        let d = |v: &Option<DurationText>, setting, default| v.as_ref().map_or(Ok(default), |t| t.parse(setting));
        s.heartbeat.interval = d(&hb.interval, "heartbeat.interval", DEFAULT_INTERVAL)?;
        s.heartbeat.consider_inactive =
            d(&hb.consider_inactive, "heartbeat.considerInactive", DEFAULT_CONSIDER_INACTIVE)?;
        s.heartbeat.consider_dead = d(&hb.consider_dead, "heartbeat.considerDead", DEFAULT_CONSIDER_DEAD)?;
        s.autotakeover.delay = d(&at.delay, "autotakeover.delay", DEFAULT_TAKEOVER_DELAY)?;
        let err = |setting, message: &str| SettingError { setting, message: message.to_string() };
        if s.heartbeat.interval < Duration::from_millis(50) {
            return Err(err("heartbeat.interval", "must be at least 50ms"));
        }
        if s.heartbeat.consider_inactive <= s.heartbeat.interval {
            return Err(err("heartbeat.considerInactive", "must be longer than heartbeat.interval"));
        }
        if s.heartbeat.consider_dead < s.heartbeat.consider_inactive {
            return Err(err("heartbeat.considerDead", "must not be shorter than heartbeat.considerInactive"));
        }
        s.autotakeover.enabled = at.enabled.unwrap_or(true);
        let allowed = at.config.allowed.as_ref().map(ListText::items);
        s.autotakeover.policy = match at.policy.as_deref().unwrap_or("Any") {
            "Any" => {
                if allowed.is_some() {
                    return Err(err(
                        "autotakeover.config.allowed",
                        "is only used with policy = \"Static\"; set the policy or remove the list",
                    ));
                }
                TakeoverPolicy::Any
            }
            "Static" => match allowed {
                Some(list) if !list.is_empty() => TakeoverPolicy::Static(list),
                _ => {
                    return Err(err(
                        "autotakeover.config.allowed",
                        "policy \"Static\" needs the uuids of the members whose jobs may be taken over",
                    ))
                }
            },
            other => {
                return Err(SettingError {
                    setting: "autotakeover.policy",
                    message: format!("unknown policy \"{other}\" (expected \"Any\" or \"Static\")"),
                })
            }
        };
        if let Some(tags) = &member.tags {
            let tags = tags.items();
            if let Some(bad) = tags.iter().find(|t| t.chars().any(|c| c.is_whitespace() || c == '+' || c == '*')) {
                return Err(SettingError {
                    setting: "member.tags",
                    message: format!("tag '{bad}' may not contain spaces, '+' or '*'"),
                });
            }
            s.member.tags = tags;
        }
        if let Some(c) = member.capacity {
            if c == 0 {
                return Err(err("member.capacity", "must be at least 1"));
            }
            s.member.capacity = c;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<SchedulingSettings, SettingError> {
        #[derive(Deserialize)]
        struct F {
            #[serde(default)]
            heartbeat: HeartbeatFile,
            #[serde(default)]
            autotakeover: AutotakeoverFile,
            #[serde(default)]
            member: MemberFile,
        }
        let f: F = toml::from_str(text).expect("toml");
        SchedulingSettings::from_file(&f.heartbeat, &f.autotakeover, &f.member)
    }

    #[test]
    fn durations_take_seconds_or_units() {
        let s = load("[heartbeat]\ninterval = 0.5\nconsiderInactive = \"1500ms\"\nconsiderDead = \"1m\"\n").unwrap();
        assert_eq!(s.heartbeat.interval, Duration::from_millis(500));
        assert_eq!(s.heartbeat.consider_inactive, Duration::from_millis(1500));
        assert_eq!(s.heartbeat.consider_dead, Duration::from_secs(60));
        let e = load("[heartbeat]\nconsiderDead = \"soon\"\n").unwrap_err();
        assert_eq!(e.setting, "heartbeat.considerDead");
    }

    #[test]
    fn inconsistent_timings_name_the_setting() {
        let e = load("[heartbeat]\ninterval = 3\n").unwrap_err();
        assert_eq!(e.setting, "heartbeat.considerInactive");
        let e = load("[heartbeat]\nconsiderInactive = 6\n").unwrap_err();
        assert_eq!(e.setting, "heartbeat.considerDead");
    }

    #[test]
    fn policies_are_checked() {
        let e = load("[autotakeover]\npolicy = \"any\"\n").unwrap_err();
        assert_eq!(e.setting, "autotakeover.policy");
        assert!(e.message.contains("\"any\""), "{e}");
        let e = load("[autotakeover]\npolicy = \"Static\"\n").unwrap_err();
        assert_eq!(e.setting, "autotakeover.config.allowed");
        let s = load("[autotakeover]\npolicy = \"Static\"\n[autotakeover.config]\nallowed = \"a, b\"\n").unwrap();
        assert_eq!(s.autotakeover.policy, TakeoverPolicy::Static(vec!["a".into(), "b".into()]));
        assert!(s.autotakeover.may_take_from("b") && !s.autotakeover.may_take_from("c"));
        let off = load("[autotakeover]\nenabled = false\n").unwrap();
        assert!(!off.autotakeover.may_take_from("a"));
    }

    #[test]
    fn member_tags_and_capacity() {
        let s = load("[member]\ntags = [\"worker\", \"linux\"]\ncapacity = 4\n").unwrap();
        assert_eq!(s.member.tags, vec!["worker", "linux"]);
        assert_eq!(s.member.capacity, 4);
        assert_eq!(load("[member]\ntags = \"a+b\"\n").unwrap_err().setting, "member.tags");
        assert_eq!(load("[member]\ncapacity = 0\n").unwrap_err().setting, "member.capacity");
    }
}
