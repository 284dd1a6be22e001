//! Redirect URIs: registration rules and exact matching.
//!
//! A [`RedirectUri`] keeps the string as registered; matching is simple
//! string comparison (OAuth 2.1 section 2.3.1, [RFC 9700 section 2.1]), with
//! one exception from [RFC 8252 section 7.3]: for `http` on a loopback host
//! (`127.0.0.1`, `[::1]`, `localhost`) the port may differ, because native
//! apps bind an ephemeral port at run time. Nothing else is relaxed: not the
//! case, not a trailing slash, not the path or query.
//!
//! Every `http`/`https` redirect URI, registered or requested, is judged the
//! way a browser reads it (the WHATWG URL Standard): a string whose host,
//! port, path or query a browser would read differently from how it is
//! written (userinfo, percent-encoded or numeric hosts, dot segments,
//! backslashes) is refused, and the loopback exception compares the
//! *parsed* host, so `http://[::1]@evil.example/cb` can never pass for
//! `http://[::1]:PORT/cb` ([RFC 9700 section 4.1]).
//!
//! [RFC 9700 section 2.1]: https://www.rfc-editor.org/rfc/rfc9700#section-2.1
//! [RFC 8252 section 7.3]: https://www.rfc-editor.org/rfc/rfc8252#section-7.3
//! [RFC 9700 section 4.1]: https://www.rfc-editor.org/rfc/rfc9700#section-4.1

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use url::{Host, Url};

use crate::error::ErrorCode;
use crate::weburl::{self, WebUrlError};

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

/// Whether `scheme` can never be a private-use redirect scheme: `http`,
/// `https`, the schemes that are never a redirect target, and the web
/// family.
pub(crate) fn refused_private_use_scheme(scheme: &str) -> bool {
    scheme == "http" || scheme == "https" || DANGEROUS_SCHEMES.contains(&scheme) || is_web_family(scheme)
}

/// A scheme a browser may treat as a web scheme, or that impersonates one
/// (`https-alt`, `http+unix`, `wss`), other than `http` and `https`
/// themselves: never a private-use scheme.
fn is_web_family(scheme: &str) -> bool {
    scheme != "http" && scheme != "https" && (scheme.starts_with("http") || scheme.starts_with("ws"))
}

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
    /// Whitespace, control characters, a backslash or non-ASCII.
    #[error("redirect URI contains characters that are not allowed")]
    BadCharacter,
    /// Longer than 2048 bytes.
    #[error("redirect URI is too long")]
    TooLong,
    /// A browser would read the host, port, path or query differently
    /// from how they are written (percent-encoding, a numeric or
    /// upper-case loopback host, dot segments, port 0, ...).
    #[error("redirect URI must be written as a browser reads it (no encoded or normalisable host, port or path)")]
    NotCanonical,
}

impl RedirectUriError {
    /// Always [`ErrorCode::InvalidRedirectUri`]; the authorization endpoint
    /// renders these to the user instead (never redirecting).
    pub const fn code(&self) -> ErrorCode {
        ErrorCode::InvalidRedirectUri
    }
}

impl From<WebUrlError> for RedirectUriError {
    fn from(e: WebUrlError) -> Self {
        match e {
            WebUrlError::BadCharacter => Self::BadCharacter,
            WebUrlError::NotAbsolute | WebUrlError::Scheme | WebUrlError::UnsupportedScheme => Self::NotAbsolute,
            WebUrlError::Fragment => Self::Fragment,
            WebUrlError::Userinfo => Self::Userinfo,
            WebUrlError::NotCanonical => Self::NotCanonical,
        }
    }
}

