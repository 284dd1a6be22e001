//! Emergency revocation of a signing key, and each process's copy of a
//! project's keys (the signing-key cache): reads saved, local changes
//! seen at once, changes by another process within the cache lifetime.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
mod sql_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use authio_mcp::client::ClientId;
use authio_mcp::jose::SigningAlgorithm;
use authio_mcp::keys::{KeyId, KeyState, SigningKey};
use authio_mcp::project::{AccessTokenFormat, ProjectId};
use authio_mcp::server::AdminError;
use authio_mcp::store::memory::MemoryKeyStore;
use authio_mcp::store::{KeyStore, StoreError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use time::{Duration, OffsetDateTime};

/// A key store that counts the reads of a project's keys. `slow` reads
/// let other tasks run meanwhile (as a database round trip does); `failing`
/// reads fail; `gated` reads wait for a permit of `gate`.
struct Counting {
    inner: MemoryKeyStore,
    reads: AtomicUsize,
    slow: AtomicBool,
    failing: AtomicBool,
    gated: AtomicBool,
    gate: tokio::sync::Semaphore,
}

impl Default for Counting {
    fn default() -> Self {
        Self {
            inner: MemoryKeyStore::default(),
            reads: AtomicUsize::new(0),
            slow: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            gated: AtomicBool::new(false),
            gate: tokio::sync::Semaphore::new(0),
        }
    }
}

#[async_trait]
impl KeyStore for Counting {
    async fn keys(&self, project: &ProjectId) -> Result<Vec<SigningKey>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.gated.load(Ordering::SeqCst) {
            let _permit = self.gate.acquire().await;
        }
        if self.slow.load(Ordering::SeqCst) {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::new("keys unreachable"));
        }
        self.inner.keys(project).await
    }
    async fn insert(&self, key: SigningKey) -> Result<bool, StoreError> {
        self.inner.insert(key).await
    }
    async fn activate(
        &self,
        p: &ProjectId,
        kid: &KeyId,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.inner.activate(p, kid, now, until).await
    }
    async fn retire(
        &self,
        p: &ProjectId,
        kid: &KeyId,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.inner.retire(p, kid, now, until).await
    }
    async fn delete_expired(&self, p: &ProjectId, now: OffsetDateTime) -> Result<usize, StoreError> {
        self.inner.delete_expired(p, now).await
    }
    async fn delete(&self, p: &ProjectId, kid: &KeyId) -> Result<bool, StoreError> {
        self.inner.delete(p, kid).await
    }
}

async fn jwt_project(h: &Harness) {
    let mut s = project_settings();
    s.access_token_format = AccessTokenFormat::Jwt;
    s.signing.id_token_algorithm = SigningAlgorithm::Es256;
    h.server.put_project(&h.project, s).await.unwrap();
}

