//! Signing users in through an upstream OpenID Connect provider (Google,
//! Microsoft Entra ID, Okta, Keycloak, another authio-mcp): the relying
//! party that runs as the login step of a pending MCP authorization.
//!
//! ```text
//!  MCP client --authorize--> this server --302--> upstream /authorize
//!                                                   (user signs in)
//!  MCP client <--302 code--  this server <--302--  upstream (code, state)
//!                              | code + PKCE verifier -> upstream /token
//!                              | ID token verified (JWKS, iss, aud, azp,
//!                              | exp, iat, nonce), policy, local user
//! ```
//!
//! Everything here is pure: [`start_login`] builds the upstream
//! authorization URL and the server-side [`UpstreamLogin`] record (PKCE
//! S256, `state`, `nonce`, a browser binding), [`check_callback`] judges
//! the redirect back, [`check_id_token_claims`] applies OpenID Connect
//! Core section 3.1.3.7, [`ProviderRules::check`] the provider's domain
//! rules, and [`local_subject`] derives the local user id. The driver
//! (`AuthorizationServer::start_upstream_login`,
//! `AuthorizationServer::finish_upstream_login`) sequences the store and
//! HTTP calls ([`UpstreamHttp`]); time and randomness are arguments.
//!
//! # Security
//! - The in-flight login is stored server-side, found by the hash of
//!   `state`, taken once (atomically) and dead after
//!   [`UPSTREAM_LOGIN_TTL`]; it carries the pending MCP authorization, so a
//!   callback can only ever complete the authorization it was started for.
//! - It is also bound to the browser that started it (a cookie whose hash
//!   is in the record): a victim lured to the upstream with an attacker's
//!   `state` cannot complete the attacker's authorization.
//! - The callback's `iss` ([RFC 9207]), when present, must be the provider's
//!   issuer; the ID token's `iss` must be, always (mix-up defence).
//! - The local subject comes from the upstream `iss` and `sub`, never from
//!   an email address (emails are reassigned; `sub` is not).
//!
//! [RFC 9207]: https://www.rfc-editor.org/rfc/rfc9207

mod fetch;

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Digest as _;
use time::{Duration, OffsetDateTime};

pub use self::fetch::{HttpResponse, UpstreamHttp, UpstreamHttpError};
use crate::authorize::{ParkedAuthorization, PendingAuthorization};
use crate::error::ErrorCode;
use crate::grant::Subject;
use crate::issuer::Issuer;
use crate::newtype::string_newtype;
use crate::pkce::{CodeChallenge, CodeVerifier};
use crate::scope::ScopeSet;
use crate::secret::{SecretHash, SecretString};

/// How long an upstream login may take, from the redirect to the provider
/// to the callback: 10 minutes.
pub const UPSTREAM_LOGIN_TTL: Duration = Duration::minutes(10);

/// The oldest ID token accepted (its `iat`): 10 minutes, beyond the
/// leeway. An ID token is fetched right after the login, so an old one is
/// a replay or a broken provider.
pub const MAX_ID_TOKEN_AGE: Duration = Duration::minutes(10);

/// The clock-skew leeway for `exp` and `iat`: 60 seconds.
pub const LEEWAY: Duration = Duration::seconds(60);

/// The path under which the callback and per-provider authorization
/// endpoints live by default: `/v1/auth/oauth/{provider}/authorize` and
/// `/v1/auth/oauth/{provider}/callback`.
pub const DEFAULT_PATH_PREFIX: &str = "/v1/auth/oauth";

const MAX_PARAM: usize = 4096;

/// The name of a provider within a project, as it appears in paths:
/// 1 to 32 characters of `a-z`, `0-9`, `-`, `_`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ProviderName(String);

/// A provider name with other characters, or empty, or too long.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a provider name is 1 to 32 characters of a-z, 0-9, '-' and '_'")]
pub struct InvalidProviderName;

impl ProviderName {
    /// Validates a name.
    ///
    /// # Errors
    /// [`InvalidProviderName`].
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidProviderName> {
        let name = name.into();
        let ok = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok { Ok(Self(name)) } else { Err(InvalidProviderName) }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(ProviderName, InvalidProviderName);

/// How this server authenticates to the provider's token endpoint (OpenID
/// Connect Core section 9). The secret itself is not part of the settings:
/// it comes from the host's [`crate::store::UpstreamSecrets`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UpstreamClientAuth {
    /// HTTP Basic with the client id and secret (the default).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A public client: `client_id` in the body, PKCE only.
    None,
    /// A client assertion ([RFC 7523 section 2.2]): a JWT signed with the
    /// project's active key of `signing.access_token_algorithm`, whose
    /// public key is in the project's JWKS. Register
    /// `<issuer>/.well-known/jwks.json` as the client's `jwks_uri` at the
    /// provider (or its current contents as `jwks`, which then needs
    /// updating after every key rotation).
    ///
    /// [RFC 7523 section 2.2]: https://www.rfc-editor.org/rfc/rfc7523#section-2.2
    PrivateKeyJwt,
}

/// Which ID-token claims carry the user's email, its verification and
/// name. Defaults: `email`, `email_verified`, `name`. For Microsoft Entra
/// ID without the optional `email` claim, `preferred_username` holds the
/// sign-in name (not a verified address).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ClaimMapping {
    /// The claim holding the email address.
    pub email: String,
    /// The boolean claim saying the address was verified.
    pub email_verified: String,
    /// The claim holding the display name.
    pub name: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            email: "email".to_owned(),
            email_verified: "email_verified".to_owned(),
            name: "name".to_owned(),
        }
    }
}

/// One upstream OpenID Connect provider of a project.
///
/// Build it from a preset ([`UpstreamProvider::google`],
/// [`UpstreamProvider::microsoft_entra`], [`UpstreamProvider::generic`])
/// and adjust the public fields. Register
/// `<issuer>/v1/auth/oauth/<name>/callback` as the redirect URI at the
/// provider, and give the client secret to the server's
/// [`crate::store::UpstreamSecrets`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UpstreamProvider {
    /// The name in paths (`/v1/auth/oauth/<name>/authorize`).
    pub name: ProviderName,
    /// The provider's issuer identifier, exactly as its discovery document
    /// and ID tokens spell it. `https` only; `http` on a loopback host is
    /// accepted for local development (it deserializes, but the driver's
    /// HTTP client refuses it unless built to allow it).
    pub issuer: Issuer,
    /// This server's client id at the provider.
    pub client_id: String,
    /// How this server authenticates at the token endpoint.
    #[serde(default)]
    pub client_auth: UpstreamClientAuth,
    /// The scopes requested (default `openid email profile`; `openid` is
    /// always sent).
    #[serde(default = "default_upstream_scopes")]
    pub scopes: ScopeSet,
    /// When not empty, only users whose verified email is in one of these
    /// domains (exact, case-insensitive) may sign in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_email_domains: Vec<String>,
    /// Google Workspace: the `hd` (hosted domain) the user must belong to.
    /// Sent as the `hd` parameter (a hint only) and checked in the ID
    /// token (the check is what counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_domain: Option<String>,
    /// Refuse users whose email is missing or not verified.
    #[serde(default)]
    pub require_verified_email: bool,
    /// Which claims carry email, verification and name.
    #[serde(default)]
    pub claims: ClaimMapping,
    /// A name to show on pages ("Sign in with ...").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Call the provider's userinfo endpoint on every sign-in and merge
    /// its claims (see [`merge_userinfo`]); a provider without one then
    /// fails the sign-in. When `false` (the default), userinfo is called
    /// only when the ID token lacks the email claim and the provider
    /// publishes a `userinfo_endpoint`.
    #[serde(default)]
    pub fetch_userinfo: bool,
}

