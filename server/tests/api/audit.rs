//! The audit log: what is recorded, who may read it (admins all of it, each user their own
//! security log), and that nobody can change or remove a row.

use crate::helpers::*;
use axum::http::{Method, StatusCode};
use serde_json::json;

async fn actions_on(app: &TestApp, target: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT action, ip FROM audit_log WHERE target = $1 ORDER BY id").bind(target).fetch_all(&app.db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_failed_sign_ins_passwords_and_tokens_are_audited_and_each_user_sees_only_their_own() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let ada: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = 'ada@example.com'").fetch_one(&app.db).await.unwrap();
    let wrong = app.api(Method::POST, "/auth/login", None, Some(json!({ "email": "ada@example.com", "password": "not the password" }))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let unknown = app.api(Method::POST, "/auth/login", None, Some(json!({ "email": "Nobody@example.com", "password": "not the password" }))).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    let created = app.post("/tokens", &token, json!({ "name": "ci" })).await;
    let token_id = created.body["id"].as_str().expect("the token's id").to_string();
    assert_eq!(app.api(Method::DELETE, &format!("/tokens/{token_id}"), Some(&token), None).await.status, StatusCode::NO_CONTENT);
    let browser = app.browser_login("ada@example.com").await;
    let changed = app.server_fn("change_password", Some(&browser), &[("current_password", PASSWORD), ("new_password", "another long password")]).await;
    assert!(changed.status.is_success(), "{}", changed.text);

    let on_ada: Vec<String> = actions_on(&app, &format!("user:{ada}")).await.into_iter().map(|(a, _)| a).collect();
    assert_eq!(on_ada, ["auth.sign_in", "auth.sign_in_failed", "auth.sign_in", "auth.password_change"]);
    assert_eq!(actions_on(&app, "email:nobody@example.com").await.len(), 1, "a failed sign-in of an unknown address is kept under it");
    let on_token: Vec<String> = actions_on(&app, &format!("token:{token_id}")).await.into_iter().map(|(a, _)| a).collect();
    assert_eq!(on_token, ["token.create", "token.revoke"]);
    assert!(actions_on(&app, &format!("user:{ada}")).await.iter().all(|(_, ip)| ip.is_some()), "every row has the client's address");

    // Ada's security log: her events, the failed attempt on her account included, nobody else's.
    app.verified_user("Bob", "bob@example.com").await;
    let log = app.server_fn("my_security_log", Some(&browser), &[]).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text);
    let actions: Vec<&str> = log.body.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"auth.sign_in_failed") && actions.contains(&"token.create") && actions.contains(&"auth.password_change"), "{actions:?}");
    assert!(!log.text.contains("bob@example.com") && !log.text.contains("nobody@example.com"), "{}", log.text);
    let page = app.page("/account", Some(&browser)).await;
    assert!(page.text.contains("Security log") && page.text.contains("Failed sign-in"), "the account page shows it");

    // An administrator's action on her account: shown, but not who or from where.
    app.register("Root", "root@example.com").await;
    app.make_admin("root@example.com").await;
    let admin = app.browser_login("root@example.com").await;
    let r = app.server_fn("admin_set_role", Some(&admin), &[("user_id", &ada.to_string()), ("role", "admin")]).await;
    assert!(r.status.is_success(), "{}", r.text);
    let log = app.server_fn("my_security_log", Some(&browser), &[]).await;
    let role = log.body.as_array().unwrap().iter().find(|e| e["action"] == "user.role").expect("the role change is on her log").clone();
    assert_eq!((role["actor"].as_str(), role["ip"].as_str()), (Some("an administrator"), None), "{role}");
    assert!(!log.text.contains("root@example.com"), "{}", log.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_search_and_page_the_audit_log_and_others_get_403() {
    let app = TestApp::new().await;
    app.register("Root", "root@example.com").await;
    app.make_admin("root@example.com").await;
    let admin = app.browser_login("root@example.com").await;
    let ada = app.verified_user("Ada", "ada@example.com").await;
    for i in 0..3 {
        app.post("/tokens", &ada, json!({ "name": format!("t{i}") })).await;
    }
    let ada_browser = app.browser_login("ada@example.com").await;
    let refused = app.server_fn("admin_audit_log", Some(&ada_browser), &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(app.page("/admin/audit", Some(&ada_browser)).await.status, StatusCode::FORBIDDEN);

    let found = app.server_fn("admin_audit_log", Some(&admin), &[("q", "token.create")]).await;
    assert_eq!(found.body["total"], 3, "{}", found.text);
    assert!(found.body["entries"].as_array().unwrap().iter().all(|e| e["actor"] == "ada@example.com" && e["action"] == "token.create"));
    let by_email = app.server_fn("admin_audit_log", Some(&admin), &[("q", "ada@example")]).await;
    assert!(by_email.body["total"].as_i64().unwrap() >= 4, "{}", by_email.text);
    let second = app.server_fn("admin_audit_log", Some(&admin), &[("q", "token.create"), ("offset", "2")]).await;
    assert_eq!(second.body["entries"].as_array().unwrap().len(), 1);
    let bad = app.server_fn("admin_audit_log", Some(&admin), &[("offset", "-1")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let page = app.page("/admin/audit?q=token", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("API token created") && page.text.contains("ada@example.com"), "the page lists them");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_refuses_update_delete_and_truncate() {
    let app = TestApp::new().await;
    app.verified_user("Ada", "ada@example.com").await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log").fetch_one(&app.db).await.unwrap();
    assert!(rows > 0);
    for sql in [
        "UPDATE audit_log SET action = 'nothing'",
        "UPDATE audit_log SET actor_id = NULL, ip = 'elsewhere'",
        // Erasing who acted, while the account exists, looks like the foreign key's clearing.
        "UPDATE audit_log SET actor_id = NULL",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let e = sqlx::query(sql).execute(&app.db).await.expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_log").fetch_one(&app.db).await.unwrap(), rows);
    // Deleting an account keeps its history; only the link to the account goes.
    sqlx::query("DELETE FROM users WHERE email = 'ada@example.com'").execute(&app.db).await.expect("an account can be deleted");
    let orphaned: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE actor_id IS NULL AND action = 'auth.sign_in'").fetch_one(&app.db).await.unwrap();
    assert!(orphaned >= 1);
    assert_eq!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_log").fetch_one(&app.db).await.unwrap(), rows);
}
