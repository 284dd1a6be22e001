//! Tracing and audit from the library's side: the `authio.request` span
//! and its closing event, storage failures logged once with their message,
//! `token.rejected` / `authorization.rejected` with specific reasons and
//! without duplicating more specific events, request metadata on every
//! audit event (memory and SQLite logs), the tracing and JSON-lines sinks,
//! and no secret anywhere in what is logged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
mod sql_support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use authio_mcp::ErrorCode;
use authio_mcp::audit::{AuditEvent, JsonLinesAuditSink, RequestMeta, TeeAuditSink, TracingAuditSink};
use authio_mcp::dcr::IatOptions;
use authio_mcp::grant::Subject;
use authio_mcp::http::{HeaderOrDefaultProjectResolver, OAuthEndpoints};
use authio_mcp::project::{ProjectId, ProjectSettings};
use authio_mcp::scope::ScopeSet;
use authio_mcp::server::AuthorizeOutcome;
use authio_mcp::store::memory::MemoryUserStore;
use authio_mcp::store::{AuditLog, AuditQuery, AuditSink, ProjectStore, StoreError, UserStore};
use common::*;
use tracing_subscriber::fmt::MakeWriter;

/// Everything a subscriber printed, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Installs a plain-text subscriber at TRACE for this thread.
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

fn endpoints(h: &Harness) -> OAuthEndpoints {
    OAuthEndpoints::new(
        h.server.clone(),
        Arc::new(HeaderOrDefaultProjectResolver::new(h.project.clone())),
    )
}

fn post_form(path: &str, body: &str, authorization: Option<&str>) -> http::Request<Vec<u8>> {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(a) = authorization {
        b = b.header("authorization", a);
    }
    b.body(body.as_bytes().to_vec()).unwrap()
}

fn body_json(r: http::Response<Vec<u8>>) -> serde_json::Value {
    serde_json::from_slice(r.body()).unwrap_or(serde_json::Value::Null)
}

fn named<'a>(events: &'a [AuditEvent], name: &str) -> Vec<&'a AuditEvent> {
    events.iter().filter(|e| e.name() == name).collect()
}

fn events(h: &Harness) -> Vec<AuditEvent> {
    h.audit.recent(&h.project, 1000)
}

