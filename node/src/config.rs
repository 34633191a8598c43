//! The node's configuration: an embedded default, a TOML file over it, flags over both.
//!
//! With no file and no flags, `kassa start` runs one node with its data in `./kassa-data`,
//! HTTP on 127.0.0.1:8080, TigerBeetle's client protocol on 127.0.0.1:3000, cluster id 0 and
//! one core thread per CPU. Unknown keys in the file are errors, so a typo never silently
//! leaves a default in force.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Partitions a data directory gets when `kassa format` is not told otherwise.
pub const PARTITIONS_DEFAULT: u32 = 16;
/// How a new data directory places records when not told otherwise: by ledger, so that a
/// batch of one ledger runs in one partition (`docs/transactions.md`; the measurements that
/// chose it are in BENCHMARKS.md, "The default placement"). A directory formatted before
/// placements existed reads as placed by id.
pub const PLACEMENT_DEFAULT: kassa_shard::PlacementKind = kassa_shard::PlacementKind::ByLedger;
pub use kassa_shard::limits::PARTITIONS_MAX;
/// Most core threads a node runs.
pub const CORES_MAX: usize = 256;
/// What a node's memory bound is when not told otherwise (`memory`).
pub const MEMORY_DEFAULT: u64 = 4 << 30;
/// The smallest memory bound a node takes.
pub const MEMORY_MIN: u64 = 64 << 20;
/// The largest: 16 TiB.
pub const MEMORY_MAX: u64 = 16 << 40;
/// The fewest blocks a partition's cache of cold runs holds, however small `cache_bytes`.
pub const CACHE_BLOCKS_MIN: usize = 16;
/// Bytes of one cached block.
pub const CACHE_BLOCK_SIZE: u64 = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the node keeps its partitions' logs and snapshots.
    pub data_dir: PathBuf,
    /// The HTTP API's listen address.
    pub http_address: SocketAddr,
    /// The wire port's listen address: TigerBeetle 0.17's client protocol.
    pub wire_address: SocketAddr,
    /// Core threads; 0 means one per CPU.
    pub cores: usize,
    /// Take a partition snapshot after this many log entries (or after 512 MiB of log,
    /// whichever comes first).
    pub snapshot_entries: u64,
    /// The node's bound on what grows with its ledgers' history: the memtables (everything
    /// since each partition's last durable checkpoint) and the cache of cold blocks
    /// (`docs/storage.md`, "Memory bound"). Bytes, or a size such as "4GiB".
    pub memory: ByteSize,
    /// Bytes of cold run blocks cached, over all partitions; 0: an eighth of `memory`.
    pub cache_bytes: ByteSize,
    /// Bytes of the runs' index and filter pages kept in memory, over all partitions; past
    /// it, pages are read through the caches of cold blocks. 0: an eighth of `memory`.
    pub pages_bytes: ByteSize,
    /// HTTP connections served at once; one more is answered 503 and closed.
    pub http_connections_max: usize,
    /// How long an HTTP connection may wait between requests (or before its first).
    pub http_idle_timeout_ms: u64,
    /// How long a request's headers may take once its first byte arrived.
    pub http_header_timeout_ms: u64,
    /// How long a request's body may take once its headers arrived.
    pub http_body_timeout_ms: u64,
    /// How long a response may wait for the client to read it.
    pub http_write_timeout_ms: u64,
    /// Wire connections served at once; one more is closed at once.
    pub wire_connections_max: usize,
    /// How long a wire connection may go without sending a frame. TigerBeetle's clients ping
    /// while idle, so only dead or stalled ones reach it.
    pub wire_idle_timeout_ms: u64,
    /// How long a frame may take to arrive, header and body, once its first byte arrived.
    pub wire_frame_timeout_ms: u64,
    /// How long a reply may wait for the client to read it.
    pub wire_write_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("kassa-data"),
            http_address: SocketAddr::from(([127, 0, 0, 1], 8080)),
            wire_address: SocketAddr::from(([127, 0, 0, 1], 3000)),
            cores: 0,
            snapshot_entries: 100_000,
            memory: ByteSize(MEMORY_DEFAULT),
            cache_bytes: ByteSize(0),
            pages_bytes: ByteSize(0),
            http_connections_max: 4096,
            http_idle_timeout_ms: 60_000,
            http_header_timeout_ms: 10_000,
            http_body_timeout_ms: 30_000,
            http_write_timeout_ms: 30_000,
            wire_connections_max: 4096,
            wire_idle_timeout_ms: 300_000,
            wire_frame_timeout_ms: 10_000,
            wire_write_timeout_ms: 30_000,
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cores = {0}: a node runs 1 to {CORES_MAX} core threads")]
    Cores(usize),
    #[error("snapshot_entries must be at least 1")]
    SnapshotEntries,
    #[error("memory = {0}: must be {min} to {max}", min = ByteSize(MEMORY_MIN), max = ByteSize(MEMORY_MAX))]
    Memory(ByteSize),
    #[error("cache_bytes = {cache}: must be at most half of memory ({memory})")]
    CacheBytes { cache: ByteSize, memory: ByteSize },
    #[error("pages_bytes = {pages}: must be at most half of memory ({memory})")]
    PagesBytes { pages: ByteSize, memory: ByteSize },
    #[error(
        "caches of {cache} and pages of {pages} together take more than three quarters of \
         memory ({memory})"
    )]
    CacheAndPages {
        cache: ByteSize,
        pages: ByteSize,
        memory: ByteSize,
    },
    #[error(
        "memory = {memory} is too small for {partitions} partitions: their caches alone take \
         {cache} (at least {CACHE_BLOCKS_MIN} blocks of 4KiB each), more than half of it"
    )]
    MemoryForPartitions {
        memory: ByteSize,
        partitions: u64,
        cache: ByteSize,
    },

    #[error("{name} = {value}: must be 1 to {max}")]
    OutOfRange {
        name: &'static str,
        value: u64,
        max: u64,
    },
}

