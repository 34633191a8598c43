//! Recovery on open: torn tails are cut and reported, corruption anywhere else refuses the
//! log with the file and offset, and appending continues correctly after a cut.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use kassa_storage::{frame_size, LogEntry, StorageError, FRAME_HEADER_SIZE, SECTOR_SIZE};

const SEGMENT_SIZE_SMALL: u64 = 4096;
const ENTRIES: u64 = 90;

/// Writes entries 1..=ENTRIES (several segments) and returns the last segment's path, the
/// offset of its last frame and where that frame ends.
fn write_log(dir: &Path) -> (PathBuf, u64, u64) {
    run(async {
        let (log, _) = open(dir, SEGMENT_SIZE_SMALL).await;
        log.append(entries(1, 1..=ENTRIES)).await.expect("append");
    });
    let files = segment_files(dir);
    assert!(files.len() >= 3, "the test wants several segments");
    let last = files.last().expect("a segment").clone();
    let (offsets, end) = frame_offsets(&last);
    assert!(
        offsets.len() >= 2,
        "the test wants two frames in the last segment"
    );
    (last, *offsets.last().unwrap(), end)
}

/// Like `write_log`, but the last entry's payload is sized so that its frame crosses a
/// 512-byte sector boundary (the frame's header and its end lie in different sectors).
fn write_log_last_frame_straddling(dir: &Path) -> (PathBuf, u64, u64) {
    run(async {
        let (log, _) = open(dir, SEGMENT_SIZE_SMALL).await;
        log.append(entries(1, 1..=ENTRIES - 1))
            .await
            .expect("append");
        log.close().await.expect("close");
    });
    let last = segment_files(dir).last().expect("a segment").clone();
    let (_, end) = frame_offsets(&last);
    let to_boundary = SECTOR_SIZE - end as usize % SECTOR_SIZE;
    let payload = vec![7u8; to_boundary + 40];
    run(async {
        let (log, _) = open(dir, SEGMENT_SIZE_SMALL).await;
        let last_entry = LogEntry {
            term: 1,
            index: ENTRIES,
            payload,
        };
        log.append(vec![last_entry]).await.expect("append");
    });
    let last = segment_files(dir).last().expect("a segment").clone();
    let (offsets, end) = frame_offsets(&last);
    (last, *offsets.last().expect("frames"), end)
}

/// Opens the damaged log and checks it reports a torn tail at `offset`, holds entries
/// 1..=ENTRIES-1, and accepts entry ENTRIES again (also after another reopen).
fn assert_torn_at(dir: &Path, path: &Path, offset: u64, bytes_discarded: u64) {
    run(async {
        let (log, recovery) = open(dir, SEGMENT_SIZE_SMALL).await;
        let torn = recovery.torn_tail.expect("a torn tail");
        assert_eq!(torn.path, path);
        assert_eq!(
            (torn.offset, torn.bytes_discarded),
            (offset, bytes_discarded)
        );
        assert_eq!(recovery.entries, ENTRIES - 1);
        assert_log(&log, &entries(1, 1..=ENTRIES - 1)).await;
        log.append(entries(2, ENTRIES..=ENTRIES + 2))
            .await
            .expect("append after the cut");
        drop(log);
        let (log, recovery) = open(dir, SEGMENT_SIZE_SMALL).await;
        assert_eq!(recovery.torn_tail, None);
        let mut expected = entries(1, 1..=ENTRIES - 1);
        expected.extend(entries(2, ENTRIES..=ENTRIES + 2));
        assert_log(&log, &expected).await;
    });
}

fn assert_corrupt(dir: &Path, path: &Path, offset: u64) {
    let error = run(open_error(dir, SEGMENT_SIZE_SMALL));
    match error {
        StorageError::Corrupt {
            path: reported,
            offset: at,
            what,
        } => {
            assert_eq!((reported.as_path(), at), (path, offset), "{what}");
        }
        other => panic!("expected Corrupt, got {other}"),
    }
}

