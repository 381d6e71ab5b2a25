//! The whole platform on the Kubernetes runtime, against the fake API server
//! (`support/fake_kube_api.rs`): a user deploys through the API as on the local runtime, and
//! sees the same deployment states, reasons and logs; the cluster gets the objects.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "support/fake_kube_api.rs"]
mod fake_kube_api;

use axum::http::{Method, StatusCode};
use fake_kube_api::FakeApi;
use helpers::*;
use serde_json::{json, Value};
use server::runtime::kubernetes::{plans::PlanProjects, KubernetesRuntime, Settings};
use std::{sync::Arc, time::Duration};


async fn settle(app: &TestApp, token: &str, id: &str, want: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = app.get(&format!("/deployments/{id}"), token).await;
        let status = d.body["deployment"]["status"].as_str().unwrap_or_default().to_string();
        if status == want {
            return d.body;
        }
        assert!(std::time::Instant::now() < deadline, "deployment stayed {status}, not {want}: {}", d.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The instance id of the one object named `<service>-…` of `resource`, once it is applied.
async fn instance_of(cluster: &FakeApi, ns: &str, resource: &str, prefix: &str) -> (String, String) {
    for _ in 0..600 {
        if let Some(name) = cluster.names(resource).into_iter().find(|n| n.starts_with(prefix)) {
            let object = cluster.object(resource, ns, &name).unwrap();
            return (name, object["metadata"]["labels"]["roundhouse.dev/instance"].as_str().unwrap().to_string());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {resource} named {prefix}… was applied: {:?}", cluster.names(resource));
}

fn pod(ns: &str, name: &str, instance: &str, ready: bool, restarts: i32, state: Value, last: Option<i32>) -> Value {
    json!({
        "metadata": { "name": name, "namespace": ns, "labels": {
            "app.kubernetes.io/managed-by": "roundhouse", "roundhouse.dev/installation": "default", "roundhouse.dev/instance": instance,
        } },
        "spec": { "containers": [{ "name": "web" }] },
        "status": { "phase": "Running", "containerStatuses": [{
            "name": "web", "image": "ghcr.io/acme/web:2", "imageID": "", "ready": ready, "restartCount": restarts, "state": state,
            "lastState": last.map_or(json!({}), |c| json!({ "terminated": { "exitCode": c } })),
        }] },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_deploys_to_a_cluster_with_the_states_reasons_and_logs_of_any_runtime() {
    let app = TestApp::with_config(|c| {
        c.runtime = app::infra::RuntimeKind::Kubernetes;
        c.apps_domain = "apps.example.com".into();
    })
    .await;
    let (client, cluster) = FakeApi::start();
    let settings = Settings { base_domain: "apps.example.com".into(), ..Settings::default() };
    let runtime = Arc::new(KubernetesRuntime::new(client, settings, Arc::new(PlanProjects(app.db.clone()))));
    app.state.set_refused_sources(server::runtime::refusals(runtime.as_ref()));
    let _reconciler = server::reconciler::spawn(app.state.clone(), Some(runtime.clone())).expect("a reconciler");
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = app.post("/projects", &token, json!({ "name": "shop" })).await;
    let project = p.body["id"].as_str().unwrap().to_string();

    // A database and an image service referring to it.
    let db = app.post(&format!("/projects/{project}/services"), &token, json!({ "name": "db", "source_kind": "database", "source": "postgres" })).await;
    assert_eq!(db.status, StatusCode::CREATED, "{}", db.text);
    let web = app
        .post(
            &format!("/projects/{project}/services"),
            &token,
            json!({ "name": "web", "source_kind": "image", "source": "ghcr.io/acme/web:2", "port": 3000, "restart_policy": "on_failure", "restart_max": 1 }),
        )
        .await;
    assert_eq!(web.status, StatusCode::CREATED, "{}", web.text);
    let web_id = web.body["id"].as_str().unwrap().to_string();
    let r = app.api(Method::PUT, &format!("/services/{web_id}/variables/DATABASE_URL"), Some(&token), Some(json!({ "value": "${{db.DATABASE_URL}}" }))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let d = app.post(&format!("/services/{web_id}/deployments"), &token, json!({})).await;
    assert_eq!(d.status, StatusCode::CREATED, "{}", d.text);
    let deployment = d.body["id"].as_str().unwrap().to_string();
    // The environment's namespace is named by its id.
    let environment: uuid::Uuid = sqlx::query_scalar("SELECT environment_id FROM services WHERE id = $1::uuid").bind(&web_id).fetch_one(&app.db).await.unwrap();
    let ns = &format!("rh-{}", environment.simple());
    let (name, instance) = instance_of(&cluster, ns, "deployments", "web-").await;

    // The cluster schedules it, it logs, its readiness probe passes: running.
    cluster.log("web-pod", &["2026-11-30T07:00:00.000000001Z listening on :3000"]);
    cluster.put_pod(pod(ns, "web-pod", &instance, false, 0, json!({ "running": {} }), None));
    cluster.put_pod(pod(ns, "web-pod", &instance, true, 0, json!({ "running": {} }), None));
    let body = settle(&app, &token, &deployment, "running").await;
    assert_eq!(body["deployment"]["reason"], "1 instance(s) ready");

    // What it was given: the database by its Service's name, the plan's quota, its public host.
    let secret = cluster.object("secrets", ns, &format!("{name}-env")).unwrap();
    let url = secret["stringData"]["DATABASE_URL"].as_str().unwrap();
    assert!(url.starts_with("postgresql://postgres:") && url.ends_with("@db:5432/postgres"), "{url}");
    assert_eq!(secret["stringData"]["PORT"], "3000");
    let ingress = cluster.object("ingresses", ns, "web").unwrap();
    assert_eq!(ingress["spec"]["rules"][0]["host"], "web.shop.apps.example.com");
    let quota = cluster.object("resourcequotas", ns, "roundhouse-plan").unwrap();
    let pods: i32 = sqlx::query_scalar("SELECT max_services * max_replicas * 2 + 2 FROM plans WHERE id = 'free'").fetch_one(&app.db).await.unwrap();
    assert_eq!(quota["spec"]["hard"]["pods"], pods.to_string(), "the owner's plan: twice its services × replicas, a build and a run");
    let instances: Vec<(String,)> = sqlx::query_as("SELECT address FROM instances WHERE id = $1::uuid").bind(&instance).fetch_all(&app.db).await.unwrap();
    assert_eq!(instances, [("10.96.0.10:3000".to_string(),)], "where the cluster answers for it");

    // Its output reaches its logs like any runtime's.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let logs = app.get(&format!("/deployments/{deployment}/logs"), &token).await.text;
        if logs.contains("listening on :3000") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // It crashes more often than its policy allows: crashed, with the reason, and its objects go.
    cluster.put_pod(pod(ns, "web-pod", &instance, false, 1, json!({ "waiting": { "reason": "CrashLoopBackOff" } }), Some(1)));
    cluster.put_pod(pod(ns, "web-pod", &instance, false, 2, json!({ "waiting": { "reason": "CrashLoopBackOff" } }), Some(1)));
    let body = settle(&app, &token, &deployment, "crashed").await;
    assert_eq!(body["deployment"]["reason"], "it exited with code 1 after 1 restarts");
    assert!(cluster.object("deployments", ns, &name).is_none() && cluster.object("services", ns, "web").is_none());

    // What the cluster cannot build (no registry is configured) is refused before anything is queued.
    let git = app.post(&format!("/projects/{project}/services"), &token, json!({ "name": "api", "source_kind": "git", "source": "https://github.com/acme/api" })).await;
    assert_eq!(git.status, StatusCode::CREATED, "{}", git.text);
    let r = app.post(&format!("/services/{}/deployments", git.body["id"].as_str().unwrap()), &token, json!({})).await;
    assert!(r.status.is_client_error() && r.text.contains("no registry"), "{} {}", r.status, r.text);
    assert!(cluster.names("jobs").is_empty(), "no build was started");
    // The project is deleted: what outlives its instances in the cluster — the database's
    // volume claim, the environment's namespace — goes at the leader's next pass over volumes.
    let db_id = db.body["id"].as_str().unwrap();
    cluster.put("persistentvolumeclaims", ns, "data-state-db-0", json!({ "metadata": { "name": "data-state-db-0", "namespace": ns, "labels": {
        "app.kubernetes.io/managed-by": "roundhouse", "roundhouse.dev/installation": "default", "roundhouse.dev/service": db_id } },
        "status": { "capacity": { "storage": "1Gi" } } }));
    let volumes = server::runtime::Runtime::volume_sizes(runtime.as_ref()).await;
    assert_eq!(volumes, [(db_id.parse().unwrap(), 1 << 30)], "a claim is billed by its capacity");
    let leftovers = server::reconciler::leftovers::Leftovers::default();
    for _ in 0..2 {
        let kept = leftovers.pass(&app.db, runtime.as_ref(), &volumes).await.unwrap();
        assert_eq!((kept.volumes, kept.environments), (0, 0), "nothing of a live project is touched");
    }
    cluster.take_writes();
    let r = app.api(Method::DELETE, &format!("/projects/{project}"), Some(&token), None).await;
    assert!(r.status.is_success(), "{} {}", r.status, r.text);
    let first = leftovers.pass(&app.db, runtime.as_ref(), &volumes).await.unwrap();
    assert_eq!((first.volumes, first.environments), (0, 0), "one pass finding them missing removes nothing");
    let removed = leftovers.pass(&app.db, runtime.as_ref(), &volumes).await.unwrap();
    assert_eq!((removed.volumes, removed.environments), (1, 1), "the second does");
    let writes = cluster.take_writes();
    assert!(writes.contains(&"DELETE persistentvolumeclaims/data-state-db-0".to_string()) && writes.contains(&format!("DELETE namespaces/{ns}")), "{writes:?}");
    assert!(cluster.violations().is_empty(), "{:?}", cluster.violations());
}

/// Runs the platform binary against the cluster a kubeconfig names; answers its exit status
/// and what it printed on stderr.
async fn start_platform(app: &TestApp, server: &str) -> (std::process::ExitStatus, String) {
    let dir = std::env::temp_dir().join(format!("rh-k8s-start-{}-{}", std::process::id(), server.rsplit(':').next().unwrap()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{ name: c, cluster: {{ server: \"{server}\" }} }}]\nusers: [{{ name: u, user: {{ token: t }} }}]\ncontexts: [{{ name: x, context: {{ cluster: c, user: u }} }}]\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roundhouse"))
        .env("DATABASE_URL", app._database.url())
        .env("ROUNDHOUSE_ADDR", &addr)
        .env("ROUNDHOUSE_DATA_DIR", &dir)
        .env("ROUNDHOUSE_SECRET_KEY", test_key_base64())
        .env("ROUNDHOUSE_DEV_ADMIN_EMAIL", "")
        .env("ROUNDHOUSE_RUNTIME", "kubernetes")
        .env("KUBECONFIG", &kubeconfig)
        .env("LEPTOS_OUTPUT_NAME", "roundhouse")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the roundhouse binary starts");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("it ends by itself").unwrap();
    std::fs::remove_dir_all(&dir).ok();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_names_the_rbac_verbs_the_platform_lacks_and_an_unreachable_cluster() {
    let app = TestApp::new().await;
    // An API server whose RBAC denies deleting StatefulSets and reading pods' logs.
    let api = axum::Router::new().route(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        axum::routing::post(|axum::Json(mut review): axum::Json<Value>| async move {
            let a = review["spec"]["resourceAttributes"].clone();
            let denied = (a["verb"] == "delete" && a["resource"] == "statefulsets") || (a["verb"] == "get" && a["subresource"] == "log");
            review["status"] = json!({ "allowed": !denied });
            axum::Json(review)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });

    let (status, stderr) = start_platform(&app, &format!("http://127.0.0.1:{port}")).await;
    assert!(!status.success());
    assert!(stderr.contains("may not delete apps/statefulsets, get pods/log in the cluster"), "{stderr}");
    assert!(stderr.contains("deploy/kubernetes/rbac.yaml"), "{stderr}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (status, stderr) = start_platform(&app, &format!("http://127.0.0.1:{closed}")).await;
    assert!(!status.success());
    assert!(stderr.contains("the Kubernetes cluster cannot be reached"), "{stderr}");
}
