//! The store contract suite (feature `test-util`): every `# Security` rule
//! of the storage traits, plus CRUD, expiry, purging and concurrency, as
//! one function a host runs against its own implementation. The crate
//! runs it against [`super::memory`], SQLite and PostgreSQL.
//!
//! # Running it on your own store
//!
//! Enable `test-util` in your dev-dependencies only, then, in a test with
//! a multi-threaded runtime:
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use authio_mcp::store::contract::{self, Stores};
//! # let my_store = Arc::new(authio_mcp::store::memory::MemoryGrantStore::new());
//! // Your store for the traits it implements, the in-memory ones for the rest.
//! let stores = Stores::memory().grants(my_store.clone());
//! if let Err(violation) = contract::run_all(&stores).await {
//!     panic!("{violation}");
//! }
//! # }
//! ```
//!
//! The suite uses fresh project ids (random) for everything it writes, so
//! it can run against a database that holds other data, and twice in a
//! row. It calls `purge_expired` / `purge` with a time far in the future,
//! which deletes the expired records of every project: run it on a test
//! database, never on production data. Concurrency checks start their
//! calls together (200 redemptions of one code, 200 issuing redemptions
//! of one code and 50 issuing rotations of one refresh token
//! ([`issuing`]), 100 uses of an initial
//! access token with `max_uses = 5`, 50 rotations of one refresh token,
//! 20 compare-and-swaps, 16 activations of one algorithm's next keys, 50
//! first uses of one `jti`, 100 takes of one upstream login, 16
//! approvals of one user's consent, 12 refreshes racing the revocation of
//! every grant of their user); a store backed by a pool needs a few
//! connections for them to actually overlap. The key, `jti`, upstream
//! login and revocation races take two handles
//! ([`signing_key_activation_race`], [`replay`], [`upstream_logins`],
//! [`subject_revocation_race`]): pass two stores on one database (two
//! pools) to race them as two processes.

use std::fmt;
use std::sync::Arc;

use futures_util::future::join_all;
use time::{Duration, OffsetDateTime};

use super::memory::{
    MemoryAdmissionStore, MemoryAuditLog, MemoryCimdCache, MemoryClientStore, MemoryGrantStore, MemoryIatStore,
    MemoryKeyStore, MemoryProjectStore, MemoryReplayStore,
};
use super::memory::{MemoryUpstreamLoginStore, MemoryUserStore};
use super::{
    AdmissionStore, AuditLog, AuditQuery, CimdCache, ClientStore, CodeConsumption, ConsentTarget, GrantSelector,
    GrantStore, IatStore, KeyStore, LocalUser, LoginTake, MAX_ACCESS_TOKENS_PER_GRANT, MAX_ROTATED_PER_GRANT,
    PageRequest, ProjectStore, RefreshRotation, ReplayCheck, ReplayStore, RevokeOutcome, UpstreamLoginStore,
    UseOutcome, UserStore,
};
use crate::audit::{AuditEvent, AuditKind};
use crate::cimd::{CachedDocument, ClientIdUrl};
use crate::client::{Client, ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
use crate::dcr::{IatError, IatOptions, IatRecord};
use crate::grant::{
    AccessTokenClaims, AccessTokenRecord, CodeRecord, Grant, GrantId, GrantSummary, RefreshTokenRecord, RotationMark,
    RotationNonce, Subject,
};
use crate::jose::{PrivateKey, SigningAlgorithm};
use crate::keys::{KeyId, KeyState, SigningKey};
use crate::pkce::{CodeChallenge, CodeVerifier};
use crate::project::{ProjectId, ProjectSettings};
use crate::redirect_uri::RedirectUriPolicy;
use crate::resource::ResourceSet;
use crate::scope::ScopeSet;
use crate::secret::SecretHash;
use crate::server::{RandomSource as _, SystemRandom};

/// The stores under test, one per trait (often the same object).
#[derive(Clone)]
#[non_exhaustive]
pub struct Stores {
    /// Projects.
    pub projects: Arc<dyn ProjectStore>,
    /// Registered clients.
    pub clients: Arc<dyn ClientStore>,
    /// Initial access tokens.
    pub iats: Arc<dyn IatStore>,
    /// Codes and tokens.
    pub grants: Arc<dyn GrantStore>,
    /// The CIMD cache.
    pub cimd: Arc<dyn CimdCache>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
    /// Signing keys.
    pub keys: Arc<dyn KeyStore>,
    /// Single-use assertion ids.
    pub replay: Arc<dyn ReplayStore>,
    /// Admission windows of registrations without a token.
    pub admissions: Arc<dyn AdmissionStore>,
    /// Local users and remembered consent.
    pub users: Arc<dyn UserStore>,
    /// Upstream logins in flight.
    pub upstream_logins: Arc<dyn UpstreamLoginStore>,
    /// The per-source bound [`Stores::upstream_logins`] was configured with
    /// (default [`super::DEFAULT_UPSTREAM_LOGINS_PER_SOURCE`]); its project
    /// bound must exceed it by at least 2.
    pub upstream_logins_per_source: u32,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stores")
    }
}

impl Stores {
    /// Fresh in-memory stores.
    pub fn memory() -> Self {
        Self {
            projects: Arc::new(MemoryProjectStore::new()),
            clients: Arc::new(MemoryClientStore::new()),
            iats: Arc::new(MemoryIatStore::new()),
            grants: Arc::new(MemoryGrantStore::new()),
            cimd: Arc::new(MemoryCimdCache::new()),
            audit: Arc::new(MemoryAuditLog::new()),
            keys: Arc::new(MemoryKeyStore::new()),
            replay: Arc::new(MemoryReplayStore::default()),
            admissions: Arc::new(MemoryAdmissionStore::new()),
            users: Arc::new(MemoryUserStore::new()),
            upstream_logins: Arc::new(MemoryUpstreamLoginStore::default()),
            upstream_logins_per_source: super::DEFAULT_UPSTREAM_LOGINS_PER_SOURCE,
        }
    }

    /// Replaces the project store.
    #[must_use]
    pub fn projects(mut self, store: Arc<dyn ProjectStore>) -> Self {
        self.projects = store;
        self
    }

    /// Replaces the client store.
    #[must_use]
    pub fn clients(mut self, store: Arc<dyn ClientStore>) -> Self {
        self.clients = store;
        self
    }

    /// Replaces the initial access token store.
    #[must_use]
    pub fn iats(mut self, store: Arc<dyn IatStore>) -> Self {
        self.iats = store;
        self
    }

    /// Replaces the grant store.
    #[must_use]
    pub fn grants(mut self, store: Arc<dyn GrantStore>) -> Self {
        self.grants = store;
        self
    }

    /// Replaces the CIMD cache.
    #[must_use]
    pub fn cimd(mut self, store: Arc<dyn CimdCache>) -> Self {
        self.cimd = store;
        self
    }

    /// Replaces the audit log.
    #[must_use]
    pub fn audit(mut self, store: Arc<dyn AuditLog>) -> Self {
        self.audit = store;
        self
    }

    /// Replaces the signing-key store.
    #[must_use]
    pub fn keys(mut self, store: Arc<dyn KeyStore>) -> Self {
        self.keys = store;
        self
    }

    /// Replaces the replay store.
    #[must_use]
    pub fn replay(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.replay = store;
        self
    }

    /// Replaces the admission store.
    #[must_use]
    pub fn admissions(mut self, store: Arc<dyn AdmissionStore>) -> Self {
        self.admissions = store;
        self
    }

    /// Replaces the user store.
    #[must_use]
    pub fn users(mut self, store: Arc<dyn UserStore>) -> Self {
        self.users = store;
        self
    }

    /// Replaces the upstream login store.
    #[must_use]
    pub fn upstream_logins(mut self, store: Arc<dyn UpstreamLoginStore>) -> Self {
        self.upstream_logins = store;
        self
    }

    /// Sets [`Stores::upstream_logins_per_source`].
    #[must_use]
    pub const fn upstream_logins_per_source(mut self, logins: u32) -> Self {
        self.upstream_logins_per_source = logins;
        self
    }

    /// One object implementing every trait (like the SQL stores).
    pub fn all<S>(store: Arc<S>) -> Self
    where
        S: ProjectStore
            + ClientStore
            + IatStore
            + GrantStore
            + CimdCache
            + AuditLog
            + KeyStore
            + ReplayStore
            + AdmissionStore
            + UserStore
            + UpstreamLoginStore
            + 'static,
    {
        Self {
            projects: store.clone(),
            clients: store.clone(),
            iats: store.clone(),
            grants: store.clone(),
            cimd: store.clone(),
            audit: store.clone(),
            keys: store.clone(),
            replay: store.clone(),
            admissions: store.clone(),
            users: store.clone(),
            upstream_logins: store,
            upstream_logins_per_source: super::DEFAULT_UPSTREAM_LOGINS_PER_SOURCE,
        }
    }
}

/// A broken rule: which, and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Violation {
    /// The rule, in words.
    pub rule: &'static str,
    /// What the store did instead.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store contract violated: {}: {}", self.rule, self.detail)
    }
}

impl std::error::Error for Violation {}

/// The outcome of one check.
pub type Outcome = Result<(), Violation>;

macro_rules! ensure {
    ($cond:expr, $rule:literal $(, $($detail:tt)+)?) => {
        if !$cond {
            return Err(Violation {
                rule: $rule,
                detail: ensure!(@detail $($($detail)+)?),
            });
        }
    };
    (@detail) => { String::from(stringify!($cond)) };
    (@detail $($detail:tt)+) => { format!($($detail)+) };
}

/// Unwraps a store result, or reports the error as a violation.
macro_rules! ok {
    ($e:expr, $rule:literal) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                return Err(Violation {
                    rule: $rule,
                    detail: format!("unexpected store error: {e}"),
                })
            }
        }
    };
}

/// Runs every check, stopping at the first violation.
///
/// # Errors
/// The first [`Violation`] found.
pub async fn run_all(stores: &Stores) -> Outcome {
    projects(stores.projects.as_ref()).await?;
    clients(stores.clients.as_ref()).await?;
    initial_access_tokens(stores.iats.as_ref()).await?;
    codes(stores.grants.as_ref()).await?;
    refresh_tokens(stores.grants.as_ref()).await?;
    access_tokens(stores.grants.as_ref()).await?;
    grant_revocation(stores.grants.as_ref()).await?;
    inserts_never_replace(stores.grants.as_ref()).await?;
    issuing(stores.grants.as_ref()).await?;
    expiry_at_consume(stores.grants.as_ref()).await?;
    bounded_grant_growth(stores.grants.as_ref()).await?;
    issuing_bounded_growth(stores.grants.as_ref()).await?;
    client_lifecycle(stores.clients.as_ref()).await?;
    grant_summaries(stores.grants.as_ref()).await?;
    bulk_revocation(stores.grants.as_ref()).await?;
    subject_revocation_race(stores.grants.as_ref(), stores.grants.as_ref()).await?;
    purge(stores.grants.as_ref(), stores.iats.as_ref()).await?;
    cimd_cache(stores.cimd.as_ref()).await?;
    audit(stores.audit.as_ref()).await?;
    signing_keys(stores.keys.as_ref()).await?;
    signing_key_activation_race(stores.keys.as_ref(), stores.keys.as_ref()).await?;
    replay(stores.replay.as_ref(), stores.replay.as_ref()).await?;
    admission_windows(stores.admissions.as_ref(), stores.admissions.as_ref()).await?;
    users(stores.users.as_ref()).await?;
    upstream_logins(stores.upstream_logins.as_ref(), stores.upstream_logins.as_ref()).await?;
    upstream_logins_per_source(
        stores.upstream_logins.as_ref(),
        stores.upstream_logins.as_ref(),
        stores.upstream_logins_per_source,
    )
    .await?;
    Ok(())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom.fill(&mut b);
    b
}

/// A fresh project id nobody else uses.
pub fn fresh_project() -> ProjectId {
    let b: [u8; 8] = random_bytes();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    ProjectId::new(format!("contract_{hex}"))
        .unwrap_or_else(|_| ProjectId::new("contract").unwrap_or_else(|_| unreachable_id()))
}

#[allow(clippy::panic)] // `contract` is a valid project id; unreachable
fn unreachable_id() -> ProjectId {
    panic!("valid project id refused")
}

/// Now, in whole seconds (SQL stores keep whole seconds).
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn hash() -> SecretHash {
    SecretHash::from_bytes(random_bytes())
}

fn grant(project: &ProjectId, at: OffsetDateTime) -> Grant {
    Grant {
        id: GrantId::from_random(&random_bytes()),
        project: project.clone(),
        client_id: ClientId::Registered(RegisteredClientId::from_random(&random_bytes())),
        subject: Subject::new("user_contract").unwrap_or_else(|_| unreachable_subject()),
        scopes: ScopeSet::parse("mcp:read mcp:write").unwrap_or_default(),
        resources: ResourceSet::new(),
        granted_at: at,
    }
}

#[allow(clippy::panic)]
fn unreachable_subject() -> Subject {
    panic!("valid subject refused")
}

fn code(grant: &Grant, expires_at: OffsetDateTime) -> CodeRecord {
    CodeRecord {
        hash: hash(),
        grant: grant.clone(),
        redirect_uri: "https://client.example/cb".to_owned(),
        code_challenge: CodeChallenge::s256(&CodeVerifier::from_random(&random_bytes())),
        // Stored and read back like every other field (OpenID Connect).
        nonce: Some("n-0S6_WzA2Mj".to_owned()),
        expires_at,
        consumed: false,
    }
}

fn refresh(grant: &Grant, at: OffsetDateTime, expires_at: OffsetDateTime) -> RefreshTokenRecord {
    RefreshTokenRecord {
        hash: hash(),
        grant: grant.clone(),
        scopes: grant.scopes.clone(),
        resources: grant.resources.clone(),
        issued_at: at,
        expires_at,
        rotated: false,
        rotation: None,
    }
}

fn access(grant: &Grant, at: OffsetDateTime, expires_at: OffsetDateTime) -> AccessTokenRecord {
    AccessTokenRecord {
        hash: hash(),
        project: grant.project.clone(),
        grant_id: grant.id.clone(),
        claims: AccessTokenClaims {
            iss: "https://as.example".to_owned(),
            sub: grant.subject.as_str().to_owned(),
            aud: vec!["https://mcp.example/mcp".to_owned()],
            client_id: grant.client_id.to_string(),
            scope: grant.scopes.to_string(),
            iat: at.unix_timestamp(),
            exp: expires_at.unix_timestamp(),
            jti: "jti".to_owned(),
            auth_time: Some(at.unix_timestamp()),
        },
        revoked: false,
    }
}

fn registered_client(at: OffsetDateTime) -> Result<Client, Violation> {
    let metadata: ClientMetadata = serde_json::from_value(serde_json::json!({
        "client_name": "Contract", "redirect_uris": ["https://client.example/cb"],
        "token_endpoint_auth_method": "none"
    }))
    .map_err(|e| fixture(&e))?;
    let validated = metadata
        .validate(MetadataProfile::Dcr, RedirectUriPolicy::strict())
        .map_err(|e| fixture(&e))?;
    let mut client = Client::new(
        ClientId::Registered(RegisteredClientId::from_random(&random_bytes())),
        validated,
        at,
    );
    client.secret_hash = Some(hash());
    Ok(client)
}

fn fixture(e: &dyn fmt::Display) -> Violation {
    Violation {
        rule: "fixtures build",
        detail: e.to_string(),
    }
}

fn iat(options: IatOptions, at: OffsetDateTime) -> Result<IatRecord, Violation> {
    IatRecord::issue(options, &random_bytes(), &random_bytes(), at)
        .map(|(record, _token)| record)
        .map_err(|e| fixture(&e))
}

/// `ProjectStore`: CRUD and an atomic compare-and-swap.
///
/// # Errors
/// The first [`Violation`].
pub async fn projects(store: &dyn ProjectStore) -> Outcome {
    let p = fresh_project();
    ensure!(
        ok!(store.get(&p).await, "get").is_none(),
        "an unknown project reads as None"
    );
    let a = ProjectSettings::default();
    ok!(store.put(&p, a.clone()).await, "put");
    ensure!(
        ok!(store.get(&p).await, "get").as_ref() == Some(&a),
        "put then get returns the settings"
    );
    let mut b = a.clone();
    b.mcp_enabled = true;
    ensure!(
        ok!(store.compare_and_swap(&p, &a, b.clone()).await, "cas"),
        "a swap from the current settings succeeds"
    );
    ensure!(
        ok!(store.get(&p).await, "get").as_ref() == Some(&b),
        "a swap stores the new settings"
    );
    let mut c = a.clone();
    c.cimd_enabled = true;
    ensure!(
        !ok!(store.compare_and_swap(&p, &a, c).await, "cas"),
        "a swap from stale settings fails"
    );
    ensure!(
        ok!(store.get(&p).await, "get").as_ref() == Some(&b),
        "a failed swap changes nothing"
    );
    ensure!(
        !ok!(store.compare_and_swap(&fresh_project(), &a, b.clone()).await, "cas"),
        "a swap on an unknown project fails"
    );
    // Concurrent swaps from the same starting settings: exactly one wins.
    let (p, b) = (&p, &b);
    let results = join_all((0..20u8).map(|i| {
        let mut next = b.clone();
        next.access_token_ttl = Duration::minutes(i64::from(i) + 1);
        async move { store.compare_and_swap(p, b, next).await }
    }))
    .await;
    let mut wins = 0;
    for r in results {
        wins += usize::from(ok!(r, "concurrent cas"));
    }
    ensure!(
        wins == 1,
        "of concurrent swaps from the same settings exactly one succeeds",
        "{wins} succeeded"
    );
    Ok(())
}

