-- Nothing reads task attempts by process: the index only cost a random page write per attempt.
DROP INDEX wf_tasks_by_process;
