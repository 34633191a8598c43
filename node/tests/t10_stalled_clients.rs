//! Slow and idle clients cannot exhaust the node: thousands of stalled connections on both
//! ports (idle, a header sent in part, a body announced and never sent) while other clients
//! are served, then every stalled one is closed by the node's timeouts; the memory held by
//! frames still arriving stays bounded; connections past the caps are refused at once.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::wire::RawClient;
use common::{account_json, assert_balanced, results, transfer_json, Node, TempDir};
use kassa_wire::header::HeaderLayout;
use kassa_wire::{Operation, RequestHeader, HEADER_SIZE, MESSAGE_SIZE_MAX};
use zerocopy::IntoBytes;

/// Stalled connections of each kind, on each port.
const STALLED_PER_KIND: usize = 500;
/// The timeouts the node runs with here (milliseconds).
const TIMEOUT_MS: &str = "2000";
/// How long the test waits for the node to close every stalled connection.
const CLOSE_WAIT: Duration = Duration::from_secs(60);

/// Raises this process's open-files limit to its hard limit (thousands of sockets).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one rlimit struct, which `limit` is.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= 8 * STALLED_PER_KIND as u64,
        "this test needs {} open files; the hard limit is {}",
        8 * STALLED_PER_KIND,
        limit.rlim_cur
    );
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .expect("value")
        .parse()
        .expect("kB");
    kib * 1024
}

fn connect(address: SocketAddr, first_bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect");
    if !first_bytes.is_empty() {
        stream.write_all(first_bytes).expect("send the first bytes");
    }
    stream
}

/// A valid request header announcing a full-size body, sealed, as a stalled client sends it.
fn large_frame_header() -> Vec<u8> {
    let mut header = RequestHeader::new(0, 99, common::wire::RELEASE, 147);
    header.session = 1;
    header.request = 1;
    header.frame.size = MESSAGE_SIZE_MAX as u32;
    header.seal(&[]);
    header.as_bytes().to_vec()
}

/// Whether the node has closed `stream` (a read sees the end or an error, not a time-out).
fn closed_by_node(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(1)))
        .expect("read timeout");
    let mut byte = [0u8; 4096];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => continue, // A 408 or similar before the close.
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn thousands_of_stalled_connections_neither_block_other_clients_nor_stay_open() {
    raise_open_files_limit();
    let dir = TempDir::new("stalled");
    let timeouts = [
        "--http-idle-timeout-ms",
        TIMEOUT_MS,
        "--http-header-timeout-ms",
        TIMEOUT_MS,
        "--http-body-timeout-ms",
        TIMEOUT_MS,
        "--wire-idle-timeout-ms",
        TIMEOUT_MS,
        "--wire-frame-timeout-ms",
        TIMEOUT_MS,
    ];
    let node = Node::try_start(&dir.0, &timeouts).expect("kassa start");
    let accounts = format!("[{},{}]", account_json(1, 1, &[]), account_json(2, 1, &[]));
    assert_eq!(node.post("/v1/accounts", &accounts).0, 200);
    let rss_before = rss_bytes(node.child.id());

    let partial_body =
        b"POST /v1/transfers HTTP/1.1\r\nhost: kassa\r\ncontent-length: 1000000\r\n\r\n[{";
    let large = large_frame_header();
    let mut large_with_some_body = large.clone();
    large_with_some_body.extend_from_slice(&[0u8; 100]);
    let kinds: Vec<(SocketAddr, Vec<u8>)> = vec![
        (node.http, Vec::new()),
        (node.http, b"POST /v1/transfers HTTP/1.1\r\nho".to_vec()),
        (node.http, partial_body.to_vec()),
        (node.wire, Vec::new()),
        (node.wire, large[..100].to_vec()),
        (node.wire, large_with_some_body),
    ];
    let mut stalled = Vec::new();
    for _ in 0..STALLED_PER_KIND {
        for (address, first_bytes) in &kinds {
            stalled.push(connect(*address, first_bytes));
        }
    }
    let opened = Instant::now();

    // Other clients are served meanwhile, on both ports.
    for id in 0..20u128 {
        let transfer = format!("[{}]", transfer_json(100 + id, 1, 2, 1, &[]));
        let (status, reply) = node.post("/v1/transfers", &transfer);
        assert_eq!(
            (status, results(&reply)),
            (200, vec!["created".to_string()])
        );
    }
    let mut client = RawClient::connect(node.wire, 0, 4242);
    client.register();
    let (reply, _) = client.call(Operation::LookupAccounts, &[1u128.as_bytes()]);
    assert_eq!(reply.frame.size as usize, HEADER_SIZE + 128 + 128);
    let served_within = opened.elapsed();

    let rss_stalled = rss_bytes(node.child.id());
    let growth = rss_stalled.saturating_sub(rss_before);
    println!(
        "{} stalled connections; others served within {served_within:?}; RSS {} MiB before, \
         {} MiB with the stalled connections",
        stalled.len(),
        rss_before >> 20,
        rss_stalled >> 20
    );
    // Bodies still arriving are bounded node-wide (256 MiB): without that bound the stalled
    // large frames would hold 500 MiB.
    let bound = kassa_node::wire::INCOMPLETE_FRAMES_BYTES_MAX as u64 + (128 << 20);
    assert!(
        growth < bound,
        "RSS grew by {growth} bytes with stalled frames"
    );

    // Every stalled connection is closed by the node.
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut open: Vec<TcpStream> = stalled;
    while !open.is_empty() && Instant::now() < deadline {
        open.retain_mut(|stream| !closed_by_node(stream));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        open.is_empty(),
        "{} stalled connections still open after {CLOSE_WAIT:?}",
        open.len()
    );
    println!("all closed {:?} after they were opened", opened.elapsed());
    let (status, _) = node.get("/health");
    assert_eq!(status, 200);
    assert_balanced(&node);
}

#[test]
fn connections_past_the_caps_are_refused_at_once_and_served_again_after() {
    let dir = TempDir::new("caps");
    let caps = ["--http-connections-max", "4", "--wire-connections-max", "4"];
    let node = Node::try_start(&dir.0, &caps).expect("kassa start");
    let held: Vec<TcpStream> = (0..4).map(|_| connect(node.http, &[])).collect();
    // Past the cap: a 503 naming the reason, then the close.
    let mut refused = connect(node.http, b"GET /health HTTP/1.1\r\nhost: kassa\r\n\r\n");
    refused
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = String::new();
    refused.read_to_string(&mut answer).expect("the refusal");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    drop(held);
    let ready = common::wait_until(Duration::from_secs(10), || {
        common::request_raw(node.http, "GET", "/health", None).is_ok_and(|(s, _)| s == 200)
    });
    assert!(ready, "served again once the held connections closed");

    let held: Vec<RawClient> = (0..4)
        .map(|n| {
            let mut client = RawClient::connect(node.wire, 0, 500 + n);
            client.register();
            client
        })
        .collect();
    let mut refused = RawClient::connect(node.wire, 0, 600);
    let frame = refused.register_frame();
    let _ = refused.stream.write_all(&frame);
    refused.expect_closed();
    drop(held);
    let served = common::wait_until(Duration::from_secs(10), || {
        let mut client = RawClient::connect(node.wire, 0, 700);
        let frame = client.register_frame();
        client.send(&frame);
        matches!(client.receive(), common::wire::Answer::Frame(..))
    });
    assert!(
        served,
        "the wire port serves again once the held connections closed"
    );
}
