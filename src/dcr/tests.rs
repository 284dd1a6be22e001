use time::{Duration, OffsetDateTime};

use super::*;
use crate::client::{ClientMetadataError, TokenEndpointAuthMethod};
use crate::error::ErrorCode;
use crate::redirect_uri::RedirectUriPolicy;
use crate::secret::SecretString;
use proptest::prelude::*;
use serde_json::{Value, json};
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

fn issue(options: IatOptions) -> (IatRecord, SecretString) {
    IatRecord::issue(options, &[0x1f; 8], &[7; 32], NOW).unwrap()
}

#[test]
fn ids() {
    let id = IatId::from_random(&[0xab, 0, 1, 2, 3, 4, 5, 0xff]);
    assert_eq!(id.as_str(), "iat_ab000102030405ff");
    assert_eq!(IatId::new(id.as_str()), Ok(id.clone()));
    for bad in ["iat_", "iat_AB000102030405FF", "iat_ab000102030405f", "client_x", ""] {
        assert_eq!(IatId::new(bad), Err(IatError::MalformedId), "{bad}");
    }
    assert_eq!(serde_json::to_string(&id).unwrap(), "\"iat_ab000102030405ff\"");
    assert!(serde_json::from_str::<IatId>("\"iat_zz\"").is_err());
}

#[test]
fn issuing_stores_only_the_hash() {
    let (record, token) = issue(
        IatOptions::new()
            .label("Claude desktop")
            .max_uses(3)
            .ttl(Duration::days(7)),
    );
    let raw = token.expose_secret();
    assert!(raw.starts_with("iatk_"));
    assert_eq!(raw.len(), 5 + 43, "256 random bits");
    assert!(record.hash.matches(raw));
    assert_eq!(record.expires_at, Some(NOW + Duration::days(7)));
    assert_eq!(record.max_uses, Some(3));
    assert_eq!(record.uses, 0);
    assert_eq!(
        record.pinned.token_endpoint_auth_method,
        Some(TokenEndpointAuthMethod::None),
        "the dashboard default pins none"
    );
    let debug = format!("{record:?} {:?} {token:?}", record.view(NOW));
    let json = serde_json::to_string(&record).unwrap();
    assert!(!debug.contains(raw) && !json.contains(raw));
    assert!(!debug.contains(&raw[5..20]) && !json.contains(&raw[5..20]));
    let back: IatRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, record);
}

#[test]
fn option_refusals() {
    let bad = [
        (IatOptions::new().label("x".repeat(201)), IatError::InvalidLabel),
        (IatOptions::new().label("a\nb"), IatError::InvalidLabel),
        (IatOptions::new().ttl(Duration::ZERO), IatError::InvalidTtl),
        (IatOptions::new().ttl(Duration::seconds(-1)), IatError::InvalidTtl),
        (IatOptions::new().ttl(Duration::MAX), IatError::InvalidTtl),
        (IatOptions::new().max_uses(0), IatError::InvalidMaxUses),
    ];
    for (options, err) in bad {
        assert_eq!(IatRecord::issue(options, &[0; 8], &[0; 32], NOW).unwrap_err(), err);
    }
    assert!(IatRecord::issue(IatOptions::new().label("x".repeat(200)), &[0; 8], &[0; 32], NOW).is_ok());
}

#[test]
fn lifecycle_states() {
    let (mut r, _) = issue(IatOptions::new().max_uses(2).ttl(Duration::hours(1)));
    assert_eq!(r.check(NOW), Ok(()));
    r.try_use(NOW).unwrap();
    r.try_use(NOW).unwrap();
    assert_eq!(r.uses, 2);
    assert_eq!(r.try_use(NOW), Err(IatError::Exhausted));
    assert_eq!(r.uses, 2, "a refused use is not counted");
    assert_eq!(r.status(NOW), IatStatus::Exhausted);
    // expiry is exclusive of the instant itself
    let (r2, _) = issue(IatOptions::new().ttl(Duration::hours(1)));
    assert_eq!(r2.check(NOW + Duration::hours(1) - Duration::SECOND), Ok(()));
    assert_eq!(r2.check(NOW + Duration::hours(1)), Err(IatError::Expired));
    // revocation wins
    r.revoked_at = Some(NOW);
    assert_eq!(r.check(NOW + Duration::hours(2)), Err(IatError::Revoked));
    assert_eq!(r.view(NOW).status, IatStatus::Revoked);
    // unlimited
    let (mut r3, _) = issue(IatOptions::new());
    for _ in 0..1000 {
        r3.try_use(NOW + Duration::days(3650)).unwrap();
    }
}

