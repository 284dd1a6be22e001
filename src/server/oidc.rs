//! OpenID Connect: the userinfo endpoint (OpenID Connect Core section
//! 5.3).

use super::EndpointError;
use crate::error::{ErrorCode, OAuthError};
use crate::grant::Subject;
use crate::project::ProjectId;
use crate::scope::ScopeSet;
use crate::secret::SecretHash;

use super::AuthorizationServer;

impl AuthorizationServer {
    /// The userinfo endpoint: `authorization` is the raw `Authorization`
    /// header carrying the access token (`Bearer`, [RFC 6750 section 2.1]).
    /// The token is looked up by its hash whatever its format, so a
    /// revoked or expired token is refused at once. Returns `sub` and the
    /// claims the token's scopes release (`email`, `email_verified` with
    /// `email`), from the host's [`crate::store::UserClaimsSource`].
    ///
    /// # Errors
    /// 401 `invalid_token` for a missing, unknown, revoked or expired
    /// token, or one of a disabled or deleted client; 403 `insufficient_scope` without `openid`; `server_error`
    /// when storage fails.
    ///
    /// [RFC 6750 section 2.1]: https://www.rfc-editor.org/rfc/rfc6750#section-2.1
    pub async fn userinfo(
        &self,
        project: &ProjectId,
        authorization: Option<&str>,
    ) -> Result<serde_json::Value, EndpointError> {
        self.project_for_request(project).await?;
        let invalid = || OAuthError::with_description(ErrorCode::InvalidToken, "a valid access token is required");
        let token = crate::http::bearer_token(authorization).ok_or_else(invalid)?;
        let record = self
            .grants
            .access_token(project, &SecretHash::of(token))
            .await?
            .ok_or_else(invalid)?;
        if !crate::token::access_token_active(&record, self.clock.now())
            || !self.client_active(project, &record.claims.client_id).await?
        {
            return Err(invalid().into());
        }
        let scopes = ScopeSet::parse(&record.claims.scope).map_err(|_| invalid())?;
        if !scopes.contains("openid") {
            return Err(
                OAuthError::with_description(ErrorCode::InsufficientScope, "the openid scope is required").into(),
            );
        }
        let subject = Subject::new(record.claims.sub.clone()).map_err(|_| invalid())?;
        let claims = self.user_claims.claims(project, &subject).await?.filtered(&scopes);
        let mut body = serde_json::Map::new();
        body.insert("sub".into(), subject.as_str().into());
        if let Ok(serde_json::Value::Object(extra)) = serde_json::to_value(&claims) {
            body.extend(extra);
        }
        Ok(serde_json::Value::Object(body))
    }
}
