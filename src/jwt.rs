//! The JWT profiles this crate issues and accepts, as pure rules:
//!
//! - JWT access tokens ([RFC 9068]): [`JwtAccessTokenIssuer`] signs the
//!   claims the driver computed; [`check_access_token_claims`] is what a
//!   resource server applies after the signature verified.
//! - OpenID Connect ID tokens (OpenID Connect Core 1.0 section 2):
//!   [`id_token_claims`].
//! - Client assertions for `private_key_jwt` ([RFC 7523 section 3], [RFC
//!   7521 section 4.2]): [`check_client_assertion`].
//!
//! Signatures and headers are the business of [`crate::jose`]; every
//! function here takes `now` and reads no clock.
//!
//! # Security
//! A JWT access token is checked by resource servers without asking the
//! authorization server, so revoking it ([RFC 7009]) does not reach them: it
//! stays valid to them until its `exp`. Introspection reports it inactive
//! at once. Keep JWT lifetimes short.
//!
//! [RFC 9068]: https://www.rfc-editor.org/rfc/rfc9068
//! [RFC 7523 section 3]: https://www.rfc-editor.org/rfc/rfc7523#section-3
//! [RFC 7521 section 4.2]: https://www.rfc-editor.org/rfc/rfc7521#section-4.2
//! [RFC 7009]: https://www.rfc-editor.org/rfc/rfc7009

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use crate::grant::{AccessTokenClaims, Grant};
use crate::jose;
use crate::keys::SigningKey;
use crate::scope::ScopeSet;
use crate::secret::SecretString;
use crate::store::{StoreError, TokenIssuer};

pub use crate::claims::UserClaims;

/// The `typ` of a JWT access token ([RFC 9068 section 2.1]).
///
/// [RFC 9068 section 2.1]: https://www.rfc-editor.org/rfc/rfc9068#section-2.1
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The `typ` of an ID token: plain `JWT` (OpenID Connect Core does not
/// define one; `JWT` is what libraries expect).
pub const ID_TOKEN_TYP: &str = "JWT";

/// The clock-skew leeway applied to `exp`, `nbf` and `iat`: 60 seconds.
pub const DEFAULT_LEEWAY: Duration = Duration::seconds(60);

/// The longest lifetime (`exp - iat`, or `exp - now`) of a client
/// assertion accepted: 5 minutes. A replay store must remember a `jti`
/// at least that long.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::minutes(5);

/// Signs access tokens as [RFC 9068] JWTs with one signing key (the
/// project's active key of its access-token algorithm; the driver builds
/// one per request).
///
/// [RFC 9068]: https://www.rfc-editor.org/rfc/rfc9068
#[derive(Clone, Debug)]
pub struct JwtAccessTokenIssuer {
    key: SigningKey,
}

impl JwtAccessTokenIssuer {
    /// An issuer signing with `key`.
    pub const fn new(key: SigningKey) -> Self {
        Self { key }
    }
}

#[async_trait]
impl TokenIssuer for JwtAccessTokenIssuer {
    async fn issue(&self, claims: &AccessTokenClaims, _random: &[u8; 32]) -> Result<SecretString, StoreError> {
        jose::sign(&self.key.private_key, self.key.kid.as_str(), ACCESS_TOKEN_TYP, claims)
            .map(SecretString::new)
            .map_err(|e| StoreError::with_source("signing an access token failed", e))
    }
}

/// The claims of an ID token (OpenID Connect Core section 2 and 3.1.3.6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IdTokenClaims {
    /// The issuer.
    pub iss: String,
    /// The user (the host's stable user id).
    pub sub: String,
    /// The client (a single audience).
    pub aud: String,
    /// The authorized party: the client.
    pub azp: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the user authenticated.
    pub auth_time: i64,
    /// The `nonce` of the authorization request, when it had one (never
    /// on a refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The left half of the SHA-256 of the access token, base64url.
    pub at_hash: String,
    /// The user claims released by the granted scopes.
    #[serde(flatten)]
    pub user: UserClaims,
}

