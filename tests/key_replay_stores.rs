//! The `KeyStore` and `ReplayStore` contracts, checked against the
//! in-memory implementations. The checks take the traits, so a SQL
//! implementation can run the same ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::{Arc, Barrier};

use authio_mcp::jose::{PrivateKey, SigningAlgorithm};
use authio_mcp::keys::{KeyId, KeyState, SigningKey};
use authio_mcp::project::ProjectId;
use authio_mcp::store::memory::{MemoryKeyStore, MemoryReplayStore};
use authio_mcp::store::{KeyStore, ReplayStore};
use futures_executor::block_on;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

fn key(project: &ProjectId, alg: SigningAlgorithm, n: u8) -> SigningKey {
    let pk = PrivateKey::generate(alg, &[n; 32]).unwrap();
    SigningKey::new(project.clone(), KeyId::from_random(alg, &[n; 16]), pk, T0)
}

fn state(store: &dyn KeyStore, project: &ProjectId, kid: &KeyId) -> Option<KeyState> {
    block_on(store.keys(project))
        .unwrap()
        .into_iter()
        .find(|k| &k.kid == kid)
        .map(|k| k.state)
}

/// The `KeyStore` contract: insert refuses a taken kid; activate retires
/// the active key of the same algorithm only, atomically, and only from
/// `next`; delete_expired deletes retired keys past publication only;
/// projects are separate.
fn key_store_contract(store: &dyn KeyStore) {
    let p = ProjectId::new("proj_a").unwrap();
    let q = ProjectId::new("proj_b").unwrap();
    let a = key(&p, SigningAlgorithm::EdDsa, 1);
    let b = key(&p, SigningAlgorithm::EdDsa, 2);
    let e = key(&p, SigningAlgorithm::Es256, 3);
    assert!(block_on(store.insert(a.clone())).unwrap());
    assert!(!block_on(store.insert(a.clone())).unwrap(), "a taken kid is refused");
    assert!(block_on(store.insert(e.clone())).unwrap());
    assert!(block_on(store.keys(&q)).unwrap().is_empty(), "scoped by project");
    assert!(
        !block_on(store.activate(&q, &a.kid, T0, T0)).unwrap(),
        "not in that project"
    );

    assert!(block_on(store.activate(&p, &a.kid, T0, T0)).unwrap());
    assert!(block_on(store.activate(&p, &e.kid, T0, T0)).unwrap());
    assert!(
        !block_on(store.activate(&p, &a.kid, T0, T0)).unwrap(),
        "only a next key activates"
    );
    assert!(block_on(store.insert(b.clone())).unwrap());
    let t1 = T0 + Duration::days(30);
    let until = t1 + Duration::minutes(20);
    assert!(block_on(store.activate(&p, &b.kid, t1, until)).unwrap());
    assert_eq!(state(store, &p, &a.kid), Some(KeyState::Retired));
    assert_eq!(state(store, &p, &b.kid), Some(KeyState::Active));
    assert_eq!(
        state(store, &p, &e.kid),
        Some(KeyState::Active),
        "other algorithms untouched"
    );
    let retired = block_on(store.keys(&p))
        .unwrap()
        .into_iter()
        .find(|k| k.kid == a.kid)
        .unwrap();
    assert_eq!(retired.retired_at, Some(t1));
    assert_eq!(retired.publish_until, Some(until));
    // The private key survives the round trip.
    assert_eq!(retired.private_key.public_jwk("x"), a.private_key.public_jwk("x"));

    assert_eq!(block_on(store.delete_expired(&p, until - Duration::SECOND)).unwrap(), 0);
    assert_eq!(block_on(store.delete_expired(&p, until)).unwrap(), 1);
    assert_eq!(state(store, &p, &a.kid), None);
    assert_eq!(
        block_on(store.keys(&p)).unwrap().len(),
        2,
        "active keys are never deleted"
    );
    // Retiring: only an active key.
    assert!(!block_on(store.retire(&p, &a.kid, t1, until)).unwrap(), "gone");
    assert!(block_on(store.retire(&p, &e.kid, t1, until)).unwrap());
    assert!(
        !block_on(store.retire(&p, &e.kid, t1, until)).unwrap(),
        "already retired"
    );
    assert_eq!(state(store, &p, &e.kid), Some(KeyState::Retired));
    assert_eq!(state(store, &p, &b.kid), Some(KeyState::Active));
}

/// Concurrent activations of two next keys leave exactly one active key.
fn concurrent_activations(store: Arc<dyn KeyStore>) {
    let p = ProjectId::new("proj_race").unwrap();
    let keys: Vec<SigningKey> = (10..18).map(|n| key(&p, SigningAlgorithm::EdDsa, n)).collect();
    for k in &keys {
        assert!(block_on(store.insert(k.clone())).unwrap());
    }
    let barrier = Barrier::new(keys.len());
    std::thread::scope(|s| {
        for k in &keys {
            let (store, barrier, p) = (store.clone(), &barrier, &p);
            s.spawn(move || {
                barrier.wait();
                block_on(store.activate(p, &k.kid, T0, T0 + Duration::hours(1))).unwrap()
            });
        }
    });
    let active = block_on(store.keys(&p))
        .unwrap()
        .into_iter()
        .filter(|k| k.state == KeyState::Active)
        .count();
    assert_eq!(active, 1);
    // The losers' next keys never signed: they are deletable at once.
    // The first activation retired every other next key at once (they
    // never signed anything), so the later ones found no next key.
    assert_eq!(block_on(store.delete_expired(&p, T0)).unwrap(), keys.len() - 1);
    let next_left = block_on(store.keys(&p))
        .unwrap()
        .into_iter()
        .filter(|k| k.state == KeyState::Next)
        .count();
    assert_eq!(next_left, 0, "no next key is left behind");
}

/// The `ReplayStore` contract: one success per key under concurrency,
/// scoped by project and client, reusable after expiry, purged.
fn replay_store_contract(store: Arc<dyn ReplayStore>) {
    let p = ProjectId::new("proj_a").unwrap();
    let q = ProjectId::new("proj_b").unwrap();
    let exp = T0 + Duration::minutes(5);
    let barrier = Barrier::new(16);
    let wins = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let (store, barrier, p) = (store.clone(), &barrier, &p);
                s.spawn(move || {
                    barrier.wait();
                    block_on(store.check_and_insert(p, "client_1", "jti-1", exp, T0)).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).filter(|w| *w).count()
    });
    assert_eq!(wins, 1);
    assert!(
        block_on(store.check_and_insert(&p, "client_2", "jti-1", exp, T0)).unwrap(),
        "per client"
    );
    assert!(
        block_on(store.check_and_insert(&q, "client_1", "jti-1", exp, T0)).unwrap(),
        "per project"
    );
    assert!(!block_on(store.check_and_insert(&p, "client_1", "jti-1", exp, exp - Duration::SECOND)).unwrap());
    assert!(block_on(store.check_and_insert(&p, "client_1", "jti-1", exp + Duration::minutes(5), exp)).unwrap());
    assert_eq!(block_on(store.purge(exp + Duration::minutes(10))).unwrap(), 3);
}

#[test]
fn memory_key_store_keeps_the_contract() {
    key_store_contract(&MemoryKeyStore::new());
    concurrent_activations(Arc::new(MemoryKeyStore::new()));
}

#[test]
fn memory_replay_store_keeps_the_contract() {
    replay_store_contract(Arc::new(MemoryReplayStore::default()));
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
