//! Whole authorization-code flows against in-memory stores, with a fixed
//! clock and a seeded random source.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use authio_mcp::ErrorCode;
use authio_mcp::grant::Subject;
use authio_mcp::scope::ScopeSet;
use common::*;
use time::Duration;

#[tokio::test]
async fn registered_public_client_full_flow() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let q = auth_query(&client, REDIRECT, &v, "&scope=mcp%3Aread+mcp%3Awrite");
    let pending = h.pending(&q).await;
    assert_eq!(pending.client_name(), Some("Client 1"));
    assert_eq!(pending.redirect_host(), Some("my-mcp-server.example.com"));
    assert!(!pending.loopback_only());
    assert_eq!(pending.scopes().to_string(), "mcp:read mcp:write");

    let location = h
        .server
        .approve(pending, Subject::new("user_demo").unwrap(), None)
        .await
        .unwrap();
    assert!(location.starts_with(REDIRECT));
    assert_eq!(query_param(&location, "state").as_deref(), Some("st4te"));
    assert_eq!(query_param(&location, "iss").as_deref(), Some(ISSUER));
    let code = query_param(&location, "code").unwrap();

    let t = h.exchange(&client, &code, &v, "").await.unwrap();
    assert_eq!(t.token_type, "Bearer");
    assert_eq!(t.expires_in, 15 * 60, "project access-token TTL");
    assert_eq!(t.scope, "mcp:read mcp:write");
    let info = h.introspect(t.access_token()).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["aud"], serde_json::json!([RESOURCE]));
    assert_eq!(info["sub"], "user_demo");
    assert_eq!(info["client_id"], client.as_str());
    assert_eq!(info["iss"], ISSUER);
    assert_eq!(info["exp"].as_i64().unwrap() - info["iat"].as_i64().unwrap(), 15 * 60);

    // Refresh twice: each rotation invalidates the previous refresh token.
    let rt1 = t.refresh_token().unwrap();
    h.clock.advance(Duration::minutes(20));
    assert_eq!(h.introspect(t.access_token()).await["active"], false, "expired");
    let t2 = h.refresh(&client, rt1, "").await.unwrap();
    let rt2 = t2.refresh_token().unwrap();
    assert_ne!(rt1, rt2);
    assert_eq!(h.introspect(rt1).await["active"], false);
    let t3 = h.refresh(&client, rt2, "&scope=mcp%3Aread").await.unwrap();
    assert_eq!(t3.scope, "mcp:read", "refresh may narrow scope");
    let info = h.introspect(t3.access_token()).await;
    assert_eq!(info["aud"], serde_json::json!([RESOURCE]));
    assert_eq!(info["scope"], "mcp:read");

    // Revoking the refresh token revokes the grant: every token of it.
    let rt3 = t3.refresh_token().unwrap();
    let body = form(&[("token", rt3), ("client_id", client.as_str())]);
    h.server.revoke(&h.project, None, body.as_bytes()).await.unwrap();
    assert_eq!(h.introspect(rt3).await["active"], false);
    assert_eq!(h.introspect(t3.access_token()).await["active"], false);
    assert_eq!(
        h.refresh(&client, rt3, "").await.unwrap_err().code(),
        ErrorCode::InvalidGrant
    );

    let events = h.events();
    for name in ["authorization.granted", "token.issued", "token.revoked"] {
        assert!(events.contains(&name), "{name} in {events:?}");
    }
}

#[tokio::test]
async fn code_replay_revokes_the_grant() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(2);
    let code = h.code_for(&client, &v, "").await;
    let t = h.exchange(&client, &code, &v, "").await.unwrap();
    assert_eq!(h.introspect(t.access_token()).await["active"], true);

    // An invalid replay (wrong verifier) neither revokes nor counts as reuse.
    let err = h.exchange(&client, &code, &verifier(9), "").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    assert_eq!(h.introspect(t.access_token()).await["active"], true);
    assert!(!h.events().contains(&"authorization_code.reuse_detected"));

    // A valid replay is refused and revokes everything issued from the code.
    let err = h.exchange(&client, &code, &v, "").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    assert_eq!(h.introspect(t.access_token()).await["active"], false);
    assert_eq!(h.introspect(t.refresh_token().unwrap()).await["active"], false);
    assert!(h.events().contains(&"authorization_code.reuse_detected"));
}