/// What an ID token is bound to: the access token issued with it
/// (`at_hash`) and the authorization request's `nonce`.
#[derive(Clone, Copy, Debug)]
pub struct IdTokenBinding<'a> {
    /// The access token of the same response.
    pub access_token: &'a str,
    /// The `nonce` of the authorization request (`None` on a refresh).
    pub nonce: Option<&'a str>,
}

/// The ID token claims for `grant` at `now`, bound as `binding` says,
/// living `ttl`, with the user claims `scopes` release.
pub fn id_token_claims(
    issuer: &str,
    grant: &Grant,
    scopes: &ScopeSet,
    binding: IdTokenBinding<'_>,
    user: &UserClaims,
    ttl: Duration,
    now: OffsetDateTime,
) -> IdTokenClaims {
    let IdTokenBinding { access_token, nonce } = binding;
    let iat = now.unix_timestamp();
    IdTokenClaims {
        iss: issuer.to_owned(),
        sub: grant.subject.as_str().to_owned(),
        aud: grant.client_id.as_str().to_owned(),
        azp: grant.client_id.as_str().to_owned(),
        exp: iat + ttl.whole_seconds(),
        iat,
        auth_time: grant.granted_at.unix_timestamp(),
        nonce: nonce.map(str::to_owned),
        at_hash: jose::half_sha256(access_token),
        user: user.filtered(scopes),
    }
}

/// Signs ID token claims with `key`.
///
/// # Errors
/// [`StoreError`] when signing fails.
pub fn sign_id_token(key: &SigningKey, claims: &IdTokenClaims) -> Result<String, StoreError> {
    jose::sign(&key.private_key, key.kid.as_str(), ID_TOKEN_TYP, claims)
        .map_err(|e| StoreError::with_source("signing an ID token failed", e))
}

/// Why the claims of a signed token were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// A required claim is missing or has the wrong type.
    #[error("the {0} claim is missing or malformed")]
    Missing(&'static str),
    /// `iss` is not the expected issuer.
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    /// `aud` does not contain the expected audience.
    #[error("the token is for another audience")]
    WrongAudience,
    /// Past `exp` (plus leeway).
    #[error("the token has expired")]
    Expired,
    /// Before `nbf` (minus leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` in the future (beyond leeway).
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// A client assertion lives longer than [`MAX_ASSERTION_LIFETIME`].
    #[error("the assertion lives too long")]
    LifetimeTooLong,
    /// A client assertion's `iss` or `sub` is not the client.
    #[error("the assertion's iss and sub must be the client id")]
    WrongSubject,
    /// A client assertion's `aud` is an array (even of one value): it
    /// must be a single JSON string (draft-ietf-oauth-rfc7523bis).
    #[error("the assertion's aud must be a single string")]
    AudienceNotAString,
}

/// The claims of a verified JWT access token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessTokenJwtClaims {
    /// `sub`.
    pub sub: String,
    /// `client_id`.
    pub client_id: String,
    /// `scope` (empty when absent).
    pub scope: ScopeSet,
    /// `aud`.
    pub aud: Vec<String>,
    /// `exp`.
    pub exp: OffsetDateTime,
}