#[test]
fn every_state_error_is_a_bearer_challenge_naming_the_state() {
    let states = [
        IatError::Missing,
        IatError::Malformed,
        IatError::Unknown,
        IatError::Expired,
        IatError::Exhausted,
        IatError::Revoked,
    ];
    let mut descriptions = Vec::new();
    for e in states {
        let r = RegistrationError::Token(e).to_oauth_error().to_response();
        assert_eq!(r.status(), 401, "{e:?}");
        let challenge = r.headers()[http::header::WWW_AUTHENTICATE].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer error=\"invalid_token\""), "{challenge}");
        let body: Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["error"], "invalid_token");
        let d = body["error_description"].as_str().unwrap().to_owned();
        assert_eq!(d, e.description());
        assert!(challenge.contains(&d), "{challenge}");
        descriptions.push(d);
    }
    for (word, e) in [
        ("required", 0),
        ("Bearer", 1),
        ("not valid", 2),
        ("expired", 3),
        ("used up", 4),
        ("revoked", 5),
    ] {
        assert!(descriptions[e].contains(word), "{}", descriptions[e]);
    }
    let mut unique = descriptions.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), states.len(), "each state says what is wrong");
}

#[test]
fn bearer_parsing() {
    for ok in [
        "Bearer iatk_abc",
        "bearer iatk_abc",
        "BEARER x",
        "Bearer a+/b==",
        "Bearer a.b~c-d_e",
    ] {
        let token = parse_bearer(ok).unwrap();
        assert_eq!(token.expose_secret(), ok.split_once(' ').unwrap().1);
    }
    for bad in [
        "",
        "Bearer",
        "Bearer ",
        "Bearer iatk abc",
        "Basic iatk_abc",
        "Bearerx iatk_abc",
        "Bearer\tiatk_abc",
        "Bearer ===",
        "Bearer a=b",
        "Bearer iatk_é",
    ] {
        assert_eq!(parse_bearer(bad).unwrap_err(), IatError::Malformed, "{bad:?}");
    }
    assert!(parse_bearer(&format!("Bearer {}", "a".repeat(5000))).is_err());
    // RFC 6750 section 2.1 is `"Bearer" 1*SP b64token`, and spaces
    // around a field value are not part of it: the crate's one parser
    // takes both, as the resource server always did.
    for spaced in ["Bearer  iatk_abc", "Bearer iatk_abc "] {
        assert_eq!(parse_bearer(spaced).unwrap().expose_secret(), "iatk_abc");
    }
}

#[test]
fn pins_apply_or_refuse() {
    let seed = br#"{"redirect_uris":["https://a.example.com/cb"],"client_name":"A"}"#;
    let pin_none = PinnedMetadata::default();
    let v = validate_request(seed, Some(&pin_none), RedirectUriPolicy::strict()).unwrap();
    assert_eq!(
        v.token_endpoint_auth_method,
        TokenEndpointAuthMethod::None,
        "an omitted method takes the pinned value, not client_secret_basic"
    );
    let unpinned = validate_request(seed, None, RedirectUriPolicy::strict()).unwrap();
    assert_eq!(
        unpinned.token_endpoint_auth_method,
        TokenEndpointAuthMethod::ClientSecretBasic
    );
    let unpinned = validate_request(seed, Some(&PinnedMetadata::unpinned()), RedirectUriPolicy::strict()).unwrap();
    assert_eq!(
        unpinned.token_endpoint_auth_method,
        TokenEndpointAuthMethod::ClientSecretBasic
    );

    let basic = br#"{"redirect_uris":["https://a.example.com/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#;
    let err = validate_request(basic, Some(&pin_none), RedirectUriPolicy::strict()).unwrap_err();
    assert_eq!(err, RegistrationError::PinnedAuthMethod { pinned: "none" });
    let oauth = err.to_oauth_error();
    assert_eq!(oauth.code(), ErrorCode::InvalidClientMetadata);
    assert_eq!(oauth.status(), 400);
    assert!(oauth.description().unwrap().contains("'none'"), "{oauth}");

    let pin_post = PinnedMetadata::auth_method(TokenEndpointAuthMethod::ClientSecretPost);
    let v = validate_request(seed, Some(&pin_post), RedirectUriPolicy::strict()).unwrap();
    assert_eq!(v.token_endpoint_auth_method, TokenEndpointAuthMethod::ClientSecretPost);
    assert!(validate_request(basic, None, RedirectUriPolicy::strict()).is_ok());
    // unknown methods are refused by the pin first: still invalid_client_metadata
    let magic = br#"{"redirect_uris":["https://a.example.com/cb"],"token_endpoint_auth_method":"magic"}"#;
    assert_eq!(
        validate_request(magic, Some(&pin_none), RedirectUriPolicy::strict())
            .unwrap_err()
            .code(),
        ErrorCode::InvalidClientMetadata
    );
}

