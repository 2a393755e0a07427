//! Rundeck's job definition format, YAML and JSON (one structure, two spellings): parsing an
//! import document job by job, validating a definition, and exporting definitions that Rundeck
//! can import again.
//!
//! # Keeping what steward does not act on
//! Every struct here that mirrors a mapping of the format has an `extra` map
//! (`#[serde(flatten)]`) that takes the keys steward does not know or does not act on yet
//! (`loglimit`, `orchestrator`, `plugins`, `nodesSelectedByDefault`, email notifications, …).
//! They are stored with the job and exported again as they came, so an import–export round trip
//! through steward loses nothing. Fields steward acts on are typed; values that Rundeck itself
//! keeps as text (`timeout`, `retry`, schedule fields) are kept as text with their parsed value
//! beside it, so they also come back as written.
//!
//! # Errors
//! [`parse_jobs`] splits a document into jobs first and then reads each job on its own, so one
//! bad job does not stop the others. A document that is not a list of mappings at all is a
//! [`DocumentError`]; a job that cannot be read or does not validate is a [`JobError`] that
//! names the job (index, name and uuid when readable) and the field (`schedule.crontab`,
//! `timeZone`, `options[2].values`, `sequence.commands[0]`, …).
//!
//! # Steward's extension: `misfire`
//! Not in Rundeck: `misfire: { policy: run-late | record-missed, window: 60s }` says what the
//! scheduler does with a slot it reaches late (see [`crate::jobs::schedule::plan_due_slots`]).
//! Absent, a late slot runs once if it is at most 60 s late. Rundeck ignores the key on import.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::duration::{DurationSpec, DurationValue};
use super::schedule::{self, MisfireKind, MisfirePolicy};

/// Keys of a mapping that steward keeps without acting on them.
pub type Extra = BTreeMap<String, Value>;

/// The two spellings of a job document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFormat {
    Yaml,
    Json,
}

impl JobFormat {
    /// The format named by a `Content-Type` or `Accept` value, if it is one of ours.
    pub fn from_media_type(media_type: &str) -> Option<JobFormat> {
        let essence = media_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => Some(JobFormat::Yaml),
            "application/json" | "text/json" => Some(JobFormat::Json),
            _ => None,
        }
    }

    /// The media type an export in this format is sent with.
    pub fn media_type(self) -> &'static str {
        match self {
            JobFormat::Yaml => "application/yaml",
            JobFormat::Json => "application/json",
        }
    }
}

impl FromStr for JobFormat {
    type Err = String;
    /// Rundeck's `format` / `fileformat` parameter values.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Ok(JobFormat::Yaml),
            "json" => Ok(JobFormat::Json),
            _ => Err(format!("unsupported job format '{s}': use yaml or json")),
        }
    }
}

impl fmt::Display for JobFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobFormat::Yaml => "YAML",
            JobFormat::Json => "JSON",
        })
    }
}

/// A document that cannot be split into jobs at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Not well-formed YAML or JSON; the message carries the line and column.
    #[error("the document is not valid {format}: {message}")]
    Syntax { format: JobFormat, message: String },
    /// Well-formed, but not a list of jobs.
    #[error("a job document is a list of jobs, but this one is {found}{hint}")]
    NotAList { found: String, hint: &'static str },
}

/// One thing wrong with a job, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Path of the field in the job, e.g. `schedule.crontab`, `options[2].values`; empty for
    /// the job as a whole.
    pub field: String,
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldProblem { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// A job that cannot be imported, or a definition that does not validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct JobError {
    /// Position of the job in its document, from 0; `None` outside an import.
    pub index: Option<usize>,
    /// The job's name, when it could be read.
    pub name: Option<String>,
    /// The job's uuid (or `id`), when it could be read.
    pub uuid: Option<String>,
    /// What is wrong; never empty.
    pub problems: Vec<FieldProblem>,
}

impl JobError {
    pub fn new(problems: Vec<FieldProblem>) -> Self {
        JobError { index: None, name: None, uuid: None, problems }
    }

    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(vec![FieldProblem::new(field, message)])
    }

    /// Names the job the problems belong to.
    pub fn for_job(mut self, index: Option<usize>, name: Option<&str>, uuid: Option<&str>) -> Self {
        self.index = index.or(self.index);
        self.name = name.map(str::to_string).or(self.name);
        self.uuid = uuid.map(str::to_string).or(self.uuid);
        self
    }

    /// The field of the first problem.
    pub fn field(&self) -> &str {
        self.problems.first().map(|p| p.field.as_str()).unwrap_or("")
    }

    /// The problems alone, without naming the job (for a response that names it elsewhere).
    pub fn problems_text(&self) -> String {
        self.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    }

    fn describe(&self) -> String {
        let mut who = String::from("job");
        if let Some(i) = self.index {
            who.push_str(&format!(" [{i}]"));
        }
        if let Some(n) = &self.name {
            who.push_str(&format!(" '{n}'"));
        }
        if let Some(u) = &self.uuid {
            who.push_str(&format!(" (uuid {u})"));
        }
        format!("{who}: {}", self.problems_text())
    }
}

/// Log level of a job or a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Debug,
    Verbose,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Verbose => "VERBOSE",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }
}

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "DEBUG" => Ok(LogLevel::Debug),
            "VERBOSE" => Ok(LogLevel::Verbose),
            "INFO" => Ok(LogLevel::Info),
            "WARN" | "WARNING" => Ok(LogLevel::Warn),
            "ERROR" => Ok(LogLevel::Error),
            _ => Err(format!("unknown log level '{s}': use DEBUG, VERBOSE, INFO, WARN or ERROR")),
        }
    }
}

impl Serialize for LogLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = lenient::scalar_text(d, "a log level (DEBUG, VERBOSE, INFO, WARN or ERROR)")?;
        text.parse().map_err(de::Error::custom)
    }
}