/// The rules of [RFC 9068 section 4] for the claims of an access token whose
/// signature and `typ` already verified: `iss` equals `issuer` exactly;
/// `aud` (a string or an array) contains `audience` (compared by
/// `audience_matches`); `exp` is required and `now` is before it (plus
/// `leeway`); `nbf`, when present, is not after `now + leeway`; `iat`, when
/// present, is not after `now + leeway`; `sub` and `client_id` are
/// strings; `scope`, when present, is a valid scope string.
///
/// # Errors
/// A [`ClaimsError`].
///
/// [RFC 9068 section 4]: https://www.rfc-editor.org/rfc/rfc9068#section-4
pub fn check_access_token_claims(
    claims: &Map<String, Value>,
    issuer: &str,
    audience_matches: impl Fn(&str) -> bool,
    leeway: Duration,
    now: OffsetDateTime,
) -> Result<AccessTokenJwtClaims, ClaimsError> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(ClaimsError::WrongIssuer);
    }
    let aud = audiences(claims).ok_or(ClaimsError::Missing("aud"))?;
    if !aud.iter().any(|a| audience_matches(a)) {
        return Err(ClaimsError::WrongAudience);
    }
    let exp = check_times(claims, leeway, now)?;
    let string = |name: &'static str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(ClaimsError::Missing(name))
    };
    let scope = match claims.get("scope") {
        None => ScopeSet::new(),
        Some(Value::String(s)) => ScopeSet::parse(s).map_err(|_| ClaimsError::Missing("scope"))?,
        Some(_) => return Err(ClaimsError::Missing("scope")),
    };
    Ok(AccessTokenJwtClaims {
        sub: string("sub")?,
        client_id: string("client_id")?,
        scope,
        aud,
        exp,
    })
}

/// What a valid client assertion yields: its `jti` and `exp`, for the
/// replay store.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientAssertion {
    /// `jti`.
    pub jti: String,
    /// `exp`.
    pub exp: OffsetDateTime,
}

/// The rules for the claims of a `private_key_jwt` client assertion whose
/// signature already verified ([RFC 7523 section 3]; [RFC 7521 section
/// 4.2]), as this server applies them:
///
/// - `iss` and `sub` both equal `client_id` exactly;
/// - `aud` is a single JSON string (an array, even of one value, is
///   refused: [`ClaimsError::AudienceNotAString`]) equal, by simple
///   string comparison, to one of `audiences_accepted`. The caller passes
///   the server's issuer identifier, which draft-ietf-oauth-rfc7523bis
///   requires as the sole audience value: an assertion whose audience
///   names several servers, or an endpoint URL that another (attacker's)
///   authorization server can claim as its own in its metadata, could
///   have been obtained by that server from an honest client and replayed
///   here (audience injection). The token endpoint URL is only passed
///   for projects that opt in for compatibility with [RFC 7523]-era clients
///   ([`crate::project::ProjectSettings::danger_accept_token_endpoint_assertion_audience`]),
///   and never for metadata-document clients;
/// - `exp` is required, `now` is before it (plus `leeway`), and it is at
///   most [`MAX_ASSERTION_LIFETIME`] after `now` (and after `iat` when
///   present): a short window bounds what the replay store must remember;
/// - `nbf` and `iat`, when present, are not in the future beyond `leeway`;
/// - `jti` is required (1 to 256 characters); single use is the caller's
///   job, through a [`crate::store::ReplayStore`].
///
/// # Errors
/// A [`ClaimsError`].
///
/// [RFC 7523 section 3]: https://www.rfc-editor.org/rfc/rfc7523#section-3
/// [RFC 7521 section 4.2]: https://www.rfc-editor.org/rfc/rfc7521#section-4.2
/// [RFC 7523]: https://www.rfc-editor.org/rfc/rfc7523
pub fn check_client_assertion(
    claims: &Map<String, Value>,
    client_id: &str,
    audiences_accepted: &[&str],
    leeway: Duration,
    now: OffsetDateTime,
) -> Result<ClientAssertion, ClaimsError> {
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    if s("iss") != Some(client_id) || s("sub") != Some(client_id) {
        return Err(ClaimsError::WrongSubject);
    }
    let aud = match claims.get("aud") {
        Some(Value::String(aud)) => aud,
        Some(Value::Array(_)) => return Err(ClaimsError::AudienceNotAString),
        _ => return Err(ClaimsError::Missing("aud")),
    };
    if !audiences_accepted.contains(&aud.as_str()) {
        return Err(ClaimsError::WrongAudience);
    }
    let exp = check_times(claims, leeway, now)?;
    let limit = MAX_ASSERTION_LIFETIME + leeway;
    if exp - now > limit {
        return Err(ClaimsError::LifetimeTooLong);
    }
    if let Some(iat) = claims.get("iat").and_then(Value::as_i64)
        && exp.unix_timestamp().saturating_sub(iat) > limit.whole_seconds()
    {
        return Err(ClaimsError::LifetimeTooLong);
    }
    let jti = s("jti")
        .filter(|j| (1..=256).contains(&j.len()))
        .ok_or(ClaimsError::Missing("jti"))?;
    Ok(ClientAssertion {
        jti: jti.to_owned(),
        exp,
    })
}

