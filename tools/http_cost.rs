//! What one request costs the server over HTTP, against the same work in
//! process: the harness behind `benches/http_cost.sh` and the
//! "Per-request cost over HTTP" section of BENCHMARKS.md.
//!
//! Three operations, measured in alternating phases of `--n` requests
//! each (discovery GET, registration with an initial access token, code
//! exchange), `--rounds` times, after one warm-up round of `--warm`:
//!
//! ```text
//! # over HTTP, against a running example server (memory storage, opaque tokens):
//! http_cost http --base http://127.0.0.1:8080 --admin-token T --pid PID [--callgrind]
//! # the same sequence on the driver in this process (same stores, same project):
//! http_cost inproc
//! ```
//!
//! `http` reads the server's CPU time (`utime + stime` of
//! `/proc/PID/stat`, and the nanosecond run time of every thread from
//! `/proc/PID/task/*/schedstat`) around each phase; with `--callgrind`
//! (the server running under `valgrind --tool=callgrind`) it also zeroes
//! and reads callgrind's instruction counter around each phase with
//! `callgrind_control`. The inputs a phase needs (authorization codes for
//! code exchanges) are made before the phase starts, so they are not
//! counted. `inproc` does the same sequence (the same warm-up, the same
//! codes made in between, so the stores hold as much as the server's)
//! and reads its own CPU time; under callgrind, each operation's
//! measured calls run inside one function (`measure_inproc_discovery`,
//! `measure_inproc_register`, `measure_inproc_token`), for
//! `--toggle-collect`.

#[path = "../examples/common/cli.rs"]
mod cli;

use std::error::Error;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use authio_mcp::cimd::RequestSource;
use authio_mcp::dcr::{IatOptions, RegistrationPolicy};
use authio_mcp::discovery::Issuer;
use authio_mcp::grant::Subject;
use authio_mcp::net::ReqwestFetcher;
use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use authio_mcp::presentation::ProjectDisplay;
use authio_mcp::project::{AccessTokenFormat, KnownResource, ProjectId, ProjectSettings};
use authio_mcp::resource::ResourceUri;
use authio_mcp::scope::ScopeSet;
use authio_mcp::server::{AuthorizationServer, AuthorizeOutcome, RandomSource, SystemRandom};
use authio_mcp::store::memory::MemoryAuditLog;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

const HELP: &str = "\
http_cost: server cost per request over HTTP and in process

USAGE:
  http_cost http --base URL --admin-token T --pid PID [FLAGS]
  http_cost inproc [FLAGS]

  --n N            requests per phase (default 20000)
  --rounds R       measured rounds; each runs a discovery, a registration and a
                   code-exchange phase (default 5)
  --warm W         requests per phase of the unmeasured first round (default 2000)
  --concurrency C  http: connections driving a phase at once (default 1)
  --callgrind      http: the server runs under callgrind; also count its instructions
  --pid PID        http: the server's process id (for /proc and callgrind_control)
";

const PROJECT: &str = "proj_demo";
const SUBJECT: &str = "user_demo";
const RESOURCE: &str = "http://127.0.0.1:8090/mcp";
const REDIRECT: &str = "https://loadgen.example.com/callback";
const OPS: [Op; 3] = [Op::Discovery, Op::Register, Op::Token];
/// Authorization codes made at a time before the code exchanges that use
/// them.
const CODE_BATCH: usize = 250;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Discovery,
    Register,
    Token,
}

impl Op {
    const fn name(self) -> &'static str {
        match self {
            Self::Discovery => "discovery",
            Self::Register => "register",
            Self::Token => "token",
        }
    }
}

