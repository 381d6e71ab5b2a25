-- Deployments, their events and logs, running instances and sampled metrics.

-- A project's slug names it in service hostnames (`web.<slug>.localhost`): unique across the
-- platform, made from the name when the project is created and kept on rename.
ALTER TABLE projects ADD COLUMN slug text;

CREATE FUNCTION roundhouse_project_slug() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    base text;
BEGIN
    IF NEW.slug IS NULL THEN
        base := trim(both '-' from regexp_replace(lower(NEW.name), '[^a-z0-9]+', '-', 'g'));
        IF base = '' THEN
            base := 'project';
        END IF;
        base := left(base, 40);
        NEW.slug := base;
        IF EXISTS (SELECT 1 FROM projects WHERE slug = NEW.slug AND id <> NEW.id) THEN
            NEW.slug := base || '-' || left(md5(NEW.id::text), 6);
        END IF;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER projects_slug BEFORE INSERT ON projects FOR EACH ROW EXECUTE FUNCTION roundhouse_project_slug();
UPDATE projects SET slug = trim(both '-' from regexp_replace(lower(name), '[^a-z0-9]+', '-', 'g')) || '-' || left(md5(id::text), 6);
ALTER TABLE projects ALTER COLUMN slug SET NOT NULL;
CREATE UNIQUE INDEX projects_slug_key ON projects (slug);

-- The stable loopback port other services reach this one at (ROUNDHOUSE_PRIVATE_DOMAIN).
ALTER TABLE services ADD COLUMN private_port int UNIQUE CHECK (private_port BETWEEN 1024 AND 65535);

CREATE TABLE deployments (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    service_id    uuid NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    -- 1, 2, 3… per service
    number        int NOT NULL,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'building', 'deploying', 'running', 'failed', 'crashed', 'cancelled', 'removed')),
    reason        text NOT NULL DEFAULT '',
    trigger       text NOT NULL CHECK (trigger IN ('deploy', 'redeploy', 'rollback', 'restart')),
    rollback_of   uuid REFERENCES deployments(id) ON DELETE SET NULL,
    -- the service's source and settings when the deployment was made
    spec          jsonb NOT NULL,
    -- where the runtime keeps the build output (a directory for the local runtime)
    artifact      text,
    -- the user asked for this deployment to stop (cancel, stop): the reconciler carries it out
    stop_requested boolean NOT NULL DEFAULT false,
    -- the current phase fails when this passes
    deadline      timestamptz,
    created_by    uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    running_at    timestamptz,
    finished_at   timestamptz,
    UNIQUE (service_id, number)
);
CREATE INDEX deployments_service_idx ON deployments (service_id, number DESC);
CREATE INDEX deployments_active_idx ON deployments (status) WHERE status IN ('queued', 'building', 'deploying', 'running');

CREATE TABLE deployment_events (
    id            bigserial PRIMARY KEY,
    deployment_id uuid NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    status        text NOT NULL,
    reason        text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployment_events_deployment_idx ON deployment_events (deployment_id, id);

-- One writer per platform (the reconciler's leader) appends in commit order, so `id` is the
-- sequence a follower resumes from.
CREATE TABLE deployment_logs (
    id            bigserial PRIMARY KEY,
    deployment_id uuid NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    at            timestamptz NOT NULL,
    stream        text NOT NULL CHECK (stream IN ('build', 'stdout', 'stderr', 'system')),
    replica       int,
    line          text NOT NULL
);
CREATE INDEX deployment_logs_deployment_idx ON deployment_logs (deployment_id, id);

CREATE TABLE instances (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    deployment_id uuid NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    replica       int NOT NULL,
    pid           int,
    port          int,
    state         text NOT NULL CHECK (state IN ('starting', 'healthy', 'restarting', 'stopped')),
    restarts      int NOT NULL DEFAULT 0,
    exit_code     int,
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instances_deployment_idx ON instances (deployment_id);
CREATE INDEX instances_live_idx ON instances (state) WHERE state <> 'stopped';

CREATE TABLE service_metrics (
    service_id    uuid NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    at            timestamptz NOT NULL DEFAULT now(),
    cpu_percent   real NOT NULL,
    memory_bytes  bigint NOT NULL
);
CREATE INDEX service_metrics_service_idx ON service_metrics (service_id, at DESC);
