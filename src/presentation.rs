//! What a consent page shows, decided once when the authorization request
//! is validated: [`ConsentPresentation`], carried by
//! [`crate::authorize::PendingAuthorization::presentation`] so that the
//! built-in page ([`crate::pages::DefaultPages`]) and a host's own page show
//! the same facts in the same order of trust.
//!
//! A consent page is the last line of defence against a client that
//! pretends to be another one. The client's name is whatever the client
//! chose, so it comes second: a page leads with what this server verified.
//!
//! - A metadata-document (CIMD) client is identified by the host of its
//!   `client_id` URL: the document was fetched from there
//!   ([`ClientIdentity::Verified`]).
//! - A registered (DCR) client's name is self-asserted: it is marked as
//!   unverified, and the page leads with the host the user will be sent
//!   back to, which is exact ([`ClientIdentity::Unverified`]).
//! - The service the user signs in to, the scopes in words and the
//!   resources by name come from the project's [`ProjectDisplay`].
//! - The client's logo and links are shown as verified only when they are
//!   on the CIMD client's verified host (or a subdomain of it); links of a
//!   DCR client are kept but marked unverified; anything else is left out.
//!
//! Everything here is pure: built from the project settings, the resolved
//! client and the validated request, with no I/O
//! ([`ConsentPresentation::new`], in [`crate::authorize`], which this
//! module sits below).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::display_text;
use crate::resource::ResourceUri;
use crate::scope::Scope;
use crate::weburl;

/// The longest [`ProjectDisplay::name`], in characters.
pub const MAX_DISPLAY_NAME: usize = 80;
/// The longest scope description or resource name, in characters.
pub const MAX_DISPLAY_TEXT: usize = 200;
/// The most scope descriptions or resource names a project may set.
pub const MAX_DISPLAY_ENTRIES: usize = 100;

/// How a project presents itself on consent and error pages (settable
/// through the host's admin API like every other setting).
///
/// Every string is text a user reads: bounded, and free of the invisible
/// and reordering characters that client names may not carry either
/// (bidirectional overrides, zero-width and control characters).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ProjectDisplay {
    /// The name of the service users sign in to ("Acme Cloud"), shown in
    /// the consent page's title. `None`: the issuer's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An `https` URL of the service's logo, shown next to its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    /// What each scope lets a client do, in the user's words
    /// (`"mcp:read": "Read your projects"`). Overrides the built-in
    /// descriptions ([`builtin_scope_description`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scope_descriptions: BTreeMap<String, String>,
    /// Resource names keyed by URI, as earlier versions stored them: read
    /// (and accepted in edits) for compatibility, moved into
    /// [`crate::project::ProjectSettings::resources`] (the one place
    /// resource names live) whenever settings are read or stored
    /// ([`crate::project::ProjectSettings::fold_display_resource_names`]),
    /// and never written.
    #[serde(default, skip_serializing)]
    pub resource_names: BTreeMap<String, String>,
}

/// A [`ProjectDisplay`] that cannot be stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisplaySettingsError {
    /// The name is empty, too long or contains hidden characters.
    #[error("display.name must be 1 to 80 characters of visible text")]
    Name,
    /// The logo is not a browser-stable `https` URL.
    #[error("display.logo_uri must be an https URL")]
    LogoUri,
    /// A scope description's key is not a scope token.
    #[error("display.scope_descriptions: {0:?} is not a scope")]
    ScopeKey(String),
    /// A resource name's key is not a resource indicator.
    #[error("display.resource_names: {0:?} is not a resource URI")]
    ResourceKey(String),
    /// A description or name is empty, too long or contains hidden
    /// characters.
    #[error("display.{field}: the text for {key:?} must be 1 to 200 characters of visible text")]
    Text {
        /// `scope_descriptions` or `resource_names`.
        field: &'static str,
        /// The entry.
        key: String,
    },
    /// More than [`MAX_DISPLAY_ENTRIES`] entries.
    #[error("display.{0}: at most 100 entries")]
    TooMany(&'static str),
}

