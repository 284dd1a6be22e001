//! `AuthorizationServerBuilder::recent_records`: a server that keeps the
//! codes, refresh tokens and initial access tokens it just stored skips
//! the store read before the atomic call, and every rule still holds when
//! another server sharing the stores consumed, rotated, revoked or used
//! up the same record meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use authio_mcp::ErrorCode;
use authio_mcp::dcr::IatOptions;
use authio_mcp::discovery::Issuer;
use authio_mcp::grant::{
    AccessTokenRecord, CodeRecord, GrantId, GrantSummary, RefreshTokenRecord, RotationMark, Subject,
};
use authio_mcp::project::ProjectId;
use authio_mcp::secret::SecretHash;
use authio_mcp::server::{AuthorizationServer, FixedClock, SeededRandom};
use authio_mcp::store::memory::{
    MemoryAuditLog, MemoryClientStore, MemoryGrantStore, MemoryIatStore, MemoryProjectStore,
};
use authio_mcp::store::{
    CodeConsumption, GrantSelector, GrantStore, IatStore, Page, PageRequest, RefreshRotation, StoreError,
};
use common::*;
use time::{Duration, OffsetDateTime};

/// The memory grant store, counting the reads of a code or refresh token
/// by hash (the reads `recent_records` saves). The issuing calls go to the
/// memory store's own implementations, which read nothing through here.
struct CountingGrants {
    inner: Arc<MemoryGrantStore>,
    reads: AtomicUsize,
}

