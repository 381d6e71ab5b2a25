use super::{ApiPath, Caller, ErrorBody};
use app::{
    billing::{service, PlanSummary, ServiceUsage, UsageReport},
    error::AppError,
    infra::AppState,
};
use axum::{extract::State, Json};
use chrono::Utc;
use uuid::Uuid;

/// Your plan: its fee and the usage it includes.
#[utoipa::path(get, path = "/billing/plan", tag = "billing", security(("bearer" = [])),
    responses((status = 200, body = PlanSummary), (status = 401, body = ErrorBody)))]
pub async fn plan(State(state): State<AppState>, Caller(auth): Caller) -> Result<Json<PlanSummary>, AppError> {
    Ok(Json(service::plan(&state.db, auth.user.id).await?.0))
}

/// This period's usage, cost and bill so far, per resource, service and day, and the bill
/// projected to the period's end at the rate so far.
#[utoipa::path(get, path = "/billing/usage", tag = "billing", security(("bearer" = [])),
    responses((status = 200, body = UsageReport), (status = 401, body = ErrorBody)))]
pub async fn usage(State(state): State<AppState>, Caller(auth): Caller) -> Result<Json<UsageReport>, AppError> {
    Ok(Json(service::usage(&state.db, auth.user.id, Utc::now()).await?))
}

/// One of your services' usage and cost this period.
#[utoipa::path(get, path = "/services/{id}/usage", tag = "billing", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Service id")),
    responses((status = 200, body = ServiceUsage), (status = 404, body = ErrorBody)))]
pub async fn service_usage(State(state): State<AppState>, Caller(auth): Caller, ApiPath(id): ApiPath<Uuid>) -> Result<Json<ServiceUsage>, AppError> {
    Ok(Json(service::service_usage(&state.db, auth.user.id, id, Utc::now()).await?))
}
