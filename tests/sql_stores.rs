//! The store contract suite against every store the crate ships (memory,
//! SQLite, PostgreSQL), and what only the SQL stores have: embedded
//! migrations, bounded purging, the capped CIMD cache, audit retention,
//! and recovery from database faults.
//!
//! PostgreSQL tests run when `AUTHIO_TEST_DATABASE_URL` names a server
//! (each creates and drops a database of its own); without it they print
//! one line and pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod sql_support;

use std::sync::Arc;

use authio_mcp::store::contract::{self, Stores};
use authio_mcp::store::sql::{SqlOptions, SqliteStore};
use sql_support::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_stores_keep_the_contract() {
    contract::run_all(&Stores::memory()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_keeps_the_contract() {
    let dir = TempDir::new();
    let store = SqliteStore::connect(&dir.sqlite_url("contract.db"), sql_support::sealed_options())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let store = Arc::new(store);
    contract::run_all(&Stores::all(store.clone())).await.unwrap();
    // Twice on one database: the suite's data never collides.
    contract::run_all(&Stores::all(store.clone())).await.unwrap();
    assert_eq!(store.audit_failures(), 0);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_keeps_the_contract() {
    use authio_mcp::store::sql::PostgresStore;
    let Some(db) = sql_support::pg_database("postgres_store_keeps_the_contract").await else {
        return;
    };
    let store = PostgresStore::connect(&db.url, sql_support::sealed_options().max_connections(20))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let store = Arc::new(store);
    contract::run_all(&Stores::all(store.clone())).await.unwrap();
    contract::run_all(&Stores::all(store.clone())).await.unwrap();
    assert_eq!(store.audit_failures(), 0);
    store.close().await;
}

/// Two stores (two pools, as two processes would have) on one SQLite
/// file: activations and first uses of one `jti` race across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_keys_and_replay_hold_across_two_stores() {
    let dir = TempDir::new();
    let url = dir.sqlite_url("two.db");
    let a = SqliteStore::connect(&url, sql_support::sealed_options()).await.unwrap();
    a.migrate().await.unwrap();
    let b = SqliteStore::connect(&url, sql_support::sealed_options()).await.unwrap();
    contract::signing_key_activation_race(&a, &b).await.unwrap();
    contract::replay(&a, &b).await.unwrap();
    contract::admission_windows(&a, &b).await.unwrap();
    contract::upstream_logins(&a, &b).await.unwrap();
    contract::upstream_logins_per_source(&a, &b, authio_mcp::store::DEFAULT_UPSTREAM_LOGINS_PER_SOURCE)
        .await
        .unwrap();
    // Keys written through one store are read back by the other.
    let p = contract::fresh_project();
    let key = authio_mcp::keys::SigningKey::new(
        p.clone(),
        authio_mcp::keys::KeyId::new("es256-restart").unwrap(),
        authio_mcp::jose::PrivateKey::generate(authio_mcp::jose::SigningAlgorithm::Es256, &[7; 32]).unwrap(),
        time::OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap(),
    );
    assert!(authio_mcp::store::KeyStore::insert(&a, key.clone()).await.unwrap());
    a.close().await;
    let back = authio_mcp::store::KeyStore::keys(&b, &p).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].private_key.public_jwk("k"), key.private_key.public_jwk("k"));
    b.close().await;
}

/// Two stores on one SQLite file: refreshes through one race the
/// revocation of every grant of their user through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_subject_revocation_holds_across_two_stores() {
    let dir = TempDir::new();
    let url = dir.sqlite_url("race.db");
    let a = SqliteStore::connect(&url, SqlOptions::default()).await.unwrap();
    a.migrate().await.unwrap();
    let b = SqliteStore::connect(&url, SqlOptions::default()).await.unwrap();
    for _ in 0..3 {
        contract::subject_revocation_race(&a, &b).await.unwrap();
    }
    a.close().await;
    b.close().await;
}

mod sqlite_only {
    use super::*;

    /// A refresh token stored before migration 6 (no grant summaries yet)
    /// is summarized by it: the grant is listed and revocable per user.
    #[tokio::test]
    async fn migration_6_summarizes_existing_grants() {
        let dir = TempDir::new();
        let url = dir.sqlite_url("backfill.db");
        let s = SqliteStore::connect(&url, SqlOptions::default()).await.unwrap();
        s.migrate_to(4).await.unwrap();
        let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
        super::backfill_check(&s, |sql, binds| {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = match b {
                    Bind::Text(t) => q.bind(t),
                    Bind::Int(i) => q.bind(i),
                    Bind::Bytes(v) => q.bind(v),
                    Bind::Bool(v) => q.bind(v),
                };
            }
            let pool = raw.clone();
            Box::pin(async move { q.execute(&pool).await.map(|_| ()).unwrap() })
        })
        .await;
    }

    /// A database migrated by a build that lacked a migration numbered
    /// below its newest one (branches landing in another order: 1..7 and
    /// 10, before 9 existed) gets the missing one applied; a migration
    /// this library does not know is refused. Migration 9 then converts
    /// the consent stored before it (see `consent_conversion_check`).
    #[tokio::test]
    async fn a_missing_middle_migration_is_applied_and_an_unknown_one_refused() {
        let dir = TempDir::new();
        let url = dir.sqlite_url("gap.db");
        let s = SqliteStore::connect(&url, SqlOptions::default()).await.unwrap();
        s.migrate_to(7).await.unwrap();
        let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
        for q in super::OLD_CONSENTS {
            sqlx::query(q).execute(&raw).await.unwrap();
        }
        // Record 9 as applied without running it: migrate must leave it
        // alone and apply everything else, so 10 runs and 9's table does
        // not exist.
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (9, 'pretend', 0)")
            .execute(&raw)
            .await
            .unwrap();
        s.migrate().await.unwrap();
        let has = |table: &'static str| {
            let raw = raw.clone();
            async move {
                sqlx::query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")
                    .bind(table)
                    .fetch_optional(&raw)
                    .await
                    .unwrap()
                    .is_some()
            }
        };
        assert!(
            !has("user_consent_scopes").await,
            "a recorded migration is not run again"
        );
        let sealed: Option<(String,)> =
            sqlx::query_as("SELECT name FROM pragma_table_info('signing_keys') WHERE name = 'key_protection'")
                .fetch_optional(&raw)
                .await
                .unwrap();
        assert!(sealed.is_some(), "migration 10 ran above the recorded 9");
        // Now the gap, as a database migrated by a build without 9 has it:
        // migrate applies only what is missing and never fails on the gap.
        sqlx::query("DELETE FROM schema_migrations WHERE version = 9")
            .execute(&raw)
            .await
            .unwrap();
        s.migrate().await.unwrap();
        assert!(
            has("user_consent_scopes").await,
            "the missing migration 9 was applied below the newest one"
        );
        super::consent_conversion_check(&s).await;
        // A version this library does not embed.
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 0)")
            .execute(&raw)
            .await
            .unwrap();
        let e = s.migrate().await.unwrap_err();
        assert!(e.to_string().contains("9999"), "{e}");
    }

    async fn store(dir: &TempDir, options: SqlOptions) -> SqliteStore {
        let s = SqliteStore::connect(&dir.sqlite_url("t.db"), options).await.unwrap();
        s.migrate().await.unwrap();
        s
    }

    #[tokio::test]
    async fn migrates_a_version_1_database_with_data_to_the_latest() {
        let dir = TempDir::new();
        let url = dir.sqlite_url("m.db");
        let s = SqliteStore::connect(&url, SqlOptions::default()).await.unwrap();
        super::migration_check(s, &url).await;
    }

    #[tokio::test]
    async fn purges_in_bounded_batches() {
        let dir = TempDir::new();
        let s = store(&dir, SqlOptions::default().purge_batch(7)).await;
        super::batch_purge_check(&s, |s, at| Box::pin(s.purge(at))).await;
    }

    #[tokio::test]
    async fn upstream_logins_are_capped_and_purged_in_batches() {
        let dir = TempDir::new();
        let s = store(&dir, SqlOptions::default().upstream_login_capacity(3).purge_batch(7)).await;
        super::login_cap_and_purge_check(&s, |s, at| Box::pin(s.purge(at))).await;
    }

    #[tokio::test]
    async fn cimd_cache_is_capped() {
        let dir = TempDir::new();
        let s = store(&dir, SqlOptions::default().cimd_capacity(3)).await;
        super::cimd_cap_check(&s).await;
    }

    #[tokio::test]
    async fn audit_retention_by_rows_and_age() {
        let dir = TempDir::new();
        let s = store(
            &dir,
            SqlOptions::default()
                .audit_max_rows_per_project(Some(10))
                .audit_max_age(Some(time::Duration::days(30)))
                .purge_batch(4),
        )
        .await;
        super::audit_retention_check(&s, |s, at| Box::pin(s.purge_audit(at))).await;
    }
}

