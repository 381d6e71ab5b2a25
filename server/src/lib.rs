#![recursion_limit = "256"]
//! The Roundhouse server: wires the Leptos application, the REST API and the middleware into
//! one axum router. `main.rs` adds configuration, the database and the listener.

pub mod api;
pub mod cli;
pub mod cron;
pub mod db_gate;
pub mod executor;
pub mod logs;
pub mod metering;
pub mod metrics;
pub mod middleware;
pub mod page_cache;
pub mod payments;
pub mod proxy;
pub mod reconciler;
pub mod runtime;
pub mod seed;
pub mod telemetry;
pub mod waits;

use app::{infra::AppState, shell, App};
use axum::{routing::get, Router};
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_http::{
    compression::CompressionLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
};

/// The route list of the Leptos app, generated once per process. Generating it runs the app
/// with a process-global "suppress resource loads" flag set (leptos_server), and a resource
/// first polled by another thread meanwhile would stay pending forever (leptos issue #4773) —
/// so it must never run while pages are being rendered.
fn route_list() -> Vec<leptos_axum::AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<leptos_axum::AxumRouteListing>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// The whole application: pages, server functions, `/api/v1`, health checks, static files.
pub fn router(state: AppState) -> Router {
    // Before anything of Leptos runs: page futures keep their request's database actor.
    executor::init();
    let routes = route_list();
    metrics::handle();
    let context_state = state.clone();
    let pages = page_cache::PageCache::new(state.db.clone());
    Router::new()
        .route("/healthz", get(api::health::healthz))
        .route("/readyz", get(api::health::readyz))
        .route("/metrics", get(metrics::render))
        .route("/webhooks/stripe", axum::routing::post(payments::webhook::receive))
        .nest("/api/v1", api::routes())
        .nest_service("/pkg", pkg_files(std::path::Path::new(&*state.leptos_options.site_root).join(&*state.leptos_options.site_pkg_dir)))
        .leptos_routes_with_context(
            &state,
            routes,
            move || leptos::prelude::provide_context(context_state.clone()),
            {
                let options = state.leptos_options.clone();
                move || shell(options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn(refuse_dotfiles))
        .route_layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn(middleware::guard_pages))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::same_origin))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::authenticate))
        .layer(axum::middleware::from_fn(middleware::security_headers))
        .layer(axum::middleware::from_fn(middleware::limit_bodies))
        // Outside authentication and the headers (a kept page replays the headers it was made
        // with; a request with no session and no bearer is no one's), inside compression (it
        // keeps pages as rendered, compressed on the way out): page_cache.rs.
        .layer(axum::middleware::from_fn_with_state((pages, state.config.session_cookie_name()), page_cache::serve))
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn_with_state(state.clone(), db_gate::gate))
        .layer(axum::middleware::from_fn_with_state(state.clone(), proxy::route))
        .layer(telemetry::trace_layer())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Periodic housekeeping: expired sessions and mail links, idle rate-limit keys, logs over
/// their budget. Every step is idempotent, so several replicas may run it.
pub fn spawn_maintenance(state: AppState) {
    // Every minute, each deployment's logs are cut to their newest ROUNDHOUSE_LOG_MB_PER_DEPLOYMENT
    // and to ROUNDHOUSE_LOG_DAYS.
    tokio::spawn(logs::retention::run(state.db.clone(), logs::retention::Policy::from_env()));
    metering::spawn(state.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            state.login_limiter.shrink();
            state.account_limiter.shrink();
            for sql in [
                "DELETE FROM sessions WHERE expires_at < now()",
                "DELETE FROM email_tokens WHERE expires_at < now() - interval '1 day'",
            ] {
                if let Err(e) = sqlx::query(sql).execute(&state.db).await {
                    tracing::warn!(error = %e, "maintenance step failed");
                }
            }
        }
    });
}

/// Whether a request path names a dotfile or dot-folder (`/.git/config`, `/.env`), which no
/// static server here ever serves. `/.well-known/` is the one exception.
pub fn names_dotfile(path: &str) -> bool {
    path.split('/').any(|seg| seg.starts_with('.') && seg != ".well-known")
        || percent_decoded(path).split('/').any(|seg| seg.starts_with('.') && seg != ".well-known")
}

fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&path[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn refuse_dotfiles(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    if names_dotfile(req.uri().path()) {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    next.run(req).await
}

/// The hydration bundle and the stylesheet (`/pkg`). Sent as brotli or gzip copies made at
/// build time (`make site`, `scripts/precompress.mjs`) to browsers that accept them, so no
/// request pays for compressing 3.9 MB of wasm. Pages name the files by their content's hash
/// (`app::infra::assets`): those names are served `immutable`, kept by browsers for a year and
/// never asked for again; a stale hash is a 404, never other content under an immutable name.
/// The plain names are revalidated at each use (`no-cache`, `Last-Modified` → `304`).
pub fn pkg_files(dir: std::path::PathBuf) -> Router {
    use axum::{
        http::{header, HeaderValue, StatusCode, Uri},
        response::IntoResponse,
    };
    let names = std::sync::Arc::new(app::infra::assets::names_in(&dir));
    let files = tower_http::services::ServeDir::new(&dir).precompressed_br().precompressed_gzip();
    Router::new().fallback_service(files).layer(axum::middleware::from_fn(move |mut req: axum::extract::Request, next: axum::middleware::Next| {
        let names = names.clone();
        async move {
            let name = req.uri().path().trim_start_matches('/').to_string();
            let hashed = match app::infra::assets::plain_name(&names, &name) {
                Some(plain) => {
                    *req.uri_mut() = Uri::try_from(format!("/{plain}")).expect("a plain name is a path");
                    true
                }
                None if name.starts_with(&format!("{}-", app::infra::assets::STEM)) => return StatusCode::NOT_FOUND.into_response(),
                None => false,
            };
            let mut response = next.run(req).await;
            let policy = if hashed && response.status() == StatusCode::OK { "public, max-age=31536000, immutable" } else { "no-cache" };
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
            response
        }
    }))
}

/// Serves the files of `dir` on `$PORT` (127.0.0.1): the start command of a static-site service.
pub async fn serve_static(dir: String) -> anyhow::Result<()> {
    use anyhow::Context;
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).context("PORT is not set")?;
    let app = Router::new()
        .fallback_service(tower_http::services::ServeDir::new(&dir).append_index_html_on_directories(true))
        .layer(axum::middleware::from_fn(refuse_dotfiles));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.with_context(|| format!("binding port {port}"))?;
    println!("Serving {dir} on port {port}");
    axum::serve(listener, app).await.context("serving")
}

#[cfg(test)]
mod tests {
    use super::names_dotfile;

    #[tokio::test]
    async fn hashed_names_are_immutable_and_a_stale_hash_is_not_found() {
        use axum::{body::Body, http::{header, Request, StatusCode}};
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let dir = std::env::temp_dir().join(format!("rh-pkg-hashed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("roundhouse.js"), b"glue").unwrap();
        std::fs::write(dir.join("roundhouse.wasm"), vec![7u8; 4096]).unwrap();
        std::fs::write(dir.join("roundhouse.wasm.br"), b"brotli bytes").unwrap();
        std::fs::write(dir.join("roundhouse.css"), b"body{}").unwrap();
        let names = app::infra::assets::names_in(&dir);
        let get = |path: String, encoding: &'static str| super::pkg_files(dir.clone()).oneshot(Request::builder().uri(path).header(header::ACCEPT_ENCODING, encoding).body(Body::empty()).unwrap());
        let wasm = get(format!("/{}.wasm", names.bundle), "br").await.unwrap();
        assert_eq!(wasm.status(), StatusCode::OK);
        assert_eq!(wasm.headers()[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
        assert_eq!(wasm.headers()[header::CONTENT_ENCODING], "br");
        assert_eq!(&wasm.into_body().collect().await.unwrap().to_bytes()[..], b"brotli bytes");
        let css = get(format!("/{}", names.css), "identity").await.unwrap();
        assert_eq!((css.status(), &css.headers()[header::CACHE_CONTROL]), (StatusCode::OK, &"public, max-age=31536000, immutable".parse::<axum::http::HeaderValue>().unwrap()));
        assert_eq!(get("/roundhouse-0123456789.wasm".into(), "br").await.unwrap().status(), StatusCode::NOT_FOUND, "a stale build's name");
        assert_eq!(get("/roundhouse.wasm".into(), "br").await.unwrap().headers()[header::CACHE_CONTROL], "no-cache");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_bundle_goes_out_precompressed_and_a_returning_visitor_gets_304() {
        use axum::{body::Body, http::{header, Request, StatusCode}};
        use tower::ServiceExt;
        let dir = std::env::temp_dir().join(format!("rh-pkg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("roundhouse.wasm"), vec![7u8; 4096]).unwrap();
        std::fs::write(dir.join("roundhouse.wasm.br"), b"brotli bytes").unwrap();
        std::fs::write(dir.join("roundhouse.wasm.gz"), b"gzip bytes").unwrap();
        let get = |encoding: &'static str, since: Option<String>| {
            let mut req = Request::builder().uri("/roundhouse.wasm").header(header::ACCEPT_ENCODING, encoding);
            if let Some(s) = since {
                req = req.header(header::IF_MODIFIED_SINCE, s);
            }
            super::pkg_files(dir.clone()).oneshot(req.body(Body::empty()).unwrap())
        };
        let first = get("gzip, deflate, br", None).await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()[header::CONTENT_ENCODING], "br");
        assert_eq!(first.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(first.headers()[header::CONTENT_TYPE], "application/wasm");
        let gz = get("gzip", None).await.unwrap();
        assert_eq!(gz.headers()[header::CONTENT_ENCODING], "gzip");
        let since = first.headers()[header::LAST_MODIFIED].to_str().unwrap().to_string();
        let again = get("gzip, deflate, br", Some(since)).await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "a returning visitor downloads nothing");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dotfiles_are_never_served() {
        for bad in ["/.git/config", "/.env", "/a/.htpasswd", "/%2egit/HEAD", "/x/%2Eenv"] {
            assert!(names_dotfile(bad), "{bad}");
        }
        for ok in ["/", "/index.html", "/pkg/roundhouse.wasm", "/.well-known/security.txt", "/a.b/c"] {
            assert!(!names_dotfile(ok), "{ok}");
        }
    }
}
