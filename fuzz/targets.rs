//! The fuzz targets, shared by the libFuzzer binaries in
//! `fuzz/fuzz_targets/` (nightly, `cargo fuzz run NAME`) and by the stable
//! test `tests/fuzz_corpora.rs`, which runs every seed and regression input
//! through them. Each target feeds attacker-shaped bytes to one parser of
//! the crate and checks the invariants that must hold whatever the input
//! (beyond "does not panic").

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, OnceLock};

use authio_mcp::authorize::AuthorizationRequest;
use authio_mcp::cimd::{
    CacheDirectives, CimdPolicy, ClientIdUrl, ClientIdUrlPolicy, FetchError, FetchPlan, FetchResponse, MetadataFetcher,
    cache_expiry, parse_http_date, parse_preview_request, validate_response,
};
use authio_mcp::client::{ClientId, ClientMetadata, MetadataProfile};
use authio_mcp::client_auth::ClientCredentials;
use authio_mcp::discovery::Issuer;
use authio_mcp::http::{AuthorizeResponse, HeaderOrDefaultProjectResolver, OAuthEndpoints};
use authio_mcp::project::{DcrMode, ProjectId, ProjectSettings};
use authio_mcp::redirect_uri::{RedirectUri, RedirectUriPolicy};
use authio_mcp::resource::ResourceUri;
use authio_mcp::scope::ScopeSet;
use authio_mcp::server::AuthorizationServer;
use authio_mcp::token::{TokenReference, TokenRequest};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use time::OffsetDateTime;
use time::macros::datetime;
use url::Url;

/// A fuzz target: bytes in, panics on a broken invariant.
pub(crate) type Target = fn(&[u8]);

/// Every target by name, for the corpus runner.
pub(crate) const TARGETS: &[(&str, Target)] = &[
    ("redirect_uri", redirect_uri),
    ("client_id_url", client_id_url),
    ("client_metadata", client_metadata),
    ("authorize_query", authorize_query),
    ("token_forms", token_forms),
    ("cache_headers", cache_headers),
    ("bearer", bearer),
    ("admin_json", admin_json),
    ("endpoints", endpoints),
    ("upstream", upstream),
];

const NOW: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// `registered\nrequested`: registration never panics, and a match is
/// only ever a URI a browser sends to the registered scheme, host, path and
/// query (the port may differ only for http loopback).
pub(crate) fn redirect_uri(data: &[u8]) {
    let s = text(data);
    let (registered, requested) = s.split_once('\n').unwrap_or((&s, ""));
    let _ = RedirectUri::parse(registered);
    let Ok(reg) = RedirectUri::parse_with(registered, RedirectUriPolicy::with_private_use_schemes()) else {
        return;
    };
    assert!(reg.matches(reg.as_str()));
    if !reg.matches(requested) || requested == registered {
        return;
    }
    let want = Url::parse(registered).expect("a registered URI parses");
    let got = Url::parse(requested).expect("a matched URI parses");
    assert_eq!(got.scheme(), "http", "{requested:?}");
    assert!(reg.is_loopback());
    assert_eq!(got.host(), want.host(), "{requested:?}");
    assert_eq!(got.path(), want.path(), "{requested:?}");
    assert_eq!(got.query(), want.query(), "{requested:?}");
    assert!(got.username().is_empty() && got.password().is_none(), "{requested:?}");
}

/// The host shown, trusted and fetched is the host a browser reads.
pub(crate) fn client_id_url(data: &[u8]) {
    let s = text(data);
    let _ = ClientIdUrl::parse(s.clone());
    let mut relaxed = ClientIdUrlPolicy::default();
    relaxed.allow_query = true;
    relaxed.allow_root_path = true;
    if let Ok(u) = ClientIdUrl::parse_with(s.clone(), relaxed) {
        let browser = Url::parse(&s).expect("an accepted client_id parses");
        assert_eq!(u.url(), &browser);
        assert_eq!(Some(u.host()), browser.host_str());
        assert!(browser.username().is_empty() && browser.password().is_none());
    }
    let _ = ClientId::parse_with(&s, relaxed);
    if let Ok(r) = ResourceUri::parse(s.clone()) {
        let browser = Url::parse(&s).expect("an accepted resource parses");
        let canonical = Url::parse(r.canonical()).expect("canonical parses");
        assert_eq!(canonical.host_str(), browser.host_str());
    }
}

