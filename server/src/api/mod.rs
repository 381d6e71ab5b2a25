//! The REST API under `/api/v1`, for the CLI and automation. Handlers are thin: they
//! authenticate, parse, and call the same domain services the server functions use.

pub mod auth;
pub mod billing;
pub mod catalogue;
pub mod deployments;
pub mod health;
pub mod projects;
pub mod services;

use app::{auth::service::Authenticated, error::AppError, infra::AppState};
use axum::{
    extract::{FromRequest, FromRequestParts},
    http::request::Parts,
    routing::{delete, get, post, put},
    Json, Router,
};
use serde::Serialize;
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi, ToSchema,
};

/// A JSON body whose rejection is an `AppError` (422 with our error shape).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct ApiJson<T>(pub T);

/// A path whose rejection is a 404 in our error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct ApiPath<T>(pub T);

/// A query string whose rejection is a 422 in our error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct ApiQuery<T>(pub T);

/// The signed-in caller; 401 when there is none.
pub struct Caller(pub Authenticated);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Authenticated>().cloned().map(Caller).ok_or(AppError::Unauthorized)
    }
}

/// The error shape of every non-2xx answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// validation_failed, conflict, unauthorized, invalid_credentials, forbidden, not_found, rate_limited, plan_limit, too_large, internal, unavailable, bad_request
    pub code: String,
    pub message: String,
    /// The input field the error is about, when there is one.
    pub field: Option<String>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(
                "A personal API token (rhp_…) from the account page, or a session token (rhs_…) from POST /auth/login.",
            )).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Roundhouse API", version = "1", description = "Projects, services, variables, deployments, logs, tokens and the public catalogue of a Roundhouse platform."),
    servers((url = "/api/v1")),
    modifiers(&BearerAuth),
    paths(
        auth::register, auth::login, auth::logout, auth::me,
        auth::verify, auth::resend_verification, auth::forgot_password, auth::reset_password,
        auth::list_tokens, auth::create_token, auth::revoke_token,
        projects::list, projects::create, projects::get, projects::update, projects::delete,
        projects::create_environment, projects::delete_environment,
        services::list, services::create, services::get, services::update, services::delete, services::upload_source,
        services::list_variables, services::set_variable, services::delete_variable, services::reveal_variable,
        services::list_shared, services::set_shared, services::delete_shared,
        deployments::list, deployments::create, deployments::get, deployments::rollback, deployments::redeploy,
        deployments::restart, deployments::cancel, deployments::stop, deployments::logs, deployments::project_events,
        deployments::metrics,
        catalogue::list_templates, catalogue::get_template, catalogue::deploy_template, catalogue::list_plans,
        billing::plan, billing::usage, billing::service_usage, billing::get_limits, billing::set_limits,
        billing::invoices, billing::invoice, billing::checkout, billing::portal, billing::payment,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "auth", description = "Accounts, sessions and personal tokens"),
        (name = "projects", description = "Projects and environments (owner only)"),
        (name = "services", description = "Services of an environment (owner only)"),
        (name = "variables", description = "Service and shared variables, encrypted at rest (owner only)"),
        (name = "deployments", description = "Deployments, their logs and live status (owner only)"),
        (name = "catalogue", description = "Public templates and plans"),
        (name = "billing", description = "Your plan, usage and costs (owner only)"),
    )
)]
pub struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> AppError {
    AppError::not_found("API route")
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/verify", post(auth::verify))
        .route("/auth/verify/resend", post(auth::resend_verification))
        .route("/auth/password/forgot", post(auth::forgot_password))
        .route("/auth/password/reset", post(auth::reset_password))
        .route("/me", get(auth::me))
        .route("/tokens", get(auth::list_tokens).post(auth::create_token))
        .route("/tokens/{id}", delete(auth::revoke_token))
        .route("/projects", get(projects::list).post(projects::create))
        .route("/projects/{id}", get(projects::get).patch(projects::update).delete(projects::delete))
        .route("/projects/{id}/environments", post(projects::create_environment))
        .route("/projects/{id}/environments/{environment_id}", delete(projects::delete_environment))
        .route("/projects/{id}/services", get(services::list).post(services::create))
        .route("/services/{id}", get(services::get).patch(services::update).delete(services::delete))
        // The size limit is the platform's own (ROUNDHOUSE_UPLOAD_MAX_MB), enforced by the handler.
        .route("/services/{id}/source", post(services::upload_source).layer(axum::extract::DefaultBodyLimit::disable()))
        .route("/services/{id}/variables", get(services::list_variables))
        .route("/services/{id}/variables/{name}", put(services::set_variable).delete(services::delete_variable))
        .route("/services/{id}/variables/{name}/reveal", post(services::reveal_variable))
        .route("/environments/{id}/variables", get(services::list_shared))
        .route("/environments/{id}/variables/{name}", put(services::set_shared).delete(services::delete_shared))
        .route("/services/{id}/deployments", get(deployments::list).post(deployments::create))
        .route("/services/{id}/metrics", get(deployments::metrics))
        .route("/deployments/{id}", get(deployments::get))
        .route("/deployments/{id}/rollback", post(deployments::rollback))
        .route("/deployments/{id}/redeploy", post(deployments::redeploy))
        .route("/deployments/{id}/restart", post(deployments::restart))
        .route("/deployments/{id}/cancel", post(deployments::cancel))
        .route("/deployments/{id}/stop", post(deployments::stop))
        .route("/deployments/{id}/logs", get(deployments::logs))
        .route("/projects/{id}/events", get(deployments::project_events))
        .route("/templates", get(catalogue::list_templates))
        .route("/templates/{slug}", get(catalogue::get_template))
        .route("/templates/{slug}/deploy", post(catalogue::deploy_template))
        .route("/plans", get(catalogue::list_plans))
        .route("/billing/plan", get(billing::plan))
        .route("/billing/usage", get(billing::usage))
        .route("/billing/limits", get(billing::get_limits).put(billing::set_limits))
        .route("/billing/invoices", get(billing::invoices))
        .route("/billing/invoices/{id}", get(billing::invoice))
        .route("/billing/checkout", post(billing::checkout))
        .route("/billing/portal", post(billing::portal))
        .route("/billing/payment", get(billing::payment))
        .route("/services/{id}/usage", get(billing::service_usage))
        .fallback(not_found)
}
