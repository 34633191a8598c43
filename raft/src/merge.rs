//! Merges of runs (docs/storage.md, "Merges of runs"): of id runs in tiers, and of the runs
//! read by when they were written (statuses, account lists, timestamp samples) in write
//! order ([`write_order_plan`]). Every checkpoint writes the ids
//! of its interval as a run of `Keyspace::TransferIds`; unmerged, their count grows with
//! history, and a new id that falls inside the cold ids' key range (random ids do) is checked
//! against one filter per run, each letting about 1% of absent ids through to a block read.
//!
//! Runs are merged in tiers, by their count of keys: a run of `k` keys is of tier
//! `log4(k / 65,536)` (rounded down; every run below 262,144 keys is of tier 0). When a
//! checkpoint's new run would be the [`FAN_IN`]th of its tier, the checkpoint writes one run
//! instead: its own ids merged with those runs' entries, read back in key order. The merged
//! run is of a higher tier (or tier 0 again, for runs that small), where the same rule applies again, so one checkpoint may merge
//! several tiers at once ([`merge_plan`]). No tier holds more than `FAN_IN - 1` runs after a
//! checkpoint, so a partition holds about `3 × log4(ids / 65,536)` id runs (40 unmerged runs
//! of 2.4 million ids become 4), and each id is rewritten once per tier it climbs.
//!
//! A merge is part of its checkpoint: the merged run is durable before the manifest naming it
//! (and no longer naming the runs it absorbed) is renamed into place, and the absorbed runs are
//! deleted only after that. A crash leaves either the old runs or the merged one named, as for
//! any run. The plan is a pure function of the manifest's runs and the checkpoint's count of
//! ids, and a merge of the same runs writes the same bytes, so replicas that checkpoint the
//! same state hold the same runs. Ids are unique across runs (each id's run is written by the
//! checkpoint whose interval holds its transfer), so a merge should never meet one twice; if
//! it does, it keeps the newest run's entry, the one a read finds (the run writer's key-order
//! check asserts that no key is written twice).
//!
//! The other keyspaces that grow with history add a run per checkpoint too, and their reads
//! pick runs by when they were written: an account's list is read run by run in position
//! order, the newest status run wins, and a timestamp seek reads the newest run starting
//! below it. Those runs merge only with the newest ones, so that each run still holds a
//! contiguous stretch of checkpoints (the cold runs find a list run's positions from the
//! transfer runs of that stretch): the same tiers, [`FAN_IN`] runs at a time, a merge of
//! statuses keeping each position's newest entry, and none past tier
//! [`WRITE_ORDER_TIER_MAX`]. Transfer and history runs are read by position, one run per
//! read however many there are, and are not merged ([`merge_order`]).

use kassa_shard::Keyspace;
use kassa_storage::run::{Run, RunWriter};
use kassa_storage::StorageError;

use crate::types::RunEntry;
use crate::yield_now::YieldNow;

/// Runs of a tier that a merge makes one: four, so that a merged run is at least four times
/// its inputs' tier floor and the next tier's member.
pub(crate) const FAN_IN: usize = 4;

/// Runs of up to this many keys times four are all of tier 0.
const TIER_KEYS_FLOOR: u64 = 1 << 16;

/// Bytes of entries (keys and values) merged between two turns the core's other tasks get:
/// 52,428 ids, 65,536 list entries. The turns come about once per batch applied, so this
/// bounds how fast a merge goes under load.
const MERGE_CHUNK_BYTES: usize = 1 << 20;

/// The tier of a run of `keys` keys.
pub(crate) fn tier(keys: u64) -> u32 {
    (keys.max(TIER_KEYS_FLOOR) / TIER_KEYS_FLOOR).ilog2() / 2
}

