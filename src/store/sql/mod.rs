//! Persistent stores on SQL databases: [`SqliteStore`] (feature `sqlite`,
//! the embedded default: one file, one process or a few on one host) and
//! [`PostgresStore`] (feature `postgres`: many server instances on one
//! database). Each implements every store trait: [`ProjectStore`],
//! [`ClientStore`], [`IatStore`], [`GrantStore`], [`CimdCache`],
//! [`AuditSink`], [`AuditLog`], [`KeyStore`], [`ReplayStore`],
//! [`UserStore`], [`UpstreamLoginStore`] and [`AdmissionStore`], so one
//! `Arc` of it fills every slot of
//! [`crate::server::AuthorizationServerBuilder`] (signing keys and `jti`s
//! through `key_store` and `replay_store`; local users, remembered consent
//! and upstream logins through `user_store` and `upstream_login_store`).
//!
//! [`UpstreamSecrets`] has no SQL form, on purpose: the client secret at an
//! upstream provider must be returned in clear to authenticate there, so a
//! table could only hold it in clear or encrypted under a key kept beside
//! it, and every database backup would then carry a reusable credential.
//! It is configuration: give it to the server from the host's secret
//! manager or environment ([`crate::store::memory::MemoryUpstreamSecrets`]
//! filled at start-up, or an implementation over the host's KMS), or use
//! `private_key_jwt`, which needs no shared secret.
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use authio_mcp::issuer::Issuer;
//! use authio_mcp::server::AuthorizationServer;
//! use authio_mcp::store::sql::{SqlOptions, SqliteStore};
//!
//! use authio_mcp::store::Aes256GcmKeyEncryption;
//!
//! // The key-encryption key lives outside the database (a file, a secret
//! // manager); it seals the signing keys stored in the database.
//! # let kek_bytes = [0u8; 32];
//! let kek = Aes256GcmKeyEncryption::new("kek-2026", &kek_bytes)?;
//! let options = SqlOptions::default().key_encryption(Arc::new(kek));
//! let store = Arc::new(SqliteStore::connect("sqlite://authio.db", options).await?);
//! store.migrate().await?; // explicit, forward-only, idempotent
//! store.reseal_signing_keys().await?; // seals keys stored before encryption was on
//! let server = AuthorizationServer::builder(Issuer::new("https://auth.example.com")?)
//!     .projects(store.clone())
//!     .clients(store.clone())
//!     .iats(store.clone())
//!     .grants(store.clone())
//!     .cimd_cache(store.clone())
//!     .audit(store.clone())
//!     .key_store(store.clone())
//!     .replay_store(store.clone())
//!     .user_store(store.clone())
//!     .upstream_login_store(store.clone())
//!     .build();
//! # Ok(()) }
//! ```
//!
//! # Atomicity
//!
//! Every `# Security` contract of the traits is held by the database, so it
//! holds across processes sharing one database:
//!
//! | operation | how |
//! |---|---|
//! | `GrantStore::consume_code` | one `UPDATE ... SET consumed = TRUE WHERE ... AND consumed = FALSE AND <grant not revoked> RETURNING`: the row lock (PostgreSQL) or the database write lock (SQLite) serializes concurrent updates, and a waiter re-checks `consumed` after the winner commits, so exactly one caller gets the row |
//! | `GrantStore::rotate_refresh_token` | PostgreSQL: ONE statement, data-modifying CTEs (`WITH old AS (DELETE FROM refresh_tokens WHERE ... AND <grant not revoked> RETURNING ...), tomb AS (INSERT INTO refresh_tombstones ... FROM old), capped AS (DELETE <the grant's tombstones beyond the cap>) INSERT ... SELECT ... FROM old`): the old token leaves the live table for its tombstone and the successor is inserted only for the row the conditional delete returned, atomically; a concurrent rotation waits on the row lock and finds the row gone. SQLite: a transaction under its single writer lock whose FIRST statement is that conditional `DELETE`, followed by the tombstone, the successor and the cap. Either way only the winner of the delete inserts; a loser reads the tombstone the winner committed |
//! | `IatStore::use_once` | one `UPDATE ... SET uses = uses + 1 WHERE <not revoked> AND <not expired> AND (max_uses IS NULL OR uses < max_uses) RETURNING`: check and count are one statement, so `max_uses` is never exceeded |
//! | `IatStore::revoke` | one conditional `UPDATE ... WHERE revoked_at IS NULL RETURNING` |
//! | `ProjectStore::compare_and_swap` | optimistic: the settings are read with their `version`, compared with `current`, and replaced by `UPDATE ... WHERE id = ? AND version = ?`; the update is the atomic step |
//! | `ClientStore::insert`, `IatStore::insert` | `INSERT ... ON CONFLICT DO NOTHING`: the unique key refuses a taken id or hash |
//! | `KeyStore::activate` | one transaction whose FIRST statement upserts the lock row `signing_key_locks (project, alg)` of the key's algorithm: concurrent activations of one algorithm queue on that one row lock (PostgreSQL; a single row, so no deadlock) or the database write lock (SQLite), and each later one reads what the earlier committed. Then: the named key must still be `next`, the active key(s) of the algorithm retire, the other next keys retire at once, the named key becomes active. A partial unique index (`state = 'active'`, per `(project, alg)`) refuses a second active key whatever happens |
//! | `KeyStore::insert`, `KeyStore::retire` | `INSERT ... ON CONFLICT (project, kid) DO NOTHING`; one conditional `UPDATE ... WHERE state = 'active'` |
//! | `AdmissionStore::admit` | one transaction of conditional upserts, one per window in the order given (`INSERT ... ON CONFLICT (project, window_key) DO UPDATE SET count = count + 1 ... WHERE <window ended> OR count < max`); the first that affects no row rolls the transaction back. A concurrent admission waits on the row's lock (PostgreSQL) or the write lock (SQLite) and re-checks the count the winner committed, so no window ever admits more than its `max` |
//! | `ReplayStore::check_and_insert` | a transaction around one `INSERT ... SELECT ... WHERE <the scope holds fewer than quota live ids> ON CONFLICT (project, scope, id_hash) DO UPDATE SET expires_at = ... WHERE <the stored entry expired>`: one row affected means first use; of concurrent callers the unique key lets one insert and the others find its live row. The quota's count and the insert are one step: SQLite runs the statement under its write lock; PostgreSQL first takes a transaction-scoped advisory lock on the (project, client) scope, so concurrent checks of one client queue and each counts what the previous committed. No global bound beyond the quotas: `purge` removes expired ids (each lives at most the assertion lifetime plus a minute) |
//! | `UpstreamLoginStore::take` | one `UPDATE ... SET taken = TRUE WHERE ... AND taken = FALSE AND expires_at > now AND browser_hash = <the caller's> RETURNING login`: as for codes, the row lock (PostgreSQL) or the database write lock (SQLite) lets exactly one caller flip `taken`, whichever process it runs in; an expired login, or a caller from another browser, never takes it. The losers then read the row to answer `WrongBrowser` (checked first), `AlreadyTaken` or `Expired` |
//! | `UpstreamLoginStore::insert` | one `INSERT ... SELECT ... WHERE <fewer than SqlOptions::upstream_login_capacity live logins in the project> AND <fewer than SqlOptions::upstream_logins_per_source live logins of the source in the project>` (a refusal is `StoreErrorKind::CapacityExceeded`); SQLite runs it under its write lock, PostgreSQL first takes a transaction-scoped advisory lock on the (project, source) pair, so concurrent inserts from one source, from any process, count what the previous committed and the per-source bound is exact (the project bound may be overshot by the number of concurrent inserts from different sources); a stored `state` hash is a primary-key violation (an error), never an overwrite |
//! | `UserStore::upsert` | one `INSERT ... ON CONFLICT (project, subject) DO UPDATE ... RETURNING created_at`: the first sign-in's `created_at` is kept |
//! | `UserStore::remember_consent` | a transaction whose FIRST statement upserts the consent row (`INSERT ... ON CONFLICT DO UPDATE`): it takes that row's lock (PostgreSQL, `READ COMMITTED`) or the database write lock (SQLite), so the read of the per-resource scopes, their union with the approval and the upsert of each approved resource's row that follow see every approval committed before, and a concurrent approval waits and merges into this one's |
//! | `UserStore::consent` | one `SELECT` joining the consent row and its per-resource rows (one snapshot) |
//! | `UserStore::revoke_consent` | a transaction that first deletes the consent row (taking the lock an approval in flight holds, so that approval commits first; one row affected means there was a consent), then its per-resource rows |
//! | `UserStore::revoke_all_consents` | a transaction that first deletes the user's consent rows in the project (as `revoke_consent`, after any approval in flight), then their per-resource rows |
//! | `GrantStore::revoke_grant` | a transaction that first writes a revocation marker, then deletes the grant's codes, tokens and summary. Inserts of codes and tokens are `INSERT ... SELECT ... WHERE NOT EXISTS <marker>`, and EVERY read and conditional update also requires that no marker exists, so a record inserted by a request that raced the revocation reads as absent whatever the interleaving |
//! | `GrantStore::revoke_grants` | a transaction whose FIRST statement writes the markers of the whole batch (`INSERT INTO revoked_grants SELECT ... FROM grants WHERE <selector> AND NOT EXISTS <marker> ORDER BY ... LIMIT ... RETURNING grant_id`, through the `grants_subject` / `grants_client` index): it takes the write lock and fixes the batch; then each grant's codes, tokens and summary go. Each batch has `revoke_grant`'s guarantees, so a refresh racing the revocation of every grant of a user never leaves a live token |
//! | grant summaries | written by `INSERT ... SELECT ... WHERE NOT EXISTS <marker> ON CONFLICT DO UPDATE` (use and expiry only grow) before the code or refresh token that creates them, and extended by a plain `UPDATE` for access tokens; a summary stored again by a write that raced a revocation (PostgreSQL, `READ COMMITTED`) is skipped by every listing and selection through the marker, like a racing token row |
//! | `ClientStore::set_disabled` | one `UPDATE ... SET disabled_at = CASE ... COALESCE(disabled_at, $3) ... RETURNING` (a disabled client keeps its first time) |
//!
//! SQLite runs in WAL mode with `synchronous = NORMAL`: a committed
//! transaction survives the process being killed (`kill -9`); only an
//! operating-system crash or power loss may lose the last transactions.
//! Every write transaction starts with a write, so SQLite takes its write
//! lock at once and waits (`busy_timeout`) rather than failing on a lock
//! upgrade.
//!
//! # Schema
//!
//! Embedded, versioned, forward-only migrations, applied by
//! [`SqliteStore::migrate`] / [`PostgresStore::migrate`] (never
//! implicitly). Each is recorded in `schema_migrations (version, name,
//! applied_at)`. A run is one transaction that first takes an exclusive
//! lock (SQLite `BEGIN IMMEDIATE`, PostgreSQL `pg_advisory_xact_lock`), so
//! processes migrating at once apply each migration exactly once.
//! A database whose schema is newer than the library refuses to migrate.
//! Times are unix seconds (SQLite `INTEGER`, PostgreSQL `BIGINT`); hashes
//! are SHA-256 digests of the secret (32 bytes, `BLOB` / `BYTEA`); JSON
//! columns hold the serde form of the crate's record types.
//!
//! | table (migration) | key | columns | secrets | retention |
//! |---|---|---|---|---|
//! | `projects` (1) | `id` | `settings` (JSON), `version`, `updated_at` | none | until replaced |
//! | `clients` (1, 6) | `(project, id)`; index `clients_listing (project, issued_at, id)` (6) | `client` (JSON), `issued_at`, `disabled_at` (6; authoritative, never in the JSON) | the client secret as its hash only (`secret_hash` in the JSON) | until deleted |
//! | `initial_access_tokens` (1) | `(project, hash)`, unique `(project, id)` | `label`, `created_at`, `expires_at`, `max_uses`, `uses`, `revoked_at`, `pinned` (JSON) | the token as its hash only | purged once expired, exhausted or revoked |
//! | `authorization_codes` (1) | `(project, hash)`; indexes `(project, grant_id)`, `expires_at` | `grant_id`, `expires_at`, `consumed`, `record` (JSON) | the code as its hash only (the PKCE challenge is public) | purged once expired |
//! | `refresh_tokens` (1) | `(project, hash)`; indexes `(project, grant_id)`, `expires_at` | `grant_id`, `expires_at`, `rotated` (always false since migration 7), `record` (JSON), `rotation`, `rotated_at` (3, unused since 7; its index dropped in 11) | the token as its hash only | live tokens only: a rotation moves the token to `refresh_tombstones`; purged once expired |
//! | `refresh_tombstones` (7) | `id` (increasing); unique `(project, hash)`; indexes `(project, grant_id, id)`, `expires_at`, `rotated_at` | `grant_id`, `issued_at`, `expires_at`, `rotated_at`, `rotation` (JSON of the `RotationMark`) | the token as its hash only; the mark's nonce derives successors only together with the old token, and is cleared past the reuse grace | at most [`crate::store::MAX_ROTATED_PER_GRANT`] per grant (the oldest go at each rotation); purged once expired; deleted with the grant |
//! | `access_tokens` (1) | `(project, hash)`; indexes `(project, grant_id)`, `expires_at` | `grant_id`, `expires_at` (`exp`), `revoked`, `record` (JSON claims) | the token as its hash only | at most [`crate::store::MAX_ACCESS_TOKENS_PER_GRANT`] per grant: each insert drops the grant's expired ones and its oldest beyond the cap; purged once expired |
//! | `revoked_grants` (1) | `(project, grant_id)`; index `keep_until` | `revoked_at`, `keep_until` | none | purged after `keep_until` (a day) once no code or token of the grant remains |
//! | `cimd_cache` (2) | `(project, url)`; index `expires_at` | `entry` (JSON: document and resolved client), `fetched_at`, `expires_at` | none (documents are public) | capped at [`SqlOptions::cimd_capacity`] entries, soonest-expiring evicted first; expired entries purged |
//! | `audit_rejection_counts` (7) | `(project, minute, event, reason)`; index `minute` | `count` | none | a day (purged by minute); of each counter only the first [`REJECTION_SAMPLES_PER_MINUTE`] events go to `audit_events`; counted in memory and written once per [`REJECTION_FLUSH_INTERVAL`] (one upsert statement per 256 counters, within [`REJECTION_FLUSH_DEADLINE`]), not per request; while the database does not answer, the counts and samples of that time are lost |
//! | `audit_events` (2) | `id` (increasing); indexes `(project, id)`, `(project, name, id)`, `at` | `project`, `at`, `name`, `event` (JSON) | none (events never carry secrets) | [`SqlOptions::audit_max_age`] and [`SqlOptions::audit_max_rows_per_project`] |
//! | `signing_keys` (4, 10) | `(project, kid)`; partial unique `(project, alg) WHERE state = 'active'` | `alg`, `state` (`next`/`active`/`retired`), `created_at`, `activated_at`, `retired_at`, `publish_until`, `private_key`, `key_protection` (`sealed`/`plaintext`, 10) | **the private key**, sealed by [`SqlOptions::key_encryption`] (authenticated encryption bound to project, kid and algorithm; without the key-encryption key the column is useless, and a row cannot be planted or moved); in plaintext DER only with [`SqlOptions::danger_plaintext_keys`] or for rows stored before migration 10 (refused by a sealing store until `reseal_signing_keys`). Never in `Debug`, logs or errors | retired keys deleted once past `publish_until` (by the rotation); one key at once by `KeyStore::delete` (emergency revocation) |
//! | `signing_key_locks` (4) | `(project, alg)` | `locked_at` | none | one row per project and algorithm |
//! | `admission_windows` (7) | `(project, window_key)`; index `ends_at` | `started_at`, `ends_at`, `count` | none (keys are source addresses reduced to /64 or /24 networks) | purged once the window ended |
//! | `replay_ids` (4) | `(project, scope, id_hash)`; index `expires_at` | `expires_at` | none (the `jti` as its SHA-256 digest) | purged once expired; at most the caller's quota of live ids per `(project, scope)` |
//! | `local_users` (5) | `(project, subject)`; index `(project, upstream_issuer, upstream_subject)` | `upstream_issuer`, `upstream_subject`, `email`, `email_verified`, `name`, `created_at`, `last_login_at` | none (personal data: the user's email and name) | until deleted by the host |
//! | `user_consents` (5, 9) | `(project, subject, client_id)` | `updated_at` (the scopes and resources columns of 5 left in migration 9) | none | until revoked (`UserStore::revoke_consent`) |
//! | `user_consent_scopes` (9) | `(project, subject, client_id, resource)` | `scopes` (space-delimited union of every approval for that resource; `resource` is the canonical URI, `''` for `ConsentTarget::NoResource`). Migration 9 gave each resource of a stored consent its whole scope union, and a consent without resources the `''` entry | none | deleted with its consent (`UserStore::revoke_consent`) |
//! | `upstream_logins` (5, 9) | `(project, state_hash)`; indexes `(project, expires_at)`, `expires_at`, `(project, source, expires_at)` (9) | `source` (9: the request source's key, an address or its /64, or the host's name for it; `NULL` when none was given), `browser_hash` (SHA-256 of the browser-binding cookie), `taken`, `created_at`, `expires_at`, `login` (JSON of `UpstreamLogin`) | `state` as its hash only; the PKCE code verifier and the `nonce` sent upstream **in clear** inside `login` (the callback must send the verifier to the provider; both are worthless without the provider's code, which only ever reaches the callback) | at most 10 minutes live; purged once expired; at most [`SqlOptions::upstream_login_capacity`] live per project and [`SqlOptions::upstream_logins_per_source`] per source in a project |
//! | `grants` (6) | `(project, grant_id)`; indexes `grants_subject (project, subject, granted_at, grant_id)`, `grants_client (project, client_id, granted_at, grant_id)`, `grants_expiry (expires_at)` | `client_id`, `subject`, `granted_at`, `last_used_at`, `expires_at`, `record` (JSON of the grant) | none (ids, scopes, resources) | deleted with the grant's revocation; purged [`crate::store::GRANT_SUMMARY_GRACE`] after `expires_at`. Migration 6 fills it from the live refresh tokens stored before it |
//!
//! Every hot-path lookup is by primary key (`(project, hash)`, `(project,
//! id)`); the revocation check is a primary-key probe of
//! `revoked_grants`; purging walks the `expires_at` indexes in batches of
//! [`SqlOptions::purge_batch`] rows, one short statement per batch. The
//! admin listings (a project's clients, a user's grants) are keyset pages
//! through their indexes (`(issued_at, id) > cursor ... LIMIT n`), never a
//! scan.
//!
//! # Errors and faults
//!
//! A database failure (unreachable, pool exhausted, constraint violation)
//! is a [`StoreError`] whose message names the operation and whose source
//! is the driver's error, for the host's logs; the driver renders it as
//! `server_error` with no detail. [`SqlOptions::on_error`] is called with
//! every such error, so the operator sees it as it happens. The pool
//! reconnects by itself when the database comes back.

