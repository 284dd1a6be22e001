//! `AuthorizationServerBuilder::recent_records`: a server that keeps the
//! codes, refresh tokens and initial access tokens it just stored skips
//! the store read before the atomic call, and every rule still holds when
//! another server sharing the stores consumed, rotated, revoked or used
//! up the same record meanwhile: on the memory stores, on two SQLite
//! stores over one file, and on two PostgreSQL stores over one database
//! (when `AUTHIO_TEST_DATABASE_URL` is set).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
mod sql_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use authio_mcp::ErrorCode;
use authio_mcp::dcr::IatOptions;
use authio_mcp::discovery::Issuer;
use authio_mcp::grant::{
    AccessTokenRecord, CodeRecord, GrantId, GrantSummary, RefreshTokenRecord, RotationMark, Subject,
};
use authio_mcp::pkce::CodeVerifier;
use authio_mcp::project::ProjectId;
use authio_mcp::secret::SecretHash;
use authio_mcp::server::{AuthorizationServer, FixedClock, SeededRandom};
use authio_mcp::store::memory::{
    MemoryAuditLog, MemoryClientStore, MemoryGrantStore, MemoryIatStore, MemoryProjectStore,
};
use authio_mcp::store::sql::{PostgresStore, SqlOptions, SqliteStore};
use authio_mcp::store::{
    ClientStore, CodeConsumption, GrantSelector, GrantStore, IatStore, Page, PageRequest, ProjectStore,
    RefreshRotation, StoreError,
};
use authio_mcp::token::TokenResponse;
use common::*;
use time::{Duration, OffsetDateTime};

/// The memory grant store, counting the reads of a code or refresh token
/// by hash (the reads `recent_records` saves). The issuing calls go to the
/// memory store's own implementations, which read nothing through here.
struct CountingGrants {
    inner: Arc<dyn GrantStore>,
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
    iats: Arc<dyn IatStore>,
    clients: Arc<dyn ClientStore>,
    _db: Db,
}

/// What keeps a SQL backend's database alive for the test.
enum Db {
    None,
    Sqlite(#[allow(dead_code)] sql_support::TempDir),
    Postgres(#[allow(dead_code)] sql_support::PgDatabase),
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

/// One server's stores.
struct Stores {
    projects: Arc<dyn ProjectStore>,
    clients: Arc<dyn ClientStore>,
    grants: Arc<dyn GrantStore>,
    iats: Arc<dyn IatStore>,
}

impl Stores {
    fn of<S: ProjectStore + ClientStore + GrantStore + IatStore + 'static>(s: Arc<S>) -> Self {
        Self {
            projects: s.clone(),
            clients: s.clone(),
            grants: s.clone(),
            iats: s,
        }
    }
}

/// The backends to run on: memory and SQLite always, PostgreSQL when
/// `AUTHIO_TEST_DATABASE_URL` names a server.
fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Memory, Backend::Sqlite];
    if std::env::var(sql_support::PG_ENV).is_ok() {
        all.push(Backend::Postgres);
    }
    all
}

async fn two_stores(backend: Backend, test: &str) -> (Stores, Stores, Db) {
    match backend {
        Backend::Memory => {
            let stores = || Stores {
                projects: Arc::new(MemoryProjectStore::new()),
                clients: Arc::new(MemoryClientStore::new()),
                grants: Arc::new(MemoryGrantStore::new()),
                iats: Arc::new(MemoryIatStore::new()),
            };
            let a = stores();
            let b = Stores {
                projects: a.projects.clone(),
                clients: a.clients.clone(),
                grants: a.grants.clone(),
                iats: a.iats.clone(),
            };
            (a, b, Db::None)
        }
        Backend::Sqlite => {
            let dir = sql_support::TempDir::new();
            let url = dir.sqlite_url("shared.db");
            let open = || SqliteStore::connect(&url, SqlOptions::default());
            let a = Arc::new(open().await.unwrap());
            a.migrate().await.unwrap();
            let b = Arc::new(open().await.unwrap());
            (Stores::of(a), Stores::of(b), Db::Sqlite(dir))
        }
        Backend::Postgres => {
            let db = sql_support::pg_database(test).await.unwrap();
            let open = || PostgresStore::connect(&db.url, SqlOptions::default());
            let a = Arc::new(open().await.unwrap());
            a.migrate().await.unwrap();
            let b = Arc::new(open().await.unwrap());
            (Stores::of(a), Stores::of(b), Db::Postgres(db))
        }
    }
}

