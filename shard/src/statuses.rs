//! The two-phase status of a transfer ([`PendingStatus`]) and of every transfer of a partition,
//! by position ([`TransferStatuses`]).

use std::collections::{HashMap, VecDeque};

use foldhash::fast::FixedState;

use crate::cold::ColdError;
use crate::keyspace::Keyspace;

/// Where a transfer stands in the two-phase protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PendingStatus {
    /// Not a pending transfer (single-phase, or a post or void).
    None = 0,
    /// Pending: its amount is reserved.
    Pending = 1,
    Posted = 2,
    Voided = 3,
    Expired = 4,
}

impl PendingStatus {
    pub(crate) fn from_u8(value: u8) -> Option<PendingStatus> {
        match value {
            0 => Some(PendingStatus::None),
            1 => Some(PendingStatus::Pending),
            2 => Some(PendingStatus::Posted),
            3 => Some(PendingStatus::Voided),
            4 => Some(PendingStatus::Expired),
            _ => None,
        }
    }
}

/// Positions one chunk covers.
const CHUNK: usize = 4096;

/// Whether a restore of `len` transfers keeps in memory the status (not `None`) of the
/// transfer at `position`: a pending one, or one in the last, partial chunk, which is never
/// released.
pub(crate) fn held_at_restore(len: usize, position: u32, status: PendingStatus) -> bool {
    status == PendingStatus::Pending || position as usize >= len / CHUNK * CHUNK
}

/// The two-phase status of every transfer, by position. Most transfers are not pending
/// ([`PendingStatus::None`]), so positions are kept in chunks of 4,096 and a chunk takes
/// memory only once one of its transfers is two-phase (pending, or a pending one since
/// posted, voided or expired), and keeps it: a ledger without two-phase transfers
/// keeps 8 bytes per 4,096 transfers, not one byte per transfer, and a restore or a check
/// visits only the chunks that hold statuses.
///
/// With a cold store the chunks wholly below a durable checkpoint's cut are released
/// ([`TransferStatuses::release_below`]): their statuses are in the store's status runs,
/// and memory keeps only those of the transfers still pending and those changed since that
/// checkpoint (`cold`). A resolved status is read from the store when asked
/// (`Ledger::transfer_status_at`), so memory does not grow with two-phase history.
///
/// Invariants: `released + chunks.len() == len.div_ceil(CHUNK)`, every position at or past
/// `len` in the last chunk is `None`, and `cold` holds positions below `released * CHUNK`
/// only.
#[derive(Clone, Default)]
pub(crate) struct TransferStatuses {
    len: usize,
    /// Chunks released from the front: their positions' statuses are in the store, but for
    /// those in `cold`.
    released: usize,
    /// The chunks from `released` on.
    chunks: VecDeque<Option<Box<[PendingStatus; CHUNK]>>>,
    /// Statuses of released positions kept in memory: pending, or changed since the last
    /// durable checkpoint.
    cold: HashMap<u32, PendingStatus, FixedState>,
}

impl TransferStatuses {
    /// `len` transfers, none of them pending.
    pub(crate) fn with_len(len: usize) -> TransferStatuses {
        TransferStatuses::released_up_to(len, 0)
    }

    /// `len` transfers, none of them pending, the first `released` chunks released.
    fn released_up_to(len: usize, released: usize) -> TransferStatuses {
        TransferStatuses {
            len,
            released,
            chunks: std::iter::repeat_n(None, len.div_ceil(CHUNK) - released).collect(),
            ..TransferStatuses::default()
        }
    }

    /// At a restore with a cold store: `len` transfers whose statuses are in the store's
    /// runs; those below the last chunk start released, and as the runs are read
    /// ([`TransferStatuses::restore`]) memory keeps only their pending ones.
    pub(crate) fn restoring_released(len: usize) -> TransferStatuses {
        TransferStatuses::released_up_to(len, len / CHUNK)
    }

