//! Limits on outbound metadata-document fetches.
//!
//! Anyone can make the authorization server fetch a URL: an authorization
//! request naming `https://victim.example/<anything>` as its `client_id` is
//! enough. These limits keep the server from being used to flood a host or
//! to exhaust itself, and keep anonymous traffic from spending the budget a
//! real client needs. Pure: the caller passes `now`.
//!
//! [`FetchGovernor`] decides every fetch by its [`FetchClass`]:
//!
//! - **Revalidation** of a *known* document (one that is in the cache,
//!   fresh or stale, or that validated within [`FetchLimits::known_for`]):
//!   only the per-host revalidation bucket and the global in-flight bound
//!   apply. Anonymous callers cannot spend this bucket, because naming an
//!   unknown URL never draws from it, and a known URL with a fresh cache
//!   entry is answered from the cache without fetching.
//! - **First fetch** of an unknown URL: the per-host first-fetch bucket,
//!   and also a bucket per requesting source ([`RequestSource`], when the
//!   HTTP edge supplies one), per project and per URL directory (host plus
//!   the path up to its last `/`). First fetches (and previews) may hold at
//!   most [`FetchLimits::first_fetch_in_flight`] of the in-flight slots, so
//!   revalidations always find a free slot.
//! - **Preview** (the dashboard's `POST /oauth2/cimd/resolve`): its own
//!   smaller global bucket and the per-source bucket; it never draws from
//!   the revalidation or first-fetch buckets.
//!
//! Inside the in-flight bound, one host and one source may each hold at
//! most [`FetchLimits::max_in_flight_per_host`] /
//! [`FetchLimits::max_in_flight_per_source`] fetches, so tarpit hosts that
//! accept connections and never answer cannot hold every slot.
//!
//! A failed fetch of a URL that never validated is remembered for
//! [`FetchLimits::negative_ttl`] (seconds): repeating it answers the same
//! failure without fetching. A URL that validated before is never
//! negatively cached, so a fixed document recovers on the next request.
//!
//! A stale cache entry within the project's
//! [`super::CimdPolicy::stale_grace`] is served (stale-while-revalidate)
//! when the revalidation is refused by these limits or the host is busy
//! (timeout, connection failure, HTTP 429 or 5xx).

use std::collections::HashMap;
use std::net::IpAddr;

use super::error::CimdError;

use time::{Duration, OffsetDateTime};

/// The limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchLimits {
    /// Fetches running at once, over all hosts (default 256).
    pub max_in_flight: usize,
    /// Fetches a host may receive in a burst (default 30).
    pub per_host_burst: u32,
    /// How long a host's bucket takes to regain one fetch (default 2 s,
    /// i.e. 30 a minute sustained).
    pub per_host_refill: Duration,
    /// Hosts tracked at once (default 10,000); beyond it, idle buckets are
    /// dropped, and if none is idle the fetch is refused. The same bound
    /// applies to every other table (sources, projects, directories, known
    /// URLs, failed URLs).
    pub max_hosts: usize,
    /// Revalidations of known documents a host may receive in a burst
    /// (default 30), one more every [`Self::revalidation_refill`] (2 s).
    pub revalidation_burst: u32,
    /// See [`Self::revalidation_burst`].
    pub revalidation_refill: Duration,
    /// First fetches one request source may cause in a burst (default 10),
    /// one more every [`Self::per_source_refill`] (6 s).
    pub per_source_burst: u32,
    /// See [`Self::per_source_burst`].
    pub per_source_refill: Duration,
    /// First fetches one project may cause in a burst (default 120), one
    /// more every [`Self::per_project_refill`] (500 ms).
    pub per_project_burst: u32,
    /// See [`Self::per_project_burst`].
    pub per_project_refill: Duration,
    /// First fetches under one URL directory in a burst (default 10), one
    /// more every [`Self::per_prefix_refill`] (6 s).
    pub per_prefix_burst: u32,
    /// See [`Self::per_prefix_burst`].
    pub per_prefix_refill: Duration,
    /// Preview fetches over the whole server in a burst (default 10), one
    /// more every [`Self::preview_refill`] (6 s).
    pub preview_burst: u32,
    /// See [`Self::preview_burst`].
    pub preview_refill: Duration,
    /// In-flight fetches to one host (default 8).
    pub max_in_flight_per_host: usize,
    /// In-flight fetches caused by one source (default 4).
    pub max_in_flight_per_source: usize,
    /// In-flight first fetches and previews together (default 192, three
    /// quarters of [`Self::max_in_flight`]); the rest is kept for
    /// revalidations.
    pub first_fetch_in_flight: usize,
    /// How long a URL that failed (and never validated) answers its
    /// failure without a new fetch (default 10 s; zero disables).
    pub negative_ttl: Duration,
    /// How long after its last successful validation a URL still counts as
    /// known (default 7 days).
    pub known_for: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            per_host_burst: 30,
            per_host_refill: Duration::seconds(2),
            max_hosts: 10_000,
            revalidation_burst: 30,
            revalidation_refill: Duration::seconds(2),
            per_source_burst: 10,
            per_source_refill: Duration::seconds(6),
            per_project_burst: 120,
            per_project_refill: Duration::milliseconds(500),
            per_prefix_burst: 10,
            per_prefix_refill: Duration::seconds(6),
            preview_burst: 10,
            preview_refill: Duration::seconds(6),
            max_in_flight_per_host: 8,
            max_in_flight_per_source: 4,
            first_fetch_in_flight: 192,
            negative_ttl: Duration::seconds(10),
            known_for: Duration::days(7),
        }
    }
}

