//! Backups (SQLite `VACUUM INTO`, gzip-compressed, kept by count or age),
//! restores (integrity-checked, refused while a server holds the database),
//! and the lock files that make that refusal possible.
//!
//! A running `llm-link serve` holds a shared lock on `<db>.lock`; restore
//! and master key rotation need the exclusive lock, so they fail at once
//! while any server runs. Backups need no lock: `VACUUM INTO` reads a
//! consistent snapshot while the server keeps writing.
//!
//! For PostgreSQL use `pg_dump` / `pg_restore` (see the README).

use super::crypto::MasterKey;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, Row};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The lock a running server holds (shared) and restore takes (exclusive).
pub fn lock_path(db: &Path) -> PathBuf {
    suffixed(db, ".lock")
}

/// The lock held while creating or migrating the schema.
pub fn init_lock_path(db: &Path) -> PathBuf {
    suffixed(db, ".init-lock")
}

fn suffixed(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// An advisory lock on a file, released when dropped.
#[derive(Debug)]
pub struct LockFile {
    file: File,
    pub path: PathBuf,
}

impl LockFile {
    fn open(path: &Path) -> std::io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    }

    /// Shared; `Ok(None)` when someone holds it exclusively.
    pub fn try_shared(path: &Path) -> std::io::Result<Option<LockFile>> {
        let file = Self::open(path)?;
        if fs4::fs_std::FileExt::try_lock_shared(&file)? {
            Ok(Some(LockFile {
                file,
                path: path.to_path_buf(),
            }))
        } else {
            Ok(None)
        }
    }

    /// Exclusive; `Ok(None)` when anyone else holds it.
    pub fn try_exclusive(path: &Path) -> std::io::Result<Option<LockFile>> {
        let file = Self::open(path)?;
        if fs4::fs_std::FileExt::try_lock_exclusive(&file)? {
            Ok(Some(LockFile {
                file,
                path: path.to_path_buf(),
            }))
        } else {
            Ok(None)
        }
    }

    /// Exclusive, waiting for it.
    pub fn exclusive_blocking(path: &Path) -> std::io::Result<LockFile> {
        let file = Self::open(path)?;
        fs4::fs_std::FileExt::lock_exclusive(&file)?;
        Ok(LockFile {
            file,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = fs4::fs_std::FileExt::unlock(&self.file);
    }
}

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub file: PathBuf,
    pub bytes: u64,
    /// Older backups removed by retention.
    pub removed: Vec<PathBuf>,
}

/// The default backup file: `<data dir>/backups/llm-link-<UTC time>.db.gz`.
pub fn default_backup_path(data_dir: &Path) -> PathBuf {
    let ts = super::rfc3339(super::now_ms());
    // 2024-05-01T12:00:00.123Z -> 20240501-120000-123
    let compact: String = ts
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T' || *c == '.')
        .collect::<String>()
        .replace(['T', '.'], "-");
    data_dir
        .join("backups")
        .join(format!("llm-link-{compact}.db.gz"))
}

fn is_backup_name(name: &str) -> bool {
    name.starts_with("llm-link-") && name.ends_with(".db.gz")
}

async fn open_sqlite(path: &Path, create: bool) -> Result<sqlx::SqliteConnection, String> {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(create)
        .busy_timeout(Duration::from_secs(10))
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// Copies the SQLite database at `db` into `out` (gzip), consistent even
/// while a server writes to it, then applies retention in `out`'s folder:
/// keep the newest `keep` backups and drop those older than `max_age`
/// (only files named `llm-link-*.db.gz`).
pub async fn backup(
    db: &Path,
    out: &Path,
    keep: Option<usize>,
    max_age: Option<Duration>,
) -> Result<BackupReport, String> {
    if !db.exists() {
        return Err(format!("{} does not exist", db.display()));
    }
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    super::create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if out.exists() {
        return Err(format!("{} already exists", out.display()));
    }
    let raw = suffixed(out, &format!(".{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&raw);
    let mut conn = open_sqlite(db, false).await?;
    let res = sqlx::query("VACUUM INTO $1")
        .bind(raw.to_string_lossy().as_ref())
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    if let Err(e) = res {
        let _ = std::fs::remove_file(&raw);
        return Err(format!("VACUUM INTO failed: {e}"));
    }
    let gz_tmp = suffixed(out, &format!(".{}.gz-tmp", std::process::id()));
    let compressed = (|| -> std::io::Result<u64> {
        let mut input = BufReader::new(File::open(&raw)?);
        let file = private_create(&gz_tmp)?;
        let mut enc = GzEncoder::new(BufWriter::new(file), flate2::Compression::default());
        std::io::copy(&mut input, &mut enc)?;
        let w = enc.finish()?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(file.metadata()?.len())
    })();
    let _ = std::fs::remove_file(&raw);
    let bytes = match compressed {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&gz_tmp);
            return Err(format!("cannot write {}: {e}", out.display()));
        }
    };
    std::fs::rename(&gz_tmp, out).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let removed = retention(dir, out, keep, max_age);
    Ok(BackupReport {
        file: out.to_path_buf(),
        bytes,
        removed,
    })
}

fn private_create(path: &Path) -> std::io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

fn retention(
    dir: &Path,
    just_written: &Path,
    keep: Option<usize>,
    max_age: Option<Duration>,
) -> Vec<PathBuf> {
    if keep.is_none() && max_age.is_none() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut backups: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_backup_name))
        .filter_map(|e| {
            let modified = e.metadata().ok()?.modified().ok()?;
            Some((modified, e.path()))
        })
        .collect();
    // Newest first; names carry the time too, so ties sort by name.
    backups.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    let now = SystemTime::now();
    let mut removed = Vec::new();
    for (i, (modified, path)) in backups.iter().enumerate() {
        if path == just_written {
            continue;
        }
        let too_many = keep.is_some_and(|k| i >= k.max(1));
        let too_old = max_age.is_some_and(|age| {
            now.duration_since(*modified)
                .map(|d| d > age)
                .unwrap_or(false)
        });
        if (too_many || too_old) && std::fs::remove_file(path).is_ok() {
            removed.push(path.clone());
        }
    }
    removed
}

