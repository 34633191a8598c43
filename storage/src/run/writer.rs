//! [`RunWriter`]: writes a run (format in `run/mod.rs`) from keys given in ascending order.
//!
//! The run is written to `<name>.tmp` with `O_DIRECT` through one aligned buffer, in writes of
//! up to [`WRITE_SIZE`] bytes; [`RunWriter::finish`] adds the index, the filter, the page table and the footer,
//! makes the file durable (`fdatasync`), renames it to `<name>` and fsyncs the directory. So a
//! crash leaves either no run under `name` or the whole run; a leftover temporary file is
//! replaced by the next writer of that name. Keys out of order or a value of the wrong size
//! are the caller's bug and panic.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use monoio::fs::File;

use super::paged::PageTable;
use super::{
    entries_per_block, Filter, Footer, BLOCK_HEADER_SIZE, RUN_VALUE_SIZE_MAX, RUN_VERSION,
};
use crate::aligned::{AlignedBuffer, BLOCK_SIZE};
use crate::{files, StorageError};

/// Bytes the writer gathers before one write. Large: a checkpoint's writer shares a busy core
/// with the partition's other tasks and gets its turn back about once per batch applied, so
/// the bytes moved per turn bound how fast a checkpoint is written.
pub const WRITE_SIZE: usize = 8 << 20;
const TEMPORARY_SUFFIX: &str = ".tmp";

/// How a run is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Bytes of every value, at most [`RUN_VALUE_SIZE_MAX`]; 0 makes a set of keys.
    pub value_size: usize,
    /// The keys the run will hold, to size its filter (more or fewer only change its rate of
    /// false passes).
    pub keys_expected: u64,
    /// Filter bits per expected key: 10 lets about 1% of absent keys through; 0 makes no
    /// filter (every key passes it), for runs read by key range.
    pub filter_bits_per_key: u32,
    /// The filter's hash seed, stored in the run.
    pub filter_seed: u64,
}

/// See the module documentation.
pub struct RunWriter {
    dir: PathBuf,
    path: PathBuf,
    temporary: PathBuf,
    file: File,
    options: RunOptions,
    per_block: usize,
    /// Entries in the data block being filled, which lies in `buffer` right after its sealed
    /// bytes; its header is written when it is sealed.
    block_entries: usize,
    /// Sealed bytes not yet written (its length), and where in the file they go.
    buffer: AlignedBuffer,
    buffer_offset: u64,
    index: Vec<u128>,
    filter: Filter,
    keys: u64,
    first_key: u128,
    last_key: Option<u128>,
}

