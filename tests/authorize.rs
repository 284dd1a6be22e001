//! The authorization endpoint's two phases: phase-1 failures are shown and
//! never redirected; phase-2 failures redirect with `error`, `state`, `iss`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use authio_mcp::ErrorCode;
use authio_mcp::pkce::CodeChallenge;
use authio_mcp::project::{KnownResource, ResourcePolicy};
use authio_mcp::resource::ResourceUri;
use authio_mcp::server::AuthorizeOutcome;
use common::*;

#[tokio::test]
async fn phase_one_failures_are_never_redirected() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let two = h.public_client(2, &[REDIRECT, "https://other.example.com/cb"]).await;
    let v = verifier(1);
    let ok = auth_query(&client, REDIRECT, &v, "");
    let cases: Vec<(String, ErrorCode, &str)> = vec![
        (
            ok.replace("client_id=client_", "x=client_"),
            ErrorCode::InvalidRequest,
            "no client_id",
        ),
        (
            format!("{ok}&client_id={}", client.as_str()),
            ErrorCode::InvalidRequest,
            "duplicate client_id",
        ),
        (
            ok.replace(client.as_str(), "my-app"),
            ErrorCode::InvalidRequest,
            "malformed client_id",
        ),
        (
            ok.replace(client.as_str(), "client_ffffffffffffffffffffffff"),
            ErrorCode::InvalidClient,
            "unknown client",
        ),
        (
            ok.replace("callback", "callback%2F"),
            ErrorCode::InvalidRequest,
            "redirect differs by a trailing slash",
        ),
        (
            ok.replace("my-mcp-server", "evil"),
            ErrorCode::InvalidRequest,
            "unregistered redirect host",
        ),
        (
            format!("{ok}&redirect_uri=x"),
            ErrorCode::InvalidRequest,
            "duplicate redirect_uri",
        ),
        (
            auth_query(&two, REDIRECT, &v, "").replace("redirect_uri=", "x="),
            ErrorCode::InvalidRequest,
            "redirect_uri omitted with two registered",
        ),
        (
            ok.replace(client.as_str(), "https%3A%2F%2Fclient.example.com%2Fcimd.json"),
            ErrorCode::InvalidClient,
            "metadata document cannot be resolved",
        ),
        (
            ok.replace(client.as_str(), "http%3A%2F%2Fclient.example.com%2Fcimd.json"),
            ErrorCode::InvalidRequest,
            "http client_id URL",
        ),
    ];
    for (query, code, why) in cases {
        match h.authorize(&query).await {
            AuthorizeOutcome::ShowError(e) => assert_eq!(e.code(), code, "{why}"),
            other => panic!("{why}: expected an error page, got {other:?}"),
        }
    }
    // And an unknown project.
    let p = authio_mcp::project::ProjectId::new("nope").unwrap();
    assert!(matches!(
        h.server.authorize(&p, &ok).await,
        AuthorizeOutcome::ShowError(_)
    ));
}

