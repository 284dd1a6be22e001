//! Client authentication at the token endpoint ([RFC 6749 section 2.3]),
//! the pure half: parsing the credentials a request presents, and checking
//! them against a registered [`Client`].
//!
//! Three ways to present a client are understood:
//!
//! - `client_secret_basic`: `Authorization: Basic base64(id ":" secret)`,
//!   where id and secret are first `application/x-www-form-urlencoded`
//!   ([RFC 6749 section 2.3.1]), so both are decoded after base64.
//! - `client_secret_post`: `client_id` and `client_secret` form parameters.
//! - `none`: a `client_id` form parameter alone (public clients, [RFC 6749
//!   section 2.3] / OAuth 2.1 section 2.4).
//!
//! - `private_key_jwt` ([RFC 7523 section 2.2], [RFC 7521 section 4.2]): a
//!   `client_assertion` JWT signed with one of the client's registered
//!   keys, with `client_assertion_type =
//!   urn:ietf:params:oauth:client-assertion-type:jwt-bearer`; see
//!   [`ClientCredentials::parse_with_assertion`] and
//!   [`ClientCredentials::verify_assertion`] (the rules themselves are
//!   [`crate::jwt::check_client_assertion`]).
//!
//! A request using two methods at once (a Basic header and a
//! `client_secret` parameter) is `invalid_request`; a `client_id`
//! parameter next to a Basic header is accepted when it names the same
//! client. Failures to authenticate are 401 `invalid_client`, with
//! `WWW-Authenticate: Basic` when the client used the `Authorization`
//! header ([RFC 6749 section 5.2]).
//!
//! # Public clients that send a secret
//!
//! A client registered with `token_endpoint_auth_method = none` that
//! presents a non-empty secret is refused (`invalid_client`): the client
//! and the server disagree about what the client is, and silently ignoring
//! a credential hides that. A Basic header with an empty password
//! (`client_id:`) counts as no secret, as some libraries send that for
//! public clients.
//!
//! [RFC 6749 section 2.3]: https://www.rfc-editor.org/rfc/rfc6749#section-2.3
//! [RFC 6749 section 2.3.1]: https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
//! [RFC 7523 section 2.2]: https://www.rfc-editor.org/rfc/rfc7523#section-2.2
//! [RFC 7521 section 4.2]: https://www.rfc-editor.org/rfc/rfc7521#section-4.2
//! [RFC 6749 section 5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use time::OffsetDateTime;

use crate::client::{Client, TokenEndpointAuthMethod};
use crate::error::{Challenge, ErrorCode, OAuthError};
use crate::secret::SecretString;

/// The longest `Authorization` header value, client id or secret looked at.
const MAX_LEN: usize = 4096;

/// How a request presented its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresentedMethod {
    /// HTTP Basic in the `Authorization` header.
    ClientSecretBasic,
    /// `client_secret` in the form body.
    ClientSecretPost,
    /// `client_id` alone.
    None,
    /// A `client_assertion` JWT ([RFC 7523 section 2.2]).
    ///
    /// [RFC 7523 section 2.2]: https://www.rfc-editor.org/rfc/rfc7523#section-2.2
    PrivateKeyJwt,
}

/// The default quota of unexpired client-assertion `jti`s one client of
/// one project may hold in the replay store: 1,000 (see
/// [`crate::store::ReplayStore`] and
/// [`crate::server::AuthorizationServerBuilder::assertion_jti_quota`]).
pub const DEFAULT_ASSERTION_JTI_QUOTA: u32 = 1_000;

/// The `client_assertion_type` of `private_key_jwt` ([RFC 7523 section
/// 2.2]).
///
/// [RFC 7523 section 2.2]: https://www.rfc-editor.org/rfc/rfc7523#section-2.2
pub const JWT_BEARER_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The client credentials of a token-endpoint request, parsed but not yet
/// checked. `Debug` redacts the secret.
#[derive(Clone, Debug)]
pub struct ClientCredentials {
    client_id: String,
    secret: Option<SecretString>,
    method: PresentedMethod,
    assertion: Option<SecretString>,
}

