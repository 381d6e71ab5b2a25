//! Spend limits, as Railway has them: a soft limit (an email when the period's bill reaches it)
//! and a hard limit (emails at 75 %, 90 % and 100 %; at 100 % every service of the account
//! stops, with the reason in its deployment's events, and no deploy starts until the limit is
//! raised or removed — or the period ends — when they start again by themselves).

use super::{
    holds::{self, Hold},
    money::{dollars, Period},
    service::bill_so_far,
};
use crate::{
    error::{AppError, AppResult},
    infra::{mail, AppState},
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

pub use super::Limits;

/// The most a limit may be: $1,000,000.
const MAX_LIMIT_CENTS: i64 = 100_000_000;

pub async fn get(db: &PgPool, owner: Uuid) -> AppResult<Limits> {
    let row: Option<(Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT soft_limit_cents, hard_limit_cents FROM usage_limits WHERE user_id = $1").bind(owner).fetch_optional(db).await?;
    let (soft, hard) = row.unwrap_or_default();
    let stopped: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT limit_stopped_at FROM users WHERE id = $1").bind(owner).fetch_optional(db).await?.flatten();
    Ok(Limits { soft_limit_cents: soft, hard_limit_cents: hard, stopped_at: stopped })
}

/// Sets (or removes, with `None`) the limits, then applies them at once: raising a hard limit
/// past the bill starts stopped services again.
pub async fn set(state: &AppState, owner: Uuid, soft: Option<i64>, hard: Option<i64>) -> AppResult<Limits> {
    for (field, v) in [("soft_limit_cents", soft), ("hard_limit_cents", hard)] {
        if v.is_some_and(|v| !(1..=MAX_LIMIT_CENTS).contains(&v)) {
            return Err(AppError::validation(field, format!("A limit is between $0.01 and {}.", dollars(MAX_LIMIT_CENTS))));
        }
    }
    if let Some(h) = hard {
        let (plan, _) = super::service::plan(&state.db, owner).await?;
        if h <= plan.monthly_fee_cents {
            return Err(AppError::validation(
                "hard_limit_cents",
                format!("The hard limit counts your {} plan's {} fee: set it above that.", plan.name, dollars(plan.monthly_fee_cents)),
            ));
        }
    }
    if let (Some(s), Some(h)) = (soft, hard) {
        if s > h {
            return Err(AppError::validation("soft_limit_cents", "The soft limit warns before the hard one: make it lower."));
        }
    }
    sqlx::query(
        "INSERT INTO usage_limits (user_id, soft_limit_cents, hard_limit_cents) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE SET soft_limit_cents = $2, hard_limit_cents = $3, updated_at = now()",
    )
    .bind(owner)
    .bind(soft)
    .bind(hard)
    .execute(&state.db)
    .await?;
    enforce(state, owner, Utc::now()).await?;
    get(&state.db, owner).await
}

/// Sends an alert once per period; answers whether it was sent now.
async fn alert(state: &AppState, owner: Uuid, email: &str, period: Period, kind: &str, subject: String, body: String) -> AppResult<bool> {
    let fresh: Option<i32> = sqlx::query_scalar(
        "INSERT INTO usage_limit_alerts (user_id, period_start, kind) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
    )
    .bind(owner)
    .bind(period.start)
    .bind(kind)
    .fetch_optional(&state.db)
    .await?;
    if fresh.is_none() {
        return Ok(false);
    }
    if let Err(e) = mail::send(&state.db, state.mail.as_ref(), mail::Mail { to: email.to_string(), subject, body }).await {
        tracing::warn!(error = %e, %owner, kind, "a usage alert could not be queued");
    }
    Ok(true)
}

/// Applies one account's limits to its bill so far: alerts, stopping at the hard limit, and
/// starting again once the limit allows. Idempotent: run it as often as wanted.
pub async fn enforce(state: &AppState, owner: Uuid, now: DateTime<Utc>) -> AppResult<()> {
    let db = &state.db;
    let limits = get(db, owner).await?;
    let report = bill_so_far(db, owner, now).await?;
    let bill = report.bill.total_cents;
    let period = report.period;
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1").bind(owner).fetch_one(db).await?;
    let billing_url = format!("{}/billing", state.config.public_url.trim_end_matches('/'));

    if let Some(soft) = limits.soft_limit_cents.filter(|s| bill >= *s) {
        alert(state, owner, &email, period, "soft", format!("Your Roundhouse bill reached {}", dollars(soft)),
            format!("This period's bill so far is {}, past your soft usage limit of {}. Nothing was stopped.\n\nSee your usage: {billing_url}\n", dollars(bill), dollars(soft))).await?;
    }
    // With Stripe, an account without a live subscription has nothing to bill usage past what
    // its plan includes to: that is its hard limit.
    let included_only = match &state.payments {
        Some(_) => {
            let subscribed: bool = sqlx::query_scalar(
                "SELECT stripe_subscription_id IS NOT NULL AND coalesce(subscription_status, '') NOT IN ('canceled', 'incomplete', 'incomplete_expired')
                 FROM users WHERE id = $1",
            )
            .bind(owner)
            .fetch_one(db)
            .await?;
            !subscribed
        }
        None => false,
    };
    let included = report.plan.included_usage_cents;
    if included_only && report.usage_cents > 0 && report.usage_cents >= included {
        let reason = format!(
            "Stopped: your {} plan includes {} of usage this period and it is used up. Choose a paid plan on the billing page to start again.",
            report.plan.name,
            dollars(included)
        );
        let stopped = holds::stop_all(db, owner, Hold::Limit, &reason).await?;
        alert(state, owner, &email, period, "hard_100", "Your Roundhouse services are stopped: included usage used up".into(),
            format!("Your {} plan's included usage ({}) is used up: {stopped} deployment(s) were stopped. Choose a paid plan to go on: {billing_url}\n", report.plan.name, dollars(included))).await?;
        return Ok(());
    }
    let over = limits.hard_limit_cents.is_some_and(|h| bill >= h);
    if let Some(hard) = limits.hard_limit_cents {
        for (percent, kind) in [(75, "hard_75"), (90, "hard_90")] {
            if bill * 100 >= hard * percent && !over {
                alert(state, owner, &email, period, kind, format!("Your Roundhouse bill is at {percent} % of your hard limit"),
                    format!("This period's bill so far is {} of your hard limit of {}. At the limit every service stops.\n\nRaise it or see your usage: {billing_url}\n", dollars(bill), dollars(hard))).await?;
            }
        }
        if over {
            let reason = format!("Stopped: this period's bill ({}) reached your hard usage limit of {}. Raise or remove it on the billing page to start again.", dollars(bill), dollars(hard));
            let stopped = holds::stop_all(db, owner, Hold::Limit, &reason).await?;
            alert(state, owner, &email, period, "hard_100", "Your Roundhouse services are stopped: hard usage limit reached".into(),
                format!("This period's bill so far is {}, your hard usage limit. {stopped} deployment(s) were stopped and nothing deploys until you raise or remove the limit, or the period ends.\n\n{billing_url}\n", dollars(bill))).await?;
        }
    }
    if !over && limits.stopped_at.is_some() {
        // Another hold (an overdue payment) may keep them stopped still.
        let Some(started) = holds::release(state, owner, Hold::Limit).await? else { return Ok(()) };
        alert(state, owner, &email, period, "resumed", "Your Roundhouse services are starting again".into(),
            format!("Your hard usage limit now allows this period's bill ({}): {started} service(s) are starting again.\n\n{billing_url}\n", dollars(bill))).await?;
    }
    Ok(())
}

/// Every account with a limit, or held stopped by one (the leader, every 20 s).
pub async fn enforce_all(state: &AppState) -> AppResult<()> {
    let now = Utc::now();
    // With Stripe, also every account without a subscription that used something this period.
    let owners: Vec<Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM usage_limits WHERE soft_limit_cents IS NOT NULL OR hard_limit_cents IS NOT NULL
         UNION SELECT id FROM users WHERE limit_stopped_at IS NOT NULL
         UNION SELECT DISTINCT r.owner_id FROM usage_records r JOIN users u ON u.id = r.owner_id
           WHERE $1 AND r.minute >= $2 AND (u.stripe_subscription_id IS NULL OR u.subscription_status IN ('canceled', 'incomplete', 'incomplete_expired'))",
    )
    .bind(state.payments.is_some())
    .bind(super::money::Period::containing(now).start)
    .fetch_all(&state.db)
    .await?;
    for owner in owners {
        if let Err(e) = enforce(state, owner, now).await {
            tracing::warn!(%owner, error = %e, "applying usage limits failed");
        }
    }
    Ok(())
}
