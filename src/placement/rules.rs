//! Which members a policy may choose from: the eligibility rules shared by every policy that
//! chooses (passive, `activeOnly`, `allowed`, `allowedTags`) and the `preferredTags` narrowing.

use regex::Regex;

use super::file::{PolicyConfigFile, StringList};
use super::{Candidate, PlacementError};

/// The special tag and `allowed` item that stand for the deciding member itself.
const SELF: &str = "Self";
/// The `allowed` item for every member but the deciding one.
const OTHER: &str = "Other";
/// "Any member", in `allowed` and in tag expressions.
const ANY: &str = "*";

/// The checked eligibility settings of one policy.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    active_only: bool,
    allowed: Option<Allowed>,
    allowed_tags: Option<TagExpr>,
    preferred_tags: Option<TagExpr>,
}

impl Rules {
    /// Checks the eligibility keys of `config`; `prefix` is the setting path of `config`, e.g.
    /// `remoteExecution.profiles.linux.config`.
    pub(crate) fn parse(config: &PolicyConfigFile, prefix: &str) -> Result<Rules, PlacementError> {
        let allowed = match &config.allowed {
            Some(list) => Allowed::parse(list, &format!("{prefix}.allowed"))?,
            None => None,
        };
        let allowed_tags = match &config.allowed_tags {
            Some(list) => TagExpr::parse(list, &format!("{prefix}.allowedTags"))?,
            None => None,
        };
        let preferred_tags = match &config.preferred_tags {
            Some(list) => TagExpr::parse(list, &format!("{prefix}.preferredTags"))?,
            None => None,
        };
        Ok(Rules { active_only: config.active_only.unwrap_or(true), allowed, allowed_tags, preferred_tags })
    }

    /// The rules of an empty config: any live, non-passive member.
    pub(crate) fn open() -> Rules {
        Rules { active_only: true, allowed: None, allowed_tags: None, preferred_tags: None }
    }

    /// Why `member` may not run the execution `me` is placing, or `None` if it may.
    pub(crate) fn rejection(&self, me: &str, member: &Candidate) -> Option<String> {
        if member.passive {
            return Some(format!("{} is passive", member.uuid));
        }
        if self.active_only && !member.active {
            return Some(format!("{} is not active (activeOnly is true)", member.uuid));
        }
        if let Some(allowed) = &self.allowed {
            if !allowed.matches(me, &member.uuid) {
                return Some(format!("{} is not in allowed {}", member.uuid, allowed.text));
            }
        }
        if let Some(tags) = &self.allowed_tags {
            if !tags.matches(me, member) {
                return Some(format!(
                    "{} has tags {:?}, not matching allowedTags {}",
                    member.uuid, member.tags, tags.text
                ));
            }
        }
        None
    }

    /// The members that may run the execution, narrowed to the preferred ones when any of them
    /// is eligible; `Err` carries one reason per member when none is.
    pub(crate) fn eligible<'m>(&self, me: &str, members: &'m [Candidate]) -> Result<Vec<&'m Candidate>, String> {
        if members.is_empty() {
            return Err("the heartbeat table lists no members".to_owned());
        }
        let mut eligible = Vec::new();
        let mut reasons = Vec::new();
        for member in members {
            match self.rejection(me, member) {
                None => eligible.push(member),
                Some(why) => reasons.push(why),
            }
        }
        if eligible.is_empty() {
            return Err(reasons.join("; "));
        }
        if let Some(preferred) = &self.preferred_tags {
            let chosen: Vec<&Candidate> = eligible.iter().copied().filter(|m| preferred.matches(me, m)).collect();
            // Rundeck: with no preferred member available, fall back to the allowed ones.
            if !chosen.is_empty() {
                return Ok(chosen);
            }
        }
        Ok(eligible)
    }

    /// The member uuids named literally in `allowed`, for the check against the member list.
    pub(crate) fn allowed_uuids(&self) -> impl Iterator<Item = &str> {
        self.allowed.iter().flat_map(|a| &a.items).filter_map(|item| match item {
            AllowedItem::Uuid(uuid) => Some(uuid.as_str()),
            _ => None,
        })
    }
}

/// `allowed`: any one item must match the member's uuid. `None` (absent or containing `*`) is
/// "any member".
#[derive(Debug, Clone)]
struct Allowed {
    items: Vec<AllowedItem>,
    /// The value as written, for messages.
    text: String,
}

