//! Merges of id runs (docs/storage.md, "Merges of id runs"). Every checkpoint writes the ids
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
//! checkpoint whose interval holds its transfer), so a merge never meets one twice, and the
//! run writer's key-order check asserts it.

use kassa_storage::run::{Run, RunWriter};
use kassa_storage::StorageError;

use crate::yield_now::YieldNow;

/// Runs of a tier that a merge makes one: four, so that a merged run is at least four times
/// its inputs' tier floor and the next tier's member.
pub(crate) const FAN_IN: usize = 4;

/// Runs of up to this many keys times four are all of tier 0.
const TIER_KEYS_FLOOR: u64 = 1 << 16;

/// Entries merged between two turns the core's other tasks get.
const MERGE_CHUNK_ENTRIES: usize = 8192;

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

/// The runs a checkpoint merges into its own, read in key order a bounded piece at a time,
/// and merged with the checkpoint's own entries as they come.
pub(crate) struct RunMerge {
    inputs: Vec<Input>,
    value_size: usize,
    /// The merged entries not yet given to the writer.
    keys: Vec<u128>,
    values: Vec<u8>,
    /// Entries given to the writer: the first and last key, and how many came from the runs.
    pub(crate) first_key: Option<u128>,
    pub(crate) last_key: u128,
    from_runs: u64,
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
    /// A merge of `runs` (of one keyspace, whose values are `value_size` bytes).
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
            keys: Vec::with_capacity(MERGE_CHUNK_ENTRIES),
            values: Vec::with_capacity(MERGE_CHUNK_ENTRIES * value_size),
            first_key: None,
            last_key: 0,
            from_runs: 0,
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
                if key <= bound && smallest.is_none_or(|least| key < least) {
                    smallest = Some(key);
                    from = Some(at);
                }
            }
            let Some(key) = smallest else {
                break;
            };
            match from {
                None => {
                    self.keys.push(key);
                    self.values
                        .extend_from_slice(&values[own * size..(own + 1) * size]);
                    own += 1;
                }
                Some(at) => {
                    let input = &mut self.inputs[at];
                    self.keys.push(key);
                    self.values
                        .extend_from_slice(&input.values[input.at * size..(input.at + 1) * size]);
                    input.at += 1;
                    self.from_runs += 1;
                }
            }
            if self.keys.len() == MERGE_CHUNK_ENTRIES {
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
                self.from_runs,
                self.keys(),
                "a merge keeps every key of its runs"
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
