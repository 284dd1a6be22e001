//! URLs judged the way a browser reads them.
//!
//! Every `http`/`https` URL the server redirects to, fetches or compares
//! (redirect URIs, CIMD `client_id` URLs, `resource` indicators, issuers)
//! goes through [`check`] first. It parses the string with the WHATWG URL
//! Standard (the `url` crate implements it, as browsers do) and then
//! insists that the string as written already *is* what the parser
//! produced: the same scheme, no userinfo, the same host and port, the same
//! path and query. Anything a browser would rewrite (percent-encoded or
//! numeric hosts, `%2e` segments, backslashes, characters it would
//! percent-encode) is refused instead of being compared in a form the
//! browser will not use. The only differences tolerated are the ones that
//! cannot change where a browser goes: ASCII case in the host (when the
//! caller allows it), an explicit default port, and a missing `/` path.
//!
//! This is the decision SPEC-CHECKLIST section 9 asks for ([RFC 9700
//! section 4.1]): once a string passes, the host a browser visits is the
//! host [`WebUrl::url`] names, and callers compare parsed parts (host,
//! port, path, query) instead of slicing the string by hand.
//!
//! [RFC 9700 section 4.1]: https://www.rfc-editor.org/rfc/rfc9700#section-4.1

use url::{Host, Position, Url};

/// Why a string is not a browser-stable `http`/`https` URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WebUrlError {
    /// Whitespace, control characters, a backslash or non-ASCII.
    BadCharacter,
    /// Not parseable as an absolute URL, or not `scheme://host`.
    NotAbsolute,
    /// A scheme other than `http`/`https`.
    UnsupportedScheme,
    /// `http`/`https` not written as `scheme://` in lower case.
    Scheme,
    /// A fragment.
    Fragment,
    /// Credentials in the authority.
    Userinfo,
    /// Host, port, path or query differ between the string as written and
    /// what a browser will use (percent-encoding, dot segments, numeric or
    /// internationalised hosts written in another form, port 0, ...).
    NotCanonical,
}

/// A string that passed [`check`], with its parse.
#[derive(Clone, Debug)]
pub(crate) struct WebUrl {
    url: Url,
    /// Byte offset in the raw string where the path (or query) starts.
    path_start: usize,
}

impl WebUrl {
    /// The WHATWG parse: what a browser will use.
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// The parsed host (`None` never happens for a checked URL, but the
    /// type says what the parser says).
    pub(crate) fn host(&self) -> Option<Host<&str>> {
        self.url.host()
    }

    /// The byte offset in the raw string where the path (or query) starts:
    /// `raw[..path_start]` is `scheme://host[:port]`, `raw[path_start..]`
    /// is the path and query exactly as written (and as the browser uses
    /// them, but for a missing `/`).
    pub(crate) fn path_start(&self) -> usize {
        self.path_start
    }
}

/// Checks `raw` as an absolute `http`/`https` URL that a browser reads as
/// written. `case_insensitive` tolerates ASCII upper case in the scheme and
/// host (the browser lowercases both); otherwise they must be written in
/// the parser's form too.
///
/// # Errors
/// The first broken rule, as a [`WebUrlError`].
pub(crate) fn check(raw: &str, case_insensitive: bool) -> Result<WebUrl, WebUrlError> {
    if raw.bytes().any(|b| !b.is_ascii_graphic() || b == b'\\') {
        return Err(WebUrlError::BadCharacter);
    }
    if raw.contains('#') {
        return Err(WebUrlError::Fragment);
    }
    let url = Url::parse(raw).map_err(|_| WebUrlError::NotAbsolute)?;
    let scheme = url.scheme();
    if scheme != "https" && scheme != "http" {
        return Err(WebUrlError::UnsupportedScheme);
    }
    // The parser lowercases the scheme and repairs `https:host` or
    // `https:/host`; the string must already be `scheme://`.
    let written_scheme = raw.get(..scheme.len()).unwrap_or_default();
    let scheme_ok = if case_insensitive {
        written_scheme.eq_ignore_ascii_case(scheme)
    } else {
        written_scheme == scheme
    };
    if !scheme_ok || raw.get(scheme.len()..scheme.len() + 3) != Some("://") {
        return Err(WebUrlError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebUrlError::Userinfo);
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(WebUrlError::NotAbsolute);
    }
    if url.port() == Some(0) {
        return Err(WebUrlError::NotCanonical);
    }
    // Empty labels (`a..b`, `.a`, `a..`) are names no resolver agrees on
    // and slip past host lists; one trailing dot (the root) is allowed.
    if let Some(Host::Domain(d)) = url.host() {
        let d = d.strip_suffix('.').unwrap_or(d);
        if d.is_empty() || d.split('.').any(str::is_empty) {
            return Err(WebUrlError::NotCanonical);
        }
    }
    // `scheme://host[:port]` as the browser serializes it. The raw string
    // must start with exactly that (an `@` anywhere in the raw authority
    // would have made userinfo or a different host, and a `%`, a numeric
    // IPv4 spelling, an IDN in Unicode or a trailing-dot IPv4 all come out
    // differently), optionally followed by the explicit default port.
    let origin = &url[..Position::AfterPort];
    let written = raw.get(..origin.len()).ok_or(WebUrlError::NotCanonical)?;
    let same_origin = if case_insensitive {
        written.eq_ignore_ascii_case(origin)
    } else {
        written == origin
    };
    if !same_origin {
        return Err(WebUrlError::NotCanonical);
    }
    let mut path_start = origin.len();
    let after = raw.get(path_start..).unwrap_or_default();
    if url.port().is_none()
        && let Some(default) = url.port_or_known_default()
        && let Some(rest) = after.strip_prefix(':')
        && rest
            .strip_prefix(default.to_string().as_str())
            .is_some_and(|r| r.is_empty() || r.starts_with(['/', '?']))
    {
        path_start += 1 + decimal_len(default);
    }
    // Path and query exactly as the browser will request them (no dot
    // segments, nothing it would percent-encode); a missing `/` is the
    // only tolerated difference.
    let written = raw.get(path_start..).unwrap_or_default();
    let parsed = &url[Position::BeforePath..];
    let same_rest = written == parsed || (!written.starts_with('/') && parsed.strip_prefix('/') == Some(written));
    if !same_rest {
        return Err(WebUrlError::NotCanonical);
    }
    Ok(WebUrl { url, path_start })
}

