//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document).
//!
//! An MCP client's `client_id` is the HTTPS URL of a JSON document that
//! describes it; the authorization server fetches, validates and caches it.

mod url;

pub use self::url::{ClientIdUrl, ClientIdUrlError, ClientIdUrlPolicy};
