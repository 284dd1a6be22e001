//! [`CimdError`]: every way a `client_id` URL can fail to yield a client.

use super::fetch::FetchError;
use super::policy::TrustRule;
use crate::client::ClientMetadataError;
use crate::client_id_url::ClientIdUrlError;
use crate::error::ErrorCode;

/// Why a Client ID Metadata Document could not be used.
///
/// Each variant has a stable machine-readable [`CimdError::reason`] (the
/// `reason` of the `oauth_client.cimd_fetch_failed` audit event and of a
/// failed preview) and, where it applies, the [`CimdError::http_status`]
/// received. Messages carry no secrets.
///
/// [`CimdError::code`] is `invalid_client` for every variant: the `client_id`
/// does not identify a usable client. At the authorization endpoint the
/// error is shown to the user and never redirected (the redirect URI is not
/// trusted); at the token endpoint it is the generic `invalid_client`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CimdError {
    /// The project does not accept metadata-document clients
    /// (`cimd_disabled`).
    #[error("client id metadata documents are not enabled for this project")]
    Disabled,
    /// The URL breaks the project's URL policy (`invalid_url`).
    #[error("the client_id URL is not acceptable: {0}")]
    InvalidUrl(ClientIdUrlError),
    /// The host is refused by the project's trust policy (`policy_denied`).
    #[error("the client_id host {host} is not trusted by this project ({})", rule.as_str())]
    PolicyDenied {
        /// The host.
        host: String,
        /// The refusing rule.
        rule: TrustRule,
    },
    /// The URL names or resolves to a special-use address
    /// (`blocked_address`).
    #[error("the client_id URL points to a special-use address")]
    BlockedAddress {
        /// The host, or the refused address.
        target: String,
    },
    /// No [`super::MetadataFetcher`] is configured (`fetcher_unavailable`).
    #[error("this server cannot fetch client id metadata documents (no fetcher configured)")]
    FetcherUnavailable,
    /// Too many fetches in flight, or too many for this host recently
    /// (`rate_limited`); see [`super::FetchLimits`].
    #[error("too many client id metadata document fetches; try again later")]
    RateLimited,
    /// The fetch timed out (`timeout`).
    #[error("fetching the client id metadata document timed out")]
    Timeout,
    /// The server redirected; redirects are never followed (`redirect`).
    #[error("the client id metadata document URL redirected (HTTP {status}); redirects are not followed")]
    Redirect {
        /// The 3xx status.
        status: u16,
    },
    /// The fetch failed otherwise: DNS, TCP, TLS (`fetch_failed`).
    #[error("fetching the client id metadata document failed: {detail}")]
    FetchFailed {
        /// What failed.
        detail: String,
    },
    /// The status was not 200 (`http_status`).
    #[error("the client id metadata document URL answered HTTP {status}, not 200")]
    HttpStatus {
        /// The status received.
        status: u16,
    },
    /// The content type is missing or not JSON (`content_type`).
    #[error("the client id metadata document has content type {}, not application/json", content_type.as_deref().unwrap_or("(none)"))]
    ContentType {
        /// The `Content-Type` received (truncated).
        content_type: Option<String>,
    },
    /// The body exceeds the cap (`too_large`).
    #[error("the client id metadata document exceeds {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The body is not UTF-8 JSON holding an object (`invalid_json`).
    #[error("the client id metadata document is not a JSON object: {detail}")]
    InvalidJson {
        /// What is wrong.
        detail: String,
    },
    /// The document's `client_id` is missing or differs from the URL
    /// (`client_id_mismatch`).
    #[error("the document's client_id does not equal the URL it was fetched from")]
    ClientIdMismatch {
        /// The `client_id` found (truncated), if it was a string.
        found: Option<String>,
    },
    /// `client_secret` or `client_secret_expires_at` is present
    /// (`forbidden_field`).
    #[error("the client id metadata document must not contain {field}")]
    ForbiddenField {
        /// The field.
        field: &'static str,
    },
    /// The metadata breaks a client metadata rule (`invalid_metadata`).
    #[error("the client id metadata document is invalid: {0}")]
    InvalidMetadata(ClientMetadataError),
}

