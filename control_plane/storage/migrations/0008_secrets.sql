-- Keys the control plane signs with (task tokens, delivery ids), made once at first start and shared
-- by every replica of the database, so a token signed by one is accepted by all, after restarts too.
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL          -- hex
);
