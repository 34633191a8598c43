//! `GET /metrics`: what the node holds and did, in Prometheus' text format (version 0.0.4),
//! for a scraper or `curl`. Memory first (the bound, what the memtables and caches use, the
//! process's resident size), then per partition: Raft progress, records, memtable, the
//! cache of cold blocks, and the runs of each keyspace with their bytes on disk and in
//! memory (docs/storage.md, "Memory bound"; docs/node.md, "Metrics").
//!
//! The partitions' numbers come from their cores; the bytes on disk and the resident size
//! are read here, on the HTTP runtime's blocking pool, so a scrape never makes a core (or
//! the HTTP thread) wait on the file system. The cache counters start again from 0 when a
//! partition installs a checkpoint (it gets a new cache with the new runs).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use kassa_raft::{MemoryBudget, PartitionMetrics};

use super::{Api, ApiError};
use crate::config::{MemoryPlan, CACHE_BLOCK_SIZE};

/// What `/metrics` reports beside the partitions: how the node spends its memory bound.
pub struct NodeMemory {
    pub data_dir: PathBuf,
    pub plan: MemoryPlan,
    pub budget: Arc<MemoryBudget>,
}

/// The content type of Prometheus' text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(State(api): State<Arc<Api>>) -> Result<impl IntoResponse, ApiError> {
    let service = &api.service;
    let mut partitions = Vec::with_capacity(service.partitions() as usize);
    for partition in 0..service.partitions() {
        partitions.push(service.cores.metrics(partition).await?);
    }
    let data_dir = api.memory.data_dir.clone();
    let numbers: Vec<u32> = partitions.iter().map(|m| m.status.partition).collect();
    let read = move || (disk_use(&data_dir, &numbers), resident_bytes());
    let (disk, resident) = tokio::task::spawn_blocking(read).await.unwrap_or_default();
    let text = render(&api.memory, &partitions, &disk, resident);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text))
}

/// Bytes on disk of one partition's directory: every file, and each by its name (run files'
/// names are unique in it).
#[derive(Debug, Default)]
struct PartitionDisk {
    total: u64,
    files: BTreeMap<String, u64>,
}

/// What each partition's directory holds on disk; a directory that cannot be read counts
/// what could be.
fn disk_use(data_dir: &Path, partitions: &[u32]) -> Vec<PartitionDisk> {
    partitions
        .iter()
        .map(|partition| {
            let mut disk = PartitionDisk::default();
            add_dir(
                &crate::meta::partition_dir(data_dir, *partition),
                &mut disk,
                0,
            );
            disk
        })
        .collect()
}

fn add_dir(dir: &Path, disk: &mut PartitionDisk, depth: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if metadata.is_dir() && depth < 2 {
            add_dir(&entry.path(), disk, depth + 1);
        } else if metadata.is_file() {
            disk.total += metadata.len();
            let name = entry.file_name().to_string_lossy().into_owned();
            disk.files.insert(name, metadata.len());
        }
    }
}

/// The process's resident set in bytes (`/proc/self/statm`), if it can be read.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// The exposition, one metric family after another.
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: u64) {
        if labels.is_empty() {
            let _ = writeln!(self.text, "{name} {value}");
        } else {
            let _ = writeln!(self.text, "{name}{{{labels}}} {value}");
        }
    }

    /// A family with one sample per partition.
    fn per_partition(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        partitions: &[PartitionMetrics],
        value: impl Fn(&PartitionMetrics) -> u64,
    ) {
        self.family(name, kind, help);
        for metrics in partitions {
            let labels = format!("partition=\"{}\"", metrics.status.partition);
            self.sample(name, &labels, value(metrics));
        }
    }
}

/// A family with one sample per partition: name, type, help, and the value.
type PerPartition = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PartitionMetrics) -> u64,
);

const GAUGE: &str = "gauge";
const COUNTER: &str = "counter";

