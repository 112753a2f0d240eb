//! `/api/keys`: virtual keys (`llk-…`), the credentials clients present on
//! the model endpoints.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /api/keys` (`?user_id=`, `?status=`) | `{"keys": [...], "total": n}` |
//! | `POST /api/keys` | 201, the key with its one-time `"key": "llk-…"` |
//! | `GET /api/keys/{id}` | the key (never the key itself, never its hash) |
//! | `PATCH /api/keys/{id}` | the key; `null` clears a field |
//! | `DELETE /api/keys/{id}` | `{"id", "status": "revoked"}`: the row stays, so usage and audit keep its name |
//! | `POST /api/keys/{id}/rotate` | a new key for the same id and settings, shown once |
//!
//! A key is stored only as its keyed hash ([`identity::token_hash`] under
//! the install's token-hash key) and its hint (`llk-…abcd`); the clear key
//! is in the answer to a create or a rotate and nowhere else (not in the
//! audit log, not in the logs).
//!
//! Who may: the caller needs [`Permission::ManageKeys`] (403 `forbidden`
//! otherwise). An admin sees and manages every key and may give a key to
//! any user (`user_id`; `null` for a key of no user). A member sees only its
//! own keys — another's is 404, as if it did not exist — and a key it
//! creates is always its own.
//!
//! Every write is one transaction: the identity revision bumped (replicas
//! reload), the change, an audit row `key.create|update|revoke|rotate`;
//! after the commit the identities the request path looks keys up in are
//! reloaded, so a new key works and a revoked or rotated-away one stops
//! working at once.

use super::caller::Caller;
use super::resource::{Changes, Filters};
use super::rest::{self, body, nullable, AdminError, AdminResult};
use super::usage::parse_time;
use crate::apply;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use llm_link_gateway::identity::{self, Period, Permission};
use llm_link_store::identity::VirtualKeyRow;
use llm_link_store::{now_ms, rfc3339, Store, Tx};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::MutexGuard;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/keys", get(list).post(create))
        .route("/api/keys/{id}", get(read).patch(update).delete(revoke))
        .route("/api/keys/{id}/rotate", post(rotate))
}

/// The largest `rpm`, `tpm` and `max_concurrency`.
pub const MAX_LIMIT: i64 = 10_000_000;
/// The largest budget amount (the catalog's currency).
pub const MAX_BUDGET: f64 = 1e12;
/// The latest expiry: 9999-12-31T23:59:59.999Z.
const LATEST: i64 = 253_402_300_799_999;
/// The most model names one key may list.
const MAX_MODELS: usize = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetIn {
    amount: Option<f64>,
    period: Option<String>,
}

/// The create and update body. Absent: unchanged (or unset, in a create);
/// `null`: cleared. The read-back fields are accepted and ignored, so a
/// `GET` answer can be sent back as a `PATCH`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    user_id: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    models: Option<Option<Vec<String>>>,
    /// RFC 3339 text or Unix milliseconds.
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    rpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    tpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_concurrency: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    budget: Option<Option<BudgetIn>>,
    #[allow(dead_code)]
    id: Option<IgnoredAny>,
    #[allow(dead_code)]
    hint: Option<IgnoredAny>,
    #[allow(dead_code)]
    status: Option<IgnoredAny>,
    #[allow(dead_code)]
    created_at: Option<IgnoredAny>,
    #[allow(dead_code)]
    updated_at: Option<IgnoredAny>,
    #[allow(dead_code)]
    revoked_at: Option<IgnoredAny>,
}

// ---- validation (no database) ------------------------------------------------

/// A key's name: 1–100 characters, no control characters (spaces allowed).
fn key_name(field: &'static str, name: Option<&String>) -> AdminResult<String> {
    let Some(name) = name else {
        return Err(AdminError::invalid(field, "must not be null"));
    };
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 100 || n.chars().any(char::is_control) {
        return Err(AdminError::invalid(
            field,
            "must be 1-100 characters, without control characters",
        ));
    }
    Ok(n.to_string())
}

