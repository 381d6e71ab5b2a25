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

#[server(endpoint = "list_projects")]
pub async fn list_projects() -> Result<Vec<ProjectSummary>, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::list(&request::state()?.db, auth.user.id).await
    })
    .await
}

#[server(endpoint = "get_project")]
pub async fn get_project(id: Uuid) -> Result<Project, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::get(&request::state()?.db, auth.user.id, id).await
    })
    .await
}

#[server(endpoint = "create_project")]
pub async fn create_project(name: String, description: Option<String>) -> Result<Project, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let project = service::create(&request::state()?.db, &auth.user, &name, description.as_deref().unwrap_or("")).await?;
        leptos_axum::redirect(&format!("/projects/{}", project.id));
        Ok(project)
    })
    .await
}

#[server(endpoint = "update_project")]
pub async fn update_project(id: Uuid, name: String, description: Option<String>) -> Result<Project, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::update(&request::state()?.db, auth.user.id, id, Some(&name), description.as_deref()).await
    })
    .await
}

#[server(endpoint = "delete_project")]
pub async fn delete_project(id: Uuid) -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::delete(&request::state()?.db, auth.user.id, id, &request::client_ip()).await?;
        leptos_axum::redirect("/dashboard");
        Ok(())
    })
    .await
}

#[server(endpoint = "create_environment")]
pub async fn create_environment(project_id: Uuid, name: String) -> Result<Environment, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::create_environment(&request::state()?.db, auth.user.id, project_id, &name).await
    })
    .await
}

#[server(endpoint = "delete_environment")]
pub async fn delete_environment(project_id: Uuid, environment_id: Uuid) -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::delete_environment(&request::state()?.db, auth.user.id, project_id, environment_id, &request::client_ip()).await
    })
    .await
}
