//! `/api/providers`: list (with filters), create, read, update, delete,
//! `POST /api/providers/{id}/test` (asks the upstream for its models, for
//! real), and the provider's keys under `/api/providers/{id}/keys`.
//!
//! `{id}` is a database id or a provider name. Providers declared in the
//! config file or on the command line are listed too (`"source": "file"`,
//! `"cli"` or `"env"`) and are read-only here: edit the file instead.

use super::keys::{
    all_with_keys, insert_keys, key_json, new_key, patch_key, with_keys, KeyBody, Owner,
    ProviderKey,
};
use super::resource::{self, masked, name_free, Changes, Filters, Ident, Resource, Stored, Table};
use super::rest::{
    self, body, check_name, check_range, duration_text, nullable, AdminError, AdminResult,
    DurationIn,
};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use llm_link_gateway::config::catalog::DbLayer;
use llm_link_gateway::config::{Config, Origin, ProviderConfig, Secret};
use llm_link_gateway::presets;
use llm_link_store::rows::{KeyRow, ModelSpecRow, ProviderRow};
use llm_link_store::{now_ms, rfc3339, Store, Tx};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `POST /api/providers/{id}/test` waits for the upstream.
const TEST_TIMEOUT: Duration = Duration::from_secs(15);

pub fn routes() -> Router<Arc<AppState>> {
    resource::routes::<ProviderRow>("/api/providers", "/api/providers/{id}")
        .route("/api/providers/{id}/test", post(test))
        .merge(resource::routes::<ProviderKey>(
            "/api/providers/{id}/keys",
            "/api/providers/{id}/keys/{key_id}",
        ))
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
pub struct ProviderBody {
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
    /// Serves the Responses API itself; null: as the kind says.
    #[serde(default, deserialize_with = "nullable")]
    responses: Option<Option<bool>>,
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
        responses: None,
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

fn kind(field: &str, k: &str) -> AdminResult<String> {
    let p = presets::find(k).ok_or_else(|| {
        AdminError::invalid(
            field,
            format!(
                "unknown provider kind `{k}`; known kinds: {}",
                presets::kinds()
            ),
        )
    })?;
    if !p.supported {
        return Err(AdminError::invalid(
            field,
            format!("provider kind `{}` is not supported by this build", p.kind),
        ));
    }
    Ok(p.kind.to_string())
}

fn models(field: &str, models: &[ModelIn]) -> AdminResult<Vec<ModelSpecRow>> {
    let mut out = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let (id, upstream) = match m {
            ModelIn::Id(id) => (id.clone(), None),
            ModelIn::Full { id, upstream } => (id.clone(), upstream.clone()),
        };
        if id.trim().is_empty() || upstream.as_deref().is_some_and(|u| u.trim().is_empty()) {
            return Err(AdminError::invalid(
                format!("{field}[{i}]"),
                "model id must not be empty",
            ));
        }
        out.push(ModelSpecRow {
            upstream: upstream.filter(|u| u != &id),
            id,
        });
    }
    Ok(out)
}

/// Extra headers, checked and stored encrypted (none for `null` or `{}`).
fn headers(store: &Store, h: Option<&BTreeMap<String, String>>) -> AdminResult<Option<String>> {
    let Some(map) = h.filter(|m| !m.is_empty()) else {
        return Ok(None);
    };
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
    let text =
        serde_json::to_string(map).map_err(|_| AdminError::internal("cannot encode headers"))?;
    let ct = store
        .key
        .encrypt(&text)
        .map_err(|_| AdminError::internal("cannot encrypt headers"))?;
    Ok(Some(ct))
}

/// Applies a body to a row and validates the result; returns the changed
/// field names (for the audit log).
fn apply(
    st: &AppState,
    store: &Store,
    row: &mut ProviderRow,
    b: &ProviderBody,
) -> AdminResult<Changes> {
    let mut c = Changes::default();
    c.check("name", b.name.as_deref(), &mut row.name, |f, n| {
        check_name(f, n)?;
        Ok(n.to_string())
    })?;
    c.check("kind", b.kind.as_deref(), &mut row.kind, kind)?;
    c.check(
        "base_url",
        b.base_url.as_ref(),
        &mut row.base_url,
        |f, u| {
            u.as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|u| {
                    llm_link_gateway::config::normalize_base_url(u)
                        .map_err(|m| AdminError::invalid(f, m))
                })
                .transpose()
        },
    )?;
    c.copy("description", b.description.clone(), &mut row.description);
    c.copy("enabled", b.enabled, &mut row.enabled);
    c.check("priority", b.priority, &mut row.priority, |f, p| {
        check_range(f, p, -1_000_000, 1_000_000)
    })?;
    c.check("weight", b.weight, &mut row.weight, |f, w| {
        check_range(f, w, 0, 1_000_000)
    })?;
    c.check("models", b.models.as_deref(), &mut row.models, models)?;
    c.copy(
        "default_model",
        b.default_model
            .as_ref()
            .map(|d| d.clone().filter(|d| !d.trim().is_empty())),
        &mut row.default_model,
    );
    c.copy(
        "forward_any_model",
        b.forward_any_model,
        &mut row.forward_any_model,
    );
    c.copy("passthrough", b.passthrough, &mut row.passthrough);
    c.copy("responses", b.responses, &mut row.responses);
    c.check(
        "key_usage_mode",
        b.key_usage_mode.as_deref(),
        &mut row.key_usage_mode,
        key_usage_mode,
    )?;
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
                *slot = v.as_ref().map(|d| d.millis(name)).transpose()?;
            }
        }
        c.mark("timeouts");
    }
    if let Some(l) = &b.limits {
        for (name, v, slot) in [
            (
                "limits.max_concurrency",
                l.max_concurrency,
                &mut row.max_concurrency,
            ),
            ("limits.rpm", l.rpm, &mut row.rpm_limit),
            ("limits.tpm", l.tpm, &mut row.tpm_limit),
        ] {
            if let Some(v) = v {
                *slot = v
                    .map(|n| check_range(name, n, 1, i64::from(u32::MAX)))
                    .transpose()?;
            }
        }
        c.mark("limits");
    }
    c.check("headers", b.headers.as_ref(), &mut row.headers, |_, h| {
        headers(store, h.as_ref())
    })?;
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
    Ok(c)
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
            masked(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
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
        "responses": p.responses.unwrap_or_else(|| presets::find(&p.kind).is_some_and(|pr| pr.responses_api)),
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
        "responses": p.meta.responses.unwrap_or(p.preset.responses_api),
        "key_usage_mode": p.meta.key_usage,
        "timeouts": timeouts_json(ms(p.timeouts.connect), ms(p.timeouts.first_byte), ms(p.timeouts.idle)),
        "limits": {"max_concurrency": p.meta.max_concurrency, "rpm": p.meta.rpm_limit, "tpm": p.meta.tpm_limit},
        "headers": masked(p.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        "keys": keys,
        "created_at": null,
        "updated_at": null,
    })
}

