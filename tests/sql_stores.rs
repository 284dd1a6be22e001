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
    let store = SqliteStore::connect(&dir.sqlite_url("contract.db"), SqlOptions::default())
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
    let store = PostgresStore::connect(&db.url, SqlOptions::default().max_connections(20))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let store = Arc::new(store);
    contract::run_all(&Stores::all(store.clone())).await.unwrap();
    contract::run_all(&Stores::all(store.clone())).await.unwrap();
    assert_eq!(store.audit_failures(), 0);
    store.close().await;
}
