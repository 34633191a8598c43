//! The id directory: which partition owns each account and transfer id of the cluster, so that
//! ids stay unique when records are placed by ledger (`docs/transactions.md`, design D).
//!
//! Every id has a *home*, `partition_of(id, P)`. The home does not store the record, only who
//! owns the id. Three parts, each pure (no clock, no I/O; time comes in as `now_ms`):
//!
//! - [`IdDirectory`]: a home's state, changed only by [`DirectoryCommand`]s applied in the
//!   order of the home's log, so every replica of the home holds the same map.
//! - [`Resolutions`] (`resolutions.rs`): what a home's leader does, in memory, when a claim meets an id another
//!   partition claimed before. It asks that partition whether it holds the id, settles the
//!   answer through the log, and answers the claimant. It returns [`HomeAction`]s for a driver
//!   to perform.
//! - [`ClaimRound`] (`claim_round.rs`): the claimant's side, for one batch: one claim per home, resent until every
//!   home answered, then an answer for every id.
//!
//! A partition answers "do you hold this id?" with [`holder_verdict`].
//!
//! Protocol order:
//! 1. The claimant (the ledger partition `L` about to run a batch) claims the batch's ids it
//!    does not hold itself, one message per home.
//! 2. A home appends the claim to its log and answers once the entry is durable. `L` runs the
//!    batch only with every answer in hand, so a duplicate id gets an exact `exists_*` result.
//! 3. `L` acknowledges its batch only once its own entry is durable too. The claims are
//!    already durable, so a home that crashes cannot forget an id that `L` acknowledged.
//!
//! Invariants:
//! - An id is [`Owner::Confirmed`] only once its holder said it holds it. A holder never takes
//!   that back: records are never removed.
//! - An entry moves from `Claimed { h, round }` to another partition only on `h`'s verdict
//!   that it lacks the id: the id is not in its ledger, no batch of its own names it, and no
//!   earlier leader's entry can still commit. The verdict counts only while the entry is still
//!   `Claimed { h, round }`: a newer claim of `h` (a batch begun after the verdict) makes it
//!   stale. So two partitions never both hold an id.
//! - Claims are idempotent: claiming an id again for the same partition changes nothing.
//!
//! Callers: a partition's ledger holds its [`IdHomes`] (changed by the log's `Claim` and
//! `Settle` entries, in its snapshot); the node's `id_directory` module drives the rest on each
//! partition's core, through a transport. Under placement by ledger a batch's new ids are
//! claimed before it runs (the node's `CoreRequest::WriteLocal`, and the coordinator before
//! its decision); under placement by id nothing claims.
//! `tests/directory.rs` drives all three parts in a seeded simulation of partitions that crash,
//! lose leaders and reorder messages.

mod claim_round;
mod homes;
mod resolutions;

use crate::id_index::IdIndex;
use crate::limits::RECORDS_MAX;
use crate::partitioning::partition_of;

pub use claim_round::ClaimRound;
pub use homes::IdHomes;
pub use resolutions::Resolutions;

/// Most ids one claim carries: a batch's events, each naming at most three ids (the record and
/// two accounts), which is more than any one home receives from one batch.
pub const CLAIM_IDS_MAX: usize = 3 * kassa_wire::BATCH_EVENTS_MAX;
/// How long a claimant waits for a home's answer before it claims again (the home may have
/// lost its leader, and with it the claims it was resolving).
pub const CLAIM_RETRY_MS: u64 = 200;
/// How long a batch that yielded an id to an older batch waits before it claims again, so
/// that the older batch's settle usually reaches the home before the new claim (which would
/// make the verdict stale and the older batch ask again).
pub const CLAIM_YIELD_BACKOFF_MS: u64 = 50;
/// How long a home waits before asking a holder again that answered "not yet".
pub const ASK_RETRY_MS: u64 = 20;
/// How long a home waits for a holder's verdict before it asks again (the question or the
/// verdict may have been lost).
pub const ASK_TIMEOUT_MS: u64 = 200;
/// How long a home keeps resolving a contested id for a claimant that stopped claiming it
/// (its batch is gone): a live batch claims its unanswered ids again every
/// [`CLAIM_RETRY_MS`]. Without this, a resolution for a batch that no longer exists could keep
/// making younger batches yield.
pub const WAITING_TTL_MS: u64 = 3 * CLAIM_RETRY_MS;
/// Most contested ids a home resolves at once; further claims of contested ids wait for the
/// claimant's retry.
pub const RESOLUTIONS_MAX: usize = 65_536;