/// A job definition in Rundeck's format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDefinition {
    /// Same value as `uuid` on export; Rundeck reads either.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub uuid: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    /// Group path, `a/b/c`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub project: Option<String>,
    /// First line: the short description; the rest is Markdown.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loglevel: Option<LogLevel>,
    /// Runs of the job may start (manually or by schedule). Default true.
    #[serde(default = "yes", deserialize_with = "lenient::bool_default_true")]
    pub execution_enabled: bool,
    /// The schedule fires. Default true.
    #[serde(default = "yes", deserialize_with = "lenient::bool_default_true")]
    pub schedule_enabled: bool,
    /// A new run may start while one is going; otherwise it is skipped.
    #[serde(default, skip_serializing_if = "is_false", deserialize_with = "lenient::bool")]
    pub multiple_executions: bool,
    /// IANA time zone the schedule is read in; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Steward's extension: what happens to a slot reached late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire: Option<Misfire>,
    /// Longest a run may take before it is killed.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_unless_blank")]
    pub timeout: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_unless_blank")]
    pub retry: Option<Retry>,
    /// Accepts the list form and Rundeck's older map form (`options: {name: {...}}`); exports
    /// the list form.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "deserialize_options")]
    pub options: Vec<JobOption>,
    #[serde(default)]
    pub sequence: Sequence,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodefilters: Option<NodeFilters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<Notifications>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl JobDefinition {
    /// A job with a name and steps and everything else at its default.
    pub fn new(name: impl Into<String>, commands: Vec<Step>) -> Self {
        JobDefinition {
            id: None,
            uuid: None,
            name: name.into(),
            group: None,
            project: None,
            description: None,
            loglevel: None,
            execution_enabled: true,
            schedule_enabled: true,
            multiple_executions: false,
            time_zone: None,
            schedule: None,
            misfire: None,
            timeout: None,
            retry: None,
            options: Vec::new(),
            sequence: Sequence { commands, ..Sequence::default() },
            nodefilters: None,
            notification: None,
            extra: Extra::new(),
        }
    }

    /// The job's uuid: `uuid`, else `id`.
    pub fn uuid(&self) -> Option<&str> {
        self.uuid.as_deref().or(self.id.as_deref()).filter(|u| !u.is_empty())
    }

    /// `group/name`, or the name for a job outside any group.
    pub fn full_name(&self) -> String {
        match self.group.as_deref().filter(|g| !g.is_empty()) {
            Some(g) => format!("{g}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The schedule fires: the job has one and both its schedule and its execution are enabled.
    pub fn is_scheduled(&self) -> bool {
        self.schedule.is_some() && self.schedule_enabled && self.execution_enabled
    }

    /// The log level runs use unless a run asks for another.
    pub fn log_level(&self) -> LogLevel {
        self.loglevel.unwrap_or_default()
    }

    /// The misfire policy, with steward's defaults for what the job leaves out.
    pub fn misfire_policy(&self) -> MisfirePolicy {
        let mut policy = MisfirePolicy::default();
        if let Some(m) = &self.misfire {
            policy.kind = m.policy;
            if let Some(w) = m.window.as_ref().and_then(DurationSpec::fixed) {
                policy.window = w;
            }
        }
        policy
    }

    /// The option named `name`.
    pub fn option(&self, name: &str) -> Option<&JobOption> {
        self.options.iter().find(|o| o.name == name)
    }

    /// Checks everything a job must satisfy before it is stored, reporting every problem.
    pub fn validate(&self) -> Result<(), JobError> {
        let mut problems = Vec::new();
        self.validate_identity(&mut problems);
        if let Some(tz) = &self.time_zone {
            if let Err(message) = schedule::parse_time_zone(tz) {
                problems.push(FieldProblem::new("timeZone", message));
            }
        }
        if let Some(s) = &self.schedule {
            if let Err(p) = schedule::JobSchedule::from_schedule(s, chrono_tz::Tz::UTC) {
                problems.push(p);
            }
        }
        if let Some(m) = &self.misfire {
            match m.window.as_ref().map(DurationSpec::value) {
                Some(DurationValue::Expression(_)) => problems.push(FieldProblem::new(
                    "misfire.window",
                    "the misfire window must be a fixed duration such as 60s, not an option reference",
                )),
                Some(DurationValue::Fixed(d)) if d.is_zero() => problems.push(FieldProblem::new(
                    "misfire.window",
                    "the misfire window must be longer than 0 s (use policy record-missed to never run late)",
                )),
                _ => {}
            }
        }
        if let Some(retry) = &self.retry {
            if let RetryCount::Fixed(n) = retry.count() {
                if n > MAX_RETRY {
                    problems.push(FieldProblem::new("retry", format!("at most {MAX_RETRY} retries, not {n}")));
                }
            }
        }
        validate_options(&self.options, &mut problems);
        validate_sequence(&self.sequence, &mut problems);
        if let Some(n) = &self.notification {
            validate_notifications(n, &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(JobError::new(problems).for_job(None, Some(self.name.as_str()).filter(|n| !n.is_empty()), self.uuid()))
        }
    }

    fn validate_identity(&self, problems: &mut Vec<FieldProblem>) {
        let name = self.name.trim();
        if name.is_empty() {
            problems.push(FieldProblem::new("name", "a job needs a name"));
        } else if self.name.contains('/') {
            problems.push(FieldProblem::new("name", "a job name cannot contain '/' (put the path in 'group')"));
        } else if self.name.chars().count() > 1024 {
            problems.push(FieldProblem::new("name", "a job name has at most 1024 characters"));
        }
        if let Some(g) = &self.group {
            if g.starts_with('/') || g.ends_with('/') || g.contains("//") {
                problems.push(FieldProblem::new("group", format!("'{g}' is not a group path like 'ops/nightly'")));
            } else if g.chars().count() > 2048 {
                problems.push(FieldProblem::new("group", "a group path has at most 2048 characters"));
            }
        }
        for (field, value) in [("uuid", &self.uuid), ("id", &self.id)] {
            if let Some(u) = value {
                if !valid_uuid(u) {
                    problems.push(FieldProblem::new(
                        field,
                        format!(
                            "'{u}' is not a valid job {field}: use letters, digits and - _ . + (not starting \
                             with .), at most 255 characters"
                        ),
                    ));
                }
            }
        }
        if let (Some(u), Some(i)) = (&self.uuid, &self.id) {
            if u != i {
                problems
                    .push(FieldProblem::new("id", format!("id '{i}' and uuid '{u}' differ; they name the same job")));
            }
        }
    }

    /// The definition as it is exported: `id` and `uuid` both set to the job's uuid, as Rundeck
    /// writes them, and no default value of a secure option (validation already refuses those;
    /// this keeps a definition built in code from leaking one).
    pub fn for_export(&self) -> JobDefinition {
        let mut job = self.clone();
        if let Some(u) = self.uuid().map(str::to_string) {
            job.uuid = Some(u.clone());
            job.id = Some(u);
        }
        for opt in &mut job.options {
            if opt.secure {
                opt.value = None;
            }
        }
        job
    }
}

/// Most retries a job may ask for; a bound on how long one slot can keep a job busy.
pub const MAX_RETRY: u32 = 1000;

/// Rundeck's rule for job uuids (`FrameworkResource.VALID_RESOURCE_NAME_REGEX`): also keeps them
/// safe as a key segment.
pub fn valid_uuid(u: &str) -> bool {
    let mut chars = u.chars();
    let ok_first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || "-_+".contains(c));
    ok_first && chars.all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c)) && u.len() <= 255
}

/// Rundeck's rule for option names.
pub fn valid_option_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn validate_options(options: &[JobOption], problems: &mut Vec<FieldProblem>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, opt) in options.iter().enumerate() {
        let at = |field: &str| format!("options[{i}].{field}");
        if !valid_option_name(&opt.name) {
            let message = if opt.name.is_empty() {
                "an option needs a name".to_string()
            } else {
                format!("'{}' is not a valid option name: use letters, digits and _ . -", opt.name)
            };
            problems.push(FieldProblem::new(at("name"), message));
        } else if let Some(first) = seen.insert(&opt.name, i) {
            problems.push(FieldProblem::new(
                at("name"),
                format!("duplicate option name '{}' (also options[{first}])", opt.name),
            ));
        }
        let allowed = opt.values.as_deref().unwrap_or(&[]);
        if opt.enforced && allowed.is_empty() && opt.values_url.is_none() {
            problems.push(FieldProblem::new(at("values"), "an enforced option needs a list of allowed values"));
        }
        if opt.multivalued && opt.delimiter.as_deref().is_none_or(str::is_empty) {
            problems.push(FieldProblem::new(at("delimiter"), "a multivalued option needs a delimiter, e.g. ','"));
        }
        if opt.secure && opt.multivalued {
            problems.push(FieldProblem::new(at("multivalued"), "a secure option cannot be multivalued"));
        }
        let default = opt.value.as_deref().filter(|v| !v.is_empty());
        if opt.secure && default.is_some() {
            problems.push(FieldProblem::new(
                at("value"),
                "a secure option cannot carry its default in the job definition, where exports would \
                 show it; put it in key storage and name it with storagePath",
            ));
        }
        if let Some(path) = &opt.storage_path {
            if !path.starts_with("keys/") || path.len() <= "keys/".len() {
                problems.push(FieldProblem::new(
                    at("storagePath"),
                    format!("'{path}' is not a key storage path like keys/db/password"),
                ));
            }
        }
        let regex = match opt.regex.as_deref().map(compile_option_regex) {
            Some(Err(message)) => {
                problems.push(FieldProblem::new(at("regex"), message));
                None
            }
            Some(Ok(re)) => Some(re),
            None => None,
        };
        if let (Some(default), false) = (default, opt.secure) {
            for part in opt.split_value(default) {
                if opt.enforced && !allowed.is_empty() && !allowed.iter().any(|a| a == part) {
                    problems.push(FieldProblem::new(
                        at("value"),
                        format!("default '{part}' is not one of the allowed values ({})", allowed.join(", ")),
                    ));
                }
                if let Some(re) = &regex {
                    if !re.is_match(part) {
                        problems.push(FieldProblem::new(
                            at("value"),
                            format!("default '{part}' does not match the option's regex"),
                        ));
                    }
                }
            }
        }
    }
}

/// Compiles an option's `regex` the way Rundeck applies it: the whole value must match.
pub fn compile_option_regex(pattern: &str) -> Result<regex::Regex, String> {
    // The size limit bounds the memory a user-supplied pattern can take.
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("'{pattern}' is not a regular expression steward can use: {e}"))
}