/// Model names: non-empty strings without whitespace or control
/// characters (unknown names are allowed: the catalog may change);
/// duplicates dropped. An empty list is refused (`null` means any model).
fn models(field: &'static str, list: &[String]) -> AdminResult<Vec<String>> {
    if list.is_empty() {
        return Err(AdminError::invalid(
            field,
            "must list at least one model name (or be null for any model)",
        ));
    }
    if list.len() > MAX_MODELS {
        return Err(AdminError::invalid(
            field,
            format!("must list at most {MAX_MODELS} models"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let m = m.trim();
        if m.is_empty() || m.len() > 300 || m.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AdminError::invalid(
                format!("{field}[{i}]"),
                "must be a model name: 1-300 characters, without spaces",
            ));
        }
        if !out.iter().any(|o| o == m) {
            out.push(m.to_string());
        }
    }
    Ok(out)
}

/// An expiry: Unix milliseconds or RFC 3339, after `now` (or the one the
/// key has, so a read-back expired key can be sent back unchanged).
fn expiry(field: &'static str, v: &Value, now: i64, current: Option<i64>) -> AdminResult<i64> {
    let ms = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => parse_time(s),
        _ => None,
    }
    .ok_or_else(|| {
        AdminError::invalid(
            field,
            "must be an RFC 3339 time (2030-01-01T00:00:00Z) or Unix milliseconds",
        )
    })?;
    if ms > LATEST {
        return Err(AdminError::invalid(field, "must be before the year 10000"));
    }
    if ms <= now && Some(ms) != current {
        return Err(AdminError::invalid(field, "must be in the future"));
    }
    Ok(ms)
}

fn limit(field: &'static str, v: Option<i64>) -> AdminResult<Option<i64>> {
    v.map(|n| rest::check_range(field, n, 1, MAX_LIMIT))
        .transpose()
}

/// A budget: `amount` > 0 and a `period`; `null` is none.
fn budget(b: Option<&BudgetIn>) -> AdminResult<(Option<f64>, Option<String>)> {
    let Some(b) = b else {
        return Ok((None, None));
    };
    let amount = b
        .amount
        .ok_or_else(|| AdminError::invalid("budget.amount", "is required"))?;
    if !amount.is_finite() || amount <= 0.0 || amount > MAX_BUDGET {
        return Err(AdminError::invalid(
            "budget.amount",
            format!("must be greater than 0 and at most {MAX_BUDGET}"),
        ));
    }
    let period = b.period.as_deref().unwrap_or("");
    let period = Period::parse(period).ok_or_else(|| {
        AdminError::invalid(
            "budget.period",
            "must be one of daily, weekly, monthly, total",
        )
    })?;
    Ok((Some(amount), Some(period.as_str().to_string())))
}

/// Applies a body's settings (everything but `user_id`) to `row`, checking
/// each; the fields it set. Stamps `updated_at`.
pub fn apply_body(row: &mut VirtualKeyRow, b: &KeyBody, now: i64) -> AdminResult<Changes> {
    let mut c = Changes::default();
    c.check("name", b.name.as_ref(), &mut row.name, |f, n| {
        key_name(f, n.as_ref())
    })?;
    c.check("models", b.models.as_ref(), &mut row.models, |f, m| {
        m.as_deref().map(|l| models(f, l)).transpose()
    })?;
    let current = row.expires_at;
    c.check(
        "expires_at",
        b.expires_at.as_ref(),
        &mut row.expires_at,
        |f, v| v.as_ref().map(|v| expiry(f, v, now, current)).transpose(),
    )?;
    c.check("rpm", b.rpm, &mut row.rpm, limit)?;
    c.check("tpm", b.tpm, &mut row.tpm, limit)?;
    c.check(
        "max_concurrency",
        b.max_concurrency,
        &mut row.max_concurrency,
        limit,
    )?;
    if let Some(bud) = &b.budget {
        (row.budget_amount, row.budget_period) = budget(bud.as_ref())?;
        c.mark("budget");
    }
    row.updated_at = now;
    Ok(c)
}

