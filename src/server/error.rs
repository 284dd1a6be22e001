//! The driver's structured error: why an endpoint call failed, for the
//! host, and the one mapping to the [`OAuthError`] a client sees.

use std::fmt;

use crate::error::{ErrorCode, OAuthError};
use crate::store::StoreError;

/// Why a call of an [`super::AuthorizationServer`] endpoint failed.
///
/// Hosts log it and match on [`EndpointError::kind`] and
/// [`EndpointError::reason`]; a storage failure keeps its
/// [`StoreError`] as [`std::error::Error::source`]. What the client is
/// sent is [`EndpointError::to_oauth`] (also `From<EndpointError> for
/// OAuthError`), the one mapping: a protocol refusal as the RFC error it
/// is, and every failure of the host as a bare `server_error` that names
/// no cause (RFC 6749 section 5.2,
/// <https://www.rfc-editor.org/rfc/rfc6749#section-5.2>).
#[derive(Debug)]
pub struct EndpointError {
    repr: Repr,
}

#[derive(Debug)]
enum Repr {
    /// A protocol rule refused the request.
    Refused(OAuthError),
    /// Storage failed (already logged once, when it became this error).
    Store(StoreError),
}

/// What kind of failure an [`EndpointError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A protocol rule refused the request: the client sees its code and
    /// description, the host also its [`EndpointError::reason`].
    Rejected,
    /// Client authentication failed (`invalid_client`, RFC 6749 section
    /// 5.2, <https://www.rfc-editor.org/rfc/rfc6749#section-5.2>).
    ClientAuthentication,
    /// The store failed: [`EndpointError::store_error`] and
    /// [`std::error::Error::source`] hold the [`StoreError`]; the client
    /// sees `server_error`.
    Store,
    /// The server could not complete the request for a reason of its own
    /// (no usable signing key, say): the client sees `server_error`.
    Internal,
    /// A service the request depends on (an upstream identity provider, a
    /// store at capacity) is unavailable for now: the client sees
    /// `temporarily_unavailable`.
    Unavailable,
}

impl EndpointError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match &self.repr {
            Repr::Store(_) => ErrorKind::Store,
            Repr::Refused(e) => match e.code() {
                ErrorCode::InvalidClient => ErrorKind::ClientAuthentication,
                ErrorCode::ServerError => ErrorKind::Internal,
                ErrorCode::TemporarilyUnavailable => ErrorKind::Unavailable,
                _ => ErrorKind::Rejected,
            },
        }
    }

    /// The machine-readable reason for logs (`pkce_mismatch`,
    /// `unknown_client`, `store_failure`, ...; see
    /// [`OAuthError::reason`]). Never sent to the client.
    pub fn reason(&self) -> Option<&'static str> {
        match &self.repr {
            Repr::Store(_) => Some("store_failure"),
            Repr::Refused(e) => e.reason(),
        }
    }

    /// The OAuth error code the client is sent.
    pub fn code(&self) -> ErrorCode {
        match &self.repr {
            Repr::Store(_) => ErrorCode::ServerError,
            Repr::Refused(e) => e.code(),
        }
    }

    /// The HTTP status of the response the client is sent.
    pub fn status(&self) -> http::StatusCode {
        match &self.repr {
            Repr::Store(_) => ErrorCode::ServerError.status(),
            Repr::Refused(e) => e.status(),
        }
    }

    /// The storage failure, for [`ErrorKind::Store`].
    pub fn store_error(&self) -> Option<&StoreError> {
        match &self.repr {
            Repr::Store(e) => Some(e),
            Repr::Refused(_) => None,
        }
    }

    /// The error sent to the client: the one mapping from the driver's
    /// errors to the wire. Sanitized: a storage failure becomes
    /// [`OAuthError::server_error`], which carries none of its message.
    pub fn to_oauth(&self) -> OAuthError {
        match &self.repr {
            Repr::Store(_) => OAuthError::server_error(),
            Repr::Refused(e) => e.clone(),
        }
    }

    /// The error sent to the client ([`EndpointError::to_oauth`]), by
    /// value.
    pub fn into_oauth(self) -> OAuthError {
        match self.repr {
            Repr::Store(_) => OAuthError::server_error(),
            Repr::Refused(e) => e,
        }
    }

    /// The response rendered for the client
    /// ([`OAuthError::to_response`] of [`EndpointError::to_oauth`]).
    pub fn to_response(&self) -> http::Response<Vec<u8>> {
        match &self.repr {
            Repr::Store(_) => OAuthError::server_error().to_response(),
            Repr::Refused(e) => e.to_response(),
        }
    }

    /// The description the client is sent, if any.
    pub fn description(&self) -> Option<&str> {
        match &self.repr {
            Repr::Store(_) => Some(crate::error::SERVER_ERROR_DESCRIPTION),
            Repr::Refused(e) => e.description(),
        }
    }

    /// Marks a refusal as already recorded as a specific audit event.
    #[must_use]
    pub(crate) fn audited(self) -> Self {
        match self.repr {
            Repr::Refused(e) => Self {
                repr: Repr::Refused(e.audited()),
            },
            repr @ Repr::Store(_) => Self { repr },
        }
    }

    /// Whether the refusal is already recorded as a specific audit event.
    pub(crate) fn is_audited(&self) -> bool {
        match &self.repr {
            Repr::Refused(e) => e.is_audited(),
            Repr::Store(_) => false,
        }
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Store(_) => f.write_str("storage failure"),
            Repr::Refused(e) => match e.reason() {
                Some(reason) => write!(f, "{e} ({reason})"),
                None => write!(f, "{e}"),
            },
        }
    }
}

