//! Dynamic Client Registration with initial access tokens, end to end
//! through the driver: the mode gate, the IAT lifecycle, RFC 7591
//! responses, concurrency of IAT uses, secrecy, and client authentication
//! at the token endpoint.

// Test helpers outside #[test] functions are not covered by clippy.toml's
// allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use authio_mcp::audit::AuditKind;
use authio_mcp::client::{ClientId, TokenEndpointAuthMethod};
use authio_mcp::client_auth::ClientCredentials;
use authio_mcp::dcr::IatRecord;
use authio_mcp::dcr::{IatId, IatOptions, IatStatus, PinnedMetadata, RegistrationPolicy};
use authio_mcp::discovery::Issuer;
use authio_mcp::project::{DcrMode, ProjectId, ProjectSettings};
use authio_mcp::secret::SecretHash;
use authio_mcp::server::{AdminError, AuthorizationServer, FixedClock, SeededRandom};
use authio_mcp::store::memory::{MemoryAuditLog, MemoryClientStore, MemoryIatStore};
use authio_mcp::store::{ClientStore, IatStore, RevokeOutcome, StoreError, UseOutcome};
use authio_mcp::{ErrorCode, OAuthError};
use base64::Engine as _;
use http::header::WWW_AUTHENTICATE;
use serde_json::Value;
use time::Duration;
use time::OffsetDateTime;
use time::macros::datetime;

/// The request body of the seed guide's Step 3b, verbatim.
const SEED_STEP_3B_BODY: &str = r#"{
    "redirect_uris":               ["https://my-mcp-server.example.com/oauth/callback"],
    "client_name":                 "My MCP Server",
    "token_endpoint_auth_method":  "none",
    "application_type":            "web"
  }"#;

const CONFIDENTIAL_BASIC: &str =
    r#"{"redirect_uris":["https://app.example.com/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#;
const CONFIDENTIAL_POST: &str =
    r#"{"redirect_uris":["https://app.example.com/cb"],"token_endpoint_auth_method":"client_secret_post"}"#;
const INVALID_TOKEN_CHALLENGE: &str = "Bearer error=\"invalid_token\", error_description=\"an initial access token is required: send it as Authorization: Bearer iatk_...\"";

/// The `error_description` a registration refused for its token state
/// carries (also in the challenge).
fn token_state_description(state: TokenState) -> &'static str {
    match state {
        TokenState::None => "an initial access token is required: send it as Authorization: Bearer iatk_...",
        TokenState::NotBearer => "the Authorization header must be Bearer followed by the initial access token",
        // A token of another project is unknown here, exactly like one
        // that never existed.
        TokenState::Unknown | TokenState::WrongProject => "the initial access token is not valid for this project",
        TokenState::Expired => "the initial access token has expired",
        TokenState::Exhausted => "the initial access token has been used up (max_uses reached)",
        TokenState::Revoked => "the initial access token was revoked",
        TokenState::Valid => unreachable!("a valid token is not refused"),
    }
}

struct Env {
    server: AuthorizationServer,
    audit: Arc<MemoryAuditLog>,
    clients: Arc<MemoryClientStore>,
    iats: Arc<MemoryIatStore>,
    clock: Arc<FixedClock>,
    a: ProjectId,
    b: ProjectId,
}

/// A store that makes every `find` wait until `gate` is full: all
/// concurrent registrations see the token as usable before any of them
/// counts a use, so only the atomic `use_once` can keep the count exact.
struct GatedIatStore {
    inner: Arc<MemoryIatStore>,
    gate: Arc<tokio::sync::Barrier>,
}

#[async_trait::async_trait]
impl IatStore for GatedIatStore {
    async fn insert(&self, p: &ProjectId, r: IatRecord) -> Result<bool, StoreError> {
        self.inner.insert(p, r).await
    }
    async fn find(&self, p: &ProjectId, h: &SecretHash) -> Result<Option<IatRecord>, StoreError> {
        let found = self.inner.find(p, h).await;
        self.gate.wait().await;
        found
    }
    async fn use_once(&self, p: &ProjectId, h: &SecretHash, now: OffsetDateTime) -> Result<UseOutcome, StoreError> {
        self.inner.use_once(p, h, now).await
    }
    async fn list(&self, p: &ProjectId) -> Result<Vec<IatRecord>, StoreError> {
        self.inner.list(p).await
    }
    async fn revoke(&self, p: &ProjectId, id: &IatId, now: OffsetDateTime) -> Result<RevokeOutcome, StoreError> {
        self.inner.revoke(p, id, now).await
    }
    async fn purge(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        self.inner.purge(now).await
    }
}

fn env_with(policy: RegistrationPolicy) -> Env {
    env_gated(policy, None)
}

fn env_gated(policy: RegistrationPolicy, gate: Option<Arc<tokio::sync::Barrier>>) -> Env {
    let audit = Arc::new(MemoryAuditLog::new());
    let clients = Arc::new(MemoryClientStore::new());
    let iats = Arc::new(MemoryIatStore::new());
    let clock = Arc::new(FixedClock::new(datetime!(2026-11-26 12:00 UTC)));
    let server = AuthorizationServer::builder(Issuer::new("https://auth-api.authio.com").unwrap())
        .audit(audit.clone())
        .clients(clients.clone())
        .iats(match gate {
            Some(gate) => Arc::new(GatedIatStore {
                inner: iats.clone(),
                gate,
            }),
            None => iats.clone(),
        })
        .clock(clock.clone())
        .random(Arc::new(SeededRandom::new(42)))
        .registration_policy(policy)
        .build();
    Env {
        server,
        audit,
        clients,
        iats,
        clock,
        a: ProjectId::new("proj_acme_prod").unwrap(),
        b: ProjectId::new("proj_other").unwrap(),
    }
}

async fn env(mode_a: DcrMode) -> Env {
    env_setup(env_with(RegistrationPolicy::default()), mode_a).await
}

async fn env_setup(env: Env, mode_a: DcrMode) -> Env {
    for (p, mode) in [(&env.a, mode_a), (&env.b, DcrMode::InitialAccessToken)] {
        let settings = settings(mode);
        env.server.put_project(p, settings).await.unwrap();
    }
    env
}

fn settings(mode: DcrMode) -> ProjectSettings {
    let mut s = ProjectSettings::default();
    s.dcr_mode = mode;
    s
}

