//! Audit events: what happened, to which project, when; never a secret.
//!
//! Every event has a stable dotted name ([`AuditEvent::name`]) that hosts
//! can alert on, e.g. `oauth_client.cimd_fetch_failed`. Events carry ids
//! (client ids, IAT ids, grant ids), never raw tokens, secrets or codes.
//!
//! Events recorded inside a [`RequestMeta::scope`] carry the host's request
//! id, client address and user agent. Besides the stores' audit logs,
//! [`TracingAuditSink`] hands events to `tracing`, [`JsonLinesAuditSink`]
//! writes them as JSON lines to any writer, and [`TeeAuditSink`] sends
//! each event to two sinks.

mod meta;
mod sinks;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::project::{ProjectId, SettingChange};

pub use self::meta::{MAX_META_LEN, RequestMeta, RequestScope};
pub use self::sinks::{JsonLinesAuditSink, TeeAuditSink, TracingAuditSink};

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// The project.
    pub project_id: ProjectId,
    /// When it happened ([RFC 3339] in JSON).
    ///
    /// [RFC 3339]: https://www.rfc-editor.org/rfc/rfc3339
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened, with its structured fields.
    #[serde(flatten)]
    pub kind: AuditKind,
    /// The request it happened in, as far as the host told
    /// ([`RequestMeta::scope`]); members absent from the JSON when unknown.
    #[serde(flatten)]
    pub request: RequestMeta,
}

impl AuditEvent {
    /// A new event, with no request metadata.
    pub const fn new(project_id: ProjectId, at: OffsetDateTime, kind: AuditKind) -> Self {
        Self {
            project_id,
            at,
            kind,
            request: RequestMeta::new(),
        }
    }

    /// The event with `request` as its request metadata.
    #[must_use]
    pub fn with_request(mut self, request: RequestMeta) -> Self {
        self.request = request;
        self
    }

