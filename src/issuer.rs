//! The issuer identifier ([RFC 8414 section 2]) and well-known URL
//! construction ([RFC 8414 section 3.1], [RFC 9728 section 3.1]).
//!
//! Below both [`crate::project`] (a project may pin its issuer) and
//! [`crate::discovery`] (the metadata names it), so neither imports the
//! other for it.
//!
//! [RFC 8414 section 2]: https://www.rfc-editor.org/rfc/rfc8414#section-2
//! [RFC 8414 section 3.1]: https://www.rfc-editor.org/rfc/rfc8414#section-3.1
//! [RFC 9728 section 3.1]: https://www.rfc-editor.org/rfc/rfc9728#section-3.1

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::weburl::{self, WebUrlError};

/// Why an issuer was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerError {
    /// Not an absolute `https` URL with a host.
    #[error("issuer must be an https URL with a host")]
    NotHttps,
    /// A query or fragment is present ([RFC 8414 section 2]).
    ///
    /// [RFC 8414 section 2]: https://www.rfc-editor.org/rfc/rfc8414#section-2
    #[error("issuer must not have a query or fragment")]
    QueryOrFragment,
    /// Credentials in the authority.
    #[error("issuer must not contain userinfo")]
    Userinfo,
}

/// The issuer identifier of an authorization server: an `https` URL with
/// no query or fragment ([RFC 8414 section 2]), kept as the exact string
/// ([RFC 9207] `iss` is compared by simple string comparison).
///
/// [RFC 8414 section 2]: https://www.rfc-editor.org/rfc/rfc8414#section-2
/// [RFC 9207]: https://www.rfc-editor.org/rfc/rfc9207
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Issuer(String);

impl Issuer {
    /// Validates an `https` issuer.
    ///
    /// # Errors
    /// An [`IssuerError`].
    pub fn new(issuer: impl Into<String>) -> Result<Self, IssuerError> {
        Self::parse(issuer.into(), false)
    }

    /// Like [`Issuer::new`], but also accepts `http` on `127.0.0.1`,
    /// `[::1]` or `localhost`, for local development only. Clients are
    /// right to refuse such an issuer in production.
    ///
    /// # Errors
    /// An [`IssuerError`].
    pub fn new_allowing_loopback_http_for_development(issuer: impl Into<String>) -> Result<Self, IssuerError> {
        Self::parse(issuer.into(), true)
    }

    fn parse(raw: String, loopback_http: bool) -> Result<Self, IssuerError> {
        if raw.contains(['?', '#']) {
            return Err(IssuerError::QueryOrFragment);
        }
        // Judged as a browser (and a client's HTTP library) reads it: the
        // issuer names the host that serves the metadata and the endpoints.
        let checked = weburl::check(&raw, true).map_err(|e| match e {
            WebUrlError::Userinfo => IssuerError::Userinfo,
            _ => IssuerError::NotHttps,
        })?;
        let scheme_ok = match checked.url().scheme() {
            "https" => true,
            "http" => loopback_http && checked.host().is_some_and(|h| weburl::is_loopback_host(&h)),
            _ => false,
        };
        if !scheme_ok {
            return Err(IssuerError::NotHttps);
        }
        Ok(Self(raw))
    }

    /// The issuer string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL of an endpoint at `path` under this issuer (the issuer with
    /// any trailing `/` removed, then `path`).
    pub fn endpoint(&self, path: &str) -> String {
        let base = self.0.strip_suffix('/').unwrap_or(&self.0);
        let mut s = String::with_capacity(base.len() + path.len());
        s.push_str(base);
        s.push_str(path);
        s
    }

    /// The [RFC 8414] metadata URL of this issuer.
    ///
    /// [RFC 8414]: https://www.rfc-editor.org/rfc/rfc8414
    pub fn metadata_url(&self) -> String {
        well_known_url(&self.0, WELL_KNOWN_OAUTH_AUTHORIZATION_SERVER)
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Issuer").field(&self.0).finish()
    }
}

impl fmt::Display for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Deserializing accepts what [`Issuer::new_allowing_loopback_http_for_development`]
/// accepts (`https`, or `http` on a loopback host), so stored settings of a
/// development project read back.
impl TryFrom<String> for Issuer {
    type Error = IssuerError;
    fn try_from(s: String) -> Result<Self, IssuerError> {
        Self::new_allowing_loopback_http_for_development(s)
    }
}

impl From<Issuer> for String {
    fn from(i: Issuer) -> Self {
        i.0
    }
}

/// `oauth-authorization-server` ([RFC 8414 section 3]).
///
/// [RFC 8414 section 3]: https://www.rfc-editor.org/rfc/rfc8414#section-3
pub const WELL_KNOWN_OAUTH_AUTHORIZATION_SERVER: &str = "oauth-authorization-server";
/// `openid-configuration` (OpenID Connect Discovery 1.0 section 4).
pub const WELL_KNOWN_OPENID_CONFIGURATION: &str = "openid-configuration";

/// Inserts `/.well-known/<name>` between the host and the path of `base`
/// ([RFC 8414 section 3.1], [RFC 9728 section 3.1]), removing a terminating
/// `/` from the path first:
/// `https://as.example.com/tenant1/` becomes
/// `https://as.example.com/.well-known/oauth-authorization-server/tenant1`.
///
/// `base` is expected to be an absolute URL without query or fragment (an
/// [`Issuer`] or a resource identifier); anything from `?` or `#` on is
/// dropped.
///
/// [RFC 8414 section 3.1]: https://www.rfc-editor.org/rfc/rfc8414#section-3.1
/// [RFC 9728 section 3.1]: https://www.rfc-editor.org/rfc/rfc9728#section-3.1
pub fn well_known_url(base: &str, name: &str) -> String {
    let base = base.split(['?', '#']).next().unwrap_or_default();
    // The split between origin and path is the parser's, not ours.
    if let Ok(checked) = weburl::check(base, true)
        && let Some((origin, path)) = base.split_at_checked(checked.path_start())
    {
        let path = path.strip_suffix('/').unwrap_or(path);
        return format!("{origin}/.well-known/{name}{path}");
    }
    // Not written as the parser reads it: insert after the parsed origin,
    // in the parser's form (still the host a client would contact).
    match url::Url::parse(base) {
        Ok(url) if url.has_host() => {
            let path = url.path();
            let path = path.strip_suffix('/').unwrap_or(path);
            format!("{}/.well-known/{name}{path}", &url[..url::Position::BeforePath])
        }
        _ => format!("{base}/.well-known/{name}"),
    }
}
