//! [`HeldLeases`]: the leases of other homes' buckets that a partition's leader holds (see the
//! module `directory`). In memory only: a new leader holds none until it asks again, which is
//! safe because a lease only ever spares claims.
//!
//! A lease's life at its holder:
//! - *requested* in a claim round of this leader ([`HeldLeases::requested`]); asked again in
//!   a new round if no answer came within [`LEASE_REQUEST_TIMEOUT_MS`] (the request or its
//!   answer was lost);
//! - *active* once the home's answer names that round ([`HeldLeases::answered`]): fresh ids of
//!   the bucket are stored without claiming ([`HeldLeases::covers`]);
//! - *dropped* for good the moment the home asks about any id of the bucket
//!   ([`HeldLeases::asked`]), before the holder answers: an answer "lacks" must never be
//!   followed by the holder storing that id under the lease. A grant arriving after the drop
//!   is ignored.
//! - *not yet*: the bucket may be leased later; asked again after [`LEASE_RETRY_MS`];
//! - *never* (the bucket has ids of other partitions, or was leased and released): not asked
//!   again by this leader.

use std::collections::BTreeMap;

use super::{lease_slot, IdKind, LEASE_BUCKETS, LEASE_RETRY_MS};

/// How long a partition waits for a home's answer to a lease request before it asks again.
pub const LEASE_REQUEST_TIMEOUT_MS: u64 = 1_000;

/// A home's answer for one bucket of a lease request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseAnswer {
    Granted,
    /// Not now: every id the home knows there is the asker's, but too few yet.
    NotYet,
    /// Never: the bucket holds other partitions' ids, or is or was leased to another.
    Never,
}

/// Lease buckets asked of one home in one message (and one `Lease` entry of its log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRequest {
    pub home: u32,
    /// Distinct buckets, ascending.
    pub buckets: Vec<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// Never asked for by this leader.
    Unasked,
    Requested {
        round: u64,
        retry_at_ms: u64,
    },
    Active {
        round: u64,
    },
    Refused {
        retry_at_ms: u64,
    },
    Dropped,
}

/// One partition leader's leases, per id space: one slot per (home, bucket), at
/// `home * LEASE_BUCKETS + bucket` (a batch looks up every id it stores).
#[derive(Debug)]
pub struct HeldLeases {
    partitions: u32,
    held: [Vec<Held>; 2],
}

impl HeldLeases {
    pub fn new(partitions: u32) -> HeldLeases {
        let partitions = partitions.max(1);
        let slots = partitions as usize * usize::from(LEASE_BUCKETS);
        HeldLeases {
            partitions,
            held: [(); 2].map(|_| vec![Held::Unasked; slots]),
        }
    }

    fn key(&self, id: u128) -> (u32, u16) {
        lease_slot(id, self.partitions)
    }

    fn slot(home: u32, bucket: u16) -> usize {
        home as usize * usize::from(LEASE_BUCKETS) + usize::from(bucket)
    }

    fn state(&self, kind: IdKind, (home, bucket): (u32, u16)) -> Held {
        self.held[kind as usize][Self::slot(home, bucket)]
    }

    fn state_mut(&mut self, kind: IdKind, (home, bucket): (u32, u16)) -> &mut Held {
        &mut self.held[kind as usize][Self::slot(home, bucket)]
    }

    /// Whether this leader may store `id` of `kind` without claiming it (if it does not hold
    /// the id already, the caller counts it as proposed until its batch is applied).
    pub fn covers(&self, kind: IdKind, id: u128) -> bool {
        matches!(self.state(kind, self.key(id)), Held::Active { .. })
    }

    /// The leases worth asking for so that later batches need not claim `ids`: per home, the
    /// buckets never asked for by this leader, or refused long enough ago.
    pub fn wanted(&self, kind: IdKind, ids: &[u128], now_ms: u64) -> Vec<LeaseRequest> {
        let mut wanted: BTreeMap<u32, Vec<u16>> = BTreeMap::new();
        for id in ids {
            let key = self.key(*id);
            let ask = match self.state(kind, key) {
                Held::Unasked => true,
                Held::Refused { retry_at_ms } | Held::Requested { retry_at_ms, .. } => {
                    retry_at_ms <= now_ms
                }
                Held::Active { .. } | Held::Dropped => false,
            };
            if ask {
                wanted.entry(key.0).or_default().push(key.1);
            }
        }
        wanted
            .into_iter()
            .map(|(home, mut buckets)| {
                buckets.sort_unstable();
                buckets.dedup();
                LeaseRequest { home, buckets }
            })
            .collect()
    }

    /// `request` was sent at `now_ms` in this leader's claim round `round`.
    pub fn requested(&mut self, kind: IdKind, request: &LeaseRequest, round: u64, now_ms: u64) {
        let retry_at_ms = now_ms + LEASE_REQUEST_TIMEOUT_MS;
        for bucket in &request.buckets {
            *self.state_mut(kind, (request.home, *bucket)) = Held::Requested { round, retry_at_ms };
        }
    }

