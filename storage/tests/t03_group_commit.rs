//! Group commit: concurrent appends on one runtime share writes and fdatasyncs, each resolves
//! only once durable, and operations take effect in call order.

mod common;

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use common::*;
use kassa_storage::{LogEntry, PartitionLog, PENDING_SIZE_MAX};

const SEGMENT_SIZE: u64 = 64 * 1024;
const APPENDS: u64 = 200;
const WAVE_SIZE: u64 = 10;

/// Spawns an append of the entry that continues the log at the moment the append is first
/// polled (appends are staged synchronously on their first poll, so the index is right
/// whatever order the tasks run in). Returns the index it appended and the durable entry
/// count it saw when it resolved.
fn spawn_append(log: &Rc<PartitionLog>) -> monoio::task::JoinHandle<(u64, u64)> {
    let log = log.clone();
    monoio::spawn(async move {
        let index = log.last().map_or(1, |(_, index)| index + 1);
        log.append(vec![entry(1, index)]).await.expect("append");
        (index, log.stats().entries_appended)
    })
}

#[test]
fn concurrent_appends_share_fdatasyncs() {
    let dir = TempDir::new("t03-group");
    let started = std::time::Instant::now();
    run(async {
        let (log, _) = open(dir.path(), SEGMENT_SIZE).await;
        let log = Rc::new(log);
        let mut tasks = Vec::new();
        for _ in 0..APPENDS / WAVE_SIZE {
            for _ in 0..WAVE_SIZE {
                tasks.push(spawn_append(&log));
            }
            // Let this wave stage and the writer start on it while the next one arrives.
            monoio::time::sleep(Duration::from_micros(50)).await;
        }
        let mut indexes = Vec::new();
        for task in tasks {
            let (index, durable_when_resolved) = task.await;
            // Persist before ack: when an append resolves, its entry is among the durable.
            assert!(
                durable_when_resolved >= index,
                "entry {index} acknowledged early"
            );
            indexes.push(index);
        }
        indexes.sort_unstable();
        assert_eq!(indexes, (1..=APPENDS).collect::<Vec<_>>());
        let stats = log.stats();
        eprintln!("group commit: {APPENDS} appends, {stats:?}");
        assert_eq!(stats.entries_appended, APPENDS);
        assert!(stats.fdatasyncs < APPENDS, "no batching: {stats:?}");
        assert!(stats.flush_entries_max > 1, "no batching: {stats:?}");
        assert_eq!(stats.writes, stats.fdatasyncs);
        drop(log);

        let (log, recovery) = open(dir.path(), SEGMENT_SIZE).await;
        assert_eq!((recovery.entries, recovery.torn_tail), (APPENDS, None));
        assert_log(&log, &entries(1, 1..=APPENDS)).await;
    });
    eprintln!("group commit test took {:?}", started.elapsed());
}

#[test]
fn sequential_appends_sync_once_each() {
    // The baseline for the test above: without concurrency there is nothing to batch.
    let dir = TempDir::new("t03-sequential");
    run(async {
        let (log, _) = open(dir.path(), SEGMENT_SIZE).await;
        for index in 1..=20 {
            log.append(vec![entry(1, index)]).await.expect("append");
            assert_eq!(log.stats().entries_appended, index);
        }
        let stats = log.stats();
        assert_eq!((stats.fdatasyncs, stats.flush_entries_max), (20, 1));
    });
}

/// Polls `future` once, so an append stages its entries, and hands it back.
async fn poll_once<F: Future>(mut future: std::pin::Pin<&mut F>) {
    poll_fn(|context| {
        assert!(
            future.as_mut().poll(context).is_pending(),
            "resolved without waiting"
        );
        Poll::Ready(())
    })
    .await
}

#[test]
fn staged_entries_are_readable_before_they_are_durable() {
    let dir = TempDir::new("t03-read-pending");
    run(async {
        let (log, _) = open(dir.path(), SEGMENT_SIZE).await;
        log.append(entries(1, 1..=5)).await.expect("append");
        let mut append = pin!(log.append(entries(1, 6..=9)));
        poll_once(append.as_mut()).await;
        assert_eq!(log.last(), Some((1, 9)));
        assert_eq!(log.stats().entries_appended, 5, "not durable yet");
        let read = log.read(4, 10).await.expect("read");
        assert_eq!(read, entries(1, 4..=9));
        append.await.expect("append");
        assert_eq!(log.stats().entries_appended, 9);
    });
}

