//! The wire port answers malformed frames as TigerBeetle's replica does (close the connection,
//! drop the frame, or evict with the right reason), applies nothing from them, and keeps
//! serving good clients; a retried request gets its original reply, across crashes too.

mod common;

use common::wire::{frame, request_header, RawClient};
use common::{Node, TempDir};
use kassa_wire::header::{HeaderLayout, Release};
use kassa_wire::multi_batch::encode_to_vec;
use kassa_wire::{
    Account, AccountId, CreateAccountStatus, CreateTransferResult, CreateTransferStatus,
    EvictionReason, Operation, Transfer, TransferId, MESSAGE_SIZE_MAX,
};
use zerocopy::{IntoBytes, TryFromBytes};

const CLUSTER: u128 = 0;

fn account(id: u128) -> Account {
    Account {
        id: AccountId(id),
        ledger: 1,
        code: 1,
        ..Account::default()
    }
}

fn create_accounts_body(ids: &[u128]) -> Vec<u8> {
    let accounts: Vec<Account> = ids.iter().map(|id| account(*id)).collect();
    encode_to_vec(128, &[accounts.as_bytes()]).expect("encodes")
}

/// A create_accounts request of `client` for account `id`, claiming session 1.
fn create_request(client: &RawClient, id: u128) -> Vec<u8> {
    let mut session = RawClient {
        stream: client.stream.try_clone().expect("clone"),
        ..*client
    };
    session.session = 1;
    session.request_frame(
        Operation::CreateAccounts.as_u8(),
        &create_accounts_body(&[id]),
    )
}

/// `frame`'s request header changed by `change`, resealed over `body`.
fn resealed(
    frame_bytes: &[u8],
    body: &[u8],
    change: impl FnOnce(&mut kassa_wire::RequestHeader),
) -> Vec<u8> {
    let mut header = request_header(frame_bytes);
    change(&mut header);
    header.seal(body);
    frame(header.as_bytes(), body)
}

#[test]
fn framing_errors_close_the_connection() {
    let dir = TempDir::new("wire-framing");
    let node = Node::start(&dir.0);
    let connect = |client| RawClient::connect(node.wire, CLUSTER, client);

    let mut client = connect(11);
    let mut bad = create_request(&client, 1011);
    bad[20] ^= 1;
    client.send(&bad);
    client.expect_closed();

    let mut client = connect(12);
    let mut bad = create_request(&client, 1012);
    let last = bad.len() - 1;
    bad[last - 200] ^= 1; // In the body: the body checksum fails.
    client.send(&bad);
    client.expect_closed();

    for (client_id, size) in [(13, 100u32), (14, MESSAGE_SIZE_MAX as u32 + 1)] {
        let mut client = connect(client_id);
        let good = create_request(&client, 1000 + client_id);
        let body = good[256..].to_vec();
        let mut header = request_header(&good);
        header.seal(&body);
        header.frame.size = size;
        header.reseal();
        client.send(header.as_bytes());
        client.expect_closed();
    }

    let mut client = connect(15);
    let good = create_request(&client, 1015);
    let mut header = request_header(&good);
    header.frame.command = 99;
    header.reseal();
    client.send(&frame(header.as_bytes(), &good[256..]));
    client.expect_closed();

    let mut client = RawClient::connect(node.wire, CLUSTER + 5, 16);
    let other_cluster = client.register_frame();
    client.send(&other_cluster);
    client.expect_closed();

    assert_nothing_applied_and_still_serving(&node, 1011..=1016);
    let log = node.stderr_text();
    assert!(
        log.contains("wire: closing the connection: bad frame"),
        "{log}"
    );
    let refusal = log.lines().find(|l| l.contains("unknown command 99"));
    let refusal = refusal.expect("the refusal is logged");
    assert!(
        refusal.contains("peer") && refusal.contains("127.0.0.1:"),
        "{refusal}"
    );
}

#[test]
fn bad_fields_are_dropped_and_bad_operations_and_bodies_evicted() {
    let dir = TempDir::new("wire-fields");
    let node = Node::start(&dir.0);
    let connect = |client| RawClient::connect(node.wire, CLUSTER, client);

    // Dropped: the connection stays; the next ping gets the next answer, a pong.
    let mut client = connect(21);
    let register = client.register_frame();
    let short = [0u8; 128];
    let wrong_size = resealed(&register, &short, |h| h.frame.size = 256 + 128);
    client.send(&wrong_size);
    let good = create_request(&client, 1021);
    let reserved = resealed(&good, &good[256..], |h| h.reserved[0] = 1);
    client.send(&reserved);
    let mut misdirected = request_header(&client.ping_frame());
    misdirected.frame.command = kassa_wire::Command::Prepare.as_u8();
    misdirected.reseal();
    client.send(misdirected.as_bytes());
    client.expect_dropped();

    // Evicted, each with its reason.
    let mut cases: Vec<(u128, Vec<u8>, EvictionReason)> = Vec::new();
    for (client_id, operation) in [(22u128, 200u8), (23, 137)] {
        let client = connect(client_id);
        let body = create_accounts_body(&[1000 + client_id]);
        let mut session = RawClient {
            stream: client.stream.try_clone().expect("clone"),
            ..client
        };
        session.session = 1;
        let request = session.request_frame(operation, &body);
        cases.push((client_id, request, EvictionReason::InvalidRequestOperation));
    }
    let trailer_client = connect(24);
    let good = create_request(&trailer_client, 1024);
    let mut body = good[256..].to_vec();
    body[128] = 0x00; // The trailer's 0xFF padding.
    cases.push((
        24,
        resealed(&good, &body, |_| {}),
        EvictionReason::InvalidRequestBody,
    ));
    let ids: Vec<AccountId> = (0..8190u128).map(|i| AccountId(2000 + i)).collect();
    let many = encode_to_vec(16, &[ids.as_bytes()]).expect("encodes");
    let lookup = resealed(&good, &many, |h| {
        h.operation = Operation::LookupAccounts.as_u8()
    });
    cases.push((24, lookup, EvictionReason::InvalidRequestBody));
    let stranger = create_request(&connect(25), 1025);
    cases.push((25, stranger, EvictionReason::NoSession));
    let old_release = resealed(
        &create_request(&connect(26), 1026),
        &create_accounts_body(&[1026]),
        |h| h.frame.release = Release::new(0, 16, 66),
    );
    cases.push((26, old_release, EvictionReason::ClientReleaseTooLow));
    for (client_id, request, reason) in cases {
        let mut client = connect(client_id);
        client.send(&request);
        assert_eq!(client.expect_eviction(), reason, "client {client_id}");
    }

    assert_nothing_applied_and_still_serving(&node, 1021..=1026);
}

