#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::json;
use time::macros::datetime;

use super::*;
use crate::client::{ClientId, RegisteredClientId};
use crate::project::ProjectId;
use crate::resource::ResourceSet;
use crate::store::memory::MemoryUpstreamLoginStore;
use crate::store::{LoginTake, UpstreamLoginStore as _};

const NOW: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);
const ISS: &str = "https://idp.example.com";

fn provider() -> UpstreamProvider {
    UpstreamProvider::generic(
        ProviderName::new("oidc").unwrap(),
        Issuer::new(ISS).unwrap(),
        "rp-client",
    )
}

fn metadata() -> ProviderMetadata {
    let body = json!({
        "issuer": ISS,
        "authorization_endpoint": "https://idp.example.com/authorize?tenant=1",
        "token_endpoint": "https://idp.example.com/token",
        "jwks_uri": "https://keys.idp.example.com/jwks",
        "code_challenge_methods_supported": ["S256"],
    });
    parse_provider_metadata(body.to_string().as_bytes(), &Issuer::new(ISS).unwrap(), false).unwrap()
}

fn pending() -> PendingAuthorization {
    PendingAuthorization {
        project: ProjectId::new("proj_t").unwrap(),
        client_id: ClientId::Registered(RegisteredClientId::new("client_0123456789abcdef01234567").unwrap()),
        client_name: None,
        client_id_host: None,
        redirect_uri: "https://app.example/cb".into(),
        redirect_host: Some("app.example".into()),
        loopback_only: false,
        confidential: false,
        scopes: ScopeSet::parse("mcp:read").unwrap(),
        resources: ResourceSet::new(),
        state: Some("client-state".into()),
        code_challenge: CodeChallenge::s256(&CodeVerifier::from_random(&[9; 32])),
        nonce: None,
        created_at: NOW,
        dropped_scopes: ScopeSet::new(),
        offline_access: false,
        force_login: false,
        force_consent: false,
        prompt_none: false,
        login_hint: None,
        app_scheme: None,
        presentation: crate::presentation::ConsentPresentation::default(),
    }
}

fn random(n: u8) -> LoginRandomness {
    LoginRandomness {
        state: [n; 32],
        nonce: [n + 1; 32],
        verifier: [n + 2; 32],
        browser: [n + 3; 32],
    }
}

fn started() -> LoginStart {
    start_login(
        pending(),
        &provider(),
        &metadata(),
        "https://as.example/v1/auth/oauth/oidc/callback",
        random(1),
        NOW,
    )
}

fn param(location: &str, name: &str) -> Option<String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[test]
fn provider_names() {
    for ok in ["google", "oidc", "my-idp_2"] {
        assert!(ProviderName::new(ok).is_ok(), "{ok}");
    }
    for bad in ["", "Google", "a/b", "a b", "../x", &"x".repeat(33)] {
        assert!(ProviderName::new(bad).is_err(), "{bad}");
    }
    let parsed: Result<ProviderName, _> = serde_json::from_value(json!("Bad/Name"));
    assert!(parsed.is_err(), "deserializing goes through the validator");
}

#[test]
fn authorization_url_carries_pkce_state_nonce() {
    let s = started();
    let loc = &s.location;
    assert!(loc.starts_with("https://idp.example.com/authorize?tenant=1&"), "{loc}");
    assert_eq!(param(loc, "response_type").as_deref(), Some("code"));
    assert_eq!(param(loc, "client_id").as_deref(), Some("rp-client"));
    assert_eq!(
        param(loc, "redirect_uri").as_deref(),
        Some("https://as.example/v1/auth/oauth/oidc/callback")
    );
    assert_eq!(param(loc, "scope").as_deref(), Some("openid email profile"));
    assert_eq!(param(loc, "code_challenge_method").as_deref(), Some("S256"));
    let verifier = CodeVerifier::new(s.login.code_verifier.clone()).unwrap();
    assert_eq!(
        param(loc, "code_challenge").as_deref(),
        Some(CodeChallenge::s256(&verifier).as_str())
    );
    let state = param(loc, "state").unwrap();
    assert!(state.len() >= 43, "256-bit state");
    assert!(s.login.state_hash.matches(&state));
    assert_eq!(param(loc, "nonce").as_deref(), Some(s.login.nonce.as_str()));
    assert_ne!(state, s.login.nonce);
    assert!(s.login.browser_hash.matches(s.browser_binding.expose_secret()));
    assert_eq!(s.login.expires_at, NOW + UPSTREAM_LOGIN_TTL);
    assert_eq!(s.login.pending.0, pending(), "bound to the pending MCP authorization");
    // Other randomness, other values.
    let other = start_login(
        pending(),
        &provider(),
        &metadata(),
        "https://as.example/cb",
        random(7),
        NOW,
    );
    assert_ne!(param(&other.location, "state"), Some(state));
    // The record's Debug shows no secret.
    let dbg = format!("{:?}", s.login);
    assert!(!dbg.contains(&s.login.code_verifier) && !dbg.contains(&s.login.nonce));
}

