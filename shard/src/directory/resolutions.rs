//! [`Resolutions`]: what an id home's leader does when a claim meets an id that another
//! partition claimed before: it asks that partition, settles its verdict through the home's
//! log, and answers the claimant. In memory only; see the module `directory` for the protocol.

use std::collections::BTreeMap;

use super::{
    ClaimAnswer, DirectoryCommand, HomeAction, Verdict, ASK_RETRY_MS, ASK_TIMEOUT_MS,
    RESOLUTIONS_MAX, WAITING_TTL_MS,
};

/// One contested id waiting for its holder's verdict.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    /// The claimant's batch's priority.
    priority: u64,
    /// When the claimant last claimed the id (see [`WAITING_TTL_MS`]).
    claimed_ms: u64,
    holder: u32,
    /// The holder's claim round the question is about.
    holder_round: u64,
    /// The claimant's latest round that wants the id.
    round: u64,
    /// When to ask (again): due at once when new, after [`ASK_TIMEOUT_MS`] while a question
    /// is out or a final verdict is on its way to the log, after [`ASK_RETRY_MS`] past a
    /// "not yet".
    ask_at_ms: u64,
    /// A final verdict went to the log as a `Settle` entry; its apply ends the wait. Further
    /// verdicts for the same question (duplicates) append nothing more. If the entry is lost
    /// (its append failed), the holder is asked again at `ask_at_ms`.
    settling: bool,
}

/// A home leader's resolutions in progress, in memory only. A new leader starts with none:
/// claimants that got no answer claim again, and the claims find the contested ids again.
#[derive(Default, Debug)]
pub struct Resolutions {
    /// (id, claimant) → the holder being asked.
    waiting: BTreeMap<(u128, u32), Waiting>,
}

impl Resolutions {
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// An entry of the home's log, applied with `answers` ([`super::IdDirectory::apply`]'s):
    /// final answers go to their claimants, contested ids wait for their holder's verdict
    /// (asked on the next [`Resolutions::tick`]).
    pub fn applied(
        &mut self,
        command: &DirectoryCommand,
        answers: &[ClaimAnswer],
        now_ms: u64,
        actions: &mut Vec<HomeAction>,
    ) {
        match command {
            DirectoryCommand::Claim {
                claimant,
                round,
                priority,
                ids,
            } => {
                assert_eq!(ids.len(), answers.len());
                for (id, answer) in ids.iter().zip(answers) {
                    let round = (*round, *priority);
                    self.decided(*claimant, round, *id, *answer, now_ms, actions);
                }
            }
            DirectoryCommand::Settle {
                id,
                claimant,
                round,
                ..
            } => {
                let [answer] = answers else {
                    panic!("a settle answers once, not {answers:?}");
                };
                // The answer holds at this point of the log, after every round of the claimant
                // that waits for the id began: it answers the latest.
                let (round, priority, claimed_ms) = match self.waiting.remove(&(*id, *claimant)) {
                    Some(waiting) => (
                        waiting.round.max(*round),
                        waiting.priority,
                        waiting.claimed_ms,
                    ),
                    None => (*round, u64::MAX, now_ms),
                };
                let round = (round, priority);
                self.decided(*claimant, round, *id, *answer, claimed_ms, actions);
            }
            // Answered to the holder by the driver; nothing is contested.
            DirectoryCommand::Lease { .. } => {}
        }
    }

