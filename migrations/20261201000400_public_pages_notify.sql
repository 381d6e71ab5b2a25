-- The public pages (pricing, the template catalogue, each template's page) are rendered once
-- for every signed-out visitor and kept in memory by each replica (server/src/page_cache.rs).
-- Whatever changes what they show — from the admin panel, the API, a seed, a deploy count —
-- tells every replica so, in the same transaction.
CREATE FUNCTION notify_public_pages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rh_public_pages', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER templates_public_pages AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON templates
    FOR EACH STATEMENT EXECUTE FUNCTION notify_public_pages();
CREATE TRIGGER plans_public_pages AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plans
    FOR EACH STATEMENT EXECUTE FUNCTION notify_public_pages();
