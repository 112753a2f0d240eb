//! Users, sessions, virtual keys and budget spend: the rows, their queries,
//! the install's identity secrets, and the [`Identities`] the request path
//! looks keys up in.
//!
//! Changes to users and keys bump the setting `identity_revision` (not the
//! provider `revision`), so replicas reload identities without rebuilding
//! their upstreams.

use crate::crypto::{random_bytes, MasterKey};
use crate::rows::{insert_sql, json_col, select_all, select_one, to_json, update_sql, Get};
use crate::{on, Db, Result, StoreError, Tx};
use llm_link_gateway::identity::{
    to_micros, Budget, Identities, KeyEntry, Limits, Period, Role, UserEntry,
};
use std::collections::HashMap;
use std::sync::Arc;

/// The settings keys of the identity secrets (ciphertexts under the master key).
pub const TOKEN_HASH_KEY: &str = "token_hash_key";
pub const JWT_SECRET: &str = "jwt_secret";
/// Bumped by every user or key change.
pub const IDENTITY_REVISION: &str = "identity_revision";

#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    /// argon2id PHC string; never shown.
    pub password_hash: String,
    pub role: String,
    pub disabled: bool,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub max_concurrency: Option<i64>,
    pub budget_amount: Option<f64>,
    pub budget_period: Option<String>,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    pub last_login_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const USER_COLS: &str = "id, username, password_hash, role, disabled, rpm, tpm, max_concurrency, budget_amount, budget_period, failed_logins, locked_until, last_login_at, created_at, updated_at";

fn user(r: &impl Get) -> Result<UserRow> {
    Ok(UserRow {
        id: r.i64("id")?,
        username: r.text("username")?,
        password_hash: r.text("password_hash")?,
        role: r.text("role")?,
        disabled: r.boolean("disabled")?,
        rpm: r.opt_i64("rpm")?,
        tpm: r.opt_i64("tpm")?,
        max_concurrency: r.opt_i64("max_concurrency")?,
        budget_amount: r.opt_f64("budget_amount")?,
        budget_period: r.opt_text("budget_period")?,
        failed_logins: r.i64("failed_logins")?,
        locked_until: r.opt_i64("locked_until")?,
        last_login_at: r.opt_i64("last_login_at")?,
        created_at: r.i64("created_at")?,
        updated_at: r.i64("updated_at")?,
    })
}

macro_rules! bind_user {
    ($q:expr, $u:expr) => {
        $q.bind(&$u.username)
            .bind(&$u.password_hash)
            .bind(&$u.role)
            .bind($u.disabled)
            .bind($u.rpm)
            .bind($u.tpm)
            .bind($u.max_concurrency)
            .bind($u.budget_amount)
            .bind(&$u.budget_period)
            .bind($u.failed_logins)
            .bind($u.locked_until)
            .bind($u.last_login_at)
    };
}