// Adding a table or a store (for maintainers): write the DDL as the next
// migration in BOTH `migrations/sqlite/` and `migrations/postgres/` and
// append it to the `Migration` lists in `sqlite.rs` and `postgres.rs`
// (never edit an applied migration); put the statements in `queries.rs`
// (`$N` placeholders, shared by both backends); add the trait impl inside
// `impl_sql_store!` below, so both backends get it; add the table to the
// schema table above and the trait's checks to `store::contract`.

mod queries;
mod rejections;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

#[cfg(feature = "postgres")]
pub use self::postgres::PostgresStore;
pub use self::rejections::{
    FLUSH_DEADLINE as REJECTION_FLUSH_DEADLINE, FLUSH_INTERVAL as REJECTION_FLUSH_INTERVAL,
    MAX_PENDING_COUNTERS as MAX_PENDING_REJECTION_COUNTERS, READ_WAIT as REJECTION_READ_WAIT,
};
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteStore;
#[allow(unused_imports)] // used in the docs of this module
use super::{
    AdmissionStore, AuditLog, AuditSink, CimdCache, ClientStore, GrantStore, IatStore, KeyStore, ProjectStore,
    ReplayStore, StoreError, UpstreamLoginStore, UpstreamSecrets, UserStore,
};

/// Rejections anyone can cause (an [`crate::audit::AuditClass::Rejection`]
/// event) are counted per project, minute, event and reason
/// (`AuditLog::rejection_counts`); of each such counter only the first
/// this many events are stored whole, so a flood of them is a number, not
/// thousands of rows burying everything else in the audit listing.
pub const REJECTION_SAMPLES_PER_MINUTE: u32 = 5;

/// The pools' `before_acquire` callback: pings a connection that sat idle
/// at least `after` ([`SqlOptions::ping_after_idle`]), hands out any other
/// as is.
fn ping_if_idle<C: sqlx::Connection>(
    conn: &mut C,
    meta: sqlx::pool::PoolConnectionMetadata,
    after: Duration,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        if meta.idle_for >= after {
            conn.ping().await?;
        }
        Ok(true)
    })
}

/// A callback for every database error (for logs and metrics).
pub type ErrorHook = Arc<dyn Fn(&StoreError) + Send + Sync>;

/// Pool and retention settings of a SQL store.
#[derive(Clone)]
#[non_exhaustive]
pub struct SqlOptions {
    /// Connections in the pool (default 10; SQLite has one writer at a
    /// time whatever this is).
    pub max_connections: u32,
    /// How long a request waits for a free connection before failing with
    /// a [`StoreError`] (default 5 s).
    pub acquire_timeout: Duration,
    /// How long a SQLite statement waits for the database's write lock
    /// (default 5 s). Ignored by PostgreSQL.
    pub busy_timeout: Duration,
    /// A pooled connection that sat idle at least this long is pinged (a
    /// round trip) before it is handed out, so one the database or a
    /// proxy dropped meanwhile is replaced instead of failing a request
    /// (default 10 s). A connection used more recently is handed out
    /// as is: pinging before every statement (sqlx's own default, which
    /// `Duration::ZERO` restores) added a round trip to each on the
    /// request's path. (sqlx also pings a connection when it goes back
    /// to the pool, off the request's path; that cannot be turned off.)
    ///
    /// The price: a connection dropped less than this long after its
    /// last use (a database restart or failover under load, say) fails
    /// the one statement next sent on it with a [`StoreError`], once per
    /// pooled connection; the database never ran that statement, so
    /// nothing is applied (a single-use step stays unspent), and the
    /// pool replaces the connection. A connection that silently stops
    /// answering is no longer caught by the ping's `acquire_timeout`
    /// either: its statement waits for the operating system to give up
    /// on the TCP connection.
    pub ping_after_idle: Duration,
    /// Rows deleted per statement when purging (default 1000).
    pub purge_batch: u32,
    /// Entries the shared CIMD cache keeps at most (default 1024).
    pub cimd_capacity: u32,
    /// Audit events older than this are purged (default 90 days; `None`:
    /// kept whatever their age).
    pub audit_max_age: Option<time::Duration>,
    /// Audit events kept per project, the newest (default 100,000;
    /// `None`: no limit), counted twice apart: events anyone can cause
    /// without credentials (rejected registrations, failed metadata
    /// fetches, refused assertions, failed upstream logins) have their own
    /// cap of this size, so a flood of them never pushes out security
    /// events such as reuse detections or revocations.
    pub audit_max_rows_per_project: Option<u32>,
    /// Upstream logins in flight a project may hold (default 100,000):
    /// past it, new logins are refused (the user retries) rather than
    /// live ones evicted. Bounds what anonymous callers can make the
    /// database hold; concurrent inserts may overshoot it by at most
    /// their number.
    pub upstream_login_capacity: u32,
    /// Upstream logins in flight one request source (the client address
    /// the server was given, [`crate::cimd::RequestSource`]) may hold in
    /// one project (default
    /// [`crate::store::DEFAULT_UPSTREAM_LOGINS_PER_SOURCE`]): one address
    /// cannot fill its project's share. Exact across processes: the
    /// count and the insert are one statement under SQLite's write lock,
    /// and PostgreSQL first takes an advisory lock on the (project,
    /// source) pair.
    pub upstream_logins_per_source: u32,
    /// Called with every database error.
    pub on_error: Option<ErrorHook>,
    /// Write audit events in the background, many per statement (default
    /// `false`: one insert per event, before the request goes on). Saves
    /// a round trip per event; a process killed with `kill -9` loses the
    /// events of the last moments (at most one batch of 256 in flight and
    /// a queue of up to 10,000); a graceful `close()` writes them all.
    /// Rejections ([`crate::audit::AuditClass::Rejection`]) are counted in
    /// memory and written in batches whatever this says (see
    /// [`REJECTION_FLUSH_INTERVAL`]).
    pub audit_batching: bool,
    /// Seals private signing keys at rest (see [`crate::store::KeyEncryption`];
    /// [`crate::store::Aes256GcmKeyEncryption`] with a key the host keeps
    /// outside the database). Default `None`: until this (or
    /// [`SqlOptions::danger_plaintext_keys`]) is set, storing or reading a
    /// signing key fails with a [`StoreError`] saying so; every other
    /// table works as before.
    pub key_encryption: Option<Arc<dyn crate::store::KeyEncryption>>,
    /// Stores signing keys unencrypted (their DER form), and reads keys
    /// stored so (default `false`). Whoever reads the `signing_keys`
    /// table, or a backup of it, can then sign tokens for every project.
    /// With [`SqlOptions::key_encryption`] also set, new keys are sealed
    /// and this only lets keys stored in plaintext before be read (until
    /// `reseal_signing_keys` seals them).
    pub danger_plaintext_keys: bool,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            ping_after_idle: Duration::from_secs(10),
            purge_batch: 1000,
            cimd_capacity: 1024,
            audit_max_age: Some(time::Duration::days(90)),
            audit_max_rows_per_project: Some(100_000),
            upstream_login_capacity: 100_000,
            upstream_logins_per_source: crate::store::DEFAULT_UPSTREAM_LOGINS_PER_SOURCE,
            on_error: None,
            audit_batching: false,
            key_encryption: None,
            danger_plaintext_keys: false,
        }
    }
}

impl SqlOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`SqlOptions::max_connections`] (at least 1).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Sets [`SqlOptions::acquire_timeout`].
    pub const fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Sets [`SqlOptions::busy_timeout`].
    pub const fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets [`SqlOptions::ping_after_idle`].
    pub const fn ping_after_idle(mut self, idle: Duration) -> Self {
        self.ping_after_idle = idle;
        self
    }

    /// Sets [`SqlOptions::purge_batch`] (at least 1).
    pub fn purge_batch(mut self, rows: u32) -> Self {
        self.purge_batch = rows.max(1);
        self
    }

    /// Sets [`SqlOptions::cimd_capacity`] (at least 1).
    pub fn cimd_capacity(mut self, entries: u32) -> Self {
        self.cimd_capacity = entries.max(1);
        self
    }

    /// Sets [`SqlOptions::audit_max_age`].
    pub const fn audit_max_age(mut self, age: Option<time::Duration>) -> Self {
        self.audit_max_age = age;
        self
    }

    /// Sets [`SqlOptions::audit_max_rows_per_project`].
    pub const fn audit_max_rows_per_project(mut self, rows: Option<u32>) -> Self {
        self.audit_max_rows_per_project = rows;
        self
    }

    /// Sets [`SqlOptions::upstream_login_capacity`] (at least 1).
    pub fn upstream_login_capacity(mut self, logins: u32) -> Self {
        self.upstream_login_capacity = logins.max(1);
        self
    }

    /// Sets [`SqlOptions::upstream_logins_per_source`] (at least 1).
    pub fn upstream_logins_per_source(mut self, logins: u32) -> Self {
        self.upstream_logins_per_source = logins.max(1);
        self
    }

    /// Sets [`SqlOptions::audit_batching`].
    pub const fn audit_batching(mut self, on: bool) -> Self {
        self.audit_batching = on;
        self
    }

    /// Sets [`SqlOptions::key_encryption`].
    pub fn key_encryption(mut self, encryption: Arc<dyn crate::store::KeyEncryption>) -> Self {
        self.key_encryption = Some(encryption);
        self
    }

    /// Sets [`SqlOptions::danger_plaintext_keys`]: signing keys stored
    /// unencrypted.
    pub const fn danger_plaintext_keys(mut self) -> Self {
        self.danger_plaintext_keys = true;
        self
    }

    /// Sets [`SqlOptions::on_error`].
    pub fn on_error(mut self, hook: impl Fn(&StoreError) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Arc::new(hook));
        self
    }
}

impl fmt::Debug for SqlOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlOptions")
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("busy_timeout", &self.busy_timeout)
            .field("ping_after_idle", &self.ping_after_idle)
            .field("purge_batch", &self.purge_batch)
            .field("cimd_capacity", &self.cimd_capacity)
            .field("audit_max_age", &self.audit_max_age)
            .field("audit_max_rows_per_project", &self.audit_max_rows_per_project)
            .field("upstream_login_capacity", &self.upstream_login_capacity)
            .field("upstream_logins_per_source", &self.upstream_logins_per_source)
            .field("on_error", &self.on_error.is_some())
            .field("audit_batching", &self.audit_batching)
            .field("key_encryption", &self.key_encryption.is_some())
            .field("danger_plaintext_keys", &self.danger_plaintext_keys)
            .finish()
    }
}

/// One embedded migration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

/// What [`SqliteStore::purge`] / [`PostgresStore::purge`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeReport {
    /// Expired codes, refresh and access tokens, and stale revocation
    /// markers.
    pub grants: u64,
    /// Expired, exhausted or revoked initial access tokens.
    pub iats: u64,
    /// Expired CIMD cache entries.
    pub cimd: u64,
    /// Audit events past the retention limits.
    pub audit: u64,
    /// Expired client assertion ids (`jti`).
    pub replay: u64,
    /// Ended admission windows of registrations without a token.
    pub admissions: u64,
    /// Expired upstream logins (taken or not).
    pub upstream_logins: u64,
}

impl PurgeReport {
    /// Everything removed.
    pub const fn total(&self) -> u64 {
        self.grants + self.iats + self.cimd + self.audit + self.replay + self.admissions + self.upstream_logins
    }
}

pub(crate) const fn secs(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

pub(crate) fn time_of(s: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(s).map_err(|e| StoreError::with_source("stored time out of range", e))
}

pub(crate) fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::with_source(format!("encoding {what}"), e))
}

/// Decodes a stored JSON column. The error names the kind of failure and
/// its position only: serde_json's messages quote the offending value,
/// and a stored record can hold a code verifier, a nonce or an email that
/// must never reach a log line ([`StoreError::log`]).
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "end-of-input",
        };
        StoreError::new(format!(
            "decoding stored {what}: {kind} error at line {} column {}",
            e.line(),
            e.column()
        ))
    })
}

/// A rotation that took no row: what the old token's committed state
/// (read after it) makes of this presentation. Rotated before: within the
/// reuse grace of its mark at `at`, or reuse; otherwise (absent, its grant
/// revoked, expired) not found.
fn rotation_lost(
    record: Option<crate::grant::RefreshTokenRecord>,
    at: time::OffsetDateTime,
    grace: time::Duration,
) -> crate::store::RefreshRotation {
    use crate::store::RefreshRotation;
    match record {
        Some(record) if record.rotated => {
            if record.within_reuse_grace(at, grace) {
                RefreshRotation::WithinGrace(record)
            } else {
                RefreshRotation::AlreadyRotated(record)
            }
        }
        _ => RefreshRotation::NotFound,
    }
}

/// The records of one token response belong together: every one to
/// `project`, the refresh token (if any) to the access token's grant. The
/// issuing statements store them under `project` and that grant, so a
/// mismatch (a caller's bug) is refused rather than stored elsewhere.
pub(crate) fn issuing_records_agree(
    project: &crate::project::ProjectId,
    refresh: Option<&crate::grant::RefreshTokenRecord>,
    access: &crate::grant::AccessTokenRecord,
) -> Result<(), StoreError> {
    let refresh_ok = refresh.is_none_or(|r| r.grant.project == *project && r.grant.id == access.grant_id);
    if access.project == *project && refresh_ok {
        Ok(())
    } else {
        Err(StoreError::new(
            "token records of one response disagree on project or grant",
        ))
    }
}

