-- Templates made and edited in the admin panel: each version keeps the text the admin wrote
-- (comments and all), and deploys are recorded so popularity counts people, not clicks.
ALTER TABLE template_versions ADD COLUMN source text;

-- One row per template deploy. `templates.deploy_count` is the number of distinct users who
-- deployed the template, so one account deploying it again and again does not move it up.
CREATE TABLE template_deploys (
    id          bigserial PRIMARY KEY,
    template_id uuid NOT NULL REFERENCES templates(id) ON DELETE CASCADE,
    version     int NOT NULL,
    user_id     uuid REFERENCES users(id) ON DELETE SET NULL,
    project_id  uuid REFERENCES projects(id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX template_deploys_template_user_idx ON template_deploys (template_id, user_id);
