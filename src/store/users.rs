//! Local users, remembered consent, upstream logins in flight and the
//! upstream client secrets: the traits and their in-memory
//! implementations.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::StoreError;
use crate::cimd::RequestSource;
use crate::grant::Subject;
use crate::project::ProjectId;
use crate::resource::{ResourceError, ResourceSet, ResourceUri};
use crate::scope::ScopeSet;
use crate::secret::{SecretHash, SecretString};
use crate::upstream::{ProviderName, UpstreamLogin};

/// A local user of a project, created by an upstream login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LocalUser {
    /// The project.
    pub project: ProjectId,
    /// The local subject ([`crate::upstream::local_subject`] of the
    /// upstream `iss` and `sub`, or the host's mapping).
    pub subject: Subject,
    /// The upstream issuer.
    pub upstream_issuer: String,
    /// The upstream `sub`.
    pub upstream_subject: String,
    /// `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `email_verified`.
    #[serde(default)]
    pub email_verified: bool,
    /// `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// First sign-in.
    #[serde(with = "time::serde::timestamp")]
    pub created_at: OffsetDateTime,
    /// Latest sign-in.
    #[serde(with = "time::serde::timestamp")]
    pub last_login_at: OffsetDateTime,
}

impl LocalUser {
    /// The claims ID tokens and userinfo may release.
    pub fn claims(&self) -> crate::jwt::UserClaims {
        let mut c = crate::jwt::UserClaims::default();
        c.email.clone_from(&self.email);
        c.email_verified = self.email.as_ref().map(|_| self.email_verified);
        c.name.clone_from(&self.name);
        c
    }
}

/// What a remembered consent is keyed by: the [RFC 8707] resource (the
/// audience of the tokens) a request was for.
///
/// The resources of a request are resolved before consent is asked
/// ([`crate::authorize::resolve_resources`]): a request that names none
/// gets the project's default resource, and is keyed by that resource,
/// exactly as if it had named it (so a consent given while the default
/// was one MCP server never covers another after the default changed).
/// Only a request that names none in a project WITHOUT a default resource
/// is keyed by [`ConsentTarget::NoResource`], which covers such requests
/// and nothing else.
///
/// [RFC 8707]: https://www.rfc-editor.org/rfc/rfc8707
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConsentTarget {
    /// A request without any resource (and no project default).
    NoResource,
    /// A resource (compared in its canonical form).
    Resource(ResourceUri),
}

impl ConsentTarget {
    /// The targets of a request for `resources`: one per resource, or
    /// [`ConsentTarget::NoResource`] alone when there is none.
    pub fn of(resources: &ResourceSet) -> Vec<Self> {
        if resources.is_empty() {
            return vec![Self::NoResource];
        }
        resources.iter().cloned().map(Self::Resource).collect()
    }

    /// The stored key: the empty string for [`ConsentTarget::NoResource`],
    /// the canonical URI of a resource.
    pub fn key(&self) -> &str {
        match self {
            Self::NoResource => "",
            Self::Resource(r) => r.canonical(),
        }
    }

    /// The target of a stored [`ConsentTarget::key`].
    ///
    /// # Errors
    /// A [`ResourceError`] when a non-empty key is not a resource URI.
    pub fn from_key(key: &str) -> Result<Self, ResourceError> {
        if key.is_empty() {
            Ok(Self::NoResource)
        } else {
            ResourceUri::parse(key).map(Self::Resource)
        }
    }
}

impl PartialOrd for ConsentTarget {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ConsentTarget {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(other.key())
    }
}

impl Serialize for ConsentTarget {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.key())
    }
}

impl<'de> Deserialize<'de> for ConsentTarget {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let key = String::deserialize(deserializer)?;
        Self::from_key(&key).map_err(serde::de::Error::custom)
    }
}

/// What a user allowed a client, remembered so a returning user is not
/// asked again unless the request asks for more: per resource ([RFC 8707]
/// audience, [`ConsentTarget`]), the scopes allowed for that resource.
///
/// A consent covers a request only if, for EVERY resource the request is
/// for, the requested scopes are a subset of the scopes allowed for that
/// resource ([`RememberedConsent::covers`]). Approving `mcp:read` for the
/// calendar server and later `mcp:write` for the payroll server therefore
/// never covers `mcp:write` for the calendar server: scopes are not pooled
/// across resources.
///
/// [RFC 8707]: https://www.rfc-editor.org/rfc/rfc8707
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RememberedConsent {
    /// Per resource, the union of the scopes of every approval for it.
    allowed: BTreeMap<ConsentTarget, ScopeSet>,
    /// The latest approval.
    #[serde(with = "time::serde::timestamp")]
    pub updated_at: OffsetDateTime,
}

