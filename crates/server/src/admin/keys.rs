//! Upstream keys: stored encrypted, shown only masked (by the hint kept at
//! write time), owned by a provider or by a catalog model. Holds what both
//! owners share — the key body and its validation, the masked JSON, rows
//! read with their keys ([`with_keys`]) — and the keys sub-resource,
//! `/api/providers/{id}/keys[/{key_id}]` ([`ProviderKey`]).

use super::providers::find_db;
use super::resource::{Changes, Resource, Stored, Table};
use super::rest::{self, check_range, AdminError, AdminResult};
use crate::state::AppState;
use llm_link_gateway::config::Secret;
use llm_link_store::rows::{KeyRow, ProviderRow};
use llm_link_store::{now_ms, rfc3339, Store, Tx};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

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

impl KeyBody {
    /// A body holding only a secret (a provider's `api_key` shorthand).
    pub fn secret(key: &str) -> KeyBody {
        KeyBody {
            key: Some(key.to_string()),
            ..KeyBody::default()
        }
    }
}

const KEY_STATUSES: &[&str] = &["enabled", "disabled", "cooling"];
/// How long a key set to `cooling` through the API rests.
const API_COOLDOWN_MS: i64 = 60_000;

/// Whose keys: a provider's or a catalog model's.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    Provider(i64),
    Model(i64),
}

impl Owner {
    fn id(self) -> i64 {
        match self {
            Owner::Provider(id) | Owner::Model(id) => id,
        }
    }

    pub fn owns(self, k: &KeyRow) -> bool {
        match self {
            Owner::Provider(id) => k.provider_id == Some(id),
            Owner::Model(id) => k.llm_model_id == Some(id),
        }
    }

    fn adopt(self, k: &mut KeyRow) {
        match self {
            Owner::Provider(id) => k.provider_id = Some(id),
            Owner::Model(id) => k.llm_model_id = Some(id),
        }
    }

    /// Its keys, in `tx`.
    pub async fn keys(self, tx: &mut Tx) -> Stored<Vec<KeyRow>> {
        match self {
            Owner::Provider(id) => tx.provider_keys(id).await,
            Owner::Model(id) => tx.model_keys(id).await,
        }
    }

    /// Its keys, read on their own.
    pub async fn read(self, store: &Store) -> AdminResult<Vec<KeyRow>> {
        let mut tx = store.db.begin_read().await?;
        let keys = self.keys(&mut tx).await?;
        tx.rollback().await?;
        Ok(keys)
    }
}

/// Row `owner` of table `R` and its keys, read together (404 `no <noun>
/// <id>` when gone).
pub async fn with_keys<R: Table>(store: &Store, owner: Owner) -> AdminResult<(R, Vec<KeyRow>)> {
    let id = owner.id();
    let mut tx = store.db.begin_read().await?;
    let row = R::by_id(&mut tx, id)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no {} {id}", R::NOUN)))?;
    let keys = owner.keys(&mut tx).await?;
    tx.rollback().await?;
    Ok((row, keys))
}

/// Every row of table `R` with its keys (`owner` says whose they are),
/// read together.
pub async fn all_with_keys<R: Table>(
    store: &Store,
    owner: fn(i64) -> Owner,
) -> AdminResult<Vec<(R, Vec<KeyRow>)>> {
    let mut tx = store.db.begin_read().await?;
    let rows = R::all(&mut tx).await?;
    let keys = tx.keys().await?;
    tx.rollback().await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let owner = owner(r.id());
            let own = keys.iter().filter(|k| owner.owns(k)).cloned().collect();
            (r, own)
        })
        .collect())
}

/// Inserts a new row's keys (validated with it); their masked hints, for
/// the audit log.
pub async fn insert_keys(tx: &mut Tx, owner: Owner, keys: &mut [KeyRow]) -> Stored<Vec<String>> {
    for k in keys.iter_mut() {
        owner.adopt(k);
        k.id = tx.insert_key(k).await?;
    }
    Ok(keys.iter().map(|k| k.hint.clone()).collect())
}

