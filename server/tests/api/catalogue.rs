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

fn slugs(r: &Reply) -> Vec<String> {
    r.body["templates"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_can_be_searched_filtered_sorted_and_paged() {
    let app = TestApp::new().await;
    let all = app.api(Method::GET, "/templates?per_page=100", None, None).await;
    assert_eq!(all.status, StatusCode::OK);
    let bundled = app::templates::bundled::all().unwrap();
    assert_eq!(all.body["total"], bundled.len(), "every bundled template is published");
    assert!(bundled.len() >= 30);
    assert_eq!(slugs(&all)[..3], ["postgresql", "production-app", "redis"], "featured first (then by name)");

    // Full-text search over name, tags, summary and README, by word prefix.
    let search = app.api(Method::GET, "/templates?q=postg&sort=name", None, None).await;
    let found = slugs(&search);
    assert!(found.contains(&"postgresql".to_string()) && found.contains(&"umami".to_string()), "{found:?}");
    assert!(!found.contains(&"redis".to_string()), "{found:?}");
    let tag = app.api(Method::GET, "/templates?q=newsletter", None, None).await;
    assert_eq!(slugs(&tag).iter().map(String::as_str).collect::<std::collections::BTreeSet<_>>(), ["ghost", "listmonk"].into());
    let nothing = app.api(Method::GET, "/templates?q=%25%26%7C", None, None).await;
    assert_eq!(nothing.status, StatusCode::OK, "punctuation is no syntax error");
    assert_eq!(nothing.body["total"], 0);

    let db_only = app.api(Method::GET, "/templates?category=database&sort=name", None, None).await;
    assert_eq!(slugs(&db_only), ["clickhouse", "mariadb", "mongodb", "mysql", "postgresql", "redis", "valkey"]);

    // Pages of 5 by name cover everything once, in order.
    let mut paged = vec![];
    for page in 1.. {
        let r = app.api(Method::GET, &format!("/templates?sort=name&per_page=5&page={page}"), None, None).await;
        assert_eq!(r.body["page"], page);
        let s = slugs(&r);
        if s.is_empty() {
            break;
        }
        assert!(s.len() <= 5);
        paged.extend(s);
    }
    let by_name = slugs(&app.api(Method::GET, "/templates?sort=name&per_page=100", None, None).await);
    assert_eq!(paged, by_name);
    let mut sorted = by_name.clone();
    sorted.sort_by_key(|s| bundled.iter().find(|t| &t.template.slug == s).unwrap().template.name.to_lowercase());
    assert_eq!(by_name, sorted, "sorted by name");

    for (q, field) in [("sort=random", "sort"), ("per_page=0", "per_page"), ("per_page=101", "per_page"), ("page=0", "page")] {
        let bad = app.api(Method::GET, &format!("/templates?{q}"), None, None).await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{q}");
        assert_eq!(bad.error_field(), field, "{q}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_holds_its_whole_spec_and_what_the_platform_makes_of_it() {
    let app = TestApp::new().await;
    let r = app.api(Method::GET, "/templates/production-app", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["spec"]["services"].as_array().unwrap().len(), 6);
    assert_eq!(r.body["spec"]["services"][0]["source"], serde_json::json!({ "kind": "database", "engine": "postgres" }));
    assert_eq!(r.body["plan"], "Hobby", "six services need more than the Free plan's three");
    assert!(r.body["readme_html"].as_str().unwrap().contains("<strong>api</strong>"));
    let ghost = app.api(Method::GET, "/templates/ghost", None, None).await;
    assert_eq!(ghost.body["runtimes"], serde_json::json!(["kubernetes"]));
    assert!(ghost.body["local_blockers"][0].as_str().unwrap().contains("needs an image-capable runtime"));
    let missing = app.api(Method::GET, "/templates/nope", None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_message(), "Template not found.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bundled_template_page_renders_its_services_graph_and_inputs() {
    let app = TestApp::new().await;
    for spec in app::templates::bundled::all().unwrap() {
        let slug = &spec.template.slug;
        let page = app.page(&format!("/templates/{slug}"), None).await;
        assert_eq!(page.status, StatusCode::OK, "{slug}");
        assert!(page.text.contains(r#"data-testid="template-graph""#), "{slug}: no graph");
        for s in &spec.services {
            assert!(page.text.contains(&format!(r#"data-node="{}""#, s.name)), "{slug}: no node for {}", s.name);
            for needed in s.needs() {
                let edge = format!(r#"data-edge="{} uses {needed}""#, s.name);
                assert!(page.text.contains(&edge), "{slug}: no arrow {edge}");
            }
        }
        // Without the hydration markers (`<!>`) Leptos puts after text nodes.
        let text = page.text.replace("<!>", "");
        for input in spec.asked() {
            assert!(text.contains(&format!("<code>{}</code>", input.name)), "{slug}: input {} not shown", input.name);
        }
        assert!(page.text.contains(&format!(r#"<meta property="og:title" content="{} template · Roundhouse""#, spec.template.name.replace('&', "&amp;"))), "{slug}: no Open Graph title");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublished_templates_are_not_in_the_catalogue() {
    let app = TestApp::new().await;
    sqlx::query("UPDATE templates SET published = false WHERE slug = 'minio'").execute(&app.db).await.unwrap();
    let all = app.api(Method::GET, "/templates?per_page=100", None, None).await;
    assert!(!slugs(&all).contains(&"minio".to_string()));
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
