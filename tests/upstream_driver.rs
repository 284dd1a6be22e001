//! The upstream login through the driver with a fixed clock: B, another
//! authorization server in the same process, is A's OpenID provider
//! behind an in-process [`UpstreamHttp`]. Covers what sockets cannot reach
//! deterministically: JWKS `kid` rotation and a callback after the login
//! expired.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
use authio_mcp::discovery::Issuer;
use authio_mcp::grant::Subject;
use authio_mcp::jose::PrivateKey;
use authio_mcp::keys::{KeyId, SigningKey};
use authio_mcp::project::ProjectId;
use authio_mcp::redirect_uri::RedirectUriPolicy;
use authio_mcp::scope::ScopeSet;
use authio_mcp::secret::SecretString;
use authio_mcp::server::{
    AuthorizationServer, AuthorizeOutcome, CallbackOutcome, Clock as _, FixedClock, SeededRandom,
};
use authio_mcp::store::memory::{MemoryClientStore, MemoryKeyStore};
use authio_mcp::store::{ClientStore as _, KeyStore as _};
use authio_mcp::upstream::{
    self, HttpResponse, ProviderName, UpstreamClientAuth, UpstreamHttp, UpstreamHttpError, UpstreamProvider,
};
use common::*;

const IDP: &str = "https://idp.example.com";

/// A's HTTP client, answered by B's driver in-process.
struct Bridge {
    b: AuthorizationServer,
    project: ProjectId,
    jwks_fetches: AtomicUsize,
    /// `prompt_values_supported` to add to B's discovery document.
    prompt_values: std::sync::Mutex<Option<serde_json::Value>>,
    /// Members to set in B's userinfo responses.
    userinfo_override: std::sync::Mutex<Option<serde_json::Value>>,
    userinfo_calls: AtomicUsize,
}

#[async_trait]
impl UpstreamHttp for Bridge {
    async fn get(&self, url: &str) -> Result<HttpResponse, UpstreamHttpError> {
        if url == format!("{IDP}/.well-known/openid-configuration") {
            let m = self.b.metadata(&self.project).await.unwrap();
            let mut doc: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
            if let Some(values) = self.prompt_values.lock().unwrap().clone() {
                doc["prompt_values_supported"] = values;
            }
            return Ok(HttpResponse::new(200, serde_json::to_vec(&doc).unwrap()));
        }
        if url == format!("{IDP}/.well-known/jwks.json") {
            self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let k = self.b.jwks(&self.project).await.unwrap();
            return Ok(HttpResponse::new(200, k.to_json()));
        }
        Ok(HttpResponse::new(404, Vec::new()))
    }

    async fn get_with_bearer(&self, url: &str, token: &SecretString) -> Result<HttpResponse, UpstreamHttpError> {
        assert_eq!(url, format!("{IDP}/oauth2/userinfo"));
        self.userinfo_calls.fetch_add(1, Ordering::SeqCst);
        let auth = format!("Bearer {}", token.expose_secret());
        Ok(match self.b.userinfo(&self.project, Some(&auth)).await {
            Ok(mut v) => {
                if let Some(serde_json::Value::Object(extra)) = self.userinfo_override.lock().unwrap().clone() {
                    for (k, x) in extra {
                        v[k] = x;
                    }
                }
                HttpResponse::new(200, serde_json::to_vec(&v).unwrap())
            }
            Err(e) => {
                let e = authio_mcp::OAuthError::from(e);
                HttpResponse::new(e.status().as_u16(), e.to_json())
            }
        })
    }

    async fn post_form(
        &self,
        url: &str,
        form: String,
        authorization: Option<&SecretString>,
    ) -> Result<HttpResponse, UpstreamHttpError> {
        assert_eq!(url, format!("{IDP}/oauth2/token"));
        let auth = authorization.map(SecretString::expose_secret);
        Ok(match self.b.token(&self.project, auth, form.as_bytes()).await {
            Ok(t) => HttpResponse::new(200, t.to_json()),
            Err(e) => {
                let e = authio_mcp::OAuthError::from(e);
                HttpResponse::new(e.status().as_u16(), e.to_json())
            }
        })
    }
}

struct Setup {
    a: Harness,
    bridge: Arc<Bridge>,
    b_keys: Arc<MemoryKeyStore>,
    mcp_client: ClientId,
    /// The clock of both servers (the harness's own is not used).
    clock: Arc<FixedClock>,
    /// B's view of it: `clock` less a lag.
    b_clock: Arc<LaggingClock>,
}

/// A clock running behind another by a settable lag (B's clock, to make
/// its ID tokens' `auth_time` older than A's login).
struct LaggingClock {
    base: Arc<FixedClock>,
    lag_secs: std::sync::atomic::AtomicI64,
}

