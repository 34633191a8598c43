//! The memory bound and `/metrics`: `--memory`, `--cache-bytes` and `--pages-bytes` are
//! checked at start; past the memtable limit a partition checkpoints though neither its entry
//! count nor its log size asks for one; past the page budget, runs keep no more index and
//! filter pages and every id stays known; `/metrics` is well-formed Prometheus text that
//! counts what was written, the checkpoints, the runs and the cold reads; a restart keeps
//! everything.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::wire::RawClient;
use common::{
    account_json, assert_balanced, request_raw, results, transfer_json, wait_until, Node, TempDir,
};
use kassa_wire::multi_batch::MultiBatch;
use kassa_wire::{AccountFilter, AccountFilterFlags, AccountId, Operation};
use zerocopy::{FromZeros, IntoBytes};

/// Transfers written: at about 300 bytes each in memory, more than twice the memtable limit
/// of a 64 MiB node (14 MiB).
const TRANSFERS: u128 = 12 * 8189;
const ACCOUNTS: u128 = 64;

/// A scrape: each sample's value by its name and labels (`name{labels}`).
fn scrape(node: &Node) -> BTreeMap<String, u64> {
    let (status, text) = request_raw(node.http, "GET", "/metrics", None).expect("GET /metrics");
    assert_eq!(status, 200, "{text}");
    parse(&text)
}

/// Parses Prometheus' text format strictly: every sample's family has a HELP and a TYPE
/// before it, every value is an integer.
fn parse(text: &str) -> BTreeMap<String, u64> {
    let mut samples = BTreeMap::new();
    let mut described: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("a HELP has a text");
            assert!(!help.is_empty(), "{line}");
            described.push(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a TYPE has a kind");
            assert_eq!(described.last().map(String::as_str), Some(name), "{line}");
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{line}");
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let name = series.split('{').next().expect("a name");
        assert!(
            name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{line}"
        );
        assert_eq!(described.last().map(String::as_str), Some(name), "{line}");
        let value: u64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{line}"
        );
    }
    samples
}

/// The sum of a family's samples over its labels.
fn total(samples: &BTreeMap<String, u64>, name: &str) -> u64 {
    let prefix = format!("{name}{{");
    samples
        .iter()
        .filter(|(series, _)| series.starts_with(&prefix) || *series == name)
        .map(|(_, value)| value)
        .sum()
}

/// Records stored over all partitions: each once when placed by ledger; placed by id, a
/// transfer is also stored in its accounts' partitions (some after its batch was answered),
/// and an account in its transfers'.
fn assert_stored(stored: u64, written: u64) {
    match common::test_placement().as_deref() {
        None | Some("ledger") => assert_eq!(stored, written),
        Some(_) => assert!(stored >= written, "{stored} stored of {written}"),
    }
}

/// Creates `ACCOUNTS` accounts in ledger 1 and `TRANSFERS` transfers between them, in full
/// batches over HTTP.
fn write_load(node: &Node) {
    let accounts: Vec<String> = (1..=ACCOUNTS).map(|id| account_json(id, 1, &[])).collect();
    let (status, reply) = node.post("/v1/accounts", &format!("[{}]", accounts.join(",")));
    assert_eq!(status, 200, "{reply}");
    write_transfers(node, |n| n, "created");
}

/// Posts `TRANSFERS` transfers in full batches over HTTP, the `n`th with id `id(1_000 + n)`,
/// and checks that each result is `result`.
fn write_transfers(node: &Node, id: impl Fn(u128) -> u128, result: &str) {
    let mut n = 1_000u128;
    while n < 1_000 + TRANSFERS {
        let end = (n + 8189).min(1_000 + TRANSFERS);
        let batch: Vec<String> = (n..end)
            .map(|n| transfer_json(id(n), n % ACCOUNTS + 1, (n + 1) % ACCOUNTS + 1, 1, &[]))
            .collect();
        let (status, reply) = node.post("/v1/transfers", &format!("[{}]", batch.join(",")));
        assert_eq!(status, 200, "{reply}");
        assert!(results(&reply).iter().all(|r| r == result), "{reply}");
        n = end;
    }
}

