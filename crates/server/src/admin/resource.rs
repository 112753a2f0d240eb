//! The one mechanism behind the admin API's CRUD endpoints: a resource
//! (providers, provider keys, catalog models, app mappings) is a type that
//! implements [`Resource`], and [`routes`] serves it:
//!
//! | request | cycle |
//! | --- | --- |
//! | `GET <collection>` | [`Resource::list`] → `{"<LIST>": [...], "total": n}` |
//! | `POST <collection>` | body → [`Resource::create`] → begin → [`Resource::taken`] → [`Resource::insert`] → audit `<KIND>.create` → commit → 201 [`Resource::show`] |
//! | `GET <item>` | [`Resource::read`]: [`Resource::find`] → `show` |
//! | `PUT`/`PATCH <item>` | body → [`Resource::updatable`] → `find` → [`Resource::patch`] → begin → `taken` → [`Resource::update`] → audit `<KIND>.update` → commit → 200 `show` |
//! | `DELETE <item>` | `find` → begin → [`Resource::delete`] → audit `<KIND>.delete` → commit → [`Resource::deleted`] |
//!
//! Everything that can be checked without the database is checked before
//! the write begins; errors name the bad field ([`AdminError`]). A write
//! holds the apply lock and one transaction (see [`Write`]); the audit row
//! is written in it, and a result that would not compose with the file and
//! command-line configuration is rolled back and answered with the
//! composition error. Secrets are only ever shown masked: keys by their
//! stored hint ([`super::keys::key_json`]), other values through
//! [`masked`]; audit details carry hints, never secrets.
//!
//! ## Adding a resource
//!
//! Say a `users` table with a `UserRow` and `Tx::{users, user, user_by_name,
//! insert_user, update_user, delete_user}`:
//!
//! 1. A body: every field `Option`, `#[serde(deny_unknown_fields)]`, the
//!    read-back fields (`id`, `created_at`, …) as `Option<IgnoredAny>` so
//!    a GET answer can be PUT back.
//! 2. Its table of fields, `fn apply(row: &mut UserRow, b: &UserBody) ->
//!    AdminResult<Changes>`: one [`Changes::copy`] or [`Changes::check`]
//!    line a field, then the checks of the whole row (`apps.rs` has one).
//! 3. `impl Table for UserRow` (`NOUN`, and `all`/`by_id`/`by_name` call
//!    the `Tx` methods) and `impl Resource for UserRow`: a line or a few
//!    each — `find` is [`lookup`], `list` is [`rows`] and a [`Filters`]
//!    test, `taken` is [`name_free`], `show` the row's JSON.
//! 4. `.merge(resource::routes::<UserRow>("/api/users", "/api/users/{id}"))`
//!    in [`super::store_routes`].
//!
//! `apps.rs` is the smallest complete example; `models.rs` has rows that own
//! keys ([`super::keys::with_keys`]); `keys.rs` is a resource under a parent
//! (`Scope` is the parent's `{id}`).

use super::rest::{self, actor, body, Actor, AdminError, AdminResult};
use crate::apply::Write;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use llm_link_gateway::config::Secret;
use llm_link_store::{Store, Tx};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

/// A store read or write.
pub type Stored<T> = llm_link_store::Result<T>;

