//! `kassa-storage`: each partition's segmented, checksummed, append-only log and its snapshot
//! files, written with io_uring. It knows nothing of ledgers: entries and snapshots are bytes.
//!
//! Empty until the durable single node is built; it sits at the bottom of the dependency graph
//! beside `kassa-wire` and depends on no other Kassa crate.
