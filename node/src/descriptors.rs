//! File descriptors. Every client connection is one, and so is every file a partition writes
//! (log segments, durable files and their temporary copies, directory handles). A node that ran
//! out of them while writing its log would have to stop, so it keeps room for its own files:
//! at start it raises its soft `RLIMIT_NOFILE` to the hard limit, reserves descriptors for its
//! partitions and cores, and caps the listeners' connections to what is left.

use crate::config::Config;

/// Descriptors the node keeps for itself besides its partitions and cores: standard streams,
/// listeners, the runtimes of its helper threads, start-up files, and headroom.
pub const RESERVED_BASE: u64 = 256;
/// Per partition: its open log segment and the next one, its log directory, and a durable
/// file being replaced (the temporary file and its directory), with headroom.
pub const RESERVED_PER_PARTITION: u64 = 16;
/// Per core thread: its io_uring instance, eventfds and timers.
pub const RESERVED_PER_CORE: u64 = 16;

/// Raises the soft limit on open files to the hard limit; returns the limit in force.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct, which `limit` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit struct, which `raised` is.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

/// Descriptors the node keeps for its own files with `partitions` partitions on `cores` cores.
pub fn reserved(partitions: u32, cores: usize) -> u64 {
    RESERVED_BASE + RESERVED_PER_PARTITION * partitions as u64 + RESERVED_PER_CORE * cores as u64
}

/// Why the node cannot start with its open-files limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "the open-files limit ({limit}) leaves no room for connections: the node keeps {reserved} \
     for its own files; raise the hard limit (ulimit -Hn, systemd's LimitNOFILE)"
)]
pub struct TooFewDescriptors {
    pub limit: u64,
    pub reserved: u64,
}

/// Lowers `config`'s connection caps so that, with the node's own files, they fit `limit`
/// descriptors, in proportion to what was configured. Returns whether it lowered them.
pub fn fit_connections(
    config: &mut Config,
    limit: u64,
    partitions: u32,
    cores: usize,
) -> Result<bool, TooFewDescriptors> {
    let reserved = reserved(partitions, cores);
    let room = limit.saturating_sub(reserved);
    if room < 2 {
        return Err(TooFewDescriptors { limit, reserved });
    }
    let http = config.http_connections_max as u64;
    let wire = config.wire_connections_max as u64;
    if http + wire <= room {
        return Ok(false);
    }
    let http_fitted = (room * http / (http + wire)).clamp(1, room - 1);
    config.http_connections_max = http_fitted as usize;
    config.wire_connections_max = (room - http_fitted) as usize;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_what_the_node_keeps_for_itself() {
        let mut config = Config::default();
        let (http, wire) = (config.http_connections_max, config.wire_connections_max);
        assert!(!fit_connections(&mut config, 1 << 20, 16, 2).expect("room"));
        assert_eq!(
            (config.http_connections_max, config.wire_connections_max),
            (http, wire)
        );

        let limit = 1024;
        assert!(fit_connections(&mut config, limit, 16, 2).expect("room"));
        let total = (config.http_connections_max + config.wire_connections_max) as u64;
        assert_eq!(total, limit - reserved(16, 2));
        assert!(config.http_connections_max >= 1 && config.wire_connections_max >= 1);
        assert_eq!(config.wire_connections_max, config.http_connections_max);

        let error = fit_connections(&mut config, 300, 16, 2).expect_err("no room");
        assert_eq!(error.reserved, reserved(16, 2));
    }
}