#[tokio::test]
async fn phase_two_failures_redirect_with_state_and_iss() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let ok = auth_query(&client, REDIRECT, &v, "");
    let challenge = CodeChallenge::s256(&v);
    let cases: Vec<(String, &str)> = vec![
        (
            ok.replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (ok.replace("response_type=code&", ""), "invalid_request"),
        (
            ok.replace("code_challenge_method=S256", "code_challenge_method=plain"),
            "invalid_request",
        ),
        (ok.replace("&code_challenge_method=S256", ""), "invalid_request"),
        (ok.replace(challenge.as_str(), "short"), "invalid_request"),
        (
            ok.replace(&format!("code_challenge={}&", challenge.as_str()), ""),
            "invalid_request",
        ),
        (format!("{ok}&scope=a++b"), "invalid_scope"),
        (format!("{ok}&prompt=none"), "consent_required"),
        (format!("{ok}&prompt=none+login"), "invalid_request"),
        (format!("{ok}&prompt=consent&prompt=login"), "invalid_request"),
        (
            format!("{ok}&resource=https%3A%2F%2Fx.example.com%2Fm%23frag"),
            "invalid_target",
        ),
        (format!("{ok}&resource=not-a-uri"), "invalid_target"),
        (format!("{ok}&state=again"), "invalid_request"),
        (format!("{ok}&request_uri=urn%3Ax"), "invalid_request"),
    ];
    for (query, error) in cases {
        match h.authorize(&query).await {
            AuthorizeOutcome::Redirect(location) => {
                assert!(location.starts_with(&format!("{REDIRECT}?")), "{location}");
                assert_eq!(query_param(&location, "error").as_deref(), Some(error), "{query}");
                assert_eq!(query_param(&location, "iss").as_deref(), Some(ISSUER));
                assert!(query_param(&location, "state").is_some());
                assert!(query_param(&location, "code").is_none());
            }
            other => panic!("{query}: expected a redirect, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn resources_are_policy_checked() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let no_resource =
        auth_query(&client, REDIRECT, &v, "").replace("&resource=https%3A%2F%2Fmcp.example.com%2Fmcp", "");
    let refused = |l: &str| query_param(l, "error").as_deref() == Some("invalid_target");

    // No resource and no default: an empty audience is allowed by default...
    let p = h.pending(&no_resource).await;
    assert!(p.resources().is_empty());
    // ...refused when the project requires one...
    h.server
        .edit_project(&h.project, |mut s| {
            s.require_resource = true;
            s
        })
        .await
        .unwrap();
    let AuthorizeOutcome::Redirect(l) = h.authorize(&no_resource).await else {
        panic!()
    };
    assert!(refused(&l), "{l}");
    // ...and filled from the project default when there is one.
    h.server
        .edit_project(&h.project, |mut s| {
            s.default_resource = Some(ResourceUri::parse("https://default.example.com/mcp").unwrap());
            s
        })
        .await
        .unwrap();
    let p = h.pending(&no_resource).await;
    assert_eq!(p.resources().audiences(), vec!["https://default.example.com/mcp"]);
    // The default and the listed resource are known, with or without a
    // trailing slash or uppercase host.
    for known in [
        "https%3A%2F%2Fdefault.example.com%2Fmcp",
        "https%3A%2F%2Fmcp.example.com%2Fmcp",
        "https%3A%2F%2FMCP.example.com%2Fmcp%2F",
    ] {
        let p = h.pending(&format!("{no_resource}&resource={known}")).await;
        assert_eq!(p.resources().len(), 1, "{known}");
    }
    // Any other resource is refused: accepting any is an explicit setting.
    let other = format!("{no_resource}&resource=https%3A%2F%2Fother.example.com%2Fmcp");
    let AuthorizeOutcome::Redirect(l) = h.authorize(&other).await else {
        panic!()
    };
    assert!(refused(&l), "{l}");
    assert_eq!(
        query_param(&l, "error_description").as_deref(),
        Some("the resource https://other.example.com/mcp is not known to this project")
    );
    let event = h.audit.recent(&h.project, 50);
    let event = event
        .iter()
        .find(|e| e.name() == "resource.refused")
        .expect("an audit event");
    assert_eq!(event.to_json()["endpoint"], "authorize");
    assert_eq!(event.to_json()["client_id"], client.as_str());
    // One unknown resource among known ones refuses the request.
    let mixed = format!("{other}&resource=https%3A%2F%2Fmcp.example.com%2Fmcp");
    assert!(matches!(h.authorize(&mixed).await, AuthorizeOutcome::Redirect(l) if refused(&l)));
    // Listing it makes it known...
    h.server
        .edit_project(&h.project, |mut s| {
            s.resources.upsert(
                KnownResource::new(ResourceUri::parse("https://other.example.com/mcp").unwrap(), "Other").unwrap(),
            );
            s
        })
        .await
        .unwrap();
    assert_eq!(h.pending(&other).await.resources().len(), 1);
    // ...and so does the explicit `any` policy, for anything else.
    let third = format!("{no_resource}&resource=https%3A%2F%2Fthird.example.com%2Fmcp");
    assert!(matches!(h.authorize(&third).await, AuthorizeOutcome::Redirect(l) if refused(&l)));
    let settings = h
        .server
        .edit_project(&h.project, |mut s| {
            s.resource_policy = ResourcePolicy::Any;
            s
        })
        .await
        .unwrap();
    assert!(
        settings
            .lints()
            .contains(&authio_mcp::project::SettingsLint::AnyResource)
    );
    assert_eq!(h.pending(&third).await.resources().len(), 1);
}

/// A resource removed from the known list gets no more tokens, also for
/// a grant made while it was known: code exchange and refresh answer
/// `invalid_target` before any state changes.
#[tokio::test]
async fn forgotten_resources_get_no_more_tokens() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let code = h.code_for(&client, &v, "").await;
    let tokens = h.exchange(&client, &code, &v, "").await.unwrap();
    let refresh = tokens.refresh_token().expect("a refresh token");
    let code2 = h.code_for(&client, &verifier(2), "").await;
    let forget = |known: bool| {
        let server = h.server.clone();
        let project = h.project.clone();
        async move {
            server
                .edit_project(&project, move |mut s| {
                    let r = ResourceUri::parse(RESOURCE).unwrap();
                    if known {
                        s.resources.upsert(KnownResource::new(r, "Example MCP server").unwrap());
                    } else {
                        s.resources.remove(&r);
                    }
                    s
                })
                .await
                .unwrap();
        }
    };
    forget(false).await;
    let e = h.refresh(&client, refresh, "").await.unwrap_err();
    assert_eq!(e.code(), authio_mcp::ErrorCode::InvalidTarget);
    let e = h.exchange(&client, &code2, &verifier(2), "").await.unwrap_err();
    assert_eq!(e.code(), authio_mcp::ErrorCode::InvalidTarget);
    assert!(
        h.audit
            .recent(&h.project, 50)
            .iter()
            .any(|e| e.name() == "resource.refused" && e.to_json()["endpoint"] == "token")
    );
    // Nothing was consumed or rotated: known again, both still work.
    forget(true).await;
    assert!(h.refresh(&client, refresh, "").await.is_ok());
    assert!(h.exchange(&client, &code2, &verifier(2), "").await.is_ok());
}

#[tokio::test]
async fn loopback_clients_are_flagged_and_port_relaxed() {
    let h = harness().await;
    let client = h.public_client(3, &["http://127.0.0.1:33418/"]).await;
    let v = verifier(1);
    let p = h.pending(&auth_query(&client, "http://127.0.0.1:51000/", &v, "")).await;
    assert!(p.loopback_only());
    assert_eq!(p.redirect_uri(), "http://127.0.0.1:51000/");
    assert_eq!(p.redirect_host(), Some("127.0.0.1"));
    // The code goes to the port the client asked for.
    let location = h
        .server
        .approve(p, authio_mcp::grant::Subject::new("u").unwrap(), None)
        .await
        .unwrap();
    assert!(location.starts_with("http://127.0.0.1:51000/?code="));
}

#[tokio::test]
async fn default_scopes_when_omitted() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let p = h.pending(&auth_query(&client, REDIRECT, &verifier(1), "")).await;
    assert_eq!(p.scopes().to_string(), "mcp:read");
}

/// The external review's finding (RFC 9700 section 4.1): a loopback
/// redirect URI with userinfo after the host was read as "no port" and the
/// code went to `evil.example`. Every such spelling is now a phase-1 error,
/// never a redirect; real port changes still redirect to loopback.
#[tokio::test]
async fn loopback_redirect_cannot_be_respelled_to_another_host() {
    let h = harness().await;
    let registered = "http://[::1]:33418/callback";
    let client = h.public_client(1, &[registered]).await;
    let v = verifier(1);
    for hostile in [
        "http://[::1]@evil.example/callback",
        "http://[::1]:8443@evil.example/callback",
        "http://[::1]:33418@evil.example/callback",
        "http://[::1]:1@evil.example:8443/callback",
        "http://[::1]%40evil.example/callback",
        "http://[::1]:33418\\@evil.example/callback",
        "http://[::1]:33418/callback/../../evil",
        "http://[0:0:0:0:0:0:0:1]:1/callback",
        "http://[::1]:0/callback",
        "http://[::1]:99999/callback",
    ] {
        match h.authorize(&auth_query(&client, hostile, &v, "")).await {
            AuthorizeOutcome::ShowError(e) => assert_eq!(e.code(), ErrorCode::InvalidRequest, "{hostile}"),
            other => panic!("{hostile}: must not redirect, got {other:?}"),
        }
    }
    let ok = "http://[::1]:51234/callback";
    match h.authorize(&auth_query(&client, ok, &v, "")).await {
        AuthorizeOutcome::Pending(pending) => {
            assert_eq!(pending.redirect_uri(), ok);
            assert_eq!(pending.redirect_host(), Some("[::1]"));
        }
        other => panic!("a different loopback port must be accepted, got {other:?}"),
    }
}

/// Claude asks for `offline_access openid profile`: the request succeeds,
/// granting what the project supports; `offline_access` is understood as
/// the request for a refresh token and the token response names the
/// granted scope.
#[tokio::test]
async fn unsupported_scopes_are_dropped_and_offline_access_understood() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let q = auth_query(
        &client,
        REDIRECT,
        &v,
        "&scope=offline_access+openid+profile&prompt=consent",
    );
    let p = h.pending(&q).await;
    assert_eq!(p.scopes().to_string(), "openid");
    assert_eq!(p.dropped_scopes().to_string(), "profile");
    assert!(p.offline_access());
    assert!(p.force_consent());
    assert!(!p.force_login());
    let location = h
        .server
        .approve(p, authio_mcp::grant::Subject::new("user_demo").unwrap(), None)
        .await
        .unwrap();
    let code = query_param(&location, "code").unwrap();
    let t = h.exchange(&client, &code, &v, "").await.unwrap();
    assert_eq!(t.scope, "openid");
    assert!(t.refresh_token().is_some());

    // Only unknown scopes (and offline_access): the defaults, as if none
    // had been asked for.
    let p = h
        .pending(&auth_query(&client, REDIRECT, &v, "&scope=offline_access+profile"))
        .await;
    assert_eq!(p.scopes().to_string(), "mcp:read");
    assert_eq!(p.dropped_scopes().to_string(), "profile");

    // A project that lists offline_access keeps it in the grant.
    let mut settings = project_settings();
    settings.scopes_supported = authio_mcp::scope::ScopeSet::parse("offline_access mcp:read").unwrap();
    h.server.put_project(&h.project, settings).await.unwrap();
    let p = h
        .pending(&auth_query(&client, REDIRECT, &v, "&scope=offline_access+mcp%3Aread"))
        .await;
    assert_eq!(p.scopes().to_string(), "offline_access mcp:read");
    assert!(p.dropped_scopes().is_empty());
}