/// `ClientStore`: project scoping, insert refuses a taken id, delete,
/// count.
///
/// # Errors
/// The first [`Violation`].
pub async fn clients(store: &dyn ClientStore) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let at = now();
    let client = registered_client(at)?;
    let ClientId::Registered(id) = client.client_id.clone() else {
        return Err(fixture(&"not a registered client"));
    };
    ensure!(
        ok!(store.insert(&p, client.clone()).await, "insert"),
        "a new client is stored"
    );
    ensure!(
        ok!(store.get(&p, &id).await, "get").as_ref() == Some(&client),
        "get returns the client as stored"
    );
    ensure!(
        ok!(store.get(&q, &id).await, "get").is_none(),
        "a client is not visible in another project"
    );
    let mut other = registered_client(at)?;
    other.client_id = client.client_id.clone();
    other.secret_hash = Some(hash());
    ensure!(
        !ok!(store.insert(&p, other).await, "insert"),
        "insert refuses a taken id"
    );
    ensure!(
        ok!(store.get(&p, &id).await, "get").as_ref() == Some(&client),
        "a refused insert overwrites nothing"
    );
    ensure!(
        ok!(store.count(&p).await, "count") == 1,
        "count counts the project's clients"
    );
    ensure!(ok!(store.count(&q).await, "count") == 0, "count is per project");
    ensure!(
        !ok!(store.delete(&q, &id).await, "delete"),
        "delete in another project finds nothing"
    );
    ensure!(
        ok!(store.delete(&p, &id).await, "delete"),
        "delete reports an existing client"
    );
    ensure!(
        ok!(store.get(&p, &id).await, "get").is_none(),
        "a deleted client is gone"
    );
    ensure!(
        !ok!(store.delete(&p, &id).await, "delete"),
        "a second delete finds nothing"
    );
    let url = ClientIdUrl::parse("https://client.example/cimd.json").map_err(|e| fixture(&e))?;
    let mut cimd = registered_client(at)?;
    cimd.client_id = ClientId::Metadata(url);
    ensure!(
        store.insert(&p, cimd).await.is_err(),
        "only registered clients are stored"
    );
    Ok(())
}

/// `IatStore`: scoping, uniqueness, use counting under concurrency,
/// expiry, revocation, purge.
///
/// # Errors
/// The first [`Violation`].
pub async fn initial_access_tokens(store: &dyn IatStore) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    let two = iat(IatOptions::new().label("two").max_uses(2).ttl(Duration::hours(1)), t0)?;
    ensure!(
        ok!(store.insert(&p, two.clone()).await, "insert"),
        "a new token is stored"
    );
    ensure!(
        ok!(store.find(&p, &two.hash).await, "find").as_ref() == Some(&two),
        "find returns the record as stored"
    );
    ensure!(
        ok!(store.find(&q, &two.hash).await, "find").is_none(),
        "a token is unknown in another project"
    );
    let mut same_id = iat(IatOptions::new(), t0)?;
    same_id.id = two.id.clone();
    ensure!(
        !ok!(store.insert(&p, same_id).await, "insert"),
        "insert refuses a taken id"
    );
    let mut same_hash = iat(IatOptions::new(), t0)?;
    same_hash.hash = two.hash;
    ensure!(
        !ok!(store.insert(&p, same_hash).await, "insert"),
        "insert refuses a taken hash"
    );

    ensure!(
        matches!(ok!(store.use_once(&q, &two.hash, t0).await, "use"), UseOutcome::Unknown),
        "a use in another project is Unknown"
    );
    ensure!(
        matches!(ok!(store.use_once(&p, &hash(), t0).await, "use"), UseOutcome::Unknown),
        "an unknown hash is Unknown"
    );
    for n in 1..=2 {
        match ok!(store.use_once(&p, &two.hash, t0).await, "use") {
            UseOutcome::Used(r) => ensure!(
                r.uses == n,
                "use_once returns the new count",
                "uses {} after use {n}",
                r.uses
            ),
            other => ensure!(false, "a usable token is counted", "use {n}: {other:?}"),
        }
    }
    ensure!(
        ok!(store.use_once(&p, &two.hash, t0).await, "use") == UseOutcome::Unusable(IatError::Exhausted),
        "an exhausted token is not counted"
    );
    ensure!(
        ok!(store.find(&p, &two.hash).await, "find").map(|r| r.uses) == Some(2),
        "uses never exceed max_uses"
    );

    // Expiry: usable before, not at or after.
    let short = iat(IatOptions::new().ttl(Duration::minutes(5)), t0)?;
    ok!(store.insert(&p, short.clone()).await, "insert");
    ensure!(
        ok!(store.use_once(&p, &short.hash, t0 + Duration::minutes(5)).await, "use")
            == UseOutcome::Unusable(IatError::Expired),
        "an expired token is not counted"
    );
    ensure!(
        matches!(
            ok!(store.use_once(&p, &short.hash, t0 + Duration::minutes(4)).await, "use"),
            UseOutcome::Used(_)
        ),
        "a token is usable before its expiry"
    );

    // Revocation: once, keeps the first time, never used afterwards.
    let rev = iat(IatOptions::new(), t0)?;
    ok!(store.insert(&p, rev.clone()).await, "insert");
    ensure!(
        matches!(
            ok!(store.revoke(&q, &rev.id, t0).await, "revoke"),
            RevokeOutcome::Unknown
        ),
        "revoke in another project finds nothing"
    );
    match ok!(store.revoke(&p, &rev.id, t0).await, "revoke") {
        RevokeOutcome::Revoked(r) => ensure!(r.revoked_at == Some(t0), "revoke records the time"),
        other => ensure!(false, "revoke revokes", "{other:?}"),
    }
    match ok!(store.revoke(&p, &rev.id, t0 + Duration::minutes(1)).await, "revoke") {
        RevokeOutcome::AlreadyRevoked(r) => {
            ensure!(r.revoked_at == Some(t0), "a second revocation keeps the first time")
        }
        other => ensure!(false, "a second revocation reports AlreadyRevoked", "{other:?}"),
    }
    ensure!(
        ok!(store.use_once(&p, &rev.hash, t0).await, "use") == UseOutcome::Unusable(IatError::Revoked),
        "a revoked token is not counted"
    );

    let mut listed = ok!(store.list(&p).await, "list");
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    ensure!(
        listed.len() == 3,
        "list returns every record of the project",
        "{} records",
        listed.len()
    );
    ensure!(ok!(store.list(&q).await, "list").is_empty(), "list is per project");

    // Concurrency: max_uses = 5, 100 simultaneous uses, exactly 5 counted.
    let five = iat(IatOptions::new().max_uses(5), t0)?;
    ok!(store.insert(&p, five.clone()).await, "insert");
    let results = join_all((0..100).map(|_| store.use_once(&p, &five.hash, t0))).await;
    let mut used = 0;
    for r in results {
        match ok!(r, "concurrent use") {
            UseOutcome::Used(_) => used += 1,
            UseOutcome::Unusable(IatError::Exhausted) => {}
            other => ensure!(
                false,
                "concurrent uses are counted or refused as exhausted",
                "{other:?}"
            ),
        }
    }
    ensure!(
        used == 5,
        "of 100 concurrent uses of a max_uses = 5 token exactly 5 count",
        "{used} counted"
    );

    // Purge: the unusable go (exhausted `two` and `five`, revoked `rev`,
    // and `short` once expired), the usable stay.
    let keep = iat(IatOptions::new(), t0)?;
    ok!(store.insert(&p, keep.clone()).await, "insert");
    let removed = ok!(store.purge(t0 + Duration::minutes(10)).await, "purge");
    ensure!(removed >= 4, "purge reports what it removed", "{removed}");
    let left: Vec<_> = ok!(store.list(&p).await, "list").into_iter().map(|r| r.id).collect();
    ensure!(
        left == vec![keep.id.clone()],
        "purge removes expired, exhausted and revoked tokens only",
        "{left:?}"
    );
    Ok(())
}

/// `GrantStore` codes: scoping, single use, 200 concurrent redemptions.
///
/// # Errors
/// The first [`Violation`].
pub async fn codes(store: &dyn GrantStore) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    let g = grant(&p, t0);
    let c = code(&g, t0 + Duration::minutes(1));
    ok!(store.insert_code(c.clone()).await, "insert code");
    ensure!(
        ok!(store.code(&p, &c.hash).await, "code").as_ref() == Some(&c),
        "code returns the record as stored"
    );
    ensure!(
        ok!(store.code(&q, &c.hash).await, "code").is_none(),
        "a code is unknown in another project"
    );
    ensure!(
        ok!(store.consume_code(&q, &c.hash, t0).await, "consume") == CodeConsumption::NotFound,
        "consume in another project finds nothing"
    );
    ensure!(
        ok!(store.consume_code(&p, &hash(), t0).await, "consume") == CodeConsumption::NotFound,
        "an unknown code is NotFound"
    );
    let mut consumed = c.clone();
    consumed.consumed = true;
    ensure!(
        ok!(store.consume_code(&p, &c.hash, t0).await, "consume") == CodeConsumption::Consumed(consumed.clone()),
        "the first consume wins and returns the record"
    );
    ensure!(
        ok!(store.consume_code(&p, &c.hash, t0).await, "consume") == CodeConsumption::AlreadyConsumed(consumed.clone()),
        "a second consume is a replay"
    );
    ensure!(
        ok!(store.code(&p, &c.hash).await, "code").is_some_and(|r| r.consumed),
        "a consumed code reads as consumed"
    );

    let race = code(&g, t0 + Duration::minutes(1));
    ok!(store.insert_code(race.clone()).await, "insert code");
    let results = join_all((0..200).map(|_| store.consume_code(&p, &race.hash, t0))).await;
    let mut wins = 0;
    for r in results {
        match ok!(r, "concurrent consume") {
            CodeConsumption::Consumed(_) => wins += 1,
            CodeConsumption::AlreadyConsumed(_) => {}
            other => ensure!(
                false,
                "a concurrent consume is Consumed or AlreadyConsumed",
                "{other:?}"
            ),
        }
    }
    ensure!(
        wins == 1,
        "of 200 concurrent consumes of one code exactly one wins",
        "{wins} won"
    );
    Ok(())
}

/// `GrantStore` refresh tokens: rotation exactly once with its mark
/// recorded, reuse reported, the reuse grace decided by the winner's mark,
/// 50 concurrent rotations with and without a grace.
///
/// # Errors
/// The first [`Violation`].
pub async fn refresh_tokens(store: &dyn GrantStore) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    let no_grace = Duration::ZERO;
    let grace = Duration::seconds(5);
    let g = grant(&p, t0);
    let r1 = refresh(&g, t0, t0 + Duration::days(30));
    ok!(store.insert_refresh_token(r1.clone()).await, "insert refresh");
    ensure!(
        ok!(store.refresh_token(&p, &r1.hash).await, "refresh").as_ref() == Some(&r1),
        "refresh_token returns the record as stored"
    );
    ensure!(
        ok!(store.refresh_token(&q, &r1.hash).await, "refresh").is_none(),
        "a token is unknown in another project"
    );
    let r2 = refresh(&g, t0, t0 + Duration::days(30));
    let m2 = mark(t0, &r2);
    ensure!(
        ok!(
            store
                .rotate_refresh_token(&q, &r1.hash, r2.clone(), m2.clone(), grace)
                .await,
            "rotate"
        ) == RefreshRotation::NotFound,
        "rotation in another project finds nothing"
    );
    ensure!(
        ok!(store.refresh_token(&p, &r2.hash).await, "refresh").is_none(),
        "a refused rotation stores nothing"
    );
    let mut r1_rotated = r1.clone();
    r1_rotated.rotated = true;
    r1_rotated.rotation = Some(m2.clone());
    ensure!(
        ok!(
            store
                .rotate_refresh_token(&p, &r1.hash, r2.clone(), m2.clone(), grace)
                .await,
            "rotate"
        ) == RefreshRotation::Rotated(r1_rotated.clone()),
        "the first rotation wins and returns the old record with its mark"
    );
    ensure!(
        ok!(store.refresh_token(&p, &r2.hash).await, "refresh").as_ref() == Some(&r2),
        "rotation stores the new token"
    );
    ensure!(
        ok!(store.refresh_token(&p, &r1.hash).await, "refresh").as_ref() == Some(&r1_rotated),
        "the old token reads as rotated, with the winner's mark"
    );
    let r3 = refresh(&g, t0, t0 + Duration::days(30));
    ensure!(
        ok!(
            store
                .rotate_refresh_token(&p, &r1.hash, r3.clone(), mark(t0 + Duration::seconds(4), &r3), grace)
                .await,
            "rotate"
        ) == RefreshRotation::WithinGrace(r1_rotated.clone()),
        "a presentation within the grace gets the winner's record (and mark)"
    );
    ensure!(
        ok!(
            store
                .rotate_refresh_token(&p, &r1.hash, r3.clone(), mark(t0 + Duration::seconds(5), &r3), grace)
                .await,
            "rotate"
        ) == RefreshRotation::AlreadyRotated(r1_rotated.clone()),
        "a presentation at the end of the grace is reuse"
    );
    ensure!(
        ok!(
            store
                .rotate_refresh_token(&p, &r1.hash, r3.clone(), mark(t0, &r3), no_grace)
                .await,
            "rotate"
        ) == RefreshRotation::AlreadyRotated(r1_rotated),
        "without a grace a second rotation of one token is reuse"
    );
    ensure!(
        ok!(store.refresh_token(&p, &r3.hash).await, "refresh").is_none(),
        "a reuse or a presentation within the grace stores nothing"
    );
    ensure!(
        ok!(
            store
                .rotate_refresh_token(&p, &hash(), r3.clone(), mark(t0, &r3), grace)
                .await,
            "rotate"
        ) == RefreshRotation::NotFound,
        "an unknown token is NotFound"
    );

    // Concurrent rotations of one token: one winner; the others see its
    // mark (within the grace) or reuse (without one); one successor stored.
    let mut parent = r2;
    for (grace, losers) in [(no_grace, "AlreadyRotated"), (grace, "WithinGrace")] {
        let successors: Vec<_> = (0..50).map(|_| refresh(&g, t0, t0 + Duration::days(30))).collect();
        let results = join_all(
            successors
                .iter()
                .map(|s| store.rotate_refresh_token(&p, &parent.hash, s.clone(), mark(t0, s), grace)),
        )
        .await;
        let mut wins = 0;
        for r in results {
            match ok!(r, "concurrent rotate") {
                RefreshRotation::Rotated(_) => wins += 1,
                RefreshRotation::AlreadyRotated(_) if losers == "AlreadyRotated" => {}
                RefreshRotation::WithinGrace(_) if losers == "WithinGrace" => {}
                other => ensure!(
                    false,
                    "a concurrent rotation is Rotated or the expected loss",
                    "{losers}: {other:?}"
                ),
            }
        }
        ensure!(
            wins == 1,
            "of 50 concurrent rotations of one token exactly one wins",
            "{wins} won"
        );
        let mut stored = Vec::new();
        for s in &successors {
            if ok!(store.refresh_token(&p, &s.hash).await, "refresh").is_some() {
                stored.push(s.clone());
            }
        }
        ensure!(
            stored.len() == 1,
            "only the winning rotation stores its successor",
            "{} successors stored",
            stored.len()
        );
        if let Some(next) = stored.pop() {
            parent = next;
        }
    }
    Ok(())
}

