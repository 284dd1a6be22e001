//! A load generator for whole OAuth flows against a running authorization
//! server (the example server by default):
//!
//! ```text
//! cargo run --release --example server -- --auto-approve --admin-token T --max-clients none
//! cargo run --release --example loadgen -- --workers 8 --flows 5000 --duration-secs 30 --admin-token T
//! ```
//!
//! Or let it start the example server itself, on a database of your
//! choice (the server binary next to this one, on a free port, killed at
//! the end):
//!
//! ```text
//! cargo build --release --example server --example loadgen
//! ./target/release/examples/loadgen --database-url postgres://postgres@127.0.0.1:5432/bench --workers 64
//! ./target/release/examples/loadgen --database-url sqlite:///tmp/bench.db --workers 64
//! ./target/release/examples/loadgen --database-url memory: --workers 64
//! ```
//!
//! Each worker repeats one flow: register a client with an initial access
//! token (DCR), authorize (the server auto-approves and answers 302 with a
//! code), exchange the code, refresh once. The run stops by itself after
//! `--flows` flows or `--duration-secs` seconds, whichever comes first, and
//! prints flows per second and p50 / p99 / max latency per step. Any
//! unexpected status (not 2xx, or not 302 for the authorization request)
//! stops the run with a non-zero exit.

#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../examples/common/cli.rs"]
mod cli;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use authio_mcp::server::{RandomSource, SystemRandom};
use serde_json::Value;

const HELP: &str = "\
authio-mcp load generator: whole OAuth flows over HTTP

USAGE: cargo run --release --example loadgen -- [FLAGS]

  --base URL            server base URL (default http://127.0.0.1:8080)
  --admin-token TOKEN   the server's admin token, to issue an initial access token (required)
  --project ID          project for the admin API (default proj_demo)
  --workers N           concurrent workers (default 8)
  --iats N              initial access tokens to issue; registrations take turns with them
                        (default 1: every registration uses one token, as a shared onboarding
                        token would; one per worker removes that one hot record)
  --flows M             stop after M flows in total (default 1000)
  --duration-secs S     stop after S seconds (default 60)
  --resource URL        the resource to request (default http://127.0.0.1:8090/mcp)
  --database-url URL    start the example server (next to this binary) on this database
                        (sqlite://PATH, postgres://..., memory:) and run against it;
                        --base and --admin-token are then chosen here
  --db-pool-size N      with --database-url: the server's pool size (default 10)
  --server-arg ARG      with --database-url: one more flag for the server (repeatable),
                        e.g. --server-arg --db-audit-batch --server-arg --project-cache-ms --server-arg 1000
";

const REDIRECT: &str = "https://loadgen.example.com/callback";
const STEPS: [&str; 4] = ["register", "authorize", "token", "refresh"];

struct Args {
    base: String,
    admin_token: String,
    project: String,
    workers: usize,
    iats: usize,
    flows: u64,
    duration: Duration,
    resource: String,
    database_url: Option<String>,
    db_pool_size: Option<String>,
    server_args: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        base: "http://127.0.0.1:8080".into(),
        admin_token: String::new(),
        project: "proj_demo".into(),
        workers: 8,
        iats: 1,
        flows: 1000,
        duration: Duration::from_secs(60),
        resource: "http://127.0.0.1:8090/mcp".into(),
        database_url: None,
        db_pool_size: None,
        server_args: Vec::new(),
    };
    let mut flags = cli::Flags::from_env();
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "--help" | "-h" => cli::print_help(HELP),
            "--base" => a.base = flags.value(&flag)?.trim_end_matches('/').to_owned(),
            "--admin-token" => a.admin_token = flags.value(&flag)?,
            "--project" => a.project = flags.value(&flag)?,
            "--workers" => a.workers = flags.number(&flag)?,
            "--iats" => {
                a.iats = flags.number::<usize>(&flag)?.max(1);
                if a.iats > 10_000 {
                    return Err("--iats takes at most 10000".into());
                }
            }
            "--flows" => a.flows = flags.number(&flag)?,
            "--duration-secs" => a.duration = Duration::from_secs(flags.number(&flag)?),
            "--resource" => a.resource = flags.value(&flag)?,
            "--database-url" => a.database_url = Some(flags.value(&flag)?),
            "--db-pool-size" => a.db_pool_size = Some(flags.value(&flag)?),
            "--server-arg" => a.server_args.push(flags.value(&flag)?),
            other => return Err(cli::unknown(other)),
        }
    }
    if a.admin_token.is_empty() && a.database_url.is_none() {
        return Err("--admin-token is required (or --database-url)".into());
    }
    if a.workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    Ok(a)
}