struct Args {
    http: bool,
    base: String,
    admin_token: String,
    pid: Option<u32>,
    n: usize,
    rounds: usize,
    warm: usize,
    concurrency: usize,
    callgrind: bool,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut flags = cli::Flags::from_env();
    let http = match flags.next_flag().as_deref() {
        Some("http") => true,
        Some("inproc") => false,
        _ => return Err(HELP.to_owned()),
    };
    let mut a = Args {
        http,
        base: "http://127.0.0.1:8080".to_owned(),
        admin_token: String::new(),
        pid: None,
        n: 20_000,
        rounds: 5,
        warm: 2_000,
        concurrency: 1,
        callgrind: false,
    };
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "--base" => a.base = flags.value(&flag)?.trim_end_matches('/').to_owned(),
            "--admin-token" => a.admin_token = flags.value(&flag)?,
            "--pid" => a.pid = Some(flags.number(&flag)?),
            "--n" => a.n = flags.number(&flag)?,
            "--rounds" => a.rounds = flags.number(&flag)?,
            "--warm" => a.warm = flags.number(&flag)?,
            "--concurrency" => a.concurrency = flags.number::<usize>(&flag)?.max(1),
            "--callgrind" => a.callgrind = true,
            "--help" | "-h" => return Err(HELP.to_owned()),
            other => return Err(format!("unknown flag {other}\n\n{HELP}")),
        }
    }
    if a.http && (a.admin_token.is_empty() || a.pid.is_none()) {
        return Err("http needs --admin-token and --pid".to_owned());
    }
    if a.n == 0 || a.rounds == 0 {
        return Err("--n and --rounds must be at least 1".to_owned());
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let result = if args.http { run_http(&args) } else { run_inproc(&args) };
    if let Err(e) = result {
        eprintln!("http_cost FAILED: {e}");
        std::process::exit(1);
    }
}

/// What one measured phase cost, per request.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    /// `utime + stime` from `/proc/PID/stat`, microseconds per request.
    stat_us: f64,
    /// Run time of all threads from `schedstat`, microseconds per request.
    sched_us: f64,
    /// `stime` alone (time in the kernel), microseconds per request.
    sys_us: f64,
    /// Context switches of all threads (voluntary and not), per request.
    switches: f64,
    /// Instructions per request (callgrind), if counted.
    instructions: Option<f64>,
}

/// What process `pid` has used so far.
#[derive(Clone, Copy, Default)]
struct Usage {
    /// `utime + stime`, seconds.
    stat: f64,
    /// `stime` alone, seconds.
    sys: f64,
    /// The sum of the threads' `schedstat` run times, seconds.
    sched: f64,
    /// The threads' context switches, voluntary and not.
    switches: f64,
}

/// CPU time and context switches of process `pid` so far.
fn usage(pid: &str) -> Result<Usage> {
    let (stat, sys, sched) = cpu_seconds(pid)?;
    let mut switches = 0f64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread may exit between the listing and the read.
        if let Ok(s) = std::fs::read_to_string(task?.path().join("status")) {
            switches += s
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter_map(|n| n.parse::<f64>().ok())
                .sum::<f64>();
        }
    }
    Ok(Usage {
        stat,
        sys,
        sched,
        switches,
    })
}

/// CPU time of process `pid` so far: (`utime + stime` in seconds, `stime`
/// in seconds, the sum of its threads' `schedstat` run times in seconds).
fn cpu_seconds(pid: &str) -> Result<(f64, f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or("bad stat")?;
    // Fields after the name start at field 3 (state); utime and stime are
    // fields 14 and 15.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> { Ok(fields.get(i).ok_or("short stat")?.parse::<f64>()?) };
    let stat_secs = (ticks(11)? + ticks(12)?) / clock_ticks();
    let sys_secs = ticks(12)? / clock_ticks();
    let mut sched_ns = 0f64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        if let Ok(s) = std::fs::read_to_string(path) {
            sched_ns += s.split_whitespace().next().unwrap_or("0").parse::<f64>().unwrap_or(0.0);
        }
    }
    Ok((stat_secs, sys_secs, sched_ns / 1e9))
}

/// `sysconf(_SC_CLK_TCK)`, through `getconf` (100 on Linux).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Runs `callgrind_control FLAG PID`, returning the instruction total it
/// prints (the sum of its `Th N count` lines) for `-e`.
fn callgrind(flag: &str, pid: u32) -> Result<f64> {
    let out = std::process::Command::new("callgrind_control")
        .args([flag, &pid.to_string()])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let total = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Th "))
        .filter_map(|rest| rest.split_whitespace().nth(1))
        .filter_map(|n| n.replace(',', "").parse::<f64>().ok())
        .sum();
    Ok(total)
}

