//! `/api/v1/llm-models`: the model catalog, record for record in the shape
//! desktop and team back ends already use (name, model_id, provider, type,
//! description, status, base_url, auth_type, key_usage_mode, api_keys,
//! supports_vision, supports_tools, max_tokens, context_window, prices per
//! million tokens, RPM/TPM limits).
//!
//! `provider` names a configured provider (the model is then served by it)
//! or a provider kind; a model with its own `base_url` or `api_keys` is
//! served by a provider of its own (`catalog-<id>`). Only `enabled` models
//! are served. `api_keys` come back masked; in an update, an item with an
//! `id` and no `key` keeps that key, and the list replaces the model's keys.

use super::providers::{key_json, key_usage_mode, new_key, patch_key, KeyBody};
use super::rest::{
    self, begin, body, check_range, commit, nullable, Actor, AdminError, AdminResult,
};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use llm_link_gateway::presets;
use llm_link_store::rows::{KeyRow, ModelRow};
use llm_link_store::{now_ms, rfc3339, Store};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/llm-models", get(list).post(create))
        .route(
            "/api/v1/llm-models/{id}",
            get(read).put(update).patch(update).delete(remove),
        )
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelBody {
    name: Option<String>,
    model_id: Option<String>,
    provider: Option<String>,
    #[serde(rename = "type")]
    model_type: Option<String>,
    description: Option<String>,
    status: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    base_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    upstream_model: Option<Option<String>>,
    auth_type: Option<String>,
    key_usage_mode: Option<String>,
    api_keys: Option<Vec<KeyBody>>,
    supports_vision: Option<bool>,
    supports_tools: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    max_tokens: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    context_window: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    input_price: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    output_price: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    rpm_limit: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    tpm_limit: Option<Option<i64>>,
    #[allow(dead_code)]
    id: Option<IgnoredAny>,
    #[allow(dead_code)]
    served_by: Option<IgnoredAny>,
    #[allow(dead_code)]
    created_at: Option<IgnoredAny>,
    #[allow(dead_code)]
    updated_at: Option<IgnoredAny>,
}

const STATUSES: &[&str] = &["enabled", "disabled", "inactive"];
const AUTH_TYPES: &[&str] = &["api_key", "bearer", "none"];

fn empty_row() -> ModelRow {
    let now = now_ms();
    ModelRow {
        id: 0,
        name: String::new(),
        model_id: String::new(),
        provider: String::new(),
        model_type: "chat".into(),
        description: String::new(),
        status: "enabled".into(),
        base_url: None,
        upstream_model: None,
        auth_type: "api_key".into(),
        key_usage_mode: "single".into(),
        context_window: None,
        max_tokens: None,
        supports_vision: false,
        supports_tools: false,
        input_price: None,
        output_price: None,
        rpm_limit: None,
        tpm_limit: None,
        created_at: now,
        updated_at: now,
    }
}

fn text(field: &str, v: &str, max: usize) -> AdminResult<String> {
    let t = v.trim();
    if t.is_empty() || t.chars().count() > max {
        return Err(AdminError::invalid(
            field,
            format!("must be 1-{max} characters"),
        ));
    }
    Ok(t.to_string())
}

fn price(field: &str, v: Option<f64>) -> AdminResult<Option<f64>> {
    match v {
        Some(p) if !(p.is_finite() && p >= 0.0) => Err(AdminError::invalid(
            field,
            "must be a non-negative number (per million tokens)",
        )),
        other => Ok(other),
    }
}

