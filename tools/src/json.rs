//! The JSON forms of accounts, transfers and create results, the same as the HTTP API's
//! (`node/openapi.json`): integers of 64 bits or more are decimal strings, 32- and 16-bit ones
//! numbers, flags arrays of flag names; fields left out are zero. Decoding is strict (unknown
//! fields, wrong types, bad digits and unknown flag names are errors), so a typo never becomes
//! a zero. Re-implemented here rather than shared, because nothing may depend on `kassa-node`.

use std::fmt;
use std::marker::PhantomData;

use kassa_wire::{Account, AccountFlags, AccountId, Transfer, TransferFlags, TransferId};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// An unsigned integer of 64 or 128 bits, as a decimal string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decimal<T>(pub T);

pub trait DecimalInt: Copy + fmt::Display + std::str::FromStr {
    const BITS: u32;
}

impl DecimalInt for u128 {
    const BITS: u32 = 128;
}

impl DecimalInt for u64 {
    const BITS: u32 = 64;
}

/// `text` as an unsigned decimal of `T`: digits only (no sign, no spaces, no `0x`).
pub fn parse_decimal<T: DecimalInt>(text: &str) -> Option<T> {
    let digits = !text.is_empty() && text.len() <= 39 && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse::<T>().ok()).flatten()
}

impl<T: DecimalInt> Serialize for Decimal<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de, T: DecimalInt> Deserialize<'de> for Decimal<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(DecimalVisitor(PhantomData))
    }
}

struct DecimalVisitor<T>(PhantomData<T>);

impl<T: DecimalInt> Visitor<'_> for DecimalVisitor<T> {
    type Value = Decimal<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a u{} as a decimal string", T::BITS)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        parse_decimal(text).map(Decimal).ok_or_else(|| {
            E::custom(format_args!(
                "`{text}` is not a u{} decimal string",
                T::BITS
            ))
        })
    }
}

/// A flag word (`AccountFlags`, `TransferFlags`) as an array of flag names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags<F>(pub F);

/// What this module needs of a flag word.
pub trait FlagWord: Copy + Default + Sized {
    fn names(self) -> Vec<&'static str>;
    fn from_name(name: &str) -> Option<Self>;
    fn union(self, other: Self) -> Self;
    /// Every flag name, for error messages.
    fn all_names() -> Vec<&'static str>;
}

macro_rules! flag_word {
    ($type:ty) => {
        impl FlagWord for $type {
            fn names(self) -> Vec<&'static str> {
                <$type>::names(self).collect()
            }
            fn from_name(name: &str) -> Option<Self> {
                <$type>::from_name(name)
            }
            fn union(self, other: Self) -> Self {
                self | other
            }
            fn all_names() -> Vec<&'static str> {
                <$type>::ALL.iter().map(|(_, name)| *name).collect()
            }
        }
    };
}

flag_word!(AccountFlags);
flag_word!(TransferFlags);

/// The flag called `name`, or an error listing the known ones.
pub fn parse_flag<F: FlagWord>(name: &str) -> Result<F, String> {
    F::from_name(name).ok_or_else(|| {
        format!(
            "unknown flag `{name}` (known: {})",
            F::all_names().join(", ")
        )
    })
}

impl<F: FlagWord> Serialize for Flags<F> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names = self.0.names();
        let mut seq = serializer.serialize_seq(Some(names.len()))?;
        for name in names {
            seq.serialize_element(name)?;
        }
        seq.end()
    }
}

impl<'de, F: FlagWord> Deserialize<'de> for Flags<F> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(FlagsVisitor(PhantomData))
    }
}

struct FlagsVisitor<F>(PhantomData<F>);

impl<'de, F: FlagWord> Visitor<'de> for FlagsVisitor<F> {
    type Value = Flags<F>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of flag names")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut flags = F::default();
        while let Some(name) = seq.next_element::<String>()? {
            flags = flags.union(parse_flag(&name).map_err(de::Error::custom)?);
        }
        Ok(Flags(flags))
    }
}

/// An account as JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountJson {
    pub id: Decimal<u128>,
    pub debits_pending: Decimal<u128>,
    pub debits_posted: Decimal<u128>,
    pub credits_pending: Decimal<u128>,
    pub credits_posted: Decimal<u128>,
    pub user_data_128: Decimal<u128>,
    pub user_data_64: Decimal<u64>,
    pub user_data_32: u32,
    pub ledger: u32,
    pub code: u16,
    pub flags: Flags<AccountFlags>,
    pub timestamp: Decimal<u64>,
}

