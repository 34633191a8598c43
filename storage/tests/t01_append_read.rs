//! Appends, reads, reopens, truncation and purge on a healthy log, across segments.

mod common;

use common::*;
use kassa_storage::{LogEntry, StorageError, ENTRY_PAYLOAD_SIZE_MAX, FLUSH_SIZE_MAX};

const SEGMENT_SIZE_SMALL: u64 = 4096;

#[test]
fn append_read_reopen_across_segments() {
    let dir = TempDir::new("t01-round-trip");
    run(async {
        let (log, recovery) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        assert_eq!(recovery.entries, 0);
        assert_eq!(recovery.torn_tail, None);
        assert_eq!((log.first_index(), log.last()), (None, None));
        let mut expected = Vec::new();
        let mut next = 1;
        for batch_size in [1, 5, 17, 2, 30, 45] {
            let batch = entries(3, next..=next + batch_size - 1);
            log.append(batch.clone()).await.expect("append");
            expected.extend(batch);
            next += batch_size;
        }
        assert_log(&log, &expected).await;
        let stats = log.stats();
        assert_eq!(stats.entries_appended, 100);
        assert!(stats.segments_created >= 3, "{stats:?}");
        assert_eq!(read(&log, 40, 45).await, expected[39..44].to_vec());
        drop(log);

        let files = segment_files(dir.path());
        assert!(files.len() >= 3);
        let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(name, "log-00000000000000000001.seg");

        let (log, recovery) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        assert_eq!(recovery.entries, 100);
        assert_eq!(recovery.torn_tail, None);
        assert_log(&log, &expected).await;
        let more = entries(4, 101..=120);
        log.append(more.clone()).await.expect("append after reopen");
        expected.extend(more);
        drop(log);
        let (log, recovery) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        assert_eq!(recovery.entries, 120);
        assert_log(&log, &expected).await;
    });
}

#[test]
fn reads_are_bounded_by_the_log() {
    let dir = TempDir::new("t01-ranges");
    run(async {
        let (log, _) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        assert!(read(&log, 1, 10).await.is_empty());
        let expected = entries(1, 5..=60);
        log.append(expected.clone()).await.expect("append");
        assert!(read(&log, 10, 10).await.is_empty());
        assert!(read(&log, 20, 10).await.is_empty());
        assert_eq!(read(&log, 50, 1000).await, expected[45..].to_vec());
        assert!(read(&log, 61, 70).await.is_empty());
        assert_eq!(read(&log, 5, 6).await, expected[..1].to_vec());
    });
}

#[test]
fn read_ends_bound_the_bytes_of_a_read() {
    let dir = TempDir::new("t01-read-ends");
    run(async {
        let (log, _) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        // Entries of 1, 2, …, 8 KiB, one segment each.
        let sized = |index: u64| LogEntry {
            term: 1,
            index,
            payload: vec![index as u8; index as usize * 1024],
        };
        log.append((1..=8).map(sized).collect())
            .await
            .expect("append");
        let frames = |from: u64, to: u64| -> u64 {
            (from..to)
                .map(|i| kassa_storage::frame_size(i as usize * 1024) as u64)
                .sum()
        };
        assert_eq!(log.read_end_within(1, 9, u64::MAX), 9);
        assert_eq!(log.read_end_within(1, 5, u64::MAX), 5, "never past `end`");
        assert_eq!(
            log.read_end_within(1, 9, frames(1, 4)),
            4,
            "exactly three fit"
        );
        assert_eq!(log.read_end_within(1, 9, frames(1, 4) - 1), 3);
        assert_eq!(log.read_end_within(3, 9, frames(3, 6)), 6);
        assert_eq!(log.read_end_within(8, 9, 1), 9, "always one entry");
        assert_eq!(
            log.read_end_within(9, 12, u64::MAX),
            9,
            "nothing past the log"
        );
        let within = log.read_end_within(2, 9, frames(2, 5));
        assert_eq!(
            read(&log, 2, within).await,
            (2..=4).map(sized).collect::<Vec<_>>()
        );
    });
}

