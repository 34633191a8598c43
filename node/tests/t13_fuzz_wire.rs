//! A fuzzer for the wire port, against a live node with the default 16 partitions: mutated
//! frames with valid checksums (odd sizes, odd commands, operations, sessions, request numbers,
//! releases, reserved bytes, malformed multi-batch bodies), frames cut short, sent in pieces or
//! with stale checksums, over many connections. Meanwhile a well-behaved client must keep being
//! served; every frame the node sends must be well formed (sealed, a reply, pong or eviction);
//! at the end the node is up and every ledger balances.
//!
//! Short by default (`FRAMES_DEFAULT` frames). `KASSA_FUZZ_SECONDS=N` runs for N seconds
//! instead, and `KASSA_FUZZ_SEED` picks the seed (printed, to replay a failure).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use common::{assert_balanced, Node, TempDir};
use kassa_wire::client::{BlockingClient, ClientConfig};
use kassa_wire::multi_batch::encode_to_vec;
use kassa_wire::{
    checksum, Account, AccountFilter, AccountId, Command, Header, HeaderLayout, QueryFilter,
    RegisterRequest, ReplyHeader, Transfer, TransferId, HEADER_SIZE, MESSAGE_SIZE_MAX,
};
use zerocopy::IntoBytes;

/// Frames the short run sends.
const FRAMES_DEFAULT: u64 = 10_000;
/// Frames between two checks that a well-behaved client is still served.
const FRAMES_PER_CHECK: u64 = 500;
const RELEASE: u32 = (17 << 8) | 8;

/// splitmix64: a small, seeded generator; the whole run follows from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A small id, so that mutated requests meet each other's records.
fn small_id(rng: &mut Rng) -> u128 {
    if rng.chance(5) {
        0
    } else {
        1 + rng.below(300) as u128
    }
}

fn account(rng: &mut Rng) -> Account {
    Account {
        id: AccountId(small_id(rng)),
        ledger: rng.pick(&[0, 1, 2]),
        code: rng.pick(&[0, 1, 7]),
        flags: kassa_wire::AccountFlags(rng.pick(&[0, 0, 1, 2, 4, 8, 16, 0xFFFF])),
        ..Account::default()
    }
}

fn transfer(rng: &mut Rng) -> Transfer {
    Transfer {
        id: TransferId(small_id(rng) + 10_000 * rng.below(50) as u128),
        debit_account_id: AccountId(small_id(rng)),
        credit_account_id: AccountId(small_id(rng)),
        amount: rng.pick(&[0, 1, 5, 100, u128::MAX]),
        pending_id: TransferId(if rng.chance(20) { small_id(rng) } else { 0 }),
        timeout: rng.pick(&[0, 0, 1, 3600]),
        ledger: rng.pick(&[0, 1, 1, 2]),
        code: rng.pick(&[0, 1, 1]),
        flags: kassa_wire::TransferFlags(
            rng.pick(&[0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 3, 0xFFFF]),
        ),
        ..Transfer::default()
    }
}

/// A well-formed multi-batch body for `operation` (or for a random element size).
fn body(rng: &mut Rng, operation: u8) -> Vec<u8> {
    let batches = 1 + rng.below(3) as usize;
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    let element_size = match operation {
        146 | 147 | 142 | 143 => 128,
        144 | 145 => 64,
        140 | 141 => 16,
        _ => rng.pick(&[16, 64, 128]),
    };
    for _ in 0..batches {
        let count = rng.pick(&[0, 1, 1, 2, 5, 40]) as usize;
        let payload: Vec<u8> = match operation {
            146 => (0..count)
                .flat_map(|_| account(rng).as_bytes().to_vec())
                .collect(),
            147 => (0..count)
                .flat_map(|_| transfer(rng).as_bytes().to_vec())
                .collect(),
            140 | 141 => (0..count)
                .flat_map(|_| small_id(rng).to_le_bytes())
                .collect(),
            142 | 143 => {
                let mut filter = AccountFilter::new(
                    AccountId(small_id(rng)),
                    rng.pick(&[0, 1, 10, 8189, 8190, u32::MAX]),
                    kassa_wire::AccountFilterFlags(rng.below(16) as u32),
                );
                filter.timestamp_max = rng.pick(&[0, 1, u64::MAX]);
                filter.as_bytes().to_vec()
            }
            144 | 145 => {
                let mut filter = QueryFilter::new(
                    rng.pick(&[0, 1, 10, 8189, 8190]),
                    kassa_wire::QueryFilterFlags(rng.below(4) as u32),
                );
                filter.ledger = rng.pick(&[0, 1]);
                filter.as_bytes().to_vec()
            }
            _ => rng.bytes(count * element_size),
        };
        payloads.push(payload);
    }
    let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    encode_to_vec(element_size, &slices).unwrap_or_default()
}

