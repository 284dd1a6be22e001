//! The `KeyStore` and `ReplayStore` contracts (`store::contract`, which
//! `tests/sql_stores.rs` also runs against SQLite and PostgreSQL) on the
//! in-memory implementations, and what only the memory replay store has:
//! its bound.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use authio_mcp::project::ProjectId;
use authio_mcp::store::ReplayStore;
use authio_mcp::store::contract;
use authio_mcp::store::memory::{MemoryKeyStore, MemoryReplayStore};
use futures_executor::block_on;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_key_store_keeps_the_contract() {
    let store = MemoryKeyStore::new();
    contract::signing_keys(&store).await.unwrap();
    contract::signing_key_activation_race(&store, &store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_replay_store_keeps_the_contract() {
    let store = MemoryReplayStore::default();
    contract::replay(&store, &store).await.unwrap();
}

#[test]
fn a_full_replay_store_refuses_rather_than_forgets() {
    let store = MemoryReplayStore::new(2);
    let p = ProjectId::new("proj_a").unwrap();
    let exp = T0 + Duration::minutes(5);
    assert!(block_on(store.check_and_insert(&p, "c", "1", exp, T0)).unwrap());
    assert!(block_on(store.check_and_insert(&p, "c", "2", exp, T0)).unwrap());
    assert!(
        !block_on(store.check_and_insert(&p, "c", "3", exp, T0)).unwrap(),
        "full"
    );
    assert!(
        !block_on(store.check_and_insert(&p, "c", "1", exp, T0)).unwrap(),
        "still a replay"
    );
    // Once the entries expired there is room again.
    assert!(block_on(store.check_and_insert(&p, "c", "3", exp + Duration::minutes(5), exp)).unwrap());
}
