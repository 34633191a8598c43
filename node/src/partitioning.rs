//! Which partition an account or transfer id belongs to: the ledger core's `partition_of`,
//! which every partition also uses to know what it owns.

pub use kassa_shard::partition_of;
