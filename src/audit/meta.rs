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

/// The longest request id or user agent kept (longer ones are cut, on a
/// character boundary).
pub const MAX_META_LEN: usize = 256;

/// Request metadata recorded on audit events. Every member is optional:
/// the host fills in what it knows.
///
/// # Security
/// Only what the host supplies is recorded; the user agent and a request
/// id taken from a client header are attacker-controlled text, so both are
/// cut to [`MAX_META_LEN`] and stripped of control characters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RequestMeta {
    /// The host's id of the request (e.g. the `x-request-id` it logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    /// The `User-Agent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl RequestMeta {
    /// No metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// With a request id.
    #[must_use]
    pub fn request_id(mut self, id: impl AsRef<str>) -> Self {
        self.request_id = clean(id.as_ref());
        self
    }

    /// With the client's address.
    #[must_use]
    pub const fn client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    /// With the user agent.
    #[must_use]
    pub fn user_agent(mut self, user_agent: impl AsRef<str>) -> Self {
        self.user_agent = clean(user_agent.as_ref());
        self
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

/// Keeps at most [`MAX_META_LEN`] bytes of printable text; `None` when
/// nothing is left.
fn clean(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_META_LEN {
            break;
        }
        out.push(c);
    }
    (!out.is_empty()).then_some(out)
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
        let outer = RequestMeta::new().request_id("outer");
        let inner = RequestMeta::new()
            .request_id("inner")
            .client_ip("192.0.2.7".parse().unwrap());
        let seen = futures_executor::block_on(outer.clone().scope(async move {
            let a = RequestMeta::current();
            let b = inner.clone().scope(async { RequestMeta::current() }).await;
            let c = RequestMeta::current();
            (a, b, c)
        }));
        assert_eq!(seen.0.unwrap().request_id.as_deref(), Some("outer"));
        let b = seen.1.unwrap();
        assert_eq!(b.request_id.as_deref(), Some("inner"));
        assert_eq!(b.client_ip, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(seen.2.unwrap().request_id.as_deref(), Some("outer"));
        assert_eq!(RequestMeta::current(), None, "nothing leaks out of a scope");
    }

    #[test]
    fn text_is_bounded_and_printable() {
        let m = RequestMeta::new()
            .user_agent(format!("curl/8\r\nX-Injected: 1{}", "é".repeat(400)))
            .request_id("\n\t");
        let ua = m.user_agent.unwrap();
        assert!(ua.starts_with("curl/8X-Injected: 1"));
        assert!(ua.len() <= MAX_META_LEN);
        assert_eq!(m.request_id, None);
    }
}
