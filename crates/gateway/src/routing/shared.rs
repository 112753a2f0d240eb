//! Limits and budgets shared by several replicas through Redis
//! (`--redis URL`).
//!
//! Requests and tokens per minute (per provider, key, user or model) are
//! counted in fixed one-minute windows by one atomic script, so replicas
//! behind a load balancer enforce one limit together; each replica's
//! in-memory token buckets still apply. Concurrency slots are leases and
//! budgets reservations, each taken by one script too. If Redis stops
//! answering, requests are admitted on the replica's own limits and ledger
//! (a warning is logged).

use crate::govern::{RatedScope, SharedBudgets, SharedEntry};
use crate::identity::Micros;
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

/// The per-provider view of the shared minute windows (`routing::exec`).
pub struct SharedLimits {
    budgets: Arc<RedisBudgets>,
    warned: AtomicBool,
}

static SHARED: OnceLock<SharedLimits> = OnceLock::new();

/// Connects (bounded) and installs the process-wide shared limiter.
pub async fn connect(url: &str, prefix: &str) -> Result<(), String> {
    let budgets = RedisBudgets::connect(url, prefix).await?;
    let _ = BUDGETS.set(budgets.clone());
    let _ = SHARED.set(SharedLimits {
        budgets,
        warned: AtomicBool::new(false),
    });
    Ok(())
}

pub fn get() -> Option<&'static SharedLimits> {
    SHARED.get()
}

impl SharedLimits {
    /// Counts this request (and its estimated tokens) in the provider's
    /// current minute; says how long to wait when a shared limit is full.
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
        let scope = [(format!("provider:{provider}"), rpm, tpm)];
        match self.budgets.count(&scope, est_tokens).await {
            Ok(None) => {
                self.warned.store(false, Ordering::Relaxed);
                Ok(())
            }
            Ok(Some((_, what))) => {
                let wait = Duration::from_secs(60 - crate::util::now_secs() % 60);
                Err((
                    wait,
                    if what == "requests" {
                        "requests-per-minute limit (shared)"
                    } else {
                        "tokens-per-minute limit (shared)"
                    },
                ))
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

/// Budgets shared by replicas: every reservation and settlement is one
/// atomic Lua script over the scopes it touches, so concurrent requests on
/// any number of replicas never overspend. A reservation left behind by a
/// replica that died expires after [`RESERVATION_TTL`].
pub struct RedisBudgets {
    conn: ConnectionManager,
    prefix: String,
}

/// How long a reservation lives without being settled.
pub const RESERVATION_TTL: Duration = Duration::from_secs(3600);

static BUDGETS: OnceLock<Arc<RedisBudgets>> = OnceLock::new();

/// The process-wide shared budgets, once `connect` succeeded.
pub fn budgets() -> Option<Arc<dyn SharedBudgets>> {
    BUDGETS.get().map(|b| b.clone() as Arc<dyn SharedBudgets>)
}

const RESERVE_LUA: &str = r"
local now = tonumber(ARGV[1])
local worst = tonumber(ARGV[2])
local id = ARGV[3]
local ttl = tonumber(ARGV[4])
local n = #KEYS / 3
for i = 0, n - 1 do
  local h, z, a = KEYS[3*i+1], KEYS[3*i+2], KEYS[3*i+3]
  local limit = tonumber(ARGV[5 + 3*i])
  redis.call('HSETNX', h, 'spent', ARGV[6 + 3*i])
  local stale = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, r in ipairs(stale) do
    local amt = tonumber(redis.call('HGET', a, r) or '0')
    redis.call('HINCRBY', h, 'reserved', -amt)
    redis.call('HDEL', a, r)
    redis.call('ZREM', z, r)
  end
  local committed = tonumber(redis.call('HGET', h, 'spent') or '0')
    + tonumber(redis.call('HGET', h, 'reserved') or '0')
  if committed >= limit or committed + worst > limit then
    return i + 1
  end
end
for i = 0, n - 1 do
  local h, z, a = KEYS[3*i+1], KEYS[3*i+2], KEYS[3*i+3]
  local kttl = tonumber(ARGV[7 + 3*i])
  redis.call('HINCRBY', h, 'reserved', worst)
  redis.call('ZADD', z, now + ttl, id)
  redis.call('HSET', a, id, worst)
  if kttl > 0 then
    redis.call('PEXPIRE', h, kttl)
    redis.call('PEXPIRE', z, kttl)
    redis.call('PEXPIRE', a, kttl)
  end
end
return 0
";

/// Fixed one-minute windows for several scopes at once: all counted, or
/// none when one would go over (a request that is refused is not counted).
const COUNT_LUA: &str = r"
local est = tonumber(ARGV[1])
local n = #KEYS / 2
for i = 0, n - 1 do
  local rl = tonumber(ARGV[2 + 2*i])
  local tl = tonumber(ARGV[3 + 2*i])
  if rl >= 0 and tonumber(redis.call('GET', KEYS[2*i+1]) or '0') + 1 > rl then
    return {i + 1, 1}
  end
  if tl >= 0 then
    local t = tonumber(redis.call('GET', KEYS[2*i+2]) or '0')
    local want = est
    if want > tl then want = tl end
    if t + want > tl then
      return {i + 1, 2}
    end
  end
end
for i = 0, n - 1 do
  redis.call('INCR', KEYS[2*i+1])
  redis.call('EXPIRE', KEYS[2*i+1], 61)
  redis.call('INCRBY', KEYS[2*i+2], est)
  redis.call('EXPIRE', KEYS[2*i+2], 61)
end
return {0, 0}
";

/// Concurrency slots as leases with an expiry, all scopes or none.
const ACQUIRE_LUA: &str = r"
local now = tonumber(ARGV[1])
local id = ARGV[2]
local ttl = tonumber(ARGV[3])
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[3 + i]) then
    return i
  end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now + ttl, id)
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 0
";

const SETTLE_LUA: &str = r"
local id = ARGV[1]
local actual = tonumber(ARGV[2])
for i = 0, #KEYS / 3 - 1 do
  local h, z, a = KEYS[3*i+1], KEYS[3*i+2], KEYS[3*i+3]
  local amt = redis.call('HGET', a, id)
  if amt then
    redis.call('HINCRBY', h, 'reserved', -tonumber(amt))
    redis.call('HDEL', a, id)
    redis.call('ZREM', z, id)
  end
  if actual > 0 then
    redis.call('HINCRBY', h, 'spent', actual)
  end
end
return 0
";

// Each script's SHA-1 is worked out once, not per call.
static RESERVE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RESERVE_LUA));
static COUNT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(COUNT_LUA));
static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ACQUIRE_LUA));
static SETTLE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SETTLE_LUA));

