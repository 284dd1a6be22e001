//! How long a fetched document may be reused: [RFC 9111] directives turned
//! into an expiry clamped to the project's bounds, and the cache entry.
//!
//! The authorization server uses one fetched document for many users, so it
//! behaves as a shared cache ([RFC 9111 section 3]): `s-maxage` wins over
//! `max-age`, and `private` forbids storing.
//!
//! Decisions (SPEC-CHECKLIST section 1, "caching"):
//!
//! - `no-store`, `no-cache` and `private` mean the document is not cached
//!   at all; the next resolution fetches again (concurrent resolutions
//!   still share one fetch). `no-cache` would allow storing with
//!   revalidation, but this cache does not revalidate, so it stores
//!   nothing.
//! - Otherwise the freshness lifetime is `s-maxage`, else `max-age`, else
//!   `Expires` minus `Date` (minus now without a usable `Date`), minus
//!   `Age`; a response with none of these gets the minimum bound.
//! - The lifetime is clamped to `[min, max]`: a `max-age=0` or an
//!   `Expires` in the past is cached for the minimum, which bounds how
//!   often one document can make this server fetch.
//! - A malformed `max-age`/`s-maxage` value counts as zero; an unparsable
//!   `Expires` counts as already expired ([RFC 9111 section 5.3]).
//!
//! [RFC 9111]: https://www.rfc-editor.org/rfc/rfc9111
//! [RFC 9111 section 3]: https://www.rfc-editor.org/rfc/rfc9111#section-3
//! [RFC 9111 section 5.3]: https://www.rfc-editor.org/rfc/rfc9111#section-5.3

use serde::{Deserialize, Serialize};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

use super::fetch::FetchResponse;
use crate::client::{Client, ClientMetadata};

/// The `Cache-Control` directives that matter to a CIMD cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheDirectives {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (without a field list).
    pub no_cache: bool,
    /// `private`.
    pub private: bool,
    /// `max-age`, in seconds (malformed values count as 0; duplicates keep
    /// the smallest).
    pub max_age: Option<u64>,
    /// `s-maxage`, in seconds.
    pub s_maxage: Option<u64>,
}

impl CacheDirectives {
    /// Parses a `Cache-Control` value. Directive names are
    /// case-insensitive; unknown directives are ignored; never fails.
    pub fn parse(value: &str) -> Self {
        let mut d = Self::default();
        for part in value.split(',') {
            let part = part.trim();
            let (name, arg) = match part.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (part, None),
            };
            let name = name.to_ascii_lowercase();
            match name.as_str() {
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                "private" => d.private = true,
                "max-age" => d.max_age = Some(min_opt(d.max_age, delta_seconds(arg))),
                "s-maxage" => d.s_maxage = Some(min_opt(d.s_maxage, delta_seconds(arg))),
                _ => {}
            }
        }
        d
    }

    /// Whether the directives forbid caching.
    pub const fn forbids_storing(&self) -> bool {
        self.no_store || self.no_cache || self.private
    }
}

fn min_opt(current: Option<u64>, new: u64) -> u64 {
    current.map_or(new, |c| c.min(new))
}

/// [RFC 9111] delta-seconds; malformed counts as 0, huge values saturate.
///
/// [RFC 9111]: https://www.rfc-editor.org/rfc/rfc9111
fn delta_seconds(arg: Option<&str>) -> u64 {
    match arg {
        Some(a) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) => a.parse().unwrap_or(u64::MAX),
        _ => 0,
    }
}

/// The project's bounds on how long a document is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheBounds {
    /// The shortest reuse of a cacheable document.
    pub min: Duration,
    /// The longest reuse.
    pub max: Duration,
}

/// When a fetched document stops being reusable, or `None` when it must
/// not be cached at all. See the module documentation for the rules.
pub fn cache_expiry(response: &FetchResponse, now: OffsetDateTime, bounds: CacheBounds) -> Option<OffsetDateTime> {
    let directives = response
        .cache_control
        .as_deref()
        .map(CacheDirectives::parse)
        .unwrap_or_default();
    if directives.forbids_storing() {
        return None;
    }
    let lifetime = freshness_lifetime(response, &directives, now);
    let min = bounds.min.max(Duration::ZERO);
    let max = bounds.max.max(min);
    let clamped = lifetime.map_or(min, |l| l.clamp(min, max));
    now.checked_add(clamped)
}

