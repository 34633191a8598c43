//! Frames captured from TigerBeetle's real 0.17.8 client (see `fixtures/README.md`): every one
//! passes our validation; headers rebuilt by the client's rules from their variable fields are
//! byte-identical to the captured ones; and each request's `parent` is the `context` of the
//! reply our builder makes for the previous request, so the real client accepted our replies
//! and chained on them.

use kassa_wire::multi_batch::encode_to_vec;
use kassa_wire::{
    build_pong, build_reply, check_reply_to, check_server_frame, validate_client_frame,
    validate_request, ClientFrame, HeaderLayout, MultiBatch, Operation, RegisterRequest,
    RegisterResult, Release, ReplyFields, ReplyHeader, RequestBody, RequestHeader, Sender,
    Transfer, MESSAGE_BODY_SIZE_MAX,
};
use zerocopy::{FromBytes, IntoBytes};

const TIMESTAMP_BASE: u64 = 1_700_000_000_000_000_000;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The request in fixture `name`, validated as the server validates it.
fn request(name: &str) -> (RequestHeader, Vec<u8>) {
    let frame = fixture(name);
    let (header, body) = frame.split_at(256);
    let Ok(ClientFrame::Request(request)) = validate_client_frame(header, body, 0) else {
        panic!(
            "{name} refused: {:?}",
            validate_client_frame(header, body, 0)
        );
    };
    validate_request(&request, body, MESSAGE_BODY_SIZE_MAX).unwrap();
    (request, body.to_vec())
}

/// The reply the harness sent to `request` (commit `commit`, the `index`-th of its run).
fn harness_reply(request: &RequestHeader, body: &[u8], commit: u64) -> (ReplyHeader, Vec<u8>) {
    let timestamp = TIMESTAMP_BASE + 1000 * (commit - 100);
    let operation = Operation::from_u8(request.operation).unwrap();
    let reply_body = match validate_request(request, body, MESSAGE_BODY_SIZE_MAX)
        .unwrap()
        .1
    {
        RequestBody::Register => RegisterResult::new(MESSAGE_BODY_SIZE_MAX as u32)
            .as_bytes()
            .to_vec(),
        RequestBody::Batches(batches) => {
            let results: Vec<Vec<u8>> = batches
                .batches()
                .map(|batch| created_results(operation, batch, timestamp))
                .collect();
            let refs: Vec<&[u8]> = results.iter().map(Vec::as_slice).collect();
            encode_to_vec(operation.result_size(), &refs).unwrap()
        }
    };
    let fields = ReplyFields {
        view: 0,
        replica: 0,
        commit,
        timestamp,
    };
    let reply = build_reply(request, fields, &reply_body);
    check_server_frame(reply.as_bytes(), &reply_body, 0).unwrap();
    check_reply_to(request, body, &reply, &reply_body).unwrap();
    (reply, reply_body)
}

fn created_results(operation: Operation, batch: &[u8], timestamp: u64) -> Vec<u8> {
    if operation.result_size() != 16 {
        return Vec::new();
    }
    (0..batch.len() / operation.event_size())
        .flat_map(|index| {
            let mut result = (timestamp + index as u64).to_le_bytes().to_vec();
            result.extend_from_slice(&u32::MAX.to_le_bytes());
            result.extend_from_slice(&[0; 4]);
            result
        })
        .collect()
}

/// Walks a session: each request's parent is the previous reply's context.
fn check_session(names: &[&str], first_commit: u64) {
    let mut parent = 0;
    for (index, name) in names.iter().enumerate() {
        let (request, body) = request(name);
        assert_eq!(request.parent, parent, "{name}: parent");
        assert_eq!(request.request, index as u32);
        let (reply, _) = harness_reply(&request, &body, first_commit + index as u64);
        if index > 0 {
            assert_eq!(request.session, first_commit, "{name}: session");
        }
        parent = reply.context;
    }
}