#[tokio::test]
async fn token_failures_are_audited_once_with_a_reason() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let code = h.code_for(&client, &v, "").await;

    // A wrong verifier: refused, recorded with its reason.
    let e = h.exchange(&client, &code, &verifier(2), "").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidGrant);
    assert_eq!(e.reason(), Some("pkce_mismatch"));
    let all = events(&h);
    let rejected = named(&all, "token.rejected");
    assert_eq!(rejected.len(), 1, "{all:?}");
    let j = rejected[0].to_json();
    assert_eq!(j["reason"], "pkce_mismatch");
    assert_eq!(j["error"], "invalid_grant");
    assert_eq!(j["grant_type"], "authorization_code");
    assert_eq!(j["client_id"], client.as_str());

    // The code redeemed, then replayed: the reuse detection is the record,
    // not a generic rejection besides it.
    h.exchange(&client, &code, &v, "").await.unwrap();
    h.exchange(&client, &code, &v, "").await.unwrap_err();
    let all = events(&h);
    assert_eq!(named(&all, "authorization_code.reuse_detected").len(), 1);
    assert_eq!(named(&all, "token.rejected").len(), 1, "{all:?}");

    // A resource outside the grant: `resource.refused` only.
    let code = h.code_for(&client, &v, "").await;
    let e = h
        .exchange(&client, &code, &v, "&resource=https%3A%2F%2Fother.example.com%2Fmcp")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidTarget);
    let all = events(&h);
    assert_eq!(named(&all, "resource.refused").len(), 1);
    assert_eq!(named(&all, "token.rejected").len(), 1, "{all:?}");

    // An unknown grant type and an unknown client: specific reasons; the
    // grant type is recorded only when it is a known one.
    let body = form(&[("grant_type", "password"), ("client_id", client.as_str())]);
    h.server.token(&h.project, None, body.as_bytes()).await.unwrap_err();
    let body = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", "rt_nope"),
        ("client_id", "client_000000000000000000000000"),
    ]);
    h.server.token(&h.project, None, body.as_bytes()).await.unwrap_err();
    let all = events(&h);
    let reasons: Vec<(String, Option<String>)> = named(&all, "token.rejected")
        .iter()
        .map(|e| {
            let j = e.to_json();
            (
                j["reason"].as_str().unwrap().to_owned(),
                j["grant_type"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert!(
        reasons.contains(&("unsupported_grant_type".to_owned(), None)),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("unknown_client".to_owned(), Some("refresh_token".to_owned()))),
        "{reasons:?}"
    );

    // Counted apart, by reason, like every rejection anyone can cause.
    let counts = AuditLog::rejection_counts(h.audit.as_ref(), &h.project).await.unwrap();
    assert!(
        counts
            .iter()
            .any(|c| c.event == "token.rejected" && c.reason == "pkce_mismatch" && c.count == 1),
        "{counts:?}"
    );

    // An unknown project has no audit log to write to.
    let other = ProjectId::new("proj_nope").unwrap();
    h.server.token(&other, None, body.as_bytes()).await.unwrap_err();
    assert!(h.audit.recent(&other, 10).is_empty());
}

#[tokio::test]
async fn authorization_failures_are_audited_with_a_specific_reason() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let rejected = |h: &Harness| -> Vec<serde_json::Value> {
        named(&events(h), "authorization.rejected")
            .iter()
            .map(|e| e.to_json())
            .collect()
    };

    // Phase 1, shown to the user.
    let unknown =
        authio_mcp::client::ClientId::Registered(authio_mcp::client::RegisteredClientId::from_random(&[9; 12]));
    assert!(matches!(
        h.authorize(&auth_query(&unknown, REDIRECT, &v, "")).await,
        AuthorizeOutcome::ShowError(_)
    ));
    assert!(matches!(
        h.authorize(&auth_query(&client, "https://evil.example/cb", &v, ""))
            .await,
        AuthorizeOutcome::ShowError(_)
    ));
    let r = rejected(&h);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0]["reason"], "unknown_client");
    assert_eq!(r[0]["error"], "invalid_client");
    assert_eq!(r[0]["redirected"], false);
    assert_eq!(r[0]["client_id"], unknown.as_str());
    assert_eq!(r[1]["reason"], "redirect_uri_mismatch");
    assert_eq!(r[1]["client_id"], client.as_str());

    // Phase 2, sent back to the client: the reason says which rule.
    let no_pkce = form(&[
        ("response_type", "code"),
        ("client_id", client.as_str()),
        ("redirect_uri", REDIRECT),
        ("resource", RESOURCE),
    ]);
    assert!(matches!(h.authorize(&no_pkce).await, AuthorizeOutcome::Redirect(_)));
    let plain = auth_query(&client, REDIRECT, &v, "").replace("S256", "plain");
    assert!(matches!(h.authorize(&plain).await, AuthorizeOutcome::Redirect(_)));
    let r = rejected(&h);
    assert_eq!(r.len(), 4, "{r:?}");
    assert_eq!(r[2]["reason"], "pkce_challenge_missing");
    assert_eq!(r[2]["error"], "invalid_request");
    assert_eq!(r[2]["redirected"], true);
    assert_eq!(r[3]["reason"], "pkce_plain");

    // Refusals with their own event are not recorded twice.
    let other = auth_query(&client, REDIRECT, &v, "").replace(
        "https%3A%2F%2Fmcp.example.com%2Fmcp",
        "https%3A%2F%2Fother.example.com%2Fmcp",
    );
    assert!(matches!(h.authorize(&other).await, AuthorizeOutcome::Redirect(_)));
    let id = match &client {
        authio_mcp::client::ClientId::Registered(id) => id.clone(),
        authio_mcp::client::ClientId::Metadata(_) => unreachable!(),
    };
    h.server.disable_client(&h.project, &id).await.unwrap();
    assert!(matches!(
        h.authorize(&auth_query(&client, REDIRECT, &v, "")).await,
        AuthorizeOutcome::ShowError(_)
    ));
    let all = events(&h);
    assert_eq!(named(&all, "resource.refused").len(), 1);
    assert_eq!(named(&all, "oauth_client.disabled_refused").len(), 1);
    assert_eq!(rejected(&h).len(), 4, "{all:?}");
}

