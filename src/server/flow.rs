//! The authorization-code flow: authorize, approve / deny, token,
//! revocation and introspection.

use crate::audit::AuditKind;
use crate::authorize::{
    self, ApprovalError, ApprovalRandomness, AuthorizationRequest, ClientRequestError, PendingAuthorization,
};
use crate::cimd::ClientIdUrlPolicy;
use crate::client::{Client, ClientId};
use crate::client_auth::{ClientAuthError, ClientCredentials};
use crate::error::{ErrorCode, OAuthError};
use crate::grant::{AccessTokenRecord, Grant, RefreshTokenRecord, Subject, hex};
use crate::project::{ProjectId, ProjectSettings};
use crate::scope::ScopeSet;
use crate::secret::{SecretHash, SecretString};
use crate::store::{CodeConsumption, RefreshRotation};
use crate::token::{
    self, GrantTypeParam, IntrospectionResponse, Issuance, TokenError, TokenReference, TokenRequest, TokenResponse,
};

use super::AuthorizationServer;

/// What the authorization endpoint decided.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthorizeOutcome {
    /// Phase 1 failed (unknown client, bad redirect URI, unusable metadata
    /// document, unknown project): show this error to the user. Never
    /// redirect.
    ShowError(OAuthError),
    /// Phase 2 failed: redirect the user agent to this `Location`.
    Redirect(String),
    /// The request is valid: run login and consent, then call
    /// [`AuthorizationServer::approve`] or [`AuthorizationServer::deny`].
    Pending(Box<PendingAuthorization>),
}

/// What was presented twice.
#[derive(Clone, Copy)]
enum Reused {
    Code,
    RefreshToken,
}

/// Why an approval could not be completed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApproveError {
    /// The approval itself was refused.
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    /// The project is gone, or storage failed.
    #[error("the authorization could not be completed")]
    Server,
}

impl AuthorizationServer {
    /// The authorization endpoint: validates `query` in two phases.
    pub async fn authorize(&self, project: &ProjectId, query: &str) -> AuthorizeOutcome {
        self.authorize_from(project, query, None).await
    }