#[cfg(feature = "postgres")]
mod postgres_only {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use authio_mcp::store::ProjectStore;
    use authio_mcp::store::sql::PostgresStore;

    async fn store(url: &str, options: SqlOptions) -> PostgresStore {
        let s = PostgresStore::connect(url, options).await.unwrap();
        s.migrate().await.unwrap();
        s
    }

    #[tokio::test]
    async fn migrates_a_version_1_database_with_data_to_the_latest() {
        let Some(db) = sql_support::pg_database("migrates_a_version_1_database").await else {
            return;
        };
        let s = PostgresStore::connect(&db.url, SqlOptions::default()).await.unwrap();
        super::migration_check(s, &db.url).await;
    }

    /// Two pools on one database, as two server instances: refreshes
    /// through one race the revocation of every grant of their user
    /// through the other; no token of the user stays readable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn subject_revocation_holds_across_two_stores() {
        let Some(db) = sql_support::pg_database("subject_revocation_two_stores").await else {
            return;
        };
        let a = store(&db.url, SqlOptions::default().max_connections(10)).await;
        let b = store(&db.url, SqlOptions::default().max_connections(10)).await;
        for _ in 0..5 {
            contract::subject_revocation_race(&a, &b).await.unwrap();
        }
        a.close().await;
        b.close().await;
    }

    #[tokio::test]
    async fn migration_6_summarizes_existing_grants() {
        let Some(db) = sql_support::pg_database("migration_6_backfill").await else {
            return;
        };
        let s = PostgresStore::connect(&db.url, SqlOptions::default()).await.unwrap();
        s.migrate_to(4).await.unwrap();
        let raw = sqlx::PgPool::connect(&db.url).await.unwrap();
        super::backfill_check(&s, |sql, binds| {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = match b {
                    Bind::Text(t) => q.bind(t),
                    Bind::Int(i) => q.bind(i),
                    Bind::Bytes(v) => q.bind(v),
                    Bind::Bool(v) => q.bind(v),
                };
            }
            let pool = raw.clone();
            Box::pin(async move { q.execute(&pool).await.map(|_| ()).unwrap() })
        })
        .await;
        s.close().await;
    }

    /// Two pools on one database, as two server instances: activations
    /// and first uses of one `jti` race across them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn keys_and_replay_hold_across_two_stores() {
        let Some(db) = sql_support::pg_database("keys_and_replay_two_stores").await else {
            return;
        };
        let a = store(&db.url, sql_support::sealed_options().max_connections(10)).await;
        let b = store(&db.url, sql_support::sealed_options().max_connections(10)).await;
        contract::signing_key_activation_race(&a, &b).await.unwrap();
        contract::replay(&a, &b).await.unwrap();
        contract::admission_windows(&a, &b).await.unwrap();
        contract::upstream_logins(&a, &b).await.unwrap();
        contract::upstream_logins_per_source(&a, &b, authio_mcp::store::DEFAULT_UPSTREAM_LOGINS_PER_SOURCE)
            .await
            .unwrap();
        a.close().await;
        b.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_migrations_apply_each_version_once() {
        let Some(db) = sql_support::pg_database("concurrent_migrations").await else {
            return;
        };
        let stores: Vec<_> = futures_util::future::join_all(
            (0..4).map(|_| PostgresStore::connect(&db.url, SqlOptions::default().max_connections(2))),
        )
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
        let results = futures_util::future::join_all(stores.iter().map(|s| s.migrate())).await;
        for r in results {
            r.unwrap();
        }
        assert_eq!(
            stores[0].schema_version().await.unwrap(),
            PostgresStore::latest_schema_version()
        );
        for s in stores {
            s.close().await;
        }
    }

    /// Migration 9 on PostgreSQL: a consent stored before it keeps each
    /// of its resources with the scopes the user allowed.
    #[tokio::test]
    async fn migration_9_keeps_each_resource_with_the_scopes_allowed() {
        let Some(db) = sql_support::pg_database("migration_9_consent").await else {
            return;
        };
        let s = PostgresStore::connect(&db.url, SqlOptions::default()).await.unwrap();
        s.migrate_to(7).await.unwrap();
        let raw = sqlx::PgPool::connect(&db.url).await.unwrap();
        for q in super::OLD_CONSENTS {
            sqlx::query(q).execute(&raw).await.unwrap();
        }
        s.migrate().await.unwrap();
        super::consent_conversion_check(&s).await;
        raw.close().await;
        s.close().await;
    }

    #[tokio::test]
    async fn purges_in_bounded_batches() {
        let Some(db) = sql_support::pg_database("purges_in_bounded_batches").await else {
            return;
        };
        let s = store(&db.url, SqlOptions::default().purge_batch(7)).await;
        super::batch_purge_check(&s, |s, at| Box::pin(s.purge(at))).await;
        s.close().await;
    }

    #[tokio::test]
    async fn upstream_logins_are_capped_and_purged_in_batches() {
        let Some(db) = sql_support::pg_database("upstream_logins_capped").await else {
            return;
        };
        let s = store(&db.url, SqlOptions::default().upstream_login_capacity(3).purge_batch(7)).await;
        super::login_cap_and_purge_check(&s, |s, at| Box::pin(s.purge(at))).await;
        s.close().await;
    }

    #[tokio::test]
    async fn cimd_cache_is_capped() {
        let Some(db) = sql_support::pg_database("cimd_cache_is_capped").await else {
            return;
        };
        let s = store(&db.url, SqlOptions::default().cimd_capacity(3)).await;
        super::cimd_cap_check(&s).await;
        s.close().await;
    }

    #[tokio::test]
    async fn audit_retention_by_rows_and_age() {
        let Some(db) = sql_support::pg_database("audit_retention").await else {
            return;
        };
        let s = store(
            &db.url,
            SqlOptions::default()
                .audit_max_rows_per_project(Some(10))
                .audit_max_age(Some(time::Duration::days(30)))
                .purge_batch(4),
        )
        .await;
        super::audit_retention_check(&s, |s, at| Box::pin(s.purge_audit(at))).await;
        s.close().await;
    }

    /// A pooled connection idle longer than `ping_after_idle` is pinged
    /// before use: one the database dropped meanwhile is replaced, and the
    /// request it was meant for does not fail.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_dropped_by_the_database_are_replaced_unseen() {
        let Some(db) = sql_support::pg_database("idle_ping").await else {
            return;
        };
        let errors = Arc::new(AtomicUsize::new(0));
        let seen = errors.clone();
        let options = SqlOptions::default()
            .max_connections(2)
            .ping_after_idle(std::time::Duration::from_millis(50))
            .on_error(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
            });
        let s = store(&db.url, options).await;
        let p = authio_mcp::project::ProjectId::new("p").unwrap();
        ProjectStore::put(&s, &p, Default::default()).await.unwrap();
        for round in 0..3 {
            assert!(db.terminate_connections().await >= 1, "round {round}");
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let found = ProjectStore::get(&s, &p).await;
            assert!(
                matches!(found, Ok(Some(_))),
                "round {round}: the first request after the drop is answered: {found:?}"
            );
        }
        assert_eq!(errors.load(Ordering::SeqCst), 0, "no statement failed");
        s.close().await;
    }

    /// The other side of `ping_after_idle`: a connection used more
    /// recently is not pinged, so one the database dropped meanwhile fails
    /// the one statement sent on it (an error, never a wrong answer), and
    /// the pool replaces it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recently_used_connections_dropped_by_the_database_fail_once() {
        let Some(db) = sql_support::pg_database("no_idle_ping").await else {
            return;
        };
        let errors = Arc::new(AtomicUsize::new(0));
        let seen = errors.clone();
        let options = SqlOptions::default()
            .max_connections(1)
            .ping_after_idle(std::time::Duration::from_secs(3600))
            .on_error(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
            });
        let s = store(&db.url, options).await;
        let p = authio_mcp::project::ProjectId::new("p").unwrap();
        ProjectStore::put(&s, &p, Default::default()).await.unwrap();
        // sqlx pings a connection as it goes back to the pool, in a task
        // of its own: let that finish before the drop (a ping after it
        // would find the connection dead and replace it).
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(db.terminate_connections().await >= 1);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let first = ProjectStore::get(&s, &p).await;
        assert!(first.is_err(), "the dropped connection is used unpinged: {first:?}");
        assert_eq!(errors.load(Ordering::SeqCst), 1);
        let again = ProjectStore::get(&s, &p).await;
        assert!(matches!(again, Ok(Some(_))), "replaced: {again:?}");
        s.close().await;
    }

    /// Killed connections and a database that refuses connections: errors
    /// (reported to the hook), never a wrong answer, and recovery without
    /// a restart once the database is back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovers_from_killed_connections_and_an_unreachable_database() {
        let Some(db) = sql_support::pg_database("recovers_from_faults").await else {
            return;
        };
        let errors = Arc::new(AtomicUsize::new(0));
        let seen = errors.clone();
        let options = SqlOptions::default()
            .max_connections(3)
            .acquire_timeout(std::time::Duration::from_millis(500))
            .on_error(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
            });
        let s = store(&db.url, options).await;
        let p = authio_mcp::project::ProjectId::new("p").unwrap();
        ProjectStore::put(&s, &p, Default::default()).await.unwrap();

        // 1. Every pooled connection killed under the store's feet.
        assert!(db.terminate_connections().await >= 1);
        let mut answered = false;
        for _ in 0..10 {
            match ProjectStore::get(&s, &p).await {
                Ok(found) => {
                    assert!(found.is_some(), "a killed connection never reads as a missing project");
                    answered = true;
                    break;
                }
                Err(e) => assert!(e.message().starts_with("postgres: ")),
            }
        }
        assert!(answered, "the pool reconnects by itself");

        // 2. The database refuses every connection: errors, not answers.
        let mut admin = sql_support::admin_connection(&std::env::var(sql_support::PG_ENV).unwrap()).await;
        sqlx::Executor::execute(
            &mut admin,
            format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", db.name).as_str(),
        )
        .await
        .unwrap();
        db.terminate_connections().await;
        let before = errors.load(Ordering::SeqCst);
        for _ in 0..3 {
            assert!(
                ProjectStore::get(&s, &p).await.is_err(),
                "an unreachable database is an error"
            );
        }
        assert!(
            errors.load(Ordering::SeqCst) >= before + 3,
            "each failure reaches the hook"
        );

        // 3. Back: the same store answers again.
        sqlx::Executor::execute(
            &mut admin,
            format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", db.name).as_str(),
        )
        .await
        .unwrap();
        let mut back = false;
        for _ in 0..20 {
            if let Ok(Some(_)) = ProjectStore::get(&s, &p).await {
                back = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(back, "the store recovers when the database returns");
        s.close().await;
    }
}

