//! `kassactl` end to end against the wire crate's in-memory test server (a real TCP server on
//! 127.0.0.1 built from the server-side codec): the README's first transfer, then the errors.

#[path = "../../wire/tests/common/server.rs"]
mod server;

use std::process::{Command, Output};

use server::{TestServer, CLUSTER, LIMIT_MAX};

fn kassactl(server_address: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kassactl"))
        .args([
            "--address",
            server_address,
            "--cluster",
            &CLUSTER.to_string(),
        ])
        .args(args)
        .output()
        .expect("kassactl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn t01_first_transfer() {
    let server = TestServer::spawn_thread(LIMIT_MAX);
    let address = server.address.to_string();
    let run = |args: &[&str]| kassactl(&address, args);

    let created = run(&[
        "accounts", "create", "--id", "1", "--ledger", "700", "--code", "10",
    ]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(text(&created.stdout).contains("created"));
    let created = run(&[
        "accounts", "create", "--id", "2", "--ledger", "700", "--code", "10", "--flags", "history",
    ]);
    assert!(created.status.success());
    let transfer = run(&[
        "transfers",
        "create",
        "--id",
        "100",
        "--debit-account",
        "1",
        "--credit-account",
        "2",
        "--amount",
        "250",
        "--ledger",
        "700",
        "--code",
        "1",
    ]);
    assert!(transfer.status.success(), "{}", text(&transfer.stderr));

    let account = run(&["accounts", "get", "2", "--json"]);
    assert!(account.status.success());
    let value: serde_json::Value = serde_json::from_slice(&account.stdout).unwrap();
    assert_eq!(value[0]["credits_posted"], "250");
    assert_eq!(value[0]["flags"], serde_json::json!(["history"]));

    let list = run(&["transfers", "list", "--account", "2"]);
    assert!(list.status.success());
    let listed = text(&list.stdout);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.lines().nth(1).unwrap().starts_with("100 "));

    let again = run(&[
        "accounts", "create", "--id", "1", "--ledger", "700", "--code", "10",
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(text(&again.stderr), "error: event 0 failed: exists\n");
    let missing = run(&["transfers", "get", "100", "101"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(text(&missing.stderr), "error: transfer 101 not found\n");
}

#[test]
fn t02_an_unreachable_node_and_bad_input_fail_clearly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let unreachable = kassactl(&address, &["--deadline-ms", "300", "accounts", "get", "1"]);
    assert_eq!(unreachable.status.code(), Some(3));
    let message = text(&unreachable.stderr);
    assert!(
        message.starts_with("kassactl: error: no reply within 300 ms"),
        "{message}"
    );
    assert!(message.contains("connecting to 127.0.0.1:"), "{message}");

    let bad_flag = kassactl(
        &address,
        &[
            "accounts", "create", "--id", "1", "--ledger", "1", "--code", "1", "--flags", "histroy",
        ],
    );
    assert_eq!(bad_flag.status.code(), Some(2));
    assert!(text(&bad_flag.stderr).contains("unknown flag `histroy`"));
}