/// The two id spaces: an account and a transfer may have the same id, so each has its own
/// directory and its own claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum IdKind {
    Account = 0,
    Transfer = 1,
}

impl IdKind {
    pub const ALL: [IdKind; 2] = [IdKind::Account, IdKind::Transfer];

    pub fn from_u8(byte: u8) -> Option<IdKind> {
        match byte {
            0 => Some(IdKind::Account),
            1 => Some(IdKind::Transfer),
            _ => None,
        }
    }
}

/// Who owns an id, as its home knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Claimed by this partition for a batch that may or may not have committed; `round` is
    /// the latest of its claim rounds that claimed the id here. A verdict names the round it
    /// answers for, so a verdict overtaken by a newer claim changes nothing.
    Claimed { partition: u32, round: u64 },
    /// This partition holds the record (or the id's failure).
    Confirmed(u32),
}

impl Owner {
    pub fn partition(self) -> u32 {
        match self {
            Owner::Claimed { partition, .. } | Owner::Confirmed(partition) => partition,
        }
    }
}

/// A home's answer for one claimed id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimAnswer {
    /// The id is the claimant's: new, or claimed by it before.
    Granted,
    /// Another partition holds the id: the claimant answers `exists*` from its record.
    OwnedBy(u32),
    /// Another partition claimed the id (in its round `round`) and may hold it: the home must
    /// ask it first.
    Contested { holder: u32, round: u64 },
}

/// A holder's answer to "do you hold this id?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It holds the id, for good.
    Holds,
    /// It does not hold the id and never will under that claim.
    Lacks,
    /// It cannot tell yet (a batch naming the id is in flight, or its leader has not committed
    /// in its term): ask again.
    NotYet,
}

/// What changes a home's directory; entries of the home's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectoryCommand {
    /// `claimant` claims `ids` (each at most once, all homed here) for its claim round
    /// `round`, which the answers name. `priority` orders contending batches (lower is
    /// older; unique in the cluster, kept when a batch claims again).
    Claim {
        claimant: u32,
        round: u64,
        priority: u64,
        ids: Vec<u128>,
    },
    /// `holder` answered `verdict` (never [`Verdict::NotYet`]) for `id`, which it claimed in
    /// `holder_round` and which `claimant` wants for its round `round`; the claim is then
    /// decided again for `claimant`.
    Settle {
        id: u128,
        holder: u32,
        holder_round: u64,
        verdict: Verdict,
        claimant: u32,
        round: u64,
    },
}

/// How many ids ahead a claim asks the CPU to fetch their index slots.
const PREFETCH_AHEAD: usize = 16;

/// One home's map from id to owner: the ledger's open-addressing id index, pointing into a
/// table of owners.
pub struct IdDirectory {
    /// This home's partition and the cluster's partition count.
    partition: u32,
    partitions: u32,
    index: IdIndex,
    /// Owners, in the order their ids were first claimed.
    owners: Vec<Owner>,
    /// The ids of `owners`, position for position (the index maps ids to positions only).
    ids: Vec<u128>,
}

