//! Coverage statistics, printed with `KASSA_MODEL_STATS=1`: how often each result status and
//! each kind of outcome occurred over a run, to check that the generator reaches every path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static ENABLED: AtomicBool = AtomicBool::new(false);
static COUNTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Counts one occurrence of `key` (only when enabled).
pub fn note(key: impl FnOnce() -> String) {
    if ENABLED.load(Ordering::Relaxed) {
        *COUNTS.lock().expect("stats lock").entry(key()).or_default() += 1;
    }
}

pub fn print() {
    for (key, count) in COUNTS.lock().expect("stats lock").iter() {
        eprintln!("{count:>9}  {key}");
    }
}
