//! Rejection counting in memory, flushed to the database in batches.
//!
//! A rejection ([`crate::audit::AuditClass::Rejection`]) is something
//! anyone can cause without credentials: a wrong client secret, an unknown
//! client, a malformed request. Writing a counter upsert for each would
//! make every junk request a database write on one hot row. Instead the
//! store adds each rejection to a counter held here, per (project, minute,
//! event, reason); a background task (and every read of the audit log,
//! and `close()`) flushes the counters: one multi-row upsert per
//! [`COUNTERS_PER_UPSERT`] counters, plus one insert per 256 samples kept
//! whole (the first [`super::REJECTION_SAMPLES_PER_MINUTE`] of each
//! counter across every process sharing the database, decided by the
//! upsert's result).
//!
//! Bounded in memory: at most [`MAX_PENDING_COUNTERS`] counters and
//! [`MAX_PENDING_SAMPLES`] sample events wait for a flush; counters and
//! samples naming a client may use only part of them
//! ([`crate::store::RejectionClients`]), so decoy clients never crowd out
//! the others. A rejection that would need one more counter is dropped
//! and counted ([`RejectionCounter::dropped`], logged at most once a
//! minute).
//!
//! Bounded in time: a flush gives up after [`FLUSH_DEADLINE`] or at its
//! first failed write (the counts not written are lost and counted as
//! failures: retrying could count them twice); a read of the audit log
//! waits at most [`READ_WAIT`] for the flushes before it, then answers
//! with what is stored. The write runs in its own task, so a reader that
//! gives up (or whose future is dropped) never loses the counts taken.
//!
//! Losses: a process that dies loses the counts of at most one
//! [`FLUSH_INTERVAL`] (and of a flush in progress); while the database
//! does not answer, every flush fails and the counts **and samples** of
//! that time are lost (counted in the store's `audit_failures`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::REJECTION_SAMPLES_PER_MINUTE;
use crate::audit::AuditEvent;
use crate::store::{RejectionClients, StoreError};

/// How often pending rejection counts are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// A flush stops writing after this long (the rest is lost and counted).
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(2);
/// How long a read of the audit log (or `close()`) waits for the pending
/// counts to be written before going on without them.
pub const READ_WAIT: Duration = Duration::from_secs(3);
/// Distinct counters waiting for a flush, at most.
pub const MAX_PENDING_COUNTERS: usize = 4096;
/// Sample events waiting for a flush, at most (further rejections are
/// counted, not kept whole).
pub(crate) const MAX_PENDING_SAMPLES: usize = 4096;
/// Counters per upsert statement.
pub(crate) const COUNTERS_PER_UPSERT: usize = 256;
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

#[derive(Debug, Default)]
struct State {
    pending: Pending,
    clients: RejectionClients,
}

/// The database side of a flush.
#[async_trait]
pub(crate) trait RejectionWriter: Send + Sync {
    /// Adds each `n` to its counter (at most [`COUNTERS_PER_UPSERT`], all
    /// distinct) in one statement; returns each counter's value after the
    /// addition, in the order given.
    async fn add_counts(&self, counts: &[(&CounterKey, u64)]) -> Result<Vec<u64>, StoreError>;
    /// Stores sample events whole.
    async fn insert_samples(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
}

/// What a flush did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    /// Rejections counted into the database.
    pub(crate) counted: u64,
    /// Rejections whose counts were lost to a failed (or too slow) write.
    pub(crate) failed: u64,
}

/// Rejection counters waiting for a flush.
#[derive(Debug, Default)]
pub(crate) struct RejectionBuffer {
    state: Mutex<State>,
    /// One flush at a time, so a read that flushes first sees every count
    /// taken by a flush already under way.
    flushing: tokio::sync::Mutex<()>,
    dropped: crate::store::RejectionDrops,
}

