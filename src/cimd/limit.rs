//! Limits on outbound metadata-document fetches.
//!
//! Anyone can make the authorization server fetch a URL: an authorization
//! request naming `https://victim.example/<anything>` as its `client_id` is
//! enough, and failures are (rightly) never cached. These limits keep the
//! server from being used to flood a host or to exhaust itself: a bound on
//! fetches in flight, and a token bucket per host. Pure: the caller passes
//! `now`.

use std::collections::HashMap;

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
    /// dropped, and if none is idle the fetch is refused.
    pub max_hosts: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            per_host_burst: 30,
            per_host_refill: Duration::seconds(2),
            max_hosts: 10_000,
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

    /// Sets the per-host bucket: `burst` fetches, one more every `refill`.
    #[must_use]
    pub const fn per_host(mut self, burst: u32, refill: Duration) -> Self {
        self.per_host_burst = burst;
        self.per_host_refill = refill;
        self
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
