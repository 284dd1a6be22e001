use http::header::AUTHORIZATION;
use time::macros::datetime;

use super::*;

const RESOURCE: &str = "https://mcp.example.com/mcp";
const PRM: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
const NOW: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

fn resource() -> ResourceUri {
    ResourceUri::parse(RESOURCE).unwrap()
}

fn scopes(s: &str) -> ScopeSet {
    ScopeSet::parse(s).unwrap()
}

fn headers(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn uri(s: &str) -> Uri {
    s.parse().unwrap()
}

fn token(aud: &[&str], scope: &str, exp: Option<OffsetDateTime>) -> VerifiedToken {
    VerifiedToken::new(
        "user_demo".into(),
        "client_1".into(),
        scopes(scope),
        aud.iter().map(|s| (*s).to_owned()).collect(),
        exp,
    )
}

fn active(aud: &[&str]) -> IntrospectionResponse {
    IntrospectionResponse {
        active: true,
        scope: Some("mcp:read".into()),
        client_id: Some("client_1".into()),
        token_type: Some("access_token".into()),
        exp: Some(NOW.unix_timestamp() + 60),
        sub: Some("user_demo".into()),
        aud: Some(aud.iter().map(|s| (*s).to_owned()).collect()),
        ..IntrospectionResponse::inactive()
    }
}

#[test]
fn metadata_json() {
    let m = ProtectedResourceMetadata::builder(&resource())
        .authorization_server(&Issuer::new("https://auth.example.com").unwrap())
        .authorization_server(&Issuer::new("https://auth.example.com").unwrap())
        .scopes(&scopes("mcp:read offline_access mcp:write"))
        .resource_name("Example MCP")
        .build();
    let v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "resource": "https://mcp.example.com/mcp",
            "authorization_servers": ["https://auth.example.com"],
            "scopes_supported": ["mcp:read", "mcp:write"],
            "bearer_methods_supported": ["header"],
            "resource_name": "Example MCP",
        })
    );
    assert_eq!(m.url(), PRM);
    assert_eq!(m.path(), "/.well-known/oauth-protected-resource/mcp");
}

#[test]
fn metadata_resource_is_the_identifier_as_configured() {
    // RFC 9728 section 3.3: `resource` is identical to the identifier the
    // metadata URL was built from, so both keep the configured string.
    let r = ResourceUri::parse("https://MCP.example.com/mcp/").unwrap();
    let m = ProtectedResourceMetadata::builder(&r).build();
    assert_eq!(m.resource, "https://MCP.example.com/mcp/");
    assert_eq!(m.url(), metadata_url(&r));
    let v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
    assert!(v.get("authorization_servers").is_none(), "empty arrays are omitted");
    assert!(v.get("scopes_supported").is_none());
    assert_eq!(v["bearer_methods_supported"], serde_json::json!(["header"]));
}

#[test]
fn offline_access_is_never_published() {
    let m = ProtectedResourceMetadata::builder(&resource())
        .scopes(&scopes("offline_access"))
        .build();
    assert!(m.scopes_supported.is_empty());
}

#[test]
fn well_known_path_insertion() {
    let table = [
        ("https://mcp.example.com/mcp", PRM),
        (
            "https://mcp.example.com/mcp/",
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        ),
        (
            "https://mcp.example.com",
            "https://mcp.example.com/.well-known/oauth-protected-resource",
        ),
        (
            "https://mcp.example.com/",
            "https://mcp.example.com/.well-known/oauth-protected-resource",
        ),
        (
            "https://mcp.example.com/t1/mcp",
            "https://mcp.example.com/.well-known/oauth-protected-resource/t1/mcp",
        ),
        (
            "http://127.0.0.1:8090/mcp",
            "http://127.0.0.1:8090/.well-known/oauth-protected-resource/mcp",
        ),
    ];
    for (r, url) in table {
        let r = ResourceUri::parse(r).unwrap();
        assert_eq!(metadata_url(&r), url, "{r:?}");
        let path = metadata_path(&r);
        assert!(url.ends_with(&path), "{path}");
        assert!(path.starts_with("/.well-known/oauth-protected-resource"));
    }
    assert_eq!(
        metadata_path(&ResourceUri::parse("https://h.example").unwrap()),
        "/.well-known/oauth-protected-resource"
    );
}