fn kids(jwks: &authio_mcp::jose::JwkSet) -> Vec<String> {
    jwks.keys.iter().map(|k| k.kid().unwrap().to_owned()).collect()
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

async fn token_kid(h: &Harness, client: &ClientId, n: u8) -> String {
    let v = verifier(n);
    let code = h.code_for(client, &v, "").await;
    kid_of(h.exchange(client, &code, &v, "").await.unwrap().access_token())
}

#[tokio::test]
async fn revoking_the_active_key_replaces_it_at_once() {
    let keys = Arc::new(Counting::default());
    let h = harness_with({
        let keys = keys.clone();
        move |b| b.key_store(keys)
    })
    .await;
    jwt_project(&h).await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let first = token_kid(&h, &client, 1).await;
    assert_eq!(kids(&h.server.jwks(&h.project).await.unwrap()), vec![first.clone()]);

    let kid = KeyId::new(first.clone()).unwrap();
    let r = h.server.revoke_signing_key(&h.project, &kid).await.unwrap();
    assert_eq!(r.kid, kid);
    let new = r.replaced_by.clone().expect("an active key is replaced").to_string();
    assert_ne!(new, first);
    // Unpublished and unused at once, without the clock moving.
    assert_eq!(kids(&h.server.jwks(&h.project).await.unwrap()), vec![new.clone()]);
    assert_eq!(token_kid(&h, &client, 2).await, new);
    let stored = keys.inner.keys(&h.project).await.unwrap();
    assert!(stored.iter().all(|k| k.kid.as_str() != first), "deleted from the store");
    assert!(
        stored
            .iter()
            .any(|k| k.kid.as_str() == new && k.state == KeyState::Active)
    );
    let revoked: Vec<serde_json::Value> = h
        .audit
        .recent(&h.project, 50)
        .iter()
        .map(authio_mcp::audit::AuditEvent::to_json)
        .filter(|e| e["event"] == "signing_key.revoked")
        .collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["kid"], first.as_str());
    assert_eq!(revoked[0]["replaced_by"], new.as_str());

    // A second revocation of the same key, and an unknown key or project.
    assert!(matches!(
        h.server.revoke_signing_key(&h.project, &kid).await,
        Err(AdminError::UnknownSigningKey)
    ));
    let other = ProjectId::new("proj_other").unwrap();
    assert!(matches!(
        h.server.revoke_signing_key(&other, &kid).await,
        Err(AdminError::UnknownProject)
    ));

    // A next key (published, not yet signing) goes without a replacement.
    h.clock.advance(Duration::days(29) + Duration::hours(1));
    let report = h.server.rotate_signing_keys(&h.project).await.unwrap();
    let next = report.created[0].clone();
    assert_eq!(kids(&h.server.jwks(&h.project).await.unwrap()).len(), 2);
    let r = h.server.revoke_signing_key(&h.project, &next).await.unwrap();
    assert_eq!(r.replaced_by, None);
    assert_eq!(kids(&h.server.jwks(&h.project).await.unwrap()), vec![new.clone()]);
    assert_eq!(token_kid(&h, &client, 3).await, new, "the active key still signs");
}

/// The JWKS and signing read the key store once per cache lifetime, not
/// on every request; this server's own rotations are seen at once.
#[tokio::test]
async fn keys_are_read_once_per_cache_lifetime() {
    let keys = Arc::new(Counting::default());
    let h = harness_with({
        let keys = keys.clone();
        move |b| b.key_store(keys)
    })
    .await;
    jwt_project(&h).await;
    let client = h.public_client(1, &[REDIRECT]).await;
    h.server.jwks(&h.project).await.unwrap();
    let after_first = keys.reads.load(Ordering::SeqCst);
    for _ in 0..50 {
        h.server.jwks(&h.project).await.unwrap();
    }
    for n in 0..5 {
        token_kid(&h, &client, n).await;
    }
    assert_eq!(
        keys.reads.load(Ordering::SeqCst),
        after_first,
        "50 JWKS requests and 5 signed tokens read no keys"
    );
    // Past the lifetime: read once more.
    h.clock.advance(authio_mcp::server::DEFAULT_SIGNING_KEY_CACHE_TTL);
    h.server.jwks(&h.project).await.unwrap();
    h.server.jwks(&h.project).await.unwrap();
    assert_eq!(keys.reads.load(Ordering::SeqCst), after_first + 1);
    // A local rotation invalidates: its next key is published at once.
    h.clock.advance(Duration::days(29) + Duration::hours(1));
    let report = h.server.rotate_signing_keys(&h.project).await.unwrap();
    let jwks = h.server.jwks(&h.project).await.unwrap();
    assert!(jwks.contains_kid(report.created[0].as_str()));

    // Without a cache, every request reads.
    let uncached = Arc::new(Counting::default());
    let h = harness_with({
        let keys = uncached.clone();
        move |b| b.key_store(keys).signing_key_cache_ttl(Duration::ZERO)
    })
    .await;
    jwt_project(&h).await;
    h.server.jwks(&h.project).await.unwrap();
    let before = uncached.reads.load(Ordering::SeqCst);
    for _ in 0..5 {
        h.server.jwks(&h.project).await.unwrap();
    }
    assert_eq!(uncached.reads.load(Ordering::SeqCst), before + 5);
}

