//! The admin token: `LLM_LINK_ADMIN_TOKEN` (`--admin-token`), or one
//! generated on first start, printed once and stored as an argon2id hash in
//! `settings.admin_token_hash`. `llm-link key reset-admin-token` makes a new
//! one.

use super::crypto::random_bytes;
use super::{Db, Result};
use arc_swap::ArcSwapOption;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The settings key holding the hash.
pub const SETTING: &str = "admin_token_hash";

/// A fresh token: `lla_` and 32 random bytes, URL-safe base64.
pub fn generate() -> String {
    format!(
        "lla_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    )
}

/// argon2id (the crate's defaults: 19 MiB, 2 passes) with a random salt.
pub fn hash(token: &str) -> std::result::Result<String, String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(token.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn digest(token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    h.finalize().into()
}

/// Checks presented tokens against the stored hash. A token that verified
/// once is remembered (as a SHA-256 digest) so later calls skip argon2.
#[derive(Default)]
pub struct AdminAuth {
    hash: ArcSwapOption<String>,
    verified: ArcSwapOption<[u8; 32]>,
}

impl AdminAuth {
    pub fn new(hash: Option<String>) -> AdminAuth {
        AdminAuth {
            hash: ArcSwapOption::from(hash.map(Arc::new)),
            verified: ArcSwapOption::empty(),
        }
    }

    pub fn has_hash(&self) -> bool {
        self.hash.load().is_some()
    }

    /// Replaces the hash (another process reset the token).
    pub fn set_hash(&self, hash: Option<String>) {
        let same = match (&*self.hash.load(), &hash) {
            (Some(a), Some(b)) => a.as_str() == b,
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.verified.store(None);
            self.hash.store(hash.map(Arc::new));
        }
    }

    /// Whether `token` matches without running argon2 (a remembered token).
    pub fn quick_check(&self, token: &str) -> bool {
        match &*self.verified.load() {
            Some(d) => llm_link_gateway::auth::ct_eq(d.as_slice(), &digest(token)),
            None => false,
        }
    }

    /// Full check (argon2: tens of milliseconds; run it off the async workers).
    pub fn verify(&self, token: &str) -> bool {
        if self.quick_check(token) {
            return true;
        }
        let Some(h) = self.hash.load_full() else {
            return false;
        };
        let ok = PasswordHash::new(&h)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(token.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        if ok {
            self.verified.store(Some(Arc::new(digest(token))));
        }
        ok
    }
}

/// At start: make sure a token hash exists. Returns the token when this
/// call generated it (to print once) and the stored hash.
pub async fn ensure(db: &Db) -> Result<(Option<String>, Option<String>)> {
    let mut tx = db.begin_read().await?;
    let existing = tx.setting(SETTING).await?;
    tx.rollback().await?;
    if existing.is_some() {
        return Ok((None, existing));
    }
    let token = generate();
    let h = hash(&token).map_err(super::StoreError::Corrupt)?;
    let mut tx = db.begin().await?;
    let inserted = tx.insert_setting_if_absent(SETTING, &h).await?;
    if inserted {
        tx.audit(
            "llm-link",
            "admin_token.generate",
            "settings",
            &serde_json::json!({}),
        )
        .await?;
    }
    let stored = tx.setting(SETTING).await?;
    tx.commit().await?;
    // Another process won the race: its token is the one that counts.
    Ok((inserted.then_some(token), stored))
}

/// Replaces the token; returns the new one (to print once).
pub async fn reset(db: &Db, actor: &str) -> Result<String> {
    let token = generate();
    let h = hash(&token).map_err(super::StoreError::Corrupt)?;
    let mut tx = db.begin().await?;
    tx.bump_revision().await?;
    tx.set_setting(SETTING, &h).await?;
    tx.audit(
        actor,
        "admin_token.reset",
        "settings",
        &serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_and_remember() {
        let t = generate();
        assert!(t.starts_with("lla_") && t.len() > 40);
        let auth = AdminAuth::new(Some(hash(&t).unwrap()));
        assert!(!auth.quick_check(&t));
        assert!(!auth.verify("lla_wrong"));
        assert!(auth.verify(&t));
        assert!(auth.quick_check(&t));
        auth.set_hash(Some(hash("other").unwrap()));
        assert!(!auth.quick_check(&t));
        assert!(!AdminAuth::new(None).verify(&t));
    }
}
