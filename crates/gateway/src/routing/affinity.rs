//! Which provider key produced a Responses answer's encrypted reasoning.
//!
//! A Responses host encrypts reasoning items (`encrypted_content`) with a
//! key of the organisation that ran the model; sent to another
//! organisation's key the whole request fails. So a request that replays
//! encrypted reasoning goes first to the upstream and key that produced it
//! (remembered here by the fingerprint of the first encrypted string of
//! each forwarded answer), and when it must go elsewhere the encrypted
//! content is left out (see `lifecycle`).
//!
//! Bounded: at most [`CAP`] entries; when full, the older half goes.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// Most remembered answers.
pub const CAP: usize = 100_000;

/// The upstream (by name) and key index that produced an answer.
pub type Origin = (Arc<str>, usize);

#[derive(Default)]
struct Table {
    /// fingerprint → (origin, insertion number)
    map: HashMap<u64, (Origin, u64)>,
    next: u64,
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);

fn table() -> std::sync::MutexGuard<'static, Table> {
    TABLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Remembers that `origin` produced the encrypted reasoning `fingerprint`.
pub fn remember(fingerprint: u64, origin: Origin) {
    let mut t = table();
    if t.map.len() >= CAP && !t.map.contains_key(&fingerprint) {
        // Drop the older half (insertion order), keeping the cost of a
        // full table to one pass per CAP/2 inserts.
        let cutoff = t.next.saturating_sub((CAP / 2) as u64);
        t.map.retain(|_, (_, n)| *n >= cutoff);
    }
    let n = t.next;
    t.next += 1;
    t.map.insert(fingerprint, (origin, n));
}

/// The origin of the encrypted reasoning `fingerprint`, if remembered.
pub fn origin(fingerprint: u64) -> Option<Origin> {
    table().map.get(&fingerprint).map(|(o, _)| o.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_stays_bounded() {
        let base = 0xfeed_0000_0000_0000u64;
        remember(base, (Arc::from("a"), 1));
        assert_eq!(origin(base), Some((Arc::from("a"), 1)));
        remember(base, (Arc::from("b"), 0));
        assert_eq!(origin(base), Some((Arc::from("b"), 0)));
        for i in 1..=(CAP as u64 + 10) {
            remember(base + i, (Arc::from("c"), 0));
        }
        assert!(table().map.len() <= CAP);
        assert!(origin(base + CAP as u64 + 10).is_some(), "the newest stays");
    }
}