#[test]
fn a_last_frame_cut_anywhere_is_a_torn_tail() {
    let header = FRAME_HEADER_SIZE as u64;
    for cut in [1, 8, header - 1, header, header + 1, u64::MAX] {
        let dir = TempDir::new("t02-cut");
        let (path, last_frame, end) = write_log(dir.path());
        let cut = if cut == u64::MAX {
            end - last_frame - 1
        } else {
            cut
        };
        set_file_size(&path, last_frame + cut);
        assert_torn_at(dir.path(), &path, last_frame, cut);
    }
}

#[test]
fn zeros_after_the_last_frame_are_a_clean_end() {
    // Zeros past the end of the last block: the writer's zero fill, or a write that extended
    // the file but never landed. Appends go on over them.
    let dir = TempDir::new("t02-zeros");
    let (path, _, end) = write_log(dir.path());
    append_bytes(&path, &vec![0; 5000]);
    run(async {
        let (log, recovery) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        assert_eq!(recovery.torn_tail, None);
        assert_log(&log, &entries(1, 1..=ENTRIES)).await;
        log.append(entries(1, ENTRIES + 1..=ENTRIES + 1))
            .await
            .expect("append over the zeros");
        log.close().await.expect("close");
        let (log, recovery) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        assert_eq!(recovery.torn_tail, None);
        assert_log(&log, &entries(1, 1..=ENTRIES + 1)).await;
    });
    assert_eq!(
        frame_offsets(&path).1,
        end + frame_size(payload(1, ENTRIES + 1).len()) as u64
    );
}

#[test]
fn garbage_after_the_last_frame_is_a_torn_tail() {
    // A partial header at the end of the file.
    let dir = TempDir::new("t02-partial-header");
    let (path, last_frame, end) = write_log(dir.path());
    let header = std::fs::read(&path).unwrap()[last_frame as usize..][..20].to_vec();
    set_file_size(&path, end);
    append_bytes(&path, &header);
    run(async {
        let (log, recovery) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        let torn = recovery.torn_tail.expect("a torn tail");
        assert_eq!((torn.offset, torn.bytes_discarded), (end, 20));
        assert_log(&log, &entries(1, 1..=ENTRIES)).await;
    });
}

#[test]
fn a_sector_of_the_last_frame_that_never_landed_is_a_torn_tail() {
    let dir = TempDir::new("t02-sector");
    let (path, last_frame, end) = write_log_last_frame_straddling(dir.path());
    assert!(last_frame / SECTOR_SIZE as u64 != (end - 1) / SECTOR_SIZE as u64);
    let mut bytes = std::fs::read(&path).unwrap();
    // Zero the last sector the frame reaches into, from the frame's start if it is in it.
    let sector = ((end - 1) / SECTOR_SIZE as u64 * SECTOR_SIZE as u64).max(last_frame) as usize;
    let sector_end = (sector + SECTOR_SIZE).min(bytes.len());
    bytes[sector..sector_end].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let size = bytes.len() as u64;
    assert_torn_at(dir.path(), &path, last_frame, size - last_frame);
}

#[test]
fn a_torn_first_write_of_a_segment_removes_it() {
    let dir = TempDir::new("t02-empty-segment");
    let (path, _, _) = write_log(dir.path());
    let (offsets, _) = frame_offsets(&path);
    let files_before = segment_files(dir.path()).len();
    set_file_size(&path, 10);
    run(async {
        let (log, recovery) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        let torn = recovery.torn_tail.expect("a torn tail");
        assert_eq!(
            (torn.path.as_path(), torn.offset, torn.bytes_discarded),
            (path.as_path(), 0, 10)
        );
        let kept = ENTRIES - offsets.len() as u64;
        assert_eq!(recovery.entries, kept);
        assert_eq!(segment_files(dir.path()).len(), files_before - 1);
        assert_log(&log, &entries(1, 1..=kept)).await;
        log.append(entries(1, kept + 1..=ENTRIES))
            .await
            .expect("append");
        assert_log(&log, &entries(1, 1..=ENTRIES)).await;
    });
}