use authio_mcp::store::sql::PurgeReport;
use authio_mcp::store::{AuditLog, CimdCache, GrantStore, ProjectStore, StoreError};
use std::future::Future;
use std::pin::Pin;

type Purge<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + 'a>>;

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap()
}

/// A version-1 database with data in it, migrated to the latest: the data
/// reads back and the later tables work.
async fn migration_check<S>(s: S, url: &str)
where
    S: MigrateTo
        + ProjectStore
        + GrantStore
        + CimdCache
        + AuditLog
        + authio_mcp::store::IatStore
        + authio_mcp::store::ClientStore,
{
    use authio_mcp::dcr::{IatOptions, IatRecord};
    use authio_mcp::project::{ProjectId, ProjectSettings};
    use authio_mcp::store::{AuditQuery, ClientStore, IatStore};

    s.migrate_to_version(1).await.unwrap();
    assert_eq!(s.version().await, 1);
    let p = ProjectId::new("proj_v1").unwrap();
    let mut settings = ProjectSettings::default();
    settings.mcp_enabled = true;
    ProjectStore::put(&s, &p, settings.clone()).await.unwrap();
    let (iat, _token) = IatRecord::issue(IatOptions::new().max_uses(3), &[1; 8], &[2; 32], now()).unwrap();
    IatStore::insert(&s, &p, iat.clone()).await.unwrap();
    let client = sql_support_client(now());
    assert!(ClientStore::insert(&s, &p, client.clone()).await.unwrap());

    // Version 4 (refresh rotation, before tombstones): a token rotated
    // then (a whole row marked rotated, written as that version's code
    // did) is a tombstone after migration 7 and still reads as rotated.
    s.migrate_to_version(4).await.unwrap();
    let (rotated, successor) = rotated_pair(&p);
    let mark = authio_mcp::grant::RotationMark::new(
        now(),
        authio_mcp::grant::RotationNonce::from_random([4; 32]),
        successor.hash,
    );
    s.insert_rotated_as_version_4(url, &rotated, &mark).await;

    s.migrate_latest().await.unwrap();
    assert!(s.version().await >= 7);
    GrantStore::insert_refresh_token(&s, successor.clone()).await.unwrap();
    let back = GrantStore::refresh_token(&s, &p, &rotated.hash).await.unwrap().unwrap();
    assert!(back.rotated);
    assert_eq!(back.rotation, Some(mark));
    assert_eq!(
        (back.issued_at, back.expires_at),
        (rotated.issued_at, rotated.expires_at)
    );
    assert_eq!(
        GrantStore::refresh_token(&s, &p, &successor.hash).await.unwrap(),
        Some(successor.clone())
    );
    let probe = rotated_pair(&p).1;
    assert!(matches!(
        GrantStore::rotate_refresh_token(
            &s,
            &p,
            &rotated.hash,
            probe.clone(),
            authio_mcp::grant::RotationMark::new(
                now(),
                authio_mcp::grant::RotationNonce::from_random([5; 32]),
                probe.hash
            ),
            time::Duration::ZERO
        )
        .await
        .unwrap(),
        authio_mcp::store::RefreshRotation::AlreadyRotated(_)
    ));
    s.migrate_latest().await.unwrap(); // idempotent
    assert_eq!(ProjectStore::get(&s, &p).await.unwrap(), Some(settings));
    assert_eq!(IatStore::find(&s, &p, &iat.hash).await.unwrap(), Some(iat));
    let authio_mcp::client::ClientId::Registered(id) = &client.client_id else {
        unreachable!()
    };
    assert_eq!(ClientStore::get(&s, &p, id).await.unwrap(), Some(client.clone()));
    // The tables of migration 2 work.
    authio_mcp::store::AuditSink::record(
        &s,
        authio_mcp::audit::AuditEvent::new(
            p.clone(),
            now(),
            authio_mcp::audit::AuditKind::ProjectSettingsUpdated {},
        ),
    )
    .await;
    assert_eq!(AuditLog::query(&s, &AuditQuery::new(p)).await.unwrap().events.len(), 1);
}

