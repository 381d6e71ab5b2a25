//! The reconciler's pipeline against a fake runtime (no sandbox, no processes): what it asks of
//! a runtime, the states a deployment goes through, and the phase each failure is counted under
//! in `/metrics`. In a test process of its own: the metrics recorder is global to a process.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use app::infra::live::Endpoint;
use axum::http::StatusCode;
use helpers::*;
use serde_json::{json, Value};
use server::{
    logs::LogSink,
    runtime::{Adoption, BuildJob, InstanceEvent, InstanceSpec, PrivateListener, Runtime, RuntimeError, Usage},
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Builds and runs nothing; fails where a service's commands say so: a build command with
/// `fail` fails the build, a start command with `never-ready` never gets ready.
#[derive(Default)]
struct FakeRuntime {
    started: Mutex<HashMap<Uuid, InstanceSpec>>,
    calls: Mutex<Vec<String>>,
}

impl FakeRuntime {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }
    async fn adopt(&self) -> anyhow::Result<Adoption> {
        Ok(Adoption { running: self.started.lock().unwrap().keys().copied().collect(), found: Vec::new(), cleaned: 0 })
    }
    async fn release(&self) {
        self.record("release".into());
    }
    async fn build(&self, job: BuildJob, logs: LogSink, _cancel: CancellationToken) -> Result<String, RuntimeError> {
        self.record(format!("build {}", job.spec.name));
        if job.spec.build_command.as_deref().is_some_and(|c| c.contains("fail")) {
            return Err(RuntimeError::user("The build failed: npm ERR! missing script: build"));
        }
        logs.system("built by the fake runtime").await;
        Ok(format!("fake:{}", job.deployment_id))
    }
    async fn has_artifact(&self, artifact: &str) -> bool {
        artifact.starts_with("fake:")
    }
    async fn start(&self, spec: InstanceSpec, _logs: LogSink, events: mpsc::UnboundedSender<InstanceEvent>) -> Result<Endpoint, RuntimeError> {
        self.record(format!("start {} replica {}", spec.spec.name, spec.replica));
        if spec.spec.start_command.as_deref().is_some_and(|c| c.contains("no-permission")) {
            return Err(RuntimeError::internal("The instance could not start.", "/srv/roundhouse/runtime/instances/1: permission denied"));
        }
        let _ = events.send(InstanceEvent::Started { instance_id: spec.instance_id, pid: 1 });
        self.started.lock().unwrap().insert(spec.instance_id, spec);
        Ok(Endpoint { network: None, addr: "127.0.0.1:9".parse().unwrap() })
    }
    async fn ready(&self, instance_id: Uuid, _deadline: Instant) -> Result<(), RuntimeError> {
        let never = self.started.lock().unwrap().get(&instance_id).is_some_and(|s| s.spec.start_command.as_deref().is_some_and(|c| c.contains("never-ready")));
        if never {
            return Err(RuntimeError::user("It did not answer its health check in time."));
        }
        Ok(())
    }
    async fn stop(&self, instance_id: Uuid) {
        if let Some(spec) = self.started.lock().unwrap().remove(&instance_id) {
            self.record(format!("stop {} replica {}", spec.spec.name, spec.replica));
        }
    }
    async fn usage(&self) -> Vec<(Uuid, Usage)> {
        Vec::new()
    }
    async fn private_listener(&self, _environment_id: Uuid, _addr: std::net::SocketAddrV4) -> Result<PrivateListener, RuntimeError> {
        Err("the fake runtime has no network".into())
    }
    fn private_addrs(&self, _private_port: u16, _known_ports: &[u16], _itself: bool) -> Vec<std::net::SocketAddrV4> {
        Vec::new()
    }
}

