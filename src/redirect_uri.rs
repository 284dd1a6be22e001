//! Redirect URIs: registration rules and exact matching.
//!
//! A [`RedirectUri`] keeps the string as registered; matching is simple
//! string comparison (OAuth 2.1 section 2.3.1, RFC 9700 section 2.1), with
//! one exception from RFC 8252 section 7.3: for `http` on a loopback host
//! (`127.0.0.1`, `[::1]`, `localhost`) the port may differ, because native
//! apps bind an ephemeral port at run time. Nothing else is relaxed: not the
//! case, not a trailing slash, not the path or query.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::ErrorCode;

/// Hosts on which an `http` redirect URI is allowed and the port is free.
const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "[::1]", "localhost"];

/// Schemes that are never a redirect target.
const DANGEROUS_SCHEMES: [&str; 16] = [
    "javascript",
    "data",
    "file",
    "vbscript",
    "blob",
    "about",
    "filesystem",
    "view-source",
    "ftp",
    "ws",
    "wss",
    "mailto",
    "tel",
    "sms",
    "urn",
    "jar",
];

/// Why a redirect URI was refused; every case is `invalid_redirect_uri`
/// at registration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedirectUriError {
    /// Not an absolute URI.
    #[error("redirect URI must be an absolute URI")]
    NotAbsolute,
    /// A fragment is present.
    #[error("redirect URI must not contain a fragment")]
    Fragment,
    /// `http` on a host that is not a loopback literal or `localhost`.
    #[error("http redirect URIs are only allowed on 127.0.0.1, [::1] or localhost")]
    InsecureHttp,
    /// `javascript:`, `data:`, `file:` and the like.
    #[error("redirect URI scheme is not allowed")]
    DangerousScheme,
    /// A private-use scheme (e.g. `com.example.app:/cb`) when the policy does not allow them.
    #[error("custom-scheme redirect URIs are not allowed")]
    PrivateUseScheme,
    /// Credentials in the authority.
    #[error("redirect URI must not contain userinfo")]
    Userinfo,
    /// Whitespace, control characters or a backslash.
    #[error("redirect URI contains characters that are not allowed")]
    BadCharacter,
    /// Longer than 2048 bytes.
    #[error("redirect URI is too long")]
    TooLong,
}

impl RedirectUriError {
    /// Always [`ErrorCode::InvalidRedirectUri`]; the authorization endpoint
    /// renders these to the user instead (never redirecting).
    pub const fn code(&self) -> ErrorCode {
        ErrorCode::InvalidRedirectUri
    }
}

/// Which redirect URIs a project accepts beyond `https` and loopback `http`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RedirectUriPolicy {
    /// Accept private-use schemes (RFC 8252 section 7.1, e.g.
    /// `cursor://anysphere.cursor-retrieval/oauth/callback`). Off by default.
    #[serde(default)]
    pub allow_private_use_schemes: bool,
}

impl RedirectUriPolicy {
    /// The strict default: `https`, or `http` on loopback.
    pub const fn strict() -> Self {
        Self {
            allow_private_use_schemes: false,
        }
    }

    /// Also accept private-use schemes.
    pub const fn with_private_use_schemes() -> Self {
        Self {
            allow_private_use_schemes: true,
        }
    }
}

/// A registered (or requested) redirect URI, kept as its exact string.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedirectUri(String);

impl RedirectUri {
    /// Parses with the strict policy.
    ///
    /// # Errors
    /// A [`RedirectUriError`] naming the broken rule.
    pub fn parse(raw: impl Into<String>) -> Result<Self, RedirectUriError> {
        Self::parse_with(raw, RedirectUriPolicy::strict())
    }

    /// Parses with a policy.
    ///
    /// # Errors
    /// A [`RedirectUriError`] naming the broken rule.
    pub fn parse_with(raw: impl Into<String>, policy: RedirectUriPolicy) -> Result<Self, RedirectUriError> {
        let raw = raw.into();
        if raw.len() > 2048 {
            return Err(RedirectUriError::TooLong);
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
            return Err(RedirectUriError::BadCharacter);
        }
        if raw.contains('#') {
            return Err(RedirectUriError::Fragment);
        }
        let url = Url::parse(&raw).map_err(|_| RedirectUriError::NotAbsolute)?;
        let scheme = url.scheme();
        // `Url` lowercases the scheme; the raw string must already be exact.
        if raw.get(..scheme.len()) != Some(scheme) {
            return Err(RedirectUriError::NotAbsolute);
        }
        if DANGEROUS_SCHEMES.contains(&scheme) {
            return Err(RedirectUriError::DangerousScheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectUriError::Userinfo);
        }
        match scheme {
            "https" | "http" => {
                let rest = raw.get(scheme.len()..).unwrap_or_default();
                let authority = rest.get(3..).map(|a| split_authority(a).0).unwrap_or_default();
                if !rest.starts_with("://") || authority.is_empty() || url.host_str().is_none_or(str::is_empty) {
                    return Err(RedirectUriError::NotAbsolute);
                }
                if scheme == "http" {
                    let host = split_authority(rest.get(3..).unwrap_or_default()).0;
                    if !LOOPBACK_HOSTS.contains(&host) {
                        return Err(RedirectUriError::InsecureHttp);
                    }
                }
            }
            _ if policy.allow_private_use_schemes => {}
            _ => return Err(RedirectUriError::PrivateUseScheme),
        }
        Ok(Self(raw))
    }

