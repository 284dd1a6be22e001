//! Who made the request an audit event came from: a request id, the
//! client's address and user agent, as the host's HTTP edge knows them.
//!
//! The driver's methods do not take these as arguments: the host runs a
//! request's work inside [`RequestMeta::scope`], and every audit event
//! recorded while that future runs carries the metadata
//! ([`crate::audit::AuditEvent::request`]). Outside a scope events carry
//! none.

use std::cell::RefCell;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};

/// The longest user agent kept (a longer one is cut, on a character
/// boundary). Request ids are at most 64 characters
/// ([`RequestMeta::with_request_id`]).
pub const MAX_META_LEN: usize = 256;

/// Request metadata recorded on audit events. Every member is optional:
/// the host fills in what it knows.
///
/// # Security
/// Only what the host supplies is recorded, and only in a form that reads
/// as what it is: the user agent and a request id taken from a client
/// header are attacker-controlled text. A request id is kept only when it
/// is 1 to 64 characters of `[A-Za-z0-9._:-]` (the syntax error pages
/// accept, [`crate::pages::request_id`]); the user agent is cut to
/// [`MAX_META_LEN`] bytes, and control, bidirectional-override and
/// invisible characters in it are replaced by U+FFFD, so a log reader sees
/// that something was there and the text cannot reorder or hide itself.
/// The members are private so that every value, also one read back from a
/// stored event, goes through these rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Wire")]
pub struct RequestMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
}

/// The serialized form, cleaned on the way in.
#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    client_ip: Option<IpAddr>,
    #[serde(default)]
    user_agent: Option<String>,
}

impl From<Wire> for RequestMeta {
    fn from(w: Wire) -> Self {
        let mut meta = Self::new();
        if let Some(id) = w.request_id {
            meta = meta.with_request_id(id);
        }
        if let Some(ip) = w.client_ip {
            meta = meta.with_client_ip(ip);
        }
        if let Some(ua) = w.user_agent {
            meta = meta.with_user_agent(ua);
        }
        meta
    }
}

impl RequestMeta {
    /// No metadata.
    pub const fn new() -> Self {
        Self {
            request_id: None,
            client_ip: None,
            user_agent: None,
        }
    }

    /// With a request id (e.g. the `x-request-id` the host logs). An id
    /// that is not 1 to 64 characters of `[A-Za-z0-9._:-]` is dropped
    /// (the metadata then has no request id): a host taking the id from a
    /// client header should generate a fresh one instead
    /// ([`Self::request_id`] tells whether it was kept).
    #[must_use]
    pub fn with_request_id(mut self, id: impl AsRef<str>) -> Self {
        let id = id.as_ref();
        self.request_id = crate::pages::valid_request_id(id).then(|| id.to_owned());
        self
    }

    /// With the client's address.
    #[must_use]
    pub const fn with_client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    /// With the user agent (cut to [`MAX_META_LEN`] bytes; hidden
    /// characters replaced by U+FFFD).
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: impl AsRef<str>) -> Self {
        self.user_agent = clean(user_agent.as_ref());
        self
    }

    /// The host's id of the request.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The client's address.
    pub const fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// The `User-Agent` header, cleaned.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// Whether nothing is known.
    pub const fn is_empty(&self) -> bool {
        self.request_id.is_none() && self.client_ip.is_none() && self.user_agent.is_none()
    }

    /// Runs `fut` with this metadata as the current request's: audit
    /// events recorded while it runs carry it. Scopes nest (the inner one
    /// wins); work spawned onto other tasks does not inherit it.
    pub fn scope<F: Future>(self, fut: F) -> RequestScope<F> {
        RequestScope { meta: Some(self), fut }
    }

    /// The metadata of the innermost enclosing [`RequestMeta::scope`], if
    /// any.
    pub fn current() -> Option<Self> {
        CURRENT.with(|c| c.borrow().clone())
    }
}

/// Keeps at most [`MAX_META_LEN`] bytes, hidden characters
/// ([`crate::display_text::is_hidden`]: controls, bidi overrides and
/// isolates, invisible formatting) replaced by U+FFFD; `None` when
/// nothing visible is left.
fn clean(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.chars() {
        let c = if crate::display_text::is_hidden(c) {
            '\u{FFFD}'
        } else {
            c
        };
        if out.len() + c.len_utf8() > MAX_META_LEN {
            break;
        }
        out.push(c);
    }
    out.chars().any(|c| c != '\u{FFFD}' && c != ' ').then_some(out)
}