impl RedisBudgets {
    /// Connects (bounded); `prefix` namespaces the keys.
    pub async fn connect(url: &str, prefix: &str) -> Result<Arc<RedisBudgets>, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("not a usable Redis URL ({:?})", e.kind()))?;
        let conn = tokio::time::timeout(Duration::from_secs(3), ConnectionManager::new(client))
            .await
            .map_err(|_| "Redis did not answer within 3s".to_string())?
            .map_err(|e| format!("cannot connect to Redis: {e}"))?;
        Ok(Arc::new(RedisBudgets {
            conn,
            prefix: prefix.to_string(),
        }))
    }

    /// Runs a prepared script within the request path's Redis deadline.
    async fn run<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, String> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(Duration::from_millis(500), inv.invoke_async(&mut conn))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())
    }

    /// Runs `work` off the request path (a settlement, a release), bounded
    /// to 2 s; `lost` is logged when it does not go through.
    fn later<F>(&self, lost: &'static str, work: impl FnOnce(ConnectionManager) -> F)
    where
        F: std::future::Future<Output = Result<(), redis::RedisError>> + Send + 'static,
    {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("{lost}");
            return;
        };
        let fut = work(self.conn.clone());
        rt.spawn(async move {
            if !matches!(
                tokio::time::timeout(Duration::from_secs(2), fut).await,
                Ok(Ok(()))
            ) {
                tracing::warn!("{lost}");
            }
        });
    }

    fn keys(&self, entries: &[SharedEntry]) -> Vec<String> {
        let mut keys = Vec::with_capacity(entries.len() * 3);
        for e in entries {
            // One hash slot per scope and period (`{…}`), for Redis Cluster.
            let base = format!("{}:budget:{{{}:{}}}", self.prefix, e.scope, e.period_start);
            keys.push(base.clone());
            keys.push(format!("{base}:res"));
            keys.push(format!("{base}:amt"));
        }
        keys
    }

    fn slots(&self, scope: &str) -> String {
        format!("{}:slots:{{{scope}}}", self.prefix)
    }

    fn window(&self, scope: &str, minute: u64) -> (String, String) {
        (
            format!("{}:rate:{{{scope}:{minute}}}:r", self.prefix),
            format!("{}:rate:{{{scope}:{minute}}}:t", self.prefix),
        )
    }
}

