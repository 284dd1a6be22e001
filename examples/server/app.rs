//! The example authorization server's application: the OAuth router from
//! `authio_mcp::axum`, a small login-and-consent page, and the dashboard's
//! actions as an admin JSON API. Shared with the end-to-end tests.

#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use authio_mcp::audit::{RequestMeta, TeeAuditSink};
use authio_mcp::authorize::PendingAuthorization;
use authio_mcp::axum::{ConsentHandler, RouterPaths, buffer, into_axum, router};
use authio_mcp::client::{Client, RegisteredClientId};
use authio_mcp::dcr::{IatId, IatOptions, RegistrationPolicy};
use authio_mcp::discovery::Issuer;
use authio_mcp::grant::{GrantId, GrantSummary, Subject};
use authio_mcp::http::{
    HeaderOrDefaultProjectResolver, OAuthEndpoints, ProjectBearerCredentials, bearer_token, error_response, json,
};
use authio_mcp::net::{ReqwestFetcher, ReqwestUpstreamHttp};
use authio_mcp::pages::{ConsentUser, ConsentView, ErrorKind, REQUEST_ID_HEADER, request_id};
use authio_mcp::presentation::ProjectDisplay;
use authio_mcp::project::{DcrMode, KnownResource, ProjectId, ProjectSettings};
use authio_mcp::resource::ResourceUri;
use authio_mcp::scope::ScopeSet;
use authio_mcp::secret::SecretString;
use authio_mcp::server::{AuthorizationServer, SignedIn};
use authio_mcp::store::memory::{MemoryAuditLog, MemoryUpstreamSecrets};
use authio_mcp::store::sql::{PostgresStore, SqlOptions, SqliteStore};
use authio_mcp::store::{
    AuditCursor, AuditLog, AuditQuery, AuditSink, CachedClientStore, CachedProjectStore, PageCursor, PageRequest,
    StoreError,
};
use authio_mcp::upstream::{ProviderName, UpstreamClientAuth, UpstreamHttp, UpstreamProvider};
use authio_mcp::{ErrorCode, OAuthError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use tracing::Instrument as _;

/// The demo project, the default one.
pub const DEMO_PROJECT: &str = "proj_demo";
/// The subject `--auto-approve` signs in as.
pub const DEMO_SUBJECT: &str = "user_demo";

/// What the example server is configured with.
#[derive(Clone)]
pub struct Config {
    /// The issuer identifier.
    pub issuer: Issuer,
    /// Bearer token for `/admin`.
    pub admin_token: String,
    /// Approve every valid authorization as `user_demo`.
    pub auto_approve: bool,
    /// Let CIMD documents come from loopback addresses (development).
    pub allow_loopback_cimd: bool,
    /// Extra trusted root certificate (PEM) for CIMD fetches.
    pub cimd_root_cert: Option<Vec<u8>>,
    /// The demo project's DCR mode (after the MCP cascade).
    pub dcr_mode: Option<DcrMode>,
    /// The MCP server the demo project serves (default resource).
    pub resource: ResourceUri,
    /// The credential resource servers present to the introspection endpoint.
    pub introspection_token: String,
    /// Sign users in at an upstream OpenID Connect provider instead of the
    /// demo login.
    pub upstream: Option<UpstreamConfig>,
}

/// `--upstream-*`: the demo project's upstream provider.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// The provider's name in paths (`--upstream-name`, default `oidc`).
    pub name: ProviderName,
    /// Its issuer (`--upstream-issuer`).
    pub issuer: Issuer,
    /// This server's client id there (`--upstream-client-id`).
    pub client_id: String,
    /// Its client secret (`--upstream-client-secret`); `None`: a public
    /// client (PKCE only).
    pub client_secret: Option<SecretString>,
    /// `--upstream-private-key-jwt`: authenticate with a client assertion
    /// signed by the project's key (register `<issuer>/.well-known/jwks.json`
    /// at the provider) instead of the secret.
    pub private_key_jwt: bool,
    /// `--allow-http-upstream`: an `http://` issuer on loopback.
    pub allow_http: bool,
    /// `--upstream-userinfo`: call the provider's userinfo endpoint on
    /// every sign-in (otherwise only when the ID token has no email).
    pub userinfo: bool,
    /// Tests only: the HTTP client to reach the provider with (default: a
    /// `ReqwestUpstreamHttp`).
    pub http: Option<Arc<dyn UpstreamHttp>>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("issuer", &self.issuer)
            .field("admin_token", &"[redacted]")
            .field("auto_approve", &self.auto_approve)
            .field("allow_loopback_cimd", &self.allow_loopback_cimd)
            .field("dcr_mode", &self.dcr_mode)
            .field("resource", &self.resource)
            .field("introspection_token", &"[redacted]")
            .field(
                "upstream",
                &self.upstream.as_ref().map(|u| (u.name.as_str(), u.issuer.as_str())),
            )
            .finish_non_exhaustive()
    }
}

/// Where the server keeps its records.
#[derive(Clone)]
pub enum Storage {
    /// In process memory: lost at exit, not shared between instances.
    Memory,
    /// One SQLite file.
    Sqlite(Arc<SqliteStore>),
    /// A PostgreSQL database, shared by any number of instances.
    Postgres(Arc<PostgresStore>),
}

/// Where the key-encryption key lives when `--key-encryption-key-file`
/// is not given: next to a SQLite database file (`PATH.kek`), else
/// `authio-example.kek` in the working directory (several instances on
/// one PostgreSQL database must all be given the same file).
pub fn key_encryption_key_path(database_url: &str) -> std::path::PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or_default())
        .filter(|f| !f.is_empty() && !f.contains(":memory:"));
    match file {
        Some(f) => std::path::PathBuf::from(format!("{f}.kek")),
        None => std::path::PathBuf::from("authio-example.kek"),
    }
}

/// Reads the 256-bit key-encryption key (standard base64 on one line, as
/// `openssl rand -base64 32` writes it) from `path`, creating the file
/// with a fresh random key (mode 0600) when it does not exist. Two
/// processes starting at once agree on one key: the file appears whole,
/// by a hard link, or not at all. The key id is a fingerprint of the key,
/// so replacing the file is noticed.
pub fn load_or_create_key_encryption_key(
    path: &std::path::Path,
) -> Result<authio_mcp::store::Aes256GcmKeyEncryption, Box<dyn std::error::Error + Send + Sync>> {
    use base64::engine::general_purpose::STANDARD;
    use sha2::Digest as _;
    if !path.exists() {
        let key = authio_mcp::store::Aes256GcmKeyEncryption::generate_key()?;
        let mut nonce = [0u8; 8];
        authio_mcp::server::RandomSource::fill(&authio_mcp::server::SystemRandom, &mut nonce);
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = path.with_extension(format!("kek-{}-{nonce}.tmp", std::process::id()));
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        {
            use std::io::Write as _;
            let mut f = open.open(&tmp)?;
            writeln!(f, "{}", STANDARD.encode(*key))?;
            f.sync_all()?;
        }
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => tracing::warn!(
                path = %path.display(),
                "created a new key-encryption key: signing keys in the database are sealed with it; \
                 back it up apart from the database (without it they cannot be read)"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if std::fs::metadata(path)?.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the key-encryption key file is readable by other users");
        }
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path)?);
    let bytes = zeroize::Zeroizing::new(
        STANDARD
            .decode(text.trim())
            .map_err(|_| "expected 32 bytes in standard base64 on one line")?,
    );
    let key: &[u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| "expected 32 bytes in standard base64 on one line")?;
    let digest = sha2::Sha256::digest(key);
    let id: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(authio_mcp::store::Aes256GcmKeyEncryption::new(
        &format!("file-{id}"),
        key,
    )?)
}

