//! Integration tests of steward-storage, in one binary to keep build time down.
//!
//! - `conformance`: openraft's storage conformance suite.
//! - `state_machine`: transaction semantics, the change feed, snapshots and reopening.
//! - `crash`: kills a writer process with SIGKILL many times and checks what survived.

mod blob;
mod common;
mod conformance;
mod crash;
mod state_machine;
