-- Workflow: definition versions, processes (their whole state as one JSON document, updated by each
-- transition), their history, outstanding task attempts and durable timers.

CREATE TABLE wf_definitions (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    digest     TEXT NOT NULL,
    source     TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE wf_processes (
    id           TEXT PRIMARY KEY,
    definition   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    business_key TEXT NOT NULL,
    state        TEXT NOT NULL,
    created_at   DOUBLE PRECISION NOT NULL,
    updated_at   DOUBLE PRECISION NOT NULL,
    record       TEXT NOT NULL              -- JSON: steps, input, output, error, buffered signals, ...
);

CREATE UNIQUE INDEX wf_processes_by_key ON wf_processes (definition, business_key) WHERE business_key <> '';
CREATE INDEX wf_processes_by_state ON wf_processes (state, created_at);
CREATE INDEX wf_processes_by_created ON wf_processes (created_at);

CREATE TABLE wf_history (
    process_id TEXT NOT NULL,
    sequence   BIGINT NOT NULL,
    time       DOUBLE PRECISION NOT NULL,
    type       TEXT NOT NULL,
    step_id    TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    state      TEXT NOT NULL,
    details    TEXT NOT NULL,               -- JSON
    PRIMARY KEY (process_id, sequence)
);

CREATE TABLE wf_tasks (
    token      TEXT PRIMARY KEY,
    process_id TEXT NOT NULL,
    task       TEXT NOT NULL                -- JSON of the task attempt as workers receive it
);

CREATE INDEX wf_tasks_by_process ON wf_tasks (process_id);

CREATE TABLE wf_timers (
    process_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    due_at     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (process_id, name)
);