impl RunWriter {
    /// Starts the run `dir/name`, replacing a temporary file a crash may have left.
    pub async fn create(
        dir: &Path,
        name: &str,
        options: RunOptions,
    ) -> Result<RunWriter, StorageError> {
        assert!(!name.is_empty() && !name.contains('/') && !name.ends_with(TEMPORARY_SUFFIX));
        assert!(options.value_size <= RUN_VALUE_SIZE_MAX);
        let temporary = dir.join(format!("{name}{TEMPORARY_SUFFIX}"));
        let file = monoio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&temporary)
            .await
            .map_err(|error| StorageError::io("create run", &temporary, error))?;
        Ok(RunWriter {
            dir: dir.to_path_buf(),
            path: dir.join(name),
            temporary,
            file,
            options,
            per_block: entries_per_block(options.value_size),
            block_entries: 0,
            buffer: AlignedBuffer::new(WRITE_SIZE),
            buffer_offset: 0,
            index: Vec::new(),
            filter: match options.filter_bits_per_key {
                0 => Filter::passing_all(options.filter_seed),
                bits => Filter::new(options.keys_expected, bits, options.filter_seed),
            },
            keys: 0,
            first_key: 0,
            last_key: None,
        })
    }

    /// Keys pushed so far.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Adds `key` with `value`; `key` must be greater than every key pushed before.
    pub async fn push(&mut self, key: u128, value: &[u8]) -> Result<(), StorageError> {
        if self.add(key, value) {
            self.write_buffer().await?;
        }
        Ok(())
    }

    /// Adds `keys` with their `values` (each `value_size` bytes, one after another), as
    /// `push` one by one.
    pub async fn push_all(&mut self, keys: &[u128], values: &[u8]) -> Result<(), StorageError> {
        let size = self.options.value_size;
        assert_eq!(values.len(), keys.len() * size, "run values' size");
        for (at, key) in keys.iter().enumerate() {
            if self.add(*key, &values[at * size..(at + 1) * size]) {
                self.write_buffer().await?;
            }
        }
        Ok(())
    }

    /// Puts an entry in the open block, sealing the block once full; returns whether the
    /// buffer is full and must be written.
    fn add(&mut self, key: u128, value: &[u8]) -> bool {
        assert_eq!(value.len(), self.options.value_size, "run value size");
        if let Some(last) = self.last_key {
            assert!(key > last, "run keys must ascend: {key} after {last}");
        } else {
            self.first_key = key;
        }
        self.last_key = Some(key);
        if self.block_entries == 0 {
            self.index.push(key);
        }
        let block = self.buffer.as_slice().len();
        let at = block + BLOCK_HEADER_SIZE + self.block_entries * (16 + value.len());
        let bytes = self.buffer.as_mut_slice_full();
        bytes[at..at + 16].copy_from_slice(&key.to_le_bytes());
        bytes[at + 16..at + 16 + value.len()].copy_from_slice(value);
        self.block_entries += 1;
        self.keys += 1;
        if self.options.filter_bits_per_key > 0 {
            self.filter.insert(key);
        }
        self.block_entries == self.per_block && self.seal_block()
    }

    /// Writes what is left, the index, the filter and the footer; makes the run durable and
    /// puts it in place under its name. Returns its footer.
    pub async fn finish(mut self) -> Result<Footer, StorageError> {
        if self.block_entries > 0 && self.seal_block() {
            self.write_buffer().await?;
        }
        let data_blocks = self.index.len() as u64;
        let mut index = Vec::with_capacity(self.index.len() * 16);
        for key in &self.index {
            index.extend_from_slice(&key.to_le_bytes());
        }
        let mut filter = Vec::new();
        self.filter.encode(&mut filter);
        let padded = |region: &[u8]| {
            let mut padded = region.to_vec();
            padded.resize(region.len().div_ceil(BLOCK_SIZE) * BLOCK_SIZE, 0);
            padded
        };
        let pages = PageTable::of(&self.index, &padded(&index), &padded(&filter)).encode();
        let index_offset = data_blocks * BLOCK_SIZE as u64;
        self.put_region(&index).await?;
        let filter_offset = self.buffer_offset + self.buffer.as_slice().len() as u64;
        self.put_region(&filter).await?;
        self.put_region(&pages).await?;
        let footer = Footer {
            version: RUN_VERSION,
            value_size: self.options.value_size as u32,
            keys: self.keys,
            data_blocks,
            index_offset,
            index_size: index.len() as u64,
            filter_offset,
            filter_size: filter.len() as u64,
            filter_seed: self.options.filter_seed,
            index_crc: crc32c::crc32c(&index),
            filter_crc: crc32c::crc32c(&filter),
            first_key: self.first_key,
            last_key: self.last_key.unwrap_or(0),
            pages_crc: crc32c::crc32c(&pages),
        };
        self.put_region(&footer.encode()).await?;
        self.write_buffer().await?;
        self.make_durable().await?;
        Ok(footer)
    }

    /// Writes the header, the zeros after the entries and the checksum of the open block, which
    /// joins the sealed bytes; returns whether the buffer is full and must be written.
    fn seal_block(&mut self) -> bool {
        let number = self.index.len() as u64 - 1;
        let start = self.buffer.as_slice().len();
        let used = BLOCK_HEADER_SIZE + self.block_entries * (16 + self.options.value_size);
        let block = &mut self.buffer.as_mut_slice_full()[start..start + BLOCK_SIZE];
        block[used..].fill(0);
        block[4..6].copy_from_slice(&(self.block_entries as u16).to_le_bytes());
        block[6..8].fill(0);
        block[8..16].copy_from_slice(&number.to_le_bytes());
        let crc = crc32c::crc32c(&block[4..]);
        block[0..4].copy_from_slice(&crc.to_le_bytes());
        self.block_entries = 0;
        self.buffer.set_len(start + BLOCK_SIZE);
        self.buffer.as_slice().len() == self.buffer.capacity()
    }

    /// Queues `bytes` followed by zeros up to the next block boundary.
    async fn put_region(&mut self, mut bytes: &[u8]) -> Result<(), StorageError> {
        let padded = bytes.len().div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
        let mut zeros = padded - bytes.len();
        while !bytes.is_empty() || zeros > 0 {
            if self.buffer.as_slice().len() == self.buffer.capacity() {
                self.write_buffer().await?;
            }
            let filled = self.buffer.as_slice().len();
            let room = self.buffer.capacity() - filled;
            let copied = room.min(bytes.len());
            let zeroed = (room - copied).min(zeros);
            let full = self.buffer.as_mut_slice_full();
            full[filled..filled + copied].copy_from_slice(&bytes[..copied]);
            full[filled + copied..filled + copied + zeroed].fill(0);
            self.buffer.set_len(filled + copied + zeroed);
            bytes = &bytes[copied..];
            zeros -= zeroed;
        }
        Ok(())
    }

    /// Writes the queued bytes (whole blocks) at their offset.
    async fn write_buffer(&mut self) -> Result<(), StorageError> {
        let size = self.buffer.as_slice().len();
        if size == 0 {
            return Ok(());
        }
        debug_assert_eq!(size % BLOCK_SIZE, 0);
        let buffer = std::mem::replace(&mut self.buffer, AlignedBuffer::new(0));
        let (result, buffer) = self.file.write_all_at(buffer, self.buffer_offset).await;
        self.buffer = buffer;
        result.map_err(|error| write_error(&self.temporary, error))?;
        self.buffer_offset += size as u64;
        self.buffer.set_len(0);
        Ok(())
    }

    async fn make_durable(self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .await
            .map_err(|error| StorageError::io("fdatasync", &self.temporary, error))?;
        self.file
            .close()
            .await
            .map_err(|error| StorageError::io("close", &self.temporary, error))?;
        monoio::fs::rename(&self.temporary, &self.path)
            .await
            .map_err(|error| StorageError::io("rename", &self.path, error))?;
        files::sync_directory(&self.dir).await
    }
}

/// A failed write; a short one is the file system out of room.
fn write_error(path: &Path, error: std::io::Error) -> StorageError {
    if error.kind() == std::io::ErrorKind::WriteZero {
        return files::short_write(path, 0, BLOCK_SIZE);
    }
    StorageError::io("write", path, error)
}