/// Two servers (two processes) on one SQLite store with sealed keys: a
/// revocation on one reaches the other within its cache lifetime, and at
/// once on a server configured without a cache.
#[tokio::test]
async fn a_revocation_reaches_other_processes_within_the_cache_lifetime() {
    let dir = sql_support::TempDir::new();
    let url = dir.sqlite_url("keys.db");
    let open = || async {
        let s = authio_mcp::store::sql::SqliteStore::connect(&url, sql_support::sealed_options())
            .await
            .unwrap();
        s.migrate().await.unwrap();
        Arc::new(s)
    };
    let (sa, sb, sc) = (open().await, open().await, open().await);
    let a = harness_with(|b| b.key_store(sa.clone()).projects(sa.clone())).await;
    let clock = a.clock.clone();
    let b = harness_with(|b| b.key_store(sb.clone()).projects(sb.clone()).clock(clock.clone())).await;
    let c = harness_with(|b| {
        b.key_store(sc.clone())
            .projects(sc.clone())
            .clock(clock.clone())
            .signing_key_cache_ttl(Duration::ZERO)
    })
    .await;
    jwt_project(&a).await;
    let first = kids(&a.server.jwks(&a.project).await.unwrap());
    assert_eq!(kids(&b.server.jwks(&b.project).await.unwrap()), first);
    assert_eq!(kids(&c.server.jwks(&c.project).await.unwrap()), first);

    let r = a
        .server
        .revoke_signing_key(&a.project, &KeyId::new(first[0].clone()).unwrap())
        .await
        .unwrap();
    let new = vec![r.replaced_by.unwrap().to_string()];
    assert_eq!(kids(&a.server.jwks(&a.project).await.unwrap()), new, "at once here");
    assert_eq!(kids(&c.server.jwks(&c.project).await.unwrap()), new, "at once uncached");
    // B still holds its copy...
    clock.advance(Duration::seconds(9));
    assert_eq!(kids(&b.server.jwks(&b.project).await.unwrap()), first);
    // ...for at most its cache lifetime.
    clock.advance(Duration::seconds(1));
    assert_eq!(kids(&b.server.jwks(&b.project).await.unwrap()), new);
    for s in [sa, sb, sc] {
        s.close().await;
    }
}

/// A harness whose key store counts reads, with a JWT project and its
/// keys created; returns the key ids the JWKS publishes.
async fn jwt_harness_with_counting_keys() -> (Harness, Arc<Counting>, Vec<String>) {
    let keys = Arc::new(Counting::default());
    let h = harness_with({
        let keys = keys.clone();
        move |b| b.key_store(keys)
    })
    .await;
    jwt_project(&h).await;
    let published = kids(&h.server.jwks(&h.project).await.unwrap());
    (h, keys, published)
}

