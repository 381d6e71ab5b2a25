//! Request middleware: who is asking (session cookie or bearer token), where from, whether a
//! state-changing request comes from our own pages, which pages need a signed-in user, and
//! the security headers every response carries.

use app::{
    auth::service::{self as auth, Authenticated},
    error::AppError,
    infra::{request::ClientIp, AppState},
};
use axum::{
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use std::net::SocketAddr;

/// A response body polled as its request's actor (`actor::polled_as`): the chunks a page
/// streams after its handler returned, and the resources they wait for, read as the user too.
struct ActingBody {
    cell: app::infra::actor::ActorCell,
    inner: axum::body::Body,
}

impl http_body::Body for ActingBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        app::infra::actor::polled_as(&this.cell, || std::pin::Pin::new(&mut this.inner).poll_frame(cx))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn cookie_token<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| auth::session_token_from_cookie_header(h, name))
}

/// The client's address: the socket peer, or — with `ROUNDHOUSE_TRUST_PROXY` set — what the
/// operator's trusted proxies say in `X-Forwarded-For`, read from the right
/// (`TrustProxy::client`): entries left of theirs were written by the client and could be
/// anything, so they never decide the rate-limit key or the recorded address.
fn client_ip(state: &AppState, req: &Request) -> String {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip());
    let forwarded = forwarded_entries(req.headers());
    state.config.trust_proxy.client(peer, &forwarded).map(|ip| ip.to_string()).unwrap_or_else(|| "unknown".into())
}

/// Every `X-Forwarded-For` entry, left to right (repeated headers read as one comma-joined list).
fn forwarded_entries(headers: &HeaderMap) -> Vec<&str> {
    headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim).collect()
}

