//! Abuse resistance (issue 18) over real loopback sockets: each scenario
//! is a lock-out attempt with a bounded number of requests, followed by
//! the legitimate user or client succeeding. Sources are distinct loopback
//! addresses (127.0.0.x), which the example server sees as distinct
//! request sources. No timing assertions beyond generous bounds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/tls.rs"]
mod tls;

#[path = "../examples/server/app.rs"]
#[allow(dead_code)]
mod app;

mod sql_support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use authio_mcp::discovery::Issuer;
use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use authio_mcp::resource::ResourceUri;
use authio_mcp::store::sql::SqlOptions;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret";
const RESOURCE: &str = "http://127.0.0.1:8090/mcp";
const REDIRECT: &str = "http://127.0.0.1:5555/cb";

fn config(base: &str, cimd_root_cert: Option<Vec<u8>>) -> app::Config {
    app::Config {
        issuer: Issuer::new_allowing_loopback_http_for_development(base.to_owned()).unwrap(),
        admin_token: ADMIN.into(),
        auto_approve: false,
        allow_loopback_cimd: true,
        cimd_root_cert,
        dcr_mode: None,
        resource: ResourceUri::parse(RESOURCE).unwrap(),
        introspection_token: "introspect-secret".into(),
        upstream: None,
    }
}

