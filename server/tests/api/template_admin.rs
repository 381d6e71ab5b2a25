//! Templates in the admin panel: writing, validating, publishing, featuring, versions, compose
//! import, and deploy counts that count people.

use crate::helpers::*;
use axum::http::{Method, StatusCode};
use serde_json::json;

const MINE: &str = r#"version = 1
# A comment the admin wrote: kept with the version.

[template]
slug = "team-db"
name = "Team database"
summary = "Our Postgres, the way we like it."
category = "databases"
tags = ["postgres", "team"]

[[services]]
name = "db"
source = { kind = "database", engine = "postgres" }
"#;

async fn admin_and_user(app: &TestApp) -> (String, String) {
    app.register("Root", "root@example.com").await;
    app.make_admin("root@example.com").await;
    let admin = app.browser_login("root@example.com").await;
    app.verified_user("Bob", "bob@example.com").await;
    let bob = app.browser_login("bob@example.com").await;
    (admin, bob)
}

async fn templates(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM templates").fetch_one(&app.db).await.unwrap()
}

fn catalogue_slugs(r: &Reply) -> Vec<String> {
    r.body["templates"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_write_publish_feature_and_version_templates() {
    let app = TestApp::new().await;
    let (admin, bob) = admin_and_user(&app).await;
    let before = templates(&app).await;

    // Only admins.
    for (name, form) in [
        ("admin_list_templates", vec![]),
        ("admin_save_template", vec![("source", MINE)]),
        ("admin_set_template_flags", vec![("slug", "redis"), ("published", "false")]),
        ("admin_template_source", vec![("slug", "redis")]),
        ("admin_import_compose", vec![("compose", "services: {}"), ("slug", "x"), ("name", "X")]),
    ] {
        let r = app.server_fn(name, Some(&bob), &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{name}: {}", r.text);
        let r = app.server_fn(name, None, &form).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}: {}", r.text);
    }

    // Bad input is named and writes nothing.
    let r = app.server_fn("admin_save_template", Some(&admin), &[("source", "version = 1\n[template\nslug = 1")]).await;
    assert_eq!((r.status, r.fn_error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "source"), "{}", r.text);
    assert!(r.fn_error_message().contains("line 2"), "{}", r.text);
    let broken = MINE.replace("slug = \"team-db\"", "slug = \"Team DB\"").replace("engine = \"postgres\"", "engine = \"oracle\"");
    let r = app.server_fn("admin_save_template", Some(&admin), &[("source", &broken)]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let message = r.fn_error_message();
    assert!(message.contains("template.slug") && message.contains("service db: source.engine"), "every problem is listed: {message}");
    let taken = MINE.replace("slug = \"team-db\"", "slug = \"redis\"");
    let r = app.server_fn("admin_save_template", Some(&admin), &[("source", &taken)]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(templates(&app).await, before);

    // A new template is a draft: not in the catalogue, not deployable.
    let r = app.server_fn("admin_save_template", Some(&admin), &[("source", MINE)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((r.body["slug"].as_str(), r.body["version"].as_i64()), (Some("team-db"), Some(1)));
    assert_eq!(app.page("/templates/team-db", None).await.status, StatusCode::NOT_FOUND);
    let search = app.api(Method::GET, "/templates?q=team", None, None).await;
    assert!(!catalogue_slugs(&search).contains(&"team-db".to_string()), "{}", search.text);

    // Published, it is found; featured, it leads the catalogue.
    let r = app.server_fn("admin_set_template_flags", Some(&admin), &[("slug", "team-db"), ("published", "true"), ("featured", "true")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(app.page("/templates/team-db", None).await.status, StatusCode::OK);
    let all = app.api(Method::GET, "/templates?per_page=100", None, None).await;
    let featured: Vec<bool> = all.body["templates"].as_array().unwrap().iter().map(|t| t["featured"].as_bool().unwrap()).collect();
    assert!(catalogue_slugs(&all).contains(&"team-db".to_string()));
    assert!(featured.windows(2).all(|w| w[0] >= w[1]), "featured first: {featured:?}");

    // An edit is a new version; the old one is kept word for word; a slug cannot change.
    let edited = MINE.replace("the way we like it", "now with more care");
    let r = app.server_fn("admin_save_template", Some(&admin), &[("slug", "team-db"), ("source", &edited)]).await;
    assert_eq!((r.body["version"].as_i64(), r.body["changed"].as_bool()), (Some(2), Some(true)), "{}", r.text);
    let again = app.server_fn("admin_save_template", Some(&admin), &[("slug", "team-db"), ("source", &edited)]).await;
    assert_eq!((again.body["version"].as_i64(), again.body["changed"].as_bool()), (Some(2), Some(false)), "{}", again.text);
    // Another admin's save since the editor opened is not silently replaced.
    let stale = app.server_fn("admin_save_template", Some(&admin), &[("slug", "team-db"), ("source", MINE), ("base_version", "1")]).await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.text);
    let renamed = edited.replace("slug = \"team-db\"", "slug = \"team-db-2\"");
    let r = app.server_fn("admin_save_template", Some(&admin), &[("slug", "team-db"), ("source", &renamed)]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let current = app.server_fn("admin_template_source", Some(&admin), &[("slug", "team-db")]).await;
    assert_eq!(current.body["source"], edited.as_str());
    let versions: Vec<i64> = current.body["versions"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, [2, 1]);
    assert_eq!(current.body["versions"][0]["created_by"], "root@example.com");
    let first = app.server_fn("admin_template_source", Some(&admin), &[("slug", "team-db"), ("version", "1")]).await;
    assert_eq!(first.body["source"], MINE, "comments and all");
    let page = app.page("/templates/team-db", None).await;
    assert!(page.text.contains("now with more care"), "the catalogue shows the current version");

    // The admin pages render.
    let list = app.page("/admin/templates", Some(&admin)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.text.contains(r#"data-slug="team-db""#), "{}", list.text);
    let editor = app.page("/admin/templates/team-db?version=1", Some(&admin)).await;
    assert!(editor.text.contains("Restore this version") && editor.text.contains("A comment the admin wrote"), "{}", editor.text);
    assert_eq!(app.page("/admin/templates", Some(&bob)).await.status, StatusCode::FORBIDDEN);

    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log WHERE target = 'template:team-db' ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(actions, ["template.create", "template.flags", "template.update"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_bundled_template_is_no_longer_rewritten_by_the_bundled_file() {
    let app = TestApp::new().await;
    let (admin, _) = admin_and_user(&app).await;
    let bundled = app.server_fn("admin_template_source", Some(&admin), &[("slug", "redis")]).await;
    let text = bundled.body["source"].as_str().unwrap().to_string();
    assert!(text.contains("slug = \"redis\""), "the bundled file's own text: {text}");
    let mine = text.replacen("summary = \"", "summary = \"Ours: ", 1);
    let r = app.server_fn("admin_save_template", Some(&admin), &[("slug", "redis"), ("source", &mine)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    app::templates::store::sync_bundled(&app.db).await.unwrap();
    let (origin, summary): (String, String) = sqlx::query_as("SELECT origin, summary FROM templates WHERE slug = 'redis'").fetch_one(&app.db).await.unwrap();
    assert_eq!(origin, "admin");
    assert!(summary.starts_with("Ours: "), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_file_is_converted_for_the_editor_with_what_was_left_out() {
    let app = TestApp::new().await;
    let (admin, _) = admin_and_user(&app).await;
    let compose = r#"
services:
  app:
    image: ghcr.io/example/app:1.2
    privileged: true
    ports: ["8080:8080"]
    environment:
      DB_PASSWORD: ${SERVICE_PASSWORD_DB}
      TITLE: ${TITLE:-Hello}
    depends_on:
      db: { condition: service_healthy }
  db:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: ${SERVICE_PASSWORD_DB}
"#;
    let r = app.server_fn("admin_import_compose", Some(&admin), &[("compose", compose), ("slug", "example-app"), ("name", "Example")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let left: Vec<&str> = r.body["not_carried_over"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(left.iter().any(|l| l.contains("privileged")), "{left:?}");
    assert!(left.iter().any(|l| l.contains("ports")), "{left:?}");
    assert_eq!(r.body["problems"], json!([]), "{}", r.text);
    let source = r.body["source"].as_str().unwrap();
    let saved = app.server_fn("admin_save_template", Some(&admin), &[("source", source)]).await;
    assert_eq!(saved.status, StatusCode::OK, "the converted text saves as it is: {}", saved.text);
    let spec: serde_json::Value = sqlx::query_scalar("SELECT spec FROM templates WHERE slug = 'example-app'").fetch_one(&app.db).await.unwrap();
    assert_eq!(spec["services"].as_array().unwrap().len(), 2);

    let bad = app.server_fn("admin_import_compose", Some(&admin), &[("compose", ": not yaml ["), ("slug", "x"), ("name", "X")]).await;
    assert_eq!((bad.status, bad.fn_error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "compose"), "{}", bad.text);
    let bad = app.server_fn("admin_import_compose", Some(&admin), &[("compose", compose), ("slug", "Not A Slug"), ("name", "X")]).await;
    assert_eq!(bad.fn_error_field(), "slug", "{}", bad.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_counts_count_people_not_deploys() {
    let app = TestApp::new().await;
    let (admin, _) = admin_and_user(&app).await;
    let ada = app.verified_user("Ada", "ada@example.com").await;
    let bob = app.login("bob@example.com").await;
    sqlx::query("UPDATE users SET plan_id = 'hobby'").execute(&app.db).await.unwrap();
    for (token, project) in [(&ada, "one"), (&ada, "two"), (&ada, "three"), (&bob, "four")] {
        let r = app.post("/templates/redis/deploy", token, json!({ "project_name": project })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let list = app.server_fn("admin_list_templates", Some(&admin), &[]).await;
    let redis = list.body.as_array().unwrap().iter().find(|t| t["slug"] == "redis").unwrap().clone();
    assert_eq!((redis["deploy_count"].as_i64(), redis["deploys"].as_i64()), (Some(2), Some(4)), "{redis}");
    let public = app.api(Method::GET, "/templates/redis", None, None).await;
    assert_eq!(public.body["deploy_count"], 2);
}
