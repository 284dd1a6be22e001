//! Operational metrics through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`); without the feature every function here is
//! empty and compiles away.
//!
//! The crate records; the host chooses the exporter (Prometheus, StatsD,
//! OpenTelemetry...) by installing a `metrics` recorder, as the example
//! server does for Prometheus text on `/metrics`. Names and labels:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `authio_requests_total` | counter | `endpoint`, `outcome` (`ok`, `redirect`, `pending`, or the OAuth error code) |
//! | `authio_request_duration_seconds` | histogram | `endpoint` |
//! | `authio_audit_events_total` | counter | `event` (the stable audit name) |
//! | `authio_cimd_fetches_total` | counter | `outcome` (`resolved`, `cached`, or the failure reason) |
//! | `authio_iat_uses_total` | counter | |
//! | `authio_registrations_rejected_total` | counter | `reason` |
//! | `authio_tokens_issued_total` | counter | `grant_type` |
//! | `authio_tokens_revoked_total` | counter | `reason` |
//! | `authio_reuse_detections_total` | counter | `kind` (`authorization_code`, `refresh_token`) |
//! | `authio_client_assertions_rejected_total` | counter | `reason` (`bad_signature`, `replayed_jti`, `wrong_audience`, ...) |
//! | `authio_signing_keys_total` | counter | `change` (`created`, `activated`, `retired`, `deleted`) |
//! | `authio_upstream_logins_total` | counter | `outcome` (`ok`, or the `upstream.login_failed` reason) |
//! | `authio_store_errors_total` | counter | |
//! | `authio_audit_rejections_dropped_total` | counter | `sink` (`sql`, `memory`, `jsonl`): rejections dropped uncounted because too many counters were held |
//!
//! Label values come from fixed sets (endpoint names, OAuth error codes,
//! audit names and reasons); anything else is reported as `other`, so
//! attacker input cannot grow the number of series. No label ever carries
//! a client id, subject, token or secret.

use std::time::Duration;

use crate::audit::AuditEvent;

/// Records one request of `endpoint` with its `outcome` and duration.
pub(crate) fn request(endpoint: &'static str, outcome: &'static str, elapsed: Duration) {
    #[cfg(not(feature = "metrics"))]
    let _ = (endpoint, outcome, elapsed);
    #[cfg(feature = "metrics")]
    {
        // Both values are static strings: the labels borrow them (no
        // per-request copy).
        let outcome = if is_bounded(outcome) { outcome } else { "other" };
        ::metrics::counter!("authio_requests_total", "endpoint" => endpoint, "outcome" => outcome).increment(1);
        ::metrics::histogram!("authio_request_duration_seconds", "endpoint" => endpoint).record(elapsed.as_secs_f64());
    }
}

/// Records an audit event (and the specific counter it feeds).
pub(crate) fn audit(event: &AuditEvent) {
    #[cfg(not(feature = "metrics"))]
    let _ = event;
    #[cfg(feature = "metrics")]
    {
        use crate::audit::AuditKind;
        ::metrics::counter!("authio_audit_events_total", "event" => event.name()).increment(1);
        match &event.kind {
            AuditKind::CimdResolved { from_cache, .. } => {
                let outcome = if *from_cache { "cached" } else { "resolved" };
                ::metrics::counter!("authio_cimd_fetches_total", "outcome" => outcome).increment(1);
            }
            AuditKind::CimdFetchFailed { reason, .. } => {
                ::metrics::counter!("authio_cimd_fetches_total", "outcome" => bounded(reason)).increment(1);
            }
            AuditKind::IatUsed { .. } => ::metrics::counter!("authio_iat_uses_total").increment(1),
            AuditKind::ClientRegistrationRejected { reason, .. } => {
                ::metrics::counter!("authio_registrations_rejected_total", "reason" => bounded(reason)).increment(1);
            }
            AuditKind::TokenIssued { grant_type, .. } => {
                ::metrics::counter!("authio_tokens_issued_total", "grant_type" => bounded(grant_type)).increment(1);
            }
            AuditKind::TokenRevoked { reason, .. } => {
                ::metrics::counter!("authio_tokens_revoked_total", "reason" => bounded(reason)).increment(1);
            }
            AuditKind::AuthorizationCodeReuseDetected { .. } => {
                ::metrics::counter!("authio_reuse_detections_total", "kind" => "authorization_code").increment(1);
            }
            AuditKind::RefreshTokenReuseDetected { .. } => {
                ::metrics::counter!("authio_reuse_detections_total", "kind" => "refresh_token").increment(1);
            }
            AuditKind::ClientAssertionRejected { reason, .. } => {
                ::metrics::counter!("authio_client_assertions_rejected_total", "reason" => bounded(reason))
                    .increment(1);
            }
            AuditKind::SigningKeyCreated { .. } => {
                ::metrics::counter!("authio_signing_keys_total", "change" => "created").increment(1);
            }
            AuditKind::SigningKeyActivated { .. } => {
                ::metrics::counter!("authio_signing_keys_total", "change" => "activated").increment(1);
            }
            AuditKind::SigningKeyRetired { .. } => {
                ::metrics::counter!("authio_signing_keys_total", "change" => "retired").increment(1);
            }
            AuditKind::SigningKeysDeleted { count } => {
                ::metrics::counter!("authio_signing_keys_total", "change" => "deleted").increment(*count as u64);
            }
            AuditKind::UpstreamLoginSucceeded { .. } => {
                ::metrics::counter!("authio_upstream_logins_total", "outcome" => "ok").increment(1);
            }
            AuditKind::UpstreamLoginFailed { reason, .. } => {
                ::metrics::counter!("authio_upstream_logins_total", "outcome" => bounded(reason)).increment(1);
            }
            _ => {}
        }
    }
}

/// Records a rejection dropped uncounted (too many counters held) by
/// `sink` (`sql`, `memory`, `jsonl`).
pub(crate) fn rejection_dropped(sink: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("authio_audit_rejections_dropped_total", "sink" => sink).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = sink;
}

/// Records a storage failure.
pub(crate) fn store_error() {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("authio_store_errors_total").increment(1);
}

/// A label value from a fixed vocabulary: short lowercase words with `_`,
/// `.`, `:` or `-`; anything else becomes `other`.
#[cfg(feature = "metrics")]
fn bounded(value: &str) -> String {
    if is_bounded(value) {
        value.to_owned()
    } else {
        "other".to_owned()
    }
}

/// Whether `value` is in the label vocabulary of [`bounded`].
#[cfg(feature = "metrics")]
fn is_bounded(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 48
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_bounded() {
        assert_eq!(bounded("invalid_grant"), "invalid_grant");
        assert_eq!(bounded("authorization_code"), "authorization_code");
        assert_eq!(bounded("Bearer abc"), "other");
        assert_eq!(bounded("https://evil.example/x"), "other");
        assert_eq!(bounded(&"a".repeat(49)), "other");
        assert_eq!(bounded(""), "other");
    }
}
