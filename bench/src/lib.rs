//! `kassa-bench`: Kassa's benchmarks.
//!
//! - `workload`: the ledger micro-benchmark's workload (`benches/ledger.rs`).
//! - The node benchmark, binary `kassa-bench` (`src/main.rs`): `plan` (the seeded workload both
//!   systems get), `load` (the driver: clients with one request in flight, HDR latencies),
//!   `kassa` (the node through the wire client) and `node_process` (a throw-away `kassa`),
//!   `postgres` (a baseline: a throw-away cluster and the same ledger in SQL), `tigerbeetle`
//!   (a baseline: a throw-away replica, driven through `kassa`'s client code), `results`,
//!   `verify` (the end-of-run checks), `machine` (cores, memory, flush latency) and `report`.

pub mod kassa;
pub mod load;
pub mod machine;
pub mod node_process;
pub mod plan;
pub mod postgres;
pub mod report;
pub mod results;
pub mod tigerbeetle;
pub mod verify;
pub mod workload;
