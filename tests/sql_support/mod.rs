//! Databases for the SQL store tests: SQLite files in a temporary
//! directory, and PostgreSQL databases with random names created on the
//! server named by `AUTHIO_TEST_DATABASE_URL` and dropped afterwards.
#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;

/// The variable naming the PostgreSQL server for tests.
pub const PG_ENV: &str = "AUTHIO_TEST_DATABASE_URL";

fn random_suffix() -> String {
    let mut b = [0u8; 8];
    authio_mcp::server::RandomSource::fill(&authio_mcp::server::SystemRandom, &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SQL store options for tests: the defaults, with signing keys sealed
/// under a fixed test key-encryption key.
pub fn sealed_options() -> authio_mcp::store::sql::SqlOptions {
    let kek = authio_mcp::store::Aes256GcmKeyEncryption::new("test-kek", &[42; 32]).unwrap();
    authio_mcp::store::sql::SqlOptions::default().key_encryption(std::sync::Arc::new(kek))
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("authio-sql-test-{}", random_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A `sqlite://` URL for a file in the directory.
    pub fn sqlite_url(&self, name: &str) -> String {
        format!("sqlite://{}", self.0.join(name).display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(feature = "postgres")]
/// A PostgreSQL database of its own, dropped (with its connections) on drop.
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

#[cfg(feature = "postgres")]
/// A fresh database on the test server, or `None` (with one line printed)
/// when `AUTHIO_TEST_DATABASE_URL` is unset.
pub async fn pg_database(test: &str) -> Option<PgDatabase> {
    let Ok(admin_url) = std::env::var(PG_ENV) else {
        println!(
            "skipped {test}: set {PG_ENV} (e.g. postgres://postgres@127.0.0.1:5432/test) to run the PostgreSQL tests"
        );
        return None;
    };
    let name = format!("authio_test_{}", random_suffix());
    let mut admin = admin_connection(&admin_url).await;
    sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("{PG_ENV}: cannot create a test database: {e}"));
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    Some(PgDatabase {
        admin_url,
        name,
        url: url.to_string(),
    })
}

#[cfg(feature = "postgres")]
pub async fn admin_connection(admin_url: &str) -> sqlx::PgConnection {
    <sqlx::PgConnection as sqlx::Connection>::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("{PG_ENV}={admin_url}: PostgreSQL unreachable: {e}"))
}

#[cfg(feature = "postgres")]
impl PgDatabase {
    /// Terminates every connection to this database but the caller's.
    pub async fn terminate_connections(&self) -> u64 {
        let mut admin = admin_connection(&self.admin_url).await;
        let rows = sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .fetch_all(&mut admin)
        .await
        .unwrap();
        rows.len() as u64
    }
}

#[cfg(feature = "postgres")]
impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside a runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut admin = admin_connection(&admin_url).await;
                let _ = sqlx::Executor::execute(
                    &mut admin,
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                )
                .await;
            });
        })
        .join();
    }
}
