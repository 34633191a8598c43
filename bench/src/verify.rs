//! The balance checks both systems share: the benchmark's accounts must hold exactly what the
//! acknowledged transfers moved, and every ledger must balance (debits = credits, posted and
//! pending). Pure functions over sums the system-specific code read back; problems are
//! appended as sentences for the report.

use std::collections::BTreeMap;

use crate::results::Tally;

/// `sums` is `[debits_posted, credits_posted, debits_pending, credits_pending]` over the
/// benchmark's accounts.
pub fn check_totals(sums: &[u128; 4], tally: &Tally, problems: &mut Vec<String>) {
    let expected = tally.totals;
    let [debits_posted, credits_posted, debits_pending, credits_pending] = *sums;
    if debits_posted != expected.posted || credits_posted != expected.posted {
        problems.push(format!(
            "benchmark accounts: posted debits {debits_posted} / credits {credits_posted}, \
             the acknowledged transfers moved {}",
            expected.posted
        ));
    }
    if debits_pending != expected.pending || credits_pending != expected.pending {
        problems.push(format!(
            "benchmark accounts: pending debits {debits_pending} / credits {credits_pending}, \
             the acknowledged transfers reserved {}",
            expected.pending
        ));
    }
}

/// Per ledger, over all accounts: debits must equal credits.
pub fn check_ledgers(ledgers: &BTreeMap<u32, [u128; 4]>, problems: &mut Vec<String>) {
    if ledgers.is_empty() {
        problems.push("no accounts found".to_string());
    }
    for (ledger, [debits_posted, credits_posted, debits_pending, credits_pending]) in ledgers {
        if debits_posted != credits_posted {
            problems.push(format!(
                "ledger {ledger}: posted debits {debits_posted} != credits {credits_posted}"
            ));
        }
        if debits_pending != credits_pending {
            problems.push(format!(
                "ledger {ledger}: pending debits {debits_pending} != credits {credits_pending}"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Totals;

    #[test]
    fn imbalances_and_lost_transfers_are_reported() {
        let tally = Tally {
            acknowledged: Vec::new(),
            totals: Totals {
                posted: 10,
                pending: 2,
            },
        };
        let mut problems = Vec::new();
        check_totals(&[10, 10, 2, 2], &tally, &mut problems);
        assert!(problems.is_empty());
        check_totals(&[9, 9, 2, 2], &tally, &mut problems);
        assert_eq!(problems.len(), 1);
        let mut ledgers = BTreeMap::new();
        ledgers.insert(1, [5, 5, 0, 1]);
        check_ledgers(&ledgers, &mut problems);
        assert_eq!(problems.len(), 2);
    }
}
