//! One provider as routing sees it: an adapter per key, the key pool, the
//! circuit breakers, in-flight count, latency EWMA, and its limits.

use super::breaker::Breaker;
use crate::config::routing::KeyStrategy;
use crate::config::{ProviderConfig, Secret};
use crate::error::ApiError;
use crate::providers::{self, Provider};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a key rests after a 429 without `Retry-After`.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One key of the pool.
pub struct KeySlot {
    pub masked: String,
    pub weight: u32,
    pub breaker: Breaker,
    pub used: AtomicU64,
    /// Why the upstream refused it (401/403); a disabled key is not used again.
    disabled: Mutex<Option<String>>,
    cooling_until: Mutex<Option<Instant>>,
    /// Smooth weighted round robin state.
    current: Mutex<i64>,
}

impl KeySlot {
    pub fn disable(&self, reason: &str) {
        *lock(&self.disabled) = Some(reason.to_string());
    }

    pub fn cool(&self, d: Duration) {
        *lock(&self.cooling_until) = Some(Instant::now() + d);
    }

    pub fn status(&self) -> (&'static str, Option<String>) {
        if let Some(r) = lock(&self.disabled).clone() {
            return ("disabled", Some(r));
        }
        match *lock(&self.cooling_until) {
            Some(t) if t > Instant::now() => (
                "cooling",
                Some(format!("{}s left", (t - Instant::now()).as_secs())),
            ),
            _ => ("enabled", None),
        }
    }

    fn cooling_left(&self) -> Option<Duration> {
        match *lock(&self.cooling_until) {
            Some(t) if t > Instant::now() => Some(t - Instant::now()),
            _ => None,
        }
    }

    pub(crate) fn usable(&self) -> bool {
        lock(&self.disabled).is_none()
            && self.cooling_left().is_none()
            && self.breaker.would_allow()
    }
}

/// A token bucket (requests or tokens per minute).
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn per_minute(n: u32) -> TokenBucket {
        let cap = f64::from(n);
        TokenBucket {
            capacity: cap,
            per_sec: cap / 60.0,
            state: Mutex::new((cap, Instant::now())),
        }
    }

    /// Takes `n`, or says how long until it could.
    pub fn take(&self, n: f64) -> Result<(), Duration> {
        let mut st = lock(&self.state);
        let now = Instant::now();
        let refill = (now - st.1).as_secs_f64() * self.per_sec;
        st.0 = (st.0 + refill).min(self.capacity);
        st.1 = now;
        let n = n.min(self.capacity);
        if st.0 >= n {
            st.0 -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n - st.0) / self.per_sec))
        }
    }
}

pub struct Upstream {
    /// Shared with every routing log entry of every request (no copy).
    pub name: std::sync::Arc<str>,
    pub cfg: ProviderConfig,
    /// One adapter per key (the key baked into its client), or one without.
    pub instances: Vec<Arc<dyn Provider>>,
    pub keys: Vec<KeySlot>,
    pub key_strategy: KeyStrategy,
    pub breaker: Breaker,
    pub inflight: AtomicU32,
    /// Exponentially weighted time to first byte, microseconds (0 = unknown).
    pub ewma_us: AtomicU64,
    semaphore: Option<Arc<Semaphore>>,
    rpm: Option<TokenBucket>,
    tpm: Option<TokenBucket>,
    rr: AtomicUsize,
}

/// Why no key could be used.
pub enum NoKey {
    /// Every key is cooling after a 429; the soonest is back after this.
    Cooling(Duration),
    /// Every key is disabled or its breaker is open.
    Unusable,
}

impl Upstream {
    pub fn build(cfg: ProviderConfig) -> Result<Upstream, String> {
        let mut pool: Vec<(Secret, u32)> = cfg
            .meta
            .keys
            .iter()
            .map(|k| (k.secret.clone(), k.weight.max(1)))
            .collect();
        if pool.is_empty() {
            if let Some(k) = &cfg.api_key {
                pool.push((k.clone(), 1));
            }
        }
        let mut instances = Vec::new();
        let mut keys = Vec::new();
        if pool.is_empty() {
            instances.push(providers::build(cfg.clone())?);
            keys.push(KeySlot::new("(none)".into(), 1, &cfg));
        }
        for (secret, weight) in pool {
            let mut c = cfg.clone();
            c.api_key = Some(secret.clone());
            instances.push(providers::build(c)?);
            keys.push(KeySlot::new(secret.masked(), weight, &cfg));
        }
        let meta = &cfg.meta;
        Ok(Upstream {
            name: std::sync::Arc::from(cfg.name.as_str()),
            key_strategy: KeyStrategy::parse(&meta.key_usage),
            breaker: Breaker::new(meta.breaker),
            inflight: AtomicU32::new(0),
            ewma_us: AtomicU64::new(0),
            semaphore: meta
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            rpm: meta.rpm_limit.map(TokenBucket::per_minute),
            tpm: meta.tpm_limit.map(TokenBucket::per_minute),
            rr: AtomicUsize::new(0),
            instances,
            keys,
            cfg,
        })
    }

