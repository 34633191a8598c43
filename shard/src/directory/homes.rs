//! [`IdHomes`]: a partition's part of the id directory, one [`IdDirectory`] per id space, as
//! the partition's state machine holds it (changed by its log's `Claim` and `Settle` entries,
//! written into its snapshots).

use super::{ClaimAnswer, DirectoryCommand, IdDirectory, IdKind, Owner};
use crate::txn::Decoder;

/// Size of one snapshot entry: id u128, owner tag u8, partition u32, round u64.
const ENTRY_SIZE: usize = 16 + 1 + 4 + 8;
const OWNER_CLAIMED: u8 = 1;
const OWNER_CONFIRMED: u8 = 2;

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

    /// Appends both directories: per kind, `count u64`, then `count` entries in the order
    /// their ids were first claimed.
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
        }
    }

    /// Reads what [`IdHomes::encode`] wrote into the empty `self`; the bytes read.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<usize, &'static str> {
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
        let mut bytes = Vec::new();
        homes.encode(&mut bytes);
        let mut restored = IdHomes::new(1, 3, 5);
        assert_eq!(restored.decode(&bytes), Ok(bytes.len()));
        for kind in IdKind::ALL {
            let entries: Vec<_> = homes.directory(kind).entries().collect();
            let again: Vec<_> = restored.directory(kind).entries().collect();
            assert_eq!(entries, again);
        }
        // Damage is refused, never taken in.
        for cut in [0, 7, 8 + ENTRY_SIZE - 1, bytes.len() - 1] {
            let mut fresh = IdHomes::new(1, 3, 5);
            assert!(fresh.decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_owner = bytes.clone();
        bad_owner[8 + 16] = 7;
        assert!(IdHomes::new(1, 3, 5).decode(&bad_owner).is_err());
        let mut elsewhere = IdHomes::new(0, 3, 5);
        assert_eq!(
            elsewhere.decode(&bytes),
            Err("a directory id that is zero or homed elsewhere")
        );
    }
}
