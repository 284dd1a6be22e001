//! The one validation of client metadata, shared by DCR and CIMD.

use serde_json::Value;

use crate::display_text;
use crate::redirect_uri::{RedirectUri, RedirectUriPolicy};
use crate::scope::ScopeSet;
use crate::weburl;

use super::metadata::{
    ApplicationType, ClientMetadata, ClientMetadataError, GrantType, MetadataProfile, TokenEndpointAuthMethod,
    ValidatedMetadata, negotiate_auth_method,
};

const MAX_REDIRECT_URIS: usize = 20;
const MAX_STRING: usize = 1024;
const MAX_CONTACTS: usize = 10;
/// Inline key sets beyond this size are refused (bounded storage for
/// self-asserted metadata).
const MAX_JWKS_BYTES: usize = 8 * 1024;
const JWK_PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];

impl ClientMetadata {
    /// Parses a JSON object.
    ///
    /// # Errors
    /// [`ClientMetadataError::Json`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, ClientMetadataError> {
        serde_json::from_slice(bytes).map_err(|e| ClientMetadataError::Json(e.to_string()))
    }

    /// The known methods of `token_endpoint_auth_methods_supported`.
    pub fn offered_auth_methods(&self) -> Vec<TokenEndpointAuthMethod> {
        let mut out = Vec::new();
        if let Some(Value::Array(list)) = &self.token_endpoint_auth_methods_supported {
            for m in list
                .iter()
                .filter_map(Value::as_str)
                .filter_map(TokenEndpointAuthMethod::parse)
            {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        out
    }

    /// Validates under a profile; see [`MetadataProfile`] for the differences.
    ///
    /// # Errors
    /// The first broken rule.
    pub fn validate(
        &self,
        profile: MetadataProfile,
        redirect_policy: RedirectUriPolicy,
    ) -> Result<ValidatedMetadata, ClientMetadataError> {
        let cimd = matches!(profile, MetadataProfile::Cimd { .. });
        if cimd {
            if self.client_secret.is_some() {
                return Err(ClientMetadataError::ForbiddenField { field: "client_secret" });
            }
            if self.client_secret_expires_at.is_some() {
                return Err(ClientMetadataError::ForbiddenField {
                    field: "client_secret_expires_at",
                });
            }
        }
        if self.software_statement.is_some() {
            return Err(ClientMetadataError::SoftwareStatement);
        }

        // Unknown grant and response types are filtered (real clients list
        // device_code, jwt-bearer, ...); refuse only when nothing usable is
        // left. A metadata document is a public client: client_credentials
        // is filtered out of it too.
        let grant_types: Vec<GrantType> = match &self.grant_types {
            None => vec![GrantType::AuthorizationCode],
            Some(list) => {
                let mut out = Vec::new();
                for g in list.iter().filter_map(|g| GrantType::parse(g)) {
                    let public_only = cimd && g == GrantType::ClientCredentials;
                    if !public_only && !out.contains(&g) {
                        out.push(g);
                    }
                }
                out
            }
        };
        // A machine-to-machine client (client_credentials only) needs no
        // redirect URI.
        let redirects_needed = grant_types.contains(&GrantType::AuthorizationCode);

        let raw_uris = self.redirect_uris.as_deref().unwrap_or_default();
        if raw_uris.is_empty() && redirects_needed {
            return Err(ClientMetadataError::MissingRedirectUris);
        }
        if raw_uris.len() > MAX_REDIRECT_URIS {
            return Err(ClientMetadataError::TooLong { field: "redirect_uris" });
        }
        let mut redirect_uris: Vec<RedirectUri> = Vec::with_capacity(raw_uris.len());
        for (index, raw) in raw_uris.iter().enumerate() {
            let uri = RedirectUri::parse_with(raw.as_str(), redirect_policy)
                .map_err(|error| ClientMetadataError::RedirectUri { index, error })?;
            if !redirect_uris.contains(&uri) {
                redirect_uris.push(uri);
            }
        }

        let has_keys = self.jwks.is_some() || self.jwks_uri.is_some();
        let negotiated = negotiate_auth_method(&self.offered_auth_methods(), profile, has_keys);
        let method = match (negotiated, self.token_endpoint_auth_method.as_deref()) {
            (Some(chosen), _) => chosen,
            (None, None) if cimd => TokenEndpointAuthMethod::None,
            (None, None) => TokenEndpointAuthMethod::ClientSecretBasic,
            (None, Some("client_secret_jwt" | "tls_client_auth" | "self_signed_tls_client_auth")) if cimd => {
                return Err(ClientMetadataError::SharedSecretAuthMethod);
            }
            (None, Some(declared)) => {
                TokenEndpointAuthMethod::parse(declared).ok_or(ClientMetadataError::UnsupportedAuthMethod)?
            }
        };
        if cimd && method.uses_shared_secret() {
            return Err(ClientMetadataError::SharedSecretAuthMethod);
        }
        if self.jwks.is_some() && self.jwks_uri.is_some() {
            return Err(ClientMetadataError::JwksAndJwksUri);
        }
        if let Some(jwks) = &self.jwks {
            check_public_jwks(jwks)?;
            if serde_json::to_vec(jwks).map_or(true, |b| b.len() > MAX_JWKS_BYTES) {
                return Err(ClientMetadataError::TooLong { field: "jwks" });
            }
        }
        if method == TokenEndpointAuthMethod::PrivateKeyJwt {
            // RFC 7523 client authentication: registered clients may use
            // it; metadata documents when the project's policy allows.
            let allowed = match profile {
                MetadataProfile::Dcr => true,
                MetadataProfile::Cimd { allow_private_key_jwt } => allow_private_key_jwt,
            };
            if !allowed || (self.jwks.is_none() && self.jwks_uri.is_none()) {
                return Err(ClientMetadataError::PrivateKeyJwt);
            }
        }

        let machine_client = grant_types.contains(&GrantType::ClientCredentials) && method.uses_shared_secret();
        if !redirects_needed && !machine_client {
            return Err(ClientMetadataError::NoUsableGrantType);
        }
        if let Some(list) = &self.response_types
            && redirects_needed
            && !list.iter().any(|r| r == "code")
        {
            return Err(ClientMetadataError::NoUsableResponseType);
        }

        let application_type = match self.application_type.as_deref() {
            None | Some("web") => ApplicationType::Web,
            Some("native") => ApplicationType::Native,
            Some(_) => return Err(ClientMetadataError::InvalidApplicationType),
        };

        let client_name = bounded(self.client_name.as_deref(), "client_name")?;
        if cimd && client_name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(ClientMetadataError::MissingClientName);
        }
        let scope = match self.scope.as_deref() {
            None => None,
            Some(s) => Some(ScopeSet::parse(s).map_err(|_| ClientMetadataError::InvalidScope)?),
        };
        let contacts = match &self.contacts {
            None => Vec::new(),
            Some(c) if c.len() > MAX_CONTACTS => return Err(ClientMetadataError::TooLong { field: "contacts" }),
            Some(c) => {
                for one in c {
                    bounded(Some(one), "contacts")?;
                }
                c.clone()
            }
        };

        let validated = ValidatedMetadata {
            redirect_uris,
            token_endpoint_auth_method: method,
            grant_types,
            response_types: if redirects_needed {
                vec!["code".to_owned()]
            } else {
                Vec::new()
            },
            client_name,
            client_uri: https_uri(self.client_uri.as_deref(), "client_uri")?,
            logo_uri: https_uri(self.logo_uri.as_deref(), "logo_uri")?,
            scope,
            contacts,
            tos_uri: https_uri(self.tos_uri.as_deref(), "tos_uri")?,
            policy_uri: https_uri(self.policy_uri.as_deref(), "policy_uri")?,
            jwks_uri: https_uri(self.jwks_uri.as_deref(), "jwks_uri")?,
            jwks: self.jwks.clone(),
            software_id: bounded(self.software_id.as_deref(), "software_id")?,
            software_version: bounded(self.software_version.as_deref(), "software_version")?,
            application_type,
        };
        if cimd {
            // The client_id host is a reference too: applied by
            // `cimd::validate_document`, which knows it.
            Ok(validated)
        } else {
            Ok(validated.with_related_informational_uris(None))
        }
    }
}

