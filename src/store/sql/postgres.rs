//! The PostgreSQL backend.

use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use time::OffsetDateTime;

use super::{Migration, SqlOptions};

/// Every store trait on one PostgreSQL database (feature `postgres`), for
/// any number of server instances sharing it.
///
/// Open it with [`PostgresStore::connect`], then call
/// [`PostgresStore::migrate`]. See the [module docs](super) for the schema
/// and how each atomic contract is held: transactions run at PostgreSQL's
/// default `READ COMMITTED`, which is enough because every contended step
/// is a single conditional `UPDATE`: concurrent updaters of one row queue
/// on its row lock, and each re-evaluates the `WHERE` against the row the
/// previous one committed, so exactly one of them matches.
pub struct PostgresStore {
    pool: PgPool,
    options: SqlOptions,
    audit_failures: Arc<AtomicU64>,
    audit_writer: AuditWriter,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects a pool to `url` (`postgres://user@host:port/db`) with the
    /// options' pool size and timeouts. Does not migrate.
    ///
    /// TLS (through rustls) follows the URL's `sslmode`, as sqlx reads it
    /// (without one in the URL: the `PGSSLMODE` environment variable, else
    /// `prefer`): `prefer` encrypts whenever the server offers TLS (also
    /// to a server on the same host), checks no certificate, and falls
    /// back to plain text when the server (or whoever sits in between)
    /// declines;
    /// `require` insists on TLS and still checks no certificate (it stops
    /// a passive eavesdropper, not an active attacker); `verify-full`
    /// checks the certificate chain (against `sslrootcert=PATH` for a
    /// private CA, else the public web roots) and the host name: use it
    /// for a database reached over a network. `?sslmode=disable` for a
    /// server on the same host saves the encryption on both sides (in the
    /// example server's load test, a third of the server's CPU in the
    /// store was TLS; see BENCHMARKS.md). Better still for a server on the
    /// same host: its Unix socket
    /// (`postgres://user@localhost/db?host=/var/run/postgresql`), which
    /// skips both TCP and TLS (6 - 13% more whole flows than TLS over
    /// loopback in the same load test).
    ///
    /// # Errors
    /// [`crate::store::StoreError`] for a malformed URL or a database that
    /// cannot be reached.
    pub async fn connect(url: &str, options: SqlOptions) -> Result<Self, crate::store::StoreError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| crate::store::StoreError::with_source("postgres: invalid database URL", e))?;
        let ping_after_idle = options.ping_after_idle;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // Ping only connections idle for a while (see
            // `SqlOptions::ping_after_idle`), not before every statement.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| super::ping_if_idle(conn, meta, ping_after_idle))
            .connect_with(connect)
            .await
            .map_err(|e| crate::store::StoreError::with_source("postgres: cannot connect to the database", e))?;
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
        let err = crate::store::StoreError::with_source(format!("postgres: {op} failed"), e);
        if let Some(hook) = &self.options.on_error {
            hook(&err);
        }
        err
    }
}

