//! openraft's own storage conformance suite, run against the sled store.

use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, StorageError, StorageIOError};
use tempfile::TempDir;

use crate::common::{options, Log, Sm, TestConfig};

/// Builds a fresh store in a new temporary directory; the guard removes the directory.
struct TempStoreBuilder;

impl StoreBuilder<TestConfig, Log, Sm, TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(TempDir, Log, Sm), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let (log, sm) = steward_storage::open::<TestConfig>(dir.path(), options())
            .map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    // `Suite` runs each case on its own multi-thread tokio runtime.
    if let Err(e) = Suite::test_all(TempStoreBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}