fn default_upstream_scopes() -> ScopeSet {
    ScopeSet::parse("openid email profile").unwrap_or_default()
}

impl UpstreamProvider {
    /// A generic OpenID Connect provider named `name` at `issuer`
    /// (discovery at `<issuer>/.well-known/openid-configuration`).
    pub fn generic(name: ProviderName, issuer: Issuer, client_id: impl Into<String>) -> Self {
        Self {
            name,
            issuer,
            client_id: client_id.into(),
            client_auth: UpstreamClientAuth::default(),
            scopes: default_upstream_scopes(),
            allowed_email_domains: Vec::new(),
            hosted_domain: None,
            require_verified_email: false,
            claims: ClaimMapping::default(),
            display_name: None,
            fetch_userinfo: false,
        }
    }

    /// Google (`https://accounts.google.com`), named `google`. Set
    /// [`UpstreamProvider::hosted_domain`] to admit one Workspace domain
    /// only.
    ///
    /// # Errors
    /// Never in practice (the literals are valid); kept fallible so no
    /// `unwrap` is needed.
    pub fn google(client_id: impl Into<String>) -> Result<Self, InvalidProviderName> {
        let issuer = Issuer::new("https://accounts.google.com").map_err(|_| InvalidProviderName)?;
        let mut p = Self::generic(ProviderName::new("google")?, issuer, client_id);
        p.require_verified_email = true;
        p.display_name = Some("Google".to_owned());
        Ok(p)
    }

    /// Microsoft Entra ID for one tenant (a tenant id or a verified
    /// domain), named `microsoft`: issuer
    /// `https://login.microsoftonline.com/<tenant>/v2.0`. The multi-tenant
    /// `common` and `organizations` endpoints have no single issuer and are
    /// refused by the issuer check, on purpose. Entra ID sends `email` only
    /// when configured as an optional claim, and no `email_verified`.
    ///
    /// # Errors
    /// [`InvalidProviderName`] when `tenant` makes an invalid issuer.
    pub fn microsoft_entra(tenant: &str, client_id: impl Into<String>) -> Result<Self, InvalidProviderName> {
        if tenant.is_empty()
            || !tenant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(InvalidProviderName);
        }
        let issuer =
            Issuer::new(format!("https://login.microsoftonline.com/{tenant}/v2.0")).map_err(|_| InvalidProviderName)?;
        let mut p = Self::generic(ProviderName::new("microsoft")?, issuer, client_id);
        p.display_name = Some("Microsoft".to_owned());
        Ok(p)
    }

    /// The OpenID Connect discovery URL (OpenID Connect Discovery section
    /// 4: the issuer, without a trailing `/`, then
    /// `/.well-known/openid-configuration`).
    pub fn discovery_url(&self) -> String {
        self.issuer.endpoint("/.well-known/openid-configuration")
    }

    /// The scopes sent: the configured ones plus `openid`.
    pub fn requested_scopes(&self) -> String {
        let mut s = self.scopes.to_string();
        if !self.scopes.contains("openid") {
            s = if s.is_empty() {
                "openid".to_owned()
            } else {
                format!("openid {s}")
            };
        }
        s
    }

    /// The rules applied to a signed-in user.
    pub fn rules(&self) -> ProviderRules<'_> {
        ProviderRules { provider: self }
    }
}

/// The upstream providers of a project.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UpstreamSettings {
    /// The providers, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<UpstreamProvider>,
    /// The provider every sign-in of the project goes through: when set,
    /// `/oauth2/authorize` also starts a login at it (no local login
    /// remains to bypass it), and discovery should advertise
    /// `/v1/auth/oauth/<name>/authorize` (see
    /// [`crate::project::ProjectSettings::select_upstream`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<ProviderName>,
}

impl UpstreamSettings {
    /// Whether a provider authenticates with `private_key_jwt` (the
    /// project then signs, and publishes its JWKS).
    pub fn uses_private_key_jwt(&self) -> bool {
        self.providers
            .iter()
            .any(|p| p.client_auth == UpstreamClientAuth::PrivateKeyJwt)
    }

    /// The provider named `name`.
    pub fn provider(&self, name: &ProviderName) -> Option<&UpstreamProvider> {
        self.providers.iter().find(|p| &p.name == name)
    }

    /// Checks: names unique, the selected provider exists, client ids
    /// present.
    ///
    /// # Errors
    /// A description of the first problem.
    pub fn validate(&self) -> Result<(), UpstreamSettingsError> {
        for (i, p) in self.providers.iter().enumerate() {
            if self.providers.iter().skip(i + 1).any(|q| q.name == p.name) {
                return Err(UpstreamSettingsError::DuplicateName);
            }
            if p.client_id.is_empty() || p.client_id.len() > 512 || p.client_id.chars().any(char::is_control) {
                return Err(UpstreamSettingsError::ClientId);
            }
            if p.allowed_email_domains.iter().any(|d| d.is_empty() || d.contains('@')) {
                return Err(UpstreamSettingsError::Domain);
            }
        }
        if let Some(s) = &self.selected
            && self.provider(s).is_none()
        {
            return Err(UpstreamSettingsError::UnknownSelected);
        }
        Ok(())
    }
}

/// Inconsistent upstream settings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamSettingsError {
    /// Two providers share a name.
    #[error("two upstream providers have the same name")]
    DuplicateName,
    /// The selected provider is not configured.
    #[error("the selected upstream provider is not configured")]
    UnknownSelected,
    /// A client id is empty, too long or has control characters.
    #[error("an upstream client_id is empty or malformed")]
    ClientId,
    /// An allowed email domain is empty or contains `@`.
    #[error("allowed_email_domains must be bare domains")]
    Domain,
}