/// A kind of row the admin API lists, creates, reads, updates and deletes.
/// The methods are the steps of the cycles in the module docs; those with
/// a default are needed by some resources only.
pub trait Resource: Clone + Send + Sync + Sized + 'static {
    /// What the collection's URL holds: `()`, or the parent's `{id}`.
    type Scope: DeserializeOwned + Send + Sync + 'static;
    /// What an item's URL holds: `{id}` (a `String`), or `({parent}, {id})`.
    type Path: DeserializeOwned + Send + Sync + 'static;
    /// The create and update body.
    type Body: DeserializeOwned + Send + Sync + 'static;
    /// Rows validated along with a new one and written after it (a
    /// provider's keys); `()` for none.
    type Children: Send + 'static;

    /// Its audit actions: `<KIND>.create`, `<KIND>.update`, `<KIND>.delete`.
    const KIND: &'static str;
    /// The list answer is `{"<LIST>": [...], "total": n}`.
    const LIST: &'static str;

    fn id(&self) -> i64;
    /// How the audit log names the row: `app 3 (support-bot)`.
    fn target(&self) -> String;
    /// The 404 for an item URL that names no row (or one deleted meanwhile).
    fn missing(path: &Self::Path) -> AdminError;

    // ---- reading ----

    /// The rows the query's filters let through, as the API shows them.
    fn list(
        st: &AppState,
        scope: &Self::Scope,
        q: &HashMap<String, String>,
    ) -> impl Future<Output = AdminResult<Vec<Value>>> + Send;
    /// The row an item URL names, to read or change.
    fn find(
        st: &AppState,
        store: &Store,
        path: &Self::Path,
    ) -> impl Future<Output = AdminResult<Self>> + Send;
    /// The row as the API shows it (secrets masked): `GET`, and the answer
    /// to a create or an update.
    fn show(&self, st: &AppState, store: &Store)
        -> impl Future<Output = AdminResult<Value>> + Send;
    /// `GET <item>`.
    fn read(st: &AppState, path: &Self::Path) -> impl Future<Output = AdminResult<Value>> + Send {
        async move {
            let store = rest::store(st)?;
            Self::find(st, store, path).await?.show(st, store).await
        }
    }
    /// The answer to a delete.
    fn deleted(&self) -> Value {
        json!({"status": "deleted", "id": self.id()})
    }

    // ---- validating, before the write begins ----

    /// A new row, and its children, from a create body.
    fn create(
        st: &AppState,
        store: &Store,
        scope: &Self::Scope,
        b: &Self::Body,
    ) -> impl Future<Output = AdminResult<(Self, Self::Children)>> + Send;
    /// Refuses an update body before the row is looked up.
    fn updatable(_b: &Self::Body) -> AdminResult<()> {
        Ok(())
    }
    /// Applies an update body (and stamps `updated_at`); the changed fields.
    fn patch(
        &mut self,
        st: &AppState,
        store: &Store,
        b: &Self::Body,
    ) -> impl Future<Output = AdminResult<Changes>> + Send;

    // ---- writing, in the write transaction ----

    /// Refuses a row that would clash with another one (a name taken);
    /// `before` is the row as it was, in an update.
    fn taken(
        &self,
        _tx: &mut Tx,
        _before: Option<&Self>,
    ) -> impl Future<Output = AdminResult<()>> + Send {
        async { Ok(()) }
    }
    /// Inserts the row (setting its id) and its children; the audit details.
    fn insert(
        &mut self,
        tx: &mut Tx,
        children: Self::Children,
    ) -> impl Future<Output = AdminResult<Value>> + Send;
    /// Writes the row and what else the body changes; the audit details, or
    /// `None` when the row is gone.
    fn update(
        &self,
        tx: &mut Tx,
        store: &Store,
        b: &Self::Body,
        changed: Changes,
    ) -> impl Future<Output = AdminResult<Option<Value>>> + Send;
    /// Deletes the row; the audit details, or `None` when it is gone.
    fn delete(&self, tx: &mut Tx) -> impl Future<Output = AdminResult<Option<Value>>> + Send;
}

/// The collection and item routes of a resource.
pub fn routes<R: Resource>(collection: &str, item: &str) -> Router<Arc<AppState>> {
    Router::new()
        .route(collection, get(list::<R>).post(create::<R>))
        .route(
            item,
            get(read::<R>)
                .put(update::<R>)
                .patch(update::<R>)
                .delete(remove::<R>),
        )
}

async fn list<R: Resource>(
    State(st): State<Arc<AppState>>,
    Path(scope): Path<R::Scope>,
    Query(q): Query<HashMap<String, String>>,
) -> AdminResult {
    let items = R::list(&st, &scope, &q).await?;
    let mut out = json!({ "total": items.len() });
    out[R::LIST] = Value::Array(items);
    answer(StatusCode::OK, out)
}

async fn read<R: Resource>(
    State(st): State<Arc<AppState>>,
    Path(path): Path<R::Path>,
) -> AdminResult {
    Ok(Json(R::read(&st, &path).await?).into_response())
}

