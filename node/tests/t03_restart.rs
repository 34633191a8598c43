//! Stopping with SIGTERM finishes cleanly (exit 0) and a restart finds every acknowledged
//! write; a stop checkpoints first when enough log came since the last checkpoint; `kassa
//! format` refuses to format twice and refuses what this build cannot serve.

mod common;

use std::time::Duration;

use common::{account_json, assert_balanced, results, transfer_json, wait_until, Node, TempDir};

#[test]
fn sigterm_exits_zero_and_a_restart_keeps_everything() {
    let dir = TempDir::new("restart");
    let node = Node::start(&dir.0);
    let setup = format!(
        "[{},{}]",
        account_json(1, 1, &[]),
        account_json(2, 1, &["history"])
    );
    assert_eq!(node.post("/v1/accounts", &setup).0, 200);
    let batch: Vec<String> = (100..200)
        .map(|id| transfer_json(id, 1, 2, 1, &[]))
        .collect();
    let (_, reply) = node.post("/v1/transfers", &format!("[{}]", batch.join(",")));
    assert!(results(&reply).iter().all(|r| r == "created"));
    let status = node.stop();
    assert!(status.success(), "kassa exited with {status}");

    let node = Node::start(&dir.0);
    let (_, account) = node.get("/v1/accounts/1");
    assert_eq!(account["debits_posted"], "100");
    let (_, reply) = node.post(
        "/v1/transfers",
        &format!("[{}]", transfer_json(150, 1, 2, 1, &[])),
    );
    assert_eq!(
        results(&reply),
        ["exists"],
        "idempotency survives a restart"
    );
    assert_balanced(&node);
}

/// With `--snapshot-entries 400`, 120 entries never reach a periodic checkpoint, but they are
/// more than a quarter of it: the stop takes one, and the restart finds them all.
#[test]
fn a_stop_checkpoints_first_when_enough_log_came_since_the_last() {
    let dir = TempDir::new("stop-checkpoint");
    let node = Node::try_start(&dir.0, &["--snapshot-entries", "400"]).expect("start");
    let setup = format!(
        "[{},{}]",
        account_json(1, 1, &[]),
        account_json(2, 1, &["history"])
    );
    assert_eq!(node.post("/v1/accounts", &setup).0, 200);
    for id in 100..220u128 {
        let (_, reply) = node.post(
            "/v1/transfers",
            &format!("[{}]", transfer_json(id, 1, 2, 1, &[])),
        );
        assert_eq!(results(&reply), ["created"]);
    }
    assert_eq!(
        common::partitions_checkpointed(&dir.0),
        0,
        "no periodic checkpoint yet"
    );
    let stderr = node.stderr.clone();
    let status = node.stop();
    assert!(status.success(), "kassa exited with {status}");
    let said = || {
        stderr
            .lock()
            .expect("stderr")
            .contains("checkpoint taken before the stop")
    };
    assert!(
        wait_until(Duration::from_secs(5), said),
        "no checkpoint at the stop"
    );
    assert!(
        common::partitions_checkpointed(&dir.0) >= 1,
        "ledger 1's partition"
    );

    let node = Node::start(&dir.0);
    let (_, account) = node.get("/v1/accounts/1");
    assert_eq!(account["debits_posted"], "120");
    // Account 2's history left memory with the checkpoint: it is read from the runs.
    let (status, balances) = node.get("/v1/accounts/2/balances?limit=8189");
    assert_eq!(status, 200);
    let credits: Vec<String> = balances
        .as_array()
        .expect("balances")
        .iter()
        .map(|b| b["credits_posted"].as_str().expect("credits").to_string())
        .collect();
    let expected: Vec<String> = (1..=120).map(|n: u32| n.to_string()).collect();
    assert_eq!(credits, expected);
    // So did the transfers: a lookup, the account's transfers, a query and a retry of an
    // old id (answered `exists` by comparing with the stored one) read them from the runs.
    let (status, transfer) = node.get("/v1/transfers/150");
    assert_eq!((status, transfer["id"].as_str()), (200, Some("150")));
    let (status, listed) = node.get("/v1/accounts/1/transfers?limit=8189");
    assert_eq!(status, 200);
    let ids: Vec<String> = listed
        .as_array()
        .expect("transfers")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_string())
        .collect();
    let expected: Vec<String> = (100..220u128).map(|id| id.to_string()).collect();
    assert_eq!(ids, expected);
    let (status, found) = node.post("/v1/transfers/query", r#"{"ledger":1,"limit":8189}"#);
    assert_eq!(status, 200);
    assert_eq!(found.as_array().map(Vec::len), Some(120));
    let (_, reply) = node.post(
        "/v1/transfers",
        &format!("[{}]", transfer_json(100, 1, 2, 1, &[])),
    );
    assert_eq!(results(&reply), ["exists"]);
    assert_balanced(&node);
    assert!(node.stop().success());
}

