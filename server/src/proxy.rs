//! The service proxy: `http://<service>.<project>.<apps domain>:<Roundhouse's port>` reaches
//! the healthy instances of the service's running deployment, round robin; and each app
//! service's private port forwards TCP to the same instances.

use crate::runtime::{net, PrivateListener};
use app::infra::{
    live::{Backends, Endpoint, RouteTable},
    AppState,
};
use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderValue, Method, StatusCode, Uri},
    middleware::Next,
    response::{Html, IntoResponse, Response},
};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use std::{collections::HashMap, net::SocketAddr, sync::Arc, sync::OnceLock};
use uuid::Uuid;

/// Rebuilds this replica's routing table from Postgres.
pub async fn reload_routes(state: &AppState) {
    let rows: Vec<(Uuid, String, String, String, String, Option<String>, Option<String>)> = match sqlx::query_as(
        "SELECT s.id, s.name, e.name, p.slug, s.source_kind, COALESCE(i.address, '127.0.0.1:' || i.port), i.network
         FROM deployments d JOIN services s ON s.id = d.service_id JOIN environments e ON e.id = s.environment_id
         JOIN projects p ON p.id = e.project_id
         LEFT JOIN instances i ON i.deployment_id = d.id AND i.state = 'healthy' AND (i.address IS NOT NULL OR i.port IS NOT NULL)
         WHERE d.status = 'running'
           -- During a switch-over two deployments run: traffic goes to the newer one.
           AND d.number = (SELECT max(number) FROM deployments n WHERE n.service_id = d.service_id AND n.status = 'running')
         ORDER BY i.replica",
    )
    .fetch_all(&state.db)
    .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "loading routes failed");
            return;
        }
    };
    let mut hosts: HashMap<String, Vec<Endpoint>> = HashMap::new();
    let mut services: HashMap<Uuid, Vec<Endpoint>> = HashMap::new();
    let mut service_of_host = HashMap::new();
    for (id, service, env, slug, kind, address, network) in rows {
        // The address as the runtime answered it, whichever runtime that is.
        let endpoint = address.and_then(|a| match a.parse::<SocketAddr>() {
            Ok(addr) => Some(Endpoint { network, addr }),
            Err(_) => {
                tracing::warn!(%a, service_id = %id, "an instance's address cannot be routed to");
                None
            }
        });
        services.entry(id).or_default().extend(endpoint.clone());
        if kind != "database" {
            let host = state.config.service_host(&service, &env, &slug);
            service_of_host.insert(host.clone(), id);
            hosts.entry(host).or_default().extend(endpoint);
        }
    }
    state.live.set_routes(RouteTable {
        by_host: hosts.into_iter().map(|(k, v)| (k, Arc::new(Backends::new(v)))).collect(),
        by_service: services.into_iter().map(|(k, v)| (k, Arc::new(Backends::new(v)))).collect(),
        service_of_host,
    });
}

/// How long an instance has to start answering a proxied request.
const UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// One pooled HTTP client for every instance, wherever it listens (`net::NetConnector`).
fn client() -> &'static Client<net::NetConnector, Body> {
    static CLIENT: OnceLock<Client<net::NetConnector, Body>> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build(net::NetConnector))
}

/// The host a request is for, if it names a service (`web.shop.localhost`).
pub fn service_host<'a>(host: &'a str, apps_domain: &str) -> Option<&'a str> {
    let host = host.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())).map(|(h, _)| h).unwrap_or(host);
    let rest = host.strip_suffix(apps_domain)?.strip_suffix('.')?;
    // <service>.<project>: two labels
    (rest.split('.').count() == 2 && !rest.split('.').any(str::is_empty)).then_some(host)
}

/// Middleware: requests for a service host go to the service; the rest to Roundhouse.
pub async fn route(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    let Some(host) = service_host(&host, &state.config.apps_domain).map(str::to_string) else {
        return next.run(req).await;
    };
    let table = state.live.routes();
    let Some(backends) = table.by_host.get(&host).cloned() else {
        return page(StatusCode::NOT_FOUND, "No service here", &format!("Nothing is deployed at {host}. Check the address, or deploy the service."));
    };
    let response = forward(&state, req, &backends, &host).await;
    match table.service_of_host.get(&host) {
        Some(&service) => metered(response, service, state.live.egress.clone()),
        None => response,
    }
}

/// Counts the body bytes of a service's answer as its egress, as they are sent.
fn metered(response: Response, service: Uuid, meter: Arc<app::infra::live::EgressMeter>) -> Response {
    use http_body_util::BodyExt;
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                meter.add(service, data.len() as u64);
            }
            frame
        }))
    })
}

