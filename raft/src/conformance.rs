//! openraft's own storage conformance suite (`openraft::testing::log::Suite`), run against
//! [`LogStore`] and [`StateMachine`] on `kassa-storage` and a real io_uring runtime: every
//! case gets a fresh partition directory. Test-only.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use kassa_shard::LedgerConfig;
use kassa_storage::LogOptions;
use openraft::errors::ErrorSource;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;

use crate::log_store::LogStore;
use crate::state_machine::StateMachine;
use crate::types::TypeConfig;

/// Makes a fresh directory per store under the build's temporary directory.
struct Builder {
    base: PathBuf,
    next: AtomicU64,
}

/// Removes a store's directory once the case is done.
struct Guard(PathBuf);

impl Drop for Guard {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn build_error(error: crate::PartitionError) -> StorageError<TypeConfig> {
    StorageError::read(openraft::impls::BoxedErrorSource::from_string(error))
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Guard> for Builder {
    async fn build(&self) -> Result<(Guard, LogStore, StateMachine), StorageError<TypeConfig>> {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.base.join(format!("store-{number}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("store directory");
        let alive = Rc::new(());
        let (store, _) = LogStore::open(0, &dir, LogOptions::default())
            .await
            .map_err(build_error)?;
        let state_machine = StateMachine::open(
            0,
            &dir,
            LedgerConfig::default(),
            crate::CACHE_BLOCKS_DEFAULT,
            crate::memory::MemtableGauge::unbounded(),
            alive,
        )
        .await
        .map_err(build_error)?;
        Ok((Guard(dir), store, state_machine))
    }
}

#[test]
fn openraft_storage_suite() {
    let base = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/tmp"))
        .join(format!("kassa-raft-conformance-{}", std::process::id()));
    let builder = Builder {
        base: base.clone(),
        next: AtomicU64::new(0),
    };
    let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime");
    let result = runtime.block_on(Suite::test_all(builder));
    if let Err(error) = result {
        panic!("openraft's storage suite failed: {error}");
    }
    let _ = std::fs::remove_dir_all(base);
}
