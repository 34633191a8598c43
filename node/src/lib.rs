//! `kassa-node`: the `kassa` process: one thread per core, each owning its partitions, plus the
//! gateway and the HTTP API. It uses every other Kassa crate; nothing depends on it.
//!
//! Empty until the durable single node is built.
