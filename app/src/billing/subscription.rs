//! Billing through a payment provider (Stripe, when configured): plan changes go through its
//! hosted checkout and portal, and its events — already checked and decoded by the webhook
//! (server/src/payments/webhook.rs) — change the account here. Each event applies once (its id
//! is stored with its effect, in one transaction), and an event older than the state it would
//! change is ignored, so replays and out-of-order delivery leave the latest state.

use super::{
    holds::{self, Hold},
    ledger, PaymentStatus, PlanChange,
};
use crate::{
    audit,
    error::{AppError, AppResult},
    infra::{mail, payments::Checkout, AppState},
};
use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// Stripe's statuses under which a subscription no longer gives its plan.
fn ended(status: &str) -> bool {
    matches!(status, "canceled" | "incomplete_expired" | "incomplete")
}

/// Moves `owner` to `plan_id`, or says where to go to pay for it.
pub async fn change_plan(state: &AppState, owner: Uuid, plan_id: &str, ip: &str) -> AppResult<PlanChange> {
    let (Some(provider), Some(stripe)) = (&state.payments, &state.config.stripe) else {
        return ledger::change_plan(&state.db, owner, plan_id, ip).await.map(PlanChange::Changed);
    };
    let plan: Option<(String, i32)> =
        sqlx::query_as("SELECT name, monthly_fee_cents FROM plans WHERE id = $1 AND public").bind(plan_id).fetch_optional(&state.db).await?;
    let (name, fee) = plan.ok_or_else(|| AppError::validation("plan_id", "Choose one of the plans on the pricing page."))?;
    let (email, current, customer, subscription, status): (String, String, Option<String>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT email, plan_id, stripe_customer_id, stripe_subscription_id, subscription_status FROM users WHERE id = $1",
    )
    .bind(owner)
    .fetch_one(&state.db)
    .await?;
    if current == plan_id {
        return Err(AppError::conflict("plan_id", format!("You are on the {name} plan already.")));
    }
    let billing_url = format!("{}/billing", state.config.public_url);
    // A live subscription changes (or is cancelled) in the portal, where Stripe prorates it.
    if let (Some(customer), Some(_)) = (&customer, subscription.filter(|_| !status.as_deref().is_some_and(ended))) {
        let url = provider.portal(customer, &billing_url).await.map_err(provider_error)?;
        return Ok(PlanChange::Redirect { redirect_url: url });
    }
    if fee == 0 {
        return ledger::change_plan(&state.db, owner, plan_id, ip).await.map(PlanChange::Changed);
    }
    let price = stripe.price_of(plan_id).ok_or_else(|| {
        AppError::validation("plan_id", format!("The {name} plan cannot be bought here yet: the operator has not given it a Stripe price."))
    })?;
    let checkout = Checkout {
        user_id: owner,
        plan_id: plan_id.to_string(),
        price: price.to_string(),
        usage_prices: stripe.usage_prices.clone(),
        customer,
        email,
        success_url: format!("{billing_url}?checkout=done"),
        cancel_url: format!("{billing_url}?checkout=cancelled"),
    };
    let url = provider.checkout(&checkout).await.map_err(provider_error)?;
    Ok(PlanChange::Redirect { redirect_url: url })
}

/// The provider's self-service portal for `owner` (payment methods, invoices, cancelling).
pub async fn portal(state: &AppState, owner: Uuid) -> AppResult<String> {
    let Some(provider) = &state.payments else {
        return Err(AppError::conflict("portal", "Payments are not taken here: your invoices are on the billing page."));
    };
    let customer: Option<String> = sqlx::query_scalar("SELECT stripe_customer_id FROM users WHERE id = $1").bind(owner).fetch_one(&state.db).await?;
    let customer = customer.ok_or_else(|| AppError::conflict("portal", "You have no payment details yet: choose a paid plan first."))?;
    provider.portal(&customer, &format!("{}/billing", state.config.public_url)).await.map_err(provider_error)
}

fn provider_error(e: crate::infra::payments::ProviderError) -> AppError {
    use crate::infra::payments::ProviderError;
    match e {
        ProviderError::Refused(message) => {
            tracing::warn!(%message, "the payment provider refused a request");
            AppError::Conflict { field: None, message: format!("Stripe refused this: {message}") }
        }
        ProviderError::Unavailable(message) => {
            tracing::warn!(%message, "the payment provider could not be reached");
            AppError::Transport { message: "Stripe could not be reached. Try again in a minute.".into() }
        }
    }
}

