//! Who the client is, through a real socket: the platform served as `roundhouse` serves it (the
//! peer address comes from the TCP connection), with and without `ROUNDHOUSE_TRUST_PROXY`. What
//! is observed is what the address decides: the per-address sign-in limit and the address a new
//! session records.

use crate::helpers::*;
use axum::{
    body::{Body, Bytes},
    http::{header, Method, Request, StatusCode},
};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde_json::{json, Value};
use std::net::SocketAddr;

/// The whole platform listening on a loopback port of its own, for as long as the test runs.
async fn serve(app: &TestApp) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = server::router(app.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    addr
}

/// A user who has confirmed their email, made without signing in (which would count against
/// the loopback address the sockets come from).
async fn confirmed_user(app: &TestApp, email: &str) {
    app.register("Ada", email).await;
    let token = app.mailed_token(email, "verify").await;
    let r = app.api(Method::POST, "/auth/verify", None, Some(json!({ "token": token }))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// `POST /api/v1/auth/login` over TCP, each given `X-Forwarded-For` value as a header line of
/// its own.
async fn sign_in(addr: SocketAddr, forwarded_for: &[&str], email: &str, password: &str) -> (StatusCode, Value) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}/api/v1/auth/login"))
        .header(header::CONTENT_TYPE, "application/json");
    for v in forwarded_for {
        req = req.header("x-forwarded-for", *v);
    }
    let body = json!({ "email": email, "password": password }).to_string();
    let response = client.request(req.body(Full::from(body)).unwrap()).await.expect("the platform answers");
    let status = response.status();
    let bytes = Body::new(response.into_body()).collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The address the session of a bearer token recorded.
async fn session_ip(app: &TestApp, token: &Value) -> String {
    let token = token["token"].as_str().expect("a session token");
    sqlx::query_scalar("SELECT ip FROM sessions WHERE token_hash = $1")
        .bind(app::infra::crypto::hash_token(token))
        .fetch_one(&app.db)
        .await
        .expect("the session")
}

const WRONG: &str = "not the password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trust_proxy_a_forged_forwarded_for_is_ignored_and_does_not_evade_the_limit() {
    let app = TestApp::with_config(|c| {
        c.trust_proxy = app::infra::TrustProxy::None;
        c.login_per_ip_per_minute = 3;
        c.login_per_account_per_minute = 100;
    })
    .await;
    confirmed_user(&app, "ada@example.com").await;
    let addr = serve(&app).await;

    let (status, body) = sign_in(addr, &["203.0.113.7"], "ada@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(session_ip(&app, &body).await, "127.0.0.1", "the session records the socket's peer, not the header");

    for forged in ["198.51.100.1", "198.51.100.2"] {
        let (status, body) = sign_in(addr, &[forged], "ada@example.com", WRONG).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    // A fourth attempt from the same socket address, claiming yet another address: still counted
    // as the same client.
    let (status, body) = sign_in(addr, &["198.51.100.3"], "ada@example.com", WRONG).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_rightmost_forwarded_entry_is_the_client_and_the_rest_cannot_change_it() {
    let app = TestApp::with_config(|c| {
        c.trust_proxy = app::infra::TrustProxy::Hops(1);
        c.login_per_ip_per_minute = 3;
        c.login_per_account_per_minute = 100;
    })
    .await;
    confirmed_user(&app, "ada@example.com").await;
    let addr = serve(&app).await;

    // The client wrote "6.6.6.6"; the proxy appended the address it saw.
    let (status, body) = sign_in(addr, &["6.6.6.6, 203.0.113.7"], "ada@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(session_ip(&app, &body).await, "203.0.113.7");

    // The same client, forging a different leftmost entry each time (or a header line of its
    // own before the proxy's), is one client.
    for forwarded in [&["198.51.100.1, 203.0.113.7"][..], &["198.51.100.2", "203.0.113.7"]] {
        let (status, body) = sign_in(addr, forwarded, "ada@example.com", WRONG).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    for forwarded in [&["198.51.100.3, 203.0.113.7"][..], &["203.0.113.7"]] {
        let (status, body) = sign_in(addr, forwarded, "ada@example.com", WRONG).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{forwarded:?}: {body}");
    }

    // Another client behind the same proxy has a limit of its own, whatever it claims to be.
    let (status, body) = sign_in(addr, &["203.0.113.7, 203.0.113.8"], "ada@example.com", WRONG).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A rightmost entry that is not an address is no one's word: the socket's peer is the client.
    let (status, body) = sign_in(addr, &["203.0.113.7, unknown"], "ada@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(session_ip(&app, &body).await, "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_proxies_at_trusted_networks_the_client_is_the_rightmost_entry_outside_them() {
    // The test's connections come from 127.0.0.1: the proxies are "at" 127.0.0.0/8 and 10.0.0.0/8.
    let app = TestApp::with_config(|c| {
        c.trust_proxy = app::infra::TrustProxy::Networks(vec!["127.0.0.0/8".parse().unwrap(), "10.0.0.0/8".parse().unwrap()]);
        c.login_per_ip_per_minute = 100;
    })
    .await;
    confirmed_user(&app, "ada@example.com").await;
    let addr = serve(&app).await;
    // Client → CDN edge (10.1.2.3) → the operator's load balancer (the peer): two hops of ours.
    let (status, body) = sign_in(addr, &["6.6.6.6, 203.0.113.7, 10.1.2.3"], "ada@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(session_ip(&app, &body).await, "203.0.113.7", "forged 6.6.6.6 never counts");
    // Only trusted hops: the leftmost of them is the client.
    let (_, body) = sign_in(addr, &["10.9.9.9"], "ada@example.com", PASSWORD).await;
    assert_eq!(session_ip(&app, &body).await, "10.9.9.9");
}
