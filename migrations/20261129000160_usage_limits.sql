-- Spend limits per account (billing issue): a soft limit (an email) and a hard limit (emails
-- at 75 %, 90 % and 100 %; at 100 % every service stops until the limit is raised or removed,
-- or the period ends). Amounts are the period's bill so far, in cents.
CREATE TABLE usage_limits (
    user_id          uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    soft_limit_cents bigint CHECK (soft_limit_cents > 0),
    hard_limit_cents bigint CHECK (hard_limit_cents > 0),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Each alert goes once per period.
CREATE TABLE usage_limit_alerts (
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    period_start timestamptz NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('soft', 'hard_75', 'hard_90', 'hard_100', 'resumed')),
    at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, period_start, kind)
);

-- Deployments the hard limit stopped, so that raising it starts them again.
CREATE TABLE usage_limit_stops (
    deployment_id uuid PRIMARY KEY REFERENCES deployments(id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    stopped_at    timestamptz NOT NULL DEFAULT now(),
    resumed_at    timestamptz,
    -- the deployment that started it again
    resumed_as    uuid REFERENCES deployments(id) ON DELETE SET NULL
);
CREATE INDEX usage_limit_stops_open_idx ON usage_limit_stops (user_id) WHERE resumed_at IS NULL;

-- Set while the hard limit holds an account's services stopped: no deploy starts meanwhile.
ALTER TABLE users ADD COLUMN limit_stopped_at timestamptz;