/// The settings that differ between two versions of a key: what an update
/// audits as `changed` (a field sent back unchanged is not a change).
pub fn changed(before: &VirtualKeyRow, after: &VirtualKeyRow) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut diff = |field, differs: bool| {
        if differs {
            out.push(field);
        }
    };
    diff("name", before.name != after.name);
    diff("models", before.models != after.models);
    diff("expires_at", before.expires_at != after.expires_at);
    diff("rpm", before.rpm != after.rpm);
    diff("tpm", before.tpm != after.tpm);
    diff(
        "max_concurrency",
        before.max_concurrency != after.max_concurrency,
    );
    diff(
        "budget",
        before.budget_amount != after.budget_amount || before.budget_period != after.budget_period,
    );
    out
}

// ---- rendering -----------------------------------------------------------------

/// `active`, `expired` or `revoked`.
pub fn status(k: &VirtualKeyRow, now: i64) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    }
}

/// A key as the API shows it: never the key, never its hash.
pub fn show(k: &VirtualKeyRow, now: i64) -> Value {
    let budget = match (k.budget_amount, &k.budget_period) {
        (Some(a), p) => json!({"amount": a, "period": p.as_deref().unwrap_or("total")}),
        (None, _) => Value::Null,
    };
    json!({
        "id": k.id,
        "name": k.name,
        "hint": k.hint,
        "user_id": k.user_id,
        "models": k.models,
        "expires_at": k.expires_at.map(rfc3339),
        "rpm": k.rpm,
        "tpm": k.tpm,
        "max_concurrency": k.max_concurrency,
        "budget": budget,
        "status": status(k, now),
        "created_at": rfc3339(k.created_at),
        "updated_at": rfc3339(k.updated_at),
        "revoked_at": k.revoked_at.map(rfc3339),
    })
}

/// The answer to a create or a rotate: the key shown this once.
pub fn with_key(k: &VirtualKeyRow, key: &str, now: i64) -> Value {
    let mut v = show(k, now);
    v["key"] = Value::String(key.to_string());
    v
}

// ---- who may -----------------------------------------------------------------

/// The caller, when it may manage keys at all.
fn manager(who: Option<Extension<Caller>>) -> AdminResult<Caller> {
    let Some(Extension(c)) = who else {
        return Err(AdminError::unauthorized(
            "the key API needs a signed-in user or the admin token",
        ));
    };
    allowed(&c)?;
    Ok(c)
}

/// Refuses a caller without [`Permission::ManageKeys`] (or a non-admin
/// that is no user: it would own nothing).
fn allowed(c: &Caller) -> AdminResult<()> {
    if !c.can(Permission::ManageKeys) || (!c.is_admin() && c.user_id().is_none()) {
        return Err(AdminError::forbidden(
            "managing virtual keys needs the ManageKeys permission",
        ));
    }
    Ok(())
}

/// Whether the caller may see (and so manage) `k`.
fn sees(c: &Caller, k: &VirtualKeyRow) -> bool {
    c.is_admin() || (k.user_id.is_some() && k.user_id == c.user_id())
}

/// Who a new key belongs to: an admin names anyone (or `null`: nobody) and
/// defaults to itself; a member's key is always its own.
fn owner(c: &Caller, given: Option<Option<i64>>) -> AdminResult<Option<i64>> {
    match given {
        None => Ok(c.user_id()),
        Some(u) if c.is_admin() => Ok(u),
        Some(u) if u == c.user_id() => Ok(u),
        Some(_) => Err(AdminError::forbidden(
            "a member can create keys for itself only",
        )),
    }
}