/// Logs what start-up sealing did; a key that cannot be opened (the
/// database was sealed with another key file) stops the start.
fn report_sealed(
    sealed: Result<u64, authio_mcp::store::StoreError>,
    path: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match sealed {
        Ok(0) => Ok(()),
        Ok(n) => {
            tracing::info!(keys = n, key_file = %path.display(), "sealed signing keys stored unsealed or under another key");
            Ok(())
        }
        Err(e) => Err(format!(
            "{e} (is {} the key-encryption key file this database was sealed with?)",
            path.display()
        )
        .into()),
    }
}

impl Storage {
    /// Opens and migrates the store a `--database-url` names: `memory:`,
    /// `sqlite://PATH` (created if missing) or `postgres://...`. SQL
    /// stores seal signing keys with the key-encryption key in
    /// `key_file` (see [`key_encryption_key_path`]; created on first
    /// start), and seal whatever an earlier run stored otherwise.
    pub async fn open(
        url: &str,
        options: SqlOptions,
        key_file: Option<&str>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        if url == "memory:" {
            return Ok(Self::Memory);
        }
        let path = key_file.map_or_else(|| key_encryption_key_path(url), std::path::PathBuf::from);
        let kek = load_or_create_key_encryption_key(&path)
            .map_err(|e| format!("key-encryption key file {}: {e}", path.display()))?;
        let options = options.key_encryption(Arc::new(kek));
        if url.starts_with("sqlite:") {
            let store = SqliteStore::connect(url, options).await?;
            store.migrate().await?;
            let sealed = store.reseal_signing_keys().await;
            report_sealed(sealed, &path)?;
            return Ok(Self::Sqlite(Arc::new(store)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let store = PostgresStore::connect(url, options).await?;
            store.migrate().await?;
            let sealed = store.reseal_signing_keys().await;
            report_sealed(sealed, &path)?;
            return Ok(Self::Postgres(Arc::new(store)));
        }
        Err(format!("--database-url {url}: expected memory:, sqlite://PATH or postgres://...").into())
    }

    /// A short description for the start-up banner (no credentials).
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Memory => "memory (lost at exit)",
            Self::Sqlite(_) => "SQLite",
            Self::Postgres(_) => "PostgreSQL",
        }
    }

    /// Whether the store answers: a memory store always does, a SQL
    /// store when a query goes through.
    pub async fn check(&self) -> Result<(), StoreError> {
        match self {
            Self::Memory => Ok(()),
            Self::Sqlite(s) => s.schema_version().await.map(drop),
            Self::Postgres(s) => s.schema_version().await.map(drop),
        }
    }

    /// Writes queued audit events and closes the database.
    pub async fn close(&self) {
        match self {
            Self::Memory => {}
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }

    /// Deletes what can go: expired codes and tokens, unusable initial
    /// access tokens, expired upstream logins, and (SQL) expired CIMD
    /// entries and old audit events.
    pub async fn purge(&self, server: &AuthorizationServer) -> Result<u64, authio_mcp::store::StoreError> {
        let now = server.now();
        match self {
            Self::Memory => server.purge_expired().await.map(|n| n as u64),
            Self::Sqlite(s) => s.purge(now).await.map(|r| r.total()),
            Self::Postgres(s) => s.purge(now).await.map(|r| r.total()),
        }
    }
}

/// The running application's handles.
#[derive(Clone)]
pub struct App {
    /// The OAuth endpoints.
    pub endpoints: OAuthEndpoints,
    /// The audit log, for `/admin/.../audit`.
    pub audit: Arc<dyn AuditLog>,
    /// Where the records are.
    pub storage: Storage,
    config: Arc<Config>,
    consent: Arc<ConsentPage>,
    /// Set once shutdown began: `/readyz` answers 503 from then on.
    draining: Arc<AtomicBool>,
}

impl App {
    /// Builds the server and the demo project (created through the MCP
    /// cascade, like the dashboard's checkbox).
    #[allow(dead_code)] // the end-to-end tests use it; main sets a policy
    pub async fn new(config: Config) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Self::with_registration_policy(config, RegistrationPolicy::default()).await
    }

    /// Like [`App::new`], with registration limits (e.g. no client quota,
    /// for long load-generator runs).
    #[allow(dead_code)] // the end-to-end tests use memory
    pub async fn with_registration_policy(
        config: Config,
        policy: RegistrationPolicy,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Self::with_storage(config, policy, Storage::Memory, std::time::Duration::ZERO).await
    }

    /// Like [`App::with_registration_policy`], over `storage`. The demo
    /// project is created (through the MCP cascade) only when the store
    /// does not have it yet: a restart keeps the project as it was left.
    /// `project_cache`: how long project settings read from the store are
    /// reused (zero: read on every request).
    pub async fn with_storage(
        config: Config,
        policy: RegistrationPolicy,
        storage: Storage,
        project_cache: std::time::Duration,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Self::with_storage_and_audit(config, policy, storage, project_cache, std::time::Duration::ZERO, None).await
    }