impl IdDirectory {
    pub fn new(partition: u32, partitions: u32, seed: u64) -> IdDirectory {
        assert!(partition < partitions);
        IdDirectory {
            partition,
            partitions,
            index: IdIndex::with_capacity(0, seed),
            owners: Vec::new(),
            ids: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Who owns `id`, if anybody claimed it.
    pub fn owner(&self, id: u128) -> Option<Owner> {
        let position = self.index.get(id)?;
        Some(self.owners[position as usize])
    }

    /// Every id with its owner, in the order the ids were first claimed (a snapshot's order).
    pub fn entries(&self) -> impl Iterator<Item = (u128, Owner)> + '_ {
        self.owners
            .iter()
            .enumerate()
            .map(|(position, owner)| (self.ids[position], *owner))
    }

    /// Adds `id`, owned by `owner`, as read back from a snapshot: refused if the id is 0, not
    /// homed here, already present, or owned by a partition outside the cluster.
    pub fn restore_entry(&mut self, id: u128, owner: Owner) -> Result<(), &'static str> {
        if id == 0 || partition_of(id, self.partitions) != self.partition {
            return Err("a directory id that is zero or homed elsewhere");
        }
        if owner.partition() >= self.partitions {
            return Err("a directory owner outside the cluster");
        }
        if self.index.get(id).is_some() {
            return Err("a directory id listed twice");
        }
        if self.owners.len() >= RECORDS_MAX {
            return Err("more directory ids than a home holds");
        }
        self.index.insert(id, self.owners.len() as u32);
        self.owners.push(owner);
        self.ids.push(id);
        Ok(())
    }

    /// Applies one entry of the home's log; the answers, one per id (`Claim`) or one
    /// (`Settle`), in the command's order.
    pub fn apply(&mut self, command: &DirectoryCommand, answers: &mut Vec<ClaimAnswer>) {
        answers.clear();
        match command {
            DirectoryCommand::Claim {
                claimant,
                round,
                ids,
                ..
            } => {
                assert!(ids.len() <= CLAIM_IDS_MAX);
                assert!(*claimant < self.partitions);
                for (at, id) in ids.iter().enumerate() {
                    if let Some(ahead) = ids.get(at + PREFETCH_AHEAD) {
                        self.index.prefetch(*ahead);
                    }
                    answers.push(self.claim(*claimant, *round, *id));
                }
            }
            DirectoryCommand::Settle {
                id,
                holder,
                holder_round,
                verdict,
                claimant,
                round,
            } => {
                let claimed = Owner::Claimed {
                    partition: *holder,
                    round: *holder_round,
                };
                answers.push(self.settle(*id, claimed, *verdict, *claimant, *round));
            }
        }
    }

    fn claim(&mut self, claimant: u32, round: u64, id: u128) -> ClaimAnswer {
        assert_ne!(id, 0, "id 0 is never claimed");
        assert_eq!(partition_of(id, self.partitions), self.partition);
        let position = match self.index.get(id) {
            Some(position) => position as usize,
            None => {
                let position = self.owners.len();
                assert!(
                    position < RECORDS_MAX,
                    "a home holds at most {RECORDS_MAX} ids"
                );
                self.index.insert(id, position as u32);
                self.owners.push(Owner::Claimed {
                    partition: claimant,
                    round,
                });
                self.ids.push(id);
                position
            }
        };
        match &mut self.owners[position] {
            Owner::Confirmed(holder) if *holder == claimant => ClaimAnswer::Granted,
            Owner::Confirmed(holder) => ClaimAnswer::OwnedBy(*holder),
            Owner::Claimed {
                partition,
                round: latest,
            } if *partition == claimant => {
                *latest = (*latest).max(round);
                ClaimAnswer::Granted
            }
            Owner::Claimed { partition, round } => ClaimAnswer::Contested {
                holder: *partition,
                round: *round,
            },
        }
    }

