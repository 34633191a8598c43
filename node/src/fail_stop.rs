//! Fail-stop: what the node does on a fault it cannot reason about.
//!
//! A partition whose log cannot be written (a full disk, an I/O error) cannot know what of its
//! last writes reached the disk, and a cross-partition transaction whose decision is durable but
//! whose effects could not all be applied cannot be undone or finished by this process. In both
//! cases the node stops at once, as after a crash: every acknowledged write is durable, and the
//! next `kassa start` recovers from the disk (replaying the log, redelivering decided
//! transactions). Running on would leave partitions locked or stopped while `/ready` and the
//! clients wait. A panic stops the process the same way (`main`'s panic hook).

/// The exit status of a fail-stop (sysexits' `EX_IOERR`: the usual cause is the disk).
pub const EXIT_FAULT: i32 = 74;

/// Stops the process at once with `EXIT_FAULT`, saying why on stderr.
pub fn fail_stop(why: impl std::fmt::Display) -> ! {
    eprintln!("kassa: stopping: {why}");
    eprintln!(
        "kassa: every acknowledged write is on disk; fix the cause (e.g. free disk space) and \
         start the node again: it recovers from its data directory"
    );
    // SAFETY: _exit ends the process without running destructors or atexit handlers, so no
    // thread writes anything more; it takes no pointers.
    unsafe { libc::_exit(EXIT_FAULT) }
}
