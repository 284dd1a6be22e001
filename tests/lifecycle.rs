//! Client and grant lifecycle in the driver: listing registered clients
//! in pages, showing, disabling (a disabled client cannot authorize,
//! exchange, refresh, revoke or use its tokens), enabling, deleting
//! (revoking its grants); listing a user's grants and revoking one or all
//! of them (which forgets remembered consent).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use authio_mcp::ErrorCode;
use authio_mcp::client::{ClientId, RegisteredClientId};
use authio_mcp::grant::{GrantId, Subject};
use authio_mcp::project::ProjectId;
use authio_mcp::resource::ResourceSet;
use authio_mcp::scope::ScopeSet;
use authio_mcp::server::{AdminError, AuthorizeOutcome};
use authio_mcp::store::memory::MemoryUserStore;
use authio_mcp::store::{PageRequest, UserStore};
use common::*;
use time::Duration;

fn registered(id: &ClientId) -> RegisteredClientId {
    match id {
        ClientId::Registered(r) => r.clone(),
        ClientId::Metadata(_) => panic!("a registered client"),
    }
}

/// A harness whose user store the test can read.
async fn harness_with_users() -> (Harness, Arc<MemoryUserStore>) {
    let users = Arc::new(MemoryUserStore::new());
    let h = {
        let users = users.clone();
        harness_with(move |b| b.user_store(users)).await
    };
    (h, users)
}

/// A user signs in through `client` (as `subject`) and gets tokens.
async fn sign_in(
    h: &Harness,
    client: &ClientId,
    subject: &str,
    seed: u8,
    extra: &str,
) -> authio_mcp::token::TokenResponse {
    let v = verifier(seed);
    let pending = h.pending(&auth_query(client, REDIRECT, &v, extra)).await;
    let location = h
        .server
        .approve(pending, Subject::new(subject).unwrap(), None)
        .await
        .unwrap();
    let code = query_param(&location, "code").unwrap();
    h.exchange(client, &code, &v, "").await.unwrap()
}

