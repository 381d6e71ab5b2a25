-- A command run once before each deployment of a service takes traffic (migrations and the
-- like); a failure fails the deployment and the running one keeps serving.
ALTER TABLE services ADD COLUMN pre_deploy_command text;