/// Applies a body to a record and validates the result. `has_keys`: the
/// record will have keys of its own.
fn patch(
    st: &AppState,
    row: &mut ModelRow,
    b: &ModelBody,
    has_keys: bool,
) -> AdminResult<Vec<&'static str>> {
    let mut changed = Vec::new();
    if let Some(v) = &b.name {
        row.name = text("name", v, 200)?;
        changed.push("name");
    }
    if let Some(v) = &b.model_id {
        row.model_id = text("model_id", v, 200)?;
        changed.push("model_id");
    }
    if let Some(v) = &b.provider {
        row.provider = text("provider", v, 100)?;
        changed.push("provider");
    }
    if let Some(v) = &b.model_type {
        row.model_type = text("type", v, 50)?;
        changed.push("type");
    }
    if let Some(v) = &b.description {
        row.description = v.clone();
        changed.push("description");
    }
    if let Some(v) = &b.status {
        if !STATUSES.contains(&v.as_str()) {
            return Err(AdminError::invalid(
                "status",
                "must be enabled, disabled or inactive",
            ));
        }
        row.status = v.clone();
        changed.push("status");
    }
    if let Some(u) = &b.base_url {
        row.base_url = match u.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            None => None,
            Some(u) => {
                let u = llm_link_gateway::config::normalize_base_url(u)
                    .map_err(|m| AdminError::invalid("base_url", m))?;
                super::providers::check_not_self(st, "base_url", &u)?;
                Some(u)
            }
        };
        changed.push("base_url");
    }
    if let Some(u) = &b.upstream_model {
        row.upstream_model = u.clone().filter(|u| !u.trim().is_empty());
        changed.push("upstream_model");
    }
    if let Some(v) = &b.auth_type {
        if !AUTH_TYPES.contains(&v.as_str()) {
            return Err(AdminError::invalid(
                "auth_type",
                "must be api_key, bearer or none",
            ));
        }
        row.auth_type = v.clone();
        changed.push("auth_type");
    }
    if let Some(v) = &b.key_usage_mode {
        row.key_usage_mode = key_usage_mode("key_usage_mode", v)?;
        changed.push("key_usage_mode");
    }
    if let Some(v) = b.supports_vision {
        row.supports_vision = v;
        changed.push("supports_vision");
    }
    if let Some(v) = b.supports_tools {
        row.supports_tools = v;
        changed.push("supports_tools");
    }
    for (name, v, slot) in [
        ("max_tokens", &b.max_tokens, &mut row.max_tokens),
        ("context_window", &b.context_window, &mut row.context_window),
        ("rpm_limit", &b.rpm_limit, &mut row.rpm_limit),
        ("tpm_limit", &b.tpm_limit, &mut row.tpm_limit),
    ] {
        if let Some(v) = v {
            *slot = match v {
                None => None,
                Some(n) => Some(check_range(name, *n, 1, i64::from(u32::MAX))?),
            };
            changed.push(name);
        }
    }
    if let Some(v) = b.input_price {
        row.input_price = price("input_price", v)?;
        changed.push("input_price");
    }
    if let Some(v) = b.output_price {
        row.output_price = price("output_price", v)?;
        changed.push("output_price");
    }
    // The whole record must make sense.
    if row.name.is_empty() {
        return Err(AdminError::invalid("name", "this field is required"));
    }
    if row.model_id.is_empty() {
        return Err(AdminError::invalid("model_id", "this field is required"));
    }
    if row.provider.is_empty() {
        return Err(AdminError::invalid("provider", "this field is required"));
    }
    let own = row.base_url.is_some() || has_keys;
    let kind = presets::find(&row.provider).filter(|p| p.supported);
    let is_name = st
        .layers
        .base()
        .providers
        .iter()
        .any(|p| p.name == row.provider)
        || st.layers.db().names.contains(&row.provider);
    if own || !is_name {
        let p = kind.ok_or_else(|| {
            AdminError::invalid(
                "provider",
                if own {
                    format!(
                        "a model with its own base_url or api_keys needs a provider kind here; known kinds: {}",
                        presets::kinds()
                    )
                } else {
                    format!(
                        "`{}` is neither a configured provider nor a provider kind; known kinds: {}",
                        row.provider,
                        presets::kinds()
                    )
                },
            )
        })?;
        if row.base_url.is_none() && p.base_url.is_empty() {
            return Err(AdminError::invalid(
                "base_url",
                format!("provider kind `{}` needs a base_url", p.kind),
            ));
        }
        row.provider = p.kind.to_string();
    }
    Ok(changed)
}

