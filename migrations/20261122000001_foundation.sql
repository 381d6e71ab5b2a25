-- Accounts, sessions, tokens, mail, plans, templates, projects, environments, audit.

CREATE TABLE plans (
    id                    text PRIMARY KEY,
    name                  text NOT NULL,
    tagline               text NOT NULL,
    sort_order            int NOT NULL,
    monthly_fee_cents     int NOT NULL CHECK (monthly_fee_cents >= 0),
    included_usage_cents  int NOT NULL CHECK (included_usage_cents >= 0),
    -- prices in cents per unit and month (egress: per GB transferred)
    cpu_vcpu_month_cents  int NOT NULL,
    memory_gb_month_cents int NOT NULL,
    volume_gb_month_cents int NOT NULL,
    egress_gb_cents       int NOT NULL,
    max_projects          int NOT NULL,
    max_services          int NOT NULL,
    max_replicas          int NOT NULL,
    max_memory_mb         int NOT NULL,
    public                boolean NOT NULL DEFAULT true
);

CREATE TABLE users (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email             text NOT NULL,
    name              text NOT NULL,
    password_hash     text NOT NULL,
    role              text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    plan_id           text NOT NULL DEFAULT 'free' REFERENCES plans(id),
    email_verified_at timestamptz,
    suspended_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- Browser sessions and API login sessions. Only the SHA-256 of the token is stored.
CREATE TABLE sessions (
    token_hash   bytea PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('browser', 'api')),
    user_agent   text,
    ip           text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expiry_idx ON sessions (expires_at);

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         text NOT NULL,
    token_hash   bytea NOT NULL UNIQUE,
    -- the first characters, shown in lists so a user can tell tokens apart
    prefix       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

-- One-time links sent by mail: email verification and password reset.
CREATE TABLE email_tokens (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('verify', 'reset')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX email_tokens_user_idx ON email_tokens (user_id, purpose);

CREATE TABLE mail_outbox (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    to_address  text NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL,
    transport   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    error       text
);
CREATE INDEX mail_outbox_created_idx ON mail_outbox (created_at DESC);

CREATE TABLE templates (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL,
    summary     text NOT NULL,
    description text NOT NULL,
    category    text NOT NULL,
    -- [{ "name": "...", "source": "image|database|directory|git", "image": "...", "port": 5432, ... }]
    services    jsonb NOT NULL DEFAULT '[]',
    -- [{ "service": "...", "name": "...", "value": "...", "description": "..." }]
    variables   jsonb NOT NULL DEFAULT '[]',
    cpu_millis  int NOT NULL DEFAULT 500,
    memory_mb   int NOT NULL DEFAULT 512,
    deploy_count int NOT NULL DEFAULT 0,
    published   boolean NOT NULL DEFAULT false,
    featured    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX projects_owner_name_key ON projects (owner_id, lower(name));

CREATE TABLE environments (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);

-- Every privileged or destructive action.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    actor_id   uuid REFERENCES users(id) ON DELETE SET NULL,
    action     text NOT NULL,
    target     text NOT NULL,
    details    jsonb NOT NULL DEFAULT '{}',
    ip         text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_created_idx ON audit_log (created_at DESC);