#[derive(Debug, Clone)]
enum AllowedItem {
    Me,
    Other,
    Uuid(String),
    /// Matched against the whole uuid (anchored at both ends), so that Rundeck's example
    /// `/1C519C5A-4E78-4BE9-85EC-.+/` means "uuids starting with" and nothing looser.
    Pattern(Regex),
}

impl Allowed {
    fn parse(list: &StringList, setting: &str) -> Result<Option<Allowed>, PlacementError> {
        let raw = list.items(setting)?;
        let mut items = Vec::with_capacity(raw.len());
        for item in &raw {
            items.push(match item.as_str() {
                // Checked below, once every other item has been checked too.
                ANY => continue,
                SELF => AllowedItem::Me,
                OTHER => AllowedItem::Other,
                _ if item.starts_with('/') => {
                    let Some(pattern) = item.strip_prefix('/').and_then(|rest| rest.strip_suffix('/')) else {
                        return Err(PlacementError::new(
                            setting,
                            format!("{item:?} starts a /regex/ but does not end with /"),
                        ));
                    };
                    if pattern.is_empty() {
                        return Err(PlacementError::new(setting, "the regex // is empty"));
                    }
                    let regex = Regex::new(&format!("^(?:{pattern})$"))
                        .map_err(|e| PlacementError::new(setting, format!("invalid regex {item}: {e}")))?;
                    AllowedItem::Pattern(regex)
                }
                _ if item.contains(char::is_whitespace) => {
                    return Err(PlacementError::new(
                        setting,
                        format!("{item:?} is not Self, Other, *, a /regex/ or a member uuid (it contains a space)"),
                    ));
                }
                _ => AllowedItem::Uuid(item.clone()),
            });
        }
        if raw.iter().any(|item| item == ANY) {
            return Ok(None);
        }
        Ok(Some(Allowed { items, text: list.display() }))
    }

    fn matches(&self, me: &str, uuid: &str) -> bool {
        self.items.iter().any(|item| match item {
            AllowedItem::Me => uuid == me,
            AllowedItem::Other => uuid != me,
            AllowedItem::Uuid(u) => uuid == u,
            AllowedItem::Pattern(re) => re.is_match(uuid),
        })
    }
}

/// A tag expression: alternatives separated by `,` (any one must hold), each a `+`-joined list of
/// tags (all must be on the member), or `*` for any member, tagged or not.
#[derive(Debug, Clone)]
struct TagExpr {
    alternatives: Vec<Alternative>,
    /// The value as written, for messages.
    text: String,
}

#[derive(Debug, Clone)]
enum Alternative {
    Any,
    All(Vec<String>),
}

impl TagExpr {
    /// `None` when the expression lets any member through (an alternative is `*`).
    fn parse(list: &StringList, setting: &str) -> Result<Option<TagExpr>, PlacementError> {
        let mut alternatives = Vec::new();
        for alternative in list.items(setting)? {
            if alternative == ANY {
                alternatives.push(Alternative::Any);
                continue;
            }
            let mut tags = Vec::new();
            for tag in alternative.split('+').map(str::trim) {
                let problem = if tag.is_empty() {
                    Some("has an empty tag (a + with nothing on one side)")
                } else if tag == ANY {
                    Some("uses * inside a +; * stands alone for any member")
                } else if tag.contains(|c: char| c.is_whitespace() || c == ',' || c == '*') {
                    Some("has a tag containing a space, a comma or a *")
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(PlacementError::new(setting, format!("{alternative:?} {problem}")));
                }
                tags.push(tag.to_owned());
            }
            alternatives.push(Alternative::All(tags));
        }
        if alternatives.iter().any(|a| matches!(a, Alternative::Any)) {
            return Ok(None);
        }
        Ok(Some(TagExpr { alternatives, text: list.display() }))
    }

    fn matches(&self, me: &str, member: &Candidate) -> bool {
        self.alternatives.iter().any(|alternative| match alternative {
            Alternative::Any => true,
            Alternative::All(tags) => tags.iter().all(|tag| has_tag(me, member, tag)),
        })
    }
}

/// Tags compare case-sensitively. `Self` is on the deciding member only: a member that reports
/// a tag `Self` in its heartbeat does not get it, as in Rundeck, where `Self` is reserved.
fn has_tag(me: &str, member: &Candidate, tag: &str) -> bool {
    if tag == SELF {
        member.uuid == me
    } else {
        member.tags.iter().any(|t| t == tag)
    }
}
