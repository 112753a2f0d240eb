//! Live apply: the runtime snapshot is composed from two layers and swapped
//! atomically whenever either changes.
//!
//! * the **base** layer: the `--config` file, the command line and provider
//!   key variables (re-read when the file changes; replaced by an in-process
//!   switch from the hot-update API);
//! * the **database** layer: providers, keys, catalog models and app
//!   mappings, secrets decrypted in memory.
//!
//! Precedence: base providers come first (so their model ids win a clash
//! and `forward_any_model` on a command-line provider keeps catching unknown
//! names), then database providers by descending priority. A database
//! provider may not share a name with a file or command-line one (a config
//! error naming the field); an auto-detected provider (from a key variable
//! such as `OPENAI_API_KEY`) with the same name as a database provider steps
//! aside. Catalog models whose `provider` names a provider are served by it;
//! a model with its own `base_url` or keys gets a provider of its own named
//! `catalog-<id>`.

use super::crypto::MasterKey;
use super::rows::{AppRow, KeyRow, ModelRow, ProviderRow, Snapshot};
use super::{Store, Tx};
use crate::config::{
    Config, ConfigError, FileConfig, ModelEntry, Origin, PoolKey, ProviderConfig, ProviderMeta,
    Timeouts,
};
use crate::providers::presets;
use crate::state::{AppState, Runtime};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A catalog model as the runtime sees it (prices, limits, capabilities),
/// for usage metering and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogModel {
    pub id: i64,
    pub model_id: String,
    /// The provider (by name) that serves it in this snapshot.
    pub served_by: String,
    pub model_type: String,
    pub context_window: Option<i64>,
    pub max_tokens: Option<i64>,
    pub supports_vision: bool,
    pub supports_tools: bool,
    /// Per million tokens.
    pub input_price: Option<f64>,
    pub output_price: Option<f64>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
}

/// Retry settings of an app mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    pub max_retries: u32,
    pub backoff_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_retries: 3,
            backoff_ms: 1000,
        }
    }
}

/// An app mapping: which targets serve an app, how to choose, what to fall
/// back to.
#[derive(Debug, Clone, PartialEq)]
pub struct AppMapping {
    pub name: String,
    /// `priority`, `round_robin`, `weighted`, `least_connections` or `latency`.
    pub routing_rule: String,
    /// `provider`, `provider/model` or model ids.
    pub targets: Vec<String>,
    pub fallback_chain: Vec<String>,
    pub retry: RetrySettings,
}

/// Database-held metadata the request path may use; empty without a database.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// The database revision this snapshot was built from.
    pub revision: i64,
    pub models: Vec<CatalogModel>,
    pub apps: Vec<AppMapping>,
}

impl Catalog {
    pub fn app(&self, name: &str) -> Option<&AppMapping> {
        self.apps.iter().find(|a| a.name == name)
    }

    pub fn model(&self, model_id: &str) -> Option<&CatalogModel> {
        self.models.iter().find(|m| m.model_id == model_id)
    }
}

/// The database's contribution, decrypted.
#[derive(Debug, Clone, Default)]
pub struct DbLayer {
    pub revision: i64,
    /// Every provider name in the database, enabled or not.
    pub names: Vec<String>,
    /// Enabled providers that can serve (origin `Database`).
    pub providers: Vec<ProviderConfig>,
    /// Enabled catalog models.
    pub models: Vec<LayerModel>,
    pub apps: Vec<AppMapping>,
    /// Enabled rows left out of the runtime, with the reason (shown by the API).
    pub inactive: Vec<(String, String)>,
}

/// An enabled catalog model and how it is served.
#[derive(Debug, Clone)]
pub struct LayerModel {
    pub row: ModelRow,
    /// It has its own base URL or keys, so it needs a provider of its own.
    pub own_settings: bool,
    /// That provider (also built from the kind's defaults when `provider`
    /// names a kind rather than a provider).
    pub own: Option<ProviderConfig>,
}

fn ms(v: Option<i64>, default: Duration) -> Duration {
    match v {
        Some(n) if n > 0 => Duration::from_millis(n as u64),
        _ => default,
    }
}

