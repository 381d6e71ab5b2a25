//! Billing: usage metered once per minute, priced in integer cents, reported per resource,
//! service and day, with the bill so far and projected; scoped by owner.

use crate::{deploys::wait_for, helpers::*};
use app::billing::money::{Period, Prices, Resource, MONTH_MINUTES};
use axum::http::{Method, StatusCode};
use serde_json::json;

/// A user with a project and one (undeployed) service; answers (token, service id, project id).
pub(crate) async fn user_with_service(app: &TestApp, name: &str, email: &str, plan: &str) -> (String, uuid::Uuid, uuid::Uuid) {
    let token = app.verified_user(name, email).await;
    sqlx::query("UPDATE users SET plan_id = $2 WHERE email = $1").bind(email).bind(plan).execute(&app.db).await.unwrap();
    let p = app.post("/projects", &token, json!({ "name": format!("{name}'s") })).await;
    let project = p.body["id"].as_str().unwrap().to_string();
    let s = app.post(&format!("/projects/{project}/services"), &token, json!({ "name": "api", "source_kind": "upload", "source": "" })).await;
    assert_eq!(s.status, StatusCode::CREATED, "{}", s.text);
    (token, s.body["id"].as_str().unwrap().parse().unwrap(), project.parse().unwrap())
}

pub(crate) async fn record(app: &TestApp, service: uuid::Uuid, project: uuid::Uuid, resource: &str, minute: chrono::DateTime<chrono::Utc>, quantity: i64) {
    sqlx::query(
        "INSERT INTO usage_records (service_id, owner_id, project_id, resource, minute, source, quantity)
         SELECT $1, p.owner_id, $2, $3, $4, 'test', $5 FROM projects p WHERE p.id = $2",
    )
    .bind(service)
    .bind(project)
    .bind(resource)
    .bind(minute)
    .bind(quantity)
    .execute(&app.db)
    .await
    .unwrap();
}