    /// [`Self::authorize`] for a request from `source` (the client IP as
    /// the HTTP edge knows it): the first fetch of an unknown CIMD
    /// `client_id` is then also limited per source
    /// ([`crate::cimd::FetchLimits`]).
    pub async fn authorize_from(
        &self,
        project: &ProjectId,
        query: &str,
        source: Option<&crate::cimd::RequestSource>,
    ) -> AuthorizeOutcome {
        let settings = match self.projects.get(project).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return AuthorizeOutcome::ShowError(OAuthError::unknown_project());
            }
            Err(_) => return AuthorizeOutcome::ShowError(OAuthError::server_error()),
        };
        let req = AuthorizationRequest::from_query(query);
        let client = match self.authorization_client(project, &settings, &req, source).await {
            Ok(c) => c,
            Err(e) => return AuthorizeOutcome::ShowError(e),
        };
        let redirect_uri = match authorize::check_redirect_uri(&req, &client) {
            Ok(r) => r,
            Err(e) => return AuthorizeOutcome::ShowError(e.to_oauth_error()),
        };
        match authorize::validate_request(&req, project, &settings, &client, redirect_uri, self.clock.now()) {
            Ok(p) => AuthorizeOutcome::Pending(Box::new(p)),
            Err(e) => AuthorizeOutcome::Redirect(e.location(self.issuer_for(&settings).as_str())),
        }
    }

    async fn authorization_client(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        req: &AuthorizationRequest,
        source: Option<&crate::cimd::RequestSource>,
    ) -> Result<Client, OAuthError> {
        let id = authorize::parse_client_id(req, settings, self.client_id_url_policy(settings))
            .map_err(|e| e.to_oauth_error())?;
        self.resolve_client_from(project, settings, &id, source).await
    }

    pub(crate) fn client_id_url_policy(&self, settings: &ProjectSettings) -> ClientIdUrlPolicy {
        settings.cimd.url_policy
    }

    /// Resolves a client id to a client: the client store for registered
    /// ids, the metadata-document resolver for URLs.
    pub(crate) async fn resolve_client(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        id: &ClientId,
    ) -> Result<Client, OAuthError> {
        self.resolve_client_from(project, settings, id, None).await
    }

    async fn resolve_client_from(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        id: &ClientId,
        source: Option<&crate::cimd::RequestSource>,
    ) -> Result<Client, OAuthError> {
        match id {
            ClientId::Registered(r) => self
                .clients
                .get(project, r)
                .await?
                .ok_or_else(|| ClientRequestError::UnknownClient.to_oauth_error()),
            ClientId::Metadata(url) => self
                .resolve_cimd_client_from(project, settings, url, source)
                .await
                .map_err(|e| {
                    ClientRequestError::ClientMetadataUnavailable {
                        reason: e.reason().into(),
                    }
                    .to_oauth_error()
                }),
        }
    }

    /// Approves a pending authorization for `subject`, granting `granted`
    /// scopes (`None`: all requested). Stores the code (hash only), records
    /// `authorization.granted`, and returns the redirect `Location`.
    ///
    /// # Errors
    /// [`ApproveError`].
    pub async fn approve(
        &self,
        pending: PendingAuthorization,
        subject: Subject,
        granted: Option<ScopeSet>,
    ) -> Result<String, ApproveError> {
        let project = pending.project.clone();
        let settings = self
            .projects
            .get(&project)
            .await
            .ok()
            .flatten()
            .ok_or(ApproveError::Server)?;
        let random = ApprovalRandomness {
            grant_id: self.random_array(),
            code: self.random_array(),
        };
        let approval = pending.approve(
            subject,
            granted,
            self.issuer_for(&settings).as_str(),
            settings.code_ttl.get(),
            random,
            self.clock.now(),
        )?;
        self.grants
            .insert_code(approval.record.clone())
            .await
            .map_err(|_| ApproveError::Server)?;
        let grant = &approval.record.grant;
        self.emit(
            &project,
            AuditKind::AuthorizationGranted {
                client_id: grant.client_id.to_string(),
                subject: grant.subject.as_str().to_owned(),
                scope: grant.scopes.to_string(),
                resources: grant.resources.audiences(),
            },
        )
        .await;
        Ok(approval.location)
    }

    /// Denies a pending authorization: records `authorization.denied` and
    /// returns the redirect `Location` (`error=access_denied`).
    pub async fn deny(&self, pending: &PendingAuthorization) -> String {
        self.emit(
            &pending.project,
            AuditKind::AuthorizationDenied {
                client_id: pending.client_id.to_string(),
                reason: "user_denied".to_owned(),
            },
        )
        .await;
        match self.projects.get(&pending.project).await {
            Ok(Some(settings)) => pending.deny(self.issuer_for(&settings).as_str()),
            _ => pending.deny(self.issuer.as_str()),
        }
    }

    /// The token endpoint: `authorization` is the raw `Authorization`
    /// header, `body` the form body.
    ///
    /// # Errors
    /// An RFC 6749 section 5.2 error.
    pub async fn token(
        &self,
        project: &ProjectId,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<TokenResponse, OAuthError> {
        let settings = self.project_for_request(project).await?;
        let req = TokenRequest::from_form(body)?;
        let grant_type = req.grant_type()?;
        let client = self
            .authenticate_client(
                project,
                &settings,
                authorization,
                req.client_id.as_deref(),
                req.client_secret.as_deref(),
            )
            .await?;
        match grant_type {
            GrantTypeParam::AuthorizationCode => self.exchange_code(project, &settings, &client, &req).await,
            GrantTypeParam::RefreshToken => self.refresh(project, &settings, &client, &req).await,
        }
    }

    pub(crate) async fn project_for_request(&self, project: &ProjectId) -> Result<ProjectSettings, OAuthError> {
        self.projects
            .get(project)
            .await?
            .ok_or_else(OAuthError::unknown_project)
    }

    /// Client authentication at the token and revocation endpoints:
    /// registered clients by their registered method, metadata-document
    /// clients (public) by `client_id` alone. Any failure is one generic
    /// `invalid_client` (a CIMD failure included: CIMD draft, section 6).
    pub(crate) async fn authenticate_client(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        authorization: Option<&str>,
        client_id: Option<&str>,
        client_secret: Option<&str>,
    ) -> Result<Client, OAuthError> {
        let used_header = authorization.is_some();
        let creds = ClientCredentials::parse(authorization, client_id, client_secret)
            .map_err(|e| e.to_oauth_error(used_header))?;
        let invalid = || ClientAuthError::UnknownClient.to_oauth_error(used_header);
        let id = ClientId::parse_with(creds.client_id(), self.client_id_url_policy(settings)).map_err(|_| invalid())?;
        match id {
            ClientId::Registered(_) => self.authenticate_registered_client(project, &creds).await,
            ClientId::Metadata(_) => {
                if creds.has_secret() {
                    return Err(invalid());
                }
                let client = self
                    .resolve_client(project, settings, &id)
                    .await
                    .map_err(|e| match e.code() {
                        ErrorCode::ServerError => e,
                        _ => invalid(),
                    })?;
                // private_key_jwt assertions are not verified by this server
                // yet, so confidential metadata-document clients cannot
                // authenticate.
                if client.is_confidential() {
                    return Err(invalid());
                }
                Ok(client)
            }
        }
    }

    async fn exchange_code(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        client: &Client,
        req: &TokenRequest,
    ) -> Result<TokenResponse, OAuthError> {
        let code = req.code.as_deref().ok_or(TokenError::MissingParameter("code"))?;
        let hash = SecretHash::of(code);
        let record = self
            .grants
            .code(project, &hash)
            .await?
            .ok_or(TokenError::InvalidGrant("authorization code"))?;
        // Every check before any state change: an invalid replay neither
        // consumes the code nor revokes anything.
        let issuance = token::check_code_redemption(&record, &client.client_id, req, self.clock.now())?;
        if record.consumed {
            return Err(self.reuse_detected(project, &record.grant, Reused::Code).await);
        }
        match self.grants.consume_code(project, &hash).await? {
            CodeConsumption::Consumed(record) => {
                self.issue_tokens(settings, client, &record.grant, &issuance, None, "authorization_code")
                    .await
            }
            CodeConsumption::AlreadyConsumed(record) => {
                Err(self.reuse_detected(project, &record.grant, Reused::Code).await)
            }
            _ => Err(TokenError::InvalidGrant("authorization code").into()),
        }
    }

    /// A replayed code or a reused refresh token: revoke the whole grant,
    /// record the detection and the revocation, answer `invalid_grant`.
    async fn reuse_detected(&self, project: &ProjectId, grant: &Grant, what: Reused) -> OAuthError {
        let revoked = self.grants.revoke_grant(project, &grant.id, self.clock.now()).await;
        let (client_id, grant_id) = (grant.client_id.to_string(), grant.id.to_string());
        let (detected, reason, token) = match what {
            Reused::Code => (
                AuditKind::AuthorizationCodeReuseDetected {
                    client_id: client_id.clone(),
                    grant_id: grant_id.clone(),
                },
                "code_reuse",
                "authorization code",
            ),
            Reused::RefreshToken => (
                AuditKind::RefreshTokenReuseDetected {
                    client_id: client_id.clone(),
                    grant_id: grant_id.clone(),
                },
                "refresh_reuse",
                "refresh token",
            ),
        };
        self.emit(project, detected).await;
        if revoked.is_err() {
            return OAuthError::server_error();
        }
        self.emit(
            project,
            AuditKind::TokenRevoked {
                client_id,
                grant_id,
                reason: reason.to_owned(),
            },
        )
        .await;
        TokenError::InvalidGrant(token).into()
    }

    async fn refresh(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        client: &Client,
        req: &TokenRequest,
    ) -> Result<TokenResponse, OAuthError> {
        let raw = req
            .refresh_token
            .as_deref()
            .ok_or(TokenError::MissingParameter("refresh_token"))?;
        if !settings.issues_refresh_tokens() {
            // The project stopped issuing refresh tokens: existing ones stop working.
            return Err(TokenError::InvalidGrant("refresh token").into());
        }
        let hash = SecretHash::of(raw);
        let record = self
            .grants
            .refresh_token(project, &hash)
            .await?
            .ok_or(TokenError::InvalidGrant("refresh token"))?;
        let issuance = token::check_refresh(&record, &client.client_id, req, self.clock.now())?;
        if !client.metadata.allows_refresh() {
            return Err(TokenError::UnauthorizedClient.into());
        }
        if record.rotated {
            return Err(self.reuse_detected(project, &record.grant, Reused::RefreshToken).await);
        }
        let (new_token, new_record) =
            self.new_refresh_token(settings, &record.grant, &record.scopes, &record.resources);
        match self.grants.rotate_refresh_token(project, &hash, new_record).await? {
            RefreshRotation::Rotated(old) => {
                self.issue_tokens(
                    settings,
                    client,
                    &old.grant,
                    &issuance,
                    Some(new_token),
                    "refresh_token",
                )
                .await
            }
            RefreshRotation::AlreadyRotated(old) => {
                Err(self.reuse_detected(project, &old.grant, Reused::RefreshToken).await)
            }
            _ => Err(TokenError::InvalidGrant("refresh token").into()),
        }
    }

    fn new_refresh_token(
        &self,
        settings: &ProjectSettings,
        grant: &Grant,
        scopes: &ScopeSet,
        resources: &crate::resource::ResourceSet,
    ) -> (SecretString, RefreshTokenRecord) {
        let now = self.clock.now();
        let token = SecretString::random_with_prefix("rt_", &self.random_array::<32>());
        let record = RefreshTokenRecord {
            hash: token.hash(),
            grant: grant.clone(),
            scopes: scopes.clone(),
            resources: resources.clone(),
            issued_at: now,
            expires_at: now + settings.refresh_token_ttl,
            rotated: false,
        };
        (token, record)
    }

    /// Mints the access token (and, after a code exchange, the first
    /// refresh token) and records `token.issued`.
    async fn issue_tokens(
        &self,
        settings: &ProjectSettings,
        client: &Client,
        grant: &Grant,
        issuance: &Issuance,
        rotated_refresh: Option<SecretString>,
        grant_type: &str,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.clock.now();
        let jti = hex(&self.random_array::<16>());
        let claims = token::access_token_claims(
            self.issuer_for(settings).as_str(),
            grant,
            issuance,
            settings.access_token_ttl,
            jti,
            now,
        );
        let access = self.token_issuer.issue(&claims, &self.random_array::<32>()).await?;
        let refresh = match rotated_refresh {
            Some(r) => Some(r),
            None if settings.issues_refresh_tokens() && client.metadata.allows_refresh() => {
                let (token, record) = self.new_refresh_token(settings, grant, &grant.scopes, &grant.resources);
                self.grants.insert_refresh_token(record).await?;
                Some(token)
            }
            None => None,
        };
        self.emit(
            &grant.project,
            AuditKind::TokenIssued {
                client_id: grant.client_id.to_string(),
                subject: grant.subject.as_str().to_owned(),
                grant_id: grant.id.to_string(),
                grant_type: grant_type.to_owned(),
                scope: claims.scope.clone(),
                audience: claims.aud.clone(),
            },
        )
        .await;
        let response = TokenResponse {
            access_token: access.expose_secret().to_owned(),
            token_type: "Bearer".to_owned(),
            expires_in: claims.exp - claims.iat,
            refresh_token: refresh.map(|r| r.expose_secret().to_owned()),
            scope: claims.scope.clone(),
        };
        self.grants
            .insert_access_token(AccessTokenRecord {
                hash: access.hash(),
                project: grant.project.clone(),
                grant_id: grant.id.clone(),
                claims,
                revoked: false,
            })
            .await?;
        Ok(response)
    }

    /// Token revocation (RFC 7009). Unknown tokens, and tokens of other
    /// clients, are answered with success and left alone (no token
    /// probing). Revoking a refresh token revokes its whole grant; revoking
    /// an access token revokes that token.
    ///
    /// # Errors
    /// `invalid_request` for a malformed request, `invalid_client` when
    /// client authentication fails.
    pub async fn revoke(
        &self,
        project: &ProjectId,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<(), OAuthError> {
        let settings = self.project_for_request(project).await?;
        let req = TokenReference::from_form(body)?;
        let client = self
            .authenticate_client(
                project,
                &settings,
                authorization,
                req.client_id.as_deref(),
                req.client_secret.as_deref(),
            )
            .await?;
        let hash = SecretHash::of(&req.token);
        if let Some(access) = self.grants.access_token(project, &hash).await? {
            if access.claims.client_id == client.client_id.as_str() {
                self.grants.revoke_access_token(project, &hash).await?;
                self.emit(
                    project,
                    AuditKind::TokenRevoked {
                        client_id: access.claims.client_id.clone(),
                        grant_id: access.grant_id.to_string(),
                        reason: "revocation_request".to_owned(),
                    },
                )
                .await;
            }
            return Ok(());
        }
        if let Some(refresh) = self.grants.refresh_token(project, &hash).await?
            && refresh.grant.client_id == client.client_id
        {
            self.grants
                .revoke_grant(project, &refresh.grant.id, self.clock.now())
                .await?;
            self.emit(
                project,
                AuditKind::TokenRevoked {
                    client_id: refresh.grant.client_id.to_string(),
                    grant_id: refresh.grant.id.to_string(),
                    reason: "revocation_request".to_owned(),
                },
            )
            .await;
        }
        Ok(())
    }

    /// Token introspection (RFC 7662). The caller must already be
    /// authenticated by the host (a resource server's credential); this
    /// answers for access and refresh tokens of the project.
    ///
    /// # Errors
    /// `invalid_request` for a malformed request.
    pub async fn introspect(&self, project: &ProjectId, body: &[u8]) -> Result<IntrospectionResponse, OAuthError> {
        self.project_for_request(project).await?;
        let req = TokenReference::from_form(body)?;
        Ok(self.introspect_token(project, &req.token).await?)
    }

    /// Introspects one token string.
    ///
    /// # Errors
    /// [`crate::store::StoreError`] when storage fails.
    pub async fn introspect_token(
        &self,
        project: &ProjectId,
        token: &str,
    ) -> Result<IntrospectionResponse, crate::store::StoreError> {
        let now = self.clock.now();
        let hash = SecretHash::of(token);
        if let Some(access) = self.grants.access_token(project, &hash).await? {
            return Ok(if access.revoked || access.is_expired(now) {
                IntrospectionResponse::inactive()
            } else {
                IntrospectionResponse::from_access_token(&access)
            });
        }
        if let Some(refresh) = self.grants.refresh_token(project, &hash).await?
            && !refresh.rotated
            && now < refresh.expires_at
        {
            let settings = self.projects.get(project).await?;
            let issuer = settings.as_ref().map_or(&self.issuer, |s| self.issuer_for(s));
            return Ok(IntrospectionResponse::from_refresh_token(&refresh, issuer.as_str()));
        }
        Ok(IntrospectionResponse::inactive())
    }
}