fn usable(k: &KeyRow, now: i64) -> bool {
    k.status == "enabled" || (k.status == "cooling" && k.cooling_until.is_none_or(|t| t <= now))
}

fn pool(keys: &[&KeyRow], master: &MasterKey, what: &str) -> Vec<PoolKey> {
    let now = super::now_ms();
    let mut out = Vec::new();
    for k in keys.iter().filter(|k| usable(k, now)) {
        match master.decrypt(&k.secret) {
            Ok(secret) => out.push(PoolKey {
                id: Some(k.id),
                secret,
                weight: k.weight.clamp(0, u32::MAX as i64) as u32,
            }),
            Err(e) => tracing::error!(key_id = k.id, "{what}: key {} skipped: {e}", k.hint),
        }
    }
    out
}

fn limit(v: Option<i64>) -> Option<u32> {
    v.filter(|n| *n > 0).map(|n| n.min(u32::MAX as i64) as u32)
}

/// Turns a provider row into a runtime provider, or says why it cannot serve.
// `..ProviderMeta::default()` stays for the routing fields the database does not hold.
#[allow(clippy::needless_update)]
pub fn provider_config(
    p: &ProviderRow,
    keys: &[&KeyRow],
    master: &MasterKey,
) -> Result<ProviderConfig, String> {
    let preset = presets::find(&p.kind)
        .filter(|pr| pr.supported)
        .ok_or_else(|| format!("provider kind `{}` is not supported by this build", p.kind))?;
    let base_url = match (&p.base_url, preset.base_url) {
        (Some(u), _) => u.clone(),
        (None, "") => return Err(format!("kind `{}` needs a base_url", p.kind)),
        (None, u) => u.to_string(),
    };
    let keys = pool(keys, master, &p.name);
    if keys.is_empty() && preset.key_required {
        return Err("no enabled key".into());
    }
    let mut models: Vec<ModelEntry> = p
        .models
        .iter()
        .map(|m| ModelEntry {
            id: m.id.clone(),
            upstream: m.upstream.clone().unwrap_or_else(|| m.id.clone()),
        })
        .collect();
    let default_model = p
        .default_model
        .clone()
        .or_else(|| models.first().map(|m| m.id.clone()))
        .or_else(|| (!preset.default_model.is_empty()).then(|| preset.default_model.to_string()));
    if models.is_empty() {
        if let Some(d) = &default_model {
            models.push(ModelEntry {
                id: d.clone(),
                upstream: d.clone(),
            });
        }
    }
    let headers = match &p.headers {
        None => Vec::new(),
        Some(ct) => {
            let plain = master
                .decrypt(ct)
                .map_err(|e| format!("headers cannot be decrypted: {e}"))?;
            let map: std::collections::BTreeMap<String, String> =
                serde_json::from_str(plain.expose()).map_err(|_| "headers are unreadable")?;
            map.into_iter().collect()
        }
    };
    let d = Timeouts::default();
    Ok(ProviderConfig {
        name: p.name.clone(),
        preset,
        base_url,
        api_key: keys.first().map(|k| k.secret.clone()),
        models,
        default_model,
        forward_any_model: p.forward_any_model,
        passthrough: p.passthrough,
        timeouts: Timeouts {
            connect: ms(p.connect_timeout_ms, d.connect),
            first_byte: ms(p.first_byte_timeout_ms, d.first_byte),
            idle: ms(p.idle_timeout_ms, d.idle),
        },
        headers,
        origin: Origin::Database,
        meta: ProviderMeta {
            id: Some(p.id),
            priority: p.priority,
            weight: p.weight.clamp(0, u32::MAX as i64) as u32,
            keys,
            key_usage: p.key_usage_mode.clone(),
            max_concurrency: limit(p.max_concurrency),
            rpm_limit: limit(p.rpm_limit),
            tpm_limit: limit(p.tpm_limit),
            ..ProviderMeta::default()
        },
    })
}

