-- Tenant isolation a second time, under the owner-scoped queries: row-level security on every
-- table that belongs to a user, so that a query which forgets its owner filter still returns
-- and changes nothing of another tenant's.
--
-- A signed-in user's request runs its queries as this database's tenant role (named by
-- `rh_tenant_role()`: `roundhouse_tenant_` and a hash of the database's name, so that a role
-- granted for one Roundhouse database opens no other on the same cluster), with the session
-- setting `roundhouse.actor` holding the user's id; the platform's connection pool switches
-- to them each time it hands out a connection for such a request, and back for anything else
-- (app/src/infra/actor.rs). Policies apply to every role but the tables' owner:
-- - a user's request sees and writes only that user's rows;
-- - with no (or a malformed) actor, no tenant rows at all;
-- - the platform's own work (the reconciler, metering, billing, maintenance), administrators on
--   admin pages, and requests from no one or acting on an account named by a checked link
--   (sign-up, password resets, payment webhooks) run as the login role, which owns the tables:
--   no policy applies to it, explicitly so. Foreign-key checks and cascades bypass policies too.
-- (A superuser bypasses row-level security whatever the policies say: hence a role of its own
-- rather than FORCE on the login role.) The platform must connect as the tables' owner; a
-- restore with `--no-owner` into another role's tables would hide every tenant row from it.
--
-- Creating the role needs CREATEROLE (or a superuser). Where the platform's database user may
-- not, a DBA creates it once (the error says how), and this migration finds it there.

DO $$
DECLARE
    tenant text := 'roundhouse_tenant_' || left(md5(current_database()), 12);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = tenant) THEN
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', tenant);
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL; -- made meanwhile
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'Roundhouse needs the role % for row-level security, and % may not create roles', tenant, current_user
                    USING HINT = format('As a superuser: CREATE ROLE %I NOLOGIN NOINHERIT; GRANT %I TO %I;', tenant, tenant, current_user);
        END;
    END IF;
    IF NOT pg_has_role(current_user, tenant, 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', tenant, current_user);
    END IF;
    EXECUTE format('CREATE FUNCTION rh_tenant_role() RETURNS text LANGUAGE sql IMMUTABLE AS %L', format('SELECT %L::text', tenant));
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', tenant);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %I', tenant);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I', tenant);
    EXECUTE format('REVOKE ALL ON _sqlx_migrations FROM %I', tenant);
    -- Tables of later migrations too.
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', tenant);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO %I', tenant);
END
$$;

-- Triggers that keep the platform's books look past the policies (they run as the tables'
-- owner): a new project's slug must be unique across every tenant's, and deleting a user's
-- deployments must delete their lines even once the deployments are gone from the user's view.
ALTER FUNCTION roundhouse_project_slug() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION delete_logs_of_deleted_deployments() SECURITY DEFINER SET search_path = public, pg_temp;

-- The user a request is served for, or NULL (no rows).
CREATE FUNCTION rh_actor() RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN current_setting('roundhouse.actor', true) ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN current_setting('roundhouse.actor', true)::uuid END
$$;

-- Owned directly.
ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON projects USING (owner_id = rh_actor());
ALTER TABLE usage_records ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON usage_records USING (owner_id = rh_actor());
ALTER TABLE meter_reports ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON meter_reports USING (owner_id = rh_actor());
ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON invoices USING (user_id = rh_actor());
ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON api_tokens USING (user_id = rh_actor());
ALTER TABLE usage_limits ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON usage_limits USING (user_id = rh_actor());
ALTER TABLE usage_limit_alerts ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON usage_limit_alerts USING (user_id = rh_actor());
ALTER TABLE usage_limit_stops ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON usage_limit_stops USING (user_id = rh_actor());
ALTER TABLE plan_changes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON plan_changes USING (user_id = rh_actor());

-- Owned through their invoice, project, environment, service or deployment. Each subquery is
-- run once per statement (a hashed subplan), not per row.
ALTER TABLE invoice_lines ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON invoice_lines USING (invoice_id IN (SELECT id FROM invoices WHERE user_id = rh_actor()));

CREATE VIEW rh_own_environments WITH (security_invoker) AS
    SELECT e.id FROM environments e JOIN projects p ON p.id = e.project_id WHERE p.owner_id = rh_actor();
CREATE VIEW rh_own_services WITH (security_invoker) AS
    SELECT s.id FROM services s JOIN environments e ON e.id = s.environment_id JOIN projects p ON p.id = e.project_id
    WHERE p.owner_id = rh_actor();
CREATE VIEW rh_own_deployments WITH (security_invoker) AS
    SELECT d.id FROM deployments d JOIN services s ON s.id = d.service_id JOIN environments e ON e.id = s.environment_id
    JOIN projects p ON p.id = e.project_id WHERE p.owner_id = rh_actor();

ALTER TABLE environments ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON environments USING (project_id IN (SELECT id FROM projects WHERE owner_id = rh_actor()));
ALTER TABLE services ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON services USING (environment_id IN (SELECT id FROM rh_own_environments));
ALTER TABLE variables ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON variables USING (environment_id IN (SELECT id FROM rh_own_environments));
ALTER TABLE deployments ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON deployments USING (service_id IN (SELECT id FROM rh_own_services));
ALTER TABLE service_metrics ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON service_metrics USING (service_id IN (SELECT id FROM rh_own_services));
ALTER TABLE source_uploads ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON source_uploads USING (service_id IN (SELECT id FROM rh_own_services));
ALTER TABLE service_dependencies ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON service_dependencies USING (service_id IN (SELECT id FROM rh_own_services));
ALTER TABLE deployment_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON deployment_events USING (deployment_id IN (SELECT id FROM rh_own_deployments));
ALTER TABLE deployment_logs ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON deployment_logs USING (deployment_id IN (SELECT id FROM rh_own_deployments));
ALTER TABLE instances ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON instances USING (deployment_id IN (SELECT id FROM rh_own_deployments));
ALTER TABLE cron_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON cron_runs USING (deployment_id IN (SELECT id FROM rh_own_deployments));
ALTER TABLE deployment_log_usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON deployment_log_usage USING (deployment_id IN (SELECT id FROM rh_own_deployments));
