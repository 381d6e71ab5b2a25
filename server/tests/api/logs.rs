//! The log path against a real Postgres: lines stored by the writer (`COPY`) read back exactly
//! and in order, followers are notified, lines of a deleted deployment cost no one else theirs,
//! and retention keeps each deployment's newest lines within its budget.

use crate::helpers::*;
use app::deployments::Stream;
use axum::http::StatusCode;
use serde_json::json;
use server::logs::{retention, spawn_writer, LogSink, Redactor};
use sqlx::{postgres::PgListener, PgPool};
use std::{sync::Arc, time::Duration};
use uuid::Uuid;

/// What retention counts for a stored line besides its text (`logs::STORED_LINE_OVERHEAD`).
const OVERHEAD: i64 = server::logs::STORED_LINE_OVERHEAD;

/// `n` deployments of one service (rows only: nothing runs).
async fn deployments(app: &TestApp, n: i32) -> Vec<Uuid> {
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = app.post("/projects", &token, json!({ "name": "shop" })).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let s = app
        .post(&format!("/projects/{}/services", p.body["id"].as_str().unwrap()), &token,
            json!({ "name": "web", "source_kind": "git", "source": "https://example.com/web.git" }))
        .await;
    assert_eq!(s.status, StatusCode::CREATED, "{}", s.text);
    let service: Uuid = s.body["id"].as_str().unwrap().parse().unwrap();
    let mut ids = Vec::new();
    for number in 1..=n {
        let id = sqlx::query_scalar("INSERT INTO deployments (service_id, number, trigger, spec) VALUES ($1, $2, 'deploy', '{}') RETURNING id")
            .bind(service)
            .bind(number)
            .fetch_one(&app.db)
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

fn sink(tx: &server::logs::LogTx, id: Uuid) -> LogSink {
    LogSink::new(tx.clone(), id, Arc::new(Redactor::default()))
}

type Row = (i64, String, Option<i32>, String);

/// The deployment's stored lines in id order, once there are at least `want`.
async fn stored(db: &PgPool, id: Uuid, want: usize) -> Vec<Row> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows: Vec<Row> = sqlx::query_as("SELECT id, stream, replica, line FROM deployment_logs WHERE deployment_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(db)
            .await
            .unwrap();
        if rows.len() >= want {
            return rows;
        }
        assert!(std::time::Instant::now() < deadline, "only {} of {want} lines were stored", rows.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (what the usage row says, what the stored lines add up to)
async fn usage(db: &PgPool, id: Uuid) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT bytes FROM deployment_log_usage WHERE deployment_id = $1),
                (SELECT coalesce(sum(octet_length(line) + $2), 0)::bigint FROM deployment_logs WHERE deployment_id = $1)",
    )
    .bind(id)
    .bind(OVERHEAD)
    .fetch_one(db)
    .await
    .unwrap()
}

#[tokio::test]
async fn nasty_lines_are_stored_exactly_in_order_and_announced() {
    let app = TestApp::new().await;
    let id = deployments(&app, 1).await[0];
    let mut listener = PgListener::connect_with(&app.db).await.unwrap();
    listener.listen("rh_logs").await.unwrap();
    let tx = spawn_writer(app.db.clone());
    let out = sink(&tx, id).stream(Stream::Stdout, Some(2));
    let system = sink(&tx, id).stream(Stream::System, None);

    let nasty = [
        "tab\there", r"back\slash \N \. \\ \t", "cr\rin the middle", "multi\nline", "ünïcødé ✓ 😀", "", "nul\0byte",
        "\u{1b}[31mred\u{1b}[0m", "trailing backslash\\", "\\.", "\u{7f}\u{8}\u{c}\u{b}",
    ];
    for line in nasty {
        out.line(line).await;
    }
    system.line("from Roundhouse").await;
    // More than one batch: order must hold across batches.
    let numbered = 25_000;
    for i in 0..numbered {
        out.line(&format!("line {i}\n")).await;
    }

    let rows = stored(&app.db, id, nasty.len() + 1 + numbered).await;
    let mut want: Vec<(String, Option<i32>, String)> = nasty.iter().map(|l| ("stdout".into(), Some(2), l.replace('\0', ""))).collect();
    want.push(("system".into(), None, "from Roundhouse".into()));
    want.extend((0..numbered).map(|i| ("stdout".into(), Some(2), format!("line {i}"))));
    let got: Vec<(String, Option<i32>, String)> = rows.iter().map(|(_, s, r, l)| (s.clone(), *r, l.clone())).collect();
    assert_eq!(got.len(), want.len());
    for (n, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "line {n}");
    }
    assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "ids follow the order of the lines");

    let note = tokio::time::timeout(Duration::from_secs(30), listener.recv()).await.expect("a notification").unwrap();
    assert_eq!(note.payload(), id.to_string());
    let (counted, actual) = usage(&app.db, id).await;
    assert_eq!(counted, actual, "the usage row counts every stored line");
}

