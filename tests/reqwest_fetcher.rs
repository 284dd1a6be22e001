//! The reqwest fetcher against real HTTPS servers on 127.0.0.1 (raw HTTP
//! responses written over TLS with a self-signed certificate trusted
//! through the development switch).
#![cfg(feature = "reqwest")]
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)] // test code

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authio_mcp::cimd::{ClientIdUrl, FetchError, FetchPlan, MetadataFetcher};
use authio_mcp::discovery::Issuer;
use authio_mcp::net::{ClientBuildError, ReqwestFetcher, ReqwestFetcherBuilder};
use authio_mcp::project::{ProjectId, ProjectSettings};
use authio_mcp::server::AuthorizationServer;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;

#[path = "support/tls.rs"]
mod tls;

/// What the test server does after reading a request head.
#[derive(Clone)]
enum Behaviour {
    /// Writes these bytes and closes.
    Respond(Vec<u8>),
    /// Writes the head, then waits before writing anything else.
    Stall { head: Vec<u8>, wait: Duration },
    /// Writes a chunked body of `total` bytes in `chunk`-byte chunks.
    Chunked { head: Vec<u8>, chunk: usize, total: usize },
}

struct TestServer {
    port: u16,
    ca_pem: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    async fn start(behaviour: Behaviour) -> Self {
        Self::start_with(move |_| behaviour).await
    }

