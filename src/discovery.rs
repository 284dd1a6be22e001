//! Authorization server metadata ([RFC 8414]), built from a project's
//! settings, and well-known URL construction.
//!
//! Two members are Authio extensions, not in any RFC:
//! `client_id_metadata_document_supported` (from the CIMD draft, section
//! 5) and `mcp_authorization_supported` (vendor-specific: true when the
//! project has the "MCP enabled" flag).
//!
//! [RFC 8414]: https://www.rfc-editor.org/rfc/rfc8414

use serde::{Deserialize, Serialize};

use crate::project::{DcrMode, ProjectSettings};

pub use crate::issuer::{
    Issuer, IssuerError, WELL_KNOWN_OAUTH_AUTHORIZATION_SERVER, WELL_KNOWN_OPENID_CONFIGURATION, well_known_url,
};

/// Endpoint paths under the issuer (the authorize path is per project).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EndpointPaths {
    /// Token endpoint, default `/oauth2/token`.
    pub token: String,
    /// Registration endpoint, default `/oauth2/register`.
    pub registration: String,
    /// Revocation endpoint, default `/oauth2/revoke`.
    pub revocation: String,
    /// Introspection endpoint, default `/oauth2/introspect`.
    pub introspection: String,
    /// The JWK Set ([RFC 7517]), default `/.well-known/jwks.json`, under the
    /// issuer like every other endpoint.
    ///
    /// [RFC 7517]: https://www.rfc-editor.org/rfc/rfc7517
    #[serde(default = "default_jwks_path")]
    pub jwks: String,
    /// The OpenID Connect userinfo endpoint, default `/oauth2/userinfo`.
    #[serde(default = "default_userinfo_path")]
    pub userinfo: String,
    /// The CIMD preview endpoint (not published in the metadata), default
    /// `/oauth2/cimd/resolve`.
    #[serde(default = "default_cimd_resolve_path")]
    pub cimd_resolve: String,
    /// The prefix of the upstream-login endpoints
    /// (`<prefix>/<provider>/authorize`, `<prefix>/<provider>/callback`),
    /// default [`crate::upstream::DEFAULT_PATH_PREFIX`].
    #[serde(default = "default_upstream_prefix")]
    pub upstream: String,
}

fn default_upstream_prefix() -> String {
    crate::upstream::DEFAULT_PATH_PREFIX.to_owned()
}

fn default_jwks_path() -> String {
    "/.well-known/jwks.json".to_owned()
}

fn default_userinfo_path() -> String {
    "/oauth2/userinfo".to_owned()
}

fn default_cimd_resolve_path() -> String {
    "/oauth2/cimd/resolve".to_owned()
}

impl Default for EndpointPaths {
    fn default() -> Self {
        Self {
            token: "/oauth2/token".to_owned(),
            registration: "/oauth2/register".to_owned(),
            revocation: "/oauth2/revoke".to_owned(),
            introspection: "/oauth2/introspect".to_owned(),
            jwks: default_jwks_path(),
            userinfo: default_userinfo_path(),
            cimd_resolve: default_cimd_resolve_path(),
            upstream: default_upstream_prefix(),
        }
    }
}

/// [RFC 8414] authorization server metadata, as published.
///
/// Optional members that are empty are omitted.
///
/// [RFC 8414]: https://www.rfc-editor.org/rfc/rfc8414
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuthorizationServerMetadata {
    /// `issuer`.
    pub issuer: String,
    /// `authorization_endpoint` (the project's configured path).
    pub authorization_endpoint: String,
    /// `token_endpoint`.
    pub token_endpoint: String,
    /// `registration_endpoint`: present only when DCR is not disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    /// `scopes_supported`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// `response_types_supported`: `["code"]`.
    pub response_types_supported: Vec<String>,
    /// `response_modes_supported`: `["query"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_modes_supported: Vec<String>,
    /// `grant_types_supported`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_types_supported: Vec<String>,
    /// `token_endpoint_auth_methods_supported`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// `revocation_endpoint` ([RFC 7009]).
    ///
    /// [RFC 7009]: https://www.rfc-editor.org/rfc/rfc7009
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// `revocation_endpoint_auth_methods_supported`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// `introspection_endpoint` ([RFC 7662]).
    ///
    /// [RFC 7662]: https://www.rfc-editor.org/rfc/rfc7662
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    /// `code_challenge_methods_supported`: `["S256"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub code_challenge_methods_supported: Vec<String>,
    /// `authorization_response_iss_parameter_supported` ([RFC 9207]): true.
    ///
    /// [RFC 9207]: https://www.rfc-editor.org/rfc/rfc9207
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// `client_id_metadata_document_supported` (CIMD draft): true iff CIMD is enabled.
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
    /// `mcp_authorization_supported` (Authio extension): true iff MCP is enabled.
    #[serde(default)]
    pub mcp_authorization_supported: bool,
    /// `jwks_uri`: present when the project signs tokens (JWT access
    /// tokens, or ID tokens because it offers `openid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `userinfo_endpoint` (OpenID Connect Discovery section 3): when the
    /// project offers `openid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    /// `id_token_signing_alg_values_supported`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// `subject_types_supported`: `["public"]` (subjects are the host's
    /// stable user ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_types_supported: Vec<String>,
    /// `claims_supported`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims_supported: Vec<String>,
    /// `token_endpoint_auth_signing_alg_values_supported`: the algorithms
    /// of `private_key_jwt` client assertions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
}