/// A script's answer: 0 taken (under `id`), else the 1-based entry that
/// refused.
fn taken(r: i64, id: String) -> Result<String, usize> {
    if r == 0 {
        Ok(id)
    } else {
        Err(r.saturating_sub(1).max(0) as usize)
    }
}

impl SharedBudgets for RedisBudgets {
    fn count<'a>(
        &'a self,
        scopes: &'a [RatedScope],
        est: u64,
    ) -> crate::providers::BoxFuture<'a, Result<Option<(usize, &'static str)>, String>> {
        Box::pin(async move {
            let minute = crate::util::now_secs() / 60;
            let mut inv = COUNT.prepare_invoke();
            for (scope, _, _) in scopes {
                let (r, t) = self.window(scope, minute);
                inv.key(r).key(t);
            }
            inv.arg(est);
            for (_, rpm, tpm) in scopes {
                inv.arg(rpm.map_or(-1, i64::from))
                    .arg(tpm.map_or(-1, i64::from));
            }
            let (i, what): (i64, i64) = self.run(&inv).await?;
            Ok((i > 0).then(|| {
                (
                    (i - 1) as usize,
                    if what == 1 { "requests" } else { "tokens" },
                )
            }))
        })
    }

    fn acquire<'a>(
        &'a self,
        scopes: &'a [(String, u32)],
    ) -> crate::providers::BoxFuture<'a, Result<Result<String, usize>, String>> {
        Box::pin(async move {
            let id = crate::util::new_id("lease_");
            let mut inv = ACQUIRE.prepare_invoke();
            for (scope, _) in scopes {
                inv.key(self.slots(scope));
            }
            inv.arg(crate::util::now_ms())
                .arg(&id)
                .arg(crate::govern::LEASE_TTL.as_millis() as i64);
            for (_, n) in scopes {
                inv.arg(*n);
            }
            let r: i64 = self.run(&inv).await?;
            Ok(taken(r, id))
        })
    }

    fn release(&self, scopes: Vec<String>, lease: String) {
        let keys: Vec<String> = scopes.iter().map(|s| self.slots(s)).collect();
        self.later(
            "cannot give a concurrency slot back to Redis; it frees itself within 15 minutes",
            |mut conn| async move {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.zrem(k, &lease).ignore();
                }
                pipe.query_async(&mut conn).await
            },
        );
    }

    fn debit(&self, scope: String, delta: i64) {
        let (_, key) = self.window(&scope, crate::util::now_secs() / 60);
        self.later(
            "cannot count tokens in Redis; this minute's shared count is short",
            |mut conn| async move {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .incr(&key, delta)
                    .ignore()
                    .expire(&key, 61)
                    .ignore();
                pipe.query_async(&mut conn).await
            },
        );
    }

    fn reserve<'a>(
        &'a self,
        entries: &'a [SharedEntry],
        worst: Micros,
    ) -> crate::providers::BoxFuture<'a, Result<Result<String, usize>, String>> {
        Box::pin(async move {
            let now = crate::util::now_ms();
            let id = crate::util::new_id("res_");
            let mut inv = RESERVE.prepare_invoke();
            for k in self.keys(entries) {
                inv.key(k);
            }
            inv.arg(now)
                .arg(worst)
                .arg(&id)
                .arg(RESERVATION_TTL.as_millis() as i64);
            for e in entries {
                let kttl = if e.period_end == i64::MAX {
                    0
                } else {
                    (e.period_end - now).max(0) + 86_400_000
                };
                inv.arg(e.limit).arg(e.seed).arg(kttl);
            }
            let r: i64 = self.run(&inv).await?;
            Ok(taken(r, id))
        })
    }

    fn settle(&self, entries: Vec<SharedEntry>, id: String, actual: Micros) {
        let keys = self.keys(&entries);
        self.later(
            "cannot settle a budget reservation in Redis; it expires within the hour",
            |mut conn| async move {
                let mut inv = SETTLE.prepare_invoke();
                for k in keys {
                    inv.key(k);
                }
                inv.arg(&id).arg(actual);
                inv.invoke_async::<i64>(&mut conn).await.map(|_| ())
            },
        );
    }
}
