//! steward's integration tests, in one binary on the `TestCluster` fixture: in-process members
//! (`cluster`, `api`, `keys`, `authz`) and real `steward` processes (`process`, `tls`).

mod api;
mod authz;
mod cluster;
mod fixture;
mod keys;
mod process;
mod tls;
