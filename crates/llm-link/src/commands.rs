//! The storage subcommands: `backup`, `restore`, `key rotate-master`,
//! `key reset-admin-token`. Mistakes exit 2 with one line.

use crate::args::{say, usage_error, BackupArgs, RestoreArgs, StoreArgs};
use llm_link_store::backup::{self, lock_path, LockFile};
use llm_link_store::boot::{self, PENDING_KEY_FILE};
use llm_link_store::crypto::{self, KeySource, MasterKey};
use llm_link_store::{Db, DbTarget};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The variable `key rotate-master` reads the new key from when the current
/// one comes from `LLM_LINK_MASTER_KEY`.
pub const NEW_MASTER_KEY_ENV: &str = "LLM_LINK_NEW_MASTER_KEY";

pub(crate) fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

pub(crate) fn block_on<F: std::future::Future<Output = ExitCode>>(f: F) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => usage_error(format!("cannot start the async runtime: {e}")),
    }
}

/// The SQLite file the flags point at, or a one-line reason why not.
fn sqlite_file(a: &StoreArgs, what: &str) -> Result<(PathBuf, PathBuf), ExitCode> {
    let r =
        boot::resolve(a.database.as_deref(), a.data_dir.as_deref(), &env).map_err(usage_error)?;
    match r.target {
        DbTarget::SqliteFile(p) => Ok((p, r.data_dir)),
        DbTarget::Postgres(_) => Err(usage_error(format!(
            "--database: {what} works on the SQLite file; for PostgreSQL use pg_dump / pg_restore (see the README)"
        ))),
        DbTarget::SqliteMemory => Err(usage_error(format!(
            "--database: an in-memory database has nothing to {what}"
        ))),
        DbTarget::None => Err(usage_error(format!("--database: `none` has nothing to {what}"))),
    }
}

pub fn backup(a: &BackupArgs) -> ExitCode {
    let (db, data_dir) = match sqlite_file(&a.store, "back up") {
        Ok(x) => x,
        Err(code) => return code,
    };
    let max_age = match a.max_age.as_deref().map(backup::parse_age).transpose() {
        Ok(v) => v,
        Err(m) => return usage_error(format!("--max-age: {m}")),
    };
    if a.keep == Some(0) {
        return usage_error("--keep: must be at least 1");
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| backup::default_backup_path(&data_dir));
    block_on(async move {
        match backup::backup(&db, &out, a.keep, max_age).await {
            Ok(r) => {
                say(format!(
                    "backup written: {} ({} bytes)",
                    r.file.display(),
                    r.bytes
                ));
                for p in &r.removed {
                    say(format!("removed old backup: {}", p.display()));
                }
                say("keys in the backup are encrypted: keep the master key (master.key in the data dir, or LLM_LINK_MASTER_KEY) safe too, or the backup's keys cannot be used");
                ExitCode::SUCCESS
            }
            Err(m) => usage_error(format!("backup: {m}")),
        }
    })
}

/// The current master key without creating one.
fn existing_key(data_dir: &Path) -> Result<Option<(MasterKey, KeySource)>, String> {
    if let Some(v) = env(crypto::MASTER_KEY_ENV).filter(|v| !v.trim().is_empty()) {
        let k = MasterKey::parse(&v).map_err(|m| format!("{}: {m}", crypto::MASTER_KEY_ENV))?;
        return Ok(Some((k, KeySource::Env)));
    }
    let path = data_dir.join(crypto::KEY_FILE);
    match crypto::read_key_file(&path) {
        Ok(Some(k)) => Ok(Some((k, KeySource::File(path)))),
        Ok(None) => Ok(None),
        Err(m) => Err(format!("{}: {m}", path.display())),
    }
}

pub fn restore(a: &RestoreArgs) -> ExitCode {
    let (db, data_dir) = match sqlite_file(&a.store, "restore") {
        Ok(x) => x,
        Err(code) => return code,
    };
    let key = match existing_key(&data_dir) {
        Ok(k) => k.map(|(k, _)| k),
        Err(m) => return usage_error(m),
    };
    let file = a.file.clone();
    let force = a.force;
    block_on(async move {
        match backup::restore(&file, &db, key.as_ref(), force).await {
            Ok(r) => {
                say(format!(
                    "restored {} into {}: {} providers, {} keys, {} catalog models, {} app mappings (integrity check ok)",
                    file.display(),
                    db.display(),
                    r.providers,
                    r.keys,
                    r.models,
                    r.apps
                ));
                if let Some(p) = r.previous {
                    say(format!("the replaced database was kept as {}", p.display()));
                }
                ExitCode::SUCCESS
            }
            Err(m) => usage_error(format!("restore: {m}")),
        }
    })
}

