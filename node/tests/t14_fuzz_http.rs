//! Property-based fuzzing of the HTTP API with schemathesis, driven by the OpenAPI document the
//! node serves, against a live node with the default 16 partitions: no response is a 5xx,
//! every response matches the document (status, content type, schema), valid requests are
//! accepted and invalid ones refused, and afterwards the node is up and every ledger balances.
//! So the document stays exact (formats, bounds) and the node stays up.
//!
//! Short by default (`SECONDS_DEFAULT`, seed `SEED_DEFAULT`). `KASSA_FUZZ_SECONDS=N` runs for N
//! seconds and `KASSA_FUZZ_SEED` picks the seed. schemathesis comes from
//! `scripts/install-test-clients.sh` (`target/test-clients/venv`).

mod common;

use std::process::Command;

use common::{assert_balanced, test_clients_dir, Node, TempDir};

const SECONDS_DEFAULT: u64 = 60;
const SEED_DEFAULT: u64 = 13;
/// What schemathesis checks: everything that applies to an API without authentication.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_headers_conformance,response_schema_conformance,negative_data_rejection,\
positive_data_acceptance,unsupported_method";

#[test]
fn schemathesis_finds_no_server_error_and_no_departure_from_the_document() {
    let schemathesis = test_clients_dir().join("venv/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing: run scripts/install-test-clients.sh",
        schemathesis.display()
    );
    let seconds: u64 = std::env::var("KASSA_FUZZ_SECONDS")
        .map_or(SECONDS_DEFAULT, |s| s.parse().expect("KASSA_FUZZ_SECONDS"));
    let seed: u64 =
        std::env::var("KASSA_FUZZ_SEED").map_or(SEED_DEFAULT, |s| s.parse().expect("seed"));
    let dir = TempDir::new("fuzz-http");
    let mut node = Node::start(&dir.0);
    let base = format!("http://{}", node.http);
    let reports = dir.0.join("schemathesis");
    let output = Command::new(&schemathesis)
        .current_dir(&dir.0)
        .args(["run", &format!("{base}/openapi.json"), "--url", &base])
        .args([
            "--max-time",
            &seconds.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .args([
            "--checks",
            CHECKS,
            // One worker: with two, schemathesis parses hypothesis' lambdas on two threads at
            // once, and CPython 3.11's parser keeps its recursion depth per process, so the
            // race fails a run with "AST constructor recursion depth mismatch" (a runtime
            // error of the tool, not a finding about the node).
            "--workers",
            "1",
            "--request-timeout",
            "30",
        ])
        .arg("--report-dir")
        .arg(&reports)
        .output()
        .expect("run schemathesis");
    let printed = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = printed.lines().rev().take(30).collect();
    println!("schemathesis, {seconds} s, seed {seed}:");
    for line in summary.iter().rev() {
        println!("  {line}");
    }
    assert!(
        node.alive(),
        "the node stopped:\n{printed}\n{}",
        node.stderr_text()
    );
    assert!(
        output.status.success(),
        "schemathesis found failures (seed {seed}):\n{printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(node.get("/health").0, 200);
    assert_balanced(&node);
}