    /// Records a holder's verdict on `id` if the id is still `claimed` as it was when the
    /// holder was asked, then decides the claim of `claimant` again (another resolution, or a
    /// newer claim of the holder, may have come first).
    fn settle(
        &mut self,
        id: u128,
        claimed: Owner,
        verdict: Verdict,
        claimant: u32,
        round: u64,
    ) -> ClaimAnswer {
        assert_ne!(
            claimed.partition(),
            claimant,
            "a partition never contests its own claim"
        );
        let position = self.index.get(id).expect("a settled id was claimed");
        let owner = &mut self.owners[position as usize];
        if *owner == claimed {
            *owner = match verdict {
                Verdict::Holds => Owner::Confirmed(claimed.partition()),
                Verdict::Lacks => Owner::Claimed {
                    partition: claimant,
                    round,
                },
                Verdict::NotYet => unreachable!("only final verdicts are logged"),
            };
        }
        self.claim(claimant, round, id)
    }
}

/// What a partition knows of an id it is asked about.
#[derive(Clone, Copy, Debug)]
pub struct HolderState {
    /// Its ledger has the id (a record, or the id of a failed event).
    pub holds: bool,
    /// A batch it proposed to its log, not yet applied, names the id.
    pub proposed: bool,
    /// The priority of its batch that is still claiming the id, if one is.
    pub claiming: Option<u64>,
    /// Its leader has committed an entry of its own term, and has confirmed after the
    /// question came that it still leads (a linearizable read): no entry of an earlier leader
    /// can still commit, and no later leader is storing ids it does not know of. A deposed
    /// leader that answered from its own view would hand over ids the new leader stores
    /// (`tests/directory.rs` fails without this).
    pub term_committed: bool,
}

/// How a partition answers "do you hold `id`?" for a claimant of priority `asker` (lower is
/// older). A batch still claiming the id yields it to an older batch and waits for a younger
/// one (wound-wait), so batches contesting each other's ids never wait in a circle. The
/// `bool` is true when the partition's claiming batch yields: it must drop its round and claim
/// again in a new one (keeping its priority), because the id may be handed over.
pub fn holder_verdict(state: HolderState, asker: u64) -> (Verdict, bool) {
    if state.holds {
        return (Verdict::Holds, false);
    }
    if !state.term_committed || state.proposed {
        return (Verdict::NotYet, false);
    }
    match state.claiming {
        Some(own) if asker < own => (Verdict::Lacks, true),
        Some(_) => (Verdict::NotYet, false),
        None => (Verdict::Lacks, false),
    }
}
/// What a home's leader asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HomeAction {
    /// Ask `holder` whether it holds `ids`.
    /// Ask `holder` whether it holds each id, which it claimed in the round named with it, for
    /// a claimant of the priority named last. Its verdicts must name the same rounds: a verdict
    /// is about the claim it was asked about, and one that arrives after a newer claim of the
    /// holder must not count for it.
    Ask {
        holder: u32,
        ids: Vec<(u128, u64, u64)>,
    },
    /// Append this entry to the home's log (then call [`Resolutions::applied`] with its answer).
    Append(DirectoryCommand),
    /// Tell `claimant` the final answer for `id` in its round `round`. An answer for an
    /// older round must be ignored: the id may have changed hands since.
    Answer {
        claimant: u32,
        round: u64,
        id: u128,
        answer: ClaimAnswer,
    },
}
#[cfg(test)]
mod tests {
    use super::*;

    fn homed(home: u32, partitions: u32, count: usize) -> Vec<u128> {
        (1u128..)
            .filter(|id| partition_of(*id, partitions) == home)
            .take(count)
            .collect()
    }

