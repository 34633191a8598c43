//! The log's writer task: the only code that writes frames to segment files. It is spawned on
//! the log's monoio thread by `PartitionLog::open` and runs until the log is dropped (after
//! writing what was staged) or an I/O error stops it.
//!
//! One flush: take the pending frames of the oldest segment that has any (whole frames, at
//! most `FLUSH_SIZE_MAX` bytes with the kept part of its last block in front), write them
//! with one `write_at` from the block boundary at or before the durable end (the file is
//! `O_DIRECT | O_DSYNC`: the write returns once durable, as write + `fdatasync` would), and
//! only then advance `durable_total` and wake the appenders whose tickets it reached. Appends
//! staged while a flush is in flight wait for the next one, which takes all of them at once:
//! that is the group commit. Nothing is acknowledged before its write is durable.
//!
//! Before and after each flush it zeroes the last segment ahead of its end when the zeroed
//! room runs low (`zero_ahead`) and its recent flushes were small: zeros only ever go past
//! every byte it wrote, so they never touch a frame.

use std::rc::Rc;

use monoio::buf::IoBuf;
use monoio::fs::File;

use crate::aligned::{align_down, align_up, AlignedBuffer, BLOCK_SIZE};
use crate::files;
use crate::log::{LogOptions, Shared, FLUSH_SIZE_MAX, ZERO_AHEAD_FLUSH_SIZE_MAX};
use crate::state::{Failure, State};
use crate::StorageError;

/// What one flush writes; `prepare_flush` builds it, `complete_flush` applies it.
struct Flush {
    first_index: u64,
    write_offset: u64,
    write_size: usize,
    /// Pending frame bytes in the write (after the kept prefix of the first block).
    frame_bytes: u64,
    entries: u64,
}

/// The writer task: flushes until the log closes with nothing pending, or a flush fails.
pub async fn run(shared: Rc<Shared>) {
    flush_until_closed(&shared).await;
    shared.state.borrow_mut().writer_running = false;
    shared.lock.borrow_mut().take();
    shared.durable.notify_all();
}

async fn flush_until_closed(shared: &Shared) {
    loop {
        shared
            .work
            .wait_until(|| {
                let state = shared.state.borrow();
                state.has_pending() || state.closed || state.failure.is_some()
            })
            .await;
        {
            let state = shared.state.borrow();
            if state.failure.is_some() || !state.has_pending() {
                break;
            }
        }
        if let Err(error) = zero_ahead(shared).await {
            fail(shared, "zero fill", &error);
            break;
        }
        let flushed = flush(shared).await;
        shared.state.borrow_mut().flushing = false;
        if let Err(error) = flushed {
            fail(shared, "flush", &error);
            break;
        }
        shared.durable.notify_all();
        if let Err(error) = zero_ahead(shared).await {
            fail(shared, "zero fill", &error);
            break;
        }
    }
}

/// Poisons the log after a failed write and wakes everyone waiting on it.
fn fail(shared: &Shared, operation: &'static str, error: &StorageError) {
    let failure = Failure::from_error(operation, &shared.dir, error);
    shared.state.borrow_mut().failure = Some(failure);
    shared.durable.notify_all();
}

/// Keeps the last segment's file zeroed past its staged end, before and after each flush:
/// once less than half of `zero_ahead` is left, one write of `zero_ahead` zeros (not past the
/// segment's size limit), durable like every write. Not before a large flush, nor while
/// recent flushes were large (`ZERO_AHEAD_FLUSH_SIZE_MAX`): a large write amortizes its
/// metadata, and zeros ahead of it would double what reaches the disk. It counts as a flush,
/// so truncates and purges wait.
async fn zero_ahead(shared: &Shared) -> Result<(), StorageError> {
    let Some(fill) = next_zero_fill(&mut shared.state.borrow_mut(), &shared.options) else {
        return Ok(());
    };
    let result = write_zero_fill(shared, &fill).await;
    let mut state = shared.state.borrow_mut();
    state.flushing = false;
    if result.is_ok() {
        let position = position_of(&state, fill.first_index);
        let segment = &mut state.segments[position];
        segment.file_end = segment.file_end.max(fill.offset + fill.size as u64);
        state.stats.zero_fills += 1;
        state.stats.bytes_zeroed += fill.size as u64;
    }
    drop(state);
    shared.durable.notify_all();
    result
}

