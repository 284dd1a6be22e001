#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::json;

use super::*;
use crate::presentation::tests::{cimd_client, dcr_client, pending_for, settings};

fn consent_html(pending: &PendingAuthorization) -> String {
    let view = ConsentView::new(pending, "/consent")
        .hidden_field("request_id", "rid")
        .hidden_field("csrf", "tok\"en")
        .user(ConsentUser::LoginField {
            name: "username".into(),
            label: "User name".into(),
            value: "<alice>".into(),
        });
    DefaultPages.consent(&view).into_string()
}

fn pos(html: &str, needle: &str) -> usize {
    html.find(needle).unwrap_or_else(|| panic!("{needle} not in {html}"))
}

/// The text inside the element with `id` (up to its closing tag).
fn text_of<'a>(html: &'a str, id: &str) -> &'a str {
    let start = pos(html, &format!("id=\"{id}\""));
    let open_end = start + html[start..].find('>').unwrap() + 1;
    let close = open_end + html[open_end..].find("</").unwrap();
    &html[open_end..close]
}

#[test]
fn everything_from_clients_and_settings_is_escaped() {
    let c = dcr_client(
        "<script>alert('x')</script> & co",
        "https://app.example.net/cb",
        json!({}),
    );
    let mut s = settings();
    s.display.name = Some("Acme \"Cloud\" <b>".into());
    s.display
        .scope_descriptions
        .insert("mcp:read".into(), "Read <img src=x onerror=alert(1)>".into());
    let pending = pending_for(&s, &c, "https://app.example.net/cb", "&scope=mcp:read");
    let html = consent_html(&pending);
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(!html.contains("<b>"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"));
    assert!(html.contains("Acme &quot;Cloud&quot; &lt;b&gt;"));
    assert!(
        html.contains("value=\"tok&quot;en\""),
        "hidden values are attribute-escaped"
    );
    assert!(html.contains("value=\"&lt;alice&gt;\""));
}

#[test]
fn the_verified_host_comes_before_the_claimed_name() {
    let c = cimd_client(json!({}));
    let pending = pending_for(&settings(), &c, "https://app.example.com/cb", "");
    let html = consent_html(&pending);
    assert_eq!(text_of(&html, "client-host"), "app.example.com");
    assert_eq!(text_of(&html, "client-name"), "Example App");
    assert_eq!(text_of(&html, "verified-badge"), "Verified domain");
    assert!(pos(&html, "id=\"client-host\"") < pos(&html, "id=\"client-name\""));
    assert!(!html.contains("unverified-name"));
    // The service is the title and the headline.
    assert!(html.contains("<title>Sign in to auth.example.com</title>"));
    assert_eq!(text_of(&html, "service-name"), "auth.example.com");
    assert!(pos(&html, "id=\"service-name\"") < pos(&html, "id=\"client-host\""));
    assert_eq!(text_of(&html, "redirect-host"), "app.example.com");
}

#[test]
fn a_dcr_name_is_marked_unverified_and_the_redirect_host_leads() {
    let c = dcr_client(
        "Claude (by Anthropic) - official \u{2714}",
        "https://attacker.example.net/cb",
        json!({}),
    );
    let pending = pending_for(&settings(), &c, "https://attacker.example.net/cb", "");
    let html = consent_html(&pending);
    assert_eq!(text_of(&html, "unverified-name"), "Unverified name");
    assert_eq!(text_of(&html, "redirect-host"), "attacker.example.net");
    assert!(pos(&html, "id=\"redirect-host\"") < pos(&html, "id=\"client-name\""));
    assert!(
        !html.contains("id=\"client-host\""),
        "no verified host for a DCR client"
    );
    assert!(!html.contains("Verified domain"));
    // The claimed name is never the headline.
    let h1 = &html[pos(&html, "<h1")..pos(&html, "</h1>")];
    assert!(!h1.contains("Claude"), "{h1}");
    assert!(!html[..pos(&html, "</title>")].contains("Claude"));
}

#[test]
fn off_host_links_are_not_rendered_and_dcr_links_say_unverified() {
    let c = cimd_client(json!({
        "client_uri": "https://app.example.com/",
        "logo_uri": "https://evil.example.org/logo.png",
        "tos_uri": "https://evil.example.org/tos",
    }));
    let pending = pending_for(&settings(), &c, "https://app.example.com/cb", "");
    let html = consent_html(&pending);
    assert!(html.contains("href=\"https://app.example.com/\""));
    assert!(!html.contains("evil.example.org"), "{html}");
    assert!(!html.contains("<img"), "no off-host logo");

    let c = dcr_client(
        "Helper",
        "https://helper.example.net/cb",
        json!({"tos_uri": "https://helper.example.net/tos", "logo_uri": "https://helper.example.net/l.png"}),
    );
    let pending = pending_for(&settings(), &c, "https://helper.example.net/cb", "");
    let html = consent_html(&pending);
    let links = &html[pos(&html, "id=\"client-links\"")..];
    let links = &links[..links.find("</ul>").unwrap()];
    assert!(links.contains("Terms of service"));
    assert!(links.contains(">unverified<"), "{links}");
    assert!(!html.contains("<img"), "the built-in page shows no unverified logo");
}

#[test]
fn a_verified_logo_is_shown_and_allowed_by_the_csp() {
    let c = cimd_client(json!({"logo_uri": "https://cdn.app.example.com/logo.png"}));
    let mut s = settings();
    s.display.logo_uri = Some("https://static.acme.example/logo.svg".into());
    let pending = pending_for(&s, &c, "https://app.example.com/cb", "");
    let view = ConsentView::new(&pending, "/consent");
    let r = render_consent(&DefaultPages, &view);
    let html = String::from_utf8(r.body().clone()).unwrap();
    assert!(html.contains("src=\"https://cdn.app.example.com/logo.png\""));
    assert!(html.contains("src=\"https://static.acme.example/logo.svg\""));
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("img-src https://static.acme.example https://cdn.app.example.com;"),
        "{csp}"
    );
}

#[test]
fn consent_csp_allows_forms_only_to_self_and_the_redirect_origin() {
    let c = dcr_client("Local", "http://127.0.0.1:5555/cb", json!({}));
    let pending = pending_for(&settings(), &c, "http://127.0.0.1:5555/cb", "");
    let view = ConsentView::new(&pending, "/consent");
    let r = render_consent(&DefaultPages, &view);
    assert_eq!(r.status(), 200);
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("form-action 'self' http://127.0.0.1:5555;"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(!csp.contains("img-src"), "no logo, no image source: {csp}");
    assert!(!csp.contains("script-src"));
    // The inline stylesheet is allowed by its hash, and only it.
    let html = String::from_utf8(r.body().clone()).unwrap();
    let style = &html[pos(&html, "<style>") + 7..pos(&html, "</style>")];
    let hash = STANDARD.encode(Sha256::digest(style.as_bytes()));
    assert!(csp.contains(&format!("style-src 'sha256-{hash}'")), "{csp}");
    assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(r.headers()[header::REFERRER_POLICY], "no-referrer");

    let c = dcr_client(
        "Native",
        "cursor://anysphere.cursor-retrieval/oauth/callback",
        json!({}),
    );
    let pending = pending_for(
        &settings(),
        &c,
        "cursor://anysphere.cursor-retrieval/oauth/callback",
        "",
    );
    let r = render_consent(&DefaultPages, &ConsentView::new(&pending, "/consent"));
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("form-action 'self' cursor:;"), "{csp}");
    let html = String::from_utf8(r.body().clone()).unwrap();
    assert!(html.contains("id=\"app-scheme-warning\""));
    assert!(
        text_of(&html, "app-scheme-warning").contains("<strong>cursor:</strong>")
            || html.contains("<strong>cursor:</strong>")
    );
}

#[test]
fn the_page_is_responsive_accessible_and_allow_is_primary() {
    let c = cimd_client(json!({}));
    let pending = pending_for(&settings(), &c, "https://app.example.com/cb", "&scope=mcp:read%20email");
    let html = consent_html(&pending);
    assert!(html.starts_with("<!doctype html><html lang=\"en\">"));
    assert!(html.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"));
    assert!(html.contains("<label for=\"username\">User name</label>"));
    assert!(html.contains("aria-labelledby=\"scopes-title\""));
    let approve = &html[pos(&html, "id=\"approve\"") - 30..pos(&html, "id=\"approve\"") + 80];
    assert!(approve.contains("class=\"primary\""), "{approve}");
    let deny = &html[pos(&html, "id=\"deny\"")..pos(&html, "id=\"deny\"") + 80];
    assert!(deny.contains("class=\"secondary\""), "{deny}");
    assert!(
        pos(&html, "id=\"approve\"") < pos(&html, "id=\"deny\""),
        "Allow first (Enter submits it)"
    );
    assert!(html.contains("name=\"action\" value=\"approve\""));
    assert!(html.contains("name=\"action\" value=\"deny\""));
    assert!(html.contains("<form method=\"post\" action=\"/consent\">"));
    // Scope descriptions, then the raw scope.
    assert!(
        html.contains(
            "<li><span class=\"desc\">Read your data through the MCP server</span><code>mcp:read</code></li>"
        )
    );
    assert!(html.contains("See your email address"));
}

#[test]
fn a_signed_in_user_is_named_without_a_login_field() {
    let c = cimd_client(json!({}));
    let pending = pending_for(&settings(), &c, "https://app.example.com/cb", "");
    let view = ConsentView::new(&pending, "/consent").user(ConsentUser::SignedIn {
        display: "alice@example.com".into(),
    });
    let html = DefaultPages.consent(&view).into_string();
    assert_eq!(text_of(&html, "signed-in-as"), "alice@example.com");
    assert!(!html.contains("id=\"username\""));
}

#[test]
fn hidden_values_stay_out_of_debug() {
    let c = cimd_client(json!({}));
    let pending = pending_for(&settings(), &c, "https://app.example.com/cb", "");
    let view = ConsentView::new(&pending, "/consent").hidden_field("csrf", "very-secret-token");
    assert!(!format!("{view:?}").contains("very-secret-token"));
    assert_eq!(view.hidden_fields().next(), Some(("csrf", "very-secret-token")));
}

#[test]
fn error_kinds_say_whose_fault_it_is() {
    use crate::authorize::ClientRequestError;
    let table = [
        (
            ClientRequestError::UnknownClient.to_oauth_error(),
            ErrorKind::ClientMisconfigured,
        ),
        (
            ClientRequestError::RedirectUriMismatch.to_oauth_error(),
            ErrorKind::ClientMisconfigured,
        ),
        (
            ClientRequestError::ClientMetadataUnavailable {
                reason: "http_status".into(),
            }
            .to_oauth_error(),
            ErrorKind::ClientMisconfigured,
        ),
        (OAuthError::unknown_project(), ErrorKind::UnknownService),
        (OAuthError::server_error(), ErrorKind::ServerTrouble),
        (OAuthError::new(ErrorCode::TemporarilyUnavailable), ErrorKind::Busy),
        (
            OAuthError::with_description(ErrorCode::AccessDenied, "form expired").with_status(StatusCode::FORBIDDEN),
            ErrorKind::StartAgain,
        ),
        (OAuthError::new(ErrorCode::InvalidGrant), ErrorKind::StartAgain),
    ];
    for (e, kind) in table {
        assert_eq!(ErrorKind::of(&e), kind, "{e}");
    }
    // Every kind has its own words.
    let kinds = [
        ErrorKind::ClientMisconfigured,
        ErrorKind::StartAgain,
        ErrorKind::UnknownService,
        ErrorKind::ServerTrouble,
        ErrorKind::Busy,
    ];
    for a in kinds {
        for b in kinds {
            if a != b {
                assert_ne!(a.headline(), b.headline());
                assert_ne!(a.next_step(), b.next_step());
            }
        }
    }
}

#[test]
fn error_pages_show_the_kind_the_detail_and_the_request_id_and_no_way_back() {
    let e = crate::authorize::ClientRequestError::RedirectUriMismatch.to_oauth_error();
    let mut headers = HeaderMap::new();
    headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("9f2c41d07a5b33e8"));
    let view = ErrorView::new(&e).with_request_id(request_id(&headers));
    let r = render_error(&DefaultPages, &view);
    assert_eq!(r.status(), 400);
    let html = String::from_utf8(r.body().clone()).unwrap();
    assert_eq!(text_of(&html, "error-kind"), "Problem with the app");
    assert_eq!(text_of(&html, "error-title"), ErrorKind::ClientMisconfigured.headline());
    assert_eq!(text_of(&html, "error-code"), "invalid_request");
    assert_eq!(
        text_of(&html, "error-description"),
        "redirect_uri does not match any registered redirect URI"
    );
    assert_eq!(text_of(&html, "request-id"), "9f2c41d07a5b33e8");
    assert!(html.contains("<meta name=\"viewport\""));
    assert!(!html.contains("<a "), "no link anywhere, least of all to the client");
    assert!(!html.contains("http-equiv"), "no meta refresh");
    assert!(!html.contains("<form"));
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("form-action 'none'") && csp.starts_with("default-src 'none'"),
        "{csp}"
    );
    assert!(r.headers().get(header::LOCATION).is_none());

    let html = DefaultPages
        .error(&ErrorView::new(&OAuthError::with_description(
            ErrorCode::InvalidRequest,
            "<script>",
        )))
        .into_string();
    assert!(!html.contains("<script>"));
    assert!(!html.contains("request-id"), "no id, no line");
}

