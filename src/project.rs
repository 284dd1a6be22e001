//! Projects: the per-tenant settings of an authorization server, and the
//! "MCP enabled" switch with its cascade.
//!
//! The cascade is a pure transition ([`ProjectSettings::set_mcp_enabled`])
//! that consumes the settings and returns the new settings together with
//! the list of fields it changed, so the host can persist, audit and show
//! exactly what happened.

use serde::{Deserialize, Serialize};
use time::Duration;

use crate::cimd::{CimdPolicy, CimdPolicyError};
use crate::presentation::{DisplaySettingsError, ProjectDisplay};
use crate::redirect_uri::RedirectUriPolicy;
use crate::resource::{ResourceSet, ResourceUri};
use crate::scope::ScopeSet;
use crate::tokenless::{TokenlessPolicyError, TokenlessRegistration};

/// The longest authorization-code lifetime allowed ([RFC 6749 section
/// 4.1.2] recommends at most 10 minutes).
///
/// [RFC 6749 section 4.1.2]: https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2
pub const MAX_CODE_TTL: Duration = Duration::minutes(10);

pub use crate::project_id::{InvalidProjectId, ProjectId};

/// How a project accepts Dynamic Client Registration ([RFC 7591]).
///
/// [RFC 7591]: https://www.rfc-editor.org/rfc/rfc7591
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DcrMode {
    /// No registration endpoint; registration is refused.
    #[default]
    Disabled,
    /// Registration requires an initial access token (`iatk_...`).
    InitialAccessToken,
    /// Anyone may register. Advisable only behind a WAF (see the seed guide).
    Open,
}

impl DcrMode {
    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::InitialAccessToken => "initial_access_token",
            Self::Open => "open",
        }
    }
}

/// An authorization-code lifetime: more than zero, at most [`MAX_CODE_TTL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct CodeTtl(Duration);

/// The lifetime was zero, negative, or above 10 minutes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the authorization code lifetime must be between 1 second and 10 minutes")]
pub struct InvalidCodeTtl;

impl CodeTtl {
    /// Validates a lifetime.
    ///
    /// # Errors
    /// [`InvalidCodeTtl`].
    pub fn new(ttl: Duration) -> Result<Self, InvalidCodeTtl> {
        if ttl >= Duration::SECOND && ttl <= MAX_CODE_TTL {
            Ok(Self(ttl))
        } else {
            Err(InvalidCodeTtl)
        }
    }

    /// The lifetime.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl Default for CodeTtl {
    fn default() -> Self {
        Self(Duration::minutes(1))
    }
}

impl TryFrom<i64> for CodeTtl {
    type Error = InvalidCodeTtl;
    fn try_from(secs: i64) -> Result<Self, InvalidCodeTtl> {
        Self::new(Duration::seconds(secs))
    }
}

impl From<CodeTtl> for i64 {
    fn from(t: CodeTtl) -> Self {
        t.0.whole_seconds()
    }
}

/// The settings of one project.
///
/// Fields are public so a host can build and edit them freely; call
/// [`ProjectSettings::validate`] before storing (the driver does).
/// Durations serialize as whole seconds.
///
/// Resource names have one home, [`ProjectSettings::resources`]: names
/// found in the older `display.resource_names` map are moved there when
/// settings are read ([`ProjectSettings::fold_display_resource_names`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct ProjectSettings {
    /// The "MCP enabled" flag (dashboard: Settings, Connect / MCP).
    pub mcp_enabled: bool,
    /// Whether Client ID Metadata Documents are accepted as client ids.
    pub cimd_enabled: bool,
    /// How Dynamic Client Registration is offered.
    pub dcr_mode: DcrMode,
    /// Access-token lifetime (MCP: short-lived).
    #[serde(with = "seconds")]
    pub access_token_ttl: Duration,
    /// Refresh-token lifetime; zero means refresh tokens are not issued.
    #[serde(with = "seconds")]
    pub refresh_token_ttl: Duration,
    /// Authorization-code lifetime, at most 10 minutes.
    pub code_ttl: CodeTtl,
    /// The scopes clients may request (published as `scopes_supported`).
    pub scopes_supported: ScopeSet,
    /// The scopes granted when a request names none.
    pub default_scopes: ScopeSet,
    /// The resource (MCP server) used when a request names none. Always
    /// a known resource (see [`ProjectSettings::resource_policy`]).
    pub default_resource: Option<ResourceUri>,
    /// The resources (MCP servers) this project serves besides
    /// [`ProjectSettings::default_resource`], each with the name users
    /// see. Settings stored before this field had names read back from
    /// their `allowed_resources` list, each named by its URI.
    #[serde(default, alias = "allowed_resources")]
    pub resources: KnownResources,
    /// Which requested resources are accepted: by default only known ones
    /// (the default resource and [`ProjectSettings::resources`]); `any`
    /// is an explicit opt-in, flagged by [`SettingsLint::AnyResource`].
    /// Settings stored before this field existed read back as
    /// `known_only`: a project that listed no resources then accepts its
    /// default resource only.
    #[serde(default)]
    pub resource_policy: ResourcePolicy,
    /// Refuse requests that name no resource and have no default.
    pub require_resource: bool,
    /// The path of the project's authorization endpoint, e.g.
    /// `/oauth2/authorize` or `/v1/auth/oauth/google/authorize`.
    pub authorize_endpoint_path: String,
    /// Which redirect URIs clients may register.
    pub redirect_uri_policy: RedirectUriPolicy,
    /// This project's own issuer, for hosts that tell projects apart by
    /// issuer (`https://auth.example.com/p/proj_acme`): its metadata,
    /// authorization responses (`iss`) and tokens then name it. `None`:
    /// the server's issuer, shared by every project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<crate::issuer::Issuer>,
    /// How Client ID Metadata Documents are trusted, fetched and cached.
    #[serde(default)]
    pub cimd: CimdPolicy,
    /// Strict mode: refuse requests the way the letter of the RFCs allows
    /// instead of accommodating MCP clients as they behave in the field.
    /// Off by default. When on, a requested scope the project or the client
    /// does not support fails the request with `invalid_scope` (instead of
    /// being dropped from the grant, [RFC 6749 section 3.3]),
    /// [`ProjectSettings::refresh_reuse_grace`] is ignored (every reuse of a
    /// rotated refresh token revokes the grant), and private-use redirect
    /// schemes are refused whatever
    /// [`ProjectSettings::redirect_uri_policy`] says (MCP: redirect URIs are
    /// `localhost` or `https`).
    ///
    /// [RFC 6749 section 3.3]: https://www.rfc-editor.org/rfc/rfc6749#section-3.3
    #[serde(default)]
    pub strict_mode: bool,
    /// How long after a refresh token was rotated a second presentation of
    /// it still gets the same new token pair instead of revoking the grant
    /// (several tabs or processes of one client refreshing at once). Zero
    /// disables it; at most 60 seconds; ignored in strict mode.
    #[serde(default = "default_refresh_reuse_grace", with = "seconds")]
    pub refresh_reuse_grace: Duration,
    /// Registrations without an initial access token in
    /// `initial_access_token` mode, when every redirect URI matches a
    /// trusted pattern (see [`crate::tokenless`]). Off by default.
    #[serde(default)]
    pub tokenless_registration: TokenlessRegistration,
    /// Allow the `client_credentials` grant ([RFC 6749 section 4.4], the MCP
    /// client credentials extension) for confidential registered clients
    /// that registered it. Off by default: such tokens act for a machine,
    /// with no user and no consent, so a project opts in. The project must
    /// also list its scopes (`scopes_supported`) or the client its own
    /// `scope`: a machine client is never granted "any scope".
    ///
    /// [RFC 6749 section 4.4]: https://www.rfc-editor.org/rfc/rfc6749#section-4.4
    #[serde(default)]
    pub client_credentials_enabled: bool,
    /// The format of access tokens (default opaque; settings stored
    /// before this field existed read back as opaque).
    #[serde(default)]
    pub access_token_format: AccessTokenFormat,
    /// Signing algorithms and key rotation, for JWT access tokens and ID
    /// tokens.
    #[serde(default)]
    pub signing: crate::keys::SigningSettings,
    /// Upstream OpenID Connect providers users sign in through (settings
    /// stored before this field existed read back with none).
    #[serde(default)]
    pub upstream: crate::upstream::UpstreamSettings,
    /// Compatibility: also accept a `private_key_jwt` assertion whose
    /// `aud` is this project's token endpoint URL (a single string), as
    /// [RFC 7523 section 3] suggested and some older client libraries still
    /// send. Off by default: draft-ietf-oauth-rfc7523bis requires the
    /// issuer identifier as the sole audience, because an endpoint URL is
    /// what a malicious authorization server can claim as its own token
    /// endpoint in its metadata, obtain an assertion for from an honest
    /// client, and replay here (audience injection). Never applies to
    /// metadata-document (CIMD) clients, which by design talk to every
    /// authorization server with one key. See
    /// [`crate::jwt::check_client_assertion`].
    ///
    /// [RFC 7523 section 3]: https://www.rfc-editor.org/rfc/rfc7523#section-3
    #[serde(default)]
    pub danger_accept_token_endpoint_assertion_audience: bool,
    /// How the project presents itself on consent and error pages: the
    /// service's name and logo, scope descriptions (settings stored before
    /// this field existed read back with none). Resource names live in
    /// [`ProjectSettings::resources`].
    #[serde(default)]
    pub display: ProjectDisplay,
}

