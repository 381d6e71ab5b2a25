use super::{ApiJson, ApiPath, Caller, ErrorBody};
use app::{
    error::AppError,
    infra::{request::ClientIp, AppState},
    projects::{service, Environment, Project, ProjectSummary},
};
use axum::{extract::State, http::StatusCode, Extension, Json};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Deserialize, ToSchema)]
pub struct CreateProjectRequest {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateProjectRequest {
    pub name: Option<String>,
    pub description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateEnvironmentRequest {
    pub name: String,
}

#[utoipa::path(get, path = "/projects", tag = "projects", security(("bearer" = [])),
    responses((status = 200, body = Vec<ProjectSummary>), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, Caller(auth): Caller) -> Result<Json<Vec<ProjectSummary>>, AppError> {
    Ok(Json(service::list(&state.db, auth.user.id).await?))
}

/// Create a project with a `production` environment. Needs a verified email and room in the plan.
#[utoipa::path(post, path = "/projects", tag = "projects", security(("bearer" = [])), request_body = CreateProjectRequest,
    responses((status = 201, body = Project), (status = 402, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Caller(auth): Caller,
    ApiJson(body): ApiJson<CreateProjectRequest>,
) -> Result<(StatusCode, Json<Project>), AppError> {
    let project = service::create(&state.db, &auth.user, &body.name, body.description.as_deref().unwrap_or("")).await?;
    Ok((StatusCode::CREATED, Json(project)))
}

#[utoipa::path(get, path = "/projects/{id}", tag = "projects", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Project id")),
    responses((status = 200, body = Project), (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, Caller(auth): Caller, ApiPath(id): ApiPath<Uuid>) -> Result<Json<Project>, AppError> {
    Ok(Json(service::get(&state.db, auth.user.id, id).await?))
}

#[utoipa::path(patch, path = "/projects/{id}", tag = "projects", security(("bearer" = [])), request_body = UpdateProjectRequest,
    params(("id" = Uuid, Path, description = "Project id")),
    responses((status = 200, body = Project), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Caller(auth): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateProjectRequest>,
) -> Result<Json<Project>, AppError> {
    Ok(Json(service::update(&state.db, auth.user.id, id, body.name.as_deref(), body.description.as_deref()).await?))
}

#[utoipa::path(delete, path = "/projects/{id}", tag = "projects", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Project id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Caller(auth): Caller,
    Extension(ip): Extension<ClientIp>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, AppError> {
    service::delete(&state.db, auth.user.id, id, &ip.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/projects/{id}/environments", tag = "projects", security(("bearer" = [])),
    request_body = CreateEnvironmentRequest, params(("id" = Uuid, Path, description = "Project id")),
    responses((status = 201, body = Environment), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_environment(
    State(state): State<AppState>,
    Caller(auth): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<CreateEnvironmentRequest>,
) -> Result<(StatusCode, Json<Environment>), AppError> {
    Ok((StatusCode::CREATED, Json(service::create_environment(&state.db, auth.user.id, id, &body.name).await?)))
}

#[utoipa::path(delete, path = "/projects/{id}/environments/{environment_id}", tag = "projects", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Project id"), ("environment_id" = Uuid, Path, description = "Environment id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_environment(
    State(state): State<AppState>,
    Caller(auth): Caller,
    Extension(ip): Extension<ClientIp>,
    ApiPath((id, environment_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<StatusCode, AppError> {
    service::delete_environment(&state.db, auth.user.id, id, environment_id, &ip.0).await?;
    Ok(StatusCode::NO_CONTENT)
}
