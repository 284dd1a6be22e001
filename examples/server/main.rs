//! The example authorization server: `cargo run --example server`.
//!
//! Listens on 127.0.0.1:8080 with the issuer `http://127.0.0.1:8080`
//! (loopback http, for local development only), serving the demo project
//! `proj_demo` with MCP enabled. Run with `--help` for the flags.

mod app;
#[path = "../common/cli.rs"]
mod cli;
mod serve;

use std::net::SocketAddr;
use std::sync::Arc;

use authio_mcp::audit::JsonLinesAuditSink;

use authio_mcp::dcr::RegistrationPolicy;
use authio_mcp::discovery::Issuer;
use authio_mcp::project::{AccessTokenFormat, DcrMode, ProjectId};
use authio_mcp::resource::ResourceUri;
use authio_mcp::secret::SecretString;
use authio_mcp::store::AuditSink;
use authio_mcp::store::sql::SqlOptions;
use authio_mcp::upstream::ProviderName;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const HELP: &str = "\
authio-mcp example authorization server

USAGE: cargo run --example server -- [FLAGS]

  --listen ADDR               listen address (default 127.0.0.1:8080)
  --issuer URL                issuer (default http://<listen>)
  --admin-token TOKEN         bearer token for /admin (default: random, printed)
  --auto-approve              development: approve every valid authorization as user_demo
  --allow-loopback-cimd       development: fetch CIMD documents from 127.0.0.1 / localhost
  --cimd-root-cert FILE       development: extra trusted root (PEM) for CIMD fetches
  --dcr-mode MODE             disabled | initial_access_token | open (default: the MCP cascade's)
  --resource URL              the MCP server of the demo project (default http://127.0.0.1:8090/mcp)
  --introspection-token TOKEN credential resource servers use at /oauth2/introspect (default: random, printed)
  --purge-interval-secs N     delete expired codes, tokens and initial access tokens every N seconds (default 60; 0: never)
  --max-clients N|none        registered clients per project (default 10000; none: no limit, e.g. for loadgen)
  --access-token-format F     jwt (default: RFC 9068, 5 minute lifetime, verifiable against the JWKS) | opaque
  --database-url URL          where records are kept (clients, tokens, keys, local users, remembered
                              consent, upstream logins in flight): sqlite://PATH (created on first
                              start), postgres://USER@HOST:PORT/DB (shared by many instances: an
                              upstream callback may reach any of them), or memory:
                              (default sqlite://authio-example.db, in the working directory)
  --key-encryption-key-file F the 256-bit key sealing signing keys in the database (standard base64,
                              one line; created with a random key if missing; default: next to the
                              SQLite file as PATH.kek, or ./authio-example.kek for PostgreSQL).
                              Back it up apart from the database; every instance needs the same one
  --db-pool-size N            database connections (default 10)
  --db-acquire-timeout-ms N   how long a request waits for a connection before failing (default 5000)
  --db-busy-timeout-ms N      SQLite: how long a write waits for the database lock (default 5000)
  --db-ping-after-idle-ms N   ping a pooled connection before use when it sat idle this long
                              (default 10000; 0: before every statement, one more round trip each)
  --db-audit-batch            write audit events in the background, many per statement
                              (faster; kill -9 may lose the last moments' events)
  --project-cache-ms N        cache project settings for N ms (default 0: read on every request);
                              with several instances, a settings change made on one applies on
                              the others after at most N ms
  --client-cache-ms N         cache registered clients for N ms (default 0: read on every request);
                              with several instances, a client disabled or deleted on one is
                              refused by the others after at most N ms
  --recent-records N          keep the last N codes, refresh tokens and initial access tokens this
                              instance stored or used, so the next request for each skips a read
                              (default 0: off; the atomic store calls still decide every use)
  --upstream-issuer URL       sign users in at this OpenID Connect provider instead of the demo login
  --upstream-client-id ID     this server's client id at the provider (required with --upstream-issuer)
  --upstream-client-secret S  its client secret (client_secret_basic; omit for a public client)
  --upstream-name NAME        the provider's name in paths (default oidc): discovery advertises
                              <issuer>/v1/auth/oauth/NAME/authorize; register
                              <issuer>/v1/auth/oauth/NAME/callback at the provider
  --upstream-private-key-jwt  authenticate there with private_key_jwt (register <issuer>/.well-known/jwks.json)
  --upstream-userinfo         call the provider's userinfo endpoint on every sign-in and merge its
                              claims (default: only when the ID token carries no email)
  --allow-http-upstream       development: allow an http:// upstream issuer on loopback
  --audit-jsonl PATH          also append every audit event to PATH as one JSON object per line

Logs go to standard error (RUST_LOG sets the filter, default info), without
colours unless standard error is a terminal; every line of a request carries
its request id, which the response's x-request-id header repeats.
GET /healthz answers 200 while the process runs (it never queries the
store), GET /readyz 200 while the server takes requests (503 when the store
did not answer within 500 ms or the server is shutting down; the store is
checked at most once a second).
";

/// The default `--database-url`: a SQLite file in the working directory.
const DEFAULT_DATABASE_URL: &str = "sqlite://authio-example.db";

fn random_token() -> String {
    let mut b = [0u8; 32];
    authio_mcp::server::RandomSource::fill(&authio_mcp::server::SystemRandom, &mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Flags that are not part of [`app::Config`].
struct Extra {
    purge_interval: Option<std::time::Duration>,
    policy: RegistrationPolicy,
    access_token_format: AccessTokenFormat,
    database_url: String,
    sql: SqlOptions,
    caches: app::Caches,
    key_file: Option<String>,
    audit_jsonl: Option<String>,
}

/// A credential clients send as `Authorization: Bearer <value>`: RFC 6750
/// allows only `b64token` characters, and the server refuses anything else.
fn bearer_flag(flag: &str, value: String) -> Result<String, String> {
    if authio_mcp::http::is_bearer_token(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{flag} must be a bearer token: letters, digits and - . _ ~ + / (then optional =), at most 4096 bytes"
        ))
    }
}

fn parse_args() -> Result<(SocketAddr, app::Config, Extra), String> {
    let mut listen: SocketAddr = "127.0.0.1:8080".parse().map_err(|_| "bad default")?;
    let (mut issuer, mut admin, mut introspection, mut cert, mut dcr) = (None, None, None, None, None);
    let (mut auto_approve, mut allow_loopback) = (false, false);
    let mut resource = "http://127.0.0.1:8090/mcp".to_owned();
    let (mut up_issuer, mut up_client, mut up_secret, mut up_name, mut up_http) = (None, None, None, None, false);
    let (mut up_pkjwt, mut up_userinfo) = (false, false);
    let mut extra = Extra {
        purge_interval: Some(std::time::Duration::from_secs(60)),
        policy: RegistrationPolicy::default(),
        access_token_format: AccessTokenFormat::Jwt,
        database_url: DEFAULT_DATABASE_URL.to_owned(),
        sql: SqlOptions::default(),
        caches: app::Caches::default(),
        key_file: None,
        audit_jsonl: None,
    };
    let mut flags = cli::Flags::from_env();
    while let Some(flag) = flags.next_flag() {
        let mut value = || flags.value(&flag);
        match flag.as_str() {
            "--help" | "-h" => cli::print_help(HELP),
            "--listen" => listen = value()?.parse().map_err(|_| "--listen takes host:port")?,
            "--issuer" => issuer = Some(value()?),
            "--admin-token" => admin = Some(bearer_flag(&flag, value()?)?),
            "--introspection-token" => introspection = Some(bearer_flag(&flag, value()?)?),
            "--auto-approve" => auto_approve = true,
            "--allow-loopback-cimd" => allow_loopback = true,
            "--cimd-root-cert" => {
                let path = value()?;
                cert = Some(std::fs::read(&path).map_err(|e| format!("--cimd-root-cert {path}: {e}"))?);
            }
            "--dcr-mode" => {
                let v = value()?;
                dcr = Some(
                    serde_json::from_value::<DcrMode>(serde_json::Value::String(v.clone()))
                        .map_err(|_| format!("--dcr-mode {v}: expected disabled, initial_access_token or open"))?,
                );
            }
            "--resource" => resource = value()?,
            "--purge-interval-secs" => {
                let secs: u64 = value()?.parse().map_err(|_| "--purge-interval-secs takes a number")?;
                extra.purge_interval = (secs > 0).then(|| std::time::Duration::from_secs(secs));
            }
            "--max-clients" => {
                extra.policy.max_clients_per_project = match value()?.as_str() {
                    "none" => None,
                    n => Some(n.parse().map_err(|_| "--max-clients takes a number or none")?),
                };
            }
            "--access-token-format" => {
                extra.access_token_format = match value()?.as_str() {
                    "jwt" => AccessTokenFormat::Jwt,
                    "opaque" => AccessTokenFormat::Opaque,
                    v => return Err(format!("--access-token-format {v}: expected jwt or opaque")),
                };
            }
            "--database-url" => extra.database_url = value()?,
            "--key-encryption-key-file" => extra.key_file = Some(value()?),
            "--db-pool-size" => {
                let n: u32 = value()?.parse().map_err(|_| "--db-pool-size takes a number")?;
                extra.sql = extra.sql.max_connections(n);
            }
            "--db-acquire-timeout-ms" => {
                let ms: u64 = value()?.parse().map_err(|_| "--db-acquire-timeout-ms takes a number")?;
                extra.sql = extra.sql.acquire_timeout(std::time::Duration::from_millis(ms));
            }
            "--db-busy-timeout-ms" => {
                let ms: u64 = value()?.parse().map_err(|_| "--db-busy-timeout-ms takes a number")?;
                extra.sql = extra.sql.busy_timeout(std::time::Duration::from_millis(ms));
            }
            "--db-ping-after-idle-ms" => {
                let ms: u64 = value()?.parse().map_err(|_| "--db-ping-after-idle-ms takes a number")?;
                extra.sql = extra.sql.ping_after_idle(std::time::Duration::from_millis(ms));
            }
            "--db-audit-batch" => extra.sql = extra.sql.audit_batching(true),
            "--project-cache-ms" => {
                let ms: u64 = value()?.parse().map_err(|_| "--project-cache-ms takes a number")?;
                extra.caches.project = std::time::Duration::from_millis(ms);
            }
            "--client-cache-ms" => {
                let ms: u64 = value()?.parse().map_err(|_| "--client-cache-ms takes a number")?;
                extra.caches.client = std::time::Duration::from_millis(ms);
            }
            "--recent-records" => {
                extra.caches.recent_records = value()?.parse().map_err(|_| "--recent-records takes a number")?;
            }
            "--upstream-issuer" => up_issuer = Some(value()?),
            "--upstream-client-id" => up_client = Some(value()?),
            "--upstream-client-secret" => up_secret = Some(value()?),
            "--upstream-name" => up_name = Some(value()?),
            "--allow-http-upstream" => up_http = true,
            "--upstream-private-key-jwt" => up_pkjwt = true,
            "--upstream-userinfo" => up_userinfo = true,
            "--audit-jsonl" => extra.audit_jsonl = Some(value()?),
            other => return Err(cli::unknown(other)),
        }
    }
    let issuer = issuer.unwrap_or_else(|| format!("http://{listen}"));
    let issuer = Issuer::new_allowing_loopback_http_for_development(issuer.clone()).map_err(|e| {
        if issuer.starts_with("http://") && e == authio_mcp::issuer::IssuerError::NotHttps {
            format!(
                "--issuer {issuer}: an issuer must be an https URL; plain http is accepted only on \
                 127.0.0.1, [::1] or localhost, for local development"
            )
        } else {
            format!("--issuer {issuer}: {e}")
        }
    })?;
    let resource = ResourceUri::parse(resource.clone()).map_err(|e| format!("--resource {resource}: {e}"))?;
    let upstream = match (up_issuer, up_client) {
        (None, None) if up_secret.is_none() && up_name.is_none() => None,
        (Some(iss), Some(client_id)) => {
            let issuer = if up_http {
                Issuer::new_allowing_loopback_http_for_development(iss.clone())
            } else {
                Issuer::new(iss.clone())
            }
            .map_err(|e| {
                format!("--upstream-issuer {iss}: {e} (an http:// issuer on loopback needs --allow-http-upstream)")
            })?;
            let name = up_name.unwrap_or_else(|| "oidc".to_owned());
            let name = ProviderName::new(name.clone()).map_err(|e| format!("--upstream-name {name}: {e}"))?;
            Some(app::UpstreamConfig {
                name,
                issuer,
                client_id,
                client_secret: up_secret.map(SecretString::from),
                private_key_jwt: up_pkjwt,
                allow_http: up_http,
                userinfo: up_userinfo,
                http: None,
            })
        }
        _ => return Err("--upstream-issuer and --upstream-client-id go together".to_owned()),
    };
    Ok((
        listen,
        app::Config {
            issuer,
            admin_token: admin.unwrap_or_else(random_token),
            auto_approve,
            allow_loopback_cimd: allow_loopback,
            cimd_root_cert: cert,
            dcr_mode: dcr,
            resource,
            introspection_token: introspection.unwrap_or_else(random_token),
            upstream,
        },
        extra,
    ))
}

#[tokio::main]
async fn main() {
    // Colours only for a person at a terminal: log files and collectors
    // get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    let (listen, config, extra) = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    // Errors are sentences for the operator (Display), never debug dumps.
    if let Err(e) = run(listen, config, extra).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Binds `listen`, with a sentence for the common failures.
async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(listen).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "cannot listen on {listen}: the address is already in use (is another server running there?); \
             choose another with --listen"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("cannot listen on {listen}: permission denied (ports below 1024 need privileges)")
        }
        _ => format!("cannot listen on {listen}: {e}"),
    })
}