#[tokio::test]
async fn lines_of_a_deleted_deployment_do_not_cost_another_its_lines() {
    let app = TestApp::new().await;
    let ids = deployments(&app, 2).await;
    let (gone, kept) = (ids[0], ids[1]);
    sqlx::query("DELETE FROM deployments WHERE id = $1").bind(gone).execute(&app.db).await.unwrap();
    let tx = spawn_writer(app.db.clone());
    // Queued without yielding (this test's runtime has one thread): the writer's first batch
    // holds both deployments' lines, and the COPY of it fails on the deleted one.
    for i in 0..10 {
        sink(&tx, gone).line(&format!("ghost {i}")).await;
        sink(&tx, kept).line(&format!("kept {i}")).await;
    }
    let rows = stored(&app.db, kept, 10).await;
    assert_eq!(rows.iter().map(|r| r.3.clone()).collect::<Vec<_>>(), (0..10).map(|i| format!("kept {i}")).collect::<Vec<_>>());
    let ghosts: i64 = sqlx::query_scalar("SELECT count(*) FROM deployment_logs WHERE deployment_id = $1").bind(gone).fetch_one(&app.db).await.unwrap();
    assert_eq!(ghosts, 0);
}

#[tokio::test]
async fn retention_keeps_each_deployments_newest_lines_within_its_budget() {
    let app = TestApp::new().await;
    let ids = deployments(&app, 2).await;
    let (big, small) = (ids[0], ids[1]);
    let tx = spawn_writer(app.db.clone());
    // Lines of 1000 bytes: each counts 1100 against the budget.
    let line = |i: usize| format!("{i:06}{}", "x".repeat(994));
    for i in 0..2000 {
        sink(&tx, big).line(&line(i)).await;
    }
    for i in 0..10 {
        sink(&tx, small).line(&format!("small {i}")).await;
    }
    stored(&app.db, big, 2000).await;
    stored(&app.db, small, 10).await;

    let budget = 500_000;
    let fit = (budget / (1000 + OVERHEAD)) as usize; // 454 lines
    assert_eq!(retention::prune(&app.db, budget).await.unwrap(), (2000 - fit) as u64);
    let kept: Vec<String> = stored(&app.db, big, 0).await.into_iter().map(|r| r.3).collect();
    assert_eq!(kept, (2000 - fit..2000).map(line).collect::<Vec<_>>(), "the newest lines that fit are kept");
    let (counted, actual) = usage(&app.db, big).await;
    assert_eq!(counted, actual);
    assert!(actual <= budget);
    assert_eq!(stored(&app.db, small, 0).await.len(), 10, "a deployment within its budget is untouched");
    assert_eq!(retention::prune(&app.db, budget).await.unwrap(), 0, "pruning again changes nothing");

    // Two replicas pruning at once delete each line once and keep the count right.
    for i in 2000..3000 {
        sink(&tx, big).line(&line(i)).await;
    }
    stored(&app.db, big, fit + 1000).await;
    let (a, b) = tokio::join!(retention::prune(&app.db, budget), retention::prune(&app.db, budget));
    assert_eq!(a.unwrap() + b.unwrap(), 1000);
    let kept: Vec<String> = stored(&app.db, big, 0).await.into_iter().map(|r| r.3).collect();
    assert_eq!(kept, (3000 - fit..3000).map(line).collect::<Vec<_>>());
    let (counted, actual) = usage(&app.db, big).await;
    assert_eq!(counted, actual);
}