/// Client metadata JSON through both profiles, and as a CIMD response.
pub(crate) fn client_metadata(data: &[u8]) {
    if let Ok(m) = ClientMetadata::from_json(data) {
        for profile in [
            MetadataProfile::Dcr,
            MetadataProfile::Cimd {
                allow_private_key_jwt: false,
            },
            MetadataProfile::Cimd {
                allow_private_key_jwt: true,
            },
        ] {
            for policy in [
                RedirectUriPolicy::strict(),
                RedirectUriPolicy::with_private_use_schemes(),
            ] {
                if let Ok(v) = m.validate(profile, policy) {
                    assert!(!v.redirect_uris.is_empty());
                    // What was validated serializes and stays valid.
                    let json = serde_json::to_vec(&v).expect("serializes");
                    let _ = ClientMetadata::from_json(&json);
                }
            }
        }
    }
    let url = ClientIdUrl::parse("https://client.example.com/cimd.json").expect("static");
    let response = FetchResponse::new(200, data.to_vec()).with_content_type("application/json");
    let _ = validate_response(
        &url,
        &response,
        &CimdPolicy::default(),
        RedirectUriPolicy::strict(),
        NOW,
    );
    let _ = parse_preview_request(data);
}

/// The authorization request query, through both phases' parsers.
pub(crate) fn authorize_query(data: &[u8]) {
    let s = text(data);
    let req = AuthorizationRequest::from_query(&s);
    let _ = authio_mcp::authorize::parse_client_id(&req, &settings(), ClientIdUrlPolicy::default());
    let _ = authio_mcp::authorize::resolve_resources(&req.resource, &settings());
}

/// Token, revocation and introspection form bodies, and client
/// credentials from the form and an `Authorization` header.
pub(crate) fn token_forms(data: &[u8]) {
    if let Ok(t) = TokenRequest::from_form(data) {
        let _ = ClientCredentials::parse(None, t.client_id.as_deref(), None);
    }
    let _ = TokenReference::from_form(data);
    let s = text(data);
    let (header, rest) = s.split_once('\n').unwrap_or((&s, ""));
    let (id, secret) = rest.split_once('\n').unwrap_or((rest, ""));
    let _ = ClientCredentials::parse(Some(header), Some(id), Some(secret));
}

/// `Cache-Control`, `Expires`, `Date` and `Age`: the expiry is always
/// within the policy bounds.
pub(crate) fn cache_headers(data: &[u8]) {
    let s = text(data);
    let _ = CacheDirectives::parse(&s);
    let _ = parse_http_date(&s);
    let mut parts = s.splitn(4, '\n');
    let response = FetchResponse::new(200, Vec::new())
        .with_cache_control(parts.next().unwrap_or_default())
        .with_expires(parts.next().unwrap_or_default())
        .with_date(parts.next().unwrap_or_default())
        .with_age(parts.next().unwrap_or_default());
    let bounds = CimdPolicy::default().cache_bounds();
    if let Some(expiry) = cache_expiry(&response, NOW, bounds) {
        assert!(expiry >= NOW + bounds.min && expiry <= NOW + bounds.max, "{expiry}");
    }
}

/// Bearer extraction: the resource server's, the HTTP edge's and the IAT
/// parser agree that a token has no whitespace and is non-empty.
pub(crate) fn bearer(data: &[u8]) {
    let s = text(data);
    if let Some(t) = authio_mcp::http::bearer_token(Some(&s)) {
        assert!(!t.is_empty());
    }
    let _ = authio_mcp::dcr::parse_bearer(&s);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(data) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    let uri = Uri::from_static("/mcp");
    if let Ok(t) = authio_mcp::resource_server::extract_bearer(&headers, &uri) {
        assert!(!t.is_empty() && !t.contains([' ', '\t']));
    }
}

