//! The SQLite backend: one database file, WAL mode.

use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use time::OffsetDateTime;

use super::{Migration, SqlOptions};

/// Every store trait on one SQLite database (feature `sqlite`).
///
/// Open it with [`SqliteStore::connect`], then call
/// [`SqliteStore::migrate`]. See the [module docs](super) for the schema
/// and how each atomic contract is held: SQLite has one writer at a time,
/// and every conditional update and write transaction runs under its
/// write lock. Several processes may share the file on one host (they
/// serialize on the lock); for instances on several hosts use
/// [`super::PostgresStore`].
pub struct SqliteStore {
    pool: SqlitePool,
    options: SqlOptions,
    audit_failures: Arc<AtomicU64>,
    audit_writer: AuditWriter,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url`
    /// (`sqlite://PATH`, `sqlite:PATH`), in WAL mode with
    /// `synchronous = NORMAL` and the options' pool size and timeouts. Does
    /// not migrate.
    ///
    /// # Errors
    /// [`crate::store::StoreError`] for a malformed URL or a file that
    /// cannot be opened.
    pub async fn connect(url: &str, options: SqlOptions) -> Result<Self, crate::store::StoreError> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| crate::store::StoreError::with_source("sqlite: invalid database URL", e))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(options.busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| crate::store::StoreError::with_source("sqlite: cannot open the database", e))?;
        let audit_failures = Arc::new(AtomicU64::new(0));
        let audit_writer = if options.audit_batching {
            AuditWriter::start(pool.clone(), options.clone(), audit_failures.clone())
        } else {
            AuditWriter::none()
        };
        Ok(Self {
            pool,
            options,
            audit_failures,
            audit_writer,
        })
    }

    fn fail(&self, op: &str, e: sqlx::Error) -> crate::store::StoreError {
        let err = crate::store::StoreError::with_source(format!("sqlite: {op} failed"), e);
        if let Some(hook) = &self.options.on_error {
            hook(&err);
        }
        err
    }
}

super::impl_sql_store!(
    SqliteStore,
    SqliteRow,
    "sqlite",
    "BEGIN IMMEDIATE",
    false,
    &[
        Migration {
            version: 1,
            name: "0001_initial",
            sql: include_str!("migrations/sqlite/0001_initial.sql"),
        },
        Migration {
            version: 2,
            name: "0002_cimd_cache_audit",
            sql: include_str!("migrations/sqlite/0002_cimd_cache_audit.sql"),
        },
        Migration {
            version: 3,
            name: "0003_refresh_rotation",
            sql: include_str!("migrations/sqlite/0003_refresh_rotation.sql"),
        },
        Migration {
            version: 4,
            name: "0004_signing_keys_replay",
            sql: include_str!("migrations/sqlite/0004_signing_keys_replay.sql"),
        },
        Migration {
            version: 10,
            name: "0010_sealed_signing_keys",
            sql: include_str!("migrations/sqlite/0010_sealed_signing_keys.sql"),
        },
    ]
);