#[test]
fn sessions_chain_on_our_replies() {
    check_session(
        &[
            "a1-register",
            "a2-create_accounts",
            "a3-create_transfers",
            "a4-lookup_accounts",
            "a5-query_accounts",
        ],
        101,
    );
    check_session(
        &[
            "b1-register",
            "b2-create_transfers",
            "b3-create_transfers-5-batches",
        ],
        106,
    );
    let (register, register_body) = request("c1-register");
    let (reply, _) = harness_reply(&register, &register_body, 101);
    let (lookup, lookup_body) = request("c2-lookup_transfers");
    assert_eq!(lookup.parent, reply.context);
    let (reply, _) = harness_reply(&lookup, &lookup_body, 102);
    let (get, _) = request("c4-get_account_transfers");
    assert_eq!(get.parent, reply.context);
}

#[test]
fn register_is_rebuilt_byte_for_byte() {
    for name in ["a1-register", "b1-register", "c1-register"] {
        let frame = fixture(name);
        let (captured, _) = request(name);
        let mut rebuilt = RequestHeader::new(0, captured.client, Release::new(0, 17, 8), 2);
        let body = RegisterRequest::new();
        rebuilt.seal(body.as_bytes());
        assert_eq!(rebuilt.as_bytes(), &frame[..256], "{name}");
        assert_eq!(body.as_bytes(), &frame[256..]);
    }
}

#[test]
fn a_session_request_is_rebuilt_byte_for_byte() {
    let frame = fixture("a3-create_transfers");
    let (captured, body) = request("a3-create_transfers");
    let mut rebuilt = RequestHeader::new(0, captured.client, captured.frame.release, 147);
    rebuilt.request = 2;
    rebuilt.session = 101;
    rebuilt.parent = captured.parent;
    rebuilt.previous_request_latency = captured.previous_request_latency;
    rebuilt.seal(&body);
    assert_eq!(rebuilt.as_bytes(), &frame[..256]);
    // One batch of one transfer: 128 bytes, 124 bytes of 0xFF, [1: u16][1: u16].
    assert_eq!(body.len(), 256);
    assert!(body[128..252].iter().all(|b| *b == 0xFF));
    assert_eq!(&body[252..], &[1, 0, 1, 0]);
    let transfer = Transfer::read_from_bytes(&body[..128]).unwrap();
    assert_eq!(
        (transfer.id.0, transfer.amount, transfer.ledger),
        (10, 5, 1)
    );
}

#[test]
fn merged_calls_arrive_as_one_multi_batch_request() {
    let (_, body) = request("b3-create_transfers-5-batches");
    let batches = MultiBatch::decode(&body, 128, 8189).unwrap();
    let counts: Vec<usize> = (0..batches.batch_count())
        .map(|index| batches.element_count(index).unwrap())
        .collect();
    assert_eq!(counts, [2, 3, 4, 5, 6]);
    // Call i (1..=5) sent transfers 100 + 10 i + j for j in 0..=i.
    for (index, batch) in batches.batches().enumerate() {
        let call = index as u128 + 1;
        let transfers = <[Transfer]>::ref_from_bytes(batch).unwrap();
        let ids: Vec<u128> = transfers.iter().map(|t| t.id.0).collect();
        let expected: Vec<u128> = (0..=call).map(|j| 100 + 10 * call + j).collect();
        assert_eq!(ids, expected);
    }
}

#[test]
fn the_clients_ping_is_accepted_and_our_pong_passes_its_checks() {
    let frame = fixture("c3-ping_client");
    let Ok(ClientFrame::PingClient(ping)) = validate_client_frame(&frame, &[], 0) else {
        panic!("ping refused");
    };
    // Clients from 0.17.6 send their session in the ping.
    assert_eq!(ping.session, 101);
    let (register, _) = request("c1-register");
    assert_eq!(ping.client, register.client);
    let sender = Sender {
        cluster: 0,
        replica: 0,
        view: 0,
        release: Release::new(0, 17, 8),
    };
    let pong = build_pong(sender, &ping);
    assert!(check_server_frame(pong.as_bytes(), &[], 0).is_ok());
}