async fn pair_on(backend: Backend, recent: usize, test: &str) -> Pair {
    let clock = Arc::new(FixedClock::new(START));
    let audit = Arc::new(MemoryAuditLog::new());
    let (sa, sb, db) = two_stores(backend, test).await;
    let counting = Arc::new(CountingGrants {
        inner: sa.grants.clone(),
        reads: AtomicUsize::new(0),
    });
    let server = |s: &Stores, grants: Arc<dyn GrantStore>, seed: u64| {
        AuthorizationServer::builder(Issuer::new(ISSUER).unwrap())
            .clock(clock.clone())
            .audit(audit.clone())
            .clients(s.clients.clone())
            .grants(grants)
            .projects(s.projects.clone())
            .iats(s.iats.clone())
            .random(Arc::new(SeededRandom::new(seed)))
            .recent_records(recent)
            .build()
    };
    let project = ProjectId::new("proj_demo").unwrap();
    let a = server(&sa, counting.clone(), 1);
    let b = server(&sb, sb.grants.clone(), 2);
    a.put_project(&project, project_settings()).await.unwrap();
    // The harness's own memory stores are unused here: clients are stored
    // with `Pair::client`.
    let harness = |server| Harness {
        server,
        clock: clock.clone(),
        audit: audit.clone(),
        clients: Arc::new(MemoryClientStore::new()),
        grants: Arc::new(MemoryGrantStore::new()),
        project: project.clone(),
    };
    Pair {
        a: harness(a),
        b: harness(b),
        counting,
        iats: sa.iats,
        clients: sa.clients,
        _db: db,
    }
}

async fn pair(recent: usize) -> Pair {
    pair_on(Backend::Memory, recent, "").await
}

impl Pair {
    /// A public client with [`REDIRECT`], stored in the shared store.
    async fn client(&self, n: u8) -> authio_mcp::client::ClientId {
        self.a.public_client_in(self.clients.as_ref(), n, &[REDIRECT]).await
    }

    fn reads(&self) -> usize {
        self.counting.reads.load(Ordering::SeqCst)
    }

    /// A client, its verifier and a code A issued it (A keeps the code).
    async fn code(&self, n: u8) -> (authio_mcp::client::ClientId, CodeVerifier, String) {
        let client = self.client(1).await;
        let v = verifier(n);
        let code = self.a.code_for(&client, &v, "").await;
        (client, v, code)
    }

    /// A client and the tokens A issued it (A keeps the refresh token).
    async fn tokens(&self, n: u8) -> (authio_mcp::client::ClientId, TokenResponse) {
        let (client, v, code) = self.code(n).await;
        let t = self.a.exchange(&client, &code, &v, "").await.unwrap();
        (client, t)
    }
}

#[tokio::test]
async fn a_whole_flow_reads_no_code_or_refresh_token_back() {
    for backend in backends() {
        for (recent, reads) in [(100, 0), (0, 3)] {
            let p = pair_on(backend, recent, "recent_records_whole_flow").await;
            let (client, t1) = p.tokens(1).await;
            let t2 = p.a.refresh(&client, t1.refresh_token().unwrap(), "").await.unwrap();
            let t3 = p.a.refresh(&client, t2.refresh_token().unwrap(), "").await.unwrap();
            assert_eq!(p.reads(), reads, "{backend:?}: reads with recent_records({recent})");
            for t in [&t1, &t2] {
                assert_eq!(p.a.introspect(t.refresh_token().unwrap()).await["active"], false);
            }
            assert_eq!(p.a.introspect(t3.access_token()).await["active"], true);
            assert_eq!(p.a.introspect(t3.refresh_token().unwrap()).await["active"], true);
        }
    }
}

#[tokio::test]
async fn a_code_kept_here_but_redeemed_elsewhere_is_a_replay() {
    for backend in backends() {
        let p = pair_on(backend, 100, "recent_records_code_replay").await;
        let (client, v, code) = p.code(2).await;
        // B redeems the code A keeps; A's copy still says "not consumed".
        let t = p.b.exchange(&client, &code, &v, "").await.unwrap();
        assert_eq!(p.a.introspect(t.access_token()).await["active"], true);
        let before = p.reads();
        let err = p.a.exchange(&client, &code, &v, "").await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidGrant);
        assert_eq!(
            p.reads(),
            before + 1,
            "{backend:?}: only the failed consume reads the code"
        );
        // The consume decided: the replay revoked the grant B's tokens are of.
        assert_eq!(p.a.introspect(t.access_token()).await["active"], false, "{backend:?}");
        assert_eq!(p.a.introspect(t.refresh_token().unwrap()).await["active"], false);
        assert!(p.a.events().contains(&"authorization_code.reuse_detected"));
    }
}