#[tokio::test]
async fn refresh_reuse_revokes_the_family() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(3);
    let code = h.code_for(&client, &v, "").await;
    let t1 = h.exchange(&client, &code, &v, "").await.unwrap();
    let rt1 = t1.refresh_token().unwrap().to_owned();
    let t2 = h.refresh(&client, &rt1, "").await.unwrap();
    // rt1 presented again after the reuse grace: reuse. The whole family
    // dies, including t2's tokens.
    h.clock.advance(authio_mcp::project::DEFAULT_REFRESH_REUSE_GRACE);
    assert_eq!(
        h.refresh(&client, &rt1, "").await.unwrap_err().code(),
        ErrorCode::InvalidGrant
    );
    assert_eq!(h.introspect(t2.access_token()).await["active"], false);
    let rt2 = t2.refresh_token().unwrap().to_owned();
    assert_eq!(
        h.refresh(&client, &rt2, "").await.unwrap_err().code(),
        ErrorCode::InvalidGrant
    );
    assert!(h.events().contains(&"refresh_token.reuse_detected"));
}

#[tokio::test]
async fn widening_is_refused_without_consuming_the_code() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(4);
    let code = h.code_for(&client, &v, "").await;
    let other = "&resource=https%3A%2F%2Fother.example.com%2Fmcp";
    let err = h.exchange(&client, &code, &v, other).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidTarget);
    let err = h.exchange(&client, &code, &v, "&scope=mcp%3Awrite").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidScope);
    // The code is still good, and narrowing to the granted resource works.
    let t = h
        .exchange(&client, &code, &v, "&resource=https%3A%2F%2Fmcp.example.com%2Fmcp%2F")
        .await
        .unwrap();
    assert_eq!(
        h.introspect(t.access_token()).await["aud"],
        serde_json::json!([RESOURCE])
    );
}

#[tokio::test]
async fn token_endpoint_pkce_and_code_failures() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let other_client = h.public_client(2, &[REDIRECT]).await;
    let v = verifier(5);
    let code = h.code_for(&client, &v, "").await;
    let cases: Vec<(String, ErrorCode)> = vec![
        // missing verifier
        (
            form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", client.as_str()),
            ]),
            ErrorCode::InvalidRequest,
        ),
        // malformed verifier (42 chars)
        (
            form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", client.as_str()),
                ("code_verifier", &"a".repeat(42)),
            ]),
            ErrorCode::InvalidRequest,
        ),
        // wrong verifier
        (
            form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", client.as_str()),
                ("code_verifier", verifier(6).as_str()),
            ]),
            ErrorCode::InvalidGrant,
        ),
        // wrong redirect_uri
        (
            form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", client.as_str()),
                ("code_verifier", v.as_str()),
                ("redirect_uri", "https://my-mcp-server.example.com/oauth/callback/"),
            ]),
            ErrorCode::InvalidGrant,
        ),
        // another client
        (
            form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", other_client.as_str()),
                ("code_verifier", v.as_str()),
            ]),
            ErrorCode::InvalidGrant,
        ),
        // unknown code
        (
            form(&[
                ("grant_type", "authorization_code"),
                ("code", "ac_nope"),
                ("client_id", client.as_str()),
                ("code_verifier", v.as_str()),
            ]),
            ErrorCode::InvalidGrant,
        ),
        // missing code
        (
            form(&[
                ("grant_type", "authorization_code"),
                ("client_id", client.as_str()),
                ("code_verifier", v.as_str()),
            ]),
            ErrorCode::InvalidRequest,
        ),
        // duplicated parameter
        (
            form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code", &code),
                ("client_id", client.as_str()),
                ("code_verifier", v.as_str()),
            ]),
            ErrorCode::InvalidRequest,
        ),
        // grant types
        (
            form(&[("grant_type", "password"), ("client_id", client.as_str())]),
            ErrorCode::UnsupportedGrantType,
        ),
        (form(&[("client_id", client.as_str())]), ErrorCode::InvalidRequest),
        // unknown client
        (
            form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", "client_000000000000000000000000"),
                ("code_verifier", v.as_str()),
            ]),
            ErrorCode::InvalidClient,
        ),
    ];
    for (body, expected) in cases {
        let err = h.server.token(&h.project, None, body.as_bytes()).await.unwrap_err();
        assert_eq!(err.code(), expected, "{body}");
        assert!(err.to_response().headers().get("cache-control").is_some());
    }
    // None of the failures consumed the code.
    assert!(h.exchange(&client, &code, &v, "").await.is_ok());
}