    /// The stable dotted name, e.g. `oauth_client.cimd_fetch_failed`.
    pub const fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// The JSON form: `{"event": name, "project_id", "at", ...fields}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// What happened. Serialized with the dotted name in `event`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event")]
#[non_exhaustive]
pub enum AuditKind {
    /// MCP was switched on; the cascade's changes.
    #[serde(rename = "project.mcp_enabled")]
    ProjectMcpEnabled {
        /// Changed fields.
        changes: Vec<SettingChange>,
    },
    /// MCP was switched off.
    #[serde(rename = "project.mcp_disabled")]
    ProjectMcpDisabled {
        /// Changed fields.
        changes: Vec<SettingChange>,
    },
    /// Project settings were replaced through an admin action.
    #[serde(rename = "project.settings_updated")]
    ProjectSettingsUpdated {},
    /// A Client ID Metadata Document could not be used.
    #[serde(rename = "oauth_client.cimd_fetch_failed")]
    CimdFetchFailed {
        /// The CIMD URL.
        client_id: String,
        /// Machine-readable reason (`http_status`, `content_type`,
        /// `too_large`, `timeout`, `redirect`, `invalid_json`,
        /// `client_id_mismatch`, `forbidden_field`, `blocked_address`,
        /// `policy_denied`, ...).
        reason: String,
        /// The HTTP status, for `http_status`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http_status: Option<u16>,
        /// A human-readable detail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A Client ID Metadata Document was fetched and validated.
    #[serde(rename = "oauth_client.cimd_resolved")]
    CimdResolved {
        /// The CIMD URL.
        client_id: String,
        /// Whether it came from the cache.
        from_cache: bool,
    },
    /// A client registered through DCR.
    #[serde(rename = "oauth_client.registered")]
    ClientRegistered {
        /// The new client id.
        client_id: String,
        /// The initial access token used, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iat_id: Option<String>,
        /// `token_endpoint_auth_method`.
        token_endpoint_auth_method: String,
    },
    /// A registration without an initial access token was admitted by the
    /// project's tokenless-registration policy.
    #[serde(rename = "oauth_client.tokenless_admitted")]
    ClientTokenlessAdmitted {
        /// The new client id.
        client_id: String,
        /// The rate-limit key of the source (an address, or an IPv6 /64).
        source: String,
        /// The trusted pattern each redirect URI matched, in order.
        patterns: Vec<crate::tokenless::TrustedPattern>,
    },
    /// A registration request was refused.
    #[serde(rename = "oauth_client.registration_rejected")]
    ClientRegistrationRejected {
        /// The OAuth error code sent.
        error: String,
        /// Why.
        reason: String,
        /// The initial access token presented, if it was valid.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iat_id: Option<String>,
    },
    /// An initial access token was issued.
    #[serde(rename = "initial_access_token.issued")]
    IatIssued {
        /// Its id.
        iat_id: String,
        /// Its label.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
        /// Its use limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_uses: Option<u32>,
        /// Its expiry.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "time::serde::rfc3339::option"
        )]
        expires_at: Option<OffsetDateTime>,
    },
    /// An initial access token was used for a registration.
    #[serde(rename = "initial_access_token.used")]
    IatUsed {
        /// Its id.
        iat_id: String,
        /// Uses so far, including this one.
        uses: u32,
    },
    /// An initial access token was revoked.
    #[serde(rename = "initial_access_token.revoked")]
    IatRevoked {
        /// Its id.
        iat_id: String,
    },
    /// The user approved an authorization request.
    #[serde(rename = "authorization.granted")]
    AuthorizationGranted {
        /// The client.
        client_id: String,
        /// The user.
        subject: String,
        /// Granted scope.
        scope: String,
        /// Granted resources.
        resources: Vec<String>,
    },
    /// The user (or policy) denied an authorization request.
    #[serde(rename = "authorization.denied")]
    AuthorizationDenied {
        /// The client.
        client_id: String,
        /// Why.
        reason: String,
    },
    /// A redeemed authorization code was presented again; the grant's
    /// tokens were revoked.
    #[serde(rename = "authorization_code.reuse_detected")]
    AuthorizationCodeReuseDetected {
        /// The client.
        client_id: String,
        /// The grant.
        grant_id: String,
    },
    /// A rotated refresh token was presented again; the grant was revoked.
    #[serde(rename = "refresh_token.reuse_detected")]
    RefreshTokenReuseDetected {
        /// The client.
        client_id: String,
        /// The grant.
        grant_id: String,
    },
    /// A rotated refresh token was presented again within the project's
    /// refresh reuse grace: the same new token pair was returned and
    /// nothing was revoked (concurrent refreshes of one client).
    #[serde(rename = "refresh_token.concurrent_reuse")]
    RefreshTokenConcurrentReuse {
        /// The client.
        client_id: String,
        /// The grant.
        grant_id: String,
        /// Seconds since the rotation.
        after_seconds: i64,
    },
    /// Tokens were issued at the token endpoint.
    #[serde(rename = "token.issued")]
    TokenIssued {
        /// The client.
        client_id: String,
        /// The user.
        subject: String,
        /// The grant.
        grant_id: String,
        /// `authorization_code` or `refresh_token`.
        grant_type: String,
        /// Granted scope.
        scope: String,
        /// Audiences.
        audience: Vec<String>,
    },
    /// A token (or its whole grant) was revoked.
    #[serde(rename = "token.revoked")]
    TokenRevoked {
        /// The client.
        client_id: String,
        /// The grant.
        grant_id: String,
        /// Why (`revocation_request`, `code_reuse`, `refresh_reuse`, ...).
        reason: String,
    },
    /// A signing key was created (published in the JWKS).
    #[serde(rename = "signing_key.created")]
    SigningKeyCreated {
        /// The key id.
        kid: String,
        /// `ES256`, `EdDSA` or `RS256`.
        algorithm: String,
    },
    /// A signing key became active; the previous one (if any) retired.
    #[serde(rename = "signing_key.activated")]
    SigningKeyActivated {
        /// The key id.
        kid: String,
    },
    /// A signing key retired without a successor (its algorithm is no
    /// longer used); it stays published until its tokens expired.
    #[serde(rename = "signing_key.retired")]
    SigningKeyRetired {
        /// The key id.
        kid: String,
    },
    /// Retired signing keys left the JWKS.
    #[serde(rename = "signing_key.deleted")]
    SigningKeysDeleted {
        /// How many.
        count: usize,
    },
    /// A signing key was revoked in an emergency (believed compromised):
    /// removed from the JWKS and from signing at once, its active role
    /// taken over by a new key.
    #[serde(rename = "signing_key.revoked")]
    SigningKeyRevoked {
        /// The revoked key.
        kid: String,
        /// The key activated in its place, when it was active.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaced_by: Option<String>,
    },
    /// A client assertion (`private_key_jwt`, [RFC 7523]) was refused.
    ///
    /// [RFC 7523]: https://www.rfc-editor.org/rfc/rfc7523
    #[serde(rename = "oauth_client.assertion_rejected")]
    ClientAssertionRejected {
        /// The client the assertion claimed to be.
        client_id: String,
        /// Machine-readable reason (`bad_signature`, `replayed_jti`,
        /// `expired`, `wrong_audience`, ...).
        reason: String,
        /// Always `false`: the assertion was refused, so `client_id` is
        /// only what the request claimed (present for readers that check
        /// the same field on every rejection).
        #[serde(default)]
        client_authenticated: bool,
    },
    /// A user signed in at an upstream identity provider.
    #[serde(rename = "upstream.login_succeeded")]
    UpstreamLoginSucceeded {
        /// The provider's name in the project.
        provider: String,
        /// The MCP client the login was for.
        client_id: String,
        /// The local subject.
        subject: String,
    },
    /// A request named a resource the project does not accept ([RFC 8707]
    /// `invalid_target`): not among its known resources, malformed, or
    /// missing where one is required.
    ///
    /// [RFC 8707]: https://www.rfc-editor.org/rfc/rfc8707
    #[serde(rename = "resource.refused")]
    ResourceRefused {
        /// The client.
        client_id: String,
        /// `authorize` or `token`.
        endpoint: String,
        /// The `error_description` sent.
        detail: String,
        /// Whether the client proved its identity (client authentication
        /// succeeded) before the refusal; when `false`, `client_id` is only
        /// what the request claimed.
        #[serde(default)]
        client_authenticated: bool,
    },
    /// A registered client was disabled by an administrator: it can no
    /// longer authorize, exchange or refresh, and its tokens introspect as
    /// inactive.
    #[serde(rename = "oauth_client.disabled")]
    ClientDisabled {
        /// The client.
        client_id: String,
    },
    /// A disabled client was enabled again.
    #[serde(rename = "oauth_client.enabled")]
    ClientEnabled {
        /// The client.
        client_id: String,
    },
    /// A registered client was deleted by an administrator, and its
    /// grants revoked.
    #[serde(rename = "oauth_client.deleted")]
    ClientDeleted {
        /// The client.
        client_id: String,
        /// Grants revoked with it.
        grants_revoked: usize,
    },
    /// A disabled client was refused.
    #[serde(rename = "oauth_client.disabled_refused")]
    DisabledClientRefused {
        /// The client.
        client_id: String,
        /// `authorize`, `token` or `revoke`.
        endpoint: String,
    },
    /// Every grant of a user was revoked (account deletion, "sign out
    /// everywhere"), and their remembered consents forgotten.
    #[serde(rename = "user.grants_revoked")]
    UserGrantsRevoked {
        /// The user.
        subject: String,
        /// How many grants.
        grants_revoked: usize,
    },
    /// A token request was refused (any refusal not recorded as a more
    /// specific event such as `resource.refused`,
    /// `oauth_client.assertion_rejected` or a reuse detection).
    #[serde(rename = "token.rejected")]
    TokenRejected {
        /// The client, when the request named a well-formed one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// The `grant_type`, when it is one this server knows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant_type: Option<String>,
        /// The OAuth error code sent.
        error: String,
        /// Machine-readable reason (`invalid_code`, `pkce_mismatch`,
        /// `redirect_uri_mismatch`, `wrong_secret`, `unknown_client`,
        /// `scope_widening`, ...).
        reason: String,
        /// Whether the client proved its identity (client authentication
        /// succeeded) before the refusal; when `false`, `client_id` is only
        /// what the request claimed.
        #[serde(default)]
        client_authenticated: bool,
    },
    /// An authorization request was refused: shown to the user as an error
    /// page (`redirected: false`, phase 1: client and redirect URI) or sent
    /// back to the client (`redirected: true`, phase 2). Refusals recorded
    /// as a more specific event (`resource.refused`,
    /// `oauth_client.cimd_fetch_failed`, `oauth_client.disabled_refused`)
    /// are not recorded again.
    #[serde(rename = "authorization.rejected")]
    AuthorizationRejected {
        /// The client, when the request named a well-formed one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// The OAuth error code.
        error: String,
        /// Machine-readable reason (`unknown_client`,
        /// `redirect_uri_mismatch`, `pkce_missing`, `invalid_scope`,
        /// `unsupported_response_type`, ...).
        reason: String,
        /// Whether the error went back to the client's redirect URI.
        redirected: bool,
        /// Always `false`: an authorization request does not authenticate
        /// the client, so `client_id` is only what the request named.
        #[serde(default)]
        client_authenticated: bool,
    },
    /// An upstream login failed.
    #[serde(rename = "upstream.login_failed")]
    UpstreamLoginFailed {
        /// The provider's name in the project.
        provider: String,
        /// The MCP client the login was for, when known.
        client_id: Option<String>,
        /// Machine-readable reason (`user_cancelled`, `upstream_error`,
        /// `state_mismatch`, `browser_mismatch`, `replayed_callback`,
        /// `expired`, `issuer_mismatch`, `token_exchange_failed`,
        /// `invalid_id_token:<claim>`, `refused_by_policy:<rule>`, ...).
        reason: String,
    },
}

