//! The writer's zero fill (`LogOptions::zero_ahead`): while idle it zeroes the last segment
//! ahead of its end; recovery takes those zeros for a clean end, appends overwrite them, and
//! damage written into them is still a torn tail or corruption.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use kassa_storage::{LogEntry, LogOptions, PartitionLog, StorageError, BLOCK_SIZE, SECTOR_SIZE};

const SEGMENT_SIZE: u64 = 1024 * 1024;
const ZERO_AHEAD: u64 = 64 * 1024;
const ENTRIES: u64 = 40;

fn zero_fill_options() -> LogOptions {
    LogOptions {
        segment_size_max: SEGMENT_SIZE,
        zero_ahead: ZERO_AHEAD,
    }
}

async fn open_zero_filled(dir: &Path) -> (PartitionLog, kassa_storage::Recovery) {
    PartitionLog::open(dir, zero_fill_options())
        .await
        .expect("open")
}

/// Waits (bounded) until the writer has zeroed at least `fills` times.
async fn wait_for_zero_fills(log: &PartitionLog, fills: u64) {
    for _ in 0..500 {
        if log.stats().zero_fills >= fills {
            return;
        }
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the writer did not zero ahead: {:?}", log.stats());
}

/// Appends entries 1..=ENTRIES one at a time and waits for the zero fill; returns the
/// segment's path and where its frames end.
fn write_zero_filled_log(dir: &Path) -> (PathBuf, u64) {
    run(async {
        let (log, _) = open_zero_filled(dir).await;
        for index in 1..=ENTRIES {
            log.append(vec![entry(1, index)]).await.expect("append");
        }
        wait_for_zero_fills(&log, 1).await;
        let stats = log.stats();
        // The zeros are counted apart: every append was one write and one fdatasync.
        assert_eq!((stats.writes, stats.fdatasyncs), (ENTRIES, ENTRIES));
        assert!(stats.bytes_zeroed >= ZERO_AHEAD / 2, "{stats:?}");
        log.close().await.expect("close");
    });
    let files = segment_files(dir);
    assert_eq!(files.len(), 1);
    let path = files[0].clone();
    let (_, end) = frame_offsets(&path);
    (path, end)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    file.write_all_at(bytes, offset).expect("write");
    file.sync_all().expect("fsync");
}

#[test]
fn the_writer_zeroes_ahead_and_appends_overwrite_the_zeros() {
    let dir = TempDir::new("t05-ahead");
    let (path, end) = write_zero_filled_log(dir.path());
    let size = file_size(&path);
    assert!(
        size >= end + ZERO_AHEAD / 2,
        "size {size}, frames end at {end}"
    );
    assert_eq!(size % BLOCK_SIZE as u64, 0);
    let bytes = std::fs::read(&path).expect("read");
    assert!(bytes[end as usize..].iter().all(|&byte| byte == 0));
    run(async {
        let (log, recovery) = open_zero_filled(dir.path()).await;
        assert_eq!(recovery.torn_tail, None);
        assert_eq!(recovery.entries, ENTRIES);
        assert_log(&log, &entries(1, 1..=ENTRIES)).await;
        for index in ENTRIES + 1..=2 * ENTRIES {
            log.append(vec![entry(1, index)]).await.expect("append");
        }
        log.close().await.expect("close");
        let (log, recovery) = open_zero_filled(dir.path()).await;
        assert_eq!(recovery.torn_tail, None);
        assert_log(&log, &entries(1, 1..=2 * ENTRIES)).await;
    });
    assert_eq!(segment_files(dir.path()), vec![path]);
}

#[test]
fn a_torn_write_into_the_zeros_is_a_torn_tail() {
    let dir = TempDir::new("t05-torn");
    let (path, end) = write_zero_filled_log(dir.path());
    // A frame of several sectors is written into the zeros, then all its sectors but the
    // one holding its header are lost: the write tore.
    run(async {
        let (log, _) = open_zero_filled(dir.path()).await;
        let large = LogEntry {
            term: 1,
            index: ENTRIES + 1,
            payload: vec![0x5a; 3000],
        };
        log.append(vec![large]).await.expect("append");
        log.close().await.expect("close");
    });
    let size = file_size(&path);
    let header_sector_end = (end + 32).next_multiple_of(SECTOR_SIZE as u64);
    let lost = vec![0; 4000];
    write_at(&path, header_sector_end, &lost);
    run(async {
        let (log, recovery) = open_zero_filled(dir.path()).await;
        let torn = recovery.torn_tail.expect("a torn tail");
        assert_eq!((torn.offset, torn.bytes_discarded), (end, size - end));
        assert_log(&log, &entries(1, 1..=ENTRIES)).await;
        log.append(entries(2, ENTRIES + 1..=ENTRIES + 2))
            .await
            .expect("append after the cut");
        log.close().await.expect("close");
        let (log, recovery) = open_zero_filled(dir.path()).await;
        assert_eq!(recovery.torn_tail, None);
        let mut expected = entries(1, 1..=ENTRIES);
        expected.extend(entries(2, ENTRIES + 1..=ENTRIES + 2));
        assert_log(&log, &expected).await;
    });
}

#[test]
fn a_flipped_byte_in_the_last_frame_before_the_zeros_is_corruption() {
    let dir = TempDir::new("t05-flip");
    let (path, _) = write_zero_filled_log(dir.path());
    let (offsets, _) = frame_offsets(&path);
    let last_frame = *offsets.last().expect("frames");
    flip_byte(&path, last_frame + 20);
    match run(async { PartitionLog::open(dir.path(), zero_fill_options()).await }) {
        Err(StorageError::Corrupt {
            path: reported,
            offset,
            ..
        }) => assert_eq!((reported, offset), (path, last_frame)),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("a flipped byte was not noticed"),
    }
}

#[test]
fn zero_ahead_must_be_whole_blocks_within_one_write() {
    let dir = TempDir::new("t05-options");
    for zero_ahead in [100, kassa_storage::ZERO_AHEAD_MAX + BLOCK_SIZE as u64] {
        let options = LogOptions {
            zero_ahead,
            ..LogOptions::default()
        };
        match run(PartitionLog::open(dir.path(), options)) {
            Err(StorageError::InvalidOptions { .. }) => {}
            Err(other) => panic!("expected InvalidOptions, got {other}"),
            Ok(_) => panic!("zero_ahead {zero_ahead} was accepted"),
        }
    }
}

/// Large flushes append: zeros ahead of them would only double what reaches the disk. Once
/// flushes are small again, the writer zeroes ahead again.
#[test]
fn large_flushes_append_without_zeros_and_small_ones_bring_them_back() {
    let dir = TempDir::new("t05-large");
    let options = LogOptions {
        segment_size_max: 64 * 1024 * 1024,
        zero_ahead: 1024 * 1024,
    };
    let large = |index: u64| LogEntry {
        term: 1,
        index,
        payload: vec![index as u8; 3 * kassa_storage::ZERO_AHEAD_FLUSH_SIZE_MAX as usize / 2],
    };
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), options.clone())
            .await
            .expect("open");
        // The first few large flushes still find the average small.
        for index in 1..=8 {
            log.append(vec![large(index)]).await.expect("append");
        }
        let before = log.stats();
        for index in 9..=24 {
            log.append(vec![large(index)]).await.expect("append");
        }
        let after = log.stats();
        assert_eq!(after.zero_fills, before.zero_fills, "{after:?}");
        assert_eq!(after.writes, before.writes + 16);
        for index in 25..=64 {
            log.append(vec![entry(1, index)]).await.expect("append");
        }
        wait_for_zero_fills(&log, after.zero_fills + 1).await;
        log.close().await.expect("close");
    });
    let (log, recovery) = run(PartitionLog::open(dir.path(), options)).expect("reopen");
    assert_eq!(recovery.entries, 64);
    drop(log);
}