/// `GrantStore::consume_code_issuing` and
/// `GrantStore::rotate_refresh_token_issuing`: only the call that consumes
/// (rotates) stores its tokens, and the grant's summary records their use;
/// a replay, a reuse, an unknown code or token, or a revoked grant stores
/// nothing; of 200 concurrent issuing consumes of one code (50 rotations
/// of one token) exactly one wins, its tokens exist and no loser's do.
///
/// # Errors
/// The first [`Violation`].
#[allow(clippy::too_many_lines)]
pub async fn issuing(store: &dyn GrantStore) -> Outcome {
    let p = fresh_project();
    let t0 = now();
    let g = grant_of(&p, "issuing", &registered_id(), t0);
    let c = code(&g, t0 + Duration::minutes(1));
    ok!(store.insert_code(c.clone()).await, "insert code");
    let t1 = t0 + Duration::seconds(10);
    let (r, a) = (
        refresh(&g, t1, t1 + Duration::days(30)),
        access(&g, t1, t1 + Duration::hours(1)),
    );
    let mut consumed = c.clone();
    consumed.consumed = true;
    ensure!(
        ok!(
            store
                .consume_code_issuing(&p, &c.hash, t0, Some(r.clone()), a.clone())
                .await,
            "consume issuing"
        ) == CodeConsumption::Consumed(consumed.clone()),
        "an issuing consume wins like consume_code and returns the record"
    );
    ensure!(
        ok!(store.refresh_token(&p, &r.hash).await, "refresh").as_ref() == Some(&r)
            && ok!(store.access_token(&p, &a.hash).await, "access").as_ref() == Some(&a),
        "the winning consume stores its refresh and access tokens"
    );
    let got = listed(store, &p, "issuing", t1).await?;
    ensure!(
        got.len() == 1
            && got.first().and_then(|s| s.last_used_at) == Some(t1)
            && got.first().map(|s| s.expires_at) == Some(r.expires_at),
        "an issuing consume extends the grant's summary like the inserts it replaces",
        "{got:?}"
    );
    let (r2, a2) = (
        refresh(&g, t1, t1 + Duration::days(30)),
        access(&g, t1, t1 + Duration::hours(1)),
    );
    ensure!(
        ok!(
            store
                .consume_code_issuing(&p, &c.hash, t0, Some(r2.clone()), a2.clone())
                .await,
            "consume issuing"
        ) == CodeConsumption::AlreadyConsumed(consumed),
        "a second issuing consume is a replay"
    );
    ensure!(
        ok!(store.refresh_token(&p, &r2.hash).await, "refresh").is_none()
            && ok!(store.access_token(&p, &a2.hash).await, "access").is_none(),
        "a replayed consume stores no token"
    );
    ensure!(
        ok!(
            store
                .consume_code_issuing(&p, &hash(), t0, Some(r2.clone()), a2.clone())
                .await,
            "consume issuing"
        ) == CodeConsumption::NotFound
            && ok!(store.refresh_token(&p, &r2.hash).await, "refresh").is_none()
            && ok!(store.access_token(&p, &a2.hash).await, "access").is_none(),
        "an unknown code is NotFound and stores no token"
    );

    // Without a refresh token: the access token alone.
    let c2 = code(&g, t0 + Duration::minutes(1));
    ok!(store.insert_code(c2.clone()).await, "insert code");
    let a3 = access(&g, t1, t1 + Duration::hours(1));
    ensure!(
        matches!(
            ok!(
                store.consume_code_issuing(&p, &c2.hash, t0, None, a3.clone()).await,
                "consume issuing"
            ),
            CodeConsumption::Consumed(_)
        ) && ok!(store.access_token(&p, &a3.hash).await, "access").as_ref() == Some(&a3),
        "an issuing consume without a refresh token stores the access token"
    );

    // A revoked grant's code issues nothing.
    let gr = grant_of(&p, "issuing", &registered_id(), t0);
    let cr = code(&gr, t0 + Duration::minutes(1));
    ok!(store.insert_code(cr.clone()).await, "insert code");
    ok!(store.revoke_grant(&p, &gr.id, t0).await, "revoke grant");
    let (rr, ar) = (
        refresh(&gr, t1, t1 + Duration::days(30)),
        access(&gr, t1, t1 + Duration::hours(1)),
    );
    ensure!(
        !matches!(
            ok!(
                store
                    .consume_code_issuing(&p, &cr.hash, t0, Some(rr.clone()), ar.clone())
                    .await,
                "consume issuing"
            ),
            CodeConsumption::Consumed(_)
        ) && ok!(store.refresh_token(&p, &rr.hash).await, "refresh").is_none()
            && ok!(store.access_token(&p, &ar.hash).await, "access").is_none(),
        "a revoked grant's code is not consumed and issues no token"
    );

    // Tokens of another grant than the code's (or the old token's): an
    // error, nothing stored, the code (token) still usable.
    let other = grant_of(&p, "issuing", &registered_id(), t0);
    let cm = code(&g, t0 + Duration::minutes(1));
    ok!(store.insert_code(cm.clone()).await, "insert code");
    let (rm, am) = (
        refresh(&other, t1, t1 + Duration::days(30)),
        access(&other, t1, t1 + Duration::hours(1)),
    );
    ensure!(
        store
            .consume_code_issuing(&p, &cm.hash, t0, Some(rm.clone()), am.clone())
            .await
            .is_err()
            && ok!(store.refresh_token(&p, &rm.hash).await, "refresh").is_none()
            && ok!(store.access_token(&p, &am.hash).await, "access").is_none()
            && ok!(store.code(&p, &cm.hash).await, "code").is_some_and(|c| !c.consumed),
        "an issuing consume with tokens of another grant fails and stores nothing"
    );
    let pm = refresh(&g, t1, t1 + Duration::days(30));
    ok!(store.insert_refresh_token(pm.clone()).await, "insert refresh");
    let (nm, am2) = (
        refresh(&other, t1, t1 + Duration::days(30)),
        access(&other, t1, t1 + Duration::hours(1)),
    );
    ensure!(
        store
            .rotate_refresh_token_issuing(&p, &pm.hash, nm.clone(), mark(t1, &nm), Duration::ZERO, am2.clone())
            .await
            .is_err()
            && ok!(store.refresh_token(&p, &nm.hash).await, "refresh").is_none()
            && ok!(store.access_token(&p, &am2.hash).await, "access").is_none()
            && ok!(store.refresh_token(&p, &pm.hash).await, "refresh").is_some_and(|r| !r.rotated),
        "an issuing rotation with tokens of another grant fails and stores nothing"
    );

    // A rotation of a revoked grant's token stores nothing.
    let gv = grant_of(&p, "issuing", &registered_id(), t0);
    let pv = refresh(&gv, t1, t1 + Duration::days(30));
    ok!(store.insert_refresh_token(pv.clone()).await, "insert refresh");
    ok!(store.revoke_grant(&p, &gv.id, t1).await, "revoke grant");
    let (nv, av) = (
        refresh(&gv, t1, t1 + Duration::days(30)),
        access(&gv, t1, t1 + Duration::hours(1)),
    );
    ensure!(
        ok!(
            store
                .rotate_refresh_token_issuing(
                    &p,
                    &pv.hash,
                    nv.clone(),
                    mark(t1, &nv),
                    Duration::seconds(5),
                    av.clone()
                )
                .await,
            "rotate issuing"
        ) == RefreshRotation::NotFound
            && ok!(store.refresh_token(&p, &nv.hash).await, "refresh").is_none()
            && ok!(store.access_token(&p, &av.hash).await, "access").is_none(),
        "an issuing rotation of a revoked grant's token is NotFound and stores nothing"
    );

    // 200 concurrent issuing consumes of one code.
    let race = code(&g, t0 + Duration::minutes(1));
    ok!(store.insert_code(race.clone()).await, "insert code");
    let tokens: Vec<_> = (0..200)
        .map(|_| {
            (
                refresh(&g, t1, t1 + Duration::days(30)),
                access(&g, t1, t1 + Duration::hours(1)),
            )
        })
        .collect();
    let results = join_all(
        tokens
            .iter()
            .map(|(r, a)| store.consume_code_issuing(&p, &race.hash, t0, Some(r.clone()), a.clone())),
    )
    .await;
    let mut winners = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match ok!(r, "concurrent consume issuing") {
            CodeConsumption::Consumed(_) => winners.push(i),
            CodeConsumption::AlreadyConsumed(_) => {}
            other => ensure!(
                false,
                "a concurrent issuing consume is Consumed or AlreadyConsumed",
                "{other:?}"
            ),
        }
    }
    ensure!(
        winners.len() == 1,
        "of 200 concurrent issuing consumes of one code exactly one wins",
        "{} won",
        winners.len()
    );
    for (i, (r, a)) in tokens.iter().enumerate() {
        let stored = (
            ok!(store.refresh_token(&p, &r.hash).await, "refresh").is_some(),
            ok!(store.access_token(&p, &a.hash).await, "access").is_some(),
        );
        let won = winners.contains(&i);
        ensure!(
            stored == (won, won),
            "the winning issuing consume's tokens exist and no loser's do",
            "call {i}: won {won}, stored {stored:?}"
        );
    }

    // Rotation: the successor and the access token only for the winner.
    let grace = Duration::seconds(5);
    let parent = refresh(&g, t1, t1 + Duration::days(30));
    ok!(store.insert_refresh_token(parent.clone()).await, "insert refresh");
    let t2 = t1 + Duration::seconds(10);
    let (n1, a4) = (
        refresh(&g, t2, t2 + Duration::days(30)),
        access(&g, t2, t2 + Duration::hours(1)),
    );
    let m1 = mark(t2, &n1);
    let mut parent_rotated = parent.clone();
    parent_rotated.rotated = true;
    parent_rotated.rotation = Some(m1.clone());
    ensure!(
        ok!(
            store
                .rotate_refresh_token_issuing(&p, &parent.hash, n1.clone(), m1, grace, a4.clone())
                .await,
            "rotate issuing"
        ) == RefreshRotation::Rotated(parent_rotated.clone()),
        "an issuing rotation wins like rotate_refresh_token and returns the old record with its mark"
    );
    ensure!(
        ok!(store.refresh_token(&p, &n1.hash).await, "refresh").as_ref() == Some(&n1)
            && ok!(store.access_token(&p, &a4.hash).await, "access").as_ref() == Some(&a4),
        "the winning rotation stores its successor and access token"
    );
    let got = listed(store, &p, "issuing", t2).await?;
    ensure!(
        got.len() == 1
            && got.first().and_then(|s| s.last_used_at) == Some(t2)
            && got.first().map(|s| s.expires_at) == Some(n1.expires_at),
        "an issuing rotation extends the grant's summary",
        "{got:?}"
    );
    let (n2, a5) = (
        refresh(&g, t2, t2 + Duration::days(30)),
        access(&g, t2, t2 + Duration::hours(1)),
    );
    ensure!(
        ok!(
            store
                .rotate_refresh_token_issuing(&p, &parent.hash, n2.clone(), mark(t2, &n2), grace, a5.clone())
                .await,
            "rotate issuing"
        ) == RefreshRotation::WithinGrace(parent_rotated.clone()),
        "a second issuing rotation within the grace gets the winner's record"
    );
    ensure!(
        ok!(
            store
                .rotate_refresh_token_issuing(&p, &parent.hash, n2.clone(), mark(t2, &n2), Duration::ZERO, a5.clone())
                .await,
            "rotate issuing"
        ) == RefreshRotation::AlreadyRotated(parent_rotated),
        "a second issuing rotation without a grace is reuse"
    );
    ensure!(
        ok!(store.refresh_token(&p, &n2.hash).await, "refresh").is_none()
            && ok!(store.access_token(&p, &a5.hash).await, "access").is_none(),
        "a rotation that did not win stores no token"
    );
    let tokens: Vec<_> = (0..50)
        .map(|_| {
            (
                refresh(&g, t2, t2 + Duration::days(30)),
                access(&g, t2, t2 + Duration::hours(1)),
            )
        })
        .collect();
    let results = join_all(
        tokens
            .iter()
            .map(|(n, a)| store.rotate_refresh_token_issuing(&p, &n1.hash, n.clone(), mark(t2, n), grace, a.clone())),
    )
    .await;
    let mut winners = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match ok!(r, "concurrent rotate issuing") {
            RefreshRotation::Rotated(_) => winners.push(i),
            RefreshRotation::WithinGrace(_) => {}
            other => ensure!(
                false,
                "a concurrent issuing rotation is Rotated or WithinGrace",
                "{other:?}"
            ),
        }
    }
    ensure!(
        winners.len() == 1,
        "of 50 concurrent issuing rotations of one token exactly one wins",
        "{} won",
        winners.len()
    );
    for (i, (n, a)) in tokens.iter().enumerate() {
        let stored = (
            ok!(store.refresh_token(&p, &n.hash).await, "refresh").is_some(),
            ok!(store.access_token(&p, &a.hash).await, "access").is_some(),
        );
        let won = winners.contains(&i);
        ensure!(
            stored == (won, won),
            "the winning issuing rotation's tokens exist and no loser's do",
            "call {i}: won {won}, stored {stored:?}"
        );
    }
    Ok(())
}

/// Expiry decided by the store call itself: a code expired at the
/// consume's `now`, or a refresh token expired at the rotation's
/// `mark.at`, is `NotFound` (as an unknown one: the driver answers
/// `invalid_grant` without revoking anything), is not consumed (rotated),
/// and its issuing call stores no token; one second earlier it is.
///
/// # Errors
/// The first [`Violation`].
#[allow(clippy::too_many_lines)]
pub async fn expiry_at_consume(store: &dyn GrantStore) -> Outcome {
    let p = fresh_project();
    let t0 = now();
    let g = grant_of(&p, "expiry", &registered_id(), t0);
    let exp = t0 + Duration::minutes(1);
    let before = exp - Duration::seconds(1);

    let c = code(&g, exp);
    ok!(store.insert_code(c.clone()).await, "insert code");
    ensure!(
        ok!(store.consume_code(&p, &c.hash, exp).await, "consume") == CodeConsumption::NotFound,
        "a code expired at now is not consumed (NotFound)"
    );
    ensure!(
        ok!(store.code(&p, &c.hash).await, "code").is_some_and(|r| !r.consumed),
        "a code refused as expired stays unconsumed"
    );
    ensure!(
        matches!(
            ok!(store.consume_code(&p, &c.hash, before).await, "consume"),
            CodeConsumption::Consumed(_)
        ),
        "a code one second before its expiry is consumed"
    );

    let c2 = code(&g, exp);
    ok!(store.insert_code(c2.clone()).await, "insert code");
    for refresh_token in [true, false] {
        let (r, a) = (
            refresh(&g, exp, exp + Duration::days(30)),
            access(&g, exp, exp + Duration::hours(1)),
        );
        ensure!(
            ok!(
                store
                    .consume_code_issuing(&p, &c2.hash, exp, refresh_token.then(|| r.clone()), a.clone())
                    .await,
                "consume issuing"
            ) == CodeConsumption::NotFound
                && ok!(store.refresh_token(&p, &r.hash).await, "refresh").is_none()
                && ok!(store.access_token(&p, &a.hash).await, "access").is_none(),
            "an issuing consume of a code expired at now is NotFound and stores no token",
            "with a refresh token: {refresh_token}"
        );
    }
    ensure!(
        ok!(store.code(&p, &c2.hash).await, "code").is_some_and(|r| !r.consumed),
        "a code refused as expired by an issuing consume stays unconsumed"
    );
    let (r, a) = (
        refresh(&g, before, before + Duration::days(30)),
        access(&g, before, before + Duration::hours(1)),
    );
    ensure!(
        matches!(
            ok!(
                store
                    .consume_code_issuing(&p, &c2.hash, before, Some(r.clone()), a.clone())
                    .await,
                "consume issuing"
            ),
            CodeConsumption::Consumed(_)
        ) && ok!(store.refresh_token(&p, &r.hash).await, "refresh").is_some()
            && ok!(store.access_token(&p, &a.hash).await, "access").is_some(),
        "an issuing consume one second before the code's expiry issues"
    );

    let grace = Duration::seconds(5);
    let old = refresh(&g, t0, exp);
    ok!(store.insert_refresh_token(old.clone()).await, "insert refresh");
    let n1 = refresh(&g, exp, exp + Duration::days(30));
    ensure!(
        ok!(
            store
                .rotate_refresh_token(&p, &old.hash, n1.clone(), mark(exp, &n1), grace)
                .await,
            "rotate"
        ) == RefreshRotation::NotFound
            && ok!(store.refresh_token(&p, &n1.hash).await, "refresh").is_none(),
        "a refresh token expired at the rotation's time is not rotated (NotFound)"
    );
    let (n2, a2) = (
        refresh(&g, exp, exp + Duration::days(30)),
        access(&g, exp, exp + Duration::hours(1)),
    );
    ensure!(
        ok!(
            store
                .rotate_refresh_token_issuing(&p, &old.hash, n2.clone(), mark(exp, &n2), grace, a2.clone())
                .await,
            "rotate issuing"
        ) == RefreshRotation::NotFound
            && ok!(store.refresh_token(&p, &n2.hash).await, "refresh").is_none()
            && ok!(store.access_token(&p, &a2.hash).await, "access").is_none(),
        "an issuing rotation of a token expired at its time is NotFound and stores no token"
    );
    ensure!(
        ok!(store.refresh_token(&p, &old.hash).await, "refresh").is_some_and(|r| !r.rotated),
        "a refresh token refused as expired stays unrotated"
    );
    let (n3, a3) = (
        refresh(&g, before, before + Duration::days(30)),
        access(&g, before, before + Duration::hours(1)),
    );
    ensure!(
        matches!(
            ok!(
                store
                    .rotate_refresh_token_issuing(&p, &old.hash, n3.clone(), mark(before, &n3), grace, a3.clone())
                    .await,
                "rotate issuing"
            ),
            RefreshRotation::Rotated(_)
        ) && ok!(store.access_token(&p, &a3.hash).await, "access").is_some(),
        "an issuing rotation one second before the token's expiry rotates"
    );
    Ok(())
}

/// A rotation mark naming `successor`.
fn mark(at: OffsetDateTime, successor: &RefreshTokenRecord) -> RotationMark {
    RotationMark::new(at, RotationNonce::from_random(random_bytes()), successor.hash)
}

/// `GrantStore` access tokens: scoping and single-token revocation.
///
/// # Errors
/// The first [`Violation`].
pub async fn access_tokens(store: &dyn GrantStore) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    let g = grant(&p, t0);
    let a = access(&g, t0, t0 + Duration::hours(1));
    let b = access(&g, t0, t0 + Duration::hours(1));
    ok!(store.insert_access_token(a.clone()).await, "insert access");
    ok!(store.insert_access_token(b.clone()).await, "insert access");
    ensure!(
        ok!(store.access_token(&p, &a.hash).await, "access").as_ref() == Some(&a),
        "access_token returns the record as stored"
    );
    ensure!(
        ok!(store.access_token(&q, &a.hash).await, "access").is_none(),
        "a token is unknown in another project"
    );
    ensure!(
        !ok!(store.revoke_access_token(&q, &a.hash).await, "revoke"),
        "revocation in another project finds nothing"
    );
    ensure!(
        ok!(store.revoke_access_token(&p, &a.hash).await, "revoke"),
        "revocation reports an existing token"
    );
    ensure!(
        ok!(store.access_token(&p, &a.hash).await, "access").is_some_and(|r| r.revoked),
        "a revoked token reads as revoked"
    );
    ensure!(
        ok!(store.access_token(&p, &b.hash).await, "access").is_some_and(|r| !r.revoked),
        "revoking one token leaves the others of its grant"
    );
    ensure!(
        !ok!(store.revoke_access_token(&p, &hash()).await, "revoke"),
        "an unknown token is not revoked"
    );
    Ok(())
}

