//! `/api/providers`: list (with filters), create, read, update, delete,
//! `POST /api/providers/{id}/test` (asks the upstream for its models, for
//! real), and the provider's keys under `/api/providers/{id}/keys`.
//!
//! `{id}` is a database id or a provider name. Providers declared in the
//! config file or on the command line are listed too (`"source": "file"`,
//! `"cli"` or `"env"`) and are read-only here: edit the file instead.

use super::rest::{
    self, begin, body, check_name, check_range, commit, duration_text, ident, nullable, Actor,
    AdminError, AdminResult, DurationIn, Ident,
};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use llm_link_gateway::config::catalog::DbLayer;
use llm_link_gateway::config::{Config, Origin, ProviderConfig, Secret};
use llm_link_gateway::presets;
use llm_link_store::rows::{KeyRow, ModelSpecRow, ProviderRow};
use llm_link_store::{now_ms, rfc3339, Store};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `POST /api/providers/{id}/test` waits for the upstream.
const TEST_TIMEOUT: Duration = Duration::from_secs(15);

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/providers", get(list).post(create))
        .route(
            "/api/providers/{id}",
            get(read).put(update).patch(update).delete(remove),
        )
        .route("/api/providers/{id}/test", post(test))
        .route("/api/providers/{id}/keys", get(list_keys).post(create_key))
        .route(
            "/api/providers/{id}/keys/{key_id}",
            get(read_key)
                .put(update_key)
                .patch(update_key)
                .delete(remove_key),
        )
}

// ---- bodies ---------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ModelIn {
    Id(String),
    Full {
        id: String,
        #[serde(default)]
        upstream: Option<String>,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsIn {
    #[serde(default, deserialize_with = "nullable")]
    connect: Option<Option<DurationIn>>,
    #[serde(default, deserialize_with = "nullable")]
    first_byte: Option<Option<DurationIn>>,
    #[serde(default, deserialize_with = "nullable")]
    idle: Option<Option<DurationIn>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsIn {
    #[serde(default, deserialize_with = "nullable")]
    max_concurrency: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable", alias = "rpm_limit")]
    rpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable", alias = "tpm_limit")]
    tpm: Option<Option<i64>>,
}

/// A provider create/update body. Every field is optional on update (only
/// the fields present change); read-back fields (`id`, `source`, …) are
/// accepted and ignored so a GET result can be PUT back.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderBody {
    name: Option<String>,
    #[serde(alias = "type")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    base_url: Option<Option<String>>,
    description: Option<String>,
    enabled: Option<bool>,
    priority: Option<i64>,
    weight: Option<i64>,
    models: Option<Vec<ModelIn>>,
    #[serde(default, deserialize_with = "nullable")]
    default_model: Option<Option<String>>,
    forward_any_model: Option<bool>,
    passthrough: Option<bool>,
    #[serde(alias = "key_strategy")]
    key_usage_mode: Option<String>,
    timeouts: Option<TimeoutsIn>,
    limits: Option<LimitsIn>,
    #[serde(default, deserialize_with = "nullable")]
    headers: Option<Option<BTreeMap<String, String>>>,
    /// Shorthand for one key (create), or the replacement of the only key.
    api_key: Option<String>,
    /// Keys to create with the provider.
    keys: Option<Vec<KeyBody>>,
    #[allow(dead_code)]
    id: Option<IgnoredAny>,
    #[allow(dead_code)]
    source: Option<IgnoredAny>,
    #[allow(dead_code)]
    active: Option<IgnoredAny>,
    #[allow(dead_code)]
    inactive_reason: Option<IgnoredAny>,
    #[allow(dead_code)]
    read_only: Option<IgnoredAny>,
    #[allow(dead_code)]
    created_at: Option<IgnoredAny>,
    #[allow(dead_code)]
    updated_at: Option<IgnoredAny>,
}

/// A key create/update body (also the items of a catalog model's `api_keys`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    /// The secret (write-only; responses show it masked).
    #[serde(alias = "api_key")]
    pub key: Option<String>,
    /// An existing key's id (catalog `api_keys` lists keep keys by id).
    pub id: Option<i64>,
    pub label: Option<String>,
    pub status: Option<String>,
    pub weight: Option<i64>,
    #[allow(dead_code)]
    provider_id: Option<IgnoredAny>,
    #[allow(dead_code)]
    llm_model_id: Option<IgnoredAny>,
    #[allow(dead_code)]
    cooling_until: Option<IgnoredAny>,
    #[allow(dead_code)]
    last_error: Option<IgnoredAny>,
    #[allow(dead_code)]
    last_error_at: Option<IgnoredAny>,
    #[allow(dead_code)]
    last_used_at: Option<IgnoredAny>,
    #[allow(dead_code)]
    created_at: Option<IgnoredAny>,
    #[allow(dead_code)]
    updated_at: Option<IgnoredAny>,
}

