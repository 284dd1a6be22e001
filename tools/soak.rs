//! A memory soak test: completes many whole flows in process against the
//! driver and the in-memory stores, with a fixed clock that advances, and
//! purges periodically. Prints the resident set size (and its peak,
//! `VmHWM`) at checkpoints, to show that memory stays flat.
//!
//! ```text
//! cargo run --release --example soak -- --flows 1000000
//! cargo run --release --example soak -- --one-grant --flows 1000000
//! cargo run --release --example soak -- --one-grant --flows 100000 --database-url sqlite:///tmp/soak.db
//! ```
//!
//! Each flow: authorize (one of 64 registered clients), approve, exchange
//! the code, refresh once, introspect. Every 100th flow also issues a
//! one-use initial access token, registers a client with it, and deletes
//! that client (an operator cleaning up), so spent tokens pile up unless
//! purged. The clock advances `--step-ms` per flow (simulated time), and
//! `AuthorizationServer::purge_expired` runs every `--purge-every-secs` of
//! simulated time. Live records then stay at about
//! `refresh TTL / step` flows' worth, whatever the number of flows.

#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../examples/common/cli.rs"]
mod cli;

use std::sync::Arc;
use std::time::Instant;

use authio_mcp::client::ClientId;
use authio_mcp::dcr::{IatOptions, RegistrationPolicy};
use authio_mcp::discovery::Issuer;
use authio_mcp::grant::Subject;
use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use authio_mcp::project::{ProjectId, ProjectSettings};
use authio_mcp::scope::ScopeSet;
use authio_mcp::server::{AuthorizationServer, AuthorizeOutcome, FixedClock, RandomSource, SystemRandom};
use authio_mcp::store::ClientStore;
use authio_mcp::store::GrantStore;
use authio_mcp::store::memory::{MemoryClientStore, MemoryGrantStore};
use authio_mcp::store::sql::{PostgresStore, SqlOptions, SqliteStore};
use time::Duration;
use time::macros::datetime;

const HELP: &str = "\
authio-mcp memory soak: whole flows in process, with purging

