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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("kassa-data"),
            http_address: SocketAddr::from(([127, 0, 0, 1], 8080)),
            wire_address: SocketAddr::from(([127, 0, 0, 1], 3000)),
            cores: 0,
            snapshot_entries: 100_000,
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
}

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
        Ok(cores)
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