/// A core whose in-flight slots are all taken (its requests all waiting, as for memory past
/// twice the memtable limit) still answers `/metrics` and `/ready`: operators' requests have
/// a queue of their own, answered ahead. A client's write queued meanwhile waits for a slot,
/// and is written once the slots are free. `KASSA_FAULT=fill-in-flight` takes every core's
/// slots from when the file `fill-in-flight` appears until `release-in-flight` does.
#[test]
fn a_core_whose_requests_all_wait_still_answers_metrics_and_ready() {
    let dir = TempDir::new("in-flight-full");
    let env = [("KASSA_FAULT", "fill-in-flight")];
    let node = Node::try_start_with_env(&dir.0, &[], &env).expect("start");
    std::fs::write(dir.0.join("fill-in-flight"), b"").expect("fill");
    let filled = wait_until(Duration::from_secs(30), || {
        (0..2).all(|core| dir.0.join(format!("in-flight-filled-{core}")).exists())
    });
    assert!(filled, "both cores' slots taken");
    let http = node.http;
    let accounts: Vec<String> = (1..=ACCOUNTS).map(|id| account_json(id, 1, &[])).collect();
    let body = format!("[{}]", accounts.join(","));
    let write = std::thread::spawn(move || {
        request_raw(http, "POST", "/v1/accounts", Some(body.as_bytes()))
    });
    // Without their own queue these wait behind the write (the HTTP client's 30 s timeout).
    let samples = scrape(&node);
    assert!(samples.contains_key("kassa_memtable_bytes"), "{samples:?}");
    let (status, ready) = node.get("/ready");
    assert_eq!(status, 200, "{ready}");
    assert!(
        !write.is_finished(),
        "the write waits for a slot while every slot is taken"
    );
    std::fs::write(dir.0.join("release-in-flight"), b"").expect("release");
    let (status, reply) = write
        .join()
        .expect("the writer")
        .expect("POST /v1/accounts");
    assert_eq!(status, 200, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).expect("JSON");
    assert!(results(&reply).iter().all(|r| r == "created"), "{reply}");
    assert!(scrape(&node)["kassa_memtable_bytes"] > 0);
    assert_balanced(&node);
}

/// The same load on the default bound (4 GiB) asks for no checkpoint: the bound is what made
/// the 64 MiB node checkpoint.
#[test]
fn under_the_limit_nothing_checkpoints_for_memory() {
    let dir = TempDir::new("memory-quiet");
    let node = Node::try_start(&dir.0, &[]).expect("start");
    write_load(&node);
    let after = scrape(&node);
    assert_eq!(after["kassa_memory_limit_bytes"], 4 << 30);
    assert!(after["kassa_memtable_bytes"] > 0);
    assert!(after["kassa_memtable_bytes"] < after["kassa_memtable_limit_bytes"]);
    assert_eq!(after["kassa_checkpoints_writing"], 0, "none was asked for");
    assert_eq!(
        total(&after, "kassa_partition_memory_checkpoint_asks_total"),
        0
    );
    assert_eq!(total(&after, "kassa_partition_checkpoint_number"), 0);
    assert_balanced(&node);
}

