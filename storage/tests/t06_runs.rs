//! Runs: what is written is read back exactly, absent keys are mostly answered by the filter,
//! the same input gives the same bytes, and damage anywhere is an error naming the file and
//! offset, never a wrong answer.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use kassa_storage::run::{
    BlockCache, BlockingRun, CacheStats, Holds, Located, Page, PageBudget, Run, RunOptions,
    RunWriter, MERGE_READ_BLOCKS,
};
use kassa_storage::StorageError;

/// `count` distinct pseudo-random keys (sorted) with values of `value_size` bytes.
fn data(seed: u64, count: usize, value_size: usize) -> BTreeMap<u128, Vec<u8>> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = state;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    };
    let mut map = BTreeMap::new();
    while map.len() < count {
        let key = (u128::from(next()) << 64) | u128::from(next());
        let value = (0..value_size)
            .map(|at| (key as usize + at) as u8)
            .collect();
        map.insert(key, value);
    }
    map
}

fn options(keys: usize, value_size: usize) -> RunOptions {
    RunOptions {
        value_size,
        keys_expected: keys as u64,
        filter_bits_per_key: 10,
        filter_seed: 17,
    }
}

async fn write(dir: &Path, name: &str, data: &BTreeMap<u128, Vec<u8>>, value_size: usize) {
    let mut writer = RunWriter::create(dir, name, options(data.len(), value_size))
        .await
        .expect("create");
    for (key, value) in data {
        writer.push(*key, value).await.expect("push");
    }
    let footer = writer.finish().await.expect("finish");
    assert_eq!(footer.keys, data.len() as u64);
}

fn new_dir(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    std::fs::create_dir_all(dir.path()).unwrap();
    dir
}

#[test]
fn every_key_reads_back_and_absent_keys_rarely_cost_a_read() {
    let dir = new_dir("t06-round-trip");
    run(async {
        for value_size in [4, 0, 64] {
            let name = format!("ids-{value_size}");
            let data = data(value_size as u64, 50_000, value_size);
            write(dir.path(), &name, &data, value_size).await;
            let run = Run::open(&dir.path().join(&name)).await.expect("open");
            assert_eq!(run.keys(), 50_000);
            assert_eq!(run.value_size(), value_size);
            for (key, value) in data.iter().step_by(7) {
                assert_eq!(run.get(*key).await.expect("get").as_ref(), Some(value));
            }
            let absent = self::data(1_000 + value_size as u64, 20_000, 0);
            let mut passed = 0;
            for key in absent.keys().filter(|key| !data.contains_key(key)) {
                passed += usize::from(run.may_contain(*key));
                assert_eq!(run.get(*key).await.expect("get absent"), None);
            }
            // The same run read with blocking reads finds the same, its filter (and, with 64-
            // byte values, its index: 981 blocks) read a page at a time.
            let blocking = BlockingRun::open(&dir.path().join(&name), &PageBudget::unbounded())
                .await
                .expect("open blocking");
            let opened = blocking.memory_size();
            assert!(opened < run.memory_size() / 4, "{opened} bytes at open");
            let mut found = vec![0; value_size];
            let cache = BlockCache::new(16);
            for (key, value) in data.iter().step_by(7) {
                assert!(blocking
                    .get(*key, &mut found, &cache)
                    .expect("blocking get"));
                assert_eq!(&found, value);
            }
            for key in absent.keys().filter(|key| !data.contains_key(key)) {
                let found = blocking.get(*key, &mut found, &cache);
                assert!(!found.expect("blocking absent"));
            }
            assert!(cache.stats().blocks <= 16);
            assert!(blocking.memory_size() > opened);
            // At most all of both, each padded to whole pages.
            assert!(blocking.memory_size() <= run.memory_size() + opened + 2 * 4096);
            assert!(
                passed < 400,
                "{passed} of 20,000 absent keys passed the filter"
            );
        }
    });
}

#[test]
fn a_run_without_a_filter_finds_every_key_and_push_all_writes_what_push_does() {
    let dir = new_dir("t06-no-filter");
    run(async {
        let data = data(21, 9_000, 128);
        let no_filter = RunOptions {
            filter_bits_per_key: 0,
            ..options(data.len(), 128)
        };
        let mut writer = RunWriter::create(dir.path(), "one-by-one", no_filter)
            .await
            .expect("create");
        for (key, value) in &data {
            writer.push(*key, value).await.expect("push");
        }
        writer.finish().await.expect("finish");
        let keys: Vec<u128> = data.keys().copied().collect();
        let values: Vec<u8> = data.values().flatten().copied().collect();
        let mut writer = RunWriter::create(dir.path(), "all", no_filter)
            .await
            .expect("create");
        writer
            .push_all(&keys[..5_000], &values[..5_000 * 128])
            .await
            .expect("push_all");
        writer
            .push_all(&keys[5_000..], &values[5_000 * 128..])
            .await
            .expect("push_all");
        writer.finish().await.expect("finish");
        let run = Run::open(&dir.path().join("all")).await.expect("open");
        for (key, value) in data.iter().step_by(3) {
            assert_eq!(run.get(*key).await.expect("get").as_ref(), Some(value));
        }
        assert_eq!(run.get(keys[10] + 1).await.expect("get"), None);
    });
    let one = std::fs::read(dir.path().join("one-by-one")).unwrap();
    let all = std::fs::read(dir.path().join("all")).unwrap();
    assert_eq!(one, all);
}

