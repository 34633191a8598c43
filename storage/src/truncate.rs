//! `truncate_from` and `purge_before` on disk: the slow-path changes that remove entries.
//! `PartitionLog` calls them holding an exclusive turn with the writer idle, and poisons the
//! log if one stops half-way. Each step leaves the files in a state recovery accepts as a
//! prefix (truncate) or suffix (purge) of the log before the call, and the index in memory
//! only follows a step once it is durable.
//!
//! Truncate order: unlink whole segments from the last one back, fsync the directory (so no
//! later segment can reappear after the cut), then cut the last kept segment (`cut_segment`:
//! size first, then the zeroed block). Purge order: persist the new first index in `log-meta`
//! first, then unlink the segments wholly below it from the front, then fsync the directory.

use crate::files;
use crate::log::Shared;
use crate::recovery;
use crate::StorageError;

/// Removes every entry `>= index`; the caller checked `first <= index < next`.
pub async fn truncate_from(shared: &Shared, index: u64) -> Result<(), StorageError> {
    let mut removed = false;
    loop {
        let path = {
            let state = shared.state.borrow();
            match state.segments.back() {
                Some(segment) if segment.base_index >= index => segment.path.clone(),
                _ => break,
            }
        };
        files::remove(&path).await?;
        let mut state = shared.state.borrow_mut();
        state.segments.pop_back();
        state.stats.segments_removed += 1;
        state.tail_of = None;
        removed = true;
    }
    if removed {
        files::sync_directory(&shared.dir).await?;
    }
    cut_last_segment(shared, index).await?;
    shared.state.borrow_mut().next_index = Some(index);
    Ok(())
}

/// Cuts the last segment before the frame of `index`, if it holds that frame.
async fn cut_last_segment(shared: &Shared, index: u64) -> Result<(), StorageError> {
    let (file, path, cut, buffer) = {
        let mut state = shared.state.borrow_mut();
        let Some(segment) = state.segments.back() else {
            return Ok(());
        };
        let Some(location) = segment.location(index) else {
            return Ok(());
        };
        let file = segment
            .file
            .clone()
            .expect("an idle log's segments have files");
        let (path, cut) = (segment.path.clone(), location.offset);
        (
            file,
            path,
            cut,
            state.write_buffer.take().expect("the writer's buffer"),
        )
    };
    let (result, buffer) = files::cut_segment(&file, &path, cut, buffer).await;
    let mut state = shared.state.borrow_mut();
    state.write_buffer = Some(buffer);
    result?;
    let segment = state.segments.back_mut().expect("the cut segment");
    let kept = (index - segment.base_index) as usize;
    segment.locations.truncate(kept);
    assert!(
        !segment.locations.is_empty(),
        "a segment emptied by a cut is unlinked instead"
    );
    segment.durable_end = cut;
    segment.staged_end = cut;
    segment.file_end = crate::aligned::align_up(cut);
    let first_index = segment.first_index;
    state.tail_of = Some(first_index);
    if cut % crate::BLOCK_SIZE as u64 != 0 {
        state.stats.writes += 1;
        state.stats.fdatasyncs += 1;
    }
    Ok(())
}

/// Makes `index` the log's first index; the caller checked it is above the current one.
pub async fn purge_before(shared: &Shared, index: u64) -> Result<(), StorageError> {
    recovery::write_purge_point(&shared.dir, index).await?;
    shared.state.borrow_mut().purged_before = index;
    let mut removed = false;
    loop {
        let path = {
            let state = shared.state.borrow();
            match state.segments.front() {
                Some(segment) if segment.next_index() <= index => segment.path.clone(),
                _ => break,
            }
        };
        files::remove(&path).await?;
        let mut state = shared.state.borrow_mut();
        state.segments.pop_front();
        state.stats.segments_removed += 1;
        removed = true;
    }
    if removed {
        files::sync_directory(&shared.dir).await?;
    }
    let mut state = shared.state.borrow_mut();
    if let Some(front) = state.segments.front_mut() {
        if front.base_index < index {
            let purged = (index - front.base_index) as usize;
            front.locations.drain(..purged);
            front.base_index = index;
        }
    } else {
        state.tail_of = None;
    }
    state.next_index = Some(state.next_index.map_or(index, |next| next.max(index)));
    Ok(())
}