/// `GrantStore::revoke_grant`: everything of the grant reads as absent,
/// including records inserted afterwards; other grants are untouched.
///
/// # Errors
/// The first [`Violation`].
pub async fn grant_revocation(store: &dyn GrantStore) -> Outcome {
    let p = fresh_project();
    let t0 = now();
    let (g, other) = (grant(&p, t0), grant(&p, t0));
    let c = code(&g, t0 + Duration::minutes(1));
    let r = refresh(&g, t0, t0 + Duration::days(30));
    let a = access(&g, t0, t0 + Duration::hours(1));
    let (oc, or, oa) = (
        code(&other, t0 + Duration::minutes(1)),
        refresh(&other, t0, t0 + Duration::days(30)),
        access(&other, t0, t0 + Duration::hours(1)),
    );
    for (code, refresh, access) in [(&c, &r, &a), (&oc, &or, &oa)] {
        ok!(store.insert_code(code.clone()).await, "insert code");
        ok!(store.insert_refresh_token(refresh.clone()).await, "insert refresh");
        ok!(store.insert_access_token(access.clone()).await, "insert access");
    }
    ok!(store.revoke_grant(&p, &g.id, t0).await, "revoke grant");
    ensure!(
        ok!(store.code(&p, &c.hash).await, "code").is_none(),
        "a revoked grant's code reads as absent"
    );
    ensure!(
        !matches!(
            ok!(store.consume_code(&p, &c.hash, t0).await, "consume"),
            CodeConsumption::Consumed(_)
        ),
        "a revoked grant's code cannot be consumed"
    );
    ensure!(
        ok!(store.refresh_token(&p, &r.hash).await, "refresh").is_none(),
        "a revoked grant's refresh token reads as absent"
    );
    ensure!(
        ok!(
            {
                let successor = refresh(&g, t0, t0 + Duration::days(1));
                let m = mark(t0, &successor);
                store
                    .rotate_refresh_token(&p, &r.hash, successor, m, Duration::seconds(5))
                    .await
            },
            "rotate"
        ) == RefreshRotation::NotFound,
        "a revoked grant's refresh token cannot rotate"
    );
    ensure!(
        ok!(store.access_token(&p, &a.hash).await, "access").is_none(),
        "a revoked grant's access token reads as absent"
    );

    // Inserts after the revocation (a request that raced it) are dropped.
    let (c2, r2, a2) = (
        code(&g, t0 + Duration::minutes(1)),
        refresh(&g, t0, t0 + Duration::days(30)),
        access(&g, t0, t0 + Duration::hours(1)),
    );
    ok!(store.insert_code(c2.clone()).await, "insert code");
    ok!(store.insert_refresh_token(r2.clone()).await, "insert refresh");
    ok!(store.insert_access_token(a2.clone()).await, "insert access");
    ensure!(
        ok!(store.code(&p, &c2.hash).await, "code").is_none(),
        "a code inserted after revocation reads as absent"
    );
    ensure!(
        ok!(store.refresh_token(&p, &r2.hash).await, "refresh").is_none(),
        "a refresh token inserted after revocation reads as absent"
    );
    ensure!(
        ok!(store.access_token(&p, &a2.hash).await, "access").is_none(),
        "an access token inserted after revocation reads as absent"
    );

    // Inserts racing the revocation: whatever the interleaving, none is
    // readable once both are done.
    let g3 = grant(&p, t0);
    let racing: Vec<_> = (0..40).map(|_| refresh(&g3, t0, t0 + Duration::days(30))).collect();
    let inserts = join_all(racing.iter().map(|r| store.insert_refresh_token(r.clone())));
    let (inserted, revoked) = futures_util::future::join(inserts, store.revoke_grant(&p, &g3.id, t0)).await;
    for i in inserted {
        ok!(i, "racing insert");
    }
    ok!(revoked, "racing revoke");
    for r in &racing {
        ensure!(
            ok!(store.refresh_token(&p, &r.hash).await, "refresh").is_none(),
            "a refresh token inserted concurrently with its grant's revocation reads as absent"
        );
    }

    ensure!(
        ok!(store.code(&p, &oc.hash).await, "code").is_some(),
        "revoking one grant leaves other grants' codes"
    );
    ensure!(
        ok!(store.refresh_token(&p, &or.hash).await, "refresh").is_some(),
        "revoking one grant leaves other grants' refresh tokens"
    );
    ensure!(
        ok!(store.access_token(&p, &oa.hash).await, "access").is_some(),
        "revoking one grant leaves other grants' access tokens"
    );
    Ok(())
}

/// Inserts are insert-if-absent: a second insert of a stored hash changes
/// nothing, so it cannot un-consume a code, un-revoke an access token or
/// revive a rotated refresh token.
///
/// # Errors
/// The first [`Violation`].
pub async fn inserts_never_replace(store: &dyn GrantStore) -> Outcome {
    let p = fresh_project();
    let t0 = now();
    let g = grant(&p, t0);

    let c = code(&g, t0 + Duration::minutes(1));
    ok!(store.insert_code(c.clone()).await, "insert code");
    ok!(store.consume_code(&p, &c.hash, t0).await, "consume");
    ok!(store.insert_code(c.clone()).await, "insert code again");
    ensure!(
        ok!(store.code(&p, &c.hash).await, "code").is_some_and(|r| r.consumed),
        "a second insert of a consumed code leaves it consumed"
    );
    ensure!(
        matches!(
            ok!(store.consume_code(&p, &c.hash, t0).await, "consume"),
            CodeConsumption::AlreadyConsumed(_)
        ),
        "a re-inserted consumed code cannot be consumed again"
    );

    let a = access(&g, t0, t0 + Duration::hours(1));
    ok!(store.insert_access_token(a.clone()).await, "insert access");
    ensure!(
        ok!(store.revoke_access_token(&p, &a.hash).await, "revoke"),
        "revocation reports an existing token"
    );
    ok!(store.insert_access_token(a.clone()).await, "insert access again");
    ensure!(
        ok!(store.access_token(&p, &a.hash).await, "access").is_some_and(|r| r.revoked),
        "a second insert of a revoked access token leaves it revoked (review finding L1)"
    );

    let r1 = refresh(&g, t0, t0 + Duration::days(30));
    ok!(store.insert_refresh_token(r1.clone()).await, "insert refresh");
    let mut changed = r1.clone();
    changed.expires_at = t0 + Duration::days(60);
    ok!(store.insert_refresh_token(changed).await, "insert refresh again");
    ensure!(
        ok!(store.refresh_token(&p, &r1.hash).await, "refresh").as_ref() == Some(&r1),
        "a second insert of a live refresh token keeps the first record"
    );
    let r2 = refresh(&g, t0, t0 + Duration::days(30));
    let m2 = mark(t0, &r2);
    ok!(
        store
            .rotate_refresh_token(&p, &r1.hash, r2.clone(), m2, Duration::ZERO)
            .await,
        "rotate"
    );
    ok!(
        store.insert_refresh_token(r1.clone()).await,
        "insert rotated refresh again"
    );
    ensure!(
        ok!(store.refresh_token(&p, &r1.hash).await, "refresh").is_some_and(|r| r.rotated),
        "a second insert of a rotated refresh token leaves it rotated"
    );
    let r3 = refresh(&g, t0, t0 + Duration::days(30));
    ensure!(
        matches!(
            ok!(
                store
                    .rotate_refresh_token(&p, &r1.hash, r3.clone(), mark(t0, &r3), Duration::ZERO)
                    .await,
                "rotate"
            ),
            RefreshRotation::AlreadyRotated(_)
        ),
        "a re-inserted rotated refresh token is reuse, not a fresh rotation"
    );
    Ok(())
}

/// A grant of `subject` for `client`, approved at `at`.
fn grant_of(project: &ProjectId, subject: &str, client: &ClientId, at: OffsetDateTime) -> Grant {
    let mut g = grant(project, at);
    g.subject = Subject::new(subject).unwrap_or_else(|_| unreachable_subject());
    g.client_id = client.clone();
    g
}

fn registered_id() -> ClientId {
    ClientId::Registered(RegisteredClientId::from_random(&random_bytes()))
}

/// `ClientStore` listing and disabling: a stable order by `(issued_at,
/// id)` across pages, project scoping, the first disabling time kept.
///
/// # Errors
/// The first [`Violation`].
pub async fn client_lifecycle(store: &dyn ClientStore) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    // Five clients, two of them issued in the same second (the id breaks
    // the tie), inserted out of order; one in another project.
    let mut clients = Vec::new();
    for offset in [3, 0, 1, 1, 2] {
        let c = registered_client(t0 + Duration::seconds(offset))?;
        ensure!(
            ok!(store.insert(&p, c.clone()).await, "insert"),
            "a new client is stored"
        );
        clients.push(c);
    }
    ok!(store.insert(&q, registered_client(t0)?).await, "insert");
    clients.sort_by(|a, b| (a.issued_at, a.client_id.as_str()).cmp(&(b.issued_at, b.client_id.as_str())));
    let mut listed = Vec::new();
    let mut page = PageRequest::first(2);
    let mut pages = 0;
    loop {
        let got = ok!(store.list(&p, &page).await, "list");
        pages += 1;
        ensure!(
            got.items.len() <= 2,
            "a page holds at most its limit",
            "{}",
            got.items.len()
        );
        listed.extend(got.items);
        match got.next {
            Some(next) => page = PageRequest::first(2).after(Some(next)),
            None => break,
        }
        ensure!(pages < 10, "listing ends");
    }
    ensure!(
        listed == clients,
        "the pages list every client of the project once, by issued_at then id",
        "{:?}",
        listed
            .iter()
            .map(|c| c.client_id.as_str().to_owned())
            .collect::<Vec<_>>()
    );
    ensure!(pages == 3, "five clients in pages of two are three pages", "{pages}");
    let one = ok!(store.list(&q, &PageRequest::first(100)).await, "list");
    ensure!(one.items.len() == 1 && one.next.is_none(), "a listing is per project");
    ensure!(
        ok!(store.list(&fresh_project(), &PageRequest::first(10)).await, "list")
            .items
            .is_empty(),
        "an unknown project lists nothing"
    );

    let target = clients.first().cloned().ok_or_else(|| fixture(&"no clients"))?;
    let ClientId::Registered(id) = target.client_id.clone() else {
        return Err(fixture(&"not a registered client"));
    };
    let t1 = t0 + Duration::minutes(1);
    let disabled = ok!(store.set_disabled(&p, &id, Some(t1)).await, "disable");
    ensure!(
        disabled.as_ref().and_then(|c| c.disabled_at) == Some(t1),
        "disabling returns the client, disabled at the given time"
    );
    ensure!(
        ok!(store.get(&p, &id).await, "get").and_then(|c| c.disabled_at) == Some(t1),
        "a disabled client reads back disabled"
    );
    let again = ok!(
        store.set_disabled(&p, &id, Some(t1 + Duration::hours(1))).await,
        "disable"
    );
    ensure!(
        again.and_then(|c| c.disabled_at) == Some(t1),
        "disabling a disabled client keeps the first time"
    );
    ensure!(
        ok!(store.set_disabled(&q, &id, Some(t1)).await, "disable").is_none(),
        "a client cannot be disabled through another project"
    );
    let first = ok!(store.list(&p, &PageRequest::first(1)).await, "list");
    ensure!(
        first.items.first().and_then(|c| c.disabled_at) == Some(t1),
        "a disabled client is listed, disabled"
    );
    let enabled = ok!(store.set_disabled(&p, &id, None).await, "enable");
    ensure!(
        enabled.as_ref() == Some(&target),
        "enabling returns the client as it was before"
    );
    ensure!(
        ok!(store.get(&p, &id).await, "get").as_ref() == Some(&target),
        "an enabled client reads back enabled"
    );
    let unknown = RegisteredClientId::from_random(&random_bytes());
    ensure!(
        ok!(store.set_disabled(&p, &unknown, Some(t1)).await, "disable").is_none(),
        "an unknown client is not disabled"
    );
    ensure!(ok!(store.delete(&p, &id).await, "delete"), "delete");
    let rest = ok!(store.list(&p, &PageRequest::first(100)).await, "list");
    ensure!(
        rest.items.len() == 4 && !rest.items.iter().any(|c| c.client_id == target.client_id),
        "a deleted client is no longer listed"
    );
    Ok(())
}

async fn listed(
    store: &dyn GrantStore,
    p: &ProjectId,
    subject: &str,
    at: OffsetDateTime,
) -> Result<Vec<GrantSummary>, Violation> {
    let subject = Subject::new(subject).unwrap_or_else(|_| unreachable_subject());
    let mut all = Vec::new();
    let mut page = PageRequest::first(2);
    for _ in 0..100 {
        let got = ok!(store.grants_of_subject(p, &subject, &page, at).await, "list grants");
        all.extend(got.items);
        match got.next {
            Some(next) => page = PageRequest::first(2).after(Some(next)),
            None => return Ok(all),
        }
    }
    Err(Violation {
        rule: "a grant listing ends",
        detail: "more than 100 pages".to_owned(),
    })
}

/// `GrantStore` summaries: created with the first code, extended by
/// tokens (never shortened), listed per user in a stable order across
/// pages, only while alive, gone with a revocation and never recreated
/// for a revoked grant.
///
/// # Errors
/// The first [`Violation`].
pub async fn grant_summaries(store: &dyn GrantStore) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    let (c1, c2) = (registered_id(), registered_id());
    let g = grant_of(&p, "alice", &c1, t0);
    let c = code(&g, t0 + Duration::minutes(1));
    ok!(store.insert_code(c.clone()).await, "insert code");
    let got = listed(store, &p, "alice", t0).await?;
    ensure!(
        got == vec![GrantSummary::new(g.clone(), c.expires_at)],
        "a stored code's grant is listed, unused, alive until the code expires",
        "{got:?}"
    );
    ensure!(
        listed(store, &q, "alice", t0).await?.is_empty(),
        "a grant is not listed in another project"
    );
    ensure!(
        listed(store, &p, "bob", t0).await?.is_empty(),
        "a grant is listed for its own user only"
    );
    let t1 = t0 + Duration::seconds(30);
    let r1 = refresh(&g, t1, t1 + Duration::days(30));
    ok!(store.insert_refresh_token(r1.clone()).await, "insert refresh");
    let a1 = access(&g, t1, t1 + Duration::hours(1));
    ok!(store.insert_access_token(a1).await, "insert access");
    let got = listed(store, &p, "alice", t1).await?;
    ensure!(
        got.len() == 1
            && got.first().and_then(|s| s.last_used_at) == Some(t1)
            && got.first().map(|s| s.expires_at) == Some(r1.expires_at),
        "a refresh token extends the summary: used at its issue, alive until it expires",
        "{got:?}"
    );
    let t2 = t1 + Duration::hours(2);
    let r2 = refresh(&g, t2, t2 + Duration::days(30));
    ok!(
        store
            .rotate_refresh_token(&p, &r1.hash, r2.clone(), mark(t2, &r2), Duration::ZERO)
            .await,
        "rotate"
    );
    let got = listed(store, &p, "alice", t2).await?;
    ensure!(
        got.first().and_then(|s| s.last_used_at) == Some(t2)
            && got.first().map(|s| s.expires_at) == Some(r2.expires_at),
        "a rotation extends the summary",
        "{got:?}"
    );
    // An older access token (or an earlier one arriving late) never
    // moves the summary back.
    ok!(
        store.insert_access_token(access(&g, t1, t1 + Duration::hours(1))).await,
        "insert access"
    );
    let got = listed(store, &p, "alice", t2).await?;
    ensure!(
        got.first().and_then(|s| s.last_used_at) == Some(t2)
            && got.first().map(|s| s.expires_at) == Some(r2.expires_at),
        "a summary's last use and expiry never go back",
        "{got:?}"
    );
    ensure!(
        listed(store, &p, "alice", r2.expires_at).await?.is_empty(),
        "a grant past its expiry is not listed"
    );
    // Access tokens alone keep a grant alive (no refresh tokens).
    let h = grant_of(&p, "alice", &c2, t0);
    ok!(
        store.insert_code(code(&h, t0 + Duration::minutes(1))).await,
        "insert code"
    );
    ok!(
        store.insert_access_token(access(&h, t1, t1 + Duration::hours(1))).await,
        "insert access"
    );
    let later = listed(store, &p, "alice", t0 + Duration::minutes(30)).await?;
    ensure!(
        later.iter().any(|s| s.grant.id == h.id && s.last_used_at == Some(t1)),
        "an access token extends its grant's summary",
        "{later:?}"
    );
    // Stable order: by granted_at, then id, across pages.
    let mut more = Vec::new();
    for i in 0..5 {
        let gi = grant_of(&p, "alice", &c2, t0 - Duration::seconds(i % 2));
        ok!(
            store.insert_code(code(&gi, t0 + Duration::minutes(1))).await,
            "insert code"
        );
        more.push(gi);
    }
    let all = listed(store, &p, "alice", t0).await?;
    let mut keys: Vec<_> = all
        .iter()
        .map(|s| (s.grant.granted_at, s.grant.id.as_str().to_owned()))
        .collect();
    let sorted = {
        let mut k = keys.clone();
        k.sort();
        k
    };
    ensure!(keys == sorted, "grants are listed by granted_at, then id", "{keys:?}");
    keys.dedup();
    ensure!(
        keys.len() == 7,
        "every live grant is listed once across pages",
        "{}",
        keys.len()
    );

    // Revocation removes the summary; a later insert for the revoked
    // grant does not bring it back.
    ok!(store.revoke_grant(&p, &g.id, t2).await, "revoke grant");
    ok!(
        store
            .insert_refresh_token(refresh(&g, t2, t2 + Duration::days(30)))
            .await,
        "insert refresh"
    );
    ok!(
        store.insert_code(code(&g, t2 + Duration::minutes(1))).await,
        "insert code"
    );
    ensure!(
        !listed(store, &p, "alice", t2).await?.iter().any(|s| s.grant.id == g.id),
        "a revoked grant is not listed, whatever is inserted for it afterwards"
    );
    Ok(())
}

