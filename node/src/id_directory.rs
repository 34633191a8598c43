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
//!   home has answered every id.
//!
//! Partitions reach each other only through a [`Transport`], whose messages may be lost,
//! duplicated or reordered (the protocol resends); nothing here assumes that two partitions
//! share a process. Time comes from the caller (`now_ms`), so the decisions stay in the pure
//! core. What a home decides is in its log; what a leader keeps in memory (resolutions, claim
//! rounds) a new leader rebuilds from the claimants' next claims.

use std::collections::{BTreeMap, HashMap};

use foldhash::fast::FixedState;

use kassa_shard::directory::{
    holder_verdict, ClaimAnswer, ClaimRound, DirectoryCommand, HolderState, HomeAction, IdKind,
    Resolutions, Verdict, CLAIM_IDS_MAX,
};
use kassa_shard::{partition_of, Command, Ledger, Reply};

/// How often a core looks for claims to resend and holders to ask again.
pub const DIRECTORY_TICK_MS: u64 = 10;
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
}

/// A batch's claims in progress.
struct Claiming {
    kind: IdKind,
    round: ClaimRound,
    ids: Vec<u128>,
    outcome: Option<BTreeMap<u128, ClaimAnswer>>,
}

/// Ids to something, hashed fast (the ids come from clients, but the map is the leader's own
/// bookkeeping of its batches: a client aiming ids at one bucket only slows its own batches).
type Ids<T> = HashMap<u128, T, FixedState>;

/// One partition's directory state in its leader's memory.
pub struct PartitionDirectory {
    partition: u32,
    partitions: u32,
    /// The leader's term: a new term drops the resolutions of the last.
    term: u64,
    /// Claim rounds are `epoch << 24 | count`, where `epoch` is the applied index right after
    /// this leader's `ClaimEpoch` entry: above every entry of earlier leaders, so rounds never
    /// repeat across leaders, a single voter's restarts included (`Command::ClaimEpoch`).
    epoch: Option<u64>,
    rounds_started: u64,
    last_priority: u64,
    resolutions: [Resolutions; 2],
    /// Batches claiming, by their current round.
    claims: BTreeMap<u64, Claiming>,
    /// Per id space, the ids a batch of this partition is claiming: its priority and
    /// current round.
    claiming: [Ids<(u64, u64)>; 2],
    /// Per id space, the ids of batches that claimed them and are proposed, not yet applied
    /// (a count per id).
    proposed: [Ids<u32>; 2],
}