impl RememberedConsent {
    /// A consent that allows nothing yet, last approved at `updated_at`
    /// (fill it with [`RememberedConsent::allow`] or
    /// [`RememberedConsent::allow_target`]).
    pub const fn new(updated_at: OffsetDateTime) -> Self {
        Self {
            allowed: BTreeMap::new(),
            updated_at,
        }
    }

    /// Adds an approval of `scopes` for `resources`: for each of its
    /// targets ([`ConsentTarget::of`]), the union with what was allowed
    /// for that target before.
    pub fn allow(&mut self, scopes: &ScopeSet, resources: &ResourceSet) {
        for target in ConsentTarget::of(resources) {
            self.allow_target(target, scopes);
        }
    }

    /// Adds `scopes` to what is allowed for `target` (a target allowed with
    /// no scopes is remembered too: it covers requests for no scopes).
    pub fn allow_target(&mut self, target: ConsentTarget, scopes: &ScopeSet) {
        let allowed = self.allowed.entry(target).or_default();
        for s in scopes.iter() {
            allowed.insert(s.clone());
        }
    }

    /// The scopes allowed for `target`, if it was ever allowed.
    pub fn scopes_for(&self, target: &ConsentTarget) -> Option<&ScopeSet> {
        self.allowed.get(target)
    }

    /// Every target allowed, with its scopes.
    pub fn targets(&self) -> impl Iterator<Item = (&ConsentTarget, &ScopeSet)> {
        self.allowed.iter()
    }

    /// Whether this consent covers a request for `scopes` on `resources`:
    /// every target of the request ([`ConsentTarget::of`]) was allowed,
    /// with at least the requested scopes. This judges what was allowed
    /// only; whether a remembered consent may answer a request at all
    /// (the client's identity must be assured) is the driver's to decide.
    pub fn covers(&self, scopes: &ScopeSet, resources: &ResourceSet) -> bool {
        ConsentTarget::of(resources)
            .iter()
            .all(|t| self.allowed.get(t).is_some_and(|allowed| scopes.is_subset_of(allowed)))
    }
}

/// Local users and their remembered consent, per project.
///
/// # Security
/// - [`UserStore::upsert`] is one atomic insert-or-update keyed by
///   `(project, subject)`: it keeps `created_at` of an existing user and
///   replaces the claims and `last_login_at`. It is called only after the
///   upstream login fully succeeded (nothing is half-created).
/// - [`UserStore::remember_consent`] adds the approved scopes to what is
///   allowed for EACH approved resource ([`RememberedConsent::allow`]: a
///   union per resource, never one pool of scopes across resources),
///   atomically, also across processes sharing one database (two
///   concurrent approvals both count);
///   [`UserStore::revoke_consent`] deletes it, after which the user is asked
///   again.
/// - Everything is scoped by project: a user or a consent of one project
///   is never visible in another.
/// - A storage failure is an error, never "no consent" turned into a
///   silent approval or "a consent" invented.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts or updates a user; returns the stored user.
    async fn upsert(&self, user: LocalUser) -> Result<LocalUser, StoreError>;

    /// A user.
    async fn user(&self, project: &ProjectId, subject: &Subject) -> Result<Option<LocalUser>, StoreError>;

    /// Adds `scopes` to what `subject` allowed `client_id` for each of
    /// `resources` ([`RememberedConsent::allow`]; no resource at all is
    /// [`ConsentTarget::NoResource`]).
    async fn remember_consent(
        &self,
        project: &ProjectId,
        subject: &Subject,
        client_id: &str,
        scopes: &ScopeSet,
        resources: &ResourceSet,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// What `subject` allowed `client_id`.
    async fn consent(
        &self,
        project: &ProjectId,
        subject: &Subject,
        client_id: &str,
    ) -> Result<Option<RememberedConsent>, StoreError>;

    /// Forgets all of it (every resource); returns whether there was one.
    async fn revoke_consent(&self, project: &ProjectId, subject: &Subject, client_id: &str)
    -> Result<bool, StoreError>;

    /// Forgets everything `subject` allowed any client in `project`
    /// (account deletion, "sign out everywhere"), also consents of clients
    /// that hold no grant any more; returns how many there were.
    ///
    /// # Security
    /// Must not leave a consent of the user behind, whatever its client:
    /// a forgotten one would approve that client silently on the next
    /// sign-in.
    async fn revoke_all_consents(&self, project: &ProjectId, subject: &Subject) -> Result<usize, StoreError>;
}