#[tokio::test]
async fn clients_are_listed_in_pages_in_a_stable_order() {
    let h = harness().await;
    let mut ids = Vec::new();
    for n in 1..=7u8 {
        ids.push(h.public_client(n, &[REDIRECT]).await);
    }
    // Same registration time: the id breaks the tie.
    let mut expected: Vec<String> = ids.iter().map(|c| c.as_str().to_owned()).collect();
    expected.sort();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    let mut pages = 0;
    loop {
        let got = h.server.list_clients(&h.project, &page).await.unwrap();
        pages += 1;
        assert!(got.items.len() <= 3);
        seen.extend(got.items.iter().map(|c| c.client_id.as_str().to_owned()));
        match got.next {
            Some(next) => page = PageRequest::first(3).after(Some(next)),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);
    // A cursor survives a round trip through its string form.
    let first = h.server.list_clients(&h.project, &PageRequest::first(3)).await.unwrap();
    let cursor = authio_mcp::store::PageCursor::parse(&first.next.unwrap().to_string()).unwrap();
    let second = h
        .server
        .list_clients(&h.project, &PageRequest::first(3).after(Some(cursor)))
        .await
        .unwrap();
    assert_eq!(second.items[0].client_id.as_str(), expected[3]);
    // Another project sees none of them; an unknown project is an error.
    let other = ProjectId::new("proj_other").unwrap();
    h.server.put_project(&other, project_settings()).await.unwrap();
    assert!(
        h.server
            .list_clients(&other, &PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let id = registered(&ids[0]);
    assert!(matches!(
        h.server.client(&other, &id).await,
        Err(AdminError::UnknownClient)
    ));
    assert!(matches!(
        h.server
            .list_clients(&ProjectId::new("nope").unwrap(), &PageRequest::first(1))
            .await,
        Err(AdminError::UnknownProject)
    ));
    assert_eq!(h.server.client(&h.project, &id).await.unwrap().client_id, ids[0]);
}

#[tokio::test]
async fn a_disabled_client_can_do_nothing_until_enabled() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let other = h.public_client(2, &[REDIRECT]).await;
    let id = registered(&client);
    let t = sign_in(&h, &client, "alice", 1, "&scope=openid+mcp%3Aread").await;
    let other_tokens = sign_in(&h, &other, "alice", 2, "").await;
    let refresh = t.refresh_token().unwrap();
    // A code approved before the client is disabled.
    let v = verifier(3);
    let pending_code = h.code_for(&client, &v, "").await;

    let disabled = h.server.disable_client(&h.project, &id).await.unwrap();
    let at = disabled.disabled_at.expect("disabled");
    assert_eq!(at, h.server.now());
    // Disabling twice keeps the first time and records one event.
    h.clock.advance(Duration::seconds(10));
    assert_eq!(
        h.server.disable_client(&h.project, &id).await.unwrap().disabled_at,
        Some(at)
    );
    assert_eq!(h.events().iter().filter(|e| **e == "oauth_client.disabled").count(), 1);

    // Authorization: an error page, never a redirect.
    match h.authorize(&auth_query(&client, REDIRECT, &verifier(4), "")).await {
        AuthorizeOutcome::ShowError(e) => {
            assert_eq!(e.code(), ErrorCode::UnauthorizedClient);
            assert!(e.description().unwrap().contains("disabled"), "{e:?}");
        }
        other => panic!("expected an error page, got {other:?}"),
    }
    // Code exchange and refresh: invalid_client, nothing consumed.
    let e = h.exchange(&client, &pending_code, &v, "").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClient);
    let e = h.refresh(&client, refresh, "").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClient);
    // Revocation: the client cannot authenticate.
    let body = form(&[("token", t.access_token()), ("client_id", client.as_str())]);
    let e = h.server.revoke(&h.project, None, body.as_bytes()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClient);
    // Its tokens: inactive at introspection, refused at userinfo.
    assert_eq!(h.introspect(t.access_token()).await["active"], false);
    assert_eq!(h.introspect(refresh).await["active"], false);
    let bearer = format!("Bearer {}", t.access_token());
    let e = h.server.userinfo(&h.project, Some(&bearer)).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidToken);
    // Other clients are untouched.
    assert_eq!(h.introspect(other_tokens.access_token()).await["active"], true);
    // Every refusal is audited.
    let refused: Vec<_> = h
        .audit
        .recent(&h.project, 100)
        .into_iter()
        .filter(|e| e.name() == "oauth_client.disabled_refused")
        .map(|e| e.to_json()["endpoint"].as_str().unwrap().to_owned())
        .collect();
    assert!(refused.contains(&"authorize".to_owned()), "{refused:?}");
    assert!(refused.contains(&"client_authentication".to_owned()), "{refused:?}");

    // Enabled again: everything works as before (the grants were kept).
    let enabled = h.server.enable_client(&h.project, &id).await.unwrap();
    assert!(enabled.disabled_at.is_none());
    assert!(h.events().contains(&"oauth_client.enabled"));
    assert_eq!(h.introspect(t.access_token()).await["active"], true);
    assert!(h.exchange(&client, &pending_code, &v, "").await.is_ok());
    assert!(h.refresh(&client, refresh, "").await.is_ok());
    assert!(matches!(
        h.authorize(&auth_query(&client, REDIRECT, &verifier(5), "")).await,
        AuthorizeOutcome::Pending(_)
    ));
    // Unknown clients.
    let unknown = RegisteredClientId::from_random(&[99; 12]);
    assert!(matches!(
        h.server.disable_client(&h.project, &unknown).await,
        Err(AdminError::UnknownClient)
    ));
    assert!(matches!(
        h.server.enable_client(&h.project, &unknown).await,
        Err(AdminError::UnknownClient)
    ));
}

#[tokio::test]
async fn deleting_a_client_revokes_its_grants_and_forgets_consent() {
    let (h, users) = harness_with_users().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let keep = h.public_client(2, &[REDIRECT]).await;
    let a = sign_in(&h, &client, "alice", 1, "").await;
    let b = sign_in(&h, &client, "bob", 2, "").await;
    let kept = sign_in(&h, &keep, "alice", 3, "").await;
    let unexchanged = h.code_for(&client, &verifier(4), "").await;
    let alice = Subject::new("alice").unwrap();
    let scopes = ScopeSet::parse("mcp:read").unwrap();
    for c in [&client, &keep] {
        users
            .remember_consent(&h.project, &alice, c.as_str(), &scopes, &ResourceSet::new(), START)
            .await
            .unwrap();
    }

    let id = registered(&client);
    let revoked = h.server.delete_client(&h.project, &id).await.unwrap();
    assert_eq!(
        revoked, 3,
        "alice's, bob's, and the user_demo grant whose code was never exchanged"
    );
    assert!(matches!(
        h.server.client(&h.project, &id).await,
        Err(AdminError::UnknownClient)
    ));
    for t in [&a, &b] {
        assert_eq!(h.introspect(t.access_token()).await["active"], false);
        assert_eq!(h.introspect(t.refresh_token().unwrap()).await["active"], false);
    }
    assert!(h.exchange(&client, &unexchanged, &verifier(4), "").await.is_err());
    assert_eq!(h.introspect(kept.access_token()).await["active"], true);
    assert!(
        users
            .consent(&h.project, &alice, client.as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        users
            .consent(&h.project, &alice, keep.as_str())
            .await
            .unwrap()
            .is_some()
    );
    let deleted = h
        .audit
        .recent(&h.project, 100)
        .into_iter()
        .find(|e| e.name() == "oauth_client.deleted")
        .unwrap();
    assert_eq!(deleted.to_json()["grants_revoked"], 3);
    assert_eq!(deleted.to_json()["client_id"], client.as_str());
    // The grants are gone from every user's list.
    let listed = h
        .server
        .user_grants(&h.project, &alice, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].grant.client_id, keep);
    assert!(matches!(
        h.server.delete_client(&h.project, &id).await,
        Err(AdminError::UnknownClient)
    ));
}

