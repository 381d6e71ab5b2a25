//! Prometheus metrics at `/metrics`: every request counted and timed by method, matched route
//! (the route pattern, e.g. `/projects/{id}`, so labels stay bounded) and status.

use app::infra::AppState;
use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::{sync::OnceLock, time::Instant};

/// The process-wide recorder (a recorder can be installed once per process).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".into()),
                &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
            )
            .expect("static bucket list is not empty")
            .set_buckets_for_metric(
                Matcher::Full("roundhouse_deploy_phase_seconds".into()),
                &[0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0],
            )
            .expect("static bucket list is not empty")
            .install_recorder()
            .expect("the Prometheus recorder is installed once, here")
    })
}

pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    let labels = [("method", method), ("route", route), ("status", response.status().as_u16().to_string())];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(start.elapsed().as_secs_f64());
    response
}

/// The Prometheus text: every counter and histogram, and gauges of the platform's state read
/// now (deployments by status, instances by state, the database pool). With
/// `ROUNDHOUSE_METRICS_TOKEN` set, only a scraper that sends it as a bearer token gets them.
pub async fn render(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.config.metrics_token {
        use secrecy::ExposeSecret;
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        // Compared as hashes: no timing says how much of a guess was right.
        if app::infra::crypto::hash_token(given.trim()) != app::infra::crypto::hash_token(expected.expose_secret().trim()) {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "metrics need the bearer token ROUNDHOUSE_METRICS_TOKEN\n").into_response();
        }
    }
    record_gauges(&state).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle().render()).into_response()
}

/// The gauges of the platform's state are read from the database at most this often, however
/// often — and by whomever, when `/metrics` is open — it is scraped.
const GAUGES_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

async fn record_gauges(state: &AppState) {
    static READ_AT: tokio::sync::Mutex<Option<std::time::Instant>> = tokio::sync::Mutex::const_new(None);
    let pool = &state.db;
    let idle = pool.num_idle() as f64;
    metrics::gauge!("roundhouse_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("roundhouse_db_pool_connections", "state" => "in_use").set(f64::from(pool.size()) - idle);
    // Scrapes that come together wait for one read rather than each making their own.
    let mut read_at = READ_AT.lock().await;
    if read_at.is_some_and(|at| at.elapsed() < GAUGES_EVERY) {
        return;
    }
    *read_at = Some(std::time::Instant::now());
    metrics::counter!("roundhouse_metrics_state_reads_total").increment(1);
    let deployments: Result<Vec<(String, i64)>, _> =
        sqlx::query_as("SELECT status::text, count(*) FROM deployments WHERE status IN ('queued', 'building', 'deploying', 'running') GROUP BY 1").fetch_all(pool).await;
    if let Ok(rows) = deployments {
        for status in ["queued", "building", "deploying", "running"] {
            let n = rows.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            metrics::gauge!("roundhouse_deployments", "status" => status).set(n as f64);
        }
    }
    let instances: Result<Vec<(String, i64)>, _> =
        sqlx::query_as("SELECT state::text, count(*) FROM instances WHERE state <> 'stopped' GROUP BY 1").fetch_all(pool).await;
    if let Ok(rows) = instances {
        for st in ["starting", "healthy", "restarting"] {
            let n = rows.iter().find(|(s, _)| s == st).map_or(0, |(_, n)| *n);
            metrics::gauge!("roundhouse_instances", "state" => st).set(n as f64);
        }
    }
}