impl ProjectDisplay {
    /// Checks every field.
    ///
    /// # Errors
    /// The first broken rule.
    pub fn validate(&self) -> Result<(), DisplaySettingsError> {
        if let Some(name) = &self.name
            && !visible_text(name, MAX_DISPLAY_NAME)
        {
            return Err(DisplaySettingsError::Name);
        }
        if let Some(logo) = &self.logo_uri
            && !is_https_url(logo)
        {
            return Err(DisplaySettingsError::LogoUri);
        }
        if self.scope_descriptions.len() > MAX_DISPLAY_ENTRIES {
            return Err(DisplaySettingsError::TooMany("scope_descriptions"));
        }
        for (scope, text) in &self.scope_descriptions {
            if Scope::new(scope.as_str()).is_err() {
                return Err(DisplaySettingsError::ScopeKey(scope.clone()));
            }
            if !visible_text(text, MAX_DISPLAY_TEXT) {
                return Err(DisplaySettingsError::Text {
                    field: "scope_descriptions",
                    key: scope.clone(),
                });
            }
        }
        if self.resource_names.len() > MAX_DISPLAY_ENTRIES {
            return Err(DisplaySettingsError::TooMany("resource_names"));
        }
        for (uri, text) in &self.resource_names {
            if ResourceUri::parse(uri.as_str()).is_err() {
                return Err(DisplaySettingsError::ResourceKey(uri.clone()));
            }
            if !visible_text(text, MAX_DISPLAY_TEXT) {
                return Err(DisplaySettingsError::Text {
                    field: "resource_names",
                    key: uri.clone(),
                });
            }
        }
        Ok(())
    }

    /// What `scope` lets a client do: the project's description, else the
    /// built-in one, else `None` (the page shows the scope itself).
    pub fn scope_description(&self, scope: &str) -> Option<Cow<'_, str>> {
        match self.scope_descriptions.get(scope) {
            Some(d) => Some(Cow::Borrowed(d.as_str())),
            None => builtin_scope_description(scope),
        }
    }

    /// The name `resource` has in [`ProjectDisplay::resource_names`]
    /// (compared in canonical form), before it is moved into the project's
    /// known resources.
    pub fn resource_name(&self, resource: &ResourceUri) -> Option<&str> {
        self.resource_names
            .iter()
            .find(|(uri, _)| ResourceUri::parse(uri.as_str()).is_ok_and(|u| u == *resource))
            .map(|(_, name)| name.as_str())
    }
}

/// The built-in description of a well-known scope: `openid`, `profile`,
/// `email`, `offline_access` and the `mcp:` family (`mcp:read`,
/// `mcp:write`, `mcp:tools`, and any other `mcp:<name>`).
pub fn builtin_scope_description(scope: &str) -> Option<Cow<'static, str>> {
    let fixed = match scope {
        "openid" => "Confirm who you are with your account identifier",
        "profile" => "See your name and basic profile",
        "email" => "See your email address",
        // `authorize::OFFLINE_ACCESS` (named here: this module sits below
        // `authorize`, which builds presentations).
        "offline_access" => "Stay connected when you are not using it, until you revoke access",
        "mcp:read" => "Read your data through the MCP server",
        "mcp:write" => "Create and change your data through the MCP server",
        "mcp:tools" => "Use the MCP server's tools on your behalf",
        other => {
            let rest = other.strip_prefix("mcp:")?;
            if rest.is_empty() {
                return None;
            }
            return Some(Cow::Owned(format!("Use the MCP server ({rest})")));
        }
    };
    Some(Cow::Borrowed(fixed))
}

/// Everything a consent page shows, in the order of trust a page should
/// follow: the service, then what is verified about the client, then its
/// claimed name, then what it asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConsentPresentation {
    /// The service the user signs in to.
    pub service: ServiceDisplay,
    /// The client, verified facts first.
    pub client: ClientDisplay,
    /// Where the user is sent after deciding.
    pub redirect: RedirectDisplay,
    /// What the client will be able to do, one entry per granted scope
    /// (and one for `offline_access` when a refresh token will be issued).
    pub scopes: Vec<ScopeDisplay>,
    /// Requested scopes that will not be granted (not offered here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_scopes: Vec<String>,
    /// The resources (MCP servers) the access is for.
    pub resources: Vec<ResourceDisplay>,
}

/// The service the user signs in to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServiceDisplay {
    /// [`ProjectDisplay::name`], or the issuer's host.
    pub name: String,
    /// [`ProjectDisplay::logo_uri`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
}

/// What is known about the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientIdentity {
    /// A metadata-document client: its document was fetched from `host`
    /// (the host of its `client_id` URL). Show it first, prominently.
    Verified {
        /// The `client_id` URL's host.
        host: String,
    },
    /// A registered client: nothing about its name or links was checked.
    /// Say so, and lead with the redirect host.
    Unverified {
        /// The registered `client_id` (`client_<hex>`).
        client_id: String,
    },
}