    /// At a restore: the status a run names for `position`, which must exist (a later run's
    /// replaces an earlier one's). Of a released position, only a pending one is kept.
    pub(crate) fn restore(&mut self, position: u32, status: PendingStatus) {
        if (position as usize / CHUNK) >= self.released {
            self.set(position, status);
        } else if status == PendingStatus::Pending {
            self.cold.insert(position, status);
        } else {
            self.cold.remove(&position);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Positions below this may have their status in the store only.
    pub(crate) fn released_below(&self) -> u32 {
        (self.released * CHUNK).min(self.len) as u32
    }

    /// The status of the transfer at `position`, which must exist, if memory holds it (none:
    /// a resolved one, or none at all, in the store).
    pub(crate) fn in_memory(&self, position: u32) -> Option<PendingStatus> {
        let position = position as usize;
        assert!(
            position < self.len,
            "the status of transfer {position} of {}",
            self.len
        );
        match (position / CHUNK).checked_sub(self.released) {
            Some(chunk) => Some(match &self.chunks[chunk] {
                Some(chunk) => chunk[position % CHUNK],
                None => PendingStatus::None,
            }),
            None => self.cold.get(&(position as u32)).copied(),
        }
    }

    /// The status of the transfer at `position`, which must exist and have its status in
    /// memory (a transfer since the last durable checkpoint, a pending one, or one changed
    /// since).
    pub(crate) fn get(&self, position: u32) -> PendingStatus {
        let status = self.in_memory(position);
        status.unwrap_or_else(|| panic!("the status of transfer {position} is in the store"))
    }

    /// The status of the transfer at `position`, if it exists and memory holds it.
    pub(crate) fn find(&self, position: usize) -> Option<PendingStatus> {
        let position = u32::try_from(position).ok()?;
        (self.len > position as usize)
            .then(|| self.in_memory(position))
            .flatten()
    }

    /// Sets the status of the transfer at `position`, which must exist and have its status
    /// in memory; returns the one it replaces.
    pub(crate) fn set(&mut self, position: u32, status: PendingStatus) -> PendingStatus {
        let at = position as usize;
        assert!(at < self.len, "the status of transfer {at} of {}", self.len);
        let Some(chunk) = (at / CHUNK).checked_sub(self.released) else {
            let held = self.cold.get_mut(&position);
            let held = held.unwrap_or_else(|| panic!("a change of stored status {position}"));
            return std::mem::replace(held, status);
        };
        let slot = &mut self.chunks[chunk];
        if slot.is_none() && status == PendingStatus::None {
            return PendingStatus::None;
        }
        let chunk = slot.get_or_insert_with(|| Box::new([PendingStatus::None; CHUNK]));
        std::mem::replace(&mut chunk[at % CHUNK], status)
    }

    /// The status of the next transfer.
    pub(crate) fn push(&mut self, status: PendingStatus) {
        assert!(self.len < u32::MAX as usize, "a position beyond u32");
        if self.len % CHUNK == 0 {
            self.chunks.push_back(None);
        }
        self.len += 1;
        self.set((self.len - 1) as u32, status);
    }

    /// Removes the newest transfer's status (never a released one).
    pub(crate) fn pop(&mut self) -> Option<PendingStatus> {
        let position = self.len.checked_sub(1)?;
        assert!(
            position >= self.released * CHUNK,
            "a released status taken back"
        );
        let status = self.set(position as u32, PendingStatus::None);
        self.len = position;
        if position % CHUNK == 0 {
            self.chunks.pop_back();
        }
        Some(status)
    }

    /// A durable checkpoint holds the statuses below `cut`: the chunks wholly below it leave
    /// memory, but for the statuses still pending and those for which `changed` holds
    /// (changed since that checkpoint), which stay in `cold`; statuses kept there before
    /// stay on the same terms.
    pub(crate) fn release_below(&mut self, cut: u32, changed: impl Fn(u32) -> bool) {
        assert!(cut as usize <= self.len, "a cut beyond the transfers");
        let keep = |position: u32, status: PendingStatus| {
            status == PendingStatus::Pending || changed(position)
        };
        self.cold
            .retain(|position, status| keep(*position, *status));
        while self.released < cut as usize / CHUNK {
            let base = self.released * CHUNK;
            if let Some(chunk) = self.chunks.pop_front().flatten() {
                for (at, status) in chunk.iter().enumerate() {
                    let position = (base + at) as u32;
                    if keep(position, *status) {
                        self.cold.insert(position, *status);
                    }
                }
            }
            self.released += 1;
        }
    }

    /// The transfers from `from` on whose status is in memory and not `None`, with it,
    /// ascending.
    pub(crate) fn not_none_from(
        &self,
        from: u32,
    ) -> impl Iterator<Item = (u32, PendingStatus)> + '_ {
        let mut cold: Vec<(u32, PendingStatus)> = (self.cold.iter())
            .filter(|(position, status)| **position >= from && **status != PendingStatus::None)
            .map(|(position, status)| (*position, *status))
            .collect();
        cold.sort_unstable_by_key(|(position, _)| *position);
        let first = (from as usize / CHUNK).saturating_sub(self.released);
        let chunks = self.chunks.iter().enumerate().skip(first);
        let held = chunks.filter_map(|(number, chunk)| Some((number, chunk.as_ref()?)));
        let released = self.released;
        let chunked = held.flat_map(move |(number, chunk)| {
            let statuses = chunk.iter().enumerate();
            statuses.filter_map(move |(at, status)| {
                let position = ((released + number) * CHUNK + at) as u32;
                let wanted = *status != PendingStatus::None && position >= from;
                wanted.then_some((position, *status))
            })
        });
        cold.into_iter().chain(chunked)
    }

    /// What a restore keeps in memory, ascending: the pending statuses, and those of the last,
    /// partial chunk that are not `None` (a checkpoint's hot state lists them from format 4,
    /// so that its restore reads no status run). All of them are in memory.
    pub(crate) fn restored_in_memory(&self) -> Vec<(u32, PendingStatus)> {
        let held = self.not_none();
        let held = held.filter(|(position, status)| held_at_restore(self.len, *position, *status));
        held.collect()
    }

    /// The transfers whose status is in memory and not `None`, with it, ascending.
    pub(crate) fn not_none(&self) -> impl Iterator<Item = (u32, PendingStatus)> + '_ {
        self.not_none_from(0)
    }

