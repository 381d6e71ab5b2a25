//! A hostile tenant: a user deploys an app that tries every escape it can think of (the
//! fixture `fixtures/hostile`), next to a victim tenant's service. Every attempt must fail,
//! and the platform and the victim must keep serving.

use crate::{deploys::*, helpers::*};
use axum::http::StatusCode;
use serde_json::{json, Value};
use server::runtime::{local::LocalRuntime, procfs};
use std::{path::PathBuf, time::Duration};

pub fn hostile_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile")
}

/// What an attempt answered (the fixture's JSON), through the proxy.
async fn probe(app: &TestApp, host: &str, path: &str) -> Value {
    let r = app.via_proxy(host, path).await;
    assert_eq!(r.status, StatusCode::OK, "{host}{path}: {}", r.text);
    r.body
}

fn refused(v: &Value, what: &str) {
    assert_eq!(v["ok"], false, "{what} should have failed, but: {v}");
}

/// A user with a project of their own and one upload service in it, deployed and running.
struct Tenant {
    token: String,
    project: String,
    service: String,
    deployment: String,
    host: String,
}

async fn tenant(app: &TestApp, who: &str, project: &str, service: &str, src: &std::path::Path, extra: Value) -> Tenant {
    let token = app.verified_user(who, &format!("{}@example.com", who.to_lowercase())).await;
    let p = app.post("/projects", &token, json!({ "name": project })).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let project_id = p.body["id"].as_str().unwrap().to_string();
    let service_id = add_service(app, &token, &project_id, service, src, extra).await;
    let deployment = deploy(app, &token, &service_id).await;
    wait_for(app, &token, &deployment, &["running"]).await;
    Tenant { token, project: project_id, service: service_id, deployment, host: format!("{service}.{project}.localhost") }
}

async fn project_uid(app: &TestApp, project: &str) -> i64 {
    sqlx::query_scalar("SELECT uid FROM sandbox_uids WHERE project_id = $1::uuid").bind(project).fetch_one(&app.db).await.unwrap()
}

