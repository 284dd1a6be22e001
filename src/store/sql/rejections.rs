//! Rejection counting in memory, flushed to the database in batches.
//!
//! A rejection ([`crate::audit::AuditClass::Rejection`]) is something
//! anyone can cause without credentials: a wrong client secret, an unknown
//! client, a malformed request. Writing a counter upsert for each would
//! make every junk request a database write on one hot row. Instead the
//! store adds each rejection to a counter held here, per (project, minute,
//! event, reason); a background task (and every read of the audit log,
//! and `close()`) flushes the counters: one upsert per counter, plus one
//! insert for the samples kept whole (the first
//! [`super::REJECTION_SAMPLES_PER_MINUTE`] of each counter across every
//! process sharing the database, decided by the upsert's result).
//!
//! Bounded: at most [`MAX_PENDING_COUNTERS`] counters and
//! [`MAX_PENDING_SAMPLES`] sample events wait for a flush; a rejection
//! that would need one more counter is dropped and counted
//! ([`RejectionBuffer::dropped`]). A process that dies loses the counts of
//! at most one [`FLUSH_INTERVAL`] (and of a flush in progress).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::REJECTION_SAMPLES_PER_MINUTE;
use crate::audit::AuditEvent;
use crate::store::StoreError;

/// How often pending rejection counts are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Distinct counters waiting for a flush, at most.
pub const MAX_PENDING_COUNTERS: usize = 4096;
/// Sample events waiting for a flush, at most (further rejections are
/// counted, not kept whole).
pub(crate) const MAX_PENDING_SAMPLES: usize = 4096;
/// Sample events per insert statement.
const SAMPLES_PER_INSERT: usize = 256;

/// One counter: a project, a unix minute, an event name and a reason
/// ([`crate::store::rejection_key`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CounterKey {
    pub(crate) project: String,
    pub(crate) minute: i64,
    pub(crate) event: &'static str,
    pub(crate) reason: String,
}

#[derive(Debug, Default)]
struct Tally {
    count: u64,
    samples: Vec<AuditEvent>,
}

#[derive(Debug, Default)]
struct Pending {
    counters: HashMap<CounterKey, Tally>,
    samples: usize,
}

/// The database side of a flush.
#[async_trait]
pub(crate) trait RejectionWriter: Send + Sync {
    /// Adds `n` to a counter; returns its value after the addition.
    async fn add_count(&self, key: &CounterKey, n: u64) -> Result<u64, StoreError>;
    /// Stores sample events whole.
    async fn insert_samples(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
}

/// What a flush did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    /// Rejections counted into the database.
    pub(crate) counted: u64,
    /// Rejections whose counts were lost to a failed write.
    pub(crate) failed: u64,
}

/// Rejection counters waiting for a flush.
#[derive(Debug, Default)]
pub(crate) struct RejectionBuffer {
    pending: Mutex<Pending>,
    /// One flush at a time, so a read that flushes first sees every count
    /// taken by a flush already under way.
    flushing: tokio::sync::Mutex<()>,
    dropped: AtomicU64,
}

impl RejectionBuffer {
    /// Counts `event` if it is a rejection (`None`: nothing left to do),
    /// or hands it back.
    pub(crate) fn add(&self, event: AuditEvent) -> Option<AuditEvent> {
        let Some((minute, name, reason)) = crate::store::rejection_key(&event) else {
            return Some(event);
        };
        let key = CounterKey {
            project: event.project_id.as_str().to_owned(),
            minute,
            event: name,
            reason,
        };
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let Pending { counters, samples } = &mut *pending;
        if counters.len() >= MAX_PENDING_COUNTERS && !counters.contains_key(&key) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let tally = counters.entry(key).or_default();
        tally.count += 1;
        if tally.samples.len() < REJECTION_SAMPLES_PER_MINUTE as usize && *samples < MAX_PENDING_SAMPLES {
            tally.samples.push(event);
            *samples += 1;
        }
        None
    }

