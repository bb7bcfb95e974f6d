-- Registry: instances with their leases, the change log that Watch replays, and named counters.
-- Portable SQL: the same file builds the SQLite and the PostgreSQL schema.

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

INSERT INTO counters (name, value) VALUES ('registry_revision', 0);

CREATE TABLE registry_instances (
    service       TEXT NOT NULL,
    instance_id   TEXT NOT NULL,
    address       TEXT NOT NULL,
    version       TEXT NOT NULL,
    tags          TEXT NOT NULL,          -- JSON array
    metadata      TEXT NOT NULL,          -- JSON object
    probe         TEXT,                   -- JSON object, NULL when not probed
    health        TEXT NOT NULL,
    lease_id      TEXT NOT NULL UNIQUE,
    ttl_s         DOUBLE PRECISION NOT NULL,
    registered_at DOUBLE PRECISION NOT NULL,
    revision      BIGINT NOT NULL,
    PRIMARY KEY (service, instance_id)
);

CREATE TABLE registry_changes (
    revision BIGINT PRIMARY KEY,
    type     TEXT NOT NULL,
    service  TEXT NOT NULL,
    instance TEXT NOT NULL,               -- JSON of the instance after the change (before it, for down)
    reason   TEXT NOT NULL,
    time     DOUBLE PRECISION NOT NULL
);