#[test]
fn openid_is_always_requested_and_hd_is_sent() {
    let mut p = provider();
    p.scopes = ScopeSet::parse("email").unwrap();
    p.hosted_domain = Some("example.org".into());
    let s = start_login(pending(), &p, &metadata(), "https://as.example/cb", random(1), NOW);
    assert_eq!(param(&s.location, "scope").as_deref(), Some("openid email"));
    assert_eq!(param(&s.location, "hd").as_deref(), Some("example.org"));
}

fn callback(query: &str) -> CallbackParams {
    CallbackParams::from_query(query)
}

#[test]
fn callback_checks() {
    let s = started();
    let state = param(&s.location, "state").unwrap();
    let cookie = s.browser_binding.expose_secret().to_owned();
    let p = provider();
    let q = |extra: &str| callback(&format!("state={state}&{extra}"));
    let ok = q("code=abc&iss=https%3A%2F%2Fidp.example.com");
    assert_eq!(
        check_callback(&s.login, &p, &metadata(), &ok, Some(&cookie), NOW),
        Ok("abc")
    );
    // Without iss (RFC 9207 is optional for the provider) it passes too.
    assert_eq!(
        check_callback(&s.login, &p, &metadata(), &q("code=abc"), Some(&cookie), NOW),
        Ok("abc")
    );
    let late = NOW + UPSTREAM_LOGIN_TTL;
    let mut other = p.clone();
    other.name = ProviderName::new("other").unwrap();
    let cases: Vec<(
        CallbackParams,
        Option<&str>,
        OffsetDateTime,
        &UpstreamProvider,
        LoginFailure,
    )> = vec![
        (ok.clone(), None, NOW, &p, LoginFailure::BrowserMismatch),
        (ok.clone(), Some("forged"), NOW, &p, LoginFailure::BrowserMismatch),
        (ok.clone(), Some(&cookie), late, &p, LoginFailure::Expired),
        (ok.clone(), Some(&cookie), NOW, &other, LoginFailure::StateMismatch),
        (
            q("code=abc&iss=https%3A%2F%2Fevil.example"),
            Some(&cookie),
            NOW,
            &p,
            LoginFailure::IssuerMismatch,
        ),
        (
            q("error=access_denied"),
            Some(&cookie),
            NOW,
            &p,
            LoginFailure::Cancelled,
        ),
        (
            q("error=server_error&error_description=%3Cscript%3E"),
            Some(&cookie),
            NOW,
            &p,
            LoginFailure::UpstreamError {
                error: "server_error".into(),
            },
        ),
        (q(""), Some(&cookie), NOW, &p, LoginFailure::MalformedCallback),
        (q("code="), Some(&cookie), NOW, &p, LoginFailure::MalformedCallback),
        (
            q("code=a&code=b"),
            Some(&cookie),
            NOW,
            &p,
            LoginFailure::MalformedCallback,
        ),
    ];
    for (params, cookie, now, prov, want) in cases {
        assert_eq!(
            check_callback(&s.login, prov, &metadata(), &params, cookie, now),
            Err(want.clone()),
            "{want:?}"
        );
    }
    // A provider that advertises RFC 9207 must send iss.
    let mut m = metadata();
    m.iss_parameter_supported = true;
    assert_eq!(
        check_callback(&s.login, &p, &m, &q("code=abc"), Some(&cookie), NOW),
        Err(LoginFailure::IssuerMismatch)
    );
    assert_eq!(check_callback(&s.login, &p, &m, &ok, Some(&cookie), NOW), Ok("abc"));
    // The upstream's error string is sanitized for the audit log.
    let f = check_callback(&s.login, &p, &metadata(), &q("error=x%0Ay%3Cz"), Some(&cookie), NOW).unwrap_err();
    assert_eq!(f, LoginFailure::UpstreamError { error: "xyz".into() });
}

#[test]
fn failures_map_to_oauth_codes_and_reasons() {
    use ErrorCode::*;
    let cases = [
        (LoginFailure::Cancelled, AccessDenied, "user_cancelled"),
        (
            LoginFailure::UpstreamError { error: "x".into() },
            ServerError,
            "upstream_error",
        ),
        (
            LoginFailure::UpstreamError {
                error: "temporarily_unavailable".into(),
            },
            TemporarilyUnavailable,
            "upstream_error",
        ),
        (LoginFailure::StateMismatch, AccessDenied, "state_mismatch"),
        (LoginFailure::BrowserMismatch, AccessDenied, "browser_mismatch"),
        (LoginFailure::Replayed, AccessDenied, "replayed_callback"),
        (LoginFailure::Expired, AccessDenied, "expired"),
        (
            LoginFailure::ProviderUnavailable,
            TemporarilyUnavailable,
            "provider_unavailable",
        ),
        (LoginFailure::TokenExchange, ServerError, "token_exchange_failed"),
        (
            LoginFailure::InvalidIdToken(IdTokenError::Nonce),
            ServerError,
            "invalid_id_token:nonce",
        ),
        (
            LoginFailure::RefusedByPolicy {
                reason: "email_domain".into(),
            },
            AccessDenied,
            "refused_by_policy:email_domain",
        ),
    ];
    for (f, code, reason) in cases {
        assert_eq!(f.code(), code, "{f:?}");
        assert_eq!(f.reason(), reason);
    }
}

