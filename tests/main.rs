//! steward's integration tests, in one binary on the `TestCluster` fixture: in-process members
//! (`cluster`, `api`) and real `steward` processes (`process`); the executor (`exec`) and the
//! log store on the local filesystem and on an S3-compatible server (`logs`).
//! (`cluster`, `api`, `keys`, `authz`) and real `steward` processes (`process`, `tls`).

mod api;
mod authz;
mod cluster;
mod exec;
mod fixture;
mod jobs;
mod keys;
mod logs;
mod process;
mod takeover;
mod tls;
