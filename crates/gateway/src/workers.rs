//! Which serving thread the current code runs on, and how many there are.
//!
//! The server runs N serving threads (see the server crate's `workers`);
//! the upstream clients keep one connection pool per thread and pick theirs
//! by [`index`], so a proxied request never wakes another thread.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}
static COUNT: AtomicUsize = AtomicUsize::new(1);

/// How many serving threads this process runs (1 outside the binary).
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed).max(1)
}

/// The serving thread this code runs on (0 on any other thread).
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

/// The default worker count: one per available core.
pub fn default_count() -> usize {
    std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
}

/// Sets the worker count before any state (and so any upstream client
/// set) is built.
pub fn configure(n: usize) {
    COUNT.store(n.max(1), Ordering::Relaxed);
}

/// Marks the current thread as serving thread `i` (called once by each
/// serving thread as it starts).
pub fn set_index(i: usize) {
    INDEX.with(|c| c.set(i));
}
