//! Dynamic Client Registration ([RFC 7591]) and initial access tokens: the
//! driver. Every rule lives in [`crate::dcr`]; this file sequences the
//! stores around it.
//!
//! # Order of a registration
//!
//! 1. The project's DCR mode gates the request (`disabled`: 403
//!    `access_denied`).
//! 2. The initial access token, when required or presented, is parsed and
//!    looked up (read only). Any failure: 401 `invalid_token`, no detail.
//! 3. The metadata is validated under the token's pins (pure). A refused
//!    request burns no use.
//! 4. The per-project client quota is checked.
//! 5. The use is counted by ONE atomic store call
//!    ([`crate::store::IatStore::use_once`]), which re-checks the token:
//!    under concurrency only `max_uses` requests get past this step.
//! 6. The client is minted and inserted.
//!
//! If storing the client fails after step 5, the use stays counted: a
//! refund is not atomic with the failed insert and could let a token
//! exceed `max_uses`, so the failure is on the safe side (the operator can
//! issue another token). The request gets `server_error`.
//!
//! [RFC 7591]: https://www.rfc-editor.org/rfc/rfc7591

use std::net::IpAddr;

use super::EndpointError;
use crate::audit::AuditKind;
use crate::dcr::{
    CLIENT_SECRET_RANDOM_BYTES, IAT_RANDOM_BYTES, IatError, IatId, IatOptions, IatRecord, IatView, Registration,
    RegistrationError, RegistrationResponse, parse_bearer, validate_request,
};
use crate::error::OAuthError;
use crate::project::{DcrMode, ProjectId, ProjectSettings};
use crate::secret::SecretString;
use crate::store::{RevokeOutcome, StoreError, UseOutcome};
use crate::tokenless::{self, NotAdmitted};

use super::{AdminError, AuthorizationServer};

/// Attempts at drawing an unused id before giving up with a storage error.
const ID_ATTEMPTS: usize = 4;

/// An initial access token just issued. `token` is the only copy of the raw
/// token: hand it to the client out of band, then drop it. `Debug`
/// redacts it.
#[derive(Debug)]
#[non_exhaustive]
pub struct IssuedIat {
    /// The id (for listing and revocation).
    pub id: IatId,
    /// The raw `iatk_...` token, shown once.
    pub token: SecretString,
    /// The stored record, as listed.
    pub view: IatView,
}

/// A refused registration, before rendering.
enum Failure {
    Refused(RegistrationError, Option<IatId>),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn refused(error: impl Into<RegistrationError>, iat: Option<&IatRecord>) -> Failure {
    Failure::Refused(error.into(), iat.map(|r| r.id.clone()))
}

impl AuthorizationServer {
    /// Issues an initial access token for a project (the dashboard's
    /// "Issue IAT") and records `initial_access_token.issued`. The raw
    /// token is in the result only; the store keeps its hash.
    ///
    /// # Errors
    /// [`AdminError::UnknownProject`], [`AdminError::InvalidIatOptions`] or
    /// [`AdminError::Store`].
    pub async fn issue_iat(&self, project: &ProjectId, options: IatOptions) -> Result<IssuedIat, AdminError> {
        self.project(project).await?;
        let now = self.now();
        for _ in 0..ID_ATTEMPTS {
            let mut id_random = [0u8; 8];
            let mut token_random = [0u8; IAT_RANDOM_BYTES];
            self.random.fill(&mut id_random);
            self.random.fill(&mut token_random);
            let (record, token) = IatRecord::issue(options.clone(), &id_random, &token_random, now)
                .map_err(AdminError::InvalidIatOptions)?;
            let view = record.view(now);
            if self.iats.insert(project, record).await? {
                self.emit(
                    project,
                    AuditKind::IatIssued {
                        iat_id: view.id.to_string(),
                        label: view.label.clone(),
                        max_uses: view.max_uses,
                        expires_at: view.expires_at,
                    },
                )
                .await;
                return Ok(IssuedIat {
                    id: view.id.clone(),
                    token,
                    view,
                });
            }
        }
        Err(StoreError::new("could not draw an unused initial access token id").into())
    }

