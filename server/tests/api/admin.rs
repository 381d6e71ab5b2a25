use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::json;

async fn user_id(app: &TestApp, email: &str) -> String {
    sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(&app.db)
        .await
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_user_is_signed_out_everywhere_and_cannot_sign_in() {
    let app = TestApp::new().await;
    app.register("Root", "root@example.com").await;
    app.make_admin("root@example.com").await;
    let admin = app.browser_login("root@example.com").await;
    let bob_api = app.verified_user("Bob", "bob@example.com").await;
    let bob_browser = app.browser_login("bob@example.com").await;
    let bob_pat = app.post("/tokens", &bob_api, json!({ "name": "ci" })).await.body["secret"].as_str().unwrap().to_string();
    let bob = user_id(&app, "bob@example.com").await;

    let r = app.server_fn("admin_set_suspended", Some(&admin), &[("user_id", &bob), ("suspended", "true")]).await;
    assert!(r.status.is_success(), "{} {}", r.status, r.text);

    assert_eq!(app.get("/me", &bob_api).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/me", &bob_pat).await.status, StatusCode::UNAUTHORIZED, "tokens stop working too");
    let me = app.server_fn("get_me", Some(&bob_browser), &[]).await;
    assert_eq!((me.status, me.text.as_str()), (StatusCode::OK, "null"), "a suspended user's session is gone");
    let login = app.api(axum::http::Method::POST, "/auth/login", None, Some(json!({ "email": "bob@example.com", "password": PASSWORD }))).await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);
    assert!(login.error_message().contains("suspended"));

    let r = app.server_fn("admin_set_suspended", Some(&admin), &[("user_id", &bob), ("suspended", "false")]).await;
    assert!(r.status.is_success(), "{}", r.text);
    app.login("bob@example.com").await;

    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log WHERE action LIKE 'user.%' ORDER BY id").fetch_all(&app.db).await.unwrap();
    assert_eq!(actions, ["user.suspend", "user.unsuspend"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_search_users_and_change_roles() {
    let app = TestApp::new().await;
    app.register("Root", "root@example.com").await;
    app.make_admin("root@example.com").await;
    app.register("Ada Lovelace", "ada@example.com").await;
    app.register("Bob", "bob@example.com").await;
    let admin = app.browser_login("root@example.com").await;

    let r = app.server_fn("admin_list_users", Some(&admin), &[("q", "lovelace")]).await;
    assert_eq!(r.body["total"], 1, "{}", r.text);
    assert_eq!(r.body["users"][0]["email"], "ada@example.com");
    let all = app.server_fn("admin_list_users", Some(&admin), &[]).await;
    assert_eq!(all.body["total"], 3);

    let ada = user_id(&app, "ada@example.com").await;
    let r = app.server_fn("admin_set_role", Some(&admin), &[("user_id", &ada), ("role", "admin")]).await;
    assert!(r.status.is_success(), "{}", r.text);
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE email = 'ada@example.com'").fetch_one(&app.db).await.unwrap();
    assert_eq!(role, "admin");
    let bad = app.server_fn("admin_set_role", Some(&admin), &[("user_id", &ada), ("role", "god")]).await;
    assert_eq!(bad.body["code"], "validation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cannot_suspend_or_demote_themselves() {
    let app = TestApp::new().await;
    app.register("Root", "root@example.com").await;
    app.make_admin("root@example.com").await;
    let admin = app.browser_login("root@example.com").await;
    let me = user_id(&app, "root@example.com").await;
    let r = app.server_fn("admin_set_suspended", Some(&admin), &[("user_id", &me), ("suspended", "true")]).await;
    assert_eq!(r.body["code"], "validation", "{}", r.text);
    let r = app.server_fn("admin_set_role", Some(&admin), &[("user_id", &me), ("role", "user")]).await;
    assert_eq!(r.body["code"], "validation", "{}", r.text);
    let (role, suspended): (String, bool) = sqlx::query_as("SELECT role, suspended_at IS NOT NULL FROM users")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!((role.as_str(), suspended), ("admin", false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_admin_cannot_use_the_admin_functions() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    app.register("Bob", "bob@example.com").await;
    let ada = app.browser_login("ada@example.com").await;
    let bob = user_id(&app, "bob@example.com").await;
    let list = app.server_fn("admin_list_users", Some(&ada), &[]).await;
    assert_eq!(list.body["code"], "forbidden", "{}", list.text);
    let r = app.server_fn("admin_set_suspended", Some(&ada), &[("user_id", &bob), ("suspended", "true")]).await;
    assert_eq!(r.body["code"], "forbidden");
    let anon = app.server_fn("admin_list_users", None, &[]).await;
    assert_eq!(anon.body["code"], "unauthorized");
    let suspended: bool = sqlx::query_scalar("SELECT suspended_at IS NOT NULL FROM users WHERE email = 'bob@example.com'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(!suspended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspending_a_user_stops_their_services_and_ends_their_streams_and_unsuspending_lets_them_deploy() {
    use crate::deploys::{deploy, fixture, setup, until_proxy, wait_for};
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let app = TestApp::with_runtime().await;
    app.register("Root", "root@example.com").await;
    app.make_admin("root@example.com").await;
    let admin = app.browser_login("root@example.com").await;
    let s = setup(&app, &fixture(), json!({})).await;
    let d = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &d, &["running"]).await;
    until_proxy(&app, "/", |r| r.status == StatusCode::OK).await;
    // Ada follows her logs live.
    let req = axum::http::Request::builder()
        .uri(format!("/api/v1/deployments/{d}/logs?follow=true"))
        .header(axum::http::header::AUTHORIZATION, format!("Bearer {}", s.token))
        .body(axum::body::Body::empty())
        .unwrap();
    let mut stream = app.router.clone().oneshot(req).await.unwrap().into_body();

    let ada = user_id(&app, "ada@example.com").await;
    let r = app.server_fn("admin_set_suspended", Some(&admin), &[("user_id", &ada), ("suspended", "true")]).await;
    assert!(r.status.is_success(), "{}", r.text);
    let row: (String, String) = sqlx::query_as("SELECT status::text, reason FROM deployments WHERE id = $1")
        .bind(d.parse::<uuid::Uuid>().unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(row, ("removed".to_string(), "Stopped: the account was suspended by an administrator.".to_string()));
    until_proxy(&app, "/", |r| r.status == StatusCode::NOT_FOUND).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !app.live_units().is_empty() {
        assert!(std::time::Instant::now() < deadline, "still running: {:?}", app.live_units());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Her open log stream ends by itself (within the 15 s recheck).
    let ended = tokio::time::timeout(std::time::Duration::from_secs(25), async {
        while let Some(frame) = stream.frame().await {
            if frame.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream of a suspended user is still open");

    // Unsuspended, she signs in again and deploys; nothing started by itself meanwhile.
    let r = app.server_fn("admin_set_suspended", Some(&admin), &[("user_id", &ada), ("suspended", "false")]).await;
    assert!(r.status.is_success(), "{}", r.text);
    let running: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments WHERE status IN ('queued', 'running')").fetch_one(&app.db).await.unwrap();
    assert_eq!(running, 0);
    let token = app.login("ada@example.com").await;
    let again = deploy(&app, &token, &s.service).await;
    wait_for(&app, &token, &again, &["running"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_look_into_a_user_and_any_deployment_with_secrets_masked_and_others_get_403() {
    use crate::deploys::{deploy, fixture, set_var, setup, wait_for};
    let app = TestApp::with_runtime().await;
    app.register("Root", "root@example.com").await;
    app.make_admin("root@example.com").await;
    let admin = app.browser_login("root@example.com").await;
    let s = setup(&app, &fixture(), json!({})).await;
    set_var(&app, &s.token, &s.service, "API_TOKEN", "s3cret-value-123", true).await;
    let d = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &d, &["running"]).await;
    let ada = user_id(&app, "ada@example.com").await;

    let ada_browser = app.browser_login("ada@example.com").await;
    for (name, form) in [("admin_user_detail", vec![("user_id", ada.as_str())]), ("admin_deployments", vec![]), ("admin_deployment", vec![("id", d.as_str())])] {
        let r = app.server_fn(name, Some(&ada_browser), &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{name}: {}", r.text);
    }
    for page in [format!("/admin/users/{ada}"), "/admin/deployments".to_string(), format!("/admin/deployments/{d}")] {
        assert_eq!(app.page(&page, Some(&ada_browser)).await.status, StatusCode::FORBIDDEN, "{page}");
    }

    let detail = app.server_fn("admin_user_detail", Some(&admin), &[("user_id", &ada)]).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
    assert_eq!(detail.body["projects"][0]["name"], "shop");
    assert_eq!(detail.body["projects"][0]["services"], 1);
    assert_eq!(detail.body["deployments"][0]["id"], d.as_str());
    assert!(!detail.body["sessions"].as_array().unwrap().is_empty());
    assert!(!detail.text.contains("token_hash") && !detail.text.contains("rhs_"), "no session token leaves: {}", detail.text);

    let running = app.server_fn("admin_deployments", Some(&admin), &[("state", "running")]).await;
    assert_eq!((running.body["total"].as_i64(), running.body["deployments"][0]["owner"].as_str()), (Some(1), Some("ada@example.com")), "{}", running.text);
    let failed = app.server_fn("admin_deployments", Some(&admin), &[("state", "failed")]).await;
    assert_eq!(failed.body["total"], 0);
    let bad = app.server_fn("admin_deployments", Some(&admin), &[("state", "sideways")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let view = app.server_fn("admin_deployment", Some(&admin), &[("id", &d)]).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text);
    assert_eq!(view.body["owner"], "ada@example.com");
    let logs: String = view.body["logs"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap().to_string() + "\n").collect();
    assert!(logs.contains("hello v1 starting") && logs.contains("token=••••••"), "{logs}");
    assert!(!view.text.contains("s3cret-value-123"), "the secret never reaches an admin");
    let inspected: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'deployment.inspect' AND target = $1")
        .bind(format!("deployment:{d}"))
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(inspected, 1);

    let page = app.page(&format!("/admin/users/{ada}"), Some(&admin)).await;
    assert!(page.status == StatusCode::OK && page.text.contains("shop") && page.text.contains("ada@example.com"), "{}", page.status);
    let page = app.page("/admin/deployments?state=running", Some(&admin)).await;
    assert!(page.text.contains("shop / web #1"));
    let page = app.page(&format!("/admin/deployments/{d}"), Some(&admin)).await;
    assert!(page.text.contains("Events") && page.text.contains("hello v1 starting") && !page.text.contains("s3cret-value-123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_page_shows_health_queue_and_daily_figures_to_admins_only() {
    let app = TestApp::new().await;
    app.register("Root", "root@example.com").await;
    app.make_admin("root@example.com").await;
    let admin = app.browser_login("root@example.com").await;
    let ada = app.verified_user("Ada", "ada@example.com").await;
    let p = app.post("/projects", &ada, json!({ "name": "shop" })).await;
    let s = app.post(&format!("/projects/{}/services", p.body["id"].as_str().unwrap()), &ada, json!({ "name": "db", "source_kind": "database", "source": "postgres" })).await;
    app.post(&format!("/services/{}/deployments", s.body["id"].as_str().unwrap()), &ada, json!({})).await;
    sqlx::query("INSERT INTO deployments (service_id, number, status, reason, trigger, spec) SELECT service_id, 2, 'failed', 'broken', trigger, spec FROM deployments LIMIT 1")
        .execute(&app.db)
        .await
        .unwrap();

    let ada_browser = app.browser_login("ada@example.com").await;
    assert_eq!(app.server_fn("admin_platform", Some(&ada_browser), &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.page("/admin/platform", Some(&ada_browser)).await.status, StatusCode::FORBIDDEN);

    let r = app.server_fn("admin_platform", Some(&admin), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((r.body["users"].as_i64(), r.body["projects"].as_i64(), r.body["queue"].as_i64()), (Some(2), Some(1), Some(1)), "{}", r.text);
    let days = r.body["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    let today = days.last().unwrap();
    assert_eq!((today["deployments"].as_i64(), today["failed"].as_i64(), today["signups"].as_i64()), (Some(2), Some(1), Some(2)), "{today}");
    let page = app.page("/admin/platform", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("data-testid=\"deployments-chart\"") && page.text.contains("50.0 %"), "the failure rate of the period is shown");
}