    /// Rejections dropped because too many counters were pending.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether anything waits for a flush.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .counters
            .is_empty()
    }

    /// Writes every pending counter (one [`RejectionWriter::add_count`]
    /// each) and the samples that still fit their minute's quota (one
    /// [`RejectionWriter::insert_samples`] per 256). A counter whose write
    /// fails is lost (counted in [`Flushed::failed`]): retrying could
    /// count it twice.
    pub(crate) async fn flush(&self, writer: &dyn RejectionWriter) -> Flushed {
        let _one = self.flushing.lock().await;
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let mut flushed = Flushed::default();
        let mut samples = Vec::new();
        for (key, tally) in pending.counters {
            match writer.add_count(&key, tally.count).await {
                Ok(after) => {
                    flushed.counted += tally.count;
                    let before = after.saturating_sub(tally.count);
                    let room = u64::from(REJECTION_SAMPLES_PER_MINUTE).saturating_sub(before);
                    let room = usize::try_from(room).unwrap_or(usize::MAX);
                    samples.extend(tally.samples.into_iter().take(room));
                }
                Err(_) => flushed.failed += tally.count,
            }
        }
        samples.sort_by_key(|e| e.at);
        for chunk in samples.chunks(SAMPLES_PER_INSERT) {
            // Counted already; a lost sample only loses its detail.
            let _ = writer.insert_samples(chunk).await;
        }
        flushed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use time::macros::datetime;

    use super::*;
    use crate::audit::AuditKind;
    use crate::project::ProjectId;

    /// Counts writes; holds counters like the database would.
    #[derive(Default)]
    struct CountingWriter {
        writes: AtomicUsize,
        counters: Mutex<HashMap<CounterKey, u64>>,
        samples: Mutex<Vec<AuditEvent>>,
    }

    #[async_trait]
    impl RejectionWriter for CountingWriter {
        async fn add_count(&self, key: &CounterKey, n: u64) -> Result<u64, StoreError> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            let mut c = self.counters.lock().unwrap();
            let v = c.entry(key.clone()).or_default();
            *v += n;
            Ok(*v)
        }
        async fn insert_samples(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.samples.lock().unwrap().extend_from_slice(events);
            Ok(())
        }
    }

    fn rejection(reason: &str, second: i64) -> AuditEvent {
        AuditEvent::new(
            ProjectId::new("proj_a").unwrap(),
            datetime!(2026-11-26 12:00 UTC) + time::Duration::seconds(second),
            AuditKind::TokenRejected {
                client_id: None,
                grant_type: Some("authorization_code".into()),
                error: "invalid_grant".into(),
                reason: reason.into(),
                client_authenticated: false,
            },
        )
    }

    #[test]
    fn a_burst_is_a_few_writes_and_adds_up_exactly() {
        let buffer = RejectionBuffer::default();
        let writer = CountingWriter::default();
        for i in 0..5000 {
            assert!(
                buffer
                    .add(rejection(
                        if i % 2 == 0 { "invalid_code" } else { "pkce_mismatch" },
                        i % 60
                    ))
                    .is_none()
            );
        }
        let flushed = futures_executor::block_on(buffer.flush(&writer));
        assert_eq!(flushed.counted, 5000);
        // Two counters, one sample insert.
        assert_eq!(writer.writes.load(Ordering::Relaxed), 3);
        let counters = writer.counters.lock().unwrap();
        assert_eq!(counters.values().sum::<u64>(), 5000);
        assert_eq!(counters.len(), 2);
        assert_eq!(
            writer.samples.lock().unwrap().len(),
            2 * REJECTION_SAMPLES_PER_MINUTE as usize
        );
        drop(counters);
        assert!(buffer.is_empty());

        // The next flush of the same minute counts on and keeps no more samples.
        for _ in 0..100 {
            assert!(buffer.add(rejection("invalid_code", 59)).is_none());
        }
        futures_executor::block_on(buffer.flush(&writer));
        // One upsert; no sample insert (the minute has its samples).
        assert_eq!(writer.writes.load(Ordering::Relaxed), 4);
        assert_eq!(writer.counters.lock().unwrap().values().sum::<u64>(), 5100);
        assert_eq!(
            writer.samples.lock().unwrap().len(),
            2 * REJECTION_SAMPLES_PER_MINUTE as usize
        );
    }

    #[test]
    fn other_events_are_handed_back() {
        let buffer = RejectionBuffer::default();
        let e = AuditEvent::new(
            ProjectId::new("proj_a").unwrap(),
            datetime!(2026-11-26 12:00 UTC),
            AuditKind::IatRevoked { iat_id: "iat_1".into() },
        );
        assert_eq!(buffer.add(e.clone()), Some(e));
        assert!(buffer.is_empty());
    }

    #[test]
    fn counters_are_bounded_and_overflow_is_counted() {
        let buffer = RejectionBuffer::default();
        for i in 0..MAX_PENDING_COUNTERS + 10 {
            assert!(buffer.add(rejection(&format!("r{i}"), 0)).is_none());
        }
        assert_eq!(buffer.dropped(), 10);
        // A known counter still counts when full.
        assert!(buffer.add(rejection("r0", 0)).is_none());
        assert_eq!(buffer.dropped(), 10);
        let pending = buffer.pending.lock().unwrap();
        assert_eq!(pending.counters.len(), MAX_PENDING_COUNTERS);
        assert!(pending.samples <= MAX_PENDING_SAMPLES);
    }
}
