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
//! calls together (200 redemptions of one code, 100 uses of an initial
//! access token with `max_uses = 5`, 50 rotations of one refresh token,
//! 20 compare-and-swaps, 16 activations of one algorithm's next keys, 50
//! first uses of one `jti`); a store backed by a pool needs a few
//! connections for them to actually overlap. The key and `jti` races take
//! two handles ([`signing_key_activation_race`], [`replay`]): pass two
//! stores on one database (two pools) to race them as two processes.

use std::fmt;
use std::sync::Arc;

use futures_util::future::join_all;
use time::{Duration, OffsetDateTime};

use super::memory::{
    MemoryAuditLog, MemoryCimdCache, MemoryClientStore, MemoryGrantStore, MemoryIatStore, MemoryKeyStore,
    MemoryProjectStore, MemoryReplayStore,
};
use super::{
    AuditLog, AuditQuery, CimdCache, ClientStore, CodeConsumption, GrantStore, IatStore, KeyStore, ProjectStore,
    RefreshRotation, ReplayCheck, ReplayStore, RevokeOutcome, UseOutcome,
};
use crate::audit::{AuditEvent, AuditKind};
use crate::cimd::{CachedDocument, ClientIdUrl};
use crate::client::{Client, ClientId, ClientMetadata, MetadataProfile, RegisteredClientId};
use crate::dcr::{IatError, IatOptions, IatRecord};
use crate::grant::{
    AccessTokenClaims, AccessTokenRecord, CodeRecord, Grant, GrantId, RefreshTokenRecord, RotationMark, RotationNonce,
    Subject,
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

    /// One object implementing every trait (like the SQL stores).
    pub fn all<S>(store: Arc<S>) -> Self
    where
        S: ProjectStore + ClientStore + IatStore + GrantStore + CimdCache + AuditLog + KeyStore + ReplayStore + 'static,
    {
        Self {
            projects: store.clone(),
            clients: store.clone(),
            iats: store.clone(),
            grants: store.clone(),
            cimd: store.clone(),
            audit: store.clone(),
            keys: store.clone(),
            replay: store,
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
    purge(stores.grants.as_ref(), stores.iats.as_ref()).await?;
    cimd_cache(stores.cimd.as_ref()).await?;
    audit(stores.audit.as_ref()).await?;
    signing_keys(stores.keys.as_ref()).await?;
    signing_key_activation_race(stores.keys.as_ref(), stores.keys.as_ref()).await?;
    replay(stores.replay.as_ref(), stores.replay.as_ref()).await?;
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
        ok!(store.consume_code(&q, &c.hash).await, "consume") == CodeConsumption::NotFound,
        "consume in another project finds nothing"
    );
    ensure!(
        ok!(store.consume_code(&p, &hash()).await, "consume") == CodeConsumption::NotFound,
        "an unknown code is NotFound"
    );
    let mut consumed = c.clone();
    consumed.consumed = true;
    ensure!(
        ok!(store.consume_code(&p, &c.hash).await, "consume") == CodeConsumption::Consumed(consumed.clone()),
        "the first consume wins and returns the record"
    );
    ensure!(
        ok!(store.consume_code(&p, &c.hash).await, "consume") == CodeConsumption::AlreadyConsumed(consumed.clone()),
        "a second consume is a replay"
    );
    ensure!(
        ok!(store.code(&p, &c.hash).await, "code").is_some_and(|r| r.consumed),
        "a consumed code reads as consumed"
    );

    let race = code(&g, t0 + Duration::minutes(1));
    ok!(store.insert_code(race.clone()).await, "insert code");
    let results = join_all((0..200).map(|_| store.consume_code(&p, &race.hash))).await;
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
            ok!(store.consume_code(&p, &c.hash).await, "consume"),
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