impl FetchLimits {
    /// Sets the in-flight bound.
    #[must_use]
    pub const fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Sets the per-host bucket of first fetches: `burst` fetches, one
    /// more every `refill`.
    #[must_use]
    pub const fn per_host(mut self, burst: u32, refill: Duration) -> Self {
        self.per_host_burst = burst;
        self.per_host_refill = refill;
        self
    }

    /// Sets the per-host bucket of revalidations of known documents.
    #[must_use]
    pub const fn revalidation(mut self, burst: u32, refill: Duration) -> Self {
        self.revalidation_burst = burst;
        self.revalidation_refill = refill;
        self
    }

    /// Sets the per-source bucket of first fetches and previews.
    #[must_use]
    pub const fn per_source(mut self, burst: u32, refill: Duration) -> Self {
        self.per_source_burst = burst;
        self.per_source_refill = refill;
        self
    }

    /// Sets the per-project bucket of first fetches.
    #[must_use]
    pub const fn per_project(mut self, burst: u32, refill: Duration) -> Self {
        self.per_project_burst = burst;
        self.per_project_refill = refill;
        self
    }

    /// Sets the per-directory bucket of first fetches.
    #[must_use]
    pub const fn per_prefix(mut self, burst: u32, refill: Duration) -> Self {
        self.per_prefix_burst = burst;
        self.per_prefix_refill = refill;
        self
    }

    /// Sets the global preview bucket.
    #[must_use]
    pub const fn preview(mut self, burst: u32, refill: Duration) -> Self {
        self.preview_burst = burst;
        self.preview_refill = refill;
        self
    }

    /// Sets the in-flight caps per host and per source.
    #[must_use]
    pub const fn in_flight_caps(mut self, per_host: usize, per_source: usize, first_fetches: usize) -> Self {
        self.max_in_flight_per_host = per_host;
        self.max_in_flight_per_source = per_source;
        self.first_fetch_in_flight = first_fetches;
        self
    }

    /// Sets how long a failed URL answers its failure without fetching.
    #[must_use]
    pub const fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }
}

/// Who caused a request, as the HTTP edge knows it: the client IP (or
/// another key the host chooses, such as an authenticated tenant). The
/// core never reads sockets or headers; the edge passes this value, e.g.
/// as an `http::Request` extension read by [`crate::http::OAuthEndpoints`]
/// (the `axum` router inserts it from the connection's peer address when
/// the host has not). Behind a reverse proxy, the host must insert the
/// address it trusts (from its own `X-Forwarded-For` handling), or every
/// request shares the proxy's source.
///
/// One value serves every feature that limits per source (also available
/// as [`crate::http::RequestSource`]): CIMD first fetches are limited per
/// source, and a registration without an initial access token is
/// rate-limited per source address and needs one ([`Self::ip`]; a source
/// made with [`Self::named`] has no address, so tokenless registration
/// does not admit it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestSource {
    key: String,
    /// The address, IPv6 reduced to its /64, IPv4-mapped as IPv4.
    ip: Option<IpAddr>,
}

