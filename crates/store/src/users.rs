//! Users' passwords and logins: argon2id hashing and verification (off the
//! async workers, at most [`ARGON2_AT_ONCE`] at a time in this process), the
//! username and password rules, the lockout arithmetic, and the user writes
//! the CLI makes (each bumps the identity revision and writes an audit row
//! in the same transaction).
//!
//! The rows and their queries are in [`crate::identity`].

use crate::crypto::random_bytes;
use crate::identity::UserRow;
use crate::{now_ms, Db, Result, StoreError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::OnceLock;
use std::time::Duration;

/// Shortest and longest password accepted.
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 1024;
/// Longest username.
pub const USERNAME_MAX: usize = 64;
/// Failed logins in a row that lock an account, and for how long.
pub const LOCK_AFTER: i64 = 5;
pub const LOCK_MS: i64 = 300_000;
/// argon2 runs allowed at once in this process (each takes ~19 MiB and tens
/// of ms), and how long a caller waits for its turn.
pub const ARGON2_AT_ONCE: usize = 2;
pub const ARGON2_WAIT: Duration = Duration::from_secs(5);

static ARGON2_PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(ARGON2_AT_ONCE);

/// `username`: 1–64 characters of `[A-Za-z0-9._@-]`.
pub fn check_username(name: &str) -> std::result::Result<(), String> {
    if name.is_empty()
        || name.len() > USERNAME_MAX
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
    {
        return Err(format!(
            "must be 1-{USERNAME_MAX} characters of letters, digits and . _ @ -"
        ));
    }
    Ok(())
}

/// `password`: 8–1024 characters.
pub fn check_password(pw: &str) -> std::result::Result<(), String> {
    let n = pw.chars().count();
    if n < PASSWORD_MIN {
        return Err(format!("must be at least {PASSWORD_MIN} characters"));
    }
    if n > PASSWORD_MAX {
        return Err(format!("must be at most {PASSWORD_MAX} characters"));
    }
    if pw.contains('\0') {
        return Err("must not contain a NUL character".into());
    }
    Ok(())
}

/// argon2id (the crate's defaults: 19 MiB, 2 passes) with a random salt, as
/// a PHC string. Blocking: tens of milliseconds.
pub fn hash_password(pw: &str) -> std::result::Result<String, String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `pw` matches the PHC string `hash` (false for an unreadable hash).
/// Blocking: tens of milliseconds.
pub fn verify_password(hash: &str, pw: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(pw.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash no password is known for: a login for an unknown username is
/// checked against it, so it costs what a real check costs.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let pw = hex::encode(random_bytes::<24>());
        // Same parameters as a real hash; on failure a fixed string of the
        // same shape (argon2 then still parses it and runs).
        hash_password(&pw).unwrap_or_else(|_| {
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2Z2cBcWQyY0Xr5u8+6T0wQ3Gw5hQ9m6r7kq3X3tS8yU".into()
        })
    })
}

/// Too many argon2 runs are queued; the caller should answer 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Runs `f` (an argon2 hash or check) on the blocking pool, at most
/// [`ARGON2_AT_ONCE`] at a time; [`Busy`] when no turn came within
/// [`ARGON2_WAIT`].
pub async fn limited<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, Busy> {
    let permit = tokio::time::timeout(ARGON2_WAIT, ARGON2_PERMITS.acquire()).await;
    let Ok(Ok(_permit)) = permit else {
        return Err(Busy);
    };
    tokio::task::spawn_blocking(f).await.map_err(|_| Busy)
}

/// [`hash_password`] off the async workers, limited.
pub async fn hash_async(pw: String) -> std::result::Result<Result<String, String>, Busy> {
    limited(move || hash_password(&pw)).await
}

/// [`verify_password`] off the async workers, limited; `None` for the hash
/// checks against [`dummy_hash`] (an unknown user: always false).
pub async fn verify_async(hash: Option<String>, pw: String) -> std::result::Result<bool, Busy> {
    limited(move || match hash {
        Some(h) => verify_password(&h, &pw),
        None => {
            let _ = verify_password(dummy_hash(), &pw);
            false
        }
    })
    .await
}

/// The login state after one more failed attempt: `(failed_logins,
/// locked_until)`. The fifth failure in a row locks the account for
/// [`LOCK_MS`] and starts the count again.
pub fn after_failure(failed_logins: i64, now: i64) -> (i64, Option<i64>) {
    let n = failed_logins.max(0).saturating_add(1);
    if n >= LOCK_AFTER {
        (0, Some(now.saturating_add(LOCK_MS)))
    } else {
        (n, None)
    }
}

/// Seconds until a lock ends (rounded up), or `None` when not locked at `now`.
pub fn locked_for(locked_until: Option<i64>, now: i64) -> Option<u64> {
    match locked_until {
        Some(t) if t > now => Some(((t - now + 999) / 1000) as u64),
        _ => None,
    }
}

/// A new user row (not yet inserted).
pub fn new_row(username: &str, password_hash: String, role: &str) -> UserRow {
    let now = now_ms();
    UserRow {
        id: 0,
        username: username.to_string(),
        password_hash,
        role: role.to_string(),
        disabled: false,
        rpm: None,
        tpm: None,
        max_concurrency: None,
        budget_amount: None,
        budget_period: None,
        failed_logins: 0,
        locked_until: None,
        last_login_at: None,
        created_at: now,
        updated_at: now,
    }
}