#[test]
fn scans_match_the_sorted_map() {
    let dir = new_dir("t06-scan");
    run(async {
        // 148 blocks: scans read 64 at a time, so ranges cross those reads.
        let data = data(5, 30_000, 4);
        write(dir.path(), "scan", &data, 4).await;
        let run = Run::open(&dir.path().join("scan")).await.expect("open");
        let keys: Vec<u128> = data.keys().copied().collect();
        let bounds = [
            (0, u128::MAX),
            (keys[100], keys[2_000]),
            (keys[100] + 1, keys[2_000] - 1),
            (keys[29_999], u128::MAX),
            (keys[12_900], keys[13_200]),
            (0, keys[0]),
            (keys[500], keys[500]),
            (keys[500] + 1, keys[501] - 1),
        ];
        for (from, to) in bounds {
            let mut seen = Vec::new();
            run.scan(from, to, |key, value| {
                seen.push((key, value.to_vec()));
                true
            })
            .await
            .expect("scan");
            let expected: Vec<(u128, Vec<u8>)> = data
                .range(from..=to)
                .map(|(key, value)| (*key, value.clone()))
                .collect();
            assert_eq!(seen, expected, "{from}..={to}");
        }
        let mut first_three = 0;
        run.scan(0, u128::MAX, |_, _| {
            first_three += 1;
            first_three < 3
        })
        .await
        .expect("scan");
        assert_eq!(first_three, 3, "a scan stops when told");

        // A merge's reads: every entry in key order, 512 blocks at a time, then nothing.
        let (mut keys_read, mut values_read) = (Vec::new(), Vec::new());
        let mut next = 0;
        loop {
            let read = run.read_entries(next, &mut keys_read, &mut values_read);
            let read = read.await.expect("read entries");
            if read == 0 {
                break;
            }
            assert!(read <= MERGE_READ_BLOCKS, "{read} blocks at once");
            next += read;
        }
        assert_eq!(next, run.footer().data_blocks);
        assert_eq!(keys_read, keys);
        let values: Vec<u8> = data.values().flatten().copied().collect();
        assert_eq!(values_read, values);

        // The blocking scan of a key range (end excluded), both ways, through a small cache.
        let blocking = run.into_blocking().expect("blocking");
        let cache = BlockCache::new(4);
        for (from, to) in bounds {
            let to = to.saturating_add(1);
            for reversed in [false, true] {
                let mut seen = Vec::new();
                let stopped = blocking.scan_range(from..to, reversed, &cache, &mut |key, value| {
                    seen.push((key, value.to_vec()));
                    true
                });
                assert!(!stopped.expect("scan"));
                let mut expected: Vec<(u128, Vec<u8>)> = data
                    .range(from..to)
                    .map(|(key, value)| (*key, value.clone()))
                    .collect();
                if reversed {
                    expected.reverse();
                }
                assert_eq!(seen, expected, "{from}..{to}, reversed {reversed}");
            }
        }
        let mut last_three = Vec::new();
        let stopped = blocking.scan_range(0..u128::MAX, true, &cache, &mut |key, _| {
            last_three.push(key);
            last_three.len() < 3
        });
        assert!(stopped.expect("scan"), "a scan stops when told");
        assert_eq!(
            last_three,
            keys[keys.len() - 3..]
                .iter()
                .rev()
                .copied()
                .collect::<Vec<_>>()
        );
    });
}

#[test]
fn an_empty_run_holds_nothing_and_the_same_input_gives_the_same_bytes() {
    let dir = new_dir("t06-empty");
    run(async {
        write(dir.path(), "empty", &BTreeMap::new(), 4).await;
        let run = Run::open(&dir.path().join("empty")).await.expect("open");
        assert_eq!(run.keys(), 0);
        assert_eq!(run.get(0).await.expect("get"), None);
        run.scan(0, u128::MAX, |_, _| panic!("an entry in an empty run"))
            .await
            .expect("scan");
        let data = data(9, 3_000, 4);
        write(dir.path(), "one", &data, 4).await;
        write(dir.path(), "two", &data, 4).await;
    });
    let one = std::fs::read(dir.path().join("one")).unwrap();
    let two = std::fs::read(dir.path().join("two")).unwrap();
    assert_eq!(one, two, "runs are deterministic");
}

#[test]
fn a_run_not_finished_is_not_there_and_its_leftover_is_replaced() {
    let dir = new_dir("t06-unfinished");
    run(async {
        let data = data(3, 1_000, 4);
        let mut writer = RunWriter::create(dir.path(), "ids", options(1_000, 4))
            .await
            .expect("create");
        for (key, value) in data.iter().take(600) {
            writer.push(*key, value).await.expect("push");
        }
        drop(writer);
        assert!(!dir.path().join("ids").exists(), "no run under its name");
        assert!(dir.path().join("ids.tmp").exists());
        write(dir.path(), "ids", &data, 4).await;
        assert!(!dir.path().join("ids.tmp").exists());
        let run = Run::open(&dir.path().join("ids")).await.expect("open");
        assert_eq!(run.keys(), 1_000);
    });
}