fn validate_sequence(sequence: &Sequence, problems: &mut Vec<FieldProblem>) {
    if sequence.commands.is_empty() {
        problems.push(FieldProblem::new("sequence.commands", "a job needs at least one step"));
    }
    for (i, step) in sequence.commands.iter().enumerate() {
        let field = format!("sequence.commands[{i}]");
        validate_step(step, &field, problems);
        if step.keepgoing_on_success.is_some() {
            problems.push(FieldProblem::new(
                format!("{field}.keepgoingOnSuccess"),
                "keepgoingOnSuccess belongs on an errorhandler, not on a step",
            ));
        }
        if let Some(handler) = &step.errorhandler {
            let field = format!("{field}.errorhandler");
            validate_step(handler, &field, problems);
            if handler.errorhandler.is_some() {
                problems.push(FieldProblem::new(
                    format!("{field}.errorhandler"),
                    "an error handler cannot have its own error handler",
                ));
            }
        }
    }
}

fn validate_step(step: &Step, field: &str, problems: &mut Vec<FieldProblem>) {
    match step.kind() {
        Err(message) => problems.push(FieldProblem::new(field, message)),
        Ok(StepKind::JobRef(r)) => {
            if r.uuid.as_deref().is_none_or(str::is_empty) && r.name.as_deref().is_none_or(str::is_empty) {
                problems.push(FieldProblem::new(format!("{field}.jobref"), "a job reference needs a uuid or a name"));
            }
        }
        Ok(StepKind::Exec { command }) if command.trim().is_empty() => {
            problems.push(FieldProblem::new(format!("{field}.exec"), "the command is empty"));
        }
        Ok(StepKind::Plugin { provider, .. }) if provider.trim().is_empty() => {
            problems.push(FieldProblem::new(format!("{field}.type"), "the plugin step type is empty"));
        }
        Ok(_) => {}
    }
}

fn validate_notifications(n: &Notifications, problems: &mut Vec<FieldProblem>) {
    for (event, trigger) in n.triggers() {
        for (j, spec) in trigger.iter().enumerate() {
            let field = match trigger {
                OneOrMany::One(_) => format!("notification.{event}.urls"),
                OneOrMany::Many(_) => format!("notification.{event}[{j}].urls"),
            };
            for url in spec.webhook_urls() {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    problems.push(FieldProblem::new(&field, format!("'{url}' is not an http:// or https:// URL")));
                }
            }
        }
    }
}

/// The schedule: Rundeck's `crontab` string, or its structured form. When both are present
/// the crontab wins, as in Rundeck.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Schedule {
    /// Quartz cron: `seconds minutes hours day-of-month month day-of-week [year]`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub crontab: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<ScheduleTime>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub month: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub year: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekday: Option<ScheduleDay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dayofmonth: Option<ScheduleDay>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `schedule.time` of the structured form.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScheduleTime {
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub hour: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub minute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub seconds: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `schedule.weekday` / `schedule.dayofmonth` of the structured form.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScheduleDay {
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub day: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Schedule {
    /// A schedule given as a crontab string.
    pub fn crontab(expression: impl Into<String>) -> Self {
        Schedule { crontab: Some(expression.into()), ..Schedule::default() }
    }

    /// The Quartz expression this schedule stands for, built from the structured form the way
    /// Rundeck builds it: missing seconds, minute and hour are `0`, month and year `*`; a
    /// `dayofmonth.day` makes day-of-week `?`, else `weekday.day` makes day-of-month `?`, else
    /// every day.
    pub fn cron_expression(&self) -> String {
        if let Some(c) = self.crontab.as_deref().filter(|c| !c.trim().is_empty()) {
            return c.trim().to_string();
        }
        let field = |v: Option<&String>, default: &str| {
            v.map(|s| s.trim()).filter(|s| !s.is_empty()).unwrap_or(default).to_string()
        };
        let time = self.time.as_ref();
        fn day(d: &Option<ScheduleDay>) -> Option<&str> {
            d.as_ref().and_then(|d| d.day.as_deref()).filter(|d| !d.trim().is_empty())
        }
        let (dom, dow) = match (day(&self.dayofmonth), day(&self.weekday)) {
            (Some(dom), _) => (dom.trim().to_string(), "?".to_string()),
            (None, Some(dow)) => ("?".to_string(), dow.trim().to_string()),
            (None, None) => ("?".to_string(), "*".to_string()),
        };
        [
            field(time.and_then(|t| t.seconds.as_ref()), "0"),
            field(time.and_then(|t| t.minute.as_ref()), "0"),
            field(time.and_then(|t| t.hour.as_ref()), "0"),
            dom.to_uppercase(),
            field(self.month.as_ref(), "*").to_uppercase(),
            dow.to_uppercase(),
            field(self.year.as_ref(), "*"),
        ]
        .join(" ")
    }

    /// The field an error in this schedule is reported under.
    pub fn error_field(&self) -> &'static str {
        if self.crontab.as_deref().is_some_and(|c| !c.trim().is_empty()) {
            "schedule.crontab"
        } else {
            "schedule"
        }
    }
}

/// Steward's `misfire` extension.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Misfire {
    #[serde(default)]
    pub policy: MisfireKind,
    /// How late a slot may be and still run (run-late); 60 s when absent.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_unless_blank")]
    pub window: Option<DurationSpec>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// How many times a failed run is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryCount {
    Fixed(u32),
    /// An option reference such as `${option.retry}`, resolved at run time.
    Expression(String),
}

/// `retry`: a count (`3`, `'3'`, `'${option.retry}'`) or the map `{retry: '3', delay: '30s'}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    raw: String,
    count: RetryCount,
    /// Wait between a failure and the next attempt.
    pub delay: Option<DurationSpec>,
    /// Other keys of the map form.
    pub extra: Extra,
}

impl Retry {
    /// Parses a retry count as Rundeck accepts it: a non-negative integer or an option reference.
    pub fn parse(count: &str, delay: Option<DurationSpec>) -> Result<Retry, String> {
        let t = count.trim();
        let parsed = if t.contains("${") {
            RetryCount::Expression(t.to_string())
        } else {
            RetryCount::Fixed(t.parse::<u32>().map_err(|_| {
                format!("'{count}' is not a retry count: use a whole number such as 3, or ${{option.name}}")
            })?)
        };
        Ok(Retry { raw: t.to_string(), count: parsed, delay, extra: Extra::new() })
    }

    pub fn count(&self) -> RetryCount {
        self.count.clone()
    }

    /// The count as written.
    pub fn raw(&self) -> &str {
        &self.raw
    }
}