// ---- keys (shared with the model catalog) ---------------------------------

const KEY_STATUSES: &[&str] = &["enabled", "disabled", "cooling"];
/// How long a key set to `cooling` through the API rests.
const API_COOLDOWN_MS: i64 = 60_000;

/// Validates a new key's fields and encrypts it. `at` prefixes field names
/// (`keys[0].`).
pub fn new_key(
    store: &Store,
    at: &str,
    b: &KeyBody,
    provider_id: Option<i64>,
    llm_model_id: Option<i64>,
) -> AdminResult<KeyRow> {
    let now = now_ms();
    let secret = b
        .key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| AdminError::invalid(format!("{at}key"), "the key is required"))?;
    check_secret(&format!("{at}key"), secret)?;
    let mut row = KeyRow {
        id: 0,
        provider_id,
        llm_model_id,
        label: String::new(),
        secret: store
            .key
            .encrypt(secret)
            .map_err(|_| AdminError::internal("cannot encrypt the key"))?,
        hint: Secret::new(secret).masked(),
        status: "enabled".into(),
        weight: 1,
        cooling_until: None,
        last_error: None,
        last_error_at: None,
        last_used_at: None,
        created_at: now,
        updated_at: now,
    };
    patch_key(
        store,
        at,
        &mut row,
        &KeyBody {
            key: None,
            ..b.clone()
        },
    )?;
    Ok(row)
}

/// Keys travel in HTTP headers: printable ASCII only (never echoed back).
fn check_secret(field: &str, s: &str) -> AdminResult<()> {
    if s.len() > 4096 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AdminError::invalid(
            field,
            "must be at most 4096 printable ASCII characters, without spaces",
        ));
    }
    Ok(())
}

/// Applies a key body to a row; returns the names of changed fields.
pub fn patch_key(
    store: &Store,
    at: &str,
    row: &mut KeyRow,
    b: &KeyBody,
) -> AdminResult<Vec<&'static str>> {
    let mut changed = Vec::new();
    if let Some(k) = b.key.as_deref().map(str::trim) {
        if k.is_empty() {
            return Err(AdminError::invalid(format!("{at}key"), "must not be empty"));
        }
        check_secret(&format!("{at}key"), k)?;
        row.secret = store
            .key
            .encrypt(k)
            .map_err(|_| AdminError::internal("cannot encrypt the key"))?;
        row.hint = Secret::new(k).masked();
        row.last_error = None;
        row.last_error_at = None;
        changed.push("key");
    }
    if let Some(l) = &b.label {
        if l.len() > 200 {
            return Err(AdminError::invalid(
                format!("{at}label"),
                "must be at most 200 characters",
            ));
        }
        row.label = l.clone();
        changed.push("label");
    }
    if let Some(s) = &b.status {
        if !KEY_STATUSES.contains(&s.as_str()) {
            return Err(AdminError::invalid(
                format!("{at}status"),
                "must be enabled, disabled or cooling",
            ));
        }
        row.cooling_until = (s == "cooling").then(|| now_ms() + API_COOLDOWN_MS);
        row.status = s.clone();
        changed.push("status");
    }
    if let Some(w) = b.weight {
        row.weight = check_range(&format!("{at}weight"), w, 0, 1_000_000)?;
        changed.push("weight");
    }
    row.updated_at = now_ms();
    Ok(changed)
}

/// A key as the API shows it: masked, never the secret.
pub fn key_json(k: &KeyRow) -> Value {
    json!({
        "id": k.id,
        "provider_id": k.provider_id,
        "llm_model_id": k.llm_model_id,
        "label": k.label,
        "key": k.hint,
        "status": k.status,
        "weight": k.weight,
        "cooling_until": k.cooling_until.map(rfc3339),
        "last_error": k.last_error,
        "last_error_at": k.last_error_at.map(rfc3339),
        "last_used_at": k.last_used_at.map(rfc3339),
        "created_at": rfc3339(k.created_at),
        "updated_at": rfc3339(k.updated_at),
    })
}

// ---- provider rows ---------------------------------------------------------

const KEY_USAGE_MODES: &[&str] = &["single", "round_robin", "weighted", "least_used"];

pub fn key_usage_mode(field: &str, v: &str) -> AdminResult<String> {
    let v = v.trim().replace('-', "_");
    if KEY_USAGE_MODES.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(AdminError::invalid(
            field,
            "must be single, round_robin, weighted or least_used",
        ))
    }
}