/// The provider metadata this relying party uses (OpenID Connect
/// Discovery section 3), validated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderMetadata {
    /// `issuer`, equal to the configured issuer.
    pub issuer: String,
    /// `authorization_endpoint`.
    pub authorization_endpoint: String,
    /// `token_endpoint`.
    pub token_endpoint: String,
    /// `jwks_uri`.
    pub jwks_uri: String,
    /// `userinfo_endpoint`, if any.
    pub userinfo_endpoint: Option<String>,
    /// `authorization_response_iss_parameter_supported` ([RFC 9207]): the
    /// callback must then carry `iss`.
    ///
    /// [RFC 9207]: https://www.rfc-editor.org/rfc/rfc9207
    pub iss_parameter_supported: bool,
    /// `prompt_values_supported` (OpenID Connect Prompt Create section
    /// 4.1), when the provider lists them; see
    /// [`ProviderMetadata::supports_prompt`].
    pub prompt_values_supported: Option<Vec<String>>,
}

/// The `prompt` values OpenID Connect Core 1.0 section 3.1.2.1 defines,
/// which a provider that lists none is assumed to understand.
const CORE_PROMPT_VALUES: [&str; 4] = ["none", "login", "consent", "select_account"];

impl ProviderMetadata {
    /// Whether the provider accepts `prompt=<value>`: it is in its
    /// `prompt_values_supported` when it publishes that list, otherwise
    /// it is one of the values OpenID Connect Core defines (`none`,
    /// `login`, `consent`, `select_account`).
    pub fn supports_prompt(&self, value: &str) -> bool {
        match &self.prompt_values_supported {
            Some(list) => list.iter().any(|v| v == value),
            None => CORE_PROMPT_VALUES.contains(&value),
        }
    }
}

/// Why a provider's discovery document was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Not a JSON object.
    #[error("the discovery document is not a JSON object")]
    NotJson,
    /// `issuer` differs from the configured issuer (OpenID Connect
    /// Discovery section 4.3: MUST be identical).
    #[error("the discovery document names another issuer")]
    IssuerMismatch,
    /// A required endpoint is missing or not an acceptable URL.
    #[error("the discovery document's {0} is missing, not an https URL, or on a special-use host")]
    Endpoint(&'static str),
    /// `code_challenge_methods_supported` is present without `S256`.
    #[error("the provider does not support PKCE S256")]
    NoS256,
    /// An optional member has the wrong type.
    #[error("the discovery document's {0} is malformed")]
    Malformed(&'static str),
}

/// Parses and checks a discovery document for `issuer`. Endpoints must be
/// `https` URLs without fragment or credentials, on a host that is not a
/// special-use IP literal or `localhost` ([`endpoint_url_ok`]); loopback
/// hosts, also over `http`, only when `allow_loopback` (a development
/// provider, see [`is_loopback_issuer`]).
///
/// # Errors
/// A [`MetadataError`].
pub fn parse_provider_metadata(
    body: &[u8],
    issuer: &Issuer,
    allow_loopback: bool,
) -> Result<ProviderMetadata, MetadataError> {
    let doc: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        _ => return Err(MetadataError::NotJson),
    };
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer.as_str()) {
        return Err(MetadataError::IssuerMismatch);
    }
    let endpoint = |name: &'static str, required: bool| -> Result<Option<String>, MetadataError> {
        match doc.get(name) {
            None | Some(Value::Null) if !required => Ok(None),
            Some(Value::String(s)) if endpoint_url_ok(s, allow_loopback) => Ok(Some(s.clone())),
            _ => Err(MetadataError::Endpoint(name)),
        }
    };
    if let Some(methods) = doc.get("code_challenge_methods_supported") {
        let has = methods
            .as_array()
            .is_some_and(|a| a.iter().any(|m| m.as_str() == Some("S256")));
        if !has {
            return Err(MetadataError::NoS256);
        }
    }
    Ok(ProviderMetadata {
        issuer: issuer.as_str().to_owned(),
        authorization_endpoint: endpoint("authorization_endpoint", true)?
            .ok_or(MetadataError::Endpoint("authorization_endpoint"))?,
        token_endpoint: endpoint("token_endpoint", true)?.ok_or(MetadataError::Endpoint("token_endpoint"))?,
        jwks_uri: endpoint("jwks_uri", true)?.ok_or(MetadataError::Endpoint("jwks_uri"))?,
        userinfo_endpoint: endpoint("userinfo_endpoint", false)?,
        iss_parameter_supported: doc
            .get("authorization_response_iss_parameter_supported")
            .and_then(Value::as_bool)
            == Some(true),
        prompt_values_supported: match doc.get("prompt_values_supported") {
            None | Some(Value::Null) => None,
            Some(Value::Array(values)) => Some(
                values
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|v| v.len() <= 64)
                    .take(32)
                    .map(str::to_owned)
                    .collect(),
            ),
            Some(_) => return Err(MetadataError::Malformed("prompt_values_supported")),
        },
    })
}

/// Whether `s` is an `https` URL (or `http` on a loopback host when
/// allowed) with a host, no credentials and no fragment, judged by the
/// WHATWG parse of the `url` crate, whose host is not a special-use one
/// it names without a lookup: an IP literal in an [RFC 6890] special-use
/// block ([`crate::cimd::is_special_use`]: loopback, private, link-local,
/// ...) or `localhost` / `*.localhost`. With `allow_loopback` (a
/// development issuer on this machine) loopback literals and `localhost`
/// pass, every other special-use address stays refused. Names that
/// resolve to special-use addresses are the HTTP implementation's to
/// refuse at connect time ([`UpstreamHttp`]).
///
/// [RFC 6890]: https://www.rfc-editor.org/rfc/rfc6890
pub fn endpoint_url_ok(s: &str, allow_loopback: bool) -> bool {
    if s.len() > MAX_PARAM || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Ok(u) = url::Url::parse(s) else { return false };
    if !u.username().is_empty() || u.password().is_some() || u.fragment().is_some() {
        return false;
    }
    let Some(host) = u.host() else { return false };
    let (special, loopback) = match host {
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            let local = d == "localhost" || d.ends_with(".localhost");
            (local, local)
        }
        url::Host::Ipv4(ip) => (
            crate::cimd::is_special_use(ip.into()),
            crate::cimd::is_loopback(ip.into()),
        ),
        url::Host::Ipv6(ip) => (
            crate::cimd::is_special_use(ip.into()),
            crate::cimd::is_loopback(ip.into()),
        ),
    };
    if special && !(allow_loopback && loopback) {
        return false;
    }
    match u.scheme() {
        "https" => true,
        "http" => allow_loopback && loopback,
        _ => false,
    }
}

/// Whether `issuer` is on a loopback host (`localhost`, `127.0.0.0/8`,
/// `[::1]`): only development configurations have such an upstream, whose
/// endpoints may then be on loopback too.
pub fn is_loopback_issuer(issuer: &Issuer) -> bool {
    match url::Url::parse(issuer.as_str()).ok().as_ref().and_then(url::Url::host) {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The random inputs of a login, drawn by the driver.
#[derive(Clone, Copy)]
pub struct LoginRandomness {
    /// For `state`.
    pub state: [u8; 32],
    /// For `nonce`.
    pub nonce: [u8; 32],
    /// For the PKCE code verifier.
    pub verifier: [u8; 32],
    /// For the browser-binding cookie.
    pub browser: [u8; 32],
}

impl fmt::Debug for LoginRandomness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginRandomness([redacted])")
    }
}