/// Per-step latencies of one worker.
#[derive(Default)]
struct Samples([Vec<Duration>; 4]);

struct Shared {
    args: Args,
    /// The initial access tokens registrations take turns with.
    iats: Vec<String>,
    next_iat: std::sync::atomic::AtomicUsize,
    started: AtomicU64,
    stop: AtomicBool,
    deadline: Instant,
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("loadgen FAILED: {e}");
        std::process::exit(1);
    }
}

/// The example server this run started (`--database-url`); killed on drop.
struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the example server next to this binary on `args.database_url`,
/// pointing `args` at it.
async fn spawn_server(args: &mut Args, url: &str) -> Result<Spawned, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let server = exe.with_file_name("server");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let mut token = [0u8; 16];
    SystemRandom.fill(&mut token);
    args.admin_token = token.iter().map(|b| format!("{b:02x}")).collect();
    args.base = format!("http://127.0.0.1:{port}");
    let mut cmd = std::process::Command::new(&server);
    cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--database-url", url])
        .args([
            "--admin-token",
            &args.admin_token,
            "--auto-approve",
            "--max-clients",
            "none",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null());
    if let Some(n) = &args.db_pool_size {
        cmd.args(["--db-pool-size", n]);
    }
    cmd.args(&args.server_args);
    let child = Spawned(cmd.spawn().map_err(|e| format!("starting {}: {e}", server.display()))?);
    let http = client()?;
    for _ in 0..300 {
        if let Ok(r) = http
            .get(format!("{}/.well-known/oauth-authorization-server", args.base))
            .send()
            .await
            && r.status() == 200
        {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{} did not start on {url}", server.display()))
}

async fn run(mut args: Args) -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _server = match args.database_url.clone() {
        Some(url) => Some(spawn_server(&mut args, &url).await?),
        None => None,
    };
    // reqwest is built without a default TLS provider (the crate's CIMD
    // fetcher brings its own); loopback http needs none, but the builder
    // insists on one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = client()?;
    let mut iats = Vec::with_capacity(args.iats);
    for _ in 0..args.iats {
        iats.push(issue_iat(&http, &args).await?);
    }
    let workers = args.workers;
    let shared = Arc::new(Shared {
        deadline: Instant::now() + args.duration,
        args,
        iats,
        next_iat: std::sync::atomic::AtomicUsize::new(0),
        started: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let start = Instant::now();
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let shared = shared.clone();
        handles.push(tokio::spawn(async move {
            let r = worker(&shared).await;
            if r.is_err() {
                shared.stop.store(true, Ordering::Relaxed);
            }
            r
        }));
    }
    let mut all = Samples::default();
    let mut failure = None;
    for h in handles {
        match h.await {
            Ok(Ok(s)) => {
                for (dst, src) in all.0.iter_mut().zip(s.0) {
                    dst.extend(src);
                }
            }
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(format!("worker panicked: {e}"))),
        }
    }
    let elapsed = start.elapsed();
    if let Some(e) = failure {
        return Err(e);
    }
    report(&shared.args, &mut all, elapsed);
    Ok(())
}

fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

async fn issue_iat(http: &reqwest::Client, args: &Args) -> Result<String, String> {
    let r = http
        .post(format!("{}/admin/projects/{}/iats", args.base, args.project))
        .bearer_auth(&args.admin_token)
        .header("content-type", "application/json")
        .body(r#"{"label": "loadgen"}"#)
        .send()
        .await
        .map_err(|e| format!("issuing an initial access token: {e}"))?;
    let v: Value = expect(r, 200, "issue IAT").await?;
    v["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("issue IAT: no token in {v}"))
}

async fn worker(shared: &Shared) -> Result<Samples, String> {
    let http = client()?;
    let mut samples = Samples::default();
    loop {
        if shared.stop.load(Ordering::Relaxed) || Instant::now() >= shared.deadline {
            break;
        }
        if shared.started.fetch_add(1, Ordering::Relaxed) >= shared.args.flows {
            break;
        }
        flow(&http, shared, &mut samples).await?;
    }
    Ok(samples)
}

/// Times one step and records its latency.
async fn timed<T, F: Future<Output = Result<T, String>>>(
    samples: &mut Samples,
    step: usize,
    f: F,
) -> Result<T, String> {
    let t = Instant::now();
    let out = f.await?;
    samples.0[step].push(t.elapsed());
    Ok(out)
}

async fn flow(http: &reqwest::Client, shared: &Shared, samples: &mut Samples) -> Result<(), String> {
    let a = &shared.args;
    let base = &a.base;

    let body = serde_json::json!({
        "redirect_uris": [REDIRECT],
        "client_name": "loadgen",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    })
    .to_string();
    let registered: Value = timed(samples, 0, async {
        let r = http
            .post(format!("{base}/oauth2/register"))
            .bearer_auth(
                shared
                    .iats
                    .get(shared.next_iat.fetch_add(1, Ordering::Relaxed) % shared.iats.len())
                    .map_or("", String::as_str),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("register: {e}"))?;
        expect(r, 201, "register").await
    })
    .await?;
    let client_id = registered["client_id"]
        .as_str()
        .ok_or_else(|| format!("register: no client_id in {registered}"))?
        .to_owned();

    let mut random = [0u8; 32];
    SystemRandom.fill(&mut random);
    let verifier = CodeVerifier::from_random(&random);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "loadgen")
        .append_pair("resource", &a.resource)
        .finish();
    let code = timed(samples, 1, async {
        let r = http
            .get(format!("{base}/oauth2/authorize?{query}"))
            .send()
            .await
            .map_err(|e| format!("authorize: {e}"))?;
        if r.status() != reqwest::StatusCode::FOUND {
            let status = r.status();
            return Err(format!(
                "authorize: expected 302, got {status}: {}",
                r.text().await.unwrap_or_default()
            ));
        }
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or("authorize: 302 without Location")?;
        let url = url::Url::parse(location).map_err(|e| format!("authorize: Location {location}: {e}"))?;
        url.query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| format!("authorize: no code in {location}"))
    })
    .await?;

    let tokens: Value = timed(samples, 2, async {
        let body = form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", &client_id),
            ("code_verifier", verifier.as_str()),
        ]);
        let r = post_form(http, &format!("{base}/oauth2/token"), body)
            .await
            .map_err(|e| format!("token: {e}"))?;
        expect(r, 200, "token").await
    })
    .await?;
    let refresh_token = tokens["refresh_token"]
        .as_str()
        .ok_or_else(|| format!("token: no refresh_token in {tokens}"))?
        .to_owned();

    timed(samples, 3, async {
        let body = form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
            ("client_id", &client_id),
        ]);
        let r = post_form(http, &format!("{base}/oauth2/token"), body)
            .await
            .map_err(|e| format!("refresh: {e}"))?;
        expect(r, 200, "refresh").await
    })
    .await?;
    Ok(())
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