/// A provider event, decoded: what the webhook hands to `apply`.
#[derive(Debug, Clone)]
pub struct ProviderEvent {
    pub id: String,
    pub kind: String,
    /// When the provider created it: the version of the state it carries.
    pub created: DateTime<Utc>,
    pub change: Change,
}

#[derive(Debug, Clone)]
pub enum Change {
    CheckoutCompleted { user_id: Option<Uuid>, customer: Option<String>, subscription: Option<String> },
    Subscription(SubscriptionState),
    Invoice(InvoiceState, InvoiceEvent),
    /// A kind this platform does not act on.
    Other,
}

#[derive(Debug, Clone)]
pub struct SubscriptionState {
    pub id: String,
    pub customer: String,
    /// `metadata.user_id`, set at checkout (found even before the checkout's own event).
    pub user_id: Option<Uuid>,
    pub status: String,
    pub prices: Vec<String>,
    pub deleted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceEvent {
    Paid,
    PaymentFailed,
    ActionRequired,
    /// Any other change (updated, voided, marked uncollectible): its state is mirrored.
    Updated,
}

#[derive(Debug, Clone)]
pub struct InvoiceState {
    pub id: String,
    pub customer: String,
    /// Its subscription's `metadata.user_id` (an invoice may come before the checkout's event).
    pub user_id: Option<Uuid>,
    pub number: Option<String>,
    /// draft, open, paid, uncollectible or void.
    pub status: String,
    pub total_cents: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub hosted_url: Option<String>,
    pub lines: Vec<super::invoice::Line>,
}

/// What applying an event leaves to do once it is committed.
#[derive(Default)]
struct Effects {
    mail: Vec<mail::Mail>,
    release_payment_hold: Option<Uuid>,
}

/// Applies one event once; answers what it did (for the log and the webhook's reply).
pub async fn apply(state: &AppState, event: ProviderEvent) -> AppResult<String> {
    let mut tx = state.db.begin().await?;
    let fresh: Option<i32> = sqlx::query_scalar(
        "INSERT INTO stripe_events (id, type, created, outcome) VALUES ($1, $2, $3, '') ON CONFLICT (id) DO NOTHING RETURNING 1",
    )
    .bind(&event.id)
    .bind(&event.kind)
    .bind(event.created)
    .fetch_optional(&mut *tx)
    .await?;
    if fresh.is_none() {
        return Ok("already applied".into());
    }
    let mut effects = Effects::default();
    let outcome = match &event.change {
        Change::CheckoutCompleted { user_id, customer, subscription } => checkout_completed(&mut tx, *user_id, customer.as_deref(), subscription.as_deref()).await?,
        Change::Subscription(s) => subscription_changed(state, &mut tx, s, event.created).await?,
        Change::Invoice(inv, kind) => invoice_changed(state, &mut tx, inv, *kind, event.created, &mut effects).await?,
        Change::Other => "not acted on".to_string(),
    };
    sqlx::query("UPDATE stripe_events SET outcome = $2 WHERE id = $1").bind(&event.id).bind(&outcome).execute(&mut *tx).await?;
    tx.commit().await?;
    for m in effects.mail {
        if let Err(e) = mail::send(&state.db, state.mail.as_ref(), m).await {
            tracing::warn!(error = %e, "a billing email could not be queued");
        }
    }
    // Best effort: the leader releases whatever is still held once paid (`enforce_grace`).
    if let Some(owner) = effects.release_payment_hold {
        if let Err(e) = holds::release(state, owner, Hold::Payment).await {
            tracing::warn!(%owner, error = %e, "starting services again after a payment failed; the leader retries");
        }
    }
    Ok(outcome)
}

async fn checkout_completed(tx: &mut PgConnection, user_id: Option<Uuid>, customer: Option<&str>, subscription: Option<&str>) -> AppResult<String> {
    let (Some(user_id), Some(customer)) = (user_id, customer) else {
        return Ok("ignored: no account or customer on the session".into());
    };
    if let Some(other) = linked_elsewhere(tx, customer, user_id).await? {
        return Ok(other);
    }
    let linked = sqlx::query(
        "UPDATE users SET stripe_customer_id = $2, stripe_subscription_id = coalesce(stripe_subscription_id, $3) WHERE id = $1",
    )
    .bind(user_id)
    .bind(customer)
    .bind(subscription)
    .execute(&mut *tx)
    .await?;
    Ok(if linked.rows_affected() == 1 { format!("linked customer {customer}") } else { "ignored: no such account".into() })
}

/// A customer belongs to one account: an event linking it to another is refused (and logged),
/// not retried by Stripe forever.
async fn linked_elsewhere(tx: &mut PgConnection, customer: &str, owner: Uuid) -> AppResult<Option<String>> {
    let other: Option<Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE stripe_customer_id = $1 AND id <> $2").bind(customer).bind(owner).fetch_optional(&mut *tx).await?;
    Ok(other.map(|other| {
        tracing::error!(%customer, %owner, %other, "a Stripe customer would be linked to a second account; ignored");
        "ignored: the customer belongs to another account".to_string()
    }))
}

/// An object whose metadata names another account than its customer's: refused, logged.
fn mismatch(customer: &str, owner: Uuid, named: Option<Uuid>) -> String {
    tracing::error!(%customer, %owner, ?named, "a Stripe object names another account than its customer's; ignored");
    "ignored: the customer belongs to another account".to_string()
}

/// How settled a subscription status is: of two events of the same second, the more settled
/// one wins (an `active` never follows a `canceled` of the same second).
fn rank(status: &str) -> u8 {
    match status {
        "incomplete" => 0,
        "canceled" | "incomplete_expired" => 3,
        "unpaid" | "past_due" => 2,
        _ => 1,
    }
}

async fn subscription_changed(state: &AppState, tx: &mut PgConnection, s: &SubscriptionState, at: DateTime<Utc>) -> AppResult<String> {
    let row: Option<(Uuid, String, Option<String>, Option<DateTime<Utc>>, Option<String>)> = sqlx::query_as(
        "SELECT id, plan_id, stripe_subscription_id, subscription_synced_at, subscription_status FROM users
         WHERE stripe_customer_id = $1 OR (stripe_customer_id IS NULL AND id = $2) ORDER BY stripe_customer_id NULLS LAST LIMIT 1 FOR UPDATE",
    )
    .bind(&s.customer)
    .bind(s.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((owner, current, known, synced, held_status)) = row else { return Ok("ignored: no account for this customer".into()) };
    if s.user_id.is_some_and(|u| u != owner) {
        return Ok(mismatch(&s.customer, owner, s.user_id));
    }
    let status = if s.deleted { "canceled" } else { s.status.as_str() };
    let same_subscription = known.as_deref() == Some(s.id.as_str());
    if synced.is_some_and(|synced| synced > at || (synced == at && same_subscription && rank(status) < rank(held_status.as_deref().unwrap_or("")))) {
        return Ok("ignored: older than the state we have".into());
    }
    if let Some(other) = linked_elsewhere(tx, &s.customer, owner).await? {
        return Ok(other);
    }
    // The end of a subscription the account has since replaced changes nothing.
    if known.as_deref().is_some_and(|k| k != s.id) && (s.deleted || ended(&s.status)) {
        return Ok("ignored: an earlier subscription".into());
    }
    let stripe = state.config.stripe.as_ref();
    let plan = if s.deleted || ended(&s.status) {
        "free".to_string()
    } else {
        match s.prices.iter().find_map(|p| stripe.and_then(|c| c.plan_of(p))) {
            Some(plan) => plan.to_string(),
            // Another product sold on the same Stripe account: not a Roundhouse plan.
            None => {
                tracing::warn!(subscription = %s.id, prices = ?s.prices, "a subscription with no plan price in STRIPE_PLAN_PRICES; ignored");
                return Ok("ignored: no Roundhouse plan price".into());
            }
        }
    };
    sqlx::query(
        "UPDATE users SET stripe_customer_id = $2, stripe_subscription_id = $3, subscription_status = $4, subscription_synced_at = $5,
                          plan_id = $6, updated_at = now() WHERE id = $1",
    )
    .bind(owner)
    .bind(&s.customer)
    .bind(&s.id)
    .bind(status)
    .bind(at)
    .bind(&plan)
    .execute(&mut *tx)
    .await?;
    if plan != current {
        sqlx::query("INSERT INTO plan_changes (user_id, from_plan, to_plan) VALUES ($1, $2, $3)").bind(owner).bind(&current).bind(&plan).execute(&mut *tx).await?;
        audit::record(&mut *tx, Some(owner), "plan.change", &format!("user:{owner}"), serde_json::json!({ "from": current, "to": plan, "via": "stripe", "subscription": s.id }), "stripe").await?;
        return Ok(format!("plan {current} → {plan}"));
    }
    Ok(format!("subscription {}", s.status))
}

async fn invoice_changed(
    state: &AppState,
    tx: &mut PgConnection,
    inv: &InvoiceState,
    kind: InvoiceEvent,
    at: DateTime<Utc>,
    effects: &mut Effects,
) -> AppResult<String> {
    let row: Option<(Uuid, String, Option<DateTime<Utc>>, bool, Option<String>)> = sqlx::query_as(
        "SELECT id, email, past_due_since, payment_stopped_at IS NOT NULL, stripe_customer_id FROM users
         WHERE stripe_customer_id = $1 OR (stripe_customer_id IS NULL AND id = $2) ORDER BY stripe_customer_id NULLS LAST LIMIT 1 FOR UPDATE",
    )
    .bind(&inv.customer)
    .bind(inv.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((owner, email, was_past_due, was_held, linked)) = row else { return Ok("ignored: no account for this customer".into()) };
    if inv.user_id.is_some_and(|u| u != owner) {
        return Ok(mismatch(&inv.customer, owner, inv.user_id));
    }
    if linked.is_none() {
        if let Some(other) = linked_elsewhere(tx, &inv.customer, owner).await? {
            return Ok(other);
        }
        sqlx::query("UPDATE users SET stripe_customer_id = $2 WHERE id = $1").bind(owner).bind(&inv.customer).execute(&mut *tx).await?;
    }
    // Written off (uncollectible) is settled as far as services go: no longer chased.
    let status = match inv.status.as_str() {
        "paid" => "paid",
        "void" | "uncollectible" => "void",
        _ => "open",
    };
    let id: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO invoices (user_id, number, period_start, period_end, status, total_cents, paid_at, stripe_invoice_id, hosted_url, synced_at, failed_at)
         VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $5 = 'paid' THEN $9 END, $7, $8, $9, CASE WHEN $10 THEN $9 END)
         ON CONFLICT (stripe_invoice_id) DO UPDATE SET
             number = EXCLUDED.number, status = EXCLUDED.status, total_cents = EXCLUDED.total_cents,
             paid_at = coalesce(invoices.paid_at, EXCLUDED.paid_at), hosted_url = coalesce(EXCLUDED.hosted_url, invoices.hosted_url),
             synced_at = EXCLUDED.synced_at, failed_at = coalesce(invoices.failed_at, EXCLUDED.failed_at)
           -- paid and void are final: a late event never reopens them
           WHERE invoices.synced_at <= EXCLUDED.synced_at AND invoices.status = 'open'
         RETURNING id",
    )
    .bind(owner)
    .bind(inv.number.clone().unwrap_or_else(|| inv.id.clone()))
    .bind(inv.period_start)
    .bind(inv.period_end)
    .bind(status)
    .bind(inv.total_cents)
    .bind(&inv.id)
    .bind(&inv.hosted_url)
    .bind(at)
    .bind(kind == InvoiceEvent::PaymentFailed)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else { return Ok("ignored: older than the invoice we have, or it is settled".into()) };
    ledger::write_lines(&mut *tx, id, &inv.lines).await?;
    // Past due while any of the account's Stripe invoices is open with a failed payment.
    let past_due: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE users SET past_due_since = (SELECT min(failed_at) FROM invoices WHERE user_id = $1 AND stripe_invoice_id IS NOT NULL AND status = 'open')
         WHERE id = $1 RETURNING past_due_since",
    )
    .bind(owner)
    .fetch_one(&mut *tx)
    .await?;
    let billing_url = format!("{}/billing", state.config.public_url);
    let pay_at = inv.hosted_url.clone().unwrap_or_else(|| billing_url.clone());
    let number = inv.number.clone().unwrap_or_else(|| inv.id.clone());
    match kind {
        InvoiceEvent::PaymentFailed if was_past_due.is_none() && past_due.is_some() => {
            let stop_on = past_due.unwrap_or(at) + Duration::days(state.config.billing_grace_days.into());
            effects.mail.push(mail::Mail {
                to: email,
                subject: "Your Roundhouse payment failed".into(),
                body: format!(
                    "The payment of invoice {number} ({}) failed. Your services keep running until {}; if it is still unpaid then, they stop until it is paid.\n\nPay it or change your card: {pay_at}\n",
                    super::money::dollars(inv.total_cents),
                    stop_on.format("%B %-d, %Y %H:%M UTC"),
                ),
            });
        }
        InvoiceEvent::ActionRequired => effects.mail.push(mail::Mail {
            to: email,
            subject: "Your Roundhouse payment needs you".into(),
            body: format!("Your bank asks you to confirm the payment of invoice {number} ({}). Confirm it here: {pay_at}\n", super::money::dollars(inv.total_cents)),
        }),
        InvoiceEvent::Paid if past_due.is_none() && was_held => {
            effects.release_payment_hold = Some(owner);
            effects.mail.push(mail::Mail {
                to: email,
                subject: "Your Roundhouse services are starting again".into(),
                body: format!("Thank you: invoice {number} is paid, and your services are starting again.\n\n{billing_url}\n"),
            });
        }
        _ => {}
    }
    Ok(format!("invoice {number} {status}"))
}

