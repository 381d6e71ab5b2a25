//! Billing: what a user's services used this period, what it costs, and what the period's
//! bill will come to at this rate. Money is integer cents (`money.rs`); usage comes from the
//! per-minute records the platform meters (server/src/metering.rs).

#[cfg(feature = "ssr")]
pub mod allowance;
pub mod invoice;
#[cfg(feature = "ssr")]
pub mod holds;
#[cfg(feature = "ssr")]
pub mod ledger;
#[cfg(feature = "ssr")]
pub mod meter;
#[cfg(feature = "ssr")]
pub mod limits;
pub mod ledger_pages;
pub mod money;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod revenue;
pub mod revenue_pages;
#[cfg(feature = "ssr")]
pub mod service;
#[cfg(feature = "ssr")]
pub mod subscription;

use crate::error::AppError;
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use money::{Bill, Period, Resource};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The plan a user is on, as billing sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PlanSummary {
    pub id: String,
    pub name: String,
    pub monthly_fee_cents: i64,
    pub included_usage_cents: i64,
}

/// One resource's use in a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ResourceUsage {
    #[cfg_attr(feature = "ssr", schema(value_type = String, example = "memory"))]
    pub resource: Resource,
    /// In the resource's unit: millicore-minutes (cpu), MiB-minutes (memory, volume), bytes (egress).
    pub quantity: i64,
    /// The quantity in words (`1.50 vCPU-hours`).
    pub description: String,
    pub cost_cents: i64,
}

/// One service's use in a period (a deleted service keeps its usage until billed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ServiceUsage {
    pub service_id: Uuid,
    pub service: String,
    pub project_id: Uuid,
    pub project: String,
    pub resources: Vec<ResourceUsage>,
    pub cost_cents: i64,
    /// What its volume holds now, against the plan's volume size (services with a volume).
    #[serde(default)]
    pub volume: Option<VolumeSize>,
}

/// A volume's size as last measured, and the largest the plan allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct VolumeSize {
    pub bytes: i64,
    pub plan: String,
    pub limit_gb: i32,
}

/// What one day of the period cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DayCost {
    pub day: DateTime<Utc>,
    pub cost_cents: i64,
}

/// Usage, cost and the bill of the current period so far, and projected to its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UsageReport {
    pub plan: PlanSummary,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub as_of: DateTime<Utc>,
    /// Per resource, costed once over the whole period (the figures that are billed).
    pub resources: Vec<ResourceUsage>,
    /// Per service, most expensive first (each rounded on its own, so they may differ from
    /// the total by a cent or so).
    pub services: Vec<ServiceUsage>,
    /// Every day of the period so far.
    pub days: Vec<DayCost>,
    pub usage_cents: i64,
    #[cfg_attr(feature = "ssr", schema(value_type = Object))]
    pub bill: Bill,
    /// The bill if usage goes on at the rate so far until the period ends.
    #[cfg_attr(feature = "ssr", schema(value_type = Object))]
    pub projected: Bill,
    /// When the bill reaches the hard limit at the rate so far (none: not this period, or no
    /// hard limit).
    #[serde(default)]
    pub hard_limit_reached_at: Option<DateTime<Utc>>,
}

impl UsageReport {
    pub fn period(&self) -> Period {
        Period { start: self.period_start, end: self.period_end }
    }
}

/// The signed-in user's usage this period.
#[server(endpoint = "get_usage")]
pub async fn get_usage() -> Result<UsageReport, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::usage(&request::state()?.db, auth.user.id, Utc::now()).await
    })
    .await
}

/// One service's usage this period (yours only).
#[server(endpoint = "get_service_usage")]
pub async fn get_service_usage(service_id: Uuid) -> Result<ServiceUsage, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::service_usage(&request::state()?.db, auth.user.id, service_id, Utc::now()).await
    })
    .await
}

/// An account's spend limits, on the period's bill so far (fee included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Limits {
    /// An email when the bill reaches it.
    pub soft_limit_cents: Option<i64>,
    /// Emails at 75 %, 90 % and 100 %; at 100 % every service stops until it is raised.
    pub hard_limit_cents: Option<i64>,
    /// When the hard limit stopped the account's services (none: they may run).
    pub stopped_at: Option<DateTime<Utc>>,
}

#[server(endpoint = "get_limits")]
pub async fn get_limits() -> Result<Limits, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        limits::get(&request::state()?.db, auth.user.id).await
    })
    .await
}

/// Sets the limits from the billing page's form: dollar amounts, empty for none.
#[server(endpoint = "set_limits")]
pub async fn set_limits(soft_limit: String, hard_limit: String) -> Result<Limits, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let amount = |field: &str, s: &str| -> Result<Option<i64>, AppError> {
            if s.trim().is_empty() {
                return Ok(None);
            }
            money::parse_dollars(s).map(Some).ok_or_else(|| AppError::validation(field, "Type an amount in dollars, like 25 or 12.50."))
        };
        let soft = amount("soft_limit", &soft_limit)?;
        let hard = amount("hard_limit", &hard_limit)?;
        limits::set(&request::state()?, auth.user.id, soft, hard).await
    })
    .await
}

/// What asking for another plan did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum PlanChange {
    /// The plan changed at once (the local ledger, or down to a free plan with nothing to cancel).
    Changed(PlanSummary),
    /// Go here to pay (Stripe Checkout) or to change an existing subscription (the portal);
    /// the plan changes when Stripe says the subscription did.
    Redirect { redirect_url: String },
}

