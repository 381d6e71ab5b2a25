//! Row-level security, the second wall under the owner filters: a query that forgets its
//! owner filter — written here on purpose — still returns and changes nothing of another
//! tenant's, whether the user comes from the auth middleware or is set directly; the platform's
//! own work and administrators still see everyone's rows.

use crate::helpers::*;
use app::infra::{
    actor::{acting_as, Actor},
    AppState,
};
use axum::{
    body::Body,
    extract::State,
    http::{header, Request, StatusCode},
    routing::get,
    Json, Router,
};
use serde_json::json;
use tower::ServiceExt;
use uuid::Uuid;

/// A user with a project, a service in it and a variable: answers (token, user id).
async fn tenant(app: &TestApp, name: &str) -> (String, Uuid) {
    let token = app.verified_user(name, &format!("{}@example.com", name.to_lowercase())).await;
    let p = app.post("/projects", &token, json!({ "name": format!("{name}-shop") })).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let project = p.body["id"].as_str().unwrap().to_string();
    let s = app
        .post(&format!("/projects/{project}/services"), &token,
            json!({ "name": format!("{}-web", name.to_lowercase()), "source_kind": "image", "source": "nginx:1" }))
        .await;
    assert_eq!(s.status, StatusCode::CREATED, "{}", s.text);
    let me = app.get("/me", &token).await;
    (token, me.body["id"].as_str().expect("my id").parse().unwrap())
}

/// Every project name and service name the query sees, unfiltered.
async fn everything_visible(app: &TestApp) -> (Vec<String>, Vec<String>) {
    let projects = sqlx::query_scalar("SELECT name FROM projects ORDER BY name").fetch_all(&app.db).await.unwrap();
    let services = sqlx::query_scalar("SELECT name FROM services ORDER BY name").fetch_all(&app.db).await.unwrap();
    (projects, services)
}

#[tokio::test]
async fn a_query_without_its_owner_filter_sees_and_changes_only_the_users_own_rows() {
    let app = TestApp::new().await;
    let (_, ada) = tenant(&app, "Ada").await;
    let (_, bob) = tenant(&app, "Bob").await;

    // The platform (no request) sees both.
    assert_eq!(everything_visible(&app).await, (vec!["Ada-shop".into(), "Bob-shop".into()], vec!["ada-web".into(), "bob-web".into()]));

    // As Ada: only hers, in every table under the wall.
    let seen = acting_as(Actor::User(ada), everything_visible(&app)).await;
    assert_eq!(seen, (vec!["Ada-shop".to_string()], vec!["ada-web".to_string()]));
    let environments: i64 = acting_as(Actor::User(ada), sqlx::query_scalar("SELECT count(*) FROM environments").fetch_one(&app.db)).await.unwrap();
    let all_environments: i64 = sqlx::query_scalar("SELECT count(*) FROM environments").fetch_one(&app.db).await.unwrap();
    assert!(environments >= 1 && environments < all_environments, "{environments} of {all_environments}");
    let tokens: Vec<Uuid> = acting_as(Actor::User(ada), sqlx::query_scalar("SELECT DISTINCT user_id FROM api_tokens").fetch_all(&app.db)).await.unwrap();
    assert!(tokens.iter().all(|u| *u == ada), "only Ada's tokens: {tokens:?}");

    // Each has a deployment with a logged line (written by the platform).
    for (who, line) in [(ada, "ada's line"), (bob, "bob's line")] {
        let deployment: Uuid = sqlx::query_scalar(
            "INSERT INTO deployments (service_id, number, trigger, spec)
             SELECT s.id, 1, 'deploy', '{}' FROM services s JOIN environments e ON e.id = s.environment_id
             JOIN projects p ON p.id = e.project_id WHERE p.owner_id = $1 RETURNING id",
        )
        .bind(who)
        .fetch_one(&app.db)
        .await
        .unwrap();
        sqlx::query("INSERT INTO deployment_logs (deployment_id, at, stream, line) VALUES ($1, now(), 'stdout', $2)")
            .bind(deployment)
            .bind(line)
            .execute(&app.db)
            .await
            .unwrap();
    }
    let lines = || sqlx::query_scalar::<_, String>("SELECT line FROM deployment_logs ORDER BY line").fetch_all(&app.db);
    assert_eq!(acting_as(Actor::User(ada), lines()).await.unwrap(), vec!["ada's line"]);

    // Writes without a filter touch only hers; Bob's rows are as they were.
    let renamed = acting_as(Actor::User(ada), sqlx::query("UPDATE services SET name = name || '-x'").execute(&app.db)).await.unwrap();
    assert_eq!(renamed.rows_affected(), 1);
    let deleted = acting_as(Actor::User(ada), sqlx::query("DELETE FROM projects").execute(&app.db)).await.unwrap();
    assert_eq!(deleted.rows_affected(), 1);
    assert_eq!(everything_visible(&app).await, (vec!["Bob-shop".into()], vec!["bob-web".into()]));
    assert_eq!(lines().await.unwrap(), vec!["bob's line"], "her project took its deployment's lines with it, and only those");

    // Nor can she write a row into his project.
    let bobs_environment: Uuid = acting_as(Actor::User(bob), sqlx::query_scalar("SELECT id FROM environments").fetch_one(&app.db)).await.unwrap();
    let planted = acting_as(
        Actor::User(ada),
        sqlx::query("INSERT INTO services (environment_id, name, source_kind, source) VALUES ($1, 'planted', 'image', 'x')").bind(bobs_environment).execute(&app.db),
    )
    .await;
    let e = planted.expect_err("the wall refuses a row in another tenant's environment");
    assert!(e.to_string().contains("row-level security"), "{e}");
}

