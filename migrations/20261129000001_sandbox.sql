-- Containment of what tenants deploy: a host identity per project for the local runtime's
-- sandbox, uploaded source archives, a process limit per service, and where an instance is
-- reachable (its network as well as its port).

-- Every project that ran something on the local runtime has its own uid (and gid of the same
-- number). A uid is never given to another project: when a project is deleted its row stays
-- with project_id NULL, so files it left behind can never become someone else's.
CREATE SEQUENCE sandbox_uid_seq;
CREATE TABLE sandbox_uids (
    uid         bigint PRIMARY KEY,
    project_id  uuid UNIQUE REFERENCES projects(id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE services DROP CONSTRAINT services_source_kind_check;
ALTER TABLE services ADD CONSTRAINT services_source_kind_check
    CHECK (source_kind IN ('directory', 'git', 'upload', 'image', 'database'));
ALTER TABLE services ADD COLUMN max_processes int NOT NULL DEFAULT 256 CHECK (max_processes BETWEEN 16 AND 4096);

-- A service of source kind `upload` names its current archive in `services.source` (the id).
CREATE TABLE source_uploads (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    service_id  uuid NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    sha256      text NOT NULL,
    size_bytes  bigint NOT NULL,
    files       int NOT NULL,
    archive     bytea NOT NULL,
    created_by  uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- Already compressed: do not try again.
ALTER TABLE source_uploads ALTER COLUMN archive SET STORAGE EXTERNAL;
CREATE INDEX source_uploads_service_idx ON source_uploads (service_id, created_at DESC);

-- The runtime's name for the network an instance listens in (NULL: the host's).
ALTER TABLE instances ADD COLUMN network text;
