//! Opening a log: read the purge point, list the segments, finish an interrupted purge, scan
//! every frame (checksum, index sequence, segment continuity) to rebuild the index, and decide
//! what to do with whatever follows the last valid frame. Called by `PartitionLog::open` only.
//!
//! # Torn tail or corruption
//! The writer writes at most `FLUSH_SIZE_MAX` bytes per fdatasync, starting at the block that
//! holds the durable end, and re-writes the bytes before the durable end unchanged; bytes past
//! the durable end were zero (fresh file space, or zeroed by a cut). A crash mid-write
//! therefore leaves sectors of the last write either new or zero. The writer's zero fill
//! (`LogOptions::zero_ahead`) only adds zeros past everything it wrote, so zero sectors at
//! the end of a file are treated as the file not reaching there. Let X be the offset where the
//! scan of a segment stopped. Then:
//! - nothing after X, or only zeros: a clean end;
//! - in any segment but the last: corruption;
//! - in the last segment, the damage is a **torn tail**, cut off and reported, only if all of
//!   these hold: (1) the region from X's block to the last non-zero sector fits one write;
//!   (2) the frame at X is visibly incomplete: it runs past the end of the file, or one of the 512-byte
//!   sectors it covers is zero from the frame (or sector) start to the sector end, as a sector
//!   that never landed is; (3) no valid frame starts anywhere after X.
//! - anything else is `StorageError::Corrupt` naming the file and X: a bad checksum in a frame
//!   whose sectors all hold data is a flipped bit, not a torn write, even in the last frame, and
//!   the log refuses to open rather than drop an entry that may have been acknowledged.
//!
//! (2) mistakes a corrupt last frame for a torn one only if the damaged frame also ends in a
//! sector holding nothing but zero payload bytes and padding; (3) errs the other way: a torn
//! write whose later sectors landed before an earlier one is reported as corruption. Both err
//! on the side of never serving wrong data.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use monoio::fs::File;

use crate::aligned::{align_down, align_up, AlignedBuffer, BLOCK_SIZE};
use crate::files::{self, WindowReader};
use crate::frame::{self, FrameCheck, FRAME_ALIGNMENT, FRAME_HEADER_SIZE, FRAME_MAGIC};
use crate::log::{Recovery, TornTail, FLUSH_SIZE_MAX, READ_WINDOW_SIZE_MAX};
use crate::state::{Location, Segment, State};
use crate::{durable_file, StorageError};

/// The smallest unit a disk writes atomically; a torn write leaves whole sectors old or new.
pub const SECTOR_SIZE: usize = 512;
/// The durable file, in the log's directory, that holds the purge point.
pub const META_FILE_NAME: &str = "log-meta";
const META_VERSION: u32 = 0;
const META_SIZE: usize = 12;

const _: () = assert!(BLOCK_SIZE % SECTOR_SIZE == 0);
const _: () = assert!(SECTOR_SIZE % FRAME_ALIGNMENT == 0);

/// What follows the last valid frame of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailVerdict {
    Clean,
    Torn,
    Corrupt(&'static str),
}

/// Recovers the log in `dir`; the caller created and locked the directory.
pub async fn recover(
    dir: &Path,
    write_buffer: AlignedBuffer,
) -> Result<(State, Recovery), StorageError> {
    let purged_before = read_purge_point(dir).await?;
    let names = remove_purged_segments(dir, list_segments(dir)?, purged_before).await?;
    let mut state = State::new(purged_before, write_buffer);
    let mut recovery = Recovery::default();
    let mut previous_next: Option<u64> = None;
    let count = names.len();
    for (position, (first_index, path)) in names.into_iter().enumerate() {
        let continues = match previous_next {
            Some(next) => first_index == next,
            None => purged_before == 0 || first_index <= purged_before,
        };
        if !continues {
            let what = "segment does not continue the log";
            return Err(StorageError::Corrupt {
                path,
                offset: 0,
                what,
            });
        }
        let is_last = position + 1 == count;
        let (next, torn) = recover_segment(&mut state, first_index, path, is_last).await?;
        previous_next = Some(next);
        recovery.torn_tail = recovery.torn_tail.or(torn);
    }
    remove_empty_last_segment(&mut state, dir).await?;
    state.next_index = match state.segments.back() {
        Some(last) => Some(last.next_index()),
        None => (purged_before > 0).then_some(purged_before),
    };
    recovery.entries = state
        .segments
        .iter()
        .map(|segment| segment.locations.len() as u64)
        .sum();
    Ok((state, recovery))
}

