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
