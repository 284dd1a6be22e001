//! Resource indicators ([RFC 8707]): the MCP servers a token is meant for.
//!
//! A [`ResourceUri`] keeps the string the client sent and a canonical form
//! used for every comparison: scheme and host lowercased, the default port
//! dropped, and a trailing `/` on the path removed (MCP clients are seen to
//! send both `https://mcp.example.com/mcp` and `https://mcp.example.com/mcp/`
//! for one server). The canonical form is what goes into an access token's
//! `aud`, so that a resource server compares one stable string.
//!
//! [RFC 8707]: https://www.rfc-editor.org/rfc/rfc8707

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::weburl::{self, WebUrlError};

/// Why a `resource` value was refused; every case is `invalid_target`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// Not an absolute URI.
    #[error("resource must be an absolute URI")]
    NotAbsolute,
    /// A scheme other than `https` or `http`.
    #[error("resource must be an https (or http) URI")]
    UnsupportedScheme,
    /// A fragment is present ([RFC 8707 section 2]).
    ///
    /// [RFC 8707 section 2]: https://www.rfc-editor.org/rfc/rfc8707#section-2
    #[error("resource must not contain a fragment")]
    Fragment,
    /// Credentials in the authority.
    #[error("resource must not contain userinfo")]
    Userinfo,
    /// Whitespace, control characters or a backslash.
    #[error("resource contains characters that are not allowed")]
    BadCharacter,
    /// Longer than 2048 bytes.
    #[error("resource is too long")]
    TooLong,
    /// The host, port, path or query as written differ from what a
    /// client would use (percent-encoded or numeric hosts, dot segments,
    /// characters the parser would percent-encode, port 0).
    #[error("resource must be written as a browser reads it")]
    NotCanonical,
}

impl From<WebUrlError> for ResourceError {
    fn from(e: WebUrlError) -> Self {
        match e {
            WebUrlError::BadCharacter => Self::BadCharacter,
            WebUrlError::NotAbsolute | WebUrlError::Scheme => Self::NotAbsolute,
            WebUrlError::UnsupportedScheme => Self::UnsupportedScheme,
            WebUrlError::Fragment => Self::Fragment,
            WebUrlError::Userinfo => Self::Userinfo,
            WebUrlError::NotCanonical => Self::NotCanonical,
        }
    }
}

impl ResourceError {
    /// Always [`ErrorCode::InvalidTarget`].
    pub const fn code(&self) -> ErrorCode {
        ErrorCode::InvalidTarget
    }
}

/// An [RFC 8707] resource indicator.
///
/// [RFC 8707]: https://www.rfc-editor.org/rfc/rfc8707
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceUri {
    raw: String,
    canonical: String,
}

impl ResourceUri {
    /// Parses and canonicalizes a resource indicator.
    ///
    /// # Errors
    /// A [`ResourceError`] naming the broken rule.
    pub fn parse(raw: impl Into<String>) -> Result<Self, ResourceError> {
        let raw = raw.into();
        if raw.len() > 2048 {
            return Err(ResourceError::TooLong);
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
            return Err(ResourceError::BadCharacter);
        }
        if raw.contains('#') {
            return Err(ResourceError::Fragment);
        }
        // Judged as a browser reads it: the audience names the host a
        // client would connect to, written the way the parser reads it.
        let checked = weburl::check(&raw, true).map_err(ResourceError::from)?;
        let url = checked.url();
        let scheme = url.scheme();
        let host = url.host_str().unwrap_or_default();
        let mut canonical = String::with_capacity(raw.len());
        canonical.push_str(scheme);
        canonical.push_str("://");
        canonical.push_str(host);
        if let Some(port) = url.port() {
            canonical.push(':');
            canonical.push_str(&port.to_string());
        }
        let path = url.path();
        canonical.push_str(path.strip_suffix('/').unwrap_or(path));
        if let Some(q) = url.query() {
            canonical.push('?');
            canonical.push_str(q);
        }
        Ok(Self { raw, canonical })
    }

