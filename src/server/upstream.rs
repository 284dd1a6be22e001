//! The upstream login step: start a login at the project's OpenID Connect
//! provider for a pending authorization, and finish it at the callback.
//! Every decision is in [`crate::upstream`]; this sequences the login
//! store, the provider's HTTP endpoints, the user store and the audit log.

use std::collections::HashMap;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

use super::AuthorizationServer;
use super::flow::AuthorizeOutcome;
use crate::audit::AuditKind;
use crate::authorize::{PendingAuthorization, RedirectError};
use crate::error::{ErrorCode, OAuthError};
use crate::grant::Subject;
use crate::jose::{self, JwkSet, SigningAlgorithm};
use crate::project::{ProjectId, ProjectSettings};
use crate::scope::ScopeSet;
use crate::secret::SecretHash;
use crate::store::{LocalUser, LoginTake};
use crate::upstream::{
    self, CallbackParams, LoginFailure, LoginRandomness, ProviderMetadata, ProviderName, UpstreamLogin,
    UpstreamProvider, UserDecision,
};

/// How long a provider's discovery document and JWKS are used before they
/// are fetched again.
const PROVIDER_CACHE_TTL: Duration = Duration::hours(1);
/// The least time between two JWKS fetches caused by an unknown `kid`.
const MIN_JWKS_REFETCH: Duration = Duration::seconds(30);

/// The provider documents cached by the driver.
#[derive(Debug, Default)]
pub(crate) struct ProviderCache {
    metadata: Mutex<HashMap<String, (ProviderMetadata, OffsetDateTime)>>,
    jwks: Mutex<HashMap<String, JwksEntry>>,
}

#[derive(Debug, Clone)]
struct JwksEntry {
    keys: JwkSet,
    fetched_at: OffsetDateTime,
    last_attempt: OffsetDateTime,
}

/// A user signed in upstream whose consent is still to be asked: show a
/// consent page for `pending` (the user is known: do not ask who they
/// are), then call [`AuthorizationServer::approve_signed_in`] or
/// [`AuthorizationServer::deny`].
#[derive(Debug)]
#[non_exhaustive]
pub struct SignedIn {
    /// The MCP authorization the login was for.
    pub pending: PendingAuthorization,
    /// The local subject.
    pub subject: Subject,
    /// The stored user.
    pub user: LocalUser,
    /// The provider.
    pub provider: ProviderName,
    /// The project's issuer is `https`, so the browser-binding cookie is a
    /// `__Host-` one: pass it to [`crate::http::clear_upstream_cookie`] on
    /// the consent page's response.
    pub secure_cookie: bool,
}

/// What the upstream callback decided.
#[derive(Debug)]
#[non_exhaustive]
pub enum CallbackOutcome {
    /// The callback matches no login (unknown or malformed `state`), comes
    /// from another browser than the one the login started in (its
    /// binding cookie missing or wrong: the login is left for its own
    /// browser, and the caller is not sent to the MCP client), or replays
    /// a callback already used (its answer went to the MCP client once):
    /// show this error ([`super::EndpointError::to_oauth`] on the page; the
    /// cause, a storage failure say, for the host to match on: the crate
    /// has logged a storage failure once already).
    ShowError(super::EndpointError),
    /// Redirect the user agent to the MCP client: an error (with `state`
    /// and `iss`), or the code when the user's remembered consent already
    /// covers the request.
    Redirect(String),
    /// Signed in; consent is needed.
    SignedIn(Box<SignedIn>),
}

impl AuthorizationServer {
    /// The callback URL of `provider` for a project: register it at the
    /// provider as the redirect URI.
    pub fn upstream_callback_uri(&self, settings: &ProjectSettings, provider: &ProviderName) -> String {
        self.issuer_for(settings).endpoint(&format!(
            "{}/{}/callback",
            self.paths.upstream.trim_end_matches('/'),
            provider.as_str()
        ))
    }

    /// The authorization endpoint of an upstream provider
    /// (`/v1/auth/oauth/{provider}/authorize`): validates `query` like
    /// [`AuthorizationServer::authorize`], then starts a login at
    /// `provider`.
    pub async fn authorize_with_provider(&self, project: &ProjectId, provider: &str, query: &str) -> AuthorizeOutcome {
        self.authorize_with_provider_from(project, provider, query, None).await
    }