#[test]
fn format_refuses_a_formatted_directory_and_unsupported_partition_counts() {
    let dir = TempDir::new("format");
    let format = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kassa"))
            .arg("format")
            .arg("--data-dir")
            .arg(&dir.0)
            .args(extra)
            .output()
            .expect("run kassa format")
    };
    for partitions in ["0", "1025"] {
        let refused = format(&["--partitions", partitions]);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("a cluster has 1 to 1024 partitions"),
            "{stderr}"
        );
    }
    let first = format(&["--cluster-id", "7"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = format(&[]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already formatted"));
    let node = Node::start(&dir.0);
    assert_eq!(node.get("/ready").0, 200);
}

#[test]
fn a_stalled_client_cannot_hold_a_stop_and_a_second_signal_exits_at_once() {
    use std::io::Write;
    let dir = TempDir::new("stalled");
    let mut node = Node::start(&dir.0);
    // A request that announces 100 body bytes and sends 7, then waits.
    let mut stalled = std::net::TcpStream::connect(node.http).expect("connect");
    let head = "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[{\"id\":";
    stalled.write_all(head.as_bytes()).expect("write");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = node.child.id() as i32;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        node.child.try_wait().expect("try_wait").is_none(),
        "still draining the stalled request"
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let exited = common::wait_until(std::time::Duration::from_secs(5), || {
        node.child.try_wait().expect("try_wait").is_some()
    });
    assert!(exited, "a second signal must stop the node at once");
    // Nothing was lost: the node starts again on the same data.
    drop(node);
    let node = Node::start(&dir.0);
    assert_eq!(node.get("/ready").0, 200);
}

fn kassa(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kassa"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--http-address",
            "127.0.0.1:0",
            "--wire-address",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run kassa")
}

/// `kassa start` formats only a new or empty directory; anything else without a cluster
/// description is refused, names what it found, and is left as it was. `kassa format` too.
#[test]
fn start_and_format_refuse_a_directory_that_holds_something_else() {
    let dir = TempDir::new("not-empty");
    std::fs::write(dir.0.join("ledger-export.csv"), b"1,2,3\n").expect("a file");
    std::fs::create_dir(dir.0.join("partitions")).expect("a directory");
    let started = kassa(&["start"], &dir.0);
    assert!(!started.status.success(), "{started:?}");
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert!(stderr.contains("ledger-export.csv, partitions"), "{stderr}");
    let formatted = std::process::Command::new(env!("CARGO_BIN_EXE_kassa"))
        .args(["format", "--data-dir"])
        .arg(&dir.0)
        .output()
        .expect("run kassa format");
    assert!(!formatted.status.success());
    assert!(String::from_utf8_lossy(&formatted.stderr).contains("is not empty"));
    let mut left: Vec<String> = std::fs::read_dir(&dir.0)
        .expect("read")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["ledger-export.csv", "partitions"],
        "nothing was added"
    );
    assert_eq!(
        std::fs::read(dir.0.join("ledger-export.csv")).expect("file"),
        b"1,2,3\n"
    );

    // A file system's lost+found does not count: such a directory is empty.
    let dir = TempDir::new("lost-found");
    std::fs::create_dir(dir.0.join("lost+found")).expect("lost+found");
    let node = Node::start(&dir.0);
    assert_eq!(node.get("/ready").0, 200);
}

/// Of several formats of one new directory at once, exactly one succeeds; the directory is then
/// a valid node's. A lock left by an interrupted format is refused, naming it.
#[test]
fn concurrent_formats_cannot_both_succeed() {
    let parent = TempDir::new("concurrent-format");
    for round in 0..5 {
        let dir = parent.0.join(format!("data-{round}"));
        let formats: Vec<std::process::Child> = (0..6)
            .map(|n| {
                std::process::Command::new(env!("CARGO_BIN_EXE_kassa"))
                    .args(["format", "--cluster-id", &n.to_string(), "--data-dir"])
                    .arg(&dir)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn kassa format")
            })
            .collect();
        let outcomes: Vec<std::process::Output> = formats
            .into_iter()
            .map(|child| child.wait_with_output().expect("wait"))
            .collect();
        let succeeded = outcomes.iter().filter(|o| o.status.success()).count();
        assert_eq!(succeeded, 1, "round {round}: {outcomes:?}");
        for refused in outcomes.iter().filter(|o| !o.status.success()) {
            let stderr = String::from_utf8_lossy(&refused.stderr);
            assert!(
                stderr.contains("already formatted")
                    || stderr.contains("being formatted")
                    || stderr.contains("is not empty"),
                "{stderr}"
            );
        }
        assert!(!dir.join("format.lock").exists());
    }
    let node = Node::start(&parent.0.join("data-0"));
    assert_eq!(node.get("/ready").0, 200);

    let dir = TempDir::new("interrupted-format");
    std::fs::write(dir.0.join("format.lock"), b"").expect("a lock");
    let started = kassa(&["start"], &dir.0);
    assert!(!started.status.success());
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert!(stderr.contains("format.lock"), "{stderr}");
}
