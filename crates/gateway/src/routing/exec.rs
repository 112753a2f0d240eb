//! Running a plan: try targets in strategy order across the fallback chain,
//! skip open breakers and exhausted keys, retry retryable failures with
//! exponential backoff and jitter within a total deadline, and record every
//! decision for the request.

use super::upstream::{InflightGuard, NoKey, Upstream, DEFAULT_COOLDOWN};
use super::{ModelRouter, Plan};
use crate::error::ApiError;
use crate::providers::Provider;
use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// One try, handed to the caller's attempt function.
pub struct Attempt {
    pub provider: Arc<dyn Provider>,
    pub upstream_model: String,
    /// The upstream's name and the index of the key this try uses.
    pub origin: super::affinity::Origin,
    /// Keep alive as long as the request uses the upstream (move it into a
    /// streamed body).
    pub guard: InflightGuard,
}

/// What happened to one candidate.
#[derive(Debug, Clone)]
pub struct Step {
    pub provider: Arc<str>,
    pub model: String,
    pub key: Option<usize>,
    /// `ok`, or why routing moved on.
    pub outcome: Cow<'static, str>,
    pub millis: u64,
}

/// Every routing decision of one request.
#[derive(Debug, Clone, Default)]
pub struct RouteLog {
    pub steps: Vec<Step>,
}

impl RouteLog {
    fn push(
        &mut self,
        u: &Upstream,
        model: &str,
        key: Option<usize>,
        outcome: impl Into<Cow<'static, str>>,
        millis: u64,
    ) {
        self.steps.push(Step {
            provider: Arc::clone(&u.name),
            model: model.to_string(),
            key,
            outcome: outcome.into(),
            millis,
        });
    }

    /// Compact form for the `x-llm-link-route` header and logs:
    /// `oa/gpt-4o#0=upstream_failed,an/claude#0=ok`.
    pub fn header(&self) -> String {
        const MAX: usize = 512;
        let mut s = String::with_capacity(64);
        // Printable ASCII only (a header value), at most MAX characters.
        let push = |s: &mut String, text: &str| {
            for b in text.bytes() {
                if s.len() >= MAX {
                    return;
                }
                if (0x20..0x7f).contains(&b) {
                    s.push(char::from(b));
                }
            }
        };
        let mut digits = itoa::Buffer::new();
        for (i, st) in self.steps.iter().enumerate() {
            if i > 0 {
                push(&mut s, ",");
            }
            push(&mut s, &st.provider);
            push(&mut s, "/");
            push(&mut s, &st.model);
            if let Some(k) = st.key {
                push(&mut s, "#");
                push(&mut s, digits.format(k));
            }
            push(&mut s, "=");
            push(&mut s, st.outcome.split(':').next().unwrap_or(""));
        }
        s
    }

    pub fn attempts(&self) -> usize {
        self.steps.iter().filter(|s| s.key.is_some()).count()
    }
}

enum Class {
    /// Give up now: the request itself is at fault.
    Fatal,
    /// The key was refused: disable it and try another key.
    KeyRejected,
    /// Slow down: cool the key for this long and move on.
    RateLimited(Duration),
    /// The upstream failed: count against its breaker and move on.
    Upstream,
}

fn classify(e: &ApiError) -> Class {
    match e {
        ApiError::UpstreamAuth(_) => Class::KeyRejected,
        ApiError::RateLimited { retry_after, .. } => Class::RateLimited(
            retry_after
                .as_deref()
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(3600.0)))
                .unwrap_or(DEFAULT_COOLDOWN),
        ),
        ApiError::BadGateway(_) | ApiError::Timeout(_) | ApiError::Unavailable(_) => {
            Class::Upstream
        }
        _ => Class::Fatal,
    }
}

fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs_f64().ceil() as u64).max(1)
}

fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << n.min(16));
    let capped = exp.min(max);
    // Full jitter in [capped/2, capped].
    capped.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// Runs `attempt` against the plan's targets until one succeeds.
pub async fn execute<T, F, Fut>(
    router: &ModelRouter,
    plan: &Plan,
    est_tokens: u64,
    attempt: F,
) -> (Result<T, ApiError>, RouteLog)
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    execute_preferring(router, plan, est_tokens, None, attempt).await
}