impl From<&Account> for AccountJson {
    fn from(a: &Account) -> Self {
        AccountJson {
            id: Decimal(a.id.0),
            debits_pending: Decimal(a.debits_pending),
            debits_posted: Decimal(a.debits_posted),
            credits_pending: Decimal(a.credits_pending),
            credits_posted: Decimal(a.credits_posted),
            user_data_128: Decimal(a.user_data_128),
            user_data_64: Decimal(a.user_data_64),
            user_data_32: a.user_data_32,
            ledger: a.ledger,
            code: a.code,
            flags: Flags(a.flags),
            timestamp: Decimal(a.timestamp),
        }
    }
}

impl From<&AccountJson> for Account {
    fn from(a: &AccountJson) -> Self {
        Account {
            id: AccountId(a.id.0),
            debits_pending: a.debits_pending.0,
            debits_posted: a.debits_posted.0,
            credits_pending: a.credits_pending.0,
            credits_posted: a.credits_posted.0,
            user_data_128: a.user_data_128.0,
            user_data_64: a.user_data_64.0,
            user_data_32: a.user_data_32,
            reserved: 0,
            ledger: a.ledger,
            code: a.code,
            flags: a.flags.0,
            timestamp: a.timestamp.0,
        }
    }
}

/// A transfer as JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransferJson {
    pub id: Decimal<u128>,
    pub debit_account_id: Decimal<u128>,
    pub credit_account_id: Decimal<u128>,
    pub amount: Decimal<u128>,
    pub pending_id: Decimal<u128>,
    pub user_data_128: Decimal<u128>,
    pub user_data_64: Decimal<u64>,
    pub user_data_32: u32,
    pub timeout: u32,
    pub ledger: u32,
    pub code: u16,
    pub flags: Flags<TransferFlags>,
    pub timestamp: Decimal<u64>,
}

impl From<&Transfer> for TransferJson {
    fn from(t: &Transfer) -> Self {
        TransferJson {
            id: Decimal(t.id.0),
            debit_account_id: Decimal(t.debit_account_id.0),
            credit_account_id: Decimal(t.credit_account_id.0),
            amount: Decimal(t.amount),
            pending_id: Decimal(t.pending_id.0),
            user_data_128: Decimal(t.user_data_128),
            user_data_64: Decimal(t.user_data_64),
            user_data_32: t.user_data_32,
            timeout: t.timeout,
            ledger: t.ledger,
            code: t.code,
            flags: Flags(t.flags),
            timestamp: Decimal(t.timestamp),
        }
    }
}

impl From<&TransferJson> for Transfer {
    fn from(t: &TransferJson) -> Self {
        Transfer {
            id: TransferId(t.id.0),
            debit_account_id: AccountId(t.debit_account_id.0),
            credit_account_id: AccountId(t.credit_account_id.0),
            amount: t.amount.0,
            pending_id: TransferId(t.pending_id.0),
            user_data_128: t.user_data_128.0,
            user_data_64: t.user_data_64.0,
            user_data_32: t.user_data_32,
            timeout: t.timeout,
            ledger: t.ledger,
            code: t.code,
            flags: t.flags.0,
            timestamp: t.timestamp.0,
        }
    }
}

/// One create result: the event's index in the batch, its result's name and its timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreateResultJson {
    pub index: u32,
    pub result: &'static str,
    pub timestamp: Decimal<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_is_strict_and_round_trips() {
        let text = r#"[{"id": "340282366920938463463374607431768211454", "ledger": 700,
            "code": 10, "flags": ["linked", "history"]}]"#;
        let accounts: Vec<AccountJson> = serde_json::from_str(text).unwrap();
        let account = Account::from(&accounts[0]);
        assert_eq!(account.id.0, u128::MAX - 1);
        assert_eq!(account.flags, AccountFlags::LINKED | AccountFlags::HISTORY);
        let back = serde_json::to_value(AccountJson::from(&account)).unwrap();
        assert_eq!(back["id"], "340282366920938463463374607431768211454");
        assert_eq!(back["flags"], serde_json::json!(["linked", "history"]));

        for bad in [
            r#"[{"id": 1}]"#,
            r#"[{"id": "-1"}]"#,
            r#"[{"id": "1", "colour": 3}]"#,
            r#"[{"id": "1", "flags": ["pending"]}]"#,
        ] {
            assert!(
                serde_json::from_str::<Vec<AccountJson>>(bad).is_err(),
                "{bad}"
            );
        }
        let error = serde_json::from_str::<Vec<TransferJson>>(r#"[{"flags": ["lnked"]}]"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown flag `lnked`"), "{error}");
    }
}
