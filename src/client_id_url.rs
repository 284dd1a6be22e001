//! The CIMD `client_id` URL, validated on its raw string.
//!
//! Below both [`crate::client`] (a client id may be such a URL) and
//! [`crate::cimd`] (which fetches it), so neither imports the other for it;
//! public as [`crate::cimd::ClientIdUrl`].

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::weburl::{self, WebUrlError};

/// Why a string is not an acceptable CIMD `client_id` URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientIdUrlError {
    /// Not `https://` followed by a host (also refuses `HTTPS://`, and
    /// repairable forms such as `https:example.com/x`).
    #[error("client_id URL must start with https:// and name a host")]
    NotHttps,
    /// Unparseable as a URL.
    #[error("client_id is not a valid URL")]
    Malformed,
    /// A fragment.
    #[error("client_id URL must not contain a fragment")]
    Fragment,
    /// Credentials in the authority.
    #[error("client_id URL must not contain userinfo")]
    Userinfo,
    /// A query component, when the policy refuses them.
    #[error("client_id URL must not contain a query")]
    Query,
    /// No path, or the root path when the policy requires more.
    #[error("client_id URL must have a path component")]
    MissingPath,
    /// The host, port, path or query as written differ from what a
    /// browser (and the fetcher) would use: percent-encoded or numeric
    /// hosts, characters the parser would percent-encode, port 0.
    #[error("client_id URL must be written as a browser reads it")]
    NotCanonical,
    /// A `.` or `..` segment, also percent-encoded.
    #[error("client_id URL must not contain dot segments")]
    DotSegment,
    /// Whitespace, control characters, a backslash, or non-ASCII.
    #[error("client_id URL contains characters that are not allowed")]
    BadCharacter,
    /// Longer than 2048 bytes.
    #[error("client_id URL is too long")]
    TooLong,
}

/// Which `client_id` URLs a project accepts beyond the strict default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClientIdUrlPolicy {
    /// Accept `https://example.com/` (CIMD -02). The default follows MCP
    /// and the -00 draft: a non-root path is required.
    #[serde(default)]
    pub allow_root_path: bool,
    /// Accept a query component (the draft says SHOULD NOT).
    #[serde(default)]
    pub allow_query: bool,
}

/// A Client ID Metadata Document URL, kept as its exact string (the
/// document's `client_id` must equal it by simple string comparison) and
/// as its WHATWG parse (what the fetcher connects to), both fixed by
/// [`ClientIdUrl::parse_with`], so no use parses it again.
///
/// Equality, ordering and hashing are those of the string.
/// Deserializing runs the same validation as [`ClientIdUrl::parse_with`]
/// with the most permissive [`ClientIdUrlPolicy`] (root path and query
/// allowed): a stored URL was accepted under some project's policy, and
/// the project decides again when it is used.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientIdUrl {
    raw: String,
    url: Url,
}

impl PartialEq for ClientIdUrl {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for ClientIdUrl {}

impl std::hash::Hash for ClientIdUrl {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.raw.hash(state);
    }
}

impl PartialOrd for ClientIdUrl {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ClientIdUrl {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.raw.cmp(&other.raw)
    }
}

impl ClientIdUrl {
    /// Validates with the strict default policy.
    ///
    /// # Errors
    /// A [`ClientIdUrlError`].
    pub fn parse(raw: impl Into<String>) -> Result<Self, ClientIdUrlError> {
        Self::parse_with(raw, ClientIdUrlPolicy::default())
    }

    /// Validates with a policy.
    ///
    /// # Errors
    /// A [`ClientIdUrlError`].
    pub fn parse_with(raw: impl Into<String>, policy: ClientIdUrlPolicy) -> Result<Self, ClientIdUrlError> {
        let raw = raw.into();
        if raw.len() > 2048 {
            return Err(ClientIdUrlError::TooLong);
        }
        if raw.bytes().any(|b| !b.is_ascii_graphic() || b == b'\\') {
            return Err(ClientIdUrlError::BadCharacter);
        }
        if !raw.starts_with("https://") {
            return Err(ClientIdUrlError::NotHttps);
        }
        if raw.contains('#') {
            return Err(ClientIdUrlError::Fragment);
        }
        // The decision is made on the WHATWG parse (the host fetched is the
        // host a browser would visit), and the string must be written the
        // way that parse reads it.
        let checked = match weburl::check(&raw, true) {
            Ok(checked) => checked,
            Err(WebUrlError::NotCanonical) if has_dot_segment(&raw) => return Err(ClientIdUrlError::DotSegment),
            Err(e) => return Err(e.into()),
        };
        let url = checked.url();
        if url.query().is_some() && !policy.allow_query {
            return Err(ClientIdUrlError::Query);
        }
        // A path as written (not the `/` the parser supplies), and not the
        // root unless the policy allows it.
        let written_path = raw.get(checked.path_start()..).is_some_and(|p| p.starts_with('/'));
        if !written_path || (url.path() == "/" && !policy.allow_root_path) {
            return Err(ClientIdUrlError::MissingPath);
        }
        if url.host_str().is_none() {
            return Err(ClientIdUrlError::NotHttps);
        }
        let url = url.clone();
        Ok(Self { raw, url })
    }

