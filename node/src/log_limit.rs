//! [`LogLimiter`]: rate limits for log lines that a peer can cause (bad frames, refused
//! connections), so that one misbehaving client cannot flood the log or slow the node with it.
//!
//! Per peer address, at most `LINES_PER_WINDOW` lines per `WINDOW`; the first line after a
//! suppressed stretch says how many were left out. It is a pure structure: the caller passes
//! the time, so it is tested without a clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Lines one peer may cause per window.
pub const LINES_PER_WINDOW: u32 = 5;
/// The window those lines are counted over.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Peers remembered at once; past it, peers whose window ended are forgotten, and if none
/// has, new peers share one budget.
pub const PEERS_MAX: usize = 4096;

/// One peer's count in its current window.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    lines: u32,
    suppressed: u64,
}

/// Rate limits log lines per peer.
#[derive(Debug, Default)]
pub struct LogLimiter {
    peers: HashMap<Option<IpAddr>, Window>,
}

impl LogLimiter {
    pub fn new() -> LogLimiter {
        LogLimiter::default()
    }

    /// Whether a line caused by `peer` (`None`: no peer, e.g. an accept that failed) may be
    /// logged at `now`: `Some(suppressed)`, the lines left out since the last one logged, or
    /// `None` to leave this one out.
    pub fn admit(&mut self, peer: Option<IpAddr>, now: Instant) -> Option<u64> {
        let key = if self.peers.len() >= PEERS_MAX && !self.peers.contains_key(&peer) {
            self.peers
                .retain(|_, window| now.saturating_duration_since(window.start) < WINDOW);
            if self.peers.len() >= PEERS_MAX {
                None
            } else {
                peer
            }
        } else {
            peer
        };
        let window = self.peers.entry(key).or_insert(Window {
            start: now,
            lines: 0,
            suppressed: 0,
        });
        if now.saturating_duration_since(window.start) >= WINDOW {
            window.start = now;
            window.lines = 0;
        }
        if window.lines >= LINES_PER_WINDOW {
            window.suppressed += 1;
            return None;
        }
        window.lines += 1;
        Some(std::mem::take(&mut window.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_lines_per_window_then_a_count_of_what_was_left_out() {
        let mut limiter = LogLimiter::new();
        let start = Instant::now();
        let peer = Some(IpAddr::from([127, 0, 0, 1]));
        let other = Some(IpAddr::from([127, 0, 0, 2]));
        for _ in 0..LINES_PER_WINDOW {
            assert_eq!(limiter.admit(peer, start), Some(0));
        }
        for _ in 0..7 {
            assert_eq!(limiter.admit(peer, start + Duration::from_secs(1)), None);
        }
        assert_eq!(
            limiter.admit(other, start),
            Some(0),
            "peers are counted apart"
        );
        assert_eq!(limiter.admit(peer, start + WINDOW), Some(7));
        assert_eq!(limiter.admit(peer, start + WINDOW), Some(0));
    }

    #[test]
    fn the_peer_table_stays_bounded() {
        let mut limiter = LogLimiter::new();
        let start = Instant::now();
        for n in 0..(PEERS_MAX as u32 + 100) {
            let peer = Some(IpAddr::from(n.to_be_bytes()));
            assert!(limiter.admit(peer, start).is_some() || n >= PEERS_MAX as u32);
        }
        assert!(limiter.peers.len() <= PEERS_MAX + 1);
        // Once their windows end, old peers make room for new ones.
        let later = start + WINDOW;
        let newcomer = Some(IpAddr::from([10, 0, 0, 1]));
        assert_eq!(limiter.admit(newcomer, later), Some(0));
        assert!(limiter.peers.len() < 10);
    }
}