fn bearer(token: &authio_mcp::secret::SecretString) -> String {
    format!("Bearer {}", token.expose_secret())
}

async fn set_mode(env: &Env, mode: DcrMode) {
    env.server
        .edit_project(&env.a, |mut s| {
            s.dcr_mode = mode;
            s
        })
        .await
        .unwrap();
}

fn render(e: &authio_mcp::server::EndpointError) -> (u16, Option<String>, Value) {
    let r = e.to_response();
    let header = r
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), header, serde_json::from_slice(r.body()).unwrap())
}

#[derive(Clone, Copy, Debug)]
enum TokenState {
    None,
    Valid,
    Expired,
    Exhausted,
    Revoked,
    WrongProject,
    Unknown,
    NotBearer,
}

/// Prepares a token in the given state (while project A is in IAT mode),
/// then switches project A to `mode`.
async fn prepared(mode: DcrMode, state: TokenState) -> (Env, Option<String>) {
    let env = env(DcrMode::InitialAccessToken).await;
    let s = &env.server;
    let header = match state {
        TokenState::None => None,
        TokenState::Valid => Some(bearer(&s.issue_iat(&env.a, IatOptions::new()).await.unwrap().token)),
        TokenState::Expired => {
            let t = s
                .issue_iat(&env.a, IatOptions::new().ttl(Duration::hours(1)))
                .await
                .unwrap();
            env.clock.advance(Duration::hours(1));
            Some(bearer(&t.token))
        }
        TokenState::Exhausted => {
            let t = s.issue_iat(&env.a, IatOptions::new().max_uses(1)).await.unwrap();
            s.register_client(&env.a, Some(&bearer(&t.token)), SEED_STEP_3B_BODY.as_bytes())
                .await
                .unwrap();
            Some(bearer(&t.token))
        }
        TokenState::Revoked => {
            let t = s.issue_iat(&env.a, IatOptions::new()).await.unwrap();
            s.revoke_iat(&env.a, &t.id).await.unwrap();
            Some(bearer(&t.token))
        }
        TokenState::WrongProject => Some(bearer(&s.issue_iat(&env.b, IatOptions::new()).await.unwrap().token)),
        TokenState::Unknown => Some("Bearer iatk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()),
        TokenState::NotBearer => Some("Basic Y2xpZW50OnNlY3JldA==".to_owned()),
    };
    set_mode(&env, mode).await;
    (env, header)
}

#[tokio::test]
async fn mode_by_token_state_table() {
    use DcrMode::*;
    use TokenState::*;
    // (mode, token, expected status, expected error code or None for 201)
    let table: &[(DcrMode, TokenState, u16, Option<&str>)] = &[
        (Disabled, None, 403, Some("access_denied")),
        (Disabled, Valid, 403, Some("access_denied")),
        (Disabled, Expired, 403, Some("access_denied")),
        (Disabled, Exhausted, 403, Some("access_denied")),
        (Disabled, Revoked, 403, Some("access_denied")),
        (Disabled, WrongProject, 403, Some("access_denied")),
        (InitialAccessToken, None, 401, Some("invalid_token")),
        (InitialAccessToken, Valid, 201, Option::None),
        (InitialAccessToken, Expired, 401, Some("invalid_token")),
        (InitialAccessToken, Exhausted, 401, Some("invalid_token")),
        (InitialAccessToken, Revoked, 401, Some("invalid_token")),
        (InitialAccessToken, WrongProject, 401, Some("invalid_token")),
        (InitialAccessToken, Unknown, 401, Some("invalid_token")),
        (InitialAccessToken, NotBearer, 401, Some("invalid_token")),
        (Open, None, 201, Option::None),
        (Open, Valid, 201, Option::None),
        (Open, Expired, 401, Some("invalid_token")),
        (Open, Exhausted, 401, Some("invalid_token")),
        (Open, Revoked, 401, Some("invalid_token")),
        (Open, WrongProject, 401, Some("invalid_token")),
        (Open, Unknown, 401, Some("invalid_token")),
        (Open, NotBearer, 401, Some("invalid_token")),
    ];
    let mut invalid_token_bodies = Vec::new();
    for &(mode, state, status, error) in table {
        let (env, header) = prepared(mode, state).await;
        let before = env.clients.count(&env.a).await.unwrap();
        let result = env
            .server
            .register_client(&env.a, header.as_deref(), SEED_STEP_3B_BODY.as_bytes())
            .await;
        let row = format!("{mode:?} x {state:?}");
        match (result, error) {
            (Ok(response), Option::None) => {
                assert_eq!(status, 201, "{row}");
                assert_eq!(response.to_response().status(), 201, "{row}");
                assert_eq!(env.clients.count(&env.a).await.unwrap(), before + 1, "{row}");
            }
            (Err(e), Some(code)) => {
                let (got_status, challenge, body) = render(&e);
                assert_eq!(got_status, status, "{row}");
                assert_eq!(body["error"], code, "{row}");
                if code == "invalid_token" {
                    let description = token_state_description(state);
                    assert_eq!(
                        challenge,
                        Some(format!(
                            "Bearer error=\"invalid_token\", error_description=\"{description}\""
                        )),
                        "{row}"
                    );
                    assert_eq!(body["error_description"], description, "{row}");
                    invalid_token_bodies.push((state, body));
                } else {
                    assert_eq!(challenge, Option::None, "{row}");
                    assert_eq!(
                        body["error_description"],
                        "dynamic client registration is disabled for this project"
                    );
                }
                assert_eq!(
                    env.clients.count(&env.a).await.unwrap(),
                    before,
                    "{row}: nothing stored"
                );
                let last = env.audit.all().pop().unwrap();
                assert_eq!(last.name(), "oauth_client.registration_rejected", "{row}");
            }
            (other, _) => panic!("{row}: unexpected {other:?}"),
        }
    }
    // A token of another project and a token that never existed get the
    // same answer: nothing is revealed about other projects.
    let unknown: Vec<_> = invalid_token_bodies
        .iter()
        .filter(|(s, _)| matches!(s, TokenState::Unknown | TokenState::WrongProject))
        .map(|(_, b)| b)
        .collect();
    assert_eq!(unknown.len(), 4);
    assert!(unknown.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn seed_step_3b_registers_a_public_client_without_secret() {
    let env = env(DcrMode::Disabled).await;
    let (settings, _) = env.server.set_mcp_enabled(&env.a, true).await.unwrap();
    assert_eq!(settings.dcr_mode, DcrMode::InitialAccessToken);
    // The dashboard's "Issue IAT": default options pin `none`.
    let issued = env.server.issue_iat(&env.a, IatOptions::new()).await.unwrap();
    assert!(issued.token.expose_secret().starts_with("iatk_"));
    let response = env
        .server
        .register_client(&env.a, Some(&bearer(&issued.token)), SEED_STEP_3B_BODY.as_bytes())
        .await
        .unwrap();
    let http = response.to_response();
    assert_eq!(http.status(), 201);
    assert_eq!(http.headers()[http::header::CONTENT_TYPE], "application/json");
    let body: Value = serde_json::from_slice(http.body()).unwrap();
    let obj = body.as_object().unwrap();
    assert!(!obj.contains_key("client_secret"));
    assert!(!obj.contains_key("client_secret_expires_at"));
    let client_id = body["client_id"].as_str().unwrap();
    assert!(
        client_id
            .strip_prefix("client_")
            .is_some_and(|h| h.len() == 24 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))),
        "{client_id}"
    );
    assert_eq!(
        body["client_id_issued_at"],
        datetime!(2026-11-26 12:00 UTC).unix_timestamp()
    );
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert_eq!(
        body["redirect_uris"][0],
        "https://my-mcp-server.example.com/oauth/callback"
    );
    assert_eq!(body["client_name"], "My MCP Server");
    assert_eq!(body["application_type"], "web");
    assert_eq!(body["grant_types"], serde_json::json!(["authorization_code"]));
    assert_eq!(body["response_types"], serde_json::json!(["code"]));

    // The stored client is public and has no secret hash.
    let stored = env
        .server
        .registered_client(&env.a, &response.client_id)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.is_confidential());
    assert!(stored.secret_hash.is_none());

    // Audit: issued, used (count 1), registered with the IAT id.
    let kinds: Vec<AuditKind> = env.audit.recent(&env.a, 3).into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            AuditKind::IatIssued {
                iat_id: issued.id.to_string(),
                label: None,
                max_uses: None,
                expires_at: None
            },
            AuditKind::IatUsed {
                iat_id: issued.id.to_string(),
                uses: 1
            },
            AuditKind::ClientRegistered {
                client_id: client_id.to_owned(),
                iat_id: Some(issued.id.to_string()),
                token_endpoint_auth_method: "none".into()
            },
        ]
    );
}