/// Project settings as the admin API receives them: deserialized,
/// validated, linted, and the MCP cascade applied both ways.
pub(crate) fn admin_json(data: &[u8]) {
    if let Ok(s) = serde_json::from_slice::<ProjectSettings>(data) {
        let _ = s.validate();
        let _ = s.lints();
        let (on, _) = s.clone().set_mcp_enabled(true);
        let (off, _) = on.set_mcp_enabled(false);
        let _ = off.validate();
        let json = serde_json::to_vec(&s).expect("serializes");
        let back: ProjectSettings = serde_json::from_slice(&json).expect("round trips");
        assert_eq!(back, s);
    }
    let _ = serde_json::from_slice::<DcrMode>(data);
}

fn settings() -> ProjectSettings {
    let mut s = ProjectSettings::default();
    s.scopes_supported = ScopeSet::parse("openid email mcp:read mcp:write").expect("static");
    s.default_scopes = ScopeSet::parse("mcp:read").expect("static");
    s.set_mcp_enabled(true).0
}

/// Endpoints over a memory server with one registered client
/// ([`FUZZ_REDIRECT`]); new registrations are refused (IAT mode with no
/// token), so the server's memory stays flat over millions of inputs.
fn fuzz_endpoints() -> &'static (OAuthEndpoints, String) {
    static ENDPOINTS: OnceLock<(OAuthEndpoints, String)> = OnceLock::new();
    ENDPOINTS.get_or_init(|| {
        let server = AuthorizationServer::builder(Issuer::new("https://as.example.com").expect("static"))
            .metadata_fetcher(Arc::new(Offline))
            .build();
        let project = ProjectId::new("proj_fuzz").expect("static");
        let mut s = settings();
        s.dcr_mode = DcrMode::Open;
        futures_executor::block_on(server.put_project(&project, s.clone())).expect("memory store");
        let endpoints = OAuthEndpoints::new(server, Arc::new(HeaderOrDefaultProjectResolver::new(project.clone())));
        let body = format!(r#"{{"redirect_uris":["{FUZZ_REDIRECT}","http://127.0.0.1:33418/cb"],"token_endpoint_auth_method":"none","client_name":"Fuzz"}}"#);
        let req = Request::post("/oauth2/register")
            .header("content-type", "application/json")
            .body(body.into_bytes())
            .expect("static");
        let response = futures_executor::block_on(endpoints.register(&req));
        let v: serde_json::Value = serde_json::from_slice(response.body()).expect("json");
        let client_id = v["client_id"].as_str().expect("registered").to_owned();
        s.dcr_mode = DcrMode::InitialAccessToken;
        futures_executor::block_on(endpoints.server().put_project(&project, s)).expect("memory store");
        (endpoints, client_id)
    })
}

/// A metadata fetcher with no network: every CIMD fetch times out.
struct Offline;

#[async_trait::async_trait]
impl MetadataFetcher for Offline {
    async fn fetch(&self, _plan: &FetchPlan) -> Result<FetchResponse, FetchError> {
        Err(FetchError::Timeout)
    }
}

/// The redirect URI of the fuzz client.
pub(crate) const FUZZ_REDIRECT: &str = "https://client.example.com/cb";

