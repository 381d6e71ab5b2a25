//! The local ledger (no Stripe key configured): plan changes take effect at once and are
//! prorated on the invoice; each account gets one invoice per period once it ends; admins mark
//! invoices paid.

use super::{
    invoice::{self, Line, PlanSpan},
    money::{Period, Resource},
    service::{plan, usage},
    Invoice, InvoiceSummary,
};
use crate::{
    audit,
    error::{AppError, AppResult},
};
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// The plans `owner` held during `period`, in order.
pub async fn spans(db: &PgPool, owner: Uuid, period: Period) -> AppResult<Vec<PlanSpan>> {
    let changes: Vec<(String, String, DateTime<Utc>)> =
        sqlx::query_as("SELECT from_plan, to_plan, at FROM plan_changes WHERE user_id = $1 AND at < $2 ORDER BY at, id")
            .bind(owner)
            .bind(period.end)
            .fetch_all(db)
            .await?;
    let (current, created): (String, DateTime<Utc>) = sqlx::query_as("SELECT plan_id, created_at FROM users WHERE id = $1").bind(owner).fetch_one(db).await?;
    // The plan held at the period's start: the last change before it, else the first plan.
    let mut held = changes.iter().rev().find(|c| c.2 <= period.start).map(|c| c.1.clone())
        .or_else(|| changes.first().map(|c| c.0.clone()))
        .unwrap_or(current);
    let mut from = period.start.max(created.min(period.end));
    let mut out = Vec::new();
    for (_, to_plan, at) in changes.into_iter().filter(|c| c.2 > period.start) {
        out.push((held, from, at));
        held = to_plan;
        from = at;
    }
    out.push((held, from, period.end));
    let mut spans = Vec::new();
    for (plan_id, from, to) in out {
        let (name, fee, included): (String, i32, i32) =
            sqlx::query_as("SELECT name, monthly_fee_cents, included_usage_cents FROM plans WHERE id = $1").bind(&plan_id).fetch_one(db).await?;
        spans.push(PlanSpan { plan: name, monthly_fee_cents: fee.into(), included_usage_cents: included.into(), from, to });
    }
    Ok(spans)
}

/// Moves `owner` to `plan_id` now. A downgrade must fit what the account has: the message says
/// what is over the new plan's limits.
pub async fn change_plan(db: &PgPool, owner: Uuid, plan_id: &str, ip: &str) -> AppResult<super::PlanSummary> {
    let mut tx = db.begin().await?;
    let current: String = sqlx::query_scalar("SELECT plan_id FROM users WHERE id = $1 FOR UPDATE").bind(owner).fetch_one(&mut *tx).await?;
    let target = super::allowance::Allowance::of_plan(&mut tx, plan_id).await?;
    let target = target.ok_or_else(|| AppError::validation("plan_id", "Choose one of the plans on the pricing page."))?;
    let name = target.plan.clone();
    if current == plan_id {
        return Err(AppError::conflict("plan_id", format!("You are on the {name} plan already.")));
    }
    // What the account has at its largest: projects, services in one project, and one service's
    // replicas, memory and CPU.
    let (projects, services, replicas, memory, cpu): (i64, Option<i64>, Option<i32>, Option<i32>, Option<i32>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM projects WHERE owner_id = $1),
                (SELECT max(n) FROM (SELECT count(DISTINCT s.name) AS n FROM projects p JOIN environments e ON e.project_id = p.id
                                     JOIN services s ON s.environment_id = e.id WHERE p.owner_id = $1 GROUP BY p.id) per_project),
                max(s.replicas), max(s.memory_mb), max(s.cpu_millis)
         FROM projects p JOIN environments e ON e.project_id = p.id JOIN services s ON s.environment_id = e.id WHERE p.owner_id = $1",
    )
    .bind(owner)
    .fetch_one(&mut *tx)
    .await?;
    let mut over = Vec::new();
    if projects > i64::from(target.max_projects) {
        over.push(format!("{projects} projects (it allows {})", target.max_projects));
    }
    if let Some(n) = services.filter(|n| *n > i64::from(target.max_services)) {
        over.push(format!("a project with {n} services (it allows {})", target.max_services));
    }
    if let Some(r) = replicas.filter(|r| *r > target.max_replicas) {
        over.push(format!("a service with {r} replicas (it allows {})", target.max_replicas));
    }
    if let Some(m) = memory.filter(|m| *m > target.max_memory_mb) {
        over.push(format!("a service with {m} MB of memory (it allows {} MB)", target.max_memory_mb));
    }
    if let Some(c) = cpu.filter(|c| *c > target.max_cpu_millis) {
        over.push(format!("a service with {} vCPU (it allows {})", f64::from(c) / 1000.0, f64::from(target.max_cpu_millis) / 1000.0));
    }
    if !over.is_empty() {
        return Err(AppError::PlanLimit { message: format!("The {name} plan is too small for what you have: {}. Remove or shrink them first.", over.join(", ")) });
    }
    sqlx::query("UPDATE users SET plan_id = $2, updated_at = now() WHERE id = $1").bind(owner).bind(plan_id).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO plan_changes (user_id, from_plan, to_plan) VALUES ($1, $2, $3)").bind(owner).bind(&current).bind(plan_id).execute(&mut *tx).await?;
    audit::record(&mut *tx, Some(owner), "plan.change", &format!("user:{owner}"), serde_json::json!({ "from": current, "to": plan_id }), ip).await?;
    tx.commit().await?;
    Ok(plan(db, owner).await?.0)
}