/// Zeros to write past a segment's file end.
struct ZeroFill {
    first_index: u64,
    file: Rc<File>,
    offset: u64,
    size: usize,
}

/// The zero fill due now, if any; marks the writer as flushing.
fn next_zero_fill(state: &mut State, options: &LogOptions) -> Option<ZeroFill> {
    let ahead = options.zero_ahead;
    if ahead == 0 || state.closed || state.flush_size_recent > ZERO_AHEAD_FLUSH_SIZE_MAX {
        return None;
    }
    let segment = state.segments.back()?;
    let file = segment.file.clone()?;
    if segment.staged_end - segment.durable_end > ahead / 2 {
        return None;
    }
    let offset = align_up(segment.file_end);
    let limit = align_up(options.segment_size_max);
    if offset >= segment.staged_end + ahead / 2 || offset >= limit {
        return None;
    }
    state.flushing = true;
    Some(ZeroFill {
        first_index: segment.first_index,
        file,
        offset,
        size: ((offset + ahead).min(limit) - offset) as usize,
    })
}

/// Writes the zeros (from the writer's buffer, after the kept block), durably (`O_DSYNC`).
async fn write_zero_fill(shared: &Shared, fill: &ZeroFill) -> Result<(), StorageError> {
    let buffer = shared.state.borrow_mut().write_buffer.take();
    let mut buffer = buffer.expect("the writer's buffer");
    let (from, to) = (BLOCK_SIZE, BLOCK_SIZE + fill.size);
    assert!(to <= buffer.capacity());
    buffer.as_mut_slice_full()[from..to].fill(0);
    buffer.set_len(to);
    let (result, slice) = fill
        .file
        .write_at(buffer.slice(from..to), fill.offset)
        .await;
    shared.state.borrow_mut().write_buffer = Some(slice.into_inner());
    let path = || segment_path(shared, fill.first_index);
    match result {
        Ok(written) if written == fill.size => Ok(()),
        Ok(written) => Err(files::short_write(&path(), written, fill.size)),
        Err(error) => Err(StorageError::io("write", path(), error)),
    }
}

/// Writes one batch of pending frames, durably (`O_DSYNC`).
async fn flush(shared: &Shared) -> Result<(), StorageError> {
    let first_index = {
        let mut state = shared.state.borrow_mut();
        state.flushing = true;
        oldest_pending_segment(&state)
    };
    let file = segment_file(shared, first_index).await?;
    load_tail(shared, first_index, &file).await?;
    let (flush, buffer) = prepare_flush(&mut shared.state.borrow_mut(), first_index);
    let (result, slice) = file
        .write_at(buffer.slice(0..flush.write_size), flush.write_offset)
        .await;
    shared.state.borrow_mut().write_buffer = Some(slice.into_inner());
    match result {
        Ok(written) if written == flush.write_size => {}
        Ok(written) => {
            let path = segment_path(shared, first_index);
            return Err(files::short_write(&path, written, flush.write_size));
        }
        Err(error) => {
            return Err(StorageError::io(
                "write",
                segment_path(shared, first_index),
                error,
            ));
        }
    }
    complete_flush(&mut shared.state.borrow_mut(), &flush);
    Ok(())
}

/// The segment's path, for errors (the hot path does not clone it).
fn segment_path(shared: &Shared, first_index: u64) -> std::path::PathBuf {
    let state = shared.state.borrow();
    state.segments[position_of(&state, first_index)]
        .path
        .clone()
}

/// The first index of the oldest segment with pending frames (they are at the tail).
fn oldest_pending_segment(state: &State) -> u64 {
    let mut oldest = None;
    for segment in state.segments.iter().rev() {
        if segment.pending_size() == 0 {
            break;
        }
        oldest = Some(segment.first_index);
    }
    oldest.expect("the writer flushes only when frames are pending")
}

fn position_of(state: &State, first_index: u64) -> usize {
    let found = state
        .segments
        .binary_search_by_key(&first_index, |segment| segment.first_index);
    found.expect("the flushed segment is in the log")
}

