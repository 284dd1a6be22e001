-- Remembered consent per resource (store::UserStore): the scopes a user
-- allowed a client, kept for each RFC 8707 resource (audience) on its
-- own, so scopes approved for one MCP server never cover another.
-- `resource` is the canonical resource URI, or '' for a request that
-- named no resource in a project without a default resource
-- (store::ConsentTarget). `scopes` is the space-delimited union of every
-- approval for that resource. `user_consents` keeps one row per (project,
-- subject, client_id): `updated_at`, and the row whose lock serializes
-- concurrent approvals.
CREATE TABLE user_consent_scopes (
    project TEXT NOT NULL,
    subject TEXT NOT NULL,
    client_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    scopes TEXT NOT NULL,
    PRIMARY KEY (project, subject, client_id, resource)
);

-- Consent stored before: the union of the scopes and the union of the
-- resources. Each stored resource gets the whole scope union (what the
-- user allowed, as that version read it); a consent without resources
-- covered only requests without one, so it becomes the '' entry.
INSERT INTO user_consent_scopes (project, subject, client_id, resource, scopes)
    SELECT c.project, c.subject, c.client_id, j.value, c.scopes
    FROM user_consents AS c CROSS JOIN LATERAL jsonb_array_elements_text(c.resources::jsonb) AS j(value)
    ON CONFLICT DO NOTHING;
INSERT INTO user_consent_scopes (project, subject, client_id, resource, scopes)
    SELECT project, subject, client_id, '', scopes
    FROM user_consents WHERE jsonb_array_length(resources::jsonb) = 0;
ALTER TABLE user_consents DROP COLUMN scopes, DROP COLUMN resources;

-- Upstream logins in flight per source (the client address, or the host's
-- name for it: cimd::RequestSource), so one source cannot fill a
-- project's share (SqlOptions::upstream_logins_per_source). NULL: the
-- host gave no source; such logins count against the project cap only.
ALTER TABLE upstream_logins ADD COLUMN source TEXT;
CREATE INDEX upstream_logins_source ON upstream_logins (project, source, expires_at);
