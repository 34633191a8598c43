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
        Ok(cores)
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
}
