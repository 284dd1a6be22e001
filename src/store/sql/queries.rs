//! The SQL both backends run. Placeholders are `$N`, which PostgreSQL and
//! SQLite (through sqlx) both accept; booleans are `TRUE`/`FALSE`, row
//! values and `RETURNING` work on both (SQLite 3.35 or later, which the
//! bundled library is). Only the DDL differs per backend (see
//! `migrations/`).

// ---- projects ----

pub(super) const PROJECT_GET: &str = "SELECT settings, version FROM projects WHERE id = $1";

pub(super) const PROJECT_PUT: &str = "INSERT INTO projects (id, settings, version, updated_at) VALUES ($1, $2, 1, $3) \
     ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, \
     version = projects.version + 1, updated_at = excluded.updated_at";

/// The compare-and-swap: only the version read before may be replaced.
pub(super) const PROJECT_SWAP: &str =
    "UPDATE projects SET settings = $3, version = version + 1, updated_at = $4 WHERE id = $1 AND version = $2";

// ---- clients ----

pub(super) const CLIENT_GET: &str = "SELECT client, disabled_at FROM clients WHERE project = $1 AND id = $2";

/// Inserts an enabled client (a client inserted disabled is then disabled
/// with [`CLIENT_SET_DISABLED`]).
pub(super) const CLIENT_INSERT: &str =
    "INSERT INTO clients (project, id, client, issued_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";

/// One page of a project's clients through `clients_listing (project,
/// issued_at, id)`: `$2`/`$3` the cursor (exclusive), `$4` the row count.
pub(super) const CLIENT_LIST: &str = "SELECT client, disabled_at FROM clients \
     WHERE project = $1 AND (issued_at, id) > ($2, $3) ORDER BY issued_at, id LIMIT $4";

/// Disables (`$3` a time; an already disabled client keeps its first
/// time) or enables (`$3` NULL) a client, in one statement.
pub(super) const CLIENT_SET_DISABLED: &str = "UPDATE clients SET disabled_at = \
     CASE WHEN $3 IS NULL THEN NULL ELSE COALESCE(disabled_at, $3) END \
     WHERE project = $1 AND id = $2 RETURNING client, disabled_at";

pub(super) const CLIENT_DELETE: &str = "DELETE FROM clients WHERE project = $1 AND id = $2";

pub(super) const CLIENT_COUNT: &str = "SELECT COUNT(*) FROM clients WHERE project = $1";

// ---- initial access tokens ----

const IAT_COLUMNS: &str = "hash, id, label, created_at, expires_at, max_uses, uses, revoked_at, pinned";

pub(super) const IAT_INSERT: &str = "INSERT INTO initial_access_tokens \
     (project, hash, id, label, created_at, expires_at, max_uses, uses, revoked_at, pinned) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING";

pub(super) fn iat_find() -> String {
    format!("SELECT {IAT_COLUMNS} FROM initial_access_tokens WHERE project = $1 AND hash = $2")
}

/// The one statement that counts a use: every condition of
/// `IatRecord::check` is in the `WHERE`, so the row lock taken by the
/// `UPDATE` makes check-and-count one step.
pub(super) fn iat_use() -> String {
    format!(
        "UPDATE initial_access_tokens SET uses = uses + 1 \
         WHERE project = $1 AND hash = $2 AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $3) \
         AND (max_uses IS NULL OR uses < max_uses) \
         RETURNING {IAT_COLUMNS}"
    )
}

pub(super) fn iat_list() -> String {
    format!("SELECT {IAT_COLUMNS} FROM initial_access_tokens WHERE project = $1 ORDER BY created_at, id")
}

/// Revokes once: a revoked token keeps its first revocation time.
pub(super) fn iat_revoke() -> String {
    format!(
        "UPDATE initial_access_tokens SET revoked_at = $3 \
         WHERE project = $1 AND id = $2 AND revoked_at IS NULL RETURNING {IAT_COLUMNS}"
    )
}

pub(super) fn iat_by_id() -> String {
    format!("SELECT {IAT_COLUMNS} FROM initial_access_tokens WHERE project = $1 AND id = $2")
}

pub(super) const IAT_PURGE: &str = "DELETE FROM initial_access_tokens WHERE (project, hash) IN (\
     SELECT project, hash FROM initial_access_tokens \
     WHERE revoked_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at <= $1) \
     OR (max_uses IS NOT NULL AND uses >= max_uses) LIMIT $2)";

// ---- grants ----

/// `NOT EXISTS` a revocation marker for the row's grant: every read and
/// every conditional update carries it, so a record inserted by a request
/// that raced a revocation reads as absent.
macro_rules! not_revoked {
    ($table:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM revoked_grants r WHERE r.project = ",
            $table,
            ".project AND r.grant_id = ",
            $table,
            ".grant_id)"
        )
    };
}

pub(super) const CODE_INSERT: &str = concat!(
    "INSERT INTO authorization_codes (project, hash, grant_id, expires_at, consumed, record) ",
    "SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS ",
    "(SELECT 1 FROM revoked_grants r WHERE r.project = $1 AND r.grant_id = $3) ",
    "ON CONFLICT DO NOTHING"
);

/// PostgreSQL only: [`GRANT_TOUCH`] for a code (no use, `$4` its expiry)
/// and [`CODE_INSERT`] as ONE statement, so a code and its grant's summary
/// become visible together. `$1`..`$6` as [`CODE_INSERT`]; `$7`..`$10`
/// the grant's client id, subject, granted_at and JSON.
pub(super) const CODE_INSERT_WITH_SUMMARY: &str = concat!(
    "WITH touch AS (INSERT INTO grants ",
    "(project, grant_id, client_id, subject, granted_at, last_used_at, expires_at, record) ",
    "SELECT $1, $3, $7, $8, $9, CAST(NULL AS BIGINT), $4, $10 WHERE NOT EXISTS ",
    "(SELECT 1 FROM revoked_grants r WHERE r.project = $1 AND r.grant_id = $3) ",
    "ON CONFLICT (project, grant_id) DO UPDATE SET ",
    "expires_at = CASE WHEN excluded.expires_at > grants.expires_at THEN excluded.expires_at ",
    "ELSE grants.expires_at END) ",
    "INSERT INTO authorization_codes (project, hash, grant_id, expires_at, consumed, record) ",
    "SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS ",
    "(SELECT 1 FROM revoked_grants r WHERE r.project = $1 AND r.grant_id = $3) ",
    "ON CONFLICT DO NOTHING"
);

