//! Flag words of accounts and transfers: `u16` bit sets whose bit positions are TigerBeetle's.
//!
//! Unknown bits are kept as they are (never masked) so that the ledger can answer
//! `reserved_flag` for them. Each flag has the name the ledger core uses in JSON and logs.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

macro_rules! flag_set {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$flag_meta:meta])* $flag:ident = $bit:expr, $flag_name:literal; )* }
    ) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
        )]
        #[repr(transparent)]
        pub struct $name(pub u16);

        impl $name {
            $( $(#[$flag_meta])* pub const $flag: Self = Self(1 << $bit); )*

            /// Every flag with its name, in bit order.
            pub const ALL: &'static [(Self, &'static str)] = &[ $( (Self::$flag, $flag_name), )* ];

            /// The bits no flag is defined for.
            pub const RESERVED_MASK: u16 = !(0 $( | (1 << $bit) )*);

            pub const fn empty() -> Self {
                Self(0)
            }

            pub const fn bits(self) -> u16 {
                self.0
            }

            /// Whether every bit of `other` is set.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// Whether any bit outside the defined flags is set.
            pub const fn has_reserved(self) -> bool {
                self.0 & Self::RESERVED_MASK != 0
            }

            pub fn set(&mut self, other: Self, on: bool) {
                if on {
                    self.0 |= other.0;
                } else {
                    self.0 &= !other.0;
                }
            }

            /// The flag called `name`, if there is one.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
            }

            /// The names of the defined flags that are set, in bit order.
            pub fn names(self) -> impl Iterator<Item = &'static str> {
                Self::ALL.iter().filter(move |(f, _)| self.contains(*f)).map(|(_, n)| *n)
            }
        }

        impl std::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }
        }

        impl std::ops::BitOrAssign for $name {
            fn bitor_assign(&mut self, other: Self) {
                self.0 |= other.0;
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut list = f.debug_list();
                for name in self.names() {
                    list.entry(&name);
                }
                if self.has_reserved() {
                    list.entry(&format_args!("reserved:{:#06x}", self.0 & Self::RESERVED_MASK));
                }
                list.finish()
            }
        }
    };
}

flag_set! {
    /// Flags of an [`crate::Account`].
    AccountFlags {
        /// Links this event with the next one in the batch: the chain succeeds or fails as one.
        LINKED = 0, "linked";
        /// The account's debits (pending + posted) may never exceed its posted credits.
        DEBITS_MUST_NOT_EXCEED_CREDITS = 1, "debits_must_not_exceed_credits";
        /// The account's credits (pending + posted) may never exceed its posted debits.
        CREDITS_MUST_NOT_EXCEED_DEBITS = 2, "credits_must_not_exceed_debits";
        /// Keep the balance after every transfer, for `get_account_balances`.
        HISTORY = 3, "history";
        /// The event carries its own timestamp (imports of past data).
        IMPORTED = 4, "imported";
        /// The account accepts no more transfers (voids of pending transfers excepted).
        CLOSED = 5, "closed";
    }
}

flag_set! {
    /// Flags of a [`crate::Transfer`].
    TransferFlags {
        /// Links this event with the next one in the batch: the chain succeeds or fails as one.
        LINKED = 0, "linked";
        /// Reserve the amount; post or void it later.
        PENDING = 1, "pending";
        /// Post (part of) the pending transfer named by `pending_id`.
        POST_PENDING_TRANSFER = 2, "post_pending_transfer";
        /// Void the pending transfer named by `pending_id`.
        VOID_PENDING_TRANSFER = 3, "void_pending_transfer";
        /// Transfer at most what keeps the debit account's debits within its credits.
        BALANCING_DEBIT = 4, "balancing_debit";
        /// Transfer at most what keeps the credit account's credits within its debits.
        BALANCING_CREDIT = 5, "balancing_credit";
        /// Close the debit account (pending; a void reopens it).
        CLOSING_DEBIT = 6, "closing_debit";
        /// Close the credit account (pending; a void reopens it).
        CLOSING_CREDIT = 7, "closing_credit";
        /// The event carries its own timestamp (imports of past data).
        IMPORTED = 8, "imported";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reserved_bits_are_kept() {
        let flags = TransferFlags::LINKED | TransferFlags::PENDING;
        assert_eq!(flags.names().collect::<Vec<_>>(), ["linked", "pending"]);
        assert_eq!(
            TransferFlags::from_name("imported"),
            Some(TransferFlags::IMPORTED)
        );
        assert_eq!(TransferFlags::from_name("bogus"), None);
        assert!(!flags.has_reserved());
        assert!(TransferFlags(1 << 9).has_reserved());
        assert!(AccountFlags(1 << 6).has_reserved());
        assert!(!AccountFlags(0b11_1111).has_reserved());
    }
}
