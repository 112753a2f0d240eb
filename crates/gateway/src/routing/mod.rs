//! Routing: which targets serve a model, in what order, and how a request
//! survives a bad provider, key or region (strategies, fallback chains,
//! retries, circuit breakers, key pools, limits).
//!
//! Resolution order for a requested model: deprecations (mapped after their
//! sunset), aliases, an explicit `[[routes]]` entry, a model id declared on
//! providers (several providers declaring one id form a priority route), the
//! `provider/model` form, then a provider that forwards any model.

pub mod affinity;
pub mod breaker;
pub mod exec;
pub mod shared;
pub mod upstream;

use crate::config::routing::{Deprecation, RetryPolicy, RouteConfig, Strategy};
use crate::error::ApiError;
use crate::providers::Provider;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use upstream::Upstream;

/// Where a request goes (the first choice of a plan).
#[derive(Clone)]
pub struct Target {
    pub provider: Arc<dyn Provider>,
    pub upstream_model: String,
}

/// A model as `/v1/models` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub id: String,
    pub owned_by: String,
}

/// One target of a route.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    pub upstream: usize,
    pub model: String,
    pub weight: u32,
    pub priority: i64,
}

/// A client-facing model and how to serve it.
#[derive(Debug)]
pub struct Route {
    pub model: String,
    pub strategy: Strategy,
    pub targets: Vec<RouteTarget>,
    pub fallback: Vec<String>,
    pub retry: RetryPolicy,
    rr: AtomicUsize,
    swrr: Mutex<Vec<i64>>,
}

impl Route {
    fn new(
        model: String,
        strategy: Strategy,
        targets: Vec<RouteTarget>,
        fallback: Vec<String>,
        retry: RetryPolicy,
    ) -> Route {
        let n = targets.len();
        Route {
            model,
            strategy,
            targets,
            fallback,
            retry,
            rr: AtomicUsize::new(0),
            swrr: Mutex::new(vec![0; n]),
        }
    }

    /// The targets in the order this request should try them.
    pub fn order(&self, ups: &[Arc<Upstream>]) -> Vec<usize> {
        let n = self.targets.len();
        let mut by_priority: Vec<usize> = (0..n).collect();
        // Higher priority first; declaration order breaks ties.
        by_priority.sort_by_key(|&i| std::cmp::Reverse(self.targets[i].priority));
        if n <= 1 {
            return by_priority;
        }
        let first = match self.strategy {
            Strategy::Priority => return by_priority,
            Strategy::RoundRobin => {
                let start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
                return (0..n).map(|k| (start + k) % n).collect();
            }
            Strategy::Weighted => {
                let mut cur = self.swrr.lock().unwrap_or_else(|p| p.into_inner());
                let total: i64 = self.targets.iter().map(|t| i64::from(t.weight)).sum();
                let mut best = 0;
                for i in 0..n {
                    cur[i] += i64::from(self.targets[i].weight);
                    if cur[i] > cur[best] {
                        best = i;
                    }
                }
                cur[best] -= total;
                best
            }
            Strategy::LeastConnections => {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by_key(|&i| {
                    ups[self.targets[i].upstream]
                        .inflight
                        .load(Ordering::Relaxed)
                });
                return order;
            }
            Strategy::Latency => {
                // Power of two choices on the latency EWMA; unknown (0) is
                // tried first so every target gets measured.
                let a = fastrand::usize(..n);
                let mut b = fastrand::usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                let ew = |i: usize| {
                    ups[self.targets[i].upstream]
                        .ewma_us
                        .load(Ordering::Relaxed)
                };
                if ew(a) <= ew(b) {
                    a
                } else {
                    b
                }
            }
        };
        let mut order = vec![first];
        order.extend(by_priority.into_iter().filter(|&i| i != first));
        order
    }
}

/// Why the requested name was changed, for a warning header.
#[derive(Debug, Clone)]
pub struct DeprecationNotice {
    pub model: String,
    pub replacement: String,
    pub sunset: String,
    /// Past the sunset: the request went to the replacement.
    pub mapped: bool,
}

/// Everything routing decided up front for one request.
#[derive(Clone)]
pub struct Plan {
    /// The requested route first, then its fallback routes.
    pub chain: Vec<Arc<Route>>,
    pub deprecation: Option<DeprecationNotice>,
}

impl Plan {
    pub fn retry(&self) -> RetryPolicy {
        self.chain.first().map(|r| r.retry).unwrap_or_default()
    }
}