/// A refresh token and a successor of one grant (random hashes).
fn rotated_pair(
    p: &authio_mcp::project::ProjectId,
) -> (
    authio_mcp::grant::RefreshTokenRecord,
    authio_mcp::grant::RefreshTokenRecord,
) {
    use authio_mcp::grant::{GrantId, RefreshTokenRecord};
    let t0 = now();
    let grant = serde_json::json!({
        "id": GrantId::from_random(&[6; 16]), "project": p, "client_id": "client_000000000000000000000000",
        "subject": "u", "scopes": "mcp:read", "resources": [], "granted_at": t0.unix_timestamp()
    });
    let token = |seed: u8, issued: i64| -> RefreshTokenRecord {
        serde_json::from_value(serde_json::json!({
            "hash": authio_mcp::secret::SecretHash::of(&format!("rt-{seed}-{}", rand_suffix())), "grant": grant,
            "scopes": "mcp:read", "resources": [], "issued_at": t0.unix_timestamp() - issued,
            "expires_at": (t0 + time::Duration::days(30)).unix_timestamp(), "rotated": false
        }))
        .unwrap()
    };
    (token(1, 60), token(2, 0))
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn sql_support_client(at: time::OffsetDateTime) -> authio_mcp::client::Client {
    use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
    let m: ClientMetadata = serde_json::from_value(serde_json::json!({
        "redirect_uris": ["https://c.example/cb"], "token_endpoint_auth_method": "none"
    }))
    .unwrap();
    let m = m
        .validate(
            MetadataProfile::Dcr,
            authio_mcp::redirect_uri::RedirectUriPolicy::strict(),
        )
        .unwrap();
    Client::new(ClientId::Registered(RegisteredClientId::from_random(&[7; 12])), m, at)
}

/// A rotated refresh token as schema versions 3 and 4 stored it.
const V4_ROTATED_INSERT: &str = "INSERT INTO refresh_tokens \
     (project, hash, grant_id, expires_at, rotated, record, rotation, rotated_at) \
     VALUES ($1, $2, $3, $4, TRUE, $5, $6, $7)";

/// The migration entry points of both stores, for one check.
trait MigrateTo {
    /// Writes a rotated refresh token as the code of schema version 4 did
    /// (the whole row, `rotated = TRUE`), through a connection of its own.
    fn insert_rotated_as_version_4<'a>(
        &'a self,
        url: &'a str,
        record: &'a authio_mcp::grant::RefreshTokenRecord,
        mark: &'a authio_mcp::grant::RotationMark,
    ) -> Pin<Box<dyn Future<Output = ()> + 'a>>;
    fn migrate_to_version(&self, v: i64) -> Purge<'_, ()>;
    fn migrate_latest(&self) -> Purge<'_, ()>;
    fn version(&self) -> Pin<Box<dyn Future<Output = i64> + '_>>;
}

impl MigrateTo for SqliteStore {
    fn insert_rotated_as_version_4<'a>(
        &'a self,
        url: &'a str,
        record: &'a authio_mcp::grant::RefreshTokenRecord,
        mark: &'a authio_mcp::grant::RotationMark,
    ) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
        Box::pin(async move {
            let pool = sqlx::Pool::<sqlx::Sqlite>::connect(url).await.unwrap();
            sqlx::query(V4_ROTATED_INSERT)
                .bind(record.grant.project.as_str())
                .bind(record.hash.as_bytes().as_slice())
                .bind(record.grant.id.as_str())
                .bind(record.expires_at.unix_timestamp())
                .bind(serde_json::to_string(record).unwrap())
                .bind(serde_json::to_string(mark).unwrap())
                .bind(mark.at.unix_timestamp())
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        })
    }
    fn migrate_to_version(&self, v: i64) -> Purge<'_, ()> {
        Box::pin(self.migrate_to(v))
    }
    fn migrate_latest(&self) -> Purge<'_, ()> {
        Box::pin(self.migrate())
    }
    fn version(&self) -> Pin<Box<dyn Future<Output = i64> + '_>> {
        Box::pin(async { self.schema_version().await.unwrap() })
    }
}

#[cfg(feature = "postgres")]
impl MigrateTo for authio_mcp::store::sql::PostgresStore {
    fn insert_rotated_as_version_4<'a>(
        &'a self,
        url: &'a str,
        record: &'a authio_mcp::grant::RefreshTokenRecord,
        mark: &'a authio_mcp::grant::RotationMark,
    ) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
        Box::pin(async move {
            let pool = sqlx::Pool::<sqlx::Postgres>::connect(url).await.unwrap();
            sqlx::query(V4_ROTATED_INSERT)
                .bind(record.grant.project.as_str())
                .bind(record.hash.as_bytes().as_slice())
                .bind(record.grant.id.as_str())
                .bind(record.expires_at.unix_timestamp())
                .bind(serde_json::to_string(record).unwrap())
                .bind(serde_json::to_string(mark).unwrap())
                .bind(mark.at.unix_timestamp())
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        })
    }
    fn migrate_to_version(&self, v: i64) -> Purge<'_, ()> {
        Box::pin(self.migrate_to(v))
    }
    fn migrate_latest(&self) -> Purge<'_, ()> {
        Box::pin(self.migrate())
    }
    fn version(&self) -> Pin<Box<dyn Future<Output = i64> + '_>> {
        Box::pin(async { self.schema_version().await.unwrap() })
    }
}

/// A value bound to a raw statement.
enum Bind {
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
    Bool(bool),
}

/// A raw statement runner on a schema-4 database.
type RawExec<'c> = Box<dyn FnMut(&'static str, Vec<Bind>) -> Pin<Box<dyn Future<Output = ()> + 'c>> + 'c>;

