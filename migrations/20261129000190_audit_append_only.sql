-- The audit log is append-only: rows are never changed or removed, whoever asks. The one
-- change allowed is the one the foreign key makes when an account is deleted: its rows keep
-- their history and lose only the link to the account — and only once that account is gone
-- (the foreign key acts after its row is deleted), so nobody can erase who acted.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.actor_id IS NULL AND OLD.actor_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM users WHERE id = OLD.actor_id)
       AND (NEW.id, NEW.action, NEW.target, NEW.details, NEW.ip, NEW.created_at)
           IS NOT DISTINCT FROM (OLD.id, OLD.action, OLD.target, OLD.details, OLD.ip, OLD.created_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- A user's security log, and searches by target.
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, id DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target, id DESC);
