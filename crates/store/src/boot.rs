//! Opening the store when `llm-link serve` starts: data dir, master key,
//! database (migrated), lock, admin token, first snapshot. Every failure is
//! a [`ConfigError`] naming the flag or variable at fault.

use super::backup::{lock_path, LockFile};
use super::crypto::{self, KeySource, MasterKey};
use super::token::{self, AdminAuth};
use super::{data_dir, parse_target, Db, DbTarget, Location, Store};
use crate::layer::db_layer;
use llm_link_gateway::config::catalog::DbLayer;
use llm_link_gateway::config::ConfigError;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

/// The settings key recording which master key encrypted the secrets.
pub const MASTER_KEY_ID: &str = "master_key_id";
/// Where `key rotate-master` puts the new key until the database commits.
pub const PENDING_KEY_FILE: &str = "master.key.new";

pub struct Opened {
    pub store: Arc<Store>,
    pub layer: DbLayer,
    /// Generated on this start: print it once.
    pub new_admin_token: Option<String>,
    pub key_source: KeySource,
    pub data_dir: PathBuf,
    /// Held while serving: restore refuses while it is.
    pub lock: Option<LockFile>,
}

/// Data dir, target and master key, shared by `serve` and the subcommands.
pub struct Resolved {
    pub data_dir: PathBuf,
    pub target: DbTarget,
}

pub fn resolve(
    database: Option<&str>,
    data_dir_flag: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, ConfigError> {
    let dd = data_dir(data_dir_flag, env)?;
    let target = parse_target(database, &dd)?;
    Ok(Resolved {
        data_dir: dd,
        target,
    })
}

/// The master key (creating the key file in the data dir on first use).
pub fn master_key(
    data_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(MasterKey, KeySource), ConfigError> {
    if env(crypto::MASTER_KEY_ENV).is_none_or(|v| v.trim().is_empty()) {
        super::create_private_dir(data_dir).map_err(|e| {
            ConfigError::new(
                "--data-dir",
                format!(
                    "cannot create {}: {e} (pass --data-dir DIR, or --database none to run without a database)",
                    data_dir.display()
                ),
            )
        })?;
    }
    crypto::load_master_key(data_dir, env).map_err(|(field, m)| ConfigError::new(field, m))
}

/// Checks (and on first use records) which master key the database's
/// secrets belong to; finishes an interrupted rotation.
pub async fn check_master_key(
    db: &Db,
    key: MasterKey,
    source: &KeySource,
    data_dir: &Path,
) -> Result<MasterKey, ConfigError> {
    let field = match source {
        KeySource::Env => crypto::MASTER_KEY_ENV.to_string(),
        KeySource::File(p) | KeySource::Created(p) => p.display().to_string(),
    };
    let db_err = |e: super::StoreError| ConfigError::new("--database", e.to_string());
    let mut tx = db.begin().await.map_err(db_err)?;
    tx.insert_setting_if_absent(MASTER_KEY_ID, key.id())
        .await
        .map_err(db_err)?;
    let stored = tx.setting(MASTER_KEY_ID).await.map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    let Some(stored) = stored else {
        return Ok(key);
    };
    if stored == key.id() {
        return Ok(key);
    }
    // `key rotate-master` committed but did not get to replace the key file.
    if let KeySource::File(path) | KeySource::Created(path) = source {
        let pending = data_dir.join(PENDING_KEY_FILE);
        if let Ok(Some(k)) = crypto::read_key_file(&pending) {
            if k.id() == stored {
                std::fs::rename(&pending, path).map_err(|e| {
                    ConfigError::new(
                        field.clone(),
                        format!("cannot finish the master key rotation: {e}"),
                    )
                })?;
                tracing::warn!("finished an interrupted master key rotation");
                return Ok(k);
            }
        }
    }
    Err(ConfigError::new(
        field,
        format!(
            "the database's secrets were encrypted with master key {stored}, but this master key is {}; use the matching key (LLM_LINK_MASTER_KEY or master.key in the data dir)",
            key.id()
        ),
    ))
}

/// Everything `serve` needs from storage; `Ok(None)` with `--database none`.
pub async fn open(
    database: Option<&str>,
    data_dir_flag: Option<&Path>,
    explicit_admin_token: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Opened>, ConfigError> {
    let r = resolve(database, data_dir_flag, env)?;
    if r.target == DbTarget::None {
        return Ok(None);
    }
    let (key, key_source) = master_key(&r.data_dir, env)?;
    let lock = match &r.target {
        DbTarget::SqliteFile(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                super::create_private_dir(dir).map_err(|e| {
                    ConfigError::new(
                        "--database",
                        format!("cannot create {}: {e}", dir.display()),
                    )
                })?;
            }
            match LockFile::try_shared(&lock_path(path)) {
                Ok(Some(l)) => Some(l),
                Ok(None) => {
                    return Err(ConfigError::new(
                        "--database",
                        format!(
                            "{} is being restored or re-keyed by another llm-link; try again when it is done",
                            path.display()
                        ),
                    ))
                }
                Err(e) => {
                    return Err(ConfigError::new(
                        "--database",
                        format!("cannot lock {}: {e}", path.display()),
                    ))
                }
            }
        }
        _ => None,
    };
    let (db, location) = Db::open(&r.target)
        .await
        .map_err(|m| ConfigError::new("--database", m))?;
    let key = check_master_key(&db, key, &key_source, &r.data_dir).await?;
    let db_err = |e: super::StoreError| ConfigError::new("--database", e.to_string());
    let secrets = crate::identity::secrets(&db, &key).await.map_err(db_err)?;
    let (new_admin_token, hash) = if explicit_admin_token {
        let mut tx = db.begin_read().await.map_err(db_err)?;
        let h = tx.setting(token::SETTING).await.map_err(db_err)?;
        tx.rollback().await.map_err(db_err)?;
        (None, h)
    } else {
        token::ensure(&db, &secrets.token_key)
            .await
            .map_err(db_err)?
    };
    let mut tx = db.begin_read().await.map_err(db_err)?;
    let snap = tx.snapshot().await.map_err(db_err)?;
    tx.rollback().await.map_err(db_err)?;
    let layer = db_layer(&snap, &key);
    for (name, why) in &layer.inactive {
        tracing::warn!("database provider {name} is not serving: {why}");
    }
    Ok(Some(Opened {
        store: new_store(db, key, location, snap.revision, hash, secrets),
        layer,
        new_admin_token,
        key_source,
        data_dir: r.data_dir,
        lock,
    }))
}

/// Opens a store for tests and tools: the given target and master key,
/// no lock, no generated admin token.
pub async fn open_with_key(
    target: &DbTarget,
    key: MasterKey,
) -> Result<(Arc<Store>, DbLayer), String> {
    let (db, location) = Db::open(target).await?;
    let source = KeySource::Env;
    let key = check_master_key(&db, key, &source, Path::new("."))
        .await
        .map_err(|e| e.to_string())?;
    let mut tx = db.begin_read().await.map_err(|e| e.to_string())?;
    let snap = tx.snapshot().await.map_err(|e| e.to_string())?;
    let hash = tx
        .setting(token::SETTING)
        .await
        .map_err(|e| e.to_string())?;
    tx.rollback().await.map_err(|e| e.to_string())?;
    let layer = db_layer(&snap, &key);
    let secrets = crate::identity::secrets(&db, &key)
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        new_store(db, key, location, snap.revision, hash, secrets),
        layer,
    ))
}

