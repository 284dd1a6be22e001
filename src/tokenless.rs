//! Tokenless registration: the middle ground between
//! `dcr_mode = initial_access_token` and `open`.
//!
//! No MCP client can accept an initial access token: Cursor, the MCP
//! Inspector, Copilot CLI and Claude's DCR fallback register without one.
//! In `initial_access_token` mode a project may admit such a request when
//! **every** redirect URI matches a trusted pattern:
//!
//! - an `http` loopback URI (`127.0.0.1`, `[::1]`, `localhost`), when
//!   [`TokenlessRegistration::loopback`] is on;
//! - a private-use scheme listed in
//!   [`TokenlessRegistration::private_use_schemes`] (e.g. `cursor`);
//! - an `https` URI on the default port whose host is listed in
//!   [`TokenlessRegistration::https_callback_hosts`] (e.g. `claude.ai`).
//!
//! Authorization codes of such a client can only be delivered to the
//! user's own machine or to a host the operator trusts, which is what makes
//! an anonymous registration harmless enough; what remains (anyone may
//! register a client *named* like a well-known one; any app on a device
//! may claim a listed scheme) is what the consent page's warnings are for.
//! Each admission is audited and rate-limited per source, per wider
//! network and per project, in fixed windows ([`SourceWindow`] is the
//! rule; the counts live in the server's
//! [`crate::store::AdmissionStore`], shared by every instance on one
//! store). Off by default.
//!
//! Everything here is pure: the driver supplies `now` and the request's
//! source address.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use url::Url;

use crate::client::ValidatedMetadata;
use crate::redirect_uri::{RedirectUri, refused_private_use_scheme};

/// The longest list of schemes or hosts a project may trust.
pub const MAX_TRUSTED_PATTERNS: usize = 32;

/// A project's tokenless-registration policy (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenlessRegistration {
    /// Admit tokenless registrations at all (only in
    /// `dcr_mode = initial_access_token`; `open` admits everything and
    /// `disabled` nothing). Default: off.
    #[serde(default)]
    pub enabled: bool,
    /// Trust `http` loopback redirect URIs.
    #[serde(default)]
    pub loopback: bool,
    /// Trusted private-use schemes (lowercase, e.g. `cursor`).
    #[serde(default)]
    pub private_use_schemes: Vec<String>,
    /// Trusted hosts of `https` callbacks (lowercase, e.g. `claude.ai`).
    #[serde(default)]
    pub https_callback_hosts: Vec<String>,
    /// At most this many admissions per source address (an IPv6 source
    /// counts per /64) per [`TokenlessRegistration::window_seconds`].
    /// The rates here (this, the window and
    /// [`TokenlessRegistration::max_per_window`]) also limit every
    /// registration without a token in `dcr_mode = open`, whether or not
    /// tokenless registration is enabled; there, requests whose source is
    /// unknown share one window.
    #[serde(default = "default_max_per_source")]
    pub max_per_source: u32,
    /// The rate-limit window, in seconds.
    #[serde(default = "default_window_seconds")]
    pub window_seconds: u32,
    /// At most this many tokenless admissions in the whole project per
    /// window, whatever the sources: an attacker with many addresses (an
    /// IPv6 /48 holds 65,536 /64s) cannot fill the project's client quota.
    /// Sources are also limited per wider network (IPv6 /48, IPv4 /24) to
    /// eight times [`TokenlessRegistration::max_per_source`].
    #[serde(default = "default_max_per_window")]
    pub max_per_window: u32,
}

const fn default_max_per_source() -> u32 {
    10
}

const fn default_max_per_window() -> u32 {
    200
}

/// How many times `max_per_source` a wider network (IPv6 /48, IPv4 /24)
/// may register per window.
pub const NETWORK_FACTOR: u32 = 8;

const fn default_window_seconds() -> u32 {
    3600
}

impl Default for TokenlessRegistration {
    /// Off; nothing trusted; 10 admissions per source per hour.
    fn default() -> Self {
        Self {
            enabled: false,
            loopback: false,
            private_use_schemes: Vec::new(),
            https_callback_hosts: Vec::new(),
            max_per_source: default_max_per_source(),
            window_seconds: default_window_seconds(),
            max_per_window: default_max_per_window(),
        }
    }
}