const PER_PARTITION: [PerPartition; 18] = [
    (
        "kassa_partition_leader",
        GAUGE,
        "1 while the partition leads its Raft group.",
        |m| u64::from(m.status.leader),
    ),
    (
        "kassa_partition_failed",
        GAUGE,
        "1 once a fault stopped the partition: it serves nothing until a restart.",
        |m| u64::from(m.failed),
    ),
    (
        "kassa_partition_term",
        GAUGE,
        "The partition's Raft term.",
        |m| m.status.term,
    ),
    (
        "kassa_partition_applied_index",
        GAUGE,
        "The last log index applied.",
        |m| m.status.applied_index.unwrap_or(0),
    ),
    (
        "kassa_partition_checkpoint_index",
        GAUGE,
        "The last log index the latest checkpoint covers.",
        |m| m.status.snapshot_index.unwrap_or(0),
    ),
    (
        "kassa_partition_checkpoint_number",
        GAUGE,
        "The last durable checkpoint's number (0: none yet).",
        |m| m.store.checkpoint.unwrap_or(0),
    ),
    ("kassa_partition_accounts", GAUGE, "Accounts stored.", |m| {
        m.accounts
    }),
    (
        "kassa_partition_transfers",
        GAUGE,
        "Transfers stored, in memory or on disk.",
        |m| m.transfers,
    ),
    (
        "kassa_partition_transfers_in_memory",
        GAUGE,
        "Transfers in memory: those since the last durable checkpoint, and the pending ones.",
        |m| m.transfers_in_memory,
    ),
    (
        "kassa_partition_memtable_bytes",
        GAUGE,
        "What the partition's memory holds until its next durable checkpoint.",
        |m| m.memtable_bytes,
    ),
    (
        "kassa_partition_memory_checkpoint_asks_total",
        COUNTER,
        "Checkpoints asked for because the node was past its memtable limit.",
        |m| m.memory_checkpoint_asks,
    ),
    (
        "kassa_partition_memory_waits_total",
        COUNTER,
        "Writes that waited for a checkpoint because the node's memtables held more than twice their limit.",
        |m| m.memory_waits,
    ),
    (
        "kassa_cache_hits_total",
        COUNTER,
        "Cold run blocks found in the partition's cache.",
        |m| m.store.cache.hits,
    ),
    (
        "kassa_cache_misses_total",
        COUNTER,
        "Cold run blocks read from disk with a blocking read.",
        |m| m.store.cache.misses,
    ),
    (
        "kassa_cache_blocks",
        GAUGE,
        "Blocks the partition's cache holds.",
        |m| m.store.cache.blocks as u64,
    ),
    (
        "kassa_cache_capacity_blocks",
        GAUGE,
        "Blocks the partition's cache may hold.",
        |m| m.store.cache.capacity as u64,
    ),
    (
        "kassa_cold_prefetched_blocks_total",
        COUNTER,
        "Cold run blocks read ahead of applies and client reads through io_uring.",
        |m| m.status.cold_prefetched_blocks,
    ),
    (
        "kassa_cold_blocking_reads_total",
        COUNTER,
        "Cold run blocks applies read with a blocking read.",
        |m| m.status.cold_blocking_reads,
    ),
];

fn render(
    memory: &NodeMemory,
    partitions: &[PartitionMetrics],
    disk: &[PartitionDisk],
    resident: Option<u64>,
) -> String {
    let mut out = Exposition {
        text: String::new(),
    };
    let node = [
        (
            "kassa_memory_limit_bytes",
            "The node's memory bound (--memory).",
            memory.plan.memory,
        ),
        (
            "kassa_memtable_limit_bytes",
            "Memtable bytes over all partitions past which they checkpoint.",
            memory.budget.limit(),
        ),
        (
            "kassa_memtable_bytes",
            "What the partitions' memtables hold until their next durable checkpoint.",
            memory.budget.used(),
        ),
        (
            "kassa_checkpoints_writing",
            "Checkpoints the partitions are writing now: writes waiting for memory wait on \
             while one is.",
            memory.budget.checkpoints_writing(),
        ),
        (
            "kassa_cache_limit_bytes",
            "Bytes the partitions' caches of cold run blocks may hold, together.",
            memory.plan.cache_blocks as u64 * CACHE_BLOCK_SIZE * partitions.len() as u64,
        ),
        (
            "kassa_run_pages_limit_bytes",
            "Bytes of index and filter pages the partitions' runs may keep, together; past it, \
             pages are read through the caches of cold run blocks.",
            memory.budget.pages().limit() as u64,
        ),
        (
            "kassa_run_pages_bytes",
            "Bytes of index and filter pages the partitions' runs keep.",
            memory.budget.pages().used() as u64,
        ),
    ];
    for (name, help, value) in node {
        out.family(name, "gauge", help);
        out.sample(name, "", value);
    }
    if let Some(resident) = resident {
        let name = "kassa_resident_bytes";
        out.family(name, "gauge", "The process's resident set size.");
        out.sample(name, "", resident);
    }
    for (name, kind, help, value) in PER_PARTITION {
        out.per_partition(name, kind, help, partitions, value);
    }
    let disk_of = |at: usize| disk.get(at);
    out.family(
        "kassa_partition_disk_bytes",
        "gauge",
        "Bytes of every file in the partition's directory: log, runs, manifest.",
    );
    for (at, metrics) in partitions.iter().enumerate() {
        let labels = format!("partition=\"{}\"", metrics.status.partition);
        let total = disk_of(at).map_or(0, |disk| disk.total);
        out.sample("kassa_partition_disk_bytes", &labels, total);
    }
    let keyspaces: [(&str, &str); 4] = [
        (
            "kassa_store_runs",
            "Runs of the keyspace the last durable checkpoint names.",
        ),
        ("kassa_store_keys", "Keys in those runs."),
        ("kassa_store_bytes", "Bytes of those runs on disk."),
        (
            "kassa_store_memory_bytes",
            "Bytes of those runs' indexes and filters in memory.",
        ),
    ];
    for (family, (name, help)) in keyspaces.into_iter().enumerate() {
        out.family(name, "gauge", help);
        for (at, metrics) in partitions.iter().enumerate() {
            for keyspace in &metrics.store.keyspaces {
                let value = match family {
                    0 => keyspace.runs,
                    1 => keyspace.keys,
                    2 => {
                        let files = disk_of(at).map(|disk| &disk.files);
                        let size = |file: &String| files.and_then(|f| f.get(file)).copied();
                        keyspace.files.iter().filter_map(size).sum()
                    }
                    _ => keyspace.memory_bytes,
                };
                let labels = format!(
                    "partition=\"{}\",keyspace=\"{}\"",
                    metrics.status.partition, keyspace.keyspace
                );
                out.sample(name, &labels, value);
            }
        }
    }
    out.text
}
