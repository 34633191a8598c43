//! The node's clocks.

/// The wall clock in nanoseconds since the Unix epoch: the `now` a leader stamps commands with.
pub fn realtime_ns() -> u64 {
    let elapsed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    elapsed.map_or(0, |elapsed| elapsed.as_nanos() as u64)
}