/// `aud` as a list: a string, or a non-empty array of strings.
fn audiences(claims: &Map<String, Value>) -> Option<Vec<String>> {
    match claims.get("aud")? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) if !a.is_empty() => a.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

/// `exp` required and not passed; `nbf` and `iat` not in the future.
fn check_times(
    claims: &Map<String, Value>,
    leeway: Duration,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, ClaimsError> {
    let time = |name: &'static str| -> Result<Option<OffsetDateTime>, ClaimsError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
                .map(Some)
                .ok_or(ClaimsError::Missing(name)),
        }
    };
    let exp = time("exp")?.ok_or(ClaimsError::Missing("exp"))?;
    // Checked arithmetic: claim values near the end of the representable
    // range must not panic (an `exp` there is simply not expired).
    if exp.checked_add(leeway).is_some_and(|limit| now >= limit) {
        return Err(ClaimsError::Expired);
    }
    let latest = now.checked_add(leeway).unwrap_or(now);
    if time("nbf")?.is_some_and(|nbf| nbf > latest) {
        return Err(ClaimsError::NotYetValid);
    }
    if time("iat")?.is_some_and(|iat| iat > latest) {
        return Err(ClaimsError::IssuedInFuture);
    }
    Ok(exp)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn at(extra: Value) -> Map<String, Value> {
        let mut m = obj(json!({
            "iss": "https://as.example", "aud": ["https://mcp.example/mcp"], "sub": "u1",
            "client_id": "c1", "scope": "mcp:read", "exp": NOW.unix_timestamp() + 300,
            "iat": NOW.unix_timestamp(), "jti": "j"
        }));
        m.extend(obj(extra));
        m
    }

    fn check(m: &Map<String, Value>) -> Result<AccessTokenJwtClaims, ClaimsError> {
        check_access_token_claims(
            m,
            "https://as.example",
            |a| a == "https://mcp.example/mcp",
            DEFAULT_LEEWAY,
            NOW,
        )
    }

    #[test]
    fn access_token_claims_table() {
        let ok = check(&at(json!({}))).unwrap();
        assert_eq!(ok.sub, "u1");
        assert!(ok.scope.contains("mcp:read"));
        let t = NOW.unix_timestamp();
        let cases = [
            (json!({"iss": "https://as.example/"}), ClaimsError::WrongIssuer),
            (json!({"aud": "https://other.example/mcp"}), ClaimsError::WrongAudience),
            (json!({"aud": []}), ClaimsError::Missing("aud")),
            (json!({"exp": t - 61}), ClaimsError::Expired),
            (json!({"exp": "soon"}), ClaimsError::Missing("exp")),
            (json!({"nbf": t + 120}), ClaimsError::NotYetValid),
            (json!({"iat": t + 120}), ClaimsError::IssuedInFuture),
            (json!({"sub": 5}), ClaimsError::Missing("sub")),
            (json!({"scope": ["a"]}), ClaimsError::Missing("scope")),
        ];
        for (extra, want) in cases {
            assert_eq!(check(&at(extra.clone())), Err(want), "{extra}");
        }
        // Extreme values neither panic nor pass.
        let max = 253_402_300_799_i64; // 9999-12-31T23:59:59Z
        assert!(check(&at(json!({"exp": max}))).is_ok());
        assert_eq!(check(&at(json!({"exp": i64::MAX}))), Err(ClaimsError::Missing("exp")));
        assert_eq!(check(&at(json!({"nbf": max}))), Err(ClaimsError::NotYetValid));
        let mut no_exp = at(json!({}));
        no_exp.remove("exp");
        assert_eq!(check(&no_exp), Err(ClaimsError::Missing("exp")));
        // Within the leeway.
        assert!(check(&at(json!({"exp": t - 30, "nbf": t + 30}))).is_ok());
        assert!(check(&at(json!({"aud": "https://mcp.example/mcp"}))).is_ok());
    }

    fn assertion(extra: Value) -> Map<String, Value> {
        let mut m = obj(json!({
            "iss": "client_1", "sub": "client_1", "aud": "https://as.example",
            "exp": NOW.unix_timestamp() + 60, "iat": NOW.unix_timestamp(), "jti": "abc"
        }));
        m.extend(obj(extra));
        m
    }

    #[test]
    fn client_assertion_table() {
        let auds = ["https://as.example", "https://as.example/oauth2/token"];
        let check = |m| check_client_assertion(&m, "client_1", &auds, DEFAULT_LEEWAY, NOW);
        assert_eq!(check(assertion(json!({}))).unwrap().jti, "abc");
        assert!(check(assertion(json!({"aud": "https://as.example/oauth2/token"}))).is_ok());
        // Only the caller's list counts: the issuer alone.
        let issuer_only = check_client_assertion(
            &assertion(json!({"aud": "https://as.example/oauth2/token"})),
            "client_1",
            &auds[..1],
            DEFAULT_LEEWAY,
            NOW,
        );
        assert_eq!(issuer_only, Err(ClaimsError::WrongAudience));
        let t = NOW.unix_timestamp();
        let cases = [
            // draft-ietf-oauth-rfc7523bis: one JSON string, the sole value.
            (json!({"aud": ["https://as.example"]}), ClaimsError::AudienceNotAString),
            (
                json!({"aud": ["https://as.example", "https://evil.example"]}),
                ClaimsError::AudienceNotAString,
            ),
            (json!({"aud": "https://as.example/"}), ClaimsError::WrongAudience),
            (json!({"aud": "HTTPS://as.example"}), ClaimsError::WrongAudience),
            (json!({"aud": 5}), ClaimsError::Missing("aud")),
            (json!({"aud": null}), ClaimsError::Missing("aud")),
            (json!({"iss": "client_2"}), ClaimsError::WrongSubject),
            (json!({"sub": "client_2"}), ClaimsError::WrongSubject),
            (json!({"aud": "https://evil.example"}), ClaimsError::WrongAudience),
            (json!({"exp": t - 120}), ClaimsError::Expired),
            (json!({"exp": t + 3600}), ClaimsError::LifetimeTooLong),
            (json!({"iat": t - 3000, "exp": t + 60}), ClaimsError::LifetimeTooLong),
            (json!({"nbf": t + 600}), ClaimsError::NotYetValid),
            (json!({"jti": ""}), ClaimsError::Missing("jti")),
            (json!({"iat": i64::MIN}), ClaimsError::Missing("iat")),
            (json!({"exp": 253_402_300_799_i64}), ClaimsError::LifetimeTooLong),
        ];
        for (extra, want) in cases {
            assert_eq!(check(assertion(extra.clone())), Err(want), "{extra}");
        }
    }

    #[test]
    fn user_claims_follow_the_email_scope() {
        let u = UserClaims::with_email("a@example.com", true);
        assert_eq!(u.filtered(&ScopeSet::parse("openid").unwrap()), UserClaims::default());
        assert_eq!(u.filtered(&ScopeSet::parse("openid email").unwrap()), u);
    }
}