    /// The string as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The canonical form, used for comparisons and in `aud`.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
}

impl PartialEq for ResourceUri {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for ResourceUri {}

impl std::hash::Hash for ResourceUri {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.canonical.hash(state);
    }
}

impl fmt::Debug for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ResourceUri").field(&self.raw).finish()
    }
}

impl fmt::Display for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl TryFrom<String> for ResourceUri {
    type Error = ResourceError;
    fn try_from(s: String) -> Result<Self, ResourceError> {
        Self::parse(s)
    }
}

impl From<ResourceUri> for String {
    fn from(r: ResourceUri) -> Self {
        r.raw
    }
}

/// A set of resources, in first-seen order, without duplicates (by
/// canonical form). The audience of a grant and of its tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceSet(Vec<ResourceUri>);

impl ResourceSet {
    /// The empty set.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Parses every `resource` parameter of a request.
    ///
    /// # Errors
    /// The first value that does not parse.
    pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Self, ResourceError> {
        let mut set = Self::new();
        for v in values {
            set.insert(ResourceUri::parse(v)?);
        }
        Ok(set)
    }

    /// Adds a resource unless an equal one is present.
    pub fn insert(&mut self, r: ResourceUri) {
        if !self.0.contains(&r) {
            self.0.push(r);
        }
    }

    /// Whether the set holds a resource equal to `r`.
    pub fn contains(&self, r: &ResourceUri) -> bool {
        self.0.contains(r)
    }

    /// Whether every member of `self` is in `other` (downscoping check).
    pub fn is_subset_of(&self, other: &Self) -> bool {
        self.0.iter().all(|r| other.contains(r))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of resources.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The resources.
    pub fn iter(&self) -> std::slice::Iter<'_, ResourceUri> {
        self.0.iter()
    }

    /// The canonical strings, for an access token's `aud`.
    pub fn audiences(&self) -> Vec<String> {
        self.0.iter().map(|r| r.canonical.clone()).collect()
    }
}

impl FromIterator<ResourceUri> for ResourceSet {
    fn from_iter<I: IntoIterator<Item = ResourceUri>>(iter: I) -> Self {
        let mut s = Self::new();
        for r in iter {
            s.insert(r);
        }
        s
    }
}