impl ClientCredentials {
    /// Parses the credentials of a request from its `Authorization` header
    /// value and its `client_id` / `client_secret` form parameters. Empty
    /// form parameters count as absent.
    ///
    /// # Errors
    /// A [`ClientAuthError`]; render it with
    /// [`ClientAuthError::to_oauth_error`].
    pub fn parse(
        authorization: Option<&str>,
        form_client_id: Option<&str>,
        form_client_secret: Option<&str>,
    ) -> Result<Self, ClientAuthError> {
        let form_client_id = form_client_id.filter(|s| !s.is_empty());
        let form_client_secret = form_client_secret.filter(|s| !s.is_empty());
        if form_client_id.is_some_and(|s| s.len() > MAX_LEN) || form_client_secret.is_some_and(|s| s.len() > MAX_LEN) {
            return Err(ClientAuthError::Malformed);
        }
        if let Some(header) = authorization {
            let (client_id, secret) = parse_basic(header)?;
            if form_client_secret.is_some() {
                return Err(ClientAuthError::MultipleMethods);
            }
            if form_client_id.is_some_and(|id| id != client_id) {
                return Err(ClientAuthError::ClientIdMismatch);
            }
            return Ok(Self {
                client_id,
                secret: Some(SecretString::new(secret)),
                method: PresentedMethod::ClientSecretBasic,
                assertion: None,
            });
        }
        match (form_client_id, form_client_secret) {
            (Some(id), Some(secret)) => Ok(Self {
                client_id: id.to_owned(),
                secret: Some(SecretString::from(secret)),
                method: PresentedMethod::ClientSecretPost,
                assertion: None,
            }),
            (Some(id), None) => Ok(Self {
                client_id: id.to_owned(),
                secret: None,
                method: PresentedMethod::None,
                assertion: None,
            }),
            (None, Some(_)) => Err(ClientAuthError::SecretWithoutClientId),
            (None, None) => Err(ClientAuthError::NoClient),
        }
    }

    /// Like [`ClientCredentials::parse`], also understanding a
    /// `client_assertion` ([RFC 7521 section 4.2]): with
    /// `client_assertion_type` equal to [`JWT_BEARER_ASSERTION_TYPE`], no
    /// `Authorization` header and no `client_secret`. The client is the
    /// `client_id` parameter when present, else the assertion's (not yet
    /// verified) `sub`, only to know whose keys to verify it with; the
    /// verified claims must then name the same client.
    ///
    /// # Errors
    /// A [`ClientAuthError`]: [`ClientAuthError::MalformedAssertion`] for
    /// one of the two parameters without the other or an unreadable
    /// assertion, [`ClientAuthError::UnsupportedAssertionType`],
    /// [`ClientAuthError::MultipleMethods`].
    ///
    /// [RFC 7521 section 4.2]: https://www.rfc-editor.org/rfc/rfc7521#section-4.2
    pub fn parse_with_assertion(
        authorization: Option<&str>,
        form_client_id: Option<&str>,
        form_client_secret: Option<&str>,
        assertion_type: Option<&str>,
        assertion: Option<&str>,
    ) -> Result<Self, ClientAuthError> {
        let assertion_type = assertion_type.filter(|s| !s.is_empty());
        let assertion = assertion.filter(|s| !s.is_empty());
        let (assertion_type, assertion) = match (assertion_type, assertion) {
            (None, None) => return Self::parse(authorization, form_client_id, form_client_secret),
            (Some(t), Some(a)) => (t, a),
            _ => return Err(ClientAuthError::MalformedAssertion),
        };
        if assertion_type != JWT_BEARER_ASSERTION_TYPE {
            return Err(ClientAuthError::UnsupportedAssertionType);
        }
        if authorization.is_some() || form_client_secret.is_some_and(|s| !s.is_empty()) {
            return Err(ClientAuthError::MultipleMethods);
        }
        if assertion.len() > crate::jose::MAX_TOKEN_LEN {
            return Err(ClientAuthError::InvalidAssertion("too_large"));
        }
        let client_id = match form_client_id.filter(|s| !s.is_empty()) {
            Some(id) if id.len() <= MAX_LEN => id.to_owned(),
            Some(_) => return Err(ClientAuthError::Malformed),
            None => crate::jose::unverified_claims(assertion)
                .ok()
                .and_then(|c| c.get("sub").and_then(serde_json::Value::as_str).map(str::to_owned))
                .filter(|s| !s.is_empty() && s.len() <= MAX_LEN)
                .ok_or(ClientAuthError::MalformedAssertion)?,
        };
        Ok(Self {
            client_id,
            secret: None,
            method: PresentedMethod::PrivateKeyJwt,
            assertion: Some(SecretString::from(assertion)),
        })
    }