/// Every process on the machine whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<i32> {
    procfs::pids()
        .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_cannot_reach_the_platform_another_tenant_or_the_machine() {
    let app = TestApp::with_runtime().await;
    let dir = app.runtime.as_ref().unwrap().dir.clone();
    // The platform's secrets as they would be on disk, and a port standing for its HTTP listener.
    std::fs::write(dir.join("secret.key"), "the-platform-key").unwrap();
    let platform_http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let platform_port = platform_http.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let _ = platform_http.accept().await;
        }
    });
    // host:port of the platform's own PostgreSQL, from postgres://user:pw@host:port/db
    let url = std::env::var("DATABASE_URL").unwrap();
    let authority = url.rsplit_once('@').map_or(url.as_str(), |(_, r)| r).split('/').next().unwrap().to_string();
    let (db_host, db_port) = authority.rsplit_once(':').map(|(h, p)| (h.to_string(), p.parse::<u16>().unwrap())).unwrap_or((authority.clone(), 5432));

    let vic = tenant(&app, "Vic", "bank", "vault", &fixture(), json!({})).await;
    set_var(&app, &vic.token, &vic.service, "VAULT_SECRET", "gold-bars-in-the-cellar", true).await;
    let (victim_pid, victim_port): (i32, i32) =
        sqlx::query_as("SELECT pid, port FROM instances WHERE deployment_id = $1::uuid AND state = 'healthy'").bind(&vic.deployment).fetch_one(&app.db).await.unwrap();
    let victim_private: i32 = sqlx::query_scalar("SELECT private_port FROM services WHERE id = $1::uuid").bind(&vic.service).fetch_one(&app.db).await.unwrap();
    let victim_build: String = sqlx::query_scalar("SELECT artifact FROM deployments WHERE id = $1::uuid").bind(&vic.deployment).fetch_one(&app.db).await.unwrap();

    let mal = tenant(&app, "Mal", "evil", "probe", &hostile_fixture(), json!({ "start_command": "python3 app.py", "max_processes": 64 })).await;
    let h = mal.host.as_str();

    // Own identity: not root, not the platform, not the victim; no new privileges.
    let me = probe(&app, h, "/identity").await;
    let (mal_uid, vic_uid) = (project_uid(&app, &mal.project).await, project_uid(&app, &vic.project).await);
    assert_eq!(me["uid"], mal_uid, "{me}");
    assert_eq!(me["euid"], mal_uid);
    assert_ne!(mal_uid, vic_uid, "each project has its own uid");
    assert!(mal_uid >= 400_000, "from the configured range");
    assert_eq!(me["no_new_privs"], "1");
    refused(&probe(&app, h, "/setuid").await, "setuid(0)");
    assert_eq!(probe(&app, h, "/unshare").await["ok"], false, "no user namespace of its own");
    // The system calls no service needs answer EPERM (x86_64 numbers).
    for (what, nr, args) in [
        ("keyctl (the host's keyrings)", 250, "0,-3,1"),
        ("io_uring_setup", 425, "1,0"),
        ("bpf", 321, "0,0,0"),
        ("perf_event_open", 298, "0,0,-1,-1,0"),
        ("a vsock socket", 41, "40,1,0"),
    ] {
        let r = probe(&app, h, &format!("/syscall?nr={nr}&args={args}")).await;
        assert_eq!((r["rc"].as_i64(), r["errno"].as_i64()), (Some(-1), Some(1)), "{what}: {r}");
    }
    // Own view of processes: its own few, never the victim's.
    let seen: Vec<i64> = me["processes"].as_array().unwrap().iter().map(|p| p.as_i64().unwrap()).collect();
    assert!(seen.len() < 10 && !seen.contains(&i64::from(victim_pid)), "{seen:?}");
    assert_eq!(me["home"], "/home/app");

    // Own filesystem view.
    for path in [
        dir.join("secret.key").display().to_string(),
        format!("{victim_build}/app/app.py"),
        format!("/proc/{victim_pid}/environ"),
        "/etc/shadow".into(),
        "/root/.bash_history".into(),
    ] {
        refused(&probe(&app, h, &format!("/read?path={}", urlencode(&path))).await, &format!("reading {path}"));
    }
    for path in [dir.display().to_string(), "/root".into(), "/var/lib/postgresql".into(), "/run".into()] {
        refused(&probe(&app, h, &format!("/list?path={}", urlencode(&path))).await, &format!("listing {path}"));
    }
    for path in ["/usr/bin/evil", "/etc/passwd", "/app/app.py"] {
        refused(&probe(&app, h, &format!("/write?path={}", urlencode(path))).await, &format!("writing {path}"));
    }
    assert_eq!(probe(&app, h, "/write?path=/tmp/scratch").await["ok"], true, "its own /tmp is writable");
    assert_eq!(probe(&app, h, "/write?path=/home/app/cache").await["ok"], true, "its own home is writable");

    // Own network: none of the platform's ports, the machine's services, or the victim's.
    for (what, host, port) in [
        ("the platform's PostgreSQL", db_host.clone(), db_port),
        ("the platform's HTTP port", "127.0.0.1".to_string(), platform_port),
        ("the machine's PostgreSQL", "127.0.0.1".to_string(), 5432),
        ("the machine's Redis", "127.0.0.1".to_string(), 6379),
        ("the victim's private port", "127.0.0.1".to_string(), victim_private as u16),
        ("the victim's instance", "127.0.0.1".to_string(), victim_port as u16),
    ] {
        refused(&probe(&app, h, &format!("/connect?host={host}&port={port}")).await, &format!("connecting to {what}"));
    }
    refused(&probe(&app, h, &format!("/signal?pid={victim_pid}&sig=0")).await, "signalling the victim");

    // Taking over the victim's port while it restarts gets the attacker nothing.
    assert_eq!(probe(&app, h, &format!("/bind?port={victim_port}")).await["ok"], true, "its own network's port is its own");
    app.via_proxy(&vic.host, "/crash").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut answers = Vec::new();
    loop {
        let r = app.via_proxy(&vic.host, "/").await;
        assert!(!r.text.contains("pwned"), "the attacker received the victim's traffic");
        answers.push(r.status);
        if r.status == StatusCode::OK && r.text.starts_with("hello v1 from vault") && answers.len() > 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the victim did not come back: {answers:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A fork bomb stops at the process limit and hurts no one else.
    let bomb = probe(&app, h, "/forkbomb").await;
    let forked = bomb["result"]["forked"].as_i64().unwrap();
    assert!(forked < 64, "the process limit holds: {bomb}");
    assert!(app.via_proxy(&vic.host, "/").await.text.starts_with("hello v1"));

    // A 64 MB line with no newline is cut, and what follows it still arrives.
    assert_eq!(probe(&app, h, "/longline?mb=64").await["ok"], true);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let logs = app.get(&format!("/deployments/{}/logs?search=after%20the%20long%20line", mal.deployment), &mal.token).await;
        if logs.body.as_array().is_some_and(|l| !l.is_empty()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the line after the long one never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let longest: i32 = sqlx::query_scalar("SELECT max(octet_length(line)) FROM deployment_logs WHERE deployment_id = $1::uuid")
        .bind(&mal.deployment)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(longest <= server::logs::MAX_LINE as i32 + 8, "lines are cut: {longest} bytes");

    // A daemon that left its session and cleared its environment does not outlive a stop.
    let marker = format!("rh-daemon-{}", uuid::Uuid::new_v4());
    assert_eq!(probe(&app, h, &format!("/daemon?marker={marker}")).await["ok"], true);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while processes_with(&marker).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the daemon never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // `kill -9 -1` kills only what the attacker itself runs.
    probe(&app, h, "/killall").await;
    let r = app.via_proxy(&vic.host, "/").await;
    assert!(r.text.starts_with("hello v1 from vault"), "{}", r.text);

    let stop = app.post(&format!("/deployments/{}/stop", mal.deployment), &mal.token, json!({})).await;
    assert_eq!(stop.status, StatusCode::OK, "{}", stop.text);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !processes_with(&marker).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the daemon outlived its service: {:?}", processes_with(&marker));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // After all of it, the victim serves, and none of the platform's or the victim's secrets
    // showed up in anything the attacker could read.
    assert!(app.via_proxy(&vic.host, "/").await.text.starts_with("hello v1 from vault"));
    let attacker_logs = logs_text(&app, &mal.token, &mal.deployment).await;
    for secret in ["the-platform-key", "gold-bars-in-the-cellar"] {
        assert!(!attacker_logs.contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_enforced_and_an_out_of_memory_kill_says_so() {
    let app = TestApp::with_runtime().await;
    let t = tenant(&app, "Ada", "shop", "probe", &hostile_fixture(), json!({
        "start_command": "python3 app.py", "memory_mb": 64, "cpu_millis": 500, "max_processes": 48, "restart_policy": "never",
    }))
    .await;
    let instance: uuid::Uuid = sqlx::query_scalar("SELECT id FROM instances WHERE deployment_id = $1::uuid").bind(&t.deployment).fetch_one(&app.db).await.unwrap();
    let limits = LocalRuntime::unit_limits(&app.runtime.as_ref().unwrap().dir, &format!("i-{instance}")).expect("the instance's cgroup");
    assert_eq!((limits.memory_bytes, limits.cpu_millis, limits.pids), (64 << 20, 500, 48));

    app.via_proxy(&t.host, "/alloc?mb=256").await;
    let d = wait_for(&app, &t.token, &t.deployment, &["crashed"]).await;
    assert_eq!(d["deployment"]["reason"], "out of memory (64 MB limit)", "{d}");
    assert!(logs_text(&app, &t.token, &t.deployment).await.contains("out of memory (64 MB limit)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_of_an_environment_share_a_private_network_no_one_else_reaches() {
    let app = TestApp::with_runtime().await;
    let s = setup(&app, &fixture(), json!({})).await;
    let api = add_service(&app, &s.token, &s.project, "api", &fixture(), json!({})).await;
    let probe_id = add_service(&app, &s.token, &s.project, "probe", &hostile_fixture(), json!({ "start_command": "python3 app.py" })).await;
    set_var(&app, &s.token, &probe_id, "API", "http://${{api.ROUNDHOUSE_PRIVATE_DOMAIN}}/", false).await;
    for id in [&api, &probe_id] {
        let d = deploy(&app, &s.token, id).await;
        wait_for(&app, &s.token, &d, &["running"]).await;
    }
    let env = probe(&app, "probe.shop.localhost", "/env").await;
    let api_url = env["API"].as_str().unwrap().to_string();
    assert!(api_url.starts_with("http://127.0.0.1:"), "{api_url}");
    let inside = probe(&app, "probe.shop.localhost", &format!("/fetch?url={}", urlencode(&api_url))).await;
    assert_eq!(inside["ok"], true, "{inside}");
    assert!(inside["result"].as_str().unwrap().starts_with("hello v1 from api"), "{inside}");

    // Another project's service, at the very same address, reaches nothing.
    let other = tenant(&app, "Eve", "elsewhere", "probe", &hostile_fixture(), json!({ "start_command": "python3 app.py" })).await;
    refused(&probe(&app, &other.host, &format!("/fetch?url={}", urlencode(&api_url))).await, "reaching another project's private port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_outbound_traffic_on_a_service_reaches_out_but_never_the_hosts_loopback() {
    let app = TestApp::with_runtime_config(|c| c.sandbox_outbound = true).await;
    // A server on every address of this machine: reachable from outside as the internet is,
    // but its loopback side is the machine's own and stays closed.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let _ = listener.accept().await;
        }
    });
    let external = host_address().expect("this machine has a non-loopback IPv4 address");
    let t = tenant(&app, "Ada", "shop", "probe", &hostile_fixture(), json!({ "start_command": "python3 app.py" })).await;
    let out = probe(&app, &t.host, &format!("/connect?host={external}&port={port}")).await;
    assert_eq!(out["ok"], true, "the internet (here: this machine's public address) is reachable: {out}");
    for host in ["10.0.2.2", "127.0.0.1"] {
        refused(&probe(&app, &t.host, &format!("/connect?host={host}&port={port}")).await, &format!("the host's loopback as {host}"));
    }
    let resolv = probe(&app, &t.host, "/read?path=/etc/resolv.conf").await;
    assert!(resolv["result"].as_str().unwrap().contains("10.0.2.3"), "{resolv}");
}

/// The first IPv4 address of this machine that is not loopback.
fn host_address() -> Option<String> {
    let out = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).split_whitespace().skip_while(|w| *w != "inet").nth(1)?.split('/').next().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_sandbox_only_admins_deploy_and_readiness_says_why() {
    // Explicit single-user mode.
    let app = TestApp::with_runtime_config(|c| c.sandbox = app::infra::SandboxMode::Off).await;
    let s = setup(&app, &fixture(), json!({})).await;
    let r = app.post(&format!("/services/{}/deployments", s.service), &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.error_message().contains("single-user mode"), "{}", r.text);
    let ready = app.send(axum::http::Request::builder().uri("/readyz").body(axum::body::Body::empty()).unwrap()).await;
    assert_eq!((ready.status, ready.body["sandbox"]["status"].as_str()), (StatusCode::OK, Some("off")));
    app.make_admin("ada@example.com").await;
    let d = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &d, &["running"]).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 1, "the refused deploy queued nothing");

    // A machine where the sandbox cannot be set up: nothing deploys; the user is told an
    // administrator must fix it, and readiness (the operator's) says why.
    let broken = TestApp::new().await;
    broken.state.set_admission(app::infra::Admission::Nobody("bubblewrap is not installed (apt-get install bubblewrap)".into()));
    let b = setup(&broken, &fixture(), json!({})).await;
    let r = broken.post(&format!("/services/{}/deployments", b.service), &b.token, json!({})).await;
    assert_eq!((r.status, r.error_field()), (StatusCode::CONFLICT, "runtime"));
    assert!(r.error_message().contains("An administrator must fix it"), "{}", r.text);
    assert!(!r.error_message().contains("bubblewrap"), "the machine's details are the operator's: {}", r.text);
    let ready = broken.send(axum::http::Request::builder().uri("/readyz").body(axum::body::Body::empty()).unwrap()).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["sandbox"]["detail"], "bubblewrap is not installed (apt-get install bubblewrap)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_site_is_served_from_the_sandbox_without_its_dotfiles() {
    let app = TestApp::with_runtime().await;
    let (dir, _) = test_data_dir();
    let site = dir.join("site");
    std::fs::create_dir_all(site.join(".git")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>hello from a static site</h1>").unwrap();
    std::fs::write(site.join(".env"), "STRIPE_KEY=sk_live_do_not_serve").unwrap();
    std::fs::write(site.join(".git/config"), "[remote] url = https://token@example.com").unwrap();
    // No start command: the stack is detected, and Roundhouse's own static server runs it.
    let t = tenant(&app, "Ada", "shop", "www", &site, json!({ "start_command": "", "healthcheck_path": "/" })).await;
    let r = app.via_proxy(&t.host, "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("hello from a static site"));
    for path in ["/.env", "/.git/config", "/%2eenv"] {
        let r = app.via_proxy(&t.host, path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
        assert!(!r.text.contains("sk_live") && !r.text.contains("token@"));
    }
    assert!(logs_text(&app, &t.token, &t.deployment).await.contains("Detected: Static site (index.html)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_variables_never_reach_the_sandbox_itself() {
    // The build compiles a library whose constructor leaves a mark on the machine's /tmp, and
    // LD_PRELOAD names it by its path on the host. Were the tenant's variables bubblewrap's own
    // environment, bubblewrap (outside the sandbox, before it is made) would load it.
    let app = TestApp::with_runtime().await;
    let marker = format!("rh-escaped-{}", uuid::Uuid::new_v4());
    let (dir, _) = test_data_dir();
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(hostile_fixture().join("app.py"), src.join("app.py")).unwrap();
    std::fs::write(
        src.join("evil.c"),
        format!("#include <stdio.h>\n__attribute__((constructor)) static void mark(void) {{ FILE *f = fopen(\"/tmp/{marker}\", \"w\"); if (f) fclose(f); }}\n"),
    )
    .unwrap();
    let token = app.verified_user("Mal", "mal@example.com").await;
    let p = app.post("/projects", &token, json!({ "name": "evil" })).await.body;
    let service = add_service(&app, &token, p["id"].as_str().unwrap(), "probe", &src, json!({
        "start_command": "python3 app.py",
        "build_command": "gcc -shared -fPIC -o /home/app/evil.so evil.c",
    }))
    .await;
    let home = app.runtime.as_ref().unwrap().dir.join("runtime/homes").join(&service).join("home");
    set_var(&app, &token, &service, "LD_PRELOAD", &format!("{}/evil.so", home.display()), false).await;
    let first = deploy(&app, &token, &service).await;
    wait_for(&app, &token, &first, &["running"]).await;
    assert!(std::fs::metadata(home.join("evil.so")).is_ok(), "the build made the library");
    // Started again, with the library in place.
    let second = deploy(&app, &token, &service).await;
    wait_for(&app, &token, &second, &["running"]).await;
    assert!(!std::path::Path::new(&format!("/tmp/{marker}")).exists(), "tenant code ran outside its sandbox");
    let env = probe(&app, "probe.evil.localhost", "/env").await;
    assert_eq!(env["LD_PRELOAD"], format!("{}/evil.so", home.display()), "the variable still reaches the service itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_past_its_deadline_or_cancelled_leaves_nothing_running() {
    let app = TestApp::with_runtime_config(|c| c.build_timeout_secs = 3).await;
    let marker = format!("rh-build-{}", uuid::Uuid::new_v4());
    // A build that hides a daemon in a new session and then never ends.
    let build = format!("setsid python3 -c 'import time; time.sleep(3600)' {marker} & sleep 3600");
    let s = setup(&app, &fixture(), json!({ "build_command": build })).await;
    let d = deploy(&app, &s.token, &s.service).await;
    let failed = wait_for(&app, &s.token, &d, &["failed"]).await;
    assert!(failed["deployment"]["reason"].as_str().unwrap().contains("did not finish within 3s"), "{failed}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !processes_with(&marker).is_empty() || !app.live_units().is_empty() {
        assert!(std::time::Instant::now() < deadline, "left running: {:?} {:?}", processes_with(&marker), app.live_units());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let build_dir = app.runtime.as_ref().unwrap().dir.join("runtime/builds").join(&d);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while build_dir.exists() {
        assert!(std::time::Instant::now() < deadline, "a failed build's folder is not kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Cancelled by its owner while it builds: the same.
    let d = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &d, &["building"]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while processes_with(&marker).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the build's daemon never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = app.post(&format!("/deployments/{d}/cancel"), &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !processes_with(&marker).is_empty() || !app.live_units().is_empty() {
        assert!(std::time::Instant::now() < deadline, "left running after cancel: {:?}", processes_with(&marker));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_service_runs_sandboxed_and_its_environment_reaches_it_with_its_password() {
    let app = TestApp::with_runtime().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = app.post("/projects", &token, json!({ "name": "shop" })).await.body;
    let project = p["id"].as_str().unwrap().to_string();
    let r = app.post(&format!("/projects/{project}/services"), &token, json!({ "name": "cache", "source_kind": "database", "source": "redis" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let cache = r.body["id"].as_str().unwrap().to_string();
    let d = deploy(&app, &token, &cache).await;
    wait_for(&app, &token, &d, &["running"]).await;
    let probe_id = add_service(&app, &token, &project, "probe", &hostile_fixture(), json!({ "start_command": "python3 app.py" })).await;
    set_var(&app, &token, &probe_id, "REDIS", "${{cache.REDIS_URL}}", false).await;
    let d = deploy(&app, &token, &probe_id).await;
    wait_for(&app, &token, &d, &["running"]).await;
    let url = probe(&app, "probe.shop.localhost", "/env").await["REDIS"].as_str().unwrap().to_string();
    let (auth, addr) = url.trim_start_matches("redis://").rsplit_once('@').unwrap();
    let (host, port) = addr.split_once(':').unwrap();
    assert_eq!(probe(&app, "probe.shop.localhost", &format!("/connect?host={host}&port={port}")).await["ok"], true);
    // The server runs as the project's uid, and requires the generated password.
    let uid = project_uid(&app, &project).await;
    let server_uid: Option<i64> = procfs::pids()
        .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).starts_with("/usr/bin/redis-server")))
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|u| u.parse().ok()))
        .find(|u| *u == uid);
    assert_eq!(server_uid, Some(uid), "redis-server runs as the project's uid");
    assert_eq!(auth.split_once(':').unwrap().1.len(), 32, "a generated password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_fills_the_disk_with_bytes_or_with_empty_files_fails_and_is_removed() {
    let app = TestApp::with_runtime_config(|c| {
        c.build_disk_mb = 16;
        c.build_max_files = 1000;
    })
    .await;
    // Bytes, and many empty files (inodes, not bytes): each step ends before the next check,
    // so only the check at its end can see it.
    let s = setup(&app, &fixture(), json!({})).await;
    for (name, build) in [("bytes", "head -c 40000000 /dev/zero > big"), ("inodes", "mkdir many && cd many && seq 3000 | xargs touch")] {
        let service = add_service(&app, &s.token, &s.project, name, &fixture(), json!({ "build_command": build })).await;
        let d = deploy(&app, &s.token, &service).await;
        let failed = wait_for(&app, &s.token, &d, &["failed"]).await;
        let reason = failed["deployment"]["reason"].as_str().unwrap();
        assert!(reason.contains("more than 16 MB of disk or made more than 1000 files and folders"), "{name}: {failed}");
        let build_dir = app.runtime.as_ref().unwrap().dir.join("runtime/builds").join(&d);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while build_dir.exists() {
            assert!(std::time::Instant::now() < deadline, "{name}: a failed build's folder is not kept");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