pub(super) const CODE_GET: &str = concat!(
    "SELECT consumed, record FROM authorization_codes WHERE project = $1 AND hash = $2 AND ",
    not_revoked!("authorization_codes")
);

/// Consumes a code: one conditional `UPDATE`; of concurrent callers only
/// the one whose update flips `consumed` gets the row back. `$3` now: a
/// code expired at `now` is not consumed.
pub(super) const CODE_CONSUME: &str = concat!(
    "UPDATE authorization_codes SET consumed = TRUE WHERE project = $1 AND hash = $2 AND consumed = FALSE AND ",
    "authorization_codes.expires_at > $3 AND ",
    not_revoked!("authorization_codes"),
    " RETURNING record"
);

/// After a failed consume: whether the code exists (revoked or not).
pub(super) const CODE_STATE: &str = "SELECT consumed, record FROM authorization_codes WHERE project = $1 AND hash = $2";

/// Insert-if-absent: neither a live token nor a tombstone with this hash
/// is ever replaced (a rotated token cannot be revived).
pub(super) const REFRESH_INSERT: &str = concat!(
    "INSERT INTO refresh_tokens (project, hash, grant_id, expires_at, rotated, record) ",
    "SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS ",
    "(SELECT 1 FROM revoked_grants r WHERE r.project = $1 AND r.grant_id = $3) ",
    "AND NOT EXISTS (SELECT 1 FROM refresh_tombstones t WHERE t.project = $1 AND t.hash = $2) ",
    "ON CONFLICT DO NOTHING"
);

pub(super) const REFRESH_GET: &str = concat!(
    "SELECT rotated, record, rotation FROM refresh_tokens WHERE project = $1 AND hash = $2 AND ",
    not_revoked!("refresh_tokens")
);

/// A rotated token's tombstone, with the record of its grant's current
/// token (the newest) to rebuild the full record from. `$1`, `$2`: project
/// and hash.
pub(super) const TOMBSTONE_GET: &str = concat!(
    "SELECT t.issued_at, t.expires_at, t.rotation, h.record FROM refresh_tombstones t ",
    "JOIN refresh_tokens h ON h.project = t.project AND h.grant_id = t.grant_id ",
    "WHERE t.project = $1 AND t.hash = $2 AND ",
    not_revoked!("t"),
    " ORDER BY h.expires_at DESC LIMIT 1"
);

/// Takes a refresh token out of the live table for its rotation: one
/// conditional `DELETE`, the first statement of the rotation's transaction
/// (SQLite); of concurrent callers only one gets the row back. `$3` the
/// rotation's time: a token expired by then is not taken.
pub(super) const REFRESH_TAKE: &str = concat!(
    "DELETE FROM refresh_tokens WHERE project = $1 AND hash = $2 AND rotated = FALSE AND ",
    "refresh_tokens.expires_at > $3 AND ",
    not_revoked!("refresh_tokens"),
    " RETURNING grant_id, record"
);

/// The tombstone of a rotated token: `$1` project, `$2` hash, `$3` grant,
/// `$4` issued at, `$5` expires at, `$6` rotated at, `$7` the mark (JSON).
pub(super) const TOMBSTONE_INSERT: &str = "INSERT INTO refresh_tombstones \
     (project, hash, grant_id, issued_at, expires_at, rotated_at, rotation) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT DO NOTHING";

/// A grant's tombstones beyond its newest `$3`.
pub(super) const TOMBSTONE_CAP: &str = "DELETE FROM refresh_tombstones WHERE project = $1 AND grant_id = $2 \
     AND id NOT IN (SELECT id FROM refresh_tombstones WHERE project = $1 AND grant_id = $2 ORDER BY id DESC LIMIT $3)";

/// PostgreSQL only: the rotation as ONE statement. The data-modifying CTEs
/// take the old token out of the live table (its row lock serializes
/// concurrent rotations: a waiter finds the row gone), write its
/// tombstone, drop the grant's tombstones beyond the newest `$12` (the
/// CTEs share one snapshot, so that is the cap less the new one), and
/// insert the successor only for the row the delete returned; all commit
/// or none does. `$1`/`$2`: project and old hash; `$3`..`$8`: the new
/// row; `$9`, `$10`: the rotation mark and its time; `$11`: how many of
/// the grant's older tombstones to keep. The tombstone's issue time is read
/// from the old record. A token expired at `$10` is not taken. Returns the
/// old record, or no row.
pub(super) const REFRESH_ROTATE_ONE_STATEMENT: &str = concat!(
    "WITH old AS (DELETE FROM refresh_tokens WHERE project = $1 AND hash = $2 AND rotated = FALSE AND ",
    "refresh_tokens.expires_at > $10 AND ",
    not_revoked!("refresh_tokens"),
    " RETURNING project, hash, grant_id, expires_at, record), ",
    "tomb AS (INSERT INTO refresh_tombstones (project, hash, grant_id, issued_at, expires_at, rotated_at, rotation) ",
    "SELECT project, hash, grant_id, (record::json->>'issued_at')::BIGINT, expires_at, $10, $9 FROM old), ",
    "capped AS (DELETE FROM refresh_tombstones WHERE project = $1 AND grant_id = (SELECT grant_id FROM old) ",
    "AND id NOT IN (SELECT id FROM refresh_tombstones WHERE project = $1 AND grant_id = (SELECT grant_id FROM old) ",
    "ORDER BY id DESC LIMIT $11)) ",
    "INSERT INTO refresh_tokens (project, hash, grant_id, expires_at, rotated, record) ",
    "SELECT $3, $4, $5, $6, $7, $8 FROM old RETURNING (SELECT record FROM old)"
);

