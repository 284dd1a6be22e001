//! Differential property tests: every URL the server accepts is compared
//! with what a browser does with it (the WHATWG URL Standard, as the `url`
//! crate implements it). For generated and mutated redirect URIs, CIMD
//! `client_id` URLs and resources, whatever the server would redirect to,
//! fetch or put in an audience has, per the WHATWG parse, exactly the
//! scheme, host and path (and query) it was matched on (SPEC-CHECKLIST
//! section 9, RFC 9700 section 4.1).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use authio_mcp::cimd::{ClientIdUrl, ClientIdUrlPolicy};
use authio_mcp::redirect_uri::{RedirectUri, RedirectUriPolicy};
use authio_mcp::resource::ResourceUri;
use proptest::prelude::*;
use url::Url;

/// Registered redirect URIs of the shapes real clients use.
const REGISTERED: &[&str] = &[
    "http://[::1]:33418/callback",
    "http://127.0.0.1:33418/callback",
    "http://127.0.0.1/callback",
    "http://localhost:6274/oauth/callback",
    "http://localhost/cb?x=1",
    "https://claude.ai/api/mcp/auth_callback",
    "https://app.example.com/cb",
    "https://app.example.com:8443/a/b?tenant=1",
    "https://chatgpt.com/connector_platform_oauth_redirect",
];

/// Pieces an attacker splices into a URL: delimiters in every spelling,
/// other hosts, IPv6 forms with zones and embedded IPv4, encoded dots and
/// slashes, whitespace a browser strips, default ports.
const HOSTILE: &[&str] = &[
    "@",
    "@evil.example",
    ":",
    ":8443",
    ":0",
    ":99999",
    ":80",
    ":443",
    "#",
    "#@evil.example",
    "\\",
    "\\@evil.example",
    "/",
    "//",
    "//evil.example",
    "?",
    "?@evil.example",
    "%40",
    "%2f",
    "%2F",
    "%5c",
    "%2e",
    "%2e%2e",
    "%2E.",
    ".",
    "..",
    "/..",
    "/./",
    "%00",
    "%0a",
    "\t",
    "\n",
    "\r",
    " ",
    "evil.example",
    "EVIL.example",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::1%25eth0]",
    "[0:0:0:0:0:0:0:1]",
    "[::127.0.0.1]",
    "127.0.0.1",
    "0x7f.1",
    "2130706433",
    "localhost",
    "LOCALHOST",
    "localhost.",
    "xn--",
    "\u{202e}",
    "\u{ff0e}",
    "\u{3002}",
    "%E3%80%82",
    "\u{0}",
    "https:",
    "http:",
    "HTTP://",
    "user:pw@",
    ";",
    ",",
    "&",
    "=",
    "+",
    "~",
    "*",
    "'",
    "\"",
    "<",
    ">",
];

fn hostile() -> impl Strategy<Value = String> {
    prop::sample::select(HOSTILE).prop_map(str::to_owned)
}

/// A registered URI with hostile pieces inserted at arbitrary positions
/// (and occasionally a span removed).
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec((any::<prop::sample::Index>(), hostile(), any::<bool>()), 1..4).prop_map(move |edits| {
        let mut s = base.to_owned();
        for (at, piece, remove) in edits {
            let bounds: Vec<usize> = (0..=s.len()).filter(|i| s.is_char_boundary(*i)).collect();
            let i = bounds[at.index(bounds.len())];
            if remove && i < s.len() {
                let end = bounds.iter().copied().find(|j| *j > i).unwrap_or(s.len());
                s.replace_range(i..end, &piece);
            } else {
                s.insert_str(i, &piece);
            }
        }
        s
    })
}

/// What a browser navigates to: scheme, host, effective port, path, query.
type BrowserTarget = (String, String, Option<u16>, String, Option<String>);

fn browser_target(s: &str) -> Option<BrowserTarget> {
    let u = Url::parse(s).ok()?;
    Some((
        u.scheme().to_owned(),
        u.host_str()?.to_owned(),
        u.port_or_known_default(),
        u.path().to_owned(),
        u.query().map(str::to_owned),
    ))
}