impl authio_mcp::server::Clock for LaggingClock {
    fn now(&self) -> time::OffsetDateTime {
        self.base.now() - time::Duration::seconds(self.lag_secs.load(Ordering::SeqCst))
    }
}

async fn setup() -> Setup {
    let b_project = ProjectId::new("proj_idp").unwrap();
    let b_clients = Arc::new(MemoryClientStore::new());
    let b_keys = Arc::new(MemoryKeyStore::new());
    // B shares A's clock: built after A's harness.
    let a_clock = Arc::new(FixedClock::new(START));
    let b_clock = Arc::new(LaggingClock {
        base: a_clock.clone(),
        lag_secs: std::sync::atomic::AtomicI64::new(0),
    });
    let b = AuthorizationServer::builder(Issuer::new(IDP).unwrap())
        .clock(b_clock.clone())
        .random(Arc::new(SeededRandom::new(7)))
        .clients(b_clients.clone())
        .key_store(b_keys.clone())
        .build();
    let mut s = project_settings();
    s.scopes_supported = ScopeSet::parse("openid email profile mcp:read").unwrap();
    b.put_project(&b_project, s).await.unwrap();
    // A is a public client of B, redirecting to A's callback.
    let callback = format!("{ISSUER}/v1/auth/oauth/oidc/callback");
    let metadata: ClientMetadata = serde_json::from_value(serde_json::json!({
        "redirect_uris": [callback],
        "token_endpoint_auth_method": "none",
    }))
    .unwrap();
    let v = metadata
        .validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
        .unwrap();
    let a_at_b = ClientId::Registered(RegisteredClientId::from_random(&[3; 12]));
    b_clients
        .insert(&b_project, Client::new(a_at_b.clone(), v, START))
        .await
        .unwrap();
    let bridge = Arc::new(Bridge {
        b,
        project: b_project,
        jwks_fetches: AtomicUsize::new(0),
        prompt_values: std::sync::Mutex::new(None),
        userinfo_override: std::sync::Mutex::new(None),
        userinfo_calls: AtomicUsize::new(0),
    });
    let http: Arc<dyn UpstreamHttp> = bridge.clone();
    let clock = a_clock.clone();
    let a = harness_with(move |builder| builder.upstream_http(http).clock(clock)).await;
    let mut provider = UpstreamProvider::generic(
        ProviderName::new("oidc").unwrap(),
        Issuer::new(IDP).unwrap(),
        a_at_b.as_str(),
    );
    provider.client_auth = UpstreamClientAuth::None;
    a.server
        .edit_project(&a.project, |mut s| {
            s.upstream.providers.push(provider.clone());
            s.select_upstream(Some(provider.name.clone()), "/v1/auth/oauth")
                .unwrap();
            s
        })
        .await
        .unwrap();
    let mcp_client = a.public_client(1, &[REDIRECT]).await;
    Setup {
        a,
        bridge,
        b_keys,
        mcp_client,
        clock: a_clock,
        b_clock,
    }
}

impl Setup {
    /// A's redirect to B, and the binding cookie value.
    async fn start(&self) -> (String, String) {
        self.start_with("").await
    }

    /// [`Self::start`] with more authorization parameters (`&k=v...`).
    async fn start_with(&self, extra: &str) -> (String, String) {
        let q = auth_query(&self.mcp_client, REDIRECT, &verifier(1), extra);
        match self.a.authorize(&q).await {
            AuthorizeOutcome::UpstreamLogin {
                location,
                browser_binding,
                ..
            } => (location, browser_binding.expose_secret().to_owned()),
            other => panic!("expected an upstream login, got {other:?}"),
        }
    }

    /// B signs `user` in and approves: B's redirect back to A.
    async fn at_b(&self, to_b: &str, user: &str) -> String {
        let query = to_b.split_once('?').unwrap().1;
        match self.bridge.b.authorize(&self.bridge.project, query).await {
            AuthorizeOutcome::Pending(p) => self
                .bridge
                .b
                .approve(*p, Subject::new(user).unwrap(), None)
                .await
                .unwrap(),
            other => panic!("B refused: {other:?}"),
        }
    }

