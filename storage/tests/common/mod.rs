//! Helpers shared by the integration tests: a temporary directory that cleans up after
//! itself, the io_uring runtime, entry generators and a reader of segment-file layouts.

#![allow(dead_code)] // each test file uses a different subset

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use kassa_storage::{frame_size, LogEntry, LogOptions, PartitionLog, Recovery, StorageError};

/// A unique directory under the system temporary directory, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "kassa-storage-{name}-{}-{unique}-{nanos}",
            std::process::id()
        ));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs `future` on a fresh io_uring runtime with timers.
pub fn run<F: Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime")
        .block_on(future)
}

/// The payload of entry `index` in term `term`: its size varies with the index.
pub fn payload(term: u64, index: u64) -> Vec<u8> {
    let size = (index * 37 % 300) as usize;
    (0..size)
        .map(|at| (index as usize * 7 + at + term as usize) as u8)
        .collect()
}

pub fn entry(term: u64, index: u64) -> LogEntry {
    LogEntry {
        term,
        index,
        payload: payload(term, index),
    }
}

pub fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<LogEntry> {
    indexes.map(|index| entry(term, index)).collect()
}

pub fn options(segment_size_max: u64) -> LogOptions {
    LogOptions {
        segment_size_max,
        ..LogOptions::default()
    }
}

pub async fn open(dir: &Path, segment_size_max: u64) -> (PartitionLog, Recovery) {
    PartitionLog::open(dir, options(segment_size_max))
        .await
        .expect("open")
}

pub async fn open_error(dir: &Path, segment_size_max: u64) -> StorageError {
    match PartitionLog::open(dir, options(segment_size_max)).await {
        Ok(_) => panic!("open succeeded on a damaged log"),
        Err(error) => error,
    }
}

/// Reads everything in the log and checks it is exactly `expected`.
pub async fn assert_log(log: &PartitionLog, expected: &[LogEntry]) {
    let first = expected.first().map(|entry| entry.index);
    assert_eq!(log.first_index(), first);
    assert_eq!(
        log.last(),
        expected.last().map(|entry| (entry.term, entry.index))
    );
    if let Some(first) = first {
        let read = log.read(first, u64::MAX).await.expect("read");
        assert_eq!(read.len(), expected.len());
        assert!(
            read == expected,
            "the log holds other entries than expected"
        );
    }
    log.validate();
}

/// Segment files in `dir`, in index order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .collect();
    files.sort();
    files
}

/// The start offsets of the frames in a segment file, and where the last one ends.
pub fn frame_offsets(path: &Path) -> (Vec<u64>, u64) {
    let bytes = std::fs::read(path).expect("read segment");
    let mut offsets = Vec::new();
    let mut offset = 0;
    while offset + 32 <= bytes.len() && bytes[offset..offset + 4] == *b"KLG1" {
        offsets.push(offset as u64);
        let length = u32::from_le_bytes(bytes[offset + 8..offset + 12].try_into().unwrap());
        offset += frame_size(length as usize);
    }
    (offsets, offset as u64)
}

/// Flips one bit of the byte at `offset`.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[offset as usize] ^= 0x20;
    std::fs::write(path, bytes).expect("write");
}

/// Sets a file's length (cutting or extending with zeros).
pub fn set_file_size(path: &Path, size: u64) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    file.set_len(size).expect("set_len");
    file.sync_all().expect("fsync");
}

/// Appends bytes at the end of a file.
pub fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    file.write_all(bytes).expect("append");
}