/// Which of the live id runs (their counts of keys, `live`, in the order written) a checkpoint
/// writing `new` ids merges into its own run: the indexes of `live`, ascending; none when its
/// run is not the [`FAN_IN`]th of its tier. Each tier reached by a merge is checked in turn.
/// A tier takes part with its `FAN_IN - 1` oldest runs at most, so a directory whose tiers
/// hold more (written before runs merged) converges a few runs per checkpoint instead of
/// rewriting all of its ids in one.
pub(crate) fn merge_plan(live: &[u64], new: u64) -> Vec<usize> {
    let mut absorbed: Vec<usize> = Vec::new();
    if new == 0 {
        return absorbed;
    }
    let mut keys = new;
    loop {
        let level = tier(keys);
        let same: Vec<usize> = (0..live.len())
            .filter(|at| !absorbed.contains(at) && tier(live[*at]) == level)
            .take(FAN_IN - 1)
            .collect();
        if same.len() + 1 < FAN_IN {
            break;
        }
        keys += same.iter().map(|at| live[*at]).sum::<u64>();
        absorbed.extend(same);
    }
    absorbed.sort_unstable();
    absorbed
}

/// How a keyspace's runs merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MergeOrder {
    /// In tiers by size, any runs of a tier ([`merge_plan`]): the id runs, whose keys are
    /// unique and whose reads do not care which run holds a key.
    Tiered,
    /// The newest runs only, so that every run still holds what a contiguous stretch of
    /// checkpoints wrote ([`write_order_plan`]): the runs whose reads pick a run by when it was
    /// written (account lists by the positions their checkpoints cover, statuses newest
    /// first, timestamp samples by their disjoint ascending ranges).
    WriteOrder,
}

/// How `keyspace`'s runs merge, if at all. Transfer and history runs are read by position,
/// one run per read whatever their count (a history entry is in the run whose checkpoints
/// stored its transfer), so merging them would only rewrite 128 or 80 bytes per entry: at
/// 30M transfers under TigerBeetle's benchmark, merging history lengthened checkpoints from
/// 2-3 s to 9-12 s. Change runs are deleted once released; format 2's sample runs leave at
/// the next checkpoint.
pub(crate) fn merge_order(keyspace: Keyspace) -> Option<MergeOrder> {
    match keyspace {
        Keyspace::TransferIds => Some(MergeOrder::Tiered),
        Keyspace::Statuses | Keyspace::AccountTransfers | Keyspace::TransferTimestamps => {
            Some(MergeOrder::WriteOrder)
        }
        Keyspace::Transfers | Keyspace::History | Keyspace::Changes | Keyspace::TransferSamples => {
            None
        }
    }
}

/// The live runs (`live`, a manifest's, of every keyspace) that a checkpoint writing at most
/// `new` entries of `keyspace` merges into its run, oldest first, as `keyspace`'s merge order
/// plans it: none for a keyspace that does not merge.
pub(crate) fn absorbed_runs(keyspace: Keyspace, live: &[RunEntry], new: u64) -> Vec<RunEntry> {
    let Some(order) = merge_order(keyspace) else {
        return Vec::new();
    };
    let mut of: Vec<&RunEntry> = live.iter().filter(|run| run.keyspace == keyspace).collect();
    of.sort_by_key(|run| run.number);
    let keys: Vec<u64> = of.iter().map(|run| run.keys).collect();
    let plan: Vec<usize> = match order {
        MergeOrder::Tiered => merge_plan(&keys, new),
        MergeOrder::WriteOrder => (keys.len() - write_order_plan(&keys, new)..keys.len()).collect(),
    };
    plan.into_iter().map(|at| of[at].clone()).collect()
}

/// A write-order merge stops once its run is of this tier (65,536 × 4^5 keys, 67 million):
/// it never absorbs a run of this tier or above, so no merge rewrites more than four runs
/// just below it (268 million keys), and past it a keyspace adds a run per 67 to 268 million
/// keys.
const WRITE_ORDER_TIER_MAX: u32 = 5;

