//! Frame validation and the answers built for clients: frames built by the rules of
//! TigerBeetle's client (`vsr/client.zig` `register`, `raw_request`,
//! `send_request_for_the_first_time`, `on_ping_timeout`; `tb_client/context.zig` `packet_send`)
//! are accepted; each kind of bad frame is refused with its own error and answer; replies,
//! pongs and evictions from the builders pass every check the client makes; and validation
//! never panics on random or mutated frames.

mod common;

use common::Prng;
use kassa_wire::multi_batch::encode_to_vec;
use kassa_wire::{
    build_eviction, build_pong, build_reply, check_reply_to, check_server_frame, reply_in_view,
    validate_client_frame, validate_request, Answer, BodyError, ClientFrame, Command,
    EvictionReason, FrameError, HeaderField, HeaderLayout, Operation, OperationError,
    PingClientHeader, RegisterRequest, RegisterResult, Release, ReplyFields, ReplyHeader,
    ReplyMismatch, RequestBody, RequestError, RequestHeader, Sender, ServerFrame,
    MESSAGE_BODY_SIZE_MAX,
};
use zerocopy::{FromZeros, IntoBytes};

const CLUSTER: u128 = 0;
const CLIENT: u128 = 0x1234_5678_9abc_def0_0fed_cba9_8765_4321;
const RELEASE: Release = Release::new(0, 17, 8);

/// The register request exactly as `Client.register` and `send_request_for_the_first_time`
/// build it: parent 0, session 0, view 0, request 0, a zeroed `RegisterRequest` body.
fn register_request() -> (RequestHeader, Vec<u8>) {
    let body = RegisterRequest::new().as_bytes().to_vec();
    let mut header = RequestHeader::new(CLUSTER, CLIENT, RELEASE, Operation::Register.as_u8());
    header.seal(&body);
    (header, body)
}

/// Request number `request` of `operation` in the session a register `reply` opened.
fn session_request(reply: &ReplyHeader, request: u32, op: Operation, body: &[u8]) -> RequestHeader {
    let mut header = RequestHeader::new(CLUSTER, CLIENT, RELEASE, op.as_u8());
    header.request = request;
    header.parent = reply.context;
    header.session = reply.commit;
    header.frame.view = reply.frame.view;
    header.previous_request_latency = 1234;
    header.seal(body);
    header
}

fn register_reply(request: &RequestHeader) -> (ReplyHeader, Vec<u8>) {
    let body = RegisterResult::new(MESSAGE_BODY_SIZE_MAX as u32)
        .as_bytes()
        .to_vec();
    let fields = ReplyFields {
        view: 2,
        replica: 1,
        commit: 17,
        timestamp: 1_700_000_000,
    };
    (build_reply(request, fields, &body), body)
}

fn transfers_body(counts: &[usize]) -> Vec<u8> {
    let batches: Vec<Vec<u8>> = counts.iter().map(|n| vec![0x5A; n * 128]).collect();
    let refs: Vec<&[u8]> = batches.iter().map(Vec::as_slice).collect();
    encode_to_vec(128, &refs).unwrap()
}

fn ping() -> PingClientHeader {
    let mut ping = PingClientHeader::new_zeroed();
    ping.frame = kassa_wire::Frame::new(Command::PingClient, CLUSTER);
    ping.frame.release = RELEASE;
    ping.client = CLIENT;
    ping.ping_timestamp_monotonic = 987_654_321;
    ping.seal(&[]);
    ping
}

fn validate<H: HeaderLayout>(header: &H, body: &[u8]) -> Result<ClientFrame, FrameError> {
    validate_client_frame(header.as_bytes(), body, CLUSTER)
}

