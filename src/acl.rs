//! ACL policies in Rundeck's `.aclpolicy` YAML, and the decision they make.
//!
//! # Layout
//! - parsing and validation: [`parse`] turns a file (one or more YAML documents) into a
//!   [`PolicyFile`] or a [`PolicyError`] listing every problem;
//! - evaluation: [`PolicyFile::decide`] and [`Authorizer::check`] (Rundeck's order: any
//!   matching `deny` → **denied**; else any matching `allow` → allowed; else **rejected**);
//! - [`Authorizer`]: the built-in admin policy plus the policies stored in the replicated state,
//!   compiled once per stored revision.
//!
//! # Stored form
//! ```text
//! acl/system/{name}.aclpolicy          system policies (/api/{v}/system/acl/…)
//! acl/project/{project}/{name}.aclpolicy  project policies (/api/{v}/project/{p}/acl/…)
//! ```
//! Policies are replicated, not read from files, so every member decides the same way; a
//! change is seen by a member as soon as it has applied it (no two-minute reload).
//!
//! # Documents
//! Each document has `description`, `context` (`application: 'rundeck'` or `project: REGEX`),
//! `for` (resource type → rules) and `by` or `notBy` (`username`, `group`: regexes, one or a
//! list; `urn`: `user:NAME` / `group:NAME`). A rule has matchers (`equals`, `match`,
//! `contains`, `subset`; all listed must hold; none means "every resource of the type") and
//! `allow` / `deny` (an action, a list, or `*`). An allowed `admin` action grants every action
//! on that resource, as Rundeck's own checks accept `admin` in place of a specific action.
//!
//! Refused as malformed: not YAML; a missing section; an unknown context, resource type, kind
//! or action for the context; a bad regex. Refused as contradictory: a rule that both allows
//! and denies an action; `notBy` with `allow` (Rundeck applies `notBy` to `deny` only); a
//! document with both `application` and `project` contexts; a project policy whose context
//! does not name its project.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_norway::Value;
use steward_raft::{ClusterError, Member};

use crate::codec;

pub const SYSTEM_PREFIX: &str = "acl/system/";
pub const PROJECT_PREFIX: &str = "acl/project/";

/// A stored policy file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclRecord {
    pub contents: String,
    pub modified_ms: i64,
}

/// The policy Rundeck ships as `admin.aclpolicy`: the `admin` group may do everything, in
/// every project and in the application. Built in (not stored), so the bootstrap admin token
/// keeps full access whatever is stored; a stored `deny` still wins over it.
pub const BUILTIN_ADMIN: &str = r#"
description: Built-in admin policy, project context (the admin group may do everything)
context:
  project: '.*'
for:
  resource: [{allow: '*'}]
  adhoc: [{allow: '*'}]
  job: [{allow: '*'}]
  node: [{allow: '*'}]
by:
  group: admin
---
description: Built-in admin policy, application context (the admin group may do everything)
context:
  application: 'rundeck'
for:
  resource: [{allow: '*'}]
  project: [{allow: '*'}]
  project_acl: [{allow: '*'}]
  storage: [{allow: '*'}]
  apitoken: [{allow: '*'}]
  runner: [{allow: '*'}]
by:
  group: admin
"#;

/// The context a decision is made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context<'a> {
    Application,
    Project(&'a str),
}

/// Who asks.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
}

/// What is asked about: a resource type and its properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub kind: String,
    pub props: BTreeMap<String, String>,
}