    /// Starts a server whose behaviour may depend on its port (a document
    /// naming its own URL).
    async fn start_with(make: impl FnOnce(u16) -> Behaviour) -> Self {
        let (acceptor, ca_pem) = tls::self_signed_acceptor(&["localhost", "127.0.0.1"]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let behaviour = make(port);
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (conns, reqs) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                conns.fetch_add(1, Ordering::SeqCst);
                let (acceptor, behaviour, reqs) = (acceptor.clone(), behaviour.clone(), reqs.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some(text) = tls::read_head(&mut tls).await else {
                        return;
                    };
                    reqs.lock().unwrap().push(text);
                    match behaviour {
                        Behaviour::Respond(bytes) => {
                            let _ = tls.write_all(&bytes).await;
                        }
                        Behaviour::Stall { head, wait } => {
                            let _ = tls.write_all(&head).await;
                            let _ = tls.flush().await;
                            tokio::time::sleep(wait).await;
                        }
                        Behaviour::Chunked { head, chunk, total } => {
                            let _ = tls.write_all(&head).await;
                            let mut sent = 0;
                            while sent < total {
                                let frame = format!("{chunk:x}\r\n{}\r\n", "a".repeat(chunk));
                                if tls.write_all(frame.as_bytes()).await.is_err() {
                                    return;
                                }
                                sent += chunk;
                            }
                            let _ = tls.write_all(b"0\r\n\r\n").await;
                        }
                    }
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self {
            port,
            ca_pem,
            connections,
            requests,
        }
    }

    fn url(&self, host: &str, path: &str) -> ClientIdUrl {
        ClientIdUrl::parse(format!("https://{host}:{}{path}", self.port)).unwrap()
    }

    fn dev_fetcher(&self) -> ReqwestFetcher {
        self.builder()
            .danger_allow_loopback_for_development(true)
            .build()
            .unwrap()
    }

    fn builder(&self) -> ReqwestFetcherBuilder {
        ReqwestFetcher::builder().add_root_certificate_for_development(self.ca_pem.as_bytes())
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn plan(url: ClientIdUrl, timeout: Duration) -> FetchPlan {
    FetchPlan::new(url, timeout)
}

fn json_ok(body: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_document_with_the_development_switches() {
    let body = r#"{"client_id":"x","client_name":"Local","redirect_uris":["http://127.0.0.1/cb"]}"#;
    let server = TestServer::start(Behaviour::Respond(json_ok(
        body,
        "Cache-Control: public, max-age=600\r\nSet-Cookie: a=b\r\n",
    )))
    .await;
    let fetcher = server.dev_fetcher();
    assert!(fetcher.allows_loopback_for_development());
    for host in ["localhost", "127.0.0.1"] {
        let r = fetcher
            .fetch(&plan(server.url(host, "/client.json"), Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, body.as_bytes());
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        assert_eq!(r.cache_control.as_deref(), Some("public, max-age=600"));
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        let lower = r.to_ascii_lowercase();
        assert!(r.starts_with("GET /client.json HTTP/1.1\r\n"), "{r}");
        assert!(lower.contains("\r\naccept: application/json\r\n"), "{r}");
        assert!(lower.contains("\r\nuser-agent: authio-mcp/"), "{r}");
        assert!(!lower.contains("cookie:"), "{r}");
        assert!(!lower.contains("authorization:"), "{r}");
        assert!(!lower.contains("referer:"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_uses_the_fetcher_end_to_end() {
    let server = TestServer::start_with(|port| {
        let doc = serde_json::json!({
            "client_id": format!("https://localhost:{port}/client.json"),
            "client_name": "Local",
            "redirect_uris": ["http://127.0.0.1/cb"]
        })
        .to_string();
        Behaviour::Respond(json_ok(&doc, "Cache-Control: max-age=600\r\n"))
    })
    .await;
    let url = server.url("localhost", "/client.json");
    let fetcher = Arc::new(server.dev_fetcher());
    let as_ = AuthorizationServer::builder(Issuer::new("https://auth.example.com").unwrap())
        .metadata_fetcher(fetcher)
        .build();
    let project = ProjectId::new("proj_local").unwrap();
    let settings = ProjectSettings::default().set_mcp_enabled(true).0;
    as_.put_project(&project, settings.clone()).await.unwrap();
    let client = as_.resolve_cimd_client(&project, &settings, &url).await.unwrap();
    assert_eq!(client.client_id.as_str(), url.as_str());
    assert!(
        as_.metadata(&project)
            .await
            .unwrap()
            .client_id_metadata_document_supported
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_refused_unless_the_development_switch_is_on() {
    let server = TestServer::start(Behaviour::Respond(json_ok("{}", ""))).await;
    let fetcher = server.builder().build().unwrap();
    assert!(!fetcher.allows_loopback_for_development());
    for host in ["localhost", "127.0.0.1", "[::1]", "127.0.0.2"] {
        let e = fetcher
            .fetch(&plan(server.url(host, "/client.json"), Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::BlockedAddress { .. }), "{host}: {e:?}");
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 0, "never connected");

    // the switch lets loopback through, and nothing else
    let dev = server.dev_fetcher();
    assert!(
        dev.fetch(&plan(server.url("localhost", "/client.json"), Duration::from_secs(5)))
            .await
            .is_ok()
    );
    for other in ["10.0.0.1", "169.254.169.254", "[fd00::1]"] {
        let e = dev
            .fetch(&plan(server.url(other, "/c"), Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::BlockedAddress { .. }), "{other}: {e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed() {
    let server = TestServer::start(Behaviour::Respond(
        b"HTTP/1.1 302 Found\r\nLocation: /elsewhere.json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    ))
    .await;
    let e = server
        .dev_fetcher()
        .fetch(&plan(server.url("localhost", "/client.json"), Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(e, FetchError::Redirect { status: 302 });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert!(reqs[0].starts_with("GET /client.json "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_streamed_body_is_cut() {
    let head =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    let server = TestServer::start(Behaviour::Chunked {
        head,
        chunk: 1000,
        total: 1_000_000,
    })
    .await;
    let started = Instant::now();
    let e = server
        .dev_fetcher()
        .fetch(&plan(server.url("localhost", "/client.json"), Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert_eq!(e, FetchError::TooLarge { limit: 5120 });
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_oversized_body_is_refused_before_reading() {
    // announces 1 MB but sends nothing: refused from the header alone
    let server = TestServer::start(Behaviour::Stall {
        head: b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n".to_vec(),
        wait: Duration::from_secs(10),
    })
    .await;
    let started = Instant::now();
    let e = server
        .dev_fetcher()
        .fetch(&plan(server.url("localhost", "/client.json"), Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(e, FetchError::TooLarge { limit: 5120 });
    // Well before the server's 10 s stall ends (a generous bound: no timing is measured here).
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_times_out() {
    let server = TestServer::start(Behaviour::Stall {
        head: b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"client_id\":"
            .to_vec(),
        wait: Duration::from_secs(10),
    })
    .await;
    let started = Instant::now();
    let e = server
        .dev_fetcher()
        .fetch(&plan(
            server.url("localhost", "/client.json"),
            Duration::from_millis(500),
        ))
        .await
        .unwrap_err();
    assert_eq!(e, FetchError::Timeout);
    let took = started.elapsed();
    assert!(
        // The deadline fired (never early), and before the server's 10 s stall ended.
        took >= Duration::from_millis(450) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_tls_failure() {
    let server = TestServer::start(Behaviour::Respond(json_ok("{}", ""))).await;
    let fetcher = ReqwestFetcher::builder()
        .danger_allow_loopback_for_development(true)
        .build()
        .unwrap();
    let e = fetcher
        .fetch(&plan(server.url("localhost", "/client.json"), Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Tls { .. }), "{e:?}");
}

#[test]
fn a_bad_development_certificate_is_refused() {
    for pem in [
        &b""[..],
        b"not a pem",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ] {
        let e = ReqwestFetcher::builder()
            .add_root_certificate_for_development(pem)
            .build()
            .unwrap_err();
        assert!(matches!(e, ClientBuildError::InvalidCertificate), "{e:?}");
    }
}

/// Counts the TCP connections accepted on a loopback port (and drops them).
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (port, accepted)
}

const PROXY_CHILD: &str = "AUTHIO_TEST_PROXY_CHILD_TARGET";

/// The outbound clients ignore proxies from the environment: a proxy would
/// see (and could redirect) every fetch, and the fetchers' address checks
/// would then judge the proxy's address instead of the target's. The
/// environment cannot be changed inside this process (`unsafe`), so the
/// test runs itself again with `HTTP(S)_PROXY` / `ALL_PROXY` pointing at a
/// counting listener; the child fetches a second listener (the target)
/// with the CIMD fetcher, the upstream-provider client, the JWKS fetcher
/// and the introspection client, and the parent
/// checks that the target was connected to and the proxy never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_proxies_are_never_used() {
    if let Ok(port) = std::env::var(PROXY_CHILD) {
        // The child: fetch the target; the answers do not matter.
        let fetcher = ReqwestFetcher::builder()
            .danger_allow_loopback_for_development(true)
            .build()
            .unwrap();
        let url = ClientIdUrl::parse(format!("https://localhost:{port}/client.json")).unwrap();
        let _ = fetcher.fetch(&plan(url, Duration::from_secs(5))).await;
        let upstream = authio_mcp::net::ReqwestUpstreamHttp::builder()
            .allow_http_loopback_for_development(true)
            .build()
            .unwrap();
        let _ = authio_mcp::upstream::UpstreamHttp::get(&upstream, &format!("http://127.0.0.1:{port}/x")).await;
        let jwks = authio_mcp::net::ReqwestJwksFetcher::new(&[]).unwrap();
        let _ = authio_mcp::resource_server::JwksFetcher::fetch(&jwks, &format!("http://127.0.0.1:{port}/jwks")).await;
        let introspection = authio_mcp::net::IntrospectionVerifier::new(
            format!("http://127.0.0.1:{port}/introspect"),
            authio_mcp::secret::SecretString::new("client:secret".to_owned()),
        )
        .unwrap();
        let _ = authio_mcp::resource_server::TokenVerifier::verify(
            &introspection,
            "token",
            time::OffsetDateTime::now_utc(),
        )
        .await;
        return;
    }
    let (proxy_port, proxied) = counting_listener().await;
    let (target_port, reached) = counting_listener().await;
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args(["--exact", "environment_proxies_are_never_used", "--nocapture"])
        .env(PROXY_CHILD, target_port.to_string())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        child.env(var, &proxy);
    }
    let status = tokio::task::spawn_blocking(move || child.status())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the child run failed: {status}");
    assert!(
        reached.load(Ordering::SeqCst) >= 4,
        "all four clients connected to the target"
    );
    assert_eq!(proxied.load(Ordering::SeqCst), 0, "a proxy was used");
}
