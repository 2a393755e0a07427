//! steward: a job scheduler and runbook-automation server whose cluster needs no external
//! database. Every member keeps the whole state in an embedded store and the members agree on
//! it through Raft.
//!
//! # Layout
//! - [`server`]: starting a member (listeners, data dir, Raft, servers; creating or joining a
//!   cluster) and stopping it. [`server::Server::start`] is what tests run in-process.
//! - [`api`]: the HTTP API in Rundeck's paths and shapes, with the one error mapping.
//! - [`auth`]: who is calling: API tokens (stored hashed), users (argon2), browser sessions.
//! - [`acl`]: Rundeck's `.aclpolicy` policies and the decisions they make.
//! - [`keys`]: key storage, sealed under the master key before a write is proposed; the
//!   resolve and mask functions the job engine uses.
//! - [`config`]: the typed configuration (flags, `STEWARD_*` variables, TOML file).
//! - [`datadir`]: what a member keeps in its data dir besides the store.
//! - [`exec`]: the executor: one execution's steps as local processes, independent of Raft.
//! - [`logs`]: the execution log store (local directory or S3-compatible bucket), outside Raft.
//! - [`cli`]: the `steward` command line (`serve`, `cluster join|leave|status`, `bench`).
//! - [`bench`]: the write benchmark behind `steward bench`.
//! - [`engine`]: the job engine's replicated core (fires, executions) and its member tasks.
//! - [`codec`]: the versioned encoding of stored records.
//! - [`jobs`]: the job definition format, run-time options and schedules (no cluster state).
//! - [`placement`]: which member runs an execution (Rundeck's remote execution policy; pure).
//! - [`tasks`]: stopping a member's background tasks within a deadline.
//!
//! The replicated store is in the `steward-storage` crate and the Raft layer in `steward-raft`;
//! `ARCHITECTURE.md` at the repository root says what goes where and why.

pub mod acl;
pub mod api;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod datadir;
pub mod engine;
pub mod exec;
pub mod jobs;
pub mod keys;
pub mod logs;
pub mod placement;
pub mod secret;
pub mod server;
pub mod tasks;
