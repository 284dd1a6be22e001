-- Bounded grant growth: a rotated refresh token leaves `refresh_tokens`
-- (whose `record` carries the whole grant, resources included) for a small
-- tombstone: its hash, grant, issue and expiry times, and the rotation mark
-- while the reuse grace may still need it. A presentation of a tombstone is
-- answered with a record rebuilt from it and the grant's current token.
-- `id` orders a grant's tombstones (the newest are kept, at most 32).
CREATE TABLE refresh_tombstones (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    hash BLOB NOT NULL,
    grant_id TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    rotated_at INTEGER,
    rotation TEXT,
    UNIQUE (project, hash)
);
CREATE INDEX refresh_tombstones_grant ON refresh_tombstones (project, grant_id, id);
CREATE INDEX refresh_tombstones_expiry ON refresh_tombstones (expires_at);
CREATE INDEX refresh_tombstones_rotation ON refresh_tombstones (rotated_at);

-- Tokens rotated before this migration become tombstones, oldest first.
INSERT INTO refresh_tombstones (project, hash, grant_id, issued_at, expires_at, rotated_at, rotation)
    SELECT project, hash, grant_id, CAST(json_extract(record, '$.issued_at') AS INTEGER), expires_at, rotated_at, rotation
    FROM refresh_tokens WHERE rotated ORDER BY expires_at, rotated_at;
DELETE FROM refresh_tokens WHERE rotated;

-- Rejections anyone can cause (rejected registrations, failed metadata
-- fetches, refused assertions, failed upstream logins) counted per project,
-- minute (unix minutes), event name and reason: an atomic upsert per event,
-- so the counts are exact across processes; purged after a day.
CREATE TABLE audit_rejection_counts (
    project TEXT NOT NULL,
    minute INTEGER NOT NULL,
    event TEXT NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (project, minute, event, reason)
);
CREATE INDEX audit_rejection_counts_minute ON audit_rejection_counts (minute);

-- Fixed-window admission counters for registrations without an initial
-- access token (per source, network and project): one conditional upsert
-- per window inside one transaction, so the limits hold across every
-- server instance on the database; purged once the window ended.
CREATE TABLE admission_windows (
    project TEXT NOT NULL,
    window_key TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (project, window_key)
);
CREATE INDEX admission_windows_ends ON admission_windows (ends_at);