impl ValidatedMetadata {
    /// Applies the related-host rule to `client_uri`, `logo_uri`, `tos_uri`
    /// and `policy_uri` (SPEC-CHECKLIST section 3: self-asserted metadata).
    ///
    /// The reference hosts are the hosts of the redirect URIs that are not
    /// loopback, plus `client_id_host` (a CIMD document's URL host). A URI
    /// whose host is not [`related_host`] to one of them is dropped: never
    /// stored, echoed in a registration response, or shown on a consent
    /// screen. Dropped rather than refused, because real documents put
    /// these links on sibling domains (ChatGPT's `tos_uri` is on
    /// openai.com, VS Code's `client_uri` on code.visualstudio.com for a
    /// vscode.dev `client_id`) and refusing them would lock those clients
    /// out (SPEC-CHECKLIST section 8, lesson 2). A native client with
    /// loopback redirect URIs only and no `client_id` host (DCR) keeps none.
    #[must_use]
    pub fn with_related_informational_uris(mut self, client_id_host: Option<&str>) -> Self {
        let mut references: Vec<String> = self
            .redirect_uris
            .iter()
            .filter(|r| !r.is_loopback())
            .filter_map(|r| url_host(r.as_str()))
            .collect();
        references.extend(client_id_host.map(|h| h.to_ascii_lowercase()));
        let fields = [
            &mut self.client_uri,
            &mut self.logo_uri,
            &mut self.tos_uri,
            &mut self.policy_uri,
        ];
        for value in fields {
            let related = value
                .as_deref()
                .and_then(url_host)
                .is_some_and(|h| references.iter().any(|r| related_host(&h, r)));
            if !related {
                *value = None;
            }
        }
        self
    }
}