/// A node past its limit through a partition holding less than an even share checkpoints
/// the one that holds more, with no client write to it: ledger 1's partition fills to just
/// under the limit, then a smaller batch in another partition (less than an even share, so
/// it asks for nothing, of ids whose directory home is elsewhere) passes it. What asks for
/// ledger 1's partition is the cores' pulse, or the id directory's own entries there,
/// whichever comes first (raft `t04_memory` checks the idle partition's check alone).
#[test]
fn past_the_limit_through_a_small_partition_the_large_one_checkpoints() {
    let dir = TempDir::new("memory-pulse");
    let flags = ["--memory", "96MiB", "--placement", "ledger"];
    let node = Node::try_start(&dir.0, &flags).expect("start");
    let partitions = 16;
    let filled = kassa_shard::ledger_partition(1, partitions);
    let other = (2..100)
        .find(|ledger| kassa_shard::ledger_partition(*ledger, partitions) != filled)
        .expect("a ledger of another partition");
    let mut accounts: Vec<String> = (1..=ACCOUNTS).map(|id| account_json(id, 1, &[])).collect();
    accounts.push(account_json(ACCOUNTS + 1, other, &[]));
    accounts.push(account_json(ACCOUNTS + 2, other, &[]));
    let (status, reply) = node.post("/v1/accounts", &format!("[{}]", accounts.join(",")));
    assert_eq!(status, 200, "{reply}");
    let transfers = |ids: &[u128], ledger: u32| -> String {
        let events: Vec<String> = ids
            .iter()
            .map(|&id| {
                let (debit, credit) = match ledger {
                    1 => (id % ACCOUNTS + 1, (id + 1) % ACCOUNTS + 1),
                    _ => (ACCOUNTS + 1, ACCOUNTS + 2),
                };
                transfer_json(id, debit, credit, 1, &[])
                    .replace("\"ledger\":1", &format!("\"ledger\":{ledger}"))
            })
            .collect();
        format!("[{}]", events.join(","))
    };
    let of = |samples: &BTreeMap<String, u64>, name: &str, partition: u32| -> u64 {
        samples[&format!("{name}{{partition=\"{partition}\"}}")]
    };
    let limit = scrape(&node)["kassa_memtable_limit_bytes"];
    let (mut id, mut used, mut step) = (1_000u128, 0u64, 0u64);
    // Until one more batch of ledger 1 would pass the limit (the last batch's growth is the
    // next one's: no id table of the partition doubles near this size).
    while used + step < limit {
        let ids: Vec<u128> = (id..id + 500).collect();
        let (status, reply) = node.post("/v1/transfers", &transfers(&ids, 1));
        assert_eq!(status, 200, "{reply}");
        id += 500;
        let now = scrape(&node)["kassa_memtable_bytes"];
        step = now - used;
        used = now;
    }
    let before = scrape(&node);
    assert_eq!(
        total(&before, "kassa_partition_memory_checkpoint_asks_total"),
        0,
        "filled to just under the limit ({used} of {limit})"
    );
    // Ids whose id-directory home is not ledger 1's partition, so that claiming them writes
    // nothing there.
    let mut ids = (id..).filter(|id| kassa_shard::partition_of(*id, partitions) != filled);
    let others: Vec<u128> = ids.by_ref().take(2_500).collect();
    let (status, reply) = node.post("/v1/transfers", &transfers(&others, other));
    assert_eq!(status, 200, "{reply}");
    assert!(results(&reply).iter().all(|r| r == "created"), "{reply}");
    let other_partition = kassa_shard::ledger_partition(other, partitions);
    let past = scrape(&node);
    let share = past["kassa_memtable_bytes"] / u64::from(partitions);
    assert!(
        past["kassa_memtable_bytes"] > limit,
        "the last batch passes the limit"
    );
    assert!(of(&past, "kassa_partition_memtable_bytes", other_partition) < share);
    let checkpointed = || {
        let now = scrape(&node);
        of(&now, "kassa_partition_memory_checkpoint_asks_total", filled) == 1
            && of(&now, "kassa_partition_checkpoint_number", filled) >= 1
            && now["kassa_memtable_bytes"] <= limit
    };
    assert!(
        wait_until(Duration::from_secs(30), checkpointed),
        "the pulse did not checkpoint partition {filled}: {:?}",
        scrape(&node)
    );
    let after = scrape(&node);
    assert_eq!(
        of(
            &after,
            "kassa_partition_memory_checkpoint_asks_total",
            other_partition
        ),
        0,
        "the partition under an even share asked nothing"
    );
    assert_balanced(&node);
}

#[test]
fn bad_memory_settings_are_refused_at_start() {
    let dir = TempDir::new("memory-refused");
    let refused = Node::try_start(&dir.0, &["--memory", "1MiB"]).err();
    let refused = refused.expect("1 MiB is refused");
    assert!(
        refused.contains("memory = 1MiB: must be 64MiB to 16TiB"),
        "{refused}"
    );
    let refused = Node::try_start(&dir.0, &["--memory", "64MiB", "--cache-bytes", "40MiB"]);
    let refused = refused
        .err()
        .expect("a cache over half the memory is refused");
    assert!(
        refused.contains("cache_bytes = 40MiB: must be at most half of memory (64MiB)"),
        "{refused}"
    );
    let refused = Node::try_start(&dir.0, &["--memory", "64MiB", "--pages-bytes", "33MiB"]);
    let refused = refused
        .err()
        .expect("pages over half the memory are refused");
    assert!(
        refused.contains("pages_bytes = 33MiB: must be at most half of memory (64MiB)"),
        "{refused}"
    );
    let refused = Node::try_start(&dir.0, &["--memory", "4GB"]).err();
    let refused = refused.expect("a size without a binary unit is refused");
    assert!(
        refused.contains("\"4GB\" is not a size: a whole number of bytes, with B, KiB"),
        "{refused}"
    );
}