fn metadata_with_prompts(values: Value) -> ProviderMetadata {
    let body = json!({
        "issuer": ISS,
        "authorization_endpoint": "https://idp.example.com/authorize",
        "token_endpoint": "https://idp.example.com/token",
        "jwks_uri": "https://idp.example.com/jwks",
        "prompt_values_supported": values,
    });
    parse_provider_metadata(body.to_string().as_bytes(), &Issuer::new(ISS).unwrap(), false).unwrap()
}

fn location_for(pending: PendingAuthorization, metadata: &ProviderMetadata) -> String {
    start_login(pending, &provider(), metadata, "https://as.example/cb", random(1), NOW).location
}

#[test]
fn login_hint_and_prompt_are_forwarded_upstream() {
    // Nothing asked: nothing forwarded.
    let plain = location_for(pending(), &metadata());
    for name in ["prompt", "max_age", "login_hint"] {
        assert_eq!(param(&plain, name), None, "{name}");
    }
    let mut p = pending();
    p.login_hint = Some("jane@example.org".into());
    p.force_login = true;
    let loc = location_for(p.duplicate(), &metadata());
    assert_eq!(param(&loc, "login_hint").as_deref(), Some("jane@example.org"));
    assert_eq!(param(&loc, "prompt").as_deref(), Some("login"));
    assert_eq!(
        param(&loc, "max_age").as_deref(),
        Some("0"),
        "fresh authentication, checked by auth_time"
    );
    p.force_consent = true;
    assert_eq!(
        param(&location_for(p, &metadata()), "prompt").as_deref(),
        Some("login consent")
    );
    let mut p = pending();
    p.force_consent = true;
    let loc = location_for(p, &metadata());
    assert_eq!(param(&loc, "prompt").as_deref(), Some("consent"));
    assert_eq!(param(&loc, "max_age"), None);
    let mut p = pending();
    p.prompt_none = true;
    let loc = location_for(p, &metadata());
    assert_eq!(param(&loc, "prompt").as_deref(), Some("none"));
    assert_eq!(param(&loc, "max_age"), None);
}

#[test]
fn only_prompt_values_the_provider_supports_are_sent() {
    // A provider without `login` (like Google): prompt=login becomes
    // max_age=0 alone.
    let m = metadata_with_prompts(json!(["none", "consent", "select_account"]));
    assert!(m.supports_prompt("none") && !m.supports_prompt("login"));
    let mut p = pending();
    p.force_login = true;
    p.force_consent = true;
    let loc = location_for(p.duplicate(), &m);
    assert_eq!(param(&loc, "prompt").as_deref(), Some("consent"));
    assert_eq!(param(&loc, "max_age").as_deref(), Some("0"));
    p.force_consent = false;
    assert_eq!(upstream_prompt(&p, &m), None);
    // Without `none`, prompt=none is not sent (the driver answers
    // login_required instead of going upstream).
    let m = metadata_with_prompts(json!(["login", "consent"]));
    let mut p = pending();
    p.prompt_none = true;
    assert_eq!(upstream_prompt(&p, &m), None);
    // Without the list, the OpenID Connect Core values are assumed.
    assert!(metadata().supports_prompt("none") && metadata().supports_prompt("login"));
    assert!(!metadata().supports_prompt("create"));
    // A list that is not a list is a broken document.
    let body = json!({
        "issuer": ISS,
        "authorization_endpoint": "https://idp.example.com/authorize",
        "token_endpoint": "https://idp.example.com/token",
        "jwks_uri": "https://idp.example.com/jwks",
        "prompt_values_supported": "none login",
    });
    assert_eq!(
        parse_provider_metadata(body.to_string().as_bytes(), &Issuer::new(ISS).unwrap(), false),
        Err(MetadataError::Malformed("prompt_values_supported"))
    );
}

#[test]
fn interaction_errors_from_upstream_reach_the_client_as_such() {
    use ErrorCode::*;
    let s = started();
    let state = param(&s.location, "state").unwrap();
    let cookie = s.browser_binding.expose_secret().to_owned();
    for (error, code) in [
        ("login_required", LoginRequired),
        ("consent_required", ConsentRequired),
        ("interaction_required", InteractionRequired),
        ("account_selection_required", AccountSelectionRequired),
    ] {
        let params = callback(&format!("state={state}&error={error}"));
        let f = check_callback(&s.login, &provider(), &metadata(), &params, Some(&cookie), NOW).unwrap_err();
        assert_eq!(f, LoginFailure::InteractionRequired(code), "{error}");
        assert_eq!(f.code(), code);
        assert_eq!(f.code().as_str(), error, "the client gets the provider's code");
        assert_eq!(f.reason(), format!("interaction_required:{error}"));
    }
    // Other codes stay provider errors.
    let params = callback(&format!("state={state}&error=invalid_request"));
    let f = check_callback(&s.login, &provider(), &metadata(), &params, Some(&cookie), NOW).unwrap_err();
    assert_eq!(f.code(), ServerError);
}

