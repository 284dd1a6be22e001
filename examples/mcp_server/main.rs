//! The example MCP server: `cargo run --example mcp_server`.
//!
//! An rmcp Streamable HTTP server at `http://127.0.0.1:8090/mcp` with one
//! tool, `whoami`, protected by OAuth: requests need an access token for
//! this resource from the example authorization server
//! (`cargo run --example server`), verified locally against its JWKS when
//! it publishes a `jwks_uri`, else through its introspection endpoint.
//! Run with `--help` for the flags.

mod app;
#[path = "../common/cli.rs"]
mod cli;

use std::net::SocketAddr;

use authio_mcp::discovery::Issuer;
use authio_mcp::resource::ResourceUri;
use authio_mcp::resource_server::metadata_url;

const HELP: &str = "\
authio-mcp example MCP server (rmcp, Streamable HTTP)

USAGE: cargo run --example mcp_server -- [FLAGS]

  --listen ADDR                listen address (default 127.0.0.1:8090); the resource is http://<listen>/mcp
  --issuer URL                 the authorization server (default http://127.0.0.1:8080)
  --verify MODE                jwt | introspection (default: jwt when the authorization server publishes a jwks_uri)
  --introspection-token TOKEN  the credential the authorization server printed (required for introspection)
";

/// `--verify`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum VerifyFlag {
    Auto,
    Jwt,
    Introspection,
}

fn parse_args() -> Result<(SocketAddr, app::Config, VerifyFlag), String> {
    let mut listen: SocketAddr = "127.0.0.1:8090".parse().map_err(|_| "bad default")?;
    let mut issuer = "http://127.0.0.1:8080".to_owned();
    let mut token = None;
    let mut verify = VerifyFlag::Auto;
    let mut flags = cli::Flags::from_env();
    while let Some(flag) = flags.next_flag() {
        let mut value = || flags.value(&flag);
        match flag.as_str() {
            "--help" | "-h" => cli::print_help(HELP),
            "--listen" => listen = value()?.parse().map_err(|_| "--listen takes host:port")?,
            "--issuer" => issuer = value()?,
            "--introspection-token" => token = Some(value()?),
            "--verify" => {
                verify = match value()?.as_str() {
                    "jwt" => VerifyFlag::Jwt,
                    "introspection" => VerifyFlag::Introspection,
                    v => return Err(format!("--verify {v}: expected jwt or introspection")),
                };
            }
            other => return Err(cli::unknown(other)),
        }
    }
    if verify == VerifyFlag::Introspection && token.is_none() {
        return Err("--introspection-token is required: pass the one the authorization server printed".to_owned());
    }
    let token = token.unwrap_or_default();
    let issuer = Issuer::new_allowing_loopback_http_for_development(issuer.clone())
        .map_err(|e| format!("--issuer {issuer}: {e}"))?;
    let resource = format!("http://{listen}/mcp");
    let resource = ResourceUri::parse(resource.clone()).map_err(|e| format!("resource {resource}: {e}"))?;
    Ok((listen, app::Config::new(resource, issuer, token), verify))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let (listen, config, verify) = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let config = match verify {
        VerifyFlag::Introspection => config,
        VerifyFlag::Jwt | VerifyFlag::Auto => match app::discover_jwks_uri(&config.issuer).await? {
            Some(jwks_uri) => config.verify(app::Verify::Jwt { jwks_uri }),
            None if verify == VerifyFlag::Auto && !config.introspection_token.is_empty() => config,
            None => return Err("the authorization server publishes no jwks_uri: use --verify introspection".into()),
        },
    };
    let router = app::router(&config)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("authio-mcp example MCP server");
    println!("  MCP endpoint:         {}", config.resource.as_str());
    println!("  resource metadata:    {}", metadata_url(&config.resource));
    println!("  authorization server: {}", config.issuer);
    match &config.verify {
        app::Verify::Jwt { jwks_uri } => println!("  verification:         local JWT, keys from {jwks_uri}"),
        app::Verify::Introspection => println!("  introspection:        {}", config.introspection_endpoint),
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            println!("shutting down");
        })
        .await?;
    Ok(())
}
