//! The login-and-consent page: pending consents held server-side (with
//! per-source and per-client limits) and the form's submission.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use authio_mcp::authorize::PendingAuthorization;
use authio_mcp::axum::{ConsentHandler, buffer, into_axum};
use authio_mcp::grant::Subject;
use authio_mcp::http::OAuthEndpoints;
use authio_mcp::pages::{ConsentUser, ConsentView, ErrorKind, request_id};
use authio_mcp::server::SignedIn;
use authio_mcp::{ErrorCode, OAuthError};
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, StatusCode, header};

use super::{App, DEMO_SUBJECT};

/// Limits of the pending-consent store (pending consents live 10
/// minutes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsentLimits {
    /// Pending consents kept at most, from every source.
    pub max_entries: usize,
    /// Bytes kept at most, from every source (each entry counts its
    /// compact size, [`ConsentLimits::entry_bytes`]).
    pub max_bytes: usize,
    /// Pending consents one source (an IPv4 address, an IPv6 /64) may hold.
    pub per_source: usize,
    /// Pending consents one client may hold (a CIMD client is shared by
    /// all its users, so this is high; the per-source cap is what stops a
    /// flood).
    pub per_client: usize,
}

impl Default for ConsentLimits {
    /// 10,000 entries and 32 MiB in all, 32 per source, 2,000 per client.
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 32 * 1024 * 1024,
            per_source: 32,
            per_client: 2_000,
        }
    }
}

impl ConsentLimits {
    /// What one entry is counted as: its compact form's heap bytes, its
    /// id and client id, and the fixed part with the indexes' share.
    pub const fn entry_bytes(held: usize, key: usize, client: usize) -> usize {
        held + 3 * key + 2 * client + std::mem::size_of::<Waiting>() + 96
    }
}

/// A pending consent, kept server-side in compact form: the authorization
/// as its JSON bytes (an upstream sign-in, which needs a signed-in user
/// and so cannot be flooded anonymously, whole), the form's CSRF value and
/// cookie as SHA-256 digests.
struct Waiting {
    held: Held,
    csrf: authio_mcp::secret::SecretHash,
    cookie: authio_mcp::secret::SecretHash,
    /// Who started it (the connection's source), for the per-source cap.
    source: Option<authio_mcp::cimd::RequestSource>,
    client: Box<str>,
    created_at: time::OffsetDateTime,
    bytes: usize,
}

enum Held {
    Pending(Box<[u8]>),
    SignedIn(Box<SignedIn>),
}

impl Held {
    fn heap_bytes(&self) -> usize {
        match self {
            Self::Pending(json) => json.len(),
            // Not flood-prone; counted as its authorization's JSON and a
            // generous allowance for the user record.
            Self::SignedIn(s) => serde_json::to_vec(&s.pending).map_or(4096, |v| v.len()) + 1024,
        }
    }
}

/// The pending consents with their per-source and per-client indexes.
#[derive(Default)]
pub(super) struct WaitingRoom {
    entries: HashMap<String, Waiting>,
    /// Ids per source, oldest first.
    by_source: HashMap<Option<authio_mcp::cimd::RequestSource>, std::collections::VecDeque<String>>,
    per_client: HashMap<Box<str>, usize>,
    /// Ids in arrival order, for expiry.
    order: std::collections::VecDeque<(time::OffsetDateTime, String)>,
    bytes: usize,
}

impl WaitingRoom {
    fn insert(&mut self, id: String, w: Waiting) {
        self.bytes += w.bytes;
        *self.per_client.entry(w.client.clone()).or_default() += 1;
        self.by_source
            .entry(w.source.clone())
            .or_default()
            .push_back(id.clone());
        self.order.push_back((w.created_at, id.clone()));
        self.entries.insert(id, w);
    }

