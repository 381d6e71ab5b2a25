//! Billing through Stripe: every call to Stripe goes to a local fake (wiremock) that checks its
//! method, path and form body; Stripe's webhooks are signed here with Stripe's scheme
//! (HMAC-SHA256 of `timestamp.payload` under the endpoint secret) and must be valid, fresh,
//! applied once, and leave the latest state whatever order they arrive in.

use crate::{
    billing::{record, user_id, user_with_service},
    deploys::wait_for,
    helpers::*,
};
use app::infra::config::StripeConfig;
use axum::http::{Method, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::sync::Arc;
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

const WEBHOOK_SECRET: &str = "whsec_test_secret";

fn stripe_config(api_base: Option<String>) -> StripeConfig {
    StripeConfig {
        secret_key: "sk_test_123".to_string().into(),
        webhook_secret: WEBHOOK_SECRET.to_string().into(),
        api_base,
        plan_prices: vec![("hobby".into(), "price_hobby".into()), ("pro".into(), "price_pro".into())],
        usage_prices: vec!["price_usage_cpu".into()],
        meter_prefix: "roundhouse_".into(),
    }
}

/// An app billing through Stripe at `fake`.
async fn app_with_stripe(fake: &MockServer) -> TestApp {
    let config = stripe_config(Some(fake.uri()));
    let provider = server::payments::StripeProvider::new(&config).unwrap();
    TestApp::with_config(move |c| c.stripe = Some(config)).await.with_payments(Arc::new(provider))
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/stripe/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Stripe's `Stripe-Signature` header for `payload` signed at `t`.
fn sign(payload: &str, t: i64, secret: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{payload}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn event(id: &str, kind: &str, created: i64, object: Value) -> String {
    json!({
        "id": id, "object": "event", "api_version": "2026-09-30.endive", "created": created, "livemode": false,
        "pending_webhooks": 1, "request": { "id": null, "idempotency_key": null }, "type": kind, "data": { "object": object }
    })
    .to_string()
}

/// A delivery as Stripe makes it: no browser headers, no cookie.
async fn deliver(app: &TestApp, payload: &str, signature: Option<&str>) -> Reply {
    let mut req = axum::http::Request::builder().method(Method::POST).uri("/webhooks/stripe").header("content-type", "application/json");
    if let Some(s) = signature {
        req = req.header("stripe-signature", s);
    }
    app.send(req.body(axum::body::Body::from(payload.to_string())).unwrap()).await
}

async fn send(app: &TestApp, payload: &str) -> Reply {
    let r = deliver(app, payload, Some(&sign(payload, now(), WEBHOOK_SECRET))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r
}

fn subscription(id: &str, customer: &str, user: uuid::Uuid, price: &str, status: &str) -> Value {
    let mut s = fixture("subscription");
    s["id"] = json!(id);
    s["customer"] = json!(customer);
    s["status"] = json!(status);
    s["metadata"]["user_id"] = json!(user.to_string());
    s["items"]["data"][0]["price"]["id"] = json!(price);
    s["items"]["data"][0]["plan"]["id"] = json!(price);
    s["items"]["data"][0]["subscription"] = json!(id);
    s
}

fn invoice(id: &str, customer: &str, status: &str, total: i64) -> Value {
    let mut i = fixture("invoice");
    i["id"] = json!(id);
    i["number"] = json!(format!("RH-STRIPE-{}", id.trim_start_matches("in_")));
    i["customer"] = json!(customer);
    i["status"] = json!(status);
    i["total"] = json!(total);
    i["amount_due"] = json!(total);
    i
}

async fn plan_of(app: &TestApp, user: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT plan_id FROM users WHERE id = $1").bind(user).fetch_one(&app.db).await.unwrap()
}

/// Ada, a Stripe customer (`cus_A`) with one service; answers (service, project, Ada's id).
async fn customer_with_service(app: &TestApp) -> (uuid::Uuid, uuid::Uuid, uuid::Uuid) {
    let (_, service, project) = user_with_service(app, "Ada", "ada@example.com", "free").await;
    let ada = user_id(app, "ada@example.com").await;
    sqlx::query("UPDATE users SET stripe_customer_id = 'cus_A' WHERE id = $1").bind(ada).execute(&app.db).await.unwrap();
    (service, project, ada)
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_with_a_missing_bad_or_stale_signature_get_400_and_change_nothing() {
    let app = TestApp::with_config(|c| c.stripe = Some(stripe_config(None))).await;
    app.verified_user("Ada", "ada@example.com").await;
    let ada = user_id(&app, "ada@example.com").await;
    let payload = event("evt_sig", "customer.subscription.created", now(), subscription("sub_A", "cus_A", ada, "price_hobby", "active"));

    let r = deliver(&app, &payload, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = deliver(&app, &payload, Some(&sign(&payload, now(), "whsec_someone_else"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let tampered = payload.replace("price_hobby", "price_pro");
    let r = deliver(&app, &tampered, Some(&sign(&payload, now(), WEBHOOK_SECRET))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "a body changed after signing: {}", r.text);
    // Stripe's tolerance is 300 s: a signature of 301 s ago is refused, one of 290 s is not.
    let r = deliver(&app, &payload, Some(&sign(&payload, now() - 301, WEBHOOK_SECRET))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "stale: {}", r.text);
    let r = deliver(&app, "not json", Some(&sign("not json", now(), WEBHOOK_SECRET))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM stripe_events").fetch_one(&app.db).await.unwrap();
    assert_eq!((events, plan_of(&app, ada).await.as_str()), (0, "free"), "nothing was applied");

    let r = deliver(&app, &payload, Some(&sign(&payload, now() - 290, WEBHOOK_SECRET))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(plan_of(&app, ada).await, "hobby");

    // Without Stripe configured there is no webhook.
    let plain = TestApp::new().await;
    assert_eq!(deliver(&plain, &payload, Some(&sign(&payload, now(), WEBHOOK_SECRET))).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_plan_goes_through_checkout_and_the_subscription_decides_the_plan_once_in_order() {
    let fake = MockServer::start().await;
    let mut session = fixture("checkout_session");
    session["url"] = json!("https://checkout.stripe.com/c/pay/cs_test_1");
    Mock::given(method("POST")).and(path("/v1/checkout/sessions")).respond_with(ResponseTemplate::new(200).set_body_json(&session)).expect(1).mount(&fake).await;
    let mut portal = fixture("portal_session");
    portal["url"] = json!("https://billing.stripe.com/p/session/test_ada");
    Mock::given(method("POST")).and(path("/v1/billing_portal/sessions")).respond_with(ResponseTemplate::new(200).set_body_json(&portal)).expect(2).mount(&fake).await;
    let app = app_with_stripe(&fake).await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let ada = user_id(&app, "ada@example.com").await;

    // Before buying anything there is no portal to go to.
    let r = app.post("/billing/portal", &token, json!({})).await;
    assert_eq!((r.status, r.error_field()), (StatusCode::CONFLICT, "portal"), "{}", r.text);
    // A plan without a Stripe price cannot be bought.
    sqlx::query("INSERT INTO plans SELECT (jsonb_populate_record(t, '{\"id\": \"team\", \"name\": \"Team\", \"sort_order\": 9}')).* FROM plans t WHERE id = 'pro'")
        .execute(&app.db)
        .await
        .unwrap();
    let r = app.post("/billing/checkout", &token, json!({ "plan_id": "team" })).await;
    assert_eq!((r.status, r.error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "plan_id"), "{}", r.text);

    let r = app.post("/billing/checkout", &token, json!({ "plan_id": "hobby" })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["redirect_url"], "https://checkout.stripe.com/c/pay/cs_test_1");
    assert_eq!(plan_of(&app, ada).await, "free", "nothing changes until Stripe says so");
    let sent = &fake.received_requests().await.unwrap()[0];
    assert_eq!(sent.headers.get("authorization").unwrap(), "Bearer sk_test_123");
    let f = form(&sent.body);
    assert_eq!(field(&f, "mode"), Some("subscription"));
    assert_eq!(field(&f, "line_items[0][price]"), Some("price_hobby"));
    assert_eq!(field(&f, "line_items[0][quantity]"), Some("1"));
    assert_eq!(field(&f, "line_items[1][price]"), Some("price_usage_cpu"), "the metered price rides along");
    assert_eq!(field(&f, "client_reference_id"), Some(ada.to_string().as_str()));
    assert_eq!(field(&f, "subscription_data[metadata][user_id]"), Some(ada.to_string().as_str()));
    assert_eq!(field(&f, "customer_email"), Some("ada@example.com"));
    assert_eq!(field(&f, "success_url"), Some("http://127.0.0.1:3000/billing?checkout=done"));

    // Stripe reports the subscription, the checkout, then a replay of the first.
    let t = now();
    let created = event("evt_1", "customer.subscription.created", t, subscription("sub_A", "cus_A", ada, "price_hobby", "active"));
    send(&app, &created).await;
    assert_eq!(plan_of(&app, ada).await, "hobby");
    let mut done = fixture("checkout_session");
    (done["status"], done["payment_status"], done["customer"], done["subscription"], done["client_reference_id"]) =
        (json!("complete"), json!("paid"), json!("cus_A"), json!("sub_A"), json!(ada.to_string()));
    send(&app, &event("evt_2", "checkout.session.completed", t, done)).await;
    let r = send(&app, &created).await;
    assert_eq!(r.body["outcome"], "already applied");
    let changes: i64 = sqlx::query_scalar("SELECT count(*) FROM plan_changes WHERE user_id = $1").bind(ada).fetch_one(&app.db).await.unwrap();
    assert_eq!(changes, 1, "the replay changed nothing");

    // Upgraded to Pro (t+20); the older "still Hobby, past due" update (t+10) arrives after it.
    send(&app, &event("evt_3", "customer.subscription.updated", t + 20, subscription("sub_A", "cus_A", ada, "price_pro", "active"))).await;
    let r = send(&app, &event("evt_4", "customer.subscription.updated", t + 10, subscription("sub_A", "cus_A", ada, "price_hobby", "past_due"))).await;
    assert_eq!(r.body["outcome"], "ignored: older than the state we have");
    let status: (String, String) = sqlx::query_as("SELECT plan_id, subscription_status FROM users WHERE id = $1").bind(ada).fetch_one(&app.db).await.unwrap();
    assert_eq!(status, ("pro".to_string(), "active".to_string()));

    // With a subscription, plan changes and payment details are Stripe's portal's.
    let r = app.post("/billing/checkout", &token, json!({ "plan_id": "hobby" })).await;
    assert_eq!(r.body["redirect_url"], "https://billing.stripe.com/p/session/test_ada", "{}", r.text);
    let r = app.post("/billing/portal", &token, json!({})).await;
    assert_eq!(r.body["url"], "https://billing.stripe.com/p/session/test_ada", "{}", r.text);
    let portal_form = form(&fake.received_requests().await.unwrap().last().unwrap().body);
    assert_eq!((field(&portal_form, "customer"), field(&portal_form, "return_url")), (Some("cus_A"), Some("http://127.0.0.1:3000/billing")));

    // Cancelled: back to Free.
    send(&app, &event("evt_5", "customer.subscription.deleted", t + 30, subscription("sub_A", "cus_A", ada, "price_pro", "canceled"))).await;
    assert_eq!(plan_of(&app, ada).await, "free");
    let r = app.get("/billing/payment", &token).await;
    assert_eq!((r.body["provider"].as_bool(), r.body["has_customer"].as_bool(), r.body["subscription_status"].as_str()), (Some(true), Some(true), Some("canceled")), "{}", r.text);

    // Of two events of the same second, the settled one wins whatever the order.
    let r = send(&app, &event("evt_5b", "customer.subscription.updated", t + 30, subscription("sub_A", "cus_A", ada, "price_pro", "active"))).await;
    assert_eq!(r.body["outcome"], "ignored: older than the state we have");
    assert_eq!(plan_of(&app, ada).await, "free");

    // Another account's events never touch Ada.
    let other = subscription("sub_B", "cus_B", uuid::Uuid::new_v4(), "price_pro", "active");
    let r = send(&app, &event("evt_6", "customer.subscription.created", t + 40, other)).await;
    assert_eq!(r.body["outcome"], "ignored: no account for this customer");
    assert_eq!(plan_of(&app, ada).await, "free");
    // Nor does a subscription to something else sold on the same Stripe account.
    let r = send(&app, &event("evt_7", "customer.subscription.created", t + 50, subscription("sub_C", "cus_A", ada, "price_tshirt", "active"))).await;
    assert_eq!(r.body["outcome"], "ignored: no Roundhouse plan price");
    let sub: Option<String> = sqlx::query_scalar("SELECT stripe_subscription_id FROM users WHERE id = $1").bind(ada).fetch_one(&app.db).await.unwrap();
    assert_eq!(sub.as_deref(), Some("sub_A"));
    // A customer linked to Ada cannot be linked to Bob too (answered 200, so Stripe does not retry forever).
    app.verified_user("Bob", "bob@example.com").await;
    let bob = user_id(&app, "bob@example.com").await;
    let r = send(&app, &event("evt_8", "customer.subscription.created", t + 60, subscription("sub_D", "cus_A", bob, "price_pro", "active"))).await;
    assert_eq!(r.body["outcome"], "ignored: the customer belongs to another account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_before_the_checkout_event_links_the_account_and_a_paid_invoice_stays_paid() {
    let app = TestApp::with_config(|c| c.stripe = Some(stripe_config(None))).await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let ada = user_id(&app, "ada@example.com").await;
    let t = now();
    // The first invoice is paid before Stripe reports the checkout: its subscription's metadata names Ada.
    let mut first = invoice("in_1", "cus_A", "paid", 500);
    first["parent"] = json!({ "type": "subscription_details", "subscription_details": { "metadata": { "user_id": ada.to_string() }, "subscription": "sub_A" } });
    let r = send(&app, &event("evt_i1", "invoice.paid", t, first.clone())).await;
    assert_eq!(r.body["outcome"], "invoice RH-STRIPE-1 paid", "{}", r.text);
    let customer: Option<String> = sqlx::query_scalar("SELECT stripe_customer_id FROM users WHERE id = $1").bind(ada).fetch_one(&app.db).await.unwrap();
    assert_eq!(customer.as_deref(), Some("cus_A"));
    // A failed attempt of the same second, delivered after, does not reopen it.
    let r = send(&app, &event("evt_i2", "invoice.payment_failed", t, invoice("in_1", "cus_A", "open", 500))).await;
    assert_eq!(r.body["outcome"], "ignored: older than the invoice we have, or it is settled");
    let r = app.get("/billing/payment", &token).await;
    assert!(r.body["past_due_since"].is_null(), "{}", r.text);
    // A voided invoice settles what was overdue.
    send(&app, &event("evt_i3", "invoice.payment_failed", t, invoice("in_2", "cus_A", "open", 700))).await;
    assert!(app.get("/billing/payment", &token).await.body["past_due_since"].is_string());
    send(&app, &event("evt_i4", "invoice.voided", t + 1, invoice("in_2", "cus_A", "void", 700))).await;
    assert!(app.get("/billing/payment", &token).await.body["past_due_since"].is_null());

    // A release lost to a crash is made by the leader's next round.
    sqlx::query("UPDATE users SET payment_stopped_at = now() WHERE id = $1").bind(ada).execute(&app.db).await.unwrap();
    app::billing::subscription::enforce_grace(&app.state, chrono::Utc::now()).await.unwrap();
    let held: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar("SELECT payment_stopped_at FROM users WHERE id = $1").bind(ada).fetch_one(&app.db).await.unwrap();
    assert_eq!(held, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_stripe_an_account_without_a_subscription_stops_at_its_included_usage() {
    let fake = MockServer::start().await;
    let app = app_with_stripe(&fake).await;
    let (token, service, project) = user_with_service(&app, "Ada", "ada@example.com", "free").await;
    let ada = user_id(&app, "ada@example.com").await;
    use chrono::DurationRound;
    let minute = chrono::Utc::now().duration_trunc(chrono::Duration::minutes(1)).unwrap();
    // 19 GB out: $0.95 of the Free plan's $1 — still running.
    record(&app, service, project, "egress", minute, 19_000_000_000).await;
    app::billing::limits::enforce_all(&app.state).await.unwrap();
    let stopped = || async { sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>("SELECT limit_stopped_at FROM users WHERE id = $1").bind(ada).fetch_one(&app.db).await.unwrap() };
    assert_eq!(stopped().await, None);
    record(&app, service, project, "egress", minute - chrono::Duration::minutes(1), 1_000_000_000).await;
    app::billing::limits::enforce_all(&app.state).await.unwrap();
    assert!(stopped().await.is_some(), "the included $1 is used up and nothing would bill the rest");
    let refused = app.post(&format!("/services/{service}/deployments"), &token, json!({})).await;
    assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED, "{}", refused.text);
    // Subscribed: usage past the included amount is billed by Stripe, so services may run.
    send(&app, &event("evt_s1", "customer.subscription.created", now(), subscription("sub_A", "cus_A", ada, "price_hobby", "active"))).await;
    app::billing::limits::enforce_all(&app.state).await.unwrap();
    assert_eq!(stopped().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_payment_stops_services_after_the_grace_period_and_paying_starts_them_again() {
    let app = TestApp::with_runtime_config(|c| c.stripe = Some(stripe_config(None))).await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let ada = user_id(&app, "ada@example.com").await;
    sqlx::query("UPDATE users SET plan_id = 'hobby', stripe_customer_id = 'cus_A', stripe_subscription_id = 'sub_A' WHERE id = $1").bind(ada).execute(&app.db).await.unwrap();
    let r = app.post("/templates/static-site/deploy", &token, json!({ "project_name": "site" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let first = r.body["services"][0]["deployment"]["id"].as_str().unwrap().to_string();
    let service = r.body["services"][0]["service_id"].as_str().unwrap().to_string();
    wait_for(&app, &token, &first, &["running"]).await;

    let t = now();
    send(&app, &event("evt_f1", "invoice.payment_failed", t, invoice("in_1", "cus_A", "open", 1399))).await;
    let r = app.get("/billing/payment", &token).await;
    assert!(r.body["past_due_since"].is_string() && r.body["stopped_at"].is_null(), "{}", r.text);
    let inv = app.get("/billing/invoices", &token).await;
    assert_eq!((inv.body[0]["number"].as_str(), inv.body[0]["status"].as_str(), inv.body[0]["total_cents"].as_i64()), (Some("RH-STRIPE-1"), Some("open"), Some(1399)), "{}", inv.text);
    assert_eq!(inv.body[0]["hosted_url"], "https://invoice.stripe.com/i/test");

    // Within the grace period nothing stops; past it, everything does.
    app::billing::subscription::enforce_grace(&app.state, chrono::Utc::now() + chrono::Duration::days(6)).await.unwrap();
    assert_eq!(wait_for(&app, &token, &first, &["running"]).await["deployment"]["status"], "running");
    let stopped = app::billing::subscription::enforce_grace(&app.state, chrono::Utc::now() + chrono::Duration::days(8)).await.unwrap();
    assert_eq!(stopped, 1);
    let d = app.get(&format!("/deployments/{first}"), &token).await;
    assert_eq!(d.body["deployment"]["status"], "removed", "{}", d.text);
    assert!(d.body["deployment"]["reason"].as_str().unwrap().starts_with("Stopped: a payment has been overdue since"), "{}", d.text);
    let refused = app.post(&format!("/services/{service}/deployments"), &token, json!({})).await;
    assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED, "{}", refused.text);
    assert!(refused.error_message().contains("payment is overdue"), "{}", refused.text);
    let cookie = app.browser_login("ada@example.com").await;
    let page = app.page("/billing", Some(&cookie)).await;
    assert!(page.text.contains(r#"data-testid="payment-due""#) && page.text.contains("a payment is overdue"), "{}", page.text);

    // The older "action required" for the same invoice, delivered late, changes nothing.
    let r = send(&app, &event("evt_f0", "invoice.payment_action_required", t - 60, invoice("in_1", "cus_A", "open", 1399))).await;
    assert_eq!(r.body["outcome"], "ignored: older than the invoice we have, or it is settled");
    // Paid: the hold lifts and the service starts again from its build.
    send(&app, &event("evt_p1", "invoice.paid", t + 5, invoice("in_1", "cus_A", "paid", 1399))).await;
    let again: String = sqlx::query_scalar("SELECT resumed_as::text FROM usage_limit_stops WHERE deployment_id = $1::uuid").bind(&first).fetch_one(&app.db).await.unwrap();
    let d = wait_for(&app, &token, &again, &["running"]).await;
    assert_eq!(d["deployment"]["trigger"], "restart");
    let r = app.get("/billing/payment", &token).await;
    assert!(r.body["past_due_since"].is_null() && r.body["stopped_at"].is_null(), "{}", r.text);
    let subjects: Vec<String> = sqlx::query_scalar("SELECT subject FROM mail_outbox WHERE to_address = 'ada@example.com' AND (subject LIKE '%ayment%' OR subject LIKE '%starting again%') ORDER BY created_at")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(subjects, ["Your Roundhouse payment failed", "Your Roundhouse services are stopped: payment overdue", "Your Roundhouse services are starting again"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_reported_as_one_meter_event_per_customer_resource_and_hour_even_after_a_429() {
    let fake = MockServer::start().await;
    // Stripe is busy once; the client backs off and tries again.
    Mock::given(method("POST"))
        .and(path("/v1/billing/meter_events"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({ "error": { "type": "rate_limit_error", "message": "Too many requests" } })))
        .up_to_n_times(1)
        .mount(&fake)
        .await;
    Mock::given(method("POST")).and(path("/v1/billing/meter_events")).respond_with(ResponseTemplate::new(200).set_body_json(fixture("meter_event"))).mount(&fake).await;
    let app = app_with_stripe(&fake).await;
    let (service, project, ada) = customer_with_service(&app).await;
    // Two hours of one period, a day into it and at least a day ago.
    let hour = app::billing::money::Period::containing(chrono::Utc::now() - chrono::Duration::days(2)).start + chrono::Duration::days(1);
    let record = |minute, resource, q| record(&app, service, project, resource, minute, q);
    // 1.5 vCPU-minutes in the first hour, 1.0 in the next: 1 then 1 (the half carries).
    record(hour, "cpu", 1_000).await;
    record(hour + chrono::Duration::minutes(30), "cpu", 500).await;
    record(hour + chrono::Duration::minutes(61), "cpu", 1_000).await;
    // 2.5 MB out in the first hour: 2 MB.
    record(hour + chrono::Duration::minutes(2), "egress", 2_500_000).await;

    // Hours are sent once settled (70 minutes after they end).
    let later = hour + chrono::Duration::hours(3) + chrono::Duration::minutes(10);
    let sent = app::billing::meter::report_due(&app.state, later).await.unwrap();
    assert_eq!(sent, 3);
    let again = app::billing::meter::report_due(&app.state, later).await.unwrap();
    assert_eq!(again, 0, "reported hours are never sent twice");

    let requests = fake.received_requests().await.unwrap();
    assert_eq!(requests.len(), 4, "three events, one of them sent twice after the 429");
    let forms: Vec<_> = requests.iter().map(|r| form(&r.body)).collect();
    assert_eq!(field(&forms[0], "identifier"), field(&forms[1], "identifier"), "the retry is the same event");
    let h = hour.timestamp();
    let events: Vec<(String, String, String, String, String)> = forms[1..]
        .iter()
        .map(|f| {
            let get = |k: &str| field(f, k).unwrap_or_default().to_string();
            (get("event_name"), get("identifier"), get("payload[stripe_customer_id]"), get("payload[value]"), get("timestamp"))
        })
        .collect();
    assert_eq!(
        events,
        vec![
            ("roundhouse_cpu".into(), format!("cus_A:cpu:{h}"), "cus_A".into(), "1".into(), h.to_string()),
            ("roundhouse_egress".into(), format!("cus_A:egress:{h}"), "cus_A".into(), "2".into(), h.to_string()),
            ("roundhouse_cpu".into(), format!("cus_A:cpu:{}", h + 3600), "cus_A".into(), "1".into(), (h + 3600).to_string()),
        ]
    );
    let reports: i64 = sqlx::query_scalar("SELECT count(*) FROM meter_reports WHERE owner_id = $1").bind(ada).fetch_one(&app.db).await.unwrap();
    assert_eq!(reports, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_report_stripe_refuses_is_recorded_with_its_error_and_does_not_block_the_rest() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/billing/meter_events"))
        .and(wiremock::matchers::body_string_contains("event_name=roundhouse_cpu"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({ "error": { "type": "invalid_request_error", "message": "No active meter found for event_name roundhouse_cpu" } })))
        .mount(&fake)
        .await;
    Mock::given(method("POST")).and(path("/v1/billing/meter_events")).respond_with(ResponseTemplate::new(200).set_body_json(fixture("meter_event"))).mount(&fake).await;
    let app = app_with_stripe(&fake).await;
    let (service, project, _) = customer_with_service(&app).await;
    let hour = app::billing::money::Period::containing(chrono::Utc::now() - chrono::Duration::days(2)).start + chrono::Duration::days(1);
    for (resource, q) in [("cpu", 5_000i64), ("egress", 3_000_000)] {
        record(&app, service, project, resource, hour, q).await;
    }
    let later = hour + chrono::Duration::hours(3);
    assert_eq!(app::billing::meter::report_due(&app.state, later).await.unwrap(), 1, "egress went; cpu was refused");
    assert_eq!(app::billing::meter::report_due(&app.state, later).await.unwrap(), 0);
    let rows: Vec<(String, Option<String>)> = sqlx::query_as("SELECT resource, error FROM meter_reports ORDER BY resource").fetch_all(&app.db).await.unwrap();
    assert_eq!(rows, vec![("cpu".into(), Some("No active meter found for event_name roundhouse_cpu".into())), ("egress".into(), None)]);
    assert_eq!(fake.received_requests().await.unwrap().len(), 2, "the refused event is not sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_local_ledger_there_is_no_portal_and_plans_change_at_once() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let r = app.post("/billing/portal", &token, json!({})).await;
    assert_eq!((r.status, r.error_field()), (StatusCode::CONFLICT, "portal"), "{}", r.text);
    let r = app.post("/billing/checkout", &token, json!({ "plan_id": "hobby" })).await;
    assert_eq!((r.status, r.body["id"].as_str(), r.body.get("redirect_url")), (StatusCode::OK, Some("hobby"), None), "{}", r.text);
    let r = app.get("/billing/payment", &token).await;
    assert_eq!((r.body["provider"].as_bool(), r.body["has_customer"].as_bool()), (Some(false), Some(false)), "{}", r.text);
}
