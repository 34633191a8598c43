//! Bad input over HTTP gets a 400 with a clear code and message, changes nothing, and the node
//! keeps serving correct requests afterwards.

mod common;

use common::wire::RawClient;
use common::{
    account_json, assert_balanced, format, request_raw, results, transfer_json, Node, TempDir,
};
use kassa_wire::multi_batch::MultiBatch;
use kassa_wire::{Account, Operation};
use zerocopy::IntoBytes;

#[test]
fn malformed_requests_are_refused_and_change_nothing() {
    let dir = TempDir::new("bad-input");
    let node = Node::start(&dir.0);
    let setup = format!("[{},{}]", account_json(1, 1, &[]), account_json(2, 1, &[]));
    assert_eq!(node.post("/v1/accounts", &setup).0, 200);

    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("POST", "/v1/transfers", "[{".into(), "invalid_json"),
        ("POST", "/v1/transfers", "not json".into(), "invalid_json"),
        (
            "POST",
            "/v1/transfers",
            "[] trailing".into(),
            "invalid_json",
        ),
        (
            "POST",
            "/v1/transfers",
            r#"{"id":"1"}"#.into(),
            "invalid_body",
        ),
        (
            "POST",
            "/v1/transfers",
            r#"[{"id":10}]"#.into(),
            "invalid_body",
        ),
        (
            "POST",
            "/v1/transfers",
            r#"[{"id":"-1"}]"#.into(),
            "invalid_body",
        ),
        (
            "POST",
            "/v1/transfers",
            r#"[{"id":"340282366920938463463374607431768211456"}]"#.into(),
            "invalid_body",
        ),
        (
            "POST",
            "/v1/transfers",
            r#"[{"id":"12abc"}]"#.into(),
            "invalid_body",
        ),
        (
            "POST",
            "/v1/transfers",
            r#"[{"id":"5","ledger":"1"}]"#.into(),
            "invalid_body",
        ),
        (
            "POST",
            "/v1/transfers",
            r#"[{"id":"5","code":70000}]"#.into(),
            "invalid_body",
        ),
        (
            "POST",
            "/v1/transfers",
            r#"[{"id":"5","amonut":"1"}]"#.into(),
            "invalid_body",
        ),
        (
            "POST",
            "/v1/transfers",
            r#"[{"id":"5","flags":["pending","instant"]}]"#.into(),
            "unknown_flag",
        ),
        (
            "POST",
            "/v1/transfers",
            r#"[{"id":"5","flags":"pending"}]"#.into(),
            "invalid_body",
        ),
        (
            "POST",
            "/v1/accounts",
            r#"[{"id":"7","ledger":1,"code":1,"flags":["closed","frozen"]}]"#.into(),
            "unknown_flag",
        ),
        (
            "POST",
            "/v1/transfers",
            format!("[{}]", vec![transfer_json(9, 1, 2, 1, &[]); 8190].join(",")),
            "too_many_records",
        ),
        (
            "POST",
            "/v1/accounts",
            format!("[{}{{}}]", "{},".repeat(1_000_000)),
            "too_many_records",
        ),
        ("GET", "/v1/accounts/abc", String::new(), "invalid_id"),
        ("GET", "/v1/accounts/-3", String::new(), "invalid_id"),
        (
            "GET",
            "/v1/transfers/340282366920938463463374607431768211456",
            String::new(),
            "invalid_id",
        ),
        (
            "GET",
            "/v1/accounts/1/transfers?limit=ten",
            String::new(),
            "invalid_query",
        ),
        (
            "GET",
            "/v1/accounts/1/transfers?colour=red",
            String::new(),
            "invalid_query",
        ),
        (
            "POST",
            "/v1/transfers/query",
            r#"{"ledger":"1"}"#.into(),
            "invalid_body",
        ),
        // A record or filter is a JSON object, never an array of its fields.
        (
            "POST",
            "/v1/accounts",
            r#"[["7","0"]]"#.into(),
            "invalid_body",
        ),
        ("POST", "/v1/transfers/query", "[]".into(), "invalid_body"),
        // A flag given twice, a limit out of bounds, an id past u128.
        (
            "POST",
            "/v1/accounts",
            r#"[{"id":"7","ledger":1,"code":1,"flags":["history","history"]}]"#.into(),
            "invalid_body",
        ),
        (
            "POST",
            "/v1/accounts/query",
            r#"{"limit":8190}"#.into(),
            "invalid_body",
        ),
        (
            "POST",
            "/v1/accounts/query",
            r#"{"limit":null}"#.into(),
            "invalid_body",
        ),
        (
            "GET",
            "/v1/accounts/1/transfers?limit=0",
            String::new(),
            "invalid_query",
        ),
    ];
    for (method, path, body, code) in &cases {
        let (status, text) =
            request_raw(node.http, method, path, Some(body.as_bytes())).expect("request");
        let reply: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
        assert_eq!(status, 400, "{method} {path} {body:.80}: {reply}");
        assert_eq!(reply["error"], *code, "{method} {path} {body:.80}: {reply}");
        assert!(
            !reply["message"].as_str().unwrap_or("").is_empty(),
            "{reply}"
        );
    }
    assert_eq!(
        node.get("/v1/transfers/9").0,
        404,
        "nothing of an oversize batch was applied"
    );
    assert_eq!(node.get("/v1/transfers/5").0, 404);
    assert_eq!(node.get("/v1/accounts/7").0, 404);
    assert_eq!(node.get("/v1/nowhere").0, 404);

    // The node still serves correct requests, with exact results.
    let (status, reply) = node.post(
        "/v1/transfers",
        &format!("[{}]", transfer_json(9, 1, 2, 3, &[])),
    );
    assert_eq!(status, 200);
    assert_eq!(results(&reply), ["created"]);
    assert_balanced(&node);
}