    /// Like [`App::with_storage`]; every audit event also goes to
    /// `extra_audit` (`--audit-jsonl`), after the store's log.
    /// `client_cache`: how long registered clients read from the store are
    /// reused (zero: read on every request).
    pub async fn with_storage_and_audit(
        config: Config,
        policy: RegistrationPolicy,
        storage: Storage,
        project_cache: std::time::Duration,
        client_cache: std::time::Duration,
        extra_audit: Option<Arc<dyn AuditSink>>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let mut fetcher = ReqwestFetcher::builder().danger_allow_loopback_for_development(config.allow_loopback_cimd);
        if let Some(pem) = &config.cimd_root_cert {
            fetcher = fetcher.add_root_certificate_for_development(pem);
        }
        let project = ProjectId::new(DEMO_PROJECT)?;
        let mut builder = AuthorizationServer::builder(config.issuer.clone())
            .metadata_fetcher(Arc::new(fetcher.build()?))
            .registration_policy(policy);
        if let Some(up) = &config.upstream {
            // Upstream users are local users: their claims come from the
            // user store (the server's default claims source).
            let http: Arc<dyn UpstreamHttp> = match &up.http {
                Some(h) => h.clone(),
                None => {
                    let mut b = ReqwestUpstreamHttp::builder().allow_http_loopback_for_development(up.allow_http);
                    if let Some(pem) = &config.cimd_root_cert {
                        b = b.add_root_certificate_for_development(pem);
                    }
                    Arc::new(b.build()?)
                }
            };
            let secrets = MemoryUpstreamSecrets::new();
            if let Some(secret) = &up.client_secret {
                secrets.insert(project.clone(), up.name.clone(), secret.clone())?;
            }
            builder = builder.upstream_http(http).upstream_secrets(Arc::new(secrets));
        } else {
            builder = builder.user_claims(Arc::new(DemoUserClaims));
        }
        let (builder, audit): (_, Arc<dyn AuditLog>) = match &storage {
            Storage::Memory => {
                let audit = Arc::new(MemoryAuditLog::new());
                (builder.audit(audit.clone()), audit)
            }
            Storage::Sqlite(s) => (
                builder
                    .projects(s.clone())
                    .clients(s.clone())
                    .iats(s.clone())
                    .grants(s.clone())
                    .cimd_cache(s.clone())
                    .key_store(s.clone())
                    .replay_store(s.clone())
                    .admission_store(s.clone())
                    // Local users and remembered consent survive a
                    // restart; logins in flight are shared, so the
                    // provider's callback may reach any instance.
                    .user_store(s.clone())
                    .upstream_login_store(s.clone())
                    .audit(s.clone()),
                s.clone(),
            ),
            Storage::Postgres(s) => (
                builder
                    .projects(s.clone())
                    .clients(s.clone())
                    .iats(s.clone())
                    .grants(s.clone())
                    .cimd_cache(s.clone())
                    .key_store(s.clone())
                    .replay_store(s.clone())
                    .admission_store(s.clone())
                    // Local users and remembered consent survive a
                    // restart; logins in flight are shared, so the
                    // provider's callback may reach any instance.
                    .user_store(s.clone())
                    .upstream_login_store(s.clone())
                    .audit(s.clone()),
                s.clone(),
            ),
        };
        let builder = match extra_audit {
            Some(extra) => builder.audit(Arc::new(TeeAuditSink::new(audit.clone(), extra))),
            None => builder,
        };
        let builder = match (&storage, project_cache.is_zero()) {
            (_, true) | (Storage::Memory, _) => builder,
            (Storage::Sqlite(s), false) => {
                builder.projects(Arc::new(CachedProjectStore::new(s.clone(), project_cache)))
            }
            (Storage::Postgres(s), false) => {
                builder.projects(Arc::new(CachedProjectStore::new(s.clone(), project_cache)))
            }
        };
        let builder = match (&storage, client_cache.is_zero()) {
            (_, true) | (Storage::Memory, _) => builder,
            (Storage::Sqlite(s), false) => builder.clients(Arc::new(CachedClientStore::new(s.clone(), client_cache))),
            (Storage::Postgres(s), false) => builder.clients(Arc::new(CachedClientStore::new(s.clone(), client_cache))),
        };
        let server = builder.build();
        match server.project(&project).await {
            Ok(_) => {} // kept from an earlier run: never re-seeded over
            Err(authio_mcp::server::AdminError::UnknownProject) => Self::seed(&server, &project, &config).await?,
            Err(e) => return Err(e.into()),
        }
        if let Some(up) = &config.upstream {
            // The flags name the provider on every start (also for a kept
            // project).
            let prefix = server.paths().upstream.clone();
            let mut provider = UpstreamProvider::generic(up.name.clone(), up.issuer.clone(), up.client_id.clone());
            provider.fetch_userinfo = up.userinfo;
            provider.client_auth = if up.private_key_jwt {
                UpstreamClientAuth::PrivateKeyJwt
            } else if up.client_secret.is_some() {
                UpstreamClientAuth::ClientSecretBasic
            } else {
                UpstreamClientAuth::None
            };
            let failed = Mutex::new(None);
            server
                .edit_project(&project, |mut s| {
                    s.upstream.providers.retain(|p| p.name != provider.name);
                    s.upstream.providers.push(provider.clone());
                    if let Err(e) = s.select_upstream(Some(up.name.clone()), prefix.as_str())
                        && let Ok(mut slot) = failed.lock()
                    {
                        *slot = Some(e);
                    }
                    s
                })
                .await?;
            if let Some(e) = failed.into_inner().ok().flatten() {
                return Err(e.into());
            }
        }
        let endpoints = OAuthEndpoints::new(server, Arc::new(HeaderOrDefaultProjectResolver::new(project)))
            // The credential is the demo project's only: a resource server
            // of another project cannot read the demo project's tokens.
            .with_introspection_authenticator(Arc::new(ProjectBearerCredentials::new().with(
                ProjectId::new(DEMO_PROJECT)?,
                SecretString::from(config.introspection_token.as_str()),
            )));
        let consent = Arc::new(ConsentPage {
            pending: Mutex::new(WaitingRoom::default()),
            limits: ConsentLimits::default(),
            auto_approve: config.auto_approve,
            secure_cookie: config.issuer.as_str().starts_with("https://"),
        });
        Ok(Self {
            endpoints,
            audit,
            storage,
            config: Arc::new(config),
            consent,
            draining: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Creates the demo project.
    async fn seed(
        server: &AuthorizationServer,
        project: &ProjectId,
        config: &Config,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut settings = ProjectSettings::default();
        settings.scopes_supported = ScopeSet::parse("openid email profile mcp:read mcp:write")?;
        settings.default_scopes = ScopeSet::parse("mcp:read mcp:write")?;
        settings.default_resource = Some(config.resource.clone());
        // The default resource is known as it is; listing it too gives it
        // the name the consent page and the admin API show.
        settings
            .resources
            .upsert(KnownResource::new(config.resource.clone(), "Demo MCP server")?);
        // What the consent page names: the service.
        let mut display = ProjectDisplay::default();
        display.name = Some("Authio demo".to_owned());
        settings.display = display;
        server.put_project(project, settings).await?;
        server.set_mcp_enabled(project, true).await?;
        if let Some(mode) = config.dcr_mode {
            server
                .edit_project(project, |mut s| {
                    s.dcr_mode = mode;
                    s
                })
                .await?;
        }
        Ok(())
    }

    #[allow(dead_code)] // the tests set small limits; main keeps the defaults
    /// Replaces the pending-consent limits (before [`App::router`]; pending
    /// consents already held are dropped).
    #[must_use]
    pub fn with_consent_limits(mut self, limits: ConsentLimits) -> Self {
        self.consent = Arc::new(ConsentPage {
            pending: Mutex::new(WaitingRoom::default()),
            limits,
            auto_approve: self.consent.auto_approve,
            secure_cookie: self.consent.secure_cookie,
        });
        self
    }

    /// The demo project id.
    pub fn project(&self) -> ProjectId {
        ProjectId::new(DEMO_PROJECT).unwrap_or_else(|_| unreachable!("a valid literal"))
    }

    /// The whole router: OAuth endpoints, consent form, admin API, and a
    /// request log line per request.
    pub async fn router(&self) -> Result<Router, OAuthError> {
        let settings = self
            .endpoints
            .server()
            .project(&self.project())
            .await
            .map_err(|_| OAuthError::server_error())?;
        // `/oauth2/authorize` stays mounted; with an upstream provider
        // selected it starts the upstream login too, and the provider's own
        // `/v1/auth/oauth/{provider}/authorize` (what discovery advertises)
        // is mounted by the router.
        let _ = settings;
        let paths = RouterPaths::new(&self.endpoints, "/oauth2/authorize");
        let oauth = router(self.endpoints.clone(), self.consent.clone(), &paths);
        let admin = Router::new()
            .route(
                "/admin/projects/{id}",
                get(admin_get_project).patch(admin_patch_project),
            )
            .route("/admin/projects/{id}/mcp", post(admin_set_mcp))
            .route("/admin/projects/{id}/audit", get(admin_audit))
            .route("/admin/projects/{id}/audit/rejections", get(admin_audit_rejections))
            .route("/admin/projects/{id}/iats", post(admin_issue_iat).get(admin_list_iats))
            .route("/admin/projects/{id}/iats/{iat_id}", delete(admin_revoke_iat))
            .route(
                "/admin/projects/{id}/signing-keys/{kid}/revoke",
                post(admin_revoke_signing_key),
            )
            .route(
                "/admin/projects/{id}/resources",
                get(admin_list_resources)
                    .post(admin_put_resource)
                    .delete(admin_remove_resource),
            )
            .route("/admin/projects/{id}/clients", get(admin_list_clients))
            .route(
                "/admin/projects/{id}/clients/{client_id}",
                get(admin_get_client).delete(admin_delete_client),
            )
            .route(
                "/admin/projects/{id}/clients/{client_id}/disable",
                post(admin_disable_client),
            )
            .route(
                "/admin/projects/{id}/clients/{client_id}/enable",
                post(admin_enable_client),
            )
            .route(
                "/admin/projects/{id}/users/{subject}/grants",
                get(admin_user_grants).delete(admin_revoke_user_grants),
            )
            .route(
                "/admin/projects/{id}/users/{subject}/grants/{grant_id}",
                delete(admin_revoke_user_grant),
            )
            .route("/admin/cimd/resolve", post(admin_cimd_resolve))
            .route("/consent", post(consent_submit))
            .route("/metrics", get(metrics_text))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(self.clone());
        Ok(oauth.merge(admin).layer(axum::middleware::from_fn(log_request)))
    }

    /// Issues an IAT for the demo project and describes it, for the
    /// start-up banner.
    pub async fn startup_lines(&self) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
        let iat = self
            .endpoints
            .server()
            // Valid for a day: with a persistent store, the tokens printed
            // by earlier starts must not stay usable forever.
            .issue_iat(
                &self.project(),
                IatOptions::new()
                    .label("printed at start-up")
                    .ttl(time::Duration::days(1)),
            )
            .await?;
        Ok(vec![format!(
            "initial access token: {} (id {}, valid for 24 hours)",
            iat.token.expose_secret(),
            iat.id.as_str()
        )])
    }

    /// Shutdown began: `/readyz` answers 503 so load balancers stop
    /// sending new requests while the ones in flight finish.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    fn check_admin(&self, headers: &HeaderMap) -> Result<(), OAuthError> {
        let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let expected = SecretString::from(self.config.admin_token.as_str());
        if bearer_token(auth).is_some_and(|t| expected.ct_eq(t)) {
            Ok(())
        } else {
            Err(OAuthError::with_description(
                ErrorCode::InvalidToken,
                "admin token required",
            ))
        }
    }
}

/// `POST /admin/cimd/resolve`: the CIMD preview with its cache state
/// (`from_cache`, `cache_expires_at`), behind the admin token; the
/// anonymous `/oauth2/cimd/resolve` answers only the validation result.
async fn admin_cimd_resolve(State(app): State<App>, req: axum::extract::Request) -> Response {
    if let Err(e) = app.check_admin(req.headers()) {
        return admin_error(&e);
    }
    match authio_mcp::axum::buffer(authio_mcp::axum::with_request_source(req), 64 * 1024).await {
        Ok(req) => authio_mcp::axum::into_axum(app.endpoints.cimd_resolve_with_cache_details(&req).await),
        Err(r) => r,
    }
}

/// The process-wide Prometheus recorder, once [`install_metrics`] ran.
static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder the library's metrics go to (see
/// `authio_mcp::metrics`); `/metrics` serves them. Idempotent.
pub fn install_metrics() {
    if METRICS.get().is_none()
        && let Ok(handle) = PrometheusBuilder::new().install_recorder()
    {
        let _ = METRICS.set(handle);
    }
}

/// `GET /metrics`: Prometheus text exposition, behind the admin token.
async fn metrics_text(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(e) = app.check_admin(&headers) {
        return admin_error(&e);
    }
    let Some(handle) = METRICS.get() else {
        return admin_error(&OAuthError::with_description(
            ErrorCode::InvalidRequest,
            "metrics are not enabled in this process",
        ));
    };
    let mut r = Response::new(handle.render().into());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// A small JSON status answer, never cached.
fn status_json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = into_axum(json(status, serde_json::to_vec(&body).unwrap_or_default()));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /healthz`: 200 when the store answers, 503 otherwise (the
/// failure is logged, never shown). No credentials needed; nothing
/// secret in the answer.
async fn healthz(State(app): State<App>) -> Response {
    match app.storage.check().await {
        Ok(()) => status_json(StatusCode::OK, serde_json::json!({"status": "ok", "store": "ok"})),
        Err(e) => {
            e.log();
            status_json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "unavailable", "store": "unreachable"}),
            )
        }
    }
}

/// `GET /readyz`: 200 while the server takes new requests (started, the
/// store answering, not shutting down), 503 otherwise.
async fn readyz(State(app): State<App>) -> Response {
    if app.draining.load(Ordering::Relaxed) {
        return status_json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "draining"}),
        );
    }
    match app.storage.check().await {
        Ok(()) => status_json(StatusCode::OK, serde_json::json!({"status": "ready"})),
        Err(e) => {
            e.log();
            status_json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "unavailable", "store": "unreachable"}),
            )
        }
    }
}

/// One log line per request: method, path (never the query, which can
/// carry codes), status, duration; every line logged while the request
/// runs carries its request id (also sent back as `x-request-id`), and
/// every audit event it causes records the id, the peer address and the
/// user agent ([`RequestMeta::scope`]).
async fn log_request(mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let mut id = [0u8; 8];
    authio_mcp::server::RandomSource::fill(&authio_mcp::server::SystemRandom, &mut id);
    let request_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    // The id goes on the request too (replacing any the client sent), so
    // the library's error pages show the id this log line carries.
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        req.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let mut meta = RequestMeta::new().request_id(&request_id);
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        meta = meta.client_ip(peer.ip());
    }
    if let Some(ua) = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        meta = meta.user_agent(ua);
    }
    let span = tracing::info_span!("request", id = %request_id);
    let mut response = async {
        let response = meta.scope(next.run(req)).await;
        tracing::info!(
            %method,
            path,
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
        response
    }
    .instrument(span)
    .await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

fn admin_error(e: &OAuthError) -> Response {
    into_axum(error_response(e))
}

fn json_ok(value: &serde_json::Value) -> Response {
    into_axum(json(StatusCode::OK, serde_json::to_vec(value).unwrap_or_default()))
}

fn project_id(id: &str) -> Result<ProjectId, OAuthError> {
    ProjectId::new(id).map_err(|_| OAuthError::unknown_project())
}

fn admin_failure(e: authio_mcp::server::AdminError) -> OAuthError {
    use authio_mcp::server::AdminError;
    match e {
        AdminError::UnknownProject => OAuthError::unknown_project(),
        AdminError::InvalidSettings(s) => OAuthError::with_description(ErrorCode::InvalidRequest, s.to_string()),
        AdminError::UnknownIat => {
            OAuthError::with_description(ErrorCode::InvalidRequest, "unknown IAT").with_status(StatusCode::NOT_FOUND)
        }
        AdminError::InvalidIatOptions(e) => OAuthError::with_description(ErrorCode::InvalidRequest, e.to_string()),
        AdminError::Conflict => {
            OAuthError::with_description(ErrorCode::TemporarilyUnavailable, "concurrent update; retry")
        }
        AdminError::UnknownClient => not_found("unknown client"),
        AdminError::UnknownGrant => not_found("unknown grant"),
        _ => OAuthError::server_error(),
    }
}

fn not_found(what: &'static str) -> OAuthError {
    OAuthError::with_description(ErrorCode::InvalidRequest, what).with_status(StatusCode::NOT_FOUND)
}

fn bad_request(description: impl Into<String>) -> OAuthError {
    OAuthError::with_description(ErrorCode::InvalidRequest, description.into())
}

/// The JSON body of an admin request: `Content-Type: application/json`
/// (or a `+json` type) is required, else 415 with a JSON error; a body
/// that does not parse is 400 naming the problem.
fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, OAuthError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/json" || (m.starts_with("application/") && m.ends_with("+json")));
    if !json {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidRequest,
            "the body must be JSON: send Content-Type: application/json",
        )
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

async fn admin_get_project(State(app): State<App>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let settings = app.endpoints.server().project(&p).await.map_err(admin_failure)?;
        Ok(serde_json::json!({"id": p, "settings": settings, "lints": settings.lints()}))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

#[derive(Deserialize)]
struct McpSwitch {
    enabled: bool,
}

async fn admin_set_mcp(State(app): State<App>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let body: McpSwitch = json_body(&headers, &body)?;
        let (settings, changes) = app
            .endpoints
            .server()
            .set_mcp_enabled(&p, body.enabled)
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::json!({"settings": settings, "changes": changes, "lints": settings.lints()}))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// The demo's user directory for ID tokens and userinfo: every user has
/// the verified address `<subject>@example.com`.
struct DemoUserClaims;

#[async_trait]
impl authio_mcp::store::UserClaimsSource for DemoUserClaims {
    async fn claims(
        &self,
        _project: &ProjectId,
        subject: &Subject,
    ) -> Result<authio_mcp::jwt::UserClaims, authio_mcp::store::StoreError> {
        Ok(authio_mcp::jwt::UserClaims::with_email(
            format!("{}@example.com", subject.as_str()),
            true,
        ))
    }
}

/// The fields `PATCH /admin/projects/{id}` may change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectPatch {
    dcr_mode: Option<DcrMode>,
    cimd_enabled: Option<bool>,
    access_token_ttl: Option<i64>,
    refresh_token_ttl: Option<i64>,
    code_ttl: Option<authio_mcp::project::CodeTtl>,
    scopes_supported: Option<ScopeSet>,
    default_scopes: Option<ScopeSet>,
    default_resource: Option<ResourceUri>,
    require_resource: Option<bool>,
    resource_policy: Option<authio_mcp::project::ResourcePolicy>,
    /// The whole list of known resources (`[{"resource", "name"}]`),
    /// replacing the current one.
    resources: Option<authio_mcp::project::KnownResources>,
    cimd: Option<authio_mcp::cimd::CimdPolicy>,
    access_token_format: Option<authio_mcp::project::AccessTokenFormat>,
    signing: Option<authio_mcp::keys::SigningSettings>,
    strict_mode: Option<bool>,
    refresh_reuse_grace: Option<i64>,
    redirect_uri_policy: Option<authio_mcp::redirect_uri::RedirectUriPolicy>,
    tokenless_registration: Option<authio_mcp::tokenless::TokenlessRegistration>,
    /// The consent page's service name and logo, scope descriptions and
    /// resource names (replaced as a whole).
    display: Option<ProjectDisplay>,
}

async fn admin_patch_project(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let patch: ProjectPatch = json_body(&headers, &body)?;
        let settings = app
            .endpoints
            .server()
            .edit_project(&p, |mut s| {
                apply_patch(&mut s, &patch);
                s
            })
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::json!({"id": p, "settings": settings, "lints": settings.lints()}))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

fn apply_patch(s: &mut ProjectSettings, patch: &ProjectPatch) {
    if let Some(v) = patch.dcr_mode {
        s.dcr_mode = v;
    }
    if let Some(v) = patch.cimd_enabled {
        s.cimd_enabled = v;
    }
    if let Some(v) = patch.access_token_ttl {
        s.access_token_ttl = time::Duration::seconds(v);
    }
    if let Some(v) = patch.refresh_token_ttl {
        s.refresh_token_ttl = time::Duration::seconds(v);
    }
    if let Some(v) = patch.code_ttl {
        s.code_ttl = v;
    }
    if let Some(v) = &patch.scopes_supported {
        s.scopes_supported = v.clone();
    }
    if let Some(v) = &patch.default_scopes {
        s.default_scopes = v.clone();
    }
    if let Some(v) = &patch.default_resource {
        s.default_resource = Some(v.clone());
    }
    if let Some(v) = patch.require_resource {
        s.require_resource = v;
    }
    if let Some(v) = patch.resource_policy {
        s.resource_policy = v;
    }
    if let Some(v) = &patch.resources {
        s.resources = v.clone();
    }
    if let Some(v) = &patch.cimd {
        s.cimd = v.clone();
    }
    if let Some(v) = patch.access_token_format {
        s.access_token_format = v;
    }
    if let Some(v) = patch.signing {
        s.signing = v;
    }
    if let Some(v) = patch.strict_mode {
        s.strict_mode = v;
    }
    if let Some(v) = patch.refresh_reuse_grace {
        s.refresh_reuse_grace = time::Duration::seconds(v);
    }
    if let Some(v) = patch.redirect_uri_policy {
        s.redirect_uri_policy = v;
    }
    if let Some(v) = &patch.tokenless_registration {
        s.tokenless_registration = v.clone();
    }
    if let Some(v) = &patch.display {
        s.display = v.clone();
    }
}

/// `GET /admin/projects/{id}/audit` query: `event` (a dotted name),
/// `since` / `until` (unix seconds), `limit` (default 500), `before` (the
/// `X-Next-Cursor` of the previous page).
#[derive(Default)]
struct AuditParams {
    event: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<usize>,
    before: Option<u64>,
}

impl AuditParams {
    fn parse(query: &str) -> Result<Self, OAuthError> {
        let mut p = Self::default();
        let bad = |name: &str| OAuthError::with_description(ErrorCode::InvalidRequest, format!("bad {name}"));
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "event" => p.event = Some(v.into_owned()),
                "since" => p.since = Some(v.parse().map_err(|_| bad("since"))?),
                "until" => p.until = Some(v.parse().map_err(|_| bad("until"))?),
                "limit" => p.limit = Some(v.parse().map_err(|_| bad("limit"))?),
                "before" => p.before = Some(v.parse().map_err(|_| bad("before"))?),
                _ => {}
            }
        }
        Ok(p)
    }
}

/// One page of the project's audit events, oldest first (the newest
/// `limit` of the selection); `X-Next-Cursor` names the older page.
async fn admin_audit(State(app): State<App>, Path(id): Path<String>, uri: http::Uri, headers: HeaderMap) -> Response {
    let result = async {
        let params = AuditParams::parse(uri.query().unwrap_or(""))?;
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        app.endpoints.server().project(&p).await.map_err(admin_failure)?;
        let time = |s: Option<i64>| s.and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok());
        let mut query = AuditQuery::new(p)
            .between(time(params.since), time(params.until))
            .limit(params.limit.unwrap_or(500))
            .before(params.before.map(AuditCursor::new));
        if let Some(event) = params.event {
            query = query.event(event);
        }
        let mut page = app.audit.query(&query).await.map_err(|_| OAuthError::server_error())?;
        page.events.reverse();
        Ok((serde_json::to_value(&page.events).unwrap_or_default(), page.next))
    }
    .await;
    match result {
        Ok((v, next)) => {
            let mut response = json_ok(&v);
            if let Some(next) = next
                && let Ok(value) = HeaderValue::from_str(&next.get().to_string())
            {
                response.headers_mut().insert("x-next-cursor", value);
            }
            response
        }
        Err(e) => admin_error(&e),
    }
}

/// `GET /admin/projects/{id}/audit/rejections`: the counts of rejected
/// anonymous requests per minute, event and reason, from whichever store
/// keeps the audit log (memory, SQLite or PostgreSQL).
async fn admin_audit_rejections(State(app): State<App>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        app.endpoints.server().project(&p).await.map_err(admin_failure)?;
        let counts = app
            .audit
            .rejection_counts(&p)
            .await
            .map_err(|_| OAuthError::server_error())?;
        Ok(serde_json::to_value(counts).unwrap_or_default())
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `POST /admin/projects/{id}/iats` body.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IatRequest {
    max_uses: Option<u32>,
    /// Seconds.
    expires_in: Option<i64>,
    label: Option<String>,
}

async fn admin_issue_iat(State(app): State<App>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let req: IatRequest = if body.is_empty() {
            IatRequest::default()
        } else {
            json_body(&headers, &body)?
        };
        let mut options = IatOptions::new();
        if let Some(n) = req.max_uses {
            options = options.max_uses(n);
        }
        if let Some(secs) = req.expires_in {
            options = options.ttl(time::Duration::seconds(secs));
        }
        if let Some(label) = req.label {
            options = options.label(label);
        }
        let issued = app
            .endpoints
            .server()
            .issue_iat(&p, options)
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::json!({"id": issued.id, "token": issued.token.expose_secret(), "iat": issued.view}))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

async fn admin_list_iats(State(app): State<App>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let list = app.endpoints.server().list_iats(&p).await.map_err(admin_failure)?;
        Ok(serde_json::to_value(list).unwrap_or_default())
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

async fn admin_revoke_iat(
    State(app): State<App>,
    Path((id, iat_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let iat =
            IatId::new(iat_id).map_err(|_| OAuthError::with_description(ErrorCode::InvalidRequest, "unknown IAT"))?;
        let view = app
            .endpoints
            .server()
            .revoke_iat(&p, &iat)
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::to_value(view).unwrap_or_default())
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `POST /admin/projects/{id}/signing-keys/{kid}/revoke`: the emergency
/// revocation of a signing key believed compromised (unpublished and
/// replaced at once); answers `{"kid": ..., "replaced_by": ...}`.
async fn admin_revoke_signing_key(
    State(app): State<App>,
    Path((id, kid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let unknown = || {
            OAuthError::with_description(ErrorCode::InvalidRequest, "unknown signing key")
                .with_status(StatusCode::NOT_FOUND)
        };
        let kid = authio_mcp::keys::KeyId::new(kid).map_err(|_| unknown())?;
        let r = app
            .endpoints
            .server()
            .revoke_signing_key(&p, &kid)
            .await
            .map_err(|e| match e {
                authio_mcp::server::AdminError::UnknownSigningKey => unknown(),
                e => admin_failure(e),
            })?;
        Ok(serde_json::json!({
            "kid": r.kid.as_str(),
            "replaced_by": r.replaced_by.as_ref().map(authio_mcp::keys::KeyId::as_str),
        }))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `?limit=&after=` of the admin listings: at most `limit` items (default
/// 50, at most 500) after the cursor a previous page returned as `next`.
fn page_request(uri: &http::Uri) -> Result<PageRequest, OAuthError> {
    let mut limit = 50;
    let mut after = None;
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=authio_mcp::store::MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| bad_request("limit must be a number from 1 to 500"))?;
            }
            "after" => {
                after =
                    Some(PageCursor::parse(&v).map_err(|_| bad_request("after is not a cursor this API returned"))?);
            }
            _ => {}
        }
    }
    Ok(PageRequest::first(limit).after(after))
}

/// A registered client as the admin API shows it: its public metadata,
/// state and times; never its secret or the secret's hash.
fn client_view(client: &Client) -> serde_json::Value {
    let mut v = serde_json::to_value(&client.metadata).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("client_id".into(), client.client_id.as_str().into());
        obj.insert("issued_at".into(), client.issued_at.unix_timestamp().into());
        obj.insert("confidential".into(), client.is_confidential().into());
        obj.insert(
            "secret_expires_at".into(),
            client.secret_expires_at.map(|t| t.unix_timestamp()).into(),
        );
        obj.insert("disabled".into(), client.is_disabled().into());
        obj.insert(
            "disabled_at".into(),
            client.disabled_at.map(|t| t.unix_timestamp()).into(),
        );
    }
    v
}

/// A grant as the admin API shows it.
fn grant_view(s: &GrantSummary) -> serde_json::Value {
    serde_json::json!({
        "grant_id": s.grant.id,
        "client_id": s.grant.client_id.as_str(),
        "subject": s.grant.subject.as_str(),
        "scope": s.grant.scopes.to_string(),
        "resources": s.grant.resources.audiences(),
        "granted_at": s.grant.granted_at.unix_timestamp(),
        "last_used_at": s.last_used_at.map(|t| t.unix_timestamp()),
        "expires_at": s.expires_at.unix_timestamp(),
    })
}

fn client_id(id: &str) -> Result<RegisteredClientId, OAuthError> {
    RegisteredClientId::new(id).map_err(|_| not_found("unknown client"))
}

fn subject(s: &str) -> Result<Subject, OAuthError> {
    Subject::new(s).map_err(|e| bad_request(e.to_string()))
}

/// The project's known resources: `{"default_resource", "resource_policy",
/// "resources": [{"resource", "name", "default"}]}` (the default resource
/// first, named when it is also listed).
fn resources_view(settings: &ProjectSettings) -> serde_json::Value {
    let mut list = Vec::new();
    if let Some(d) = &settings.default_resource {
        list.push(serde_json::json!({
            "resource": d.canonical(),
            "name": settings.resource_name(d),
            "default": true,
        }));
    }
    for k in &settings.resources {
        if settings.default_resource.as_ref() != Some(&k.resource) {
            list.push(serde_json::json!({"resource": k.resource.canonical(), "name": k.name, "default": false}));
        }
    }
    serde_json::json!({
        "default_resource": settings.default_resource.as_ref().map(ResourceUri::canonical),
        "resource_policy": settings.resource_policy,
        "resources": list,
        "lints": settings.lints(),
    })
}

/// `GET /admin/projects/{id}/resources`.
async fn admin_list_resources(State(app): State<App>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let settings = app.endpoints.server().project(&p).await.map_err(admin_failure)?;
        Ok(resources_view(&settings))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `POST /admin/projects/{id}/resources` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceEntry {
    resource: ResourceUri,
    name: String,
}

/// `POST /admin/projects/{id}/resources`: adds a known resource, or
/// renames a listed one (`{"resource", "name"}`).
async fn admin_put_resource(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let entry: ResourceEntry = json_body(&headers, &body)?;
        let known = KnownResource::new(entry.resource, entry.name).map_err(|e| bad_request(e.to_string()))?;
        let settings = app
            .endpoints
            .server()
            .edit_project(&p, |mut s| {
                s.resources.upsert(known.clone());
                s
            })
            .await
            .map_err(admin_failure)?;
        Ok(resources_view(&settings))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `DELETE /admin/projects/{id}/resources?resource=URI`: removes a listed
/// resource (404 when it is not listed). The default resource stays known
/// as long as it is the default.
async fn admin_remove_resource(
    State(app): State<App>,
    Path(id): Path<String>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let raw = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "resource")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| bad_request("the resource query parameter is required"))?;
        let resource = ResourceUri::parse(raw).map_err(|e| bad_request(e.to_string()))?;
        let server = app.endpoints.server();
        if !server
            .project(&p)
            .await
            .map_err(admin_failure)?
            .resources
            .contains(&resource)
        {
            return Err(not_found("the resource is not listed"));
        }
        let settings = server
            .edit_project(&p, |mut s| {
                s.resources.remove(&resource);
                s
            })
            .await
            .map_err(admin_failure)?;
        Ok(resources_view(&settings))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `GET /admin/projects/{id}/clients?limit=&after=`: one page of the
/// registered clients, oldest first: `{"clients": [...], "next": cursor or
/// null}`.
async fn admin_list_clients(
    State(app): State<App>,
    Path(id): Path<String>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let page = page_request(&uri)?;
        let page = app
            .endpoints
            .server()
            .list_clients(&p, &page)
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::json!({
            "clients": page.items.iter().map(client_view).collect::<Vec<_>>(),
            "next": page.next.map(|c| c.to_string()),
        }))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `GET /admin/projects/{id}/clients/{client_id}`.
async fn admin_get_client(
    State(app): State<App>,
    Path((id, cid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let client = app
            .endpoints
            .server()
            .client(&p, &client_id(&cid)?)
            .await
            .map_err(admin_failure)?;
        Ok(client_view(&client))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `POST /admin/projects/{id}/clients/{client_id}/disable`.
async fn admin_disable_client(
    State(app): State<App>,
    Path((id, cid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let client = app
            .endpoints
            .server()
            .disable_client(&p, &client_id(&cid)?)
            .await
            .map_err(admin_failure)?;
        Ok(client_view(&client))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `POST /admin/projects/{id}/clients/{client_id}/enable`.
async fn admin_enable_client(
    State(app): State<App>,
    Path((id, cid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let client = app
            .endpoints
            .server()
            .enable_client(&p, &client_id(&cid)?)
            .await
            .map_err(admin_failure)?;
        Ok(client_view(&client))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `DELETE /admin/projects/{id}/clients/{client_id}`: deletes the client
/// and revokes its grants: `{"client_id", "grants_revoked"}`.
async fn admin_delete_client(
    State(app): State<App>,
    Path((id, cid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let cid = client_id(&cid)?;
        let n = app
            .endpoints
            .server()
            .delete_client(&p, &cid)
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::json!({"client_id": cid.as_str(), "grants_revoked": n}))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `GET /admin/projects/{id}/users/{subject}/grants?limit=&after=`: one
/// page of the user's grants: `{"grants": [...], "next": cursor or null}`.
async fn admin_user_grants(
    State(app): State<App>,
    Path((id, sub)): Path<(String, String)>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let page = page_request(&uri)?;
        let page = app
            .endpoints
            .server()
            .user_grants(&p, &subject(&sub)?, &page)
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::json!({
            "grants": page.items.iter().map(grant_view).collect::<Vec<_>>(),
            "next": page.next.map(|c| c.to_string()),
        }))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `DELETE /admin/projects/{id}/users/{subject}/grants/{grant_id}`.
async fn admin_revoke_user_grant(
    State(app): State<App>,
    Path((id, sub, grant)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let grant = GrantId::new(grant).map_err(|_| not_found("unknown grant"))?;
        let summary = app
            .endpoints
            .server()
            .revoke_user_grant(&p, &subject(&sub)?, &grant)
            .await
            .map_err(admin_failure)?;
        Ok(grant_view(&summary))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `DELETE /admin/projects/{id}/users/{subject}/grants`: revokes every
/// grant of the user (account deletion): `{"subject", "grants_revoked"}`.
async fn admin_revoke_user_grants(
    State(app): State<App>,
    Path((id, sub)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let sub = subject(&sub)?;
        let n = app
            .endpoints
            .server()
            .revoke_user_grants(&p, &sub)
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::json!({"subject": sub.as_str(), "grants_revoked": n}))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// Limits of the pending-consent store (pending consents live 10
/// minutes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsentLimits {
    /// Pending consents kept at most, from every source.
    pub max_entries: usize,
    /// Bytes kept at most, from every source (each entry counts its
    /// compact size, [`ConsentLimits::entry_bytes`]).
    pub max_bytes: usize,
    /// Pending consents one source (an IPv4 address, an IPv6 /64) may hold.
    pub per_source: usize,
    /// Pending consents one client may hold (a CIMD client is shared by
    /// all its users, so this is high; the per-source cap is what stops a
    /// flood).
    pub per_client: usize,
}

impl Default for ConsentLimits {
    /// 10,000 entries and 32 MiB in all, 32 per source, 2,000 per client.
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 32 * 1024 * 1024,
            per_source: 32,
            per_client: 2_000,
        }
    }
}

impl ConsentLimits {
    /// What one entry is counted as: its compact form's heap bytes, its
    /// id and client id, and the fixed part with the indexes' share.
    pub const fn entry_bytes(held: usize, key: usize, client: usize) -> usize {
        held + 3 * key + 2 * client + std::mem::size_of::<Waiting>() + 96
    }
}

/// A pending consent, kept server-side in compact form: the authorization
/// as its JSON bytes (an upstream sign-in, which needs a signed-in user
/// and so cannot be flooded anonymously, whole), the form's CSRF value and
/// cookie as SHA-256 digests.
struct Waiting {
    held: Held,
    csrf: authio_mcp::secret::SecretHash,
    cookie: authio_mcp::secret::SecretHash,
    /// Who started it (the connection's source), for the per-source cap.
    source: Option<authio_mcp::cimd::RequestSource>,
    client: Box<str>,
    created_at: time::OffsetDateTime,
    bytes: usize,
}

enum Held {
    Pending(Box<[u8]>),
    SignedIn(Box<SignedIn>),
}

impl Held {
    fn heap_bytes(&self) -> usize {
        match self {
            Self::Pending(json) => json.len(),
            // Not flood-prone; counted as its authorization's JSON and a
            // generous allowance for the user record.
            Self::SignedIn(s) => serde_json::to_vec(&s.pending).map_or(4096, |v| v.len()) + 1024,
        }
    }
}

/// The pending consents with their per-source and per-client indexes.
#[derive(Default)]
struct WaitingRoom {
    entries: HashMap<String, Waiting>,
    /// Ids per source, oldest first.
    by_source: HashMap<Option<authio_mcp::cimd::RequestSource>, std::collections::VecDeque<String>>,
    per_client: HashMap<Box<str>, usize>,
    /// Ids in arrival order, for expiry.
    order: std::collections::VecDeque<(time::OffsetDateTime, String)>,
    bytes: usize,
}

impl WaitingRoom {
    fn insert(&mut self, id: String, w: Waiting) {
        self.bytes += w.bytes;
        *self.per_client.entry(w.client.clone()).or_default() += 1;
        self.by_source
            .entry(w.source.clone())
            .or_default()
            .push_back(id.clone());
        self.order.push_back((w.created_at, id.clone()));
        self.entries.insert(id, w);
    }

    fn remove(&mut self, id: &str) -> Option<Waiting> {
        let w = self.entries.remove(id)?;
        self.bytes = self.bytes.saturating_sub(w.bytes);
        if let Some(n) = self.per_client.get_mut(&w.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&w.client);
            }
        }
        if let Some(ids) = self.by_source.get_mut(&w.source) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_source.remove(&w.source);
            }
        }
        Some(w)
    }

    /// Drops what is older than the pending-authorization lifetime.
    fn expire(&mut self, now: time::OffsetDateTime) {
        while let Some((at, id)) = self.order.front().cloned() {
            if now - at <= authio_mcp::authorize::PENDING_AUTHORIZATION_TTL {
                break;
            }
            self.order.pop_front();
            self.remove(&id);
        }
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order.retain(|(_, id)| entries.contains_key(id));
        }
    }

    /// Whether one more entry of `bytes` may be kept for `source` and
    /// `client`: at most `per_source` per source and `per_client` per
    /// client; when the whole room is full (entries or bytes), the oldest
    /// entries of the source holding the most are dropped, so the global
    /// cap refuses only the noisiest source (which is refused if it is the
    /// requester's own).
    fn admit(
        &mut self,
        limits: &ConsentLimits,
        source: Option<&authio_mcp::cimd::RequestSource>,
        client: &str,
        bytes: usize,
    ) -> Result<(), OAuthError> {
        let busy = || OAuthError::new(ErrorCode::TemporarilyUnavailable);
        let own = source.cloned();
        if self.by_source.get(&own).map_or(0, |ids| ids.len()) >= limits.per_source || bytes > limits.max_bytes {
            return Err(busy());
        }
        if self.per_client.get(client).copied().unwrap_or(0) >= limits.per_client {
            return Err(busy());
        }
        while self.entries.len() >= limits.max_entries || self.bytes + bytes > limits.max_bytes {
            let noisiest = self
                .by_source
                .iter()
                .max_by_key(|(_, ids)| ids.len())
                .map(|(s, ids)| (s.clone(), ids.front().cloned()));
            match noisiest {
                Some((noisy, Some(oldest))) if noisy != own => {
                    self.remove(&oldest);
                }
                _ => return Err(busy()),
            }
        }
        Ok(())
    }
}

/// The login-and-consent page (demo: the user types a name; no password).
struct ConsentPage {
    pending: Mutex<WaitingRoom>,
    limits: ConsentLimits,
    auto_approve: bool,
    /// `Secure` on the consent cookie: whenever the issuer is https.
    secure_cookie: bool,
}

const CONSENT_COOKIE: &str = "authio_consent";

#[async_trait]
impl ConsentHandler for ConsentPage {
    async fn consent(
        &self,
        endpoints: &OAuthEndpoints,
        pending: PendingAuthorization,
        parts: &http::request::Parts,
    ) -> http::Response<Vec<u8>> {
        if self.auto_approve {
            let subject = Subject::new(DEMO_SUBJECT).unwrap_or_else(|_| unreachable!("a valid literal"));
            return endpoints.approve(pending, subject, None).await;
        }
        self.show(endpoints, pending, None, parts).await
    }

    async fn consent_signed_in(
        &self,
        endpoints: &OAuthEndpoints,
        signed_in: SignedIn,
        parts: &http::request::Parts,
    ) -> http::Response<Vec<u8>> {
        // `--auto-approve` skips the consent page only: the user did sign
        // in upstream to get here.
        if self.auto_approve {
            return endpoints.approve_signed_in(signed_in, None).await;
        }
        let pending = signed_in.pending.clone();
        self.show(endpoints, pending, Some(signed_in), parts).await
    }
}

impl ConsentPage {
    async fn show(
        &self,
        endpoints: &OAuthEndpoints,
        pending: PendingAuthorization,
        signed_in: Option<SignedIn>,
        parts: &http::request::Parts,
    ) -> http::Response<Vec<u8>> {
        let random = |n: usize| {
            let mut b = vec![0u8; n];
            endpoints.server().random_source().fill(&mut b);
            URL_SAFE_NO_PAD.encode(b)
        };
        let (id, csrf, cookie) = (random(16), random(32), random(32));
        // The library's page (DefaultPages unless the endpoints were given
        // another renderer), from what the pending authorization presents.
        let user = match &signed_in {
            Some(s) => ConsentUser::SignedIn {
                display: s
                    .user
                    .email
                    .clone()
                    .or_else(|| s.user.name.clone())
                    .unwrap_or_else(|| s.subject.as_str().to_owned()),
            },
            None => ConsentUser::LoginField {
                name: "username".to_owned(),
                label: "User name (demo login, no password)".to_owned(),
                value: DEMO_SUBJECT.to_owned(),
            },
        };
        let mut r = {
            let view = ConsentView::new(&pending, "/consent")
                .hidden_field("request_id", id.as_str())
                .hidden_field("csrf", csrf.as_str())
                .user(user)
                .request_id(request_id(&parts.headers));
            endpoints.consent_page(&view)
        };
        let client: Box<str> = pending.client_id.as_str().into();
        let created_at = pending.created_at;
        let held = match signed_in {
            Some(s) => Held::SignedIn(Box::new(s)),
            None => match serde_json::to_vec(&pending) {
                Ok(json) => Held::Pending(json.into_boxed_slice()),
                Err(_) => return endpoints.error_page_for(&parts.headers, &OAuthError::server_error(), None),
            },
        };
        let bytes = ConsentLimits::entry_bytes(held.heap_bytes(), id.len(), client.len());
        {
            let Ok(mut room) = self.pending.lock() else {
                return endpoints.error_page_for(&parts.headers, &OAuthError::server_error(), None);
            };
            room.expire(endpoints.server().now());
            let source = parts.extensions.get::<authio_mcp::cimd::RequestSource>().cloned();
            if let Err(e) = room.admit(&self.limits, source.as_ref(), &client, bytes) {
                return endpoints.error_page_for(&parts.headers, &e, None);
            }
            room.insert(
                id,
                Waiting {
                    held,
                    csrf: authio_mcp::secret::SecretHash::of(&csrf),
                    cookie: authio_mcp::secret::SecretHash::of(&cookie),
                    source,
                    client,
                    created_at,
                    bytes,
                },
            );
        }
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{CONSENT_COOKIE}={cookie}; Path=/consent; HttpOnly; SameSite=Strict{secure}"
        )) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }
}

async fn consent_submit(State(app): State<App>, req: Request) -> Response {
    let cookie = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(CONSENT_COOKIE).and_then(|r| r.strip_prefix('=')))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let request_headers = req.headers().clone();
    let Ok(req) = buffer(req, 8 * 1024).await else {
        let too_large = OAuthError::with_description(ErrorCode::InvalidRequest, "the consent form is too large")
            .with_status(StatusCode::PAYLOAD_TOO_LARGE);
        return into_axum(app.endpoints.error_page_for(&request_headers, &too_large, None));
    };
    let mut fields: HashMap<String, String> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(req.body()) {
        fields.insert(k.into_owned(), v.into_owned());
    }
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    // An unknown, expired, forged or already used form: the user starts
    // again from the app (the page shows the request id).
    let forbidden = || {
        into_axum(
            app.endpoints.error_page_for(
                &request_headers,
                &OAuthError::with_description(
                    ErrorCode::AccessDenied,
                    "the consent form is invalid, has expired or was already used",
                )
                .with_status(StatusCode::FORBIDDEN),
                Some(ErrorKind::StartAgain),
            ),
        )
    };
    let waiting = {
        let Ok(mut room) = app.consent.pending.lock() else {
            return forbidden();
        };
        let presented = authio_mcp::secret::SecretHash::of(get("csrf"));
        let ok = room.entries.get(get("request_id")).is_some_and(|w| {
            w.csrf == presented && cookie.iter().any(|c| authio_mcp::secret::SecretHash::of(c) == w.cookie)
        });
        if !ok {
            return forbidden();
        }
        room.remove(get("request_id"))
    };
    let Some(waiting) = waiting else { return forbidden() };
    let (pending, signed_in) = match waiting.held {
        Held::SignedIn(s) => (s.pending.clone(), Some(*s)),
        Held::Pending(json) => match serde_json::from_slice::<PendingAuthorization>(&json) {
            Ok(p) => (p, None),
            Err(_) => {
                return into_axum(
                    app.endpoints
                        .error_page_for(&request_headers, &OAuthError::server_error(), None),
                );
            }
        },
    };
    match (get("action"), signed_in) {
        ("approve", Some(signed_in)) => into_axum(app.endpoints.approve_signed_in(signed_in, None).await),
        ("approve", None) => match Subject::new(get("username")) {
            Ok(subject) => into_axum(app.endpoints.approve(pending, subject, None).await),
            Err(_) => forbidden(),
        },
        _ => into_axum(app.endpoints.deny(&pending).await),
    }
}