#[tokio::test]
async fn codes_expire() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(7);
    let code = h.code_for(&client, &v, "").await;
    h.clock.advance(Duration::seconds(61)); // project code TTL is 60 s
    assert_eq!(
        h.exchange(&client, &code, &v, "").await.unwrap_err().code(),
        ErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn codes_do_not_cross_projects() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(8);
    let code = h.code_for(&client, &v, "").await;
    let other = authio_mcp::project::ProjectId::new("proj_other").unwrap();
    h.server.put_project(&other, project_settings()).await.unwrap();
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("client_id", client.as_str()),
        ("code_verifier", v.as_str()),
    ]);
    let err = h.server.token(&other, None, body.as_bytes()).await.unwrap_err();
    assert_eq!(
        err.code(),
        ErrorCode::InvalidClient,
        "the client does not exist in the other project"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_code_one_token_response_under_concurrency() {
    let h = std::sync::Arc::new(harness().await);
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(9);
    let code = h.code_for(&client, &v, "").await;
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (h, client, code, v) = (h.clone(), client.clone(), code.clone(), v.clone());
        tasks.push(tokio::spawn(async move { h.exchange(&client, &code, &v, "").await }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), ErrorCode::InvalidGrant),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn deny_redirects_access_denied() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let pending = h.pending(&auth_query(&client, REDIRECT, &verifier(1), "")).await;
    let location = h.server.deny(pending).await;
    assert_eq!(query_param(&location, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&location, "state").as_deref(), Some("st4te"));
    assert_eq!(query_param(&location, "iss").as_deref(), Some(ISSUER));
    assert!(h.events().contains(&"authorization.denied"));
}

#[tokio::test]
async fn approval_cannot_widen_and_expires() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let pending = h.pending(&auth_query(&client, REDIRECT, &verifier(1), "")).await;
    // A second one from the same request, at the same time (approving
    // consumes a pending authorization).
    let later = h.pending(&auth_query(&client, REDIRECT, &verifier(1), "")).await;
    let r = h
        .server
        .approve(
            pending,
            Subject::new("u").unwrap(),
            Some(ScopeSet::parse("mcp:write").unwrap()),
        )
        .await;
    assert!(r.is_err());
    h.clock.advance(Duration::minutes(11));
    assert!(h.server.approve(later, Subject::new("u").unwrap(), None).await.is_err());
}

#[tokio::test]
async fn purge_keeps_memory_bounded() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    for i in 0..20u8 {
        let v = verifier(i);
        let code = h.code_for(&client, &v, "").await;
        h.exchange(&client, &code, &v, "").await.unwrap();
    }
    assert_eq!(h.grants.len(), 60, "20 codes, 20 refresh tokens, 20 access tokens");
    assert_eq!(h.grants.grant_summaries(), 20, "one summary per grant");
    h.clock.advance(Duration::days(31));
    use authio_mcp::store::GrantStore;
    assert_eq!(
        h.grants.purge_expired(h.server.now()).await.unwrap(),
        80,
        "the records and the grant summaries"
    );
    assert!(h.grants.is_empty());
    assert_eq!(h.grants.grant_summaries(), 0);
}

