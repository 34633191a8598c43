//! Recovery of the partition log through the real binary: a torn last write is cut off and the
//! node starts with everything before it; a flipped byte in the middle of a segment makes the
//! node refuse to start, naming the damaged file, rather than serve wrong balances.

mod common;

use std::path::{Path, PathBuf};

use std::time::Duration;

use common::{account_json, assert_balanced, results, transfer_json, wait_until, Node, TempDir};

/// Writes accounts and several batches of transfers, then stops the node cleanly.
fn populate(dir: &Path) {
    let node = Node::start(dir);
    let setup = format!("[{},{}]", account_json(1, 1, &[]), account_json(2, 1, &[]));
    assert_eq!(node.post("/v1/accounts", &setup).0, 200);
    for batch in 0..10u128 {
        let body: Vec<String> = (0..20)
            .map(|i| transfer_json(1000 + batch * 20 + i, 1, 2, 1, &[]))
            .collect();
        let (_, reply) = node.post("/v1/transfers", &format!("[{}]", body.join(",")));
        assert!(results(&reply).iter().all(|r| r == "created"));
    }
    assert!(node.stop().success());
}

/// The partition's newest segment file.
fn last_segment(dir: &Path) -> PathBuf {
    let log = dir.join("partitions").join("0000").join("log");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&log)
        .expect("log directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

/// Offsets of every frame (magic `KLG1` at an 8-byte boundary) in a segment.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    (0..bytes.len().saturating_sub(4))
        .step_by(8)
        .filter(|o| &bytes[*o..*o + 4] == b"KLG1")
        .collect()
}

#[test]
fn a_torn_last_write_is_cut_off_and_the_node_starts() {
    let dir = TempDir::new("torn");
    populate(&dir.0);
    let segment = last_segment(&dir.0);
    let bytes = std::fs::read(&segment).expect("read segment");
    let last = *frame_offsets(&bytes).last().expect("frames");
    // The last write landed only partly: the file ends inside its frame's header.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open segment");
    file.set_len(last as u64 + 20).expect("truncate");
    drop(file);

    let node = Node::start(&dir.0);
    let (status, account) = node.get("/v1/accounts/1");
    assert_eq!(status, 200);
    let debits: u128 = account["debits_posted"]
        .as_str()
        .expect("debits")
        .parse()
        .expect("u128");
    assert!(
        debits >= 180,
        "at most the last batch is lost, found {debits}"
    );
    assert_balanced(&node);
    let reported = wait_until(Duration::from_secs(5), || {
        node.stderr_text().contains("torn")
    });
    assert!(
        reported,
        "the torn tail is not reported: {}",
        node.stderr_text()
    );
}

#[test]
fn a_flipped_byte_mid_segment_is_refused_naming_the_file() {
    let dir = TempDir::new("flipped");
    populate(&dir.0);
    let segment = last_segment(&dir.0);
    let mut bytes = std::fs::read(&segment).expect("read segment");
    let frames = frame_offsets(&bytes);
    assert!(
        frames.len() >= 4,
        "expected several frames, found {}",
        frames.len()
    );
    let middle = frames[frames.len() / 2] + 40; // Inside a payload, with frames after it.
    bytes[middle] ^= 0x5a;
    std::fs::write(&segment, &bytes).expect("write segment");

    let error = Node::try_start(&dir.0, &[])
        .err()
        .expect("the node must refuse to start");
    let name = segment
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(
        error.contains(&name),
        "the error does not name {name}: {error}"
    );
    assert!(error.to_lowercase().contains("corrupt"), "{error}");
}

#[test]
fn a_missing_checkpoint_next_to_a_purged_log_is_refused() {
    let dir = TempDir::new("no-checkpoint");
    let node = Node::try_start(&dir.0, &["--snapshot-entries", "5"]).expect("start");
    let setup = format!("[{},{}]", account_json(1, 1, &[]), account_json(2, 1, &[]));
    assert_eq!(node.post("/v1/accounts", &setup).0, 200);
    for id in 0..12u128 {
        let (_, reply) = node.post(
            "/v1/transfers",
            &format!("[{}]", transfer_json(500 + id, 1, 2, 1, &[])),
        );
        assert_eq!(results(&reply), ["created"]);
    }
    assert!(node.stop().success());
    // Accounts 1 and 2 live in some partitions: remove the checkpoint of any that took one.
    let partitions = std::fs::read_dir(dir.0.join("partitions")).expect("partitions");
    let checkpoint = partitions
        .map(|entry| entry.expect("entry").path().join("checkpoint"))
        .find(|checkpoint| checkpoint.exists())
        .expect("a partition took a checkpoint");
    std::fs::remove_file(&checkpoint).expect("remove the checkpoint");

    let error = Node::try_start(&dir.0, &[])
        .err()
        .expect("the node must refuse to start");
    assert!(
        error.contains("checkpoint file is missing or older than the purge"),
        "{error}"
    );
}
