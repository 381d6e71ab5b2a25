use crate::helpers::*;
use axum::http::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_is_created_with_a_production_environment() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let r = app.post("/projects", &token, json!({ "name": "  shop  ", "description": "The web shop" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["name"], "shop");
    assert_eq!(r.body["description"], "The web shop");
    let envs: Vec<&str> = r.body["environments"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(envs, ["production"]);

    let list = app.get("/projects", &token).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert_eq!(list.body[0]["environment_count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_user_is_asked_to_verify_before_creating_a_project() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    let token = app.login("ada@example.com").await;
    let r = app.post("/projects", &token, json!({ "name": "shop" })).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.error_message().contains("Verify your email"), "{}", r.text);
    assert_eq!(app.get("/projects", &token).await.body, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_names_are_unique_per_owner_whatever_the_case() {
    let app = TestApp::new().await;
    let ada = app.verified_user("Ada", "ada@example.com").await;
    let bob = app.verified_user("Bob", "bob@example.com").await;
    assert_eq!(app.post("/projects", &ada, json!({ "name": "shop" })).await.status, StatusCode::CREATED);
    let dup = app.post("/projects", &ada, json!({ "name": "SHOP" })).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.error_field(), "name");
    assert_eq!(dup.error_message(), "You already have a project named \"SHOP\".");
    // Another user may use the same name.
    assert_eq!(app.post("/projects", &bob, json!({ "name": "shop" })).await.status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_or_too_long_project_names_are_refused() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    for name in ["", "   ", &"x".repeat(65)] {
        let r = app.post("/projects", &token, json!({ "name": name })).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?}");
        assert_eq!(r.error_field(), "name");
    }
    let r = app.post("/projects", &token, json!({ "description": "no name" })).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.get("/projects", &token).await.body, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_free_plan_limit_stops_the_third_project_with_an_upgrade_message() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    for name in ["one", "two"] {
        assert_eq!(app.post("/projects", &token, json!({ "name": name })).await.status, StatusCode::CREATED);
    }
    let r = app.post("/projects", &token, json!({ "name": "three" })).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.error_code(), "plan_limit");
    assert_eq!(r.error_message(), "Your Free plan allows 2 projects and you have 2. Upgrade your plan or delete a project.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_can_be_renamed_and_deleted() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let id = app.post("/projects", &token, json!({ "name": "shop" })).await.body["id"].as_str().unwrap().to_string();
    app.post("/projects", &token, json!({ "name": "blog" })).await;

    let r = app.api(Method::PATCH, &format!("/projects/{id}"), Some(&token), Some(json!({ "name": "store" }))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["name"], "store");
    assert_eq!(r.body["description"], "", "an absent field is left alone");

    let clash = app.api(Method::PATCH, &format!("/projects/{id}"), Some(&token), Some(json!({ "name": "Blog" }))).await;
    assert_eq!(clash.status, StatusCode::CONFLICT);
    let empty = app.api(Method::PATCH, &format!("/projects/{id}"), Some(&token), Some(json!({ "name": "" }))).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.get(&format!("/projects/{id}"), &token).await.body["name"], "store");

    let del = app.api(Method::DELETE, &format!("/projects/{id}"), Some(&token), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/projects/{id}"), &token).await.status, StatusCode::NOT_FOUND);
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'project.delete'").fetch_one(&app.db).await.unwrap();
    assert_eq!(audited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_can_be_added_and_removed_but_not_production() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let project = app.post("/projects", &token, json!({ "name": "shop" })).await.body;
    let id = project["id"].as_str().unwrap();
    let prod = project["environments"][0]["id"].as_str().unwrap();

    let staging = app.post(&format!("/projects/{id}/environments"), &token, json!({ "name": "Staging" })).await;
    assert_eq!(staging.status, StatusCode::CREATED);
    assert_eq!(staging.body["name"], "staging");
    let dup = app.post(&format!("/projects/{id}/environments"), &token, json!({ "name": "staging" })).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let bad = app.post(&format!("/projects/{id}/environments"), &token, json!({ "name": "no spaces" })).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let del_prod = app.api(Method::DELETE, &format!("/projects/{id}/environments/{prod}"), Some(&token), None).await;
    assert_eq!(del_prod.status, StatusCode::UNPROCESSABLE_ENTITY);
    let staging_id = staging.body["id"].as_str().unwrap();
    let del = app.api(Method::DELETE, &format!("/projects/{id}/environments/{staging_id}"), Some(&token), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let envs = app.get(&format!("/projects/{id}"), &token).await.body["environments"].as_array().unwrap().len();
    assert_eq!(envs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cannot_see_or_change_another_users_project_by_any_route() {
    let app = TestApp::new().await;
    let ada = app.verified_user("Ada", "ada@example.com").await;
    let bob = app.verified_user("Bob", "bob@example.com").await;
    let project = app.post("/projects", &ada, json!({ "name": "secret-shop" })).await.body;
    let id = project["id"].as_str().unwrap();
    let env = project["environments"][0]["id"].as_str().unwrap();
    let staging = app.post(&format!("/projects/{id}/environments"), &ada, json!({ "name": "staging" })).await.body;
    let staging_id = staging["id"].as_str().unwrap();

    assert_eq!(app.get("/projects", &bob).await.body, json!([]));
    let attempts = [
        (Method::GET, format!("/projects/{id}"), None),
        (Method::PATCH, format!("/projects/{id}"), Some(json!({ "name": "mine now" }))),
        (Method::DELETE, format!("/projects/{id}"), None),
        (Method::POST, format!("/projects/{id}/environments"), Some(json!({ "name": "bobs" }))),
        (Method::DELETE, format!("/projects/{id}/environments/{staging_id}"), None),
        (Method::DELETE, format!("/projects/{id}/environments/{env}"), None),
    ];
    for (method, path, body) in attempts {
        let r = app.api(method.clone(), &path, Some(&bob), body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}: {}", r.text);
        assert_eq!(r.error_message(), "Project not found.");
    }
    // The server functions the dashboard uses are scoped the same way.
    app.browser_login("bob@example.com").await;
    let bob_cookie = app.browser_login("bob@example.com").await;
    for (name, form) in [
        ("get_project", vec![("id", id)]),
        ("update_project", vec![("id", id), ("name", "mine now")]),
        ("delete_project", vec![("id", id)]),
        ("create_environment", vec![("project_id", id), ("name", "bobs")]),
        ("delete_environment", vec![("project_id", id), ("environment_id", staging_id)]),
    ] {
        let r = app.server_fn(name, Some(&bob_cookie), &form).await;
        assert_eq!(r.body["code"], "not_found", "{name}: {}", r.text);
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{name}");
    }
    let after = app.get(&format!("/projects/{id}"), &ada).await;
    assert_eq!(after.body["name"], "secret-shop");
    assert_eq!(after.body["environments"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_project_id_is_a_404_and_signed_out_calls_are_401() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let r = app.get("/projects/not-a-uuid", &token).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "not_found");
    let anon = app.api(Method::GET, "/projects", None, None).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    let unknown = app.get("/no-such-route", &token).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