impl std::error::Error for EndpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.repr {
            Repr::Store(e) => Some(e),
            Repr::Refused(_) => None,
        }
    }
}

impl From<StoreError> for EndpointError {
    /// Logs the failure ([`StoreError::log`], the one place it is logged)
    /// and keeps it as the source.
    fn from(e: StoreError) -> Self {
        e.log();
        Self { repr: Repr::Store(e) }
    }
}

impl From<OAuthError> for EndpointError {
    fn from(e: OAuthError) -> Self {
        Self { repr: Repr::Refused(e) }
    }
}

impl From<ErrorCode> for EndpointError {
    fn from(code: ErrorCode) -> Self {
        OAuthError::new(code).into()
    }
}

impl From<crate::token::TokenError> for EndpointError {
    fn from(e: crate::token::TokenError) -> Self {
        OAuthError::from(e).into()
    }
}

impl From<crate::authorize::ParameterError> for EndpointError {
    fn from(e: crate::authorize::ParameterError) -> Self {
        OAuthError::from(e).into()
    }
}

impl From<EndpointError> for OAuthError {
    /// [`EndpointError::into_oauth`].
    fn from(e: EndpointError) -> Self {
        e.into_oauth()
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_store_failure_keeps_its_cause_for_the_host_only() {
        let e = EndpointError::from(StoreError::new("connection to db-7 refused"));
        assert_eq!(e.kind(), ErrorKind::Store);
        assert_eq!(e.reason(), Some("store_failure"));
        assert_eq!(e.code(), ErrorCode::ServerError);
        let source = e.source().unwrap();
        assert!(source.to_string().contains("connection to db-7 refused"));
        assert_eq!(e.store_error().unwrap().message(), "connection to db-7 refused");
        let client = OAuthError::from(e);
        assert_eq!(client, OAuthError::server_error());
        let body = String::from_utf8(client.to_response().into_body()).unwrap();
        assert!(!body.contains("db-7"), "{body}");
    }

    #[test]
    fn kinds_follow_the_refusal() {
        let table = [
            (OAuthError::new(ErrorCode::InvalidGrant), ErrorKind::Rejected),
            (
                OAuthError::new(ErrorCode::InvalidClient),
                ErrorKind::ClientAuthentication,
            ),
            (OAuthError::server_error(), ErrorKind::Internal),
            (
                OAuthError::new(ErrorCode::TemporarilyUnavailable),
                ErrorKind::Unavailable,
            ),
        ];
        for (oauth, kind) in table {
            let e = EndpointError::from(oauth.clone().with_reason("why"));
            assert_eq!(e.kind(), kind, "{oauth}");
            assert_eq!(e.reason(), Some("why"));
            assert!(e.source().is_none());
            assert_eq!(e.to_oauth(), oauth);
        }
    }
}
