//! Governance on the request path: a caller's scope, its limits and its
//! budget, checked after the model is known and before anything reaches a
//! provider (lifecycle step "limits and budget reservation").
//!
//! * **Scope**: a virtual key's `models` list; outside it → 403.
//! * **Limits**: requests and tokens per minute (token buckets) and
//!   concurrency, per key, per user (across all its keys) and per catalog
//!   model (whichever provider serves it) → 429 with `Retry-After`. With
//!   `--redis`, per-minute counts and concurrency slots are also shared by
//!   every replica.
//! * **Budgets**: before the call the request's worst-case cost is reserved
//!   atomically (prompt estimate × input price + output cap × output
//!   price); a request the remaining budget cannot cover is refused → 429
//!   `insufficient_quota`. When the answer ends (or the client leaves) the
//!   reservation is settled with the real cost and the rest released.
//!   Spend is kept per calendar period in the configured time zone; one
//!   replica keeps it in memory and persists it ([`Governor::take_dirty`]);
//!   with `--redis` every replica reserves through Redis scripts, so the
//!   budget is exact across replicas.
//!
//! An [`Admission`] holds what a request took; it is settled by the usage
//! finaliser with the real cost, or released when dropped unsettled.

use crate::error::ApiError;
use crate::identity::{Budget, KeyEntry, Limits, Micros, Period, TimeZone, UserEntry};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Who is calling, once authenticated. Empty for an open (desktop) gateway
/// or a static `--auth-key`.
#[derive(Debug, Clone, Default)]
pub struct Principal {
    pub key: Option<Arc<KeyEntry>>,
    pub user: Option<Arc<UserEntry>>,
}

impl Principal {
    pub fn is_empty(&self) -> bool {
        self.key.is_none() && self.user.is_none()
    }

    /// How a refusal names `scope` for this caller.
    fn describe(&self, scope: &Scope) -> String {
        scope.describe(self.key.as_deref(), self.user.as_deref())
    }

    /// Whether the caller may call `model` (its key's scope; anyone else may).
    pub fn may_use(&self, model: &str) -> bool {
        self.key.as_ref().is_none_or(|k| k.allows(model))
    }

    pub fn key_id(&self) -> Option<i64> {
        self.key.as_ref().map(|k| k.id)
    }

    pub fn user_id(&self) -> Option<i64> {
        self.user
            .as_ref()
            .map(|u| u.id)
            .or_else(|| self.key.as_ref().and_then(|k| k.user_id))
    }
}

/// What is being limited.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Key(i64),
    User(i64),
    Model(Arc<str>),
}

impl Scope {
    /// The stored name (`key:3`, `user:7`, `model:gpt-4o`).
    pub fn name(&self) -> String {
        match self {
            Scope::Key(id) => format!("key:{id}"),
            Scope::User(id) => format!("user:{id}"),
            Scope::Model(m) => format!("model:{m}"),
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        match kind {
            "key" => rest.parse().ok().map(Scope::Key),
            "user" => rest.parse().ok().map(Scope::User),
            "model" => Some(Scope::Model(rest.into())),
            _ => None,
        }
    }

    fn describe(&self, key: Option<&KeyEntry>, user: Option<&UserEntry>) -> String {
        match self {
            Scope::Key(_) => match key {
                Some(k) => format!("API key `{}`", k.name),
                None => "this API key".into(),
            },
            Scope::User(_) => match user {
                Some(u) => format!("user `{}`", u.username),
                None => "this key's user".into(),
            },
            Scope::Model(m) => format!("model `{m}`"),
        }
    }
}

/// What a request asks for, for limits and the budget.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask {
    /// Estimated prompt tokens.
    pub prompt_tokens: u64,
    /// The most output tokens it may produce.
    pub max_output: u64,
    /// Catalog prices per million tokens (input, output).
    pub price: Option<(f64, f64)>,
}

impl Ask {
    /// The worst-case cost, in micro-units.
    pub fn worst_cost(&self) -> Micros {
        match self.price {
            None => 0,
            Some((i, o)) => crate::identity::to_micros(
                (self.prompt_tokens as f64 * i + self.max_output as f64 * o) / 1_000_000.0,
            ),
        }
    }
}