/// An upstream login in flight: everything the callback needs, kept
/// server-side (see [`crate::store::UpstreamLoginStore`]). Found by the
/// hash of its `state`.
#[derive(Serialize, Deserialize)]
#[non_exhaustive]
pub struct UpstreamLogin {
    /// The hash of `state` (the lookup key).
    pub state_hash: SecretHash,
    /// The hash of the browser-binding cookie value.
    pub browser_hash: SecretHash,
    /// The provider the login went to.
    pub provider: ProviderName,
    /// The `nonce` sent, expected in the ID token.
    pub nonce: String,
    /// The PKCE code verifier (a secret: sent only to the token endpoint).
    pub code_verifier: String,
    /// The redirect URI registered at the provider (this server's callback).
    pub callback_uri: String,
    /// The MCP authorization this login completes, parked (it is stored
    /// with the login, server-side only).
    pub pending: ParkedAuthorization,
    /// When the login started.
    #[serde(with = "time::serde::timestamp")]
    pub created_at: OffsetDateTime,
    /// When it dies.
    #[serde(with = "time::serde::timestamp")]
    pub expires_at: OffsetDateTime,
}

impl UpstreamLogin {
    /// A copy, for a store that keeps the record it returns (the
    /// in-memory one). Not public: the record holds a parked
    /// authorization, which is resumed once.
    pub(crate) fn duplicate(&self) -> Self {
        Self {
            state_hash: self.state_hash,
            browser_hash: self.browser_hash,
            provider: self.provider.clone(),
            nonce: self.nonce.clone(),
            code_verifier: self.code_verifier.clone(),
            callback_uri: self.callback_uri.clone(),
            pending: self.pending.duplicate(),
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}

impl fmt::Debug for UpstreamLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamLogin")
            .field("provider", &self.provider)
            .field("client_id", &self.pending.0.client_id)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A started login: where to send the user, what to store, and the
/// browser-binding value to set as a cookie.
#[derive(Debug)]
#[non_exhaustive]
pub struct LoginStart {
    /// The upstream authorization URL (302 `Location`).
    pub location: String,
    /// The record to store before redirecting.
    pub login: UpstreamLogin,
    /// The cookie value binding the login to this browser (its hash is in
    /// the record).
    pub browser_binding: SecretString,
}

/// The `prompt` to send upstream for `pending` (OpenID Connect Core 1.0
/// section 3.1.2.1): `none` for `prompt=none`, otherwise `login` and
/// `consent` as the MCP client asked, each only when the provider
/// supports it ([`ProviderMetadata::supports_prompt`]). `None` when
/// nothing is to be sent.
///
/// A `prompt=none` the provider does not support is not sent: the driver
/// answers the client `login_required` without going upstream (a silent
/// sign-in cannot be promised). A `prompt=login` the provider does not
/// support is replaced by `max_age=0`, which [`start_login`] always sends
/// with it (see [`check_auth_time`]).
pub fn upstream_prompt(pending: &PendingAuthorization, metadata: &ProviderMetadata) -> Option<String> {
    if pending.prompt_none {
        return metadata.supports_prompt("none").then(|| "none".to_owned());
    }
    let values: Vec<&str> = [("login", pending.force_login), ("consent", pending.force_consent)]
        .into_iter()
        .filter(|(v, asked)| *asked && metadata.supports_prompt(v))
        .map(|(v, _)| v)
        .collect();
    (!values.is_empty()).then(|| values.join(" "))
}

/// Starts a login at `provider` for `pending`: the authorization request
/// (OpenID Connect Core section 3.1.2.1) with `response_type=code`, the
/// scopes, `state`, `nonce`, PKCE S256 ([RFC 7636]), and `hd` for a
/// Google hosted domain. What the MCP client asked of the login step is
/// forwarded: its `login_hint` (already checked: at most 256 characters,
/// no control characters), its `prompt` as [`upstream_prompt`] decides,
/// and, for `prompt=login`, `max_age=0` (section 3.1.2.1: the provider
/// must then authenticate the user afresh and report `auth_time`).
///
/// [RFC 7636]: https://www.rfc-editor.org/rfc/rfc7636
pub fn start_login(
    pending: PendingAuthorization,
    provider: &UpstreamProvider,
    metadata: &ProviderMetadata,
    callback_uri: &str,
    random: LoginRandomness,
    now: OffsetDateTime,
) -> LoginStart {
    let state = SecretString::random_with_prefix("", &random.state);
    let nonce = SecretString::random_with_prefix("", &random.nonce);
    let browser = SecretString::random_with_prefix("", &random.browser);
    let verifier = CodeVerifier::from_random(&random.verifier);
    let challenge = CodeChallenge::s256(&verifier);
    let scopes = provider.requested_scopes();
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &provider.client_id),
        ("redirect_uri", callback_uri),
        ("scope", &scopes),
        ("state", state.expose_secret()),
        ("nonce", nonce.expose_secret()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    if let Some(hd) = &provider.hosted_domain {
        params.push(("hd", hd));
    }
    let prompt = upstream_prompt(&pending, metadata);
    if let Some(p) = &prompt {
        params.push(("prompt", p));
    }
    if pending.force_login && !pending.prompt_none {
        params.push(("max_age", "0"));
    }
    if let Some(hint) = &pending.login_hint {
        params.push(("login_hint", hint));
    }
    let location = append_query(&metadata.authorization_endpoint, &params);
    LoginStart {
        location,
        login: UpstreamLogin {
            state_hash: state.hash(),
            browser_hash: browser.hash(),
            provider: provider.name.clone(),
            nonce: nonce.expose_secret().to_owned(),
            code_verifier: verifier.as_str().to_owned(),
            callback_uri: callback_uri.to_owned(),
            pending: pending.park(),
            created_at: now,
            expires_at: now + UPSTREAM_LOGIN_TTL,
        },
        browser_binding: browser,
    }
}

/// The parameters of the provider's redirect back (OAuth 2.1 section
/// 4.1.2 and 4.1.2.1, [RFC 9207]).
///
/// [RFC 9207]: https://www.rfc-editor.org/rfc/rfc9207
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallbackParams {
    /// `code`.
    pub code: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `error`.
    pub error: Option<String>,
    /// `error_description` (for logs only; never shown as is).
    pub error_description: Option<String>,
    /// `iss` ([RFC 9207]).
    ///
    /// [RFC 9207]: https://www.rfc-editor.org/rfc/rfc9207
    pub iss: Option<String>,
    /// A parameter appeared more than once.
    pub duplicated: bool,
}

impl fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackParams")
            .field("code", &self.code.as_ref().map(|_| "[redacted]"))
            .field("error", &self.error)
            .field("iss", &self.iss)
            .finish_non_exhaustive()
    }
}