fn model_json(st: &AppState, m: &ModelRow, keys: &[KeyRow]) -> Value {
    let served_by = st
        .runtime()
        .catalog
        .models
        .iter()
        .find(|c| c.id == m.id)
        .map(|c| c.served_by.clone());
    json!({
        "id": m.id,
        "name": m.name,
        "model_id": m.model_id,
        "provider": m.provider,
        "type": m.model_type,
        "description": m.description,
        "status": m.status,
        "base_url": m.base_url,
        "upstream_model": m.upstream_model,
        "auth_type": m.auth_type,
        "key_usage_mode": m.key_usage_mode,
        "api_keys": keys.iter().map(key_json).collect::<Vec<_>>(),
        "supports_vision": m.supports_vision,
        "supports_tools": m.supports_tools,
        "max_tokens": m.max_tokens,
        "context_window": m.context_window,
        "input_price": m.input_price,
        "output_price": m.output_price,
        "rpm_limit": m.rpm_limit,
        "tpm_limit": m.tpm_limit,
        "served_by": served_by,
        "created_at": rfc3339(m.created_at),
        "updated_at": rfc3339(m.updated_at),
    })
}

async fn find(store: &Store, id: &str) -> AdminResult<ModelRow> {
    let n: i64 = id
        .parse()
        .map_err(|_| AdminError::not_found(format!("no model `{id}`")))?;
    let mut tx = store.db.begin_read().await?;
    let m = tx.model(n).await?;
    tx.rollback().await?;
    m.ok_or_else(|| AdminError::not_found(format!("no model {id}")))
}

async fn respond(st: &AppState, store: &Store, id: i64, status: StatusCode) -> AdminResult {
    let mut tx = store.db.begin_read().await?;
    let m = tx
        .model(id)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no model {id}")))?;
    let keys = tx.model_keys(id).await?;
    tx.rollback().await?;
    Ok((status, Json(model_json(st, &m, &keys))).into_response())
}

