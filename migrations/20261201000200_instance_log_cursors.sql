-- How far the lines an instance's monitor kept are stored (runtime/local/monitored.rs): written
-- in the transaction that stores them, so a platform killed at any moment resumes exactly after
-- the last stored line — no gap, no line twice. One row per run of an instance (a restart is a
-- new run, with a new monitor). The platform's own table: no tenant reads it.
CREATE TABLE instance_log_cursors (
    run_id uuid PRIMARY KEY,
    segment bigint NOT NULL,
    "offset" bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