super::impl_sql_store!(
    PostgresStore,
    PgRow,
    "postgres",
    "BEGIN; SELECT pg_advisory_xact_lock(7263540117)",
    true,
    &[
        Migration {
            version: 1,
            name: "0001_initial",
            sql: include_str!("migrations/postgres/0001_initial.sql"),
        },
        Migration {
            version: 2,
            name: "0002_cimd_cache_audit",
            sql: include_str!("migrations/postgres/0002_cimd_cache_audit.sql"),
        },
        Migration {
            version: 3,
            name: "0003_refresh_rotation",
            sql: include_str!("migrations/postgres/0003_refresh_rotation.sql"),
        },
        Migration {
            version: 4,
            name: "0004_signing_keys_replay",
            sql: include_str!("migrations/postgres/0004_signing_keys_replay.sql"),
        },
        Migration {
            version: 5,
            name: "0005_users_upstream",
            sql: include_str!("migrations/postgres/0005_users_upstream.sql"),
        },
        Migration {
            version: 6,
            name: "0006_lifecycle",
            sql: include_str!("migrations/postgres/0006_lifecycle.sql"),
        },
        Migration {
            version: 7,
            name: "0007_bounded_growth",
            sql: include_str!("migrations/postgres/0007_bounded_growth.sql"),
        },
        Migration {
            version: 9,
            name: "0009_consent_per_resource",
            sql: include_str!("migrations/postgres/0009_consent_per_resource.sql"),
        },
        Migration {
            version: 10,
            name: "0010_sealed_signing_keys",
            sql: include_str!("migrations/postgres/0010_sealed_signing_keys.sql"),
        },
        Migration {
            version: 11,
            name: "0011_drop_unused_rotation_index",
            sql: include_str!("migrations/postgres/0011_drop_unused_rotation_index.sql"),
        },
    ]
);

#[cfg(test)]
mod tests {
    //! The listing and bulk-revocation statements walk indexes on
    //! PostgreSQL too (with sequential scans priced out, a statement that
    //! has no usable index still shows one). Runs when
    //! `AUTHIO_TEST_DATABASE_URL` names a server.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use sqlx::Row as _;

    use super::super::queries as q;
    use super::*;

    /// Binds: `t` text, `i` integer.
    async fn plan(conn: &mut sqlx::PgConnection, sql: &str, binds: &str) -> String {
        let explain = format!("EXPLAIN {sql}");
        let mut query = sqlx::query(&explain);
        for b in binds.chars() {
            query = match b {
                't' => query.bind("x"),
                _ => query.bind(1_i64),
            };
        }
        let rows = query.fetch_all(&mut *conn).await.unwrap();
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn searches_only(plan: &str, index: &str) {
        assert!(plan.contains(index), "expected the index {index}:\n{plan}");
        assert!(!plan.contains("Seq Scan"), "a table scan:\n{plan}");
    }

    #[tokio::test]
    async fn listings_and_bulk_revocations_use_indexes() {
        let Ok(admin_url) = std::env::var("AUTHIO_TEST_DATABASE_URL") else {
            println!("skipped: set AUTHIO_TEST_DATABASE_URL to run the PostgreSQL plan test");
            return;
        };
        let mut suffix = [0u8; 8];
        crate::server::RandomSource::fill(&crate::server::SystemRandom, &mut suffix);
        let name = format!(
            "authio_plan_{}",
            suffix.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .unwrap();
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&format!("/{name}"));
        let store = PostgresStore::connect(url.as_str(), SqlOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        {
            let mut conn = store.pool.acquire().await.unwrap();
            sqlx::Executor::execute(&mut *conn, "SET enable_seqscan = off")
                .await
                .unwrap();
            searches_only(&plan(&mut conn, q::CLIENT_LIST, "titi").await, "clients_listing");
            searches_only(
                &plan(&mut conn, q::GRANT_SUBJECT_PAGE, "ttitii").await,
                "grants_subject",
            );
            searches_only(
                &plan(&mut conn, &q::grant_mark_selected("subject = $2"), "ttiii").await,
                "grants_subject",
            );
            searches_only(
                &plan(&mut conn, &q::grant_mark_selected("client_id = $2"), "ttiii").await,
                "grants_client",
            );
            searches_only(
                &plan(
                    &mut conn,
                    &q::grant_mark_selected("grant_id = $2 AND subject = $6"),
                    "ttiiit",
                )
                .await,
                "grants_pkey",
            );
            searches_only(&plan(&mut conn, q::PURGE_SUMMARIES, "ii").await, "grants_expiry");
            sqlx::Executor::execute(&mut *conn, "RESET enable_seqscan")
                .await
                .unwrap();
        }
        store.close().await;
        sqlx::Executor::execute(
            &mut admin,
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
        )
        .await
        .unwrap();
    }
}
