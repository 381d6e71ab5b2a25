-- Tenant isolation a second time, under the owner-scoped queries: row-level security on every
-- table that belongs to a user, so that a query which forgets its owner filter still returns
-- and changes nothing of another tenant's.
--
-- A signed-in user's request runs its queries as the role `roundhouse_tenant`, with the
-- session setting `roundhouse.actor` holding the user's id; the platform's connection pool
-- switches to them each time it hands out a connection for such a request, and back for
-- anything else (app/src/infra/actor.rs). Policies apply to that role only:
-- - a user's request sees and writes only that user's rows;
-- - the role with no (or a malformed) actor sees no tenant rows at all;
-- - the platform's own work (the reconciler, metering, billing, maintenance), administrators on
--   admin pages, and requests from no one (sign-up, password resets, payment webhooks, which
--   act on accounts by design) run as the login role, which owns the tables: no policy applies
--   to it, explicitly so. Foreign-key checks and cascades bypass policies too, by design.
-- (A superuser bypasses row-level security whatever the policies say: hence a role of its own
-- rather than policies on the login role.)
--
-- Creating the role needs CREATEROLE (or a superuser). Where the platform's database user may
-- not, a DBA runs the two statements below once, and this migration finds the role there.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'roundhouse_tenant') THEN
        BEGIN
            CREATE ROLE roundhouse_tenant NOLOGIN NOINHERIT;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL; -- another database's migration made it
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'Roundhouse needs the role roundhouse_tenant for row-level security, and % may not create roles', current_user
                    USING HINT = format('As a superuser: CREATE ROLE roundhouse_tenant NOLOGIN NOINHERIT; GRANT roundhouse_tenant TO %I;', current_user);
        END;
    END IF;
END
$$;
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'roundhouse_tenant', 'MEMBER') THEN
        EXECUTE format('GRANT roundhouse_tenant TO %I', current_user);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO roundhouse_tenant;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO roundhouse_tenant;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO roundhouse_tenant;
REVOKE ALL ON _sqlx_migrations FROM roundhouse_tenant;
-- Tables of later migrations too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO roundhouse_tenant;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO roundhouse_tenant;

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
CREATE POLICY own ON projects TO roundhouse_tenant USING (owner_id = rh_actor());
ALTER TABLE usage_records ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON usage_records TO roundhouse_tenant USING (owner_id = rh_actor());
ALTER TABLE meter_reports ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON meter_reports TO roundhouse_tenant USING (owner_id = rh_actor());
ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON invoices TO roundhouse_tenant USING (user_id = rh_actor());
ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON api_tokens TO roundhouse_tenant USING (user_id = rh_actor());
ALTER TABLE usage_limits ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON usage_limits TO roundhouse_tenant USING (user_id = rh_actor());
ALTER TABLE usage_limit_alerts ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON usage_limit_alerts TO roundhouse_tenant USING (user_id = rh_actor());
ALTER TABLE usage_limit_stops ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON usage_limit_stops TO roundhouse_tenant USING (user_id = rh_actor());
ALTER TABLE plan_changes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON plan_changes TO roundhouse_tenant USING (user_id = rh_actor());

-- Owned through their invoice, project, environment, service or deployment. Each subquery is
-- run once per statement (a hashed subplan), not per row.
ALTER TABLE invoice_lines ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON invoice_lines TO roundhouse_tenant USING (invoice_id IN (SELECT id FROM invoices WHERE user_id = rh_actor()));

CREATE VIEW rh_own_environments WITH (security_invoker) AS
    SELECT e.id FROM environments e JOIN projects p ON p.id = e.project_id WHERE p.owner_id = rh_actor();
CREATE VIEW rh_own_services WITH (security_invoker) AS
    SELECT s.id FROM services s JOIN environments e ON e.id = s.environment_id JOIN projects p ON p.id = e.project_id
    WHERE p.owner_id = rh_actor();
CREATE VIEW rh_own_deployments WITH (security_invoker) AS
    SELECT d.id FROM deployments d JOIN services s ON s.id = d.service_id JOIN environments e ON e.id = s.environment_id
    JOIN projects p ON p.id = e.project_id WHERE p.owner_id = rh_actor();
GRANT SELECT ON rh_own_environments, rh_own_services, rh_own_deployments TO roundhouse_tenant;

ALTER TABLE environments ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON environments TO roundhouse_tenant USING (project_id IN (SELECT id FROM projects WHERE owner_id = rh_actor()));
ALTER TABLE services ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON services TO roundhouse_tenant USING (environment_id IN (SELECT id FROM rh_own_environments));
ALTER TABLE variables ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON variables TO roundhouse_tenant USING (environment_id IN (SELECT id FROM rh_own_environments));
ALTER TABLE deployments ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON deployments TO roundhouse_tenant USING (service_id IN (SELECT id FROM rh_own_services));
ALTER TABLE service_metrics ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON service_metrics TO roundhouse_tenant USING (service_id IN (SELECT id FROM rh_own_services));
ALTER TABLE source_uploads ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON source_uploads TO roundhouse_tenant USING (service_id IN (SELECT id FROM rh_own_services));
ALTER TABLE service_dependencies ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON service_dependencies TO roundhouse_tenant USING (service_id IN (SELECT id FROM rh_own_services));
ALTER TABLE deployment_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON deployment_events TO roundhouse_tenant USING (deployment_id IN (SELECT id FROM rh_own_deployments));
ALTER TABLE deployment_logs ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON deployment_logs TO roundhouse_tenant USING (deployment_id IN (SELECT id FROM rh_own_deployments));
ALTER TABLE instances ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON instances TO roundhouse_tenant USING (deployment_id IN (SELECT id FROM rh_own_deployments));
ALTER TABLE cron_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON cron_runs TO roundhouse_tenant USING (deployment_id IN (SELECT id FROM rh_own_deployments));
ALTER TABLE deployment_log_usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON deployment_log_usage TO roundhouse_tenant USING (deployment_id IN (SELECT id FROM rh_own_deployments));