fn empty_row() -> ProviderRow {
    let now = now_ms();
    ProviderRow {
        id: 0,
        name: String::new(),
        kind: String::new(),
        base_url: None,
        description: String::new(),
        enabled: true,
        priority: 0,
        weight: 1,
        models: Vec::new(),
        default_model: None,
        forward_any_model: false,
        passthrough: true,
        key_usage_mode: "single".into(),
        connect_timeout_ms: None,
        first_byte_timeout_ms: None,
        idle_timeout_ms: None,
        max_concurrency: None,
        rpm_limit: None,
        tpm_limit: None,
        headers: None,
        created_at: now,
        updated_at: now,
    }
}

/// Refuses a base URL that points at llm-link itself.
pub fn check_not_self(st: &AppState, field: &str, base_url: &str) -> AdminResult<()> {
    let Ok(u) = url::Url::parse(base_url) else {
        return Ok(());
    };
    let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) else {
        return Ok(());
    };
    let local = |h: &str| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h == "localhost"
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
    };
    if port == st.listen.port && (host == st.listen.host || (local(host) && local(&st.listen.host)))
    {
        return Err(AdminError::invalid(
            field,
            format!("{host}:{port} is llm-link's own listen address; requests would loop"),
        ));
    }
    Ok(())
}

/// Applies a body to a row and validates the result; returns the changed
/// field names (for the audit log).
fn patch_provider(
    st: &AppState,
    store: &Store,
    row: &mut ProviderRow,
    b: &ProviderBody,
) -> AdminResult<Vec<&'static str>> {
    let mut changed = Vec::new();
    if let Some(n) = &b.name {
        check_name("name", n)?;
        row.name = n.clone();
        changed.push("name");
    }
    if let Some(k) = &b.kind {
        let p = presets::find(k).ok_or_else(|| {
            AdminError::invalid(
                "kind",
                format!(
                    "unknown provider kind `{k}`; known kinds: {}",
                    presets::kinds()
                ),
            )
        })?;
        if !p.supported {
            return Err(AdminError::invalid(
                "kind",
                format!("provider kind `{}` is not supported by this build", p.kind),
            ));
        }
        row.kind = p.kind.to_string();
        changed.push("kind");
    }
    if let Some(u) = &b.base_url {
        row.base_url = match u.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            None => None,
            Some(u) => Some(
                llm_link_gateway::config::normalize_base_url(u)
                    .map_err(|m| AdminError::invalid("base_url", m))?,
            ),
        };
        changed.push("base_url");
    }
    if let Some(d) = &b.description {
        row.description = d.clone();
        changed.push("description");
    }
    if let Some(e) = b.enabled {
        row.enabled = e;
        changed.push("enabled");
    }
    if let Some(p) = b.priority {
        row.priority = check_range("priority", p, -1_000_000, 1_000_000)?;
        changed.push("priority");
    }
    if let Some(w) = b.weight {
        row.weight = check_range("weight", w, 0, 1_000_000)?;
        changed.push("weight");
    }
    if let Some(models) = &b.models {
        let mut out = Vec::new();
        for (i, m) in models.iter().enumerate() {
            let (id, upstream) = match m {
                ModelIn::Id(id) => (id.clone(), None),
                ModelIn::Full { id, upstream } => (id.clone(), upstream.clone()),
            };
            if id.trim().is_empty() || upstream.as_deref().is_some_and(|u| u.trim().is_empty()) {
                return Err(AdminError::invalid(
                    format!("models[{i}]"),
                    "model id must not be empty",
                ));
            }
            out.push(ModelSpecRow {
                upstream: upstream.filter(|u| u != &id),
                id,
            });
        }
        row.models = out;
        changed.push("models");
    }
    if let Some(d) = &b.default_model {
        row.default_model = d.clone().filter(|d| !d.trim().is_empty());
        changed.push("default_model");
    }
    if let Some(f) = b.forward_any_model {
        row.forward_any_model = f;
        changed.push("forward_any_model");
    }
    if let Some(p) = b.passthrough {
        row.passthrough = p;
        changed.push("passthrough");
    }
    if let Some(m) = &b.key_usage_mode {
        row.key_usage_mode = key_usage_mode("key_usage_mode", m)?;
        changed.push("key_usage_mode");
    }
    if let Some(t) = &b.timeouts {
        for (name, v, slot) in [
            ("timeouts.connect", &t.connect, &mut row.connect_timeout_ms),
            (
                "timeouts.first_byte",
                &t.first_byte,
                &mut row.first_byte_timeout_ms,
            ),
            ("timeouts.idle", &t.idle, &mut row.idle_timeout_ms),
        ] {
            if let Some(v) = v {
                *slot = match v {
                    None => None,
                    Some(d) => Some(d.millis(name)?),
                };
            }
        }
        changed.push("timeouts");
    }
    if let Some(l) = &b.limits {
        for (name, v, slot) in [
            (
                "limits.max_concurrency",
                &l.max_concurrency,
                &mut row.max_concurrency,
            ),
            ("limits.rpm", &l.rpm, &mut row.rpm_limit),
            ("limits.tpm", &l.tpm, &mut row.tpm_limit),
        ] {
            if let Some(v) = v {
                *slot = match v {
                    None => None,
                    Some(n) => Some(check_range(name, *n, 1, i64::from(u32::MAX))?),
                };
            }
        }
        changed.push("limits");
    }
    if let Some(h) = &b.headers {
        row.headers = match h {
            None => None,
            Some(map) if map.is_empty() => None,
            Some(map) => {
                for (k, v) in map {
                    if axum::http::HeaderName::from_bytes(k.as_bytes()).is_err()
                        || axum::http::HeaderValue::from_str(v).is_err()
                    {
                        return Err(AdminError::invalid(
                            format!("headers.{k}"),
                            "not a valid HTTP header",
                        ));
                    }
                }
                let text = serde_json::to_string(map)
                    .map_err(|_| AdminError::internal("cannot encode headers"))?;
                Some(
                    store
                        .key
                        .encrypt(&text)
                        .map_err(|_| AdminError::internal("cannot encrypt headers"))?,
                )
            }
        };
        changed.push("headers");
    }
    // The whole row must make sense now.
    check_name("name", &row.name)?;
    let preset = presets::find(&row.kind)
        .ok_or_else(|| AdminError::invalid("kind", "the provider kind is required"))?;
    match &row.base_url {
        Some(u) => check_not_self(st, "base_url", u)?,
        None if preset.base_url.is_empty() => {
            return Err(AdminError::invalid(
                "base_url",
                format!("provider kind `{}` needs a base_url", preset.kind),
            ))
        }
        None => {}
    }
    if row.models.is_empty()
        && row.default_model.is_none()
        && preset.default_model.is_empty()
        && !row.forward_any_model
    {
        return Err(AdminError::invalid(
            "models",
            format!(
                "provider kind `{}` has no default model: list some models or set forward_any_model",
                preset.kind
            ),
        ));
    }
    // A file or command-line provider owns its name.
    if let Some(p) = st
        .layers
        .base()
        .providers
        .iter()
        .find(|p| p.name == row.name && matches!(p.origin, Origin::File | Origin::Cli))
    {
        return Err(AdminError::conflict(
            "name",
            format!(
                "`{}` is declared in the {}; pick another name",
                p.name,
                p.origin.as_str()
            ),
        ));
    }
    Ok(changed)
}

