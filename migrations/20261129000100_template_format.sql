-- Templates in the TOML format (docs/templates.md): the whole template is kept as `spec`
-- (its JSON form), with the columns the catalogue searches, filters and sorts by beside it.
-- The first six rows of the old, flat format are replaced by the bundled catalogue, which the
-- platform writes at start (server/src/seed.rs).
DELETE FROM templates;

ALTER TABLE templates
    DROP COLUMN services,
    DROP COLUMN variables,
    DROP COLUMN cpu_millis,
    DROP COLUMN memory_mb,
    ADD COLUMN spec     jsonb NOT NULL,
    ADD COLUMN tags     text[] NOT NULL DEFAULT '{}',
    -- the tags as words, for the search vector (array_to_string is not immutable)
    ADD COLUMN keywords text NOT NULL DEFAULT '',
    ADD COLUMN readme   text NOT NULL DEFAULT '',
    -- bundled: shipped in templates/ (rewritten when the file changes); admin: made or imported
    -- in the admin panel (never touched by the bundled catalogue)
    ADD COLUMN origin   text NOT NULL DEFAULT 'bundled' CHECK (origin IN ('bundled', 'admin')),
    ADD COLUMN version  int NOT NULL DEFAULT 1,
    ADD COLUMN search   tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', name), 'A') ||
        setweight(to_tsvector('english', keywords), 'A') ||
        setweight(to_tsvector('english', category), 'B') ||
        setweight(to_tsvector('english', summary), 'B') ||
        setweight(to_tsvector('english', readme), 'D')
    ) STORED;

CREATE INDEX templates_search_idx ON templates USING gin (search);
CREATE INDEX templates_category_idx ON templates (category) WHERE published;

-- Every version a template has had, newest last: an edit never loses the one before.
CREATE TABLE template_versions (
    template_id uuid NOT NULL REFERENCES templates(id) ON DELETE CASCADE,
    version     int NOT NULL,
    spec        jsonb NOT NULL,
    created_by  uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, version)
);