#[tokio::test]
async fn an_invalid_request_for_a_kept_code_changes_nothing() {
    let p = pair(100).await;
    let (client, v, code) = p.code(3).await;
    // A wrong verifier against the kept copy: refused, the code stays
    // redeemable (now read from the store: the copy is taken once).
    let err = p.a.exchange(&client, &code, &verifier(9), "").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    assert_eq!(p.reads(), 0);
    let t = p.a.exchange(&client, &code, &v, "").await.unwrap();
    assert_eq!(p.reads(), 1, "the second presentation read the store");
    assert_eq!(p.a.introspect(t.access_token()).await["active"], true);
    assert!(!p.a.events().contains(&"authorization_code.reuse_detected"));
}

#[tokio::test]
async fn a_kept_code_of_a_grant_revoked_elsewhere_is_refused_and_is_no_replay() {
    for backend in backends() {
        let p = pair_on(backend, 100, "recent_records_code_revoked").await;
        let (client, v, code) = p.code(4).await;
        // B revokes every grant of the user before the exchange.
        p.b.server
            .revoke_user_grants(&p.b.project, &Subject::new("user_demo").unwrap())
            .await
            .unwrap();
        let err = p.a.exchange(&client, &code, &v, "").await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidGrant, "{backend:?}");
        let events = p.a.events();
        assert!(
            !events.contains(&"authorization_code.reuse_detected"),
            "{backend:?}: a revoked grant's code is not a replay: {events:?}"
        );
    }
}

#[tokio::test]
async fn a_kept_code_that_expired_is_refused_on_the_copy_and_is_no_replay() {
    for backend in backends() {
        let p = pair_on(backend, 100, "recent_records_code_expired").await;
        let (client, v, code) = p.code(5).await;
        p.a.clock
            .advance(authio_mcp::project::ProjectSettings::default().code_ttl.get());
        let err = p.a.exchange(&client, &code, &v, "").await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidGrant, "{backend:?}");
        assert!(!p.a.events().contains(&"authorization_code.reuse_detected"));
    }
}

#[tokio::test]
async fn a_kept_code_is_not_taken_by_another_project() {
    let p = pair(100).await;
    let client = p.client(1).await;
    let other = ProjectId::new("proj_other").unwrap();
    p.a.server.put_project(&other, project_settings()).await.unwrap();
    let v = verifier(6);
    let code = p.a.code_for(&client, &v, "").await;
    // The same client in the other project, so the request gets past
    // client authentication to the code.
    let authio_mcp::client::ClientId::Registered(id) = &client else {
        unreachable!()
    };
    let stored = p.clients.get(&p.a.project, id).await.unwrap().unwrap();
    assert!(p.clients.insert(&other, stored).await.unwrap());
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("client_id", client.as_str()),
        ("code_verifier", v.as_str()),
    ]);
    let err = p.a.server.token(&other, None, body.as_bytes()).await.unwrap_err();
    assert_eq!(authio_mcp::OAuthError::from(err).code(), ErrorCode::InvalidGrant);
    assert_eq!(p.reads(), 1, "the other project read its own store");
    p.a.exchange(&client, &code, &v, "").await.unwrap();
    assert_eq!(p.reads(), 1, "the copy was still there for its own project");
}

#[tokio::test]
async fn a_kept_refresh_token_rotated_elsewhere_is_reuse() {
    for backend in backends() {
        let p = pair_on(backend, 100, "recent_records_refresh_reuse").await;
        let (client, t1) = p.tokens(7).await;
        let rt1 = t1.refresh_token().unwrap();
        // B rotates the token A keeps; past the reuse grace, A sees it again.
        let t2 = p.b.refresh(&client, rt1, "").await.unwrap();
        p.a.clock.advance(authio_mcp::project::DEFAULT_REFRESH_REUSE_GRACE);
        let err = p.a.refresh(&client, rt1, "").await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidGrant);
        assert_eq!(p.reads(), 0, "{backend:?}: A answered from its copy");
        assert_eq!(
            p.a.introspect(t2.access_token()).await["active"],
            false,
            "{backend:?}: the family is revoked"
        );
        assert_eq!(p.a.introspect(t2.refresh_token().unwrap()).await["active"], false);
        assert!(p.a.events().contains(&"refresh_token.reuse_detected"));
    }
}

#[tokio::test]
async fn a_kept_refresh_token_rotated_elsewhere_within_the_grace_gets_the_same_pair() {
    for backend in backends() {
        let p = pair_on(backend, 100, "recent_records_refresh_grace").await;
        let (client, t1) = p.tokens(8).await;
        let rt1 = t1.refresh_token().unwrap();
        let t2 = p.b.refresh(&client, rt1, "").await.unwrap();
        let again = p.a.refresh(&client, rt1, "").await.unwrap();
        assert_eq!(again.refresh_token(), t2.refresh_token(), "{backend:?}");
        assert_eq!(p.a.introspect(t2.refresh_token().unwrap()).await["active"], true);
    }
}

