//! The sharded in-memory grant store keeps the `GrantStore` contract:
//! single use under concurrency, revocation across shards, project
//! scoping, and purging that really empties it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Barrier;

use authio_mcp::ErrorCode;
use authio_mcp::project::ProjectId;
use authio_mcp::store::memory::{GRANT_SHARDS, MAX_ACCESS_TOKENS_PER_GRANT, MAX_ROTATED_PER_GRANT};
use common::*;
use futures_executor::block_on;
use time::Duration;

/// Runs `f` on `n` threads released together; returns how many succeeded.
fn race<F>(n: usize, f: F) -> usize
where
    F: Fn() -> bool + Sync,
{
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    f()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count()
    })
}

#[tokio::test]
async fn concurrent_exchanges_of_one_code_succeed_once() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    for round in 0..8u8 {
        let v = verifier(round);
        let code = h.code_for(&client, &v, "").await;
        let wins = race(8, || block_on(h.exchange(&client, &code, &v, "")).is_ok());
        assert_eq!(wins, 1, "round {round}");
    }
}

#[tokio::test]
async fn concurrent_rotations_of_one_refresh_token_succeed_once() {
    let h = harness().await;
    h.server
        .edit_project(&h.project, |mut s| {
            s.refresh_reuse_grace = Duration::ZERO;
            s
        })
        .await
        .unwrap();
    let client = h.public_client(1, &[REDIRECT]).await;
    for round in 0..8u8 {
        let v = verifier(round);
        let code = h.code_for(&client, &v, "").await;
        let rt = h
            .exchange(&client, &code, &v, "")
            .await
            .unwrap()
            .refresh_token()
            .unwrap()
            .to_owned();
        let wins = race(8, || block_on(h.refresh(&client, &rt, "")).is_ok());
        assert_eq!(wins, 1, "round {round}");
    }
}

/// Within the reuse grace, every concurrent refresh of one token gets the
/// one pair the single winning rotation produced.
#[tokio::test]
async fn concurrent_rotations_within_the_grace_all_get_the_same_pair() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    for round in 0..8u8 {
        let v = verifier(round);
        let code = h.code_for(&client, &v, "").await;
        let rt = h
            .exchange(&client, &code, &v, "")
            .await
            .unwrap()
            .refresh_token()
            .unwrap()
            .to_owned();
        let pairs = std::sync::Mutex::new(Vec::new());
        let wins = race(8, || match block_on(h.refresh(&client, &rt, "")) {
            Ok(t) => {
                pairs
                    .lock()
                    .unwrap()
                    .push((t.access_token().to_owned(), t.refresh_token().map(str::to_owned)));
                true
            }
            Err(_) => false,
        });
        assert_eq!(wins, 8, "round {round}");
        let pairs = pairs.into_inner().unwrap();
        assert!(pairs.iter().all(|p| p == &pairs[0]), "round {round}");
        let successor = pairs[0].1.clone().unwrap();
        assert_eq!(h.introspect(&successor).await["active"], true);
        assert_eq!(h.introspect(&pairs[0].0).await["active"], true);
    }
}

#[tokio::test]
async fn reuse_revokes_a_family_spread_over_every_shard() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let code = h.code_for(&client, &v, "").await;
    let first = h.exchange(&client, &code, &v, "").await.unwrap();
    // Enough rotations that the family's tokens land in many shards.
    let mut tokens = vec![first.clone()];
    for _ in 0..(4 * GRANT_SHARDS) {
        let rt = tokens.last().unwrap().refresh_token().unwrap();
        tokens.push(h.refresh(&client, rt, "").await.unwrap());
    }
    let last = tokens.last().unwrap().clone();
    assert_eq!(h.introspect(last.access_token()).await["active"], true);
    // Only the newest MAX_ROTATED_PER_GRANT rotated tokens are remembered
    // (bounded growth): the first one is forgotten, refused without
    // revoking anything (after the grace, as a reuse would be).
    h.clock.advance(authio_mcp::project::DEFAULT_REFRESH_REUSE_GRACE);
    let err = h
        .refresh(&client, first.refresh_token().unwrap(), "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    assert_eq!(h.introspect(last.access_token()).await["active"], true);
    assert_eq!(h.grants.tombstones(), MAX_ROTATED_PER_GRANT);
    // Reusing the oldest remembered one revokes every token of the grant.
    let oldest_remembered = &tokens[tokens.len() - 1 - MAX_ROTATED_PER_GRANT];
    let err = h
        .refresh(&client, oldest_remembered.refresh_token().unwrap(), "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    for t in &tokens {
        assert_eq!(h.introspect(t.access_token()).await["active"], false);
        assert_eq!(h.introspect(t.refresh_token().unwrap()).await["active"], false);
    }
    assert!(h.grants.is_empty(), "every record of the grant deleted");
    assert_eq!(h.grants.tombstones(), 0);
}

#[tokio::test]
async fn tokens_are_scoped_to_their_project() {
    let h = harness().await;
    let other = ProjectId::new("proj_other").unwrap();
    h.server.put_project(&other, project_settings()).await.unwrap();
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let code = h.code_for(&client, &v, "").await;
    let t = h.exchange(&client, &code, &v, "").await.unwrap();
    let body = form(&[("token", t.access_token())]);
    let info = h.server.introspect(&other, body.as_bytes()).await.unwrap();
    assert!(!info.active);
    assert_eq!(h.introspect(t.access_token()).await["active"], true);
}

#[tokio::test]
async fn purging_after_every_lifetime_empties_the_store() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    for n in 0..50u8 {
        let v = verifier(n);
        let code = h.code_for(&client, &v, "").await;
        let t = h.exchange(&client, &code, &v, "").await.unwrap();
        h.refresh(&client, t.refresh_token().unwrap(), "").await.unwrap();
    }
    // A replay leaves a revocation marker behind too.
    let v = verifier(200);
    let code = h.code_for(&client, &v, "").await;
    h.exchange(&client, &code, &v, "").await.unwrap();
    h.exchange(&client, &code, &v, "").await.unwrap_err();
    assert!(!h.grants.is_empty());
    assert_eq!(h.server.purge_expired().await.unwrap(), 0, "nothing expired yet");
    h.clock.advance(Duration::days(31));
    // 50 codes, 100 refresh tokens, 100 access tokens, the marker, and 50
    // grant summaries (the replayed grant's went with its revocation).
    assert_eq!(h.server.purge_expired().await.unwrap(), 301);
    assert!(h.grants.is_empty());
    assert_eq!(h.grants.grant_summaries(), 0, "grant summaries reclaimed too");
    assert_eq!(h.grants.tombstones(), 0, "tombstones reclaimed too");
}

/// Issue 18, point 3: the records of one grant stay bounded however often
/// it is refreshed (the memory figure is in BENCHMARKS.md).
#[tokio::test]
async fn records_per_grant_are_bounded_across_many_refreshes() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(2);
    let code = h.code_for(&client, &v, "").await;
    let mut t = h.exchange(&client, &code, &v, "").await.unwrap();
    for _ in 0..300 {
        t = h.refresh(&client, t.refresh_token().unwrap(), "").await.unwrap();
        // one code, one live refresh token, the capped access tokens
        assert!(h.grants.len() <= 2 + MAX_ACCESS_TOKENS_PER_GRANT, "{}", h.grants.len());
        assert!(h.grants.tombstones() <= MAX_ROTATED_PER_GRANT);
    }
    assert_eq!(h.introspect(t.access_token()).await["active"], true);
    assert_eq!(h.introspect(t.refresh_token().unwrap()).await["active"], true);
}
