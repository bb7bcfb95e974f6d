-- Bus: one message log for every subject, publish dedup, consumers with their pending deliveries,
-- retention policies. Portable except BLOB: 0002_bus.postgres.sql spells it BYTEA.

INSERT INTO counters (name, value) VALUES ('bus_sequence', 0);

CREATE TABLE bus_messages (
    sequence         BIGINT PRIMARY KEY,
    subject          TEXT NOT NULL,
    subject_sequence BIGINT NOT NULL,
    data             BLOB NOT NULL,
    headers          TEXT NOT NULL,          -- JSON object
    content_type     TEXT NOT NULL,
    message_id       TEXT NOT NULL,
    published_at     DOUBLE PRECISION NOT NULL
);

CREATE INDEX bus_messages_by_subject ON bus_messages (subject, sequence);

-- Highest subject sequence ever given per subject: survives retention deleting every message.
CREATE TABLE bus_subjects (
    subject          TEXT PRIMARY KEY,
    last_sequence    BIGINT NOT NULL
);

CREATE TABLE bus_dedup (
    message_id       TEXT PRIMARY KEY,
    sequence         BIGINT NOT NULL,
    subject_sequence BIGINT NOT NULL,
    published_at     DOUBLE PRECISION NOT NULL
);

CREATE INDEX bus_dedup_by_time ON bus_dedup (published_at);

CREATE TABLE bus_consumers (
    name               TEXT PRIMARY KEY,
    config             TEXT NOT NULL,        -- JSON of ConsumerConfig
    delivered_sequence BIGINT NOT NULL,
    dead_lettered      BIGINT NOT NULL
);

CREATE TABLE bus_pending (
    consumer TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    attempt  INTEGER NOT NULL,
    PRIMARY KEY (consumer, sequence)
);

CREATE TABLE bus_retention (
    subject_prefix TEXT PRIMARY KEY,
    max_age_s      DOUBLE PRECISION NOT NULL,
    max_messages   BIGINT NOT NULL
);
