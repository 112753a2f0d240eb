//! The admin token: `LLM_LINK_ADMIN_TOKEN` (`--admin-token`), or one
//! generated on first start, printed once and stored in
//! `settings.admin_token_hash` as `hmac:<hex>`: the keyed hash
//! ([`llm_link_gateway::identity::token_hash`]) under the install's
//! token-hash key, since the token is high-entropy (argon2 is for passwords).
//! `llm-link key reset-admin-token` makes a new one.
//!
//! Installs from before the keyed hash hold an argon2id PHC string there; it
//! is checked with argon2 once and, on success, replaced by the keyed hash
//! ([`upgrade`]).

use super::crypto::random_bytes;
use super::{Db, Result};
use arc_swap::ArcSwapOption;
use base64::Engine;
use llm_link_gateway::identity::token_hash;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The settings key holding the hash.
pub const SETTING: &str = "admin_token_hash";
/// The prefix of a keyed hash in [`SETTING`].
pub const KEYED: &str = "hmac:";

/// A fresh token: `lla_` and 32 random bytes, URL-safe base64.
pub fn generate() -> String {
    format!(
        "lla_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    )
}

/// The stored form of a token: `hmac:` and its keyed hash.
pub fn keyed(token_key: &[u8; 32], token: &str) -> String {
    format!("{KEYED}{}", token_hash(token_key, token))
}

/// The legacy form: argon2id (19 MiB, 2 passes) with a random salt. Only
/// tests and old installs have it; new hashes are [`keyed`].
pub fn hash(token: &str) -> std::result::Result<String, String> {
    crate::users::hash_password(token)
}

fn digest(token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    h.finalize().into()
}

/// Checks presented tokens against the stored hash. A keyed hash is checked
/// at once; a legacy argon2 hash needs [`AdminAuth::verify`] (slow), and a
/// token that verified once is remembered (as a SHA-256 digest) so later
/// calls skip argon2.
#[derive(Default)]
pub struct AdminAuth {
    hash: ArcSwapOption<String>,
    verified: ArcSwapOption<[u8; 32]>,
    token_key: [u8; 32],
}

impl AdminAuth {
    pub fn new(hash: Option<String>, token_key: [u8; 32]) -> AdminAuth {
        AdminAuth {
            hash: ArcSwapOption::from(hash.map(Arc::new)),
            verified: ArcSwapOption::empty(),
            token_key,
        }
    }

    pub fn has_hash(&self) -> bool {
        self.hash.load().is_some()
    }

    /// Whether the stored hash is the legacy argon2 form (checking an
    /// unknown token then costs an argon2 run).
    pub fn is_legacy(&self) -> bool {
        matches!(&*self.hash.load(), Some(h) if !h.starts_with(KEYED))
    }

    /// The stored hash (to upgrade a legacy one).
    pub fn current(&self) -> Option<Arc<String>> {
        self.hash.load_full()
    }

    /// Replaces the hash (another process reset or upgraded the token).
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

    /// Whether `token` matches without running argon2: against a keyed
    /// hash, or a remembered token.
    pub fn quick_check(&self, token: &str) -> bool {
        if let Some(h) = &*self.hash.load() {
            if let Some(hex) = h.strip_prefix(KEYED) {
                let mine = token_hash(&self.token_key, token);
                return llm_link_gateway::auth::ct_eq(hex.as_bytes(), mine.as_bytes());
            }
        }
        match &*self.verified.load() {
            Some(d) => llm_link_gateway::auth::ct_eq(d.as_slice(), &digest(token)),
            None => false,
        }
    }

    /// Full check (argon2 for a legacy hash: tens of milliseconds; run it
    /// off the async workers).
    pub fn verify(&self, token: &str) -> bool {
        if self.quick_check(token) {
            return true;
        }
        let Some(h) = self.hash.load_full() else {
            return false;
        };
        if h.starts_with(KEYED) {
            return false;
        }
        let ok = crate::users::verify_password(&h, token);
        if ok {
            self.verified.store(Some(Arc::new(digest(token))));
        }
        ok
    }

    /// The keyed form of `token` under this install's key.
    pub fn keyed(&self, token: &str) -> String {
        keyed(&self.token_key, token)
    }
}

/// Replaces a legacy argon2 hash that `token` just verified against with
/// the keyed hash, unless another process changed the setting meanwhile.
/// Returns the hash now stored.
pub async fn upgrade(db: &Db, legacy: &str, keyed_hash: &str) -> Result<Option<String>> {
    let mut tx = db.begin().await?;
    let current = tx.setting(SETTING).await?;
    if current.as_deref() == Some(legacy) {
        tx.set_setting(SETTING, keyed_hash).await?;
        tx.audit(
            "llm-link",
            "admin_token.rehash",
            "settings",
            &serde_json::json!({"from": "argon2id", "to": "hmac-sha256"}),
        )
        .await?;
    }
    let stored = tx.setting(SETTING).await?;
    tx.commit().await?;
    Ok(stored)
}

/// At start: make sure a token hash exists. Returns the token when this
/// call generated it (to print once) and the stored hash.
pub async fn ensure(db: &Db, token_key: &[u8; 32]) -> Result<(Option<String>, Option<String>)> {
    let mut tx = db.begin_read().await?;
    let existing = tx.setting(SETTING).await?;
    tx.rollback().await?;
    if existing.is_some() {
        return Ok((None, existing));
    }
    let token = generate();
    let h = keyed(token_key, &token);
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
pub async fn reset(db: &Db, token_key: &[u8; 32], actor: &str) -> Result<String> {
    let token = generate();
    let h = keyed(token_key, &token);
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
        let key = [9u8; 32];
        // Legacy argon2: slow once, then remembered.
        let auth = AdminAuth::new(Some(hash(&t).unwrap()), key);
        assert!(auth.is_legacy());
        assert!(!auth.quick_check(&t));
        assert!(!auth.verify("lla_wrong"));
        assert!(auth.verify(&t));
        assert!(auth.quick_check(&t));
        auth.set_hash(Some(hash("other").unwrap()));
        assert!(!auth.quick_check(&t));
        assert!(!AdminAuth::new(None, key).verify(&t));
        // Keyed: checked at once, under this install's key only.
        let stored = keyed(&key, &t);
        assert!(stored.starts_with("hmac:") && !stored.contains(&t));
        let auth = AdminAuth::new(Some(stored.clone()), key);
        assert!(!auth.is_legacy());
        assert!(auth.quick_check(&t));
        assert!(!auth.quick_check("lla_wrong"));
        assert!(!auth.verify("lla_wrong"));
        assert!(!AdminAuth::new(Some(stored), [1u8; 32]).verify(&t));
    }
}
