-- Services of an environment and their variables (values encrypted at rest).

CREATE TABLE services (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    environment_id           uuid NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    name                     text NOT NULL,
    source_kind              text NOT NULL CHECK (source_kind IN ('directory', 'git', 'image', 'database')),
    -- a directory path, a git URL, an image reference, or a database engine (postgres, redis)
    source                   text NOT NULL,
    build_command            text,
    start_command            text,
    port                     int CHECK (port BETWEEN 1 AND 65535),
    replicas                 int NOT NULL DEFAULT 1 CHECK (replicas BETWEEN 1 AND 100),
    cpu_millis               int NOT NULL DEFAULT 1000 CHECK (cpu_millis BETWEEN 100 AND 64000),
    memory_mb                int NOT NULL DEFAULT 512 CHECK (memory_mb BETWEEN 64 AND 262144),
    healthcheck_path         text,
    healthcheck_timeout_secs int NOT NULL DEFAULT 60 CHECK (healthcheck_timeout_secs BETWEEN 1 AND 600),
    restart_policy           text NOT NULL DEFAULT 'on_failure' CHECK (restart_policy IN ('always', 'on_failure', 'never')),
    restart_max              int NOT NULL DEFAULT 10 CHECK (restart_max BETWEEN 0 AND 1000),
    volume_path              text,
    cron_schedule            text,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX services_environment_name_key ON services (environment_id, lower(name));

-- service_id NULL: a shared variable of the environment.
CREATE TABLE variables (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    environment_id  uuid NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    service_id      uuid REFERENCES services(id) ON DELETE CASCADE,
    name            text NOT NULL,
    -- XChaCha20-Poly1305: nonce || ciphertext, bound to the row id
    value_sealed    bytea NOT NULL,
    secret          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX variables_scope_name_key ON variables (environment_id, service_id, name) NULLS NOT DISTINCT;
