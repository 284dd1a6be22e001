//! The driver's structured errors: a host sees why a call failed (kind,
//! reason, the storage failure as the source); the client sees only the
//! sanitized OAuth error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::error::Error as _;
use std::sync::Arc;

use async_trait::async_trait;
use authio_mcp::issuer::Issuer;
use authio_mcp::project::{ProjectId, ProjectSettings};
use authio_mcp::server::{AuthorizationServer, EndpointError, ErrorKind};
use authio_mcp::store::{ProjectStore, StoreError, StoreErrorKind};
use authio_mcp::{ErrorCode, OAuthError};

/// A project store whose reads fail, as a database that went away.
struct BrokenProjects;

#[async_trait]
impl ProjectStore for BrokenProjects {
    async fn get(&self, _: &ProjectId) -> Result<Option<ProjectSettings>, StoreError> {
        Err(StoreError::with_source(
            "reading project settings",
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by db.internal:5432"),
        ))
    }
    async fn put(&self, _: &ProjectId, _: ProjectSettings) -> Result<(), StoreError> {
        Ok(())
    }
    async fn compare_and_swap(
        &self,
        _: &ProjectId,
        _: &ProjectSettings,
        _: ProjectSettings,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }
}

fn broken() -> AuthorizationServer {
    AuthorizationServer::builder(Issuer::new("https://auth.example.com").unwrap())
        .projects(Arc::new(BrokenProjects))
        .build()
}

fn project() -> ProjectId {
    ProjectId::new("proj_acme").unwrap()
}

#[tokio::test]
async fn a_host_matches_on_a_store_failure_and_reads_its_source() {
    let server = broken();
    let e: EndpointError = server
        .token(&project(), None, b"grant_type=authorization_code&code=x")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Store);
    assert_eq!(e.reason(), Some("store_failure"));
    let store = e
        .source()
        .and_then(|s| s.downcast_ref::<StoreError>())
        .expect("the StoreError is the source");
    assert_eq!(store.message(), "reading project settings");
    assert_eq!(store.kind(), StoreErrorKind::Failure);
    // Its own cause is still there for the host's log.
    assert_eq!(store.source().unwrap().to_string(), "refused by db.internal:5432");
    assert!(std::ptr::eq(e.store_error().unwrap(), store));

    // Every endpoint keeps the cause the same way.
    let revoke = server.revoke(&project(), None, b"token=t").await.unwrap_err();
    assert_eq!(revoke.kind(), ErrorKind::Store);
    let introspect = server.introspect(&project(), b"token=t").await.unwrap_err();
    assert_eq!(introspect.kind(), ErrorKind::Store);
    let metadata = server.metadata(&project()).await.unwrap_err();
    assert_eq!(metadata.kind(), ErrorKind::Store);
    let jwks = server.jwks(&project()).await.unwrap_err();
    assert!(jwks.store_error().is_some());
}

#[tokio::test]
async fn the_client_sees_a_sanitized_server_error() {
    let server = broken();
    let e = server
        .token(&project(), None, b"grant_type=authorization_code&code=x")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::ServerError);
    let oauth = OAuthError::from(e);
    assert_eq!(oauth, OAuthError::server_error());
    assert_eq!(oauth.reason(), None, "no cause rides along on the client's error");
    let response = oauth.to_response();
    assert_eq!(response.status(), 500);
    let body = String::from_utf8(response.into_body()).unwrap();
    assert!(!body.contains("db.internal"), "{body}");
    assert!(!body.contains("reading project settings"), "{body}");
}

#[tokio::test]
async fn a_protocol_refusal_keeps_its_code_and_reason() {
    let server = AuthorizationServer::builder(Issuer::new("https://auth.example.com").unwrap()).build();
    server
        .put_project(&project(), ProjectSettings::default())
        .await
        .unwrap();
    let e = server
        .token(&project(), None, b"grant_type=password")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert_eq!(e.code(), ErrorCode::UnsupportedGrantType);
    assert!(e.source().is_none());
    assert_eq!(e.to_oauth().code(), ErrorCode::UnsupportedGrantType);

    let e = server
        .token(
            &project(),
            None,
            b"grant_type=authorization_code&code=x&client_id=nobody_here",
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ClientAuthentication);
    assert_eq!(e.code(), ErrorCode::InvalidClient);
    assert_eq!(e.reason(), Some("unknown_client"));
    assert_eq!(e.to_oauth().description(), Some("client authentication failed"));
}

