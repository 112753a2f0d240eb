//! A circuit breaker: opens after N consecutive failures or an error rate
//! over the last outcomes, half-opens after a cooldown letting one probe at a
//! time through, closes after M successful probes.

use crate::config::routing::BreakerConfig;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Closed,
    Open {
        since: Instant,
    },
    HalfOpen {
        successes: u32,
        probe: Option<Instant>,
    },
}

#[derive(Debug)]
struct State {
    phase: Phase,
    consecutive: u32,
    window: VecDeque<bool>,
    opened_total: u64,
}

#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    st: Mutex<State>,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Breaker {
        Breaker {
            cfg,
            st: Mutex::new(State {
                phase: Phase::Closed,
                consecutive: 0,
                window: VecDeque::new(),
                opened_total: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a request may go now; in half-open this claims the probe slot.
    pub fn allow(&self) -> bool {
        let mut st = self.lock();
        let now = Instant::now();
        match st.phase {
            Phase::Closed => true,
            Phase::Open { since } => {
                if now.duration_since(since) >= self.cfg.cooldown {
                    st.phase = Phase::HalfOpen {
                        successes: 0,
                        probe: Some(now),
                    };
                    true
                } else {
                    false
                }
            }
            Phase::HalfOpen { successes, probe } => {
                // One probe at a time; a probe that never reported back frees
                // its slot after another cooldown.
                let free = probe.is_none_or(|p| now.duration_since(p) >= self.cfg.cooldown);
                if free {
                    st.phase = Phase::HalfOpen {
                        successes,
                        probe: Some(now),
                    };
                }
                free
            }
        }
    }

    /// Like `allow`, without claiming anything.
    pub fn would_allow(&self) -> bool {
        let st = self.lock();
        match st.phase {
            Phase::Closed => true,
            Phase::Open { since } => since.elapsed() >= self.cfg.cooldown,
            Phase::HalfOpen { probe, .. } => probe.is_none_or(|p| p.elapsed() >= self.cfg.cooldown),
        }
    }

    /// How long until this breaker lets a probe through by itself (zero
    /// when it would now).
    pub fn reopens_in(&self) -> std::time::Duration {
        let st = self.lock();
        let since = match st.phase {
            Phase::Closed | Phase::HalfOpen { probe: None, .. } => return Default::default(),
            Phase::Open { since } => since,
            Phase::HalfOpen { probe: Some(p), .. } => p,
        };
        self.cfg.cooldown.saturating_sub(since.elapsed())
    }

    /// Panic mode: lets the next request through as a half-open probe even
    /// though the cooldown has not ended (every other target is open too).
    pub fn force_probe(&self) {
        let mut st = self.lock();
        st.phase = match st.phase {
            Phase::Closed => Phase::Closed,
            Phase::Open { .. } => Phase::HalfOpen {
                successes: 0,
                probe: None,
            },
            Phase::HalfOpen { successes, .. } => Phase::HalfOpen {
                successes,
                probe: None,
            },
        };
    }

    fn push(&self, st: &mut State, ok: bool) {
        st.window.push_back(ok);
        while st.window.len() > self.cfg.window as usize {
            st.window.pop_front();
        }
    }

    pub fn on_success(&self) {
        let mut st = self.lock();
        st.consecutive = 0;
        self.push(&mut st, true);
        if let Phase::HalfOpen { successes, .. } = st.phase {
            let s = successes + 1;
            st.phase = if s >= self.cfg.successes {
                st.window.clear();
                Phase::Closed
            } else {
                Phase::HalfOpen {
                    successes: s,
                    probe: None,
                }
            };
        }
    }

    pub fn on_failure(&self) {
        let mut st = self.lock();
        st.consecutive += 1;
        self.push(&mut st, false);
        let now = Instant::now();
        match st.phase {
            Phase::HalfOpen { .. } => {
                st.phase = Phase::Open { since: now };
                st.opened_total += 1;
            }
            Phase::Closed => {
                let full = st.window.len() >= self.cfg.window as usize;
                let failures = st.window.iter().filter(|ok| !**ok).count();
                let rate = failures as f64 / st.window.len().max(1) as f64;
                if st.consecutive >= self.cfg.failures || (full && rate >= self.cfg.error_rate) {
                    st.phase = Phase::Open { since: now };
                    st.opened_total += 1;
                }
            }
            Phase::Open { .. } => {}
        }
    }

    /// `closed`, `open` or `half_open`, and how many times it has opened.
    pub fn state(&self) -> (&'static str, u64) {
        let st = self.lock();
        let name = match st.phase {
            Phase::Closed => "closed",
            Phase::Open { since } if since.elapsed() < self.cfg.cooldown => "open",
            Phase::Open { .. } | Phase::HalfOpen { .. } => "half_open",
        };
        (name, st.opened_total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(cooldown_ms: u64) -> BreakerConfig {
        BreakerConfig {
            failures: 3,
            cooldown: Duration::from_millis(cooldown_ms),
            successes: 2,
            error_rate: 0.5,
            window: 10,
        }
    }

    #[test]
    fn a_forced_probe_goes_through_an_open_breaker_once() {
        let b = Breaker::new(cfg(60_000));
        assert_eq!(b.reopens_in(), Duration::ZERO);
        for _ in 0..3 {
            b.on_failure();
        }
        assert!(!b.allow());
        assert!(b.reopens_in() > Duration::from_secs(59));
        b.force_probe();
        assert!(b.allow(), "the forced probe goes");
        assert!(!b.allow(), "one probe at a time");
        b.on_failure();
        assert!(!b.allow(), "a failed probe opens it again");
        b.force_probe();
        assert!(b.allow());
        b.on_success();
        assert!(b.allow());
        b.on_success();
        assert_eq!(b.state().0, "closed");
    }

    #[test]
    fn opens_half_opens_and_closes() {
        let b = Breaker::new(cfg(0));
        for _ in 0..3 {
            assert!(b.allow());
            b.on_failure();
        }
        // Cooldown 0: the next allow is the half-open probe; only one at a time.
        assert!(b.allow());
        assert_eq!(b.state().0, "half_open");
        b.on_success();
        assert!(b.allow());
        b.on_success();
        assert_eq!(b.state().0, "closed");
        assert_eq!(b.state().1, 1);
    }

    #[test]
    fn stays_open_during_cooldown_and_reopens_on_failed_probe() {
        let b = Breaker::new(cfg(60_000));
        for _ in 0..3 {
            b.on_failure();
        }
        assert!(!b.allow());
        assert_eq!(b.state().0, "open");
        let b = Breaker::new(cfg(0));
        for _ in 0..3 {
            b.on_failure();
        }
        assert!(b.allow());
        b.on_failure();
        assert_eq!(b.state().1, 2);
    }

    #[test]
    fn error_rate_opens_without_consecutive_failures() {
        let b = Breaker::new(BreakerConfig {
            failures: 100,
            ..cfg(60_000)
        });
        for i in 0..10 {
            if i % 2 == 1 {
                b.on_failure();
            } else {
                b.on_success();
            }
        }
        assert_eq!(b.state().0, "open");
    }
}