impl Serialize for ProjectSettings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Self::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for ProjectSettings {
    /// Reads settings, moving names from the older
    /// `display.resource_names` into [`ProjectSettings::resources`].
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut settings = Self::deserialize(d)?;
        settings.fold_display_resource_names();
        Ok(settings)
    }
}

/// The default [`ProjectSettings::refresh_reuse_grace`]: 5 seconds.
pub const DEFAULT_REFRESH_REUSE_GRACE: Duration = Duration::seconds(5);

/// The longest [`ProjectSettings::refresh_reuse_grace`].
pub const MAX_REFRESH_REUSE_GRACE: Duration = Duration::seconds(60);

const fn default_refresh_reuse_grace() -> Duration {
    DEFAULT_REFRESH_REUSE_GRACE
}

/// The format of a project's access tokens.
///
/// # Security
/// A JWT access token is verified locally by resource servers, which do
/// not see revocations: a revoked JWT stays valid to them until its `exp`
/// (introspection answers `active: false` at once). Keep JWT lifetimes
/// short (see [`SettingsLint::LongLivedJwtAccessTokens`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AccessTokenFormat {
    /// Random opaque strings, validated by introspection ([RFC 7662]).
    ///
    /// [RFC 7662]: https://www.rfc-editor.org/rfc/rfc7662
    #[default]
    Opaque,
    /// Signed JWTs ([RFC 9068]), verifiable locally against the JWKS.
    ///
    /// [RFC 9068]: https://www.rfc-editor.org/rfc/rfc9068
    Jwt,
}

/// Which requested resources ([RFC 8707] `resource`) a project accepts.
///
/// [RFC 8707]: https://www.rfc-editor.org/rfc/rfc8707
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResourcePolicy {
    /// Only the project's known resources: its default resource and the
    /// ones in [`ProjectSettings::resources`]. Any other `resource` is
    /// refused with `invalid_target`, at the authorization endpoint and
    /// at the token endpoint (a resource removed from the list stops
    /// getting tokens, also for existing grants).
    #[default]
    KnownOnly,
    /// Any valid absolute URI. Tokens can then name any audience a client
    /// asks for, including servers the project does not run; a resource
    /// server that checks `aud` still refuses them, one that does not is
    /// exposed. Flagged by [`SettingsLint::AnyResource`].
    Any,
}

impl ResourcePolicy {
    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::KnownOnly => "known_only",
            Self::Any => "any",
        }
    }
}

/// The longest display name of a known resource, in characters.
pub const MAX_RESOURCE_NAME_CHARS: usize = 100;

/// The most resources [`ProjectSettings::resources`] may list.
pub const MAX_KNOWN_RESOURCES: usize = 100;

/// A resource (MCP server) a project serves, with the name users see on a
/// consent page ("Acme CRM") instead of its URI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KnownResource {
    /// The resource indicator.
    pub resource: ResourceUri,
    /// Its display name: 1 to [`MAX_RESOURCE_NAME_CHARS`] characters,
    /// without control, bidirectional or invisible characters.
    pub name: String,
}

impl KnownResource {
    /// A resource and its display name, validated.
    ///
    /// # Errors
    /// [`SettingsError::ResourceName`] for an empty, too long or
    /// deceptive name.
    pub fn new(resource: ResourceUri, name: impl Into<String>) -> Result<Self, SettingsError> {
        let name = name.into();
        check_resource_name(&name)?;
        Ok(Self { resource, name })
    }
}

