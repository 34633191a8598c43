//! `kassa-bench`: workloads for Kassa's benchmarks.
