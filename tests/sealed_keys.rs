//! Signing keys at rest in the SQL stores (SQLite and PostgreSQL): sealed
//! with a `KeyEncryption` (AES-256-GCM under a host key), refused until
//! the host chooses, bound to their row, re-sealed from plaintext and
//! across key-encryption key rotations.
//!
//! PostgreSQL cases run when `AUTHIO_TEST_DATABASE_URL` names a server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod sql_support;

use std::sync::Arc;

use authio_mcp::jose::{PrivateKey, SigningAlgorithm};
use authio_mcp::keys::{KeyId, SigningKey};
use authio_mcp::project::ProjectId;
use authio_mcp::store::sql::{SqlOptions, SqliteStore};
use authio_mcp::store::{Aes256GcmKeyEncryption, KeyStore, StoreError};
use sql_support::TempDir;

/// A database of either backend, with raw access for the "attacker".
enum Db {
    Sqlite(String),
    #[cfg(feature = "postgres")]
    Postgres(String),
}

enum Store {
    Sqlite(SqliteStore),
    #[cfg(feature = "postgres")]
    Postgres(authio_mcp::store::sql::PostgresStore),
}

impl Store {
    fn keys(&self) -> &dyn KeyStore {
        match self {
            Self::Sqlite(s) => s,
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => s,
        }
    }

    async fn reseal(&self) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.reseal_signing_keys().await,
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => s.reseal_signing_keys().await,
        }
    }

    async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => s.close().await,
        }
    }
}

