//! Shared helpers of the `kassa-raft` integration tests: a monoio io_uring runtime per phase
//! (dropping it mid-flight is how a test crashes a partition), temporary partition
//! directories on the build disk (O_DIRECT needs a real file system, not tmpfs), record
//! builders and the ledger checks every test ends with.
//!
//! Every test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kassa_raft::{
    Command, Ledger, LedgerConfig, Partition, PartitionConfig, PartitionStatus, Reply,
};
use kassa_wire::{
    Account, AccountId, CreateAccountStatus, CreateTransferStatus, Transfer, TransferId,
};

pub const LEDGER: u32 = 1;
/// Polls of a partition's status (1 ms apart) before a test gives up waiting.
pub const STATUS_POLLS_MAX: u32 = 10_000;
pub const CODE: u16 = 10;

/// Runs `future` to completion on a fresh single-threaded io_uring runtime with timers, then
/// drops the runtime and every task still on it (a crash, for partitions not shut down).
pub fn run<F: Future>(future: F) -> F::Output {
    let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime");
    runtime.block_on(future)
}

/// A directory removed when the test ends (kept if it fails, for inspection).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("kassa-raft-{name}-{}-{unique}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub fn config(dir: &Path, snapshot_entries: u64) -> PartitionConfig {
    PartitionConfig {
        partition: 7,
        dir: dir.to_path_buf(),
        ledger: LedgerConfig::default(),
        snapshot_entries,
        cache_blocks: kassa_raft::CACHE_BLOCKS_DEFAULT,
        memory: kassa_raft::MemoryBudget::unbounded(),
    }
}

pub fn account(id: u128) -> Account {
    Account {
        id: AccountId(id),
        ledger: LEDGER,
        code: CODE,
        ..Account::default()
    }
}

pub fn transfer(id: u128, debit: u128, credit: u128, amount: u128) -> Transfer {
    Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(debit),
        credit_account_id: AccountId(credit),
        amount,
        ledger: LEDGER,
        code: CODE,
        ..Transfer::default()
    }
}

/// The `now` of the `n`th command: milliseconds apart.
pub fn now(n: u64) -> u64 {
    1_700_000_000_000_000_000 + n * 1_000_000
}

pub fn create_accounts(n: u64, ids: impl IntoIterator<Item = u128>) -> Command {
    Command::CreateAccounts {
        now: now(n),
        accounts: ids.into_iter().map(account).collect(),
    }
}

/// `count` transfers from id `first` on, cycling over accounts `1..=accounts`.
pub fn create_transfers(n: u64, first: u128, count: u128, accounts: u128) -> Command {
    let transfers = (first..first + count)
        .map(|id| {
            let debit = 1 + id % accounts;
            let credit = 1 + (id + 1) % accounts;
            transfer(id, debit, credit, id)
        })
        .collect();
    Command::CreateTransfers {
        now: now(n),
        transfers,
    }
}

pub fn account_statuses(reply: &Reply) -> Vec<CreateAccountStatus> {
    match reply {
        Reply::CreateAccounts(results) => results.iter().map(|r| r.status).collect(),
        other => panic!("not a create_accounts reply: {other:?}"),
    }
}

pub fn transfer_statuses(reply: &Reply) -> Vec<CreateTransferStatus> {
    match reply {
        Reply::CreateTransfers(results) => results.iter().map(|r| r.status).collect(),
        other => panic!("not a create_transfers reply: {other:?}"),
    }
}

pub fn assert_all_created(reply: &Reply) {
    match reply {
        Reply::CreateAccounts(_) => {
            let statuses = account_statuses(reply);
            assert!(
                statuses.iter().all(|s| *s == CreateAccountStatus::Created),
                "{statuses:?}"
            );
        }
        Reply::CreateTransfers(_) => {
            let statuses = transfer_statuses(reply);
            assert!(
                statuses.iter().all(|s| *s == CreateTransferStatus::Created),
                "{statuses:?}"
            );
        }
        other => panic!("not a create reply: {other:?}"),
    }
}

/// Checks every ledger invariant, and per ledger debits = credits (posted and pending).
pub fn check_ledger(ledger: &Ledger) {
    ledger.validate();
    let (mut debits, mut credits) = (0u128, 0u128);
    for account in ledger.accounts() {
        assert_eq!(account.ledger, LEDGER);
        debits += account.debits_posted;
        credits += account.credits_posted;
        assert_eq!(account.debits_pending, 0);
        assert_eq!(account.credits_pending, 0);
    }
    assert_eq!(debits, credits, "debits posted != credits posted");
}

