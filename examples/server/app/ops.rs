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

/// `GET /healthz`: 200 while the process serves requests (liveness). It
/// never touches the store: a database outage must not make an
/// orchestrator restart healthy processes. No credentials needed.
pub(super) async fn healthz() -> Response {
    status_json(StatusCode::OK, serde_json::json!({"status": "ok"}))
}

/// How long `/readyz` reuses its last store check.
const READY_CACHE: std::time::Duration = std::time::Duration::from_secs(1);
/// How long `/readyz` waits for the store.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// The last store check of `/readyz`: reused for [`READY_CACHE`], and one
/// check at a time (concurrent probes wait for it and share its answer),
/// so probes cost the database at most one query per second.
#[derive(Default)]
pub(super) struct ReadyCheck {
    /// When, whether the store answered, and checks made so far.
    last: tokio::sync::Mutex<(Option<(Instant, bool)>, u64)>,
}

impl ReadyCheck {
    /// Whether the store answered (at most [`READY_CACHE`] ago), and how
    /// many checks were made so far.
    async fn store_ok(&self, storage: &super::Storage) -> (bool, u64) {
        let mut last = self.last.lock().await;
        if let (Some((at, ok)), n) = *last
            && at.elapsed() < READY_CACHE
        {
            return (ok, n);
        }
        let ok = match tokio::time::timeout(READY_TIMEOUT, storage.check()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                e.log();
                false
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = READY_TIMEOUT.as_millis() as u64,
                    "readiness: the store did not answer in time"
                );
                false
            }
        };
        last.1 += 1;
        last.0 = Some((Instant::now(), ok));
        (ok, last.1)
    }
}

/// `GET /readyz`: 200 while the server takes new requests (started, the
/// store answering within 500 ms, not shutting down), 503 otherwise. The
/// store check is made at most once a second ([`ReadyCheck`]);
/// `store_checks` counts them. The failure is logged, never shown.
pub(super) async fn readyz(State(app): State<App>) -> Response {
    if app.draining.load(Ordering::Relaxed) {
        return status_json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "draining"}),
        );
    }
    match app.ready.store_ok(&app.storage).await {
        (true, n) => status_json(
            StatusCode::OK,
            serde_json::json!({"status": "ready", "store": "ok", "store_checks": n}),
        ),
        (false, n) => status_json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable", "store": "unreachable", "store_checks": n}),
        ),
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
    let mut meta = RequestMeta::new().with_request_id(&request_id);
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        meta = meta.with_client_ip(peer.ip());
    }
    if let Some(ua) = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        meta = meta.with_user_agent(ua);
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
