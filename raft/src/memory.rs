//! A node's bound on its partitions' memtables (docs/storage.md, "Memory bound"), and the
//! node's bound on the index and filter pages its runs keep ([`PageBudget`]), which every
//! partition's runs share.
//!
//! What a ledger holds in memory grows with every transfer until a durable checkpoint takes
//! it out ([`kassa_shard::Ledger::memtable_bytes`]). The partitions of a node (on every core)
//! publish their memtable's size into one [`MemoryBudget`]; past its limit, a partition that
//! holds at least an even share of what is used asks for a checkpoint after its next write or
//! on the node's pulse ([`checkpoint_for_memory`], the pure decision), once per time its
//! memtable was freed. The largest memtable always holds an even
//! share, so a node whose load sits in one partition (placement by ledger) checkpoints that
//! one, and an even load checkpoints each partition at about its share.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kassa_storage::run::PageBudget;

/// See the module documentation.
#[derive(Debug)]
pub struct MemoryBudget {
    /// Memtable bytes over all partitions past which they checkpoint; 0 bounds nothing.
    limit: u64,
    /// Partitions sharing it: an even share of `used` is `used / partitions`.
    partitions: u32,
    /// The sum of what the partitions last published.
    used: AtomicU64,
    /// The index and filter pages the partitions' runs keep.
    pages: Arc<PageBudget>,
    /// Times a durable checkpoint (or an install) freed a partition's memtable.
    freeings: AtomicU64,
    /// `freeings` when a write last gave up waiting for memory (`u64::MAX`: none did):
    /// until a checkpoint frees memory again, writes do not wait.
    gave_up_at: AtomicU64,
    /// Checkpoints being written now, over all partitions ([`CheckpointWriting`]): while
    /// one is, memory is on its way to being freed, and waiting writes do not give up.
    checkpoints_writing: AtomicU64,
    /// Set when the node stops taking requests: writes waiting for memory go on at once,
    /// so that the stop does not wait for a checkpoint's merges.
    stopping: std::sync::atomic::AtomicBool,
}

