//! The id directory's driver on a partition's core: the thin I/O around the pure core in
//! `kassa_shard::directory` (`docs/transactions.md`, design D).
//!
//! Each partition plays three parts, all on its own core:
//! - **home** of the ids `partition_of` gives it: a [`DirectoryMessage::Claim`] becomes a
//!   `Claim` entry of its log; the answers go back once the entry is applied (so durable).
//!   Contested ids are resolved by its [`Resolutions`]: it asks the holder, logs the verdict as
//!   a `Settle` entry, and answers the claimant.
//! - **holder**: asked whether it holds ids, it answers with [`holder_verdict`] from its
//!   ledger, the ids its proposed batches name and the batches still claiming.
//! - **claimant**: [`PartitionDirectory::claim`] runs one batch's [`ClaimRound`] until every
//!   home has answered every id. Ids of buckets a home leased to it ([`HeldLeases`]) are not
//!   claimed: [`PartitionDirectory::use_leases`] counts them as proposed at once, and asks for
//!   the leases that would spare the other ids' claims next time.
//!
//! Partitions reach each other only through a [`Transport`], whose messages may be lost,
//! duplicated or reordered (the protocol resends); nothing here assumes that two partitions
//! share a process. Time comes from the caller (`now_ms`), so the decisions stay in the pure
//! core. What a home decides is in its log; what a leader keeps in memory (resolutions, claim
//! rounds) a new leader rebuilds from the claimants' next claims.

pub mod on_core;

use std::collections::{BTreeMap, HashMap};

use foldhash::fast::FixedState;

use kassa_shard::directory::{
    holder_verdict, ClaimAnswer, ClaimRound, DirectoryCommand, HeldLeases, HolderState, HomeAction,
    IdKind, LeaseAnswer, Resolutions, Verdict, CLAIM_IDS_MAX, LEASE_BUCKETS,
};
use kassa_shard::{partition_of, Command, Ledger, Reply};

/// How often a core looks for claims to resend and holders to ask again.
pub const DIRECTORY_TICK_MS: u64 = 10;
/// Most id comparisons a question may cost by scanning the covered ids' lists; past it they
/// are made a set for the question.
const COVERED_SCAN_MAX: usize = 1 << 16;
/// Claim rounds a leader numbers from one `ClaimEpoch` entry.
const ROUNDS_PER_EPOCH: u64 = 1 << 24;

/// A message between partitions' leaders for the id directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectoryMessage {
    /// A claimant's claim (a [`DirectoryCommand::Claim`]), to the ids' home.
    Claim {
        kind: IdKind,
        claim: DirectoryCommand,
    },
    /// A home's final answers for ids a claimant claimed in its round `round`.
    Answers {
        kind: IdKind,
        round: u64,
        answers: Vec<(u128, ClaimAnswer)>,
    },
    /// A home asks a holder whether it holds ids: `(id, the holder's claim round asked
    /// about, the asking claimant's priority)`.
    Ask {
        kind: IdKind,
        home: u32,
        ids: Vec<(u128, u64, u64)>,
    },
    /// A holder's verdicts, each naming the claim round it was asked about.
    Verdicts {
        kind: IdKind,
        holder: u32,
        verdicts: Vec<(u128, u64, Verdict)>,
    },
    /// A partition asks a home for leases (a [`DirectoryCommand::Lease`]).
    Lease {
        kind: IdKind,
        lease: DirectoryCommand,
    },
    /// A home's answer to the lease request of `round`, per bucket.
    LeaseAnswers {
        kind: IdKind,
        home: u32,
        round: u64,
        answers: Vec<(u16, LeaseAnswer)>,
    },
}

/// How partitions' leaders reach each other: today the cores' queues, later TCP between
/// nodes. A message may be lost (a full queue, a stopped core, a broken connection).
pub trait Transport {
    fn send(&self, partition: u32, message: DirectoryMessage);
}

/// What a partition's leader asks its core to do for the directory.
#[derive(Debug, PartialEq, Eq)]
pub enum DirectoryIo {
    Send(u32, DirectoryMessage),
    /// Append this entry to the partition's own log, then pass its reply to
    /// [`PartitionDirectory::applied`].
    Append(IdKind, DirectoryCommand),
    /// Log a `ClaimEpoch` entry of the current term, then pass the applied index to
    /// [`PartitionDirectory::set_epoch`] (or report [`PartitionDirectory::epoch_failed`]).
    LogEpoch,
    /// The batch whose claims began as this round has its outcome
    /// ([`PartitionDirectory::outcome`]).
    Outcome(u64),
}

/// Where a batch's claims stand.
enum ClaimState {
    Claiming,
    /// Every id has its answer; the ids count as proposed.
    Answered(BTreeMap<u128, ClaimAnswer>),
    /// The batch could not go on claiming; its ids are released.
    Failed(ClaimError),
}

/// Who will store the ids a claim names, and so how long they count as proposed (a holder
/// does not give them up meanwhile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proposer {
    /// A batch of this partition's leader begun in leader term `term`: the write path appends
    /// it in that term or not at all, so its ids are proposed until settled or until the term
    /// ends, whichever comes first.
    Batch { term: u64 },
    /// A cross-partition transaction of this node's coordinator, which holds every partition
    /// it writes locked until it applied there or gave up: its `Decide` and `Apply` entries
    /// may be appended in a later term than its claims, so its ids stay proposed across terms
    /// until settled.
    Transaction,
}

/// A batch's claims in progress.
struct Claiming {
    kind: IdKind,
    /// Who claims: a batch's ids are proposed only in the term it began in.
    proposer: Proposer,
    round: ClaimRound,
    ids: Vec<u128>,
    state: ClaimState,
}

/// A batch's ids that leases cover, named for [`PartitionDirectory::release_covered`].
struct CoveredIds {
    name: u64,
    kind: IdKind,
    ids: Vec<u128>,
}

/// Ids to something, hashed fast (the ids come from clients, but the map is the leader's own
/// bookkeeping of its batches: a client aiming ids at one bucket only slows its own batches).
type Ids<T> = HashMap<u128, T, FixedState>;

/// Most batches of one partition claiming at once; more are refused ([`ClaimError::Busy`]).
/// The write path bounds its batches in flight well below this.
pub const CLAIMS_MAX: usize = 4_096;

/// One partition's directory state in its leader's memory.
pub struct PartitionDirectory {
    partition: u32,
    partitions: u32,
    /// The leader's term: a new term drops the resolutions of the last.
    term: u64,
    /// Claim rounds are `epoch << 24 | count`, where `epoch` is the applied index right after
    /// this leader's `ClaimEpoch` entry: above every entry of earlier leaders, so rounds never
    /// repeat across leaders, a single voter's restarts included (`Command::ClaimEpoch`).
    /// Having one also means every entry of earlier leaders is applied (the epoch's entry came
    /// after them), which a holder needs before it may say "lacks".
    epoch: Option<u64>,
    /// A `ClaimEpoch` was asked for ([`DirectoryIo::LogEpoch`]) and has not come back.
    epoch_requested: bool,
    rounds_started: u64,
    last_priority: u64,
    resolutions: [Resolutions; 2],
    /// Batches claiming or answered and not yet taken, by their first round (the caller's
    /// name for them).
    claims: BTreeMap<u64, Claiming>,
    /// Each claiming batch's current round (it changes when the batch yields an id and
    /// claims again) to its first round: answers name the current one.
    current: HashMap<u64, u64, FixedState>,
    /// Per id space, the ids a batch of this partition is claiming: its priority and first
    /// round. One batch at a time claims an id ([`ClaimError::Overlaps`]).
    claiming: [Ids<(u64, u64)>; 2],
    /// Per id space, the ids of this term's batches whose claims were all answered and that
    /// are not yet settled (applied or given up): a count per id.
    proposed: [Ids<u32>; 2],
    /// Per id space, the ids claimed for this node's cross-partition transactions, answered
    /// and not yet settled: a count per id, kept across terms ([`Proposer::Transaction`]).
    transactions: [Ids<u32>; 2],
    /// This term's batches' ids that leases cover, not yet settled: proposed too. A list per
    /// batch, not a count per id: every batch of a ledger that stores ids alone lands here,
    /// and a question about them is rare (a list is scanned, or made a set for a long one).
    covered: Vec<CoveredIds>,
    /// The name of the next batch's covered ids.
    next_covered: u64,
    /// The buckets other homes leased to this leader.
    leases: HeldLeases,
}