/// The provider a catalog model with its own base URL or keys is served by.
#[allow(clippy::needless_update)]
pub fn model_provider(
    m: &ModelRow,
    keys: &[&KeyRow],
    master: &MasterKey,
) -> Result<ProviderConfig, String> {
    let preset = presets::find(&m.provider)
        .filter(|p| p.supported)
        .ok_or_else(|| {
            format!(
                "provider `{}` is neither a configured provider nor a supported kind",
                m.provider
            )
        })?;
    let base_url = match (&m.base_url, preset.base_url) {
        (Some(u), _) => u.clone(),
        (None, "") => return Err(format!("kind `{}` needs a base_url", preset.kind)),
        (None, u) => u.to_string(),
    };
    let keys = if m.auth_type == "none" {
        Vec::new()
    } else {
        pool(keys, master, &format!("model {}", m.model_id))
    };
    if keys.is_empty() && preset.key_required && m.auth_type != "none" {
        return Err("no enabled key".into());
    }
    let upstream = m
        .upstream_model
        .clone()
        .unwrap_or_else(|| m.model_id.clone());
    Ok(ProviderConfig {
        name: format!("catalog-{}", m.id),
        preset,
        base_url,
        api_key: keys.first().map(|k| k.secret.clone()),
        models: vec![ModelEntry {
            id: m.model_id.clone(),
            upstream,
        }],
        default_model: Some(m.model_id.clone()),
        forward_any_model: false,
        passthrough: true,
        timeouts: Timeouts::default(),
        headers: Vec::new(),
        origin: Origin::Database,
        meta: ProviderMeta {
            id: None,
            priority: 0,
            weight: 1,
            keys,
            key_usage: m.key_usage_mode.clone(),
            max_concurrency: None,
            rpm_limit: limit(m.rpm_limit),
            tpm_limit: limit(m.tpm_limit),
            ..ProviderMeta::default()
        },
    })
}

fn app_mapping(a: &AppRow) -> AppMapping {
    let num = |k: &str| a.retry_config.get(k).and_then(Value::as_u64);
    let d = RetrySettings::default();
    AppMapping {
        name: a.app_name.clone(),
        routing_rule: a.routing_rule.clone(),
        targets: a.targets.clone(),
        fallback_chain: a.fallback_chain.clone(),
        retry: RetrySettings {
            max_retries: num("max_retries")
                .map(|n| n.min(100) as u32)
                .unwrap_or(d.max_retries),
            backoff_ms: num("backoff_ms").unwrap_or(d.backoff_ms),
        },
    }
}

/// Decrypts a snapshot into the database layer. Rows that cannot serve are
/// listed in `inactive` with the reason, never fatal.
pub fn db_layer(snap: &Snapshot, master: &MasterKey) -> DbLayer {
    let mut layer = DbLayer {
        revision: snap.revision,
        names: snap.providers.iter().map(|p| p.name.clone()).collect(),
        ..DbLayer::default()
    };
    for p in &snap.providers {
        if !p.enabled {
            continue;
        }
        let keys: Vec<&KeyRow> = snap
            .keys
            .iter()
            .filter(|k| k.provider_id == Some(p.id))
            .collect();
        match provider_config(p, &keys, master) {
            Ok(pc) => layer.providers.push(pc),
            Err(reason) => layer.inactive.push((p.name.clone(), reason)),
        }
    }
    for m in &snap.models {
        if m.status != "enabled" {
            continue;
        }
        let keys: Vec<&KeyRow> = snap
            .keys
            .iter()
            .filter(|k| k.llm_model_id == Some(m.id))
            .collect();
        let own_settings = m.base_url.is_some() || !keys.is_empty();
        let own = if own_settings || !layer.names.contains(&m.provider) {
            match model_provider(m, &keys, master) {
                Ok(pc) => Some(pc),
                Err(reason) => {
                    if own_settings {
                        layer.inactive.push((format!("llm-model {}", m.id), reason));
                        continue;
                    }
                    None
                }
            }
        } else {
            None
        };
        layer.models.push(LayerModel {
            row: m.clone(),
            own_settings,
            own,
        });
    }
    layer.apps = snap
        .apps
        .iter()
        .filter(|a| a.enabled)
        .map(app_mapping)
        .collect();
    layer
}