/// Scans one segment, cuts a torn tail off the last one, and adds it to `state`. Returns the
/// index after its last frame and the torn tail, if any.
async fn recover_segment(
    state: &mut State,
    first_index: u64,
    path: PathBuf,
    is_last: bool,
) -> Result<(u64, Option<TornTail>), StorageError> {
    let file = files::open_segment(&path).await?;
    let size = files::file_size(&file, &path).await?;
    let base_index = first_index.max(state.purged_before);
    let scan = scan_segment(&file, &path, size, first_index, base_index).await?;
    let mut torn = None;
    let mut file_end = size;
    // Zeros past the last frame are the writer's zero fill or space a write never reached.
    let data_end = data_end(&file, &path, scan.end, size).await?;
    if scan.end < data_end {
        match judge_tail(&file, &path, data_end, scan.end, is_last).await? {
            TailVerdict::Clean => {}
            TailVerdict::Torn => {
                let buffer = state.write_buffer.take().expect("the writer's buffer");
                let (result, buffer) = files::cut_segment(&file, &path, scan.end, buffer).await;
                state.write_buffer = Some(buffer);
                result?;
                state.tail_of = Some(first_index);
                file_end = align_up(scan.end);
                let (offset, bytes_discarded) = (scan.end, size - scan.end);
                torn = Some(TornTail {
                    path: path.clone(),
                    offset,
                    bytes_discarded,
                });
            }
            TailVerdict::Corrupt(what) => {
                return Err(StorageError::Corrupt {
                    path,
                    offset: scan.end,
                    what,
                });
            }
        }
    }
    state.segments.push_back(Segment {
        first_index,
        path,
        file: Some(Rc::new(file)),
        base_index,
        locations: scan.locations,
        durable_end: scan.end,
        staged_end: scan.end,
        file_end,
    });
    Ok((scan.next_index, torn))
}

/// The valid frames from the start of a segment, in index sequence.
struct Scan {
    /// Frames of entries `>= base_index`.
    locations: Vec<Location>,
    /// Where the last valid frame ends.
    end: u64,
    next_index: u64,
}

async fn scan_segment(
    file: &File,
    path: &Path,
    size: u64,
    first_index: u64,
    base_index: u64,
) -> Result<Scan, StorageError> {
    let mut reader = WindowReader::new(file, path, size, READ_WINDOW_SIZE_MAX);
    let mut scan = Scan {
        locations: Vec::new(),
        end: 0,
        next_index: first_index,
    };
    while scan.end < size {
        let FrameCheck::Valid(header) = check_at(&mut reader, scan.end).await? else {
            break;
        };
        if header.index != scan.next_index {
            break; // judged by `classify_tail`: a valid frame out of sequence is corruption
        }
        let frame_size = header.frame_size() as u32;
        if header.index >= base_index {
            let location = Location {
                offset: scan.end,
                term: header.term,
                size: frame_size,
            };
            scan.locations.push(location);
        }
        scan.end += frame_size as u64;
        scan.next_index += 1;
    }
    Ok(scan)
}

/// Checks the frame at `position`, reading as much as its header declares.
async fn check_at(
    reader: &mut WindowReader<'_>,
    position: u64,
) -> Result<FrameCheck, StorageError> {
    let header = reader.bytes(position, FRAME_HEADER_SIZE).await?;
    let wanted = frame::declared_payload_size(header).map_or(FRAME_HEADER_SIZE, |payload_size| {
        frame::frame_size(payload_size)
    });
    let bytes = reader.bytes(position, wanted).await?;
    Ok(frame::check(bytes))
}

/// Where the bytes after `end` stop being zeros: the end of the last sector in `end..size`
/// holding a non-zero byte, or `end` if there is none.
async fn data_end(file: &File, path: &Path, end: u64, size: u64) -> Result<u64, StorageError> {
    if end >= size {
        return Ok(end);
    }
    let window = (size - align_down(end)).min(READ_WINDOW_SIZE_MAX as u64) as usize;
    let mut reader = WindowReader::new(file, path, size, window);
    let mut data_end = end;
    let mut position = end;
    while position < size {
        let wanted = window - (position - align_down(position)) as usize;
        let bytes = reader.bytes(position, wanted).await?;
        if bytes.is_empty() {
            return Err(files::short("read", path));
        }
        if let Some(last) = bytes.iter().rposition(|&byte| byte != 0) {
            let sector_end = (position + last as u64 + 1).next_multiple_of(SECTOR_SIZE as u64);
            data_end = sector_end.min(size);
        }
        position += bytes.len() as u64;
    }
    Ok(data_end)
}