pub fn rotate_master(a: &StoreArgs) -> ExitCode {
    let r = match boot::resolve(a.database.as_deref(), a.data_dir.as_deref(), &env) {
        Ok(r) => r,
        Err(e) => return usage_error(e),
    };
    let _lock = match &r.target {
        DbTarget::None | DbTarget::SqliteMemory => {
            return usage_error("--database: there is no stored database to re-key")
        }
        DbTarget::SqliteFile(p) => match LockFile::try_exclusive(&lock_path(p)) {
            Ok(Some(l)) => Some(l),
            Ok(None) => {
                return usage_error(format!(
                    "a running llm-link holds {}; stop it first (it keeps the old master key in memory)",
                    p.display()
                ))
            }
            Err(e) => return usage_error(format!("--database: cannot lock {}: {e}", p.display())),
        },
        DbTarget::Postgres(_) => None,
    };
    let (old, source) = match existing_key(&r.data_dir) {
        Ok(Some(k)) => k,
        Ok(None) => {
            return usage_error(format!(
                "no master key yet ({} is not set and {} does not exist): nothing to rotate",
                crypto::MASTER_KEY_ENV,
                r.data_dir.join(crypto::KEY_FILE).display()
            ))
        }
        Err(m) => return usage_error(m),
    };
    let (new, generated) = match (
        &source,
        env(NEW_MASTER_KEY_ENV).filter(|v| !v.trim().is_empty()),
    ) {
        (_, Some(v)) => match MasterKey::parse(&v) {
            Ok(k) => (k, false),
            Err(m) => return usage_error(format!("{NEW_MASTER_KEY_ENV}: {m}")),
        },
        _ => (MasterKey::generate(), true),
    };
    if new.id() == old.id() {
        return usage_error(format!("{NEW_MASTER_KEY_ENV}: is the current master key"));
    }
    let target = r.target.clone();
    let data_dir = r.data_dir.clone();
    block_on(async move {
        let (db, _) = match Db::open(&target).await {
            Ok(x) => x,
            Err(m) => return usage_error(format!("--database: {m}")),
        };
        let old = match boot::check_master_key(&db, old, &source, &data_dir).await {
            Ok(k) => k,
            Err(e) => return usage_error(e),
        };
        // With a key file, the new key is on disk before the database
        // commits, so a crash in between loses nothing (serve finishes it).
        let pending = data_dir.join(PENDING_KEY_FILE);
        if let KeySource::File(_) | KeySource::Created(_) = source {
            if let Err(e) = crypto::replace_key_file(&pending, &new) {
                return usage_error(format!("cannot write {}: {e}", pending.display()));
            }
        }
        let n = match boot::rotate(&db, &old, &new, "cli").await {
            Ok(n) => n,
            Err(m) => {
                let _ = std::fs::remove_file(&pending);
                return usage_error(format!("key rotate-master: {m} (nothing changed)"));
            }
        };
        db.close().await;
        say(format!(
            "re-encrypted {n} secrets: master key {} -> {}",
            old.id(),
            new.id()
        ));
        match &source {
            KeySource::File(path) | KeySource::Created(path) => {
                if let Err(e) = std::fs::rename(&pending, path) {
                    return usage_error(format!(
                        "the database uses the new key, but {} could not replace {}: {e}; move it there by hand",
                        pending.display(),
                        path.display()
                    ));
                }
                say(format!("{} now holds the new key", path.display()));
            }
            KeySource::Env if generated => {
                say(format!(
                    "new master key (shown once; set it as {} for every llm-link using this database):",
                    crypto::MASTER_KEY_ENV
                ));
                say(new.encode());
            }
            KeySource::Env => say(format!(
                "set {} to the value of {NEW_MASTER_KEY_ENV} for every llm-link using this database",
                crypto::MASTER_KEY_ENV
            )),
        }
        ExitCode::SUCCESS
    })
}

pub fn reset_admin_token(a: &StoreArgs) -> ExitCode {
    let r = match boot::resolve(a.database.as_deref(), a.data_dir.as_deref(), &env) {
        Ok(r) => r,
        Err(e) => return usage_error(e),
    };
    if matches!(r.target, DbTarget::None | DbTarget::SqliteMemory) {
        return usage_error("--database: there is no stored database to keep a token in");
    }
    block_on(async move {
        let (db, _) = match Db::open(&r.target).await {
            Ok(x) => x,
            Err(m) => return usage_error(format!("--database: {m}")),
        };
        // The token is stored as a keyed hash under the install's token-hash
        // key, which the master key decrypts.
        let secrets = match boot::master_key(&r.data_dir, &env) {
            Ok((key, source)) => match boot::check_master_key(&db, key, &source, &r.data_dir).await
            {
                Ok(key) => llm_link_store::identity::secrets(&db, &key)
                    .await
                    .map_err(|e| format!("--database: {e}")),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        let secrets = match secrets {
            Ok(s) => s,
            Err(m) => {
                db.close().await;
                return usage_error(m);
            }
        };
        let res = llm_link_store::token::reset(&db, &secrets.token_key, "cli").await;
        db.close().await;
        match res {
            Ok(t) => {
                say("new admin token (shown once; running servers pick it up within seconds):");
                say(t);
                if env("LLM_LINK_ADMIN_TOKEN").is_some_and(|v| !v.is_empty()) {
                    say("note: LLM_LINK_ADMIN_TOKEN is set here; servers started with it use that token instead");
                }
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(format!("--database: {e}")),
        }
    })
}