#[tokio::test]
async fn a_users_grants_are_listed_with_use_and_revoked_one_or_all() {
    let (h, users) = harness_with_users().await;
    let (c1, c2) = (
        h.public_client(1, &[REDIRECT]).await,
        h.public_client(2, &[REDIRECT]).await,
    );
    let alice = Subject::new("alice").unwrap();
    let first = sign_in(&h, &c1, "alice", 1, "&scope=mcp%3Aread").await;
    h.clock.advance(Duration::minutes(5));
    let second = sign_in(&h, &c2, "alice", 2, "&scope=mcp%3Awrite").await;
    h.clock.advance(Duration::minutes(1));
    let third = sign_in(&h, &c1, "alice", 3, "").await;
    let bobs = sign_in(&h, &c1, "bob", 4, "").await;
    // A refresh later: the grant's last use moves.
    h.clock.advance(Duration::minutes(10));
    let refreshed = h.refresh(&c1, first.refresh_token().unwrap(), "").await.unwrap();
    for c in [&c1, &c2] {
        users
            .remember_consent(
                &h.project,
                &alice,
                c.as_str(),
                &ScopeSet::parse("mcp:read").unwrap(),
                &ResourceSet::new(),
                START,
            )
            .await
            .unwrap();
    }

    let page = h
        .server
        .user_grants(&h.project, &alice, &PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = h
        .server
        .user_grants(&h.project, &alice, &PageRequest::first(2).after(page.next.clone()))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next.is_none());
    let all: Vec<_> = page.items.into_iter().chain(rest.items).collect();
    // Oldest first; client, scopes, resources, created, last used.
    assert_eq!(all[0].grant.client_id, c1);
    assert_eq!(all[0].grant.scopes.to_string(), "mcp:read");
    assert_eq!(all[0].grant.resources.audiences(), vec![RESOURCE]);
    assert_eq!(all[0].grant.granted_at, START);
    assert_eq!(all[0].last_used_at, Some(START + Duration::minutes(16)), "the refresh");
    assert_eq!(all[1].grant.client_id, c2);
    assert_eq!(all[1].grant.scopes.to_string(), "mcp:write");
    assert_eq!(all[1].last_used_at, Some(START + Duration::minutes(5)));
    assert!(all.iter().all(|s| s.grant.subject == alice));
    let ids: HashSet<_> = all.iter().map(|s| s.grant.id.clone()).collect();
    assert_eq!(ids.len(), 3);

    // Revoke one: its tokens die, consent for its client is forgotten,
    // the others live on.
    let one = all[1].grant.id.clone();
    let bob = Subject::new("bob").unwrap();
    assert!(matches!(
        h.server.revoke_user_grant(&h.project, &bob, &one).await,
        Err(AdminError::UnknownGrant)
    ));
    let gone = h.server.revoke_user_grant(&h.project, &alice, &one).await.unwrap();
    assert_eq!(gone.grant.id, one);
    assert_eq!(h.introspect(second.access_token()).await["active"], false);
    assert_eq!(h.introspect(second.refresh_token().unwrap()).await["active"], false);
    assert!(users.consent(&h.project, &alice, c2.as_str()).await.unwrap().is_none());
    assert!(users.consent(&h.project, &alice, c1.as_str()).await.unwrap().is_some());
    assert_eq!(h.introspect(refreshed.access_token()).await["active"], true);
    assert!(matches!(
        h.server.revoke_user_grant(&h.project, &alice, &one).await,
        Err(AdminError::UnknownGrant)
    ));
    assert!(matches!(
        h.server
            .revoke_user_grant(&h.project, &alice, &GrantId::from_random(&[1; 16]))
            .await,
        Err(AdminError::UnknownGrant)
    ));

    // Revoke all (account deletion): every token dies, every consent goes,
    // bob keeps his.
    let n = h.server.revoke_user_grants(&h.project, &alice).await.unwrap();
    assert_eq!(n, 2);
    for t in [&refreshed, &third] {
        assert_eq!(h.introspect(t.access_token()).await["active"], false);
        assert_eq!(h.introspect(t.refresh_token().unwrap()).await["active"], false);
        assert!(h.refresh(&c1, t.refresh_token().unwrap(), "").await.is_err());
    }
    assert!(users.consent(&h.project, &alice, c1.as_str()).await.unwrap().is_none());
    assert!(
        h.server
            .user_grants(&h.project, &alice, &PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(h.introspect(bobs.access_token()).await["active"], true);
    let summary = h
        .audit
        .recent(&h.project, 200)
        .into_iter()
        .find(|e| e.name() == "user.grants_revoked")
        .unwrap();
    assert_eq!(summary.to_json()["grants_revoked"], 2);
    assert_eq!(summary.to_json()["subject"], "alice");
    assert_eq!(h.server.revoke_user_grants(&h.project, &alice).await.unwrap(), 0);
}

/// Revoking every grant of a user while the user's clients refresh
/// concurrently never leaves a live token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_all_grants_racing_refreshes_leaves_no_live_token() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let mut tokens = Vec::new();
    for n in 0..16u8 {
        tokens.push(sign_in(&h, &client, "leaver", n, "").await);
    }
    let alice = Subject::new("leaver").unwrap();
    let refreshes = futures_util::future::join_all(tokens.iter().map(|t| {
        let h = &h;
        let client = &client;
        async move { h.refresh(client, t.refresh_token().unwrap(), "").await.ok() }
    }));
    let revoke = h.server.revoke_user_grants(&h.project, &alice);
    let (refreshed, revoked) = futures_util::future::join(refreshes, revoke).await;
    assert_eq!(revoked.unwrap(), 16);
    for t in tokens.iter().chain(refreshed.iter().flatten()) {
        assert_eq!(h.introspect(t.access_token()).await["active"], false);
        if let Some(r) = &t.refresh_token() {
            assert_eq!(h.introspect(r).await["active"], false);
        }
    }
}

#[tokio::test]
async fn lifecycle_calls_are_scoped_to_their_project() {
    let h = harness().await;
    let client = h.public_client(1, &[REDIRECT]).await;
    let t = sign_in(&h, &client, "alice", 1, "").await;
    let other = ProjectId::new("proj_other").unwrap();
    h.server.put_project(&other, project_settings()).await.unwrap();
    let alice = Subject::new("alice").unwrap();
    assert!(matches!(
        h.server.disable_client(&other, &registered(&client)).await,
        Err(AdminError::UnknownClient)
    ));
    assert!(matches!(
        h.server.delete_client(&other, &registered(&client)).await,
        Err(AdminError::UnknownClient)
    ));
    assert_eq!(h.server.revoke_user_grants(&other, &alice).await.unwrap(), 0);
    assert!(
        h.server
            .user_grants(&other, &alice, &PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let grant = h
        .server
        .user_grants(&h.project, &alice, &PageRequest::first(10))
        .await
        .unwrap()
        .items[0]
        .grant
        .id
        .clone();
    assert!(matches!(
        h.server.revoke_user_grant(&other, &alice, &grant).await,
        Err(AdminError::UnknownGrant)
    ));
    assert_eq!(h.introspect(t.access_token()).await["active"], true);
}

/// With a client cache (`CachedClientStore`), a client disabled on another
/// instance (here: straight in the shared store) may still be served from
/// this instance's cache for up to its TTL, but its tokens read as
/// inactive here at once: introspection asks `client_uncached`.
#[tokio::test]
async fn a_client_disabled_elsewhere_has_inactive_tokens_at_once_despite_a_client_cache() {
    use authio_mcp::store::memory::MemoryClientStore;
    use authio_mcp::store::{CachedClientStore, ClientStore as _};
    let shared = Arc::new(MemoryClientStore::new());
    let cached = Arc::new(CachedClientStore::new(
        shared.clone(),
        std::time::Duration::from_secs(3600),
    ));
    let h = {
        let cached = cached.clone();
        harness_with(move |b| b.clients(cached)).await
    };
    let client = h.public_client_in(shared.as_ref(), 7, &[REDIRECT]).await;
    let v = verifier(7);
    let code = h.code_for(&client, &v, "").await;
    let t = h.exchange(&client, &code, &v, "").await.unwrap();
    assert_eq!(h.introspect(t.access_token()).await["active"], true);

    // Another instance disables it.
    let id = registered(&client);
    shared
        .set_disabled(&h.project, &id, Some(START))
        .await
        .unwrap()
        .unwrap();
    // This instance's cache still holds it enabled (the documented
    // staleness) ...
    assert_eq!(cached.get(&h.project, &id).await.unwrap().unwrap().disabled_at, None);
    // ... but its tokens are inactive here at once.
    assert_eq!(h.introspect(t.access_token()).await["active"], false);
}