/// Opens `name` after `damage` changed its bytes, and looks up every key.
fn after_damage(dir: &Path, name: &str, damage: impl FnOnce(&mut Vec<u8>)) -> StorageError {
    let path = dir.join(name);
    let mut bytes = std::fs::read(&path).unwrap();
    damage(&mut bytes);
    let damaged = dir.join(format!("{name}-damaged"));
    std::fs::write(&damaged, &bytes).unwrap();
    let data = data(11, 2_000, 4);
    let found: Result<(), StorageError> = run(async {
        let run = Run::open(&damaged).await?;
        for key in data.keys() {
            run.get(*key).await?;
        }
        Ok(())
    });
    let error = found.expect_err("damage went unnoticed");
    // A merge's reads of the data blocks check them as `get` does.
    let merged: Result<(), StorageError> = run(async {
        let run = Run::open(&damaged).await?;
        let (mut keys, mut values, mut next) = (Vec::new(), Vec::new(), 0);
        while next < run.footer().data_blocks {
            next += run.read_entries(next, &mut keys, &mut values).await?;
        }
        Ok(())
    });
    let merged = merged.expect_err("damage went unnoticed by a merge's reads");
    assert_eq!(merged.to_string(), error.to_string());
    // A blocking read checks every block as `get` does: the same error.
    let blocking: Result<(), StorageError> = run(async {
        let run = BlockingRun::open(&damaged, &PageBudget::unbounded()).await?;
        let mut value = [0; 4];
        let cache = BlockCache::new(4);
        for key in data.keys() {
            run.get(*key, &mut value, &cache)?;
        }
        Ok(())
    });
    let blocking = blocking.expect_err("damage went unnoticed by a blocking read");
    assert_eq!(blocking.to_string(), error.to_string());
    error
}

fn offset_of(error: &StorageError) -> u64 {
    match error {
        StorageError::Corrupt { offset, .. } => *offset,
        other => panic!("expected corruption, got {other}"),
    }
}

#[test]
fn damage_anywhere_is_corruption_at_its_place() {
    let dir = new_dir("t06-damage");
    run(async { write(dir.path(), "ids", &data(11, 2_000, 4), 4).await });
    let size = std::fs::metadata(dir.path().join("ids")).unwrap().len() as usize;
    // 2,000 keys at 204 a block: 10 data blocks, then the index, the filter, the page table
    // and the footer.
    assert_eq!(size, (10 + 1 + 1 + 1 + 1) * 4096);
    let in_block = after_damage(dir.path(), "ids", |bytes| bytes[3 * 4096 + 100] ^= 1);
    assert_eq!(offset_of(&in_block), 3 * 4096);
    let moved = after_damage(dir.path(), "ids", |bytes| {
        let first = bytes[..4096].to_vec();
        bytes[4096..8192].copy_from_slice(&first);
    });
    assert_eq!(offset_of(&moved), 4096);
    assert!(moved.to_string().contains("wrong place"), "{moved}");
    let index = after_damage(dir.path(), "ids", |bytes| bytes[10 * 4096 + 5] ^= 1);
    assert_eq!(offset_of(&index), 10 * 4096);
    let filter = after_damage(dir.path(), "ids", |bytes| bytes[11 * 4096 + 5] ^= 1);
    assert_eq!(offset_of(&filter), 11 * 4096);
    let table = after_damage(dir.path(), "ids", |bytes| bytes[12 * 4096 + 5] ^= 1);
    assert_eq!(offset_of(&table), 12 * 4096);
    let footer = after_damage(dir.path(), "ids", |bytes| bytes[13 * 4096 + 20] ^= 1);
    assert_eq!(offset_of(&footer), 13 * 4096);
    let cut = after_damage(dir.path(), "ids", |bytes| bytes.truncate(size - 4096));
    assert!(matches!(cut, StorageError::Corrupt { .. }), "{cut}");
    let torn = after_damage(dir.path(), "ids", |bytes| bytes.truncate(size - 100));
    assert!(matches!(torn, StorageError::Corrupt { .. }), "{torn}");
    let empty = after_damage(dir.path(), "ids", Vec::clear);
    assert!(matches!(empty, StorageError::Corrupt { .. }), "{empty}");
}

#[test]
#[should_panic(expected = "run keys must ascend")]
fn keys_out_of_order_are_a_bug() {
    let dir = new_dir("t06-order");
    run(async {
        let mut writer = RunWriter::create(dir.path(), "ids", options(2, 4))
            .await
            .expect("create");
        writer.push(5, &[0; 4]).await.expect("push");
        writer.push(5, &[0; 4]).await.expect("push");
    });
}

/// Blocking reads through a block cache: keys read in order cost one disk read per block, the
/// cache never holds more than its capacity, a block read again after eviction is read again,
/// and a cache of capacity 0 reads every time. Answers never depend on the cache.
#[test]
fn a_block_cache_reads_each_block_once_for_keys_in_order_and_stays_bounded() {
    let dir = new_dir("t06-cache");
    let data = data(21, 20_000, 16);
    let blocking = run(async {
        write(dir.path(), "cached", &data, 16).await;
        let run = Run::open(&dir.path().join("cached")).await.expect("open");
        run.into_blocking().expect("blocking")
    });
    let blocks = blocking.footer().data_blocks;
    assert!(blocks > 100, "{blocks} blocks");
    let mut value = [0; 16];
    let cache = BlockCache::new(8);
    for (key, expected) in &data {
        assert!(blocking.get(*key, &mut value, &cache).expect("get"));
        assert_eq!(&value[..], &expected[..]);
    }
    let stats = cache.stats();
    assert_eq!(stats.misses, blocks, "one read per block");
    assert_eq!(stats.hits, data.len() as u64 - blocks);
    assert_eq!(stats.blocks, 8);
    // Again in order: a scan longer than the cache reads (nearly) every block again.
    for key in data.keys() {
        assert!(blocking.get(*key, &mut value, &cache).expect("get"));
    }
    let again = cache.stats().misses - blocks;
    assert!(
        again >= blocks - 8 && again <= blocks,
        "{again} of {blocks}"
    );
    assert_eq!(cache.stats().blocks, 8);
    let uncached = BlockCache::new(0);
    for key in data.keys().take(100) {
        assert!(blocking.get(*key, &mut value, &uncached).expect("get"));
    }
    assert_eq!(
        uncached.stats(),
        CacheStats {
            hits: 0,
            misses: 100,
            blocks: 0,
            capacity: 0,
        }
    );
}