/// Measures `run` (`n` requests of the server `pid`, or of this process).
async fn measured<F: Future<Output = Result<()>>>(
    pid: &str,
    callgrind_pid: Option<u32>,
    n: usize,
    run: F,
) -> Result<Sample> {
    if let Some(p) = callgrind_pid {
        callgrind("-z", p)?;
    }
    let u0 = usage(pid)?;
    run.await?;
    let u1 = usage(pid)?;
    let instructions = match callgrind_pid {
        Some(p) => Some(callgrind("-e", p)? / n as f64),
        None => None,
    };
    Ok(Sample {
        stat_us: (u1.stat - u0.stat) * 1e6 / n as f64,
        sched_us: (u1.sched - u0.sched) * 1e6 / n as f64,
        sys_us: (u1.sys - u0.sys) * 1e6 / n as f64,
        switches: (u1.switches - u0.switches) / n as f64,
        instructions,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v.get(n / 2).copied().unwrap_or_default(),
        n => (v.get(n / 2 - 1).copied().unwrap_or_default() + v.get(n / 2).copied().unwrap_or_default()) / 2.0,
    }
}

fn report(label: &str, samples: &[(Op, Sample)]) {
    println!("{label}: median per request over {} rounds", samples.len() / OPS.len());
    let mut rows = Vec::new();
    for op in OPS {
        let of = |f: fn(&Sample) -> Option<f64>| -> Option<f64> {
            let v: Vec<f64> = samples
                .iter()
                .filter(|(o, _)| *o == op)
                .filter_map(|(_, s)| f(s))
                .collect();
            (!v.is_empty()).then(|| median(v))
        };
        let stat = of(|s| Some(s.stat_us)).unwrap_or_default();
        let sched = of(|s| Some(s.sched_us)).unwrap_or_default();
        let sys = of(|s| Some(s.sys_us)).unwrap_or_default();
        let switches = of(|s| Some(s.switches)).unwrap_or_default();
        let instr = of(|s| s.instructions);
        let per_round: Vec<String> = samples
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, s)| format!("{:.1}", s.stat_us))
            .collect();
        println!(
            "  {:<10} stat {stat:>7.2} us (kernel {sys:>6.2})  schedstat {sched:>7.2} us  switches {switches:>5.2}  instructions {:>10}   (stat per round: {})",
            op.name(),
            instr.map_or_else(|| "-".to_owned(), |i| format!("{i:.0}")),
            per_round.join(" ")
        );
        rows.push((op, stat, sched, instr));
    }
    let floor = rows.iter().find(|r| r.0 == Op::Discovery).copied();
    if let Some((_, fs, fd, fi)) = floor {
        for (op, s, d, i) in rows.iter().filter(|r| r.0 != Op::Discovery) {
            let instr = match (i, fi) {
                (Some(i), Some(fi)) => format!("  instructions {:.0}", i - fi),
                _ => String::new(),
            };
            println!(
                "  {:<10} minus discovery: stat {:.2} us  schedstat {:.2} us{instr}",
                op.name(),
                s - fs,
                d - fd
            );
        }
    }
}

// ---------------------------------------------------------------- over HTTP

fn run_http(args: &Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(http_main(args))
}