#[test]
fn challenge_headers_exactly() {
    let required = scopes("mcp:read mcp:write");
    let table: [(ResourceServerError, Option<&str>); 5] = [
        (
            ResourceServerError::MissingToken,
            Some("Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""),
        ),
        (
            ResourceServerError::Expired,
            Some(
                "Bearer error=\"invalid_token\", error_description=\"the access token has expired\", \
                 resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\"",
            ),
        ),
        (
            ResourceServerError::InsufficientScope { required },
            Some(
                "Bearer error=\"insufficient_scope\", scope=\"mcp:read mcp:write\", \
                 resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\"",
            ),
        ),
        (
            ResourceServerError::TokenInQuery,
            Some(
                "Bearer error=\"invalid_request\", \
                 error_description=\"access tokens are accepted only in the Authorization header\", \
                 resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\"",
            ),
        ),
        (ResourceServerError::Unavailable, None),
    ];
    for (e, expected) in table {
        let got = e.challenge(PRM).map(|c| c.to_string());
        assert_eq!(got.as_deref(), expected, "{e:?}");
        let r = e.to_response(PRM);
        assert_eq!(
            r.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap()),
            expected,
            "{e:?}"
        );
    }
}

#[test]
fn every_invalid_token_challenge_names_the_error_and_metadata() {
    for e in [
        ResourceServerError::Inactive,
        ResourceServerError::NotAnAccessToken,
        ResourceServerError::IncompleteClaims,
        ResourceServerError::Expired,
        ResourceServerError::WrongAudience,
    ] {
        assert_eq!(e.status(), 401);
        let c = e.challenge(PRM).unwrap().to_string();
        assert!(c.starts_with("Bearer error=\"invalid_token\", "), "{c}");
        assert!(c.ends_with(&format!("resource_metadata=\"{PRM}\"")), "{c}");
    }
    assert_eq!(
        ResourceServerError::WrongAudience.challenge(PRM).unwrap().to_string(),
        format!(
            "Bearer error=\"invalid_token\", error_description=\"the access token was not issued for this resource\", \
             resource_metadata=\"{PRM}\""
        )
    );
}

#[test]
fn challenge_values_are_quoted_and_escaped() {
    let c = BearerChallenge::new()
        .error(ErrorCode::InvalidToken)
        .description("a \"b\" \\ c\r\nX: é")
        .resource_metadata("https://h.example/\"x\"");
    assert_eq!(
        c.to_string(),
        "Bearer error=\"invalid_token\", error_description=\"a \\\"b\\\" \\\\ c%0D%0AX: %C3%A9\", \
         resource_metadata=\"https://h.example/\\\"x\\\"\""
    );
    assert!(HeaderValue::from_str(&c.to_string()).is_ok());
    assert_eq!(BearerChallenge::new().to_string(), "Bearer");
}

#[test]
fn status_and_body_per_refusal() {
    let cases = [
        (ResourceServerError::MissingToken, 401, None),
        (
            ResourceServerError::MalformedAuthorization,
            400,
            Some("invalid_request"),
        ),
        (ResourceServerError::TokenInQuery, 400, Some("invalid_request")),
        (ResourceServerError::TokenInBody, 400, Some("invalid_request")),
        (ResourceServerError::Inactive, 401, Some("invalid_token")),
        (ResourceServerError::Expired, 401, Some("invalid_token")),
        (ResourceServerError::WrongAudience, 401, Some("invalid_token")),
        (
            ResourceServerError::InsufficientScope {
                required: scopes("mcp:write"),
            },
            403,
            Some("insufficient_scope"),
        ),
        (ResourceServerError::Unavailable, 500, Some("server_error")),
    ];
    for (e, status, code) in cases {
        let r = e.to_response(PRM);
        assert_eq!(r.status(), status, "{e:?}");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        match code {
            None => assert!(r.body().is_empty()),
            Some(code) => {
                let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
                assert_eq!(v["error"], code, "{e:?}");
            }
        }
        // Every refusal but a verifier failure carries a challenge.
        assert_eq!(
            r.headers().contains_key(header::WWW_AUTHENTICATE),
            !matches!(e, ResourceServerError::Unavailable)
        );
    }
}