impl Default for ClientIdentity {
    fn default() -> Self {
        Self::Unverified {
            client_id: String::new(),
        }
    }
}

/// The client as a page shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClientDisplay {
    /// What was verified.
    pub identity: ClientIdentity,
    /// The name the client chose (`client_name`): show it second, never
    /// as the headline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `logo_uri`, when usable (see [`ClientLink::verified`]). The built-in
    /// page shows only a verified logo: a picture cannot carry an
    /// "unverified" mark as reliably as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<ClientLink>,
    /// `client_uri`, `tos_uri`, `policy_uri`, when usable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<ClientLink>,
}

/// What a client link points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LinkKind {
    /// `client_uri`.
    Homepage,
    /// `logo_uri`.
    Logo,
    /// `tos_uri`.
    Terms,
    /// `policy_uri`.
    Privacy,
}

impl LinkKind {
    /// The link text.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Homepage => "Homepage",
            Self::Logo => "Logo",
            Self::Terms => "Terms of service",
            Self::Privacy => "Privacy policy",
        }
    }
}

/// A link the client registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClientLink {
    /// Which one.
    pub kind: LinkKind,
    /// The `https` URL.
    pub uri: String,
    /// Its host, to show next to the link.
    pub host: String,
    /// `true`: on the CIMD client's verified host or a subdomain of it.
    /// `false`: a DCR client's self-asserted link; mark it as unverified.
    pub verified: bool,
}

/// Where the user goes after deciding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RedirectDisplay {
    /// The redirect URI's host (MCP: MUST be shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// A private-use scheme (`cursor`): the code goes to whichever app on
    /// the device claimed it. Name it, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_scheme: Option<String>,
    /// Every registered redirect URI is a loopback one: anyone can publish
    /// such a client, so warn.
    #[serde(default)]
    pub loopback_only: bool,
}

/// One scope, in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScopeDisplay {
    /// The scope token.
    pub scope: String,
    /// What it allows ([`ProjectDisplay::scope_description`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One resource, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResourceDisplay {
    /// The canonical URI.
    pub uri: String,
    /// The project's name for it ([`ProjectDisplay::resource_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ConsentPresentation {
    /// The name to show for the client: its claimed name, or a neutral
    /// phrase when it has none.
    pub fn client_name_or_default(&self) -> &str {
        self.client.name.as_deref().unwrap_or("An application")
    }
}

/// A client link as shown: for a CIMD client only when on its verified
/// host or a subdomain of it (then verified), for a DCR client always
/// (unverified). Only `https` URLs with a host.
pub(crate) fn client_link(kind: LinkKind, uri: Option<&str>, verified_host: Option<&str>) -> Option<ClientLink> {
    let uri = uri?;
    if !is_https_url(uri) {
        return None;
    }
    let host = url_host(uri)?;
    let verified = match verified_host {
        Some(v) => {
            if !same_or_subdomain(&host, v) {
                return None;
            }
            true
        }
        None => false,
    };
    Some(ClientLink {
        kind,
        uri: uri.to_owned(),
        host,
        verified,
    })
}

/// `host` is `base` or a subdomain of it (ASCII case-insensitive). IP
/// literals match only themselves.
pub(crate) fn same_or_subdomain(host: &str, base: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let base = base.trim_end_matches('.').to_ascii_lowercase();
    if host == base {
        return true;
    }
    let is_ip = |h: &str| h.starts_with('[') || h.parse::<std::net::Ipv4Addr>().is_ok();
    !base.is_empty() && !is_ip(&host) && !is_ip(&base) && host.ends_with(&format!(".{base}"))
}

/// An `https` URL written as a browser reads it, with a host.
fn is_https_url(s: &str) -> bool {
    s.len() <= 2048 && s.starts_with("https://") && weburl::check(s, true).is_ok()
}

pub(crate) fn url_host(s: &str) -> Option<String> {
    url::Url::parse(s).ok()?.host_str().map(str::to_owned)
}

fn visible_text(s: &str, max_chars: usize) -> bool {
    !s.trim().is_empty() && s.chars().count() <= max_chars && !display_text::has_hidden_characters(s)
}

#[cfg(test)]
pub(crate) mod tests;