    /// Appends every transfer's status as one byte, by position, all of them in memory (the
    /// released ones come from `Ledger::encode_statuses`).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        assert_eq!(
            self.released, 0,
            "released statuses are read from the store"
        );
        for (number, chunk) in self.chunks.iter().enumerate() {
            let count = (self.len - number * CHUNK).min(CHUNK);
            match chunk {
                Some(chunk) => out.extend(chunk[..count].iter().map(|status| *status as u8)),
                None => out.resize(out.len() + count, PendingStatus::None as u8),
            }
        }
    }

    /// Positions whose status memory holds: the chunks held, and the released ones kept.
    pub(crate) fn held(&self) -> usize {
        let chunks = self.chunks.iter().filter(|chunk| chunk.is_some()).count();
        chunks * CHUNK + self.cold.len()
    }

    /// Bytes held in memory.
    #[cfg(test)]
    fn memory_size(&self) -> usize {
        let held = self.chunks.iter().filter(|chunk| chunk.is_some()).count();
        self.chunks.capacity() * size_of::<Option<Box<[PendingStatus; CHUNK]>>>() + held * CHUNK
    }
}

impl crate::Ledger {
    /// Transfer statuses held in memory (4,096 per chunk of positions that has a two-phase
    /// transfer, and one per pending or recently changed transfer older than those chunks).
    pub fn transfer_statuses_in_memory(&self) -> usize {
        self.transfer_status.held()
    }

