//! The runtime against the fake API server (`fake_api.rs`): what it writes, in order, and what
//! it makes of what the cluster reports.

use super::*;
use crate::{
    logs::{capture, Captured},
    runtime::kubernetes::{fake_api::FakeApi, fixtures::service},
};
use serde_json::{json, Value};

/// The fixtures' environment (`0x22`), as the cluster names it.
const NS: &str = "rh-00000000000000000000000000000022";

struct Fixed;

#[async_trait::async_trait]
impl Projects for Fixed {
    async fn project(&self, _id: Uuid) -> anyhow::Result<ProjectFacts> {
        Ok(ProjectFacts { slug: "shop".into(), quota: Quota { services: 5, replicas: 2, cpu_millis: 1000, memory_mb: 1024, volume_gb: 5 } })
    }
}

fn settings() -> Settings {
    Settings { registry: Some("registry.example.com/roundhouse".into()), ..Settings::default() }
}

fn runtime() -> (Arc<KubernetesRuntime>, FakeApi) {
    let (client, api) = FakeApi::start();
    (Arc::new(KubernetesRuntime::new(client, settings(), Arc::new(Fixed))), api)
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n << 120)
}

fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_string()
}

fn spec(s: &Service, instance: Uuid, deployment: Uuid, artifact: &str) -> InstanceSpec {
    InstanceSpec {
        instance_id: instance,
        deployment_id: deployment,
        replica: 0,
        spec: s.clone(),
        artifact: artifact.into(),
        env: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
        private_port: 20001,
        command: None,
        peers: Vec::new(),
    }
}

fn pod(name: &str, instance: Uuid, status: Value) -> Value {
    json!({
        "metadata": { "name": name, "namespace": NS, "labels": {
            "app.kubernetes.io/managed-by": "roundhouse", "roundhouse.dev/installation": "default", "roundhouse.dev/instance": instance.to_string(),
        } },
        "spec": { "containers": [{ "name": "web" }] },
        "status": status,
    })
}

fn container(ready: bool, restarts: i32, state: Value, last: Option<i32>) -> Value {
    json!({ "name": "web", "image": "ghcr.io/acme/web:2", "imageID": "", "ready": ready, "restartCount": restarts, "state": state,
            "lastState": last.map_or(json!({}), |c| json!({ "terminated": { "exitCode": c } })) })
}

fn running(ready: bool, restarts: i32, last: Option<i32>) -> Value {
    json!({ "phase": "Running", "containerStatuses": [container(ready, restarts, json!({ "running": {} }), last)] })
}

fn waiting(reason: &str, message: &str, restarts: i32, last: Option<i32>) -> Value {
    json!({ "phase": "Running", "containerStatuses": [container(false, restarts, json!({ "waiting": { "reason": reason, "message": message } }), last)] })
}

fn ended(code: i32) -> Value {
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    json!({ "phase": phase, "containerStatuses": [container(false, 0, json!({ "terminated": { "exitCode": code } }), None)] })
}

async fn next(events: &mut mpsc::UnboundedReceiver<InstanceEvent>) -> InstanceEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("an event within 10 s").expect("the runtime is there")
}