/// Rows written before migration 6 (a live refresh token of grant `g`, a
/// rotated one of grant `h` whose head is revoked, a live one of a revoked
/// grant): after the migration `g` alone is listed for its user, with the
/// token's issue time as its last use, and revoking the user's grants
/// revokes it.
async fn backfill_check<'c, S>(
    s: &S,
    exec: impl FnMut(&'static str, Vec<Bind>) -> Pin<Box<dyn Future<Output = ()> + 'c>> + 'c,
) where
    S: MigrateTo + GrantStore,
{
    use authio_mcp::grant::{Grant, GrantId, RefreshTokenRecord, Subject};
    use authio_mcp::secret::SecretHash;
    use authio_mcp::store::{GrantSelector, PageRequest};
    let mut exec: RawExec<'c> = Box::new(exec);
    let t0 = now();
    let p = authio_mcp::project::ProjectId::new("proj_backfill").unwrap();
    let grant = |n: u8| -> Grant {
        serde_json::from_value(serde_json::json!({
            "id": GrantId::from_random(&[n; 16]), "project": p, "client_id": "client_000000000000000000000001",
            "subject": "old_user", "scopes": "mcp:read", "resources": ["https://mcp.example.com/mcp"],
            "granted_at": t0.unix_timestamp() - 3600
        }))
        .unwrap()
    };
    let (g, revoked) = (grant(1), grant(2));
    let insert = "INSERT INTO refresh_tokens (project, hash, grant_id, expires_at, rotated, record) \
                  VALUES ($1, $2, $3, $4, $5, $6)";
    for (n, g, rotated) in [(1u8, &g, true), (2, &g, false), (3, &revoked, false)] {
        let record: RefreshTokenRecord = serde_json::from_value(serde_json::json!({
            "hash": SecretHash::of(&format!("rt{n}")), "grant": g, "scopes": "mcp:read",
            "resources": ["https://mcp.example.com/mcp"], "issued_at": t0.unix_timestamp() - i64::from(n),
            "expires_at": t0.unix_timestamp() + 86_400, "rotated": rotated
        }))
        .unwrap();
        exec(
            insert,
            vec![
                Bind::Text(p.as_str().to_owned()),
                Bind::Bytes(record.hash.as_bytes().to_vec()),
                Bind::Text(g.id.as_str().to_owned()),
                Bind::Int(record.expires_at.unix_timestamp()),
                Bind::Bool(rotated),
                Bind::Text(serde_json::to_string(&record).unwrap()),
            ],
        )
        .await;
    }
    exec(
        "INSERT INTO revoked_grants (project, grant_id, revoked_at, keep_until) VALUES ($1, $2, $3, $4)",
        vec![
            Bind::Text(p.as_str().to_owned()),
            Bind::Text(revoked.id.as_str().to_owned()),
            Bind::Int(t0.unix_timestamp()),
            Bind::Int(t0.unix_timestamp() + 86_400),
        ],
    )
    .await;
    drop(exec);
    s.migrate_latest().await.unwrap();
    let user = Subject::new("old_user").unwrap();
    let page = s
        .grants_of_subject(&p, &user, &PageRequest::first(10), t0)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "{page:?}");
    let summary = &page.items[0];
    assert_eq!(summary.grant, g);
    assert_eq!(
        summary.last_used_at.map(|t| t.unix_timestamp()),
        Some(t0.unix_timestamp() - 2)
    );
    assert_eq!(summary.expires_at.unix_timestamp(), t0.unix_timestamp() + 86_400);
    let revoked_now = s
        .revoke_grants(&p, &GrantSelector::Subject(user), 10, t0)
        .await
        .unwrap();
    assert_eq!(revoked_now.len(), 1);
    assert!(s.refresh_token(&p, &SecretHash::of("rt2")).await.unwrap().is_none());
}

/// 50 expired codes purged 7 rows at a time: all go, live ones stay.
async fn batch_purge_check<S: GrantStore>(
    s: &S,
    purge: impl for<'a> Fn(&'a S, time::OffsetDateTime) -> Purge<'a, PurgeReport>,
) {
    use authio_mcp::grant::{
        AccessTokenRecord, CodeRecord, Grant, GrantId, RefreshTokenRecord, RotationMark, RotationNonce, Subject,
    };
    use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
    use authio_mcp::secret::SecretHash;
    let t0 = now();
    let p = authio_mcp::project::ProjectId::new("proj_purge").unwrap();
    let grant: Grant = serde_json::from_value(serde_json::json!({
        "id": GrantId::from_random(&[3; 16]), "project": p, "client_id": "client_000000000000000000000000",
        "subject": Subject::new("u").unwrap(), "scopes": "", "resources": [], "granted_at": t0.unix_timestamp()
    }))
    .unwrap();
    let mut hashes = Vec::new();
    for i in 0..51u32 {
        let expires = if i == 50 {
            t0 + time::Duration::days(9)
        } else {
            t0 + time::Duration::minutes(1)
        };
        let record: CodeRecord = serde_json::from_value(serde_json::json!({
            "hash": SecretHash::of(&format!("code{i}")), "grant": grant, "redirect_uri": "https://c.example/cb",
            "code_challenge": CodeChallenge::s256(&CodeVerifier::from_random(&[9; 32])),
            "expires_at": expires.unix_timestamp(), "consumed": false
        }))
        .unwrap();
        hashes.push(record.hash);
        s.insert_code(record).await.unwrap();
    }
    // 20 grants, each with a rotated refresh token (a tombstone) and an
    // access token that expire in a minute, and a live successor.
    let mut rotated = Vec::new();
    for j in 0..20u8 {
        let mut g = grant.clone();
        g.id = GrantId::from_random(&[j + 100; 16]);
        let token = |name: String, expires: time::OffsetDateTime| -> RefreshTokenRecord {
            serde_json::from_value(serde_json::json!({
                "hash": SecretHash::of(&name), "grant": g, "scopes": "", "resources": [],
                "issued_at": t0.unix_timestamp(), "expires_at": expires.unix_timestamp(), "rotated": false
            }))
            .unwrap()
        };
        let old = token(format!("rt{j}"), t0 + time::Duration::minutes(1));
        let new = token(format!("rt{j}-next"), t0 + time::Duration::days(9));
        s.insert_refresh_token(old.clone()).await.unwrap();
        let mark = RotationMark::new(t0, RotationNonce::from_random([j; 32]), new.hash);
        let outcome = s
            .rotate_refresh_token(&p, &old.hash, new.clone(), mark, time::Duration::ZERO)
            .await
            .unwrap();
        assert!(matches!(outcome, authio_mcp::store::RefreshRotation::Rotated(_)));
        let access: AccessTokenRecord = serde_json::from_value(serde_json::json!({
            "hash": SecretHash::of(&format!("at{j}")), "project": p, "grant_id": g.id,
            "claims": {"iss": "https://as.example", "sub": "u", "aud": [], "client_id": "c", "scope": "",
                       "iat": t0.unix_timestamp(), "exp": (t0 + time::Duration::minutes(1)).unix_timestamp(),
                       "jti": "j"},
            "revoked": false
        }))
        .unwrap();
        s.insert_access_token(access.clone()).await.unwrap();
        rotated.push((old, new, access));
    }
    let report = purge(s, t0 + time::Duration::days(1)).await.unwrap();
    assert!(report.grants >= 90, "codes, tombstones and access tokens: {report:?}");
    for h in &hashes[..50] {
        assert!(s.code(&p, h).await.unwrap().is_none());
    }
    assert!(s.code(&p, &hashes[50]).await.unwrap().is_some());
    for (old, new, access) in &rotated {
        assert!(
            s.refresh_token(&p, &old.hash).await.unwrap().is_none(),
            "tombstone purged"
        );
        assert!(
            s.access_token(&p, &access.hash).await.unwrap().is_none(),
            "access token purged"
        );
        assert!(
            s.refresh_token(&p, &new.hash).await.unwrap().is_some(),
            "live token kept"
        );
    }
}

/// An upstream login of project `p` started at `at`, its `state` from `n`.
fn upstream_login(
    p: &authio_mcp::project::ProjectId,
    n: u16,
    at: time::OffsetDateTime,
) -> authio_mcp::upstream::UpstreamLogin {
    upstream_login_and_browser(p, n, at).0
}