impl RequestSource {
    /// The source for a client IP. IPv6 addresses are reduced to their /64
    /// (one subscriber usually holds a whole /64); IPv4-mapped addresses
    /// count as their IPv4 address.
    pub fn from_ip(ip: IpAddr) -> Self {
        let ip = crate::tokenless::source_key(ip);
        let key = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("{v6}/64"),
        };
        Self { key, ip: Some(ip) }
    }

    /// A source named by the host (at most 128 bytes are kept).
    pub fn named(key: &str) -> Self {
        let mut end = key.len().min(128);
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            key: format!("named:{}", key.get(..end).unwrap_or_default()),
            ip: None,
        }
    }

    /// The source's address ([`Self::from_ip`]; IPv6 reduced to its /64
    /// network address), `None` for a named source.
    pub const fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.key
    }
}

/// Which budget a fetch draws from; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchClass {
    /// Revalidating a known document.
    Revalidation,
    /// The first fetch of an unknown URL.
    FirstFetch,
    /// A dashboard preview.
    Preview,
}

impl FetchClass {
    /// The class of a fetch: `Preview` for previews, else `Revalidation`
    /// when the URL is known, else `FirstFetch`.
    pub const fn of(preview: bool, known: bool) -> Self {
        match (preview, known) {
            (true, _) => Self::Preview,
            (false, true) => Self::Revalidation,
            (false, false) => Self::FirstFetch,
        }
    }
}

/// One fetch to decide.
#[derive(Clone, Copy, Debug)]
pub struct FetchRequest<'a> {
    /// Its class.
    pub class: FetchClass,
    /// The URL's host.
    pub host: &'a str,
    /// The URL's directory (host and path up to the last `/`), see
    /// [`super::ClientIdUrl::directory`].
    pub directory: &'a str,
    /// The project.
    pub project: &'a str,
    /// Who asked, if the edge said.
    pub source: Option<&'a RequestSource>,
}

/// The fetches in flight that a new one would join, counted by the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InFlightCounts {
    /// All fetches.
    pub total: usize,
    /// First fetches and previews.
    pub first: usize,
    /// Fetches to the same host.
    pub host: usize,
    /// Fetches caused by the same source.
    pub source: usize,
}

/// Why a fetch was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The global in-flight bound (or the first-fetch share of it).
    InFlight,
    /// The per-host in-flight cap.
    HostInFlight,
    /// The per-source in-flight cap.
    SourceInFlight,
    /// A token bucket is empty.
    Budget,
}

/// The state behind every fetch decision: token buckets by class, known
/// URLs, recent failures. Every table is bounded by
/// [`FetchLimits::max_hosts`]. Keys for URLs are `project` and the URL
/// string joined by a NUL byte ([`FetchGovernor::url_key`]).
#[derive(Debug, Default)]
pub struct FetchGovernor {
    revalidate_host: HostRateLimiter,
    first_host: HostRateLimiter,
    first_source: HostRateLimiter,
    first_project: HostRateLimiter,
    first_prefix: HostRateLimiter,
    preview_global: HostRateLimiter,
    known: HashMap<String, OffsetDateTime>,
    negative: HashMap<String, (OffsetDateTime, CimdError)>,
}

impl FetchGovernor {
    /// An empty governor.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key of a project's URL.
    pub fn url_key(project: &str, url: &str) -> String {
        format!("{project}\0{url}")
    }

    /// Whether the URL validated within [`FetchLimits::known_for`].
    pub fn is_known(&self, key: &str, now: OffsetDateTime, limits: &FetchLimits) -> bool {
        self.known.get(key).is_some_and(|at| now - *at < limits.known_for)
    }

