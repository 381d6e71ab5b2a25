//! Server-rendered pages: public pages render for visitors, dashboard pages redirect them to
//! sign in, the admin panel is 403 for non-admins; every response carries security headers.

use crate::helpers::*;
use axum::http::{header, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_pages_render_on_the_server() {
    let app = TestApp::new().await;
    for (path, text) in [
        ("/", "Push your code"),
        ("/pricing", "Hobby"),
        ("/templates", "PostgreSQL"),
        ("/templates/redis", "REDIS_URL = ${{Redis.REDIS_URL}}"),
        ("/login", "Sign in"),
        ("/register", "Create your account"),
        ("/docs", "Getting started"),
    ] {
        let r = app.page(path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(r.text.contains(text), "{path} should contain {text:?}");
        assert!(r.text.contains("/pkg/roundhouse.js"), "{path} hydrates");
    }
    let pricing = app.page("/pricing", None).await;
    assert!(pricing.text.contains("$20"), "the Pro fee comes from the plans table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pages_and_templates_are_404() {
    let app = TestApp::new().await;
    let r = app.page("/no-such-page", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text.contains("This page does not exist"));
    assert_eq!(app.page("/templates/no-such-template", None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_pages_send_a_visitor_to_sign_in_and_back() {
    let app = TestApp::new().await;
    for (path, next) in [
        ("/dashboard", "%2Fdashboard"),
        ("/account", "%2Faccount"),
        ("/admin?q=x", "%2Fadmin%3Fq%3Dx"),
        ("/projects/0c9a3d4e-0000-0000-0000-000000000000", "%2Fprojects%2F0c9a3d4e-0000-0000-0000-000000000000"),
    ] {
        let r = app.page(path, None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        // `/` stays unencoded in the query, which is valid there.
        let expected = format!("/login?next={}", next.replace("%2F", "/"));
        assert_eq!(r.headers[header::LOCATION], expected.as_str(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_panel_is_403_for_users_and_200_for_admins() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    app.register("Root", "root@example.com").await;
    app.make_admin("root@example.com").await;
    let user = app.browser_login("ada@example.com").await;
    let admin = app.browser_login("root@example.com").await;
    let r = app.page("/admin", Some(&user)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("This page is for administrators."));
    let r = app.page("/admin", Some(&admin)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("ada@example.com"), "the user list renders on the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_the_users_own_projects_only() {
    let app = TestApp::new().await;
    let ada = app.verified_user("Ada", "ada@example.com").await;
    let bob = app.verified_user("Bob", "bob@example.com").await;
    let ada_project = app.post("/projects", &ada, json!({ "name": "adas-shop" })).await.body["id"].as_str().unwrap().to_string();
    app.post("/projects", &bob, json!({ "name": "bobs-blog" })).await;
    let ada_cookie = app.browser_login("ada@example.com").await;
    let bob_cookie = app.browser_login("bob@example.com").await;

    let dash = app.page("/dashboard", Some(&ada_cookie)).await;
    assert_eq!(dash.status, StatusCode::OK);
    assert!(dash.text.contains("adas-shop") && !dash.text.contains("bobs-blog"));

    let own = app.page(&format!("/projects/{ada_project}"), Some(&ada_cookie)).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.text.contains("production"));
    let other = app.page(&format!("/projects/{ada_project}"), Some(&bob_cookie)).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert!(!other.text.contains("adas-shop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_security_headers() {
    let app = TestApp::new().await;
    let html = app.page("/", None).await;
    let csp = html.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self' 'nonce-") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let nonce = csp.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
    assert!(html.text.contains(&format!("nonce=\"{nonce}\"")), "the hydration script carries the nonce");
    let json = app.api(axum::http::Method::GET, "/plans", None, None).await;
    for r in [&html, &json] {
        assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(r.headers[header::REFERRER_POLICY], "strict-origin-when-cross-origin");
        assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY");
        assert!(r.headers.contains_key("x-request-id"));
    }
    assert_eq!(json.headers[header::CONTENT_SECURITY_POLICY], "default-src 'none'; frame-ancestors 'none'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_report_the_database_and_migrations() {
    let app = TestApp::new().await;
    let req = |p: &str| axum::http::Request::builder().uri(p).body(axum::body::Body::empty()).unwrap();
    let h = app.send(req("/healthz")).await;
    assert_eq!((h.status, h.body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let r = app.send(req("/readyz")).await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("ready")));
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)")
        .execute(&app.db)
        .await
        .unwrap();
    let r = app.send(req("/readyz")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_outbox_page_lists_mail_in_dev_and_is_hidden_in_production() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    let r = app.page("/dev/mail", None).await;
    assert!(r.text.contains("Confirm your email address") && r.text.contains("/verify?token="));
    let prod = TestApp::with_config(|c| c.mode = app::infra::config::RunMode::Production).await;
    prod.register("Ada", "ada@example.com").await;
    let r = prod.server_fn("list_outbox", None, &[]).await;
    assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{}", r.text);
    let page = prod.page("/dev/mail", None).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(!page.text.contains("Confirm your email address") && !page.text.contains("/verify?token="), "{}", page.text);
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_a_megabyte_is_refused_before_a_server_function_reads_it() {
    let app = TestApp::new().await;
    let big = "q=".to_string() + &"x".repeat(2 * 1024 * 1024);
    let req = axum::http::Request::builder()
        .method(axum::http::Method::POST)
        .uri("/api/list_templates")
        .header(axum::http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(axum::http::header::CONTENT_LENGTH, big.len())
        .body(axum::body::Body::from(big))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.error_code(), "too_large");
    // A small one still works.
    let ok = app.server_fn("list_categories", None, &[]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
}