    fn remove(&mut self, id: &str) -> Option<Waiting> {
        let w = self.entries.remove(id)?;
        self.bytes = self.bytes.saturating_sub(w.bytes);
        if let Some(n) = self.per_client.get_mut(&w.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&w.client);
            }
        }
        if let Some(ids) = self.by_source.get_mut(&w.source) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_source.remove(&w.source);
            }
        }
        Some(w)
    }

    /// Drops what is older than the pending-authorization lifetime.
    fn expire(&mut self, now: time::OffsetDateTime) {
        while let Some((at, id)) = self.order.front().cloned() {
            if now - at <= authio_mcp::authorize::PENDING_AUTHORIZATION_TTL {
                break;
            }
            self.order.pop_front();
            self.remove(&id);
        }
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order.retain(|(_, id)| entries.contains_key(id));
        }
    }

    /// Whether one more entry of `bytes` may be kept for `source` and
    /// `client`: at most `per_source` per source and `per_client` per
    /// client; when the whole room is full (entries or bytes), the oldest
    /// entries of the source holding the most are dropped, so the global
    /// cap refuses only the noisiest source (which is refused if it is the
    /// requester's own).
    fn admit(
        &mut self,
        limits: &ConsentLimits,
        source: Option<&authio_mcp::cimd::RequestSource>,
        client: &str,
        bytes: usize,
    ) -> Result<(), OAuthError> {
        let busy = || OAuthError::new(ErrorCode::TemporarilyUnavailable);
        let own = source.cloned();
        if self.by_source.get(&own).map_or(0, |ids| ids.len()) >= limits.per_source || bytes > limits.max_bytes {
            return Err(busy());
        }
        if self.per_client.get(client).copied().unwrap_or(0) >= limits.per_client {
            return Err(busy());
        }
        while self.entries.len() >= limits.max_entries || self.bytes + bytes > limits.max_bytes {
            let noisiest = self
                .by_source
                .iter()
                .max_by_key(|(_, ids)| ids.len())
                .map(|(s, ids)| (s.clone(), ids.front().cloned()));
            match noisiest {
                Some((noisy, Some(oldest))) if noisy != own => {
                    self.remove(&oldest);
                }
                _ => return Err(busy()),
            }
        }
        Ok(())
    }
}

/// The login-and-consent page (demo: the user types a name; no password).
pub(super) struct ConsentPage {
    pub(super) pending: Mutex<WaitingRoom>,
    pub(super) limits: ConsentLimits,
    pub(super) auto_approve: bool,
    /// `Secure` on the consent cookie: whenever the issuer is https.
    pub(super) secure_cookie: bool,
}

const CONSENT_COOKIE: &str = "authio_consent";

#[async_trait]
impl ConsentHandler for ConsentPage {
    async fn consent(
        &self,
        endpoints: &OAuthEndpoints,
        pending: PendingAuthorization,
        parts: &http::request::Parts,
    ) -> http::Response<Vec<u8>> {
        if self.auto_approve {
            let subject = Subject::new(DEMO_SUBJECT).unwrap_or_else(|_| unreachable!("a valid literal"));
            return endpoints.approve(pending, subject, None).await;
        }
        self.show(endpoints, pending, None, parts).await
    }

    async fn consent_signed_in(
        &self,
        endpoints: &OAuthEndpoints,
        signed_in: SignedIn,
        parts: &http::request::Parts,
    ) -> http::Response<Vec<u8>> {
        // `--auto-approve` skips the consent page only: the user did sign
        // in upstream to get here.
        if self.auto_approve {
            return endpoints.approve_signed_in(signed_in, None).await;
        }
        let pending = signed_in.pending.clone();
        self.show(endpoints, pending, Some(signed_in), parts).await
    }
}