/// A body bent out of shape: cut, grown, bytes flipped, the trailer's counts changed.
fn mutate_body(rng: &mut Rng, mut body: Vec<u8>) -> Vec<u8> {
    match rng.below(8) {
        0 => body.truncate(rng.below(body.len() as u64 + 1) as usize),
        1 => {
            let len = 1 + rng.below(300) as usize;
            body.extend(rng.bytes(len));
        }
        2 if !body.is_empty() => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(body.len() as u64) as usize;
                body[at] = rng.next() as u8;
            }
        }
        3 if body.len() >= 2 => {
            let at = body.len() - 2 - 2 * rng.below(3) as usize % body.len().max(2);
            let value = rng.pick(&[0u16, 1, 2, 0xFFFE, 0xFFFF, 8190]);
            if at + 2 <= body.len() {
                body[at..at + 2].copy_from_slice(&value.to_le_bytes());
            }
        }
        4 => {
            let len = rng.pick(&[0, 1, 2, 15, 16, 64, 128, 255, 4096]);
            body = rng.bytes(len);
        }
        5 => body = vec![0xFF; rng.pick(&[2, 4, 128, 256]) as usize],
        _ => {}
    }
    body
}

/// One connection's state: its client id and, once registered, its session and chain.
struct Session {
    client: u128,
    session: u64,
    request: u32,
    parent: u128,
}

/// Seals `header` over `body`: body checksum first, then the header's.
fn seal(header: &mut [u8], body: &[u8]) {
    header[32..48].copy_from_slice(&checksum(body).to_le_bytes());
    let sum = checksum(&header[16..HEADER_SIZE]);
    header[0..16].copy_from_slice(&sum.to_le_bytes());
}

/// A request frame of `session`, its fields mutated at random, usually sealed.
fn mutated_frame(rng: &mut Rng, session: &Session) -> Vec<u8> {
    let command = if rng.chance(85) {
        Command::Request.as_u8()
    } else if rng.chance(60) {
        Command::PingClient.as_u8()
    } else {
        rng.below(32) as u8
    };
    let operation = if rng.chance(80) {
        rng.pick(&[2, 140, 141, 142, 143, 144, 145, 146, 147, 147, 146, 137])
    } else {
        rng.next() as u8
    };
    let register = operation == 2;
    let mut body = if register && command == Command::Request.as_u8() {
        RegisterRequest::new().as_bytes().to_vec()
    } else if command == Command::Request.as_u8() {
        body(rng, operation)
    } else {
        Vec::new()
    };
    if rng.chance(35) {
        body = mutate_body(rng, body);
    }
    let mut header = vec![0u8; HEADER_SIZE];
    header[80..96].copy_from_slice(&(if rng.chance(3) { 1u128 } else { 0 }).to_le_bytes());
    let size = (HEADER_SIZE + body.len()) as u32;
    let size = if rng.chance(8) {
        rng.pick(&[
            0,
            1,
            255,
            256,
            257,
            size + 1,
            size.saturating_sub(1),
            MESSAGE_SIZE_MAX as u32 + 1,
            u32::MAX,
        ])
    } else {
        size
    };
    header[96..100].copy_from_slice(&size.to_le_bytes());
    let release = if rng.chance(5) {
        let random = rng.next() as u32;
        rng.pick(&[0, (16 << 8) | 4, (18 << 8), u32::MAX, random])
    } else {
        RELEASE
    };
    header[108..112].copy_from_slice(&release.to_le_bytes());
    header[114] = command;
    if command == Command::PingClient.as_u8() {
        header[128..144].copy_from_slice(&session.client.to_le_bytes());
        header[144..152].copy_from_slice(&rng.next().to_le_bytes());
        header[152..160].copy_from_slice(&session.session.to_le_bytes());
    } else {
        let parent = if register { 0 } else { session.parent };
        let parent = if rng.chance(5) {
            rng.next() as u128
        } else {
            parent
        };
        header[128..144].copy_from_slice(&parent.to_le_bytes());
        let client = if rng.chance(5) {
            rng.pick(&[0, 1, session.client ^ 1])
        } else {
            session.client
        };
        header[160..176].copy_from_slice(&client.to_le_bytes());
        let session_number = if register { 0 } else { session.session };
        let session_number = if rng.chance(8) {
            rng.pick(&[
                0,
                1,
                session_number + 1,
                session_number.wrapping_sub(1),
                u64::MAX,
            ])
        } else {
            session_number
        };
        header[176..184].copy_from_slice(&session_number.to_le_bytes());
        if rng.chance(3) {
            header[184..192].copy_from_slice(&rng.next().to_le_bytes());
        }
        let request = if register { 0 } else { session.request + 1 };
        let request = if rng.chance(10) {
            rng.pick(&[0, 1, request + 1, request.wrapping_sub(1), u32::MAX])
        } else {
            request
        };
        header[192..196].copy_from_slice(&request.to_le_bytes());
        header[196] = operation;
    }
    if rng.chance(5) {
        // A field that must be zero, or any byte at all.
        let at = rng.pick(&[16, 48, 64, 100, 104, 112, 115, 116, 127, 144, 200, 210, 255]);
        header[at] = 1 + rng.below(255) as u8;
    }
    if rng.chance(92) {
        seal(&mut header, &body);
    }
    header.extend_from_slice(&body);
    header
}