#[tokio::test]
async fn request_metadata_is_recorded_on_every_event_in_its_scope() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let meta = RequestMeta::new()
        .with_request_id("req-7f3a")
        .with_client_ip("203.0.113.9".parse().unwrap())
        .with_user_agent("Claude-User/1.0");
    let code = meta.clone().scope(h.code_for(&client, &v, "")).await;
    meta.clone()
        .scope(async {
            h.exchange(&client, &code, &verifier(5), "").await.unwrap_err();
            h.exchange(&client, &code, &v, "").await.unwrap();
        })
        .await;
    // Outside a scope: no metadata.
    h.exchange(&client, &code, &verifier(5), "").await.unwrap_err();

    let all = events(&h);
    for name in ["authorization.granted", "token.rejected", "token.issued"] {
        let e = named(&all, name)[0];
        assert_eq!(e.request, meta, "{name}");
        let j = e.to_json();
        assert_eq!(j["request_id"], "req-7f3a");
        assert_eq!(j["client_ip"], "203.0.113.9");
        assert_eq!(j["user_agent"], "Claude-User/1.0");
    }
    let outside = named(&all, "token.rejected");
    assert_eq!(outside.len(), 2);
    assert!(outside.iter().any(|e| e.request.is_empty()), "{outside:?}");
}

#[tokio::test]
async fn the_sqlite_audit_log_keeps_request_metadata() {
    let dir = sql_support::TempDir::new();
    let store =
        authio_mcp::store::sql::SqliteStore::connect(&dir.sqlite_url("audit.db"), sql_support::sealed_options())
            .await
            .unwrap();
    store.migrate().await.unwrap();
    let project = ProjectId::new("proj_sql").unwrap();
    let meta = RequestMeta::new()
        .with_request_id("req-1")
        .with_client_ip("2001:db8::1".parse().unwrap())
        .with_user_agent("cursor/1.2");
    let kind = authio_mcp::audit::AuditKind::TokenRejected {
        client_id: None,
        grant_type: Some("refresh_token".into()),
        error: "invalid_grant".into(),
        reason: "invalid_refresh_token".into(),
        client_authenticated: false,
    };
    let event = AuditEvent::new(project.clone(), START, kind).with_request(meta.clone());
    store.record(event.clone()).await;
    let page = store.query(&AuditQuery::new(project.clone())).await.unwrap();
    assert_eq!(page.events, vec![event]);
    assert_eq!(page.events[0].request, meta);
    let counts = store.rejection_counts(&project).await.unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(
        (counts[0].event.as_str(), counts[0].reason.as_str()),
        ("token.rejected", "invalid_refresh_token")
    );
}

fn wrong_secret(project: &ProjectId, client: &str, second: i64) -> AuditEvent {
    AuditEvent::new(
        project.clone(),
        START + time::Duration::seconds(second),
        authio_mcp::audit::AuditKind::TokenRejected {
            client_id: Some(client.to_owned()),
            grant_type: Some("refresh_token".into()),
            error: "invalid_client".into(),
            reason: "wrong_secret".into(),
            client_authenticated: false,
        },
    )
}