/// Prefetch: blocks read ahead through io_uring are held in the cache outside its CLOCK, so
/// blocking reads of their keys read no disk however many other blocks pass through the
/// cache meanwhile; a block already cached is held without a read; released, they are gone.
/// A damaged block is refused by the prefetch as by a read. Reads go 64 at a time.
#[test]
fn prefetched_blocks_are_held_until_released_and_checked() {
    let dir = new_dir("t06-prefetch");
    let data = data(22, 20_000, 16);
    let keys: Vec<u128> = data.keys().copied().collect();
    let wanted: Vec<u128> = keys.iter().step_by(173).copied().collect();
    let cache = BlockCache::new(4);
    let blocking = run(async {
        write(dir.path(), "prefetched", &data, 16).await;
        let run = Run::open(&dir.path().join("prefetched"))
            .await
            .expect("open");
        run.into_blocking().expect("blocking")
    });
    let blocks: std::collections::BTreeSet<u64> = wanted
        .iter()
        .map(|key| {
            blocking
                .block_for(*key, &cache)
                .expect("read")
                .expect("in the run")
        })
        .collect();
    assert!(blocks.len() > 64, "{} blocks", blocks.len());
    let blocks: Vec<u64> = blocks.into_iter().collect();
    let mut holds = Holds::new();
    run(async {
        // More than one round of reads in flight (64 at once).
        let prefetched = blocking.prefetch(&blocks, &cache, &mut holds);
        prefetched.await.expect("prefetch");
    });
    assert_eq!(cache.held(), blocks.len());
    assert_eq!(holds.len(), blocks.len());
    // Other reads churn the small cache; the held blocks stay.
    let mut value = [0; 16];
    for key in keys.iter().rev().take(2_000) {
        assert!(blocking.get(*key, &mut value, &cache).expect("get"));
    }
    let misses = cache.stats().misses;
    for key in &wanted {
        assert!(blocking.get(*key, &mut value, &cache).expect("get"));
        assert_eq!(&value[..], &data[key][..]);
    }
    assert_eq!(cache.stats().misses, misses, "held blocks read no disk");
    // A key no run holds has no block to prefetch (the filter rules most out).
    let absent = (0..1_000u128).filter(|k| !data.contains_key(k));
    let passed = absent
        .filter(|k| blocking.block_for(*k, &cache).expect("read").is_some())
        .count();
    assert!(
        passed < 100,
        "{passed} of 1000 absent keys passed the filter"
    );
    // A second reader holding some of the same blocks keeps them past the first's release.
    let mut overlapping = Holds::new();
    run(async {
        let prefetched = blocking.prefetch(&blocks[..10], &cache, &mut overlapping);
        prefetched.await.expect("prefetch");
    });
    assert_eq!(
        cache.stats().misses,
        misses,
        "blocks held are not read again"
    );
    cache.release(holds);
    assert_eq!(cache.held(), 10, "the second reader's blocks stay");
    for key in wanted
        .iter()
        .filter(|key| blocks[..10].contains(&blocking.block_for(**key, &cache).unwrap().unwrap()))
    {
        assert!(blocking.get(*key, &mut value, &cache).expect("get"));
    }
    assert_eq!(cache.stats().misses, misses, "and read no disk");
    cache.release(overlapping);
    assert_eq!(cache.held(), 0);
    // A block the cache has is held without reading it again.
    let last = *keys.last().expect("keys");
    assert!(blocking.get(last, &mut value, &cache).expect("get"));
    let misses = cache.stats().misses;
    let mut holds = Holds::new();
    run(async {
        let block = blocking
            .block_for(last, &cache)
            .expect("read")
            .expect("in the run");
        let blocks = [block];
        let prefetched = blocking.prefetch(&blocks, &cache, &mut holds);
        prefetched.await.expect("prefetch");
    });
    assert_eq!((cache.held(), cache.stats().misses), (1, misses));
    cache.release(holds);
    // A damaged block fails its prefetch as it fails a read.
    let path = dir.path().join("prefetched");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[4096 * 3 + 100] ^= 0x40;
    std::fs::write(&path, &bytes).expect("damage");
    let mut holds = Holds::new();
    let damaged = run(async {
        let run = Run::open(&path).await.expect("open");
        let damaged = run.into_blocking().expect("blocking");
        let error = damaged
            .prefetch(&[1, 3], &cache, &mut holds)
            .await
            .expect_err("damaged");
        format!("{error}")
    });
    assert!(damaged.contains("checksum"), "{damaged}");
    // The sound block read with it is held, the damaged one never, until the release.
    assert_eq!(cache.held(), 1);
    cache.release(holds);
    assert_eq!(cache.held(), 0);
}

