//! `POST /webhooks/stripe`: Stripe's events, their signature checked by
//! `stripe_webhook::Webhook::construct_event` (HMAC-SHA256 over `t.payload`, 300 s tolerance).
//! A bad signature, a stale one or a body that is not an event gets 400 and changes nothing;
//! a good one is decoded here and applied once by `app::billing::subscription::apply`.

use app::{
    billing::{
        invoice::Line,
        subscription::{self, Change, InvoiceEvent, InvoiceState, ProviderEvent, SubscriptionState},
    },
    infra::AppState,
};
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use stripe_webhook::{EventObject, Webhook};

fn at(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap_or_default()
}

fn refuse(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": { "code": "bad_request", "message": message } }))).into_response()
}

pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: String) -> Response {
    let Some(stripe) = &state.config.stripe else {
        return (StatusCode::NOT_FOUND, "Stripe is not configured here").into_response();
    };
    let Some(signature) = headers.get("stripe-signature").and_then(|v| v.to_str().ok()) else {
        return refuse("The Stripe-Signature header is missing.");
    };
    let event = match Webhook::construct_event(&body, signature, stripe.webhook_secret.expose_secret()) {
        Ok(event) => event,
        Err(e) => {
            // A good signature on a body that does not decode is most likely an endpoint set to
            // another API version than async-stripe's: say so loudly.
            if matches!(e, stripe_webhook::WebhookError::BadParse(_)) {
                tracing::error!(error = %e, api_version = %stripe_shared::ApiVersion::V2026_09_30_endive, "a signed Stripe event could not be decoded: set the webhook endpoint's API version to the one named here");
            } else {
                tracing::warn!(error = %e, "a Stripe webhook was refused");
            }
            return refuse(&format!("Not a valid Stripe event: {e}"));
        }
    };
    let event = ProviderEvent { id: event.id.to_string(), kind: event.type_.to_string(), created: at(event.created), change: decode(event.data.object) };
    let (id, kind) = (event.id.clone(), event.kind.clone());
    match subscription::apply(&state, event).await {
        Ok(outcome) => {
            tracing::info!(event = %id, kind = %kind, %outcome, "Stripe event");
            Json(serde_json::json!({ "received": true, "outcome": outcome })).into_response()
        }
        // Stripe retries what fails, with back-off, for days.
        Err(e) => {
            tracing::error!(event = %id, kind = %kind, error = %e, "applying a Stripe event failed");
            e.into_response()
        }
    }
}

fn decode(object: EventObject) -> Change {
    match object {
        EventObject::CheckoutSessionCompleted(s) => Change::CheckoutCompleted {
            user_id: s.client_reference_id.as_deref().and_then(|u| u.parse().ok()),
            customer: s.customer.as_ref().map(|c| c.id().to_string()),
            subscription: s.subscription.as_ref().map(|c| c.id().to_string()),
        },
        EventObject::CustomerSubscriptionCreated(s) => Change::Subscription(subscription_state(&s, false)),
        EventObject::CustomerSubscriptionUpdated(s) => Change::Subscription(subscription_state(&s, false)),
        EventObject::CustomerSubscriptionDeleted(s) => Change::Subscription(subscription_state(&s, true)),
        EventObject::InvoicePaid(i) => invoice(&i, InvoiceEvent::Paid),
        EventObject::InvoicePaymentFailed(i) => invoice(&i, InvoiceEvent::PaymentFailed),
        EventObject::InvoicePaymentActionRequired(i) => invoice(&i, InvoiceEvent::ActionRequired),
        EventObject::InvoiceUpdated(i) | EventObject::InvoiceVoided(i) | EventObject::InvoiceMarkedUncollectible(i) => invoice(&i, InvoiceEvent::Updated),
        _ => Change::Other,
    }
}

fn subscription_state(s: &stripe_shared::Subscription, deleted: bool) -> SubscriptionState {
    SubscriptionState {
        id: s.id.to_string(),
        customer: s.customer.id().to_string(),
        user_id: s.metadata.get("user_id").and_then(|u| u.parse().ok()),
        status: s.status.as_str().to_string(),
        prices: s.items.data.iter().map(|i| i.price.id.to_string()).collect(),
        deleted,
    }
}

fn invoice(i: &stripe_shared::Invoice, kind: InvoiceEvent) -> Change {
    let (Some(id), Some(customer)) = (&i.id, &i.customer) else { return Change::Other };
    Change::Invoice(
        InvoiceState {
            id: id.to_string(),
            customer: customer.id().to_string(),
            user_id: i
                .parent
                .as_ref()
                .and_then(|p| p.subscription_details.as_ref())
                .and_then(|d| d.metadata.as_ref())
                .and_then(|m| m.get("user_id"))
                .and_then(|u| u.parse().ok()),
            number: i.number.clone(),
            status: i.status.as_ref().map(|s| s.as_str().to_string()).unwrap_or_else(|| "open".into()),
            total_cents: i.total,
            period_start: at(i.period_start),
            period_end: at(i.period_end),
            // Shown as a link: only Stripe's own https pages.
            hosted_url: i.hosted_invoice_url.clone().filter(|u| u.starts_with("https://")),
            lines: i.lines.data.iter().map(|l| Line { description: l.description.clone().unwrap_or_else(|| "Usage".into()), amount_cents: l.amount }).collect(),
        },
        kind,
    )
}