    /// The initial access tokens of a project, oldest first, without
    /// tokens or hashes.
    ///
    /// # Errors
    /// [`AdminError::UnknownProject`] or [`AdminError::Store`].
    pub async fn list_iats(&self, project: &ProjectId) -> Result<Vec<IatView>, AdminError> {
        self.project(project).await?;
        let now = self.now();
        let mut views: Vec<IatView> = self.iats.list(project).await?.iter().map(|r| r.view(now)).collect();
        views.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(views)
    }

    /// Revokes an initial access token and records
    /// `initial_access_token.revoked`. Revoking a revoked token changes
    /// nothing and records nothing.
    ///
    /// # Errors
    /// [`AdminError::UnknownIat`] (also for a token of another project) or
    /// [`AdminError::Store`].
    pub async fn revoke_iat(&self, project: &ProjectId, id: &IatId) -> Result<IatView, AdminError> {
        let now = self.now();
        match self.iats.revoke(project, id, now).await? {
            RevokeOutcome::Revoked(record) => {
                self.emit(
                    project,
                    AuditKind::IatRevoked {
                        iat_id: record.id.to_string(),
                    },
                )
                .await;
                Ok(record.view(now))
            }
            RevokeOutcome::AlreadyRevoked(record) => Ok(record.view(now)),
            RevokeOutcome::Unknown => Err(AdminError::UnknownIat),
        }
    }

    /// Deletes every initial access token that can no longer be used
    /// (expired, exhausted or revoked), in every project; returns how many.
    /// Run it now and then to keep the store bounded.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn purge_iats(&self) -> Result<usize, StoreError> {
        self.iats.purge(self.now()).await
    }