fn check_resource_name(name: &str) -> Result<(), SettingsError> {
    let chars = name.chars().count();
    if chars == 0
        || chars > MAX_RESOURCE_NAME_CHARS
        || name.trim() != name
        || crate::display_text::has_hidden_characters(name)
    {
        return Err(SettingsError::ResourceName);
    }
    Ok(())
}

/// The resources a project serves besides its default one
/// ([`ProjectSettings::resources`]), in the order they were added, one
/// entry per resource (compared by canonical form).
///
/// Serialized as a JSON array of `{"resource", "name"}` objects. A plain
/// string in the array (the `allowed_resources` form stored by earlier
/// versions) reads back as a resource named by its URI.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct KnownResources(Vec<KnownResource>);

impl KnownResources {
    /// No resources.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// The entry of `resource`, if listed.
    pub fn get(&self, resource: &ResourceUri) -> Option<&KnownResource> {
        self.0.iter().find(|k| &k.resource == resource)
    }

    /// Whether `resource` is listed.
    pub fn contains(&self, resource: &ResourceUri) -> bool {
        self.get(resource).is_some()
    }

    /// Adds `entry`, or renames the listed resource equal to it. Returns
    /// whether it was new.
    pub fn upsert(&mut self, entry: KnownResource) -> bool {
        match self.0.iter_mut().find(|k| k.resource == entry.resource) {
            Some(existing) => {
                *existing = entry;
                false
            }
            None => {
                self.0.push(entry);
                true
            }
        }
    }

    /// Removes `resource`; returns whether it was listed.
    pub fn remove(&mut self, resource: &ResourceUri) -> bool {
        let before = self.0.len();
        self.0.retain(|k| &k.resource != resource);
        self.0.len() != before
    }

    /// The entries.
    pub fn iter(&self) -> std::slice::Iter<'_, KnownResource> {
        self.0.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn validate(&self) -> Result<(), SettingsError> {
        if self.0.len() > MAX_KNOWN_RESOURCES {
            return Err(SettingsError::TooManyResources);
        }
        for (i, k) in self.0.iter().enumerate() {
            check_resource_name(&k.name)?;
            if self.0.iter().take(i).any(|other| other.resource == k.resource) {
                return Err(SettingsError::DuplicateResource);
            }
        }
        Ok(())
    }
}

impl FromIterator<KnownResource> for KnownResources {
    fn from_iter<I: IntoIterator<Item = KnownResource>>(iter: I) -> Self {
        let mut list = Self::new();
        for k in iter {
            list.upsert(k);
        }
        list
    }
}

impl<'a> IntoIterator for &'a KnownResources {
    type Item = &'a KnownResource;
    type IntoIter = std::slice::Iter<'a, KnownResource>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for KnownResources {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// An entry as stored now, or as a bare URI (earlier versions).
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Entry {
            Named { resource: ResourceUri, name: String },
            Bare(ResourceUri),
        }
        let entries = Vec::<Entry>::deserialize(d)?;
        // Duplicates and bad names are kept as read, for
        // `ProjectSettings::validate` to report.
        Ok(Self(
            entries
                .into_iter()
                .map(|e| match e {
                    Entry::Named { resource, name } => KnownResource { resource, name },
                    Entry::Bare(resource) => {
                        let name = resource.canonical().to_owned();
                        KnownResource { resource, name }
                    }
                })
                .collect(),
        ))
    }
}

impl Default for ProjectSettings {
    /// MCP off, CIMD off, DCR disabled; 1 hour access tokens, 30 day
    /// refresh tokens, 1 minute codes; no scopes; `/oauth2/authorize`;
    /// private-use redirect schemes allowed (native clients); 5 second
    /// refresh reuse grace; strict mode off.
    fn default() -> Self {
        Self {
            mcp_enabled: false,
            cimd_enabled: false,
            dcr_mode: DcrMode::Disabled,
            access_token_ttl: Duration::hours(1),
            refresh_token_ttl: Duration::days(30),
            code_ttl: CodeTtl::default(),
            scopes_supported: ScopeSet::new(),
            default_scopes: ScopeSet::new(),
            default_resource: None,
            resources: KnownResources::new(),
            resource_policy: ResourcePolicy::KnownOnly,
            require_resource: false,
            authorize_endpoint_path: "/oauth2/authorize".to_owned(),
            redirect_uri_policy: RedirectUriPolicy::default(),
            issuer: None,
            cimd: CimdPolicy::default(),
            access_token_format: AccessTokenFormat::Opaque,
            signing: crate::keys::SigningSettings::default(),
            strict_mode: false,
            refresh_reuse_grace: DEFAULT_REFRESH_REUSE_GRACE,
            tokenless_registration: TokenlessRegistration::default(),
            client_credentials_enabled: false,
            upstream: crate::upstream::UpstreamSettings::default(),
            danger_accept_token_endpoint_assertion_audience: false,
            display: ProjectDisplay::default(),
        }
    }
}

/// One field changed by a settings transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SettingChange {
    /// `mcp_enabled` changed.
    McpEnabled {
        /// Old value.
        from: bool,
        /// New value.
        to: bool,
    },
    /// `cimd_enabled` changed.
    CimdEnabled {
        /// Old value.
        from: bool,
        /// New value.
        to: bool,
    },
    /// `dcr_mode` changed.
    DcrMode {
        /// Old value.
        from: DcrMode,
        /// New value.
        to: DcrMode,
    },
}

/// A settings combination worth a warning; settings with lints are still valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SettingsLint {
    /// `dcr_mode = open` with MCP enabled: viable only behind a WAF that
    /// rejects suspicious traffic; start with `initial_access_token`.
    OpenRegistrationWithMcp,
    /// MCP is enabled but neither CIMD nor DCR is: no MCP client can obtain
    /// a client id.
    McpWithoutClientRegistration,
    /// Access tokens live longer than one hour (MCP: SHOULD be short-lived).
    LongLivedAccessTokens,
    /// JWT access tokens live longer than 15 minutes: a revoked JWT stays
    /// valid to locally verifying resource servers until it expires.
    LongLivedJwtAccessTokens,
    /// Tokenless registration is on: anyone may register a client whose
    /// redirect URIs all match a trusted pattern.
    TokenlessRegistration,
    /// Tokenless registration is on but `dcr_mode` is not
    /// `initial_access_token`, where alone it applies.
    TokenlessRegistrationWithoutEffect,
    /// [`ProjectSettings::danger_accept_token_endpoint_assertion_audience`]
    /// is on: registered `private_key_jwt` clients are exposed to
    /// audience injection.
    TokenEndpointAssertionAudience,
    /// `resource_policy = any`: tokens are issued for whatever audience a
    /// client names.
    AnyResource,
    /// MCP is enabled, `resource_policy = known_only`, and the project
    /// knows no resource (no default, empty list): every request naming a
    /// resource (as MCP clients do) fails with `invalid_target`.
    NoKnownResource,
}