pub struct ModelRouter {
    upstreams: Vec<Arc<Upstream>>,
    providers: Vec<Arc<dyn Provider>>,
    routes: HashMap<String, Arc<Route>>,
    by_name: HashMap<String, usize>,
    aliases: HashMap<String, String>,
    deprecations: HashMap<String, Deprecation>,
    /// Index of the provider that takes any model name.
    any: Option<usize>,
    listing: Vec<ModelInfo>,
    /// App-mapping routes by (app, requested model), built once per
    /// snapshot so their rotation state (round robin, weighted) carries from
    /// one request to the next.
    app_routes: Mutex<HashMap<(String, String), Arc<Route>>>,
}

/// App-mapping routes kept per snapshot; beyond, the cache starts over.
const MAX_APP_ROUTES: usize = 4096;

const MAX_ALIAS_DEPTH: usize = 8;

impl ModelRouter {
    pub fn new(
        upstreams: Vec<Arc<Upstream>>,
        aliases: &[(String, String)],
        route_cfgs: &[RouteConfig],
        deprecations: &[Deprecation],
    ) -> ModelRouter {
        let mut by_name = HashMap::new();
        let mut listing = Vec::new();
        let mut any = None;
        let mut declared: Vec<(String, Vec<RouteTarget>)> = Vec::new();
        for (i, u) in upstreams.iter().enumerate() {
            let cfg = &u.cfg;
            by_name.insert(cfg.name.clone(), i);
            for m in &cfg.models {
                let t = RouteTarget {
                    upstream: i,
                    model: m.upstream.clone(),
                    weight: cfg.meta.weight.max(1),
                    priority: cfg.meta.priority,
                };
                match declared.iter_mut().find(|(id, _)| id == &m.id) {
                    Some((_, ts)) => ts.push(t),
                    None => {
                        declared.push((m.id.clone(), vec![t]));
                        listing.push(ModelInfo {
                            id: m.id.clone(),
                            owned_by: cfg.name.clone(),
                        });
                    }
                }
            }
            if cfg.forward_any_model && any.is_none() {
                any = Some(i);
            }
        }
        let mut routes: HashMap<String, Arc<Route>> = declared
            .into_iter()
            .map(|(id, ts)| {
                let r = Route::new(
                    id.clone(),
                    Strategy::Priority,
                    ts,
                    Vec::new(),
                    RetryPolicy::default(),
                );
                (id, Arc::new(r))
            })
            .collect();
        for rc in route_cfgs {
            let targets = rc
                .targets
                .iter()
                .filter_map(|t| {
                    let i = *by_name.get(&t.provider)?;
                    let cfg = &upstreams[i].cfg;
                    let model = cfg
                        .models
                        .iter()
                        .find(|m| m.id == t.model)
                        .map(|m| m.upstream.clone())
                        .unwrap_or_else(|| t.model.clone());
                    Some(RouteTarget {
                        upstream: i,
                        model,
                        weight: t.weight.unwrap_or(cfg.meta.weight).max(1),
                        priority: t.priority.map(i64::from).unwrap_or(cfg.meta.priority),
                    })
                })
                .collect();
            if !routes.contains_key(&rc.model) {
                listing.push(ModelInfo {
                    id: rc.model.clone(),
                    owned_by: "llm-link".into(),
                });
            }
            routes.insert(
                rc.model.clone(),
                Arc::new(Route::new(
                    rc.model.clone(),
                    rc.strategy,
                    targets,
                    rc.fallback.clone(),
                    rc.retry,
                )),
            );
        }
        for (alias, target) in aliases {
            if !routes.contains_key(alias) {
                let owner = target.split_once('/').map(|(p, _)| p).unwrap_or("llm-link");
                listing.push(ModelInfo {
                    id: alias.clone(),
                    owned_by: owner.to_string(),
                });
            }
        }
        let providers = upstreams.iter().map(|u| u.primary().clone()).collect();
        ModelRouter {
            upstreams,
            providers,
            routes,
            by_name,
            aliases: aliases.iter().cloned().collect(),
            deprecations: deprecations
                .iter()
                .map(|d| (d.model.clone(), d.clone()))
                .collect(),
            any,
            listing,
            app_routes: Mutex::default(),
        }
    }

    pub fn providers(&self) -> &[Arc<dyn Provider>] {
        &self.providers
    }

    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// Every model clients can ask for.
    pub fn models(&self) -> &[ModelInfo] {
        &self.listing
    }

