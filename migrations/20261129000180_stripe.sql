-- Stripe (when STRIPE_SECRET_KEY is set): the customer and subscription each account has there,
-- the webhook events already applied, the usage already reported as meter events, and Stripe's
-- invoices mirrored beside the local ledger's.
ALTER TABLE users
    ADD COLUMN stripe_customer_id     text UNIQUE,
    ADD COLUMN stripe_subscription_id text,
    -- Stripe's own word for the subscription (active, past_due, canceled, ...).
    ADD COLUMN subscription_status    text,
    -- When the Stripe object this state came from was current (its event's `created`): an
    -- older event arriving later changes nothing.
    ADD COLUMN subscription_synced_at timestamptz,
    -- The first failed payment not yet made good; after the grace period services stop.
    ADD COLUMN past_due_since         timestamptz,
    ADD COLUMN payment_stopped_at     timestamptz;

-- Every webhook event applied, by Stripe's id: a replay is a no-op.
CREATE TABLE stripe_events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    created     timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    outcome     text NOT NULL
);

-- One meter event per account, resource and hour, sent with `identifier` so Stripe counts it once.
CREATE TABLE meter_reports (
    owner_id   uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    resource   text NOT NULL,
    hour       timestamptz NOT NULL,
    quantity   bigint NOT NULL,
    identifier text NOT NULL UNIQUE,
    sent_at    timestamptz NOT NULL DEFAULT now(),
    -- set when Stripe refused the event for good (it is not sent again; the operator sees why)
    error      text,
    PRIMARY KEY (owner_id, resource, hour)
);

-- A payment hold stops services the way the hard limit does (usage_limit_stops records them);
-- they start again once no hold remains.

ALTER TABLE invoices
    ADD COLUMN stripe_invoice_id text UNIQUE,
    ADD COLUMN hosted_url        text,
    -- when the Stripe object was current: an older event arriving later changes nothing
    ADD COLUMN synced_at         timestamptz,
    -- when a payment of this (still open) invoice first failed
    ADD COLUMN failed_at         timestamptz;
-- Stripe may issue several invoices in a period (a proration, a retry): only the local
-- ledger's are one per account and period.
ALTER TABLE invoices DROP CONSTRAINT invoices_user_id_period_start_key;
CREATE UNIQUE INDEX invoices_local_period ON invoices (user_id, period_start) WHERE stripe_invoice_id IS NULL;

-- What a service's volume held when last measured (volumes are billed by the MiB-minute).
ALTER TABLE services ADD COLUMN volume_bytes bigint;