impl SettingsLint {
    /// A sentence for a dashboard.
    pub const fn message(self) -> &'static str {
        match self {
            Self::OpenRegistrationWithMcp => {
                "open registration with MCP is viable only behind a WAF that rejects suspicious user agents and request patterns; prefer initial_access_token"
            }
            Self::McpWithoutClientRegistration => {
                "MCP is enabled but neither CIMD nor DCR is, so MCP clients cannot obtain a client id"
            }
            Self::LongLivedAccessTokens => "access tokens should be short-lived (one hour or less)",
            Self::LongLivedJwtAccessTokens => {
                "JWT access tokens stay valid to resource servers until they expire, even when revoked: keep them to 15 minutes or less"
            }
            Self::TokenlessRegistration => {
                "tokenless registration admits anyone's client whose redirect URIs all match a trusted pattern: \
                 narrower than open (codes can only go to the user's own machine, a listed app scheme or a listed \
                 host, never to an attacker's server), but anyone may register a client named like a well-known one \
                 and any app on a device can claim a listed scheme; keep the lists short and watch the \
                 oauth_client.tokenless_admitted events"
            }
            Self::TokenlessRegistrationWithoutEffect => {
                "tokenless registration only applies in initial_access_token mode; it has no effect now"
            }
            Self::TokenEndpointAssertionAudience => {
                "client assertions addressed to the token endpoint URL are accepted: a malicious authorization server \
                 that names this token endpoint as its own can replay its clients' assertions here (audience \
                 injection); turn it off once every registered private_key_jwt client sends the issuer as aud"
            }
            Self::AnyResource => {
                "resource_policy is any: tokens are issued for any resource a client names, including servers \
                 this project does not run; prefer known_only and list the MCP servers in resources"
            }
            Self::NoKnownResource => {
                "MCP is enabled but the project knows no resource: set default_resource or add resources, \
                 or every MCP client's request fails with invalid_target"
            }
        }
    }
}