    /// Records that the URL validated at `now`, and forgets any failure.
    pub fn record_success(&mut self, key: &str, now: OffsetDateTime, limits: &FetchLimits) {
        self.negative.remove(key);
        if !self.known.contains_key(key) && self.known.len() >= limits.max_hosts {
            let known_for = limits.known_for;
            self.known.retain(|_, at| now - *at < known_for);
            if self.known.len() >= limits.max_hosts {
                // Forget the longest-unconfirmed URL: it is the one whose
                // owner has not signed anyone in for the longest time.
                if let Some(oldest) = self.known.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone()) {
                    self.known.remove(&oldest);
                }
            }
        }
        self.known.insert(key.to_owned(), now);
    }

    /// Records a failed fetch or validation. Never for a known URL, never
    /// for a refusal by these limits (the caller does not call it then).
    pub fn record_failure(&mut self, key: &str, error: &CimdError, now: OffsetDateTime, limits: &FetchLimits) {
        if limits.negative_ttl <= Duration::ZERO || self.is_known(key, now, limits) {
            return;
        }
        if !self.negative.contains_key(key) && self.negative.len() >= limits.max_hosts {
            self.negative.retain(|_, (until, _)| *until > now);
            if self.negative.len() >= limits.max_hosts {
                return;
            }
        }
        self.negative
            .insert(key.to_owned(), (now + limits.negative_ttl, error.clone()));
    }

    /// The remembered failure of an unknown URL, if still within
    /// [`FetchLimits::negative_ttl`].
    pub fn negative(&self, key: &str, now: OffsetDateTime) -> Option<CimdError> {
        self.negative
            .get(key)
            .filter(|(until, _)| *until > now)
            .map(|(_, e)| e.clone())
    }

    /// Decides one fetch, taking from every bucket it draws from only when
    /// all of them have a token.
    ///
    /// # Errors
    /// The first [`Refusal`].
    pub fn try_admit(
        &mut self,
        req: &FetchRequest<'_>,
        in_flight: InFlightCounts,
        now: OffsetDateTime,
        limits: &FetchLimits,
    ) -> Result<(), Refusal> {
        if in_flight.total >= limits.max_in_flight {
            return Err(Refusal::InFlight);
        }
        if req.class != FetchClass::Revalidation && in_flight.first >= limits.first_fetch_in_flight {
            return Err(Refusal::InFlight);
        }
        if in_flight.host >= limits.max_in_flight_per_host {
            return Err(Refusal::HostInFlight);
        }
        if req.source.is_some() && in_flight.source >= limits.max_in_flight_per_source {
            return Err(Refusal::SourceInFlight);
        }
        let source = req.source.map(RequestSource::as_str);
        let mut draws: Vec<(&mut HostRateLimiter, &str, u32, Duration)> = Vec::with_capacity(4);
        match req.class {
            FetchClass::Revalidation => {
                draws.push((
                    &mut self.revalidate_host,
                    req.host,
                    limits.revalidation_burst,
                    limits.revalidation_refill,
                ));
            }
            FetchClass::FirstFetch => {
                draws.push((
                    &mut self.first_host,
                    req.host,
                    limits.per_host_burst,
                    limits.per_host_refill,
                ));
                draws.push((
                    &mut self.first_project,
                    req.project,
                    limits.per_project_burst,
                    limits.per_project_refill,
                ));
                draws.push((
                    &mut self.first_prefix,
                    req.directory,
                    limits.per_prefix_burst,
                    limits.per_prefix_refill,
                ));
                if let Some(s) = source {
                    draws.push((
                        &mut self.first_source,
                        s,
                        limits.per_source_burst,
                        limits.per_source_refill,
                    ));
                }
            }
            FetchClass::Preview => {
                draws.push((
                    &mut self.preview_global,
                    "",
                    limits.preview_burst,
                    limits.preview_refill,
                ));
                if let Some(s) = source {
                    draws.push((
                        &mut self.first_source,
                        s,
                        limits.per_source_burst,
                        limits.per_source_refill,
                    ));
                }
            }
        }
        let all = draws
            .iter()
            .all(|(l, key, burst, refill)| l.available(key, now, &limits.with_bucket(*burst, *refill)) > 0);
        if !all {
            return Err(Refusal::Budget);
        }
        for (l, key, burst, refill) in draws {
            if !l.try_acquire(key, now, &limits.with_bucket(burst, refill)) {
                return Err(Refusal::Budget);
            }
        }
        Ok(())
    }
}

