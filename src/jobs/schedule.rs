//! Job schedules: Quartz cron expressions evaluated in the job's time zone, with defined
//! behaviour across daylight-saving changes, and the misfire planning the scheduler runs when it
//! reaches slots late.
//!
//! # Cron syntax
//! Quartz's, as Rundeck uses it: `seconds minutes hours day-of-month month day-of-week [year]`
//! (6 or 7 fields). Day-of-week counts 1 = Sunday … 7 = Saturday (names `SUN`–`SAT` also);
//! months 1–12 or `JAN`–`DEC`. Besides `* , - /` (also `5/15` and `/15`):
//! - `?` in day-of-month or day-of-week: "no specific value". Exactly one of the two must be
//!   `?`; `* *` is accepted as every day (Rundeck turns it into `* ?`). Giving both a
//!   day-of-month and a day-of-week is refused, as Quartz refuses it.
//! - `L` in day-of-month: the last day; `LW`: the last weekday (Mon–Fri) of the month.
//! - `15W`: the weekday nearest the 15th, within the month.
//! - `6L` in day-of-week: the last Friday of the month; `L` alone: Saturday (Quartz's 7).
//! - `6#3`: the third Friday of the month.
//! - year: 1970–2099.
//!
//! Not supported (refused with a message, where Quartz accepts them): `L-3` (third-to-last day)
//! and ranges that wrap around (`FRI-MON`, `22-2`).
//!
//! The matching itself is `croner`'s, on wall-clock times. Quartz compatibility is this
//! module's job: croner treats `?` as `*`, reads `L` alone in day-of-week as nothing, and has
//! no rule that one day field must be `?`, so expressions are checked and rewritten first.
//!
//! # Time zones
//! A schedule is read in the job's `timeZone` (an IANA name), in UTC when the job has none.
//!
//! # Daylight saving
//! Wall-clock slots are turned into instants by two rules, so that a change never causes a
//! burst of fires nor loses a day:
//! - **Spring forward** (a wall-clock interval is skipped): a slot in the skipped interval fires
//!   once, at the first instant after the gap (a daily 02:30 in Europe/Berlin fires at 03:00
//!   CEST on the last Sunday of March). All slots of one gap fire together as that one fire,
//!   also when the schedule has its own slot at that instant.
//! - **Fall back** (a wall-clock interval repeats): a slot in the repeated interval fires once, at
//!   its first occurrence (a daily 01:30 in America/New_York fires at 01:30 EDT on the first
//!   Sunday of November, not again at 01:30 EST).
//!
//! Except for schedules that run in every hour of the day (hours field `*`): they follow real
//! time instead. Slots of the skipped interval do not exist (an hourly job runs at 01:00 CET and
//! 03:00 CEST, one hour apart), and the repeated interval runs twice (01:00 EDT and 01:00 EST),
//! so the job keeps its interval through the change. Every rule yields distinct, increasing
//! instants.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, SubsecRound, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};

use super::definition::{FieldProblem, JobDefinition, JobError, Schedule};

/// Parses an IANA time zone name (`Europe/Berlin`, `UTC`, …).
pub fn parse_time_zone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name.trim()).map_err(|_| {
        format!("unknown time zone '{name}': use an IANA name such as UTC, Europe/Berlin or America/New_York")
    })
}

/// A cron expression steward cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression '{expression}': {message}")]
pub struct ScheduleError {
    pub expression: String,
    pub message: String,
}

const FIELD_NAMES: [&str; 7] = ["seconds", "minutes", "hours", "day-of-month", "month", "day-of-week", "year"];

/// Checks a Quartz expression and rewrites it into the 7-field form croner reads with the
/// Quartz options (`L` alone in day-of-week as 7, one of two `*` day fields as `?`).
fn quartz_fields(expression: &str) -> Result<[String; 7], String> {
    let parts: Vec<&str> = expression.split_whitespace().collect();
    if !(6..=7).contains(&parts.len()) {
        return Err(format!(
            "a Quartz cron expression has 6 or 7 fields (seconds minutes hours day-of-month month day-of-week \
             [year]), this one has {}",
            parts.len()
        ));
    }
    let mut fields: [String; 7] = std::array::from_fn(|i| parts.get(i).map_or("*", |p| p).to_ascii_uppercase());
    for (i, f) in fields.iter().enumerate() {
        let extra: &str = match i {
            3 => "?LW",
            4 => "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            5 => "?L#ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            _ => "",
        };
        if let Some(c) = f.chars().find(|c| !(c.is_ascii_digit() || "*/,-".contains(*c) || extra.contains(*c))) {
            return Err(format!("{} field '{f}' has the character '{c}', which it does not allow", FIELD_NAMES[i]));
        }
        if f.contains('?') && f != "?" {
            return Err(format!("{} field '{f}': '?' must stand alone", FIELD_NAMES[i]));
        }
    }
    match (fields[3].as_str(), fields[5].as_str()) {
        ("?", "?") => return Err("'?' goes in day-of-month or in day-of-week, not in both".into()),
        // Rundeck writes the day-of-week as '?' whenever day-of-month is not, so `* *` (and
        // `N *`) mean what they say: every day (the Nth).
        (_, "*") if fields[3] != "?" => fields[5] = "?".into(),
        (dom, dow) if dom != "?" && dow != "?" => {
            return Err(format!(
                "day-of-month '{dom}' and day-of-week '{dow}' cannot both be given: put '?' in the one you do not \
                 use, e.g. '0 0 9 ? * MON-FRI' or '0 0 9 1 * ?'"
            ))
        }
        _ => {}
    }
    if fields[3].starts_with("L-") {
        return Err(format!("day-of-month '{}': 'L-n' (days before the end of the month) is not supported", fields[3]));
    }
    if fields[5] == "L" {
        fields[5] = "7".into();
    }
    for i in [0, 1, 2, 3, 4, 6] {
        for range in fields[i].split(',').map(|p| p.split('/').next().unwrap_or("")) {
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    if a > b {
                        return Err(format!("{} field: the range {a}-{b} runs backwards", FIELD_NAMES[i]));
                    }
                }
            }
        }
    }
    // Quartz's years; the step after a `/` is a count, not a year.
    for part in fields[6].split(',') {
        let years = part.split('/').next().unwrap_or("");
        for y in years.split('-').filter(|y| !y.is_empty() && *y != "*") {
            if y.parse::<u32>().map_or(true, |y| !(1970..=2099).contains(&y)) {
                return Err(format!("year field '{}': years go from 1970 to 2099", fields[6]));
            }
        }
    }
    Ok(fields)
}

