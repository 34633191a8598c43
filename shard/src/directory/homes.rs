//! [`IdHomes`]: a partition's part of the id directory, one [`IdDirectory`] per id space, as
//! the partition's state machine holds it (changed by its log's `Claim` and `Settle` entries,
//! written into its snapshots).

use super::{Bucket, ClaimAnswer, DirectoryCommand, IdDirectory, IdKind, Owner, LEASE_BUCKETS};
use crate::decoder::Decoder;

/// Size of one snapshot entry: id u128, owner tag u8, partition u32, round u64.
const ENTRY_SIZE: usize = 16 + 1 + 4 + 8;
const OWNER_CLAIMED: u8 = 1;
const OWNER_CONFIRMED: u8 = 2;
/// A lease bucket in a snapshot: tag u8, partition u32, ids or round u64.
const BUCKET_SOLE: u8 = 0;
const BUCKET_MIXED: u8 = 1;
const BUCKET_LEASED: u8 = 2;
const BUCKET_RELEASED: u8 = 3;
/// A sole bucket's owner when it has none.
const NO_OWNER: u32 = u32::MAX;

/// The directories of the ids homed in one partition: accounts' and transfers'.
pub struct IdHomes {
    directories: [IdDirectory; 2],
}

impl IdHomes {
    /// The homes of `partition` among `partitions` (0 and 1 both mean one partition).
    pub fn new(partition: u32, partitions: u32, seed: u64) -> IdHomes {
        let partitions = partitions.max(1);
        IdHomes {
            directories: IdKind::ALL.map(|_| IdDirectory::new(partition, partitions, seed)),
        }
    }

    pub fn directory(&self, kind: IdKind) -> &IdDirectory {
        &self.directories[kind as usize]
    }

    /// Applies one entry of the home's log (see [`IdDirectory::apply`]).
    pub fn apply(
        &mut self,
        kind: IdKind,
        command: &DirectoryCommand,
        answers: &mut Vec<ClaimAnswer>,
    ) {
        self.directories[kind as usize].apply(command, answers);
    }

    /// The same homes leasing a bucket once it holds `ids` of one partition's ids.
    pub fn with_lease_min_ids(self, ids: u32) -> IdHomes {
        IdHomes {
            directories: self.directories.map(|d| d.with_lease_min_ids(ids)),
        }
    }

    /// Appends both directories: per kind, `count u64`, then `count` entries in the order
    /// their ids were first claimed, then its [`LEASE_BUCKETS`] lease buckets (`tag u8 |
    /// partition u32 | ids or round u64`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        for directory in &self.directories {
            out.extend_from_slice(&(directory.len() as u64).to_le_bytes());
            for (id, owner) in directory.entries() {
                let (tag, partition, round) = match owner {
                    Owner::Claimed { partition, round } => (OWNER_CLAIMED, partition, round),
                    Owner::Confirmed(partition) => (OWNER_CONFIRMED, partition, 0),
                };
                out.extend_from_slice(&id.to_le_bytes());
                out.push(tag);
                out.extend_from_slice(&partition.to_le_bytes());
                out.extend_from_slice(&round.to_le_bytes());
            }
            for bucket in directory.buckets() {
                let (tag, partition, value) = match *bucket {
                    Bucket::Sole { owner, ids } => {
                        (BUCKET_SOLE, owner.unwrap_or(NO_OWNER), u64::from(ids))
                    }
                    Bucket::Mixed => (BUCKET_MIXED, 0, 0),
                    Bucket::Leased { holder, round } => (BUCKET_LEASED, holder, round),
                    Bucket::Released { holder, round } => (BUCKET_RELEASED, holder, round),
                };
                out.push(tag);
                out.extend_from_slice(&partition.to_le_bytes());
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
    }