impl CimdError {
    /// The stable machine-readable reason.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Disabled => "cimd_disabled",
            Self::InvalidUrl(_) => "invalid_url",
            Self::PolicyDenied { .. } => "policy_denied",
            Self::BlockedAddress { .. } => "blocked_address",
            Self::FetcherUnavailable => "fetcher_unavailable",
            Self::RateLimited => "rate_limited",
            Self::Timeout => "timeout",
            Self::Redirect { .. } => "redirect",
            Self::FetchFailed { .. } => "fetch_failed",
            Self::HttpStatus { .. } => "http_status",
            Self::ContentType { .. } => "content_type",
            Self::TooLarge { .. } => "too_large",
            Self::InvalidJson { .. } => "invalid_json",
            Self::ClientIdMismatch { .. } => "client_id_mismatch",
            Self::ForbiddenField { .. } => "forbidden_field",
            Self::InvalidMetadata(_) => "invalid_metadata",
        }
    }

    /// A description safe to show to whoever asked: the [`Display`] text,
    /// except for network-level failures, whose details (resolver and
    /// connection errors, the blocked address) are kept for the audit log
    /// and not echoed, so the preview endpoint is no network probe.
    ///
    /// [`Display`]: std::fmt::Display
    pub fn public_description(&self) -> String {
        match self {
            Self::FetchFailed { .. } => "the client id metadata document could not be fetched".to_owned(),
            Self::BlockedAddress { .. } => {
                "the client id metadata document's host resolves to an address that is not allowed".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// The HTTP status received, for `http_status` and `redirect`.
    pub const fn http_status(&self) -> Option<u16> {
        match self {
            Self::HttpStatus { status } | Self::Redirect { status } => Some(*status),
            _ => None,
        }
    }

    /// The OAuth error code: `invalid_client` (see the type's docs).
    pub const fn code(&self) -> ErrorCode {
        ErrorCode::InvalidClient
    }

    /// Whether a cause of this kind may be temporary on the publisher's
    /// side (timeouts, network, 5xx), for a host deciding whether to
    /// suggest retrying.
    pub const fn is_transient(&self) -> bool {
        match self {
            Self::Timeout | Self::FetchFailed { .. } | Self::RateLimited => true,
            Self::HttpStatus { status } => *status >= 500,
            _ => false,
        }
    }
}

impl From<FetchError> for CimdError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Timeout => Self::Timeout,
            FetchError::Redirect { status } => Self::Redirect { status },
            FetchError::TooLarge { limit } => Self::TooLarge { limit },
            FetchError::BlockedAddress { address } => Self::BlockedAddress {
                target: address.map(|a| a.to_string()).unwrap_or_default(),
            },
            other @ (FetchError::Connect { .. } | FetchError::Tls { .. } | FetchError::Other { .. }) => {
                Self::FetchFailed {
                    detail: truncate(&other.to_string(), 200),
                }
            }
        }
    }
}

impl From<ClientMetadataError> for CimdError {
    fn from(e: ClientMetadataError) -> Self {
        match e {
            ClientMetadataError::ForbiddenField { field } => Self::ForbiddenField { field },
            other => Self::InvalidMetadata(other),
        }
    }
}

impl From<ClientIdUrlError> for CimdError {
    fn from(e: ClientIdUrlError) -> Self {
        Self::InvalidUrl(e)
    }
}

/// At most `max` bytes of `s`, cut on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    s.get(..end).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_stable_and_distinct_where_documented() {
        let table: Vec<(CimdError, &str, Option<u16>)> = vec![
            (CimdError::Disabled, "cimd_disabled", None),
            (CimdError::InvalidUrl(ClientIdUrlError::Query), "invalid_url", None),
            (
                CimdError::PolicyDenied {
                    host: "h".into(),
                    rule: TrustRule::DeniedHost,
                },
                "policy_denied",
                None,
            ),
            (
                CimdError::BlockedAddress {
                    target: "10.0.0.1".into(),
                },
                "blocked_address",
                None,
            ),
            (CimdError::FetcherUnavailable, "fetcher_unavailable", None),
            (CimdError::RateLimited, "rate_limited", None),
            (CimdError::Timeout, "timeout", None),
            (CimdError::Redirect { status: 302 }, "redirect", Some(302)),
            (CimdError::FetchFailed { detail: "x".into() }, "fetch_failed", None),
            (CimdError::HttpStatus { status: 404 }, "http_status", Some(404)),
            (CimdError::ContentType { content_type: None }, "content_type", None),
            (CimdError::TooLarge { limit: 5120 }, "too_large", None),
            (CimdError::InvalidJson { detail: "x".into() }, "invalid_json", None),
            (CimdError::ClientIdMismatch { found: None }, "client_id_mismatch", None),
            (
                CimdError::ForbiddenField { field: "client_secret" },
                "forbidden_field",
                None,
            ),
            (
                CimdError::InvalidMetadata(ClientMetadataError::MissingClientName),
                "invalid_metadata",
                None,
            ),
        ];
        for (e, reason, status) in table {
            assert_eq!(e.reason(), reason);
            assert_eq!(e.http_status(), status);
            assert_eq!(e.code(), ErrorCode::InvalidClient);
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn conversions() {
        assert_eq!(
            CimdError::from(ClientMetadataError::ForbiddenField { field: "client_secret" }),
            CimdError::ForbiddenField { field: "client_secret" }
        );
        assert_eq!(
            CimdError::from(FetchError::BlockedAddress {
                address: Some("127.0.0.1".parse().unwrap())
            })
            .reason(),
            "blocked_address"
        );
        assert_eq!(
            CimdError::from(FetchError::Tls { detail: "x".into() }).reason(),
            "fetch_failed"
        );
        assert!(CimdError::Timeout.is_transient());
        assert!(CimdError::HttpStatus { status: 503 }.is_transient());
        assert!(!CimdError::HttpStatus { status: 404 }.is_transient());
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}

#[cfg(test)]
mod public_description_tests {
    use super::*;

    #[test]
    fn network_details_are_not_echoed() {
        let e = CimdError::from(FetchError::Connect {
            detail: "tcp connect error: 10.1.2.3:22 refused".into(),
        });
        assert_eq!(e.reason(), "fetch_failed");
        assert!(!e.public_description().contains("10.1.2.3"));
        assert!(e.to_string().contains("10.1.2.3"), "the audit detail keeps it");
        let e = CimdError::BlockedAddress {
            target: "10.0.0.7".into(),
        };
        assert!(!e.public_description().contains("10.0.0.7"));
        let e = CimdError::HttpStatus { status: 404 };
        assert_eq!(e.public_description(), e.to_string());
    }
}