/// The provider names a config file declares clash with database ones?
/// Names the file's field exactly (`providers[2].name`).
pub fn check_file_names(file: &FileConfig, db: &DbLayer) -> Result<(), ConfigError> {
    for (i, p) in file.providers.iter().enumerate() {
        if p.enabled == Some(false) {
            continue;
        }
        let name = p.name.clone().unwrap_or_else(|| {
            presets::find(&p.kind)
                .map(|pr| pr.kind.to_string())
                .unwrap_or_else(|| p.kind.clone())
        });
        if db.names.contains(&name) {
            return Err(ConfigError::new(
                format!("providers[{i}].name"),
                format!(
                    "`{name}` is also the name of a provider in the database; rename one of them (database providers are managed through /api/providers)"
                ),
            ));
        }
    }
    Ok(())
}

/// Composes the layers into one configuration and the catalog.
pub fn compose(base: &Config, db: &DbLayer) -> Result<(Config, Catalog), ConfigError> {
    let db_names: HashSet<&str> = db.names.iter().map(String::as_str).collect();
    let mut providers: Vec<ProviderConfig> = Vec::new();
    for p in &base.providers {
        if db_names.contains(p.name.as_str()) {
            match p.origin {
                // Auto-detected from a key variable: the explicit entry wins.
                Origin::Env => continue,
                Origin::Cli => {
                    let mut p = p.clone();
                    p.name = (2..)
                        .map(|i| format!("{}-{i}", p.name))
                        .find(|n| {
                            !db_names.contains(n.as_str())
                                && !base.providers.iter().any(|q| &q.name == n)
                        })
                        .unwrap_or_else(|| format!("{}-cli", p.name));
                    providers.push(p);
                    continue;
                }
                _ => {
                    return Err(ConfigError::new(
                        format!("providers.{}", p.name),
                        format!(
                            "`{}` is declared in the {} and also exists in the database; rename one of them",
                            p.name,
                            p.origin.as_str()
                        ),
                    ))
                }
            }
        }
        providers.push(p.clone());
    }
    let first_db = providers.len();
    providers.extend(db.providers.iter().cloned());
    // Database providers by descending priority (stable: ties keep id order).
    providers[first_db..].sort_by_key(|p| std::cmp::Reverse(p.meta.priority));

    let mut catalog = Catalog {
        revision: db.revision,
        apps: db.apps.clone(),
        models: Vec::new(),
    };
    for lm in &db.models {
        let m = &lm.row;
        let upstream = m
            .upstream_model
            .clone()
            .unwrap_or_else(|| m.model_id.clone());
        let named = providers.iter().position(|p| p.name == m.provider);
        let served_by = match (named, &lm.own) {
            (Some(i), _) if !lm.own_settings => {
                let p = &mut providers[i];
                if !p.models.iter().any(|e| e.id == m.model_id) {
                    p.models.push(ModelEntry {
                        id: m.model_id.clone(),
                        upstream,
                    });
                }
                p.name.clone()
            }
            (_, Some(pc)) => {
                providers.push(pc.clone());
                pc.name.clone()
            }
            (_, None) => continue,
        };
        catalog.models.push(CatalogModel {
            id: m.id,
            model_id: m.model_id.clone(),
            served_by,
            model_type: m.model_type.clone(),
            context_window: m.context_window,
            max_tokens: m.max_tokens,
            supports_vision: m.supports_vision,
            supports_tools: m.supports_tools,
            input_price: m.input_price,
            output_price: m.output_price,
            rpm_limit: m.rpm_limit,
            tpm_limit: m.tpm_limit,
        });
    }
    let cfg = Config {
        providers,
        ..base.clone()
    };
    crate::config::check_self_loop(&cfg)?;
    Ok((cfg, catalog))
}

/// The layers and the lock that makes compose-and-swap atomic.
pub struct Layers {
    inner: Mutex<LayerState>,
}