impl CallbackParams {
    /// Parses a query string (without `?`).
    pub fn from_query(query: &str) -> Self {
        let mut p = Self::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "code" => &mut p.code,
                "state" => &mut p.state,
                "error" => &mut p.error,
                "error_description" => &mut p.error_description,
                "iss" => &mut p.iss,
                _ => continue,
            };
            if slot.is_some() {
                p.duplicated = true;
            } else {
                *slot = Some(value.into_owned());
            }
        }
        p
    }

    /// The hash of `state`, to find the login by; `None` when absent or
    /// oversized.
    pub fn state_hash(&self) -> Option<SecretHash> {
        self.state
            .as_deref()
            .filter(|s| !s.is_empty() && s.len() <= MAX_PARAM)
            .map(SecretHash::of)
    }
}

/// Why an upstream login failed. [`LoginFailure::reason`] is the
/// `upstream.login_failed` audit reason; [`LoginFailure::code`] the OAuth
/// error the MCP client receives on its redirect URI.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginFailure {
    /// The user cancelled at the provider (`error=access_denied`).
    #[error("the sign-in was cancelled at the identity provider")]
    Cancelled,
    /// The provider could not sign the user in without showing a page
    /// (`login_required`, `consent_required`, `interaction_required`,
    /// `account_selection_required` in answer to `prompt=none`, OpenID
    /// Connect Core 1.0 section 3.1.2.6), or this server could not (the
    /// provider does not support `prompt=none`, or the user's remembered
    /// consent does not cover the request): the MCP client gets that code.
    #[error("the sign-in needs the user's interaction")]
    InteractionRequired(ErrorCode),
    /// The provider answered with another error.
    #[error("the identity provider answered with an error")]
    UpstreamError {
        /// The provider's `error` (sanitized, for the audit log).
        error: String,
    },
    /// The callback's `state` matches no login in flight, or it is
    /// malformed.
    #[error("the sign-in could not be matched to a request")]
    StateMismatch,
    /// The callback came to another browser than the one that started the
    /// login.
    #[error("the sign-in did not start in this browser")]
    BrowserMismatch,
    /// The login's callback was already used.
    #[error("the sign-in response was already used")]
    Replayed,
    /// The login took longer than [`UPSTREAM_LOGIN_TTL`].
    #[error("the sign-in took too long")]
    Expired,
    /// The callback's `iss` is not the provider's issuer ([RFC 9207]).
    ///
    /// [RFC 9207]: https://www.rfc-editor.org/rfc/rfc9207
    #[error("the sign-in response came from another issuer")]
    IssuerMismatch,
    /// The callback has neither `code` nor `error`, or has duplicates.
    #[error("the identity provider's response is malformed")]
    MalformedCallback,
    /// The provider's discovery document or JWKS could not be used.
    #[error("the identity provider is unavailable")]
    ProviderUnavailable,
    /// The code exchange failed.
    #[error("the identity provider refused the code exchange")]
    TokenExchange,
    /// The ID token failed verification.
    #[error("the identity provider's ID token is invalid ({0})")]
    InvalidIdToken(IdTokenError),
    /// The userinfo request failed or its answer was refused.
    #[error("the identity provider's userinfo response is unusable ({0})")]
    Userinfo(UserinfoError),
    /// The provider's rules or the host's policy refused the user.
    #[error("the user may not sign in here")]
    RefusedByPolicy {
        /// Why (for the audit log).
        reason: Cow<'static, str>,
    },
    /// Storage failed.
    #[error("the sign-in could not be completed")]
    Storage,
    /// The login store holds as many logins in flight as it may, for the
    /// project or for the request's source: the user may try again once
    /// older ones expired.
    #[error("too many sign-ins are in progress; try again later")]
    TooManyLogins,
}

impl LoginFailure {
    /// The audit reason.
    pub fn reason(&self) -> Cow<'static, str> {
        match self {
            Self::Cancelled => "user_cancelled".into(),
            Self::InteractionRequired(code) => format!("interaction_required:{}", code.as_str()).into(),
            Self::UpstreamError { .. } => "upstream_error".into(),
            Self::StateMismatch => "state_mismatch".into(),
            Self::BrowserMismatch => "browser_mismatch".into(),
            Self::Replayed => "replayed_callback".into(),
            Self::Expired => "expired".into(),
            Self::IssuerMismatch => "issuer_mismatch".into(),
            Self::MalformedCallback => "malformed_callback".into(),
            Self::ProviderUnavailable => "provider_unavailable".into(),
            Self::TokenExchange => "token_exchange_failed".into(),
            Self::InvalidIdToken(e) => format!("invalid_id_token:{}", e.reason()).into(),
            Self::Userinfo(e) => format!("userinfo:{}", e.reason()).into(),
            Self::RefusedByPolicy { reason } => format!("refused_by_policy:{reason}").into(),
            Self::Storage => "storage_error".into(),
            Self::TooManyLogins => "too_many_logins".into(),
        }
    }

    /// The OAuth error code for the MCP client: `access_denied` when the
    /// user or policy said no (or the sign-in must simply be started
    /// again), `temporarily_unavailable` when the provider is down or said
    /// so or too many sign-ins are in flight, the OpenID Connect code when a `prompt=none` request needs
    /// interaction, `server_error` when the provider misbehaved or storage
    /// failed.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InteractionRequired(code) => *code,
            Self::Cancelled
            | Self::StateMismatch
            | Self::BrowserMismatch
            | Self::Replayed
            | Self::Expired
            | Self::IssuerMismatch
            | Self::RefusedByPolicy { .. } => ErrorCode::AccessDenied,
            Self::UpstreamError { error } if error == "temporarily_unavailable" => ErrorCode::TemporarilyUnavailable,
            Self::ProviderUnavailable | Self::Userinfo(UserinfoError::Unreachable) | Self::TooManyLogins => {
                ErrorCode::TemporarilyUnavailable
            }
            Self::UpstreamError { .. }
            | Self::MalformedCallback
            | Self::TokenExchange
            | Self::InvalidIdToken(_)
            | Self::Userinfo(_)
            | Self::Storage => ErrorCode::ServerError,
        }
    }
}