/// Why a claim could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("a claim names id 0, an id twice, or more than {CLAIM_IDS_MAX} ids")]
    BadIds,
    #[error("another batch of this partition is claiming one of these ids; claim after it")]
    Overlaps,
    #[error("this partition's leader has no claim epoch of its term yet")]
    NoEpoch,
    #[error("more than {CLAIMS_MAX} batches of this partition are claiming")]
    Busy,
    #[error("the batch yielded ids more often than its leader's epoch has rounds")]
    RoundsExhausted,
}

impl PartitionDirectory {
    pub fn new(partition: u32, partitions: u32) -> PartitionDirectory {
        let partitions = partitions.max(1);
        assert!(partition < partitions);
        PartitionDirectory {
            partition,
            partitions,
            term: 0,
            epoch: None,
            epoch_requested: false,
            rounds_started: 0,
            last_priority: 0,
            resolutions: Default::default(),
            claims: BTreeMap::new(),
            current: HashMap::with_hasher(FixedState::with_seed(0)),
            claiming: [(); 2].map(|_| HashMap::with_hasher(FixedState::with_seed(0))),
            proposed: [(); 2].map(|_| HashMap::with_hasher(FixedState::with_seed(0))),
            transactions: [(); 2].map(|_| HashMap::with_hasher(FixedState::with_seed(0))),
            covered: Vec::new(),
            next_covered: 0,
            leases: HeldLeases::new(partitions),
        }
    }

    /// A new leader term: the resolutions of an earlier term are gone (their claimants claim
    /// again), and so are the epoch (the new leader logs its own), the leases, and the ids
    /// proposed by batches of earlier terms. Forgetting those is safe: this leader says
    /// "lacks" only once its own epoch is applied, so after every entry an earlier term
    /// appended, and the write path never appends a batch in another term than the one it
    /// began in (its write is conditional on the term, `cores.rs`). It also ends the wait for
    /// a batch whose write failed with its fate unknown. A transaction's ids are kept: its
    /// entries may come in this term ([`Proposer::Transaction`]).
    pub fn set_term(&mut self, term: u64) {
        if term > self.term {
            self.term = term;
            self.epoch = None;
            self.epoch_requested = false;
            self.resolutions = Default::default();
            self.leases.clear();
            for proposed in &mut self.proposed {
                proposed.clear();
            }
            self.covered.clear();
        }
    }

    /// Splits the ids a batch will store without holding them (an id may repeat) into those
    /// a lease covers (proposed from now until [`PartitionDirectory::release_covered`] with
    /// the name returned, if any) and those to claim (distinct), and asks the homes for the
    /// leases that would cover the rest next time. Leases are used and asked for only with
    /// this leader's epoch (every earlier entry applied).
    pub fn use_leases(
        &mut self,
        kind: IdKind,
        ids: Vec<u128>,
        now_ms: u64,
        io: &mut Vec<DirectoryIo>,
    ) -> (Option<u64>, Vec<u128>) {
        let (covered, mut claims): (Vec<u128>, Vec<u128>) = if self.epoch.is_none() {
            (Vec::new(), ids)
        } else {
            (ids.into_iter()).partition(|id| self.leases.covers(kind, *id))
        };
        claims.sort_unstable();
        claims.dedup();
        let name = (!covered.is_empty()).then(|| {
            let name = self.next_covered;
            self.next_covered += 1;
            self.covered.push(CoveredIds {
                name,
                kind,
                ids: covered,
            });
            name
        });
        if self.epoch.is_none() {
            return (name, claims);
        }
        for request in self.leases.wanted(kind, &claims, now_ms) {
            let Some(round) = self.next_round() else {
                break;
            };
            self.leases.requested(kind, &request, round, now_ms);
            let lease = DirectoryCommand::Lease {
                holder: self.partition,
                round,
                buckets: request.buckets,
            };
            io.push(DirectoryIo::Send(
                request.home,
                DirectoryMessage::Lease { kind, lease },
            ));
        }
        (name, claims)
    }

    /// The batch of leader term `term` whose covered ids [`PartitionDirectory::use_leases`]
    /// named `name` was applied, or will never be: they are no longer proposed. A batch of an
    /// earlier term changes nothing (its ids were forgotten with its term).
    pub fn release_covered(&mut self, term: u64, name: u64) {
        if term != self.term {
            return;
        }
        if let Some(at) = self.covered.iter().position(|c| c.name == name) {
            self.covered.swap_remove(at);
        }
    }

    /// Ids of `kind` that leases cover for batches in flight, as a set when `asked` ids
    /// would make scanning the lists long.
    fn covered_set(&self, kind: IdKind, asked: usize) -> Option<Ids<()>> {
        let covered = self.covered.iter().filter(|c| c.kind == kind);
        let total: usize = covered.clone().map(|c| c.ids.len()).sum();
        if total.saturating_mul(asked) <= COVERED_SCAN_MAX {
            return None;
        }
        let mut set = HashMap::with_capacity_and_hasher(total, FixedState::with_seed(0));
        set.extend(covered.flat_map(|c| c.ids.iter().map(|id| (*id, ()))));
        Some(set)
    }

    fn is_covered(&self, kind: IdKind, id: u128, set: Option<&Ids<()>>) -> bool {
        match set {
            Some(set) => set.contains_key(&id),
            None => (self.covered.iter()).any(|c| c.kind == kind && c.ids.contains(&id)),
        }
    }

    /// Whether a lease held now covers `id`, so that a batch's pre-check need not look it up
    /// ([`PartitionDirectory::use_leases`] counts it as covered then).
    pub fn lease_covers(&self, kind: IdKind, id: u128) -> bool {
        self.epoch.is_some() && self.leases.covers(kind, id)
    }

