//! Two example-server PROCESSES on one PostgreSQL database, over real
//! sockets: what one instance issues, the other honours; everything
//! single-use or counted stays exactly-once across them; `kill -9` of one
//! loses nothing a response promised. A keeps the codes, refresh tokens
//! and initial access tokens it issued or used (`--recent-records`, so it
//! skips the store reads before the atomic calls); B reads the store every
//! time: both hold the same rules.
//!
//! Runs when `AUTHIO_TEST_DATABASE_URL` names a PostgreSQL server (the
//! test creates and drops a database of its own); otherwise it prints one
//! line and passes. Spawns the example binary cargo built for the tests
//! (`target/debug/examples/server`; `cargo test --test multi_instance`
//! alone does not build it: `cargo build --example server` first), or the
//! one `AUTHIO_TEST_SERVER_BIN` names.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
mod sql_support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, server_binary};

use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "admin-multi";
const INTROSPECT: &str = "introspect-multi";
const RESOURCE: &str = "http://127.0.0.1:8090/mcp";
const REDIRECT: &str = "https://client.example.com/cb";

/// One server process.
struct Instance {
    child: Child,
    port: u16,
    base: String,
}

impl Instance {
    async fn start(port: u16, issuer: &str, database_url: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(server_binary())
            .args(extra)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--issuer", issuer])
            .args(["--database-url", database_url])
            .arg("--key-encryption-key-file")
            .arg(Self::key_file(database_url))
            .args(["--admin-token", ADMIN, "--introspection-token", INTROSPECT])
            .args(["--auto-approve", "--max-clients", "none", "--purge-interval-secs", "0"])
            .args(["--db-pool-size", "24", "--db-acquire-timeout-ms", "30000"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(Self::log(port)).unwrap()))
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http
                .get(format!("{base}/.well-known/oauth-authorization-server"))
                .send()
                .await
                && r.status() == 200
            {
                return Self { child, port, base };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(Self::log(port)).unwrap_or_default();
        panic!("instance on port {port} did not start:\n{log}");
    }

    /// One key-encryption key file per database, shared by its instances
    /// (created by whichever starts first).
    fn key_file(database_url: &str) -> std::path::PathBuf {
        let db = database_url.rsplit('/').next().unwrap_or("db");
        std::env::temp_dir().join(format!("authio-multi-instance-{db}.kek"))
    }

    fn log(port: u16) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("authio-multi-instance-{port}.log"))
    }

    fn kill9(&mut self) {
        // SIGKILL: no graceful shutdown, no flushing.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fetches what the verifier asks for from `base` instead of the issuer:
/// the JWKS one particular instance publishes.
struct InstanceJwks {
    issuer: String,
    base: String,
}

#[async_trait::async_trait]
impl authio_mcp::resource_server::JwksFetcher for InstanceJwks {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let url = url.replacen(&self.issuer, &self.base, 1);
        let r = reqwest::get(url).await.map_err(|e| e.to_string())?;
        if r.status() != 200 {
            return Err(format!("status {}", r.status()));
        }
        Ok(r.bytes().await.map_err(|e| e.to_string())?.to_vec())
    }
}

/// Whether a JWT access token verifies against the keys the instance at
/// `base` publishes (its signature, issuer, audience and expiry).
async fn verifies_on(issuer: &str, base: &str, token: &str) -> bool {
    use authio_mcp::resource_server::TokenVerifier as _;
    let fetcher = Arc::new(InstanceJwks {
        issuer: issuer.to_owned(),
        base: base.to_owned(),
    });
    let verifier = authio_mcp::resource_server::JwtVerifier::discover(
        &authio_mcp::discovery::Issuer::new_allowing_loopback_http_for_development(issuer).unwrap(),
        authio_mcp::resource::ResourceUri::parse(RESOURCE).unwrap(),
        fetcher,
    )
    .await
    .unwrap();
    verifier.verify(token, time::OffsetDateTime::now_utc()).await.is_ok()
}

