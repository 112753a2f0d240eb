//! `/api/users[/{id}]`: users, their roles, limits and budgets (the
//! ManageUsers permission; the guard checks it).
//!
//! Every write is one transaction: the identity revision is bumped (other
//! replicas and the CLI's changes reload through it), the row changes, an
//! audit row names the changed fields (never the password); after the
//! commit this process reloads its identities at once. Disabling a user or
//! changing its password ends its sessions. Responses never hold the
//! password hash.

use super::auth::user_json;
use super::rest::{self, actor, body, check_range, nullable, Actor, AdminError, AdminResult};
use crate::apply;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use llm_link_gateway::identity::{Period, Role};
use llm_link_store::identity::UserRow;
use llm_link_store::{now_ms, users, Store, Tx};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/users", get(list).post(create))
        .route(
            "/api/users/{id}",
            get(read).patch(update).put(update).delete(remove),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetIn {
    amount: f64,
    period: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    username: String,
    password: String,
    role: String,
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default)]
    rpm: Option<i64>,
    #[serde(default)]
    tpm: Option<i64>,
    #[serde(default)]
    max_concurrency: Option<i64>,
    #[serde(default)]
    budget: Option<BudgetIn>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    rpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    tpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_concurrency: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    budget: Option<Option<BudgetIn>>,
}

const LIMIT_MAX: i64 = u32::MAX as i64;

fn role(v: &str) -> AdminResult<String> {
    Role::parse(v)
        .map(|r| r.as_str().to_string())
        .ok_or_else(|| AdminError::invalid("role", "must be admin, member or viewer"))
}

fn limit(field: &str, v: Option<i64>) -> AdminResult<Option<i64>> {
    v.map(|n| check_range(field, n, 1, LIMIT_MAX)).transpose()
}

fn budget(b: Option<&BudgetIn>) -> AdminResult<(Option<f64>, Option<String>)> {
    let Some(b) = b else {
        return Ok((None, None));
    };
    if !b.amount.is_finite() || b.amount <= 0.0 || b.amount > 1e12 {
        return Err(AdminError::invalid(
            "budget.amount",
            "must be a number above 0 (at most 1e12)",
        ));
    }
    let p = Period::parse(&b.period).ok_or_else(|| {
        AdminError::invalid("budget.period", "must be daily, weekly, monthly or total")
    })?;
    Ok((Some(b.amount), Some(p.as_str().to_string())))
}

fn password(pw: &str) -> AdminResult<()> {
    users::check_password(pw).map_err(|m| AdminError::invalid("password", m))
}

async fn hash(pw: &str) -> AdminResult<String> {
    users::hash_async(pw.to_string())
        .await
        .map_err(|_| AdminError::too_busy("too many password hashes at once; retry shortly"))?
        .map_err(|e| {
            tracing::error!("cannot hash a password: {e}");
            AdminError::internal("cannot hash the password; see the llm-link log")
        })
}

fn id(raw: &str) -> AdminResult<i64> {
    raw.parse()
        .map_err(|_| AdminError::not_found(format!("no user with id `{raw}`")))
}

fn missing(id: i64) -> AdminError {
    AdminError::not_found(format!("no user with id {id}"))
}

async fn list(State(st): State<Arc<AppState>>) -> AdminResult {
    let store = rest::store(&st)?;
    let mut tx = store.db.begin_read().await?;
    let rows = tx.users().await?;
    tx.rollback().await?;
    let data: Vec<Value> = rows.iter().map(user_json).collect();
    Ok(Json(json!({"users": data, "total": data.len()})).into_response())
}

async fn read(State(st): State<Arc<AppState>>, Path(raw): Path<String>) -> AdminResult {
    let store = rest::store(&st)?;
    let id = id(&raw)?;
    let mut tx = store.db.begin_read().await?;
    let row = tx.user(id).await?;
    tx.rollback().await?;
    let row = row.ok_or_else(|| missing(id))?;
    Ok(Json(user_json(&row)).into_response())
}

/// Whether another enabled admin user than `except` exists.
async fn other_admin(tx: &mut Tx, except: i64) -> AdminResult<bool> {
    Ok(tx
        .users()
        .await?
        .iter()
        .any(|u| u.id != except && u.role == "admin" && !u.disabled))
}

/// Refuses to leave no way in: the last enabled admin user may not go while
/// no admin token is configured.
async fn keep_a_way_in(st: &AppState, tx: &mut Tx, row: &UserRow, what: &str) -> AdminResult<()> {
    if row.role == "admin"
        && !row.disabled
        && !rest::admin_token_configured(st)
        && !other_admin(tx, row.id).await?
    {
        return Err(AdminError::conflict(
            "",
            format!("cannot {what} the last enabled admin user while no admin token is configured"),
        ));
    }
    Ok(())
}

/// Commits a user write and makes it live here.
async fn finish(st: &AppState, store: &Store, tx: Tx) -> AdminResult<()> {
    tx.commit().await?;
    if let Err(e) = apply::reload_identities(st, store).await {
        // The poller retries: the revision was bumped.
        tracing::warn!("cannot reload users and keys after a change: {e}");
    }
    Ok(())
}