/// The invoice lines of `owner`'s `period`, as they stand.
pub async fn lines_for(db: &PgPool, owner: Uuid, period: Period) -> AppResult<Vec<Line>> {
    let spans = spans(db, owner, period).await?;
    // The usage of the whole period, priced as the report prices it.
    let report = usage(db, owner, period.end - Duration::seconds(1)).await?;
    let used: Vec<_> = report.resources.into_iter().filter(|r| Resource::ALL.contains(&r.resource)).collect();
    Ok(invoice::lines(period, &spans, &used))
}

/// Issues the invoices of the period before the one `now` is in, for every account that had
/// usage or a paid plan in it; an account invoiced already is skipped. Answers how many.
pub async fn issue_due(db: &PgPool, now: DateTime<Utc>) -> AppResult<usize> {
    let period = Period::containing(Period::containing(now).start - Duration::minutes(1));
    let owners: Vec<Uuid> = sqlx::query_scalar(
        "SELECT u.id FROM users u WHERE u.created_at < $2
           AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.user_id = u.id AND i.period_start = $1)
           AND (EXISTS (SELECT 1 FROM usage_records r WHERE r.owner_id = u.id AND r.minute >= $1 AND r.minute < $2)
                OR EXISTS (SELECT 1 FROM plans p WHERE p.id = u.plan_id AND p.monthly_fee_cents > 0)
                OR EXISTS (SELECT 1 FROM plan_changes c WHERE c.user_id = u.id AND c.at >= $1 AND c.at < $2))",
    )
    .bind(period.start)
    .bind(period.end)
    .fetch_all(db)
    .await?;
    let mut issued = 0;
    for owner in owners {
        let lines = lines_for(db, owner, period).await?;
        let total = invoice::total(&lines);
        let number = format!("RH-{}-{}", period.start.format("%Y%m"), &owner.simple().to_string()[..12].to_uppercase());
        let mut tx = db.begin().await?;
        let id: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO invoices (user_id, number, period_start, period_end, total_cents) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id, period_start) WHERE stripe_invoice_id IS NULL DO NOTHING RETURNING id",
        )
        .bind(owner)
        .bind(&number)
        .bind(period.start)
        .bind(period.end)
        .bind(total)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else { continue };
        write_lines(&mut tx, id, &lines).await?;
        tx.commit().await?;
        issued += 1;
    }
    Ok(issued)
}

