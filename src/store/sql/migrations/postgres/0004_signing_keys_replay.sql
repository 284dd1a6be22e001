-- Signing keys per project (store::KeyStore) and single-use client
-- assertion ids (store::ReplayStore).
--
-- private_key holds the key's DER form (PKCS#8 for ES256 and EdDSA, PKCS#1
-- for RS256) UNENCRYPTED: the crate has no at-rest encryption. Anyone who
-- can read this table can sign tokens for the project; protect the
-- database (and its backups) accordingly.

CREATE TABLE signing_keys (
    project TEXT NOT NULL,
    kid TEXT NOT NULL,
    alg TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('next', 'active', 'retired')),
    created_at BIGINT NOT NULL,
    activated_at BIGINT,
    retired_at BIGINT,
    publish_until BIGINT,
    private_key BYTEA NOT NULL,
    PRIMARY KEY (project, kid)
);

-- At most one active key per project and algorithm, whatever the callers
-- do: a backstop for the locking in KeyStore::activate.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (project, alg) WHERE state = 'active';

-- One row per project and algorithm, written first by every activation:
-- concurrent activations of one algorithm queue on its row lock
-- (PostgreSQL) or the database write lock (SQLite).
CREATE TABLE signing_key_locks (
    project TEXT NOT NULL,
    alg TEXT NOT NULL,
    locked_at BIGINT NOT NULL,
    PRIMARY KEY (project, alg)
);

-- The jti of client assertions, as its SHA-256 digest (bounded size), per
-- project and client; the primary key makes check-and-insert one atomic
-- INSERT ... ON CONFLICT.
CREATE TABLE replay_ids (
    project TEXT NOT NULL,
    scope TEXT NOT NULL,
    id_hash BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (project, scope, id_hash)
);

CREATE INDEX replay_ids_expires_at ON replay_ids (expires_at);