async fn post_form(http: &reqwest::Client, url: &str, body: String) -> Result<reqwest::Response, reqwest::Error> {
    http.post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
}

/// The JSON body of a response with the expected status, or a loud error.
async fn expect(r: reqwest::Response, status: u16, step: &str) -> Result<Value, String> {
    let got = r.status();
    let text = r.text().await.map_err(|e| format!("{step}: reading the body: {e}"))?;
    if got.as_u16() != status {
        return Err(format!("{step}: expected {status}, got {got}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{step}: bad JSON ({e}): {text}"))
}

fn report(args: &Args, all: &mut Samples, elapsed: Duration) {
    let flows = all.0[3].len();
    println!(
        "loadgen: {} workers, {flows} flows in {:.2} s against {}",
        args.workers,
        elapsed.as_secs_f64(),
        args.base
    );
    println!("  flows/s: {:.1}", flows as f64 / elapsed.as_secs_f64());
    println!("  {:<10} {:>10} {:>10} {:>10}", "step", "p50", "p99", "max");
    for (name, samples) in STEPS.iter().zip(all.0.iter_mut()) {
        samples.sort_unstable();
        println!(
            "  {name:<10} {:>10} {:>10} {:>10}",
            fmt(percentile(samples, 50.0)),
            fmt(percentile(samples, 99.0)),
            fmt(samples.last().copied().unwrap_or_default()),
        );
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} us")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}