/// An HTTP request as text (`METHOD target`, header lines, a blank line,
/// the body; `CLIENT` in the target is replaced by the fuzz client's id)
/// through the endpoint the path names. Whatever the request: no 5xx from
/// memory stores, JSON error bodies, `no-store` on token responses, and
/// redirects only to the registered redirect URIs.
pub(crate) fn endpoints(data: &[u8]) {
    let (endpoints, client_id) = fuzz_endpoints();
    let s = text(data);
    let (head, body) = s.split_once("\n\n").unwrap_or((&s, ""));
    let mut lines = head.lines();
    let Some((method, target)) = lines.next().and_then(|l| l.split_once(' ')) else {
        return;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let target = target.replace("CLIENT", client_id);
    let mut builder = Request::builder().method(method).uri(target.as_str());
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim());
        }
    }
    let Ok(req) = builder.body(body.as_bytes().to_vec()) else {
        return;
    };
    let path = req.uri().path().to_owned();
    let response = futures_executor::block_on(async {
        match path.as_str() {
            "/.well-known/oauth-authorization-server" | "/.well-known/openid-configuration" => {
                Some(endpoints.discovery(&req).await)
            }
            "/oauth2/authorize" => match endpoints.authorize(&req).await {
                AuthorizeResponse::Response(r) => Some(r),
                AuthorizeResponse::Pending(pending) => {
                    assert!(
                        pending.redirect_uri() == FUZZ_REDIRECT
                            || pending.redirect_uri().starts_with("http://127.0.0.1:")
                    );
                    Some(endpoints.deny(*pending).await)
                }
                _ => None,
            },
            "/oauth2/token" => Some(endpoints.token(&req).await),
            "/oauth2/register" => Some(endpoints.register(&req).await),
            "/oauth2/cimd/resolve" => Some(endpoints.cimd_resolve(&req).await),
            "/oauth2/revoke" => Some(endpoints.revoke(&req).await),
            "/oauth2/introspect" => Some(endpoints.introspect(&req).await),
            _ => None,
        }
    });
    let Some(response) = response else { return };
    let status = response.status();
    assert!(!status.is_server_error(), "{status} for {s:?}");
    if let Some(location) = response.headers().get(http::header::LOCATION) {
        let location = location.to_str().expect("ASCII location");
        let to = Url::parse(location).expect("absolute location");
        let client = to.host_str() == Some("client.example.com") && to.path() == "/cb";
        let loopback = to.scheme() == "http" && to.host_str() == Some("127.0.0.1") && to.path() == "/cb";
        assert!(client || loopback, "redirect to {location}");
        assert!(to.username().is_empty() && to.password().is_none());
    }
    if path == "/oauth2/token" {
        assert_eq!(
            response
                .headers()
                .get(http::header::CACHE_CONTROL)
                .map(HeaderValue::as_bytes),
            Some(&b"no-store"[..])
        );
    }
    if status.is_client_error() && !response.body().is_empty() {
        let ct = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(HeaderValue::as_bytes);
        if ct == Some(b"application/json") {
            let v: serde_json::Value = serde_json::from_slice(response.body()).expect("JSON error body");
            assert!(v["error"].is_string());
        }
    }
}

