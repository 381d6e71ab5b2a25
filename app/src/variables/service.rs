use super::{template, SetVariable, Variable};
use crate::{
    audit,
    error::{AppError, AppResult},
    infra::secretbox::SecretBox,
};
use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::PgPool;
use uuid::Uuid;

pub const MAX_VALUE_BYTES: usize = 32 * 1024;
pub const MAX_VARIABLES_PER_SCOPE: i64 = 200;

/// Where a variable lives: a service, or the shared variables of an environment.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub environment_id: Uuid,
    pub service_id: Option<Uuid>,
}

/// The scope of a service, if `owner` owns it.
pub async fn service_scope(db: &PgPool, owner: Uuid, service_id: Uuid) -> AppResult<Scope> {
    let env: Option<Uuid> = sqlx::query_scalar(
        "SELECT s.environment_id FROM services s JOIN environments e ON e.id = s.environment_id
         JOIN projects p ON p.id = e.project_id WHERE s.id = $1 AND p.owner_id = $2",
    )
    .bind(service_id)
    .bind(owner)
    .fetch_optional(db)
    .await?;
    env.map(|environment_id| Scope { environment_id, service_id: Some(service_id) })
        .ok_or_else(|| AppError::not_found("Service"))
}

/// The shared scope of an environment, if `owner` owns it.
pub async fn environment_scope(db: &PgPool, owner: Uuid, environment_id: Uuid) -> AppResult<Scope> {
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM environments e JOIN projects p ON p.id = e.project_id WHERE e.id = $1 AND p.owner_id = $2",
    )
    .bind(environment_id)
    .bind(owner)
    .fetch_optional(db)
    .await?;
    found.map(|_| Scope { environment_id, service_id: None }).ok_or_else(|| AppError::not_found("Environment"))
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    name: String,
    value_sealed: Vec<u8>,
    secret: bool,
    service_id: Option<Uuid>,
    updated_at: DateTime<Utc>,
}

fn aad(id: Uuid) -> Vec<u8> {
    format!("variable:{id}").into_bytes()
}

fn open(sb: &SecretBox, row: &Row) -> AppResult<String> {
    sb.open(&row.value_sealed, &aad(row.id)).map_err(|e| {
        tracing::error!(variable_id = %row.id, error = %e, "a variable does not decrypt");
        AppError::Internal
    })
}

/// The variables of a scope; secret values masked.
pub async fn list(db: &PgPool, sb: &SecretBox, scope: Scope) -> AppResult<Vec<Variable>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, value_sealed, secret, service_id, updated_at FROM variables
         WHERE environment_id = $1 AND service_id IS NOT DISTINCT FROM $2 ORDER BY name",
    )
    .bind(scope.environment_id)
    .bind(scope.service_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Variable {
                id: r.id,
                name: r.name.clone(),
                value: if r.secret { None } else { Some(open(sb, r)?) },
                secret: r.secret,
                service_id: r.service_id,
                updated_at: r.updated_at,
            })
        })
        .collect()
}

/// Every value of a scope in the clear, for resolution at deploy time (never sent to a browser).
pub async fn values(db: &PgPool, sb: &SecretBox, scope: Scope) -> AppResult<std::collections::BTreeMap<String, String>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, value_sealed, secret, service_id, updated_at FROM variables
         WHERE environment_id = $1 AND service_id IS NOT DISTINCT FROM $2",
    )
    .bind(scope.environment_id)
    .bind(scope.service_id)
    .fetch_all(db)
    .await?;
    rows.iter().map(|r| Ok((r.name.clone(), open(sb, r)?))).collect()
}

/// One decrypted variable of an environment, for deploy-time resolution.
pub struct Clear {
    pub service_id: Option<Uuid>,
    pub name: String,
    pub value: String,
    pub secret: bool,
}

/// Every variable of an environment (shared and per service) in the clear. Only the deploy
/// path calls this; nothing it returns is sent to a browser.
pub async fn environment_values(db: &PgPool, sb: &SecretBox, environment_id: Uuid) -> AppResult<Vec<Clear>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, value_sealed, secret, service_id, updated_at FROM variables WHERE environment_id = $1",
    )
    .bind(environment_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| Ok(Clear { service_id: r.service_id, name: r.name.clone(), value: open(sb, r)?, secret: r.secret }))
        .collect()
}