/// The ledger's snapshot bytes: equal bytes, equal state.
pub fn snapshot_bytes(ledger: &Ledger) -> Vec<u8> {
    let mut bytes = Vec::new();
    ledger.snapshot(&mut bytes);
    bytes
}

/// The sum of the amounts of transfers `first..first + count` (amount = id).
pub fn amounts(first: u128, count: u128) -> u128 {
    (first..first + count).sum()
}

/// Waits until the partition's status satisfies `done` (openraft's metrics trail the replies a
/// little: a write returns once applied, the core records it after).
pub async fn wait_status(
    partition: &Partition,
    what: &str,
    done: impl Fn(&PartitionStatus) -> bool,
) -> PartitionStatus {
    for _ in 0..STATUS_POLLS_MAX {
        let status = partition.status();
        if done(&status) {
            return status;
        }
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("waited in vain for {what}: {:?}", partition.status());
}

/// Set in a child test process: the partition directory it works in.
pub const CHILD_DIR_ENV: &str = "KASSA_RAFT_TEST_CHILD_DIR";
/// Most lines a child test process prints before the parent gives up on it.
pub const CHILD_LINES_MAX: usize = 100_000;
/// How long a child test process may run before the parent kills it anyway.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(120);
/// Starts a child's line reporting an acknowledged write.
const ACK_MARKER: &str = "KASSA-RAFT-ACK";

/// The directory a child test process works in; `None` when this process is not a child
/// (the child tests are `#[ignore]`d and return at once in a normal run).
pub fn child_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD_DIR_ENV).map(PathBuf::from)
}

/// In a child: reports one acknowledged write (its number) with a digest of the ledger.
pub fn report_ack(n: u64, ledger: &Ledger) {
    use std::io::Write;
    let digest = digest(ledger);
    let mut stdout = std::io::stdout().lock();
    // On a line of its own: the test harness prints "test <name> ... " without a newline.
    writeln!(stdout, "\n{ACK_MARKER} {n} {digest}").expect("stdout");
    stdout.flush().expect("stdout");
}

/// The digest `report_ack` prints for `ledger`.
pub fn digest(ledger: &Ledger) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hasher::write(&mut hasher, &snapshot_bytes(ledger));
    std::hash::Hasher::finish(&hasher)
}

/// Runs the ignored test `test` of this test binary as a child process working on `dir`,
/// and kills it with SIGKILL (a crash: no destructor, no flush) once it acknowledged
/// `kill_after` writes. Returns the `(write number, ledger digest)` of every ack it printed.
pub fn crash_child(test: &str, dir: &Path, kill_after: u64) -> Vec<(u64, u64)> {
    use std::io::BufRead;
    let exe = std::env::current_exe().expect("test binary");
    let mut child = std::process::Command::new(exe)
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("child test process");
    let stdout = child.stdout.take().expect("piped stdout");
    let child = std::sync::Arc::new(std::sync::Mutex::new(child));
    // A child that hangs is killed anyway: its stdout then ends and so does the loop below.
    let watchdog = child.clone();
    std::thread::spawn(move || {
        std::thread::sleep(CHILD_TIMEOUT);
        let _ = watchdog.lock().expect("child").kill();
    });
    let mut acks = Vec::new();
    for line in std::io::BufReader::new(stdout)
        .lines()
        .take(CHILD_LINES_MAX)
    {
        let line = line.expect("child stdout");
        let Some(report) = line.strip_prefix(ACK_MARKER) else {
            continue;
        };
        let mut words = report.split_whitespace();
        let n = words
            .next()
            .and_then(|w| w.parse().ok())
            .expect("ack number");
        let digest = words
            .next()
            .and_then(|w| w.parse().ok())
            .expect("ack digest");
        acks.push((n, digest));
        if acks.len() as u64 >= kill_after {
            break;
        }
    }
    let mut child = child.lock().expect("child");
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("child exit");
    assert!(
        !status.success(),
        "the child must die by the kill, not finish: {status}"
    );
    assert_eq!(acks.len() as u64, kill_after, "the child stopped early");
    acks
}