/// The parsed (WHATWG) host of a URL, lowercased.
fn url_host(raw: &str) -> Option<String> {
    url::Url::parse(raw)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
}

/// Whether `host` is related to `reference`: the same host, a subdomain of
/// it (`docs.app.example` for `app.example`), or a parent of it with at
/// least two labels (`example.com` for `app.example.com`, never `com`).
/// IP literals are related only to themselves.
///
/// Without a public-suffix list this cannot tell registrable domains:
/// a parent such as `co.uk` of `app.example.co.uk` is accepted. The URIs
/// this rule applies to are only displayed as links, and the consent
/// screen shows the `client_id` and redirect hosts, which are exact.
pub fn related_host(host: &str, reference: &str) -> bool {
    let host = host.trim_end_matches('.');
    let reference = reference.trim_end_matches('.');
    if host.eq_ignore_ascii_case(reference) {
        return true;
    }
    let is_ip = |h: &str| h.starts_with('[') || h.parse::<std::net::Ipv4Addr>().is_ok();
    if host.is_empty() || reference.is_empty() || is_ip(host) || is_ip(reference) {
        return false;
    }
    let sub_of = |child: &str, parent: &str| {
        child.len() > parent.len() + 1
            && child.get(child.len() - parent.len() - 1..).is_some_and(|tail| {
                tail.starts_with('.') && tail.get(1..).is_some_and(|t| t.eq_ignore_ascii_case(parent))
            })
    };
    sub_of(host, reference) || (host.contains('.') && sub_of(reference, host))
}

/// A string a user may read: bounded, and free of characters that would
/// make it render as something else ([`crate::display_text`]).
fn bounded(value: Option<&str>, field: &'static str) -> Result<Option<String>, ClientMetadataError> {
    match value {
        Some(v) if v.len() > MAX_STRING => Err(ClientMetadataError::TooLong { field }),
        Some(v) if display_text::has_hidden_characters(v) => Err(ClientMetadataError::HiddenCharacters { field }),
        other => Ok(other.map(str::to_owned)),
    }
}

/// An `https` URL, written as a browser reads it (no userinfo, quotes,
/// angle brackets, whitespace or anything else the WHATWG parser would
/// rewrite), with a host.
fn https_uri(value: Option<&str>, field: &'static str) -> Result<Option<String>, ClientMetadataError> {
    let Some(v) = value else { return Ok(None) };
    if v.len() > 2048 || !v.starts_with("https://") || weburl::check(v, true).is_err() {
        return Err(ClientMetadataError::InvalidUri { field });
    }
    Ok(Some(v.to_owned()))
}

/// A JWK Set (`{"keys": [...]}`) whose keys carry no private members.
fn check_public_jwks(jwks: &Value) -> Result<(), ClientMetadataError> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(ClientMetadataError::InvalidJwks)?;
    for key in keys {
        let obj = key.as_object().ok_or(ClientMetadataError::InvalidJwks)?;
        if JWK_PRIVATE_MEMBERS.iter().any(|m| obj.contains_key(*m)) {
            return Err(ClientMetadataError::InvalidJwks);
        }
    }
    Ok(())
}
