//! The deploy engine end to end: real processes from a fixture directory, the reconciler, the
//! proxy and the logs, against a real Postgres.

use crate::helpers::*;
use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use server::runtime::procfs;
use std::{
    path::{Path, PathBuf},
    time::Duration,
};
use tower::ServiceExt;

pub fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello")
}

/// A copy of the fixture app that a test may change (`VERSION` file: what it answers).
pub fn fixture_copy(version: &str) -> PathBuf {
    let (dir, _) = test_data_dir();
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(fixture().join("app.py"), src.join("app.py")).unwrap();
    std::fs::write(src.join("VERSION"), version).unwrap();
    src
}

pub struct Setup {
    pub token: String,
    pub project: String,
    pub service: String,
}

/// A verified user, a project "shop", and a service "web" whose source is `src` uploaded as
/// an archive (what any user does).
pub async fn setup(app: &TestApp, src: &Path, extra: Value) -> Setup {
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = app.post("/projects", &token, json!({ "name": "shop" })).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let project = p.body["id"].as_str().unwrap().to_string();
    let service = add_service(app, &token, &project, "web", src, extra).await;
    Setup { token, project, service }
}

/// Adds an upload service and uploads `src` as its source.
pub async fn add_service(app: &TestApp, token: &str, project: &str, name: &str, src: &Path, extra: Value) -> String {
    let mut body = json!({ "name": name, "source_kind": "upload", "start_command": "python3 app.py",
        "healthcheck_path": "/health", "healthcheck_timeout_secs": 20 });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let s = app.post(&format!("/projects/{project}/services"), token, body).await;
    assert_eq!(s.status, StatusCode::CREATED, "{}", s.text);
    let id = s.body["id"].as_str().unwrap().to_string();
    let r = upload(app, token, &id, targz(src)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    id
}

/// A folder as a .tar.gz, the way `tar czf - -C src .` makes it.
pub fn targz(src: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        b.follow_symlinks(false);
        b.append_dir_all(".", src).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    out
}

/// `POST /services/{id}/source` with an archive body.
pub async fn upload(app: &TestApp, token: &str, service: &str, archive: Vec<u8>) -> Reply {
    let req = Request::builder()
        .method("POST")
        .uri(format!("/api/v1/services/{service}/source"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/gzip")
        .body(Body::from(archive))
        .unwrap();
    app.send(req).await
}

pub async fn set_var(app: &TestApp, token: &str, service: &str, name: &str, value: &str, secret: bool) {
    let r = app
        .api(axum::http::Method::PUT, &format!("/services/{service}/variables/{name}"), Some(token), Some(json!({ "value": value, "secret": secret })))
        .await;
    assert!(r.status.is_success(), "{}", r.text);
}

pub async fn deploy(app: &TestApp, token: &str, service: &str) -> String {
    let r = app.post(&format!("/services/{service}/deployments"), token, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "queued");
    r.body["id"].as_str().unwrap().to_string()
}

/// Waits until the deployment reaches one of `statuses`; fails with its events and logs if not.
pub async fn wait_for(app: &TestApp, token: &str, id: &str, statuses: &[&str]) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let d = app.get(&format!("/deployments/{id}"), token).await;
        let status = d.body["deployment"]["status"].as_str().unwrap_or_default().to_string();
        if statuses.contains(&status.as_str()) {
            return d.body;
        }
        let settled = ["failed", "crashed", "cancelled", "removed"].contains(&status.as_str());
        if settled || std::time::Instant::now() > deadline {
            let logs = app.get(&format!("/deployments/{id}/logs?format=text"), token).await;
            panic!("deployment stayed {status}, wanted {statuses:?}\nevents: {}\nlogs:\n{}", d.body["events"], logs.text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn logs_text(app: &TestApp, token: &str, id: &str) -> String {
    app.get(&format!("/deployments/{id}/logs?format=text"), token).await.text
}

/// Polls until `check` holds on the proxied answer for `path`.
pub async fn until_proxy(app: &TestApp, path: &str, check: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = app.via_proxy("web.shop.localhost", path).await;
        if check(&r) {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "the proxy kept answering {} {}", r.status, r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_deploys_answers_through_the_proxy_and_its_logs_hide_secrets() {
    let app = TestApp::with_runtime().await;
    let s = setup(&app, &fixture(), json!({})).await;
    set_var(&app, &s.token, &s.service, "API_TOKEN", "tok-5ecret-value-123", true).await;
    set_var(&app, &s.token, &s.service, "SELF_URL", "${{ROUNDHOUSE_PUBLIC_URL}}/x", false).await;
    let id = deploy(&app, &s.token, &s.service).await;
    let d = wait_for(&app, &s.token, &id, &["running"]).await;
    let events: Vec<&str> = d["events"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(events, ["queued", "building", "deploying", "running"]);
    assert_eq!(d["public_url"], "http://web.shop.localhost:3000");

    let r = app.via_proxy("web.shop.localhost", "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.starts_with("hello v1 from web"), "{}", r.text);

    // The process gets its own variables and built-ins, and nothing of the platform's.
    let env = app.via_proxy("web.shop.localhost", "/env").await.body;
    assert_eq!(env["API_TOKEN"], "tok-5ecret-value-123");
    assert_eq!(env["SELF_URL"], "http://web.shop.localhost:3000/x");
    assert_eq!(env["ROUNDHOUSE_SERVICE_NAME"], "web");
    assert_eq!(env["ROUNDHOUSE_PROJECT_NAME"], "shop");
    assert_eq!(env["ROUNDHOUSE_ENVIRONMENT_NAME"], "production");
    assert!(env["ROUNDHOUSE_PRIVATE_DOMAIN"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(env.get("DATABASE_URL").is_none() && env.get("CARGO_MANIFEST_DIR").is_none(), "no platform variables leak: {env}");

    // Output is captured per stream, with the secret masked.
    let logs = app.get(&format!("/deployments/{id}/logs"), &s.token).await.body;
    let lines = logs.as_array().unwrap();
    let started = lines.iter().find(|l| l["line"].as_str().unwrap().contains("hello v1 starting")).expect("the app's first line");
    assert_eq!(started["stream"], "stdout");
    assert!(started["line"].as_str().unwrap().ends_with("token=••••••"), "{started}");
    assert!(lines.iter().any(|l| l["stream"] == "stderr" && l["line"] == "a line on stderr"));
    assert!(!logs_text(&app, &s.token, &id).await.contains("5ecret"));
    let found = app.get(&format!("/deployments/{id}/logs?search=ON%20STDERR"), &s.token).await.body;
    assert_eq!(found.as_array().unwrap().len(), 1, "search is case-insensitive");

    // Following streams stored lines and then new ones.
    let req = Request::builder()
        .uri(format!("/api/v1/deployments/{id}/logs?follow=true"))
        .header(header::AUTHORIZATION, format!("Bearer {}", s.token))
        .body(Body::empty())
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body();
    let mut seen = String::new();
    app.via_proxy("web.shop.localhost", "/burst?n=3").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("burst line 2") {
        let frame = tokio::time::timeout_at(deadline, body.frame()).await.expect("live lines arrive").unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(seen.contains("event: status\ndata: running"), "{seen}");
    let stored = seen.find("hello v1 starting").expect("the stored lines");
    assert!(stored < seen.find("burst line 0").unwrap(), "stored lines come first, then the new ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_process_is_restarted() {
    let app = TestApp::with_runtime().await;
    let s = setup(&app, &fixture(), json!({ "restart_policy": "on_failure", "restart_max": 3 })).await;
    let id = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &id, &["running"]).await;
    let before = app.via_proxy("web.shop.localhost", "/").await.text;
    app.via_proxy("web.shop.localhost", "/crash").await;
    let after = until_proxy(&app, "/", |r| r.status == StatusCode::OK && r.text != before).await;
    assert!(after.text.starts_with("hello v1"), "{}", after.text);
    let d = app.get(&format!("/deployments/{id}"), &s.token).await.body;
    assert_eq!(d["deployment"]["status"], "running");
    assert_eq!(d["instances"][0]["restarts"], 1);
    assert!(logs_text(&app, &s.token, &id).await.contains("The process exited with code 3; restarting in 1s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_stops_no_service_and_loses_no_log_line() {
    let app = TestApp::with_runtime().await;
    let s = setup(&app, &fixture(), json!({})).await;
    set_var(&app, &s.token, &s.service, "TICK_MS", "100", false).await;
    let id = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &id, &["running"]).await;
    let before = until_proxy(&app, "/", |r| r.status == StatusCode::OK).await.text;
    let instance = "SELECT id, pid FROM instances WHERE state = 'healthy'";
    let (instance_id, pid): (uuid::Uuid, i32) = sqlx::query_as(instance).fetch_one(&app.db).await.unwrap();

    // Postgres is away for three seconds; the service answers throughout, the same process.
    let db = app._database.clone();
    let outage = tokio::spawn(async move { db.outage(Duration::from_secs(3)).await });
    // Asked every 200 ms for as long as it lasts. How many answers fit depends on the machine's
    // load (CI runs eight tests at once on two cores): what counts is that every one came, from
    // the same process, and that the asking spanned the outage.
    let started = std::time::Instant::now();
    let mut answers = Vec::new();
    while !outage.is_finished() {
        answers.push(app.via_proxy("web.shop.localhost", "/").await.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    outage.await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(3), "the outage lasted its three seconds");
    assert!(answers.len() >= 3 && answers.iter().all(|a| *a == before), "during the outage: {answers:?}");

    // The replica leads again and adopts the instance: same process, same answers, no restart.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let leads: Option<i64> = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 21103 AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
            .fetch_one(&app.db)
            .await
            .ok();
        if leads == Some(1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the replica did not lead again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.via_proxy("web.shop.localhost", "/").await.text, before);
    let after: Vec<(uuid::Uuid, i32)> = sqlx::query_as("SELECT id, pid FROM instances WHERE state <> 'stopped'").fetch_all(&app.db).await.unwrap();
    assert_eq!(after, [(instance_id, pid)], "one instance, the same process");
    let d = app.get(&format!("/deployments/{id}"), &s.token).await.body;
    assert_eq!(d["deployment"]["status"], "running", "{d}");

    // Every tick it printed is in its logs, the ones printed while Postgres was away too.
    let logs = logs_text(&app, &s.token, &id).await;
    let ticks: Vec<u32> = logs.lines().filter_map(|l| l.rsplit_once("tick ").and_then(|(_, n)| n.parse().ok())).collect();
    assert!(ticks.len() >= 60, "{} ticks in the logs:\n{logs}", ticks.len());
    assert!(ticks.iter().enumerate().all(|(i, &n)| n as usize == i), "a gap in the ticks: {ticks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_health_check_fails_the_deployment_and_the_old_one_keeps_serving() {
    let app = TestApp::with_runtime().await;
    let s = setup(&app, &fixture(), json!({ "healthcheck_timeout_secs": 3 })).await;
    let first = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &first, &["running"]).await;
    let serving = until_proxy(&app, "/", |r| r.status == StatusCode::OK).await.text;
    set_var(&app, &s.token, &s.service, "UNHEALTHY", "1", false).await;
    let second = deploy(&app, &s.token, &s.service).await;
    let d = wait_for(&app, &s.token, &second, &["failed"]).await;
    let reason = d["deployment"]["reason"].as_str().unwrap();
    assert!(reason.contains("health check GET /health did not succeed within 3s (it answered 500)"), "{reason}");
    let old = app.get(&format!("/deployments/{first}"), &s.token).await.body;
    assert_eq!(old["deployment"]["status"], "running");
    let r = app.via_proxy("web.shop.localhost", "/").await;
    assert_eq!((r.status, &r.text), (StatusCode::OK, &serving), "the very instance that served before still serves");
    // Only the first deployment's instance is left: the failed one's unit is gone entirely.
    let instance: uuid::Uuid = sqlx::query_scalar("SELECT i.id FROM instances i WHERE i.deployment_id = $1::uuid AND i.state = 'healthy'")
        .bind(&first)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(app.live_units(), vec![format!("i-{instance}")], "the failed deployment's processes are gone");
}

/// The fixture app deployed as version 1, then uploaded and deployed as version 2: answers the
/// setup and both deployments' ids once version 2 runs.
async fn two_versions(app: &TestApp) -> (Setup, String, String) {
    let src = fixture_copy("1");
    let s = setup(app, &src, json!({})).await;
    let v1 = deploy(app, &s.token, &s.service).await;
    wait_for(app, &s.token, &v1, &["running"]).await;
    std::fs::write(src.join("VERSION"), "2").unwrap();
    assert_eq!(upload(app, &s.token, &s.service, targz(&src)).await.status, StatusCode::CREATED);
    let v2 = deploy(app, &s.token, &s.service).await;
    wait_for(app, &s.token, &v2, &["running"]).await;
    (s, v1, v2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_deployment_replaces_the_old_a_rollback_brings_it_back_and_stop_leaves_nothing() {
    let app = TestApp::with_runtime().await;
    let (s, v1, v2) = two_versions(&app).await;
    until_proxy(&app, "/", |r| r.text.starts_with("hello v2")).await;
    let old = wait_for(&app, &s.token, &v1, &["removed"]).await;
    assert_eq!(old["deployment"]["reason"], "Replaced by deployment #2");

    // A deployment that never ran cannot be rolled back to; the running one is not a rollback.
    let r = app.post(&format!("/deployments/{v2}/rollback"), &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = app.post(&format!("/deployments/{v1}/rollback"), &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!((r.body["trigger"].as_str(), r.body["number"].as_i64()), (Some("rollback"), Some(3)));
    let v3 = r.body["id"].as_str().unwrap().to_string();
    wait_for(&app, &s.token, &v3, &["running"]).await;
    // The first build runs again.
    until_proxy(&app, "/", |r| r.text.starts_with("hello v1")).await;
    wait_for(&app, &s.token, &v2, &["removed"]).await;

    let r = app.post(&format!("/deployments/{v3}/stop"), &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "removed");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !app.live_units().is_empty() {
        assert!(std::time::Instant::now() < deadline, "processes left after stop: {:?}", app.live_units());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = until_proxy(&app, "/", |r| r.status != StatusCode::OK).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(r.text.contains("Nothing is deployed at web.shop.localhost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_reaches_its_postgres_through_a_reference() {
    let app = TestApp::with_runtime().await;
    let s = setup(&app, &fixture(), json!({})).await;
    let r = app.post(&format!("/projects/{}/services", s.project), &s.token, json!({ "name": "Postgres", "source_kind": "database", "source": "postgres" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let pg = r.body["id"].as_str().unwrap().to_string();
    set_var(&app, &s.token, &s.service, "DATABASE_URL", "${{Postgres.DATABASE_URL}}", false).await;
    let pg_deploy = deploy(&app, &s.token, &pg).await;
    let web_deploy = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &pg_deploy, &["running"]).await;
    wait_for(&app, &s.token, &web_deploy, &["running"]).await;
    let r = app.via_proxy("web.shop.localhost", "/db").await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "42"), "the app reached its database");
    let env = app.via_proxy("web.shop.localhost", "/env").await.body;
    assert!(env.get("PGPASSWORD").is_none(), "only referenced values reach the app");
    let url = env["DATABASE_URL"].as_str().unwrap();
    let password = url.split(':').nth(2).unwrap().split('@').next().unwrap();
    assert_eq!(password.len(), 32);
    let pg_logs = logs_text(&app, &s.token, &pg_deploy).await;
    assert!(pg_logs.contains("initdb"), "{pg_logs}");
    assert!(!pg_logs.contains(password) && !logs_text(&app, &s.token, &web_deploy).await.contains(password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_cycle_or_an_image_is_refused_before_anything_starts() {
    let app = TestApp::new().await;
    let s = setup(&app, &fixture(), json!({})).await;
    let api = add_service(&app, &s.token, &s.project, "api", &fixture(), json!({})).await;
    set_var(&app, &s.token, &s.service, "API_URL", "${{api.URL}}", false).await;
    set_var(&app, &s.token, &s.service, "HOST", "${{API_URL}}", false).await;
    set_var(&app, &s.token, &api, "URL", "${{web.HOST}}", false).await;
    let r = app.post(&format!("/services/{}/deployments", s.service), &s.token, json!({})).await;
    assert_eq!((r.status, r.error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "variables"));
    assert_eq!(r.error_message(), "Reference cycle: api.URL → web.HOST → web.API_URL → api.URL");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 0, "nothing was queued");

    let img = app
        .post(&format!("/projects/{}/services", s.project), &s.token, json!({ "name": "nginx", "source_kind": "image", "source": "nginx:1.27" }))
        .await;
    // The local runtime says it cannot run images; the domain refuses before queueing.
    let (dir, _) = test_data_dir();
    let app_local = TestApp::on(app._database.clone(), |c| { c.runtime = app::infra::RuntimeKind::Local; c.data_dir = dir; }, std::sync::Arc::new(app::infra::mail::OutboxOnly));
    let local = server::runtime::local::LocalRuntime::new(server::runtime::local::Settings::from_config(&app_local.state.config), app_local.db.clone()).unwrap();
    app_local.state.set_refused_sources(server::runtime::refusals(&local));
    let r = app_local.post(&format!("/services/{}/deployments", img.body["id"].as_str().unwrap()), &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.error_message().contains("needs the Kubernetes runtime"), "{}", r.error_message());
    assert_eq!(r.error_field(), "source");
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments").fetch_one(&app.db).await.unwrap();
    assert_eq!(queued, 0, "nothing was queued");
    server::runtime::local::LocalRuntime::destroy(&app_local.state.config.data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_are_private_to_their_owner() {
    let app = TestApp::new().await;
    let s = setup(&app, &fixture(), json!({})).await;
    let id = deploy(&app, &s.token, &s.service).await;
    let eve = app.verified_user("Eve", "eve@example.com").await;
    for path in [
        format!("/deployments/{id}"),
        format!("/deployments/{id}/logs"),
        format!("/services/{}/deployments", s.service),
        format!("/services/{}/metrics", s.service),
    ] {
        assert_eq!(app.get(&path, &eve).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    for action in ["cancel", "rollback", "restart", "stop", "redeploy"] {
        assert_eq!(app.post(&format!("/deployments/{id}/{action}"), &eve, json!({})).await.status, StatusCode::NOT_FOUND, "{action}");
    }
    assert_eq!(app.post(&format!("/services/{}/deployments", s.service), &eve, json!({})).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/projects/{}/events", s.project), &eve).await.status, StatusCode::NOT_FOUND);
    // The owner can cancel the queued deployment (no runtime runs here).
    let r = app.post(&format!("/deployments/{id}/cancel"), &s.token, json!({})).await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("cancelled")));
    let r = app.post(&format!("/deployments/{id}/cancel"), &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "a cancelled deployment cannot be cancelled again");
}

/// The real `roundhouse` binary, reconciling the test's database, killed and started at will.
struct Platform {
    child: std::process::Child,
    addr: String,
}

impl Platform {
    async fn start(app: &TestApp, dir: &std::path::Path, ports: (u16, u16)) -> Platform {
        let addr = format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_roundhouse"))
            .env("DATABASE_URL", app._database.url())
            .env("ROUNDHOUSE_ADDR", &addr)
            .env("ROUNDHOUSE_PUBLIC_URL", "http://127.0.0.1:3000")
            .env("ROUNDHOUSE_DATA_DIR", dir)
            .env("ROUNDHOUSE_PRIVATE_PORTS", format!("{}-{}", ports.0, ports.1))
            .env("ROUNDHOUSE_SECRET_KEY", test_key_base64())
            .env("ROUNDHOUSE_DEV_ADMIN_EMAIL", "")
            .env("ROUNDHOUSE_SANDBOX_OUTBOUND", "false")
            .env("LEPTOS_OUTPUT_NAME", "roundhouse")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the roundhouse binary starts");
        let p = Platform { child, addr };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while p.http("127.0.0.1", "/healthz").await.0 != 200 {
            assert!(std::time::Instant::now() < deadline, "the platform did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p
    }

    /// A raw HTTP/1.1 GET (status, body).
    async fn http(&self, host: &str, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::TcpStream::connect(&self.addr).await else { return (0, String::new()) };
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        if s.write_all(req.as_bytes()).await.is_err() {
            return (0, String::new());
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out).to_string();
        let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (code, body)
    }

    /// A raw HTTP/1.1 POST with a bearer token and a JSON body (status, body).
    async fn post(&self, path: &str, token: &str, body: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::TcpStream::connect(&self.addr).await else { return (0, String::new()) };
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(req.as_bytes()).await.is_err() {
            return (0, String::new());
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out).to_string();
        let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
    }

    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: a graceful shutdown, which leaves the services it runs running.
    fn terminate(&mut self) {
        procfs::signal(self.child.id() as i32, libc_sigterm());
        let _ = self.child.wait();
    }
}

fn libc_sigterm() -> i32 {
    15
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_platform_mid_deploy_converges_with_no_orphan_and_no_duplicate() {
    let app = TestApp::new().await;
    let (dir, ports) = test_data_dir();
    let _cleanup = RuntimeGuard { reconciler: None, dir: dir.clone() };
    let units = || server::runtime::local::LocalRuntime::live_units_of(&dir);
    let src = fixture_copy("1");
    let s = setup(&app, &src, json!({ "build_command": "echo building && sleep 3 && echo built" })).await;

    let mut first = Platform::start(&app, &dir, ports).await;
    let v1 = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &v1, &["running"]).await;
    std::fs::write(src.join("VERSION"), "2").unwrap();
    assert_eq!(upload(&app, &s.token, &s.service, targz(&src)).await.status, StatusCode::CREATED);
    let v2 = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &v2, &["building"]).await;
    // The build command itself runs (not the unpacking before it) when the platform dies.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !logs_text(&app, &s.token, &v2).await.lines().any(|l| l.ends_with("[build] building")) {
        assert!(std::time::Instant::now() < deadline, "the build never started: {:?}", units());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill_hard();
    // What the dead platform left: v1's instance and v2's build.
    let left = units();
    assert_eq!(left.len(), 2, "an instance and a build outlive a SIGKILLed platform: {left:?}");

    let mut second = Platform::start(&app, &dir, ports).await;
    let d = wait_for(&app, &s.token, &v2, &["running"]).await;
    let reasons: Vec<&str> = d["events"].as_array().unwrap().iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert!(reasons.contains(&"Roundhouse restarted during this deployment; starting it again"), "{reasons:?}");
    wait_for(&app, &s.token, &v1, &["removed"]).await;
    // Converged: one instance, of the new deployment, answering through the new platform.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while units().len() != 1 {
        assert!(std::time::Instant::now() < deadline, "expected one unit, found {:?}", units());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, body) = second.http("web.shop.localhost", "/").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("hello v2"), "{body}");
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE state <> 'stopped'").fetch_one(&app.db).await.unwrap();
    assert_eq!(live, 1, "one instance recorded as running");
    second.terminate();
}

/// The ticks of a deployment's logs (the fixture's `tick N` lines), in order.
async fn ticks(app: &TestApp, token: &str, id: &str) -> Vec<u32> {
    let logs = logs_text(app, token, id).await;
    logs.lines().filter_map(|l| l.rsplit_once("tick ").and_then(|(_, n)| n.parse().ok())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_restart_leaves_the_service_running_the_same_process_with_no_gap_in_its_logs() {
    let app = TestApp::new().await;
    let (dir, ports) = test_data_dir();
    let _cleanup = RuntimeGuard { reconciler: None, dir: dir.clone() };
    let units = || server::runtime::local::LocalRuntime::live_units_of(&dir);
    let s = setup(&app, &fixture(), json!({})).await;
    set_var(&app, &s.token, &s.service, "TICK_MS", "50", false).await;
    let mut first = Platform::start(&app, &dir, ports).await;
    let d = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &d, &["running"]).await;
    let boot = loop {
        let b = boot_via(&first).await;
        if !b.is_empty() {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let instance = "SELECT id, pid FROM instances WHERE state <> 'stopped'";
    let before: Vec<(uuid::Uuid, i32)> = sqlx::query_as(instance).fetch_all(&app.db).await.unwrap();
    assert_eq!(before.len(), 1);

    // Killed (SIGKILL), then shut down gracefully (SIGTERM): after each, the next process of
    // the platform takes the same process back, and it answers through the new proxy.
    for (n, how) in ["SIGKILL", "SIGTERM"].into_iter().enumerate() {
        if how == "SIGKILL" {
            first.kill_hard();
        } else {
            first.terminate();
        }
        // With no platform at all, the service runs on and its output is kept.
        let left = units();
        assert_eq!(left.len(), 1, "the instance outlives a platform stopped by {how}: {left:?}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        first = Platform::start(&app, &dir, ports).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now = boot_via(&first).await;
            if now == boot {
                break;
            }
            assert!(now.is_empty(), "after {how}, a new process answers ({now}) instead of the one that ran ({boot})");
            assert!(std::time::Instant::now() < deadline, "after {how}, the new platform does not route to the instance");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Routed at once (the routes are in the database); taken back by the new leader.
        while logs_text(&app, &s.token, &d).await.matches("ran on while Roundhouse was away").count() < n + 1 {
            assert!(std::time::Instant::now() < deadline, "after {how}, the new platform did not take the instance back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(boot_via(&first).await, boot, "after {how}, the same process answers");
        let after: Vec<(uuid::Uuid, i32)> = sqlx::query_as(instance).fetch_all(&app.db).await.unwrap();
        assert_eq!(after, before, "after {how}: one instance, the same process");
        assert_eq!(units().len(), 1, "after {how}: nothing new started");
    }

    // Every tick it printed is in its logs, those printed while no platform ran too, each once.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = ticks(&app, &s.token, &d).await;
    while seen.len() < 80 {
        assert!(std::time::Instant::now() < deadline, "{} ticks in the logs", seen.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen = ticks(&app, &s.token, &d).await;
    }
    assert!(seen.iter().enumerate().all(|(i, &n)| n as usize == i), "a gap or a repeat in the ticks: {seen:?}");
    let shown = app.get(&format!("/deployments/{d}"), &s.token).await.body;
    assert_eq!(shown["deployment"]["status"], "running", "{shown}");
    let logs = logs_text(&app, &s.token, &d).await;
    assert_eq!(logs.matches("ran on while Roundhouse was away").count(), 2, "{logs}");
    assert_eq!(logs.matches("started on port").count(), 1, "no instance started anew: {logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_crashed_while_no_platform_ran_has_its_last_words_logged_and_restarts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::new().await;
    let (dir, ports) = test_data_dir();
    let _cleanup = RuntimeGuard { reconciler: None, dir: dir.clone() };
    let units = || server::runtime::local::LocalRuntime::live_units_of(&dir);
    let s = setup(&app, &fixture(), json!({ "restart_policy": "on_failure", "restart_max": 3 })).await;
    let mut first = Platform::start(&app, &dir, ports).await;
    let d = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &d, &["running"]).await;
    let (port, network): (i32, Option<String>) = sqlx::query_as("SELECT port, network FROM instances WHERE state <> 'stopped'").fetch_one(&app.db).await.unwrap();
    first.kill_hard();

    // No platform runs: the service is asked to crash directly, in its network.
    let at = app::infra::live::Endpoint { network, addr: ([127, 0, 0, 1], port as u16).into() };
    let mut conn = server::runtime::net::connect(&at).await.expect("the instance runs on");
    conn.write_all(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let _ = conn.read_to_end(&mut Vec::new()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !units().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the instance did not end: {:?}", units());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The next platform reads what it printed last, sees how it ended, and restarts it per its
    // policy, as if it had watched.
    let _second = Platform::start(&app, &dir, ports).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let logs = logs_text(&app, &s.token, &d).await;
        if logs.contains("The process exited with code 3; restarting in 1s (restart 1)") && units().len() == 1 {
            assert!(logs.contains("crashing on purpose"), "{logs}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not restarted:\n{logs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = app.get(&format!("/deployments/{d}"), &s.token).await.body;
    assert_eq!(shown["deployment"]["status"], "running", "{shown}");
    assert_eq!(shown["instances"][0]["restarts"], 1, "{shown}");
}

/// Requests through the proxy, four at a time, until `stop`: every answer's status and body.
fn hammer(app: &TestApp, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<Vec<(StatusCode, String)>> {
    let router = app.router.clone();
    tokio::spawn(async move {
        let mut workers = Vec::new();
        for _ in 0..4 {
            let (router, stop) = (router.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let req = Request::builder().uri("/").header(header::HOST, "web.shop.localhost:3000").body(Body::empty()).unwrap();
                    let resp = router.clone().oneshot(req).await.unwrap();
                    let status = resp.status();
                    let body = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).to_string();
                    seen.push((status, body));
                }
                seen
            }));
        }
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_deployments_drops_no_request_and_sends_none_to_an_instance_not_ready() {
    let app = TestApp::with_runtime().await;
    let src = fixture_copy("1");
    let s = setup(&app, &src, json!({})).await;
    let v1 = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &v1, &["running"]).await;
    until_proxy(&app, "/", |r| r.status == StatusCode::OK).await;
    // Every later instance takes 1.5 s to get ready: traffic must wait for it.
    set_var(&app, &s.token, &s.service, "READY_DELAY_MS", "1500", false).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers = hammer(&app, stop.clone());
    // A new version replaces the old one.
    std::fs::write(src.join("VERSION"), "2").unwrap();
    assert_eq!(upload(&app, &s.token, &s.service, targz(&src)).await.status, StatusCode::CREATED);
    let v2 = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &v2, &["running"]).await;
    wait_for(&app, &s.token, &v1, &["removed"]).await;
    let stats = app.via_proxy("web.shop.localhost", "/stats").await.body;
    assert_eq!((stats["version"].as_str(), stats["early_requests"].as_i64()), (Some("2"), Some(0)), "{stats}");
    // A rollback brings the first build back.
    let r = app.post(&format!("/deployments/{v1}/rollback"), &s.token, json!({})).await;
    let v3 = r.body["id"].as_str().unwrap().to_string();
    wait_for(&app, &s.token, &v3, &["running"]).await;
    wait_for(&app, &s.token, &v2, &["removed"]).await;
    // A restart runs the same build in fresh instances.
    let r = app.post(&format!("/deployments/{v3}/restart"), &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let v4 = r.body["id"].as_str().unwrap().to_string();
    wait_for(&app, &s.token, &v4, &["running"]).await;
    wait_for(&app, &s.token, &v3, &["removed"]).await;
    let stats = app.via_proxy("web.shop.localhost", "/stats").await.body;
    assert_eq!((stats["version"].as_str(), stats["early_requests"].as_i64()), (Some("1"), Some(0)), "{stats}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = answers.await.unwrap();

    let bad: Vec<&(StatusCode, String)> = answers.iter().filter(|(st, body)| *st != StatusCode::OK || !body.starts_with("hello v")).collect();
    assert!(bad.is_empty(), "{} of {} requests failed during the switches, e.g. {:?}", bad.len(), answers.len(), &bad[..bad.len().min(3)]);
    assert!(answers.iter().any(|(_, b)| b.starts_with("hello v2")) && answers.iter().any(|(_, b)| b.starts_with("hello v1")));
    assert!(answers.len() > 50, "a steady stream: {} requests", answers.len());
}

/// The `boot` of the instance answering through a platform process (empty when none answers).
async fn boot_via(p: &Platform) -> String {
    let (code, body) = p.http("web.shop.localhost", "/").await;
    if code != 200 {
        return String::new();
    }
    body.rsplit(' ').next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_platform_replicas_share_one_database_and_the_survivor_takes_over() {
    let app = TestApp::new().await;
    let (dir, ports) = test_data_dir();
    let _cleanup = RuntimeGuard { reconciler: None, dir: dir.clone() };
    let s = setup(&app, &fixture(), json!({})).await;
    // Two replicas on one database (and, here, one machine and data folder).
    let mut first = Platform::start(&app, &dir, ports).await;
    let second = Platform::start(&app, &dir, ports).await;
    let doubled: i64 = sqlx::query_scalar("SELECT count(*) - count(DISTINCT version) FROM _sqlx_migrations").fetch_one(&app.db).await.unwrap();
    assert_eq!(doubled, 0, "every migration ran once");

    let d = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &d, &["running"]).await;
    // One leads and runs the service; the other learns the routes through NOTIFY and routes too.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let boot = loop {
        let (a, b) = (boot_via(&first).await, boot_via(&second).await);
        if !a.is_empty() && a == b {
            break a;
        }
        assert!(std::time::Instant::now() < deadline, "both replicas should route to the one instance: {a:?} {b:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The reconciler's advisory lock (0x526f756e6468) in this test's database.
    let leaders: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 21103 AND objid = 1970168936 AND objsubid = 1
           AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(leaders, 1, "one replica holds the reconciler's lock");

    // The first (the leader: it started first) dies; the survivor takes over and adopts the
    // instance it ran: the same process answers, nothing new starts.
    first.kill_hard();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let leading: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 21103 AND objid = 1970168936 AND objsubid = 1
               AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        let adopted = logs_text(&app, &s.token, &d).await.contains("ran on while Roundhouse was away");
        if leading == 1 && adopted {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the survivor did not take over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(boot_via(&second).await, boot, "the same process answers");
    assert_eq!(server::runtime::local::LocalRuntime::live_units_of(&dir).len(), 1);
    let d = app.get(&format!("/deployments/{d}"), &s.token).await.body;
    assert_eq!(d["deployment"]["status"], "running");
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE state <> 'stopped'").fetch_one(&app.db).await.unwrap();
    assert_eq!(live, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_made_through_either_replica_happens_once() {
    let app = TestApp::new().await;
    let (dir, ports) = test_data_dir();
    let _cleanup = RuntimeGuard { reconciler: None, dir: dir.clone() };
    let src = fixture_copy("1");
    let s = setup(&app, &src, json!({})).await;
    let first = Platform::start(&app, &dir, ports).await;
    let second = Platform::start(&app, &dir, ports).await;

    // Through the replica that does not lead: the leader hears of it and deploys it, once.
    let (code, body) = second.post(&format!("/api/v1/services/{}/deployments", s.service), &s.token, "{}").await;
    assert_eq!(code, 201, "{body}");
    let v1 = serde_json::from_str::<Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    wait_for(&app, &s.token, &v1, &["running"]).await;
    // And through the leader: the new one replaces the old, once.
    std::fs::write(src.join("VERSION"), "2").unwrap();
    assert_eq!(upload(&app, &s.token, &s.service, targz(&src)).await.status, StatusCode::CREATED);
    let (code, body) = first.post(&format!("/api/v1/services/{}/deployments", s.service), &s.token, "{}").await;
    assert_eq!(code, 201, "{body}");
    let v2 = serde_json::from_str::<Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    wait_for(&app, &s.token, &v2, &["running"]).await;
    wait_for(&app, &s.token, &v1, &["removed"]).await;

    let deployments: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments").fetch_one(&app.db).await.unwrap();
    assert_eq!(deployments, 2, "one deployment per request");
    let runs: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status::text, count(*) FROM deployment_events WHERE status IN ('building', 'running') GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(runs, [("building".to_string(), 2), ("running".to_string(), 2)], "each was built and went live once");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let live: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE state <> 'stopped'").fetch_one(&app.db).await.unwrap();
        let units = server::runtime::local::LocalRuntime::live_units_of(&dir);
        if live == 1 && units.len() == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "one instance expected: {live} recorded, units {units:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Either replica answers with the new version.
    for p in [&first, &second] {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !p.http("web.shop.localhost", "/").await.1.starts_with("hello v2") {
            assert!(std::time::Instant::now() < deadline, "a replica does not route to the new version");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_a_new_database_migrate_it_once() {
    let db = std::sync::Arc::new(TestDb::empty().await);
    let app = TestApp::on(db, |_| {}, std::sync::Arc::new(app::infra::mail::OutboxOnly));
    let (dir, ports) = test_data_dir();
    let _cleanup = RuntimeGuard { reconciler: None, dir: dir.clone() };
    let (a, b) = tokio::join!(Platform::start(&app, &dir, ports), Platform::start(&app, &dir, ports));
    let (versions, distinct): (i64, i64) = sqlx::query_as("SELECT count(*), count(DISTINCT version) FROM _sqlx_migrations WHERE success")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(versions, server::seed::MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).count() as i64);
    assert_eq!(versions, distinct, "no migration ran twice");
    for p in [&a, &b] {
        assert_eq!(p.http("127.0.0.1", "/readyz").await.0, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_backs_off_doubling_and_gives_up_after_its_restart_limit() {
    let app = TestApp::with_runtime().await;
    let s = setup(&app, &fixture(), json!({ "restart_policy": "on_failure", "restart_max": 3 })).await;
    set_var(&app, &s.token, &s.service, "CRASH_AT_START", "1", false).await;
    let d = deploy(&app, &s.token, &s.service).await;
    let failed = wait_for(&app, &s.token, &d, &["failed"]).await;
    assert_eq!(failed["deployment"]["reason"], "The process ended before it was ready: The process exited with code 3 after 3 restarts");
    let logs = logs_text(&app, &s.token, &d).await;
    let restarts: Vec<&str> = logs.lines().filter_map(|l| l.split("[system] ").nth(1)).filter(|l| l.contains("restarting in")).collect();
    assert_eq!(
        restarts,
        [
            "The process exited with code 3; restarting in 1s (restart 1)",
            "The process exited with code 3; restarting in 2s (restart 2)",
            "The process exited with code 3; restarting in 4s (restart 3)",
        ]
    );
    assert_eq!(logs.matches("crashing at start on purpose").count(), 4, "the first start and three restarts");
    assert!(app.live_units().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let app = TestApp::with_runtime().await;
    let s = setup(&app, &fixture(), json!({})).await;
    set_var(&app, &s.token, &s.service, "IGNORE_TERM", "1", false).await;
    let d = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &d, &["running"]).await;
    let r = app.post(&format!("/deployments/{d}/stop"), &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !logs_text(&app, &s.token, &d).await.contains("Still running 10s after SIGTERM: killed") || !app.live_units().is_empty() {
        assert!(std::time::Instant::now() < deadline, "not killed after the grace period: {:?}", app.live_units());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_health_check_ready_means_listening_on_port() {
    let app = TestApp::with_runtime().await;
    let s = setup(&app, &fixture(), json!({ "healthcheck_path": "" })).await;
    let d = deploy(&app, &s.token, &s.service).await;
    let running = wait_for(&app, &s.token, &d, &["running"]).await;
    let events: Vec<&str> = running["events"].as_array().unwrap().iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert!(events.contains(&"1 instance(s) ready"), "{events:?}");
    assert_eq!(app.via_proxy("web.shop.localhost", "/").await.status, StatusCode::OK);

    // A web service (it has a port) that never listens fails within its timeout.
    let idle = add_service(&app, &s.token, &s.project, "idle", &fixture(), json!({
        "start_command": "sleep 600", "healthcheck_path": "", "port": 8080, "healthcheck_timeout_secs": 2,
    }))
    .await;
    let d = deploy(&app, &s.token, &idle).await;
    let failed = wait_for(&app, &s.token, &d, &["failed"]).await;
    let reason = failed["deployment"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("The process did not listen on its PORT (") && reason.ends_with(") within 2s."), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phase_past_its_deadline_with_no_one_working_on_it_fails() {
    let app = TestApp::with_runtime().await;
    let s = setup(&app, &fixture(), json!({})).await;
    // A deployment left deploying by a replica that is gone, its deadline passed.
    let spec: serde_json::Value = app.get(&format!("/services/{}", s.service), &s.token).await.body;
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO deployments (service_id, number, status, trigger, spec, deadline)
         VALUES ($1::uuid, 1, 'deploying', 'deploy', $2, now() - interval '1 second') RETURNING id",
    )
    .bind(&s.service)
    .bind(&spec)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let d = wait_for(&app, &s.token, &id.to_string(), &["failed"]).await;
    assert_eq!(d["deployment"]["reason"], "Its deadline passed with no progress");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_deploy_command_runs_once_before_traffic_and_its_failure_keeps_the_old_deployment() {
    let app = TestApp::with_runtime().await;
    let s = setup(&app, &fixture(), json!({ "pre_deploy_command": "echo migrating the schema; echo to stderr >&2" })).await;
    let first = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &first, &["running"]).await;
    let logs = logs_text(&app, &s.token, &first).await;
    let at = |needle: &str| logs.find(needle).unwrap_or_else(|| panic!("no {needle:?} in\n{logs}"));
    // The command's own output line (the system line announcing it quotes it too).
    assert!(at("] migrating the schema") < at("The pre-deploy command succeeded"));
    assert!(at("The pre-deploy command succeeded") < at("Instance 0 started"), "it ran before any instance");
    assert_eq!(logs.matches("] migrating the schema").count(), 1, "once:\n{logs}");

    // A failing command fails the new deployment; the old one keeps serving.
    let r = app
        .api(axum::http::Method::PATCH, &format!("/services/{}", s.service), Some(&s.token), Some(json!({ "pre_deploy_command": "echo cannot migrate; exit 3" })))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["pre_deploy_command"], "echo cannot migrate; exit 3");
    let second = deploy(&app, &s.token, &s.service).await;
    let failed = wait_for(&app, &s.token, &second, &["failed"]).await;
    assert_eq!(failed["deployment"]["reason"], "The pre-deploy command exited with code 3.");
    assert!(logs_text(&app, &s.token, &second).await.contains("cannot migrate"));
    let d = app.get(&format!("/deployments/{first}"), &s.token).await;
    assert_eq!(d.body["deployment"]["status"], "running");
    assert_eq!(app.via_proxy("web.shop.localhost", "/").await.status, StatusCode::OK);
}

/// Build retention: with one build kept per service, pruning removes the build of a replaced
/// deployment (and its record), keeps the running one's, and a rollback to the pruned one
/// builds its source again and runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_builds_are_pruned_and_a_rollback_to_one_builds_it_again() {
    let app = TestApp::with_runtime_config(|c| c.builds_kept = 1).await;
    let (s, v1, v2) = two_versions(&app).await;
    wait_for(&app, &s.token, &v1, &["removed"]).await;
    let artifact = |id: String| {
        let db = app.db.clone();
        async move { sqlx::query_scalar::<_, Option<String>>("SELECT artifact FROM deployments WHERE id = $1::uuid").bind(id).fetch_one(&db).await.unwrap() }
    };
    let (old, new) = (artifact(v1.clone()).await.expect("v1's build"), artifact(v2.clone()).await.expect("v2's build"));
    let reconciler = app.runtime.as_ref().and_then(|r| r.reconciler.clone()).expect("a reconciler");

    // A deployment changed within the hour may have a rollback or a build under way: kept.
    assert_eq!(reconciler.prune_builds().await.unwrap(), 0);
    assert!(std::path::Path::new(&old).is_dir());
    sqlx::query("UPDATE deployments SET updated_at = now() - interval '2 hours'").execute(&app.db).await.unwrap();
    assert_eq!(reconciler.prune_builds().await.unwrap(), 1);
    assert!(!std::path::Path::new(&old).exists(), "the replaced deployment's build is gone");
    assert!(std::path::Path::new(&new).join("app").is_dir(), "the running deployment's build stays");
    assert_eq!(artifact(v1.clone()).await, None, "and its deployment no longer points at it");
    assert_eq!(artifact(v2.clone()).await.as_deref(), Some(new.as_str()));
    assert_eq!(reconciler.prune_builds().await.unwrap(), 0, "pruning again removes nothing");

    // From an uploaded archive, the removed build is built again as it was.
    let r = app.post(&format!("/deployments/{v1}/rollback"), &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let v3 = r.body["id"].as_str().unwrap().to_string();
    wait_for(&app, &s.token, &v3, &["running"]).await;
    until_proxy(&app, "/", |r| r.text.starts_with("hello v1")).await;
    let logs = logs_text(&app, &s.token, &v3).await;
    assert!(!logs.contains("Using the build of the deployment this one repeats"), "it was built again: {logs}");
}

/// A git source has moved on since its build was removed: rolling back to it would deploy
/// today's code under an old number, so it is refused with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_to_a_removed_build_of_a_git_source_is_refused() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = app.post("/projects", &token, json!({ "name": "shop" })).await;
    let s = app
        .post(&format!("/projects/{}/services", p.body["id"].as_str().unwrap()), &token,
            json!({ "name": "web", "source_kind": "git", "source": "https://example.com/web.git" }))
        .await;
    assert_eq!(s.status, StatusCode::CREATED, "{}", s.text);
    let old: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO deployments (service_id, number, status, trigger, spec, running_at, artifact)
         VALUES ($1::uuid, 1, 'removed', 'deploy', '{\"source_kind\": \"git\"}', now(), NULL) RETURNING id",
    )
    .bind(s.body["id"].as_str().unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    let r = app.post(&format!("/deployments/{old}/rollback"), &token, json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.error_message().contains("was removed"), "{}", r.text);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 1, "nothing was queued");
}