    /// The two-phase status of the transfer at `position`, which must exist: from memory, or
    /// from the store's status runs for a resolved one (none there: not two-phase).
    pub(crate) fn transfer_status_at(&self, position: u32) -> Result<PendingStatus, ColdError> {
        if let Some(status) = self.transfer_status.in_memory(position) {
            return Ok(status);
        }
        let Some(store) = &self.cold else {
            unreachable!("statuses leave memory only for a cold store")
        };
        let (keyspace, key) = (Keyspace::Statuses, u128::from(position));
        let mut value = [0u8];
        if !store.read(keyspace, key, &mut value)? {
            return Ok(PendingStatus::None);
        }
        let status = PendingStatus::from_u8(value[0]);
        status.ok_or_else(|| ColdError::new(keyspace, key, "an unknown status"))
    }

    /// The status of `transfer`, at `position`: none for one without the `PENDING` flag
    /// (only those have one), else from memory or the store.
    pub(crate) fn status_of(
        &self,
        position: u32,
        transfer: &kassa_wire::Transfer,
    ) -> Result<PendingStatus, ColdError> {
        if !transfer.flags.contains(kassa_wire::TransferFlags::PENDING) {
            return Ok(PendingStatus::None);
        }
        self.transfer_status_at(position)
    }

    /// Appends every transfer's status as one byte, by position (a whole snapshot), the
    /// released ones read from the store.
    pub(crate) fn encode_statuses(&self, out: &mut Vec<u8>) -> Result<(), ColdError> {
        let statuses = &self.transfer_status;
        if statuses.released == 0 {
            statuses.encode(out);
            return Ok(());
        }
        for position in 0..statuses.len as u32 {
            out.push(self.transfer_status_at(position)? as u8);
        }
        Ok(())
    }
}

impl FromIterator<PendingStatus> for TransferStatuses {
    fn from_iter<I: IntoIterator<Item = PendingStatus>>(statuses: I) -> TransferStatuses {
        let mut all = TransferStatuses::default();
        statuses.into_iter().for_each(|status| all.push(status));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain array of statuses and the chunked one agree through pushes, changes and pops
    /// across chunk boundaries, and only chunks with a status hold memory.
    #[test]
    fn chunked_statuses_match_an_array() {
        let mut plain: Vec<PendingStatus> = Vec::new();
        let mut chunked = TransferStatuses::default();
        let mut state = 7_u64;
        let mut next = |below: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) % below
        };
        let all = [
            PendingStatus::None,
            PendingStatus::Pending,
            PendingStatus::Posted,
            PendingStatus::Voided,
            PendingStatus::Expired,
        ];
        for step in 0..60_000 {
            match next(10) {
                0..=5 => {
                    // Mostly not pending, and none at all for a stretch.
                    let pending = step > 20_000 && next(50) == 0;
                    let status = if pending {
                        PendingStatus::Pending
                    } else {
                        PendingStatus::None
                    };
                    plain.push(status);
                    chunked.push(status);
                }
                6 | 7 if !plain.is_empty() => {
                    let position = next(plain.len() as u64) as usize;
                    let status = all[next(5) as usize];
                    let old = chunked.set(position as u32, status);
                    assert_eq!(old, std::mem::replace(&mut plain[position], status));
                }
                _ => {
                    for _ in 0..next(3) {
                        assert_eq!(chunked.pop(), plain.pop());
                    }
                }
            }
            assert_eq!(chunked.len(), plain.len());
        }
        for (position, status) in plain.iter().enumerate() {
            assert_eq!(chunked.get(position as u32), *status);
            assert_eq!(chunked.find(position), Some(*status));
        }
        assert_eq!(chunked.find(plain.len()), None);
        let listed: Vec<(u32, PendingStatus)> = chunked.not_none().collect();
        let expected: Vec<(u32, PendingStatus)> = plain
            .iter()
            .enumerate()
            .filter(|(_, status)| **status != PendingStatus::None)
            .map(|(position, status)| (position as u32, *status))
            .collect();
        assert_eq!(listed, expected);
        let len = plain.len() as u32;
        let chunk = CHUNK as u32;
        for from in [
            0,
            1,
            chunk - 1,
            chunk,
            chunk + 1,
            len / 2,
            len - 1,
            len,
            len + 1,
            u32::MAX,
        ] {
            let later: Vec<_> = chunked.not_none_from(from).collect();
            let expected_later: Vec<_> = expected
                .iter()
                .filter(|(p, _)| *p >= from)
                .copied()
                .collect();
            assert_eq!(later, expected_later, "from {from}");
        }
        // Only chunks that saw a status other than `None` hold memory.
        let held = plain
            .chunks(CHUNK)
            .filter(|c| c.iter().any(|s| *s != PendingStatus::None));
        let pointers = chunked.chunks.capacity() * 8;
        assert!(chunked.memory_size() <= (held.count() + 1) * CHUNK + pointers);
        let mut bytes = Vec::new();
        chunked.encode(&mut bytes);
        assert_eq!(bytes, plain.iter().map(|s| *s as u8).collect::<Vec<_>>());
        let rebuilt: TransferStatuses = plain.iter().copied().collect();
        assert_eq!(rebuilt.not_none().collect::<Vec<_>>(), expected);