/// Bounded growth and the grant summary through the issuing calls (the
/// path every token response takes): a grant whose tokens all come from
/// `consume_code_issuing` and `rotate_refresh_token_issuing` keeps its
/// newest [`MAX_ACCESS_TOKENS_PER_GRANT`] access tokens, drops the older
/// ones and its expired ones without a purge, and its summary follows
/// every issuance (`last_used_at` the newest issue time, `expires_at` the
/// latest expiry).
///
/// # Errors
/// The first [`Violation`].
pub async fn issuing_bounded_growth(store: &dyn GrantStore) -> Outcome {
    let p = fresh_project();
    let t0 = now();
    let g = grant_of(&p, "issuing-growth", &registered_id(), t0);
    let c = code(&g, t0 + Duration::minutes(1));
    ok!(store.insert_code(c.clone()).await, "insert code");
    // The first access token expires early: dropped once a later one is
    // issued after its expiry.
    let first_access = access(&g, t0, t0 + Duration::seconds(5));
    let mut current = refresh(&g, t0, t0 + Duration::days(30));
    ensure!(
        matches!(
            ok!(
                store
                    .consume_code_issuing(&p, &c.hash, t0, Some(current.clone()), first_access.clone())
                    .await,
                "consume issuing"
            ),
            CodeConsumption::Consumed(_)
        ),
        "the issuing consume wins"
    );
    let rotations = MAX_ACCESS_TOKENS_PER_GRANT + 6;
    let mut accesses = Vec::new();
    let mut last_at = t0;
    for i in 0..rotations {
        let at = t0 + Duration::seconds(10 + i64::try_from(i).unwrap_or(0));
        // Each rotation issues a refresh token that lives longer than the
        // last: the summary's expiry must follow.
        let next = refresh(
            &g,
            at,
            at + Duration::days(30) + Duration::seconds(i64::try_from(i).unwrap_or(0)),
        );
        let a = access(&g, at, at + Duration::hours(1));
        ensure!(
            matches!(
                ok!(
                    store
                        .rotate_refresh_token_issuing(
                            &p,
                            &current.hash,
                            next.clone(),
                            mark(at, &next),
                            Duration::ZERO,
                            a.clone()
                        )
                        .await,
                    "rotate issuing"
                ),
                RefreshRotation::Rotated(_)
            ),
            "each issuing rotation of the current token wins",
            "rotation {i}"
        );
        let got = listed(store, &p, "issuing-growth", at).await?;
        ensure!(
            got.len() == 1
                && got.first().and_then(|s| s.last_used_at) == Some(at)
                && got.first().map(|s| s.expires_at) == Some(next.expires_at),
            "an issuing rotation extends the grant's summary (last use, expiry)",
            "rotation {i}: {got:?}"
        );
        current = next;
        accesses.push(a);
        last_at = at;
    }
    ensure!(
        ok!(store.access_token(&p, &first_access.hash).await, "access").is_none(),
        "an issuing call drops the grant's expired access tokens"
    );
    newest_access_tokens_kept(
        store,
        &p,
        &accesses,
        "issuing calls keep at most MAX_ACCESS_TOKENS_PER_GRANT access tokens per grant",
        "issuing calls keep a grant's newest access tokens",
    )
    .await?;
    ensure!(
        ok!(store.refresh_token(&p, &current.hash).await, "refresh").as_ref() == Some(&current),
        "the newest refresh token is current",
        "after the rotation at {last_at}"
    );
    Ok(())
}

/// Of a grant's access tokens `accesses` (oldest first), only the newest
/// [`MAX_ACCESS_TOKENS_PER_GRANT`] are still read, each as inserted;
/// `dropped_rule` and `kept_rule` name the violation.
async fn newest_access_tokens_kept(
    store: &dyn GrantStore,
    p: &ProjectId,
    accesses: &[AccessTokenRecord],
    dropped_rule: &'static str,
    kept_rule: &'static str,
) -> Outcome {
    let dropped = accesses.len().saturating_sub(MAX_ACCESS_TOKENS_PER_GRANT);
    for (i, a) in accesses.iter().enumerate() {
        let read = ok!(store.access_token(p, &a.hash).await, "access");
        let (held, rule, detail) = if i < dropped {
            (
                read.is_none(),
                dropped_rule,
                format!("access token {i} of {} still read", accesses.len()),
            )
        } else {
            (read.as_ref() == Some(a), kept_rule, format!("access token {i}"))
        };
        if !held {
            return Err(Violation { rule, detail });
        }
    }
    Ok(())
}

/// Bounded growth per grant (see `GrantStore`'s docs): a grant rotated
/// many times keeps reuse detection (and the grace) for its newest
/// [`MAX_ROTATED_PER_GRANT`] rotated tokens, rebuilt from tombstones, and
/// forgets the older ones; it keeps its newest
/// [`MAX_ACCESS_TOKENS_PER_GRANT`] access tokens and drops the older and
/// the expired ones without a purge; purging reclaims the tombstones.
///
/// # Errors
/// The first [`Violation`].
pub async fn bounded_grant_growth(store: &dyn GrantStore) -> Outcome {
    let p = fresh_project();
    let t0 = now();
    let g = grant(&p, t0);
    let rotations = MAX_ROTATED_PER_GRANT * 2 + 5;
    let first = refresh(&g, t0, t0 + Duration::days(30));
    ok!(store.insert_refresh_token(first.clone()).await, "insert refresh");
    let mut tokens = vec![first];
    let mut marks = Vec::new();
    let mut accesses = Vec::new();
    for i in 0..rotations {
        let at = t0 + Duration::seconds(i64::try_from(i).unwrap_or(0) + 1);
        let next = refresh(&g, at, at + Duration::days(30));
        let m = mark(at, &next);
        let Some(parent) = tokens.last() else {
            return Err(fixture(&"no parent token"));
        };
        ensure!(
            matches!(
                ok!(
                    store
                        .rotate_refresh_token(&p, &parent.hash, next.clone(), m.clone(), Duration::ZERO)
                        .await,
                    "rotate"
                ),
                RefreshRotation::Rotated(_)
            ),
            "each rotation of the current token wins"
        );
        tokens.push(next);
        marks.push(m);
        let a = access(&g, at, at + Duration::hours(1));
        ok!(store.insert_access_token(a.clone()).await, "insert access");
        accesses.push(a);
    }
    // tokens[0..rotations] are rotated; tokens[rotations] is the current one.
    let forgotten = rotations - MAX_ROTATED_PER_GRANT;
    for (i, (t, m)) in tokens.iter().zip(&marks).enumerate() {
        let read = ok!(store.refresh_token(&p, &t.hash).await, "refresh");
        if i < forgotten {
            ensure!(
                read.is_none(),
                "rotated tokens beyond the newest MAX_ROTATED_PER_GRANT of a grant are forgotten",
                "rotated token {i} of {rotations} still read"
            );
            continue;
        }
        let mut expected = t.clone();
        expected.rotated = true;
        expected.rotation = Some(m.clone());
        ensure!(
            read.as_ref() == Some(&expected),
            "a remembered rotated token reads as its whole record, rotated, with its mark",
            "rotated token {i}: {read:?}"
        );
        let probe = refresh(&g, t0, t0 + Duration::days(1));
        ensure!(
            matches!(
                ok!(
                    store
                        .rotate_refresh_token(&p, &t.hash, probe.clone(), mark(m.at, &probe), Duration::ZERO)
                        .await,
                    "rotate"
                ),
                RefreshRotation::AlreadyRotated(_)
            ),
            "a remembered rotated token is reuse",
            "rotated token {i}"
        );
    }
    let (Some(last), Some(last_mark)) = (tokens.get(rotations - 1), marks.last()) else {
        return Err(fixture(&"no rotations"));
    };
    let probe = refresh(&g, t0, t0 + Duration::days(1));
    let within = ok!(
        store
            .rotate_refresh_token(
                &p,
                &last.hash,
                probe.clone(),
                mark(last_mark.at + Duration::seconds(1), &probe),
                Duration::seconds(5)
            )
            .await,
        "rotate"
    );
    ensure!(
        matches!(&within, RefreshRotation::WithinGrace(r) if r.rotation.as_ref() == Some(last_mark)),
        "a rotated token's tombstone answers the grace with the first rotation's mark",
        "{within:?}"
    );
    newest_access_tokens_kept(
        store,
        &p,
        &accesses,
        "access tokens beyond the newest MAX_ACCESS_TOKENS_PER_GRANT of a grant are dropped",
        "a grant's newest access tokens are kept",
    )
    .await?;
    // Expired access tokens of a grant go when it gets a new one.
    let h = grant(&p, t0);
    let short = access(&h, t0, t0 + Duration::seconds(10));
    ok!(store.insert_access_token(short.clone()).await, "insert access");
    let later = access(&h, t0 + Duration::seconds(20), t0 + Duration::hours(1));
    ok!(store.insert_access_token(later.clone()).await, "insert access");
    ensure!(
        ok!(store.access_token(&p, &short.hash).await, "access").is_none(),
        "a grant's expired access token is dropped when it gets a new one"
    );
    ensure!(
        ok!(store.access_token(&p, &later.hash).await, "access").is_some(),
        "the new access token is kept"
    );
    // A purge after the rotated tokens expired reclaims their tombstones,
    // while the current token lives on.
    let h2 = grant(&p, t0);
    let first = refresh(&h2, t0, t0 + Duration::days(1));
    ok!(store.insert_refresh_token(first.clone()).await, "insert refresh");
    let second = refresh(&h2, t0, t0 + Duration::days(90));
    ok!(
        store
            .rotate_refresh_token(&p, &first.hash, second.clone(), mark(t0, &second), Duration::ZERO)
            .await,
        "rotate"
    );
    ensure!(
        ok!(store.refresh_token(&p, &first.hash).await, "refresh").is_some_and(|r| r.rotated),
        "a rotated token is remembered before it expires"
    );
    ok!(store.purge_expired(t0 + Duration::days(2)).await, "purge");
    ensure!(
        ok!(store.refresh_token(&p, &first.hash).await, "refresh").is_none(),
        "purging reclaims a rotated token's tombstone once it expired"
    );
    ensure!(
        ok!(store.refresh_token(&p, &second.hash).await, "refresh").is_some_and(|r| !r.rotated),
        "purging keeps the grant's live token"
    );
    Ok(())
}

/// `GrantStore::revoke_grants`: per user, per client and one grant of a
/// user; in batches; everything of the selected grants reads as absent;
/// others untouched.
///
/// # Errors
/// The first [`Violation`].
pub async fn bulk_revocation(store: &dyn GrantStore) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    let (c1, c2) = (registered_id(), registered_id());
    let alice = Subject::new("alice").unwrap_or_else(|_| unreachable_subject());
    let bob = Subject::new("bob").unwrap_or_else(|_| unreachable_subject());
    // (grant, its refresh token, its access token)
    let mut live = Vec::new();
    for (project, subject, client) in [
        (&p, "alice", &c1),
        (&p, "alice", &c1),
        (&p, "alice", &c2),
        (&p, "bob", &c1),
        (&p, "bob", &c2),
        (&q, "alice", &c1),
    ] {
        let g = grant_of(project, subject, client, t0);
        ok!(
            store.insert_code(code(&g, t0 + Duration::minutes(1))).await,
            "insert code"
        );
        let r = refresh(&g, t0, t0 + Duration::days(30));
        let a = access(&g, t0, t0 + Duration::hours(1));
        ok!(store.insert_refresh_token(r.clone()).await, "insert refresh");
        ok!(store.insert_access_token(a.clone()).await, "insert access");
        live.push((g, r, a));
    }
    let [a1, a2, a3, b1, b2, other] = live.as_slice() else {
        return Err(fixture(&"six grants"));
    };
    let gone = |(g, r, a): &(Grant, RefreshTokenRecord, AccessTokenRecord)| {
        let (g, r, a) = (g.clone(), r.clone(), a.clone());
        async move {
            let refresh = store.refresh_token(&g.project, &r.hash).await;
            let access = store.access_token(&g.project, &a.hash).await;
            Ok::<bool, Violation>(ok!(refresh, "refresh").is_none() && ok!(access, "access").is_none())
        }
    };

    // One grant, only through its own user.
    let one = |subject: &Subject, g: &Grant| GrantSelector::Grant {
        subject: subject.clone(),
        grant: g.id.clone(),
    };
    ensure!(
        ok!(store.revoke_grants(&p, &one(&bob, &a1.0), 10, t0).await, "revoke").is_empty(),
        "another user's grant is not revoked through one's own"
    );
    ensure!(!gone(a1).await?, "a refused revocation changes nothing");
    let revoked = ok!(store.revoke_grants(&p, &one(&alice, &a1.0), 10, t0).await, "revoke");
    ensure!(
        revoked.iter().map(|s| s.grant.id.clone()).collect::<Vec<_>>() == vec![a1.0.id.clone()],
        "one grant of a user is revoked and returned"
    );
    ensure!(gone(a1).await?, "a revoked grant's tokens read as absent");
    ensure!(!gone(a2).await?, "revoking one grant leaves the user's others");

    // Every grant of a client, in batches of one.
    let mut batches = 0;
    let mut by_client = Vec::new();
    loop {
        let got = ok!(
            store.revoke_grants(&p, &GrantSelector::Client(c2.clone()), 1, t0).await,
            "revoke"
        );
        batches += 1;
        ensure!(got.len() <= 1, "a batch holds at most its limit");
        if got.is_empty() {
            break;
        }
        by_client.extend(got.into_iter().map(|s| s.grant.id));
        ensure!(batches < 10, "bulk revocation ends");
    }
    by_client.sort();
    let mut expected = vec![a3.0.id.clone(), b2.0.id.clone()];
    expected.sort();
    ensure!(
        by_client == expected,
        "revoking a client's grants revokes exactly them",
        "{by_client:?}"
    );
    ensure!(
        gone(a3).await? && gone(b2).await?,
        "a client's revoked grants read as absent"
    );
    ensure!(!gone(b1).await?, "another client's grants stay");

    // Every grant of a user.
    let all = ok!(
        store
            .revoke_grants(&p, &GrantSelector::Subject(alice.clone()), 100, t0)
            .await,
        "revoke"
    );
    ensure!(
        all.iter().map(|s| s.grant.id.clone()).collect::<Vec<_>>() == vec![a2.0.id.clone()],
        "revoking a user's grants revokes the ones left",
        "{all:?}"
    );
    ensure!(gone(a2).await?, "a user's revoked grants read as absent");
    ensure!(!gone(b1).await?, "another user's grants stay");
    ensure!(
        !gone(other).await?,
        "the same user in another project keeps their grants"
    );
    ensure!(
        listed(store, &p, "alice", t0).await?.is_empty(),
        "a user whose grants were revoked lists none"
    );
    ensure!(
        listed(store, &q, "alice", t0).await?.len() == 1,
        "the same user in another project still lists theirs"
    );
    ensure!(
        ok!(
            store.revoke_grants(&p, &GrantSelector::Subject(alice), 100, t0).await,
            "revoke"
        )
        .is_empty(),
        "revoking again finds nothing"
    );
    // What arrives for a revoked grant afterwards is dropped.
    let late = refresh(&a2.0, t0, t0 + Duration::days(30));
    ok!(store.insert_refresh_token(late.clone()).await, "insert refresh");
    ensure!(
        ok!(store.refresh_token(&p, &late.hash).await, "refresh").is_none(),
        "a token inserted after a bulk revocation reads as absent"
    );
    Ok(())
}

/// Refreshes racing the revocation of every grant of their user (account
/// deletion): 12 grants each rotate their refresh token and store an
/// access token through `a` while `b` revokes the user's grants, all at
/// once. Afterwards no refresh or access token of any of them is
/// readable, whatever the interleaving. Pass two stores on one database
/// to race two processes.
///
/// # Errors
/// The first [`Violation`].
pub async fn subject_revocation_race(a: &dyn GrantStore, b: &dyn GrantStore) -> Outcome {
    let p = fresh_project();
    let t0 = now();
    let client = registered_id();
    let mut heads = Vec::new();
    for _ in 0..12 {
        let g = grant_of(&p, "leaver", &client, t0);
        ok!(a.insert_code(code(&g, t0 + Duration::minutes(1))).await, "insert code");
        let r = refresh(&g, t0, t0 + Duration::days(30));
        ok!(a.insert_refresh_token(r.clone()).await, "insert refresh");
        heads.push(r);
    }
    let successors: Vec<_> = heads
        .iter()
        .map(|r| refresh(&r.grant, t0, t0 + Duration::days(30)))
        .collect();
    let accesses: Vec<_> = heads
        .iter()
        .map(|r| access(&r.grant, t0, t0 + Duration::hours(1)))
        .collect();
    let p = &p;
    let refreshes = join_all(
        heads
            .iter()
            .zip(&successors)
            .zip(&accesses)
            .map(|((old, new), at)| async move {
                let rotated = a
                    .rotate_refresh_token(p, &old.hash, new.clone(), mark(t0, new), Duration::ZERO)
                    .await?;
                if matches!(rotated, RefreshRotation::Rotated(_)) {
                    a.insert_access_token(at.clone()).await?;
                }
                Ok::<_, super::StoreError>(())
            }),
    );
    let revoke = async {
        let subject = Subject::new("leaver").unwrap_or_else(|_| unreachable_subject());
        let mut n = 0;
        loop {
            let got = b
                .revoke_grants(p, &GrantSelector::Subject(subject.clone()), 5, t0)
                .await?;
            n += got.len();
            if got.len() < 5 {
                return Ok::<_, super::StoreError>(n);
            }
        }
    };
    let (refreshed, revoked) = futures_util::future::join(refreshes, revoke).await;
    for r in refreshed {
        ok!(r, "racing refresh");
    }
    let revoked = ok!(revoked, "racing revocation");
    ensure!(revoked == 12, "every grant of the user is revoked", "{revoked}");
    for ((old, new), at) in heads.iter().zip(&successors).zip(&accesses) {
        for store in [a, b] {
            ensure!(
                ok!(store.refresh_token(p, &old.hash).await, "refresh").is_none()
                    && ok!(store.refresh_token(p, &new.hash).await, "refresh").is_none(),
                "no refresh token of a revoked user's grant stays readable after a racing refresh"
            );
            ensure!(
                ok!(store.access_token(p, &at.hash).await, "access").is_none(),
                "no access token of a revoked user's grant stays readable after a racing refresh"
            );
        }
    }
    ensure!(
        listed(b, p, "leaver", t0).await?.is_empty(),
        "a revoked user lists no grants after the race"
    );
    Ok(())
}

