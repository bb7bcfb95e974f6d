-- Call and map steps. A process started by another's call step names its parent, so that
-- ListProcesses filters by parent without reading every record. The items of a map step that
-- ended are kept apart from the process row (which holds only the running ones and counters):
-- one row per item, read back in item order once every item ended.
ALTER TABLE wf_processes ADD COLUMN parent_id TEXT NOT NULL DEFAULT '';
CREATE INDEX wf_processes_by_parent ON wf_processes (parent_id, created_at) WHERE parent_id <> '';

CREATE TABLE wf_map_items (
    process_id TEXT NOT NULL,
    step_id    TEXT NOT NULL,
    item       INTEGER NOT NULL,
    failed     INTEGER NOT NULL,           -- 1 when the item failed (output holds its error)
    output     TEXT NOT NULL,              -- JSON
    PRIMARY KEY (process_id, step_id, item)
);