#[test]
fn a_session_built_like_tigerbeetles_client_is_accepted_and_answered() {
    let (register, register_body) = register_request();
    let frame = validate(&register, &register_body).unwrap();
    assert_eq!(frame, ClientFrame::Request(register));
    let (operation, body) =
        validate_request(&register, &register_body, MESSAGE_BODY_SIZE_MAX).unwrap();
    assert_eq!(operation, Operation::Register);
    assert_eq!(body, RequestBody::Register);

    let (reply, reply_body) = register_reply(&register);
    assert_eq!(
        check_server_frame(reply.as_bytes(), &reply_body, CLUSTER),
        Ok(ServerFrame::Reply(reply))
    );
    assert_eq!(
        check_reply_to(&register, &register_body, &reply, &reply_body),
        Ok(())
    );

    // Request 1: two merged create_transfers batches of 3 and 2 events.
    let body = transfers_body(&[3, 2]);
    let request = session_request(&reply, 1, Operation::CreateTransfers, &body);
    assert!(matches!(
        validate(&request, &body),
        Ok(ClientFrame::Request(_))
    ));
    let (_, RequestBody::Batches(batches)) =
        validate_request(&request, &body, MESSAGE_BODY_SIZE_MAX).unwrap()
    else {
        panic!("expected batches");
    };
    assert_eq!(batches.batch_count(), 2);

    // One 16-byte result per event, in the request's batches.
    let results = encode_to_vec(16, &[&[0u8; 48], &[0u8; 32]]).unwrap();
    let fields = ReplyFields {
        view: 2,
        replica: 1,
        commit: 18,
        timestamp: 1_700_000_001,
    };
    let answer = build_reply(&request, fields, &results);
    assert!(check_server_frame(answer.as_bytes(), &results, CLUSTER).is_ok());
    assert_eq!(check_reply_to(&request, &body, &answer, &results), Ok(()));
    assert_eq!(answer.request_checksum, request.frame.checksum);
    assert_eq!(answer.op, answer.commit);
}

#[test]
fn a_resent_reply_keeps_its_context_in_a_newer_view() {
    let (register, register_body) = register_request();
    let (reply, body) = register_reply(&register);
    let resent = reply_in_view(&reply, 9);
    assert_eq!(resent.context, reply.context);
    assert_eq!(resent.frame.view, 9);
    assert_ne!(resent.frame.checksum, reply.frame.checksum);
    assert!(check_server_frame(resent.as_bytes(), &body, CLUSTER).is_ok());
    assert_eq!(
        check_reply_to(&register, &register_body, &resent, &body),
        Ok(())
    );
    // The context is the checksum of the header as it was with `context` zero.
    let mut zero_context = reply;
    zero_context.context = 0;
    assert_eq!(reply.context, zero_context.calculate_checksum());
}

#[test]
fn pings_pongs_and_evictions() {
    let ping = ping();
    assert_eq!(validate(&ping, &[]), Ok(ClientFrame::PingClient(ping)));
    let sender = Sender {
        cluster: CLUSTER,
        replica: 5,
        view: 3,
        release: RELEASE,
    };
    let pong = build_pong(sender, &ping);
    assert_eq!(pong.ping_timestamp_monotonic, ping.ping_timestamp_monotonic);
    assert_eq!(
        check_server_frame(pong.as_bytes(), &[], CLUSTER),
        Ok(ServerFrame::PongClient(pong))
    );
    for reason in EvictionReason::ALL {
        let eviction = build_eviction(sender, CLIENT, reason);
        assert_eq!(eviction.as_bytes()[255], reason as u8);
        assert!(check_server_frame(eviction.as_bytes(), &[], CLUSTER).is_ok());
    }
}