fn source(o: Origin) -> &'static str {
    match o {
        Origin::Cli => "cli",
        Origin::File => "file",
        Origin::Env => "env",
        Origin::Database => "database",
    }
}

fn headers_masked(store: &Store, ct: &Option<String>) -> Value {
    let Some(ct) = ct else {
        return json!({});
    };
    match store.key.decrypt(ct) {
        Ok(plain) => {
            let map: BTreeMap<String, String> =
                serde_json::from_str(plain.expose()).unwrap_or_default();
            Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, Value::String(Secret::new(v).masked())))
                    .collect(),
            )
        }
        Err(_) => json!({"(unreadable)": "****"}),
    }
}

fn timeouts_json(c: Option<i64>, f: Option<i64>, i: Option<i64>) -> Value {
    json!({
        "connect": c.map(duration_text),
        "first_byte": f.map(duration_text),
        "idle": i.map(duration_text),
    })
}

/// Whether a database provider is serving, and why not.
fn activity(db: &DbLayer, name: &str, enabled: bool) -> (bool, Option<String>) {
    if !enabled {
        return (false, Some("disabled".into()));
    }
    if let Some((_, why)) = db.inactive.iter().find(|(n, _)| n == name) {
        return (false, Some(why.clone()));
    }
    (db.providers.iter().any(|p| p.name == name), None)
}

/// `db`: the database layer being served (`st.layers.db()`, taken once
/// per answer: it clones every provider).
fn provider_json(db: &DbLayer, store: &Store, p: &ProviderRow, keys: &[KeyRow]) -> Value {
    let (active, why) = activity(db, &p.name, p.enabled);
    json!({
        "id": p.id,
        "name": p.name,
        "kind": p.kind,
        "type": p.kind,
        "source": "database",
        "read_only": false,
        "base_url": p.base_url.as_deref().map(llm_link_store::shown_base_url),
        "effective_base_url": p.base_url.as_deref().map(llm_link_store::shown_base_url).or_else(|| presets::find(&p.kind).map(|pr| pr.base_url.to_string())),
        "description": p.description,
        "enabled": p.enabled,
        "active": active,
        "inactive_reason": why,
        "priority": p.priority,
        "weight": p.weight,
        "models": p.models,
        "default_model": p.default_model,
        "forward_any_model": p.forward_any_model,
        "passthrough": p.passthrough,
        "key_usage_mode": p.key_usage_mode,
        "timeouts": timeouts_json(p.connect_timeout_ms, p.first_byte_timeout_ms, p.idle_timeout_ms),
        "limits": {"max_concurrency": p.max_concurrency, "rpm": p.rpm_limit, "tpm": p.tpm_limit},
        "headers": headers_masked(store, &p.headers),
        "keys": keys.iter().map(key_json).collect::<Vec<_>>(),
        "created_at": rfc3339(p.created_at),
        "updated_at": rfc3339(p.updated_at),
    })
}

