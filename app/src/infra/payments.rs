//! The payment provider billing talks to when one is configured (Stripe: server/src/stripe).
//! Without one, the local ledger bills and nothing here is used. Like the mail transport, it is
//! a trait on the app state so tests swap the implementation, not the code path.

use super::mail::BoxFuture;
use uuid::Uuid;

/// A hosted checkout for a subscription to a plan.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub user_id: Uuid,
    pub plan_id: String,
    /// The plan's recurring price.
    pub price: String,
    /// Metered prices subscribed alongside it.
    pub usage_prices: Vec<String>,
    /// The provider's customer, when the account has one already.
    pub customer: Option<String>,
    pub email: String,
    pub success_url: String,
    pub cancel_url: String,
}

/// Usage of one customer, resource and hour, in whole units of the meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterEvent {
    pub event_name: String,
    pub customer: String,
    pub value: i64,
    /// Unix seconds: the hour's start.
    pub timestamp: i64,
    /// Makes a retry count once: `customer:resource:hour-start`.
    pub identifier: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the request (what it said, safe to show to the user).
    #[error("{0}")]
    Refused(String),
    /// It could not be reached, or failed on its side; worth retrying later.
    #[error("{0}")]
    Unavailable(String),
}

pub trait PaymentProvider: Send + Sync {
    /// A short name for logs ("stripe").
    fn name(&self) -> &'static str;
    /// The URL of a hosted checkout page for `checkout`.
    fn checkout<'a>(&'a self, checkout: &'a Checkout) -> BoxFuture<'a, Result<String, ProviderError>>;
    /// The URL of the customer's self-service portal (payment methods, invoices, cancelling).
    fn portal<'a>(&'a self, customer: &'a str, return_url: &'a str) -> BoxFuture<'a, Result<String, ProviderError>>;
    /// Reports usage; sending the same identifier twice counts once.
    fn meter_event<'a>(&'a self, event: &'a MeterEvent) -> BoxFuture<'a, Result<(), ProviderError>>;
}
