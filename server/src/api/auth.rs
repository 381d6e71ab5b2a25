use super::{ApiJson, ApiPath, Caller, ErrorBody};
use app::{
    auth::{service, ApiToken, CreatedApiToken, User},
    error::AppError,
    infra::{request::ClientIp, AppState},
};
use axum::{extract::State, http::{HeaderMap, StatusCode}, Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    pub name: String,
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct UserResponse {
    pub user: User,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// A session token (rhs_…) for the Authorization header; it lasts 30 days or until logout.
    pub token: String,
    pub user: User,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateTokenRequest {
    pub name: String,
    /// `read` (GET only), `deploy` (reads, and deployments, rollbacks, restarts, cancels and
    /// source uploads) or `full` (the default). No wider than the token making it.
    pub scope: Option<String>,
    /// Days until it stops working (1–365); none: until revoked. A token that expires can
    /// only make tokens that expire no later.
    pub expires_in_days: Option<u32>,
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers.get(axum::http::header::USER_AGENT)?.to_str().ok().map(|s| s.chars().take(200).collect())
}

/// Create an account. A verification mail is sent; projects can be created once it is confirmed.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = UserResponse), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait")))))]
pub async fn register(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<UserResponse>), AppError> {
    let input = service::RegisterInput::parse(&body.name, &body.email, &body.password)?;
    let user = service::register(&state, &ip.0, input).await?;
    Ok((StatusCode::CREATED, Json(UserResponse { user })))
}

/// Sign in and get a session token. Rate-limited per client address and per account.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait")))))]
pub async fn login(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, AppError> {
    let (user, token) =
        service::login(&state, &ip.0, &body.email, &body.password, service::SessionKind::Api, user_agent(&headers)).await?;
    Ok(Json(LoginResponse { token, user }))
}

/// End the session whose token authenticated this request.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, Caller(auth): Caller) -> Result<StatusCode, AppError> {
    service::end_authentication(&state.db, &auth).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub async fn me(Caller(auth): Caller) -> Json<User> {
    Json(auth.user)
}

#[utoipa::path(get, path = "/tokens", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Vec<ApiToken>), (status = 401, body = ErrorBody)))]
pub async fn list_tokens(State(state): State<AppState>, Caller(auth): Caller) -> Result<Json<Vec<ApiToken>>, AppError> {
    Ok(Json(service::list_tokens(&state.db, auth.user.id).await?))
}

/// Create a personal token. Its secret is in this answer only; it is stored hashed.
#[utoipa::path(post, path = "/tokens", tag = "auth", security(("bearer" = [])), request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedApiToken), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    Caller(auth): Caller,
    ApiJson(body): ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedApiToken>), AppError> {
    let new = service::NewToken::parse(&body.name, body.scope.as_deref(), body.expires_in_days.map(|d| d.to_string()).as_deref())?;
    Ok((StatusCode::CREATED, Json(service::create_token(&state.db, &auth, new, &ip.0).await?)))
}

#[utoipa::path(delete, path = "/tokens/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Token id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    Caller(auth): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, AppError> {
    service::revoke_token(&state.db, auth.user.id, id, &ip.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct VerifyRequest {
    /// The token from the verification link.
    pub token: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ForgotPasswordRequest {
    pub email: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ResetPasswordRequest {
    /// The token from the reset link.
    pub token: String,
    pub password: String,
}

/// Confirm an email address with the token from the verification mail.
#[utoipa::path(post, path = "/auth/verify", tag = "auth", request_body = VerifyRequest,
    responses((status = 200, body = UserResponse), (status = 422, body = ErrorBody)))]
pub async fn verify(State(state): State<AppState>, ApiJson(body): ApiJson<VerifyRequest>) -> Result<Json<UserResponse>, AppError> {
    Ok(Json(UserResponse { user: service::verify_email(&state.db, &body.token).await? }))
}

/// Send the verification mail again.
#[utoipa::path(post, path = "/auth/verify/resend", tag = "auth", security(("bearer" = [])),
    responses((status = 202), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait")))))]
pub async fn resend_verification(State(state): State<AppState>, Extension(ip): Extension<ClientIp>, Caller(auth): Caller) -> Result<StatusCode, AppError> {
    service::resend_verification(&state, &ip.0, &auth.user).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Mail a password reset link. Answers 202 whether or not the address has an account.
#[utoipa::path(post, path = "/auth/password/forgot", tag = "auth", request_body = ForgotPasswordRequest,
    responses((status = 202), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait")))))]
pub async fn forgot_password(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    ApiJson(body): ApiJson<ForgotPasswordRequest>,
) -> Result<StatusCode, AppError> {
    service::request_password_reset(&state, &ip.0, &body.email).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Set a new password with the token from the reset mail. Every session of the account ends.
#[utoipa::path(post, path = "/auth/password/reset", tag = "auth", request_body = ResetPasswordRequest,
    responses((status = 204), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait")))))]
pub async fn reset_password(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    ApiJson(body): ApiJson<ResetPasswordRequest>,
) -> Result<StatusCode, AppError> {
    service::reset_password(&state, &ip.0, &body.token, &body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}
