-- Runs of cron services: one row per scheduled time of a deployment, written before the run
-- starts, so a schedule fires once even when leadership moves between platform replicas.
CREATE TABLE cron_runs (
    deployment_id uuid NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    scheduled_for timestamptz NOT NULL,
    instance_id   uuid,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    exit_code     int,
    -- why it did not run, or how it ended
    outcome       text,
    PRIMARY KEY (deployment_id, scheduled_for)
);
