//! Live logs and status: a follower resumes by line id (`?after=` or, as a browser's
//! EventSource does on reconnect, `Last-Event-ID`), ids only increase, a follower that falls
//! behind still gets every line, and the project's event stream tells each status change.

use crate::{deploys::*, helpers::*};
use axum::{
    body::Body,
    http::{header, Request},
};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::time::Duration;
use tower::ServiceExt;

/// Server-sent events of a stream, parsed: (event, id, data).
struct Events {
    body: Body,
    buffer: String,
}

impl Events {
    async fn open(app: &TestApp, path: &str, token: &str, last_event_id: Option<i64>) -> Events {
        let mut req = Request::builder().uri(format!("/api/v1{path}")).header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = app.router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
        Events { body: resp.into_body(), buffer: String::new() }
    }

    /// The next event, waiting at most 30 s.
    async fn next(&mut self) -> (String, Option<i64>, String) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let raw: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| raw.lines().find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim_start().to_string()));
                if let Some(event) = field("event") {
                    return (event, field("id").and_then(|i| i.parse().ok()), field("data").unwrap_or_default());
                }
                continue; // a keep-alive comment
            }
            let frame = tokio::time::timeout(Duration::from_secs(30), self.body.frame()).await.expect("an event within 30 s").unwrap().unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// The next `line` event's (id, text).
    async fn next_line(&mut self) -> (i64, String) {
        loop {
            let (event, id, data) = self.next().await;
            if event == "line" {
                let line: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(Some(line["id"].as_i64().unwrap()), id, "the event id is the line id");
                return (id.unwrap(), line["line"].as_str().unwrap().to_string());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_resumes_after_a_line_id_and_a_slow_one_misses_nothing() {
    let app = TestApp::with_runtime().await;
    let s = setup(&app, &fixture(), json!({})).await;
    let id = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &id, &["running"]).await;
    app.via_proxy("web.shop.localhost", "/burst?n=200").await;
    let all = loop {
        let lines = app.get(&format!("/deployments/{id}/logs?limit=10000"), &s.token).await.body;
        let lines = lines.as_array().unwrap().clone();
        if lines.iter().any(|l| l["line"] == "burst line 199") {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ids: Vec<i64> = all.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids only increase");
    let middle = ids[ids.len() / 2];

    // ?after= answers exactly the lines after it.
    let after = app.get(&format!("/deployments/{id}/logs?after={middle}&limit=10000"), &s.token).await.body;
    let after_ids: Vec<i64> = after.as_array().unwrap().iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert_eq!(after_ids, ids.iter().copied().filter(|i| *i > middle).collect::<Vec<_>>());

    // Following with Last-Event-ID (and a stale ?after=0) starts right after that line.
    let mut events = Events::open(&app, &format!("/deployments/{id}/logs?follow=true&after=0"), &s.token, Some(middle)).await;
    let (first, _) = events.next_line().await;
    assert_eq!(first, after_ids[0], "resumed right after the last line it had");

    // A follower reading slowly while 5000 lines are printed gets every one, in order.
    let mut slow = Events::open(&app, &format!("/deployments/{id}/logs?follow=true&after={}", ids.last().unwrap()), &s.token, None).await;
    app.via_proxy("web.shop.localhost", "/burst?n=5000").await;
    let mut expected = 0;
    let mut last_id = *ids.last().unwrap();
    while expected < 5000 {
        let (line_id, text) = slow.next_line().await;
        assert!(line_id > last_id, "ids only increase: {line_id} after {last_id}");
        last_id = line_id;
        if let Some(n) = text.strip_prefix("burst line ") {
            assert_eq!(n.parse::<i32>().unwrap(), expected, "no line skipped or reordered");
            expected += 1;
            if expected % 1000 == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await; // fall behind
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_project_event_stream_tells_every_status_change() {
    let app = TestApp::with_runtime().await;
    let s = setup(&app, &fixture(), json!({})).await;
    let mut events = Events::open(&app, &format!("/projects/{}/events", s.project), &s.token, None).await;
    // What happened between a page's render and its stream opening is never lost: the stream
    // opens by telling the page to read everything again.
    assert_eq!(events.next().await.0, "resync");
    let id = deploy(&app, &s.token, &s.service).await;
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("running") {
        let (event, _, data) = events.next().await;
        if event == "status" {
            let change: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(change["deployment_id"], id.as_str());
            assert_eq!(change["service_id"], s.service.as_str());
            seen.push(change["status"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(seen, ["queued", "building", "deploying", "running"]);
    // Another user's stream of the same project does not exist.
    let eve = app.verified_user("Eve", "eve@example.com").await;
    assert_eq!(app.get(&format!("/projects/{}/events", s.project), &eve).await.status, axum::http::StatusCode::NOT_FOUND);
}

/// Each account holds at most `ROUNDHOUSE_STREAMS_PER_USER` live streams: one more is a 429
/// saying so, another account is not affected, and a stream closed by its client frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_holds_a_bounded_number_of_live_streams() {
    let app = TestApp::with_config(|c| c.streams_per_user = 2).await;
    let ada = app.verified_user("Ada", "ada@example.com").await;
    let bob = app.verified_user("Bob", "bob@example.com").await;
    let project = |token: String| {
        let app = &app;
        async move {
            let p = app.post("/projects", &token, json!({ "name": "shop" })).await;
            assert_eq!(p.status, axum::http::StatusCode::CREATED, "{}", p.text);
            format!("/projects/{}/events", p.body["id"].as_str().unwrap())
        }
    };
    let (adas, bobs) = (project(ada.clone()).await, project(bob.clone()).await);

    let mut first = Events::open(&app, &adas, &ada, None).await;
    assert_eq!(first.next().await.0, "resync");
    let _second = Events::open(&app, &adas, &ada, None).await;
    let third = app.get(&adas, &ada).await;
    assert_eq!(third.status, axum::http::StatusCode::TOO_MANY_REQUESTS, "{}", third.text);
    assert_eq!(third.body["error"]["code"], "too_many");
    assert!(third.error_message().contains("2 live streams"), "{}", third.text);
    let _bobs = Events::open(&app, &bobs, &bob, None).await;

    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let req = Request::builder().uri(format!("/api/v1{adas}")).header(header::AUTHORIZATION, format!("Bearer {ada}"));
        let resp = app.router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        if resp.status() == axum::http::StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the closed stream's slot was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
