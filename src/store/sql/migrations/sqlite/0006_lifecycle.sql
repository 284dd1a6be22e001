-- authio-mcp schema, version 6 (SQLite): client and grant lifecycle.
--
-- clients.disabled_at: when an administrator disabled the client (NULL:
-- enabled); the client JSON never holds it, the column is authoritative.
-- clients_listing: the admin listing walks (project, issued_at, id).
--
-- grants: one summary row per grant (store::GrantStore "Grant
-- summaries"): created with the grant's first code, extended by its
-- tokens, deleted with its revocation, purged after expires_at. record is
-- the JSON of grant::Grant.

ALTER TABLE clients ADD COLUMN disabled_at INTEGER;
CREATE INDEX clients_listing ON clients (project, issued_at, id);

CREATE TABLE grants (
    project TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    last_used_at INTEGER,
    expires_at INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (project, grant_id)
);
CREATE INDEX grants_subject ON grants (project, subject, granted_at, grant_id);
CREATE INDEX grants_client ON grants (project, client_id, granted_at, grant_id);
CREATE INDEX grants_expiry ON grants (expires_at);

-- Grants issued before this version: one summary per grant that still has
-- a live (unrotated, unrevoked) refresh token. Grants with access tokens
-- only are not listed; their tokens expire within the access-token
-- lifetime.
INSERT INTO grants (project, grant_id, client_id, subject, granted_at, last_used_at, expires_at, record)
SELECT t.project, t.grant_id,
       json_extract(t.record, '$.grant.client_id'),
       json_extract(t.record, '$.grant.subject'),
       json_extract(t.record, '$.grant.granted_at'),
       json_extract(t.record, '$.issued_at'),
       MAX(t.expires_at),
       json_extract(t.record, '$.grant')
FROM refresh_tokens t
WHERE t.rotated = FALSE
  AND NOT EXISTS (SELECT 1 FROM revoked_grants r WHERE r.project = t.project AND r.grant_id = t.grant_id)
GROUP BY t.project, t.grant_id;