    /// A listed model, by id (also `provider/model` and aliases).
    pub fn find_model(&self, id: &str) -> Option<ModelInfo> {
        if let Some(m) = self.listing.iter().find(|m| m.id == id) {
            return Some(m.clone());
        }
        let (name, model) = id.split_once('/')?;
        let i = *self.by_name.get(name)?;
        self.upstreams[i]
            .cfg
            .models
            .iter()
            .any(|m| m.id == model)
            .then(|| ModelInfo {
                id: id.to_string(),
                owned_by: name.to_string(),
            })
    }

    /// The first choice for a model (for listings, `show`, counting).
    pub fn resolve(&self, requested: &str) -> Result<Target, ApiError> {
        let plan = self.plan(requested)?;
        let route = plan.chain.first().ok_or_else(|| not_found(requested))?;
        let order = route.order(&self.upstreams);
        let t = order
            .first()
            .and_then(|&i| route.targets.get(i))
            .or_else(|| route.targets.first())
            .ok_or_else(|| not_found(requested))?;
        Ok(Target {
            provider: self.upstreams[t.upstream].primary().clone(),
            upstream_model: t.model.clone(),
        })
    }

    /// Routes for a requested model: its own, then its fallbacks.
    pub fn plan(&self, requested: &str) -> Result<Plan, ApiError> {
        if self.providers.is_empty() {
            return Err(ApiError::Unavailable(
                "no provider is configured; start llm-link with --provider KIND (see `llm-link providers`), a --config file, or a provider key variable such as OPENAI_API_KEY".into(),
            ));
        }
        let mut deprecation = None;
        let mut name = requested.to_string();
        if let Some(d) = self.deprecations.get(requested) {
            let mapped = crate::util::now_secs() >= d.sunset_unix;
            if mapped {
                name = d.replacement.clone();
            }
            deprecation = Some(DeprecationNotice {
                model: d.model.clone(),
                replacement: d.replacement.clone(),
                sunset: d.sunset.clone(),
                mapped,
            });
        }
        let route = self.route_for(&name).ok_or_else(|| not_found(requested))?;
        let mut chain = vec![route.clone()];
        for fb in &route.fallback {
            if let Some(r) = self.route_for(fb) {
                if !chain.iter().any(|c| Arc::ptr_eq(c, &r)) {
                    chain.push(r);
                }
            }
        }
        Ok(Plan { chain, deprecation })
    }

    /// The plan for a request from an app with a mapping: the mapping's
    /// targets in its strategy's order, then its fallback chain. A target is
    /// `provider/model`, a bare provider name (then the requested model goes
    /// to that provider), or a model id (its route's first target).
    pub fn plan_app(
        &self,
        mapping: &crate::config::catalog::AppMapping,
        requested: &str,
    ) -> Result<Plan, ApiError> {
        let mut targets = Vec::new();
        for t in &mapping.targets {
            let one = if let Some(&i) = self.by_name.get(t.as_str()) {
                Some((i, requested.to_string()))
            } else {
                self.route_for(t)
                    .and_then(|r| r.targets.first().map(|x| (x.upstream, x.model.clone())))
            };
            if let Some((i, model)) = one {
                let meta = &self.upstreams[i].cfg.meta;
                targets.push(RouteTarget {
                    upstream: i,
                    model,
                    weight: meta.weight.max(1),
                    priority: meta.priority,
                });
            }
        }
        if targets.is_empty() && mapping.fallback_chain.is_empty() {
            return self.plan(requested);
        }
        let strategy = match mapping.routing_rule.as_str() {
            "round_robin" => Strategy::RoundRobin,
            "weighted" => Strategy::Weighted,
            "least_connections" => Strategy::LeastConnections,
            "latency" => Strategy::Latency,
            _ => Strategy::Priority,
        };
        let retry = RetryPolicy {
            max_attempts: mapping.retry.max_retries.saturating_add(1).max(1),
            base_delay: std::time::Duration::from_millis(mapping.retry.backoff_ms),
            ..RetryPolicy::default()
        };
        let key = (mapping.name.clone(), requested.to_string());
        let route = {
            let mut cache = self.app_routes.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= MAX_APP_ROUTES && !cache.contains_key(&key) {
                cache.clear();
            }
            cache
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(Route::new(
                        format!("app:{}", mapping.name),
                        strategy,
                        targets,
                        mapping.fallback_chain.clone(),
                        retry,
                    ))
                })
                .clone()
        };
        let mut chain = vec![route.clone()];
        for fb in &route.fallback {
            if let Some(r) = self.route_for(fb) {
                chain.push(r);
            }
        }
        Ok(Plan {
            chain,
            deprecation: None,
        })
    }

    fn route_for(&self, requested: &str) -> Option<Arc<Route>> {
        let mut model = requested;
        for _ in 0..MAX_ALIAS_DEPTH {
            match self.aliases.get(model) {
                Some(t) if t != model => model = t,
                _ => break,
            }
        }
        if let Some(r) = self.routes.get(model) {
            return Some(r.clone());
        }
        let single = |i: usize, upstream: String| {
            let cfg = &self.upstreams[i].cfg;
            let t = RouteTarget {
                upstream: i,
                model: upstream,
                weight: 1,
                priority: cfg.meta.priority,
            };
            Arc::new(Route::new(
                model.to_string(),
                Strategy::Priority,
                vec![t],
                Vec::new(),
                RetryPolicy::default(),
            ))
        };
        if let Some((name, rest)) = model.split_once('/') {
            if let Some(&i) = self.by_name.get(name) {
                let cfg = &self.upstreams[i].cfg;
                let want = if rest.is_empty() {
                    cfg.default_model.clone().unwrap_or_default()
                } else {
                    rest.to_string()
                };
                let upstream = cfg
                    .models
                    .iter()
                    .find(|m| m.id == want)
                    .map(|m| m.upstream.clone())
                    .unwrap_or(want);
                return Some(single(i, upstream));
            }
        }
        self.any.map(|i| single(i, model.to_string()))
    }
}