/// The segment's file, created (and its directory entry made durable) on its first write.
async fn segment_file(shared: &Shared, first_index: u64) -> Result<Rc<File>, StorageError> {
    let file = {
        let state = shared.state.borrow();
        state.segments[position_of(&state, first_index)]
            .file
            .clone()
    };
    if let Some(file) = file {
        return Ok(file);
    }
    let path = segment_path(shared, first_index);
    let file = Rc::new(files::create_segment(&shared.dir, &path).await?);
    let mut state = shared.state.borrow_mut();
    let position = position_of(&state, first_index);
    state.segments[position].file = Some(file.clone());
    state.stats.segments_created += 1;
    Ok(file)
}

/// Makes the write buffer's first block hold the kept part of the segment's last block.
async fn load_tail(shared: &Shared, first_index: u64, file: &File) -> Result<(), StorageError> {
    let (durable_end, path, buffer) = {
        let mut state = shared.state.borrow_mut();
        let segment = &state.segments[position_of(&state, first_index)];
        let durable_end = segment.durable_end;
        if durable_end % BLOCK_SIZE as u64 == 0 || state.tail_of == Some(first_index) {
            state.tail_of = Some(first_index);
            return Ok(());
        }
        let path = segment.path.clone();
        (
            durable_end,
            path,
            state.write_buffer.take().expect("the writer's buffer"),
        )
    };
    let (result, buffer) = files::read_block(file, &path, align_down(durable_end), buffer).await;
    let mut state = shared.state.borrow_mut();
    state.write_buffer = Some(buffer);
    result?;
    state.tail_of = Some(first_index);
    Ok(())
}

/// Copies the next batch of the segment's pending frames behind its kept tail bytes.
fn prepare_flush(state: &mut State, first_index: u64) -> (Flush, AlignedBuffer) {
    let position = position_of(state, first_index);
    let segment = &state.segments[position];
    assert_eq!(state.tail_of, Some(first_index));
    let durable_end = segment.durable_end;
    let kept = (durable_end % BLOCK_SIZE as u64) as usize;
    let room = (FLUSH_SIZE_MAX - kept) as u64;
    let locations = &segment.locations;
    let first = locations.partition_point(|location| location.offset < durable_end);
    let last = locations.partition_point(|location| location.end() <= durable_end + room);
    assert!(last > first, "a whole frame always fits one flush");
    assert_eq!(locations[first].offset, durable_end);
    let frame_bytes = locations[last - 1].end() - durable_end;
    let write_size = align_up(kept as u64 + frame_bytes) as usize;
    assert!(write_size <= FLUSH_SIZE_MAX);
    // The oldest pending segment's frames are at the front of the pending buffer.
    let frames = &state.pending.as_slice()[..frame_bytes as usize];
    let mut buffer = state.write_buffer.take().expect("the writer's buffer");
    let bytes = buffer.as_mut_slice_full();
    bytes[kept..kept + frames.len()].copy_from_slice(frames);
    bytes[kept + frames.len()..write_size].fill(0);
    buffer.set_len(write_size);
    let flush = Flush {
        first_index,
        write_offset: align_down(durable_end),
        write_size,
        frame_bytes,
        entries: (last - first) as u64,
    };
    (flush, buffer)
}

/// After the durable write: the frames are durable; keep the new last block's bytes for the next
/// write.
fn complete_flush(state: &mut State, flush: &Flush) {
    let position = position_of(state, flush.first_index);
    let segment = &mut state.segments[position];
    segment.durable_end += flush.frame_bytes;
    let written_end = flush.write_offset + flush.write_size as u64;
    segment.file_end = segment.file_end.max(written_end);
    assert!(segment.durable_end <= segment.staged_end);
    let durable_end = segment.durable_end;
    state.pending.consume(flush.frame_bytes as usize);
    state.durable_total += flush.frame_bytes;
    let kept = (durable_end % BLOCK_SIZE as u64) as usize;
    let last_block = (align_down(durable_end) - flush.write_offset) as usize;
    let buffer = state.write_buffer.as_mut().expect("the writer's buffer");
    buffer
        .as_mut_slice_full()
        .copy_within(last_block..last_block + kept, 0);
    let size = flush.write_size as u64;
    state.flush_size_recent = (state.flush_size_recent * 3 + size) / 4;
    let stats = &mut state.stats;
    stats.writes += 1;
    stats.fdatasyncs += 1;
    stats.bytes_written += flush.write_size as u64;
    stats.entries_appended += flush.entries;
    stats.flush_entries_max = stats.flush_entries_max.max(flush.entries);
}
