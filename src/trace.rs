//! The `tracing` side of the HTTP layer: one span per endpoint call and
//! one event when it ends. Nothing here formats anything unless a
//! subscriber wants the span or event.
//!
//! | name | kind | level | fields |
//! |---|---|---|---|
//! | `authio.request` | span (target `authio_mcp::http`) | INFO | `endpoint`, `project`, `client_id`, `outcome` (`ok`, `redirect`, `pending`, ... or the OAuth error code), `reason` |
//! | `request handled` | event (target `authio_mcp::http`) | DEBUG when it succeeded, INFO when refused, WARN for `server_error` | `outcome`, `reason`, `status` |
//! | `storage failure; answered server_error` | event (target `authio_mcp::store`) | ERROR | `error`, `cause` |
//! | `audit` | event (target `authio_mcp::audit`, from [`crate::audit::TracingAuditSink`]) | WARN for security events, else INFO | `event`, `project`, `request_id`, `client_ip`, `user_agent`, `fields` |
//!
//! No field ever holds a code, token, verifier, secret or initial access
//! token: error descriptions (which may quote request input) are not
//! logged, only the code and the machine-readable reason.

use tracing::Span;
use tracing::field::Empty;

use crate::client::ClientId;
use crate::error::{ErrorCode, OAuthError};
use crate::project::ProjectId;

/// The span of one endpoint call.
pub(crate) fn request_span(endpoint: &'static str) -> Span {
    tracing::info_span!(
        target: "authio_mcp::http",
        "authio.request",
        endpoint,
        project = Empty,
        client_id = Empty,
        outcome = Empty,
        reason = Empty,
    )
}

/// Records the project on the current request span.
pub(crate) fn record_project(project: &ProjectId) {
    let span = Span::current();
    if !span.is_disabled() {
        span.record("project", project.as_str());
    }
}

/// Records the client on the current request span.
pub(crate) fn record_client(client: &ClientId) {
    let span = Span::current();
    if !span.is_disabled() {
        span.record("client_id", client.as_str());
    }
}

/// Records how the call ended on `span` and emits the closing event in
/// it.
pub(crate) fn finish(span: &Span, outcome: &str, error: Option<&OAuthError>) {
    if span.is_disabled() && !tracing::enabled!(target: "authio_mcp::http", tracing::Level::INFO) {
        return;
    }
    let _entered = span.enter();
    span.record("outcome", outcome);
    match error {
        None => tracing::debug!(target: "authio_mcp::http", outcome, "request handled"),
        Some(e) => {
            let reason = e.reason();
            if let Some(r) = reason {
                span.record("reason", r);
            }
            let status = e.status().as_u16();
            if e.code() == ErrorCode::ServerError {
                tracing::warn!(target: "authio_mcp::http", outcome, reason, status, "request handled");
            } else {
                tracing::info!(target: "authio_mcp::http", outcome, reason, status, "request handled");
            }
        }
    }
}
