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
