//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document).
//!
//! An MCP client's `client_id` is the HTTPS URL of a JSON document that
//! describes it; the authorization server fetches, validates and caches it.
//! This is the surface most exposed to strangers (the server fetches URLs
//! they choose), so every step is a pure, separately tested function:
//!
//! 1. [`check_url`]: the URL under the project's [`ClientIdUrlPolicy`], the
//!    trust policy ([`CimdPolicy`]: allow-list, deny-list, any https host),
//!    and IP-literal / `localhost` hosts ([`is_special_use`]);
//! 2. a [`FetchPlan`] for a [`MetadataFetcher`] (the I/O, done by the
//!    driver; its docs carry the SSRF contract);
//! 3. [`validate_response`]: status 200, JSON content type, 5120-byte cap,
//!    UTF-8, a JSON object, no secrets, `client_id` equal to the URL, then
//!    [`crate::client::ClientMetadata::validate`] with the CIMD profile;
//! 4. [`cache_expiry`]: [RFC 9111] directives clamped to the project's bounds,
//!    into a [`CachedDocument`] that is re-validated on every use;
//! 5. [`ConsentDisplay`] for the consent screen and [`CimdPreview`] for the
//!    dashboard's preview.
//!
//! Every failure is a [`CimdError`] with a stable [`CimdError::reason`].
//! The driver that sequences these steps (with a cache and single-flight
//! fetching) is [`crate::server::AuthorizationServer::resolve_cimd_client`].
//!
//! [RFC 9111]: https://www.rfc-editor.org/rfc/rfc9111

mod address;
mod cache;
mod consent;
mod document;
mod error;
mod fetch;
mod limit;
mod policy;
mod preview;

pub use self::address::{is_loopback, is_special_use};
pub use self::cache::{CacheBounds, CacheDirectives, CachedDocument, cache_expiry, parse_http_date};
pub use self::consent::ConsentDisplay;
pub use self::document::{
    address_refused, check_url, is_json_content_type, parse_response, validate_document, validate_response,
};
pub use self::error::CimdError;
#[cfg(feature = "reqwest")]
pub(crate) use self::error::truncate;
pub use self::fetch::{ACCEPT, FetchError, FetchPlan, FetchResponse, MAX_DOCUMENT_BYTES, MetadataFetcher};
pub use self::limit::{
    FetchClass, FetchGovernor, FetchLimits, FetchRequest, HostRateLimiter, InFlightCounts, Refusal, RequestSource,
};
pub use self::policy::{
    CimdPolicy, CimdPolicyError, CimdTrust, DEFAULT_CACHE_MAX, DEFAULT_CACHE_MIN, DEFAULT_FETCH_TIMEOUT_MS,
    DEFAULT_STALE_GRACE, HostPattern, InvalidHostPattern, TrustRule,
};
pub use self::preview::{CimdPreview, FailedPreview, ResolvedPreview, parse_preview_request};
pub use crate::client_id_url::{ClientIdUrl, ClientIdUrlError, ClientIdUrlPolicy};
