//! The admins' revenue view: MRR as plans stood at each month's end (rebuilt from plan
//! changes), plan mix, churn against the paying accounts at a month's start, invoiced and paid.

use crate::helpers::*;
use axum::http::StatusCode;
use chrono::{DateTime, Datelike, Months, TimeZone, Utc};

fn month_start(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0).unwrap()
}

async fn change(app: &TestApp, email: &str, from: &str, to: &str, at: DateTime<Utc>) {
    sqlx::query("INSERT INTO plan_changes (user_id, from_plan, to_plan, at) SELECT id, $2, $3, $4 FROM users WHERE email = $1")
        .bind(email)
        .bind(from)
        .bind(to)
        .bind(at)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET plan_id = $2 WHERE email = $1").bind(email).bind(to).execute(&app.db).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mrr_plan_mix_and_churn_follow_the_plan_changes_month_by_month() {
    let app = TestApp::new().await;
    for (name, email) in [("Ada", "ada@example.com"), ("Bob", "bob@example.com"), ("Cy", "cy@example.com"), ("Root", "root@example.com")] {
        app.verified_user(name, email).await;
    }
    // Every account existed a year ago.
    sqlx::query("UPDATE users SET created_at = now() - interval '1 year'").execute(&app.db).await.unwrap();
    let this = month_start(Utc::now());
    let two_ago = this - Months::new(2);
    let last = this - Months::new(1);
    // Two months ago: Ada to Hobby, Bob to Pro. Last month: Bob leaves for Free. This month: Cy to Pro.
    change(&app, "ada@example.com", "free", "hobby", two_ago + chrono::Duration::days(1)).await;
    change(&app, "bob@example.com", "free", "pro", two_ago + chrono::Duration::days(2)).await;
    change(&app, "bob@example.com", "pro", "free", last + chrono::Duration::days(3)).await;
    change(&app, "cy@example.com", "free", "pro", this).await;
    app.make_admin("root@example.com").await;
    let admin = app.browser_login("root@example.com").await;
    let bob = app.browser_login("bob@example.com").await;

    assert_eq!(app.server_fn("admin_revenue", Some(&bob), &[]).await.status, StatusCode::FORBIDDEN);
    let r = app.server_fn("admin_revenue", Some(&admin), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let months = r.body["months"].as_array().unwrap();
    assert_eq!(months.len(), 6);
    let at = |m: DateTime<Utc>| months.iter().find(|x| x["month"].as_str().unwrap().starts_with(&m.format("%Y-%m").to_string())).unwrap();
    let row = |m| {
        let x = at(m);
        (x["mrr_cents"].as_i64().unwrap(), x["paying_accounts"].as_i64().unwrap(), x["churned"].as_i64().unwrap(), x["churn_permille"].as_i64().unwrap())
    };
    assert_eq!(row(two_ago - Months::new(1)), (0, 0, 0, 0));
    assert_eq!(row(two_ago), (500 + 2000, 2, 0, 0), "Ada on Hobby, Bob on Pro at its end");
    assert_eq!(row(last), (500, 1, 1, 500), "Bob left: one of the two paying at its start");
    assert_eq!(row(this), (500 + 2000, 2, 0, 0), "Ada and Cy");
    assert_eq!(r.body["mrr_cents"], 2500);
    assert_eq!((r.body["paying_accounts"].as_i64(), r.body["accounts"].as_i64()), (Some(2), Some(4)));
    let mix: Vec<(String, i64, i64)> = r.body["plan_mix"].as_array().unwrap().iter().map(|p| (p["plan"].as_str().unwrap().to_string(), p["accounts"].as_i64().unwrap(), p["mrr_cents"].as_i64().unwrap())).collect();
    assert_eq!(mix, vec![("Free".into(), 2, 0), ("Hobby".into(), 1, 500), ("Pro".into(), 1, 2000)]);

    let customers: Vec<(String, String)> = r.body["customers"].as_array().unwrap().iter().map(|c| (c["email"].as_str().unwrap().to_string(), c["plan"].as_str().unwrap().to_string())).collect();
    assert_eq!(customers, vec![("cy@example.com".into(), "Pro".into()), ("ada@example.com".into(), "Hobby".into())], "paying accounts, biggest first");

    let page = app.page("/admin/revenue", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains(r#"data-testid="mrr-chart""#) && page.text.contains("$25.00"), "{}", page.text);
    assert_eq!(app.page("/admin/revenue", Some(&bob)).await.status, StatusCode::FORBIDDEN);
}
