//! Limits shared by several replicas through Redis (`--redis URL`).
//!
//! Per-provider requests and tokens per minute are counted in fixed
//! one-minute windows (`INCR`/`INCRBY` with an expiry), so replicas behind a
//! load balancer enforce one limit together. Each replica's in-memory token
//! buckets still apply. If Redis stops answering, requests are admitted on
//! the local limits alone (fail open) and a warning is logged.

use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct SharedLimits {
    conn: ConnectionManager,
    prefix: String,
    warned: AtomicBool,
}

static SHARED: OnceLock<SharedLimits> = OnceLock::new();

/// Connects (bounded) and installs the process-wide shared limiter.
pub async fn connect(url: &str, prefix: &str) -> Result<(), String> {
    let client =
        redis::Client::open(url).map_err(|e| format!("not a usable Redis URL ({:?})", e.kind()))?;
    let conn = tokio::time::timeout(Duration::from_secs(3), ConnectionManager::new(client))
        .await
        .map_err(|_| "Redis did not answer within 3s".to_string())?
        .map_err(|e| format!("cannot connect to Redis: {e}"))?;
    let _ = SHARED.set(SharedLimits {
        conn,
        prefix: prefix.to_string(),
        warned: AtomicBool::new(false),
    });
    Ok(())
}

pub fn get() -> Option<&'static SharedLimits> {
    SHARED.get()
}

impl SharedLimits {
    /// Counts this request (and its estimated tokens) in the current minute;
    /// says how long to wait when a shared limit is exceeded.
    pub async fn admit(
        &self,
        provider: &str,
        rpm: Option<u32>,
        tpm: Option<u32>,
        est_tokens: u64,
    ) -> Result<(), (Duration, &'static str)> {
        if rpm.is_none() && tpm.is_none() {
            return Ok(());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let minute = now / 60;
        let wait = Duration::from_secs(60 - now % 60);
        let rk = format!("{}:rpm:{provider}:{minute}", self.prefix);
        let tk = format!("{}:tpm:{provider}:{minute}", self.prefix);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .incr(&rk, 1u64)
            .expire(&rk, 61)
            .ignore()
            .incr(&tk, est_tokens)
            .expire(&tk, 61)
            .ignore();
        let mut conn = self.conn.clone();
        let res: Result<(u64, u64), redis::RedisError> =
            match tokio::time::timeout(Duration::from_millis(500), pipe.query_async(&mut conn))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(redis::RedisError::from((
                    redis::ErrorKind::IoError,
                    "timed out",
                ))),
            };
        match res {
            Ok((requests, tokens)) => {
                self.warned.store(false, Ordering::Relaxed);
                if rpm.is_some_and(|l| requests > u64::from(l)) {
                    return Err((wait, "requests-per-minute limit (shared)"));
                }
                if tpm.is_some_and(|l| tokens > u64::from(l)) {
                    return Err((wait, "tokens-per-minute limit (shared)"));
                }
                Ok(())
            }
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "Redis unavailable: shared limits fall back to this replica's own");
                }
                Ok(())
            }
        }
    }
}
