//! What the node's integration tests share: a real `kassa` process in a temporary data
//! directory, and a minimal HTTP/1.1 client over std's TcpStream (one request per connection).
#![allow(dead_code)]

pub mod wire;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A data directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let unique = format!("kassa-test-{name}-{}-{}", std::process::id(), nanos());
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
}

/// The placement tests run on: `KASSA_TEST_PLACEMENT` (`id` or `ledger`), else the node's
/// default. The test command runs the node's tests once on each.
pub fn test_placement() -> Option<String> {
    std::env::var("KASSA_TEST_PLACEMENT").ok()
}

/// Runs `kassa format` on `data_dir` with `partitions` partitions (placed as
/// [`test_placement`] says); panics unless it succeeds.
pub fn format(data_dir: &Path, partitions: u32) {
    let placement = test_placement().map(|p| vec!["--placement".to_string(), p]);
    let formatted = Command::new(env!("CARGO_BIN_EXE_kassa"))
        .args([
            "format",
            "--partitions",
            &partitions.to_string(),
            "--data-dir",
        ])
        .arg(data_dir)
        .args(placement.unwrap_or_default())
        .output()
        .expect("run kassa format");
    assert!(formatted.status.success(), "{formatted:?}");
}

/// Runs `kassa format` on `data_dir` with `partitions` partitions placed by `placement`
/// (`id` or `ledger`); panics unless it succeeds.
pub fn format_placed(data_dir: &Path, partitions: u32, placement: &str) {
    let formatted = Command::new(env!("CARGO_BIN_EXE_kassa"))
        .args(["format", "--partitions", &partitions.to_string()])
        .args(["--placement", placement, "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run kassa format");
    assert!(formatted.status.success(), "{formatted:?}");
    let said = String::from_utf8_lossy(&formatted.stdout);
    assert!(said.contains(&format!("placed by {placement}")), "{said}");
}

/// A running `kassa start`.
pub struct Node {
    pub child: Child,
    pub http: SocketAddr,
    /// The wire port (TigerBeetle's client protocol).
    pub wire: SocketAddr,
    pub data_dir: PathBuf,
    /// Everything the node wrote to stderr so far (drained by a thread, so logging never blocks).
    pub stderr: Arc<Mutex<String>>,
}

impl Node {
    /// Starts a node on an ephemeral port and waits until it says it is ready.
    pub fn start(data_dir: &Path) -> Node {
        Node::try_start(data_dir, &[]).expect("kassa start")
    }

    /// Starts a node with extra flags; `Err` carries what it printed if it did not become ready.
    /// The wire port is ephemeral unless `extra` sets `--wire-address`.
    pub fn try_start(data_dir: &Path, extra: &[&str]) -> Result<Node, String> {
        Node::try_start_with_env(data_dir, extra, &[])
    }

    /// [`Node::try_start`] with extra environment variables.
    pub fn try_start_with_env(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Node, String> {
        let wire_default: &[&str] = if extra.contains(&"--wire-address") {
            &[]
        } else {
            &["--wire-address", "127.0.0.1:0"]
        };
        // A directory this start formats is placed as the test run says.
        let unformatted = !data_dir.join("cluster").exists() && !extra.contains(&"--placement");
        let placement: Vec<String> = match test_placement() {
            Some(placement) if unformatted => vec!["--placement".into(), placement],
            _ => Vec::new(),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_kassa"))
            .envs(env.iter().copied())
            .args([
                "start",
                "--http-address",
                "127.0.0.1:0",
                "--cores",
                "2",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(wire_default)
            .args(placement)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kassa");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = BufReader::new(child.stderr.take().expect("stderr"));
        let err_text = stderr.clone();
        let err_thread = std::thread::spawn(move || {
            let mut line = String::new();
            while err_pipe
                .read_line(&mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                err_text.lock().expect("stderr").push_str(&line);
                line.clear();
            }
        });
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut printed = String::new();
        while let Some(Ok(line)) = lines.next() {
            printed.push_str(&line);
            printed.push('\n');
            if let Some(address) = line.split("HTTP API on http://").nth(1) {
                let address = address
                    .split(',')
                    .next()
                    .expect("address")
                    .parse()
                    .expect("addr");
                let wire = line
                    .split("wire protocol on ")
                    .nth(1)
                    .expect("wire address");
                let wire = wire.split(',').next().expect("wire").parse().expect("wire");
                std::thread::spawn(move || lines.for_each(drop));
                let data_dir = data_dir.to_path_buf();
                return Ok(Node {
                    child,
                    http: address,
                    wire,
                    data_dir,
                    stderr,
                });
            }
        }
        let _ = child.wait();
        let _ = err_thread.join();
        let stderr = stderr.lock().expect("stderr").clone();
        Err(format!("{printed}{stderr}"))
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the node has written to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        request(self.http, "GET", path, None)
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        request(self.http, "POST", path, Some(body))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().expect("wait kassa")
    }

    /// SIGKILL: the process dies at once, as in a power cut for everything not yet fsynced.
    pub fn kill(mut self) {
        self.child.kill().expect("kill kassa");
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request; returns the status and the JSON body (`Null` when empty or not JSON).
pub fn request(address: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (status, text) = request_raw(address, method, path, body.map(str::as_bytes))
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// One HTTP request with raw bytes; `Err` if the connection failed.
pub fn request_raw(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or(b"");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Waits until `condition` holds, up to `timeout`.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Waits (up to 10 s) until `node` printed `marker` (a fault it injected aborting it), then
/// kills what is left of it; panics if it never printed it.
pub fn kill_once_printed(node: Node, marker: &str) {
    let printed = wait_until(Duration::from_secs(10), || {
        node.stderr_text().contains(marker)
    });
    assert!(printed, "the node never printed {marker:?}");
    node.kill();
}

/// A crash test's schedule, printed: its seed (`KASSA_CRASH_SEED`, else the clock) and how many
/// kills (`KASSA_CRASH_KILLS`, else `default_kills`).
pub fn crash_schedule(test: &str, default_kills: u32) -> (u64, u32) {
    let seed: u64 = std::env::var("KASSA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        });
    let kills: u32 = std::env::var("KASSA_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_kills);
    eprintln!("{test} seed {seed} (KASSA_CRASH_SEED to replay), {kills} kills");
    (seed, kills)
}

/// The flags of a crash test's start in `round`: every other round checkpoints every 20 log
/// entries, so that kills land while checkpoints are written and later starts restore from
/// them; the other rounds run the default.
pub fn crash_round_flags(round: u32) -> &'static [&'static str] {
    if round % 2 == 1 {
        &["--snapshot-entries", "20"]
    } else {
        &[]
    }
}

/// How many of the data directory's partitions hold a checkpoint.
pub fn partitions_checkpointed(data_dir: &Path) -> usize {
    let partitions = std::fs::read_dir(data_dir.join("partitions")).expect("partitions");
    partitions
        .filter(|entry| {
            let path = entry.as_ref().expect("entry").path();
            path.join("checkpoint").exists()
        })
        .count()
}

/// Adds `node`'s counts of create batches across partitions since it started (`GET /ready`:
/// run in shares, and by the coordinator) to `across`.
pub fn add_batches_across(node: &Node, across: &mut [u64; 2]) {
    let (_, ready) = node.get("/ready");
    for (count, name) in across
        .iter_mut()
        .zip(["batches_in_shares", "batches_coordinated"])
    {
        *count += ready[name].as_u64().unwrap_or(0);
    }
}

/// An account as JSON.
pub fn account_json(id: u128, ledger: u32, flags: &[&str]) -> String {
    format!(
        r#"{{"id":"{id}","ledger":{ledger},"code":1,"flags":{}}}"#,
        flags_json(flags)
    )
}

/// A transfer as JSON.
pub fn transfer_json(id: u128, debit: u128, credit: u128, amount: u128, flags: &[&str]) -> String {
    format!(
        r#"{{"id":"{id}","debit_account_id":"{debit}","credit_account_id":"{credit}","amount":"{amount}","ledger":1,"code":1,"flags":{}}}"#,
        flags_json(flags)
    )
}

fn flags_json(flags: &[&str]) -> String {
    let names: Vec<String> = flags.iter().map(|f| format!("\"{f}\"")).collect();
    format!("[{}]", names.join(","))
}

/// The result names of a create reply.
pub fn results(reply: &Value) -> Vec<String> {
    reply
        .as_array()
        .expect("an array of results")
        .iter()
        .map(|r| r["result"].as_str().expect("result name").to_string())
        .collect()
}

/// A sum of u128 amounts that cannot overflow: 256 bits, as (high, low).
pub type Sum = (u128, u128);

fn add(sum: &mut Sum, amount: u128) {
    let (low, carry) = sum.1.overflowing_add(amount);
    *sum = (sum.0 + carry as u128, low);
}

/// Per ledger: the sums of debits and credits, posted and pending, over all accounts (wide
/// sums: a ledger's accounts may hold up to u128::MAX each).
pub fn ledger_totals(node: &Node) -> std::collections::BTreeMap<u64, [Sum; 4]> {
    let (status, accounts) = node.post("/v1/accounts/query", r#"{"limit":8189}"#);
    assert_eq!(status, 200, "{accounts}");
    let mut totals = std::collections::BTreeMap::new();
    for account in accounts.as_array().expect("accounts") {
        let field =
            |name: &str| -> u128 { account[name].as_str().expect(name).parse().expect(name) };
        let total: &mut [Sum; 4] = totals
            .entry(account["ledger"].as_u64().expect("ledger"))
            .or_default();
        add(&mut total[0], field("debits_posted"));
        add(&mut total[1], field("credits_posted"));
        add(&mut total[2], field("debits_pending"));
        add(&mut total[3], field("credits_pending"));
    }
    totals
}

/// Asserts that, per ledger, debits equal credits (posted and pending).
pub fn assert_balanced(node: &Node) {
    for (ledger, [debits_posted, credits_posted, debits_pending, credits_pending]) in
        ledger_totals(node)
    {
        assert_eq!(debits_posted, credits_posted, "ledger {ledger}: posted");
        assert_eq!(debits_pending, credits_pending, "ledger {ledger}: pending");
    }
}

/// Where the test command installed TigerBeetle's official clients
/// (`scripts/install-test-clients.sh`): `KASSA_TEST_CLIENTS`, else `target/test-clients`.
pub fn test_clients_dir() -> PathBuf {
    match std::env::var_os("KASSA_TEST_CLIENTS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-clients"),
    }
}

/// A command running one of `node/tests/clients/` with the installed official client; panics
/// (the test fails, it does not skip) when the client is not installed.
pub fn official_client(language: &str, script: &str) -> Command {
    let clients = test_clients_dir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let (program, installed) = match language {
        "python" => {
            let python = clients.join("venv/bin/python");
            (python.clone(), python)
        }
        "node" => (
            PathBuf::from("node"),
            clients.join("npm/node_modules/tigerbeetle-node/package.json"),
        ),
        other => panic!("no official client for {other}"),
    };
    assert!(
        installed.exists(),
        "TigerBeetle's {language} client is not installed at {}: run scripts/install-test-clients.sh \
         (scripts/test.sh does)",
        installed.display()
    );
    let mut command = Command::new(program);
    command.arg(script);
    command.env("NODE_PATH", clients.join("npm/node_modules"));
    command
}

/// Runs a client script to completion within `timeout`; panics with its output if it fails.
pub fn run_client(mut command: Command, timeout: Duration) -> String {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the client script");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("client output");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "client script failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

/// Accounts with `ids` on `ledger`, code 1, no flags: what the load tests transfer between.
pub fn wire_accounts(ids: impl IntoIterator<Item = u128>, ledger: u32) -> Vec<kassa_wire::Account> {
    ids.into_iter()
        .map(|id| kassa_wire::Account {
            id: kassa_wire::AccountId(id),
            ledger,
            code: 1,
            ..kassa_wire::Account::default()
        })
        .collect()
}

/// Asserts that every transfer in `ids` exists, looking them up in full batches.
pub fn assert_all_found(client: &mut kassa_wire::client::BlockingClient, ids: &[u128]) {
    for chunk in ids.chunks(kassa_wire::BATCH_EVENTS_MAX) {
        let chunk: Vec<kassa_wire::TransferId> =
            chunk.iter().map(|id| kassa_wire::TransferId(*id)).collect();
        let found = client.lookup_transfers(&chunk).expect("lookup_transfers");
        assert_eq!(found.len(), chunk.len(), "acknowledged transfers were lost");
    }
}
