#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::{Value, json};
use time::macros::datetime;

use super::*;
use crate::authorize::{AuthorizationRequest, OFFLINE_ACCESS, PendingAuthorization, validate_request};
use crate::cimd::ClientIdUrl;
use crate::client::{Client, ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
use crate::pkce::{CodeChallenge, CodeVerifier};
use crate::project::{ProjectId, ProjectSettings};
use crate::redirect_uri::RedirectUriPolicy;
use crate::scope::ScopeSet;

pub(crate) const NOW: time::OffsetDateTime = datetime!(2026-11-26 12:00 UTC);
pub(crate) const ISSUER: &str = "https://auth.example.com";

pub(crate) fn settings() -> ProjectSettings {
    ProjectSettings {
        scopes_supported: ScopeSet::parse("openid email profile offline_access mcp:read mcp:write mcp:deploy").unwrap(),
        default_scopes: ScopeSet::parse("mcp:read").unwrap(),
        ..ProjectSettings::default()
    }
}

pub(crate) fn client(id: ClientId, doc: Value) -> Client {
    let metadata: ClientMetadata = serde_json::from_value(doc).unwrap();
    let profile = match id {
        ClientId::Metadata(_) => MetadataProfile::Cimd {
            allow_private_key_jwt: false,
        },
        ClientId::Registered(_) => MetadataProfile::Dcr,
    };
    let v = metadata.validate(profile, RedirectUriPolicy::default()).unwrap();
    Client::new(id, v, NOW)
}

pub(crate) fn cimd_client(links: Value) -> Client {
    let url = "https://app.example.com/oauth/client.json";
    let mut doc = json!({
        "client_id": url,
        "client_name": "Example App",
        "redirect_uris": ["https://app.example.com/cb"],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    });
    doc.as_object_mut().unwrap().extend(links.as_object().unwrap().clone());
    client(ClientId::Metadata(ClientIdUrl::parse(url).unwrap()), doc)
}

pub(crate) fn dcr_client(name: &str, redirect: &str, links: Value) -> Client {
    let mut doc = json!({
        "client_name": name,
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    });
    doc.as_object_mut().unwrap().extend(links.as_object().unwrap().clone());
    client(ClientId::Registered(RegisteredClientId::from_random(&[7; 12])), doc)
}

pub(crate) fn pending_for(
    settings: &ProjectSettings,
    client: &Client,
    redirect: &str,
    extra: &str,
) -> PendingAuthorization {
    let challenge = CodeChallenge::s256(&CodeVerifier::from_random(&[1; 32]));
    let query = format!(
        "response_type=code&client_id={}&redirect_uri={}&code_challenge={}&code_challenge_method=S256{extra}",
        url::form_urlencoded::byte_serialize(client.client_id.as_str().as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>(),
        challenge.as_str(),
    );
    let req = AuthorizationRequest::from_query(&query);
    validate_request(
        &req,
        &ProjectId::new("proj_t").unwrap(),
        settings,
        client,
        redirect.to_owned(),
        ISSUER,
        NOW,
    )
    .unwrap()
}

#[test]
fn cimd_client_leads_with_its_verified_host() {
    let c = cimd_client(json!({}));
    let p = pending_for(&settings(), &c, "https://app.example.com/cb", "").presentation;
    assert_eq!(
        p.client.identity,
        ClientIdentity::Verified {
            host: "app.example.com".into()
        }
    );
    assert_eq!(p.client.name.as_deref(), Some("Example App"));
    assert_eq!(p.redirect.host.as_deref(), Some("app.example.com"));
}

#[test]
fn dcr_client_is_unverified_whatever_its_name_says() {
    let c = dcr_client(
        "Claude (by Anthropic) - official \u{2714}",
        "https://attacker.example.net/cb",
        json!({}),
    );
    let p = pending_for(&settings(), &c, "https://attacker.example.net/cb", "").presentation;
    match &p.client.identity {
        ClientIdentity::Unverified { client_id } => assert!(client_id.starts_with("client_")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        p.client.name.as_deref(),
        Some("Claude (by Anthropic) - official \u{2714}")
    );
    assert_eq!(p.redirect.host.as_deref(), Some("attacker.example.net"));
}

#[test]
fn cimd_links_are_shown_only_on_the_verified_host() {
    let c = cimd_client(json!({
        "client_uri": "https://app.example.com/",
        "logo_uri": "https://cdn.app.example.com/logo.png",
        "tos_uri": "https://example.com/tos",
        "policy_uri": "https://unrelated.example.org/privacy",
    }));
    let p = pending_for(&settings(), &c, "https://app.example.com/cb", "").presentation;
    let kinds: Vec<LinkKind> = p.client.links.iter().map(|l| l.kind).collect();
    assert_eq!(
        kinds,
        vec![LinkKind::Homepage],
        "off-host terms and privacy are suppressed"
    );
    assert!(p.client.links.iter().all(|l| l.verified));
    let logo = p.client.logo.expect("a logo on a subdomain of the verified host");
    assert!(logo.verified);
    assert_eq!(logo.host, "cdn.app.example.com");
}

#[test]
fn dcr_links_are_kept_but_unverified() {
    let c = dcr_client(
        "Helper",
        "https://helper.example.net/cb",
        json!({
            "client_uri": "https://helper.example.net/",
            "tos_uri": "https://helper.example.net/tos",
            "logo_uri": "https://helper.example.net/logo.png",
        }),
    );
    let p = pending_for(&settings(), &c, "https://helper.example.net/cb", "").presentation;
    assert_eq!(p.client.links.len(), 2);
    assert!(p.client.links.iter().all(|l| !l.verified));
    assert!(!p.client.logo.unwrap().verified);
}

#[test]
fn service_name_defaults_to_the_issuer_host() {
    let c = cimd_client(json!({}));
    let mut s = settings();
    let p = pending_for(&s, &c, "https://app.example.com/cb", "").presentation;
    assert_eq!(p.service.name, "auth.example.com");
    assert_eq!(p.service.logo_uri, None);
    s.display.name = Some("Acme Cloud".into());
    s.display.logo_uri = Some("https://static.acme.example/logo.svg".into());
    let p = pending_for(&s, &c, "https://app.example.com/cb", "").presentation;
    assert_eq!(p.service.name, "Acme Cloud");
    assert_eq!(
        p.service.logo_uri.as_deref(),
        Some("https://static.acme.example/logo.svg")
    );
}

#[test]
fn scopes_are_described_project_first_then_built_in() {
    let c = cimd_client(json!({}));
    let mut s = settings();
    s.display
        .scope_descriptions
        .insert("mcp:read".into(), "Read your Acme projects".into());
    let p = pending_for(
        &s,
        &c,
        "https://app.example.com/cb",
        "&scope=openid%20email%20mcp:read%20mcp:deploy%20offline_access%20nope",
    )
    .presentation;
    let shown: Vec<(&str, Option<&str>)> = p
        .scopes
        .iter()
        .map(|s| (s.scope.as_str(), s.description.as_deref()))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("openid", Some("Confirm who you are with your account identifier")),
            ("email", Some("See your email address")),
            ("mcp:read", Some("Read your Acme projects")),
            ("mcp:deploy", Some("Use the MCP server (deploy)")),
            (
                "offline_access",
                Some("Stay connected when you are not using it, until you revoke access")
            ),
        ]
    );
    assert_eq!(p.dropped_scopes, vec!["nope".to_owned()]);
}

#[test]
fn offline_access_is_shown_only_when_a_refresh_token_will_be_issued() {
    let c = cimd_client(json!({}));
    let mut s = settings();
    s.refresh_token_ttl = time::Duration::ZERO;
    let p = pending_for(&s, &c, "https://app.example.com/cb", "&scope=mcp:read%20offline_access").presentation;
    assert!(p.scopes.iter().all(|e| e.scope != OFFLINE_ACCESS), "{:?}", p.scopes);
}

#[test]
fn resources_are_shown_by_the_project_name() {
    let c = cimd_client(json!({}));
    let mut s = settings();
    s.default_resource = Some(ResourceUri::parse("https://mcp.acme.example/mcp").unwrap());
    s.resources.upsert(
        crate::project::KnownResource::new(ResourceUri::parse("https://mcp.acme.example/mcp").unwrap(), "MCP").unwrap(),
    );
    // A name given in the older display map renames a listed resource
    // once the settings are read or stored.
    s.display
        .resource_names
        .insert("HTTPS://MCP.acme.example/mcp/".into(), "Acme MCP".into());
    s.fold_display_resource_names();
    assert!(s.display.resource_names.is_empty());
    let p = pending_for(&s, &c, "https://app.example.com/cb", "").presentation;
    assert_eq!(p.resources.len(), 1);
    assert_eq!(p.resources[0].uri, "https://mcp.acme.example/mcp");
    assert_eq!(
        p.resources[0].name.as_deref(),
        Some("Acme MCP"),
        "matched in canonical form"
    );
    // A listed resource without a display name is named by the
    // known-resource list.
    s.resources.upsert(
        crate::project::KnownResource::new(ResourceUri::parse("https://crm.acme.example/mcp").unwrap(), "Acme CRM")
            .unwrap(),
    );
    let p = pending_for(
        &s,
        &c,
        "https://app.example.com/cb",
        "&resource=https%3A%2F%2Fcrm.acme.example%2Fmcp",
    )
    .presentation;
    assert_eq!(p.resources[0].name.as_deref(), Some("Acme CRM"));
    // A resource accepted only because the project accepts any has no
    // name: the page shows its URI.
    s.resource_policy = crate::project::ResourcePolicy::Any;
    let p = pending_for(
        &s,
        &c,
        "https://app.example.com/cb",
        "&resource=https%3A%2F%2Fother.example%2Fmcp",
    )
    .presentation;
    assert_eq!(p.resources[0].name, None);
}

#[test]
fn private_use_and_loopback_redirects_are_flagged() {
    let c = dcr_client(
        "Native",
        "cursor://anysphere.cursor-retrieval/oauth/callback",
        json!({}),
    );
    let p = pending_for(
        &settings(),
        &c,
        "cursor://anysphere.cursor-retrieval/oauth/callback",
        "",
    )
    .presentation;
    assert_eq!(p.redirect.app_scheme.as_deref(), Some("cursor"));
    let c = dcr_client("Local", "http://127.0.0.1:5555/cb", json!({}));
    let p = pending_for(&settings(), &c, "http://127.0.0.1:5555/cb", "").presentation;
    assert!(p.redirect.loopback_only);
}

#[test]
fn display_settings_are_validated() {
    let ok = |f: &dyn Fn(&mut ProjectDisplay)| {
        let mut d = ProjectDisplay::default();
        f(&mut d);
        d.validate()
    };
    assert_eq!(ok(&|_| {}), Ok(()));
    assert_eq!(ok(&|d| d.name = Some("Acme Cloud \u{2714}".into())), Ok(()));
    assert_eq!(ok(&|d| d.name = Some(" ".into())), Err(DisplaySettingsError::Name));
    assert_eq!(
        ok(&|d| d.name = Some("Acme\u{202E}duolC".into())),
        Err(DisplaySettingsError::Name)
    );
    assert_eq!(ok(&|d| d.name = Some("x".repeat(81))), Err(DisplaySettingsError::Name));
    assert_eq!(
        ok(&|d| d.logo_uri = Some("http://acme.example/logo.png".into())),
        Err(DisplaySettingsError::LogoUri)
    );
    assert_eq!(
        ok(&|d| d.logo_uri = Some("javascript:alert(1)".into())),
        Err(DisplaySettingsError::LogoUri)
    );
    assert_eq!(
        ok(&|d| {
            d.scope_descriptions.insert("bad scope".into(), "x".into());
        }),
        Err(DisplaySettingsError::ScopeKey("bad scope".into()))
    );
    assert!(matches!(
        ok(&|d| {
            d.scope_descriptions.insert("mcp:read".into(), "Read\u{200B}".into());
        }),
        Err(DisplaySettingsError::Text { .. })
    ));
    assert_eq!(
        ok(&|d| {
            d.resource_names.insert("not a uri".into(), "x".into());
        }),
        Err(DisplaySettingsError::ResourceKey("not a uri".into()))
    );
    assert_eq!(
        ok(&|d| {
            for i in 0..=MAX_DISPLAY_ENTRIES {
                d.scope_descriptions.insert(format!("s{i}"), "x".into());
            }
        }),
        Err(DisplaySettingsError::TooMany("scope_descriptions"))
    );
    // Settings refuse them too.
    let mut s = ProjectSettings::default();
    s.display.name = Some(String::new());
    assert!(matches!(
        s.validate(),
        Err(crate::project::SettingsError::Display(DisplaySettingsError::Name))
    ));
}

#[test]
fn settings_without_display_read_back_with_defaults() {
    let mut v = serde_json::to_value(ProjectSettings::default()).unwrap();
    v.as_object_mut().unwrap().remove("display");
    let s: ProjectSettings = serde_json::from_value(v).unwrap();
    assert_eq!(s.display, ProjectDisplay::default());
    // And a pending authorization stored before the presentation existed.
    let c = cimd_client(json!({}));
    let pending = pending_for(&settings(), &c, "https://app.example.com/cb", "");
    let mut v = serde_json::to_value(&pending).unwrap();
    v.as_object_mut().unwrap().remove("presentation");
    let back: PendingAuthorization = serde_json::from_value(v).unwrap();
    assert_eq!(back.presentation, ConsentPresentation::default());
}

#[test]
fn subdomain_rule() {
    assert!(same_or_subdomain("app.example.com", "app.example.com"));
    assert!(same_or_subdomain("CDN.app.example.com", "app.example.com"));
    assert!(
        !same_or_subdomain("example.com", "app.example.com"),
        "a parent is not verified"
    );
    assert!(!same_or_subdomain("evilapp.example.com", "app.example.com"));
    assert!(!same_or_subdomain("1.2.3.4", "2.3.4"));
}