    /// Checks a `private_key_jwt` assertion against the client it names,
    /// its public keys (`jwks`, or the document at `jwks_uri`, fetched by
    /// the driver) and the audiences this server accepts, at `now`. The
    /// `jti` single-use check is the driver's next step (through a
    /// [`crate::store::ReplayStore`]).
    ///
    /// # Errors
    /// [`ClientAuthError::WrongMethod`] unless both the client and the
    /// request use `private_key_jwt`;
    /// [`ClientAuthError::InvalidAssertion`] with the reason otherwise.
    pub fn verify_assertion(
        &self,
        client: &Client,
        keys: &crate::jose::JwkSet,
        audiences: &[&str],
        now: OffsetDateTime,
    ) -> Result<crate::jwt::ClientAssertion, ClientAuthError> {
        use crate::jose::JoseError;
        use crate::jwt::ClaimsError;
        let (TokenEndpointAuthMethod::PrivateKeyJwt, Some(assertion)) =
            (client.metadata.token_endpoint_auth_method, self.assertion.as_ref())
        else {
            return Err(ClientAuthError::WrongMethod);
        };
        let expect = crate::jose::Expect {
            algorithms: &crate::jose::SigningAlgorithm::ALL,
            typ: None,
        };
        let (_, claims) = crate::jose::verify(assertion.expose_secret(), keys, expect).map_err(|e| {
            ClientAuthError::InvalidAssertion(match e {
                JoseError::TooLarge | JoseError::Malformed => "malformed",
                JoseError::AlgorithmNotAccepted => "algorithm_not_accepted",
                JoseError::UnknownKey | JoseError::BadKeyId => "unknown_key",
                JoseError::BadSignature => "bad_signature",
                _ => "invalid_header",
            })
        })?;
        crate::jwt::check_client_assertion(
            &claims,
            client.client_id.as_str(),
            audiences,
            crate::jwt::DEFAULT_LEEWAY,
            now,
        )
        .map_err(|e| {
            ClientAuthError::InvalidAssertion(match e {
                ClaimsError::WrongSubject => "wrong_subject",
                ClaimsError::WrongAudience => "wrong_audience",
                ClaimsError::AudienceNotAString => "audience_not_a_string",
                ClaimsError::Expired => "expired",
                ClaimsError::NotYetValid | ClaimsError::IssuedInFuture => "not_yet_valid",
                ClaimsError::LifetimeTooLong => "lifetime_too_long",
                _ => "missing_claim",
            })
        })
    }

    /// The `client_id` presented (decoded). A registered id looks like
    /// `client_<24 hex>`; an `https://` one is a metadata-document client
    /// and is authenticated elsewhere.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The presented secret, if any.
    pub fn secret(&self) -> Option<&SecretString> {
        self.secret.as_ref()
    }

    /// How the client was presented.
    pub const fn method(&self) -> PresentedMethod {
        self.method
    }

    /// Whether a non-empty secret was presented.
    pub(crate) fn has_secret(&self) -> bool {
        self.secret.as_ref().is_some_and(|s| !s.expose_secret().is_empty())
    }

    /// Checks the credentials against the client they name, at `now`:
    /// confidential clients must present their secret by their registered
    /// method, and it must match (constant-time, through the stored hash)
    /// and not have expired; public clients must present no secret.
    ///
    /// # Errors
    /// [`ClientAuthError::WrongMethod`], [`ClientAuthError::MissingSecret`],
    /// [`ClientAuthError::WrongSecret`], [`ClientAuthError::SecretExpired`]
    /// or [`ClientAuthError::SecretForPublicClient`].
    pub fn verify(&self, client: &Client, now: OffsetDateTime) -> Result<(), ClientAuthError> {
        if self.method == PresentedMethod::PrivateKeyJwt {
            // Assertions are checked by `verify_assertion`, with keys.
            return Err(ClientAuthError::WrongMethod);
        }
        let registered = client.metadata.token_endpoint_auth_method;
        match registered {
            TokenEndpointAuthMethod::None => {
                if self.has_secret() {
                    Err(ClientAuthError::SecretForPublicClient)
                } else {
                    Ok(())
                }
            }
            TokenEndpointAuthMethod::ClientSecretBasic | TokenEndpointAuthMethod::ClientSecretPost => {
                let presented_matches = matches!(
                    (registered, self.method),
                    (
                        TokenEndpointAuthMethod::ClientSecretBasic,
                        PresentedMethod::ClientSecretBasic
                    ) | (
                        TokenEndpointAuthMethod::ClientSecretPost,
                        PresentedMethod::ClientSecretPost
                    )
                );
                let (Some(hash), Some(secret)) = (client.secret_hash, self.secret.as_ref()) else {
                    return Err(ClientAuthError::MissingSecret);
                };
                if !presented_matches {
                    return Err(ClientAuthError::WrongMethod);
                }
                if !hash.matches(secret.expose_secret()) {
                    return Err(ClientAuthError::WrongSecret);
                }
                if client.secret_expires_at.is_some_and(|at| now >= at) {
                    return Err(ClientAuthError::SecretExpired);
                }
                Ok(())
            }
            // Authenticated with `verify_assertion` only.
            TokenEndpointAuthMethod::PrivateKeyJwt => Err(ClientAuthError::WrongMethod),
        }
    }
}

