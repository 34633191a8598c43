//! `kassa-bench`: workloads for Kassa's benchmarks.
//!
//! For now: the ledger micro-benchmark's workload (random transfers among a fixed set of
//! accounts), generated from a seed so every run measures the same transfers. The node-level
//! benchmark against PostgreSQL will drive a running node through the wire client.

pub mod workload;
