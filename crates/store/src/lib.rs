//! Storage: providers, their keys, the model catalog, app mappings,
//! settings and the audit log, in SQLite (the default, a file in the data
//! dir) or PostgreSQL (`--database postgres://…`, shared by replicas).
//!
//! Nothing on the request path reads the database: [`layer`] turns the rows
//! into `ProviderConfig`s (secrets decrypted in memory only), which the
//! server composes into a new runtime snapshot after every change.
//!
//! Both engines run the same code: [`Db`] and [`Tx`] are two-variant enums,
//! and every query is written once with `$n` placeholders (which SQLite
//! accepts too) and a portable subset of SQL; the `on!` macro expands a body
//! once per engine so each is type-checked against its own driver.

pub mod backup;
pub mod boot;
pub mod crypto;
pub mod identity;
pub mod layer;
pub mod responses;
pub mod rows;
pub mod token;
pub mod usage;
pub mod users;

use crypto::MasterKey;
use llm_link_gateway::config::ConfigError;
use sqlx::migrate::{MigrationSource, MigrationType, Migrator};
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::ConnectOptions;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use llm_link_gateway::util::{now_ms, rfc3339};

/// The SQLite file's name in the data dir.
pub const DB_FILE: &str = "llm-link.db";

/// Embedded migrations, applied at start (`_sqlx_migrations` records them,
/// as the sqlx CLI would).
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "usage",
        include_str!("../migrations/sqlite/0002_usage.sql"),
    ),
    (
        3,
        "identity",
        include_str!("../migrations/sqlite/0003_identity.sql"),
    ),
    (
        4,
        "cached_price",
        include_str!("../migrations/sqlite/0004_cached_price.sql"),
    ),
    (
        5,
        "responses",
        include_str!("../migrations/sqlite/0005_responses.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "usage",
        include_str!("../migrations/postgres/0002_usage.sql"),
    ),
    (
        3,
        "identity",
        include_str!("../migrations/postgres/0003_identity.sql"),
    ),
    (
        4,
        "cached_price",
        include_str!("../migrations/postgres/0004_cached_price.sql"),
    ),
    (
        5,
        "responses",
        include_str!("../migrations/postgres/0005_responses.sql"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot decrypt a stored secret: {0}")]
    Crypto(#[from] crypto::CryptoError),
    #[error("unreadable row: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// A unique or foreign-key constraint said no.
    pub fn is_conflict(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => matches!(
                e.kind(),
                sqlx::error::ErrorKind::UniqueViolation
                    | sqlx::error::ErrorKind::ForeignKeyViolation
            ),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    SqliteFile(PathBuf),
    SqliteMemory,
    /// The URL with any password removed.
    Postgres(String),
}

impl Location {
    pub fn describe(&self) -> String {
        match self {
            Location::SqliteFile(p) => format!("SQLite {}", p.display()),
            Location::SqliteMemory => "SQLite in memory (nothing is kept)".into(),
            Location::Postgres(u) => format!("PostgreSQL {u}"),
        }
    }
}

/// What `--database` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTarget {
    None,
    SqliteFile(PathBuf),
    SqliteMemory,
    Postgres(String),
}

/// The data dir: `--data-dir`, else `$XDG_DATA_HOME/llm-link`, else
/// `~/.local/share/llm-link`.
pub fn data_dir(
    flag: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, ConfigError> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(x) = env("XDG_DATA_HOME").filter(|x| !x.trim().is_empty()) {
        return Ok(PathBuf::from(x).join("llm-link"));
    }
    match env("HOME").filter(|h| !h.trim().is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/llm-link")),
        None => Err(ConfigError::new(
            "--data-dir",
            "no home directory to put the data dir in; pass --data-dir DIR (or LLM_LINK_DATA_DIR)",
        )),
    }
}

/// Reads `--database`: absent means the SQLite file in the data dir;
/// `none` runs without a database (no admin API for providers).
pub fn parse_target(database: Option<&str>, data_dir: &Path) -> Result<DbTarget, ConfigError> {
    let Some(url) = database.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(DbTarget::SqliteFile(data_dir.join(DB_FILE)));
    };
    let lower = url.to_ascii_lowercase();
    if lower == "none" || lower == "off" {
        return Ok(DbTarget::None);
    }
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        PgConnectOptions::from_str(url).map_err(|e| {
            ConfigError::new(
                "--database",
                format!(
                    "not a valid PostgreSQL URL ({})",
                    redact_error(&e.to_string())
                ),
            )
        })?;
        return Ok(DbTarget::Postgres(url.to_string()));
    }
    if lower == "sqlite::memory:" || lower == ":memory:" {
        return Ok(DbTarget::SqliteMemory);
    }
    let path = if let Some(rest) = url.strip_prefix("sqlite://") {
        rest
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        rest
    } else if url.contains("://") {
        return Err(ConfigError::new(
            "--database",
            "unsupported database URL; use a file path, sqlite://PATH, postgres://… or none",
        ));
    } else {
        url
    };
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() {
        return Err(ConfigError::new(
            "--database",
            "the SQLite file path is empty",
        ));
    }
    Ok(DbTarget::SqliteFile(PathBuf::from(path)))
}

/// A provider base URL as the admin API and the start-up lines show it: a
/// password in it (user-info, or a `password` query parameter) masked,
/// anything else exactly as configured.
pub fn shown_base_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(p)
            if p.password().is_some()
                || p.query_pairs()
                    .any(|(k, _)| k.to_ascii_lowercase().contains("password")) =>
        {
            redact_url(u)
        }
        _ => u.to_string(),
    }
}