/// The unfiltered query again, behind the real auth middleware: the caller it resolves is the
/// user the database sees.
#[tokio::test]
async fn the_auth_middleware_tells_the_database_who_asks() {
    let app = TestApp::new().await;
    let (ada_token, _) = tenant(&app, "Ada").await;
    // The same project name as Ada's: slugs are unique across tenants, looked up past the wall.
    let (bob_token, _) = tenant(&app, "Bob").await;
    let p = app.post("/projects", &bob_token, json!({ "name": "Ada-shop" })).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let slugs: Vec<String> = sqlx::query_scalar("SELECT slug FROM projects WHERE name = 'Ada-shop'").fetch_all(&app.db).await.unwrap();
    assert!(slugs.len() == 2 && slugs[0] != slugs[1], "{slugs:?}");
    async fn unfiltered(State(state): State<AppState>) -> Json<Vec<String>> {
        Json(sqlx::query_scalar("SELECT name FROM projects ORDER BY name").fetch_all(&state.db).await.unwrap())
    }
    let probe = Router::new()
        .route("/probe", get(unfiltered))
        .layer(axum::middleware::from_fn_with_state(app.state.clone(), server::middleware::authenticate))
        .with_state(app.state.clone());
    let ask = |token: Option<String>| {
        let probe = probe.clone();
        async move {
            let mut req = Request::builder().uri("/probe");
            if let Some(t) = token {
                req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let res = probe.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
            serde_json::from_slice::<Vec<String>>(&body).unwrap()
        }
    };
    // A probe sent with a user's token is still nobody's: it reads what no tenant may.
    let req = Request::builder().uri("/readyz").header(header::AUTHORIZATION, format!("Bearer {ada_token}"));
    let ready = app.router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    assert_eq!(ask(Some(ada_token.clone())).await, vec!["Ada-shop"]);
    assert_eq!(ask(Some(bob_token)).await, vec!["Ada-shop", "Bob-shop"]);

    // A body that queries while it streams, after its handler returned (as a page's later
    // chunks do): still Ada's view. Lifted to the platform in its handler (an administrator's
    // request): lifted in its body too.
    async fn streamed(State(state): State<AppState>, axum::extract::Path(lift): axum::extract::Path<bool>) -> Body {
        if lift {
            app::infra::actor::act_as_platform();
        }
        let db = state.db.clone();
        let later = futures_util::stream::once(async move {
            let names: Vec<String> = sqlx::query_scalar("SELECT name FROM projects ORDER BY name").fetch_all(&db).await.unwrap();
            Ok::<_, std::convert::Infallible>(serde_json::to_vec(&names).unwrap())
        });
        Body::from_stream(later)
    }
    let streaming = Router::new()
        .route("/streamed/{lift}", get(streamed))
        .layer(axum::middleware::from_fn_with_state(app.state.clone(), server::middleware::authenticate))
        .with_state(app.state.clone());
    for (lift, expected) in [(false, vec!["Ada-shop"]), (true, vec!["Ada-shop", "Ada-shop", "Bob-shop"])] {
        let req = Request::builder().uri(format!("/streamed/{lift}")).header(header::AUTHORIZATION, format!("Bearer {ada_token}"));
        let res = streaming.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
        assert_eq!(serde_json::from_slice::<Vec<String>>(&body).unwrap(), expected, "lifted: {lift}");
    }
    // A connection Ada's request used carries nothing into the platform's next use of it.
    assert_eq!(ask(None).await, vec!["Ada-shop", "Ada-shop", "Bob-shop"], "no user: the platform");
}

/// An administrator's pages see every tenant (`require_admin` lifts the wall for the request);
/// the same administrator's own dashboard still lists only their own projects.
#[tokio::test]
async fn administrators_see_every_tenant_on_admin_pages_only() {
    let app = TestApp::new().await;
    let (_, ada) = tenant(&app, "Ada").await;
    let (_, bob) = tenant(&app, "Bob").await;
    sqlx::query("UPDATE users SET role = 'admin' WHERE id = $1").bind(ada).execute(&app.db).await.unwrap();
    let cookie = app.browser_login("ada@example.com").await;

    let bobs = app.server_fn("admin_user_detail", Some(&cookie), &[("user_id", &bob.to_string())]).await;
    assert_eq!(bobs.status, StatusCode::OK, "{}", bobs.text);
    let names: Vec<&str> = bobs.body["projects"].as_array().expect("projects").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, vec!["Bob-shop"], "{}", bobs.text);

    let own = app.server_fn("list_projects", Some(&cookie), &[]).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    let names: Vec<&str> = own.body.as_array().expect("projects").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, vec!["Ada-shop"], "{}", own.text);
}
