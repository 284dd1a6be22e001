//! Unit tests of the client module.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::client_id_url::{ClientIdUrlError, ClientIdUrlPolicy};
use crate::error::ErrorCode;
use crate::redirect_uri::{RedirectUriError, RedirectUriPolicy};

#[test]
fn related_hosts() {
    for (host, reference, related) in [
        ("app.example.com", "app.example.com", true),
        ("APP.example.com", "app.example.com", true),
        ("docs.app.example.com", "app.example.com", true),
        ("example.com", "app.example.com", true),
        ("com", "app.example.com", false),
        ("evil.example", "app.example.com", false),
        ("xapp.example.com", "app.example.com", false),
        ("app.example.com.evil.example", "app.example.com", false),
        ("127.0.0.1", "127.0.0.1", true),
        ("0.0.1", "127.0.0.1", false),
        ("1.127.0.0.1", "127.0.0.1", false),
    ] {
        assert_eq!(related_host(host, reference), related, "{host} vs {reference}");
    }
}

#[test]
fn informational_uris_on_unrelated_hosts_are_dropped() {
    let m: ClientMetadata = serde_json::from_value(json!({
        "redirect_uris": ["https://app.example.com/cb", "http://127.0.0.1:9/cb"],
        "client_name": "App",
        "client_uri": "https://app.example.com",
        "logo_uri": "https://cdn.app.example.com/l.png",
        "tos_uri": "https://evil.example/tos",
        "policy_uri": "https://127.0.0.1/p"
    }))
    .unwrap();
    let v = m.validate(MetadataProfile::Dcr, RedirectUriPolicy::strict()).unwrap();
    assert_eq!(v.client_uri.as_deref(), Some("https://app.example.com"));
    assert_eq!(v.logo_uri.as_deref(), Some("https://cdn.app.example.com/l.png"));
    assert_eq!(v.tos_uri, None, "unrelated host");
    assert_eq!(v.policy_uri, None, "loopback redirect hosts are no reference");
    // CIMD: the client_id host is a reference too (applied by the
    // document check); the profile's validate leaves them alone
    let v = m.validate(CIMD_PROFILE, RedirectUriPolicy::strict()).unwrap();
    let v = v.with_related_informational_uris(Some("evil.example"));
    assert_eq!(v.tos_uri.as_deref(), Some("https://evil.example/tos"));
    // loopback-only native client: nothing to relate to
    let native: ClientMetadata = serde_json::from_value(json!({
        "redirect_uris": ["http://127.0.0.1:9/cb"],
        "client_uri": "https://anything.example"
    }))
    .unwrap();
    let v = native
        .validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
        .unwrap();
    assert_eq!(v.client_uri, None);
    // out-of-range ports never pass the WHATWG check
    for bad in ["https://app.example.com:99999/", "https://app.example.com:0/"] {
        let m: ClientMetadata =
            serde_json::from_value(json!({"redirect_uris": ["https://app.example.com/cb"], "client_uri": bad}))
                .unwrap();
        assert_eq!(
            m.validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
                .unwrap_err(),
            ClientMetadataError::InvalidUri { field: "client_uri" },
            "{bad}"
        );
    }
}

const CIMD_PROFILE: MetadataProfile = MetadataProfile::Cimd {
    allow_private_key_jwt: false,
};

fn meta(v: Value) -> ClientMetadata {
    serde_json::from_value(v).unwrap()
}

const CIMD: MetadataProfile = MetadataProfile::Cimd {
    allow_private_key_jwt: false,
};

#[test]
fn registered_ids() {
    let id = RegisteredClientId::from_random(&[0xab; 12]);
    assert_eq!(id.as_str(), "client_abababababababababababab");
    assert!(RegisteredClientId::new(id.as_str()).is_ok());
    for bad in [
        "client_",
        "client_ABABABABABABABABABABABAB",
        "client_abababababababababababa",
        "client_ababababababababababababab",
        "https://x",
    ] {
        assert!(RegisteredClientId::new(bad).is_err(), "{bad}");
    }
}