/// Settings that cannot be stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// Access-token lifetime not positive or above 24 hours.
    #[error("access_token_ttl must be between 1 second and 24 hours")]
    AccessTokenTtl,
    /// Negative refresh-token lifetime, or above 365 days.
    #[error("refresh_token_ttl must be between 0 and 365 days")]
    RefreshTokenTtl,
    /// A default scope that is not supported.
    #[error("default_scopes must be a subset of scopes_supported")]
    DefaultScopes,
    /// A resource is listed twice in `resources`.
    #[error("resources lists the same resource twice")]
    DuplicateResource,
    /// A resource's display name is empty, longer than 100 characters,
    /// has leading or trailing spaces, or holds control, bidirectional or
    /// invisible characters.
    #[error("a resource name must be 1 to 100 characters without control, bidirectional or invisible characters")]
    ResourceName,
    /// More than [`MAX_KNOWN_RESOURCES`] resources.
    #[error("resources may list at most 100 resources")]
    TooManyResources,
    /// The authorize path does not start with `/` or has a query or fragment.
    #[error("authorize_endpoint_path must be an absolute path without query or fragment")]
    AuthorizePath,
    /// The refresh reuse grace is negative or above 60 seconds.
    #[error("refresh_reuse_grace must be between 0 and 60 seconds")]
    RefreshReuseGrace,
    /// The CIMD policy is inconsistent.
    #[error("invalid cimd policy: {0}")]
    Cimd(#[from] CimdPolicyError),
    /// The signing settings are inconsistent.
    #[error("invalid signing settings: {0}")]
    Signing(#[from] crate::keys::SigningSettingsError),
    /// The tokenless-registration policy is malformed.
    #[error("invalid tokenless registration policy: {0}")]
    Tokenless(#[from] TokenlessPolicyError),
    /// The upstream providers are inconsistent.
    #[error("invalid upstream settings: {0}")]
    Upstream(#[from] crate::upstream::UpstreamSettingsError),
    /// The display settings are malformed.
    #[error("invalid display settings: {0}")]
    Display(#[from] DisplaySettingsError),
}

impl ProjectSettings {
    /// Flips the "MCP enabled" flag, with the dashboard's cascade.
    ///
    /// Enabling: `cimd_enabled` becomes true, and `dcr_mode = disabled`
    /// becomes `initial_access_token` so that MCP clients without CIMD have
    /// a fallback; `open` and `initial_access_token` are kept.
    ///
    /// Disabling clears `mcp_enabled` only: CIMD and DCR may have been
    /// enabled on purpose, and silently closing registration would break
    /// clients that rely on it. Turn them off explicitly.
    ///
    /// Returns the new settings and the changed fields (empty when nothing
    /// changed).
    #[must_use]
    pub fn set_mcp_enabled(mut self, enabled: bool) -> (Self, Vec<SettingChange>) {
        let mut changes = Vec::new();
        if self.mcp_enabled != enabled {
            changes.push(SettingChange::McpEnabled {
                from: self.mcp_enabled,
                to: enabled,
            });
            self.mcp_enabled = enabled;
        }
        if enabled {
            if !self.cimd_enabled {
                changes.push(SettingChange::CimdEnabled { from: false, to: true });
                self.cimd_enabled = true;
            }
            if self.dcr_mode == DcrMode::Disabled {
                changes.push(SettingChange::DcrMode {
                    from: DcrMode::Disabled,
                    to: DcrMode::InitialAccessToken,
                });
                self.dcr_mode = DcrMode::InitialAccessToken;
            }
        }
        (self, changes)
    }

    /// Checks the invariants a stored project must hold.
    ///
    /// # Errors
    /// The first broken rule.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.access_token_ttl < Duration::SECOND || self.access_token_ttl > Duration::hours(24) {
            return Err(SettingsError::AccessTokenTtl);
        }
        if self.refresh_token_ttl.is_negative() || self.refresh_token_ttl > Duration::days(365) {
            return Err(SettingsError::RefreshTokenTtl);
        }
        if self.refresh_reuse_grace.is_negative() || self.refresh_reuse_grace > MAX_REFRESH_REUSE_GRACE {
            return Err(SettingsError::RefreshReuseGrace);
        }
        if !self.default_scopes.is_subset_of(&self.scopes_supported) {
            return Err(SettingsError::DefaultScopes);
        }
        self.resources.validate()?;
        let p = &self.authorize_endpoint_path;
        if !p.starts_with('/')
            || p.starts_with("//")
            || p.contains(['?', '#', ' ', '\\'])
            || p.chars().any(char::is_control)
        {
            return Err(SettingsError::AuthorizePath);
        }
        self.cimd.validate()?;
        self.signing.validate()?;
        self.tokenless_registration.validate()?;
        self.upstream.validate()?;
        self.display.validate()?;
        Ok(())
    }

    /// Sends every sign-in of the project through the upstream provider
    /// `name` (which must be configured): `/oauth2/authorize` then starts
    /// a login there too, and discovery advertises
    /// `<prefix>/<name>/authorize` (`prefix` as in
    /// [`crate::discovery::EndpointPaths::upstream`]) as the
    /// `authorization_endpoint`. `None` returns to the host's own login
    /// at `/oauth2/authorize`.
    ///
    /// # Errors
    /// [`SettingsError::Upstream`] when no provider has that name.
    pub fn select_upstream(
        &mut self,
        name: Option<crate::upstream::ProviderName>,
        prefix: &str,
    ) -> Result<(), SettingsError> {
        match name {
            Some(n) => {
                if self.upstream.provider(&n).is_none() {
                    return Err(crate::upstream::UpstreamSettingsError::UnknownSelected.into());
                }
                self.authorize_endpoint_path = format!("{}/{}/authorize", prefix.trim_end_matches('/'), n.as_str());
                self.upstream.selected = Some(n);
            }
            None => {
                self.upstream.selected = None;
                self.authorize_endpoint_path = "/oauth2/authorize".to_owned();
            }
        }
        Ok(())
    }

    /// Combinations worth a warning.
    pub fn lints(&self) -> Vec<SettingsLint> {
        let mut lints = Vec::new();
        if self.mcp_enabled && self.dcr_mode == DcrMode::Open {
            lints.push(SettingsLint::OpenRegistrationWithMcp);
        }
        if self.mcp_enabled && !self.cimd_enabled && self.dcr_mode == DcrMode::Disabled {
            lints.push(SettingsLint::McpWithoutClientRegistration);
        }
        if self.access_token_ttl > Duration::hours(1) {
            lints.push(SettingsLint::LongLivedAccessTokens);
        }
        if self.access_token_format == AccessTokenFormat::Jwt && self.access_token_ttl > Duration::minutes(15) {
            lints.push(SettingsLint::LongLivedJwtAccessTokens);
        }
        if self.tokenless_registration.enabled {
            lints.push(if self.dcr_mode == DcrMode::InitialAccessToken {
                SettingsLint::TokenlessRegistration
            } else {
                SettingsLint::TokenlessRegistrationWithoutEffect
            });
        }
        if self.danger_accept_token_endpoint_assertion_audience {
            lints.push(SettingsLint::TokenEndpointAssertionAudience);
        }
        match self.resource_policy {
            ResourcePolicy::Any => lints.push(SettingsLint::AnyResource),
            ResourcePolicy::KnownOnly => {
                if self.mcp_enabled && self.default_resource.is_none() && self.resources.is_empty() {
                    lints.push(SettingsLint::NoKnownResource);
                }
            }
        }
        lints
    }

    /// Whether `resource` is one this project knows: its default resource
    /// or one in [`ProjectSettings::resources`].
    pub fn is_known_resource(&self, resource: &ResourceUri) -> bool {
        self.default_resource.as_ref() == Some(resource) || self.resources.contains(resource)
    }

    /// Whether a request may name `resource` under
    /// [`ProjectSettings::resource_policy`].
    pub fn accepts_resource(&self, resource: &ResourceUri) -> bool {
        match self.resource_policy {
            ResourcePolicy::Any => true,
            ResourcePolicy::KnownOnly => self.is_known_resource(resource),
        }
    }

    /// The first of `resources` this project does not accept, if any.
    pub fn unaccepted_resource<'a>(&self, resources: &'a ResourceSet) -> Option<&'a ResourceUri> {
        resources.iter().find(|r| !self.accepts_resource(r))
    }

    /// The display name of a listed resource (for a consent page); `None`
    /// for a resource not in [`ProjectSettings::resources`] (show its
    /// URI).
    pub fn resource_name(&self, resource: &ResourceUri) -> Option<&str> {
        self.resources.get(resource).map(|k| k.name.as_str())
    }

    /// Moves the names of the older `display.resource_names` map
    /// ([`ProjectDisplay::resource_names`]) into
    /// [`ProjectSettings::resources`], the one place resource names live,
    /// and empties the map. A name there renames a resource already in
    /// [`ProjectSettings::resources`] (it used to win on consent pages).
    ///
    /// # Security
    /// A name never makes a resource known: names of resources not in the
    /// list are dropped, also the default resource's (which stays accepted
    /// as the default, unnamed) and any resource's under
    /// [`ResourcePolicy::Any`]. Listing a named default resource would keep
    /// it accepted after the default changes; listing a name under `Any`
    /// would keep it accepted after the policy is tightened. Names that are
    /// not valid [`KnownResource`] names and keys that are not resource
    /// URIs are dropped too. Reading settings and storing them through the
    /// driver do this; hosts never need to (they list a resource with its
    /// name through the admin API instead).
    pub fn fold_display_resource_names(&mut self) {
        for (uri, name) in std::mem::take(&mut self.display.resource_names) {
            let Ok(resource) = ResourceUri::parse(uri) else {
                continue;
            };
            if self.resources.contains(&resource)
                && let Ok(entry) = KnownResource::new(resource, name)
            {
                self.resources.upsert(entry);
            }
        }
    }

    /// Whether tokens of this project come with refresh tokens.
    pub fn issues_refresh_tokens(&self) -> bool {
        self.refresh_token_ttl.is_positive()
    }

    /// The redirect-URI policy in force: strict (no private-use schemes) in
    /// strict mode, which follows the MCP rule that every redirect URI is
    /// `localhost` or `https` (MCP 2026-07-28, security considerations,
    /// communication security); else [`ProjectSettings::redirect_uri_policy`].
    pub fn effective_redirect_uri_policy(&self) -> RedirectUriPolicy {
        if self.strict_mode {
            RedirectUriPolicy::strict()
        } else {
            self.redirect_uri_policy
        }
    }

    /// The refresh reuse grace in force: zero in strict mode.
    pub fn effective_refresh_reuse_grace(&self) -> Duration {
        if self.strict_mode {
            Duration::ZERO
        } else {
            self.refresh_reuse_grace
        }
    }
}