/// Stops the services of accounts whose failed payment outlived the grace period, and starts
/// again those of accounts held for a payment that is no longer overdue (level-triggered, so a
/// release lost to a crash or a race happens on the next round). The leader, every 20 s;
/// answers how many accounts it stopped now.
pub async fn enforce_grace(state: &AppState, now: DateTime<Utc>) -> AppResult<usize> {
    let settled: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE payment_stopped_at IS NOT NULL AND past_due_since IS NULL")
        .fetch_all(&state.db)
        .await?;
    for owner in settled {
        holds::release(state, owner, Hold::Payment).await?;
    }
    let grace = Duration::days(state.config.billing_grace_days.into());
    // Taken in one statement, so an `invoice.paid` in between is seen by the release above.
    let due: Vec<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
        "UPDATE users SET payment_stopped_at = now() WHERE past_due_since <= $1 AND payment_stopped_at IS NULL
         RETURNING id, email, past_due_since",
    )
    .bind(now - grace)
    .fetch_all(&state.db)
    .await?;
    let billing_url = format!("{}/billing", state.config.public_url);
    for (owner, email, since) in &due {
        let reason = format!(
            "Stopped: a payment has been overdue since {}. Pay the open invoice (Manage billing on the billing page) to start again.",
            since.format("%B %-d, %Y")
        );
        let stopped = holds::stop_all(&state.db, *owner, Hold::Payment, &reason).await?;
        let m = mail::Mail {
            to: email.clone(),
            subject: "Your Roundhouse services are stopped: payment overdue".into(),
            body: format!("A payment has been overdue since {}. {stopped} deployment(s) were stopped and nothing deploys until it is paid.\n\nPay it: {billing_url}\n", since.format("%B %-d, %Y")),
        };
        if let Err(e) = mail::send(&state.db, state.mail.as_ref(), m).await {
            tracing::warn!(error = %e, "a billing email could not be queued");
        }
    }
    Ok(due.len())
}

pub async fn status(state: &AppState, owner: Uuid) -> AppResult<PaymentStatus> {
    let (customer, sub, past_due, stopped): (Option<String>, Option<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT stripe_customer_id, subscription_status, past_due_since, payment_stopped_at FROM users WHERE id = $1",
    )
    .bind(owner)
    .fetch_one(&state.db)
    .await?;
    Ok(PaymentStatus {
        provider: state.payments.is_some(),
        has_customer: customer.is_some(),
        subscription_status: sub,
        past_due_since: past_due,
        stops_at: past_due.map(|d| d + Duration::days(state.config.billing_grace_days.into())),
        stopped_at: stopped,
    })
}
