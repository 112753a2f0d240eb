//! `/api/v1/llm-models`: the model catalog, record for record in the shape
//! desktop and team back ends already use (name, model_id, provider, type,
//! description, status, base_url, auth_type, key_usage_mode, api_keys,
//! supports_vision, supports_tools, max_tokens, context_window, prices per
//! million tokens (`input_price`, `output_price`, `cached_input_price`),
//! RPM/TPM limits).
//!
//! `provider` names a configured provider (the model is then served by it)
//! or a provider kind; a model with its own `base_url` or `api_keys` is
//! served by a provider of its own (`catalog-<id>`). Only `enabled` models
//! are served. `api_keys` come back masked; in an update, an item with an
//! `id` and no `key` keeps that key, and the list replaces the model's keys.

use super::keys::{
    all_with_keys, insert_keys, key_json, new_key, patch_key, with_keys, KeyBody, Owner,
};
use super::providers::key_usage_mode;
use super::resource::{self, lookup, Changes, Filters, Resource, Stored, Table};
use super::rest::{self, check_range, nullable, one_of, AdminError, AdminResult};
use crate::state::AppState;
use axum::Router;
use llm_link_gateway::presets;
use llm_link_store::rows::{KeyRow, ModelRow};
use llm_link_store::{now_ms, rfc3339, Store, Tx};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
    resource::routes::<ModelRow>("/api/v1/llm-models", "/api/v1/llm-models/{id}")
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBody {
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
    cached_input_price: Option<Option<f64>>,
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
        cached_input_price: None,
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
fn apply(st: &AppState, row: &mut ModelRow, b: &ModelBody, has_keys: bool) -> AdminResult<Changes> {
    let mut c = Changes::default();
    c.check("name", b.name.as_deref(), &mut row.name, |f, v| {
        text(f, v, 200)
    })?;
    c.check(
        "model_id",
        b.model_id.as_deref(),
        &mut row.model_id,
        |f, v| text(f, v, 200),
    )?;
    c.check(
        "provider",
        b.provider.as_deref(),
        &mut row.provider,
        |f, v| text(f, v, 100),
    )?;
    c.check(
        "type",
        b.model_type.as_deref(),
        &mut row.model_type,
        |f, v| text(f, v, 50),
    )?;
    c.copy("description", b.description.clone(), &mut row.description);
    c.check("status", b.status.as_deref(), &mut row.status, |f, v| {
        one_of(f, v, STATUSES, "must be enabled, disabled or inactive")
    })?;
    c.check(
        "base_url",
        b.base_url.as_ref(),
        &mut row.base_url,
        |f, u| match u.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            None => Ok(None),
            Some(u) => {
                let u = llm_link_gateway::config::normalize_base_url(u)
                    .map_err(|m| AdminError::invalid(f, m))?;
                super::providers::check_not_self(st, f, &u)?;
                Ok(Some(u))
            }
        },
    )?;
    c.copy(
        "upstream_model",
        b.upstream_model
            .as_ref()
            .map(|u| u.clone().filter(|u| !u.trim().is_empty())),
        &mut row.upstream_model,
    );
    c.check(
        "auth_type",
        b.auth_type.as_deref(),
        &mut row.auth_type,
        |f, v| one_of(f, v, AUTH_TYPES, "must be api_key, bearer or none"),
    )?;
    c.check(
        "key_usage_mode",
        b.key_usage_mode.as_deref(),
        &mut row.key_usage_mode,
        key_usage_mode,
    )?;
    c.copy(
        "supports_vision",
        b.supports_vision,
        &mut row.supports_vision,
    );
    c.copy("supports_tools", b.supports_tools, &mut row.supports_tools);
    for (name, v, slot) in [
        ("max_tokens", b.max_tokens, &mut row.max_tokens),
        ("context_window", b.context_window, &mut row.context_window),
        ("rpm_limit", b.rpm_limit, &mut row.rpm_limit),
        ("tpm_limit", b.tpm_limit, &mut row.tpm_limit),
    ] {
        c.check(name, v, slot, |f, n| {
            n.map(|n| check_range(f, n, 1, i64::from(u32::MAX)))
                .transpose()
        })?;
    }
    c.check("input_price", b.input_price, &mut row.input_price, price)?;
    c.check("output_price", b.output_price, &mut row.output_price, price)?;
    c.check(
        "cached_input_price",
        b.cached_input_price,
        &mut row.cached_input_price,
        price,
    )?;
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
    Ok(c)
}

