//! Table output: one header row and aligned columns separated by two spaces, every value in
//! full (ids and amounts as decimals, flags as comma-separated names, `-` for none).

use kassa_wire::{Account, Transfer};

use crate::json::CreateResultJson;

/// `rows` under `headers`, each column as wide as its widest cell, left-aligned; every line
/// ends with a newline and carries no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        assert_eq!(row.len(), headers.len(), "a row per column");
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if index > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let padding = width - cell.chars().count();
            line.extend(std::iter::repeat_n(' ', padding));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn names(names: impl Iterator<Item = &'static str>) -> String {
    let joined: Vec<&str> = names.collect();
    if joined.is_empty() {
        "-".to_string()
    } else {
        joined.join(",")
    }
}

pub fn create_results(results: &[CreateResultJson]) -> String {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.index.to_string(),
                r.result.to_string(),
                r.timestamp.0.to_string(),
            ]
        })
        .collect();
    table(&["INDEX", "RESULT", "TIMESTAMP"], &rows)
}

pub fn accounts(accounts: &[Account]) -> String {
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            vec![
                a.id.to_string(),
                a.ledger.to_string(),
                a.code.to_string(),
                a.debits_pending.to_string(),
                a.debits_posted.to_string(),
                a.credits_pending.to_string(),
                a.credits_posted.to_string(),
                names(a.flags.names()),
                a.timestamp.to_string(),
            ]
        })
        .collect();
    let headers = [
        "ID",
        "LEDGER",
        "CODE",
        "DEBITS_PENDING",
        "DEBITS_POSTED",
        "CREDITS_PENDING",
        "CREDITS_POSTED",
        "FLAGS",
        "TIMESTAMP",
    ];
    table(&headers, &rows)
}

pub fn transfers(transfers: &[Transfer]) -> String {
    let rows: Vec<Vec<String>> = transfers
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.debit_account_id.to_string(),
                t.credit_account_id.to_string(),
                t.amount.to_string(),
                if t.pending_id.0 == 0 {
                    "-".to_string()
                } else {
                    t.pending_id.to_string()
                },
                t.ledger.to_string(),
                t.code.to_string(),
                names(t.flags.names()),
                t.timeout.to_string(),
                t.timestamp.to_string(),
            ]
        })
        .collect();
    let headers = [
        "ID",
        "DEBIT_ACCOUNT",
        "CREDIT_ACCOUNT",
        "AMOUNT",
        "PENDING_ID",
        "LEDGER",
        "CODE",
        "FLAGS",
        "TIMEOUT",
        "TIMESTAMP",
    ];
    table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Decimal;
    use kassa_wire::{AccountFlags, AccountId, TransferFlags, TransferId};

    #[test]
    fn columns_align_to_the_widest_cell() {
        let text = table(
            &["A", "LONGER"],
            &[
                vec!["1".into(), "x".into()],
                vec!["12345".into(), "y".into()],
            ],
        );
        assert_eq!(text, "A      LONGER\n1      x\n12345  y\n");
    }

    #[test]
    fn accounts_and_transfers_print_every_field_in_full() {
        let account = Account {
            id: AccountId(u128::MAX - 1),
            ledger: 700,
            code: 10,
            credits_posted: 250,
            flags: AccountFlags::HISTORY | AccountFlags::LINKED,
            timestamp: 99,
            ..Account::default()
        };
        let text = accounts(&[account]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].contains("340282366920938463463374607431768211454"));
        assert!(lines[1].contains("linked,history"));
        assert!(lines[1].ends_with("99"));

        let transfer = Transfer {
            id: TransferId(1),
            debit_account_id: AccountId(1),
            credit_account_id: AccountId(2),
            amount: 100,
            ledger: 700,
            code: 1,
            flags: TransferFlags::empty(),
            ..Transfer::default()
        };
        let text = transfers(&[transfer]);
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row, ["1", "1", "2", "100", "-", "700", "1", "-", "0", "0"]);
    }

    #[test]
    fn create_results_list_index_result_and_timestamp() {
        let results = [
            CreateResultJson {
                index: 0,
                result: "created",
                timestamp: Decimal(5),
            },
            CreateResultJson {
                index: 1,
                result: "exists",
                timestamp: Decimal(6),
            },
        ];
        assert_eq!(
            create_results(&results),
            "INDEX  RESULT   TIMESTAMP\n0      created  5\n1      exists   6\n"
        );
    }
}
