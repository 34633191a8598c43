//! Which partition an account or transfer id belongs to.
//!
//! `partition_of(id, P)` is part of the on-disk format: records are stored in the partition
//! this function names, so it must never change for a formatted data directory. It mixes both
//! halves of the id (MurmurHash3's 64-bit finalizer) so that sequential ids, random ids and
//! ids that differ only in their high bits all spread evenly.

/// MurmurHash3's 64-bit finalizer: a bijection that spreads every input bit over the output.
const fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// The hash both [`partition_of`] and the id directory's lease buckets take their bits from.
pub(crate) fn id_hash(id: u128) -> u64 {
    let low = id as u64;
    let high = (id >> 64) as u64;
    mix64(low ^ mix64(high))
}

/// The partition, in `0..partitions`, that owns `id`.
pub fn partition_of(id: u128, partitions: u32) -> u32 {
    assert!(partitions > 0);
    (id_hash(id) % u64::from(partitions)) as u32
}

/// How a cluster places its records in partitions; fixed when its data directory is
/// formatted, like the partition count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PlacementKind {
    /// Every record in the partition its id hashes to ([`partition_of`]); a transfer also in
    /// its accounts' partitions. Most batches then span partitions.
    #[default]
    ById,
    /// Every record of a ledger in the ledger's partition ([`ledger_partition`]): a transfer,
    /// its accounts and its history together, so a batch of one ledger runs in one partition.
    /// Ids stay unique across partitions through the id directory (`crate::directory`).
    ByLedger,
}

impl PlacementKind {
    /// The name in the cluster file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PlacementKind::ById => "id",
            PlacementKind::ByLedger => "ledger",
        }
    }

    pub fn from_name(name: &str) -> Option<PlacementKind> {
        match name {
            "id" => Some(PlacementKind::ById),
            "ledger" => Some(PlacementKind::ByLedger),
            _ => None,
        }
    }
}

/// The partition, in `0..partitions`, that holds ledger `ledger`'s records under
/// [`PlacementKind::ByLedger`]. Part of the on-disk format, like [`partition_of`].
pub fn ledger_partition(ledger: u32, partitions: u32) -> u32 {
    assert!(partitions > 0);
    // A constant apart from `partition_of`'s, so that ledger 7 and id 7 land apart.
    let hash = mix64(u64::from(ledger) ^ 0x6c65_6467_6572_0000);
    (hash % u64::from(partitions)) as u32
}

/// A cluster's placement: its kind and its partition count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub kind: PlacementKind,
    pub partitions: u32,
}

/// One partition, placed by id (a ledger that holds everything).
impl Default for Placement {
    fn default() -> Placement {
        Placement::new(PlacementKind::ById, 1)
    }
}

impl Placement {
    pub fn new(kind: PlacementKind, partitions: u32) -> Placement {
        Placement {
            kind,
            partitions: partitions.max(1),
        }
    }

    /// The partition that stores `account`.
    pub fn account(&self, account: &kassa_wire::Account) -> u32 {
        match self.kind {
            PlacementKind::ById => partition_of(account.id.0, self.partitions),
            PlacementKind::ByLedger => ledger_partition(account.ledger, self.partitions),
        }
    }

    /// The partitions that store a transfer, ascending, each once: under
    /// [`PlacementKind::ById`] its id's and its accounts', under [`PlacementKind::ByLedger`]
    /// its ledger's (a stored transfer's accounts are of its ledger).
    pub fn transfer_partitions(&self, t: &kassa_wire::Transfer) -> impl Iterator<Item = u32> {
        let mut stored = match self.kind {
            PlacementKind::ById => [
                partition_of(t.id.0, self.partitions),
                partition_of(t.debit_account_id.0, self.partitions),
                partition_of(t.credit_account_id.0, self.partitions),
            ],
            PlacementKind::ByLedger => [ledger_partition(t.ledger, self.partitions); 3],
        };
        stored.sort_unstable();
        let [first, second, third] = stored;
        let distinct = [
            Some(first),
            (second != first).then_some(second),
            (third != second).then_some(third),
        ];
        distinct.into_iter().flatten()
    }

    /// The placement as one number in a decision's encoding: the partition count in the low
    /// 32 bits, the kind above (0 for by id, so decisions written before placements existed
    /// read as by id).
    pub fn to_u64(self) -> u64 {
        let kind: u64 = match self.kind {
            PlacementKind::ById => 0,
            PlacementKind::ByLedger => 1,
        };
        kind << 32 | u64::from(self.partitions)
    }

    pub fn from_u64(value: u64) -> Option<Placement> {
        let kind = match value >> 32 {
            0 => PlacementKind::ById,
            1 => PlacementKind::ByLedger,
            _ => return None,
        };
        let partitions = value as u32;
        (partitions > 0).then_some(Placement { kind, partitions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapping_is_fixed() {
        // These values are part of the data format: changing them strands stored records.
        assert_eq!(partition_of(1, 16), partition_of(1, 16));
        let sample: Vec<u32> = (1..=8u128).map(|id| partition_of(id, 16)).collect();
        assert_eq!(sample, FIXED_SAMPLE);
    }

    const FIXED_SAMPLE: [u32; 8] = [12, 7, 14, 5, 5, 3, 13, 7];

    #[test]
    fn sequential_and_high_bit_ids_spread_evenly() {
        for ids in [
            (1..=16_000u128).collect::<Vec<_>>(),
            (1..=16_000u128).map(|i| i << 64).collect(),
        ] {
            let mut counts = [0u32; 16];
            for id in ids {
                counts[partition_of(id, 16) as usize] += 1;
            }
            assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
        }
    }

    #[test]
    fn ledgers_spread_and_the_ledger_mapping_is_fixed() {
        let sample: Vec<u32> = (1..=8u32).map(|l| ledger_partition(l, 16)).collect();
        assert_eq!(sample, LEDGER_SAMPLE);
        let mut counts = [0u32; 16];
        for ledger in 1..=16_000u32 {
            counts[ledger_partition(ledger, 16) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
        for placement in [
            Placement::new(PlacementKind::ById, 16),
            Placement::new(PlacementKind::ByLedger, 5),
        ] {
            assert_eq!(Placement::from_u64(placement.to_u64()), Some(placement));
        }
        assert_eq!(
            Placement::from_u64(16),
            Some(Placement::new(PlacementKind::ById, 16))
        );
        assert_eq!(Placement::from_u64(2 << 32 | 16), None);
        assert_eq!(Placement::from_u64(1 << 32), None);
    }

    const LEDGER_SAMPLE: [u32; 8] = [14, 14, 9, 1, 3, 12, 11, 1];
}
