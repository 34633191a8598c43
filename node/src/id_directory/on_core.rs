//! The id directory on a partition's core: the I/O around [`PartitionDirectory`]. Messages go
//! out through the [`Transport`] (today the cores' queues), entries into the partition's own
//! log, and claims wait for their outcome on a oneshot per batch.
//!
//! Bounds: at most [`DIRECTORY_APPENDS_MAX`] directory entries are being appended per
//! partition; past that an append is dropped, which the protocol tolerates (a claimant claims
//! again after `CLAIM_RETRY_MS`, a home asks a holder again after `ASK_TIMEOUT_MS`). A
//! stopping core appends nothing new and waits for the appends it started.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use foldhash::fast::FixedState;
use kassa_raft::Partition;
use kassa_shard::directory::{ClaimAnswer, IdKind};
use kassa_shard::{Command, Reply};

use super::{
    directory_command, ClaimError, DirectoryIo, DirectoryMessage, PartitionDirectory, Proposer,
    Transport, DIRECTORY_TICK_MS,
};
use crate::clock::realtime_ns;
use crate::NodeError;

/// How long a batch waits for its claims' answers before it fails (every home is on this
/// node today, so only an overloaded or stopping node gets here).
pub const CLAIM_WAIT_MAX: Duration = Duration::from_secs(30);
/// How long a claim that overlaps another batch's waits before it tries again.
const OVERLAP_RETRY: Duration = Duration::from_millis(1);
/// Directory entries one partition appends at once; more are dropped (and sent again by the
/// protocol's retries).
pub const DIRECTORY_APPENDS_MAX: usize = 1_024;

/// Every claimed id's answer, the round that names the claims and who proposes the ids: they
/// count as proposed (a holder does not give them up) until settled with `proposer`, or for a
/// batch until the leader term it began in ends. A batch must be appended in that term or not
/// at all.
#[derive(Debug)]
pub struct ClaimOutcome {
    pub round: u64,
    pub proposer: Proposer,
    pub answers: BTreeMap<u128, ClaimAnswer>,
}

/// Milliseconds on a clock that never goes back, for the directory's timers (resends, asks,
/// backoffs). Claim priorities come from the wall clock instead: they are compared across
/// partitions, so across processes.
pub(crate) fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    start.elapsed().as_millis() as u64
}

/// A partition's directory on its core: the pure state and what waits on it.
pub struct CoreDirectory {
    state: RefCell<PartitionDirectory>,
    /// Claims waiting for their outcome, by their first round.
    waiters: RefCell<HashMap<u64, tokio::sync::oneshot::Sender<()>, FixedState>>,
    /// Directory entries being appended.
    appends: Cell<usize>,
    /// The core is stopping: nothing new is appended.
    closed: Cell<bool>,
}

impl CoreDirectory {
    pub fn new(partition: u32, partitions: u32) -> CoreDirectory {
        CoreDirectory {
            state: RefCell::new(PartitionDirectory::new(partition, partitions)),
            waiters: RefCell::new(HashMap::with_hasher(FixedState::with_seed(0))),
            appends: Cell::new(0),
            closed: Cell::new(false),
        }
    }

    /// The core stops taking requests, so no answer reaches it any more: claims waiting fail
    /// now (with [`NodeError::ShuttingDown`]), new ones fail at once, and nothing new is
    /// appended.
    pub fn close(&self) {
        self.closed.set(true);
        self.waiters.borrow_mut().clear();
    }

    /// Returns once the appends in progress are done.
    pub async fn appends_done(&self) {
        while self.appends.get() > 0 {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Reads the state (tests and status).
    pub fn with<T>(&self, read: impl FnOnce(&PartitionDirectory) -> T) -> T {
        read(&self.state.borrow())
    }
}

/// What the directory's driver needs of the partition it runs for (the core's `Served`): the
/// driver reaches the core only through this and a [`Transport`].
pub(crate) trait DirectoryHost: 'static {
    /// The partition's number in the cluster.
    fn number(&self) -> u32;
    /// Its Raft group: its status, and reads of its applied ledger.
    fn partition(&self) -> &Partition;
    fn directory(&self) -> &CoreDirectory;
    /// Writes `command` through the partition's log (a log that can no longer be written
    /// stops the process).
    fn write(
        &self,
        command: Command,
    ) -> impl std::future::Future<Output = Result<Reply, NodeError>>;
}

/// A message from another partition's leader (or this one's) for `served`.
pub(crate) fn received<H: DirectoryHost, T: Transport + 'static>(
    served: &Rc<H>,
    transport: &Rc<T>,
    message: DirectoryMessage,
) {
    let status = served.partition().status();
    // A single voter is its partition's only leader, so its status confirms it. With
    // replicas, a holder must confirm it still leads (a linearizable read) before it answers
    // "lacks" (`HolderState::term_committed`); the directory also waits for its own epoch.
    let leader_confirmed = status.leader && status.applied_term == Some(status.term);
    let now_ms = monotonic_ms();
    let mut io = Vec::new();
    {
        let mut state = served.directory().state.borrow_mut();
        state.set_term(status.term);
        served.partition().read(|ledger| {
            state.received(message, ledger, leader_confirmed, now_ms, &mut io);
        });
    }
    perform(served, transport, io);
}