/// A burst of rejections is counted in memory: no database write per
/// request, and exact counts once flushed (another store on the same
/// database sees nothing before, everything after).
#[tokio::test]
async fn sql_rejection_counts_are_flushed_in_batches_and_add_up() {
    let dir = sql_support::TempDir::new();
    let url = dir.sqlite_url("burst.db");
    let store = authio_mcp::store::sql::SqliteStore::connect(&url, sql_support::sealed_options())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let other = authio_mcp::store::sql::SqliteStore::connect(&url, sql_support::sealed_options())
        .await
        .unwrap();
    let project = ProjectId::new("proj_sql").unwrap();
    for i in 0..2000 {
        store.record(wrong_secret(&project, "client_a", i % 60)).await;
    }
    // Nothing written yet (the background flush runs once a second).
    assert!(other.rejection_counts(&project).await.unwrap().is_empty());
    store.flush_rejections().await;
    let counts = other.rejection_counts(&project).await.unwrap();
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert_eq!(counts[0].count, 2000);
    assert_eq!(counts[0].reason, "wrong_secret client=client_a");
    let page = other.query(&AuditQuery::new(project.clone())).await.unwrap();
    assert_eq!(
        page.events.len(),
        authio_mcp::store::sql::REJECTION_SAMPLES_PER_MINUTE as usize
    );
    // More of the same minute: counted on, no more samples.
    for _ in 0..10 {
        store.record(wrong_secret(&project, "client_a", 59)).await;
    }
    // The background flush writes them without being asked.
    tokio::time::sleep(authio_mcp::store::sql::REJECTION_FLUSH_INTERVAL * 3).await;
    assert_eq!(other.rejection_counts(&project).await.unwrap()[0].count, 2010);
    assert_eq!(
        other
            .query(&AuditQuery::new(project.clone()))
            .await
            .unwrap()
            .events
            .len(),
        authio_mcp::store::sql::REJECTION_SAMPLES_PER_MINUTE as usize
    );
    // close() writes what is pending.
    store.record(wrong_secret(&project, "client_a", 59)).await;
    store.close().await;
    assert_eq!(other.rejection_counts(&project).await.unwrap()[0].count, 2011);
    assert_eq!(store.rejections_dropped(), 0);
}

/// Decoy failures against one client cannot use up the minute's samples
/// and hide the client being brute-forced: credential failures are
/// counted and sampled per client.
#[tokio::test]
async fn credential_failures_are_counted_and_sampled_per_client() {
    let dir = sql_support::TempDir::new();
    let store =
        authio_mcp::store::sql::SqliteStore::connect(&dir.sqlite_url("decoy.db"), sql_support::sealed_options())
            .await
            .unwrap();
    store.migrate().await.unwrap();
    let project = ProjectId::new("proj_sql").unwrap();
    for i in 0..5 {
        store.record(wrong_secret(&project, "client_decoy", i)).await;
    }
    for i in 5..50 {
        store.record(wrong_secret(&project, "client_target", i)).await;
    }
    let page = store.query(&AuditQuery::new(project.clone())).await.unwrap();
    let sampled: Vec<String> = page
        .events
        .iter()
        .map(|e| e.to_json()["client_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(sampled.iter().any(|c| c == "client_target"), "{sampled:?}");
    let mut counts: Vec<(String, u64)> = store
        .rejection_counts(&project)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.reason, c.count))
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![
            ("wrong_secret client=client_decoy".to_owned(), 5),
            ("wrong_secret client=client_target".to_owned(), 45)
        ]
    );
    store.close().await;
}