    /// B answers a `prompt=none` request as a provider with a session
    /// does: signs `user` in without a page. (B itself has no session, so
    /// the test drops the `prompt` before handing B the request.)
    async fn at_b_silently(&self, to_b: &str, user: &str) -> String {
        assert_eq!(query_param(to_b, "prompt").as_deref(), Some("none"), "{to_b}");
        let url = url::Url::parse(to_b).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "prompt")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let query = form(&pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>());
        self.at_b(&format!("{IDP}/oauth2/authorize?{query}"), user).await
    }

    /// B's error redirect back to A for the login `to_b` started.
    fn b_error(&self, to_b: &str, error: &str) -> String {
        let state = query_param(to_b, "state").unwrap();
        format!(
            "{ISSUER}/v1/auth/oauth/oidc/callback?{}",
            form(&[("error", error), ("state", &state), ("iss", IDP)])
        )
    }

    async fn failure_reason(&self) -> String {
        self.a
            .audit
            .recent(&self.a.project, 100)
            .iter()
            .rev()
            .map(authio_mcp::audit::AuditEvent::to_json)
            .find(|e| e["event"] == "upstream.login_failed")
            .map(|e| e["reason"].as_str().unwrap().to_owned())
            .unwrap()
    }

    async fn callback(&self, back: &str, binding: &str) -> CallbackOutcome {
        let query = back.split_once('?').unwrap().1;
        self.a
            .server
            .finish_upstream_login(&self.a.project, "oidc", query, Some(binding))
            .await
    }

    /// A whole login for `user`: the subject A's token names.
    async fn login(&self, user: &str) -> String {
        let (to_b, binding) = self.start().await;
        let back = self.at_b(&to_b, user).await;
        let location = match self.callback(&back, &binding).await {
            CallbackOutcome::SignedIn(s) => self.a.server.approve_signed_in(*s, None).await.unwrap(),
            CallbackOutcome::Redirect(l) => l,
            other => panic!("login failed: {other:?}"),
        };
        let code = query_param(&location, "code").unwrap_or_else(|| panic!("{location}"));
        let t = self
            .a
            .exchange(&self.mcp_client, &code, &verifier(1), "")
            .await
            .unwrap();
        let info = self.a.introspect(&t.access_token).await;
        info["sub"].as_str().unwrap().to_owned()
    }

    async fn b_rotates_to_a_new_id_token_key(&self) {
        let alg = authio_mcp::jose::SigningAlgorithm::Rs256;
        let now = self.clock.now();
        let key = SigningKey::new(
            self.bridge.project.clone(),
            KeyId::from_random(alg, &[5; 16]),
            PrivateKey::generate(alg, &[5; 32]).unwrap(),
            now,
        );
        let kid = key.kid.clone();
        assert!(self.b_keys.insert(key).await.unwrap());
        assert!(
            self.b_keys
                .activate(&self.bridge.project, &kid, now, now + time::Duration::hours(1))
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn upstream_jwks_is_cached_and_refetched_for_a_new_kid() {
    let s = setup().await;
    let alice = upstream::local_subject(IDP, "alice").as_str().to_owned();
    assert_eq!(s.login("alice").await, alice);
    assert_eq!(s.bridge.jwks_fetches.load(Ordering::SeqCst), 1);
    s.clock.advance(time::Duration::minutes(1));
    assert_eq!(s.login("alice").await, alice, "remembered consent: straight back");
    assert_eq!(s.bridge.jwks_fetches.load(Ordering::SeqCst), 1, "cached");
    // B starts signing with a key A has never seen: one refetch.
    s.b_rotates_to_a_new_id_token_key().await;
    s.clock.advance(time::Duration::minutes(1));
    assert_eq!(s.login("bob").await, upstream::local_subject(IDP, "bob").as_str());
    assert_eq!(
        s.bridge.jwks_fetches.load(Ordering::SeqCst),
        2,
        "refetched on the unknown kid"
    );
    s.clock.advance(time::Duration::minutes(1));
    s.login("bob").await;
    assert_eq!(s.bridge.jwks_fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn late_callback_is_refused() {
    let s = setup().await;
    let (to_b, binding) = s.start().await;
    s.clock.advance(upstream::UPSTREAM_LOGIN_TTL);
    let back = s.at_b(&to_b, "alice").await;
    match s.callback(&back, &binding).await {
        CallbackOutcome::Redirect(l) => {
            assert!(l.starts_with(REDIRECT), "{l}");
            assert_eq!(query_param(&l, "error").as_deref(), Some("access_denied"));
            assert_eq!(query_param(&l, "state").as_deref(), Some("st4te"));
            assert_eq!(query_param(&l, "iss").as_deref(), Some(ISSUER));
        }
        other => panic!("{other:?}"),
    }
    let failed =
        s.a.audit
            .recent(&s.a.project, 100)
            .iter()
            .map(authio_mcp::audit::AuditEvent::to_json)
            .find(|e| e["event"] == "upstream.login_failed")
            .unwrap();
    assert_eq!(failed["reason"], "expired");
    let alice = upstream::local_subject(IDP, "alice");
    assert!(s.a.server.user(&s.a.project, &alice).await.unwrap().is_none());
    // Purging drops the expired login.
    assert!(s.a.server.purge_expired().await.unwrap() >= 1);
}

/// The MCP client's error at its redirect URI, with its `state` and A's
/// `iss`.
fn client_error(outcome: CallbackOutcome) -> String {
    match outcome {
        CallbackOutcome::Redirect(l) => {
            assert!(l.starts_with(REDIRECT), "{l}");
            assert_eq!(query_param(&l, "state").as_deref(), Some("st4te"), "{l}");
            assert_eq!(query_param(&l, "iss").as_deref(), Some(ISSUER), "{l}");
            assert!(query_param(&l, "code").is_none(), "{l}");
            query_param(&l, "error").unwrap()
        }
        other => panic!("expected a redirect to the client, got {other:?}"),
    }
}

#[tokio::test]
async fn prompt_none_answered_login_required_upstream_reaches_the_client() {
    let s = setup().await;
    let (to_b, binding) = s.start_with("&prompt=none").await;
    assert_eq!(query_param(&to_b, "prompt").as_deref(), Some("none"), "forwarded");
    // B has no session for this browser: login_required, as OpenID
    // Connect Core 3.1.2.6 says.
    let back = s.b_error(&to_b, "login_required");
    assert_eq!(client_error(s.callback(&back, &binding).await), "login_required");
    assert_eq!(s.failure_reason().await, "interaction_required:login_required");
    // The other interaction codes pass through as well.
    for code in ["consent_required", "interaction_required", "account_selection_required"] {
        let (to_b, binding) = s.start_with("&prompt=none").await;
        let back = s.b_error(&to_b, code);
        assert_eq!(client_error(s.callback(&back, &binding).await), code);
    }
}

#[tokio::test]
async fn prompt_none_is_login_required_when_the_provider_cannot_do_it() {
    let s = setup().await;
    // B's discovery document lists the prompt values it supports,
    // without `none`.
    s.bridge
        .prompt_values
        .lock()
        .unwrap()
        .replace(serde_json::json!(["login", "consent"]));
    let q = auth_query(&s.mcp_client, REDIRECT, &verifier(1), "&prompt=none");
    match s.a.authorize(&q).await {
        AuthorizeOutcome::Redirect(l) => {
            assert!(l.starts_with(REDIRECT), "{l}");
            assert_eq!(query_param(&l, "error").as_deref(), Some("login_required"));
            assert_eq!(query_param(&l, "state").as_deref(), Some("st4te"));
            assert_eq!(query_param(&l, "iss").as_deref(), Some(ISSUER));
        }
        other => panic!("not sent upstream, answered at once: {other:?}"),
    }
    assert_eq!(s.failure_reason().await, "interaction_required:login_required");
    // prompt=login is not sent to it either; max_age=0 stands in.
    let (to_b, _) = s.start_with("&prompt=login").await;
    assert_eq!(query_param(&to_b, "prompt").as_deref(), Some("login"));
    let (to_b, _) = s.start_with("&prompt=consent").await;
    assert_eq!(query_param(&to_b, "prompt").as_deref(), Some("consent"));
}

#[tokio::test]
async fn prompt_none_signs_in_silently_only_with_remembered_consent() {
    let s = setup().await;
    // Bob signs in silently upstream, but never allowed this client:
    // consent_required, and nothing is stored for him.
    let (to_b, binding) = s.start_with("&prompt=none").await;
    let back = s.at_b_silently(&to_b, "bob").await;
    assert_eq!(client_error(s.callback(&back, &binding).await), "consent_required");
    assert_eq!(s.failure_reason().await, "interaction_required:consent_required");
    let bob = upstream::local_subject(IDP, "bob");
    assert!(
        s.a.server.user(&s.a.project, &bob).await.unwrap().is_none(),
        "nothing half-created"
    );
    // Alice allowed it once: her silent sign-in goes straight back.
    let alice = upstream::local_subject(IDP, "alice");
    assert_eq!(s.login("alice").await, alice.as_str());
    s.clock.advance(time::Duration::minutes(1));
    let (to_b, binding) = s.start_with("&prompt=none").await;
    let back = s.at_b_silently(&to_b, "alice").await;
    match s.callback(&back, &binding).await {
        CallbackOutcome::Redirect(l) => assert!(query_param(&l, "code").is_some(), "{l}"),
        other => panic!("{other:?}"),
    }
    // Asking for more than she allowed: consent_required.
    let (to_b, binding) = s.start_with("&prompt=none&scope=mcp%3Aread%20mcp%3Awrite").await;
    let back = s.at_b_silently(&to_b, "alice").await;
    assert_eq!(client_error(s.callback(&back, &binding).await), "consent_required");
    // Her consent revoked: consent_required again.
    assert!(
        s.a.server
            .revoke_consent(&s.a.project, &alice, s.mcp_client.as_str())
            .await
            .unwrap()
    );
    let (to_b, binding) = s.start_with("&prompt=none").await;
    let back = s.at_b_silently(&to_b, "alice").await;
    assert_eq!(client_error(s.callback(&back, &binding).await), "consent_required");
}

#[tokio::test]
async fn prompt_consent_shows_the_consent_page_despite_remembered_consent() {
    let s = setup().await;
    s.login("alice").await;
    s.clock.advance(time::Duration::minutes(1));
    let (to_b, binding) = s.start_with("&prompt=consent").await;
    assert_eq!(query_param(&to_b, "prompt").as_deref(), Some("consent"), "forwarded");
    let back = s.at_b(&to_b, "alice").await;
    assert!(
        matches!(s.callback(&back, &binding).await, CallbackOutcome::SignedIn(_)),
        "prompt=consent: asked again"
    );
}

#[tokio::test]
async fn prompt_login_and_login_hint_are_forwarded_and_auth_time_checked() {
    let s = setup().await;
    let (to_b, binding) = s.start_with("&prompt=login&login_hint=alice%40example.org").await;
    assert_eq!(query_param(&to_b, "prompt").as_deref(), Some("login"));
    assert_eq!(query_param(&to_b, "max_age").as_deref(), Some("0"));
    assert_eq!(query_param(&to_b, "login_hint").as_deref(), Some("alice@example.org"));
    // B authenticates the user now: auth_time is fresh.
    let back = s.at_b(&to_b, "alice").await;
    assert!(matches!(
        s.callback(&back, &binding).await,
        CallbackOutcome::SignedIn(_)
    ));
    // A provider that answers prompt=login from an old session (its
    // auth_time, here B's clock, five minutes behind the login's start):
    // refused.
    s.b_clock.lag_secs.store(300, Ordering::SeqCst);
    let (to_b, binding) = s.start_with("&prompt=login").await;
    let back = s.at_b(&to_b, "alice").await;
    assert_eq!(client_error(s.callback(&back, &binding).await), "server_error");
    assert_eq!(s.failure_reason().await, "invalid_id_token:auth_time");
    // The same lag without prompt=login is fine (auth_time is not asked).
    let (to_b, binding) = s.start().await;
    assert_eq!(query_param(&to_b, "max_age"), None);
    let back = s.at_b(&to_b, "alice").await;
    assert!(!matches!(
        s.callback(&back, &binding).await,
        CallbackOutcome::Redirect(_)
    ));
}

#[tokio::test]
async fn userinfo_fills_in_what_the_id_token_lacks() {
    let s = setup().await;
    // B's ID tokens carry no email (B has no user claims): A asks B's
    // userinfo endpoint with B's access token, and takes its claims.
    s.bridge.userinfo_override.lock().unwrap().replace(serde_json::json!({
        "email": "alice@example.org", "email_verified": true, "name": "Alice",
    }));
    let alice = upstream::local_subject(IDP, "alice");
    assert_eq!(s.login("alice").await, alice.as_str());
    assert_eq!(s.bridge.userinfo_calls.load(Ordering::SeqCst), 1);
    let user = s.a.server.user(&s.a.project, &alice).await.unwrap().unwrap();
    assert_eq!(user.email.as_deref(), Some("alice@example.org"));
    assert!(user.email_verified);
    assert_eq!(user.name.as_deref(), Some("Alice"));
}

#[tokio::test]
async fn userinfo_about_another_user_is_refused() {
    let s = setup().await;
    s.bridge.userinfo_override.lock().unwrap().replace(serde_json::json!({
        "sub": "mallory", "email": "mallory@example.org", "email_verified": true,
    }));
    let (to_b, binding) = s.start().await;
    let back = s.at_b(&to_b, "alice").await;
    assert_eq!(client_error(s.callback(&back, &binding).await), "server_error");
    assert_eq!(s.failure_reason().await, "userinfo:sub_mismatch");
    assert_eq!(s.bridge.userinfo_calls.load(Ordering::SeqCst), 1);
    for user in ["alice", "mallory"] {
        let subject = upstream::local_subject(IDP, user);
        assert!(
            s.a.server.user(&s.a.project, &subject).await.unwrap().is_none(),
            "nothing half-created ({user})"
        );
    }
}
