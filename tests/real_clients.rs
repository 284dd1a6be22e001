//! The MCP clients people actually use, signing in over loopback sockets
//! against the example server: each client's registration document (see
//! `tests/fixtures/clients/`), its authorization request with the scopes
//! and parameters it really sends, the code exchange, a refresh, and
//! introspection of the result.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/tls.rs"]
mod tls;

#[path = "../examples/server/app.rs"]
#[allow(dead_code)]
mod app;

use std::collections::HashMap;
use std::net::SocketAddr;

use authio_mcp::discovery::Issuer;
use authio_mcp::pkce::{CodeChallenge, CodeVerifier};
use authio_mcp::resource::ResourceUri;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret";
const INTROSPECT: &str = "introspect-secret";
const RESOURCE: &str = "http://127.0.0.1:8090/mcp";

/// How a client identifies itself.
enum Identity {
    /// A Client ID Metadata Document: the fixture, and the URL the client
    /// really publishes it at (the test serves it locally instead).
    Cimd {
        fixture: &'static str,
        published_at: &'static str,
    },
    /// Dynamic Client Registration without an initial access token.
    Dcr { fixture: &'static str },
}

/// One client's sign-in, as it really sends it.
struct RealClient {
    name: &'static str,
    identity: Identity,
    /// The `redirect_uri` of its authorization request (a loopback one
    /// carries the ephemeral port the client bound).
    redirect_uri: &'static str,
    /// Its `scope` parameter, if it sends one.
    scope: Option<&'static str>,
    /// Other authorization parameters it sends.
    extra: &'static [(&'static str, &'static str)],
    /// Whether it sends `resource` on refresh (Codex-like clients do not).
    resource_on_refresh: bool,
    /// The `scope` of the token response.
    granted: &'static str,
}

const CLIENTS: &[RealClient] = &[
    RealClient {
        name: "Claude",
        identity: Identity::Cimd {
            fixture: "claude.cimd.json",
            published_at: "https://claude.ai/oauth/mcp-oauth-client-metadata",
        },
        redirect_uri: "https://claude.ai/api/mcp/auth_callback",
        scope: Some("offline_access openid profile"),
        extra: &[("prompt", "consent")],
        resource_on_refresh: true,
        granted: "openid profile",
    },
    RealClient {
        name: "Claude Code",
        identity: Identity::Cimd {
            fixture: "claude-code.cimd.json",
            published_at: "https://claude.ai/oauth/claude-code-client-metadata",
        },
        // Registered port-less; the request carries the ephemeral port.
        redirect_uri: "http://localhost:58135/callback",
        scope: Some("mcp:read mcp:write"),
        extra: &[],
        resource_on_refresh: false,
        granted: "mcp:read mcp:write",
    },
    RealClient {
        name: "ChatGPT",
        identity: Identity::Cimd {
            fixture: "chatgpt.cimd.json",
            published_at: "https://chatgpt.com/oauth/mcp-client.json",
        },
        redirect_uri: "https://chatgpt.com/connector_platform_oauth_redirect",
        scope: Some("mcp:read mcp:write offline_access"),
        extra: &[],
        resource_on_refresh: true,
        granted: "mcp:read mcp:write",
    },
    RealClient {
        name: "VS Code",
        identity: Identity::Cimd {
            fixture: "vscode.cimd.json",
            published_at: "https://vscode.dev/oauth/client-metadata.json",
        },
        redirect_uri: "http://127.0.0.1:51234/",
        scope: Some("mcp:read"),
        extra: &[],
        resource_on_refresh: true,
        granted: "mcp:read",
    },
    RealClient {
        name: "Cursor",
        identity: Identity::Dcr {
            fixture: "cursor.dcr.json",
        },
        redirect_uri: "cursor://anysphere.cursor-mcp/oauth/callback",
        scope: None,
        extra: &[],
        resource_on_refresh: false,
        granted: "mcp:read mcp:write",
    },
    RealClient {
        name: "Goose",
        identity: Identity::Dcr {
            fixture: "goose.dcr.json",
        },
        redirect_uri: "http://localhost:8020/oauth_callback",
        scope: None,
        extra: &[],
        resource_on_refresh: true,
        granted: "mcp:read mcp:write",
    },
    RealClient {
        name: "MCP Inspector",
        identity: Identity::Dcr {
            fixture: "mcp-inspector.dcr.json",
        },
        redirect_uri: "http://localhost:6274/oauth/callback",
        scope: Some("mcp:read mcp:write"),
        extra: &[],
        resource_on_refresh: true,
        granted: "mcp:read mcp:write",
    },
];

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/clients/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// An HTTPS server on 127.0.0.1 (certificate for `localhost`) serving
/// documents by path, `{{CLIENT_ID}}` replaced by the document's own URL.
struct DocumentServer {
    port: u16,
    ca_pem: String,
}

impl DocumentServer {
    async fn start(docs: HashMap<String, String>) -> Self {
        use tokio::io::AsyncWriteExt as _;
        let (acceptor, ca_pem) = tls::self_signed_acceptor(&["localhost"]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let docs = std::sync::Arc::new(docs);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let docs = docs.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some(head) = tls::read_head(&mut tls).await else {
                        return;
                    };
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    let response = match docs.get(&path) {
                        Some(doc) => {
                            let doc = doc.replace("{{CLIENT_ID}}", &format!("https://localhost:{port}{path}"));
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=600\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{doc}",
                                doc.len()
                            )
                        }
                        None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self { port, ca_pem }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }
}

struct Running {
    base: String,
    http: reqwest::Client,
}

impl Running {
    async fn start(cimd_root_cert: Vec<u8>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let config = app::Config {
            issuer: Issuer::new_allowing_loopback_http_for_development(base.clone()).unwrap(),
            admin_token: ADMIN.into(),
            auto_approve: true,
            allow_loopback_cimd: true,
            cimd_root_cert: Some(cimd_root_cert),
            dcr_mode: None,
            resource: ResourceUri::parse(RESOURCE).unwrap(),
            introspection_token: INTROSPECT.into(),
            upstream: None,
        };
        let app = app::App::new(config).await.unwrap();
        let router = app.router().await.unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .await
                .unwrap()
        });
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { base, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn admin_patch(&self, body: Value) -> Value {
        let r = self
            .http
            .patch(self.url("/admin/projects/proj_demo"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn form(&self, path: &str, pairs: &[(&str, &str)], bearer: Option<&str>) -> (StatusCode, Value) {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            ser.append_pair(k, v);
        }
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(ser.finish());
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let r = req.send().await.unwrap();
        (r.status(), r.json().await.unwrap())
    }

    async fn register(&self, body: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url("/oauth2/register"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    async fn audit(&self) -> Value {
        let r = self
            .http
            .get(self.url("/admin/projects/proj_demo/audit"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }
}

#[tokio::test]
async fn every_real_client_signs_in_end_to_end() {
    let mut docs = HashMap::new();
    for c in CLIENTS {
        if let Identity::Cimd {
            fixture: f,
            published_at,
        } = c.identity
        {
            docs.insert(url::Url::parse(published_at).unwrap().path().to_owned(), fixture(f));
        }
    }
    let docs_server = DocumentServer::start(docs).await;
    let s = Running::start(docs_server.ca_pem.clone().into_bytes()).await;
    // The operator admits tokenless registrations of loopback and Cursor
    // redirect URIs (the demo project is in initial_access_token mode).
    let patched = s
        .admin_patch(json!({"tokenless_registration": {
            "enabled": true, "loopback": true, "private_use_schemes": ["cursor"], "https_callback_hosts": []
        }}))
        .await;
    assert_eq!(patched["settings"]["dcr_mode"], "initial_access_token");
    assert!(
        patched["lints"]
            .as_array()
            .unwrap()
            .contains(&json!("tokenless_registration")),
        "{patched}"
    );

    for (n, c) in CLIENTS.iter().enumerate() {
        let client_id = match c.identity {
            Identity::Cimd { published_at, .. } => docs_server.url(url::Url::parse(published_at).unwrap().path()),
            Identity::Dcr { fixture: f } => {
                let (status, v) = s.register(&fixture(f)).await;
                assert_eq!(status, 201, "{}: {v}", c.name);
                assert_eq!(v["token_endpoint_auth_method"], "none", "{}", c.name);
                assert!(v.get("client_secret").is_none(), "{}", c.name);
                v["client_id"].as_str().unwrap().to_owned()
            }
        };
        let verifier = CodeVerifier::from_random(&[u8::try_from(n).unwrap() + 1; 32]);
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &client_id)
            .append_pair("redirect_uri", c.redirect_uri)
            .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "st")
            .append_pair("resource", RESOURCE);
        if let Some(scope) = c.scope {
            query.append_pair("scope", scope);
        }
        for (k, v) in c.extra {
            query.append_pair(k, v);
        }
        let r = s
            .http
            .get(s.url(&format!("/oauth2/authorize?{}", query.finish())))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{}: {:?}", c.name, r.text().await);
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(c.redirect_uri), "{}: {location}", c.name);
        let loc = url::Url::parse(&location).unwrap();
        let get = |k: &str| loc.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
        assert_eq!(get("error"), None, "{}: {location}", c.name);
        assert_eq!(get("iss").as_deref(), Some(s.base.as_str()), "{}", c.name);
        assert_eq!(get("state").as_deref(), Some("st"), "{}", c.name);
        let code = get("code").unwrap();

        let (status, t) = s
            .form(
                "/oauth2/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("client_id", &client_id),
                    ("redirect_uri", c.redirect_uri),
                    ("code_verifier", verifier.as_str()),
                    ("resource", RESOURCE),
                ],
                None,
            )
            .await;
        assert_eq!(status, 200, "{}: {t}", c.name);
        assert_eq!(t["scope"], c.granted, "{}", c.name);
        let rt = t["refresh_token"].as_str().unwrap_or_else(|| panic!("{}: {t}", c.name));

        let mut refresh = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", client_id.as_str()),
        ];
        if c.resource_on_refresh {
            refresh.push(("resource", RESOURCE));
        }
        let (status, t2) = s.form("/oauth2/token", &refresh, None).await;
        assert_eq!(status, 200, "{}: {t2}", c.name);
        let (_, info) = s
            .form(
                "/oauth2/introspect",
                &[("token", t2["access_token"].as_str().unwrap())],
                Some(INTROSPECT),
            )
            .await;
        assert_eq!(info["active"], true, "{}", c.name);
        assert_eq!(info["client_id"], client_id.as_str(), "{}", c.name);
        assert_eq!(info["aud"], json!([RESOURCE]), "{}", c.name);
        assert_eq!(info["scope"], c.granted, "{}", c.name);
    }

    let audit = s.audit().await.to_string();
    assert!(audit.contains("oauth_client.tokenless_admitted"));
    assert!(audit.contains("oauth_client.cimd_resolved"));
}

/// ChatGPT's document resolves to a public client: the preview shows the
/// negotiated method, and the token endpoint accepts it without a secret
/// or an assertion (asserted by the sign-in above too).
#[tokio::test]
async fn chatgpts_document_negotiates_a_public_client() {
    let mut docs = HashMap::new();
    docs.insert("/oauth/mcp-client.json".to_owned(), fixture("chatgpt.cimd.json"));
    let docs_server = DocumentServer::start(docs).await;
    let s = Running::start(docs_server.ca_pem.clone().into_bytes()).await;
    let r = s
        .http
        .post(s.url("/oauth2/cimd/resolve"))
        .header("content-type", "application/json")
        .body(json!({"client_id": docs_server.url("/oauth/mcp-client.json")}).to_string())
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "resolved", "{v}");
    assert_eq!(v["token_endpoint_auth_method"], "none", "{v}");
}

/// Cursor's registration mixes its app scheme with loopback URIs: without
/// the tokenless policy it needs a token, and with a strict redirect
/// policy the app scheme is refused with a precise error.
#[tokio::test]
async fn cursor_needs_the_policy_and_the_private_use_scheme() {
    let docs_server = DocumentServer::start(HashMap::new()).await;
    let s = Running::start(docs_server.ca_pem.clone().into_bytes()).await;
    let (status, v) = s.register(&fixture("cursor.dcr.json")).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"], "invalid_token");
    s.admin_patch(json!({
        "tokenless_registration": {"enabled": true, "loopback": true, "private_use_schemes": ["cursor"]},
        "redirect_uri_policy": {"allow_private_use_schemes": false}
    }))
    .await;
    let (status, v) = s.register(&fixture("cursor.dcr.json")).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"], "invalid_redirect_uri");
    s.admin_patch(json!({"redirect_uri_policy": {"allow_private_use_schemes": true}}))
        .await;
    let (status, v) = s.register(&fixture("cursor.dcr.json")).await;
    assert_eq!(status, 201, "{v}");
}