/// [`upstream_login`] and the hash of its browser binding.
fn upstream_login_and_browser(
    p: &authio_mcp::project::ProjectId,
    n: u16,
    at: time::OffsetDateTime,
) -> (authio_mcp::upstream::UpstreamLogin, authio_mcp::secret::SecretHash) {
    use authio_mcp::authorize::{AuthorizationRequest, validate_request};
    use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile};
    use authio_mcp::discovery::Issuer;
    use authio_mcp::upstream::{self, LoginRandomness, ProviderName, UpstreamProvider};
    let mut req = AuthorizationRequest::default();
    req.response_type = Some("code".into());
    req.code_challenge = Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into());
    req.code_challenge_method = Some("S256".into());
    let id = ClientId::parse_with("client_0123456789abcdef01234567", Default::default()).unwrap();
    let metadata: ClientMetadata =
        serde_json::from_str(r#"{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"none"}"#)
            .unwrap();
    let v = metadata
        .validate(
            MetadataProfile::Dcr,
            authio_mcp::redirect_uri::RedirectUriPolicy::strict(),
        )
        .unwrap();
    let client = Client::new(id, v, at);
    let settings = authio_mcp::project::ProjectSettings::default();
    let pending = validate_request(
        &req,
        p,
        &settings,
        &client,
        "https://app.example/cb".into(),
        "https://as.example",
        at,
    )
    .unwrap();
    let issuer = Issuer::new("https://idp.example.com").unwrap();
    let provider = UpstreamProvider::generic(ProviderName::new("oidc").unwrap(), issuer.clone(), "rp");
    let metadata = upstream::parse_provider_metadata(
        br#"{"issuer":"https://idp.example.com","authorization_endpoint":"https://idp.example.com/a",
            "token_endpoint":"https://idp.example.com/t","jwks_uri":"https://idp.example.com/k"}"#,
        &issuer,
        false,
    )
    .unwrap();
    let mut state = [0u8; 32];
    state[..2].copy_from_slice(&n.to_be_bytes());
    let random = LoginRandomness {
        state,
        nonce: [1; 32],
        verifier: [2; 32],
        browser: [3; 32],
    };
    let start = upstream::start_login(pending, &provider, &metadata, "https://as.example/cb", random, at);
    (start.login, start.browser_binding.hash())
}

/// A store holding at most 3 live logins per project refuses a fourth
/// (never evicting a live one), has room again once they expired, counts
/// per project; 40 expired logins are purged 7 rows at a time and the
/// live ones stay.
async fn login_cap_and_purge_check<S: authio_mcp::store::UpstreamLoginStore>(
    s: &S,
    purge: impl for<'a> Fn(&'a S, time::OffsetDateTime) -> Purge<'a, PurgeReport>,
) {
    use authio_mcp::store::LoginTake;
    let t0 = now();
    let p = authio_mcp::project::ProjectId::new("proj_logins").unwrap();
    let q = authio_mcp::project::ProjectId::new("proj_logins_other").unwrap();
    // Built twice (the same, from the same seed): a login is not `Clone`.
    let first: Vec<_> = (0..3).map(|n| upstream_login(&p, n, t0).state_hash).collect();
    for n in 0..3 {
        s.insert(&p, upstream_login(&p, n, t0), None).await.unwrap();
    }
    let browser = upstream_login_and_browser(&p, 0, t0).1;
    let refused = s.insert(&p, upstream_login(&p, 3, t0), None).await;
    assert!(refused.is_err(), "a full project refuses a new login");
    assert!(
        matches!(s.take(&p, &first[0], &browser, t0).await.unwrap(), LoginTake::Taken(_)),
        "the live logins stay"
    );
    s.insert(&q, upstream_login(&q, 4, t0), None).await.unwrap();
    // Ten minutes later the first three are dead: room again.
    let later = t0 + authio_mcp::upstream::UPSTREAM_LOGIN_TTL;
    let live = upstream_login(&p, 5, later).state_hash;
    s.insert(&p, upstream_login(&p, 5, later), None).await.unwrap();
    // 40 more, started 11 minutes apart in the past (so each is dead
    // before the next starts, and the cap is never in the way).
    let r = authio_mcp::project::ProjectId::new("proj_logins_many").unwrap();
    for n in 0..40u16 {
        let at = t0 - time::Duration::hours(8) + time::Duration::minutes(11 * i64::from(n));
        s.insert(&r, upstream_login(&r, 100 + n, at), None).await.unwrap();
    }
    let report = purge(s, later).await.unwrap();
    assert_eq!(report.upstream_logins, 3 + 1 + 40, "{report:?}");
    assert!(matches!(
        s.take(&p, &first[1], &browser, later).await.unwrap(),
        LoginTake::Unknown
    ));
    assert!(matches!(
        s.take(&p, &live, &browser, later).await.unwrap(),
        LoginTake::Taken(_)
    ));
}

/// A cache of 3: a fourth and fifth entry evict the soonest-expiring.
async fn cimd_cap_check<S: CimdCache>(s: &S) {
    use authio_mcp::cimd::{CachedDocument, ClientIdUrl};
    use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile};
    let t0 = now();
    let p = authio_mcp::project::ProjectId::new("proj_cimd").unwrap();
    let mut urls = Vec::new();
    for i in 0..5i64 {
        let url = ClientIdUrl::parse(format!("https://c{i}.example/client.json")).unwrap();
        let doc: ClientMetadata = serde_json::from_value(serde_json::json!({
            "client_id": url.as_str(), "client_name": "C", "redirect_uris": ["https://c.example/cb"]
        }))
        .unwrap();
        let m = doc
            .validate(
                MetadataProfile::Cimd {
                    allow_private_key_jwt: false,
                },
                authio_mcp::redirect_uri::RedirectUriPolicy::strict(),
            )
            .unwrap();
        let client = Client::new(ClientId::Metadata(url.clone()), m, t0);
        // Entry 0 expires last; entries 1.. in order.
        let ttl = if i == 0 { 100 } else { i };
        let entry = CachedDocument::new(doc, client, t0, t0 + time::Duration::minutes(ttl));
        s.put(&p, &url, entry).await.unwrap();
        urls.push(url);
    }
    let mut held = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        if s.get(&p, u).await.unwrap().is_some() {
            held.push(i);
        }
    }
    assert_eq!(held, vec![0, 3, 4], "the soonest-expiring entries were evicted");
}

/// 25 events, 10 kept per project; and an age limit.
async fn audit_retention_check<S: AuditLog>(
    s: &S,
    purge: impl for<'a> Fn(&'a S, time::OffsetDateTime) -> Purge<'a, u64>,
) {
    use authio_mcp::audit::{AuditEvent, AuditKind};
    use authio_mcp::store::AuditQuery;
    let t0 = now();
    let p = authio_mcp::project::ProjectId::new("proj_audit").unwrap();
    let q = authio_mcp::project::ProjectId::new("proj_audit_old").unwrap();
    for i in 0..25i64 {
        s.record(AuditEvent::new(
            p.clone(),
            t0 + time::Duration::seconds(i),
            AuditKind::IatRevoked { iat_id: format!("{i}") },
        ))
        .await;
    }
    s.record(AuditEvent::new(
        q.clone(),
        t0 - time::Duration::days(31),
        AuditKind::ProjectSettingsUpdated {},
    ))
    .await;
    let removed = purge(s, t0).await.unwrap();
    assert_eq!(removed, 16, "15 over the row limit and 1 over the age limit");
    let page = s.query(&AuditQuery::new(p).limit(100)).await.unwrap();
    assert_eq!(page.events.len(), 10);
    assert_eq!(
        page.events[0].at,
        t0 + time::Duration::seconds(24),
        "the newest are kept"
    );
    assert!(s.query(&AuditQuery::new(q)).await.unwrap().events.is_empty());

    // A flood of anonymous rejections is capped apart: it never pushes out
    // a security event (review finding).
    let r = authio_mcp::project::ProjectId::new("proj_audit_flood").unwrap();
    s.record(AuditEvent::new(
        r.clone(),
        t0,
        AuditKind::RefreshTokenReuseDetected {
            client_id: "client_x".into(),
            grant_id: "grant_x".into(),
        },
    ))
    .await;
    // Thirty different reasons (so each counter keeps its sample): the
    // class cap is what bounds them.
    for i in 0..30i64 {
        s.record(AuditEvent::new(
            r.clone(),
            t0 + time::Duration::seconds(i + 1),
            AuditKind::ClientRegistrationRejected {
                error: "invalid_token".into(),
                reason: format!("missing_token_{i}"),
                iat_id: None,
            },
        ))
        .await;
    }
    let removed = purge(s, t0 + time::Duration::seconds(60)).await.unwrap();
    assert_eq!(removed, 20, "only the rejections over their own cap");
    let kept = s
        .query(&AuditQuery::new(r.clone()).event("refresh_token.reuse_detected"))
        .await
        .unwrap();
    assert_eq!(kept.events.len(), 1, "the reuse detection survives the flood");
    let rejections = s
        .query(
            &AuditQuery::new(r)
                .event("oauth_client.registration_rejected")
                .limit(100),
        )
        .await
        .unwrap();
    assert_eq!(rejections.events.len(), 10);

    // Thirty identical rejections in one minute: all counted, only the
    // first REJECTION_SAMPLES_PER_MINUTE stored whole.
    let f = authio_mcp::project::ProjectId::new("proj_audit_samples").unwrap();
    let minute = t0 - time::Duration::seconds(t0.unix_timestamp().rem_euclid(60));
    for _ in 0..30 {
        s.record(AuditEvent::new(
            f.clone(),
            minute,
            AuditKind::ClientRegistrationRejected {
                error: "invalid_token".into(),
                reason: "missing_token".into(),
                iat_id: None,
            },
        ))
        .await;
    }
    let stored = s.query(&AuditQuery::new(f.clone()).limit(100)).await.unwrap();
    assert_eq!(
        stored.events.len(),
        authio_mcp::store::sql::REJECTION_SAMPLES_PER_MINUTE as usize,
        "only samples of a flood are stored whole"
    );
    let counts = s.rejection_counts(&f).await.unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].count, 30, "every rejection is counted");
}