pub(super) const ACCESS_INSERT: &str = concat!(
    "INSERT INTO access_tokens (project, hash, grant_id, expires_at, revoked, record) ",
    "SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS ",
    "(SELECT 1 FROM revoked_grants r WHERE r.project = $1 AND r.grant_id = $3) ",
    "ON CONFLICT DO NOTHING"
);

/// After an insert: the grant's other access tokens that expired by `$4`
/// (the new token's issue time), and its oldest beyond the newest `$5`
/// others. `$1` project, `$2` the new token's hash, `$3` grant.
pub(super) const ACCESS_PRUNE: &str = "DELETE FROM access_tokens WHERE project = $1 AND grant_id = $3 AND hash <> $2 \
     AND (expires_at <= $4 OR hash NOT IN (SELECT hash FROM access_tokens WHERE project = $1 AND grant_id = $3 \
     AND hash <> $2 ORDER BY expires_at DESC, hash DESC LIMIT $5))";

/// PostgreSQL only: the insert and the prune as one statement (`$1`..`$6`
/// as [`ACCESS_INSERT`], `$7` now, `$8` how many others to keep); the
/// prune runs only when the insert did.
pub(super) const ACCESS_INSERT_AND_PRUNE: &str = concat!(
    "WITH ins AS (INSERT INTO access_tokens (project, hash, grant_id, expires_at, revoked, record) ",
    "SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS ",
    "(SELECT 1 FROM revoked_grants r WHERE r.project = $1 AND r.grant_id = $3) ",
    "ON CONFLICT DO NOTHING RETURNING hash) ",
    "DELETE FROM access_tokens WHERE project = $1 AND grant_id = $3 AND hash <> $2 AND EXISTS (SELECT 1 FROM ins) ",
    "AND (expires_at <= $7 OR hash NOT IN (SELECT hash FROM access_tokens WHERE project = $1 AND grant_id = $3 ",
    "AND hash <> $2 ORDER BY expires_at DESC, hash DESC LIMIT $8))"
);

/// The grant-summary part of a token response's statement (PostgreSQL):
/// with a new refresh token (`$3` not NULL) the summary is created or
/// extended like [`GRANT_TOUCH`] (`$15`..`$17` client id, subject,
/// granted_at; `$18` the latest use, `$19` the latest expiry; `$20` the
/// grant's JSON; grant id `$9`), without one only extended like
/// [`GRANT_EXTEND`] (`$13` the access token's `iat`, `$10` its `exp`).
/// Exactly one of the two runs, so the row is written once. `$src` is the
/// CTE whose row means "this call won".
macro_rules! issuing_tail {
    ($src:literal) => {
        concat!(
            "touch AS (INSERT INTO grants (project, grant_id, client_id, subject, granted_at, last_used_at, ",
            "expires_at, record) SELECT $1, $9, $15, $16, $17, $18, $19, $20 FROM ",
            $src,
            " WHERE $3::BYTEA IS NOT NULL AND NOT EXISTS ",
            "(SELECT 1 FROM revoked_grants r WHERE r.project = $1 AND r.grant_id = $9) ",
            "ON CONFLICT (project, grant_id) DO UPDATE SET ",
            "last_used_at = CASE WHEN grants.last_used_at IS NULL OR excluded.last_used_at > grants.last_used_at ",
            "THEN excluded.last_used_at ELSE grants.last_used_at END, ",
            "expires_at = CASE WHEN excluded.expires_at > grants.expires_at THEN excluded.expires_at ",
            "ELSE grants.expires_at END), ",
            "extend AS (UPDATE grants SET ",
            "last_used_at = CASE WHEN last_used_at IS NULL OR $13 > last_used_at THEN $13 ELSE last_used_at END, ",
            "expires_at = CASE WHEN $10 > expires_at THEN $10 ELSE expires_at END ",
            "WHERE project = $1 AND grant_id = $9 AND $3::BYTEA IS NULL AND EXISTS (SELECT 1 FROM ",
            $src,
            ")), ",
            "ins AS (INSERT INTO access_tokens (project, hash, grant_id, expires_at, revoked, record) ",
            "SELECT $1, $8, $9, $10, $11, $12 FROM ",
            $src,
            " WHERE NOT EXISTS (SELECT 1 FROM revoked_grants r WHERE r.project = $1 AND r.grant_id = $9) ",
            "ON CONFLICT DO NOTHING RETURNING hash), ",
            "pruned AS (DELETE FROM access_tokens WHERE project = $1 AND grant_id = $9 AND hash <> $8 ",
            "AND EXISTS (SELECT 1 FROM ins) AND (expires_at <= $13 OR hash NOT IN (SELECT hash FROM access_tokens ",
            "WHERE project = $1 AND grant_id = $9 AND hash <> $8 ORDER BY expires_at DESC, hash DESC LIMIT $14))) "
        )
    };
}