impl Serialize for Retry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // Rundeck writes the plain form unless there is a delay.
        if self.delay.is_none() && self.extra.is_empty() {
            return s.serialize_str(&self.raw);
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("retry", &self.raw)?;
        if let Some(d) = &self.delay {
            m.serialize_entry("delay", d)?;
        }
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Retry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct RetryMap {
            #[serde(default, deserialize_with = "lenient::opt_string")]
            retry: Option<String>,
            #[serde(default, deserialize_with = "lenient::opt_unless_blank")]
            delay: Option<DurationSpec>,
            #[serde(flatten)]
            extra: Extra,
        }
        struct RetryVisitor;
        impl<'de> Visitor<'de> for RetryVisitor {
            type Value = Retry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a retry count such as 3, or a mapping {retry: 3, delay: 30s}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Retry, E> {
                Retry::parse(&v.to_string(), None).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Retry, E> {
                Retry::parse(&v.to_string(), None).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Retry, E> {
                Retry::parse(v, None).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Retry, A::Error> {
                let m = RetryMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let count = m.retry.ok_or_else(|| de::Error::custom("the retry mapping needs a 'retry' count"))?;
                let mut r = Retry::parse(&count, m.delay).map_err(de::Error::custom)?;
                r.extra = m.extra;
                Ok(r)
            }
        }
        d.deserialize_any(RetryVisitor)
    }
}

/// A job option: a value the user may or must give when a run starts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobOption {
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub description: Option<String>,
    /// Default value (Rundeck's `value`; `default` is read as well).
    #[serde(
        default,
        alias = "default",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub value: Option<String>,
    /// Allowed (or suggested, unless `enforced`) values: a list, or comma-separated text on
    /// import.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string_list")]
    pub values: Option<Vec<String>>,
    /// URL Rundeck loads the allowed values from; kept, not fetched by steward yet.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub values_url: Option<String>,
    #[serde(default, skip_serializing_if = "is_false", deserialize_with = "lenient::bool")]
    pub required: bool,
    /// Only the allowed `values` are accepted.
    #[serde(default, skip_serializing_if = "is_false", deserialize_with = "lenient::bool")]
    pub enforced: bool,
    /// Every value must match this regular expression as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "is_false", deserialize_with = "lenient::bool")]
    pub multivalued: bool,
    /// Joins (and splits) the values of a multivalued option.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub delimiter: Option<String>,
    /// A multivalued option without input takes all its allowed values.
    #[serde(default, skip_serializing_if = "is_false", deserialize_with = "lenient::bool")]
    pub multivalue_all_selected: bool,
    /// The value is a secret: never shown, exported or logged.
    #[serde(default, skip_serializing_if = "is_false", deserialize_with = "lenient::bool")]
    pub secure: bool,
    /// A secure option whose value scripts see (as `RD_OPTION_*`); without it the value is only
    /// for authentication.
    #[serde(default, skip_serializing_if = "is_false", deserialize_with = "lenient::bool")]
    pub value_exposed: bool,
    /// Key storage path of a secure option's default, e.g. `keys/db/password`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub storage_path: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl JobOption {
    pub fn new(name: impl Into<String>) -> Self {
        JobOption { name: name.into(), ..JobOption::default() }
    }

    /// The delimiter of a multivalued option (`,` if it has none).
    pub fn delimiter(&self) -> &str {
        self.delimiter.as_deref().filter(|d| !d.is_empty()).unwrap_or(",")
    }

    /// Splits a value of this option into its parts: by the delimiter for a multivalued
    /// option, dropping empty parts; otherwise the value itself.
    pub fn split_value<'a>(&self, value: &'a str) -> Vec<&'a str> {
        if self.multivalued {
            value.split(self.delimiter()).filter(|p| !p.is_empty()).collect()
        } else {
            vec![value]
        }
    }
}

fn deserialize_options<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<JobOption>, D::Error> {
    struct OptionsVisitor;
    impl<'de> Visitor<'de> for OptionsVisitor {
        type Value = Vec<JobOption>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of options, or a mapping from option name to option")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        // Element by element through the access, so a bad field is reported as
        // `options[2].values` rather than just `options`.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(opt) = seq.next_element::<JobOption>()? {
                out.push(opt);
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                let mut opt: JobOption = map.next_value()?;
                opt.name = name;
                out.push(opt);
            }
            Ok(out)
        }
    }
    d.deserialize_any(OptionsVisitor)
}

/// `sequence`: the steps and how they run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sequence {
    /// Go on with the next step after a step fails.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub keepgoing: bool,
    /// `node-first`, `step-first`, `parallel` or a plugin name.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub strategy: Option<String>,
    #[serde(default)]
    pub commands: Vec<Step>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for Sequence {
    fn default() -> Self {
        Sequence { keepgoing: false, strategy: Some("node-first".into()), commands: Vec::new(), extra: Extra::new() }
    }
}

/// A step (`sequence.commands[i]`) or an error handler. Exactly one of `exec`, `script`,
/// `scriptfile`, `scripturl`, `jobref` and `type` (a plugin step) says what it is; see
/// [`Step::kind`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub description: Option<String>,
    /// A command line.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub exec: Option<String>,
    /// An inline script body.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub script: Option<String>,
    /// Path of a script on the executing member.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub scriptfile: Option<String>,
    /// URL of a script.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub scripturl: Option<String>,
    /// Arguments of a script step.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub args: Option<String>,
    /// Interpreter a script runs with, e.g. `bash -e` or `python3`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub script_interpreter: Option<String>,
    /// Pass the script and its arguments to the interpreter as one quoted argument.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_bool")]
    pub interpreter_args_quoted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobref: Option<JobRef>,
    /// Provider of a plugin step.
    #[serde(
        default,
        rename = "type",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub plugin_type: Option<String>,
    /// Configuration of a plugin step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_bool")]
    pub node_step: Option<bool>,
    /// Runs when this step fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errorhandler: Option<Box<Step>>,
    /// On an error handler: carry on with the job when the handler succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_bool")]
    pub keepgoing_on_success: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepKind<'a> {
    Exec { command: &'a str },
    Script { body: &'a str, args: Option<&'a str>, interpreter: Option<&'a str>, args_quoted: bool },
    ScriptFile { path: &'a str, args: Option<&'a str>, interpreter: Option<&'a str>, args_quoted: bool },
    ScriptUrl { url: &'a str, args: Option<&'a str>, interpreter: Option<&'a str>, args_quoted: bool },
    JobRef(&'a JobRef),
    Plugin { provider: &'a str, node_step: bool, configuration: Option<&'a Map<String, Value>> },
}

impl Step {
    pub fn exec(command: impl Into<String>) -> Self {
        Step { exec: Some(command.into()), ..Step::default() }
    }

    pub fn script(body: impl Into<String>) -> Self {
        Step { script: Some(body.into()), ..Step::default() }
    }

    /// What the step does, or why it cannot be told.
    pub fn kind(&self) -> Result<StepKind<'_>, String> {
        let mut kinds = Vec::new();
        let args = self.args.as_deref();
        let interpreter = self.script_interpreter.as_deref();
        let args_quoted = self.interpreter_args_quoted.unwrap_or(false);
        if let Some(command) = &self.exec {
            kinds.push(("exec", StepKind::Exec { command }));
        }
        if let Some(body) = &self.script {
            kinds.push(("script", StepKind::Script { body, args, interpreter, args_quoted }));
        }
        if let Some(path) = &self.scriptfile {
            kinds.push(("scriptfile", StepKind::ScriptFile { path, args, interpreter, args_quoted }));
        }
        if let Some(url) = &self.scripturl {
            kinds.push(("scripturl", StepKind::ScriptUrl { url, args, interpreter, args_quoted }));
        }
        if let Some(r) = &self.jobref {
            kinds.push(("jobref", StepKind::JobRef(r)));
        }
        if let Some(provider) = &self.plugin_type {
            let node_step = self.node_step.unwrap_or(false);
            kinds.push(("type", StepKind::Plugin { provider, node_step, configuration: self.configuration.as_ref() }));
        }
        match kinds.len() {
            1 => Ok(kinds.remove(0).1),
            0 => Err("a step needs one of exec, script, scriptfile, scripturl, jobref or type (plugin)".into()),
            _ => Err(format!(
                "a step does exactly one thing, but this one has {}",
                kinds.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(" and ")
            )),
        }
    }
}

/// A step that runs another job.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRef {
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub group: Option<String>,
    /// Preferred over name and group when both are given.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub uuid: Option<String>,
    /// Project of the referenced job; this job's project when absent.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub project: Option<String>,
    /// Argument string passed to the referenced job (`-opt value …`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub args: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_bool")]
    pub node_step: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `nodefilters`. Steward runs steps on the executing member; the filter is kept for the
/// resource model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFilters {
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub filter_exclude: Option<String>,
    /// `threadcount`, `keepgoing`, `excludePrecedence`, `rankAttribute`, `rankOrder`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The events a job notifies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationEvent {
    Start,
    Success,
    Failure,
}

/// `notification`: what to do when a run starts, succeeds or fails. Other triggers
/// (`onavgduration`, `onretryablefailure`) are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Notifications {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onstart: Option<OneOrMany<Notification>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onsuccess: Option<OneOrMany<Notification>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onfailure: Option<OneOrMany<Notification>>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Notifications {
    fn triggers(&self) -> impl Iterator<Item = (&'static str, &OneOrMany<Notification>)> {
        [("onstart", &self.onstart), ("onsuccess", &self.onsuccess), ("onfailure", &self.onfailure)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    }

    /// The webhook URLs to call on `event`.
    pub fn webhook_urls(&self, event: NotificationEvent) -> Vec<&str> {
        let trigger = match event {
            NotificationEvent::Start => &self.onstart,
            NotificationEvent::Success => &self.onsuccess,
            NotificationEvent::Failure => &self.onfailure,
        };
        trigger.iter().flat_map(|t| t.iter()).flat_map(Notification::webhook_urls).collect()
    }
}

/// One notification trigger's content: webhook `urls`, and kept as they are, `email` and
/// `plugin` entries.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Comma-separated webhook URLs (a list is read too).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_joined_list")]
    pub urls: Option<String>,
    /// `get` or `post` (Rundeck's default).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub http_method: Option<String>,
    /// `xml` or `json`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub format: Option<String>,
    /// A plugin notification (`{type, configuration}`) or a list of them; kept, not sent yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Notification {
    pub fn webhook_urls(&self) -> Vec<&str> {
        self.urls.as_deref().unwrap_or("").split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
    }
}

/// A single item or a list of them, written back the way it came.
#[derive(Debug, Clone, PartialEq)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t).iter(),
            OneOrMany::Many(v) => v.iter(),
        }
    }
}