fn resource<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["resources"].as_array().unwrap().iter().find(|r| r["resource"] == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_priced_in_cents_billed_past_the_included_amount_and_projected() {
    let app = TestApp::new().await;
    let (token, service, project) = user_with_service(&app, "Ada", "ada@example.com", "hobby").await;
    let start = Period::containing(chrono::Utc::now()).start;
    // One vCPU and 2 GB for 10 days, 10 GB of volume for the same, 3 GB out: written as a few
    // minutes' records (the maths does not care how they are spread).
    let ten_days = 10 * 24 * 60;
    record(&app, service, project, "cpu", start, 1_000 * ten_days).await;
    record(&app, service, project, "memory", start, 2_048 * ten_days).await;
    record(&app, service, project, "volume", start + chrono::Duration::minutes(1), 10 * 1_024 * ten_days).await;
    record(&app, service, project, "egress", start + chrono::Duration::minutes(2), 3_000_000_000).await;

    let r = app.get("/billing/usage", &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // cpu: 14,400,000 × 2000 / (1000 × 43200) = 666.67 → 667; memory the same; volume
    // 147,456,000 × 15 / (1024 × 43200) = 50; egress 3 × 5 = 15.
    assert_eq!(resource(&r.body, "cpu")["cost_cents"], 667);
    assert_eq!(resource(&r.body, "cpu")["description"], "240.00 vCPU-hours");
    assert_eq!(resource(&r.body, "memory")["cost_cents"], 667);
    assert_eq!(resource(&r.body, "volume")["cost_cents"], 50);
    assert_eq!(resource(&r.body, "egress")["cost_cents"], 15);
    assert_eq!(r.body["usage_cents"], 667 + 667 + 50 + 15);
    // Hobby: $5 a month including $5 of usage.
    assert_eq!(r.body["bill"], json!({ "fee_cents": 500, "usage_cents": 1399, "included_cents": 500, "total_cents": 1399 }));
    assert!(r.body["projected"]["usage_cents"].as_i64().unwrap() >= 1399, "{}", r.body["projected"]);
    assert_eq!(r.body["services"][0]["service"], "api");
    assert_eq!(r.body["services"][0]["cost_cents"], 1399);
    assert_eq!(r.body["days"][0]["cost_cents"], 1399, "everything was on the first day");
    assert_eq!(r.body["plan"]["name"], "Hobby");
    assert!(r.body["hard_limit_reached_at"].is_null(), "no hard limit, no date");
    // With a hard limit the bill has passed already, the date is now; with one far above, the
    // rate so far decides (the maths is unit-tested in money.rs).
    let put = |hard: i64| app.api(Method::PUT, "/billing/limits", Some(&token), Some(json!({ "hard_limit_cents": hard })));
    assert_eq!(put(1000).await.status, StatusCode::OK);
    let r = app.get("/billing/usage", &token).await;
    assert_eq!(r.body["hard_limit_reached_at"], r.body["as_of"], "{}", r.text);
    assert_eq!(put(1_000_000).await.status, StatusCode::OK);
    let r = app.get("/billing/usage", &token).await;
    let as_of: chrono::DateTime<chrono::Utc> = r.body["as_of"].as_str().unwrap().parse().unwrap();
    let expected = app::billing::money::limit_reached_at(Period::containing(as_of), as_of, 500, 500, 1399, 1_000_000);
    assert_eq!(r.body["hard_limit_reached_at"].as_str().map(|s| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap()), expected, "{}", r.text);
    sqlx::query("DELETE FROM usage_limits").execute(&app.db).await.unwrap();
    sqlx::query("UPDATE users SET limit_stopped_at = NULL").execute(&app.db).await.unwrap();

    let prices = Prices { cpu_vcpu_month_cents: 2000, memory_gb_month_cents: 1000, volume_gb_month_cents: 15, egress_gb_cents: 5 };
    assert_eq!(prices.cost(Resource::Cpu, 1_000 * MONTH_MINUTES), 2000, "the seeded prices are the plan's");
    let plans = app.api(Method::GET, "/plans", None, None).await;
    let free = plans.body.as_array().unwrap().iter().find(|p| p["id"] == "free").unwrap();
    assert_eq!((free["included_usage_cents"].as_i64(), free["volume_gb_month_cents"].as_i64(), free["egress_gb_cents"].as_i64()), (Some(100), Some(15), Some(5)));

    // The page and the service's own share.
    let cookie = app.browser_login("ada@example.com").await;
    let page = app.page("/billing", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("$13.99") && page.text.contains(r#"data-testid="day-chart""#), "{}", page.text);
    let own = app.get(&format!("/services/{service}/usage"), &token).await;
    assert_eq!(own.body["cost_cents"], 1399, "{}", own.text);
    assert_eq!(app.page("/billing", None).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_never_sees_anothers_usage() {
    let app = TestApp::new().await;
    let (ada, ada_service, ada_project) = user_with_service(&app, "Ada", "ada@example.com", "hobby").await;
    let (bob, _, _) = user_with_service(&app, "Bob", "bob@example.com", "free").await;
    record(&app, ada_service, ada_project, "cpu", Period::containing(chrono::Utc::now()).start, 1_000_000).await;
    let theirs = app.get(&format!("/services/{ada_service}/usage"), &bob).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{}", theirs.text);
    let bobs = app.get("/billing/usage", &bob).await;
    assert_eq!(bobs.body["usage_cents"], 0);
    assert_eq!(bobs.body["services"], json!([]));
    let bob_cookie = app.browser_login("bob@example.com").await;
    let r = app.server_fn("get_service_usage", Some(&bob_cookie), &[("service_id", &ada_service.to_string())]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(app.get("/billing/usage", &ada).await.body["usage_cents"].as_i64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_samples_become_one_record_per_service_resource_and_minute_however_often_metered() {
    let app = TestApp::new().await;
    let (token, service, _) = user_with_service(&app, "Ada", "ada@example.com", "hobby").await;
    // Samples of two finished minutes: 50 % and 150 % of a core, 512 and 1024 MiB on average.
    let minute = |back: i64| chrono::Utc::now().duration_trunc(chrono::Duration::minutes(1)).unwrap() - chrono::Duration::minutes(back);
    use chrono::DurationRound;
    for (at, cpu, mem) in [
        (minute(3) + chrono::Duration::seconds(5), 40.0f32, 400i64),
        (minute(3) + chrono::Duration::seconds(30), 60.0, 624),
        (minute(2) + chrono::Duration::seconds(10), 150.0, 1024),
    ] {
        sqlx::query("INSERT INTO service_metrics (service_id, at, cpu_percent, memory_bytes) VALUES ($1, $2, $3, $4)")
            .bind(service)
            .bind(at)
            .bind(cpu)
            .bind(mem * 1_048_576)
            .execute(&app.db)
            .await
            .unwrap();
    }
    assert_eq!(server::metering::record_runtime_minutes(&app.db).await.unwrap(), 4);
    // A restart, or a new leader, meters the same samples again: nothing more is counted.
    assert_eq!(server::metering::record_runtime_minutes(&app.db).await.unwrap(), 0);
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT resource, quantity FROM usage_records ORDER BY minute, resource").fetch_all(&app.db).await.unwrap();
    assert_eq!(rows, [("cpu".into(), 500), ("memory".into(), 512), ("cpu".into(), 1500), ("memory".into(), 1024)]);
    let r = app.get("/billing/usage", &token).await;
    assert_eq!(resource(&r.body, "cpu")["quantity"], 2000);
    assert_eq!(resource(&r.body, "memory")["quantity"], 1536);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_volume_holds_is_metered_by_the_minute_and_shown_against_the_plan() {
    let app = TestApp::with_runtime().await;
    let (token, service, _) = user_with_service(&app, "Ada", "ada@example.com", "free").await;
    // The runtime measures each service's volume folder: 3 MiB written in it.
    let dir = server::runtime::runtime_dir(&app.runtime.as_ref().unwrap().dir).join("volumes").join(service.to_string()).join("data");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("blob"), vec![7u8; 3 * 1_048_576]).unwrap();
    let rt = server::runtime::local::LocalRuntime::new(server::runtime::local::Settings::from_config(&app.state.config), app.db.clone()).unwrap();
    use server::runtime::Runtime;
    let sizes = rt.volume_sizes().await;
    let measured = sizes.iter().find(|(id, _)| *id == service).map(|s| s.1).unwrap_or(0);
    assert!((3 * 1_048_576..4 * 1_048_576).contains(&measured), "{sizes:?}");
    assert_eq!(server::metering::record_volumes(&app.db, &sizes).await.unwrap(), 1);
    assert_eq!(server::metering::record_volumes(&app.db, &sizes).await.unwrap(), 0, "once per minute");
    let q: i64 = sqlx::query_scalar("SELECT quantity FROM usage_records WHERE service_id = $1 AND resource = 'volume'").bind(service).fetch_one(&app.db).await.unwrap();
    assert_eq!(q, 3, "MiB for the minute");
    let r = app.get(&format!("/services/{service}/usage"), &token).await;
    assert_eq!(r.body["volume"]["limit_gb"], 1, "{}", r.text);
    assert_eq!(r.body["volume"]["plan"], "Free");
    assert_eq!(r.body["volume"]["bytes"].as_i64(), Some(measured as i64));
    assert_eq!(resource(&app.get("/billing/usage", &token).await.body, "volume")["quantity"], 3);

    // Deleted, the service's volume goes at the leader's next pass over volumes (not before).
    let leftovers = server::reconciler::leftovers::Leftovers::default();
    for _ in 0..2 {
        assert_eq!(leftovers.pass(&app.db, &rt, &sizes).await.unwrap().volumes, 0);
    }
    assert!(dir.exists());
    let r = app.api(axum::http::Method::DELETE, &format!("/services/{service}"), Some(&token), None).await;
    assert!(r.status.is_success(), "{} {}", r.status, r.text);
    assert_eq!(leftovers.pass(&app.db, &rt, &sizes).await.unwrap().volumes, 0, "found missing once: kept");
    assert_eq!(leftovers.pass(&app.db, &rt, &sizes).await.unwrap().volumes, 1, "twice: removed");
    assert!(!dir.parent().unwrap().exists(), "its folder is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_proxy_sends_for_a_service_is_metered_as_its_egress() {
    let app = TestApp::with_runtime().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let r = app.post("/templates/static-site/deploy", &token, json!({ "project_name": "site" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let deployment = r.body["services"][0]["deployment"]["id"].as_str().unwrap().to_string();
    let service = r.body["services"][0]["service_id"].as_str().unwrap().to_string();
    wait_for(&app, &token, &deployment, &["running"]).await;
    let mut sent = 0;
    for _ in 0..3 {
        let page = app.via_proxy("web.site.localhost", "/").await;
        assert_eq!(page.status, StatusCode::OK);
        sent += page.text.len() as i64;
    }
    server::metering::flush_egress(&app.state).await.unwrap();
    server::metering::flush_egress(&app.state).await.unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT coalesce(sum(quantity), 0)::bigint FROM usage_records WHERE service_id = $1::uuid AND resource = 'egress'")
        .bind(&service)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, sent, "every body byte, once");
    let more = app.via_proxy("web.site.localhost", "/").await;
    server::metering::flush_egress(&app.state).await.unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT coalesce(sum(quantity), 0)::bigint FROM usage_records WHERE service_id = $1::uuid AND resource = 'egress'")
        .bind(&service)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, sent + more.text.len() as i64);
}

pub(crate) async fn user_id(app: &TestApp, email: &str) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM users WHERE email = $1").bind(email).fetch_one(&app.db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hard_limit_stops_running_services_and_raising_it_starts_them_again() {
    let app = TestApp::with_runtime().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    sqlx::query("UPDATE users SET plan_id = 'hobby'").execute(&app.db).await.unwrap();
    let ada = user_id(&app, "ada@example.com").await;
    let r = app.post("/templates/static-site/deploy", &token, json!({ "project_name": "site" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let first = r.body["services"][0]["deployment"]["id"].as_str().unwrap().to_string();
    let service: uuid::Uuid = r.body["services"][0]["service_id"].as_str().unwrap().parse().unwrap();
    let project: uuid::Uuid = r.body["project_id"].as_str().unwrap().parse().unwrap();
    wait_for(&app, &token, &first, &["running"]).await;

    // Limits are checked: above the plan's fee, soft under hard, amounts only.
    let put = |body: serde_json::Value| app.api(Method::PUT, "/billing/limits", Some(&token), Some(body));
    let r = put(json!({ "hard_limit_cents": 500 })).await;
    assert_eq!((r.status, r.error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "hard_limit_cents"), "{}", r.text);
    let r = put(json!({ "soft_limit_cents": 2000, "hard_limit_cents": 1000 })).await;
    assert_eq!((r.status, r.error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "soft_limit_cents"), "{}", r.text);
    let cookie = app.browser_login("ada@example.com").await;
    let r = app.server_fn("set_limits", Some(&cookie), &[("soft_limit", "ten"), ("hard_limit", "")]).await;
    assert_eq!((r.status, r.fn_error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "soft_limit"), "{}", r.text);
    let r = app.server_fn("set_limits", Some(&cookie), &[("soft_limit", "6"), ("hard_limit", "10.00")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((r.body["soft_limit_cents"].as_i64(), r.body["hard_limit_cents"].as_i64()), (Some(600), Some(1000)));

    // 240 GB out ($12 of usage, $7 past the included $5): the bill is $12, past both limits.
    use chrono::DurationRound;
    let this_minute = chrono::Utc::now().duration_trunc(chrono::Duration::minutes(1)).unwrap();
    record(&app, service, project, "egress", this_minute, 240_000_000_000).await;
    app::billing::limits::enforce(&app.state, ada, chrono::Utc::now()).await.unwrap();
    app::billing::limits::enforce(&app.state, ada, chrono::Utc::now()).await.unwrap();
    let d = app.get(&format!("/deployments/{first}"), &token).await;
    assert_eq!(d.body["deployment"]["status"], "removed", "{}", d.text);
    let reason = d.body["deployment"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("Stopped: this period's bill ($12.00) reached your hard usage limit of $10.00"), "{reason}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.via_proxy("web.site.localhost", "/").await.status == StatusCode::OK || !app.live_units().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the service still runs: {:?}", app.live_units());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let subjects: Vec<String> = sqlx::query_scalar("SELECT subject FROM mail_outbox WHERE to_address = 'ada@example.com' AND (subject LIKE '%limit%' OR subject LIKE '%bill%') ORDER BY created_at")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(subjects, ["Your Roundhouse bill reached $6.00", "Your Roundhouse services are stopped: hard usage limit reached"], "each alert once");
    let refused = app.post(&format!("/services/{service}/deployments"), &token, json!({})).await;
    assert_eq!((refused.status, refused.error_code()), (StatusCode::PAYMENT_REQUIRED, "plan_limit"), "{}", refused.text);
    let page = app.page("/billing", Some(&cookie)).await;
    assert!(page.text.contains(r#"data-testid="limit-stopped""#), "{}", page.text);

    // Raised past the bill: the service starts again by itself, from its build.
    let r = put(json!({ "soft_limit_cents": 600, "hard_limit_cents": 2000 })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["stopped_at"].is_null(), "{}", r.text);
    let again: String = sqlx::query_scalar("SELECT resumed_as::text FROM usage_limit_stops WHERE deployment_id = $1::uuid")
        .bind(&first)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let d = wait_for(&app, &token, &again, &["running"]).await;
    assert_eq!(d["deployment"]["trigger"], "restart");
    assert_eq!(app.via_proxy("web.site.localhost", "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_changes_take_effect_at_once_and_a_downgrade_must_fit() {
    let app = TestApp::new().await;
    let (token, _, project) = user_with_service(&app, "Ada", "ada@example.com", "free").await;
    let checkout = |plan: &str| app.post("/billing/checkout", &token, json!({ "plan_id": plan }));
    let r = checkout("platinum").await;
    assert_eq!((r.status, r.error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "plan_id"), "{}", r.text);
    let r = checkout("free").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let r = checkout("pro").await;
    assert_eq!((r.status, r.body["name"].as_str()), (StatusCode::OK, Some("Pro")), "{}", r.text);
    // On Pro, three more projects; Free allows two, so going back must wait.
    for n in 0..2 {
        assert_eq!(app.post("/projects", &token, json!({ "name": format!("p{n}") })).await.status, StatusCode::CREATED);
    }
    let r = checkout("free").await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.text);
    assert!(r.error_message().contains("3 projects (it allows 2)"), "{}", r.text);
    let changes: Vec<(String, String)> = sqlx::query_as("SELECT from_plan, to_plan FROM plan_changes ORDER BY id").fetch_all(&app.db).await.unwrap();
    assert_eq!(changes, [("free".to_string(), "pro".to_string())]);
    let _ = project;

    // Deploying checks the plan as it is now: a service scaled on Pro, after the plan shrank
    // (a cancelled Stripe subscription does this without asking), is refused, naming why.
    let id: uuid::Uuid = sqlx::query_scalar("SELECT s.id FROM services s JOIN environments e ON e.id = s.environment_id JOIN projects p ON p.id = e.project_id WHERE p.owner_id = (SELECT id FROM users WHERE email = 'ada@example.com')")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let r = app.api(Method::PATCH, &format!("/services/{id}"), Some(&token), Some(json!({ "memory_mb": 2048 }))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    sqlx::query("UPDATE users SET plan_id = 'free' WHERE email = 'ada@example.com'").execute(&app.db).await.unwrap();
    let r = app.post(&format!("/services/{id}/deployments"), &token, json!({})).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.text);
    assert_eq!(r.error_message(), "Your Free plan allows up to 512 MB of memory per service; this asks for 2048 MB. The Hobby plan allows it.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_period_is_invoiced_once_with_prorated_plans_usage_and_included_credit() {
    let app = TestApp::new().await;
    let (token, service, project) = user_with_service(&app, "Ada", "ada@example.com", "pro").await;
    let ada = user_id(&app, "ada@example.com").await;
    let now = chrono::Utc::now();
    let last = Period::containing(Period::containing(now).start - chrono::Duration::minutes(1));
    let change = last.start + chrono::Duration::days(10);
    sqlx::query("UPDATE users SET created_at = $2 WHERE id = $1").bind(ada).bind(last.start - chrono::Duration::days(30)).execute(&app.db).await.unwrap();
    sqlx::query("INSERT INTO plan_changes (user_id, from_plan, to_plan, at) VALUES ($1, 'hobby', 'pro', $2)").bind(ada).bind(change).execute(&app.db).await.unwrap();
    // Three GB of memory for a whole month's worth: $30 of usage.
    record(&app, service, project, "memory", last.start + chrono::Duration::days(3), 3 * 1_024 * MONTH_MINUTES).await;

    assert_eq!(app::billing::ledger::issue_due(&app.db, now).await.unwrap(), 1);
    assert_eq!(app::billing::ledger::issue_due(&app.db, now).await.unwrap(), 0, "issued once");
    let list = app.get("/billing/invoices", &token).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1, "{}", list.text);
    let id = list.body[0]["id"].as_str().unwrap().to_string();
    let inv = app.get(&format!("/billing/invoices/{id}"), &token).await;
    let amounts: Vec<i64> = inv.body["lines"].as_array().unwrap().iter().map(|l| l["amount_cents"].as_i64().unwrap()).collect();
    let hobby = last.prorate(500, change - last.start);
    let pro = last.prorate(2_000, last.end - change);
    assert_eq!(amounts, [hobby, pro, 3_000, -(hobby + pro)], "{}", inv.text);
    assert_eq!(inv.body["total_cents"], 3_000, "the fees, and usage past what the plans include");
    assert!(inv.body["lines"][0]["description"].as_str().unwrap().starts_with("Hobby plan ("), "{}", inv.text);

    // Only its owner and admins see it; admins mark it paid, once.
    let (bob, ..) = user_with_service(&app, "Bob", "bob@example.com", "free").await;
    assert_eq!(app.get(&format!("/billing/invoices/{id}"), &bob).await.status, StatusCode::NOT_FOUND);
    let bob_cookie = app.browser_login("bob@example.com").await;
    assert_eq!(app.server_fn("admin_mark_invoice_paid", Some(&bob_cookie), &[("id", &id)]).await.status, StatusCode::FORBIDDEN);
    app.register("Root", "root@example.com").await;
    app.make_admin("root@example.com").await;
    let admin = app.browser_login("root@example.com").await;
    let r = app.server_fn("admin_mark_invoice_paid", Some(&admin), &[("id", &id)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let again = app.server_fn("admin_mark_invoice_paid", Some(&admin), &[("id", &id)]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    let cookie = app.browser_login("ada@example.com").await;
    let page = app.page(&format!("/billing/invoices/{id}"), Some(&cookie)).await;
    assert!(page.text.contains("$30.00") && page.text.contains(">paid<"), "{}", page.text);
    let admin_page = app.page("/admin/invoices", Some(&admin)).await;
    assert!(admin_page.text.contains("ada@example.com"), "{}", admin_page.text);
}