    /// [`Self::authorize_with_provider`] for a request from `source`, as
    /// [`AuthorizationServer::authorize_from`].
    pub async fn authorize_with_provider_from(
        &self,
        project: &ProjectId,
        provider: &str,
        query: &str,
        source: Option<&crate::cimd::RequestSource>,
    ) -> AuthorizeOutcome {
        let settings = match self.projects.get(project).await {
            Ok(Some(s)) => s,
            Ok(None) => return AuthorizeOutcome::ShowError(OAuthError::unknown_project().into()),
            Err(e) => return AuthorizeOutcome::ShowError(super::EndpointError::from(e)),
        };
        let Some(name) = ProviderName::new(provider)
            .ok()
            .filter(|n| settings.upstream.provider(n).is_some())
        else {
            return AuthorizeOutcome::ShowError(unknown_provider().into());
        };
        match self
            .validate_authorization(project, &settings, query, source, true)
            .await
        {
            AuthorizeOutcome::Pending(p) => self.start_upstream_login_from(&settings, *p, &name, source).await,
            other => other,
        }
    }

    /// Starts a login at `provider` for a validated authorization: stores
    /// the login and answers [`AuthorizeOutcome::UpstreamLogin`]; a
    /// provider that cannot be reached, or a login store that holds as
    /// many logins as it may, sends the MCP client
    /// `temporarily_unavailable`.
    pub async fn start_upstream_login(
        &self,
        settings: &ProjectSettings,
        pending: PendingAuthorization,
        provider: &ProviderName,
    ) -> AuthorizeOutcome {
        self.start_upstream_login_from(settings, pending, provider, None).await
    }

    /// [`Self::start_upstream_login`] for a request from `source` (the
    /// client IP as the HTTP edge knows it): the login store also bounds
    /// the logins in flight per source
    /// ([`crate::store::UpstreamLoginStore`]), so one address cannot fill
    /// the project's share.
    pub async fn start_upstream_login_from(
        &self,
        settings: &ProjectSettings,
        pending: PendingAuthorization,
        provider: &ProviderName,
        source: Option<&crate::cimd::RequestSource>,
    ) -> AuthorizeOutcome {
        let Some(p) = settings.upstream.provider(provider) else {
            return AuthorizeOutcome::ShowError(unknown_provider().into());
        };
        let metadata = match self.provider_metadata(p).await {
            Ok(m) => m,
            Err(f) => return AuthorizeOutcome::Redirect(self.login_failed(settings, &pending, provider, &f).await),
        };
        if pending.prompt_none && !metadata.supports_prompt("none") {
            // The provider cannot be asked for a silent sign-in, so no
            // sign-in can happen without a page (OpenID Connect Core 1.0
            // section 3.1.2.6).
            let f = LoginFailure::InteractionRequired(crate::error::ErrorCode::LoginRequired);
            return AuthorizeOutcome::Redirect(self.login_failed(settings, &pending, provider, &f).await);
        }
        let random = LoginRandomness {
            state: self.random_array(),
            nonce: self.random_array(),
            verifier: self.random_array(),
            browser: self.random_array(),
        };
        let callback = self.upstream_callback_uri(settings, provider);
        let project = pending.project.clone();
        let start = upstream::start_login(pending, p, &metadata, &callback, random, self.clock.now());
        let pending = start.login.pending.0.duplicate();
        if let Err(e) = self.upstream_logins.insert(&project, start.login, source).await {
            // A bound reached is not a failure of the store: the user may
            // retry once older logins expired (`temporarily_unavailable`).
            let failure = match e.kind() {
                crate::store::StoreErrorKind::CapacityExceeded => LoginFailure::TooManyLogins,
                _ => storage_failure(e),
            };
            return AuthorizeOutcome::Redirect(self.login_failed(settings, &pending, provider, &failure).await);
        }
        AuthorizeOutcome::UpstreamLogin {
            location: start.location,
            browser_binding: start.browser_binding,
            callback_uri: callback,
        }
    }