/// Sets an invoice's lines to `lines`, in order.
pub async fn write_lines(tx: &mut sqlx::PgConnection, invoice: Uuid, lines: &[Line]) -> AppResult<()> {
    sqlx::query("DELETE FROM invoice_lines WHERE invoice_id = $1").bind(invoice).execute(&mut *tx).await?;
    for (i, l) in lines.iter().enumerate() {
        sqlx::query("INSERT INTO invoice_lines (invoice_id, position, description, amount_cents) VALUES ($1, $2, $3, $4)")
            .bind(invoice)
            .bind(i as i32)
            .bind(&l.description)
            .bind(l.amount_cents)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

const SUMMARY: &str = "SELECT i.id, i.number, i.period_start, i.period_end, i.status, i.total_cents, i.issued_at, i.paid_at, u.email, i.hosted_url
     FROM invoices i JOIN users u ON u.id = i.user_id";

#[derive(sqlx::FromRow)]
struct SummaryRow {
    id: Uuid,
    number: String,
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    status: String,
    total_cents: i64,
    issued_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    email: String,
    hosted_url: Option<String>,
}

impl From<SummaryRow> for InvoiceSummary {
    fn from(r: SummaryRow) -> Self {
        InvoiceSummary {
            id: r.id,
            number: r.number,
            period_start: r.period_start,
            period_end: r.period_end,
            status: r.status,
            total_cents: r.total_cents,
            issued_at: r.issued_at,
            paid_at: r.paid_at,
            customer: r.email,
            hosted_url: r.hosted_url,
        }
    }
}

/// `owner`'s invoices, newest first (all accounts' for `owner: None`, admins).
pub async fn list(db: &PgPool, owner: Option<Uuid>) -> AppResult<Vec<InvoiceSummary>> {
    let rows: Vec<SummaryRow> = sqlx::query_as(&format!("{SUMMARY} WHERE ($1::uuid IS NULL OR i.user_id = $1) ORDER BY i.period_start DESC, u.email LIMIT 500"))
        .bind(owner)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// One invoice with its lines: `owner`'s own, or any for an admin (`owner: None`).
pub async fn get(db: &PgPool, owner: Option<Uuid>, id: Uuid) -> AppResult<Invoice> {
    let row: SummaryRow = sqlx::query_as(&format!("{SUMMARY} WHERE i.id = $1 AND ($2::uuid IS NULL OR i.user_id = $2)"))
        .bind(id)
        .bind(owner)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| AppError::not_found("Invoice"))?;
    let lines = sqlx::query_as::<_, (String, i64)>("SELECT description, amount_cents FROM invoice_lines WHERE invoice_id = $1 ORDER BY position")
        .bind(id)
        .fetch_all(db)
        .await?
        .into_iter()
        .map(|(description, amount_cents)| Line { description, amount_cents })
        .collect();
    Ok(Invoice { summary: row.into(), lines })
}

/// Marks an open invoice paid (admins; audited).
pub async fn mark_paid(db: &PgPool, admin: Uuid, id: Uuid, ip: &str) -> AppResult<()> {
    let mut tx = db.begin().await?;
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM invoices WHERE id = $1 FOR UPDATE").bind(id).fetch_optional(&mut *tx).await?;
    match status.as_deref() {
        None => return Err(AppError::not_found("Invoice")),
        Some("open") => {}
        Some(other) => return Err(AppError::conflict("status", format!("This invoice is {other}, not open."))),
    }
    sqlx::query("UPDATE invoices SET status = 'paid', paid_at = now(), paid_by = $2 WHERE id = $1").bind(id).bind(admin).execute(&mut *tx).await?;
    audit::record(&mut *tx, Some(admin), "invoice.paid", &format!("invoice:{id}"), serde_json::json!({}), ip).await?;
    tx.commit().await?;
    Ok(())
}
