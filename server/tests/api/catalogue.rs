use crate::helpers::*;
use axum::http::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_are_public_and_ordered_free_hobby_pro() {
    let app = TestApp::new().await;
    let r = app.api(Method::GET, "/plans", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let ids: Vec<&str> = r.body.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["free", "hobby", "pro"]);
    assert_eq!(r.body[1]["monthly_fee_cents"], 500);
    assert_eq!(r.body[1]["included_usage_cents"], 500);
    assert_eq!(r.body[2]["cpu_vcpu_month_cents"], 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_can_be_searched_filtered_and_sorted() {
    let app = TestApp::new().await;
    let all = app.api(Method::GET, "/templates", None, None).await;
    assert_eq!(all.status, StatusCode::OK);
    let names = |r: &Reply| r.body.as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&all)[..2], ["postgres", "redis"], "featured first");

    let search = app.api(Method::GET, "/templates?q=postgres", None, None).await;
    assert_eq!(names(&search), ["postgres", "django-postgres"]);
    let db_only = app.api(Method::GET, "/templates?category=database&sort=name", None, None).await;
    assert_eq!(names(&db_only), ["postgres", "redis"]);
    let by_name = app.api(Method::GET, "/templates?sort=name", None, None).await;
    let mut sorted = names(&by_name);
    sorted.sort_by_key(|s| s.to_lowercase());
    assert_eq!(names(&by_name), ["django-postgres", "minio", "node-express", "postgres", "redis", "static-site"]);
    let wildcard = app.api(Method::GET, "/templates?q=%25", None, None).await;
    assert_eq!(names(&wildcard), Vec::<String>::new(), "% is matched literally");

    let bad = app.api(Method::GET, "/templates?sort=random", None, None).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.error_field(), "sort");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_page_lists_its_services_and_variables() {
    let app = TestApp::new().await;
    let r = app.api(Method::GET, "/templates/postgres", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["services"][0]["engine"], "postgres");
    assert_eq!(r.body["variables"][1]["value"], "${{secret(32)}}");
    let missing = app.api(Method::GET, "/templates/nope", None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_message(), "Template not found.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublished_templates_are_not_in_the_catalogue() {
    let app = TestApp::new().await;
    sqlx::query("UPDATE templates SET published = false WHERE slug = 'minio'").execute(&app.db).await.unwrap();
    let all = app.api(Method::GET, "/templates", None, None).await;
    assert!(all.body.as_array().unwrap().iter().all(|t| t["slug"] != "minio"));
    assert_eq!(app.api(Method::GET, "/templates/minio", None, None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route() {
    let app = TestApp::new().await;
    let r = app.api(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = r.body["paths"].as_object().unwrap();
    // Every route the router has (read from its definition) is in the document, and the
    // document has no route the router lacks.
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/mod.rs")).unwrap();
    let routed: std::collections::BTreeSet<String> = source
        .split(".route(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|p| *p != "/openapi.json")
        .map(str::to_string)
        .collect();
    let documented: std::collections::BTreeSet<String> = paths.keys().cloned().collect();
    assert!(routed.len() > 30, "the routes were read: {routed:?}");
    assert_eq!(routed, documented, "routes and the OpenAPI document differ");
    assert!(r.body["components"]["securitySchemes"]["bearer"].is_object());
    // The committed copy in docs/ is current.
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json")).unwrap()).unwrap();
    assert_eq!(committed, r.body, "docs/openapi.json is stale: run `cargo run -p server --bin roundhouse -- openapi > docs/openapi.json`");
}