#[test]
fn bearer_from_the_authorization_header() {
    let u = uri("/mcp");
    assert_eq!(
        extract_bearer(&headers(&["Bearer abc.DEF-_~+/="]), &u),
        Ok("abc.DEF-_~+/=")
    );
    assert_eq!(extract_bearer(&headers(&["bearer abc"]), &u), Ok("abc"));
    assert_eq!(extract_bearer(&headers(&["BEARER   abc  "]), &u), Ok("abc"));
    // Other query parameters are fine.
    assert_eq!(extract_bearer(&headers(&["Bearer abc"]), &uri("/mcp?x=1")), Ok("abc"));
}

#[test]
fn refusal_no_token() {
    let u = uri("/mcp");
    assert_eq!(
        extract_bearer(&HeaderMap::new(), &u),
        Err(ResourceServerError::MissingToken)
    );
    // Another scheme: the client did not know; no error code.
    assert_eq!(
        extract_bearer(&headers(&["Basic dXNlcjpwYXNz"]), &u),
        Err(ResourceServerError::MissingToken)
    );
}

#[test]
fn refusal_malformed_header() {
    let u = uri("/mcp");
    let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
    for bad in [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer a\"b",
        "Bearer a,b",
        "Bearer =",
        "Bearer ==abc",
        long.as_str(),
    ] {
        assert_eq!(
            extract_bearer(&headers(&[bad]), &u),
            Err(ResourceServerError::MalformedAuthorization),
            "{bad}"
        );
    }
    assert_eq!(
        extract_bearer(&headers(&["Bearer a", "Bearer b"]), &u),
        Err(ResourceServerError::MalformedAuthorization)
    );
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::from_bytes(b"Bearer \xff").unwrap());
    assert_eq!(extract_bearer(&h, &u), Err(ResourceServerError::MalformedAuthorization));
}

#[test]
fn refusal_token_in_query() {
    for q in [
        "/mcp?access_token=abc",
        "/mcp?x=1&access_token=",
        "/mcp?access%5Ftoken=abc",
    ] {
        assert_eq!(
            extract_bearer(&HeaderMap::new(), &uri(q)),
            Err(ResourceServerError::TokenInQuery),
            "{q}"
        );
        // Even beside a header: more than one method.
        assert_eq!(
            extract_bearer(&headers(&["Bearer abc"]), &uri(q)),
            Err(ResourceServerError::TokenInQuery),
            "{q}"
        );
    }
    let r = ResourceServerError::TokenInQuery.to_response(PRM);
    assert_eq!(r.status(), 400);
}

#[test]
fn refusal_token_in_form_body() {
    let form = Some("application/x-www-form-urlencoded; charset=utf-8");
    assert!(form_body_has_access_token(form, b"access_token=abc"));
    assert!(form_body_has_access_token(form, b"a=1&access_token=abc"));
    assert!(!form_body_has_access_token(form, b"a=1"));
    // JSON bodies (MCP's) cannot carry a form parameter.
    assert!(!form_body_has_access_token(
        Some("application/json"),
        b"access_token=abc"
    ));
    assert!(!form_body_has_access_token(None, b"access_token=abc"));
}

