use super::{ApiJson, ApiPath, Caller, ErrorBody};
use app::{
    billing::{ledger, service, subscription, Invoice, InvoiceSummary, Limits, PaymentStatus, PlanChange, PlanSummary, ServiceUsage, UsageReport},
    error::AppError,
    infra::AppState,
};
use axum::{extract::State, Json};
use chrono::Utc;
use serde::Deserialize;
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

/// Your spend limits and whether they hold your services stopped.
#[utoipa::path(get, path = "/billing/limits", tag = "billing", security(("bearer" = [])),
    responses((status = 200, body = Limits), (status = 401, body = ErrorBody)))]
pub async fn get_limits(State(state): State<AppState>, Caller(auth): Caller) -> Result<Json<Limits>, AppError> {
    Ok(Json(app::billing::limits::get(&state.db, auth.user.id).await?))
}

/// What to set the limits to, in cents (leave one out, or null, for none).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LimitsRequest {
    pub soft_limit_cents: Option<i64>,
    pub hard_limit_cents: Option<i64>,
}

/// Sets your spend limits (on the period's bill so far, fee included) and applies them at
/// once: a hard limit at or under the bill stops every service; raising it past the bill
/// starts them again.
#[utoipa::path(put, path = "/billing/limits", tag = "billing", security(("bearer" = [])), request_body = LimitsRequest,
    responses((status = 200, body = Limits), (status = 422, body = ErrorBody)))]
pub async fn set_limits(State(state): State<AppState>, Caller(auth): Caller, ApiJson(req): ApiJson<LimitsRequest>) -> Result<Json<Limits>, AppError> {
    Ok(Json(app::billing::limits::set(&state, auth.user.id, req.soft_limit_cents, req.hard_limit_cents).await?))
}

/// Your invoices, newest first (one per period, issued when it ends).
#[utoipa::path(get, path = "/billing/invoices", tag = "billing", security(("bearer" = [])),
    responses((status = 200, body = [InvoiceSummary]), (status = 401, body = ErrorBody)))]
pub async fn invoices(State(state): State<AppState>, Caller(auth): Caller) -> Result<Json<Vec<InvoiceSummary>>, AppError> {
    Ok(Json(ledger::list(&state.db, Some(auth.user.id)).await?))
}

/// One of your invoices with its lines.
#[utoipa::path(get, path = "/billing/invoices/{id}", tag = "billing", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Invoice id")),
    responses((status = 200, body = Invoice), (status = 404, body = ErrorBody)))]
pub async fn invoice(State(state): State<AppState>, Caller(auth): Caller, ApiPath(id): ApiPath<Uuid>) -> Result<Json<Invoice>, AppError> {
    Ok(Json(ledger::get(&state.db, Some(auth.user.id), id).await?))
}

/// The plan to move to.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CheckoutRequest {
    pub plan_id: String,
}

/// Moves you to another plan. With no Stripe configured (the local ledger) it takes effect at
/// once, prorated on the period's invoice, and the answer is your plan; a downgrade must fit
/// what you have (402 says what is over). With Stripe, the answer is `redirect_url`: Stripe's
/// checkout for a paid plan, or its portal to change a subscription you have; the plan changes
/// when Stripe reports the subscription.
#[utoipa::path(post, path = "/billing/checkout", tag = "billing", security(("bearer" = [])), request_body = CheckoutRequest,
    responses((status = 200, body = PlanChange), (status = 402, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn checkout(State(state): State<AppState>, Caller(auth): Caller, ApiJson(req): ApiJson<CheckoutRequest>) -> Result<Json<PlanChange>, AppError> {
    Ok(Json(subscription::change_plan(&state, auth.user.id, req.plan_id.trim(), "api").await?))
}

/// Where to manage payment.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PortalResponse {
    /// Stripe's billing portal for you (payment methods, invoices, cancelling).
    pub url: String,
}

/// A link to Stripe's billing portal (409 when payments are not taken here, or before you
/// bought a plan).
#[utoipa::path(post, path = "/billing/portal", tag = "billing", security(("bearer" = [])),
    responses((status = 200, body = PortalResponse), (status = 409, body = ErrorBody)))]
pub async fn portal(State(state): State<AppState>, Caller(auth): Caller) -> Result<Json<PortalResponse>, AppError> {
    Ok(Json(PortalResponse { url: subscription::portal(&state, auth.user.id).await? }))
}

/// Your standing with the payment provider: subscription, an overdue payment and when services
/// stop for it.
#[utoipa::path(get, path = "/billing/payment", tag = "billing", security(("bearer" = [])),
    responses((status = 200, body = PaymentStatus), (status = 401, body = ErrorBody)))]
pub async fn payment(State(state): State<AppState>, Caller(auth): Caller) -> Result<Json<PaymentStatus>, AppError> {
    Ok(Json(subscription::status(&state, auth.user.id).await?))
}
