//! Checking a `client_id` URL before fetching, and a fetched response
//! after: from HTTP status to a validated [`Client`].

use std::net::IpAddr;

use serde_json::Value;
use time::OffsetDateTime;
use url::{Host, Url};

use super::address::{is_loopback, is_special_use};
use super::error::{CimdError, truncate};
use super::fetch::{FetchResponse, MAX_DOCUMENT_BYTES};
use super::policy::{CimdPolicy, TrustRule};
use crate::client::{Client, ClientId, ClientMetadata, MetadataProfile};
use crate::client_id_url::ClientIdUrl;
use crate::redirect_uri::RedirectUriPolicy;

/// Everything decided before a fetch: the URL under the project's URL
/// policy, the trust policy (deny-list, allow-list), and hosts that are
/// special-use without any lookup (IP literals, `localhost`). Returns the
/// URL re-parsed under the project policy.
///
/// `allow_loopback` comes from
/// [`super::MetadataFetcher::allows_loopback_for_development`].
///
/// # Errors
/// [`CimdError::InvalidUrl`], [`CimdError::PolicyDenied`] or
/// [`CimdError::BlockedAddress`].
pub fn check_url(url: &ClientIdUrl, policy: &CimdPolicy, allow_loopback: bool) -> Result<ClientIdUrl, CimdError> {
    let url = ClientIdUrl::parse_with(url.as_str(), policy.url_policy)?;
    let parsed = url.url();
    let host = url.host().to_owned();
    policy.check_host(&host).map_err(|rule| CimdError::PolicyDenied {
        host: host.clone(),
        rule,
    })?;
    let blocked = match parsed.host() {
        Some(Host::Ipv4(v4)) => address_refused(IpAddr::V4(v4), allow_loopback),
        Some(Host::Ipv6(v6)) => address_refused(IpAddr::V6(v6), allow_loopback),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            let local = d == "localhost" || d.ends_with(".localhost");
            local && !allow_loopback
        }
        None => true,
    };
    if blocked {
        return Err(CimdError::BlockedAddress { target: host });
    }
    Ok(url)
}

/// Whether a fetcher must refuse to connect to `ip`: special-use, unless
/// loopback is allowed for development and `ip` is a loopback address.
pub fn address_refused(ip: IpAddr, allow_loopback: bool) -> bool {
    is_special_use(ip) && !(allow_loopback && is_loopback(ip))
}