/// A file / command-line / environment provider, read-only.
/// `composed`: the configuration being served (`st.layers.composed()`,
/// composed once per answer).
fn base_json(composed: Option<&Config>, p: &ProviderConfig) -> Value {
    let served = composed.is_some_and(|c| {
        c.providers
            .iter()
            .any(|q| q.name == p.name && q.origin == p.origin)
    });
    let mut keys: Vec<Value> = p
        .meta
        .keys
        .iter()
        .map(|k| json!({"id": null, "key": k.secret.masked(), "status": "enabled", "weight": k.weight}))
        .collect();
    if keys.is_empty() {
        if let Some(k) = &p.api_key {
            keys.push(json!({"id": null, "key": k.masked(), "status": "enabled", "weight": 1}));
        }
    }
    let ms = |d: Duration| Some(d.as_millis() as i64);
    json!({
        "id": null,
        "name": p.name,
        "kind": p.preset.kind,
        "type": p.preset.kind,
        "source": source(p.origin),
        "read_only": true,
        "base_url": llm_link_store::shown_base_url(&p.base_url),
        "effective_base_url": llm_link_store::shown_base_url(&p.base_url),
        "description": format!("declared in the {}", p.origin.as_str()),
        "enabled": true,
        "active": served,
        "inactive_reason": (!served).then_some("a database provider has the same name"),
        "priority": p.meta.priority,
        "weight": p.meta.weight,
        "models": p.models.iter().map(|m| if m.id == m.upstream { json!({"id": m.id}) } else { json!({"id": m.id, "upstream": m.upstream}) }).collect::<Vec<_>>(),
        "default_model": p.default_model,
        "forward_any_model": p.forward_any_model,
        "passthrough": p.passthrough,
        "key_usage_mode": p.meta.key_usage,
        "timeouts": timeouts_json(ms(p.timeouts.connect), ms(p.timeouts.first_byte), ms(p.timeouts.idle)),
        "limits": {"max_concurrency": p.meta.max_concurrency, "rpm": p.meta.rpm_limit, "tpm": p.meta.tpm_limit},
        "headers": Value::Object(p.headers.iter().map(|(k, v)| (k.clone(), Value::String(Secret::new(v.clone()).masked()))).collect()),
        "keys": keys,
        "created_at": null,
        "updated_at": null,
    })
}

enum Found {
    Db(ProviderRow),
    Base(ProviderConfig),
}

async fn find(st: &AppState, id: &str) -> AdminResult<Found> {
    let store = st.store.as_ref();
    if let Some(store) = store {
        let mut tx = store.db.begin_read().await?;
        let row = match ident(id) {
            Ident::Id(n) => tx.provider(n).await?,
            Ident::Name(n) => tx.provider_by_name(&n).await?,
        };
        tx.rollback().await?;
        if let Some(r) = row {
            return Ok(Found::Db(r));
        }
    }
    if let Ident::Name(n) = ident(id) {
        if let Some(p) = st.layers.base().providers.into_iter().find(|p| p.name == n) {
            return Ok(Found::Base(p));
        }
    }
    Err(AdminError::not_found(format!("no provider `{id}`")))
}

async fn find_db(st: &AppState, id: &str) -> AdminResult<ProviderRow> {
    match find(st, id).await? {
        Found::Db(r) => Ok(r),
        Found::Base(p) => Err(AdminError::read_only(format!(
            "provider `{}` is declared in the {}; change it there",
            p.name,
            p.origin.as_str()
        ))),
    }
}

// ---- handlers ----------------------------------------------------------------

