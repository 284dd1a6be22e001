//! The pages a user sees: the consent page and the error page, rendered
//! through a small template trait so a host can theme them.
//!
//! [`PageRenderer`] turns a [`ConsentView`] or an [`ErrorView`] into
//! [`Html`]; [`DefaultPages`] is the built-in renderer (responsive, no
//! script, every value escaped). [`crate::http::OAuthEndpoints`] renders
//! every error page through its renderer (set it with
//! [`crate::http::OAuthEndpoints::with_pages`]; the `axum` router uses the
//! endpoints' renderer), and a host's consent step renders its page with
//! [`crate::http::OAuthEndpoints::consent_page`].
//!
//! [`consent_response`] and [`error_response`] wrap the HTML with the
//! headers these pages need: `no-store`, `X-Frame-Options: DENY`,
//! `Referrer-Policy: no-referrer`, and a Content Security Policy that
//! allows no script, only the inline styles the renderer declared (by
//! hash, [`Html::allow_inline_style`]), images only from the logos the
//! presentation marks as showable, and form submission only to this
//! server and the verified redirect URI's origin.
//!
//! # What the views carry
//!
//! A consent page shows [`crate::presentation::ConsentPresentation`], built
//! when the request was validated, plus what the host adds: where the form
//! posts, its hidden fields (request id, CSRF token), who the user is.
//! An error page shows an [`ErrorKind`] in the user's words (whose fault it
//! is and what to do next), the OAuth error for the app's developer, and
//! the request id from the host's `X-Request-Id` header
//! ([`request_id`]). An error page never links or redirects to the
//! client: errors before the redirect URI is verified must stay on the
//! page ([RFC 6749 section 4.1.2.1]).
//!
//! [RFC 6749 section 4.1.2.1]: https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::authorize::PendingAuthorization;
use crate::error::{ErrorCode, OAuthError};
use crate::presentation::ConsentPresentation;
use crate::secret::SecretString;

mod default;

pub use default::DefaultPages;

/// Renders the consent and error pages. Implement it to theme them; the
/// built-in [`DefaultPages`] is the default.
///
/// # Security
/// Escape every value taken from a view ([`escape_html`]): client names,
/// URLs, scopes and descriptions come from clients and administrators.
/// Show the verified facts first (see [`crate::presentation`]). Never add
/// a link or an automatic redirect to the client on an error page.
/// Inline `<style>` elements must be declared with
/// [`Html::allow_inline_style`] (the CSP allows them by hash); inline
/// scripts and style attributes are blocked.
pub trait PageRenderer: Send + Sync {
    /// The consent page.
    fn consent(&self, view: &ConsentView<'_>) -> Html;

    /// An error page.
    fn error(&self, view: &ErrorView) -> Html;
}

/// A rendered page: the document and the inline styles it may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Html {
    body: String,
    style_hashes: Vec<String>,
}

impl Html {
    /// A document (already escaped where needed).
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            style_hashes: Vec::new(),
        }
    }

    /// Allows one inline `<style>` element whose content is exactly `css`:
    /// its SHA-256 goes into the CSP `style-src`.
    #[must_use]
    pub fn allow_inline_style(mut self, css: &str) -> Self {
        let digest = Sha256::digest(css.as_bytes());
        self.style_hashes.push(format!("'sha256-{}'", STANDARD.encode(digest)));
        self
    }

    /// The document.
    pub fn as_str(&self) -> &str {
        &self.body
    }

    /// The document, owned.
    pub fn into_string(self) -> String {
        self.body
    }

    /// The CSP sources of the declared inline styles.
    pub fn style_sources(&self) -> &[String] {
        &self.style_hashes
    }
}

/// Who the consent page is for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsentUser {
    /// Not shown (the host signs the user in on another page).
    #[default]
    Unknown,
    /// The signed-in user, shown by this name ("Signed in as ...").
    SignedIn {
        /// An email address or a name.
        display: String,
    },
    /// A text field for a user name (a demo or a combined login-and-consent
    /// form), labelled for screen readers; its element id is `username`.
    LoginField {
        /// The form field's name.
        name: String,
        /// Its visible label.
        label: String,
        /// Its initial value.
        value: String,
    },
}