/// Checks a fetched response and parses the document: status exactly 200
/// (3xx: [`CimdError::Redirect`]); content type `application/json` or
/// `application/<x>+json` (parameters allowed); at most 5120 bytes; UTF-8;
/// a JSON object; no `client_secret` / `client_secret_expires_at` member
/// (even `null`); `client_id` a string equal to the URL by simple string
/// comparison.
///
/// # Errors
/// The first failed check, as a [`CimdError`].
pub fn parse_response(url: &ClientIdUrl, response: &FetchResponse) -> Result<ClientMetadata, CimdError> {
    match response.status {
        200 => {}
        s @ 300..=399 => return Err(CimdError::Redirect { status: s }),
        s => return Err(CimdError::HttpStatus { status: s }),
    }
    let content_type = response.content_type.as_deref();
    if !content_type.is_some_and(is_json_content_type) {
        return Err(CimdError::ContentType {
            content_type: content_type.map(|c| truncate(c, 100)),
        });
    }
    if response.body.len() > MAX_DOCUMENT_BYTES {
        return Err(CimdError::TooLarge {
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let text = std::str::from_utf8(&response.body).map_err(|_| CimdError::InvalidJson {
        detail: "the body is not UTF-8".to_owned(),
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| CimdError::InvalidJson {
        detail: truncate(&e.to_string(), 200),
    })?;
    let Value::Object(object) = &value else {
        return Err(CimdError::InvalidJson {
            detail: "the document is not a JSON object".to_owned(),
        });
    };
    for field in ["client_secret", "client_secret_expires_at"] {
        if object.contains_key(field) {
            return Err(CimdError::ForbiddenField { field });
        }
    }
    match object.get("client_id") {
        Some(Value::String(id)) if id == url.as_str() => {}
        Some(Value::String(id)) => {
            return Err(CimdError::ClientIdMismatch {
                found: Some(truncate(id, 200)),
            });
        }
        _ => return Err(CimdError::ClientIdMismatch { found: None }),
    }
    deserialize_metadata(value).map_err(CimdError::from)
}

/// Validates a parsed document under the project's current policy into a
/// client: [`ClientMetadata::validate`] with the CIMD profile (client name
/// and redirect URIs required, no shared-secret methods, omitted method is
/// `none`, `private_key_jwt` only when allowed and with keys, public JWKs
/// only, URI fields checked, unknown grant/response types filtered), then
/// the same-origin rule when the project requires it. Used for fresh and
/// for cached documents alike.
///
/// # Errors
/// [`CimdError::ForbiddenField`], [`CimdError::InvalidMetadata`],
/// [`CimdError::ClientIdMismatch`] or [`CimdError::PolicyDenied`].
pub fn validate_document(
    url: &ClientIdUrl,
    document: &ClientMetadata,
    policy: &CimdPolicy,
    redirect_policy: RedirectUriPolicy,
    resolved_at: OffsetDateTime,
) -> Result<Client, CimdError> {
    if document.client_id.as_deref() != Some(url.as_str()) {
        return Err(CimdError::ClientIdMismatch {
            found: document.client_id.as_deref().map(|s| truncate(s, 200)),
        });
    }
    let metadata = document
        .validate(
            MetadataProfile::Cimd {
                allow_private_key_jwt: policy.allow_private_key_jwt,
            },
            redirect_policy,
        )?
        .with_related_informational_uris(Some(url.host()));
    if policy.require_same_origin_redirect_uris {
        let origin = Some(url.url().origin());
        let same = |raw: &str| Url::parse(raw).ok().map(|u| u.origin()) == origin;
        if !metadata.redirect_uris.iter().all(|r| same(r.as_str())) {
            return Err(CimdError::PolicyDenied {
                host: url.host().to_owned(),
                rule: TrustRule::RedirectUriNotSameOrigin,
            });
        }
    }
    Ok(Client::new(ClientId::Metadata(url.clone()), metadata, resolved_at))
}

/// [`parse_response`] then [`validate_document`]: the whole check of a
/// fresh response. Returns the parsed document (what a cache stores) and
/// the client.
///
/// # Errors
/// The first failed check.
pub fn validate_response(
    url: &ClientIdUrl,
    response: &FetchResponse,
    policy: &CimdPolicy,
    redirect_policy: RedirectUriPolicy,
    now: OffsetDateTime,
) -> Result<(ClientMetadata, Client), CimdError> {
    let document = parse_response(url, response)?;
    let client = validate_document(url, &document, policy, redirect_policy, now)?;
    Ok((document, client))
}

/// `application/json` or `application/<x>+json`, any case, with or without
/// parameters.
pub fn is_json_content_type(value: &str) -> bool {
    crate::media_type::is_json_like(value)
}

fn deserialize_metadata(value: Value) -> Result<ClientMetadata, crate::client::ClientMetadataError> {
    serde_json::from_value(value).map_err(|e| crate::client::ClientMetadataError::Json(truncate(&e.to_string(), 200)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

    fn url(s: &str) -> ClientIdUrl {
        ClientIdUrl::parse(s).unwrap()
    }

    fn ok_response(v: &Value) -> FetchResponse {
        FetchResponse::new(200, serde_json::to_vec(v).unwrap()).with_content_type("application/json")
    }

    #[test]
    fn content_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            " application/json ",
            "application/oauth-client-metadata+json",
            "application/vnd.example+json; v=1",
        ] {
            assert!(is_json_content_type(ok), "{ok}");
        }
        for bad in [
            "",
            "text/json",
            "text/html",
            "application/jsonp",
            "application/+json",
            "application/x-json",
            "application/json-seq",
            "application/javascript",
            "multipart/json",
            "application/ json",
            "*/*",
        ] {
            assert!(!is_json_content_type(bad), "{bad}");
        }
    }

    #[test]
    fn pre_flight() {
        let p = CimdPolicy::default();
        assert!(check_url(&url("https://claude.ai/oauth/x"), &p, false).is_ok());
        let relaxed = ClientIdUrl::try_from("https://claude.ai/".to_owned()).unwrap();
        assert_eq!(check_url(&relaxed, &p, false).unwrap_err().reason(), "invalid_url");
        for blocked in [
            "https://127.0.0.1/c",
            "https://10.0.0.1/c",
            "https://[::1]/c",
            "https://localhost/c",
            "https://LOCALHOST./c",
            "https://api.localhost/c",
            "https://169.254.169.254/latest",
        ] {
            assert_eq!(
                check_url(&url(blocked), &p, false).unwrap_err().reason(),
                "blocked_address",
                "{blocked}"
            );
        }
        // Spellings a resolver would read as another address never get
        // this far: the URL must be written as the parser reads it.
        for respelled in [
            "https://[::ffff:169.254.169.254]/c",
            "https://0x7f.1/c",
            "https://2130706433/c",
        ] {
            assert_eq!(
                ClientIdUrl::parse(respelled),
                Err(crate::cimd::ClientIdUrlError::NotCanonical),
                "{respelled}"
            );
        }
        // the development switch lets loopback through, nothing else
        assert!(check_url(&url("https://127.0.0.1:8443/c"), &p, true).is_ok());
        assert!(check_url(&url("https://localhost:8443/c"), &p, true).is_ok());
        assert!(check_url(&url("https://10.0.0.1/c"), &p, true).is_err());
        assert!(check_url(&url("https://8.8.8.8/c"), &p, false).is_ok());
    }

    #[test]
    fn parse_checks_in_order() {
        let u = url("https://app.example.com/client.json");
        let good =
            json!({"client_id": u.as_str(), "client_name": "A", "redirect_uris": ["https://app.example.com/cb"]});
        assert!(parse_response(&u, &ok_response(&good)).is_ok());
        let mut r = ok_response(&good);
        r.status = 404;
        assert_eq!(
            parse_response(&u, &r).unwrap_err(),
            CimdError::HttpStatus { status: 404 }
        );
        r.status = 301;
        assert_eq!(parse_response(&u, &r).unwrap_err(), CimdError::Redirect { status: 301 });
        let r = FetchResponse::new(200, b"{}".to_vec());
        assert_eq!(parse_response(&u, &r).unwrap_err().reason(), "content_type");
        let r = FetchResponse::new(200, vec![b' '; 5121]).with_content_type("application/json");
        assert_eq!(parse_response(&u, &r).unwrap_err().reason(), "too_large");
        let r = FetchResponse::new(200, vec![0xff, 0xfe]).with_content_type("application/json");
        assert_eq!(parse_response(&u, &r).unwrap_err().reason(), "invalid_json");
        let null_secret = json!({"client_id": u.as_str(), "client_secret": null});
        assert_eq!(
            parse_response(&u, &ok_response(&null_secret)).unwrap_err(),
            CimdError::ForbiddenField { field: "client_secret" }
        );
    }

    #[test]
    fn validation_uses_current_policy() {
        let u = url("https://app.example.com/client.json");
        let doc: ClientMetadata = serde_json::from_value(json!({
            "client_id": u.as_str(), "client_name": "A",
            "redirect_uris": ["https://app.example.com/cb", "http://127.0.0.1/cb"]
        }))
        .unwrap();
        let mut p = CimdPolicy::default();
        let c = validate_document(&u, &doc, &p, RedirectUriPolicy::strict(), NOW).unwrap();
        assert_eq!(c.client_id.as_str(), u.as_str());
        assert_eq!(c.issued_at, NOW);
        p.require_same_origin_redirect_uris = true;
        let e = validate_document(&u, &doc, &p, RedirectUriPolicy::strict(), NOW).unwrap_err();
        assert_eq!(
            e,
            CimdError::PolicyDenied {
                host: "app.example.com".into(),
                rule: TrustRule::RedirectUriNotSameOrigin
            }
        );
        let other = url("https://other.example.com/client.json");
        assert_eq!(
            validate_document(&other, &doc, &CimdPolicy::default(), RedirectUriPolicy::strict(), NOW)
                .unwrap_err()
                .reason(),
            "client_id_mismatch"
        );
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..300), ct in ".{0,40}", status in any::<u16>()) {
            let u = url("https://app.example.com/client.json");
            let r = FetchResponse::new(status, body).with_content_type(ct);
            let _ = validate_response(&u, &r, &CimdPolicy::default(), RedirectUriPolicy::strict(), NOW);
        }

        #[test]
        fn json_documents_never_panic(name in proptest::option::of(".{0,20}"), uris in proptest::collection::vec(".{0,40}", 0..3), method in proptest::option::of("[a-z_]{0,20}"), grants in proptest::collection::vec("[a-z_:]{0,30}", 0..3)) {
            let u = url("https://app.example.com/client.json");
            let v = json!({"client_id": u.as_str(), "client_name": name, "redirect_uris": uris, "token_endpoint_auth_method": method, "grant_types": grants});
            let _ = validate_response(&u, &ok_response(&v), &CimdPolicy::default(), RedirectUriPolicy::strict(), NOW);
        }
    }
}
