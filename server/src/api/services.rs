use super::{ApiJson, ApiPath, Caller, ErrorBody};
use app::{
    error::AppError,
    infra::{request::ClientIp, AppState},
    services::{service, upload, Service, ServiceInput, SourceUpload},
    variables::{service as vars, SetVariable, Variable},
};
use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, StatusCode},
    Extension, Json,
};
use http_body_util::BodyExt;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

#[utoipa::path(get, path = "/projects/{id}/services", tag = "services", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Project id")),
    responses((status = 200, body = Vec<Service>), (status = 404, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, Caller(auth): Caller, ApiPath(id): ApiPath<Uuid>) -> Result<Json<Vec<Service>>, AppError> {
    Ok(Json(service::list(&state.db, auth.user.id, id).await?))
}

/// Add a service to an environment of the project (production unless `environment_id` says otherwise).
#[utoipa::path(post, path = "/projects/{id}/services", tag = "services", security(("bearer" = [])), request_body = ServiceInput,
    params(("id" = Uuid, Path, description = "Project id")),
    responses((status = 201, body = Service), (status = 402, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Caller(auth): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(input): ApiJson<ServiceInput>,
) -> Result<(StatusCode, Json<Service>), AppError> {
    Ok((StatusCode::CREATED, Json(service::create(&state.db, &state.config, &auth.user, id, &input).await?)))
}

#[utoipa::path(get, path = "/services/{id}", tag = "services", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Service id")),
    responses((status = 200, body = Service), (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, Caller(auth): Caller, ApiPath(id): ApiPath<Uuid>) -> Result<Json<Service>, AppError> {
    Ok(Json(service::get(&state.db, auth.user.id, id).await?))
}

/// Change settings; absent fields stay, an empty string clears an optional one.
#[utoipa::path(patch, path = "/services/{id}", tag = "services", security(("bearer" = [])), request_body = ServiceInput,
    params(("id" = Uuid, Path, description = "Service id")),
    responses((status = 200, body = Service), (status = 402, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Caller(auth): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(input): ApiJson<ServiceInput>,
) -> Result<Json<Service>, AppError> {
    Ok(Json(service::update(&state.db, &state.config, &auth.user, id, &input).await?))
}

#[utoipa::path(delete, path = "/services/{id}", tag = "services", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Service id")),
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

/// The bytes of a `.tar.gz` archive.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ArchiveBody(#[allow(dead_code)] Vec<u8>);

/// Upload the source of an `upload` service: a gzip-compressed tar archive of the source tree
/// (a single top-level folder is lifted up). It becomes the service's source for the next
/// deployment. Archives with absolute paths, `..`, links out of the tree or special files are
/// refused, as are archives above the platform's size limit.
#[utoipa::path(post, path = "/services/{id}/source", tag = "services", security(("bearer" = [])),
    request_body(content = inline(ArchiveBody), content_type = "application/gzip", description = "A .tar.gz of the source tree"),
    params(("id" = Uuid, Path, description = "Service id")),
    responses((status = 201, body = SourceUpload), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn upload_source(
    State(state): State<AppState>,
    Caller(auth): Caller,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<SourceUpload>), AppError> {
    let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let kind = kind.split(';').next().unwrap_or_default().trim();
    if !["application/gzip", "application/x-gzip"].contains(&kind) {
        return Err(AppError::validation("content_type", "Send the archive as a .tar.gz body with Content-Type: application/gzip."));
    }
    let max = state.config.upload_max_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(upload::too_large(max));
    }
    // The body is read up to the limit and no further, whatever Content-Length said.
    let bytes = http_body_util::Limited::new(body, max as usize)
        .collect()
        .await
        .map_err(|e| if e.is::<http_body_util::LengthLimitError>() { upload::too_large(max) } else { AppError::validation("archive", "The upload was interrupted.") })?
        .to_bytes();
    let upload = upload::store(&state.db, &state.config, &auth.user, id, Vec::from(bytes)).await?;
    Ok((StatusCode::CREATED, Json(upload)))
}

#[derive(Serialize, ToSchema)]
pub struct RevealedValue {
    pub name: String,
    pub value: String,
}

#[utoipa::path(get, path = "/services/{id}/variables", tag = "variables", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Service id")),
    responses((status = 200, body = Vec<Variable>, description = "Secret values are omitted"), (status = 404, body = ErrorBody)))]
pub async fn list_variables(State(state): State<AppState>, Caller(auth): Caller, ApiPath(id): ApiPath<Uuid>) -> Result<Json<Vec<Variable>>, AppError> {
    let scope = vars::service_scope(&state.db, auth.user.id, id).await?;
    Ok(Json(vars::list(&state.db, &state.secrets, scope).await?))
}

/// Create or replace a variable. Generators such as `${{secret(32)}}` run once, now.
#[utoipa::path(put, path = "/services/{id}/variables/{name}", tag = "variables", security(("bearer" = [])), request_body = SetVariable,
    params(("id" = Uuid, Path, description = "Service id"), ("name" = String, Path, description = "Variable name")),
    responses((status = 200, body = Variable), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_variable(
    State(state): State<AppState>,
    Caller(auth): Caller,
    ApiPath((id, name)): ApiPath<(Uuid, String)>,
    ApiJson(input): ApiJson<SetVariable>,
) -> Result<Json<Variable>, AppError> {
    let scope = vars::service_scope(&state.db, auth.user.id, id).await?;
    Ok(Json(vars::set(&state.db, &state.secrets, scope, &name, &input).await?))
}

#[utoipa::path(delete, path = "/services/{id}/variables/{name}", tag = "variables", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Service id"), ("name" = String, Path, description = "Variable name")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_variable(
    State(state): State<AppState>,
    Caller(auth): Caller,
    ApiPath((id, name)): ApiPath<(Uuid, String)>,
) -> Result<StatusCode, AppError> {
    let scope = vars::service_scope(&state.db, auth.user.id, id).await?;
    vars::delete(&state.db, scope, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The value of a variable; revealing a secret is recorded in the audit log.
#[utoipa::path(post, path = "/services/{id}/variables/{name}/reveal", tag = "variables", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Service id"), ("name" = String, Path, description = "Variable name")),
    responses((status = 200, body = RevealedValue), (status = 404, body = ErrorBody)))]
pub async fn reveal_variable(
    State(state): State<AppState>,
    Caller(auth): Caller,
    Extension(ip): Extension<ClientIp>,
    ApiPath((id, name)): ApiPath<(Uuid, String)>,
) -> Result<Json<RevealedValue>, AppError> {
    let scope = vars::service_scope(&state.db, auth.user.id, id).await?;
    let value = vars::reveal(&state.db, &state.secrets, scope, &name, auth.user.id, &ip.0).await?;
    Ok(Json(RevealedValue { name, value }))
}

#[utoipa::path(get, path = "/environments/{id}/variables", tag = "variables", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Environment id")),
    responses((status = 200, body = Vec<Variable>, description = "Shared variables; secret values omitted"), (status = 404, body = ErrorBody)))]
