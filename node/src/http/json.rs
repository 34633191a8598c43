//! The HTTP API's JSON forms of Kassa's records.
//!
//! Integers of 64 bits or more travel as decimal strings (`"340282366920938463463374607431768211455"`),
//! because JSON numbers lose precision past 2^53 in most clients; 32- and 16-bit integers are
//! numbers; flags are arrays of the ledger core's flag names. Decoding is strict: unknown
//! fields, wrong types, numbers where strings belong and unknown flag names are errors, so a
//! typo never silently becomes a zero. Fields left out are zero, as in the binary protocol.

use std::fmt;
use std::marker::PhantomData;

use kassa_wire::{
    Account, AccountBalance, AccountFlags, AccountId, Transfer, TransferFlags, TransferId,
    BATCH_EVENTS_MAX,
};
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

/// `text` as an unsigned integer: decimal digits only (leading zeros allowed, no sign, no
/// spaces), at most `T`'s maximum. `openapi.json`'s `U64` and `U128` patterns say the same.
pub fn parse_decimal<T: DecimalInt>(text: &str) -> Option<T> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse::<T>().ok()).flatten()
}

/// A flag word as an array of flag names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags<F>(pub F);

/// The flag words the API knows.
pub trait FlagWord: Copy + Sized + PartialEq {
    fn names(self) -> Vec<&'static str>;
    fn from_name(name: &str) -> Option<Self>;
    fn empty() -> Self;
    fn union(self, other: Self) -> Self;
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
            fn empty() -> Self {
                <$type>::empty()
            }
            fn union(self, other: Self) -> Self {
                self | other
            }
        }
    };
}

flag_word!(AccountFlags);
flag_word!(TransferFlags);

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
        let mut flags = F::empty();
        while let Some(name) = seq.next_element::<String>()? {
            let flag = F::from_name(&name)
                .ok_or_else(|| de::Error::custom(format_args!("unknown flag `{name}`")))?;
            if flags.union(flag) == flags {
                return Err(de::Error::custom(format_args!("flag `{name}` given twice")));
            }
            flags = flags.union(flag);
        }
        Ok(Flags(flags))
    }
}

/// A record that must be a JSON object. serde's derived structs also accept an array of
/// their fields in order (`["1", "0", ...]`), which the API does not document and would
/// make field order matter; this refuses anything but an object.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjectVisitor(PhantomData))
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = Object<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Object)
    }
}

/// A JSON array of at most `BATCH_EVENTS_MAX` records. Decoding stops at the first record
/// past the limit, so an oversize request costs at most one batch of memory, whatever its size.
#[derive(Debug)]
pub struct Records<T>(pub Vec<T>);

/// The start of the error message for an array past the limit (the API maps it to its code).
pub const TOO_MANY_RECORDS: &str = "too many records";

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Records<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(RecordsVisitor(PhantomData))
    }
}

struct RecordsVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for RecordsVisitor<T> {
    type Value = Records<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of at most {BATCH_EVENTS_MAX} records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut records = Vec::new();
        while let Some(Object(record)) = seq.next_element()? {
            if records.len() == BATCH_EVENTS_MAX {
                return Err(de::Error::custom(format_args!(
                    "{TOO_MANY_RECORDS}: a request carries at most {BATCH_EVENTS_MAX}"
                )));
            }
            records.push(record);
        }
        Ok(Records(records))
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

/// An account's balances at one moment, as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct AccountBalanceJson {
    pub debits_pending: Decimal<u128>,
    pub debits_posted: Decimal<u128>,
    pub credits_pending: Decimal<u128>,
    pub credits_posted: Decimal<u128>,
    pub timestamp: Decimal<u64>,
}

impl From<&AccountBalance> for AccountBalanceJson {
    fn from(b: &AccountBalance) -> Self {
        AccountBalanceJson {
            debits_pending: Decimal(b.debits_pending),
            debits_posted: Decimal(b.debits_posted),
            credits_pending: Decimal(b.credits_pending),
            credits_posted: Decimal(b.credits_posted),
            timestamp: Decimal(b.timestamp),
        }
    }
}

/// One create result: the event's index in the request, its status name and timestamp.
#[derive(Clone, Debug, Serialize)]
pub struct CreateResultJson {
    pub index: u32,
    pub result: &'static str,
    pub timestamp: Decimal<u64>,
}

/// The body of `POST /v1/accounts/query` and `POST /v1/transfers/query`. Fields left out are
/// zero (the limit: a full batch); `null` is not a value of any of them.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryFilterJson {
    pub user_data_128: Decimal<u128>,
    pub user_data_64: Decimal<u64>,
    pub user_data_32: u32,
    pub ledger: u32,
    pub code: u16,
    pub timestamp_min: Decimal<u64>,
    pub timestamp_max: Decimal<u64>,
    pub limit: u32,
    pub reversed: bool,
}

impl Default for QueryFilterJson {
    fn default() -> Self {
        QueryFilterJson {
            user_data_128: Decimal(0),
            user_data_64: Decimal(0),
            user_data_32: 0,
            ledger: 0,
            code: 0,
            timestamp_min: Decimal(0),
            timestamp_max: Decimal(0),
            limit: BATCH_EVENTS_MAX as u32,
            reversed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` plus one, in decimal.
    fn plus_one(text: &str) -> String {
        let mut digits: Vec<u8> = text.bytes().collect();
        for digit in digits.iter_mut().rev() {
            if *digit == b'9' {
                *digit = b'0';
            } else {
                *digit += 1;
                return String::from_utf8(digits).expect("digits");
            }
        }
        format!("1{}", String::from_utf8(digits).expect("digits"))
    }

    /// The OpenAPI document's `U64` and `U128` patterns accept exactly the strings the API
    /// parses, so that a client (or schemathesis) reading the document sends what is accepted.
    #[test]
    fn the_documents_decimal_patterns_accept_exactly_what_the_parser_does() {
        let document: serde_json::Value =
            serde_json::from_str(crate::http::OPENAPI_JSON).expect("the document is JSON");
        let schemas = &document["components"]["schemas"];
        let pattern = |name: &str| {
            let pattern = schemas[name]["pattern"].as_str().expect("a pattern");
            regex::Regex::new(pattern).expect("a valid pattern")
        };
        let (u64_pattern, u128_pattern) = (pattern("U64"), pattern("U128"));
        let mut cases: Vec<String> = [
            "", "0", "00", "007", "1", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "١",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for max in [u64::MAX.to_string(), u128::MAX.to_string()] {
            cases.push(max.clone());
            cases.push(plus_one(&max));
            cases.push(format!("0000{max}"));
            cases.push(format!("{max}0"));
        }
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut digit = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'0' + (state % 10) as u8)
        };
        // Random strings of digits, and strings that share a prefix with a maximum and then
        // go their own way (each of the patterns' branches).
        for len in 1..=42 {
            for _ in 0..200 {
                cases.push((0..len).map(|_| digit()).collect());
            }
        }
        for max in [u64::MAX.to_string(), u128::MAX.to_string()] {
            for prefix in 0..max.len() {
                for _ in 0..50 {
                    let rest: String = (prefix..max.len()).map(|_| digit()).collect();
                    cases.push(format!("{}{rest}", &max[..prefix]));
                }
            }
        }
        for case in &cases {
            assert_eq!(
                u64_pattern.is_match(case),
                parse_decimal::<u64>(case).is_some(),
                "U64: `{case}`"
            );
            assert_eq!(
                u128_pattern.is_match(case),
                parse_decimal::<u128>(case).is_some(),
                "U128: `{case}`"
            );
        }
    }
}
