-- authio-mcp schema, version 2 (SQLite): the shared CIMD cache and the
-- audit log.

CREATE TABLE cimd_cache (
    project TEXT NOT NULL,
    url TEXT NOT NULL,
    entry TEXT NOT NULL,
    fetched_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (project, url)
);
CREATE INDEX cimd_cache_expiry ON cimd_cache (expires_at);

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    at INTEGER NOT NULL,
    name TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX audit_events_project ON audit_events (project, id);
CREATE INDEX audit_events_project_name ON audit_events (project, name, id);
CREATE INDEX audit_events_at ON audit_events (at);