/// One whole flow for a client obtained the way real MCP clients obtain
/// one: `client_id` is the client's id, `redirect` its redirect URI.
async fn whole_flow(h: &Harness, client_id: &str, redirect: &str, seed: u8) {
    let v = verifier(seed);
    let client = authio_mcp::client::ClientId::parse_with(client_id, Default::default()).unwrap();
    let pending = h
        .pending(&auth_query(&client, redirect, &v, "&scope=mcp%3Aread+mcp%3Awrite"))
        .await;
    let location = h
        .server
        .approve(pending, Subject::new("user_demo").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(query_param(&location, "iss").as_deref(), Some(ISSUER));
    let code = query_param(&location, "code").unwrap();
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", redirect),
        ("client_id", client_id),
        ("code_verifier", v.as_str()),
    ]);
    let t = h.server.token(&h.project, None, body.as_bytes()).await.unwrap();
    let info = h.introspect(t.access_token()).await;
    assert_eq!(
        info["aud"],
        serde_json::json!([RESOURCE]),
        "aud is the requested resource"
    );
    assert_eq!(
        info["exp"].as_i64().unwrap() - info["iat"].as_i64().unwrap(),
        15 * 60,
        "project TTL"
    );
    assert_eq!(info["client_id"], client_id);
    // Refresh twice, then revoke, then introspect.
    let mut rt = t.refresh_token().unwrap().to_owned();
    let mut last_access = t.access_token().to_owned();
    for _ in 0..2 {
        h.clock.advance(Duration::minutes(5));
        let t = h.refresh(&client, &rt, "").await.unwrap();
        assert_eq!(h.introspect(&rt).await["active"], false, "rotated");
        rt = t.refresh_token().unwrap().to_owned();
        last_access = t.access_token().to_owned();
    }
    assert_eq!(h.introspect(&last_access).await["active"], true);
    let body = form(&[("token", &rt), ("client_id", client_id)]);
    h.server.revoke(&h.project, None, body.as_bytes()).await.unwrap();
    assert_eq!(h.introspect(&last_access).await["active"], false);
    assert_eq!(h.introspect(&rt).await["active"], false);
}

#[tokio::test]
async fn cimd_client_whole_flow() {
    let h = harness().await;
    whole_flow(&h, CIMD_URL, CIMD_REDIRECT, 21).await;
    let events = h.events();
    assert!(events.contains(&"oauth_client.cimd_resolved"));
}

#[tokio::test]
async fn dcr_client_whole_flow() {
    let h = harness().await;
    let iat = h
        .server
        .issue_iat(&h.project, authio_mcp::dcr::IatOptions::new())
        .await
        .unwrap();
    let body = serde_json::json!({
        "redirect_uris": [REDIRECT],
        "client_name": "My MCP Server",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    });
    let auth = format!("Bearer {}", iat.token.expose_secret());
    let reg = h
        .server
        .register_client(&h.project, Some(&auth), body.to_string().as_bytes())
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&reg.to_json()).unwrap();
    let client_id = json["client_id"].as_str().unwrap().to_owned();
    whole_flow(&h, &client_id, REDIRECT, 22).await;
    assert!(h.events().contains(&"oauth_client.registered"));
}

#[tokio::test]
async fn cimd_failure_at_the_token_endpoint_is_generic_invalid_client() {
    let h = harness().await;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", "ac_x"),
        ("client_id", "https://unknown.example.com/client.json"),
        ("code_verifier", verifier(1).as_str()),
    ]);
    let err = h.server.token(&h.project, None, body.as_bytes()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidClient);
    assert_eq!(err.description(), Some("client authentication failed"));
}

#[tokio::test]
async fn refresh_widening_is_refused_without_rotating() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(30);
    let code = h.code_for(&client, &v, "&scope=mcp%3Aread").await;
    let rt = h
        .exchange(&client, &code, &v, "")
        .await
        .unwrap()
        .refresh_token()
        .unwrap()
        .to_owned();
    let err = h
        .refresh(&client, &rt, "&scope=mcp%3Aread+mcp%3Awrite")
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidScope);
    let err = h
        .refresh(&client, &rt, "&resource=https%3A%2F%2Fother.example.com%2Fmcp")
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidTarget);
    // Neither refusal rotated the token: it still works, exactly once.
    assert_eq!(h.introspect(&rt).await["active"], true);
    assert!(h.refresh(&client, &rt, "").await.is_ok());
    assert!(!h.events().contains(&"refresh_token.reuse_detected"));
}

