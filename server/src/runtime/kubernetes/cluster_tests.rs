//! The cluster client against a mock Kubernetes API (kube-rs' tower-test pattern): each request
//! is checked in order — method, path, query, content type, body — and answered as the API
//! server would.

use super::*;
use crate::runtime::kubernetes::{
    fixtures::{service, target},
    manifests, Settings,
};
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{json, Value};
use tower_test::mock::{self, Handle};

type ApiServer = Handle<Request<Body>, Response<Body>>;

fn mock_cluster() -> (Cluster, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Cluster::new(Client::new(service, "default")), handle)
}

/// The next request: its method, path with query, content type and JSON body; and where the
/// answer goes.
async fn next(api: &mut ApiServer) -> (String, String, String, Value, mock::SendResponse<Response<Body>>) {
    let (req, send) = api.next_request().await.expect("a request");
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let content_type = req.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (method, uri, content_type, body, send)
}

fn answer(send: mock::SendResponse<Response<Body>>, body: &Value) {
    send.send_response(Response::builder().status(200).body(Body::from(serde_json::to_vec(body).unwrap())).unwrap());
}

#[tokio::test]
async fn objects_are_applied_server_side_in_order_under_the_roundhouse_field_manager() {
    let (cluster, mut api) = mock_cluster();
    let t = target();
    let s = service("web", app::services::SourceKind::Image, "ghcr.io/acme/web:1");
    let env = std::collections::BTreeMap::new();
    let w = manifests::Workload {
        target: &t,
        service: &s,
        deployment_id: uuid::Uuid::from_u128(4),
        instance_id: uuid::Uuid::from_u128(5 << 120),
        command: None,
        image: s.source.clone(),
        env: &env,
        volume_gb: 1,
    };
    let quota = manifests::Quota { services: 3, replicas: 1, cpu_millis: 1000, memory_mb: 512, volume_gb: 1 };
    let mut objects = manifests::environment(&t, quota, &Settings::default());
    objects.extend(manifests::workload(&w, &Settings::default()));
    let expected = [
        ("/api/v1/namespaces/rh-00000000000000000000000000000022", "Namespace"),
        ("/apis/networking.k8s.io/v1/namespaces/rh-00000000000000000000000000000022/networkpolicies/roundhouse-isolation", "NetworkPolicy"),
        ("/api/v1/namespaces/rh-00000000000000000000000000000022/resourcequotas/roundhouse-plan", "ResourceQuota"),
        ("/api/v1/namespaces/rh-00000000000000000000000000000022/limitranges/roundhouse-defaults", "LimitRange"),
        ("/api/v1/namespaces/rh-00000000000000000000000000000022/secrets/web-05000000-env", "Secret"),
        ("/apis/apps/v1/namespaces/rh-00000000000000000000000000000022/deployments/web-05000000", "Deployment"),
        ("/api/v1/namespaces/rh-00000000000000000000000000000022/services/web", "Service"),
        ("/apis/networking.k8s.io/v1/namespaces/rh-00000000000000000000000000000022/ingresses/web", "Ingress"),
    ];
    let server = tokio::spawn(async move {
        for (path, kind) in expected {
            let (method, uri, content_type, body, send) = next(&mut api).await;
            assert_eq!(method, "PATCH", "{uri}");
            assert_eq!(uri, format!("{path}?&force=true&fieldManager=roundhouse"));
            assert_eq!(content_type, "application/apply-patch+yaml");
            assert_eq!(body["kind"], kind);
            assert_eq!(body["metadata"]["labels"]["app.kubernetes.io/managed-by"], "roundhouse", "{body}");
            answer(send, &body);
        }
    });
    cluster.apply(&objects).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn missing_rbac_verbs_are_named_at_start() {
    let (cluster, mut api) = mock_cluster();
    let server = tokio::spawn(async move {
        for _ in 0..PERMISSIONS.iter().map(|p| p.3.len()).sum::<usize>() {
            let (method, uri, _, mut review, send) = next(&mut api).await;
            assert_eq!((method.as_str(), uri.as_str()), ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews?"));
            let attrs = &review["spec"]["resourceAttributes"];
            let denied = (attrs["verb"] == "delete" && attrs["resource"] == "statefulsets")
                || (attrs["verb"] == "list" && attrs["resource"] == "persistentvolumeclaims")
                || (attrs["verb"] == "get" && attrs["subresource"] == "log");
            review["status"] = json!({ "allowed": !denied });
            answer(send, &review);
        }
    });
    let missing = cluster.missing_permissions().await.unwrap();
    server.await.unwrap();
    assert_eq!(missing, ["delete apps/statefulsets", "get pods/log", "list persistentvolumeclaims"]);
}

#[tokio::test]
async fn what_a_service_no_longer_needs_is_pruned_by_label_and_waits_for_its_pods() {
    let (cluster, mut api) = mock_cluster();
    let server = tokio::spawn(async move {
        let (method, uri, _, _, send) = next(&mut api).await;
        assert_eq!(method, "GET");
        assert_eq!(uri, "/apis/apps/v1/namespaces/rh-00000000000000000000000000000022/deployments?&labelSelector=roundhouse.dev%2Fservice%3D3");
        let item = |name: &str| json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": name, "namespace": "rh-00000000000000000000000000000022" } });
        answer(send, &json!({ "apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {}, "items": [item("web"), item("web-old")] }));
        let (method, uri, _, body, send) = next(&mut api).await;
        assert_eq!((method.as_str(), uri.as_str()), ("DELETE", "/apis/apps/v1/namespaces/rh-00000000000000000000000000000022/deployments/web-old?"));
        assert_eq!(body["propagationPolicy"], "Foreground");
        answer(send, &json!({ "kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {} }));
    });
    let deleted = cluster
        .prune::<k8s_openapi::api::apps::v1::Deployment>("rh-00000000000000000000000000000022", "roundhouse.dev/service=3", &["web".to_string()])
        .await
        .unwrap();
    server.await.unwrap();
    assert_eq!(deleted, ["web-old"]);
}

/// Every verb the runtime checks for at start is granted by deploy/kubernetes/rbac.yaml, and
/// the ClusterRole grants nothing more (but what it lists as optional or for the check itself).
#[test]
fn the_shipped_cluster_role_grants_exactly_what_the_runtime_checks_for() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kubernetes/rbac.yaml")).unwrap();
    let role = text
        .split("\n---\n")
        .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap())
        .find(|doc| doc["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    let mut granted = std::collections::BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    granted.insert(format!("{} {} {}", group.as_str().unwrap(), resource.as_str().unwrap(), verb.as_str().unwrap()));
                }
            }
        }
    }
    let mut checked = std::collections::BTreeSet::new();
    for (group, resource, subresource, verbs) in PERMISSIONS {
        let resource = if subresource.is_empty() { resource.to_string() } else { format!("{resource}/{subresource}") };
        for verb in *verbs {
            checked.insert(format!("{group} {resource} {verb}"));
        }
    }
    let missing: Vec<_> = checked.difference(&granted).collect();
    assert!(missing.is_empty(), "rbac.yaml lacks {missing:?}");
    let extra: Vec<_> = granted.difference(&checked).filter(|g| !g.starts_with("metrics.k8s.io ") && !g.starts_with("authorization.k8s.io ")).collect();
    assert!(extra.is_empty(), "rbac.yaml grants more than the runtime uses: {extra:?}");
}