/// Token-endpoint rejection reasons of a client that exists whose
/// credentials did not verify ([`AuditKind::guessed_client`]).
const CLIENT_GUESSING_REASONS: &[&str] = &["wrong_secret", "secret_expired", "invalid_assertion"];

/// Which retention an event belongs to (issue 18: security events cannot
/// be buried under high-volume rejections).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditClass {
    /// Reuse detections, revocations, admin changes: rare, kept apart.
    Security,
    /// Requests anyone can cause that were refused (CIMD fetch failures,
    /// rejected registrations): high volume, aggregated into counts per
    /// reason per minute, with only a few recent samples kept whole.
    Rejection,
    /// Everything else (grants, issued tokens, registrations, ...).
    Activity,
}

impl AuditKind {
    /// The retention class of the event.
    pub const fn class(&self) -> AuditClass {
        match self {
            Self::ProjectMcpEnabled { .. }
            | Self::ProjectMcpDisabled { .. }
            | Self::ProjectSettingsUpdated {}
            | Self::IatIssued { .. }
            | Self::IatRevoked { .. }
            | Self::AuthorizationCodeReuseDetected { .. }
            | Self::RefreshTokenReuseDetected { .. }
            | Self::TokenRevoked { .. }
            | Self::SigningKeyCreated { .. }
            | Self::SigningKeyActivated { .. }
            | Self::SigningKeyRetired { .. }
            | Self::SigningKeysDeleted { .. }
            | Self::SigningKeyRevoked { .. }
            | Self::ClientDisabled { .. }
            | Self::ClientEnabled { .. }
            | Self::ClientDeleted { .. }
            | Self::UserGrantsRevoked { .. } => AuditClass::Security,
            Self::CimdFetchFailed { .. }
            | Self::ClientRegistrationRejected { .. }
            | Self::ClientAssertionRejected { .. }
            | Self::UpstreamLoginFailed { .. }
            | Self::ResourceRefused { .. }
            | Self::DisabledClientRefused { .. }
            | Self::TokenRejected { .. }
            | Self::AuthorizationRejected { .. } => AuditClass::Rejection,
            Self::CimdResolved { .. }
            | Self::ClientRegistered { .. }
            | Self::ClientTokenlessAdmitted { .. }
            | Self::RefreshTokenConcurrentReuse { .. }
            | Self::UpstreamLoginSucceeded { .. }
            | Self::IatUsed { .. }
            | Self::AuthorizationGranted { .. }
            | Self::AuthorizationDenied { .. }
            | Self::TokenIssued { .. } => AuditClass::Activity,
        }
    }

