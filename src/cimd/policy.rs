//! The per-project CIMD policy: which hosts are trusted, which URL forms,
//! cache bounds, confidential clients, the fetch timeout.

use serde::{Deserialize, Serialize};
use time::Duration;

use super::cache::CacheBounds;
use crate::client_id_url::ClientIdUrlPolicy;
use crate::newtype::string_newtype;

/// Which `client_id` hosts a project fetches from (SPEC-CHECKLIST section
/// 1, "trust policies"), and likewise which hosts the `jwks_uri` of a
/// `private_key_jwt` client may name. The deny-list of
/// [`CimdPolicy::denied_hosts`] applies in every mode and wins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CimdTrust {
    /// Any `https` host that is not denied.
    #[default]
    AnyHttpsHost,
    /// Only hosts matching one of these patterns.
    AllowList {
        /// The allowed hosts.
        hosts: Vec<HostPattern>,
    },
}

/// A host name pattern: an exact host (`claude.ai`) or every subdomain of
/// a suffix (`*.example.com`, which matches `a.example.com` and
/// `a.b.example.com` but not `example.com` itself). Lowercase ASCII;
/// internationalized names in their `xn--` form. Compared with the
/// `client_id` host lowercased and without a trailing dot.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern(String);

/// A malformed [`HostPattern`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("host patterns are a lowercase host name, an IP literal, or *.suffix")]
pub struct InvalidHostPattern;

impl HostPattern {
    /// Validates a pattern (case-insensitive; stored lowercase).
    ///
    /// # Errors
    /// [`InvalidHostPattern`].
    pub fn new(pattern: impl Into<String>) -> Result<Self, InvalidHostPattern> {
        let p = pattern.into().to_ascii_lowercase();
        let p = p.strip_suffix('.').map(str::to_owned).unwrap_or(p);
        let name = p.strip_prefix("*.").unwrap_or(&p);
        let bracketed_v6 = name.starts_with('[')
            && name.ends_with(']')
            && name.len() > 2
            && name
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'[' | b']'));
        let dns = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if p.len() > 253 || !(dns || (bracketed_v6 && !p.starts_with("*."))) {
            return Err(InvalidHostPattern);
        }
        Ok(Self(p))
    }

    /// The pattern.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `host` (as returned by [`super::ClientIdUrl::host`]) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = normalize_host(host);
        match self.0.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            None => host == self.0,
        }
    }
}

fn normalize_host(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    lower.strip_suffix('.').map(str::to_owned).unwrap_or(lower)
}

string_newtype!(HostPattern, InvalidHostPattern);

/// Which trust rule refused a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrustRule {
    /// The host matches the deny-list.
    DeniedHost,
    /// The project uses an allow-list and the host is not on it.
    NotAllowListed,
    /// A redirect URI is not on the `client_id`'s origin while the project
    /// requires that.
    RedirectUriNotSameOrigin,
}

impl TrustRule {
    /// A short stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DeniedHost => "denied_host",
            Self::NotAllowListed => "not_allow_listed",
            Self::RedirectUriNotSameOrigin => "redirect_uri_not_same_origin",
        }
    }
}

/// Default shortest reuse of a fetched document: 5 minutes.
pub const DEFAULT_CACHE_MIN: Duration = Duration::minutes(5);
/// Default longest reuse of a fetched document: 24 hours.
pub const DEFAULT_CACHE_MAX: Duration = Duration::hours(24);
/// Default stale-while-revalidate grace: 1 hour.
pub const DEFAULT_STALE_GRACE: Duration = Duration::hours(1);
/// Default fetch timeout: 5 seconds.
pub const DEFAULT_FETCH_TIMEOUT_MS: u64 = 5_000;

