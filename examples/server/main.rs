//! The example authorization server: `cargo run --example server`.
//!
//! Listens on 127.0.0.1:8080 with the issuer `http://127.0.0.1:8080`
//! (loopback http, for local development only), serving the demo project
//! `proj_demo` with MCP enabled. Run with `--help` for the flags.

mod app;

use std::net::SocketAddr;

use authio_mcp::dcr::RegistrationPolicy;
use authio_mcp::discovery::Issuer;
use authio_mcp::project::DcrMode;
use authio_mcp::resource::ResourceUri;
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
";

fn random_token() -> String {
    let mut b = [0u8; 32];
    authio_mcp::server::RandomSource::fill(&authio_mcp::server::SystemRandom, &mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Flags that are not part of [`app::Config`].
struct Extra {
    purge_interval: Option<std::time::Duration>,
    policy: RegistrationPolicy,
}

fn parse_args() -> Result<(SocketAddr, app::Config, Extra), String> {
    let mut args = std::env::args().skip(1);
    let mut listen: SocketAddr = "127.0.0.1:8080".parse().map_err(|_| "bad default")?;
    let (mut issuer, mut admin, mut introspection, mut cert, mut dcr) = (None, None, None, None, None);
    let (mut auto_approve, mut allow_loopback) = (false, false);
    let mut resource = "http://127.0.0.1:8090/mcp".to_owned();
    let mut extra = Extra {
        purge_interval: Some(std::time::Duration::from_secs(60)),
        policy: RegistrationPolicy::default(),
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--help" | "-h" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--listen" => listen = value()?.parse().map_err(|_| "--listen takes host:port")?,
            "--issuer" => issuer = Some(value()?),
            "--admin-token" => admin = Some(value()?),
            "--introspection-token" => introspection = Some(value()?),
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
            other => return Err(format!("unknown flag {other}; see --help")),
        }
    }
    let issuer = issuer.unwrap_or_else(|| format!("http://{listen}"));
    let issuer = Issuer::new_allowing_loopback_http_for_development(issuer.clone())
        .map_err(|e| format!("--issuer {issuer}: {e}"))?;
    let resource = ResourceUri::parse(resource.clone()).map_err(|e| format!("--resource {resource}: {e}"))?;
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
        },
        extra,
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let (listen, config, extra) = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    app::install_metrics();
    let app = app::App::with_registration_policy(config.clone(), extra.policy).await?;
    if let Some(every) = extra.purge_interval {
        // Keeps the in-memory stores bounded on a long-running server.
        let server = app.endpoints.server().clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match server.purge_expired().await {
                    Ok(n) => tracing::debug!(removed = n, "purged expired records"),
                    Err(e) => tracing::warn!(error = %e, "purge failed"),
                }
            }
        });
    }
    let router = app.router().await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("authio-mcp example authorization server");
    println!("  issuer:              {}", config.issuer);
    if config.issuer.as_str().starts_with("http://") {
        println!("  (plain http on loopback: for local development only)");
    }
    println!("  project:             {} (default; MCP enabled)", app::DEMO_PROJECT);
    println!("  admin token:         {}", config.admin_token);
    println!("  introspection token: {}", config.introspection_token);
    for line in app.startup_lines().await? {
        println!("  {line}");
    }
    println!("  discovery:           {}", config.issuer.metadata_url());
    // The peer address becomes each request's CIMD fetch source.
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
    })
    .await?;
    Ok(())
}