/// Serde for a `Duration` as whole seconds.
mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.whole_seconds())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::seconds(i64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cascade_table() {
        use DcrMode::*;
        // (dcr_mode before, cimd before) -> dcr_mode after; cimd is always true after.
        let table = [
            (Disabled, false, InitialAccessToken),
            (Disabled, true, InitialAccessToken),
            (InitialAccessToken, false, InitialAccessToken),
            (InitialAccessToken, true, InitialAccessToken),
            (Open, false, Open),
            (Open, true, Open),
        ];
        for (dcr, cimd, dcr_after) in table {
            let before = ProjectSettings {
                dcr_mode: dcr,
                cimd_enabled: cimd,
                ..Default::default()
            };
            let (after, changes) = before.clone().set_mcp_enabled(true);
            assert!(after.mcp_enabled);
            assert!(after.cimd_enabled);
            assert_eq!(after.dcr_mode, dcr_after, "{dcr:?} {cimd}");
            let mut expected = vec![SettingChange::McpEnabled { from: false, to: true }];
            if !cimd {
                expected.push(SettingChange::CimdEnabled { from: false, to: true });
            }
            if dcr != dcr_after {
                expected.push(SettingChange::DcrMode {
                    from: dcr,
                    to: dcr_after,
                });
            }
            assert_eq!(changes, expected, "{dcr:?} {cimd}");
            // Nothing else moved.
            assert_eq!(
                ProjectSettings {
                    mcp_enabled: false,
                    cimd_enabled: cimd,
                    dcr_mode: dcr,
                    ..after
                },
                before
            );
        }
    }

    #[test]
    fn enabling_twice_changes_nothing() {
        let (s, _) = ProjectSettings::default().set_mcp_enabled(true);
        let (again, changes) = s.clone().set_mcp_enabled(true);
        assert_eq!(again, s);
        assert!(changes.is_empty());
    }

    #[test]
    fn disabling_clears_only_the_flag() {
        let (s, _) = ProjectSettings::default().set_mcp_enabled(true);
        let (off, changes) = s.set_mcp_enabled(false);
        assert!(!off.mcp_enabled);
        assert!(off.cimd_enabled);
        assert_eq!(off.dcr_mode, DcrMode::InitialAccessToken);
        assert_eq!(changes, vec![SettingChange::McpEnabled { from: true, to: false }]);
        let (_, none) = off.set_mcp_enabled(false);
        assert!(none.is_empty());
    }

    #[test]
    fn changes_serialize_for_the_dashboard() {
        let (_, changes) = ProjectSettings::default().set_mcp_enabled(true);
        let v = serde_json::to_value(&changes).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"field": "mcp_enabled", "from": false, "to": true},
                {"field": "cimd_enabled", "from": false, "to": true},
                {"field": "dcr_mode", "from": "disabled", "to": "initial_access_token"}
            ])
        );
    }

    #[test]
    fn lints() {
        // MCP projects here know their MCP server (see `resource_lints`).
        let known = || Some(ResourceUri::parse("https://mcp.example.com/mcp").unwrap());
        let (s, _) = ProjectSettings {
            dcr_mode: DcrMode::Open,
            default_resource: known(),
            ..Default::default()
        }
        .set_mcp_enabled(true);
        assert_eq!(s.lints(), vec![SettingsLint::OpenRegistrationWithMcp]);
        let (s, _) = ProjectSettings {
            default_resource: known(),
            ..Default::default()
        }
        .set_mcp_enabled(true);
        assert!(s.lints().is_empty());
        let s = ProjectSettings {
            mcp_enabled: true,
            default_resource: known(),
            ..Default::default()
        };
        assert_eq!(s.lints(), vec![SettingsLint::McpWithoutClientRegistration]);
        let s = ProjectSettings {
            access_token_ttl: Duration::hours(2),
            ..Default::default()
        };
        assert_eq!(s.lints(), vec![SettingsLint::LongLivedAccessTokens]);
        let (mut s, _) = ProjectSettings {
            default_resource: known(),
            ..Default::default()
        }
        .set_mcp_enabled(true);
        s.tokenless_registration.enabled = true;
        assert_eq!(s.lints(), vec![SettingsLint::TokenlessRegistration]);
        s.dcr_mode = DcrMode::Open;
        assert_eq!(
            s.lints(),
            vec![
                SettingsLint::OpenRegistrationWithMcp,
                SettingsLint::TokenlessRegistrationWithoutEffect
            ]
        );
        assert!(SettingsLint::TokenlessRegistration.message().contains("open"));
        // Open without MCP is the operator's business.
        assert!(
            ProjectSettings {
                dcr_mode: DcrMode::Open,
                ..Default::default()
            }
            .lints()
            .is_empty()
        );
    }

    #[test]
    fn code_ttl_is_capped_at_ten_minutes() {
        assert!(CodeTtl::new(Duration::minutes(10)).is_ok());
        assert_eq!(
            CodeTtl::new(Duration::minutes(10) + Duration::SECOND),
            Err(InvalidCodeTtl)
        );
        assert_eq!(CodeTtl::new(Duration::ZERO), Err(InvalidCodeTtl));
        assert!(serde_json::from_str::<CodeTtl>("601").is_err());
        assert_eq!(
            serde_json::from_str::<CodeTtl>("600").unwrap().get(),
            Duration::minutes(10)
        );
    }

    #[test]
    fn validation() {
        assert_eq!(ProjectSettings::default().validate(), Ok(()));
        let bad = [
            (
                ProjectSettings {
                    access_token_ttl: Duration::ZERO,
                    ..Default::default()
                },
                SettingsError::AccessTokenTtl,
            ),
            (
                ProjectSettings {
                    access_token_ttl: Duration::days(2),
                    ..Default::default()
                },
                SettingsError::AccessTokenTtl,
            ),
            (
                ProjectSettings {
                    refresh_token_ttl: Duration::seconds(-1),
                    ..Default::default()
                },
                SettingsError::RefreshTokenTtl,
            ),
            (
                ProjectSettings {
                    default_scopes: ScopeSet::parse("admin").unwrap(),
                    ..Default::default()
                },
                SettingsError::DefaultScopes,
            ),
            (
                ProjectSettings {
                    resources: KnownResources(vec![
                        KnownResource {
                            resource: ResourceUri::parse("https://a.example.com/mcp").unwrap(),
                            name: "A".into(),
                        },
                        KnownResource {
                            resource: ResourceUri::parse("https://A.example.com/mcp/").unwrap(),
                            name: "A again".into(),
                        },
                    ]),
                    ..Default::default()
                },
                SettingsError::DuplicateResource,
            ),
            (
                ProjectSettings {
                    resources: KnownResources(vec![KnownResource {
                        resource: ResourceUri::parse("https://a.example.com/mcp").unwrap(),
                        name: "Acme\u{202E}MRC".into(),
                    }]),
                    ..Default::default()
                },
                SettingsError::ResourceName,
            ),
            (
                ProjectSettings {
                    resources: (0..=MAX_KNOWN_RESOURCES)
                        .map(|i| named(&format!("https://r{i}.example.com/mcp"), "R"))
                        .collect(),
                    ..Default::default()
                },
                SettingsError::TooManyResources,
            ),
            (
                ProjectSettings {
                    authorize_endpoint_path: "oauth2/authorize".into(),
                    ..Default::default()
                },
                SettingsError::AuthorizePath,
            ),
            (
                ProjectSettings {
                    authorize_endpoint_path: "//evil.com/x".into(),
                    ..Default::default()
                },
                SettingsError::AuthorizePath,
            ),
            (
                ProjectSettings {
                    authorize_endpoint_path: "/a?b".into(),
                    ..Default::default()
                },
                SettingsError::AuthorizePath,
            ),
        ];
        for (s, e) in bad {
            assert_eq!(s.validate(), Err(e));
        }
    }

    #[test]
    fn settings_serde_round_trip() {
        let (s, _) = ProjectSettings {
            scopes_supported: ScopeSet::parse("openid email mcp:read mcp:write").unwrap(),
            default_resource: Some(ResourceUri::parse("https://mcp.example.com/mcp").unwrap()),
            ..Default::default()
        }
        .set_mcp_enabled(true);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["dcr_mode"], "initial_access_token");
        assert_eq!(v["access_token_ttl"], 3600);
        assert_eq!(v["code_ttl"], 60);
        assert_eq!(v["scopes_supported"], "openid email mcp:read mcp:write");
        let back: ProjectSettings = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn settings_stored_before_the_interop_fields_still_read() {
        let mut v = serde_json::to_value(ProjectSettings::default()).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.remove("strict_mode");
        obj.remove("refresh_reuse_grace");
        obj.remove("tokenless_registration");
        let back: ProjectSettings = serde_json::from_value(v).unwrap();
        assert!(!back.strict_mode);
        assert_eq!(back.refresh_reuse_grace, DEFAULT_REFRESH_REUSE_GRACE);
        assert_eq!(back.tokenless_registration, TokenlessRegistration::default());
    }

    #[test]
    fn refresh_grace_bounds_and_strict_mode() {
        let s = ProjectSettings {
            refresh_reuse_grace: Duration::seconds(61),
            ..Default::default()
        };
        assert_eq!(s.validate(), Err(SettingsError::RefreshReuseGrace));
        let s = ProjectSettings {
            refresh_reuse_grace: Duration::seconds(-1),
            ..Default::default()
        };
        assert_eq!(s.validate(), Err(SettingsError::RefreshReuseGrace));
        let s = ProjectSettings {
            strict_mode: true,
            ..Default::default()
        };
        assert_eq!(s.effective_refresh_reuse_grace(), Duration::ZERO);
        assert_eq!(s.effective_redirect_uri_policy(), RedirectUriPolicy::strict());
        assert_eq!(
            ProjectSettings::default().effective_redirect_uri_policy(),
            RedirectUriPolicy::default()
        );
        assert_eq!(
            ProjectSettings::default().effective_refresh_reuse_grace(),
            DEFAULT_REFRESH_REUSE_GRACE
        );
    }

    fn named(uri: &str, name: &str) -> KnownResource {
        KnownResource::new(ResourceUri::parse(uri).unwrap(), name).unwrap()
    }

    #[test]
    fn resource_names_live_in_the_known_resources_only() {
        let mcp = ResourceUri::parse("https://mcp.acme.example/mcp").unwrap();
        let crm = ResourceUri::parse("https://crm.acme.example/mcp").unwrap();
        let mut s = ProjectSettings {
            default_resource: Some(mcp.clone()),
            ..ProjectSettings::default()
        };
        s.resources.upsert(named("https://crm.acme.example/mcp", "CRM"));
        // Settings as an earlier version stored them: names in both places.
        let mut stored = serde_json::to_value(&s).unwrap();
        stored["display"] = serde_json::json!({
            "name": "Acme",
            "resource_names": {
                "HTTPS://CRM.acme.example/mcp": "Acme CRM",
                "https://mcp.acme.example/mcp": "Acme MCP",
                "https://unknown.example/mcp": "Not served",
                "not a uri": "x"
            }
        });
        let read: ProjectSettings = serde_json::from_value(stored).unwrap();
        assert!(read.display.resource_names.is_empty(), "moved, not copied");
        assert_eq!(read.display.name.as_deref(), Some("Acme"));
        // The display name won on consent pages before: it renames.
        assert_eq!(read.resource_name(&crm), Some("Acme CRM"));
        // A name does not list a resource, not even the default one.
        assert_eq!(read.resource_name(&mcp), None);
        let unknown = ResourceUri::parse("https://unknown.example/mcp").unwrap();
        assert!(!read.is_known_resource(&unknown));
        assert_eq!(read.resources.len(), 1);
        assert_eq!(read.validate(), Ok(()));
        // Written back, the names appear once, in `resources`.
        let written = serde_json::to_value(&read).unwrap();
        assert!(written["display"].get("resource_names").is_none(), "{written}");
        assert_eq!(written["resources"][0]["name"], "Acme CRM");
        let again: ProjectSettings = serde_json::from_value(written).unwrap();
        assert_eq!(again, read);
    }

    /// A name given for a resource only named, never listed, must not make
    /// the project accept it: not the default resource once the default
    /// changes, not a resource named under `ResourcePolicy::Any` once the
    /// policy is tightened.
    #[test]
    fn a_resource_name_never_makes_a_resource_accepted() {
        let old = ResourceUri::parse("https://old.acme.example/mcp").unwrap();
        let new = ResourceUri::parse("https://new.acme.example/mcp").unwrap();
        let any = ResourceUri::parse("https://any.acme.example/mcp").unwrap();
        let mut s = ProjectSettings {
            default_resource: Some(old.clone()),
            ..ProjectSettings::default()
        };
        s.display.resource_names.insert(old.as_str().into(), "Old MCP".into());
        s.fold_display_resource_names();
        assert!(s.resources.is_empty(), "{:?}", s.resources);
        s.default_resource = Some(new);
        assert!(!s.accepts_resource(&old), "the old default stays accepted");

        let mut s = ProjectSettings {
            resource_policy: ResourcePolicy::Any,
            ..ProjectSettings::default()
        };
        s.display.resource_names.insert(any.as_str().into(), "Any MCP".into());
        s.fold_display_resource_names();
        assert!(s.resources.is_empty(), "{:?}", s.resources);
        s.resource_policy = ResourcePolicy::KnownOnly;
        assert!(!s.accepts_resource(&any));
    }

    #[test]
    fn resource_names_are_checked() {
        let r = || ResourceUri::parse("https://mcp.example.com/mcp").unwrap();
        assert!(KnownResource::new(r(), "Acme CRM").is_ok());
        assert!(KnownResource::new(r(), "日本語のサーバー").is_ok());
        for bad in ["", " Acme", "Acme ", "Acme\nCRM", "Ac\u{200B}me", &"x".repeat(101)] {
            assert_eq!(
                KnownResource::new(r(), bad),
                Err(SettingsError::ResourceName),
                "{bad:?}"
            );
        }
        assert!(KnownResource::new(r(), "x".repeat(100)).is_ok());
    }

    #[test]
    fn only_known_resources_are_accepted_by_default() {
        let default = ResourceUri::parse("https://mcp.example.com/mcp").unwrap();
        let listed = ResourceUri::parse("https://crm.example.com/mcp").unwrap();
        let other = ResourceUri::parse("https://other.example.com/mcp").unwrap();
        let mut s = ProjectSettings::default();
        assert_eq!(s.resource_policy, ResourcePolicy::KnownOnly);
        // Nothing known: nothing accepted.
        for r in [&default, &listed, &other] {
            assert!(!s.accepts_resource(r));
        }
        s.default_resource = Some(default.clone());
        assert!(s.accepts_resource(&default));
        // Compared by canonical form, like every resource comparison.
        assert!(s.accepts_resource(&ResourceUri::parse("https://MCP.example.com/mcp/").unwrap()));
        assert!(!s.accepts_resource(&listed));
        assert!(s.resources.upsert(named("https://crm.example.com/mcp", "CRM")));
        assert!(s.accepts_resource(&listed));
        assert_eq!(s.resource_name(&listed), Some("CRM"));
        assert_eq!(s.resource_name(&default), None);
        assert!(!s.accepts_resource(&other));
        let set: ResourceSet = [default.clone(), other.clone()].into_iter().collect();
        assert_eq!(s.unaccepted_resource(&set), Some(&other));
        // Renaming keeps one entry.
        assert!(!s.resources.upsert(named("https://crm.example.com/mcp/", "Acme CRM")));
        assert_eq!(s.resources.len(), 1);
        assert_eq!(s.resource_name(&listed), Some("Acme CRM"));
        // `any` is an explicit choice.
        s.resource_policy = ResourcePolicy::Any;
        assert!(s.accepts_resource(&other));
        assert_eq!(s.unaccepted_resource(&set), None);
        assert!(s.resources.remove(&listed));
        assert!(!s.resources.remove(&listed));
    }

    #[test]
    fn resource_lints() {
        let (mut s, _) = ProjectSettings::default().set_mcp_enabled(true);
        assert_eq!(s.lints(), vec![SettingsLint::NoKnownResource]);
        s.default_resource = Some(ResourceUri::parse("https://mcp.example.com/mcp").unwrap());
        assert!(s.lints().is_empty());
        s.default_resource = None;
        s.resources.upsert(named("https://crm.example.com/mcp", "CRM"));
        assert!(s.lints().is_empty());
        s.resource_policy = ResourcePolicy::Any;
        assert_eq!(s.lints(), vec![SettingsLint::AnyResource]);
        s.resources = KnownResources::new();
        assert_eq!(s.lints(), vec![SettingsLint::AnyResource]);
        assert!(SettingsLint::AnyResource.message().contains("known_only"));
        // Without MCP, knowing no resource is the operator's business.
        assert!(ProjectSettings::default().lints().is_empty());
    }

    #[test]
    fn settings_stored_before_the_resource_list_still_read() {
        // An earlier version's settings: `allowed_resources` as bare URIs,
        // no `resource_policy`.
        let mut v = serde_json::to_value(ProjectSettings::default()).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.remove("resources");
        obj.remove("resource_policy");
        obj.insert(
            "allowed_resources".into(),
            serde_json::json!(["https://CRM.example.com/mcp"]),
        );
        obj.insert(
            "default_resource".into(),
            serde_json::json!("https://mcp.example.com/mcp"),
        );
        let back: ProjectSettings = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back.validate(), Ok(()));
        assert_eq!(back.resource_policy, ResourcePolicy::KnownOnly);
        let crm = ResourceUri::parse("https://crm.example.com/mcp").unwrap();
        assert_eq!(back.resource_name(&crm), Some("https://crm.example.com/mcp"));
        assert!(back.accepts_resource(&crm));
        // An empty list used to mean "any": it now means the default only.
        let obj = v.as_object_mut().unwrap();
        obj.insert("allowed_resources".into(), serde_json::json!([]));
        let back: ProjectSettings = serde_json::from_value(v.clone()).unwrap();
        assert!(back.resources.is_empty());
        assert!(back.accepts_resource(&ResourceUri::parse("https://mcp.example.com/mcp").unwrap()));
        assert!(!back.accepts_resource(&crm));
        // And with neither field at all.
        let obj = v.as_object_mut().unwrap();
        obj.remove("allowed_resources");
        let back: ProjectSettings = serde_json::from_value(v).unwrap();
        assert!(back.resources.is_empty());
        // The current form round-trips.
        let mut s = ProjectSettings::default();
        s.resources.upsert(named("https://crm.example.com/mcp", "Acme CRM"));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v["resources"],
            serde_json::json!([{"resource": "https://crm.example.com/mcp", "name": "Acme CRM"}])
        );
        assert_eq!(v["resource_policy"], "known_only");
        assert_eq!(serde_json::from_value::<ProjectSettings>(v).unwrap(), s);
    }

    #[test]
    fn project_ids() {
        assert!(ProjectId::new("proj_acme_prod").is_ok());
        for bad in ["", "a b", "proj/x", "é", &"a".repeat(65)] {
            assert_eq!(ProjectId::new(bad), Err(InvalidProjectId));
        }
    }

    proptest! {
        #[test]
        fn project_id_never_panics_and_round_trips(s in ".{0,80}") {
            if let Ok(p) = ProjectId::new(s.clone()) {
                prop_assert_eq!(p.as_str(), s.as_str());
            }
        }
    }
}