async fn forward(state: &AppState, mut req: Request, backends: &Backends, host: &str) -> Response {
    let Some(endpoint) = backends.pick().cloned() else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service not running",
            &format!("{host} has no healthy instance right now. It may be starting, restarting or crashed: see its deployment logs."),
        );
    };
    let path = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let client_ip = req.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let headers = req.headers_mut();
    headers.insert("x-forwarded-host", HeaderValue::from_str(host).unwrap_or(HeaderValue::from_static("")));
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Some(ip) = client_ip.and_then(|ip| HeaderValue::from_str(&ip).ok()) {
        headers.insert("x-forwarded-for", ip);
    }
    // A request that changes nothing (GET, HEAD, OPTIONS) and has no body can be sent again
    // when no answer came: its instance went away during a deployment switch, between being
    // picked and answering. It goes to another instance of the current routes.
    let idempotent = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let again = (idempotent && axum::body::HttpBody::size_hint(req.body()).exact() == Some(0)).then(|| (req.method().clone(), req.headers().clone()));
    let mut failed = vec![endpoint.clone()];
    let mut result = send(req, &endpoint, &path, host).await;
    if let Some((method, headers)) = again {
        for attempt in 0..RETRIES {
            let Err(e) = &result else { break };
            tracing::debug!(error = %e, attempt, "no answer; trying another instance");
            let Some(other) = other_instance(state, host, &failed).await else { break };
            let mut retry = Request::new(Body::empty());
            *retry.method_mut() = method.clone();
            *retry.headers_mut() = headers.clone();
            failed.push(other.clone());
            result = send(retry, &other, &path, host).await;
        }
    }
    result.unwrap_or_else(|e| {
        tracing::debug!(error = %e, addr = %endpoint.addr, "proxying failed");
        unreachable(host)
    })
}

/// Times a request without a body is sent again when no answer came.
const RETRIES: usize = 3;

/// An instance of `host` in the current routes that has not failed this request; the routes
/// may lag a switch by a moment, so they are read again briefly before giving up.
async fn other_instance(state: &AppState, host: &str, failed: &[Endpoint]) -> Option<Endpoint> {
    for _ in 0..5 {
        let table = state.live.routes();
        if let Some(b) = table.by_host.get(host) {
            if let Some(e) = b.endpoints.iter().find(|e| !failed.contains(e)) {
                return Some(e.clone());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    None
}

fn unreachable(host: &str) -> Response {
    page(StatusCode::BAD_GATEWAY, "Service unreachable", &format!("{host} did not answer. It may be restarting: try again in a moment."))
}

/// Sends `req` to one instance; an error only when no answer came (a timeout is a page).
async fn send(mut req: Request, endpoint: &Endpoint, path: &str, host: &str) -> Result<Response, hyper_util::client::legacy::Error> {
    let Ok(uri) = format!("http://{}{path}", net::authority(endpoint)).parse::<Uri>() else {
        return Ok(page(StatusCode::BAD_REQUEST, "Bad request", "The request path is not valid."));
    };
    *req.uri_mut() = uri;
    // An instance that never answers must not hold the platform's connections forever.
    match tokio::time::timeout(UPSTREAM_TIMEOUT, client().request(req)).await {
        Ok(answer) => answer.map(|resp| resp.map(Body::new).into_response()),
        Err(_) => Ok(page(
            StatusCode::GATEWAY_TIMEOUT,
            "Service timed out",
            &format!("{host} did not start answering within {} seconds.", UPSTREAM_TIMEOUT.as_secs()),
        )),
    }
}

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · Roundhouse</title>\
         <style>body{{font-family:system-ui,sans-serif;background:#0b0d12;color:#e6e8ee;display:grid;place-items:center;min-height:100vh;margin:0}}\
         main{{max-width:32rem;padding:2rem}}h1{{font-size:1.4rem}}p{{color:#a4a9b8;line-height:1.5}}code{{color:#c4b5fd}}</style></head>\
         <body><main><p><code>{}</code></p><h1>{}</h1><p>{}</p><p>Served by Roundhouse.</p></main></body></html>",
        status.as_u16(),
        esc(title),
        esc(message)
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

/// Accepts where the service answers privately (in its environment's network) and pipes each
/// connection to a healthy instance of the service. `slots` bounds the connections of all of a
/// service's listeners together, and outlives them; the connections end with the forwarder
/// (aborting it aborts them), so a tenant holding connections open cannot use up the
/// platform's descriptors.
pub async fn forward_private(state: AppState, service_id: Uuid, private: PrivateListener, slots: Arc<tokio::sync::Semaphore>) {
    let PrivateListener { listener, hold: _hold } = private;
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            Err(e) => {
                tracing::debug!(error = %e, %service_id, "accepting on a private port failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let table = state.live.routes();
        let Some(endpoint) = table.by_service.get(&service_id).and_then(|b| b.pick().cloned()) else {
            drop(inbound);
            continue;
        };
        connections.spawn(async move {
            if let Ok(mut outbound) = net::connect(&endpoint).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
            drop(slot);
        });
    }
}

/// Connections one service's private addresses forward at once; more wait to be accepted.
pub const PRIVATE_CONNECTIONS: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_hosts_have_a_service_and_a_project_label() {
        assert_eq!(service_host("web.shop.localhost:3000", "localhost"), Some("web.shop.localhost"));
        assert_eq!(service_host("web.shop.localhost", "localhost"), Some("web.shop.localhost"));
        assert_eq!(service_host("localhost:3000", "localhost"), None);
        assert_eq!(service_host("shop.localhost", "localhost"), None);
        assert_eq!(service_host("a.b.c.localhost", "localhost"), None);
        assert_eq!(service_host("127.0.0.1:3000", "localhost"), None);
        assert_eq!(service_host("web.shop.apps.example.com", "apps.example.com"), Some("web.shop.apps.example.com"));
    }
}