impl FetchLimits {
    fn with_bucket(&self, burst: u32, refill: Duration) -> Self {
        Self {
            per_host_burst: burst,
            per_host_refill: refill,
            ..*self
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u32,
    /// When the bucket last gained a token (or was created).
    stamp: OffsetDateTime,
}

/// Token buckets per host.
#[derive(Debug, Default)]
pub struct HostRateLimiter {
    buckets: HashMap<String, Bucket>,
}

impl HostRateLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one fetch from `host`'s bucket at `now`; `false` when the
    /// host has no fetch left (or too many hosts are busy).
    pub fn try_acquire(&mut self, host: &str, now: OffsetDateTime, limits: &FetchLimits) -> bool {
        if limits.per_host_burst == 0 {
            return false;
        }
        if !self.buckets.contains_key(host) && self.buckets.len() >= limits.max_hosts {
            self.buckets
                .retain(|_, b| refill(*b, now, limits).tokens < limits.per_host_burst);
            if self.buckets.len() >= limits.max_hosts {
                return false;
            }
        }
        let bucket = self.buckets.entry(host.to_owned()).or_insert(Bucket {
            tokens: limits.per_host_burst,
            stamp: now,
        });
        *bucket = refill(*bucket, now, limits);
        if bucket.tokens == 0 {
            return false;
        }
        bucket.tokens -= 1;
        true
    }

    /// The fetches `host` has left at `now` (without taking one); 1 for a
    /// host not yet tracked when the table has room.
    pub fn available(&self, host: &str, now: OffsetDateTime, limits: &FetchLimits) -> u32 {
        if limits.per_host_burst == 0 {
            return 0;
        }
        match self.buckets.get(host) {
            Some(b) => refill(*b, now, limits).tokens,
            None if self.buckets.len() < limits.max_hosts => limits.per_host_burst,
            None => {
                let idle = self
                    .buckets
                    .values()
                    .any(|b| refill(*b, now, limits).tokens >= limits.per_host_burst);
                if idle { limits.per_host_burst } else { 0 }
            }
        }
    }

    /// Number of hosts tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no host is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

fn refill(b: Bucket, now: OffsetDateTime, limits: &FetchLimits) -> Bucket {
    if b.tokens >= limits.per_host_burst || limits.per_host_refill <= Duration::ZERO {
        return Bucket {
            tokens: limits.per_host_burst.max(b.tokens),
            stamp: now,
        };
    }
    let elapsed = now - b.stamp;
    if elapsed <= Duration::ZERO {
        return b;
    }
    let gained = (elapsed.whole_milliseconds() / limits.per_host_refill.whole_milliseconds().max(1)).max(0);
    let gained = u32::try_from(gained).unwrap_or(u32::MAX);
    if gained == 0 {
        return b;
    }
    let tokens = b.tokens.saturating_add(gained).min(limits.per_host_burst);
    let stamp = if tokens >= limits.per_host_burst {
        now
    } else {
        b.stamp + limits.per_host_refill * gained
    };
    Bucket { tokens, stamp }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

    #[test]
    fn burst_then_refill() {
        let limits = FetchLimits::default().per_host(3, Duration::seconds(10));
        let mut l = HostRateLimiter::new();
        for _ in 0..3 {
            assert!(l.try_acquire("a.example", T0, &limits));
        }
        assert!(!l.try_acquire("a.example", T0, &limits), "burst spent");
        assert!(l.try_acquire("b.example", T0, &limits), "hosts are separate");
        assert!(!l.try_acquire("a.example", T0 + Duration::seconds(9), &limits));
        assert!(
            l.try_acquire("a.example", T0 + Duration::seconds(10), &limits),
            "one refilled"
        );
        assert!(!l.try_acquire("a.example", T0 + Duration::seconds(11), &limits));
        // Long idle: back to a full burst, not more.
        let later = T0 + Duration::hours(1);
        for _ in 0..3 {
            assert!(l.try_acquire("a.example", later, &limits));
        }
        assert!(!l.try_acquire("a.example", later, &limits));
    }

    #[test]
    fn host_table_is_bounded() {
        let limits = FetchLimits {
            max_hosts: 2,
            ..FetchLimits::default().per_host(1, Duration::minutes(1))
        };
        let mut l = HostRateLimiter::new();
        assert!(l.try_acquire("a", T0, &limits));
        assert!(l.try_acquire("b", T0, &limits));
        assert!(
            !l.try_acquire("c", T0, &limits),
            "both buckets busy: refuse rather than grow"
        );
        assert!(
            l.try_acquire("c", T0 + Duration::minutes(1), &limits),
            "idle buckets are dropped"
        );
        assert!(l.len() <= 2);
    }

    fn req<'a>(class: FetchClass, host: &'a str, dir: &'a str, source: Option<&'a RequestSource>) -> FetchRequest<'a> {
        FetchRequest {
            class,
            host,
            directory: dir,
            project: "p",
            source,
        }
    }

