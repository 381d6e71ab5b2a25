-- Storing log lines was bound by per-row work in Postgres, not by the writer: measured with
-- `COPY` of 500,000 lines on 2 cores, the foreign key's check (a trigger and a lookup per row)
-- took half the time and the second index most of the rest (9.4 s in all; 3.5 s without
-- them). So:
-- - A line's deployment is checked once per batch instead: the writer upserts each
--   deployment's `deployment_log_usage` row (whose foreign key remains) in the transaction
--   that copies its lines, so lines of a deployment deleted meanwhile are refused with it.
-- - Deleting deployments deletes their lines through a statement-level trigger (one DELETE per
--   statement, whether the deployments go by themselves or with their service or project).
-- - One index, `(deployment_id, id)`, serves every read (a deployment's lines after an id,
--   its newest lines, retention's oldest) and is the primary key (ids are unique by their
--   sequence).
ALTER TABLE deployment_logs DROP CONSTRAINT deployment_logs_deployment_id_fkey;
ALTER TABLE deployment_logs DROP CONSTRAINT deployment_logs_pkey;
DROP INDEX deployment_logs_deployment_idx;
DELETE FROM deployment_logs l WHERE NOT EXISTS (SELECT 1 FROM deployments d WHERE d.id = l.deployment_id);
ALTER TABLE deployment_logs ADD PRIMARY KEY (deployment_id, id);

CREATE FUNCTION delete_logs_of_deleted_deployments() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM deployment_logs l USING gone g WHERE l.deployment_id = g.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER deployments_delete_their_logs
    AFTER DELETE ON deployments
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION delete_logs_of_deleted_deployments();