#[test]
fn client_id_forms() {
    let p = ClientIdUrlPolicy::default();
    assert!(matches!(
        ClientId::parse_with("client_0123456789abcdef01234567", p),
        Ok(ClientId::Registered(_))
    ));
    assert!(matches!(
        ClientId::parse_with("https://claude.ai/oauth/mcp-oauth-client-metadata", p),
        Ok(ClientId::Metadata(_))
    ));
    assert_eq!(ClientId::parse_with("client_xyz", p), Err(ClientIdError::Malformed));
    assert_eq!(ClientId::parse_with("my-app", p), Err(ClientIdError::Malformed));
    assert_eq!(ClientId::parse_with("", p), Err(ClientIdError::Malformed));
    assert_eq!(
        ClientId::parse_with("HTTPS://example.com/c", p),
        Err(ClientIdError::Url(ClientIdUrlError::NotHttps))
    );
    assert_eq!(
        ClientId::parse_with("http://example.com/c", p),
        Err(ClientIdError::Malformed)
    );
    // AS-generated ids can never collide with CIMD URLs.
    assert!(
        !RegisteredClientId::from_random(&[0; 12])
            .as_str()
            .starts_with("https://")
    );
}

#[test]
fn seed_dcr_request_is_a_public_web_client() {
    let m = meta(json!({
        "redirect_uris": ["https://my-mcp-server.example.com/oauth/callback"],
        "client_name": "My MCP Server",
        "token_endpoint_auth_method": "none",
        "application_type": "web"
    }));
    let v = m.validate(MetadataProfile::Dcr, RedirectUriPolicy::strict()).unwrap();
    assert_eq!(v.token_endpoint_auth_method, TokenEndpointAuthMethod::None);
    assert_eq!(v.grant_types, vec![GrantType::AuthorizationCode]);
    assert_eq!(v.application_type, ApplicationType::Web);
}

#[test]
fn defaults_differ_by_profile() {
    let m = meta(json!({"redirect_uris": ["https://a.example.com/cb"], "client_name": "A"}));
    assert_eq!(
        m.validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
            .unwrap()
            .token_endpoint_auth_method,
        TokenEndpointAuthMethod::ClientSecretBasic
    );
    assert_eq!(
        m.validate(CIMD, RedirectUriPolicy::strict())
            .unwrap()
            .token_endpoint_auth_method,
        TokenEndpointAuthMethod::None
    );
}

#[test]
fn unknown_members_are_filtered_not_fatal() {
    let m = meta(json!({
        "redirect_uris": ["http://127.0.0.1:33418/", "https://vscode.dev/redirect"],
        "client_name": "Visual Studio Code",
        "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
        "response_types": ["code", "id_token"],
        "application_type": "native",
        "token_endpoint_auth_methods_supported": ["none"],
        "something_new": {"x": 1}
    }));
    let v = m.validate(CIMD, RedirectUriPolicy::strict()).unwrap();
    assert_eq!(
        v.grant_types,
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
    );
    assert_eq!(v.response_types, vec!["code"]);
    assert_eq!(v.application_type, ApplicationType::Native);
    assert!(m.extra.contains_key("something_new"));
}