#[test]
fn introspection_responses() {
    let t = VerifiedToken::from_introspection(&active(&[RESOURCE])).unwrap();
    assert_eq!(t.subject, "user_demo");
    assert_eq!(t.client_id, "client_1");
    assert_eq!(t.scopes, scopes("mcp:read"));
    assert_eq!(t.audiences, vec![RESOURCE.to_owned()]);
    assert_eq!(t.expires_at, Some(NOW + time::Duration::seconds(60)));

    // Revoked, unknown, expired at the authorization server: all inactive.
    assert_eq!(
        VerifiedToken::from_introspection(&IntrospectionResponse::inactive()),
        Err(ResourceServerError::Inactive)
    );
    let mut refresh = active(&[RESOURCE]);
    refresh.token_type = Some("refresh_token".into());
    assert_eq!(
        VerifiedToken::from_introspection(&refresh),
        Err(ResourceServerError::NotAnAccessToken)
    );
    for broken in [
        IntrospectionResponse {
            sub: None,
            ..active(&[RESOURCE])
        },
        IntrospectionResponse {
            client_id: None,
            ..active(&[RESOURCE])
        },
        IntrospectionResponse {
            scope: Some("bad\"scope".into()),
            ..active(&[RESOURCE])
        },
        IntrospectionResponse {
            exp: Some(i64::MAX),
            ..active(&[RESOURCE])
        },
    ] {
        assert_eq!(
            VerifiedToken::from_introspection(&broken),
            Err(ResourceServerError::IncompleteClaims)
        );
    }
    // No scope at all is an empty set; no exp is allowed.
    let t = VerifiedToken::from_introspection(&IntrospectionResponse {
        scope: None,
        exp: None,
        ..active(&[RESOURCE])
    })
    .unwrap();
    assert!(t.scopes.is_empty());
    assert_eq!(t.expires_at, None);
}

#[test]
fn check_accepts_a_valid_token() {
    let guard = ProtectedResource::new(resource()).require_scopes(scopes("mcp:read"));
    let t = token(
        &[RESOURCE],
        "mcp:read mcp:write",
        Some(NOW + time::Duration::minutes(5)),
    );
    assert_eq!(guard.check(t.clone(), NOW), Ok(t));
    // Audience is compared by canonical form.
    let t = token(
        &["https://other.example.com/x", "HTTPS://MCP.example.com:443/mcp/"],
        "mcp:read",
        None,
    );
    assert!(guard.check(t, NOW).is_ok());
}

#[test]
fn refusal_expired() {
    let guard = ProtectedResource::new(resource());
    let t = token(&[RESOURCE], "mcp:read", Some(NOW));
    assert_eq!(guard.check(t.clone(), NOW), Err(ResourceServerError::Expired));
    assert!(guard.check(t, NOW - time::Duration::seconds(1)).is_ok());
}

#[test]
fn refusal_wrong_audience() {
    let guard = ProtectedResource::new(resource());
    for aud in [
        &["https://other.example.com/mcp"][..],
        &["https://mcp.example.com/mcp2"],
        &["https://mcp.example.com"],
        &["http://mcp.example.com/mcp"],
        &["not a uri"],
        &[],
    ] {
        let t = token(aud, "mcp:read", None);
        assert_eq!(guard.check(t, NOW), Err(ResourceServerError::WrongAudience), "{aud:?}");
    }
}

#[test]
fn refusal_missing_scope() {
    let guard = ProtectedResource::new(resource()).require_scopes(scopes("mcp:read mcp:write"));
    let t = token(&[RESOURCE], "mcp:read", None);
    assert_eq!(
        guard.check(t.clone(), NOW),
        Err(ResourceServerError::InsufficientScope {
            required: scopes("mcp:read mcp:write")
        })
    );
    // Step-up: one challenge names every scope the operation needs (not
    // only the missing one).
    assert_eq!(
        t.require_scopes(&scopes("mcp:read mcp:admin")),
        Err(ResourceServerError::InsufficientScope {
            required: scopes("mcp:read mcp:admin")
        })
    );
    assert_eq!(t.require_scopes(&ScopeSet::new()), Ok(()));
    // offline_access never appears in a resource's challenge.
    let err = t.require_scopes(&scopes("offline_access mcp:write")).unwrap_err();
    assert_eq!(
        err,
        ResourceServerError::InsufficientScope {
            required: scopes("mcp:write")
        }
    );
    let challenge = BearerChallenge::new()
        .scope(&scopes("offline_access mcp:read"))
        .to_string();
    assert!(challenge.contains("scope=\"mcp:read\""), "{challenge}");
}

