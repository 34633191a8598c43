//! Small files that must survive a crash whole or not at all: the Raft vote, snapshots,
//! cluster metadata, the log's purge point. The `raft` crate and the log itself call these.
//!
//! `write` puts the bytes, framed with their length and a CRC32C, into a temporary file
//! (`<name>.tmp`), fsyncs it, renames it over the old one and fsyncs the directory. `read`
//! returns the bytes of the last complete write, `None` if there was never one, and
//! `StorageError::Corrupt` if the file is damaged. A crash leaves either the old file or the
//! new one under `name`; a leftover temporary file is ignored by `read` and replaced by the
//! next `write`. Writes of the same name must not overlap (their caller serializes them).
//!
//! Layout, little-endian: magic `KDF1` (4), format version 0 (4), payload length (8),
//! CRC32C of the version, length and payload (4), zero (4), then the payload.

use std::path::{Path, PathBuf};

use monoio::buf::IoBufMut;

use crate::files;
use crate::StorageError;

/// The largest payload a durable file holds (snapshots included).
pub const DURABLE_FILE_SIZE_MAX: u64 = 1 << 30;
const MAGIC: [u8; 4] = *b"KDF1";
const VERSION: u32 = 0;
const HEADER_SIZE: usize = 24;
const TEMPORARY_SUFFIX: &str = ".tmp";

/// Replaces `dir/name` with `bytes`, durably and atomically.
pub async fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    assert!(!name.is_empty() && !name.contains('/') && !name.ends_with(TEMPORARY_SUFFIX));
    let path = dir.join(name);
    if bytes.len() as u64 > DURABLE_FILE_SIZE_MAX {
        return Err(StorageError::io(
            "write",
            path,
            std::io::ErrorKind::FileTooLarge.into(),
        ));
    }
    let temporary = dir.join(format!("{name}{TEMPORARY_SUFFIX}"));
    let file = monoio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .await
        .map_err(|error| StorageError::io("create", &temporary, error))?;
    let (result, _) = file.write_all_at(encode(bytes), 0).await;
    result.map_err(|error| StorageError::io("write", &temporary, error))?;
    file.sync_all()
        .await
        .map_err(|error| StorageError::io("fsync", &temporary, error))?;
    file.close()
        .await
        .map_err(|error| StorageError::io("close", &temporary, error))?;
    monoio::fs::rename(&temporary, &path)
        .await
        .map_err(|error| StorageError::io("rename", &path, error))?;
    files::sync_directory(dir).await
}

/// The bytes last written to `dir/name`, or `None` if it does not exist.
pub async fn read(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
    let path = dir.join(name);
    let file = match monoio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::io("open", path, error)),
    };
    let size = files::file_size(&file, &path).await?;
    if size > HEADER_SIZE as u64 + DURABLE_FILE_SIZE_MAX {
        return Err(corrupt(path, 0, "file larger than any write"));
    }
    if size < HEADER_SIZE as u64 {
        return Err(corrupt(path, 0, "file shorter than its header"));
    }
    let buffer = Vec::with_capacity(size as usize).slice_mut(0..size as usize);
    let (result, buffer) = file.read_exact_at(buffer, 0).await;
    result.map_err(|error| StorageError::io("read", &path, error))?;
    decode(&path, buffer.into_inner()).map(Some)
}

/// Header and payload, ready to write.
fn encode(payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_SIZE + payload.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&[0; 8]);
    bytes.extend_from_slice(payload);
    let crc = checksum(&bytes);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// The payload of a whole file, every field checked before use.
fn decode(path: &Path, mut bytes: Vec<u8>) -> Result<Vec<u8>, StorageError> {
    if bytes.len() < HEADER_SIZE {
        return Err(corrupt(
            path.to_path_buf(),
            0,
            "file shorter than its header",
        ));
    }
    if bytes[0..4] != MAGIC {
        return Err(corrupt(path.to_path_buf(), 0, "bad durable file magic"));
    }
    if read_u32(&bytes, 4) != VERSION || read_u32(&bytes, 20) != 0 {
        return Err(corrupt(
            path.to_path_buf(),
            4,
            "unknown durable file version",
        ));
    }
    let length = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    if length != (bytes.len() - HEADER_SIZE) as u64 {
        return Err(corrupt(
            path.to_path_buf(),
            8,
            "length does not match the file size",
        ));
    }
    if read_u32(&bytes, 16) != checksum(&bytes) {
        return Err(corrupt(path.to_path_buf(), 16, "checksum mismatch"));
    }
    Ok(bytes.split_off(HEADER_SIZE))
}

/// CRC32C of everything but the magic and the checksum field itself.
fn checksum(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&bytes[4..16]);
    crc32c::crc32c_append(
        crc32c::crc32c_append(crc, &bytes[20..24]),
        &bytes[HEADER_SIZE..],
    )
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn corrupt(path: PathBuf, offset: u64, what: &'static str) -> StorageError {
    StorageError::Corrupt { path, offset, what }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_checks_every_field() {
        let path = Path::new("x");
        let good = encode(b"vote: term 7");
        assert_eq!(
            decode(path, good.clone()).expect("decodes"),
            b"vote: term 7"
        );
        for cut in 0..good.len() {
            assert!(decode(path, good[..cut].to_vec()).is_err(), "cut at {cut}");
        }
        for at in 0..good.len() {
            let mut damaged = good.clone();
            damaged[at] ^= 0x01;
            assert!(decode(path, damaged).is_err(), "flip at {at}");
        }
        assert_eq!(decode(path, encode(b"")).expect("empty payload"), b"");
    }
}