/// Waits (10 s at most) until the captured lines hold `line`; answers all lines seen.
async fn wait_line(captured: &Captured, line: &str) -> Vec<(Stream, String)> {
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen.extend(captured.lines());
        if seen.iter().any(|(_, l)| l == line) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{line:?} never reached the logs: {seen:?}");
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

#[tokio::test]
async fn an_instance_is_applied_in_order_is_ready_when_its_pod_is_and_its_log_is_followed() {
    let (rt, api) = runtime();
    let s = service("web", SourceKind::Image, "ghcr.io/acme/web:2");
    let (i1, d1) = (id(1), id(0xd1));
    let (sink, captured) = capture(d1);
    let (tx, mut events) = mpsc::unbounded_channel();
    let endpoint = rt.start(spec(&s, i1, d1, "ghcr.io/acme/web:2"), sink, tx).await.unwrap();
    assert_eq!(endpoint.addr, "10.96.0.10:3000".parse().unwrap(), "the service's ClusterIP and port");
    let w = format!("web-{}", short(i1));
    assert_eq!(
        api.take_writes(),
        [
            format!("PATCH namespaces/{NS}"),
            "PATCH networkpolicies/roundhouse-isolation".into(),
            "PATCH resourcequotas/roundhouse-plan".into(),
            "PATCH limitranges/roundhouse-defaults".into(),
            format!("PATCH secrets/{w}-env"),
            format!("PATCH deployments/{w}"),
            "PATCH services/web".into(),
            "PATCH ingresses/web".into(),
        ]
    );
    let quota = api.object("resourcequotas", NS, "roundhouse-plan").unwrap();
    assert_eq!(quota["spec"]["hard"]["pods"], "22", "twice the plan's services × replicas (old and new side by side), a build and a run");
    let secret = api.object("secrets", NS, &format!("{w}-env")).unwrap();
    assert_eq!(secret["stringData"]["GREETING"], "hello");
    assert_eq!(secret["stringData"]["PORT"], "3000");

    let ready = tokio::spawn({
        let rt = rt.clone();
        async move { rt.ready(i1, deadline()).await }
    });
    api.put_pod(pod("web-abc", i1, json!({ "phase": "Pending" })));
    api.log("web-abc", &["2026-11-30T07:00:00.000000001Z listening on :3000", "2026-11-30T07:00:00.5Z GET /healthz 200"]);
    api.put_pod(pod("web-abc", i1, running(false, 0, None)));
    assert!(matches!(next(&mut events).await, InstanceEvent::Started { instance_id, .. } if instance_id == i1));
    assert!(!ready.is_finished(), "running is not ready");
    api.put_pod(pod("web-abc", i1, running(true, 0, None)));
    ready.await.unwrap().expect("ready once its readiness probe passes");
    let lines = wait_line(&captured, "GET /healthz 200").await;
    let out: Vec<&str> = lines.iter().filter(|(s, _)| *s == Stream::Stdout).map(|(_, l)| l.as_str()).collect();
    assert_eq!(out, ["listening on :3000", "GET /healthz 200"], "each line once, in order, without the kubelet's time");
    assert!(api.log_requests()[0].contains("timestamps=true") && api.log_requests()[0].contains("follow=true"));
    assert!(api.violations().is_empty(), "{:?}", api.violations());
}

#[tokio::test]
async fn what_keeps_an_instance_from_running_is_its_owners_reason() {
    let (rt, api) = runtime();
    let s = service("web", SourceKind::Image, "ghcr.io/acme/nope:1");
    let (i1, i2) = (id(2), id(0xc));
    let (tx, _events) = mpsc::unbounded_channel();
    rt.start(spec(&s, i1, id(0xd2), "ghcr.io/acme/nope:1"), capture(id(0xd2)).0, tx.clone()).await.unwrap();
    rt.start(spec(&s, i2, id(0xd2), "ghcr.io/acme/nope:1"), capture(id(0xd2)).0, tx).await.unwrap();
    // A pull that fails may yet succeed (a registry's rate limit): said at the deadline.
    api.put_pod(pod("web-x", i1, waiting("ImagePullBackOff", "Back-off pulling image: pull access denied on node-3.internal", 0, None)));
    let err = rt.ready(i1, Instant::now() + Duration::from_millis(300)).await.unwrap_err();
    assert!(err.user.contains("could not be pulled"), "{}", err.user);
    assert!(!err.user.contains("node-3"), "the cluster's insides stay out of the owner's sight");
    assert!(err.internal.unwrap().contains("node-3.internal"));
    // A name no registry serves never will: said at once.
    api.put_pod(pod("web-y", i2, waiting("InvalidImageName", "couldn't parse image reference", 0, None)));
    let err = rt.ready(i2, deadline()).await.unwrap_err();
    assert!(err.user.contains("its name is not one a registry serves"), "{}", err.user);
}

#[tokio::test]
async fn the_services_restart_policy_decides_when_a_crashing_instance_ends() {
    let (rt, api) = runtime();
    let mut s = service("web", SourceKind::Image, "ghcr.io/acme/web:2");
    s.restart_policy = RestartPolicy::OnFailure;
    s.restart_max = 1;
    let i1 = id(3);
    let (sink, captured) = capture(id(0xd3));
    let (tx, mut events) = mpsc::unbounded_channel();
    rt.start(spec(&s, i1, id(0xd3), "ghcr.io/acme/web:2"), sink, tx).await.unwrap();
    api.take_writes();
    api.put_pod(pod("web-x", i1, running(false, 0, None)));
    assert!(matches!(next(&mut events).await, InstanceEvent::Started { .. }));
    api.put_pod(pod("web-x", i1, waiting("CrashLoopBackOff", "back-off 10s", 1, Some(2))));
    match next(&mut events).await {
        InstanceEvent::Restarting { exit_code, .. } => assert_eq!(exit_code, Some(2)),
        other => panic!("a restart, not {other:?}"),
    }
    api.put_pod(pod("web-x", i1, running(false, 1, Some(2))));
    assert!(matches!(next(&mut events).await, InstanceEvent::Started { .. }), "running again after its restart");
    // Evicted: its Deployment makes another pod; the instance goes on.
    api.put_pod(pod("web-x", i1, json!({ "phase": "Failed", "reason": "Evicted", "containerStatuses": [container(false, 1, json!({ "terminated": { "exitCode": 137 } }), Some(2))] })));
    api.put_pod(pod("web-y", i1, running(false, 0, None)));
    api.put_pod(pod("web-y", i1, waiting("CrashLoopBackOff", "back-off 10s", 1, Some(2))));
    match next(&mut events).await {
        InstanceEvent::Restarting { exit_code, .. } => assert_eq!(exit_code, Some(2), "the new pod's first restart"),
        other => panic!("the eviction ended nothing, yet: {other:?}"),
    }
    api.put_pod(pod("web-y", i1, waiting("CrashLoopBackOff", "back-off 20s", 2, Some(2))));
    match next(&mut events).await {
        InstanceEvent::Exited { exit_code, reason, stopped, .. } => {
            assert_eq!((exit_code, stopped), (Some(2), false));
            assert_eq!(reason, "it exited with code 2 after 1 restarts");
        }
        other => panic!("the end, not {other:?}"),
    }
    let w = format!("web-{}", short(i1));
    // Its objects go, and with the service's last instance, its Service and Ingress.
    assert_eq!(api.take_writes(), [format!("DELETE deployments/{w}"), format!("DELETE secrets/{w}-env"), "DELETE services/web".into(), "DELETE ingresses/web".into()]);
    wait_line(&captured, "it exited with code 2 after 1 restarts").await;
}

#[tokio::test]
async fn a_rollback_runs_the_older_image_beside_the_newer_until_the_newer_is_stopped() {
    let (rt, api) = runtime();
    let s = service("web", SourceKind::Image, "ghcr.io/acme/web:2");
    let (i1, i2) = (id(4), id(5));
    let (tx, mut events) = mpsc::unbounded_channel();
    rt.start(spec(&s, i1, id(0xd4), "ghcr.io/acme/web:2"), capture(id(0xd4)).0, tx.clone()).await.unwrap();
    rt.start(spec(&s, i2, id(0xd5), "ghcr.io/acme/web:1"), capture(id(0xd5)).0, tx).await.unwrap();
    let (w1, w2) = (format!("web-{}", short(i1)), format!("web-{}", short(i2)));
    let old = api.object("deployments", NS, &w2).unwrap();
    assert_eq!(old["spec"]["template"]["spec"]["containers"][0]["image"], "ghcr.io/acme/web:1");
    assert_eq!(api.names("deployments"), [w1.clone(), w2.clone()], "both run while traffic moves");
    api.put_pod(pod("web-1", i1, running(true, 0, None)));
    api.take_writes();
    rt.stop(i1).await;
    assert_eq!(api.take_writes(), [format!("DELETE deployments/{w1}"), format!("DELETE secrets/{w1}-env")], "the service's Service stays for the other instance");
    loop {
        match next(&mut events).await {
            InstanceEvent::Exited { instance_id, stopped, .. } => {
                assert_eq!((instance_id, stopped), (i1, true));
                break;
            }
            InstanceEvent::Started { .. } => continue,
            other => panic!("{other:?}"),
        }
    }
    rt.stop(i2).await;
    assert_eq!(api.take_writes(), [format!("DELETE deployments/{w2}"), format!("DELETE secrets/{w2}-env"), "DELETE services/web".into(), "DELETE ingresses/web".into()]);
    assert!(api.violations().is_empty(), "{:?}", api.violations());
}

#[tokio::test]
async fn a_new_instance_takes_over_a_volumes_stateful_set_and_stopping_the_old_one_leaves_it() {
    let (rt, api) = runtime();
    let mut s = service("uploads", SourceKind::Image, "ghcr.io/acme/uploads:1");
    s.volume_path = Some("/data".into());
    let (i1, i2) = (id(6), id(7));
    let (tx, _events) = mpsc::unbounded_channel();
    rt.start(spec(&s, i1, id(0xd6), "ghcr.io/acme/uploads:1"), capture(id(0xd6)).0, tx.clone()).await.unwrap();
    rt.start(spec(&s, i2, id(0xd7), "ghcr.io/acme/uploads:2"), capture(id(0xd7)).0, tx).await.unwrap();
    let set_name = manifests::stateful_name(&s);
    let set = api.object("statefulsets", NS, &set_name).unwrap();
    assert_eq!(set["metadata"]["labels"]["roundhouse.dev/instance"], i2.to_string(), "the newer instance holds it");
    assert_eq!(set["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "5Gi", "the plan's volume size");
    api.take_writes();
    rt.stop(i1).await;
    assert_eq!(api.take_writes(), [format!("DELETE secrets/uploads-{}-env", short(i1))]);
    assert!(api.object("statefulsets", NS, &set_name).is_some(), "the volume's StatefulSet stays");

    // A newer deployment that fails is stopped: the StatefulSet goes back to the instance
    // that still serves, rather than being deleted under it.
    let i3 = id(0xe);
    let (tx, _events) = mpsc::unbounded_channel();
    rt.start(spec(&s, i3, id(0xde), "ghcr.io/acme/uploads:3"), capture(id(0xde)).0, tx).await.unwrap();
    api.take_writes();
    rt.stop(i3).await;
    assert_eq!(api.take_writes(), [format!("PATCH statefulsets/{set_name}"), format!("DELETE secrets/uploads-{}-env", short(i3))]);
    let set = api.object("statefulsets", NS, &set_name).unwrap();
    assert_eq!(set["metadata"]["labels"]["roundhouse.dev/instance"], i2.to_string());
    assert_eq!(set["spec"]["template"]["spec"]["containers"][0]["image"], "ghcr.io/acme/uploads:2");
    // Its claim template is the one it was made with, whatever the plan says now.
    assert_eq!(set["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "5Gi");
    rt.stop(i2).await;
    assert!(api.object("statefulsets", NS, &set_name).is_none(), "the last holder stopped: it goes (its claim stays)");
}

#[tokio::test]
async fn a_build_given_up_on_takes_its_job_with_it() {
    let (rt, api) = runtime();
    let s = service("api", SourceKind::Git, "https://github.com/acme/api");
    let d = id(0xdf);
    let (build, name) = started_build(&rt, &api, &s, d, capture(d).0).await;
    // The pipeline's build timeout drops the build.
    build.abort();
    for _ in 0..200 {
        if api.object("jobs", NS, &name).is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the abandoned build's Job is still there");
}

#[tokio::test]
async fn another_process_adopts_what_runs_and_takes_it_back_without_restarting_it() {
    let (first, api) = runtime();
    let s = service("web", SourceKind::Image, "ghcr.io/acme/web:2");
    let i1 = id(8);
    let (tx, mut events) = mpsc::unbounded_channel();
    first.start(spec(&s, i1, id(0xd8), "ghcr.io/acme/web:2"), capture(id(0xd8)).0, tx).await.unwrap();
    api.put_pod(pod("web-1", i1, running(true, 3, Some(1))));
    assert!(matches!(next(&mut events).await, InstanceEvent::Started { .. }));
    first.release().await;
    drop(first);

    // Another installation's instance in the same cluster is none of this one's business.
    api.put("deployments", "rh-other", "web-99", json!({ "metadata": { "name": "web-99", "namespace": "rh-other", "labels": {
        "app.kubernetes.io/managed-by": "roundhouse", "roundhouse.dev/installation": "staging", "roundhouse.dev/instance": id(0x99).to_string() } } }));
    // What the instance wrote before it was taken back was stored by the process before.
    api.log("web-1", &["2000-01-01T00:00:00Z stored by the first process", "2999-01-01T00:00:00Z written after the take-over"]);

    let second = Arc::new(KubernetesRuntime::new(api.connect(), settings(), Arc::new(Fixed)));
    let adoption = second.adopt().await.unwrap();
    assert_eq!((adoption.found, adoption.running, adoption.cleaned), (vec![i1], vec![], 0));
    api.take_writes();
    let (tx, mut events) = mpsc::unbounded_channel();
    let (sink, captured) = capture(id(0xd8));
    let endpoint = second.start(spec(&s, i1, id(0xd8), "ghcr.io/acme/web:2"), sink, tx).await.unwrap();
    assert_eq!(endpoint.addr.port(), 3000);
    assert!(api.take_writes().iter().all(|w| w.starts_with("PATCH")), "the same objects applied again: nothing deleted, nothing restarted");
    // Its pod is followed from where it stands: its three earlier restarts are not new.
    assert!(matches!(next(&mut events).await, InstanceEvent::Started { instance_id, .. } if instance_id == i1));
    second.ready(i1, deadline()).await.unwrap();
    assert_eq!(second.adopt().await.unwrap().running, [i1]);
    let lines = wait_line(&captured, "written after the take-over").await;
    assert!(!lines.iter().any(|(_, l)| l.contains("stored by the first process")), "{lines:?}");
    assert!(api.object("deployments", "rh-other", "web-99").is_some());
}

/// Starts building `s` for deployment `d` into `sink`; answers the build and its Job's name
/// once the Job is applied.
async fn started_build(rt: &Arc<KubernetesRuntime>, api: &FakeApi, s: &Service, d: Uuid, sink: LogSink) -> (tokio::task::JoinHandle<Result<String, RuntimeError>>, String) {
    let job = BuildJob { deployment_id: d, spec: s.clone(), env: BTreeMap::new(), archive: None };
    let build = tokio::spawn({
        let rt = rt.clone();
        async move { rt.build(job, sink, CancellationToken::new()).await }
    });
    let name = format!("build-api-{}", short(d));
    for _ in 0..200 {
        if api.object("jobs", NS, &name).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (build, name)
}

#[tokio::test]
async fn a_git_source_is_built_by_a_job_whose_log_is_the_builds() {
    let (rt, api) = runtime();
    let s = service("api", SourceKind::Git, "https://github.com/acme/api");
    let d = id(0xd9);
    let (sink, captured) = capture(d);
    let (build, name) = started_build(&rt, &api, &s, d, sink).await;
    assert_eq!(
        api.take_writes(),
        [format!("PATCH namespaces/{NS}"), "PATCH networkpolicies/roundhouse-isolation".into(), "PATCH resourcequotas/roundhouse-plan".into(), "PATCH limitranges/roundhouse-defaults".into(), format!("PATCH jobs/{name}")]
    );
    api.log("build-pod", &["2026-11-30T07:00:01Z INFO[0001] Retrieving image manifest", "2026-11-30T07:00:09Z INFO[0009] Pushed image"]);
    let mut p = pod("build-pod", d, ended(0));
    p["metadata"]["labels"]["roundhouse.dev/role"] = json!("build");
    api.put_pod(p);
    let image = build.await.unwrap().unwrap();
    assert_eq!(image, format!("registry.example.com/roundhouse/{}:{d}", s.id));
    let lines = wait_line(&captured, "INFO[0009] Pushed image").await;
    assert!(lines.iter().any(|(stream, l)| *stream == Stream::Build && l == "INFO[0001] Retrieving image manifest"));
    assert!(rt.adopt().await.unwrap().found.is_empty(), "a build is not an instance");
}

#[tokio::test]
async fn a_failed_build_says_so_and_its_job_goes() {
    let (rt, api) = runtime();
    let s = service("api", SourceKind::Git, "https://github.com/acme/api");
    let d = id(0xda);
    let (build, name) = started_build(&rt, &api, &s, d, capture(d).0).await;
    api.put_pod(pod("build-pod", d, ended(1)));
    let err = build.await.unwrap().unwrap_err();
    assert_eq!(err.user, "The build failed (exit code 1): its log above says why.");
    assert!(api.object("jobs", NS, &name).is_none());
}

#[tokio::test]
async fn a_pre_deploy_command_runs_once_as_a_job_and_its_exit_code_is_told() {
    let (rt, api) = runtime();
    let s = service("web", SourceKind::Image, "ghcr.io/acme/web:2");
    let i = id(9);
    let mut one_off = spec(&s, i, id(0xdb), "ghcr.io/acme/web:2");
    one_off.command = Some("./migrate".into());
    let (tx, mut events) = mpsc::unbounded_channel();
    rt.start(one_off, capture(id(0xdb)).0, tx).await.unwrap();
    let writes = api.take_writes();
    assert_eq!(writes.last().unwrap(), &format!("PATCH jobs/web-{}", short(i)), "{writes:?}");
    assert!(!writes.iter().any(|w| w.contains("deployments/") || w.contains("ingresses/")));
    api.put_pod(pod("web-run", i, ended(3)));
    match next(&mut events).await {
        InstanceEvent::Exited { exit_code, stopped, .. } => assert_eq!((exit_code, stopped), (Some(3), false)),
        other => panic!("{other:?}"),
    }
    // Its variables go at once (a run a minute would otherwise pile Secrets up); its Job stays
    // for the cluster's TTL.
    assert_eq!(api.take_writes(), [format!("DELETE secrets/web-{}-env", short(i))]);
    assert!(api.object("jobs", NS, &format!("web-{}", short(i))).is_some());
}

#[test]
fn what_a_cluster_cannot_run_is_refused_with_the_reason() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (client, _api) = FakeApi::start();
        let without_registry = KubernetesRuntime::new(client, Settings::default(), Arc::new(Fixed));
        assert!(without_registry.supports(SourceKind::Image).is_ok());
        assert!(without_registry.supports(SourceKind::Database).is_ok());
        assert!(without_registry.supports(SourceKind::Git).unwrap_err().contains("no registry"));
        assert!(without_registry.supports(SourceKind::Upload).is_err());
        assert!(without_registry.supports(SourceKind::Directory).is_err());
        assert!(without_registry.private_addrs(20001, &[80], false).is_empty(), "bare names resolve to the cluster's Services");
    });
}

#[tokio::test]
async fn the_platforms_image_pull_secret_is_copied_into_each_environment() {
    let (client, api) = FakeApi::start();
    api.put("secrets", "roundhouse", "registry-auth", json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "registry-auth", "namespace": "roundhouse", "annotations": { "owner": "ops" } },
        "type": "kubernetes.io/dockerconfigjson", "data": { ".dockerconfigjson": "eyJhdXRocyI6e319" } }));
    let settings = Settings { image_pull_secret: Some("registry-auth".into()), ..settings() };
    let rt = KubernetesRuntime::new(client, settings, Arc::new(Fixed));
    let s = service("web", SourceKind::Image, "registry.example.com/acme/web:2");
    let (tx, _events) = mpsc::unbounded_channel();
    rt.start(spec(&s, id(0xa), id(0xda), "registry.example.com/acme/web:2"), capture(id(0xda)).0, tx).await.unwrap();
    let writes = api.take_writes();
    assert_eq!(writes[4], "PATCH secrets/registry-auth", "after the namespace, before the pods that need it: {writes:?}");
    let copy = api.object("secrets", NS, "registry-auth").unwrap();
    assert_eq!((copy["type"].as_str(), copy["data"][".dockerconfigjson"].as_str()), (Some("kubernetes.io/dockerconfigjson"), Some("eyJhdXRocyI6e319")));
    assert!(copy["metadata"]["annotations"].is_null(), "its data only");
    let deployment = api.object("deployments", NS, &format!("web-{}", short(id(0xa)))).unwrap();
    assert_eq!(deployment["spec"]["template"]["spec"]["imagePullSecrets"][0]["name"], "registry-auth");
}

#[tokio::test]
async fn an_instance_no_node_has_room_for_waits_and_then_says_why() {
    let (rt, api) = runtime();
    let s = service("web", SourceKind::Image, "ghcr.io/acme/web:2");
    let i = id(0xb);
    let (sink, captured) = capture(id(0xdc));
    let (tx, _events) = mpsc::unbounded_channel();
    rt.start(spec(&s, i, id(0xdc), "ghcr.io/acme/web:2"), sink, tx).await.unwrap();
    let unschedulable = json!({ "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu." }] });
    api.put_pod(pod("web-x", i, unschedulable));
    let err = rt.ready(i, Instant::now() + Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(err.user, "It was not ready in time. No node of the cluster has room for it now (its CPU, memory or volume): the cluster keeps trying.");
    assert_eq!(err.internal.as_deref(), Some("0/3 nodes are available: 3 Insufficient cpu."));
    wait_line(&captured, super::NO_ROOM).await;
}