    fn decided(
        &mut self,
        claimant: u32,
        (round, priority): (u64, u64),
        id: u128,
        answer: ClaimAnswer,
        claimed_ms: u64,
        actions: &mut Vec<HomeAction>,
    ) {
        match answer {
            ClaimAnswer::Contested {
                holder,
                round: holder_round,
            } => {
                let full = self.waiting.len() >= RESOLUTIONS_MAX;
                match self.waiting.get_mut(&(id, claimant)) {
                    Some(waiting)
                        if waiting.holder == holder && waiting.holder_round == holder_round =>
                    {
                        waiting.claimed_ms = waiting.claimed_ms.max(claimed_ms);
                        // The claimant's latest round (its latest batch) is the one to serve.
                        if round > waiting.round {
                            waiting.round = round;
                            waiting.priority = priority;
                        }
                    }
                    Some(waiting) => {
                        let latest = round > waiting.round;
                        *waiting = Waiting {
                            priority: if latest { priority } else { waiting.priority },
                            claimed_ms: waiting.claimed_ms.max(claimed_ms),
                            holder,
                            holder_round,
                            round: waiting.round.max(round),
                            ask_at_ms: 0,
                            settling: false,
                        };
                    }
                    // Past the limit the claimant's next claim finds the id contested again.
                    None if full => {}
                    None => {
                        let waiting = Waiting {
                            priority,
                            claimed_ms,
                            holder,
                            holder_round,
                            round,
                            ask_at_ms: 0,
                            settling: false,
                        };
                        self.waiting.insert((id, claimant), waiting);
                    }
                }
            }
            answer => actions.push(HomeAction::Answer {
                claimant,
                round,
                id,
                answer,
            }),
        }
    }

    /// A holder's verdicts, each on the id and claim round it was asked about: final ones are
    /// settled through the log, "not yet" is asked again after [`ASK_RETRY_MS`], and those
    /// about a round no longer waited on are ignored.
    pub fn verdicts(
        &mut self,
        holder: u32,
        verdicts: &[(u128, u64, Verdict)],
        now_ms: u64,
        actions: &mut Vec<HomeAction>,
    ) {
        for (id, holder_round, verdict) in verdicts {
            let asked =
                |w: &Waiting| w.holder == holder && w.holder_round == *holder_round && !w.settling;
            let keys: Vec<(u128, u32)> = self
                .waiting
                .range((*id, 0)..=(*id, u32::MAX))
                .filter(|(_, waiting)| asked(waiting))
                .map(|(key, _)| *key)
                .collect();
            for key in keys {
                let waiting = self.waiting.get_mut(&key).expect("just found");
                match verdict {
                    Verdict::NotYet => waiting.ask_at_ms = now_ms + ASK_RETRY_MS,
                    Verdict::Holds | Verdict::Lacks => {
                        // The settle entry answers it. If the entry is lost, the holder is
                        // asked again after the timeout; if this leader is lost, the next one
                        // starts over from the claimant's next claim.
                        waiting.settling = true;
                        waiting.ask_at_ms = now_ms + ASK_TIMEOUT_MS;
                        actions.push(HomeAction::Append(DirectoryCommand::Settle {
                            id: key.0,
                            holder,
                            holder_round: waiting.holder_round,
                            verdict: *verdict,
                            claimant: key.1,
                            round: waiting.round,
                        }));
                    }
                }
            }
        }
    }

