//! Deploying a template: check the inputs, the runtime and the plan, create every service,
//! variable and sample source in one transaction, then queue the deployments in dependency
//! order. Nothing is created when any check fails.

use super::{bundled, generate, Condition, validate::shared_input, TemplateDeployRequest, DeployedService, InputKind, ServiceSpec, Source, Spec, TemplateDeployment};
use crate::{
    auth::User,
    deployments,
    error::{AppError, AppResult},
    infra::{config::RuntimeKind, AppState},
    services::{self, RestartPolicy, ServiceInput, SourceKind},
    variables::{self, template},
};
use rand::Rng;
use sqlx::types::Json;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The template's input values: the user's (checked by type), defaults, and generated ones.
fn input_values(spec: &Spec, given: &BTreeMap<String, String>) -> AppResult<BTreeMap<String, (String, bool)>> {
    for name in given.keys() {
        match spec.inputs.iter().find(|i| &i.name == name) {
            None => return Err(AppError::validation(&format!("inputs.{name}"), format!("This template has no input named {name}."))),
            Some(i) if i.is_generated() => {
                return Err(AppError::validation(&format!("inputs.{name}"), format!("{name} is generated at deploy; it cannot be given.")))
            }
            Some(_) => {}
        }
    }
    let mut out = BTreeMap::new();
    for input in spec.asked() {
        let field = format!("inputs.{}", input.name);
        let value = given.get(&input.name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).or_else(|| input.default.clone());
        let Some(value) = value else {
            if input.required {
                return Err(AppError::validation(&field, format!("{} is required: {}", input.name, input.description)));
            }
            out.insert(input.name.clone(), (String::new(), input.secret));
            continue;
        };
        let ok = match input.kind.unwrap_or(InputKind::String) {
            InputKind::String => !value.chars().any(|c| c.is_control() && c != '\n'),
            InputKind::Email => crate::domain::Email::parse(&value).is_ok(),
            InputKind::Url => value.starts_with("https://") || value.starts_with("http://") || value.starts_with("ssh://") || value.starts_with("git@"),
            InputKind::Number => value.parse::<f64>().is_ok_and(f64::is_finite),
            InputKind::Boolean => matches!(value.as_str(), "true" | "false"),
        };
        if !ok || value.len() > 4096 {
            let kind = format!("{:?}", input.kind.unwrap_or(InputKind::String)).to_lowercase();
            return Err(AppError::validation(&field, format!("{} must be a valid {kind} (at most 4 KB).", input.name)));
        }
        out.insert(input.name.clone(), (value, input.secret));
    }
    let generated = generate::generate_all(&spec.inputs, &mut rand::rngs::OsRng, chrono::Utc::now().timestamp()).map_err(|_| AppError::Internal)?;
    out.extend(generated.into_iter().map(|(k, v)| (k, (v, true))));
    Ok(out)
}

/// A template service as the service settings the platform stores.
fn service_input(s: &ServiceSpec, environment_id: Uuid, inputs: &BTreeMap<String, (String, bool)>) -> AppResult<ServiceInput> {
    let (kind, source) = match &s.source {
        Source::Database { engine } => (SourceKind::Database, engine.clone()),
        Source::Git { repo, .. } => {
            let repo = match shared_input(repo) {
                Some(name) => inputs.get(name).map(|(v, _)| v.clone()).unwrap_or_default(),
                None => repo.clone(),
            };
            (SourceKind::Git, repo)
        }
        Source::Image { image, tag } => (SourceKind::Image, format!("{image}:{tag}")),
        Source::Sample { .. } => (SourceKind::Upload, String::new()),
    };
    let health = s.healthcheck.as_ref().filter(|h| h.http.is_some());
    Ok(ServiceInput {
        name: Some(s.name.clone()),
        environment_id: Some(environment_id),
        source_kind: Some(kind),
        source: Some(source),
        build_command: s.build.clone(),
        start_command: s.start.clone(),
        port: s.port.map(u32::from),
        replicas: Some(s.replicas as i32),
        cpu_millis: s.cpu_millis.map(|c| c as i32),
        memory_mb: s.memory_mb.map(|m| m as i32),
        healthcheck_path: health.and_then(|h| h.http.clone()),
        healthcheck_timeout_secs: health.map(|h| h.timeout_secs as i32),
        restart_policy: s.restart.map(|r| match r {
            super::Restart::Always => RestartPolicy::Always,
            super::Restart::OnFailure => RestartPolicy::OnFailure,
            super::Restart::Never => RestartPolicy::Never,
        }),
        restart_max: None,
        max_processes: None,
        volume_path: s.volumes.first().map(|v| v.mount.clone()),
        cron_schedule: s.cron.clone(),
        pre_deploy_command: s.pre_deploy.clone(),
    })
}

