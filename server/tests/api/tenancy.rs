//! The dashboard's server functions for services, variables and deployments are scoped by
//! owner exactly like the REST API: another user gets 404 from every one of them, reading or
//! writing, learns nothing, and changes nothing (checked by counting and reading rows, not
//! only by statuses).

use crate::{deploys::*, helpers::*};
use axum::http::StatusCode;
use serde_json::json;

/// Everything a user's data is made of, as the database has it.
async fn snapshot(app: &TestApp) -> Vec<String> {
    let mut rows = Vec::new();
    for sql in [
        "SELECT string_agg(id::text || name || source_kind || source || coalesce(start_command, '') || replicas::text, ',' ORDER BY id) FROM services",
        "SELECT string_agg(id::text || name || encode(value_sealed, 'hex') || secret::text, ',' ORDER BY id) FROM variables",
        "SELECT string_agg(id::text || status || number::text, ',' ORDER BY id) FROM deployments",
        "SELECT string_agg(id::text || sha256, ',' ORDER BY id) FROM source_uploads",
        "SELECT string_agg(id::text || name, ',' ORDER BY id) FROM projects",
        "SELECT count(*)::text FROM audit_log",
    ] {
        let v: Option<String> = sqlx::query_scalar(sql).fetch_one(&app.db).await.unwrap();
        rows.push(v.unwrap_or_default());
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_can_neither_read_nor_change_services_variables_or_deployments_through_server_functions() {
    let app = TestApp::new().await;
    let s = setup(&app, &fixture(), json!({})).await;
    set_var(&app, &s.token, &s.service, "API_KEY", "ada-s-very-secret-key", true).await;
    let deployment = deploy(&app, &s.token, &s.service).await;
    let variable = "API_KEY";

    app.verified_user("Eve", "eve@example.com").await;
    let eve = app.browser_login("eve@example.com").await;
    let before = snapshot(&app).await;
    let (project, service) = (s.project.as_str(), s.service.as_str());
    let calls: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("list_services", vec![("project_id", project)]),
        ("create_service", vec![("project_id", project), ("name", "eves"), ("source_kind", "upload"), ("source", "")]),
        ("get_service", vec![("id", service)]),
        (
            "update_service",
            vec![
                ("id", service), ("name", "hijacked"), ("source", ""), ("build_command", ""), ("start_command", "curl evil"),
                ("port", ""), ("replicas", "1"), ("cpu_millis", "1000"), ("memory_mb", "512"), ("healthcheck_path", ""),
                ("healthcheck_timeout_secs", "60"), ("restart_policy", "always"), ("restart_max", "10"), ("max_processes", "256"),
                ("volume_path", ""), ("cron_schedule", ""),
            ],
        ),
        ("current_upload", vec![("service_id", service)]),
        ("delete_service", vec![("id", service)]),
        ("list_variables", vec![("service_id", service)]),
        ("set_variable", vec![("service_id", service), ("name", variable), ("value", "eve-was-here")]),
        ("set_variable", vec![("service_id", service), ("name", "NEW"), ("value", "eve-was-here")]),
        ("delete_variable", vec![("service_id", service), ("name", variable)]),
        ("reveal_variable", vec![("service_id", service), ("name", variable)]),
        ("list_deployments", vec![("service_id", service)]),
        ("deploy_service", vec![("service_id", service)]),
        ("get_deployment", vec![("id", &deployment)]),
        ("deployment_action", vec![("id", &deployment), ("action", "cancel")]),
        ("deployment_action", vec![("id", &deployment), ("action", "stop")]),
        ("service_metrics", vec![("service_id", service)]),
        ("latest_deployments", vec![("project_id", project)]),
        ("service_links", vec![("project_id", project)]),
        ("deploy_template", vec![("slug", "redis"), ("project_id", project)]),
    ];
    let mut names: Vec<&str> = calls.iter().map(|(n, _)| *n).collect();
    names.dedup();
    assert_eq!(names.len(), 18, "every server function of services, variables, deployments and template deploys");
    for (name, form) in &calls {
        let r = app.server_fn(name, Some(&eve), form).await;
        // latest_deployments answers the caller's own (none) rather than a 404: either way,
        // nothing of Ada's.
        if *name == "latest_deployments" {
            assert_eq!((r.status, r.body.clone()), (StatusCode::OK, json!([])), "{name}: {}", r.text);
        } else {
            assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{name}: {}", r.text);
        }
        for leak in ["ada-s-very-secret-key", "web", "shop", &deployment] {
            assert!(!r.text.contains(leak) || *name == "get_deployment" && leak == deployment, "{name} leaked {leak}: {}", r.text);
        }
    }
    assert_eq!(snapshot(&app).await, before, "nothing changed");

    // The owner, through the same functions, sees and changes what is hers.
    let ada = app.browser_login("ada@example.com").await;
    let r = app.server_fn("reveal_variable", Some(&ada), &[("service_id", service), ("name", variable)]).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, Some("ada-s-very-secret-key")));
    let r = app.server_fn("list_deployments", Some(&ada), &[("service_id", service)]).await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1), "{}", r.text);
}
