//! The data directory's identity: which cluster it belongs to and how many partitions the
//! cluster has. Written once by `kassa format` (or the first `kassa start`), read at every start.
//!
//! Layout: `<data_dir>/cluster` (a durable file holding this TOML) and one directory per
//! partition, `<data_dir>/partitions/<partition>`.
//!
//! Formatting never overwrites anything: it formats only a directory that does not exist or
//! is empty (a file system's `lost+found` aside). It first creates `format.lock` exclusively,
//! so of two formats of one directory at once, one fails; it writes the `cluster` file last
//! and then removes the lock. A format that crashed leaves the lock and no `cluster` file: the
//! directory is then neither formatted nor empty, and is refused until an operator clears it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use kassa_shard::PlacementKind;

use crate::config::PARTITIONS_MAX;

const META_FILE: &str = "cluster";
/// Held, by existing, while a format runs.
const FORMAT_LOCK: &str = "format.lock";
/// Entries an empty directory may hold: ext4 creates `lost+found` at a file system's root.
const IGNORED_ENTRIES: [&str; 1] = ["lost+found"];
/// Entries a refusal names at most.
const NAMED_ENTRIES_MAX: usize = 5;
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
    /// How records are placed in partitions: `id` or `ledger` (`PlacementKind::name`).
    /// Directories formatted before placements existed place by id.
    #[serde(default = "placement_by_id")]
    pub placement: String,
}

fn placement_by_id() -> String {
    PlacementKind::ById.name().to_string()
}

impl ClusterMeta {
    /// The placement, checked when the description was loaded.
    pub fn placement_kind(&self) -> PlacementKind {
        PlacementKind::from_name(&self.placement).expect("checked at load")
    }
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
    #[error("placement = {0:?}: records are placed by \"id\" or by \"ledger\"")]
    Placement(String),
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
    #[error(
        "{path} is not empty and holds no Kassa cluster description (found {found}); Kassa \
         formats only a new or empty directory: choose another one, or empty this one if its \
         contents are not needed"
    )]
    NotEmpty { path: PathBuf, found: String },
    #[error(
        "{path} is being formatted by another process, or a format was interrupted \
         ({path}/{FORMAT_LOCK} exists); if no format runs, empty the directory and format again"
    )]
    FormatRunning { path: PathBuf },
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
    if PlacementKind::from_name(&meta.placement).is_none() {
        return Err(MetaError::Placement(meta.placement));
    }
    Ok(Some(meta))
}

/// Formats a new or empty data directory for `partitions` partitions of cluster
/// `cluster_id`, placing records by `placement` (creating the directory if needed).
pub async fn format(
    data_dir: &Path,
    cluster_id: u128,
    partitions: u32,
    placement: PlacementKind,
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
    std::fs::create_dir_all(data_dir).map_err(|source| MetaError::Create {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let lock = data_dir.join(FORMAT_LOCK);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
    {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(MetaError::FormatRunning {
                path: data_dir.to_path_buf(),
            });
        }
        Err(source) => return Err(MetaError::Create { path: lock, source }),
    }
    let formatted = match check_empty(data_dir) {
        Ok(()) => format_locked(data_dir, cluster_id, partitions, placement).await,
        Err(error) => Err(error),
    };
    // The lock goes whether or not the format succeeded: a refusal changed nothing else.
    let removed = std::fs::remove_file(&lock).map_err(|source| MetaError::Create {
        path: lock.clone(),
        source,
    });
    let meta = formatted?;
    removed?;
    sync_dir(data_dir)?;
    Ok(meta)
}

/// Fails unless `data_dir` holds nothing but the format lock and entries an empty file system
/// has.
fn check_empty(data_dir: &Path) -> Result<(), MetaError> {
    let read = std::fs::read_dir(data_dir).map_err(|source| MetaError::Create {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let mut found: Vec<String> = Vec::new();
    for entry in read {
        let entry = entry.map_err(|source| MetaError::Create {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != FORMAT_LOCK && !IGNORED_ENTRIES.contains(&name.as_str()) {
            found.push(name);
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    found.sort();
    let count = found.len();
    let mut named: Vec<String> = found.into_iter().take(NAMED_ENTRIES_MAX).collect();
    if count > NAMED_ENTRIES_MAX {
        named.push(format!("and {} more", count - NAMED_ENTRIES_MAX));
    }
    Err(MetaError::NotEmpty {
        path: data_dir.to_path_buf(),
        found: named.join(", "),
    })
}

/// Creates the partitions' directories, then the description: the format's last step.
async fn format_locked(
    data_dir: &Path,
    cluster_id: u128,
    partitions: u32,
    placement: PlacementKind,
) -> Result<ClusterMeta, MetaError> {
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
        placement: placement.name().to_string(),
    };
    let text = toml::to_string(&meta).expect("the description serializes");
    kassa_storage::durable_file::write(data_dir, META_FILE, text.as_bytes()).await?;
    Ok(meta)
}
