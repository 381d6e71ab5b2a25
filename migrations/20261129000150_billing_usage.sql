-- Billing, first step: the prices of the billing issue, per-plan limits on CPU and volume size,
-- and usage metered per service and minute.
-- Free includes $1 of usage a month; memory $10 per GB-month, CPU $20 per vCPU-month, volumes
-- $0.15 per GB-month, egress $0.05 per GB (all plans).
UPDATE plans SET included_usage_cents = 100 WHERE id = 'free';
UPDATE plans SET cpu_vcpu_month_cents = 2000, memory_gb_month_cents = 1000, volume_gb_month_cents = 15, egress_gb_cents = 5;

ALTER TABLE plans
    ADD COLUMN max_cpu_millis int NOT NULL DEFAULT 1000 CHECK (max_cpu_millis > 0),
    ADD COLUMN max_volume_gb  int NOT NULL DEFAULT 1 CHECK (max_volume_gb > 0);
UPDATE plans SET max_cpu_millis = 1000,  max_volume_gb = 1   WHERE id = 'free';
UPDATE plans SET max_cpu_millis = 8000,  max_volume_gb = 50  WHERE id = 'hobby';
UPDATE plans SET max_cpu_millis = 32000, max_volume_gb = 250 WHERE id = 'pro';

-- Usage of one resource by one service in one minute, written once. Units: cpu in
-- millicore-minutes, memory and volume in MiB-minutes, egress in bytes (see
-- app/src/billing/money.rs). `source` says who measured it: `runtime` (the reconciler's samples;
-- the first write of a minute wins, so a restart or a new leader never counts it twice) or a
-- replica's id for egress (each replica adds what its proxy sent). No foreign key to services:
-- usage outlives a deleted service until its period is billed.
CREATE TABLE usage_records (
    service_id uuid NOT NULL,
    owner_id   uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id uuid NOT NULL,
    resource   text NOT NULL CHECK (resource IN ('cpu', 'memory', 'volume', 'egress')),
    minute     timestamptz NOT NULL CHECK (date_trunc('minute', minute) = minute),
    source     text NOT NULL,
    quantity   bigint NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (service_id, resource, minute, source)
);
CREATE INDEX usage_records_owner_idx ON usage_records (owner_id, minute);