/// The grant-summary columns a token response's statement writes
/// (PostgreSQL): from the refresh token's grant when there is one (the
/// summary is created or extended), else only the access token's times
/// (an existing summary is extended).
pub(crate) struct IssuingSummary {
    pub(crate) client_id: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) granted_at: Option<i64>,
    pub(crate) used_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) json: Option<String>,
}

pub(crate) fn issuing_summary(
    refresh: Option<&crate::grant::RefreshTokenRecord>,
    access: &crate::grant::AccessTokenRecord,
) -> Result<IssuingSummary, StoreError> {
    let (iat, exp) = (access.claims.iat, access.claims.exp);
    Ok(match refresh {
        Some(r) => IssuingSummary {
            client_id: Some(r.grant.client_id.as_str().to_owned()),
            subject: Some(r.grant.subject.as_str().to_owned()),
            granted_at: Some(secs(r.grant.granted_at)),
            used_at: secs(r.issued_at).max(iat),
            expires_at: secs(r.expires_at).max(exp),
            json: Some(to_json("grant", &r.grant)?),
        },
        None => IssuingSummary {
            client_id: None,
            subject: None,
            granted_at: None,
            used_at: iat,
            expires_at: exp,
            json: None,
        },
    })
}

pub(crate) fn hash_of(bytes: &[u8]) -> Result<crate::secret::SecretHash, StoreError> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::new("stored hash is not 32 bytes"))?;
    Ok(crate::secret::SecretHash::from_bytes(arr))
}