#[test]
fn auth_time_must_be_fresh_after_prompt_login() {
    let started = NOW - Duration::minutes(2);
    let t = |at: OffsetDateTime| claims(json!({ "auth_time": at.unix_timestamp() }));
    assert_eq!(check_auth_time(&t(NOW - Duration::minutes(1)), started, NOW), Ok(()));
    assert_eq!(check_auth_time(&t(started - LEEWAY), started, NOW), Ok(()), "leeway");
    assert_eq!(
        check_auth_time(&t(started - LEEWAY - Duration::SECOND), started, NOW),
        Err(IdTokenError::AuthTime),
        "an old session is not a fresh login"
    );
    assert_eq!(
        check_auth_time(&t(NOW + LEEWAY + Duration::SECOND), started, NOW),
        Err(IdTokenError::AuthTime)
    );
    assert_eq!(
        check_auth_time(&claims(json!({})), started, NOW),
        Err(IdTokenError::Missing("auth_time"))
    );
    assert_eq!(
        check_auth_time(&claims(json!({"auth_time": "yesterday"})), started, NOW),
        Err(IdTokenError::Missing("auth_time"))
    );
    assert_eq!(
        LoginFailure::InvalidIdToken(IdTokenError::AuthTime).reason(),
        "invalid_id_token:auth_time"
    );
}