/// PostgreSQL only: a code exchange as ONE statement. The conditional
/// `UPDATE` of [`CODE_CONSUME`] (its row lock serializes concurrent
/// consumers; a waiter re-checks `consumed = FALSE` and gets no row); only
/// for the row it returns: the first refresh token inserted as
/// [`REFRESH_INSERT`] (when `$3` is not NULL: `$3`..`$7` hash, grant,
/// expiry, rotated, JSON), the access token inserted and the grant's
/// others pruned as [`ACCESS_INSERT_AND_PRUNE`] (`$8`..`$12` hash, grant,
/// expiry, revoked, JSON; `$13` its `iat`; `$14` how many others to keep)
/// and the grant summary written (`issuing_tail!`); all commit or none
/// does. `$21` now: a code expired at `now` is not consumed; a code of
/// another grant than the tokens' (`$9`) is not consumed either. Returns the
/// code's record, or no row.
pub(super) const CODE_CONSUME_ISSUING: &str = concat!(
    "WITH c AS (UPDATE authorization_codes SET consumed = TRUE WHERE project = $1 AND hash = $2 ",
    "AND consumed = FALSE AND authorization_codes.expires_at > $21 AND authorization_codes.grant_id = $9 AND ",
    not_revoked!("authorization_codes"),
    " RETURNING record), ",
    "rt AS (INSERT INTO refresh_tokens (project, hash, grant_id, expires_at, rotated, record) ",
    "SELECT $1, $3, $4, $5, $6, $7 FROM c WHERE $3::BYTEA IS NOT NULL AND NOT EXISTS ",
    "(SELECT 1 FROM revoked_grants r WHERE r.project = $1 AND r.grant_id = $4) ",
    "AND NOT EXISTS (SELECT 1 FROM refresh_tombstones t WHERE t.project = $1 AND t.hash = $3) ",
    "ON CONFLICT DO NOTHING), ",
    issuing_tail!("c"),
    "SELECT record FROM c"
);

/// PostgreSQL only: a refresh as ONE statement: the rotation of
/// [`REFRESH_ROTATE_ONE_STATEMENT`] (`$1`..`$8` as there, the successor's
/// hash `$3`, grant `$4`, expiry `$5`, rotated `$6`, JSON `$7`; `$21` the
/// mark, `$22` its time, `$23` tombstones to keep) and, only for the row
/// its delete returned, the access token and the grant summary as in
/// [`CODE_CONSUME_ISSUING`] (`$8`..`$20`). A token expired at `$22` (the
/// mark's time), or of another grant than the successor's (`$4`), is not
/// taken. Returns the old record, or no row.
pub(super) const REFRESH_ROTATE_ISSUING: &str = concat!(
    "WITH old AS (DELETE FROM refresh_tokens WHERE project = $1 AND hash = $2 AND rotated = FALSE AND ",
    "refresh_tokens.expires_at > $22 AND refresh_tokens.grant_id = $4 AND ",
    not_revoked!("refresh_tokens"),
    " RETURNING project, hash, grant_id, expires_at, record), ",
    "tomb AS (INSERT INTO refresh_tombstones (project, hash, grant_id, issued_at, expires_at, rotated_at, rotation) ",
    "SELECT project, hash, grant_id, (record::json->>'issued_at')::BIGINT, expires_at, $22, $21 FROM old), ",
    "capped AS (DELETE FROM refresh_tombstones WHERE project = $1 AND grant_id = (SELECT grant_id FROM old) ",
    "AND id NOT IN (SELECT id FROM refresh_tombstones WHERE project = $1 AND grant_id = (SELECT grant_id FROM old) ",
    "ORDER BY id DESC LIMIT $23)), ",
    "rt AS (INSERT INTO refresh_tokens (project, hash, grant_id, expires_at, rotated, record) ",
    "SELECT $1, $3, $4, $5, $6, $7 FROM old), ",
    issuing_tail!("old"),
    "SELECT record FROM old"
);

pub(super) const ACCESS_GET: &str = concat!(
    "SELECT revoked, record FROM access_tokens WHERE project = $1 AND hash = $2 AND ",
    not_revoked!("access_tokens")
);

pub(super) const ACCESS_REVOKE: &str = "UPDATE access_tokens SET revoked = TRUE WHERE project = $1 AND hash = $2";

/// The marker first (so reads see the revocation from now on), then the
/// grant's rows go; a second revocation keeps the later `keep_until`.
pub(super) const GRANT_MARK: &str = "INSERT INTO revoked_grants (project, grant_id, revoked_at, keep_until) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (project, grant_id) DO UPDATE SET keep_until = \
     CASE WHEN excluded.keep_until > revoked_grants.keep_until THEN excluded.keep_until \
     ELSE revoked_grants.keep_until END";

pub(super) const GRANT_DELETE_SUMMARY: &str =
    "DELETE FROM grants WHERE project = $1 AND grant_id = $2 RETURNING record, last_used_at, expires_at";
pub(super) const GRANT_DELETE_CODES: &str = "DELETE FROM authorization_codes WHERE project = $1 AND grant_id = $2";
pub(super) const GRANT_DELETE_REFRESH: &str = "DELETE FROM refresh_tokens WHERE project = $1 AND grant_id = $2";
pub(super) const GRANT_DELETE_ACCESS: &str = "DELETE FROM access_tokens WHERE project = $1 AND grant_id = $2";
pub(super) const GRANT_DELETE_TOMBSTONES: &str = "DELETE FROM refresh_tombstones WHERE project = $1 AND grant_id = $2";

/// Creates or extends a grant's summary, unless the grant is revoked:
/// `$1`..`$5` project, grant id, client id, subject, granted_at; `$6` the
/// time of use (NULL for a code), `$7` the expiry of the record that
/// touches it, `$8` the grant's JSON. Use and expiry only ever grow.
pub(super) const GRANT_TOUCH: &str = "INSERT INTO grants \
     (project, grant_id, client_id, subject, granted_at, last_used_at, expires_at, record) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE NOT EXISTS \
     (SELECT 1 FROM revoked_grants r WHERE r.project = $1 AND r.grant_id = $2) \
     ON CONFLICT (project, grant_id) DO UPDATE SET \
     last_used_at = CASE WHEN excluded.last_used_at IS NULL THEN grants.last_used_at \
     WHEN grants.last_used_at IS NULL OR excluded.last_used_at > grants.last_used_at THEN excluded.last_used_at \
     ELSE grants.last_used_at END, \
     expires_at = CASE WHEN excluded.expires_at > grants.expires_at THEN excluded.expires_at \
     ELSE grants.expires_at END";

