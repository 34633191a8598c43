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
//! **Leases.** A claim costs a write of the home's log before the batch runs. When one partition
//! is the only one storing ids in a *bucket* of a home ([`lease_bucket`], [`LEASE_BUCKETS`] per
//! home and id space), the home may lease the bucket to it (a `Lease` entry): the holder then
//! stores fresh ids of the bucket without claiming them, and the home no longer knows every id
//! of the bucket. The rules that keep ids unique ([`Bucket`]):
//! - A home leases a bucket only while every id it knows there is the holder's
//!   ([`Bucket::Sole`], at least [`LEASE_MIN_IDS`] of them), and never again once another
//!   partition claimed in it.
//! - Another partition's claim in a leased bucket ends the lease in the same apply
//!   ([`Bucket::Released`]). A fresh id it claims there is recorded as the holder's, claimed in
//!   the lease's round, and contested: the home asks the holder, as for any contested id.
//! - The holder stops using a lease before it answers any question about its bucket
//!   ([`HeldLeases::asked`]); its answer is then the usual verdict from its ledger. Leases are
//!   its leader's memory only: a new leader holds none until it asks again.
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
mod leases;
mod resolutions;

use crate::id_index::IdIndex;
use crate::limits::RECORDS_MAX;
use crate::partitioning::{id_hash, partition_of};

pub use claim_round::ClaimRound;
pub use homes::IdHomes;
pub use leases::{HeldLeases, LeaseAnswer, LeaseRequest, LEASE_REQUEST_TIMEOUT_MS};
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

/// Lease buckets per home and id space.
pub const LEASE_BUCKETS: u16 = 64;
/// Ids a bucket must hold, all of one partition's, before its home leases it to that
/// partition: a lease then goes to a ledger that has been storing ids there alone for a while,
/// not to whichever ledger happened to come first.
pub const LEASE_MIN_IDS: u32 = 16;
/// How long a partition waits before it asks again for a lease its home answered "not yet".
pub const LEASE_RETRY_MS: u64 = 100;

/// The lease bucket of `id` at its home: bits of the id's hash other than those that chose
/// the home.
pub fn lease_bucket(id: u128, partitions: u32) -> u16 {
    lease_slot(id, partitions).1
}

/// `id`'s home ([`partition_of`]) and lease bucket there, from one hash.
pub fn lease_slot(id: u128, partitions: u32) -> (u32, u16) {
    assert!(partitions > 0);
    let hash = id_hash(id);
    let partitions = u64::from(partitions);
    let bucket = (hash / partitions) % u64::from(LEASE_BUCKETS);
    ((hash % partitions) as u32, bucket as u16)
}

/// What a home knows of one lease bucket; changed only by its log's entries, in its snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// Every id of the bucket the home knows is `owner`'s (none yet if `None`): `ids` of them
    /// (saturating).
    Sole { owner: Option<u32>, ids: u32 },
    /// Ids of several partitions: never leased.
    Mixed,
    /// Leased to `holder`, named by its claim round `round`: it stores fresh ids of the bucket
    /// without claiming them.
    Leased { holder: u32, round: u64 },
    /// Was leased to `holder` (round `round`) until another partition claimed in it. The
    /// holder may hold ids of the bucket the home does not know, so a fresh id another claims
    /// is contested with the holder as if it had claimed it in `round`. Never leased again.
    Released { holder: u32, round: u64 },
}