USAGE: cargo run --release --example soak -- [FLAGS]

  --flows N              flows to complete (default 100000)
  --step-ms MS           simulated time between flows (default 100)
  --purge-every-secs S   simulated seconds between purges (default 60)
  --refresh-ttl-secs S   refresh-token lifetime (default 3600)
  --no-purge             never purge (to see the difference)
  --one-grant            instead: one sign-in, then refresh that one grant
                         --flows times (memory per refresh must stay flat)
  --database-url URL     with --one-grant: keep codes and tokens in SQLite
                         (sqlite://PATH, a fresh file) or PostgreSQL
                         (postgres://..., an empty database) and print the
                         rows of the grant tables at each checkpoint
";

const REDIRECT: &str = "https://claude.ai/api/mcp/auth_callback";
const REGISTRATION: &str = r#"{"redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
  "client_name": "soak", "token_endpoint_auth_method": "none",
  "grant_types": ["authorization_code", "refresh_token"]}"#;
const CLIENTS: usize = 64;

fn main() {
    let mut flows: u64 = 100_000;
    let mut step_ms: i64 = 100;
    let mut purge_every: i64 = 60;
    let mut refresh_ttl: i64 = 3600;
    let mut purge = true;
    let mut one_grant = false;
    let mut database_url: Option<String> = None;
    let number = |flags: &mut cli::Flags, flag: &str| flags.number::<i64>(flag).unwrap_or_else(|e| fail(&e));
    let mut flags = cli::Flags::from_env();
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "--help" | "-h" => cli::print_help(HELP),
            "--database-url" => database_url = Some(flags.value(&flag).unwrap_or_else(|e| fail(&e))),
            "--flows" => flows = number(&mut flags, &flag).max(1) as u64,
            "--step-ms" => step_ms = number(&mut flags, &flag).max(1),
            "--purge-every-secs" => purge_every = number(&mut flags, &flag).max(1),
            "--refresh-ttl-secs" => refresh_ttl = number(&mut flags, &flag).max(1),
            "--no-purge" => purge = false,
            "--one-grant" => one_grant = true,
            other => fail(&cli::unknown(other)),
        }
    }

    let clock = Arc::new(FixedClock::new(datetime!(2026-11-26 12:00 UTC)));
    let grants = Arc::new(MemoryGrantStore::new());
    let clients = Arc::new(MemoryClientStore::new());
    if database_url.is_some() && !one_grant {
        fail("--database-url is for --one-grant");
    }
    let sql = database_url.as_deref().map(SqlGrants::open);
    let grant_store: Arc<dyn GrantStore> = match &sql {
        Some(s) => s.store(),
        None => grants.clone(),
    };
    let server = AuthorizationServer::builder(Issuer::new("https://auth-api.authio.com").unwrap())
        .clock(clock.clone())
        .grants(grant_store)
        .clients(clients.clone())
        .registration_policy(RegistrationPolicy::default())
        .build();
    let project = ProjectId::new("proj_soak").unwrap();
    let mut settings = ProjectSettings::default();
    settings.scopes_supported = ScopeSet::parse("mcp:read mcp:write").unwrap();
    settings.default_scopes = ScopeSet::parse("mcp:read").unwrap();
    settings.access_token_ttl = Duration::minutes(15);
    settings.refresh_token_ttl = Duration::seconds(refresh_ttl);
    // The MCP server the requests name must be known to the project.
    settings.default_resource = Some(authio_mcp::resource::ResourceUri::parse("https://mcp.example.com/mcp").unwrap());
    block_on(server.put_project(&project, settings.set_mcp_enabled(true).0)).unwrap();

    let register = |iat: &str| {
        block_on(server.register_client(&project, Some(&format!("Bearer {iat}")), REGISTRATION.as_bytes())).unwrap()
    };
    let step = Duration::milliseconds(step_ms);
    let master = block_on(server.issue_iat(&project, IatOptions::new())).unwrap();
    let pool: Vec<ClientId> = (0..CLIENTS)
        .map(|_| ClientId::Registered(register(master.token.expose_secret()).client_id))
        .collect();

    if one_grant {
        let held = || match &sql {
            Some(s) => s.rows(),
            None => format!("{} codes+tokens held, {} tombstones", grants.len(), grants.tombstones()),
        };
        one_grant_soak(&server, &project, &pool[0], &clock, &held, flows, step);
        return;
    }
    println!("soak: {flows} flows, {step_ms} ms simulated per flow, purge every {purge_every} s (purging: {purge})");
    println!("  baseline: {}", memory());
    let checkpoints = [flows / 10, flows / 2, flows, 100_000, 500_000, 1_000_000];
    let started = Instant::now();
    let mut since_purge = Duration::ZERO;
    let mut purged = 0usize;
    for n in 1..=flows {
        let client = &pool[(n as usize) % CLIENTS];
        flow(&server, &project, client);
        if n % 100 == 0 {
            let iat =
                block_on(server.issue_iat(&project, IatOptions::new().max_uses(1).ttl(Duration::minutes(10)))).unwrap();
            let r = register(iat.token.expose_secret());
            block_on(clients.delete(&project, &r.client_id)).unwrap();
        }
        clock.advance(step);
        since_purge += step;
        if purge && since_purge >= Duration::seconds(purge_every) {
            purged += block_on(server.purge_expired()).unwrap();
            since_purge = Duration::ZERO;
        }
        if checkpoints.contains(&n) {
            println!(
                "  after {n:>8} flows: {}, {} codes+tokens held, {purged} purged, {:.1} s",
                memory(),
                grants.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  done: {flows} flows in {secs:.1} s ({:.0} flows/s on one thread)",
        flows as f64 / secs
    );
}

/// One sign-in, then `refreshes` refreshes of that one grant (each also
/// introspects the new access token), without purging: the grant store's
/// per-grant bounds alone must keep memory flat.
fn one_grant_soak(
    server: &AuthorizationServer,
    project: &ProjectId,
    client: &ClientId,
    clock: &FixedClock,
    held: &dyn Fn() -> String,
    refreshes: u64,
    step: Duration,
) {
    println!(
        "soak: one grant refreshed {refreshes} times, {} ms simulated per refresh, no purge",
        step.whole_milliseconds()
    );
    println!("  baseline: {}", memory());
    let mut refresh = sign_in(server, project, client).refresh_token.unwrap();
    let started = Instant::now();
    let checkpoints = [1_000, 10_000, 100_000, 250_000, 500_000, 750_000, 1_000_000, refreshes];
    for n in 1..=refreshes {
        let body = form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", client.as_str()),
        ]);
        let t = block_on(server.token(project, None, body.as_bytes())).unwrap();
        assert!(
            block_on(server.introspect_token(project, &t.access_token))
                .unwrap()
                .active
        );
        refresh = t.refresh_token.unwrap();
        clock.advance(step);
        if checkpoints.contains(&n) {
            println!(
                "  after {n:>8} refreshes: {}, {}, {:.1} s",
                memory(),
                held(),
                started.elapsed().as_secs_f64()
            );
        }
    }
}