async fn list(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> AdminResult {
    let q = rest::query(&q, &["source", "kind", "type", "enabled", "name", "q"])?;
    let enabled = rest::bool_param(&q, "enabled")?;
    let kind = q.get("kind").or_else(|| q.get("type"));
    let name = q
        .get("name")
        .or_else(|| q.get("q"))
        .map(|s| s.to_lowercase());
    let src = q.get("source").map(String::as_str);
    if let Some(s) = src {
        if !["database", "file", "cli", "env"].contains(&s) {
            return Err(AdminError::invalid(
                "query.source",
                "must be database, file, cli or env",
            ));
        }
    }
    let mut out = Vec::new();
    let composed = st.layers.composed().ok();
    for p in st.layers.base().providers {
        out.push(base_json(composed.as_ref(), &p));
    }
    if let Some(store) = &st.store {
        let mut tx = store.db.begin_read().await?;
        let rows = tx.providers().await?;
        let keys = tx.keys().await?;
        tx.rollback().await?;
        let db = st.layers.db();
        for p in &rows {
            let ks: Vec<KeyRow> = keys
                .iter()
                .filter(|k| k.provider_id == Some(p.id))
                .cloned()
                .collect();
            out.push(provider_json(&db, store, p, &ks));
        }
    }
    out.retain(|v| {
        src.is_none_or(|s| v["source"] == s)
            && kind.is_none_or(|k| v["kind"] == k.as_str())
            && enabled.is_none_or(|e| v["enabled"] == e)
            && name.as_ref().is_none_or(|n| {
                v["name"]
                    .as_str()
                    .is_some_and(|x| x.to_lowercase().contains(n))
            })
    });
    let total = out.len();
    Ok(Json(json!({"providers": out, "total": total})).into_response())
}

async fn read(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> AdminResult {
    match find(&st, &id).await? {
        Found::Base(p) => {
            Ok(Json(base_json(st.layers.composed().ok().as_ref(), &p)).into_response())
        }
        Found::Db(r) => {
            let store = rest::store(&st)?;
            let mut tx = store.db.begin_read().await?;
            let keys = tx.provider_keys(r.id).await?;
            tx.rollback().await?;
            Ok(Json(provider_json(&st.layers.db(), store, &r, &keys)).into_response())
        }
    }
}

async fn respond(st: &AppState, store: &Store, id: i64, status: StatusCode) -> AdminResult {
    let mut tx = store.db.begin_read().await?;
    let row = tx
        .provider(id)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no provider {id}")))?;
    let keys = tx.provider_keys(id).await?;
    tx.rollback().await?;
    Ok((
        status,
        Json(provider_json(&st.layers.db(), store, &row, &keys)),
    )
        .into_response())
}

async fn create(
    State(st): State<Arc<AppState>>,
    who: Option<Extension<Actor>>,
    raw: Bytes,
) -> AdminResult {
    let store = rest::store(&st)?;
    let b: ProviderBody = body(&raw)?;
    if b.name.is_none() {
        return Err(AdminError::invalid("name", "this field is required"));
    }
    if b.kind.is_none() {
        return Err(AdminError::invalid("kind", "this field is required"));
    }
    let mut row = empty_row();
    patch_provider(&st, store, &mut row, &b)?;
    let mut keys = Vec::new();
    if let Some(k) = &b.api_key {
        keys.push(new_key(
            store,
            "api_",
            &KeyBody {
                key: Some(k.clone()),
                ..KeyBody::default()
            },
            None,
            None,
        )?);
    }
    for (i, k) in b.keys.iter().flatten().enumerate() {
        keys.push(new_key(store, &format!("keys[{i}]."), k, None, None)?);
    }
    let mut w = begin(store).await?;
    if w.tx.provider_by_name(&row.name).await?.is_some() {
        return Err(AdminError::conflict(
            "name",
            format!("a provider named `{}` exists", row.name),
        ));
    }
    let id = w.tx.insert_provider(&row).await?;
    for k in &mut keys {
        k.provider_id = Some(id);
        k.id = w.tx.insert_key(k).await?;
    }
    commit(
        w,
        &st,
        who,
        "provider.create",
        &format!("provider {id} ({})", row.name),
        &json!({"kind": row.kind, "keys": keys.iter().map(|k| &k.hint).collect::<Vec<_>>()}),
    )
    .await?;
    respond(&st, store, id, StatusCode::CREATED).await
}

async fn update(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    who: Option<Extension<Actor>>,
    raw: Bytes,
) -> AdminResult {
    let store = rest::store(&st)?;
    let b: ProviderBody = body(&raw)?;
    if b.keys.is_some() {
        return Err(AdminError::invalid(
            "keys",
            "manage keys under /api/providers/{id}/keys",
        ));
    }
    let current = find_db(&st, &id).await?;
    let mut row = current.clone();
    let mut changed = patch_provider(&st, store, &mut row, &b)?;
    row.updated_at = now_ms();
    let mut w = begin(store).await?;
    if row.name != current.name && w.tx.provider_by_name(&row.name).await?.is_some() {
        return Err(AdminError::conflict(
            "name",
            format!("a provider named `{}` exists", row.name),
        ));
    }
    if !w.tx.update_provider(&row).await? {
        return Err(AdminError::not_found(format!("no provider `{id}`")));
    }
    if let Some(k) = &b.api_key {
        let keys = w.tx.provider_keys(row.id).await?;
        let kb = KeyBody {
            key: Some(k.clone()),
            ..KeyBody::default()
        };
        match keys.as_slice() {
            [] => {
                let key = new_key(store, "api_", &kb, Some(row.id), None)?;
                w.tx.insert_key(&key).await?;
            }
            [one] => {
                let mut one = one.clone();
                patch_key(store, "api_", &mut one, &kb)?;
                w.tx.update_key(&one).await?;
            }
            many => {
                return Err(AdminError::conflict(
                    "api_key",
                    format!(
                        "provider `{}` has {} keys; change them under /api/providers/{}/keys",
                        row.name,
                        many.len(),
                        row.id
                    ),
                ))
            }
        }
        changed.push("api_key");
    }
    commit(
        w,
        &st,
        who,
        "provider.update",
        &format!("provider {} ({})", row.id, row.name),
        &json!({ "changed": changed }),
    )
    .await?;
    respond(&st, store, row.id, StatusCode::OK).await
}

async fn remove(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    who: Option<Extension<Actor>>,
) -> AdminResult {
    let store = rest::store(&st)?;
    let row = find_db(&st, &id).await?;
    let mut w = begin(store).await?;
    if !w.tx.delete_provider(row.id).await? {
        return Err(AdminError::not_found(format!("no provider `{id}`")));
    }
    commit(
        w,
        &st,
        who,
        "provider.delete",
        &format!("provider {} ({})", row.id, row.name),
        &json!({}),
    )
    .await?;
    Ok(Json(json!({"status": "deleted", "id": row.id, "name": row.name})).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    key_id: Option<i64>,
}

async fn test(State(st): State<Arc<AppState>>, Path(id): Path<String>, raw: Bytes) -> AdminResult {
    let b: TestBody = body(&raw)?;
    let (cfg, key_id) = match find(&st, &id).await? {
        Found::Base(p) => {
            if b.key_id.is_some() {
                return Err(AdminError::invalid(
                    "key_id",
                    "file and command-line providers have no stored keys",
                ));
            }
            (p, None)
        }
        Found::Db(row) => {
            let store = rest::store(&st)?;
            let mut tx = store.db.begin_read().await?;
            let keys = tx.provider_keys(row.id).await?;
            tx.rollback().await?;
            let key = match b.key_id {
                Some(k) => Some(keys.iter().find(|x| x.id == k).ok_or_else(|| {
                    AdminError::invalid("key_id", format!("provider `{}` has no key {k}", row.name))
                })?),
                None => keys.iter().find(|k| k.status != "disabled"),
            };
            // Test even a disabled provider or key: that is how one checks
            // them before enabling.
            let chosen: Vec<KeyRow> = key
                .into_iter()
                .map(|k| KeyRow {
                    status: "enabled".into(),
                    cooling_until: None,
                    ..k.clone()
                })
                .collect();
            let refs: Vec<&KeyRow> = chosen.iter().collect();
            let probe = ProviderRow {
                enabled: true,
                ..row.clone()
            };
            let cfg = llm_link_store::layer::provider_config(&probe, &refs, &store.key)
                .map_err(|e| AdminError::invalid("keys", format!("cannot test: {e}")))?;
            (cfg, chosen.first().map(|k| k.id))
        }
    };
    let name = cfg.name.clone();
    let secrets = secrets_of(&cfg);
    let provider = llm_link_gateway::providers::build(cfg)
        .map_err(|e| AdminError::invalid("provider", format!("cannot build `{name}`: {e}")))?;
    let started = Instant::now();
    let outcome = tokio::time::timeout(TEST_TIMEOUT, provider.list_models()).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let (ok, message, code, models) = match outcome {
        Err(_) => (
            false,
            format!("no answer within {}s", TEST_TIMEOUT.as_secs()),
            "upstream_timeout",
            Vec::new(),
        ),
        Ok(Err(e)) => {
            let msg = match &e {
                ApiError::UpstreamAuth(_) => format!("the provider rejected the key ({e})"),
                other => other.to_string(),
            };
            (false, msg, e.code(), Vec::new())
        }
        Ok(Ok(models)) => (true, "ok".to_string(), "ok", models),
    };
    // An upstream may echo the key (or a header value) in its error; the
    // message is stored as the key's `last_error` and returned.
    let message = secrets
        .iter()
        .fold(message, |m, s| m.replace(s.expose(), &s.masked()));
    if let (Some(kid), Some(store)) = (key_id, st.store.as_ref()) {
        // Record the outcome on the key (not a configuration change: no revision bump).
        let mut tx = store.db.begin().await?;
        if let Some(mut k) = tx.key(kid).await? {
            let now = now_ms();
            if ok {
                k.last_used_at = Some(now);
                k.last_error = None;
                k.last_error_at = None;
            } else {
                k.last_error = Some(message.chars().take(500).collect());
                k.last_error_at = Some(now);
            }
            tx.update_key(&k).await?;
        }
        tx.commit().await?;
    }
    Ok(Json(json!({
        "ok": ok,
        "status": if ok { "ok" } else { "error" },
        "provider": name,
        "key_id": key_id,
        "latency_ms": latency_ms,
        "message": message,
        "code": code,
        "models": models,
    }))
    .into_response())
}

/// The secrets a provider sends upstream (keys and header values), longest
/// first so a secret containing another is masked whole.
fn secrets_of(cfg: &ProviderConfig) -> Vec<Secret> {
    let mut out: Vec<Secret> = cfg
        .api_key
        .iter()
        .cloned()
        .chain(cfg.meta.keys.iter().map(|k| k.secret.clone()))
        .chain(cfg.headers.iter().map(|(_, v)| Secret::new(v.clone())))
        .filter(|s| s.expose().len() >= 8)
        .collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
    out
}

// ---- keys --------------------------------------------------------------------

async fn list_keys(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> AdminResult {
    let store = rest::store(&st)?;
    let row = find_db(&st, &id).await?;
    let mut tx = store.db.begin_read().await?;
    let keys = tx.provider_keys(row.id).await?;
    tx.rollback().await?;
    let total = keys.len();
    Ok(
        Json(json!({"keys": keys.iter().map(key_json).collect::<Vec<_>>(), "total": total}))
            .into_response(),
    )
}

async fn key_of(store: &Store, provider: &ProviderRow, key_id: &str) -> AdminResult<KeyRow> {
    let kid: i64 = key_id
        .parse()
        .map_err(|_| AdminError::not_found(format!("no key `{key_id}`")))?;
    let mut tx = store.db.begin_read().await?;
    let k = tx.key(kid).await?;
    tx.rollback().await?;
    k.filter(|k| k.provider_id == Some(provider.id))
        .ok_or_else(|| {
            AdminError::not_found(format!("provider `{}` has no key {key_id}", provider.name))
        })
}

async fn read_key(
    State(st): State<Arc<AppState>>,
    Path((id, key_id)): Path<(String, String)>,
) -> AdminResult {
    let store = rest::store(&st)?;
    let row = find_db(&st, &id).await?;
    Ok(Json(key_json(&key_of(store, &row, &key_id).await?)).into_response())
}

async fn create_key(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    who: Option<Extension<Actor>>,
    raw: Bytes,
) -> AdminResult {
    let store = rest::store(&st)?;
    let b: KeyBody = body(&raw)?;
    if b.id.is_some() {
        return Err(AdminError::invalid("id", "ids are assigned by llm-link"));
    }
    let row = find_db(&st, &id).await?;
    let mut key = new_key(store, "", &b, Some(row.id), None)?;
    let mut w = begin(store).await?;
    key.id = w.tx.insert_key(&key).await?;
    commit(
        w,
        &st,
        who,
        "provider_key.create",
        &format!("provider {} ({}) key {}", row.id, row.name, key.id),
        &json!({"key": key.hint, "status": key.status}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(key_json(&key))).into_response())
}

async fn update_key(
    State(st): State<Arc<AppState>>,
    Path((id, key_id)): Path<(String, String)>,
    who: Option<Extension<Actor>>,
    raw: Bytes,
) -> AdminResult {
    let store = rest::store(&st)?;
    let b: KeyBody = body(&raw)?;
    let row = find_db(&st, &id).await?;
    let mut key = key_of(store, &row, &key_id).await?;
    let changed = patch_key(store, "", &mut key, &b)?;
    let mut w = begin(store).await?;
    if !w.tx.update_key(&key).await? {
        return Err(AdminError::not_found(format!("no key {key_id}")));
    }
    commit(
        w,
        &st,
        who,
        "provider_key.update",
        &format!("provider {} ({}) key {}", row.id, row.name, key.id),
        &json!({"changed": changed, "key": key.hint}),
    )
    .await?;
    Ok(Json(key_json(&key)).into_response())
}

async fn remove_key(
    State(st): State<Arc<AppState>>,
    Path((id, key_id)): Path<(String, String)>,
    who: Option<Extension<Actor>>,
) -> AdminResult {
    let store = rest::store(&st)?;
    let row = find_db(&st, &id).await?;
    let key = key_of(store, &row, &key_id).await?;
    let mut w = begin(store).await?;
    if !w.tx.delete_key(key.id).await? {
        return Err(AdminError::not_found(format!("no key {key_id}")));
    }
    commit(
        w,
        &st,
        who,
        "provider_key.delete",
        &format!("provider {} ({}) key {}", row.id, row.name, key.id),
        &json!({"key": key.hint}),
    )
    .await?;
    Ok(Json(json!({"status": "deleted", "id": key.id})).into_response())
}
