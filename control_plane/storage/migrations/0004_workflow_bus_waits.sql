-- wait_signal steps that wait for a Bus message: which pattern, and from which log sequence on.

CREATE TABLE wf_bus_waits (
    process_id TEXT NOT NULL,
    step_id    TEXT NOT NULL,
    pattern    TEXT NOT NULL,
    after      BIGINT NOT NULL,             -- only messages with a greater log sequence count
    PRIMARY KEY (process_id, step_id)
);
