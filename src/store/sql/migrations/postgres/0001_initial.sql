-- authio-mcp schema, version 1 (PostgreSQL): projects, clients, initial access
-- tokens, codes, refresh tokens, access tokens, grant revocation markers.
-- Times are unix seconds (BIGINT); hashes are SHA-256 digests (BYTEA, 32 bytes).

CREATE TABLE projects (
    id TEXT PRIMARY KEY NOT NULL,
    settings TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE clients (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    client TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    PRIMARY KEY (project, id)
);

CREATE TABLE initial_access_tokens (
    project TEXT NOT NULL,
    hash BYTEA NOT NULL,
    id TEXT NOT NULL,
    label TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    max_uses BIGINT,
    uses BIGINT NOT NULL,
    revoked_at BIGINT,
    pinned TEXT NOT NULL,
    PRIMARY KEY (project, hash),
    UNIQUE (project, id)
);

CREATE TABLE authorization_codes (
    project TEXT NOT NULL,
    hash BYTEA NOT NULL,
    grant_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    consumed BOOLEAN NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (project, hash)
);
CREATE INDEX authorization_codes_grant ON authorization_codes (project, grant_id);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);

CREATE TABLE refresh_tokens (
    project TEXT NOT NULL,
    hash BYTEA NOT NULL,
    grant_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    rotated BOOLEAN NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (project, hash)
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (project, grant_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

CREATE TABLE access_tokens (
    project TEXT NOT NULL,
    hash BYTEA NOT NULL,
    grant_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (project, hash)
);
CREATE INDEX access_tokens_grant ON access_tokens (project, grant_id);
CREATE INDEX access_tokens_expiry ON access_tokens (expires_at);

CREATE TABLE revoked_grants (
    project TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    keep_until BIGINT NOT NULL,
    PRIMARY KEY (project, grant_id)
);
CREATE INDEX revoked_grants_expiry ON revoked_grants (keep_until);