/// Judges the provider's redirect back for the login it belongs to (the
/// caller found `login` by [`CallbackParams::state_hash`] and took it):
/// the browser binding, expiry, the [RFC 9207] `iss` (required when the
/// provider's metadata says it sends it, section 2.4; compared exactly
/// whenever present), then `error` or `code`. Returns the authorization
/// code to exchange.
///
/// # Errors
/// A [`LoginFailure`].
///
/// [RFC 9207]: https://www.rfc-editor.org/rfc/rfc9207
pub fn check_callback<'a>(
    login: &UpstreamLogin,
    provider: &UpstreamProvider,
    metadata: &ProviderMetadata,
    params: &'a CallbackParams,
    browser_binding: Option<&str>,
    now: OffsetDateTime,
) -> Result<&'a str, LoginFailure> {
    if login.provider != provider.name {
        return Err(LoginFailure::StateMismatch);
    }
    if !browser_binding.is_some_and(|b| login.browser_hash.matches(b)) {
        return Err(LoginFailure::BrowserMismatch);
    }
    if now >= login.expires_at {
        return Err(LoginFailure::Expired);
    }
    if params.duplicated {
        return Err(LoginFailure::MalformedCallback);
    }
    match &params.iss {
        Some(iss) if iss != provider.issuer.as_str() => return Err(LoginFailure::IssuerMismatch),
        None if metadata.iss_parameter_supported => return Err(LoginFailure::IssuerMismatch),
        _ => {}
    }
    if let Some(error) = &params.error {
        return Err(match error.as_str() {
            "access_denied" => LoginFailure::Cancelled,
            "login_required" => LoginFailure::InteractionRequired(ErrorCode::LoginRequired),
            "consent_required" => LoginFailure::InteractionRequired(ErrorCode::ConsentRequired),
            "interaction_required" => LoginFailure::InteractionRequired(ErrorCode::InteractionRequired),
            "account_selection_required" => LoginFailure::InteractionRequired(ErrorCode::AccountSelectionRequired),
            _ => LoginFailure::UpstreamError { error: sanitize(error) },
        });
    }
    params
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= MAX_PARAM)
        .ok_or(LoginFailure::MalformedCallback)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

/// The lifetime of this server's client assertions: 60 seconds.
pub const CLIENT_ASSERTION_TTL: Duration = Duration::seconds(60);

/// The claims of a `private_key_jwt` client assertion for `provider`
/// ([RFC 7523 section 3]): `iss` = `sub` = the client id, `aud` = the
/// provider's issuer identifier (what draft-ietf-oauth-rfc7523bis asks
/// for, against audience injection), `iat`, `exp` a minute later, and a
/// single-use `jti`.
///
/// [RFC 7523 section 3]: https://www.rfc-editor.org/rfc/rfc7523#section-3
pub fn client_assertion_claims(provider: &UpstreamProvider, jti: &str, now: OffsetDateTime) -> Value {
    serde_json::json!({
        "iss": provider.client_id,
        "sub": provider.client_id,
        "aud": provider.issuer.as_str(),
        "iat": now.unix_timestamp(),
        "exp": (now + CLIENT_ASSERTION_TTL).unix_timestamp(),
        "jti": jti,
    })
}

/// How this server proves itself at the token endpoint.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum ClientCredential<'a> {
    /// No credential (a public client).
    None,
    /// The client secret (for `client_secret_basic` / `_post`).
    Secret(&'a SecretString),
    /// A signed client assertion (for `private_key_jwt`).
    Assertion(&'a str),
}

/// The form body of the code exchange (OpenID Connect Core section
/// 3.1.3.1, [RFC 7636 section 4.5]) and the `Authorization` header value
/// for `client_secret_basic` ([RFC 6749 section 2.3.1]: both parts
/// form-encoded before base64). A credential that does not fit the
/// provider's `client_auth` is not sent (`client_id` alone is).
///
/// [RFC 7636 section 4.5]: https://www.rfc-editor.org/rfc/rfc7636#section-4.5
/// [RFC 6749 section 2.3.1]: https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
pub fn token_request(
    login: &UpstreamLogin,
    provider: &UpstreamProvider,
    code: &str,
    credential: ClientCredential<'_>,
) -> (String, Option<SecretString>) {
    use base64::Engine as _;
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "authorization_code");
    form.append_pair("code", code);
    form.append_pair("redirect_uri", &login.callback_uri);
    form.append_pair("code_verifier", &login.code_verifier);
    let mut header = None;
    match (provider.client_auth, credential) {
        (UpstreamClientAuth::ClientSecretBasic, ClientCredential::Secret(s)) => {
            let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(&provider.client_id), enc(s.expose_secret()));
            header = Some(SecretString::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )));
        }
        (UpstreamClientAuth::ClientSecretPost, ClientCredential::Secret(s)) => {
            form.append_pair("client_id", &provider.client_id);
            form.append_pair("client_secret", s.expose_secret());
        }
        (UpstreamClientAuth::PrivateKeyJwt, ClientCredential::Assertion(a)) => {
            form.append_pair("client_id", &provider.client_id);
            form.append_pair("client_assertion_type", crate::client_auth::JWT_BEARER_ASSERTION_TYPE);
            form.append_pair("client_assertion", a);
        }
        _ => {
            form.append_pair("client_id", &provider.client_id);
        }
    }
    (form.finish(), header)
}

/// The ID token of a successful token response (OAuth 2.1 section 3.2.3,
/// OpenID Connect Core section 3.1.3.3).
///
/// # Errors
/// [`LoginFailure::TokenExchange`] for a non-200 status or a response
/// without an `id_token`.
pub fn id_token_from_response(status: u16, body: &[u8]) -> Result<String, LoginFailure> {
    tokens_from_response(status, body).map(|t| t.id_token)
}

/// What this relying party uses of the provider's token response.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UpstreamTokens {
    /// The ID token (not yet verified).
    pub id_token: String,
    /// The access token, when it is a bearer token (`token_type` `Bearer`,
    /// compared case-insensitively, [RFC 6749 section 7.1]): used only for
    /// the userinfo request, never kept.
    ///
    /// [RFC 6749 section 7.1]: https://www.rfc-editor.org/rfc/rfc6749#section-7.1
    pub access_token: Option<SecretString>,
}

/// The ID token and bearer access token of a successful token response
/// (OAuth 2.1 section 3.2.3, OpenID Connect Core section 3.1.3.3).
///
/// # Errors
/// [`LoginFailure::TokenExchange`] for a non-200 status or a response
/// without an `id_token`.
pub fn tokens_from_response(status: u16, body: &[u8]) -> Result<UpstreamTokens, LoginFailure> {
    if status != 200 {
        return Err(LoginFailure::TokenExchange);
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| LoginFailure::TokenExchange)?;
    let id_token = v
        .get("id_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or(LoginFailure::TokenExchange)?;
    let bearer = v
        .get("token_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("bearer"));
    let access_token = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| bearer && !t.is_empty() && t.len() <= MAX_PARAM && !t.chars().any(|c| c.is_control()))
        .map(SecretString::from);
    Ok(UpstreamTokens { id_token, access_token })
}

/// Why the userinfo step failed (OpenID Connect Core section 5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserinfoError {
    /// [`UpstreamProvider::fetch_userinfo`] is set but the provider's
    /// discovery document has no `userinfo_endpoint`.
    #[error("the provider has no userinfo endpoint")]
    NoEndpoint,
    /// The token response had no bearer access token to call it with.
    #[error("no bearer access token to call userinfo with")]
    NoAccessToken,
    /// The request failed (connection, TLS, timeout, size).
    #[error("the userinfo endpoint could not be reached")]
    Unreachable,
    /// The endpoint answered with another status than 200.
    #[error("the userinfo endpoint refused the request")]
    Status,
    /// The body is not a JSON object with a string `sub` (a signed or
    /// encrypted userinfo response is not supported).
    #[error("the userinfo response is malformed")]
    Malformed,
    /// Its `sub` is not the ID token's: the response MUST NOT be used
    /// (OpenID Connect Core section 5.3.2), and the sign-in is refused.
    #[error("the userinfo response is about another user")]
    SubjectMismatch,
}

