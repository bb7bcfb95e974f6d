-- Schedules: each one's configuration and state as one JSON document, updated by compare-and-set on
-- its revision (the leader firing it and a client pausing it may write at the same time). next_due is
-- when the leader must look at it next (NULL: never, while paused or once ended); buffered marks the
-- ones that hold a start back until their previous process ends, which the leader checks each pass.

CREATE TABLE schedules (
    id       TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,
    next_due DOUBLE PRECISION,
    buffered INTEGER NOT NULL,
    record   TEXT NOT NULL
);

CREATE INDEX schedules_by_due ON schedules (next_due);