/// How many of the newest live runs of a keyspace that merges in write order (their counts of
/// keys, `live`, oldest first) a checkpoint writing at most `new` keys merges into its own:
/// the [`FAN_IN`]` - 1` newest when they are all of its run's tier or below (so small runs
/// left behind a larger one are swept into the next merge that reaches their tier), then the
/// [`FAN_IN`]` - 1` before those on the same terms with the merged run's tier, until the
/// merged run reaches tier [`WRITE_ORDER_TIER_MAX`]. Every run then still holds the entries
/// of a contiguous stretch of checkpoints, and as with [`merge_plan`] the count of runs
/// grows with the log of the keys, up to that tier. A merged run holds less than four runs
/// just below that tier (268 million keys), whatever the backlog of a directory written
/// before these runs merged.
pub(crate) fn write_order_plan(live: &[u64], new: u64) -> usize {
    let mut keys = new;
    let mut taken = 0;
    if new == 0 {
        return 0;
    }
    loop {
        let level = tier(keys);
        let rest = &live[..live.len() - taken];
        if level >= WRITE_ORDER_TIER_MAX || rest.len() < FAN_IN - 1 {
            break;
        }
        let newest = &rest[rest.len() - (FAN_IN - 1)..];
        if !newest.iter().all(|keys| tier(*keys) <= level) {
            break;
        }
        keys += newest.iter().sum::<u64>();
        taken += FAN_IN - 1;
    }
    taken
}

/// The runs a checkpoint merges into its own, read in key order a bounded piece at a time,
/// and merged with the checkpoint's own entries as they come.
pub(crate) struct RunMerge {
    inputs: Vec<Input>,
    value_size: usize,
    /// The merged entries not yet given to the writer: at most `chunk` of them.
    chunk: usize,
    keys: Vec<u128>,
    values: Vec<u8>,
    /// Entries given to the writer: the first and last key, and how many came from the runs.
    pub(crate) first_key: Option<u128>,
    pub(crate) last_key: u128,
    from_runs: u64,
    /// Entries of the runs dropped for a newer one's of the same key.
    replaced: u64,
}

/// One input run and what of it is read but not merged yet.
struct Input {
    run: Run,
    next_block: u64,
    keys: Vec<u128>,
    values: Vec<u8>,
    at: usize,
}

impl Input {
    fn head(&self) -> Option<u128> {
        self.keys.get(self.at).copied()
    }

    fn more_on_disk(&self) -> bool {
        self.next_block < self.run.footer().data_blocks
    }

    /// Reads the next blocks once every entry read is merged.
    async fn refill(&mut self) -> Result<(), StorageError> {
        if self.at < self.keys.len() || !self.more_on_disk() {
            return Ok(());
        }
        self.keys.clear();
        self.values.clear();
        self.at = 0;
        let read = self
            .run
            .read_entries(self.next_block, &mut self.keys, &mut self.values)
            .await?;
        self.next_block += read;
        Ok(())
    }
}

impl RunMerge {
    /// A merge of `runs` (of one keyspace, whose values are `value_size` bytes), oldest first.
    /// Of a key held more than once the newest entry is kept, the checkpoint's own, else the
    /// newest run's, as a read finds it: a status changed since an older run wrote it, or an
    /// entry written twice (a list of an earlier version that rewrote a stretch).
    pub(crate) fn new(runs: Vec<Run>, value_size: usize) -> RunMerge {
        for run in &runs {
            assert_eq!(run.value_size(), value_size, "merged runs' value size");
        }
        let inputs = runs.into_iter().map(|run| Input {
            run,
            next_block: 0,
            keys: Vec::new(),
            values: Vec::new(),
            at: 0,
        });
        RunMerge {
            inputs: inputs.collect(),
            value_size,
            chunk: MERGE_CHUNK_BYTES / (16 + value_size),
            keys: Vec::with_capacity(MERGE_CHUNK_BYTES / (16 + value_size)),
            values: Vec::with_capacity(MERGE_CHUNK_BYTES / (16 + value_size) * value_size),
            first_key: None,
            last_key: 0,
            from_runs: 0,
            replaced: 0,
        }
    }

    /// Keys the input runs hold.
    pub(crate) fn keys(&self) -> u64 {
        self.inputs.iter().map(|input| input.run.keys()).sum()
    }

