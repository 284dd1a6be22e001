//! The async driver: [`AuthorizationServer`] sequences store calls around
//! the pure core. It decides nothing itself; every rule lives in a core
//! module (the token endpoint's exchange, refresh, replay, revocation and
//! "active at `now`" rules in [`crate::token`], client authentication in
//! [`crate::client_auth`]). Time and randomness come from the injected
//! [`Clock`] and [`RandomSource`], so a test can drive whole flows
//! deterministically.
//!
//! Endpoints fail with an [`EndpointError`]: the host matches on its
//! [`ErrorKind`] and reason and logs its source; the client is sent
//! [`EndpointError::to_oauth`], the one mapping to the wire.

mod admin;
mod cimd;
mod client_auth;
mod env;
mod error;
mod flow;
mod keys;
mod lifecycle;
mod local_verifier;
mod oidc;
mod recent;
mod register;
mod upstream;

use std::sync::Arc;

pub use self::admin::AdminError;
#[cfg(any(test, feature = "test-util"))]
pub use self::env::SeededRandom;
pub use self::env::{Clock, FixedClock, RandomSource, SystemClock, SystemRandom};
pub use self::error::{EndpointError, ErrorKind};
pub use self::flow::{ApproveError, AuthorizeOutcome};
pub use self::keys::{DEFAULT_SIGNING_KEY_CACHE_TTL, KeyRevocation, RotationReport};
pub use self::local_verifier::LocalTokenVerifier;
pub use self::register::IssuedIat;
pub use self::upstream::{CallbackOutcome, SignedIn};
use crate::audit::{AuditEvent, AuditKind};
use crate::discovery::EndpointPaths;
use crate::issuer::Issuer;
use crate::project::ProjectId;
use crate::store::memory::MemoryKeyStore;
use crate::store::memory::{MemoryAuditLog, MemoryClientStore, MemoryGrantStore, MemoryIatStore, MemoryProjectStore};
use crate::store::{
    AuditSink, ClientStore, GrantStore, IatStore, KeyStore, OpaqueTokenIssuer, ProjectStore, TokenIssuer,
};

/// An OAuth 2.1 authorization server for many projects, over the host's
/// stores. Cheap to clone (every part is behind an `Arc`).
#[derive(Clone)]
pub struct AuthorizationServer {
    pub(crate) issuer: Issuer,
    pub(crate) paths: EndpointPaths,
    pub(crate) projects: Arc<dyn ProjectStore>,
    pub(crate) clients: Arc<dyn ClientStore>,
    pub(crate) grants: Arc<dyn GrantStore>,
    pub(crate) token_issuer: Arc<dyn TokenIssuer>,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn RandomSource>,
    pub(crate) iats: Arc<dyn IatStore>,
    pub(crate) registration: crate::dcr::RegistrationPolicy,
    pub(crate) metadata_fetcher: Option<Arc<dyn crate::cimd::MetadataFetcher>>,
    pub(crate) cimd_cache: Arc<dyn crate::store::CimdCache>,
    pub(crate) cimd_inflight: Arc<cimd::InFlight>,
    pub(crate) cimd_limits: crate::cimd::FetchLimits,
    pub(crate) keys: Arc<dyn KeyStore>,
    pub(crate) key_cache: Arc<keys::KeyCache>,
    pub(crate) key_cache_ttl: time::Duration,
    pub(crate) user_claims: Arc<dyn crate::store::UserClaimsSource>,
    pub(crate) replay: Arc<dyn crate::store::ReplayStore>,
    pub(crate) assertion_jti_quota: u32,
    pub(crate) rotation_lock: Arc<futures_util::lock::Mutex<()>>,
    pub(crate) client_jwks: Arc<client_auth::ClientJwksCache>,
    pub(crate) admissions: Arc<dyn crate::store::AdmissionStore>,
    pub(crate) users: Arc<dyn crate::store::UserStore>,
    pub(crate) upstream_logins: Arc<dyn crate::store::UpstreamLoginStore>,
    pub(crate) upstream_secrets: Arc<dyn crate::store::UpstreamSecrets>,
    pub(crate) upstream_http: Option<Arc<dyn crate::upstream::UpstreamHttp>>,
    pub(crate) user_policy: Arc<dyn crate::upstream::UserPolicy>,
    pub(crate) provider_cache: Arc<upstream::ProviderCache>,
    pub(crate) recent: Arc<recent::RecentRecords>,
}