/// Token rejections say whether the client id they name was proven.
#[tokio::test]
async fn token_rejections_say_whether_the_client_authenticated() {
    let h = harness().await;
    let e = endpoints(&h);
    let options = IatOptions::new().pinned(authio_mcp::dcr::PinnedMetadata::unpinned());
    let iat = h.server.issue_iat(&h.project, options).await.unwrap();
    let iat = iat.token.expose_secret().to_owned();
    let reg = http::Request::builder()
        .method("POST")
        .uri("/oauth2/register")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {iat}"))
        .body(
            serde_json::json!({
                "redirect_uris": [REDIRECT],
                "client_name": "Confidential",
                "token_endpoint_auth_method": "client_secret_post",
                "grant_types": ["authorization_code", "refresh_token"]
            })
            .to_string()
            .into_bytes(),
        )
        .unwrap();
    let reg = body_json(e.register(&reg).await);
    let cid = reg["client_id"].as_str().unwrap().to_owned();
    let secret = reg["client_secret"].as_str().unwrap().to_owned();
    let wrong = format!("{secret}x");
    let body = |secret: &str| {
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "rt_unknown"),
            ("client_id", &cid),
            ("client_secret", secret),
        ])
    };
    assert_eq!(
        e.token(&post_form("/oauth2/token", &body(&wrong), None)).await.status(),
        401
    );
    assert_eq!(
        e.token(&post_form("/oauth2/token", &body(&secret), None))
            .await
            .status(),
        400
    );
    let all = events(&h);
    let rejected: Vec<serde_json::Value> = named(&all, "token.rejected").iter().map(|e| e.to_json()).collect();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0]["reason"], "wrong_secret");
    assert_eq!(rejected[0]["client_authenticated"], false);
    assert_eq!(rejected[1]["client_authenticated"], true);
    assert_eq!(rejected[1]["client_id"], cid.as_str());
    let counts = AuditLog::rejection_counts(h.audit.as_ref(), &h.project).await.unwrap();
    assert!(
        counts
            .iter()
            .any(|c| c.reason == format!("wrong_secret client={cid}") && c.count == 1),
        "{counts:?}"
    );
}

/// A project store whose every call fails, as a database that went away.
struct BrokenProjects;