impl Db {
    async fn store(&self, options: SqlOptions) -> Store {
        match self {
            Self::Sqlite(url) => {
                let s = SqliteStore::connect(url, options).await.unwrap();
                s.migrate().await.unwrap();
                Store::Sqlite(s)
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(url) => {
                let s = authio_mcp::store::sql::PostgresStore::connect(url, options)
                    .await
                    .unwrap();
                s.migrate().await.unwrap();
                Store::Postgres(s)
            }
        }
    }

    /// `(kid, private_key, key_protection)` of every stored key.
    async fn rows(&self) -> Vec<(String, Vec<u8>, String)> {
        let sql = "SELECT kid, private_key, key_protection FROM signing_keys ORDER BY kid";
        match self {
            Self::Sqlite(url) => {
                let pool = sqlx::SqlitePool::connect(url).await.unwrap();
                let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows
            }
        }
    }

    /// Runs one statement with a byte and a text parameter.
    async fn write(&self, sql: &str, bytes: &[u8], text: &str) {
        match self {
            Self::Sqlite(url) => {
                let pool = sqlx::SqlitePool::connect(url).await.unwrap();
                sqlx::query(sql).bind(bytes).bind(text).execute(&pool).await.unwrap();
                pool.close().await;
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::query(sql).bind(bytes).bind(text).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }
}

fn kek(id: &str, byte: u8) -> Aes256GcmKeyEncryption {
    Aes256GcmKeyEncryption::new(id, &[byte; 32]).unwrap()
}

fn sealed_with(k: Aes256GcmKeyEncryption) -> SqlOptions {
    SqlOptions::default().key_encryption(Arc::new(k))
}

fn key(project: &ProjectId, kid: &str, alg: SigningAlgorithm, seed: u8) -> SigningKey {
    SigningKey::new(
        project.clone(),
        KeyId::new(kid).unwrap(),
        PrivateKey::generate(alg, &[seed; 32]).unwrap(),
        time::OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap(),
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn every_case(db: Db) {
    let p = ProjectId::new("proj_sealed").unwrap();
    let es = key(&p, "es-1", SigningAlgorithm::Es256, 1);
    let ed = key(&p, "ed-1", SigningAlgorithm::EdDsa, 2);

    // No protection chosen: refused with a message saying what to do,
    // and nothing is written.
    let bare = db.store(SqlOptions::default()).await;
    let e = bare.keys().insert(es.clone()).await.unwrap_err();
    assert!(e.message().contains("key_encryption"), "{}", e.message());
    assert!(e.message().contains("danger_plaintext_keys"), "{}", e.message());
    assert!(db.rows().await.is_empty());
    assert!(bare.keys().keys(&p).await.unwrap().is_empty(), "an empty list is fine");

    // Sealed: round trip, and no key material in the table.
    let a = db.store(sealed_with(kek("k1", 7))).await;
    assert!(a.keys().insert(es.clone()).await.unwrap());
    assert!(a.keys().insert(ed.clone()).await.unwrap());
    let back = a.keys().keys(&p).await.unwrap();
    assert_eq!(back.len(), 2);
    for k in [&es, &ed] {
        let b = back.iter().find(|b| b.kid == k.kid).unwrap();
        assert_eq!(b.private_key.expose_der(), k.private_key.expose_der());
    }
    let rows = db.rows().await;
    for (kid, stored, protection) in &rows {
        assert_eq!(protection, "sealed", "{kid}");
        let k = if kid == "es-1" { &es } else { &ed };
        assert!(
            !contains(stored, k.private_key.expose_der()),
            "{kid}: plaintext DER stored"
        );
        // The private scalar alone (the last 32 bytes of these DER forms).
        let der = k.private_key.expose_der();
        assert!(!contains(stored, &der[der.len() - 32..]), "{kid}: key bytes stored");
    }

    // Without the key-encryption key, or with another one: an error,
    // never a key.
    let e = bare.keys().keys(&p).await.unwrap_err();
    assert!(e.message().contains("sealed"), "{}", e.message());
    let wrong = db.store(sealed_with(kek("k1", 8))).await;
    assert!(wrong.keys().keys(&p).await.is_err());

    // A sealed key moved to another row (another kid), or a plaintext key
    // planted by someone who can write the table: refused.
    let es_sealed = rows.iter().find(|r| r.0 == "es-1").unwrap().1.clone();
    db.write(
        "UPDATE signing_keys SET private_key = $1 WHERE kid = $2",
        &es_sealed,
        "ed-1",
    )
    .await;
    assert!(a.keys().keys(&p).await.is_err(), "a sealed key moved to another kid");
    let planted = key(&p, "ed-1", SigningAlgorithm::EdDsa, 66);
    db.write(
        "UPDATE signing_keys SET private_key = $1, key_protection = 'plaintext' WHERE kid = $2",
        planted.private_key.expose_der(),
        "ed-1",
    )
    .await;
    let e = a.keys().keys(&p).await.unwrap_err();
    assert!(e.message().contains("reseal_signing_keys"), "{}", e.message());
    assert!(a.keys().delete(&p, &ed.kid).await.unwrap());

    // Keys stored in plaintext (the explicit opt-in, or before sealing
    // existed) are sealed in place by reseal_signing_keys.
    let q = ProjectId::new("proj_legacy").unwrap();
    let legacy = db.store(SqlOptions::default().danger_plaintext_keys()).await;
    let old = key(&q, "rs-old", SigningAlgorithm::EdDsa, 3);
    assert!(legacy.keys().insert(old.clone()).await.unwrap());
    assert!(
        db.rows().await.iter().any(|(kid, stored, prot)| kid == "rs-old"
            && prot == "plaintext"
            && stored == old.private_key.expose_der())
    );
    assert_eq!(legacy.keys().keys(&q).await.unwrap().len(), 1, "the opt-in reads it");
    assert!(
        a.keys().keys(&q).await.is_err(),
        "a sealing store does not read plaintext"
    );
    assert_eq!(a.reseal().await.unwrap(), 1);
    assert_eq!(a.reseal().await.unwrap(), 0, "idempotent");
    let row = db.rows().await.into_iter().find(|r| r.0 == "rs-old").unwrap();
    assert_eq!(row.2, "sealed");
    assert_eq!(
        a.keys().keys(&q).await.unwrap()[0].private_key.expose_der(),
        old.private_key.expose_der()
    );
    assert!(bare.reseal().await.is_err(), "resealing needs a key-encryption key");

    // Rotating the key-encryption key: the new one seals, the old one
    // still opens until everything is re-sealed.
    let rotated = db
        .store(sealed_with(kek("k2", 9).with_previous_key("k1", &[7; 32]).unwrap()))
        .await;
    assert_eq!(rotated.keys().keys(&p).await.unwrap().len(), 1);
    assert_eq!(rotated.reseal().await.unwrap(), 2, "es-1 and rs-old were under k1");
    let only_new = db.store(sealed_with(kek("k2", 9))).await;
    assert_eq!(only_new.keys().keys(&p).await.unwrap().len(), 1);
    assert_eq!(only_new.keys().keys(&q).await.unwrap().len(), 1);
    assert!(a.keys().keys(&p).await.is_err(), "the old key alone no longer opens");

    for s in [bare, a, wrong, legacy, rotated, only_new] {
        s.close().await;
    }
}

#[tokio::test]
async fn sqlite_signing_keys_are_sealed_at_rest() {
    let dir = TempDir::new();
    every_case(Db::Sqlite(dir.sqlite_url("sealed.db"))).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_signing_keys_are_sealed_at_rest() {
    let Some(db) = sql_support::pg_database("postgres_signing_keys_are_sealed_at_rest").await else {
        return;
    };
    every_case(Db::Postgres(db.url.clone())).await;
}
