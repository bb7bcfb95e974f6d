-- Mesh: the traffic policy of each service (one JSON document per service) and the mesh revision,
-- raised by every change so that replicas and xDS clients can tell policies apart.
-- Portable SQL: the same file builds the SQLite and the PostgreSQL schema.

INSERT INTO counters (name, value) VALUES ('mesh_revision', 0);

CREATE TABLE mesh_routes (
    service    TEXT PRIMARY KEY,
    policy     TEXT NOT NULL,             -- JSON object
    revision   BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