/// Why client authentication failed.
///
/// The variants are for the host's logs; clients see a generic
/// `invalid_client` (or `invalid_request`) whatever the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientAuthError {
    /// The `Authorization` header is not valid HTTP Basic credentials
    /// (wrong scheme, bad base64, no colon, bad percent-encoding, not
    /// UTF-8, empty id, too long).
    #[error("the Authorization header is not valid Basic client credentials")]
    MalformedBasic,
    /// A form parameter is too long.
    #[error("client credentials are malformed")]
    Malformed,
    /// A Basic header and a `client_secret` parameter.
    #[error("the request uses more than one client authentication method")]
    MultipleMethods,
    /// A `client_id` parameter naming another client than the Basic header.
    #[error("client_id differs from the client in the Authorization header")]
    ClientIdMismatch,
    /// `client_secret` without `client_id`.
    #[error("client_secret requires client_id")]
    SecretWithoutClientId,
    /// No client identification at all.
    #[error("no client authentication was included")]
    NoClient,
    /// No such client in this project.
    #[error("unknown client")]
    UnknownClient,
    /// The client used another method than it registered.
    #[error("the client used another authentication method than it registered")]
    WrongMethod,
    /// A confidential client presented no secret.
    #[error("the client presented no secret")]
    MissingSecret,
    /// The secret does not match.
    #[error("the client secret does not match")]
    WrongSecret,
    /// The secret is past `client_secret_expires_at`.
    #[error("the client secret has expired")]
    SecretExpired,
    /// A public client presented a secret.
    #[error("a public client presented a secret")]
    SecretForPublicClient,
    /// `client_assertion` without `client_assertion_type` or the other way
    /// round, or an assertion that is too long or has no `sub`.
    #[error("client_assertion and client_assertion_type must be sent together, with a readable JWT")]
    MalformedAssertion,
    /// A `client_assertion_type` other than JWT bearer.
    #[error("unsupported client_assertion_type")]
    UnsupportedAssertionType,
    /// The assertion failed a check (the reason is for audit and logs:
    /// `bad_signature`, `unknown_key`, `wrong_audience`, `expired`,
    /// `replayed_jti`, `keys_unavailable`, ...).
    #[error("the client assertion is invalid ({0})")]
    InvalidAssertion(&'static str),
}

impl ClientAuthError {
    /// `invalid_request` for requests that break the syntax rules (two
    /// methods, mismatched ids, a secret without an id); `invalid_client`
    /// for every failure to authenticate.
    pub const fn code(self) -> ErrorCode {
        match self {
            Self::MultipleMethods | Self::ClientIdMismatch | Self::SecretWithoutClientId | Self::MalformedAssertion => {
                ErrorCode::InvalidRequest
            }
            _ => ErrorCode::InvalidClient,
        }
    }