pub async fn list_shared(State(state): State<AppState>, Caller(auth): Caller, ApiPath(id): ApiPath<Uuid>) -> Result<Json<Vec<Variable>>, AppError> {
    let scope = vars::environment_scope(&state.db, auth.user.id, id).await?;
    Ok(Json(vars::list(&state.db, &state.secrets, scope).await?))
}

#[utoipa::path(put, path = "/environments/{id}/variables/{name}", tag = "variables", security(("bearer" = [])), request_body = SetVariable,
    params(("id" = Uuid, Path, description = "Environment id"), ("name" = String, Path, description = "Variable name")),
    responses((status = 200, body = Variable), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_shared(
    State(state): State<AppState>,
    Caller(auth): Caller,
    ApiPath((id, name)): ApiPath<(Uuid, String)>,
    ApiJson(input): ApiJson<SetVariable>,
) -> Result<Json<Variable>, AppError> {
    let scope = vars::environment_scope(&state.db, auth.user.id, id).await?;
    Ok(Json(vars::set(&state.db, &state.secrets, scope, &name, &input).await?))
}

#[utoipa::path(delete, path = "/environments/{id}/variables/{name}", tag = "variables", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Environment id"), ("name" = String, Path, description = "Variable name")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_shared(
    State(state): State<AppState>,
    Caller(auth): Caller,
    ApiPath((id, name)): ApiPath<(Uuid, String)>,
) -> Result<StatusCode, AppError> {
    let scope = vars::environment_scope(&state.db, auth.user.id, id).await?;
    vars::delete(&state.db, scope, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
