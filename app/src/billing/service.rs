//! Usage and cost from the metered records, scoped by owner.

use super::{
    money::{project, Bill, Period, Prices, Resource},
    DayCost, PlanSummary, ResourceUsage, ServiceUsage, UsageReport,
};
use crate::error::{AppError, AppResult};
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The owner's plan and its prices.
pub async fn plan(db: &PgPool, owner: Uuid) -> AppResult<(PlanSummary, Prices)> {
    let (id, name, fee, included, cpu, memory, volume, egress): (String, String, i32, i32, i32, i32, i32, i32) = sqlx::query_as(
        "SELECT p.id, p.name, p.monthly_fee_cents, p.included_usage_cents, p.cpu_vcpu_month_cents, p.memory_gb_month_cents,
                p.volume_gb_month_cents, p.egress_gb_cents
         FROM users u JOIN plans p ON p.id = u.plan_id WHERE u.id = $1",
    )
    .bind(owner)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| AppError::not_found("User"))?;
    let prices = Prices {
        cpu_vcpu_month_cents: cpu.into(),
        memory_gb_month_cents: memory.into(),
        volume_gb_month_cents: volume.into(),
        egress_gb_cents: egress.into(),
    };
    Ok((PlanSummary { id, name, monthly_fee_cents: fee.into(), included_usage_cents: included.into() }, prices))
}

fn usage_of(prices: &Prices, resource: Resource, quantity: i64) -> ResourceUsage {
    ResourceUsage { resource, quantity, description: resource.describe(quantity), cost_cents: prices.cost(resource, quantity) }
}

#[derive(sqlx::FromRow)]
struct ServiceRow {
    service_id: Uuid,
    service: Option<String>,
    project_id: Uuid,
    project: Option<String>,
    resource: String,
    quantity: i64,
}

/// Per service and resource, the quantities of `[from, to)` (one service, or all of the owner's).
async fn service_rows(db: &PgPool, owner: Uuid, service: Option<Uuid>, from: DateTime<Utc>, to: DateTime<Utc>) -> AppResult<Vec<ServiceRow>> {
    Ok(sqlx::query_as(
        "SELECT r.service_id, s.name AS service, r.project_id, p.name AS project, r.resource, sum(r.quantity)::bigint AS quantity
         FROM usage_records r
         LEFT JOIN services s ON s.id = r.service_id
         LEFT JOIN projects p ON p.id = r.project_id
         WHERE r.owner_id = $1 AND ($2::uuid IS NULL OR r.service_id = $2) AND r.minute >= $3 AND r.minute < $4
         GROUP BY r.service_id, s.name, r.project_id, p.name, r.resource",
    )
    .bind(owner)
    .bind(service)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?)
}

fn services_of(rows: Vec<ServiceRow>, prices: &Prices) -> Vec<ServiceUsage> {
    let mut by_service: BTreeMap<Uuid, ServiceUsage> = BTreeMap::new();
    for r in rows {
        let Some(resource) = Resource::parse(&r.resource) else { continue };
        let entry = by_service.entry(r.service_id).or_insert_with(|| ServiceUsage {
            service_id: r.service_id,
            service: r.service.clone().unwrap_or_else(|| "(deleted service)".into()),
            project_id: r.project_id,
            project: r.project.clone().unwrap_or_else(|| "(deleted project)".into()),
            resources: vec![],
            cost_cents: 0,
            volume: None,
        });
        entry.resources.push(usage_of(prices, resource, r.quantity));
    }
    let mut out: Vec<ServiceUsage> = by_service
        .into_values()
        .map(|mut s| {
            s.resources.sort_by_key(|r| r.resource);
            s.cost_cents = s.resources.iter().map(|r| r.cost_cents).sum();
            s
        })
        .collect();
    out.sort_by(|a, b| b.cost_cents.cmp(&a.cost_cents).then_with(|| a.project.cmp(&b.project)).then_with(|| a.service.cmp(&b.service)));
    out
}