impl<T: Serialize> Serialize for OneOrMany<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OneOrMany::One(t) => t.serialize(s),
            OneOrMany::Many(v) => v.serialize(s),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping or a list of mappings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(t) = seq.next_element()? {
                    out.push(t);
                }
                Ok(OneOrMany::Many(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(OneOrMany::One)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Reads an import document: one result per job, in document order.
///
/// A YAML document is read with YAML 1.2's core schema (`yes`/`no` are text, not booleans;
/// boolean fields also accept the text `"true"`/`"false"`). Besides each job's own
/// [`JobDefinition::validate`], two jobs of the same document with the same uuid are refused
/// (the later ones). Whether a uuid is already taken in the store is the importer's business.
pub fn parse_jobs(format: JobFormat, text: &str) -> Result<Vec<Result<JobDefinition, JobError>>, DocumentError> {
    let syntax = |message: String| DocumentError::Syntax { format, message };
    let document: Value = match format {
        JobFormat::Json => serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?,
        // An empty YAML document is null, reported below as not being a list.
        JobFormat::Yaml if text.trim().is_empty() => Value::Null,
        JobFormat::Yaml => serde_norway::from_str(text).map_err(|e| syntax(e.to_string()))?,
    };
    let items = match document {
        Value::Array(items) => items,
        Value::Object(_) => {
            return Err(DocumentError::NotAList {
                found: "a single mapping".into(),
                hint: match format {
                    JobFormat::Yaml => " (start the job with '- ' to make it a list of one)",
                    JobFormat::Json => " (wrap the job in [ ] to make it a list of one)",
                },
            })
        }
        other => return Err(DocumentError::NotAList { found: lenient::describe(&other), hint: "" }),
    };
    let mut results = Vec::with_capacity(items.len());
    let mut uuids: HashMap<String, usize> = HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let result = parse_one(index, item).and_then(|job| {
            if let Some(u) = job.uuid() {
                if let Some(first) = uuids.insert(u.to_string(), index) {
                    return Err(JobError::single(
                        "uuid",
                        format!("uuid '{u}' is also used by job [{first}] of this document"),
                    )
                    .for_job(Some(index), Some(&job.name), Some(u)));
                }
            }
            Ok(job)
        });
        results.push(result);
    }
    Ok(results)
}

fn parse_one(index: usize, item: Value) -> Result<JobDefinition, JobError> {
    let Value::Object(map) = &item else {
        return Err(JobError::single("", format!("a job is a mapping of fields, not {}", lenient::describe(&item)))
            .for_job(Some(index), None, None));
    };
    // Read before deserialising so that even a job that cannot be read is named.
    let text_of = |k: &str| match map.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let name = text_of("name");
    let uuid = text_of("uuid").or_else(|| text_of("id"));
    let job: JobDefinition = serde_path_to_error::deserialize(&item).map_err(|e| {
        let field = match e.path().to_string() {
            p if p == "." => String::new(),
            p => p,
        };
        JobError::single(field, e.inner().to_string()).for_job(Some(index), name.as_deref(), uuid.as_deref())
    })?;
    job.validate().map_err(|e| e.for_job(Some(index), name.as_deref(), uuid.as_deref()))?;
    Ok(job)
}

/// Writes jobs as a document Rundeck (and steward) can import: a list of jobs, each with `id`
/// and `uuid` set alike, unknown fields as they came, and no secure option default.
pub fn export_jobs(format: JobFormat, jobs: &[JobDefinition]) -> String {
    let jobs: Vec<JobDefinition> = jobs.iter().map(JobDefinition::for_export).collect();
    // Cannot fail: every map in a definition has text keys and every number is finite.
    let value = serde_json::to_value(&jobs).expect("job definitions serialise to JSON values");
    match format {
        JobFormat::Json => serde_json::to_string_pretty(&value).expect("a JSON value serialises"),
        // Our own writer, so that Rundeck's YAML 1.1 reader reads the same values (see `yaml`).
        JobFormat::Yaml => super::yaml::to_string(&value),
    }
}

/// Deserialisers that accept what Rundeck's Groovy code accepts: numbers where text is
/// expected (`hour: 12`), `"true"`/`"false"` where a boolean is, a comma-separated text where a
/// list is; and that name the value when they refuse it.
pub(crate) mod lenient {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// How a value is named in an error message.
    pub(crate) fn describe(v: &Value) -> String {
        match v {
            Value::Null => "empty (null)".into(),
            Value::Bool(b) => format!("the boolean {b}"),
            Value::Number(n) => format!("the number {n}"),
            Value::String(s) if s.chars().count() > 40 => {
                format!("the text \"{}…\"", s.chars().take(40).collect::<String>())
            }
            Value::String(s) => format!("the text {s:?}"),
            Value::Array(_) => "a list".into(),
            Value::Object(_) => "a mapping".into(),
        }
    }

    fn scalar(v: Value) -> Result<String, Value> {
        match v {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(other),
        }
    }

    /// A scalar as text; `expected` names what the field holds.
    pub(crate) fn scalar_text<'de, D: Deserializer<'de>>(d: D, expected: &str) -> Result<String, D::Error> {
        scalar(Value::deserialize(d)?)
            .map_err(|v| D::Error::custom(format!("expected {expected}, found {}", describe(&v))))
    }

    pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(opt_string(d)?.unwrap_or_default())
    }

    pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            v => scalar(v).map(Some).map_err(|v| D::Error::custom(format!("expected text, found {}", describe(&v)))),
        }
    }

    fn boolean<E: serde::de::Error>(v: Value, absent: bool) -> Result<bool, E> {
        match v {
            Value::Null => Ok(absent),
            Value::Bool(b) => Ok(b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            other => Err(E::custom(format!("expected true or false, found {}", describe(&other)))),
        }
    }

    /// An optional value where null and empty text both mean absent, as Rundeck reads
    /// `timeout: ''`.
    pub(crate) fn opt_unless_blank<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            v => T::deserialize(v).map(Some).map_err(D::Error::custom),
        }
    }

    /// A boolean that is false when absent or null.
    pub(crate) fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        boolean(Value::deserialize(d)?, false)
    }

    /// A boolean that is true when absent or null, as Rundeck reads `scheduleEnabled`.
    pub(crate) fn bool_default_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        boolean(Value::deserialize(d)?, true)
    }

    pub(crate) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            v => boolean(v, false).map(Some),
        }
    }

    /// A list of scalars, or a comma-separated text.
    pub(crate) fn opt_string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::String(s) => {
                Ok(Some(s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect()))
            }
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    scalar(v)
                        .map_err(|v| D::Error::custom(format!("item [{i}] should be a value, found {}", describe(&v))))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            other => Err(D::Error::custom(format!(
                "expected a list of values or comma-separated text, found {}",
                describe(&other)
            ))),
        }
    }

    /// Comma-separated text; a list is joined with commas.
    pub(crate) fn opt_joined_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match Value::deserialize(d)? {
            Value::Array(items) => {
                let parts = items
                    .into_iter()
                    .map(|v| scalar(v).map_err(|v| D::Error::custom(format!("expected text, found {}", describe(&v)))))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(parts.join(",")))
            }
            v => opt_string(v).map_err(D::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job as Rundeck exports it, with every feature steward reads and, at each level, keys
    /// steward does not know (`x-*`) or does not act on (`loglimit`, `orchestrator`, email).
    const RICH_YAML: &str = r#"
- defaultTab: nodes
  description: |-
    Nightly backup
    Copies the **database** to the archive.
  executionEnabled: true
  group: ops/backup
  id: 3f1c3b8e-5a6d-4c1e-9b8f-2a7d6e5c4b3a
  uuid: 3f1c3b8e-5a6d-4c1e-9b8f-2a7d6e5c4b3a
  loglevel: INFO
  loglimit: 100MB
  loglimitAction: truncate
  name: nightly-backup
  project: ops
  nodeFilterEditable: false
  orchestrator:
    type: rankTiered
    configuration: {}
  plugins:
    ExecutionLifecycle: {}
  x-job-level: {kept: [1, 2, 3]}
  multipleExecutions: true
  scheduleEnabled: true
  timeZone: Europe/Berlin
  schedule:
    time: {hour: '02', minute: '30', seconds: '0', x-time-level: yes}
    month: '*'
    year: '*'
    weekday: {day: '*'}
    x-schedule-level: 7
  misfire: {policy: record-missed, window: 2m}
  timeout: 1h30m
  retry: {retry: '3', delay: 30s}
  options:
  - name: target
    description: Where to copy
    value: archive
    values: [archive, offsite]
    enforced: true
    required: true
    sortIndex: 0
  - name: tables
    multivalued: true
    delimiter: ','
    values: [users, orders, items]
    multivalueAllSelected: true
  - name: db_password
    secure: true
    valueExposed: true
    storagePath: keys/db/password
    required: true
    x-option-level: true
  - name: date
    isDate: true
    dateFormat: YYYY-MM-DD
    regex: '\d{4}-\d{2}-\d{2}'
  sequence:
    keepgoing: false
    strategy: node-first
    x-sequence-level: ok
    commands:
    - exec: echo starting ${option.target}
      description: announce
    - script: |-
        #!/bin/bash
        pg_dump "$RD_OPTION_TABLES"
      args: -v --fast
      scriptInterpreter: bash -e
      interpreterArgsQuoted: false
      fileExtension: sh
      errorhandler:
        exec: echo dump failed
        keepgoingOnSuccess: true
        x-handler-level: 1
    - scriptfile: /opt/backup/upload.sh
      args: -d ${option.target}
    - jobref:
        group: ops
        name: notify
        uuid: 9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b
        project: ops
        args: -msg done
        nodeStep: 'true'
        importOptions: true
        x-jobref-level: z
    - type: my-plugin-step
      nodeStep: true
      configuration: {key: value, n: 3}
      x-step-level: [a]
  nodefilters:
    dispatch: {threadcount: '1', keepgoing: false, excludePrecedence: true, rankOrder: ascending}
    filter: 'tags: db'
  nodesSelectedByDefault: true
  notification:
    onfailure:
      urls: https://hooks.example.com/fail,https://hooks.example.com/pager
      httpMethod: post
      format: json
      email: {recipients: ops@example.com, subject: failed}
    onsuccess:
      plugin:
        type: slack
        configuration: {channel: '#ops'}
    onstart:
      urls: http://hooks.example.com/start
    onavgduration:
      urls: http://hooks.example.com/slow
  notifyAvgDurationThreshold: '+30'
"#;

    fn parse_one_ok(format: JobFormat, text: &str) -> JobDefinition {
        let mut results = parse_jobs(format, text).expect("a list of jobs");
        assert_eq!(results.len(), 1);
        results.remove(0).expect("a valid job")
    }

    fn parse_err(format: JobFormat, text: &str) -> JobError {
        let mut results = parse_jobs(format, text).expect("a list of jobs");
        results.remove(0).expect_err("an invalid job")
    }

    fn yaml_job(body: &str) -> String {
        format!("- name: j\n  sequence:\n    commands:\n    - exec: 'true'\n{body}")
    }

    #[test]
    fn a_rich_job_is_read_with_every_field_steward_acts_on() {
        let job = parse_one_ok(JobFormat::Yaml, RICH_YAML);
        assert_eq!(job.name, "nightly-backup");
        assert_eq!(job.full_name(), "ops/backup/nightly-backup");
        assert_eq!(job.uuid(), Some("3f1c3b8e-5a6d-4c1e-9b8f-2a7d6e5c4b3a"));
        assert!(job.multiple_executions && job.execution_enabled && job.is_scheduled());
        assert_eq!(job.schedule.as_ref().unwrap().cron_expression(), "0 30 02 ? * * *");
        assert_eq!(job.timeout.as_ref().unwrap().fixed(), Some(std::time::Duration::from_secs(5400)));
        let retry = job.retry.as_ref().unwrap();
        assert_eq!(retry.count(), RetryCount::Fixed(3));
        assert_eq!(retry.delay.as_ref().unwrap().fixed(), Some(std::time::Duration::from_secs(30)));
        assert_eq!(
            job.misfire_policy(),
            MisfirePolicy { kind: MisfireKind::RecordMissed, window: std::time::Duration::from_secs(120) }
        );
        assert_eq!(job.options.len(), 4);
        assert_eq!(job.option("target").unwrap().values.as_deref().unwrap(), ["archive", "offsite"]);
        assert_eq!(job.option("db_password").unwrap().storage_path.as_deref(), Some("keys/db/password"));
        let kinds: Vec<_> = job.sequence.commands.iter().map(|s| s.kind().unwrap()).collect();
        assert!(matches!(kinds[0], StepKind::Exec { command: "echo starting ${option.target}" }));
        assert!(matches!(
            kinds[1],
            StepKind::Script { args: Some("-v --fast"), interpreter: Some("bash -e"), args_quoted: false, .. }
        ));
        assert!(matches!(kinds[2], StepKind::ScriptFile { path: "/opt/backup/upload.sh", .. }));
        assert!(matches!(kinds[3], StepKind::JobRef(JobRef { node_step: Some(true), .. })));
        assert!(matches!(kinds[4], StepKind::Plugin { provider: "my-plugin-step", node_step: true, .. }));
        let handler = job.sequence.commands[1].errorhandler.as_ref().unwrap();
        assert_eq!(handler.kind().unwrap(), StepKind::Exec { command: "echo dump failed" });
        assert_eq!(handler.keepgoing_on_success, Some(true));
        let n = job.notification.as_ref().unwrap();
        assert_eq!(
            n.webhook_urls(NotificationEvent::Failure),
            ["https://hooks.example.com/fail", "https://hooks.example.com/pager"]
        );
        assert_eq!(n.webhook_urls(NotificationEvent::Start), ["http://hooks.example.com/start"]);
        assert!(n.webhook_urls(NotificationEvent::Success).is_empty());
        assert_eq!(job.nodefilters.as_ref().unwrap().filter.as_deref(), Some("tags: db"));
    }

    /// Every `x-*` key anywhere in a document, with its value, as `path = value` lines.
    fn unknown_keys(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k.starts_with("x-") {
                        out.push(format!("{path}.{k} = {v}"));
                    }
                    unknown_keys(v, &format!("{path}.{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    unknown_keys(v, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn a_rich_job_survives_round_trips_through_yaml_and_json_keeping_unknown_fields() {
        let original = parse_one_ok(JobFormat::Yaml, RICH_YAML);
        let source: Value = serde_norway::from_str(RICH_YAML).unwrap();
        let mut expected_unknown = Vec::new();
        unknown_keys(&source, "", &mut expected_unknown);
        assert_eq!(expected_unknown.len(), 8, "the sample has unknown keys at eight levels");

        for format in [JobFormat::Yaml, JobFormat::Json] {
            let exported = export_jobs(format, std::slice::from_ref(&original));
            let again = parse_one_ok(format, &exported);
            assert_eq!(again, original, "{format} round trip");
            // And once more across formats.
            let other = if format == JobFormat::Yaml { JobFormat::Json } else { JobFormat::Yaml };
            assert_eq!(parse_one_ok(other, &export_jobs(other, &[again])), original, "{format} then {other}");

            let doc: Value = match format {
                JobFormat::Yaml => serde_norway::from_str(&exported).unwrap(),
                JobFormat::Json => serde_json::from_str(&exported).unwrap(),
            };
            let mut unknown = Vec::new();
            unknown_keys(&doc, "", &mut unknown);
            assert_eq!(unknown, expected_unknown, "{format} export keeps every unknown key where it was");
            let job = &doc[0];
            for key in
                ["loglimit", "orchestrator", "plugins", "nodeFilterEditable", "nodesSelectedByDefault", "defaultTab"]
            {
                assert!(job.get(key).is_some(), "{format}: {key} is exported again");
            }
            assert_eq!(job["notification"]["onfailure"]["email"]["recipients"], "ops@example.com");
            assert_eq!(job["notification"]["onsuccess"]["plugin"]["type"], "slack");
            assert_eq!(job["notification"]["onavgduration"]["urls"], "http://hooks.example.com/slow");
            assert_eq!(job["options"][0]["sortIndex"], 0);
            assert_eq!(job["options"][3]["isDate"], true);
            assert_eq!(job["sequence"]["commands"][1]["fileExtension"], "sh");
            assert_eq!(job["sequence"]["commands"][3]["jobref"]["importOptions"], true);
            // Values steward reads are written as Rundeck writes them.
            assert_eq!(job["retry"], serde_json::json!({"retry": "3", "delay": "30s"}));
            assert_eq!(job["timeout"], "1h30m");
            assert_eq!(job["id"], job["uuid"]);
            assert_eq!(job["misfire"], serde_json::json!({"policy": "record-missed", "window": "2m"}));
        }
    }

    #[test]
    fn a_crontab_schedule_and_the_json_spelling() {
        let json = r#"[{"name": "every-5-min", "schedule": {"crontab": "0 */5 * ? * *"}, "timeout": 120,
            "retry": 2, "sequence": {"commands": [{"exec": "date"}]}, "executionEnabled": "false"}]"#;
        let job = parse_one_ok(JobFormat::Json, json);
        assert_eq!(job.schedule.as_ref().unwrap().cron_expression(), "0 */5 * ? * *");
        assert_eq!(job.timeout.as_ref().unwrap().raw(), "120");
        assert_eq!(job.retry.as_ref().unwrap().count(), RetryCount::Fixed(2));
        assert!(!job.execution_enabled && !job.is_scheduled());
        assert!(job.schedule_enabled, "absent means enabled");
        assert_eq!(job.sequence.strategy, None);
        let exported: Value = serde_json::from_str(&export_jobs(JobFormat::Json, &[job])).unwrap();
        assert_eq!(exported[0]["schedule"], serde_json::json!({"crontab": "0 */5 * ? * *"}));
        assert_eq!(exported[0]["retry"], "2");
        assert_eq!(exported[0]["timeout"], "120");
    }

    #[test]
    fn the_structured_schedule_becomes_the_expression_rundeck_builds() {
        let cases = [
            ("{time: {hour: 12}}", "0 0 12 ? * * *"),
            ("{time: {hour: '*/6', minute: 30}, weekday: {day: mon-fri}}", "0 30 */6 ? * MON-FRI *"),
            (
                "{time: {hour: 0, minute: 0, seconds: 15}, dayofmonth: {day: L}, month: jan, year: 2030}",
                "15 0 0 L JAN ? 2030",
            ),
            ("{crontab: '0 0 1 * * ?', time: {hour: 5}}", "0 0 1 * * ?"),
        ];
        for (schedule, expected) in cases {
            let job = parse_one_ok(JobFormat::Yaml, &yaml_job(&format!("  schedule: {schedule}\n")));
            assert_eq!(job.schedule.unwrap().cron_expression(), expected, "{schedule}");
        }
    }

    #[test]
    fn a_bad_job_does_not_stop_the_others() {
        let doc = r#"
- name: good-1
  sequence: {commands: [{exec: 'true'}]}
- name: bad-cron
  uuid: b-1
  schedule: {crontab: '0 0 25 * * ?'}
  sequence: {commands: [{exec: 'true'}]}
- name: good-2
  sequence: {commands: [{exec: 'true'}]}
"#;
        let results = parse_jobs(JobFormat::Yaml, doc).unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].as_ref().unwrap().name, "good-1");
        assert_eq!(results[2].as_ref().unwrap().name, "good-2");
        let e = results[1].as_ref().unwrap_err();
        assert_eq!((e.index, e.name.as_deref(), e.uuid.as_deref()), (Some(1), Some("bad-cron"), Some("b-1")));
        assert_eq!(e.field(), "schedule.crontab");
        assert!(e.to_string().starts_with("job [1] 'bad-cron' (uuid b-1): schedule.crontab: "), "{e}");
        assert!(e.to_string().contains("hours field '25'"), "{e}");
    }

    #[test]
    fn bad_fields_are_named_with_their_path() {
        let cases: &[(&str, &str, &str)] = &[
            ("  timeZone: Mars/Olympus\n", "timeZone", "unknown time zone"),
            ("  schedule: {time: {hour: 25}}\n", "schedule", "the schedule makes the cron expression '0 0 25 ? * * *'"),
            ("  timeout: 10x\n", "timeout", "'10x' is not a duration"),
            ("  retry: many\n", "retry", "'many' is not a retry count"),
            ("  retry: {delay: 5s}\n", "retry", "needs a 'retry' count"),
            ("  loglevel: LOUD\n", "loglevel", "unknown log level"),
            ("  multipleExecutions: maybe\n", "multipleExecutions", "expected true or false, found the text \"maybe\""),
            ("  misfire: {policy: sometimes}\n", "misfire.policy", "unknown variant `sometimes`"),
            ("  misfire: {window: '${option.w}'}\n", "misfire.window", "fixed duration"),
            ("  uuid: 'has space'\n", "uuid", "not a valid job uuid"),
            ("  uuid: a\n  id: b\n", "id", "differ"),
            ("  group: /ops\n", "group", "not a group path"),
            (
                "  options:\n  - name: a\n  - name: b\n  - name: c\n    required: maybe\n",
                "options[2].required",
                "expected true or false",
            ),
            ("  options:\n  - {name: a}\n  - {name: b, values: {x: 1}}\n", "options[1].values", "found a mapping"),
            (
                "  options:\n  - {name: a}\n  - {name: a}\n",
                "options[1].name",
                "duplicate option name 'a' (also options[0])",
            ),
            ("  options:\n  - {name: 'bad name'}\n", "options[0].name", "not a valid option name"),
            (
                "  options:\n  - {name: env, value: qa, values: [dev, prod], enforced: true}\n",
                "options[0].value",
                "default 'qa' is not one of the allowed values (dev, prod)",
            ),
            ("  options:\n  - {name: env, enforced: true}\n", "options[0].values", "needs a list of allowed values"),
            ("  options:\n  - {name: n, regex: '(unclosed'}\n", "options[0].regex", "not a regular expression"),
            ("  options:\n  - {name: n, regex: '[0-9]+', value: abc}\n", "options[0].value", "does not match"),
            ("  options:\n  - {name: m, multivalued: true}\n", "options[0].delimiter", "needs a delimiter"),
            ("  options:\n  - {name: p, secure: true, value: hunter2}\n", "options[0].value", "key storage"),
            ("  options:\n  - {name: p, secure: true, storagePath: db/pw}\n", "options[0].storagePath", "keys/"),
            ("  notification: {onfailure: {urls: 'ftp://x'}}\n", "notification.onfailure.urls", "not an http"),
            ("  notification: {onstart: 5}\n", "notification.onstart", "a mapping or a list"),
        ];
        for (body, field, message) in cases {
            let e = parse_err(JobFormat::Yaml, &yaml_job(body));
            assert_eq!(e.field(), *field, "{body}: {e}");
            assert!(e.problems_text().contains(message), "{body}: {e}");
            assert_eq!(e.index, Some(0));
        }
    }

    #[test]
    fn steps_must_each_do_exactly_one_thing() {
        let doc = r#"
- name: steps
  sequence:
    commands:
    - {exec: 'true', script: 'echo hi'}
    - {description: nothing}
    - {jobref: {group: ops}}
    - exec: 'true'
      errorhandler: {exec: 'true', errorhandler: {exec: 'true'}}
"#;
        let e = parse_err(JobFormat::Yaml, doc);
        let fields: Vec<_> = e.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "sequence.commands[0]",
                "sequence.commands[1]",
                "sequence.commands[2].jobref",
                "sequence.commands[3].errorhandler.errorhandler"
            ]
        );
        assert!(e.problems[0].message.contains("exec and script"), "{e}");
        let e = parse_err(JobFormat::Yaml, "- name: empty\n  sequence: {commands: []}\n");
        assert_eq!(e.field(), "sequence.commands");
        let e = parse_err(JobFormat::Yaml, "- sequence: {commands: [{exec: 'true'}]}\n");
        assert_eq!(e.field(), "name");
        assert_eq!(e.name, None);
    }

    #[test]
    fn a_wrong_type_deep_in_a_step_names_the_step() {
        let e = parse_err(
            JobFormat::Yaml,
            "- name: t\n  sequence:\n    commands:\n    - exec: 'true'\n    - script: [1, 2]\n",
        );
        assert_eq!(e.field(), "sequence.commands[1].script");
        assert!(e.problems_text().contains("expected text, found a list"), "{e}");
        let e =
            parse_err(JobFormat::Json, r#"[{"name": "t", "sequence": {"keepgoing": 3, "commands": [{"exec": "x"}]}}]"#);
        assert_eq!(e.field(), "sequence.keepgoing");
    }

    #[test]
    fn the_same_uuid_twice_in_one_document_refuses_the_second() {
        let doc = "- {name: a, uuid: u1, sequence: {commands: [{exec: x}]}}\n- {name: b, id: u1, sequence: {commands: [{exec: x}]}}\n";
        let results = parse_jobs(JobFormat::Yaml, doc).unwrap();
        assert!(results[0].is_ok());
        let e = results[1].as_ref().unwrap_err();
        assert_eq!(e.field(), "uuid");
        assert!(e.to_string().contains("also used by job [0]"), "{e}");
    }

    #[test]
    fn documents_that_are_not_lists_of_jobs() {
        let e = parse_jobs(JobFormat::Yaml, "name: a\nsequence: {}\n").unwrap_err();
        assert!(matches!(e, DocumentError::NotAList { .. }));
        assert!(e.to_string().contains("a single mapping") && e.to_string().contains("'- '"), "{e}");
        let e = parse_jobs(JobFormat::Json, "\"jobs\"").unwrap_err();
        assert!(e.to_string().contains("the text \"jobs\""), "{e}");
        let e = parse_jobs(JobFormat::Yaml, "").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = parse_jobs(JobFormat::Yaml, "- name: a\n  sequence: {commands: [\n").unwrap_err();
        assert!(matches!(e, DocumentError::Syntax { format: JobFormat::Yaml, .. }));
        assert!(e.to_string().contains("line"), "{e}");
        let e = parse_jobs(JobFormat::Json, "[{\"name\": }]").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        // A list item that is not a mapping is that job's error only.
        let results =
            parse_jobs(JobFormat::Yaml, "- just text\n- {name: a, sequence: {commands: [{exec: x}]}}\n").unwrap();
        assert!(results[0].as_ref().unwrap_err().to_string().contains("a job is a mapping"));
        assert!(results[1].is_ok());
        assert!(parse_jobs(JobFormat::Json, "[]").unwrap().is_empty());
    }

    #[test]
    fn options_in_rundecks_older_map_form() {
        let job = parse_one_ok(
            JobFormat::Yaml,
            &yaml_job("  options:\n    env: {value: dev, required: true}\n    count: {value: 3}\n"),
        );
        let names: Vec<_> = job.options.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["count", "env"]);
        assert_eq!(job.option("count").unwrap().value.as_deref(), Some("3"));
        assert!(job.option("env").unwrap().required);
        let exported: Value = serde_json::from_str(&export_jobs(JobFormat::Json, &[job])).unwrap();
        assert!(exported[0]["options"].is_array(), "exported in the list form");
    }

    #[test]
    fn lenient_values_as_rundeck_accepts_them() {
        let job = parse_one_ok(
            JobFormat::Yaml,
            &yaml_job("  options:\n  - {name: n, value: 10, values: 'a, b,c', required: 'true'}\n  loglevel: debug\n"),
        );
        let opt = job.option("n").unwrap();
        assert_eq!(opt.value.as_deref(), Some("10"));
        assert_eq!(opt.values.as_deref().unwrap(), ["a", "b", "c"]);
        assert!(opt.required);
        assert_eq!(job.log_level(), LogLevel::Debug);
        let job = parse_one_ok(JobFormat::Yaml, &yaml_job("  options:\n  - {name: n, default: 5}\n"));
        assert_eq!(job.option("n").unwrap().value.as_deref(), Some("5"), "`default` is read as `value`");
    }

    #[test]
    fn blank_timeout_and_retry_mean_none_as_in_rundeck() {
        let job = parse_one_ok(
            JobFormat::Yaml,
            &yaml_job(
                "  timeout: ''\n  retry: ''\n  options:\n  - {name: e, value: '', values: [a], enforced: true}\n",
            ),
        );
        assert_eq!((job.timeout, job.retry), (None, None));
        let job = parse_one_ok(JobFormat::Yaml, &yaml_job("  retry: {retry: 1, delay: ''}\n"));
        assert_eq!(job.retry.unwrap().delay, None);
    }

    #[test]
    fn retry_forms_are_written_back_as_they_came() {
        for (retry, exported) in [
            ("3", serde_json::json!("3")),
            ("'${option.retry}'", serde_json::json!("${option.retry}")),
            ("{retry: 2, delay: 1h1m1s}", serde_json::json!({"retry": "2", "delay": "1h1m1s"})),
        ] {
            let job = parse_one_ok(JobFormat::Yaml, &yaml_job(&format!("  retry: {retry}\n")));
            let doc: Value = serde_json::from_str(&export_jobs(JobFormat::Json, &[job])).unwrap();
            assert_eq!(doc[0]["retry"], exported, "{retry}");
        }
        let job = parse_one_ok(JobFormat::Yaml, &yaml_job("  retry: '${option.retry}'\n"));
        assert_eq!(job.retry.unwrap().count(), RetryCount::Expression("${option.retry}".into()));
    }

    #[test]
    fn a_secure_default_never_reaches_an_export() {
        // Validation refuses it on import; a definition built in code is cleaned on export.
        let mut opt = JobOption::new("password");
        opt.secure = true;
        opt.value = Some("hunter2".into());
        let mut job = JobDefinition::new("j", vec![Step::exec("true")]);
        job.options.push(opt);
        assert_eq!(job.validate().unwrap_err().field(), "options[0].value");
        for format in [JobFormat::Yaml, JobFormat::Json] {
            assert!(!export_jobs(format, &[job.clone()]).contains("hunter2"), "{format}");
        }
    }

    #[test]
    fn a_job_built_in_code_validates_and_defaults() {
        let job = JobDefinition::new("hello", vec![Step::script("echo hi")]);
        job.validate().unwrap();
        assert!(!job.is_scheduled());
        assert_eq!(job.misfire_policy(), MisfirePolicy::default());
        assert_eq!(job.log_level(), LogLevel::Info);
        let mut scheduled = job.clone();
        scheduled.schedule = Some(Schedule::crontab("0 0 * * * ?"));
        assert!(scheduled.is_scheduled());
        scheduled.schedule_enabled = false;
        assert!(!scheduled.is_scheduled());
    }

    #[test]
    fn formats_by_name_and_media_type() {
        assert_eq!("yaml".parse::<JobFormat>(), Ok(JobFormat::Yaml));
        assert_eq!("JSON".parse::<JobFormat>(), Ok(JobFormat::Json));
        assert!("xml".parse::<JobFormat>().is_err());
        assert_eq!(JobFormat::from_media_type("text/yaml; charset=utf-8"), Some(JobFormat::Yaml));
        assert_eq!(JobFormat::from_media_type("application/json"), Some(JobFormat::Json));
        assert_eq!(JobFormat::from_media_type("application/xml"), None);
    }
}