/// Resolves the caller once per request and stores it in the request extensions, where the
/// REST handlers and the server functions read it. A bearer token wins over a cookie. A bad
/// bearer token is refused outright; a stale cookie is just ignored (and cleared).
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let ip = client_ip(&state, &req);
    req.extensions_mut().insert(ClientIp(ip));
    // A scraper's bearer is the metrics token, not a user's: `/metrics` checks it itself. Probes
    // are nobody's either (and read what no tenant may, such as the migrations table).
    if matches!(req.uri().path(), "/metrics" | "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let bearer = bearer_token(req.headers()).map(str::to_string);
    let cookie = cookie_token(req.headers(), state.config.session_cookie_name()).map(str::to_string);
    let mut clear_cookie = false;
    let found = if let Some(token) = bearer {
        match auth::authenticate(&state.db, &token).await {
            Ok(Some(a)) => Some(a),
            Ok(None) => return AppError::Unauthorized.into_response(),
            Err(e) => return e.into_response(),
        }
    } else if let Some(token) = cookie {
        // The cookie holds a browser session, never an API token: a token sent as a cookie
        // would otherwise ride along with the browser's ambient authority.
        match auth::authenticate_session(&state.db, &token).await {
            Ok(Some(a)) => Some(a),
            Ok(None) => {
                clear_cookie = true;
                None
            }
            Err(e) => return e.into_response(),
        }
    } else {
        None
    };
    let mut actor = None;
    if let Some(a) = found {
        // A limited token does only what its scope allows, whatever route it calls (server
        // functions are POSTs, so a read token calls none).
        let scope = a.scope();
        if !scope.allows(req.method().as_str(), req.uri().path()) {
            return AppError::forbidden(format!("This token's scope is {}: it cannot {} {}.", scope.as_str(), req.method(), req.uri().path())).into_response();
        }
        actor = Some(app::infra::actor::Actor::User(a.user.id));
        req.extensions_mut().insert(a);
    }
    // The database shows a signed-in user's request only that user's rows (row-level security),
    // in its handler and in what its body streams afterwards.
    let mut response = match actor {
        Some(actor) => {
            let cell = app::infra::actor::ActorCell::new(actor);
            let response = app::infra::actor::within(cell.clone(), next.run(req)).await;
            response.map(|inner| axum::body::Body::new(ActingBody { cell, inner }))
        }
        None => next.run(req).await,
    };
    if clear_cookie && !response.headers().contains_key(header::SET_COOKIE) {
        if let Ok(v) = HeaderValue::from_str(&auth::clear_session_cookie(&state.config)) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

fn host_of_origin(origin: &str) -> Option<&str> {
    let rest = origin.split_once("://")?.1;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// CSRF protection by origin checking (the OWASP "verify origin with standard headers"
/// defence, with SameSite=Lax cookies as a second layer). A state-changing request from a
/// browser must come from our own origin; requests authenticated by a bearer token carry no
/// ambient credentials and are exempt.
pub async fn same_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) || bearer_token(req.headers()).is_some() {
        return next.run(req).await;
    }
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let allowed = |h: &str| Some(h) == host || h == state.config.public_host();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let verdict = match origin {
        Some("null") => false,
        Some(origin) => host_of_origin(origin).is_some_and(allowed),
        None => {
            let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
            let referer = headers.get(header::REFERER).and_then(|v| v.to_str().ok());
            match (fetch_site, referer) {
                (Some("same-origin" | "none"), _) => true,
                (Some(_), _) => false,
                (None, Some(r)) => host_of_origin(r).is_some_and(allowed),
                // No browser headers at all: a non-browser client. Without a cookie it has no
                // ambient authority to abuse.
                (None, None) => cookie_token(headers, state.config.session_cookie_name()).is_none(),
            }
        }
    };
    if verdict {
        next.run(req).await
    } else {
        tracing::warn!(origin = origin.unwrap_or("-"), "cross-site request refused");
        AppError::forbidden("Cross-site request refused. Submit the form from Roundhouse itself.").into_response()
    }
}

fn needs_sign_in(path: &str) -> bool {
    path == "/dashboard"
        || path == "/account"
        || path == "/billing"
        || path.starts_with("/billing/")
        || path == "/admin"
        || path.starts_with("/projects/")
        || path.starts_with("/services/")
        || path.starts_with("/deployments/")
        || path.starts_with("/admin/")
        || (path.starts_with("/templates/") && path.ends_with("/deploy"))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The most a request body to the platform itself may be (forms, server functions, JSON);
/// source archives have their own limit (`ROUNDHOUSE_UPLOAD_MAX_MB`), and traffic to tenants'
/// services never passes here.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Refuses bodies over [`MAX_BODY_BYTES`]: by their `Content-Length` at once (413), and a
/// body without one stops being read there. Server functions read whole bodies into memory,
/// so without this one request could exhaust the platform's.
pub async fn limit_bodies(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.starts_with("/api/v1/services/") && path.ends_with("/source") {
        return next.run(req).await;
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return AppError::TooLarge { message: format!("Requests are at most {} KB.", MAX_BODY_BYTES / 1024) }.into_response();
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, MAX_BODY_BYTES));
    next.run(Request::from_parts(parts, body)).await
}

/// Dashboard pages need a signed-in user: a visitor is sent to sign in and brought back
/// after. The admin panel answers 403 to a signed-in non-admin (the page explains).
pub async fn guard_pages(req: Request, next: Next) -> Response {
    if req.method() != Method::GET || !needs_sign_in(req.uri().path()) {
        return next.run(req).await;
    }
    let auth = req.extensions().get::<Authenticated>().cloned();
    match auth {
        None => {
            let target = req.uri().path_and_query().map(|pq| pq.as_str()).unwrap_or("/dashboard");
            Redirect::to(&format!("/login?next={}", percent_encode(target))).into_response()
        }
        Some(a) if req.uri().path().starts_with("/admin") && (!a.user.is_admin() || a.scope() != app::auth::TokenScope::Full) => {
            let mut response = next.run(req).await;
            *response.status_mut() = StatusCode::FORBIDDEN;
            response
        }
        Some(_) => next.run(req).await,
    }
}

/// Headers every response carries. HTML pages set their own Content-Security-Policy (with a
/// per-response nonce for the hydration script); everything else gets a locked-down one.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let not_modified = response.status() == axum::http::StatusCode::NOT_MODIFIED;
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("strict-origin-when-cross-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    // A 304 carries no policy: the browser keeps the one that came with the page it has (a
    // page's policy names the nonce in its body).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) && !not_modified {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn next_targets_are_percent_encoded() {
        assert_eq!(percent_encode("/projects/1?tab=a&b=c"), "/projects/1%3Ftab%3Da%26b%3Dc");
    }

    #[test]
    fn origins_reduce_to_their_host() {
        assert_eq!(host_of_origin("http://127.0.0.1:3000"), Some("127.0.0.1:3000"));
        assert_eq!(host_of_origin("https://evil.example/path"), Some("evil.example"));
        assert_eq!(host_of_origin("garbage"), None);
    }

    #[test]
    fn only_the_rightmost_forwarded_entry_counts_and_only_if_it_is_an_address() {
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let peer = ip("10.0.0.1");
        let one = app::infra::TrustProxy::Hops(1);
        let client = |values: &[&str]| one.client(peer, &forwarded_entries(&headers(values)));
        assert_eq!(client(&["6.6.6.6, 203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(client(&["6.6.6.6", "203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(client(&["2001:db8::1"]), ip("2001:db8::1"));
        assert_eq!(client(&["[2001:db8::1]:443"]), ip("2001:db8::1"));
        assert_eq!(client(&["203.0.113.7:5000"]), ip("203.0.113.7"));
        // Not an address where the proxy's entry should be: the peer.
        assert_eq!(client(&["203.0.113.7, unknown"]), peer);
        assert_eq!(client(&["203.0.113.7,"]), peer);
        assert_eq!(client(&[]), peer);
    }

    #[test]
    fn dashboard_pages_need_sign_in_and_public_ones_do_not() {
        for p in ["/dashboard", "/account", "/admin", "/projects/abc", "/templates/redis/deploy"] {
            assert!(needs_sign_in(p), "{p}");
        }
        for p in ["/", "/pricing", "/templates", "/login", "/projectsx", "/administrator"] {
            assert!(!needs_sign_in(p), "{p}");
        }
    }
}
