//! Deployments, their logs (stored, searchable, or followed live over SSE) and live status.

use super::{ApiPath, ApiQuery, Caller, ErrorBody};
use app::{
    auth::service::Authenticated,
    deployments::{service, Deployment, DeploymentDetail, LogLine, MetricPoint, StatusChange},
    error::AppError,
    infra::{live::LiveEvent, AppState},
    projects,
};
use axum::{
    body::Bytes,
    extract::State,
    http::{header, StatusCode},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    Json,
};
use serde::Deserialize;
use std::{convert::Infallible, time::Duration};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[utoipa::path(get, path = "/services/{id}/deployments", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Service id")),
    responses((status = 200, body = Vec<Deployment>), (status = 404, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, Caller(auth): Caller, ApiPath(id): ApiPath<Uuid>) -> Result<Json<Vec<Deployment>>, AppError> {
    Ok(Json(service::list(&state.db, auth.user.id, id).await?))
}

/// Deploy the service's current source and settings. Variables are resolved first: a
/// reference cycle or a missing name is refused (422) and nothing starts.
#[utoipa::path(post, path = "/services/{id}/deployments", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Service id")),
    responses((status = 201, body = Deployment), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(State(state): State<AppState>, Caller(auth): Caller, ApiPath(id): ApiPath<Uuid>) -> Result<(StatusCode, Json<Deployment>), AppError> {
    Ok((StatusCode::CREATED, Json(service::deploy(&state, auth.user.id, id).await?)))
}

#[utoipa::path(get, path = "/deployments/{id}", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Deployment id")),
    responses((status = 200, body = DeploymentDetail), (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, Caller(auth): Caller, ApiPath(id): ApiPath<Uuid>) -> Result<Json<DeploymentDetail>, AppError> {
    Ok(Json(service::detail(&state, auth.user.id, id).await?))
}

async fn act(state: AppState, auth: Caller, id: Uuid, action: service::Action) -> Result<(StatusCode, Json<Deployment>), AppError> {
    let d = service::act(&state, auth.0.user.id, id, action).await?;
    let status = if d.id == id { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(d)))
}

/// Run an earlier successful deployment's build again (a new deployment).
#[utoipa::path(post, path = "/deployments/{id}/rollback", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The deployment to roll back to")),
    responses((status = 201, body = Deployment), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rollback(State(state): State<AppState>, auth: Caller, ApiPath(id): ApiPath<Uuid>) -> Result<(StatusCode, Json<Deployment>), AppError> {
    act(state, auth, id, service::Action::Rollback).await
}

/// Build the same source and settings again (a new deployment).
#[utoipa::path(post, path = "/deployments/{id}/redeploy", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Deployment id")),
    responses((status = 201, body = Deployment), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn redeploy(State(state): State<AppState>, auth: Caller, ApiPath(id): ApiPath<Uuid>) -> Result<(StatusCode, Json<Deployment>), AppError> {
    act(state, auth, id, service::Action::Redeploy).await
}

/// Start the running deployment's build afresh, with no downtime (a new deployment).
#[utoipa::path(post, path = "/deployments/{id}/restart", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Deployment id")),
    responses((status = 201, body = Deployment), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn restart(State(state): State<AppState>, auth: Caller, ApiPath(id): ApiPath<Uuid>) -> Result<(StatusCode, Json<Deployment>), AppError> {
    act(state, auth, id, service::Action::Restart).await
}

/// Stop a deployment that is queued, building or deploying.
#[utoipa::path(post, path = "/deployments/{id}/cancel", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Deployment id")),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(State(state): State<AppState>, auth: Caller, ApiPath(id): ApiPath<Uuid>) -> Result<(StatusCode, Json<Deployment>), AppError> {
    act(state, auth, id, service::Action::Cancel).await
}

/// Stop the running deployment: its instances end (SIGTERM, then SIGKILL) and it is removed.
#[utoipa::path(post, path = "/deployments/{id}/stop", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Deployment id")),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn stop(State(state): State<AppState>, auth: Caller, ApiPath(id): ApiPath<Uuid>) -> Result<(StatusCode, Json<Deployment>), AppError> {
    act(state, auth, id, service::Action::Stop).await
}

#[derive(Debug, Deserialize, IntoParams, ToSchema)]
pub struct LogQuery {
    /// Lines after this line id (default: from the start).
    pub after: Option<i64>,
    /// At most this many lines (default 1000, at most 10000). Ignored when following.
    pub limit: Option<i64>,
    /// Only lines containing this text (case-insensitive).
    pub search: Option<String>,
    /// Stream: stored lines, then new ones as they come, as server-sent events (`event: line`,
    /// `id`: the line id, data: a LogLine). `status` events tell the deployment's state changes.
    /// A reconnecting client's `Last-Event-ID` header resumes after that line.
    pub follow: Option<bool>,
    /// `text` for a plain-text download.
    pub format: Option<String>,
}

/// A deployment's build and runtime logs, secrets redacted.
#[utoipa::path(get, path = "/deployments/{id}/logs", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Deployment id"), LogQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this line id (sent by a reconnecting EventSource); wins over `after`")),
    responses((status = 200, body = Vec<LogLine>, description = "JSON lines; text/event-stream with follow=true; text/plain with format=text"),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "follow=true while the account holds ROUNDHOUSE_STREAMS_PER_USER live streams (`too_many`)")))]
pub async fn logs(
    State(state): State<AppState>,
    Caller(auth): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<LogQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Response, AppError> {
    let d = service::get(&state.db, auth.user.id, id).await?;
    // A browser's EventSource reconnecting says where it was with `Last-Event-ID` (each line
    // event's id is its line id): that wins over the `after` it first connected with.
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok());
    let after = resume.or(q.after).unwrap_or(0).max(0);
    if q.follow.unwrap_or(false) {
        return Ok(follow(state, auth, d, after, q.search));
    }
    if q.format.as_deref() == Some("text") {
        let mut out = String::new();
        let mut cursor = after;
        loop {
            let page = service::logs_after(&state.db, id, cursor, 10_000, q.search.as_deref()).await?;
            let Some(last) = page.last() else { break };
            cursor = last.id;
            for l in &page {
                out.push_str(&format!("{} [{}] {}\n", l.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"), l.stream.as_str(), l.line));
            }
        }
        let name = format!("attachment; filename=\"deployment-{}-logs.txt\"", d.number);
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, name)], out).into_response());
    }
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    Ok(Json(service::logs_after(&state.db, id, after, limit, q.search.as_deref()).await?).into_response())
}

