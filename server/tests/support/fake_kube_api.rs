//! A small Kubernetes API server for tests, behind kube-rs' tower-test mock: it keeps the
//! objects applied to it, lists them by label selector, answers watches of pods from its own
//! resource versions, serves pod logs, and deletes a workload's pods with it — as the real
//! API server would, for the requests the runtime makes. Each write is recorded in order
//! (`writes`), and every apply is checked for the field manager `roundhouse` with `force`.

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::{Body, Client};
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};
use tower_test::mock::{self, SendResponse};

type Responder = SendResponse<Response<Body>>;

#[derive(Default)]
struct State {
    /// (resource, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    /// `PATCH deployments/web-55000000`, `DELETE secrets/…`, in order.
    writes: Vec<String>,
    /// What broke the API's rules (an apply without the field manager, say).
    violations: Vec<String>,
    rv: u64,
    /// Every pod event: its resource version and the event.
    pod_events: Vec<(u64, Value)>,
    /// Lines of each pod's log (`<RFC 3339 time> <line>`).
    logs: HashMap<String, Vec<String>>,
    /// Watches waiting for an event past their resource version.
    watches: Vec<(u64, Responder)>,
    /// Requests never answered (a log followed to its end): kept so the client waits.
    held: Vec<Responder>,
    /// Pod logs opened so far, with their query.
    log_requests: Vec<String>,
}

#[derive(Clone, Default)]
pub struct FakeApi(Arc<Mutex<State>>);

fn ok(body: &Value) -> Response<Body> {
    Response::builder().status(200).body(Body::from(serde_json::to_vec(body).unwrap())).unwrap()
}

fn not_found(what: &str) -> Response<Body> {
    let status = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("{what} not found"), "reason": "NotFound", "code": 404 });
    Response::builder().status(404).body(Body::from(serde_json::to_vec(&status).unwrap())).unwrap()
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).map(|v| urlencoding_decode(v))
}