fn not_found(requested: &str) -> ApiError {
    ApiError::ModelNotFound(format!(
        "The model `{requested}` does not exist or is not served by this llm-link; list the available models with GET /v1/models"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelEntry, Origin, ProviderConfig, Timeouts};
    use crate::presets;

    fn provider(name: &str, models: &[(&str, &str)], any: bool) -> Arc<Upstream> {
        let cfg = ProviderConfig {
            name: name.into(),
            preset: presets::find("openai-compatible").unwrap_or(&presets::PRESETS[0]),
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: None,
            models: models
                .iter()
                .map(|(id, up)| ModelEntry {
                    id: (*id).into(),
                    upstream: (*up).into(),
                })
                .collect(),
            default_model: models.first().map(|m| m.0.to_string()),
            forward_any_model: any,
            passthrough: true,
            timeouts: Timeouts::default(),
            headers: vec![],
            origin: Origin::File,
            meta: Default::default(),
        };
        match Upstream::build(cfg) {
            Ok(p) => Arc::new(p),
            Err(e) => panic!("{e}"),
        }
    }

    fn resolve(r: &ModelRouter, m: &str) -> Option<(String, String)> {
        r.resolve(m)
            .ok()
            .map(|t| (t.provider.name().to_string(), t.upstream_model))
    }

    #[test]
    fn resolution_order() {
        let r = ModelRouter::new(
            vec![
                provider(
                    "zhipu",
                    &[("glm-4-flash", "glm-4-flash"), ("fast", "glm-4-air")],
                    false,
                ),
                provider("local", &[("meta/llama", "meta/llama")], false),
            ],
            &[
                ("gpt-4".into(), "zhipu/glm-4-flash".into()),
                ("chain".into(), "gpt-4".into()),
            ],
            &[],
            &[],
        );
        let pair = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(resolve(&r, "glm-4-flash"), pair("zhipu", "glm-4-flash"));
        assert_eq!(resolve(&r, "fast"), pair("zhipu", "glm-4-air"));
        assert_eq!(resolve(&r, "zhipu/fast"), pair("zhipu", "glm-4-air"));
        assert_eq!(resolve(&r, "zhipu/glm-4-plus"), pair("zhipu", "glm-4-plus"));
        assert_eq!(resolve(&r, "zhipu/"), pair("zhipu", "glm-4-flash"));
        assert_eq!(resolve(&r, "gpt-4"), pair("zhipu", "glm-4-flash"));
        assert_eq!(resolve(&r, "chain"), pair("zhipu", "glm-4-flash"));
        // A declared id with a slash wins over the provider/model form.
        assert_eq!(resolve(&r, "meta/llama"), pair("local", "meta/llama"));
        match r.resolve("nope") {
            Err(ApiError::ModelNotFound(m)) => assert!(m.contains("/v1/models")),
            _ => panic!("expected not found"),
        }
        assert!(r.find_model("gpt-4").is_some());
        assert!(r.find_model("zhipu/fast").is_some());
        assert!(r.find_model("zhipu/other").is_none());
    }

    #[test]
    fn single_provider_forwards_anything() {
        let r = ModelRouter::new(
            vec![provider("zhipu", &[("glm-4-flash", "glm-4-flash")], true)],
            &[],
            &[],
            &[],
        );
        assert_eq!(
            resolve(&r, "glm-4-plus"),
            Some(("zhipu".to_string(), "glm-4-plus".to_string()))
        );
        let empty = ModelRouter::new(vec![], &[], &[], &[]);
        assert!(matches!(empty.resolve("x"), Err(ApiError::Unavailable(_))));
    }

    fn route_of(strategy: Strategy, weights: &[u32]) -> (Route, Vec<Arc<Upstream>>) {
        let ups: Vec<Arc<Upstream>> = (0..weights.len())
            .map(|i| provider(&format!("p{i}"), &[("m", "m")], false))
            .collect();
        let targets = weights
            .iter()
            .enumerate()
            .map(|(i, w)| RouteTarget {
                upstream: i,
                model: "m".into(),
                weight: *w,
                priority: 0,
            })
            .collect();
        (
            Route::new(
                "m".into(),
                strategy,
                targets,
                vec![],
                RetryPolicy::default(),
            ),
            ups,
        )
    }

    fn shares(strategy: Strategy, weights: &[u32], n: usize) -> Vec<f64> {
        let (r, ups) = route_of(strategy, weights);
        let mut counts = vec![0usize; weights.len()];
        for _ in 0..n {
            counts[r.order(&ups)[0]] += 1;
        }
        counts.iter().map(|c| *c as f64 / n as f64).collect()
    }

    #[test]
    fn round_robin_and_weighted_shares_over_10000() {
        for s in shares(Strategy::RoundRobin, &[1, 1, 1], 10_000) {
            assert!((s - 1.0 / 3.0).abs() < 0.05, "{s}");
        }
        let w = shares(Strategy::Weighted, &[3, 1], 10_000);
        assert!(
            (w[0] - 0.75).abs() < 0.05 && (w[1] - 0.25).abs() < 0.05,
            "{w:?}"
        );
        let w = shares(Strategy::Weighted, &[5, 3, 2], 10_000);
        for (got, want) in w.iter().zip([0.5, 0.3, 0.2]) {
            assert!((got - want).abs() < 0.05, "{w:?}");
        }
    }

    /// Issue 17's review bug: an app mapping's route was rebuilt for every
    /// request and lost its rotation, so round robin always picked the first.
    #[test]
    fn app_mappings_keep_their_rotation_between_requests() {
        let r = ModelRouter::new(
            vec![
                provider("a", &[("m", "m")], false),
                provider("b", &[("m", "m")], false),
            ],
            &[],
            &[],
            &[],
        );
        let app = crate::config::catalog::AppMapping {
            name: "zed".into(),
            routing_rule: "round_robin".into(),
            targets: vec!["a".into(), "b".into()],
            fallback_chain: vec![],
            retry: Default::default(),
        };
        let mut counts = [0usize; 2];
        for _ in 0..1000 {
            let plan = r.plan_app(&app, "m").unwrap();
            counts[plan.chain[0].order(r.upstreams())[0]] += 1;
        }
        assert_eq!(counts, [500, 500]);
    }

    #[test]
    fn least_connections_prefers_the_idle_target() {
        let (r, ups) = route_of(Strategy::LeastConnections, &[1, 1, 1]);
        ups[0]
            .inflight
            .store(5, std::sync::atomic::Ordering::Relaxed);
        ups[1]
            .inflight
            .store(0, std::sync::atomic::Ordering::Relaxed);
        ups[2]
            .inflight
            .store(2, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(r.order(&ups), vec![1, 2, 0]);
    }

    #[test]
    fn latency_prefers_the_faster_target() {
        let (r, ups) = route_of(Strategy::Latency, &[1, 1]);
        ups[0]
            .ewma_us
            .store(50_000, std::sync::atomic::Ordering::Relaxed);
        ups[1]
            .ewma_us
            .store(5_000, std::sync::atomic::Ordering::Relaxed);
        for _ in 0..100 {
            assert_eq!(r.order(&ups)[0], 1);
        }
        // With three, the slowest is never first (power of two choices).
        let (r, ups) = route_of(Strategy::Latency, &[1, 1, 1]);
        for (i, us) in [9_000u64, 1_000, 5_000].iter().enumerate() {
            ups[i]
                .ewma_us
                .store(*us, std::sync::atomic::Ordering::Relaxed);
        }
        for _ in 0..200 {
            assert_ne!(r.order(&ups)[0], 0);
        }
    }
}