fn client() -> Result<reqwest::Client> {
    // reqwest is built without a default TLS provider; loopback http needs
    // none, but the builder insists on one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

async fn http_main(args: &Args) -> Result<()> {
    let pid = args.pid.ok_or("--pid")?;
    let http = client()?;
    let base = args.base.as_str();
    let r = http
        .post(format!("{base}/admin/projects/{PROJECT}/iats"))
        .bearer_auth(&args.admin_token)
        .header("content-type", "application/json")
        .body(r#"{"label": "http_cost"}"#)
        .send()
        .await?;
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
    let iat = v
        .get("token")
        .and_then(serde_json::Value::as_str)
        .ok_or("no initial access token")?
        .to_owned();
    let client_id = http_register(&http, base, &iat).await?;
    let mut samples = Vec::new();
    for round in 0..=args.rounds {
        let n = if round == 0 { args.warm } else { args.n };
        for op in OPS {
            // Codes are made in batches just before they are used, so that
            // none expires under a slow (callgrind) server; the phase's
            // figure is the sum over its batches.
            let batch = if op == Op::Token { CODE_BATCH } else { n };
            let (mut total, mut done) = (Sample::default(), 0);
            while done < n {
                let k = batch.min(n - done);
                let codes = match op {
                    Op::Token => http_codes(&http, base, &client_id, k).await?,
                    _ => Vec::new(),
                };
                let run = http_phase(args, op, k, &iat, &client_id, codes);
                let cg = args.callgrind.then_some(pid);
                let s = measured(&pid.to_string(), cg, k, run).await?;
                let w = k as f64;
                total.stat_us += s.stat_us * w;
                total.sched_us += s.sched_us * w;
                total.sys_us += s.sys_us * w;
                total.switches += s.switches * w;
                total.instructions = s.instructions.map(|i| i * w + total.instructions.unwrap_or_default());
                done += k;
            }
            let w = n as f64;
            let s = Sample {
                stat_us: total.stat_us / w,
                sched_us: total.sched_us / w,
                sys_us: total.sys_us / w,
                switches: total.switches / w,
                instructions: total.instructions.map(|i| i / w),
            };
            if round > 0 {
                samples.push((op, s));
            }
        }
    }
    report("over HTTP (server CPU)", &samples);
    Ok(())
}

/// `n` requests of `op` over `--concurrency` connections.
async fn http_phase(
    args: &Args,
    op: Op,
    n: usize,
    iat: &str,
    client_id: &str,
    codes: Vec<(String, CodeVerifier)>,
) -> Result<()> {
    let base = args.base.as_str();
    let c = args.concurrency.min(n.max(1));
    let codes = Arc::new(std::sync::Mutex::new(codes));
    let mut tasks = Vec::new();
    for i in 0..c {
        let share = n / c + usize::from(i < n % c);
        let http = client()?;
        let (base, iat, client_id, codes) = (base.to_owned(), iat.to_owned(), client_id.to_owned(), codes.clone());
        tasks.push(async move {
            for _ in 0..share {
                match op {
                    Op::Discovery => {
                        let r = http
                            .get(format!("{base}/.well-known/oauth-authorization-server"))
                            .send()
                            .await?;
                        check(r, 200).await?;
                    }
                    Op::Register => {
                        http_register(&http, &base, &iat).await?;
                    }
                    Op::Token => {
                        let next = codes.lock().map_err(|_| "poisoned")?.pop();
                        let (code, verifier) = next.ok_or("out of codes")?;
                        let r = http
                            .post(format!("{base}/oauth2/token"))
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(token_body(&code, &client_id, &verifier))
                            .send()
                            .await?;
                        check(r, 200).await?;
                    }
                }
            }
            Ok::<(), Box<dyn Error + Send + Sync>>(())
        });
    }
    for r in futures_util::future::join_all(tasks).await {
        r?;
    }
    Ok(())
}

async fn check(r: reqwest::Response, status: u16) -> Result<axum::body::Bytes> {
    let got = r.status().as_u16();
    let body = r.bytes().await?;
    if got != status {
        return Err(format!("expected {status}, got {got}: {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(body)
}

async fn http_register(http: &reqwest::Client, base: &str, iat: &str) -> Result<String> {
    let r = http
        .post(format!("{base}/oauth2/register"))
        .bearer_auth(iat)
        .header("content-type", "application/json")
        .body(registration_body())
        .send()
        .await?;
    let body = check(r, 201).await?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(v.get("client_id")
        .and_then(serde_json::Value::as_str)
        .ok_or("no client_id")?
        .to_owned())
}

/// `n` authorization codes (the example server auto-approves).
async fn http_codes(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    n: usize,
) -> Result<Vec<(String, CodeVerifier)>> {
    let mut codes = Vec::with_capacity(n);
    for _ in 0..n {
        let (query, verifier) = authorize_query(client_id);
        let r = http.get(format!("{base}/oauth2/authorize?{query}")).send().await?;
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("authorize: {} without Location", r.status()))?;
        codes.push((code_in(location)?, verifier));
    }
    Ok(codes)
}

// ---------------------------------------------------------------- requests

fn registration_body() -> String {
    serde_json::json!({
        "redirect_uris": [REDIRECT],
        "client_name": "loadgen",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    })
    .to_string()
}

fn authorize_query(client_id: &str) -> (String, CodeVerifier) {
    let mut random = [0u8; 32];
    SystemRandom.fill(&mut random);
    let verifier = CodeVerifier::from_random(&random);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "loadgen")
        .append_pair("resource", RESOURCE)
        .finish();
    (query, verifier)
}

fn code_in(location: &str) -> Result<String> {
    let url = url::Url::parse(location)?;
    Ok(url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| format!("no code in {location}"))?)
}

fn token_body(code: &str, client_id: &str, verifier: &CodeVerifier) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("client_id", client_id)
        .append_pair("code_verifier", verifier.as_str())
        .finish()
}

// ---------------------------------------------------------------- in process

/// The driver as the example server builds it for `--database-url
/// memory:` (memory stores, the memory audit log, a CIMD fetcher, no
/// client quota, the demo project through the MCP cascade, opaque access
/// tokens), with the Prometheus recorder installed as the server does.
async fn inproc_server() -> Result<AuthorizationServer> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder();
    let issuer = Issuer::new_allowing_loopback_http_for_development("http://127.0.0.1:8080".to_owned())?;
    let mut policy = RegistrationPolicy::default();
    policy.max_clients_per_project = None;
    let server = AuthorizationServer::builder(issuer)
        .metadata_fetcher(Arc::new(ReqwestFetcher::builder().build()?))
        .registration_policy(policy)
        .audit(Arc::new(MemoryAuditLog::new()))
        .build();
    let project = ProjectId::new(PROJECT)?;
    let resource = ResourceUri::parse(RESOURCE.to_owned())?;
    let mut settings = ProjectSettings::default();
    settings.scopes_supported = ScopeSet::parse("openid email profile mcp:read mcp:write")?;
    settings.default_scopes = ScopeSet::parse("mcp:read mcp:write")?;
    settings.default_resource = Some(resource.clone());
    settings
        .resources
        .upsert(KnownResource::new(resource.clone(), "Demo MCP server")?);
    let mut display = ProjectDisplay::default();
    display.name = Some("Authio demo".to_owned());
    display
        .resource_names
        .insert(resource.as_str().to_owned(), "Demo MCP server".to_owned());
    settings.display = display;
    settings.access_token_format = AccessTokenFormat::Opaque;
    server.put_project(&project, settings).await?;
    server.set_mcp_enabled(&project, true).await?;
    Ok(server)
}

