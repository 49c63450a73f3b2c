//! A first-come, first-served queue for SQLite's single write lock within this process.
//!
//! SQLite lets one writer in at a time and makes the others poll (busy_timeout), sleeping
//! up to 100 ms between tries. Under load that is unfair: a writer that has just slept
//! keeps losing to writers that arrive while the lock happens to be free, and after the
//! busy timeout it fails although it was first in line. Writers of one database file in
//! this process therefore queue here in arrival order; `BEGIN IMMEDIATE` still guards
//! against other processes (the CLI) on the same file.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

#[derive(Default)]
struct Queue {
    held: bool,
    waiting: VecDeque<u64>,
    next_ticket: u64,
}

/// The queue of one database file.
#[derive(Default)]
pub struct WriteGate {
    queue: Mutex<Queue>,
    turn: Condvar,
}

/// Held while a write transaction runs; the next writer in line goes when it drops.
pub struct WriteTurn {
    gate: Arc<WriteGate>,
}

impl Drop for WriteTurn {
    fn drop(&mut self) {
        self.gate.lock().held = false;
        self.gate.turn.notify_all();
    }
}

impl WriteGate {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue holds no invariant a panicking holder could break half-way.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for this caller's turn, at most `timeout`; `None` when it did not come.
    pub fn enter(self: &Arc<Self>, timeout: Duration) -> Option<WriteTurn> {
        let deadline = Instant::now() + timeout;
        let mut queue = self.lock();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.push_back(ticket);
        loop {
            if !queue.held && queue.waiting.front() == Some(&ticket) {
                queue.waiting.pop_front();
                queue.held = true;
                return Some(WriteTurn { gate: self.clone() });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                queue.waiting.retain(|t| *t != ticket);
                drop(queue);
                // Whoever stood behind this ticket may now be first.
                self.turn.notify_all();
                return None;
            }
            queue = self
                .turn
                .wait_timeout(queue, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

static GATES: LazyLock<Mutex<HashMap<String, Arc<WriteGate>>>> = LazyLock::new(Default::default);

/// The gate of the database file at `path` (one per file for the life of the process; a
/// server opens one or two files, a test run a few hundred).
pub fn gate_for(path: &str) -> Arc<WriteGate> {
    GATES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(path.to_string())
        .or_default()
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_enter_in_arrival_order_and_a_timed_out_one_leaves_the_line() {
        let gate = Arc::new(WriteGate::default());
        let first = gate.enter(Duration::from_secs(1)).expect("free gate");
        // A writer that gives up must not block the ones behind it.
        assert!(gate.enter(Duration::from_millis(20)).is_none());
        let order = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (writer, order) = (gate.clone(), order.clone());
                let h = std::thread::spawn(move || {
                    let _turn = writer.enter(Duration::from_secs(10)).expect("turn");
                    order.lock().expect("order").push(i);
                });
                // Each thread is in line before the next one starts.
                while gate.lock().waiting.len() < i + 1 {
                    std::thread::yield_now();
                }
                h
            })
            .collect();
        drop(first);
        for h in handles {
            h.join().expect("writer");
        }
        assert_eq!(*order.lock().expect("order"), vec![0, 1, 2, 3]);
    }
}