#[test]
fn a_rejected_append_changes_nothing() {
    let dir = TempDir::new("t01-rejected");
    run(async {
        let (log, _) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        let expected = entries(1, 1..=10);
        log.append(expected.clone()).await.expect("append");
        let gap = log.append(entries(1, 12..=13)).await;
        assert!(matches!(
            gap,
            Err(StorageError::NotContiguous {
                index: 12,
                last: 10
            })
        ));
        let repeat = log.append(entries(1, 10..=11)).await;
        assert!(matches!(
            repeat,
            Err(StorageError::NotContiguous {
                index: 10,
                last: 10
            })
        ));
        let mut broken = entries(1, 11..=13);
        broken[2].index = 20;
        let inside = log.append(broken).await;
        assert!(matches!(
            inside,
            Err(StorageError::NotContiguous { index: 20, .. })
        ));
        let huge = LogEntry {
            term: 1,
            index: 11,
            payload: vec![0; ENTRY_PAYLOAD_SIZE_MAX + 1],
        };
        let too_large = log.append(vec![huge]).await;
        assert!(matches!(
            too_large,
            Err(StorageError::EntryTooLarge { index: 11, .. })
        ));
        log.append(Vec::<LogEntry>::new())
            .await
            .expect("an empty append is a no-op");
        assert_log(&log, &expected).await;
        assert_eq!(log.stats().entries_appended, 10);
    });
}

#[test]
fn large_entries_split_into_several_writes() {
    let dir = TempDir::new("t01-large");
    run(async {
        let (log, _) = open(dir.path(), 128 * 1024 * 1024).await;
        let large: Vec<LogEntry> = (1..=4)
            .map(|index| LogEntry {
                term: 2,
                index,
                payload: (0..ENTRY_PAYLOAD_SIZE_MAX)
                    .map(|at| (at * index as usize) as u8)
                    .collect(),
            })
            .collect();
        log.append(large.clone()).await.expect("append");
        let stats = log.stats();
        let bytes = 4 * ENTRY_PAYLOAD_SIZE_MAX as u64;
        assert!(stats.writes > bytes / FLUSH_SIZE_MAX as u64, "{stats:?}");
        assert_eq!(stats.writes, stats.fdatasyncs);
        assert_log(&log, &large).await;
        drop(log);
        let (log, recovery) = open(dir.path(), 128 * 1024 * 1024).await;
        assert_eq!(recovery.entries, 4);
        assert_log(&log, &large).await;
    });
}

#[test]
fn truncate_from_then_append() {
    let dir = TempDir::new("t01-truncate");
    run(async {
        let (log, _) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        let mut expected = entries(1, 1..=60);
        log.append(expected.clone()).await.expect("append");
        let files_before = segment_files(dir.path()).len();
        log.truncate_from(30).await.expect("truncate");
        expected.truncate(29);
        assert_log(&log, &expected).await;
        assert!(segment_files(dir.path()).len() < files_before);
        let conflicting = log.append(entries(2, 31..=31)).await;
        assert!(matches!(
            conflicting,
            Err(StorageError::NotContiguous {
                index: 31,
                last: 29
            })
        ));
        let replacement = entries(2, 30..=45);
        log.append(replacement.clone())
            .await
            .expect("append after truncate");
        expected.extend(replacement);
        assert_log(&log, &expected).await;
        log.truncate_from(46)
            .await
            .expect("truncating past the end is a no-op");
        drop(log);

        let (log, recovery) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        assert_eq!((recovery.entries, recovery.torn_tail), (45, None));
        assert_log(&log, &expected).await;
        // At a segment's first index: the whole segment goes.
        let second = segment_files(dir.path())[1].clone();
        let second_first: u64 = second.file_stem().unwrap().to_str().unwrap()[4..]
            .parse()
            .unwrap();
        log.truncate_from(second_first)
            .await
            .expect("truncate at a segment start");
        expected.truncate(second_first as usize - 1);
        assert_log(&log, &expected).await;
        assert!(!second.exists());
        log.truncate_from(1).await.expect("truncate everything");
        assert_log(&log, &[]).await;
        log.append(entries(3, 1..=3))
            .await
            .expect("append to the emptied log");
        drop(log);
        let (log, _) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        assert_log(&log, &entries(3, 1..=3)).await;
        // Below the first index of a log that was never purged: everything goes.
        log.truncate_from(0)
            .await
            .expect("truncate below the first entry");
        assert_log(&log, &[]).await;
        log.append(entries(4, 0..=2))
            .await
            .expect("append from the truncation point");
        assert_log(&log, &entries(4, 0..=2)).await;
    });
}

