//! Run-time option values: what a run request gives (Rundeck's `argString` and `options`),
//! checked against the job's options and completed with their defaults.
//!
//! A run request with a bad option is refused as a whole, with one [`OptionError`] per bad
//! option, so the API can answer 400 naming them all and start nothing.
//!
//! Secrets: the value of a secure option is a [`SecretValue`], which has no `Display` or
//! `Serialize` and whose `Debug` prints `****`, so it cannot reach a log line, an error message
//! or a stored record by accident. A secure option whose default lives in key storage resolves
//! to [`OptionValue::KeyStorage`], a marker that [`ResolvedOptions::resolve_key_storage`] replaces
//! once the key storage is read.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use super::definition::{compile_option_regex, JobOption};

/// One bad option, or a bad `argString`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match &self.option { Some(o) => format!("option '{o}': {}", self.message), None => self.message.clone() })]
pub struct OptionError {
    /// The option at fault; `None` for an `argString` that cannot be read.
    pub option: Option<String>,
    pub message: String,
}

impl OptionError {
    fn for_option(option: &str, message: impl Into<String>) -> Self {
        OptionError { option: Some(option.to_string()), message: message.into() }
    }
}

/// Every problem with the options of one run request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct OptionErrors(pub Vec<OptionError>);

/// A secret option value. It is shown nowhere; [`SecretValue::expose`] hands it to the one
/// place that needs it (the process environment, node authentication).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(****)")
    }
}

/// The value an option has for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionValue {
    /// A plain value; a multivalued option's values joined with its delimiter, as Rundeck
    /// passes them.
    Plain(String),
    /// The value of a secure option.
    Secret(SecretValue),
    /// A secure option whose value is read from key storage at this path before the run starts.
    KeyStorage { path: String },
}

/// An option's value for a run, and what the run may do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedOption {
    pub value: OptionValue,
    /// The value came from the request rather than the job's default.
    pub from_input: bool,
    /// Scripts see the value as `RD_OPTION_*`: plain options, and secure ones with
    /// `valueExposed`.
    pub exposed: bool,
}

/// The options of one run: each option of the job that has a value, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedOptions {
    pub values: BTreeMap<String, ResolvedOption>,
    /// Names the request gave that the job does not define; Rundeck ignores them too, and the
    /// caller may warn.
    pub ignored: Vec<String>,
}

/// A secure option still waiting for its key storage value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("option '{option}' has not been read from key storage ({path}) yet")]
pub struct UnresolvedSecret {
    pub option: String,
    pub path: String,
}

impl ResolvedOptions {
    /// The plain value of an option (`None` for secure or absent ones).
    pub fn plain(&self, name: &str) -> Option<&str> {
        match &self.values.get(name)?.value {
            OptionValue::Plain(v) => Some(v),
            _ => None,
        }
    }