/// What a restore found in the backup.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub providers: i64,
    pub keys: i64,
    pub models: i64,
    pub apps: i64,
    /// Where the replaced database was kept, if there was one.
    pub previous: Option<PathBuf>,
    pub master_key_id: Option<String>,
}

/// Replaces the SQLite database at `db` with the backup `src` (gzip or a
/// plain SQLite file) after checking it: `PRAGMA integrity_check`, an
/// llm-link schema this binary knows, and secrets written with `key` (unless
/// `force`). Refuses while a server holds the database.
pub async fn restore(
    src: &Path,
    db: &Path,
    key: Option<&MasterKey>,
    force: bool,
) -> Result<RestoreReport, String> {
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    super::create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let _lock = match LockFile::try_exclusive(&lock_path(db)) {
        Ok(Some(l)) => l,
        Ok(None) => {
            return Err(format!(
                "a running llm-link holds {}; stop it first (restore replaces the database file)",
                db.display()
            ))
        }
        Err(e) => return Err(format!("cannot lock {}: {e}", db.display())),
    };
    let tmp = suffixed(db, &format!(".restore-{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let cleanup = |p: &Path| {
        for s in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(suffixed(p, s));
        }
    };
    if let Err(e) = unpack(src, &tmp) {
        cleanup(&tmp);
        return Err(e);
    }
    let report = match check(&tmp, key, force).await {
        Ok(r) => r,
        Err(e) => {
            cleanup(&tmp);
            return Err(e);
        }
    };
    let mut previous = None;
    if db.exists() {
        // Fold the WAL into the main file so the kept copy is complete.
        if let Ok(mut c) = open_sqlite(db, false).await {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut c)
                .await;
            let _ = c.close().await;
        }
        let keep = suffixed(
            db,
            &format!(".before-restore-{}", super::now_ms().div_euclid(1000)),
        );
        std::fs::rename(db, &keep)
            .map_err(|e| format!("cannot move {} aside: {e}", db.display()))?;
        previous = Some(keep);
    }
    for s in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(suffixed(db, s));
    }
    std::fs::rename(&tmp, db)
        .map_err(|e| format!("cannot move the restored file into place: {e}"))?;
    cleanup(&tmp);
    Ok(RestoreReport { previous, ..report })
}