#[tokio::test]
async fn requests_that_find_the_keys_stale_together_share_one_read() {
    let (h, keys, first) = jwt_harness_with_counting_keys().await;
    // The copy goes stale; 20 requests arrive while the store is slow.
    h.clock.advance(Duration::seconds(11));
    keys.slow.store(true, Ordering::SeqCst);
    keys.reads.store(0, Ordering::SeqCst);
    let all = futures_util::future::join_all((0..20).map(|_| h.server.jwks(&h.project))).await;
    for jwks in all {
        assert_eq!(kids(&jwks.unwrap()), first);
    }
    assert_eq!(keys.reads.load(Ordering::SeqCst), 1, "one read for all of them");

    // A failing read (held at the store until all 20 wait on it) fails
    // every request that waited for it, at once...
    h.clock.advance(Duration::seconds(11));
    keys.slow.store(false, Ordering::SeqCst);
    keys.failing.store(true, Ordering::SeqCst);
    keys.gated.store(true, Ordering::SeqCst);
    keys.reads.store(0, Ordering::SeqCst);
    let (all, ()) = tokio::join!(
        futures_util::future::join_all((0..20).map(|_| h.server.jwks(&h.project))),
        async {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            keys.gated.store(false, Ordering::SeqCst);
            keys.gate.add_permits(1);
        }
    );
    for jwks in all {
        assert_eq!(jwks.unwrap_err().kind(), authio_mcp::server::ErrorKind::Store);
    }
    assert_eq!(
        keys.reads.load(Ordering::SeqCst),
        1,
        "one failed read, not one per request"
    );
    // ...and is not handed on: the next request reads again.
    keys.failing.store(false, Ordering::SeqCst);
    assert_eq!(kids(&h.server.jwks(&h.project).await.unwrap()), first);
    assert_eq!(keys.reads.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_request_after_a_local_revocation_never_joins_a_read_from_before_it() {
    let (h, keys, old) = jwt_harness_with_counting_keys().await;
    // A read of the stale copy is held at the store...
    h.clock.advance(Duration::seconds(11));
    keys.gated.store(true, Ordering::SeqCst);
    let held = tokio::spawn({
        let (server, project) = (h.server.clone(), h.project.clone());
        async move { server.jwks(&project).await }
    });
    while keys.gate.available_permits() == 0 && keys.reads.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // ...while this server revokes the active key.
    keys.gated.store(false, Ordering::SeqCst);
    let kid = KeyId::new(old[0].clone()).unwrap();
    h.server.revoke_signing_key(&h.project, &kid).await.unwrap();
    let after = tokio::time::timeout(std::time::Duration::from_secs(5), h.server.jwks(&h.project))
        .await
        .expect("a request after the revocation does not wait for the read from before it")
        .unwrap();
    assert!(!kids(&after).contains(&old[0]), "the revoked key is gone");
    keys.gate.add_permits(100);
    held.await.unwrap().unwrap();
    assert!(
        !kids(&h.server.jwks(&h.project).await.unwrap()).contains(&old[0]),
        "the late read from before the revocation was not kept"
    );
}

#[tokio::test]
async fn a_read_stuck_for_250_ms_is_not_joined() {
    let (h, keys, first) = jwt_harness_with_counting_keys().await;
    h.clock.advance(Duration::seconds(11));
    keys.gated.store(true, Ordering::SeqCst);
    keys.reads.store(0, Ordering::SeqCst);
    let stuck = tokio::spawn({
        let (server, project) = (h.server.clone(), h.project.clone());
        async move { server.jwks(&project).await }
    });
    while keys.reads.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    keys.gated.store(false, Ordering::SeqCst);
    h.clock.advance(Duration::milliseconds(249));
    // Within its first 250 ms a request waits for the read under way...
    let joined = tokio::spawn({
        let (server, project) = (h.server.clone(), h.project.clone());
        async move { server.jwks(&project).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!joined.is_finished(), "it waits for the read under way");
    assert_eq!(keys.reads.load(Ordering::SeqCst), 1);
    // ...from 250 ms on it reads on its own.
    h.clock.advance(Duration::milliseconds(1));
    let own = tokio::time::timeout(std::time::Duration::from_secs(5), h.server.jwks(&h.project))
        .await
        .expect("a request does not join a read stuck for 250 ms")
        .unwrap();
    assert_eq!(kids(&own), first);
    assert_eq!(keys.reads.load(Ordering::SeqCst), 2);
    keys.gate.add_permits(100);
    assert_eq!(kids(&stuck.await.unwrap().unwrap()), first);
    assert_eq!(kids(&joined.await.unwrap().unwrap()), first);
}