    /// The provider's callback (`/v1/auth/oauth/{provider}/callback`):
    /// `query` as received, `browser_binding` the cookie value set when
    /// the login started (see [`crate::http::upstream_cookie_name`]).
    pub async fn finish_upstream_login(
        &self,
        project: &ProjectId,
        provider: &str,
        query: &str,
        browser_binding: Option<&str>,
    ) -> CallbackOutcome {
        let settings = match self.projects.get(project).await {
            Ok(Some(s)) => s,
            Ok(None) => return CallbackOutcome::ShowError(OAuthError::unknown_project().into()),
            Err(e) => return CallbackOutcome::ShowError(super::EndpointError::from(e)),
        };
        let params = CallbackParams::from_query(query);
        let provider_label = provider.chars().take(32).collect::<String>();
        let unmatched = |reason: &'static str| AuditKind::UpstreamLoginFailed {
            provider: provider_label.clone(),
            client_id: None,
            reason: reason.to_owned(),
        };
        let Some(hash) = params.state_hash() else {
            self.emit(project, unmatched("state_mismatch")).await;
            return CallbackOutcome::ShowError(no_login().into());
        };
        // The browser binding goes into the take itself: a caller without
        // it (whoever learned a `state` from a log, a Referer or a shared
        // link) neither spends the user's login nor learns the MCP
        // client's redirect and `state`: an error page, nothing else. A
        // missing cookie is the empty value, which no login's binding (256
        // random bits) ever is.
        let browser_hash = SecretHash::of(browser_binding.unwrap_or_default());
        let taken = self
            .upstream_logins
            .take(project, &hash, &browser_hash, self.clock.now())
            .await;
        let login = match taken {
            Ok(LoginTake::Taken(l)) => *l,
            Ok(LoginTake::WrongBrowser) => {
                self.emit(project, unmatched("browser_mismatch")).await;
                return CallbackOutcome::ShowError(wrong_browser().into());
            }
            Ok(LoginTake::AlreadyTaken(l)) => {
                // A replay (a reload, a back button, or someone else's copy
                // of the URL with the cookie): the login's one answer went
                // to the MCP client already. An error page, never a second
                // redirect to the client.
                self.emit(
                    project,
                    AuditKind::UpstreamLoginFailed {
                        provider: l.provider.as_str().to_owned(),
                        client_id: Some(l.pending.0.client_id.to_string()),
                        reason: LoginFailure::Replayed.reason().into_owned(),
                    },
                )
                .await;
                return CallbackOutcome::ShowError(replayed().into());
            }
            Ok(LoginTake::Expired(l)) => {
                let name = l.provider.clone();
                return CallbackOutcome::Redirect(
                    self.login_failed(&settings, &l.pending.0, &name, &LoginFailure::Expired)
                        .await,
                );
            }
            Ok(_) => {
                self.emit(project, unmatched("state_mismatch")).await;
                return CallbackOutcome::ShowError(no_login().into());
            }
            Err(e) => {
                let e = super::EndpointError::from(e);
                self.emit(project, unmatched("storage_error")).await;
                return CallbackOutcome::ShowError(e);
            }
        };
        let name = login.provider.clone();
        let result = async {
            let p = ProviderName::new(provider)
                .ok()
                .and_then(|n| settings.upstream.provider(&n))
                .ok_or(LoginFailure::StateMismatch)?;
            let metadata = self.provider_metadata(p).await?;
            let code = upstream::check_callback(&login, p, &metadata, &params, browser_binding, self.clock.now())?;
            let identity = self.redeem(project, p, &metadata, &login, code).await?;
            p.rules().check(&identity)?;
            let subject = match self.user_policy.decide(project, p, &identity).await {
                Ok(UserDecision::Accept) => upstream::local_subject(&identity.issuer, &identity.subject),
                Ok(UserDecision::AcceptAs(s)) => s,
                Ok(UserDecision::Refuse(reason)) => return Err(LoginFailure::RefusedByPolicy { reason }),
                Err(_) => return Err(LoginFailure::Storage),
            };
            // What the user allowed this client before, read before
            // anything is stored: a silent (`prompt=none`) login that it
            // does not cover fails without creating the user.
            let remembered = self
                .users
                .consent(project, &subject, login.pending.0.client_id.as_str())
                .await
                .map_err(storage_failure)?;
            let covered = remembered.is_some_and(|c| consent_covers(&login.pending.0, &c));
            if login.pending.0.prompt_none && !covered {
                return Err(LoginFailure::InteractionRequired(
                    crate::error::ErrorCode::ConsentRequired,
                ));
            }
            let now = self.clock.now();
            let user = LocalUser {
                project: project.clone(),
                subject: subject.clone(),
                upstream_issuer: identity.issuer.clone(),
                upstream_subject: identity.subject.clone(),
                email: identity.email.clone(),
                email_verified: identity.email_verified,
                name: identity.name.clone(),
                created_at: now,
                last_login_at: now,
            };
            let user = self.users.upsert(user).await.map_err(storage_failure)?;
            Ok((subject, user, covered))
        }
        .await;
        let (subject, user, covered) = match result {
            Ok(v) => v,
            Err(f) => {
                return CallbackOutcome::Redirect(self.login_failed(&settings, &login.pending.0, &name, &f).await);
            }
        };
        self.emit(
            project,
            AuditKind::UpstreamLoginSucceeded {
                provider: name.as_str().to_owned(),
                client_id: login.pending.0.client_id.to_string(),
                subject: subject.as_str().to_owned(),
            },
        )
        .await;
        // Remembered consent that covers the request answers at once,
        // unless the client asked for the consent page (`prompt=consent`).
        if covered && !login.pending.0.force_consent {
            match self.approve(login.pending.0.duplicate(), subject, None).await {
                Ok(location) => CallbackOutcome::Redirect(location),
                Err(e) => {
                    let f = match e {
                        super::ApproveError::Approval(crate::authorize::ApprovalError::Expired) => {
                            LoginFailure::Expired
                        }
                        _ => LoginFailure::Storage,
                    };
                    CallbackOutcome::Redirect(self.login_failed(&settings, &login.pending.0, &name, &f).await)
                }
            }
        } else {
            CallbackOutcome::SignedIn(Box::new(SignedIn {
                pending: login.pending.resume(),
                subject,
                user,
                provider: name,
                secure_cookie: is_https(self.issuer_for(&settings)),
            }))
        }
    }

    /// Whether the browser-binding cookie of `project`'s upstream logins
    /// is a `__Host-` one ([`crate::http::upstream_cookie_name`]): its
    /// issuer is `https`. A project that cannot be read counts as `https`
    /// (the stricter cookie; its callback fails anyway).
    pub(crate) async fn upstream_cookie_secure(&self, project: &ProjectId) -> bool {
        match self.projects.get(project).await {
            Ok(Some(settings)) => is_https(self.issuer_for(&settings)),
            _ => true,
        }
    }

    /// Approves for a user signed in upstream and remembers the consent
    /// (user, client, granted scopes), so the next login of the same user
    /// for the same client is not asked again unless the scopes grow.
    ///
    /// # Errors
    /// [`super::ApproveError`].
    pub async fn approve_signed_in(
        &self,
        signed_in: SignedIn,
        granted: Option<ScopeSet>,
    ) -> Result<String, super::ApproveError> {
        let SignedIn { pending, subject, .. } = signed_in;
        let scopes = granted.clone().unwrap_or_else(|| pending.scopes.clone());
        let resources = pending.resources.clone();
        let (project, client) = (pending.project.clone(), pending.client_id.to_string());
        let location = self.approve(pending, subject.clone(), granted).await?;
        self.users
            .remember_consent(&project, &subject, &client, &scopes, &resources, self.clock.now())
            .await
            .map_err(super::ApproveError::from_store)?;
        Ok(location)
    }

    /// Forgets what `subject` allowed `client_id`: the next login asks
    /// again. Returns whether there was a remembered consent.
    ///
    /// # Errors
    /// [`crate::store::StoreError`] when storage fails.
    pub async fn revoke_consent(
        &self,
        project: &ProjectId,
        subject: &Subject,
        client_id: &str,
    ) -> Result<bool, crate::store::StoreError> {
        self.users.revoke_consent(project, subject, client_id).await
    }

    /// A local user.
    ///
    /// # Errors
    /// [`crate::store::StoreError`] when storage fails.
    pub async fn user(
        &self,
        project: &ProjectId,
        subject: &Subject,
    ) -> Result<Option<LocalUser>, crate::store::StoreError> {
        self.users.user(project, subject).await
    }

    /// Audits `upstream.login_failed` and returns the error redirect to
    /// the MCP client (`error`, `state`, `iss`).
    async fn login_failed(
        &self,
        settings: &ProjectSettings,
        pending: &PendingAuthorization,
        provider: &ProviderName,
        failure: &LoginFailure,
    ) -> String {
        self.emit(
            &pending.project,
            AuditKind::UpstreamLoginFailed {
                provider: provider.as_str().to_owned(),
                client_id: Some(pending.client_id.to_string()),
                reason: failure.reason().into_owned(),
            },
        )
        .await;
        RedirectError {
            redirect_uri: pending.redirect_uri.clone(),
            error: OAuthError::with_description(failure.code(), failure.to_string()),
            state: pending.state.clone(),
        }
        .location(self.issuer_for(settings).as_str())
    }

    /// Exchanges the code, verifies the ID token and, when it is wanted
    /// ([`upstream::userinfo_endpoint`]), merges the userinfo response
    /// (whose `sub` must be the ID token's).
    async fn redeem(
        &self,
        project: &ProjectId,
        p: &UpstreamProvider,
        metadata: &ProviderMetadata,
        login: &UpstreamLogin,
        code: &str,
    ) -> Result<upstream::UpstreamIdentity, LoginFailure> {
        let secret = self
            .upstream_secrets
            .client_secret(project, &p.name)
            .await
            .map_err(storage_failure)?;
        let assertion = match p.client_auth {
            upstream::UpstreamClientAuth::PrivateKeyJwt => Some(self.client_assertion(project, p).await?),
            _ => None,
        };
        let credential = match (&assertion, &secret) {
            (Some(a), _) => upstream::ClientCredential::Assertion(a),
            (None, Some(s)) => upstream::ClientCredential::Secret(s),
            (None, None) => upstream::ClientCredential::None,
        };
        let (form, authorization) = upstream::token_request(login, p, code, credential);
        let http = self.upstream_http.as_ref().ok_or(LoginFailure::ProviderUnavailable)?;
        let response = http
            .post_form(&metadata.token_endpoint, form, authorization.as_ref())
            .await
            .map_err(|_| LoginFailure::TokenExchange)?;
        let tokens = upstream::tokens_from_response(response.status, &response.body)?;
        let id_token = tokens.id_token;
        let expect = jose::Expect {
            algorithms: &SigningAlgorithm::ALL,
            typ: None,
        };
        let bad = |_| LoginFailure::InvalidIdToken(upstream::IdTokenError::Signature);
        let header = jose::peek(&id_token, expect).map_err(bad)?;
        let keys = self.provider_keys(&metadata.jwks_uri, &header.kid).await?;
        let (_, claims) = jose::verify(&id_token, &keys, expect).map_err(bad)?;
        let now = self.clock.now();
        let identity =
            upstream::check_id_token_claims(&claims, p, &login.nonce, now).map_err(LoginFailure::InvalidIdToken)?;
        if login.pending.0.force_login {
            upstream::check_auth_time(&claims, login.created_at, now).map_err(LoginFailure::InvalidIdToken)?;
        }
        let Some(endpoint) = upstream::userinfo_endpoint(p, metadata, &identity).map_err(LoginFailure::Userinfo)?
        else {
            return Ok(identity);
        };
        let token = tokens
            .access_token
            .as_ref()
            .ok_or(LoginFailure::Userinfo(upstream::UserinfoError::NoAccessToken))?;
        let response = http
            .get_with_bearer(endpoint, token)
            .await
            .map_err(|_| LoginFailure::Userinfo(upstream::UserinfoError::Unreachable))?;
        upstream::merge_userinfo(identity, p, response.status, &response.body).map_err(LoginFailure::Userinfo)
    }

    /// A `private_key_jwt` client assertion for `p`, signed with the
    /// project's active key of its access-token algorithm.
    async fn client_assertion(&self, project: &ProjectId, p: &UpstreamProvider) -> Result<String, LoginFailure> {
        let settings = self
            .projects
            .get(project)
            .await
            .ok()
            .flatten()
            .ok_or(LoginFailure::Storage)?;
        let key = self
            .signing_key(project, &settings, settings.signing.access_token_algorithm)
            .await
            .map_err(|_| LoginFailure::Storage)?;
        let jti = crate::secret::SecretString::random_with_prefix("", &self.random_array::<16>());
        let claims = upstream::client_assertion_claims(p, jti.expose_secret(), self.clock.now());
        jose::sign(&key.private_key, key.kid.as_str(), "JWT", &claims).map_err(|_| LoginFailure::Storage)
    }

    /// The provider's discovery document, cached for an hour.
    async fn provider_metadata(&self, p: &UpstreamProvider) -> Result<ProviderMetadata, LoginFailure> {
        let now = self.clock.now();
        let key = p.issuer.as_str().to_owned();
        if let Ok(cache) = self.provider_cache.metadata.lock()
            && let Some((m, at)) = cache.get(&key)
            && now - *at < PROVIDER_CACHE_TTL
        {
            return Ok(m.clone());
        }
        let http = self.upstream_http.as_ref().ok_or(LoginFailure::ProviderUnavailable)?;
        let response = http
            .get(&p.discovery_url())
            .await
            .map_err(|_| LoginFailure::ProviderUnavailable)?;
        if response.status != 200 {
            return Err(LoginFailure::ProviderUnavailable);
        }
        // Loopback endpoints only for a loopback issuer (which only
        // development configurations have); the HTTP implementation refuses
        // loopback anyway unless built to allow it.
        let dev = upstream::is_loopback_issuer(&p.issuer);
        let m = upstream::parse_provider_metadata(&response.body, &p.issuer, dev)
            .map_err(|_| LoginFailure::ProviderUnavailable)?;
        if let Ok(mut cache) = self.provider_cache.metadata.lock() {
            cache.insert(key, (m.clone(), now));
        }
        Ok(m)
    }

    /// The provider's keys for `kid`: the cached JWKS, refetched when it
    /// is older than an hour or lacks `kid` (at most once per 30 s).
    async fn provider_keys(&self, jwks_uri: &str, kid: &str) -> Result<JwkSet, LoginFailure> {
        let now = self.clock.now();
        let cached = self
            .provider_cache
            .jwks
            .lock()
            .ok()
            .and_then(|c| c.get(jwks_uri).cloned());
        if let Some(e) = &cached {
            let fresh = now - e.fetched_at < PROVIDER_CACHE_TTL;
            let may_refetch = now - e.last_attempt >= MIN_JWKS_REFETCH;
            if (fresh && e.keys.contains_kid(kid)) || !may_refetch {
                return Ok(e.keys.clone());
            }
        }
        let http = self.upstream_http.as_ref().ok_or(LoginFailure::ProviderUnavailable)?;
        let fetched = match http.get(jwks_uri).await {
            Ok(r) if r.status == 200 => serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| JwkSet::from_json(v).ok()),
            _ => None,
        };
        let entry = match (fetched, cached) {
            (Some(keys), _) => JwksEntry {
                keys,
                fetched_at: now,
                last_attempt: now,
            },
            (None, Some(old)) => JwksEntry {
                last_attempt: now,
                ..old
            },
            (None, None) => return Err(LoginFailure::ProviderUnavailable),
        };
        if let Ok(mut c) = self.provider_cache.jwks.lock() {
            c.insert(jwks_uri.to_owned(), entry.clone());
        }
        Ok(entry.keys)
    }
}