/// Extends an existing summary (an access token was issued): `$3` its
/// `iat`, `$4` its `exp`.
pub(super) const GRANT_EXTEND: &str = "UPDATE grants SET \
     last_used_at = CASE WHEN last_used_at IS NULL OR $3 > last_used_at THEN $3 ELSE last_used_at END, \
     expires_at = CASE WHEN $4 > expires_at THEN $4 ELSE expires_at END \
     WHERE project = $1 AND grant_id = $2";

/// One page of a user's live grants through `grants_subject (project,
/// subject, granted_at, grant_id)`: `$3`/`$4` the cursor (exclusive), `$5`
/// now, `$6` the row count.
pub(super) const GRANT_SUBJECT_PAGE: &str = concat!(
    "SELECT record, last_used_at, expires_at FROM grants WHERE project = $1 AND subject = $2 ",
    "AND (granted_at, grant_id) > ($3, $4) AND expires_at > $5 AND ",
    not_revoked!("grants"),
    " ORDER BY granted_at, grant_id LIMIT $6"
);

/// Marks up to `$5` selected grants revoked (`$3` now, `$4` keep_until),
/// the first statement of a bulk revocation: it takes the write lock and
/// fixes the batch, whose ids it returns. `filter` selects by `$2`
/// (subject or client id; `grant_id = $2 AND subject = $6` for one grant)
/// through `grants_subject` / `grants_client` / the primary key.
/// Grants already revoked are skipped: a summary that a write racing the
/// revocation stored again (PostgreSQL, `READ COMMITTED`) is never listed
/// nor revoked twice, and goes with the purge.
pub(super) fn grant_mark_selected(filter: &str) -> String {
    format!(
        "INSERT INTO revoked_grants (project, grant_id, revoked_at, keep_until) \
         SELECT project, grant_id, $3, $4 FROM grants WHERE project = $1 AND {filter} AND {} \
         ORDER BY granted_at, grant_id LIMIT $5 \
         ON CONFLICT (project, grant_id) DO UPDATE SET keep_until = \
         CASE WHEN excluded.keep_until > revoked_grants.keep_until THEN excluded.keep_until \
         ELSE revoked_grants.keep_until END RETURNING grant_id",
        not_revoked!("grants")
    )
}

/// Summaries past `$1` (now less the grace), at most `$2` of them, through
/// the expiry index.
pub(super) const PURGE_SUMMARIES: &str = "DELETE FROM grants WHERE (project, grant_id) IN \
     (SELECT project, grant_id FROM grants WHERE expires_at <= $1 LIMIT $2)";

/// Expired rows of one table, at most `$2` of them, through the expiry
/// index.
pub(super) fn purge_expired(table: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE (project, hash) IN \
         (SELECT project, hash FROM {table} WHERE expires_at <= $1 LIMIT $2)"
    )
}

/// Rotation marks past any reuse grace (`$1`: the cutoff), at most `$2`:
/// the nonce in them could derive the successors of an old token, so they
/// go as soon as no presentation can be within the grace. Rotated tokens
/// are tombstones (migration 7).
pub(super) const CLEAR_ROTATIONS: &str = "UPDATE refresh_tombstones SET rotation = NULL, rotated_at = NULL WHERE id IN \
     (SELECT id FROM refresh_tombstones WHERE rotated_at <= $1 LIMIT $2)";

/// Stale markers: past `keep_until` AND guarding nothing any more (a row
/// that slipped in while the grant was being revoked keeps its marker
/// alive until the row itself expires and is purged).
pub(super) const PURGE_MARKERS: &str = "DELETE FROM revoked_grants WHERE (project, grant_id) IN (\
     SELECT project, grant_id FROM revoked_grants m WHERE m.keep_until <= $1 \
     AND NOT EXISTS (SELECT 1 FROM authorization_codes c WHERE c.project = m.project AND c.grant_id = m.grant_id) \
     AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.project = m.project AND t.grant_id = m.grant_id) \
     AND NOT EXISTS (SELECT 1 FROM access_tokens a WHERE a.project = m.project AND a.grant_id = m.grant_id) \
     AND NOT EXISTS (SELECT 1 FROM refresh_tombstones b WHERE b.project = m.project AND b.grant_id = m.grant_id) \
     AND NOT EXISTS (SELECT 1 FROM grants s WHERE s.project = m.project AND s.grant_id = m.grant_id) \
     LIMIT $2)";

// ---- CIMD cache ----

pub(super) const CIMD_GET: &str = "SELECT entry FROM cimd_cache WHERE project = $1 AND url = $2";

pub(super) const CIMD_PUT: &str = "INSERT INTO cimd_cache (project, url, entry, fetched_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (project, url) DO UPDATE SET \
     entry = excluded.entry, fetched_at = excluded.fetched_at, expires_at = excluded.expires_at";

pub(super) const CIMD_REMOVE: &str = "DELETE FROM cimd_cache WHERE project = $1 AND url = $2";

pub(super) const CIMD_COUNT: &str = "SELECT COUNT(*) FROM cimd_cache";

/// Evicts `$1` entries, the soonest to expire first (expired ones are the
/// soonest), through the expiry index.
pub(super) const CIMD_EVICT: &str = "DELETE FROM cimd_cache WHERE (project, url) IN \
     (SELECT project, url FROM cimd_cache ORDER BY expires_at, fetched_at LIMIT $1)";

// ---- audit ----

pub(super) const AUDIT_INSERT: &str = "INSERT INTO audit_events (project, at, name, event) VALUES ($1, $2, $3, $4)";