    /// The machine-readable reason of a rejection (what rejections are
    /// counted by), `None` for other events.
    pub fn rejection_reason(&self) -> Option<&str> {
        match self {
            Self::CimdFetchFailed { reason, .. }
            | Self::ClientRegistrationRejected { reason, .. }
            | Self::ClientAssertionRejected { reason, .. }
            | Self::UpstreamLoginFailed { reason, .. }
            | Self::TokenRejected { reason, .. }
            | Self::AuthorizationRejected { reason, .. } => Some(reason),
            Self::ResourceRefused { endpoint, .. } | Self::DisabledClientRefused { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }

    /// The client whose credentials a rejection suggests are being
    /// guessed: a failed authentication of a client that exists
    /// (`wrong_secret`, `secret_expired`, `invalid_assertion`, or a
    /// refused assertion other than `unknown_client` and `malformed`).
    /// Such rejections are counted and sampled per client
    /// ([`crate::store::RejectionCount::reason`]). `None` for every other
    /// event, and where the client id may be any string an anonymous
    /// caller chose (which would let it make unbounded counters).
    pub fn guessed_client(&self) -> Option<&str> {
        match self {
            Self::TokenRejected {
                client_id: Some(client_id),
                reason,
                ..
            } if CLIENT_GUESSING_REASONS.contains(&reason.as_str()) => Some(client_id),
            Self::ClientAssertionRejected { client_id, reason, .. }
                if !client_id.is_empty() && !matches!(reason.as_str(), "unknown_client" | "malformed") =>
            {
                Some(client_id)
            }
            _ => None,
        }
    }

    /// The stable dotted name.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::ProjectMcpEnabled { .. } => "project.mcp_enabled",
            Self::ProjectMcpDisabled { .. } => "project.mcp_disabled",
            Self::ProjectSettingsUpdated {} => "project.settings_updated",
            Self::CimdFetchFailed { .. } => "oauth_client.cimd_fetch_failed",
            Self::CimdResolved { .. } => "oauth_client.cimd_resolved",
            Self::ClientRegistered { .. } => "oauth_client.registered",
            Self::ClientTokenlessAdmitted { .. } => "oauth_client.tokenless_admitted",
            Self::ClientRegistrationRejected { .. } => "oauth_client.registration_rejected",
            Self::IatIssued { .. } => "initial_access_token.issued",
            Self::IatUsed { .. } => "initial_access_token.used",
            Self::IatRevoked { .. } => "initial_access_token.revoked",
            Self::AuthorizationGranted { .. } => "authorization.granted",
            Self::AuthorizationDenied { .. } => "authorization.denied",
            Self::AuthorizationCodeReuseDetected { .. } => "authorization_code.reuse_detected",
            Self::RefreshTokenReuseDetected { .. } => "refresh_token.reuse_detected",
            Self::RefreshTokenConcurrentReuse { .. } => "refresh_token.concurrent_reuse",
            Self::TokenIssued { .. } => "token.issued",
            Self::TokenRevoked { .. } => "token.revoked",
            Self::SigningKeyCreated { .. } => "signing_key.created",
            Self::SigningKeyActivated { .. } => "signing_key.activated",
            Self::SigningKeyRetired { .. } => "signing_key.retired",
            Self::SigningKeysDeleted { .. } => "signing_key.deleted",
            Self::SigningKeyRevoked { .. } => "signing_key.revoked",
            Self::ClientAssertionRejected { .. } => "oauth_client.assertion_rejected",
            Self::UpstreamLoginSucceeded { .. } => "upstream.login_succeeded",
            Self::UpstreamLoginFailed { .. } => "upstream.login_failed",
            Self::ResourceRefused { .. } => "resource.refused",
            Self::ClientDisabled { .. } => "oauth_client.disabled",
            Self::ClientEnabled { .. } => "oauth_client.enabled",
            Self::ClientDeleted { .. } => "oauth_client.deleted",
            Self::DisabledClientRefused { .. } => "oauth_client.disabled_refused",
            Self::UserGrantsRevoked { .. } => "user.grants_revoked",
            Self::TokenRejected { .. } => "token.rejected",
            Self::AuthorizationRejected { .. } => "authorization.rejected",
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use time::macros::datetime;

    /// One event of every kind.
    pub(crate) fn all_kinds() -> Vec<AuditKind> {
        let s = String::new;
        vec![
            AuditKind::ProjectMcpEnabled { changes: vec![] },
            AuditKind::ProjectMcpDisabled { changes: vec![] },
            AuditKind::ProjectSettingsUpdated {},
            AuditKind::CimdFetchFailed {
                client_id: s(),
                reason: s(),
                http_status: Some(404),
                detail: None,
            },
            AuditKind::CimdResolved {
                client_id: s(),
                from_cache: false,
            },
            AuditKind::ClientRegistered {
                client_id: s(),
                iat_id: None,
                token_endpoint_auth_method: s(),
            },
            AuditKind::ClientTokenlessAdmitted {
                client_id: s(),
                source: s(),
                patterns: vec![crate::tokenless::TrustedPattern::Loopback],
            },
            AuditKind::ClientRegistrationRejected {
                error: s(),
                reason: s(),
                iat_id: None,
            },
            AuditKind::IatIssued {
                iat_id: s(),
                label: None,
                max_uses: None,
                expires_at: None,
            },
            AuditKind::IatUsed { iat_id: s(), uses: 1 },
            AuditKind::IatRevoked { iat_id: s() },
            AuditKind::AuthorizationGranted {
                client_id: s(),
                subject: s(),
                scope: s(),
                resources: vec![],
            },
            AuditKind::AuthorizationDenied {
                client_id: s(),
                reason: s(),
            },
            AuditKind::AuthorizationCodeReuseDetected {
                client_id: s(),
                grant_id: s(),
            },
            AuditKind::RefreshTokenReuseDetected {
                client_id: s(),
                grant_id: s(),
            },
            AuditKind::RefreshTokenConcurrentReuse {
                client_id: s(),
                grant_id: s(),
                after_seconds: 1,
            },
            AuditKind::TokenIssued {
                client_id: s(),
                subject: s(),
                grant_id: s(),
                grant_type: s(),
                scope: s(),
                audience: vec![],
            },
            AuditKind::TokenRevoked {
                client_id: s(),
                grant_id: s(),
                reason: s(),
            },
            AuditKind::SigningKeyCreated {
                kid: s(),
                algorithm: s(),
            },
            AuditKind::SigningKeyActivated { kid: s() },
            AuditKind::SigningKeyRetired { kid: s() },
            AuditKind::SigningKeysDeleted { count: 1 },
            AuditKind::SigningKeyRevoked {
                kid: s(),
                replaced_by: Some(s()),
            },
            AuditKind::ClientAssertionRejected {
                client_id: s(),
                reason: s(),
                client_authenticated: false,
            },
            AuditKind::UpstreamLoginSucceeded {
                provider: s(),
                client_id: s(),
                subject: s(),
            },
            AuditKind::UpstreamLoginFailed {
                provider: s(),
                client_id: None,
                reason: s(),
            },
            AuditKind::ResourceRefused {
                client_id: s(),
                endpoint: s(),
                detail: s(),
                client_authenticated: true,
            },
            AuditKind::ClientDisabled { client_id: s() },
            AuditKind::ClientEnabled { client_id: s() },
            AuditKind::ClientDeleted {
                client_id: s(),
                grants_revoked: 2,
            },
            AuditKind::DisabledClientRefused {
                client_id: s(),
                endpoint: s(),
            },
            AuditKind::UserGrantsRevoked {
                subject: s(),
                grants_revoked: 3,
            },
            AuditKind::TokenRejected {
                client_id: Some(s()),
                grant_type: None,
                error: s(),
                reason: s(),
                client_authenticated: false,
            },
            AuditKind::AuthorizationRejected {
                client_id: None,
                error: s(),
                reason: s(),
                redirected: true,
                client_authenticated: false,
            },
        ]
    }

    #[test]
    fn names_are_stable_and_serialized() {
        let expected = [
            "project.mcp_enabled",
            "project.mcp_disabled",
            "project.settings_updated",
            "oauth_client.cimd_fetch_failed",
            "oauth_client.cimd_resolved",
            "oauth_client.registered",
            "oauth_client.tokenless_admitted",
            "oauth_client.registration_rejected",
            "initial_access_token.issued",
            "initial_access_token.used",
            "initial_access_token.revoked",
            "authorization.granted",
            "authorization.denied",
            "authorization_code.reuse_detected",
            "refresh_token.reuse_detected",
            "refresh_token.concurrent_reuse",
            "token.issued",
            "token.revoked",
            "signing_key.created",
            "signing_key.activated",
            "signing_key.retired",
            "signing_key.deleted",
            "signing_key.revoked",
            "oauth_client.assertion_rejected",
            "upstream.login_succeeded",
            "upstream.login_failed",
            "resource.refused",
            "oauth_client.disabled",
            "oauth_client.enabled",
            "oauth_client.deleted",
            "oauth_client.disabled_refused",
            "user.grants_revoked",
            "token.rejected",
            "authorization.rejected",
        ];
        assert_eq!(all_kinds().len(), expected.len());
        let project = ProjectId::new("proj_acme_prod").unwrap();
        for (kind, name) in all_kinds().into_iter().zip(expected) {
            let e = AuditEvent::new(project.clone(), datetime!(2026-11-26 12:00 UTC), kind);
            assert_eq!(e.name(), name);
            let j = e.to_json();
            assert_eq!(j["event"], name);
            assert_eq!(j["project_id"], "proj_acme_prod");
            assert_eq!(j["at"], "2026-11-26T12:00:00Z");
            let back: AuditEvent = serde_json::from_value(j).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn request_metadata_is_flat_and_optional() {
        let e = AuditEvent::new(
            ProjectId::new("p").unwrap(),
            datetime!(2026-11-26 12:00 UTC),
            AuditKind::TokenRejected {
                client_id: Some("client_0123".into()),
                grant_type: Some("authorization_code".into()),
                error: "invalid_grant".into(),
                reason: "pkce_mismatch".into(),
                client_authenticated: true,
            },
        )
        .with_request(
            RequestMeta::new()
                .with_request_id("req-1")
                .with_client_ip("2001:db8::7".parse().unwrap())
                .with_user_agent("claude-code/2"),
        );
        let j = e.to_json();
        assert_eq!(
            j,
            serde_json::json!({
                "event": "token.rejected",
                "project_id": "p",
                "at": "2026-11-26T12:00:00Z",
                "client_id": "client_0123",
                "grant_type": "authorization_code",
                "error": "invalid_grant",
                "reason": "pkce_mismatch",
                "client_authenticated": true,
                "request_id": "req-1",
                "client_ip": "2001:db8::7",
                "user_agent": "claude-code/2"
            })
        );
        assert_eq!(serde_json::from_value::<AuditEvent>(j).unwrap(), e);
        // Events stored before request metadata existed still read.
        let old = serde_json::json!({
            "event": "token.revoked", "project_id": "p", "at": "2026-11-26T12:00:00Z",
            "client_id": "c", "grant_id": "g", "reason": "revocation_request"
        });
        let back: AuditEvent = serde_json::from_value(old).unwrap();
        assert!(back.request.is_empty());
    }

    #[test]
    fn cimd_failure_shape() {
        let e = AuditEvent::new(
            ProjectId::new("p").unwrap(),
            datetime!(2026-11-26 12:00 UTC),
            AuditKind::CimdFetchFailed {
                client_id: "https://x.example.com/c".into(),
                reason: "http_status".into(),
                http_status: Some(404),
                detail: None,
            },
        );
        assert_eq!(
            e.to_json(),
            serde_json::json!({
                "event": "oauth_client.cimd_fetch_failed",
                "project_id": "p",
                "at": "2026-11-26T12:00:00Z",
                "client_id": "https://x.example.com/c",
                "reason": "http_status",
                "http_status": 404
            })
        );
    }
}
