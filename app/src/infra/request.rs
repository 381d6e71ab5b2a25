//! What a server function knows about its request: the state, the client address, its
//! headers, and the status its error answers with. (Who signed in is `auth::guard`'s.)

use super::AppState;
use crate::error::AppError;
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

/// Gives a server function's error its own HTTP status (422, 404, 409, …) instead of the
/// blanket 500 server_fn uses, so logs, metrics and the browser see what happened. A plain
/// HTML form post keeps the redirect back to its page that leptos_axum sets.
pub async fn with_status<T>(work: impl std::future::Future<Output = Result<T, AppError>>) -> Result<T, AppError> {
    let result = work.await;
    if let Err(e) = &result {
        let accepts_html = use_context::<Parts>()
            .and_then(|p| p.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(|v| v.contains("text/html")))
            .unwrap_or(false);
        if !accepts_html {
            if let (Some(res), Ok(status)) =
                (use_context::<leptos_axum::ResponseOptions>(), http::StatusCode::from_u16(e.status()))
            {
                res.set_status(status);
            }
        }
    }
    result
}