/// A per-minute token bucket that may be checked before it is taken from.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    limit: u32,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(limit: u32, now: Instant) -> Bucket {
        Bucket {
            limit,
            level: f64::from(limit),
            at: now,
        }
    }

    fn refill(&mut self, limit: u32, now: Instant) {
        let cap = f64::from(limit);
        if limit != self.limit {
            // The limit changed: keep the fraction used.
            self.level = self.level.min(cap);
            self.limit = limit;
        }
        let per_sec = cap / 60.0;
        self.level = (self.level + (now - self.at).as_secs_f64() * per_sec).min(cap);
        self.at = now;
    }

    /// How long until `n` is available (`None`: now). More than the whole
    /// bucket needs a full bucket.
    fn wait(&self, n: f64) -> Option<Duration> {
        let cap = f64::from(self.limit);
        let n = n.min(cap);
        if self.level >= n {
            return None;
        }
        let per_sec = cap / 60.0;
        if per_sec <= 0.0 {
            return Some(Duration::from_secs(60));
        }
        Some(Duration::from_secs_f64((n - self.level) / per_sec))
    }

    /// Takes `n` (gives back for a negative `n`) and says how much was
    /// really taken. Debt is allowed down to one bucket, so real usage
    /// beyond the estimate is paid for by later requests.
    fn take(&mut self, n: f64) -> f64 {
        let cap = f64::from(self.limit);
        let next = (self.level - n).clamp(-cap, cap);
        let taken = self.level - next;
        self.level = next;
        taken
    }
}

/// One budget period's money.
#[derive(Debug, Clone, Copy, Default)]
struct Ledger {
    spent: Micros,
    reserved: Micros,
}

/// Whether `worst` more fits under `limit` after `spent` and `reserved`
/// (the rule the Redis script applies too): nothing fits once the budget
/// is used up, not even a request that costs nothing.
fn fits(spent: Micros, reserved: Micros, worst: Micros, limit: Micros) -> bool {
    let committed = spent.saturating_add(reserved);
    committed < limit && committed.saturating_add(worst) <= limit
}

#[derive(Debug, Default)]
struct Counters {
    rpm: Option<Bucket>,
    tpm: Option<Bucket>,
    inflight: u32,
}

#[derive(Default)]
struct State {
    counters: HashMap<Scope, Counters>,
    /// By scope and period start (Unix ms; 0 for `total`).
    ledgers: HashMap<(Scope, i64), Ledger>,
    /// Spend settled but not persisted yet, by scope and period.
    dirty: HashMap<(Scope, i64), Micros>,
    /// The current `(start, end)` of each calendar period, recomputed only
    /// when it ends (daily, weekly, monthly).
    periods: [Option<(i64, i64)>; 3],
}

/// Budgets shared by replicas (Redis), behind a trait so the engine does
/// not care how.
pub trait SharedBudgets: Send + Sync + 'static {
    /// Reserves `worst` in every `(scope, period_start, period_end, limit,
    /// seed)` at once, or nothing: `Ok(Ok(id))` reserved under `id`,
    /// `Ok(Err(i))` refused by entry `i`, `Err` the store is unreachable.
    fn reserve<'a>(
        &'a self,
        entries: &'a [SharedEntry],
        worst: Micros,
    ) -> crate::providers::BoxFuture<'a, Result<Result<String, usize>, String>>;
    /// Settles a reservation with the real cost.
    fn settle(&self, entries: Vec<SharedEntry>, id: String, actual: Micros);
    /// Counts a request (and `est` tokens) in the current minute of every
    /// `(scope, rpm, tpm)` at once, or in none when one is over its limit:
    /// `Ok(None)` counted, `Ok(Some((i, what)))` refused by entry `i`
    /// (`what`: "requests" or "tokens"), `Err` unreachable.
    fn count<'a>(
        &'a self,
        scopes: &'a [RatedScope],
        est: u64,
    ) -> crate::providers::BoxFuture<'a, Result<Option<(usize, &'static str)>, String>>;
    /// Adds `delta` tokens (real usage beyond the estimate) to a scope's
    /// current minute.
    fn debit(&self, scope: String, delta: i64);
    /// Takes a concurrency slot in every `(scope, limit)` at once, or none:
    /// `Ok(Ok(lease))` taken, `Ok(Err(i))` entry `i` is full, `Err`
    /// unreachable. A lease of a replica that died frees itself after
    /// [`LEASE_TTL`].
    fn acquire<'a>(
        &'a self,
        scopes: &'a [(String, u32)],
    ) -> crate::providers::BoxFuture<'a, Result<Result<String, usize>, String>>;
    /// Gives the slots of a lease back.
    fn release(&self, scopes: Vec<String>, lease: String);
}