/// One page, newest first: `$2`/`$3` bound the time, `$4` is the cursor
/// (exclusive), `$5` the page size.
pub(super) const AUDIT_PAGE: &str = "SELECT id, event FROM audit_events WHERE project = $1 \
     AND at >= $2 AND at < $3 AND id < $4 ORDER BY id DESC LIMIT $5";

pub(super) const AUDIT_PAGE_BY_NAME: &str = "SELECT id, event FROM audit_events WHERE project = $1 \
     AND at >= $2 AND at < $3 AND id < $4 AND name = $6 ORDER BY id DESC LIMIT $5";

pub(super) const AUDIT_PURGE_AGE: &str = "DELETE FROM audit_events WHERE id IN \
     (SELECT id FROM audit_events WHERE at < $1 LIMIT $2)";

/// Adds to many rejection counters in one statement: the head, then
/// `($1, $2, $3, $4, $5), ...` (project, minute, event, reason, count),
/// then the tail; returns every counter's key and value after the
/// addition.
pub(super) const REJECTION_COUNTS_ADD_HEAD: &str = "INSERT INTO audit_rejection_counts \
     (project, minute, event, reason, count) VALUES ";
/// See [`REJECTION_COUNTS_ADD_HEAD`].
pub(super) const REJECTION_COUNTS_ADD_TAIL: &str = " ON CONFLICT (project, minute, event, reason) \
     DO UPDATE SET count = audit_rejection_counts.count + excluded.count \
     RETURNING project, minute, event, reason, count";

/// A project's newest `$2` counters, newest minute first.
pub(super) const REJECTION_COUNTS: &str = "SELECT minute, event, reason, count FROM audit_rejection_counts \
     WHERE project = $1 ORDER BY minute DESC, event, reason LIMIT $2";

/// Counters of minutes before `$1`, at most `$2`.
pub(super) const REJECTION_COUNTS_PURGE: &str = "DELETE FROM audit_rejection_counts \
     WHERE (project, minute, event, reason) IN \
     (SELECT project, minute, event, reason FROM audit_rejection_counts WHERE minute < $1 LIMIT $2)";

/// Events anyone can cause without credentials (rejected registrations,
/// failed metadata fetches, refused assertions, failed upstream logins):
/// the per-project row cap counts them apart from every other event, so a
/// flood of them only ever pushes out their own kind, never a reuse
/// detection or a revocation.
macro_rules! flood_prone {
    () => {
        "name IN ('oauth_client.cimd_fetch_failed', 'oauth_client.registration_rejected', \
         'oauth_client.assertion_rejected', 'upstream.login_failed', 'resource.refused', \
         'oauth_client.disabled_refused', 'token.rejected', 'authorization.rejected')"
    };
}

/// (Project, class) pairs holding more than `$1` events; the class is
/// whether the events are flood-prone.
pub(super) const AUDIT_CROWDED: &str = concat!(
    "SELECT project, flood FROM (SELECT project, CASE WHEN ",
    flood_prone!(),
    " THEN 1 ELSE 0 END AS flood FROM audit_events) AS classed GROUP BY project, flood HAVING COUNT(*) > $1"
);

/// Events of project `$1` and class `$4` older than the class's `$2`
/// newest, at most `$3` of them.
pub(super) const AUDIT_PURGE_ROWS: &str = concat!(
    "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE project = $1 AND (CASE WHEN ",
    flood_prone!(),
    " THEN 1 ELSE 0 END) = $4 AND id < (SELECT MIN(id) FROM (SELECT id FROM audit_events WHERE project = $1 AND (CASE WHEN ",
    flood_prone!(),
    " THEN 1 ELSE 0 END) = $4 ORDER BY id DESC LIMIT $2) AS newest) ORDER BY id LIMIT $3)"
);

// ---- signing keys ----

pub(super) const KEY_LIST: &str = "SELECT kid, alg, state, created_at, activated_at, retired_at, \
     publish_until, private_key, key_protection FROM signing_keys WHERE project = $1 ORDER BY created_at, kid";

/// Refuses a taken kid (and only that: a second active key of an
/// algorithm is a constraint error, not a "taken" answer).
pub(super) const KEY_INSERT: &str = "INSERT INTO signing_keys \
     (project, kid, alg, state, created_at, activated_at, retired_at, publish_until, private_key, key_protection) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (project, kid) DO NOTHING";

/// One key, whatever its state (emergency revocation).
pub(super) const KEY_DELETE: &str = "DELETE FROM signing_keys WHERE project = $1 AND kid = $2";

/// Every stored key, for re-sealing.
pub(super) const KEY_ALL_FOR_SEALING: &str =
    "SELECT project, kid, alg, key_protection, private_key FROM signing_keys ORDER BY project, kid";

/// Replaces a key's stored form with its sealed form, only if the row
/// still holds what was read (`$3`): a concurrent re-seal or deletion
/// wins, nothing is overwritten blindly.
pub(super) const KEY_RESEAL: &str = "UPDATE signing_keys SET private_key = $4, key_protection = 'sealed' \
     WHERE project = $1 AND kid = $2 AND private_key = $3";

/// The first statement of an activation: an upsert of the one lock row
/// of the named key's project and algorithm. PostgreSQL: concurrent
/// activations of one algorithm queue on that row's lock (one row, so no
/// deadlock), and each later one reads what the earlier committed.
/// SQLite: it takes the database write lock. `$1`: project, `$2`: kid,
/// `$3`: now.
pub(super) const KEY_LOCK_ALGORITHM: &str = "INSERT INTO signing_key_locks (project, alg, locked_at) \
     SELECT project, alg, $3 FROM signing_keys WHERE project = $1 AND kid = $2 \
     ON CONFLICT (project, alg) DO UPDATE SET locked_at = excluded.locked_at";

pub(super) const KEY_STATE: &str = "SELECT alg, state FROM signing_keys WHERE project = $1 AND kid = $2";