enum Found {
    Db(ProviderRow),
    Base(ProviderConfig),
}

/// A database provider by id or name, else a file or command-line one by name.
async fn find(st: &AppState, id: &str) -> AdminResult<Found> {
    if let Some(store) = &st.store {
        if let Some(r) = resource::lookup::<ProviderRow>(store, id).await? {
            return Ok(Found::Db(r));
        }
    }
    if let Ident::Name(n) = resource::ident(id) {
        if let Some(p) = st.layers.base().providers.into_iter().find(|p| p.name == n) {
            return Ok(Found::Base(p));
        }
    }
    Err(ProviderRow::missing(&id.to_string()))
}

/// A database provider: one declared elsewhere is read-only here.
pub async fn find_db(st: &AppState, id: &str) -> AdminResult<ProviderRow> {
    match find(st, id).await? {
        Found::Db(r) => Ok(r),
        Found::Base(p) => Err(AdminError::read_only(format!(
            "provider `{}` is declared in the {}; change it there",
            p.name,
            p.origin.as_str()
        ))),
    }
}

impl Table for ProviderRow {
    const NOUN: &'static str = "provider";

    async fn all(tx: &mut Tx) -> Stored<Vec<ProviderRow>> {
        tx.providers().await
    }

    async fn by_id(tx: &mut Tx, id: i64) -> Stored<Option<ProviderRow>> {
        tx.provider(id).await
    }

    async fn by_name(tx: &mut Tx, name: &str) -> Stored<Option<ProviderRow>> {
        tx.provider_by_name(name).await
    }
}

impl Resource for ProviderRow {
    type Scope = ();
    type Path = String;
    type Body = ProviderBody;
    type Children = Vec<KeyRow>;
    const KIND: &'static str = "provider";
    const LIST: &'static str = "providers";

    fn id(&self) -> i64 {
        self.id
    }

    fn target(&self) -> String {
        format!("provider {} ({})", self.id, self.name)
    }

    fn missing(id: &String) -> AdminError {
        AdminError::not_found(format!("no provider `{id}`"))
    }

    /// File and command-line providers first, then the database's; works
    /// without a database too.
    async fn list(st: &AppState, _: &(), q: &HashMap<String, String>) -> AdminResult<Vec<Value>> {
        let q = Filters::new(q, &["source", "kind", "type", "enabled", "name", "q"])?;
        let enabled = q.flag("enabled")?;
        let kind = q.get("kind").or_else(|| q.get("type"));
        let name = q.get("name").or_else(|| q.get("q")).map(str::to_lowercase);
        let src = q.one_of(
            "source",
            &["database", "file", "cli", "env"],
            "must be database, file, cli or env",
        )?;
        let composed = st.layers.composed().ok();
        let mut out: Vec<Value> = st
            .layers
            .base()
            .providers
            .iter()
            .map(|p| base_json(composed.as_ref(), p))
            .collect();
        if let Some(store) = &st.store {
            let rows = all_with_keys::<ProviderRow>(store, Owner::Provider).await?;
            let db = st.layers.db();
            out.extend(rows.iter().map(|(p, ks)| provider_json(&db, store, p, ks)));
        }
        out.retain(|v| {
            src.is_none_or(|s| v["source"] == s)
                && kind.is_none_or(|k| v["kind"] == k)
                && enabled.is_none_or(|e| v["enabled"] == e)
                && name.as_ref().is_none_or(|n| {
                    v["name"]
                        .as_str()
                        .is_some_and(|x| x.to_lowercase().contains(n))
                })
        });
        Ok(out)
    }