#[test]
fn refusal_order_expiry_before_audience_before_scope() {
    let guard = ProtectedResource::new(resource()).require_scopes(scopes("mcp:write"));
    let t = token(&["https://other.example.com"], "", Some(NOW));
    assert_eq!(guard.check(t, NOW), Err(ResourceServerError::Expired));
    let t = token(&["https://other.example.com"], "", None);
    assert_eq!(guard.check(t, NOW), Err(ResourceServerError::WrongAudience));
}

struct Fixed(Result<VerifiedToken, ResourceServerError>);

#[async_trait]
impl TokenVerifier for Fixed {
    async fn verify(&self, token: &str, _now: OffsetDateTime) -> Result<VerifiedToken, ResourceServerError> {
        assert_eq!(token, "good");
        self.0.clone()
    }
}

#[test]
fn authorize_sequences_extraction_verification_and_checks() {
    let guard = ProtectedResource::new(resource()).require_scopes(scopes("mcp:read"));
    let ok = Fixed(Ok(token(&[RESOURCE], "mcp:read", None)));
    let run = |v: &Fixed, h: &HeaderMap, u: &str| futures_executor::block_on(guard.authorize(v, h, &uri(u), NOW));
    assert!(run(&ok, &headers(&["Bearer good"]), "/mcp").is_ok());
    assert_eq!(
        run(&ok, &HeaderMap::new(), "/mcp"),
        Err(ResourceServerError::MissingToken)
    );
    assert_eq!(
        run(&ok, &headers(&["Bearer good"]), "/mcp?access_token=good"),
        Err(ResourceServerError::TokenInQuery)
    );
    let other = Fixed(Ok(token(&["https://other.example.com/mcp"], "mcp:read", None)));
    assert_eq!(
        run(&other, &headers(&["Bearer good"]), "/mcp"),
        Err(ResourceServerError::WrongAudience)
    );
    let down = Fixed(Err(ResourceServerError::Unavailable));
    assert_eq!(
        run(&down, &headers(&["Bearer good"]), "/mcp"),
        Err(ResourceServerError::Unavailable)
    );
    let r = guard.refusal(&ResourceServerError::MissingToken);
    assert_eq!(
        r.headers()[header::WWW_AUTHENTICATE],
        format!("Bearer resource_metadata=\"{PRM}\"")
    );
}

#[test]
fn introspection_issuer_must_match_when_configured() {
    let mut r = active(&[RESOURCE]);
    r.iss = Some("https://as.example.com".to_owned());
    assert!(VerifiedToken::from_introspection_by(&r, Some("https://as.example.com")).is_ok());
    assert_eq!(
        VerifiedToken::from_introspection_by(&r, Some("https://other.example.com")),
        Err(ResourceServerError::WrongIssuer)
    );
    assert_eq!(
        VerifiedToken::from_introspection_by(&r, Some("https://as.example.com/")),
        Err(ResourceServerError::WrongIssuer),
        "exact string comparison"
    );
    r.iss = None;
    assert_eq!(
        VerifiedToken::from_introspection_by(&r, Some("https://as.example.com")),
        Err(ResourceServerError::WrongIssuer)
    );
    assert!(
        VerifiedToken::from_introspection_by(&r, None).is_ok(),
        "not checked unless configured"
    );
    assert_eq!(ResourceServerError::WrongIssuer.status(), 401);
}
