-- Workflow operations: incidents (steps that failed under `on_failure: incident`), search (ended time,
-- current steps, open incidents and declared search attributes) and retention (by ended time).

ALTER TABLE wf_processes ADD COLUMN ended_at DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE wf_processes ADD COLUMN current_steps TEXT NOT NULL DEFAULT '';   -- ",a,b," of the active steps
ALTER TABLE wf_processes ADD COLUMN incident INTEGER NOT NULL DEFAULT 0;      -- 1 while a step is in INCIDENT

-- Processes that ended before this version: their end time is in the record.
UPDATE wf_processes SET ended_at = COALESCE((record::jsonb ->> 'ended_at')::double precision, 0)
WHERE state IN ('completed', 'failed', 'compensated', 'cancelled');

CREATE INDEX wf_processes_by_ended ON wf_processes (ended_at) WHERE ended_at > 0;

CREATE TABLE wf_incidents (
    process_id  TEXT NOT NULL,
    sequence    BIGINT NOT NULL,               -- of the STEP_INCIDENT history event
    definition  TEXT NOT NULL,
    step_id     TEXT NOT NULL,
    error       TEXT NOT NULL,                 -- JSON, as Failure
    opened_at   DOUBLE PRECISION NOT NULL,
    resolved_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    resolution  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (process_id, sequence)
);

CREATE INDEX wf_incidents_by_opened ON wf_incidents (opened_at);

CREATE TABLE wf_search (
    definition TEXT NOT NULL,
    attribute  TEXT NOT NULL,
    value      TEXT NOT NULL,
    process_id TEXT NOT NULL,
    PRIMARY KEY (definition, attribute, value, process_id)
);

CREATE INDEX wf_search_by_process ON wf_search (process_id);
