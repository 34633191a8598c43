//! Single-thread coordination for the log's tasks: [`Notify`] (wake every waiter when the
//! state they wait on may have changed) and [`Gate`] (a first-come-first-served turnstile with
//! a shared mode, for operations that must not overlap).
//!
//! Everything here lives on one monoio thread (`Rc`, `Cell`, `RefCell`; no atomics, no locks).
//! Waiters re-check their condition after every wake, so a spurious wake is harmless.
//! Invariants of `Gate`: `serving <= next_ticket`; a ticket is served at most once; a waiter
//! dropped before its turn gives its ticket up (it is skipped), so a cancelled caller never
//! stalls the callers behind it.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// A set of wakers to wake when something changes.
#[derive(Default)]
pub struct Notify {
    wakers: RefCell<Vec<Waker>>,
}

impl Notify {
    fn register(&self, waker: &Waker) {
        let mut wakers = self.wakers.borrow_mut();
        if !wakers.iter().any(|known| known.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }

    /// Wakes every registered waiter (each re-checks its condition).
    pub fn notify_all(&self) {
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves once `condition` holds, re-checking it after every notification.
    pub async fn wait_until(&self, mut condition: impl FnMut() -> bool) {
        poll_fn(|context| {
            if condition() {
                Poll::Ready(())
            } else {
                self.register(context.waker());
                Poll::Pending
            }
        })
        .await
    }
}

/// A FIFO turnstile. Exclusive holders (truncate, purge) hold a turn across their I/O; shared
/// holders (reads) only queue behind an earlier turn, then run alongside each other.
#[derive(Default)]
pub struct Gate {
    next_ticket: Cell<u64>,
    serving: Cell<u64>,
    /// Tickets whose waiters were dropped before their turn; few at a time.
    abandoned: RefCell<Vec<u64>>,
    shared_active: Cell<usize>,
    changed: Notify,
}

/// The current turn; the next ticket is served when it drops.
pub struct Turn<'a> {
    gate: &'a Gate,
}

/// A shared hold; an exclusive turn waits until every one has dropped.
pub struct SharedHold<'a> {
    gate: &'a Gate,
}

/// Gives a ticket up if its waiter is dropped before being served.
struct TicketWaiter<'a> {
    gate: &'a Gate,
    ticket: u64,
    served: bool,
}

impl Gate {
    /// No one holds or waits for a turn.
    pub fn is_idle(&self) -> bool {
        self.next_ticket.get() == self.serving.get()
    }

    /// Waits for this caller's turn, in call order.
    pub async fn turn(&self) -> Turn<'_> {
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket + 1);
        let mut waiter = TicketWaiter {
            gate: self,
            ticket,
            served: false,
        };
        self.changed
            .wait_until(|| self.serving.get() == ticket)
            .await;
        waiter.served = true;
        Turn { gate: self }
    }

    /// Waits for the turn, then until no shared hold is left: nothing else runs until the
    /// returned turn drops.
    pub async fn exclusive(&self) -> Turn<'_> {
        let turn = self.turn().await;
        self.changed
            .wait_until(|| self.shared_active.get() == 0)
            .await;
        turn
    }

    /// Queues behind any earlier turn, then holds the gate in shared mode.
    pub async fn shared(&self) -> SharedHold<'_> {
        if !self.is_idle() {
            let turn = self.turn().await;
            self.shared_active.set(self.shared_active.get() + 1);
            drop(turn);
        } else {
            self.shared_active.set(self.shared_active.get() + 1);
        }
        SharedHold { gate: self }
    }

    /// Serves the next ticket that still has a waiter.
    fn advance(&self) {
        let mut serving = self.serving.get() + 1;
        let mut abandoned = self.abandoned.borrow_mut();
        while let Some(position) = abandoned.iter().position(|&ticket| ticket == serving) {
            abandoned.swap_remove(position);
            serving += 1;
        }
        assert!(serving <= self.next_ticket.get());
        self.serving.set(serving);
        drop(abandoned);
        self.changed.notify_all();
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.gate.advance();
    }
}

impl Drop for SharedHold<'_> {
    fn drop(&mut self) {
        let active = self.gate.shared_active.get();
        assert!(active > 0);
        self.gate.shared_active.set(active - 1);
        self.gate.changed.notify_all();
    }
}

impl Drop for TicketWaiter<'_> {
    fn drop(&mut self) {
        if self.served {
            return;
        }
        if self.gate.serving.get() == self.ticket {
            // Woken for its turn but dropped before taking it: pass the turn on.
            self.gate.advance();
        } else {
            self.gate.abandoned.borrow_mut().push(self.ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::rc::Rc;

    fn run<F: Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn turns_are_served_in_call_order() {
        run(async {
            let gate = Rc::new(Gate::default());
            let order = Rc::new(RefCell::new(Vec::new()));
            let first = gate.turn().await;
            let mut tasks = Vec::new();
            for id in 0..5 {
                let (gate, order) = (gate.clone(), order.clone());
                tasks.push(monoio::spawn(async move {
                    let _turn = gate.turn().await;
                    order.borrow_mut().push(id);
                    monoio::time::sleep(std::time::Duration::from_millis(1)).await;
                }));
            }
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            assert!(order.borrow().is_empty());
            drop(first);
            for task in tasks {
                task.await;
            }
            assert_eq!(*order.borrow(), vec![0, 1, 2, 3, 4]);
            assert!(gate.is_idle());
        });
    }

    #[test]
    fn a_dropped_waiter_does_not_stall_the_queue() {
        run(async {
            let gate = Gate::default();
            let first = gate.turn().await;
            {
                let abandoned = std::pin::pin!(gate.turn());
                let waker = Waker::noop();
                let mut context = std::task::Context::from_waker(waker);
                assert!(abandoned.poll(&mut context).is_pending());
            }
            drop(first);
            let _third = gate.exclusive().await;
            assert!(!gate.is_idle());
        });
    }
}
