//! What a consent screen shows about a client, against phishing
//! (SPEC-CHECKLIST section 1, "consent and phishing").

use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientId};

/// Display data for a consent screen.
///
/// A CIMD document is self-asserted: its `client_name` and logo are
/// whatever the publisher wrote. What the user can trust is the host of the
/// `client_id` URL (MCP: MUST display) and where the authorization code
/// will be sent (the redirect URI hosts). When every redirect URI is a
/// loopback one, anyone can publish or copy such a document and receive the
/// code on their own machine: show an extra warning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConsentDisplay {
    /// The self-asserted `client_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The host of a CIMD `client_id` URL (`None` for registered clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_host: Option<String>,
    /// The distinct hosts of the redirect URIs, in document order (a
    /// private-use scheme without a host shows as its scheme, e.g.
    /// `com.example.app:`).
    pub redirect_uri_hosts: Vec<String>,
    /// Whether every redirect URI is an `http` loopback one (localhost
    /// impersonation risk).
    pub all_redirect_uris_loopback: bool,
    /// Whether some redirect URI host differs from the `client_id` host
    /// (always `false` for registered clients): worth showing both.
    pub redirect_hosts_differ_from_client_id_host: bool,
}

impl ConsentDisplay {
    /// The display data of a client.
    pub fn for_client(client: &Client) -> Self {
        let client_id_host = match &client.client_id {
            ClientId::Metadata(url) => Some(url.host().to_owned()),
            ClientId::Registered(_) => None,
        };
        let mut redirect_uri_hosts: Vec<String> = Vec::new();
        for uri in &client.metadata.redirect_uris {
            let host = uri.host().unwrap_or_else(|| {
                let scheme = uri.as_str().split(':').next().unwrap_or_default();
                format!("{scheme}:")
            });
            if !redirect_uri_hosts.contains(&host) {
                redirect_uri_hosts.push(host);
            }
        }
        let differ = client_id_host
            .as_ref()
            .is_some_and(|h| redirect_uri_hosts.iter().any(|r| r != h));
        Self {
            client_name: client.metadata.client_name.clone(),
            client_id_host,
            redirect_uri_hosts,
            all_redirect_uris_loopback: client.metadata.all_redirects_loopback(),
            redirect_hosts_differ_from_client_id_host: differ,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cimd::ClientIdUrl;
    use crate::client::{ClientMetadata, MetadataProfile};
    use crate::redirect_uri::RedirectUriPolicy;
    use serde_json::json;
    use time::macros::datetime;

    fn client(id: &str, uris: &[&str]) -> Client {
        let doc: ClientMetadata = serde_json::from_value(json!({
            "client_id": id, "client_name": "Example", "redirect_uris": uris
        }))
        .unwrap();
        let m = doc
            .validate(
                MetadataProfile::Cimd {
                    allow_private_key_jwt: false,
                },
                RedirectUriPolicy::strict(),
            )
            .unwrap();
        Client::new(
            ClientId::Metadata(ClientIdUrl::parse(id).unwrap()),
            m,
            datetime!(2026-11-26 12:00 UTC),
        )
    }

    #[test]
    fn web_client() {
        let d = ConsentDisplay::for_client(&client(
            "https://claude.ai/oauth/mcp-oauth-client-metadata",
            &[
                "https://claude.ai/api/mcp/auth_callback",
                "https://claude.com/api/mcp/auth_callback",
            ],
        ));
        assert_eq!(d.client_id_host.as_deref(), Some("claude.ai"));
        assert_eq!(d.redirect_uri_hosts, ["claude.ai", "claude.com"]);
        assert!(!d.all_redirect_uris_loopback);
        assert!(d.redirect_hosts_differ_from_client_id_host);
        assert_eq!(d.client_name.as_deref(), Some("Example"));
    }

    #[test]
    fn loopback_only_client_is_flagged() {
        let d = ConsentDisplay::for_client(&client(
            "https://vscode.dev/oauth/client-metadata.json",
            &["http://127.0.0.1:33418/", "http://localhost:33418/"],
        ));
        assert!(d.all_redirect_uris_loopback);
        assert_eq!(d.redirect_uri_hosts, ["127.0.0.1", "localhost"]);
    }
}