/// `callback query\nID token claims (JSON)\ndiscovery document (JSON)`:
/// the relying party's parsers on what an upstream provider (or an
/// attacker in its place) sends. A callback passes only with the right
/// browser binding, a non-empty code and no foreign `iss`; ID token claims
/// pass only with the provider's issuer, the client in `aud`, the sent
/// nonce and a usable `sub`; a discovery document passes only for the
/// configured issuer with https endpoints; a userinfo response is merged
/// only when its `sub` is the ID token's, and never over an ID-token
/// claim.
pub(crate) fn upstream(data: &[u8]) {
    use authio_mcp::upstream::{
        CallbackParams, LoginRandomness, ProviderName, UpstreamProvider, check_callback, check_id_token_claims,
        parse_provider_metadata, start_login,
    };
    let input = text(data);
    let mut parts = input.splitn(3, '\n');
    let (query, claims, doc) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let issuer = Issuer::new("https://idp.example.com").unwrap();
    let provider = UpstreamProvider::generic(ProviderName::new("oidc").unwrap(), issuer.clone(), "rp");
    if let Ok(m) = parse_provider_metadata(doc.as_bytes(), &issuer, false) {
        assert_eq!(m.issuer, issuer.as_str());
        for e in [&m.authorization_endpoint, &m.token_endpoint, &m.jwks_uri] {
            assert_eq!(Url::parse(e).unwrap().scheme(), "https", "{e}");
        }
    }
    let metadata = parse_provider_metadata(
        br#"{"issuer":"https://idp.example.com","authorization_endpoint":"https://idp.example.com/a",
            "token_endpoint":"https://idp.example.com/t","jwks_uri":"https://idp.example.com/k"}"#,
        &issuer,
        false,
    )
    .unwrap();
    let pending = PENDING.get_or_init(|| {
        let mut req = AuthorizationRequest::default();
        req.response_type = Some("code".into());
        req.code_challenge = Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into());
        req.code_challenge_method = Some("S256".into());
        let client_id = ClientId::parse_with("client_0123456789abcdef01234567", ClientIdUrlPolicy::default()).unwrap();
        let metadata: ClientMetadata =
            serde_json::from_str(r#"{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"none"}"#)
                .unwrap();
        let v = metadata
            .validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
            .unwrap();
        let client = authio_mcp::client::Client::new(client_id, v, NOW);
        authio_mcp::authorize::validate_request(
            &req,
            &ProjectId::new("p").unwrap(),
            &ProjectSettings::default(),
            &client,
            "https://app.example/cb".into(),
            "https://as.example",
            NOW,
        )
        .map(|p| serde_json::to_string(&p.park()).unwrap())
        .unwrap()
    });
    let pending = serde_json::from_str::<authio_mcp::authorize::ParkedAuthorization>(pending)
        .unwrap()
        .resume();
    let random = LoginRandomness {
        state: [1; 32],
        nonce: [2; 32],
        verifier: [3; 32],
        browser: [4; 32],
    };
    let start = start_login(pending, &provider, &metadata, "https://as.example/cb", random, NOW);
    let params = CallbackParams::from_query(query);
    for binding in [None, Some("forged"), Some(start.browser_binding.expose_secret())] {
        if let Ok(code) = check_callback(&start.login, &provider, &metadata, &params, binding, NOW) {
            assert_eq!(binding, Some(start.browser_binding.expose_secret()));
            assert!(!code.is_empty());
            assert!(params.error.is_none() && !params.duplicated);
            assert!(params.iss.as_deref().is_none_or(|i| i == issuer.as_str()));
        }
    }
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(claims)
        && let Ok(id) = check_id_token_claims(&m, &provider, &start.login.nonce, NOW)
    {
        assert_eq!(m["iss"], issuer.as_str());
        assert_eq!(m["nonce"], start.login.nonce.as_str());
        assert!(!id.subject.is_empty() && id.subject.len() <= 255);
        let aud = &m["aud"];
        assert!(aud == "rp" || aud.as_array().is_some_and(|a| a.iter().any(|x| x == "rp")));
    }
    // The same JSON as a userinfo response about the ID token's user: used
    // only when its `sub` is exactly that user's, and never replacing an
    // ID-token claim.
    let from_token: authio_mcp::upstream::UpstreamIdentity = serde_json::from_value(serde_json::json!({
        "issuer": issuer.as_str(), "subject": "248289761001", "email": "jane@example.org",
        "email_verified": false, "name": null, "hosted_domain": null,
    }))
    .unwrap();
    if let Ok(merged) = authio_mcp::upstream::merge_userinfo(from_token.clone(), &provider, 200, claims.as_bytes()) {
        let v: serde_json::Value = serde_json::from_str(claims).unwrap();
        assert_eq!(v["sub"], "248289761001");
        assert_eq!(merged.subject, from_token.subject);
        assert_eq!(merged.email, from_token.email);
        assert!(!merged.email_verified, "a flag about another address is never taken");
    }
}

/// The pending authorization, parked (JSON): it is not `Clone`.
static PENDING: OnceLock<String> = OnceLock::new();
