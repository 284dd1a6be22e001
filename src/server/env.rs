//! Time and randomness, injected.

use std::sync::Mutex;

use rand::Rng as _;
use time::{Duration, OffsetDateTime};

/// The source of the current time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock (UTC).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until told to move: for tests.
#[derive(Debug)]
pub struct FixedClock(Mutex<OffsetDateTime>);

impl FixedClock {
    /// A clock at `at`.
    pub const fn new(at: OffsetDateTime) -> Self {
        Self(Mutex::new(at))
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }

    /// Sets the time.
    pub fn set(&self, at: OffsetDateTime) {
        if let Ok(mut t) = self.0.lock() {
            *t = at;
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0.lock().map(|t| *t).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// A source of cryptographically secure random bytes (tokens, codes, ids).
pub trait RandomSource: Send + Sync {
    /// Fills `dest` with random bytes.
    fn fill(&self, dest: &mut [u8]);
}

/// The operating system's CSPRNG, through `rand`'s thread-local generator
/// (ChaCha, seeded and reseeded from the OS).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemRandom;

impl RandomSource for SystemRandom {
    fn fill(&self, dest: &mut [u8]) {
        rand::rng().fill_bytes(dest);
    }
}

/// A deterministic generator from a seed: for tests only (feature
/// `test-util`, off by default). Every run with the same seed produces the
/// same tokens, so a server using it issues predictable codes and tokens.
#[cfg(any(test, feature = "test-util"))]
pub struct SeededRandom(Mutex<rand::rngs::StdRng>);

#[cfg(any(test, feature = "test-util"))]
impl SeededRandom {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        use rand::SeedableRng as _;
        Self(Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)))
    }
}

#[cfg(any(test, feature = "test-util"))]
impl std::fmt::Debug for SeededRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeededRandom")
    }
}

#[cfg(any(test, feature = "test-util"))]
impl RandomSource for SeededRandom {
    fn fill(&self, dest: &mut [u8]) {
        // A poisoned lock still holds a usable generator; never leave the
        // buffer zeroed.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .fill_bytes(dest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let c = FixedClock::new(datetime!(2026-11-26 12:00 UTC));
        assert_eq!(c.now(), datetime!(2026-11-26 12:00 UTC));
        c.advance(Duration::minutes(5));
        assert_eq!(c.now(), datetime!(2026-11-26 12:05 UTC));
    }

    #[test]
    fn seeded_random_is_deterministic() {
        let (a, b) = (SeededRandom::new(7), SeededRandom::new(7));
        let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
        a.fill(&mut x);
        b.fill(&mut y);
        assert_eq!(x, y);
        let mut z = [0u8; 32];
        SystemRandom.fill(&mut z);
        assert_ne!(z, [0u8; 32]);
    }
}