/// Purging: expired codes and tokens go, live ones stay; revocation
/// markers outlive what they guard.
///
/// # Errors
/// The first [`Violation`].
pub async fn purge(grants: &dyn GrantStore, iats: &dyn IatStore) -> Outcome {
    let p = fresh_project();
    let t0 = now();
    let g = grant(&p, t0);
    let expired = (
        code(&g, t0 + Duration::minutes(1)),
        refresh(&g, t0, t0 + Duration::hours(1)),
        access(&g, t0, t0 + Duration::minutes(30)),
    );
    let live = (
        code(&g, t0 + Duration::days(3)),
        refresh(&g, t0, t0 + Duration::days(30)),
        access(&g, t0, t0 + Duration::days(3)),
    );
    for (c, r, a) in [&expired, &live] {
        ok!(grants.insert_code(c.clone()).await, "insert code");
        ok!(grants.insert_refresh_token(r.clone()).await, "insert refresh");
        ok!(grants.insert_access_token(a.clone()).await, "insert access");
    }
    let at = t0 + Duration::days(2);
    let removed = ok!(grants.purge_expired(at).await, "purge");
    ensure!(removed >= 3, "purge reports what it removed", "{removed}");
    ensure!(
        ok!(grants.code(&p, &expired.0.hash).await, "code").is_none(),
        "purge removes expired codes"
    );
    ensure!(
        ok!(grants.refresh_token(&p, &expired.1.hash).await, "refresh").is_none(),
        "purge removes expired refresh tokens"
    );
    ensure!(
        ok!(grants.access_token(&p, &expired.2.hash).await, "access").is_none(),
        "purge removes expired access tokens"
    );
    ensure!(
        ok!(grants.code(&p, &live.0.hash).await, "code").is_some(),
        "purge keeps live codes"
    );
    ensure!(
        ok!(grants.refresh_token(&p, &live.1.hash).await, "refresh").is_some(),
        "purge keeps live refresh tokens"
    );
    ensure!(
        ok!(grants.access_token(&p, &live.2.hash).await, "access").is_some(),
        "purge keeps live access tokens"
    );

    // A revoked grant stays revoked through purges, for as long as
    // anything inserted for it could still be alive.
    ok!(grants.revoke_grant(&p, &g.id, t0).await, "revoke grant");
    let late = refresh(&g, t0, t0 + Duration::days(30));
    ok!(grants.insert_refresh_token(late.clone()).await, "insert refresh");
    ok!(grants.purge_expired(t0 + Duration::days(2)).await, "purge");
    ensure!(
        ok!(grants.refresh_token(&p, &late.hash).await, "refresh").is_none(),
        "a revoked grant stays revoked after a purge"
    );
    // A summary outlives its grant's expiry by the grace, then goes.
    let h = grant(&p, t0);
    let c = code(&h, t0 + Duration::minutes(1));
    ok!(grants.insert_code(c.clone()).await, "insert code");
    let (subject, p, id) = (&h.subject, &p, &h.id);
    let still = |at| async move {
        let page = grants.grants_of_subject(p, subject, &PageRequest::first(100), at).await;
        Ok::<bool, Violation>(ok!(page, "list grants").items.iter().any(|s| &s.grant.id == id))
    };
    ok!(grants.purge_expired(c.expires_at).await, "purge");
    ensure!(still(t0).await?, "a summary is kept through its grace");
    ok!(
        grants.purge_expired(c.expires_at + super::GRANT_SUMMARY_GRACE).await,
        "purge"
    );
    ensure!(!still(t0).await?, "purge removes summaries past their expiry and grace");
    ok!(iats.purge(at).await, "purge iats");
    Ok(())
}

fn cimd_entry(url: &ClientIdUrl, at: OffsetDateTime, ttl: Duration) -> Result<CachedDocument, Violation> {
    let doc: ClientMetadata = serde_json::from_value(serde_json::json!({
        "client_id": url.as_str(), "client_name": "Contract", "redirect_uris": ["https://client.example/cb"]
    }))
    .map_err(|e| fixture(&e))?;
    let validated = doc
        .validate(
            MetadataProfile::Cimd {
                allow_private_key_jwt: false,
            },
            RedirectUriPolicy::strict(),
        )
        .map_err(|e| fixture(&e))?;
    let client = Client::new(ClientId::Metadata(url.clone()), validated, at);
    Ok(CachedDocument::new(doc, client, at, at + ttl))
}

/// `CimdCache`: scoping, replace, remove, stored expiry kept.
///
/// # Errors
/// The first [`Violation`].
pub async fn cimd_cache(cache: &dyn CimdCache) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    let url = ClientIdUrl::parse("https://client.example/contract.json").map_err(|e| fixture(&e))?;
    ensure!(ok!(cache.get(&p, &url).await, "get").is_none(), "an empty cache misses");
    let first = cimd_entry(&url, t0, Duration::minutes(5))?;
    ok!(cache.put(&p, &url, first.clone()).await, "put");
    let got = ok!(cache.get(&p, &url).await, "get");
    ensure!(
        got.as_ref() == Some(&first),
        "get returns the entry as stored, with its expiry"
    );
    ensure!(
        ok!(cache.get(&q, &url).await, "get").is_none(),
        "an entry is not visible in another project"
    );
    let second = cimd_entry(&url, t0 + Duration::minutes(1), Duration::minutes(10))?;
    ok!(cache.put(&p, &url, second.clone()).await, "put");
    let got = ok!(cache.get(&p, &url).await, "get");
    ensure!(got.as_ref().is_none_or(|e| e == &second), "put replaces the entry");
    ok!(cache.remove(&p, &url).await, "remove");
    ensure!(
        ok!(cache.get(&p, &url).await, "get").is_none(),
        "remove removes the entry"
    );
    Ok(())
}

/// `AuditLog`: scoping, newest first, filters, pagination.
///
/// # Errors
/// The first [`Violation`].
pub async fn audit(log: &dyn AuditLog) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    for i in 0..25i64 {
        let kind = if i % 5 == 0 {
            AuditKind::IatRevoked {
                iat_id: format!("iat_{i}"),
            }
        } else {
            AuditKind::IatUsed {
                iat_id: format!("iat_{i}"),
                uses: 1,
            }
        };
        log.record(AuditEvent::new(p.clone(), t0 + Duration::seconds(i), kind))
            .await;
    }
    log.record(AuditEvent::new(q.clone(), t0, AuditKind::ProjectSettingsUpdated {}))
        .await;

    let page = ok!(log.query(&AuditQuery::new(p.clone()).limit(10)).await, "query");
    ensure!(
        page.events.len() == 10,
        "a page holds `limit` events",
        "{}",
        page.events.len()
    );
    ensure!(
        page.events.iter().all(|e| e.project_id == p),
        "events are scoped by project"
    );
    ensure!(
        page.events
            .windows(2)
            .all(|w| w.first().map(|a| a.at) >= w.get(1).map(|b| b.at)),
        "events come newest first"
    );
    ensure!(
        page.events.first().map(|e| e.at) == Some(t0 + Duration::seconds(24)),
        "the first event is the newest"
    );

    // Every event exactly once across pages.
    let mut seen = 0;
    let mut cursor = None;
    for _ in 0..10 {
        let page = ok!(
            log.query(&AuditQuery::new(p.clone()).limit(7).before(cursor)).await,
            "query"
        );
        seen += page.events.len();
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    ensure!(
        seen == 25 && cursor.is_none(),
        "pages cover every event once",
        "{seen} events"
    );

    let revoked = ok!(
        log.query(&AuditQuery::new(p.clone()).event("initial_access_token.revoked"))
            .await,
        "query"
    );
    ensure!(
        revoked.events.len() == 5
            && revoked
                .events
                .iter()
                .all(|e| e.name() == "initial_access_token.revoked"),
        "the name filter keeps only that event",
        "{} events",
        revoked.events.len()
    );
    let window = ok!(
        log.query(
            &AuditQuery::new(p.clone()).between(Some(t0 + Duration::seconds(10)), Some(t0 + Duration::seconds(15)))
        )
        .await,
        "query"
    );
    ensure!(
        window.events.len() == 5,
        "the time range is [since, until)",
        "{} events",
        window.events.len()
    );
    let other = ok!(log.query(&AuditQuery::new(q)).await, "query");
    ensure!(other.events.len() == 1, "another project sees only its own events");
    rejection_counts(log).await
}

/// `AuditLog::rejection_counts`: rejections counted per minute, event and
/// reason, scoped by project, other events not counted, 50 concurrent
/// rejections counted exactly.
///
/// # Errors
/// The first [`Violation`].
pub async fn rejection_counts(log: &dyn AuditLog) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    // The start of a minute, so that +30 s stays in it.
    let t0 = now();
    let minute = t0 - Duration::seconds(t0.unix_timestamp().rem_euclid(60));
    let rejected = |reason: &str| AuditKind::ClientRegistrationRejected {
        error: "invalid_token".to_owned(),
        reason: reason.to_owned(),
        iat_id: None,
    };
    join_all((0..50).map(|_| log.record(AuditEvent::new(p.clone(), minute, rejected("iat_missing"))))).await;
    log.record(AuditEvent::new(
        p.clone(),
        minute + Duration::seconds(30),
        rejected("iat_unknown"),
    ))
    .await;
    log.record(AuditEvent::new(
        p.clone(),
        minute + Duration::seconds(60),
        rejected("iat_missing"),
    ))
    .await;
    log.record(AuditEvent::new(
        p.clone(),
        minute,
        AuditKind::CimdFetchFailed {
            client_id: "https://c.example/client.json".to_owned(),
            reason: "timeout".to_owned(),
            http_status: None,
            detail: None,
        },
    ))
    .await;
    log.record(AuditEvent::new(p.clone(), minute, AuditKind::ProjectSettingsUpdated {}))
        .await;
    log.record(AuditEvent::new(q.clone(), minute, rejected("iat_missing")))
        .await;
    let counts = ok!(log.rejection_counts(&p).await, "rejection counts");
    let mut seen: Vec<(i64, String, String, u64)> = counts
        .iter()
        .map(|c| (c.minute.unix_timestamp(), c.event.clone(), c.reason.clone(), c.count))
        .collect();
    seen.sort();
    let m = minute.unix_timestamp();
    let mut expected = vec![
        (m, "oauth_client.cimd_fetch_failed".to_owned(), "timeout".to_owned(), 1),
        (
            m,
            "oauth_client.registration_rejected".to_owned(),
            "iat_missing".to_owned(),
            50,
        ),
        (
            m,
            "oauth_client.registration_rejected".to_owned(),
            "iat_unknown".to_owned(),
            1,
        ),
        (
            m + 60,
            "oauth_client.registration_rejected".to_owned(),
            "iat_missing".to_owned(),
            1,
        ),
    ];
    expected.sort();
    ensure!(
        seen == expected,
        "rejections are counted exactly per minute, event and reason, and nothing else is",
        "{seen:?}"
    );
    ensure!(
        counts
            .windows(2)
            .all(|w| w.first().map(|a| a.minute) <= w.get(1).map(|b| b.minute)),
        "counts come oldest minute first"
    );
    let other = ok!(log.rejection_counts(&q).await, "rejection counts");
    ensure!(
        other.len() == 1 && other.first().is_some_and(|c| c.count == 1),
        "rejection counts are scoped by project",
        "{other:?}"
    );
    Ok(())
}

fn signing_key(project: &ProjectId, alg: SigningAlgorithm, at: OffsetDateTime) -> Result<SigningKey, Violation> {
    // EdDSA and ES256 keys are cheap; a fresh seed per key.
    let pk = PrivateKey::generate(alg, &random_bytes())
        .or_else(|_| PrivateKey::generate(alg, &random_bytes()))
        .map_err(|e| fixture(&e))?;
    Ok(SigningKey::new(
        project.clone(),
        KeyId::from_random(alg, &random_bytes()),
        pk,
        at,
    ))
}

async fn key_state(store: &dyn KeyStore, project: &ProjectId, kid: &KeyId) -> Result<Option<SigningKey>, Violation> {
    Ok(ok!(store.keys(project).await, "keys")
        .into_iter()
        .find(|k| &k.kid == kid))
}

/// `KeyStore`: a taken kid is refused; keys are scoped by project and
/// round-trip (private key included); activation only from `next`,
/// retiring the active key of the same algorithm only; retire only an
/// active key; `delete_expired` only retired keys past publication;
/// `delete` one key of one project, whatever its state.
///
/// # Errors
/// The first [`Violation`].
pub async fn signing_keys(store: &dyn KeyStore) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    let a = signing_key(&p, SigningAlgorithm::EdDsa, t0)?;
    let b = signing_key(&p, SigningAlgorithm::EdDsa, t0)?;
    let e = signing_key(&p, SigningAlgorithm::Es256, t0)?;
    ensure!(ok!(store.insert(a.clone()).await, "insert key"), "a new kid is stored");
    ensure!(
        !ok!(store.insert(a.clone()).await, "insert key"),
        "a taken kid is refused"
    );
    ensure!(ok!(store.insert(e.clone()).await, "insert key"), "a new kid is stored");
    ensure!(
        ok!(store.keys(&q).await, "keys").is_empty(),
        "keys are scoped by project"
    );
    ensure!(
        !ok!(store.activate(&q, &a.kid, t0, t0).await, "activate"),
        "a key cannot be activated through another project"
    );
    let stored = key_state(store, &p, &a.kid).await?;
    ensure!(
        stored.as_ref().is_some_and(|k| k.state == KeyState::Next
            && k.created_at == t0
            && k.activated_at.is_none()
            && k.algorithm() == SigningAlgorithm::EdDsa
            && k.private_key.public_jwk("x") == a.private_key.public_jwk("x")),
        "a key reads back as stored, its private key included",
        "{stored:?}"
    );

    ensure!(
        ok!(store.activate(&p, &a.kid, t0, t0).await, "activate"),
        "a next key activates"
    );
    ensure!(
        ok!(store.activate(&p, &e.kid, t0, t0).await, "activate"),
        "a next key activates"
    );
    ensure!(
        !ok!(store.activate(&p, &a.kid, t0, t0).await, "activate"),
        "only a next key activates"
    );
    ensure!(ok!(store.insert(b.clone()).await, "insert key"), "a new kid is stored");
    let t1 = t0 + Duration::days(30);
    let until = t1 + Duration::minutes(20);
    ensure!(
        ok!(store.activate(&p, &b.kid, t1, until).await, "activate"),
        "a next key activates"
    );
    let old = key_state(store, &p, &a.kid).await?;
    ensure!(
        old.as_ref().is_some_and(|k| k.state == KeyState::Retired
            && k.retired_at == Some(t1)
            && k.publish_until == Some(until)
            && k.private_key.public_jwk("x") == a.private_key.public_jwk("x")),
        "activation retires the active key of its algorithm until the given time",
        "{old:?}"
    );
    let new = key_state(store, &p, &b.kid).await?;
    ensure!(
        new.as_ref()
            .is_some_and(|k| k.state == KeyState::Active && k.activated_at == Some(t1)),
        "the activated key is active from now",
        "{new:?}"
    );
    ensure!(
        key_state(store, &p, &e.kid)
            .await?
            .is_some_and(|k| k.state == KeyState::Active),
        "activation leaves other algorithms alone"
    );

    ensure!(
        ok!(
            store.delete_expired(&p, until - Duration::SECOND).await,
            "delete expired"
        ) == 0,
        "a retired key stays until its publish_until"
    );
    ensure!(
        ok!(store.delete_expired(&p, until).await, "delete expired") == 1,
        "a retired key goes at its publish_until"
    );
    ensure!(key_state(store, &p, &a.kid).await?.is_none(), "a deleted key is gone");
    ensure!(
        ok!(store.keys(&p).await, "keys").len() == 2,
        "active keys are never deleted"
    );
    ensure!(
        !ok!(store.retire(&p, &a.kid, t1, until).await, "retire"),
        "a missing key does not retire"
    );
    ensure!(
        !ok!(store.retire(&q, &e.kid, t1, until).await, "retire"),
        "a key cannot be retired through another project"
    );
    ensure!(
        ok!(store.retire(&p, &e.kid, t1, until).await, "retire"),
        "an active key retires"
    );
    ensure!(
        !ok!(store.retire(&p, &e.kid, t1, until).await, "retire"),
        "a retired key does not retire again"
    );
    ensure!(
        key_state(store, &p, &e.kid)
            .await?
            .is_some_and(|k| k.state == KeyState::Retired
                && k.retired_at == Some(t1)
                && k.publish_until == Some(until)),
        "retire sets the state and times"
    );
    ensure!(
        key_state(store, &p, &b.kid)
            .await?
            .is_some_and(|k| k.state == KeyState::Active),
        "retiring one algorithm's key leaves the others"
    );
    // Emergency revocation: one key goes, whatever its state.
    ensure!(
        !ok!(store.delete(&q, &b.kid).await, "delete key"),
        "a key cannot be deleted through another project"
    );
    let n = signing_key(&p, SigningAlgorithm::EdDsa, t1)?;
    ensure!(ok!(store.insert(n.clone()).await, "insert key"), "a new kid is stored");
    for (kid, what) in [(&b.kid, "active"), (&n.kid, "next"), (&e.kid, "retired")] {
        ensure!(
            ok!(store.delete(&p, kid).await, "delete key"),
            "delete removes a key whatever its state",
            "{what}"
        );
        ensure!(
            key_state(store, &p, kid).await?.is_none(),
            "a deleted key is gone",
            "{what}"
        );
        ensure!(
            !ok!(store.delete(&p, kid).await, "delete key"),
            "a deleted key is not deleted twice",
            "{what}"
        );
    }
    ensure!(
        ok!(store.keys(&p).await, "keys").is_empty(),
        "every key of the project was deleted"
    );
    Ok(())
}