/// The store as opened at `revision`, with the stored admin token hash.
fn new_store(
    db: Db,
    key: MasterKey,
    location: Location,
    revision: i64,
    hash: Option<String>,
    secrets: crate::identity::IdentitySecrets,
) -> Arc<Store> {
    Arc::new(Store {
        db,
        key,
        location,
        apply_lock: tokio::sync::Mutex::new(()),
        applied_revision: AtomicI64::new(revision),
        admin: AdminAuth::new(hash, secrets.token_key),
        secrets,
        // Below any real revision: the first reload always applies.
        applied_identity_revision: AtomicI64::new(-1),
    })
}

impl Location {
    /// Shown in the start-up lines.
    pub fn banner(&self, key: &KeySource) -> String {
        format!("{} (master key: {})", self.describe(), key.describe())
    }
}

/// Re-encrypts every secret (provider and catalog keys, provider headers)
/// from `old` to `new` in one transaction, and records the new key id.
/// Returns how many secrets were re-encrypted.
pub async fn rotate(
    db: &Db,
    old: &MasterKey,
    new: &MasterKey,
    actor: &str,
) -> Result<usize, String> {
    let err = |e: crate::StoreError| e.to_string();
    let mut tx = db.begin().await.map_err(err)?;
    tx.bump_revision().await.map_err(err)?;
    let stored = tx.setting(MASTER_KEY_ID).await.map_err(err)?;
    if let Some(id) = &stored {
        if id != old.id() {
            let _ = tx.rollback().await;
            return Err(format!(
                "the database's secrets belong to master key {id}, not to the current key {}",
                old.id()
            ));
        }
    }
    let mut n = 0;
    for k in tx.keys().await.map_err(err)? {
        let plain = old
            .decrypt(&k.secret)
            .map_err(|e| format!("key {}: {e}", k.id))?;
        let ct = new
            .encrypt(plain.expose())
            .map_err(|e| format!("key {}: {e}", k.id))?;
        tx.set_key_secret(k.id, &ct).await.map_err(err)?;
        n += 1;
    }
    for p in tx.providers().await.map_err(err)? {
        if let Some(h) = &p.headers {
            let plain = old
                .decrypt(h)
                .map_err(|e| format!("provider {} headers: {e}", p.id))?;
            let ct = new
                .encrypt(plain.expose())
                .map_err(|e| format!("provider {} headers: {e}", p.id))?;
            tx.set_provider_headers(p.id, Some(&ct))
                .await
                .map_err(err)?;
            n += 1;
        }
    }
    for name in [crate::identity::TOKEN_HASH_KEY, crate::identity::JWT_SECRET] {
        if let Some(ct) = tx.setting(name).await.map_err(err)? {
            let plain = old.decrypt(&ct).map_err(|e| format!("{name}: {e}"))?;
            let ct = new
                .encrypt(plain.expose())
                .map_err(|e| format!("{name}: {e}"))?;
            tx.set_setting(name, &ct).await.map_err(err)?;
            n += 1;
        }
    }
    tx.set_setting(MASTER_KEY_ID, new.id()).await.map_err(err)?;
    tx.audit(
        actor,
        "master_key.rotate",
        "settings",
        &serde_json::json!({"from": old.id(), "to": new.id(), "secrets": n}),
    )
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(n)
}
