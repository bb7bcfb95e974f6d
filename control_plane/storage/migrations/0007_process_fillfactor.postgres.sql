-- Every transition rewrites its process row. Room left on each page lets PostgreSQL update the row
-- in place (a HOT update) without touching the table's three indexes.
ALTER TABLE wf_processes SET (fillfactor = 70);
