//! Identifier newtypes. Ids are client-chosen u128s; 0 and `u128::MAX` are reserved.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The reserved "int max" id (`2^128 - 1`), never a valid account or transfer id.
pub const ID_INT_MAX: u128 = u128::MAX;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, FromBytes,
            IntoBytes, Immutable, KnownLayout,
        )]
        #[repr(transparent)]
        pub struct $name(pub u128);

        impl $name {
            /// Neither zero nor `2^128 - 1`.
            pub fn is_valid(self) -> bool {
                self.0 != 0 && self.0 != ID_INT_MAX
            }
        }

        impl From<u128> for $name {
            fn from(value: u128) -> Self {
                Self(value)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// The id of an account.
    AccountId
);
id_type!(
    /// The id of a transfer.
    TransferId
);
