//! Projects and their environments. Every query is scoped by the owner: a project of another
//! user does not exist for you (404), whatever the route.

pub mod pages;
#[cfg(feature = "ssr")]
pub mod service;

use crate::error::AppError;
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, sqlx::FromRow))]
pub struct Environment {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, sqlx::FromRow))]
pub struct ProjectSummary {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub environment_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub environments: Vec<Environment>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[server]
pub async fn list_projects() -> Result<Vec<ProjectSummary>, AppError> {
    use crate::infra::request;
    let auth = request::require_user()?;
    service::list(&request::state()?.db, auth.user.id).await
}

#[server]
pub async fn get_project(id: Uuid) -> Result<Project, AppError> {
    use crate::infra::request;
    let auth = request::require_user()?;
    service::get(&request::state()?.db, auth.user.id, id).await
}

#[server]
pub async fn create_project(name: String, description: Option<String>) -> Result<Project, AppError> {
    use crate::infra::request;
    let auth = request::require_user()?;
    let project = service::create(&request::state()?.db, &auth.user, &name, description.as_deref().unwrap_or("")).await?;
    leptos_axum::redirect(&format!("/projects/{}", project.id));
    Ok(project)
}

#[server]
pub async fn update_project(id: Uuid, name: String, description: Option<String>) -> Result<Project, AppError> {
    use crate::infra::request;
    let auth = request::require_user()?;
    service::update(&request::state()?.db, auth.user.id, id, Some(&name), description.as_deref()).await
}

#[server]
pub async fn delete_project(id: Uuid) -> Result<(), AppError> {
    use crate::infra::request;
    let auth = request::require_user()?;
    service::delete(&request::state()?.db, auth.user.id, id, &request::client_ip()).await?;
    leptos_axum::redirect("/dashboard");
    Ok(())
}

#[server]
pub async fn create_environment(project_id: Uuid, name: String) -> Result<Environment, AppError> {
    use crate::infra::request;
    let auth = request::require_user()?;
    service::create_environment(&request::state()?.db, auth.user.id, project_id, &name).await
}

#[server]
pub async fn delete_environment(project_id: Uuid, environment_id: Uuid) -> Result<(), AppError> {
    use crate::infra::request;
    let auth = request::require_user()?;
    service::delete_environment(&request::state()?.db, auth.user.id, project_id, environment_id, &request::client_ip()).await
}
