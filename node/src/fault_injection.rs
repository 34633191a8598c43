//! Fault injection for the crash tests, compiled only with the `fault-injection` feature
//! (which the node's own tests turn on; a release build has none of it).
//!
//! `KASSA_FAULT=<fault>`: `abort-after-decide` aborts the process right after a
//! cross-partition decision is durable, before anyone was answered or any other partition
//! applied it; `abort-after-answer` aborts once the clients had their answers, before the
//! applies; `decide-write-fails` reports a durable decision's write as failed;
//! `apply-fails` reports the applies after a decision as failed; `abort-before-answer-recorded`
//! aborts after a wire client got a reply sealed in a ledger's partition, before its session
//! partition recorded it; `hold-partition` holds ledger 1's partition with the intent of a
//! transaction its home never began, from before the node is ready, for the rare path's
//! recovery to release (`cores::hold_partition`); `abort-after-commit` aborts the process
//! when a batch run in shares has committed (its stage and every intent durable), before
//! its client is answered or any participant told (`rare_path`); `fill-in-flight` takes
//! every core's in-flight slots, as requests all waiting would, from when the file
//! `fill-in-flight` appears in the data directory until `release-in-flight` does
//! (`cores::fill_in_flight`).

/// Whether `KASSA_FAULT` names `fault`; always `false` without the `fault-injection` feature.
#[cfg(feature = "fault-injection")]
pub fn injected(fault: &str) -> bool {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    FAULT
        .get_or_init(|| std::env::var("KASSA_FAULT").ok())
        .as_deref()
        == Some(fault)
}

/// Whether `KASSA_FAULT` names `fault`; always `false` without the `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
pub fn injected(_fault: &str) -> bool {
    false
}