    /// Leases this leader holds, for status and tests.
    pub fn leases_held(&self) -> usize {
        self.leases.active()
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    /// Whether this leader must log a `ClaimEpoch` before it claims: it has none yet, or has
    /// used half its rounds (the other half is for batches that yield and claim again).
    pub fn needs_epoch(&self) -> bool {
        self.epoch.is_none() || self.rounds_started >= ROUNDS_PER_EPOCH / 2
    }

    /// A `ClaimEpoch` entry logged in `term` was applied; `applied_index` was read right
    /// after. An epoch logged in another term than the current one is not taken: a new leader
    /// numbers its rounds only from its own.
    pub fn set_epoch(&mut self, term: u64, applied_index: u64) {
        assert!(applied_index < 1 << 40, "log indexes fit 40 bits");
        if term != self.term {
            return;
        }
        self.epoch_requested = false;
        if self.epoch.is_none_or(|epoch| applied_index > epoch) {
            self.epoch = Some(applied_index);
            self.rounds_started = 0;
        }
    }

    /// The `ClaimEpoch` asked for by [`DirectoryIo::LogEpoch`] was not logged; the next
    /// question asks again.
    pub fn epoch_failed(&mut self) {
        self.epoch_requested = false;
    }

    fn next_round(&mut self) -> Option<u64> {
        let epoch = self.epoch?;
        if self.rounds_started + 1 >= ROUNDS_PER_EPOCH {
            return None;
        }
        self.rounds_started += 1;
        Some((epoch << 24) | self.rounds_started)
    }

    /// Starts claiming `ids` of `kind` for a batch begun at `wall_ns` (the wall clock, which
    /// orders batches across partitions) and `now_ms` (the timers' clock); the claims to
    /// send.
    /// Returns the round that [`PartitionDirectory::outcome`] reports on, once
    /// [`DirectoryIo::Outcome`] named it. Call only when [`PartitionDirectory::needs_epoch`]
    /// is false.
    pub fn claim(
        &mut self,
        kind: IdKind,
        ids: &[u128],
        wall_ns: u64,
        now_ms: u64,
        io: &mut Vec<DirectoryIo>,
    ) -> Result<u64, ClaimError> {
        let proposer = Proposer::Batch { term: self.term };
        self.claim_as(proposer, kind, ids, wall_ns, now_ms, io)
    }

    /// Like [`PartitionDirectory::claim`], for a cross-partition transaction of this node's
    /// coordinator: its answered ids stay proposed across terms until settled.
    pub fn claim_for_transaction(
        &mut self,
        kind: IdKind,
        ids: &[u128],
        wall_ns: u64,
        now_ms: u64,
        io: &mut Vec<DirectoryIo>,
    ) -> Result<u64, ClaimError> {
        self.claim_as(Proposer::Transaction, kind, ids, wall_ns, now_ms, io)
    }

    fn claim_as(
        &mut self,
        proposer: Proposer,
        kind: IdKind,
        ids: &[u128],
        wall_ns: u64,
        now_ms: u64,
        io: &mut Vec<DirectoryIo>,
    ) -> Result<u64, ClaimError> {
        if ids.len() > CLAIM_IDS_MAX || ids.contains(&0) {
            return Err(ClaimError::BadIds);
        }
        if self.claims.len() >= CLAIMS_MAX {
            return Err(ClaimError::Busy);
        }
        if self.needs_epoch() {
            return Err(ClaimError::NoEpoch);
        }
        let claiming = &self.claiming[kind as usize];
        if ids.iter().any(|id| claiming.contains_key(id)) {
            return Err(ClaimError::Overlaps);
        }
        let round = self.next_round().expect("an epoch with rounds left");
        // Older batches have lower priorities; unique in the cluster (the partition in the
        // low bits), increasing in this partition.
        let priority = ((wall_ns / 1_000) << 10 | u64::from(self.partition))
            .max(self.last_priority + (1 << 10));
        // An id twice in the batch is found as it is marked claiming; the marks are undone.
        let claiming = &mut self.claiming[kind as usize];
        claiming.reserve(ids.len());
        for (at, id) in ids.iter().enumerate() {
            if claiming.insert(*id, (priority, round)).is_some() {
                for id in &ids[..at] {
                    claiming.remove(id);
                }
                return Err(ClaimError::BadIds);
            }
        }
        self.last_priority = priority;
        let (claim_round, sends) = ClaimRound::start(
            self.partition,
            round,
            priority,
            ids,
            self.partitions,
            now_ms,
        );
        let claiming = Claiming {
            kind,
            proposer,
            round: claim_round,
            ids: ids.to_vec(),
            state: ClaimState::Claiming,
        };
        self.claims.insert(round, claiming);
        self.current.insert(round, round);
        for (home, claim) in sends {
            io.push(DirectoryIo::Send(
                home,
                DirectoryMessage::Claim { kind, claim },
            ));
        }
        self.finish(round, io);
        Ok(round)
    }

    /// The outcome of the batch whose claims began as `round`, once it has one, taken once:
    /// every id's answer (the ids then count as proposed until
    /// [`PartitionDirectory::settled`]: the batch goes on to its log entry and a holder must
    /// not give them up meanwhile), or why the batch could not claim.
    pub fn outcome(
        &mut self,
        round: u64,
    ) -> Option<Result<BTreeMap<u128, ClaimAnswer>, ClaimError>> {
        let claiming = self.claims.get(&round)?;
        if matches!(claiming.state, ClaimState::Claiming) {
            return None;
        }
        let claiming = self.claims.remove(&round).expect("just found");
        match claiming.state {
            ClaimState::Answered(answers) => Some(Ok(answers)),
            ClaimState::Failed(error) => Some(Err(error)),
            ClaimState::Claiming => unreachable!("checked above"),
        }
    }

    /// Whether the batch that began as `round` is still claiming.
    pub fn is_claiming(&self, round: u64) -> bool {
        self.claims
            .get(&round)
            .is_some_and(|c| matches!(c.state, ClaimState::Claiming))
    }

    /// Gives up the claims of the batch that began as `round` (it will not be proposed); if
    /// its answers were all in, its ids are no longer proposed either.
    pub fn abandon(&mut self, round: u64) {
        let Some(claiming) = self.claims.remove(&round) else {
            return;
        };
        match claiming.state {
            ClaimState::Claiming => {
                self.current.remove(&claiming.round.round());
                for id in &claiming.ids {
                    self.claiming[claiming.kind as usize].remove(id);
                }
            }
            ClaimState::Answered(_) => {
                self.settled(claiming.proposer, claiming.kind, claiming.ids);
            }
            ClaimState::Failed(_) => {}
        }
    }

    /// The batch or transaction `proposer` whose claims came out as `ids` of `kind` (or that
    /// a lease covered) was applied, or will never be: its ids are no longer proposed. A batch
    /// of an earlier term changes nothing: its ids were forgotten with its term.
    pub fn settled(
        &mut self,
        proposer: Proposer,
        kind: IdKind,
        ids: impl IntoIterator<Item = u128>,
    ) {
        let proposed = match proposer {
            Proposer::Batch { term } if term == self.term => &mut self.proposed[kind as usize],
            Proposer::Batch { .. } => return,
            Proposer::Transaction => &mut self.transactions[kind as usize],
        };
        for id in ids {
            if let Some(count) = proposed.get_mut(&id) {
                *count -= 1;
                if *count == 0 {
                    proposed.remove(&id);
                }
            }
        }
    }

    /// Ends the claims of the batch that began as `first` if every id has its answer: its ids
    /// go from claiming to proposed in one step, so no question finds them in neither.
    fn finish(&mut self, first: u64, io: &mut Vec<DirectoryIo>) {
        let Some(claiming) = self.claims.get_mut(&first) else {
            return;
        };
        if !matches!(claiming.state, ClaimState::Claiming) {
            return;
        }
        let Some(outcome) = claiming.round.outcome() else {
            return;
        };
        self.current.remove(&claiming.round.round());
        let kind = claiming.kind as usize;
        // A batch of an earlier term is never appended (the write path's term check).
        let proposed = match claiming.proposer {
            Proposer::Batch { term } if term == self.term => Some(&mut self.proposed[kind]),
            Proposer::Batch { .. } => None,
            Proposer::Transaction => Some(&mut self.transactions[kind]),
        };
        if let Some(proposed) = proposed {
            proposed.reserve(claiming.ids.len());
            for id in &claiming.ids {
                *proposed.entry(*id).or_default() += 1;
            }
        }
        for id in &claiming.ids {
            self.claiming[kind].remove(id);
        }
        claiming.state = ClaimState::Answered(outcome);
        io.push(DirectoryIo::Outcome(first));
    }

    /// Handles a message from another partition (or this one) at `now_ms`. `ledger` is this
    /// partition's applied state; `leader_confirmed` whether this partition's leader has
    /// confirmed, after the message came, that it still leads (a linearizable read; a single
    /// voter's status confirms it).
    pub fn received(
        &mut self,
        message: DirectoryMessage,
        ledger: &Ledger,
        leader_confirmed: bool,
        now_ms: u64,
        io: &mut Vec<DirectoryIo>,
    ) {
        match message {
            DirectoryMessage::Claim { kind, claim } => {
                if let Err(why) = self.check_claim(&claim) {
                    tracing::warn!(partition = self.partition, why, "a claim refused");
                    return;
                }
                io.push(DirectoryIo::Append(kind, claim));
            }
            DirectoryMessage::Lease { kind, lease } => {
                let DirectoryCommand::Lease {
                    holder, buckets, ..
                } = &lease
                else {
                    return;
                };
                if let Err(why) = self.check_lease(*holder, buckets) {
                    tracing::warn!(partition = self.partition, why, "a lease request refused");
                    return;
                }
                // Buckets that cannot be leased now are answered without a log entry; the
                // entry's apply decides the others.
                let directory = ledger.id_homes().directory(kind);
                if !buckets.iter().any(|b| directory.leasable(*holder, *b)) {
                    io.push(self.lease_answers(kind, ledger, &lease, &[]));
                    return;
                }
                io.push(DirectoryIo::Append(kind, lease));
            }
            DirectoryMessage::LeaseAnswers {
                kind,
                home,
                round,
                answers,
            } => {
                if home < self.partitions {
                    self.leases.answered(kind, home, round, &answers, now_ms);
                }
            }
            DirectoryMessage::Answers {
                kind,
                round,
                answers,
            } => {
                let Some(first) = self.current.get(&round).copied() else {
                    return;
                };
                let claiming = self
                    .claims
                    .get_mut(&first)
                    .expect("current rounds are claiming");
                if claiming.kind != kind {
                    return;
                }
                for (id, answer) in answers {
                    if !matches!(answer, ClaimAnswer::Contested { .. }) {
                        claiming.round.answered(round, id, answer);
                    }
                }
                self.finish(first, io);
            }
            DirectoryMessage::Ask { kind, home, ids } => {
                if home >= self.partitions {
                    return;
                }
                // Every entry of earlier leaders is applied once this leader's epoch is: only
                // then may the ledger's "not held" be believed.
                let term_committed = leader_confirmed && self.epoch.is_some();
                if leader_confirmed && self.epoch.is_none() && !self.epoch_requested {
                    self.epoch_requested = true;
                    io.push(DirectoryIo::LogEpoch);
                }
                let mut verdicts = Vec::with_capacity(ids.len());
                let covered = self.covered_set(kind, ids.len());
                let held = ledger.holder().is_some();
                for (id, holder_round, asker) in ids {
                    // A question about a bucket leased to this partition ends the lease
                    // before any answer: "lacks" must never be followed by storing the id.
                    self.leases.asked(kind, home, id);
                    let state = HolderState {
                        holds: ledger.holds(kind, id),
                        // An intent held here may store any id when it resolves (its ids'
                        // claims are settled once the batch is answered, and a recovery may
                        // apply it later still): no id is "lacked" until it resolves.
                        proposed: self.proposed[kind as usize].contains_key(&id)
                            || self.transactions[kind as usize].contains_key(&id)
                            || self.is_covered(kind, id, covered.as_ref())
                            || held,
                        claiming: self.claiming[kind as usize].get(&id).map(|(p, _)| *p),
                        term_committed,
                    };
                    let (verdict, yields) = holder_verdict(state, asker);
                    if yields {
                        self.yield_id(kind, id, now_ms, io);
                    }
                    verdicts.push((id, holder_round, verdict));
                }
                let holder = self.partition;
                let message = DirectoryMessage::Verdicts {
                    kind,
                    holder,
                    verdicts,
                };
                io.push(DirectoryIo::Send(home, message));
            }
            DirectoryMessage::Verdicts {
                kind,
                holder,
                verdicts,
            } => {
                // A home may be the holder too (the ids it homes are claimed like any others).
                if holder >= self.partitions {
                    return;
                }
                let mut actions = Vec::new();
                let resolutions = &mut self.resolutions[kind as usize];
                resolutions.verdicts(holder, &verdicts, now_ms, &mut actions);
                self.perform(kind, actions, io);
            }
        }
    }

    /// A claim from outside is checked before it reaches the log, whose apply asserts it.
    fn check_claim(&self, claim: &DirectoryCommand) -> Result<(), &'static str> {
        let DirectoryCommand::Claim { claimant, ids, .. } = claim else {
            return Err("not a claim");
        };
        if *claimant >= self.partitions {
            return Err("a claimant outside the cluster");
        }
        if ids.is_empty() || ids.len() > CLAIM_IDS_MAX {
            return Err("a claim of no ids or too many");
        }
        let homed_here =
            |id: &u128| *id != 0 && partition_of(*id, self.partitions) == self.partition;
        if !ids.iter().all(homed_here) {
            return Err("a claim of id 0 or of an id homed elsewhere");
        }
        Ok(())
    }