/// The trait impls shared by both backends: the same SQL
/// ([`queries`]), the same row handling. `$store` has fields `pool:
/// sqlx::Pool<_>` and `options: SqlOptions` and a method `fail(&self, op,
/// sqlx::Error) -> StoreError`.
macro_rules! impl_sql_store {
    ($store:ty, $row:ty, $backend:literal, $begin_exclusive:expr, $rotate_in_one:expr, $migrations:expr) => {
        const BACKEND: &str = $backend;
        /// Whether refresh rotation is one statement (a data-modifying
        /// CTE, PostgreSQL) rather than a transaction of two (SQLite).
        const ROTATE_IN_ONE_STATEMENT: bool = $rotate_in_one;
        use sqlx::Row as _;

        use $crate::audit::AuditEvent;
        use $crate::client::{Client, ClientId, RegisteredClientId};
        use $crate::dcr::{IatId, IatRecord};
        use $crate::grant::{AccessTokenRecord, CodeRecord, GrantId, GrantSummary, RefreshTokenRecord, Subject};
        use $crate::project::{ProjectId, ProjectSettings};
        use $crate::secret::SecretHash;
        use $crate::store::sql::{
            PurgeReport, REJECTION_SAMPLES_PER_MINUTE, from_json, hash_of, queries as q, secs, time_of, to_json,
        };
        use $crate::store::{
            AuditCursor, AuditPage, AuditQuery, CodeConsumption, GrantSelector, Page, PageRequest, RefreshRotation,
            RevokeOutcome, StoreError, UseOutcome,
        };

        const MIGRATIONS: &[$crate::store::sql::Migration] = $migrations;
        const BEGIN_EXCLUSIVE: &str = $begin_exclusive;

        /// Events per batched audit insert.
        const AUDIT_BATCH: usize = 256;
        /// Events queued for the batched writer before `record` writes
        /// directly (backpressure).
        const AUDIT_QUEUE: usize = 10_000;

        /// The background audit writer ([`SqlOptions::audit_batching`]),
        /// and the rejection counters flushed in the background whatever
        /// the batching.
        struct AuditWriter {
            queue: std::sync::Mutex<Option<tokio::sync::mpsc::Sender<AuditEvent>>>,
            task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
            rejections: $crate::store::sql::rejections::RejectionCounter,
        }

        /// Writes flushed rejection counters and samples.
        struct SqlRejectionWriter {
            pool: sqlx::Pool<<$row as sqlx::Row>::Database>,
            on_error: Option<$crate::store::sql::ErrorHook>,
        }

        impl SqlRejectionWriter {
            fn fail(&self, op: &str, e: sqlx::Error) -> StoreError {
                let err = StoreError::with_source(format!("{}: {op} failed", BACKEND), e);
                if let Some(hook) = &self.on_error {
                    hook(&err);
                }
                err
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::sql::rejections::RejectionWriter for SqlRejectionWriter {
            async fn add_counts(
                &self,
                counts: &[(&$crate::store::sql::rejections::CounterKey, u64)],
            ) -> Result<Vec<u64>, StoreError> {
                // One statement: atomic, one round trip for up to 256 counters.
                let mut sql = String::from(q::REJECTION_COUNTS_ADD_HEAD);
                for i in 0..counts.len() {
                    let n = i * 5;
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("(${}, ${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4, n + 5));
                }
                sql.push_str(q::REJECTION_COUNTS_ADD_TAIL);
                let mut upsert = sqlx::query(&sql).persistent(false);
                for (key, n) in counts {
                    upsert = upsert
                        .bind(key.project.as_str())
                        .bind(key.minute)
                        .bind(key.event)
                        .bind(key.reason.as_str())
                        .bind(i64::try_from(*n).unwrap_or(i64::MAX));
                }
                let rows = upsert
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.fail("count rejections", e))?;
                // RETURNING promises no order: match the rows by key.
                let mut after = std::collections::HashMap::with_capacity(rows.len());
                for row in &rows {
                    let get = |e| self.fail("count rejections", e);
                    let project: String = row.try_get(0).map_err(get)?;
                    let minute: i64 = row.try_get(1).map_err(get)?;
                    let event: String = row.try_get(2).map_err(get)?;
                    let reason: String = row.try_get(3).map_err(get)?;
                    let count: i64 = row.try_get(4).map_err(get)?;
                    after.insert((project, minute, event, reason), u64::try_from(count).unwrap_or(0));
                }
                Ok(counts
                    .iter()
                    .map(|(key, n)| {
                        // A row missing from the answer: assume the minute's samples are taken.
                        after
                            .get(&(key.project.clone(), key.minute, key.event.to_owned(), key.reason.clone()))
                            .copied()
                            .unwrap_or(u64::from(REJECTION_SAMPLES_PER_MINUTE).saturating_add(*n))
                    })
                    .collect())
            }

            async fn insert_samples(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
                insert_audit_batch(&self.pool, events)
                    .await
                    .map_err(|e| self.fail("record rejection samples", e))
            }
        }

        impl AuditWriter {
            fn none(
                pool: sqlx::Pool<<$row as sqlx::Row>::Database>,
                options: $crate::store::sql::SqlOptions,
                failures: std::sync::Arc<std::sync::atomic::AtomicU64>,
            ) -> Self {
                Self {
                    queue: std::sync::Mutex::new(None),
                    task: std::sync::Mutex::new(None),
                    rejections: Self::rejections(pool, &options, failures),
                }
            }

            fn rejections(
                pool: sqlx::Pool<<$row as sqlx::Row>::Database>,
                options: &$crate::store::sql::SqlOptions,
                failures: std::sync::Arc<std::sync::atomic::AtomicU64>,
            ) -> $crate::store::sql::rejections::RejectionCounter {
                let writer = SqlRejectionWriter {
                    pool,
                    on_error: options.on_error.clone(),
                };
                $crate::store::sql::rejections::RejectionCounter::new(std::sync::Arc::new(writer), failures)
            }

            fn start(
                pool: sqlx::Pool<<$row as sqlx::Row>::Database>,
                options: $crate::store::sql::SqlOptions,
                failures: std::sync::Arc<std::sync::atomic::AtomicU64>,
            ) -> Self {
                let rejections = Self::rejections(pool.clone(), &options, failures.clone());
                let (tx, mut rx) = tokio::sync::mpsc::channel::<AuditEvent>(AUDIT_QUEUE);
                let task = tokio::spawn(async move {
                    let mut batch = Vec::with_capacity(AUDIT_BATCH);
                    while let Some(first) = rx.recv().await {
                        batch.push(first);
                        while batch.len() < AUDIT_BATCH {
                            match rx.try_recv() {
                                Ok(e) => batch.push(e),
                                Err(_) => break,
                            }
                        }
                        // Rejections never reach this queue: `record` hands
                        // them to the in-memory counters first.
                        debug_assert!(batch.iter().all(|e| $crate::store::rejection_key(e).is_none()));
                        if let Err(e) = insert_audit_batch(&pool, &batch).await {
                            let err = StoreError::with_source(format!("{}: record audit events failed", BACKEND), e);
                            if let Some(hook) = &options.on_error {
                                hook(&err);
                            }
                            failures.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                        batch.clear();
                    }
                });
                Self {
                    queue: std::sync::Mutex::new(Some(tx)),
                    task: std::sync::Mutex::new(Some(task)),
                    rejections,
                }
            }

            /// Queues an event; gives it back when the queue is full or closed.
            fn offer(&self, event: AuditEvent) -> Option<AuditEvent> {
                let Ok(queue) = self.queue.lock() else {
                    return Some(event);
                };
                match queue.as_ref() {
                    Some(tx) => tx.try_send(event).err().map(|e| match e {
                        tokio::sync::mpsc::error::TrySendError::Full(e)
                        | tokio::sync::mpsc::error::TrySendError::Closed(e) => e,
                    }),
                    None => Some(event),
                }
            }

            /// Stops taking events and waits until every queued one is written.
            async fn finish(&self) {
                drop(self.queue.lock().ok().and_then(|mut q| q.take()));
                let task = self.task.lock().ok().and_then(|mut t| t.take());
                if let Some(task) = task {
                    let _ = task.await;
                }
            }
        }

        async fn insert_audit_batch(
            pool: &sqlx::Pool<<$row as sqlx::Row>::Database>,
            batch: &[AuditEvent],
        ) -> Result<(), sqlx::Error> {
            let mut sql = String::from("INSERT INTO audit_events (project, at, name, event) VALUES ");
            for i in 0..batch.len() {
                let n = i * 4;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("(${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4));
            }
            // Batch sizes vary: do not fill the statement cache with them.
            let mut insert = sqlx::query(&sql).persistent(false);
            for event in batch {
                let json = serde_json::to_string(event).unwrap_or_default();
                insert = insert
                    .bind(event.project_id.as_str())
                    .bind(secs(event.at))
                    .bind(event.name())
                    .bind(json);
            }
            insert.execute(pool).await.map(|_| ())
        }

        impl $store {
            /// Closes the store: lets the background rejection flush finish
            /// and writes the counts left (each for at most
            /// [`crate::store::sql::REJECTION_READ_WAIT`]; rejections
            /// recorded later are dropped and counted), writes the queued
            /// audit events (with [`SqlOptions::audit_batching`]), then
            /// closes every connection of the pool (waiting for the ones in
            /// use).
            pub async fn close(&self) {
                // Waits for a flush under way and writes the rest, each for
                // at most `REJECTION_READ_WAIT`; later rejections are dropped.
                self.audit_writer.rejections.close().await;
                self.audit_writer.finish().await;
                self.pool.close().await;
            }

            /// Writes the rejection counts held in memory now (they are
            /// written every [`crate::store::sql::REJECTION_FLUSH_INTERVAL`] in the background,
            /// before every read of the audit log, and by `close()`).
            ///
            /// Rejections ([`crate::audit::AuditClass::Rejection`]) are
            /// counted in memory and written in batches, one upsert
            /// statement per 256 counters, so a flood of junk requests is
            /// not a database write each; a process that dies loses the
            /// counts of at most the last interval, and while the database
            /// does not answer the counts and samples of that time are lost
            /// (counted in `audit_failures`). Waits at most
            /// [`crate::store::sql::REJECTION_READ_WAIT`] (for a flush under
            /// way, then this one); a flush stops at its first failed write
            /// or after [`crate::store::sql::REJECTION_FLUSH_DEADLINE`].
            pub async fn flush_rejections(&self) {
                self.audit_writer.rejections.flush().await;
            }

            /// Rejections not counted because
            /// [`crate::store::sql::MAX_PENDING_REJECTION_COUNTERS`] counters
            /// were waiting for a flush (also logged at most once a minute),
            /// or because the store was closed.
            pub fn rejections_dropped(&self) -> u64 {
                self.audit_writer.rejections.dropped()
            }

            /// Applies every embedded migration not yet applied, in order;
            /// idempotent, and safe to run from several processes at once
            /// (each migration's version row is inserted first in its own
            /// transaction).
            ///
            /// # Errors
            /// [`StoreError`] when the database fails or its schema is newer
            /// than this library knows.
            pub async fn migrate(&self) -> Result<(), StoreError> {
                self.migrate_to(MIGRATIONS.last().map_or(0, |m| m.version)).await
            }

            /// Applies the embedded migrations up to and including
            /// `version` (for staged roll-outs and upgrade tests).
            ///
            /// # Errors
            /// As [`Self::migrate`].
            pub async fn migrate_to(&self, version: i64) -> Result<(), StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(|e| self.fail("migrate: connect", e))?;
                // One exclusive transaction for the whole run: concurrent
                // migrations from several processes queue on it.
                sqlx::raw_sql(BEGIN_EXCLUSIVE)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| self.fail("migrate: begin", e))?;
                let applied = self.apply_migrations(&mut conn, version).await;
                let end = if applied.is_ok() { "COMMIT" } else { "ROLLBACK" };
                if let Err(e) = sqlx::raw_sql(end).execute(&mut *conn).await {
                    // Never hand a connection in an unknown transaction state
                    // back to the pool.
                    drop(conn.detach());
                    return Err(applied.err().unwrap_or_else(|| self.fail("migrate: commit", e)));
                }
                applied
            }

            async fn apply_migrations(
                &self,
                conn: &mut sqlx::pool::PoolConnection<<$row as sqlx::Row>::Database>,
                version: i64,
            ) -> Result<(), StoreError> {
                sqlx::raw_sql(
                    "CREATE TABLE IF NOT EXISTS schema_migrations \
                     (version BIGINT PRIMARY KEY NOT NULL, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
                )
                .execute(&mut **conn)
                .await
                .map_err(|e| self.fail("create schema_migrations", e))?;
                let rows = sqlx::query("SELECT version FROM schema_migrations")
                    .fetch_all(&mut **conn)
                    .await
                    .map_err(|e| self.fail("schema version", e))?;
                let mut applied = std::collections::BTreeSet::new();
                for row in &rows {
                    applied.insert(row.try_get::<i64, _>(0).map_err(|e| self.fail("schema version", e))?);
                }
                // A version this library does not embed: the database was
                // migrated by a newer (or different) build.
                if let Some(unknown) = applied.iter().find(|v| !MIGRATIONS.iter().any(|m| m.version == **v)) {
                    let known = MIGRATIONS.last().map_or(0, |m| m.version);
                    return Err(StoreError::new(format!(
                        "the database schema has migration {unknown}, which this library (schema version {known}) does not know"
                    )));
                }
                let now = secs(OffsetDateTime::now_utc());
                // Every embedded migration not yet applied, in order, also
                // one numbered below the newest applied (a database migrated
                // by a build that lacked it).
                for m in MIGRATIONS
                    .iter()
                    .filter(|m| !applied.contains(&m.version) && m.version <= version)
                {
                    sqlx::raw_sql(m.sql)
                        .execute(&mut **conn)
                        .await
                        .map_err(|e| self.fail(m.name, e))?;
                    sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                        .bind(m.version)
                        .bind(m.name)
                        .bind(now)
                        .execute(&mut **conn)
                        .await
                        .map_err(|e| self.fail("migrate: record version", e))?;
                }
                Ok(())
            }

            /// The newest migration applied (0: a migration run started
            /// but applied none).
            ///
            /// # Errors
            /// [`StoreError`] when the database fails, or was never
            /// migrated (it has no `schema_migrations` table).
            pub async fn schema_version(&self) -> Result<i64, StoreError> {
                let row = sqlx::query("SELECT MAX(version) FROM schema_migrations")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.fail("schema version", e))?;
                let v: Option<i64> = row.try_get(0).map_err(|e| self.fail("schema version", e))?;
                Ok(v.unwrap_or(0))
            }

            /// Audit events that could not be stored since the store was
            /// created (each was also reported to [`SqlOptions::on_error`]).
            pub fn audit_failures(&self) -> u64 {
                self.audit_failures.load(std::sync::atomic::Ordering::Relaxed)
            }

            /// The newest migration this library embeds.
            pub fn latest_schema_version() -> i64 {
                MIGRATIONS.last().map_or(0, |m| m.version)
            }

            /// Purges, in batches of [`SqlOptions::purge_batch`] rows, what
            /// can go at `now`: expired codes and tokens (rotated refresh
            /// tokens' tombstones included), stale revocation markers,
            /// unusable initial access tokens, expired CIMD entries, audit
            /// events past the retention limits, rejection counters older
            /// than a day, expired client assertion ids (`jti`), ended
            /// admission windows and expired upstream logins; and clears
            /// rotation marks past the reuse grace.
            ///
            /// # Errors
            /// [`StoreError`] when the database fails (what was purged
            /// before stays purged).
            pub async fn purge(&self, now: OffsetDateTime) -> Result<PurgeReport, StoreError> {
                let mut report = PurgeReport::default();
                report.grants = self.purge_grants(now).await?;
                report.iats = self.purge_iats(now).await?;
                report.cimd = self
                    .delete_batches(
                        "purge cimd",
                        "DELETE FROM cimd_cache WHERE (project, url) IN \
                        (SELECT project, url FROM cimd_cache WHERE expires_at <= $1 LIMIT $2)",
                        secs(now),
                    )
                    .await?;
                report.audit = self.purge_audit(now).await?;
                report.replay = self.purge_replay(now).await?;
                report.admissions = self
                    .delete_batches("purge admission windows", q::ADMISSION_PURGE, secs(now))
                    .await?;
                report.upstream_logins = self.purge_upstream_logins(now).await?;
                Ok(report)
            }

            async fn purge_replay(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
                self.delete_batches("purge assertion ids", q::REPLAY_PURGE, secs(now))
                    .await
            }

            /// Applies the audit retention limits at `now`; returns how many
            /// events went.
            ///
            /// # Errors
            /// [`StoreError`] when the database fails.
            pub async fn purge_audit(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
                // Pending rejections first, so the limits apply to them too.
                self.flush_rejections().await;
                // Rejection counters are kept for a day.
                let mut removed = self
                    .delete_batches(
                        "purge rejection counts",
                        q::REJECTION_COUNTS_PURGE,
                        secs(now - time::Duration::days(1)).div_euclid(60),
                    )
                    .await?;
                if let Some(age) = self.options.audit_max_age {
                    removed += self
                        .delete_batches("purge audit by age", q::AUDIT_PURGE_AGE, secs(now - age))
                        .await?;
                }
                if let Some(keep) = self.options.audit_max_rows_per_project {
                    let crowded = sqlx::query(q::AUDIT_CROWDED)
                        .bind(i64::from(keep))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(|e| self.fail("audit retention", e))?;
                    for row in crowded {
                        let project: String = row.try_get(0).map_err(|e| self.fail("audit retention", e))?;
                        let flood: i32 = row.try_get(1).map_err(|e| self.fail("audit retention", e))?;
                        loop {
                            let n = sqlx::query(q::AUDIT_PURGE_ROWS)
                                .bind(&project)
                                .bind(i64::from(keep))
                                .bind(i64::from(self.options.purge_batch))
                                .bind(flood)
                                .execute(&self.pool)
                                .await
                                .map_err(|e| self.fail("audit retention", e))?
                                .rows_affected();
                            removed += n;
                            if n < u64::from(self.options.purge_batch) {
                                break;
                            }
                        }
                    }
                }
                Ok(removed)
            }

            async fn purge_grants(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
                let mut removed = 0;
                for table in [
                    "authorization_codes",
                    "refresh_tokens",
                    "refresh_tombstones",
                    "access_tokens",
                ] {
                    removed += self
                        .delete_batches(table, &q::purge_expired(table), secs(now))
                        .await?;
                }
                removed += self
                    .delete_batches(
                        "grant summaries",
                        q::PURGE_SUMMARIES,
                        secs(now - $crate::store::GRANT_SUMMARY_GRACE),
                    )
                    .await?;
                removed += self
                    .delete_batches("revoked_grants", q::PURGE_MARKERS, secs(now))
                    .await?;
                // Not counted as removed records: the tombstones stay (for
                // reuse detection), only their marks go.
                self.delete_batches(
                    "clear rotation marks",
                    q::CLEAR_ROTATIONS,
                    secs(now - $crate::project::MAX_REFRESH_REUSE_GRACE),
                )
                .await?;
                Ok(removed)
            }

            async fn purge_iats(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
                self.delete_batches("purge initial access tokens", q::IAT_PURGE, secs(now))
                    .await
            }

            /// Runs `sql` (`$1`: a time, `$2`: the batch size) until a batch
            /// deletes fewer rows than the batch size.
            async fn delete_batches(&self, op: &'static str, sql: &str, at: i64) -> Result<u64, StoreError> {
                let batch = self.options.purge_batch;
                let mut removed = 0;
                loop {
                    let n = sqlx::query(sql)
                        .bind(at)
                        .bind(i64::from(batch))
                        .execute(&self.pool)
                        .await
                        .map_err(|e| self.fail(op, e))?
                        .rows_affected();
                    removed += n;
                    if n < u64::from(batch) {
                        return Ok(removed);
                    }
                }
            }

            fn iat_from_row(&self, row: &$row) -> Result<IatRecord, StoreError> {
                let get = |e| self.fail("decode initial access token", e);
                let hash: Vec<u8> = row.try_get("hash").map_err(get)?;
                let id: String = row.try_get("id").map_err(get)?;
                let label: Option<String> = row.try_get("label").map_err(get)?;
                let created_at: i64 = row.try_get("created_at").map_err(get)?;
                let expires_at: Option<i64> = row.try_get("expires_at").map_err(get)?;
                let max_uses: Option<i64> = row.try_get("max_uses").map_err(get)?;
                let uses: i64 = row.try_get("uses").map_err(get)?;
                let revoked_at: Option<i64> = row.try_get("revoked_at").map_err(get)?;
                let pinned: String = row.try_get("pinned").map_err(get)?;
                let count = |v: i64| u32::try_from(v).map_err(|_| StoreError::new("stored use count out of range"));
                Ok(IatRecord {
                    id: IatId::new(id).map_err(|e| StoreError::with_source("stored initial access token id", e))?,
                    hash: hash_of(&hash)?,
                    label,
                    created_at: time_of(created_at)?,
                    expires_at: expires_at.map(time_of).transpose()?,
                    max_uses: max_uses.map(count).transpose()?,
                    uses: count(uses)?,
                    revoked_at: revoked_at.map(time_of).transpose()?,
                    pinned: from_json("pinned metadata", &pinned)?,
                })
            }

            /// A client from a `(client JSON, disabled_at)` row: the column
            /// is authoritative for `disabled_at`.
            fn client_from_row(&self, row: &$row) -> Result<Client, StoreError> {
                let json: String = row.try_get(0).map_err(|e| self.fail("decode client", e))?;
                let disabled_at: Option<i64> = row.try_get(1).map_err(|e| self.fail("decode client", e))?;
                let mut client: Client = from_json("client", &json)?;
                client.disabled_at = disabled_at.map(time_of).transpose()?;
                Ok(client)
            }

            /// A grant summary from a `(record, last_used_at, expires_at)`
            /// row.
            fn summary_from_row(&self, row: &$row) -> Result<GrantSummary, StoreError> {
                let get = |e| self.fail("decode grant summary", e);
                let json: String = row.try_get(0).map_err(get)?;
                let last_used_at: Option<i64> = row.try_get(1).map_err(get)?;
                let expires_at: i64 = row.try_get(2).map_err(get)?;
                let mut summary = GrantSummary::new(from_json("grant", &json)?, time_of(expires_at)?);
                summary.last_used_at = last_used_at.map(time_of).transpose()?;
                Ok(summary)
            }

            /// Extends the grant's summary by an access token (its
            /// last use and, never shortened, its expiry).
            async fn extend_grant(&self, record: &AccessTokenRecord) -> Result<(), StoreError> {
                sqlx::query(q::GRANT_EXTEND)
                    .bind(record.project.as_str())
                    .bind(record.grant_id.as_str())
                    .bind(record.claims.iat)
                    .bind(record.claims.exp)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("extend grant summary", e))?;
                Ok(())
            }

            /// Inside a rotation's transaction (SQLite), after `REFRESH_TAKE`
            /// returned the old token's row: its tombstone (with the
            /// rotation mark), the successor, and the grant's tombstones
            /// beyond the newest `keep`.
            #[allow(clippy::too_many_arguments)]
            async fn rotate_in(
                &self,
                tx: &mut sqlx::Transaction<'_, <$row as sqlx::Row>::Database>,
                project: &ProjectId,
                old: &SecretHash,
                old_record: &RefreshTokenRecord,
                grant_id: &str,
                new: &RefreshTokenRecord,
                new_json: String,
                mark: &$crate::grant::RotationMark,
                mark_json: String,
                keep: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(q::TOMBSTONE_INSERT)
                    .bind(project.as_str())
                    .bind(old.as_bytes().as_slice())
                    .bind(grant_id)
                    .bind(secs(old_record.issued_at))
                    .bind(secs(old_record.expires_at))
                    .bind(secs(mark.at))
                    .bind(mark_json)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| self.fail("rotate refresh token: tombstone", e))?;
                sqlx::query(q::REFRESH_INSERT)
                    .bind(new.grant.project.as_str())
                    .bind(new.hash.as_bytes().as_slice())
                    .bind(new.grant.id.as_str())
                    .bind(secs(new.expires_at))
                    .bind(new.rotated)
                    .bind(new_json)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| self.fail("rotate refresh token: insert", e))?;
                sqlx::query(q::TOMBSTONE_CAP)
                    .bind(project.as_str())
                    .bind(grant_id)
                    .bind(keep)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| self.fail("rotate refresh token: cap", e))?;
                Ok(())
            }

            /// Inside a token response's transaction (SQLite): the access
            /// token's insert, the prune of the grant's others when it was
            /// inserted, and the summary's extension.
            async fn issue_access_in(
                &self,
                tx: &mut sqlx::Transaction<'_, <$row as sqlx::Row>::Database>,
                project: &ProjectId,
                access: &AccessTokenRecord,
                json: String,
                keep: i64,
            ) -> Result<(), StoreError> {
                let inserted = sqlx::query(q::ACCESS_INSERT)
                    .bind(project.as_str())
                    .bind(access.hash.as_bytes().as_slice())
                    .bind(access.grant_id.as_str())
                    .bind(access.claims.exp)
                    .bind(access.revoked)
                    .bind(json)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| self.fail("insert access token", e))?
                    .rows_affected();
                if inserted == 1 {
                    sqlx::query(q::ACCESS_PRUNE)
                        .bind(project.as_str())
                        .bind(access.hash.as_bytes().as_slice())
                        .bind(access.grant_id.as_str())
                        .bind(access.claims.iat)
                        .bind(keep)
                        .execute(&mut **tx)
                        .await
                        .map_err(|e| self.fail("insert access token: prune", e))?;
                }
                sqlx::query(q::GRANT_EXTEND)
                    .bind(project.as_str())
                    .bind(access.grant_id.as_str())
                    .bind(access.claims.iat)
                    .bind(access.claims.exp)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| self.fail("extend grant summary", e))?;
                Ok(())
            }

            /// Creates or extends the summary of `grant` (see
            /// `queries::GRANT_TOUCH`).
            async fn touch_grant(
                &self,
                grant: &$crate::grant::Grant,
                used_at: Option<OffsetDateTime>,
                expires_at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                sqlx::query(q::GRANT_TOUCH)
                    .bind(grant.project.as_str())
                    .bind(grant.id.as_str())
                    .bind(grant.client_id.as_str())
                    .bind(grant.subject.as_str())
                    .bind(secs(grant.granted_at))
                    .bind(used_at.map(secs))
                    .bind(secs(expires_at))
                    .bind(to_json("grant", grant)?)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("record grant summary", e))?;
                Ok(())
            }

            /// `(flag, record JSON)` rows of the grant tables.
            fn flagged<T: serde::de::DeserializeOwned>(
                &self,
                what: &'static str,
                row: &$row,
            ) -> Result<(bool, T), StoreError> {
                let flag: bool = row.try_get(0).map_err(|e| self.fail(what, e))?;
                let json: String = row.try_get(1).map_err(|e| self.fail(what, e))?;
                Ok((flag, from_json(what, &json)?))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::ProjectStore for $store {
            async fn get(&self, id: &ProjectId) -> Result<Option<ProjectSettings>, StoreError> {
                let row = sqlx::query(q::PROJECT_GET)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("get project", e))?;
                row.map(|r| {
                    let json: String = r.try_get(0).map_err(|e| self.fail("get project", e))?;
                    from_json("project settings", &json)
                })
                .transpose()
            }

            async fn put(&self, id: &ProjectId, settings: ProjectSettings) -> Result<(), StoreError> {
                sqlx::query(q::PROJECT_PUT)
                    .bind(id.as_str())
                    .bind(to_json("project settings", &settings)?)
                    .bind(secs(OffsetDateTime::now_utc()))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("put project", e))?;
                Ok(())
            }

            async fn compare_and_swap(
                &self,
                id: &ProjectId,
                current: &ProjectSettings,
                new: ProjectSettings,
            ) -> Result<bool, StoreError> {
                let Some(row) = sqlx::query(q::PROJECT_GET)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("read project for update", e))?
                else {
                    return Ok(false);
                };
                let json: String = row
                    .try_get(0)
                    .map_err(|e| self.fail("read project for update", e))?;
                let version: i64 = row
                    .try_get(1)
                    .map_err(|e| self.fail("read project for update", e))?;
                let stored: ProjectSettings = from_json("project settings", &json)?;
                if &stored != current {
                    return Ok(false);
                }
                let swapped = sqlx::query(q::PROJECT_SWAP)
                    .bind(id.as_str())
                    .bind(version)
                    .bind(to_json("project settings", &new)?)
                    .bind(secs(OffsetDateTime::now_utc()))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("swap project", e))?
                    .rows_affected();
                Ok(swapped == 1)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::ClientStore for $store {
            async fn get(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<Option<Client>, StoreError> {
                let row = sqlx::query(q::CLIENT_GET)
                    .bind(project.as_str())
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("get client", e))?;
                row.map(|r| self.client_from_row(&r)).transpose()
            }

            async fn insert(&self, project: &ProjectId, client: Client) -> Result<bool, StoreError> {
                let ClientId::Registered(id) = &client.client_id else {
                    return Err(StoreError::new("only registered clients are stored"));
                };
                let inserted = sqlx::query(q::CLIENT_INSERT)
                    .bind(project.as_str())
                    .bind(id.as_str())
                    .bind(to_json("client", &client)?)
                    .bind(secs(client.issued_at))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("insert client", e))?
                    .rows_affected();
                if inserted == 1 && client.disabled_at.is_some() {
                    $crate::store::ClientStore::set_disabled(self, project, id, client.disabled_at).await?;
                }
                Ok(inserted == 1)
            }

            async fn delete(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<bool, StoreError> {
                let deleted = sqlx::query(q::CLIENT_DELETE)
                    .bind(project.as_str())
                    .bind(id.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("delete client", e))?
                    .rows_affected();
                Ok(deleted == 1)
            }

            async fn count(&self, project: &ProjectId) -> Result<usize, StoreError> {
                let row = sqlx::query(q::CLIENT_COUNT)
                    .bind(project.as_str())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.fail("count clients", e))?;
                let n: i64 = row.try_get(0).map_err(|e| self.fail("count clients", e))?;
                usize::try_from(n).map_err(|_| StoreError::new("client count out of range"))
            }

            async fn list(&self, project: &ProjectId, page: &PageRequest) -> Result<Page<Client>, StoreError> {
                let (at, id) = page.cursor().map_or((i64::MIN, ""), |c| (c.at(), c.id()));
                let rows = sqlx::query(q::CLIENT_LIST)
                    .bind(project.as_str())
                    .bind(at)
                    .bind(id)
                    .bind(i64::try_from(page.limit() + 1).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.fail("list clients", e))?;
                let items = rows
                    .iter()
                    .map(|r| self.client_from_row(r))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(page.page(items, $crate::store::memory::client_cursor))
            }

            async fn set_disabled(
                &self,
                project: &ProjectId,
                id: &RegisteredClientId,
                disabled_at: Option<OffsetDateTime>,
            ) -> Result<Option<Client>, StoreError> {
                let row = sqlx::query(q::CLIENT_SET_DISABLED)
                    .bind(project.as_str())
                    .bind(id.as_str())
                    .bind(disabled_at.map(secs))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("disable client", e))?;
                row.map(|r| self.client_from_row(&r)).transpose()
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::IatStore for $store {
            async fn insert(&self, project: &ProjectId, record: IatRecord) -> Result<bool, StoreError> {
                let inserted = sqlx::query(q::IAT_INSERT)
                    .bind(project.as_str())
                    .bind(record.hash.as_bytes().as_slice())
                    .bind(record.id.as_str())
                    .bind(record.label.as_deref())
                    .bind(secs(record.created_at))
                    .bind(record.expires_at.map(secs))
                    .bind(record.max_uses.map(i64::from))
                    .bind(i64::from(record.uses))
                    .bind(record.revoked_at.map(secs))
                    .bind(to_json("pinned metadata", &record.pinned)?)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("insert initial access token", e))?
                    .rows_affected();
                Ok(inserted == 1)
            }

            async fn find(&self, project: &ProjectId, hash: &SecretHash) -> Result<Option<IatRecord>, StoreError> {
                let row = sqlx::query(&q::iat_find())
                    .bind(project.as_str())
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("find initial access token", e))?;
                row.map(|r| self.iat_from_row(&r)).transpose()
            }

            async fn use_once(
                &self,
                project: &ProjectId,
                hash: &SecretHash,
                now: OffsetDateTime,
            ) -> Result<UseOutcome, StoreError> {
                let used = sqlx::query(&q::iat_use())
                    .bind(project.as_str())
                    .bind(hash.as_bytes().as_slice())
                    .bind(secs(now))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("use initial access token", e))?;
                if let Some(row) = used {
                    return Ok(UseOutcome::Used(self.iat_from_row(&row)?));
                }
                // Nothing counted: say why. Every condition only ever
                // becomes false (uses grow, revocation and expiry stay), so
                // the record read now is unusable too.
                let Some(record) = $crate::store::IatStore::find(self, project, hash).await? else {
                    return Ok(UseOutcome::Unknown);
                };
                // Stored times are whole seconds: judge at the second the
                // update was judged at.
                let at = time_of(secs(now))?;
                match record.check(at) {
                    Err(e) => Ok(UseOutcome::Unusable(e)),
                    Ok(()) => Err(StoreError::new(
                        "initial access token was not counted but reads as usable",
                    )),
                }
            }

            async fn list(&self, project: &ProjectId) -> Result<Vec<IatRecord>, StoreError> {
                let rows = sqlx::query(&q::iat_list())
                    .bind(project.as_str())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.fail("list initial access tokens", e))?;
                rows.iter().map(|r| self.iat_from_row(r)).collect()
            }

            async fn revoke(
                &self,
                project: &ProjectId,
                id: &IatId,
                now: OffsetDateTime,
            ) -> Result<RevokeOutcome, StoreError> {
                let row = sqlx::query(&q::iat_revoke())
                    .bind(project.as_str())
                    .bind(id.as_str())
                    .bind(secs(now))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("revoke initial access token", e))?;
                if let Some(row) = row {
                    return Ok(RevokeOutcome::Revoked(self.iat_from_row(&row)?));
                }
                let row = sqlx::query(&q::iat_by_id())
                    .bind(project.as_str())
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("revoke initial access token", e))?;
                Ok(match row {
                    Some(row) => RevokeOutcome::AlreadyRevoked(self.iat_from_row(&row)?),
                    None => RevokeOutcome::Unknown,
                })
            }

            async fn purge(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
                let n = self.purge_iats(now).await?;
                usize::try_from(n).map_err(|_| StoreError::new("purge count out of range"))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::GrantStore for $store {
            async fn insert_code(&self, record: CodeRecord) -> Result<(), StoreError> {
                if ROTATE_IN_ONE_STATEMENT {
                    // PostgreSQL: the summary and the code in one statement
                    // (both visible at its commit).
                    sqlx::query(q::CODE_INSERT_WITH_SUMMARY)
                        .bind(record.grant.project.as_str())
                        .bind(record.hash.as_bytes().as_slice())
                        .bind(record.grant.id.as_str())
                        .bind(secs(record.expires_at))
                        .bind(record.consumed)
                        .bind(to_json("code", &record)?)
                        .bind(record.grant.client_id.as_str())
                        .bind(record.grant.subject.as_str())
                        .bind(secs(record.grant.granted_at))
                        .bind(to_json("grant", &record.grant)?)
                        .execute(&self.pool)
                        .await
                        .map_err(|e| self.fail("insert code", e))?;
                    return Ok(());
                }
                // The summary first: the grant is listed (and found by a
                // bulk revocation) before its code can be read.
                self.touch_grant(&record.grant, None, record.expires_at).await?;
                sqlx::query(q::CODE_INSERT)
                    .bind(record.grant.project.as_str())
                    .bind(record.hash.as_bytes().as_slice())
                    .bind(record.grant.id.as_str())
                    .bind(secs(record.expires_at))
                    .bind(record.consumed)
                    .bind(to_json("code", &record)?)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("insert code", e))?;
                Ok(())
            }

            async fn code(&self, project: &ProjectId, hash: &SecretHash) -> Result<Option<CodeRecord>, StoreError> {
                let row = sqlx::query(q::CODE_GET)
                    .bind(project.as_str())
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("get code", e))?;
                row.map(|r| {
                    let (consumed, mut record): (bool, CodeRecord) = self.flagged("code", &r)?;
                    record.consumed = consumed;
                    Ok(record)
                })
                .transpose()
            }

            async fn consume_code(
                &self,
                project: &ProjectId,
                hash: &SecretHash,
                now: OffsetDateTime,
            ) -> Result<CodeConsumption, StoreError> {
                let row = sqlx::query(q::CODE_CONSUME)
                    .bind(project.as_str())
                    .bind(hash.as_bytes().as_slice())
                    .bind(secs(now))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("consume code", e))?;
                if let Some(row) = row {
                    let json: String = row.try_get(0).map_err(|e| self.fail("consume code", e))?;
                    let mut record: CodeRecord = from_json("code", &json)?;
                    record.consumed = true;
                    return Ok(CodeConsumption::Consumed(record));
                }
                // Not consumed by this call: consumed before, or its grant
                // is revoked (both a replay to the caller), or expired at
                // `now` (as absent), or absent.
                let row = sqlx::query(q::CODE_STATE)
                    .bind(project.as_str())
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("consume code", e))?;
                Ok(match row {
                    Some(r) => {
                        let (consumed, mut record): (bool, CodeRecord) = self.flagged("code", &r)?;
                        record.consumed = consumed;
                        if !consumed && now >= record.expires_at {
                            CodeConsumption::NotFound
                        } else {
                            CodeConsumption::AlreadyConsumed(record)
                        }
                    }
                    None => CodeConsumption::NotFound,
                })
            }

            async fn insert_refresh_token(&self, record: RefreshTokenRecord) -> Result<(), StoreError> {
                self.touch_grant(&record.grant, Some(record.issued_at), record.expires_at)
                    .await?;
                sqlx::query(q::REFRESH_INSERT)
                    .bind(record.grant.project.as_str())
                    .bind(record.hash.as_bytes().as_slice())
                    .bind(record.grant.id.as_str())
                    .bind(secs(record.expires_at))
                    .bind(record.rotated)
                    .bind(to_json("refresh token", &record)?)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("insert refresh token", e))?;
                Ok(())
            }

            async fn refresh_token(
                &self,
                project: &ProjectId,
                hash: &SecretHash,
            ) -> Result<Option<RefreshTokenRecord>, StoreError> {
                let row = sqlx::query(q::REFRESH_GET)
                    .bind(project.as_str())
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("get refresh token", e))?;
                if let Some(r) = row {
                    let (rotated, mut record): (bool, RefreshTokenRecord) = self.flagged("refresh token", &r)?;
                    record.rotated = rotated;
                    let rotation: Option<String> = r.try_get(2).map_err(|e| self.fail("refresh token", e))?;
                    record.rotation = rotation
                        .map(|json| from_json("refresh token rotation", &json))
                        .transpose()?;
                    return Ok(Some(record));
                }
                // A rotated token: its tombstone and the grant's current
                // token (rotation never changes a grant, scopes or
                // resources).
                let row = sqlx::query(q::TOMBSTONE_GET)
                    .bind(project.as_str())
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("get refresh token tombstone", e))?;
                row.map(|r| {
                    let get = |e| self.fail("decode refresh token tombstone", e);
                    let issued_at: i64 = r.try_get(0).map_err(get)?;
                    let expires_at: i64 = r.try_get(1).map_err(get)?;
                    let rotation: Option<String> = r.try_get(2).map_err(get)?;
                    let head: String = r.try_get(3).map_err(get)?;
                    let mut record: RefreshTokenRecord = from_json("refresh token", &head)?;
                    record.hash = *hash;
                    record.issued_at = time_of(issued_at)?;
                    record.expires_at = time_of(expires_at)?;
                    record.rotated = true;
                    record.rotation = rotation
                        .map(|json| from_json("refresh token rotation", &json))
                        .transpose()?;
                    Ok(record)
                })
                .transpose()
            }

            async fn rotate_refresh_token(
                &self,
                project: &ProjectId,
                old: &SecretHash,
                new: RefreshTokenRecord,
                mark: $crate::grant::RotationMark,
                grace: time::Duration,
            ) -> Result<RefreshRotation, StoreError> {
                let new_json = to_json("refresh token", &new)?;
                let mark_json = to_json("refresh token rotation", &mark)?;
                // The loser of a race (or a later presentation) reads the
                // winner's committed mark and applies the grace rule.
                let after_lost = |record| $crate::store::sql::rotation_lost(record, mark.at, grace);
                let keep = i64::try_from($crate::store::MAX_ROTATED_PER_GRANT).unwrap_or(i64::MAX);
                if ROTATE_IN_ONE_STATEMENT {
                    let row = sqlx::query(q::REFRESH_ROTATE_ONE_STATEMENT)
                        .bind(project.as_str())
                        .bind(old.as_bytes().as_slice())
                        .bind(new.grant.project.as_str())
                        .bind(new.hash.as_bytes().as_slice())
                        .bind(new.grant.id.as_str())
                        .bind(secs(new.expires_at))
                        .bind(new.rotated)
                        .bind(new_json)
                        .bind(mark_json)
                        .bind(secs(mark.at))
                        .bind(keep - 1)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| self.fail("rotate refresh token", e))?;
                    if let Some(row) = row {
                        let json: String = row.try_get(0).map_err(|e| self.fail("rotate refresh token", e))?;
                        let mut old_record: RefreshTokenRecord = from_json("refresh token", &json)?;
                        old_record.rotated = true;
                        old_record.rotation = Some(mark);
                        self.touch_grant(&new.grant, Some(new.issued_at), new.expires_at)
                            .await?;
                        return Ok(RefreshRotation::Rotated(old_record));
                    }
                    return Ok(after_lost(
                        $crate::store::GrantStore::refresh_token(self, project, old).await?,
                    ));
                }
                // SQLite only (PostgreSQL returned above): `BEGIN IMMEDIATE`,
                // so the transaction holds the write lock from its start and
                // no later edit can turn it into a read-then-write race.
                let mut tx = self
                    .pool
                    .begin_with(BEGIN_EXCLUSIVE)
                    .await
                    .map_err(|e| self.fail("rotate refresh token", e))?;
                // The conditional delete first: it takes the database write
                // lock, so of concurrent rotations only one gets the row.
                let row = sqlx::query(q::REFRESH_TAKE)
                    .bind(project.as_str())
                    .bind(old.as_bytes().as_slice())
                    .bind(secs(mark.at))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.fail("rotate refresh token", e))?;
                if let Some(row) = row {
                    let grant_id: String = row.try_get(0).map_err(|e| self.fail("rotate refresh token", e))?;
                    let json: String = row.try_get(1).map_err(|e| self.fail("rotate refresh token", e))?;
                    let mut old_record: RefreshTokenRecord = from_json("refresh token", &json)?;
                    self.rotate_in(
                        &mut tx,
                        project,
                        old,
                        &old_record,
                        &grant_id,
                        &new,
                        new_json,
                        &mark,
                        mark_json,
                        keep,
                    )
                    .await?;
                    tx.commit()
                        .await
                        .map_err(|e| self.fail("rotate refresh token: commit", e))?;
                    old_record.rotated = true;
                    old_record.rotation = Some(mark);
                    self.touch_grant(&new.grant, Some(new.issued_at), new.expires_at)
                        .await?;
                    return Ok(RefreshRotation::Rotated(old_record));
                }
                tx.rollback()
                    .await
                    .map_err(|e| self.fail("rotate refresh token", e))?;
                // absent, its grant revoked, or rotated before
                Ok(after_lost(
                    $crate::store::GrantStore::refresh_token(self, project, old).await?,
                ))
            }

            async fn insert_access_token(&self, record: AccessTokenRecord) -> Result<(), StoreError> {
                // The grant's expired access tokens, and its oldest beyond
                // the cap, go with every insert (bounded growth per grant).
                let keep = i64::try_from($crate::store::MAX_ACCESS_TOKENS_PER_GRANT).unwrap_or(i64::MAX) - 1;
                let json = to_json("access token", &record)?;
                if ROTATE_IN_ONE_STATEMENT {
                    sqlx::query(q::ACCESS_INSERT_AND_PRUNE)
                        .bind(record.project.as_str())
                        .bind(record.hash.as_bytes().as_slice())
                        .bind(record.grant_id.as_str())
                        .bind(record.claims.exp)
                        .bind(record.revoked)
                        .bind(json)
                        .bind(record.claims.iat)
                        .bind(keep)
                        .execute(&self.pool)
                        .await
                        .map_err(|e| self.fail("insert access token", e))?;
                    return self.extend_grant(&record).await;
                }
                let inserted = sqlx::query(q::ACCESS_INSERT)
                    .bind(record.project.as_str())
                    .bind(record.hash.as_bytes().as_slice())
                    .bind(record.grant_id.as_str())
                    .bind(record.claims.exp)
                    .bind(record.revoked)
                    .bind(json)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("insert access token", e))?
                    .rows_affected();
                if inserted == 1 {
                    sqlx::query(q::ACCESS_PRUNE)
                        .bind(record.project.as_str())
                        .bind(record.hash.as_bytes().as_slice())
                        .bind(record.grant_id.as_str())
                        .bind(record.claims.iat)
                        .bind(keep)
                        .execute(&self.pool)
                        .await
                        .map_err(|e| self.fail("insert access token: prune", e))?;
                }
                self.extend_grant(&record).await
            }

            /// PostgreSQL: one statement (`queries::CODE_CONSUME_ISSUING`,
            /// a data-modifying CTE: the consume's row lock decides the
            /// winner, and the inserts ride on the row it returns). SQLite:
            /// one `BEGIN IMMEDIATE` transaction (the database write lock
            /// decides the winner; everything commits together).
            async fn consume_code_issuing(
                &self,
                project: &ProjectId,
                hash: &SecretHash,
                now: OffsetDateTime,
                refresh: Option<RefreshTokenRecord>,
                access: AccessTokenRecord,
            ) -> Result<CodeConsumption, StoreError> {
                $crate::store::sql::issuing_records_agree(project, refresh.as_ref(), &access)?;
                let consumed = |row: &$row| -> Result<CodeConsumption, StoreError> {
                    let json: String = row.try_get(0).map_err(|e| self.fail("consume code", e))?;
                    let mut record: CodeRecord = from_json("code", &json)?;
                    record.consumed = true;
                    Ok(CodeConsumption::Consumed(record))
                };
                let keep = i64::try_from($crate::store::MAX_ACCESS_TOKENS_PER_GRANT).unwrap_or(i64::MAX) - 1;
                let access_json = to_json("access token", &access)?;
                let refresh_json = refresh.as_ref().map(|r| to_json("refresh token", r)).transpose()?;
                if ROTATE_IN_ONE_STATEMENT {
                    let summary = $crate::store::sql::issuing_summary(refresh.as_ref(), &access)?;
                    let row = sqlx::query(q::CODE_CONSUME_ISSUING)
                        .bind(project.as_str())
                        .bind(hash.as_bytes().as_slice())
                        .bind(refresh.as_ref().map(|r| r.hash.as_bytes().to_vec()))
                        .bind(refresh.as_ref().map(|r| r.grant.id.as_str().to_owned()))
                        .bind(refresh.as_ref().map(|r| secs(r.expires_at)))
                        .bind(refresh.as_ref().map(|r| r.rotated))
                        .bind(refresh_json)
                        .bind(access.hash.as_bytes().as_slice())
                        .bind(access.grant_id.as_str())
                        .bind(access.claims.exp)
                        .bind(access.revoked)
                        .bind(access_json)
                        .bind(access.claims.iat)
                        .bind(keep)
                        .bind(summary.client_id)
                        .bind(summary.subject)
                        .bind(summary.granted_at)
                        .bind(summary.used_at)
                        .bind(summary.expires_at)
                        .bind(summary.json)
                        .bind(secs(now))
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| self.fail("consume code", e))?;
                    if let Some(row) = row {
                        return consumed(&row);
                    }
                } else {
                    // SQLite: `BEGIN IMMEDIATE` (the write lock from the
                    // start, so no later edit can make it read-then-write).
                    let mut tx = self
                        .pool
                        .begin_with(BEGIN_EXCLUSIVE)
                        .await
                        .map_err(|e| self.fail("consume code", e))?;
                    // The conditional update first: it takes the database
                    // write lock, so of concurrent consumers only one gets
                    // the row.
                    let row = sqlx::query(q::CODE_CONSUME)
                        .bind(project.as_str())
                        .bind(hash.as_bytes().as_slice())
                        .bind(secs(now))
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(|e| self.fail("consume code", e))?;
                    if let Some(row) = row {
                        let outcome = consumed(&row)?;
                        if matches!(&outcome, CodeConsumption::Consumed(c) if c.grant.id != access.grant_id) {
                            tx.rollback().await.map_err(|e| self.fail("consume code", e))?;
                            return Err(StoreError::new("issued tokens are not of the code's grant"));
                        }
                        if let (Some(r), Some(json)) = (&refresh, refresh_json) {
                            sqlx::query(q::GRANT_TOUCH)
                                .bind(project.as_str())
                                .bind(r.grant.id.as_str())
                                .bind(r.grant.client_id.as_str())
                                .bind(r.grant.subject.as_str())
                                .bind(secs(r.grant.granted_at))
                                .bind(Some(secs(r.issued_at)))
                                .bind(secs(r.expires_at))
                                .bind(to_json("grant", &r.grant)?)
                                .execute(&mut *tx)
                                .await
                                .map_err(|e| self.fail("consume code: grant summary", e))?;
                            sqlx::query(q::REFRESH_INSERT)
                                .bind(project.as_str())
                                .bind(r.hash.as_bytes().as_slice())
                                .bind(r.grant.id.as_str())
                                .bind(secs(r.expires_at))
                                .bind(r.rotated)
                                .bind(json)
                                .execute(&mut *tx)
                                .await
                                .map_err(|e| self.fail("consume code: refresh token", e))?;
                        }
                        self.issue_access_in(&mut tx, project, &access, access_json, keep).await?;
                        tx.commit().await.map_err(|e| self.fail("consume code: commit", e))?;
                        return Ok(outcome);
                    }
                    tx.rollback().await.map_err(|e| self.fail("consume code", e))?;
                }
                // Not consumed by this call: consumed before, or its grant
                // is revoked (both a replay to the caller), or expired at
                // `now` (as absent), or absent.
                let row = sqlx::query(q::CODE_STATE)
                    .bind(project.as_str())
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("consume code", e))?;
                Ok(match row {
                    Some(r) => {
                        let (consumed, mut record): (bool, CodeRecord) = self.flagged("code", &r)?;
                        record.consumed = consumed;
                        if record.grant.id != access.grant_id {
                            return Err(StoreError::new("issued tokens are not of the code's grant"));
                        }
                        if !consumed && now >= record.expires_at {
                            CodeConsumption::NotFound
                        } else {
                            CodeConsumption::AlreadyConsumed(record)
                        }
                    }
                    None => CodeConsumption::NotFound,
                })
            }

            /// PostgreSQL: one statement (`queries::REFRESH_ROTATE_ISSUING`:
            /// the rotation statement with the access-token insert and the
            /// grant summary riding on the row its delete returned).
            /// SQLite: the rotation's transaction with the access token and
            /// the summary added before its commit.
            async fn rotate_refresh_token_issuing(
                &self,
                project: &ProjectId,
                old: &SecretHash,
                new: RefreshTokenRecord,
                mark: $crate::grant::RotationMark,
                grace: time::Duration,
                access: AccessTokenRecord,
            ) -> Result<RefreshRotation, StoreError> {
                $crate::store::sql::issuing_records_agree(project, Some(&new), &access)?;
                let new_json = to_json("refresh token", &new)?;
                let mark_json = to_json("refresh token rotation", &mark)?;
                let access_json = to_json("access token", &access)?;
                let keep_access = i64::try_from($crate::store::MAX_ACCESS_TOKENS_PER_GRANT).unwrap_or(i64::MAX) - 1;
                let keep = i64::try_from($crate::store::MAX_ROTATED_PER_GRANT).unwrap_or(i64::MAX);
                let after_lost = |record| $crate::store::sql::rotation_lost(record, mark.at, grace);
                let rotated = |json: &str| -> Result<RefreshRotation, StoreError> {
                    let mut old_record: RefreshTokenRecord = from_json("refresh token", json)?;
                    old_record.rotated = true;
                    old_record.rotation = Some(mark.clone());
                    Ok(RefreshRotation::Rotated(old_record))
                };
                if ROTATE_IN_ONE_STATEMENT {
                    let summary = $crate::store::sql::issuing_summary(Some(&new), &access)?;
                    let row = sqlx::query(q::REFRESH_ROTATE_ISSUING)
                        .bind(project.as_str())
                        .bind(old.as_bytes().as_slice())
                        .bind(Some(new.hash.as_bytes().to_vec()))
                        .bind(new.grant.id.as_str())
                        .bind(secs(new.expires_at))
                        .bind(new.rotated)
                        .bind(new_json)
                        .bind(access.hash.as_bytes().as_slice())
                        .bind(access.grant_id.as_str())
                        .bind(access.claims.exp)
                        .bind(access.revoked)
                        .bind(access_json)
                        .bind(access.claims.iat)
                        .bind(keep_access)
                        .bind(summary.client_id)
                        .bind(summary.subject)
                        .bind(summary.granted_at)
                        .bind(summary.used_at)
                        .bind(summary.expires_at)
                        .bind(summary.json)
                        .bind(mark_json)
                        .bind(secs(mark.at))
                        .bind(keep - 1)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| self.fail("rotate refresh token", e))?;
                    if let Some(row) = row {
                        let json: String = row.try_get(0).map_err(|e| self.fail("rotate refresh token", e))?;
                        return rotated(&json);
                    }
                    let record = $crate::store::GrantStore::refresh_token(self, project, old).await?;
                    if record.as_ref().is_some_and(|r| r.grant.id != new.grant.id) {
                        return Err(StoreError::new("issued tokens are not of the refresh token's grant"));
                    }
                    return Ok(after_lost(record));
                }
                // SQLite only (PostgreSQL returned above): `BEGIN IMMEDIATE`,
                // so the transaction holds the write lock from its start and
                // no later edit can turn it into a read-then-write race.
                let mut tx = self
                    .pool
                    .begin_with(BEGIN_EXCLUSIVE)
                    .await
                    .map_err(|e| self.fail("rotate refresh token", e))?;
                // The conditional delete first: it takes the database write
                // lock, so of concurrent rotations only one gets the row.
                let row = sqlx::query(q::REFRESH_TAKE)
                    .bind(project.as_str())
                    .bind(old.as_bytes().as_slice())
                    .bind(secs(mark.at))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.fail("rotate refresh token", e))?;
                let Some(row) = row else {
                    tx.rollback()
                        .await
                        .map_err(|e| self.fail("rotate refresh token", e))?;
                    return Ok(after_lost(
                        $crate::store::GrantStore::refresh_token(self, project, old).await?,
                    ));
                };
                let grant_id: String = row.try_get(0).map_err(|e| self.fail("rotate refresh token", e))?;
                if grant_id != new.grant.id.as_str() {
                    tx.rollback()
                        .await
                        .map_err(|e| self.fail("rotate refresh token", e))?;
                    return Err(StoreError::new("issued tokens are not of the refresh token's grant"));
                }
                let json: String = row.try_get(1).map_err(|e| self.fail("rotate refresh token", e))?;
                let old_record: RefreshTokenRecord = from_json("refresh token", &json)?;
                self.rotate_in(
                    &mut tx,
                    project,
                    old,
                    &old_record,
                    &grant_id,
                    &new,
                    new_json,
                    &mark,
                    mark_json,
                    keep,
                )
                .await?;
                sqlx::query(q::GRANT_TOUCH)
                    .bind(project.as_str())
                    .bind(new.grant.id.as_str())
                    .bind(new.grant.client_id.as_str())
                    .bind(new.grant.subject.as_str())
                    .bind(secs(new.grant.granted_at))
                    .bind(Some(secs(new.issued_at)))
                    .bind(secs(new.expires_at))
                    .bind(to_json("grant", &new.grant)?)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.fail("rotate refresh token: grant summary", e))?;
                self.issue_access_in(&mut tx, project, &access, access_json, keep_access).await?;
                tx.commit()
                    .await
                    .map_err(|e| self.fail("rotate refresh token: commit", e))?;
                rotated(&json)
            }

            async fn access_token(
                &self,
                project: &ProjectId,
                hash: &SecretHash,
            ) -> Result<Option<AccessTokenRecord>, StoreError> {
                let row = sqlx::query(q::ACCESS_GET)
                    .bind(project.as_str())
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("get access token", e))?;
                row.map(|r| {
                    let (revoked, mut record): (bool, AccessTokenRecord) = self.flagged("access token", &r)?;
                    record.revoked = revoked;
                    Ok(record)
                })
                .transpose()
            }

            async fn revoke_access_token(&self, project: &ProjectId, hash: &SecretHash) -> Result<bool, StoreError> {
                let n = sqlx::query(q::ACCESS_REVOKE)
                    .bind(project.as_str())
                    .bind(hash.as_bytes().as_slice())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("revoke access token", e))?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn revoke_grant(
                &self,
                project: &ProjectId,
                grant: &GrantId,
                now: OffsetDateTime,
            ) -> Result<(), StoreError> {
                let keep_until = secs(now + time::Duration::days(1));
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(|e| self.fail("revoke grant", e))?;
                sqlx::query(q::GRANT_MARK)
                    .bind(project.as_str())
                    .bind(grant.as_str())
                    .bind(secs(now))
                    .bind(keep_until)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.fail("revoke grant: marker", e))?;
                for sql in [
                    q::GRANT_DELETE_CODES,
                    q::GRANT_DELETE_REFRESH,
                    q::GRANT_DELETE_TOMBSTONES,
                    q::GRANT_DELETE_ACCESS,
                    q::GRANT_DELETE_SUMMARY,
                ] {
                    sqlx::query(sql)
                        .bind(project.as_str())
                        .bind(grant.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.fail("revoke grant: delete", e))?;
                }
                tx.commit()
                    .await
                    .map_err(|e| self.fail("revoke grant: commit", e))?;
                Ok(())
            }

            async fn grants_of_subject(
                &self,
                project: &ProjectId,
                subject: &Subject,
                page: &PageRequest,
                now: OffsetDateTime,
            ) -> Result<Page<GrantSummary>, StoreError> {
                let (at, id) = page.cursor().map_or((i64::MIN, ""), |c| (c.at(), c.id()));
                let rows = sqlx::query(q::GRANT_SUBJECT_PAGE)
                    .bind(project.as_str())
                    .bind(subject.as_str())
                    .bind(at)
                    .bind(id)
                    .bind(secs(now))
                    .bind(i64::try_from(page.limit() + 1).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.fail("list grants", e))?;
                let items = rows
                    .iter()
                    .map(|r| self.summary_from_row(r))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(page.page(items, $crate::store::memory::grant_cursor))
            }

            async fn revoke_grants(
                &self,
                project: &ProjectId,
                selector: &GrantSelector,
                limit: usize,
                now: OffsetDateTime,
            ) -> Result<Vec<GrantSummary>, StoreError> {
                let fail = |e| self.fail("revoke grants", e);
                let (filter, value, subject) = match selector {
                    GrantSelector::Subject(s) => ("subject = $2", s.as_str(), None),
                    GrantSelector::Client(c) => ("client_id = $2", c.as_str(), None),
                    GrantSelector::Grant { subject, grant } => (
                        "grant_id = $2 AND subject = $6",
                        grant.as_str(),
                        Some(subject.as_str()),
                    ),
                };
                let mark_sql = q::grant_mark_selected(filter);
                let mut tx = self.pool.begin().await.map_err(fail)?;
                // The markers first: this write takes the lock and fixes
                // the batch; from here on every read of the grants' codes
                // and tokens sees them revoked.
                let mut mark = sqlx::query(&mark_sql)
                    .bind(project.as_str())
                    .bind(value)
                    .bind(secs(now))
                    .bind(secs(now + time::Duration::days(1)))
                    .bind(i64::try_from(limit.max(1)).unwrap_or(i64::MAX));
                if let Some(subject) = subject {
                    mark = mark.bind(subject);
                }
                let marked = mark.fetch_all(&mut *tx).await.map_err(fail)?;
                let mut revoked = Vec::with_capacity(marked.len());
                for row in &marked {
                    let grant_id: String = row.try_get(0).map_err(fail)?;
                    for sql in [
                        q::GRANT_DELETE_CODES,
                        q::GRANT_DELETE_REFRESH,
                        q::GRANT_DELETE_TOMBSTONES,
                        q::GRANT_DELETE_ACCESS,
                    ] {
                        sqlx::query(sql)
                            .bind(project.as_str())
                            .bind(grant_id.as_str())
                            .execute(&mut *tx)
                            .await
                            .map_err(fail)?;
                    }
                    let summary = sqlx::query(q::GRANT_DELETE_SUMMARY)
                        .bind(project.as_str())
                        .bind(grant_id.as_str())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(fail)?;
                    if let Some(row) = summary {
                        revoked.push(self.summary_from_row(&row)?);
                    }
                }
                tx.commit()
                    .await
                    .map_err(|e| self.fail("revoke grants: commit", e))?;
                revoked.sort_by(|a, b| {
                    (a.grant.granted_at, a.grant.id.as_str()).cmp(&(b.grant.granted_at, b.grant.id.as_str()))
                });
                Ok(revoked)
            }

            async fn purge_expired(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
                let n = self.purge_grants(now).await?;
                usize::try_from(n).map_err(|_| StoreError::new("purge count out of range"))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::CimdCache for $store {
            async fn get(
                &self,
                project: &ProjectId,
                url: &$crate::cimd::ClientIdUrl,
            ) -> Result<Option<$crate::cimd::CachedDocument>, StoreError> {
                let row = sqlx::query(q::CIMD_GET)
                    .bind(project.as_str())
                    .bind(url.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("get cimd entry", e))?;
                row.map(|r| {
                    let json: String = r.try_get(0).map_err(|e| self.fail("get cimd entry", e))?;
                    from_json("cimd entry", &json)
                })
                .transpose()
            }

            async fn put(
                &self,
                project: &ProjectId,
                url: &$crate::cimd::ClientIdUrl,
                entry: $crate::cimd::CachedDocument,
            ) -> Result<(), StoreError> {
                sqlx::query(q::CIMD_PUT)
                    .bind(project.as_str())
                    .bind(url.as_str())
                    .bind(to_json("cimd entry", &entry)?)
                    .bind(secs(entry.fetched_at))
                    .bind(secs(entry.expires_at))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("put cimd entry", e))?;
                let row = sqlx::query(q::CIMD_COUNT)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.fail("count cimd entries", e))?;
                let held: i64 = row.try_get(0).map_err(|e| self.fail("count cimd entries", e))?;
                let excess = held - i64::from(self.options.cimd_capacity);
                if excess > 0 {
                    sqlx::query(q::CIMD_EVICT)
                        .bind(excess)
                        .execute(&self.pool)
                        .await
                        .map_err(|e| self.fail("evict cimd entries", e))?;
                }
                Ok(())
            }

            async fn remove(&self, project: &ProjectId, url: &$crate::cimd::ClientIdUrl) -> Result<(), StoreError> {
                sqlx::query(q::CIMD_REMOVE)
                    .bind(project.as_str())
                    .bind(url.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("remove cimd entry", e))?;
                Ok(())
            }
        }

        fn key_state_str(state: $crate::keys::KeyState) -> &'static str {
            match state {
                $crate::keys::KeyState::Next => "next",
                $crate::keys::KeyState::Active => "active",
                $crate::keys::KeyState::Retired => "retired",
            }
        }

        fn key_state_of(s: &str) -> Result<$crate::keys::KeyState, StoreError> {
            match s {
                "next" => Ok($crate::keys::KeyState::Next),
                "active" => Ok($crate::keys::KeyState::Active),
                "retired" => Ok($crate::keys::KeyState::Retired),
                _ => Err(StoreError::new("stored signing key state is unknown")),
            }
        }

        /// What a sealed key is bound to: its project, id and algorithm.
        fn key_context(project: &str, kid: &str, alg: &str) -> Vec<u8> {
            format!("signing_key\0{project}\0{kid}\0{alg}").into_bytes()
        }

        impl $store {
            /// A signing key from a `KEY_LIST` row. The private key is
            /// opened (sealed rows) and rebuilt from its DER; a failure is
            /// an error that names the kid (public), never the bytes.
            async fn key_from_row(
                &self,
                project: &ProjectId,
                row: &$row,
            ) -> Result<$crate::keys::SigningKey, StoreError> {
                let get = |e| self.fail("decode signing key", e);
                let kid: String = row.try_get(0).map_err(get)?;
                let alg: String = row.try_get(1).map_err(get)?;
                let state: String = row.try_get(2).map_err(get)?;
                let created_at: i64 = row.try_get(3).map_err(get)?;
                let activated_at: Option<i64> = row.try_get(4).map_err(get)?;
                let retired_at: Option<i64> = row.try_get(5).map_err(get)?;
                let publish_until: Option<i64> = row.try_get(6).map_err(get)?;
                let stored: Vec<u8> = row.try_get(7).map_err(get)?;
                let protection: String = row.try_get(8).map_err(get)?;
                let der = self
                    .open_key(project.as_str(), &kid, &alg, &protection, &stored)
                    .await?;
                let kid =
                    $crate::keys::KeyId::new(kid).map_err(|e| StoreError::with_source("stored signing key id", e))?;
                let alg = $crate::jose::SigningAlgorithm::from_name(&alg)
                    .ok_or_else(|| StoreError::new(format!("stored signing key {kid}: unknown algorithm")))?;
                let private_key = $crate::jose::PrivateKey::from_der(alg, der.to_vec())
                    .map_err(|_| StoreError::new(format!("stored signing key {kid}: the private key is invalid")))?;
                let mut key = $crate::keys::SigningKey::new(project.clone(), kid, private_key, time_of(created_at)?);
                key.state = key_state_of(&state)?;
                key.activated_at = activated_at.map(time_of).transpose()?;
                key.retired_at = retired_at.map(time_of).transpose()?;
                key.publish_until = publish_until.map(time_of).transpose()?;
                Ok(key)
            }

            /// The DER of a stored key: opened when sealed; as stored when
            /// plaintext and the host allowed plaintext keys.
            async fn open_key(
                &self,
                project: &str,
                kid: &str,
                alg: &str,
                protection: &str,
                stored: &[u8],
            ) -> Result<zeroize::Zeroizing<Vec<u8>>, StoreError> {
                match (protection, &self.options.key_encryption) {
                    ("sealed", Some(enc)) => enc
                        .open(stored, &key_context(project, kid, alg))
                        .await
                        .map_err(|e| {
                            StoreError::new(format!(
                                "stored signing key {kid} of project {project}: {}",
                                e.message()
                            ))
                        }),
                    ("sealed", None) => Err(StoreError::new(format!(
                        "stored signing key {kid} of project {project} is sealed, and no \
                         SqlOptions::key_encryption is configured to open it"
                    ))),
                    ("plaintext", _) if self.options.danger_plaintext_keys => {
                        Ok(zeroize::Zeroizing::new(stored.to_vec()))
                    }
                    ("plaintext", Some(_)) => Err(StoreError::new(format!(
                        "stored signing key {kid} of project {project} is not sealed: call \
                         reseal_signing_keys() once to seal the keys stored before key encryption was \
                         configured (or allow plaintext keys with SqlOptions::danger_plaintext_keys)"
                    ))),
                    ("plaintext", None) => Err(unprotected_keys()),
                    _ => Err(StoreError::new(format!(
                        "stored signing key {kid} of project {project}: unknown key protection"
                    ))),
                }
            }

            /// Seals every stored signing key that is not sealed under the
            /// current key-encryption key: keys stored in plaintext (before
            /// key encryption was configured, or with
            /// [`SqlOptions::danger_plaintext_keys`]) and keys sealed under
            /// an older key-encryption key
            /// ([`crate::store::KeyEncryption::needs_reseal`]). Each row is
            /// replaced by one conditional `UPDATE` (only if it still holds
            /// what was read), so running it from several processes at
            /// once, or during rotations, is safe. Returns how many keys
            /// were sealed. Idempotent: run it after configuring
            /// encryption and after rotating the key-encryption key.
            ///
            /// # Errors
            /// [`StoreError`] when no [`SqlOptions::key_encryption`] is
            /// configured, a stored key cannot be opened or is invalid, or
            /// the database fails (keys sealed before stay sealed).
            pub async fn reseal_signing_keys(&self) -> Result<u64, StoreError> {
                let enc = self
                    .options
                    .key_encryption
                    .clone()
                    .ok_or_else(|| StoreError::new("reseal_signing_keys needs SqlOptions::key_encryption"))?;
                let rows = sqlx::query(q::KEY_ALL_FOR_SEALING)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.fail("list signing keys for sealing", e))?;
                let mut sealed = 0;
                for row in rows {
                    let get = |e| self.fail("decode signing key", e);
                    let project: String = row.try_get(0).map_err(get)?;
                    let kid: String = row.try_get(1).map_err(get)?;
                    let alg: String = row.try_get(2).map_err(get)?;
                    let protection: String = row.try_get(3).map_err(get)?;
                    let stored: Vec<u8> = row.try_get(4).map_err(get)?;
                    let context = key_context(&project, &kid, &alg);
                    let der = match protection.as_str() {
                        "plaintext" => zeroize::Zeroizing::new(stored.clone()),
                        "sealed" if enc.needs_reseal(&stored) => enc.open(&stored, &context).await.map_err(|e| {
                            StoreError::new(format!(
                                "stored signing key {kid} of project {project}: {}",
                                e.message()
                            ))
                        })?,
                        _ => continue,
                    };
                    let algorithm = $crate::jose::SigningAlgorithm::from_name(&alg)
                        .ok_or_else(|| StoreError::new(format!("stored signing key {kid}: unknown algorithm")))?;
                    if $crate::jose::PrivateKey::from_der(algorithm, der.to_vec()).is_err() {
                        return Err(StoreError::new(format!(
                            "stored signing key {kid} of project {project}: the private key is invalid"
                        )));
                    }
                    let resealed = enc.seal(&der, &context).await?;
                    let n = sqlx::query(q::KEY_RESEAL)
                        .bind(&project)
                        .bind(&kid)
                        .bind(&stored)
                        .bind(&resealed)
                        .execute(&self.pool)
                        .await
                        .map_err(|e| self.fail("seal signing key", e))?
                        .rows_affected();
                    sealed += n;
                }
                Ok(sealed)
            }
        }

        /// The error for a signing key with no protection chosen.
        fn unprotected_keys() -> StoreError {
            StoreError::new(
                "signing keys are private keys and are sealed at rest: configure \
                 SqlOptions::key_encryption (e.g. Aes256GcmKeyEncryption with a key kept outside the \
                 database), or accept plaintext keys explicitly with SqlOptions::danger_plaintext_keys",
            )
        }

        #[async_trait::async_trait]
        impl $crate::store::KeyStore for $store {
            async fn keys(&self, project: &ProjectId) -> Result<Vec<$crate::keys::SigningKey>, StoreError> {
                let rows = sqlx::query(q::KEY_LIST)
                    .bind(project.as_str())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.fail("list signing keys", e))?;
                let mut keys = Vec::with_capacity(rows.len());
                for row in &rows {
                    keys.push(self.key_from_row(project, row).await?);
                }
                Ok(keys)
            }

            async fn insert(&self, key: $crate::keys::SigningKey) -> Result<bool, StoreError> {
                let alg = key.algorithm().as_str();
                let (stored, protection) = match &self.options.key_encryption {
                    Some(enc) => {
                        let context = key_context(key.project.as_str(), key.kid.as_str(), alg);
                        (enc.seal(key.private_key.expose_der(), &context).await?, "sealed")
                    }
                    None if self.options.danger_plaintext_keys => (key.private_key.expose_der().to_vec(), "plaintext"),
                    None => return Err(unprotected_keys()),
                };
                let n = sqlx::query(q::KEY_INSERT)
                    .bind(key.project.as_str())
                    .bind(key.kid.as_str())
                    .bind(alg)
                    .bind(key_state_str(key.state))
                    .bind(secs(key.created_at))
                    .bind(key.activated_at.map(secs))
                    .bind(key.retired_at.map(secs))
                    .bind(key.publish_until.map(secs))
                    .bind(&stored)
                    .bind(protection)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("insert signing key", e))?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn delete(&self, project: &ProjectId, kid: &$crate::keys::KeyId) -> Result<bool, StoreError> {
                let n = sqlx::query(q::KEY_DELETE)
                    .bind(project.as_str())
                    .bind(kid.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("delete signing key", e))?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn activate(
                &self,
                project: &ProjectId,
                kid: &$crate::keys::KeyId,
                now: OffsetDateTime,
                retired_publish_until: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(|e| self.fail("activate signing key", e))?;
                // The write first: it takes the locks (see the query), so
                // what is read next is what concurrent activations left.
                sqlx::query(q::KEY_LOCK_ALGORITHM)
                    .bind(project.as_str())
                    .bind(kid.as_str())
                    .bind(secs(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.fail("activate signing key: lock", e))?;
                let row = sqlx::query(q::KEY_STATE)
                    .bind(project.as_str())
                    .bind(kid.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.fail("activate signing key: state", e))?;
                let next_alg = match row {
                    Some(row) => {
                        let alg: String = row.try_get(0).map_err(|e| self.fail("activate signing key", e))?;
                        let state: String = row.try_get(1).map_err(|e| self.fail("activate signing key", e))?;
                        (state == "next").then_some(alg)
                    }
                    None => None,
                };
                let Some(alg) = next_alg else {
                    tx.rollback()
                        .await
                        .map_err(|e| self.fail("activate signing key", e))?;
                    return Ok(false);
                };
                for (op, sql) in [
                    ("activate signing key: retire active", q::KEY_RETIRE_ACTIVE_OF_ALG),
                    ("activate signing key: retire next", q::KEY_RETIRE_OTHER_NEXT),
                ] {
                    sqlx::query(sql)
                        .bind(project.as_str())
                        .bind(kid.as_str())
                        .bind(&alg)
                        .bind(secs(now))
                        .bind(secs(retired_publish_until))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.fail(op, e))?;
                }
                let n = sqlx::query(q::KEY_MAKE_ACTIVE)
                    .bind(project.as_str())
                    .bind(kid.as_str())
                    .bind(secs(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.fail("activate signing key", e))?
                    .rows_affected();
                if n != 1 {
                    tx.rollback()
                        .await
                        .map_err(|e| self.fail("activate signing key", e))?;
                    return Ok(false);
                }
                tx.commit()
                    .await
                    .map_err(|e| self.fail("activate signing key: commit", e))?;
                Ok(true)
            }

            async fn retire(
                &self,
                project: &ProjectId,
                kid: &$crate::keys::KeyId,
                now: OffsetDateTime,
                publish_until: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let n = sqlx::query(q::KEY_RETIRE)
                    .bind(project.as_str())
                    .bind(kid.as_str())
                    .bind(secs(now))
                    .bind(secs(publish_until))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("retire signing key", e))?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn delete_expired(&self, project: &ProjectId, now: OffsetDateTime) -> Result<usize, StoreError> {
                let n = sqlx::query(q::KEY_DELETE_EXPIRED)
                    .bind(project.as_str())
                    .bind(secs(now))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.fail("delete expired signing keys", e))?
                    .rows_affected();
                usize::try_from(n).map_err(|_| StoreError::new("delete count out of range"))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::AdmissionStore for $store {
            async fn admit(
                &self,
                project: &ProjectId,
                windows: &[(String, u32)],
                length: time::Duration,
                now: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                if windows.iter().any(|(_, max)| *max == 0) {
                    return Ok(false);
                }
                let mut tx = self.pool.begin().await.map_err(|e| self.fail("admit", e))?;
                for (key, max) in windows {
                    let n = sqlx::query(q::ADMISSION_COUNT)
                        .bind(project.as_str())
                        .bind(key.as_str())
                        .bind(secs(now))
                        .bind(secs(now + length))
                        .bind(i64::from(*max))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.fail("admit", e))?
                        .rows_affected();
                    if n == 0 {
                        tx.rollback().await.map_err(|e| self.fail("admit: rollback", e))?;
                        return Ok(false);
                    }
                }
                tx.commit().await.map_err(|e| self.fail("admit: commit", e))?;
                Ok(true)
            }

            async fn purge(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
                let n = self
                    .delete_batches("purge admission windows", q::ADMISSION_PURGE, secs(now))
                    .await?;
                usize::try_from(n).map_err(|_| StoreError::new("purge count out of range"))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::ReplayStore for $store {
            async fn check_and_insert(
                &self,
                project: &ProjectId,
                scope: &str,
                id: &str,
                expires_at: OffsetDateTime,
                now: OffsetDateTime,
                quota: u32,
            ) -> Result<$crate::store::ReplayCheck, StoreError> {
                let op = "check and record assertion id";
                let id_hash = SecretHash::of(id);
                let mut tx = self.pool.begin().await.map_err(|e| self.fail(op, e))?;
                if BACKEND == "postgres" {
                    sqlx::query(q::REPLAY_LOCK_SCOPE_POSTGRES)
                        .bind(project.as_str())
                        .bind(scope)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.fail(op, e))?;
                }
                let n = sqlx::query(q::REPLAY_CHECK_AND_INSERT)
                    .bind(project.as_str())
                    .bind(scope)
                    .bind(id_hash.as_bytes().as_slice())
                    .bind(secs(expires_at))
                    .bind(secs(now))
                    .bind(i64::from(quota))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.fail(op, e))?
                    .rows_affected();
                let outcome = if n == 1 {
                    $crate::store::ReplayCheck::Fresh
                } else {
                    let live = sqlx::query(q::REPLAY_LIVE)
                        .bind(project.as_str())
                        .bind(scope)
                        .bind(id_hash.as_bytes().as_slice())
                        .bind(secs(now))
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(|e| self.fail(op, e))?;
                    if live.is_some() {
                        $crate::store::ReplayCheck::Replayed
                    } else {
                        $crate::store::ReplayCheck::QuotaExceeded
                    }
                };
                tx.commit().await.map_err(|e| self.fail(op, e))?;
                Ok(outcome)
            }

            async fn purge(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
                let n = self.purge_replay(now).await?;
                usize::try_from(n).map_err(|_| StoreError::new("purge count out of range"))
            }
        }

        impl $store {
            fn user_from_row(
                &self,
                project: &ProjectId,
                subject: &$crate::grant::Subject,
                row: &$row,
            ) -> Result<$crate::store::LocalUser, StoreError> {
                let get = |e| self.fail("decode local user", e);
                let created_at: i64 = row.try_get(5).map_err(get)?;
                let last_login_at: i64 = row.try_get(6).map_err(get)?;
                Ok($crate::store::LocalUser {
                    project: project.clone(),
                    subject: subject.clone(),
                    upstream_issuer: row.try_get(0).map_err(get)?,
                    upstream_subject: row.try_get(1).map_err(get)?,
                    email: row.try_get(2).map_err(get)?,
                    email_verified: row.try_get(3).map_err(get)?,
                    name: row.try_get(4).map_err(get)?,
                    created_at: time_of(created_at)?,
                    last_login_at: time_of(last_login_at)?,
                })
            }

            /// A consent from the rows of `CONSENT_GET`: `None` without a
            /// row; the per-resource scopes of every row that has them
            /// (a key stored twice, e.g. in raw and canonical form by
            /// migration 9, is merged).
            fn consent_from_rows(
                &self,
                rows: &[$row],
            ) -> Result<Option<$crate::store::RememberedConsent>, StoreError> {
                let Some(first) = rows.first() else {
                    return Ok(None);
                };
                let updated_at: i64 = first.try_get(0).map_err(|e| self.fail("get consent", e))?;
                let mut consent = $crate::store::RememberedConsent::new(time_of(updated_at)?);
                for r in rows {
                    let resource: Option<String> = r.try_get(1).map_err(|e| self.fail("get consent", e))?;
                    let scopes: Option<String> = r.try_get(2).map_err(|e| self.fail("get consent", e))?;
                    if let (Some(resource), Some(scopes)) = (resource, scopes) {
                        let target = $crate::store::ConsentTarget::from_key(&resource)
                            .map_err(|e| StoreError::with_source("stored consent resource", e))?;
                        consent.allow_target(target, &stored_scopes(&scopes)?);
                    }
                }
                Ok(Some(consent))
            }

            async fn purge_upstream_logins(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
                self.delete_batches("purge upstream logins", q::LOGIN_PURGE, secs(now))
                    .await
            }
        }

        /// Scopes as stored: the space-delimited union of every approval
        /// (read without the request-size cap of `ScopeSet::parse`, since
        /// a union may grow past it).
        fn stored_scopes(s: &str) -> Result<$crate::scope::ScopeSet, StoreError> {
            $crate::scope::ScopeSet::from_tokens(s.split(' ').filter(|t| !t.is_empty()))
                .map_err(|e| StoreError::with_source("stored consent scopes", e))
        }

        // `upsert`: one INSERT ... ON CONFLICT DO UPDATE ... RETURNING
        // created_at. `remember_consent`: a transaction whose FIRST
        // statement writes the consent row (PostgreSQL: its row lock;
        // SQLite: the database write lock), then reads, merges and writes
        // the scopes: a concurrent approval waits and merges into what
        // this one committed. `revoke_consent`: one DELETE.
        #[async_trait::async_trait]
        impl $crate::store::UserStore for $store {
            async fn upsert(&self, user: $crate::store::LocalUser) -> Result<$crate::store::LocalUser, StoreError> {
                let row = sqlx::query(q::USER_UPSERT)
                    .bind(user.project.as_str())
                    .bind(user.subject.as_str())
                    .bind(&user.upstream_issuer)
                    .bind(&user.upstream_subject)
                    .bind(user.email.as_deref())
                    .bind(user.email_verified)
                    .bind(user.name.as_deref())
                    .bind(secs(user.created_at))
                    .bind(secs(user.last_login_at))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.fail("upsert local user", e))?;
                let created_at: i64 = row.try_get(0).map_err(|e| self.fail("upsert local user", e))?;
                Ok($crate::store::LocalUser {
                    created_at: time_of(created_at)?,
                    last_login_at: time_of(secs(user.last_login_at))?,
                    ..user
                })
            }

            async fn user(
                &self,
                project: &ProjectId,
                subject: &$crate::grant::Subject,
            ) -> Result<Option<$crate::store::LocalUser>, StoreError> {
                let row = sqlx::query(q::USER_GET)
                    .bind(project.as_str())
                    .bind(subject.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("get local user", e))?;
                row.map(|r| self.user_from_row(project, subject, &r)).transpose()
            }

            async fn remember_consent(
                &self,
                project: &ProjectId,
                subject: &$crate::grant::Subject,
                client_id: &str,
                scopes: &$crate::scope::ScopeSet,
                resources: &$crate::resource::ResourceSet,
                now: OffsetDateTime,
            ) -> Result<(), StoreError> {
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(|e| self.fail("remember consent", e))?;
                // The write first: it takes the lock (see the query).
                sqlx::query(q::CONSENT_LOCK)
                    .bind(project.as_str())
                    .bind(subject.as_str())
                    .bind(client_id)
                    .bind(secs(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.fail("remember consent: lock", e))?;
                let rows = sqlx::query(q::CONSENT_GET)
                    .bind(project.as_str())
                    .bind(subject.as_str())
                    .bind(client_id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.fail("remember consent: read", e))?;
                let Some(mut merged) = self.consent_from_rows(&rows)? else {
                    return Err(StoreError::new(format!("{BACKEND}: remember consent: the locked row is missing")));
                };
                merged.allow(scopes, resources);
                for target in $crate::store::ConsentTarget::of(resources) {
                    let allowed = merged
                        .scopes_for(&target)
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    sqlx::query(q::CONSENT_SET_SCOPES)
                        .bind(project.as_str())
                        .bind(subject.as_str())
                        .bind(client_id)
                        .bind(target.key())
                        .bind(allowed)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.fail("remember consent: write", e))?;
                }
                tx.commit()
                    .await
                    .map_err(|e| self.fail("remember consent: commit", e))?;
                Ok(())
            }

            async fn consent(
                &self,
                project: &ProjectId,
                subject: &$crate::grant::Subject,
                client_id: &str,
            ) -> Result<Option<$crate::store::RememberedConsent>, StoreError> {
                let rows = sqlx::query(q::CONSENT_GET)
                    .bind(project.as_str())
                    .bind(subject.as_str())
                    .bind(client_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.fail("get consent", e))?;
                self.consent_from_rows(&rows)
            }

            async fn revoke_consent(
                &self,
                project: &ProjectId,
                subject: &$crate::grant::Subject,
                client_id: &str,
            ) -> Result<bool, StoreError> {
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(|e| self.fail("revoke consent", e))?;
                // The consent's row first: an approval in flight holds its
                // lock, so it commits before its scopes are deleted.
                let n = sqlx::query(q::CONSENT_REVOKE)
                    .bind(project.as_str())
                    .bind(subject.as_str())
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.fail("revoke consent", e))?
                    .rows_affected();
                sqlx::query(q::CONSENT_REVOKE_SCOPES)
                    .bind(project.as_str())
                    .bind(subject.as_str())
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.fail("revoke consent: scopes", e))?;
                tx.commit()
                    .await
                    .map_err(|e| self.fail("revoke consent: commit", e))?;
                Ok(n > 0)
            }

            async fn revoke_all_consents(
                &self,
                project: &ProjectId,
                subject: &$crate::grant::Subject,
            ) -> Result<usize, StoreError> {
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(|e| self.fail("revoke all consents", e))?;
                let n = sqlx::query(q::CONSENT_REVOKE_ALL)
                    .bind(project.as_str())
                    .bind(subject.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.fail("revoke all consents", e))?
                    .rows_affected();
                sqlx::query(q::CONSENT_REVOKE_ALL_SCOPES)
                    .bind(project.as_str())
                    .bind(subject.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.fail("revoke all consents: scopes", e))?;
                tx.commit()
                    .await
                    .map_err(|e| self.fail("revoke all consents: commit", e))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }

        // `take`: one conditional UPDATE ... SET taken = TRUE WHERE taken =
        // FALSE AND expires_at > now RETURNING (the row lock or the
        // database write lock serializes concurrent takes; a waiter
        // re-checks `taken` after the winner commits), then, for the
        // losers only, a read saying why.
        #[async_trait::async_trait]
        impl $crate::store::UpstreamLoginStore for $store {
            async fn insert(
                &self,
                project: &ProjectId,
                login: $crate::upstream::UpstreamLogin,
                source: Option<&$crate::cimd::RequestSource>,
            ) -> Result<(), StoreError> {
                let op = "insert upstream login";
                let source = source.map($crate::cimd::RequestSource::as_str);
                let mut tx = self.pool.begin().await.map_err(|e| self.fail(op, e))?;
                if BACKEND == "postgres"
                    && let Some(source) = source
                {
                    sqlx::query(q::LOGIN_LOCK_SOURCE_POSTGRES)
                        .bind(project.as_str())
                        .bind(source)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.fail(op, e))?;
                }
                let n = sqlx::query(q::LOGIN_INSERT)
                    .bind(project.as_str())
                    .bind(login.state_hash.as_bytes().as_slice())
                    .bind(secs(login.created_at))
                    .bind(secs(login.expires_at))
                    .bind(to_json("upstream login", &login)?)
                    .bind(i64::from(self.options.upstream_login_capacity))
                    .bind(login.browser_hash.as_bytes().as_slice())
                    .bind(source)
                    .bind(i64::from(self.options.upstream_logins_per_source))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.fail(op, e))?
                    .rows_affected();
                tx.commit().await.map_err(|e| self.fail(op, e))?;
                if n != 1 {
                    // A bound, not a failure: not reported to `on_error`.
                    return Err(StoreError::capacity_exceeded(format!(
                        "{BACKEND}: too many upstream logins in flight for project {} or from its source",
                        project.as_str()
                    )));
                }
                Ok(())
            }

            async fn take(
                &self,
                project: &ProjectId,
                state_hash: &SecretHash,
                browser_hash: &SecretHash,
                now: OffsetDateTime,
            ) -> Result<$crate::store::LoginTake, StoreError> {
                use $crate::store::LoginTake;
                let row = sqlx::query(q::LOGIN_TAKE)
                    .bind(project.as_str())
                    .bind(state_hash.as_bytes().as_slice())
                    .bind(secs(now))
                    .bind(browser_hash.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("take upstream login", e))?;
                if let Some(row) = row {
                    let json: String = row.try_get(0).map_err(|e| self.fail("take upstream login", e))?;
                    return Ok(LoginTake::Taken(Box::new(from_json("upstream login", &json)?)));
                }
                let row = sqlx::query(q::LOGIN_STATE)
                    .bind(project.as_str())
                    .bind(state_hash.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.fail("take upstream login", e))?;
                Ok(match row {
                    None => LoginTake::Unknown,
                    Some(r) => {
                        let stored_browser: Vec<u8> = r.try_get(2).map_err(|e| self.fail("take upstream login", e))?;
                        if hash_of(&stored_browser)? != *browser_hash {
                            // Checked first: another browser learns nothing.
                            return Ok(LoginTake::WrongBrowser);
                        }
                        let (taken, login): (bool, $crate::upstream::UpstreamLogin) =
                            self.flagged("upstream login", &r)?;
                        if taken {
                            LoginTake::AlreadyTaken(Box::new(login))
                        } else {
                            // Not taken by the update: it had expired.
                            LoginTake::Expired(Box::new(login))
                        }
                    }
                })
            }

            async fn purge(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
                let n = self.purge_upstream_logins(now).await?;
                usize::try_from(n).map_err(|_| StoreError::new("purge count out of range"))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::AuditSink for $store {
            // A failure is reported to `SqlOptions::on_error` and counted
            // (`audit_failures`); the request goes on.
            async fn record(&self, event: AuditEvent) {
                // Rejections are counted in memory and flushed in batches.
                let Some(event) = self.audit_writer.rejections.add(event) else {
                    return;
                };
                let Some(event) = self.audit_writer.offer(event) else {
                    return; // queued for the batched writer
                };
                let result = match to_json("audit event", &event) {
                    Ok(json) => sqlx::query(q::AUDIT_INSERT)
                        .bind(event.project_id.as_str())
                        .bind(secs(event.at))
                        .bind(event.name())
                        .bind(json)
                        .execute(&self.pool)
                        .await
                        .map(|_| ())
                        .map_err(|e| self.fail("record audit event", e)),
                    Err(e) => Err(e),
                };
                if result.is_err() {
                    self.audit_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::AuditLog for $store {
            async fn rejection_counts(
                &self,
                project: &ProjectId,
            ) -> Result<Vec<$crate::store::RejectionCount>, StoreError> {
                self.flush_rejections().await;
                let rows = sqlx::query(q::REJECTION_COUNTS)
                    .bind(project.as_str())
                    .bind(10_000_i64)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.fail("rejection counts", e))?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows.iter().rev() {
                    let get = |e| self.fail("decode rejection count", e);
                    let minute: i64 = row.try_get(0).map_err(get)?;
                    let count: i64 = row.try_get(3).map_err(get)?;
                    out.push($crate::store::RejectionCount {
                        minute: time_of(minute.saturating_mul(60))?,
                        event: row.try_get(1).map_err(get)?,
                        reason: row.try_get(2).map_err(get)?,
                        count: u64::try_from(count).unwrap_or(0),
                    });
                }
                Ok(out)
            }

            async fn query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
                self.flush_rejections().await;
                let limit = i64::try_from(query.limit.clamp(1, 1000)).unwrap_or(1000);
                let since = query.since.map_or(i64::MIN, secs);
                let until = query.until.map_or(i64::MAX, secs);
                let before = query
                    .before
                    .map_or(i64::MAX, |c| i64::try_from(c.0).unwrap_or(i64::MAX));
                let sql = if query.event.is_some() {
                    q::AUDIT_PAGE_BY_NAME
                } else {
                    q::AUDIT_PAGE
                };
                let mut select = sqlx::query(sql)
                    .bind(query.project.as_str())
                    .bind(since)
                    .bind(until)
                    .bind(before)
                    .bind(limit + 1);
                if let Some(name) = &query.event {
                    select = select.bind(name.as_str());
                }
                let rows = select
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.fail("query audit events", e))?;
                let mut events = Vec::with_capacity(rows.len());
                let mut last = None;
                for row in rows.iter().take(query.limit.clamp(1, 1000)) {
                    let id: i64 = row.try_get(0).map_err(|e| self.fail("query audit events", e))?;
                    let json: String = row.try_get(1).map_err(|e| self.fail("query audit events", e))?;
                    events.push(from_json::<AuditEvent>("audit event", &json)?);
                    last = Some(id);
                }
                let more = rows.len() > events.len();
                Ok(AuditPage {
                    events,
                    next: if more {
                        last.and_then(|id| u64::try_from(id).ok()).map(AuditCursor)
                    } else {
                        None
                    },
                })
            }
        }
    };
}
pub(crate) use impl_sql_store;

#[cfg(test)]
mod json_error_tests {
    use super::*;

    /// A malformed stored record never puts its values into the error
    /// (which is logged): only the kind and position of the failure.
    #[test]
    fn decoding_errors_never_quote_stored_values() {
        for stored in [
            r#""SECRET_MARKER""#,
            r#"{"code_verifier": "SECRET_MARKER"}"#,
            r#"["SECRET_MARKER", 1]"#,
            r#"SECRET_MARKER"#,
        ] {
            let e = from_json::<i64>("upstream login", stored).unwrap_err();
            let mut text = format!("{e} {e:?}");
            let mut next = std::error::Error::source(&e);
            while let Some(cause) = next {
                text.push_str(&cause.to_string());
                next = cause.source();
            }
            assert!(!text.contains("SECRET_MARKER"), "{text}");
            assert!(text.contains("decoding stored upstream login"), "{text}");
        }
    }
}
