//! The job engine's pure parts: the job definition format, run-time options and schedules.
//! Nothing here touches the cluster, the store or a clock; the scheduler, the execution records
//! and the job API build on these modules.
//!
//! # Layout
//! - [`definition`]: Rundeck's job definition format in YAML and JSON: [`parse_jobs`] reads an
//!   import document job by job (a bad job does not stop the others), [`JobDefinition::validate`]
//!   checks a job, [`export_jobs`] writes a document Rundeck can import. Fields steward does not
//!   act on are kept and exported again.
//! - [`options`]: a run request's `argString` and `options`, resolved against the job's options
//!   (defaults, required, allowed values, regex, multivalued, secure values and key storage
//!   markers), and the `RD_OPTION_*` variables.
//! - [`schedule`]: Quartz cron in the job's time zone ([`JobSchedule`]) with its daylight-saving
//!   rules, and [`plan_due_slots`], which decides for every due slot whether it fires or is
//!   recorded as missed.
//! - [`duration`]: Rundeck's duration syntax (`120`, `30s`, `1h30m`).
//! - `yaml`: the YAML writer behind [`export_jobs`], safe for YAML 1.1 readers like Rundeck's.

pub mod definition;
pub mod duration;
pub mod options;
pub mod schedule;
mod yaml;

pub use definition::{export_jobs, parse_jobs, DocumentError, FieldProblem, JobDefinition, JobError, JobFormat};
pub use options::{collect_inputs, resolve_options, OptionErrors, ResolvedOptions};
pub use schedule::{plan_due_slots, JobSchedule, MisfireKind, MisfirePolicy, SlotOutcome, SlotPlan};