/// Claims `ids` of `kind` for a cross-partition transaction that will store them in `served`
/// ([`Proposer::Transaction`]) and waits for every answer, at most [`CLAIM_WAIT_MAX`]. If the
/// caller is gone when the answers come, the ids are settled at once (the transaction will
/// not be decided).
pub(crate) async fn claim_for_transaction<H: DirectoryHost, T: Transport + 'static>(
    served: &Rc<H>,
    transport: &Rc<T>,
    kind: IdKind,
    ids: Vec<u128>,
    reply: tokio::sync::oneshot::Sender<Result<ClaimOutcome, NodeError>>,
) {
    let outcome = claim_timed(served, transport, kind, &ids, true).await;
    if let Err(Ok(outcome)) = reply.send(outcome) {
        let mut state = served.directory().state.borrow_mut();
        state.settled(outcome.proposer, kind, outcome.answers.into_keys());
    }
}

/// Claims `ids` of `kind` for a batch of `served`, on its core, and waits for every answer,
/// at most [`CLAIM_WAIT_MAX`]. The ids then count as proposed until [`settled`] or until the
/// leader term the claims began in ends.
pub(crate) async fn claim_here<H: DirectoryHost, T: Transport + 'static>(
    served: &Rc<H>,
    transport: &Rc<T>,
    kind: IdKind,
    ids: &[u128],
) -> Result<ClaimOutcome, NodeError> {
    claim_timed(served, transport, kind, ids, false).await
}

async fn claim_timed<H: DirectoryHost, T: Transport + 'static>(
    served: &Rc<H>,
    transport: &Rc<T>,
    kind: IdKind,
    ids: &[u128],
    for_transaction: bool,
) -> Result<ClaimOutcome, NodeError> {
    let claimed = claim(served, transport, kind, ids, for_transaction);
    let outcome = monoio::time::timeout(CLAIM_WAIT_MAX, claimed).await;
    outcome.unwrap_or_else(|_| {
        Err(NodeError::Transaction(format!(
            "the id homes did not answer within {} s",
            CLAIM_WAIT_MAX.as_secs()
        )))
    })
}

/// Splits the ids a batch of `served` will store without holding them into those its leases
/// cover (proposed until the returned [`ProposedIds`] goes) and those it must claim, and asks
/// for the leases that would spare the rest their claims next time.
pub(crate) fn use_leases<'a, H: DirectoryHost, T: Transport + 'static>(
    served: &'a Rc<H>,
    transport: &Rc<T>,
    kind: IdKind,
    ids: Vec<u128>,
) -> (ProposedIds<'a, H>, Vec<u128>) {
    let mut io = Vec::new();
    let (covered, claims, term) = {
        let mut state = served.directory().state.borrow_mut();
        state.set_term(served.partition().status().term);
        let (covered, claims) = state.use_leases(kind, ids, monotonic_ms(), &mut io);
        (covered, claims, state.term())
    };
    perform(served, transport, io);
    let proposed = ProposedIds {
        served: served.as_ref(),
        kind,
        term,
        covered,
        ids: Vec::new(),
        keep: false,
    };
    (proposed, claims)
}

/// The ids a batch of a partition will store without holding them, proposed (a holder does
/// not give them up) from its pre-check until this goes: then they are settled (the batch
/// was applied, or its entry was never appended), unless [`ProposedIds::keep`] said the
/// entry's fate is unknown. Kept ids stay proposed until the leader term ends.
pub(crate) struct ProposedIds<'a, H: DirectoryHost> {
    served: &'a H,
    kind: IdKind,
    /// The leader term the batch began in.
    term: u64,
    /// The name of its ids that leases cover, if any.
    covered: Option<u64>,
    /// Its claimed ids.
    ids: Vec<u128>,
    keep: bool,
}

