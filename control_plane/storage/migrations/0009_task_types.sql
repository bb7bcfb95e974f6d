-- The task type of each outstanding attempt, so that a replica claims only attempts that its workers
-- with free credit take (a worker may subscribe to some task types of its service only).
ALTER TABLE wf_tasks ADD COLUMN task_type TEXT NOT NULL DEFAULT '';
UPDATE wf_tasks SET task_type = json_extract(task, '$.task_type');
