//! The example server PROCESS as an operator sees it, over real sockets:
//! request ids on responses, log lines and audit events; audit events as
//! JSON lines (`--audit-jsonl`); `/healthz` and `/readyz`, also with the
//! database gone; logs without ANSI codes when standard error is a file;
//! start-up failures as sentences (a taken port, an http issuer).
//!
//! Spawns the example binary cargo built for the tests
//! (`target/debug/examples/server`; `cargo test --test example_ops` alone
//! does not build it: `cargo build --example server` first), or the one
//! `AUTHIO_TEST_SERVER_BIN` names. The database test runs when
//! `AUTHIO_TEST_DATABASE_URL` names a PostgreSQL server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
mod sql_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, server_binary};

use serde_json::Value;

const ADMIN: &str = "admin-ops";

/// An HTTP client (reqwest is built without a default TLS provider).
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn temp_path(name: &str) -> PathBuf {
    let mut b = [0u8; 6];
    authio_mcp::server::RandomSource::fill(&authio_mcp::server::SystemRandom, &mut b);
    let suffix: String = b.iter().map(|x| format!("{x:02x}")).collect();
    std::env::temp_dir().join(format!("authio-ops-{suffix}-{name}"))
}

/// One server process, its standard error going to a file.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    async fn start(extra: &[&str]) -> Self {
        let port = free_port();
        let log = temp_path("stderr.log");
        let child = Command::new(server_binary())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-token", ADMIN, "--introspection-token", "introspect-ops"])
            .args(["--purge-interval-secs", "0"])
            .args(extra)
            .env("RUST_LOG", "debug,sqlx=warn,hyper=warn,reqwest=warn")
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let http = client();
        for _ in 0..400 {
            if let Ok(r) = http
                .get(server.url("/.well-known/oauth-authorization-server"))
                .send()
                .await
                && r.status() == 200
            {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the server exited ({status}):\n{}", server.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not start:\n{}", server.log_text());
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Runs the server with `args` until it exits; its exit code and
/// standard error.
/// Runs the server with `args` on a free port and waits for it to exit;
/// one that starts instead (it should have refused) is killed after 60 s
/// and fails the test rather than hanging it.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(server_binary())
        .args([
            "--database-url",
            "memory:",
            "--purge-interval-secs",
            "0",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the server did not exit with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn request_ids_tag_responses_log_lines_and_audit_events() {
    let audit = temp_path("audit.jsonl");
    let server = Server::start(&["--database-url", "memory:", "--audit-jsonl", audit.to_str().unwrap()]).await;
    let http = client();

    // A refused token request: audited, logged, answered with an id.
    let r = http
        .post(server.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("user-agent", "ops-test/1.0")
        .body("grant_type=authorization_code&code=ac_secret_looking_code&client_id=client_000000000000000000000000&code_verifier=verifier-that-must-not-be-logged-0123456789abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 16, "{id}");
    // Two requests, two ids.
    let r2 = http.get(server.url("/healthz")).send().await.unwrap();
    assert_ne!(r2.headers()["x-request-id"].to_str().unwrap(), id);

    // The token endpoint's 405 names only its own methods.
    let r = http.get(server.url("/oauth2/token")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST, OPTIONS");

    // Every line the request logged carries its id, the library's closing
    // event included; the audit event went to the JSON-lines file with
    // the id, the peer address and the user agent.
    let mut log = String::new();
    let mut lines: Vec<Value> = Vec::new();
    for _ in 0..100 {
        log = server.log_text();
        lines = std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if log.contains("request handled") && !lines.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tagged: Vec<&str> = log.lines().filter(|l| l.contains(&id)).collect();
    assert!(
        tagged.iter().any(|l| l.contains("authio.request")
            && l.contains("endpoint=\"token\"")
            && l.contains("outcome=\"invalid_client\"")
            && l.contains("reason=\"unknown_client\"")),
        "{log}"
    );
    assert!(
        tagged
            .iter()
            .any(|l| l.contains("status=401") && l.contains("path=\"/oauth2/token\"")),
        "the example's request line: {log}"
    );
    let rejected = lines
        .iter()
        .find(|e| e["event"] == "token.rejected")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(rejected["request_id"], id.as_str());
    assert_eq!(rejected["client_ip"], "127.0.0.1");
    assert_eq!(rejected["user_agent"], "ops-test/1.0");
    assert_eq!(rejected["reason"], "unknown_client");
    assert_eq!(rejected["project_id"], "proj_demo");
    // Events of start-up (no request) are there too, without an id.
    assert!(
        lines
            .iter()
            .any(|e| e["event"] == "initial_access_token.issued" && e.get("request_id").is_none()),
        "{lines:?}"
    );

    // Standard error is a file: no colours. Nothing secret in the log.
    assert!(!log.contains('\u{1b}'), "ANSI escape codes in a log file:\n{log}");
    for secret in ["ac_secret_looking_code", "verifier-that-must-not-be-logged", ADMIN] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    // The audit file is the server user's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&audit).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    drop(server);
    let _ = std::fs::remove_file(&audit);
}

#[tokio::test]
async fn healthz_and_readyz_on_a_working_store() {
    let dir = sql_support::TempDir::new();
    let url = dir.sqlite_url("ops.db");
    let server = Server::start(&["--database-url", &url]).await;
    let http = client();
    for (path, status) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let r = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert!(r.headers().contains_key("x-request-id"));
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], status, "{path}");
    }
}

/// Probes cost the database at most one query a second: `/readyz` reuses
/// its last check (concurrent probes share one), `/healthz` never asks.
#[tokio::test]
async fn readiness_checks_the_store_at_most_once_a_second() {
    let dir = sql_support::TempDir::new();
    let url = dir.sqlite_url("ready.db");
    let server = Server::start(&["--database-url", &url]).await;
    let http = client();
    let checks = |v: &Value| v["store_checks"].as_u64().unwrap();
    let first: Value = http
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let burst = (0..30).map(|_| {
        let http = http.clone();
        let url = server.url("/readyz");
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    });
    let answers = futures_util::future::join_all(burst).await;
    let most = answers.iter().map(checks).max().unwrap();
    assert!(
        most <= checks(&first) + 1,
        "30 probes made {} checks",
        most - checks(&first)
    );
    for _ in 0..20 {
        let v: Value = http
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v, serde_json::json!({"status": "ok"}));
    }
    // Past the cache, the next probe checks again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let later: Value = http
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(checks(&later) > most, "{later}");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn healthz_and_readyz_fail_when_the_database_is_gone() {
    let Some(db) = sql_support::pg_database("healthz_and_readyz_fail_when_the_database_is_gone").await else {
        return;
    };
    let key = temp_path("ops.kek");
    let server = Server::start(&[
        "--database-url",
        &db.url,
        "--key-encryption-key-file",
        key.to_str().unwrap(),
        "--db-acquire-timeout-ms",
        "2000",
    ])
    .await;
    let http = client();
    assert_eq!(http.get(server.url("/healthz")).send().await.unwrap().status(), 200);
    // The database is dropped under the running server (its connections
    // terminated).
    drop(db);
    // Liveness does not depend on the database.
    assert_eq!(http.get(server.url("/healthz")).send().await.unwrap().status(), 200);
    // Readiness fails (at once, or after its cached answer expired).
    let mut last = None;
    for _ in 0..40 {
        let r = http.get(server.url("/readyz")).send().await.unwrap();
        if r.status() == 503 {
            last = Some(r.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v = last.expect("/readyz never answered 503");
    assert_eq!(v["store"], "unreachable", "{v}");
    assert!(!v.to_string().contains("authio_test_"), "no database detail: {v}");
    // A request that needs the store answers server_error; the operator's
    // log has the database's message.
    let r = http
        .get(server.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let log = server.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("storage failure; answered server_error")),
        "{log}"
    );
    let _ = std::fs::remove_file(&key);
}

#[test]
fn a_taken_port_is_reported_as_a_sentence() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = run_to_exit(&["--listen", &addr]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: cannot listen on {addr}: the address is already in use"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--listen"), "says what to do: {stderr}");
    assert!(!stderr.contains("Os {"), "no debug dump: {stderr}");
    drop(taken);
}

#[test]
fn an_http_issuer_is_explained() {
    let (code, stderr) = run_to_exit(&["--issuer", "http://auth.example.com"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--issuer http://auth.example.com: an issuer must be an https URL; plain http is accepted only on 127.0.0.1, [::1] or localhost"),
        "{stderr}"
    );
    // Other issuer errors keep their own message.
    let (code, stderr) = run_to_exit(&["--issuer", "https://auth.example.com/?x=1"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("must not have a query or fragment"), "{stderr}");
}

/// Admin and introspection credentials are sent as bearer tokens, so the
/// server refuses one that no client could send (RFC 6750 `b64token`).
#[test]
fn a_credential_that_is_not_a_bearer_token_is_refused() {
    for flag in ["--admin-token", "--introspection-token"] {
        let (code, stderr) = run_to_exit(&[flag, "my secret!"]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(&format!("{flag} must be a bearer token")), "{stderr}");
    }
}
