-- instance_log_cursors is the platform's alone: the tenant role's default privileges
-- (20261130000220) cover new tables, so they are taken back here.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = rh_tenant_role()) THEN
        EXECUTE format('REVOKE ALL ON instance_log_cursors FROM %I', rh_tenant_role());
    END IF;
END $$;