/// Everything a consent page shows: the pending authorization's
/// presentation plus what the host adds (the form, the user).
///
/// The built-in page posts the form to [`ConsentView::form_action`] with
/// the hidden fields and `action=approve` or `action=deny`.
pub struct ConsentView<'a> {
    pending: &'a PendingAuthorization,
    form_action: String,
    hidden: Vec<(String, SecretString)>,
    user: ConsentUser,
    lang: String,
    request_id: Option<String>,
}

impl fmt::Debug for ConsentView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsentView")
            .field("client_id", &self.pending.client_id)
            .field("form_action", &self.form_action)
            .field(
                "hidden",
                &self.hidden.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            )
            .field("user", &self.user)
            .field("lang", &self.lang)
            .finish_non_exhaustive()
    }
}

impl<'a> ConsentView<'a> {
    /// The view of `pending`, whose form posts to `form_action` (a path on
    /// this server: the CSP allows forms to post only to this server and
    /// to the redirect URI's origin).
    pub fn new(pending: &'a PendingAuthorization, form_action: impl Into<String>) -> Self {
        Self {
            pending,
            form_action: form_action.into(),
            hidden: Vec::new(),
            user: ConsentUser::Unknown,
            lang: "en".to_owned(),
            request_id: None,
        }
    }

    /// Adds a hidden form field (e.g. the request id and the CSRF token);
    /// values are kept out of `Debug`.
    #[must_use]
    pub fn hidden_field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.hidden.push((name.into(), SecretString::from(value.into())));
        self
    }

    /// Who the user is.
    #[must_use]
    pub fn user(mut self, user: ConsentUser) -> Self {
        self.user = user;
        self
    }

    /// The page's language tag (default `en`; the built-in texts are
    /// English).
    #[must_use]
    pub fn lang(mut self, lang: impl Into<String>) -> Self {
        self.lang = lang.into();
        self
    }

    /// The request id to show (see [`request_id`]).
    #[must_use]
    pub fn request_id(mut self, id: Option<&str>) -> Self {
        self.request_id = id.filter(|i| valid_request_id(i)).map(str::to_owned);
        self
    }

    /// The pending authorization.
    pub const fn pending(&self) -> &PendingAuthorization {
        self.pending
    }

    /// What to show ([`PendingAuthorization::presentation`]).
    pub const fn presentation(&self) -> &ConsentPresentation {
        &self.pending.presentation
    }

    /// Where the form posts.
    pub fn form_action(&self) -> &str {
        &self.form_action
    }

    /// The hidden fields, name and value (the values are secrets: render
    /// them only into the form).
    pub fn hidden_fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.hidden.iter().map(|(n, v)| (n.as_str(), v.expose_secret()))
    }

    /// Who the user is.
    pub const fn consent_user(&self) -> &ConsentUser {
        &self.user
    }

    /// The language tag.
    pub fn language(&self) -> &str {
        &self.lang
    }

    /// The request id, if the host provided one.
    pub fn shown_request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

/// What went wrong, in the user's terms: whose fault it is decides what
/// the page says and what it tells the user to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The app that sent the user is misconfigured or not accepted here
    /// (unknown client, bad redirect URI, unusable metadata document).
    ClientMisconfigured,
    /// The link expired or the form was already used: start again from
    /// the app.
    StartAgain,
    /// The address names no project or sign-in provider here.
    UnknownService,
    /// This server failed (storage, configuration).
    ServerTrouble,
    /// This server is busy (too many pending sign-ins): try again soon.
    Busy,
}

