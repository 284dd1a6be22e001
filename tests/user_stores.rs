//! The in-memory `UserStore` and `UpstreamLoginStore`: the public store
//! contract (`store::contract::users`, `store::contract::upstream_logins`,
//! which the SQL stores run too), and the memory store's own bound.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use authio_mcp::authorize::{AuthorizationRequest, PendingAuthorization, validate_request};
use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile};
use authio_mcp::discovery::Issuer;
use authio_mcp::project::{ProjectId, ProjectSettings};
use authio_mcp::redirect_uri::RedirectUriPolicy;
use authio_mcp::secret::SecretHash;
use authio_mcp::store::contract;
use authio_mcp::store::memory::{MemoryUpstreamLoginStore, MemoryUserStore};
use authio_mcp::store::{LoginTake, UpstreamLoginStore as _};
use authio_mcp::upstream::{self, LoginRandomness, ProviderMetadata, ProviderName, UpstreamProvider};
use time::OffsetDateTime;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);

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

fn login(n: u8, at: OffsetDateTime) -> (upstream::UpstreamLogin, SecretHash) {
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
    let start = upstream::start_login(pending(), &provider, &metadata, "https://as.example/cb", random, at);
    (start.login, start.browser_binding.hash())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_stores_keep_the_contracts() {
    contract::users(&MemoryUserStore::new()).await.unwrap();
    let logins = MemoryUpstreamLoginStore::default();
    contract::upstream_logins(&logins, &logins).await.unwrap();
    contract::upstream_logins_per_source(&logins, &logins, authio_mcp::store::DEFAULT_UPSTREAM_LOGINS_PER_SOURCE)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_full_login_store_refuses_rather_than_evicts() {
    let store = MemoryUpstreamLoginStore::new(1);
    let p = ProjectId::new("proj_a").unwrap();
    let (a, browser) = login(1, T0);
    let ha = a.state_hash;
    store.insert(&p, a, None).await.unwrap();
    assert!(store.insert(&p, login(2, T0).0, None).await.is_err());
    assert!(matches!(
        store.take(&p, &ha, &browser, T0).await.unwrap(),
        LoginTake::Taken(_)
    ));
    // Once the first has expired, there is room again.
    assert!(
        store
            .insert(&p, login(3, T0 + upstream::UPSTREAM_LOGIN_TTL).0, None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn one_project_cannot_fill_the_login_store_of_another() {
    let store = MemoryUpstreamLoginStore::new(2);
    let (evil, victim) = (ProjectId::new("proj_evil").unwrap(), ProjectId::new("proj_a").unwrap());
    store.insert(&evil, login(1, T0).0, None).await.unwrap();
    store.insert(&evil, login(2, T0).0, None).await.unwrap();
    assert!(
        store.insert(&evil, login(3, T0).0, None).await.is_err(),
        "the bound holds per project"
    );
    let (l, browser) = login(4, T0);
    let h = l.state_hash;
    store.insert(&victim, l, None).await.unwrap();
    assert!(matches!(
        store.take(&victim, &h, &browser, T0).await.unwrap(),
        LoginTake::Taken(_)
    ));
    // Purging empties both projects once their logins expired.
    assert_eq!(store.purge(T0 + upstream::UPSTREAM_LOGIN_TTL).await.unwrap(), 3);
}
