//! The example authorization server's application: the OAuth router from
//! `authio_mcp::axum`, a small login-and-consent page, and the dashboard's
//! actions as an admin JSON API. Shared with the end-to-end tests.

#![allow(unreachable_pub)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use authio_mcp::audit::TeeAuditSink;
use authio_mcp::axum::{RouterPaths, router};
use authio_mcp::dcr::{IatOptions, RegistrationPolicy};
use authio_mcp::grant::Subject;
use authio_mcp::http::{HeaderOrDefaultProjectResolver, OAuthEndpoints, ProjectBearerCredentials, bearer_token};
use authio_mcp::net::{ReqwestFetcher, ReqwestUpstreamHttp};
use authio_mcp::presentation::ProjectDisplay;
use authio_mcp::project::{KnownResource, ProjectId, ProjectSettings};
use authio_mcp::scope::ScopeSet;
use authio_mcp::secret::SecretString;
use authio_mcp::server::AuthorizationServer;
use authio_mcp::store::memory::{MemoryAuditLog, MemoryUpstreamSecrets};
use authio_mcp::store::{AuditLog, AuditSink, CachedClientStore, CachedProjectStore};
use authio_mcp::upstream::{UpstreamClientAuth, UpstreamHttp, UpstreamProvider};
use authio_mcp::{ErrorCode, OAuthError};
use axum::Router;
use axum::routing::{delete, get, post};
use http::{HeaderMap, header};

// The parts live in `app/` and are named by `#[path]`: the end-to-end
// tests include this file with `#[path]` too, and the attribute resolves
// the same way from both (relative to this file's directory).
#[path = "app/admin.rs"]
mod admin;
#[path = "app/config.rs"]
mod config;
#[path = "app/consent.rs"]
mod consent;
#[path = "app/ops.rs"]
mod ops;

// What `main.rs` and the tests name; each includer uses a part.
#[allow(unused_imports)]
pub use config::{Config, Storage, UpstreamConfig, key_encryption_key_path, load_or_create_key_encryption_key};
#[allow(unused_imports)]
pub use consent::ConsentLimits;
#[allow(unused_imports)]
pub use ops::install_metrics;

use admin::{
    admin_audit, admin_audit_rejections, admin_cimd_resolve, admin_delete_client, admin_disable_client,
    admin_enable_client, admin_get_client, admin_get_project, admin_issue_iat, admin_list_clients, admin_list_iats,
    admin_list_resources, admin_patch_project, admin_put_resource, admin_remove_resource, admin_revoke_iat,
    admin_revoke_signing_key, admin_revoke_user_grant, admin_revoke_user_grants, admin_set_mcp, admin_user_grants,
};
use consent::{ConsentPage, WaitingRoom, consent_submit};
use ops::{healthz, log_request, metrics_text, readyz};

/// The demo project, the default one.
pub const DEMO_PROJECT: &str = "proj_demo";
/// The subject `--auto-approve` signs in as.
pub const DEMO_SUBJECT: &str = "user_demo";

/// What the example server keeps in process instead of reading the store
/// on every request (all off by default; the `--project-cache-ms`,
/// `--client-cache-ms` and `--recent-records` flags).
#[derive(Clone, Copy, Debug, Default)]
pub struct Caches {
    /// How long project settings read from the store are reused.
    pub project: std::time::Duration,
    /// How long registered clients read from the store are reused.
    pub client: std::time::Duration,
    /// [`authio_mcp::server::AuthorizationServerBuilder::recent_records`].
    pub recent_records: usize,
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
    /// `/readyz`'s last store check.
    ready: Arc<ops::ReadyCheck>,
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
        let caches = Caches {
            project: project_cache,
            ..Caches::default()
        };
        Self::with_storage_and_audit(config, policy, storage, caches, None).await
    }

    /// Like [`App::with_storage`]; every audit event also goes to
    /// `extra_audit` (`--audit-jsonl`), after the store's log.
    /// `caches`: what is kept in this process instead of read from the
    /// store on every request.
    pub async fn with_storage_and_audit(
        config: Config,
        policy: RegistrationPolicy,
        storage: Storage,
        caches: Caches,
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
        let Caches {
            project: project_cache,
            client: client_cache,
            recent_records,
        } = caches;
        let builder = builder.recent_records(recent_records);
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
            ready: Arc::default(),
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
