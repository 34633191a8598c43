//! [`ClaimRound`]: a claimant's side of one batch's claims at the id homes; see the module
//! `directory` for the protocol.

use std::collections::{BTreeMap, HashMap};

use foldhash::fast::FixedState;

use super::{ClaimAnswer, DirectoryCommand, CLAIM_RETRY_MS, CLAIM_YIELD_BACKOFF_MS};
use crate::partitioning::partition_of;

/// The claimant's side of one batch's claims.
pub struct ClaimRound {
    claimant: u32,
    /// Unique among the claimant's rounds, increasing (for example its term and a counter).
    round: u64,
    /// The batch's first round: its name for the caller, kept when it claims again.
    first_round: u64,
    /// The batch's priority, kept across its rounds (see [`DirectoryCommand::Claim`]).
    priority: u64,
    /// Per home: the ids claimed there, and when to send the claim (again).
    homes: BTreeMap<u32, (Vec<u128>, u64)>,
    /// Every id claimed, with its answer once one came.
    answers: HashMap<u128, Option<ClaimAnswer>, FixedState>,
    unanswered: usize,
}

impl ClaimRound {
    /// Claims `ids` (distinct, non-zero) for `claimant`'s round `round` of a batch of
    /// `priority`: the round and the claims to send now, one per home.
    pub fn start(
        claimant: u32,
        round: u64,
        priority: u64,
        ids: &[u128],
        partitions: u32,
        now_ms: u64,
    ) -> (ClaimRound, Vec<(u32, DirectoryCommand)>) {
        let mut homes: BTreeMap<u32, (Vec<u128>, u64)> = BTreeMap::new();
        let mut answers = HashMap::with_capacity_and_hasher(ids.len(), FixedState::with_seed(0));
        for id in ids {
            assert_ne!(*id, 0);
            let first = answers.insert(*id, None).is_none();
            assert!(first, "id {id} claimed twice in one round");
            let home = partition_of(*id, partitions);
            let retry_ms = now_ms + CLAIM_RETRY_MS;
            homes
                .entry(home)
                .or_insert((Vec::new(), retry_ms))
                .0
                .push(*id);
        }
        let sends = (homes.iter())
            .map(|(home, (ids, _))| {
                let claim = DirectoryCommand::Claim {
                    claimant,
                    round,
                    priority,
                    ids: ids.clone(),
                };
                (*home, claim)
            })
            .collect();
        let round = ClaimRound {
            claimant,
            round,
            first_round: round,
            priority,
            homes,
            answers,
            unanswered: ids.len(),
        };
        (round, sends)
    }

    pub fn round(&self) -> u64 {
        self.round
    }

    pub fn priority(&self) -> u64 {
        self.priority
    }

    /// The batch's first round, kept across [`ClaimRound::restart`].
    pub fn first_round(&self) -> u64 {
        self.first_round
    }

    /// The ids no home has answered yet.
    pub fn unanswered(&self) -> Vec<u128> {
        let ids = self.answers.iter().filter(|(_, answer)| answer.is_none());
        let mut ids: Vec<u128> = ids.map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids
    }

    /// The homes this round claims at.
    pub fn homes(&self) -> impl Iterator<Item = u32> + '_ {
        self.homes.keys().copied()
    }

    /// The same batch claiming again in a new round after it yielded an id: like
    /// [`ClaimRound::start`], but nothing is sent before [`CLAIM_YIELD_BACKOFF_MS`] (the first
    /// claims go out from [`ClaimRound::tick`]).
    pub fn restart(&self, round: u64, ids: &[u128], partitions: u32, now_ms: u64) -> ClaimRound {
        assert!(round > self.round);
        let (mut restarted, _) =
            ClaimRound::start(self.claimant, round, self.priority, ids, partitions, now_ms);
        for (_, send_ms) in restarted.homes.values_mut() {
            *send_ms = now_ms + CLAIM_YIELD_BACKOFF_MS;
        }
        restarted.first_round = self.first_round;
        restarted
    }

    /// The claims to send again: to every home that has not answered every id when its time
    /// came ([`CLAIM_RETRY_MS`] after the last claim), naming only the ids not answered.
    pub fn tick(&mut self, now_ms: u64) -> Vec<(u32, DirectoryCommand)> {
        let mut sends = Vec::new();
        for (home, (ids, send_ms)) in self.homes.iter_mut() {
            if now_ms < *send_ms {
                continue;
            }
            let unanswered: Vec<u128> = (ids.iter())
                .filter(|id| self.answers[*id].is_none())
                .copied()
                .collect();
            if unanswered.is_empty() {
                continue;
            }
            *send_ms = now_ms + CLAIM_RETRY_MS;
            let claim = DirectoryCommand::Claim {
                claimant: self.claimant,
                round: self.round,
                priority: self.priority,
                ids: unanswered,
            };
            sends.push((*home, claim));
        }
        sends
    }

    /// A home's final answer for one id (never [`ClaimAnswer::Contested`]) in round `round`;
    /// answers of other rounds, or for ids this round did not claim, are ignored. The first
    /// answer counts: a home answers a round's id again only by the same rules.
    pub fn answered(&mut self, round: u64, id: u128, answer: ClaimAnswer) {
        assert!(!matches!(answer, ClaimAnswer::Contested { .. }));
        if round != self.round {
            return;
        }
        if let Some(slot @ None) = self.answers.get_mut(&id) {
            *slot = Some(answer);
            self.unanswered -= 1;
        }
    }

    /// Every id's answer, once all are in.
    pub fn outcome(&self) -> Option<BTreeMap<u128, ClaimAnswer>> {
        if self.unanswered > 0 {
            return None;
        }
        let answers = self.answers.iter();
        Some(
            answers
                .map(|(id, answer)| (*id, answer.expect("answered")))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_claims_once_per_home_and_retries_only_the_unanswered() {
        let partitions = 4;
        let ids: Vec<u128> = (1..=40).collect();
        let (mut round, sends) = ClaimRound::start(0, 9, 1, &ids, partitions, 0);
        assert_eq!(sends.len(), round.homes().count());
        assert!(round.tick(CLAIM_RETRY_MS - 1).is_empty());
        round.answered(8, 40, ClaimAnswer::Granted);
        for id in &ids[..39] {
            round.answered(9, *id, ClaimAnswer::Granted);
        }
        assert!(round.outcome().is_none());
        let resent = round.tick(CLAIM_RETRY_MS);
        assert_eq!(resent.len(), 1);
        let (home, DirectoryCommand::Claim { ids: again, .. }) = &resent[0] else {
            panic!("a claim");
        };
        assert_eq!(*home, partition_of(40, partitions));
        assert_eq!(again, &vec![40]);
        round.answered(9, 40, ClaimAnswer::OwnedBy(2));
        let outcome = round.outcome().expect("complete");
        assert_eq!(outcome.len(), 40);
        assert_eq!(outcome[&40], ClaimAnswer::OwnedBy(2));
    }
}