fn claims(extra: Value) -> Map<String, Value> {
    let t = NOW.unix_timestamp();
    let mut m = match json!({
        "iss": ISS, "aud": "rp-client", "sub": "248289761001", "exp": t + 300, "iat": t,
        "nonce": "n-0S6_WzA2Mj", "email": "Jane@Example.org", "email_verified": true, "name": "Jane"
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    if let Value::Object(e) = extra {
        for (k, v) in e {
            if v.is_null() {
                m.remove(&k);
            } else {
                m.insert(k, v);
            }
        }
    }
    m
}

#[test]
fn id_token_claim_table() {
    let p = provider();
    let check = |m: &Map<String, Value>| check_id_token_claims(m, &p, "n-0S6_WzA2Mj", NOW);
    let id = check(&claims(json!({}))).unwrap();
    assert_eq!(id.subject, "248289761001");
    assert_eq!(id.issuer, ISS);
    assert_eq!(id.email.as_deref(), Some("Jane@Example.org"));
    assert!(id.email_verified);
    assert_eq!(id.name.as_deref(), Some("Jane"));
    let t = NOW.unix_timestamp();
    let old = (MAX_ID_TOKEN_AGE + LEEWAY).whole_seconds() + 1;
    let cases = [
        (json!({"iss": "https://idp.example.com/"}), IdTokenError::WrongIssuer),
        (json!({"iss": null}), IdTokenError::WrongIssuer),
        (json!({"aud": "someone-else"}), IdTokenError::WrongAudience),
        (json!({"aud": []}), IdTokenError::Missing("aud")),
        (json!({"aud": null}), IdTokenError::Missing("aud")),
        (
            json!({"aud": ["rp-client", "other"]}),
            IdTokenError::WrongAuthorizedParty,
        ),
        (
            json!({"aud": ["rp-client", "other"], "azp": "other"}),
            IdTokenError::WrongAuthorizedParty,
        ),
        (json!({"azp": "other"}), IdTokenError::WrongAuthorizedParty),
        (json!({"exp": t - 61}), IdTokenError::Expired),
        (json!({"exp": null}), IdTokenError::Missing("exp")),
        (json!({"iat": t + 120}), IdTokenError::IssuedAt),
        (json!({"iat": t - old}), IdTokenError::IssuedAt),
        (json!({"iat": null}), IdTokenError::Missing("iat")),
        (json!({"nonce": "other"}), IdTokenError::Nonce),
        (json!({"nonce": null}), IdTokenError::Nonce),
        (json!({"sub": ""}), IdTokenError::Missing("sub")),
        (json!({"sub": 42}), IdTokenError::Missing("sub")),
    ];
    for (extra, want) in cases {
        assert_eq!(check(&claims(extra.clone())), Err(want), "{extra}");
    }
    // Extreme times neither panic nor pass wrongly.
    let max = 253_402_300_799_i64; // 9999-12-31T23:59:59Z
    assert!(check(&claims(json!({"exp": max}))).is_ok());
    assert_eq!(check(&claims(json!({"iat": max}))), Err(IdTokenError::IssuedAt));
    assert_eq!(
        check(&claims(json!({"exp": i64::MAX}))),
        Err(IdTokenError::Missing("exp"))
    );
    assert_eq!(
        check(&claims(json!({"iat": i64::MIN}))),
        Err(IdTokenError::Missing("iat"))
    );
    // Several audiences with the right azp pass; a string "true" is not a
    // verified email.
    assert!(check(&claims(json!({"aud": ["rp-client", "other"], "azp": "rp-client"}))).is_ok());
    assert!(
        !check(&claims(json!({"email_verified": "true"})))
            .unwrap()
            .email_verified
    );
    // A claim mapping reads other claims.
    let mut mapped = provider();
    mapped.claims.email = "preferred_username".into();
    let id = check_id_token_claims(
        &claims(json!({"preferred_username": "jane@contoso.com"})),
        &mapped,
        "n-0S6_WzA2Mj",
        NOW,
    )
    .unwrap();
    assert_eq!(id.email.as_deref(), Some("jane@contoso.com"));
}

#[test]
fn provider_rules() {
    let id = |email: Option<&str>, verified: bool, hd: Option<&str>| UpstreamIdentity {
        issuer: ISS.into(),
        subject: "s".into(),
        email: email.map(str::to_owned),
        email_verified: verified,
        name: None,
        hosted_domain: hd.map(str::to_owned),
    };
    let mut p = provider();
    assert!(p.rules().check(&id(None, false, None)).is_ok(), "no rules: anyone");
    p.require_verified_email = true;
    assert!(p.rules().check(&id(Some("a@x.org"), false, None)).is_err());
    assert!(p.rules().check(&id(Some("a@x.org"), true, None)).is_ok());
    p.require_verified_email = false;
    p.allowed_email_domains = vec!["example.org".into()];
    let refused = |r: &str| {
        Err(LoginFailure::RefusedByPolicy {
            reason: r.to_owned().into(),
        })
    };
    assert!(p.rules().check(&id(Some("a@EXAMPLE.org"), true, None)).is_ok());
    assert_eq!(
        p.rules().check(&id(Some("a@example.org"), false, None)),
        refused("email_not_verified")
    );
    assert_eq!(
        p.rules().check(&id(Some("a@sub.example.org"), true, None)),
        refused("email_domain")
    );
    assert_eq!(
        p.rules().check(&id(Some("a@example.org.evil.com"), true, None)),
        refused("email_domain")
    );
    assert_eq!(
        p.rules().check(&id(Some("\"a@example.org\"@evil.com"), true, None)),
        refused("email_domain")
    );
    p.allowed_email_domains.clear();
    p.hosted_domain = Some("example.org".into());
    assert_eq!(p.rules().check(&id(None, false, None)), refused("hosted_domain"));
    assert_eq!(
        p.rules().check(&id(None, false, Some("evil.org"))),
        refused("hosted_domain")
    );
    assert!(p.rules().check(&id(None, false, Some("example.org"))).is_ok());
}

#[test]
fn local_subjects_are_stable_and_unambiguous() {
    let a = local_subject(ISS, "123");
    assert_eq!(a, local_subject(ISS, "123"));
    assert!(a.as_str().starts_with("usr_") && a.as_str().len() == 44);
    assert_ne!(a, local_subject(ISS, "124"));
    assert_ne!(a, local_subject("https://other.example", "123"));
    assert_ne!(local_subject("ab", "c"), local_subject("a", "bc"));
    assert!(!a.as_str().contains("123"));
}

#[test]
fn discovery_document_checks() {
    let iss = Issuer::new(ISS).unwrap();
    let doc = |extra: Value| {
        let mut m = match json!({
            "issuer": ISS,
            "authorization_endpoint": "https://idp.example.com/authorize",
            "token_endpoint": "https://idp.example.com/token",
            "jwks_uri": "https://idp.example.com/jwks",
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        if let Value::Object(e) = extra {
            m.extend(e);
        }
        Value::Object(m).to_string().into_bytes()
    };
    assert!(parse_provider_metadata(&doc(json!({})), &iss, false).is_ok());
    let cases = [
        (
            json!({"issuer": "https://idp.example.com/"}),
            MetadataError::IssuerMismatch,
        ),
        (json!({"issuer": "https://evil.example"}), MetadataError::IssuerMismatch),
        (
            json!({"token_endpoint": "http://idp.example.com/token"}),
            MetadataError::Endpoint("token_endpoint"),
        ),
        (
            json!({"jwks_uri": "https://user:pw@idp.example.com/jwks"}),
            MetadataError::Endpoint("jwks_uri"),
        ),
        (
            json!({"authorization_endpoint": "javascript:alert(1)"}),
            MetadataError::Endpoint("authorization_endpoint"),
        ),
        (json!({"jwks_uri": null}), MetadataError::Endpoint("jwks_uri")),
        (
            json!({"code_challenge_methods_supported": ["plain"]}),
            MetadataError::NoS256,
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(
            parse_provider_metadata(&doc(extra.clone()), &iss, false),
            Err(want),
            "{extra}"
        );
    }
    assert_eq!(parse_provider_metadata(b"[]", &iss, false), Err(MetadataError::NotJson));
    let loopback = json!({"token_endpoint": "http://127.0.0.1:9/token"});
    assert!(parse_provider_metadata(&doc(loopback.clone()), &iss, false).is_err());
    assert!(parse_provider_metadata(&doc(loopback), &iss, true).is_ok());
    assert!(!endpoint_url_ok("http://10.0.0.1/token", true), "loopback only");
    assert!(!endpoint_url_ok("http://localhost.evil.com/token", true));
    // Endpoints named by an https discovery document on special-use hosts
    // (the server would connect to its own network).
    for endpoint in [
        "https://127.0.0.1:9/token",
        "https://127.1/token",
        "https://0x7f000001/token",
        "https://localhost/token",
        "https://LOCALHOST./token",
        "https://admin.localhost/token",
        "https://[::1]/token",
        "https://[::ffff:127.0.0.1]/token",
        "https://10.1.2.3/token",
        "https://169.254.169.254/latest/meta-data",
        "https://192.168.1.1/token",
        "https://[fd00::1]/token",
        "https://0.0.0.0/token",
    ] {
        assert!(!endpoint_url_ok(endpoint, false), "{endpoint}");
        let e = parse_provider_metadata(&doc(json!({ "jwks_uri": endpoint })), &iss, false);
        assert_eq!(e, Err(MetadataError::Endpoint("jwks_uri")), "{endpoint}");
    }
    // The development switch lets loopback through, over https too, and
    // nothing else.
    for endpoint in [
        "https://127.0.0.1:9/token",
        "https://localhost/token",
        "https://[::1]/token",
    ] {
        assert!(endpoint_url_ok(endpoint, true), "{endpoint}");
    }
    for endpoint in [
        "https://10.1.2.3/token",
        "https://169.254.169.254/x",
        "http://192.168.1.1/token",
    ] {
        assert!(!endpoint_url_ok(endpoint, true), "{endpoint}");
    }
    assert!(
        endpoint_url_ok("https://93.184.216.34/token", false),
        "a public address"
    );
    assert!(endpoint_url_ok("https://login.example.com/token", false));
}

#[test]
fn only_a_loopback_issuer_is_a_development_one() {
    for (issuer, loopback) in [
        ("https://idp.example.com", false),
        ("https://127.0.0.1:8443", true),
        ("https://localhost:8443/realm", true),
        ("https://[::1]", true),
    ] {
        assert_eq!(is_loopback_issuer(&Issuer::new(issuer).unwrap()), loopback, "{issuer}");
    }
    let dev = Issuer::new_allowing_loopback_http_for_development("http://127.0.0.1:8081").unwrap();
    assert!(is_loopback_issuer(&dev));
}

#[test]
fn token_request_client_authentication() {
    let s = started();
    let secret = SecretString::from("s3cr:et&");
    let mut p = provider();
    let (form, header) = token_request(&s.login, &p, "the-code", ClientCredential::Secret(&secret));
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes()).into_owned().collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("grant_type"), Some("authorization_code"));
    assert_eq!(get("code"), Some("the-code"));
    assert_eq!(get("code_verifier"), Some(s.login.code_verifier.as_str()));
    assert_eq!(
        get("redirect_uri"),
        Some("https://as.example/v1/auth/oauth/oidc/callback")
    );
    assert_eq!(get("client_secret"), None, "basic: not in the body");
    use base64::Engine as _;
    let h = header.unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(h.expose_secret().strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), "rp-client:s3cr%3Aet%26");
    p.client_auth = UpstreamClientAuth::ClientSecretPost;
    let (form, header) = token_request(&s.login, &p, "c", ClientCredential::Secret(&secret));
    assert!(header.is_none());
    assert!(form.contains("client_secret=s3cr%3Aet%26") && form.contains("client_id=rp-client"));
    p.client_auth = UpstreamClientAuth::None;
    let (form, header) = token_request(&s.login, &p, "c", ClientCredential::Secret(&secret));
    assert!(header.is_none() && !form.contains("client_secret"));
    p.client_auth = UpstreamClientAuth::PrivateKeyJwt;
    let (form, header) = token_request(&s.login, &p, "c", ClientCredential::Assertion("h.p.s"));
    assert!(header.is_none() && !form.contains("client_secret"));
    assert!(form.contains("client_assertion=h.p.s") && form.contains("client_id=rp-client"));
    assert!(form.contains("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"));
    // A secret is never sent to a provider configured for assertions.
    let (form, header) = token_request(&s.login, &p, "c", ClientCredential::Secret(&secret));
    assert!(header.is_none() && !form.contains("client_secret") && !form.contains("client_assertion"));
    let claims = client_assertion_claims(&p, "jti-1", NOW);
    assert_eq!(claims["iss"], "rp-client");
    assert_eq!(claims["sub"], "rp-client");
    assert_eq!(claims["aud"], ISS);
    assert_eq!(claims["exp"], NOW.unix_timestamp() + 60);
    assert_eq!(claims["jti"], "jti-1");
}

#[test]
fn token_responses() {
    assert_eq!(
        id_token_from_response(200, br#"{"access_token":"a","id_token":"x.y.z"}"#).unwrap(),
        "x.y.z"
    );
    for (status, body) in [
        (400, &br#"{"error":"invalid_grant"}"#[..]),
        (200, br#"{"access_token":"a"}"#),
        (200, br#"{"id_token":""}"#),
        (200, b"not json"),
    ] {
        assert_eq!(id_token_from_response(status, body), Err(LoginFailure::TokenExchange));
    }
}

#[test]
fn settings_validation_and_serde_defaults() {
    let mut s = UpstreamSettings::default();
    s.providers.push(provider());
    assert!(s.validate().is_ok());
    s.selected = Some(ProviderName::new("nope").unwrap());
    assert_eq!(s.validate(), Err(UpstreamSettingsError::UnknownSelected));
    s.selected = Some(ProviderName::new("oidc").unwrap());
    s.providers.push(provider());
    assert_eq!(s.validate(), Err(UpstreamSettingsError::DuplicateName));
    // A minimal stored provider reads back with the defaults.
    let p: UpstreamProvider =
        serde_json::from_value(json!({"name": "kc", "issuer": "https://kc.example/realms/a", "client_id": "x"}))
            .unwrap();
    assert_eq!(p.client_auth, UpstreamClientAuth::ClientSecretBasic);
    assert_eq!(p.scopes.to_string(), "openid email profile");
    assert_eq!(p.claims, ClaimMapping::default());
    // Presets.
    let g = UpstreamProvider::google("id").unwrap();
    assert_eq!(
        g.discovery_url(),
        "https://accounts.google.com/.well-known/openid-configuration"
    );
    assert!(g.require_verified_email);
    let m = UpstreamProvider::microsoft_entra("contoso.onmicrosoft.com", "id").unwrap();
    assert_eq!(
        m.discovery_url(),
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration"
    );
    assert!(UpstreamProvider::microsoft_entra("a/../b", "id").is_err());
    assert!(UpstreamProvider::microsoft_entra("", "id").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_store_takes_once() {
    let store = std::sync::Arc::new(MemoryUpstreamLoginStore::default());
    let project = ProjectId::new("proj_t").unwrap();
    let s = started();
    let hash = s.login.state_hash;
    let browser = s.browser_binding.hash();
    store.insert(&project, s.login, None).await.unwrap();
    let other = ProjectId::new("proj_other").unwrap();
    assert!(matches!(
        store.take(&other, &hash, &browser, NOW).await.unwrap(),
        LoginTake::Unknown
    ));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (store, project) = (store.clone(), project.clone());
        tasks.push(tokio::spawn(async move {
            store.take(&project, &hash, &browser, NOW).await.unwrap()
        }));
    }
    let mut taken = 0;
    for t in tasks {
        match t.await.unwrap() {
            LoginTake::Taken(_) => taken += 1,
            LoginTake::AlreadyTaken(_) => {}
            other => panic!("a taken login must stay recognizable: {other:?}"),
        }
    }
    assert_eq!(taken, 1, "exactly one callback wins");
    assert_eq!(store.purge(NOW + UPSTREAM_LOGIN_TTL).await.unwrap(), 1);
    assert!(matches!(
        store.take(&project, &hash, &browser, NOW).await.unwrap(),
        LoginTake::Unknown
    ));
}

#[test]
fn only_bearer_access_tokens_are_kept_for_userinfo() {
    let t = tokens_from_response(
        200,
        br#"{"access_token":"at-1","token_type":"Bearer","id_token":"x.y.z"}"#,
    )
    .unwrap();
    assert_eq!(t.id_token, "x.y.z");
    assert_eq!(t.access_token.as_ref().map(SecretString::expose_secret), Some("at-1"));
    let t = tokens_from_response(
        200,
        br#"{"access_token":"at-1","token_type":"bearer","id_token":"x.y.z"}"#,
    )
    .unwrap();
    assert!(t.access_token.is_some(), "token_type is case-insensitive");
    for body in [
        &br#"{"access_token":"at-1","token_type":"DPoP","id_token":"x.y.z"}"#[..],
        br#"{"access_token":"at-1","id_token":"x.y.z"}"#,
        br#"{"access_token":"","token_type":"Bearer","id_token":"x.y.z"}"#,
        br#"{"token_type":"Bearer","id_token":"x.y.z"}"#,
    ] {
        let t = tokens_from_response(200, body).unwrap();
        assert!(t.access_token.is_none(), "{}", String::from_utf8_lossy(body));
    }
    assert!(
        !format!(
            "{t:?}",
            t = tokens_from_response(
                200,
                br#"{"access_token":"at-secret","token_type":"Bearer","id_token":"x"}"#
            )
            .unwrap()
        )
        .contains("at-secret")
    );
}

fn identity(email: Option<&str>) -> UpstreamIdentity {
    UpstreamIdentity {
        issuer: ISS.into(),
        subject: "248289761001".into(),
        email: email.map(str::to_owned),
        email_verified: email.is_some(),
        name: None,
        hosted_domain: None,
    }
}

#[test]
fn when_userinfo_is_called() {
    let mut m = metadata();
    let mut p = provider();
    // Default: only when the ID token has no email, and only if the
    // provider has the endpoint.
    assert_eq!(userinfo_endpoint(&p, &m, &identity(Some("jane@example.org"))), Ok(None));
    assert_eq!(
        userinfo_endpoint(&p, &m, &identity(None)),
        Ok(None),
        "no endpoint: nothing to call"
    );
    m.userinfo_endpoint = Some("https://idp.example.com/userinfo".into());
    assert_eq!(
        userinfo_endpoint(&p, &m, &identity(None)),
        Ok(Some("https://idp.example.com/userinfo"))
    );
    assert_eq!(userinfo_endpoint(&p, &m, &identity(Some("jane@example.org"))), Ok(None));
    // Configured: always, and a provider without the endpoint fails.
    p.fetch_userinfo = true;
    assert_eq!(
        userinfo_endpoint(&p, &m, &identity(Some("jane@example.org"))),
        Ok(Some("https://idp.example.com/userinfo"))
    );
    m.userinfo_endpoint = None;
    assert_eq!(
        userinfo_endpoint(&p, &m, &identity(Some("jane@example.org"))),
        Err(UserinfoError::NoEndpoint)
    );
}

#[test]
fn userinfo_must_be_about_the_id_token_subject() {
    let p = provider();
    let merge = |status: u16, body: Value| merge_userinfo(identity(None), &p, status, body.to_string().as_bytes());
    // OpenID Connect Core 5.3.2: sub MUST be exactly the ID token's.
    for sub in [
        json!("someone-else"),
        json!("248289761001 "),
        json!("248289761002"),
        json!(248289761001_u64),
    ] {
        let r = merge(
            200,
            json!({"sub": sub, "email": "mallory@example.org", "email_verified": true}),
        );
        assert!(
            matches!(r, Err(UserinfoError::SubjectMismatch | UserinfoError::Malformed)),
            "{sub}: {r:?}"
        );
    }
    assert_eq!(
        merge(200, json!({"sub": "someone-else"})),
        Err(UserinfoError::SubjectMismatch)
    );
    assert_eq!(
        merge(200, json!({"email": "x@example.org"})),
        Err(UserinfoError::Malformed)
    );
    assert_eq!(merge(401, json!({"sub": "248289761001"})), Err(UserinfoError::Status));
    assert_eq!(
        merge_userinfo(identity(None), &p, 200, b"eyJhbGciOi.signed.jwt"),
        Err(UserinfoError::Malformed),
        "signed userinfo is not supported"
    );
    let f = LoginFailure::Userinfo(UserinfoError::SubjectMismatch);
    assert_eq!(
        (f.code(), f.reason().as_ref()),
        (ErrorCode::ServerError, "userinfo:sub_mismatch")
    );
    let f = LoginFailure::Userinfo(UserinfoError::Unreachable);
    assert_eq!(f.code(), ErrorCode::TemporarilyUnavailable);
}

#[test]
fn userinfo_fills_only_what_the_id_token_lacks() {
    let p = provider();
    let body = json!({
        "sub": "248289761001", "email": "jane@example.org", "email_verified": true,
        "name": "Jane", "hd": "example.org",
    })
    .to_string();
    let merged = merge_userinfo(identity(None), &p, 200, body.as_bytes()).unwrap();
    assert_eq!(merged.email.as_deref(), Some("jane@example.org"));
    assert!(merged.email_verified);
    assert_eq!(merged.name.as_deref(), Some("Jane"));
    assert_eq!(merged.hosted_domain.as_deref(), Some("example.org"));
    // The ID token's (signed) claims win, and its email keeps its own
    // verification flag.
    let mut from_token = identity(Some("jane.doe@example.org"));
    from_token.email_verified = false;
    from_token.name = Some("Jane Doe".into());
    let merged = merge_userinfo(from_token, &p, 200, body.as_bytes()).unwrap();
    assert_eq!(merged.email.as_deref(), Some("jane.doe@example.org"));
    assert!(
        !merged.email_verified,
        "a verified flag about another address is not taken"
    );
    assert_eq!(merged.name.as_deref(), Some("Jane Doe"));
    // An unverified userinfo email stays unverified.
    let body = json!({"sub": "248289761001", "email": "jane@example.org"}).to_string();
    let merged = merge_userinfo(identity(None), &p, 200, body.as_bytes()).unwrap();
    assert_eq!(merged.email.as_deref(), Some("jane@example.org"));
    assert!(!merged.email_verified);
}