#[test]
fn framing_errors_close_the_connection() {
    let (request, body) = register_request();
    let bytes = request.as_bytes();
    let error = validate_client_frame(&bytes[..255], &body, CLUSTER).unwrap_err();
    assert_eq!(error, FrameError::HeaderSize { size: 255 });
    assert_eq!(error.answer(), Answer::CloseConnection);

    let mut flipped = bytes.to_vec();
    flipped[200] ^= 1;
    let error = validate_client_frame(&flipped, &body, CLUSTER).unwrap_err();
    assert!(matches!(error, FrameError::HeaderChecksum { .. }));

    let resealed = |change: &dyn Fn(&mut RequestHeader)| {
        let mut header = request;
        change(&mut header);
        header.reseal();
        validate(&header, &body).unwrap_err()
    };
    assert_eq!(
        resealed(&|h| h.frame.command = 25),
        FrameError::UnknownCommand { command: 25 }
    );
    assert_eq!(
        resealed(&|h| h.frame.size = 255),
        FrameError::SizeOutOfRange { size: 255 }
    );
    let too_big = 1024 * 1024 + 1;
    assert_eq!(
        resealed(&|h| h.frame.size = too_big),
        FrameError::SizeOutOfRange { size: too_big }
    );
    assert_eq!(
        resealed(&|h| h.frame.size = 256),
        FrameError::SizeMismatch {
            size: 256,
            body_size: 256
        }
    );
    assert!(matches!(
        resealed(&|h| h.frame.checksum_body ^= 1),
        FrameError::BodyChecksum { .. }
    ));
    assert_eq!(
        resealed(&|h| h.frame.cluster = 7),
        FrameError::WrongCluster {
            carried: 7,
            expected: CLUSTER
        }
    );
    for error in [
        resealed(&|h| h.frame.command = 25),
        resealed(&|h| h.frame.cluster = 7),
    ] {
        assert_eq!(error.answer(), Answer::CloseConnection);
    }
}

/// A request field changed (then resealed) and the error it must give.
type FieldCase = (fn(&mut RequestHeader), FrameError);

/// Applies each change to `base`, reseals with `body`, and expects its error and `Ignore`.
fn check_field_cases(base: &RequestHeader, body: &[u8], cases: &[FieldCase]) {
    for (index, (change, expected)) in cases.iter().enumerate() {
        let mut header = *base;
        change(&mut header);
        header.seal(body);
        let error = validate(&header, body).unwrap_err();
        assert_eq!(&error, expected, "case {index}");
        assert_eq!(error.answer(), Answer::Ignore, "{error}");
    }
}

#[test]
fn field_errors_drop_the_message() {
    use FrameError::{NotZero, Zero};
    use HeaderField as F;
    let (register, register_body) = register_request();
    let (reply, _) = register_reply(&register);
    let body = transfers_body(&[1]);
    let request = session_request(&reply, 1, Operation::CreateTransfers, &body);
    let cases: [FieldCase; 17] = [
        (
            |h| h.frame.checksum_padding = 1,
            NotZero {
                field: F::ChecksumPadding,
            },
        ),
        (
            |h| h.frame.checksum_body_padding = 1,
            NotZero {
                field: F::ChecksumBodyPadding,
            },
        ),
        (
            |h| h.frame.nonce_reserved = 1,
            NotZero {
                field: F::NonceReserved,
            },
        ),
        (|h| h.frame.epoch = 1, NotZero { field: F::Epoch }),
        (
            |h| h.frame.reserved_frame[11] = 1,
            NotZero {
                field: F::ReservedFrame,
            },
        ),
        (
            |h| h.frame.protocol = 1,
            FrameError::Protocol { protocol: 1 },
        ),
        (|h| h.frame.release = Release(0), Zero { field: F::Release }),
        (
            |h| h.parent_padding = 1,
            NotZero {
                field: F::ParentPadding,
            },
        ),
        (|h| h.frame.replica = 1, NotZero { field: F::Replica }),
        (|h| h.client = 0, Zero { field: F::Client }),
        (|h| h.session = 0, Zero { field: F::Session }),
        (|h| h.request = 0, Zero { field: F::Request }),
        (
            |h| h.timestamp = 1,
            NotZero {
                field: F::Timestamp,
            },
        ),
        (
            |h| h.previous_request_latency_padding[2] = 1,
            NotZero {
                field: F::PreviousRequestLatencyPadding,
            },
        ),
        (|h| h.reserved[51] = 1, NotZero { field: F::Reserved }),
        (
            |h| h.operation = 6,
            FrameError::ReplicaOperation { operation: 6 },
        ),
        (
            |h| h.frame.command = 8,
            FrameError::Misdirected {
                command: Command::Reply,
            },
        ),
    ];
    check_field_cases(&request, &body, &cases);

    let register_cases: [FieldCase; 3] = [
        (|h| h.parent = 1, NotZero { field: F::Parent }),
        (|h| h.session = 1, NotZero { field: F::Session }),
        (|h| h.request = 1, NotZero { field: F::Request }),
    ];
    check_field_cases(&register, &register_body, &register_cases);
    check_field_cases(
        &register,
        &[0; 300],
        &[(|_| {}, FrameError::RegisterSize { size: 556 })],
    );
}