/// Longest timeout a setting takes: a day.
pub const TIMEOUT_MS_MAX: u64 = 24 * 60 * 60 * 1000;
/// Most connections a listener takes (each is a file descriptor).
pub const CONNECTIONS_MAX: usize = 1 << 20;

impl Config {
    /// The configuration in the TOML file at `path`, over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: error.to_string(),
        })
    }

    /// Core threads to run: the configured number, or one per CPU.
    pub fn cores_resolved(&self) -> Result<usize, ConfigError> {
        let cores = if self.cores == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.cores
        };
        if !(1..=CORES_MAX).contains(&cores) {
            return Err(ConfigError::Cores(cores));
        }
        if self.snapshot_entries == 0 {
            return Err(ConfigError::SnapshotEntries);
        }
        self.check_limits()?;
        self.memory_plan(1)?;
        Ok(cores)
    }

    /// How `memory` is spent on a node of `partitions` partitions: an eighth (or
    /// `cache_bytes`) on caches of cold blocks, split evenly; of the rest, a quarter for the
    /// memtables. An eighth (or `pages_bytes`) bounds the runs' index and filter pages kept,
    /// node-wide. The rest is the memtables' slack and everything else: a memtable is held
    /// about twice while its checkpoint is written (the one being written, the next filling),
    /// the allocator keeps some of what checkpoints free, and a node holds about 110 MB
    /// before any record (BENCHMARKS.md, "A memory bound"); then accounts and connections.
    pub fn memory_plan(&self, partitions: u32) -> Result<MemoryPlan, ConfigError> {
        let memory = self.memory.0;
        if !(MEMORY_MIN..=MEMORY_MAX).contains(&memory) {
            return Err(ConfigError::Memory(self.memory));
        }
        let cache = match self.cache_bytes.0 {
            0 => memory / 8,
            cache if cache <= memory / 2 => cache,
            _ => {
                return Err(ConfigError::CacheBytes {
                    cache: self.cache_bytes,
                    memory: self.memory,
                })
            }
        };
        let pages = match self.pages_bytes.0 {
            0 => memory / 8,
            pages if pages <= memory / 2 => pages,
            _ => {
                return Err(ConfigError::PagesBytes {
                    pages: self.pages_bytes,
                    memory: self.memory,
                })
            }
        };
        if cache.saturating_add(pages) > memory / 4 * 3 {
            return Err(ConfigError::CacheAndPages {
                cache: ByteSize(cache),
                pages: ByteSize(pages),
                memory: self.memory,
            });
        }
        let partitions = u64::from(partitions.max(1));
        let cache_blocks = (cache / CACHE_BLOCK_SIZE / partitions).max(CACHE_BLOCKS_MIN as u64);
        // Each partition caches at least `CACHE_BLOCKS_MIN` blocks, whatever the share.
        let cache = cache_blocks * CACHE_BLOCK_SIZE * partitions;
        if cache > memory / 2 {
            return Err(ConfigError::MemoryForPartitions {
                memory: self.memory,
                partitions,
                cache: ByteSize(cache),
            });
        }
        Ok(MemoryPlan {
            memory,
            cache_blocks: cache_blocks as usize,
            memtable_limit: (memory - cache) / 4,
            pages_limit: pages,
        })
    }

    /// Every connection cap and timeout is at least 1 and at most its maximum.
    fn check_limits(&self) -> Result<(), ConfigError> {
        let connections = [
            ("http_connections_max", self.http_connections_max),
            ("wire_connections_max", self.wire_connections_max),
        ];
        for (name, value) in connections {
            check(name, value as u64, CONNECTIONS_MAX as u64)?;
        }
        let timeouts = [
            ("http_idle_timeout_ms", self.http_idle_timeout_ms),
            ("http_header_timeout_ms", self.http_header_timeout_ms),
            ("http_body_timeout_ms", self.http_body_timeout_ms),
            ("http_write_timeout_ms", self.http_write_timeout_ms),
            ("wire_idle_timeout_ms", self.wire_idle_timeout_ms),
            ("wire_frame_timeout_ms", self.wire_frame_timeout_ms),
            ("wire_write_timeout_ms", self.wire_write_timeout_ms),
        ];
        for (name, value) in timeouts {
            check(name, value, TIMEOUT_MS_MAX)?;
        }
        Ok(())
    }
}

