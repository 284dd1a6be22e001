//! The `UserStore` and `UpstreamLoginStore` contracts, checked against the
//! in-memory implementations. The checks take the traits, so a SQL
//! implementation can run the same ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use authio_mcp::authorize::{AuthorizationRequest, PendingAuthorization, validate_request};
use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile};
use authio_mcp::discovery::Issuer;
use authio_mcp::grant::Subject;
use authio_mcp::project::{ProjectId, ProjectSettings};
use authio_mcp::redirect_uri::RedirectUriPolicy;
use authio_mcp::scope::ScopeSet;
use authio_mcp::store::memory::{MemoryUpstreamLoginStore, MemoryUserStore};
use authio_mcp::store::{LocalUser, LoginTake, UpstreamLoginStore, UserStore};
use authio_mcp::upstream::{self, LoginRandomness, ProviderMetadata, ProviderName, UpstreamProvider};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);

fn user(project: &ProjectId, sub: &str, email: &str, at: OffsetDateTime) -> LocalUser {
    let subject = upstream::local_subject("https://idp.example.com", sub);
    serde_json::from_value(serde_json::json!({
        "project": project, "subject": subject.as_str(), "upstream_issuer": "https://idp.example.com",
        "upstream_subject": sub, "email": email, "email_verified": true,
        "created_at": at.unix_timestamp(), "last_login_at": at.unix_timestamp(),
    }))
    .unwrap()
}

/// The `UserStore` contract: upsert keeps `created_at` and replaces the
/// claims; consents are the union of approvals, per (project, user,
/// client), and revocation forgets them; projects are separate.
async fn user_store_contract(store: &dyn UserStore) {
    let p = ProjectId::new("proj_a").unwrap();
    let q = ProjectId::new("proj_b").unwrap();
    let first = store.upsert(user(&p, "1", "old@example.com", T0)).await.unwrap();
    let later = T0 + Duration::days(1);
    let second = store.upsert(user(&p, "1", "new@example.com", later)).await.unwrap();
    assert_eq!(second.created_at, first.created_at, "created_at kept");
    assert_eq!(second.last_login_at, later);
    assert_eq!(second.email.as_deref(), Some("new@example.com"));
    let read = store.user(&p, &second.subject).await.unwrap().unwrap();
    assert_eq!(read, second);
    assert!(
        store.user(&q, &second.subject).await.unwrap().is_none(),
        "projects are separate"
    );
    assert_eq!(read.claims().email.as_deref(), Some("new@example.com"));

    let s = &second.subject;
    let other = Subject::new("usr_other").unwrap();
    assert!(store.consent(&p, s, "client_a").await.unwrap().is_none());
    store
        .remember_consent(&p, s, "client_a", &ScopeSet::parse("mcp:read").unwrap(), T0)
        .await
        .unwrap();
    store
        .remember_consent(&p, s, "client_a", &ScopeSet::parse("mcp:write").unwrap(), later)
        .await
        .unwrap();
    let c = store.consent(&p, s, "client_a").await.unwrap().unwrap();
    assert!(
        ScopeSet::parse("mcp:read mcp:write").unwrap().is_subset_of(&c.scopes),
        "union"
    );
    assert_eq!(c.updated_at, later);
    assert!(store.consent(&p, s, "client_b").await.unwrap().is_none(), "per client");
    assert!(
        store.consent(&p, &other, "client_a").await.unwrap().is_none(),
        "per user"
    );
    assert!(store.consent(&q, s, "client_a").await.unwrap().is_none(), "per project");
    assert!(store.revoke_consent(&p, s, "client_a").await.unwrap());
    assert!(!store.revoke_consent(&p, s, "client_a").await.unwrap());
    assert!(store.consent(&p, s, "client_a").await.unwrap().is_none());
}

