-- A service's declared dependencies (a template's `depends_on`): its deployment does not start
-- until each one has started (`started`) or is running and healthy (`healthy`); a `healthy`
-- dependency whose deployment failed fails the dependent one, naming it. Services also wait,
-- without failing, for the services their variables refer to.
CREATE TABLE service_dependencies (
    service_id    uuid NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    depends_on_id uuid NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    condition     text NOT NULL CHECK (condition IN ('started', 'healthy')),
    PRIMARY KEY (service_id, depends_on_id),
    CHECK (service_id <> depends_on_id)
);
CREATE INDEX service_dependencies_depends_on_idx ON service_dependencies (depends_on_id);