async fn settle(app: &TestApp, token: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = app.get(&format!("/deployments/{id}"), token).await;
        let status = d.body["deployment"]["status"].as_str().unwrap_or_default().to_string();
        if ["running", "failed", "crashed", "cancelled", "removed"].contains(&status.as_str()) {
            return d.body;
        }
        assert!(std::time::Instant::now() < deadline, "deployment stayed {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deploy(app: &TestApp, token: &str, project: &str, name: &str, build: Option<&str>, start: Option<&str>) -> String {
    let s = app
        .post(&format!("/projects/{project}/services"), token, json!({ "name": name, "source_kind": "image", "source": "nginx", "build_command": build, "start_command": start, "replicas": 1 }))
        .await;
    assert_eq!(s.status, StatusCode::CREATED, "{}", s.text);
    let d = app.post(&format!("/services/{}/deployments", s.body["id"].as_str().unwrap()), token, json!({})).await;
    assert_eq!(d.status, StatusCode::CREATED, "{}", d.text);
    d.body["id"].as_str().unwrap().to_string()
}

fn failures(metrics: &str, phase: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("roundhouse_deploy_failures_total{") && l.contains(&format!("phase=\"{phase}\"")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_builds_starts_and_goes_live_and_counts_each_failure_by_phase() {
    let app = TestApp::new().await;
    let fake = Arc::new(FakeRuntime::default());
    let _reconciler = server::reconciler::spawn(app.state.clone(), Some(fake.clone())).expect("a reconciler");
    let token = app.verified_user("Ada", "ada@example.com").await;
    sqlx::query("UPDATE users SET plan_id = 'pro'").execute(&app.db).await.unwrap();
    let p = app.post("/projects", &token, json!({ "name": "shop" })).await;
    let project = p.body["id"].as_str().unwrap().to_string();

    // A good one: built once, one instance started, running.
    let good = deploy(&app, &token, &project, "web", None, None).await;
    let d = settle(&app, &token, &good).await;
    assert_eq!(d["deployment"]["status"], "running", "{d}");
    assert_eq!(d["deployment"]["reason"], "1 instance(s) ready");
    assert_eq!(*fake.calls.lock().unwrap(), ["build web", "start web replica 0"]);

    // Its successor replaces it only once it is live: the old instance is stopped after.
    let d2 = app.post(&format!("/services/{}/deployments", d["deployment"]["service_id"].as_str().unwrap()), &token, json!({})).await;
    let second = d2.body["id"].as_str().unwrap().to_string();
    assert_eq!(settle(&app, &token, &second).await["deployment"]["status"], "running");
    let old = app.get(&format!("/deployments/{good}"), &token).await;
    assert_eq!(old.body["deployment"]["status"], "removed");
    assert_eq!(old.body["deployment"]["reason"], "Replaced by deployment #2");
    // The old instance is stopped once it has drained (a second out of the routes).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.calls.lock().unwrap().len() < 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.calls.lock().unwrap()[2..], ["build web", "start web replica 0", "stop web replica 0"]);

    // A failing build, and instances that never get ready: failed, with the runtime's reason.
    let broken = deploy(&app, &token, &project, "api", Some("npm run fail"), None).await;
    let d = settle(&app, &token, &broken).await;
    assert_eq!((d["deployment"]["status"].as_str(), d["deployment"]["reason"].as_str()), (Some("failed"), Some("The build failed: npm ERR! missing script: build")));
    let slow = deploy(&app, &token, &project, "worker", None, Some("serve --never-ready")).await;
    let d = settle(&app, &token, &slow).await;
    assert_eq!((d["deployment"]["status"].as_str(), d["deployment"]["reason"].as_str()), (Some("failed"), Some("It did not answer its health check in time.")));
    assert!(fake.started.lock().unwrap().values().all(|s| s.spec.name == "web"), "the instance that never got ready was stopped");
    // What the runtime says for the platform's log only (a host path) never reaches the user.
    let denied = deploy(&app, &token, &project, "cron", None, Some("serve --no-permission")).await;
    let d = settle(&app, &token, &denied).await;
    assert_eq!((d["deployment"]["status"].as_str(), d["deployment"]["reason"].as_str()), (Some("failed"), Some("The instance could not start.")));
    // The failure's line reaches the logs through the writer, a moment after the status.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = app.get(&format!("/deployments/{denied}/logs"), &token).await.text;
        if logs.contains("The instance could not start.") || std::time::Instant::now() > deadline {
            break logs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(logs.contains("The instance could not start.") && !logs.contains("/srv/"), "{logs}");

    let req = axum::http::Request::builder().uri("/metrics").body(axum::body::Body::empty()).unwrap();
    let metrics = app.send(req).await.text;
    assert_eq!((failures(&metrics, "build"), failures(&metrics, "ready"), failures(&metrics, "start")), (1, 1, 1), "{metrics}");
    // How long each phase took, as histograms: four builds (one failing), three starts and
    // three readiness waits (one never ready) — at least: the other test of this process
    // deploys too.
    let count = |phase: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("roundhouse_deploy_phase_seconds_count{") && l.contains(&format!("phase=\"{phase}\"")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(count("build") >= 4 && count("start") >= 3 && count("ready") >= 3, "{metrics}");
    assert!(metrics.contains("roundhouse_log_queue_lines"), "{metrics}");
}

/// The server process holding the reconciler's advisory lock in the test's database.
async fn lock_holder(app: &TestApp) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 21103 AND objid = 1970168936 AND objsubid = 1
           AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_optional(&app.db)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_lock_stops_nothing_and_the_next_leadership_adopts_what_runs() {
    let app = TestApp::new().await;
    let fake = Arc::new(FakeRuntime::default());
    let _reconciler = server::reconciler::spawn(app.state.clone(), Some(fake.clone())).expect("a reconciler");
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = app.post("/projects", &token, json!({ "name": "shop" })).await;
    let project = p.body["id"].as_str().unwrap().to_string();
    let web = deploy(&app, &token, &project, "web", None, None).await;
    assert_eq!(settle(&app, &token, &web).await["deployment"]["status"], "running");
    let instance: Uuid = sqlx::query_scalar("SELECT id FROM instances WHERE state = 'healthy'").fetch_one(&app.db).await.unwrap();

    // The leader's lock connection dies (Postgres restarted, a network blip).
    let first = lock_holder(&app).await.expect("the reconciler leads");
    sqlx::query("SELECT pg_terminate_backend($1)").bind(first).execute(&app.db).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while lock_holder(&app).await.is_none_or(|pid| pid == first) {
        assert!(std::time::Instant::now() < deadline, "the replica did not lead again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A few ticks of the new leadership: the instance was adopted, nothing stopped or started.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(*fake.calls.lock().unwrap(), ["build web", "start web replica 0"]);
    let states: Vec<(Uuid, String)> = sqlx::query_as("SELECT id, state FROM instances").fetch_all(&app.db).await.unwrap();
    assert_eq!(states, [(instance, "healthy".to_string())]);
    let d = app.get(&format!("/deployments/{web}"), &token).await.body;
    assert_eq!(d["deployment"]["status"], "running", "{d}");

    // What the runtime runs but the desired state no longer wants is stopped at the next
    // leadership; what it wants but does not run is started again.
    sqlx::query("UPDATE deployments SET status = 'removed' WHERE id = $1").bind(web.parse::<Uuid>().unwrap()).execute(&app.db).await.unwrap();
    let second = lock_holder(&app).await.unwrap();
    let spec = fake.started.lock().unwrap()[&instance].clone();
    fake.started.lock().unwrap().insert(Uuid::new_v4(), spec);
    sqlx::query("SELECT pg_terminate_backend($1)").bind(second).execute(&app.db).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !fake.started.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "left running: {:?}", fake.calls.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopped: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE state = 'stopped'").fetch_one(&app.db).await.unwrap();
    assert_eq!(stopped, 1);
}