/// How long a shared concurrency slot is held at most (a replica that dies
/// with requests in flight frees its slots after this).
pub const LEASE_TTL: Duration = Duration::from_secs(900);

/// A scope's name and its requests and tokens per minute, for the shared
/// per-minute windows.
pub type RatedScope = (String, Option<u32>, Option<u32>);

/// One budget scope as the shared store sees it.
#[derive(Debug, Clone)]
pub struct SharedEntry {
    pub scope: String,
    pub period_start: i64,
    pub period_end: i64,
    pub limit: Micros,
    /// What this replica knows was spent (seeds a missing counter).
    pub seed: Micros,
}

/// The process-wide limits and budgets.
pub struct Governor {
    state: Mutex<State>,
    tz: TimeZone,
    shared: Option<Arc<dyn SharedBudgets>>,
}

impl Default for Governor {
    fn default() -> Governor {
        Governor::new(TimeZone::UTC, None)
    }
}

/// What one scope of an admission took.
#[derive(Debug)]
struct Hold {
    scope: Scope,
    inflight: bool,
    /// Tokens taken from the scope's tpm bucket at admission.
    tpm: Option<f64>,
    /// The period start and the amount reserved there.
    budget: Option<(i64, Micros)>,
}

/// What an admitted request holds: its concurrency slots, its token
/// estimate and its budget reservations. Settle it with the real usage;
/// dropped unsettled, it releases everything and charges nothing.
pub struct Admission {
    gov: Option<Arc<Governor>>,
    holds: Vec<Hold>,
    /// The worst-case cost reserved (charged when the real one is unknown).
    worst: Micros,
    /// A reservation held in the shared store, with its entries.
    shared: Option<(String, Vec<SharedEntry>)>,
    /// Scopes counted in the shared per-minute windows, and the estimate.
    shared_tokens: Option<(Vec<RatedScope>, u64)>,
    /// Concurrency slots held in the shared store: the lease and its scopes.
    shared_lease: Option<(String, Vec<String>)>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("holds", &self.holds)
            .finish()
    }
}

