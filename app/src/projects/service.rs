use super::{Environment, Project, ProjectSummary};
use crate::{
    audit,
    auth::User,
    domain::{EnvironmentName, ProjectName},
    error::{AppError, AppResult},
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

pub const DEFAULT_ENVIRONMENT: &str = "production";
const MAX_DESCRIPTION: usize = 500;
const MAX_ENVIRONMENTS: i64 = 20;

fn parse_description(raw: &str) -> AppResult<String> {
    let s = raw.trim();
    if s.chars().count() > MAX_DESCRIPTION {
        return Err(AppError::validation("description", format!("Descriptions are at most {MAX_DESCRIPTION} characters.")));
    }
    Ok(s.to_string())
}

fn duplicate_name(name: &ProjectName) -> AppError {
    AppError::conflict("name", format!("You already have a project named \"{name}\"."))
}

pub async fn list(db: &PgPool, owner: Uuid) -> AppResult<Vec<ProjectSummary>> {
    Ok(sqlx::query_as(
        "SELECT p.id, p.name, p.description, p.created_at, p.updated_at,
                (SELECT count(*) FROM environments e WHERE e.project_id = p.id) AS environment_count
         FROM projects p WHERE p.owner_id = $1 ORDER BY p.updated_at DESC",
    )
    .bind(owner)
    .fetch_all(db)
    .await?)
}

pub async fn get(db: &PgPool, owner: Uuid, id: Uuid) -> AppResult<Project> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        name: String,
        description: String,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    }
    let row: Row = sqlx::query_as(
        "SELECT id, name, description, created_at, updated_at FROM projects WHERE id = $1 AND owner_id = $2",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| AppError::not_found("Project"))?;
    let environments: Vec<Environment> = sqlx::query_as(
        "SELECT id, name, created_at FROM environments WHERE project_id = $1
         ORDER BY (name = 'production') DESC, created_at",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    Ok(Project {
        id: row.id,
        name: row.name,
        description: row.description,
        environments,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Creates a project with its `production` environment, within the owner's plan.
pub async fn create(db: &PgPool, owner: &User, name: &str, description: &str) -> AppResult<Project> {
    let name = ProjectName::parse(name)?;
    let description = parse_description(description)?;
    if !owner.email_verified {
        return Err(AppError::forbidden(format!(
            "Verify your email address before creating projects: we sent a link to {}.",
            owner.email
        )));
    }
    let mut tx = db.begin().await?;
    // Serialise project creation per owner so the plan limit holds under concurrent requests.
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE").bind(owner.id).execute(&mut *tx).await?;
    let (count, max, plan_name): (i64, i32, String) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM projects WHERE owner_id = u.id), p.max_projects, p.name
         FROM users u JOIN plans p ON p.id = u.plan_id WHERE u.id = $1",
    )
    .bind(owner.id)
    .fetch_one(&mut *tx)
    .await?;
    if count >= i64::from(max) {
        return Err(AppError::PlanLimit {
            message: format!(
                "Your {plan_name} plan allows {max} projects and you have {count}. Upgrade your plan or delete a project."
            ),
        });
    }
    let id: Uuid = match sqlx::query_scalar(
        "INSERT INTO projects (owner_id, name, description) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(owner.id)
    .bind(name.as_str())
    .bind(&description)
    .fetch_one(&mut *tx)
    .await
    {
        Ok(id) => id,
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("projects_owner_name_key") => {
            return Err(duplicate_name(&name))
        }
        Err(e) => return Err(e.into()),
    };
    sqlx::query("INSERT INTO environments (project_id, name) VALUES ($1, $2)")
        .bind(id)
        .bind(DEFAULT_ENVIRONMENT)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(project_id = %id, owner_id = %owner.id, "project created");
    get(db, owner.id, id).await
}

pub async fn update(db: &PgPool, owner: Uuid, id: Uuid, name: Option<&str>, description: Option<&str>) -> AppResult<Project> {
    let name = name.map(ProjectName::parse).transpose()?;
    let description = description.map(parse_description).transpose()?;
    let result = sqlx::query(
        "UPDATE projects SET name = coalesce($3, name), description = coalesce($4, description), updated_at = now()
         WHERE id = $1 AND owner_id = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(name.as_ref().map(|n| n.as_str()))
    .bind(description)
    .execute(db)
    .await;
    match result {
        Ok(done) if done.rows_affected() == 0 => return Err(AppError::not_found("Project")),
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("projects_owner_name_key") => {
            return Err(duplicate_name(name.as_ref().expect("only a rename can collide")))
        }
        Err(e) => return Err(e.into()),
    }
    get(db, owner, id).await
}

pub async fn delete(db: &PgPool, owner: Uuid, id: Uuid, ip: &str) -> AppResult<()> {
    let mut tx = db.begin().await?;
    let name: Option<String> = sqlx::query_scalar("DELETE FROM projects WHERE id = $1 AND owner_id = $2 RETURNING name")
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
    let name = name.ok_or_else(|| AppError::not_found("Project"))?;
    audit::record(&mut *tx, Some(owner), "project.delete", &format!("project:{id}"), serde_json::json!({ "name": name }), ip).await?;
    tx.commit().await?;
    Ok(())
}

async fn ensure_owned(db: &PgPool, owner: Uuid, project_id: Uuid) -> AppResult<()> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM projects WHERE id = $1 AND owner_id = $2")
        .bind(project_id)
        .bind(owner)
        .fetch_optional(db)
        .await?;
    found.map(|_| ()).ok_or_else(|| AppError::not_found("Project"))
}

pub async fn create_environment(db: &PgPool, owner: Uuid, project_id: Uuid, name: &str) -> AppResult<Environment> {
    let name = EnvironmentName::parse(name)?;
    ensure_owned(db, owner, project_id).await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM environments WHERE project_id = $1")
        .bind(project_id)
        .fetch_one(db)
        .await?;
    if count >= MAX_ENVIRONMENTS {
        return Err(AppError::validation("name", format!("A project has at most {MAX_ENVIRONMENTS} environments.")));
    }
    match sqlx::query_as::<_, Environment>(
        "INSERT INTO environments (project_id, name) VALUES ($1, $2) RETURNING id, name, created_at",
    )
    .bind(project_id)
    .bind(name.as_str())
    .fetch_one(db)
    .await
    {
        Ok(env) => Ok(env),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(AppError::conflict("name", format!("This project already has an environment named \"{name}\".")))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn delete_environment(db: &PgPool, owner: Uuid, project_id: Uuid, environment_id: Uuid, ip: &str) -> AppResult<()> {
    ensure_owned(db, owner, project_id).await?;
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM environments WHERE id = $1 AND project_id = $2")
        .bind(environment_id)
        .bind(project_id)
        .fetch_optional(db)
        .await?;
    let name = name.ok_or_else(|| AppError::not_found("Environment"))?;
    if name == DEFAULT_ENVIRONMENT {
        return Err(AppError::validation("environment", "The production environment cannot be deleted; delete the project instead."));
    }
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM environments WHERE id = $1").bind(environment_id).execute(&mut *tx).await?;
    audit::record(&mut *tx, Some(owner), "environment.delete", &format!("environment:{environment_id}"), serde_json::json!({ "name": name, "project_id": project_id }), ip).await?;
    tx.commit().await?;
    Ok(())
}
