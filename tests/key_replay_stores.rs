//! The `KeyStore` and `ReplayStore` contracts (`store::contract`, which
//! `tests/sql_stores.rs` also runs against SQLite and PostgreSQL) on the
//! in-memory implementations, and what only the memory replay store has:
//! its global bound behind the per-client quota.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use authio_mcp::project::ProjectId;
use authio_mcp::store::contract;
use authio_mcp::store::memory::{MemoryKeyStore, MemoryReplayStore};
use authio_mcp::store::{ReplayCheck, ReplayStore};
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
    let check =
        |scope: &str, id: &str, exp, now| block_on(store.check_and_insert(&p, scope, id, exp, now, 100)).unwrap();
    assert_eq!(check("c", "1", exp, T0), ReplayCheck::Fresh);
    assert_eq!(check("d", "2", exp, T0), ReplayCheck::Fresh);
    assert_eq!(check("e", "3", exp, T0), ReplayCheck::Full, "full, whatever the client");
    assert_eq!(check("c", "1", exp, T0), ReplayCheck::Replayed, "still a replay");
    assert_eq!(store.len(), 2);
    // Once the entries expired there is room again.
    assert_eq!(check("e", "3", exp + Duration::minutes(5), exp), ReplayCheck::Fresh);
    assert_eq!(store.len(), 1, "the expired entries were swept to make room");
}

/// The quota per (project, client) sits in front of the global bound: a
/// client that fills its quota is refused alone, and the bound is still
/// there for everyone else.
#[test]
fn a_client_past_its_quota_is_refused_alone() {
    let store = MemoryReplayStore::new(10);
    let p = ProjectId::new("proj_a").unwrap();
    let q = ProjectId::new("proj_b").unwrap();
    let exp = T0 + Duration::minutes(5);
    for i in 0..4 {
        let r = block_on(store.check_and_insert(&p, "greedy", &format!("{i}"), exp, T0, 4)).unwrap();
        assert_eq!(r, ReplayCheck::Fresh);
    }
    for i in 4..40 {
        let r = block_on(store.check_and_insert(&p, "greedy", &format!("{i}"), exp, T0, 4)).unwrap();
        assert_eq!(r, ReplayCheck::QuotaExceeded);
    }
    assert_eq!(store.len(), 4, "refused ids take no room");
    assert_eq!(
        block_on(store.check_and_insert(&p, "other", "0", exp, T0, 4)).unwrap(),
        ReplayCheck::Fresh
    );
    assert_eq!(
        block_on(store.check_and_insert(&q, "greedy", "0", exp, T0, 4)).unwrap(),
        ReplayCheck::Fresh
    );
    // A quota of zero refuses every new id.
    assert_eq!(
        block_on(store.check_and_insert(&q, "none", "0", exp, T0, 0)).unwrap(),
        ReplayCheck::QuotaExceeded
    );
    assert_eq!(block_on(store.purge(exp)).unwrap(), 6);
    assert!(store.is_empty());
}