/// The project and environment to deploy into: the caller's, or a new project.
async fn target(state: &AppState, owner: &User, spec: &Spec, req: &TemplateDeployRequest) -> AppResult<(Uuid, Uuid, bool)> {
    let db = &state.db;
    let (project_id, created) = match req.project_id {
        Some(id) => (crate::projects::service::get(db, owner.id, id).await?.id, false),
        None => {
            let name = req.project_name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| spec.template.name.clone());
            (crate::projects::service::create(db, owner, &name, &spec.template.summary).await?.id, true)
        }
    };
    let environment = services::service::owned_environment(db, owner.id, project_id, req.environment_id).await?;
    Ok((project_id, environment.ok_or_else(|| AppError::not_found("Environment"))?, created))
}

/// The plan's room for the template's services in `project`; the message names the plan
/// that has room.
async fn check_plan(tx: &mut sqlx::PgConnection, owner: &User, project: Uuid, new: &[services::service::NewService]) -> AppResult<()> {
    use crate::billing::allowance::{self, Ask};
    // One template deploy (or service creation) at a time per owner, so the count holds.
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE").bind(owner.id).execute(&mut *tx).await?;
    let adding = new.len() as i64;
    let ask = Ask {
        services_in_project: allowance::services_in_project(&mut *tx, project).await? + adding,
        adding,
        replicas: new.iter().map(|s| s.replicas()).max().unwrap_or(1),
        memory_mb: new.iter().map(|s| s.memory_mb()).max().unwrap_or(0),
        cpu_millis: new.iter().map(|s| s.cpu_millis()).max().unwrap_or(0),
    };
    allowance::check(tx, owner.id, ask).await
}

/// Every environment of `owner`'s projects, newest project first, production first.
pub async fn targets(db: &sqlx::PgPool, owner: Uuid) -> AppResult<Vec<super::DeployTarget>> {
    let rows: Vec<(Uuid, String, Uuid, String)> = sqlx::query_as(
        "SELECT p.id, p.name, e.id, e.name FROM projects p JOIN environments e ON e.project_id = p.id
         WHERE p.owner_id = $1 ORDER BY p.updated_at DESC, p.id, e.name <> 'production', e.name",
    )
    .bind(owner)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(project_id, project, environment_id, environment)| super::DeployTarget { project_id, project, environment_id, environment })
        .collect())
}

/// Deploys the published template `slug` for `owner`.
pub async fn deploy(state: &AppState, owner: &User, slug: &str, req: &TemplateDeployRequest) -> AppResult<TemplateDeployment> {
    let db = &state.db;
    let (template_id, version, Json(spec)): (Uuid, i32, Json<Spec>) =
        sqlx::query_as("SELECT id, version, spec FROM templates WHERE slug = $1 AND published")
            .bind(slug)
            .fetch_optional(db)
            .await?
            .ok_or_else(|| AppError::not_found("Template"))?;
    if req.project_id.is_none() && req.environment_id.is_some() {
        return Err(AppError::validation("environment_id", "Name the project the environment belongs to (project_id)."));
    }
    let inputs = input_values(&spec, &req.inputs)?;
    if state.config.runtime == RuntimeKind::Local {
        let blockers = spec.local_blockers();
        if !blockers.is_empty() {
            return Err(AppError::validation(
                "template",
                format!("This platform runs services on its local runtime, which cannot run this template: {}.", blockers.join("; ")),
            ));
        }
    }
    deployments::service::admit_owner(state, owner)?;
    let order = spec.deploy_order().ok_or_else(|| AppError::validation("template", "This template's services need each other in a cycle."))?;
    let (project_id, environment_id, new_project) = target(state, owner, &spec, req).await?;
    let created = match create_all(state, owner, (template_id, version, project_id), &order, environment_id, &inputs).await {
        Ok(c) => c,
        Err(e) => {
            if new_project {
                let _ = crate::projects::service::delete(db, owner.id, project_id, "template-deploy").await;
            }
            return Err(e);
        }
    };
    // Queued in dependency order; a service whose deployment cannot be queued says why, and
    // the rest still go ahead.
    let mut out = Vec::with_capacity(created.len());
    for (service_id, name) in created {
        let (deployment, error) = match deployments::service::deploy(state, owner.id, service_id).await {
            Ok(d) => (Some(d), None),
            Err(e) => (None, Some(e.to_string())),
        };
        out.push(DeployedService { service_id, name, deployment, error });
    }
    tracing::info!(template = slug, %project_id, services = out.len(), "template deployed");
    Ok(TemplateDeployment { project_id, environment_id, services: out })
}