impl std::fmt::Debug for AuthorizationServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationServer")
            .field("issuer", &self.issuer)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl AuthorizationServer {
    /// A builder with in-memory stores, the system clock and the system
    /// random source as defaults.
    pub fn builder(issuer: Issuer) -> AuthorizationServerBuilder {
        AuthorizationServerBuilder {
            issuer,
            paths: EndpointPaths::default(),
            projects: None,
            clients: None,
            grants: None,
            token_issuer: None,
            audit: None,
            clock: None,
            random: None,
            iats: None,
            registration: crate::dcr::RegistrationPolicy::default(),
            metadata_fetcher: None,
            cimd_cache: None,
            cimd_limits: crate::cimd::FetchLimits::default(),
            keys: None,
            key_cache_ttl: keys::DEFAULT_SIGNING_KEY_CACHE_TTL,
            user_claims: None,
            replay: None,
            admissions: None,
            assertion_jti_quota: crate::client_auth::DEFAULT_ASSERTION_JTI_QUOTA,
            users: None,
            upstream_logins: None,
            upstream_secrets: None,
            upstream_http: None,
            user_policy: None,
            recent_records: 0,
        }
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The issuer of a project: its own, or the server's.
    pub fn issuer_for<'a>(&'a self, settings: &'a crate::project::ProjectSettings) -> &'a Issuer {
        settings.issuer.as_ref().unwrap_or(&self.issuer)
    }

    /// The endpoint paths.
    pub fn paths(&self) -> &EndpointPaths {
        &self.paths
    }

    /// The current time from the injected clock.
    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    pub(crate) fn random_array<const N: usize>(&self) -> [u8; N] {
        let mut buf = [0u8; N];
        self.random.fill(&mut buf);
        buf
    }

    pub(crate) async fn emit(&self, project: &ProjectId, kind: AuditKind) {
        let mut event = AuditEvent::new(project.clone(), self.clock.now(), kind);
        if let Some(request) = crate::audit::RequestMeta::current() {
            event.request = request;
        }
        crate::metrics::audit(&event);
        self.audit.record(event).await;
    }

    /// The injected random source, for host-side needs such as CSRF
    /// tokens on a consent page.
    pub fn random_source(&self) -> &Arc<dyn RandomSource> {
        &self.random
    }

    /// The injected clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// A client registered in a project, if any.
    ///
    /// # Errors
    /// [`crate::store::StoreError`] when storage fails.
    pub async fn registered_client(
        &self,
        project: &ProjectId,
        id: &crate::client::RegisteredClientId,
    ) -> Result<Option<crate::client::Client>, crate::store::StoreError> {
        self.clients.get(project, id).await
    }

    /// Deletes what can no longer be used at the clock's `now`: expired
    /// codes and tokens, stale grant-revocation markers, and expired,
    /// exhausted or revoked initial access tokens. Returns how many
    /// records went. Run it periodically (the example server does, every
    /// `--purge-interval-secs`) to keep the in-memory stores bounded.
    ///
    /// # Errors
    /// [`crate::store::StoreError`] when storage fails.
    pub async fn purge_expired(&self) -> Result<usize, crate::store::StoreError> {
        let now = self.clock.now();
        let grants = self.grants.purge_expired(now).await?;
        let replays = self.replay.purge(now).await?;
        let logins = self.upstream_logins.purge(now).await?;
        let admissions = self.admissions.purge(now).await?;
        Ok(grants + replays + logins + admissions + self.iats.purge(now).await?)
    }
}

/// Builds an [`AuthorizationServer`].
#[must_use]
pub struct AuthorizationServerBuilder {
    issuer: Issuer,
    paths: EndpointPaths,
    projects: Option<Arc<dyn ProjectStore>>,
    clients: Option<Arc<dyn ClientStore>>,
    grants: Option<Arc<dyn GrantStore>>,
    token_issuer: Option<Arc<dyn TokenIssuer>>,
    audit: Option<Arc<dyn AuditSink>>,
    clock: Option<Arc<dyn Clock>>,
    random: Option<Arc<dyn RandomSource>>,
    iats: Option<Arc<dyn IatStore>>,
    registration: crate::dcr::RegistrationPolicy,
    /// `None`: the default; `Some(None)`: explicitly none.
    metadata_fetcher: Option<Option<Arc<dyn crate::cimd::MetadataFetcher>>>,
    cimd_cache: Option<Arc<dyn crate::store::CimdCache>>,
    cimd_limits: crate::cimd::FetchLimits,
    keys: Option<Arc<dyn KeyStore>>,
    key_cache_ttl: time::Duration,
    user_claims: Option<Arc<dyn crate::store::UserClaimsSource>>,
    replay: Option<Arc<dyn crate::store::ReplayStore>>,
    admissions: Option<Arc<dyn crate::store::AdmissionStore>>,
    assertion_jti_quota: u32,
    users: Option<Arc<dyn crate::store::UserStore>>,
    upstream_logins: Option<Arc<dyn crate::store::UpstreamLoginStore>>,
    upstream_secrets: Option<Arc<dyn crate::store::UpstreamSecrets>>,
    upstream_http: Option<Arc<dyn crate::upstream::UpstreamHttp>>,
    user_policy: Option<Arc<dyn crate::upstream::UserPolicy>>,
    recent_records: usize,
}

impl std::fmt::Debug for AuthorizationServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationServerBuilder")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl AuthorizationServerBuilder {
    /// Endpoint paths (defaults: `/oauth2/token`, `/oauth2/register`, ...).
    pub fn paths(mut self, paths: EndpointPaths) -> Self {
        self.paths = paths;
        self
    }

    /// The project store.
    pub fn projects(mut self, store: Arc<dyn ProjectStore>) -> Self {
        self.projects = Some(store);
        self
    }

    /// The client store.
    pub fn clients(mut self, store: Arc<dyn ClientStore>) -> Self {
        self.clients = Some(store);
        self
    }

    /// The store of codes, tokens and grants.
    pub fn grants(mut self, store: Arc<dyn GrantStore>) -> Self {
        self.grants = Some(store);
        self
    }

    /// How opaque access tokens are minted (default: random tokens).
    /// Projects with `access_token_format = jwt` sign [RFC 9068] tokens with
    /// their own keys instead ([`crate::jwt::JwtAccessTokenIssuer`]).
    ///
    /// [RFC 9068]: https://www.rfc-editor.org/rfc/rfc9068
    pub fn token_issuer(mut self, issuer: Arc<dyn TokenIssuer>) -> Self {
        self.token_issuer = Some(issuer);
        self
    }

    /// The audit sink.
    pub fn audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }

    /// The clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The random source.
    pub fn random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = Some(random);
        self
    }

    /// The initial access token store (default: [`MemoryIatStore`]).
    pub fn iats(mut self, store: Arc<dyn IatStore>) -> Self {
        self.iats = Some(store);
        self
    }

    /// Client-secret lifetime and per-project client quota for Dynamic
    /// Client Registration (default: [`crate::dcr::RegistrationPolicy::default`]).
    pub fn registration_policy(mut self, policy: crate::dcr::RegistrationPolicy) -> Self {
        self.registration = policy;
        self
    }

    /// The signing-key store (default: [`MemoryKeyStore`], whose keys die
    /// with the process).
    pub fn key_store(mut self, store: Arc<dyn KeyStore>) -> Self {
        self.keys = Some(store);
        self
    }

    /// How long this server reuses a project's signing keys read from the
    /// key store (default [`DEFAULT_SIGNING_KEY_CACHE_TTL`], 10 s; zero:
    /// read them on every JWKS request and every signature). A persistent
    /// store decrypts and parses every private key on each read, which
    /// costs far more than the JWKS response itself. Requests that find
    /// the copy missing or stale while a read of it is under way (begun
    /// less than 250 ms before, and within this lifetime) wait for that
    /// read, as long as it takes, and share its result, an error included;
    /// a later request starts its own, and none joins a read that began
    /// before a local rotation or revocation. A zero lifetime reads on
    /// every request, unshared.
    ///
    /// Rotations and revocations made by THIS server apply at once.
    /// Those made by other servers sharing the store apply here within
    /// this time: until then this server may still sign with, and publish,
    /// the key it read. Rotation is unaffected (a retired key stays
    /// published long after), but a key revoked elsewhere in an
    /// emergency ([`AuthorizationServer::revoke_signing_key`]) may still
    /// sign here for up to this long: keep it short.
    pub fn signing_key_cache_ttl(mut self, ttl: time::Duration) -> Self {
        self.key_cache_ttl = ttl;
        self
    }

    /// Where ID tokens and the userinfo endpoint get user claims such as
    /// `email` (default: [`crate::store::NoUserClaims`], `sub` only).
    pub fn user_claims(mut self, source: Arc<dyn crate::store::UserClaimsSource>) -> Self {
        self.user_claims = Some(source);
        self
    }

    /// The store of used client-assertion `jti`s (default:
    /// [`crate::store::memory::MemoryReplayStore`]; several instances need
    /// a shared one).
    pub fn replay_store(mut self, store: Arc<dyn crate::store::ReplayStore>) -> Self {
        self.replay = Some(store);
        self
    }

    /// The admission windows of registrations without an initial access
    /// token (default: [`crate::store::memory::MemoryAdmissionStore`], per
    /// process; several instances need a shared one, such as the SQL
    /// stores, for the per-source and per-project limits to hold for the
    /// deployment).
    pub fn admission_store(mut self, store: Arc<dyn crate::store::AdmissionStore>) -> Self {
        self.admissions = Some(store);
        self
    }

    /// How many unexpired client-assertion `jti`s one `private_key_jwt`
    /// client of one project may hold in the replay store (default
    /// [`crate::client_auth::DEFAULT_ASSERTION_JTI_QUOTA`]). A client past
    /// it is refused (`invalid_client`, audited as
    /// `oauth_client.assertion_rejected` with reason `jti_quota_exceeded`)
    /// until its older assertions expire; no other client is affected.
    /// An assertion's `jti` is kept until its `exp` plus a minute, at most
    /// six minutes, so the default allows a client a sustained rate of
    /// about three assertions a second even with the longest lifetime.
    pub fn assertion_jti_quota(mut self, quota: u32) -> Self {
        self.assertion_jti_quota = quota;
        self
    }

    /// Local users and remembered consent (default:
    /// [`crate::store::memory::MemoryUserStore`]). Unless
    /// [`AuthorizationServerBuilder::user_claims`] is set, ID tokens and
    /// userinfo take their claims from it.
    pub fn user_store(mut self, store: Arc<dyn crate::store::UserStore>) -> Self {
        self.users = Some(store);
        self
    }

    /// Upstream logins in flight (default:
    /// [`crate::store::memory::MemoryUpstreamLoginStore`]; several
    /// instances need a shared one).
    pub fn upstream_login_store(mut self, store: Arc<dyn crate::store::UpstreamLoginStore>) -> Self {
        self.upstream_logins = Some(store);
        self
    }

    /// The client secrets at upstream providers (default: none).
    pub fn upstream_secrets(mut self, secrets: Arc<dyn crate::store::UpstreamSecrets>) -> Self {
        self.upstream_secrets = Some(secrets);
        self
    }

    /// The HTTP client for upstream providers (default: none, so every
    /// upstream login fails with `temporarily_unavailable`; with the
    /// `reqwest` feature use [`crate::net::ReqwestUpstreamHttp`]).
    pub fn upstream_http(mut self, http: Arc<dyn crate::upstream::UpstreamHttp>) -> Self {
        self.upstream_http = Some(http);
        self
    }

    /// The host's hook accepting, refusing or mapping upstream users
    /// (default: [`crate::upstream::AcceptAllUsers`]).
    pub fn user_policy(mut self, policy: Arc<dyn crate::upstream::UserPolicy>) -> Self {
        self.user_policy = Some(policy);
        self
    }

    /// Keep up to `capacity` of the codes, as many of the refresh tokens
    /// and as many of the initial access tokens this server just stored or
    /// used (three maps), so that the request that next presents one (the
    /// code exchange after an authorization, the refresh after a token
    /// response, a registration with a token used moments ago) skips the
    /// store read before the store's atomic call (default 0: off). Worth
    /// it when a read costs a database round trip (the SQL stores): one
    /// statement fewer for each hit. Each map holds at most `capacity`
    /// entries (rounded up to an even number). A typical entry takes well
    /// under 1 KiB; one that carries the largest nonce, redirect URI,
    /// client id, subject, scopes and resources a request may send takes
    /// up to about 30 KiB for a code and 45 KiB for a refresh token (its
    /// own scopes and resources beside the grant's), so budget
    /// `capacity x 80 KiB` as the worst case.
    ///
    /// # Security
    /// Only what the store's consume, rotation or `use_once` call decides
    /// again is taken from here, so every rule holds across servers
    /// sharing the store. What is read from a kept code or refresh token
    /// (client, redirect URI, PKCE challenge, scopes, resources, expiry)
    /// never changes once stored; whether it was consumed or rotated and
    /// whether its grant was revoked, the atomic call decides against the
    /// committed state (a code consumed on another server is still
    /// detected as replayed and revokes its grant; a refresh token rotated
    /// there is still reuse, or the same pair within the grace). An
    /// initial access token's use count and revocation may be up to 5 s
    /// stale here (by the server's clock); its `use_once` refuses a used
    /// up or revoked token all the same, only after the request was
    /// validated (so such a request may still learn that its metadata is
    /// invalid or the client quota is reached). A code or refresh token is
    /// taken from here at most once: presenting it again reads the store.
    /// A code kept here but consumed elsewhere is found replayed by the
    /// consume, after this server signed the tokens it will not hand out;
    /// should that signing fail, the error is answered and the replay is
    /// detected at the code's next presentation.
    pub fn recent_records(mut self, capacity: usize) -> Self {
        self.recent_records = capacity;
        self
    }

    /// Builds the server, filling unset parts with the defaults.
    pub fn build(self) -> AuthorizationServer {
        let users: Arc<dyn crate::store::UserStore> = self
            .users
            .unwrap_or_else(|| Arc::new(crate::store::memory::MemoryUserStore::new()));
        AuthorizationServer {
            issuer: self.issuer,
            paths: self.paths,
            projects: self.projects.unwrap_or_else(|| Arc::new(MemoryProjectStore::new())),
            clients: self.clients.unwrap_or_else(|| Arc::new(MemoryClientStore::new())),
            grants: self.grants.unwrap_or_else(|| Arc::new(MemoryGrantStore::new())),
            token_issuer: self.token_issuer.unwrap_or_else(|| Arc::new(OpaqueTokenIssuer)),
            audit: self.audit.unwrap_or_else(|| Arc::new(MemoryAuditLog::new())),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            random: self.random.unwrap_or_else(|| Arc::new(SystemRandom)),
            iats: self.iats.unwrap_or_else(|| Arc::new(MemoryIatStore::new())),
            registration: self.registration,
            metadata_fetcher: self.metadata_fetcher.unwrap_or_else(cimd::default_fetcher),
            cimd_cache: self.cimd_cache.unwrap_or_else(cimd::default_cache),
            cimd_inflight: Arc::new(cimd::InFlight::default()),
            cimd_limits: self.cimd_limits,
            keys: self.keys.unwrap_or_else(|| Arc::new(MemoryKeyStore::new())),
            key_cache: Arc::new(keys::KeyCache::default()),
            key_cache_ttl: self.key_cache_ttl,
            user_claims: self
                .user_claims
                .unwrap_or_else(|| Arc::new(crate::store::UserStoreClaims(users.clone()))),
            replay: self
                .replay
                .unwrap_or_else(|| Arc::new(crate::store::memory::MemoryReplayStore::default())),
            assertion_jti_quota: self.assertion_jti_quota,
            rotation_lock: Arc::new(futures_util::lock::Mutex::new(())),
            client_jwks: Arc::new(client_auth::ClientJwksCache::default()),
            admissions: self
                .admissions
                .unwrap_or_else(|| Arc::new(crate::store::memory::MemoryAdmissionStore::new())),
            users,
            upstream_logins: self
                .upstream_logins
                .unwrap_or_else(|| Arc::new(crate::store::memory::MemoryUpstreamLoginStore::default())),
            upstream_secrets: self
                .upstream_secrets
                .unwrap_or_else(|| Arc::new(crate::store::memory::MemoryUpstreamSecrets::new())),
            upstream_http: self.upstream_http,
            user_policy: self
                .user_policy
                .unwrap_or_else(|| Arc::new(crate::upstream::AcceptAllUsers)),
            provider_cache: Arc::new(upstream::ProviderCache::default()),
            recent: Arc::new(recent::RecentRecords::new(self.recent_records)),
        }
    }
}
