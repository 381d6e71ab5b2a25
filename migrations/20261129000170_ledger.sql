-- The local billing ledger (no Stripe key configured): plan changes, and an invoice per account
-- and period with its lines, issued once the period ends.
CREATE TABLE plan_changes (
    id        bigserial PRIMARY KEY,
    user_id   uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    from_plan text NOT NULL REFERENCES plans(id),
    to_plan   text NOT NULL REFERENCES plans(id),
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plan_changes_user_idx ON plan_changes (user_id, at);

CREATE TABLE invoices (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    number       text NOT NULL UNIQUE,
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL,
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'void')),
    total_cents  bigint NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    paid_at      timestamptz,
    paid_by      uuid REFERENCES users(id) ON DELETE SET NULL,
    -- one invoice per account and period: issuing twice is a no-op
    UNIQUE (user_id, period_start)
);

CREATE TABLE invoice_lines (
    invoice_id   uuid NOT NULL REFERENCES invoices(id) ON DELETE CASCADE,
    position     int NOT NULL,
    description  text NOT NULL,
    amount_cents bigint NOT NULL,
    PRIMARY KEY (invoice_id, position)
);