#[test]
fn past_the_memtable_limit_partitions_checkpoint_and_metrics_show_it() {
    let dir = TempDir::new("memory-bound");
    let node = Node::try_start(&dir.0, &["--memory", "64MiB"]).expect("start");
    let before = scrape(&node);
    assert_eq!(before["kassa_memory_limit_bytes"], 64 << 20);
    assert_eq!(before["kassa_memtable_limit_bytes"], (56 << 20) / 4);
    assert_eq!(before["kassa_cache_limit_bytes"], 8 << 20);
    assert_eq!(before["kassa_run_pages_limit_bytes"], 8 << 20);
    assert_eq!(before["kassa_run_pages_bytes"], 0);
    assert_eq!(
        total(&before, "kassa_partition_leader"),
        16,
        "every partition leads"
    );
    assert_eq!(total(&before, "kassa_partition_failed"), 0);
    assert_eq!(total(&before, "kassa_partition_transfers"), 0);
    assert_eq!(total(&before, "kassa_cache_capacity_blocks"), 2048);
    assert!(before["kassa_resident_bytes"] > 0);

    write_load(&node);

    // The default snapshot_entries (100,000 entries) and the 512 MiB of log that also ask
    // for a checkpoint are far off: only the memory bound can have asked.
    let after = scrape(&node);
    let stored = total(&after, "kassa_partition_transfers");
    assert_stored(stored, TRANSFERS as u64);
    assert_stored(total(&after, "kassa_partition_accounts"), ACCOUNTS as u64);
    assert!(
        total(&after, "kassa_partition_memory_checkpoint_asks_total") >= 1,
        "no checkpoint for memory"
    );
    let durable = || {
        let now = scrape(&node);
        total(&now, "kassa_partition_checkpoint_number") >= 1
            && now["kassa_memtable_bytes"] <= now["kassa_memtable_limit_bytes"]
    };
    assert!(
        wait_until(Duration::from_secs(30), durable),
        "the memtables never fell under their limit: {:?}",
        scrape(&node)
    );
    let checkpointed = scrape(&node);
    assert!(
        total(&checkpointed, "kassa_partition_transfers_in_memory") < TRANSFERS as u64,
        "a durable checkpoint took transfers out of memory"
    );
    for keyspace in ["transfers", "transfer-ids", "account-transfers"] {
        let runs = format!("keyspace=\"{keyspace}\"");
        let of = |name: &str| -> u64 {
            let series = checkpointed.iter();
            let ours = series.filter(|(s, _)| s.starts_with(name) && s.contains(&runs));
            ours.map(|(_, value)| value).sum()
        };
        assert!(of("kassa_store_runs{") >= 1, "no {keyspace} run");
        assert!(of("kassa_store_keys{") >= 1, "no {keyspace} key");
        assert!(of("kassa_store_bytes{") >= 4096, "no {keyspace} bytes");
        assert!(of("kassa_store_memory_bytes{") > 0, "no {keyspace} index");
    }
    assert!(total(&checkpointed, "kassa_partition_disk_bytes") > 0);

    // The first transfers are cold now: reading them goes through the cache of cold blocks.
    let reads = |samples: &BTreeMap<String, u64>| {
        total(samples, "kassa_cache_hits_total") + total(samples, "kassa_cache_misses_total")
    };
    for id in 1_000..1_010u128 {
        let (status, transfer) = node.get(&format!("/v1/transfers/{id}"));
        assert_eq!(status, 200, "{transfer}");
        assert_eq!(transfer["amount"], "1");
    }
    let read = scrape(&node);
    assert!(
        reads(&read) > reads(&checkpointed),
        "no cold read was counted"
    );
    assert_balanced(&node);

    let status = node.stop();
    assert!(status.success(), "kassa exited with {status}");
    let node = Node::try_start(&dir.0, &["--memory", "64MiB"]).expect("restart");
    let restarted = scrape(&node);
    let kept = total(&restarted, "kassa_partition_transfers");
    assert_stored(kept, stored);
    let (_, reply) = node.post(
        "/v1/transfers",
        &format!(
            "[{}]",
            transfer_json(1_000, 1_000 % ACCOUNTS + 1, 1_001 % ACCOUNTS + 1, 1, &[])
        ),
    );
    assert_eq!(results(&reply), ["exists"], "a cold id is still known");

    // An account's transfers over the wire, almost all of them cold: what the request reads
    // (the account's cold list, then the transfers it names) is read ahead of the apply
    // through io_uring, so the apply reads no block blocking the partition's core.
    let before = scrape(&node);
    let mut client = RawClient::connect(node.wire, 0, 4242);
    client.register();
    let mut filter = AccountFilter::new_zeroed();
    filter.account_id = AccountId(1);
    filter.limit = 8189;
    filter.flags = AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS;
    let (_, body) = client.call(Operation::GetAccountTransfers, &[filter.as_bytes()]);
    let batches = MultiBatch::decode(&body, 128, 8189).expect("a multi-batch reply");
    let listed: usize = batches.batches().map(|batch| batch.len() / 128).sum();
    let expected = 2 * TRANSFERS / ACCOUNTS;
    assert!(
        listed as u128 >= expected - 2,
        "{listed} of account 1's transfers"
    );
    let after = scrape(&node);
    // A read of the cache that finds nothing is a blocking read: there is none.
    let misses = "kassa_cache_misses_total";
    assert_eq!(
        total(&after, misses),
        total(&before, misses),
        "reads blocked the core"
    );
    let prefetched = "kassa_cold_prefetched_blocks_total";
    assert!(
        total(&after, prefetched) > total(&before, prefetched) + listed as u64 / 64,
        "the account's transfers were read ahead"
    );
    // So are lookups of cold transfers by id.
    let before = after;
    for id in 2_000..2_010u128 {
        let (status, transfer) = node.get(&format!("/v1/transfers/{id}"));
        assert_eq!(status, 200, "{transfer}");
        assert_eq!(transfer["amount"], "1");
    }
    let after = scrape(&node);
    assert_eq!(
        total(&after, misses),
        total(&before, misses),
        "lookups blocked the core"
    );
    assert!(total(&after, prefetched) > total(&before, prefetched));
    assert_balanced(&node);
}