/// A policy that cannot be stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenlessPolicyError {
    /// A listed scheme is malformed, or one that is never a redirect
    /// target (`javascript`, `http*`, ...).
    #[error("tokenless_registration.private_use_schemes: {0:?} is not an acceptable private-use scheme")]
    Scheme(String),
    /// A listed host is not a lowercase DNS name as a browser reads it.
    #[error("tokenless_registration.https_callback_hosts: {0:?} is not a lowercase host name")]
    Host(String),
    /// More than [`MAX_TRUSTED_PATTERNS`] schemes or hosts.
    #[error("tokenless_registration lists too many schemes or hosts")]
    TooMany,
    /// A zero rate limit or window.
    #[error("tokenless_registration.max_per_source and window_seconds must be positive")]
    RateLimit,
}

/// Why a tokenless request was not admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotAdmitted {
    /// The project does not admit tokenless registrations.
    #[error("tokenless registration is off")]
    Disabled,
    /// A redirect URI matches no trusted pattern.
    #[error("redirect_uris[{index}] matches no trusted pattern")]
    Untrusted {
        /// Its position.
        index: usize,
    },
    /// The source used up its admissions for the window.
    #[error("too many tokenless registrations from this source")]
    RateLimited,
    /// The request's source address is unknown, so it cannot be
    /// rate-limited.
    #[error("the request's source is unknown")]
    UnknownSource,
    /// No redirect URI at all (a machine-to-machine client): nothing shows
    /// where its tokens go, so it always needs an initial access token.
    #[error("a client without redirect URIs needs an initial access token")]
    NoRedirectUris,
    /// A confidential client, or one asking for a grant without a user
    /// (`client_credentials`): it always needs an initial access token.
    #[error("only public clients of the authorization-code flow register without a token")]
    NotPublic,
}

impl NotAdmitted {
    /// A machine-readable reason for audit events.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Disabled => "tokenless_disabled",
            Self::Untrusted { .. } => "tokenless_untrusted_redirect_uri",
            Self::RateLimited => "tokenless_rate_limited",
            Self::UnknownSource => "tokenless_unknown_source",
            Self::NoRedirectUris => "tokenless_no_redirect_uris",
            Self::NotPublic => "tokenless_not_public",
        }
    }
}

/// Which trusted pattern admitted a redirect URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrustedPattern {
    /// An `http` loopback URI.
    Loopback,
    /// A listed private-use scheme.
    PrivateUseScheme,
    /// A listed `https` callback host.
    HttpsCallbackHost,
}

impl TokenlessRegistration {
    /// Checks the lists.
    ///
    /// # Errors
    /// The first bad entry.
    pub fn validate(&self) -> Result<(), TokenlessPolicyError> {
        if self.private_use_schemes.len() > MAX_TRUSTED_PATTERNS
            || self.https_callback_hosts.len() > MAX_TRUSTED_PATTERNS
        {
            return Err(TokenlessPolicyError::TooMany);
        }
        if self.max_per_source == 0 || self.window_seconds == 0 || self.max_per_window == 0 {
            return Err(TokenlessPolicyError::RateLimit);
        }
        for s in &self.private_use_schemes {
            let well_formed = s.len() <= 64
                && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.'));
            if !well_formed || refused_private_use_scheme(s) {
                return Err(TokenlessPolicyError::Scheme(s.clone()));
            }
        }
        for h in &self.https_callback_hosts {
            if !is_lowercase_dns_host(h) {
                return Err(TokenlessPolicyError::Host(h.clone()));
            }
        }
        Ok(())
    }

    /// Whether every redirect URI of `metadata` matches a trusted pattern
    /// (and there is at least one); the pattern of each, in order.
    ///
    /// # Errors
    /// [`NotAdmitted::Disabled`], [`NotAdmitted::NoRedirectUris`] or
    /// [`NotAdmitted::Untrusted`].
    pub fn admits(&self, metadata: &ValidatedMetadata) -> Result<Vec<TrustedPattern>, NotAdmitted> {
        if !self.enabled {
            return Err(NotAdmitted::Disabled);
        }
        if metadata.redirect_uris.is_empty() {
            return Err(NotAdmitted::NoRedirectUris);
        }
        // Admission rests on "codes only reach the user's own machine or
        // app": that holds for a public client of the authorization-code
        // flow, not for a confidential one, nor for grants that need no
        // user (client_credentials).
        let user_facing_only = metadata.grant_types.iter().all(|g| {
            matches!(
                g,
                crate::client::GrantType::AuthorizationCode | crate::client::GrantType::RefreshToken
            )
        });
        if metadata.token_endpoint_auth_method != crate::client::TokenEndpointAuthMethod::None || !user_facing_only {
            return Err(NotAdmitted::NotPublic);
        }
        metadata
            .redirect_uris
            .iter()
            .enumerate()
            .map(|(index, uri)| self.pattern_of(uri).ok_or(NotAdmitted::Untrusted { index }))
            .collect()
    }

