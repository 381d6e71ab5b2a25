//! Metrics in a test process of their own: the recorder is global to a process, so requests
//! of other tests running beside it could satisfy what this test looks for.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use axum::http::StatusCode;
use helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_pattern_and_status() {
    let app = TestApp::new().await;
    app.page("/templates/redis", None).await;
    app.api(axum::http::Method::GET, "/projects/not-a-uuid", None, None).await;
    let req = axum::http::Request::builder().uri("/metrics").body(axum::body::Body::empty()).unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("# TYPE http_requests_total counter"), "{}", r.text);
    let line = |route: &str, status: &str| {
        r.text.lines().any(|l| l.starts_with("http_requests_total{") && l.contains(&format!("route=\"{route}\"")) && l.contains(&format!("status=\"{status}\"")))
    };
    assert!(line("/templates/{slug}", "200"), "pages are labelled by pattern:\n{}", r.text);
    assert!(line("/api/v1/projects/{id}", "401"), "{}", r.text);
    assert!(r.text.contains("http_request_duration_seconds_bucket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_metrics_token_only_its_bearer_scrapes_and_platform_gauges_are_there() {
    let app = TestApp::with_config(|c| c.metrics_token = Some("scrape-secret".to_string().into())).await;
    let scrape = |auth: Option<&'static str>| {
        let mut req = axum::http::Request::builder().uri("/metrics");
        if let Some(a) = auth {
            req = req.header(axum::http::header::AUTHORIZATION, a);
        }
        app.send(req.body(axum::body::Body::empty()).unwrap())
    };
    for refused in [None, Some("Bearer wrong"), Some("scrape-secret")] {
        let r = scrape(refused).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{refused:?}");
        assert!(!r.text.contains("http_requests_total"));
    }
    let r = scrape(Some("Bearer scrape-secret")).await;
    assert_eq!(r.status, StatusCode::OK);
    for gauge in ["roundhouse_deployments{status=\"running\"} 0", "roundhouse_db_pool_connections{state=\"idle\"}"] {
        assert!(r.text.contains(gauge), "{gauge} missing:\n{}", r.text);
    }
}
