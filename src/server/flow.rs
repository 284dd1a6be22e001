//! The authorization-code flow: authorize, approve / deny, token,
//! revocation and introspection.

use time::OffsetDateTime;

use super::EndpointError;
use crate::audit::AuditKind;
use crate::authorize::{
    self, ApprovalError, ApprovalRandomness, AuthorizationRequest, ClientRequestError, PendingAuthorization,
};
use crate::cimd::ClientIdUrlPolicy;
use crate::client::{Client, ClientId};
use crate::client_auth::{ClientAuthError, ClientCredentials, PresentedMethod};
use crate::error::{ErrorCode, OAuthError};
use crate::grant::{AccessTokenRecord, Grant, RefreshTokenRecord, RotationMark, RotationNonce, Subject, hex};
use crate::project::{AccessTokenFormat, ProjectId, ProjectSettings};
use crate::scope::ScopeSet;
use crate::secret::{SecretHash, SecretString};
use crate::store::{CodeConsumption, RefreshRotation, TokenIssuer as _};
use crate::token::{
    self, AccessTokenRandomness, CodeExchange, FoundToken, GrantTypeParam, IntrospectionResponse, Issuance,
    RevocationTarget, TokenError, TokenReference, TokenRequest, TokenResponse,
};

use super::AuthorizationServer;

/// What the authorization endpoint decided.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthorizeOutcome {
    /// Phase 1 failed (unknown client, bad redirect URI, unusable metadata
    /// document, unknown project, a storage failure): show this error to
    /// the user. Never redirect. The page shows
    /// [`EndpointError::to_oauth`]; the host can tell why
    /// ([`EndpointError::kind`], [`EndpointError::reason`],
    /// [`EndpointError::store_error`]). A storage failure is already
    /// logged, once, by the crate ([`crate::store::StoreError::log`]).
    ShowError(EndpointError),
    /// Phase 2 failed: redirect the user agent to this `Location`.
    Redirect(String),
    /// The request is valid: run login and consent, then call
    /// [`AuthorizationServer::approve`] or [`AuthorizationServer::deny`].
    Pending(Box<PendingAuthorization>),
    /// The request is valid and the user signs in at an upstream provider:
    /// set the browser-binding cookie and redirect to `location`.
    UpstreamLogin {
        /// The provider's authorization URL.
        location: String,
        /// The value of the browser-binding cookie (see
        /// [`crate::http::upstream_cookie_name`]).
        browser_binding: crate::secret::SecretString,
        /// The callback URL the provider returns to (the cookie's path).
        callback_uri: String,
    },
}

/// The client-authentication parameters of a form body.
#[derive(Clone, Copy)]
pub(crate) struct ClientParams<'a> {
    pub(crate) client_id: Option<&'a str>,
    pub(crate) client_secret: Option<&'a str>,
    pub(crate) assertion_type: Option<&'a str>,
    pub(crate) assertion: Option<&'a str>,
    /// Who sent the request, for the fetch budgets of a metadata document
    /// or a `jwks_uri` the authentication needs.
    pub(crate) source: Option<&'a crate::cimd::RequestSource>,
}

impl ClientParams<'_> {
    /// The credentials these parameters and the `Authorization` header
    /// present, parsed once per request.
    pub(crate) fn credentials(&self, authorization: Option<&str>) -> Result<ClientCredentials, ClientAuthError> {
        ClientCredentials::parse_with_assertion(
            authorization,
            self.client_id,
            self.client_secret,
            self.assertion_type,
            self.assertion,
        )
    }
}

/// The keys and claims a token response is signed with.
struct Signing {
    access: Option<crate::keys::SigningKey>,
    id: Option<(crate::keys::SigningKey, crate::jwt::UserClaims)>,
}

/// What was presented twice.
#[derive(Clone, Copy)]
enum Reused {
    Code,
    RefreshToken,
}

/// How a token response is minted: when, from which randomness, which
/// refresh token it carries, for which grant type (the audit event) and
/// with which OpenID `nonce` (the ID token).
struct Minting<'a> {
    issued_at: OffsetDateTime,
    random: AccessTokenRandomness,
    /// The refresh token of the response.
    refresh: RefreshPart,
    /// The grant type, for the audit event.
    grant_type: &'static str,
    /// The authorization request's `nonce`, for an ID token.
    nonce: Option<&'a str>,
}

/// The refresh token a token response carries.
enum RefreshPart {
    /// None (client credentials).
    None,
    /// A first one (code exchange), if the project and the client allow it.
    FirstIfAllowed,
    /// This successor of a rotation (stored by the rotation itself).
    Successor(SecretString),
}

/// A token response minted and not yet stored: the records its store call
/// writes and the event recorded once it did.
struct Minted {
    response: TokenResponse,
    access: AccessTokenRecord,
    /// A first refresh token to store (a code exchange); a rotation's
    /// successor is stored by the rotation itself.
    refresh: Option<RefreshTokenRecord>,
    issued: AuditKind,
}