    /// The URI exactly as registered.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host, for display on a consent screen (`None` for private-use
    /// schemes without an authority).
    pub fn host(&self) -> Option<String> {
        Url::parse(&self.0).ok()?.host_str().map(str::to_owned)
    }

    /// Whether this is an `http` URI on a loopback host.
    pub fn is_loopback(&self) -> bool {
        self.loopback_parts().is_some()
    }

    /// Whether a redirect URI sent in a request matches this registered one:
    /// the same string, or, for `http` on a loopback host, the same string
    /// but for the port (RFC 8252 section 7.3).
    pub fn matches(&self, requested: &str) -> bool {
        if self.0 == requested {
            return true;
        }
        let Some((host, _, rest)) = self.loopback_parts() else {
            return false;
        };
        let Some(req) = requested.strip_prefix("http://") else {
            return false;
        };
        let (req_host, req_port, req_rest) = split_authority(req);
        req_host == host
            && req_rest == rest
            && req_port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
            && !req_rest.contains('#')
    }

    fn loopback_parts(&self) -> Option<(&str, Option<&str>, &str)> {
        let rest = self.0.strip_prefix("http://")?;
        let parts = split_authority(rest);
        LOOPBACK_HOSTS.contains(&parts.0).then_some(parts)
    }
}

/// Splits `host[:port]rest` (the part after `scheme://`) into host, port
/// and the rest (path, query).
fn split_authority(s: &str) -> (&str, Option<&str>, &str) {
    let end = s.find(['/', '?']).unwrap_or(s.len());
    let (authority, rest) = s.split_at(end);
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(i) => {
                let (h, p) = authority.split_at(i + 1);
                (h, p.strip_prefix(':'))
            }
            None => (authority, None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    (host, port, rest)
}

impl fmt::Debug for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedirectUri").field(&self.0).finish()
    }
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RedirectUri {
    type Error = RedirectUriError;
    fn try_from(s: String) -> Result<Self, RedirectUriError> {
        // Stored values were validated under some policy when registered;
        // deserializing accepts private-use schemes so that a policy change
        // does not make stored clients unreadable. Matching stays exact.
        Self::parse_with(s, RedirectUriPolicy::with_private_use_schemes())
    }
}