impl Bucket {
    const EMPTY: Bucket = Bucket::Sole {
        owner: None,
        ids: 0,
    };
}

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
    /// A lease the home does not give (only a `Lease` entry answers this).
    Refused,
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
    /// `holder` asks, in its claim round `round`, for the lease of `buckets` (each at most
    /// once, below [`LEASE_BUCKETS`]): answered [`ClaimAnswer::Granted`] or
    /// [`ClaimAnswer::Refused`] per bucket.
    Lease {
        holder: u32,
        round: u64,
        buckets: Vec<u16>,
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
    /// The lease buckets, [`LEASE_BUCKETS`] of them.
    buckets: Vec<Bucket>,
    /// Ids a bucket needs before it is leased ([`LEASE_MIN_IDS`]; tests lower it).
    lease_min_ids: u32,
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
            buckets: vec![Bucket::EMPTY; usize::from(LEASE_BUCKETS)],
            lease_min_ids: LEASE_MIN_IDS,
        }
    }

    /// The same directory leasing a bucket once it holds `ids` of one partition's ids (every
    /// replica of a home must use the same number).
    pub fn with_lease_min_ids(mut self, ids: u32) -> IdDirectory {
        self.lease_min_ids = ids;
        self
    }

    /// The state of lease bucket `bucket`.
    pub fn bucket(&self, bucket: u16) -> Bucket {
        self.buckets[usize::from(bucket)]
    }

    /// Every bucket's state, in bucket order (a snapshot's).
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// Sets a bucket's state as read back from a snapshot: refused if the bucket or a holder
    /// is outside the cluster's bounds.
    pub fn restore_bucket(&mut self, bucket: u16, state: Bucket) -> Result<(), &'static str> {
        let holder = match state {
            Bucket::Sole { owner, .. } => owner,
            Bucket::Mixed => None,
            Bucket::Leased { holder, .. } | Bucket::Released { holder, .. } => Some(holder),
        };
        if bucket >= LEASE_BUCKETS || holder.is_some_and(|h| h >= self.partitions) {
            return Err("a lease bucket or holder outside the cluster");
        }
        self.buckets[usize::from(bucket)] = state;
        Ok(())
    }

    /// How a `Lease` of `bucket` for `holder` would be answered if it were applied now (not
    /// how an entry applied earlier was: the bucket may have become leasable since).
    pub fn lease_answer(&self, holder: u32, bucket: u16) -> LeaseAnswer {
        match self.bucket(bucket) {
            Bucket::Sole { owner: None, .. } => LeaseAnswer::NotYet,
            Bucket::Sole {
                owner: Some(owner),
                ids,
            } if owner == holder => {
                if ids >= self.lease_min_ids {
                    LeaseAnswer::Granted
                } else {
                    LeaseAnswer::NotYet
                }
            }
            Bucket::Leased { holder: leased, .. } if leased == holder => LeaseAnswer::Granted,
            Bucket::Sole { .. }
            | Bucket::Mixed
            | Bucket::Leased { .. }
            | Bucket::Released { .. } => LeaseAnswer::Never,
        }
    }

    /// The answers to a `Lease` of `buckets` for `holder` whose apply answered `applied`
    /// (empty when the request was answered without an entry): granted only where the apply
    /// granted, the others "not yet" or "never" as the buckets stand now. A bucket that became
    /// leasable after the apply refused it is not leased, so it is never answered granted.
    pub fn lease_answers(
        &self,
        holder: u32,
        buckets: &[u16],
        applied: &[ClaimAnswer],
    ) -> Vec<(u16, LeaseAnswer)> {
        let answer =
            |at: usize, bucket: u16| match (applied.get(at), self.lease_answer(holder, bucket)) {
                (Some(ClaimAnswer::Granted), _) => LeaseAnswer::Granted,
                (_, LeaseAnswer::Granted) => LeaseAnswer::NotYet,
                (_, other) => other,
            };
        (buckets.iter().enumerate())
            .map(|(at, bucket)| (*bucket, answer(at, *bucket)))
            .collect()
    }

    /// Whether a `Lease` of `bucket` for `holder` would be granted if applied now.
    pub fn leasable(&self, holder: u32, bucket: u16) -> bool {
        self.lease_answer(holder, bucket) == LeaseAnswer::Granted
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

    /// Sets the buckets of a directory read back from a snapshot of format 5 or older, which
    /// has none: every bucket holding an id is [`Bucket::Mixed`] (never leased), every other
    /// one empty. Deriving owners from the entries would differ from what replaying the log
    /// decided (a claim contested and lost leaves no trace in the entries), and a bucket
    /// thought `Sole` that was not could be leased while a stale verdict hands one of its ids
    /// to another partition.
    pub fn restore_buckets_unknown(&mut self) {
        for id in &self.ids {
            self.buckets[usize::from(lease_bucket(*id, self.partitions))] = Bucket::Mixed;
        }
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
            DirectoryCommand::Lease {
                holder,
                round,
                buckets,
            } => {
                assert!(*holder < self.partitions);
                assert!(buckets.len() <= usize::from(LEASE_BUCKETS));
                for bucket in buckets {
                    answers.push(self.lease(*holder, *round, *bucket));
                }
            }
        }
    }

    fn lease(&mut self, holder: u32, round: u64, bucket: u16) -> ClaimAnswer {
        if !self.leasable(holder, bucket) {
            return ClaimAnswer::Refused;
        }
        let state = &mut self.buckets[usize::from(bucket)];
        let round = match *state {
            Bucket::Leased { round: leased, .. } => round.max(leased),
            _ => round,
        };
        *state = Bucket::Leased { holder, round };
        ClaimAnswer::Granted
    }

    /// A new owner `partition` of an id in `bucket` (a new id, or one handed over).
    fn note_owner(&mut self, bucket: u16, partition: u32) {
        let state = &mut self.buckets[usize::from(bucket)];
        *state = match *state {
            Bucket::Sole { owner: None, .. } => Bucket::Sole {
                owner: Some(partition),
                ids: 1,
            },
            Bucket::Sole {
                owner: Some(owner),
                ids,
            } if owner == partition => Bucket::Sole {
                owner: Some(owner),
                ids: ids.saturating_add(1),
            },
            Bucket::Sole { .. } => Bucket::Mixed,
            Bucket::Leased { holder, round } if holder != partition => {
                Bucket::Released { holder, round }
            }
            other => other,
        };
    }

    fn claim(&mut self, claimant: u32, round: u64, id: u128) -> ClaimAnswer {
        assert_ne!(id, 0, "id 0 is never claimed");
        let (home, bucket) = lease_slot(id, self.partitions);
        assert_eq!(home, self.partition);
        // Another partition's claim ends a lease: the holder is asked before the id can be
        // anybody else's, and stops using the lease before it answers.
        if let Bucket::Leased { holder, round } = self.bucket(bucket) {
            if holder != claimant {
                self.buckets[usize::from(bucket)] = Bucket::Released { holder, round };
            }
        }
        let position = match self.index.get(id) {
            Some(position) => position as usize,
            None => {
                let position = self.owners.len();
                assert!(
                    position < RECORDS_MAX,
                    "a home holds at most {RECORDS_MAX} ids"
                );
                // A fresh id of a bucket leased to another may be that holder's already.
                let owner = match self.bucket(bucket) {
                    Bucket::Released {
                        holder,
                        round: leased,
                    } if holder != claimant => Owner::Claimed {
                        partition: holder,
                        round: leased,
                    },
                    _ => Owner::Claimed {
                        partition: claimant,
                        round,
                    },
                };
                self.note_owner(bucket, owner.partition());
                self.index.insert(id, position as u32);
                self.owners.push(owner);
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
            &mut Owner::Claimed { partition, round } => {
                let contested = ClaimAnswer::Contested {
                    holder: partition,
                    round,
                };
                // A contest in a bucket not leased makes it `Mixed` for good: the holder's
                // verdict may come back long after, stale, and must never meet a lease
                // granted meanwhile (the holder would store the id under the lease while the
                // verdict hands it to the claimant). A confirmed id is never handed over, so
                // a claim of one (a duplicate) leaves the bucket as it is.
                if let Bucket::Sole { .. } = self.bucket(bucket) {
                    self.buckets[usize::from(bucket)] = Bucket::Mixed;
                }
                contested
            }
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
            if verdict == Verdict::Lacks {
                self.note_owner(lease_bucket(id, self.partitions), claimant);
            }
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

    /// A claim of `ids` by `claimant` in its round `round` (its priority too).
    fn claim(claimant: u32, round: u64, ids: &[u128]) -> DirectoryCommand {
        DirectoryCommand::Claim {
            claimant,
            round,
            priority: round,
            ids: ids.to_vec(),
        }
    }

    /// The first `count` ids homed at `home` in lease bucket `bucket`.
    pub(super) fn in_bucket(home: u32, bucket: u16, partitions: u32, count: usize) -> Vec<u128> {
        (1u128..)
            .filter(|id| {
                partition_of(*id, partitions) == home && lease_bucket(*id, partitions) == bucket
            })
            .take(count)
            .collect()
    }

    #[test]
    fn a_bucket_is_leased_only_to_its_sole_owner_and_ends_at_another_claim_for_good() {
        let (home, partitions, bucket) = (1, 4, 3);
        let mut directory = IdDirectory::new(home, partitions, 7).with_lease_min_ids(2);
        let ids = in_bucket(home, bucket, partitions, 6);
        let mut answers = Vec::new();
        let lease = |holder, round| DirectoryCommand::Lease {
            holder,
            round,
            buckets: vec![bucket],
        };
        directory.apply(&lease(2, 5), &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Refused], "an empty bucket");
        directory.apply(&claim(2, 6, &ids[..1]), &mut answers);
        directory.apply(&lease(2, 7), &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Refused], "too few ids");
        directory.apply(&claim(2, 8, &ids[1..2]), &mut answers);
        assert!(!directory.leasable(0, bucket), "only to the sole owner");
        directory.apply(&lease(2, 9), &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Granted]);
        let leased = Bucket::Leased {
            holder: 2,
            round: 9,
        };
        assert_eq!(directory.bucket(bucket), leased);
        // The holder's own claims change nothing.
        directory.apply(&claim(2, 10, &ids[2..3]), &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Granted]);
        assert_eq!(directory.bucket(bucket), leased);
        // Another partition's claim of a fresh id: the holder may hold it, so it is asked.
        directory.apply(&claim(0, 4, &ids[3..4]), &mut answers);
        let contested = ClaimAnswer::Contested {
            holder: 2,
            round: 9,
        };
        assert_eq!(answers, vec![contested]);
        let released = Bucket::Released {
            holder: 2,
            round: 9,
        };
        assert_eq!(directory.bucket(bucket), released);
        directory.apply(&lease(2, 11), &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Refused], "never leased again");
        // The holder lacks it: the claimant gets it.
        let settle = DirectoryCommand::Settle {
            id: ids[3],
            holder: 2,
            holder_round: 9,
            verdict: Verdict::Lacks,
            claimant: 0,
            round: 4,
        };
        directory.apply(&settle, &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Granted]);
        // The holder claiming a fresh id of a released bucket is granted it.
        directory.apply(&claim(2, 12, &ids[4..5]), &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Granted]);
        // A known id of the holder's is still the holder's.
        directory.apply(&claim(3, 5, &ids[..1]), &mut answers);
        let contested = ClaimAnswer::Contested {
            holder: 2,
            round: 6,
        };
        assert_eq!(answers, vec![contested]);
        assert_eq!(directory.bucket(bucket), released);

        // A bucket with two owners is never leased.
        let other = lease_bucket(ids[0], partitions) + 1;
        let mixed = in_bucket(home, other, partitions, 4);
        directory.apply(&claim(2, 13, &mixed[..3]), &mut answers);
        directory.apply(&claim(1, 2, &mixed[3..]), &mut answers);
        assert_eq!(directory.bucket(other), Bucket::Mixed);
        assert!(!directory.leasable(2, other) && !directory.leasable(1, other));
    }

    /// A contest in a bucket ends its leasing before any verdict: a "lacks" about round 1
    /// may arrive after the holder's next leader asked for a lease, and must not hand over an
    /// id of a bucket leased meanwhile (the holder would store it under the lease).
    #[test]
    fn a_contest_ends_a_buckets_leasing_before_its_verdict() {
        let (home, partitions, bucket) = (0, 3, 5);
        let mut directory = IdDirectory::new(home, partitions, 7).with_lease_min_ids(2);
        let ids = in_bucket(home, bucket, partitions, 3);
        let mut answers = Vec::new();
        directory.apply(&claim(1, 1, &ids), &mut answers);
        assert!(directory.leasable(1, bucket));
        directory.apply(&claim(2, 1, &ids[..1]), &mut answers);
        let contested = ClaimAnswer::Contested {
            holder: 1,
            round: 1,
        };
        assert_eq!(answers, vec![contested]);
        assert_eq!(directory.bucket(bucket), Bucket::Mixed);
        // The holder's next leader asks for the lease before the verdict is logged.
        let lease = DirectoryCommand::Lease {
            holder: 1,
            round: 2,
            buckets: vec![bucket],
        };
        directory.apply(&lease, &mut answers);
        assert_eq!(
            answers,
            vec![ClaimAnswer::Refused],
            "contested: never leased"
        );
        let lacks = DirectoryCommand::Settle {
            id: ids[0],
            holder: 1,
            holder_round: 1,
            verdict: Verdict::Lacks,
            claimant: 2,
            round: 1,
        };
        directory.apply(&lacks, &mut answers);
        assert_eq!(answers, vec![ClaimAnswer::Granted]);
        assert_eq!(directory.bucket(bucket), Bucket::Mixed);
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