#[async_trait]
impl ProjectStore for BrokenProjects {
    async fn get(&self, _: &ProjectId) -> Result<Option<ProjectSettings>, StoreError> {
        Err(StoreError::with_source(
            "reading project settings",
            std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused by db.internal",
            ),
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

#[tokio::test]
async fn a_store_failure_is_logged_once_with_its_message_and_cause() {
    let captured = Captured::default();
    let _guard = captured.install();
    let h = harness_with(|b| b.projects(Arc::new(BrokenProjects))).await;
    let r = endpoints(&h)
        .token(&post_form("/oauth2/token", "grant_type=authorization_code", None))
        .await;
    assert_eq!(r.status(), 500);
    let body = String::from_utf8(r.into_body()).unwrap();
    assert!(!body.contains("db.internal"), "never shown to the client: {body}");
    let log = captured.text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("reading project settings"), "{log}");
    assert!(errors[0].contains("connection refused by db.internal"), "{log}");
    assert!(errors[0].contains("authio.request"), "inside the request span: {log}");
    // The request's closing event says server_error.
    assert!(
        log.lines().any(
            |l| l.contains("request handled") && l.contains("outcome=\"server_error\"")
                || l.contains("outcome=server_error")
        ),
        "{log}"
    );
}

#[tokio::test]
async fn spans_and_events_name_the_request_and_never_a_secret() {
    let captured = Captured::default();
    let _guard = captured.install();
    let memory_log = Arc::new(authio_mcp::store::memory::MemoryAuditLog::new());
    let sink: Arc<dyn AuditSink> = Arc::new(TeeAuditSink::new(memory_log.clone(), TracingAuditSink::new()));
    let h = harness_with(|b| b.audit(sink)).await;
    let e = endpoints(&h);
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let mut secrets: Vec<String> = vec![v.as_str().to_owned()];

    // Authorization through the HTTP layer, approval, exchange, refresh.
    let q = auth_query(&client, REDIRECT, &v, "");
    let req = http::Request::builder()
        .uri(format!("/oauth2/authorize?{q}"))
        .body(Vec::<u8>::new())
        .unwrap();
    let pending = match e.authorize(&req).await {
        authio_mcp::http::AuthorizeResponse::Pending(p) => *p,
        other => panic!("{other:?}"),
    };
    let r = e.approve(pending, Subject::new("user_demo").unwrap(), None).await;
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let code = query_param(&location, "code").unwrap();
    secrets.push(code.clone());
    let exchange = |code: &str, verifier: &str| {
        form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", client.as_str()),
            ("code_verifier", verifier),
        ])
    };
    let bad = verifier(2);
    secrets.push(bad.as_str().to_owned());
    let r = e
        .token(&post_form("/oauth2/token", &exchange(&code, bad.as_str()), None))
        .await;
    assert_eq!(r.status(), 400);
    let r = e
        .token(&post_form("/oauth2/token", &exchange(&code, v.as_str()), None))
        .await;
    assert_eq!(r.status(), 200);
    let t = body_json(r);
    let (access, refresh) = (
        t["access_token"].as_str().unwrap().to_owned(),
        t["refresh_token"].as_str().unwrap().to_owned(),
    );
    secrets.push(access.clone());
    secrets.push(refresh.clone());
    let body = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh),
        ("client_id", client.as_str()),
    ]);
    let r = e.token(&post_form("/oauth2/token", &body, None)).await;
    secrets.push(body_json(r)["refresh_token"].as_str().unwrap().to_owned());

    // A confidential client registered with an initial access token, then
    // a token request with a wrong secret and one with the right secret.
    let options = IatOptions::new().pinned(authio_mcp::dcr::PinnedMetadata::unpinned());
    let iat = h.server.issue_iat(&h.project, options).await.unwrap();
    let iat = iat.token.expose_secret().to_owned();
    secrets.push(iat.clone());
    let reg = http::Request::builder()
        .method("POST")
        .uri("/oauth2/register")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {iat}"))
        .body(
            serde_json::json!({
                "redirect_uris": [REDIRECT],
                "client_name": "Confidential",
                "token_endpoint_auth_method": "client_secret_post",
                "grant_types": ["authorization_code", "refresh_token"]
            })
            .to_string()
            .into_bytes(),
        )
        .unwrap();
    let r = e.register(&reg).await;
    let status = r.status();
    let reg = body_json(r);
    assert_eq!(status, 201, "{reg}");
    let (cid, secret) = (
        reg["client_id"].as_str().unwrap().to_owned(),
        reg["client_secret"].as_str().unwrap().to_owned(),
    );
    secrets.push(secret.clone());
    let wrong = format!("{secret}x");
    secrets.push(wrong.clone());
    let body = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", "rt_unknown_but_secret_looking"),
        ("client_id", &cid),
        ("client_secret", &wrong),
    ]);
    secrets.push("rt_unknown_but_secret_looking".to_owned());
    let r = e.token(&post_form("/oauth2/token", &body, None)).await;
    assert_eq!(r.status(), 401);
    let body = body.replace(&wrong, &secret);
    let r = e.token(&post_form("/oauth2/token", &body, None)).await;
    assert_eq!(r.status(), 400);
    // Introspection and revocation, also through the HTTP layer.
    let r = e
        .revoke(&post_form(
            "/oauth2/revoke",
            &form(&[("token", &access), ("client_id", client.as_str())]),
            None,
        ))
        .await;
    assert_eq!(r.status(), 200);

    let log = captured.text();
    // One span per call, with what was known.
    let handled: Vec<&str> = log.lines().filter(|l| l.contains("request handled")).collect();
    assert!(
        handled.iter().any(|l| l.contains("authio.request")
            && l.contains("endpoint=\"token\"")
            && l.contains("project=\"proj_demo\"")
            && l.contains(&format!("client_id=\"{}\"", client.as_str()))
            && l.contains("outcome=\"invalid_grant\"")
            && l.contains("reason=\"pkce_mismatch\"")),
        "{log}"
    );
    assert!(
        handled
            .iter()
            .any(|l| l.contains("endpoint=\"token\"") && l.contains("outcome=\"ok\"") && l.contains("DEBUG")),
        "{log}"
    );
    assert!(
        handled.iter().any(|l| l.contains("endpoint=\"token\"")
            && l.contains(&format!("client_id=\"{cid}\""))
            && l.contains("outcome=\"invalid_client\"")
            && l.contains("reason=\"wrong_secret\"")),
        "the reason is logged, never sent: {log}"
    );
    for endpoint in ["authorize", "approve", "register", "revoke"] {
        assert!(
            handled.iter().any(|l| l.contains(&format!("endpoint=\"{endpoint}\""))),
            "{endpoint}: {log}"
        );
    }
    // Audit events through the tracing sink, with their names.
    for name in [
        "token.rejected",
        "token.issued",
        "oauth_client.registered",
        "authorization.granted",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("authio_mcp::audit") && l.contains(&format!("event=\"{name}\""))),
            "{name}: {log}"
        );
    }
    // The tee fed the memory log as well.
    let memory = memory_log.recent(&h.project, 1000);
    assert!(
        named(&memory, "token.rejected").len() == 3 && !named(&memory, "token.issued").is_empty(),
        "{memory:?}"
    );

    // Not one secret in the logs.
    for s in &secrets {
        assert!(!s.is_empty());
        assert!(!log.contains(s.as_str()), "secret {s} in the log:\n{log}");
    }
}