    /// A short machine-readable reason for logs and audit events, e.g.
    /// `wrong_secret` (never sent: clients see a generic answer).
    pub const fn reason(self) -> &'static str {
        match self {
            Self::MalformedBasic => "malformed_basic",
            Self::Malformed => "malformed_credentials",
            Self::MultipleMethods => "multiple_methods",
            Self::ClientIdMismatch => "client_id_mismatch",
            Self::SecretWithoutClientId => "secret_without_client_id",
            Self::NoClient => "no_client",
            Self::UnknownClient => "unknown_client",
            Self::WrongMethod => "wrong_method",
            Self::MissingSecret => "missing_secret",
            Self::WrongSecret => "wrong_secret",
            Self::SecretExpired => "secret_expired",
            Self::SecretForPublicClient => "secret_for_public_client",
            Self::MalformedAssertion => "malformed_assertion",
            Self::UnsupportedAssertionType => "unsupported_assertion_type",
            Self::InvalidAssertion(_) => "invalid_assertion",
        }
    }

    /// The response: the code with a generic description (an
    /// `invalid_client` never tells which check failed), plus
    /// `WWW-Authenticate: Basic` for `invalid_client` when the client used
    /// the `Authorization` header.
    pub fn to_oauth_error(self, used_authorization_header: bool) -> OAuthError {
        let e = match self.code() {
            ErrorCode::InvalidClient => {
                let e = OAuthError::with_description(ErrorCode::InvalidClient, "client authentication failed");
                if used_authorization_header {
                    e.with_challenge(Challenge::Basic)
                } else {
                    e
                }
            }
            code => OAuthError::with_description(code, self.to_string()),
        };
        e.with_reason(self.reason())
    }
}

/// The rule for a metadata-document client (`client_id` is a URL, CIMD
/// draft section 6) authenticating without an assertion, before its
/// document is resolved: such a client is public and identifies itself by
/// `client_id` alone (RFC 6749 section 2.1,
/// <https://www.rfc-editor.org/rfc/rfc6749#section-2.1>), so presenting a
/// secret fails authentication.
///
/// # Errors
/// [`ClientAuthError::UnknownClient`] (the generic `invalid_client`).
pub fn check_document_credentials(creds: &ClientCredentials) -> Result<(), ClientAuthError> {
    if creds.has_secret() {
        return Err(ClientAuthError::UnknownClient);
    }
    Ok(())
}

/// The rule for a resolved metadata-document client that presented no
/// assertion: a confidential (`private_key_jwt`) document client must
/// authenticate with an assertion (RFC 7523 section 2.2,
/// <https://www.rfc-editor.org/rfc/rfc7523#section-2.2>); its `client_id`
/// alone is not enough.
///
/// # Errors
/// [`ClientAuthError::UnknownClient`] (the generic `invalid_client`).
pub fn check_document_client(client: &Client) -> Result<(), ClientAuthError> {
    if client.is_confidential() {
        return Err(ClientAuthError::UnknownClient);
    }
    Ok(())
}

/// Decodes `Basic base64(urlencode(id) ":" urlencode(secret))`.
fn parse_basic(header: &str) -> Result<(String, String), ClientAuthError> {
    let bad = ClientAuthError::MalformedBasic;
    if header.len() > MAX_LEN {
        return Err(bad);
    }
    let (scheme, encoded) = header.split_once(' ').ok_or(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad);
    }
    let encoded = encoded.trim_matches(' ');
    let decoded = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .map_err(|_| bad)?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad)?;
    let (id, secret) = decoded.split_once(':').ok_or(bad)?;
    let id = form_urldecode(id).ok_or(bad)?;
    let secret = form_urldecode(secret).ok_or(bad)?;
    if id.is_empty() {
        return Err(bad);
    }
    Ok((id, secret))
}

