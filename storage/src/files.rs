//! File-level helpers of the log: segment names, opening and creating segment files
//! (`SEGMENT_FLAGS`), the durable cut of a segment's tail, unlinking, directory fsync, and
//! [`WindowReader`], the bounds-checked aligned reader that recovery and `read` share.
//!
//! Every helper maps an `io::Error` to `StorageError::Io` naming the operation and the path.
//! The hot path (the writer's `write_at`) lives in `writer.rs`; what is here runs on open, on
//! truncation and purge, and on reads.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use monoio::buf::{IoBuf, IoBufMut};
use monoio::fs::File;

use crate::aligned::{align_down, align_up, AlignedBuffer, BLOCK_SIZE};
use crate::StorageError;

const SEGMENT_PREFIX: &str = "log-";
const SEGMENT_SUFFIX: &str = ".seg";
const SEGMENT_DIGITS: usize = 20;

/// `log-00000000000000000001.seg` for a segment whose first entry has index 1.
pub fn segment_file_name(first_index: u64) -> String {
    format!("{SEGMENT_PREFIX}{first_index:0SEGMENT_DIGITS$}{SEGMENT_SUFFIX}")
}

/// The first index a segment file name carries, or `None` if it is not a segment name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// How segment files are opened: `O_DIRECT` (no page cache; aligned buffers) and `O_DSYNC`
/// (a write completes once its data, and the metadata needed to read it, is durable: a write
/// and an `fdatasync` in one operation, one trip through io_uring instead of two in a row).
const SEGMENT_FLAGS: i32 = libc::O_DIRECT | libc::O_DSYNC;

/// Opens an existing segment file for reads and durable writes (`SEGMENT_FLAGS`).
pub async fn open_segment(path: &Path) -> Result<File, StorageError> {
    monoio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(SEGMENT_FLAGS)
        .open(path)
        .await
        .map_err(|error| StorageError::io("open segment", path, error))
}

/// Creates a new, empty segment file and makes its directory entry durable.
pub async fn create_segment(dir: &Path, path: &Path) -> Result<File, StorageError> {
    let file = monoio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(SEGMENT_FLAGS)
        .open(path)
        .await
        .map_err(|error| StorageError::io("create segment", path, error))?;
    sync_directory(dir).await?;
    Ok(file)
}

/// The size of an open file.
pub async fn file_size(file: &File, path: &Path) -> Result<u64, StorageError> {
    let metadata = file
        .metadata()
        .await
        .map_err(|error| StorageError::io("stat", path, error))?;
    Ok(metadata.len())
}

/// fsyncs a directory, making the creation, rename or removal of its entries durable.
pub async fn sync_directory(dir: &Path) -> Result<(), StorageError> {
    let handle =
        std::fs::File::open(dir).map_err(|error| StorageError::io("open directory", dir, error))?;
    let directory =
        File::from_std(handle).map_err(|error| StorageError::io("open directory", dir, error))?;
    directory
        .sync_all()
        .await
        .map_err(|error| StorageError::io("fsync directory", dir, error))
}

/// Takes an exclusive advisory lock (`flock`) on the directory, held while the returned
/// handle is open: two logs never write the same files.
pub fn lock_directory(dir: &Path) -> Result<std::fs::File, StorageError> {
    let handle =
        std::fs::File::open(dir).map_err(|error| StorageError::io("open directory", dir, error))?;
    // SAFETY: the descriptor is open for the lifetime of `handle`; flock touches no memory.
    let result = unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        return Ok(handle);
    }
    let error = std::io::Error::last_os_error();
    if error.kind() == std::io::ErrorKind::WouldBlock {
        return Err(StorageError::Locked {
            path: dir.to_path_buf(),
        });
    }
    Err(StorageError::io("flock", dir, error))
}

/// Unlinks a file (the caller fsyncs the directory).
pub async fn remove(path: &Path) -> Result<(), StorageError> {
    monoio::fs::remove_file(path)
        .await
        .map_err(|error| StorageError::io("unlink", path, error))
}