impl AuthorizationServerMetadata {
    /// Builds the metadata of a project.
    pub fn build(issuer: &Issuer, settings: &ProjectSettings, paths: &EndpointPaths) -> Self {
        let registration_enabled = settings.dcr_mode != DcrMode::Disabled;
        let mut auth_methods = vec!["none".to_owned()];
        if registration_enabled {
            // Shared-secret clients can only come from DCR.
            auth_methods.push("client_secret_basic".to_owned());
            auth_methods.push("client_secret_post".to_owned());
        }
        // RFC 7523 assertions: DCR clients with keys, and metadata-document
        // clients when the CIMD policy accepts them.
        let private_key_jwt = registration_enabled || (settings.cimd_enabled && settings.cimd.allow_private_key_jwt);
        if private_key_jwt {
            auth_methods.push("private_key_jwt".to_owned());
        }
        let mut grant_types = vec!["authorization_code".to_owned()];
        if settings.issues_refresh_tokens() {
            grant_types.push("refresh_token".to_owned());
        }
        if registration_enabled && settings.client_credentials_enabled {
            // The MCP client credentials extension: confidential
            // (registered) clients with the client_credentials grant, when
            // the project opted in.
            grant_types.push("client_credentials".to_owned());
        }
        let openid = settings.scopes_supported.contains("openid");
        let signs = openid
            || settings.access_token_format == crate::project::AccessTokenFormat::Jwt
            || settings.upstream.uses_private_key_jwt();
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Self {
            issuer: issuer.as_str().to_owned(),
            authorization_endpoint: issuer.endpoint(&settings.authorize_endpoint_path),
            token_endpoint: issuer.endpoint(&paths.token),
            registration_endpoint: registration_enabled.then(|| issuer.endpoint(&paths.registration)),
            scopes_supported: settings
                .scopes_supported
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            response_types_supported: vec!["code".to_owned()],
            response_modes_supported: vec!["query".to_owned()],
            grant_types_supported: grant_types,
            revocation_endpoint: Some(issuer.endpoint(&paths.revocation)),
            revocation_endpoint_auth_methods_supported: auth_methods.clone(),
            token_endpoint_auth_methods_supported: auth_methods,
            introspection_endpoint: Some(issuer.endpoint(&paths.introspection)),
            code_challenge_methods_supported: vec!["S256".to_owned()],
            authorization_response_iss_parameter_supported: true,
            client_id_metadata_document_supported: settings.cimd_enabled,
            mcp_authorization_supported: settings.mcp_enabled,
            jwks_uri: signs.then(|| issuer.endpoint(&paths.jwks)),
            userinfo_endpoint: openid.then(|| issuer.endpoint(&paths.userinfo)),
            id_token_signing_alg_values_supported: if openid {
                vec![settings.signing.id_token_algorithm.as_str().to_owned()]
            } else {
                Vec::new()
            },
            subject_types_supported: if openid { strings(&["public"]) } else { Vec::new() },
            claims_supported: if openid {
                strings(&[
                    "iss",
                    "sub",
                    "aud",
                    "azp",
                    "exp",
                    "iat",
                    "auth_time",
                    "nonce",
                    "at_hash",
                    "email",
                    "email_verified",
                ])
            } else {
                Vec::new()
            },
            token_endpoint_auth_signing_alg_values_supported: if private_key_jwt {
                crate::jose::SigningAlgorithm::ALL
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// The JSON document.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::ScopeSet;

    fn seed_project() -> ProjectSettings {
        let (s, _) = ProjectSettings {
            scopes_supported: ScopeSet::parse("openid email mcp:read mcp:write").unwrap(),
            ..Default::default()
        }
        .set_mcp_enabled(true);
        s
    }

    #[test]
    fn seed_discovery_document() {
        let issuer = Issuer::new("https://auth-api.authio.com").unwrap();
        let m = AuthorizationServerMetadata::build(&issuer, &seed_project(), &EndpointPaths::default());
        let v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        // The three fields of the seed guide, step 2.
        assert_eq!(
            v["registration_endpoint"],
            "https://auth-api.authio.com/oauth2/register"
        );
        assert_eq!(v["client_id_metadata_document_supported"], true);
        assert_eq!(v["mcp_authorization_supported"], true);
        // And the rest of RFC 8414 plus the MCP requirements.
        assert_eq!(v["issuer"], "https://auth-api.authio.com");
        assert_eq!(
            v["authorization_endpoint"],
            "https://auth-api.authio.com/oauth2/authorize"
        );
        assert_eq!(v["token_endpoint"], "https://auth-api.authio.com/oauth2/token");
        assert_eq!(v["revocation_endpoint"], "https://auth-api.authio.com/oauth2/revoke");
        assert_eq!(
            v["introspection_endpoint"],
            "https://auth-api.authio.com/oauth2/introspect"
        );
        assert_eq!(v["code_challenge_methods_supported"], serde_json::json!(["S256"]));
        assert_eq!(v["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(
            v["grant_types_supported"],
            serde_json::json!(["authorization_code", "refresh_token"])
        );
        // client_credentials only when the project opts in.
        let mut opted_in = seed_project();
        opted_in.client_credentials_enabled = true;
        let m2 = AuthorizationServerMetadata::build(&issuer, &opted_in, &EndpointPaths::default());
        let v2: serde_json::Value = serde_json::from_slice(&m2.to_json()).unwrap();
        assert_eq!(
            v2["grant_types_supported"],
            serde_json::json!(["authorization_code", "refresh_token", "client_credentials"])
        );
        assert_eq!(
            v["token_endpoint_auth_methods_supported"],
            serde_json::json!(["none", "client_secret_basic", "client_secret_post", "private_key_jwt"])
        );
        assert_eq!(
            v["scopes_supported"],
            serde_json::json!(["openid", "email", "mcp:read", "mcp:write"])
        );
        assert_eq!(v["authorization_response_iss_parameter_supported"], true);
    }

    #[test]
    fn disabled_features_are_not_advertised() {
        let issuer = Issuer::new("https://as.example.com").unwrap();
        let s = ProjectSettings {
            refresh_token_ttl: time::Duration::ZERO,
            ..Default::default()
        };
        let m = AuthorizationServerMetadata::build(&issuer, &s, &EndpointPaths::default());
        let v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        assert!(v.get("registration_endpoint").is_none());
        assert!(v.get("scopes_supported").is_none(), "empty arrays are omitted");
        assert_eq!(v["client_id_metadata_document_supported"], false);
        assert_eq!(v["mcp_authorization_supported"], false);
        assert_eq!(v["token_endpoint_auth_methods_supported"], serde_json::json!(["none"]));
        assert_eq!(v["grant_types_supported"], serde_json::json!(["authorization_code"]));
    }

    #[test]
    fn registration_endpoint_follows_dcr_mode() {
        let issuer = Issuer::new("https://as.example.com").unwrap();
        for (mode, present) in [
            (DcrMode::Disabled, false),
            (DcrMode::InitialAccessToken, true),
            (DcrMode::Open, true),
        ] {
            let s = ProjectSettings {
                dcr_mode: mode,
                ..Default::default()
            };
            let m = AuthorizationServerMetadata::build(&issuer, &s, &EndpointPaths::default());
            assert_eq!(m.registration_endpoint.is_some(), present, "{mode:?}");
        }
    }

    #[test]
    fn configured_authorize_path_and_issuer_path() {
        let issuer = Issuer::new("https://auth.example.com/t1/").unwrap();
        let s = ProjectSettings {
            authorize_endpoint_path: "/v1/auth/oauth/google/authorize".into(),
            ..Default::default()
        };
        let m = AuthorizationServerMetadata::build(&issuer, &s, &EndpointPaths::default());
        assert_eq!(m.issuer, "https://auth.example.com/t1/");
        assert_eq!(
            m.authorization_endpoint,
            "https://auth.example.com/t1/v1/auth/oauth/google/authorize"
        );
        assert_eq!(m.token_endpoint, "https://auth.example.com/t1/oauth2/token");
    }

    #[test]
    fn well_known_path_insertion() {
        let table = [
            (
                "https://as.example.com",
                WELL_KNOWN_OAUTH_AUTHORIZATION_SERVER,
                "https://as.example.com/.well-known/oauth-authorization-server",
            ),
            (
                "https://as.example.com/",
                WELL_KNOWN_OAUTH_AUTHORIZATION_SERVER,
                "https://as.example.com/.well-known/oauth-authorization-server",
            ),
            (
                "https://as.example.com/t1",
                WELL_KNOWN_OAUTH_AUTHORIZATION_SERVER,
                "https://as.example.com/.well-known/oauth-authorization-server/t1",
            ),
            (
                "https://as.example.com/t1/",
                WELL_KNOWN_OAUTH_AUTHORIZATION_SERVER,
                "https://as.example.com/.well-known/oauth-authorization-server/t1",
            ),
            (
                "https://as.example.com/a/b",
                WELL_KNOWN_OAUTH_AUTHORIZATION_SERVER,
                "https://as.example.com/.well-known/oauth-authorization-server/a/b",
            ),
            (
                "https://as.example.com:8443/t1",
                WELL_KNOWN_OPENID_CONFIGURATION,
                "https://as.example.com:8443/.well-known/openid-configuration/t1",
            ),
            // Not written as a browser reads it: still inserted after the
            // parsed origin (in the parser's form), never appended.
            (
                "https://mcp.example.com/a{b}",
                WELL_KNOWN_OAUTH_AUTHORIZATION_SERVER,
                "https://mcp.example.com/.well-known/oauth-authorization-server/a%7Bb%7D",
            ),
            (
                "http://127.0.0.1:8080",
                WELL_KNOWN_OPENID_CONFIGURATION,
                "http://127.0.0.1:8080/.well-known/openid-configuration",
            ),
            (
                "https://mcp.example.com/mcp",
                "oauth-protected-resource",
                "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
            ),
        ];
        for (base, name, expected) in table {
            assert_eq!(well_known_url(base, name), expected, "{base}");
        }
        assert_eq!(
            Issuer::new("https://as.example.com/t1").unwrap().metadata_url(),
            "https://as.example.com/.well-known/oauth-authorization-server/t1"
        );
    }

    #[test]
    fn issuer_rules() {
        assert!(Issuer::new("https://as.example.com").is_ok());
        assert_eq!(Issuer::new("http://as.example.com"), Err(IssuerError::NotHttps));
        assert_eq!(Issuer::new("http://127.0.0.1:8080"), Err(IssuerError::NotHttps));
        assert_eq!(
            Issuer::new("https://as.example.com?x=1"),
            Err(IssuerError::QueryOrFragment)
        );
        assert_eq!(
            Issuer::new("https://as.example.com#x"),
            Err(IssuerError::QueryOrFragment)
        );
        assert_eq!(Issuer::new("https://u:p@as.example.com"), Err(IssuerError::Userinfo));
        assert_eq!(Issuer::new("https:as.example.com"), Err(IssuerError::NotHttps));
        assert_eq!(Issuer::new("as.example.com"), Err(IssuerError::NotHttps));
        assert_eq!(Issuer::new("https:///as.example.com"), Err(IssuerError::NotHttps));
        assert!(Issuer::new_allowing_loopback_http_for_development("http://127.0.0.1:8080").is_ok());
        // serde: https, or loopback http (stored development settings), nothing else
        assert!(serde_json::from_str::<Issuer>("\"https://as.example.com/p/x\"").is_ok());
        assert!(serde_json::from_str::<Issuer>("\"http://localhost:8080\"").is_ok());
        assert!(serde_json::from_str::<Issuer>("\"http://as.example.com\"").is_err());
        assert!(serde_json::from_str::<Issuer>("\"https://as.example.com?x\"").is_err());
        assert!(Issuer::new_allowing_loopback_http_for_development("http://localhost:8080").is_ok());
        assert_eq!(
            Issuer::new_allowing_loopback_http_for_development("http://as.example.com"),
            Err(IssuerError::NotHttps)
        );
    }
}
