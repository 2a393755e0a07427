//! Rundeck's environment variables for a job's steps: `RD_JOB_*` from [`JobVars`] and
//! `RD_OPTION_*` from the option values.
//!
//! Names follow Rundeck: `RD_` + the context (`JOB`, `OPTION`) + `_` + the key upper-cased,
//! with every character other than `A-Z`, `0-9` and `_` replaced by `_` (option `db-host`
//! becomes `RD_OPTION_DB_HOST`).

use chrono::{DateTime, SecondsFormat, Utc};

/// What a job's steps learn about their execution through `RD_JOB_*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobVars {
    /// The job's uuid (`RD_JOB_ID`).
    pub id: String,
    /// The execution id (`RD_JOB_EXECID`).
    pub exec_id: u64,
    pub name: String,
    /// The group path, `a/b` (empty for none).
    pub group: String,
    pub project: String,
    /// Who the execution runs as (`RD_JOB_USERNAME`, also `RD_JOB_USER_NAME`).
    pub username: String,
    /// `DEBUG`, `VERBOSE`, `INFO`, `WARN` or `ERROR`.
    pub loglevel: String,
    /// The schedule slot this execution fires, for a scheduled run
    /// (`RD_JOB_SCHEDULEDEXECUTION`, RFC 3339 in UTC).
    pub scheduled_time: Option<DateTime<Utc>>,
    /// `scheduled`, `user` or `user-scheduled` (`RD_JOB_EXECUTIONTYPE`).
    pub execution_type: Option<String>,
    /// 0 for the first attempt, then 1, 2, … (`RD_JOB_RETRYATTEMPT`, and `RD_JOB_WASRETRY`).
    pub retry_attempt: u32,
    /// The uuid of the member that runs the execution (`RD_JOB_SERVERUUID`).
    pub server_uuid: Option<String>,
    /// The server's URL (`RD_JOB_SERVERURL`).
    pub server_url: Option<String>,
    /// The execution's URL (`RD_JOB_URL`).
    pub url: Option<String>,
}

/// An environment variable name for `key` in Rundeck's `context` (`"JOB"`, `"OPTION"`).
pub fn env_name(context: &str, key: &str) -> String {
    // Rundeck's rule (Java's `toUpperCase`, then `[^A-Z0-9_]` to `_`): Unicode upper-casing
    // first, so `größe` becomes `GRÖSSE` and then `GR_SSE`.
    let mut name = String::with_capacity(4 + context.len() + key.len());
    name.push_str("RD_");
    name.push_str(context);
    name.push('_');
    name.extend(key.to_uppercase().chars().map(|c| {
        if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    name
}

/// `RD_OPTION_<NAME>=value`. A multi-valued option's values are joined by the option's
/// delimiter before they get here.
pub fn option_var(name: &str, value: &str) -> (String, String) {
    (env_name("OPTION", name), value.to_string())
}

impl JobVars {
    /// The `RD_JOB_*` variables.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("RD_JOB_ID".to_string(), self.id.clone()),
            ("RD_JOB_EXECID".to_string(), self.exec_id.to_string()),
            ("RD_JOB_NAME".to_string(), self.name.clone()),
            ("RD_JOB_GROUP".to_string(), self.group.clone()),
            ("RD_JOB_PROJECT".to_string(), self.project.clone()),
            ("RD_JOB_USERNAME".to_string(), self.username.clone()),
            ("RD_JOB_USER_NAME".to_string(), self.username.clone()),
            ("RD_JOB_LOGLEVEL".to_string(), self.loglevel.clone()),
            ("RD_JOB_RETRYATTEMPT".to_string(), self.retry_attempt.to_string()),
            ("RD_JOB_WASRETRY".to_string(), (self.retry_attempt > 0).to_string()),
        ];
        if let Some(t) = self.scheduled_time {
            v.push(("RD_JOB_SCHEDULEDEXECUTION".to_string(), t.to_rfc3339_opts(SecondsFormat::Secs, true)));
        }
        let optional = [
            ("RD_JOB_EXECUTIONTYPE", &self.execution_type),
            ("RD_JOB_SERVERUUID", &self.server_uuid),
            ("RD_JOB_SERVERURL", &self.server_url),
            ("RD_JOB_URL", &self.url),
        ];
        v.extend(optional.into_iter().filter_map(|(k, val)| val.clone().map(|val| (k.to_string(), val))));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_upper_cased_and_odd_characters_become_underscores() {
        assert_eq!(option_var("db-host.name", "x"), ("RD_OPTION_DB_HOST_NAME".into(), "x".into()));
        assert_eq!(env_name("OPTION", "Already_OK9"), "RD_OPTION_ALREADY_OK9");
        assert_eq!(env_name("OPTION", "größe"), "RD_OPTION_GR_SSE");
    }

    #[test]
    fn job_vars_include_the_scheduled_slot() {
        let vars = JobVars {
            id: "j-1".into(),
            exec_id: 42,
            name: "backup".into(),
            scheduled_time: DateTime::from_timestamp(1_700_000_000, 0),
            retry_attempt: 1,
            ..Default::default()
        };
        let env = vars.to_env();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("RD_JOB_EXECID"), Some("42"));
        assert_eq!(get("RD_JOB_SCHEDULEDEXECUTION"), Some("2023-11-14T22:13:20Z"));
        assert_eq!(get("RD_JOB_WASRETRY"), Some("true"));
        assert_eq!(get("RD_JOB_URL"), None);
    }
}