/// Blocks read ahead unheld (a reader past its bound on held blocks) go into the CLOCK
/// marked referenced: up to the cache's capacity of them at once, the CLOCK evicts the
/// blocks before them first, so the reader's lookups then read no disk. One another reader
/// holds is copied into the CLOCK. A damaged block is refused as by a read, and nothing is
/// held.
#[test]
fn blocks_read_ahead_unheld_stay_in_the_clock_ahead_of_others() {
    let dir = new_dir("t06-unheld");
    let data = data(23, 20_000, 16);
    let keys: Vec<u128> = data.keys().copied().collect();
    let cache = BlockCache::new(32);
    let blocking = run(async {
        write(dir.path(), "unheld", &data, 16).await;
        let run = Run::open(&dir.path().join("unheld")).await.expect("open");
        run.into_blocking().expect("blocking")
    });
    let block_of = |key: &u128| {
        blocking
            .block_for(*key, &cache)
            .expect("read")
            .expect("in the run")
    };
    // The CLOCK full of other blocks, every other one referenced (read again): a CLOCK
    // hand that clears them on its first lap comes back to what it inserted first.
    let mut value = [0; 16];
    let others: Vec<u128> = keys.iter().rev().step_by(200).take(32).copied().collect();
    for key in others.iter().chain(others.iter().step_by(2)) {
        assert!(blocking.get(*key, &mut value, &cache).expect("get"));
    }
    assert_eq!(cache.stats().blocks, 32);
    // 32 blocks from the front of the run, read ahead unheld.
    let wanted: Vec<u128> = keys.iter().step_by(200).take(32).copied().collect();
    let blocks: std::collections::BTreeSet<u64> = wanted.iter().map(block_of).collect();
    assert_eq!(blocks.len(), 32, "one key per block");
    let blocks: Vec<u64> = blocks.into_iter().collect();
    let mut holds = Holds::new();
    run(async {
        let unheld = blocking.prefetch_unheld(&blocks, &cache, &mut holds);
        unheld.await.expect("prefetch unheld");
    });
    assert_eq!(cache.held(), 0, "nothing is held");
    assert_eq!(
        (holds.len(), holds.unheld()),
        (0, 32),
        "32 counted for the reader"
    );
    let misses = cache.stats().misses;
    for key in &wanted {
        assert!(blocking.get(*key, &mut value, &cache).expect("get"));
        assert_eq!(&value[..], &data[key][..]);
    }
    assert_eq!(
        cache.stats().misses,
        misses,
        "every block read ahead unheld is found: the CLOCK evicted the others first"
    );
    // A block another reader holds is copied into the CLOCK for this one: released by the
    // other (a held block then leaves memory), it is still found.
    let small = BlockCache::new(8);
    let (mut first, mut second) = (Holds::new(), Holds::new());
    run(async {
        let held = blocking.prefetch(&blocks[..2], &small, &mut first);
        held.await.expect("prefetch");
        let unheld = blocking.prefetch_unheld(&blocks[..2], &small, &mut second);
        unheld.await.expect("prefetch unheld");
    });
    assert_eq!((small.held(), small.stats().blocks), (2, 2));
    assert_eq!(second.unheld(), 2, "found, and counted");
    small.release(first);
    let misses = small.stats().misses;
    for key in &wanted[..2] {
        assert!(blocking.get(*key, &mut value, &small).expect("get"));
        assert_eq!(&value[..], &data[key][..]);
    }
    assert_eq!(small.stats().misses, misses, "read no disk");
    // A damaged block fails as a read does.
    let path = dir.path().join("unheld");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[4096 * 3 + 100] ^= 0x40;
    std::fs::write(&path, &bytes).expect("damage");
    let damaged = run(async {
        let run = Run::open(&path).await.expect("open");
        let damaged = run.into_blocking().expect("blocking");
        let fresh = BlockCache::new(8);
        let error = damaged
            .prefetch_unheld(&[3], &fresh, &mut Holds::new())
            .await
            .expect_err("damaged");
        assert_eq!((fresh.held(), fresh.stats().blocks), (0, 0));
        format!("{error}")
    });
    assert!(damaged.contains("checksum"), "{damaged}");
}