    /// Key storage paths still to read, as `(option, path)`.
    pub fn key_storage_paths(&self) -> Vec<(&str, &str)> {
        self.values
            .iter()
            .filter_map(|(name, o)| match &o.value {
                OptionValue::KeyStorage { path } => Some((name.as_str(), path.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Replaces each key storage marker by the secret `fetch` returns for its path. Stops at the
    /// first failure and returns the option with the error.
    pub fn resolve_key_storage<E>(
        &mut self,
        mut fetch: impl FnMut(&str) -> Result<String, E>,
    ) -> Result<(), (String, E)> {
        for (name, o) in self.values.iter_mut() {
            if let OptionValue::KeyStorage { path } = &o.value {
                let secret = fetch(path).map_err(|e| (name.clone(), e))?;
                o.value = OptionValue::Secret(SecretValue(secret));
            }
        }
        Ok(())
    }

    /// The `RD_OPTION_*` variables of the run: plain options, and secure options with
    /// `valueExposed`. Holds secret values; never log it. Fails while an exposed secure option
    /// still waits for key storage.
    pub fn environment(&self) -> Result<Vec<(String, String)>, UnresolvedSecret> {
        let mut env = Vec::new();
        for (name, o) in &self.values {
            if !o.exposed {
                continue;
            }
            let value = match &o.value {
                OptionValue::Plain(v) => v.clone(),
                OptionValue::Secret(s) => s.expose().to_string(),
                OptionValue::KeyStorage { path } => {
                    return Err(UnresolvedSecret { option: name.clone(), path: path.clone() })
                }
            };
            env.push((rd_option_env_name(name), value));
        }
        Ok(env)
    }

    /// The options as an argument string for display and for the execution record (Rundeck's
    /// `argstring`): secure values are written as `****`.
    pub fn display_arg_string(&self) -> String {
        let mut out = Vec::new();
        for (name, o) in &self.values {
            let value = match &o.value {
                OptionValue::Plain(v) => quote_arg(v),
                OptionValue::Secret(_) | OptionValue::KeyStorage { .. } => "****".to_string(),
            };
            out.push(format!("-{name} {value}"));
        }
        out.join(" ")
    }

    /// Replaces `${option.NAME}` in `text` by the plain value of option NAME (for `timeout`
    /// and `retry`); references to unknown, empty or secure options are left as they are.
    pub fn expand(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${option.") {
            out.push_str(&rest[..start]);
            let after = &rest[start + "${option.".len()..];
            match after.find('}') {
                Some(end) => {
                    match self.plain(&after[..end]) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&rest[start..start + "${option.".len() + end + 1]),
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// The environment variable Rundeck gives option `name`: `RD_OPTION_` and the name in upper
/// case, then every character other than `A`–`Z`, `0`–`9` and `_` turned into `_`
/// (`db-host.name` → `RD_OPTION_DB_HOST_NAME`; like Java's `toUpperCase`, `ß` becomes `SS`).
pub fn rd_option_env_name(name: &str) -> String {
    crate::exec::env::env_name("OPTION", name)
}

fn quote_arg(v: &str) -> String {
    if !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || "\"'\\".contains(c)) {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Splits an `argString` into words: whitespace separates them; `"…"` and `'…'` quote (and
/// may be adjacent to other text, as in a shell); a backslash escapes the next character
/// outside single quotes.
fn split_words(s: &str) -> Result<Vec<String>, OptionError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    let unterminated = |q: char| OptionError { option: None, message: format!("argString: a {q} quote is not closed") };
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(unterminated('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err(unterminated('"')),
                        },
                        Some(c) => word.push(c),
                        None => return Err(unterminated('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Parses Rundeck's `argString` (`-name value -other "quoted value"`) into `(name, value)`
/// pairs in order; a name given twice gives two pairs (a multivalued option's values). The
/// word after `-name` is its value even when it starts with `-` (`-offset -5`).
pub fn parse_arg_string(s: &str) -> Result<Vec<(String, String)>, OptionError> {
    let words = split_words(s)?;
    let mut pairs = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let name = match word.strip_prefix('-') {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                return Err(OptionError {
                    option: None,
                    message: format!("argString: expected an option name like -name before '{word}'"),
                })
            }
        };
        match words.next() {
            Some(value) => pairs.push((name, value)),
            None => return Err(OptionError::for_option(&name, "argString gives the option no value")),
        }
    }
    Ok(pairs)
}

/// The values a run request gives each option, by name.
pub type OptionInputs = BTreeMap<String, Vec<String>>;

/// Collects a run request's option values: `argString` first, then the `options` object
/// (`{"name": "value"}`, a list for several values), whose entries replace the `argString`'s
/// for the same option.
pub fn collect_inputs(
    arg_string: Option<&str>,
    options: Option<&Map<String, Value>>,
) -> Result<OptionInputs, OptionErrors> {
    let mut inputs = OptionInputs::new();
    let mut errors = Vec::new();
    if let Some(s) = arg_string {
        match parse_arg_string(s) {
            Ok(pairs) => {
                for (name, value) in pairs {
                    inputs.entry(name).or_default().push(value);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    for (name, value) in options.into_iter().flatten() {
        let text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        let values = match value {
            Value::Null => continue,
            Value::Array(items) => items.iter().map(text).collect::<Option<Vec<_>>>(),
            v => text(v).map(|t| vec![t]),
        };
        match values {
            Some(v) => {
                inputs.insert(name.clone(), v);
            }
            None => errors.push(OptionError::for_option(name, "the value must be text, a number or a list of them")),
        }
    }
    if errors.is_empty() {
        Ok(inputs)
    } else {
        Err(OptionErrors(errors))
    }
}

/// Resolves the options of a run: the request's values (see [`collect_inputs`]) or else the
/// defaults, checked against each option's rules:
///
/// - an empty value counts as none (as in Rundeck) and the default applies;
/// - a multivalued option splits each value by its delimiter; a multivalued option without
///   input and with `multivalueAllSelected` takes all its allowed values; any other option
///   takes at most one value;
/// - `required`: a value (or a key storage default) must exist;
/// - `enforced`: every value must be one of `values` (not checked when the values come from
///   `valuesUrl`, which steward does not fetch);
/// - `regex`: every value must match as a whole.
///
/// Error messages never repeat the value of a secure option.
pub fn resolve_options(job_options: &[JobOption], inputs: &OptionInputs) -> Result<ResolvedOptions, OptionErrors> {
    let mut resolved = ResolvedOptions::default();
    let mut errors = Vec::new();
    for opt in job_options {
        match resolve_one(opt, inputs.get(&opt.name)) {
            Ok(Some(v)) => {
                resolved.values.insert(opt.name.clone(), v);
            }
            Ok(None) => {}
            Err(mut e) => errors.append(&mut e),
        }
    }
    resolved.ignored = inputs.keys().filter(|k| !job_options.iter().any(|o| &o.name == *k)).cloned().collect();
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(OptionErrors(errors))
    }
}

fn resolve_one(opt: &JobOption, input: Option<&Vec<String>>) -> Result<Option<ResolvedOption>, Vec<OptionError>> {
    let err = |m: String| vec![OptionError::for_option(&opt.name, m)];
    let given: Vec<&str> = input.into_iter().flatten().map(String::as_str).filter(|v| !v.is_empty()).collect();
    let exposed = !opt.secure || opt.value_exposed;
    if given.len() > 1 && !opt.multivalued {
        return Err(err(format!("takes one value, but {} were given (only multivalued options repeat)", given.len())));
    }
    let allowed = opt.values.as_deref().unwrap_or(&[]);
    let (parts, from_input): (Vec<&str>, bool) = if !given.is_empty() {
        (given.iter().flat_map(|v| opt.split_value(v)).collect(), true)
    } else if let (true, Some(path)) = (opt.secure, &opt.storage_path) {
        let value = OptionValue::KeyStorage { path: path.clone() };
        return Ok(Some(ResolvedOption { value, from_input: false, exposed }));
    } else if let Some(default) = opt.value.as_deref().filter(|v| !v.is_empty()) {
        (opt.split_value(default), false)
    } else if opt.multivalued && opt.multivalue_all_selected && !allowed.is_empty() {
        (allowed.iter().map(String::as_str).collect(), false)
    } else if opt.required {
        return Err(err("is required".into()));
    } else {
        return Ok(None);
    };
    let mut errors = Vec::new();
    // What a message may say about a value: never a secret.
    let shown = |v: &str| if opt.secure { "the value given".to_string() } else { format!("'{v}'") };
    if opt.enforced && !allowed.is_empty() {
        for p in parts.iter().filter(|p| !allowed.iter().any(|a| a == *p)) {
            errors.push(OptionError::for_option(
                &opt.name,
                format!("{} is not one of the allowed values: {}", shown(p), allowed.join(", ")),
            ));
        }
    }
    if let Some(pattern) = &opt.regex {
        match compile_option_regex(pattern) {
            Ok(re) => {
                for p in parts.iter().filter(|p| !re.is_match(p)) {
                    errors.push(OptionError::for_option(
                        &opt.name,
                        format!("{} does not match the pattern {pattern}", shown(p)),
                    ));
                }
            }
            Err(m) => errors.push(OptionError::for_option(&opt.name, m)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let joined = parts.join(opt.delimiter());
    let value = if opt.secure { OptionValue::Secret(SecretValue(joined)) } else { OptionValue::Plain(joined) };
    Ok(Some(ResolvedOption { value, from_input, exposed }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::jobs::definition::{parse_jobs, JobFormat};

    /// The options of a job read from YAML, as the job API would have them.
    fn job_options(yaml: &str) -> Vec<JobOption> {
        let doc = format!("- name: j\n  sequence: {{commands: [{{exec: x}}]}}\n  options:\n{yaml}");
        let mut jobs = parse_jobs(JobFormat::Yaml, &doc).unwrap();
        jobs.remove(0).unwrap().options
    }

    fn resolve(
        options: &[JobOption],
        arg_string: Option<&str>,
        map: Option<Value>,
    ) -> Result<ResolvedOptions, OptionErrors> {
        let map = map.map(|v| v.as_object().unwrap().clone());
        resolve_options(options, &collect_inputs(arg_string, map.as_ref())?)
    }

    fn errors_of(r: Result<ResolvedOptions, OptionErrors>) -> Vec<String> {
        r.unwrap_err().0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn arg_strings_split_like_a_shell() {
        let pairs =
            parse_arg_string(r#"-env prod -msg "hello world" -who 'it''s' -path a\ b -n -5 -tag x -tag y"#).unwrap();
        let expected = [
            ("env", "prod"),
            ("msg", "hello world"),
            ("who", "its"),
            ("path", "a b"),
            ("n", "-5"),
            ("tag", "x"),
            ("tag", "y"),
        ];
        assert_eq!(pairs, expected.map(|(a, b)| (a.to_string(), b.to_string())));
        assert_eq!(parse_arg_string(r#"-q "say \"hi\"""#).unwrap(), [("q".to_string(), r#"say "hi""#.to_string())]);
        assert_eq!(parse_arg_string("  ").unwrap(), []);
        assert_eq!(parse_arg_string(r#"-e """#).unwrap(), [("e".to_string(), String::new())]);
    }

    #[test]
    fn unreadable_arg_strings_are_refused() {
        assert!(parse_arg_string(r#"-msg "open"#).unwrap_err().message.contains("\" quote is not closed"));
        assert!(parse_arg_string("-msg 'open").unwrap_err().message.contains("' quote is not closed"));
        let e = parse_arg_string("-env").unwrap_err();
        assert_eq!(e.option.as_deref(), Some("env"));
        assert!(parse_arg_string("prod")
            .unwrap_err()
            .message
            .contains("expected an option name like -name before 'prod'"));
        assert!(parse_arg_string("- x").is_err());
    }

    #[test]
    fn defaults_fill_in_and_input_wins() {
        let opts = job_options("  - {name: env, value: dev}\n  - {name: region, value: eu}\n  - {name: note}\n");
        let r = resolve(&opts, Some("-env prod"), None).unwrap();
        assert_eq!(r.plain("env"), Some("prod"));
        assert!(r.values["env"].from_input);
        assert_eq!(r.plain("region"), Some("eu"));
        assert!(!r.values["region"].from_input);
        assert_eq!(r.plain("note"), None, "no input and no default: no value");
        // An empty value counts as none.
        assert_eq!(resolve(&opts, Some(r#"-env """#), None).unwrap().plain("env"), Some("dev"));
        // The options object replaces the argString's value.
        let r = resolve(&opts, Some("-env prod"), Some(json!({"env": "staging", "region": 7}))).unwrap();
        assert_eq!((r.plain("env"), r.plain("region")), (Some("staging"), Some("7")));
    }

    #[test]
    fn every_bad_option_is_reported_at_once() {
        let opts = job_options(
            "  - {name: env, values: [dev, prod], enforced: true}\n  - {name: ticket, required: true}\n  - {name: count, regex: '[0-9]+'}\n",
        );
        let errors = errors_of(resolve(&opts, Some("-env qa -count ten"), None));
        assert_eq!(
            errors,
            [
                "option 'env': 'qa' is not one of the allowed values: dev, prod",
                "option 'ticket': is required",
                "option 'count': 'ten' does not match the pattern [0-9]+",
            ]
        );
        // The regex must match the whole value, as in Rundeck.
        assert!(resolve(&opts, Some("-ticket T-1 -count 12x"), None).is_err());
        assert_eq!(resolve(&opts, Some("-ticket T-1 -count 12"), None).unwrap().plain("count"), Some("12"));
    }

    #[test]
    fn values_are_only_suggestions_unless_enforced() {
        let opts = job_options("  - {name: env, values: [dev, prod]}\n");
        assert_eq!(resolve(&opts, Some("-env qa"), None).unwrap().plain("env"), Some("qa"));
    }

    #[test]
    fn multivalued_options_split_join_and_check_each_value() {
        let opts = job_options(
            "  - {name: tables, multivalued: true, delimiter: '|', values: [users, orders, items], enforced: true}\n",
        );
        let r = resolve(&opts, Some("-tables users -tables 'orders|items'"), None).unwrap();
        assert_eq!(r.plain("tables"), Some("users|orders|items"));
        let r = resolve(&opts, None, Some(json!({"tables": ["items", "users"]}))).unwrap();
        assert_eq!(r.plain("tables"), Some("items|users"));
        assert_eq!(
            errors_of(resolve(&opts, Some("-tables users|bogus"), None)),
            ["option 'tables': 'bogus' is not one of the allowed values: users, orders, items"]
        );
        let all = job_options(
            "  - {name: t, multivalued: true, delimiter: ',', values: [a, b], multivalueAllSelected: true}\n",
        );
        assert_eq!(resolve(&all, None, None).unwrap().plain("t"), Some("a,b"));
    }

    #[test]
    fn a_single_valued_option_given_twice_is_refused() {
        let opts = job_options("  - {name: env}\n");
        assert_eq!(
            errors_of(resolve(&opts, Some("-env a -env b"), None)),
            ["option 'env': takes one value, but 2 were given (only multivalued options repeat)"]
        );
    }

    #[test]
    fn unknown_names_are_ignored_and_listed() {
        let opts = job_options("  - {name: env}\n");
        let r = resolve(&opts, Some("-env a -evn b"), Some(json!({"extra": "x"}))).unwrap();
        assert_eq!(r.ignored, ["evn", "extra"]);
        assert_eq!(r.values.len(), 1);
    }

    #[test]
    fn bad_options_objects_are_refused() {
        let opts = job_options("  - {name: env}\n");
        assert_eq!(
            errors_of(resolve(&opts, None, Some(json!({"env": {"nested": 1}})))),
            ["option 'env': the value must be text, a number or a list of them"]
        );
        // Both the argString and the object are checked before anything is resolved.
        assert_eq!(errors_of(resolve(&opts, Some("oops"), Some(json!({"env": [{}]})))).len(), 2);
    }

    #[test]
    fn secure_values_are_never_shown() {
        let opts = job_options(
            "  - {name: pass, secure: true, required: true, regex: '[a-z]+'}\n  - {name: token, secure: true, valueExposed: true}\n",
        );
        let r = resolve(&opts, Some("-pass hunter -token s3cret"), None).unwrap();
        assert_eq!(r.values["pass"].value, OptionValue::Secret(SecretValue::new("hunter")));
        let shown = format!("{r:?} {}", r.display_arg_string());
        assert!(!shown.contains("hunter") && !shown.contains("s3cret"), "{shown}");
        assert_eq!(r.display_arg_string(), "-pass **** -token ****");
        // Only the exposed one reaches the environment.
        assert_eq!(r.environment().unwrap(), [("RD_OPTION_TOKEN".to_string(), "s3cret".to_string())]);
        // Nor in error messages.
        let errors = errors_of(resolve(&opts, Some("-pass HUNTER2"), None)).join(" ");
        assert!(!errors.contains("HUNTER2"), "{errors}");
        assert!(errors.contains("option 'pass': the value given does not match"), "{errors}");
        assert!(!format!("{:?}", resolve(&opts, Some("-pass HUNTER2"), None)).contains("HUNTER2"));
    }

    #[test]
    fn secure_defaults_from_key_storage_are_markers_until_resolved() {
        let opts =
            job_options("  - {name: db, secure: true, valueExposed: true, required: true, storagePath: keys/db/pw}\n");
        let mut r = resolve(&opts, None, None).unwrap();
        assert_eq!(r.values["db"].value, OptionValue::KeyStorage { path: "keys/db/pw".into() });
        assert_eq!(r.key_storage_paths(), [("db", "keys/db/pw")]);
        assert_eq!(r.environment().unwrap_err(), UnresolvedSecret { option: "db".into(), path: "keys/db/pw".into() });
        assert_eq!(r.display_arg_string(), "-db ****");
        let failed = r.clone().resolve_key_storage(|_| Err::<String, _>("no such key"));
        assert_eq!(failed, Err(("db".to_string(), "no such key")));
        r.resolve_key_storage(|path| Ok::<_, ()>(format!("secret-of-{path}"))).unwrap();
        assert_eq!(r.environment().unwrap(), [("RD_OPTION_DB".to_string(), "secret-of-keys/db/pw".to_string())]);
        // A value given with the request takes the place of the stored one.
        let r = resolve(&opts, Some("-db typed"), None).unwrap();
        assert_eq!(r.values["db"].value, OptionValue::Secret(SecretValue::new("typed")));
    }

    #[test]
    fn environment_variable_names_follow_rundeck() {
        assert_eq!(rd_option_env_name("env"), "RD_OPTION_ENV");
        assert_eq!(rd_option_env_name("db-host.name"), "RD_OPTION_DB_HOST_NAME");
        assert_eq!(rd_option_env_name("my_opt2"), "RD_OPTION_MY_OPT2");
        assert_eq!(rd_option_env_name("größe"), "RD_OPTION_GR_SSE");
        let opts = job_options("  - {name: db-host, value: h1}\n  - {name: port, value: 5432}\n");
        let env = resolve(&opts, None, None).unwrap().environment().unwrap();
        assert_eq!(env, [("RD_OPTION_DB_HOST".into(), "h1".into()), ("RD_OPTION_PORT".into(), "5432".into())]);
    }

    #[test]
    fn option_references_expand_for_timeouts() {
        let opts = job_options("  - {name: t, value: 90s}\n  - {name: s, secure: true, valueExposed: true}\n");
        let r = resolve(&opts, Some("-s x"), None).unwrap();
        assert_eq!(r.expand("${option.t}"), "90s");
        assert_eq!(
            r.expand("a ${option.t} b ${option.none} ${option.s} ${option.t"),
            "a 90s b ${option.none} ${option.s} ${option.t"
        );
        let spec = crate::jobs::duration::DurationSpec::parse("${option.t}").unwrap();
        assert_eq!(spec.resolve(|t| r.expand(t)).unwrap().as_secs(), 90);
    }

    #[test]
    fn display_arg_string_quotes_what_needs_it() {
        let opts = job_options("  - {name: a, value: 'two words'}\n  - {name: b, value: plain}\n");
        let r = resolve(&opts, None, None).unwrap();
        assert_eq!(r.display_arg_string(), r#"-a "two words" -b plain"#);
        let back = parse_arg_string(&r.display_arg_string()).unwrap();
        assert_eq!(back[0], ("a".to_string(), "two words".to_string()));
    }
}