impl From<RedirectUri> for String {
    fn from(r: RedirectUri) -> Self {
        r.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ru(s: &str) -> RedirectUri {
        RedirectUri::parse(s).unwrap()
    }

    #[test]
    fn registration_accepts() {
        for ok in [
            "https://my-mcp-server.example.com/oauth/callback",
            "https://claude.ai/api/mcp/auth_callback",
            "https://example.com/cb?tenant=a",
            "https://example.com",
            "http://127.0.0.1:33418/",
            "http://127.0.0.1/callback",
            "http://[::1]:8080/cb",
            "http://localhost:6274/oauth/callback",
            "http://localhost/cb",
        ] {
            assert_eq!(ru(ok).as_str(), ok);
        }
    }

    #[test]
    fn registration_refuses() {
        use RedirectUriError::*;
        let table = [
            ("http://example.com/cb", InsecureHttp),
            ("http://127.0.0.2/cb", InsecureHttp),
            ("http://localhost.example.com/cb", InsecureHttp),
            ("http://LOCALHOST/cb", InsecureHttp),
            ("http://0.0.0.0:8080/cb", InsecureHttp),
            ("https://example.com/cb#frag", Fragment),
            ("https://example.com/cb#", Fragment),
            ("javascript:alert(1)", DangerousScheme),
            ("JavaScript:alert(1)", NotAbsolute),
            ("data:text/html,hi", DangerousScheme),
            ("file:///etc/passwd", DangerousScheme),
            ("vbscript:msgbox", DangerousScheme),
            ("blob:https://example.com/x", DangerousScheme),
            ("com.example.app:/callback", PrivateUseScheme),
            ("cursor://anysphere.cursor-retrieval/oauth/callback", PrivateUseScheme),
            ("https://user:pw@example.com/cb", Userinfo),
            ("https://example.com/c b", BadCharacter),
            ("https://example.com\\@evil.com/cb", BadCharacter),
            ("/relative/cb", NotAbsolute),
            ("example.com/cb", NotAbsolute),
            ("https:example.com/cb", NotAbsolute),
            ("https:/example.com/cb", NotAbsolute),
            ("https:///cb", NotAbsolute),
            ("http:///127.0.0.1/cb", NotAbsolute),
            ("", NotAbsolute),
        ];
        for (raw, err) in table {
            assert_eq!(RedirectUri::parse(raw).unwrap_err(), err, "{raw:?}");
            assert_eq!(err.code(), ErrorCode::InvalidRedirectUri);
        }
    }

    #[test]
    fn private_use_schemes_by_policy() {
        let p = RedirectUriPolicy::with_private_use_schemes();
        assert!(RedirectUri::parse_with("cursor://anysphere.cursor-retrieval/oauth/callback", p).is_ok());
        assert!(RedirectUri::parse_with("com.example.app:/callback", p).is_ok());
        assert_eq!(
            RedirectUri::parse_with("javascript:alert(1)", p),
            Err(RedirectUriError::DangerousScheme)
        );
        assert_eq!(
            RedirectUri::parse_with("http://evil.com/", p),
            Err(RedirectUriError::InsecureHttp)
        );
    }

    #[test]
    fn matching_is_exact() {
        let r = ru("https://app.example.com/cb");
        assert!(r.matches("https://app.example.com/cb"));
        for no in [
            "https://app.example.com/cb/",
            "https://app.example.com/CB",
            "https://APP.example.com/cb",
            "HTTPS://app.example.com/cb",
            "https://app.example.com:443/cb",
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cb#x",
            "https://app.example.com/cb/../cb",
            "https://app.example.com/c%62",
            "https://app.example.com.evil.com/cb",
            "http://app.example.com/cb",
        ] {
            assert!(!r.matches(no), "{no}");
        }
    }

    #[test]
    fn loopback_port_may_differ() {
        let table = [
            ("http://127.0.0.1:33418/", "http://127.0.0.1:51234/", true),
            ("http://127.0.0.1/cb", "http://127.0.0.1:8080/cb", true),
            ("http://127.0.0.1:1/cb", "http://127.0.0.1/cb", true),
            ("http://[::1]:8080/cb", "http://[::1]:9999/cb", true),
            (
                "http://localhost:6274/oauth/callback",
                "http://localhost:1234/oauth/callback",
                true,
            ),
            // everything but the port stays exact
            ("http://127.0.0.1:33418/", "http://127.0.0.1:51234", false),
            ("http://127.0.0.1:33418/cb", "http://127.0.0.1:51234/cb/", false),
            ("http://127.0.0.1:33418/cb", "http://127.0.0.1:51234/CB", false),
            ("http://127.0.0.1:33418/cb", "http://127.0.0.1:51234/cb?x", false),
            ("http://127.0.0.1:33418/cb", "http://localhost:33418/cb", false),
            ("http://localhost:33418/cb", "http://127.0.0.1:33418/cb", false),
            ("http://127.0.0.1:33418/cb", "https://127.0.0.1:33418/cb", false),
            ("http://127.0.0.1:33418/cb", "http://127.0.0.1:abc/cb", false),
            ("http://127.0.0.1:33418/cb", "http://127.0.0.1:/cb", false),
            ("http://127.0.0.1:33418/cb", "http://127.0.0.1:123456/cb", false),
            ("http://127.0.0.1:33418/cb", "http://127.0.0.1:1@evil.com/cb", false),
            // https loopback is not relaxed
            ("https://localhost:8443/cb", "https://localhost:9443/cb", false),
        ];
        for (registered, requested, ok) in table {
            assert_eq!(ru(registered).matches(requested), ok, "{registered} vs {requested}");
        }
    }

    #[test]
    fn display_data() {
        assert_eq!(
            ru("https://App.Example.com/cb").host().as_deref(),
            Some("app.example.com")
        );
        assert!(ru("http://[::1]:1/cb").is_loopback());
        assert!(!ru("https://localhost/cb").is_loopback());
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,200}", t in ".{0,200}") {
            if let Ok(r) = RedirectUri::parse_with(s, RedirectUriPolicy::with_private_use_schemes()) {
                let _ = r.matches(&t);
                prop_assert!(r.matches(r.as_str()));
            }
        }

        #[test]
        fn round_trips(host in "[a-z][a-z0-9-]{0,20}\\.[a-z]{2,6}", path in "(/[A-Za-z0-9._~-]{1,10}){0,4}") {
            let raw = format!("https://{host}{path}");
            let r = RedirectUri::parse(raw.clone()).unwrap();
            prop_assert_eq!(r.as_str(), raw.as_str());
        }

        #[test]
        fn loopback_any_port(port in 1u16..=65535, path in "(/[a-z]{1,8}){0,3}") {
            let r = RedirectUri::parse(format!("http://127.0.0.1:33418{path}")).unwrap();
            let requested = format!("http://127.0.0.1:{port}{path}");
            prop_assert!(r.matches(&requested));
        }
    }
}