    async fn find(st: &AppState, _: &Store, id: &String) -> AdminResult<ProviderRow> {
        find_db(st, id).await
    }

    /// A file or command-line provider reads without a database.
    async fn read(st: &AppState, id: &String) -> AdminResult<Value> {
        match find(st, id).await? {
            Found::Base(p) => Ok(base_json(st.layers.composed().ok().as_ref(), &p)),
            Found::Db(r) => r.show(st, rest::store(st)?).await,
        }
    }

    async fn show(&self, st: &AppState, store: &Store) -> AdminResult<Value> {
        let (row, keys) = with_keys::<ProviderRow>(store, Owner::Provider(self.id)).await?;
        Ok(provider_json(&st.layers.db(), store, &row, &keys))
    }

    fn deleted(&self) -> Value {
        json!({"status": "deleted", "id": self.id, "name": self.name})
    }

    /// `api_key` (one key) and `keys` are created with the provider.
    async fn create(
        st: &AppState,
        store: &Store,
        _: &(),
        b: &ProviderBody,
    ) -> AdminResult<(ProviderRow, Vec<KeyRow>)> {
        if b.name.is_none() {
            return Err(AdminError::invalid("name", "this field is required"));
        }
        if b.kind.is_none() {
            return Err(AdminError::invalid("kind", "this field is required"));
        }
        let mut row = empty_row();
        apply(st, store, &mut row, b)?;
        let mut keys = Vec::new();
        if let Some(k) = &b.api_key {
            keys.push(new_key(store, "api_", &KeyBody::secret(k), None)?);
        }
        for (i, k) in b.keys.iter().flatten().enumerate() {
            keys.push(new_key(store, &format!("keys[{i}]."), k, None)?);
        }
        Ok((row, keys))
    }

    fn updatable(b: &ProviderBody) -> AdminResult<()> {
        if b.keys.is_some() {
            return Err(AdminError::invalid(
                "keys",
                "manage keys under /api/providers/{id}/keys",
            ));
        }
        Ok(())
    }

    async fn patch(
        &mut self,
        st: &AppState,
        store: &Store,
        b: &ProviderBody,
    ) -> AdminResult<Changes> {
        let changed = apply(st, store, self, b)?;
        self.updated_at = now_ms();
        Ok(changed)
    }

    async fn taken(&self, tx: &mut Tx, before: Option<&ProviderRow>) -> AdminResult<()> {
        let before = before.map(|b| b.name.as_str());
        name_free::<ProviderRow>(tx, &self.name, before, "a provider").await
    }

    async fn insert(&mut self, tx: &mut Tx, mut keys: Vec<KeyRow>) -> AdminResult<Value> {
        self.id = tx.insert_provider(self).await?;
        let hints = insert_keys(tx, Owner::Provider(self.id), &mut keys).await?;
        Ok(json!({"kind": self.kind, "keys": hints}))
    }

    /// `api_key` replaces the provider's only key (or adds one to none).
    async fn update(
        &self,
        tx: &mut Tx,
        store: &Store,
        b: &ProviderBody,
        mut changed: Changes,
    ) -> AdminResult<Option<Value>> {
        if !tx.update_provider(self).await? {
            return Ok(None);
        }
        if let Some(k) = &b.api_key {
            let kb = KeyBody::secret(k);
            match Owner::Provider(self.id).keys(tx).await?.as_slice() {
                [] => {
                    let key = new_key(store, "api_", &kb, Some(Owner::Provider(self.id)))?;
                    tx.insert_key(&key).await?;
                }
                [one] => {
                    let mut one = one.clone();
                    patch_key(store, "api_", &mut one, &kb)?;
                    tx.update_key(&one).await?;
                }
                many => {
                    return Err(AdminError::conflict(
                        "api_key",
                        format!(
                            "provider `{}` has {} keys; change them under /api/providers/{}/keys",
                            self.name,
                            many.len(),
                            self.id
                        ),
                    ))
                }
            }
            changed.mark("api_key");
        }
        Ok(Some(json!({ "changed": changed })))
    }

    async fn delete(&self, tx: &mut Tx) -> AdminResult<Option<Value>> {
        Ok(tx.delete_provider(self.id).await?.then(|| json!({})))
    }
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
            let keys = Owner::Provider(row.id).read(store).await?;
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
