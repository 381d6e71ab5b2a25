-- Personal API tokens may be limited: `read` only reads, `deploy` also deploys (deployments,
-- rollbacks, restarts, source uploads), `full` does all the account can. And they may expire.
ALTER TABLE api_tokens
    ADD COLUMN scope text NOT NULL DEFAULT 'full' CHECK (scope IN ('read', 'deploy', 'full')),
    ADD COLUMN expires_at timestamptz;