/// The account's standing with the payment provider, for the billing page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PaymentStatus {
    /// Whether plans are paid through Stripe here (else the local ledger invoices them).
    pub provider: bool,
    /// Whether the account can open the provider's portal.
    pub has_customer: bool,
    pub subscription_status: Option<String>,
    /// Since when a failed payment is unpaid.
    pub past_due_since: Option<DateTime<Utc>>,
    /// When services stop if it stays unpaid.
    pub stops_at: Option<DateTime<Utc>>,
    /// When an overdue payment stopped the services.
    pub stopped_at: Option<DateTime<Utc>>,
}

/// An invoice as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct InvoiceSummary {
    pub id: Uuid,
    pub number: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// open, paid or void.
    pub status: String,
    pub total_cents: i64,
    pub issued_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    /// The account's email.
    pub customer: String,
    /// Stripe's page for the invoice (pay it there), for invoices Stripe issued.
    pub hosted_url: Option<String>,
}

/// An invoice with its lines (their sum is the total).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Invoice {
    #[serde(flatten)]
    pub summary: InvoiceSummary,
    pub lines: Vec<invoice::Line>,
}

/// Moves the signed-in user to another plan. On the local ledger (no Stripe configured) it
/// takes effect at once and the period's invoice prorates the fees by time; with Stripe, the
/// browser is sent to Stripe's checkout (or, with a subscription already, its portal).
#[server(endpoint = "change_plan")]
pub async fn change_plan(plan_id: String) -> Result<PlanChange, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let change = subscription::change_plan(&request::state()?, auth.user.id, plan_id.trim(), &request::client_ip()).await?;
        if let PlanChange::Redirect { redirect_url } = &change {
            leptos_axum::redirect(redirect_url);
        }
        Ok(change)
    })
    .await
}

/// Sends the signed-in user to Stripe's billing portal (payment methods, invoices, cancelling).
#[server(endpoint = "billing_portal")]
pub async fn billing_portal() -> Result<String, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let url = subscription::portal(&request::state()?, auth.user.id).await?;
        leptos_axum::redirect(&url);
        Ok(url)
    })
    .await
}

/// The signed-in user's standing with the payment provider.
#[server(endpoint = "get_payment_status")]
pub async fn get_payment_status() -> Result<PaymentStatus, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        subscription::status(&request::state()?, auth.user.id).await
    })
    .await
}

#[server(endpoint = "list_invoices")]
pub async fn list_invoices() -> Result<Vec<InvoiceSummary>, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        ledger::list(&request::state()?.db, Some(auth.user.id)).await
    })
    .await
}

/// One of your invoices (admins: anyone's).
#[server(endpoint = "get_invoice")]
pub async fn get_invoice(id: Uuid) -> Result<Invoice, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let owner = (!auth.user.is_admin()).then_some(auth.user.id);
        if owner.is_none() {
            crate::infra::actor::act_as_platform();
        }
        ledger::get(&request::state()?.db, owner, id).await
    })
    .await
}

#[server(endpoint = "admin_list_invoices")]
pub async fn admin_list_invoices() -> Result<Vec<InvoiceSummary>, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        crate::auth::guard::require_admin()?;
        ledger::list(&request::state()?.db, None).await
    })
    .await
}

#[server(endpoint = "admin_mark_invoice_paid")]
pub async fn admin_mark_invoice_paid(id: Uuid) -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_admin()?;
        ledger::mark_paid(&request::state()?.db, auth.user.id, id, &request::client_ip()).await
    })
    .await
}

/// One plan's share of the accounts and of the monthly recurring revenue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PlanShare {
    pub plan: String,
    pub accounts: i64,
    pub mrr_cents: i64,
}

/// One month of revenue, as it stood at the month's end (or now, for this month).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RevenueMonth {
    pub month: DateTime<Utc>,
    pub mrr_cents: i64,
    pub paying_accounts: i64,
    /// Accounts that left a paid plan for a free one during the month.
    pub churned: i64,
    /// Churned against the paying accounts at the month's start, in tenths of a percent.
    pub churn_permille: i64,
    /// Invoices of the month's period (void ones left out), and what of it is paid.
    pub invoiced_cents: i64,
    pub paid_cents: i64,
}

/// The platform's revenue, for admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Revenue {
    /// Monthly recurring revenue now: the fees of the plans accounts are on.
    pub mrr_cents: i64,
    pub paying_accounts: i64,
    pub accounts: i64,
    pub plan_mix: Vec<PlanShare>,
    /// The last six months, oldest first.
    pub months: Vec<RevenueMonth>,
    /// Accounts on a paid plan or with a Stripe customer, biggest first (200 at most).
    pub customers: Vec<Customer>,
}

/// A paying (or once paying) account, for admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, sqlx::FromRow))]
pub struct Customer {
    pub email: String,
    pub plan: String,
    pub monthly_fee_cents: i64,
    /// When the account moved to its plan (none: it started on it).
    pub since: Option<DateTime<Utc>>,
    pub stripe_customer_id: Option<String>,
    pub subscription_status: Option<String>,
    pub past_due_since: Option<DateTime<Utc>>,
}

#[server(endpoint = "admin_revenue")]
pub async fn admin_revenue() -> Result<Revenue, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        crate::auth::guard::require_admin()?;
        revenue::report(&request::state()?.db, Utc::now()).await
    })
    .await
}
