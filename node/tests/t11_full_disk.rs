//! A real full disk: the data directory is a small tmpfs, filled by another file while clients
//! write. The node stops with a clear message and a fail-stop exit status, nothing it
//! acknowledged is lost, and once space is freed `kassa start` recovers and serves.
//!
//! Mounting needs root (CI runs as root); elsewhere the test says so and does nothing.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_all_found, assert_balanced, wire_accounts, Node, TempDir};
use kassa_wire::client::{BlockingClient, ClientConfig};
use kassa_wire::{AccountId, CreateTransferStatus, Transfer, TransferId};

/// The tmpfs's size: a new 16-partition node takes about 65 MiB (each log zeroes 4 MiB ahead),
/// and its restart needs room to zero ahead again after the load's entries.
const DISK_SIZE: &str = "256m";
const ACCOUNTS: u128 = 64;
const BATCH: u128 = 500;
/// The exit status of a fail-stop (`kassa_node::fail_stop::EXIT_FAULT`).
const EXIT_FAULT: i32 = kassa_node::fail_stop::EXIT_FAULT;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(path: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(path).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(mounted.success(), "mount -t tmpfs failed");
        Mount(path.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn client(node: &Node) -> BlockingClient {
    let mut config = ClientConfig::new(vec![node.wire], 0);
    config.deadline = Duration::from_secs(5);
    BlockingClient::connect(config).expect("connect")
}

fn transfer(id: u128) -> Transfer {
    let debit = id % ACCOUNTS + 1;
    Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(debit),
        credit_account_id: AccountId(debit % ACCOUNTS + 1),
        amount: 1 + id % 7,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    }
}

/// Writes batches of new transfers until a write fails or `stop`; returns the ids the node
/// acknowledged as created.
fn load(node: &Node, first_id: u128, stop: &AtomicBool) -> Vec<u128> {
    let mut client = client(node);
    let mut acknowledged = Vec::new();
    let mut next = first_id;
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<Transfer> = (next..next + BATCH).map(transfer).collect();
        next += BATCH;
        let Ok(results) = client.create_transfers(&batch) else {
            break;
        };
        for (transfer, result) in batch.iter().zip(&results) {
            assert_eq!(result.status, CreateTransferStatus::Created, "{result:?}");
            acknowledged.push(transfer.id.0);
        }
    }
    acknowledged
}

/// Fills the file system under `dir` with one file until it is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0xA5u8; 1 << 20];
    while file
        .write_all(&chunk)
        .and_then(|()| file.sync_data())
        .is_ok()
    {}
    path
}

#[test]
fn a_full_disk_stops_the_node_and_loses_nothing_acknowledged() {
    // SAFETY: geteuid only reads the process's credentials.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = TempDir::new("full-disk");
    let mount = Mount::tmpfs(&dir.0.join("disk"), DISK_SIZE);
    let data = mount.0.join("data");
    let mut node = Node::start(&data);
    let accounts = wire_accounts(1..=ACCOUNTS, 1);
    let created = client(&node).create_accounts(&accounts).expect("accounts");
    assert!(created.iter().all(|r| r.status.name() == "created"));

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let node_ref = &node;
    std::thread::scope(|scope| {
        for loader in 0..2u128 {
            let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
            scope.spawn(move || {
                let ids = load(node_ref, 1 + loader * 1_000_000_000, &stop);
                acknowledged.lock().expect("ids").extend(ids);
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        fill(&mount.0);
        // The loaders stop once the node does (their writes fail); bound them anyway.
        let stopped = common::wait_until(Duration::from_secs(60), || exited(node_ref.child.id()));
        stop.store(true, Ordering::Relaxed);
        assert!(stopped, "the node kept running on a full disk");
    });
    let status = node.child.wait().expect("exit status");
    let stderr = node.stderr_text();
    assert_eq!(status.code(), Some(EXIT_FAULT), "{status}: {stderr}");
    assert!(stderr.contains("kassa: stopping:"), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("no space left"),
        "the message says the disk is full: {stderr}"
    );
    let acknowledged = std::mem::take(&mut *acknowledged.lock().expect("ids"));
    assert!(
        !acknowledged.is_empty(),
        "the load wrote before the disk filled"
    );
    drop(node);

    println!("data directory after the stop: {} MiB", du_mib(&data));
    std::fs::remove_file(mount.0.join("filler")).expect("free the space");
    let node = Node::start(&data);
    let mut client = client(&node);
    assert_all_found(&mut client, &acknowledged);
    println!("{} acknowledged transfers all found", acknowledged.len());
    assert_balanced(&node);
    let results = client
        .create_transfers(&[transfer(5_000_000_000)])
        .expect("a write after recovery");
    assert_eq!(results[0].status, CreateTransferStatus::Created);
}

/// The bytes under `dir`, in MiB.
fn du_mib(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total >> 20
}

/// Whether the process `pid` has exited (a zombie or gone).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}