#[async_trait]
impl GrantStore for CountingGrants {
    async fn insert_code(&self, record: CodeRecord) -> Result<(), StoreError> {
        self.inner.insert_code(record).await
    }
    async fn code(&self, project: &ProjectId, hash: &SecretHash) -> Result<Option<CodeRecord>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.code(project, hash).await
    }
    async fn consume_code(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<CodeConsumption, StoreError> {
        self.inner.consume_code(project, hash, now).await
    }
    async fn insert_refresh_token(&self, record: RefreshTokenRecord) -> Result<(), StoreError> {
        self.inner.insert_refresh_token(record).await
    }
    async fn refresh_token(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.refresh_token(project, hash).await
    }
    async fn rotate_refresh_token(
        &self,
        project: &ProjectId,
        old: &SecretHash,
        new: RefreshTokenRecord,
        mark: RotationMark,
        grace: Duration,
    ) -> Result<RefreshRotation, StoreError> {
        self.inner.rotate_refresh_token(project, old, new, mark, grace).await
    }
    async fn insert_access_token(&self, record: AccessTokenRecord) -> Result<(), StoreError> {
        self.inner.insert_access_token(record).await
    }
    async fn consume_code_issuing(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
        now: OffsetDateTime,
        refresh: Option<RefreshTokenRecord>,
        access: AccessTokenRecord,
    ) -> Result<CodeConsumption, StoreError> {
        self.inner
            .consume_code_issuing(project, hash, now, refresh, access)
            .await
    }
    async fn rotate_refresh_token_issuing(
        &self,
        project: &ProjectId,
        old: &SecretHash,
        new: RefreshTokenRecord,
        mark: RotationMark,
        grace: Duration,
        access: AccessTokenRecord,
    ) -> Result<RefreshRotation, StoreError> {
        self.inner
            .rotate_refresh_token_issuing(project, old, new, mark, grace, access)
            .await
    }
    async fn access_token(
        &self,
        project: &ProjectId,
        hash: &SecretHash,
    ) -> Result<Option<AccessTokenRecord>, StoreError> {
        self.inner.access_token(project, hash).await
    }
    async fn revoke_access_token(&self, project: &ProjectId, hash: &SecretHash) -> Result<bool, StoreError> {
        self.inner.revoke_access_token(project, hash).await
    }
    async fn revoke_grant(&self, project: &ProjectId, grant: &GrantId, now: OffsetDateTime) -> Result<(), StoreError> {
        self.inner.revoke_grant(project, grant, now).await
    }
    async fn grants_of_subject(
        &self,
        project: &ProjectId,
        subject: &Subject,
        page: &PageRequest,
        now: OffsetDateTime,
    ) -> Result<Page<GrantSummary>, StoreError> {
        self.inner.grants_of_subject(project, subject, page, now).await
    }
    async fn revoke_grants(
        &self,
        project: &ProjectId,
        selector: &GrantSelector,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Vec<GrantSummary>, StoreError> {
        self.inner.revoke_grants(project, selector, limit, now).await
    }
    async fn purge_expired(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        self.inner.purge_expired(now).await
    }
}

/// Two servers over one set of stores (two instances of one deployment),
/// each keeping `recent` records; `a` reads its grants through the
/// counting store.
struct Pair {
    a: Harness,
    b: Harness,
    counting: Arc<CountingGrants>,
    iats: Arc<MemoryIatStore>,
}

async fn pair(recent: usize) -> Pair {
    let clock = Arc::new(FixedClock::new(START));
    let audit = Arc::new(MemoryAuditLog::new());
    let clients = Arc::new(MemoryClientStore::new());
    let grants = Arc::new(MemoryGrantStore::new());
    let projects = Arc::new(MemoryProjectStore::new());
    let iats = Arc::new(MemoryIatStore::new());
    let counting = Arc::new(CountingGrants {
        inner: grants.clone(),
        reads: AtomicUsize::new(0),
    });
    let server = |grants: Arc<dyn GrantStore>, seed: u64| {
        AuthorizationServer::builder(Issuer::new(ISSUER).unwrap())
            .clock(clock.clone())
            .audit(audit.clone())
            .clients(clients.clone())
            .grants(grants)
            .projects(projects.clone())
            .iats(iats.clone())
            .random(Arc::new(SeededRandom::new(seed)))
            .recent_records(recent)
            .build()
    };
    let project = ProjectId::new("proj_demo").unwrap();
    let a = server(counting.clone(), 1);
    let b = server(grants.clone(), 2);
    a.put_project(&project, project_settings()).await.unwrap();
    let harness = |server| Harness {
        server,
        clock: clock.clone(),
        audit: audit.clone(),
        clients: clients.clone(),
        grants: grants.clone(),
        project: project.clone(),
    };
    Pair {
        a: harness(a),
        b: harness(b),
        counting,
        iats,
    }
}

#[tokio::test]
async fn a_whole_flow_reads_no_code_or_refresh_token_back() {
    for (recent, reads) in [(100, 0), (0, 3)] {
        let p = pair(recent).await;
        let client = p.a.public_client(1, &[REDIRECT]).await;
        let v = verifier(1);
        let code = p.a.code_for(&client, &v, "").await;
        let t1 = p.a.exchange(&client, &code, &v, "").await.unwrap();
        let t2 = p.a.refresh(&client, t1.refresh_token().unwrap(), "").await.unwrap();
        let t3 = p.a.refresh(&client, t2.refresh_token().unwrap(), "").await.unwrap();
        assert_eq!(
            p.counting.reads.load(Ordering::SeqCst),
            reads,
            "reads with recent_records({recent})"
        );
        for t in [&t1, &t2] {
            assert_eq!(p.a.introspect(t.refresh_token().unwrap()).await["active"], false);
        }
        assert_eq!(p.a.introspect(t3.access_token()).await["active"], true);
        assert_eq!(p.a.introspect(t3.refresh_token().unwrap()).await["active"], true);
    }
}

#[tokio::test]
async fn a_code_kept_here_but_redeemed_elsewhere_is_a_replay() {
    let p = pair(100).await;
    let client = p.a.public_client(1, &[REDIRECT]).await;
    let v = verifier(2);
    let code = p.a.code_for(&client, &v, "").await;
    // B redeems the code A keeps; A's copy still says "not consumed".
    let t = p.b.exchange(&client, &code, &v, "").await.unwrap();
    assert_eq!(p.a.introspect(t.access_token()).await["active"], true);
    let err = p.a.exchange(&client, &code, &v, "").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    assert_eq!(p.counting.reads.load(Ordering::SeqCst), 0, "A answered from its copy");
    // The consume decided: the replay revoked the grant B's tokens are of.
    assert_eq!(p.a.introspect(t.access_token()).await["active"], false);
    assert_eq!(p.a.introspect(t.refresh_token().unwrap()).await["active"], false);
    assert!(p.a.events().contains(&"authorization_code.reuse_detected"));
}

#[tokio::test]
async fn an_invalid_request_for_a_kept_code_changes_nothing() {
    let p = pair(100).await;
    let client = p.a.public_client(1, &[REDIRECT]).await;
    let v = verifier(3);
    let code = p.a.code_for(&client, &v, "").await;
    // A wrong verifier against the kept copy: refused, the code stays
    // redeemable (now read from the store).
    let err = p.a.exchange(&client, &code, &verifier(9), "").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    let t = p.a.exchange(&client, &code, &v, "").await.unwrap();
    assert_eq!(p.a.introspect(t.access_token()).await["active"], true);
    assert!(!p.a.events().contains(&"authorization_code.reuse_detected"));
}

#[tokio::test]
async fn a_kept_code_of_a_grant_revoked_elsewhere_is_refused() {
    let p = pair(100).await;
    let client = p.a.public_client(1, &[REDIRECT]).await;
    let v = verifier(4);
    let code = p.a.code_for(&client, &v, "").await;
    // B revokes every grant of the user before the exchange.
    p.b.server
        .revoke_user_grants(&p.b.project, &Subject::new("user_demo").unwrap())
        .await
        .unwrap();
    let err = p.a.exchange(&client, &code, &v, "").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn a_kept_refresh_token_rotated_elsewhere_is_reuse() {
    let p = pair(100).await;
    let client = p.a.public_client(1, &[REDIRECT]).await;
    let v = verifier(5);
    let code = p.a.code_for(&client, &v, "").await;
    let t1 = p.a.exchange(&client, &code, &v, "").await.unwrap();
    let rt1 = t1.refresh_token().unwrap();
    // B rotates the token A keeps; past the reuse grace, A sees it again.
    let t2 = p.b.refresh(&client, rt1, "").await.unwrap();
    p.a.clock.advance(authio_mcp::project::DEFAULT_REFRESH_REUSE_GRACE);
    let err = p.a.refresh(&client, rt1, "").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    assert_eq!(p.counting.reads.load(Ordering::SeqCst), 0, "A answered from its copy");
    assert_eq!(
        p.a.introspect(t2.access_token()).await["active"],
        false,
        "the family is revoked"
    );
    assert_eq!(p.a.introspect(t2.refresh_token().unwrap()).await["active"], false);
    assert!(p.a.events().contains(&"refresh_token.reuse_detected"));
}

#[tokio::test]
async fn a_kept_refresh_token_rotated_elsewhere_within_the_grace_gets_the_same_pair() {
    let p = pair(100).await;
    let client = p.a.public_client(1, &[REDIRECT]).await;
    let v = verifier(6);
    let code = p.a.code_for(&client, &v, "").await;
    let t1 = p.a.exchange(&client, &code, &v, "").await.unwrap();
    let rt1 = t1.refresh_token().unwrap();
    let t2 = p.b.refresh(&client, rt1, "").await.unwrap();
    let again = p.a.refresh(&client, rt1, "").await.unwrap();
    assert_eq!(again.refresh_token(), t2.refresh_token());
    assert_eq!(p.a.introspect(t2.refresh_token().unwrap()).await["active"], true);
}

#[tokio::test]
async fn a_kept_initial_access_token_still_counts_and_revokes_across_servers() {
    let p = pair(100).await;
    let body = serde_json::json!({
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    })
    .to_string();
    let issued =
        p.a.server
            .issue_iat(&p.a.project, IatOptions::new().max_uses(3))
            .await
            .unwrap();
    let header = format!("Bearer {}", issued.token.expose_secret());
    let (a, b) = (&p.a, &p.b);
    let register = |h: &'static str| {
        let h = if h == "a" { a } else { b };
        h.server.register_client(&h.project, Some(&header), body.as_bytes())
    };
    // A keeps the token's record after its first use; B uses it up.
    register("a").await.unwrap();
    register("b").await.unwrap();
    register("b").await.unwrap();
    let err = authio_mcp::OAuthError::from(register("a").await.unwrap_err());
    assert_eq!(err.code(), ErrorCode::InvalidToken, "{err:?}");
    assert_eq!(uses(&p, &issued.id).await, 3, "never more than max_uses");

    // Revoked on B while A keeps a usable-looking copy.
    let other = p.a.server.issue_iat(&p.a.project, IatOptions::new()).await.unwrap();
    let header = format!("Bearer {}", other.token.expose_secret());
    let register = || a.server.register_client(&a.project, Some(&header), body.as_bytes());
    register().await.unwrap();
    p.b.server.revoke_iat(&p.b.project, &other.id).await.unwrap();
    let err = authio_mcp::OAuthError::from(register().await.unwrap_err());
    assert_eq!(err.code(), ErrorCode::InvalidToken, "{err:?}");
    assert_eq!(uses(&p, &other.id).await, 1);
}

async fn uses(p: &Pair, id: &authio_mcp::dcr::IatId) -> u32 {
    let all = p.iats.list(&p.a.project).await.unwrap();
    all.iter().find(|r| &r.id == id).unwrap().uses
}