impl ErrorKind {
    /// The kind of an error shown on a page: `server_error` and 5xx are
    /// server trouble, `temporarily_unavailable` is busy, 404 is an unknown
    /// project or provider, `access_denied` and `invalid_grant` mean an
    /// expired or used link or form, and everything else is the client's
    /// misconfiguration (what phase 1 of the authorization request
    /// refuses).
    pub fn of(e: &OAuthError) -> Self {
        match (e.code(), e.status()) {
            (ErrorCode::ServerError, _) => Self::ServerTrouble,
            (ErrorCode::TemporarilyUnavailable, _) => Self::Busy,
            (_, StatusCode::NOT_FOUND) => Self::UnknownService,
            (ErrorCode::AccessDenied | ErrorCode::InvalidGrant, _) => Self::StartAgain,
            (_, status) if status.is_server_error() => Self::ServerTrouble,
            _ => Self::ClientMisconfigured,
        }
    }

    /// A short label of whose problem it is.
    pub const fn label(self) -> &'static str {
        match self {
            Self::ClientMisconfigured => "Problem with the app",
            Self::StartAgain => "Sign-in expired",
            Self::UnknownService => "Unknown address",
            Self::ServerTrouble => "Problem on our side",
            Self::Busy => "Service busy",
        }
    }

    /// The page's headline.
    pub const fn headline(self) -> &'static str {
        match self {
            Self::ClientMisconfigured => "This app's sign-in request cannot be accepted",
            Self::StartAgain => "This sign-in link has expired or was already used",
            Self::UnknownService => "There is no sign-in service at this address",
            Self::ServerTrouble => "Something went wrong on our side",
            Self::Busy => "The sign-in service is busy",
        }
    }

    /// What happened and whose fault it is.
    pub const fn explanation(self) -> &'static str {
        match self {
            Self::ClientMisconfigured => {
                "The app that sent you here is misconfigured or not accepted by this service. \
                 This is not a problem with your account, and you have not been sent back to the app."
            }
            Self::StartAgain => {
                "A sign-in page works only once and only for a few minutes. Nothing is wrong with your account."
            }
            Self::UnknownService => {
                "The link you followed names a service or sign-in provider that does not exist here. \
                 It may be mistyped or out of date."
            }
            Self::ServerTrouble => {
                "The sign-in service could not complete your request. This is not your fault or the app's."
            }
            Self::Busy => "Too many sign-ins are in progress right now. This is not your fault.",
        }
    }

    /// What the user can do next.
    pub const fn next_step(self) -> &'static str {
        match self {
            Self::ClientMisconfigured => "Contact the app's developer or support and give them the details below.",
            Self::StartAgain => "Go back to the app and start signing in again.",
            Self::UnknownService => "Check the address, or start again from the app.",
            Self::ServerTrouble => {
                "Try again in a few minutes. If it keeps happening, contact support and quote the request id."
            }
            Self::Busy => "Wait a moment, then start again from the app.",
        }
    }
}

/// Everything an error page shows.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorView {
    /// Whose fault, in the user's words.
    pub kind: ErrorKind,
    /// The OAuth error code, for the app's developer.
    pub code: ErrorCode,
    /// The error description, for the app's developer.
    pub description: Option<String>,
    /// The HTTP status of the page.
    pub status: StatusCode,
    /// The request id (see [`request_id`]).
    pub request_id: Option<String>,
    /// The page's language tag (`en`).
    pub lang: String,
}

impl ErrorView {
    /// The view of `e`, its kind decided by [`ErrorKind::of`].
    pub fn new(e: &OAuthError) -> Self {
        Self {
            kind: ErrorKind::of(e),
            code: e.code(),
            description: e.description().map(str::to_owned),
            status: e.status(),
            request_id: None,
            lang: "en".to_owned(),
        }
    }

    /// With another kind (when the caller knows better than the code).
    #[must_use]
    pub const fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// With the request id, when it is well-formed (see [`request_id`]).
    #[must_use]
    pub fn with_request_id(mut self, id: Option<&str>) -> Self {
        self.request_id = id.filter(|i| valid_request_id(i)).map(str::to_owned);
        self
    }
}

/// The request-id header the host (or its proxy) sets on the incoming
/// request: `X-Request-Id`.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id of a request: the `X-Request-Id` header, when it is 1 to
/// 64 characters of `[A-Za-z0-9._:-]` (anything else is ignored, never
/// shown). The host should set it at its edge (replacing any value the
/// client sent) and log it, so a user quoting it can be found.
pub fn request_id(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(REQUEST_ID_HEADER).iter();
    let first = values.next()?.to_str().ok()?;
    (values.next().is_none() && valid_request_id(first)).then_some(first)
}