    /// Asks every holder whose question is due, one message per holder.
    pub fn tick(&mut self, now_ms: u64, actions: &mut Vec<HomeAction>) {
        (self.waiting).retain(|_, waiting| now_ms <= waiting.claimed_ms + WAITING_TTL_MS);
        let mut asks: BTreeMap<u32, Vec<(u128, u64, u64)>> = BTreeMap::new();
        for ((id, _), waiting) in self.waiting.iter_mut() {
            if waiting.ask_at_ms <= now_ms {
                waiting.ask_at_ms = now_ms + ASK_TIMEOUT_MS;
                waiting.settling = false;
                let ids = asks.entry(waiting.holder).or_default();
                match ids.last_mut() {
                    // Several claimants of one id: ask once, for the oldest.
                    Some((last, round, priority))
                        if *last == *id && *round == waiting.holder_round =>
                    {
                        *priority = (*priority).min(waiting.priority);
                    }
                    _ => ids.push((*id, waiting.holder_round, waiting.priority)),
                }
            }
        }
        for (holder, ids) in asks {
            actions.push(HomeAction::Ask { holder, ids });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contested_claim_asks_the_holder_and_answers_after_the_settle() {
        let mut resolutions = Resolutions::default();
        let mut actions = Vec::new();
        let id = 42;
        let claim = DirectoryCommand::Claim {
            claimant: 3,
            round: 5,
            priority: 7,
            ids: vec![id],
        };
        let contested = ClaimAnswer::Contested {
            holder: 1,
            round: 2,
        };
        resolutions.applied(&claim, &[contested], 100, &mut actions);
        assert!(actions.is_empty());
        resolutions.tick(100, &mut actions);
        assert_eq!(
            actions,
            vec![HomeAction::Ask {
                holder: 1,
                ids: vec![(id, 2, 7)]
            }]
        );
        actions.clear();
        resolutions.verdicts(1, &[(id, 2, Verdict::NotYet)], 100, &mut actions);
        resolutions.tick(100, &mut actions);
        assert!(actions.is_empty(), "not asked again before the retry time");
        resolutions.tick(100 + ASK_RETRY_MS, &mut actions);
        assert_eq!(actions.len(), 1);
        actions.clear();
        resolutions.verdicts(1, &[(id, 1, Verdict::Lacks)], 130, &mut actions);
        assert!(actions.is_empty(), "a verdict about another round");
        resolutions.verdicts(1, &[(id, 2, Verdict::Lacks)], 130, &mut actions);
        let settle = DirectoryCommand::Settle {
            id,
            holder: 1,
            holder_round: 2,
            verdict: Verdict::Lacks,
            claimant: 3,
            round: 5,
        };
        assert_eq!(actions, vec![HomeAction::Append(settle.clone())]);
        actions.clear();
        resolutions.applied(&settle, &[ClaimAnswer::Granted], 130, &mut actions);
        let answer = HomeAction::Answer {
            claimant: 3,
            round: 5,
            id,
            answer: ClaimAnswer::Granted,
        };
        assert_eq!(actions, vec![answer]);
        assert!(resolutions.is_empty());
    }

    /// A settle entry that never applies (its append failed) does not leave the claimant
    /// waiting for good: the holder is asked again after the timeout, and its verdict goes to
    /// the log again. A duplicated verdict appends nothing more.
    #[test]
    fn a_lost_settle_is_asked_for_again() {
        let mut resolutions = Resolutions::default();
        let mut actions = Vec::new();
        let (id, holder, holder_round) = (9, 2, 4);
        let claim = DirectoryCommand::Claim {
            claimant: 0,
            round: 1,
            priority: 3,
            ids: vec![id],
        };
        let contested = ClaimAnswer::Contested {
            holder,
            round: holder_round,
        };
        resolutions.applied(&claim, &[contested], 0, &mut actions);
        resolutions.tick(0, &mut actions);
        assert_eq!(actions.len(), 1, "asked");
        actions.clear();
        let lacks = [(id, holder_round, Verdict::Lacks)];
        resolutions.verdicts(holder, &lacks, 10, &mut actions);
        assert!(matches!(
            actions[..],
            [HomeAction::Append(DirectoryCommand::Settle { .. })]
        ));
        actions.clear();
        resolutions.verdicts(holder, &lacks, 11, &mut actions);
        assert!(actions.is_empty(), "a duplicated verdict appends nothing");
        // The claimant keeps claiming (its claim finds the id contested still).
        resolutions.applied(&claim, &[contested], 100, &mut actions);
        resolutions.tick(10 + ASK_TIMEOUT_MS - 1, &mut actions);
        assert!(actions.is_empty(), "not before the timeout");
        resolutions.tick(10 + ASK_TIMEOUT_MS, &mut actions);
        assert_eq!(
            actions,
            vec![HomeAction::Ask {
                holder,
                ids: vec![(id, holder_round, 3)]
            }]
        );
        actions.clear();
        resolutions.verdicts(holder, &lacks, 10 + ASK_TIMEOUT_MS, &mut actions);
        assert!(matches!(
            actions[..],
            [HomeAction::Append(DirectoryCommand::Settle { .. })]
        ));
    }
}