/// Which redirect URIs a project accepts beyond `https` and loopback `http`.
///
/// [`RedirectUriPolicy::default`] (what new projects get) accepts
/// private-use schemes, as native MCP clients need (Cursor registers
/// `cursor://anysphere.cursor-mcp/oauth/callback`);
/// [`RedirectUriPolicy::strict`] does not. Settings stored without the
/// field read as strict, as they were written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RedirectUriPolicy {
    /// Accept private-use schemes ([RFC 8252 section 7.1], e.g.
    /// `cursor://anysphere.cursor-mcp/oauth/callback`), except the
    /// schemes that are never a redirect target (`javascript`, `data`,
    /// `file`, `vbscript`, `about`, `blob`, ...) and any scheme of the
    /// web family (`http*`, `ws*`) other than `http` and `https`
    /// themselves. Such URIs match by exact string only. The consent page
    /// names the scheme and warns: any app on the device may claim it.
    ///
    /// [RFC 8252 section 7.1]: https://www.rfc-editor.org/rfc/rfc8252#section-7.1
    #[serde(default)]
    pub allow_private_use_schemes: bool,
}

impl Default for RedirectUriPolicy {
    /// Private-use schemes allowed.
    fn default() -> Self {
        Self::with_private_use_schemes()
    }
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
///
/// Equality and hashing are on the exact string.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedirectUri {
    raw: String,
    /// For `http` on a loopback host: the parsed host and where the path
    /// starts in `raw`, for the [RFC 8252] port exception.
    ///
    /// [RFC 8252]: https://www.rfc-editor.org/rfc/rfc8252
    loopback: Option<Loopback>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loopback {
    host: LoopbackHost,
    path_start: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoopbackHost {
    V4,
    V6,
    Localhost,
}

impl LoopbackHost {
    fn of(host: &Host<&str>) -> Option<Self> {
        if !weburl::is_loopback_host(host) {
            return None;
        }
        Some(match host {
            Host::Ipv4(_) => Self::V4,
            Host::Ipv6(_) => Self::V6,
            Host::Domain(_) => Self::Localhost,
        })
    }
}

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
    /// `https` URIs and `http` URIs on `127.0.0.1`, `[::1]` or `localhost`
    /// must be written as a browser reads them (see the module docs); the
    /// host of an `https` URI may be written in upper case, a loopback host
    /// may not.
    ///
    /// # Errors
    /// A [`RedirectUriError`] naming the broken rule.
    pub fn parse_with(raw: impl Into<String>, policy: RedirectUriPolicy) -> Result<Self, RedirectUriError> {
        let raw = raw.into();
        if raw.len() > 2048 {
            return Err(RedirectUriError::TooLong);
        }
        if raw.bytes().any(|b| !b.is_ascii_graphic() || b == b'\\') {
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
        if DANGEROUS_SCHEMES.contains(&scheme) || is_web_family(scheme) {
            return Err(RedirectUriError::DangerousScheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectUriError::Userinfo);
        }
        let loopback = match scheme {
            "https" => {
                weburl::check(&raw, true)?;
                None
            }
            "http" => {
                // Judge the host first (any case) so that a remote http host
                // gets the precise error, then insist on the exact form.
                let parsed = weburl::check(&raw, true)?;
                let host = parsed
                    .host()
                    .and_then(|h| LoopbackHost::of(&h))
                    .ok_or(RedirectUriError::InsecureHttp)?;
                let exact = weburl::check(&raw, false)?;
                Some(Loopback {
                    host,
                    path_start: exact.path_start(),
                })
            }
            _ if policy.allow_private_use_schemes => None,
            _ => return Err(RedirectUriError::PrivateUseScheme),
        };
        Ok(Self { raw, loopback })
    }

    /// The URI exactly as registered.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The host, for display on a consent screen (`None` for private-use
    /// schemes without an authority).
    pub fn host(&self) -> Option<String> {
        Url::parse(&self.raw).ok()?.host_str().map(str::to_owned)
    }

    /// The scheme when it is a private-use one ([RFC 8252 section 7.1]): not
    /// `http` or `https`. Such a URI matches by exact string only.
    ///
    /// [RFC 8252 section 7.1]: https://www.rfc-editor.org/rfc/rfc8252#section-7.1
    pub fn private_use_scheme(&self) -> Option<&str> {
        let scheme = self.raw.get(..Url::parse(&self.raw).ok()?.scheme().len())?;
        (scheme != "http" && scheme != "https").then_some(scheme)
    }

    /// Whether this is an `http` URI on a loopback host.
    pub fn is_loopback(&self) -> bool {
        self.loopback.is_some()
    }

    /// Whether whatever runs on the user's device can claim this URI, so
    /// that reaching it proves nothing about who receives the code ([RFC
    /// 8252 section 8.6]): a loopback host (`http`, or `https` on
    /// `localhost`, `*.localhost`, 127.0.0.0/8 or `[::1]`: any local
    /// process can listen on a port) or a private-use scheme (any
    /// installed app can register it).
    ///
    /// [RFC 8252 section 8.6]: https://www.rfc-editor.org/rfc/rfc8252#section-8.6
    pub fn is_claimable_on_device(&self) -> bool {
        if self.loopback.is_some() || self.private_use_scheme().is_some() {
            return true;
        }
        let Ok(url) = Url::parse(&self.raw) else {
            return true;
        };
        match url.host() {
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
            Some(Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost")
            }
            None => true,
        }
    }

    /// Whether a redirect URI sent in a request matches this registered one:
    /// the same string, or, for `http` on a loopback host, the same string
    /// but for the port ([RFC 8252 section 7.3]).
    ///
    /// # Security
    /// The port exception is decided on the WHATWG parse of `requested`
    /// (the host a browser will visit) *and* on the string: the requested
    /// URI must itself be written as a browser reads it, its parsed host
    /// must be the same loopback host, and its path and query must be
    /// byte-for-byte those registered. Only the port may differ.
    ///
    /// [RFC 8252 section 7.3]: https://www.rfc-editor.org/rfc/rfc8252#section-7.3
    pub fn matches(&self, requested: &str) -> bool {
        if self.raw == requested {
            return true;
        }
        let Some(registered) = self.loopback else {
            return false;
        };
        if requested.len() > 2048 {
            return false;
        }
        let Ok(req) = weburl::check(requested, false) else {
            return false;
        };
        req.url().scheme() == "http"
            && req.host().and_then(|h| LoopbackHost::of(&h)) == Some(registered.host)
            && self.raw.get(registered.path_start..) == requested.get(req.path_start()..)
    }
}

impl PartialEq for RedirectUri {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for RedirectUri {}

impl Hash for RedirectUri {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.raw.hash(state);
    }
}

impl fmt::Debug for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedirectUri").field(&self.raw).finish()
    }
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
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
        r.raw
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
            ("http://LOCALHOST/cb", NotCanonical),
            ("http://0x7f.0.0.1/cb", NotCanonical),
            ("http://127.1/cb", NotCanonical),
            ("http://[0::1]/cb", NotCanonical),
            ("http://[::1]@evil.example/cb", Userinfo),
            ("https://app.example.com/a/../cb", NotCanonical),
            ("https://app.example.com/%2e%2e/cb", NotCanonical),
            ("https://ex%61mple.com/cb", NotCanonical),
            ("https://bücher.example/cb", BadCharacter),
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
            ("https:///cb", NotCanonical),
            ("http:///127.0.0.1/cb", NotCanonical),
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
        for refused in [
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "vbscript:x",
            "about:blank",
            "blob:https://a.example.com/x",
            "https-alt://a.example.com/cb",
            "http+unix://a/cb",
            "httpx://a.example.com/cb",
            "wss://a.example.com/cb",
            "ws-x://a.example.com/cb",
        ] {
            assert_eq!(
                RedirectUri::parse_with(refused, p),
                Err(RedirectUriError::DangerousScheme),
                "{refused}"
            );
        }
        // The default policy (new projects) allows them; strict does not.
        assert_eq!(RedirectUriPolicy::default(), p);
        assert_eq!(
            RedirectUri::parse_with(
                "cursor://anysphere.cursor-mcp/oauth/callback",
                RedirectUriPolicy::strict()
            ),
            Err(RedirectUriError::PrivateUseScheme)
        );
        // Settings stored without the field read as strict.
        let stored: RedirectUriPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(stored, RedirectUriPolicy::strict());
    }

    #[test]
    fn private_use_uris_match_exactly_and_name_their_scheme() {
        let p = RedirectUriPolicy::default();
        let r = RedirectUri::parse_with("cursor://anysphere.cursor-mcp/oauth/callback", p).unwrap();
        assert!(!r.is_loopback());
        assert_eq!(r.private_use_scheme(), Some("cursor"));
        assert!(r.matches("cursor://anysphere.cursor-mcp/oauth/callback"));
        for no in [
            "cursor://anysphere.cursor-mcp/oauth/callback/",
            "CURSOR://anysphere.cursor-mcp/oauth/callback",
            "cursor://anysphere.cursor-mcp:1/oauth/callback",
            "cursor://evil@anysphere.cursor-mcp/oauth/callback",
            "cursor://anysphere.cursor-mcp/oauth/callback?x=1",
        ] {
            assert!(!r.matches(no), "{no}");
        }
        assert_eq!(ru("https://a.example.com/cb").private_use_scheme(), None);
        assert_eq!(ru("http://127.0.0.1/cb").private_use_scheme(), None);
        let native = RedirectUri::parse_with("com.example.app:/oauth2redirect", p).unwrap();
        assert_eq!(native.private_use_scheme(), Some("com.example.app"));
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
            ("http://127.0.0.1:33418/cb", "http://127.0.0.1:0/cb", false),
            ("http://127.0.0.1:33418/cb", "http://127.0.0.1:033418/cb", false),
            ("http://127.0.0.1:33418/cb", "http://127.0.0.1:99999/cb", false),
            ("http://127.0.0.1:33418/cb", "http://0x7f000001:1/cb", false),
            ("http://127.0.0.1:33418/cb", "http://127.1:1/cb", false),
            ("http://127.0.0.1:33418/cb", "http://127.0.0.1:1/%63b", false),
            ("http://127.0.0.1:33418/cb", "http://127.0.0.1:1/x/../cb", false),
            ("http://127.0.0.1:33418/cb", "http://127.0.0.1:1\\@evil.com/cb", false),
            // the external review's finding: userinfo after a loopback host
            (
                "http://[::1]:33418/callback",
                "http://[::1]@evil.example/callback",
                false,
            ),
            (
                "http://[::1]:33418/callback",
                "http://[::1]:8443@evil.example/callback",
                false,
            ),
            (
                "http://[::1]:33418/callback",
                "http://[::1]:1@evil.example:8443/callback",
                false,
            ),
            (
                "http://[::1]:33418/callback",
                "http://[::1]%40evil.example/callback",
                false,
            ),
            ("http://[::1]:33418/callback", "http://[0:0::1]:1/callback", false),
            ("http://localhost:33418/cb", "http://localhost@evil.example/cb", false),
            ("http://localhost:33418/cb", "http://LOCALHOST:1/cb", false),
            ("http://localhost:33418/cb", "http://localhost.:1/cb", false),
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

    #[test]
    fn claimable_on_device() {
        let p = RedirectUriPolicy::with_private_use_schemes();
        for yes in [
            "http://127.0.0.1/cb",
            "http://127.0.0.1:49152/cb",
            "http://[::1]:8080/cb",
            "http://localhost:3000/cb",
            "https://localhost/cb",
            "https://app.localhost/cb",
            "https://127.0.0.2/cb",
            "https://[::1]/cb",
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "com.example.app:/callback",
        ] {
            assert!(
                RedirectUri::parse_with(yes, p).unwrap().is_claimable_on_device(),
                "{yes}"
            );
        }
        for no in [
            "https://app.example.com/cb",
            "https://localhost.example.com/cb",
            "https://10.0.0.1/cb",
        ] {
            assert!(
                !RedirectUri::parse_with(no, p).unwrap().is_claimable_on_device(),
                "{no}"
            );
        }
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
        fn round_trips(host in "[a-w][a-z0-9-]{0,20}\\.[a-z]{2,6}", path in "(/[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,9}){0,4}") {
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