/// Every service, variable and sample source of the template in one transaction.
async fn create_all(
    state: &AppState,
    owner: &User,
    (template_id, version, project_id): (Uuid, i32, Uuid),
    order: &[&ServiceSpec],
    environment_id: Uuid,
    inputs: &BTreeMap<String, (String, bool)>,
) -> AppResult<Vec<(Uuid, String)>> {
    let prepared = order
        .iter()
        .map(|s| services::service::prepare(&state.config, owner, &service_input(s, environment_id, inputs)?))
        .collect::<AppResult<Vec<_>>>()?;
    let mut tx = state.db.begin().await?;
    check_plan(&mut tx, owner, project_id, &prepared).await?;
    let shared = variables::service::Scope { environment_id, service_id: None };
    for (name, (value, secret)) in inputs {
        variables::service::insert_new(&mut tx, &state.secrets, shared, name, value, *secret).await?;
    }
    let mut created = Vec::with_capacity(order.len());
    for (spec, new) in order.iter().zip(&prepared) {
        let id = services::service::insert(&mut tx, environment_id, new).await?;
        let scope = variables::service::Scope { environment_id, service_id: Some(id) };
        for (name, raw) in &spec.env {
            // Generators in a value (`${{secret(32)}}`) run once, now, like a saved variable.
            let generated = template::parse(raw).is_ok_and(|parts| parts.iter().any(|p| matches!(p, template::Part::Gen(_))));
            let mut rng = rand::rngs::OsRng;
            let value = template::expand_generators(raw, |n| rng.gen_range(0..n)).map_err(|e| AppError::validation(&format!("env.{name}"), e.to_string()))?;
            variables::service::insert_new(&mut tx, &state.secrets, scope, name, &value, generated).await?;
        }
        if let Source::Sample { name } = &spec.source {
            let archive = bundled::sample_archive(name).ok_or(AppError::Internal)?;
            let limits = services::upload::Limits::from_config(&state.config);
            let summary = services::upload::inspect(&archive, &limits).map_err(|e| AppError::validation("source", e.to_string()))?;
            services::upload::record(&mut tx, owner.id, id, &archive, &summary).await?;
        }
        created.push((id, spec.name.clone()));
    }
    // Declared dependencies: the reconciler starts a service after them (server/src/waits.rs).
    for spec in order {
        let Some(&(id, _)) = created.iter().find(|(_, n)| n == &spec.name) else { continue };
        for dep in &spec.depends_on {
            let Some(&(on, _)) = created.iter().find(|(_, n)| n == &dep.service) else { continue };
            let condition = match dep.condition {
                Condition::Started => "started",
                Condition::Healthy => "healthy",
            };
            sqlx::query("INSERT INTO service_dependencies (service_id, depends_on_id, condition) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(on)
                .bind(condition)
                .execute(&mut *tx)
                .await?;
        }
    }
    // Popularity counts people: a deploy by someone who deployed this template before is
    // recorded but does not move it up the catalogue.
    let first: bool = sqlx::query_scalar(
        "WITH earlier AS (SELECT 1 FROM template_deploys WHERE template_id = $1 AND user_id = $3 LIMIT 1),
              added AS (INSERT INTO template_deploys (template_id, version, user_id, project_id) VALUES ($1, $2, $3, $4))
         SELECT NOT EXISTS (SELECT 1 FROM earlier)",
    )
    .bind(template_id)
    .bind(version)
    .bind(owner.id)
    .bind(project_id)
    .fetch_one(&mut *tx)
    .await?;
    if first {
        sqlx::query("UPDATE templates SET deploy_count = deploy_count + 1 WHERE id = $1").bind(template_id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra_inputs: &str) -> Spec {
        toml::from_str(&format!(
            r#"version = 1
            services = []
            [template]
            slug = "t"
            name = "T"
            summary = "s"
            category = "c"
            {extra_inputs}"#
        ))
        .unwrap()
    }

    #[test]
    fn inputs_are_checked_defaulted_and_generated() {
        let s = spec(
            r#"[[inputs]]
            name = "EMAIL"
            type = "email"
            required = true
            [[inputs]]
            name = "GREETING"
            default = "hi"
            [[inputs]]
            name = "KEY"
            generate = { kind = "hex", length = 16 }"#,
        );
        let given = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let missing = input_values(&s, &given(&[])).unwrap_err();
        assert_eq!(missing.field(), Some("inputs.EMAIL"));
        let bad = input_values(&s, &given(&[("EMAIL", "not an email")])).unwrap_err();
        assert_eq!(bad.field(), Some("inputs.EMAIL"));
        let unknown = input_values(&s, &given(&[("EMAIL", "a@b.co"), ("NOPE", "x")])).unwrap_err();
        assert_eq!(unknown.field(), Some("inputs.NOPE"));
        let forced = input_values(&s, &given(&[("EMAIL", "a@b.co"), ("KEY", "mine")])).unwrap_err();
        assert_eq!(forced.field(), Some("inputs.KEY"));
        let ok = input_values(&s, &given(&[("EMAIL", "a@b.co")])).unwrap();
        assert_eq!(ok["EMAIL"], ("a@b.co".to_string(), false));
        assert_eq!(ok["GREETING"], ("hi".to_string(), false));
        assert_eq!(ok["KEY"].0.len(), 16);
        assert!(ok["KEY"].1, "generated values are secret");
    }
}