fn quartz_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Required)
        .alternative_weekdays(true)
        .sloppy_ranges(true)
        .build()
}

/// Parses a Quartz expression into croner's form, naming the field at fault when it fails.
fn parse_quartz(expression: &str) -> Result<(String, Cron), String> {
    let fields = quartz_fields(expression)?;
    let normalized = fields.join(" ");
    let parser = quartz_parser();
    match parser.parse(&normalized) {
        Ok(cron) => Ok((normalized, cron)),
        Err(e) => {
            // croner does not say which field it choked on; try each alone to find out.
            for (i, field) in fields.iter().enumerate() {
                let mut probe: [String; 7] = ["0", "0", "0", "?", "*", "*", "*"].map(String::from);
                probe[i] = field.clone();
                if i == 5 {
                    probe[3] = "?".into();
                    probe[5] = field.clone();
                } else if i == 3 {
                    probe[5] = "?".into();
                }
                if let Err(fe) = parser.parse(&probe.join(" ")) {
                    return Err(format!("{} field '{field}': {}", FIELD_NAMES[i], croner_message(&fe)));
                }
            }
            Err(croner_message(&e))
        }
    }
}

fn croner_message(e: &croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    match e {
        E::ComponentError(m) | E::InvalidPattern(m) | E::IllegalCharacters(m) => m.trim_end_matches('.').to_string(),
        other => other.to_string(),
    }
}

/// A schedule ready to compute slots: a Quartz expression in a time zone.
#[derive(Debug, Clone)]
pub struct JobSchedule {
    expression: String,
    cron: Cron,
    tz: Tz,
    /// Hours field matches every hour: the schedule follows real time through DST changes.
    follows_real_time: bool,
}

impl JobSchedule {
    /// A schedule from a Quartz expression (6 or 7 fields) and a time zone.
    pub fn new(expression: &str, tz: Tz) -> Result<JobSchedule, ScheduleError> {
        let (normalized, cron) = parse_quartz(expression)
            .map_err(|message| ScheduleError { expression: expression.trim().to_string(), message })?;
        let follows_real_time = cron.pattern.hours.values().len() == 24;
        Ok(JobSchedule { expression: normalized, cron, tz, follows_real_time })
    }

    /// The job's schedule in the job's time zone (UTC when `timeZone` is absent); `None` when
    /// the job has no schedule. Whether it is enabled is the caller's question
    /// ([`JobDefinition::is_scheduled`]).
    pub fn from_definition(job: &JobDefinition) -> Result<Option<JobSchedule>, JobError> {
        let Some(schedule) = &job.schedule else { return Ok(None) };
        let name = Some(job.name.as_str()).filter(|n| !n.is_empty());
        let tz = match &job.time_zone {
            Some(z) => {
                parse_time_zone(z).map_err(|m| JobError::single("timeZone", m).for_job(None, name, job.uuid()))?
            }
            None => Tz::UTC,
        };
        JobSchedule::from_schedule(schedule, tz)
            .map(Some)
            .map_err(|p| JobError::new(vec![p]).for_job(None, name, job.uuid()))
    }

    /// A schedule from a job's `schedule` mapping, with errors under the job's field names.
    pub fn from_schedule(schedule: &Schedule, tz: Tz) -> Result<JobSchedule, FieldProblem> {
        let expression = schedule.cron_expression();
        JobSchedule::new(&expression, tz).map_err(|e| {
            let message = if schedule.error_field() == "schedule" {
                format!("the schedule makes the cron expression '{expression}', which is invalid: {}", e.message)
            } else {
                e.to_string()
            };
            FieldProblem::new(schedule.error_field(), message)
        })
    }

