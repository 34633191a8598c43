//! Running cases: one case is a seed; the generator draws 10 to 80 operations from it (100 to
//! 300 in one case in ten), and the harness applies each as soon as it is drawn (the generator
//! reads the model). A failure is any panic (a mismatch, a broken invariant, or a panic inside
//! the ledger) and names the seed, the operation index, the operation and where it panicked.
//! `shrink` cuts a failing operation list down (whole operations, then single events of
//! batches) to a short reproduction. Panics on case-running threads are recorded quietly
//! rather than printed, so a failing run is not buried under backtraces.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use crate::model::gen::Gen;
use crate::model::harness::Harness;
use crate::model::ops::Op;

pub struct Failure {
    pub seed: u64,
    pub op_index: usize,
    pub message: String,
    /// The operations up to and including the failing one.
    pub ops: Vec<Op>,
}

thread_local! {
    /// Whether this thread runs cases: its panics are expected and reported by the runner.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic on this thread happened.
    static LOCATION: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Installs, once, a panic hook that on case-running threads records where a panic happened
/// instead of printing it (a failing run would print one backtrace per failing case); other
/// threads keep the usual hook.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let location = info.location().map(|l| l.to_string()).unwrap_or_default();
                LOCATION.with(|l| *l.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f` with this thread's panics recorded quietly.
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    install_quiet_hook();
    let was = QUIET.with(|q| q.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result.unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}

pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast::<&str>() {
            Ok(message) => message.to_string(),
            Err(_) => "(a panic without a message)".to_string(),
        },
    }
}

/// The message of a panic caught on a quiet thread, with where it happened.
fn caught(payload: Box<dyn std::any::Any + Send>) -> String {
    let location = LOCATION.with(|l| l.take());
    format!("{}\n(panicked at {location})", panic_message(payload))
}

/// Runs the case of `seed`.
pub fn run_case(seed: u64) -> Result<(), Failure> {
    let mut gen = Gen::new(seed);
    let mut harness = Harness::new(seed);
    // Mostly ~50 operations; one case in ten is long, for deeper histories.
    let count = if gen.rng.chance(10) {
        gen.rng.range(100, 300)
    } else {
        gen.rng.range(10, 80)
    };
    let count = count as usize;
    let mut ops = Vec::with_capacity(count);
    for op_index in 0..=count {
        let outcome = if op_index < count {
            let op = gen.op(&harness.model);
            ops.push(op.clone());
            catch_unwind(AssertUnwindSafe(|| drop(harness.step(&op))))
        } else {
            catch_unwind(AssertUnwindSafe(|| harness.finish()))
        };
        if let Err(payload) = outcome {
            let message = caught(payload);
            return Err(Failure {
                seed,
                op_index,
                message,
                ops,
            });
        }
    }
    Ok(())
}

/// Replays `ops` from a fresh harness: the index and message of the first failure, if any.
pub fn replay(seed: u64, ops: &[Op]) -> Option<(usize, String)> {
    let mut harness = Harness::new(seed);
    for (index, op) in ops.iter().enumerate() {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(harness.step(op)))) {
            return Some((index, caught(payload)));
        }
    }
    let finished = catch_unwind(AssertUnwindSafe(|| harness.finish()));
    finished.err().map(|payload| (ops.len(), caught(payload)))
}

/// The first line of a failure message without its numbers: what "the same failure" means
/// while shrinking (removing an event changes lengths and indexes in the message).
fn signature(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    first.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// Removes operations and events while the replay still fails the same way.
pub fn shrink(failure: &Failure) -> Vec<Op> {
    let target = signature(&failure.message);
    let fails =
        |ops: &[Op]| replay(failure.seed, ops).is_some_and(|(_, m)| signature(&m) == target);
    let mut ops = failure.ops.clone();
    let mut progress = true;
    while progress {
        progress = false;
        let mut index = 0;
        while index < ops.len() {
            let mut candidate = ops.clone();
            candidate.remove(index);
            if fails(&candidate) {
                ops = candidate;
                progress = true;
                continue;
            }
            let mut event = 0;
            while event < ops[index].event_count() {
                let mut candidate = ops.clone();
                candidate[index] = ops[index].without_event(event);
                if fails(&candidate) {
                    ops = candidate;
                    progress = true;
                } else {
                    event += 1;
                }
            }
            index += 1;
        }
    }
    ops
}