fn pending() -> PendingAuthorization {
    let mut req = AuthorizationRequest::default();
    req.response_type = Some("code".into());
    req.code_challenge = Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into());
    req.code_challenge_method = Some("S256".into());
    let id = ClientId::parse_with("client_0123456789abcdef01234567", Default::default()).unwrap();
    let metadata: ClientMetadata =
        serde_json::from_str(r#"{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"none"}"#)
            .unwrap();
    let v = metadata
        .validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
        .unwrap();
    let client = Client::new(id, v, T0);
    let project = ProjectId::new("proj_a").unwrap();
    validate_request(
        &req,
        &project,
        &ProjectSettings::default(),
        &client,
        "https://app.example/cb".into(),
        "https://as.example",
        T0,
    )
    .unwrap()
}

fn login(n: u8, at: OffsetDateTime) -> upstream::UpstreamLogin {
    let issuer = Issuer::new("https://idp.example.com").unwrap();
    let provider = UpstreamProvider::generic(ProviderName::new("oidc").unwrap(), issuer.clone(), "rp");
    let metadata: ProviderMetadata = upstream::parse_provider_metadata(
        br#"{"issuer":"https://idp.example.com","authorization_endpoint":"https://idp.example.com/a",
            "token_endpoint":"https://idp.example.com/t","jwks_uri":"https://idp.example.com/k"}"#,
        &issuer,
        false,
    )
    .unwrap();
    let random = LoginRandomness {
        state: [n; 32],
        nonce: [n; 32],
        verifier: [n; 32],
        browser: [n; 32],
    };
    upstream::start_login(pending(), &provider, &metadata, "https://as.example/cb", random, at).login
}

/// The `UpstreamLoginStore` contract: exactly one concurrent take wins,
/// later takes see the record as taken, other projects see nothing, purge
/// deletes expired records only.
async fn login_store_contract(store: Arc<dyn UpstreamLoginStore>) {
    let p = ProjectId::new("proj_a").unwrap();
    let q = ProjectId::new("proj_b").unwrap();
    let a = login(1, T0);
    let b = login(2, T0 + Duration::minutes(5));
    let (ha, hb) = (a.state_hash, b.state_hash);
    store.insert(&p, a).await.unwrap();
    store.insert(&p, b).await.unwrap();
    assert!(matches!(store.take(&q, &ha).await.unwrap(), LoginTake::Unknown));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, p) = (store.clone(), p.clone());
        tasks.push(tokio::spawn(async move { store.take(&p, &ha).await.unwrap() }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            LoginTake::Taken(l) => {
                assert_eq!(l.state_hash, ha);
                wins += 1;
            }
            LoginTake::AlreadyTaken(l) => assert_eq!(l.state_hash, ha),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(wins, 1);
    // Only the first login has expired at T0 + 10 minutes.
    assert_eq!(store.purge(T0 + upstream::UPSTREAM_LOGIN_TTL).await.unwrap(), 1);
    assert!(matches!(store.take(&p, &ha).await.unwrap(), LoginTake::Unknown));
    assert!(matches!(store.take(&p, &hb).await.unwrap(), LoginTake::Taken(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_stores_keep_the_contracts() {
    user_store_contract(&MemoryUserStore::new()).await;
    login_store_contract(Arc::new(MemoryUpstreamLoginStore::default())).await;
}

#[tokio::test]
async fn a_full_login_store_refuses_rather_than_evicts() {
    let store = MemoryUpstreamLoginStore::new(1);
    let p = ProjectId::new("proj_a").unwrap();
    let a = login(1, T0);
    let ha = a.state_hash;
    store.insert(&p, a).await.unwrap();
    assert!(store.insert(&p, login(2, T0)).await.is_err());
    assert!(matches!(store.take(&p, &ha).await.unwrap(), LoginTake::Taken(_)));
    // Once the first has expired, there is room again.
    assert!(
        store
            .insert(&p, login(3, T0 + upstream::UPSTREAM_LOGIN_TTL))
            .await
            .is_ok()
    );
}