impl UserinfoError {
    /// A short machine-readable reason (`userinfo:<reason>` in the audit
    /// log).
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::NoEndpoint => "no_endpoint",
            Self::NoAccessToken => "no_access_token",
            Self::Unreachable => "unreachable",
            Self::Status => "status",
            Self::Malformed => "malformed",
            Self::SubjectMismatch => "sub_mismatch",
        }
    }
}

/// Whether to call userinfo after the ID token verified, and where: when
/// the provider is configured to ([`UpstreamProvider::fetch_userinfo`];
/// then a provider without a `userinfo_endpoint` is an error), or when the
/// ID token lacks the email claim and the provider has one.
///
/// # Errors
/// [`UserinfoError::NoEndpoint`].
pub fn userinfo_endpoint<'a>(
    provider: &UpstreamProvider,
    metadata: &'a ProviderMetadata,
    identity: &UpstreamIdentity,
) -> Result<Option<&'a str>, UserinfoError> {
    let endpoint = metadata.userinfo_endpoint.as_deref();
    if provider.fetch_userinfo {
        return endpoint.map(Some).ok_or(UserinfoError::NoEndpoint);
    }
    Ok(endpoint.filter(|_| identity.email.is_none()))
}

/// Merges the userinfo response (`status`, `body`: a JSON object, OpenID
/// Connect Core section 5.3.2) into the identity the ID token gave.
///
/// Its `sub` must equal the ID token's exactly, or nothing of it is used
/// and the sign-in is refused. The ID token's claims win (they are
/// signed); userinfo fills what it lacks: the email with its own
/// verification flag (an `email_verified` is only ever taken together
/// with the address it is about), the name, Google's `hd`. Claim names
/// follow the provider's [`ClaimMapping`].
///
/// # Errors
/// [`UserinfoError::Status`], [`UserinfoError::Malformed`],
/// [`UserinfoError::SubjectMismatch`].
pub fn merge_userinfo(
    identity: UpstreamIdentity,
    provider: &UpstreamProvider,
    status: u16,
    body: &[u8],
) -> Result<UpstreamIdentity, UserinfoError> {
    if status != 200 {
        return Err(UserinfoError::Status);
    }
    let claims: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        _ => return Err(UserinfoError::Malformed),
    };
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or(UserinfoError::Malformed)?;
    if sub != identity.subject {
        return Err(UserinfoError::SubjectMismatch);
    }
    let mut merged = identity;
    if merged.email.is_none()
        && let Some(email) = claim_text(&claims, &provider.claims.email)
    {
        merged.email = Some(email);
        merged.email_verified = claims.get(&provider.claims.email_verified).and_then(Value::as_bool) == Some(true);
    }
    if merged.name.is_none() {
        merged.name = claim_text(&claims, &provider.claims.name);
    }
    if merged.hosted_domain.is_none() {
        merged.hosted_domain = claim_text(&claims, "hd");
    }
    Ok(merged)
}

/// A displayable text claim: a non-empty string of at most 320
/// characters without control characters.
fn claim_text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty() && v.len() <= 320 && !v.chars().any(char::is_control))
        .map(str::to_owned)
}

/// Why an ID token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdTokenError {
    /// Malformed, unsupported algorithm, unknown key or bad signature.
    #[error("signature or format")]
    Signature,
    /// `iss` is not the provider.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not contain this client.
    #[error("wrong audience")]
    WrongAudience,
    /// Several audiences without `azp`, or `azp` naming another client.
    #[error("wrong authorized party")]
    WrongAuthorizedParty,
    /// Past `exp`.
    #[error("expired")]
    Expired,
    /// `iat` in the future or older than [`MAX_ID_TOKEN_AGE`].
    #[error("issued at an unacceptable time")]
    IssuedAt,
    /// `nonce` missing or not the one sent.
    #[error("nonce mismatch")]
    Nonce,
    /// A required claim is missing or malformed.
    #[error("missing or malformed {0}")]
    Missing(&'static str),
    /// `prompt=login` was asked, but `auth_time` says the user
    /// authenticated before the login started (or is in the future).
    #[error("the user was not authenticated afresh")]
    AuthTime,
}

impl IdTokenError {
    /// A short machine-readable reason.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Signature => "signature",
            Self::WrongIssuer => "iss",
            Self::WrongAudience => "aud",
            Self::WrongAuthorizedParty => "azp",
            Self::Expired => "exp",
            Self::IssuedAt => "iat",
            Self::Nonce => "nonce",
            Self::Missing(c) => c,
            Self::AuthTime => "auth_time",
        }
    }
}

/// The user the provider vouched for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UpstreamIdentity {
    /// The provider's issuer.
    pub issuer: String,
    /// The provider's `sub`.
    pub subject: String,
    /// The email claim (per the mapping).
    pub email: Option<String>,
    /// Whether the provider verified it (`false` when it does not say).
    pub email_verified: bool,
    /// The name claim (per the mapping).
    pub name: Option<String>,
    /// Google's `hd`.
    pub hosted_domain: Option<String>,
}