#[derive(Debug, Clone, PartialEq)]
pub struct VirtualKeyRow {
    pub id: i64,
    pub name: String,
    pub user_id: Option<i64>,
    /// Hex HMAC-SHA256 of the key; the key itself is never stored.
    pub key_hash: String,
    pub hint: String,
    /// The models it may call; `None`: any.
    pub models: Option<Vec<String>>,
    pub expires_at: Option<i64>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub max_concurrency: Option<i64>,
    pub budget_amount: Option<f64>,
    pub budget_period: Option<String>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const VKEY_COLS: &str = "id, name, user_id, key_hash, hint, models, expires_at, rpm, tpm, max_concurrency, budget_amount, budget_period, revoked_at, created_at, updated_at";

fn vkey(r: &impl Get) -> Result<VirtualKeyRow> {
    let models = match r.opt_text("models")? {
        None => None,
        Some(_) => json_col(r, "models")?,
    };
    Ok(VirtualKeyRow {
        id: r.i64("id")?,
        name: r.text("name")?,
        user_id: r.opt_i64("user_id")?,
        key_hash: r.text("key_hash")?,
        hint: r.text("hint")?,
        models,
        expires_at: r.opt_i64("expires_at")?,
        rpm: r.opt_i64("rpm")?,
        tpm: r.opt_i64("tpm")?,
        max_concurrency: r.opt_i64("max_concurrency")?,
        budget_amount: r.opt_f64("budget_amount")?,
        budget_period: r.opt_text("budget_period")?,
        revoked_at: r.opt_i64("revoked_at")?,
        created_at: r.i64("created_at")?,
        updated_at: r.i64("updated_at")?,
    })
}

macro_rules! bind_vkey {
    ($q:expr, $k:expr, $models:expr) => {
        $q.bind(&$k.name)
            .bind($k.user_id)
            .bind(&$k.key_hash)
            .bind(&$k.hint)
            .bind($models)
            .bind($k.expires_at)
            .bind($k.rpm)
            .bind($k.tpm)
            .bind($k.max_concurrency)
            .bind($k.budget_amount)
            .bind(&$k.budget_period)
            .bind($k.revoked_at)
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub user_id: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

fn session(r: &impl Get) -> Result<SessionRow> {
    Ok(SessionRow {
        id: r.text("id")?,
        user_id: r.i64("user_id")?,
        created_at: r.i64("created_at")?,
        expires_at: r.i64("expires_at")?,
        revoked_at: r.opt_i64("revoked_at")?,
    })
}

/// One scope's spend in one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRow {
    /// `key:<id>` or `user:<id>`.
    pub scope: String,
    pub period_start: i64,
    /// Micro-units.
    pub spent: i64,
}

impl Tx {
    // ---- users ----------------------------------------------------------

    pub async fn users(&mut self) -> Result<Vec<UserRow>> {
        let sql = format!("SELECT {USER_COLS} FROM users ORDER BY id");
        select_all!(self, &sql, user)
    }

    pub async fn user(&mut self, id: i64) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
        select_one!(self, &sql, user, id)
    }

    pub async fn user_by_name(&mut self, username: &str) -> Result<Option<UserRow>> {
        if username.contains('\0') {
            return Ok(None);
        }
        let sql = format!("SELECT {USER_COLS} FROM users WHERE username = $1");
        select_one!(self, &sql, user, username)
    }

    pub async fn insert_user(&mut self, u: &UserRow) -> Result<i64> {
        let sql = insert_sql("users", USER_COLS);
        on!(self, |c| {
            Ok(bind_user!(sqlx::query(&sql), u)
                .bind(u.created_at)
                .bind(u.updated_at)
                .fetch_one(&mut *c)
                .await?
                .i64("id")?)
        })
    }

    pub async fn update_user(&mut self, u: &UserRow) -> Result<bool> {
        let sql = update_sql("users", USER_COLS, &[]);
        let n = on!(self, |c| {
            bind_user!(sqlx::query(&sql), u)
                .bind(u.updated_at)
                .bind(u.id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Records a login attempt's outcome without touching anything else.
    pub async fn set_login_state(
        &mut self,
        id: i64,
        failed_logins: i64,
        locked_until: Option<i64>,
        last_login_at: Option<i64>,
    ) -> Result<()> {
        on!(self, |c| {
            sqlx::query(
                "UPDATE users SET failed_logins = $1, locked_until = $2, \
                 last_login_at = COALESCE($3, last_login_at) WHERE id = $4",
            )
            .bind(failed_logins)
            .bind(locked_until)
            .bind(last_login_at)
            .bind(id)
            .execute(&mut *c)
            .await?;
        });
        Ok(())
    }

    pub async fn delete_user(&mut self, id: i64) -> Result<bool> {
        self.delete_id("users", id).await
    }

    // ---- sessions -------------------------------------------------------

    pub async fn insert_session(&mut self, s: &SessionRow) -> Result<()> {
        on!(self, |c| {
            sqlx::query(
                "INSERT INTO sessions (id, user_id, created_at, expires_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&s.id)
            .bind(s.user_id)
            .bind(s.created_at)
            .bind(s.expires_at)
            .bind(s.revoked_at)
            .execute(&mut *c)
            .await?;
        });
        Ok(())
    }

    pub async fn session(&mut self, id: &str) -> Result<Option<SessionRow>> {
        if id.contains('\0') {
            return Ok(None);
        }
        select_one!(
            self,
            "SELECT id, user_id, created_at, expires_at, revoked_at FROM sessions WHERE id = $1",
            session,
            id
        )
    }

    /// Revokes one session; false when it did not exist or was revoked.
    pub async fn revoke_session(&mut self, id: &str) -> Result<bool> {
        let now = crate::now_ms();
        let n = on!(self, |c| {
            sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Revokes every session of a user (password change, disable).
    pub async fn revoke_user_sessions(&mut self, user_id: i64) -> Result<u64> {
        let now = crate::now_ms();
        Ok(on!(self, |c| {
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .execute(&mut *c)
            .await?
            .rows_affected()
        }))
    }

    /// Drops sessions that expired before `before` (housekeeping).
    pub async fn purge_sessions(&mut self, before: i64) -> Result<u64> {
        Ok(on!(self, |c| {
            sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
                .bind(before)
                .execute(&mut *c)
                .await?
                .rows_affected()
        }))
    }

    // ---- virtual keys ---------------------------------------------------

    pub async fn virtual_keys(&mut self) -> Result<Vec<VirtualKeyRow>> {
        let sql = format!("SELECT {VKEY_COLS} FROM virtual_keys ORDER BY id");
        select_all!(self, &sql, vkey)
    }

    pub async fn virtual_key(&mut self, id: i64) -> Result<Option<VirtualKeyRow>> {
        let sql = format!("SELECT {VKEY_COLS} FROM virtual_keys WHERE id = $1");
        select_one!(self, &sql, vkey, id)
    }

    pub async fn insert_virtual_key(&mut self, k: &VirtualKeyRow) -> Result<i64> {
        let sql = insert_sql("virtual_keys", VKEY_COLS);
        let models = k.models.as_ref().map(to_json);
        on!(self, |c| {
            Ok(bind_vkey!(sqlx::query(&sql), k, &models)
                .bind(k.created_at)
                .bind(k.updated_at)
                .fetch_one(&mut *c)
                .await?
                .i64("id")?)
        })
    }

    pub async fn update_virtual_key(&mut self, k: &VirtualKeyRow) -> Result<bool> {
        let sql = update_sql("virtual_keys", VKEY_COLS, &[]);
        let models = k.models.as_ref().map(to_json);
        let n = on!(self, |c| {
            bind_vkey!(sqlx::query(&sql), k, &models)
                .bind(k.updated_at)
                .bind(k.id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    // ---- identity revision ----------------------------------------------

    /// Increments the identity revision; call it in every user/key write.
    pub async fn bump_identity_revision(&mut self) -> Result<i64> {
        self.bump_counter(IDENTITY_REVISION).await
    }

    pub async fn identity_revision(&mut self) -> Result<i64> {
        Ok(self
            .setting(IDENTITY_REVISION)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    // ---- budget spend ---------------------------------------------------

    /// Spend rows of periods that started at or after `since` (and every
    /// `total` row, whose start is 0).
    pub async fn spend_since(&mut self, since: i64) -> Result<Vec<SpendRow>> {
        on!(self, |c| {
            sqlx::query(
                "SELECT scope, period_start, spent FROM budget_spend \
                 WHERE period_start >= $1 OR period_start = 0",
            )
            .bind(since)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| {
                Ok(SpendRow {
                    scope: r.text("scope")?,
                    period_start: r.i64("period_start")?,
                    spent: r.i64("spent")?,
                })
            })
            .collect()
        })
    }

    /// Adds `delta` micro-units to a scope's spend in a period.
    pub async fn add_spend(&mut self, scope: &str, period_start: i64, delta: i64) -> Result<()> {
        let now = crate::now_ms();
        on!(self, |c| {
            sqlx::query(
                "INSERT INTO budget_spend (scope, period_start, spent, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (scope, period_start) DO UPDATE SET \
                 spent = budget_spend.spent + excluded.spent, updated_at = excluded.updated_at",
            )
            .bind(scope)
            .bind(period_start)
            .bind(delta)
            .bind(now)
            .execute(&mut *c)
            .await?;
        });
        Ok(())
    }
}

/// The install's identity secrets, decrypted.
#[derive(Clone)]
pub struct IdentitySecrets {
    /// HMAC key of [`llm_link_gateway::identity::token_hash`].
    pub token_key: [u8; 32],
    /// HS256 key of session tokens.
    pub jwt: [u8; 32],
}

impl std::fmt::Debug for IdentitySecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentitySecrets(…)")
    }
}

/// Reads the identity secrets, generating (and storing, encrypted) any that
/// is missing. Replicas starting together agree: the first insert wins and
/// everyone reads it back.
pub async fn secrets(db: &Db, key: &MasterKey) -> Result<IdentitySecrets> {
    let mut out = [[0u8; 32]; 2];
    for (i, name) in [TOKEN_HASH_KEY, JWT_SECRET].iter().enumerate() {
        let corrupt = || StoreError::Corrupt(format!("settings.{name}"));
        let mut tx = db.begin().await?;
        let ct = match tx.setting(name).await? {
            Some(ct) => ct,
            None => {
                let fresh = hex::encode(random_bytes::<32>());
                tx.insert_setting_if_absent(name, &key.encrypt(&fresh)?)
                    .await?;
                // Another replica's insert may have won: read what is stored.
                tx.setting(name).await?.ok_or_else(corrupt)?
            }
        };
        tx.commit().await?;
        let plain = key.decrypt(&ct)?;
        hex::decode_to_slice(plain.expose(), &mut out[i]).map_err(|_| corrupt())?;
    }
    Ok(IdentitySecrets {
        token_key: out[0],
        jwt: out[1],
    })
}

fn limits(
    rpm: Option<i64>,
    tpm: Option<i64>,
    conc: Option<i64>,
    amount: Option<f64>,
    period: Option<&str>,
) -> Limits {
    let small = |v: Option<i64>| v.map(|n| n.clamp(0, i64::from(u32::MAX)) as u32);
    Limits {
        rpm: small(rpm),
        tpm: small(tpm),
        max_concurrency: small(conc),
        // A budget without a (readable) period counts in total.
        budget: amount.map(|a| Budget {
            amount: to_micros(a),
            period: period.and_then(Period::parse).unwrap_or(Period::Total),
        }),
    }
}

impl UserRow {
    pub fn entry(&self) -> UserEntry {
        UserEntry {
            id: self.id,
            username: self.username.clone(),
            role: Role::parse(&self.role).unwrap_or(Role::Viewer),
            disabled: self.disabled,
            limits: limits(
                self.rpm,
                self.tpm,
                self.max_concurrency,
                self.budget_amount,
                self.budget_period.as_deref(),
            ),
        }
    }
}

impl VirtualKeyRow {
    pub fn entry(&self) -> KeyEntry {
        KeyEntry {
            id: self.id,
            name: self.name.clone(),
            user_id: self.user_id,
            models: self.models.clone(),
            expires_at: self.expires_at,
            revoked: self.revoked_at.is_some(),
            limits: limits(
                self.rpm,
                self.tpm,
                self.max_concurrency,
                self.budget_amount,
                self.budget_period.as_deref(),
            ),
        }
    }
}

/// Builds what the request path looks keys and users up in. Revoked keys
/// stay in (the request path refuses them), so revoking the last key never
/// turns a gateway that issued keys back into an open one.
pub fn identities(
    users: &[UserRow],
    keys: &[VirtualKeyRow],
    secrets: &IdentitySecrets,
) -> Identities {
    let users: HashMap<i64, Arc<UserEntry>> =
        users.iter().map(|u| (u.id, Arc::new(u.entry()))).collect();
    let keys = keys
        .iter()
        .map(|k| (k.key_hash.clone(), Arc::new(k.entry())))
        .collect();
    Identities {
        token_key: secrets.token_key,
        keys,
        users,
    }
}

/// Loads users and keys in one read transaction.
pub async fn load(db: &Db) -> Result<(i64, Vec<UserRow>, Vec<VirtualKeyRow>)> {
    let mut tx = db.begin_read().await?;
    let rev = tx.identity_revision().await?;
    let users = tx.users().await?;
    let keys = tx.virtual_keys().await?;
    tx.rollback().await?;
    Ok((rev, users, keys))
}