#[tokio::test]
async fn a_newer_volume_instance_that_crashes_out_hands_the_stateful_set_back() {
    let (rt, api) = runtime();
    let mut s = service("uploads", SourceKind::Image, "ghcr.io/acme/uploads:1");
    s.volume_path = Some("/data".into());
    s.replicas = 1;
    s.restart_policy = RestartPolicy::OnFailure;
    s.restart_max = 0;
    let (i1, i2) = (id(0x1a), id(0x1b));
    let (tx, mut events) = mpsc::unbounded_channel();
    rt.start(spec(&s, i1, id(0xe1), "ghcr.io/acme/uploads:1"), capture(id(0xe1)).0, tx.clone()).await.unwrap();
    rt.start(spec(&s, i2, id(0xe2), "ghcr.io/acme/uploads:2"), capture(id(0xe2)).0, tx).await.unwrap();
    api.take_writes();
    api.put_pod(pod("state-0", i2, running(false, 0, None)));
    assert!(matches!(next(&mut events).await, InstanceEvent::Started { instance_id, .. } if instance_id == i2));
    api.put_pod(pod("state-0", i2, waiting("CrashLoopBackOff", "back-off", 1, Some(1))));
    match next(&mut events).await {
        InstanceEvent::Exited { instance_id, stopped, .. } => assert_eq!((instance_id, stopped), (i2, false)),
        other => panic!("{other:?}"),
    }
    let set_name = manifests::stateful_name(&s);
    assert_eq!(api.take_writes(), [format!("PATCH statefulsets/{set_name}"), format!("DELETE secrets/uploads-{}-env", short(i2))]);
    assert_eq!(api.object("statefulsets", NS, &set_name).unwrap()["metadata"]["labels"]["roundhouse.dev/instance"], i1.to_string());
    assert_eq!(api.object("statefulsets", NS, &set_name).unwrap()["spec"]["podManagementPolicy"], "Parallel");
}

#[tokio::test]
async fn a_volume_service_runs_one_instance_on_a_cluster() {
    let (rt, _api) = runtime();
    let mut s = service("uploads", SourceKind::Image, "ghcr.io/acme/uploads:1");
    s.volume_path = Some("/data".into());
    let mut second = spec(&s, id(0x1c), id(0xe3), "ghcr.io/acme/uploads:1");
    second.replica = 1;
    let (tx, _events) = mpsc::unbounded_channel();
    let err = rt.start(second, capture(id(0xe3)).0, tx).await.unwrap_err();
    assert!(err.user.contains("set its replicas to 1"), "{}", err.user);
}