/// `KeyStore::activate` under concurrency: 16 next keys of one algorithm
/// activated at once, half through `a`, half through `b` (pass two
/// handles on one database to race two processes), leave exactly one
/// active key and no next key; the losers are retired and deletable at
/// once, the previously active key is retired until the given time.
///
/// # Errors
/// The first [`Violation`].
pub async fn signing_key_activation_race(a: &dyn KeyStore, b: &dyn KeyStore) -> Outcome {
    let p = fresh_project();
    let t0 = now();
    let first = signing_key(&p, SigningAlgorithm::EdDsa, t0)?;
    ensure!(ok!(a.insert(first.clone()).await, "insert key"), "a new kid is stored");
    ensure!(
        ok!(a.activate(&p, &first.kid, t0, t0).await, "activate"),
        "a next key activates"
    );
    let mut keys = Vec::new();
    for _ in 0..16 {
        let k = signing_key(&p, SigningAlgorithm::EdDsa, t0)?;
        ensure!(ok!(a.insert(k.clone()).await, "insert key"), "a new kid is stored");
        keys.push(k);
    }
    let t1 = t0 + Duration::days(30);
    let until = t1 + Duration::hours(1);
    let results = join_all(keys.iter().enumerate().map(|(i, k)| {
        let store = if i % 2 == 0 { a } else { b };
        store.activate(&p, &k.kid, t1, until)
    }))
    .await;
    let mut wins = 0;
    for r in results {
        if ok!(r, "concurrent activate") {
            wins += 1;
        }
    }
    ensure!(
        wins == 1,
        "of concurrent activations of one algorithm's next keys exactly one wins",
        "{wins} won"
    );
    let stored = ok!(a.keys(&p).await, "keys");
    let active = stored.iter().filter(|k| k.state == KeyState::Active).count();
    let next = stored.iter().filter(|k| k.state == KeyState::Next).count();
    ensure!(active == 1, "one active key per algorithm", "{active} active");
    ensure!(next == 0, "no next key is left behind", "{next} next");
    ensure!(
        stored
            .iter()
            .find(|k| k.kid == first.kid)
            .is_some_and(|k| k.state == KeyState::Retired && k.publish_until == Some(until)),
        "the active key before the race is retired until the given time"
    );
    ensure!(
        ok!(b.delete_expired(&p, t1).await, "delete expired") == keys.len() - 1,
        "the losing next keys never signed: they are deletable at once"
    );
    Ok(())
}

/// `ReplayStore`: of 50 concurrent first uses of one id (half through
/// `a`, half through `b`) exactly one succeeds; ids are scoped by project
/// and client; an id is a replay until it expires and reusable after;
/// purge removes expired entries and keeps live ones; the quota per
/// project and client ([`replay_quota`]).
///
/// # Errors
/// The first [`Violation`].
pub async fn replay(a: &dyn ReplayStore, b: &dyn ReplayStore) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    let exp = t0 + Duration::minutes(5);
    let jti = format!("jti-{}", fresh_project().as_str());
    let fresh = |r: Result<ReplayCheck, super::StoreError>| r.map(ReplayCheck::is_fresh);
    let results = join_all((0..50).map(|i| {
        let store = if i % 2 == 0 { a } else { b };
        store.check_and_insert(&p, "client_1", &jti, exp, t0, QUOTA)
    }))
    .await;
    let mut wins = 0;
    for r in results {
        match ok!(r, "concurrent check_and_insert") {
            ReplayCheck::Fresh => wins += 1,
            ReplayCheck::Replayed => {}
            other => {
                return Err(Violation {
                    rule: "a concurrent first use is fresh or a replay",
                    detail: format!("{other:?}"),
                });
            }
        }
    }
    ensure!(
        wins == 1,
        "of 50 concurrent first uses of one id exactly one succeeds",
        "{wins} succeeded"
    );
    ensure!(
        ok!(
            fresh(a.check_and_insert(&p, "client_2", &jti, exp, t0, QUOTA).await),
            "check_and_insert"
        ),
        "ids are scoped by client"
    );
    ensure!(
        ok!(
            fresh(a.check_and_insert(&q, "client_1", &jti, exp, t0, QUOTA).await),
            "check_and_insert"
        ),
        "ids are scoped by project"
    );
    let again = ok!(
        b.check_and_insert(&p, "client_1", &jti, exp, exp - Duration::SECOND, QUOTA)
            .await,
        "check_and_insert"
    );
    ensure!(
        again == ReplayCheck::Replayed,
        "an id is a replay until it expires",
        "{again:?}"
    );
    let later = exp + Duration::minutes(5);
    ensure!(
        ok!(
            fresh(b.check_and_insert(&p, "client_1", &jti, later, exp, QUOTA).await),
            "check_and_insert"
        ),
        "an expired id may be used again"
    );
    ensure!(
        ok!(
            a.check_and_insert(&p, "client_1", &jti, later, exp, QUOTA).await,
            "check_and_insert"
        ) == ReplayCheck::Replayed,
        "the renewed id is a replay again"
    );
    // A long, arbitrary id is fine (stores may hash it).
    let long = "j".repeat(4096);
    ensure!(
        ok!(
            fresh(a.check_and_insert(&p, "client_1", &long, later, t0, QUOTA).await),
            "check_and_insert"
        ),
        "a long id is recorded"
    );
    let live = t0 + Duration::days(400);
    ensure!(
        ok!(
            fresh(a.check_and_insert(&p, "client_3", &jti, live, t0, QUOTA).await),
            "check_and_insert"
        ),
        "a new id is recorded"
    );
    let removed = ok!(a.purge(later + Duration::minutes(1)).await, "purge");
    ensure!(removed >= 4, "purge removes expired ids and reports them", "{removed}");
    ensure!(
        ok!(
            b.check_and_insert(&p, "client_3", &jti, live, later + Duration::minutes(2), QUOTA)
                .await,
            "check_and_insert"
        ) == ReplayCheck::Replayed,
        "purge keeps live ids"
    );
    ensure!(
        ok!(
            fresh(
                b.check_and_insert(&p, "client_1", &long, live, later + Duration::minutes(2), QUOTA)
                    .await
            ),
            "check_and_insert"
        ),
        "a purged id may be used again"
    );
    replay_quota(a, b).await
}

/// The quota a `replay` check passes for scopes that never come near it.
const QUOTA: u32 = 1_000;

/// `ReplayStore` quotas: a (project, client) scope holds at most `quota`
/// live ids; past it a new id is refused as `QuotaExceeded` and nothing is
/// recorded, while a live id is still reported as a replay; other clients
/// of the project and the same client in another project are unaffected;
/// expired ids free their place. Of 24 concurrent first uses of distinct
/// ids with quota 5 (half through `a`, half through `b`), exactly 5 are
/// recorded.
///
/// # Errors
/// The first [`Violation`].
pub async fn replay_quota(a: &dyn ReplayStore, b: &dyn ReplayStore) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    let exp = t0 + Duration::minutes(2);
    for i in 0..3 {
        let r = ok!(
            a.check_and_insert(&p, "greedy", &format!("g{i}"), exp, t0, 3).await,
            "check_and_insert"
        );
        ensure!(
            r == ReplayCheck::Fresh,
            "ids within the quota are recorded",
            "{i}: {r:?}"
        );
    }
    let over = ok!(
        b.check_and_insert(&p, "greedy", "g3", exp, t0, 3).await,
        "check_and_insert"
    );
    ensure!(
        over == ReplayCheck::QuotaExceeded,
        "a new id past the client's quota is refused as such",
        "{over:?}"
    );
    let replayed = ok!(
        b.check_and_insert(&p, "greedy", "g0", exp, t0, 3).await,
        "check_and_insert"
    );
    ensure!(
        replayed == ReplayCheck::Replayed,
        "a live id is a replay whatever the quota says",
        "{replayed:?}"
    );
    let r = ok!(
        a.check_and_insert(&p, "modest", "g3", exp, t0, 3).await,
        "check_and_insert"
    );
    ensure!(
        r == ReplayCheck::Fresh,
        "another client of the project is not limited by a full quota",
        "{r:?}"
    );
    let r = ok!(
        a.check_and_insert(&q, "greedy", "g3", exp, t0, 3).await,
        "check_and_insert"
    );
    ensure!(
        r == ReplayCheck::Fresh,
        "the same client id in another project is not limited",
        "{r:?}"
    );
    let r = ok!(
        a.check_and_insert(&p, "greedy", "g3", exp, t0, 3).await,
        "check_and_insert"
    );
    ensure!(
        r == ReplayCheck::QuotaExceeded,
        "a refused id was not recorded, and the quota still holds",
        "{r:?}"
    );
    let after = exp + Duration::SECOND;
    let r = ok!(
        b.check_and_insert(&p, "greedy", "g4", after + Duration::minutes(2), after, 3)
            .await,
        "check_and_insert"
    );
    ensure!(
        r == ReplayCheck::Fresh,
        "expired ids free their place in the quota",
        "{r:?}"
    );

    let race = &fresh_project();
    let results = join_all((0..24).map(|i| {
        let store = if i % 2 == 0 { a } else { b };
        let id = format!("r{i}");
        async move { store.check_and_insert(race, "client_1", &id, exp, t0, 5).await }
    }))
    .await;
    let (mut recorded, mut refused) = (0, 0);
    for r in results {
        match ok!(r, "concurrent check_and_insert") {
            ReplayCheck::Fresh => recorded += 1,
            ReplayCheck::QuotaExceeded => refused += 1,
            other => {
                return Err(Violation {
                    rule: "a distinct id is fresh or over the quota",
                    detail: format!("{other:?}"),
                });
            }
        }
    }
    ensure!(
        recorded == 5 && refused == 19,
        "of 24 concurrent distinct ids with quota 5 exactly 5 are recorded",
        "{recorded} recorded, {refused} refused"
    );
    Ok(())
}

/// `AdmissionStore`: windows count up to their `max`, all or nothing
/// (a refused admission counts in no window), restart when they end, are
/// scoped by project, and hold under 30 concurrent admissions split over
/// two handles (pass two stores on one database to race them as two
/// processes).
///
/// # Errors
/// The first [`Violation`].
pub async fn admission_windows(a: &dyn AdmissionStore, b: &dyn AdmissionStore) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    let minute = Duration::minutes(1);
    let w = |key: &str, max: u32| (key.to_owned(), max);
    for i in 0..3 {
        ensure!(
            ok!(
                a.admit(&p, &[w("source:a", 3), w("project", 5)], minute, t0).await,
                "admit"
            ),
            "a window admits up to its max",
            "admission {i}"
        );
    }
    ensure!(
        !ok!(
            a.admit(&p, &[w("source:a", 3), w("project", 5)], minute, t0).await,
            "admit"
        ),
        "a full window refuses"
    );
    ensure!(
        ok!(
            a.admit(&q, &[w("source:a", 3), w("project", 5)], minute, t0).await,
            "admit"
        ),
        "windows are scoped by project"
    );
    for _ in 0..2 {
        ensure!(
            ok!(
                b.admit(&p, &[w("source:b", 3), w("project", 5)], minute, t0).await,
                "admit"
            ),
            "another source's window admits"
        );
    }
    ensure!(
        !ok!(
            b.admit(&p, &[w("source:b", 3), w("project", 5)], minute, t0).await,
            "admit"
        ),
        "a full project window refuses every source"
    );
    ensure!(
        !ok!(a.admit(&p, &[w("source:z", 0)], minute, t0).await, "admit"),
        "a window of zero admits nothing"
    );
    // The refused admission counted nowhere: in the next window, source b
    // has its whole share again (3), and the project its 5.
    let t1 = t0 + minute;
    for i in 0..3 {
        ensure!(
            ok!(
                a.admit(&p, &[w("source:b", 3), w("project", 5)], minute, t1).await,
                "admit"
            ),
            "a window restarts once it ended; refusals counted nothing",
            "admission {i}"
        );
    }
    // A request that read the clock just before the window started counts
    // in it (it does not restart the window).
    let late = fresh_project();
    for i in 0..2 {
        ensure!(
            ok!(a.admit(&late, &[w("source:d", 2)], minute, t1).await, "admit"),
            "a window admits up to its max",
            "admission {i}"
        );
    }
    ensure!(
        !ok!(
            a.admit(&late, &[w("source:d", 2)], minute, t1 - Duration::seconds(1))
                .await,
            "admit"
        ),
        "an admission dated before the window's start counts in it and cannot restart it"
    );
    // Concurrent admissions over two handles: exactly the max.
    let r = fresh_project();
    let r = &r;
    let results = join_all((0..30).map(|i| {
        let store = if i % 2 == 0 { a } else { b };
        async move { store.admit(r, &[w("source:c", 5), w("project", 100)], minute, t0).await }
    }))
    .await;
    let mut admitted = 0;
    for res in results {
        admitted += usize::from(ok!(res, "concurrent admit"));
    }
    ensure!(
        admitted == 5,
        "of 30 concurrent admissions to a window of 5 exactly 5 succeed",
        "{admitted} admitted"
    );
    let purged = ok!(a.purge(t0 + Duration::minutes(10)).await, "purge");
    ensure!(purged >= 4, "purge forgets ended windows", "{purged}");
    Ok(())
}

fn local_user(project: &ProjectId, sub: &str, email: Option<&str>, at: OffsetDateTime) -> LocalUser {
    LocalUser {
        project: project.clone(),
        subject: crate::upstream::local_subject("https://idp.contract.example", sub),
        upstream_issuer: "https://idp.contract.example".to_owned(),
        upstream_subject: sub.to_owned(),
        email: email.map(str::to_owned),
        email_verified: email.is_some(),
        name: Some(format!("User {sub}")),
        created_at: at,
        last_login_at: at,
    }
}

fn scopes(s: &str) -> ScopeSet {
    ScopeSet::parse(s).unwrap_or_default()
}

fn resources(uris: &[&str]) -> ResourceSet {
    ResourceSet::parse_all(uris.iter().copied()).unwrap_or_default()
}

const CALENDAR: &str = "https://calendar.contract.example/mcp";
const PAYROLL: &str = "https://payroll.contract.example/mcp";

/// Whether the remembered consent of `(subject, client)` covers `want`
/// scopes for `want_resources`.
async fn covers(
    store: &dyn UserStore,
    p: &ProjectId,
    subject: &Subject,
    client: &str,
    want: &str,
    want_resources: &[&str],
) -> Result<bool, Violation> {
    let c = ok!(store.consent(p, subject, client).await, "consent");
    Ok(c.is_some_and(|c| c.covers(&scopes(want), &resources(want_resources))))
}

/// Whether `got` holds exactly the scopes of `want` (in any order).
fn same_scopes(got: Option<&ScopeSet>, want: &str) -> bool {
    let want = scopes(want);
    got.is_some_and(|g| g.is_subset_of(&want) && want.is_subset_of(g))
}

/// The scopes remembered for `resource` (`None`: no resource).
async fn allowed_for(
    store: &dyn UserStore,
    p: &ProjectId,
    subject: &Subject,
    client: &str,
    resource: Option<&str>,
) -> Result<Option<ScopeSet>, Violation> {
    let target = match resource {
        None => ConsentTarget::NoResource,
        Some(r) => ConsentTarget::of(&resources(&[r]))
            .pop()
            .unwrap_or(ConsentTarget::NoResource),
    };
    let c = ok!(store.consent(p, subject, client).await, "consent");
    Ok(c.and_then(|c| c.scopes_for(&target).cloned()))
}

