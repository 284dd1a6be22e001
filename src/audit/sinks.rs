//! Audit sinks beyond the stores' logs: to `tracing`, as JSON lines to a
//! writer, and a tee sending each event to two sinks.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{AuditClass, AuditEvent};
use crate::project::ProjectId;
use crate::store::AuditSink;

#[async_trait]
impl<S: AuditSink + ?Sized> AuditSink for Arc<S> {
    async fn record(&self, event: AuditEvent) {
        (**self).record(event).await;
    }
}

/// Emits every audit event as a `tracing` event with target
/// `authio_mcp::audit`: security events at WARN, the others at INFO. The
/// fields are `event` (the dotted name), `project`, `request_id`,
/// `client_ip`, `user_agent` (when known) and `fields` (the event's JSON,
/// [`AuditEvent::to_json`]; events never carry a secret).
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingAuditSink;

impl TracingAuditSink {
    /// The sink.
    pub const fn new() -> Self {
        Self
    }
}

#[async_trait]
impl AuditSink for TracingAuditSink {
    async fn record(&self, event: AuditEvent) {
        macro_rules! emit {
            ($level:expr) => {
                if tracing::enabled!(target: "authio_mcp::audit", $level) {
                    let r = &event.request;
                    tracing::event!(
                        target: "authio_mcp::audit",
                        $level,
                        event = event.name(),
                        project = event.project_id.as_str(),
                        request_id = r.request_id(),
                        client_ip = r.client_ip().map(tracing::field::display),
                        user_agent = r.user_agent(),
                        fields = %event.to_json(),
                        "audit"
                    );
                }
            };
        }
        match event.kind.class() {
            AuditClass::Security => emit!(tracing::Level::WARN),
            _ => emit!(tracing::Level::INFO),
        }
    }
}

/// Writes audit events as JSON lines ([`AuditEvent::to_json`], one event
/// per line) to a writer (a file opened for appending, stdout, a pipe) on
/// a dedicated thread, never on the caller's (async runtime) thread.
///
/// - **Bounded, never blocking.** [`AuditSink::record`] serializes the
///   event and queues the line (at most [`Self::DEFAULT_QUEUE`] lines, or
///   [`Self::with_queue`]); when the writer falls behind and the queue is
///   full the line is dropped and counted ([`Self::dropped`]), the request
///   never waits on the disk.
/// - **Rejections sampled.** Rejections anyone can cause
///   ([`AuditClass::Rejection`]) are counted per project, minute, event and
///   reason (as the stores count them, [`crate::store::RejectionCount`]);
///   only the first [`Self::SAMPLES_PER_MINUTE`] of each counter are
///   written whole, and each counter is written as one
///   `audit.rejections_counted` line (`project_id`, `minute`,
///   `counted_event`, `reason`, `count`) once its minute is over (a later
///   rejection arrives, or the writer thread notices a minute passed) and
///   when the sink is closed. A counter may be written in several lines
///   (rejections of a minute arriving after its line was written): add
///   them up. At most [`Self::MAX_COUNTERS`] counters are held; a
///   rejection needing one more is dropped and counted.
/// - **Whole lines.** Each line is written with one `write_all` and
///   flushed; after a failed write (logged through `tracing` at ERROR,
///   counted in [`Self::write_failures`]) the next line starts with a
///   newline, so a partial line never corrupts the next event.
///
/// Dropping the sink (or [`Self::into_inner`]) writes the queued lines and
/// pending counts and waits for the thread.
pub struct JsonLinesAuditSink<W: Write + Send + 'static> {
    queue: Option<mpsc::SyncSender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<W>>,
    shared: Arc<Shared>,
}

impl<W: Write + Send + 'static> std::fmt::Debug for JsonLinesAuditSink<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesAuditSink")
            .field("dropped", &self.dropped())
            .field("write_failures", &self.write_failures())
            .finish_non_exhaustive()
    }
}