    /// Merges the checkpoint's next entries (`keys` ascending, above every earlier call's,
    /// `values` theirs) with every entry of the runs below the last of them, or with all that
    /// is left of the runs when `last`, and gives the result to `writer` in key order. The
    /// core's other tasks get a turn after each chunk written; returns false, unfinished, once
    /// `current` says after one that the checkpoint is abandoned.
    pub(crate) async fn push(
        &mut self,
        writer: &mut RunWriter,
        keys: &[u128],
        values: &[u8],
        last: bool,
        current: &dyn Fn() -> bool,
    ) -> Result<bool, StorageError> {
        let size = self.value_size;
        assert_eq!(values.len(), keys.len() * size, "merged values' size");
        let bound = match (last, keys.last()) {
            (true, _) => u128::MAX,
            (false, Some(key)) => *key,
            (false, None) => return Ok(true),
        };
        let mut own = 0;
        loop {
            // The smallest head: the checkpoint's next entry or an input run's.
            let mut smallest = keys.get(own).copied();
            let mut from: Option<usize> = None;
            for at in 0..self.inputs.len() {
                self.inputs[at].refill().await?;
                let Some(key) = self.inputs[at].head() else {
                    continue;
                };
                // A later run's equal key replaces an earlier run's, never the checkpoint's.
                let newer = |least: u128| key < least || (key == least && from.is_some());
                if key <= bound && smallest.is_none_or(newer) {
                    smallest = Some(key);
                    from = Some(at);
                }
            }
            let Some(key) = smallest else {
                break;
            };
            // The other holders of that key give theirs up.
            for at in 0..self.inputs.len() {
                let input = &mut self.inputs[at];
                if Some(at) != from && input.head() == Some(key) {
                    input.at += 1;
                    self.replaced += 1;
                    input.refill().await?;
                }
            }
            // With it go the entries of the same source below every other's next key, in one
            // copy (an account's entries in a run of lists or history, a whole run of samples
            // whose checkpoints came one after another).
            let mut below = if from.is_some() {
                keys.get(own).copied().unwrap_or(u128::MAX)
            } else {
                u128::MAX
            };
            for (at, input) in self.inputs.iter().enumerate() {
                if Some(at) != from {
                    // Every other input was refilled since its last entry was taken: none
                    // left means none on disk either.
                    debug_assert!(input.head().is_some() || !input.more_on_disk());
                    below = below.min(input.head().unwrap_or(u128::MAX));
                }
            }
            let room = self.chunk - self.keys.len();
            let (source_keys, source_values, start) = match from {
                None => (keys, values, own),
                Some(at) => {
                    let input = &self.inputs[at];
                    (&input.keys[..], &input.values[..], input.at)
                }
            };
            let mut end = start + 1;
            while end < source_keys.len()
                && end - start < room
                && source_keys[end] < below
                && source_keys[end] <= bound
            {
                end += 1;
            }
            self.keys.extend_from_slice(&source_keys[start..end]);
            self.values
                .extend_from_slice(&source_values[start * size..end * size]);
            match from {
                None => own = end,
                Some(at) => {
                    self.inputs[at].at = end;
                    self.from_runs += (end - start) as u64;
                }
            }
            if self.keys.len() == self.chunk {
                self.flush(writer).await?;
                YieldNow::new().await;
                if !current() {
                    return Ok(false);
                }
            }
        }
        self.flush(writer).await?;
        if last {
            let left = self
                .inputs
                .iter()
                .any(|i| i.head().is_some() || i.more_on_disk());
            assert!(!left, "a merge's last push reads its runs to the end");
            assert_eq!(
                self.from_runs + self.replaced,
                self.keys(),
                "a merge keeps every key of its runs but those replaced"
            );
        }
        Ok(true)
    }