/// A catalog model's public fields: what the team API shows any caller.
pub fn public_json(m: &ModelRow) -> Value {
    json!({
        "id": m.id,
        "name": m.name,
        "model_id": m.model_id,
        "provider": m.provider,
        "type": m.model_type,
        "description": m.description,
        "supports_vision": m.supports_vision,
        "supports_tools": m.supports_tools,
        "max_tokens": m.max_tokens,
        "context_window": m.context_window,
        "input_price": m.input_price,
        "output_price": m.output_price,
        "cached_input_price": m.cached_input_price,
        "rpm_limit": m.rpm_limit,
        "tpm_limit": m.tpm_limit,
    })
}

fn model_json(st: &AppState, m: &ModelRow, keys: &[KeyRow]) -> Value {
    let served_by = st
        .runtime()
        .catalog
        .models
        .iter()
        .find(|c| c.id == m.id)
        .map(|c| c.served_by.clone());
    let mut v = public_json(m);
    for (k, x) in [
        ("status", json!(m.status)),
        ("base_url", json!(m.base_url)),
        ("upstream_model", json!(m.upstream_model)),
        ("auth_type", json!(m.auth_type)),
        ("key_usage_mode", json!(m.key_usage_mode)),
        (
            "api_keys",
            json!(keys.iter().map(key_json).collect::<Vec<_>>()),
        ),
        ("served_by", json!(served_by)),
        ("created_at", json!(rfc3339(m.created_at))),
        ("updated_at", json!(rfc3339(m.updated_at))),
    ] {
        v[k] = x;
    }
    v
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

impl Table for ModelRow {
    const NOUN: &'static str = "model";

    async fn all(tx: &mut Tx) -> Stored<Vec<ModelRow>> {
        tx.models().await
    }

    async fn by_id(tx: &mut Tx, id: i64) -> Stored<Option<ModelRow>> {
        tx.model(id).await
    }
}

impl Resource for ModelRow {
    type Scope = ();
    type Path = String;
    type Body = ModelBody;
    type Children = Vec<KeyRow>;
    const KIND: &'static str = "llm_model";
    const LIST: &'static str = "data";

    fn id(&self) -> i64 {
        self.id
    }

    fn target(&self) -> String {
        format!(
            "llm-model {} ({}/{})",
            self.id, self.provider, self.model_id
        )
    }

    fn missing(id: &String) -> AdminError {
        AdminError::not_found(format!("no model {id}"))
    }

    async fn list(st: &AppState, _: &(), q: &HashMap<String, String>) -> AdminResult<Vec<Value>> {
        let store = rest::store(st)?;
        let q = Filters::new(q, &["provider", "type", "status", "q"])?;
        let status = q.one_of("status", STATUSES, "must be enabled, disabled or inactive")?;
        let models = all_with_keys::<ModelRow>(store, Owner::Model).await?;
        let needle = q.get("q").map(str::to_lowercase);
        Ok(models
            .iter()
            .filter(|(m, _)| {
                q.get("provider").is_none_or(|p| m.provider == p)
                    && q.get("type").is_none_or(|t| m.model_type == t)
                    && status.is_none_or(|s| m.status == s)
                    && needle.as_ref().is_none_or(|n| {
                        m.name.to_lowercase().contains(n) || m.model_id.to_lowercase().contains(n)
                    })
            })
            .map(|(m, keys)| model_json(st, m, keys))
            .collect())
    }

    /// By id only: catalog records have no unique name.
    async fn find(_: &AppState, store: &Store, id: &String) -> AdminResult<ModelRow> {
        if id.parse::<i64>().is_err() {
            return Err(AdminError::not_found(format!("no model `{id}`")));
        }
        lookup(store, id).await?.ok_or_else(|| Self::missing(id))
    }

    async fn show(&self, st: &AppState, store: &Store) -> AdminResult<Value> {
        let (m, keys) = with_keys::<ModelRow>(store, Owner::Model(self.id)).await?;
        Ok(model_json(st, &m, &keys))
    }

    async fn create(
        st: &AppState,
        store: &Store,
        _: &(),
        b: &ModelBody,
    ) -> AdminResult<(ModelRow, Vec<KeyRow>)> {
        let mut row = empty_row();
        let has_keys = b.api_keys.as_ref().is_some_and(|k| !k.is_empty());
        apply(st, &mut row, b, has_keys)?;
        let mut keys = Vec::new();
        for (i, k) in b.api_keys.iter().flatten().enumerate() {
            if k.id.is_some() {
                return Err(AdminError::invalid(
                    format!("api_keys[{i}].id"),
                    "a new model has no keys to keep",
                ));
            }
            keys.push(new_key(store, &format!("api_keys[{i}]."), k, None)?);
        }
        Ok((row, keys))
    }

    async fn patch(&mut self, st: &AppState, store: &Store, b: &ModelBody) -> AdminResult<Changes> {
        let has_keys = match &b.api_keys {
            Some(list) => !list.is_empty(),
            None => !Owner::Model(self.id).read(store).await?.is_empty(),
        };
        let changed = apply(st, self, b, has_keys)?;
        self.updated_at = now_ms();
        Ok(changed)
    }

    /// One record per provider and model id.
    async fn taken(&self, tx: &mut Tx, before: Option<&ModelRow>) -> AdminResult<()> {
        let same = |m: &ModelRow| m.provider == self.provider && m.model_id == self.model_id;
        if before.is_some_and(same) {
            return Ok(());
        }
        let other = |m: &&ModelRow| before.is_none_or(|b| m.id != b.id);
        if tx.models().await?.iter().filter(other).any(same) {
            return Err(conflict_model_id(self));
        }
        Ok(())
    }

    async fn insert(&mut self, tx: &mut Tx, mut keys: Vec<KeyRow>) -> AdminResult<Value> {
        self.id = tx.insert_model(self).await?;
        let hints = insert_keys(tx, Owner::Model(self.id), &mut keys).await?;
        Ok(json!({ "api_keys": hints }))
    }

    /// An `api_keys` list replaces the model's keys; `{id}` items keep (and
    /// may update) a key.
    async fn update(
        &self,
        tx: &mut Tx,
        store: &Store,
        b: &ModelBody,
        mut changed: Changes,
    ) -> AdminResult<Option<Value>> {
        if !tx.update_model(self).await? {
            return Ok(None);
        }
        let mut hints = Vec::new();
        if let Some(list) = &b.api_keys {
            let existing = tx.model_keys(self.id).await?;
            let mut keep = Vec::new();
            for (i, k) in list.iter().enumerate() {
                let at = format!("api_keys[{i}].");
                let key =
                    match k.id {
                        Some(kid) => {
                            let mut old =
                                existing.iter().find(|e| e.id == kid).cloned().ok_or_else(
                                    || {
                                        AdminError::invalid(
                                            format!("{at}id"),
                                            format!("this model has no key {kid}"),
                                        )
                                    },
                                )?;
                            patch_key(store, &at, &mut old, k)?;
                            tx.update_key(&old).await?;
                            old
                        }
                        None => {
                            let mut key = new_key(store, &at, k, Some(Owner::Model(self.id)))?;
                            key.id = tx.insert_key(&key).await?;
                            key
                        }
                    };
                hints.push(key.hint);
                keep.push(key.id);
            }
            for e in existing.iter().filter(|e| !keep.contains(&e.id)) {
                tx.delete_key(e.id).await?;
            }
            changed.mark("api_keys");
        }
        Ok(Some(json!({"changed": changed, "api_keys": hints})))
    }

    async fn delete(&self, tx: &mut Tx) -> AdminResult<Option<Value>> {
        Ok(tx.delete_model(self.id).await?.then(|| json!({})))
    }
}