/// Creates or replaces a variable. Generators run now and their result is what is stored.
pub async fn set(db: &PgPool, sb: &SecretBox, scope: Scope, name: &str, input: &SetVariable) -> AppResult<Variable> {
    let name = name.trim();
    if !template::is_variable_name(name) {
        return Err(AppError::validation(
            "name",
            "Variable names use letters, digits and _, and do not start with a digit (e.g. DATABASE_URL).",
        ));
    }
    if input.value.len() > MAX_VALUE_BYTES {
        return Err(AppError::validation("value", "Values are at most 32 KiB."));
    }
    let parts = template::parse(&input.value).map_err(|e| AppError::validation("value", e.to_string()))?;
    let generated = parts.iter().any(|p| matches!(p, template::Part::Gen(template::Generator::Secret { .. })));
    let mut rng = rand::rngs::OsRng;
    let value = template::expand_generators(&input.value, |n| rng.gen_range(0..n))
        .map_err(|e| AppError::validation("value", e.to_string()))?;
    let secret = input.secret || generated;

    let mut tx = db.begin().await?;
    // One writer at a time per scope, so the count below cannot be raced past its limit.
    sqlx::query("SELECT 1 FROM environments WHERE id = $1 FOR UPDATE").bind(scope.environment_id).execute(&mut *tx).await?;
    let existing: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM variables WHERE environment_id = $1 AND service_id IS NOT DISTINCT FROM $2 AND name = $3 FOR UPDATE",
    )
    .bind(scope.environment_id)
    .bind(scope.service_id)
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    let id = match existing {
        Some(id) => {
            sqlx::query("UPDATE variables SET value_sealed = $2, secret = $3, updated_at = now() WHERE id = $1")
                .bind(id)
                .bind(sb.seal(&value, &aad(id)))
                .bind(secret)
                .execute(&mut *tx)
                .await?;
            id
        }
        None => {
            let count: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM variables WHERE environment_id = $1 AND service_id IS NOT DISTINCT FROM $2",
            )
            .bind(scope.environment_id)
            .bind(scope.service_id)
            .fetch_one(&mut *tx)
            .await?;
            if count >= MAX_VARIABLES_PER_SCOPE {
                return Err(AppError::validation("name", format!("A service has at most {MAX_VARIABLES_PER_SCOPE} variables.")));
            }
            let id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO variables (id, environment_id, service_id, name, value_sealed, secret) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(scope.environment_id)
            .bind(scope.service_id)
            .bind(name)
            .bind(sb.seal(&value, &aad(id)))
            .bind(secret)
            .execute(&mut *tx)
            .await?;
            id
        }
    };
    tx.commit().await?;
    Ok(Variable {
        id,
        name: name.to_string(),
        value: if secret { None } else { Some(value) },
        secret,
        service_id: scope.service_id,
        updated_at: Utc::now(),
    })
}

/// Writes a new variable on the caller's transaction (names already checked; a template's
/// deploy). A name taken in the scope is a conflict that names it.
pub async fn insert_new(conn: &mut sqlx::PgConnection, sb: &SecretBox, scope: Scope, name: &str, value: &str, secret: bool) -> AppResult<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(AppError::validation(name, "Values are at most 32 KiB."));
    }
    let id = Uuid::new_v4();
    let inserted = sqlx::query(
        "INSERT INTO variables (id, environment_id, service_id, name, value_sealed, secret) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(scope.environment_id)
    .bind(scope.service_id)
    .bind(name)
    .bind(sb.seal(value, &aad(id)))
    .bind(secret)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        let owner = if scope.service_id.is_some() { "This service" } else { "This environment" };
        return Err(AppError::conflict(name, format!("{owner} already has a variable named {name}.")));
    }
    Ok(())
}

pub async fn delete(db: &PgPool, scope: Scope, name: &str) -> AppResult<()> {
    let done = sqlx::query("DELETE FROM variables WHERE environment_id = $1 AND service_id IS NOT DISTINCT FROM $2 AND name = $3")
        .bind(scope.environment_id)
        .bind(scope.service_id)
        .bind(name)
        .execute(db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::not_found("Variable"));
    }
    Ok(())
}

/// The value of one variable, secret or not. Revealing a secret is audited.
pub async fn reveal(db: &PgPool, sb: &SecretBox, scope: Scope, name: &str, actor: Uuid, ip: &str) -> AppResult<String> {
    let row: Row = sqlx::query_as(
        "SELECT id, name, value_sealed, secret, service_id, updated_at FROM variables
         WHERE environment_id = $1 AND service_id IS NOT DISTINCT FROM $2 AND name = $3",
    )
    .bind(scope.environment_id)
    .bind(scope.service_id)
    .bind(name)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| AppError::not_found("Variable"))?;
    let value = open(sb, &row)?;
    if row.secret {
        audit::record(db, Some(actor), "variable.reveal", &format!("variable:{}", row.id), serde_json::json!({ "name": row.name }), ip).await?;
    }
    Ok(value)
}
