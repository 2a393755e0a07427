//! Rundeck's duration syntax, used by a job's `timeout`, `retry.delay` and steward's
//! `misfire.window`.
//!
//! A duration is either a plain number of seconds (`120`) or a sequence of number-unit pairs,
//! optionally separated by spaces (`30s`, `1h30m`, `6h 30m`, `1d 2h 3m 4s`). Units: `ms`
//! milliseconds (a steward extension), `s` seconds, `m` minutes, `h` hours, `d` days, `w` weeks, `y` years of 365 days. A value that
//! contains `${` (e.g. `${option.timeout}`) is a reference to a job option; it is kept as text
//! and resolved when the job runs, once the option values are known.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a duration: {reason} (use seconds like 120, or units like 30s, 1h30m, 6h 30m, 2d)")]
pub struct DurationError {
    pub text: String,
    pub reason: &'static str,
}

/// Parses a fixed duration (no option reference) in Rundeck's syntax.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError { text: text.to_string(), reason };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().map(Duration::from_secs).map_err(|_| err("the number is too large"));
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err("a number is too large"))?;
        rest = rest[digits..].trim_start();
        // Milliseconds (steward's settings need them; Rundeck's fields never use them).
        let (unit_ms, len): (u64, usize) = match rest.as_bytes() {
            [b'm', b's', ..] => (1, 2),
            [b's', ..] => (1_000, 1),
            [b'm', ..] => (60_000, 1),
            [b'h', ..] => (3_600_000, 1),
            [b'd', ..] => (86_400_000, 1),
            [b'w', ..] => (7 * 86_400_000, 1),
            [b'y', ..] => (365 * 86_400_000, 1),
            [_, ..] => return Err(err("unknown unit; use ms, s, m, h, d, w or y")),
            [] => return Err(err("a number without a unit must stand alone")),
        };
        total = n.checked_mul(unit_ms).and_then(|v| total.checked_add(v)).ok_or_else(|| err("it is too large"))?;
        rest = rest[len..].trim_start();
    }
    Ok(Duration::from_millis(total))
}

/// What a duration field holds once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationValue {
    /// A fixed duration.
    Fixed(Duration),
    /// Text with an option reference such as `${option.timeout}`, resolved at run time.
    Expression(String),
}

/// A duration field as the job document wrote it, with its parsed value. It serialises back
/// to the text it was read from (a number is kept as its decimal text, as Rundeck does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationSpec {
    raw: String,
    value: DurationValue,
}

impl DurationSpec {
    /// Parses a duration or an option reference.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let value = if text.contains("${") {
            DurationValue::Expression(text.to_string())
        } else {
            DurationValue::Fixed(parse_duration(text)?)
        };
        Ok(DurationSpec { raw: text.to_string(), value })
    }

    /// A fixed duration, written in whole seconds.
    pub fn from_duration(d: Duration) -> Self {
        DurationSpec { raw: d.as_secs().to_string(), value: DurationValue::Fixed(Duration::from_secs(d.as_secs())) }
    }

    /// The text as written in the job.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn value(&self) -> &DurationValue {
        &self.value
    }

    /// The duration when it does not depend on options.
    pub fn fixed(&self) -> Option<Duration> {
        match self.value {
            DurationValue::Fixed(d) => Some(d),
            DurationValue::Expression(_) => None,
        }
    }

    /// The duration for a run: option references are expanded by `expand` (see
    /// [`crate::jobs::options::ResolvedOptions::expand`]) and the result parsed.
    pub fn resolve(&self, expand: impl FnOnce(&str) -> String) -> Result<Duration, DurationError> {
        match &self.value {
            DurationValue::Fixed(d) => Ok(*d),
            DurationValue::Expression(text) => parse_duration(&expand(text)),
        }
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = super::definition::lenient::scalar_text(d, "a duration such as 120, 30s or 1h30m")?;
        DurationSpec::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> u64 {
        parse_duration(s).unwrap().as_secs()
    }

    #[test]
    fn plain_numbers_are_seconds() {
        assert_eq!(secs("120"), 120);
        assert_eq!(secs(" 0 "), 0);
    }

    #[test]
    fn units_combine_with_or_without_spaces() {
        assert_eq!(secs("30s"), 30);
        assert_eq!(secs("1h30m"), 5_400);
        assert_eq!(secs("6h 30m"), 23_400);
        assert_eq!(secs("1d 2h 3m 4s"), 93_784);
        assert_eq!(secs("2w"), 1_209_600);
        assert_eq!(secs("1y"), 31_536_000);
        assert_eq!(secs("1h1m1s"), 3_661);
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s250ms").unwrap(), Duration::from_millis(90_250));
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        for bad in ["", "abc", "10x", "1h 30", "h", "-5", "1.5h", "99999999999999999999"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.to_string().contains("is not a duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn option_references_are_kept_for_run_time() {
        let spec = DurationSpec::parse("${option.timeout}").unwrap();
        assert_eq!(spec.fixed(), None);
        assert_eq!(spec.resolve(|t| t.replace("${option.timeout}", "1m")).unwrap().as_secs(), 60);
        assert!(spec.resolve(|t| t.to_string()).is_err());
    }
}