/// The rules of OpenID Connect Core section 3.1.3.7 for the claims of an
/// ID token whose signature verified: `iss` equals the provider's issuer
/// exactly; `aud` contains the client id; with several audiences `azp` is
/// required, and when present it must be the client id; `exp` not passed
/// (with [`LEEWAY`]); `iat` present, not in the future and not older than
/// [`MAX_ID_TOKEN_AGE`]; `nonce` equal to the one sent (constant-time);
/// `sub` a non-empty string of at most 255 bytes.
///
/// # Errors
/// An [`IdTokenError`].
pub fn check_id_token_claims(
    claims: &Map<String, Value>,
    provider: &UpstreamProvider,
    nonce: &str,
    now: OffsetDateTime,
) -> Result<UpstreamIdentity, IdTokenError> {
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    if s("iss") != Some(provider.issuer.as_str()) {
        return Err(IdTokenError::WrongIssuer);
    }
    let aud: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or(IdTokenError::Missing("aud"))?,
        _ => return Err(IdTokenError::Missing("aud")),
    };
    if !aud.contains(&provider.client_id.as_str()) {
        return Err(IdTokenError::WrongAudience);
    }
    match claims.get("azp") {
        None if aud.len() > 1 => return Err(IdTokenError::WrongAuthorizedParty),
        None => {}
        Some(v) if v.as_str() == Some(provider.client_id.as_str()) => {}
        Some(_) => return Err(IdTokenError::WrongAuthorizedParty),
    }
    let time = |k: &'static str| {
        claims
            .get(k)
            .and_then(Value::as_i64)
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
            .ok_or(IdTokenError::Missing(k))
    };
    let exp = time("exp")?;
    // Checked: `exp` is the sender's; the largest timestamp plus the
    // leeway must not overflow.
    if now >= exp.checked_add(LEEWAY).unwrap_or(exp) {
        return Err(IdTokenError::Expired);
    }
    let iat = time("iat")?;
    if iat > now + LEEWAY || iat < now - MAX_ID_TOKEN_AGE - LEEWAY {
        return Err(IdTokenError::IssuedAt);
    }
    let sent = SecretString::from(nonce);
    if !s("nonce").is_some_and(|n| sent.ct_eq(n)) {
        return Err(IdTokenError::Nonce);
    }
    let sub = s("sub")
        .filter(|v| (1..=255).contains(&v.len()) && !v.chars().any(char::is_control))
        .ok_or(IdTokenError::Missing("sub"))?;
    let text = |k: &str| claim_text(claims, k);
    Ok(UpstreamIdentity {
        issuer: provider.issuer.as_str().to_owned(),
        subject: sub.to_owned(),
        email: text(&provider.claims.email),
        email_verified: claims.get(&provider.claims.email_verified).and_then(Value::as_bool) == Some(true),
        name: text(&provider.claims.name),
        hosted_domain: text("hd"),
    })
}

/// For a login started with `prompt=login` (and `max_age=0`, see
/// [`start_login`]): the ID token's `auth_time` (OpenID Connect Core 1.0
/// section 2, REQUIRED when `max_age` was sent) must say the user
/// authenticated after the login started (`started`, less [`LEEWAY`])
/// and not in the future.
///
/// # Errors
/// [`IdTokenError::Missing`] without `auth_time`, [`IdTokenError::AuthTime`]
/// when it is too old or in the future.
pub fn check_auth_time(
    claims: &Map<String, Value>,
    started: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), IdTokenError> {
    let at = claims
        .get("auth_time")
        .and_then(Value::as_i64)
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .ok_or(IdTokenError::Missing("auth_time"))?;
    if at < started - LEEWAY || at > now + LEEWAY {
        return Err(IdTokenError::AuthTime);
    }
    Ok(())
}

/// The rules a provider's settings impose on a signed-in user.
#[derive(Clone, Copy, Debug)]
pub struct ProviderRules<'a> {
    provider: &'a UpstreamProvider,
}

impl ProviderRules<'_> {
    /// `require_verified_email`, `allowed_email_domains` (the domain of a
    /// verified email, compared exactly and case-insensitively; a
    /// subdomain does not match) and `hosted_domain` (the ID token's `hd`).
    ///
    /// # Errors
    /// [`LoginFailure::RefusedByPolicy`] naming the rule.
    pub fn check(&self, user: &UpstreamIdentity) -> Result<(), LoginFailure> {
        let p = self.provider;
        let refuse = |reason: &'static str| LoginFailure::RefusedByPolicy { reason: reason.into() };
        let verified_email = user.email.as_deref().filter(|_| user.email_verified);
        if p.require_verified_email && verified_email.is_none() {
            return Err(refuse("email_not_verified"));
        }
        if !p.allowed_email_domains.is_empty() {
            let domain = verified_email
                .and_then(|e| e.rsplit_once('@'))
                .map(|(_, d)| d)
                .ok_or_else(|| refuse("email_not_verified"))?;
            if !p.allowed_email_domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
                return Err(refuse("email_domain"));
            }
        }
        if let Some(hd) = &p.hosted_domain
            && !user
                .hosted_domain
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(hd))
        {
            return Err(refuse("hosted_domain"));
        }
        Ok(())
    }
}

/// The local subject of an upstream user: `usr_` and 40 hex digits of
/// SHA-256 over the length-prefixed issuer and `sub`. Stable for as long
/// as the provider keeps `sub` (OpenID Connect Core section 2: never
/// reassigned), distinct across providers, and never derived from an
/// email address.
pub fn local_subject(issuer: &str, sub: &str) -> Subject {
    let mut h = sha2::Sha256::new();
    h.update((issuer.len() as u64).to_be_bytes());
    h.update(issuer.as_bytes());
    h.update((sub.len() as u64).to_be_bytes());
    h.update(sub.as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    Subject::new(format!("usr_{hex}")).unwrap_or_else(|_| unreachable!("44 ASCII characters"))
}

/// What the host's [`UserPolicy`] decided about a user the provider
/// vouched for (after the provider's own rules passed).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserDecision {
    /// Sign the user in with the derived [`local_subject`].
    Accept,
    /// Sign the user in as this subject (e.g. an existing account the
    /// host linked to this upstream identity).
    AcceptAs(Subject),
    /// Refuse; the reason goes to the audit log
    /// (`refused_by_policy:<reason>`), the MCP client gets
    /// `access_denied`.
    Refuse(Cow<'static, str>),
}

/// The host's hook to accept, refuse or map a user signed in upstream
/// (for example: only verified emails of one domain, only invited users,
/// link to an existing account).
///
/// # Security
/// It runs before anything is stored: a refusal creates no user, no
/// consent and no grant. An error refuses (`server_error`).
#[async_trait::async_trait]
pub trait UserPolicy: Send + Sync {
    /// The decision for `user`, who signed in at `provider` for `project`.
    ///
    /// # Errors
    /// [`crate::store::StoreError`] when the host's own lookups fail.
    async fn decide(
        &self,
        project: &crate::project_id::ProjectId,
        provider: &UpstreamProvider,
        user: &UpstreamIdentity,
    ) -> Result<UserDecision, crate::store::StoreError>;
}

/// Accepts every user the provider's rules let through.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptAllUsers;

#[async_trait::async_trait]
impl UserPolicy for AcceptAllUsers {
    async fn decide(
        &self,
        _project: &crate::project_id::ProjectId,
        _provider: &UpstreamProvider,
        _user: &UpstreamIdentity,
    ) -> Result<UserDecision, crate::store::StoreError> {
        Ok(UserDecision::Accept)
    }
}

fn append_query(base: &str, params: &[(&str, &str)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    let query = ser.finish();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{query}")
}

#[cfg(test)]
mod tests;