    fn pattern_of(&self, uri: &RedirectUri) -> Option<TrustedPattern> {
        if uri.is_loopback() {
            return self.loopback.then_some(TrustedPattern::Loopback);
        }
        if let Some(scheme) = uri.private_use_scheme() {
            return self
                .private_use_schemes
                .iter()
                .any(|s| s == scheme)
                .then_some(TrustedPattern::PrivateUseScheme);
        }
        // An https URI (registration already judged it the way a browser
        // reads it): the parsed host, on the default port.
        let url = Url::parse(uri.as_str()).ok()?;
        let host = url.host_str()?;
        (url.scheme() == "https" && url.port().is_none() && self.https_callback_hosts.iter().any(|h| h == host))
            .then_some(TrustedPattern::HttpsCallbackHost)
    }

    /// The rate-limit window.
    pub fn window(&self) -> Duration {
        Duration::seconds(i64::from(self.window_seconds))
    }
}

/// A lowercase DNS name that a browser reads as itself.
fn is_lowercase_dns_host(h: &str) -> bool {
    if h.is_empty()
        || h.len() > 253
        || !h
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
    {
        return false;
    }
    matches!(url::Host::parse(h), Ok(url::Host::Domain(d)) if d == h)
}

/// The rate-limit key of a source address: the address, or its /64 for
/// IPv6 (one host usually holds a whole /64).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let mut seg = v6.segments();
            for s in seg.iter_mut().skip(4) {
                *s = 0;
            }
            IpAddr::V6(std::net::Ipv6Addr::from(seg))
        }
    }
}

/// The wider network of a source: an IPv6 /48 or an IPv4 /24 (mapped
/// addresses as IPv4).
pub fn network_key(ip: IpAddr) -> IpAddr {
    match source_key(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let mut seg = v6.segments();
            for s in seg.iter_mut().skip(3) {
                *s = 0;
            }
            IpAddr::V6(std::net::Ipv6Addr::from(seg))
        }
    }
}

/// A fixed rate-limit window of one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceWindow {
    /// When the window started.
    pub started: OffsetDateTime,
    /// Admissions in it so far.
    pub count: u32,
}

impl SourceWindow {
    /// Counts one admission at `now` against `previous` (the source's
    /// window, if any): the new window, or [`NotAdmitted::RateLimited`]
    /// (and nothing counted) when `max` admissions were already made in a
    /// window of length `window` that has not ended.
    ///
    /// # Errors
    /// [`NotAdmitted::RateLimited`].
    pub fn admit(previous: Option<Self>, now: OffsetDateTime, max: u32, window: Duration) -> Result<Self, NotAdmitted> {
        match previous {
            // Only a window that ended restarts: a `now` before its start
            // (requests racing) counts in it.
            Some(w) if now < w.started + window => {
                if w.count >= max {
                    Err(NotAdmitted::RateLimited)
                } else {
                    Ok(Self {
                        started: w.started,
                        count: w.count + 1,
                    })
                }
            }
            _ => Ok(Self { started: now, count: 1 }),
        }
    }

    /// Whether the window is over at `now` (the entry may be forgotten).
    pub fn expired(&self, now: OffsetDateTime, window: Duration) -> bool {
        now >= self.started + window
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientMetadata, MetadataProfile};
    use crate::redirect_uri::RedirectUriPolicy;
    use time::macros::datetime;

    fn metadata(uris: &[&str]) -> ValidatedMetadata {
        let m: ClientMetadata = serde_json::from_value(serde_json::json!({
            "redirect_uris": uris,
            "token_endpoint_auth_method": "none"
        }))
        .unwrap();
        m.validate(MetadataProfile::Dcr, RedirectUriPolicy::default()).unwrap()
    }