/// How one project treats Client ID Metadata Documents (stored in
/// [`crate::project::ProjectSettings::cimd`]). Every field has a default,
/// and serde fills missing fields with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct CimdPolicy {
    /// Which hosts are fetched from (default: any https host).
    pub trust: CimdTrust,
    /// Hosts never fetched from (documents and clients' `jwks_uri`),
    /// whatever the trust mode.
    pub denied_hosts: Vec<HostPattern>,
    /// Which URL forms are accepted (default: a non-root path, no query).
    pub url_policy: ClientIdUrlPolicy,
    /// The shortest reuse of a cacheable document, in seconds (default 300).
    #[serde(with = "seconds")]
    pub cache_min_ttl: Duration,
    /// The longest reuse of a document, in seconds (default 86400).
    #[serde(with = "seconds")]
    pub cache_max_ttl: Duration,
    /// Accept confidential CIMD clients using `private_key_jwt` with
    /// `jwks`/`jwks_uri` (default `false`: public clients only).
    pub allow_private_key_jwt: bool,
    /// The overall fetch timeout in milliseconds (default 5000; 100 to
    /// 30000).
    pub fetch_timeout_ms: u64,
    /// Require every redirect URI to share the `client_id`'s origin
    /// (scheme, host, port). Default `false`: native clients such as VS Code
    /// use loopback redirect URIs.
    pub require_same_origin_redirect_uris: bool,
    /// Stale-while-revalidate, in seconds (default 3600; at most 1 day): a
    /// cached document that expired less than this long ago is still
    /// served, re-validated against this policy, when its revalidation is
    /// refused by the server's fetch limits or the host is busy (timeout,
    /// connection failure, HTTP 429 or 5xx). Any other answer (a 404, an
    /// invalid document, a redirect) ends its use at once. Zero disables
    /// it. This bounds how long a client whose host is flooded (or down)
    /// keeps signing users in with the last valid document.
    #[serde(with = "seconds")]
    pub stale_grace: Duration,
}

impl Default for CimdPolicy {
    /// Any https host, strict URL forms, cache between 5 minutes and 24
    /// hours, public clients only, 5 s timeout, no same-origin rule.
    fn default() -> Self {
        Self {
            trust: CimdTrust::AnyHttpsHost,
            denied_hosts: Vec::new(),
            url_policy: ClientIdUrlPolicy::default(),
            cache_min_ttl: DEFAULT_CACHE_MIN,
            cache_max_ttl: DEFAULT_CACHE_MAX,
            allow_private_key_jwt: false,
            fetch_timeout_ms: DEFAULT_FETCH_TIMEOUT_MS,
            require_same_origin_redirect_uris: false,
            stale_grace: DEFAULT_STALE_GRACE,
        }
    }
}

/// A [`CimdPolicy`] that cannot be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CimdPolicyError {
    /// Negative bounds, `min > max`, or `max` above 7 days.
    #[error("cimd cache bounds must satisfy 0 <= cache_min_ttl <= cache_max_ttl <= 7 days")]
    CacheBounds,
    /// The fetch timeout is outside 100 ms to 30 s.
    #[error("cimd fetch_timeout_ms must be between 100 and 30000")]
    FetchTimeout,
    /// The stale grace is negative or above 1 day.
    #[error("cimd stale_grace must be between 0 and 86400 seconds")]
    StaleGrace,
}

impl CimdPolicy {
    /// Checks the invariants.
    ///
    /// # Errors
    /// The first broken rule.
    pub fn validate(&self) -> Result<(), CimdPolicyError> {
        if self.cache_min_ttl.is_negative()
            || self.cache_min_ttl > self.cache_max_ttl
            || self.cache_max_ttl > Duration::days(7)
        {
            return Err(CimdPolicyError::CacheBounds);
        }
        if !(100..=30_000).contains(&self.fetch_timeout_ms) {
            return Err(CimdPolicyError::FetchTimeout);
        }
        if self.stale_grace.is_negative() || self.stale_grace > Duration::days(1) {
            return Err(CimdPolicyError::StaleGrace);
        }
        Ok(())
    }

    /// Whether the trust rules let this host be fetched from.
    ///
    /// # Errors
    /// The refusing [`TrustRule`].
    pub fn check_host(&self, host: &str) -> Result<(), TrustRule> {
        if self.denied_hosts.iter().any(|p| p.matches(host)) {
            return Err(TrustRule::DeniedHost);
        }
        match &self.trust {
            CimdTrust::AnyHttpsHost => Ok(()),
            CimdTrust::AllowList { hosts } if hosts.iter().any(|p| p.matches(host)) => Ok(()),
            CimdTrust::AllowList { .. } => Err(TrustRule::NotAllowListed),
        }
    }

    /// The cache bounds.
    pub const fn cache_bounds(&self) -> CacheBounds {
        CacheBounds {
            min: self.cache_min_ttl,
            max: self.cache_max_ttl,
        }
    }

    /// The fetch timeout.
    pub const fn fetch_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.fetch_timeout_ms)
    }
}

