//! Operations: Prometheus metrics, the health and readiness probes, and
//! the request log line.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Instant;

use authio_mcp::audit::RequestMeta;
use authio_mcp::axum::into_axum;
use authio_mcp::http::json;
use authio_mcp::pages::REQUEST_ID_HEADER;
use authio_mcp::{ErrorCode, OAuthError};
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Instrument as _;

use super::App;
use super::admin::admin_error;

/// The process-wide Prometheus recorder, once [`install_metrics`] ran.
static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder the library's metrics go to (see
/// `authio_mcp::metrics`); `/metrics` serves them. Idempotent.
pub fn install_metrics() {
    if METRICS.get().is_none()
        && let Ok(handle) = PrometheusBuilder::new().install_recorder()
    {
        let _ = METRICS.set(handle);
    }
}

/// `GET /metrics`: Prometheus text exposition, behind the admin token.
pub(super) async fn metrics_text(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(e) = app.check_admin(&headers) {
        return admin_error(&e);
    }
    let Some(handle) = METRICS.get() else {
        return admin_error(&OAuthError::with_description(
            ErrorCode::InvalidRequest,
            "metrics are not enabled in this process",
        ));
    };
    let mut r = Response::new(handle.render().into());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// A small JSON status answer, never cached.
fn status_json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = into_axum(json(status, serde_json::to_vec(&body).unwrap_or_default()));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /healthz`: 200 when the store answers, 503 otherwise (the
/// failure is logged, never shown). No credentials needed; nothing
/// secret in the answer.
pub(super) async fn healthz(State(app): State<App>) -> Response {
    match app.storage.check().await {
        Ok(()) => status_json(StatusCode::OK, serde_json::json!({"status": "ok", "store": "ok"})),
        Err(e) => {
            e.log();
            status_json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "unavailable", "store": "unreachable"}),
            )
        }
    }
}

/// `GET /readyz`: 200 while the server takes new requests (started, the
/// store answering, not shutting down), 503 otherwise.
pub(super) async fn readyz(State(app): State<App>) -> Response {
    if app.draining.load(Ordering::Relaxed) {
        return status_json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "draining"}),
        );
    }
    match app.storage.check().await {
        Ok(()) => status_json(StatusCode::OK, serde_json::json!({"status": "ready"})),
        Err(e) => {
            e.log();
            status_json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "unavailable", "store": "unreachable"}),
            )
        }
    }
}

/// One log line per request: method, path (never the query, which can
/// carry codes), status, duration; every line logged while the request
/// runs carries its request id (also sent back as `x-request-id`), and
/// every audit event it causes records the id, the peer address and the
/// user agent ([`RequestMeta::scope`]).
pub(super) async fn log_request(mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let mut id = [0u8; 8];
    authio_mcp::server::RandomSource::fill(&authio_mcp::server::SystemRandom, &mut id);
    let request_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    // The id goes on the request too (replacing any the client sent), so
    // the library's error pages show the id this log line carries.
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        req.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let mut meta = RequestMeta::new().request_id(&request_id);
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        meta = meta.client_ip(peer.ip());
    }
    if let Some(ua) = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        meta = meta.user_agent(ua);
    }
    let span = tracing::info_span!("request", id = %request_id);
    let mut response = async {
        let response = meta.scope(next.run(req)).await;
        tracing::info!(
            %method,
            path,
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
        response
    }
    .instrument(span)
    .await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}