impl<'a> IntoIterator for &'a ResourceSet {
    type Item = &'a ResourceUri;
    type IntoIter = std::slice::Iter<'a, ResourceUri>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(s: &str) -> ResourceUri {
        ResourceUri::parse(s).unwrap()
    }

    #[test]
    fn accepted_and_canonical() {
        let table = [
            ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp"),
            ("https://mcp.example.com/mcp/", "https://mcp.example.com/mcp"),
            ("https://mcp.example.com", "https://mcp.example.com"),
            ("https://mcp.example.com/", "https://mcp.example.com"),
            ("HTTPS://MCP.Example.COM/mcp", "https://mcp.example.com/mcp"),
            ("https://mcp.example.com:443/mcp", "https://mcp.example.com/mcp"),
            ("https://mcp.example.com:8443/mcp", "https://mcp.example.com:8443/mcp"),
            ("http://127.0.0.1:8090/mcp", "http://127.0.0.1:8090/mcp"),
            ("http://[::1]:8090/mcp", "http://[::1]:8090/mcp"),
            (
                "https://api.example.com/v1?tenant=a",
                "https://api.example.com/v1?tenant=a",
            ),
            ("https://api.example.com/Case/Path", "https://api.example.com/Case/Path"),
        ];
        for (raw, canonical) in table {
            let u = r(raw);
            assert_eq!(u.as_str(), raw);
            assert_eq!(u.canonical(), canonical, "{raw}");
        }
    }

    #[test]
    fn equality_is_canonical() {
        assert_eq!(r("https://MCP.example.com/mcp/"), r("https://mcp.example.com/mcp"));
        assert_ne!(r("https://mcp.example.com/mcp"), r("https://mcp.example.com/MCP"));
        assert_ne!(r("https://mcp.example.com/mcp"), r("http://mcp.example.com/mcp"));
        assert_ne!(r("https://mcp.example.com/mcp"), r("https://mcp.example.com:8443/mcp"));
        assert_ne!(r("https://a.example.com/mcp"), r("https://b.example.com/mcp"));
    }

    #[test]
    fn refused() {
        use ResourceError::*;
        let table = [
            ("mcp.example.com/mcp", NotAbsolute),
            ("/mcp", NotAbsolute),
            ("", NotAbsolute),
            ("https:mcp.example.com/mcp", NotAbsolute),
            ("https:///mcp", NotCanonical),
            ("https://mcp.example.com/a/../mcp", NotCanonical),
            ("https://mcp.example.com/%2e%2e/mcp", NotCanonical),
            ("https://mcp%2eexample.com/mcp", NotCanonical),
            ("https://[::1]@mcp.example.com/mcp", Userinfo),
            ("https://mcp.example.com:0/mcp", NotCanonical),
            ("urn:example:resource", UnsupportedScheme),
            ("ftp://example.com/x", UnsupportedScheme),
            ("javascript://x/%0aalert(1)", UnsupportedScheme),
            ("https://mcp.example.com/mcp#frag", Fragment),
            ("https://mcp.example.com/mcp#", Fragment),
            ("https://user:pw@mcp.example.com/mcp", Userinfo),
            ("https://user@mcp.example.com/mcp", Userinfo),
            ("https://mcp.example.com/m cp", BadCharacter),
            ("https://mcp.example.com/mcp\n", BadCharacter),
            ("https://mcp.example.com\\mcp", BadCharacter),
        ];
        for (raw, err) in table {
            assert_eq!(ResourceUri::parse(raw).unwrap_err(), err, "{raw:?}");
            assert_eq!(err.code(), ErrorCode::InvalidTarget);
        }
        assert_eq!(
            ResourceUri::parse(format!("https://e.com/{}", "a".repeat(2100))).unwrap_err(),
            TooLong
        );
    }

    #[test]
    fn sets_and_subsets() {
        let full = ResourceSet::parse_all([
            "https://a.example.com/mcp",
            "https://b.example.com/mcp",
            "https://A.example.com/mcp/",
        ])
        .unwrap();
        assert_eq!(full.len(), 2);
        let narrow = ResourceSet::parse_all(["https://b.example.com/mcp/"]).unwrap();
        assert!(narrow.is_subset_of(&full));
        assert!(!full.is_subset_of(&narrow));
        assert!(ResourceSet::new().is_subset_of(&narrow));
        let other = ResourceSet::parse_all(["https://c.example.com/mcp"]).unwrap();
        assert!(!other.is_subset_of(&full));
        assert_eq!(
            full.audiences(),
            vec!["https://a.example.com/mcp", "https://b.example.com/mcp"]
        );
        assert!(ResourceSet::parse_all(["https://a.example.com", "nope"]).is_err());
    }

    #[test]
    fn serde_goes_through_the_parser() {
        let u: ResourceUri = serde_json::from_str("\"https://X.example.com/mcp\"").unwrap();
        assert_eq!(u.canonical(), "https://x.example.com/mcp");
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"https://X.example.com/mcp\"");
        assert!(serde_json::from_str::<ResourceUri>("\"https://x/#f\"").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,300}") {
            let _ = ResourceUri::parse(s);
        }

        #[test]
        fn round_trips(host in "[a-w][a-z0-9-]{0,20}(\\.[a-z]{2,6}){1,2}", path in "(/[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,9}){0,4}") {
            let raw = format!("https://{host}{path}");
            let u = ResourceUri::parse(raw.clone()).unwrap();
            prop_assert_eq!(u.as_str(), raw.as_str());
            let again = ResourceUri::parse(u.canonical().to_owned()).unwrap();
            prop_assert_eq!(again.canonical(), u.canonical());
        }
    }
}
