//! Stripe, through async-stripe 1.0 (pinned rc: 0.39 has no Billing Meter Events): the payment
//! provider behind `app::infra::payments` — hosted checkout, the billing portal and meter
//! events — and the webhook that turns Stripe's events into billing changes (`webhook.rs`).
//! Switched on by `STRIPE_SECRET_KEY`; `STRIPE_API_BASE` points it elsewhere (tests: a fake).

pub mod webhook;

use app::infra::{
    config::StripeConfig,
    mail::BoxFuture,
    payments::{Checkout, MeterEvent, PaymentProvider, ProviderError},
};
use secrecy::ExposeSecret;
use std::{collections::HashMap, time::Duration};
use ::stripe::{Client, ClientBuilder, RequestStrategy, StripeError};
use stripe_billing::{billing_meter_event::CreateBillingMeterEvent, billing_portal_session::CreateBillingPortalSession};
use stripe_checkout::checkout_session::{CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData};

pub struct StripeProvider {
    client: Client,
}

impl StripeProvider {
    pub fn new(config: &StripeConfig) -> anyhow::Result<Self> {
        let mut builder = ClientBuilder::new(config.secret_key.expose_secret())
            // 429s and Stripe's own errors are retried with back-off (1 s, 2 s, 4 s).
            .request_strategy(RequestStrategy::ExponentialBackoff(4))
            .timeout(Duration::from_secs(20));
        if let Some(base) = &config.api_base {
            builder = builder.url(base.trim_end_matches('/').to_string() + "/");
        }
        Ok(StripeProvider { client: builder.build().map_err(|e| anyhow::anyhow!("configuring the Stripe client: {e}"))? })
    }
}

fn provider_error(e: StripeError) -> ProviderError {
    match e {
        // The platform's own key or configuration (a wrong key, an unknown price): the detail is
        // for the operator's log, not for the user.
        StripeError::Stripe(err, status) if matches!(status, 401 | 403 | 404) || err.param.as_deref().is_some_and(|p| p.contains("price")) => {
            tracing::error!(status, message = err.message.as_deref().unwrap_or(""), "Stripe refused the platform's request: check STRIPE_SECRET_KEY and the price ids");
            ProviderError::Refused("payments are misconfigured on this platform; the operator has been told".into())
        }
        StripeError::Stripe(err, status) if (400..500).contains(&status) && status != 429 => {
            ProviderError::Refused(err.message.clone().unwrap_or_else(|| format!("status {status}")))
        }
        other => ProviderError::Unavailable(other.to_string()),
    }
}

impl PaymentProvider for StripeProvider {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn checkout<'a>(&'a self, c: &'a Checkout) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(async move {
            let mut items = vec![{
                let mut item = CreateCheckoutSessionLineItems::new();
                item.price = Some(c.price.clone());
                item.quantity = Some(1);
                item
            }];
            for price in &c.usage_prices {
                let mut item = CreateCheckoutSessionLineItems::new();
                item.price = Some(price.clone());
                items.push(item);
            }
            let metadata = HashMap::from([("user_id".to_string(), c.user_id.to_string()), ("plan_id".to_string(), c.plan_id.clone())]);
            let mut subscription = CreateCheckoutSessionSubscriptionData::new();
            subscription.metadata = Some(metadata.clone());
            let mut req = CreateCheckoutSession::new()
                .mode(stripe_shared::CheckoutSessionMode::Subscription)
                .line_items(items)
                .client_reference_id(c.user_id.to_string())
                .metadata(metadata)
                .subscription_data(subscription)
                .success_url(&c.success_url)
                .cancel_url(&c.cancel_url);
            req = match &c.customer {
                Some(customer) => req.customer(customer),
                None => req.customer_email(&c.email),
            };
            let session = req.send(&self.client).await.map_err(provider_error)?;
            session.url.ok_or_else(|| ProviderError::Unavailable("Stripe answered a checkout session without a URL".into()))
        })
    }

    fn portal<'a>(&'a self, customer: &'a str, return_url: &'a str) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(async move {
            let session = CreateBillingPortalSession::new().customer(customer).return_url(return_url).send(&self.client).await.map_err(provider_error)?;
            Ok(session.url)
        })
    }

    fn meter_event<'a>(&'a self, e: &'a MeterEvent) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let payload = HashMap::from([("stripe_customer_id".to_string(), e.customer.clone()), ("value".to_string(), e.value.to_string())]);
            CreateBillingMeterEvent::new(&e.event_name, payload)
                .identifier(&e.identifier)
                .timestamp(e.timestamp)
                .send(&self.client)
                .await
                .map_err(provider_error)?;
            Ok(())
        })
    }
}