/// The result of [`UpstreamLoginStore::take`].
#[derive(Debug)]
#[non_exhaustive]
pub enum LoginTake {
    /// Taken now, by this call: the only success.
    Taken(Box<UpstreamLogin>),
    /// Already taken before (a replayed callback): the record, for the
    /// audit log. The caller shows an error page: the login's one answer
    /// went to the MCP client already.
    AlreadyTaken(Box<UpstreamLogin>),
    /// Not taken: the login expired before this call (a late callback).
    /// The record, so the MCP client can be told; it stays untaken and is
    /// purged later.
    Expired(Box<UpstreamLogin>),
    /// Not taken, and not shown: the caller's browser is not the one the
    /// login started in (its binding cookie is missing or another). The
    /// login stays as it was, for its own browser; the caller learns
    /// nothing of it (not the MCP client's redirect URI, not its `state`).
    WrongBrowser,
    /// No such login (never started, or purged).
    Unknown,
}

/// Upstream logins in flight, by the hash of their `state`.
///
/// # Security
/// - [`UpstreamLoginStore::take`] is atomic: of any number of concurrent
///   calls for one `state`, also from several processes sharing one
///   database, exactly one gets [`LoginTake::Taken`] (a single
///   conditional `UPDATE ... SET taken = true WHERE taken = false AND
///   expires_at > now`, or one lock); the others get
///   [`LoginTake::AlreadyTaken`].
/// - Expiry is the store's to honour: a login whose `expires_at` is not
///   after `now` is never [`LoginTake::Taken`] (it is
///   [`LoginTake::Expired`]).
/// - The browser binding is checked BEFORE anything else, in the same
///   atomic step: a call whose `browser_hash` is not the login's never
///   takes it and gets [`LoginTake::WrongBrowser`] whatever the login's
///   state, so whoever learns a `state` cannot spend the user's login nor
///   learn the MCP client's redirect URI and `state` from it.
/// - A taken record is kept (marked) until it expires, so a replay is
///   recognized; [`UpstreamLoginStore::purge`] deletes records whose
///   `expires_at` is not after `now`.
/// - [`UpstreamLoginStore::insert`] never overwrites: a `state` hash that
///   is already stored is an error (hashes of 256 random bits do not
///   collide; a duplicate is a bug or an attack).
/// - A full store refuses new logins rather than evicting live ones, with
///   a [`StoreError`] of kind [`super::StoreErrorKind::CapacityExceeded`]
///   (never a plain failure, so the server can answer
///   `temporarily_unavailable` rather than `server_error`). Logins are
///   started by anonymous requests, so there are two bounds on the live
///   (unexpired, taken or not) logins: one per project, so one project's
///   traffic cannot stop the sign-ins of another, and, when the caller
///   names the request's `source` (the client address,
///   [`RequestSource`]), one per `(project, source)`, so one address
///   cannot fill its project's share. The per-source count and the insert
///   are one atomic step, also across processes sharing one database: of
///   concurrent inserts from one source, never more than the bound
///   succeed. A login without a source counts against the project bound
///   only.
/// - Keys are scoped by project.
#[async_trait]
pub trait UpstreamLoginStore: Send + Sync {
    /// Stores a new login, started by a request from `source` (see
    /// `# Security` for both bounds).
    async fn insert(
        &self,
        project: &ProjectId,
        login: UpstreamLogin,
        source: Option<&RequestSource>,
    ) -> Result<(), StoreError>;

    /// Takes the login with this `state` hash for the browser whose
    /// binding cookie hashes to `browser_hash`, at `now` (see
    /// `# Security`).
    async fn take(
        &self,
        project: &ProjectId,
        state_hash: &SecretHash,
        browser_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<LoginTake, StoreError>;

    /// Deletes expired records; returns how many.
    async fn purge(&self, now: OffsetDateTime) -> Result<usize, StoreError>;
}

/// The client secrets this server uses at its upstream providers. Kept
/// out of [`crate::project::ProjectSettings`] so that settings can be shown
/// and logged without leaking them.
///
/// # Security
/// Return the secret of exactly `(project, provider)`; encrypt at rest.
#[async_trait]
pub trait UpstreamSecrets: Send + Sync {
    /// The client secret, if the provider has one.
    async fn client_secret(
        &self,
        project: &ProjectId,
        provider: &ProviderName,
    ) -> Result<Option<SecretString>, StoreError>;
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, StoreError> {
    m.lock()
        .map_err(|_| StoreError::new("a memory store lock was poisoned"))
}

type UserKey = (ProjectId, String);
type ConsentKey = (ProjectId, String, String);

/// In-memory [`UserStore`]. Atomicity: each call holds the map's lock for
/// its whole read-modify-write (the per-resource union is merged under it), so
/// concurrent approvals all count. One process only: users and consent
/// die with it (use the SQL stores to keep them).
#[derive(Debug, Default)]
pub struct MemoryUserStore {
    users: Mutex<HashMap<UserKey, LocalUser>>,
    consents: Mutex<HashMap<ConsentKey, RememberedConsent>>,
}

impl MemoryUserStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl UserStore for MemoryUserStore {
    async fn upsert(&self, user: LocalUser) -> Result<LocalUser, StoreError> {
        let mut users = lock(&self.users)?;
        let key = (user.project.clone(), user.subject.as_str().to_owned());
        let stored = match users.get(&key) {
            Some(old) => LocalUser {
                created_at: old.created_at,
                ..user
            },
            None => user,
        };
        users.insert(key, stored.clone());
        Ok(stored)
    }