pub(crate) fn valid_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Escapes `& < > " '` for HTML text and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The consent page as a response: 200, `text/html`, `no-store`, framing
/// refused, no referrer, and a CSP allowing no script, the declared inline
/// styles, images from the service logo's and the verified client logo's
/// origins only, and forms posting only to this server and the verified
/// redirect URI's origin (browsers apply `form-action` to the redirect
/// that follows the post).
pub fn consent_response(html: Html, view: &ConsentView<'_>) -> Response<Vec<u8>> {
    let p = view.presentation();
    let mut images: Vec<String> = Vec::new();
    let logos = [
        p.service.logo_uri.as_deref(),
        p.client.logo.as_ref().filter(|l| l.verified).map(|l| l.uri.as_str()),
    ];
    for origin in logos.into_iter().flatten().filter_map(https_origin) {
        if !images.contains(&origin) {
            images.push(origin);
        }
    }
    let mut csp = String::from("default-src 'none'");
    if !images.is_empty() {
        csp.push_str("; img-src ");
        csp.push_str(&images.join(" "));
    }
    push_styles(&mut csp, &html);
    csp.push_str("; form-action 'self'");
    if let Some(origin) = redirect_origin(&view.pending().redirect_uri) {
        csp.push(' ');
        csp.push_str(&origin);
    }
    csp.push_str("; frame-ancestors 'none'; base-uri 'none'");
    page(StatusCode::OK, html, &csp)
}

/// An error page as a response: the view's status, `text/html`,
/// `no-store`, framing refused, no referrer, and a CSP allowing no
/// script, no image, no form, only the declared inline styles.
pub fn error_response(html: Html, view: &ErrorView) -> Response<Vec<u8>> {
    let mut csp = String::from("default-src 'none'");
    push_styles(&mut csp, &html);
    csp.push_str("; form-action 'none'; frame-ancestors 'none'; base-uri 'none'");
    page(view.status, html, &csp)
}

/// Renders the consent page with `renderer` into a response
/// ([`consent_response`]).
pub fn render_consent(renderer: &dyn PageRenderer, view: &ConsentView<'_>) -> Response<Vec<u8>> {
    consent_response(renderer.consent(view), view)
}

/// Renders an error page with `renderer` into a response
/// ([`error_response`]).
pub fn render_error(renderer: &dyn PageRenderer, view: &ErrorView) -> Response<Vec<u8>> {
    error_response(renderer.error(view), view)
}

fn push_styles(csp: &mut String, html: &Html) {
    if !html.style_sources().is_empty() {
        csp.push_str("; style-src ");
        csp.push_str(&html.style_sources().join(" "));
    }
}

fn page(status: StatusCode, html: Html, csp: &str) -> Response<Vec<u8>> {
    let mut r = Response::new(html.into_string().into_bytes());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Every part of the policy is an origin serialization, a scheme or a
    // base64 hash; should it still not be a header value, the strictest
    // policy replaces it (the page then shows unstyled).
    let csp = HeaderValue::from_str(csp).unwrap_or_else(|_| {
        HeaderValue::from_static("default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    });
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    r
}

/// The origin of an `https` URL, for `img-src`.
fn https_origin(uri: &str) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    (u.scheme() == "https" && u.host_str().is_some()).then(|| u.origin().ascii_serialization())
}

/// The redirect URI's origin for `form-action`: `scheme://host[:port]`
/// for `http`/`https`, `scheme:` for a private-use scheme.
pub(crate) fn redirect_origin(uri: &str) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    match u.host_str() {
        Some(_) if matches!(u.scheme(), "http" | "https") => Some(u.origin().ascii_serialization()),
        _ => {
            let scheme = u.scheme();
            scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                .then(|| format!("{scheme}:"))
        }
    }
}

#[cfg(test)]
mod tests;
