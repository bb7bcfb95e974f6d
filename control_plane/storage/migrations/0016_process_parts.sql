-- What is stored apart from a process row, which every transition of the process reads and rewrites
-- (see storage/sql_process_parts.py): an input larger than a few KiB, written once at the start, and
-- the step runs of a map step's running items, one row each, read and written only by the
-- transitions of that item. A map of 10,000 items over a 10,000-element input then costs each
-- item's transitions what a small process's cost, not what its whole list and running items weigh.
CREATE TABLE wf_process_inputs (
    process_id TEXT PRIMARY KEY,
    input      TEXT NOT NULL               -- JSON
);

CREATE TABLE wf_item_runs (
    process_id TEXT NOT NULL,
    step_key   TEXT NOT NULL,              -- <step id>#<item>
    state      TEXT NOT NULL,              -- the run's state, for the search by open incident
    run        TEXT NOT NULL,              -- JSON, as a step run in the process record
    PRIMARY KEY (process_id, step_key)
);

CREATE INDEX wf_item_runs_in_incident ON wf_item_runs (process_id) WHERE state = 'incident';