impl ConsentPage {
    async fn show(
        &self,
        endpoints: &OAuthEndpoints,
        pending: PendingAuthorization,
        signed_in: Option<SignedIn>,
        parts: &http::request::Parts,
    ) -> http::Response<Vec<u8>> {
        let random = |n: usize| {
            let mut b = vec![0u8; n];
            endpoints.server().random_source().fill(&mut b);
            URL_SAFE_NO_PAD.encode(b)
        };
        let (id, csrf, cookie) = (random(16), random(32), random(32));
        // The library's page (DefaultPages unless the endpoints were given
        // another renderer), from what the pending authorization presents.
        let user = match &signed_in {
            Some(s) => ConsentUser::SignedIn {
                display: s
                    .user
                    .email
                    .clone()
                    .or_else(|| s.user.name.clone())
                    .unwrap_or_else(|| s.subject.as_str().to_owned()),
            },
            None => ConsentUser::LoginField {
                name: "username".to_owned(),
                label: "User name (demo login, no password)".to_owned(),
                value: DEMO_SUBJECT.to_owned(),
            },
        };
        let mut r = {
            let view = ConsentView::new(&pending, "/consent")
                .hidden_field("request_id", id.as_str())
                .hidden_field("csrf", csrf.as_str())
                .user(user)
                .request_id(request_id(&parts.headers));
            endpoints.consent_page(&view)
        };
        let client: Box<str> = pending.client_id.as_str().into();
        let created_at = pending.created_at;
        let held = match signed_in {
            Some(s) => Held::SignedIn(Box::new(s)),
            None => match serde_json::to_vec(&pending) {
                Ok(json) => Held::Pending(json.into_boxed_slice()),
                Err(_) => return endpoints.error_page_for(&parts.headers, &OAuthError::server_error(), None),
            },
        };
        let bytes = ConsentLimits::entry_bytes(held.heap_bytes(), id.len(), client.len());
        {
            let Ok(mut room) = self.pending.lock() else {
                return endpoints.error_page_for(&parts.headers, &OAuthError::server_error(), None);
            };
            room.expire(endpoints.server().now());
            let source = parts.extensions.get::<authio_mcp::cimd::RequestSource>().cloned();
            if let Err(e) = room.admit(&self.limits, source.as_ref(), &client, bytes) {
                return endpoints.error_page_for(&parts.headers, &e, None);
            }
            room.insert(
                id,
                Waiting {
                    held,
                    csrf: authio_mcp::secret::SecretHash::of(&csrf),
                    cookie: authio_mcp::secret::SecretHash::of(&cookie),
                    source,
                    client,
                    created_at,
                    bytes,
                },
            );
        }
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{CONSENT_COOKIE}={cookie}; Path=/consent; HttpOnly; SameSite=Strict{secure}"
        )) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }
}

pub(super) async fn consent_submit(State(app): State<App>, req: Request) -> Response {
    let cookie = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(CONSENT_COOKIE).and_then(|r| r.strip_prefix('=')))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let request_headers = req.headers().clone();
    let Ok(req) = buffer(req, 8 * 1024).await else {
        let too_large = OAuthError::with_description(ErrorCode::InvalidRequest, "the consent form is too large")
            .with_status(StatusCode::PAYLOAD_TOO_LARGE);
        return into_axum(app.endpoints.error_page_for(&request_headers, &too_large, None));
    };
    let mut fields: HashMap<String, String> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(req.body()) {
        fields.insert(k.into_owned(), v.into_owned());
    }
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    // An unknown, expired, forged or already used form: the user starts
    // again from the app (the page shows the request id).
    let forbidden = || {
        into_axum(
            app.endpoints.error_page_for(
                &request_headers,
                &OAuthError::with_description(
                    ErrorCode::AccessDenied,
                    "the consent form is invalid, has expired or was already used",
                )
                .with_status(StatusCode::FORBIDDEN),
                Some(ErrorKind::StartAgain),
            ),
        )
    };
    let waiting = {
        let Ok(mut room) = app.consent.pending.lock() else {
            return forbidden();
        };
        let presented = authio_mcp::secret::SecretHash::of(get("csrf"));
        let ok = room.entries.get(get("request_id")).is_some_and(|w| {
            w.csrf == presented && cookie.iter().any(|c| authio_mcp::secret::SecretHash::of(c) == w.cookie)
        });
        if !ok {
            return forbidden();
        }
        room.remove(get("request_id"))
    };
    let Some(waiting) = waiting else { return forbidden() };
    let (pending, signed_in) = match waiting.held {
        Held::SignedIn(s) => (s.pending.clone(), Some(*s)),
        Held::Pending(json) => match serde_json::from_slice::<PendingAuthorization>(&json) {
            Ok(p) => (p, None),
            Err(_) => {
                return into_axum(
                    app.endpoints
                        .error_page_for(&request_headers, &OAuthError::server_error(), None),
                );
            }
        },
    };
    match (get("action"), signed_in) {
        ("approve", Some(signed_in)) => into_axum(app.endpoints.approve_signed_in(signed_in, None).await),
        ("approve", None) => match Subject::new(get("username")) {
            Ok(subject) => into_axum(app.endpoints.approve(pending, subject, None).await),
            Err(_) => forbidden(),
        },
        _ => into_axum(app.endpoints.deny(&pending).await),
    }
}