#[test]
fn purge_before_then_reopen() {
    let dir = TempDir::new("t01-purge");
    run(async {
        let (log, _) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        let expected = entries(1, 1..=100);
        log.append(expected.clone()).await.expect("append");
        let files_before = segment_files(dir.path()).len();
        log.purge_before(37).await.expect("purge");
        assert_eq!(log.first_index(), Some(37));
        assert!(segment_files(dir.path()).len() < files_before);
        assert_log(&log, &expected[36..]).await;
        let purged = log.read(10, 40).await;
        assert!(matches!(
            purged,
            Err(StorageError::Purged {
                index: 10,
                first: 37
            })
        ));
        let below = log.truncate_from(20).await;
        assert!(matches!(
            below,
            Err(StorageError::TruncateBeforeFirst {
                index: 20,
                first: 37
            })
        ));
        log.purge_before(30)
            .await
            .expect("an older purge point is a no-op");
        assert_eq!(log.first_index(), Some(37));
        drop(log);

        let (log, recovery) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        assert_eq!(recovery.entries, 64);
        assert_log(&log, &expected[36..]).await;
        // Past the end: the log is empty and continues at the purge point.
        log.purge_before(200).await.expect("purge past the end");
        assert_eq!((log.first_index(), log.last()), (None, None));
        assert!(segment_files(dir.path()).is_empty());
        drop(log);
        let (log, recovery) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        assert_eq!(recovery.entries, 0);
        let early = log.append(entries(2, 101..=101)).await;
        assert!(matches!(
            early,
            Err(StorageError::NotContiguous {
                index: 101,
                last: 199
            })
        ));
        log.append(entries(2, 200..=210))
            .await
            .expect("append at the purge point");
        drop(log);
        let (log, _) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        assert_log(&log, &entries(2, 200..=210)).await;
    });
}

#[test]
fn an_interrupted_purge_is_finished_on_open() {
    let dir = TempDir::new("t01-purge-crash");
    let saved = TempDir::new("t01-purge-crash-saved");
    run(async {
        let (log, _) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        let expected = entries(1, 1..=100);
        log.append(expected.clone()).await.expect("append");
        drop(log);
        // Keep copies of the segments, purge, then put the copies back: as if the node
        // crashed after persisting the purge point but before unlinking the segments.
        std::fs::create_dir_all(saved.path()).unwrap();
        let files = segment_files(dir.path());
        for file in &files {
            std::fs::copy(file, saved.path().join(file.file_name().unwrap())).unwrap();
        }
        let (log, _) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        log.purge_before(70).await.expect("purge");
        drop(log);
        for file in &files {
            std::fs::copy(saved.path().join(file.file_name().unwrap()), file).unwrap();
        }
        let (log, recovery) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        assert_eq!(recovery.entries, 31);
        assert_log(&log, &expected[69..]).await;
        assert!(segment_files(dir.path()).len() < files.len());
    });
}

async fn read(log: &kassa_storage::PartitionLog, start: u64, end: u64) -> Vec<LogEntry> {
    log.read(start, end).await.expect("read")
}

#[test]
fn a_log_directory_is_opened_once_at_a_time() {
    let dir = TempDir::new("t01-lock");
    run(async {
        let (log, _) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        log.append(entries(1, 1..=3)).await.expect("append");
        let second = open_error(dir.path(), SEGMENT_SIZE_SMALL).await;
        assert!(matches!(second, StorageError::Locked { .. }), "{second}");
        drop(log);
        let (log, recovery) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        assert_eq!(recovery.entries, 3);
        assert_log(&log, &entries(1, 1..=3)).await;
    });
}