    async fn user(&self, project: &ProjectId, subject: &Subject) -> Result<Option<LocalUser>, StoreError> {
        Ok(lock(&self.users)?
            .get(&(project.clone(), subject.as_str().to_owned()))
            .cloned())
    }

    async fn remember_consent(
        &self,
        project: &ProjectId,
        subject: &Subject,
        client_id: &str,
        scopes: &ScopeSet,
        resources: &ResourceSet,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut map = lock(&self.consents)?;
        let key = (project.clone(), subject.as_str().to_owned(), client_id.to_owned());
        let consent = map.entry(key).or_insert_with(|| RememberedConsent::new(now));
        consent.allow(scopes, resources);
        consent.updated_at = now;
        Ok(())
    }

    async fn consent(
        &self,
        project: &ProjectId,
        subject: &Subject,
        client_id: &str,
    ) -> Result<Option<RememberedConsent>, StoreError> {
        Ok(lock(&self.consents)?
            .get(&(project.clone(), subject.as_str().to_owned(), client_id.to_owned()))
            .cloned())
    }

    async fn revoke_consent(
        &self,
        project: &ProjectId,
        subject: &Subject,
        client_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(lock(&self.consents)?
            .remove(&(project.clone(), subject.as_str().to_owned(), client_id.to_owned()))
            .is_some())
    }

    async fn revoke_all_consents(&self, project: &ProjectId, subject: &Subject) -> Result<usize, StoreError> {
        let mut map = lock(&self.consents)?;
        let before = map.len();
        map.retain(|(p, s, _), _| !(p == project && s == subject.as_str()));
        Ok(before - map.len())
    }
}

/// The live logins a request source may have in one project by default
/// ([`MemoryUpstreamLoginStore::per_source_limit`],
/// `SqlOptions::upstream_logins_per_source`): a person signs in a few
/// times in ten minutes; an office behind one address may need more.
pub const DEFAULT_UPSTREAM_LOGINS_PER_SOURCE: u32 = 100;

/// One project's logins in flight: by `state` hash with their taken flag,
/// and the expiry times of the logins of each source.
#[derive(Debug, Default)]
struct ProjectLogins {
    logins: HashMap<SecretHash, (UpstreamLogin, bool)>,
    by_source: HashMap<String, Vec<OffsetDateTime>>,
}

impl ProjectLogins {
    fn forget_expired(&mut self, now: OffsetDateTime) -> usize {
        let before = self.logins.len();
        self.logins.retain(|_, (l, _)| l.expires_at > now);
        for expiries in self.by_source.values_mut() {
            expiries.retain(|e| *e > now);
        }
        self.by_source.retain(|_, e| !e.is_empty());
        before - self.logins.len()
    }
}

/// In-memory [`UpstreamLoginStore`], holding at most a fixed number of
/// records per project, and of live logins per request source in a
/// project. Atomicity: `insert` counts and stores, and `take` checks and
/// marks a record, under one lock, so both bounds are exact and exactly
/// one caller of one process gets a login; logins are not shared between
/// processes (instances behind a load balancer need the SQL stores, or
/// sticky routing of the provider's callback).
#[derive(Debug)]
pub struct MemoryUpstreamLoginStore {
    logins: Mutex<HashMap<ProjectId, ProjectLogins>>,
    max_entries: usize,
    per_source: usize,
}

impl Default for MemoryUpstreamLoginStore {
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl MemoryUpstreamLoginStore {
    /// A store of at most `max_entries` records per project (a full
    /// project's expired ones are purged first), and at most
    /// [`DEFAULT_UPSTREAM_LOGINS_PER_SOURCE`] live logins per source.
    pub fn new(max_entries: usize) -> Self {
        Self {
            logins: Mutex::new(HashMap::new()),
            max_entries,
            per_source: DEFAULT_UPSTREAM_LOGINS_PER_SOURCE as usize,
        }
    }

    /// Sets how many live logins one request source may have in one
    /// project (at least 1).
    #[must_use]
    pub fn per_source_limit(mut self, logins: usize) -> Self {
        self.per_source = logins.max(1);
        self
    }
}

#[async_trait]
impl UpstreamLoginStore for MemoryUpstreamLoginStore {
    async fn insert(
        &self,
        project: &ProjectId,
        login: UpstreamLogin,
        source: Option<&RequestSource>,
    ) -> Result<(), StoreError> {
        let mut projects = lock(&self.logins)?;
        let map = projects.entry(project.clone()).or_default();
        let now = login.created_at;
        if map.logins.len() >= self.max_entries {
            map.forget_expired(now);
            if map.logins.len() >= self.max_entries {
                return Err(StoreError::capacity_exceeded(
                    "too many upstream logins in flight for the project",
                ));
            }
        }
        if map.logins.contains_key(&login.state_hash) {
            return Err(StoreError::new("an upstream login with this state is already stored"));
        }
        if let Some(source) = source {
            let expiries = map.by_source.entry(source.as_str().to_owned()).or_default();
            expiries.retain(|e| *e > now);
            if expiries.len() >= self.per_source {
                return Err(StoreError::capacity_exceeded(
                    "too many upstream logins in flight from this source",
                ));
            }
            expiries.push(login.expires_at);
        }
        map.logins.insert(login.state_hash, (login, false));
        Ok(())
    }

