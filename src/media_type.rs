//! The crate's one media-type check: the essence of a `Content-Type`
//! value ([RFC 9110 section 8.3.1]: `type/subtype`, parameters such as
//! `charset` ignored, compared case-insensitively). Used by the endpoints
//! (415 for a body of the wrong type), the resource server (a form body
//! may carry an `access_token`) and the CIMD fetch (a metadata document
//! must be JSON).
//!
//! [RFC 9110 section 8.3.1]: https://www.rfc-editor.org/rfc/rfc9110#section-8.3.1

/// A media type an endpoint reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MediaType {
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `application/json`.
    Json,
}

impl MediaType {
    /// The `type/subtype` string.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Form => "application/x-www-form-urlencoded",
            Self::Json => "application/json",
        }
    }

    /// Whether a `Content-Type` value (absent: no) is this media type.
    pub(crate) fn matches(self, content_type: Option<&str>) -> bool {
        content_type.is_some_and(|v| essence(v).eq_ignore_ascii_case(self.as_str()))
    }
}

/// `application/json` or `application/<x>+json`, any case, with or without
/// parameters.
pub(crate) fn is_json_like(content_type: &str) -> bool {
    let essence = essence(content_type).to_ascii_lowercase();
    let Some(subtype) = essence.strip_prefix("application/") else {
        return false;
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    subtype == "json" || subtype.strip_suffix("+json").is_some_and(token)
}

/// The `type/subtype` part of a `Content-Type` value: before the first
/// `;`, trimmed.
fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn essence_ignores_parameters_and_case() {
        let form = MediaType::Form;
        assert!(form.matches(Some("application/x-www-form-urlencoded")));
        assert!(form.matches(Some("Application/X-WWW-Form-Urlencoded ; charset=UTF-8")));
        assert!(!form.matches(Some("application/json")));
        assert!(!form.matches(Some("application/x-www-form-urlencoded-x")));
        assert!(!form.matches(Some("")));
        assert!(!form.matches(None));
        assert!(MediaType::Json.matches(Some("application/json; charset=utf-8")));
        assert!(!MediaType::Json.matches(Some("application/jsonx")));
        assert!(!MediaType::Json.matches(Some("application/problem+json")));
        assert!(is_json_like("application/problem+json"));
        assert!(is_json_like(" APPLICATION/JSON ;x=y"));
        assert!(!is_json_like("text/json"));
        assert!(!is_json_like("application/+json"));
    }
}