thread_local! {
    static CURRENT: RefCell<Option<RequestMeta>> = const { RefCell::new(None) };
}

pin_project_lite::pin_project! {
    /// The future of [`RequestMeta::scope`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct RequestScope<F> {
        meta: Option<RequestMeta>,
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for RequestScope<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // The metadata is moved into the thread's slot for the poll and
        // back out after it (also when the inner future panics), so a
        // task moving between threads takes it along.
        let outer = CURRENT.with(|c| c.replace(this.meta.take()));
        let restore = Restore {
            outer: Some(outer),
            meta: this.meta,
        };
        let poll = this.fut.poll(cx);
        drop(restore);
        poll
    }
}

struct Restore<'a> {
    outer: Option<Option<RequestMeta>>,
    meta: &'a mut Option<RequestMeta>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let outer = self.outer.take().unwrap_or_default();
        *self.meta = CURRENT.with(|c| c.replace(outer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_end() {
        assert_eq!(RequestMeta::current(), None);
        let outer = RequestMeta::new().with_request_id("outer");
        let inner = RequestMeta::new()
            .with_request_id("inner")
            .with_client_ip("192.0.2.7".parse().unwrap());
        let seen = futures_executor::block_on(outer.clone().scope(async move {
            let a = RequestMeta::current();
            let b = inner.clone().scope(async { RequestMeta::current() }).await;
            let c = RequestMeta::current();
            (a, b, c)
        }));
        assert_eq!(seen.0.unwrap().request_id(), Some("outer"));
        let b = seen.1.unwrap();
        assert_eq!(b.request_id(), Some("inner"));
        assert_eq!(b.client_ip(), Some("192.0.2.7".parse().unwrap()));
        assert_eq!(seen.2.unwrap().request_id(), Some("outer"));
        assert_eq!(RequestMeta::current(), None, "nothing leaks out of a scope");
    }

    #[test]
    fn user_agents_are_bounded_and_show_hidden_characters() {
        let m = RequestMeta::new().with_user_agent(format!("curl/8\r\nX-Injected: 1{}", "é".repeat(400)));
        let ua = m.user_agent().unwrap();
        assert!(ua.starts_with("curl/8\u{FFFD}\u{FFFD}X-Injected: 1"), "{ua}");
        assert!(ua.len() <= MAX_META_LEN);
        // Bidi overrides and invisible characters cannot reorder or hide text.
        let m = RequestMeta::new().with_user_agent("Claude\u{202E}lacigol\u{200B}\u{2066}x");
        assert_eq!(m.user_agent(), Some("Claude\u{FFFD}lacigol\u{FFFD}\u{FFFD}x"));
        assert!(!crate::display_text::has_hidden_characters(m.user_agent().unwrap()));
        assert_eq!(RequestMeta::new().with_user_agent("\u{202E}\n ").user_agent(), None);
    }

    #[test]
    fn request_ids_follow_the_error_page_syntax() {
        for ok in ["r1", "req-7f3a", "a.b_c:d-e", &"x".repeat(64)] {
            assert_eq!(RequestMeta::new().with_request_id(ok).request_id(), Some(ok));
        }
        for bad in ["", "\n\t", "req 1", "req\u{202E}1", "<script>", "é", &"x".repeat(65)] {
            assert_eq!(RequestMeta::new().with_request_id(bad).request_id(), None, "{bad:?}");
        }
    }

    #[test]
    fn stored_metadata_is_cleaned_when_read() {
        let m: RequestMeta = serde_json::from_value(serde_json::json!({
            "request_id": "not valid!",
            "client_ip": "192.0.2.1",
            "user_agent": "a\u{202E}b"
        }))
        .unwrap();
        assert_eq!(m.request_id(), None);
        assert_eq!(m.client_ip(), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(m.user_agent(), Some("a\u{FFFD}b"));
        let good = RequestMeta::new().with_request_id("r-1").with_user_agent("cursor/1.2");
        let back: RequestMeta = serde_json::from_value(serde_json::to_value(&good).unwrap()).unwrap();
        assert_eq!(back, good);
    }
}