fn urlencoding_decode(v: &str) -> String {
    form_urlencoded::parse(format!("v={v}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// Whether `labels` match a selector such as `a=b,c=d,!e,f!=g`.
fn matches(labels: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| match term.strip_prefix('!') {
        Some(key) => labels.get(key).is_none(),
        None if term.contains("!=") => {
            let (k, v) = term.split_once("!=").unwrap();
            labels.get(k).and_then(Value::as_str) != Some(v)
        }
        None => {
            let (k, v) = term.split_once('=').unwrap_or((term, ""));
            labels.get(k).and_then(Value::as_str) == Some(v)
        }
    })
}

/// `/apis/apps/v1/namespaces/ns/deployments/web/status` → (resource, namespace, name, sub).
fn route(path: &str) -> (String, String, String, String) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rest = match segments.first() {
        Some(&"api") => &segments[2..],
        _ => &segments[3.min(segments.len())..],
    };
    let at = |i: usize| rest.get(i).map(|s| s.to_string()).unwrap_or_default();
    match rest {
        ["namespaces", _] | ["namespaces"] => ("namespaces".into(), String::new(), at(1), String::new()),
        ["namespaces", ..] => (at(2), at(1), at(3), at(4)),
        _ => (at(0), String::new(), at(1), at(2)),
    }
}

impl FakeApi {
    /// A client talking to a new fake, and the fake.
    pub fn start() -> (Client, FakeApi) {
        let api = FakeApi::default();
        (api.connect(), api)
    }

    /// Another client of the same API server (another process of the platform).
    pub fn connect(&self) -> Client {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let this = self.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or_default().to_string();
                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
                this.answer(&method, &path, &query, body, send);
            }
        });
        Client::new(service, "default")
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    fn answer(&self, method: &str, path: &str, query: &str, body: Value, send: Responder) {
        let (resource, namespace, name, sub) = route(path);
        let mut state = self.state();
        match method {
            "PATCH" => {
                if query_param(query, "fieldManager").as_deref() != Some("roundhouse") || query_param(query, "force").as_deref() != Some("true") {
                    state.violations.push(format!("{path}?{query}: not applied by roundhouse with force"));
                }
                state.writes.push(format!("PATCH {resource}/{name}"));
                let mut object = body;
                if resource == "services" && object["spec"]["clusterIP"].as_str() != Some("None") {
                    object["spec"]["clusterIP"] = json!("10.96.0.10");
                }
                state.rv += 1;
                object["metadata"]["resourceVersion"] = json!(state.rv.to_string());
                state.objects.insert((resource, namespace, name), object.clone());
                send.send_response(ok(&object));
            }
            "DELETE" => {
                state.writes.push(format!("DELETE {resource}/{name}"));
                if body["propagationPolicy"] != "Foreground" {
                    state.violations.push(format!("DELETE {path}: not foreground"));
                }
                match state.objects.remove(&(resource.clone(), namespace.clone(), name.clone())) {
                    Some(object) => {
                        // What the workload owned goes with it.
                        if let Some(instance) = object["metadata"]["labels"]["roundhouse.dev/instance"].as_str().filter(|_| ["deployments", "statefulsets", "jobs"].contains(&resource.as_str())) {
                            let owned: Vec<String> = state
                                .objects
                                .iter()
                                .filter(|((r, ns, _), pod)| r == "pods" && *ns == namespace && pod["metadata"]["labels"]["roundhouse.dev/instance"] == instance)
                                .map(|((_, _, n), _)| n.clone())
                                .collect();
                            drop(state);
                            for pod in owned {
                                self.delete_pod(&namespace, &pod);
                            }
                        }
                        send.send_response(ok(&json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" })));
                    }
                    None => send.send_response(not_found(&name)),
                }
            }
            "GET" if sub == "log" => {
                state.log_requests.push(query.to_string());
                let since = query_param(query, "sinceTime");
                let lines: Vec<String> = state
                    .logs
                    .get(&name)
                    .into_iter()
                    .flatten()
                    .filter(|l| since.as_deref().is_none_or(|s| l.split(' ').next().unwrap_or_default() >= s))
                    .cloned()
                    .collect();
                let follow = query_param(query, "follow").as_deref() == Some("true");
                if lines.is_empty() && follow {
                    state.held.push(send);
                } else {
                    let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
                    send.send_response(Response::builder().status(200).body(Body::from(text.into_bytes())).unwrap());
                }
            }
            "GET" if query_param(query, "watch").as_deref() == Some("true") => {
                let since: u64 = query_param(query, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
                state.watches.push((since, send));
                drop(state);
                self.flush_watches();
            }
            "GET" if name.is_empty() => {
                let selector = query_param(query, "labelSelector").unwrap_or_default();
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|((r, ns, _), o)| *r == resource && (namespace.is_empty() || *ns == namespace) && matches(&o["metadata"]["labels"], &selector))
                    .map(|(_, o)| o.clone())
                    .collect();
                let rv = state.rv.to_string();
                send.send_response(ok(&json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": rv }, "items": items })));
            }
            "GET" => match state.objects.get(&(resource, namespace, name.clone())) {
                Some(o) => send.send_response(ok(o)),
                None => send.send_response(not_found(&name)),
            },
            _ => {
                state.violations.push(format!("unexpected {method} {path}"));
                send.send_response(not_found(path));
            }
        }
    }

    fn flush_watches(&self) {
        let mut state = self.state();
        let waiting = std::mem::take(&mut state.watches);
        for (since, send) in waiting {
            let events: Vec<&Value> = state.pod_events.iter().filter(|(rv, _)| *rv > since).map(|(_, e)| e).collect();
            if events.is_empty() {
                state.watches.push((since, send));
                continue;
            }
            let text = events.iter().map(|e| format!("{e}\n")).collect::<String>();
            send.send_response(Response::builder().status(200).body(Body::from(text.into_bytes())).unwrap());
        }
    }

    /// The cluster creates or changes a pod (the test says what its status is).
    pub fn put_pod(&self, pod: Value) {
        {
            let mut state = self.state();
            state.rv += 1;
            let mut pod = pod;
            pod["apiVersion"] = json!("v1");
            pod["kind"] = json!("Pod");
            pod["metadata"]["resourceVersion"] = json!(state.rv.to_string());
            let key = ("pods".to_string(), pod["metadata"]["namespace"].as_str().unwrap().to_string(), pod["metadata"]["name"].as_str().unwrap().to_string());
            let kind = if state.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
            state.objects.insert(key, pod.clone());
            let rv = state.rv;
            state.pod_events.push((rv, json!({ "type": kind, "object": pod })));
        }
        self.flush_watches();
    }

    fn delete_pod(&self, namespace: &str, name: &str) {
        {
            let mut state = self.state();
            let Some(mut pod) = state.objects.remove(&("pods".to_string(), namespace.to_string(), name.to_string())) else { return };
            state.rv += 1;
            pod["metadata"]["resourceVersion"] = json!(state.rv.to_string());
            let rv = state.rv;
            state.pod_events.push((rv, json!({ "type": "DELETED", "object": pod })));
        }
        self.flush_watches();
    }

    /// An object that exists before the test begins.
    pub fn put(&self, resource: &str, namespace: &str, name: &str, object: Value) {
        self.state().objects.insert((resource.to_string(), namespace.to_string(), name.to_string()), object);
    }

    /// What the pod's container wrote (`<RFC 3339 time> <line>` each).
    pub fn log(&self, pod: &str, lines: &[&str]) {
        self.state().logs.entry(pod.to_string()).or_default().extend(lines.iter().map(|l| l.to_string()));
    }

    /// The writes so far, in order, and forgets them.
    pub fn take_writes(&self) -> Vec<String> {
        std::mem::take(&mut self.state().writes)
    }

    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }

    pub fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.state().objects.get(&(resource.to_string(), namespace.to_string(), name.to_string())).cloned()
    }

    pub fn names(&self, resource: &str) -> Vec<String> {
        self.state().objects.keys().filter(|(r, _, _)| r == resource).map(|(_, _, n)| n.clone()).collect()
    }

    pub fn log_requests(&self) -> Vec<String> {
        self.state().log_requests.clone()
    }
}
