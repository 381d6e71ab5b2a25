use super::{ApiJson, ApiPath, ApiQuery, Caller, ErrorBody};
use app::{
    catalogue::{service, Plan, Template, TemplatePage, TemplateQuery},
    error::AppError,
    infra::AppState,
    templates::{deploy, TemplateDeployRequest, TemplateDeployment},
};
use axum::{extract::State, http::StatusCode, Json};

/// Published templates: full-text search, filter by category, sort by popularity, name or
/// age, a page at a time.
#[utoipa::path(get, path = "/templates", tag = "catalogue", params(TemplateQuery),
    responses((status = 200, body = TemplatePage), (status = 422, body = ErrorBody)))]
pub async fn list_templates(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<TemplateQuery>,
) -> Result<Json<TemplatePage>, AppError> {
    Ok(Json(service::list_templates(&state.db, &query).await?))
}

#[utoipa::path(get, path = "/templates/{slug}", tag = "catalogue",
    params(("slug" = String, Path, description = "Template slug, e.g. postgres")),
    responses((status = 200, body = Template), (status = 404, body = ErrorBody)))]
pub async fn get_template(State(state): State<AppState>, ApiPath(slug): ApiPath<String>) -> Result<Json<Template>, AppError> {
    Ok(Json(service::get_template(&state.db, &slug).await?))
}

/// Deploys a template into a project of yours (or a new one): creates every service, variable
/// and source in one transaction, then queues their deployments in dependency order.
#[utoipa::path(post, path = "/templates/{slug}/deploy", tag = "catalogue", security(("bearer" = [])),
    params(("slug" = String, Path, description = "Template slug, e.g. postgresql")),
    request_body = TemplateDeployRequest,
    responses((status = 201, body = TemplateDeployment), (status = 404, body = ErrorBody), (status = 402, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn deploy_template(
    State(state): State<AppState>,
    Caller(auth): Caller,
    ApiPath(slug): ApiPath<String>,
    ApiJson(req): ApiJson<TemplateDeployRequest>,
) -> Result<(StatusCode, Json<TemplateDeployment>), AppError> {
    Ok((StatusCode::CREATED, Json(deploy::deploy(&state, &auth.user, &slug, &req).await?)))
}

#[utoipa::path(get, path = "/plans", tag = "catalogue", responses((status = 200, body = Vec<Plan>)))]
pub async fn list_plans(State(state): State<AppState>) -> Result<Json<Vec<Plan>>, AppError> {
    Ok(Json(service::list_plans(&state.db).await?))
}
