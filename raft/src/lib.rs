//! `kassa-raft`: every partition as a Raft group whose log is `kassa-storage`'s and whose state
//! machine is `kassa-shard`'s ledger. All Raft library types stay inside this crate.
//!
//! Empty until the durable single node is built; its dependencies already point the way the
//! house rules require (it joins `shard` and `storage`, and nothing below depends on it).