/// The driver over a PostgreSQL store that stops accepting connections:
/// `server_error` (503 + `Retry-After` at the revocation endpoint, RFC 7009
/// section 2.2.1) with no detail, every failure reported to the operator's
/// hook, and service again once the database is back.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_server_error_while_the_database_is_down_and_recovers() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use authio_mcp::ErrorCode;
    use authio_mcp::discovery::Issuer;
    use authio_mcp::http::{HeaderOrDefaultProjectResolver, OAuthEndpoints};
    use authio_mcp::project::{ProjectId, ProjectSettings};
    use authio_mcp::server::AuthorizationServer;
    use authio_mcp::store::sql::PostgresStore;

    let Some(db) = sql_support::pg_database("server_error_while_down").await else {
        return;
    };
    let errors = Arc::new(AtomicUsize::new(0));
    let seen = errors.clone();
    let store = PostgresStore::connect(
        &db.url,
        SqlOptions::default()
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_millis(300))
            .on_error(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
            }),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let store = Arc::new(store);
    let server = AuthorizationServer::builder(Issuer::new("https://as.example").unwrap())
        .projects(store.clone())
        .clients(store.clone())
        .iats(store.clone())
        .grants(store.clone())
        .cimd_cache(store.clone())
        .audit(store.clone())
        .without_metadata_fetcher()
        .build();
    let p = ProjectId::new("proj_faults").unwrap();
    server.put_project(&p, ProjectSettings::default()).await.unwrap();
    server.set_mcp_enabled(&p, true).await.unwrap();
    let client = sql_support_client(now());
    assert!(
        authio_mcp::store::ClientStore::insert(store.as_ref(), &p, client.clone())
            .await
            .unwrap()
    );
    let body = format!("token=at_x&client_id={}", client.client_id);
    let endpoints = OAuthEndpoints::new(server.clone(), Arc::new(HeaderOrDefaultProjectResolver::new(p.clone())));
    let revoke = || {
        http::Request::builder()
            .method("POST")
            .uri("/oauth2/revoke")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone().into_bytes())
            .unwrap()
    };
    assert_eq!(
        endpoints.revoke(&revoke()).await.status(),
        200,
        "unknown tokens: success"
    );

    let mut admin = sql_support::admin_connection(&std::env::var(sql_support::PG_ENV).unwrap()).await;
    sqlx::Executor::execute(
        &mut admin,
        format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", db.name).as_str(),
    )
    .await
    .unwrap();
    db.terminate_connections().await;

    let before = errors.load(Ordering::SeqCst);
    let e = server.metadata(&p).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ServerError);
    let token = server
        .token(
            &p,
            None,
            b"grant_type=authorization_code&code=ac_x&client_id=client_000000000000000000000000",
        )
        .await
        .unwrap_err();
    assert_eq!(token.code(), ErrorCode::ServerError);
    for response in [token.to_response(), endpoints.revoke(&revoke()).await] {
        let body = String::from_utf8(response.body().clone()).unwrap();
        assert!(
            !body.contains("postgres") && !body.contains("SELECT") && !body.contains("connection"),
            "no detail reaches the client: {body}"
        );
        assert!(body.contains("server_error"), "{body}");
    }
    let revoked = endpoints.revoke(&revoke()).await;
    assert_eq!(revoked.status(), 503);
    assert_eq!(revoked.headers()["retry-after"], "1");
    assert!(errors.load(Ordering::SeqCst) > before, "the operator hears of it");

    sqlx::Executor::execute(
        &mut admin,
        format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", db.name).as_str(),
    )
    .await
    .unwrap();
    let mut back = false;
    for _ in 0..20 {
        if server.metadata(&p).await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(back, "the server recovers by itself");
    assert_eq!(endpoints.revoke(&revoke()).await.status(), 200);
    store.close().await;
}

