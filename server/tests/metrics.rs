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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_in_a_burst_read_the_platforms_state_from_the_database_once() {
    let app = TestApp::new().await;
    let scrape = || app.send(axum::http::Request::builder().uri("/metrics").body(axum::body::Body::empty()).unwrap());
    let reads = |text: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix("roundhouse_metrics_state_reads_total ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    };
    let first = reads(&scrape().await.text);
    assert!(first >= 1, "the first scrape reads the state");
    let burst = futures_util::future::join_all((0..20).map(|_| scrape())).await;
    assert!(burst.iter().all(|r| r.status == StatusCode::OK));
    let last = reads(&scrape().await.text);
    assert!(last - first <= 1, "22 scrapes in a row read the database {} times", last - first + 1);
}
