//! The data directory's identity: which cluster it belongs to and how many partitions the
//! cluster has. Written once by `kassa format` (or the first `kassa start`), read at every start.
//!
//! Layout: `<data_dir>/cluster` (a durable file holding this TOML) and one directory per
//! partition, `<data_dir>/partitions/<partition>`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::PARTITIONS_MAX;

const META_FILE: &str = "cluster";
/// The layout version this build writes and reads. 2: a cross-partition decision in the log
/// (and in snapshots) carries each created transfer once.
pub const FORMAT_VERSION: u32 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterMeta {
    pub format_version: u32,
    /// The cluster id, as a decimal string (it is a u128).
    pub cluster_id: String,
    pub partitions: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{0}")]
    Storage(#[from] kassa_storage::StorageError),
    #[error("{path}: not a Kassa data directory description: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: format version {found}; this build reads version {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("partitions = {0}: a cluster has 1 to {PARTITIONS_MAX} partitions")]
    Partitions(u32),
    #[error("{path} is already formatted (cluster {cluster_id}, {partitions} partitions)")]
    AlreadyFormatted {
        path: PathBuf,
        cluster_id: String,
        partitions: u32,
    },
    #[error("creating {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where partition `partition`'s files live.
pub fn partition_dir(data_dir: &Path, partition: u32) -> PathBuf {
    data_dir.join("partitions").join(format!("{partition:04}"))
}

/// Makes a directory's entries durable.
fn sync_dir(dir: &Path) -> Result<(), MetaError> {
    let create = |source| MetaError::Create {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(create)
}

/// Reads the data directory's description, `None` if it was never formatted.
pub async fn load(data_dir: &Path) -> Result<Option<ClusterMeta>, MetaError> {
    let Some(bytes) = kassa_storage::durable_file::read(data_dir, META_FILE).await? else {
        return Ok(None);
    };
    let path = data_dir.join(META_FILE);
    let text = String::from_utf8(bytes).map_err(|_| MetaError::Parse {
        path: path.clone(),
        message: "not UTF-8".into(),
    })?;
    let meta: ClusterMeta = toml::from_str(&text).map_err(|error| MetaError::Parse {
        path: path.clone(),
        message: error.to_string(),
    })?;
    if meta.format_version != FORMAT_VERSION {
        return Err(MetaError::Version {
            path,
            found: meta.format_version,
        });
    }
    if !(1..=PARTITIONS_MAX).contains(&meta.partitions) {
        return Err(MetaError::Partitions(meta.partitions));
    }
    Ok(Some(meta))
}

/// Formats an empty data directory for `partitions` partitions of cluster `cluster_id`.
pub async fn format(
    data_dir: &Path,
    cluster_id: u128,
    partitions: u32,
) -> Result<ClusterMeta, MetaError> {
    if !(1..=PARTITIONS_MAX).contains(&partitions) {
        return Err(MetaError::Partitions(partitions));
    }
    if let Some(existing) = load(data_dir).await? {
        return Err(MetaError::AlreadyFormatted {
            path: data_dir.to_path_buf(),
            cluster_id: existing.cluster_id,
            partitions: existing.partitions,
        });
    }
    for partition in 0..partitions {
        let path = partition_dir(data_dir, partition);
        std::fs::create_dir_all(&path).map_err(|source| MetaError::Create { path, source })?;
    }
    // The new directory entries must be durable before anything in them is acknowledged.
    let partitions_dir = data_dir.join("partitions");
    let parent = data_dir
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty());
    for dir in [parent.unwrap_or(Path::new(".")), data_dir, &partitions_dir] {
        sync_dir(dir)?;
    }
    let meta = ClusterMeta {
        format_version: FORMAT_VERSION,
        cluster_id: cluster_id.to_string(),
        partitions,
    };
    let text = toml::to_string(&meta).expect("the description serializes");
    kassa_storage::durable_file::write(data_dir, META_FILE, text.as_bytes()).await?;
    Ok(meta)
}