impl MemoryBudget {
    /// A budget of `limit` memtable bytes shared by `partitions` partitions, whose runs keep
    /// at most `pages` bytes of index and filter pages.
    pub fn new(limit: u64, pages: Arc<PageBudget>, partitions: u32) -> Arc<MemoryBudget> {
        assert!(partitions > 0);
        Arc::new(MemoryBudget {
            limit,
            partitions,
            used: AtomicU64::new(0),
            pages,
            freeings: AtomicU64::new(0),
            gave_up_at: AtomicU64::new(u64::MAX),
            checkpoints_writing: AtomicU64::new(0),
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A budget that never asks for a checkpoint (tests, tools): memtables are bounded by
    /// the log alone, and runs keep every page they read.
    pub fn unbounded() -> Arc<MemoryBudget> {
        MemoryBudget::new(0, PageBudget::unbounded(), 1)
    }

    /// The index and filter pages the partitions' runs keep.
    pub fn pages(&self) -> &Arc<PageBudget> {
        &self.pages
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The memtable bytes the partitions hold, as last published.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether a write gave up waiting for memory since a checkpoint last freed some: then
    /// no write waits until one does (nothing may free memory: each would wait in vain).
    pub(crate) fn gave_up(&self) -> bool {
        self.gave_up_at.load(Ordering::Relaxed) == self.freeings.load(Ordering::Relaxed)
    }

    /// A write waited as long as it may, and no checkpoint freed memory meanwhile.
    pub(crate) fn give_up(&self) {
        let freeings = self.freeings.load(Ordering::Relaxed);
        self.gave_up_at.store(freeings, Ordering::Relaxed);
    }

    /// The node stops taking requests: the writes it took that wait for memory are written
    /// now, whatever the memtables hold.
    pub fn stop_waiting(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Whether the node stops ([`MemoryBudget::stop_waiting`]).
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// How many checkpoints the partitions are writing now.
    pub fn checkpoints_writing(&self) -> u64 {
        self.checkpoints_writing.load(Ordering::Relaxed)
    }

    /// Counts a checkpoint as being written until the returned guard drops (durable,
    /// abandoned or failed).
    pub(crate) fn checkpoint_writing(self: &Arc<Self>) -> CheckpointWriting {
        self.checkpoints_writing.fetch_add(1, Ordering::Relaxed);
        CheckpointWriting {
            budget: self.clone(),
        }
    }
}

/// A checkpoint being written, counted in its [`MemoryBudget`] while it lives.
#[derive(Debug)]
pub(crate) struct CheckpointWriting {
    budget: Arc<MemoryBudget>,
}

impl Drop for CheckpointWriting {
    fn drop(&mut self) {
        let before = self
            .budget
            .checkpoints_writing
            .fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "a checkpoint counted out twice");
    }
}

/// How many times the memtable limit the node's memtables may hold before writes wait: one
/// memtable being written by its checkpoint, the next filling meanwhile.
pub const MEMTABLE_WAIT_FACTOR: u64 = 2;

/// Whether a write should wait for a durable checkpoint to free memory, the node's memtables
/// holding `used` bytes against `limit`: past [`MEMTABLE_WAIT_FACTOR`] times the limit, the
/// checkpoints asked for do not keep up with the writes (a disk slower than the load), and
/// the load must slow to what the disk takes rather than grow memory without bound.
pub fn writes_wait_for_memory(used: u64, limit: u64) -> bool {
    limit > 0 && used > limit.saturating_mul(MEMTABLE_WAIT_FACTOR)
}

/// What a write waiting for memory does next ([`memory_wait`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryWait {
    /// Memory is under the bound, or another write gave up: write now.
    Write,
    /// Look again after a pause.
    Wait,
    /// Waited too long with no checkpoint being written, or too long at all: write now, and
    /// let the others too.
    GiveUp,
}

/// The pure decision of a write waiting for memory: the node's memtables hold `used` bytes
/// against `limit`; `gave_up` says whether a write gave up since memory was last freed (or
/// the node stops); for `quiet` no checkpoint has been written (the time since one was last
/// seen being written, or since the wait began); the write `waited` so far. A write gives up
/// after `quiet_max` with no checkpoint being written (one declined or failed would keep
/// writes waiting forever), or after `waited_max` in all (one that hangs): a checkpoint
/// being written will free memory, however long its merges take, up to that.
pub fn memory_wait(
    used: u64,
    limit: u64,
    gave_up: bool,
    (quiet, quiet_max): (std::time::Duration, std::time::Duration),
    (waited, waited_max): (std::time::Duration, std::time::Duration),
) -> MemoryWait {
    if gave_up || !writes_wait_for_memory(used, limit) {
        MemoryWait::Write
    } else if quiet >= quiet_max || waited >= waited_max {
        MemoryWait::GiveUp
    } else {
        MemoryWait::Wait
    }
}

/// Whether a partition holding `own` memtable bytes should checkpoint, when the node's
/// `partitions` hold `used` bytes against `limit`: the node is past a limit, and this
/// partition holds at least an even share.
pub fn checkpoint_for_memory(own: u64, used: u64, limit: u64, partitions: u32) -> bool {
    limit > 0 && used > limit && own > 0 && own.saturating_mul(u64::from(partitions)) >= used
}

/// One partition's part of the budget: what it published last, taken back when it closes.
#[derive(Debug)]
pub(crate) struct MemtableGauge {
    budget: Arc<MemoryBudget>,
    published: Cell<u64>,
    /// Times a durable checkpoint (or an install) freed the memtable: a partition asks for a
    /// checkpoint for memory once per freeing, so that a checkpoint that frees nothing (its
    /// runs failed to open) is not followed by another and another.
    freed: Cell<u64>,
}

impl MemtableGauge {
    pub(crate) fn new(budget: Arc<MemoryBudget>) -> MemtableGauge {
        MemtableGauge {
            budget,
            published: Cell::new(0),
            freed: Cell::new(0),
        }
    }

    /// A durable checkpoint (or an install) took the memtable out of memory; it holds `bytes`
    /// now.
    pub(crate) fn publish_freed(&self, bytes: u64) {
        self.freed.set(self.freed.get() + 1);
        self.publish(bytes);
        self.budget.freeings.fetch_add(1, Ordering::Relaxed);
    }

    /// The node's budget.
    pub(crate) fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// How many times the memtable was freed so far.
    pub(crate) fn freed(&self) -> u64 {
        self.freed.get()
    }

    /// A gauge of a budget of its own that bounds nothing (tests of one state machine).
    #[cfg(test)]
    pub(crate) fn unbounded() -> std::rc::Rc<MemtableGauge> {
        std::rc::Rc::new(MemtableGauge::new(MemoryBudget::unbounded()))
    }

    /// The partition's memtable now holds `bytes`.
    pub(crate) fn publish(&self, bytes: u64) {
        let before = self.published.replace(bytes);
        let used = &self.budget.used;
        if bytes >= before {
            used.fetch_add(bytes - before, Ordering::Relaxed);
        } else {
            used.fetch_sub(before - bytes, Ordering::Relaxed);
        }
    }

    /// Publishes `bytes`, and says whether the partition should checkpoint for memory.
    pub(crate) fn publish_and_check(&self, bytes: u64) -> bool {
        self.publish(bytes);
        let budget = &self.budget;
        checkpoint_for_memory(bytes, budget.used(), budget.limit, budget.partitions)
    }
}

impl Drop for MemtableGauge {
    fn drop(&mut self) {
        self.publish(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_past_the_limit_and_only_a_partition_with_an_even_share() {
        // Under the limit, nobody checkpoints.
        assert!(!checkpoint_for_memory(900, 900, 1000, 4));
        assert!(!checkpoint_for_memory(1000, 1000, 1000, 4));
        // Past it, the largest does; one below an even share does not.
        assert!(checkpoint_for_memory(700, 1001, 1000, 4));
        assert!(!checkpoint_for_memory(200, 1001, 1000, 4));
        assert!(checkpoint_for_memory(300, 1200, 1000, 4));
        // An empty memtable has nothing to checkpoint; no limit bounds nothing.
        assert!(!checkpoint_for_memory(0, 5000, 1000, 1));
        assert!(!checkpoint_for_memory(5000, 5000, 0, 1));
    }

    #[test]
    fn writes_stop_waiting_once_one_gave_up_until_memory_is_freed() {
        let budget = MemoryBudget::new(1000, PageBudget::unbounded(), 1);
        let gauge = MemtableGauge::new(budget.clone());
        assert!(!budget.gave_up());
        budget.give_up();
        assert!(budget.gave_up());
        gauge.publish_freed(0);
        assert!(
            !budget.gave_up(),
            "a checkpoint freed memory: writes wait again"
        );
    }

    #[test]
    fn a_wait_gives_up_only_after_a_quiet_spell_with_no_checkpoint_written() {
        let second = std::time::Duration::from_secs(1);
        let (max, hard) = (10 * second, 120 * second);
        let wait = |used, gave_up, quiet, waited| {
            memory_wait(used, 1000, gave_up, (quiet, max), (waited, hard))
        };
        assert_eq!(wait(2000, false, max, max), MemoryWait::Write);
        assert_eq!(wait(2001, false, 9 * second, 9 * second), MemoryWait::Wait);
        assert_eq!(
            wait(2001, false, 9 * second, 100 * second),
            MemoryWait::Wait,
            "a checkpoint being written: waits on past the quiet bound"
        );
        assert_eq!(wait(2001, false, max, max), MemoryWait::GiveUp);
        assert_eq!(
            wait(2001, false, second, hard),
            MemoryWait::GiveUp,
            "but not past the hard bound"
        );
        assert_eq!(
            wait(
                2001,
                true,
                std::time::Duration::ZERO,
                std::time::Duration::ZERO
            ),
            MemoryWait::Write,
            "another write gave up: this one does not wait"
        );
    }

    #[test]
    fn checkpoints_are_counted_while_being_written() {
        let budget = MemoryBudget::new(1000, PageBudget::unbounded(), 2);
        let first = budget.checkpoint_writing();
        let second = budget.checkpoint_writing();
        assert_eq!(budget.checkpoints_writing(), 2);
        drop(first);
        assert_eq!(budget.checkpoints_writing(), 1);
        drop(second);
        assert_eq!(budget.checkpoints_writing(), 0);
    }

    #[test]
    fn writes_wait_only_past_twice_the_limit() {
        assert!(!writes_wait_for_memory(1500, 1000));
        assert!(!writes_wait_for_memory(2000, 1000));
        assert!(writes_wait_for_memory(2001, 1000));
        assert!(
            !writes_wait_for_memory(u64::MAX, 0),
            "no limit bounds nothing"
        );
    }

    #[test]
    fn gauges_sum_into_the_budget_and_leave_it_when_dropped() {
        let budget = MemoryBudget::new(1000, PageBudget::unbounded(), 2);
        let first = MemtableGauge::new(budget.clone());
        let second = MemtableGauge::new(budget.clone());
        assert!(!first.publish_and_check(600), "600 used, under the limit");
        assert!(
            !second.publish_and_check(500),
            "1100 used: 500 is under an even share (550)"
        );
        assert!(first.publish_and_check(600), "600 is over it");
        assert_eq!(budget.used(), 1100);
        first.publish(100);
        assert_eq!(budget.used(), 600);
        drop(second);
        assert_eq!(budget.used(), 100);
        drop(first);
        assert_eq!(budget.used(), 0);
    }
}