/// `UserStore`: an upsert keeps the first `created_at` and replaces every
/// claim (a claim that disappeared upstream is cleared); users are per
/// project. Remembered consent is kept per resource (audience): each
/// resource's scopes are the union of the approvals for THAT resource, so
/// a returning user whose request is covered is not asked again, one
/// asking for more scopes or another resource is, and scopes approved for
/// one resource never cover another; a request without a resource is its
/// own entry; it is per project, user and client; 16 concurrent approvals
/// of distinct scopes, for distinct resources and for one resource, all
/// count; revoking forgets all of it (and says whether there was one),
/// after which the user is asked again.
///
/// # Errors
/// The first [`Violation`].
pub async fn users(store: &dyn UserStore) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    let t1 = t0 + Duration::days(1);
    let first = ok!(
        store.upsert(local_user(&p, "alice", Some("old@example.com"), t0)).await,
        "upsert"
    );
    ensure!(
        first == local_user(&p, "alice", Some("old@example.com"), t0),
        "a new user is stored as given",
        "{first:?}"
    );
    let mut changed = local_user(&p, "alice", None, t1);
    changed.name = None;
    let second = ok!(store.upsert(changed.clone()).await, "upsert");
    ensure!(
        second.created_at == t0,
        "an upsert keeps the first sign-in's created_at"
    );
    ensure!(second.last_login_at == t1, "an upsert records the latest sign-in");
    ensure!(
        second.email.is_none() && !second.email_verified && second.name.is_none(),
        "an upsert replaces the claims, clearing those that disappeared",
        "{second:?}"
    );
    let read = ok!(store.user(&p, &second.subject).await, "user");
    ensure!(
        read.as_ref() == Some(&second),
        "a user reads back as upserted",
        "{read:?}"
    );
    ensure!(
        ok!(store.user(&q, &second.subject).await, "user").is_none(),
        "users are scoped by project"
    );
    let bob = local_user(&p, "bob", Some("bob@example.com"), t0);
    ensure!(
        ok!(store.user(&p, &bob.subject).await, "user").is_none(),
        "an unknown user is absent"
    );

    let alice = &second.subject;
    let client = "client_contract_a";
    let calendar = resources(&[CALENDAR]);
    ensure!(
        ok!(store.consent(&p, alice, client).await, "consent").is_none(),
        "no consent before an approval"
    );
    ok!(
        store
            .remember_consent(&p, alice, client, &scopes("mcp:read"), &calendar, t0)
            .await,
        "remember consent"
    );
    ok!(
        store
            .remember_consent(&p, alice, client, &scopes("mcp:write openid"), &calendar, t1)
            .await,
        "remember consent"
    );
    let Some(c) = ok!(store.consent(&p, alice, client).await, "consent") else {
        return Err(Violation {
            rule: "an approval is remembered",
            detail: "no consent".to_owned(),
        });
    };
    ensure!(
        same_scopes(
            c.scopes_for(&ConsentTarget::of(&calendar).pop().unwrap_or(ConsentTarget::NoResource)),
            "mcp:read mcp:write openid"
        ),
        "remembered consent for a resource is the union of its approvals",
        "{c:?}"
    );
    ensure!(
        c.targets().count() == 1,
        "remembered consent keeps exactly the resources allowed",
        "{c:?}"
    );
    ensure!(c.updated_at == t1, "remembered consent records the latest approval");
    ensure!(
        covers(store, &p, alice, client, "mcp:read", &[CALENDAR]).await?,
        "a returning user asking for what was allowed is not asked again"
    );
    ensure!(
        !covers(store, &p, alice, client, "mcp:read mcp:admin", &[CALENDAR]).await?,
        "a returning user asking for more scopes is asked again"
    );
    ensure!(
        !covers(store, &p, alice, client, "mcp:read", &[PAYROLL]).await?,
        "a consent for one resource does not cover another"
    );
    ok!(
        store
            .remember_consent(&p, alice, client, &scopes("mcp:admin"), &resources(&[PAYROLL]), t1)
            .await,
        "remember consent"
    );
    ensure!(
        same_scopes(
            allowed_for(store, &p, alice, client, Some(PAYROLL)).await?.as_ref(),
            "mcp:admin"
        ) && same_scopes(
            allowed_for(store, &p, alice, client, Some(CALENDAR)).await?.as_ref(),
            "mcp:read mcp:write openid"
        ),
        "each resource keeps its own scopes: an approval for one resource never adds scopes to another"
    );
    ensure!(
        !covers(store, &p, alice, client, "mcp:admin", &[CALENDAR]).await?
            && !covers(store, &p, alice, client, "mcp:read", &[PAYROLL]).await?,
        "scopes allowed for one resource do not cover another resource"
    );
    ensure!(
        covers(store, &p, alice, client, "mcp:admin", &[PAYROLL]).await?
            && !covers(store, &p, alice, client, "mcp:admin", &[CALENDAR, PAYROLL]).await?,
        "a request for several resources is covered only if every one of them allowed its scopes"
    );
    ensure!(
        !covers(store, &p, alice, client, "mcp:read", &[]).await?,
        "a consent for resources does not cover a request without one"
    );
    ok!(
        store
            .remember_consent(&p, alice, client, &scopes("mcp:read"), &ResourceSet::new(), t1)
            .await,
        "remember consent"
    );
    ensure!(
        covers(store, &p, alice, client, "mcp:read", &[]).await?
            && same_scopes(allowed_for(store, &p, alice, client, None).await?.as_ref(), "mcp:read"),
        "an approval without a resource is remembered as its own entry"
    );
    ensure!(
        ok!(store.consent(&p, alice, "client_contract_b").await, "consent").is_none(),
        "consent is per client"
    );
    ensure!(
        ok!(store.consent(&p, &bob.subject, client).await, "consent").is_none(),
        "consent is per user"
    );
    ensure!(
        ok!(store.consent(&q, alice, client).await, "consent").is_none(),
        "consent is per project"
    );
    ok!(
        store
            .remember_consent(&p, alice, "client_contract_b", &ScopeSet::new(), &calendar, t0)
            .await,
        "remember consent"
    );
    ensure!(
        covers(store, &p, alice, "client_contract_b", "", &[CALENDAR]).await?
            && !covers(store, &p, alice, "client_contract_b", "", &[PAYROLL]).await?,
        "an approval of no scopes is remembered too, for its resource"
    );

    // Concurrent approvals of distinct scopes for distinct resources, and
    // for one resource: none is lost.
    let concurrent: Vec<(ScopeSet, ResourceSet)> = (0..16)
        .map(|i| {
            (
                scopes(&format!("s{i}")),
                resources(&[&format!("https://r{i}.contract.example/mcp")]),
            )
        })
        .collect();
    let results = join_all(
        concurrent
            .iter()
            .map(|(s, r)| store.remember_consent(&p, &bob.subject, client, s, r, t0)),
    )
    .await;
    for r in results {
        ok!(r, "concurrent remember consent");
    }
    let c = ok!(store.consent(&p, &bob.subject, client).await, "consent");
    ensure!(
        c.as_ref().is_some_and(|c| c.targets().count() == 16
            && concurrent.iter().all(|(s, r)| ConsentTarget::of(r).iter().all(|t| c
                .scopes_for(t)
                .is_some_and(|got| got.is_subset_of(s) && s.is_subset_of(got))))),
        "concurrent approvals for distinct resources all count, each for its resource",
        "{c:?}"
    );
    let results = join_all(
        concurrent
            .iter()
            .map(|(s, _)| store.remember_consent(&p, &bob.subject, "client_contract_c", s, &calendar, t0)),
    )
    .await;
    for r in results {
        ok!(r, "concurrent remember consent");
    }
    let all = ScopeSet::from_tokens(
        (0..16)
            .map(|i| format!("s{i}"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    )
    .unwrap_or_default();
    ensure!(
        allowed_for(store, &p, &bob.subject, "client_contract_c", Some(CALENDAR))
            .await?
            .is_some_and(|s| s.is_subset_of(&all) && all.is_subset_of(&s)),
        "concurrent approvals for one resource are all merged into it"
    );

    ensure!(
        ok!(store.revoke_consent(&p, alice, client).await, "revoke consent"),
        "revoking a consent says there was one"
    );
    ensure!(
        ok!(store.consent(&p, alice, client).await, "consent").is_none(),
        "a revoked consent is forgotten: the user is asked again"
    );
    ensure!(
        !ok!(store.revoke_consent(&p, alice, client).await, "revoke consent"),
        "revoking twice says there was none"
    );
    ensure!(
        ok!(store.consent(&p, alice, "client_contract_b").await, "consent").is_some(),
        "revoking one client's consent keeps the others"
    );
    ok!(
        store
            .remember_consent(&p, alice, client, &scopes("mcp:read"), &calendar, t1)
            .await,
        "remember consent"
    );
    let c = ok!(store.consent(&p, alice, client).await, "consent");
    ensure!(
        c.as_ref().is_some_and(|c| c.targets().count() == 1)
            && !covers(store, &p, alice, client, "mcp:admin", &[PAYROLL]).await?
            && !covers(store, &p, alice, client, "mcp:write", &[CALENDAR]).await?
            && !covers(store, &p, alice, client, "mcp:read", &[]).await?,
        "a revocation forgets every resource: after it only new approvals count",
        "{c:?}"
    );

    // Account deletion: every consent of the user goes, whatever the
    // client; other users' and other projects' stay.
    ok!(
        store
            .remember_consent(&q, alice, client, &scopes("mcp:read"), &calendar, t1)
            .await,
        "remember consent"
    );
    let forgotten = ok!(store.revoke_all_consents(&p, alice).await, "revoke all consents");
    ensure!(
        forgotten == 2,
        "revoking all of a user's consents forgets each of them",
        "{forgotten}"
    );
    ensure!(
        ok!(store.consent(&p, alice, client).await, "consent").is_none()
            && ok!(store.consent(&p, alice, "client_contract_b").await, "consent").is_none(),
        "no consent of the user is left behind"
    );
    ensure!(
        ok!(store.consent(&p, &bob.subject, client).await, "consent").is_some(),
        "revoking a user's consents keeps other users'"
    );
    ensure!(
        ok!(store.consent(&q, alice, client).await, "consent").is_some(),
        "revoking a user's consents keeps the user's consents in other projects"
    );
    ensure!(
        ok!(store.revoke_all_consents(&p, alice).await, "revoke all consents") == 0,
        "revoking all consents twice finds none"
    );
    Ok(())
}

/// A login of `project` started at `at`, and the browser-binding value
/// (its hash is the login's `browser_hash`).
fn upstream_login(
    project: &ProjectId,
    at: OffsetDateTime,
) -> Result<(crate::upstream::UpstreamLogin, SecretHash), Violation> {
    use crate::discovery::Issuer;
    use crate::upstream::{self, ProviderName, UpstreamProvider};
    let issuer = Issuer::new("https://idp.contract.example").map_err(|e| fixture(&e))?;
    let provider = UpstreamProvider::generic(ProviderName::new("oidc").map_err(|e| fixture(&e))?, issuer, "rp");
    let metadata = upstream::parse_provider_metadata(
        br#"{"issuer":"https://idp.contract.example","authorization_endpoint":"https://idp.contract.example/a",
            "token_endpoint":"https://idp.contract.example/t","jwks_uri":"https://idp.contract.example/k"}"#,
        &provider.issuer,
        false,
    )
    .map_err(|e| fixture(&e))?;
    let grant = grant(project, at);
    let pending = crate::authorize::PendingAuthorization {
        project: project.clone(),
        client_id: grant.client_id,
        client_name: Some("Contract".to_owned()),
        client_id_host: None,
        redirect_uri: "https://app.contract.example/cb".to_owned(),
        redirect_host: Some("app.contract.example".to_owned()),
        loopback_only: false,
        confidential: false,
        scopes: grant.scopes,
        dropped_scopes: ScopeSet::new(),
        offline_access: false,
        force_login: false,
        force_consent: false,
        prompt_none: false,
        login_hint: None,
        app_scheme: None,
        resources: ResourceSet::new(),
        state: Some("contract-state".to_owned()),
        code_challenge: CodeChallenge::s256(&CodeVerifier::from_random(&random_bytes())),
        nonce: None,
        created_at: at,
        presentation: Default::default(),
    };
    let random = upstream::LoginRandomness {
        state: random_bytes(),
        nonce: random_bytes(),
        verifier: random_bytes(),
        browser: random_bytes(),
    };
    let start = upstream::start_login(
        pending,
        &provider,
        &metadata,
        "https://as.contract.example/cb",
        random,
        at,
    );
    Ok((start.login, start.browser_binding.hash()))
}

/// The stored form of a login, for comparing what comes back.
fn login_json(login: &crate::upstream::UpstreamLogin) -> String {
    serde_json::to_string(login).unwrap_or_default()
}

/// `UpstreamLoginStore`: a login reads back whole; of 100 concurrent takes
/// of one login (half through `a`, half through `b`: pass two stores on
/// one database to race them as two processes) exactly one gets it and
/// the others see it taken; a later take is a replay; a take from another
/// browser never takes it nor shows it, whatever its state; a login is
/// never taken once expired; logins are scoped by project; a stored
/// `state` is never overwritten; purge deletes expired logins (taken or
/// not) and keeps live ones.
///
/// # Errors
/// The first [`Violation`].
pub async fn upstream_logins(a: &dyn UpstreamLoginStore, b: &dyn UpstreamLoginStore) -> Outcome {
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    let (login, browser) = upstream_login(&p, t0)?;
    let h = login.state_hash;
    let stored = login_json(&login);
    let stranger = hash();
    ok!(a.insert(&p, login.duplicate(), None).await, "insert upstream login");
    ensure!(
        a.insert(&p, upstream_login(&p, t0)?.0, None).await.is_ok(),
        "a second login of a project is stored"
    );
    let (mut other, _) = upstream_login(&p, t0)?;
    other.state_hash = h;
    ensure!(
        b.insert(&p, other, None).await.is_err(),
        "a stored state is never overwritten: a second insert of its hash is an error"
    );
    ensure!(
        matches!(ok!(b.take(&q, &h, &browser, t0).await, "take"), LoginTake::Unknown),
        "logins are scoped by project"
    );
    ensure!(
        matches!(ok!(b.take(&p, &hash(), &browser, t0).await, "take"), LoginTake::Unknown),
        "an unknown state is unknown"
    );
    let at = t0 + Duration::minutes(1);
    ensure!(
        matches!(
            ok!(a.take(&p, &h, &stranger, at).await, "take"),
            LoginTake::WrongBrowser
        ),
        "another browser does not take a login"
    );
    let results = join_all((0..100).map(|i| {
        let store = if i % 2 == 0 { a } else { b };
        store.take(&p, &h, &browser, at)
    }))
    .await;
    let (mut wins, mut replays) = (0, 0);
    for r in results {
        match ok!(r, "concurrent take") {
            LoginTake::Taken(l) => {
                ensure!(login_json(&l) == stored, "a taken login reads back whole");
                wins += 1;
            }
            LoginTake::AlreadyTaken(l) => {
                ensure!(login_json(&l) == stored, "a replayed login reads back whole");
                replays += 1;
            }
            other => {
                return Err(Violation {
                    rule: "a live login is taken or already taken by its own browser",
                    detail: format!("{other:?}"),
                });
            }
        }
    }
    ensure!(
        wins == 1 && replays == 99,
        "of 100 concurrent takes of one login exactly one gets it (the first try from another browser spent nothing)",
        "{wins} took it, {replays} saw it taken"
    );
    ensure!(
        matches!(
            ok!(a.take(&p, &h, &browser, at).await, "take"),
            LoginTake::AlreadyTaken(_)
        ),
        "a later take is a replay"
    );
    ensure!(
        matches!(
            ok!(b.take(&p, &h, &stranger, at).await, "take"),
            LoginTake::WrongBrowser
        ),
        "another browser learns nothing of a taken login"
    );

    // Expiry: never taken at or after expires_at, and stays untaken.
    let (late, late_browser) = upstream_login(&p, t0)?;
    let hl = late.state_hash;
    let expires = late.expires_at;
    ok!(b.insert(&p, late, None).await, "insert upstream login");
    ensure!(
        matches!(
            ok!(a.take(&p, &hl, &stranger, expires).await, "take"),
            LoginTake::WrongBrowser
        ),
        "another browser learns nothing of an expired login"
    );
    ensure!(
        matches!(
            ok!(a.take(&p, &hl, &late_browser, expires).await, "take"),
            LoginTake::Expired(_)
        ),
        "a login is not taken once expired"
    );
    ensure!(
        matches!(
            ok!(
                b.take(&p, &hl, &late_browser, expires + Duration::minutes(1)).await,
                "take"
            ),
            LoginTake::Expired(_)
        ),
        "an expired login stays untaken"
    );
    let (live, live_browser) = upstream_login(&p, expires)?;
    let hlive = live.state_hash;
    ok!(a.insert(&p, live, None).await, "insert upstream login");
    let removed = ok!(a.purge(expires).await, "purge");
    ensure!(
        removed >= 3,
        "purge deletes expired logins, taken or not, and reports them",
        "{removed}"
    );
    ensure!(
        matches!(ok!(b.take(&p, &h, &browser, expires).await, "take"), LoginTake::Unknown),
        "a purged login is unknown"
    );
    ensure!(
        matches!(
            ok!(b.take(&p, &hlive, &live_browser, expires).await, "take"),
            LoginTake::Taken(_)
        ),
        "purge keeps live logins"
    );
    Ok(())
}

/// `UpstreamLoginStore`, the per-source bound (`per_source`, what the store
/// was configured with): of `2 * per_source` concurrent inserts from one
/// source into one project (half through `a`, half through `b`: pass two
/// stores on one database to race them as two processes) exactly
/// `per_source` succeed, and every refusal is
/// [`super::StoreErrorKind::CapacityExceeded`], not a failure; another
/// source, a login without a source and the same source in another
/// project are still admitted; expired logins no longer count.
///
/// # Errors
/// The first [`Violation`].
pub async fn upstream_logins_per_source(
    a: &dyn UpstreamLoginStore,
    b: &dyn UpstreamLoginStore,
    per_source: u32,
) -> Outcome {
    use crate::cimd::RequestSource;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let (p, q) = (fresh_project(), fresh_project());
    let t0 = now();
    let flood = RequestSource::from_ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)));
    // Another address of the same /64 is the same source.
    let same = RequestSource::from_ip(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1)));
    let same_64 = RequestSource::from_ip(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 9, 9, 9, 9)));
    let other = RequestSource::from_ip(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9)));
    let n = per_source as usize;
    let mut logins = Vec::with_capacity(2 * n);
    for _ in 0..2 * n {
        logins.push(upstream_login(&p, t0)?.0);
    }
    let results = join_all(logins.into_iter().enumerate().map(|(i, l)| {
        let store = if i % 2 == 0 { a } else { b };
        store.insert(&p, l, Some(&flood))
    }))
    .await;
    let mut stored = 0;
    for r in results {
        match r {
            Ok(()) => stored += 1,
            Err(e) if e.kind() == super::StoreErrorKind::CapacityExceeded => {}
            Err(e) => {
                return Err(Violation {
                    rule: "a source over its bound is refused as capacity exceeded, not as a store failure",
                    detail: format!("{e}"),
                });
            }
        }
    }
    ensure!(
        stored == n,
        "of twice the per-source bound of concurrent inserts from one source exactly the bound succeed",
        "{stored} of {} stored, bound {n}",
        2 * n
    );
    let refused = a.insert(&p, upstream_login(&p, t0)?.0, Some(&flood)).await;
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == super::StoreErrorKind::CapacityExceeded),
        "a full source is refused as capacity exceeded",
        "{refused:?}"
    );
    ensure!(
        b.insert(&p, upstream_login(&p, t0)?.0, Some(&other)).await.is_ok(),
        "a full source does not stop another source of its project"
    );
    ensure!(
        a.insert(&p, upstream_login(&p, t0)?.0, None).await.is_ok(),
        "a login without a source counts against the project bound only"
    );
    ensure!(
        b.insert(&q, upstream_login(&q, t0)?.0, Some(&flood)).await.is_ok(),
        "the per-source bound is per project"
    );
    // An IPv6 source is its /64.
    for _ in 0..n {
        ok!(
            a.insert(&q, upstream_login(&q, t0)?.0, Some(&same)).await,
            "insert upstream login"
        );
    }
    let refused = b.insert(&q, upstream_login(&q, t0)?.0, Some(&same_64)).await;
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == super::StoreErrorKind::CapacityExceeded),
        "addresses of one IPv6 /64 are one source",
        "{refused:?}"
    );
    // Once the flood's logins expired, the source is admitted again.
    let (later, _) = upstream_login(&p, t0)?;
    let expired_at = later.expires_at;
    let (fresh, _) = upstream_login(&p, expired_at)?;
    ensure!(
        b.insert(&p, fresh, Some(&flood)).await.is_ok(),
        "expired logins no longer count against their source"
    );
    Ok(())
}