/// Batched audit writing: every event is stored once the store closes.
async fn batched_audit_check(log: &(dyn AuditLog + Sync), project: &str, n: i64) {
    use authio_mcp::audit::{AuditEvent, AuditKind};
    let p = authio_mcp::project::ProjectId::new(project).unwrap();
    let t0 = now();
    futures_util::future::join_all((0..n).map(|i| {
        let p = p.clone();
        async move {
            log.record(AuditEvent::new(
                p,
                t0 + time::Duration::seconds(i),
                AuditKind::IatRevoked { iat_id: format!("{i}") },
            ))
            .await;
        }
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_batched_audit_loses_nothing_on_close() {
    use authio_mcp::store::AuditQuery;
    let dir = TempDir::new();
    let url = dir.sqlite_url("batched.db");
    let s = SqliteStore::connect(&url, SqlOptions::default().audit_batching(true))
        .await
        .unwrap();
    s.migrate().await.unwrap();
    batched_audit_check(&s, "proj_batched", 3000).await;
    s.close().await;
    let s = SqliteStore::connect(&url, SqlOptions::default()).await.unwrap();
    let mut seen = 0;
    let mut cursor = None;
    loop {
        let page = s
            .query(
                &AuditQuery::new(authio_mcp::project::ProjectId::new("proj_batched").unwrap())
                    .limit(1000)
                    .before(cursor),
            )
            .await
            .unwrap();
        seen += page.events.len();
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, 3000);
    assert_eq!(s.audit_failures(), 0);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batched_audit_loses_nothing_on_close() {
    use authio_mcp::store::AuditQuery;
    use authio_mcp::store::sql::PostgresStore;
    let Some(db) = sql_support::pg_database("postgres_batched_audit").await else {
        return;
    };
    let s = PostgresStore::connect(&db.url, SqlOptions::default().audit_batching(true))
        .await
        .unwrap();
    s.migrate().await.unwrap();
    batched_audit_check(&s, "proj_batched", 3000).await;
    s.close().await;
    let s = PostgresStore::connect(&db.url, SqlOptions::default()).await.unwrap();
    let page = s
        .query(&AuditQuery::new(authio_mcp::project::ProjectId::new("proj_batched").unwrap()).limit(1000))
        .await
        .unwrap();
    assert_eq!(page.events.len(), 1000);
    assert!(page.next.is_some());
    s.close().await;
}

/// SQLite locked by another process's writer for longer than the busy
/// timeout: writes fail with a `StoreError` (reported to the hook), the
/// code is neither consumed nor reported consumed, and the store works
/// again once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_by_another_writer_fails_safe_and_recovers() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use authio_mcp::store::CodeConsumption;
    use sqlx::Connection as _;

    let dir = TempDir::new();
    let url = dir.sqlite_url("locked.db");
    let errors = Arc::new(AtomicUsize::new(0));
    let seen = errors.clone();
    let s = SqliteStore::connect(
        &url,
        SqlOptions::default()
            .busy_timeout(std::time::Duration::from_millis(200))
            .on_error(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
            }),
    )
    .await
    .unwrap();
    s.migrate().await.unwrap();
    let p = authio_mcp::project::ProjectId::new("proj_locked").unwrap();
    let code = locked_fixture_code(&p);
    s.insert_code(code.clone()).await.unwrap();

    // Another connection (as another process would) holds the write lock.
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::Executor::execute(&mut other, "BEGIN IMMEDIATE").await.unwrap();
    let failed = s.consume_code(&p, &code.hash, time::OffsetDateTime::now_utc()).await;
    assert!(
        failed.is_err(),
        "a write that cannot take the lock is an error, not an answer"
    );
    assert!(errors.load(Ordering::SeqCst) >= 1, "the operator hears of it");
    sqlx::Executor::execute(&mut other, "COMMIT").await.unwrap();
    other.close().await.unwrap();

    assert!(
        matches!(
            s.consume_code(&p, &code.hash, time::OffsetDateTime::now_utc())
                .await
                .unwrap(),
            CodeConsumption::Consumed(_)
        ),
        "the failed attempt consumed nothing; the store works again"
    );
    s.close().await;
}

fn locked_fixture_code(p: &authio_mcp::project::ProjectId) -> authio_mcp::grant::CodeRecord {
    use authio_mcp::grant::{GrantId, Subject};
    use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
    use authio_mcp::secret::SecretHash;
    let t0 = now();
    serde_json::from_value(serde_json::json!({
        "hash": SecretHash::of("locked-code"),
        "grant": {
            "id": GrantId::from_random(&[5; 16]), "project": p, "client_id": "client_000000000000000000000000",
            "subject": Subject::new("u").unwrap(), "scopes": "", "resources": [], "granted_at": t0.unix_timestamp()
        },
        "redirect_uri": "https://c.example/cb",
        "code_challenge": CodeChallenge::s256(&CodeVerifier::from_random(&[9; 32])),
        "expires_at": (t0 + time::Duration::minutes(1)).unix_timestamp(), "consumed": false
    }))
    .unwrap()
}

/// With audit batching, a flood of identical rejections is counted in
/// full and stored as samples only, like without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_batched_rejections_are_counted_and_sampled() {
    use authio_mcp::audit::{AuditEvent, AuditKind};
    use authio_mcp::store::{AuditQuery, AuditSink};
    let dir = TempDir::new();
    let url = dir.sqlite_url("batched_rejections.db");
    let s = SqliteStore::connect(&url, SqlOptions::default().audit_batching(true))
        .await
        .unwrap();
    s.migrate().await.unwrap();
    let p = authio_mcp::project::ProjectId::new("proj_batched_rejections").unwrap();
    let t0 = now();
    let minute = t0 - time::Duration::seconds(t0.unix_timestamp().rem_euclid(60));
    for i in 0..300 {
        s.record(AuditEvent::new(
            p.clone(),
            minute,
            AuditKind::ClientRegistrationRejected {
                error: "invalid_token".into(),
                reason: "missing_token".into(),
                iat_id: None,
            },
        ))
        .await;
        if i == 150 {
            tokio::task::yield_now().await;
        }
    }
    s.record(AuditEvent::new(p.clone(), minute, AuditKind::ProjectSettingsUpdated {}))
        .await;
    s.close().await;
    let s = SqliteStore::connect(&url, SqlOptions::default()).await.unwrap();
    let stored = s.query(&AuditQuery::new(p.clone()).limit(1000)).await.unwrap();
    assert_eq!(
        stored.events.len(),
        authio_mcp::store::sql::REJECTION_SAMPLES_PER_MINUTE as usize + 1,
        "samples of the flood and the other event"
    );
    let counts = s.rejection_counts(&p).await.unwrap();
    assert_eq!(counts.iter().map(|c| c.count).sum::<u64>(), 300);
    assert_eq!(s.audit_failures(), 0);
}

/// Consent rows as migration 5 stored them (scope union, resource union).
const OLD_CONSENTS: [&str; 1] = [
    "INSERT INTO user_consents (project, subject, client_id, scopes, resources, updated_at) VALUES \
     ('proj_old', 'alice', 'client_old', 'mcp:read mcp:write', \
      '[\"https://calendar.example.com/mcp\",\"https://payroll.example.com/mcp\"]', 1790000000), \
     ('proj_old', 'bob', 'client_old', 'mcp:read', '[]', 1790000000)",
];

/// After migration 9, the consent of [`OLD_CONSENTS`]: each stored
/// resource allows the stored scope union; a consent without resources
/// covers requests without one, and nothing else.
async fn consent_conversion_check<S: authio_mcp::store::UserStore>(s: &S) {
    use authio_mcp::grant::Subject;
    use authio_mcp::resource::ResourceSet;
    use authio_mcp::scope::ScopeSet;
    let p = authio_mcp::project::ProjectId::new("proj_old").unwrap();
    let set = |uris: &[&str]| ResourceSet::parse_all(uris.iter().copied()).unwrap();
    let scopes = |s: &str| ScopeSet::parse(s).unwrap();
    let (calendar, payroll) = ("https://calendar.example.com/mcp", "https://payroll.example.com/mcp");
    let alice = s
        .consent(&p, &Subject::new("alice").unwrap(), "client_old")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.updated_at.unix_timestamp(), 1_790_000_000);
    assert_eq!(alice.targets().count(), 2, "{alice:?}");
    for r in [calendar, payroll] {
        assert!(
            alice.covers(&scopes("mcp:read mcp:write"), &set(&[r])),
            "{r}: {alice:?}"
        );
    }
    assert!(!alice.covers(&scopes("mcp:read"), &set(&[])), "{alice:?}");
    assert!(!alice.covers(&scopes("mcp:read"), &set(&["https://other.example.com/mcp"])));
    let bob = s
        .consent(&p, &Subject::new("bob").unwrap(), "client_old")
        .await
        .unwrap()
        .unwrap();
    assert!(bob.covers(&scopes("mcp:read"), &set(&[])), "{bob:?}");
    assert!(!bob.covers(&scopes("mcp:read"), &set(&[calendar])), "{bob:?}");
    // Remembering more after the conversion merges into the converted rows.
    s.remember_consent(
        &p,
        &Subject::new("alice").unwrap(),
        "client_old",
        &scopes("mcp:admin"),
        &set(&[calendar]),
        time::OffsetDateTime::from_unix_timestamp(1_790_000_100).unwrap(),
    )
    .await
    .unwrap();
    let alice = s
        .consent(&p, &Subject::new("alice").unwrap(), "client_old")
        .await
        .unwrap()
        .unwrap();
    assert!(alice.covers(&scopes("mcp:read mcp:write mcp:admin"), &set(&[calendar])));
    assert!(!alice.covers(&scopes("mcp:admin"), &set(&[payroll])), "{alice:?}");
}