    pub fn primary(&self) -> &Arc<dyn Provider> {
        &self.instances[0]
    }

    /// Admission against the per-minute limits.
    pub fn take_rate(&self, est_tokens: u64) -> Result<(), (Duration, &'static str)> {
        if let Some(b) = &self.rpm {
            b.take(1.0).map_err(|d| (d, "requests-per-minute limit"))?;
        }
        if let Some(b) = &self.tpm {
            b.take(est_tokens as f64)
                .map_err(|d| (d, "tokens-per-minute limit"))?;
        }
        Ok(())
    }

    /// Debits tokens that turned out to be used beyond the estimate.
    pub fn debit_tokens(&self, n: u64) {
        if let Some(b) = &self.tpm {
            let _ = b.take(n as f64);
        }
    }

    /// Waits for a concurrency slot up to the queue timeout.
    pub async fn acquire(
        &self,
        budget: Duration,
    ) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        let Some(sem) = &self.semaphore else {
            return Ok(None);
        };
        let wait = self.cfg.meta.queue_timeout.min(budget);
        match tokio::time::timeout(wait, sem.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => Err(ApiError::Unavailable(format!(
                "provider `{}` is at its concurrency limit ({} in flight) and no slot freed within {}s",
                self.name,
                self.cfg.meta.max_concurrency.unwrap_or(0),
                wait.as_secs_f64()
            ))),
        }
    }

    /// Picks a key by the pool's strategy among the usable ones (without
    /// allocating: this runs on every request).
    pub fn pick_key(&self) -> Result<usize, NoKey> {
        let usable = || (0..self.keys.len()).filter(|&i| self.keys[i].usable());
        let Some(first) = usable().next() else {
            let soonest = self
                .keys
                .iter()
                .filter(|k| lock(&k.disabled).is_none())
                .filter_map(KeySlot::cooling_left)
                .min();
            return Err(match soonest {
                Some(d) => NoKey::Cooling(d),
                None => NoKey::Unusable,
            });
        };
        let pick = match self.key_strategy {
            KeyStrategy::Single => first,
            KeyStrategy::RoundRobin => {
                let n = usable().count();
                usable()
                    .nth(self.rr.fetch_add(1, Ordering::Relaxed) % n)
                    .unwrap_or(first)
            }
            KeyStrategy::LeastUsed => usable()
                .min_by_key(|&i| self.keys[i].used.load(Ordering::Relaxed))
                .unwrap_or(first),
            KeyStrategy::Weighted => {
                // Smooth weighted round robin over the usable keys.
                let total: i64 = usable().map(|i| i64::from(self.keys[i].weight)).sum();
                let mut best = first;
                let mut best_w = i64::MIN;
                for i in usable() {
                    let mut c = lock(&self.keys[i].current);
                    *c += i64::from(self.keys[i].weight);
                    if *c > best_w {
                        best_w = *c;
                        best = i;
                    }
                }
                *lock(&self.keys[best].current) -= total;
                best
            }
        };
        self.keys[pick].used.fetch_add(1, Ordering::Relaxed);
        Ok(pick)
    }

    pub fn record_latency(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let old = self.ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { (old * 4 + us) / 5 };
        self.ewma_us.store(new.max(1), Ordering::Relaxed);
    }
}

impl KeySlot {
    fn new(masked: String, weight: u32, cfg: &ProviderConfig) -> KeySlot {
        KeySlot {
            masked,
            weight,
            breaker: Breaker::new(cfg.meta.breaker),
            used: AtomicU64::new(0),
            disabled: Mutex::new(None),
            cooling_until: Mutex::new(None),
            current: Mutex::new(0),
        }
    }
}

/// Held for the life of one request to an upstream (a stream's included).
pub struct InflightGuard {
    upstream: Arc<Upstream>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl InflightGuard {
    pub fn new(upstream: Arc<Upstream>, permit: Option<OwnedSemaphorePermit>) -> InflightGuard {
        upstream.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard {
            upstream,
            _permit: permit,
        }
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.upstream.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_then_says_when() {
        let b = TokenBucket::per_minute(2);
        assert!(b.take(1.0).is_ok());
        assert!(b.take(1.0).is_ok());
        let wait = b.take(1.0).err().unwrap_or_default();
        assert!(
            wait > Duration::from_secs(20) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
    }
}