/// The response's own freshness lifetime ([RFC 9111 section 4.2.1]), minus
/// its `Age`; `None` when it states none.
///
/// [RFC 9111 section 4.2.1]: https://www.rfc-editor.org/rfc/rfc9111#section-4.2.1
fn freshness_lifetime(response: &FetchResponse, d: &CacheDirectives, now: OffsetDateTime) -> Option<Duration> {
    let lifetime = if let Some(s) = d.s_maxage.or(d.max_age) {
        Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))
    } else {
        let expires = response.expires.as_deref()?;
        match parse_http_date(expires) {
            None => Duration::ZERO,
            Some(exp) => {
                let base = response.date.as_deref().and_then(parse_http_date).unwrap_or(now);
                exp - base
            }
        }
    };
    let age = response
        .age
        .as_deref()
        .map(|a| delta_seconds(Some(a.trim())))
        .unwrap_or(0);
    Some(lifetime.saturating_sub(Duration::seconds(i64::try_from(age).unwrap_or(i64::MAX))))
}

const IMF_FIXDATE: &[BorrowedFormatItem<'static>] =
    format_description!("[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT");

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only HTTP
/// date form senders may generate; obsolete forms count as invalid.
pub fn parse_http_date(value: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(value.trim(), IMF_FIXDATE)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// A validated document in the cache, for one project and URL.
///
/// The driver re-validates `document` against the project's current policy
/// on every use, so a policy change takes effect at once even for cached
/// documents; `client` is the result of validation at fetch time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CachedDocument {
    /// The document as fetched (parsed; without forbidden members, which
    /// are never cached).
    pub document: ClientMetadata,
    /// The client it resolved to when fetched.
    pub client: Client,
    /// When it was fetched.
    #[serde(with = "time::serde::rfc3339")]
    pub fetched_at: OffsetDateTime,
    /// When it stops being usable.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl CachedDocument {
    /// An entry.
    pub const fn new(
        document: ClientMetadata,
        client: Client,
        fetched_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Self {
        Self {
            document,
            client,
            fetched_at,
            expires_at,
        }
    }

    /// Whether the entry may still be used at `now`.
    pub fn is_fresh(&self, now: OffsetDateTime) -> bool {
        now < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);
    const BOUNDS: CacheBounds = CacheBounds {
        min: Duration::minutes(5),
        max: Duration::hours(24),
    };

    fn resp() -> FetchResponse {
        FetchResponse::new(200, Vec::new())
    }

    fn expiry(r: &FetchResponse) -> Option<Duration> {
        cache_expiry(r, NOW, BOUNDS).map(|e| e - NOW)
    }

    #[test]
    fn directives_parse() {
        let d = CacheDirectives::parse("Public, MAX-AGE=600, s-maxage=\"30\", no-transform");
        assert_eq!(d.max_age, Some(600));
        assert_eq!(d.s_maxage, Some(30));
        assert!(!d.forbids_storing());
        assert!(CacheDirectives::parse("no-store").no_store);
        assert!(CacheDirectives::parse("no-cache").no_cache);
        assert!(CacheDirectives::parse(" private ").private);
        assert_eq!(CacheDirectives::parse("max-age=abc").max_age, Some(0));
        assert_eq!(CacheDirectives::parse("max-age=").max_age, Some(0));
        assert_eq!(CacheDirectives::parse("max-age=-5").max_age, Some(0));
        assert_eq!(CacheDirectives::parse("max-age=600, max-age=60").max_age, Some(60));
        assert_eq!(
            CacheDirectives::parse("max-age=99999999999999999999999").max_age,
            Some(u64::MAX)
        );
        assert_eq!(CacheDirectives::parse(""), CacheDirectives::default());
    }

    #[test]
    fn expiry_table() {
        let table: Vec<(FetchResponse, Option<Duration>)> = vec![
            // no information: the minimum
            (resp(), Some(Duration::minutes(5))),
            (resp().with_cache_control("max-age=3600"), Some(Duration::hours(1))),
            (resp().with_cache_control("max-age=60"), Some(Duration::minutes(5))),
            (resp().with_cache_control("max-age=0"), Some(Duration::minutes(5))),
            (resp().with_cache_control("max-age=31536000"), Some(Duration::hours(24))),
            (
                resp().with_cache_control("max-age=600, s-maxage=7200"),
                Some(Duration::hours(2)),
            ),
            (
                resp().with_cache_control("max-age=7200").with_age("3600"),
                Some(Duration::hours(1)),
            ),
            (
                resp().with_cache_control("max-age=7200").with_age("junk"),
                Some(Duration::hours(2)),
            ),
            (resp().with_cache_control("no-store, max-age=3600"), None),
            (resp().with_cache_control("no-cache"), None),
            (resp().with_cache_control("private, max-age=3600"), None),
            (resp().with_cache_control("NO-STORE"), None),
            // Expires relative to Date
            (
                resp()
                    .with_date("Thu, 26 Nov 2026 11:00:00 GMT")
                    .with_expires("Thu, 26 Nov 2026 13:00:00 GMT"),
                Some(Duration::hours(2)),
            ),
            // Expires without Date: relative to now
            (
                resp().with_expires("Thu, 26 Nov 2026 15:00:00 GMT"),
                Some(Duration::hours(3)),
            ),
            // max-age wins over Expires
            (
                resp()
                    .with_cache_control("max-age=1800")
                    .with_expires("Thu, 26 Nov 2026 15:00:00 GMT"),
                Some(Duration::minutes(30)),
            ),
            // invalid or past Expires: the minimum
            (resp().with_expires("0"), Some(Duration::minutes(5))),
            (
                resp().with_expires("Sunday, 06-Nov-94 08:49:37 GMT"),
                Some(Duration::minutes(5)),
            ),
            (
                resp().with_expires("Thu, 01 Jan 1970 00:00:00 GMT"),
                Some(Duration::minutes(5)),
            ),
            // a Date we cannot parse falls back to now
            (
                resp()
                    .with_date("yesterday")
                    .with_expires("Thu, 26 Nov 2026 14:00:00 GMT"),
                Some(Duration::hours(2)),
            ),
        ];
        for (r, want) in table {
            assert_eq!(expiry(&r), want, "{r:?}");
        }
    }

    #[test]
    fn custom_bounds() {
        let b = CacheBounds {
            min: Duration::ZERO,
            max: Duration::minutes(10),
        };
        let r = resp().with_cache_control("max-age=0");
        assert_eq!(cache_expiry(&r, NOW, b), Some(NOW));
        let r = resp().with_cache_control("max-age=3600");
        assert_eq!(cache_expiry(&r, NOW, b), Some(NOW + Duration::minutes(10)));
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(datetime!(1994-11-06 08:49:37 UTC))
        );
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 +0000"), None);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), None);
        assert_eq!(parse_http_date(""), None);
    }

    #[test]
    fn entry_freshness() {
        use crate::client::MetadataProfile;
        use crate::redirect_uri::RedirectUriPolicy;
        let doc: ClientMetadata = serde_json::from_value(serde_json::json!({
            "client_id": "https://a.example/c", "client_name": "A",
            "redirect_uris": ["https://a.example/cb"]
        }))
        .unwrap();
        let v = doc
            .validate(
                MetadataProfile::Cimd {
                    allow_private_key_jwt: false,
                },
                RedirectUriPolicy::strict(),
            )
            .unwrap();
        let client = Client::new(
            crate::client::ClientId::Metadata(crate::cimd::ClientIdUrl::parse("https://a.example/c").unwrap()),
            v,
            NOW,
        );
        let e = CachedDocument::new(doc, client, NOW, NOW + Duration::minutes(5));
        assert!(e.is_fresh(NOW + Duration::minutes(4)));
        assert!(!e.is_fresh(NOW + Duration::minutes(5)));
        let json = serde_json::to_string(&e).unwrap();
        let back: CachedDocument = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }

    proptest! {
        #[test]
        fn never_panics(cc in ".{0,80}", exp in ".{0,40}", date in ".{0,40}", age in ".{0,12}") {
            let r = resp().with_cache_control(cc).with_expires(exp).with_date(date).with_age(age);
            if let Some(e) = cache_expiry(&r, NOW, BOUNDS) {
                prop_assert!(e >= NOW + BOUNDS.min && e <= NOW + BOUNDS.max);
            }
        }
    }
}