async fn create<R: Resource>(
    State(st): State<Arc<AppState>>,
    Path(scope): Path<R::Scope>,
    who: Option<Extension<Actor>>,
    raw: Bytes,
) -> AdminResult {
    let store = rest::store(&st)?;
    let b: R::Body = body(&raw)?;
    let (mut row, children) = R::create(&st, store, &scope, &b).await?;
    let mut w = begin(store).await?;
    row.taken(&mut w.tx, None).await?;
    let details = row.insert(&mut w.tx, children).await?;
    commit(w, &st, who, "create", &row, &details).await?;
    answer(StatusCode::CREATED, row.show(&st, store).await?)
}

async fn update<R: Resource>(
    State(st): State<Arc<AppState>>,
    Path(path): Path<R::Path>,
    who: Option<Extension<Actor>>,
    raw: Bytes,
) -> AdminResult {
    let store = rest::store(&st)?;
    let b: R::Body = body(&raw)?;
    R::updatable(&b)?;
    let before = R::find(&st, store, &path).await?;
    let mut row = before.clone();
    let changed = row.patch(&st, store, &b).await?;
    let mut w = begin(store).await?;
    row.taken(&mut w.tx, Some(&before)).await?;
    let details = row
        .update(&mut w.tx, store, &b, changed)
        .await?
        .ok_or_else(|| R::missing(&path))?;
    commit(w, &st, who, "update", &row, &details).await?;
    answer(StatusCode::OK, row.show(&st, store).await?)
}

async fn remove<R: Resource>(
    State(st): State<Arc<AppState>>,
    Path(path): Path<R::Path>,
    who: Option<Extension<Actor>>,
) -> AdminResult {
    let store = rest::store(&st)?;
    let row = R::find(&st, store, &path).await?;
    let mut w = begin(store).await?;
    let details = row
        .delete(&mut w.tx)
        .await?
        .ok_or_else(|| R::missing(&path))?;
    commit(w, &st, who, "delete", &row, &details).await?;
    answer(StatusCode::OK, row.deleted())
}

fn answer(status: StatusCode, v: Value) -> AdminResult {
    Ok((status, Json(v)).into_response())
}

/// Starts an admin write (apply lock + transaction, revision bumped).
pub async fn begin(store: &Store) -> AdminResult<Write<'_>> {
    Ok(Write::begin(store).await?)
}

/// Ends an admin write: records `<KIND>.<verb>` on `row` in the audit log
/// under the caller's name, then commits and applies it live (or rolls back
/// if the result would not run).
async fn commit<R: Resource>(
    mut w: Write<'_>,
    st: &AppState,
    who: Option<Extension<Actor>>,
    verb: &str,
    row: &R,
    details: &Value,
) -> AdminResult<()> {
    let action = format!("{}.{verb}", R::KIND);
    w.tx.audit(&actor(who), &action, &row.target(), details)
        .await?;
    w.finish(st).await?;
    Ok(())
}

// ---- top-level tables: found by id or name ------------------------------------

/// A top-level resource kept in one table: `{id}` in its URL is a row id,
/// or else a name.
pub trait Table: Resource<Scope = (), Path = String> {
    /// How messages name one: `provider`, `app mapping`.
    const NOUN: &'static str;
    fn all(tx: &mut Tx) -> impl Future<Output = Stored<Vec<Self>>> + Send;
    fn by_id(tx: &mut Tx, id: i64) -> impl Future<Output = Stored<Option<Self>>> + Send;
    /// The row named `name`; rows without names have none.
    fn by_name(_tx: &mut Tx, _name: &str) -> impl Future<Output = Stored<Option<Self>>> + Send {
        async { Ok(None) }
    }
}

/// `123` is a row id; anything else is a name.
pub enum Ident {
    Id(i64),
    Name(String),
}

pub fn ident(s: &str) -> Ident {
    match s.parse::<i64>() {
        Ok(n) => Ident::Id(n),
        Err(_) => Ident::Name(s.to_string()),
    }
}

/// The row `{id}` names, by id or by name.
pub async fn lookup<R: Table>(store: &Store, id: &str) -> AdminResult<Option<R>> {
    let mut tx = store.db.begin_read().await?;
    let row = match ident(id) {
        Ident::Id(n) => R::by_id(&mut tx, n).await?,
        Ident::Name(n) => R::by_name(&mut tx, &n).await?,
    };
    tx.rollback().await?;
    Ok(row)
}