#[derive(Clone)]
struct LayerState {
    base: Config,
    db: DbLayer,
}

impl Layers {
    pub fn new(base: Config, db: DbLayer) -> Layers {
        Layers {
            inner: Mutex::new(LayerState { base, db }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LayerState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The base layer (config file + command line).
    pub fn base(&self) -> Config {
        self.lock().base.clone()
    }

    pub fn db(&self) -> DbLayer {
        self.lock().db.clone()
    }

    /// The composed configuration as it is being served.
    pub fn composed(&self) -> Result<Config, ConfigError> {
        let s = self.lock();
        compose(&s.base, &s.db).map(|(c, _)| c)
    }

    /// Would this database layer compose with the current base?
    pub fn check_db(&self, db: &DbLayer) -> Result<(), ConfigError> {
        let base = self.base();
        compose(&base, db).map(|_| ())
    }

    /// Changes a layer; composes, builds and swaps the runtime, all under the
    /// lock. On error nothing changes.
    pub fn update(
        &self,
        swap: &dyn Fn(Runtime),
        change: impl FnOnce(&mut Config, &mut DbLayer),
    ) -> Result<(), ConfigError> {
        let mut state = self.lock();
        let mut next = state.clone();
        change(&mut next.base, &mut next.db);
        let (cfg, catalog) = compose(&next.base, &next.db)?;
        let mut rt = Runtime::from_config(&cfg).map_err(|m| ConfigError::new("providers", m))?;
        rt.catalog = Arc::new(catalog);
        swap(rt);
        *state = next;
        Ok(())
    }

    /// The runtime for the current layers (at start).
    pub fn runtime(&self) -> Result<Runtime, ConfigError> {
        let s = self.lock();
        let (cfg, catalog) = compose(&s.base, &s.db)?;
        let mut rt = Runtime::from_config(&cfg).map_err(|m| ConfigError::new("providers", m))?;
        rt.catalog = Arc::new(catalog);
        Ok(rt)
    }
}

/// An admin write: holds the apply lock and a write transaction whose first
/// statement bumps the revision. [`Write::finish`] re-reads the database,
/// checks that the result composes, commits and swaps the runtime.
pub struct Write<'a> {
    store: &'a Store,
    _guard: tokio::sync::MutexGuard<'a, ()>,
    pub tx: Tx,
}

impl<'a> Write<'a> {
    pub async fn begin(store: &'a Store) -> super::Result<Write<'a>> {
        let guard = store.apply_lock.lock().await;
        let mut tx = store.db.begin().await?;
        tx.bump_revision().await?;
        Ok(Write {
            store,
            _guard: guard,
            tx,
        })
    }

    /// Commits when the new state composes with the base layer; otherwise
    /// rolls back and returns the composition error.
    pub async fn finish(mut self, st: &AppState) -> Result<(), FinishError> {
        let snap = self.tx.snapshot().await.map_err(FinishError::Store)?;
        let layer = db_layer(&snap, &self.store.key);
        if let Err(e) = st.layers.check_db(&layer) {
            let _ = self.tx.rollback().await;
            return Err(FinishError::Invalid(e));
        }
        self.tx.commit().await.map_err(FinishError::Store)?;
        self.store
            .applied_revision
            .store(layer.revision, std::sync::atomic::Ordering::SeqCst);
        st.layers
            .update(&|rt| st.swap(rt), |_, db| *db = layer)
            .map_err(FinishError::Invalid)
    }
}

#[derive(Debug)]
pub enum FinishError {
    Store(super::StoreError),
    Invalid(ConfigError),
}

/// Reads the database and applies it (start, replica changes).
pub async fn reload(st: &AppState, store: &Store) -> super::Result<Result<(), ConfigError>> {
    let _guard = store.apply_lock.lock().await;
    let mut tx = store.db.begin_read().await?;
    let snap = tx.snapshot().await?;
    let hash = tx.setting(super::token::SETTING).await?;
    tx.rollback().await?;
    store.admin.set_hash(hash);
    let layer = db_layer(&snap, &store.key);
    let rev = layer.revision;
    let res = st.layers.update(&|rt| st.swap(rt), |_, db| *db = layer);
    if res.is_ok() {
        store
            .applied_revision
            .store(rev, std::sync::atomic::Ordering::SeqCst);
    }
    Ok(res)
}

/// Records in the database what routing learned about stored keys: a key
/// the upstream refused (401/403) is disabled in memory by the request path;
/// here it becomes `disabled` with its `last_error`, so the admin API shows
/// why and a restart does not bring it back. Returns how many were recorded.
pub async fn persist_key_failures(st: &AppState, store: &Store) -> Result<usize, FinishError> {
    let rt = st.runtime();
    let mut failed: Vec<(i64, String)> = Vec::new();
    for u in rt.router.upstreams() {
        for (i, slot) in u.keys.iter().enumerate() {
            let Some((id, secret)) = u
                .cfg
                .meta
                .keys
                .get(i)
                .and_then(|k| Some((k.id?, &k.secret)))
            else {
                continue;
            };
            if let ("disabled", reason) = slot.status() {
                // The upstream's words may echo the key: never store it.
                let reason = reason.map_or_else(
                    || "refused upstream".into(),
                    |r| match secret.expose() {
                        "" => r,
                        s => r.replace(s, &secret.masked()),
                    },
                );
                failed.push((id, reason));
            }
        }
    }
    drop(rt);
    if failed.is_empty() {
        return Ok(0);
    }
    let mut w = Write::begin(store).await.map_err(FinishError::Store)?;
    let now = super::now_ms();
    let mut n = 0;
    for (id, reason) in failed {
        let Some(mut k) = w.tx.key(id).await.map_err(FinishError::Store)? else {
            continue;
        };
        if k.status == "disabled" {
            continue;
        }
        k.status = "disabled".into();
        k.cooling_until = None;
        k.last_error = Some(reason.chars().take(500).collect());
        k.last_error_at = Some(now);
        k.updated_at = now;
        w.tx.update_key(&k).await.map_err(FinishError::Store)?;
        w.tx.audit(
            "llm-link",
            "provider_key.auto_disable",
            &format!("key {id}"),
            &serde_json::json!({"key": k.hint, "reason": k.last_error}),
        )
        .await
        .map_err(FinishError::Store)?;
        n += 1;
    }
    if n == 0 {
        // Dropping the write rolls it back (the revision stays).
        return Ok(0);
    }
    w.finish(st).await?;
    Ok(n)
}

/// Polls the revision so changes made by another process (a replica, the
/// CLI) are applied here too, and records keys the request path disabled.
/// Runs until shutdown.
pub fn spawn_poller(st: Arc<AppState>, every: Duration) {
    let Some(store) = st.store.clone() else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = st.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match persist_key_failures(&st, &store).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    "recorded {n} upstream key(s) refused by their provider as disabled"
                ),
                Err(FinishError::Store(e)) => tracing::warn!("cannot record refused keys: {e}"),
                Err(FinishError::Invalid(e)) => tracing::warn!("cannot record refused keys: {e}"),
            }
            let rev = match store.db.begin_read().await {
                Ok(mut tx) => {
                    let r = tx.revision().await;
                    let _ = tx.rollback().await;
                    r
                }
                Err(e) => Err(e),
            };
            match rev {
                Ok(r)
                    if r != store
                        .applied_revision
                        .load(std::sync::atomic::Ordering::SeqCst) =>
                {
                    match reload(&st, &store).await {
                        Ok(Ok(())) => tracing::info!(
                            revision = r,
                            "applied a configuration change from the database"
                        ),
                        Ok(Err(e)) => {
                            // Remember it, so the same bad state is not retried every tick.
                            store
                                .applied_revision
                                .store(r, std::sync::atomic::Ordering::SeqCst);
                            tracing::error!(field = %e.field, "database change not applied, keeping the last good configuration: {e}")
                        }
                        Err(e) => tracing::warn!("cannot read the database: {e}"),
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("revision poll failed: {e}"),
            }
        }
    });
}