    /// `home` answered the request of round `round`, per bucket. Answers for another round,
    /// or for a bucket dropped meanwhile, change nothing.
    pub fn answered(
        &mut self,
        kind: IdKind,
        home: u32,
        round: u64,
        answers: &[(u16, LeaseAnswer)],
        now_ms: u64,
    ) {
        if home >= self.partitions {
            return;
        }
        for (bucket, answer) in answers {
            if *bucket >= LEASE_BUCKETS {
                continue;
            }
            let state = self.state_mut(kind, (home, *bucket));
            if !matches!(*state, Held::Requested { round: asked, .. } if asked == round) {
                continue;
            }
            *state = match answer {
                LeaseAnswer::Granted => Held::Active { round },
                LeaseAnswer::NotYet => Held::Refused {
                    retry_at_ms: now_ms + LEASE_RETRY_MS,
                },
                LeaseAnswer::Never => Held::Dropped,
            };
        }
    }

    /// `home` asks about `id`: the lease of its bucket (held or asked for) is dropped for
    /// good, before any answer goes out.
    pub fn asked(&mut self, kind: IdKind, home: u32, id: u128) {
        let key = self.key(id);
        if key.0 != home {
            return;
        }
        *self.state_mut(kind, key) = Held::Dropped;
    }

    /// Active leases, for status.
    pub fn active(&self) -> usize {
        let active = |h: &&Held| matches!(h, Held::Active { .. });
        self.held
            .iter()
            .map(|h| h.iter().filter(active).count())
            .sum()
    }

    /// A new leader term: every lease is forgotten.
    pub fn clear(&mut self) {
        for held in &mut self.held {
            held.fill(Held::Unasked);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::in_bucket;
    use super::*;

    #[test]
    fn a_lease_is_used_only_once_granted_for_its_round_and_never_after_a_question() {
        let kind = IdKind::Transfer;
        let mut leases = HeldLeases::new(4);
        let ids = in_bucket(2, 5, 4, 3);
        assert!(!leases.covers(kind, ids[0]));
        let wanted = leases.wanted(kind, &ids, 0);
        assert_eq!(
            wanted,
            vec![LeaseRequest {
                home: 2,
                buckets: vec![5]
            }]
        );
        leases.requested(kind, &wanted[0], 7, 0);
        assert!(leases.wanted(kind, &ids, 0).is_empty(), "asked once");
        let lost = LEASE_REQUEST_TIMEOUT_MS;
        assert_eq!(
            leases.wanted(kind, &ids, lost),
            wanted,
            "asked again when lost"
        );
        leases.answered(kind, 2, 6, &[(5, LeaseAnswer::Granted)], 0);
        assert!(!leases.covers(kind, ids[0]), "an answer for another round");
        leases.answered(kind, 2, 7, &[(5, LeaseAnswer::Granted)], 0);
        assert!(ids.iter().all(|id| leases.covers(kind, *id)));
        assert!(!leases.covers(IdKind::Account, ids[0]), "id spaces apart");
        assert_eq!(leases.active(), 1);
        // A question from another home is not about this lease.
        leases.asked(kind, 1, ids[1]);
        assert!(leases.covers(kind, ids[0]));
        leases.asked(kind, 2, ids[1]);
        assert!(!leases.covers(kind, ids[0]), "dropped for the whole bucket");
        leases.answered(kind, 2, 7, &[(5, LeaseAnswer::Granted)], 0);
        assert!(!leases.covers(kind, ids[0]), "a late grant is ignored");
        assert!(
            leases.wanted(kind, &ids, 10_000).is_empty(),
            "not asked again"
        );
    }

    #[test]
    fn a_question_before_the_grant_cancels_it_and_a_refusal_is_asked_again_later() {
        let kind = IdKind::Account;
        let mut leases = HeldLeases::new(3);
        let ids = in_bucket(0, 1, 3, 1);
        let wanted = leases.wanted(kind, &ids, 0);
        leases.requested(kind, &wanted[0], 3, 0);
        leases.asked(kind, 0, ids[0]);
        leases.answered(kind, 0, 3, &[(1, LeaseAnswer::Granted)], 0);
        assert!(!leases.covers(kind, ids[0]));

        let other = in_bucket(1, 2, 3, 1);
        let wanted = leases.wanted(kind, &other, 0);
        leases.requested(kind, &wanted[0], 4, 0);
        leases.answered(kind, 1, 4, &[(2, LeaseAnswer::NotYet)], 100);
        assert!(!leases.covers(kind, other[0]));
        assert!(leases
            .wanted(kind, &other, 100 + LEASE_RETRY_MS - 1)
            .is_empty());
        assert_eq!(leases.wanted(kind, &other, 100 + LEASE_RETRY_MS), wanted);
        leases.requested(kind, &wanted[0], 5, 0);
        leases.answered(kind, 1, 5, &[(2, LeaseAnswer::Never)], 100);
        assert!(
            leases.wanted(kind, &other, 100_000).is_empty(),
            "never again"
        );
        leases.clear();
        assert_eq!(
            leases.wanted(kind, &ids, 0).len(),
            1,
            "a new leader asks anew"
        );
    }
}