#[test]
fn refusals() {
    use ClientMetadataError as E;
    let base = json!({"redirect_uris": ["https://a.example.com/cb"], "client_name": "A", "token_endpoint_auth_method": "none"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        meta(b)
    };
    let dcr = MetadataProfile::Dcr;
    let table: Vec<(ClientMetadata, MetadataProfile, E)> = vec![
        (with("redirect_uris", json!([])), dcr, E::MissingRedirectUris),
        (meta(json!({"client_name": "A"})), dcr, E::MissingRedirectUris),
        (
            with("redirect_uris", json!(["http://evil.example.com/cb"])),
            dcr,
            E::RedirectUri {
                index: 0,
                error: RedirectUriError::InsecureHttp,
            },
        ),
        (
            with(
                "redirect_uris",
                json!(["https://a.example.com/cb", "javascript:alert(1)"]),
            ),
            dcr,
            E::RedirectUri {
                index: 1,
                error: RedirectUriError::DangerousScheme,
            },
        ),
        (
            with("token_endpoint_auth_method", json!("client_secret_basic")),
            CIMD,
            E::SharedSecretAuthMethod,
        ),
        (
            with("token_endpoint_auth_method", json!("client_secret_post")),
            CIMD,
            E::SharedSecretAuthMethod,
        ),
        (
            with("token_endpoint_auth_method", json!("client_secret_jwt")),
            CIMD,
            E::SharedSecretAuthMethod,
        ),
        (
            with("token_endpoint_auth_method", json!("magic")),
            dcr,
            E::UnsupportedAuthMethod,
        ),
        (
            with("token_endpoint_auth_method", json!("private_key_jwt")),
            dcr,
            E::PrivateKeyJwt,
        ),
        (
            with("token_endpoint_auth_method", json!("private_key_jwt")),
            CIMD,
            E::PrivateKeyJwt,
        ),
        (
            with("token_endpoint_auth_method", json!("private_key_jwt")),
            MetadataProfile::Cimd {
                allow_private_key_jwt: true,
            },
            E::PrivateKeyJwt,
        ),
        (
            with("client_secret", json!("s3cret")),
            CIMD,
            E::ForbiddenField { field: "client_secret" },
        ),
        (
            with("client_secret_expires_at", json!(0)),
            CIMD,
            E::ForbiddenField {
                field: "client_secret_expires_at",
            },
        ),
        (
            with("jwks", json!({"keys": [{"kty": "EC", "d": "private"}]})),
            dcr,
            E::InvalidJwks,
        ),
        (
            with("jwks", json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})),
            CIMD,
            E::InvalidJwks,
        ),
        (with("jwks", json!([1])), CIMD, E::InvalidJwks),
        (
            {
                let mut b = base.clone();
                b["jwks"] = json!({"keys": []});
                b["jwks_uri"] = json!("https://a.example.com/jwks");
                meta(b)
            },
            dcr,
            E::JwksAndJwksUri,
        ),
        (
            with("grant_types", json!(["client_credentials"])),
            dcr,
            E::NoUsableGrantType,
        ),
        (with("grant_types", json!(["refresh_token"])), dcr, E::NoUsableGrantType),
        (with("response_types", json!(["token"])), dcr, E::NoUsableResponseType),
        (
            with("client_uri", json!("javascript:alert(1)")),
            dcr,
            E::InvalidUri { field: "client_uri" },
        ),
        (
            with("logo_uri", json!("data:image/png;base64,AAAA")),
            CIMD,
            E::InvalidUri { field: "logo_uri" },
        ),
        (
            with("tos_uri", json!("http://a.example.com/tos")),
            dcr,
            E::InvalidUri { field: "tos_uri" },
        ),
        (
            with("policy_uri", json!("file:///etc/passwd")),
            dcr,
            E::InvalidUri { field: "policy_uri" },
        ),
        (
            with("jwks_uri", json!("https://u:p@a.example.com/jwks")),
            dcr,
            E::InvalidUri { field: "jwks_uri" },
        ),
        (
            with(
                "client_uri",
                json!("https://a.example.com/\"><script>alert(1)</script>"),
            ),
            dcr,
            E::InvalidUri { field: "client_uri" },
        ),
        (
            with("logo_uri", json!("https://a.example.com/logo.png?x=<b>")),
            CIMD,
            E::InvalidUri { field: "logo_uri" },
        ),
        (
            with("tos_uri", json!("https://a.example.com@evil.example/tos")),
            dcr,
            E::InvalidUri { field: "tos_uri" },
        ),
        (
            with("policy_uri", json!("https://a%2eexample.com/p")),
            dcr,
            E::InvalidUri { field: "policy_uri" },
        ),
        (
            with("client_name", json!("Claude\u{202e}lacigol")),
            CIMD,
            E::HiddenCharacters { field: "client_name" },
        ),
        (
            with("client_name", json!("Cla\u{200b}ude")),
            dcr,
            E::HiddenCharacters { field: "client_name" },
        ),
        (
            with("client_name", json!("Claude\nOfficial")),
            dcr,
            E::HiddenCharacters { field: "client_name" },
        ),
        (
            with("software_id", json!("\u{2066}x\u{2069}")),
            dcr,
            E::HiddenCharacters { field: "software_id" },
        ),
        (
            with("contacts", json!(["ops@example.com\u{feff}"])),
            dcr,
            E::HiddenCharacters { field: "contacts" },
        ),
        (with("client_name", json!(null)), CIMD, E::MissingClientName),
        (with("client_name", json!("  ")), CIMD, E::MissingClientName),
        (
            with("client_name", json!("x".repeat(2000))),
            dcr,
            E::TooLong { field: "client_name" },
        ),
        (with("scope", json!("a  b")), dcr, E::InvalidScope),
        (
            with("application_type", json!("desktop")),
            dcr,
            E::InvalidApplicationType,
        ),
        (with("software_statement", json!("eyJ...")), dcr, E::SoftwareStatement),
        (
            with("contacts", json!(vec!["a@b"; 11])),
            dcr,
            E::TooLong { field: "contacts" },
        ),
        (
            with(
                "jwks",
                json!({"keys": vec![json!({"kty": "RSA", "n": "x".repeat(600), "e": "AQAB"}); 20]}),
            ),
            dcr,
            E::TooLong { field: "jwks" },
        ),
    ];
    for (m, profile, err) in table {
        assert_eq!(m.validate(profile, RedirectUriPolicy::strict()).unwrap_err(), err);
    }
}