#[derive(Clone)]
struct Http(reqwest::Client);

impl Http {
    fn new() -> Self {
        Self(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
        )
    }

    async fn admin(&self, base: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.0.request(method, format!("{base}{path}")).bearer_auth(ADMIN);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let r = req.send().await.unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn issue_iat(&self, base: &str, max_uses: u32) -> String {
        let (s, v) = self
            .admin(
                base,
                reqwest::Method::POST,
                "/admin/projects/proj_demo/iats",
                Some(json!({ "max_uses": max_uses })),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    async fn register(&self, base: &str, iat: &str) -> (StatusCode, Value) {
        let body = json!({"redirect_uris": [REDIRECT], "client_name": "Multi", "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"]});
        let r = self
            .0
            .post(format!("{base}/oauth2/register"))
            .bearer_auth(iat)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn sign_in(&self, base: &str, client_id: &str, verifier: &CodeVerifier) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_challenge", CodeChallenge::s256(verifier).as_str())
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "s")
            .append_pair("resource", RESOURCE)
            .append_pair("scope", "mcp:read")
            .finish();
        let r = self
            .0
            .get(format!("{base}/oauth2/authorize?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap()
    }

    async fn form(&self, base: &str, path: &str, pairs: &[(&str, &str)], bearer: Option<&str>) -> reqwest::Response {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            ser.append_pair(k, v);
        }
        let mut req = self
            .0
            .post(format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(ser.finish());
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send().await.unwrap()
    }

    async fn exchange(&self, base: &str, client_id: &str, code: &str, verifier: &CodeVerifier) -> (StatusCode, Value) {
        let r = self
            .form(
                base,
                "/oauth2/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", REDIRECT),
                    ("client_id", client_id),
                    ("code_verifier", verifier.as_str()),
                    ("resource", RESOURCE),
                ],
                None,
            )
            .await;
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn refresh(&self, base: &str, client_id: &str, token: &str) -> (StatusCode, Value) {
        let r = self
            .form(
                base,
                "/oauth2/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token),
                    ("client_id", client_id),
                ],
                None,
            )
            .await;
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn active(&self, base: &str, token: &str) -> bool {
        let r = self
            .form(base, "/oauth2/introspect", &[("token", token)], Some(INTROSPECT))
            .await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["active"] == true
    }

    async fn metadata(&self, base: &str) -> Value {
        self.0
            .get(format!("{base}/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn verifier(n: u32) -> CodeVerifier {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&n.to_be_bytes());
    CodeVerifier::from_random(&b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_postgres_database() {
    let Some(db) = sql_support::pg_database("two_processes_on_one_postgres_database").await else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (port_a, port_b) = (free_port(), free_port());
    // One issuer for both, as behind a load balancer.
    let issuer = format!("http://127.0.0.1:{port_a}");
    const RECENT: &[&str] = &["--recent-records", "1000"];
    let mut a = Instance::start(port_a, &issuer, &db.url, RECENT).await;
    let b = Instance::start(port_b, &issuer, &db.url, &[]).await;
    let (a_url, b_url) = (a.base.clone(), b.base.clone());
    let http = Http::new();

    // A client registered on A signs in through B.
    let iat = http.issue_iat(&a_url, 1000).await;
    let (s, reg) = http.register(&a_url, &iat).await;
    assert_eq!(s, 201, "{reg}");
    let client = reg["client_id"].as_str().unwrap().to_owned();
    let v = verifier(1);
    let code = http.sign_in(&b_url, &client, &v).await;
    let (s, tokens) = http.exchange(&b_url, &client, &code, &v).await;
    assert_eq!(s, 200, "{tokens}");

    // A code minted on A is redeemed on B.
    let v = verifier(2);
    let code = http.sign_in(&a_url, &client, &v).await;
    let (s, tokens) = http.exchange(&b_url, &client, &code, &v).await;
    assert_eq!(s, 200, "{tokens}");
    assert!(
        http.active(&a_url, tokens["access_token"].as_str().unwrap()).await,
        "B's token introspects on A"
    );

    // 200 concurrent redemptions of one code, split across A and B: one token response.
    let v = verifier(3);
    let code = http.sign_in(&a_url, &client, &v).await;
    let wins = futures_util::future::join_all((0..200).map(|i| {
        let (http, base, client, code, v) = (
            http.clone(),
            if i % 2 == 0 { a_url.clone() } else { b_url.clone() },
            client.clone(),
            code.clone(),
            v.clone(),
        );
        async move { http.exchange(&base, &client, &code, &v).await.0 == 200 }
    }))
    .await
    .into_iter()
    .filter(|ok| *ok)
    .count();
    assert_eq!(wins, 1, "exactly one token response for one code across two instances");

    // A refresh-token reuse seen by B revokes the family rotated on A.
    let v = verifier(4);
    let code = http.sign_in(&a_url, &client, &v).await;
    let (_, first) = http.exchange(&a_url, &client, &code, &v).await;
    let rt0 = first["refresh_token"].as_str().unwrap().to_owned();
    let (s, second) = http.refresh(&a_url, &client, &rt0).await;
    assert_eq!(s, 200, "{second}");
    let rt1 = second["refresh_token"].as_str().unwrap().to_owned();
    let at1 = second["access_token"].as_str().unwrap().to_owned();
    assert!(http.active(&b_url, &at1).await);
    // A JWT A signed verifies against B's JWKS: one key set in the database.
    assert!(at1.matches('.').count() == 2, "a JWT access token");
    assert!(verifies_on(&issuer, &b_url, &at1).await, "A's JWT verifies on B's keys");
    // Within the reuse grace (default 5 s) B hands out the very pair A
    // issued: the rotation mark is in the database, not in A's memory.
    let (s, concurrent) = http.refresh(&b_url, &client, &rt0).await;
    assert_eq!(s, 200, "{concurrent}");
    assert_eq!(concurrent["refresh_token"].as_str(), Some(rt1.as_str()));
    assert_eq!(concurrent["access_token"].as_str(), Some(at1.as_str()));
    // Without a grace, the same presentation on B is reuse.
    let (s, v) = http
        .admin(
            &a_url,
            reqwest::Method::PATCH,
            "/admin/projects/proj_demo",
            Some(serde_json::json!({"refresh_reuse_grace": 0})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, reuse) = http.refresh(&b_url, &client, &rt0).await;
    assert_eq!(
        (s, reuse["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (s, _) = http.refresh(&a_url, &client, &rt1).await;
    assert_eq!(s, 400, "the rotated family is revoked on A too");
    assert!(!http.active(&a_url, &at1).await, "and its access token");

    // An IAT with max_uses = 5: 100 concurrent registrations across A and B admit 5.
    let five = http.issue_iat(&b_url, 5).await;
    let admitted = futures_util::future::join_all((0..100).map(|i| {
        let (http, base, five) = (
            http.clone(),
            if i % 2 == 0 { a_url.clone() } else { b_url.clone() },
            five.clone(),
        );
        async move { http.register(&base, &five).await.0 == 201 }
    }))
    .await
    .into_iter()
    .filter(|ok| *ok)
    .count();
    assert_eq!(admitted, 5);

    // The MCP switch flipped on A is what B serves, on B's next request:
    // projects are read from the database on every request (no cache, so
    // the staleness bound is zero).
    assert_eq!(http.metadata(&b_url).await["mcp_authorization_supported"], true);
    let (s, _) = http
        .admin(
            &a_url,
            reqwest::Method::POST,
            "/admin/projects/proj_demo/mcp",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, 200);
    let m = http.metadata(&b_url).await;
    assert_eq!(m["mcp_authorization_supported"], false, "{m}");
    let (s, _) = http
        .admin(
            &b_url,
            reqwest::Method::POST,
            "/admin/projects/proj_demo/mcp",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(http.metadata(&a_url).await["mcp_authorization_supported"], true);

    // kill -9 of A in the middle of a load of whole flows, then a restart.
    let issued = Arc::new(std::sync::Mutex::new(Vec::<(String, String, String)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load_iat = http.issue_iat(&b_url, 100_000).await;
    let mut workers = Vec::new();
    for w in 0..8u32 {
        let (http, issued, stop, iat) = (http.clone(), issued.clone(), stop.clone(), load_iat.clone());
        let base = if w % 2 == 0 { a_url.clone() } else { b_url.clone() };
        workers.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                // Any step may fail while A is down: only what a response
                // delivered counts as issued.
                let flow = async {
                    let r = http
                        .0
                        .post(format!("{base}/oauth2/register"))
                        .bearer_auth(&iat)
                        .header("content-type", "application/json")
                        .body(json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"]}).to_string())
                        .send()
                        .await
                        .ok()?;
                    let client = r.json::<Value>().await.ok()?["client_id"].as_str()?.to_owned();
                    let v = verifier(10_000 * (w + 1) + n);
                    let query = url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("response_type", "code")
                        .append_pair("client_id", &client)
                        .append_pair("redirect_uri", REDIRECT)
                        .append_pair("code_challenge", CodeChallenge::s256(&v).as_str())
                        .append_pair("code_challenge_method", "S256")
                        .append_pair("resource", RESOURCE)
                        .finish();
                    let r = http.0.get(format!("{base}/oauth2/authorize?{query}")).send().await.ok()?;
                    let location = url::Url::parse(r.headers().get("location")?.to_str().ok()?).ok()?;
                    let code = location.query_pairs().find(|(k, _)| k == "code")?.1.into_owned();
                    let body = url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("grant_type", "authorization_code")
                        .append_pair("code", &code)
                        .append_pair("redirect_uri", REDIRECT)
                        .append_pair("client_id", &client)
                        .append_pair("code_verifier", v.as_str())
                        .append_pair("resource", RESOURCE)
                        .finish();
                    let r = http
                        .0
                        .post(format!("{base}/oauth2/token"))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body)
                        .send()
                        .await
                        .ok()?;
                    if r.status() != 200 {
                        return None;
                    }
                    let t: Value = r.json().await.ok()?;
                    Some((client, t["access_token"].as_str()?.to_owned(), t["refresh_token"].as_str()?.to_owned()))
                };
                if let Some(done) = flow.await {
                    issued.lock().unwrap().push(done);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.kill9();
    let before_kill = issued.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a2 = Instance::start(a.port, &issuer, &db.url, RECENT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let issued = issued.lock().unwrap().clone();
    assert!(
        before_kill > 0 && issued.len() > before_kill,
        "flows completed before and after the kill"
    );
    // The signing keys survived the restart: JWTs signed before the kill
    // (by A or B) verify against the restarted A's JWKS.
    for (i, (_, access, _)) in issued.iter().take(before_kill).enumerate() {
        assert!(
            verifies_on(&issuer, &a2.base, access).await,
            "access token {i}, issued before the restart, does not verify after it"
        );
    }
    // Every token a response delivered still works, on either instance, and
    // every refresh token rotates exactly once (none lost, none doubled).
    for (i, (client, access, refresh)) in issued.iter().enumerate() {
        let base = if i % 2 == 0 { &a2.base } else { &b.base };
        assert!(
            http.active(base, access).await,
            "access token {i} of {} lost",
            issued.len()
        );
        let (s, rotated) = http.refresh(base, client, refresh).await;
        assert_eq!(s, 200, "refresh token {i} lost: {rotated}");
        let other = if i % 2 == 0 { &b.base } else { &a2.base };
        let (s, _) = http.refresh(other, client, refresh).await;
        assert_eq!(s, 400, "refresh token {i} rotated twice");
    }
    println!(
        "kill -9: {before_kill} flows before the kill, {} in all, every token intact",
        issued.len()
    );
}