#[tokio::test]
async fn one_users_replay_never_revokes_another_users_grant() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let (va, vb) = (verifier(31), verifier(32));
    let code_a = h.code_for(&client, &va, "").await;
    let code_b = h.code_for(&client, &vb, "").await;
    let ta = h.exchange(&client, &code_a, &va, "").await.unwrap();
    let tb = h.exchange(&client, &code_b, &vb, "").await.unwrap();
    // A's code is replayed: A's grant dies, B's (same client) does not.
    assert!(h.exchange(&client, &code_a, &va, "").await.is_err());
    assert_eq!(h.introspect(ta.access_token()).await["active"], false);
    assert_eq!(h.introspect(tb.access_token()).await["active"], true);
    assert_eq!(h.introspect(tb.refresh_token().unwrap()).await["active"], true);
}

#[tokio::test]
async fn revoking_another_clients_token_is_ignored() {
    let h = harness().await;
    let owner = h.public_client(1, &[REDIRECT]).await;
    let other = h.public_client(2, &[REDIRECT]).await;
    let v = verifier(33);
    let code = h.code_for(&owner, &v, "").await;
    let t = h.exchange(&owner, &code, &v, "").await.unwrap();
    for token in [t.access_token(), t.refresh_token().unwrap()] {
        let body = form(&[("token", token), ("client_id", other.as_str())]);
        h.server.revoke(&h.project, None, body.as_bytes()).await.unwrap();
        assert_eq!(
            h.introspect(token).await["active"],
            true,
            "RFC 7009: only the owner may revoke"
        );
    }
}

#[tokio::test]
async fn refresh_requires_the_refresh_grant_type() {
    use authio_mcp::client::{Client, ClientId, ClientMetadata, MetadataProfile};
    use authio_mcp::redirect_uri::RedirectUriPolicy;
    use authio_mcp::store::ClientStore;
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(34);
    let code = h.code_for(&client, &v, "").await;
    let rt = h
        .exchange(&client, &code, &v, "")
        .await
        .unwrap()
        .refresh_token()
        .unwrap()
        .to_owned();
    // The client's metadata changes to authorization_code only.
    let ClientId::Registered(id) = &client else {
        unreachable!()
    };
    assert!(h.clients.delete(&h.project, id).await.unwrap());
    let m: ClientMetadata = serde_json::from_value(serde_json::json!({
        "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"]
    }))
    .unwrap();
    let m = m.validate(MetadataProfile::Dcr, RedirectUriPolicy::strict()).unwrap();
    h.clients
        .insert(&h.project, Client::new(client.clone(), m, START))
        .await
        .unwrap();
    let err = h.refresh(&client, &rt, "").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnauthorizedClient);
}

#[tokio::test]
async fn refresh_tokens_stop_when_the_project_stops_issuing_them() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(35);
    let code = h.code_for(&client, &v, "").await;
    let rt = h
        .exchange(&client, &code, &v, "")
        .await
        .unwrap()
        .refresh_token()
        .unwrap()
        .to_owned();
    h.server
        .edit_project(&h.project, |mut s| {
            s.refresh_token_ttl = Duration::ZERO;
            s
        })
        .await
        .unwrap();
    assert_eq!(
        h.refresh(&client, &rt, "").await.unwrap_err().code(),
        ErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn cimd_client_may_use_basic_with_an_empty_secret() {
    use base64::Engine as _;
    let h = harness().await;
    let v = verifier(36);
    let client = authio_mcp::client::ClientId::parse_with(CIMD_URL, Default::default()).unwrap();
    let pending = h.pending(&auth_query(&client, CIMD_REDIRECT, &v, "")).await;
    let location = h
        .server
        .approve(pending, Subject::new("u").unwrap(), None)
        .await
        .unwrap();
    let code = query_param(&location, "code").unwrap();
    let user = url::form_urlencoded::byte_serialize(CIMD_URL.as_bytes()).collect::<String>();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:"))
    );
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("code_verifier", v.as_str()),
    ]);
    assert!(h.server.token(&h.project, Some(&basic), body.as_bytes()).await.is_ok());
    // A non-empty secret is refused for a metadata-document client.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:x"))
    );
    let err = h
        .server
        .token(&h.project, Some(&basic), body.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidClient);
}