/// No account of `ids` exists; a good client registers, creates an account and gets the
/// same reply again for a retry, without a second application.
fn assert_nothing_applied_and_still_serving(node: &Node, ids: std::ops::RangeInclusive<u128>) {
    for id in ids {
        assert_eq!(
            node.get(&format!("/v1/accounts/{id}")).0,
            404,
            "account {id}"
        );
    }
    let mut good = RawClient::connect(node.wire, CLUSTER, 99);
    good.register();
    let body = create_accounts_body(&[77]);
    let request = good.request_frame(Operation::CreateAccounts.as_u8(), &body);
    good.send(&request);
    let (reply, results) = good.expect_reply();
    assert_eq!(
        results[8..12],
        (CreateAccountStatus::Created as u32).to_le_bytes()
    );
    good.send(&request);
    let (again, results_again) = good.expect_reply();
    assert_eq!(
        (reply, &results),
        (again, &results_again),
        "a retry gets the cached reply"
    );
    let (status, account) = node.get("/v1/accounts/77");
    assert_eq!(status, 200, "{account}");
    let (status, all) = node.post("/v1/accounts/query", r#"{"limit":100}"#);
    assert_eq!(status, 200);
    assert_eq!(all.as_array().expect("accounts").len(), 1, "{all}");
}

#[test]
fn a_retry_after_a_crash_or_a_stop_gets_the_original_reply() {
    let dir = TempDir::new("wire-retry");
    // Snapshots every few entries: the sessions come back from a snapshot, not only the log.
    let start = |dir: &std::path::Path| {
        Node::try_start(dir, &["--snapshot-entries", "2"]).expect("kassa start")
    };
    let node = start(&dir.0);
    let mut client = RawClient::connect(node.wire, CLUSTER, 31);
    client.register();
    let accounts = [account(1), account(2)];
    client.call(Operation::CreateAccounts, &[accounts.as_bytes()]);
    let transfer = Transfer {
        id: TransferId(500),
        debit_account_id: AccountId(1),
        credit_account_id: AccountId(2),
        amount: 9,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    };
    let body = encode_to_vec(128, &[transfer.as_bytes()]).expect("encodes");
    let request = client.request_frame(Operation::CreateTransfers.as_u8(), &body);
    client.send(&request);
    let first = client.expect_reply();
    let result = CreateTransferResult::try_read_from_bytes(&first.1[..16]).expect("a result");
    assert_eq!(result.status, CreateTransferStatus::Created);

    let mut node = node;
    for crash in [true, false] {
        let data_dir = node.data_dir.clone();
        if crash {
            node.kill();
        } else {
            assert!(node.stop().success());
        }
        node = start(&data_dir);
        let mut retry = RawClient::connect(node.wire, CLUSTER, 31);
        retry.session = client.session;
        retry.send(&request);
        assert_eq!(
            retry.expect_reply(),
            first,
            "the original reply, byte for byte"
        );
        retry.expect_dropped(); // A ping with the session: a pong, not an eviction.
        let (_, account) = node.get("/v1/accounts/1");
        assert_eq!(account["debits_posted"], "9", "applied once");
    }
    // The session goes on: the next request in the chain is served.
    let mut next = RawClient::connect(node.wire, CLUSTER, 31);
    (next.session, next.request, next.parent) = (client.session, first.0.request, first.0.context);
    let (reply, _) = next.call(Operation::LookupAccounts, &[AccountId(1).as_bytes()]);
    assert_eq!(reply.request, first.0.request + 1);
}

/// A peer that keeps sending bad frames is logged at most a few times per window, with a
/// count of the lines left out, so it cannot flood the log; it is still refused every time.
#[test]
fn repeated_bad_frames_from_one_peer_are_logged_at_a_limited_rate() {
    let dir = TempDir::new("wire-log-limit");
    let node = Node::start(&dir.0);
    const BAD_FRAMES: usize = 60;
    for n in 0..BAD_FRAMES {
        let mut client = RawClient::connect(node.wire, CLUSTER, 2000 + n as u128);
        let mut bad = create_request(&client, 1);
        bad[20] ^= 1;
        client.send(&bad);
        client.expect_closed();
    }
    let logged = node
        .stderr_text()
        .lines()
        .filter(|line| line.contains("closing the connection: bad frame"))
        .count();
    assert!(
        (1..=kassa_node::log_limit::LINES_PER_WINDOW as usize).contains(&logged),
        "{logged} lines for {BAD_FRAMES} bad frames from one peer"
    );
    // A good client on the same address is still served.
    let mut client = RawClient::connect(node.wire, CLUSTER, 3000);
    client.register();
}