#[test]
fn a_message_names_the_record_and_field_at_fault() {
    let dir = TempDir::new("bad-input-path");
    let node = Node::start(&dir.0);
    let body = format!(
        "[{},{{\"id\":\"2\",\"amount\":12}}]",
        transfer_json(1, 1, 2, 1, &[])
    );
    let (status, reply) = node.post("/v1/transfers", &body);
    assert_eq!(status, 400);
    let message = reply["message"].as_str().expect("message");
    assert!(message.contains("[1].amount"), "{message}");
}

/// Batches that name no partition (empty, or every id zero) are answered as TigerBeetle answers
/// them, over HTTP and the wire, on the default 16 partitions and on one; the node stays up.
#[test]
fn empty_and_zero_id_batches_are_answered_on_any_partition_count() {
    for partitions in [16, 1] {
        let dir = TempDir::new("bad-input-empty");
        format(&dir.0, partitions);
        let mut node = Node::start(&dir.0);
        for path in ["/v1/accounts", "/v1/transfers"] {
            let (status, reply) = node.post(path, "[]");
            assert_eq!((status, &reply), (200, &serde_json::json!([])), "{path}");
        }
        let (status, reply) = node.post("/v1/accounts", r#"[{"id":"0","ledger":1,"code":1}]"#);
        assert_eq!(status, 200, "{reply}");
        assert_eq!(results(&reply), ["id_must_not_be_zero"]);
        let zero_transfer = r#"[{"id":"0","debit_account_id":"0","credit_account_id":"0",
            "amount":"1","ledger":1,"code":1}]"#;
        let (status, reply) = node.post("/v1/transfers", zero_transfer);
        assert_eq!(status, 200, "{reply}");
        assert_eq!(results(&reply), ["id_must_not_be_zero"]);

        // The same over the wire: an empty batch and an id-zero one in one request.
        let mut client = RawClient::connect(node.wire, 0, 77);
        client.register();
        let (_, body) = client.call(Operation::CreateAccounts, &[&[]]);
        let batches = MultiBatch::decode(&body, 16, 8189).expect("a multi-batch reply");
        assert_eq!(batches.batches().map(<[u8]>::len).collect::<Vec<_>>(), [0]);
        let zero = Account {
            ledger: 1,
            code: 1,
            ..Account::default()
        };
        let (_, body) = client.call(Operation::CreateAccounts, &[&[], zero.as_bytes()]);
        let batches = MultiBatch::decode(&body, 16, 8189).expect("a multi-batch reply");
        let sizes: Vec<usize> = batches.batches().map(<[u8]>::len).collect();
        assert_eq!(sizes, [0, 16], "{partitions} partition(s)");
        let (_, body) = client.call(Operation::CreateTransfers, &[&[]]);
        assert!(MultiBatch::decode(&body, 16, 8189).is_ok());
        let (_, body) = client.call(Operation::LookupAccounts, &[&[]]);
        assert!(MultiBatch::decode(&body, 128, 8189).is_ok());

        assert!(node.alive(), "{partitions} partition(s): the node stopped");
        let (status, reply) = node.post("/v1/accounts", &format!("[{}]", account_json(5, 1, &[])));
        assert_eq!(
            (status, results(&reply)),
            (200, vec!["created".to_string()])
        );
        assert_balanced(&node);
    }
}