/// `deployment_logs` has no foreign key (a per-row check halved the writer's rate): deleting
/// deployments, by themselves or with their service, must still take their lines with them.
#[tokio::test]
async fn deleting_deployments_or_their_service_deletes_their_lines() {
    let app = TestApp::new().await;
    let ids = deployments(&app, 3).await;
    let tx = spawn_writer(app.db.clone());
    for &id in &ids {
        for i in 0..100 {
            sink(&tx, id).line(&format!("{id} {i}")).await;
        }
    }
    for &id in &ids {
        stored(&app.db, id, 100).await;
    }
    let count = |id: Uuid| {
        let db = app.db.clone();
        async move { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM deployment_logs WHERE deployment_id = $1").bind(id).fetch_one(&db).await.unwrap() }
    };

    sqlx::query("DELETE FROM deployments WHERE id = $1").bind(ids[0]).execute(&app.db).await.unwrap();
    assert_eq!((count(ids[0]).await, count(ids[1]).await, count(ids[2]).await), (0, 100, 100), "only the deleted one's lines go");

    let service: Uuid = sqlx::query_scalar("SELECT service_id FROM deployments WHERE id = $1").bind(ids[1]).fetch_one(&app.db).await.unwrap();
    sqlx::query("DELETE FROM services WHERE id = $1").bind(service).execute(&app.db).await.unwrap();
    assert_eq!((count(ids[1]).await, count(ids[2]).await), (0, 0), "a deleted service's deployments take their lines");
}

#[tokio::test]
async fn lines_past_the_retention_age_are_deleted_and_the_rest_kept() {
    let app = TestApp::new().await;
    let ids = deployments(&app, 2).await;
    let (aging, fresh) = (ids[0], ids[1]);
    let tx = spawn_writer(app.db.clone());
    for i in 0..25_000 {
        sink(&tx, aging).line(&format!("line {i}")).await;
    }
    for i in 0..10 {
        sink(&tx, fresh).line(&format!("fresh {i}")).await;
    }
    let rows = stored(&app.db, aging, 25_000).await;
    stored(&app.db, fresh, 10).await;
    // The first 22,000 lines were written 31 days ago (more than one batch of deletes).
    sqlx::query("UPDATE deployment_logs SET at = now() - interval '31 days' WHERE deployment_id = $1 AND id <= $2")
        .bind(aging)
        .bind(rows[21_999].0)
        .execute(&app.db)
        .await
        .unwrap();

    assert_eq!(retention::prune_old(&app.db, chrono::Duration::days(30)).await.unwrap(), 22_000);
    let kept: Vec<String> = stored(&app.db, aging, 0).await.into_iter().map(|r| r.3).collect();
    assert_eq!(kept, (22_000..25_000).map(|i| format!("line {i}")).collect::<Vec<_>>());
    assert_eq!(stored(&app.db, fresh, 0).await.len(), 10, "a deployment with no old line is untouched");
    let (counted, actual) = usage(&app.db, aging).await;
    assert_eq!(counted, actual, "the usage row loses what was deleted");
    assert_eq!(retention::prune_old(&app.db, chrono::Duration::days(30)).await.unwrap(), 0);
}

/// A kept line's position (`instance_log_cursors`) is stored with it, and never moves back: a
/// replica that let go may store its last lines after the next one stored further ones.
#[tokio::test]
async fn the_position_of_kept_lines_is_stored_with_them_and_never_moves_back() {
    use server::logs::Cursor;
    let app = TestApp::new().await;
    let id = deployments(&app, 1).await[0];
    let run = Uuid::new_v4();
    let tx = spawn_writer(app.db.clone());
    let out = sink(&tx, id).stream(Stream::Stdout, Some(0));
    let position = || sqlx::query_as::<_, (i64, i64)>("SELECT segment, \"offset\" FROM instance_log_cursors WHERE run_id = $1").bind(run).fetch_optional(&app.db);
    let at = chrono::Utc::now().timestamp_micros();
    out.kept_line("first", at, Cursor { run, segment: 1, offset: 100 }).await;
    out.kept_line("second", at, Cursor { run, segment: 1, offset: 200 }).await;
    out.flushed().await;
    assert_eq!(stored(&app.db, id, 2).await.len(), 2);
    assert_eq!(position().await.unwrap(), Some((1, 200)), "the last line's position, with it");
    // An older position arriving later (another writer's) changes nothing.
    out.kept_line("late", at, Cursor { run, segment: 0, offset: 50 }).await;
    out.flushed().await;
    assert_eq!(stored(&app.db, id, 3).await.len(), 3);
    assert_eq!(position().await.unwrap(), Some((1, 200)));
    // And the tenant's role cannot read the platform's positions.
    let denied = app::infra::actor::acting_as(app::infra::actor::Actor::User(Uuid::new_v4()), sqlx::query("SELECT 1 FROM instance_log_cursors").execute(&app.db)).await;
    assert!(denied.is_err(), "a tenant reads the positions");
}