    #[test]
    fn first_fetches_cannot_spend_the_revalidation_budget() {
        let limits = FetchLimits::default();
        let mut g = FetchGovernor::new();
        let none = InFlightCounts::default();
        // anonymous junk under many directories and sources: spends the
        // host's first-fetch bucket
        let sources: Vec<_> = (0..10u8)
            .map(|i| RequestSource::from_ip(IpAddr::from([198, 51, 100, i])))
            .collect();
        let dirs: Vec<_> = (0..40).map(|i| format!("h/{i}/")).collect();
        let mut granted = 0;
        for (i, d) in dirs.iter().enumerate() {
            let r = req(FetchClass::FirstFetch, "h", d, sources.get(i % 10));
            granted += usize::from(g.try_admit(&r, none, T0, &limits).is_ok());
        }
        assert_eq!(granted, 30, "the per-host first-fetch burst");
        // the known client on that host still revalidates
        for _ in 0..30 {
            assert!(
                g.try_admit(&req(FetchClass::Revalidation, "h", "h/", None), none, T0, &limits)
                    .is_ok()
            );
        }
        assert_eq!(
            g.try_admit(&req(FetchClass::Revalidation, "h", "h/", None), none, T0, &limits),
            Err(Refusal::Budget)
        );
    }

    #[test]
    fn one_source_one_directory_and_previews_have_their_own_budgets() {
        let limits = FetchLimits::default();
        let mut g = FetchGovernor::new();
        let none = InFlightCounts::default();
        let a = RequestSource::from_ip(IpAddr::from([203, 0, 113, 1]));
        let b = RequestSource::from_ip(IpAddr::from([203, 0, 113, 2]));
        for i in 0..10 {
            let dir = format!("h{i}/");
            assert!(
                g.try_admit(&req(FetchClass::FirstFetch, "x", &dir, Some(&a)), none, T0, &limits)
                    .is_ok()
            );
        }
        let refused = g.try_admit(&req(FetchClass::FirstFetch, "y", "y/", Some(&a)), none, T0, &limits);
        assert_eq!(refused, Err(Refusal::Budget), "per-source burst of 10");
        // the refusal took nothing from the other buckets: host y still full
        for i in 0..10 {
            let dir = format!("y{i}/");
            assert!(
                g.try_admit(&req(FetchClass::FirstFetch, "y", &dir, Some(&b)), none, T0, &limits)
                    .is_ok()
            );
        }
        // one directory: 10
        let mut g = FetchGovernor::new();
        let granted = (0..20)
            .filter(|_| {
                g.try_admit(&req(FetchClass::FirstFetch, "z", "z/junk/", None), none, T0, &limits)
                    .is_ok()
            })
            .count();
        assert_eq!(granted, 10);
        // previews: their own 10, and they leave first fetches alone
        let granted = (0..20)
            .filter(|i| {
                let host = format!("p{i}");
                g.try_admit(&req(FetchClass::Preview, &host, "d/", None), none, T0, &limits)
                    .is_ok()
            })
            .count();
        assert_eq!(granted, 10);
        assert!(
            g.try_admit(&req(FetchClass::FirstFetch, "q", "q/", None), none, T0, &limits)
                .is_ok()
        );
    }