/// The stored lines after `after`, then every new line as it is stored. Lines are read from
/// Postgres in id order whenever a notification (or a lag) says there may be more, so a slow
/// browser or a missed notification never loses a line.
///
/// Each page of lines is written as one chunk of server-sent events (`event: line`, its line id
/// as `id`, the line as JSON `data`) rather than one `Event` per line: a flood is read back at
/// tens of thousands of lines a second, and per-event buffers, channel sends and scans were
/// most of what following cost (measured with `scripts/bench-logs.mjs`).
fn follow(state: AppState, auth: Authenticated, d: Deployment, after: i64, search: Option<String>) -> Response {
    let slot = match state.streams.open(auth.user.id) {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    // Little is held for a client that reads slowly: two chunks of at most `sse::CHUNK` bytes.
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let mut live = state.live.events.subscribe();
    tokio::spawn(async move {
        let _slot = slot;
        let mut access = AccessCheck::new(auth);
        let mut cursor = after;
        let mut status = d.status;
        if tx.send(sse::status(status)).await.is_err() {
            return;
        }
        let mut last_sent = tokio::time::Instant::now();
        loop {
            // Everything stored so far.
            loop {
                let page = match service::logs_after(&state.db, d.id, cursor, 2000, search.as_deref()).await {
                    Ok(p) => p,
                    Err(_) => return,
                };
                for chunk in sse::lines(&page) {
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                    last_sent = tokio::time::Instant::now();
                }
                // A flood keeps this loop busy: access is checked here too.
                if !access.still_allowed(&state).await {
                    return;
                }
                match page.last() {
                    Some(last) if page.len() == 2000 => cursor = last.id,
                    Some(last) => {
                        cursor = last.id;
                        break;
                    }
                    None => break,
                }
            }
            // Wait for more (a client gone ends the stream at once, giving its slot back).
            let waiting = tokio::time::timeout(Duration::from_secs(15), async {
                loop {
                    match live.recv().await {
                        Ok(LiveEvent::Logs(id)) if id == d.id => return Some(None),
                        Ok(LiveEvent::Status(n)) if n.deployment_id == d.id => return Some(serde_json::from_str::<StatusChange>(&n.json).ok().map(|c| c.status)),
                        Ok(LiveEvent::Resync) | Err(RecvError::Lagged(_)) => return Some(None),
                        Ok(_) => continue,
                        Err(RecvError::Closed) => return None,
                    }
                }
            });
            let wake = tokio::select! {
                wake = waiting => wake,
                _ = tx.closed() => return,
            };
            match wake {
                Ok(None) => return,
                Ok(Some(Some(s))) if s != status => {
                    status = s;
                    if tx.send(sse::status(s)).await.is_err() {
                        return;
                    }
                    last_sent = tokio::time::Instant::now();
                }
                _ => {}
            }
            // Nothing written for a while (a search that matches nothing, a quiet service): a
            // comment keeps proxies from closing the connection, and finds a dead one.
            if last_sent.elapsed() >= Duration::from_secs(15) {
                if tx.send(Bytes::from_static(b":\n\n")).await.is_err() {
                    return;
                }
                last_sent = tokio::time::Instant::now();
            }
            if tx.is_closed() || !access.still_allowed(&state).await {
                return;
            }
        }
    });
    let body = axum::body::Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Server-sent events written whole, for `follow`.
mod sse {
    use super::*;

    pub fn status(s: app::deployments::Status) -> Bytes {
        Bytes::from(format!("event: status\ndata: {}\n\n", s.as_str()))
    }

    /// About the most bytes of events in one chunk.
    pub const CHUNK: usize = 256 * 1024;

    /// One `line` event per line, in chunks of about `CHUNK` bytes. JSON never holds a raw
    /// line break (serde_json escapes them), so each line's `data` is one field.
    pub fn lines(page: &[LogLine]) -> Vec<Bytes> {
        use std::io::Write;
        let mut chunks = Vec::new();
        let mut out = Vec::with_capacity(CHUNK.min(page.iter().map(|l| l.line.len() + 120).sum()));
        for line in page {
            let start = out.len();
            let _ = write!(out, "event: line\nid: {}\ndata: ", line.id);
            if write_json(&mut out, line).is_err() {
                out.truncate(start);
                continue;
            }
            out.extend_from_slice(b"\n\n");
            if out.len() >= CHUNK {
                chunks.push(Bytes::from(std::mem::take(&mut out)));
            }
        }
        if !out.is_empty() {
            chunks.push(Bytes::from(out));
        }
        chunks
    }

    /// `line` as the JSON its `Serialize` writes (the tests read it back with serde), written
    /// directly: serde's way with the time (`collect_str`, a character at a time through the
    /// string escaper) was the largest cost of following a flood.
    fn write_json(out: &mut Vec<u8>, line: &LogLine) -> std::io::Result<()> {
        use chrono::{Datelike, Timelike};
        use std::io::Write;
        let (date, time) = (line.at.date_naive(), line.at.time());
        write!(
            out,
            "{{\"id\":{},\"at\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z\",\"stream\":\"{}\",\"replica\":",
            line.id,
            date.year(),
            date.month(),
            date.day(),
            time.hour(),
            time.minute(),
            time.second(),
            (time.nanosecond() / 1000).min(999_999),
            line.stream.as_str(),
        )?;
        match line.replica {
            Some(r) => write!(out, "{r}")?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"line\":");
        serde_json::to_writer(&mut *out, &line.line)?;
        out.push(b'}');
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use app::deployments::Stream;

        #[test]
        fn a_line_is_written_as_its_serde_json_reads_back() {
            let at = chrono::DateTime::parse_from_rfc3339("2026-11-30T01:02:03.004005Z").unwrap().with_timezone(&chrono::Utc);
            for (stream, replica, text) in [(Stream::Stderr, Some(3), "quote \" back\\ \u{1b}[1m ünï \u{2028}"), (Stream::Build, None, "")] {
                let line = LogLine { id: 42, at, stream, replica, line: text.into() };
                let mut out = Vec::new();
                write_json(&mut out, &line).unwrap();
                let back: LogLine = serde_json::from_slice(&out).unwrap();
                assert_eq!(back, line);
                let ours: serde_json::Value = serde_json::from_slice(&out).unwrap();
                assert_eq!(ours, serde_json::to_value(&line).unwrap(), "the same document serde writes");
            }
        }

        #[test]
        fn each_line_is_one_event_with_its_id_and_one_data_field() {
            let at = chrono::DateTime::parse_from_rfc3339("2026-11-30T01:02:03Z").unwrap().with_timezone(&chrono::Utc);
            let page = [
                LogLine { id: 7, at, stream: Stream::Stdout, replica: Some(0), line: "two\nlines: data: x\r".into() },
                LogLine { id: 9, at, stream: Stream::System, replica: None, line: String::new() },
            ];
            let chunks = lines(&page);
            assert_eq!(chunks.len(), 1);
            let text = String::from_utf8(chunks[0].to_vec()).unwrap();
            let events: Vec<&str> = text.split_terminator("\n\n").collect();
            assert_eq!(events.len(), 2, "{text:?}");
            for (event, line) in events.iter().zip(&page) {
                let fields: Vec<&str> = event.split('\n').collect();
                assert_eq!(fields.len(), 3, "{event:?}");
                assert_eq!(fields[0], "event: line");
                assert_eq!(fields[1], format!("id: {}", line.id));
                let data: LogLine = serde_json::from_str(fields[2].strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!((data.id, data.line.as_str(), data.replica), (line.id, line.line.as_str(), line.replica));
            }
            assert_eq!(&status(app::deployments::Status::Running)[..], b"event: status\ndata: running\n\n");
        }

        #[test]
        fn a_big_page_is_cut_into_chunks_of_whole_events() {
            let at = chrono::Utc::now();
            let page: Vec<LogLine> =
                (0..2000).map(|id| LogLine { id, at, stream: Stream::Stdout, replica: None, line: "\u{1b}".repeat(200) }).collect();
            let chunks = lines(&page);
            assert!(chunks.len() > 4, "{} chunks", chunks.len());
            let mut ids = Vec::new();
            for chunk in &chunks {
                assert!(chunk.len() < CHUNK + 2000, "{}", chunk.len());
                let text = std::str::from_utf8(chunk).unwrap();
                assert!(text.ends_with("\n\n"), "a chunk ends with a whole event");
                ids.extend(text.lines().filter_map(|l| l.strip_prefix("id: ")).map(|i| i.parse::<i64>().unwrap()));
            }
            assert_eq!(ids, (0..2000).collect::<Vec<_>>());
        }
    }
}

/// How often an open stream checks that its caller may still read it.
const ACCESS_EVERY: Duration = Duration::from_secs(15);

/// A stream ends once what opened it no longer authenticates (signed out, token revoked,
/// password changed, account suspended), checked at most every `ACCESS_EVERY`.
struct AccessCheck {
    auth: Authenticated,
    checked: tokio::time::Instant,
}

impl AccessCheck {
    fn new(auth: Authenticated) -> Self {
        AccessCheck { auth, checked: tokio::time::Instant::now() }
    }

    async fn still_allowed(&mut self, state: &AppState) -> bool {
        if self.checked.elapsed() < ACCESS_EVERY {
            return true;
        }
        self.checked = tokio::time::Instant::now();
        // A database that does not answer ends nothing: the stream goes on until it knows.
        app::auth::service::still_authenticated(&state.db, &self.auth).await.unwrap_or(true)
    }
}

/// Deployment status changes of a project's services, live (server-sent events, `event: status`,
/// data: `{deployment_id, service_id, project_id, status}`).
#[utoipa::path(get, path = "/projects/{id}/events", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Project id")),
    responses((status = 200, description = "text/event-stream"), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "The account holds ROUNDHOUSE_STREAMS_PER_USER live streams (`too_many`)")))]