/// `application/x-www-form-urlencoded` decoding of one component: `+` is a
/// space, `%XX` a byte; the result must be UTF-8. `None` for a broken
/// escape or invalid UTF-8.
fn form_urldecode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_value(bytes.next()?)?;
                let lo = hex_value(bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
    use crate::redirect_uri::RedirectUriPolicy;
    use proptest::prelude::*;
    use time::Duration;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

    fn basic(id: &str, secret: &str) -> String {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(id), enc(secret))))
    }

    fn client(method: &str, secret: Option<&str>, expires: Option<OffsetDateTime>) -> Client {
        let m: ClientMetadata = serde_json::from_value(serde_json::json!({
            "redirect_uris": ["https://a.example.com/cb"], "token_endpoint_auth_method": method
        }))
        .unwrap();
        let v = m.validate(MetadataProfile::Dcr, RedirectUriPolicy::strict()).unwrap();
        let mut c = Client::new(ClientId::Registered(RegisteredClientId::from_random(&[1; 12])), v, NOW);
        c.secret_hash = secret.map(crate::secret::SecretHash::of);
        c.secret_expires_at = expires;
        c
    }

    #[test]
    fn document_clients_are_public_without_an_assertion() {
        let url = "https://app.example.com/client.json";
        let by_id = ClientCredentials::parse(None, Some(url), None).unwrap();
        assert_eq!(check_document_credentials(&by_id), Ok(()));
        let with_secret = ClientCredentials::parse(None, Some(url), Some("s3cret")).unwrap();
        assert_eq!(
            check_document_credentials(&with_secret),
            Err(ClientAuthError::UnknownClient)
        );
        assert_eq!(check_document_client(&client("none", None, None)), Ok(()));
        // A confidential document client needs its assertion.
        assert_eq!(
            check_document_client(&client("client_secret_basic", Some("s"), None)),
            Err(ClientAuthError::UnknownClient)
        );
    }

    #[test]
    fn parsing() {
        let c = ClientCredentials::parse(Some(&basic("client_x", "s3cret")), None, None).unwrap();
        assert_eq!(
            (c.client_id(), c.secret().unwrap().expose_secret(), c.method()),
            ("client_x", "s3cret", PresentedMethod::ClientSecretBasic)
        );
        // RFC 6749 2.3.1: both parts are form-urlencoded before base64
        let c = ClientCredentials::parse(Some(&basic("a:b c", "p%:+/é")), None, None).unwrap();
        assert_eq!(
            (c.client_id(), c.secret().unwrap().expose_secret()),
            ("a:b c", "p%:+/é")
        );
        // scheme is case-insensitive; unpadded base64 tolerated
        let raw = format!("bASIC {}", STANDARD_NO_PAD.encode("client_x:ab"));
        assert_eq!(
            ClientCredentials::parse(Some(&raw), None, None).unwrap().client_id(),
            "client_x"
        );
        // same client_id in the body is fine
        assert!(ClientCredentials::parse(Some(&basic("client_x", "s")), Some("client_x"), None).is_ok());

        let c = ClientCredentials::parse(None, Some("client_x"), Some("s3cret")).unwrap();
        assert_eq!(c.method(), PresentedMethod::ClientSecretPost);
        let c = ClientCredentials::parse(None, Some("client_x"), None).unwrap();
        assert_eq!(c.method(), PresentedMethod::None);
        assert!(c.secret().is_none());
        let c = ClientCredentials::parse(None, Some("client_x"), Some("")).unwrap();
        assert_eq!(c.method(), PresentedMethod::None, "empty parameters are absent");

        use ClientAuthError as E;
        let long = "x".repeat(5000);
        type Row<'a> = (Option<String>, Option<&'a str>, Option<&'a str>, E);
        let table: Vec<Row> = vec![
            (Some(basic("client_x", "s")), None, Some("s"), E::MultipleMethods),
            (
                Some(basic("client_x", "s")),
                Some("client_y"),
                None,
                E::ClientIdMismatch,
            ),
            (None, None, Some("s"), E::SecretWithoutClientId),
            (None, None, None, E::NoClient),
            (None, Some(""), None, E::NoClient),
            (Some("Basic".into()), None, None, E::MalformedBasic),
            (Some("Basic !!!".into()), None, None, E::MalformedBasic),
            (
                Some(format!("Basic {}", STANDARD.encode("nocolon"))),
                None,
                None,
                E::MalformedBasic,
            ),
            (
                Some(format!("Basic {}", STANDARD.encode(":secret"))),
                None,
                None,
                E::MalformedBasic,
            ),
            (
                Some(format!("Basic {}", STANDARD.encode("a%zz:b"))),
                None,
                None,
                E::MalformedBasic,
            ),
            (
                Some(format!("Basic {}", STANDARD.encode("a%ff:b"))),
                None,
                None,
                E::MalformedBasic,
            ),
            (
                Some(format!("Basic {}", STANDARD.encode([0xff, b':', b'x']))),
                None,
                None,
                E::MalformedBasic,
            ),
            (Some("Bearer abc".into()), Some("client_x"), None, E::MalformedBasic),
            (None, Some(&long), None, E::Malformed),
        ];
        for (h, id, secret, err) in table {
            assert_eq!(
                ClientCredentials::parse(h.as_deref(), id, secret).unwrap_err(),
                err,
                "{h:?} {id:?}"
            );
        }
    }

    #[test]
    fn error_rendering() {
        use ClientAuthError as E;
        let r = ClientAuthError::MalformedBasic.to_oauth_error(true).to_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[http::header::WWW_AUTHENTICATE], "Basic realm=\"oauth\"");
        let r = ClientAuthError::WrongSecret.to_oauth_error(false).to_response();
        assert_eq!(r.status(), 401);
        assert!(r.headers().get(http::header::WWW_AUTHENTICATE).is_none());
        let e = ClientAuthError::MultipleMethods.to_oauth_error(true);
        assert_eq!((e.code(), e.status().as_u16()), (ErrorCode::InvalidRequest, 400));
        // every authentication failure looks the same
        let a = ClientAuthError::WrongSecret.to_oauth_error(true);
        for e in [E::UnknownClient, E::SecretExpired, E::MissingSecret, E::WrongMethod] {
            assert_eq!(e.to_oauth_error(true), a);
        }
    }

    #[test]
    fn verification() {
        let basic_client = client("client_secret_basic", Some("good"), None);
        let post_client = client("client_secret_post", Some("good"), Some(NOW + Duration::days(1)));
        let public = client("none", None, None);
        let creds = |h: Option<String>, id: Option<&str>, s: Option<&str>| {
            ClientCredentials::parse(h.as_deref(), id, s).unwrap()
        };
        use ClientAuthError as E;
        let table: Vec<(&Client, ClientCredentials, OffsetDateTime, Result<(), E>)> = vec![
            (
                &basic_client,
                creds(Some(basic("client_x", "good")), None, None),
                NOW,
                Ok(()),
            ),
            (
                &basic_client,
                creds(Some(basic("client_x", "bad")), None, None),
                NOW,
                Err(E::WrongSecret),
            ),
            (
                &basic_client,
                creds(Some(basic("client_x", "goo")), None, None),
                NOW,
                Err(E::WrongSecret),
            ),
            (
                &basic_client,
                creds(None, Some("client_x"), Some("good")),
                NOW,
                Err(E::WrongMethod),
            ),
            (
                &basic_client,
                creds(None, Some("client_x"), None),
                NOW,
                Err(E::MissingSecret),
            ),
            (&post_client, creds(None, Some("client_x"), Some("good")), NOW, Ok(())),
            (
                &post_client,
                creds(None, Some("client_x"), Some("bad")),
                NOW,
                Err(E::WrongSecret),
            ),
            (
                &post_client,
                creds(Some(basic("client_x", "good")), None, None),
                NOW,
                Err(E::WrongMethod),
            ),
            (
                &post_client,
                creds(None, Some("client_x"), Some("good")),
                NOW + Duration::days(1),
                Err(E::SecretExpired),
            ),
            (&public, creds(None, Some("client_x"), None), NOW, Ok(())),
            (&public, creds(Some(basic("client_x", "")), None, None), NOW, Ok(())),
            (
                &public,
                creds(None, Some("client_x"), Some("s")),
                NOW,
                Err(E::SecretForPublicClient),
            ),
            (
                &public,
                creds(Some(basic("client_x", "s")), None, None),
                NOW,
                Err(E::SecretForPublicClient),
            ),
        ];
        for (i, (c, cr, now, expected)) in table.into_iter().enumerate() {
            assert_eq!(cr.verify(c, now), expected, "row {i}");
        }
        let debug = format!("{:?}", creds(Some(basic("client_x", "good")), None, None));
        assert!(!debug.contains("good"), "{debug}");
    }

    proptest! {
        #[test]
        fn parser_never_panics(h in proptest::option::of(".{0,200}"), id in proptest::option::of(".{0,50}"), s in proptest::option::of(".{0,50}")) {
            let _ = ClientCredentials::parse(h.as_deref(), id.as_deref(), s.as_deref());
        }

        #[test]
        fn basic_round_trips(id in ".{1,40}", secret in ".{0,40}") {
            let c = ClientCredentials::parse(Some(&basic(&id, &secret)), None, None).unwrap();
            prop_assert_eq!(c.client_id(), id.as_str());
            prop_assert_eq!(c.secret().unwrap().expose_secret(), secret.as_str());
        }

        #[test]
        fn base64_noise_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = ClientCredentials::parse(Some(&format!("Basic {}", STANDARD.encode(&bytes))), None, None);
        }
    }
}