#[test]
fn bad_pings_are_dropped() {
    let check = |change: &dyn Fn(&mut PingClientHeader), body: &[u8]| {
        let mut header = ping();
        change(&mut header);
        header.seal(body);
        validate(&header, body).unwrap_err()
    };
    assert_eq!(
        check(&|_| {}, &[1]),
        FrameError::BodyNotEmpty {
            command: Command::PingClient,
            size: 257
        }
    );
    assert_eq!(
        check(&|h| h.frame.view = 1, &[]),
        FrameError::NotZero {
            field: HeaderField::View
        }
    );
    assert_eq!(
        check(&|h| h.client = 0, &[]),
        FrameError::Zero {
            field: HeaderField::Client
        }
    );
    assert_eq!(
        check(&|h| h.reserved[0] = 1, &[]),
        FrameError::NotZero {
            field: HeaderField::Reserved
        }
    );
}

#[test]
fn operations_and_bodies_are_answered_with_evictions() {
    let (register, _) = register_request();
    let (reply, _) = register_reply(&register);
    let body = transfers_body(&[1]);
    for (code, expected) in [
        (
            137,
            OperationError::Unsupported {
                code: 137,
                name: "get_change_events",
            },
        ),
        (
            130,
            OperationError::Unsupported {
                code: 130,
                name: "deprecated_create_transfers_unbatched",
            },
        ),
        (200, OperationError::Unknown { code: 200 }),
    ] {
        let mut request = session_request(&reply, 1, Operation::CreateTransfers, &body);
        request.operation = code;
        request.seal(&body);
        assert!(
            validate(&request, &body).is_ok(),
            "operation {code} passes the frame checks"
        );
        let error = validate_request(&request, &body, MESSAGE_BODY_SIZE_MAX).unwrap_err();
        assert_eq!(error, RequestError::Operation(expected));
        assert_eq!(
            error.eviction_reason(),
            EvictionReason::InvalidRequestOperation
        );
    }
    // A body that is not a multi-batch body of transfers.
    let bad = vec![0u8; 256];
    let request = session_request(&reply, 1, Operation::CreateTransfers, &bad);
    let error = validate_request(&request, &bad, MESSAGE_BODY_SIZE_MAX).unwrap_err();
    assert!(matches!(
        error,
        RequestError::Body(BodyError::MultiBatch { .. })
    ));
    assert_eq!(error.eviction_reason(), EvictionReason::InvalidRequestBody);
    // Over the announced limit: checked before the operation, as TigerBeetle does.
    let mut request = session_request(&reply, 1, Operation::CreateTransfers, &body);
    request.operation = 200;
    request.seal(&body);
    let error = validate_request(&request, &body, 128).unwrap_err();
    assert_eq!(
        error.eviction_reason(),
        EvictionReason::InvalidRequestBodySize
    );
    // A body-less register (clients up to 0.15.3) passes the frame, then is evicted.
    let mut bodiless = RequestHeader::new(CLUSTER, CLIENT, RELEASE, 2);
    bodiless.seal(&[]);
    assert!(validate(&bodiless, &[]).is_ok());
    let error = validate_request(&bodiless, &[], MESSAGE_BODY_SIZE_MAX).unwrap_err();
    assert_eq!(
        error.eviction_reason(),
        EvictionReason::InvalidRequestBodySize
    );
}

