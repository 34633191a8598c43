//! End to end, small: `kassa-bench --start --baseline postgres` starts a node and a PostgreSQL
//! cluster, runs both modes on both, verifies, and reports both systems side by side. Nothing
//! here judges the numbers (benchmarks are never timed assertions); it checks that the
//! command works, verifies, and reports what it ran.
//!
//! `--start` needs the `kassa` binary next to `kassa-bench`. `cargo test --workspace` builds
//! it there (the node's tests need it); when this test runs alone and it is missing, the test
//! builds it with cargo into a target directory of its own, so it never waits on the build
//! lock the running `cargo test` holds on the main one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A hang guard, not a performance bound: the run takes seconds.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

fn kassa_binary() -> PathBuf {
    let bench = Path::new(env!("CARGO_BIN_EXE_kassa-bench"));
    let bin_dir = bench.parent().expect("kassa-bench has a directory");
    let sibling = bin_dir.join("kassa");
    if sibling.is_file() {
        return sibling;
    }
    let target = bin_dir
        .parent()
        .expect("the target directory")
        .join("kassa-bench-smoke");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--locked",
            "--release",
            "-p",
            "kassa-node",
            "--bin",
            "kassa",
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build for the kassa binary");
    assert!(status.success(), "building kassa failed: {status}");
    let built = target.join("release/kassa");
    assert!(
        built.is_file(),
        "{} missing after the build",
        built.display()
    );
    built
}

#[test]
fn start_both_systems_verify_and_report_side_by_side() {
    let kassa = kassa_binary();
    let json = std::env::temp_dir().join(format!("kassa-bench-smoke-{}.json", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_kassa-bench"))
        .args(["--start", "--baseline", "postgres", "--kassa-bin"])
        .arg(&kassa)
        .args(["--accounts", "200", "--transfers", "5000", "--clients", "8"])
        .args(["--in-flight", "2", "--batch-size", "1000", "--cores", "2"])
        .args(["--ledgers", "3"])
        .args([
            "--two-phase-share",
            "0.1",
            "--distribution",
            "zipf",
            "--json-out",
        ])
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kassa-bench");
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().expect("kassa-bench output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kassa-bench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for expected in [
        "| throughput | Kassa |",
        "| throughput | PostgreSQL (batched) |",
        "| latency | Kassa |",
        "| latency | PostgreSQL (per-transfer) |",
        "**ratio**",
        "verified kassa",
        "verified postgres",
        "fdatasync: median",
        "synchronous_commit = on",
        "200 accounts on 3 ledger(s)",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
            .expect("valid JSON");
    let _ = std::fs::remove_file(&json);
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), 4);
    for result in results {
        assert_eq!(result["transfers_sent"], 5000, "{result}");
        let created = result["transfers_created"].as_u64().expect("created");
        assert!(created > 4000, "most transfers succeed: {result}");
        assert!(result["latency"]["p99_us"].as_u64().expect("p99") > 0);
    }
    assert_eq!(report["ratios"].as_array().expect("ratios").len(), 2);
    // One JSON line per result on stdout, for scripts.
    let lines = stdout
        .lines()
        .filter(|l| l.starts_with("{\"system\""))
        .count();
    assert_eq!(lines, 4);
}

/// `--baseline tigerbeetle` against a real TigerBeetle replica, when `KASSA_TIGERBEETLE` names
/// a TigerBeetle 0.17 binary (none is on a package registry, so the suite cannot install one).
#[test]
fn tigerbeetle_runs_the_same_workload_through_the_same_client() {
    let Some(tigerbeetle) = std::env::var_os("KASSA_TIGERBEETLE") else {
        eprintln!("skipped: KASSA_TIGERBEETLE does not name a TigerBeetle binary");
        return;
    };
    let kassa = kassa_binary();
    let output = Command::new(env!("CARGO_BIN_EXE_kassa-bench"))
        .args(["--start", "--baseline", "tigerbeetle", "--tigerbeetle-bin"])
        .arg(&tigerbeetle)
        .arg("--kassa-bin")
        .arg(&kassa)
        .args(["--accounts", "200", "--transfers", "5000", "--clients", "8"])
        .args(["--in-flight", "2", "--batch-size", "1000", "--cores", "2"])
        .stdin(Stdio::null())
        .output()
        .expect("run kassa-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "| throughput | TigerBeetle |",
        "| latency | TigerBeetle |",
        "**ratio** (Kassa ÷ TigerBeetle)",
        "verified tigerbeetle",
        "TigerBeetle: ",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
}