/// Reads what the node sent on `stream` (non-blocking) and checks every whole frame; with
/// `wait`, waits up to `WAIT_MAX` for one. `Err` once the node closed the connection. Frames
/// are buffered in `pending` until whole.
fn drain(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    session: &mut Session,
    wait: bool,
) -> Result<(), ()> {
    let started = Instant::now();
    loop {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Err(()),
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return Err(()),
            }
        }
        let frames = check_frames(pending, session);
        if !wait || frames > 0 || started.elapsed() >= WAIT_MAX {
            return Ok(());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Frames the node sent, by command (replies 8, pongs 4, evictions 18), for the report.
static ANSWERS: [AtomicU64; 32] = [const { AtomicU64::new(0) }; 32];

/// How long the fuzzer waits for an answer it wants (a register's reply).
const WAIT_MAX: Duration = Duration::from_millis(100);

/// Checks and removes the whole frames at the front of `pending`; returns how many.
fn check_frames(pending: &mut Vec<u8>, session: &mut Session) -> usize {
    let mut frames = 0;
    while pending.len() >= HEADER_SIZE {
        let header = Header::read(&pending[..HEADER_SIZE]).expect("256 bytes");
        assert!(
            header.valid_checksum(),
            "the node sent a header with a bad checksum"
        );
        let size = header.frame.size as usize;
        assert!(
            (HEADER_SIZE..=MESSAGE_SIZE_MAX).contains(&size),
            "size {size}"
        );
        if pending.len() < size {
            break;
        }
        assert!(header.valid_checksum_body(&pending[HEADER_SIZE..size]));
        let command = header.frame.command;
        ANSWERS[command as usize % ANSWERS.len()].fetch_add(1, AtomicOrdering::Relaxed);
        assert!(
            [Command::Reply, Command::PongClient, Command::Eviction]
                .iter()
                .any(|c| c.as_u8() == command),
            "the node sent command {command}"
        );
        if let Some(reply) = ReplyHeader::from_header(&header) {
            if reply.client == session.client && reply.request >= session.request {
                if reply.request == 0 {
                    session.session = reply.commit;
                }
                session.request = reply.request;
                session.parent = reply.context;
            }
        }
        pending.drain(..size);
        frames += 1;
    }
    frames
}

fn control(node: &Node) -> BlockingClient {
    let mut config = ClientConfig::new(vec![node.wire], 0);
    config.deadline = Duration::from_secs(30);
    BlockingClient::connect(config).expect("a well-behaved client connects")
}

fn connect(address: SocketAddr, rng: &mut Rng) -> (TcpStream, Session) {
    let stream = TcpStream::connect(address).expect("connect to the wire port");
    stream.set_nonblocking(true).expect("non-blocking");
    let client = ((rng.next() as u128) << 64 | rng.next() as u128).max(1);
    let session = Session {
        client,
        session: 0,
        request: 0,
        parent: 0,
    };
    (stream, session)
}

#[test]
fn mutated_frames_never_stop_the_node_nor_keep_others_from_being_served() {
    let seconds: Option<u64> = std::env::var("KASSA_FUZZ_SECONDS").ok().map(|s| {
        s.parse()
            .expect("KASSA_FUZZ_SECONDS is a number of seconds")
    });
    let seed: u64 = std::env::var("KASSA_FUZZ_SEED").map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        },
        |s| s.parse().expect("KASSA_FUZZ_SEED is a u64"),
    );
    println!("wire fuzz: seed {seed} (KASSA_FUZZ_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let dir = TempDir::new("fuzz-wire");
    let extra = ["--wire-frame-timeout-ms", "500"];
    let mut node = Node::try_start(&dir.0, &extra).expect("kassa start");
    let mut control = control(&node);
    let accounts: Vec<Account> = (1..=2)
        .map(|id| Account {
            id: AccountId(1_000_000 + id),
            ledger: 9,
            code: 1,
            ..Account::default()
        })
        .collect();
    control
        .create_accounts(&accounts)
        .expect("control accounts");

    let started = Instant::now();
    let deadline = seconds.map(|s| started + Duration::from_secs(s));
    let done = |frames: u64| match deadline {
        Some(deadline) => Instant::now() >= deadline,
        None => frames >= FRAMES_DEFAULT,
    };
    let (mut stream, mut session) = connect(node.wire, &mut rng);
    let mut pending = Vec::new();
    let (mut frames, mut closed, mut checks) = (0u64, 0u64, 0u64);
    let mut control_ids = Vec::new();
    while !done(frames) {
        if session.session == 0 && rng.chance(90) {
            // Most connections register properly first, to reach the deeper checks.
            let mut header = vec![0u8; HEADER_SIZE];
            let body = RegisterRequest::new().as_bytes().to_vec();
            header[96..100].copy_from_slice(&((HEADER_SIZE + body.len()) as u32).to_le_bytes());
            header[108..112].copy_from_slice(&RELEASE.to_le_bytes());
            header[114] = Command::Request.as_u8();
            header[160..176].copy_from_slice(&session.client.to_le_bytes());
            header[196] = 2;
            seal(&mut header, &body);
            header.extend_from_slice(&body);
            let _ = stream.write_all(&header);
            let _ = drain(&mut stream, &mut pending, &mut session, true);
        }
        let frame = mutated_frame(&mut rng, &session);
        let sent = if rng.chance(10) {
            // In pieces, or cut short and abandoned.
            let cut = rng.below(frame.len() as u64) as usize;
            let first = stream.write_all(&frame[..cut]);
            if rng.chance(50) {
                std::thread::sleep(Duration::from_millis(1));
                first.and_then(|()| stream.write_all(&frame[cut..]))
            } else {
                first.and(Err(std::io::Error::other("abandoned")))
            }
        } else {
            stream.write_all(&frame)
        };
        frames += 1;
        let wait = rng.chance(10);
        let alive = sent.is_ok() && drain(&mut stream, &mut pending, &mut session, wait).is_ok();
        if !alive || rng.chance(2) {
            closed += 1;
            (stream, session) = connect(node.wire, &mut rng);
            pending.clear();
        }
        if frames % FRAMES_PER_CHECK == 0 {
            assert!(
                node.alive(),
                "the node stopped after {frames} frames (seed {seed})"
            );
            let id = 5_000_000 + frames as u128;
            let transfer = Transfer {
                id: TransferId(id),
                debit_account_id: AccountId(1_000_001),
                credit_account_id: AccountId(1_000_002),
                amount: 1,
                ledger: 9,
                code: 1,
                ..Transfer::default()
            };
            let results = control
                .create_transfers(&[transfer])
                .expect("control write");
            assert_eq!(results[0].status.name(), "created");
            control_ids.push(TransferId(id));
            checks += 1;
        }
    }
    assert!(node.alive(), "the node stopped (seed {seed})");
    let found = control
        .lookup_transfers(&control_ids)
        .expect("control lookup");
    assert_eq!(found.len(), control_ids.len());
    let answered =
        |command: Command| ANSWERS[command.as_u8() as usize].load(AtomicOrdering::Relaxed);
    println!(
        "wire fuzz: {frames} frames over {closed} reconnections in {:?}; the node answered \
         {} replies, {} pongs, {} evictions; {checks} control writes served; seed {seed}",
        started.elapsed(),
        answered(Command::Reply),
        answered(Command::PongClient),
        answered(Command::Eviction),
    );
    assert_balanced(&node);
}