    /// Reads what [`IdHomes::encode`] wrote into the empty `self`; the bytes read. Without
    /// `buckets` (a snapshot older than format 6), a bucket holding an id is mixed.
    pub fn decode(&mut self, bytes: &[u8], buckets: bool) -> Result<usize, &'static str> {
        let mut reader = Decoder::new(bytes);
        for directory in &mut self.directories {
            for _ in 0..reader.count(ENTRY_SIZE)? {
                let id = reader.u128()?;
                let tag = reader.u8()?;
                let partition = reader.u32()?;
                let round = reader.u64()?;
                let owner = match tag {
                    OWNER_CLAIMED => Owner::Claimed { partition, round },
                    OWNER_CONFIRMED if round == 0 => Owner::Confirmed(partition),
                    _ => return Err("unknown directory owner"),
                };
                directory.restore_entry(id, owner)?;
            }
            if !buckets {
                directory.restore_buckets_unknown();
                continue;
            }
            for bucket in 0..LEASE_BUCKETS {
                let tag = reader.u8()?;
                let partition = reader.u32()?;
                let value = reader.u64()?;
                let state = match (tag, partition) {
                    (BUCKET_SOLE, NO_OWNER) if value == 0 => Bucket::Sole {
                        owner: None,
                        ids: 0,
                    },
                    (BUCKET_SOLE, owner) => Bucket::Sole {
                        owner: Some(owner),
                        ids: u32::try_from(value).map_err(|_| "a bucket's count out of range")?,
                    },
                    (BUCKET_MIXED, 0) if value == 0 => Bucket::Mixed,
                    (BUCKET_LEASED, holder) => Bucket::Leased {
                        holder,
                        round: value,
                    },
                    (BUCKET_RELEASED, holder) => Bucket::Released {
                        holder,
                        round: value,
                    },
                    _ => return Err("unknown lease bucket"),
                };
                directory.restore_bucket(bucket, state)?;
            }
        }
        Ok(reader.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition_of;

    #[test]
    fn homes_round_trip_through_their_encoding_and_keep_the_id_spaces_apart() {
        let mut homes = IdHomes::new(1, 3, 9);
        let ids: Vec<u128> = (1u128..)
            .filter(|id| partition_of(*id, 3) == 1)
            .take(5)
            .collect();
        let mut answers = Vec::new();
        let claim = |claimant, ids: &[u128]| DirectoryCommand::Claim {
            claimant,
            round: 4,
            priority: 4,
            ids: ids.to_vec(),
        };
        homes.apply(IdKind::Account, &claim(2, &ids), &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Granted; 5]);
        // The same ids as transfers are another partition's, uncontested.
        homes.apply(IdKind::Transfer, &claim(0, &ids[..2]), &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Granted; 2]);
        let lease = DirectoryCommand::Lease {
            holder: 0,
            round: 6,
            buckets: vec![crate::directory::lease_bucket(ids[0], 3)],
        };
        let mut homes = homes.with_lease_min_ids(1);
        homes.apply(IdKind::Transfer, &lease, &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Granted]);
        let mut bytes = Vec::new();
        homes.encode(&mut bytes);
        let mut restored = IdHomes::new(1, 3, 5);
        assert_eq!(restored.decode(&bytes, true), Ok(bytes.len()));
        for kind in IdKind::ALL {
            let entries: Vec<_> = homes.directory(kind).entries().collect();
            let again: Vec<_> = restored.directory(kind).entries().collect();
            assert_eq!(entries, again);
            let buckets = homes.directory(kind).buckets();
            assert_eq!(buckets, restored.directory(kind).buckets());
        }
        // Damage is refused, never taken in.
        for cut in [0, 7, 8 + ENTRY_SIZE - 1, bytes.len() - 1] {
            let mut fresh = IdHomes::new(1, 3, 5);
            assert!(fresh.decode(&bytes[..cut], true).is_err(), "cut at {cut}");
        }
        let mut bad_owner = bytes.clone();
        bad_owner[8 + 16] = 7;
        assert!(IdHomes::new(1, 3, 5).decode(&bad_owner, true).is_err());
        let mut elsewhere = IdHomes::new(0, 3, 5);
        assert_eq!(
            elsewhere.decode(&bytes, true),
            Err("a directory id that is zero or homed elsewhere")
        );
    }

    /// A snapshot older than format 6 has no buckets: a bucket holding an id reads as mixed
    /// (its history of contests is unknown), an empty one as empty.
    #[test]
    fn buckets_of_an_older_snapshot_read_as_mixed_where_they_hold_ids() {
        let mut homes = IdHomes::new(1, 3, 9);
        let ids = crate::directory::tests::in_bucket(1, 2, 3, 2);
        let claim = DirectoryCommand::Claim {
            claimant: 2,
            round: 4,
            priority: 4,
            ids,
        };
        homes.apply(IdKind::Account, &claim, &mut Vec::new());
        let mut bytes = Vec::new();
        homes.encode(&mut bytes);
        // The same bytes without the buckets, as formats 4 and 5 wrote them.
        let entries = 8 + 2 * ENTRY_SIZE;
        let buckets = usize::from(LEASE_BUCKETS) * 13;
        let mut old = bytes[..entries].to_vec();
        old.extend_from_slice(&bytes[entries + buckets..entries + buckets + 8]);
        let mut restored = IdHomes::new(1, 3, 5);
        assert_eq!(restored.decode(&old, false), Ok(old.len()));
        let accounts = restored.directory(IdKind::Account);
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts.bucket(2), Bucket::Mixed);
        assert_eq!(accounts.bucket(3), Bucket::EMPTY);
        assert!(!accounts.leasable(2, 2));
    }
}