fn sign_in(server: &AuthorizationServer, project: &ProjectId, client: &ClientId) -> authio_mcp::token::TokenResponse {
    let mut random = [0u8; 32];
    SystemRandom.fill(&mut random);
    let verifier = CodeVerifier::from_random(&random);
    let query = form(&[
        ("response_type", "code"),
        ("client_id", client.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CodeChallenge::s256(&verifier).as_str()),
        ("code_challenge_method", "S256"),
        ("resource", "https://mcp.example.com/mcp"),
    ]);
    let pending = match block_on(server.authorize(project, &query)) {
        AuthorizeOutcome::Pending(p) => *p,
        other => panic!("authorize: {other:?}"),
    };
    let location = block_on(server.approve(pending, Subject::new("user_soak").unwrap(), None)).unwrap();
    let code = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("client_id", client.as_str()),
        ("code_verifier", verifier.as_str()),
    ]);
    block_on(server.token(project, None, body.as_bytes())).unwrap()
}

fn flow(server: &AuthorizationServer, project: &ProjectId, client: &ClientId) {
    let mut random = [0u8; 32];
    SystemRandom.fill(&mut random);
    let verifier = CodeVerifier::from_random(&random);
    let query = form(&[
        ("response_type", "code"),
        ("client_id", client.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CodeChallenge::s256(&verifier).as_str()),
        ("code_challenge_method", "S256"),
        ("state", "soak"),
        ("resource", "https://mcp.example.com/mcp"),
    ]);
    let pending = match block_on(server.authorize(project, &query)) {
        AuthorizeOutcome::Pending(p) => *p,
        other => panic!("authorize: {other:?}"),
    };
    let location = block_on(server.approve(pending, Subject::new("user_soak").unwrap(), None)).unwrap();
    let code = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("client_id", client.as_str()),
        ("code_verifier", verifier.as_str()),
    ]);
    let tokens = block_on(server.token(project, None, body.as_bytes())).unwrap();
    let body = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens.refresh_token.as_deref().unwrap()),
        ("client_id", client.as_str()),
    ]);
    let refreshed = block_on(server.token(project, None, body.as_bytes())).unwrap();
    let info = block_on(server.introspect_token(project, &refreshed.access_token)).unwrap();
    assert!(info.active);
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Every async call of the soak runs on this one runtime (the SQL stores
/// need tokio; the in-memory ones do not care).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        })
        .block_on(f)
}

/// The grant tables on SQL, with a second pool that counts their rows.
enum SqlGrants {
    Sqlite(Arc<SqliteStore>, sqlx::SqlitePool, String),
    Postgres(Arc<PostgresStore>, sqlx::PgPool),
}

const TABLES: [&str; 4] = [
    "authorization_codes",
    "refresh_tokens",
    "refresh_tombstones",
    "access_tokens",
];

impl SqlGrants {
    fn open(url: &str) -> Self {
        block_on(async {
            if url.starts_with("sqlite:") {
                let store = SqliteStore::connect(url, SqlOptions::default()).await.unwrap();
                store.migrate().await.unwrap();
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:")
                    .to_owned();
                Self::Sqlite(Arc::new(store), sqlx::SqlitePool::connect(url).await.unwrap(), path)
            } else {
                let store = PostgresStore::connect(url, SqlOptions::default()).await.unwrap();
                store.migrate().await.unwrap();
                Self::Postgres(Arc::new(store), sqlx::PgPool::connect(url).await.unwrap())
            }
        })
    }

    fn store(&self) -> Arc<dyn GrantStore> {
        match self {
            Self::Sqlite(s, ..) => s.clone(),
            Self::Postgres(s, _) => s.clone(),
        }
    }

    /// Rows per grant table (and the SQLite file with its WAL).
    fn rows(&self) -> String {
        use sqlx::Row as _;
        block_on(async {
            let mut out = Vec::new();
            for table in TABLES {
                let sql = format!("SELECT COUNT(*) FROM {table}");
                let n: i64 = match self {
                    Self::Sqlite(_, pool, _) => sqlx::query(&sql).fetch_one(pool).await.unwrap().get(0),
                    Self::Postgres(_, pool) => sqlx::query(&sql).fetch_one(pool).await.unwrap().get(0),
                };
                out.push(format!("{table} {n}"));
            }
            if let Self::Sqlite(_, _, path) = self {
                let size = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                out.push(format!(
                    "file {:.1} MB + WAL {:.1} MB",
                    size(path) as f64 / 1e6,
                    size(&format!("{path}-wal")) as f64 / 1e6
                ));
            }
            format!("rows: {}", out.join(", "))
        })
    }
}

/// `VmRSS` and `VmHWM` (peak RSS) from `/proc/self/status` (Linux).
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.trim_start_matches(name).trim().to_owned())
            .unwrap_or_else(|| "n/a".into())
    };
    format!("RSS {}, peak {}", field("VmRSS:"), field("VmHWM:"))
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2);
}