impl Admission {
    /// Nothing held (no principal, no limits).
    pub fn none() -> Admission {
        Admission {
            gov: None,
            holds: Vec::new(),
            worst: 0,
            shared: None,
            shared_tokens: None,
            shared_lease: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.gov.is_none()
    }

    /// Settles with the real cost (`None`: unknown, nothing charged) and
    /// the real tokens (prompt + output).
    pub fn settle(mut self, cost: Option<f64>, tokens: Option<u64>) {
        self.release(cost.map(crate::identity::to_micros).unwrap_or(0), tokens);
    }

    /// Settles a request that was answered but whose usage never became
    /// known: the reserved worst case is charged, so an answer without
    /// usage is never free.
    pub fn settle_worst(mut self) {
        let worst = self.worst;
        self.release(worst, None);
    }

    /// Whether settling needs the answer's real usage (a budget or a
    /// tokens-per-minute limit is held).
    pub fn needs_usage(&self) -> bool {
        self.holds
            .iter()
            .any(|h| h.budget.is_some() || h.tpm.is_some())
    }

    fn release(&mut self, actual: Micros, tokens: Option<u64>) {
        let Some(gov) = self.gov.take() else {
            return;
        };
        let holds = std::mem::take(&mut self.holds);
        gov.release(&holds, actual, tokens);
        if let Some(s) = &gov.shared {
            if let Some((lease, scopes)) = self.shared_lease.take() {
                s.release(scopes, lease);
            }
            if let Some((id, entries)) = self.shared.take() {
                s.settle(entries, id, actual);
            }
            if let (Some((scopes, est)), Some(t)) = (self.shared_tokens.take(), tokens) {
                let delta = t as i64 - est as i64;
                if delta != 0 {
                    for (name, _, tpm) in scopes {
                        if tpm.is_some() {
                            s.debit(name, delta);
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.release(0, None);
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn secs_up(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1).to_string()
}

impl Governor {
    pub fn new(tz: TimeZone, shared: Option<Arc<dyn SharedBudgets>>) -> Governor {
        Governor {
            state: Mutex::new(State::default()),
            tz,
            shared,
        }
    }

    /// Loads persisted spend (at start): `(scope name, period start, spent)`.
    pub fn load_spend(&self, rows: impl IntoIterator<Item = (String, i64, Micros)>) {
        let mut st = lock(&self.state);
        for (scope, start, spent) in rows {
            if let Some(s) = Scope::parse(&scope) {
                st.ledgers.entry((s, start)).or_default().spent = spent;
            }
        }
    }

    /// Spend settled since the last call, to persist: `(scope, period start,
    /// delta)`. Put back with [`Governor::restore_dirty`] if writing fails.
    pub fn take_dirty(&self) -> Vec<(String, i64, Micros)> {
        let mut st = lock(&self.state);
        // Ledgers of periods long over (nothing reserved) are dropped, so the
        // map holds only current periods however long the process runs.
        let old = crate::util::now_ms() - 40 * 86_400_000;
        if st.ledgers.len() > 64 {
            st.ledgers
                .retain(|(_, start), l| *start == 0 || *start >= old || l.reserved > 0);
        }
        st.dirty
            .drain()
            .map(|((s, p), d)| (s.name(), p, d))
            .collect()
    }

    pub fn restore_dirty(&self, rows: Vec<(String, i64, Micros)>) {
        let mut st = lock(&self.state);
        for (s, p, d) in rows {
            if let Some(s) = Scope::parse(&s) {
                *st.dirty.entry((s, p)).or_default() += d;
            }
        }
    }

    /// The `(start, end)` of the period holding `now_ms`, from the cache
    /// while it lasts (working it out in the time zone costs more than the
    /// rest of an admission).
    fn bounds(&self, st: &mut State, period: Period, now_ms: i64) -> (i64, i64) {
        let slot = match period {
            Period::Daily => 0,
            Period::Weekly => 1,
            Period::Monthly => 2,
            Period::Total => return (0, i64::MAX),
        };
        match st.periods[slot] {
            Some((s, e)) if s <= now_ms && now_ms < e => (s, e),
            _ => {
                let b = period.bounds(now_ms, &self.tz);
                st.periods[slot] = Some(b);
                b
            }
        }
    }

    /// The spend and reservations of a scope's current period (reports).
    pub fn spent(&self, scope: &Scope, budget: &Budget, now_ms: i64) -> (Micros, Micros) {
        let mut st = lock(&self.state);
        let (start, _) = self.bounds(&mut st, budget.period, now_ms);
        st.ledgers
            .get(&(scope.clone(), start))
            .map(|l| (l.spent, l.reserved))
            .unwrap_or_default()
    }

    /// Admits a request for `model` by `who` (scope, limits, budget), or
    /// says why not. `model_limits` are the catalog's rpm/tpm for the model.
    pub async fn admit(
        self: &Arc<Governor>,
        who: &Principal,
        model: &str,
        model_limits: (Option<u32>, Option<u32>),
        ask: Ask,
    ) -> Result<Admission, ApiError> {
        if let Some(k) = &who.key {
            if !k.allows(model) {
                return Err(ApiError::Forbidden(format!(
                    "the API key `{}` may not use model `{model}`",
                    k.name
                )));
            }
        }
        let model_scope = Limits {
            rpm: model_limits.0,
            tpm: model_limits.1,
            ..Limits::default()
        };
        let mut scopes: Vec<(Scope, &Limits)> = Vec::with_capacity(3);
        if let Some(k) = &who.key {
            if !k.limits.is_empty() {
                scopes.push((Scope::Key(k.id), &k.limits));
            }
        }
        if let Some(u) = &who.user {
            if !u.limits.is_empty() {
                scopes.push((Scope::User(u.id), &u.limits));
            }
        }
        if !model_scope.is_empty() {
            scopes.push((Scope::Model(model.into()), &model_scope));
        }
        if scopes.is_empty() {
            return Ok(Admission::none());
        }
        let est = ask.prompt_tokens;
        let worst = ask.worst_cost();
        let now_ms = crate::util::now_ms();
        let shared_money = self.shared.is_some();
        let mut adm = Admission {
            gov: Some(self.clone()),
            holds: Vec::with_capacity(scopes.len()),
            worst,
            shared: None,
            shared_tokens: None,
            shared_lease: None,
        };
        let mut shared_entries = Vec::new();
        // Who each shared entry belongs to, for the refusal message.
        let mut shared_who: Vec<(String, Budget)> = Vec::new();
        {
            let mut st = lock(&self.state);
            let now = Instant::now();
            // Check everything first, then take: all or nothing.
            for (scope, lim) in &scopes {
                let c = st.counters.entry(scope.clone()).or_default();
                let who_text = || who.describe(scope);
                if let Some(n) = lim.max_concurrency {
                    if c.inflight >= n {
                        return Err(ApiError::RateLimited {
                            message: format!(
                                "{} is at its concurrency limit ({n} requests in flight)",
                                who_text()
                            ),
                            retry_after: Some("1".into()),
                        });
                    }
                }
                if let Some(n) = lim.rpm {
                    let b = c.rpm.get_or_insert_with(|| Bucket::new(n, now));
                    b.refill(n, now);
                    if let Some(wait) = b.wait(1.0) {
                        return Err(ApiError::RateLimited {
                            message: format!(
                                "{} is over its limit of {n} requests per minute",
                                who_text()
                            ),
                            retry_after: Some(secs_up(wait)),
                        });
                    }
                } else {
                    c.rpm = None;
                }
                if let Some(n) = lim.tpm {
                    let b = c.tpm.get_or_insert_with(|| Bucket::new(n, now));
                    b.refill(n, now);
                    if let Some(wait) = b.wait(est as f64) {
                        return Err(ApiError::RateLimited {
                            message: format!(
                                "{} is over its limit of {n} tokens per minute",
                                who_text()
                            ),
                            retry_after: Some(secs_up(wait)),
                        });
                    }
                } else {
                    c.tpm = None;
                }
            }
            // Each budget's current period, worked out once.
            let periods: Vec<Option<(i64, i64)>> = scopes
                .iter()
                .map(|(_, l)| l.budget.map(|b| self.bounds(&mut st, b.period, now_ms)))
                .collect();
            if !shared_money {
                for ((scope, lim), period) in scopes.iter().zip(&periods) {
                    let (Some(b), Some((start, end))) = (lim.budget, *period) else {
                        continue;
                    };
                    let l = st.ledgers.entry((scope.clone(), start)).or_default();
                    if !fits(l.spent, l.reserved, worst, b.amount) {
                        return Err(budget_refusal(&who.describe(scope), &b, end, now_ms));
                    }
                }
            }
            for ((scope, lim), period) in scopes.iter().zip(&periods) {
                let c = st.counters.entry(scope.clone()).or_default();
                if lim.max_concurrency.is_some() {
                    c.inflight += 1;
                }
                if let Some(b) = &mut c.rpm {
                    b.take(1.0);
                }
                let tpm = c.tpm.as_mut().map(|b| b.take(est as f64));
                let mut hold = Hold {
                    scope: scope.clone(),
                    inflight: lim.max_concurrency.is_some(),
                    tpm,
                    budget: None,
                };
                if let (Some(b), Some((start, end))) = (lim.budget, *period) {
                    let l = st.ledgers.entry((scope.clone(), start)).or_default();
                    if shared_money {
                        shared_who.push((who.describe(scope), b));
                        shared_entries.push(SharedEntry {
                            scope: scope.name(),
                            period_start: start,
                            period_end: end,
                            limit: b.amount,
                            seed: l.spent,
                        });
                    } else {
                        l.reserved = l.reserved.saturating_add(worst);
                    }
                    // Reserved here (shared mode: in Redis, nothing here).
                    hold.budget = Some((start, if shared_money { 0 } else { worst }));
                }
                adm.holds.push(hold);
            }
        }
        if let Some(shared) = &self.shared {
            let bounded: Vec<(String, u32)> = scopes
                .iter()
                .filter_map(|(s, l)| l.max_concurrency.map(|n| (s.name(), n)))
                .collect();
            if !bounded.is_empty() {
                match shared.acquire(&bounded).await {
                    Ok(Ok(lease)) => {
                        adm.shared_lease = Some((lease, bounded.into_iter().map(|b| b.0).collect()))
                    }
                    Ok(Err(i)) => {
                        let (scope, lim) = scopes
                            .iter()
                            .filter(|(_, l)| l.max_concurrency.is_some())
                            .nth(i)
                            .unwrap_or(&scopes[0]);
                        return Err(ApiError::RateLimited {
                            message: format!(
                                "{} is at its concurrency limit ({} requests in flight on all replicas)",
                                who.describe(scope),
                                lim.max_concurrency.unwrap_or(0)
                            ),
                            retry_after: Some("1".into()),
                        });
                    }
                    Err(e) => warn_shared(&e),
                }
            }
            let rated: Vec<RatedScope> = scopes
                .iter()
                .filter(|(_, l)| l.rpm.is_some() || l.tpm.is_some())
                .map(|(s, l)| (s.name(), l.rpm, l.tpm))
                .collect();
            if !rated.is_empty() {
                match shared.count(&rated, est).await {
                    Ok(None) => adm.shared_tokens = Some((rated, est)),
                    Ok(Some((i, what))) => {
                        let (scope, lim) = scopes
                            .iter()
                            .filter(|(_, l)| l.rpm.is_some() || l.tpm.is_some())
                            .nth(i)
                            .unwrap_or(&scopes[0]);
                        let n = if what == "requests" { lim.rpm } else { lim.tpm };
                        let secs = 60 - (now_ms / 1000) % 60;
                        return Err(ApiError::RateLimited {
                            message: format!(
                                "{} is over its limit of {} {what} per minute (shared by every replica)",
                                who.describe(scope),
                                n.unwrap_or(0)
                            ),
                            retry_after: Some(secs.max(1).to_string()),
                        });
                    }
                    // Unreachable: this replica's own buckets still hold.
                    Err(e) => warn_shared(&e),
                }
            }
        }
        if let (Some(shared), false) = (&self.shared, shared_entries.is_empty()) {
            match shared.reserve(&shared_entries, worst).await {
                Ok(Ok(id)) => adm.shared = Some((id, shared_entries)),
                Ok(Err(i)) => {
                    let end = shared_entries.get(i).map_or(i64::MAX, |e| e.period_end);
                    // `adm` drops here and gives back what it took.
                    return Err(match shared_who.get(i) {
                        Some((w, b)) => budget_refusal(w, b, end, now_ms),
                        None => budget_refusal("this caller", &NO_BUDGET, end, now_ms),
                    });
                }
                Err(e) => {
                    // The shared store is unreachable: this replica's own
                    // ledger still holds the line (exact for its requests).
                    warn_shared(&e);
                    let mut st = lock(&self.state);
                    for (i, e) in shared_entries.iter().enumerate() {
                        let Some(scope) = Scope::parse(&e.scope) else {
                            continue;
                        };
                        let l = st.ledgers.entry((scope, e.period_start)).or_default();
                        if !fits(l.spent, l.reserved, worst, e.limit) {
                            drop(st);
                            return Err(match shared_who.get(i) {
                                Some((w, b)) => budget_refusal(w, b, e.period_end, now_ms),
                                None => {
                                    budget_refusal("this caller", &NO_BUDGET, e.period_end, now_ms)
                                }
                            });
                        }
                    }
                    for e in &shared_entries {
                        if let Some(scope) = Scope::parse(&e.scope) {
                            let l = st.ledgers.entry((scope, e.period_start)).or_default();
                            l.reserved = l.reserved.saturating_add(worst);
                        }
                    }
                    for h in adm.holds.iter_mut() {
                        if let Some((_, local)) = &mut h.budget {
                            *local = worst;
                        }
                    }
                }
            }
        }
        Ok(adm)
    }

    fn release(&self, holds: &[Hold], actual: Micros, tokens: Option<u64>) {
        let mut st = lock(&self.state);
        for h in holds {
            if let Some(c) = st.counters.get_mut(&h.scope) {
                if h.inflight {
                    c.inflight = c.inflight.saturating_sub(1);
                }
                if let (Some(taken), Some(b), Some(t)) = (h.tpm, &mut c.tpm, tokens) {
                    // Real usage beyond what was taken is paid now; less is
                    // given back.
                    b.take(t as f64 - taken);
                }
            }
            // `worst`: what this request reserved in the local ledger.
            if let Some((start, worst)) = h.budget {
                let l = st.ledgers.entry((h.scope.clone(), start)).or_default();
                l.reserved = l.reserved.saturating_sub(worst).max(0);
                l.spent = l.spent.saturating_add(actual);
                if actual > 0 {
                    *st.dirty.entry((h.scope.clone(), start)).or_default() += actual;
                }
            }
        }
    }
}

const NO_BUDGET: Budget = Budget {
    amount: 0,
    period: Period::Total,
};

fn budget_refusal(who: &str, b: &Budget, end: i64, now_ms: i64) -> ApiError {
    let amount = crate::identity::from_micros(b.amount);
    let (message, retry_after) = if end == i64::MAX {
        (
            format!("{who} has used its budget of {amount} (total); this request could exceed it"),
            None,
        )
    } else {
        let secs = ((end - now_ms).max(1000) + 999) / 1000;
        (
            format!(
                "{who} has used its {} budget of {amount}, or this request could exceed it; it resets in {secs}s",
                b.period.as_str()
            ),
            Some(secs.to_string()),
        )
    };
    ApiError::QuotaExceeded {
        message,
        retry_after,
    }
}

fn warn_shared(e: &str) {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = crate::util::now_secs();
    if LAST.swap(now, std::sync::atomic::Ordering::Relaxed) + 10 <= now {
        tracing::warn!(error = %e, "Redis unavailable: budgets are held by this replica's own ledger");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::identity::Period;

    fn key(limits: Limits, models: Option<Vec<String>>) -> Arc<KeyEntry> {
        Arc::new(KeyEntry {
            id: 1,
            name: "ci".into(),
            user_id: Some(9),
            models,
            expires_at: None,
            revoked: false,
            limits,
        })
    }

    fn who(limits: Limits) -> Principal {
        Principal {
            key: Some(key(limits, None)),
            user: None,
        }
    }

    fn ask(price: Option<(f64, f64)>) -> Ask {
        Ask {
            prompt_tokens: 1000,
            max_output: 1000,
            price,
        }
    }

    #[tokio::test]
    async fn scope_is_checked_first() {
        let g = Arc::new(Governor::default());
        let p = Principal {
            key: Some(key(Limits::default(), Some(vec!["a".into()]))),
            user: None,
        };
        assert!(g.admit(&p, "a", (None, None), ask(None)).await.is_ok());
        let e = g.admit(&p, "b", (None, None), ask(None)).await.unwrap_err();
        assert_eq!(e.status(), 403);
        assert!(e.to_string().contains("`b`"));
    }

    #[tokio::test]
    async fn rpm_refuses_with_retry_after() {
        let g = Arc::new(Governor::default());
        let p = who(Limits {
            rpm: Some(2),
            ..Limits::default()
        });
        for _ in 0..2 {
            g.admit(&p, "m", (None, None), ask(None))
                .await
                .unwrap()
                .settle(None, None);
        }
        let e = g.admit(&p, "m", (None, None), ask(None)).await.unwrap_err();
        assert_eq!(e.status(), 429);
        assert_eq!(e.code(), "rate_limited");
        let ra: u64 = e.retry_after().unwrap().parse().unwrap();
        assert!((1..=30).contains(&ra), "{ra}");
    }

    #[tokio::test]
    async fn concurrency_is_released_on_drop() {
        let g = Arc::new(Governor::default());
        let p = who(Limits {
            max_concurrency: Some(1),
            ..Limits::default()
        });
        let a = g.admit(&p, "m", (None, None), ask(None)).await.unwrap();
        assert!(g.admit(&p, "m", (None, None), ask(None)).await.is_err());
        drop(a);
        assert!(g.admit(&p, "m", (None, None), ask(None)).await.is_ok());
    }

    #[tokio::test]
    async fn tpm_counts_estimates_and_real_usage() {
        let g = Arc::new(Governor::default());
        let p = who(Limits {
            tpm: Some(3000),
            ..Limits::default()
        });
        // Estimated 1000, used 2500: 500 left of 3000.
        g.admit(&p, "m", (None, None), ask(None))
            .await
            .unwrap()
            .settle(None, Some(2500));
        let e = g.admit(&p, "m", (None, None), ask(None)).await.unwrap_err();
        assert!(e.to_string().contains("tokens per minute"), "{e}");
    }

    #[tokio::test]
    async fn budgets_reserve_worst_case_and_settle_real_cost() {
        let g = Arc::new(Governor::default());
        // Worst case per request: (1000 × 1 + 1000 × 2) / 1e6 = 0.003.
        let p = who(Limits {
            budget: Some(Budget {
                amount: crate::identity::to_micros(0.009),
                period: Period::Monthly,
            }),
            ..Limits::default()
        });
        let price = Some((1.0, 2.0));
        let held: Vec<Admission> = {
            let mut v = Vec::new();
            for _ in 0..3 {
                v.push(g.admit(&p, "m", (None, None), ask(price)).await.unwrap());
            }
            v
        };
        let e = g
            .admit(&p, "m", (None, None), ask(price))
            .await
            .unwrap_err();
        assert_eq!(e.status(), 429);
        assert_eq!(e.code(), "insufficient_quota");
        assert!(e.retry_after().is_some());
        // Each really cost 0.001: 0.006 is free again, two more fit.
        for a in held {
            a.settle(Some(0.001), Some(1500));
        }
        let a = g.admit(&p, "m", (None, None), ask(price)).await.unwrap();
        let b = g.admit(&p, "m", (None, None), ask(price)).await.unwrap();
        assert!(g.admit(&p, "m", (None, None), ask(price)).await.is_err());
        // A client that left before any usage: released, nothing charged.
        drop(a);
        drop(b);
        let dirty = g.take_dirty();
        assert_eq!(dirty.len(), 1);
        assert_eq!(dirty[0].0, "key:1");
        assert_eq!(dirty[0].2, 3000);
    }

    #[tokio::test]
    async fn a_user_budget_spans_its_keys() {
        let g = Arc::new(Governor::default());
        let user = Arc::new(UserEntry {
            id: 9,
            username: "ann".into(),
            role: crate::identity::Role::Member,
            disabled: false,
            limits: Limits {
                budget: Some(Budget {
                    amount: 3000,
                    period: Period::Total,
                }),
                ..Limits::default()
            },
        });
        let k1 = Principal {
            key: Some(key(Limits::default(), None)),
            user: Some(user.clone()),
        };
        let mut k2e = (*key(Limits::default(), None)).clone();
        k2e.id = 2;
        let k2 = Principal {
            key: Some(Arc::new(k2e)),
            user: Some(user),
        };
        let price = Some((1.0, 2.0));
        let _a = g.admit(&k1, "m", (None, None), ask(price)).await.unwrap();
        let e = g
            .admit(&k2, "m", (None, None), ask(price))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("user `ann`"), "{e}");
        assert!(e.retry_after().is_none());
    }

    #[tokio::test]
    async fn concurrent_requests_never_overspend() {
        let g = Arc::new(Governor::default());
        let p = who(Limits {
            budget: Some(Budget {
                amount: 30_000,
                period: Period::Daily,
            }),
            ..Limits::default()
        });
        let admitted = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (g, p, admitted) = (g.clone(), p.clone(), admitted.clone());
            tasks.push(tokio::spawn(async move {
                if let Ok(a) = g.admit(&p, "m", (None, None), ask(Some((1.0, 2.0)))).await {
                    admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    a.settle(Some(0.003), None);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(admitted.load(std::sync::atomic::Ordering::SeqCst), 10);
    }

    #[test]
    fn scope_names_round_trip() {
        for s in [Scope::Key(3), Scope::User(7), Scope::Model("a:b".into())] {
            assert_eq!(Scope::parse(&s.name()), Some(s));
        }
        assert_eq!(Scope::parse("x:1"), None);
    }
}