/// The 404 for `{id}`. A key given where its id belongs (`key revoke
/// llk-…`, `DELETE /api/keys/llk-…`) is named by its hint, so the error
/// body (and whatever logs it) never holds the key.
fn no_key(id: &str) -> AdminError {
    let shown: String = if id.starts_with(identity::KEY_PREFIX) {
        identity::hint(id)
    } else {
        id.chars().take(40).collect()
    };
    AdminError::not_found(format!("no key with id `{shown}`"))
}

// ---- operations (the handlers and the CLI) ----------------------------------

/// A create or update body from JSON (the CLI builds one from its flags).
pub fn parse_body(v: &Value) -> AdminResult<KeyBody> {
    body(v.to_string().as_bytes())
}

/// The keys `c` may see.
pub async fn list_keys(store: &Store, c: &Caller) -> AdminResult<Vec<VirtualKeyRow>> {
    allowed(c)?;
    let mut tx = store.db.begin_read().await?;
    let rows = tx.virtual_keys().await?;
    tx.rollback().await?;
    Ok(rows.into_iter().filter(|k| sees(c, k)).collect())
}

/// The key `{id}` names, when the caller may see it (else 404).
async fn find(tx: &mut Tx, c: &Caller, id: &str) -> AdminResult<VirtualKeyRow> {
    let n: i64 = id.parse().map_err(|_| no_key(id))?;
    match tx.virtual_key(n).await? {
        Some(k) if sees(c, &k) => Ok(k),
        _ => Err(no_key(id)),
    }
}

fn revoked(k: &VirtualKeyRow) -> AdminResult<()> {
    if k.revoked_at.is_some() {
        return Err(AdminError::conflict(
            "id",
            format!("key {} is revoked; create a new key instead", k.id),
        ));
    }
    Ok(())
}

/// Starts a write on the key `{id}` names: the apply lock, the write
/// transaction and the key (404 when the caller may not see it).
async fn open<'a>(
    store: &'a Store,
    c: &Caller,
    id: &str,
) -> AdminResult<(MutexGuard<'a, ()>, Tx, VirtualKeyRow)> {
    allowed(c)?;
    let guard = store.apply_lock.lock().await;
    let mut tx = store.db.begin().await?;
    let row = find(&mut tx, c, id).await?;
    Ok((guard, tx, row))
}

/// Ends a write on an existing key: the identity revision bumped, the row
/// written (404 when it went meanwhile), then [`commit`].
async fn save(
    mut tx: Tx,
    c: &Caller,
    id: &str,
    verb: &str,
    k: &VirtualKeyRow,
    details: Details,
) -> AdminResult<()> {
    tx.bump_identity_revision().await?;
    if !tx.update_virtual_key(k).await? {
        return Err(no_key(id));
    }
    commit(tx, c, verb, k, details).await
}