    /// The expression in its normalised 7-field form.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The first slot strictly after `t`, or `None` if the schedule never fires again (e.g. its
    /// years are past).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Slots are whole seconds, so this changes no answer and keeps the wall clock exact.
        let t = t.trunc_subsecs(0);
        let wall = t.with_timezone(&self.tz).naive_local();
        let mut candidate = self.next_wall(wall, false)?;
        // When `t` lies in a repeated interval, slots of that interval may still be ahead.
        if let LocalResult::Ambiguous(early, late) = self.tz.from_local_datetime(&wall) {
            let overlap = self.overlap(&early, &late);
            let in_first_half = t < overlap.transition;
            if candidate < overlap.end_wall {
                if in_first_half {
                    return Some(overlap.first(candidate));
                }
                if self.follows_real_time {
                    return Some(overlap.second(candidate));
                }
                // The slots left in this interval fired in its first occurrence.
                candidate = self.next_wall(overlap.end_wall, true)?;
            } else if in_first_half && self.follows_real_time {
                if let Some(w) = self.next_wall(overlap.start_wall, true).filter(|w| *w < overlap.end_wall) {
                    return Some(overlap.second(w));
                }
            }
        }
        self.instant_of(candidate)
    }

    /// The slots in `(from_exclusive, to_inclusive]`, in order.
    pub fn slots_between(&self, from_exclusive: DateTime<Utc>, to_inclusive: DateTime<Utc>) -> Slots<'_> {
        Slots { schedule: self, cursor: from_exclusive, end: to_inclusive }
    }

    fn next_wall(&self, after: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
        self.cron.find_next_occurrence(&after, inclusive).ok()
    }

    /// The instant a wall-clock slot fires at, for a slot that lies after the time searched from.
    fn instant_of(&self, mut w: NaiveDateTime) -> Option<DateTime<Utc>> {
        // Each turn passes one DST gap; a handful is more than any real zone needs.
        for _ in 0..16 {
            match self.tz.from_local_datetime(&w) {
                LocalResult::Single(dt) => return Some(dt.with_timezone(&Utc)),
                LocalResult::Ambiguous(first, _) => return Some(first.with_timezone(&Utc)),
                LocalResult::None => {
                    let gap_end = self.gap_end(w)?;
                    if !self.follows_real_time {
                        return Some(gap_end);
                    }
                    w = self.next_wall(self.wall_at(gap_end), true)?;
                }
            }
        }
        None
    }

    fn wall_at(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.with_timezone(&self.tz).naive_local()
    }

    /// The first instant after the DST gap that contains wall-clock time `w`.
    fn gap_end(&self, w: NaiveDateTime) -> Option<DateTime<Utc>> {
        // Every UTC offset in the tz database is within ±26 h, so the wall clock reads before
        // `w` at `lo` and after it at `hi`; the jump over `w` between them is the gap.
        let base = w.and_utc().timestamp();
        let (mut lo, mut hi) = (base - 26 * 3600, base + 26 * 3600);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.wall_at(DateTime::from_timestamp(mid, 0)?) > w {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        DateTime::from_timestamp(hi, 0)
    }

    /// The repeated interval around a wall-clock time that has two instants.
    fn overlap(&self, first: &DateTime<Tz>, second: &DateTime<Tz>) -> Overlap {
        let first_offset = i64::from(first.offset().fix().local_minus_utc());
        let second_offset = i64::from(second.offset().fix().local_minus_utc());
        let offset_at = |ts: i64| {
            DateTime::from_timestamp(ts, 0)
                .map(|t| i64::from(self.tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc()))
        };
        // The change is the first instant in (first, second] with the later offset.
        let (mut lo, mut hi) = (first.timestamp(), second.timestamp());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if offset_at(mid) == Some(second_offset) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let transition = DateTime::from_timestamp(hi, 0).unwrap_or(second.with_timezone(&Utc));
        let naive = transition.naive_utc();
        Overlap {
            transition,
            start_wall: naive + chrono::Duration::seconds(second_offset),
            end_wall: naive + chrono::Duration::seconds(first_offset),
            first_offset,
            second_offset,
        }
    }
}

/// A repeated wall-clock interval `[start_wall, end_wall)`: read with `first_offset` before
/// `transition`, with `second_offset` from it on.
struct Overlap {
    transition: DateTime<Utc>,
    start_wall: NaiveDateTime,
    end_wall: NaiveDateTime,
    first_offset: i64,
    second_offset: i64,
}

impl Overlap {
    fn first(&self, w: NaiveDateTime) -> DateTime<Utc> {
        (w - chrono::Duration::seconds(self.first_offset)).and_utc()
    }
    fn second(&self, w: NaiveDateTime) -> DateTime<Utc> {
        (w - chrono::Duration::seconds(self.second_offset)).and_utc()
    }
}

/// Iterator over the slots of a schedule in an interval; see [`JobSchedule::slots_between`].
pub struct Slots<'a> {
    schedule: &'a JobSchedule,
    cursor: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Iterator for Slots<'_> {
    type Item = DateTime<Utc>;
    fn next(&mut self) -> Option<DateTime<Utc>> {
        let next = self.schedule.next_after(self.cursor).filter(|t| *t <= self.end)?;
        self.cursor = next;
        Some(next)
    }
}

/// What the scheduler does with a slot it reaches late (steward's `misfire.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MisfireKind {
    /// The most recent late slot runs once, if it is at most `window` late.
    #[default]
    RunLate,
    /// Late slots never run; they are recorded as missed.
    RecordMissed,
}

/// A job's misfire policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MisfirePolicy {
    pub kind: MisfireKind,
    /// The latest a slot may run; also caps [`ON_TIME_TOLERANCE`] for the job.
    pub window: Duration,
}

/// Default `misfire.window`.
pub const DEFAULT_MISFIRE_WINDOW: Duration = Duration::from_secs(60);

impl Default for MisfirePolicy {
    fn default() -> Self {
        MisfirePolicy { kind: MisfireKind::RunLate, window: DEFAULT_MISFIRE_WINDOW }
    }
}

/// A slot the scheduler reaches at most this late (or the job's window, if shorter) is on
/// time: it fires, whatever the policy. It covers a commit through Raft and a leader election
/// (0.5–1 s), so a member that is merely slow does not turn slots into misfires.
pub const ON_TIME_TOLERANCE: Duration = Duration::from_secs(5);

/// What becomes of one due slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotOutcome {
    /// Fire now; the slot is on time.
    Fire,
    /// Fire now, late, by the run-late policy.
    FireLate,
    /// Record the slot as missed.
    Missed,
}

