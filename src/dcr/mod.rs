//! Dynamic Client Registration ([RFC 7591]) gated by initial access tokens.
//!
//! The pure half of registration: initial access tokens (IATs) and their
//! lifecycle, the `Authorization: Bearer` parser of the registration
//! endpoint, the pins an IAT imposes on the metadata, and the minting of a
//! client with its [RFC 7591 section 3.2.1] response. Nothing here reads a
//! clock, draws randomness or touches a store: `now` and random bytes are
//! arguments. The driver (`AuthorizationServer::register_client`) sequences
//! these functions around the [`crate::store::IatStore`] and
//! [`crate::store::ClientStore`].
//!
//! # Initial access tokens
//!
//! An IAT is `iatk_` followed by the unpadded base64url encoding of 32
//! random bytes (256 bits). It is shown once, when issued
//! ([`IatRecord::issue`]); the [`IatRecord`] keeps only its SHA-256
//! [`SecretHash`](crate::secret::SecretHash). Because the token has 256 bits of entropy, an unsalted
//! fast hash is a safe lookup key, and looking a record up by hash leaks
//! nothing useful through timing; equality of hashes is constant-time.
//!
//! A record may expire (`expires_at`), may be limited to `max_uses`
//! registrations, may be revoked, and pins registration metadata
//! ([`PinnedMetadata`], by default `token_endpoint_auth_method = none`, the
//! dashboard's "Issue IAT" button, seed guide step 3b).
//!
//! # Client secrets
//!
//! Confidential clients (`client_secret_basic`, `client_secret_post`) get a
//! secret of 32 random bytes, unpadded base64url, no prefix. It is returned
//! once in the registration response and stored only as its hash. Its
//! lifetime is [`RegistrationPolicy::client_secret_ttl`]: `None` (the
//! default) means it never expires and the response says
//! `"client_secret_expires_at": 0` ([RFC 7591 section 3.2.1]).
//!
//! # Layout
//!
//! Three files, re-exported here: the initial access tokens (ids,
//! records, options, pins, the bearer parser), the gate (why a
//! registration is refused: [`RegistrationError`]), and the registration
//! itself (request validation, minting, the response).
//!
//! [RFC 7591]: https://www.rfc-editor.org/rfc/rfc7591
//! [RFC 7591 section 3.2.1]: https://www.rfc-editor.org/rfc/rfc7591#section-3.2.1

mod gate;
mod iat;
mod registration;

pub use gate::{MAX_ANONYMOUS_METADATA_BYTES, RegistrationError};
pub use iat::{
    IAT_PREFIX, IAT_RANDOM_BYTES, IatError, IatId, IatOptions, IatRecord, IatStatus, IatView, MAX_IAT_LABEL,
    PinnedMetadata, parse_bearer,
};
pub use registration::{
    CLIENT_SECRET_RANDOM_BYTES, MAX_REGISTRATION_BODY, Registration, RegistrationPolicy, RegistrationResponse,
    validate_request,
};

#[cfg(test)]
mod tests;