#[tokio::test]
async fn pins_and_invalid_metadata() {
    let env = env(DcrMode::InitialAccessToken).await;
    let s = &env.server;
    let pinned = s.issue_iat(&env.a, IatOptions::new().max_uses(1)).await.unwrap();
    let h = bearer(&pinned.token);

    // A different method than the pin: 400 invalid_client_metadata with a useful description; no use burnt.
    let e = s
        .register_client(&env.a, Some(&h), CONFIDENTIAL_BASIC.as_bytes())
        .await
        .unwrap_err();
    let (status, _, body) = render(&e);
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client_metadata")));
    assert!(body["error_description"].as_str().unwrap().contains("'none'"));
    // Invalid redirect URI: 400 invalid_redirect_uri; still no use burnt.
    let e = s
        .register_client(&env.a, Some(&h), br#"{"redirect_uris":["http://evil.example.com/cb"]}"#)
        .await
        .unwrap_err();
    assert_eq!((e.status().as_u16(), e.code()), (400, ErrorCode::InvalidRedirectUri));
    assert!(e.description().unwrap().contains("redirect_uris[0]"));
    let e = s.register_client(&env.a, Some(&h), b"{not json").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClientMetadata);
    let rejected = env.audit.all().pop().unwrap();
    assert!(matches!(
        rejected.kind,
        AuditKind::ClientRegistrationRejected { ref error, ref iat_id, .. }
            if error == "invalid_client_metadata" && iat_id.as_deref() == Some(pinned.id.as_str())
    ));
    assert_eq!(s.list_iats(&env.a).await.unwrap()[0].uses, 0);

    // The omitted method takes the pin (not RFC 7591's client_secret_basic).
    let r = s
        .register_client(&env.a, Some(&h), br#"{"redirect_uris":["https://app.example.com/cb"]}"#)
        .await
        .unwrap();
    assert_eq!(r.metadata.token_endpoint_auth_method, TokenEndpointAuthMethod::None);
    assert!(r.client_secret.is_none());
    assert_eq!(s.list_iats(&env.a).await.unwrap()[0].status, IatStatus::Exhausted);

    // Open mode: no token means RFC 7591 defaults; a token's pins still apply.
    set_mode(&env, DcrMode::Open).await;
    let r = s
        .register_client(&env.a, None, br#"{"redirect_uris":["https://app.example.com/cb"]}"#)
        .await
        .unwrap();
    assert_eq!(
        r.metadata.token_endpoint_auth_method,
        TokenEndpointAuthMethod::ClientSecretBasic
    );
    assert!(r.client_secret.is_some());
    let post_pin = s
        .issue_iat(
            &env.a,
            IatOptions::new().pinned(PinnedMetadata::auth_method(TokenEndpointAuthMethod::ClientSecretPost)),
        )
        .await
        .unwrap();
    let e = s
        .register_client(&env.a, Some(&bearer(&post_pin.token)), SEED_STEP_3B_BODY.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClientMetadata);
    let r = s
        .register_client(
            &env.a,
            Some(&bearer(&post_pin.token)),
            br#"{"redirect_uris":["https://app.example.com/cb"]}"#,
        )
        .await
        .unwrap();
    assert_eq!(
        r.metadata.token_endpoint_auth_method,
        TokenEndpointAuthMethod::ClientSecretPost
    );
    assert_eq!(r.client_secret_expires_at, Some(0));
}

#[tokio::test]
async fn iat_admin_lifecycle() {
    let env = env(DcrMode::InitialAccessToken).await;
    let s = &env.server;
    let first = s
        .issue_iat(
            &env.a,
            IatOptions::new().label("Cursor").max_uses(2).ttl(Duration::days(1)),
        )
        .await
        .unwrap();
    env.clock.advance(Duration::minutes(1));
    let second = s.issue_iat(&env.a, IatOptions::new()).await.unwrap();
    assert_ne!(first.id, second.id);
    let list = s.list_iats(&env.a).await.unwrap();
    assert_eq!(list.iter().map(|v| &v.id).collect::<Vec<_>>(), [&first.id, &second.id]);
    assert_eq!(list[0].label.as_deref(), Some("Cursor"));
    assert_eq!(list[0].status, IatStatus::Active);
    assert!(s.list_iats(&env.b).await.unwrap().is_empty(), "scoped per project");

    // Revocation: once, audited once; unknown ids (also another project's) are refused.
    assert!(matches!(
        s.revoke_iat(&env.b, &first.id).await,
        Err(AdminError::UnknownIat)
    ));
    let revoked = s.revoke_iat(&env.a, &first.id).await.unwrap();
    assert_eq!(revoked.status, IatStatus::Revoked);
    env.clock.advance(Duration::minutes(1));
    let again = s.revoke_iat(&env.a, &first.id).await.unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    let revocations = env
        .audit
        .all()
        .into_iter()
        .filter(|e| e.name() == "initial_access_token.revoked")
        .count();
    assert_eq!(revocations, 1);
    assert!(matches!(
        s.revoke_iat(&env.a, &IatId::new("iat_0000000000000000").unwrap()).await,
        Err(AdminError::UnknownIat)
    ));

    // Invalid options and unknown projects.
    assert!(matches!(
        s.issue_iat(&env.a, IatOptions::new().max_uses(0)).await,
        Err(AdminError::InvalidIatOptions(_))
    ));
    let nope = ProjectId::new("nope").unwrap();
    assert!(matches!(
        s.issue_iat(&nope, IatOptions::new()).await,
        Err(AdminError::UnknownProject)
    ));
    assert!(matches!(s.list_iats(&nope).await, Err(AdminError::UnknownProject)));
    let e = s
        .register_client(&nope, None, SEED_STEP_3B_BODY.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);

    // Purge drops the unusable ones only.
    assert_eq!(s.purge_iats().await.unwrap(), 1);
    let list = s.list_iats(&env.a).await.unwrap();
    assert_eq!(list.iter().map(|v| &v.id).collect::<Vec<_>>(), [&second.id]);
}

#[tokio::test]
async fn client_quota_bounds_storage_without_burning_uses() {
    let env = env_with({
        let mut p = RegistrationPolicy::default();
        p.max_clients_per_project = Some(2);
        p
    });
    let settings = settings(DcrMode::InitialAccessToken);
    env.server.put_project(&env.a, settings).await.unwrap();
    let t = env.server.issue_iat(&env.a, IatOptions::new()).await.unwrap();
    let h = bearer(&t.token);
    for _ in 0..2 {
        env.server
            .register_client(&env.a, Some(&h), SEED_STEP_3B_BODY.as_bytes())
            .await
            .unwrap();
    }
    let e = env
        .server
        .register_client(&env.a, Some(&h), SEED_STEP_3B_BODY.as_bytes())
        .await
        .unwrap_err();
    assert_eq!((e.status().as_u16(), e.code()), (403, ErrorCode::AccessDenied));
    assert_eq!(env.server.list_iats(&env.a).await.unwrap()[0].uses, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_respect_max_uses_exactly() {
    let gate = Arc::new(tokio::sync::Barrier::new(100));
    let env = env_setup(
        env_gated(RegistrationPolicy::default(), Some(gate)),
        DcrMode::InitialAccessToken,
    )
    .await;
    let t = env
        .server
        .issue_iat(&env.a, IatOptions::new().max_uses(5))
        .await
        .unwrap();
    let header = bearer(&t.token);
    let start = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (server, project, header, start) = (env.server.clone(), env.a.clone(), header.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            server
                .register_client(&project, Some(&header), SEED_STEP_3B_BODY.as_bytes())
                .await
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!((e.status().as_u16(), e.code()), (401, ErrorCode::InvalidToken));
                refused += 1;
            }
        }
    }
    assert_eq!((ok, refused), (5, 95));
    assert_eq!(env.clients.count(&env.a).await.unwrap(), 5);
    let view = &env.server.list_iats(&env.a).await.unwrap()[0];
    assert_eq!((view.uses, view.status), (5, IatStatus::Exhausted));
    let registered = env
        .audit
        .all()
        .iter()
        .filter(|e| e.name() == "oauth_client.registered")
        .count();
    assert_eq!(registered, 5);
}

#[tokio::test]
async fn raw_tokens_and_secrets_never_leak() {
    let env = env(DcrMode::InitialAccessToken).await;
    let s = &env.server;
    let unpinned = s
        .issue_iat(&env.a, IatOptions::new().pinned(PinnedMetadata::unpinned()).label("ci"))
        .await
        .unwrap();
    let public = s.issue_iat(&env.a, IatOptions::new()).await.unwrap();
    let basic = s
        .register_client(&env.a, Some(&bearer(&unpinned.token)), CONFIDENTIAL_BASIC.as_bytes())
        .await
        .unwrap();
    let post = s
        .register_client(&env.a, Some(&bearer(&unpinned.token)), CONFIDENTIAL_POST.as_bytes())
        .await
        .unwrap();
    s.register_client(&env.a, Some(&bearer(&public.token)), SEED_STEP_3B_BODY.as_bytes())
        .await
        .unwrap();
    // A rejected attempt with a token that was never issued, and one with a revoked token.
    let bogus = "Bearer iatk_ThisIsNotARealTokenButMustNotBeLoggedEither0";
    s.register_client(&env.a, Some(bogus), SEED_STEP_3B_BODY.as_bytes())
        .await
        .unwrap_err();
    s.revoke_iat(&env.a, &public.id).await.unwrap();
    s.register_client(&env.a, Some(&bearer(&public.token)), SEED_STEP_3B_BODY.as_bytes())
        .await
        .unwrap_err();

    let secrets: Vec<String> = vec![
        unpinned.token.expose_secret().to_owned(),
        public.token.expose_secret().to_owned(),
        basic.client_secret.as_ref().unwrap().expose_secret().to_owned(),
        post.client_secret.as_ref().unwrap().expose_secret().to_owned(),
        "ThisIsNotARealTokenButMustNotBeLoggedEither0".to_owned(),
    ];
    // The secrets really were shown once, in the serialized responses.
    assert!(String::from_utf8(basic.to_json()).unwrap().contains(&secrets[2]));

    // 1. Debug output of everything the host handles.
    let debug = format!(
        "{unpinned:?} {public:?} {basic:?} {post:?} {:?} {:?}",
        s,
        s.list_iats(&env.a).await.unwrap()
    );
    // 2. Audit events, as Debug and as JSON.
    let events = env.audit.all();
    let audit = format!(
        "{events:?} {}",
        events
            .iter()
            .map(|e| e.to_json().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    // 3. Store records: the memory stores' Debug and the records' JSON.
    let records = format!(
        "{:?} {:?} {} {}",
        env.iats,
        env.clients,
        serde_json::to_string(&env.iats.list(&env.a).await.unwrap()).unwrap(),
        serde_json::to_string(&env.clients.get(&env.a, &basic.client_id).await.unwrap().unwrap()).unwrap(),
    );
    for secret in &secrets {
        // Also no sizeable fragment of it.
        let fragment = &secret[secret.len() - 16..];
        for (what, text) in [("debug", &debug), ("audit", &audit), ("records", &records)] {
            assert!(!text.contains(fragment), "{what} leaks a secret");
        }
    }
    assert!(audit.contains("oauth_client.registration_rejected"));
    assert!(audit.contains("iat_unknown") && audit.contains("iat_revoked"));
}

/// What the token endpoint does: parse, render parse errors, authenticate.
async fn token_endpoint_auth(
    server: &AuthorizationServer,
    project: &ProjectId,
    authorization: Option<&str>,
    client_id: Option<&str>,
    client_secret: Option<&str>,
) -> Result<ClientId, OAuthError> {
    let creds = ClientCredentials::parse(authorization, client_id, client_secret)
        .map_err(|e| e.to_oauth_error(authorization.is_some()))?;
    Ok(server.authenticate_registered_client(project, &creds).await?.client_id)
}

fn basic_header(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

#[tokio::test]
async fn client_authentication_table() {
    let env = env_with({
        let mut p = RegistrationPolicy::default();
        p.client_secret_ttl = Some(Duration::days(30));
        p
    });
    for p in [&env.a, &env.b] {
        let settings = settings(DcrMode::Open);
        env.server.put_project(p, settings).await.unwrap();
    }
    let s = &env.server;
    let basic = s
        .register_client(&env.a, None, CONFIDENTIAL_BASIC.as_bytes())
        .await
        .unwrap();
    let post = s
        .register_client(&env.a, None, CONFIDENTIAL_POST.as_bytes())
        .await
        .unwrap();
    let public = s
        .register_client(&env.a, None, SEED_STEP_3B_BODY.as_bytes())
        .await
        .unwrap();
    assert_eq!(
        basic.client_secret_expires_at,
        Some((datetime!(2026-11-26 12:00 UTC) + Duration::days(30)).unix_timestamp())
    );
    let (bid, bsec) = (
        basic.client_id.as_str(),
        basic.client_secret.as_ref().unwrap().expose_secret(),
    );
    let (pid, psec) = (
        post.client_id.as_str(),
        post.client_secret.as_ref().unwrap().expose_secret(),
    );
    let uid = public.client_id.as_str();

    let basic_ok = basic_header(bid, bsec);
    let basic_wrong = basic_header(bid, "wrong");
    let basic_unknown = basic_header("client_000000000000000000000000", "x");
    let basic_public_secret = basic_header(uid, "x");
    let basic_for_post = basic_header(pid, psec);
    // (row, authorization, client_id, client_secret, project, Ok or (status, error, Basic challenge?))
    type Row<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        &'a ProjectId,
        Option<(u16, &'a str, bool)>,
    );
    let table: Vec<Row> = vec![
        ("basic", Some(&basic_ok), None, None, &env.a, None),
        (
            "basic + same client_id in body",
            Some(&basic_ok),
            Some(bid),
            None,
            &env.a,
            None,
        ),
        ("post", None, Some(pid), Some(psec), &env.a, None),
        ("public client by id", None, Some(uid), None, &env.a, None),
        (
            "basic wrong secret",
            Some(&basic_wrong),
            None,
            None,
            &env.a,
            Some((401, "invalid_client", true)),
        ),
        (
            "post wrong secret",
            None,
            Some(pid),
            Some("wrong"),
            &env.a,
            Some((401, "invalid_client", false)),
        ),
        (
            "basic client via post",
            None,
            Some(bid),
            Some(bsec),
            &env.a,
            Some((401, "invalid_client", false)),
        ),
        (
            "post client via basic",
            Some(&basic_for_post),
            None,
            None,
            &env.a,
            Some((401, "invalid_client", true)),
        ),
        (
            "confidential without secret",
            None,
            Some(bid),
            None,
            &env.a,
            Some((401, "invalid_client", false)),
        ),
        (
            "both methods",
            Some(&basic_ok),
            None,
            Some(bsec),
            &env.a,
            Some((400, "invalid_request", false)),
        ),
        (
            "malformed basic",
            Some("Basic %%%"),
            None,
            None,
            &env.a,
            Some((401, "invalid_client", true)),
        ),
        (
            "public client with secret",
            None,
            Some(uid),
            Some("x"),
            &env.a,
            Some((401, "invalid_client", false)),
        ),
        (
            "public client with basic secret",
            Some(&basic_public_secret),
            None,
            None,
            &env.a,
            Some((401, "invalid_client", true)),
        ),
        (
            "unknown client",
            Some(&basic_unknown),
            None,
            None,
            &env.a,
            Some((401, "invalid_client", true)),
        ),
        (
            "not a client id",
            None,
            Some("my-app"),
            None,
            &env.a,
            Some((401, "invalid_client", false)),
        ),
        (
            "wrong project",
            Some(&basic_ok),
            None,
            None,
            &env.b,
            Some((401, "invalid_client", true)),
        ),
        (
            "wrong project, public",
            None,
            Some(uid),
            None,
            &env.b,
            Some((401, "invalid_client", false)),
        ),
        (
            "nothing",
            None,
            None,
            None,
            &env.a,
            Some((401, "invalid_client", false)),
        ),
    ];
    let mut failure_bodies = Vec::new();
    for (row, authorization, id, secret, project, expected) in table {
        let result = token_endpoint_auth(s, project, authorization, id, secret).await;
        match (result, expected) {
            (Ok(client_id), None) => {
                assert!(client_id.as_str().starts_with("client_"), "{row}");
            }
            (Err(e), Some((status, code, challenge))) => {
                let (got, header, body) = render(&e.clone().into());
                assert_eq!((got, body["error"].as_str().unwrap()), (status, code), "{row}");
                assert_eq!(header.as_deref(), challenge.then_some("Basic realm=\"oauth\""), "{row}");
                if code == "invalid_client" {
                    failure_bodies.push(body);
                }
            }
            (other, _) => panic!("{row}: unexpected {other:?}"),
        }
    }
    assert!(
        failure_bodies.windows(2).all(|w| w[0] == w[1]),
        "no detail in invalid_client"
    );

    // Expired secrets.
    env.clock.advance(Duration::days(30));
    let e = token_endpoint_auth(s, &env.a, Some(&basic_ok), None, None)
        .await
        .unwrap_err();
    assert_eq!((e.status().as_u16(), e.code()), (401, ErrorCode::InvalidClient));
    let e = token_endpoint_auth(s, &env.a, None, Some(pid), Some(psec))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClient);
    assert!(
        token_endpoint_auth(s, &env.a, None, Some(uid), None).await.is_ok(),
        "public: no secret to expire"
    );
}

/// Cursor's request shape: its app scheme, a loopback URI; no token.
const CURSOR_LIKE: &str = r#"{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback","http://127.0.0.1:33418/callback"],
    "client_name":"Cursor","token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"]}"#;

async fn tokenless_env(max_per_source: u32) -> Env {
    let env = env(DcrMode::InitialAccessToken).await;
    env.server
        .edit_project(&env.a, |mut s| {
            s.tokenless_registration = serde_json::from_value(serde_json::json!({
                "enabled": true,
                "loopback": true,
                "private_use_schemes": ["cursor"],
                "https_callback_hosts": ["claude.ai"],
                "max_per_source": max_per_source,
                "window_seconds": 3600
            }))
            .unwrap();
            s
        })
        .await
        .unwrap();
    env
}

#[tokio::test]
async fn tokenless_registration_admits_only_trusted_redirect_uris() {
    let env = tokenless_env(10).await;
    let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let r = env
        .server
        .register_client_from(&env.a, None, CURSOR_LIKE.as_bytes(), Some(ip))
        .await
        .unwrap();
    assert_eq!(r.metadata.token_endpoint_auth_method, TokenEndpointAuthMethod::None);
    let last = env.audit.recent(&env.a, 1).into_iter().next().unwrap();
    match last.kind {
        AuditKind::ClientTokenlessAdmitted {
            client_id,
            source,
            patterns,
        } => {
            assert_eq!(client_id, r.client_id.to_string());
            assert_eq!(source, "192.0.2.7");
            assert_eq!(patterns.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    // One untrusted redirect URI: the missing-token answer, audited with
    // the reason.
    let bad = r#"{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback","https://evil.example/cb"],"token_endpoint_auth_method":"none"}"#;
    let e = env
        .server
        .register_client_from(&env.a, None, bad.as_bytes(), Some(ip))
        .await
        .unwrap_err();
    let (status, challenge, _) = render(&e);
    assert_eq!(status, 401);
    assert_eq!(challenge.as_deref(), Some(INVALID_TOKEN_CHALLENGE));
    let last = env.audit.recent(&env.a, 1).into_iter().next().unwrap();
    match last.kind {
        AuditKind::ClientRegistrationRejected { reason, .. } => {
            assert_eq!(
                reason,
                "tokenless_untrusted_redirect_uri: redirect_uris[1] matches no trusted pattern"
            );
        }
        other => panic!("{other:?}"),
    }
    // The review's finding: trusted redirect URIs do not make a confidential
    // or machine-to-machine client admissible without a token.
    for body in [
        r#"{"redirect_uris":["http://127.0.0.1/cb"],"grant_types":["authorization_code","client_credentials"],"token_endpoint_auth_method":"client_secret_basic"}"#,
        r#"{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"client_secret_post"}"#,
        r#"{"redirect_uris":["http://127.0.0.1/cb"],"grant_types":["authorization_code","client_credentials"],"token_endpoint_auth_method":"none"}"#,
    ] {
        let e = env
            .server
            .register_client_from(&env.a, None, body.as_bytes(), Some(ip))
            .await
            .unwrap_err();
        assert_eq!(render(&e).0, 401, "{body}");
        let last = env.audit.recent(&env.a, 1).into_iter().next().unwrap();
        match last.kind {
            AuditKind::ClientRegistrationRejected { reason, .. } => {
                assert!(reason.starts_with("tokenless_not_public"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
    // Without a source it cannot be rate-limited: not admitted.
    let e = env
        .server
        .register_client(&env.a, None, CURSOR_LIKE.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(render(&e).0, 401);
    // Project B (tokenless off) still requires a token.
    let e = env
        .server
        .register_client_from(&env.b, None, CURSOR_LIKE.as_bytes(), Some(ip))
        .await
        .unwrap_err();
    assert_eq!(render(&e).0, 401);
    // Open and disabled modes are unaffected by the policy.
    set_mode(&env, DcrMode::Disabled).await;
    let e = env
        .server
        .register_client_from(&env.a, None, CURSOR_LIKE.as_bytes(), Some(ip))
        .await
        .unwrap_err();
    assert_eq!(render(&e).0, 403);
}

#[tokio::test]
async fn tokenless_registration_is_rate_limited_per_source() {
    let env = tokenless_env(2).await;
    let a: std::net::IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let same_64: std::net::IpAddr = "2001:db8:1:2::99".parse().unwrap();
    let other: std::net::IpAddr = "2001:db8:1:3::1".parse().unwrap();
    for ip in [a, same_64] {
        env.server
            .register_client_from(&env.a, None, CURSOR_LIKE.as_bytes(), Some(ip))
            .await
            .unwrap();
    }
    let e = env
        .server
        .register_client_from(&env.a, None, CURSOR_LIKE.as_bytes(), Some(a))
        .await
        .unwrap_err();
    let (status, _, body) = render(&e);
    assert_eq!(status, 403);
    assert_eq!(body["error"], "access_denied");
    // Another source has its own window.
    env.server
        .register_client_from(&env.a, None, CURSOR_LIKE.as_bytes(), Some(other))
        .await
        .unwrap();
    // The window passes.
    env.clock.advance(Duration::hours(1));
    env.server
        .register_client_from(&env.a, None, CURSOR_LIKE.as_bytes(), Some(a))
        .await
        .unwrap();
    // A token still works as before, whatever the policy.
    let issued = env.server.issue_iat(&env.a, IatOptions::new()).await.unwrap();
    env.server
        .register_client_from(&env.a, Some(&bearer(&issued.token)), SEED_STEP_3B_BODY.as_bytes(), None)
        .await
        .unwrap();
}

/// Offering several methods meets an IAT pin when the pinned one is offered.
#[tokio::test]
async fn iat_pins_accept_an_offer_that_includes_them() {
    let env = env(DcrMode::InitialAccessToken).await;
    let issued = env.server.issue_iat(&env.a, IatOptions::new()).await.unwrap();
    let body = r#"{"redirect_uris":["https://app.example.com/cb"],"token_endpoint_auth_method":"client_secret_basic",
        "token_endpoint_auth_methods_supported":["client_secret_basic","none"]}"#;
    let r = env
        .server
        .register_client(&env.a, Some(&bearer(&issued.token)), body.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.metadata.token_endpoint_auth_method, TokenEndpointAuthMethod::None);
    assert!(r.client_secret.is_none());
    let issued = env.server.issue_iat(&env.a, IatOptions::new()).await.unwrap();
    let body = r#"{"redirect_uris":["https://app.example.com/cb"],
        "token_endpoint_auth_methods_supported":["client_secret_basic","client_secret_post"]}"#;
    let e = env
        .server
        .register_client(&env.a, Some(&bearer(&issued.token)), body.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClientMetadata);
}

/// The MCP client credentials extension: a confidential machine client,
/// registered without redirect URIs, gets an access token for itself,
/// with `resource` honoured and no refresh token.
#[tokio::test]
async fn client_credentials_for_confidential_machine_clients() {
    let env = env(DcrMode::Open).await;
    env.server
        .edit_project(&env.a, |mut s| {
            s.scopes_supported = authio_mcp::scope::ScopeSet::parse("mcp:read mcp:write").unwrap();
            s.default_scopes = authio_mcp::scope::ScopeSet::parse("mcp:read").unwrap();
            // The MCP server the machine client calls: a known resource.
            s.resources.upsert(
                authio_mcp::project::KnownResource::new(
                    authio_mcp::resource::ResourceUri::parse("https://mcp.example.com/mcp").unwrap(),
                    "Example MCP server",
                )
                .unwrap(),
            );
            s
        })
        .await
        .unwrap();
    // Off by default: neither advertised nor usable.
    let m = env.server.metadata(&env.a).await.unwrap();
    assert!(!m.grant_types_supported.iter().any(|g| g == "client_credentials"));
    let body = r#"{"client_name":"early job","grant_types":["client_credentials"],"token_endpoint_auth_method":"client_secret_basic"}"#;
    let early = env.server.register_client(&env.a, None, body.as_bytes()).await.unwrap();
    let basic = basic_header(
        &early.client_id.to_string(),
        early.client_secret.as_ref().unwrap().expose_secret(),
    );
    let refused = env
        .server
        .token(&env.a, Some(&basic), b"grant_type=client_credentials")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), authio_mcp::ErrorCode::UnsupportedGrantType);
    env.server
        .edit_project(&env.a, |mut s| {
            s.client_credentials_enabled = true;
            s
        })
        .await
        .unwrap();
    let m = env.server.metadata(&env.a).await.unwrap();
    assert!(m.grant_types_supported.iter().any(|g| g == "client_credentials"));
    let body = r#"{"client_name":"nightly job","grant_types":["client_credentials"],"token_endpoint_auth_method":"client_secret_basic"}"#;
    let r = env.server.register_client(&env.a, None, body.as_bytes()).await.unwrap();
    assert!(r.metadata.redirect_uris.is_empty());
    let id = r.client_id.to_string();
    let secret = r.client_secret.as_ref().unwrap().expose_secret().to_owned();
    let basic = basic_header(&id, &secret);
    // A resource the project does not know is refused, for machines too.
    let unknown = "grant_type=client_credentials&resource=https%3A%2F%2Fother.example.com%2Fmcp";
    let e = env
        .server
        .token(&env.a, Some(&basic), unknown.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.code(), authio_mcp::ErrorCode::InvalidTarget);
    let form = "grant_type=client_credentials&scope=mcp%3Awrite+admin&resource=https%3A%2F%2Fmcp.example.com%2Fmcp";
    let t = env.server.token(&env.a, Some(&basic), form.as_bytes()).await.unwrap();
    assert_eq!(t.scope, "mcp:write", "unsupported scope dropped");
    assert!(t.refresh_token.is_none());
    let info = env
        .server
        .introspect(&env.a, format!("token={}", t.access_token).as_bytes())
        .await
        .unwrap();
    assert!(info.active);
    assert_eq!(info.sub.as_deref(), Some(id.as_str()));
    assert_eq!(info.client_id.as_deref(), Some(id.as_str()));
    assert_eq!(info.aud, Some(vec!["https://mcp.example.com/mcp".to_owned()]));
    // A wrong secret: invalid_client. A bad resource: invalid_target.
    let e = env
        .server
        .token(&env.a, Some(&basic_header(&id, "wrong")), form.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClient);
    let e = env
        .server
        .token(
            &env.a,
            Some(&basic),
            b"grant_type=client_credentials&resource=not-a-uri",
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidTarget);
    // A public client, or one not registered for the grant: unauthorized_client.
    let public = env
        .server
        .register_client(&env.a, None, SEED_STEP_3B_BODY.as_bytes())
        .await
        .unwrap();
    let e = env
        .server
        .token(
            &env.a,
            None,
            format!("grant_type=client_credentials&client_id={}", public.client_id).as_bytes(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnauthorizedClient);
    let web = env
        .server
        .register_client(&env.a, None, CONFIDENTIAL_BASIC.as_bytes())
        .await
        .unwrap();
    let basic = basic_header(
        &web.client_id.to_string(),
        web.client_secret.as_ref().unwrap().expose_secret(),
    );
    let e = env
        .server
        .token(&env.a, Some(&basic), b"grant_type=client_credentials")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnauthorizedClient);
    // A public client cannot register for it alone.
    let e = env
        .server
        .register_client(
            &env.a,
            None,
            br#"{"grant_types":["client_credentials"],"token_endpoint_auth_method":"none"}"#,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClientMetadata);
}

/// Strict mode follows the MCP rule that redirect URIs are localhost or
/// https: Cursor's app scheme is refused there, accepted by default.
#[tokio::test]
async fn strict_mode_refuses_private_use_redirect_schemes() {
    let env = env(DcrMode::Open).await;
    env.server
        .edit_project(&env.a, |mut s| {
            s.mcp_enabled = true;
            s
        })
        .await
        .unwrap();
    let r = env.server.register_client(&env.a, None, CURSOR_LIKE.as_bytes()).await;
    let registered = r.unwrap();
    let query = format!(
        "response_type=code&client_id={}&redirect_uri=cursor%3A%2F%2Fanysphere.cursor-mcp%2Foauth%2Fcallback\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=s",
        registered.client_id.as_str()
    );
    let before = env.server.authorize(&env.a, &query).await;
    assert!(
        matches!(before, authio_mcp::server::AuthorizeOutcome::Pending(_)),
        "{before:?}"
    );
    env.server
        .edit_project(&env.a, |mut s| {
            s.strict_mode = true;
            s
        })
        .await
        .unwrap();
    // A client that registered its app scheme before strict mode gets no
    // redirect there afterwards: the error stays on the page.
    match env.server.authorize(&env.a, &query).await {
        authio_mcp::server::AuthorizeOutcome::ShowError(e) => {
            assert_eq!(e.code(), ErrorCode::InvalidRequest);
            assert!(e.to_string().contains("redirect URI policy"), "{e}");
        }
        other => panic!("expected an error page, got {other:?}"),
    }
    let e = env
        .server
        .register_client(&env.a, None, CURSOR_LIKE.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRedirectUri);
}

/// Tokenless admissions are limited per source (/64), per wider network
/// (IPv6 /48: eight times the per-source limit) and per project, so many
/// addresses cannot fill the project's client quota (review finding).
#[tokio::test]
async fn tokenless_limits_are_layered_per_network_and_project() {
    let env = tokenless_env(2).await;
    // One /48, many /64s: 2 each, 16 for the whole /48.
    let mut admitted = 0;
    for n in 0..20u16 {
        let ip: std::net::IpAddr = format!("2001:db8:aa:{n:x}::1").parse().unwrap();
        if env
            .server
            .register_client_from(&env.a, None, CURSOR_LIKE.as_bytes(), Some(ip))
            .await
            .is_ok()
        {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 16, "a /48 gets 8 x max_per_source");
    // The project-wide window: 3 more from anywhere, then none.
    env.server
        .edit_project(&env.a, |mut s| {
            s.tokenless_registration.max_per_window = 16 + 3;
            s
        })
        .await
        .unwrap();
    let mut more = 0;
    for n in 0..10u8 {
        let ip: std::net::IpAddr = format!("198.51.{n}.7").parse().unwrap();
        if env
            .server
            .register_client_from(&env.a, None, CURSOR_LIKE.as_bytes(), Some(ip))
            .await
            .is_ok()
        {
            more += 1;
        }
    }
    assert_eq!(more, 3, "the project-wide window caps every source together");
}

/// Issue 18, point 4: anonymous registrations in `open` mode are limited
/// per source (an IPv4 address, an IPv6 /64), per project and in size;
/// requests without a known source share one window; every refusal is a
/// precise error and an audit event.
#[tokio::test]
async fn open_mode_anonymous_registrations_are_bounded_per_source_project_and_size() {
    let env = env(DcrMode::Open).await;
    env.server
        .edit_project(&env.a, |mut s| {
            s.tokenless_registration.max_per_source = 3;
            s.tokenless_registration.max_per_window = 7;
            s
        })
        .await
        .unwrap();
    let body = br#"{"redirect_uris":["https://app.example.com/cb"],"token_endpoint_auth_method":"none"}"#;
    let register = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        env.server.register_client_from(&env.a, None, body, Some(ip))
    };
    for _ in 0..3 {
        register("192.0.2.10").await.unwrap();
    }
    let e = register("192.0.2.10").await.unwrap_err();
    let (status, _, v) = render(&e);
    assert_eq!((status, v["error"].as_str()), (403, Some("access_denied")), "{v}");
    // The same /64 is the same source; another /64 is not.
    for _ in 0..3 {
        register("2001:db8:1:2::1").await.unwrap();
    }
    assert!(register("2001:db8:1:2:ffff::9").await.is_err(), "same /64");
    register("2001:db8:1:3::1").await.unwrap();
    // Seven admitted in the project's window: the eighth source is refused
    // too, and nothing was counted for the refused ones.
    let e = register("198.51.100.7").await.unwrap_err();
    assert_eq!(render(&e).0, 403, "the project's window is full");
    assert_eq!(env.clients.count(&env.a).await.unwrap(), 7);
    // A new window admits again.
    env.clock.advance(time::Duration::hours(1));
    register("198.51.100.7").await.unwrap();
    // Without a source, requests share one window of max_per_source.
    for _ in 0..3 {
        env.server.register_client(&env.a, None, body).await.unwrap();
    }
    assert_eq!(
        render(&env.server.register_client(&env.a, None, body).await.unwrap_err()).0,
        403
    );
    // Anonymous clients are compact: 20 long redirect URIs are refused
    // without a token (and admitted with one).
    let uris: Vec<String> = (0..20)
        .map(|i| format!("https://app.example.com/callback/{i}/{}", "x".repeat(200)))
        .collect();
    let big = serde_json::json!({"redirect_uris": uris, "token_endpoint_auth_method": "none"}).to_string();
    let e = env
        .server
        .register_client_from(&env.a, None, big.as_bytes(), Some("203.0.113.9".parse().unwrap()))
        .await
        .unwrap_err();
    let (status, _, v) = render(&e);
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_client_metadata")),
        "{v}"
    );
    assert!(v["error_description"].as_str().unwrap().contains("4096"), "{v}");
    let iat = env.server.issue_iat(&env.a, IatOptions::new()).await.unwrap();
    env.server
        .register_client(&env.a, Some(&bearer(&iat.token)), big.as_bytes())
        .await
        .unwrap();
    let reasons: Vec<String> = env
        .audit
        .all()
        .iter()
        .filter_map(|e| match &e.kind {
            authio_mcp::audit::AuditKind::ClientRegistrationRejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "tokenless_rate_limited").count(),
        4,
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r == "anonymous_metadata_too_large"),
        "{reasons:?}"
    );
}