    /// The answers to a lease request (a [`DirectoryCommand::Lease`]) whose entry's apply
    /// answered `granted` (none when it was answered without one); see
    /// `IdDirectory::lease_answers`.
    fn lease_answers(
        &self,
        kind: IdKind,
        ledger: &Ledger,
        lease: &DirectoryCommand,
        granted: &[ClaimAnswer],
    ) -> DirectoryIo {
        let DirectoryCommand::Lease {
            holder,
            round,
            buckets,
        } = lease
        else {
            unreachable!("lease answers answer a lease, not {lease:?}");
        };
        let directory = ledger.id_homes().directory(kind);
        let answers = directory.lease_answers(*holder, buckets, granted);
        let answers = DirectoryMessage::LeaseAnswers {
            kind,
            home: self.partition,
            round: *round,
            answers,
        };
        DirectoryIo::Send(*holder, answers)
    }

    /// A lease request from outside is checked before it reaches the log.
    fn check_lease(&self, holder: u32, buckets: &[u16]) -> Result<(), &'static str> {
        if holder >= self.partitions {
            return Err("a lease holder outside the cluster");
        }
        if buckets.is_empty() || buckets.len() > usize::from(LEASE_BUCKETS) {
            return Err("a lease of no buckets or too many");
        }
        let ascending = buckets.windows(2).all(|pair| pair[0] < pair[1]);
        if !ascending || buckets.iter().any(|b| *b >= LEASE_BUCKETS) {
            return Err("lease buckets out of order or out of range");
        }
        Ok(())
    }

    /// The batch claiming `id` yields it to an older batch: it claims everything again in a
    /// new round, after a short backoff (`ClaimRound::restart`). With no round left in the
    /// epoch it fails instead, and releases its ids.
    fn yield_id(&mut self, kind: IdKind, id: u128, now_ms: u64, io: &mut Vec<DirectoryIo>) {
        let Some((_, first)) = self.claiming[kind as usize].get(&id).copied() else {
            return;
        };
        let claiming = self
            .claims
            .get(&first)
            .expect("claiming ids have their batch");
        let old_round = claiming.round.round();
        let Some(new_round) = self.next_round() else {
            let claiming = self.claims.get_mut(&first).expect("just found");
            for id in &claiming.ids {
                self.claiming[kind as usize].remove(id);
            }
            claiming.state = ClaimState::Failed(ClaimError::RoundsExhausted);
            self.current.remove(&old_round);
            io.push(DirectoryIo::Outcome(first));
            return;
        };
        let claiming = self.claims.get_mut(&first).expect("just found");
        claiming.round = claiming
            .round
            .restart(new_round, &claiming.ids, self.partitions, now_ms);
        self.current.remove(&old_round);
        self.current.insert(new_round, first);
    }

    /// This partition's log applied `command` (a directory entry it appended) with `reply`;
    /// `ledger` is its state right after.
    pub fn applied(
        &mut self,
        kind: IdKind,
        command: &DirectoryCommand,
        reply: &Reply,
        ledger: &Ledger,
        now_ms: u64,
        io: &mut Vec<DirectoryIo>,
    ) {
        let Reply::Directory(answers) = reply else {
            unreachable!("a directory entry answers directory answers, not {reply:?}");
        };
        if let DirectoryCommand::Lease { .. } = command {
            io.push(self.lease_answers(kind, ledger, command, answers));
            return;
        }
        let mut actions = Vec::new();
        let resolutions = &mut self.resolutions[kind as usize];
        resolutions.applied(command, answers, now_ms, &mut actions);
        self.perform(kind, actions, io);
    }

    /// Claims to send again and holders to ask again, as their times come.
    pub fn tick(&mut self, now_ms: u64, io: &mut Vec<DirectoryIo>) {
        for kind in IdKind::ALL {
            let mut actions = Vec::new();
            self.resolutions[kind as usize].tick(now_ms, &mut actions);
            self.perform(kind, actions, io);
        }
        let claiming = self.claims.values_mut();
        for claiming in claiming.filter(|c| matches!(c.state, ClaimState::Claiming)) {
            for (home, claim) in claiming.round.tick(now_ms) {
                let kind = claiming.kind;
                io.push(DirectoryIo::Send(
                    home,
                    DirectoryMessage::Claim { kind, claim },
                ));
            }
        }
    }

    /// Whether anything waits for a tick.
    pub fn is_busy(&self) -> bool {
        !self.current.is_empty() || self.resolutions.iter().any(|r| !r.is_empty())
    }

    fn perform(&self, kind: IdKind, actions: Vec<HomeAction>, io: &mut Vec<DirectoryIo>) {
        let mut answers: BTreeMap<(u32, u64), Vec<(u128, ClaimAnswer)>> = BTreeMap::new();
        for action in actions {
            match action {
                HomeAction::Answer {
                    claimant,
                    round,
                    id,
                    answer,
                } => answers
                    .entry((claimant, round))
                    .or_default()
                    .push((id, answer)),
                HomeAction::Ask { holder, ids } => {
                    let home = self.partition;
                    io.push(DirectoryIo::Send(
                        holder,
                        DirectoryMessage::Ask { kind, home, ids },
                    ));
                }
                HomeAction::Append(command) => io.push(DirectoryIo::Append(kind, command)),
            }
        }
        for ((claimant, round), answers) in answers {
            let message = DirectoryMessage::Answers {
                kind,
                round,
                answers,
            };
            io.push(DirectoryIo::Send(claimant, message));
        }
    }
}

