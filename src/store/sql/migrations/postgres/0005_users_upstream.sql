-- Local users and their remembered consent (store::UserStore), and
-- upstream logins in flight (store::UpstreamLoginStore).

-- One row per local user of a project, keyed by the local subject
-- (derived from the upstream iss + sub, or the host's mapping). Upserted
-- by one INSERT ... ON CONFLICT DO UPDATE that keeps created_at.
CREATE TABLE local_users (
    project TEXT NOT NULL,
    subject TEXT NOT NULL,
    upstream_issuer TEXT NOT NULL,
    upstream_subject TEXT NOT NULL,
    email TEXT,
    email_verified BOOLEAN NOT NULL,
    name TEXT,
    created_at BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    PRIMARY KEY (project, subject)
);
CREATE INDEX local_users_upstream ON local_users (project, upstream_issuer, upstream_subject);

-- What a user allowed a client: the union of every approval, as the
-- space-delimited scope string and the JSON array of the resources
-- (audiences) allowed. Updated in a transaction whose first statement
-- writes this row (row lock / database write lock), so concurrent
-- approvals both count.
CREATE TABLE user_consents (
    project TEXT NOT NULL,
    subject TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scopes TEXT NOT NULL,
    resources TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project, subject, client_id)
);

-- Upstream logins in flight, by the SHA-256 digest of their `state`.
-- `login` is the JSON of upstream::UpstreamLogin: it holds the pending MCP
-- authorization and, in clear, the PKCE code verifier and the nonce sent
-- upstream (the callback must send the verifier to the provider's token
-- endpoint). They are worthless without the provider's authorization
-- code, live for at most 10 minutes and are purged once expired.
-- `taken` is flipped by one conditional UPDATE: exactly-once, and only
-- by the browser whose binding cookie hashes to `browser_hash`.
CREATE TABLE upstream_logins (
    project TEXT NOT NULL,
    state_hash BYTEA NOT NULL,
    browser_hash BYTEA NOT NULL,
    taken BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    login TEXT NOT NULL,
    PRIMARY KEY (project, state_hash)
);
CREATE INDEX upstream_logins_live ON upstream_logins (project, expires_at);
CREATE INDEX upstream_logins_expiry ON upstream_logins (expires_at);