impl RejectionBuffer {
    /// Counts `event` if it is a rejection (`None`: nothing left to do),
    /// or hands it back.
    pub(crate) fn add(&self, event: AuditEvent) -> Option<AuditEvent> {
        let Some((minute, name, reason)) = crate::store::rejection_key(&event) else {
            return Some(event);
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State { pending, clients } = &mut *state;
        let project = event.project_id.as_str();
        let mut key = CounterKey {
            project: project.to_owned(),
            minute,
            event: name,
            reason: clients.admit(project, minute, reason),
        };
        let reserve = MAX_PENDING_COUNTERS / 4;
        let Pending { counters, samples } = pending;
        if RejectionClients::names_client(&key.reason)
            && !counters.contains_key(&key)
            && counters.len() >= MAX_PENDING_COUNTERS - reserve
        {
            // Client counters leave a quarter to the others: into the shared one.
            key.reason = RejectionClients::shared(&key.reason);
        }
        if counters.len() >= MAX_PENDING_COUNTERS && !counters.contains_key(&key) {
            drop(state);
            self.dropped.add(minute, "sql");
            return None;
        }
        let sample_room = if RejectionClients::names_client(&key.reason) {
            MAX_PENDING_SAMPLES - MAX_PENDING_SAMPLES / 4
        } else {
            MAX_PENDING_SAMPLES
        };
        let tally = counters.entry(key).or_default();
        tally.count += 1;
        if tally.samples.len() < REJECTION_SAMPLES_PER_MINUTE as usize && *samples < sample_room {
            tally.samples.push(event);
            *samples += 1;
        }
        None
    }

    /// Rejections dropped because too many counters were pending (or the
    /// store was closed).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.count()
    }

    /// Whether anything waits for a flush.
    pub(crate) fn is_empty(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending
            .counters
            .is_empty()
    }

    /// Whether nothing waits and no flush is under way: every count
    /// taken so far is written (or lost).
    fn is_idle(&self) -> bool {
        // Emptiness first: a flush that took the counters holds the lock.
        self.is_empty() && self.flushing.try_lock().is_ok()
    }

    /// Writes every pending counter ([`COUNTERS_PER_UPSERT`] per
    /// [`RejectionWriter::add_counts`]) and the samples that still fit
    /// their minute's quota (one [`RejectionWriter::insert_samples`] per
    /// 256), within `deadline`. At the first failed or late write the
    /// flush stops: the counts not written are lost (counted in
    /// [`Flushed::failed`] and in `failures`): retrying could count them
    /// twice.
    pub(crate) async fn flush(
        &self,
        writer: &dyn RejectionWriter,
        deadline: Duration,
        failures: &AtomicU64,
    ) -> Flushed {
        let _one = self.flushing.lock().await;
        let pending = std::mem::take(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner).pending);
        let mut flushed = Flushed::default();
        if pending.counters.is_empty() {
            return flushed;
        }
        let end = tokio::time::Instant::now() + deadline;
        let mut samples = Vec::new();
        let mut broken = false;
        let mut rest = pending.counters.into_iter();
        loop {
            let chunk: Vec<(CounterKey, Tally)> = rest.by_ref().take(COUNTERS_PER_UPSERT).collect();
            if chunk.is_empty() {
                break;
            }
            let total: u64 = chunk.iter().map(|(_, t)| t.count).sum();
            if broken {
                flushed.failed += total;
                continue;
            }
            let counts: Vec<(&CounterKey, u64)> = chunk.iter().map(|(k, t)| (k, t.count)).collect();
            match tokio::time::timeout_at(end, writer.add_counts(&counts)).await {
                Ok(Ok(after)) if after.len() == chunk.len() => {
                    flushed.counted += total;
                    for ((_, tally), after) in chunk.into_iter().zip(after) {
                        let before = after.saturating_sub(tally.count);
                        let room = u64::from(REJECTION_SAMPLES_PER_MINUTE).saturating_sub(before);
                        let room = usize::try_from(room).unwrap_or(usize::MAX);
                        samples.extend(tally.samples.into_iter().take(room));
                    }
                }
                _ => {
                    flushed.failed += total;
                    broken = true;
                }
            }
        }
        if !broken {
            samples.sort_by_key(|e| e.at);
            for chunk in samples.chunks(SAMPLES_PER_INSERT) {
                // Counted already; a lost sample only loses its detail.
                if !matches!(
                    tokio::time::timeout_at(end, writer.insert_samples(chunk)).await,
                    Ok(Ok(()))
                ) {
                    break;
                }
            }
        }
        if flushed.failed > 0 {
            failures.fetch_add(flushed.failed, Ordering::Relaxed);
        }
        flushed
    }
}

/// A store's rejection counting: the buffer, the writer, and the
/// background task flushing it every [`FLUSH_INTERVAL`].
pub(crate) struct RejectionCounter {
    buffer: Arc<RejectionBuffer>,
    writer: Arc<dyn RejectionWriter>,
    failures: Arc<AtomicU64>,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stop: Arc<tokio::sync::Notify>,
    closed: AtomicBool,
}

impl RejectionCounter {
    /// Counting through `writer`; lost counts go to `failures`.
    pub(crate) fn new(writer: Arc<dyn RejectionWriter>, failures: Arc<AtomicU64>) -> Self {
        Self {
            buffer: Arc::default(),
            writer,
            failures,
            flusher: Mutex::new(None),
            stop: Arc::default(),
            closed: AtomicBool::new(false),
        }
    }