/// As [`execute`], trying the upstream and key of `prefer` first when the
/// plan has that upstream and the key is usable (affinity: see
/// [`super::affinity`]); routing goes on as usual after it.
pub async fn execute_preferring<T, F, Fut>(
    router: &ModelRouter,
    plan: &Plan,
    est_tokens: u64,
    mut prefer: Option<&super::affinity::Origin>,
    mut attempt: F,
) -> (Result<T, ApiError>, RouteLog)
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let started = Instant::now();
    let policy = plan.retry();
    let deadline = started + policy.deadline;
    let ups = router.upstreams();
    let mut log = RouteLog::default();
    // (upstream index, upstream model) in the order to try.
    let mut candidates: Vec<(usize, &str)> = Vec::new();
    for route in &plan.chain {
        for i in route.order(ups) {
            let t = &route.targets[i];
            if !candidates
                .iter()
                .any(|(u, m)| *u == t.upstream && *m == t.model)
            {
                candidates.push((t.upstream, &t.model));
            }
        }
    }
    if let Some((name, _)) = prefer {
        if let Some(i) = candidates.iter().position(|(u, _)| ups[*u].name == *name) {
            let c = candidates.remove(i);
            candidates.insert(0, c);
        }
    }
    if !policy.fail_fast {
        panic_probe(ups, &candidates);
    }
    let mut attempts: u32 = 0;
    let mut last_err: Option<ApiError> = None;
    let mut failed_here: Vec<u32> = vec![0; candidates.len()];
    let mut round = 0u32;
    'rounds: loop {
        let mut tried_this_round = false;
        for (ci, (ui, model)) in candidates.iter().enumerate() {
            let up = &ups[*ui];
            // Keys of this upstream can be tried one after the other.
            loop {
                if attempts >= policy.max_attempts || Instant::now() >= deadline {
                    break 'rounds;
                }
                if !up.breaker.allow() {
                    log.push(up, model, None, "skipped: circuit open", 0);
                    last_err.get_or_insert(ApiError::Unavailable(format!(
                        "provider `{}` is failing and temporarily skipped (circuit open)",
                        up.name
                    )));
                    break;
                }
                let preferred = prefer
                    .filter(|(name, k)| {
                        up.name == *name && up.keys.get(*k).is_some_and(|s| s.usable())
                    })
                    .map(|(_, k)| *k);
                let key = match preferred.map(Ok).unwrap_or_else(|| up.pick_key()) {
                    Ok(k) => k,
                    Err(NoKey::Cooling(d)) => {
                        log.push(up, model, None, "skipped: every key cooling after 429", 0);
                        // An error this request actually got says more.
                        last_err.get_or_insert(ApiError::RateLimited {
                            message: format!("every key of provider `{}` is rate limited", up.name),
                            retry_after: Some(ceil_secs(d).to_string()),
                        });
                        break;
                    }
                    Err(NoKey::Unusable) => {
                        log.push(up, model, None, "skipped: no usable key", 0);
                        let why = up
                            .keys
                            .iter()
                            .find_map(|k| k.status().1)
                            .map(|r| format!(" (last reason: {r})"))
                            .unwrap_or_default();
                        last_err.get_or_insert(ApiError::Unavailable(format!(
                            "every key of provider `{}` is disabled or failing{why}; fix the key and reload the configuration",
                            up.name
                        )));
                        break;
                    }
                };
                let mut admitted = up.take_rate(est_tokens);
                if admitted.is_ok() {
                    if let Some(shared) = super::shared::get() {
                        let meta = &up.cfg.meta;
                        admitted = shared
                            .admit(&up.name, meta.rpm_limit, meta.tpm_limit, est_tokens)
                            .await;
                    }
                }
                if let Err((wait, which)) = admitted {
                    log.push(up, model, None, format!("skipped: {which}"), 0);
                    last_err = Some(ApiError::RateLimited {
                        message: format!("provider `{}` reached its {which}", up.name),
                        retry_after: Some(ceil_secs(wait).to_string()),
                    });
                    break;
                }
                let remaining = deadline.saturating_duration_since(Instant::now());
                let permit = match up.acquire(remaining).await {
                    Ok(p) => p,
                    Err(e) => {
                        log.push(up, model, Some(key), "skipped: concurrency limit", 0);
                        last_err = Some(e);
                        break;
                    }
                };
                // Back off before trying a target that already failed this request.
                if failed_here[ci] > 0 {
                    let d = backoff(policy.base_delay, policy.max_delay, failed_here[ci] - 1)
                        .min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(d).await;
                }
                attempts += 1;
                tried_this_round = true;
                let t0 = Instant::now();
                let guard = InflightGuard::new(up.clone(), permit);
                let a = Attempt {
                    provider: up.instances[key].clone(),
                    upstream_model: model.to_string(),
                    origin: (Arc::clone(&up.name), key),
                    guard,
                };
                let remaining = deadline.saturating_duration_since(t0);
                let res = match tokio::time::timeout(remaining, attempt(a)).await {
                    Ok(r) => r,
                    Err(_) => Err(ApiError::Timeout(format!(
                        "no provider answered within the request deadline of {}s",
                        policy.deadline.as_secs_f64()
                    ))),
                };
                let took = t0.elapsed();
                // The preferred key had its try; routing goes on as usual.
                if preferred.is_some() {
                    prefer = None;
                }
                let ms = took.as_millis() as u64;
                match res {
                    Ok(v) => {
                        up.breaker.on_success();
                        up.keys[key].breaker.on_success();
                        up.record_latency(took);
                        log.push(up, model, Some(key), "ok", ms);
                        finish_log(plan, &log, started);
                        return (Ok(v), log);
                    }
                    Err(e) => {
                        let class = classify(&e);
                        log.push(up, model, Some(key), e.code(), ms);
                        match class {
                            Class::Fatal => {
                                finish_log(plan, &log, started);
                                return (Err(e), log);
                            }
                            Class::KeyRejected => {
                                up.keys[key].disable(&e.to_string());
                                up.keys[key].breaker.on_failure();
                                tracing::warn!(provider = %up.name, key = %up.keys[key].masked, "upstream rejected a key; disabled it");
                                last_err = Some(e);
                                // Another key of the same provider, at once.
                                continue;
                            }
                            Class::RateLimited(d) => {
                                up.keys[key].cool(d);
                                last_err = Some(e);
                                continue;
                            }
                            Class::Upstream => {
                                up.breaker.on_failure();
                                up.keys[key].breaker.on_failure();
                                failed_here[ci] += 1;
                                last_err = Some(e);
                                break;
                            }
                        }
                    }
                }
            }
        }
        round += 1;
        if !tried_this_round || round > policy.max_attempts {
            break;
        }
    }
    if Instant::now() >= deadline && last_err.is_none() {
        last_err = Some(ApiError::Timeout("the request deadline passed".into()));
    }
    finish_log(plan, &log, started);
    let err = last_err
        .unwrap_or_else(|| ApiError::Unavailable("no provider could take this request".into()));
    (Err(err), log)
}