/// Sets a file's size with `ftruncate` (a metadata operation with no io_uring opcode).
pub fn set_size(file: &File, path: &Path, size: u64) -> Result<(), StorageError> {
    let size = libc::off_t::try_from(size).map_err(|_| {
        StorageError::io("ftruncate", path, std::io::ErrorKind::InvalidInput.into())
    })?;
    // SAFETY: the descriptor is open for the lifetime of `file`; ftruncate touches no memory.
    let result = unsafe { libc::ftruncate(file.as_raw_fd(), size) };
    if result != 0 {
        return Err(StorageError::io(
            "ftruncate",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Durably cuts a segment file at `cut`: afterwards its size is `align_up(cut)`, the bytes from
/// `cut` to there are zero, and `buffer[..cut % BLOCK_SIZE]` holds the kept part of the last
/// block (the writer's tail). Order: the size first (fsynced), then the zeroed block, so a crash
/// in between leaves a prefix of the old contents, never zeros followed by old frames.
pub async fn cut_segment(
    file: &File,
    path: &Path,
    cut: u64,
    buffer: AlignedBuffer,
) -> (Result<(), StorageError>, AlignedBuffer) {
    if let Err(error) = set_size(file, path, align_up(cut)) {
        return (Err(error), buffer);
    }
    if let Err(error) = file.sync_all().await {
        return (Err(StorageError::io("fsync", path, error)), buffer);
    }
    let kept = (cut % BLOCK_SIZE as u64) as usize;
    if kept == 0 {
        return (Ok(()), buffer);
    }
    let block_offset = align_down(cut);
    let (result, mut buffer) = read_block(file, path, block_offset, buffer).await;
    if let Err(error) = result {
        return (Err(error), buffer);
    }
    buffer.as_mut_slice_full()[kept..BLOCK_SIZE].fill(0);
    buffer.set_len(BLOCK_SIZE);
    let (result, slice) = file
        .write_at(buffer.slice(0..BLOCK_SIZE), block_offset)
        .await;
    let buffer = slice.into_inner();
    match result {
        Ok(written) if written == BLOCK_SIZE => {}
        Ok(written) => return (Err(short_write(path, written, BLOCK_SIZE)), buffer),
        Err(error) => return (Err(StorageError::io("write", path, error)), buffer),
    }
    match file.sync_data().await {
        Ok(()) => (Ok(()), buffer),
        Err(error) => (Err(StorageError::io("fdatasync", path, error)), buffer),
    }
}

/// Reads the block at `offset` into `buffer[..BLOCK_SIZE]`; bytes past the end of the file
/// read as zero.
pub async fn read_block(
    file: &File,
    path: &Path,
    offset: u64,
    mut buffer: AlignedBuffer,
) -> (Result<(), StorageError>, AlignedBuffer) {
    assert_eq!(offset % BLOCK_SIZE as u64, 0);
    buffer.as_mut_slice_full()[..BLOCK_SIZE].fill(0);
    buffer.set_len(0);
    let (result, slice) = file.read_at(buffer.slice_mut(0..BLOCK_SIZE), offset).await;
    let mut buffer = slice.into_inner();
    buffer.set_len(BLOCK_SIZE);
    match result {
        Ok(_) => (Ok(()), buffer),
        Err(error) => (Err(StorageError::io("read", path, error)), buffer),
    }
}

/// The error for a read that moved fewer bytes than asked without failing.
pub fn short(operation: &'static str, path: &Path) -> StorageError {
    StorageError::io(operation, path, std::io::ErrorKind::UnexpectedEof.into())
}

/// The error for a write that moved fewer bytes than asked without failing: a file system
/// writes what fits and says so this way when it runs out of space.
pub fn short_write(path: &Path, written: usize, wanted: usize) -> StorageError {
    let error = std::io::Error::new(
        std::io::ErrorKind::StorageFull,
        format!("wrote {written} of {wanted} bytes: no space left on the file system"),
    );
    StorageError::io("write", path, error)
}

/// Reads a file region through an aligned window, refilling it on demand. `limit` is where the
/// readable data ends (the file size, or a segment's durable end); nothing past it is returned.
pub struct WindowReader<'a> {
    file: &'a File,
    path: PathBuf,
    limit: u64,
    /// `None` only while a read is in flight.
    buffer: Option<AlignedBuffer>,
    /// File offset of the window's first byte.
    start: u64,
}

impl<'a> WindowReader<'a> {
    /// A reader with a window of `capacity` bytes (rounded up to blocks).
    pub fn new(file: &'a File, path: &Path, limit: u64, capacity: usize) -> WindowReader<'a> {
        let buffer = Some(AlignedBuffer::new(capacity));
        WindowReader {
            file,
            path: path.to_path_buf(),
            limit,
            buffer,
            start: 0,
        }
    }

    /// The bytes from `position` on, at least `size` of them unless the data ends first
    /// (then everything up to `limit`). `size` plus the block offset must fit the window.
    pub async fn bytes(&mut self, position: u64, size: usize) -> Result<&[u8], StorageError> {
        assert!(position <= self.limit);
        let wanted_end = self.limit.min(position + size as u64);
        let window_end = self.start + self.window().len() as u64;
        if position < self.start || wanted_end > window_end {
            self.fill(position).await?;
        }
        let window = self.window();
        let from = (position - self.start) as usize;
        let to = (self.limit - self.start).min(window.len() as u64) as usize;
        Ok(&window[from.min(to)..to])
    }

    fn window(&self) -> &[u8] {
        self.buffer.as_ref().expect("window buffer").as_slice()
    }

    /// Refills the window starting at the block holding `position`.
    async fn fill(&mut self, position: u64) -> Result<(), StorageError> {
        let start = align_down(position);
        let mut buffer = self.buffer.take().expect("window buffer");
        let want = align_up(self.limit - start).min(buffer.capacity() as u64) as usize;
        buffer.set_len(0);
        let mut filled = 0;
        while filled < want && start + (filled as u64) < self.limit {
            let (result, slice) = self
                .file
                .read_at(buffer.slice_mut(filled..want), start + filled as u64)
                .await;
            buffer = slice.into_inner();
            match result {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) => {
                    self.start = start;
                    self.buffer = Some(buffer);
                    return Err(StorageError::io("read", &self.path, error));
                }
            }
            buffer.set_len(filled);
        }
        buffer.set_len(filled);
        self.buffer = Some(buffer);
        self.start = start;
        Ok(())
    }
}
