//! What resolution needs about one environment at deploy time: every service's variables with
//! its built-ins, the shared variables, and the values to redact from logs.

use crate::{
    error::{AppError, AppResult},
    infra::{secretbox::SecretBox, Addressing, Config},
    services::SourceKind,
    variables::{resolve, service as vars},
};
use rand::Rng;
use sqlx::PgPool;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct ServiceMeta {
    pub id: Uuid,
    pub name: String,
    pub kind: SourceKind,
    pub source: String,
    pub private_port: u16,
    /// The port it says it listens on, if it says.
    pub port: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct DeployEnvironment {
    pub environment_id: Uuid,
    pub project_id: Uuid,
    pub project_name: String,
    pub project_slug: String,
    pub environment_name: String,
    pub services: Vec<ServiceMeta>,
    pub env: resolve::Environment,
    /// Values never to show in logs: secret variables and generated passwords.
    pub secrets: BTreeSet<String>,
}

impl DeployEnvironment {
    pub fn service(&self, id: Uuid) -> Option<&ServiceMeta> {
        self.services.iter().find(|s| s.id == id)
    }

    /// The resolved variables of one service, or the resolution error (a cycle with its path,
    /// a missing name) as a message for the user.
    pub fn resolve(&self, service_id: Uuid) -> Result<BTreeMap<String, String>, String> {
        let meta = self.service(service_id).ok_or("The service is gone.")?;
        resolve::check(&self.env).map_err(|e| e.to_string())?;
        resolve::resolve_service(&self.env, &meta.name).map_err(|e| e.to_string())
    }
}

/// Gives every service of the environment its stable private port, picked at random from the
/// configured range among the ports no other service holds.
pub async fn assign_private_ports(db: &PgPool, config: &Config, environment_id: Uuid) -> AppResult<()> {
    let missing: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM services WHERE environment_id = $1 AND private_port IS NULL")
        .bind(environment_id)
        .fetch_all(db)
        .await?;
    let (low, high) = config.private_ports;
    for id in missing {
        let mut assigned = false;
        for _ in 0..50 {
            let port = rand::thread_rng().gen_range(low..=high) as i32;
            let r = sqlx::query("UPDATE services SET private_port = $2 WHERE id = $1 AND private_port IS NULL")
                .bind(id)
                .bind(port)
                .execute(db)
                .await;
            match r {
                Ok(_) => {
                    assigned = true;
                    break;
                }
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if !assigned {
            tracing::error!(service_id = %id, "no free private port in ROUNDHOUSE_PRIVATE_PORTS");
            return Err(AppError::Internal);
        }
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct ServiceRow {
    id: Uuid,
    name: String,
    source_kind: String,
    source: String,
    private_port: Option<i32>,
    port: Option<i32>,
}

/// The built-in variables of a service. User variables of the same name override them.
pub fn builtins(config: &Config, sb: &SecretBox, s: &ServiceMeta, project: (&str, &str), environment: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let (project_name, project_slug) = project;
    let mut v = BTreeMap::new();
    let mut secrets = Vec::new();
    let mut put = |k: &str, val: String| {
        v.insert(k.to_string(), val);
    };
    // Where the others reach it: on the platform's machine, its private port on the loopback
    // of its environment's network; in a cluster, its Service, named as it is.
    let (host, port) = match config.runtime.addressing() {
        Addressing::Loopback => ("127.0.0.1".to_string(), s.private_port),
        Addressing::ServiceName => {
            let port = match s.kind {
                SourceKind::Database => crate::services::engine_port(&s.source).unwrap_or(s.private_port),
                _ => s.port.unwrap_or(8080),
            };
            (crate::services::dns_name(&s.name), port)
        }
    };
    put("PORT", port.to_string());
    put("ROUNDHOUSE_SERVICE_NAME", s.name.clone());
    put("ROUNDHOUSE_PROJECT_NAME", project_name.to_string());
    put("ROUNDHOUSE_ENVIRONMENT_NAME", environment.to_string());
    put("ROUNDHOUSE_PUBLIC_URL", config.service_url(&s.name, environment, project_slug));
    put("ROUNDHOUSE_PRIVATE_DOMAIN", format!("{host}:{port}"));
    put("ROUNDHOUSE_PRIVATE_HOST", host.clone());
    if s.kind == SourceKind::Database {
        let password = sb.derive(&format!("{}:{}", s.source, s.id));
        secrets.push(password.clone());
        match s.source.as_str() {
            "postgres" => {
                put("PGHOST", host.clone());
                put("PGPORT", "${{PORT}}".into());
                put("PGUSER", "postgres".into());
                put("PGPASSWORD", password);
                put("PGDATABASE", "postgres".into());
                put("DATABASE_URL", "postgresql://${{PGUSER}}:${{PGPASSWORD}}@${{PGHOST}}:${{PGPORT}}/${{PGDATABASE}}".into());
            }
            "redis" => {
                put("REDISHOST", host.clone());
                put("REDISPORT", "${{PORT}}".into());
                put("REDISUSER", "default".into());
                put("REDISPASSWORD", password);
                put("REDIS_URL", "redis://${{REDISUSER}}:${{REDISPASSWORD}}@${{REDISHOST}}:${{REDISPORT}}".into());
            }
            _ => {}
        }
    }
    (v, secrets)
}

/// Loads the environment for resolution. Call `assign_private_ports` first.
pub async fn load(db: &PgPool, sb: &SecretBox, config: &Config, environment_id: Uuid) -> AppResult<DeployEnvironment> {
    let (project_id, project_name, project_slug, environment_name): (Uuid, String, String, String) = sqlx::query_as(
        "SELECT p.id, p.name, p.slug, e.name FROM environments e JOIN projects p ON p.id = e.project_id WHERE e.id = $1",
    )
    .bind(environment_id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| AppError::not_found("Environment"))?;
    let rows: Vec<ServiceRow> = sqlx::query_as(
        "SELECT id, name, source_kind, source, private_port, port FROM services WHERE environment_id = $1 ORDER BY name",
    )
    .bind(environment_id)
    .fetch_all(db)
    .await?;
    let mut out = DeployEnvironment {
        environment_id,
        project_id,
        project_name,
        project_slug,
        environment_name,
        services: Vec::new(),
        env: resolve::Environment::default(),
        secrets: BTreeSet::new(),
    };
    for r in &rows {
        let meta = ServiceMeta {
            id: r.id,
            name: r.name.clone(),
            kind: SourceKind::parse(&r.source_kind).unwrap_or(SourceKind::Directory),
            source: r.source.clone(),
            private_port: r.private_port.unwrap_or(0) as u16,
            port: r.port.and_then(|p| u16::try_from(p).ok()),
        };
        let (vars, secrets) = builtins(config, sb, &meta, (&out.project_name, &out.project_slug), &out.environment_name);
        out.secrets.extend(secrets);
        out.env.services.insert(meta.name.clone(), vars);
        out.services.push(meta);
    }
    for v in vars::environment_values(db, sb, environment_id).await? {
        if v.secret {
            out.secrets.insert(v.value.clone());
        }
        match v.service_id {
            None => {
                out.env.shared.insert(v.name, v.value);
            }
            Some(id) => {
                if let Some(meta) = out.services.iter().find(|s| s.id == id) {
                    out.env.services.entry(meta.name.clone()).or_default().insert(v.name, v.value);
                }
            }
        }
    }
    // Redacting very short values would blank ordinary words out of the logs.
    out.secrets.retain(|s| s.len() >= 4);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::RuntimeKind;

    fn meta(kind: SourceKind, source: &str, port: Option<u16>) -> ServiceMeta {
        ServiceMeta { id: Uuid::from_u128(1), name: "db".into(), kind, source: source.into(), private_port: 21234, port }
    }

    #[test]
    fn services_are_addressed_where_their_runtime_puts_them() {
        let sb = SecretBox::new(&[7u8; 32]);
        let mut config = Config::for_tests("postgres://unused");
        config.runtime = RuntimeKind::Local;
        let (local, _) = builtins(&config, &sb, &meta(SourceKind::Database, "postgres", None), ("Shop", "shop"), "production");
        assert_eq!((local["PGHOST"].as_str(), local["PORT"].as_str()), ("127.0.0.1", "21234"));
        assert_eq!(local["ROUNDHOUSE_PRIVATE_DOMAIN"], "127.0.0.1:21234");
        config.runtime = RuntimeKind::Kubernetes;
        let (cluster, _) = builtins(&config, &sb, &meta(SourceKind::Database, "postgres", None), ("Shop", "shop"), "production");
        assert_eq!((cluster["PGHOST"].as_str(), cluster["PORT"].as_str()), ("db", "5432"), "its Service, at the engine's port");
        let (web, _) = builtins(&config, &sb, &meta(SourceKind::Image, "ghcr.io/acme/web:1", Some(3000)), ("Shop", "shop"), "production");
        assert_eq!(web["ROUNDHOUSE_PRIVATE_DOMAIN"], "db:3000");
        assert_eq!(web["ROUNDHOUSE_PRIVATE_HOST"], "db");
    }
}
