-- Bytes of logs stored per deployment, so retention (ROUNDHOUSE_LOG_MB_PER_DEPLOYMENT) finds
-- the deployments over budget without reading their lines. The log writer adds each stored
-- line (octet_length(line) + 100 for its row) in the transaction that stores it; pruning
-- subtracts what it deletes in the statement that deletes it.
CREATE TABLE deployment_log_usage (
    deployment_id uuid PRIMARY KEY REFERENCES deployments(id) ON DELETE CASCADE,
    bytes         bigint NOT NULL
);

INSERT INTO deployment_log_usage (deployment_id, bytes)
SELECT deployment_id, sum(octet_length(line) + 100) FROM deployment_logs GROUP BY deployment_id;
