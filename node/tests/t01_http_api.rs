//! The HTTP API end to end against the real `kassa` binary: accounts, transfers (single-phase,
//! linked chains, two-phase), lookups, an account's transfers and balances, queries, and per
//! ledger debits = credits after every write.

mod common;

use common::{account_json, assert_balanced, results, transfer_json, Node, TempDir};

fn accounts(node: &Node, ids: &[u128], flags: &[&str]) {
    let body: Vec<String> = ids.iter().map(|id| account_json(*id, 1, flags)).collect();
    let (status, reply) = node.post("/v1/accounts", &format!("[{}]", body.join(",")));
    assert_eq!(status, 200, "{reply}");
    assert!(results(&reply).iter().all(|r| r == "created"), "{reply}");
}

#[test]
fn accounts_and_transfers_round_trip() {
    let dir = TempDir::new("http-api");
    let node = Node::start(&dir.0);
    assert_eq!(node.get("/health").0, 200);
    assert_eq!(node.get("/ready").0, 200);
    accounts(&node, &[1, 2], &[]);
    accounts(&node, &[3], &["debits_must_not_exceed_credits", "history"]);

    let batch = format!(
        "[{},{}]",
        transfer_json(10, 1, 2, 100, &[]),
        transfer_json(11, 3, 1, 5, &[])
    );
    let (status, reply) = node.post("/v1/transfers", &batch);
    assert_eq!(status, 200);
    assert_eq!(results(&reply), ["created", "exceeds_credits"]);
    assert_eq!(reply[0]["index"], 0);
    assert!(
        reply[0]["timestamp"]
            .as_str()
            .expect("timestamp")
            .parse::<u64>()
            .expect("u64")
            > 0
    );
    assert_balanced(&node);

    let (status, account) = node.get("/v1/accounts/1");
    assert_eq!(status, 200);
    assert_eq!(account["debits_posted"], "100");
    assert_eq!(account["flags"], serde_json::json!([]));
    let (status, transfer) = node.get("/v1/transfers/10");
    assert_eq!(status, 200);
    assert_eq!(
        (
            transfer["amount"].as_str(),
            transfer["debit_account_id"].as_str()
        ),
        (Some("100"), Some("1"))
    );
    assert_eq!(
        node.get("/v1/transfers/11").0,
        404,
        "a failed transfer is not stored"
    );
    assert_eq!(node.get("/v1/accounts/99").0, 404);

    // Retrying the same request is idempotent.
    let (_, reply) = node.post(
        "/v1/transfers",
        &format!("[{}]", transfer_json(10, 1, 2, 100, &[])),
    );
    assert_eq!(results(&reply), ["exists"]);
    let (_, reply) = node.post(
        "/v1/transfers",
        &format!("[{}]", transfer_json(10, 1, 2, 101, &[])),
    );
    assert_eq!(results(&reply), ["exists_with_different_amount"]);
    assert_balanced(&node);
}

#[test]
fn linked_chains_and_two_phase_transfers() {
    let dir = TempDir::new("http-two-phase");
    let node = Node::start(&dir.0);
    accounts(&node, &[1, 2, 3], &["history"]);

    // A chain whose second event fails leaves nothing behind.
    let chain = format!(
        "[{},{}]",
        transfer_json(20, 1, 2, 7, &["linked"]),
        transfer_json(21, 2, 2, 7, &[])
    );
    let (_, reply) = node.post("/v1/transfers", &chain);
    assert_eq!(
        results(&reply),
        ["linked_event_failed", "accounts_must_be_different"]
    );
    assert_eq!(node.get("/v1/transfers/20").0, 404);

    let pending = r#"[{"id":"30","debit_account_id":"1","credit_account_id":"3","amount":"50","ledger":1,"code":1,"flags":["pending"],"timeout":3600}]"#;
    assert_eq!(results(&node.post("/v1/transfers", pending).1), ["created"]);
    let (_, account) = node.get("/v1/accounts/1");
    assert_eq!(account["debits_pending"], "50");
    assert_balanced(&node);

    let post = r#"[{"id":"31","pending_id":"30","amount":"20","flags":["post_pending_transfer"]}]"#;
    assert_eq!(results(&node.post("/v1/transfers", post).1), ["created"]);
    let (_, account) = node.get("/v1/accounts/1");
    assert_eq!(
        (
            account["debits_pending"].as_str(),
            account["debits_posted"].as_str()
        ),
        (Some("0"), Some("20"))
    );
    let void = r#"[{"id":"32","pending_id":"30","flags":["void_pending_transfer"]}]"#;
    assert_eq!(
        results(&node.post("/v1/transfers", void).1),
        ["pending_transfer_already_posted"]
    );
    assert_balanced(&node);

    let (status, transfers) = node.get("/v1/accounts/1/transfers?reversed=true&limit=1");
    assert_eq!(status, 200);
    assert_eq!(transfers[0]["id"], "31");
    let (_, transfers) = node.get("/v1/accounts/1/transfers?credits=false");
    assert_eq!(transfers.as_array().map(Vec::len), Some(2));
    let (status, balances) = node.get("/v1/accounts/1/balances");
    assert_eq!(status, 200);
    let pending: Vec<&str> = balances
        .as_array()
        .expect("balances")
        .iter()
        .map(|b| b["debits_pending"].as_str().expect("debits_pending"))
        .collect();
    assert_eq!(pending, ["50", "0"]);

    let (status, found) = node.post(
        "/v1/transfers/query",
        r#"{"ledger":1,"reversed":true,"limit":2}"#,
    );
    assert_eq!(status, 200);
    let ids: Vec<&str> = found
        .as_array()
        .expect("transfers")
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["31", "30"]);
    let (_, found) = node.post("/v1/accounts/query", r#"{"ledger":2}"#);
    assert_eq!(found.as_array().map(Vec::len), Some(0));
}

#[test]
fn openapi_document_is_served_and_describes_every_route() {
    let dir = TempDir::new("http-openapi");
    let node = Node::start(&dir.0);
    let (status, document) = node.get("/openapi.json");
    assert_eq!(status, 200);
    let paths = document["paths"].as_object().expect("paths");
    for path in [
        "/health",
        "/ready",
        "/v1/accounts",
        "/v1/transfers",
        "/v1/accounts/query",
        "/v1/transfers/query",
        "/v1/accounts/{id}",
        "/v1/transfers/{id}",
        "/v1/accounts/{id}/transfers",
        "/v1/accounts/{id}/balances",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
}