#[test]
fn truncate_waits_for_earlier_appends_and_later_appends_wait_for_it() {
    let dir = TempDir::new("t03-order");
    run(async {
        let (log, _) = open(dir.path(), 4096).await;
        log.append(entries(1, 1..=10)).await.expect("append");
        {
            let mut early = pin!(log.append(entries(1, 11..=40)));
            poll_once(early.as_mut()).await;
            let mut truncate = pin!(log.truncate_from(15));
            poll_once(truncate.as_mut()).await;
            // Called after the truncate: it must see the log as the truncate leaves it.
            let late = log.append(entries(2, 15..=20));
            let (early, truncate, late) = join3(early, truncate, late).await;
            early.expect("the earlier append is durable before the truncate");
            truncate.expect("truncate");
            late.expect("the later append continues from the truncation point");
        }
        let mut expected = entries(1, 1..=14);
        expected.extend(entries(2, 15..=20));
        assert_log(&log, &expected).await;
        drop(log);
        let (log, _) = open(dir.path(), 4096).await;
        assert_log(&log, &expected).await;
    });
}

#[test]
fn appends_wait_for_room_when_the_pending_buffer_is_full() {
    let dir = TempDir::new("t03-backpressure");
    run(async {
        let (log, _) = open(dir.path(), 64 * 1024 * 1024).await;
        let log = Rc::new(log);
        let payload_size = 1024 * 1024;
        let count = (PENDING_SIZE_MAX / payload_size + 4) as u64;
        let tasks: Vec<_> = (1..=count)
            .map(|index| {
                let log = log.clone();
                monoio::spawn(async move {
                    let payload = vec![index as u8; payload_size];
                    log.append(vec![LogEntry {
                        term: 1,
                        index,
                        payload,
                    }])
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("append");
        }
        let read = log.read(1, count + 1).await.expect("read");
        assert_eq!(read.len() as u64, count);
        for (entry, index) in read.iter().zip(1..) {
            assert_eq!(entry.index, index);
            assert!(entry.payload.iter().all(|&byte| byte == index as u8));
        }
    });
}

/// Awaits three futures concurrently on this task.
async fn join3<A: Future, B: Future, C: Future>(
    a: A,
    b: B,
    c: C,
) -> (A::Output, B::Output, C::Output) {
    let (mut a, mut b, mut c) = (pin!(a), pin!(b), pin!(c));
    let (mut ra, mut rb, mut rc) = (None, None, None);
    poll_fn(|context| {
        if ra.is_none() {
            ra = poll_ready(a.as_mut().poll(context));
        }
        if rb.is_none() {
            rb = poll_ready(b.as_mut().poll(context));
        }
        if rc.is_none() {
            rc = poll_ready(c.as_mut().poll(context));
        }
        if ra.is_some() && rb.is_some() && rc.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap(), rc.unwrap())
}

fn poll_ready<T>(poll: Poll<T>) -> Option<T> {
    match poll {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

#[test]
fn close_waits_for_the_writer_and_a_cancelled_truncate_poisons_the_log() {
    let dir = TempDir::new("t03-close");
    run(async {
        let (log, _) = open(dir.path(), 4096).await;
        log.append(entries(1, 1..=60)).await.expect("append");
        log.close().await.expect("close");
        let (log, recovery) = open(dir.path(), 4096).await;
        assert_eq!(recovery.entries, 60);
        {
            // Polled once, the truncate is unlinking the last segment; dropping it then leaves
            // the files and the index apart, so the log refuses further work.
            let mut truncate = pin!(log.truncate_from(2));
            poll_once(truncate.as_mut()).await;
        }
        let refused = log.append(entries(1, 61..=61)).await;
        assert!(matches!(
            refused,
            Err(kassa_storage::StorageError::Poisoned { .. })
        ));
        assert!(log.read(1, 2).await.is_err());
        assert!(log.close().await.is_err());
        let (log, _) = open(dir.path(), 4096).await;
        let kept = log.last().expect("entries").1;
        assert_log(&log, &entries(1, 1..=kept)).await;
        log.truncate_from(2)
            .await
            .expect("truncate after reopening");
        assert_log(&log, &entries(1, 1..=1)).await;
    });
}