async fn create(
    State(st): State<Arc<AppState>>,
    who: Option<Extension<Actor>>,
    raw: Bytes,
) -> AdminResult {
    let store = rest::store(&st)?;
    let b: CreateBody = body(&raw)?;
    users::check_username(&b.username).map_err(|m| AdminError::invalid("username", m))?;
    password(&b.password)?;
    let role = role(&b.role)?;
    let rpm = limit("rpm", b.rpm)?;
    let tpm = limit("tpm", b.tpm)?;
    let conc = limit("max_concurrency", b.max_concurrency)?;
    let (amount, period) = budget(b.budget.as_ref())?;
    let mut row = users::new_row(&b.username, hash(&b.password).await?, &role);
    row.disabled = b.disabled.unwrap_or(false);
    row.rpm = rpm;
    row.tpm = tpm;
    row.max_concurrency = conc;
    row.budget_amount = amount;
    row.budget_period = period;

    let mut tx = store.db.begin().await?;
    if tx.user_by_name(&row.username).await?.is_some() {
        return Err(AdminError::conflict(
            "username",
            format!("a user named `{}` already exists", row.username),
        ));
    }
    tx.bump_identity_revision().await?;
    row.id = tx.insert_user(&row).await.map_err(|e| {
        if e.is_conflict() {
            AdminError::conflict("username", "a user with this name already exists")
        } else {
            e.into()
        }
    })?;
    tx.audit(
        &actor(who),
        "user.create",
        &format!("user {}", row.username),
        &json!({"id": row.id, "username": row.username, "role": row.role, "disabled": row.disabled}),
    )
    .await?;
    finish(&st, store, tx).await?;
    Ok((StatusCode::CREATED, Json(user_json(&row))).into_response())
}

/// Puts `new` (when given) in `slot`, naming `field` in `changed` when the
/// value differs.
fn set<T: PartialEq>(
    changed: &mut Vec<&'static str>,
    field: &'static str,
    slot: &mut T,
    new: Option<T>,
) {
    if let Some(v) = new {
        if v != *slot {
            changed.push(field);
        }
        *slot = v;
    }
}

async fn update(
    State(st): State<Arc<AppState>>,
    Path(raw): Path<String>,
    who: Option<Extension<Actor>>,
    bytes: Bytes,
) -> AdminResult {
    let store = rest::store(&st)?;
    let id = id(&raw)?;
    let b: UpdateBody = body(&bytes)?;
    // Validate everything before any argon2 run or lock.
    if let Some(pw) = &b.password {
        password(pw)?;
    }
    let new_role = b.role.as_deref().map(role).transpose()?;
    let rpm = b.rpm.map(|v| limit("rpm", v)).transpose()?;
    let tpm = b.tpm.map(|v| limit("tpm", v)).transpose()?;
    let conc = b
        .max_concurrency
        .map(|v| limit("max_concurrency", v))
        .transpose()?;
    let new_budget = b.budget.as_ref().map(|v| budget(v.as_ref())).transpose()?;
    let new_hash = match &b.password {
        Some(pw) => Some(hash(pw).await?),
        None => None,
    };

    let mut tx = store.db.begin().await?;
    let before = tx.user(id).await?.ok_or_else(|| missing(id))?;
    let mut row = before.clone();
    let mut changed: Vec<&'static str> = Vec::new();
    if let Some(h) = new_hash {
        row.password_hash = h;
        row.failed_logins = 0;
        row.locked_until = None;
        changed.push("password");
    }
    set(&mut changed, "role", &mut row.role, new_role);
    set(&mut changed, "disabled", &mut row.disabled, b.disabled);
    set(&mut changed, "rpm", &mut row.rpm, rpm);
    set(&mut changed, "tpm", &mut row.tpm, tpm);
    set(
        &mut changed,
        "max_concurrency",
        &mut row.max_concurrency,
        conc,
    );
    let mut budget = (row.budget_amount, row.budget_period.take());
    set(&mut changed, "budget", &mut budget, new_budget);
    (row.budget_amount, row.budget_period) = budget;
    let demoted = before.role == "admin" && row.role != "admin";
    let disabling = !before.disabled && row.disabled;
    if demoted || disabling {
        let what = if demoted { "demote" } else { "disable" };
        keep_a_way_in(&st, &mut tx, &before, what).await?;
    }
    row.updated_at = now_ms();
    tx.bump_identity_revision().await?;
    if !tx.update_user(&row).await? {
        return Err(missing(id));
    }
    let revoke = changed.contains(&"password") || disabling;
    if revoke {
        tx.revoke_user_sessions(id).await?;
    }
    tx.audit(
        &actor(who),
        "user.update",
        &format!("user {}", row.username),
        &json!({"id": id, "changed": changed, "role": row.role, "disabled": row.disabled}),
    )
    .await?;
    finish(&st, store, tx).await?;
    if revoke {
        st.sessions.forget_all();
    }
    Ok(Json(user_json(&row)).into_response())
}

async fn remove(
    State(st): State<Arc<AppState>>,
    Path(raw): Path<String>,
    who: Option<Extension<Actor>>,
) -> AdminResult<Response> {
    let store = rest::store(&st)?;
    let id = id(&raw)?;
    let mut tx = store.db.begin().await?;
    let row = tx.user(id).await?.ok_or_else(|| missing(id))?;
    keep_a_way_in(&st, &mut tx, &row, "delete").await?;
    tx.bump_identity_revision().await?;
    tx.revoke_user_sessions(id).await?;
    if !tx.delete_user(id).await? {
        return Err(missing(id));
    }
    tx.audit(
        &actor(who),
        "user.delete",
        &format!("user {}", row.username),
        &json!({"id": id, "username": row.username}),
    )
    .await?;
    finish(&st, store, tx).await?;
    st.sessions.forget_all();
    Ok(Json(json!({"id": id, "deleted": true})).into_response())
}
