//! steward's integration tests, in one binary on the `TestCluster` fixture: in-process members
//! (`cluster`, `api`) and real `steward` processes (`process`).

mod api;
mod cluster;
mod fixture;
mod process;