    /// The URL string.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The host, lowercased, for display on a consent screen and for trust
    /// policies. IPv6 hosts keep their brackets.
    pub fn host(&self) -> &str {
        // Never empty: `parse_with` refuses a URL without a host.
        self.url.host_str().unwrap_or_default()
    }

    /// The URL's directory for fetch budgets: the host (with its port) and
    /// the parsed path up to and including its last `/`, e.g.
    /// `a.example:8443/oauth/` for `https://a.example:8443/oauth/c.json`.
    pub fn directory(&self) -> String {
        let u = &self.url;
        let path = u.path();
        let dir = path.rfind('/').and_then(|i| path.get(..=i)).unwrap_or("/");
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!("{}{port}{dir}", u.host_str().unwrap_or_default())
    }

    /// The WHATWG parse (for a fetcher): what a browser would use.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

impl From<WebUrlError> for ClientIdUrlError {
    fn from(e: WebUrlError) -> Self {
        match e {
            WebUrlError::BadCharacter => Self::BadCharacter,
            WebUrlError::NotAbsolute => Self::Malformed,
            WebUrlError::Scheme | WebUrlError::UnsupportedScheme => Self::NotHttps,
            WebUrlError::Fragment => Self::Fragment,
            WebUrlError::Userinfo => Self::Userinfo,
            WebUrlError::NotCanonical => Self::NotCanonical,
        }
    }
}

/// Whether any `/`-separated part after `https://host` is a dot segment
/// (only used to name the error precisely; the decision is the parse's).
fn has_dot_segment(raw: &str) -> bool {
    raw.split(['/', '?']).skip(3).any(is_dot_segment)
}

/// `.`, `..`, and their percent-encoded spellings in any case.
fn is_dot_segment(segment: &str) -> bool {
    // Without allocating: at most two dots, each `.` or `%2e` (any case).
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix(b".") {
            rest = tail;
        } else if let [b'%', b'2', e, tail @ ..] = rest
            && e.eq_ignore_ascii_case(&b'e')
        {
            rest = tail;
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

impl fmt::Debug for ClientIdUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientIdUrl").field(&self.raw).finish()
    }
}

impl fmt::Display for ClientIdUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl TryFrom<String> for ClientIdUrl {
    type Error = ClientIdUrlError;
    fn try_from(s: String) -> Result<Self, ClientIdUrlError> {
        Self::parse_with(
            s,
            ClientIdUrlPolicy {
                allow_root_path: true,
                allow_query: true,
            },
        )
    }
}

impl From<ClientIdUrl> for String {
    fn from(u: ClientIdUrl) -> Self {
        u.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepted() {
        for ok in [
            "https://my-mcp-server.example.com/.well-known/oauth-client-id",
            "https://claude.ai/oauth/mcp-oauth-client-metadata",
            "https://example.com:8443/client.json",
            "https://example.com/a/b/c.json",
            "https://xn--bcher-kva.example/client",
            "https://[2001:db8::1]/client.json",
            "https://example.com/.well-known/x",
            "https://example.com/...",
        ] {
            assert_eq!(ClientIdUrl::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refused() {
        use ClientIdUrlError::*;
        let table = [
            ("http://example.com/client.json", NotHttps),
            ("HTTPS://example.com/client.json", NotHttps),
            ("https:example.com/client.json", NotHttps),
            ("https:/example.com/client.json", NotHttps),
            ("https:///client.json", NotCanonical),
            ("https://:443/client.json", Malformed),
            ("https://[::1]@evil.example/client.json", Userinfo),
            ("https://good.example%2f@evil.example/client.json", Userinfo),
            ("https://good.example%2eevil.example/client.json", NotCanonical),
            ("https://0x7f.1/client.json", NotCanonical),
            ("https://example.com:0/client.json", NotCanonical),
            ("https://example.com/{x}", NotCanonical),
            ("//example.com/client.json", NotHttps),
            ("client_0123456789abcdef01234567", NotHttps),
            ("https://example.com/client.json#frag", Fragment),
            ("https://user@example.com/client.json", Userinfo),
            ("https://user:pw@example.com/client.json", Userinfo),
            ("https://example.com/client.json?v=1", Query),
            ("https://example.com", MissingPath),
            ("https://example.com/", MissingPath),
            ("https://example.com?x", Query),
            ("https://example.com/a/../client.json", DotSegment),
            ("https://example.com/a/./client.json", DotSegment),
            ("https://example.com/a/%2e%2e/client.json", DotSegment),
            ("https://example.com/a/%2E%2e/client.json", DotSegment),
            ("https://example.com/a/.%2E/client.json", DotSegment),
            ("https://example.com/a/%2e/client.json", DotSegment),
            ("https://example.com/a/..", DotSegment),
            ("https://example.com/a b", BadCharacter),
            ("https://example.com/a\tb", BadCharacter),
            ("https://example.com/a\\b", BadCharacter),
            ("https://example.com\\@evil.com/a", BadCharacter),
            ("https://exämple.com/a", BadCharacter),
            (" https://example.com/a", BadCharacter),
            ("https://example.com/a\n", BadCharacter),
            ("https://exa mple.com/a", BadCharacter),
            ("https://example.com:99999/a", Malformed),
        ];
        for (raw, err) in table {
            assert_eq!(ClientIdUrl::parse(raw).unwrap_err(), err, "{raw:?}");
        }
        assert_eq!(
            ClientIdUrl::parse(format!("https://e.com/{}", "a".repeat(2100))).unwrap_err(),
            TooLong
        );
    }

    #[test]
    fn policy_relaxations() {
        let p = ClientIdUrlPolicy {
            allow_root_path: true,
            allow_query: true,
        };
        assert!(ClientIdUrl::parse_with("https://example.com/", p).is_ok());
        assert!(ClientIdUrl::parse_with("https://example.com/c?v=1", p).is_ok());
        // no path at all is never allowed
        assert_eq!(
            ClientIdUrl::parse_with("https://example.com", p),
            Err(ClientIdUrlError::MissingPath)
        );
    }

    #[test]
    fn host_for_display() {
        assert_eq!(
            ClientIdUrl::parse("https://Claude.AI/oauth/x").unwrap().host(),
            "claude.ai"
        );
    }

    #[test]
    fn raw_form_kept_parse_fixed_and_serde_validates() {
        let u = ClientIdUrl::parse("https://Claude.AI/oauth/x").unwrap();
        // The exact string for comparison, the parse for connecting.
        assert_eq!(u.as_str(), "https://Claude.AI/oauth/x");
        assert_eq!(u.url().as_str(), "https://claude.ai/oauth/x");
        assert_ne!(u, ClientIdUrl::parse("https://claude.ai/oauth/x").unwrap());
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(json, r#""https://Claude.AI/oauth/x""#);
        assert_eq!(serde_json::from_str::<ClientIdUrl>(&json).unwrap(), u);
        // Deserializing refuses what parsing refuses, whatever the policy.
        for bad in [
            r#""http://a.example/x""#,
            r#""https://user@a.example/x""#,
            r#""https://a.example/x#f""#,
            r#""https://a.example/../x""#,
            r#""https://a.example\x""#,
        ] {
            assert!(serde_json::from_str::<ClientIdUrl>(bad).is_err(), "{bad}");
        }
        // Only the permissive parts of the policy are relaxed.
        assert!(serde_json::from_str::<ClientIdUrl>(r#""https://a.example/""#).is_ok());
        assert!(serde_json::from_str::<ClientIdUrl>(r#""https://a.example/x?q=1""#).is_ok());
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = ClientIdUrl::parse(s.clone());
            let _ = ClientIdUrl::parse(format!("https://{s}"));
        }

        #[test]
        fn round_trips(host in "[a-w][a-z0-9-]{0,20}\\.[a-z]{2,6}", path in "(/[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,10}){1,4}") {
            let raw = format!("https://{host}{path}");
            let u = ClientIdUrl::parse(raw.clone()).unwrap();
            prop_assert_eq!(u.as_str(), raw.as_str());
        }

        #[test]
        fn dot_segments_match_the_decoding_definition(s in "(\\.|%2[eE]|%|2|[eE]|a){0,5}") {
            let decoded = s.to_ascii_lowercase().replace("%2e", ".");
            prop_assert_eq!(is_dot_segment(&s), decoded == "." || decoded == "..");
        }
    }
}
