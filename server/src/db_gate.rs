//! While Postgres is away, requests that need it are answered at once: 503 with `Retry-After`,
//! a short page that says the platform is recovering (and reloads itself) for browsers, the
//! API's error body for everyone else. Health checks, metrics and static files pass; deployed
//! services never come here (the proxy answers them before this layer, from its routes).

use app::{error::AppError, infra::{db::RETRY_AFTER_SECS, AppState}};
use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{Html, IntoResponse, Response},
};

/// Paths that do not need the database, or report on it themselves.
fn passes(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/favicon.ico" | "/robots.txt") || path.starts_with("/pkg/") || path.starts_with("/assets/")
}

pub async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    state.db_health.watch(&state.db);
    if state.db_health.away().is_none() || passes(req.uri().path()) {
        return next.run(req).await;
    }
    let wants_html = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    let mut response = if wants_html {
        (StatusCode::SERVICE_UNAVAILABLE, Html(RECOVERING)).into_response()
    } else {
        AppError::Unavailable.into_response()
    };
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

const RECOVERING: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5"><title>Recovering · Roundhouse</title>
<style>body{font-family:system-ui,sans-serif;background:#0b0d12;color:#e6e8ee;display:grid;place-items:center;min-height:100vh;margin:0}
main{max-width:32rem;padding:2rem;text-align:center}h1{font-size:1.4rem}p{color:#a3a9b8;line-height:1.5}</style></head>
<body><main><h1>Roundhouse is recovering</h1>
<p>The platform cannot reach its database for the moment. Deployed services keep running. This page reloads by itself every few seconds.</p>
</main></body></html>"#;