#[test]
fn error_codes() {
    assert_eq!(
        ClientMetadataError::MissingRedirectUris.code(),
        ErrorCode::InvalidRedirectUri
    );
    assert_eq!(
        ClientMetadataError::RedirectUri {
            index: 0,
            error: RedirectUriError::Fragment
        }
        .code(),
        ErrorCode::InvalidRedirectUri
    );
    assert_eq!(
        ClientMetadataError::SoftwareStatement.code(),
        ErrorCode::InvalidSoftwareStatement
    );
    assert_eq!(
        ClientMetadataError::InvalidJwks.code(),
        ErrorCode::InvalidClientMetadata
    );
}

#[test]
fn private_key_jwt_with_keys_when_allowed() {
    let m = meta(json!({
        "redirect_uris": ["https://a.example.com/cb"], "client_name": "A",
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]}
    }));
    let v = m
        .validate(
            MetadataProfile::Cimd {
                allow_private_key_jwt: true,
            },
            RedirectUriPolicy::strict(),
        )
        .unwrap();
    assert_eq!(v.token_endpoint_auth_method, TokenEndpointAuthMethod::PrivateKeyJwt);
}

/// ChatGPT's documents declare `private_key_jwt` with a `jwks_uri` and
/// offer `["none", "private_key_jwt"]`: until assertions are verified,
/// negotiation makes it a public client.
#[test]
fn auth_method_negotiation() {
    let chatgpt = meta(json!({
        "client_id": "https://chatgpt.com/oauth/mcp-client.json",
        "client_name": "ChatGPT",
        "redirect_uris": ["https://chatgpt.com/connector_platform_oauth_redirect"],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "jwks_uri": "https://chatgpt.com/oauth/jwks.json"
    }));
    for allow in [false, true] {
        let v = chatgpt
            .validate(
                MetadataProfile::Cimd {
                    allow_private_key_jwt: allow,
                },
                RedirectUriPolicy::strict(),
            )
            .unwrap();
        // Keys are preferred where the project allows confidential
        // CIMD clients; otherwise ChatGPT signs in as a public client.
        let expected = if allow {
            TokenEndpointAuthMethod::PrivateKeyJwt
        } else {
            TokenEndpointAuthMethod::None
        };
        assert_eq!(v.token_endpoint_auth_method, expected, "{allow}");
        assert_eq!(v.jwks_uri.as_deref(), Some("https://chatgpt.com/oauth/jwks.json"));
    }
    // The choice itself: keys first only when verified and allowed.
    use TokenEndpointAuthMethod as M;
    let cimd = MetadataProfile::Cimd {
        allow_private_key_jwt: true,
    };
    let both = [M::None, M::PrivateKeyJwt];
    assert_eq!(
        negotiate_auth_method(&both, cimd, true),
        Some(if VERIFIES_PRIVATE_KEY_JWT {
            M::PrivateKeyJwt
        } else {
            M::None
        })
    );
    assert_eq!(negotiate_auth_method(&both, cimd, false), Some(M::None));
    assert_eq!(negotiate_auth_method(&[M::ClientSecretBasic], cimd, false), None);
    assert_eq!(
        negotiate_auth_method(&[M::ClientSecretPost, M::None], MetadataProfile::Dcr, false),
        Some(M::None)
    );
    assert_eq!(
        negotiate_auth_method(
            &[M::ClientSecretPost, M::ClientSecretBasic],
            MetadataProfile::Dcr,
            false
        ),
        Some(M::ClientSecretBasic)
    );
    assert_eq!(
        negotiate_auth_method(&[M::PrivateKeyJwt], MetadataProfile::Dcr, true),
        None
    );
    // DCR: an offer decides over the declared method; unknown and
    // non-string members are ignored; nothing usable falls back to the
    // declared method's rules.
    let dcr = |v: Value| meta(v).validate(MetadataProfile::Dcr, RedirectUriPolicy::strict());
    let base = |extra: Value| {
        let mut v = json!({"redirect_uris": ["https://a.example.com/cb"], "client_name": "A"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let v = dcr(base(json!({
        "token_endpoint_auth_method": "client_secret_basic",
        "token_endpoint_auth_methods_supported": [7, "tls_client_auth", "none", "client_secret_basic"]
    })))
    .unwrap();
    assert_eq!(v.token_endpoint_auth_method, M::None);
    let v = dcr(base(json!({
        "token_endpoint_auth_method": "client_secret_post",
        "token_endpoint_auth_methods_supported": ["tls_client_auth"]
    })))
    .unwrap();
    assert_eq!(v.token_endpoint_auth_method, M::ClientSecretPost);
    let v = dcr(base(json!({"token_endpoint_auth_methods_supported": "none"}))).unwrap();
    assert_eq!(
        v.token_endpoint_auth_method,
        M::ClientSecretBasic,
        "not an array: ignored"
    );
    // CIMD: a document offering only shared secrets is still refused.
    let err = meta(json!({
        "client_name": "X",
        "redirect_uris": ["https://a.example.com/cb"],
        "token_endpoint_auth_method": "client_secret_basic",
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]
    }))
    .validate(CIMD, RedirectUriPolicy::strict())
    .unwrap_err();
    assert_eq!(err, ClientMetadataError::SharedSecretAuthMethod);
}

#[test]
fn wrong_json_types_are_errors_not_panics() {
    assert!(matches!(
        ClientMetadata::from_json(br#"{"redirect_uris": "https://a/cb"}"#),
        Err(ClientMetadataError::Json(_))
    ));
    assert!(matches!(
        ClientMetadata::from_json(b"[]"),
        Err(ClientMetadataError::Json(_))
    ));
    assert!(matches!(
        ClientMetadata::from_json(b"\xff"),
        Err(ClientMetadataError::Json(_))
    ));
}

#[test]
fn redirect_matching_and_loopback_flag() {
    let m = meta(json!({"redirect_uris": ["http://127.0.0.1:33418/", "http://localhost/cb"], "client_name": "A"}));
    let v = m.validate(CIMD, RedirectUriPolicy::strict()).unwrap();
    assert!(v.all_redirects_loopback());
    assert_eq!(
        v.match_redirect_uri(Some("http://127.0.0.1:5555/")).unwrap().as_str(),
        "http://127.0.0.1:33418/"
    );
    assert!(
        v.match_redirect_uri(None).is_none(),
        "two registered: redirect_uri required"
    );
    let one = meta(json!({"redirect_uris": ["https://a.example.com/cb"], "client_name": "A"}))
        .validate(CIMD, RedirectUriPolicy::strict())
        .unwrap();
    assert_eq!(
        one.match_redirect_uri(None).unwrap().as_str(),
        "https://a.example.com/cb"
    );
    assert!(one.match_redirect_uri(Some("https://a.example.com/cb/")).is_none());
    assert!(!one.all_redirects_loopback());
}

proptest! {
    #[test]
    fn client_id_parser_never_panics(s in ".{0,200}") {
        if let Ok(id) = ClientId::parse_with(&s, ClientIdUrlPolicy::default()) {
            prop_assert_eq!(id.as_str(), s.as_str());
        }
    }

    #[test]
    fn metadata_validation_never_panics(uris in proptest::collection::vec(".{0,60}", 0..4), method in proptest::option::of(".{0,20}"), name in proptest::option::of(".{0,20}")) {
        let m = ClientMetadata { redirect_uris: Some(uris), token_endpoint_auth_method: method, client_name: name, ..Default::default() };
        let _ = m.validate(MetadataProfile::Dcr, RedirectUriPolicy::strict());
        let _ = m.validate(CIMD, RedirectUriPolicy::with_private_use_schemes());
    }
}