/// How a node spends its memory bound ([`Config::memory_plan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    pub memory: u64,
    /// Blocks of each partition's cache of cold runs.
    pub cache_blocks: usize,
    /// Memtable bytes over all partitions past which they checkpoint.
    pub memtable_limit: u64,
    /// Bytes of index and filter pages the runs of all partitions keep.
    pub pages_limit: u64,
}

/// A size in bytes, written as a number of bytes or with a binary unit: `"4096B"`, `"4GiB"`,
/// `"512 MiB"`, `"64M"` (K, M, G and T are powers of 1024, as KiB, MiB, GiB and TiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let bad = || {
            format!(
                "{text:?} is not a size: a whole number of bytes, with B, KiB, MiB, GiB or \
                 TiB (or K, M, G, T) if any"
            )
        };
        let number: u64 = number.parse().map_err(|_| bad())?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kib" => 10,
            "m" | "mib" => 20,
            "g" | "gib" => 30,
            "t" | "tib" => 40,
            _ => return Err(bad()),
        };
        let bytes = number.checked_mul(1u64 << shift).ok_or_else(bad)?;
        Ok(ByteSize(bytes))
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
        for (shift, unit) in UNITS {
            let size = 1u64 << shift;
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
        struct Size;
        impl serde::de::Visitor<'_> for Size {
            type Value = ByteSize;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size: a whole number of bytes, or a string such as \"4GiB\"")
            }

            fn visit_u64<E: serde::de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(bytes))
            }

            fn visit_i64<E: serde::de::Error>(self, bytes: i64) -> Result<ByteSize, E> {
                u64::try_from(bytes)
                    .map(ByteSize)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(bytes), &self))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ByteSize, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Size)
    }
}