/// A directory entry as a log command.
pub fn directory_command(kind: IdKind, command: DirectoryCommand) -> Command {
    Command::Directory {
        kind,
        command: Box::new(command),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    use kassa_shard::directory::{ClaimAnswer, IdKind, Owner};
    use kassa_shard::{partition_of, Command, Reply};
    use kassa_wire::{Account, AccountId, CreateAccountStatus};

    use crate::cores::{CoreSetup, Cores};

    const PARTITIONS: u32 = 4;

    use super::{ClaimError, DirectoryIo, DirectoryMessage, PartitionDirectory, Proposer};
    use kassa_shard::directory::Verdict;
    use kassa_shard::directory::CLAIM_IDS_MAX;
    use kassa_shard::{Ledger, LedgerConfig};

    fn ledger() -> Ledger {
        Ledger::new(LedgerConfig {
            partition: 1,
            partitions: PARTITIONS,
            ..LedgerConfig::default()
        })
    }

    /// A directory of partition 1 whose leader has its epoch (7).
    fn directory() -> PartitionDirectory {
        let mut directory = PartitionDirectory::new(1, PARTITIONS);
        assert!(directory.needs_epoch());
        directory.set_epoch(0, 7);
        assert!(!directory.needs_epoch());
        directory
    }

    fn ask(round: u64, asker: u64, id: u128) -> DirectoryMessage {
        DirectoryMessage::Ask {
            kind: IdKind::Transfer,
            home: 0,
            ids: vec![(id, round, asker)],
        }
    }

    fn verdict(io: &[DirectoryIo]) -> Verdict {
        match io {
            [DirectoryIo::Send(0, DirectoryMessage::Verdicts { verdicts, .. })] => verdicts[0].2,
            other => panic!("{other:?}"),
        }
    }

    fn batch(term: u64) -> Proposer {
        Proposer::Batch { term }
    }

    fn granted(round: u64, ids: &[u128]) -> DirectoryMessage {
        DirectoryMessage::Answers {
            kind: IdKind::Transfer,
            round,
            answers: ids.iter().map(|id| (*id, ClaimAnswer::Granted)).collect(),
        }
    }

    /// A lease spares claims only once granted for the round it was asked in; its ids count
    /// as proposed until settled; the first question about its bucket ends it, before the
    /// answer, and it is not asked for again.
    #[test]
    fn leased_ids_are_proposed_until_settled_and_a_question_ends_the_lease_first() {
        use kassa_shard::directory::{lease_bucket, DirectoryCommand, LeaseAnswer};
        let ledger = ledger();
        let kind = IdKind::Transfer;
        let ids: Vec<u128> = (1u128..)
            .filter(|id| partition_of(*id, PARTITIONS) == 0 && lease_bucket(*id, PARTITIONS) == 3)
            .take(3)
            .collect();
        let mut directory = PartitionDirectory::new(1, PARTITIONS);
        let mut io = Vec::new();
        let (covered, claims) = directory.use_leases(kind, ids.clone(), 0, &mut io);
        assert!(
            covered.is_none() && claims == ids && io.is_empty(),
            "no epoch"
        );
        // A repeated id is claimed once.
        let twice = [&ids[..], &ids[..1]].concat();
        directory.set_epoch(0, 7);
        let (covered, claims) = directory.use_leases(kind, twice, 0, &mut io);
        assert!(covered.is_none() && claims == ids);
        let round = match &io[..] {
            [DirectoryIo::Send(
                0,
                DirectoryMessage::Lease {
                    lease:
                        DirectoryCommand::Lease {
                            holder: 1,
                            round,
                            buckets,
                        },
                    ..
                },
            )] if buckets == &[3] => *round,
            other => panic!("{other:?}"),
        };
        io.clear();
        let answers = |round| DirectoryMessage::LeaseAnswers {
            kind,
            home: 0,
            round,
            answers: vec![(3, LeaseAnswer::Granted)],
        };
        directory.received(answers(round - 1), &ledger, true, 0, &mut io);
        assert_eq!(directory.leases_held(), 0, "an answer for another round");
        directory.received(answers(round), &ledger, true, 0, &mut io);
        assert_eq!(directory.leases_held(), 1);
        let (covered, claims) = directory.use_leases(kind, ids[..2].to_vec(), 0, &mut io);
        let covered = covered.expect("covered");
        assert!(claims.is_empty() && io.is_empty());
        // Questions scan the covered lists, or a set made of them for a long question.
        assert!(directory.covered_set(kind, 1).is_none());
        let set = directory.covered_set(kind, super::COVERED_SCAN_MAX);
        for id in &ids {
            let listed = directory.is_covered(kind, *id, None);
            assert_eq!(listed, *id != ids[2]);
            assert_eq!(directory.is_covered(kind, *id, set.as_ref()), listed);
        }
        assert!(!directory.is_covered(IdKind::Account, ids[0], None));
        // The home asks about a covered id: the lease ends; the id is proposed.
        directory.received(ask(round, 1, ids[0]), &ledger, true, 0, &mut io);
        assert_eq!(verdict(&io), Verdict::NotYet);
        io.clear();
        assert_eq!(directory.leases_held(), 0);
        // An id of the bucket no batch names: lacks (it can no longer be stored unclaimed).
        directory.received(ask(round, 1, ids[2]), &ledger, true, 0, &mut io);
        assert_eq!(verdict(&io), Verdict::Lacks);
        io.clear();
        directory.release_covered(directory.term(), covered);
        directory.received(ask(round, 1, ids[0]), &ledger, true, 0, &mut io);
        assert_eq!(verdict(&io), Verdict::Lacks, "given up and not stored");
        io.clear();
        // Later batches claim, and the lease is not asked for again by this leader.
        let (covered, claims) = directory.use_leases(kind, ids.clone(), 10_000, &mut io);
        assert!(covered.is_none() && claims == ids && io.is_empty());
        // A new leader asks again.
        directory.set_term(1);
        directory.set_epoch(1, 9);
        let (_, _) = directory.use_leases(kind, ids.clone(), 10_000, &mut io);
        assert_eq!(io.len(), 1, "{io:?}");
    }

    /// A home answers "granted" only for buckets its `Lease` entry leased. Found by
    /// `t15_placement_by_ledger`: answers read from the ledger after later claims made a
    /// refused bucket leasable granted it, though it was never leased.
    #[test]
    fn a_home_grants_only_what_its_lease_entry_leased() {
        use kassa_shard::directory::{lease_bucket, DirectoryCommand, LeaseAnswer};
        let kind = IdKind::Transfer;
        let mut home = Ledger::new(LedgerConfig {
            partition: 0,
            partitions: PARTITIONS,
            ..LedgerConfig::default()
        });
        let bucket = 5;
        let ids: Vec<u128> = (1u128..)
            .filter(|id| {
                partition_of(*id, PARTITIONS) == 0 && lease_bucket(*id, PARTITIONS) == bucket
            })
            .take(kassa_shard::directory::LEASE_MIN_IDS as usize)
            .collect();
        let claim = DirectoryCommand::Claim {
            claimant: 1,
            round: 1,
            priority: 1,
            ids,
        };
        home.apply(super::directory_command(kind, claim));
        let lease = DirectoryCommand::Lease {
            holder: 1,
            round: 2,
            buckets: vec![bucket],
        };
        let mut directory = PartitionDirectory::new(0, PARTITIONS);
        let answered = |directory: &mut PartitionDirectory, applied: ClaimAnswer| {
            let mut io = Vec::new();
            let reply = Reply::Directory(vec![applied]);
            directory.applied(kind, &lease, &reply, &home, 0, &mut io);
            match &io[..] {
                [DirectoryIo::Send(1, DirectoryMessage::LeaseAnswers { answers, .. })] => {
                    answers[0].1
                }
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            answered(&mut directory, ClaimAnswer::Refused),
            LeaseAnswer::NotYet
        );
        assert_eq!(
            answered(&mut directory, ClaimAnswer::Granted),
            LeaseAnswer::Granted
        );
    }

    /// A batch still claiming an id yields it to an older batch: its verdict is "lacks", and
    /// it claims again in a new round, which the caller still names by its first round.
    #[test]
    fn a_claiming_batch_yields_to_an_older_one_and_claims_again() {
        let ledger = ledger();
        let mut directory = directory();
        let mut io = Vec::new();
        let ids = [5u128, 6];
        let claim = |d: &mut PartitionDirectory, ids: &[u128], io: &mut Vec<DirectoryIo>| {
            d.claim(IdKind::Transfer, ids, 2_000_000_000, 2_000, io)
        };
        assert_eq!(
            claim(&mut directory, &[5, 5], &mut io),
            Err(ClaimError::BadIds)
        );
        assert_eq!(
            claim(&mut directory, &[0], &mut io),
            Err(ClaimError::BadIds)
        );
        let too_many: Vec<u128> = (1..=CLAIM_IDS_MAX as u128 + 1).collect();
        assert_eq!(
            claim(&mut directory, &too_many, &mut io),
            Err(ClaimError::BadIds)
        );
        assert!(io.is_empty(), "a refused claim sends nothing");
        let round = claim(&mut directory, &ids, &mut io).expect("claims");
        assert_eq!(round >> 24, 7);
        assert!(
            !io.is_empty()
                && io
                    .iter()
                    .all(|a| matches!(a, DirectoryIo::Send(_, DirectoryMessage::Claim { .. })))
        );
        io.clear();
        // A younger batch asks: it waits.
        directory.received(ask(round, u64::MAX, 5), &ledger, true, 2_000, &mut io);
        assert_eq!(verdict(&io), Verdict::NotYet);
        io.clear();
        // An older one wins the id; the batch claims everything again, later.
        directory.received(ask(round, 1, 5), &ledger, true, 2_000, &mut io);
        assert_eq!(verdict(&io), Verdict::Lacks);
        io.clear();
        assert!(directory.is_claiming(round));
        directory.tick(2_001, &mut io);
        assert!(io.is_empty(), "not before the backoff");
        directory.tick(3_000, &mut io);
        let new_round = match &io[0] {
            DirectoryIo::Send(_, DirectoryMessage::Claim { claim, .. }) => match claim {
                kassa_shard::directory::DirectoryCommand::Claim { round, .. } => *round,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert!(new_round > round);
        io.clear();
        // Answers for the first round are stale now.
        directory.received(granted(round, &ids), &ledger, true, 3_001, &mut io);
        assert!(io.is_empty() && directory.outcome(round).is_none());
        directory.received(granted(new_round, &ids), &ledger, true, 3_001, &mut io);
        assert_eq!(io, vec![DirectoryIo::Outcome(round)]);
        io.clear();
        let outcome = directory.outcome(round).expect("answered");
        assert_eq!(outcome, Ok(all(ClaimAnswer::Granted, &ids)));
        assert_eq!(directory.outcome(round), None, "taken once");
        // Proposed now: nobody wins them any more, until the batch is settled.
        directory.received(ask(round, 0, 5), &ledger, true, 3_002, &mut io);
        assert_eq!(verdict(&io), Verdict::NotYet);
        io.clear();
        directory.settled(batch(directory.term()), IdKind::Transfer, ids);
        directory.received(ask(round, 0, 5), &ledger, true, 3_003, &mut io);
        assert_eq!(verdict(&io), Verdict::Lacks);
        io.clear();
        // Not unless its leader is confirmed.
        directory.received(ask(round, 0, 5), &ledger, false, 3_004, &mut io);
        assert_eq!(verdict(&io), Verdict::NotYet);
    }

    /// Ids proposed in a leader term are forgotten when it ends (the new leader's epoch comes
    /// after every entry the old one appended), a batch of the old term whose claims finish
    /// later proposes nothing in the new one, and its settle cannot release a new batch's ids.
    #[test]
    fn ids_proposed_in_an_ended_term_are_forgotten_and_an_old_batch_releases_nothing_new() {
        let ledger = ledger();
        let mut directory = directory();
        let mut io = Vec::new();
        let answered = directory.claim(IdKind::Transfer, &[21, 22], 1_000_000, 1, &mut io);
        let answered = answered.expect("claims");
        let claiming = directory.claim(IdKind::Transfer, &[23], 2_000_000, 1, &mut io);
        let claiming = claiming.expect("claims");
        directory.received(granted(answered, &[21, 22]), &ledger, true, 2, &mut io);
        io.clear();
        directory.received(ask(answered, 0, 21), &ledger, true, 3, &mut io);
        assert_eq!(verdict(&io), Verdict::NotYet, "proposed");
        io.clear();
        directory.set_term(1);
        directory.set_epoch(1, 9);
        directory.received(ask(answered, 0, 21), &ledger, true, 4, &mut io);
        assert_eq!(verdict(&io), Verdict::Lacks, "forgotten with the term");
        io.clear();
        // The old batch's claims finish in the new term: nothing is proposed.
        directory.received(granted(claiming, &[23]), &ledger, true, 5, &mut io);
        assert_eq!(io, vec![DirectoryIo::Outcome(claiming)]);
        io.clear();
        directory.received(ask(claiming, 0, 23), &ledger, true, 6, &mut io);
        assert_eq!(
            verdict(&io),
            Verdict::Lacks,
            "an old batch proposes nothing"
        );
        io.clear();
        // A batch of the new term names 21; the old batch's settle leaves it proposed.
        let round = directory.claim(IdKind::Transfer, &[21], 3_000_000, 7, &mut io);
        let round = round.expect("claims");
        directory.received(granted(round, &[21]), &ledger, true, 8, &mut io);
        io.clear();
        directory.settled(batch(0), IdKind::Transfer, [21, 22]);
        directory.received(ask(round, 0, 21), &ledger, true, 9, &mut io);
        assert_eq!(verdict(&io), Verdict::NotYet, "still the new batch's");
        io.clear();
        directory.settled(batch(1), IdKind::Transfer, [21]);
        directory.received(ask(round, 0, 21), &ledger, true, 10, &mut io);
        assert_eq!(verdict(&io), Verdict::Lacks);
    }

    /// A transaction's claimed ids outlive the term: its coordinator holds its partitions
    /// locked and may append its `Decide` or `Apply` in a later term, so only its settle
    /// releases them, and a batch's settle of the same ids does not.
    #[test]
    fn a_transactions_ids_stay_proposed_across_terms_until_it_settles() {
        let ledger = ledger();
        let mut directory = directory();
        let mut io = Vec::new();
        let round = directory.claim_for_transaction(IdKind::Transfer, &[41], 1_000_000, 1, &mut io);
        let round = round.expect("claims");
        directory.received(granted(round, &[41]), &ledger, true, 2, &mut io);
        io.clear();
        directory.received(ask(round, 0, 41), &ledger, true, 3, &mut io);
        assert_eq!(verdict(&io), Verdict::NotYet, "proposed");
        io.clear();
        directory.set_term(1);
        directory.set_epoch(1, 9);
        directory.received(ask(round, 0, 41), &ledger, true, 4, &mut io);
        assert_eq!(verdict(&io), Verdict::NotYet, "kept across the term");
        io.clear();
        directory.settled(batch(1), IdKind::Transfer, [41]);
        directory.received(ask(round, 0, 41), &ledger, true, 5, &mut io);
        assert_eq!(
            verdict(&io),
            Verdict::NotYet,
            "a batch's settle is not the transaction's"
        );
        io.clear();
        directory.settled(Proposer::Transaction, IdKind::Transfer, [41]);
        directory.received(ask(round, 0, 41), &ledger, true, 6, &mut io);
        assert_eq!(verdict(&io), Verdict::Lacks, "settled");
        io.clear();
        // Given up after its answers came in: released as well.
        let round = directory.claim_for_transaction(IdKind::Transfer, &[42], 2_000_000, 7, &mut io);
        let round = round.expect("claims");
        directory.received(granted(round, &[42]), &ledger, true, 8, &mut io);
        io.clear();
        directory.abandon(round);
        directory.received(ask(round, 0, 42), &ledger, true, 9, &mut io);
        assert_eq!(verdict(&io), Verdict::Lacks, "abandoned");
    }

    /// The moment a batch's last answer comes in, its ids are proposed: a question that
    /// arrives before the batch's task takes the outcome must not get "lacks" (else the id is
    /// given away while the batch goes on to store it). Giving up the batch then releases them.
    #[test]
    fn answered_ids_are_proposed_before_the_outcome_is_taken() {
        let ledger = ledger();
        let mut directory = directory();
        let mut io = Vec::new();
        let ids = [11u128, 12, 13];
        let round =
            (directory.claim(IdKind::Transfer, &ids, 1_000_000, 1, &mut io)).expect("claims");
        io.clear();
        directory.received(granted(round, &ids), &ledger, true, 2, &mut io);
        assert_eq!(io, vec![DirectoryIo::Outcome(round)]);
        io.clear();
        assert!(!directory.is_claiming(round));
        // The oldest possible asker: a claiming batch would yield to it.
        directory.received(ask(round, 0, 12), &ledger, true, 3, &mut io);
        assert_eq!(verdict(&io), Verdict::NotYet, "answered ids are proposed");
        io.clear();
        directory.abandon(round);
        directory.received(ask(round, 0, 12), &ledger, true, 4, &mut io);
        assert_eq!(
            verdict(&io),
            Verdict::Lacks,
            "an abandoned batch releases them"
        );
        assert_eq!(directory.outcome(round), None);
    }

    /// One batch at a time claims an id in a partition: a second batch naming it is refused
    /// (it claims after the first), so the first one's end cannot release the second's claim.
    #[test]
    fn overlapping_claims_of_one_partition_are_refused() {
        let ledger = ledger();
        let mut directory = directory();
        let mut io = Vec::new();
        let first =
            (directory.claim(IdKind::Transfer, &[21, 22], 1_000_000, 1, &mut io)).expect("claims");
        io.clear();
        let second = directory.claim(IdKind::Transfer, &[22, 23], 2_000_000, 1, &mut io);
        assert_eq!(second, Err(ClaimError::Overlaps));
        assert!(io.is_empty());
        // The other id space is another matter, and so is an id no batch claims.
        (directory.claim(IdKind::Account, &[22], 2_000_000, 1, &mut io)).expect("claims");
        (directory.claim(IdKind::Transfer, &[23], 2_000_000, 1, &mut io)).expect("claims");
        io.clear();
        // The refused claim left nothing behind: 23 is claimed by the third batch only, and
        // the first batch still holds 22 against younger askers.
        directory.received(ask(first, u64::MAX, 22), &ledger, true, 2, &mut io);
        assert_eq!(verdict(&io), Verdict::NotYet);
        io.clear();
        directory.abandon(first);
        directory.received(ask(first, u64::MAX, 22), &ledger, true, 3, &mut io);
        assert_eq!(verdict(&io), Verdict::Lacks);
    }

    /// A leader that has not applied its own `ClaimEpoch` may still have entries of an earlier
    /// leader (or of itself before a restart: a single voter keeps its term) to apply: it says
    /// "not yet", and asks for its epoch once.
    #[test]
    fn a_holder_without_its_epoch_never_says_lacks() {
        let ledger = ledger();
        let mut directory = PartitionDirectory::new(1, PARTITIONS);
        directory.set_term(3);
        let mut io = Vec::new();
        directory.received(ask(1, 0, 5), &ledger, true, 1, &mut io);
        assert!(
            matches!(io[..], [DirectoryIo::LogEpoch, DirectoryIo::Send(..)]),
            "{io:?}"
        );
        assert_eq!(verdict(&io[1..]), Verdict::NotYet);
        io.clear();
        directory.received(ask(1, 0, 5), &ledger, true, 2, &mut io);
        assert_eq!(verdict(&io), Verdict::NotYet, "the epoch is asked for once");
        io.clear();
        // An epoch logged in an earlier term is not this leader's.
        directory.set_epoch(2, 40);
        directory.received(ask(1, 0, 5), &ledger, true, 3, &mut io);
        assert_eq!(verdict(&io), Verdict::NotYet);
        io.clear();
        directory.set_epoch(3, 41);
        directory.received(ask(1, 0, 5), &ledger, true, 4, &mut io);
        assert_eq!(verdict(&io), Verdict::Lacks);
        io.clear();
        // A failed epoch is asked for again by the next question of a new term.
        directory.set_term(4);
        directory.received(ask(1, 0, 5), &ledger, true, 5, &mut io);
        assert!(matches!(io[0], DirectoryIo::LogEpoch));
        directory.epoch_failed();
        io.clear();
        directory.received(ask(1, 0, 5), &ledger, true, 6, &mut io);
        assert!(matches!(io[0], DirectoryIo::LogEpoch));
    }

    /// A batch that must yield when its leader's epoch has no round left fails (and releases
    /// its ids) instead of stopping the process.
    #[test]
    fn a_yield_without_rounds_left_fails_the_batch() {
        let ledger = ledger();
        let mut directory = directory();
        let mut io = Vec::new();
        let round =
            (directory.claim(IdKind::Transfer, &[31], 1_000_000, 1, &mut io)).expect("claims");
        io.clear();
        directory.rounds_started = super::ROUNDS_PER_EPOCH - 1;
        assert!(directory.needs_epoch());
        directory.received(ask(round, 0, 31), &ledger, true, 2, &mut io);
        assert!(io.contains(&DirectoryIo::Outcome(round)));
        assert_eq!(
            directory.outcome(round),
            Some(Err(ClaimError::RoundsExhausted))
        );
        assert!(!directory.is_busy());
        // A new epoch brings rounds back.
        directory.set_epoch(0, 8);
        (directory.claim(IdKind::Transfer, &[31], 2_000_000, 3, &mut io)).expect("claims");
    }

    fn start(dir: &std::path::Path) -> Cores {
        let (cross_expiries, _) = async_channel::bounded(1);
        let setup = CoreSetup {
            data_dir: dir.to_path_buf(),
            partitions: PARTITIONS,
            placement: kassa_shard::PlacementKind::ById,
            cores: 2,
            snapshot_entries: 1_000,
            cache_blocks: kassa_raft::CACHE_BLOCKS_DEFAULT,
            memory: kassa_raft::MemoryBudget::unbounded(),
            hash_seed: 1,
            pulses: Arc::new(AtomicBool::new(false)),
            cross_expiries,
        };
        Cores::start(setup).expect("the cores start")
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        runtime.block_on(future)
    }

    fn owner(cores: &Cores, kind: IdKind, id: u128) -> Option<Owner> {
        let home = partition_of(id, PARTITIONS);
        let read = cores.read(home, move |ledger| {
            ledger.id_homes().directory(kind).owner(id)
        });
        block_on(read).expect("a read")
    }

    fn all(answer: ClaimAnswer, ids: &[u128]) -> BTreeMap<u128, ClaimAnswer> {
        ids.iter().map(|id| (*id, answer)).collect()
    }

    /// The directory through real partitions on two cores: claims are granted, contested ids
    /// wait while their holder's batch is in flight and pass on once it is not, a held id is
    /// owned for good, and all of it survives a restart (it is in the homes' logs).
    #[test]
    fn claims_through_the_partitions_logs_resolve_contests_and_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("kassa-id-directory-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cores = start(&dir);
        // Ids homed in every partition.
        let ids: Vec<u128> = (1..=40).collect();
        assert!((0..PARTITIONS).all(|p| ids.iter().any(|id| partition_of(*id, PARTITIONS) == p)));

        let first = block_on(cores.claim_for_transaction(1, IdKind::Transfer, ids.clone()))
            .expect("claimed");
        assert_eq!(first.answers, all(ClaimAnswer::Granted, &ids));
        // Claiming again for the same partition changes nothing.
        let again = block_on(cores.claim_for_transaction(1, IdKind::Transfer, ids.clone()))
            .expect("claimed");
        assert_eq!(again.answers, all(ClaimAnswer::Granted, &ids));
        assert!(again.round > first.round);
        // The same ids as accounts are another id space: nobody contests them.
        let accounts = block_on(cores.claim_for_transaction(3, IdKind::Account, ids.clone()))
            .expect("claimed");
        assert_eq!(accounts.answers, all(ClaimAnswer::Granted, &ids));

        // Partition 2 wants them while partition 1's batches are still proposed: it waits.
        let contested = {
            let queues = cores.queues();
            let ids = ids.clone();
            std::thread::spawn(move || {
                block_on(queues.claim_for_transaction(2, IdKind::Transfer, ids))
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(!contested.is_finished(), "a proposed id is not handed over");
        for proposer in [first.proposer, again.proposer] {
            let settled = cores.claims_settled(1, proposer, IdKind::Transfer, ids.clone());
            block_on(settled).expect("settled");
        }
        // Partition 1 never stored them: they pass to partition 2.
        let second = contested.join().expect("joins").expect("claimed");
        assert_eq!(second.answers, all(ClaimAnswer::Granted, &ids));
        for id in &ids {
            let owner = owner(&cores, IdKind::Transfer, *id);
            assert!(
                matches!(owner, Some(Owner::Claimed { partition: 2, .. })),
                "{id}: {owner:?}"
            );
        }
        let settled = cores.claims_settled(2, second.proposer, IdKind::Transfer, ids.clone());
        block_on(settled).expect("settled");

        // An account its holder stores is owned for good. (Records are still placed by id
        // here, so the holder is the id's home.)
        let held: u128 = 1_000;
        let holder = partition_of(held, PARTITIONS);
        let claimed = block_on(cores.claim_for_transaction(holder, IdKind::Account, vec![held]))
            .expect("claim");
        assert_eq!(claimed.answers, all(ClaimAnswer::Granted, &[held]));
        let account = Account {
            id: AccountId(held),
            ledger: 1,
            code: 1,
            ..Account::default()
        };
        let create = Command::CreateAccounts {
            now: 1,
            accounts: vec![account],
        };
        let created = block_on(cores.write(holder, create)).expect("written");
        let Reply::CreateAccounts(results) = created else {
            panic!("{created:?}");
        };
        assert_eq!(results[0].status, CreateAccountStatus::Created);
        let settled = cores.claims_settled(holder, claimed.proposer, IdKind::Account, vec![held]);
        block_on(settled).expect("settled");
        let other = (holder + 1) % PARTITIONS;
        let refused = block_on(cores.claim_for_transaction(other, IdKind::Account, vec![held]))
            .expect("claim");
        assert_eq!(refused.answers, all(ClaimAnswer::OwnedBy(holder), &[held]));
        assert_eq!(
            owner(&cores, IdKind::Account, held),
            Some(Owner::Confirmed(holder))
        );

        // A restart keeps what the homes logged, and the restarted leader's rounds are above
        // the earlier one's although a single voter keeps its term.
        cores.shutdown();
        let cores = start(&dir);
        assert_eq!(
            owner(&cores, IdKind::Account, held),
            Some(Owner::Confirmed(holder))
        );
        let again = block_on(cores.claim_for_transaction(other, IdKind::Account, vec![held]))
            .expect("claim");
        assert_eq!(again.answers, all(ClaimAnswer::OwnedBy(holder), &[held]));
        assert!(again.round > refused.round, "rounds grow across leaders");
        // Partition 2's claims from before the restart are orphans now: nothing of its holds
        // them, so partition 1 gets them after asking.
        let third = block_on(cores.claim_for_transaction(1, IdKind::Transfer, ids.clone()))
            .expect("claimed");
        assert_eq!(third.answers, all(ClaimAnswer::Granted, &ids));
        cores.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