    #[test]
    fn a_claim_is_granted_once_and_contested_by_others_until_settled() {
        let mut directory = IdDirectory::new(2, 4, 7);
        let ids = homed(2, 4, 3);
        let mut answers = Vec::new();
        let claim = |claimant, ids: &[u128]| DirectoryCommand::Claim {
            claimant,
            round: 1,
            priority: u64::from(claimant),
            ids: ids.to_vec(),
        };
        directory.apply(&claim(1, &ids), &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Granted; 3]);
        directory.apply(&claim(1, &ids), &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Granted; 3], "idempotent");
        directory.apply(&claim(3, &ids[..2]), &mut answers);
        let contested = ClaimAnswer::Contested {
            holder: 1,
            round: 1,
        };
        assert_eq!(answers, vec![contested; 2]);
        let settle = |id, verdict| DirectoryCommand::Settle {
            id,
            holder: 1,
            holder_round: 1,
            verdict,
            claimant: 3,
            round: 1,
        };
        directory.apply(&settle(ids[0], Verdict::Holds), &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::OwnedBy(1)]);
        assert_eq!(directory.owner(ids[0]), Some(Owner::Confirmed(1)));
        directory.apply(&settle(ids[1], Verdict::Lacks), &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Granted]);
        let claimed_by_3 = Owner::Claimed {
            partition: 3,
            round: 1,
        };
        assert_eq!(directory.owner(ids[1]), Some(claimed_by_3));
        // A late verdict of the old holder changes nothing.
        directory.apply(&settle(ids[1], Verdict::Holds), &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Granted]);
        assert_eq!(directory.owner(ids[1]), Some(claimed_by_3));
    }

    /// Found by `tests/directory.rs`: a holder says it lacks an id, then claims it again in a
    /// new batch before its verdict is settled. The stale verdict must not hand the id over.
    #[test]
    fn a_verdict_overtaken_by_the_holders_newer_claim_changes_nothing() {
        let mut directory = IdDirectory::new(0, 3, 7);
        let mut answers = Vec::new();
        let id = homed(0, 3, 1)[0];
        let claim = |claimant, round| DirectoryCommand::Claim {
            claimant,
            round,
            priority: u64::from(claimant),
            ids: vec![id],
        };
        directory.apply(&claim(1, 10), &mut answers);
        directory.apply(&claim(2, 3), &mut answers);
        let contested = ClaimAnswer::Contested {
            holder: 1,
            round: 10,
        };
        assert_eq!(answers, vec![contested]);
        // Partition 1 answers "lacks" for round 10, then claims again in round 11.
        directory.apply(&claim(1, 11), &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Granted]);
        let stale = DirectoryCommand::Settle {
            id,
            holder: 1,
            holder_round: 10,
            verdict: Verdict::Lacks,
            claimant: 2,
            round: 3,
        };
        directory.apply(&stale, &mut answers);
        let contested = ClaimAnswer::Contested {
            holder: 1,
            round: 11,
        };
        assert_eq!(answers, vec![contested], "asked again, about round 11");
        let owner = Owner::Claimed {
            partition: 1,
            round: 11,
        };
        assert_eq!(directory.owner(id), Some(owner));
    }

    #[test]
    fn a_holder_lacks_an_id_only_for_good_and_yields_only_to_older_batches() {
        let state = |holds, proposed, claiming, term_committed| HolderState {
            holds,
            proposed,
            claiming,
            term_committed,
        };
        let verdict = |s, asker| holder_verdict(s, asker);
        assert_eq!(
            verdict(state(true, true, None, false), 5),
            (Verdict::Holds, false)
        );
        assert_eq!(
            verdict(state(false, true, None, true), 5),
            (Verdict::NotYet, false)
        );
        assert_eq!(
            verdict(state(false, false, None, false), 5),
            (Verdict::NotYet, false)
        );
        assert_eq!(
            verdict(state(false, false, None, true), 5),
            (Verdict::Lacks, false)
        );
        // A batch still claiming the id: an older asker wins it, a younger one waits.
        let claiming = state(false, false, Some(5), true);
        assert_eq!(verdict(claiming, 4), (Verdict::Lacks, true));
        assert_eq!(verdict(claiming, 6), (Verdict::NotYet, false));
        // Once proposed, nobody wins it away.
        assert_eq!(
            verdict(state(false, true, Some(5), true), 4),
            (Verdict::NotYet, false)
        );
    }
}