    /// The registration endpoint ([RFC 7591 section 3]): `authorization` is
    /// the raw `Authorization` header value, `body` the JSON request body.
    /// On success, answer [`RegistrationResponse::to_response`] (201).
    ///
    /// The project's [`DcrMode`] gates the request:
    /// - `disabled`: 403 `access_denied` ("dynamic client registration is
    ///   disabled for this project"), whatever the token;
    /// - `initial_access_token`: a usable initial access token is required;
    /// - `open`: no token needed, but a token that is sent must be usable,
    ///   and its pins apply. A registration without a token is anonymous:
    ///   its metadata must be compact
    ///   ([`crate::dcr::MAX_ANONYMOUS_METADATA_BYTES`], else 400
    ///   `invalid_client_metadata`) and it is rate-limited per source
    ///   (an IPv4 address, an IPv6 /64), per wider network and per project
    ///   with the rates of the project's
    ///   [`crate::tokenless::TokenlessRegistration`] (403 `access_denied`
    ///   beyond them; use [`AuthorizationServer::register_client_from`]
    ///   with the request's source address: without one, every such
    ///   request shares one window).
    ///
    /// A missing, malformed, unknown, expired, exhausted or revoked token
    /// (also one of another project) gets 401 `invalid_token` with
    /// `WWW-Authenticate: Bearer error="invalid_token"` and the same
    /// description for every reason. Records `initial_access_token.used`,
    /// `oauth_client.registered` or `oauth_client.registration_rejected`.
    /// See the module docs for the order of the checks.
    ///
    /// # Examples
    ///
    /// The seed guide's Step 3b: the dashboard issues a token pinned to
    /// `none`, the MCP client registers with it and gets no secret.
    ///
    /// ```
    /// use authio_mcp::dcr::IatOptions;
    /// use authio_mcp::issuer::Issuer;
    /// use authio_mcp::project::{ProjectId, ProjectSettings};
    /// use authio_mcp::server::AuthorizationServer;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = AuthorizationServer::builder(Issuer::new("https://auth-api.authio.com")?).build();
    /// let project = ProjectId::new("proj_acme_prod")?;
    /// server.put_project(&project, ProjectSettings::default()).await?;
    /// server.set_mcp_enabled(&project, true).await?; // DCR mode: initial_access_token
    ///
    /// let issued = server.issue_iat(&project, IatOptions::new()).await?;
    /// let header = format!("Bearer {}", issued.token.expose_secret());
    /// let body = br#"{"redirect_uris": ["https://my-mcp-server.example.com/oauth/callback"],
    ///                 "client_name": "My MCP Server", "token_endpoint_auth_method": "none",
    ///                 "application_type": "web"}"#;
    /// let registered = server.register_client(&project, Some(&header), body).await?;
    /// let response = registered.to_response();
    /// assert_eq!(response.status(), 201);
    /// assert!(registered.client_secret.is_none());
    ///
    /// // Without the token: 401 invalid_token with a Bearer challenge.
    /// let refused = server.register_client(&project, None, body).await.unwrap_err();
    /// assert_eq!(refused.to_response().status(), 401);
    /// # Ok(()) }
    /// # futures_executor::block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// The above; 400 `invalid_client_metadata` / `invalid_redirect_uri` /
    /// `invalid_software_statement` for refused metadata; 403
    /// `access_denied` when the project's client quota is reached;
    /// `invalid_request` for an unknown project; `server_error` when
    /// storage fails.
    ///
    /// [RFC 7591 section 3]: https://www.rfc-editor.org/rfc/rfc7591#section-3
    pub async fn register_client(
        &self,
        project: &ProjectId,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<RegistrationResponse, EndpointError> {
        self.register_client_from(project, authorization, body, None).await
    }

    /// [`AuthorizationServer::register_client`] with the request's source
    /// address, which a registration without an initial access token needs
    /// (the project's tokenless-registration policy rate-limits per
    /// source; without a source such a request is not admitted).
    ///
    /// # Errors
    /// As [`AuthorizationServer::register_client`]; a tokenless request the
    /// policy does not admit gets the missing-token answer (401
    /// `invalid_token`), or 403 `access_denied` when its source is over
    /// the rate limit.
    pub async fn register_client_from(
        &self,
        project: &ProjectId,
        authorization: Option<&str>,
        body: &[u8],
        source: Option<IpAddr>,
    ) -> Result<RegistrationResponse, EndpointError> {
        let settings = self
            .projects
            .get(project)
            .await?
            .ok_or_else(OAuthError::unknown_project)?;
        match self.register(project, &settings, authorization, body, source).await {
            Ok(response) => Ok(response),
            Err(Failure::Store(e)) => Err(e.into()),
            Err(Failure::Refused(error, iat_id)) => {
                self.emit(
                    project,
                    AuditKind::ClientRegistrationRejected {
                        error: error.code().as_str().to_owned(),
                        reason: error.reason(),
                        iat_id: iat_id.map(String::from),
                    },
                )
                .await;
                Err(error.to_oauth_error().into())
            }
        }
    }

    async fn register(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        authorization: Option<&str>,
        body: &[u8],
        source: Option<IpAddr>,
    ) -> Result<RegistrationResponse, Failure> {
        let now = self.now();
        let token = match (settings.dcr_mode, authorization) {
            (DcrMode::Disabled, _) => return Err(refused(RegistrationError::Disabled, None)),
            (DcrMode::InitialAccessToken, None) if settings.tokenless_registration.enabled => {
                return self.register_tokenless(project, settings, body, source, now).await;
            }
            (DcrMode::InitialAccessToken, None) => return Err(refused(IatError::Missing, None)),
            (DcrMode::Open, None) => return self.register_anonymous(project, settings, body, source, now).await,
            (DcrMode::InitialAccessToken | DcrMode::Open, Some(header)) => {
                Some(parse_bearer(header).map_err(|e| refused(e, None))?)
            }
        };
        let iat = match token {
            None => None,
            Some(token) => {
                let hash = token.hash();
                // A token read or used here moments ago is not read again:
                // its use count and revocation are decided by `use_once`
                // below, against the committed state.
                let record = match self.recent.iat(project, &hash, now) {
                    Some(record) => record,
                    None => {
                        let record = self
                            .iats
                            .find(project, &hash)
                            .await?
                            .ok_or_else(|| refused(IatError::Unknown, None))?;
                        if self.recent.enabled() {
                            self.recent.put_iat(project, record.clone(), now);
                        }
                        record
                    }
                };
                record.check(now).map_err(|e| refused(e, Some(&record)))?;
                Some(record)
            }
        };

        let metadata = validate_request(
            body,
            iat.as_ref().map(|r| &r.pinned),
            settings.effective_redirect_uri_policy(),
        )
        .map_err(|e| refused(e, iat.as_ref()))?;

        if let Some(max) = self.registration.max_clients_per_project
            && self.clients.count(project).await? >= max
        {
            return Err(refused(RegistrationError::QuotaExceeded, iat.as_ref()));
        }

        if let Some(record) = &iat {
            match self.iats.use_once(project, &record.hash, now).await? {
                UseOutcome::Used(used) => {
                    if self.recent.enabled() {
                        self.recent.put_iat(project, used.clone(), now);
                    }
                    self.emit(
                        project,
                        AuditKind::IatUsed {
                            iat_id: used.id.to_string(),
                            uses: used.uses,
                        },
                    )
                    .await;
                }
                UseOutcome::Unusable(e) => {
                    self.recent.forget_iat(project, &record.hash);
                    return Err(refused(e, Some(record)));
                }
                UseOutcome::Unknown => {
                    self.recent.forget_iat(project, &record.hash);
                    return Err(refused(IatError::Unknown, Some(record)));
                }
            }
        }

        self.mint_and_store(project, metadata, iat.as_ref(), now).await
    }

    async fn mint_and_store(
        &self,
        project: &ProjectId,
        metadata: crate::client::ValidatedMetadata,
        iat: Option<&IatRecord>,
        now: time::OffsetDateTime,
    ) -> Result<RegistrationResponse, Failure> {
        for _ in 0..ID_ATTEMPTS {
            let mut id_random = [0u8; 12];
            let mut secret_random = [0u8; CLIENT_SECRET_RANDOM_BYTES];
            self.random.fill(&mut id_random);
            if metadata.token_endpoint_auth_method.uses_shared_secret() {
                self.random.fill(&mut secret_random);
            }
            let registration =
                Registration::mint(metadata.clone(), &id_random, &secret_random, &self.registration, now);
            if self.clients.insert(project, registration.client.clone()).await? {
                self.emit(
                    project,
                    AuditKind::ClientRegistered {
                        client_id: registration.response.client_id.to_string(),
                        iat_id: iat.map(|r| r.id.to_string()),
                        token_endpoint_auth_method: metadata.token_endpoint_auth_method.as_str().to_owned(),
                    },
                )
                .await;
                return Ok(registration.response);
            }
        }
        Err(StoreError::new("could not draw an unused client id").into())
    }

    /// Counts one admission without a token in the source's, its
    /// network's and the project's windows ([`crate::store::AdmissionStore`],
    /// shared by every instance on the store), or refuses it
    /// (`NotAdmitted::RateLimited`) and counts nothing.
    async fn admit_anonymous(
        &self,
        project: &ProjectId,
        source: Option<IpAddr>,
        policy: &tokenless::TokenlessRegistration,
        now: time::OffsetDateTime,
    ) -> Result<(), Failure> {
        let windows = admission_windows(source, policy);
        if self.admissions.admit(project, &windows, policy.window(), now).await? {
            Ok(())
        } else {
            Err(refused(RegistrationError::NotAdmitted(NotAdmitted::RateLimited), None))
        }
    }

    /// A registration without a token in `open` mode: the metadata is
    /// validated and must be compact ([`crate::dcr::MAX_ANONYMOUS_METADATA_BYTES`]),
    /// the quota applies, then the source's, its network's and the
    /// project's windows count the admission (the rates of
    /// [`crate::tokenless::TokenlessRegistration`]; requests without a
    /// known source share one window), last, so refused requests cost no
    /// admission.
    async fn register_anonymous(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        body: &[u8],
        source: Option<IpAddr>,
        now: time::OffsetDateTime,
    ) -> Result<RegistrationResponse, Failure> {
        let metadata =
            validate_request(body, None, settings.effective_redirect_uri_policy()).map_err(|e| refused(e, None))?;
        check_compact(&metadata)?;
        if let Some(max) = self.registration.max_clients_per_project
            && self.clients.count(project).await? >= max
        {
            return Err(refused(RegistrationError::QuotaExceeded, None));
        }
        self.admit_anonymous(
            project,
            source.map(tokenless::source_key),
            &settings.tokenless_registration,
            now,
        )
        .await?;
        self.mint_and_store(project, metadata, None, now).await
    }

    /// A registration without a token in `initial_access_token` mode: the
    /// metadata is validated, every redirect URI must match a trusted
    /// pattern, the quota applies, then the source's rate limit counts the
    /// admission (last, so refused requests cost no admission).
    async fn register_tokenless(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        body: &[u8],
        source: Option<IpAddr>,
        now: time::OffsetDateTime,
    ) -> Result<RegistrationResponse, Failure> {
        let policy = &settings.tokenless_registration;
        let metadata =
            validate_request(body, None, settings.effective_redirect_uri_policy()).map_err(|e| refused(e, None))?;
        let patterns = policy
            .admits(&metadata)
            .map_err(|e| refused(RegistrationError::NotAdmitted(e), None))?;
        check_compact(&metadata)?;
        let source = source
            .map(tokenless::source_key)
            .ok_or_else(|| refused(RegistrationError::NotAdmitted(NotAdmitted::UnknownSource), None))?;
        if let Some(max) = self.registration.max_clients_per_project
            && self.clients.count(project).await? >= max
        {
            return Err(refused(RegistrationError::QuotaExceeded, None));
        }
        self.admit_anonymous(project, Some(source), policy, now).await?;
        let response = self.mint_and_store(project, metadata, None, now).await?;
        self.emit(
            project,
            AuditKind::ClientTokenlessAdmitted {
                client_id: response.client_id.to_string(),
                source: source.to_string(),
                patterns,
            },
        )
        .await;
        Ok(response)
    }
}

/// Anonymous clients are kept compact: their metadata, as stored, within
/// [`crate::dcr::MAX_ANONYMOUS_METADATA_BYTES`].
fn check_compact(metadata: &crate::client::ValidatedMetadata) -> Result<(), Failure> {
    let bytes = serde_json::to_vec(metadata)
        .map_err(|e| Failure::Store(StoreError::with_source("encoding client metadata", e)))?
        .len();
    if bytes > crate::dcr::MAX_ANONYMOUS_METADATA_BYTES {
        return Err(refused(
            RegistrationError::AnonymousMetadataTooLarge {
                bytes,
                max: crate::dcr::MAX_ANONYMOUS_METADATA_BYTES,
            },
            None,
        ));
    }
    Ok(())
}

/// The windows an admission from `source` (already reduced to its /64;
/// `None`: unknown, all such requests share one window) counts in: its
/// source, its network and the project, with their limits.
fn admission_windows(source: Option<IpAddr>, policy: &tokenless::TokenlessRegistration) -> Vec<(String, u32)> {
    let mut windows = Vec::with_capacity(3);
    match source {
        Some(source) => {
            windows.push((format!("source:{source}"), policy.max_per_source));
            windows.push((
                format!("network:{}", tokenless::network_key(source)),
                policy.max_per_source.saturating_mul(tokenless::NETWORK_FACTOR),
            ));
        }
        None => windows.push(("source:unknown".to_owned(), policy.max_per_source)),
    }
    windows.push(("project".to_owned(), policy.max_per_window));
    windows
}