#[test]
fn the_client_checks_refuse_replies_that_do_not_match() {
    let (register, register_body) = register_request();
    let (reply, reply_body) = register_reply(&register);
    let body = transfers_body(&[2]);
    let request = session_request(&reply, 1, Operation::CreateTransfers, &body);
    let results = encode_to_vec(16, &[&[0u8; 32]]).unwrap();
    let fields = ReplyFields {
        view: 2,
        replica: 1,
        commit: 18,
        timestamp: 5,
    };
    let answer = build_reply(&request, fields, &results);

    let mut other = answer;
    other.frame.release = Release::new(0, 17, 7);
    assert!(matches!(
        check_reply_to(&request, &body, &other, &results),
        Err(ReplyMismatch::Release { .. })
    ));
    let mut other = answer;
    other.request_checksum ^= 1;
    assert!(matches!(
        check_reply_to(&request, &body, &other, &results),
        Err(ReplyMismatch::RequestChecksum { .. })
    ));
    let two_batches = encode_to_vec(16, &[&[0u8; 16], &[]]).unwrap();
    assert_eq!(
        check_reply_to(&request, &body, &answer, &two_batches),
        Err(ReplyMismatch::BatchCount {
            request: 1,
            reply: 2
        })
    );
    let too_many = encode_to_vec(16, &[&[0u8; 48]]).unwrap();
    assert!(matches!(
        check_reply_to(&request, &body, &answer, &too_many),
        Err(ReplyMismatch::TooManyResults { .. })
    ));
    // Header-level: op must equal commit, the timestamp must be set.
    let mut broken = answer;
    broken.op += 1;
    broken.reseal();
    assert!(matches!(
        check_server_frame(broken.as_bytes(), &results, CLUSTER),
        Err(FrameError::OpNotCommit { .. })
    ));
    let mut pong_from_far = build_pong(
        Sender {
            cluster: CLUSTER,
            replica: 0,
            view: 0,
            release: RELEASE,
        },
        &ping(),
    );
    pong_from_far.frame.replica = 6;
    pong_from_far.reseal();
    assert_eq!(
        check_server_frame(pong_from_far.as_bytes(), &[], CLUSTER),
        Err(FrameError::ReplicaOutOfRange { replica: 6 })
    );
    assert_eq!(
        check_reply_to(&register, &register_body, &reply, &reply_body),
        Ok(())
    );
}

#[test]
fn fuzz_validation_never_panics() {
    let mut prng = Prng::from_seed(0x7769_7265);
    let (register, register_body) = register_request();
    let (reply, _) = register_reply(&register);
    let body = transfers_body(&[2, 1]);
    let request = session_request(&reply, 1, Operation::CreateTransfers, &body);
    let mut accepted = 0;
    for round in 0..4_000 {
        let (mut header, mut body) = match round % 3 {
            0 => (register.as_bytes().to_vec(), register_body.clone()),
            1 => (request.as_bytes().to_vec(), body.clone()),
            _ => {
                let mut header = vec![0u8; 256];
                prng.fill(&mut header);
                (header, vec![0u8; prng.below(300)])
            }
        };
        let target = if prng.chance(1, 2) {
            &mut header
        } else {
            &mut body
        };
        if !target.is_empty() {
            let index = prng.below(target.len());
            target[index] = prng.next_u64() as u8;
        }
        if prng.chance(1, 10) {
            body.truncate(prng.below(body.len() + 1));
        }
        // Half the time, make the checksums right so the field checks run too.
        if prng.chance(1, 2) && header.len() == 256 {
            let mut sealed = kassa_wire::Header::read(&header).unwrap();
            sealed.seal(&body);
            header = sealed.as_bytes().to_vec();
        }
        if let Ok(ClientFrame::Request(valid)) = validate_client_frame(&header, &body, CLUSTER) {
            accepted += 1;
            let _ = validate_request(&valid, &body, MESSAGE_BODY_SIZE_MAX);
        }
        let _ = check_server_frame(&header, &body, CLUSTER);
    }
    assert!(accepted > 100, "accepted {accepted}");
}