impl<H: DirectoryHost> ProposedIds<'_, H> {
    /// Adds the ids of a claim's outcome; false (and nothing added: they are settled) if the
    /// claim began in another leader term than the batch.
    pub(crate) fn add(&mut self, outcome: ClaimOutcome) -> bool {
        let ids = outcome.answers.into_keys();
        if outcome.proposer != (Proposer::Batch { term: self.term }) {
            settled(self.served, outcome.proposer, self.kind, ids);
            return false;
        }
        self.ids.extend(ids);
        true
    }

    /// Whether the partition is still led in the term the batch began in: only then may its
    /// entry be appended (a batch of an earlier term appended in a later one would store ids
    /// the later leader no longer counts as proposed).
    pub(crate) fn term_holds(&self) -> bool {
        let status = self.served.partition().status();
        let directory_term = self.served.directory().with(|state| state.term());
        status.leader && status.term == self.term && directory_term == self.term
    }

    /// The leader term the batch began in, the only one its entry may be appended in.
    pub(crate) fn term(&self) -> u64 {
        self.term
    }

    /// The batch's entry may have been appended and may still commit: its ids stay proposed
    /// until the leader term ends.
    pub(crate) fn keep(mut self) {
        self.keep = true;
    }
}

impl<H: DirectoryHost> Drop for ProposedIds<'_, H> {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let mut state = self.served.directory().state.borrow_mut();
        if let Some(covered) = self.covered {
            state.release_covered(self.term, covered);
        }
        let proposer = Proposer::Batch { term: self.term };
        state.settled(proposer, self.kind, std::mem::take(&mut self.ids));
    }
}

/// The batch or transaction `proposer` that claimed `ids` of `kind` for `served` was applied
/// or given up.
pub(crate) fn settled<H: DirectoryHost>(
    served: &H,
    proposer: Proposer,
    kind: IdKind,
    ids: impl IntoIterator<Item = u128>,
) {
    served
        .directory()
        .state
        .borrow_mut()
        .settled(proposer, kind, ids);
}

/// Logs a `ClaimEpoch` of the leader's current term and hands its index to the directory.
async fn log_epoch<H: DirectoryHost>(served: &H) -> Result<(), NodeError> {
    let term = served.partition().status().term;
    let written = served.write(Command::ClaimEpoch).await;
    let mut state = served.directory().state.borrow_mut();
    match written {
        Ok(Reply::ClaimEpoch) => {
            let status = served.partition().status();
            let applied = status.applied_index.expect("the epoch entry was applied");
            state.set_term(status.term);
            state.set_epoch(term, applied);
            Ok(())
        }
        Ok(other) => unreachable!("a claim epoch answers ClaimEpoch, not {other:?}"),
        Err(error) => {
            state.epoch_failed();
            Err(error)
        }
    }
}

/// Claims `ids` of `kind` for a batch of `served` and waits for every answer.
async fn claim<H: DirectoryHost, T: Transport + 'static>(
    served: &Rc<H>,
    transport: &Rc<T>,
    kind: IdKind,
    ids: &[u128],
    for_transaction: bool,
) -> Result<ClaimOutcome, NodeError> {
    let directory = served.directory();
    let mut io = Vec::new();
    let (round, proposer) = loop {
        if directory.closed.get() {
            return Err(NodeError::ShuttingDown);
        }
        let term = served.partition().status().term;
        directory.state.borrow_mut().set_term(term);
        if directory.state.borrow().needs_epoch() {
            log_epoch(served.as_ref()).await?;
        }
        let claimed = {
            let mut state = directory.state.borrow_mut();
            let (wall_ns, now_ms) = (realtime_ns(), monotonic_ms());
            if for_transaction {
                let claimed = state.claim_for_transaction(kind, ids, wall_ns, now_ms, &mut io);
                claimed.map(|round| (round, Proposer::Transaction))
            } else {
                let claimed = state.claim(kind, ids, wall_ns, now_ms, &mut io);
                claimed.map(|round| (round, Proposer::Batch { term: state.term() }))
            }
        };
        match claimed {
            Ok(claimed) => break claimed,
            // Another batch of this partition claims one of the ids: after it.
            Err(ClaimError::Overlaps) => monoio::time::sleep(OVERLAP_RETRY).await,
            // The term changed under the epoch's write: log this term's.
            Err(ClaimError::NoEpoch) => {}
            Err(error) => return Err(NodeError::Transaction(error.to_string())),
        }
    };
    let (answered, outcome) = tokio::sync::oneshot::channel();
    if directory.closed.get() {
        directory.state.borrow_mut().abandon(round);
        return Err(NodeError::ShuttingDown);
    }
    directory.waiters.borrow_mut().insert(round, answered);
    // Abandons the claims if the wait is cut short (a timeout, a stopping node).
    struct Abandon<'a>(&'a CoreDirectory, Option<u64>);
    impl Drop for Abandon<'_> {
        fn drop(&mut self) {
            if let Some(round) = self.1 {
                self.0.waiters.borrow_mut().remove(&round);
                self.0.state.borrow_mut().abandon(round);
            }
        }
    }
    let mut abandon = Abandon(directory, Some(round));
    perform(served, transport, io);
    // The sender lives in `waiters` until the outcome or the abandon.
    let _ = outcome.await;
    let outcome = directory.state.borrow_mut().outcome(round);
    match outcome {
        Some(Ok(answers)) => {
            abandon.1 = None;
            Ok(ClaimOutcome {
                round,
                proposer,
                answers,
            })
        }
        Some(Err(error)) => Err(NodeError::Transaction(error.to_string())),
        // Woken without an outcome: the directory is going away with its core.
        None => Err(NodeError::ShuttingDown),
    }
}