fn check_redirect(registered: &str, requested: &str) -> Result<(), TestCaseError> {
    let policy = RedirectUriPolicy::with_private_use_schemes();
    let reg = RedirectUri::parse_with(registered, policy).unwrap();
    if !reg.matches(requested) {
        return Ok(());
    }
    let want = browser_target(registered).unwrap();
    let got = browser_target(requested);
    prop_assert!(
        got.is_some(),
        "{requested:?} matched {registered:?} but a browser cannot parse it"
    );
    let got = got.unwrap();
    prop_assert_eq!(&got.0, &want.0, "scheme of {:?}", requested);
    prop_assert_eq!(&got.1, &want.1, "host of {:?}", requested);
    prop_assert_eq!(&got.3, &want.3, "path of {:?}", requested);
    prop_assert_eq!(&got.4, &want.4, "query of {:?}", requested);
    if got.2 != want.2 {
        prop_assert!(
            reg.is_loopback(),
            "port differs for a non-loopback URI: {:?}",
            requested
        );
        prop_assert_eq!(got.0.as_str(), "http");
    }
    // The registered URI and the requested one leave no userinfo for a
    // browser to reinterpret.
    let parsed = Url::parse(requested).unwrap();
    prop_assert!(parsed.username().is_empty() && parsed.password().is_none());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn redirect_matches_only_what_a_browser_reads_the_same(
        (registered, requested) in prop::sample::select(REGISTERED).prop_flat_map(|r| (Just(r), mutated(r)))
    ) {
        check_redirect(registered, &requested)?;
    }

    #[test]
    fn a_registered_uri_is_read_by_a_browser_as_written(raw in prop::sample::select(REGISTERED).prop_flat_map(mutated)) {
        // Whatever registration accepts, a browser reads with the same host
        // and no userinfo, and the host shown on the consent page is it.
        if let Ok(r) = RedirectUri::parse(raw.clone()) {
            let u = Url::parse(&raw).unwrap();
            prop_assert!(u.username().is_empty() && u.password().is_none(), "{raw:?}");
            prop_assert_eq!(r.host(), u.host_str().map(str::to_owned), "{:?}", raw);
            prop_assert!(r.matches(&raw));
            if u.scheme() == "http" {
                prop_assert!(matches!(u.host_str(), Some("127.0.0.1" | "[::1]" | "localhost")), "{raw:?}");
            }
        }
    }

    #[test]
    fn client_id_url_host_is_the_host_fetched(
        raw in prop::sample::select(&[
            "https://claude.ai/oauth/mcp-oauth-client-metadata",
            "https://client.example.com:8443/cimd.json",
            "https://[2001:db8::1]/client.json",
            "https://vscode.dev/oauth/client-metadata.json",
        ][..]).prop_flat_map(mutated)
    ) {
        let mut policy = ClientIdUrlPolicy::default();
        policy.allow_root_path = true;
        policy.allow_query = true;
        if let Ok(id) = ClientIdUrl::parse_with(raw.clone(), policy) {
            let browser = Url::parse(&raw).unwrap();
            let fetched = id.url();
            prop_assert_eq!(fetched, &browser, "{:?}", raw);
            prop_assert_eq!(fetched.host_str(), browser.host_str(), "{:?}", raw);
            prop_assert_eq!(id.host(), browser.host_str().unwrap());
            prop_assert_eq!(fetched.port_or_known_default(), browser.port_or_known_default());
            prop_assert!(browser.username().is_empty() && browser.password().is_none(), "{raw:?}");
            prop_assert_eq!(browser.scheme(), "https");
            // The path fetched is the path written (no dot segments the
            // parser would have removed).
            let parsed_path = &browser[url::Position::BeforePath..];
            prop_assert!(raw.ends_with(parsed_path), "{raw:?} is fetched as {parsed_path:?}");
        }
    }

    #[test]
    fn resource_audience_names_the_host_a_client_connects_to(
        raw in prop::sample::select(&[
            "https://mcp.example.com/mcp",
            "https://mcp.example.com:8443/mcp/",
            "http://127.0.0.1:8090/mcp",
            "https://api.example.com/v1?tenant=a",
        ][..]).prop_flat_map(mutated)
    ) {
        if let Ok(r) = ResourceUri::parse(raw.clone()) {
            let browser = Url::parse(&raw).unwrap();
            let canonical = Url::parse(r.canonical()).unwrap();
            prop_assert_eq!(canonical.host_str(), browser.host_str(), "{:?}", raw);
            prop_assert_eq!(canonical.port_or_known_default(), browser.port_or_known_default());
            prop_assert_eq!(canonical.scheme(), browser.scheme());
            prop_assert_eq!(canonical.query(), browser.query());
            prop_assert_eq!(canonical.path().trim_end_matches('/'), browser.path().trim_end_matches('/'));
            prop_assert!(browser.username().is_empty() && browser.password().is_none(), "{raw:?}");
        }
    }
}

/// The hostile corpus spliced in at every position of every registered
/// URI, exhaustively (single edits), on top of the random multi-edit runs.
#[test]
fn every_single_splice_is_judged_like_a_browser() {
    let mut matched = 0;
    for registered in REGISTERED {
        let bounds: Vec<usize> = (0..=registered.len()).collect();
        for &i in &bounds {
            for piece in HOSTILE {
                let mut requested = (*registered).to_owned();
                requested.insert_str(i, piece);
                check_redirect(registered, &requested).unwrap();
                if RedirectUri::parse(*registered).unwrap().matches(&requested) {
                    matched += 1;
                }
            }
        }
    }
    // Some splices are legitimate port changes on loopback URIs.
    assert!(matched > 0);
}