/// `$3`: the algorithm, `$4`: now, `$5`: publish_until of the retiring
/// active key(s).
pub(super) const KEY_RETIRE_ACTIVE_OF_ALG: &str = "UPDATE signing_keys SET state = 'retired', retired_at = $4, \
     publish_until = $5 WHERE project = $1 AND alg = $3 AND state = 'active' AND kid <> $2";

/// Other next keys of the algorithm never signed: they may leave at once.
pub(super) const KEY_RETIRE_OTHER_NEXT: &str = "UPDATE signing_keys SET state = 'retired', retired_at = $4, \
     publish_until = $4 WHERE project = $1 AND alg = $3 AND state = 'next' AND kid <> $2";

pub(super) const KEY_MAKE_ACTIVE: &str = "UPDATE signing_keys SET state = 'active', activated_at = $3 \
     WHERE project = $1 AND kid = $2 AND state = 'next'";

pub(super) const KEY_RETIRE: &str = "UPDATE signing_keys SET state = 'retired', retired_at = $3, \
     publish_until = $4 WHERE project = $1 AND kid = $2 AND state = 'active'";

/// Through the primary key's `project` prefix (a project has a handful of
/// keys).
pub(super) const KEY_DELETE_EXPIRED: &str = "DELETE FROM signing_keys WHERE project = $1 AND state = 'retired' \
     AND publish_until IS NOT NULL AND publish_until <= $2";

// ---- admission windows ----

/// Counts one admission in window `$2` of project `$1` at `$3` (a new
/// window ends at `$4`) when it has room for `$5`. Only a window that
/// ended restarts at one: a request that read the clock before the
/// window's start (a race, or another instance's clock) counts in it. No
/// row affected: full.
pub(super) const ADMISSION_COUNT: &str = "INSERT INTO admission_windows \
     (project, window_key, started_at, ends_at, count) VALUES ($1, $2, $3, $4, 1) \
     ON CONFLICT (project, window_key) DO UPDATE SET \
     started_at = CASE WHEN admission_windows.ends_at <= excluded.started_at THEN excluded.started_at \
       ELSE admission_windows.started_at END, \
     ends_at = CASE WHEN admission_windows.ends_at <= excluded.started_at THEN excluded.ends_at \
       ELSE admission_windows.ends_at END, \
     count = CASE WHEN admission_windows.ends_at <= excluded.started_at THEN 1 \
       ELSE admission_windows.count + 1 END \
     WHERE admission_windows.ends_at <= excluded.started_at OR admission_windows.count < $5";

/// Ended windows, at most `$2`.
pub(super) const ADMISSION_PURGE: &str = "DELETE FROM admission_windows WHERE (project, window_key) IN \
     (SELECT project, window_key FROM admission_windows WHERE ends_at <= $1 LIMIT $2)";

// ---- replay ids ----

/// Insert-if-absent under a quota, in one statement: a new id is
/// inserted only while the scope (`$1` project, `$2` client) holds fewer
/// than `$6` unexpired ids; an id whose entry expired (`expires_at <= $5`,
/// now) is taken over; a live entry is left alone. One row affected means
/// first use; none means a replay or a full quota ([`REPLAY_LIVE`] tells
/// which). The count walks the primary key's `(project, scope)` prefix,
/// at most the quota's rows. SQLite runs the statement under its write
/// lock, so count and insert are one step; PostgreSQL first takes
/// [`REPLAY_LOCK_SCOPE_POSTGRES`] in the same transaction.
pub(super) const REPLAY_CHECK_AND_INSERT: &str = "INSERT INTO replay_ids (project, scope, id_hash, expires_at) \
     SELECT $1, $2, $3, $4 WHERE (SELECT COUNT(*) FROM replay_ids \
     WHERE project = $1 AND scope = $2 AND expires_at > $5) < $6 \
     ON CONFLICT (project, scope, id_hash) DO UPDATE SET expires_at = excluded.expires_at \
     WHERE replay_ids.expires_at <= $5";

/// Whether an id is live (`$4`: now): after [`REPLAY_CHECK_AND_INSERT`]
/// affected nothing, a replay rather than a full quota.
pub(super) const REPLAY_LIVE: &str =
    "SELECT 1 FROM replay_ids WHERE project = $1 AND scope = $2 AND id_hash = $3 AND expires_at > $4";

/// PostgreSQL: the first statement of a replay check's transaction, a
/// transaction-scoped advisory lock on the scope (`$1` project, `$2`
/// client; a hash collision only makes two scopes queue on one lock).
/// Concurrent checks of one scope, from any process, run one after the
/// other, so the quota's count is exact; checks of other scopes do not
/// wait. The two-key form never collides with the migration lock (one
/// `bigint` key).
pub(super) const REPLAY_LOCK_SCOPE_POSTGRES: &str =
    "SELECT pg_advisory_xact_lock(726354012, hashtext($1 || '/' || $2))";

/// Expired ids, at most `$2` of them, through the expiry index.
pub(super) const REPLAY_PURGE: &str = "DELETE FROM replay_ids WHERE (project, scope, id_hash) IN \
     (SELECT project, scope, id_hash FROM replay_ids WHERE expires_at <= $1 LIMIT $2)";

// ---- local users and remembered consent ----

/// Insert or update in one statement: an existing user keeps its
/// `created_at` (returned), everything else is replaced.
pub(super) const USER_UPSERT: &str = "INSERT INTO local_users \
     (project, subject, upstream_issuer, upstream_subject, email, email_verified, name, created_at, last_login_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (project, subject) DO UPDATE SET \
     upstream_issuer = excluded.upstream_issuer, upstream_subject = excluded.upstream_subject, \
     email = excluded.email, email_verified = excluded.email_verified, name = excluded.name, \
     last_login_at = excluded.last_login_at RETURNING created_at";