#[tokio::test]
async fn revoking_an_access_token_leaves_the_grant() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(37);
    let code = h.code_for(&client, &v, "").await;
    let t = h.exchange(&client, &code, &v, "").await.unwrap();
    let body = form(&[
        ("token", t.access_token()),
        ("client_id", client.as_str()),
        ("token_type_hint", "access_token"),
    ]);
    h.server.revoke(&h.project, None, body.as_bytes()).await.unwrap();
    assert_eq!(h.introspect(t.access_token()).await["active"], false);
    let rt = t.refresh_token().unwrap().to_owned();
    assert_eq!(
        h.introspect(&rt).await["active"],
        true,
        "only the access token was revoked"
    );
    let t2 = h.refresh(&client, &rt, "").await.unwrap();
    assert_eq!(h.introspect(t2.access_token()).await["active"], true);
}

#[tokio::test]
async fn a_project_with_its_own_issuer_names_it_everywhere() {
    use authio_mcp::discovery::Issuer;
    let h = harness().await;
    let own = "https://auth-api.authio.com/p/proj_demo";
    h.server
        .edit_project(&h.project, |mut s| {
            s.issuer = Some(Issuer::new(own).unwrap());
            s
        })
        .await
        .unwrap();
    let m = h.server.metadata(&h.project).await.unwrap();
    assert_eq!(m.issuer, own);
    assert_eq!(m.token_endpoint, format!("{own}/oauth2/token"));

    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(38);
    let pending = h.pending(&auth_query(&client, REDIRECT, &v, "")).await;
    assert_eq!(query_param(&h.server.deny(pending).await, "iss").as_deref(), Some(own));
    let pending = h.pending(&auth_query(&client, REDIRECT, &v, "")).await;
    let location = h
        .server
        .approve(pending, Subject::new("u").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(query_param(&location, "iss").as_deref(), Some(own));
    let error = h.authorize(&auth_query(&client, REDIRECT, &v, "&prompt=none")).await;
    let authio_mcp::server::AuthorizeOutcome::Redirect(error) = error else {
        panic!("{error:?}")
    };
    assert_eq!(query_param(&error, "iss").as_deref(), Some(own));

    let code = query_param(&location, "code").unwrap();
    let t = h.exchange(&client, &code, &v, "").await.unwrap();
    assert_eq!(h.introspect(t.access_token()).await["iss"], own);
    assert_eq!(h.introspect(t.refresh_token().unwrap()).await["iss"], own);
    // Settings with an issuer round-trip through serde.
    let s = h.server.project(&h.project).await.unwrap();
    let back: authio_mcp::project::ProjectSettings = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

/// Several tabs of one client refresh one token at once: within the
/// project's grace they all get the same new pair; after it, a reuse still
/// revokes the family.
#[tokio::test]
async fn concurrent_refreshes_within_the_grace_get_the_same_pair() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(5);
    let code = h.code_for(&client, &v, "").await;
    let rt1 = h
        .exchange(&client, &code, &v, "")
        .await
        .unwrap()
        .refresh_token()
        .unwrap()
        .to_owned();
    let a = h.refresh(&client, &rt1, "").await.unwrap();
    h.clock.advance(Duration::seconds(2));
    let b = h.refresh(&client, &rt1, "").await.unwrap();
    assert_eq!(a.access_token(), b.access_token());
    assert_eq!(a.refresh_token(), b.refresh_token());
    assert_eq!(b.expires_in, a.expires_in - 2, "the same token, 2 seconds older");
    assert_ne!(a.refresh_token(), Some(rt1.as_str()));
    assert!(h.events().contains(&"refresh_token.concurrent_reuse"));
    assert!(!h.events().contains(&"refresh_token.reuse_detected"));
    assert_eq!(h.introspect(a.access_token()).await["active"], true);
    // rt1 after the grace: reuse, and the whole family is revoked.
    let rt2 = a.refresh_token().unwrap();
    let d = h.refresh(&client, rt2, "").await.unwrap();
    assert_eq!(h.introspect(d.access_token()).await["active"], true);
    h.clock.advance(Duration::seconds(3));
    assert_eq!(
        h.refresh(&client, &rt1, "").await.unwrap_err().code(),
        ErrorCode::InvalidGrant
    );
    assert!(h.events().contains(&"refresh_token.reuse_detected"));
    assert_eq!(h.introspect(d.access_token()).await["active"], false);
    assert_eq!(h.introspect(d.refresh_token().unwrap()).await["active"], false);
}

/// Within the grace only an identical request gets the first pair: asking
/// for other scopes would mint an access token the first rotation never
/// issued (review finding), so it is reuse and revokes the family.
#[tokio::test]
async fn a_different_request_within_the_grace_is_reuse() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(6);
    let code = h.code_for(&client, &v, "&scope=mcp%3Aread+mcp%3Awrite").await;
    let rt1 = h
        .exchange(&client, &code, &v, "")
        .await
        .unwrap()
        .refresh_token()
        .unwrap()
        .to_owned();
    let a = h.refresh(&client, &rt1, "").await.unwrap();
    h.clock.advance(Duration::seconds(1));
    for extra in ["&scope=mcp%3Aread", "&resource=https%3A%2F%2Fmcp.example.com%2Fother"] {
        let e = h.refresh(&client, &rt1, extra).await.unwrap_err();
        assert!(
            matches!(e.code(), ErrorCode::InvalidGrant | ErrorCode::InvalidTarget),
            "{extra}: {e:?}"
        );
    }
    assert!(h.events().contains(&"refresh_token.reuse_detected"));
    assert_eq!(h.introspect(a.access_token()).await["active"], false);
    assert_eq!(h.introspect(a.refresh_token().unwrap()).await["active"], false);
}