/// Why an approval could not be completed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApproveError {
    /// The approval itself was refused.
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    /// The project is gone.
    #[error("the authorization could not be completed")]
    Server,
    /// Storage failed (logged once, when it became this error); the
    /// client sees `server_error`.
    #[error("the authorization could not be completed: storage failure")]
    Store(#[source] crate::store::StoreError),
}

/// What a token request revealed before it failed, for its audit event.
#[derive(Default)]
struct TokenSeen {
    client_id: Option<ClientId>,
    grant_type: Option<GrantTypeParam>,
    /// Whether client authentication succeeded.
    authenticated: bool,
}

impl ApproveError {
    /// A storage failure: logged ([`crate::store::StoreError::log`]) once here.
    pub(crate) fn from_store(e: crate::store::StoreError) -> Self {
        e.log();
        Self::Store(e)
    }
}

impl AuthorizationServer {
    /// The authorization endpoint: validates `query` in two phases. When
    /// the project selected an upstream provider
    /// ([`crate::upstream::UpstreamSettings::selected`]), a valid request
    /// starts a login there ([`AuthorizeOutcome::UpstreamLogin`]): no local
    /// login remains to bypass it.
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
                return AuthorizeOutcome::ShowError(OAuthError::unknown_project().into());
            }
            Err(e) => return AuthorizeOutcome::ShowError(EndpointError::from(e)),
        };
        // `prompt=none` can be answered only through an upstream login
        // (a silent sign-in there, and remembered consent).
        let allow_prompt_none = settings.upstream.selected.is_some();
        let outcome = self
            .validate_authorization(project, &settings, query, source, allow_prompt_none)
            .await;
        match (outcome, settings.upstream.selected.clone()) {
            (AuthorizeOutcome::Pending(p), Some(provider)) => {
                self.start_upstream_login_from(&settings, *p, &provider, source).await
            }
            (other, _) => other,
        }
    }

    /// Both phases of an authorization request.
    pub(crate) async fn validate_authorization(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        query: &str,
        source: Option<&crate::cimd::RequestSource>,
        allow_prompt_none: bool,
    ) -> AuthorizeOutcome {
        let req = AuthorizationRequest::from_query(query);
        let client = match self.authorization_client(project, settings, &req, source).await {
            Ok(c) => c,
            Err(e) => {
                let id = req
                    .client_id
                    .as_deref()
                    .and_then(|id| ClientId::parse_with(id, self.client_id_url_policy(settings)).ok());
                self.authorization_rejected(project, id.as_ref(), &e.to_oauth(), false)
                    .await;
                return AuthorizeOutcome::ShowError(e);
            }
        };
        crate::trace::record_client(&client.client_id);
        let redirect_uri = match authorize::check_redirect_uri(&req, &client, settings.effective_redirect_uri_policy())
        {
            Ok(r) => r,
            Err(e) => {
                let e = e.to_oauth_error();
                self.authorization_rejected(project, Some(&client.client_id), &e, false)
                    .await;
                return AuthorizeOutcome::ShowError(e.into());
            }
        };
        let issuer = self.issuer_for(settings).as_str();
        match authorize::validate_request_with(
            &req,
            project,
            settings,
            &client,
            redirect_uri,
            self.clock.now(),
            authorize::RequestOptions::new(issuer).allow_prompt_none(allow_prompt_none),
        ) {
            Ok(p) => AuthorizeOutcome::Pending(Box::new(p)),
            Err(e) => {
                if e.error.code() == ErrorCode::InvalidTarget {
                    self.resource_refused(project, &client.client_id, "authorize", e.error.description())
                        .await;
                } else {
                    self.authorization_rejected(project, Some(&client.client_id), &e.error, true)
                        .await;
                }
                AuthorizeOutcome::Redirect(e.location(issuer))
            }
        }
    }

    /// Records `authorization.rejected`, unless the refusal was a storage
    /// failure or is already recorded as a more specific event.
    async fn authorization_rejected(
        &self,
        project: &ProjectId,
        client_id: Option<&ClientId>,
        error: &OAuthError,
        redirected: bool,
    ) {
        if error.code() == ErrorCode::ServerError || error.is_audited() {
            return;
        }
        self.emit(
            project,
            AuditKind::AuthorizationRejected {
                client_id: client_id.map(ToString::to_string),
                error: error.code().as_str().to_owned(),
                reason: error.reason().unwrap_or(error.code().as_str()).to_owned(),
                redirected,
                client_authenticated: false,
            },
        )
        .await;
    }

    async fn authorization_client(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        req: &AuthorizationRequest,
        source: Option<&crate::cimd::RequestSource>,
    ) -> Result<Client, EndpointError> {
        let id = authorize::parse_client_id(req, settings, self.client_id_url_policy(settings))
            .map_err(|e| e.to_oauth_error())?;
        self.resolve_client_from(project, settings, &id, source, "authorize")
            .await
    }

    pub(crate) fn client_id_url_policy(&self, settings: &ProjectSettings) -> ClientIdUrlPolicy {
        settings.cimd.url_policy
    }

    /// Resolves a client id to a client: the client store for registered
    /// ids, the metadata-document resolver for URLs (a first fetch limited
    /// per `source` too). `endpoint` names the step for the audit event of
    /// a disabled client.
    pub(crate) async fn resolve_client_from(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        id: &ClientId,
        source: Option<&crate::cimd::RequestSource>,
        endpoint: &str,
    ) -> Result<Client, EndpointError> {
        match id {
            ClientId::Registered(r) => {
                let client = self
                    .clients
                    .get(project, r)
                    .await?
                    .ok_or_else(|| ClientRequestError::UnknownClient.to_oauth_error())?;
                if client.is_disabled() {
                    self.disabled_client_refused(project, id, endpoint).await;
                    return Err(ClientRequestError::DisabledClient.to_oauth_error().audited().into());
                }
                Ok(client)
            }
            ClientId::Metadata(url) => self
                .resolve_cimd_client_from(project, settings, url, source)
                .await
                .map_err(|e| {
                    // Recorded as `oauth_client.cimd_fetch_failed`.
                    EndpointError::from(
                        ClientRequestError::ClientMetadataUnavailable {
                            reason: e.reason().into(),
                        }
                        .to_oauth_error()
                        .audited(),
                    )
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
        crate::trace::record_project(&project);
        crate::trace::record_client(&pending.client_id);
        let settings = self
            .projects
            .get(&project)
            .await
            .map_err(ApproveError::from_store)?
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
            .map_err(ApproveError::from_store)?;
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
        if self.recent.enabled() {
            self.recent.put_code(approval.record);
        }
        Ok(approval.location)
    }

    /// Denies a pending authorization: records `authorization.denied` and
    /// returns the redirect `Location` (`error=access_denied`). Consumes
    /// `pending`: one authorization is answered once.
    pub async fn deny(&self, pending: PendingAuthorization) -> String {
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
    /// An [RFC 6749 section 5.2] error.
    ///
    /// [RFC 6749 section 5.2]: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
    pub async fn token(
        &self,
        project: &ProjectId,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<TokenResponse, EndpointError> {
        self.token_from(project, authorization, body, None).await
    }

    /// [`Self::token`] for a request from `source` (the client IP as the
    /// HTTP edge knows it): a metadata document or `jwks_uri` that client
    /// authentication must fetch for the first time is also limited per
    /// source ([`crate::cimd::FetchLimits`]).
    ///
    /// # Errors
    /// As [`Self::token`].
    pub async fn token_from(
        &self,
        project: &ProjectId,
        authorization: Option<&str>,
        body: &[u8],
        source: Option<&crate::cimd::RequestSource>,
    ) -> Result<TokenResponse, EndpointError> {
        let mut seen = TokenSeen::default();
        let result = self.token_steps(project, authorization, body, source, &mut seen).await;
        if let Err(e) = &result
            && e.code() != ErrorCode::ServerError
            && !e.is_audited()
        {
            self.emit(
                project,
                AuditKind::TokenRejected {
                    client_id: seen.client_id.map(|id| id.to_string()),
                    grant_type: seen.grant_type.map(|g| g.as_str().to_owned()),
                    error: e.code().as_str().to_owned(),
                    reason: e.reason().unwrap_or(e.code().as_str()).to_owned(),
                    client_authenticated: seen.authenticated,
                },
            )
            .await;
        }
        result
    }

    async fn token_steps(
        &self,
        project: &ProjectId,
        authorization: Option<&str>,
        body: &[u8],
        source: Option<&crate::cimd::RequestSource>,
        seen: &mut TokenSeen,
    ) -> Result<TokenResponse, EndpointError> {
        // No project, nothing to record (an unknown project has no log).
        let settings = self
            .project_for_request(project)
            .await
            .map_err(EndpointError::audited)?;
        let req = TokenRequest::from_form(body)?;
        seen.client_id = req
            .client_id
            .as_deref()
            .and_then(|id| ClientId::parse_with(id, self.client_id_url_policy(&settings)).ok());
        if let Some(id) = &seen.client_id {
            crate::trace::record_client(id);
        }
        let grant_type = req.grant_type()?;
        seen.grant_type = Some(grant_type);
        let params = ClientParams {
            client_id: req.client_id.as_deref(),
            client_secret: req.client_secret.as_ref().map(SecretString::expose_secret),
            assertion_type: req.client_assertion_type.as_deref(),
            assertion: req.client_assertion.as_ref().map(SecretString::expose_secret),
            source,
        };
        let creds = params.credentials(authorization);
        // HTTP Basic or an assertion's `sub` name the client when the form does not.
        seen.client_id = seen.client_id.take().or_else(|| {
            let creds = creds.as_ref().ok()?;
            ClientId::parse_with(creds.client_id(), self.client_id_url_policy(&settings)).ok()
        });
        let client = self
            .authenticate_parsed_client(project, &settings, authorization.is_some(), params, creds)
            .await?;
        crate::trace::record_client(&client.client_id);
        seen.client_id = Some(client.client_id.clone());
        seen.authenticated = true;
        let result = match grant_type {
            GrantTypeParam::AuthorizationCode => self.exchange_code(project, &settings, &client, &req).await,
            GrantTypeParam::RefreshToken => self.refresh(project, &settings, &client, &req).await,
            GrantTypeParam::ClientCredentials => self.client_credentials(project, &settings, &client, &req).await,
        };
        if let Err(e) = &result
            && e.code() == ErrorCode::InvalidTarget
        {
            self.resource_refused(project, &client.client_id, "token", e.description())
                .await;
            return result.map_err(EndpointError::audited);
        }
        result
    }

    /// Records `resource.refused`: a request named a resource the project
    /// does not accept (or a malformed one, or none where one is
    /// required).
    async fn resource_refused(
        &self,
        project: &ProjectId,
        client_id: &ClientId,
        endpoint: &str,
        description: Option<&str>,
    ) {
        self.emit(
            project,
            AuditKind::ResourceRefused {
                client_id: client_id.to_string(),
                endpoint: endpoint.to_owned(),
                detail: description.unwrap_or_default().to_owned(),
                // The token endpoint refuses resources after client
                // authentication; an authorization request has none.
                client_authenticated: endpoint == "token",
            },
        )
        .await;
    }

    /// The client credentials grant: the client acts for itself (`sub` is
    /// its id); an access token only, never a refresh token.
    async fn client_credentials(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        client: &Client,
        req: &TokenRequest,
    ) -> Result<TokenResponse, EndpointError> {
        let issuance = token::check_client_credentials(client, req, settings)?;
        let now = self.clock.now();
        let subject = Subject::new(client.client_id.as_str()).map_err(|_| OAuthError::server_error())?;
        let grant = Grant {
            id: crate::grant::GrantId::from_random(&self.random_array()),
            project: project.clone(),
            client_id: client.client_id.clone(),
            subject,
            scopes: issuance.scopes.clone(),
            resources: issuance.resources.clone(),
            granted_at: now,
        };
        let minting = Minting {
            issued_at: now,
            random: AccessTokenRandomness::new(self.random_array(), self.random_array()),
            refresh: RefreshPart::None,
            grant_type: "client_credentials",
            nonce: None,
        };
        // No user, so never an ID token; a JWT project signs the access token.
        let mut signing = self.prepare_signing(settings, &grant, &issuance).await?;
        signing.id = None;
        let minted = self
            .mint_tokens(settings, client, &grant, &issuance, minting, signing)
            .await?;
        self.store_minted(&grant.project, minted, false).await
    }

    pub(crate) async fn project_for_request(&self, project: &ProjectId) -> Result<ProjectSettings, EndpointError> {
        self.projects
            .get(project)
            .await?
            .ok_or_else(|| OAuthError::unknown_project().into())
    }

    /// Client authentication at the token and revocation endpoints:
    /// registered clients by their registered method, metadata-document
    /// clients (public) by `client_id` alone, `private_key_jwt` clients of
    /// either kind by their assertion. Any failure is one generic
    /// `invalid_client` (a CIMD failure included: CIMD draft, section 6).
    pub(crate) async fn authenticate_client(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        authorization: Option<&str>,
        params: ClientParams<'_>,
    ) -> Result<Client, EndpointError> {
        let creds = params.credentials(authorization);
        self.authenticate_parsed_client(project, settings, authorization.is_some(), params, creds)
            .await
    }

    /// [`AuthorizationServer::authenticate_client`] with the credentials
    /// already parsed ([`ClientParams::credentials`]); `used_header`: an
    /// `Authorization` header was sent.
    async fn authenticate_parsed_client(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        used_header: bool,
        params: ClientParams<'_>,
        creds: Result<ClientCredentials, ClientAuthError>,
    ) -> Result<Client, EndpointError> {
        let creds = match creds.map_err(|e| e.to_oauth_error(used_header)) {
            Ok(c) => c,
            Err(e) => {
                if params.assertion.is_some() || params.assertion_type.is_some() {
                    self.emit(
                        project,
                        AuditKind::ClientAssertionRejected {
                            // Only a well-formed client id reaches the audit log.
                            client_id: params
                                .client_id
                                .and_then(|id| ClientId::parse_with(id, self.client_id_url_policy(settings)).ok())
                                .map(|id| id.to_string())
                                .unwrap_or_default(),
                            reason: "malformed".to_owned(),
                            client_authenticated: false,
                        },
                    )
                    .await;
                    return Err(e.audited().into());
                }
                return Err(e.into());
            }
        };
        let invalid = || ClientAuthError::UnknownClient.to_oauth_error(used_header);
        let id = ClientId::parse_with(creds.client_id(), self.client_id_url_policy(settings)).map_err(|_| invalid())?;
        if creds.method() == PresentedMethod::PrivateKeyJwt {
            return self
                .authenticate_with_assertion(project, settings, &id, &creds, params.source)
                .await;
        }
        match id {
            ClientId::Registered(_) => self.authenticate_registered_client(project, &creds).await,
            ClientId::Metadata(_) => {
                crate::client_auth::check_document_credentials(&creds)
                    .map_err(|e| EndpointError::from(e.to_oauth_error(used_header)))?;
                let client = self
                    .resolve_client_from(project, settings, &id, params.source, "client_authentication")
                    .await
                    .map_err(|e| match e.code() {
                        ErrorCode::ServerError => e,
                        _ if e.is_audited() => invalid().audited().into(),
                        _ => invalid().into(),
                    })?;
                // A confidential (private_key_jwt) document client must
                // present an assertion (handled above).
                crate::client_auth::check_document_client(&client)
                    .map_err(|e| EndpointError::from(e.to_oauth_error(used_header)))?;
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
    ) -> Result<TokenResponse, EndpointError> {
        let code = req
            .code
            .as_ref()
            .map(SecretString::expose_secret)
            .ok_or(TokenError::MissingParameter("code"))?;
        let hash = SecretHash::of(code);
        // A code this server just stored is not read back: its record
        // never changes, and whether it was consumed (or its grant
        // revoked) meanwhile, here or elsewhere, the consume below decides.
        let kept = self.recent.take_code(project, &hash);
        let from_copy = kept.is_some();
        let record = match kept {
            Some(record) => record,
            None => self
                .grants
                .code(project, &hash)
                .await?
                .ok_or(TokenError::InvalidGrant("authorization code"))?,
        };
        // Every check before any state change: an invalid replay neither
        // consumes the code nor revokes anything.
        let decided_at = self.clock.now();
        let issuance = match token::decide_code_exchange(&record, &client.client_id, req, settings, decided_at)? {
            CodeExchange::Redeem(issuance) => issuance,
            CodeExchange::Replay => return Err(self.reuse_detected(project, &record.grant, Reused::Code).await),
        };
        // Keys, user claims and the tokens themselves before the code is
        // consumed: a failure here leaves the code redeemable. (A code's
        // grant never changes, so the record read above is the one the
        // consume returns.)
        let signing = self.prepare_signing(settings, &record.grant, &issuance).await?;
        let minting = Minting {
            issued_at: self.clock.now(),
            random: AccessTokenRandomness::new(self.random_array(), self.random_array()),
            refresh: RefreshPart::FirstIfAllowed,
            grant_type: "authorization_code",
            nonce: record.nonce.as_deref(),
        };
        let minted = self
            .mint_tokens(settings, client, &record.grant, &issuance, minting, signing)
            .await?;
        // One store call consumes the code and stores the tokens: only
        // the winner of a concurrent redemption stores any. The time is
        // read again: a code that expired while the tokens were minted is
        // not consumed (`NotFound`, so `invalid_grant`).
        let first_refresh = minted.refresh.as_ref().filter(|_| self.recent.enabled()).cloned();
        match self
            .grants
            .consume_code_issuing(project, &hash, self.clock.now(), minted.refresh, minted.access)
            .await?
        {
            CodeConsumption::Consumed(_) => {
                if let Some(refresh) = first_refresh {
                    self.recent.put_refresh(refresh);
                }
                self.emit(project, minted.issued).await;
                Ok(minted.response)
            }
            // Decided from a kept copy: decide as the read it saved would
            // have, at the same time (that read hides codes of revoked
            // grants, and checks expiry before replay), so a code of a
            // grant revoked meanwhile is a plain `invalid_grant`, not a
            // replay. (Were the signing
            // or minting above to fail for a code consumed elsewhere, the
            // error is answered and the replay is detected at the next
            // presentation, which reads the store.)
            CodeConsumption::AlreadyConsumed(_) if from_copy => match self.grants.code(project, &hash).await? {
                Some(r)
                    if token::decide_code_exchange(&r, &client.client_id, req, settings, decided_at)?
                        == CodeExchange::Replay =>
                {
                    Err(self.reuse_detected(project, &r.grant, Reused::Code).await)
                }
                _ => Err(TokenError::InvalidGrant("authorization code").into()),
            },
            CodeConsumption::AlreadyConsumed(record) => {
                Err(self.reuse_detected(project, &record.grant, Reused::Code).await)
            }
            _ => Err(TokenError::InvalidGrant("authorization code").into()),
        }
    }

    /// A replayed code or a reused refresh token: revoke the whole grant,
    /// record the detection and the revocation, answer `invalid_grant`.
    async fn reuse_detected(&self, project: &ProjectId, grant: &Grant, what: Reused) -> EndpointError {
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
        if let Err(e) = revoked {
            return e.into();
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
        // Recorded as the reuse detection.
        EndpointError::from(OAuthError::from(TokenError::InvalidGrant(token)).audited())
    }

    async fn refresh(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        client: &Client,
        req: &TokenRequest,
    ) -> Result<TokenResponse, EndpointError> {
        let raw = req
            .refresh_token
            .as_ref()
            .map(SecretString::expose_secret)
            .ok_or(TokenError::MissingParameter("refresh_token"))?;
        if !settings.issues_refresh_tokens() {
            // The project stopped issuing refresh tokens: existing ones stop working.
            return Err(TokenError::InvalidGrant("refresh token").into());
        }
        let now = self.clock.now();
        let hash = SecretHash::of(raw);
        // A token this server just issued is not read back: its record
        // never changes, and whether it was rotated (or its grant revoked)
        // meanwhile, here or elsewhere, the rotation below decides.
        let record = match self.recent.take_refresh(project, &hash) {
            Some(record) => record,
            None => self
                .grants
                .refresh_token(project, &hash)
                .await?
                .ok_or(TokenError::InvalidGrant("refresh token"))?,
        };
        // Every check before any state change (a reuse is decided by the
        // store call below, against the committed state).
        let issuance = token::decide_refresh(&record, client, req, settings, now)?;
        // Keys and user claims before the rotation: a failure here leaves
        // the refresh token usable.
        let signing = self.prepare_signing(settings, &record.grant, &issuance).await?;
        let nonce = RotationNonce::from_random(self.random_array());
        let successor = token::successor_refresh_token(raw, &nonce);
        let new_record = token::successor_record(&record, successor.hash(), now, settings.refresh_token_ttl);
        let successor_hash = successor.hash();
        let grace = settings.effective_refresh_reuse_grace();
        // The response is minted before the rotation (rotation never
        // changes a token's grant), so one store call rotates and stores
        // the access token: only the winner of concurrent rotations does.
        // An ID token again only while `openid` is still granted, and
        // never with the original nonce.
        let minting = Minting {
            issued_at: now,
            random: AccessTokenRandomness::for_rotation(raw, &nonce, &issuance),
            refresh: RefreshPart::Successor(successor),
            grant_type: "refresh_token",
            nonce: None,
        };
        let minted = self
            .mint_tokens(settings, client, &record.grant, &issuance, minting, signing)
            .await?;
        // The rotation's time is read again: a token that expired while
        // the tokens were minted is not rotated (`NotFound`, so
        // `invalid_grant`).
        let mark =
            RotationMark::new(self.clock.now(), nonce, successor_hash).with_issuance(token::issuance_digest(&issuance));
        let successor_record = self.recent.enabled().then(|| new_record.clone());
        match self
            .grants
            .rotate_refresh_token_issuing(project, &hash, new_record, mark, grace, minted.access)
            .await?
        {
            RefreshRotation::Rotated(_) => {
                if let Some(successor) = successor_record {
                    self.recent.put_refresh(successor);
                }
                self.emit(project, minted.issued).await;
                Ok(minted.response)
            }
            RefreshRotation::WithinGrace(old) => {
                // Rare (a concurrent refresh): the keys and claims again,
                // the minted ones went with the lost rotation.
                let signing = self.prepare_signing(settings, &old.grant, &issuance).await?;
                self.replay_rotation(settings, client, &old, raw, &issuance, signing)
                    .await
            }
            RefreshRotation::AlreadyRotated(old) => {
                Err(self.reuse_detected(project, &old.grant, Reused::RefreshToken).await)
            }
            _ => Err(TokenError::InvalidGrant("refresh token").into()),
        }
    }

    /// A concurrent refresh within the grace: re-derive the successor and
    /// the access token of the first rotation from the presented token and
    /// the recorded nonce, and answer with the same pair.
    async fn replay_rotation(
        &self,
        settings: &ProjectSettings,
        client: &Client,
        old: &RefreshTokenRecord,
        raw: &str,
        issuance: &Issuance,
        signing: Signing,
    ) -> Result<TokenResponse, EndpointError> {
        let project = &old.grant.project;
        let (Some(mark), Some(successor)) = (
            old.rotation.as_ref(),
            token::replayed_successor(old.rotation.as_ref(), raw, issuance),
        ) else {
            return Err(self.reuse_detected(project, &old.grant, Reused::RefreshToken).await);
        };
        self.emit(
            project,
            AuditKind::RefreshTokenConcurrentReuse {
                client_id: old.grant.client_id.to_string(),
                grant_id: old.grant.id.to_string(),
                after_seconds: (self.clock.now() - mark.at).whole_seconds(),
            },
        )
        .await;
        let minting = Minting {
            issued_at: mark.at,
            random: AccessTokenRandomness::for_rotation(raw, &mark.nonce, issuance),
            refresh: RefreshPart::Successor(successor),
            grant_type: "refresh_token",
            nonce: None,
        };
        let minted = self
            .mint_tokens(settings, client, &old.grant, issuance, minting, signing)
            .await?;
        self.store_minted(project, minted, true).await
    }

    fn new_refresh_token(
        &self,
        settings: &ProjectSettings,
        grant: &Grant,
        now: OffsetDateTime,
    ) -> (SecretString, RefreshTokenRecord) {
        let token = SecretString::random_with_prefix("rt_", &self.random_array::<32>());
        let record = token::refresh_token_record(
            token.hash(),
            grant.clone(),
            grant.scopes.clone(),
            grant.resources.clone(),
            now,
            settings.refresh_token_ttl,
        );
        (token, record)
    }

    /// What signing a token response needs, gathered before any state
    /// changes: the access-token key (JWT projects), the ID-token key and
    /// the user's claims (when `openid` is granted).
    async fn prepare_signing(
        &self,
        settings: &ProjectSettings,
        grant: &Grant,
        issuance: &Issuance,
    ) -> Result<Signing, EndpointError> {
        let project = &grant.project;
        let access = match settings.access_token_format {
            AccessTokenFormat::Jwt => {
                if issuance.resources.is_empty() {
                    // RFC 9068 section 2.2: `aud` is required.
                    return Err(OAuthError::with_description(
                        ErrorCode::InvalidTarget,
                        "a resource is required for JWT access tokens",
                    )
                    .into());
                }
                Some(
                    self.signing_key(project, settings, settings.signing.access_token_algorithm)
                        .await?,
                )
            }
            _ => None,
        };
        let id = if issuance.scopes.contains("openid") {
            let key = self
                .signing_key(project, settings, settings.signing.id_token_algorithm)
                .await?;
            let claims = self.user_claims.claims(project, &grant.subject).await?;
            Some((key, claims))
        } else {
            None
        };
        Ok(Signing { access, id })
    }

    /// Stores what [`Self::mint_tokens`] minted for a client-credentials
    /// grant or a replayed rotation (within the reuse grace, `replay`):
    /// the access token unless the first rotation did; records
    /// `token.issued`.
    async fn store_minted(
        &self,
        project: &ProjectId,
        minted: Minted,
        replay: bool,
    ) -> Result<TokenResponse, EndpointError> {
        let stored = self.grants.access_token(project, &minted.access.hash).await?;
        if replay && !token::replayed_access_token_usable(stored.as_ref(), &minted.access.claims) {
            // The first rotation stored this token already (or is about
            // to); never overwrite it: a revoked one stays revoked.
            return Err(TokenError::InvalidGrant("refresh token").into());
        }
        if let Some(record) = minted.refresh {
            self.grants.insert_refresh_token(record).await?;
        }
        self.emit(project, minted.issued).await;
        if stored.is_none() {
            self.grants.insert_access_token(minted.access).await?;
        }
        Ok(minted.response)
    }

    /// Mints the access token (and, after a code exchange, the first
    /// refresh token; with `openid`, the ID token) and the records and
    /// `token.issued` event that go with them; stores nothing.
    async fn mint_tokens(
        &self,
        settings: &ProjectSettings,
        client: &Client,
        grant: &Grant,
        issuance: &Issuance,
        minting: Minting<'_>,
        signing: Signing,
    ) -> Result<Minted, EndpointError> {
        let now = self.clock.now();
        let claims = token::access_token_claims(
            self.issuer_for(settings).as_str(),
            grant,
            issuance,
            settings.access_token_ttl,
            hex(&minting.random.jti),
            minting.issued_at,
        );
        let access = match signing.access {
            Some(key) => {
                crate::jwt::JwtAccessTokenIssuer::new(key)
                    .issue(&claims, &minting.random.token)
                    .await?
            }
            None => self.token_issuer.issue(&claims, &minting.random.token).await?,
        };
        let id_token = match signing.id {
            Some((key, user)) => {
                let id_claims = crate::jwt::id_token_claims(
                    &claims.iss,
                    grant,
                    &issuance.scopes,
                    crate::jwt::IdTokenBinding {
                        access_token: access.expose_secret(),
                        nonce: minting.nonce,
                    },
                    &user,
                    settings.access_token_ttl,
                    minting.issued_at,
                );
                Some(crate::jwt::sign_id_token(&key, &id_claims)?)
            }
            None => None,
        };
        let refresh = match minting.refresh {
            RefreshPart::Successor(r) => (Some(r), None),
            RefreshPart::FirstIfAllowed if settings.issues_refresh_tokens() && client.metadata.allows_refresh() => {
                let (token, record) = self.new_refresh_token(settings, grant, now);
                (Some(token), Some(record))
            }
            RefreshPart::FirstIfAllowed | RefreshPart::None => (None, None),
        };
        let issued = AuditKind::TokenIssued {
            client_id: grant.client_id.to_string(),
            subject: grant.subject.as_str().to_owned(),
            grant_id: grant.id.to_string(),
            grant_type: minting.grant_type.to_owned(),
            scope: claims.scope.clone(),
            audience: claims.aud.clone(),
        };
        let response = TokenResponse::bearer(&access, &claims, now, refresh.0.as_ref(), id_token);
        Ok(Minted {
            response,
            access: AccessTokenRecord {
                hash: access.hash(),
                project: grant.project.clone(),
                grant_id: grant.id.clone(),
                claims,
                revoked: false,
            },
            refresh: refresh.1,
            issued,
        })
    }

    /// Token revocation ([RFC 7009]). Unknown tokens, and tokens of other
    /// clients, are answered with success and left alone (no token
    /// probing). Revoking a refresh token revokes its whole grant; revoking
    /// an access token revokes that token.
    ///
    /// # Errors
    /// `invalid_request` for a malformed request, `invalid_client` when
    /// client authentication fails.
    ///
    /// [RFC 7009]: https://www.rfc-editor.org/rfc/rfc7009
    pub async fn revoke(
        &self,
        project: &ProjectId,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<(), EndpointError> {
        let settings = self.project_for_request(project).await?;
        let req = TokenReference::from_form(body)?;
        let client = self
            .authenticate_client(
                project,
                &settings,
                authorization,
                ClientParams {
                    client_id: req.client_id.as_deref(),
                    client_secret: req.client_secret.as_ref().map(SecretString::expose_secret),
                    assertion_type: req.client_assertion_type.as_deref(),
                    assertion: req.client_assertion.as_ref().map(SecretString::expose_secret),
                    source: None,
                },
            )
            .await?;
        let hash = req.token.hash();
        if let Some(access) = self.grants.access_token(project, &hash).await? {
            if token::revocation_target(FoundToken::Access(&access), &client.client_id) == RevocationTarget::AccessToken
            {
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
            && let RevocationTarget::Grant(grant_id) =
                token::revocation_target(FoundToken::Refresh(&refresh), &client.client_id)
        {
            self.grants.revoke_grant(project, &grant_id, self.clock.now()).await?;
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

    /// Token introspection ([RFC 7662]). The caller must already be
    /// authenticated by the host (a resource server's credential); this
    /// answers for access and refresh tokens of the project. A token of a
    /// registered client that was disabled or deleted is inactive.
    ///
    /// # Errors
    /// `invalid_request` for a malformed request.
    ///
    /// [RFC 7662]: https://www.rfc-editor.org/rfc/rfc7662
    pub async fn introspect(&self, project: &ProjectId, body: &[u8]) -> Result<IntrospectionResponse, EndpointError> {
        self.project_for_request(project).await?;
        let req = TokenReference::from_form(body)?;
        Ok(self.introspect_token(project, req.token.expose_secret()).await?)
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
            return Ok(
                if !token::access_token_active(&access, now)
                    || !self.client_active(project, &access.claims.client_id).await?
                {
                    IntrospectionResponse::inactive()
                } else {
                    IntrospectionResponse::from_access_token(&access)
                },
            );
        }
        if let Some(refresh) = self.grants.refresh_token(project, &hash).await?
            && token::refresh_token_active(&refresh, now)
            && self.client_active(project, refresh.grant.client_id.as_str()).await?
        {
            let settings = self.projects.get(project).await?;
            let issuer = settings.as_ref().map_or(&self.issuer, |s| self.issuer_for(s));
            return Ok(IntrospectionResponse::from_refresh_token(&refresh, issuer.as_str()));
        }
        Ok(IntrospectionResponse::inactive())
    }
}

impl AuthorizationServer {
    /// Whether the tokens of `client_id` may still be used: a registered
    /// client must exist and not be disabled (metadata-document clients
    /// are not stored, so always). Asked by introspection and userinfo on
    /// every token, through [`crate::store::ClientStore::client_uncached`]
    /// (a client cache is bypassed), so a disabled or deleted client's
    /// tokens stop working at once, on every instance. (With a client
    /// cache, the client itself may still authenticate and obtain new
    /// tokens elsewhere for up to the cache's TTL; see
    /// [`crate::store::CachedClientStore`].)
    pub(crate) async fn client_active(
        &self,
        project: &ProjectId,
        client_id: &str,
    ) -> Result<bool, crate::store::StoreError> {
        let stored = match crate::client::RegisteredClientId::new(client_id) {
            Ok(id) => self.clients.client_uncached(project, &id).await?,
            Err(_) => None,
        };
        Ok(token::client_tokens_usable(client_id, stored.as_ref()))
    }

    /// Records `oauth_client.disabled_refused`.
    pub(crate) async fn disabled_client_refused(&self, project: &ProjectId, client_id: &ClientId, endpoint: &str) {
        self.emit(
            project,
            AuditKind::DisabledClientRefused {
                client_id: client_id.to_string(),
                endpoint: endpoint.to_owned(),
            },
        )
        .await;
    }
}