/// Why a claim could not be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("a claim names id 0, an id twice, or more than {CLAIM_IDS_MAX} ids")]
    BadIds,
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
            rounds_started: 0,
            last_priority: 0,
            resolutions: Default::default(),
            claims: BTreeMap::new(),
            claiming: [(); 2].map(|_| HashMap::with_hasher(FixedState::with_seed(0))),
            proposed: [(); 2].map(|_| HashMap::with_hasher(FixedState::with_seed(0))),
        }
    }

    /// A new leader term: the resolutions of an earlier term are gone (their claimants claim
    /// again), and so is the epoch (the new leader logs its own).
    pub fn set_term(&mut self, term: u64) {
        if term > self.term {
            self.term = term;
            self.epoch = None;
            self.resolutions = Default::default();
        }
    }

    /// Whether this leader must log a `ClaimEpoch` before it claims: it has none yet, or has
    /// used up its rounds.
    pub fn needs_epoch(&self) -> bool {
        self.epoch.is_none() || self.rounds_started + 1 >= ROUNDS_PER_EPOCH
    }

    /// This leader's `ClaimEpoch` entry was applied; `applied_index` was read right after.
    pub fn set_epoch(&mut self, applied_index: u64) {
        assert!(applied_index < 1 << 40, "log indexes fit 40 bits");
        if self.epoch.is_none_or(|epoch| applied_index > epoch) {
            self.epoch = Some(applied_index);
            self.rounds_started = 0;
        }
    }

    fn next_round(&mut self) -> u64 {
        let epoch = self.epoch.expect("claims begin after the leader's epoch");
        self.rounds_started += 1;
        assert!(self.rounds_started < ROUNDS_PER_EPOCH);
        (epoch << 24) | self.rounds_started
    }

    /// Starts claiming `ids` of `kind` for a batch begun at `now_ns`; the claims to send.
    /// Returns the round that [`PartitionDirectory::outcome`] reports on. Call only when
    /// [`PartitionDirectory::needs_epoch`] is false.
    pub fn claim(
        &mut self,
        kind: IdKind,
        ids: &[u128],
        now_ns: u64,
        io: &mut Vec<DirectoryIo>,
    ) -> Result<u64, ClaimError> {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != ids.len() || sorted.first() == Some(&0) {
            return Err(ClaimError::BadIds);
        }
        // Older batches have lower priorities; unique in the cluster (the partition in the
        // low bits), increasing in this partition.
        let priority = ((now_ns / 1_000) << 10 | u64::from(self.partition))
            .max(self.last_priority + (1 << 10));
        self.last_priority = priority;
        let round = self.next_round();
        let now_ms = now_ns / 1_000_000;
        let (claim_round, sends) = ClaimRound::start(
            self.partition,
            round,
            priority,
            ids,
            self.partitions,
            now_ms,
        );
        let claiming = &mut self.claiming[kind as usize];
        claiming.reserve(ids.len());
        for id in ids {
            claiming.insert(*id, (priority, round));
        }
        let claiming = Claiming {
            kind,
            round: claim_round,
            ids: ids.to_vec(),
            outcome: None,
        };
        self.claims.insert(round, claiming);
        for (home, claim) in sends {
            io.push(DirectoryIo::Send(
                home,
                DirectoryMessage::Claim { kind, claim },
            ));
        }
        if ids.is_empty() {
            self.finish(round);
        }
        Ok(round)
    }

    /// The answers for the batch whose claims began as `round`, once every id has one. The
    /// batch's ids then count as proposed until [`PartitionDirectory::settled`]: the batch
    /// goes on to its log entry and a holder must not give them up meanwhile.
    pub fn outcome(&mut self, round: u64) -> Option<BTreeMap<u128, ClaimAnswer>> {
        let key = self.current_round(round)?;
        let claiming = self.claims.get_mut(&key)?;
        let outcome = claiming.outcome.take()?;
        let claiming = self.claims.remove(&key).expect("just found");
        let proposed = &mut self.proposed[claiming.kind as usize];
        proposed.reserve(claiming.ids.len());
        for id in &claiming.ids {
            *proposed.entry(*id).or_default() += 1;
        }
        Some(outcome)
    }

    /// Whether the batch that began as `round` is still claiming.
    pub fn is_claiming(&self, round: u64) -> bool {
        self.current_round(round).is_some()
    }

    /// The batch's current round (it changes when the batch yields an id and claims again).
    fn current_round(&self, first: u64) -> Option<u64> {
        if self.claims.contains_key(&first) {
            return Some(first);
        }
        // A restarted batch keeps its first round as `first_round`.
        self.claims
            .iter()
            .find(|(_, c)| c.round.first_round() == first)
            .map(|(round, _)| *round)
    }

    /// Gives up the claims of the batch that began as `round` (it will not be proposed).
    pub fn abandon(&mut self, round: u64) {
        if let Some(key) = self.current_round(round) {
            let claiming = self.claims.remove(&key).expect("just found");
            for id in &claiming.ids {
                self.claiming[claiming.kind as usize].remove(id);
            }
        }
    }

    /// The batch whose claims came out as `ids` of `kind` was applied (or will never be):
    /// its ids are no longer proposed.
    pub fn settled(&mut self, kind: IdKind, ids: impl IntoIterator<Item = u128>) {
        let proposed = &mut self.proposed[kind as usize];
        for id in ids {
            if let Some(count) = proposed.get_mut(&id) {
                *count -= 1;
                if *count == 0 {
                    proposed.remove(&id);
                }
            }
        }
    }

    fn finish(&mut self, round: u64) {
        let Some(claiming) = self.claims.get_mut(&round) else {
            return;
        };
        if claiming.outcome.is_none() {
            if let Some(outcome) = claiming.round.outcome() {
                for id in &claiming.ids {
                    self.claiming[claiming.kind as usize].remove(id);
                }
                claiming.outcome = Some(outcome);
            }
        }
    }

    /// Handles a message from another partition (or this one) at `now_ms`. `ledger` is this
    /// partition's applied state; `term_committed` whether its leader has applied an entry of
    /// its own term.
    pub fn received(
        &mut self,
        message: DirectoryMessage,
        ledger: &Ledger,
        term_committed: bool,
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
            DirectoryMessage::Answers {
                kind,
                round,
                answers,
            } => {
                let Some(claiming) = self.claims.get_mut(&round) else {
                    return;
                };
                if claiming.kind != kind {
                    return;
                }
                for (id, answer) in answers {
                    if !matches!(answer, ClaimAnswer::Contested { .. }) {
                        claiming.round.answered(round, id, answer);
                    }
                }
                self.finish(round);
            }
            DirectoryMessage::Ask { kind, home, ids } => {
                if home >= self.partitions {
                    return;
                }
                let mut verdicts = Vec::with_capacity(ids.len());
                for (id, holder_round, asker) in ids {
                    let state = HolderState {
                        holds: ledger.holds(kind, id),
                        proposed: self.proposed[kind as usize].contains_key(&id),
                        claiming: self.claiming[kind as usize].get(&id).map(|(p, _)| *p),
                        term_committed,
                    };
                    let (verdict, yields) = holder_verdict(state, asker);
                    if yields {
                        self.yield_id(kind, id, now_ms);
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

    /// The batch claiming `id` yields it to an older batch: it claims everything again in a
    /// new round, after a short backoff (`ClaimRound::restart`).
    fn yield_id(&mut self, kind: IdKind, id: u128, now_ms: u64) {
        let Some((_, round)) = self.claiming[kind as usize].get(&id).copied() else {
            return;
        };
        let Some(old) = self.claims.remove(&round) else {
            return;
        };
        let new_round = self.next_round();
        let restarted = old
            .round
            .restart(new_round, &old.ids, self.partitions, now_ms);
        for id in &old.ids {
            if let Some(entry) = self.claiming[kind as usize].get_mut(id) {
                entry.1 = new_round;
            }
        }
        let claiming = Claiming {
            kind,
            round: restarted,
            ids: old.ids,
            outcome: None,
        };
        self.claims.insert(new_round, claiming);
    }

    /// This partition's log applied `command` (a directory entry it appended) with `reply`.
    pub fn applied(
        &mut self,
        kind: IdKind,
        command: &DirectoryCommand,
        reply: &Reply,
        now_ms: u64,
        io: &mut Vec<DirectoryIo>,
    ) {
        let Reply::Directory(answers) = reply else {
            unreachable!("a directory entry answers directory answers, not {reply:?}");
        };
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
        for claiming in self.claims.values_mut() {
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
        !self.claims.is_empty() || self.resolutions.iter().any(|r| !r.is_empty())
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

    use super::{DirectoryIo, DirectoryMessage, PartitionDirectory};
    use kassa_shard::directory::Verdict;
    use kassa_shard::{Ledger, LedgerConfig};

    /// A batch still claiming an id yields it to an older batch: its verdict is "lacks", and
    /// it claims again in a new round, which the caller still names by its first round.
    #[test]
    fn a_claiming_batch_yields_to_an_older_one_and_claims_again() {
        let ledger = Ledger::new(LedgerConfig {
            partition: 1,
            partitions: PARTITIONS,
            ..LedgerConfig::default()
        });
        let mut directory = PartitionDirectory::new(1, PARTITIONS);
        assert!(directory.needs_epoch());
        directory.set_epoch(7);
        let mut io = Vec::new();
        let ids = [5u128, 6];
        assert!(directory
            .claim(IdKind::Transfer, &[5, 5], 1, &mut io)
            .is_err());
        assert!(directory.claim(IdKind::Transfer, &[0], 1, &mut io).is_err());
        let round = directory
            .claim(IdKind::Transfer, &ids, 2_000_000_000, &mut io)
            .expect("claims");
        assert_eq!(round >> 24, 7);
        let claims = io.len();
        assert!(
            claims >= 1
                && io
                    .iter()
                    .all(|a| matches!(a, DirectoryIo::Send(_, DirectoryMessage::Claim { .. })))
        );
        io.clear();
        // A younger batch asks: it waits.
        let ask = |asker| DirectoryMessage::Ask {
            kind: IdKind::Transfer,
            home: 0,
            ids: vec![(5, round, asker)],
        };
        directory.received(ask(u64::MAX), &ledger, true, 2_000, &mut io);
        let verdict = |io: &[DirectoryIo]| match io {
            [DirectoryIo::Send(0, DirectoryMessage::Verdicts { verdicts, .. })] => verdicts[0].2,
            other => panic!("{other:?}"),
        };
        assert_eq!(verdict(&io), Verdict::NotYet);
        io.clear();
        // An older one wins the id; the batch claims everything again, later.
        directory.received(ask(1), &ledger, true, 2_000, &mut io);
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
        let answers = DirectoryMessage::Answers {
            kind: IdKind::Transfer,
            round: new_round,
            answers: ids.iter().map(|id| (*id, ClaimAnswer::Granted)).collect(),
        };
        io.clear();
        assert_eq!(directory.outcome(round), None);
        directory.received(answers, &ledger, true, 3_001, &mut io);
        let outcome = directory.outcome(round).expect("answered");
        assert_eq!(outcome, all(ClaimAnswer::Granted, &ids));
        // Proposed now: nobody wins them any more, until the batch is settled.
        directory.received(ask(0), &ledger, true, 3_002, &mut io);
        assert_eq!(verdict(&io), Verdict::NotYet);
        io.clear();
        directory.settled(IdKind::Transfer, ids);
        directory.received(ask(0), &ledger, true, 3_003, &mut io);
        assert_eq!(verdict(&io), Verdict::Lacks);
        io.clear();
        // Not before its leader has committed in its term.
        directory.received(ask(0), &ledger, false, 3_004, &mut io);
        assert_eq!(verdict(&io), Verdict::NotYet);
    }

    fn start(dir: &std::path::Path) -> Cores {
        let (cross_expiries, _) = async_channel::bounded(1);
        let setup = CoreSetup {
            data_dir: dir.to_path_buf(),
            partitions: PARTITIONS,
            cores: 2,
            snapshot_entries: 1_000,
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

        let first = block_on(cores.claim(1, IdKind::Transfer, ids.clone())).expect("claimed");
        assert_eq!(first.answers, all(ClaimAnswer::Granted, &ids));
        // Claiming again for the same partition changes nothing.
        let again = block_on(cores.claim(1, IdKind::Transfer, ids.clone())).expect("claimed");
        assert_eq!(again.answers, all(ClaimAnswer::Granted, &ids));
        assert!(again.round > first.round);
        // The same ids as accounts are another id space: nobody contests them.
        let accounts = block_on(cores.claim(3, IdKind::Account, ids.clone())).expect("claimed");
        assert_eq!(accounts.answers, all(ClaimAnswer::Granted, &ids));

        // Partition 2 wants them while partition 1's batches are still proposed: it waits.
        let contested = {
            let queues = cores.queues();
            let ids = ids.clone();
            std::thread::spawn(move || block_on(queues.claim(2, IdKind::Transfer, ids)))
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(!contested.is_finished(), "a proposed id is not handed over");
        for _ in 0..2 {
            block_on(cores.claims_settled(1, IdKind::Transfer, ids.clone())).expect("settled");
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
        block_on(cores.claims_settled(2, IdKind::Transfer, ids.clone())).expect("settled");

        // An account its holder stores is owned for good. (Records are still placed by id
        // here, so the holder is the id's home.)
        let held: u128 = 1_000;
        let holder = partition_of(held, PARTITIONS);
        let claimed = block_on(cores.claim(holder, IdKind::Account, vec![held])).expect("claim");
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
        block_on(cores.claims_settled(holder, IdKind::Account, vec![held])).expect("settled");
        let other = (holder + 1) % PARTITIONS;
        let refused = block_on(cores.claim(other, IdKind::Account, vec![held])).expect("claim");
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
        let again = block_on(cores.claim(other, IdKind::Account, vec![held])).expect("claim");
        assert_eq!(again.answers, all(ClaimAnswer::OwnedBy(holder), &[held]));
        assert!(again.round > refused.round, "rounds grow across leaders");
        // Partition 2's claims from before the restart are orphans now: nothing of its holds
        // them, so partition 1 gets them after asking.
        let third = block_on(cores.claim(1, IdKind::Transfer, ids.clone())).expect("claimed");
        assert_eq!(third.answers, all(ClaimAnswer::Granted, &ids));
        cores.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
