//! Postgres away: requests are answered at once with 503 and `Retry-After` (a page that says
//! the platform is recovering for browsers), `/readyz` says why, and everything resumes by
//! itself when it is back.

use crate::helpers::*;
use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_away_requests_get_503_at_once_and_resume_when_it_is_back() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    assert_eq!(app.get("/projects", &token).await.status, StatusCode::OK);

    let db = app._database.clone();
    let outage = tokio::spawn(async move { db.outage(Duration::from_secs(8)).await });
    let deadline = Instant::now() + Duration::from_secs(6);
    while app.state.db_health.away().is_none() {
        assert!(Instant::now() < deadline, "the watchdog did not notice the outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The API: its error body, 503, Retry-After — without waiting out the pool's 20 s.
    let asked = Instant::now();
    let r = app.get("/projects", &token).await;
    assert!(asked.elapsed() < Duration::from_secs(2), "answered after {:?}", asked.elapsed());
    assert_eq!((r.status, r.error_code()), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"), "{}", r.text);
    assert_eq!(r.headers.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("5"));
    // A browser: a page that says so and reloads itself.
    let req = Request::builder().uri("/projects").header(header::ACCEPT, "text/html").body(Body::empty()).unwrap();
    let page = app.send(req).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.text.contains("Roundhouse is recovering") && page.text.contains("http-equiv=\"refresh\""), "{}", page.text);
    // Readiness says why; liveness stays up.
    let ready = app.send(Request::builder().uri("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!((ready.status, ready.body["status"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("database unavailable")), "{}", ready.text);
    assert!(ready.body["detail"].as_str().is_some_and(|d| d.starts_with("unreachable for")), "{}", ready.text);
    assert_eq!(app.send(Request::builder().uri("/healthz").body(Body::empty()).unwrap()).await.status, StatusCode::OK);

    // Back: everything resumes by itself, the same session token included.
    outage.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = app.get("/projects", &token).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "still {} after the database came back: {}", r.status, r.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(app.state.db_health.away().is_none());
}