#[tokio::test]
async fn an_authorization_error_page_keeps_the_store_failure_for_the_host() {
    use authio_mcp::server::{AuthorizeOutcome, CallbackOutcome};
    let server = broken();
    let query = "response_type=code&client_id=https%3A%2F%2Fapp.example%2Fclient.json\
                 &redirect_uri=https%3A%2F%2Fapp.example%2Fcb&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
                 &code_challenge_method=S256&state=s";
    match server.authorize(&project(), query).await {
        AuthorizeOutcome::ShowError(e) => {
            assert_eq!(e.kind(), ErrorKind::Store);
            assert_eq!(e.store_error().unwrap().message(), "reading project settings");
            assert_eq!(e.to_oauth(), OAuthError::server_error());
        }
        other => panic!("expected an error page, got {other:?}"),
    }
    match server.authorize_with_provider(&project(), "google", query).await {
        AuthorizeOutcome::ShowError(e) => assert_eq!(e.kind(), ErrorKind::Store),
        other => panic!("expected an error page, got {other:?}"),
    }
    match server
        .finish_upstream_login(&project(), "google", "state=abc&code=xyz", Some("cookie"))
        .await
    {
        CallbackOutcome::ShowError(e) => {
            assert_eq!(e.kind(), ErrorKind::Store);
            assert!(e.source().is_some());
        }
        other => panic!("expected an error page, got {other:?}"),
    }

    // Over HTTP the page is a bare server error: no cause reaches the user.
    let endpoints = authio_mcp::http::OAuthEndpoints::new(
        server,
        Arc::new(authio_mcp::http::HeaderOrDefaultProjectResolver::new(project())),
    );
    let req = http::Request::get(format!("/oauth2/authorize?{query}"))
        .body(Vec::<u8>::new())
        .unwrap();
    match endpoints.authorize(&req).await {
        authio_mcp::http::AuthorizeResponse::Response(r) => {
            assert_eq!(r.status(), 500);
            let body = String::from_utf8(r.into_body()).unwrap();
            assert!(!body.contains("db.internal"), "{body}");
            assert!(!body.contains("reading project settings"), "{body}");
        }
        _ => panic!("expected a response"),
    }
}

#[tokio::test]
async fn an_authorization_refusal_keeps_its_reason() {
    use authio_mcp::server::AuthorizeOutcome;
    let server = AuthorizationServer::builder(Issuer::new("https://auth.example.com").unwrap()).build();
    server
        .put_project(&project(), ProjectSettings::default())
        .await
        .unwrap();
    match server.authorize(&project(), "response_type=code").await {
        AuthorizeOutcome::ShowError(e) => {
            assert_eq!(e.kind(), ErrorKind::Rejected);
            assert!(e.store_error().is_none());
            assert!(e.reason().is_some(), "{e:?}");
        }
        other => panic!("expected an error page, got {other:?}"),
    }
}

/// An upstream-login store whose `take` fails, as a database that went away.
struct FailingLogins;

#[async_trait]
impl authio_mcp::store::UpstreamLoginStore for FailingLogins {
    async fn insert(
        &self,
        _: &ProjectId,
        _: authio_mcp::upstream::UpstreamLogin,
        _: Option<&authio_mcp::cimd::RequestSource>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    async fn take(
        &self,
        _: &ProjectId,
        _: &authio_mcp::secret::SecretHash,
        _: &authio_mcp::secret::SecretHash,
        _: time::OffsetDateTime,
    ) -> Result<authio_mcp::store::LoginTake, StoreError> {
        Err(StoreError::with_source(
            "taking an upstream login",
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by db.internal:5432"),
        ))
    }
    async fn purge(&self, _: time::OffsetDateTime) -> Result<usize, StoreError> {
        Ok(0)
    }
}

#[tokio::test]
async fn a_failed_upstream_login_take_keeps_its_cause_for_the_host() {
    use authio_mcp::server::CallbackOutcome;
    let audit = Arc::new(authio_mcp::store::memory::MemoryAuditLog::new());
    let server = AuthorizationServer::builder(Issuer::new("https://auth.example.com").unwrap())
        .upstream_login_store(Arc::new(FailingLogins))
        .audit(audit.clone())
        .build();
    server
        .put_project(&project(), ProjectSettings::default())
        .await
        .unwrap();
    let query = "state=abc&code=xyz";
    match server
        .finish_upstream_login(&project(), "google", query, Some("cookie"))
        .await
    {
        CallbackOutcome::ShowError(e) => {
            assert_eq!(e.kind(), ErrorKind::Store);
            assert_eq!(e.store_error().unwrap().message(), "taking an upstream login");
            assert_eq!(e.to_oauth(), OAuthError::server_error());
        }
        other => panic!("expected an error page, got {other:?}"),
    }
    let events = audit.recent(&project(), 10);
    assert!(
        events.iter().any(|e| e.name() == "upstream.login_failed"
            && serde_json::to_string(e).unwrap().contains("storage_error")),
        "{events:?}"
    );

    // Over HTTP: a bare server error page, no cause.
    let endpoints = authio_mcp::http::OAuthEndpoints::new(
        server,
        Arc::new(authio_mcp::http::HeaderOrDefaultProjectResolver::new(project())),
    );
    let req = http::Request::get(format!("/v1/auth/oauth/google/callback?{query}"))
        .header("cookie", "authio_ul_0=cookie")
        .body(Vec::<u8>::new())
        .unwrap();
    match endpoints.upstream_callback(&req, "google").await {
        authio_mcp::http::UpstreamCallbackResponse::Response(r) => {
            assert_eq!(r.status(), 500);
            let body = String::from_utf8(r.into_body()).unwrap();
            assert!(!body.contains("db.internal"), "{body}");
            assert!(!body.contains("taking an upstream login"), "{body}");
        }
        _ => panic!("expected a response"),
    }
}