#[test]
fn request_refusals_have_rfc7591_codes_and_descriptions() {
    let table: [(&[u8], ErrorCode); 7] = [
        (b"not json", ErrorCode::InvalidClientMetadata),
        (br#"{"client_name":"A"}"#, ErrorCode::InvalidRedirectUri),
        (br#"{"redirect_uris":["http://evil.example.com/cb"]}"#, ErrorCode::InvalidRedirectUri),
        (
            // private_key_jwt needs keys (`jwks` or `jwks_uri`).
            br#"{"redirect_uris":["https://a.example.com/cb"],"token_endpoint_auth_method":"private_key_jwt"}"#,
            ErrorCode::InvalidClientMetadata,
        ),
        (
            br#"{"redirect_uris":["https://a.example.com/cb"],"jwks_uri":"https://a.example.com/j","jwks":{"keys":[]}}"#,
            ErrorCode::InvalidClientMetadata,
        ),
        (
            br#"{"redirect_uris":["https://a.example.com/cb"],"grant_types":["implicit"]}"#,
            ErrorCode::InvalidClientMetadata,
        ),
        (
            br#"{"redirect_uris":["https://a.example.com/cb"],"software_statement":"e.y.J"}"#,
            ErrorCode::InvalidSoftwareStatement,
        ),
    ];
    let big = format!(
        r#"{{"redirect_uris":["https://a.example.com/cb"],"x":"{}"}}"#,
        "a".repeat(MAX_REGISTRATION_BODY)
    );
    assert_eq!(
        validate_request(big.as_bytes(), None, RedirectUriPolicy::strict()).unwrap_err(),
        RegistrationError::Metadata(ClientMetadataError::TooLong { field: "request body" })
    );
    for (body, code) in table {
        let e = validate_request(body, None, RedirectUriPolicy::strict()).unwrap_err();
        let o = e.to_oauth_error();
        assert_eq!(o.code(), code, "{}", String::from_utf8_lossy(body));
        assert_eq!(o.status(), 400);
        assert!(o.description().is_some_and(|d| !d.is_empty()));
    }
}

#[test]
fn public_client_response_has_no_secret() {
    let body = br#"{
        "redirect_uris":               ["https://my-mcp-server.example.com/oauth/callback"],
        "client_name":                 "My MCP Server",
        "token_endpoint_auth_method":  "none",
        "application_type":            "web"
    }"#;
    let v = validate_request(body, Some(&PinnedMetadata::default()), RedirectUriPolicy::strict()).unwrap();
    let reg = Registration::mint(v, &[0xab; 12], &[9; 32], &RegistrationPolicy::default(), NOW);
    assert!(reg.client.secret_hash.is_none());
    assert!(reg.response.client_secret.is_none());
    let j: Value = serde_json::from_slice(&reg.response.to_json()).unwrap();
    assert_eq!(
        j,
        json!({
            "client_id": "client_abababababababababababab",
            "client_id_issued_at": NOW.unix_timestamp(),
            "redirect_uris": ["https://my-mcp-server.example.com/oauth/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "client_name": "My MCP Server",
            "application_type": "web"
        })
    );
    let r = reg.response.to_response();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()[http::header::CACHE_CONTROL], "no-store");
}

#[test]
fn confidential_client_gets_a_hashed_secret_once() {
    let body = br#"{"redirect_uris":["https://a.example.com/cb"],"token_endpoint_auth_method":"client_secret_post","scope":"mcp:read","contacts":["ops@example.com"],"client_uri":"https://a.example.com"}"#;
    let v = validate_request(body, None, RedirectUriPolicy::strict()).unwrap();
    let policy = RegistrationPolicy {
        client_secret_ttl: Some(Duration::days(90)),
        ..Default::default()
    };
    let reg = Registration::mint(v.clone(), &[1; 12], &[2; 32], &policy, NOW);
    let secret = reg.response.client_secret.clone().unwrap();
    assert_eq!(secret.expose_secret().len(), 43);
    assert!(reg.client.secret_hash.unwrap().matches(secret.expose_secret()));
    assert_eq!(reg.client.secret_expires_at, Some(NOW + Duration::days(90)));
    let j: Value = serde_json::from_slice(&reg.response.to_json()).unwrap();
    assert_eq!(j["client_secret"], secret.expose_secret());
    assert_eq!(
        j["client_secret_expires_at"],
        (NOW + Duration::days(90)).unix_timestamp()
    );
    assert_eq!(j["scope"], "mcp:read");
    assert_eq!(j["contacts"], json!(["ops@example.com"]));
    assert_eq!(j["client_uri"], "https://a.example.com");
    // Debug of everything but the serialized body is redacted
    let debug = format!("{reg:?}");
    assert!(!debug.contains(secret.expose_secret()), "{debug}");

    // never-expiring secrets say 0
    let reg = Registration::mint(v, &[1; 12], &[2; 32], &RegistrationPolicy::default(), NOW);
    assert_eq!(reg.client.secret_expires_at, None);
    let j: Value = serde_json::from_slice(&reg.response.to_json()).unwrap();
    assert_eq!(j["client_secret_expires_at"], 0);
}

proptest! {
    #[test]
    fn bearer_parser_never_panics(s in ".{0,300}") {
        if let Ok(token) = parse_bearer(&s) {
            prop_assert!(s.ends_with(token.expose_secret()));
        }
    }

    #[test]
    fn registration_validation_never_panics(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = validate_request(&body, Some(&PinnedMetadata::default()), RedirectUriPolicy::strict());
    }
}