    async fn take(
        &self,
        project: &ProjectId,
        state_hash: &SecretHash,
        browser_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<LoginTake, StoreError> {
        let mut projects = lock(&self.logins)?;
        Ok(
            match projects.get_mut(project).and_then(|m| m.logins.get_mut(state_hash)) {
                None => LoginTake::Unknown,
                Some((login, _)) if login.browser_hash != *browser_hash => LoginTake::WrongBrowser,
                Some((login, taken)) if *taken => LoginTake::AlreadyTaken(Box::new(login.duplicate())),
                Some((login, _)) if login.expires_at <= now => LoginTake::Expired(Box::new(login.duplicate())),
                Some((login, taken)) => {
                    *taken = true;
                    LoginTake::Taken(Box::new(login.duplicate()))
                }
            },
        )
    }

    async fn purge(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        let mut projects = lock(&self.logins)?;
        let mut removed = 0;
        for map in projects.values_mut() {
            removed += map.forget_expired(now);
        }
        projects.retain(|_, m| !m.logins.is_empty());
        Ok(removed)
    }
}

/// In-memory [`UpstreamSecrets`].
#[derive(Default)]
pub struct MemoryUpstreamSecrets {
    secrets: Mutex<HashMap<(ProjectId, ProviderName), SecretString>>,
}

impl std::fmt::Debug for MemoryUpstreamSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryUpstreamSecrets([redacted])")
    }
}

impl MemoryUpstreamSecrets {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the secret of `(project, provider)`.
    ///
    /// # Errors
    /// [`StoreError`] when the lock is poisoned.
    pub fn insert(&self, project: ProjectId, provider: ProviderName, secret: SecretString) -> Result<(), StoreError> {
        lock(&self.secrets)?.insert((project, provider), secret);
        Ok(())
    }
}

#[async_trait]
impl UpstreamSecrets for MemoryUpstreamSecrets {
    async fn client_secret(
        &self,
        project: &ProjectId,
        provider: &ProviderName,
    ) -> Result<Option<SecretString>, StoreError> {
        Ok(lock(&self.secrets)?.get(&(project.clone(), provider.clone())).cloned())
    }
}

/// Serves the claims of the [`UserStore`]'s users to ID tokens and the
/// userinfo endpoint: the bridge between upstream logins and the
/// [`super::UserClaimsSource`] of signed tokens. Subjects that are not
/// local users (a host's own login) get no claims.
#[derive(Clone)]
pub struct UserStoreClaims(pub std::sync::Arc<dyn UserStore>);

impl std::fmt::Debug for UserStoreClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserStoreClaims")
    }
}

#[async_trait]
impl super::UserClaimsSource for UserStoreClaims {
    async fn claims(&self, project: &ProjectId, subject: &Subject) -> Result<crate::jwt::UserClaims, StoreError> {
        Ok(self
            .0
            .user(project, subject)
            .await?
            .map(|u| u.claims())
            .unwrap_or_default())
    }
}