#[test]
fn request_ids_are_shown_only_when_well_formed() {
    let id = |v: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static(v));
        request_id(&h).map(str::to_owned)
    };
    assert_eq!(id("9f2c41d07a5b33e8").as_deref(), Some("9f2c41d07a5b33e8"));
    assert_eq!(id("req-1.2_3:4").as_deref(), Some("req-1.2_3:4"));
    assert_eq!(id("<script>"), None);
    assert_eq!(id("a b"), None);
    assert_eq!(id(""), None);
    let long: &'static str = Box::leak("a".repeat(65).into_boxed_str());
    assert_eq!(id(long), None);
    let mut two = HeaderMap::new();
    two.append(REQUEST_ID_HEADER, HeaderValue::from_static("a"));
    two.append(REQUEST_ID_HEADER, HeaderValue::from_static("b"));
    assert_eq!(request_id(&two), None, "ambiguous");
    assert_eq!(
        ErrorView::new(&OAuthError::server_error())
            .with_request_id(Some("x y"))
            .request_id,
        None
    );
}

#[test]
fn a_themed_renderer_is_used_as_is() {
    struct Plain;
    impl PageRenderer for Plain {
        fn consent(&self, view: &ConsentView<'_>) -> Html {
            Html::new(format!("<p>{}</p>", escape_html(&view.presentation().service.name)))
        }
        fn error(&self, view: &ErrorView) -> Html {
            Html::new(format!("<p>{}</p>", view.kind.headline()))
        }
    }
    let r = render_error(&Plain, &ErrorView::new(&OAuthError::server_error()));
    assert_eq!(r.body(), b"<p>Something went wrong on our side</p>");
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(!csp.contains("style-src"), "no declared style, none allowed: {csp}");
}

#[test]
fn a_loopback_only_client_gets_the_extra_warning_and_others_do_not() {
    let c = dcr_client("Local tool", "http://127.0.0.1:33418/callback", json!({}));
    let pending = pending_for(&settings(), &c, "http://127.0.0.1:33418/callback", "");
    let html = consent_html(&pending);
    assert!(text_of(&html, "loopback-warning").contains("Warning"), "{html}");
    let c = dcr_client("Web app", "https://app.example.net/cb", json!({}));
    let pending = pending_for(&settings(), &c, "https://app.example.net/cb", "");
    assert!(!consent_html(&pending).contains("loopback-warning"));
}
