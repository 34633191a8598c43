//! Durable files: whole or not at all, damage is an error, absence is `None`.

mod common;

use common::*;
use kassa_storage::{durable_file, StorageError};

#[test]
fn write_read_overwrite() {
    let dir = TempDir::new("t04-round-trip");
    std::fs::create_dir_all(dir.path()).unwrap();
    run(async {
        let first = b"vote: term 3, for node 2".to_vec();
        durable_file::write(dir.path(), "vote", &first)
            .await
            .expect("write");
        assert_eq!(
            durable_file::read(dir.path(), "vote").await.expect("read"),
            Some(first)
        );
        let second: Vec<u8> = (0..100_000).map(|at| (at % 251) as u8).collect();
        durable_file::write(dir.path(), "vote", &second)
            .await
            .expect("overwrite");
        assert_eq!(
            durable_file::read(dir.path(), "vote").await.expect("read"),
            Some(second)
        );
        durable_file::write(dir.path(), "vote", b"")
            .await
            .expect("write empty");
        assert_eq!(
            durable_file::read(dir.path(), "vote").await.expect("read"),
            Some(Vec::new())
        );
        assert!(
            !dir.path().join("vote.tmp").exists(),
            "the temporary file was renamed"
        );
    });
}

#[test]
fn a_missing_file_is_none() {
    let dir = TempDir::new("t04-missing");
    std::fs::create_dir_all(dir.path()).unwrap();
    run(async {
        assert_eq!(
            durable_file::read(dir.path(), "vote").await.expect("read"),
            None
        );
    });
}

/// A way to damage a file in place.
type Damage = fn(&std::path::Path);

#[test]
fn a_damaged_file_is_an_error() {
    let dir = TempDir::new("t04-damaged");
    std::fs::create_dir_all(dir.path()).unwrap();
    let path = dir.path().join("snapshot");
    let payload = b"a snapshot of the ledger".to_vec();
    let damages: [(&str, Damage); 4] = [
        ("flipped payload byte", |path| flip_byte(path, 30)),
        ("flipped header byte", |path| flip_byte(path, 9)),
        ("cut short", |path| set_file_size(path, 27)),
        ("trailing byte", |path| append_bytes(path, &[0])),
    ];
    for (what, damage) in damages {
        run(async {
            durable_file::write(dir.path(), "snapshot", &payload)
                .await
                .expect("write");
        });
        damage(&path);
        let result = run(durable_file::read(dir.path(), "snapshot"));
        match result {
            Err(StorageError::Corrupt { path: reported, .. }) => assert_eq!(reported, path),
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
    }
    set_file_size(&path, 0);
    let empty = run(durable_file::read(dir.path(), "snapshot"));
    assert!(matches!(empty, Err(StorageError::Corrupt { .. })));
}

#[test]
fn a_leftover_temporary_file_is_ignored() {
    let dir = TempDir::new("t04-leftover");
    std::fs::create_dir_all(dir.path()).unwrap();
    run(async {
        durable_file::write(dir.path(), "vote", b"term 5")
            .await
            .expect("write");
        // A crash in the middle of the next write left a partial temporary file.
        std::fs::write(dir.path().join("vote.tmp"), b"KDF1 garbage").unwrap();
        let read = durable_file::read(dir.path(), "vote").await.expect("read");
        assert_eq!(read.as_deref(), Some(&b"term 5"[..]));
        durable_file::write(dir.path(), "vote", b"term 6")
            .await
            .expect("write over it");
        let read = durable_file::read(dir.path(), "vote").await.expect("read");
        assert_eq!(read.as_deref(), Some(&b"term 6"[..]));
    });
}