/// The URL without its password, for logs and the banner: the one in the
/// user-info part and any in the query (`?password=…`, `?sslpassword=…`,
/// which the PostgreSQL driver reads too).
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return "postgres://…".into();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("****"));
    }
    let secret = |k: &str| k.to_ascii_lowercase().contains("password");
    if u.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) {
                    "****".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

fn redact_error(msg: &str) -> String {
    // sqlx's URL errors do not echo the URL, but never risk a password.
    msg.split_whitespace()
        .map(|w| if w.contains("://") { "<url>" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A pool on one of the two engines.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A transaction on one of the two engines.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` with `$c` bound to the transaction's connection, once per
/// engine.
macro_rules! on {
    ($tx:expr, |$c:ident| $body:expr) => {
        match $tx {
            $crate::Tx::Sqlite(t) => {
                let $c: &mut sqlx::SqliteConnection = &mut *t;
                $body
            }
            $crate::Tx::Postgres(t) => {
                let $c: &mut sqlx::PgConnection = &mut *t;
                $body
            }
        }
    };
}
pub(crate) use on;

impl Db {
    /// Opens (creating a SQLite file if needed) and applies migrations.
    pub async fn open(target: &DbTarget) -> Result<(Db, Location), String> {
        match target {
            DbTarget::None => Err("no database configured".into()),
            DbTarget::SqliteFile(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    create_private_dir(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                // Two processes starting at once on a fresh file must not both
                // create the schema: SQLite has no advisory lock, so take a file lock.
                let _guard = backup::LockFile::exclusive_blocking(&backup::init_lock_path(path))
                    .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
                    .disable_statement_logging();
                let pool = PoolOptions::<sqlx::Sqlite>::new()
                    .max_connections(4)
                    .min_connections(0)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await
                    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
                restrict_file(path);
                let db = Db::Sqlite(pool);
                db.migrate().await.map_err(|e| e.to_string())?;
                Ok((db, Location::SqliteFile(path.clone())))
            }
            DbTarget::SqliteMemory => {
                let opts = SqliteConnectOptions::from_str("sqlite::memory:")
                    .map_err(|e| e.to_string())?
                    .foreign_keys(true)
                    .disable_statement_logging();
                // One connection: every connection to :memory: is its own database.
                let pool = PoolOptions::<sqlx::Sqlite>::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_with(opts)
                    .await
                    .map_err(|e| e.to_string())?;
                let db = Db::Sqlite(pool);
                db.migrate().await.map_err(|e| e.to_string())?;
                Ok((db, Location::SqliteMemory))
            }
            DbTarget::Postgres(url) => {
                let opts = PgConnectOptions::from_str(url)
                    .map_err(|e| redact_error(&e.to_string()))?
                    .application_name("llm-link")
                    .disable_statement_logging();
                let refused = |e: sqlx::Error| {
                    format!(
                        "cannot connect to {}: {}",
                        redact_url(url),
                        redact_error(&e.to_string())
                    )
                };
                // One direct attempt first: a refused connection is reported
                // at once and as such, not as a pool timeout 10 s later.
                let probe = <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts)
                    .await
                    .map_err(refused)?;
                let _ = sqlx::Connection::close(probe).await;
                let pool = PoolOptions::<sqlx::Postgres>::new()
                    .max_connections(8)
                    .min_connections(0)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await
                    .map_err(refused)?;
                let db = Db::Postgres(pool);
                // sqlx takes an advisory lock, so replicas starting together are fine.
                db.migrate().await.map_err(|e| e.to_string())?;
                Ok((db, Location::Postgres(redact_url(url))))
            }
        }
    }

    async fn migrate(&self) -> Result<()> {
        match self {
            Db::Sqlite(p) => {
                Migrator::new(Embedded(SQLITE_MIGRATIONS))
                    .await?
                    .run(p)
                    .await?
            }
            Db::Postgres(p) => {
                Migrator::new(Embedded(POSTGRES_MIGRATIONS))
                    .await?
                    .run(p)
                    .await?
            }
        }
        Ok(())
    }

    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            // IMMEDIATE: take the write lock up front, so two writers never
            // deadlock upgrading a read lock (busy_timeout then queues them).
            Db::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// A transaction for reads only (SQLite: deferred, takes no write lock).
    pub async fn begin_read(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.rollback().await?,
            Tx::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }
}

/// Migrations compiled into the binary.
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> futures_util::future::BoxFuture<
        's,
        std::result::Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
    > {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(v, d, sql)| {
                    sqlx::migrate::Migration::new(
                        *v,
                        Cow::Borrowed(*d),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Creates a directory (and parents) readable by its owner only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Database files hold ciphertexts only, but still are nobody else's business.
fn restrict_file(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Everything the store needs at run time: the pool, the master key, and
/// the lock that orders changes and runtime swaps.
pub struct Store {
    pub db: Db,
    pub key: MasterKey,
    pub location: Location,
    /// Held from reading the database to swapping the runtime, so two
    /// changes never swap in the wrong order.
    pub apply_lock: tokio::sync::Mutex<()>,
    /// The settings `revision` last applied (replicas poll it).
    pub applied_revision: std::sync::atomic::AtomicI64,
    pub admin: token::AdminAuth,
    /// The identity secrets (token-hash key, session signing key).
    pub secrets: identity::IdentitySecrets,
    /// The `identity_revision` last applied (replicas poll it).
    pub applied_identity_revision: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .field("key", &self.key)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_shown_without_passwords() {
        assert_eq!(
            shown_base_url("https://user:hunter2@proxy.example/v1"),
            "https://user:****@proxy.example/v1"
        );
        assert!(!shown_base_url("http://h/v1?password=hunter2").contains("hunter2"));
        // Anything without a secret is shown exactly as configured.
        assert_eq!(
            shown_base_url("http://localhost:8000"),
            "http://localhost:8000"
        );
        assert_eq!(
            shown_base_url("https://api.openai.com/v1/"),
            "https://api.openai.com/v1/"
        );
    }

    #[test]
    fn targets() {
        let dd = Path::new("/data");
        assert_eq!(
            parse_target(None, dd).unwrap(),
            DbTarget::SqliteFile(PathBuf::from("/data/llm-link.db"))
        );
        assert_eq!(parse_target(Some("none"), dd).unwrap(), DbTarget::None);
        assert_eq!(
            parse_target(Some("sqlite:///tmp/x.db"), dd).unwrap(),
            DbTarget::SqliteFile(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(
            parse_target(Some("sqlite:rel.db?mode=rwc"), dd).unwrap(),
            DbTarget::SqliteFile(PathBuf::from("rel.db"))
        );
        assert_eq!(
            parse_target(Some("sqlite::memory:"), dd).unwrap(),
            DbTarget::SqliteMemory
        );
        assert!(matches!(
            parse_target(Some("postgres://u:p@localhost/db"), dd).unwrap(),
            DbTarget::Postgres(_)
        ));
        let e = parse_target(Some("mysql://x"), dd).unwrap_err();
        assert_eq!(e.field, "--database");
        assert_eq!(
            redact_url("postgres://u:hunter2@h:5432/db"),
            "postgres://u:****@h:5432/db"
        );
        // The driver also reads a password from the query string.
        let r = redact_url("postgres://u@h/db?sslmode=require&password=hunter2&sslpassword=x2");
        assert!(!r.contains("hunter2") && !r.contains("x2"), "{r}");
        assert!(r.contains("sslmode=require"), "{r}");
    }

    #[test]
    fn data_dir_defaults() {
        let env = |k: &str| match k {
            "HOME" => Some("/home/a".to_string()),
            _ => None,
        };
        assert_eq!(
            data_dir(None, &env).unwrap(),
            PathBuf::from("/home/a/.local/share/llm-link")
        );
        let env = |k: &str| match k {
            "XDG_DATA_HOME" => Some("/x".to_string()),
            _ => None,
        };
        assert_eq!(data_dir(None, &env).unwrap(), PathBuf::from("/x/llm-link"));
        assert_eq!(data_dir(None, &|_| None).unwrap_err().field, "--data-dir");
    }
}
