//! Outbound HTTP on reqwest and rustls (feature `reqwest`): every I/O
//! adapter of the crate that makes requests, with one TLS setup
//! (rustls with the ring provider, the webpki roots, HTTP/1.1) and one
//! resolver that never lets a client connect to a special-use address.
//!
//! The core modules define what is fetched and what an answer means,
//! behind host traits; the types here implement those traits:
//!
//! | type | trait | used for |
//! |---|---|---|
//! | [`ReqwestFetcher`] | [`crate::cimd::MetadataFetcher`] | Client ID Metadata Documents (and client `jwks_uri`s) |
//! | [`ReqwestUpstreamHttp`] | [`crate::upstream::UpstreamHttp`] | the upstream OpenID provider's discovery, JWKS, token and userinfo endpoints |
//! | [`ReqwestJwksFetcher`] | [`crate::resource_server::JwksFetcher`] | a resource server's copy of the authorization server's JWKS |
//! | [`IntrospectionVerifier`] | [`crate::resource_server::TokenVerifier`] | a resource server asking the introspection endpoint ([RFC 7662]) |
//!
//! A host that brings its own HTTP stack implements the traits instead
//! and does not enable the feature.
//!
//! [RFC 7662]: https://www.rfc-editor.org/rfc/rfc7662

mod cimd_fetcher;
mod introspection;
mod jwks;
mod resolver;
mod tls;
mod upstream_http;

pub use self::cimd_fetcher::{DEFAULT_CONNECT_TIMEOUT, ReqwestFetcher, ReqwestFetcherBuilder};
pub use self::introspection::{IntrospectionVerifier, IntrospectionVerifierConfig};
pub use self::jwks::ReqwestJwksFetcher;
pub use self::tls::ClientBuildError;
pub use self::upstream_http::{ReqwestUpstreamHttp, ReqwestUpstreamHttpBuilder};