#[test]
fn a_flipped_byte_before_the_last_frame_is_corruption() {
    let dir = TempDir::new("t02-flip-middle");
    let (path, last_frame, _) = write_log(dir.path());
    let (offsets, _) = frame_offsets(&path);
    let victim = offsets[offsets.len() - 2];
    assert!(victim < last_frame);
    flip_byte(&path, victim + FRAME_HEADER_SIZE as u64 + 1);
    assert_corrupt(dir.path(), &path, victim);
}

#[test]
fn a_flipped_byte_in_an_earlier_segment_is_corruption() {
    for which in ["middle frame", "last frame", "header"] {
        let dir = TempDir::new("t02-flip-earlier");
        write_log(dir.path());
        let first = segment_files(dir.path())[0].clone();
        let (offsets, _) = frame_offsets(&first);
        let victim = match which {
            "middle frame" => offsets[offsets.len() / 2],
            _ => *offsets.last().unwrap(),
        };
        let at = if which == "header" {
            victim + 2
        } else {
            victim + FRAME_HEADER_SIZE as u64
        };
        flip_byte(&first, at);
        assert_corrupt(dir.path(), &first, victim);
    }
}

#[test]
fn a_flipped_byte_in_the_last_frame_is_corruption_not_a_torn_tail() {
    // Every sector of the frame holds data, so no write tore it: a bit flipped on disk, and the
    // entry may have been acknowledged. Refusing is safer than dropping it.
    let dir = TempDir::new("t02-flip-last");
    let (path, last_frame, end) = write_log(dir.path());
    flip_byte(&path, end - 3);
    assert_corrupt(dir.path(), &path, last_frame);
}

#[test]
fn a_missing_segment_is_corruption() {
    let dir = TempDir::new("t02-gap");
    write_log(dir.path());
    let files = segment_files(dir.path());
    std::fs::remove_file(&files[1]).unwrap();
    assert_corrupt(dir.path(), &files[2], 0);
}

#[test]
fn damage_larger_than_one_write_is_corruption() {
    let dir = TempDir::new("t02-large-damage");
    let (path, _, end) = write_log(dir.path());
    append_bytes(&path, &vec![0x55; kassa_storage::FLUSH_SIZE_MAX + 8192]);
    assert_corrupt(dir.path(), &path, end);
}

#[test]
fn a_flipped_bit_in_a_last_frame_ending_in_zeros_is_still_corruption() {
    // The last frame's payload ends in zeros and the frame ends 16 bytes into a sector. Without
    // the frame trailer that sector held only zeros, looked like a sector that never landed,
    // and a flipped bit anywhere in the frame was taken for a torn write: the acknowledged
    // entry was cut. The trailer keeps that sector non-zero, so the flip is corruption.
    let dir = TempDir::new("t02-flip-zero-tail");
    run(async {
        let (log, _) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        log.append(entries(1, 1..=ENTRIES - 1))
            .await
            .expect("append");
        log.close().await.expect("close");
    });
    let path = segment_files(dir.path()).last().expect("a segment").clone();
    let (_, frame_start) = frame_offsets(&path);
    let sector = (frame_start as usize / SECTOR_SIZE + 2) * SECTOR_SIZE;
    let payload_size = sector + 8 - frame_start as usize - FRAME_HEADER_SIZE;
    let mut payload = vec![7u8; payload_size];
    payload[payload_size - 24..].fill(0);
    run(async {
        let (log, _) = open(dir.path(), SEGMENT_SIZE_SMALL).await;
        let last = LogEntry {
            term: 1,
            index: ENTRIES,
            payload,
        };
        log.append(vec![last]).await.expect("append");
    });
    let (offsets, end) = frame_offsets(&path);
    assert_eq!(*offsets.last().expect("frames"), frame_start);
    assert_eq!(
        end as usize,
        sector + 16,
        "the frame ends 16 bytes into a sector"
    );
    flip_byte(&path, frame_start + FRAME_HEADER_SIZE as u64 + 3);
    assert_corrupt(dir.path(), &path, frame_start);
}