struct InProc {
    server: AuthorizationServer,
    project: ProjectId,
    iat: String,
    client_id: String,
    source: RequestSource,
}

fn run_inproc(args: &Args) -> Result<()> {
    let me = std::process::id().to_string();
    let ctx = futures_executor::block_on(inproc_context())?;
    let mut samples = Vec::new();
    for round in 0..=args.rounds {
        let n = if round == 0 { args.warm } else { args.n };
        for op in OPS {
            let codes = match op {
                Op::Token => futures_executor::block_on(inproc_codes(&ctx, n))?,
                _ => Vec::new(),
            };
            let bodies: Vec<String> = codes
                .iter()
                .map(|(code, v)| token_body(code, &ctx.client_id, v))
                .collect();
            if round == 0 {
                futures_executor::block_on(drive_inproc(&ctx, op, n, &bodies))?;
                continue;
            }
            let u0 = usage(&me)?;
            match op {
                Op::Discovery => measure_inproc_discovery(&ctx, n)?,
                Op::Register => measure_inproc_register(&ctx, n)?,
                Op::Token => measure_inproc_token(&ctx, &bodies)?,
            }
            let u1 = usage(&me)?;
            let s = Sample {
                stat_us: (u1.stat - u0.stat) * 1e6 / n as f64,
                sched_us: (u1.sched - u0.sched) * 1e6 / n as f64,
                sys_us: (u1.sys - u0.sys) * 1e6 / n as f64,
                switches: (u1.switches - u0.switches) / n as f64,
                instructions: None,
            };
            samples.push((op, s));
        }
    }
    report("in process (driver, this process's CPU)", &samples);
    Ok(())
}

