-- Several replicas may share one (PostgreSQL) database.
-- Each outstanding task attempt belongs to the replica that hands it out; NULL means any replica with
-- a worker for its service may claim it (released by a replica without such a worker, by a replica
-- that stops, or by the leader for a replica that died).
ALTER TABLE wf_tasks ADD COLUMN owner TEXT;
ALTER TABLE wf_tasks ADD COLUMN service TEXT NOT NULL DEFAULT '';
CREATE INDEX wf_tasks_unowned ON wf_tasks (service) WHERE owner IS NULL;

-- Lease renewals made on any replica, so that the one replica that expires leases sees them all.
CREATE TABLE registry_leases (
    lease_id   TEXT PRIMARY KEY,
    expires_at DOUBLE PRECISION NOT NULL     -- wall clock
);