/// A due slot and what becomes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotDecision {
    pub slot: DateTime<Utc>,
    pub outcome: SlotOutcome,
    /// How long after the slot `now` is.
    pub late_by: Duration,
}

/// The scheduler's orders for the due slots of one job, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPlan {
    pub decisions: Vec<SlotDecision>,
    /// False when the batch limit stopped the plan early: commit these decisions, then plan
    /// again from [`SlotPlan::handled_through`].
    pub complete: bool,
}

impl SlotPlan {
    /// The last slot decided; the next plan starts after it. `None` when nothing was due.
    pub fn handled_through(&self) -> Option<DateTime<Utc>> {
        self.decisions.last().map(|d| d.slot)
    }

    /// Slots to fire now (on time or late).
    pub fn fires(&self) -> impl Iterator<Item = &SlotDecision> {
        self.decisions.iter().filter(|d| d.outcome != SlotOutcome::Missed)
    }

    /// Slots to record as missed.
    pub fn missed(&self) -> impl Iterator<Item = &SlotDecision> {
        self.decisions.iter().filter(|d| d.outcome == SlotOutcome::Missed)
    }
}

/// Decides every slot in `(after, now]`: `after` is the last slot the scheduler handled (or the
/// instant the schedule became active), `now` the present.
///
/// - A slot at most [`ON_TIME_TOLERANCE`] late (or the job's window, if shorter) fires.
/// - Under run-late, the last due slot also fires if it is at most `window` late: at most one
///   late run, however many slots were missed, so catching up never bursts.
/// - Every other due slot is recorded as missed. No slot is left out: each ends as a fire or a
///   missed record.
///
/// At most `max_slots` (at least 1) slots are decided per call, oldest first, so a long outage
/// of a frequent job is worked off in bounded batches.
pub fn plan_due_slots(
    schedule: &JobSchedule,
    policy: &MisfirePolicy,
    after: DateTime<Utc>,
    now: DateTime<Utc>,
    max_slots: usize,
) -> SlotPlan {
    let on_time = ON_TIME_TOLERANCE.min(policy.window);
    let mut decisions = Vec::new();
    let mut next = schedule.next_after(after).filter(|s| *s <= now);
    while let Some(slot) = next {
        if decisions.len() >= max_slots.max(1) {
            return SlotPlan { decisions, complete: false };
        }
        let following = schedule.next_after(slot).filter(|s| *s <= now);
        let late_by = (now - slot).to_std().unwrap_or_default();
        let outcome = if late_by <= on_time {
            SlotOutcome::Fire
        } else if following.is_none() && policy.kind == MisfireKind::RunLate && late_by <= policy.window {
            SlotOutcome::FireLate
        } else {
            SlotOutcome::Missed
        };
        decisions.push(SlotDecision { slot, outcome, late_by });
        next = following;
    }
    SlotPlan { decisions, complete: true }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeDelta};

    use super::*;

    fn schedule(expression: &str, tz: &str) -> JobSchedule {
        JobSchedule::new(expression, parse_time_zone(tz).unwrap()).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap().and_utc()
    }

    /// The next `n` slots after `from` (UTC), written in the schedule's zone with its abbreviation.
    fn next_local(s: &JobSchedule, from: &str, n: usize) -> Vec<String> {
        let mut t = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = s.next_after(t).unwrap();
            out.push(t.with_timezone(&s.tz).format("%Y-%m-%d %H:%M:%S %Z").to_string());
        }
        out
    }

    fn next_utc(s: &JobSchedule, from: &str, n: usize) -> Vec<String> {
        let mut t = utc(from);
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                t.format("%Y-%m-%d %H:%M:%S").to_string()
            })
            .collect()
    }

    #[test]
    fn berlin_spring_forward_a_daily_slot_in_the_skipped_hour_fires_once_at_the_end_of_the_gap() {
        let s = schedule("0 30 2 * * ?", "Europe/Berlin");
        assert_eq!(
            next_local(&s, "2025-03-28 12:00:00", 3),
            ["2025-03-29 02:30:00 CET", "2025-03-30 03:00:00 CEST", "2025-03-31 02:30:00 CEST"]
        );
    }

    #[test]
    fn berlin_fall_back_a_daily_slot_in_the_repeated_hour_fires_once() {
        let s = schedule("0 30 2 * * ?", "Europe/Berlin");
        assert_eq!(next_local(&s, "2025-10-25 12:00:00", 2), ["2025-10-26 02:30:00 CEST", "2025-10-27 02:30:00 CET"]);
    }

    #[test]
    fn new_york_fall_back_a_daily_0130_fires_once_at_its_first_occurrence() {
        let s = schedule("0 30 1 * * ?", "America/New_York");
        assert_eq!(
            next_utc(&s, "2025-11-01 12:00:00", 2),
            ["2025-11-02 05:30:00", "2025-11-03 06:30:00"],
            "01:30 EDT is 05:30Z; 01:30 EST (06:30Z) on the same day must not fire"
        );
        // Asked from inside the repeated hour (01:10 EST), the day's slot is already done.
        assert_eq!(s.next_after(utc("2025-11-02 06:10:00")), Some(utc("2025-11-03 06:30:00")));
        // Asked from its first occurrence (01:10 EDT), it is still ahead.
        assert_eq!(s.next_after(utc("2025-11-02 05:10:00")), Some(utc("2025-11-02 05:30:00")));
    }

    #[test]
    fn new_york_spring_forward_a_0230_slot_fires_at_0300_edt() {
        let s = schedule("0 30 2 * * ?", "America/New_York");
        assert_eq!(next_local(&s, "2025-03-08 12:00:00", 2), ["2025-03-09 03:00:00 EDT", "2025-03-10 02:30:00 EDT"]);
    }

    #[test]
    fn hourly_schedules_follow_real_time_through_both_changes() {
        let ny = schedule("0 0 * * * ?", "America/New_York");
        assert_eq!(
            next_local(&ny, "2025-11-02 03:30:00", 4),
            [
                "2025-11-02 00:00:00 EDT",
                "2025-11-02 01:00:00 EDT",
                "2025-11-02 01:00:00 EST",
                "2025-11-02 02:00:00 EST"
            ]
        );
        let berlin = schedule("0 0 * * * ?", "Europe/Berlin");
        assert_eq!(
            next_local(&berlin, "2025-03-29 23:30:00", 3),
            ["2025-03-30 01:00:00 CET", "2025-03-30 03:00:00 CEST", "2025-03-30 04:00:00 CEST"]
        );
        // A slot at :30 in the skipped hour is simply not there: still one hour between fires.
        let half = schedule("0 30 * * * ?", "Europe/Berlin");
        assert_eq!(next_utc(&half, "2025-03-30 00:00:00", 2), ["2025-03-30 00:30:00", "2025-03-30 01:30:00"]);
    }

    /// Every slot of `s` in `(from, to]`, checked to increase strictly.
    fn all_slots(s: &JobSchedule, from: &str, to: &str) -> Vec<DateTime<Utc>> {
        let slots: Vec<_> = s.slots_between(utc(from), utc(to)).collect();
        assert!(slots.windows(2).all(|w| w[0] < w[1]), "slots must strictly increase");
        slots
    }

    #[test]
    fn minutely_schedules_keep_one_minute_steps_through_the_changes() {
        for (tz, from, to) in [
            ("America/New_York", "2025-11-02 04:00:00", "2025-11-02 08:00:00"),
            ("America/New_York", "2025-03-09 05:00:00", "2025-03-09 09:00:00"),
            ("Europe/Berlin", "2025-03-29 23:00:00", "2025-03-30 03:00:00"),
            ("Europe/Berlin", "2025-10-25 23:00:00", "2025-10-26 03:00:00"),
        ] {
            let slots = all_slots(&schedule("0 * * * * ?", tz), from, to);
            assert_eq!(slots.len(), 240, "{tz} {from}");
            assert!(slots.windows(2).all(|w| w[1] - w[0] == TimeDelta::minutes(1)), "{tz} {from}");
        }
    }

    #[test]
    fn a_half_hourly_schedule_fires_every_30_minutes_all_year() {
        for tz in ["America/New_York", "Europe/Berlin"] {
            let slots = all_slots(&schedule("0 0/30 * * * ?", tz), "2024-12-31 23:59:59", "2025-12-31 23:59:59");
            assert!(slots.windows(2).all(|w| w[1] - w[0] == TimeDelta::minutes(30)), "{tz}");
            assert_eq!(slots.len(), 365 * 48, "{tz}");
        }
    }

    #[test]
    fn a_daily_schedule_fires_on_every_local_day_of_the_year_exactly_once() {
        for (tz, expression) in [
            ("Europe/Berlin", "0 30 2 * * ?"),
            ("America/New_York", "0 30 1 * * ?"),
            ("America/New_York", "0 30 2 * * ?"),
        ] {
            let s = schedule(expression, tz);
            let tzv = s.time_zone();
            let days: Vec<NaiveDate> = all_slots(&s, "2025-01-01 12:00:00", "2026-01-01 12:00:00")
                .iter()
                .map(|t| t.with_timezone(&tzv).date_naive())
                .collect();
            assert_eq!(days.len(), 365, "{tz} {expression}");
            assert!(days.windows(2).all(|w| w[1] == w[0].succ_opt().unwrap()), "{tz} {expression}");
        }
    }

    #[test]
    fn a_wall_clock_schedule_with_several_hours_fires_once_in_the_repeated_hour() {
        let s = schedule("0 30 1,13 * * ?", "America/New_York");
        assert_eq!(
            next_local(&s, "2025-11-02 03:00:00", 3),
            ["2025-11-02 01:30:00 EDT", "2025-11-02 13:30:00 EST", "2025-11-03 01:30:00 EST"]
        );
        // Every 15 minutes during the 1 o'clock hour: four fires, not eight.
        let quarter = schedule("0 0/15 1 * * ?", "America/New_York");
        assert_eq!(all_slots(&quarter, "2025-11-02 00:00:00", "2025-11-02 12:00:00").len(), 4);
    }

    #[test]
    fn the_slots_of_one_gap_fire_together_once() {
        let s = schedule("0 0/15 2 * * ?", "Europe/Berlin");
        assert_eq!(next_local(&s, "2025-03-29 12:00:00", 2), ["2025-03-30 03:00:00 CEST", "2025-03-31 02:00:00 CEST"]);
        // The gap's slot and the schedule's own 03:00 are one fire.
        let s = schedule("0 0 2,3 * * ?", "Europe/Berlin");
        assert_eq!(
            next_local(&s, "2025-03-29 12:00:00", 3),
            ["2025-03-30 03:00:00 CEST", "2025-03-31 02:00:00 CEST", "2025-03-31 03:00:00 CEST"]
        );
    }

    #[test]
    fn year_boundaries() {
        let s = schedule("0 0 0 1 1 ? *", "UTC");
        assert_eq!(s.next_after(utc("2025-12-31 23:59:59")), Some(utc("2026-01-01 00:00:00")));
        let s = schedule("59 59 23 31 12 ?", "UTC");
        assert_eq!(next_utc(&s, "2025-12-31 23:59:58", 2), ["2025-12-31 23:59:59", "2026-12-31 23:59:59"]);
        let tokyo = schedule("0 0 0 1 1 ?", "Asia/Tokyo");
        assert_eq!(tokyo.next_after(utc("2025-06-01 00:00:00")), Some(utc("2025-12-31 15:00:00")));
    }

    #[test]
    fn last_day_and_last_weekday_of_the_month() {
        let s = schedule("0 0 12 L * ?", "UTC");
        assert_eq!(next_utc(&s, "2024-02-01 00:00:00", 1), ["2024-02-29 12:00:00"]);
        assert_eq!(next_utc(&s, "2025-02-01 00:00:00", 2), ["2025-02-28 12:00:00", "2025-03-31 12:00:00"]);
        // August 2025 ends on a Sunday: its last weekday is Friday the 29th.
        let s = schedule("0 0 12 LW * ?", "UTC");
        assert_eq!(next_utc(&s, "2025-08-01 00:00:00", 1), ["2025-08-29 12:00:00"]);
    }

    #[test]
    fn nearest_weekday() {
        let s = schedule("0 0 12 15W * ?", "UTC");
        // June 2024: the 15th is a Saturday → Friday the 14th; September 2024: a Sunday → Monday the 16th.
        assert_eq!(next_utc(&s, "2024-06-01 00:00:00", 1), ["2024-06-14 12:00:00"]);
        assert_eq!(next_utc(&s, "2024-09-01 00:00:00", 1), ["2024-09-16 12:00:00"]);
        // A weekday 15th is itself.
        assert_eq!(next_utc(&s, "2025-01-01 00:00:00", 1), ["2025-01-15 12:00:00"]);
    }

    #[test]
    fn nth_and_last_weekday_of_the_month_count_sunday_as_1() {
        // Quartz: 6 = Friday. January 2025's Fridays: 3, 10, 17, 24, 31.
        let third_friday = schedule("0 0 12 ? * 6#3", "UTC");
        assert_eq!(next_utc(&third_friday, "2025-01-01 00:00:00", 2), ["2025-01-17 12:00:00", "2025-02-21 12:00:00"]);
        let last_friday = schedule("0 0 12 ? * 6L", "UTC");
        assert_eq!(next_utc(&last_friday, "2025-01-01 00:00:00", 2), ["2025-01-31 12:00:00", "2025-02-28 12:00:00"]);
        let first_monday = schedule("0 0 9 ? * MON#1", "UTC");
        assert_eq!(next_utc(&first_monday, "2025-08-15 00:00:00", 1), ["2025-09-01 09:00:00"]);
    }

    #[test]
    fn quartz_weekday_numbers_and_names() {
        // 2025-01-01 is a Wednesday.
        let from = "2025-01-01 00:00:00";
        assert_eq!(next_utc(&schedule("0 0 12 ? * 1", "UTC"), from, 1), ["2025-01-05 12:00:00"], "1 = Sunday");
        assert_eq!(next_utc(&schedule("0 0 12 ? * 7", "UTC"), from, 1), ["2025-01-04 12:00:00"], "7 = Saturday");
        assert_eq!(next_utc(&schedule("0 0 12 ? * L", "UTC"), from, 1), ["2025-01-04 12:00:00"], "L alone = Saturday");
        assert_eq!(next_utc(&schedule("0 0 12 ? * SUN", "UTC"), from, 1), ["2025-01-05 12:00:00"]);
        assert_eq!(
            next_utc(&schedule("0 0 9 ? * MON-FRI", "UTC"), "2025-01-03 10:00:00", 2),
            ["2025-01-06 09:00:00", "2025-01-07 09:00:00"],
            "Friday after 9:00 → Monday, Tuesday"
        );
        assert_eq!(
            next_utc(&schedule("0 0 9 ? * 2-6", "UTC"), "2025-01-03 10:00:00", 1),
            ["2025-01-06 09:00:00"],
            "2-6 = Monday to Friday"
        );
        assert!(JobSchedule::new("0 0 12 ? * 0", Tz::UTC).is_err(), "Quartz has no weekday 0");
    }

    #[test]
    fn seconds_and_increments() {
        let s = schedule("*/15 * * * * ?", "UTC");
        assert_eq!(
            next_utc(&s, "2025-01-01 12:00:00", 3),
            ["2025-01-01 12:00:15", "2025-01-01 12:00:30", "2025-01-01 12:00:45"]
        );
        let s = schedule("30 5/20 * * * ?", "UTC");
        assert_eq!(
            next_utc(&s, "2025-01-01 12:00:00", 3),
            ["2025-01-01 12:05:30", "2025-01-01 12:25:30", "2025-01-01 12:45:30"]
        );
        // Fractions of a second do not change the answer.
        let t = utc("2025-01-01 12:00:14") + TimeDelta::milliseconds(999);
        assert_eq!(schedule("*/15 * * * * ?", "UTC").next_after(t), Some(utc("2025-01-01 12:00:15")));
        let t = utc("2025-01-01 12:00:15") + TimeDelta::milliseconds(1);
        assert_eq!(schedule("*/15 * * * * ?", "UTC").next_after(t), Some(utc("2025-01-01 12:00:30")));
    }

    #[test]
    fn question_mark_rules() {
        assert!(JobSchedule::new("0 0 12 * * ?", Tz::UTC).is_ok());
        assert!(JobSchedule::new("0 0 12 ? * *", Tz::UTC).is_ok());
        // As Rundeck reads it: `* *` is every day, `1 *` the first of the month.
        assert_eq!(schedule("0 0 12 * * *", "UTC").expression(), "0 0 12 * * ? *");
        assert_eq!(next_utc(&schedule("0 0 12 1 * *", "UTC"), "2025-01-05 00:00:00", 1), ["2025-02-01 12:00:00"]);
        let both = JobSchedule::new("0 0 12 ? * ?", Tz::UTC).unwrap_err();
        assert!(both.message.contains("not in both"), "{both}");
        let neither = JobSchedule::new("0 0 9 * * MON-FRI", Tz::UTC).unwrap_err();
        assert!(neither.message.contains("cannot both be given"), "{neither}");
        assert!(neither.message.contains("'0 0 9 ? * MON-FRI'"), "the message shows the fix: {neither}");
    }

    #[test]
    fn six_and_seven_fields_and_years() {
        assert_eq!(schedule("0 0 12 * * ?", "UTC").expression(), "0 0 12 * * ? *");
        let in_2030 = schedule("0 0 12 1 1 ? 2030", "UTC");
        assert_eq!(next_utc(&in_2030, "2025-01-01 00:00:00", 1), ["2030-01-01 12:00:00"]);
        assert_eq!(in_2030.next_after(utc("2030-01-01 12:00:00")), None, "no slot after its last year");
        let past = schedule("02 00 06,07,08 ? * * 2010", "UTC");
        assert_eq!(past.next_after(utc("2025-01-01 00:00:00")), None);
        assert!(JobSchedule::new("0 0 12 1 1 ? 2200", Tz::UTC).unwrap_err().message.contains("1970 to 2099"));
        let every_other = schedule("0 0 12 1 1 ? 2026/2", "UTC");
        assert_eq!(next_utc(&every_other, "2025-06-01 00:00:00", 2), ["2026-01-01 12:00:00", "2028-01-01 12:00:00"]);
        // The documented Rundeck example.
        let s = schedule("0 30 */6 ? Jan Mon *", "UTC");
        assert_eq!(next_utc(&s, "2025-01-01 00:00:00", 2), ["2025-01-06 00:30:00", "2025-01-06 06:30:00"]);
    }

    #[test]
    fn a_date_that_never_comes_is_no_slot_and_no_hang() {
        let started = std::time::Instant::now();
        let s = schedule("0 0 0 30 2 ?", "UTC");
        assert_eq!(s.next_after(utc("2025-01-01 00:00:00")), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
    }

    #[test]
    fn invalid_expressions_name_the_field() {
        let cases = [
            ("0 0 12 * *", "6 or 7 fields"),
            ("0 0 25 * * ?", "hours field '25'"),
            ("0 61 * * * ?", "minutes field '61'"),
            ("0 0 12 32 * ?", "day-of-month field '32'"),
            ("0 0 12 ? 13 *", "month field '13'"),
            ("0 0 12 ? * 8", "day-of-week field '8'"),
            ("0 0 12 L-3 * ?", "'L-n'"),
            ("0 0 12 ? * 6#6", "day-of-week field '6#6'"),
            ("0 0 22-2 * * ?", "runs backwards"),
            ("0 0 12 ? * FRI-MON", "day-of-week field 'FRI-MON'"),
            ("0 0 12 * * ? x", "year field 'X' has the character 'X'"),
            ("@daily", "6 or 7 fields"),
            ("0 0 12 * * +MON", "character '+'"),
        ];
        for (expression, expected) in cases {
            let e = JobSchedule::new(expression, Tz::UTC).unwrap_err();
            assert!(e.to_string().contains(expected), "{expression}: {e}");
        }
    }

    #[test]
    fn time_zone_names() {
        assert_eq!(parse_time_zone("Europe/Berlin").unwrap(), Tz::Europe__Berlin);
        assert_eq!(parse_time_zone("UTC").unwrap(), Tz::UTC);
        assert!(parse_time_zone("Mars/Olympus").unwrap_err().contains("unknown time zone 'Mars/Olympus'"));
    }

    #[test]
    fn slots_between_is_exclusive_then_inclusive() {
        let s = schedule("0 0 * * * ?", "UTC");
        let slots: Vec<_> = s.slots_between(utc("2025-01-01 00:00:00"), utc("2025-01-01 03:00:00")).collect();
        assert_eq!(slots, [utc("2025-01-01 01:00:00"), utc("2025-01-01 02:00:00"), utc("2025-01-01 03:00:00")]);
    }

    fn per_second() -> JobSchedule {
        schedule("* * * * * ?", "UTC")
    }

    fn outcomes(plan: &SlotPlan) -> Vec<(String, SlotOutcome)> {
        plan.decisions.iter().map(|d| (d.slot.format("%H:%M:%S").to_string(), d.outcome)).collect()
    }

    #[test]
    fn a_slot_reached_on_time_fires() {
        let s = schedule("0 * * * * ?", "UTC");
        let plan = plan_due_slots(
            &s,
            &MisfirePolicy::default(),
            utc("2025-01-01 12:00:00"),
            utc("2025-01-01 12:01:00") + TimeDelta::milliseconds(40),
            100,
        );
        assert_eq!(outcomes(&plan), [("12:01:00".to_string(), SlotOutcome::Fire)]);
        assert!(plan.complete);
        assert_eq!(plan.handled_through(), Some(utc("2025-01-01 12:01:00")));
    }

    #[test]
    fn nothing_due_is_an_empty_complete_plan() {
        let s = schedule("0 * * * * ?", "UTC");
        let plan =
            plan_due_slots(&s, &MisfirePolicy::default(), utc("2025-01-01 12:00:00"), utc("2025-01-01 12:00:59"), 100);
        assert!(plan.decisions.is_empty() && plan.complete);
        assert_eq!(plan.handled_through(), None);
    }

    #[test]
    fn run_late_runs_the_last_slot_once_within_the_window_and_records_the_rest_missed() {
        let s = schedule("0 * * * * ?", "UTC");
        // Down from 12:00 to 12:10:30: ten slots passed, the last 30 s ago.
        let plan =
            plan_due_slots(&s, &MisfirePolicy::default(), utc("2025-01-01 12:00:00"), utc("2025-01-01 12:10:30"), 100);
        let all: Vec<_> = s.slots_between(utc("2025-01-01 12:00:00"), utc("2025-01-01 12:10:30")).collect();
        assert_eq!(plan.decisions.iter().map(|d| d.slot).collect::<Vec<_>>(), all, "every slot is decided");
        assert_eq!(plan.missed().count(), 9);
        let fires: Vec<_> = plan.fires().collect();
        assert_eq!(fires.len(), 1);
        assert_eq!((fires[0].slot, fires[0].outcome), (utc("2025-01-01 12:10:00"), SlotOutcome::FireLate));
        assert_eq!(fires[0].late_by, Duration::from_secs(30));
    }

    #[test]
    fn a_slot_later_than_the_window_is_missed() {
        let s = schedule("0 0 * * * ?", "UTC");
        let policy = MisfirePolicy { kind: MisfireKind::RunLate, window: Duration::from_secs(60) };
        let plan = plan_due_slots(&s, &policy, utc("2025-01-01 11:59:00"), utc("2025-01-01 12:01:01"), 100);
        assert_eq!(outcomes(&plan), [("12:00:00".to_string(), SlotOutcome::Missed)]);
        let wide = MisfirePolicy { window: Duration::from_secs(600), ..policy };
        let plan = plan_due_slots(&s, &wide, utc("2025-01-01 11:59:00"), utc("2025-01-01 12:01:01"), 100);
        assert_eq!(outcomes(&plan), [("12:00:00".to_string(), SlotOutcome::FireLate)]);
    }

    #[test]
    fn record_missed_never_runs_late() {
        let s = schedule("0 * * * * ?", "UTC");
        let policy = MisfirePolicy { kind: MisfireKind::RecordMissed, window: Duration::from_secs(60) };
        let plan = plan_due_slots(&s, &policy, utc("2025-01-01 12:00:00"), utc("2025-01-01 12:02:30"), 100);
        assert_eq!(
            outcomes(&plan),
            [("12:01:00".to_string(), SlotOutcome::Missed), ("12:02:00".to_string(), SlotOutcome::Missed)]
        );
        // On time is on time under either policy.
        let plan = plan_due_slots(&s, &policy, utc("2025-01-01 12:00:00"), utc("2025-01-01 12:01:02"), 100);
        assert_eq!(outcomes(&plan), [("12:01:00".to_string(), SlotOutcome::Fire)]);
    }

    #[test]
    fn slots_a_few_seconds_behind_all_fire() {
        // A per-second job whose member was held up 3 s by a leader election loses nothing.
        let plan = plan_due_slots(
            &per_second(),
            &MisfirePolicy::default(),
            utc("2025-01-01 12:00:00"),
            utc("2025-01-01 12:00:03"),
            100,
        );
        assert_eq!(plan.decisions.len(), 3);
        assert!(plan.decisions.iter().all(|d| d.outcome == SlotOutcome::Fire));
    }

    #[test]
    fn a_short_window_also_shortens_what_counts_as_on_time() {
        let policy = MisfirePolicy { kind: MisfireKind::RecordMissed, window: Duration::from_secs(1) };
        let plan = plan_due_slots(&per_second(), &policy, utc("2025-01-01 12:00:00"), utc("2025-01-01 12:00:03"), 100);
        assert_eq!(
            plan.decisions.iter().map(|d| d.outcome).collect::<Vec<_>>(),
            [SlotOutcome::Missed, SlotOutcome::Fire, SlotOutcome::Fire],
            "2 s late is more than the 1 s window; 1 s and 0 s are on time"
        );
    }

    #[test]
    fn a_long_outage_is_worked_off_in_batches_and_every_slot_is_decided_once() {
        let s = per_second();
        let policy = MisfirePolicy::default();
        let now = utc("2025-01-01 13:00:00") + TimeDelta::milliseconds(500);
        let mut after = utc("2025-01-01 12:00:00");
        let mut decided = Vec::new();
        let mut calls = 0;
        loop {
            calls += 1;
            let plan = plan_due_slots(&s, &policy, after, now, 1000);
            assert!(plan.decisions.len() <= 1000);
            decided.extend(plan.decisions.iter().copied());
            match (plan.complete, plan.handled_through()) {
                (true, _) => break,
                (false, Some(t)) => after = t,
                (false, None) => panic!("an incomplete plan must decide something"),
            }
        }
        assert_eq!(calls, 4);
        assert_eq!(decided.len(), 3600);
        assert!(decided.windows(2).all(|w| w[1].slot - w[0].slot == TimeDelta::seconds(1)));
        // The last five seconds are on time; everything before is missed.
        assert_eq!(decided.iter().filter(|d| d.outcome == SlotOutcome::Fire).count(), 5);
        assert_eq!(decided.iter().filter(|d| d.outcome == SlotOutcome::Missed).count(), 3595);
    }
}