/// A run whose keys are every integer from its first to its last (a checkpoint's transfers by
/// position) keeps no index in memory: its blocks' places are computed. It answers exactly as
/// a run of the same keys with an index does, and a block that lost an entry (checksum still
/// right) is corruption, which the keys alone would not show.
#[test]
fn a_dense_run_keeps_no_index_and_answers_as_an_indexed_one() {
    let dir = new_dir("t06-dense");
    let value_size = 128;
    // 28 entries a block: 36 blocks, the last of them not full.
    let first = 5_000_u128;
    let dense: BTreeMap<u128, Vec<u8>> = (first..first + 1_000)
        .map(|key| (key, vec![key as u8; value_size]))
        .collect();
    // The same keys but one, moved past the end: the run keeps an index.
    let mut gapped = dense.clone();
    gapped.remove(&(first + 500));
    gapped.insert(first + 1_000, vec![7; value_size]);
    let options = |keys| RunOptions {
        value_size,
        keys_expected: keys,
        filter_bits_per_key: 0,
        filter_seed: 3,
    };
    run(async {
        for (name, data) in [("dense", &dense), ("gapped", &gapped)] {
            let mut writer = RunWriter::create(dir.path(), name, options(data.len() as u64))
                .await
                .expect("create");
            for (key, value) in data {
                writer.push(*key, value).await.expect("push");
            }
            writer.finish().await.expect("finish");
        }
        let dense_run = Run::open(&dir.path().join("dense")).await.expect("open");
        let gapped_run = Run::open(&dir.path().join("gapped")).await.expect("open");
        assert_eq!(dense_run.footer().data_blocks, 36);
        let index_bytes = 36 * 16;
        assert_eq!(
            gapped_run.memory_size(),
            dense_run.memory_size() + index_bytes
        );
        for key in first - 2..first + 1_003 {
            let found = dense_run.get(key).await.expect("get");
            assert_eq!(found.as_ref(), dense.get(&key), "key {key}");
            let found = gapped_run.get(key).await.expect("get");
            assert_eq!(found.as_ref(), gapped.get(&key), "key {key}");
        }
        for (from, to) in [
            (0, u128::MAX),
            (first + 27, first + 28),
            (first + 990, u128::MAX),
        ] {
            let mut seen = Vec::new();
            let collect = |key, value: &[u8]| {
                seen.push((key, value.to_vec()));
                true
            };
            dense_run.scan(from, to, collect).await.expect("scan");
            let expected: Vec<_> = dense
                .range(from..=to)
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            assert_eq!(seen, expected, "scan {from}..={to}");
        }
        let blocking = dense_run.into_blocking().expect("blocking");
        let cache = BlockCache::new(4);
        let mut seen = Vec::new();
        let mut visit = |key, _: &[u8]| {
            seen.push(key);
            true
        };
        let keys = first + 30..first + 100;
        blocking
            .scan_range(keys.clone(), true, &cache, &mut visit)
            .expect("scan range");
        assert_eq!(seen, keys.rev().collect::<Vec<_>>());
    });
    // One key, one full block, five full blocks, and keys that end at the top of the key
    // space: each read whole in key order as a merge reads it, and key by key.
    run(async {
        let shapes = [(1_u128, 0_u128), (28, 9), (140, u128::MAX - 139)];
        for (count, first) in shapes {
            let name = format!("dense-{count}");
            let mut writer = RunWriter::create(dir.path(), &name, options(count as u64))
                .await
                .expect("create");
            for key in first..=first + (count - 1) {
                writer.push(key, &[key as u8; 128]).await.expect("push");
            }
            writer.finish().await.expect("finish");
            let run = Run::open(&dir.path().join(&name)).await.expect("open");
            assert_eq!(run.footer().data_blocks, count.div_ceil(28) as u64);
            let (mut keys, mut values, mut next) = (Vec::new(), Vec::new(), 0);
            while next < run.footer().data_blocks {
                next += run
                    .read_entries(next, &mut keys, &mut values)
                    .await
                    .expect("read");
            }
            let expected: Vec<u128> = (first..=first + (count - 1)).collect();
            assert_eq!(keys, expected);
            for key in [first, first + count / 2, first + (count - 1)] {
                assert_eq!(run.get(key).await.expect("get"), Some(vec![key as u8; 128]));
            }
            if first > 0 {
                assert_eq!(run.get(first - 1).await.expect("get below"), None);
            }
            if let Some(above) = (first + (count - 1)).checked_add(1) {
                assert_eq!(run.get(above).await.expect("get above"), None);
            }
        }
    });
    // Block 3 loses its last entry; its checksum is made right again.
    let path = dir.path().join("dense");
    let mut bytes = std::fs::read(&path).unwrap();
    let block = &mut bytes[3 * 4096..4 * 4096];
    let entries = u16::from_le_bytes([block[4], block[5]]);
    assert_eq!(entries, 28);
    block[4..6].copy_from_slice(&(entries - 1).to_le_bytes());
    let end = 16 + 27 * (16 + value_size);
    block[end..].fill(0);
    let crc = crc32c::crc32c(&block[4..]);
    block[..4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let lost: Result<_, StorageError> = run(async {
        let run = Run::open(&path).await?;
        run.get(first + 3 * 28).await
    });
    let lost = lost.expect_err("a lost entry went unnoticed");
    assert_eq!(offset_of(&lost), 3 * 4096);
}

/// Reads ahead, as a partition's prefetch does, the pages `run`'s lookups of `keys` need:
/// `locate`, then `load_pages` of the pages missing, until none is; returns the rounds.
async fn read_pages_ahead(
    run: &BlockingRun,
    keys: &[u128],
    cache: &BlockCache,
    holds: &mut Holds,
) -> usize {
    let mut rounds = 0;
    loop {
        let mut pages: Vec<Page> = keys
            .iter()
            .filter_map(|key| match run.locate(*key, cache, holds) {
                Located::Missing(page) => Some(page),
                Located::Block(_) => None,
                Located::Absent => panic!("key {key} is in the run"),
            })
            .collect();
        if pages.is_empty() {
            return rounds;
        }
        pages.sort_unstable();
        pages.dedup();
        run.load_pages(&pages, cache, holds)
            .await
            .expect("load pages");
        rounds += 1;
    }
}

const PAGED_VALUE_SIZE: usize = 64;

/// A run of 8 index pages and 31 filter pages (as in the test of paged reads below), a page
/// budget of 10 pages, keys to read ahead (every 997th) and keys it does not hold.
struct PagedRun {
    _dir: TempDir,
    data: BTreeMap<u128, Vec<u8>>,
    path: std::path::PathBuf,
    budget: std::sync::Arc<PageBudget>,
    keys: Vec<u128>,
    absent: Vec<u128>,
}

impl PagedRun {
    fn new(name: &str) -> PagedRun {
        let dir = new_dir(&format!("t06-{name}"));
        let data = data(21, 100_000, PAGED_VALUE_SIZE);
        let path = dir.path().join(name);
        run(async { write(dir.path(), name, &data, PAGED_VALUE_SIZE).await });
        let keys: Vec<u128> = data.keys().copied().step_by(997).collect();
        let absent: Vec<u128> = (0..2_000u128).filter(|k| !data.contains_key(k)).collect();
        PagedRun {
            _dir: dir,
            data,
            path,
            budget: PageBudget::new(10 * 4096),
            keys,
            absent,
        }
    }
}

/// Index and filter pages past a page budget: runs sharing a budget of 10 pages keep 10,
/// whatever they read. A page read ahead past it is held in the reader's cache, so the
/// lookups it was read for still read no disk; a page read blocking past it is cached as a
/// block is. Every answer stays right, and a run closed gives its pages back.
#[test]
fn pages_past_the_budget_are_held_or_cached_and_the_budget_is_never_passed() {
    let PagedRun {
        _dir,
        data,
        path,
        budget,
        keys,
        absent,
    } = PagedRun::new("budget");
    let mut value = vec![0; PAGED_VALUE_SIZE];
    run(async {
        let first = BlockingRun::open(&path, &budget).await.expect("open");
        let cache = BlockCache::new(8);
        let mut holds = Holds::new();
        let rounds = read_pages_ahead(&first, &keys, &cache, &mut holds).await;
        assert_eq!(
            rounds, 2,
            "the filter's pages, then the index's, as without a bound"
        );
        assert_eq!(budget.used(), 10 * 4096, "the budget is filled, not passed");
        assert!(
            holds.len() >= 20,
            "{} pages held past the budget",
            holds.len()
        );
        // Every lookup read ahead reads no disk: its pages are kept or held.
        let misses = cache.stats().misses;
        for key in &keys {
            assert!(first.get(*key, &mut value, &cache).expect("get"));
            assert_eq!(&value, &data[key]);
        }
        assert_eq!(first.pages_read_blocking(), 0);
        assert_eq!(
            cache.stats().misses,
            misses + keys.len() as u64,
            "data blocks only"
        );
        // Released, the held pages are gone: lookups read them blocking, through the cache
        // (8 blocks), and still answer right, present or absent.
        cache.release(holds);
        assert_eq!(cache.held(), 0);
        for key in data.keys().step_by(101) {
            assert!(first.get(*key, &mut value, &cache).expect("get"));
            assert_eq!(&value, &data[key]);
        }
        for key in &absent {
            assert!(!first.get(*key, &mut value, &cache).expect("absent"));
        }
        assert!(first.pages_read_blocking() > 0);
        assert_eq!(budget.used(), 10 * 4096);
        assert_eq!(cache.held_pages(), 0);
        // A page a read-ahead finds in the CLOCK is held for it: reads churning the cache
        // meanwhile do not make its reader read the page again.
        let key = *data.keys().last().expect("keys");
        assert!(first.get(key, &mut value, &cache).expect("get"));
        let mut holds = Holds::new();
        let located = first.locate(key, &cache, &mut holds);
        assert!(matches!(located, Located::Block(_)), "{located:?}");
        assert!(cache.held_pages() >= 1, "the key's pages are held");
        assert_eq!(cache.held(), 0, "held pages are not counted as blocks");
        for key in data.keys().step_by(37) {
            assert!(first.get(*key, &mut value, &cache).expect("get"));
        }
        let read = first.pages_read_blocking();
        assert!(first.get(key, &mut value, &cache).expect("get"));
        assert_eq!(first.pages_read_blocking(), read, "no page read again");
        cache.release(holds);
        assert_eq!(cache.held_pages(), 0);
        // Released, held pages go into the CLOCK: the next reader's lookups find them there.
        let roomy = BlockCache::new(64);
        let mut holds = Holds::new();
        read_pages_ahead(&first, &keys, &roomy, &mut holds).await;
        assert!(roomy.held_pages() >= 20);
        roomy.release(holds);
        assert_eq!(roomy.held_pages(), 0);
        let mut holds = Holds::new();
        for key in &keys {
            let located = first.locate(*key, &roomy, &mut holds);
            assert!(matches!(located, Located::Block(_)), "{located:?}");
        }
        roomy.release(holds);
        // A second run on the full budget keeps no page, and answers the same.
        let second = BlockingRun::open(&path, &budget).await.expect("open");
        let table = second.memory_size();
        for key in data.keys().step_by(211) {
            assert!(second.get(*key, &mut value, &cache).expect("get"));
            assert_eq!(&value, &data[key]);
        }
        assert_eq!(second.memory_size(), table, "nothing kept past the budget");
        // Closing the first gives its pages back; the second keeps pages again.
        drop(first);
        assert_eq!(budget.used(), 0);
        for key in data.keys().step_by(211) {
            assert!(second.get(*key, &mut value, &cache).expect("get"));
        }
        assert_eq!(budget.used(), 10 * 4096);
        assert_eq!(second.memory_size(), table + 10 * 4096);
        drop(second);
        assert_eq!(budget.used(), 0);
    });
}

/// Pages held past the budget are bounded per cache: past the bound, a page read ahead goes
/// into the CLOCK, and one found there is used but not held. With a CLOCK large enough the
/// lookups still read no page; with a small one they read some again, and answer the same.
#[test]
fn held_pages_stay_under_their_bound_and_the_rest_go_to_the_clock() {
    let PagedRun {
        _dir,
        data,
        path,
        budget,
        keys,
        absent,
    } = PagedRun::new("held-pages");
    let mut value = vec![0; PAGED_VALUE_SIZE];
    run(async {
        let run = BlockingRun::open(&path, &budget).await.expect("open");
        let roomy = BlockCache::with_held_pages_max(64, 5);
        let mut holds = Holds::new();
        read_pages_ahead(&run, &keys, &roomy, &mut holds).await;
        assert_eq!(budget.used(), 10 * 4096);
        assert_eq!(roomy.held_pages(), 5, "held up to the bound");
        assert_eq!(holds.len(), 5);
        assert!(
            roomy.stats().blocks >= 15,
            "the other pages read ahead are in the CLOCK: {:?}",
            roomy.stats()
        );
        for key in &keys {
            assert!(run.get(*key, &mut value, &roomy).expect("get"));
            assert_eq!(&value, &data[key]);
        }
        assert_eq!(run.pages_read_blocking(), 0, "every page was found");
        roomy.release(holds);
        assert_eq!(roomy.held_pages(), 0);

        // A CLOCK of 4 blocks: one round of read-ahead holds 5 pages and caches 4 at most.
        let small = BlockCache::with_held_pages_max(4, 5);
        let mut holds = Holds::new();
        let mut pages: Vec<Page> = keys
            .iter()
            .filter_map(|key| match run.locate(*key, &small, &mut holds) {
                Located::Missing(page) => Some(page),
                _ => None,
            })
            .collect();
        pages.sort_unstable();
        pages.dedup();
        assert!(pages.len() > 9, "{} pages to read", pages.len());
        run.load_pages(&pages, &small, &mut holds)
            .await
            .expect("load pages");
        assert_eq!(small.held_pages(), 5);
        assert!(small.stats().blocks <= 4);
        for key in &keys {
            assert!(run.get(*key, &mut value, &small).expect("get"));
            assert_eq!(&value, &data[key]);
        }
        for key in &absent {
            assert!(!run.get(*key, &mut value, &small).expect("absent"));
        }
        assert!(
            run.pages_read_blocking() > 0,
            "evicted pages are read again"
        );
        assert!(small.held_pages() <= 5 && small.stats().blocks <= 4);
        small.release(holds);
        assert_eq!(small.held_pages(), 0);
    });
}

/// A run of more than one page of index and of filter, opened for blocking reads, reads them
/// a page at a time: pages read ahead (`locate`, `load_pages`) leave nothing for its
/// lookups to read but data blocks, and a damaged page is corruption at that page's offset,
/// found by the lookup that reads it, while lookups elsewhere still answer.
#[test]
fn index_and_filter_pages_are_read_when_needed_and_checked() {
    let dir = new_dir("t06-pages");
    let value_size = 64;
    // 51 entries a block: 1,961 blocks, so 8 index pages; 100,000 keys at 10 bits, 31 filter
    // pages.
    let data = data(21, 100_000, value_size);
    let path = dir.path().join("pages");
    run(async { write(dir.path(), "pages", &data, value_size).await });
    let footer = run(async { *Run::open(&path).await.expect("open").footer() });
    assert_eq!((footer.index_pages(), footer.filter_pages()), (8, 31));
    let keys: Vec<u128> = data.keys().copied().step_by(997).collect();
    run(async {
        let blocking = BlockingRun::open(&path, &PageBudget::unbounded())
            .await
            .expect("open");
        let cache = BlockCache::new(0);
        let mut holds = Holds::new();
        let rounds = read_pages_ahead(&blocking, &keys, &cache, &mut holds).await;
        assert_eq!(rounds, 2, "the filter's pages, then the index's");
        assert!(holds.is_empty(), "an unbounded budget keeps every page");
        let loaded = blocking.memory_size();
        let mut value = vec![0; value_size];
        for key in &keys {
            let block = blocking.block_for(*key, &cache).expect("block");
            let located = blocking.locate(*key, &cache, &mut holds);
            assert_eq!(Located::Block(block.expect("held")), located);
            assert!(blocking.get(*key, &mut value, &cache).expect("get"));
            assert_eq!(&value, &data[key]);
        }
        assert_eq!(
            blocking.memory_size(),
            loaded,
            "no page read after the read-ahead"
        );
        assert_eq!(blocking.pages_read_blocking(), 0);
        // The last block of an index page is checked against the next page's first key,
        // which the page table holds: reading it ahead reads one index page, and its lookup
        // none.
        let fresh = BlockingRun::open(&path, &PageBudget::unbounded())
            .await
            .expect("open");
        let sorted: Vec<u128> = data.keys().copied().collect();
        let key = sorted[255 * 51 + 7]; // in block 255, the last index page 0 lists
        while let Located::Missing(page) = fresh.locate(key, &cache, &mut holds) {
            let pages = [page];
            let loaded = fresh.load_pages(&pages, &cache, &mut holds);
            loaded.await.expect("load");
        }
        assert!(fresh.get(key, &mut value, &cache).expect("get"));
        assert_eq!(fresh.pages_read_blocking(), 0);
    });
    // Index page 3 and filter page 7 are damaged.
    let mut bytes = std::fs::read(&path).unwrap();
    let index_page = footer.index_offset + 3 * 4096;
    let filter_page = footer.filter_offset + 7 * 4096;
    bytes[index_page as usize + 100] ^= 1;
    bytes[filter_page as usize + 100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    run(async {
        let blocking = BlockingRun::open(&path, &PageBudget::unbounded())
            .await
            .expect("the table is intact");
        let cache = BlockCache::new(0);
        let mut value = vec![0; value_size];
        let (mut index_damage, mut filter_damage, mut answered) = (0, 0, 0);
        for key in data.keys().step_by(13) {
            match blocking.get(*key, &mut value, &cache) {
                Ok(found) => {
                    assert!(found);
                    answered += 1;
                }
                Err(error) if offset_of(&error) == index_page => index_damage += 1,
                Err(error) if offset_of(&error) == filter_page => filter_damage += 1,
                Err(error) => panic!("{error}"),
            }
        }
        assert!(index_damage > 0 && filter_damage > 0 && answered > 0);
        // Read whole, the same damage is the index's checksum.
        let whole = Run::open(&path).await.err().expect("damage found");
        assert_eq!(offset_of(&whole), footer.index_offset);
    });
}