#[tokio::test]
async fn strict_mode_refuses_unsupported_scopes_but_understands_offline_access() {
    let h = harness().await;
    let mut settings = project_settings();
    settings.strict_mode = true;
    h.server.put_project(&h.project, settings).await.unwrap();
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    for scope in ["admin", "openid+profile"] {
        match h
            .authorize(&auth_query(&client, REDIRECT, &v, &format!("&scope={scope}")))
            .await
        {
            AuthorizeOutcome::Redirect(location) => {
                assert_eq!(
                    query_param(&location, "error").as_deref(),
                    Some("invalid_scope"),
                    "{scope}"
                );
                assert_eq!(query_param(&location, "iss").as_deref(), Some(ISSUER));
            }
            other => panic!("{scope}: expected a redirect, got {other:?}"),
        }
    }
    let p = h
        .pending(&auth_query(&client, REDIRECT, &v, "&scope=offline_access+openid"))
        .await;
    assert_eq!(p.scopes().to_string(), "openid");
    assert!(p.offline_access());
}

#[tokio::test]
async fn login_hint_and_prompt_login_reach_the_host() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let v = verifier(1);
    let p = h
        .pending(&auth_query(
            &client,
            REDIRECT,
            &v,
            "&prompt=login+select_account&login_hint=ada%40example.com",
        ))
        .await;
    assert!(p.force_login());
    assert_eq!(p.login_hint(), Some("ada@example.com"));
    // A hint with control characters, or too long, is dropped, not fatal.
    let p = h.pending(&auth_query(&client, REDIRECT, &v, "&login_hint=a%0Ab")).await;
    assert_eq!(p.login_hint(), None);
    let long = "a".repeat(300);
    let p = h
        .pending(&auth_query(&client, REDIRECT, &v, &format!("&login_hint={long}")))
        .await;
    assert_eq!(p.login_hint(), None);
}
