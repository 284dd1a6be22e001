//! Audit sinks beyond the stores' logs: to `tracing`, as JSON lines to a
//! writer, and a tee sending each event to two sinks.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use super::{AuditClass, AuditEvent};
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
                        request_id = r.request_id.as_deref(),
                        client_ip = r.client_ip.map(tracing::field::display),
                        user_agent = r.user_agent.as_deref(),
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

/// Writes every audit event as one line of JSON ([`AuditEvent::to_json`])
/// to a writer (a file opened for appending, stdout, a pipe), flushing
/// after each line.
///
/// Writing happens in [`AuditSink::record`], under a lock: give it a
/// writer that does not block for long (a local file, or a buffer drained
/// elsewhere). A write that fails is logged through `tracing` at ERROR and
/// the event is dropped (recording cannot fail the request).
#[derive(Debug)]
pub struct JsonLinesAuditSink<W> {
    writer: Mutex<W>,
}

impl<W: Write + Send> JsonLinesAuditSink<W> {
    /// A sink writing to `writer`.
    pub const fn new(writer: W) -> Self {
        Self {
            writer: Mutex::new(writer),
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.writer.into_inner().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, event: &AuditEvent) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        w.write_all(&line)?;
        w.flush()
    }
}

#[async_trait]
impl<W: Write + Send> AuditSink for JsonLinesAuditSink<W> {
    async fn record(&self, event: AuditEvent) {
        if let Err(e) = self.write(&event) {
            tracing::error!(
                target: "authio_mcp::audit",
                error = %e,
                event = event.name(),
                "writing an audit event failed; the event is lost"
            );
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
            },
        )
        .with_request(RequestMeta::new().request_id("r1"))
    }

    #[test]
    fn json_lines_are_one_event_per_line() {
        let sink = JsonLinesAuditSink::new(Vec::new());
        futures_executor::block_on(async {
            sink.record(event("invalid_refresh_token")).await;
            sink.record(event("pkce_mismatch")).await;
        });
        let out = String::from_utf8(sink.into_inner()).unwrap();
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0]["event"], "token.rejected");
        assert_eq!(lines[0]["reason"], "invalid_refresh_token");
        assert_eq!(lines[0]["request_id"], "r1");
        assert_eq!(lines[1]["reason"], "pkce_mismatch");
        assert!(out.ends_with('\n'));
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
        futures_executor::block_on(sink.record(event("x")));
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