impl Resource {
    fn new(kind: &str, props: &[(&str, &str)]) -> Resource {
        Resource { kind: kind.to_string(), props: props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    /// A generic resource (`for: resource: - equals: {kind: …}`).
    pub fn generic(kind: &str) -> Resource {
        Resource::new("resource", &[("kind", kind)])
    }

    pub fn project(name: &str) -> Resource {
        Resource::new("project", &[("name", name)])
    }

    pub fn project_acl(name: &str) -> Resource {
        Resource::new("project_acl", &[("name", name)])
    }

    /// A key storage path in Rundeck's spelling (`keys/a/b`).
    pub fn storage(path: &str) -> Resource {
        let name = path.rsplit('/').next().unwrap_or(path);
        Resource::new("storage", &[("path", path), ("name", name)])
    }

    pub fn job(name: &str, group: &str, uuid: &str) -> Resource {
        Resource::new("job", &[("name", name), ("group", group), ("uuid", uuid)])
    }

    pub fn adhoc() -> Resource {
        Resource::new("adhoc", &[])
    }

    /// A node by its attributes (`nodename`, `tags` comma-separated, …).
    pub fn node(attributes: &BTreeMap<String, String>) -> Resource {
        Resource { kind: "node".into(), props: attributes.clone() }
    }
}

/// Rundeck's three outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// A matching rule denies the action.
    Denied,
    /// No rule allows it.
    Rejected,
}

/// Every problem found in a policy file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid ACL policy {name}: {}", errors.join("; "))]
pub struct PolicyError {
    pub name: String,
    pub errors: Vec<String>,
}

/// Where a policy file is stored, which decides the contexts it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    System,
    Project(&'a str),
}

#[derive(Debug)]
enum PolicyContext {
    Application,
    Project(Regex),
}

#[derive(Debug, Default)]
struct SubjectMatch {
    users: Vec<Regex>,
    groups: Vec<Regex>,
    urns: Vec<String>,
}

impl SubjectMatch {
    fn matches(&self, s: &Subject) -> bool {
        self.users.iter().any(|r| r.is_match(s.user))
            || s.groups.iter().any(|g| self.groups.iter().any(|r| r.is_match(g)))
            || self.urns.iter().any(|u| {
                u.strip_prefix("user:").is_some_and(|n| n == s.user)
                    || u.strip_prefix("group:").is_some_and(|n| s.groups.iter().any(|g| g == n))
            })
    }
}

#[derive(Debug, Default)]
struct Rule {
    equals: Vec<(String, String)>,
    matches: Vec<(String, Vec<Regex>)>,
    contains: Vec<(String, Vec<String>)>,
    subset: Vec<(String, Vec<String>)>,
    allow: Vec<String>,
    deny: Vec<String>,
}

fn set_of(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

impl Rule {
    fn matches(&self, r: &Resource) -> bool {
        let prop = |k: &str| r.props.get(k).map(String::as_str);
        self.equals.iter().all(|(k, v)| prop(k) == Some(v.as_str()))
            && self.matches.iter().all(|(k, res)| prop(k).is_some_and(|v| res.iter().all(|re| re.is_match(v))))
            && self
                .contains
                .iter()
                .all(|(k, want)| prop(k).is_some_and(|v| want.iter().all(|w| set_of(v).any(|x| x == w))))
            && self
                .subset
                .iter()
                .all(|(k, allowed)| prop(k).is_some_and(|v| set_of(v).all(|x| allowed.iter().any(|a| a == x))))
    }

    fn denies(&self, action: &str) -> bool {
        self.deny.iter().any(|a| a == "*" || a == action)
    }

    fn allows(&self, action: &str) -> bool {
        self.allow.iter().any(|a| a == "*" || a == action || a == "admin" || a == "app_admin")
    }
}

#[derive(Debug)]
struct Document {
    context: PolicyContext,
    by: SubjectMatch,
    /// `notBy`: the document applies to subjects that match none of `by`.
    negated: bool,
    rules: BTreeMap<String, Vec<Rule>>,
}

/// A parsed, validated policy file.
#[derive(Debug)]
pub struct PolicyFile {
    docs: Vec<Document>,
}

// What each context knows: resource types, generic kinds and their actions (Rundeck's lists).
const APP_KINDS: &[(&str, &[&str])] = &[
    ("project", &["create"]),
    ("system", &["read", "view_cluster", "enable_executions", "disable_executions", "admin", "ops_admin"]),
    ("system_acl", &["read", "create", "update", "delete", "admin"]),
    ("user", &["admin"]),
    ("job", &["admin", "ops_admin"]),
    ("apitoken", &["generate_user_token", "generate_service_token", "admin"]),
    ("plugin", &["read", "install", "uninstall", "admin"]),
    ("runner", &["read", "admin"]),
];
const APP_TYPES: &[(&str, &[&str])] = &[
    (
        "project",
        &[
            "read",
            "configure",
            "delete",
            "import",
            "export",
            "scm_import",
            "scm_export",
            "delete_execution",
            "promote",
            "admin",
            "app_admin",
        ],
    ),
    ("project_acl", &["read", "create", "update", "delete", "admin", "app_admin"]),
    ("storage", &["create", "update", "read", "delete"]),
    ("apitoken", &["create"]),
    ("runner", &["read", "admin"]),
];
const PROJECT_KINDS: &[(&str, &[&str])] = &[
    ("job", &["create", "delete", "scm_create", "scm_delete"]),
    ("node", &["read", "create", "update", "refresh"]),
    ("event", &["read", "create"]),
    ("webhook", &["admin", "read", "create", "update", "delete", "post"]),
];
const PROJECT_TYPES: &[(&str, &[&str])] = &[
    ("adhoc", &["read", "run", "runAs", "kill", "killAs"]),
    (
        "job",
        &[
            "read",
            "view",
            "update",
            "delete",
            "run",
            "runAs",
            "kill",
            "killAs",
            "create",
            "toggle_schedule",
            "toggle_execution",
            "scm_create",
            "scm_update",
            "scm_delete",
            "view_history",
        ],
    ),
    ("node", &["read", "run"]),
];

fn lookup<'a>(table: &'a [(&str, &'a [&str])], key: &str) -> Option<&'a [&'a str]> {
    table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn anchored(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("bad regex '{pattern}': {e}"))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A string or a list of strings.
fn strings(v: &Value, what: &str, errors: &mut Vec<String>) -> Vec<String> {
    match v {
        Value::Sequence(items) => items
            .iter()
            .filter_map(|i| {
                let s = scalar(i);
                if s.is_none() {
                    errors.push(format!("{what}: expected strings"));
                }
                s
            })
            .collect(),
        other => match scalar(other) {
            Some(s) => vec![s],
            None => {
                errors.push(format!("{what}: expected a string or a list of strings"));
                Vec::new()
            }
        },
    }
}

fn key_str(k: &Value) -> String {
    scalar(k).unwrap_or_else(|| format!("{k:?}"))
}

/// Parses and validates a policy file (`name` is used in messages).
pub fn parse(name: &str, text: &str, scope: Scope) -> Result<PolicyFile, PolicyError> {
    let mut errors = Vec::new();
    let mut docs = Vec::new();
    if text.trim().is_empty() {
        errors.push("the policy is empty".to_string());
    }
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        match <Value as serde::Deserialize>::deserialize(de) {
            Err(e) => {
                errors.push(format!("document {n}: not valid YAML: {e}"));
                break;
            }
            Ok(Value::Null) => {}
            Ok(Value::Mapping(m)) => {
                if let Some(doc) = parse_doc(n, &m, scope, &mut errors) {
                    docs.push(doc);
                }
            }
            Ok(_) => errors.push(format!("document {n}: expected a mapping with description, context, for, by")),
        }
    }
    if docs.is_empty() && errors.is_empty() {
        errors.push("the policy has no document".to_string());
    }
    if errors.is_empty() {
        Ok(PolicyFile { docs })
    } else {
        Err(PolicyError { name: name.to_string(), errors })
    }
}

fn parse_doc(n: usize, m: &serde_norway::Mapping, scope: Scope, errors: &mut Vec<String>) -> Option<Document> {
    let before = errors.len();
    let mut err = |msg: String| errors.push(format!("document {n}: {msg}"));
    for k in m.keys() {
        let k = key_str(k);
        if !["description", "context", "for", "by", "notBy"].contains(&k.as_str()) {
            err(format!("unknown section '{k}'"));
        }
    }
    match m.get("description") {
        Some(v) if scalar(v).is_some_and(|s| !s.trim().is_empty()) => {}
        _ => err("'description' is required".into()),
    }

    let context = match (m.get("context"), scope) {
        (None, Scope::Project(p)) => Some(PolicyContext::Project(anchored(&regex::escape(p)).ok()?)),
        (None, Scope::System) => {
            err("'context' is required (application: 'rundeck' or project: REGEX)".into());
            None
        }
        (Some(Value::Mapping(c)), _) => {
            let app = c.get("application");
            let proj = c.get("project");
            let extra: Vec<String> = c.keys().map(key_str).filter(|k| k != "application" && k != "project").collect();
            if !extra.is_empty() {
                err(format!("unknown context {extra:?}"));
            }
            match (app, proj) {
                (Some(_), Some(_)) => {
                    err("context names both application and project; a document has one context".into());
                    None
                }
                (Some(a), None) => {
                    if scalar(a).as_deref() != Some("rundeck") {
                        err("context application must be 'rundeck'".into());
                    }
                    if let Scope::Project(p) = scope {
                        err(format!("a policy of project {p} may only use the project context"));
                    }
                    Some(PolicyContext::Application)
                }
                (None, Some(p)) => match scalar(p).map(|s| anchored(&s)) {
                    Some(Ok(re)) => {
                        if let Scope::Project(name) = scope {
                            if !re.is_match(name) {
                                err(format!("the context does not match project {name}, which the policy belongs to"));
                            }
                        }
                        Some(PolicyContext::Project(re))
                    }
                    Some(Err(e)) => {
                        err(format!("context: {e}"));
                        None
                    }
                    None => {
                        err("context project must be a regex string".into());
                        None
                    }
                },
                (None, None) => {
                    err("context needs application or project".into());
                    None
                }
            }
        }
        (Some(_), _) => {
            err("'context' must be a mapping".into());
            None
        }
    };

    let mut by = SubjectMatch::default();
    let negated = match (m.get("by"), m.get("notBy")) {
        (Some(_), Some(_)) => {
            err("a document has 'by' or 'notBy', not both".into());
            false
        }
        (None, None) => {
            err("'by' (or 'notBy') is required".into());
            false
        }
        (Some(v), None) | (None, Some(v)) => {
            let negated = m.get("notBy").is_some();
            match v {
                Value::Mapping(b) => {
                    let mut sub = Vec::new();
                    for (k, v) in b {
                        match key_str(k).as_str() {
                            "username" => {
                                for s in strings(v, "by.username", &mut sub) {
                                    match anchored(&s) {
                                        Ok(r) => by.users.push(r),
                                        Err(e) => sub.push(format!("by.username: {e}")),
                                    }
                                }
                            }
                            "group" => {
                                for s in strings(v, "by.group", &mut sub) {
                                    match anchored(&s) {
                                        Ok(r) => by.groups.push(r),
                                        Err(e) => sub.push(format!("by.group: {e}")),
                                    }
                                }
                            }
                            "urn" => {
                                for s in strings(v, "by.urn", &mut sub) {
                                    if !(s.starts_with("user:") || s.starts_with("group:")) {
                                        sub.push(format!("by.urn '{s}': use user:NAME or group:NAME"));
                                    }
                                    by.urns.push(s);
                                }
                            }
                            other => sub.push(format!("unknown subject '{other}' (username, group, urn)")),
                        }
                    }
                    for s in sub {
                        err(s);
                    }
                    if by.users.is_empty() && by.groups.is_empty() && by.urns.is_empty() {
                        err("'by' names nobody".into());
                    }
                }
                _ => err("'by' must be a mapping of username, group or urn".into()),
            }
            negated
        }
    };

    let mut rules = BTreeMap::new();
    match m.get("for") {
        Some(Value::Mapping(f)) if !f.is_empty() => {
            for (t, list) in f {
                let t = key_str(t);
                let (kinds, types) = match context {
                    Some(PolicyContext::Application) => (APP_KINDS, APP_TYPES),
                    _ => (PROJECT_KINDS, PROJECT_TYPES),
                };
                if t != "resource" && lookup(types, &t).is_none() {
                    err(format!("unknown resource type '{t}' for this context"));
                    continue;
                }
                let Value::Sequence(items) = list else {
                    err(format!("for.{t} must be a list of rules"));
                    continue;
                };
                let mut parsed = Vec::new();
                for (j, item) in items.iter().enumerate() {
                    let mut sub = Vec::new();
                    let rule = parse_rule(&t, item, kinds, types, negated, &mut sub);
                    for s in sub {
                        err(format!("for.{t}[{j}]: {s}"));
                    }
                    parsed.extend(rule);
                }
                rules.insert(t, parsed);
            }
        }
        _ => err("'for' is required and must map resource types to rules".into()),
    }

    if errors.len() > before {
        return None;
    }
    Some(Document { context: context?, by, negated, rules })
}

fn parse_rule(
    t: &str,
    item: &Value,
    kinds: &[(&str, &[&str])],
    types: &[(&str, &[&str])],
    negated: bool,
    errors: &mut Vec<String>,
) -> Option<Rule> {
    let Value::Mapping(m) = item else {
        errors.push("a rule is a mapping of matchers and allow/deny".into());
        return None;
    };
    let mut rule = Rule::default();
    for (k, v) in m {
        let k = key_str(k);
        match k.as_str() {
            "allow" => rule.allow = strings(v, "allow", errors),
            "deny" => rule.deny = strings(v, "deny", errors),
            "equals" | "match" | "contains" | "subset" => {
                let Value::Mapping(props) = v else {
                    errors.push(format!("{k} must map properties to values"));
                    continue;
                };
                for (p, pv) in props {
                    let p = key_str(p);
                    let vals = strings(pv, &format!("{k}.{p}"), errors);
                    match k.as_str() {
                        "equals" => match vals.as_slice() {
                            [one] => rule.equals.push((p, one.clone())),
                            _ => errors.push(format!("equals.{p} takes one value")),
                        },
                        "match" => {
                            let mut res = Vec::new();
                            for s in vals {
                                match anchored(&s) {
                                    Ok(r) => res.push(r),
                                    Err(e) => errors.push(format!("match.{p}: {e}")),
                                }
                            }
                            rule.matches.push((p, res));
                        }
                        "contains" => rule.contains.push((p, vals)),
                        _ => rule.subset.push((p, vals)),
                    }
                }
            }
            other => errors.push(format!("unknown rule key '{other}' (equals, match, contains, subset, allow, deny)")),
        }
    }
    if rule.allow.is_empty() && rule.deny.is_empty() {
        errors.push("a rule needs allow or deny".into());
    }
    if negated && !rule.allow.is_empty() {
        errors.push("notBy applies to deny only; a notBy document cannot allow".into());
    }
    for a in &rule.allow {
        if rule.deny.iter().any(|d| d == a || d == "*") || (a == "*" && !rule.deny.is_empty()) {
            errors.push(format!("action '{a}' is both allowed and denied by the same rule"));
        }
    }
    // The actions a rule may name: the type's, or for a generic resource the kind's (all
    // kinds' when the kind is not fixed by `equals`).
    let known: Vec<&str> = if t == "resource" {
        match rule.equals.iter().find(|(k, _)| k == "kind") {
            Some((_, kind)) => match lookup(kinds, kind) {
                Some(a) => a.to_vec(),
                None => {
                    let names: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
                    errors.push(format!("unknown resource kind '{kind}' for this context (one of {names:?})"));
                    return None;
                }
            },
            None => kinds.iter().flat_map(|(_, a)| a.iter().copied()).collect(),
        }
    } else {
        lookup(types, t).map(|a| a.to_vec()).unwrap_or_default()
    };
    for a in rule.allow.iter().chain(&rule.deny) {
        if a != "*" && a != "admin" && a != "app_admin" && !known.contains(&a.as_str()) {
            errors.push(format!("unknown action '{a}' for {t} (one of {known:?})"));
        }
    }
    Some(rule)
}

impl PolicyFile {
    /// This file's say on `action`: `Denied` as soon as a matching rule denies it.
    pub fn decide(&self, subject: &Subject, ctx: Context, resource: &Resource, action: &str) -> Decision {
        let mut allowed = false;
        for doc in &self.docs {
            let in_context = match (&doc.context, ctx) {
                (PolicyContext::Application, Context::Application) => true,
                (PolicyContext::Project(re), Context::Project(p)) => re.is_match(p),
                _ => false,
            };
            if !in_context || doc.by.matches(subject) == doc.negated {
                continue;
            }
            for rule in doc.rules.get(&resource.kind).into_iter().flatten() {
                if !rule.matches(resource) {
                    continue;
                }
                if rule.denies(action) {
                    return Decision::Denied;
                }
                allowed |= rule.allows(action);
            }
        }
        if allowed {
            Decision::Allowed
        } else {
            Decision::Rejected
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Decode(#[from] codec::DecodeError),
}

/// The policies of one member: built in, and stored (compiled once per stored revision).
pub struct Authorizer {
    member: Member,
    builtin: PolicyFile,
    /// Store key → (mod revision, compiled file). A file that no longer parses is kept as
    /// `None` and logged; see [`Authorizer::check`].
    cache: Mutex<HashMap<String, Compiled>>,
}

/// A stored file as compiled: the revision it was read at, and the file if it parsed.
type Compiled = (u64, Option<Arc<PolicyFile>>);

impl Authorizer {
    pub fn new(member: Member) -> Authorizer {
        let builtin =
            parse("builtin-admin.aclpolicy", BUILTIN_ADMIN, Scope::System).expect("the built-in admin policy is valid");
        Authorizer { member, builtin, cache: Mutex::new(HashMap::new()) }
    }

    fn compiled(&self, prefix: &str, scope: Scope) -> Result<Vec<Arc<PolicyFile>>, AclError> {
        // Local reads: a policy change is seen once this member has applied it, like any
        // replicated state; no request waits on the leader to be authorized.
        let rows = self.member.kv().range(prefix).map_err(ClusterError::from)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for (key, kv) in rows {
            if let Some((rev, file)) = cache.get(&key) {
                if *rev == kv.mod_revision {
                    out.extend(file.clone());
                    continue;
                }
            }
            let record: AclRecord = codec::decode(&kv.value)?;
            let file = match parse(&key, &record.contents, scope) {
                Ok(f) => Some(Arc::new(f)),
                Err(e) => {
                    // Validated before it was stored; only a stricter build gets here.
                    tracing::error!(error = %e, "a stored ACL policy does not parse; it is ignored");
                    None
                }
            };
            cache.insert(key, (kv.mod_revision, file.clone()));
            out.extend(file);
        }
        Ok(out)
    }

    /// Rundeck's decision for `subject` doing `action` on `resource` in `ctx`: the built-in
    /// policy, the stored system policies and, in a project, that project's policies.
    pub fn check(
        &self,
        subject: &Subject,
        ctx: Context,
        resource: &Resource,
        action: &str,
    ) -> Result<Decision, AclError> {
        let mut files = self.compiled(SYSTEM_PREFIX, Scope::System)?;
        if let Context::Project(p) = ctx {
            files.extend(self.compiled(&format!("{PROJECT_PREFIX}{p}/"), Scope::Project(p))?);
        }
        let mut allowed = false;
        for f in std::iter::once(&self.builtin).chain(files.iter().map(|f| f.as_ref())) {
            match f.decide(subject, ctx, resource, action) {
                Decision::Denied => return Ok(Decision::Denied),
                Decision::Allowed => allowed = true,
                Decision::Rejected => {}
            }
        }
        Ok(if allowed { Decision::Allowed } else { Decision::Rejected })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(user: &'a str, groups: &'a [String]) -> Subject<'a> {
        Subject { user, groups }
    }

    const OPS: &str = r#"
description: ops may read keys under keys/ops and run jobs in prod, but never delete
context:
  application: 'rundeck'
for:
  storage:
    - match: {path: 'keys/ops(/.*)?'}
      allow: [read, create]
    - equals: {path: 'keys/ops/root.pem'}
      deny: read
by:
  group: ops
---
description: ops in prod
context:
  project: 'prod.*'
for:
  job:
    - match: {group: 'deploy/.*'}
      allow: [run, read]
  resource:
    - equals: {kind: job}
      deny: delete
by:
  group: [ops]
"#;

    #[test]
    fn allow_by_group_deny_wins_and_no_match_is_rejected() {
        let f = parse("ops.aclpolicy", OPS, Scope::System).unwrap();
        let ops = vec!["ops".to_string()];
        let s = subject("alice", &ops);
        let app = Context::Application;
        assert_eq!(f.decide(&s, app, &Resource::storage("keys/ops/db"), "read"), Decision::Allowed);
        assert_eq!(f.decide(&s, app, &Resource::storage("keys/ops/root.pem"), "read"), Decision::Denied);
        assert_eq!(f.decide(&s, app, &Resource::storage("keys/dev/db"), "read"), Decision::Rejected);
        assert_eq!(f.decide(&s, app, &Resource::storage("keys/ops/db"), "delete"), Decision::Rejected);
        let prod = Context::Project("prod-eu");
        assert_eq!(f.decide(&s, prod, &Resource::job("up", "deploy/web", "u1"), "run"), Decision::Allowed);
        assert_eq!(
            f.decide(&s, Context::Project("dev"), &Resource::job("up", "deploy/web", "u1"), "run"),
            Decision::Rejected
        );
        assert_eq!(f.decide(&s, prod, &Resource::generic("job"), "delete"), Decision::Denied);
        let dev = vec!["dev".to_string()];
        assert_eq!(f.decide(&subject("bob", &dev), app, &Resource::storage("keys/ops/db"), "read"), Decision::Rejected);
    }

    #[test]
    fn the_builtin_admin_policy_allows_the_admin_group_everything() {
        let f = parse("admin", BUILTIN_ADMIN, Scope::System).unwrap();
        let admin = vec!["admin".to_string()];
        let s = subject("root", &admin);
        assert_eq!(f.decide(&s, Context::Application, &Resource::generic("system"), "read"), Decision::Allowed);
        assert_eq!(f.decide(&s, Context::Application, &Resource::storage("keys/x"), "delete"), Decision::Allowed);
        assert_eq!(f.decide(&s, Context::Project("p"), &Resource::adhoc(), "run"), Decision::Allowed);
        let none: Vec<String> = vec![];
        assert_eq!(
            f.decide(&subject("x", &none), Context::Application, &Resource::generic("system"), "read"),
            Decision::Rejected
        );
    }

    #[test]
    fn not_by_denies_everyone_else_and_urns_match_exactly() {
        let text = r#"
description: only admins may touch acls
context: {application: rundeck}
for:
  resource: [{equals: {kind: system_acl}, deny: '*'}]
notBy:
  urn: group:admin
---
description: carol reads the system
context: {application: rundeck}
for:
  resource: [{equals: {kind: system}, allow: read}]
by:
  urn: user:carol
"#;
        let f = parse("t", text, Scope::System).unwrap();
        let none: Vec<String> = vec![];
        let admin = vec!["admin".to_string()];
        let app = Context::Application;
        assert_eq!(f.decide(&subject("carol", &none), app, &Resource::generic("system_acl"), "read"), Decision::Denied);
        assert_eq!(
            f.decide(&subject("root", &admin), app, &Resource::generic("system_acl"), "read"),
            Decision::Rejected
        );
        assert_eq!(f.decide(&subject("carol", &none), app, &Resource::generic("system"), "read"), Decision::Allowed);
        assert_eq!(f.decide(&subject("carolx", &none), app, &Resource::generic("system"), "read"), Decision::Rejected);
    }

    #[test]
    fn malformed_and_contradictory_policies_are_refused_with_every_reason() {
        let cases = [
            ("{not: yaml", "not valid YAML"),
            ("", "empty"),
            ("description: x\nfor: {storage: [{allow: read}]}\nby: {group: a}", "'context' is required"),
            ("description: x\ncontext: {application: rundeck}\nby: {group: a}", "'for' is required"),
            ("description: x\ncontext: {application: rundeck}\nfor: {storage: [{allow: read}]}", "'by'"),
            ("context: {application: rundeck}\nfor: {storage: [{allow: read}]}\nby: {group: a}", "description"),
            (
                "description: x\ncontext: {application: rundeck, project: p}\nfor: {storage: [{allow: read}]}\nby: {group: a}",
                "both application and project",
            ),
            (
                "description: x\ncontext: {application: rundeck}\nfor: {storage: [{allow: read, deny: read}]}\nby: {group: a}",
                "both allowed and denied",
            ),
            (
                "description: x\ncontext: {application: rundeck}\nfor: {storage: [{allow: read}]}\nnotBy: {group: a}",
                "notBy applies to deny only",
            ),
            (
                "description: x\ncontext: {application: rundeck}\nfor: {storage: [{allow: fly}]}\nby: {group: a}",
                "unknown action 'fly'",
            ),
            (
                "description: x\ncontext: {application: rundeck}\nfor: {job: [{allow: run}]}\nby: {group: a}",
                "unknown resource type 'job'",
            ),
            (
                "description: x\ncontext: {project: '('}\nfor: {job: [{allow: run}]}\nby: {group: a}",
                "bad regex",
            ),
            (
                "description: x\ncontext: {application: rundeck}\nfor: {resource: [{equals: {kind: rocket}, allow: read}]}\nby: {group: a}",
                "unknown resource kind",
            ),
        ];
        for (text, want) in cases {
            let err = parse("p.aclpolicy", text, Scope::System).expect_err(text);
            let msg = err.to_string();
            assert!(msg.contains(want), "{text:?}: expected '{want}' in {msg}");
        }
    }

    #[test]
    fn project_policies_use_their_own_project_context_only() {
        let ok = "description: x\nfor: {job: [{allow: run}]}\nby: {group: a}";
        assert!(parse("p", ok, Scope::Project("web")).is_ok(), "context implied");
        let other = "description: x\ncontext: {project: db}\nfor: {job: [{allow: run}]}\nby: {group: a}";
        assert!(parse("p", other, Scope::Project("web")).unwrap_err().to_string().contains("does not match"));
        let app = "description: x\ncontext: {application: rundeck}\nfor: {storage: [{allow: read}]}\nby: {group: a}";
        assert!(parse("p", app, Scope::Project("web")).unwrap_err().to_string().contains("project context"));
    }
}