    async fn flush(&mut self, writer: &mut RunWriter) -> Result<(), StorageError> {
        let Some(&last) = self.keys.last() else {
            return Ok(());
        };
        self.first_key = self.first_key.or(self.keys.first().copied());
        self.last_key = last;
        writer.push_all(&self.keys, &self.values).await?;
        self.keys.clear();
        self.values.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{runtime, TestDir};
    use kassa_storage::run::RunOptions;
    use std::collections::BTreeMap;

    fn options(value_size: usize) -> RunOptions {
        RunOptions {
            value_size,
            keys_expected: 0,
            filter_bits_per_key: 0,
            filter_seed: 0,
        }
    }

    /// Writes `entries` (keys ascending) as run `name` in `dir` and opens it to be merged.
    async fn run_of(dir: &std::path::Path, name: &str, entries: &[(u128, [u8; 2])]) -> Run {
        let mut writer = RunWriter::create(dir, name, options(2))
            .await
            .expect("create");
        for (key, value) in entries {
            writer.push_all(&[*key], value).await.expect("push");
        }
        writer.finish().await.expect("finish");
        Run::open_unfiltered(&dir.join(name)).await.expect("open")
    }

    /// Runs of interleaved and repeated keys (stretches of one run between another's, the
    /// same key in several) merged with the checkpoint's own entries given in pieces: every
    /// key once, ascending, with the newest entry (the checkpoint's, else the latest run's),
    /// as a model of newest-wins says, whatever the sizes of the pieces.
    #[test]
    fn a_merge_keeps_each_keys_newest_entry_in_key_order() {
        let dir = TestDir::new("run-merge");
        let dir = dir.path();
        runtime().block_on(async {
            let mut seed = 0x3e7_u64;
            let mut next = |below: u64| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) % below
            };
            for case in 0..12u8 {
                let mut model: BTreeMap<u128, [u8; 2]> = BTreeMap::new();
                let mut runs = Vec::new();
                for input in 0..3u8 {
                    // Stretches of consecutive keys, and single scattered ones.
                    let mut keys = std::collections::BTreeSet::new();
                    for _ in 0..1 + next(40) {
                        let start = next(20_000) as u128;
                        for key in start..start + next(600) as u128 {
                            keys.insert(key);
                        }
                    }
                    let entries: Vec<(u128, [u8; 2])> =
                        keys.into_iter().map(|key| (key, [case, input])).collect();
                    for (key, value) in &entries {
                        model.insert(*key, *value);
                    }
                    let name = format!("case-{case}-input-{input}.run");
                    runs.push(run_of(dir, &name, &entries).await);
                }
                let mut own: Vec<u128> = (0..next(3_000)).map(|_| next(21_000) as u128).collect();
                own.sort_unstable();
                own.dedup();
                for key in &own {
                    model.insert(*key, [case, 9]);
                }
                let mut merge = RunMerge::new(runs, 2);
                if case % 3 == 0 {
                    merge.chunk = 1 + next(100) as usize;
                }
                let name = format!("case-{case}-merged.run");
                let mut writer = RunWriter::create(dir, &name, options(2))
                    .await
                    .expect("create");
                let mut given = 0;
                while given < own.len() {
                    let piece = (1 + next(700) as usize).min(own.len() - given);
                    let keys = &own[given..given + piece];
                    let values: Vec<u8> = keys.iter().flat_map(|_| [case, 9]).collect();
                    let going = merge.push(&mut writer, keys, &values, false, &|| true);
                    assert!(going.await.expect("merge"));
                    given += piece;
                }
                let going = merge.push(&mut writer, &[], &[], true, &|| true);
                assert!(going.await.expect("merge"));
                writer.finish().await.expect("finish");
                let merged = Run::open(&dir.join(&name)).await.expect("open");
                let mut found = Vec::new();
                merged
                    .scan(0, u128::MAX, |key, value| {
                        found.push((key, [value[0], value[1]]));
                        true
                    })
                    .await
                    .expect("scan");
                let expected: Vec<(u128, [u8; 2])> = model.into_iter().collect();
                assert_eq!(found.len(), expected.len(), "case {case}");
                assert_eq!(found, expected, "case {case}");
                assert_eq!(
                    (merge.first_key, merge.last_key),
                    (
                        expected.first().map(|e| e.0),
                        expected.last().map_or(0, |e| e.0)
                    )
                );
            }
        });
    }

    const M: u64 = 1 << 20;

    #[test]
    fn tiers_are_powers_of_four_above_the_floor() {
        assert_eq!(tier(0), 0);
        assert_eq!(tier(1), 0);
        assert_eq!(tier(4 * TIER_KEYS_FLOOR - 1), 0);
        assert_eq!(tier(4 * TIER_KEYS_FLOOR), 1);
        assert_eq!(tier(16 * TIER_KEYS_FLOOR - 1), 1);
        assert_eq!(tier(16 * TIER_KEYS_FLOOR), 2);
        assert_eq!(tier(u64::MAX), 23);
        // Four runs of a tier make one of the next, at least.
        for keys in [4 * TIER_KEYS_FLOOR, 5 * M, 2 * M + 1, 60 * M] {
            assert!(tier(4 * keys) > tier(keys), "{keys}");
        }
    }

    #[test]
    fn the_fourth_run_of_a_tier_merges_the_three_before_it() {
        assert!(merge_plan(&[], 2 * M).is_empty());
        assert!(merge_plan(&[2 * M, 2 * M], 2 * M).is_empty());
        assert_eq!(merge_plan(&[2 * M, 2 * M, 2 * M], 2 * M), [0, 1, 2]);
        // Only runs of the new run's tier: a larger and a smaller one stay.
        assert_eq!(
            merge_plan(&[40 * M, 2 * M, 100, 2 * M, 2 * M], 2 * M),
            [1, 3, 4]
        );
        // No new ids, no run, no merge.
        assert!(merge_plan(&[2 * M, 2 * M, 2 * M], 0).is_empty());
    }

    /// A directory written before runs merged holds one run per checkpoint, 40 in a tier: each
    /// checkpoint takes the three oldest of its tier, so the tiers drain a few runs at a time
    /// and none holds four once the backlog is gone.
    #[test]
    fn a_backlog_of_runs_is_merged_a_few_at_a_time() {
        let mut live = vec![2 * M; 40];
        assert_eq!(merge_plan(&live, 2 * M), [0, 1, 2]);
        let mut checkpoints = 0;
        while (0..24)
            .any(|level| live.iter().filter(|keys| tier(**keys) == level).count() >= FAN_IN)
        {
            let plan = merge_plan(&live, 2 * M);
            assert!(
                plan.len() <= 3 * 4,
                "a plan takes at most three runs a tier: {plan:?}"
            );
            let merged = 2 * M + plan.iter().map(|at| live[*at]).sum::<u64>();
            for at in plan.into_iter().rev() {
                live.remove(at);
            }
            live.push(merged);
            checkpoints += 1;
            assert!(checkpoints < 40, "the backlog drains: {live:?}");
        }
        assert_eq!(live.iter().sum::<u64>(), (40 + checkpoints) * 2 * M);
    }

    #[test]
    fn a_write_order_merge_takes_the_newest_runs_only() {
        assert_eq!(write_order_plan(&[], 100), 0);
        assert_eq!(write_order_plan(&[100, 100], 100), 0);
        assert_eq!(write_order_plan(&[100, 100, 100], 100), 3);
        assert_eq!(write_order_plan(&[100, 100, 100], 0), 0, "no run, no merge");
        // An older, larger run stays; a newer, larger one stops the merge.
        assert_eq!(write_order_plan(&[40 * M, 100, 100, 100], 100), 3);
        assert_eq!(write_order_plan(&[100, 100, 40 * M], 100), 0);
        // Small runs left behind a larger one are swept in once a merge reaches its tier.
        assert_eq!(write_order_plan(&[40 * M, 100, 100, 2 * M], 2 * M), 3);
        // A merge that reaches the next tier goes on to the runs before.
        let live = [8 * M, 8 * M, 8 * M, 2 * M, 2 * M, 2 * M];
        assert_eq!(write_order_plan(&live, 2 * M), 6);
        // Runs from the largest tier a merge absorbs on are left as they are.
        let large = 300 * M;
        assert!(tier(large) >= WRITE_ORDER_TIER_MAX);
        assert_eq!(write_order_plan(&[large, large, large], large), 0);
        assert_eq!(write_order_plan(&[large, large, large], 2 * M), 0);
    }

    /// A directory written before these runs merged holds one run per checkpoint: the first
    /// merges sweep the newest of them until the merged run reaches the largest tier a merge
    /// makes, and no merge rewrites more than four runs below it.
    #[test]
    fn a_write_order_backlog_is_merged_up_to_the_largest_tier() {
        let floor = TIER_KEYS_FLOOR << (2 * WRITE_ORDER_TIER_MAX);
        for backlog in [40, 1_000] {
            let mut live = vec![2 * M; backlog];
            for _ in 0..60 {
                let newest = write_order_plan(&live, 2 * M);
                let merged = 2 * M + live.drain(live.len() - newest..).sum::<u64>();
                assert!(merged < 4 * floor, "{merged} keys rewritten");
                live.push(merged);
            }
            assert_eq!(live.iter().sum::<u64>(), (backlog as u64 + 60) * 2 * M);
            if backlog == 40 {
                assert!(live.len() <= 20, "{} runs", live.len());
            }
        }
    }

    /// Checkpoints of varying sizes, each merging its newest runs as planned: every key stays
    /// in exactly one run, the runs stay in write order, and their count stays small.
    #[test]
    fn write_order_runs_stay_few_whatever_the_interval_sizes() {
        let mut live: Vec<u64> = Vec::new();
        let mut total = 0u64;
        let mut seed = 0x0dd5_u64;
        let mut most = 0;
        for step in 0..3_000u64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let new = match step % 7 {
                0 => 1 + (seed >> 33) % 100,
                _ => 1 + (seed >> 33) % (3 * M),
            };
            total += new;
            let newest = write_order_plan(&live, new);
            assert!(newest % (FAN_IN - 1) == 0 && newest <= live.len());
            let merged = new + live.drain(live.len() - newest..).sum::<u64>();
            live.push(merged);
            assert_eq!(live.iter().sum::<u64>(), total);
            most = most.max(live.len());
        }
        // 3,000 checkpoints of 1.3M keys on average (4 billion keys): runs stop growing once
        // of tier `WRITE_ORDER_TIER_MAX` (67 million keys or more), and the tiers below hold
        // a few each.
        let floor = TIER_KEYS_FLOOR << (2 * WRITE_ORDER_TIER_MAX);
        let large = live.iter().filter(|keys| **keys >= floor).count();
        assert!(large as u64 <= total / floor, "{large} large runs");
        let small = live.len() - large;
        assert!(
            small <= 3 * (WRITE_ORDER_TIER_MAX as usize + 1),
            "{small} small runs: {live:?}"
        );
        assert!(
            most <= large + 3 * (WRITE_ORDER_TIER_MAX as usize + 2),
            "{most} runs"
        );
    }

    #[test]
    fn a_merge_that_completes_a_higher_tier_merges_that_too() {
        // Three runs of 8M (tier 3) and three of 2M (tier 2): the fourth 2M run makes 8M,
        // the fourth of tier 3: all seven become one.
        let live = [8 * M, 8 * M, 8 * M, 2 * M, 2 * M, 2 * M];
        assert_eq!(merge_plan(&live, 2 * M), [0, 1, 2, 3, 4, 5]);
    }

    /// Checkpoints of varying sizes, each merging as planned: no tier ever holds more than
    /// three runs, so the count of runs grows with the log of the ids, and every id stays in
    /// exactly one run.
    #[test]
    fn the_runs_per_tier_stay_bounded_whatever_the_interval_sizes() {
        let mut live: Vec<u64> = Vec::new();
        let mut total = 0u64;
        let mut seed = 0x5eed_u64;
        let mut most = 0;
        for _ in 0..2_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let new = 1 + (seed >> 33) % (3 * M);
            total += new;
            let plan = merge_plan(&live, new);
            let merged = new + plan.iter().map(|at| live[*at]).sum::<u64>();
            for at in plan.into_iter().rev() {
                live.remove(at);
            }
            live.push(merged);
            assert_eq!(live.iter().sum::<u64>(), total);
            for level in 0..24 {
                let count = live.iter().filter(|keys| tier(**keys) == level).count();
                assert!(count < FAN_IN, "tier {level} holds {count} runs: {live:?}");
            }
            most = most.max(live.len());
        }
        // 2,000 checkpoints of 1.5M ids on average (3 billion ids): at most 3 runs in each of
        // about 12 tiers above the first interval's.
        assert!(most <= 3 * 12, "{most} runs");
    }
}