#[tokio::test]
async fn strict_mode_and_zero_grace_revoke_on_any_reuse() {
    for strict in [true, false] {
        let h = harness().await;
        h.server
            .edit_project(&h.project, |mut s| {
                if strict {
                    s.strict_mode = true;
                } else {
                    s.refresh_reuse_grace = Duration::ZERO;
                }
                s
            })
            .await
            .unwrap();
        let client = h.public_client(1, &[REDIRECT]).await;
        let v = verifier(6);
        let code = h.code_for(&client, &v, "").await;
        let rt1 = h
            .exchange(&client, &code, &v, "")
            .await
            .unwrap()
            .refresh_token()
            .unwrap()
            .to_owned();
        let a = h.refresh(&client, &rt1, "").await.unwrap();
        assert_eq!(
            h.refresh(&client, &rt1, "").await.unwrap_err().code(),
            ErrorCode::InvalidGrant,
            "strict={strict}"
        );
        assert_eq!(h.introspect(a.access_token()).await["active"], false);
    }
}

/// A revoked access token is not resurrected by a concurrent refresh.
#[tokio::test]
async fn a_grace_replay_never_revives_a_revoked_access_token() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(7);
    let code = h.code_for(&client, &v, "").await;
    let rt1 = h
        .exchange(&client, &code, &v, "")
        .await
        .unwrap()
        .refresh_token()
        .unwrap()
        .to_owned();
    let a = h.refresh(&client, &rt1, "").await.unwrap();
    let body = form(&[("token", a.access_token()), ("client_id", client.as_str())]);
    h.server.revoke(&h.project, None, body.as_bytes()).await.unwrap();
    assert_eq!(
        h.refresh(&client, &rt1, "").await.unwrap_err().code(),
        ErrorCode::InvalidGrant
    );
    assert_eq!(h.introspect(a.access_token()).await["active"], false);
}