/// Ids scattered over the id space make id runs whose filters span many pages, all of which
/// a load of such ids probes. With `--pages-bytes 16KiB` the node's runs keep 4 pages: the
/// rest are read ahead of each apply and held in the block cache. After a restart every id
/// is still known (a retry is `exists`), no apply blocks on a read, and the runs keep no
/// more than the bound.
#[test]
fn past_the_page_budget_every_id_stays_known_and_applies_do_not_block() {
    let dir = TempDir::new("memory-pages");
    let flags = ["--memory", "64MiB", "--pages-bytes", "16KiB"];
    let scattered =
        |n: u128| (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) & u128::from(u64::MAX)) << 32 | n;
    let node = Node::try_start(&dir.0, &flags).expect("start");
    let accounts: Vec<String> = (1..=ACCOUNTS).map(|id| account_json(id, 1, &[])).collect();
    let (status, reply) = node.post("/v1/accounts", &format!("[{}]", accounts.join(",")));
    assert_eq!(status, 200, "{reply}");
    write_transfers(&node, scattered, "created");
    let durable = || total(&scrape(&node), "kassa_partition_checkpoint_number") >= 1;
    assert!(
        wait_until(Duration::from_secs(30), durable),
        "no checkpoint: {:?}",
        scrape(&node)
    );
    let status = node.stop();
    assert!(status.success(), "kassa exited with {status}");

    let node = Node::try_start(&dir.0, &flags).expect("restart");
    let before = scrape(&node);
    write_transfers(&node, scattered, "exists");
    let after = scrape(&node);
    assert_eq!(before["kassa_run_pages_limit_bytes"], 16 << 10);
    let pages = after["kassa_run_pages_bytes"];
    assert_eq!(
        pages,
        16 << 10,
        "the runs keep what the bound allows, no more"
    );
    // The batches' checks of their ids before they are written here (placed by ledger) or
    // their transactions' reads (placed by id), and their applies, read every cold page and
    // block ahead: a blocking read would be a cache miss.
    let misses = "kassa_cache_misses_total";
    assert_eq!(
        total(&after, misses),
        total(&before, misses),
        "a check, a transaction's read or an apply blocked on a read"
    );
    let prefetched = "kassa_cold_prefetched_blocks_total";
    assert!(total(&after, prefetched) > total(&before, prefetched));
    // Retries followed by an event naming an account the partition does not hold: the
    // batch cannot run in one partition alone, and finding that out reads none of its cold
    // ids blocking either.
    let mut batch: Vec<String> = (1_000..3_000u128)
        .map(|n| {
            transfer_json(
                scattered(n),
                n % ACCOUNTS + 1,
                (n + 1) % ACCOUNTS + 1,
                1,
                &[],
            )
        })
        .collect();
    batch.push(transfer_json(scattered(1) + 1, 1, ACCOUNTS + 100, 1, &[]));
    let (status, reply) = node.post("/v1/transfers", &format!("[{}]", batch.join(",")));
    assert_eq!(status, 200, "{reply}");
    let answers = results(&reply);
    assert!(answers[..2_000].iter().all(|r| r == "exists"), "{reply}");
    assert_ne!(answers[2_000], "created", "{reply}");
    assert_eq!(
        total(&scrape(&node), misses),
        total(&after, misses),
        "a batch sent to the transactions' path blocked on a read"
    );
    // New ids among the old ones are created: their filter probes, most of them of pages
    // not kept, pass or fail right. (They make the memtable checkpoint, which may make ids
    // cold between a batch's read-ahead and its apply: no count of blocking reads here.)
    write_transfers(&node, |n| scattered(n) + 1, "created");
    assert!(scrape(&node)["kassa_run_pages_bytes"] <= 16 << 10);
    assert_balanced(&node);
}