#[tokio::test]
async fn a_kept_refresh_token_of_a_grant_revoked_elsewhere_is_refused() {
    for backend in backends() {
        let p = pair_on(backend, 100, "recent_records_refresh_revoked").await;
        let (client, t1) = p.tokens(9).await;
        p.b.server
            .revoke_user_grants(&p.b.project, &Subject::new("user_demo").unwrap())
            .await
            .unwrap();
        let err = p.a.refresh(&client, t1.refresh_token().unwrap(), "").await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidGrant, "{backend:?}");
        assert!(!p.a.events().contains(&"refresh_token.reuse_detected"));
    }
}

fn registration_body(redirect: &str) -> String {
    serde_json::json!({
        "redirect_uris": [redirect],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    })
    .to_string()
}

#[tokio::test]
async fn a_kept_initial_access_token_still_counts_and_revokes_across_servers() {
    for backend in backends() {
        let p = pair_on(backend, 100, "recent_records_iat").await;
        let body = registration_body(REDIRECT);
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
        assert_eq!(err.code(), ErrorCode::InvalidToken, "{backend:?}: {err:?}");
        assert_eq!(uses(&p, &issued.id).await, 3, "{backend:?}: never more than max_uses");

        // Revoked on B while A keeps a usable-looking copy.
        let other = p.a.server.issue_iat(&p.a.project, IatOptions::new()).await.unwrap();
        let header = format!("Bearer {}", other.token.expose_secret());
        let register = || a.server.register_client(&a.project, Some(&header), body.as_bytes());
        register().await.unwrap();
        p.b.server.revoke_iat(&p.b.project, &other.id).await.unwrap();
        let err = authio_mcp::OAuthError::from(register().await.unwrap_err());
        assert_eq!(err.code(), ErrorCode::InvalidToken, "{backend:?}: {err:?}");
        assert_eq!(uses(&p, &other.id).await, 1);
    }
}

async fn register_on(h: &Harness, header: &str, body: &str) -> Result<(), authio_mcp::OAuthError> {
    h.server
        .register_client(&h.project, Some(header), body.as_bytes())
        .await
        .map(drop)
        .map_err(authio_mcp::OAuthError::from)
}

#[tokio::test]
async fn a_kept_initial_access_token_is_read_again_after_five_seconds() {
    let p = pair(100).await;
    let (good, bad) = (registration_body(REDIRECT), registration_body("http://evil.example/cb"));
    let code = |r: Result<(), authio_mcp::OAuthError>| r.unwrap_err().code();
    let issued = p.a.server.issue_iat(&p.a.project, IatOptions::new()).await.unwrap();
    let header = format!("Bearer {}", issued.token.expose_secret());
    register_on(&p.a, &header, &good).await.unwrap();
    p.b.server.revoke_iat(&p.b.project, &issued.id).await.unwrap();
    // Within 5 s A validates the request on its copy (invalid metadata is
    // reported first); the use is refused all the same.
    assert_eq!(
        code(register_on(&p.a, &header, &bad).await),
        ErrorCode::InvalidRedirectUri
    );
    assert_eq!(code(register_on(&p.a, &header, &good).await), ErrorCode::InvalidToken);
    // A refused use drops the copy: the next request reads the store.
    assert_eq!(code(register_on(&p.a, &header, &bad).await), ErrorCode::InvalidToken);

    // A copy older than 5 s is read again.
    let fresh = p.a.server.issue_iat(&p.a.project, IatOptions::new()).await.unwrap();
    let header = format!("Bearer {}", fresh.token.expose_secret());
    register_on(&p.a, &header, &good).await.unwrap();
    p.b.server.revoke_iat(&p.b.project, &fresh.id).await.unwrap();
    p.a.clock.advance(Duration::seconds(4));
    assert_eq!(
        code(register_on(&p.a, &header, &bad).await),
        ErrorCode::InvalidRedirectUri
    );
    p.a.clock.advance(Duration::seconds(1));
    assert_eq!(code(register_on(&p.a, &header, &bad).await), ErrorCode::InvalidToken);

    // A clock that went back does not stretch a copy: it is read again.
    let third = p.a.server.issue_iat(&p.a.project, IatOptions::new()).await.unwrap();
    let header = format!("Bearer {}", third.token.expose_secret());
    register_on(&p.a, &header, &good).await.unwrap();
    p.b.server.revoke_iat(&p.b.project, &third.id).await.unwrap();
    p.a.clock.advance(Duration::seconds(-1));
    assert_eq!(code(register_on(&p.a, &header, &bad).await), ErrorCode::InvalidToken);
}

async fn uses(p: &Pair, id: &authio_mcp::dcr::IatId) -> u32 {
    let all = p.iats.list(&p.a.project).await.unwrap();
    all.iter().find(|r| &r.id == id).unwrap().uses
}