    fn policy() -> TokenlessRegistration {
        TokenlessRegistration {
            enabled: true,
            loopback: true,
            private_use_schemes: vec!["cursor".into()],
            https_callback_hosts: vec!["claude.ai".into()],
            ..Default::default()
        }
    }

    #[test]
    fn every_redirect_uri_must_match_a_trusted_pattern() {
        let p = policy();
        // Cursor's request: app scheme, loopback.
        assert_eq!(
            p.admits(&metadata(&[
                "cursor://anysphere.cursor-mcp/oauth/callback",
                "http://127.0.0.1:33418/callback",
                "https://claude.ai/api/mcp/auth_callback",
            ])),
            Ok(vec![
                TrustedPattern::PrivateUseScheme,
                TrustedPattern::Loopback,
                TrustedPattern::HttpsCallbackHost
            ])
        );
        let untrusted = [
            "https://evil.example/cb",
            "https://claude.ai.evil.example/cb",
            "https://evil.claude.ai/cb",
            "https://claude.ai:8443/cb",
            "vscode://cb",
            "cursorx://anysphere.cursor-mcp/oauth/callback",
        ];
        for u in untrusted {
            assert_eq!(
                p.admits(&metadata(&["http://localhost/cb", u])),
                Err(NotAdmitted::Untrusted { index: 1 }),
                "{u}"
            );
        }
        let no_loopback = TokenlessRegistration {
            loopback: false,
            ..policy()
        };
        assert_eq!(
            no_loopback.admits(&metadata(&["http://localhost/cb"])),
            Err(NotAdmitted::Untrusted { index: 0 })
        );
        assert_eq!(
            TokenlessRegistration::default().admits(&metadata(&["http://localhost/cb"])),
            Err(NotAdmitted::Disabled)
        );
        // A machine-to-machine client has no redirect URI to vouch for it.
        let m2m: ClientMetadata = serde_json::from_value(serde_json::json!({
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic"
        }))
        .unwrap();
        let m2m = m2m
            .validate(MetadataProfile::Dcr, RedirectUriPolicy::default())
            .unwrap();
        assert_eq!(p.admits(&m2m), Err(NotAdmitted::NoRedirectUris));
    }

    #[test]
    fn lists_are_validated() {
        assert_eq!(policy().validate(), Ok(()));
        assert_eq!(TokenlessRegistration::default().validate(), Ok(()));
        for bad in ["javascript", "https", "http+x", "Cursor", "", "1abc", "a b"] {
            let p = TokenlessRegistration {
                private_use_schemes: vec![bad.into()],
                ..policy()
            };
            assert_eq!(p.validate(), Err(TokenlessPolicyError::Scheme(bad.into())), "{bad}");
        }
        for bad in [
            "Claude.ai",
            "claude.ai:443",
            "claude.ai/cb",
            "",
            "127.0.0.1",
            "[::1]",
            "a@b",
            "xn--",
        ] {
            let p = TokenlessRegistration {
                https_callback_hosts: vec![bad.into()],
                ..policy()
            };
            assert_eq!(p.validate(), Err(TokenlessPolicyError::Host(bad.into())), "{bad}");
        }
        let p = TokenlessRegistration {
            max_per_source: 0,
            ..policy()
        };
        assert_eq!(p.validate(), Err(TokenlessPolicyError::RateLimit));
        // Stored settings without the field read as the default (off).
        let back: TokenlessRegistration = serde_json::from_str("{}").unwrap();
        assert_eq!(back, TokenlessRegistration::default());
    }

    #[test]
    fn fixed_window_rate_limit() {
        let t0 = datetime!(2026-11-26 12:00 UTC);
        let hour = Duration::hours(1);
        let mut w = SourceWindow::admit(None, t0, 2, hour).unwrap();
        w = SourceWindow::admit(Some(w), t0 + Duration::minutes(1), 2, hour).unwrap();
        assert_eq!(w.count, 2);
        assert_eq!(
            SourceWindow::admit(Some(w), t0 + Duration::minutes(59), 2, hour),
            Err(NotAdmitted::RateLimited)
        );
        let fresh = SourceWindow::admit(Some(w), t0 + hour, 2, hour).unwrap();
        assert_eq!(fresh.count, 1);
        assert!(w.expired(t0 + hour, hour));
    }

    #[test]
    fn ipv6_sources_count_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(source_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
