//! The one parser of `Authorization: Bearer` credentials ([RFC 6750
//! section 2.1]), used by every endpoint that takes a bearer token: the
//! registration endpoint (initial access tokens), introspection and admin
//! credentials, userinfo, and the resource server.
//!
//! `credentials = "Bearer" 1*SP b64token`: the scheme is
//! case-insensitive, one or more spaces separate it from the token, and
//! spaces around the whole field value are ignored (they are not part of
//! an HTTP field value, [RFC 9110 section 5.5]).
//!
//! [RFC 6750 section 2.1]: https://www.rfc-editor.org/rfc/rfc6750#section-2.1
//! [RFC 9110 section 5.5]: https://www.rfc-editor.org/rfc/rfc9110#section-5.5

/// The longest token accepted, in bytes.
pub(crate) const MAX_TOKEN_LEN: usize = 4096;

/// Why a field value is not a bearer credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BearerError {
    /// Another authentication scheme: the caller did not present a bearer
    /// token (a resource server then answers without an error code, [RFC
    /// 6750 section 3.1]).
    ///
    /// [RFC 6750 section 3.1]: https://www.rfc-editor.org/rfc/rfc6750#section-3.1
    OtherScheme,
    /// The `Bearer` scheme with a missing, overlong or malformed token.
    Malformed,
}

/// The token of an `Authorization` field value.
pub(crate) fn parse(value: &str) -> Result<&str, BearerError> {
    let value = value.trim_matches(' ');
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::OtherScheme);
    }
    let token = rest.trim_start_matches(' ');
    if token.len() > MAX_TOKEN_LEN || !is_b64token(token) {
        return Err(BearerError::Malformed);
    }
    Ok(token)
}

/// Whether `token` is a bearer token this crate accepts in an
/// `Authorization: Bearer` field: an [RFC 6750 section 2.1] `b64token`
/// (`1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`) of at
/// most 4096 bytes. Hosts use it to check a credential they configure
/// (an admin or introspection token) before handing it out, so that
/// every client can present it.
///
/// # Examples
/// ```
/// use authio_mcp::http::is_bearer_token;
/// assert!(is_bearer_token("at_Zm9vYmFy-._~+/=="));
/// assert!(!is_bearer_token("two words"));
/// assert!(!is_bearer_token("=="));
/// assert!(!is_bearer_token(""));
/// ```
///
/// [RFC 6750 section 2.1]: https://www.rfc-editor.org/rfc/rfc6750#section-2.1
pub fn is_bearer_token(token: &str) -> bool {
    token.len() <= MAX_TOKEN_LEN && is_b64token(token)
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepted() {
        for (value, token) in [
            ("Bearer abc", "abc"),
            ("bearer abc", "abc"),
            ("BEARER   abc  ", "abc"),
            ("  Bearer abc", "abc"),
            ("Bearer abc.DEF-_~+/=", "abc.DEF-_~+/="),
            ("Bearer iatk_AbC-123==", "iatk_AbC-123=="),
        ] {
            assert_eq!(parse(value), Ok(token), "{value:?}");
        }
        let longest = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN));
        assert!(parse(&longest).is_ok());
    }

    #[test]
    fn the_public_check_agrees_with_the_parser() {
        for t in [
            "abc",
            "abc.DEF-_~+/=",
            "iatk_AbC-123==",
            "=",
            "==abc",
            "a b",
            "a,b",
            "",
            "é",
        ] {
            assert_eq!(is_bearer_token(t), parse(&format!("Bearer {t}")).is_ok(), "{t:?}");
        }
        assert!(is_bearer_token(&"a".repeat(MAX_TOKEN_LEN)));
        assert!(!is_bearer_token(&"a".repeat(MAX_TOKEN_LEN + 1)));
    }

    #[test]
    fn refused() {
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a\"b",
            "Bearer a,b",
            "Bearer =",
            "Bearer ==abc",
            "Bearer a\tb",
            "Bearer\tabc",
            "Bearer a\u{e9}",
            long.as_str(),
        ] {
            let expected = if bad.starts_with("Bearer\t") {
                BearerError::OtherScheme
            } else {
                BearerError::Malformed
            };
            assert_eq!(parse(bad), Err(expected), "{bad:?}");
        }
        for other in ["Basic dXNlcjpwYXNz", "", "Token abc", "Bearerabc", "DPoP abc"] {
            assert_eq!(parse(other), Err(BearerError::OtherScheme), "{other:?}");
        }
    }

    proptest! {
        #[test]
        fn a_parsed_token_is_a_b64token_within_the_limit(s in ".{0,64}") {
            if let Ok(token) = parse(&s) {
                prop_assert!(is_b64token(token) && token.len() <= MAX_TOKEN_LEN);
                prop_assert!(s.contains(token));
            }
        }
    }
}