/// Every row of the table.
pub async fn rows<R: Table>(store: &Store) -> AdminResult<Vec<R>> {
    let mut tx = store.db.begin_read().await?;
    let rows = R::all(&mut tx).await?;
    tx.rollback().await?;
    Ok(rows)
}

/// Refuses a `name` another row has (409 on `name`); an update that keeps
/// its name (`before`) passes. `a_noun`: `a provider`, `an app mapping`.
pub async fn name_free<R: Table>(
    tx: &mut Tx,
    name: &str,
    before: Option<&str>,
    a_noun: &str,
) -> AdminResult<()> {
    if before != Some(name) && R::by_name(tx, name).await?.is_some() {
        return Err(AdminError::conflict(
            "name",
            format!("{a_noun} named `{name}` exists"),
        ));
    }
    Ok(())
}

// ---- lists: filters and pages ------------------------------------------------

/// A list's query parameters, with the unknown ones refused (naming them),
/// and typed readers whose errors name `query.<name>`.
pub struct Filters(HashMap<String, String>);

impl Filters {
    pub fn new(q: &HashMap<String, String>, known: &[&str]) -> AdminResult<Filters> {
        for k in q.keys() {
            if !known.contains(&k.as_str()) {
                return Err(AdminError::invalid(
                    format!("query.{k}"),
                    format!("unknown filter; known: {}", known.join(", ")),
                ));
            }
        }
        Ok(Filters(q.clone()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `true`/`1` or `false`/`0`, any case.
    pub fn flag(&self, name: &str) -> AdminResult<Option<bool>> {
        match self.get(name).map(str::to_ascii_lowercase) {
            None => Ok(None),
            Some(v) if v == "true" || v == "1" => Ok(Some(true)),
            Some(v) if v == "false" || v == "0" => Ok(Some(false)),
            Some(_) => Err(AdminError::invalid(
                format!("query.{name}"),
                "must be true or false",
            )),
        }
    }

    /// One of `allowed`, else a 400 saying `message`.
    pub fn one_of(&self, name: &str, allowed: &[&str], message: &str) -> AdminResult<Option<&str>> {
        if let Some(v) = self.get(name) {
            rest::one_of(&format!("query.{name}"), v, allowed, message)?;
        }
        Ok(self.get(name))
    }

    /// A whole number.
    pub fn number(&self, name: &str) -> AdminResult<Option<i64>> {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| AdminError::invalid(format!("query.{name}"), "must be a number"))
            })
            .transpose()
    }

    /// The page size, `limit`: `default` when absent, at most `max`. (A
    /// paged list takes the next page with `before`, a [`Filters::number`].)
    pub fn limit(&self, default: i64, max: i64) -> AdminResult<i64> {
        let n = self.number("limit")?.unwrap_or(default);
        rest::check_range("query.limit", n, 1, max)
    }
}

// ---- validating bodies: a table of fields ----------------------------------------

/// The fields a body set, in the order they were applied: what an update
/// audits as `changed`.
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Changes(Vec<&'static str>);

impl Changes {
    /// A field taken as given, when the body has it.
    pub fn copy<T>(&mut self, field: &'static str, given: Option<T>, slot: &mut T) {
        if let Some(v) = given {
            *slot = v;
            self.0.push(field);
        }
    }

    /// A field the body has, validated by `check(field, value)` (whose
    /// error names `field`) into `slot`.
    pub fn check<V, T>(
        &mut self,
        field: &'static str,
        given: Option<V>,
        slot: &mut T,
        check: impl FnOnce(&'static str, V) -> AdminResult<T>,
    ) -> AdminResult<()> {
        if let Some(v) = given {
            *slot = check(field, v)?;
            self.0.push(field);
        }
        Ok(())
    }

    /// A field applied by hand.
    pub fn mark(&mut self, field: &'static str) {
        self.0.push(field);
    }
}

// ---- rendering -----------------------------------------------------------------

/// Named secrets (header values) as the API shows them: masked.
pub fn masked<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(Secret::new(v).masked())))
            .collect(),
    )
}