/// Panic mode (Envoy's panic threshold): when every candidate's breaker is
/// open, the one whose cooldown ends first is let through as its probe, so
/// a provider that already recovered is found now, not after the cooldown,
/// and a model with one target is never cut off by llm-link itself.
fn panic_probe(ups: &[Arc<Upstream>], candidates: &[(usize, &str)]) {
    if candidates.is_empty()
        || candidates
            .iter()
            .any(|(u, _)| ups[*u].breaker.would_allow())
    {
        return;
    }
    if let Some((u, _)) = candidates
        .iter()
        .min_by_key(|(u, _)| ups[*u].breaker.reopens_in())
    {
        ups[*u].breaker.force_probe();
        // Its keys' breakers opened with it (a refused key stays refused).
        for k in &ups[*u].keys {
            k.breaker.force_probe();
        }
        tracing::warn!(provider = %ups[*u].name, "every target's circuit is open; probing the one that reopens first");
    }
}

fn finish_log(plan: &Plan, log: &RouteLog, started: Instant) {
    let model = plan.chain.first().map(|r| r.model.as_str()).unwrap_or("");
    let ms = started.elapsed().as_millis() as u64;
    if log.steps.len() > 1 || log.steps.iter().any(|s| s.outcome != "ok") {
        tracing::info!(model, route = %log.header(), total_ms = ms, "routing moved on");
    } else {
        tracing::debug!(model, route = %log.header(), total_ms = ms, "routed");
    }
}

/// Starts the periodic model-list probe for every upstream that asks for
/// one; each stops when its upstream is dropped (a new snapshot replaced it).
pub fn spawn_health_checks(ups: &[Arc<Upstream>]) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    for u in ups {
        let Some(every) = u.cfg.meta.health_check else {
            continue;
        };
        let weak: Weak<Upstream> = Arc::downgrade(u);
        handle.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(u) = weak.upgrade() else { break };
                let ok = matches!(
                    tokio::time::timeout(
                        every.min(Duration::from_secs(30)),
                        u.primary().list_models()
                    )
                    .await,
                    Ok(Ok(_))
                );
                if ok {
                    u.breaker.on_success();
                } else {
                    tracing::warn!(provider = %u.name, "health check failed");
                    u.breaker.on_failure();
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Duration::from_millis(100);
        let m = Duration::from_secs(1);
        for n in 0..10 {
            let d = backoff(b, m, n);
            assert!(d <= m);
            assert!(d >= b.saturating_mul(1 << n.min(16)).min(m) / 2);
        }
    }

    #[test]
    fn classes() {
        assert!(matches!(
            classify(&ApiError::bad_request("x")),
            Class::Fatal
        ));
        assert!(matches!(
            classify(&ApiError::UpstreamAuth("x".into())),
            Class::KeyRejected
        ));
        assert!(matches!(
            classify(&ApiError::Timeout("x".into())),
            Class::Upstream
        ));
        match classify(&ApiError::RateLimited {
            message: "x".into(),
            retry_after: Some("7".into()),
        }) {
            Class::RateLimited(d) => assert_eq!(d, Duration::from_secs(7)),
            _ => panic!("expected rate limited"),
        }
    }
}