/// A running example server.
struct Running {
    base: String,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

/// Serves `app` on `listener`, with each connection's peer address as its
/// request source (as the example's main does).
async fn serve(app: app::App, listener: tokio::net::TcpListener, base: String) -> Running {
    let router = app.router().await.unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap()
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    Running { base }
}

async fn start(limits: Option<app::ConsentLimits>, cimd_root_cert: Option<Vec<u8>>) -> Running {
    let (l, base) = listener().await;
    let mut app = app::App::new(config(&base, cimd_root_cert)).await.unwrap();
    if let Some(limits) = limits {
        app = app.with_consent_limits(limits);
    }
    serve(app, l, base).await
}

/// An HTTP client whose connections come from `ip`.
fn from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(ip))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn issue_iat(s: &Running) -> String {
    let v: Value = from([127, 0, 0, 1])
        .post(s.url("/admin/projects/proj_demo/iats"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["token"].as_str().unwrap().to_owned()
}

async fn register_client(s: &Running) -> String {
    let iat = issue_iat(s).await;
    let body = json!({"redirect_uris": [REDIRECT], "client_name": "App", "token_endpoint_auth_method": "none"});
    let r = from([127, 0, 0, 1])
        .post(s.url("/oauth2/register"))
        .bearer_auth(iat)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    v["client_id"].as_str().unwrap().to_owned()
}

fn authorize_url(s: &Running, client_id: &str, verifier: &CodeVerifier, extra: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", CodeChallenge::s256(verifier).as_str())
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    s.url(&format!("/oauth2/authorize?{}", q.finish()))
}

fn encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn form_value(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap() + marker.len();
    page[start..][..page[start..].find('"').unwrap()].to_owned()
}

/// Shows the consent page to `user`, approves it, and exchanges the code:
/// the whole sign-in of a legitimate user.
async fn sign_in_through_consent(
    s: &Running,
    user: &reqwest::Client,
    client_id: &str,
    seed: u8,
) -> Vec<(String, String)> {
    let verifier = CodeVerifier::from_random(&[seed; 32]);
    let r = user
        .get(authorize_url(s, client_id, &verifier, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the legitimate user gets the consent page");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = r.text().await.unwrap();
    let form = [
        ("request_id", form_value(&page, "request_id")),
        ("csrf", form_value(&page, "csrf")),
        ("username", "user_demo".to_owned()),
        ("action", "approve".to_owned()),
    ];
    let r = user
        .post(s.url("/consent"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&form.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND, "the consent is approved");
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let exchange: Vec<(String, String)> = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", client_id),
        ("code_verifier", verifier.as_str()),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let r = post_form(user, &s.url("/oauth2/token"), &exchange).await;
    assert_eq!(r.status(), StatusCode::OK, "the code is exchanged");
    exchange
}

async fn post_form(http: &reqwest::Client, url: &str, form: &[(String, String)]) -> reqwest::Response {
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    http.post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&pairs))
        .send()
        .await
        .unwrap()
}

/// Point 4: one source floods the consent page; it fills its own share
/// (then 503), and another source's user still signs in all the way.
#[tokio::test]
async fn a_consent_flood_fills_only_its_share_and_another_user_signs_in() {
    let limits = app::ConsentLimits {
        per_source: 8,
        ..app::ConsentLimits::default()
    };
    let s = start(Some(limits), None).await;
    let client_id = register_client(&s).await;
    let attacker = from([127, 0, 0, 2]);
    let mut shown = 0;
    let mut refused = 0;
    for i in 0..12u8 {
        let verifier = CodeVerifier::from_random(&[i; 32]);
        match attacker
            .get(authorize_url(&s, &client_id, &verifier, &[]))
            .send()
            .await
            .unwrap()
            .status()
        {
            StatusCode::OK => shown += 1,
            StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((shown, refused), (8, 4), "the source holds its share, no more");
    sign_in_through_consent(&s, &from([127, 0, 0, 3]), &client_id, 99).await;
}

/// Point 4: many sources fill the whole store (entries, then bytes with
/// the largest requests the server accepts); a new source's user still
/// gets the consent page and signs in, at the expense of the noisiest
/// source.
#[tokio::test]
async fn a_full_consent_store_refuses_only_the_noisiest_source() {
    // 40 entries in all, 8 per source: five flooding sources fill it.
    let limits = app::ConsentLimits {
        max_entries: 40,
        per_source: 8,
        ..app::ConsentLimits::default()
    };
    let s = start(Some(limits), None).await;
    let client_id = register_client(&s).await;
    for source in 2..=6u8 {
        let attacker = from([127, 0, 0, source]);
        for i in 0..8u8 {
            let verifier = CodeVerifier::from_random(&[i; 32]);
            let status = attacker
                .get(authorize_url(&s, &client_id, &verifier, &[]))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, StatusCode::OK, "source {source}, request {i}");
        }
    }
    // The store is full; the flooding sources are refused beyond their
    // share, and a new user gets in (an entry of a noisiest source goes).
    let status = from([127, 0, 0, 2])
        .get(authorize_url(
            &s,
            &client_id,
            &CodeVerifier::from_random(&[50; 32]),
            &[],
        ))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    sign_in_through_consent(&s, &from([127, 0, 0, 9]), &client_id, 51).await;

    // The byte budget: requests as large as the server accepts (a 2 KB
    // state and ten 1.5 KB resources) fill a small budget; a small
    // request from another source still gets its page.
    let big_resources: Vec<String> = (0..10)
        .map(|i| format!("https://mcp{i}.example/{}", "r".repeat(1500)))
        .collect();
    let state = "s".repeat(2000);
    let entry = {
        let mut extra: Vec<(&str, &str)> = big_resources.iter().map(|r| ("resource", r.as_str())).collect();
        extra.push(("state", state.as_str()));
        extra
    };
    let limits = app::ConsentLimits {
        max_bytes: 256 * 1024,
        per_source: 8,
        ..app::ConsentLimits::default()
    };
    let s = start(Some(limits), None).await;
    // Only known resources are accepted: list the large ones.
    for (i, resource) in big_resources.iter().enumerate() {
        let r = from([127, 0, 0, 1])
            .post(s.url("/admin/projects/proj_demo/resources"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(json!({"resource": resource, "name": format!("MCP {i}")}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let client_id = register_client(&s).await;
    let mut shown = 0;
    for source in 2..=8u8 {
        let attacker = from([127, 0, 0, source]);
        for i in 0..8u8 {
            let verifier = CodeVerifier::from_random(&[i; 32]);
            let status = attacker
                .get(authorize_url(&s, &client_id, &verifier, &entry))
                .send()
                .await
                .unwrap()
                .status();
            assert!(
                status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
                "{status}"
            );
            shown += usize::from(status == StatusCode::OK);
        }
    }
    assert!(shown >= 8, "{shown}");
    sign_in_through_consent(&s, &from([127, 0, 0, 9]), &client_id, 52).await;
}

/// Point 5 on the SQL stores: rejections are counted per minute, event and
/// reason in SQLite, and exactly across two server instances sharing one
/// PostgreSQL database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejection_counts_work_on_sqlite_and_across_two_postgres_instances() {
    let dir = sql_support::TempDir::new();
    let storage = app::Storage::open(&dir.sqlite_url("abuse.db"), SqlOptions::default(), None)
        .await
        .unwrap();
    let (l, base) = listener().await;
    let a = app::App::with_storage(
        config(&base, None),
        authio_mcp::dcr::RegistrationPolicy::default(),
        storage,
        std::time::Duration::ZERO,
    )
    .await
    .unwrap();
    let s = serve(a, l, base).await;
    // The scenario of the issue on SQLite: a code replay (reuse detected),
    // then 600 anonymous rejections; the default audit listing (the newest
    // 500) still shows the reuse detection, and the rejections are counted.
    let user = from([127, 0, 0, 3]);
    let client_id = register_client(&s).await;
    let exchange = sign_in_through_consent(&s, &user, &client_id, 70).await;
    let replay = post_form(&user, &s.url("/oauth2/token"), &exchange).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST, "a replayed code");
    for _ in 0..12 {
        reject_registrations(&s, 50).await;
    }
    assert_eq!(rejections(&s).await, 600);
    let listing: Value = from([127, 0, 0, 1])
        .get(s.url("/admin/projects/proj_demo/audit"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"authorization_code.reuse_detected"), "{names:?}");
    let stored = names
        .iter()
        .filter(|n| **n == "oauth_client.registration_rejected")
        .count();
    assert!(stored <= 20, "only samples of the flood are stored: {stored}");

    let Some(db) = sql_support::pg_database("rejection_counts_across_two_postgres_instances").await else {
        return;
    };
    // Both instances seal signing keys with one key file.
    let key_file = dir.0.join("postgres.kek");
    let mut servers = Vec::new();
    for _ in 0..2 {
        let storage = app::Storage::open(&db.url, SqlOptions::default(), key_file.to_str())
            .await
            .unwrap();
        let (l, base) = listener().await;
        let a = app::App::with_storage(
            config(&base, None),
            authio_mcp::dcr::RegistrationPolicy::default(),
            storage,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
        servers.push(serve(a, l, base).await);
    }
    futures_util::future::join(
        reject_registrations(&servers[0], 20),
        reject_registrations(&servers[1], 20),
    )
    .await;
    // Each instance counts in memory and writes its counters once a
    // second: the sums meet, exactly, within a few seconds.
    let mut seen = (0, 0);
    for _ in 0..50 {
        seen = (rejections(&servers[0]).await, rejections(&servers[1]).await);
        if seen == (40, 40) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, (40, 40), "counted exactly across instances");
}

/// `n` registrations with an unknown initial access token, concurrently.
async fn reject_registrations(s: &Running, n: usize) {
    let http = from([127, 0, 0, 4]);
    let requests = (0..n).map(|_| {
        http.post(s.url("/oauth2/register"))
            .bearer_auth("iatk_bogus")
            .header("content-type", "application/json")
            .body(json!({"redirect_uris": [REDIRECT]}).to_string())
            .send()
    });
    for r in futures_util::future::join_all(requests).await {
        assert_eq!(r.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
}

/// The registration rejections counted by `/audit/rejections`.
async fn rejections(s: &Running) -> u64 {
    let v: Value = from([127, 0, 0, 1])
        .get(s.url("/admin/projects/proj_demo/audit/rejections"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|c| c["event"] == "oauth_client.registration_rejected")
        .map(|c| {
            assert!(c["minute"].is_string() && c["reason"].is_string(), "{c}");
            c["count"].as_u64().unwrap()
        })
        .sum()
}

/// A TCP listener that accepts and never answers (a tarpit). It reads
/// (and drops) what the client sends, so it sees the client give up, and
/// reports how many connections it held at once at most.
async fn tarpit(ip: [u8; 4]) -> (u16, Arc<Pit>) {
    let listener = tokio::net::TcpListener::bind((IpAddr::from(ip), 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pit = Arc::new(Pit::default());
    let counts = pit.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let counts = counts.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt as _;
                let now = counts.held.fetch_add(1, Ordering::SeqCst) + 1;
                counts.max.fetch_max(now, Ordering::SeqCst);
                counts.total.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
                counts.held.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (port, pit)
}

#[derive(Default)]
struct Pit {
    held: AtomicUsize,
    max: AtomicUsize,
    total: AtomicUsize,
}

/// An HTTPS server for one CIMD document at `https://localhost:PORT/client.json`.
async fn document_server() -> (String, String) {
    use tokio::io::AsyncWriteExt as _;
    let (acceptor, ca_pem) = tls::self_signed_acceptor(&["localhost"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let client_id = format!("https://localhost:{port}/client.json");
    let id = client_id.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if tls::read_head(&mut tls).await.is_none() {
                    return;
                }
                let doc = json!({
                    "client_id": id, "client_name": "Legitimate CIMD Client", "redirect_uris": [REDIRECT],
                    "token_endpoint_auth_method": "none"
                })
                .to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=600\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{doc}",
                    doc.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (client_id, ca_pem)
}

/// Point 2: tarpit hosts (accept, never answer) named as CIMD clients by a
/// flood from several sources hold at most their per-source (4) and
/// per-host (8) share of in-flight fetches; a CIMD client on another host
/// resolves and gets its consent page while they hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tarpit_hosts_hold_only_their_share_of_fetch_slots() {
    let (client_id, ca_pem) = document_server().await;
    let s = Arc::new(start(None, Some(ca_pem.into_bytes())).await);
    let pits = [
        tarpit([127, 0, 0, 2]).await,
        tarpit([127, 0, 0, 3]).await,
        tarpit([127, 0, 0, 4]).await,
    ];
    let verifier = CodeVerifier::from_random(&[7; 32]);
    // One source names 12 URLs spread over the three tarpits; six more
    // sources name 6 URLs each on the first tarpit: 48 requests in all.
    let mut flood = Vec::new();
    let mut launch = |source: u8, pit: usize, n: usize| {
        for i in 0..n {
            let (port, _) = &pits[pit];
            let url = format!("https://127.0.0.{}:{port}/s{source}d{i}/client.json", pit + 2);
            let target = authorize_url(&s, &url, &verifier, &[]);
            let http = from([127, 0, 0, source]);
            flood.push(tokio::spawn(async move {
                http.get(target).send().await.map(|r| r.status())
            }));
        }
    };
    for pit in 0..3 {
        launch(10, pit, 4);
    }
    for source in 11..=16u8 {
        launch(source, 0, 6);
    }
    // Give the flood a moment to connect.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // The legitimate client, on another host, resolves while the tarpits
    // hang (its document is fetched: a first fetch).
    let legit = from([127, 0, 0, 20]);
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        legit.get(authorize_url(&s, &client_id, &verifier, &[])).send(),
    )
    .await
    .expect("the legitimate client is not held up by the tarpits")
    .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the legitimate CIMD client gets its consent page"
    );
    assert!(r.text().await.unwrap().contains("Legitimate CIMD Client"));

    // Every flood request is answered (refused at once, or failed when the
    // fetch timed out); none succeeds.
    let mut answered = 0;
    for f in flood {
        let status = f.await.unwrap().unwrap();
        assert_ne!(status, StatusCode::OK);
        answered += 1;
    }
    assert_eq!(answered, 48);
    let max: Vec<usize> = pits.iter().map(|(_, p)| p.max.load(Ordering::SeqCst)).collect();
    let total: Vec<usize> = pits.iter().map(|(_, p)| p.total.load(Ordering::SeqCst)).collect();
    assert!(
        max[0] <= 8,
        "one host held at most its per-host share (8) at once: {max:?}"
    );
    assert!(
        max[1] + max[2] <= 4,
        "one source held at most its per-source share (4) at once: {max:?}"
    );
    assert!(
        max[0] >= 4,
        "the flood did reach the tarpits: {max:?} (total {total:?})"
    );
}

async fn register_anonymously(s: &Running, http: &reqwest::Client, body: &Value) -> (StatusCode, Value) {
    let r = http
        .post(s.url("/oauth2/register"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

/// Point 4: in `open` mode, a flood of anonymous registrations from one
/// source stops at its share (10 per hour by default) and oversized ones
/// are refused; a real client from another source registers and signs in.
#[tokio::test]
async fn an_open_registration_flood_is_held_per_source_and_a_real_client_registers() {
    let (l, base) = listener().await;
    let mut c = config(&base, None);
    c.dcr_mode = Some(authio_mcp::project::DcrMode::Open);
    let s = serve(app::App::new(c).await.unwrap(), l, base).await;
    let body = json!({"redirect_uris": [REDIRECT], "client_name": "Flood", "token_endpoint_auth_method": "none"});
    let attacker = from([127, 0, 0, 2]);
    let mut created = 0;
    let mut refused = 0;
    for _ in 0..15 {
        match register_anonymously(&s, &attacker, &body).await {
            (StatusCode::CREATED, _) => created += 1,
            (StatusCode::FORBIDDEN, v) => {
                assert_eq!(v["error"], "access_denied", "{v}");
                refused += 1;
            }
            (other, v) => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!((created, refused), (10, 5));
    let uris: Vec<String> = (0..20).map(|i| format!("{REDIRECT}/{i}/{}", "x".repeat(200))).collect();
    let (status, v) = register_anonymously(
        &s,
        &from([127, 0, 0, 5]),
        &json!({"redirect_uris": uris, "token_endpoint_auth_method": "none"}),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_client_metadata"))
    );

    let user = from([127, 0, 0, 3]);
    let (status, v) = register_anonymously(
        &s,
        &user,
        &json!({"redirect_uris": [REDIRECT], "client_name": "Real", "token_endpoint_auth_method": "none"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    sign_in_through_consent(&s, &user, v["client_id"].as_str().unwrap(), 60).await;
}

/// Point 7 over sockets: metadata that would mislead a user or a browser
/// is refused with a precise error (or, for a link on an unrelated host,
/// dropped), and a well-formed registration from the same source succeeds.
#[tokio::test]
async fn misleading_metadata_is_refused_and_a_clean_registration_succeeds() {
    let s = start(None, None).await;
    let iat = issue_iat(&s).await;
    let http = from([127, 0, 0, 2]);
    let register = |body: Value| {
        let http = http.clone();
        let url = s.url("/oauth2/register");
        let iat = iat.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(iat)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let base = json!({"redirect_uris": ["https://app.example.com/cb"], "client_name": "App",
                      "token_endpoint_auth_method": "none"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, error) in [
        (
            with(
                "client_uri",
                json!("https://app.example.com/\"><script>alert(1)</script>"),
            ),
            "invalid_client_metadata",
        ),
        (
            with("redirect_uris", json!(["http://127.0.0.1:99999/cb"])),
            "invalid_redirect_uri",
        ),
        (with("client_name", json!("Go\u{202e}elgoo")), "invalid_client_metadata"),
    ] {
        let (status, v) = register(body.clone()).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(error)),
            "{body}: {v}"
        );
        assert!(v["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    }
    let (status, v) = register(with("tos_uri", json!("https://unrelated.example.net/tos"))).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert!(
        v.get("tos_uri").is_none(),
        "a link on an unrelated host is dropped: {v}"
    );
    let (status, v) = register(with("tos_uri", json!("https://app.example.com/tos"))).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["tos_uri"], "https://app.example.com/tos");
}

/// Point 4 across instances: two example servers on one PostgreSQL
/// database share the admission windows, so a flood from one source split
/// over both gets exactly its share (10), not 10 per instance; another
/// source still registers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_registration_limits_hold_across_two_instances_on_one_database() {
    let Some(db) = sql_support::pg_database("open_registration_limits_across_two_instances").await else {
        return;
    };
    // Both instances seal signing keys with one key file.
    let dir = sql_support::TempDir::new();
    let key_file = dir.0.join("postgres.kek");
    let mut servers = Vec::new();
    for _ in 0..2 {
        let storage = app::Storage::open(&db.url, SqlOptions::default(), key_file.to_str())
            .await
            .unwrap();
        let (l, base) = listener().await;
        let mut c = config(&base, None);
        c.dcr_mode = Some(authio_mcp::project::DcrMode::Open);
        let a = app::App::with_storage(
            c,
            authio_mcp::dcr::RegistrationPolicy::default(),
            storage,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
        servers.push(serve(a, l, base).await);
    }
    let body = json!({"redirect_uris": [REDIRECT], "client_name": "Flood", "token_endpoint_auth_method": "none"});
    let attacker = from([127, 0, 0, 2]);
    let requests = (0..24).map(|i| register_anonymously(&servers[i % 2], &attacker, &body));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::FORBIDDEN).count();
    assert_eq!((created, refused), (10, 14), "{statuses:?}");
    let (status, v) = register_anonymously(&servers[1], &from([127, 0, 0, 3]), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
}