async fn run(
    listen: SocketAddr,
    config: app::Config,
    extra: Extra,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // First, so a taken port is reported before any other work.
    let listener = bind(listen).await?;
    app::install_metrics();
    // Each failing database call is reported here; the library logs the
    // failures that become `server_error` answers once more, at ERROR.
    let sql = extra.sql.on_error(|e| {
        let cause = std::error::Error::source(e)
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::warn!(error = %e, %cause, "database call failed");
    });
    let audit_jsonl: Option<Arc<dyn AuditSink>> = match &extra.audit_jsonl {
        Some(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            // Audit events name users and clients: readable by the
            // server's user only (when the file is created here).
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let file = options.open(path).map_err(|e| format!("--audit-jsonl {path}: {e}"))?;
            // Written on the sink's own thread, one whole line per write.
            Some(Arc::new(JsonLinesAuditSink::new(file)))
        }
        None => None,
    };
    let storage = app::Storage::open(&extra.database_url, sql, extra.key_file.as_deref())
        .await
        .map_err(|e| format!("--database-url: {e}"))?;
    let app =
        app::App::with_storage_and_audit(config.clone(), extra.policy, storage, extra.caches, audit_jsonl).await?;
    let project = ProjectId::new(app::DEMO_PROJECT)?;
    if extra.access_token_format == AccessTokenFormat::Jwt {
        // JWTs stay valid to resource servers until they expire, even when
        // revoked: keep them short.
        app.endpoints
            .server()
            .edit_project(&project, |mut s| {
                s.access_token_format = AccessTokenFormat::Jwt;
                s.access_token_ttl = time::Duration::minutes(5);
                s
            })
            .await?;
    }
    if let Some(every) = extra.purge_interval {
        // Keeps the in-memory stores bounded on a long-running server, and
        // rotates the demo project's signing keys when they are due.
        let server = app.endpoints.server().clone();
        let storage = app.storage.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match storage.purge(&server).await {
                    Ok(n) => tracing::debug!(removed = n, "purged expired records"),
                    Err(e) => tracing::warn!(error = %e, "purge failed"),
                }
                match server.rotate_signing_keys(&project).await {
                    Ok(r) if !r.is_empty() => tracing::info!(?r, "rotated signing keys"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "key rotation failed"),
                }
            }
        });
    }
    let router = app.router().await?;
    println!("authio-mcp example authorization server");
    println!("  issuer:              {}", config.issuer);
    if config.issuer.as_str().starts_with("http://") {
        println!("  (plain http on loopback: for local development only)");
    }
    println!("  storage:             {}", app.storage.describe());
    println!("  project:             {} (default; MCP enabled)", app::DEMO_PROJECT);
    println!("  admin token:         {}", config.admin_token);
    println!("  introspection token: {}", config.introspection_token);
    for line in app.startup_lines().await? {
        println!("  {line}");
    }
    println!("  discovery:           {}", config.issuer.metadata_url());
    println!("  access tokens:       {:?}", extra.access_token_format);
    match &config.upstream {
        Some(up) => {
            let prefix = authio_mcp::upstream::DEFAULT_PATH_PREFIX;
            println!("  sign-in:             upstream {} at {}", up.name.as_str(), up.issuer);
            println!(
                "  authorize:           {}",
                config
                    .issuer
                    .endpoint(&format!("{prefix}/{}/authorize", up.name.as_str()))
            );
            println!(
                "  register redirect:   {}",
                config
                    .issuer
                    .endpoint(&format!("{prefix}/{}/callback", up.name.as_str()))
            );
        }
        None => println!("  sign-in:             demo login (no password; --upstream-issuer for a real one)"),
    }
    // The peer address becomes each request's source (CIMD fetch budgets,
    // tokenless registration, pending consents). `serve::serve` is
    // `axum::serve` with connect info and graceful shutdown, minus a
    // scheduler round trip per request with a body (see serve.rs).
    serve::serve(listener, router, {
        let app = app.clone();
        async move {
            let _ = tokio::signal::ctrl_c().await;
            app.start_draining();
            println!("shutting down");
        }
    })
    .await;
    // Writes queued audit events and closes the database.
    app.storage.close().await;
    Ok(())
}