/// Whether a parsed host is a loopback literal or `localhost`, the hosts on
/// which [RFC 8252 section 7.3] lets the port vary (`127.0.0.1` and `::1`
/// exactly; `localhost` as MCP clients register it).
///
/// [RFC 8252 section 7.3]: https://www.rfc-editor.org/rfc/rfc8252#section-7.3
pub(crate) fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => ip.octets() == [127, 0, 0, 1],
        Host::Ipv6(ip) => ip.is_loopback(),
        Host::Domain(d) => *d == "localhost",
    }
}

fn decimal_len(n: u16) -> usize {
    match n {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_browser_stable_forms() {
        for (raw, host, start) in [
            ("https://example.com/cb", "example.com", 19),
            ("https://example.com", "example.com", 19),
            ("https://example.com?x=1", "example.com", 19),
            ("https://example.com:443/cb", "example.com", 23),
            ("https://example.com:8443/cb", "example.com", 24),
            ("http://[::1]:33418/callback", "[::1]", 18),
            ("http://127.0.0.1/cb", "127.0.0.1", 16),
            ("https://Example.COM/cb", "example.com", 19),
        ] {
            let u = check(raw, true).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
            assert_eq!(u.url().host_str(), Some(host), "{raw}");
            assert_eq!(u.path_start(), start, "{raw}");
        }
    }

    #[test]
    fn refuses_what_a_browser_reads_differently() {
        use WebUrlError::*;
        for (raw, err) in [
            ("http://[::1]@evil.example/callback", Userinfo),
            ("http://[::1]:8443@evil.example/callback", Userinfo),
            ("http://127.0.0.1:1@evil.com/cb", Userinfo),
            ("https://user@example.com/cb", Userinfo),
            ("https://:@example.com/cb", NotCanonical),
            ("https://example.com\\@evil.com/cb", BadCharacter),
            ("https://example.com/c b", BadCharacter),
            ("https://exa\tmple.com/cb", BadCharacter),
            ("https://bücher.example/cb", BadCharacter),
            ("https://example.com/cb#x", Fragment),
            ("https://ex%61mple.com/cb", NotCanonical),
            ("https://evil.com%2f@good.com/", Userinfo),
            ("https://evil.com%2f.good.com/", NotAbsolute),
            ("https://good.com%2eevil.com/", NotCanonical),
            ("http://0x7f.0.0.1/cb", NotCanonical),
            ("http://2130706433/cb", NotCanonical),
            ("http://127.1/cb", NotCanonical),
            ("http://127.0.0.1./cb", NotCanonical),
            ("http://[0:0:0:0:0:0:0:1]/cb", NotCanonical),
            ("http://[::1%25eth0]/cb", NotAbsolute),
            ("https://example.com/a/../cb", NotCanonical),
            ("https://example.com/a/%2e%2e/cb", NotCanonical),
            ("https://example.com/./cb", NotCanonical),
            ("https://example.com/{x}", NotCanonical),
            ("https://example.com:0/cb", NotCanonical),
            ("https://evil.example../cb", NotCanonical),
            ("https://a..evil.example/cb", NotCanonical),
            ("https://.evil.example/cb", NotCanonical),
            ("https://example.com:00443/cb", NotCanonical),
            ("https:example.com/cb", Scheme),
            ("https:/example.com/cb", Scheme),
            ("https:///example.com/cb", NotCanonical),
            ("ftp://example.com/cb", UnsupportedScheme),
            ("/cb", NotAbsolute),
            ("", NotAbsolute),
        ] {
            assert_eq!(check(raw, true).map(|_| ()), Err(err), "{raw}");
        }
        assert_eq!(check("https://Example.com/cb", false).map(|_| ()), Err(NotCanonical));
        assert_eq!(check("HTTPS://example.com/cb", false).map(|_| ()), Err(Scheme));
        assert!(check("HTTPS://Example.com/cb", true).is_ok());
    }

    #[test]
    fn loopback_hosts() {
        let host = |raw: &str| check(raw, false).map(|u| is_loopback_host(&u.host().unwrap()));
        assert_eq!(host("http://127.0.0.1/"), Ok(true));
        assert_eq!(host("http://[::1]/"), Ok(true));
        assert_eq!(host("http://localhost/"), Ok(true));
        assert_eq!(host("http://127.0.0.2/"), Ok(false));
        assert_eq!(host("http://localhost.example/"), Ok(false));
        assert_eq!(host("http://[::ffff:7f00:1]/"), Ok(false));
        assert_eq!(host("http://[::ffff:127.0.0.1]/"), Err(WebUrlError::NotCanonical));
    }
}