fn check(name: &'static str, value: u64, max: u64) -> Result<(), ConfigError> {
    if (1..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange { name, value, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_override_defaults_and_unknown_keys_are_refused() {
        let config: Config =
            toml::from_str("http_address = \"127.0.0.1:9000\"\ncores = 2\n").expect("valid config");
        assert_eq!(
            config.http_address,
            SocketAddr::from(([127, 0, 0, 1], 9000))
        );
        assert_eq!(config.cores, 2);
        assert_eq!(config.data_dir, PathBuf::from("kassa-data"));
        assert!(toml::from_str::<Config>("http_adress = \"127.0.0.1:9000\"").is_err());
        assert!(toml::from_str::<Config>("cores = \"two\"").is_err());
    }

    #[test]
    fn sizes_take_bytes_or_binary_units() {
        let parse = |text: &str| text.parse::<ByteSize>().map(|size| size.0);
        assert_eq!(parse("4096"), Ok(4096));
        assert_eq!(parse("4GiB"), Ok(4 << 30));
        assert_eq!(parse("512 MiB"), Ok(512 << 20));
        assert_eq!(parse("64m"), Ok(64 << 20));
        assert_eq!(parse("1T"), Ok(1 << 40));
        for bad in [
            "",
            "GiB",
            "4 GB",
            "-1",
            "4.5GiB",
            "99999999999999999999",
            "16777216TiB",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ByteSize(4 << 30).to_string(), "4GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        let config: Config =
            toml::from_str("memory = \"1GiB\"\ncache_bytes = 1048576\npages_bytes = \"2MiB\"\n")
                .expect("valid");
        assert_eq!((config.memory.0, config.cache_bytes.0), (1 << 30, 1 << 20));
        assert_eq!(config.pages_bytes.0, 2 << 20);
        assert!(toml::from_str::<Config>("memory = \"lots\"").is_err());
        let negative = toml::from_str::<Config>("memory = -1").expect_err("negative");
        assert!(
            negative.to_string().contains("a whole number of bytes"),
            "{negative}"
        );
        let fraction = toml::from_str::<Config>("memory = 1.5").expect_err("a fraction");
        assert!(
            fraction.to_string().contains("a whole number of bytes"),
            "{fraction}"
        );
    }

    #[test]
    fn memory_is_split_between_caches_and_memtables_and_checked() {
        let plan = Config::default().memory_plan(16).expect("the default plan");
        assert_eq!(plan.memory, 4 << 30);
        assert_eq!(plan.cache_blocks, (512 << 20) / 4096 / 16);
        assert_eq!(plan.memtable_limit, (3584u64 << 20) / 4);
        assert_eq!(plan.pages_limit, 512 << 20);
        let pages = Config {
            pages_bytes: ByteSize(1 << 20),
            ..Config::default()
        };
        assert_eq!(pages.memory_plan(16).expect("1 MiB").pages_limit, 1 << 20);
        let too_many_pages = Config {
            pages_bytes: ByteSize(3 << 30),
            ..Config::default()
        };
        let refused = too_many_pages.memory_plan(1).expect_err("over half");
        assert_eq!(
            refused.to_string(),
            "pages_bytes = 3GiB: must be at most half of memory (4GiB)"
        );
        let both = Config {
            cache_bytes: ByteSize(2 << 30),
            pages_bytes: ByteSize(2 << 30),
            ..Config::default()
        };
        let refused = both.memory_plan(1).expect_err("all of it");
        assert_eq!(
            refused.to_string(),
            "caches of 2GiB and pages of 2GiB together take more than three quarters of \
             memory (4GiB)"
        );
        let config = Config {
            memory: ByteSize(64 << 20),
            cache_bytes: ByteSize(32 << 20),
            ..Config::default()
        };
        let plan = config.memory_plan(256).expect("half is allowed");
        assert_eq!(plan.cache_blocks, 32);
        let tiny = Config {
            memory: ByteSize(64 << 20),
            ..Config::default()
        };
        let plan = tiny.memory_plan(256).expect("16 blocks each");
        assert_eq!(plan.cache_blocks, CACHE_BLOCKS_MIN);
        assert_eq!(plan.memtable_limit, (48 << 20) / 4, "the caches' real size");
        let refused = tiny
            .memory_plan(1024)
            .expect_err("1024 caches of 16 blocks: 64 MiB");
        assert_eq!(
            refused.to_string(),
            "memory = 64MiB is too small for 1024 partitions: their caches alone take 64MiB \
             (at least 16 blocks of 4KiB each), more than half of it"
        );
        let too_small = Config {
            memory: ByteSize(MEMORY_MIN - 1),
            ..Config::default()
        };
        assert!(matches!(
            too_small.memory_plan(1),
            Err(ConfigError::Memory(_))
        ));
        let too_much_cache = Config {
            cache_bytes: ByteSize(3 << 30),
            ..Config::default()
        };
        let refused = too_much_cache.memory_plan(1).expect_err("over half");
        assert_eq!(
            refused.to_string(),
            "cache_bytes = 3GiB: must be at most half of memory (4GiB)"
        );
        assert!(
            matches!(too_small.cores_resolved(), Err(ConfigError::Memory(_))),
            "a start checks the plan"
        );
    }
}
