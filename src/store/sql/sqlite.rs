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
        let ping_after_idle = options.ping_after_idle;
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // Ping only connections idle for a while (see
            // `SqlOptions::ping_after_idle`), not before every statement.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| super::ping_if_idle(conn, meta, ping_after_idle))
            .connect_with(connect)
            .await
            .map_err(|e| crate::store::StoreError::with_source("sqlite: cannot open the database", e))?;
        let audit_failures = Arc::new(AtomicU64::new(0));
        let audit_writer = if options.audit_batching {
            AuditWriter::start(pool.clone(), options.clone(), audit_failures.clone())
        } else {
            AuditWriter::none(pool.clone(), options.clone(), audit_failures.clone())
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
            version: 5,
            name: "0005_users_upstream",
            sql: include_str!("migrations/sqlite/0005_users_upstream.sql"),
        },
        Migration {
            version: 6,
            name: "0006_lifecycle",
            sql: include_str!("migrations/sqlite/0006_lifecycle.sql"),
        },
        Migration {
            version: 7,
            name: "0007_bounded_growth",
            sql: include_str!("migrations/sqlite/0007_bounded_growth.sql"),
        },
        Migration {
            version: 9,
            name: "0009_consent_per_resource",
            sql: include_str!("migrations/sqlite/0009_consent_per_resource.sql"),
        },
        Migration {
            version: 10,
            name: "0010_sealed_signing_keys",
            sql: include_str!("migrations/sqlite/0010_sealed_signing_keys.sql"),
        },
        Migration {
            version: 11,
            name: "0011_drop_unused_rotation_index",
            sql: include_str!("migrations/sqlite/0011_drop_unused_rotation_index.sql"),
        },
    ]
);

#[cfg(test)]
mod tests {
    //! The listing and bulk-revocation statements walk indexes: their
    //! query plans search, never scan a table.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use sqlx::Row as _;

    use super::super::queries as q;
    use super::*;

    /// Binds: `t` text, `i` integer.
    async fn plan(store: &SqliteStore, sql: &str, binds: &str) -> Vec<String> {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut query = sqlx::query(&explain);
        for b in binds.chars() {
            query = match b {
                't' => query.bind("x"),
                _ => query.bind(1_i64),
            };
        }
        let rows = query.fetch_all(&store.pool).await.unwrap();
        rows.iter().map(|r| r.try_get::<String, _>("detail").unwrap()).collect()
    }

    fn searches_only(plan: &[String], index: &str) {
        assert!(
            plan.iter().any(|l| l.contains(index)),
            "expected the index {index}: {plan:?}"
        );
        for line in plan {
            // A full scan of a table or of an index: both grow with the
            // table.
            assert!(!line.starts_with("SCAN "), "a scan: {plan:?}");
        }
    }

    #[tokio::test]
    async fn listings_and_bulk_revocations_use_indexes() {
        let dir = std::env::temp_dir().join(format!("authio-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("plan.db").display());
        let store = SqliteStore::connect(&url, SqlOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        searches_only(&plan(&store, q::CLIENT_LIST, "titi").await, "clients_listing");
        searches_only(&plan(&store, q::GRANT_SUBJECT_PAGE, "ttitii").await, "grants_subject");
        searches_only(
            &plan(&store, &q::grant_mark_selected("subject = $2"), "ttiii").await,
            "grants_subject",
        );
        searches_only(
            &plan(&store, &q::grant_mark_selected("client_id = $2"), "ttiii").await,
            "grants_client",
        );
        searches_only(
            &plan(
                &store,
                &q::grant_mark_selected("grant_id = $2 AND subject = $6"),
                "ttiiit",
            )
            .await,
            "sqlite_autoindex_grants_1",
        );
        searches_only(&plan(&store, q::PURGE_SUMMARIES, "ii").await, "grants_expiry");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