/// The owner's usage in the period containing `now`.
pub async fn usage(db: &PgPool, owner: Uuid, now: DateTime<Utc>) -> AppResult<UsageReport> {
    let (plan, prices) = plan(db, owner).await?;
    let period = Period::containing(now);
    let rows = service_rows(db, owner, None, period.start, period.end).await?;
    let mut totals: BTreeMap<Resource, i64> = BTreeMap::new();
    for r in &rows {
        if let Some(resource) = Resource::parse(&r.resource) {
            *totals.entry(resource).or_default() += r.quantity;
        }
    }
    let resources: Vec<ResourceUsage> = Resource::ALL.iter().map(|&r| usage_of(&prices, r, totals.get(&r).copied().unwrap_or(0))).collect();
    let usage_cents: i64 = resources.iter().map(|r| r.cost_cents).sum();

    let per_day: Vec<(DateTime<Utc>, String, i64)> = sqlx::query_as(
        "SELECT date_trunc('day', minute) AS day, resource, sum(quantity)::bigint FROM usage_records
         WHERE owner_id = $1 AND minute >= $2 AND minute < $3 GROUP BY 1, 2",
    )
    .bind(owner)
    .bind(period.start)
    .bind(period.end)
    .fetch_all(db)
    .await?;
    let mut days = Vec::new();
    let mut day = period.start;
    while day < period.end && day <= now {
        let cost = per_day
            .iter()
            .filter(|(d, ..)| *d == day)
            .filter_map(|(_, r, q)| Resource::parse(r).map(|r| prices.cost(r, *q)))
            .sum();
        days.push(DayCost { day, cost_cents: cost });
        day += Duration::days(1);
    }

    let bill = Bill::new(plan.monthly_fee_cents, plan.included_usage_cents, usage_cents);
    let projected_usage = project(usage_cents, period.elapsed_minutes(now), period.minutes());
    let projected = Bill::new(plan.monthly_fee_cents, plan.included_usage_cents, projected_usage);
    let hard: Option<i64> = sqlx::query_scalar("SELECT hard_limit_cents FROM usage_limits WHERE user_id = $1").bind(owner).fetch_optional(db).await?.flatten();
    let hard_limit_reached_at =
        hard.and_then(|h| super::money::limit_reached_at(period, now, plan.monthly_fee_cents, plan.included_usage_cents, usage_cents, h));
    Ok(UsageReport {
        plan,
        period_start: period.start,
        period_end: period.end,
        as_of: now,
        resources,
        services: services_of(rows, &prices),
        days,
        usage_cents,
        bill,
        projected,
        hard_limit_reached_at,
    })
}

/// The period's bill so far, from one sum per resource: what the limits check every 20 s
/// (the full report, per service and day, is for pages).
pub struct BillSoFar {
    pub plan: PlanSummary,
    pub period: Period,
    pub usage_cents: i64,
    pub bill: Bill,
}

pub async fn bill_so_far(db: &PgPool, owner: Uuid, now: DateTime<Utc>) -> AppResult<BillSoFar> {
    let (plan, prices) = plan(db, owner).await?;
    let period = Period::containing(now);
    let totals: Vec<(String, i64)> = sqlx::query_as(
        "SELECT resource, sum(quantity)::bigint FROM usage_records WHERE owner_id = $1 AND minute >= $2 AND minute < $3 GROUP BY resource",
    )
    .bind(owner)
    .bind(period.start)
    .bind(period.end)
    .fetch_all(db)
    .await?;
    let usage_cents = totals.iter().filter_map(|(r, q)| Resource::parse(r).map(|r| prices.cost(r, *q))).sum();
    let bill = Bill::new(plan.monthly_fee_cents, plan.included_usage_cents, usage_cents);
    Ok(BillSoFar { plan, period, usage_cents, bill })
}

/// One of the owner's services' usage this period; another user's service is not found.
pub async fn service_usage(db: &PgPool, owner: Uuid, service_id: Uuid, now: DateTime<Utc>) -> AppResult<ServiceUsage> {
    let service = crate::services::service::get(db, owner, service_id).await?;
    let (_, prices) = plan(db, owner).await?;
    let period = Period::containing(now);
    let rows = service_rows(db, owner, Some(service_id), period.start, period.end).await?;
    let volume: Option<(i64, String, i32)> = sqlx::query_as(
        "SELECT s.volume_bytes, p.name, p.max_volume_gb FROM services s, users u JOIN plans p ON p.id = u.plan_id
         WHERE s.id = $1 AND u.id = $2 AND s.volume_bytes IS NOT NULL",
    )
    .bind(service_id)
    .bind(owner)
    .fetch_optional(db)
    .await?;
    let mut usage = services_of(rows, &prices).into_iter().next().unwrap_or(ServiceUsage {
        service_id,
        service: service.name,
        project_id: service.project_id,
        project: service.project,
        resources: vec![],
        cost_cents: 0,
        volume: None,
    });
    usage.volume = volume.map(|(bytes, plan, limit_gb)| super::VolumeSize { bytes, plan, limit_gb });
    Ok(usage)
}