    #[test]
    fn in_flight_caps() {
        let limits = FetchLimits::default();
        let mut g = FetchGovernor::new();
        let s = RequestSource::from_ip(IpAddr::from([203, 0, 113, 9]));
        let r = req(FetchClass::FirstFetch, "h", "h/", Some(&s));
        let at = |total, first, host, source| InFlightCounts {
            total,
            first,
            host,
            source,
        };
        assert_eq!(g.try_admit(&r, at(256, 0, 0, 0), T0, &limits), Err(Refusal::InFlight));
        assert_eq!(g.try_admit(&r, at(192, 192, 0, 0), T0, &limits), Err(Refusal::InFlight));
        assert_eq!(g.try_admit(&r, at(8, 8, 8, 0), T0, &limits), Err(Refusal::HostInFlight));
        assert_eq!(
            g.try_admit(&r, at(4, 4, 0, 4), T0, &limits),
            Err(Refusal::SourceInFlight)
        );
        // revalidations keep the last quarter of the slots
        let known = req(FetchClass::Revalidation, "k", "k/", None);
        assert!(g.try_admit(&known, at(192, 192, 0, 0), T0, &limits).is_ok());
    }

    #[test]
    fn negative_cache_is_short_and_never_for_known_urls() {
        let limits = FetchLimits::default();
        let mut g = FetchGovernor::new();
        let bad = FetchGovernor::url_key("p", "https://h/bad");
        let good = FetchGovernor::url_key("p", "https://h/good");
        g.record_failure(&bad, &CimdError::Timeout, T0, &limits);
        assert_eq!(g.negative(&bad, T0 + Duration::seconds(9)), Some(CimdError::Timeout));
        assert_eq!(g.negative(&bad, T0 + Duration::seconds(10)), None);
        g.record_success(&good, T0, &limits);
        g.record_failure(&good, &CimdError::Timeout, T0, &limits);
        assert_eq!(g.negative(&good, T0), None, "succeeded before: never negatively cached");
        assert!(g.is_known(&good, T0 + Duration::days(6), &limits));
        assert!(!g.is_known(&good, T0 + Duration::days(7), &limits));
        // a success clears an earlier failure
        g.record_failure(&bad, &CimdError::Timeout, T0, &limits);
        g.record_success(&bad, T0, &limits);
        assert_eq!(g.negative(&bad, T0), None);
    }

    #[test]
    fn tables_are_bounded() {
        let limits = FetchLimits {
            max_hosts: 3,
            ..FetchLimits::default()
        };
        let mut g = FetchGovernor::new();
        for i in 0..10 {
            let k = format!("k{i}");
            g.record_success(&k, T0 + Duration::seconds(i), &limits);
            g.record_failure(&format!("f{i}"), &CimdError::Timeout, T0, &limits);
        }
        assert!(g.known.len() <= 3 && g.negative.len() <= 3);
        assert!(g.is_known("k9", T0 + Duration::seconds(10), &limits), "newest kept");
    }

    #[test]
    fn sources_aggregate_ipv6_to_64() {
        let a = RequestSource::from_ip("2001:db8:1:2:3:4:5:6".parse().unwrap());
        let b = RequestSource::from_ip("2001:db8:1:2:ffff::1".parse().unwrap());
        let c = RequestSource::from_ip("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            RequestSource::from_ip("::ffff:192.0.2.1".parse().unwrap()),
            RequestSource::from_ip("192.0.2.1".parse().unwrap())
        );
        assert_eq!(RequestSource::named(&"x".repeat(500)).as_str().len(), 6 + 128);
    }

    proptest! {
        #[test]
        fn never_more_than_burst_plus_refills(steps in proptest::collection::vec(0i64..5_000, 1..200)) {
            let limits = FetchLimits::default().per_host(5, Duration::seconds(1));
            let mut l = HostRateLimiter::new();
            let mut now = T0;
            let mut granted = 0i64;
            for ms in steps {
                now += Duration::milliseconds(ms);
                if l.try_acquire("h", now, &limits) {
                    granted += 1;
                }
            }
            let elapsed = (now - T0).whole_seconds();
            prop_assert!(granted <= 5 + elapsed);
        }
    }
}