fn unpack(src: &Path, to: &Path) -> Result<(), String> {
    let mut f = File::open(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let mut magic = [0u8; 2];
    let n = f
        .read(&mut magic)
        .map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let f = File::open(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let mut input: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(GzDecoder::new(BufReader::new(f)))
    } else {
        Box::new(BufReader::new(f))
    };
    let out = private_create(to).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    let mut w = BufWriter::new(out);
    std::io::copy(&mut input, &mut w)
        .map_err(|e| format!("{} is not a readable backup: {e}", src.display()))?;
    let out = w.into_inner().map_err(|e| e.into_error().to_string())?;
    out.sync_all().map_err(|e| e.to_string())?;
    let mut head = [0u8; 16];
    let mut r = File::open(to).map_err(|e| e.to_string())?;
    if r.read_exact(&mut head).is_err() || &head != b"SQLite format 3\0" {
        return Err(format!(
            "{} is not an llm-link backup (not a SQLite database)",
            src.display()
        ));
    }
    Ok(())
}

async fn check(tmp: &Path, key: Option<&MasterKey>, force: bool) -> Result<RestoreReport, String> {
    let mut c = SqliteConnectOptions::new()
        .filename(tmp)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Delete)
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| format!("the backup cannot be opened: {e}"))?;
    let res = check_conn(&mut c, key, force).await;
    let _ = c.close().await;
    res
}

async fn check_conn(
    c: &mut sqlx::SqliteConnection,
    key: Option<&MasterKey>,
    force: bool,
) -> Result<RestoreReport, String> {
    let rows = sqlx::query("PRAGMA integrity_check")
        .fetch_all(&mut *c)
        .await
        .map_err(|e| format!("integrity check failed: {e}"))?;
    let results: Vec<String> = rows
        .iter()
        .filter_map(|r| r.try_get::<String, _>(0).ok())
        .collect();
    if results != ["ok"] {
        return Err(format!(
            "integrity check failed: {}",
            results.into_iter().take(3).collect::<Vec<_>>().join("; ")
        ));
    }
    let max_version: Option<i64> = sqlx::query("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&mut *c)
        .await
        .map_err(|_| "not an llm-link database (no migration table)".to_string())?
        .try_get(0)
        .map_err(|e| e.to_string())?;
    let known = super::SQLITE_MIGRATIONS
        .iter()
        .map(|m| m.0)
        .max()
        .unwrap_or(0);
    if max_version.unwrap_or(0) > known {
        return Err(format!(
            "the backup has schema version {}, newer than this llm-link knows ({known}); restore it with a newer llm-link",
            max_version.unwrap_or(0)
        ));
    }
    let providers = count(c, "providers")
        .await
        .map_err(|_| "not an llm-link database (no providers table)")?;
    let keys = count(c, "provider_keys").await.map_err(|e| e.to_string())?;
    let models = count(c, "llm_models").await.map_err(|e| e.to_string())?;
    let apps = count(c, "app_mappings").await.map_err(|e| e.to_string())?;
    let master_key_id: Option<String> =
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'master_key_id'")
            .fetch_optional(&mut *c)
            .await
            .map_err(|e| e.to_string())?;
    if let (Some(k), Some(id)) = (key, &master_key_id) {
        if k.id() != id && !force {
            return Err(format!(
                "the backup's secrets were encrypted with master key {id}, but the current master key is {}; restore the matching master key (master.key or LLM_LINK_MASTER_KEY) first, or pass --force to restore anyway",
                k.id()
            ));
        }
    }
    Ok(RestoreReport {
        providers,
        keys,
        models,
        apps,
        previous: None,
        master_key_id,
    })
}

async fn count(c: &mut sqlx::SqliteConnection, table: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(c)
        .await
}

/// Parses a retention age: `30d`, `12h`, `90m` or plain seconds.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Some(days) = t.strip_suffix('d') {
        let n: f64 = days
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an age (try 30d or 12h)"))?;
        if n > 0.0 && n < 100_000.0 {
            return Ok(Duration::from_secs_f64(n * 86_400.0));
        }
        return Err(format!("`{s}` must be positive"));
    }
    llm_link_gateway::config::parse_duration(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ages() {
        let p = default_backup_path(Path::new("/d"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(is_backup_name(name), "{name}");
        assert!(p.starts_with("/d/backups"));
        assert_eq!(parse_age("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_age("90m").unwrap(), Duration::from_secs(5400));
        assert!(parse_age("x").is_err());
        assert_eq!(
            lock_path(Path::new("/d/a.db")),
            PathBuf::from("/d/a.db.lock")
        );
    }

    #[test]
    fn locks_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let shared = LockFile::try_shared(&p).unwrap().unwrap();
        let shared2 = LockFile::try_shared(&p).unwrap();
        assert!(shared2.is_some(), "servers share the lock");
        assert!(LockFile::try_exclusive(&p).unwrap().is_none());
        drop(shared);
        drop(shared2);
        let ex = LockFile::try_exclusive(&p).unwrap().unwrap();
        assert!(LockFile::try_shared(&p).unwrap().is_none());
        drop(ex);
    }
}
