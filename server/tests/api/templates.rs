//! Deploying templates: for real on the local runtime, and every way a deploy is refused
//! (each leaves nothing behind).

use crate::{deploys::wait_for, helpers::*};
use axum::http::{header, StatusCode};
use serde_json::{json, Value};

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&app.db).await.unwrap()
}

async fn deploy(app: &TestApp, token: &str, slug: &str, body: Value) -> Reply {
    app.post(&format!("/templates/{slug}/deploy"), token, body).await
}

/// The names and deployment ids of what a template deploy queued.
fn queued(r: &Reply) -> Vec<(String, String)> {
    r.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert!(s["error"].is_null(), "{s}");
            (s["name"].as_str().unwrap().to_string(), s["deployment"]["id"].as_str().unwrap().to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_static_site_template_deploys_and_answers() {
    let app = TestApp::with_runtime().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let r = deploy(&app, &token, "static-site", json!({ "project_name": "site" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let services = queued(&r);
    assert_eq!(services.len(), 1);
    wait_for(&app, &token, &services[0].1, &["running"]).await;
    let page = app.via_proxy("web.site.localhost", "/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("Your static site is live"), "{}", page.text);
    let deploys: i32 = sqlx::query_scalar("SELECT deploy_count FROM templates WHERE slug = 'static-site'").fetch_one(&app.db).await.unwrap();
    assert_eq!(deploys, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_redis_templates_deploy_into_one_project_and_run() {
    let app = TestApp::with_runtime().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = app.post("/projects", &token, json!({ "name": "data" })).await;
    let project = p.body["id"].as_str().unwrap().to_string();
    let pg = deploy(&app, &token, "postgresql", json!({ "project_id": project })).await;
    assert_eq!(pg.status, StatusCode::CREATED, "{}", pg.text);
    let redis = deploy(&app, &token, "redis", json!({ "project_id": project })).await;
    assert_eq!(redis.status, StatusCode::CREATED, "{}", redis.text);
    for (name, id) in queued(&pg).into_iter().chain(queued(&redis)) {
        let d = wait_for(&app, &token, &id, &["running"]).await;
        assert_eq!(d["deployment"]["status"], "running", "{name}");
    }
    let services = app.get(&format!("/projects/{project}/services"), &token).await;
    let names: Vec<&str> = services.body.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Postgres", "Redis"]);
    assert_eq!(services.body[0]["volume_path"], "/var/lib/postgresql/data");

    // Deploying the same template again into the same environment is a conflict that names
    // the service, and creates nothing more.
    let before = count(&app, "services").await;
    let again = deploy(&app, &token, "redis", json!({ "project_id": project })).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.error_message().contains("\"Redis\""), "{}", again.text);
    assert_eq!(count(&app, "services").await, before);
}

/// An admin saves and publishes `source` (template `slug`); a Hobby user deploys it. Answers the
/// user's token, the deploy's answer, and each service's queued deployment by name.
async fn publish_and_deploy(app: &TestApp, source: &str, slug: &str) -> (String, Reply, std::collections::HashMap<String, String>) {
    app.register("Root", "root@example.com").await;
    app.make_admin("root@example.com").await;
    let admin = app.browser_login("root@example.com").await;
    for (name, form) in [("admin_save_template", vec![("source", source)]), ("admin_set_template_flags", vec![("slug", slug), ("published", "true")])] {
        let r = app.server_fn(name, Some(&admin), &form).await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.text);
    }
    let token = app.verified_user("Ada", "ada@example.com").await;
    sqlx::query("UPDATE users SET plan_id = 'hobby' WHERE email = 'ada@example.com'").execute(&app.db).await.unwrap();
    let r = deploy(app, &token, slug, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let ids = queued(&r).into_iter().collect();
    (token, r, ids)
}

const NEEDS: &str = r#"version = 1
[template]
slug = "needs"
name = "Needs"
summary = "Services that wait for others."
category = "starter"

[[services]]
name = "db"
source = { kind = "database", engine = "postgres" }
memory_mb = 256

[[services]]
name = "broken"
source = { kind = "sample", name = "static-site" }
build = "echo this build breaks >&2; exit 3"
memory_mb = 128

[[services]]
name = "web"
source = { kind = "sample", name = "static-site" }
memory_mb = 128
depends_on = [{ service = "db", condition = "healthy" }]

[[services]]
name = "after-broken"
source = { kind = "sample", name = "static-site" }
memory_mb = 128
depends_on = [{ service = "broken", condition = "healthy" }]
"#;

/// When the deployment's status moved to `status` (its first such event).
async fn moved_at(app: &TestApp, deployment: &str, status: &str) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT min(at) FROM deployment_events WHERE deployment_id = $1::uuid AND status = $2")
        .bind(deployment)
        .bind(status)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_dependencies_start_in_order_and_a_failed_one_fails_its_dependents_by_name() {
    let app = TestApp::with_runtime().await;
    let (token, r, ids) = publish_and_deploy(&app, NEEDS, "needs").await;

    // web waits for db to be healthy: it starts building only once db runs.
    wait_for(&app, &token, &ids["web"], &["running"]).await;
    let db_running = moved_at(&app, &ids["db"], "running").await;
    let web_building = moved_at(&app, &ids["web"], "building").await;
    assert!(web_building >= db_running, "web built at {web_building}, before db ran at {db_running}");

    // after-broken never builds: it fails, naming broken and why broken failed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let failed = loop {
        let d = app.get(&format!("/deployments/{}", ids["after-broken"]), &token).await;
        if d.body["deployment"]["status"] == "failed" {
            break d.body;
        }
        assert!(std::time::Instant::now() < deadline, "after-broken stayed {}", d.body["deployment"]["status"]);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let reason = failed["deployment"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("It waits for broken to be healthy, but broken's deployment #1 failed: "), "{reason}");
    let built: i64 = sqlx::query_scalar("SELECT count(*) FROM deployment_events WHERE deployment_id = $1::uuid AND status = 'building'")
        .bind(&ids["after-broken"])
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(built, 0, "it never started building");
    let logs = app.get(&format!("/deployments/{}/logs?format=text", ids["after-broken"]), &token).await;
    assert!(logs.text.contains("It waits for broken"), "{}", logs.text);

    // Declared dependencies are arrows on the canvas.
    let cookie = app.browser_login("ada@example.com").await;
    let project = r.body["project_id"].as_str().unwrap();
    let page = app.page(&format!("/projects/{project}"), Some(&cookie)).await;
    assert!(page.text.contains(r#"data-edge="web uses db""#) && page.text.contains(r#"data-edge="after-broken uses broken""#), "{}", page.text);
    // One view of the whole stack: what runs, and each failure with its reason.
    assert!(page.text.contains("2 of 4 running · 2 failed"), "{}", page.text);
    assert!(page.text.contains(r#"data-failed="broken""#) && page.text.contains(r#"data-failed="after-broken""#));
    assert!(page.text.contains("It waits for broken to be healthy"));
}

const BY_NAME: &str = r#"version = 1
[template]
slug = "by-name"
name = "By name"
summary = "Services that call each other by their names."
category = "starter"

[[services]]
name = "db"
source = { kind = "database", engine = "postgres" }
memory_mb = 256

[[services]]
name = "api"
source = { kind = "sample", name = "static-site" }
memory_mb = 128
port = 8080

[[services]]
name = "caller"
source = { kind = "sample", name = "static-site" }
memory_mb = 128
depends_on = [{ service = "db", condition = "healthy" }, { service = "api", condition = "healthy" }]
pre_deploy = '''
python3 - <<'PY'
import socket, time, urllib.request
for attempt in range(100):
    try:
        socket.create_connection(("db", 5432), 2).close()
        for url in ("http://api/", "http://api:8080/"):
            body = urllib.request.urlopen(url, timeout=2).read().decode()
            assert "Your static site is live" in body, body
        print("reached db:5432, http://api/ and http://api:8080/ as", socket.gethostbyname("db"), socket.gethostbyname("api"))
        break
    except OSError as e:
        print("not yet:", e)
        time.sleep(0.2)
else:
    raise SystemExit(1)
try:
    socket.gethostbyname("elsewhere")
    raise SystemExit("a name of no service here resolved")
except socket.gaierror:
    print("elsewhere does not resolve")
PY
'''
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reach_each_other_by_their_bare_names_and_usual_ports() {
    let app = TestApp::with_runtime().await;
    let (token, _, ids) = publish_and_deploy(&app, BY_NAME, "by-name").await;
    // The caller's pre-deploy command must succeed for it to run.
    wait_for(&app, &token, &ids["caller"], &["running"]).await;
    let logs = app.get(&format!("/deployments/{}/logs?format=text", ids["caller"]), &token).await;
    assert!(logs.text.contains("reached db:5432, http://api/ and http://api:8080/ as 127.1."), "{}", logs.text);
    assert!(logs.text.contains("elsewhere does not resolve"), "{}", logs.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_become_shared_variables_generated_ones_secret() {
    let app = TestApp::with_runtime().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let r = deploy(&app, &token, "python-http", json!({ "project_name": "hello", "inputs": { "GREETING": "roundhouse" } })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let (_, id) = queued(&r).remove(0);
    wait_for(&app, &token, &id, &["running"]).await;
    let answer = app.via_proxy("api.hello.localhost", "/").await;
    assert_eq!(answer.body["hello"], "roundhouse", "{}", answer.text);
    let env = r.body["environment_id"].as_str().unwrap();
    let shared = app.get(&format!("/environments/{env}/variables"), &token).await;
    assert_eq!(shared.status, StatusCode::OK, "{}", shared.text);
    assert_eq!(shared.body[0]["name"], "GREETING");
    assert_eq!(shared.body[0]["value"], "roundhouse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_deploy_names_the_reason_and_creates_nothing() {
    let app = TestApp::with_runtime().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let projects_before = count(&app, "projects").await;
    let nothing_changed = |app: &TestApp| {
        let app_db = app.db.clone();
        async move {
            let after: (i64, i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM projects), (SELECT count(*) FROM services), (SELECT count(*) FROM variables)",
            )
            .fetch_one(&app_db)
            .await
            .unwrap();
            after
        }
    };

    // An image template on the local runtime.
    let image = deploy(&app, &token, "ghost", json!({})).await;
    assert_eq!(image.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", image.text);
    assert!(image.error_message().contains("ghost runs the image ghost:5-alpine, which needs an image-capable runtime"), "{}", image.text);
    // A required input left out, a generated one given, an unknown one.
    for (inputs, field) in [
        (json!({}), "inputs.REPOSITORY"),
        (json!({ "REPOSITORY": "https://example.com/a.git", "SECRET_KEY": "mine" }), "inputs.SECRET_KEY"),
        (json!({ "REPOSITORY": "https://example.com/a.git", "COLOUR": "red" }), "inputs.COLOUR"),
        (json!({ "REPOSITORY": "file:///etc" }), "inputs.REPOSITORY"),
    ] {
        let r = deploy(&app, &token, "django-postgres", json!({ "inputs": inputs })).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.error_field(), field, "{}", r.text);
    }
    // The plan: the Free plan has three services. Three one-service templates fit in a
    // project; a fourth is refused, naming the plan with room.
    let p = app.post("/projects", &token, json!({ "name": "data" })).await;
    let project = p.body["id"].as_str().unwrap().to_string();
    for slug in ["postgresql", "redis", "static-site"] {
        let r = deploy(&app, &token, slug, json!({ "project_id": project })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{slug}: {}", r.text);
    }
    let mid = nothing_changed(&app).await;
    let over = deploy(&app, &token, "python-http", json!({ "project_id": project })).await;
    assert_eq!(over.status, StatusCode::PAYMENT_REQUIRED, "{}", over.text);
    assert_eq!(
        over.error_message(),
        "Your Free plan allows 3 services per project and this project has 3. The Hobby plan allows it."
    );
    assert_eq!(nothing_changed(&app).await, mid, "the refused deploy left no project, service or variable");
    // Refused after its new project was made (a new project has room for services, but the
    // plan allows less memory than the template asks): the project goes too.
    sqlx::query("UPDATE plans SET max_memory_mb = 64 WHERE id = 'free'").execute(&app.db).await.unwrap();
    let in_new = deploy(&app, &token, "python-http", json!({ "project_name": "fourth" })).await;
    assert_eq!(in_new.status, StatusCode::PAYMENT_REQUIRED, "{}", in_new.text);
    assert!(in_new.error_message().starts_with("Your Free plan allows up to 64 MB of memory per service"), "{}", in_new.text);
    sqlx::query("UPDATE plans SET max_memory_mb = 512 WHERE id = 'free'").execute(&app.db).await.unwrap();
    assert_eq!(nothing_changed(&app).await, mid, "the new project was removed with the rest");
    assert_eq!(count(&app, "projects").await, projects_before + 1, "refused deploys into new projects left none");
    // Unknown templates, and another user's project.
    assert_eq!(deploy(&app, &token, "nope", json!({})).await.status, StatusCode::NOT_FOUND);
    let eve = app.verified_user("Eve", "eve@example.com").await;
    let cross = deploy(&app, &eve, "static-site", json!({ "project_id": project })).await;
    assert_eq!(cross.status, StatusCode::NOT_FOUND, "{}", cross.text);
    assert_eq!(nothing_changed(&app).await, mid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_out_visitors_are_sent_to_sign_in_and_back_to_the_deploy() {
    let app = TestApp::new().await;
    let r = app.page("/templates/redis/deploy", None).await;
    assert!(r.status.is_redirection(), "{} {}", r.status, r.text);
    assert_eq!(r.headers[header::LOCATION], "/login?next=/templates/redis/deploy");
    app.verified_user("Ada", "ada@example.com").await;
    let cookie = app.browser_login("ada@example.com").await;
    let page = app.page("/templates/redis/deploy", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains(r#"data-testid="deploy-form""#), "{}", page.text);
    assert!(page.text.contains("Deploy Redis"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_project_canvas_draws_each_service_and_an_arrow_for_each_reference() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    sqlx::query("UPDATE users SET plan_id = 'hobby' WHERE email = 'ada@example.com'").execute(&app.db).await.unwrap();
    let p = app.post("/projects", &token, json!({ "name": "wired" })).await;
    let project = p.body["id"].as_str().unwrap().to_string();
    for (name, kind, source) in [("Postgres", "database", "postgres"), ("Redis", "database", "redis"), ("api", "upload", ""), ("lonely", "upload", "")] {
        let r = app.post(&format!("/projects/{project}/services"), &token, json!({ "name": name, "source_kind": kind, "source": source })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let services = app.get(&format!("/projects/{project}/services"), &token).await;
    let id = |n: &str| services.body.as_array().unwrap().iter().find(|s| s["name"] == n).unwrap()["id"].as_str().unwrap().to_string();
    for (var, value) in [("DATABASE_URL", "${{Postgres.DATABASE_URL}}"), ("REDIS_URL", "${{Redis.REDIS_URL}}/0"), ("SELF", "${{PORT}}")] {
        let r = app.api(axum::http::Method::PUT, &format!("/services/{}/variables/{var}", id("api")), Some(&token), Some(json!({ "value": value }))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let cookie = app.browser_login("ada@example.com").await;
    let links = app.server_fn("service_links", Some(&cookie), &[("project_id", &project)]).await;
    assert_eq!(links.status, StatusCode::OK, "{}", links.text);
    let mut got: Vec<(String, String)> = links.body.as_array().unwrap().iter()
        .map(|l| (l["from"].as_str().unwrap().to_string(), l["to"].as_str().unwrap().to_string())).collect();
    got.sort();
    let mut want = vec![(id("api"), id("Postgres")), (id("api"), id("Redis"))];
    want.sort();
    assert_eq!(got, want, "api uses Postgres and Redis; its own ${{{{PORT}}}} is no arrow");
    assert!(!links.text.contains("postgresql://"), "no value leaves the server");

    let page = app.page(&format!("/projects/{project}"), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains(r#"data-testid="canvas""#), "{}", page.text);
    for n in ["Postgres", "Redis", "api", "lonely"] {
        assert!(page.text.contains(&format!(r#"data-node="{n}""#)), "no card for {n}");
    }
    assert!(page.text.contains(r#"data-edge="api uses Postgres""#) && page.text.contains(r#"data-edge="api uses Redis""#));
    assert_eq!(page.text.matches("data-edge=").count(), 2);
}

/// Polls a deployment's logs until `needle` shows up (or fails after `secs`).
async fn until_logged(app: &TestApp, token: &str, deployment: &str, needle: &str, secs: u64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let logs = crate::deploys::logs_text(app, token, deployment).await;
        if logs.contains(needle) {
            return logs;
        }
        assert!(std::time::Instant::now() < deadline, "no {needle:?} in the logs within {secs}s:\n{logs}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_stack_deploys_its_worker_consumes_and_its_scheduler_runs_on_time() {
    let app = TestApp::with_runtime().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    sqlx::query("UPDATE users SET plan_id = 'hobby' WHERE email = 'ada@example.com'").execute(&app.db).await.unwrap();
    let r = deploy(&app, &token, "production-app", json!({ "project_name": "stack" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let services = queued(&r);
    let order: Vec<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(order, ["Postgres", "Redis", "api", "worker", "scheduler", "frontend"], "what a service needs is deployed before it");
    let id = |name: &str| services.iter().find(|(n, _)| n == name).unwrap().1.clone();
    for (name, d) in &services {
        let done = wait_for(&app, &token, d, &["running"]).await;
        if name == "scheduler" {
            let reason = done["deployment"]["reason"].as_str().unwrap();
            assert!(reason.starts_with("Scheduled: * * * * *, next run at "), "{reason}");
        }
    }

    // The API queues a job on Redis; the worker takes it and records it in Postgres.
    let posted = app.via_proxy_request("api.stack.localhost", axum::http::Method::POST, "/jobs").await;
    assert_eq!(posted.status, StatusCode::ACCEPTED, "{}", posted.text);
    let job = posted.body["job"].as_str().unwrap().to_string();
    until_logged(&app, &token, &id("worker"), &format!("worker: processed {job}"), 60).await;
    let stats = app.via_proxy("api.stack.localhost", "/").await;
    assert!(stats.body["jobs_done"].as_i64().unwrap() >= 1, "{}", stats.text);
    // The frontend reads the API over the private network.
    let page = app.via_proxy("frontend.stack.localhost", "/").await;
    assert!(page.text.contains("jobs done"), "{}", page.text);

    // The scheduler runs at the next minute, in its sandbox, its output in its logs; the job it
    // queues reaches the worker.
    let logs = until_logged(&app, &token, &id("scheduler"), "succeeded (exit code 0)", 75).await;
    assert!(logs.contains("scheduler: enqueued scheduled-"), "{logs}");
    until_logged(&app, &token, &id("worker"), "worker: processed scheduled-", 30).await;
    let runs: Vec<(Option<i32>, Option<String>)> = sqlx::query_as("SELECT exit_code, outcome FROM cron_runs").fetch_all(&app.db).await.unwrap();
    assert!(runs.iter().any(|r| r == &(Some(0), Some("succeeded".to_string()))), "{runs:?}");
    // A finished run leaves the scheduler scheduled, not crashed.
    let d = app.get(&format!("/deployments/{}", id("scheduler")), &token).await;
    assert_eq!(d.body["deployment"]["status"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_form_deploys_into_the_environment_chosen_and_only_into_ones_own() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = app.post("/projects", &token, json!({ "name": "shop" })).await;
    let project = p.body["id"].as_str().unwrap().to_string();
    let staging = app.post(&format!("/projects/{project}/environments"), &token, json!({ "name": "staging" })).await;
    let staging = staging.body["id"].as_str().unwrap().to_string();
    let cookie = app.browser_login("ada@example.com").await;

    let targets = app.server_fn("deploy_targets", Some(&cookie), &[]).await;
    let listed: Vec<&str> = targets.body.as_array().unwrap().iter().map(|t| t["environment"].as_str().unwrap()).collect();
    assert_eq!(listed, ["production", "staging"], "{}", targets.text);

    let target = format!("{project}/{staging}");
    let r = app.server_fn("deploy_template", Some(&cookie), &[("slug", "redis"), ("project_id", &target)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["environment_id"], staging.as_str());
    let env: String = sqlx::query_scalar("SELECT e.name FROM services s JOIN environments e ON e.id = s.environment_id WHERE s.name = 'Redis'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(env, "staging");

    // Someone else's environment, even named with one's own project, is not found.
    app.verified_user("Bob", "bob@example.com").await;
    let bob = app.browser_login("bob@example.com").await;
    let mine = app.post("/projects", &app.login("bob@example.com").await, json!({ "name": "bobs" })).await;
    let bobs = mine.body["id"].as_str().unwrap().to_string();
    let before = count(&app, "services").await;
    let r = app.server_fn("deploy_template", Some(&bob), &[("slug", "redis"), ("project_id", &format!("{bobs}/{staging}"))]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = app.server_fn("deploy_template", Some(&bob), &[("slug", "redis"), ("project_id", "not/ids")]).await;
    assert_eq!((r.status, r.fn_error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "project_id"), "{}", r.text);
    assert_eq!(count(&app, "services").await, before);
    // An environment without its project is refused before anything is made.
    let projects = count(&app, "projects").await;
    let r = app.post("/templates/redis/deploy", &app.login("bob@example.com").await, json!({ "environment_id": staging })).await;
    assert_eq!((r.status, r.error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "environment_id"), "{}", r.text);
    assert_eq!(count(&app, "projects").await, projects);
    let bob_targets = app.server_fn("deploy_targets", Some(&bob), &[]).await;
    assert!(!bob_targets.text.contains(&staging), "{}", bob_targets.text);
}