/// Does what a partition's directory asked: messages out through the transport, entries
/// into its own log (each applied entry may ask for more), waiting claims woken.
fn perform<H: DirectoryHost, T: Transport + 'static>(
    served: &Rc<H>,
    transport: &Rc<T>,
    io: Vec<DirectoryIo>,
) {
    let directory = served.directory();
    for action in io {
        match action {
            DirectoryIo::Send(partition, message) => transport.send(partition, message),
            DirectoryIo::Outcome(round) => {
                if let Some(waiter) = directory.waiters.borrow_mut().remove(&round) {
                    let _ = waiter.send(());
                }
            }
            _ if directory.closed.get() || directory.appends.get() >= DIRECTORY_APPENDS_MAX => {
                tracing::debug!(
                    partition = served.number(),
                    "a directory append was dropped"
                );
                if matches!(action, DirectoryIo::LogEpoch) {
                    directory.state.borrow_mut().epoch_failed();
                }
            }
            DirectoryIo::LogEpoch => {
                directory.appends.set(directory.appends.get() + 1);
                let served = served.clone();
                monoio::spawn(async move {
                    if let Err(error) = log_epoch(served.as_ref()).await {
                        tracing::warn!(partition = served.number(), %error, "a claim epoch failed");
                    }
                    let appends = &served.directory().appends;
                    appends.set(appends.get() - 1);
                });
            }
            DirectoryIo::Append(kind, command) => {
                directory.appends.set(directory.appends.get() + 1);
                let (served, transport) = (served.clone(), transport.clone());
                monoio::spawn(async move {
                    let entry = directory_command(kind, command.clone());
                    let written = served.write(entry).await;
                    let directory = served.directory();
                    directory.appends.set(directory.appends.get() - 1);
                    match written {
                        Ok(reply) => {
                            let now_ms = monotonic_ms();
                            let mut io = Vec::new();
                            let mut state = directory.state.borrow_mut();
                            served.partition().read(|ledger| {
                                state.applied(kind, &command, &reply, ledger, now_ms, &mut io);
                            });
                            drop(state);
                            perform(&served, &transport, io);
                        }
                        // A claimant claims again; a home asks the holder again.
                        Err(error) => {
                            tracing::warn!(partition = served.number(), %error, "a directory entry failed");
                        }
                    }
                });
            }
        }
    }
}

/// Resends claims and asks holders again as their times come, until `stop`.
pub(crate) async fn directory_loop<H: DirectoryHost, T: Transport + 'static>(
    partitions: Vec<Rc<H>>,
    stop: Rc<Cell<bool>>,
    transport: Rc<T>,
) {
    while !stop.get() {
        monoio::time::sleep(Duration::from_millis(DIRECTORY_TICK_MS)).await;
        let now_ms = monotonic_ms();
        for served in &partitions {
            let mut io = Vec::new();
            {
                let mut state = served.directory().state.borrow_mut();
                if !state.is_busy() {
                    continue;
                }
                state.tick(now_ms, &mut io);
            }
            perform(served, &transport, io);
        }
    }
}