        // Released below a cut: the pending statuses stay, and those `changed` names; the
        // rest leave memory, whole chunks at a time; the chunk the cut falls in stays whole.
        let mut released = rebuilt.clone();
        let cut = (2 * CHUNK + 100).min(plain.len()) as u32;
        let changed = |position: u32| position % 10 == 0;
        released.release_below(cut, changed);
        assert_eq!(released.released_below(), (cut / chunk) * chunk);
        for (position, status) in plain.iter().enumerate() {
            let position = position as u32;
            let kept = position >= released.released_below()
                || *status == PendingStatus::Pending
                || changed(position);
            let expected = kept.then_some(*status);
            assert_eq!(released.in_memory(position), expected, "{position}");
        }
        let kept: Vec<_> = released.not_none().collect();
        let expected_kept: Vec<_> = (expected.iter())
            .filter(|(position, _)| released.in_memory(*position).is_some())
            .copied()
            .collect();
        assert_eq!(kept, expected_kept);
        assert!(released.held() < rebuilt.held());
        // A restore with a store keeps, below the last chunk, only the pending statuses its
        // runs name, the later runs' replacing the earlier ones'.
        let mut restoring = TransferStatuses::restoring_released(plain.len());
        for (position, status) in plain.iter().enumerate() {
            if *status != PendingStatus::None {
                restoring.restore(position as u32, PendingStatus::Pending);
                restoring.restore(position as u32, *status);
            }
        }
        for (position, status) in plain.iter().enumerate() {
            let position = position as u32;
            let kept = position >= restoring.released_below() || *status == PendingStatus::Pending;
            assert_eq!(
                restoring.in_memory(position),
                kept.then_some(*status),
                "{position}"
            );
        }
        assert!(restoring.held() < rebuilt.held());
        // Once the changes are durable too, only the pending ones stay; a pending one still
        // changes in memory.
        released.release_below(cut, |_| false);
        let pending = released.cold.keys().copied().collect::<Vec<_>>();
        assert!(pending
            .iter()
            .all(|p| plain[*p as usize] == PendingStatus::Pending));
        if let Some(first) = pending.first() {
            assert_eq!(
                released.set(*first, PendingStatus::Posted),
                PendingStatus::Pending
            );
            assert_eq!(released.get(*first), PendingStatus::Posted);
        }
        let mut restored = TransferStatuses::with_len(1_000_000);
        assert!(restored.memory_size() < 2_000, "{}", restored.memory_size());
        assert_eq!(restored.not_none().count(), 0);
        // A restore sets the statuses its runs name, then the log's transfers follow.
        restored.set(999_999, PendingStatus::Posted);
        restored.push(PendingStatus::None);
        restored.push(PendingStatus::Pending);
        let listed: Vec<_> = restored.not_none().collect();
        assert_eq!(
            listed,
            [
                (999_999, PendingStatus::Posted),
                (1_000_001, PendingStatus::Pending)
            ]
        );
        assert_eq!(restored.get(1_000_000), PendingStatus::None);
    }
}
