//! TigerBeetle's official clients (Python `tigerbeetle`, Node.js `tigerbeetle-node`, 0.17)
//! against a real node: every operation with its results checked by the client scripts in
//! `tests/clients/`, and a client that keeps creating transfers while the node is killed and
//! restarted, without being evicted and without any request applied twice.
//!
//! The clients are installed by `scripts/install-test-clients.sh` (run by `scripts/test.sh`);
//! without them these tests fail, they do not skip.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{assert_balanced, official_client, run_client, Node, TempDir};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The default: 16 partitions, so requests run as cross-partition transactions and reads.
#[test]
fn official_clients_run_every_operation() {
    official_clients_run_every_operation_on(None);
}

/// One partition: every request is one log entry of that partition.
#[test]
fn official_clients_run_every_operation_on_one_partition() {
    official_clients_run_every_operation_on(Some(1));
}

fn official_clients_run_every_operation_on(partitions: Option<u32>) {
    let dir = TempDir::new("wire-clients");
    if let Some(partitions) = partitions {
        let formatted = std::process::Command::new(env!("CARGO_BIN_EXE_kassa"))
            .args([
                "format",
                "--partitions",
                &partitions.to_string(),
                "--data-dir",
            ])
            .arg(&dir.0)
            .output()
            .expect("run kassa format");
        assert!(formatted.status.success(), "{formatted:?}");
    }
    let node = Node::start(&dir.0);
    let (_, ready) = node.get("/ready");
    assert_eq!(ready["partitions"], partitions.unwrap_or(16), "{ready}");
    let port = node.wire.port().to_string();
    for (language, script) in [("python", "ledger_ops.py"), ("node", "ledger_ops.js")] {
        let mut command = official_client(language, script);
        command.args(["0", &port]);
        let output = run_client(command, CLIENT_TIMEOUT);
        assert!(output.contains("ok"), "{language}: {output}");
    }
    // What the clients did is what the HTTP API sees.
    for (id, debits, credits) in [(1003, "500", "500"), (5003, "500", "500")] {
        let (status, account) = node.get(&format!("/v1/accounts/{id}"));
        assert_eq!(status, 200, "{account}");
        assert_eq!(account["debits_posted"], debits, "{account}");
        assert_eq!(account["credits_posted"], credits, "{account}");
    }
    assert_balanced(&node);
}

#[test]
fn a_client_keeps_working_across_a_crash_without_double_application() {
    const TRANSFERS: u32 = 300;
    const KILL_AFTER: u32 = 100;
    let dir = TempDir::new("wire-client-crash");
    let mut node = Node::start(&dir.0);
    let wire = node.wire.to_string();
    let mut command = official_client("python", "transfer_loop.py");
    command.args(["0", &node.wire.port().to_string(), &TRANSFERS.to_string()]);
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the client");
    let (lines_sender, lines) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = lines_sender.send(line);
        }
    });

    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut acked = Vec::new();
    let mut restarted = false;
    let mut done = false;
    while !done {
        let wait = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(wait) else {
            break;
        };
        if let Some(id) = line.strip_prefix("acked ") {
            acked.push(id.parse::<u128>().expect("an id"));
        }
        done = line == "done";
        if !restarted && acked.len() as u32 == KILL_AFTER {
            // SIGKILL, then a new process on the same port and data; the client retries.
            let data_dir = node.data_dir.clone();
            node.kill();
            node = Node::try_start(&data_dir, &["--wire-address", &wire]).expect("restart");
            restarted = true;
        }
    }
    let status = child.wait().expect("wait for the client");
    let mut errors = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut stderr, &mut errors);
    }
    assert!(
        done && status.success(),
        "the client did not finish ({status}) after {} acks:\n{errors}",
        acked.len()
    );
    assert!(restarted);

    // Every acknowledged transfer exists exactly once, and the balances are their sum.
    assert_eq!(acked.len() as u32, TRANSFERS);
    let expected: u128 = (1..=TRANSFERS as u128).map(|i| i % 7 + 1).sum();
    for id in [
        100_001u128,
        100_000 + KILL_AFTER as u128 + 1,
        100_000 + TRANSFERS as u128,
    ] {
        let (status, transfer) = node.get(&format!("/v1/transfers/{id}"));
        assert_eq!(status, 200, "transfer {id}: {transfer}");
    }
    let (_, debit) = node.get("/v1/accounts/1");
    let (_, credit) = node.get("/v1/accounts/2");
    assert_eq!(debit["debits_posted"], expected.to_string(), "{debit}");
    assert_eq!(credit["credits_posted"], expected.to_string(), "{credit}");
    let (status, transfers) = node.get("/v1/accounts/1/transfers?limit=8189");
    assert_eq!(status, 200, "{transfers}");
    assert_eq!(
        transfers.as_array().expect("transfers").len() as u32,
        TRANSFERS
    );
    assert_balanced(&node);
}
