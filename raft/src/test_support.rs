//! Helpers of this crate's unit tests: a temporary directory removed on drop, an io_uring
//! runtime, and a ledger's snapshot bytes for comparisons. Test-only.

use std::path::{Path, PathBuf};

use kassa_shard::Ledger;

/// A fresh directory under the system's temporary directory, removed on drop.
pub(crate) struct TestDir(PathBuf);

impl TestDir {
    pub(crate) fn new(name: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("kassa-raft-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test directory");
        TestDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A monoio runtime on io_uring with timers.
pub(crate) fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>> {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime")
}

/// The ledger's snapshot bytes: equal bytes, equal state.
pub(crate) fn snapshot_of(ledger: &Ledger) -> Vec<u8> {
    let mut bytes = Vec::new();
    ledger.snapshot(&mut bytes);
    bytes
}
