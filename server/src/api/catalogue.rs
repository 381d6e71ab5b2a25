use super::{ApiPath, ApiQuery, ErrorBody};
use app::{
    catalogue::{service, Plan, Template, TemplateQuery, TemplateSummary},
    error::AppError,
    infra::AppState,
};
use axum::{extract::State, Json};

/// Published templates: search, filter by category, sort by popularity, name or age.
#[utoipa::path(get, path = "/templates", tag = "catalogue", params(TemplateQuery),
    responses((status = 200, body = Vec<TemplateSummary>), (status = 422, body = ErrorBody)))]
pub async fn list_templates(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<TemplateQuery>,
) -> Result<Json<Vec<TemplateSummary>>, AppError> {
    Ok(Json(service::list_templates(&state.db, &query).await?))
}

#[utoipa::path(get, path = "/templates/{slug}", tag = "catalogue",
    params(("slug" = String, Path, description = "Template slug, e.g. postgres")),
    responses((status = 200, body = Template), (status = 404, body = ErrorBody)))]
pub async fn get_template(State(state): State<AppState>, ApiPath(slug): ApiPath<String>) -> Result<Json<Template>, AppError> {
    Ok(Json(service::get_template(&state.db, &slug).await?))
}

#[utoipa::path(get, path = "/plans", tag = "catalogue", responses((status = 200, body = Vec<Plan>)))]
pub async fn list_plans(State(state): State<AppState>) -> Result<Json<Vec<Plan>>, AppError> {
    Ok(Json(service::list_plans(&state.db).await?))
}
