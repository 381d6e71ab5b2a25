use crate::helpers::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

async fn project(app: &TestApp, token: &str, name: &str) -> Value {
    let r = app.post("/projects", token, json!({ "name": name })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_is_added_to_production_with_defaults() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = project(&app, &token, "shop").await;
    let id = p["id"].as_str().unwrap();
    let r = app.post(&format!("/projects/{id}/services"), &token, json!({ "name": "web", "source_kind": "git", "source": "https://github.com/acme/web.git", "port": 8080 })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["environment"], "production");
    assert_eq!(r.body["replicas"], 1);
    assert_eq!(r.body["restart_policy"], "on_failure");
    assert_eq!(r.body["port"], 8080);
    let db = app.post(&format!("/projects/{id}/services"), &token, json!({ "name": "Postgres", "source_kind": "database", "source": "postgres" })).await;
    assert_eq!(db.body["port"], 5432, "databases get their usual port");
    let list = app.get(&format!("/projects/{id}/services"), &token).await;
    let names: Vec<&str> = list.body.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Postgres", "web"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_names_are_unique_per_environment() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = project(&app, &token, "shop").await;
    let id = p["id"].as_str().unwrap();
    let staging = app.post(&format!("/projects/{id}/environments"), &token, json!({ "name": "staging" })).await.body;
    let body = json!({ "name": "web", "source_kind": "image", "source": "nginx:1.27" });
    assert_eq!(app.post(&format!("/projects/{id}/services"), &token, body.clone()).await.status, StatusCode::CREATED);
    let dup = app.post(&format!("/projects/{id}/services"), &token, json!({ "name": "WEB", "source_kind": "image", "source": "nginx" })).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.error_field(), "name");
    let mut in_staging = body;
    in_staging["environment_id"] = staging["id"].clone();
    let r = app.post(&format!("/projects/{id}/services"), &token, in_staging).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["environment"], "staging");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused_by_field_and_change_nothing() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = project(&app, &token, "shop").await;
    let id = p["id"].as_str().unwrap();
    for (body, field) in [
        (json!({ "source_kind": "image", "source": "nginx" }), "name"),
        (json!({ "name": "web", "source": "nginx" }), "source_kind"),
        (json!({ "name": "web", "source_kind": "directory", "source": "relative" }), "source"),
        (json!({ "name": "web", "source_kind": "database", "source": "mysql" }), "source"),
        (json!({ "name": "web", "source_kind": "image", "source": "nginx", "port": 70000 }), "port"),
        (json!({ "name": "web", "source_kind": "image", "source": "nginx", "healthcheck_path": "health" }), "healthcheck_path"),
        (json!({ "name": "web", "source_kind": "image", "source": "nginx", "cron_schedule": "hourly" }), "cron_schedule"),
    ] {
        let r = app.post(&format!("/projects/{id}/services"), &token, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.text);
        assert_eq!(r.error_field(), field, "{body}");
    }
    let r = app.post(&format!("/projects/{id}/services"), &token, json!({ "name": "web", "source_kind": "kubernetes" })).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "an unknown source kind is bad input: {}", r.text);
    assert_eq!(app.get(&format!("/projects/{id}/services"), &token).await.body, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_can_be_changed_and_cleared() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = project(&app, &token, "shop").await;
    let pid = p["id"].as_str().unwrap();
    let s = app.post(&format!("/projects/{pid}/services"), &token, json!({ "name": "web", "source_kind": "git", "source": "https://github.com/acme/web.git", "start_command": "./run" })).await.body;
    let id = s["id"].as_str().unwrap();
    let r = app.api(Method::PATCH, &format!("/services/{id}"), Some(&token), Some(json!({ "healthcheck_path": "/health", "restart_policy": "always" }))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((r.body["healthcheck_path"].as_str(), r.body["restart_policy"].as_str(), r.body["start_command"].as_str()), (Some("/health"), Some("always"), Some("./run")));
    let r = app.api(Method::PATCH, &format!("/services/{id}"), Some(&token), Some(json!({ "start_command": "" }))).await;
    assert_eq!(r.body["start_command"], Value::Null);
    let bad = app.api(Method::PATCH, &format!("/services/{id}"), Some(&token), Some(json!({ "replicas": 0 }))).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let del = app.api(Method::DELETE, &format!("/services/{id}"), Some(&token), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/services/{id}"), &token).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_free_plan_limits_services_replicas_and_memory() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = project(&app, &token, "shop").await;
    let pid = p["id"].as_str().unwrap();
    for name in ["a", "b", "c"] {
        let r = app.post(&format!("/projects/{pid}/services"), &token, json!({ "name": name, "source_kind": "image", "source": "nginx" })).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = app.post(&format!("/projects/{pid}/services"), &token, json!({ "name": "d", "source_kind": "image", "source": "nginx" })).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.error_message(), "Your Free plan allows 3 services per project and this project has 3. The Hobby plan allows it.");
    let id = app.get(&format!("/projects/{pid}/services"), &token).await.body[0]["id"].as_str().unwrap().to_string();
    let r = app.api(Method::PATCH, &format!("/services/{id}"), Some(&token), Some(json!({ "replicas": 2 }))).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert!(r.error_message().contains("up to 1 replicas"), "{}", r.text);
    let r = app.api(Method::PATCH, &format!("/services/{id}"), Some(&token), Some(json!({ "memory_mb": 1024 }))).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(app.get(&format!("/services/{id}"), &token).await.body["memory_mb"], 512);
    // CPU: Free allows one vCPU per service, Hobby eight.
    let r = app.api(Method::PATCH, &format!("/services/{id}"), Some(&token), Some(json!({ "cpu_millis": 2000 }))).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.text);
    assert_eq!(r.error_message(), "Your Free plan allows up to 1 vCPU per service; this asks for 2. The Hobby plan allows it.");
    assert_eq!(app.get(&format!("/services/{id}"), &token).await.body["cpu_millis"], 1000, "nothing changed");
    // The count is per project: another project has room for three of its own, and the
    // same service in another environment of a project counts once.
    let other = project(&app, &token, "blog").await;
    let r = app.post(&format!("/projects/{}/services", other["id"].as_str().unwrap()), &token, json!({ "name": "a", "source_kind": "image", "source": "nginx" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let env = app.post(&format!("/projects/{pid}/environments"), &token, json!({ "name": "staging" })).await;
    assert_eq!(env.status, StatusCode::CREATED, "{}", env.text);
    let staging = env.body["id"].as_str().unwrap();
    let r = app.post(&format!("/projects/{pid}/services"), &token, json!({ "name": "a", "environment_id": staging, "source_kind": "image", "source": "nginx" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "a is one of the project's three already: {}", r.text);
    let r = app.post(&format!("/projects/{pid}/services"), &token, json!({ "name": "e", "environment_id": staging, "source_kind": "image", "source": "nginx" })).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_are_encrypted_masked_when_secret_and_revealed_with_an_audit_entry() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = project(&app, &token, "shop").await;
    let pid = p["id"].as_str().unwrap();
    let s = app.post(&format!("/projects/{pid}/services"), &token, json!({ "name": "web", "source_kind": "image", "source": "nginx" })).await.body;
    let id = s["id"].as_str().unwrap();
    let put = |name: &str, body: Value| {
        let path = format!("/services/{id}/variables/{name}");
        let (app, token) = (&app, token.clone());
        async move { app.api(Method::PUT, &path, Some(&token), Some(body)).await }
    };

    let r = put("NODE_ENV", json!({ "value": "production" })).await;
    assert_eq!((r.status, r.body["value"].as_str(), r.body["secret"].as_bool()), (StatusCode::OK, Some("production"), Some(false)));
    let r = put("API_KEY", json!({ "value": "sk-live-123", "secret": true })).await;
    assert_eq!(r.body["value"], Value::Null, "a secret is masked as soon as it is saved");
    let r = put("SESSION_SECRET", json!({ "value": "${{secret(16, \"ab\")}}" })).await;
    assert_eq!(r.body["secret"], true, "generated secrets are secret");
    let r = put("DATABASE_URL", json!({ "value": "${{Postgres.DATABASE_URL}}" })).await;
    assert_eq!(r.body["value"], "${{Postgres.DATABASE_URL}}", "references are kept for deploy time");

    let list = app.get(&format!("/services/{id}/variables"), &token).await.body;
    let by_name = |n: &str| list.as_array().unwrap().iter().find(|v| v["name"] == n).unwrap().clone();
    assert_eq!(by_name("NODE_ENV")["value"], "production");
    assert_eq!(by_name("API_KEY")["value"], Value::Null);
    assert_eq!(by_name("SESSION_SECRET")["value"], Value::Null);

    let sealed: Vec<Vec<u8>> = sqlx::query_scalar("SELECT value_sealed FROM variables").fetch_all(&app.db).await.unwrap();
    assert!(sealed.iter().all(|b| !b.windows(11).any(|w| w == b"sk-live-123")), "values are not stored in the clear");

    let reveal = |name: &str| {
        let path = format!("/services/{id}/variables/{name}/reveal");
        let (app, token) = (&app, token.clone());
        async move { app.api(Method::POST, &path, Some(&token), None).await }
    };
    assert_eq!(reveal("API_KEY").await.body["value"], "sk-live-123");
    let generated = reveal("SESSION_SECRET").await.body["value"].as_str().unwrap().to_string();
    assert_eq!(generated.len(), 16);
    assert!(generated.chars().all(|c| c == 'a' || c == 'b'));
    assert_eq!(reveal("SESSION_SECRET").await.body["value"], generated.as_str(), "generated once, when saved");
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'variable.reveal'").fetch_one(&app.db).await.unwrap();
    assert_eq!(audited, 3);

    let r = put("API_KEY", json!({ "value": "sk-live-456", "secret": true })).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(reveal("API_KEY").await.body["value"], "sk-live-456", "PUT replaces");
    let del = app.api(Method::DELETE, &format!("/services/{id}/variables/API_KEY"), Some(&token), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(reveal("API_KEY").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_variables_are_refused_with_the_reason() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = project(&app, &token, "shop").await;
    let pid = p["id"].as_str().unwrap();
    let s = app.post(&format!("/projects/{pid}/services"), &token, json!({ "name": "web", "source_kind": "image", "source": "nginx" })).await.body;
    let id = s["id"].as_str().unwrap();
    for (name, value, field, message) in [
        ("1BAD", "x", "name", "Variable names use letters"),
        ("OK", "${{unclosed", "value", "never closed"),
        ("OK", "${{secret(0)}}", "value", "secret(length) takes a length"),
        ("OK", "${{a.b.c}}", "value", "is not a valid reference"),
    ] {
        let r = app.api(Method::PUT, &format!("/services/{id}/variables/{name}"), Some(&token), Some(json!({ "value": value }))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{value}");
        assert_eq!(r.error_field(), field);
        assert!(r.error_message().contains(message), "{}", r.text);
    }
    assert_eq!(app.get(&format!("/services/{id}/variables"), &token).await.body, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_variables_belong_to_the_environment() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = project(&app, &token, "shop").await;
    let env = p["environments"][0]["id"].as_str().unwrap();
    let r = app.api(Method::PUT, &format!("/environments/{env}/variables/API_URL"), Some(&token), Some(json!({ "value": "https://api.example.com" }))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["service_id"], Value::Null);
    let list = app.get(&format!("/environments/{env}/variables"), &token).await;
    assert_eq!(list.body[0]["value"], "https://api.example.com");
    let del = app.api(Method::DELETE, &format!("/environments/{env}/variables/API_URL"), Some(&token), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cannot_see_or_change_another_users_services_or_variables() {
    let app = TestApp::new().await;
    let ada = app.verified_user("Ada", "ada@example.com").await;
    let bob = app.verified_user("Bob", "bob@example.com").await;
    let p = project(&app, &ada, "shop").await;
    let pid = p["id"].as_str().unwrap();
    let env = p["environments"][0]["id"].as_str().unwrap();
    let s = app.post(&format!("/projects/{pid}/services"), &ada, json!({ "name": "web", "source_kind": "image", "source": "nginx" })).await.body;
    let sid = s["id"].as_str().unwrap();
    app.api(Method::PUT, &format!("/services/{sid}/variables/API_KEY"), Some(&ada), Some(json!({ "value": "k", "secret": true }))).await;
    app.api(Method::PUT, &format!("/environments/{env}/variables/SHARED"), Some(&ada), Some(json!({ "value": "s" }))).await;
    let bobs = project(&app, &bob, "bobs").await;
    let bob_env = bobs["id"].as_str().unwrap();

    let attempts = [
        (Method::GET, format!("/projects/{pid}/services"), None),
        (Method::POST, format!("/projects/{pid}/services"), Some(json!({ "name": "x", "source_kind": "image", "source": "nginx" }))),
        (Method::POST, format!("/projects/{bob_env}/services"), Some(json!({ "name": "x", "source_kind": "image", "source": "nginx", "environment_id": env }))),
        (Method::GET, format!("/services/{sid}"), None),
        (Method::PATCH, format!("/services/{sid}"), Some(json!({ "name": "mine" }))),
        (Method::DELETE, format!("/services/{sid}"), None),
        (Method::GET, format!("/services/{sid}/variables"), None),
        (Method::PUT, format!("/services/{sid}/variables/API_KEY"), Some(json!({ "value": "stolen" }))),
        (Method::POST, format!("/services/{sid}/variables/API_KEY/reveal"), None),
        (Method::DELETE, format!("/services/{sid}/variables/API_KEY"), None),
        (Method::GET, format!("/environments/{env}/variables"), None),
        (Method::PUT, format!("/environments/{env}/variables/SHARED"), Some(json!({ "value": "x" }))),
        (Method::DELETE, format!("/environments/{env}/variables/SHARED"), None),
    ];
    for (method, path, body) in attempts {
        let r = app.api(method.clone(), &path, Some(&bob), body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}: {}", r.text);
    }
    let after = app.get(&format!("/services/{sid}"), &ada).await;
    assert_eq!(after.body["name"], "web");
    let reveal = app.api(Method::POST, &format!("/services/{sid}/variables/API_KEY/reveal"), Some(&ada), None).await;
    assert_eq!(reveal.body["value"], "k");
    assert_eq!(app.get(&format!("/environments/{env}/variables"), &ada).await.body[0]["value"], "s");
}