/// What an audit row says besides the key's `name` and `hint`.
type Details = Vec<(&'static str, Value)>;

/// Ends a key write: the audit row (`{"name", "hint"}` and `details`),
/// then the commit. The identity revision was bumped in the same
/// transaction, so replicas (and servers, when the CLI wrote) reload within
/// seconds; [`reload`] applies it here at once.
async fn commit(
    mut tx: Tx,
    c: &Caller,
    verb: &str,
    k: &VirtualKeyRow,
    details: Details,
) -> AdminResult<()> {
    let mut all = serde_json::Map::new();
    all.insert("name".into(), json!(k.name));
    all.insert("hint".into(), json!(k.hint));
    all.extend(details.into_iter().map(|(f, v)| (f.to_string(), v)));
    tx.audit(
        &c.actor,
        &format!("key.{verb}"),
        &format!("key {}", k.id),
        &Value::Object(all),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Reloads the identities after a committed write, so a new key works and
/// a revoked or rotated-away one stops at once. A failure is logged, not
/// answered: the change is made (a new key must not be lost), and the
/// poller retries. Under the apply lock, so two writes' reloads never swap
/// in the wrong order (each reads after its own commit).
async fn reload(st: &AppState, store: &Store) {
    let _guard = store.apply_lock.lock().await;
    if let Err(e) = apply::reload_identities(st, store).await {
        tracing::warn!("a key change is saved, but reloading the keys failed: {e}");
    }
}

/// A key not yet inserted (id 0, no name) with no settings: any model, no
/// expiry, no limits, no budget.
fn unset(user_id: Option<i64>, key_hash: String, hint: String, now: i64) -> VirtualKeyRow {
    VirtualKeyRow {
        id: 0,
        name: String::new(),
        user_id,
        key_hash,
        hint,
        models: None,
        expires_at: None,
        rpm: None,
        tpm: None,
        max_concurrency: None,
        budget_amount: None,
        budget_period: None,
        revoked_at: None,
        created_at: now,
        updated_at: now,
    }
}

/// Creates a key as `c`; the row and the clear key (to show once).
pub async fn create_key(
    store: &Store,
    c: &Caller,
    b: &KeyBody,
) -> AdminResult<(VirtualKeyRow, String)> {
    allowed(c)?;
    if b.name.is_none() {
        return Err(AdminError::invalid("name", "is required"));
    }
    let user_id = owner(c, b.user_id)?;
    let now = now_ms();
    let key = identity::generate_key(&llm_link_store::crypto::random_bytes());
    let key_hash = identity::token_hash(&store.secrets.token_key, &key);
    let mut row = unset(user_id, key_hash, identity::hint(&key), now);
    let set = apply_body(&mut row, b, now)?;
    let _guard = store.apply_lock.lock().await;
    let mut tx = store.db.begin().await?;
    tx.bump_identity_revision().await?;
    if let Some(u) = user_id {
        if tx.user(u).await?.is_none() {
            return Err(AdminError::invalid(
                "user_id",
                format!("no user with id {u}"),
            ));
        }
    }
    row.id = tx.insert_virtual_key(&row).await?;
    let details = vec![("user_id", json!(row.user_id)), ("fields", json!(set))];
    commit(tx, c, "create", &row, details).await?;
    Ok((row, key))
}

/// Changes a key's settings as `c`; the key as it is now.
pub async fn update_key(
    store: &Store,
    c: &Caller,
    id: &str,
    b: &KeyBody,
) -> AdminResult<VirtualKeyRow> {
    let (_guard, tx, before) = open(store, c, id).await?;
    revoked(&before)?;
    if b.user_id.is_some_and(|u| u != before.user_id) {
        return Err(AdminError::invalid(
            "user_id",
            "cannot be changed; create a key for the other user instead",
        ));
    }
    let now = now_ms();
    let mut row = before.clone();
    apply_body(&mut row, b, now)?;
    let changed = changed(&before, &row);
    if changed.is_empty() {
        tx.rollback().await?;
        return Ok(before);
    }
    save(tx, c, id, "update", &row, vec![("changed", json!(changed))]).await?;
    Ok(row)
}

/// Revokes a key as `c` (a revoked one stays revoked; nothing is written).
pub async fn revoke_key(store: &Store, c: &Caller, id: &str) -> AdminResult<VirtualKeyRow> {
    let (_guard, tx, mut row) = open(store, c, id).await?;
    if row.revoked_at.is_some() {
        tx.rollback().await?;
        return Ok(row);
    }
    let now = now_ms();
    row.revoked_at = Some(now);
    row.updated_at = now;
    save(tx, c, id, "revoke", &row, vec![]).await?;
    Ok(row)
}

/// Gives a key a new secret as `c`; the row and the clear key.
pub async fn rotate_key(
    store: &Store,
    c: &Caller,
    id: &str,
) -> AdminResult<(VirtualKeyRow, String)> {
    let (_guard, tx, mut row) = open(store, c, id).await?;
    revoked(&row)?;
    let previous = row.hint.clone();
    let key = identity::generate_key(&llm_link_store::crypto::random_bytes());
    row.key_hash = identity::token_hash(&store.secrets.token_key, &key);
    row.hint = identity::hint(&key);
    row.updated_at = now_ms();
    let details = vec![("previous_hint", json!(previous))];
    save(tx, c, id, "rotate", &row, details).await?;
    Ok((row, key))
}

// ---- handlers -----------------------------------------------------------------

async fn list(
    State(st): State<Arc<AppState>>,
    who: Option<Extension<Caller>>,
    Query(q): Query<HashMap<String, String>>,
) -> AdminResult {
    let c = manager(who)?;
    let q = Filters::new(&q, &["user_id", "status"])?;
    let user = q.number("user_id")?;
    let want = q.one_of(
        "status",
        &["active", "expired", "revoked"],
        "must be one of active, expired, revoked",
    )?;
    let store = rest::store(&st)?;
    let now = now_ms();
    let keys: Vec<Value> = list_keys(store, &c)
        .await?
        .iter()
        .filter(|k| user.is_none_or(|u| k.user_id == Some(u)))
        .filter(|k| want.is_none_or(|s| status(k, now) == s))
        .map(|k| show(k, now))
        .collect();
    Ok(Json(json!({"total": keys.len(), "keys": keys})).into_response())
}

async fn read(
    State(st): State<Arc<AppState>>,
    who: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> AdminResult {
    let c = manager(who)?;
    let store = rest::store(&st)?;
    let mut tx = store.db.begin_read().await?;
    let k = find(&mut tx, &c, &id).await?;
    tx.rollback().await?;
    Ok(Json(show(&k, now_ms())).into_response())
}

async fn create(
    State(st): State<Arc<AppState>>,
    who: Option<Extension<Caller>>,
    raw: Bytes,
) -> AdminResult {
    let c = manager(who)?;
    let store = rest::store(&st)?;
    let b: KeyBody = body(&raw)?;
    let (row, key) = create_key(store, &c, &b).await?;
    reload(&st, store).await;
    let out = with_key(&row, &key, now_ms());
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn update(
    State(st): State<Arc<AppState>>,
    who: Option<Extension<Caller>>,
    Path(id): Path<String>,
    raw: Bytes,
) -> AdminResult {
    let c = manager(who)?;
    let store = rest::store(&st)?;
    let b: KeyBody = body(&raw)?;
    let row = update_key(store, &c, &id, &b).await?;
    reload(&st, store).await;
    Ok(Json(show(&row, now_ms())).into_response())
}

async fn revoke(
    State(st): State<Arc<AppState>>,
    who: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> AdminResult {
    let c = manager(who)?;
    let store = rest::store(&st)?;
    let row = revoke_key(store, &c, &id).await?;
    reload(&st, store).await;
    Ok(Json(json!({"id": row.id, "status": "revoked"})).into_response())
}

async fn rotate(
    State(st): State<Arc<AppState>>,
    who: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> AdminResult {
    let c = manager(who)?;
    let store = rest::store(&st)?;
    let (row, key) = rotate_key(store, &c, &id).await?;
    reload(&st, store).await;
    Ok(Json(with_key(&row, &key, now_ms())).into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use llm_link_gateway::identity::{Role, UserEntry};

    const NOW: i64 = 1_796_526_000_000;

    fn row() -> VirtualKeyRow {
        VirtualKeyRow {
            id: 1,
            name: "ci".into(),
            ..unset(Some(7), "h".into(), "llk-…abcd".into(), 0)
        }
    }

    fn parse(v: Value) -> KeyBody {
        body(v.to_string().as_bytes()).unwrap()
    }

    fn err_field(v: Value) -> String {
        let mut r = row();
        let e = match body::<KeyBody>(v.to_string().as_bytes()) {
            Err(e) => e,
            Ok(b) => apply_body(&mut r, &b, NOW).unwrap_err(),
        };
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        e.field.unwrap_or_default()
    }

    #[test]
    fn a_body_sets_and_null_clears() {
        let mut r = row();
        let b = parse(json!({
            "name": " bot ", "models": ["gpt-4o", "gpt-4o", "glm-4"],
            "expires_at": "2030-01-01T00:00:00Z", "rpm": 60, "tpm": 1000,
            "max_concurrency": 2, "budget": {"amount": 5.5, "period": "monthly"},
        }));
        let c = apply_body(&mut r, &b, NOW).unwrap();
        assert_eq!(r.name, "bot");
        assert_eq!(
            r.models.as_deref(),
            Some(&["gpt-4o".into(), "glm-4".into()][..])
        );
        assert_eq!(r.expires_at, Some(1_893_456_000_000));
        assert_eq!(
            (r.rpm, r.tpm, r.max_concurrency),
            (Some(60), Some(1000), Some(2))
        );
        assert_eq!(r.budget_amount, Some(5.5));
        assert_eq!(r.budget_period.as_deref(), Some("monthly"));
        assert_eq!(r.updated_at, NOW);
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!([
                "name",
                "models",
                "expires_at",
                "rpm",
                "tpm",
                "max_concurrency",
                "budget"
            ])
        );

        let b = parse(json!({"models": null, "expires_at": null, "rpm": null, "budget": null}));
        apply_body(&mut r, &b, NOW).unwrap();
        assert_eq!(r.models, None);
        assert_eq!(r.expires_at, None);
        assert_eq!(r.rpm, None);
        assert_eq!(r.tpm, Some(1000));
        assert_eq!((r.budget_amount, r.budget_period.as_deref()), (None, None));

        // Unix milliseconds work too; an empty body changes nothing.
        let b = parse(json!({"expires_at": NOW + 1000}));
        apply_body(&mut r, &b, NOW).unwrap();
        assert_eq!(r.expires_at, Some(NOW + 1000));
        let before = r.clone();
        apply_body(&mut r, &parse(json!({})), NOW).unwrap();
        assert!(changed(&before, &r).is_empty());
        // A whole read-back answer sent again changes nothing, even once
        // the key has expired.
        let back = show(&r, NOW);
        let later = NOW + 5000;
        let before = r.clone();
        apply_body(&mut r, &parse(back), later).unwrap();
        assert!(
            changed(&before, &r).is_empty(),
            "{:?}",
            changed(&before, &r)
        );
        // A real change is reported.
        apply_body(&mut r, &parse(json!({"rpm": 61, "budget": null})), NOW).unwrap();
        assert_eq!(changed(&before, &r), ["rpm"]);
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(err_field(json!({"name": ""})), "name");
        assert_eq!(err_field(json!({"name": null})), "name");
        assert_eq!(err_field(json!({"rpm": 0})), "rpm");
        assert_eq!(err_field(json!({"tpm": 10_000_001})), "tpm");
        assert_eq!(err_field(json!({"max_concurrency": -1})), "max_concurrency");
        assert_eq!(err_field(json!({"rpm": "ten"})), "rpm");
        assert_eq!(err_field(json!({"models": []})), "models");
        assert_eq!(err_field(json!({"models": ["ok", " "]})), "models[1]");
        assert_eq!(err_field(json!({"models": ["a b"]})), "models[0]");
        assert_eq!(
            err_field(json!({"expires_at": "2020-01-01T00:00:00Z"})),
            "expires_at"
        );
        assert_eq!(err_field(json!({"expires_at": NOW - 1})), "expires_at");
        assert_eq!(err_field(json!({"expires_at": "tomorrow"})), "expires_at");
        assert_eq!(err_field(json!({"expires_at": true})), "expires_at");
        assert_eq!(err_field(json!({"expires_at": i64::MAX})), "expires_at");
        assert_eq!(err_field(json!({"expires_at": 1.9e12})), "expires_at");
        assert_eq!(
            err_field(json!({"models": vec!["m"; MAX_MODELS + 1]})),
            "models"
        );
        assert_eq!(
            err_field(json!({"budget": {"amount": 0, "period": "daily"}})),
            "budget.amount"
        );
        assert_eq!(
            err_field(json!({"budget": {"period": "daily"}})),
            "budget.amount"
        );
        assert_eq!(
            err_field(json!({"budget": {"amount": 1, "period": "hourly"}})),
            "budget.period"
        );
        assert_eq!(err_field(json!({"budget": {"amount": 1}})), "budget.period");
        assert_eq!(
            err_field(json!({"budget": {"amount": 1, "period": "daily", "x": 1}})),
            "budget.x"
        );
        assert_eq!(err_field(json!({"key_hash": "x"})), "key_hash");
    }

    #[test]
    fn a_key_sent_as_an_id_is_not_echoed() {
        let key = identity::generate_key(&llm_link_store::crypto::random_bytes());
        let e = no_key(&key);
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert!(!e.message.contains(&key[..12]), "{}", e.message);
        assert!(e.message.contains(&identity::hint(&key)));
        assert_eq!(no_key("42").message, "no key with id `42`");
    }

    #[test]
    fn status_and_rendering_hide_the_hash() {
        let mut r = row();
        assert_eq!(status(&r, NOW), "active");
        r.expires_at = Some(NOW);
        assert_eq!(status(&r, NOW), "expired");
        r.revoked_at = Some(NOW);
        assert_eq!(status(&r, NOW), "revoked");
        r.key_hash = "secret-hash-value".into();
        r.budget_amount = Some(2.0);
        r.budget_period = Some("weekly".into());
        let v = show(&r, NOW);
        assert!(!v.to_string().contains("secret-hash-value"));
        assert!(v.get("key_hash").is_none() && v.get("key").is_none());
        assert_eq!(v["budget"], json!({"amount": 2.0, "period": "weekly"}));
        assert_eq!(v["expires_at"], "2026-12-06T03:00:00.000Z");
    }

    fn caller(role: Role, id: Option<i64>) -> Caller {
        Caller {
            user: id.map(|id| {
                Arc::new(UserEntry {
                    id,
                    username: format!("u{id}"),
                    role,
                    disabled: false,
                    limits: Default::default(),
                })
            }),
            role,
            actor: "t".into(),
        }
    }

    #[test]
    fn ownership_rules() {
        let admin = caller(Role::Admin, None);
        let member = caller(Role::Member, Some(7));
        let viewer = caller(Role::Viewer, Some(8));
        assert!(manager(Some(Extension(admin.clone()))).is_ok());
        assert!(manager(Some(Extension(member.clone()))).is_ok());
        assert_eq!(
            manager(Some(Extension(viewer))).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(manager(None).unwrap_err().status, StatusCode::UNAUTHORIZED);
        // Admins choose the owner; a member's key is its own.
        assert_eq!(owner(&admin, None).unwrap(), None);
        assert_eq!(owner(&admin, Some(Some(3))).unwrap(), Some(3));
        assert_eq!(owner(&member, None).unwrap(), Some(7));
        assert_eq!(owner(&member, Some(Some(7))).unwrap(), Some(7));
        assert_eq!(owner(&member, Some(Some(3))).unwrap_err().kind, "forbidden");
        assert_eq!(owner(&member, Some(None)).unwrap_err().kind, "forbidden");
        let mut k = row();
        assert!(sees(&member, &k) && sees(&admin, &k));
        k.user_id = Some(3);
        assert!(!sees(&member, &k));
        k.user_id = None;
        assert!(!sees(&member, &k) && sees(&admin, &k));
    }
}
