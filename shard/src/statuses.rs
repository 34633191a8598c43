//! The two-phase status of a transfer ([`PendingStatus`]) and of every transfer of a partition,
//! by position ([`TransferStatuses`]).

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

/// The two-phase status of every transfer, by position. Most transfers are not pending
/// ([`PendingStatus::None`]), so positions are kept in chunks of 4,096 and a chunk takes
/// memory only once one of its transfers is two-phase (pending, or a pending one since
/// posted, voided or expired), and keeps it: a ledger without two-phase transfers
/// keeps 8 bytes per 4,096 transfers, not one byte per transfer, and a restore or a check
/// visits only the chunks that hold statuses. A ledger of two-phase transfers keeps about
/// one byte per transfer, as a plain array would.
///
/// Invariants: `chunks.len() == len.div_ceil(CHUNK)`, and every position at or past `len`
/// in the last chunk is `None`.
#[derive(Clone, Default)]
pub(crate) struct TransferStatuses {
    len: usize,
    chunks: Vec<Option<Box<[PendingStatus; CHUNK]>>>,
}

impl TransferStatuses {
    /// `len` transfers, none of them pending.
    pub(crate) fn with_len(len: usize) -> TransferStatuses {
        TransferStatuses {
            len,
            chunks: vec![None; len.div_ceil(CHUNK)],
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The status of the transfer at `position`, which must exist.
    pub(crate) fn get(&self, position: u32) -> PendingStatus {
        let position = position as usize;
        assert!(
            position < self.len,
            "the status of transfer {position} of {}",
            self.len
        );
        match &self.chunks[position / CHUNK] {
            Some(chunk) => chunk[position % CHUNK],
            None => PendingStatus::None,
        }
    }

    /// The status of the transfer at `position`, if it exists.
    pub(crate) fn find(&self, position: usize) -> Option<PendingStatus> {
        let position = u32::try_from(position).ok()?;
        (self.len > position as usize).then(|| self.get(position))
    }

    /// Sets the status of the transfer at `position`, which must exist; returns the one it
    /// replaces.
    pub(crate) fn set(&mut self, position: u32, status: PendingStatus) -> PendingStatus {
        let position = position as usize;
        assert!(
            position < self.len,
            "the status of transfer {position} of {}",
            self.len
        );
        let slot = &mut self.chunks[position / CHUNK];
        if slot.is_none() && status == PendingStatus::None {
            return PendingStatus::None;
        }
        let chunk = slot.get_or_insert_with(|| Box::new([PendingStatus::None; CHUNK]));
        std::mem::replace(&mut chunk[position % CHUNK], status)
    }

    /// The status of the next transfer.
    pub(crate) fn push(&mut self, status: PendingStatus) {
        assert!(self.len < u32::MAX as usize, "a position beyond u32");
        if self.len % CHUNK == 0 {
            self.chunks.push(None);
        }
        self.len += 1;
        self.set((self.len - 1) as u32, status);
    }

    /// Removes the newest transfer's status.
    pub(crate) fn pop(&mut self) -> Option<PendingStatus> {
        let position = self.len.checked_sub(1)?;
        let status = self.set(position as u32, PendingStatus::None);
        self.len = position;
        if position % CHUNK == 0 {
            self.chunks.pop();
        }
        Some(status)
    }

    /// The transfers from `from` on whose status is not `None`, with it, ascending.
    pub(crate) fn not_none_from(
        &self,
        from: u32,
    ) -> impl Iterator<Item = (u32, PendingStatus)> + '_ {
        let first = from as usize / CHUNK;
        let chunks = self.chunks.iter().enumerate().skip(first);
        let held = chunks.filter_map(|(number, chunk)| Some((number, chunk.as_ref()?)));
        held.flat_map(move |(number, chunk)| {
            let statuses = chunk.iter().enumerate();
            statuses.filter_map(move |(at, status)| {
                let position = (number * CHUNK + at) as u32;
                let wanted = *status != PendingStatus::None && position >= from;
                wanted.then_some((position, *status))
            })
        })
    }

    /// The transfers whose status is not `None`, with it, ascending.
    pub(crate) fn not_none(&self) -> impl Iterator<Item = (u32, PendingStatus)> + '_ {
        self.not_none_from(0)
    }

    /// Appends every transfer's status as one byte, by position.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        for (number, chunk) in self.chunks.iter().enumerate() {
            let count = (self.len - number * CHUNK).min(CHUNK);
            match chunk {
                Some(chunk) => out.extend(chunk[..count].iter().map(|status| *status as u8)),
                None => out.resize(out.len() + count, PendingStatus::None as u8),
            }
        }
    }

    /// Bytes held in memory.
    #[cfg(test)]
    fn memory_size(&self) -> usize {
        let held = self.chunks.iter().filter(|chunk| chunk.is_some()).count();
        self.chunks.capacity() * size_of::<Option<Box<[PendingStatus; CHUNK]>>>() + held * CHUNK
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