/// Serde for a `Duration` as whole seconds.
mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.whole_seconds())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::seconds(i64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pat(s: &str) -> HostPattern {
        HostPattern::new(s).unwrap()
    }

    #[test]
    fn host_patterns() {
        assert_eq!(pat("Claude.AI").as_str(), "claude.ai");
        assert_eq!(pat("claude.ai.").as_str(), "claude.ai");
        assert!(pat("claude.ai").matches("claude.ai"));
        assert!(pat("claude.ai").matches("CLAUDE.ai."));
        assert!(!pat("claude.ai").matches("evilclaude.ai"));
        assert!(!pat("claude.ai").matches("a.claude.ai"));
        let w = pat("*.example.com");
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("badexample.com"));
        assert!(!w.matches(".example.com"));
        assert!(pat("[2001:db8::1]").matches("[2001:db8::1]"));
        assert!(pat("203.0.113.7").matches("203.0.113.7"));
        for bad in [
            "", "*", "*.", "a..b", "-a.com", "a-.com", "a b", "a/b", "a@b", "*.*.a", "a.*.b", "[zz]", "*.[::1]",
            "é.com",
        ] {
            assert_eq!(HostPattern::new(bad), Err(InvalidHostPattern), "{bad:?}");
        }
        assert!(HostPattern::new("a".repeat(254)).is_err());
    }

    #[test]
    fn trust_modes() {
        let mut p = CimdPolicy::default();
        assert_eq!(p.check_host("anything.example"), Ok(()));
        p.denied_hosts = vec![pat("*.evil.example"), pat("evil.example")];
        assert_eq!(p.check_host("evil.example"), Err(TrustRule::DeniedHost));
        assert_eq!(p.check_host("x.evil.example."), Err(TrustRule::DeniedHost));
        p.trust = CimdTrust::AllowList {
            hosts: vec![pat("claude.ai"), pat("*.openai.com"), pat("x.evil.example")],
        };
        assert_eq!(p.check_host("claude.ai"), Ok(()));
        assert_eq!(p.check_host("chatgpt.openai.com"), Ok(()));
        assert_eq!(p.check_host("vscode.dev"), Err(TrustRule::NotAllowListed));
        // deny wins over allow
        assert_eq!(p.check_host("x.evil.example"), Err(TrustRule::DeniedHost));
    }

    #[test]
    fn validation_and_serde() {
        let p = CimdPolicy::default();
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(p.cache_bounds().min, Duration::minutes(5));
        assert_eq!(p.cache_bounds().max, Duration::hours(24));
        assert_eq!(p.fetch_timeout(), std::time::Duration::from_secs(5));
        let bad = [
            CimdPolicy {
                cache_min_ttl: Duration::hours(2),
                cache_max_ttl: Duration::hours(1),
                ..CimdPolicy::default()
            },
            CimdPolicy {
                cache_min_ttl: Duration::seconds(-1),
                ..CimdPolicy::default()
            },
            CimdPolicy {
                cache_max_ttl: Duration::days(8),
                ..CimdPolicy::default()
            },
        ];
        for b in bad {
            assert_eq!(b.validate(), Err(CimdPolicyError::CacheBounds));
        }
        for ms in [0, 99, 30_001] {
            let b = CimdPolicy {
                fetch_timeout_ms: ms,
                ..CimdPolicy::default()
            };
            assert_eq!(b.validate(), Err(CimdPolicyError::FetchTimeout));
        }

        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["trust"]["mode"], "any_https_host");
        assert_eq!(v["cache_min_ttl"], 300);
        assert_eq!(v["cache_max_ttl"], 86400);
        let back: CimdPolicy = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
        let partial: CimdPolicy = serde_json::from_value(serde_json::json!({
            "trust": {"mode": "allow_list", "hosts": ["claude.ai", "*.openai.com"]}
        }))
        .unwrap();
        assert_eq!(partial.fetch_timeout_ms, 5000);
        assert!(matches!(partial.trust, CimdTrust::AllowList { ref hosts } if hosts.len() == 2));
        assert!(serde_json::from_value::<CimdPolicy>(serde_json::json!({"denied_hosts": ["a b"]})).is_err());
    }

    proptest! {
        #[test]
        fn patterns_never_panic(p in ".{0,60}", h in ".{0,60}") {
            if let Ok(pattern) = HostPattern::new(p) {
                let _ = pattern.matches(&h);
            }
        }
    }
}