    /// Counts `event` if it is a rejection (`None`: nothing left to do)
    /// and makes sure the background flush runs, or hands it back. After
    /// [`Self::close`] a rejection is dropped and counted
    /// ([`Self::dropped`]).
    pub(crate) fn add(&self, event: AuditEvent) -> Option<AuditEvent> {
        if self.closed.load(Ordering::Acquire) {
            let Some((minute, _, _)) = crate::store::rejection_key(&event) else {
                return Some(event);
            };
            self.buffer.dropped.add(minute, "sql");
            return None;
        }
        let event = self.buffer.add(event);
        if event.is_none() {
            self.start_flusher();
        }
        event
    }

    /// Rejections dropped: too many counters pending, or the store closed.
    pub(crate) fn dropped(&self) -> u64 {
        self.buffer.dropped()
    }

    /// Starts the periodic flush unless it runs (only inside a tokio
    /// runtime, else counts wait for a read or `close()`). A flusher of a
    /// runtime that ended is replaced. The task ends when the store is
    /// dropped or closed.
    pub(crate) fn start_flusher(&self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut flusher) = self.flusher.lock() else { return };
        if flusher.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let buffer = Arc::downgrade(&self.buffer);
        let writer = self.writer.clone();
        let failures = self.failures.clone();
        let stop = self.stop.clone();
        *flusher = Some(runtime.spawn(async move {
            loop {
                let stopped = tokio::time::timeout(FLUSH_INTERVAL, stop.notified()).await.is_ok();
                let Some(buffer) = buffer.upgrade() else { break };
                buffer.flush(&*writer, FLUSH_DEADLINE, &failures).await;
                if stopped {
                    break;
                }
            }
        }));
    }

    /// Writes the pending counts (and waits for a flush under way), for at
    /// most [`READ_WAIT`]; `None` when it gave up waiting (the write goes
    /// on in the background).
    pub(crate) async fn flush(&self) -> Option<Flushed> {
        if self.buffer.is_idle() {
            return Some(Flushed::default());
        }
        let buffer = self.buffer.clone();
        let writer = self.writer.clone();
        let failures = self.failures.clone();
        let write = async move { buffer.flush(&*writer, FLUSH_DEADLINE, &failures).await };
        // Its own task: the counts taken are written even if this future
        // is dropped or gives up.
        let task = tokio::spawn(write);
        tokio::time::timeout(READ_WAIT, task).await.ok().and_then(Result::ok)
    }

    /// Stops counting: lets the background flush finish and end (waiting
    /// at most [`READ_WAIT`]), then writes what is left (at most
    /// [`READ_WAIT`] more). Later rejections are dropped and counted.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.stop.notify_one();
        let task = self.flusher.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            // Not aborted: an abort would lose the counts of a flush under way.
            let _ = tokio::time::timeout(READ_WAIT, task).await;
        }
        self.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use time::macros::datetime;

    use super::*;
    use crate::audit::AuditKind;
    use crate::project::ProjectId;

    /// Counts writes; holds counters like the database would; can be
    /// made to hang (`stuck`) or to wait for a gate.
    #[derive(Default)]
    struct CountingWriter {
        writes: AtomicUsize,
        counters: Mutex<HashMap<CounterKey, u64>>,
        samples: Mutex<Vec<AuditEvent>>,
        stuck: AtomicBool,
        gate: Gate,
        gated: AtomicBool,
        entered: tokio::sync::Notify,
    }

    /// A semaphore starting closed.
    struct Gate(tokio::sync::Semaphore);

    impl Default for Gate {
        fn default() -> Self {
            Self(tokio::sync::Semaphore::new(0))
        }
    }

    impl std::ops::Deref for Gate {
        type Target = tokio::sync::Semaphore;
        fn deref(&self) -> &tokio::sync::Semaphore {
            &self.0
        }
    }

    #[async_trait]
    impl RejectionWriter for CountingWriter {
        async fn add_counts(&self, counts: &[(&CounterKey, u64)]) -> Result<Vec<u64>, StoreError> {
            assert!(counts.len() <= COUNTERS_PER_UPSERT);
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.entered.notify_one();
            if self.stuck.load(Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
            if self.gated.load(Ordering::Relaxed) {
                let _permit = self.gate.acquire().await;
            }
            let mut c = self.counters.lock().unwrap();
            Ok(counts
                .iter()
                .map(|(key, n)| {
                    let v = c.entry((*key).clone()).or_default();
                    *v += n;
                    *v
                })
                .collect())
        }
        async fn insert_samples(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.samples.lock().unwrap().extend_from_slice(events);
            Ok(())
        }
    }

    impl CountingWriter {
        fn total(&self) -> u64 {
            self.counters.lock().unwrap().values().sum()
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

    fn wrong_secret(client: &str) -> AuditEvent {
        AuditEvent::new(
            ProjectId::new("proj_a").unwrap(),
            datetime!(2026-11-26 12:00 UTC),
            AuditKind::TokenRejected {
                client_id: Some(client.into()),
                grant_type: Some("client_credentials".into()),
                error: "invalid_client".into(),
                reason: "wrong_secret".into(),
                client_authenticated: false,
            },
        )
    }

    fn counter(writer: &Arc<CountingWriter>) -> RejectionCounter {
        RejectionCounter::new(writer.clone(), Arc::default())
    }

    #[tokio::test]
    async fn a_burst_is_a_few_writes_and_adds_up_exactly() {
        let buffer = RejectionBuffer::default();
        let writer = CountingWriter::default();
        let failures = AtomicU64::new(0);
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
        let flushed = buffer.flush(&writer, FLUSH_DEADLINE, &failures).await;
        assert_eq!(flushed.counted, 5000);
        // Two counters in one upsert, one sample insert.
        assert_eq!(writer.writes.load(Ordering::Relaxed), 2);
        assert_eq!(writer.total(), 5000);
        assert_eq!(writer.counters.lock().unwrap().len(), 2);
        assert_eq!(
            writer.samples.lock().unwrap().len(),
            2 * REJECTION_SAMPLES_PER_MINUTE as usize
        );
        assert!(buffer.is_empty());

        // The next flush of the same minute counts on and keeps no more samples.
        for _ in 0..100 {
            assert!(buffer.add(rejection("invalid_code", 59)).is_none());
        }
        buffer.flush(&writer, FLUSH_DEADLINE, &failures).await;
        // One upsert; no sample insert (the minute has its samples).
        assert_eq!(writer.writes.load(Ordering::Relaxed), 3);
        assert_eq!(writer.total(), 5100);
        assert_eq!(
            writer.samples.lock().unwrap().len(),
            2 * REJECTION_SAMPLES_PER_MINUTE as usize
        );
        assert_eq!(failures.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn many_counters_are_written_a_chunk_per_statement() {
        let buffer = RejectionBuffer::default();
        let writer = CountingWriter::default();
        for i in 0..1000 {
            buffer.add(rejection(&format!("r{i}"), 0));
        }
        let flushed = buffer.flush(&writer, FLUSH_DEADLINE, &AtomicU64::new(0)).await;
        assert_eq!(flushed.counted, 1000);
        // 4 upserts of at most 256 counters, then the samples (1000 / 256).
        assert_eq!(writer.writes.load(Ordering::Relaxed), 4 + 4);
        assert_eq!(writer.total(), 1000);
    }

    #[tokio::test]
    async fn a_database_that_stops_answering_ends_the_flush_at_its_deadline() {
        let buffer = RejectionBuffer::default();
        let writer = CountingWriter::default();
        writer.stuck.store(true, Ordering::Relaxed);
        let failures = AtomicU64::new(0);
        for i in 0..1000 {
            buffer.add(rejection(&format!("r{i}"), 0));
        }
        let started = std::time::Instant::now();
        let flushed = buffer.flush(&writer, Duration::from_millis(200), &failures).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        // The first write hung: no further one was tried, all is lost and counted.
        assert_eq!(writer.writes.load(Ordering::Relaxed), 1);
        assert_eq!(
            flushed,
            Flushed {
                counted: 0,
                failed: 1000
            }
        );
        assert_eq!(failures.load(Ordering::Relaxed), 1000);
        assert!(buffer.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_waits_for_the_flush_under_way_at_most_a_bounded_time() {
        let writer = Arc::new(CountingWriter::default());
        writer.stuck.store(true, Ordering::Relaxed);
        let counter = counter(&writer);
        counter.add(rejection("invalid_code", 0));
        // The background flush takes the counter and hangs on the database.
        writer.entered.notified().await;
        assert!(counter.buffer.is_empty());
        let started = std::time::Instant::now();
        // The reader does not answer at once (the counts are being
        // written), nor wait longer than the flush's deadline.
        counter.flush().await;
        let waited = started.elapsed();
        assert!(waited >= FLUSH_DEADLINE - Duration::from_millis(100), "{waited:?}");
        assert!(waited < READ_WAIT, "{waited:?}");
        // The count the hung flush took is lost, and counted so.
        assert_eq!(counter.failures.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_racing_the_background_flush_sees_its_counts() {
        let writer = Arc::new(CountingWriter::default());
        writer.gated.store(true, Ordering::Relaxed);
        let counter = Arc::new(counter(&writer));
        counter.add(rejection("invalid_code", 0));
        counter.add(rejection("invalid_code", 1));
        // The background flush has taken the counts and is writing them.
        writer.entered.notified().await;
        assert!(counter.buffer.is_empty());
        let reader = tokio::spawn({
            let counter = counter.clone();
            let writer = writer.clone();
            async move {
                counter.flush().await;
                writer.total()
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !reader.is_finished(),
            "the reader answered before the counts were written"
        );
        writer.gate.add_permits(100);
        assert_eq!(reader.await.unwrap(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_dropped_mid_flush_loses_no_counts() {
        let writer = Arc::new(CountingWriter::default());
        writer.gated.store(true, Ordering::Relaxed);
        let counter = counter(&writer);
        // No background flush yet: count straight into the buffer.
        for i in 0..10 {
            counter.buffer.add(rejection(&format!("r{i}"), 0));
        }
        let read = tokio::time::timeout(Duration::from_millis(100), counter.flush()).await;
        assert!(read.is_err(), "the write was gated");
        writer.gate.add_permits(100);
        for _ in 0..100 {
            if writer.total() == 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(writer.total(), 10);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_during_a_flush_writes_every_count_and_later_ones_are_dropped() {
        let writer = Arc::new(CountingWriter::default());
        writer.gated.store(true, Ordering::Relaxed);
        let counter = Arc::new(counter(&writer));
        counter.add(rejection("invalid_code", 0));
        writer.entered.notified().await;
        // Counted while the first flush is under way.
        counter.add(rejection("pkce_mismatch", 0));
        let close = tokio::spawn({
            let counter = counter.clone();
            async move { counter.close().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer.gate.add_permits(100);
        close.await.unwrap();
        assert_eq!(writer.total(), 2);
        assert!(counter.flusher.lock().unwrap().is_none());
        // After close: dropped and counted, no new flusher.
        assert!(counter.add(rejection("invalid_code", 2)).is_none());
        assert_eq!(counter.dropped(), 1);
        assert!(counter.flusher.lock().unwrap().is_none());
        assert!(counter.buffer.is_empty());
    }

    #[test]
    fn a_flusher_of_an_ended_runtime_is_replaced() {
        let writer = Arc::new(CountingWriter::default());
        let counter = counter(&writer);
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        first.block_on(async {
            counter.add(rejection("invalid_code", 0));
        });
        drop(first);
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        second.block_on(async {
            counter.add(rejection("invalid_code", 1));
            // The background flush of this runtime writes both, unasked.
            for _ in 0..100 {
                if writer.total() == 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        assert_eq!(writer.total(), 2);
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
        let state = buffer.state.lock().unwrap();
        assert_eq!(state.pending.counters.len(), MAX_PENDING_COUNTERS);
        assert!(state.pending.samples <= MAX_PENDING_SAMPLES);
    }

    #[tokio::test]
    async fn decoy_clients_do_not_hide_the_client_under_attack() {
        let buffer = RejectionBuffer::default();
        let writer = CountingWriter::default();
        for i in 0..10_000 {
            buffer.add(wrong_secret(&format!("decoy_{i}")));
        }
        buffer.add(wrong_secret("target"));
        buffer.add(rejection("invalid_code", 0));
        assert_eq!(buffer.dropped(), 0);
        buffer.flush(&writer, FLUSH_DEADLINE, &AtomicU64::new(0)).await;
        let counters = writer.counters.lock().unwrap();
        let by_reason = |r: &str| {
            counters
                .iter()
                .filter(|(k, _)| k.reason == r)
                .map(|(_, n)| *n)
                .sum::<u64>()
        };
        assert_eq!(by_reason("invalid_code"), 1);
        // 64 decoys counted by client, the rest (and the target) together.
        let per_client = counters
            .keys()
            .filter(|k| k.reason.starts_with("wrong_secret client=decoy_"))
            .count();
        assert_eq!(per_client, crate::store::MAX_REJECTION_CLIENTS_PER_MINUTE);
        assert_eq!(
            by_reason("wrong_secret client=*"),
            10_001 - crate::store::MAX_REJECTION_CLIENTS_PER_MINUTE as u64
        );
        assert_eq!(counters.values().sum::<u64>(), 10_002);
    }
}