/// A rejection counter: project, unix minute, event name, reason.
type CounterKey = (ProjectId, i64, &'static str, String);

#[derive(Debug, Default)]
struct Shared {
    counters: Mutex<Counters>,
    dropped: AtomicU64,
    write_failures: AtomicU64,
}

#[derive(Debug, Default)]
struct Counters {
    latest_minute: i64,
    /// Count, and how many of them were written whole.
    by_key: HashMap<CounterKey, (u64, u32)>,
}

impl Shared {
    /// Takes the counters of minutes before `minute` as summary lines.
    fn take_before(&self, minute: i64) -> Vec<Vec<u8>> {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let past: Vec<CounterKey> = counters.by_key.keys().filter(|k| k.1 < minute).cloned().collect();
        let mut lines = Vec::with_capacity(past.len());
        for key in past {
            if let Some((count, _)) = counters.by_key.remove(&key) {
                lines.push(summary_line(&key, count));
            }
        }
        lines
    }
}

fn summary_line((project, minute, event, reason): &CounterKey, count: u64) -> Vec<u8> {
    let minute = OffsetDateTime::from_unix_timestamp(minute.saturating_mul(60))
        .ok()
        .and_then(|m| m.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    let mut line = serde_json::to_vec(&serde_json::json!({
        "event": "audit.rejections_counted",
        "project_id": project.as_str(),
        "minute": minute,
        "counted_event": event,
        "reason": reason,
        "count": count,
    }))
    .unwrap_or_default();
    line.push(b'\n');
    line
}

impl<W: Write + Send + 'static> JsonLinesAuditSink<W> {
    /// Lines queued for the writer thread at most, by default.
    pub const DEFAULT_QUEUE: usize = 8192;
    /// Rejections of one counter written whole per minute.
    pub const SAMPLES_PER_MINUTE: u32 = 5;
    /// Rejection counters held at most.
    pub const MAX_COUNTERS: usize = 4096;

    /// A sink writing to `writer` on a new thread (when the operating
    /// system cannot start one, every event is dropped and counted in
    /// [`Self::dropped`], and an error logged).
    pub fn new(writer: W) -> Self {
        Self::with_queue(writer, Self::DEFAULT_QUEUE)
    }

    /// A sink queuing at most `capacity` lines (at least one).
    pub fn with_queue(writer: W, capacity: usize) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(capacity.max(1));
        let shared = Arc::new(Shared::default());
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("authio-audit-jsonl".to_owned())
            .spawn(move || write_lines(writer, &rx, &for_thread));
        match thread {
            Ok(thread) => Self {
                queue: Some(tx),
                thread: Some(thread),
                shared,
            },
            Err(e) => {
                tracing::error!(
                    target: "authio_mcp::audit",
                    error = %e,
                    "starting the audit writer thread failed; JSON-lines audit events are dropped"
                );
                Self {
                    queue: None,
                    thread: None,
                    shared,
                }
            }
        }
    }

    /// Lines neither written nor counted: the queue was full, or too many
    /// rejection counters were held.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Writes that failed.
    pub fn write_failures(&self) -> u64 {
        self.shared.write_failures.load(Ordering::Relaxed)
    }

    /// Writes every queued line and pending count, stops the thread and
    /// gives the writer back (`None` if the thread panicked).
    pub fn into_inner(mut self) -> Option<W> {
        self.stop()
    }

    fn stop(&mut self) -> Option<W> {
        drop(self.queue.take());
        self.thread.take().and_then(|t| t.join().ok())
    }

    fn send(&self, line: Vec<u8>) {
        if self.queue.as_ref().is_none_or(|q| q.try_send(line).is_err()) {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a rejection; whether to write it whole.
    fn count(&self, event: &AuditEvent) -> bool {
        let Some((minute, name, reason)) = crate::store::rejection_key(event) else {
            return true;
        };
        let past = {
            let mut counters = self.shared.counters.lock().unwrap_or_else(PoisonError::into_inner);
            let newer = minute > counters.latest_minute;
            counters.latest_minute = counters.latest_minute.max(minute);
            let key = (event.project_id.clone(), minute, name, reason);
            let full = counters.by_key.len() >= Self::MAX_COUNTERS;
            let sample = match counters.by_key.get_mut(&key) {
                Some((count, sampled)) => {
                    *count += 1;
                    let sample = *sampled < Self::SAMPLES_PER_MINUTE;
                    *sampled += u32::from(sample);
                    sample
                }
                None if full => {
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                None => {
                    counters.by_key.insert(key, (1, 1));
                    true
                }
            };
            if !newer {
                return sample;
            }
            drop(counters);
            (sample, self.shared.take_before(minute))
        };
        let (sample, lines) = past;
        for line in lines {
            self.send(line);
        }
        sample
    }
}

impl<W: Write + Send + 'static> Drop for JsonLinesAuditSink<W> {
    fn drop(&mut self) {
        drop(self.stop());
    }
}

/// The writer thread: one `write_all` per line, a fresh line after a
/// failure; counters of past minutes written when a minute passes; all
/// that is left when the queue closes.
fn write_lines<W: Write>(mut w: W, rx: &mpsc::Receiver<Vec<u8>>, shared: &Shared) -> W {
    let mut broken = false;
    let mut put = |w: &mut W, line: &[u8]| {
        let result = (|| {
            if broken {
                w.write_all(b"\n")?;
            }
            w.write_all(line)?;
            w.flush()
        })();
        broken = result.is_err();
        if let Err(e) = result {
            shared.write_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                target: "authio_mcp::audit",
                error = %e,
                "writing an audit event failed; the event is lost"
            );
        }
    };
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => put(&mut w, &line),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = OffsetDateTime::now_utc().unix_timestamp().div_euclid(60);
                for line in shared.take_before(now) {
                    put(&mut w, &line);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for line in shared.take_before(i64::MAX) {
        put(&mut w, &line);
    }
    w
}

#[async_trait]
impl<W: Write + Send + 'static> AuditSink for JsonLinesAuditSink<W> {
    async fn record(&self, event: AuditEvent) {
        if !self.count(&event) {
            return;
        }
        match serde_json::to_vec(&event) {
            Ok(mut line) => {
                line.push(b'\n');
                self.send(line);
            }
            Err(e) => tracing::error!(
                target: "authio_mcp::audit",
                error = %e,
                event = event.name(),
                "encoding an audit event failed; the event is lost"
            ),
        }
    }
}

/// Sends every event to two sinks, first to `A`, then to `B` (nest tees
/// for more).
#[derive(Clone, Debug)]
pub struct TeeAuditSink<A, B> {
    first: A,
    second: B,
}

impl<A: AuditSink, B: AuditSink> TeeAuditSink<A, B> {
    /// Both sinks.
    pub const fn new(first: A, second: B) -> Self {
        Self { first, second }
    }
}

#[async_trait]
impl<A: AuditSink, B: AuditSink> AuditSink for TeeAuditSink<A, B> {
    async fn record(&self, event: AuditEvent) {
        self.first.record(event.clone()).await;
        self.second.record(event).await;
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::audit::{AuditKind, RequestMeta};
    use crate::project::ProjectId;
    use crate::store::AuditLog;
    use crate::store::memory::MemoryAuditLog;

    fn event(reason: &str) -> AuditEvent {
        AuditEvent::new(
            ProjectId::new("proj_a").unwrap(),
            datetime!(2026-11-26 12:00 UTC),
            AuditKind::TokenRejected {
                client_id: None,
                grant_type: Some("refresh_token".into()),
                error: "invalid_grant".into(),
                reason: reason.into(),
                client_authenticated: false,
            },
        )
    }

    fn activity(n: u32) -> AuditEvent {
        AuditEvent::new(
            ProjectId::new("proj_a").unwrap(),
            datetime!(2026-11-26 12:00 UTC),
            AuditKind::IatUsed {
                iat_id: "iat_1".into(),
                uses: n,
            },
        )
        .with_request(RequestMeta::new().with_request_id("r1"))
    }

    fn lines(out: &[u8]) -> Vec<serde_json::Value> {
        String::from_utf8(out.to_vec())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn json_lines_are_one_event_per_line() {
        let sink = JsonLinesAuditSink::new(Vec::new());
        futures_executor::block_on(async {
            sink.record(activity(1)).await;
            sink.record(activity(2)).await;
        });
        let out = sink.into_inner().unwrap();
        let lines = lines(&out);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["event"], "initial_access_token.used");
        assert_eq!(lines[0]["uses"], 1);
        assert_eq!(lines[0]["request_id"], "r1");
        assert_eq!(lines[1]["uses"], 2);
        assert!(out.ends_with(b"\n"));
    }

    #[test]
    fn rejections_are_sampled_and_counted() {
        let sink = JsonLinesAuditSink::new(Vec::new());
        futures_executor::block_on(async {
            for _ in 0..100 {
                sink.record(event("pkce_mismatch")).await;
            }
            sink.record(event("invalid_code")).await;
        });
        let lines = lines(&sink.into_inner().unwrap());
        let whole: Vec<_> = lines.iter().filter(|l| l["event"] == "token.rejected").collect();
        assert_eq!(whole.len(), 5 + 1, "{lines:?}");
        let mut counted: Vec<(String, u64)> = lines
            .iter()
            .filter(|l| l["event"] == "audit.rejections_counted")
            .map(|l| {
                assert_eq!(l["counted_event"], "token.rejected");
                assert_eq!(l["minute"], "2026-11-26T12:00:00Z");
                (l["reason"].as_str().unwrap().to_owned(), l["count"].as_u64().unwrap())
            })
            .collect();
        counted.sort();
        assert_eq!(
            counted,
            vec![("invalid_code".to_owned(), 1), ("pkce_mismatch".to_owned(), 100)]
        );
    }

    #[test]
    fn a_past_minute_is_counted_when_a_later_one_starts() {
        let sink = JsonLinesAuditSink::new(Vec::new());
        let mut later = event("pkce_mismatch");
        later.at += time::Duration::minutes(1);
        futures_executor::block_on(async {
            for _ in 0..7 {
                sink.record(event("pkce_mismatch")).await;
            }
            sink.record(later).await;
        });
        let lines = lines(&sink.into_inner().unwrap());
        let names: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        // Five samples, then the first minute's count before the next
        // minute's sample, then its count at close.
        assert_eq!(names[5], "audit.rejections_counted", "{names:?}");
        assert_eq!(lines[5]["count"], 7);
        assert_eq!(names[6], "token.rejected");
        assert_eq!(lines[7]["count"], 1);
    }

    /// A writer stuck on a slow disk: `record` neither blocks nor grows
    /// memory; what does not fit is dropped and counted.
    #[test]
    fn a_stuck_writer_never_blocks_the_caller() {
        struct Stuck(std::sync::mpsc::Receiver<()>, Vec<u8>);
        impl Write for Stuck {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.recv();
                self.1.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (release, stuck) = std::sync::mpsc::channel();
        let sink = JsonLinesAuditSink::with_queue(Stuck(stuck, Vec::new()), 2);
        let started = std::time::Instant::now();
        futures_executor::block_on(async {
            for n in 0..50 {
                sink.record(activity(n)).await;
            }
        });
        assert!(started.elapsed() < Duration::from_secs(2));
        // One line in the writer's hands, two queued at most.
        assert!(sink.dropped() >= 47, "{}", sink.dropped());
        drop(release);
        let out = sink.into_inner().unwrap().1;
        let written = lines(&out).len() as u64;
        assert!((1..=3).contains(&written), "{written}");
    }

    /// A write that fails half-way through a line: the next event still
    /// reads as a whole line.
    #[test]
    fn a_partial_line_does_not_corrupt_the_next() {
        struct FailsOnce {
            out: Vec<u8>,
            failed: bool,
        }
        impl Write for FailsOnce {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if !self.failed && self.out.len() + buf.len() > 10 {
                    self.failed = true;
                    let n = 10 - self.out.len();
                    self.out.extend_from_slice(&buf[..n]);
                    return Err(std::io::Error::other("disk full"));
                }
                self.out.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = JsonLinesAuditSink::new(FailsOnce {
            out: Vec::new(),
            failed: false,
        });
        futures_executor::block_on(async {
            sink.record(activity(1)).await;
            std::thread::sleep(Duration::from_millis(100));
            sink.record(activity(2)).await;
        });
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(sink.write_failures(), 1);
        let out = String::from_utf8(sink.into_inner().unwrap().out).unwrap();
        let mut it = out.lines();
        assert_eq!(it.next().map(str::len), Some(10), "the partial line: {out:?}");
        let next: serde_json::Value = serde_json::from_str(it.next().unwrap()).unwrap();
        assert_eq!(next["uses"], 2);
        assert_eq!(it.next(), None);
    }

    #[test]
    fn a_failing_writer_loses_the_event_not_the_request() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = JsonLinesAuditSink::new(Broken);
        futures_executor::block_on(sink.record(activity(1)));
        drop(sink);
    }

    #[test]
    fn tee_reaches_both() {
        let a = Arc::new(MemoryAuditLog::new());
        let b = Arc::new(MemoryAuditLog::new());
        let tee: Arc<dyn AuditSink> = Arc::new(TeeAuditSink::new(a.clone(), b.clone()));
        futures_executor::block_on(async {
            tee.record(event("x")).await;
            let project = ProjectId::new("proj_a").unwrap();
            for log in [&a, &b] {
                let page = log
                    .query(&crate::store::AuditQuery::new(project.clone()))
                    .await
                    .unwrap();
                assert_eq!(page.events, vec![event("x")]);
            }
        });
    }
}
