//! What a server function knows about its request: the state, the signed-in user (resolved
//! once by the server's auth middleware), the client address.

use super::AppState;
use crate::{auth::service::Authenticated, error::AppError};
use http::{header, request::Parts, HeaderValue};
use leptos::prelude::use_context;

/// The client's address, put into request extensions by the server.
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

pub fn state() -> Result<AppState, AppError> {
    use_context::<AppState>().ok_or_else(|| {
        tracing::error!("AppState missing from the server function context");
        AppError::Internal
    })
}

pub fn current() -> Option<Authenticated> {
    use_context::<Parts>()?.extensions.get::<Authenticated>().cloned()
}

pub fn require_user() -> Result<Authenticated, AppError> {
    current().ok_or(AppError::Unauthorized)
}

pub fn require_admin() -> Result<Authenticated, AppError> {
    let auth = require_user()?;
    if auth.user.is_admin() {
        Ok(auth)
    } else {
        Err(AppError::forbidden("This page is for administrators."))
    }
}

pub fn client_ip() -> String {
    use_context::<Parts>()
        .and_then(|p| p.extensions.get::<ClientIp>().map(|ip| ip.0.clone()))
        .unwrap_or_else(|| "unknown".into())
}

pub fn user_agent() -> Option<String> {
    use_context::<Parts>()?
        .headers
        .get(header::USER_AGENT)?
        .to_str()
        .ok()
        .map(|s| s.chars().take(200).collect())
}

pub fn set_cookie(cookie: String) {
    if let (Some(res), Ok(value)) =
        (use_context::<leptos_axum::ResponseOptions>(), HeaderValue::from_str(&cookie))
    {
        res.append_header(header::SET_COOKIE, value);
    }
}
