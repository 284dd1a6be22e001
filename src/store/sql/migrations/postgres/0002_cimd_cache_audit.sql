-- authio-mcp schema, version 2 (PostgreSQL): the shared CIMD cache and the
-- audit log.

CREATE TABLE cimd_cache (
    project TEXT NOT NULL,
    url TEXT NOT NULL,
    entry TEXT NOT NULL,
    fetched_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (project, url)
);
CREATE INDEX cimd_cache_expiry ON cimd_cache (expires_at);

CREATE TABLE audit_events (
    id BIGSERIAL PRIMARY KEY,
    project TEXT NOT NULL,
    at BIGINT NOT NULL,
    name TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX audit_events_project ON audit_events (project, id);
CREATE INDEX audit_events_project_name ON audit_events (project, name, id);
CREATE INDEX audit_events_at ON audit_events (at);