/// Validates a new key's fields and encrypts it. `at` prefixes field names
/// (`keys[0].`); `owner` is `None` when the owner is being created too.
pub fn new_key(store: &Store, at: &str, b: &KeyBody, owner: Option<Owner>) -> AdminResult<KeyRow> {
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
        provider_id: None,
        llm_model_id: None,
        label: String::new(),
        secret: encrypt(store, secret)?,
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
    if let Some(o) = owner {
        o.adopt(&mut row);
    }
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

fn encrypt(store: &Store, secret: &str) -> AdminResult<String> {
    store
        .key
        .encrypt(secret)
        .map_err(|_| AdminError::internal("cannot encrypt the key"))
}

/// Applies a key body to a row; the changed fields.
pub fn patch_key(store: &Store, at: &str, row: &mut KeyRow, b: &KeyBody) -> AdminResult<Changes> {
    let mut c = Changes::default();
    if let Some(k) = b.key.as_deref().map(str::trim) {
        if k.is_empty() {
            return Err(AdminError::invalid(format!("{at}key"), "must not be empty"));
        }
        check_secret(&format!("{at}key"), k)?;
        row.secret = encrypt(store, k)?;
        row.hint = Secret::new(k).masked();
        row.last_error = None;
        row.last_error_at = None;
        c.mark("key");
    }
    c.check("label", b.label.as_deref(), &mut row.label, |f, l| {
        if l.len() > 200 {
            return Err(AdminError::invalid(
                format!("{at}{f}"),
                "must be at most 200 characters",
            ));
        }
        Ok(l.to_string())
    })?;
    if let Some(s) = &b.status {
        if !KEY_STATUSES.contains(&s.as_str()) {
            return Err(AdminError::invalid(
                format!("{at}status"),
                "must be enabled, disabled or cooling",
            ));
        }
        row.cooling_until = (s == "cooling").then(|| now_ms() + API_COOLDOWN_MS);
    }
    c.copy("status", b.status.clone(), &mut row.status);
    c.check("weight", b.weight, &mut row.weight, |f, w| {
        check_range(&format!("{at}{f}"), w, 0, 1_000_000)
    })?;
    row.updated_at = now_ms();
    Ok(c)
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

// ---- /api/providers/{id}/keys ------------------------------------------------------

/// A database provider's key. Its collection is the provider's `{id}`; a
/// file or command-line provider has none (409 `read_only`).
#[derive(Debug, Clone)]
pub struct ProviderKey {
    provider: ProviderRow,
    key: KeyRow,
}

impl Resource for ProviderKey {
    type Scope = String;
    type Path = (String, String);
    type Body = KeyBody;
    type Children = ();
    const KIND: &'static str = "provider_key";
    const LIST: &'static str = "keys";

    fn id(&self) -> i64 {
        self.key.id
    }

    fn target(&self) -> String {
        let p = &self.provider;
        format!("provider {} ({}) key {}", p.id, p.name, self.key.id)
    }

    fn missing((_, key_id): &(String, String)) -> AdminError {
        AdminError::not_found(format!("no key {key_id}"))
    }

    async fn list(
        st: &AppState,
        id: &String,
        _: &HashMap<String, String>,
    ) -> AdminResult<Vec<Value>> {
        let store = rest::store(st)?;
        let provider = find_db(st, id).await?;
        let keys = Owner::Provider(provider.id).read(store).await?;
        Ok(keys.iter().map(key_json).collect())
    }

    async fn find(
        st: &AppState,
        store: &Store,
        (id, key_id): &(String, String),
    ) -> AdminResult<Self> {
        let provider = find_db(st, id).await?;
        let kid: i64 = key_id
            .parse()
            .map_err(|_| AdminError::not_found(format!("no key `{key_id}`")))?;
        let mut tx = store.db.begin_read().await?;
        let key = tx.key(kid).await?;
        tx.rollback().await?;
        let key = key
            .filter(|k| k.provider_id == Some(provider.id))
            .ok_or_else(|| {
                AdminError::not_found(format!("provider `{}` has no key {key_id}", provider.name))
            })?;
        Ok(ProviderKey { provider, key })
    }

    async fn show(&self, _: &AppState, _: &Store) -> AdminResult<Value> {
        Ok(key_json(&self.key))
    }

    async fn create(
        st: &AppState,
        store: &Store,
        id: &String,
        b: &KeyBody,
    ) -> AdminResult<(Self, ())> {
        if b.id.is_some() {
            return Err(AdminError::invalid("id", "ids are assigned by llm-link"));
        }
        let provider = find_db(st, id).await?;
        let key = new_key(store, "", b, Some(Owner::Provider(provider.id)))?;
        Ok((ProviderKey { provider, key }, ()))
    }

    async fn patch(&mut self, _: &AppState, store: &Store, b: &KeyBody) -> AdminResult<Changes> {
        patch_key(store, "", &mut self.key, b)
    }

    async fn insert(&mut self, tx: &mut Tx, _: ()) -> AdminResult<Value> {
        self.key.id = tx.insert_key(&self.key).await?;
        Ok(json!({"key": self.key.hint, "status": self.key.status}))
    }

    async fn update(
        &self,
        tx: &mut Tx,
        _: &Store,
        _: &KeyBody,
        changed: Changes,
    ) -> AdminResult<Option<Value>> {
        let details = json!({"changed": changed, "key": self.key.hint});
        Ok(tx.update_key(&self.key).await?.then_some(details))
    }

    async fn delete(&self, tx: &mut Tx) -> AdminResult<Option<Value>> {
        let details = json!({"key": self.key.hint});
        Ok(tx.delete_key(self.key.id).await?.then_some(details))
    }
}