pub(super) const USER_GET: &str = "SELECT upstream_issuer, upstream_subject, email, email_verified, name, \
     created_at, last_login_at FROM local_users WHERE project = $1 AND subject = $2";

/// The first statement of `remember_consent`: creates the consent's row
/// or touches it, taking its row lock (PostgreSQL) or the database write
/// lock (SQLite), so the read-merge-write of its per-resource scopes that
/// follows cannot lose a concurrent approval.
pub(super) const CONSENT_LOCK: &str = "INSERT INTO user_consents \
     (project, subject, client_id, updated_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (project, subject, client_id) DO UPDATE SET updated_at = excluded.updated_at";

/// A consent and its per-resource scopes in one statement (one snapshot):
/// one row per resource, or one row of NULLs for a consent that allows no
/// resource yet; no row at all when there is no consent.
pub(super) const CONSENT_GET: &str = "SELECT c.updated_at, r.resource, r.scopes FROM user_consents AS c \
     LEFT JOIN user_consent_scopes AS r \
     ON r.project = c.project AND r.subject = c.subject AND r.client_id = c.client_id \
     WHERE c.project = $1 AND c.subject = $2 AND c.client_id = $3";

/// The scopes allowed for one resource (`$4`, a `ConsentTarget` key),
/// replaced by the merged union (under the lock of [`CONSENT_LOCK`]).
pub(super) const CONSENT_SET_SCOPES: &str = "INSERT INTO user_consent_scopes \
     (project, subject, client_id, resource, scopes) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (project, subject, client_id, resource) DO UPDATE SET scopes = excluded.scopes";

/// `revoke_consent`, second statement: the per-resource scopes (read
/// after the first statement waited for any approval in flight, so none
/// is left behind).
pub(super) const CONSENT_REVOKE_SCOPES: &str =
    "DELETE FROM user_consent_scopes WHERE project = $1 AND subject = $2 AND client_id = $3";

/// `revoke_consent`, first statement: the consent itself (one row
/// affected: there was one). It takes the row lock that approvals take
/// first, so an approval in flight commits before the scopes are deleted.
pub(super) const CONSENT_REVOKE: &str =
    "DELETE FROM user_consents WHERE project = $1 AND subject = $2 AND client_id = $3";

pub(super) const CONSENT_REVOKE_ALL: &str = "DELETE FROM user_consents WHERE project = $1 AND subject = $2";

/// Every per-resource row of a user's consents in a project.
pub(super) const CONSENT_REVOKE_ALL_SCOPES: &str =
    "DELETE FROM user_consent_scopes WHERE project = $1 AND subject = $2";

// ---- upstream logins in flight ----

/// Stores a login unless the project already has `$6` live ones, or its
/// source (`$8`, `NULL` for none) already has `$9` live ones in the
/// project (`$3`, the login's start, is "now"). Each count is bounded by
/// its limit, so a full project or source costs one bounded index scan.
/// A taken `state_hash` is a constraint error, never an overwrite.
/// PostgreSQL runs it after [`LOGIN_LOCK_SOURCE_POSTGRES`] in the same
/// transaction, so the per-source count is exact across processes.
pub(super) const LOGIN_INSERT: &str = "INSERT INTO upstream_logins \
     (project, state_hash, browser_hash, taken, created_at, expires_at, login, source) \
     SELECT $1, $2, $7, FALSE, $3, $4, $5, $8 WHERE (SELECT COUNT(*) FROM (SELECT 1 FROM upstream_logins \
     WHERE project = $1 AND expires_at > $3 LIMIT $6) AS live) < $6 \
     AND ($8 IS NULL OR (SELECT COUNT(*) FROM (SELECT 1 FROM upstream_logins \
     WHERE project = $1 AND source = $8 AND expires_at > $3 LIMIT $9) AS mine) < $9)";

/// PostgreSQL: the first statement of a login insert's transaction when
/// the request has a source, a transaction-scoped advisory lock on
/// (`$1` project, `$2` source): concurrent inserts from one source, from
/// any process, run one after the other, each counting what the previous
/// committed (a hash collision only makes two sources queue on one lock).
/// Its first key differs from the replay store's and from the migration
/// lock's.
pub(super) const LOGIN_LOCK_SOURCE_POSTGRES: &str =
    "SELECT pg_advisory_xact_lock(726354013, hashtext($1 || '/' || $2))";

/// Takes a login: one conditional `UPDATE`; of concurrent callers only the
/// one whose update flips `taken` gets the row back, never once the login
/// expired (`$3`: now), and only from the browser it started in (`$4`:
/// the hash of its binding cookie).
pub(super) const LOGIN_TAKE: &str = "UPDATE upstream_logins SET taken = TRUE \
     WHERE project = $1 AND state_hash = $2 AND taken = FALSE AND expires_at > $3 AND browser_hash = $4 \
     RETURNING login";

/// After a failed take: why (another browser, taken before, expired, or
/// absent).
pub(super) const LOGIN_STATE: &str =
    "SELECT taken, login, browser_hash FROM upstream_logins WHERE project = $1 AND state_hash = $2";

/// Expired logins, at most `$2` of them, through the expiry index.
pub(super) const LOGIN_PURGE: &str = "DELETE FROM upstream_logins WHERE (project, state_hash) IN \
     (SELECT project, state_hash FROM upstream_logins WHERE expires_at <= $1 LIMIT $2)";

#[cfg(test)]
mod tests {
    #[test]
    fn every_rejection_event_is_counted_apart() {
        let flood_prone: &str = flood_prone!();
        for kind in crate::audit::tests::all_kinds() {
            let listed = flood_prone.contains(&format!("'{}'", kind.name()));
            let rejection = kind.class() == crate::audit::AuditClass::Rejection;
            assert_eq!(listed, rejection, "{}", kind.name());
        }
    }
}