/// Codex and others omit `resource` on refresh: the grant's applies. A
/// resource spelled differently but canonically equal is the same one.
#[tokio::test]
async fn refresh_without_resource_keeps_the_grants_and_compares_canonically() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(8);
    let code = h.code_for(&client, &v, "").await;
    let rt = h
        .exchange(&client, &code, &v, "")
        .await
        .unwrap()
        .refresh_token()
        .unwrap()
        .to_owned();
    let t = h.refresh(&client, &rt, "").await.unwrap();
    assert_eq!(
        h.introspect(t.access_token()).await["aud"],
        serde_json::json!([RESOURCE])
    );
    let mut rt = t.refresh_token().unwrap().to_owned();
    for spelled in [
        "HTTPS://MCP.EXAMPLE.COM/mcp",
        "https://mcp.example.com:443/mcp",
        "https://Mcp.Example.com/mcp",
    ] {
        let t = h
            .refresh(&client, &rt, &format!("&{}", form(&[("resource", spelled)])))
            .await
            .unwrap_or_else(|e| panic!("{spelled}: {e:?}"));
        assert_eq!(
            h.introspect(t.access_token()).await["aud"],
            serde_json::json!([RESOURCE]),
            "{spelled}"
        );
        rt = t.refresh_token().unwrap().to_owned();
    }
    // The path is case-sensitive: another resource.
    let err = h
        .refresh(
            &client,
            &rt,
            &format!("&{}", form(&[("resource", "https://mcp.example.com/MCP")])),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidTarget);
}

/// Several resources in one authorization (RFC 8707 section 2: the
/// parameter may repeat): the grant holds all of them, a token request
/// may only narrow them, and the access token's `aud` is what was
/// granted for it; more than the limit is `invalid_target`.
#[tokio::test]
async fn several_resources_are_granted_and_token_requests_only_narrow_them() {
    use authio_mcp::project::KnownResource;
    use authio_mcp::resource::ResourceUri;
    const OTHER: &str = "https://other.example.com/mcp";
    let h = harness().await;
    h.server
        .edit_project(&h.project, |mut s| {
            s.resources
                .upsert(KnownResource::new(ResourceUri::parse(OTHER).unwrap(), "Other").unwrap());
            s
        })
        .await
        .unwrap();
    let client = h.public_client(31, &[REDIRECT]).await;
    let both = format!("&{}", form(&[("resource", OTHER)]));
    let aud = |v: &serde_json::Value| -> Vec<String> {
        let mut a: Vec<String> = match &v["aud"] {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
            other => panic!("aud: {other}"),
        };
        a.sort();
        a
    };

    // No `resource` at the token endpoint: every granted resource.
    let v = verifier(31);
    let code = h.code_for(&client, &v, &both).await;
    let t = h.exchange(&client, &code, &v, "").await.unwrap();
    assert_eq!(
        aud(&h.introspect(t.access_token()).await),
        vec![RESOURCE.to_owned(), OTHER.to_owned()]
    );
    // Narrowed to one of them at the exchange, and again at a refresh.
    let v = verifier(32);
    let code = h.code_for(&client, &v, &both).await;
    let narrow = format!("&{}", form(&[("resource", OTHER)]));
    let t = h.exchange(&client, &code, &v, &narrow).await.unwrap();
    assert_eq!(aud(&h.introspect(t.access_token()).await), vec![OTHER.to_owned()]);
    let rt = t.refresh_token().expect("a refresh token").to_owned();
    let narrow_other = format!("&{}", form(&[("resource", RESOURCE)]));
    let r = h.refresh(&client, &rt, &narrow_other).await.unwrap();
    assert_eq!(aud(&h.introspect(r.access_token()).await), vec![RESOURCE.to_owned()]);

    // A grant of one resource cannot be widened to the other.
    let v = verifier(33);
    let code = h.code_for(&client, &v, "").await;
    let e = h.exchange(&client, &code, &v, &narrow).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidTarget);

    // More than ten `resource` parameters: refused before anything else.
    let many: String = (0..10)
        .map(|i| format!("&{}", form(&[("resource", &format!("https://r{i}.example.com/mcp"))])))
        .collect();
    match h.authorize(&auth_query(&client, REDIRECT, &verifier(34), &many)).await {
        authio_mcp::server::AuthorizeOutcome::Redirect(location) => {
            assert_eq!(query_param(&location, "error").as_deref(), Some("invalid_target"));
            assert!(query_param(&location, "code").is_none());
        }
        other => panic!("expected an error redirect, got {other:?}"),
    }
}
