//! The job engine's replicated core: how jobs, schedules, fires and executions are kept in the
//! replicated KV, and the per-member tasks that act on them.
//!
//! # Layout
//! - [`records`]: the keys and stored records (jobs, owners, fires, executions, indexes).
//! - [`fire`]: the scheduled fire — one guarded transaction per slot, batched per log entry.
//! - [`executions`]: reading and changing execution records (guarded read-modify-write).
//! - [`view`]: executions in Rundeck's JSON shapes.

pub mod executions;
pub mod fire;
pub mod records;
pub mod view;