#[tokio::test]
async fn json_lines_hold_every_audit_event_and_no_secret() {
    let jsonl = Arc::new(JsonLinesAuditSink::new(Vec::new()));
    let h = harness_with(|b| b.audit(jsonl.clone())).await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let code = RequestMeta::new()
        .with_request_id("r-1")
        .scope(h.code_for(&client, &v, ""))
        .await;
    let t = h.exchange(&client, &code, &v, "").await.unwrap();
    drop(h);
    let out = String::from_utf8(Arc::into_inner(jsonl).unwrap().into_inner().unwrap()).unwrap();
    let events: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"authorization.granted") && names.contains(&"token.issued"),
        "{names:?}"
    );
    let granted = events.iter().find(|e| e["event"] == "authorization.granted").unwrap();
    assert_eq!(granted["request_id"], "r-1");
    for secret in [code.as_str(), v.as_str(), t.access_token.as_str()] {
        assert!(!out.contains(secret), "{out}");
    }
}

#[tokio::test]
async fn revoking_a_users_grants_forgets_every_remembered_consent() {
    let users = Arc::new(MemoryUserStore::new());
    let h = harness_with({
        let users = users.clone();
        |b| b.user_store(users)
    })
    .await;
    let alice = Subject::new("user_demo").unwrap();
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let code = h.code_for(&client, &v, "").await;
    h.exchange(&client, &code, &v, "").await.unwrap();
    let scopes = ScopeSet::parse("mcp:read").unwrap();
    let resources: authio_mcp::resource::ResourceSet = [resource()].into_iter().collect();
    // Consent for the client with a grant, and for one whose grant is long
    // gone (no grant record any more).
    for c in [client.as_str(), "https://gone.example.com/client.json"] {
        users
            .remember_consent(&h.project, &alice, c, &scopes, &resources, START)
            .await
            .unwrap();
    }
    let bob = Subject::new("user_bob").unwrap();
    users
        .remember_consent(&h.project, &bob, client.as_str(), &scopes, &resources, START)
        .await
        .unwrap();
    assert_eq!(h.server.revoke_user_grants(&h.project, &alice).await.unwrap(), 1);
    for c in [client.as_str(), "https://gone.example.com/client.json"] {
        assert!(
            users.consent(&h.project, &alice, c).await.unwrap().is_none(),
            "{c}: every consent of the user is forgotten"
        );
    }
    assert!(
        users
            .consent(&h.project, &bob, client.as_str())
            .await
            .unwrap()
            .is_some()
    );
}