async fn inproc_context() -> Result<InProc> {
    let server = inproc_server().await?;
    let project = ProjectId::new(PROJECT)?;
    let iat = server
        .issue_iat(&project, IatOptions::new().label("http_cost"))
        .await?
        .token
        .expose_secret()
        .to_owned();
    let mut ctx = InProc {
        server,
        project,
        iat: format!("Bearer {iat}"),
        client_id: String::new(),
        source: RequestSource::from_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    };
    ctx.client_id = ctx
        .server
        .register_client_from(
            &ctx.project,
            Some(&ctx.iat),
            registration_body().as_bytes(),
            ctx.source.ip(),
        )
        .await?
        .client_id
        .as_str()
        .to_owned();
    Ok(ctx)
}

/// The measured discovery calls (a function of their own, for
/// callgrind's `--toggle-collect=*measure_inproc_discovery*`).
#[inline(never)]
fn measure_inproc_discovery(ctx: &InProc, n: usize) -> Result<()> {
    futures_executor::block_on(drive_inproc(ctx, Op::Discovery, n, &[]))
}

/// The measured registrations.
#[inline(never)]
fn measure_inproc_register(ctx: &InProc, n: usize) -> Result<()> {
    futures_executor::block_on(drive_inproc(ctx, Op::Register, n, &[]))
}

/// The measured code exchanges.
#[inline(never)]
fn measure_inproc_token(ctx: &InProc, bodies: &[String]) -> Result<()> {
    futures_executor::block_on(drive_inproc(ctx, Op::Token, bodies.len(), bodies))
}

/// What the HTTP layer asks of the driver for `n` requests of `op`.
async fn drive_inproc(ctx: &InProc, op: Op, n: usize, token_bodies: &[String]) -> Result<()> {
    let body = registration_body();
    for i in 0..n {
        match op {
            Op::Discovery => {
                let m = ctx.server.metadata(&ctx.project).await?;
                std::hint::black_box(m.to_json());
            }
            Op::Register => {
                let r = ctx
                    .server
                    .register_client_from(&ctx.project, Some(&ctx.iat), body.as_bytes(), ctx.source.ip())
                    .await?;
                std::hint::black_box(r.to_response());
            }
            Op::Token => {
                let b = token_bodies.get(i).ok_or("out of codes")?;
                let t = ctx
                    .server
                    .token_from(&ctx.project, None, b.as_bytes(), Some(&ctx.source))
                    .await?;
                std::hint::black_box(t.to_json());
            }
        }
    }
    Ok(())
}

/// `n` authorization codes, approved as the example server's
/// `--auto-approve` does.
async fn inproc_codes(ctx: &InProc, n: usize) -> Result<Vec<(String, CodeVerifier)>> {
    let subject = Subject::new(SUBJECT)?;
    let mut codes = Vec::with_capacity(n);
    for _ in 0..n {
        let (query, verifier) = authorize_query(&ctx.client_id);
        let pending = match ctx.server.authorize_from(&ctx.project, &query, Some(&ctx.source)).await {
            AuthorizeOutcome::Pending(p) => p,
            AuthorizeOutcome::ShowError(e) => return Err(e.into()),
            _ => return Err("authorize: not pending".into()),
        };
        let location = ctx
            .server
            .approve(*pending, subject.clone(), None)
            .await
            .map_err(|e| e.to_string())?;
        codes.push((code_in(&location)?, verifier));
    }
    Ok(codes)
}