pub async fn project_events(State(state): State<AppState>, Caller(auth): Caller, ApiPath(id): ApiPath<Uuid>) -> Result<Response, AppError> {
    projects::service::get(&state.db, auth.user.id, id).await?;
    let slot = state.streams.open(auth.user.id)?;
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    let mut live = state.live.events.subscribe();
    let mut access = AccessCheck::new(auth);
    tokio::spawn(async move {
        let _slot = slot;
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + ACCESS_EVERY, ACCESS_EVERY);
        // What changed between the page being rendered and this stream opening was never sent
        // to it: the page reads everything again once, now that it hears what follows.
        if tx.send(Ok(Event::default().event("resync").data(""))).await.is_err() {
            return;
        }
        loop {
            let received = tokio::select! {
                r = live.recv() => r,
                _ = tx.closed() => return,
                _ = recheck.tick() => {
                    if access.still_allowed(&state).await {
                        continue;
                    }
                    return;
                }
            };
            let event = match received {
                Ok(LiveEvent::Status(n)) if n.project_id == id => Some(Event::default().event("status").data(&*n.json)),
                Ok(LiveEvent::Resync) | Err(RecvError::Lagged(_)) => Some(Event::default().event("resync").data("")),
                Ok(_) => None,
                Err(RecvError::Closed) => return,
            };
            if let Some(ev) = event {
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()).into_response())
}

/// CPU (percent of one core) and resident memory of the service over the last hour, sampled
/// every 5 seconds.
#[utoipa::path(get, path = "/services/{id}/metrics", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Service id")),
    responses((status = 200, body = Vec<MetricPoint>), (status = 404, body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, Caller(auth): Caller, ApiPath(id): ApiPath<Uuid>) -> Result<Json<Vec<MetricPoint>>, AppError> {
    Ok(Json(service::metrics(&state.db, auth.user.id, id).await?))
}