/// Whether a remembered consent answers `pending` without asking: the
/// client's identity is assured for this very request
/// ([`PendingAuthorization::client_identity_assured`]: not a public client
/// redirecting to a loopback URI or a private-use scheme, [RFC 8252 section
/// 8.6]), and, for every requested resource, the requested scopes were
/// allowed for that resource ([`crate::store::RememberedConsent::covers`]).
///
/// [RFC 8252 section 8.6]: https://www.rfc-editor.org/rfc/rfc8252#section-8.6
fn consent_covers(pending: &PendingAuthorization, consent: &crate::store::RememberedConsent) -> bool {
    pending.client_identity_assured() && consent.covers(&pending.scopes, &pending.resources)
}

/// Whether `issuer` is served over https (not a loopback development
/// issuer on plain http).
fn is_https(issuer: &crate::issuer::Issuer) -> bool {
    issuer.as_str().starts_with("https://")
}

fn replayed() -> OAuthError {
    OAuthError::with_description(
        ErrorCode::AccessDenied,
        "this sign-in response was already used; start again from the application",
    )
    .with_status(http::StatusCode::BAD_REQUEST)
}

fn wrong_browser() -> OAuthError {
    OAuthError::with_description(
        ErrorCode::AccessDenied,
        "this sign-in did not start in this browser; start again from the application",
    )
    .with_status(http::StatusCode::BAD_REQUEST)
}

fn unknown_provider() -> OAuthError {
    OAuthError::with_description(ErrorCode::InvalidRequest, "unknown sign-in provider")
        .with_status(http::StatusCode::NOT_FOUND)
}

fn no_login() -> OAuthError {
    OAuthError::with_description(
        ErrorCode::AccessDenied,
        "this sign-in response matches no sign-in in progress; start again from the application",
    )
    .with_status(http::StatusCode::BAD_REQUEST)
}

/// A storage failure during an upstream login: logged here, once
/// ([`crate::store::StoreError::log`]); the user is sent back to the client
/// with `server_error`, which names no cause.
fn storage_failure(e: crate::store::StoreError) -> LoginFailure {
    e.log();
    LoginFailure::Storage
}