/// Reads what follows `end` (from its block on) up to `size` and classifies it.
async fn judge_tail(
    file: &File,
    path: &Path,
    size: u64,
    end: u64,
    is_last: bool,
) -> Result<TailVerdict, StorageError> {
    let from = align_down(end);
    let span = size - from;
    if span > FLUSH_SIZE_MAX as u64 {
        return Ok(TailVerdict::Corrupt("damaged region larger than one write"));
    }
    let mut reader = WindowReader::new(file, path, size, span as usize);
    let tail = reader.bytes(from, span as usize).await?;
    if tail.len() as u64 != span {
        return Err(files::short("read", path));
    }
    Ok(classify_tail(tail, (end - from) as usize, is_last))
}

/// Classifies the bytes after the last valid frame (see the module documentation). `tail`
/// starts at the block holding that frame's end and runs to the end of the file; `stop` is
/// the frame's end within `tail`.
pub fn classify_tail(tail: &[u8], stop: usize, is_last: bool) -> TailVerdict {
    let rest = &tail[stop..];
    let padding_only = stop > 0 && tail.len() <= BLOCK_SIZE && is_zero(rest);
    if rest.is_empty() || padding_only {
        return TailVerdict::Clean;
    }
    let check = frame::check(rest);
    let (what, incomplete) = match check {
        FrameCheck::Short => ("frame cut short", true),
        FrameCheck::BadHeader(what) => {
            let header_end = stop + FRAME_HEADER_SIZE.min(rest.len());
            (what, has_missing_sector(tail, stop, header_end))
        }
        FrameCheck::BadChecksum { .. } => {
            let payload_size = frame::declared_payload_size(rest).unwrap_or(0);
            // The whole frame, trailer included: its last sector holds the (never zero)
            // trailer, so only a sector that never landed can be all zero there.
            let frame_end = stop + frame::frame_size(payload_size);
            (
                "checksum mismatch",
                has_missing_sector(tail, stop, frame_end),
            )
        }
        FrameCheck::Valid(_) => ("entry index out of sequence", false),
    };
    if !is_last || tail.len() > FLUSH_SIZE_MAX || !incomplete {
        return TailVerdict::Corrupt(what);
    }
    if valid_frame_after(tail, stop) {
        return TailVerdict::Corrupt("a valid frame follows a damaged one");
    }
    TailVerdict::Torn
}

/// Whether a sector overlapping `tail[from..to]` is zero from `from` (or its start) to its end
/// or the end of the file: what a sector that never landed looks like.
fn has_missing_sector(tail: &[u8], from: usize, to: usize) -> bool {
    let mut sector = from - from % SECTOR_SIZE;
    while sector < to {
        let start = from.max(sector);
        let end = (sector + SECTOR_SIZE).min(tail.len());
        if start >= end || is_zero(&tail[start..end]) {
            return true;
        }
        sector += SECTOR_SIZE;
    }
    false
}

/// Whether a complete, valid frame starts at any frame position after `stop`.
fn valid_frame_after(tail: &[u8], stop: usize) -> bool {
    let mut position = stop + FRAME_ALIGNMENT;
    while position + FRAME_HEADER_SIZE <= tail.len() {
        let candidate = &tail[position..];
        if candidate[0..4] == FRAME_MAGIC && matches!(frame::check(candidate), FrameCheck::Valid(_))
        {
            return true;
        }
        position += FRAME_ALIGNMENT;
    }
    false
}

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&byte| byte == 0)
}

/// Creates the log's directory (and makes its entry durable) if it does not exist.
pub async fn ensure_directory(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .map_err(|error| StorageError::io("create directory", dir, error))?;
    match dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        Some(parent) => files::sync_directory(parent).await,
        None => Ok(()),
    }
}

/// Segment files in `dir`, by first index. Other files (the meta file, temporaries) are not
/// the log's business here.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let listing = |error| StorageError::io("list directory", dir, error);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = entry.file_name();
        if let Some(first_index) = name.to_str().and_then(files::parse_segment_file_name) {
            names.push((first_index, entry.path()));
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Finishes an interrupted purge: unlinks the segments whose successor starts at or below the
/// purge point (all their entries are purged). The last segment is judged after its scan.
async fn remove_purged_segments(
    dir: &Path,
    mut names: Vec<(u64, PathBuf)>,
    purged_before: u64,
) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut purged = 0;
    while purged + 1 < names.len() && names[purged + 1].0 <= purged_before {
        purged += 1;
    }
    for (_, path) in &names[..purged] {
        files::remove(path).await?;
    }
    if purged > 0 {
        files::sync_directory(dir).await?;
    }
    Ok(names.split_off(purged))
}