async fn list(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> AdminResult {
    let store = rest::store(&st)?;
    let q = rest::query(&q, &["provider", "type", "status", "q"])?;
    if let Some(s) = q.get("status") {
        if !STATUSES.contains(&s.as_str()) {
            return Err(AdminError::invalid(
                "query.status",
                "must be enabled, disabled or inactive",
            ));
        }
    }
    let mut tx = store.db.begin_read().await?;
    let models = tx.models().await?;
    let keys = tx.keys().await?;
    tx.rollback().await?;
    let needle = q.get("q").map(|s| s.to_lowercase());
    let data: Vec<Value> = models
        .iter()
        .filter(|m| {
            q.get("provider").is_none_or(|p| &m.provider == p)
                && q.get("type").is_none_or(|t| &m.model_type == t)
                && q.get("status").is_none_or(|s| &m.status == s)
                && needle.as_ref().is_none_or(|n| {
                    m.name.to_lowercase().contains(n) || m.model_id.to_lowercase().contains(n)
                })
        })
        .map(|m| {
            let ks: Vec<KeyRow> = keys
                .iter()
                .filter(|k| k.llm_model_id == Some(m.id))
                .cloned()
                .collect();
            model_json(&st, m, &ks)
        })
        .collect();
    let total = data.len();
    Ok(Json(json!({"data": data, "total": total})).into_response())
}

async fn read(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> AdminResult {
    let store = rest::store(&st)?;
    let m = find(store, &id).await?;
    respond(&st, store, m.id, StatusCode::OK).await
}

fn conflict_model_id(m: &ModelRow) -> AdminError {
    AdminError::conflict(
        "model_id",
        format!(
            "provider `{}` already has a model `{}` in the catalog",
            m.provider, m.model_id
        ),
    )
}

async fn create(
    State(st): State<Arc<AppState>>,
    who: Option<Extension<Actor>>,
    raw: Bytes,
) -> AdminResult {
    let store = rest::store(&st)?;
    let b: ModelBody = body(&raw)?;
    let mut row = empty_row();
    patch(
        &st,
        &mut row,
        &b,
        b.api_keys.as_ref().is_some_and(|k| !k.is_empty()),
    )?;
    let mut keys = Vec::new();
    for (i, k) in b.api_keys.iter().flatten().enumerate() {
        if k.id.is_some() {
            return Err(AdminError::invalid(
                format!("api_keys[{i}].id"),
                "a new model has no keys to keep",
            ));
        }
        keys.push(new_key(store, &format!("api_keys[{i}]."), k, None, None)?);
    }
    let mut w = begin(store).await?;
    if w.tx
        .models()
        .await?
        .iter()
        .any(|m| m.provider == row.provider && m.model_id == row.model_id)
    {
        return Err(conflict_model_id(&row));
    }
    let id = w.tx.insert_model(&row).await?;
    for k in &mut keys {
        k.llm_model_id = Some(id);
        k.id = w.tx.insert_key(k).await?;
    }
    commit(
        w,
        &st,
        who,
        "llm_model.create",
        &format!("llm-model {id} ({}/{})", row.provider, row.model_id),
        &json!({"api_keys": keys.iter().map(|k| &k.hint).collect::<Vec<_>>()}),
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
    let b: ModelBody = body(&raw)?;
    let current = find(store, &id).await?;
    let mut row = current.clone();
    let has_keys = match &b.api_keys {
        Some(list) => !list.is_empty(),
        None => {
            let mut tx = store.db.begin_read().await?;
            let n = tx.model_keys(current.id).await?.len();
            tx.rollback().await?;
            n > 0
        }
    };
    let mut changed = patch(&st, &mut row, &b, has_keys)?;
    row.updated_at = now_ms();
    let mut w = begin(store).await?;
    if (row.provider != current.provider || row.model_id != current.model_id)
        && w.tx
            .models()
            .await?
            .iter()
            .any(|m| m.id != row.id && m.provider == row.provider && m.model_id == row.model_id)
    {
        return Err(conflict_model_id(&row));
    }
    if !w.tx.update_model(&row).await? {
        return Err(AdminError::not_found(format!("no model {id}")));
    }
    let mut hints = Vec::new();
    if let Some(list) = &b.api_keys {
        // The list replaces the model's keys; `{id}` items keep (and may update) a key.
        let existing = w.tx.model_keys(row.id).await?;
        let mut keep = Vec::new();
        for (i, k) in list.iter().enumerate() {
            let at = format!("api_keys[{i}].");
            match k.id {
                Some(kid) => {
                    let mut old =
                        existing
                            .iter()
                            .find(|e| e.id == kid)
                            .cloned()
                            .ok_or_else(|| {
                                AdminError::invalid(
                                    format!("{at}id"),
                                    format!("this model has no key {kid}"),
                                )
                            })?;
                    patch_key(store, &at, &mut old, k)?;
                    w.tx.update_key(&old).await?;
                    hints.push(old.hint.clone());
                    keep.push(kid);
                }
                None => {
                    let key = new_key(store, &at, k, None, Some(row.id))?;
                    let kid = w.tx.insert_key(&key).await?;
                    hints.push(key.hint.clone());
                    keep.push(kid);
                }
            }
        }
        for e in existing.iter().filter(|e| !keep.contains(&e.id)) {
            w.tx.delete_key(e.id).await?;
        }
        changed.push("api_keys");
    }
    commit(
        w,
        &st,
        who,
        "llm_model.update",
        &format!("llm-model {} ({}/{})", row.id, row.provider, row.model_id),
        &json!({"changed": changed, "api_keys": hints}),
    )
    .await?;
    respond(&st, store, row.id, StatusCode::OK).await
}

async fn remove(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    who: Option<Extension<Actor>>,
) -> AdminResult<Response> {
    let store = rest::store(&st)?;
    let row = find(store, &id).await?;
    let mut w = begin(store).await?;
    if !w.tx.delete_model(row.id).await? {
        return Err(AdminError::not_found(format!("no model {id}")));
    }
    commit(
        w,
        &st,
        who,
        "llm_model.delete",
        &format!("llm-model {} ({}/{})", row.id, row.provider, row.model_id),
        &json!({}),
    )
    .await?;
    Ok(Json(json!({"status": "deleted", "id": row.id})).into_response())
}