/// A CLI write that could not be made; the message names the field.
#[derive(Debug)]
pub enum CliError {
    Invalid(String),
    Store(StoreError),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Invalid(m) => f.write_str(m),
            CliError::Store(e) => write!(f, "--database: {e}"),
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
        CliError::Store(e)
    }
}

/// `llm-link user create`: checks, hashes and inserts; returns the new id.
pub async fn create(
    db: &Db,
    username: &str,
    password: &str,
    role: &str,
    actor: &str,
) -> std::result::Result<i64, CliError> {
    check_username(username).map_err(|m| CliError::Invalid(format!("NAME: {m}")))?;
    check_password(password).map_err(|m| CliError::Invalid(format!("password: {m}")))?;
    if llm_link_gateway::identity::Role::parse(role).is_none() {
        return Err(CliError::Invalid(
            "--role: must be admin, member or viewer".into(),
        ));
    }
    let hash = hash_password(password).map_err(CliError::Invalid)?;
    let row = new_row(username, hash, role);
    let mut tx = db.begin().await?;
    if tx.user_by_name(username).await?.is_some() {
        return Err(CliError::Invalid(format!(
            "NAME: a user named `{username}` already exists"
        )));
    }
    tx.bump_identity_revision().await?;
    let id = tx.insert_user(&row).await?;
    tx.audit(
        actor,
        "user.create",
        &format!("user {username}"),
        &serde_json::json!({"id": id, "username": username, "role": role}),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// What `llm-link user passwd|disable|enable` changes.
#[derive(Clone)]
pub enum Change {
    Password(String),
    Disabled(bool),
}

/// Never shows the password.
impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Password(_) => f.write_str("Password(…)"),
            Change::Disabled(d) => f.debug_tuple("Disabled").field(d).finish(),
        }
    }
}

/// Applies `change` to the user named `username`; revokes its sessions when
/// the password changes or it is disabled.
pub async fn change(
    db: &Db,
    username: &str,
    change: Change,
    actor: &str,
) -> std::result::Result<(), CliError> {
    let new_hash = match &change {
        Change::Password(pw) => {
            check_password(pw).map_err(|m| CliError::Invalid(format!("password: {m}")))?;
            Some(hash_password(pw).map_err(CliError::Invalid)?)
        }
        Change::Disabled(_) => None,
    };
    let mut tx = db.begin().await?;
    let Some(mut row) = tx.user_by_name(username).await? else {
        return Err(CliError::Invalid(format!(
            "NAME: no user named `{username}`"
        )));
    };
    if let Some(h) = new_hash {
        row.password_hash = h;
        row.failed_logins = 0;
        row.locked_until = None;
    }
    let (field, revoke) = match change {
        Change::Password(_) => ("password", true),
        Change::Disabled(d) => {
            row.disabled = d;
            ("disabled", d)
        }
    };
    row.updated_at = now_ms();
    tx.bump_identity_revision().await?;
    tx.update_user(&row).await?;
    if revoke {
        tx.revoke_user_sessions(row.id).await?;
    }
    let mut details = serde_json::json!({"id": row.id, "changed": [field]});
    if let Change::Disabled(d) = change {
        details["disabled"] = serde_json::Value::Bool(d);
    }
    tx.audit(actor, "user.update", &format!("user {username}"), &details)
        .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horsE"));
        assert!(!verify_password("not a hash", "correct horse"));
        // A fresh salt each time.
        assert_ne!(h, hash_password("correct horse").unwrap());
        // The dummy is a real argon2id hash nothing matches.
        assert!(dummy_hash().starts_with("$argon2id$"));
        assert!(!verify_password(dummy_hash(), ""));
    }

    #[tokio::test]
    async fn limited_checks_run_off_the_workers() {
        let h = hash_async("password-1".into()).await.unwrap().unwrap();
        assert!(verify_async(Some(h.clone()), "password-1".into())
            .await
            .unwrap());
        assert!(!verify_async(Some(h), "password-2".into()).await.unwrap());
        assert!(!verify_async(None, "password-1".into()).await.unwrap());
    }

    #[test]
    fn change_debug_hides_the_password() {
        let d = format!("{:?}", Change::Password("hunter2-secret".into()));
        assert!(!d.contains("hunter2"), "{d}");
        assert_eq!(format!("{:?}", Change::Disabled(true)), "Disabled(true)");
    }

    #[test]
    fn rules() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"x".repeat(1024)).is_ok());
        assert!(check_password(&"x".repeat(1025)).is_err());
        // Characters, not bytes.
        assert!(check_password("密码密码密码密码").is_ok());
        assert!(check_username("alice.b-c_d@example").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username("has space").is_err());
        assert!(check_username("ünïcode").is_err());
        assert!(check_username(&"a".repeat(64)).is_ok());
        assert!(check_username(&"a".repeat(65)).is_err());
    }

    #[test]
    fn lockout_arithmetic() {
        let now = 1_000_000;
        let mut state = (0, None);
        for i in 1..LOCK_AFTER {
            state = after_failure(state.0, now);
            assert_eq!(state, (i, None));
        }
        // The fifth in a row locks for 300 s and restarts the count.
        let (n, until) = after_failure(state.0, now);
        assert_eq!((n, until), (0, Some(now + 300_000)));
        assert_eq!(locked_for(until, now), Some(300));
        assert_eq!(locked_for(until, now + 299_001), Some(1));
        assert_eq!(locked_for(until, now + 300_000), None);
        assert_eq!(locked_for(None, now), None);
        // A corrupt negative count still counts from zero.
        assert_eq!(after_failure(-3, now), (1, None));
    }
}