/// Unlinks the last segment if no unpurged entry is left in it (an empty file, a torn first
/// write, or a purge past its end that was interrupted).
async fn remove_empty_last_segment(state: &mut State, dir: &Path) -> Result<(), StorageError> {
    let Some(last) = state.segments.back() else {
        return Ok(());
    };
    if !last.locations.is_empty() {
        return Ok(());
    }
    files::remove(&last.path).await?;
    files::sync_directory(dir).await?;
    if state.tail_of == Some(last.first_index) {
        state.tail_of = None;
    }
    state.segments.pop_back();
    Ok(())
}

/// The purge point in `dir`'s meta file, 0 if the log was never purged.
pub async fn read_purge_point(dir: &Path) -> Result<u64, StorageError> {
    let Some(bytes) = durable_file::read(dir, META_FILE_NAME).await? else {
        return Ok(0);
    };
    let layout_ok = bytes.len() == META_SIZE && bytes[0..4] == META_VERSION.to_le_bytes();
    if !layout_ok {
        let path = dir.join(META_FILE_NAME);
        return Err(StorageError::Corrupt {
            path,
            offset: 0,
            what: "unknown log meta layout",
        });
    }
    let mut index = [0; 8];
    index.copy_from_slice(&bytes[4..12]);
    Ok(u64::from_le_bytes(index))
}

/// Persists the purge point (tmp file, fsync, rename, directory fsync).
pub async fn write_purge_point(dir: &Path, index: u64) -> Result<(), StorageError> {
    let mut bytes = [0; META_SIZE];
    bytes[0..4].copy_from_slice(&META_VERSION.to_le_bytes());
    bytes[4..12].copy_from_slice(&index.to_le_bytes());
    durable_file::write(dir, META_FILE_NAME, &bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(count: u64, payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for index in 1..=count {
            frame::encode(&mut bytes, 1, index, payload);
        }
        bytes
    }

    #[test]
    fn zero_padding_in_the_last_block_is_clean() {
        let mut tail = frames(2, b"abc");
        let stop = tail.len();
        tail.resize(BLOCK_SIZE, 0);
        assert_eq!(classify_tail(&tail, stop, true), TailVerdict::Clean);
        assert_eq!(classify_tail(&tail, stop, false), TailVerdict::Clean);
        tail.resize(BLOCK_SIZE + 100, 0);
        assert_eq!(classify_tail(&tail, stop, true), TailVerdict::Torn);
        assert!(matches!(
            classify_tail(&tail, stop, false),
            TailVerdict::Corrupt(_)
        ));
    }

    #[test]
    fn a_cut_frame_is_torn_but_a_flipped_one_is_corrupt() {
        let payload = vec![0xab; 2000];
        let mut tail = frames(3, &payload);
        let stop = frame::frame_size(payload.len()) * 2;
        for cut in [stop + 1, stop + 40, tail.len() - 1] {
            assert_eq!(
                classify_tail(&tail[..cut], stop, true),
                TailVerdict::Torn,
                "cut {cut}"
            );
        }
        tail[stop + 100] ^= 1;
        assert_eq!(
            classify_tail(&tail, stop, true),
            TailVerdict::Corrupt("checksum mismatch")
        );
    }

    #[test]
    fn a_missing_sector_is_torn_unless_a_valid_frame_follows() {
        let payload = vec![0xcd; 1500];
        let size = frame::frame_size(payload.len());
        let mut tail = frames(3, &payload);
        tail.resize(tail.len().next_multiple_of(BLOCK_SIZE), 0);
        let stop = size;
        // The second sector of the second frame never landed; the third frame did.
        let sector = (stop / SECTOR_SIZE + 1) * SECTOR_SIZE;
        tail[sector..sector + SECTOR_SIZE].fill(0);
        let verdict = classify_tail(&tail, stop, true);
        assert_eq!(
            verdict,
            TailVerdict::Corrupt("a valid frame follows a damaged one")
        );
        tail[2 * size..].fill(0);
        assert_eq!(classify_tail(&tail, stop, true), TailVerdict::Torn);
    }
}
