//! Usage reported to the payment provider as meter events (Stripe Billing Meters): one event
//! per account, resource and hour once the hour is over, in whole units of the meter, with the
//! identifier `customer:resource:hour-start` so that a retry — after a crash, a 429, a second
//! replica — is counted once by Stripe, and a `meter_reports` row so it is not sent again.

use super::money::{Period, Resource};
use crate::{
    error::AppResult,
    infra::{payments::MeterEvent, AppState},
};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// Stripe takes events up to 35 days old; this stays well inside.
const LOOKBACK_DAYS: i64 = 33;
/// Records of a minute may arrive a little after it (egress is flushed every minute).
const SETTLE: Duration = Duration::minutes(5);
/// Events sent per round at most.
const BATCH: i64 = 500;

/// How many of the resource's recorded units make one unit of its meter: vCPU-minutes from
/// millicore-minutes, GB-minutes from MiB-minutes, MB from bytes.
pub fn divisor(resource: Resource) -> i64 {
    match resource {
        Resource::Cpu => 1_000,
        Resource::Memory | Resource::Volume => 1_024,
        Resource::Egress => 1_000_000,
    }
}

/// The whole units to report for an hour that used `during`, after `before` earlier in the
/// period: what the period's whole units grew by, so fractions carry over and the hours of a
/// period add up to its total exactly.
pub fn units_in_hour(before: i64, during: i64, divisor: i64) -> i64 {
    (before + during) / divisor - before / divisor
}

pub fn identifier(customer: &str, resource: Resource, hour: DateTime<Utc>) -> String {
    format!("{customer}:{}:{}", resource.as_str(), hour.timestamp())
}

/// Reports every finished hour not reported yet; answers how many events were sent. Stops at
/// the first failure (the provider retries 429s and errors with back-off first), to go on
/// from there next time.
pub async fn report_due(state: &AppState, now: DateTime<Utc>) -> AppResult<usize> {
    let (Some(provider), Some(stripe)) = (&state.payments, &state.config.stripe) else { return Ok(0) };
    let db = &state.db;
    let due: Vec<(Uuid, String, String, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT r.owner_id, u.stripe_customer_id, r.resource, date_trunc('hour', r.minute) AS hour, sum(r.quantity)::bigint
         FROM usage_records r JOIN users u ON u.id = r.owner_id
         WHERE u.stripe_customer_id IS NOT NULL AND r.minute >= $1 AND r.minute < date_trunc('hour', $2::timestamptz)
           AND NOT EXISTS (SELECT 1 FROM meter_reports m WHERE m.owner_id = r.owner_id AND m.resource = r.resource AND m.hour = date_trunc('hour', r.minute))
         GROUP BY 1, 2, 3, 4 ORDER BY 4, 1, 3 LIMIT $3",
    )
    .bind(now - Duration::days(LOOKBACK_DAYS))
    .bind(now - SETTLE)
    .bind(BATCH)
    .fetch_all(db)
    .await?;
    let mut sent = 0;
    for (owner, customer, resource, hour, during) in due {
        let Some(res) = Resource::parse(&resource) else { continue };
        let period = Period::containing(hour);
        let before: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(quantity), 0)::bigint FROM usage_records WHERE owner_id = $1 AND resource = $2 AND minute >= $3 AND minute < $4",
        )
        .bind(owner)
        .bind(&resource)
        .bind(period.start)
        .bind(hour)
        .fetch_one(db)
        .await?;
        let value = units_in_hour(before, during, divisor(res));
        let identifier = identifier(&customer, res, hour);
        if value > 0 {
            let event = MeterEvent {
                event_name: format!("{}{}", stripe.meter_prefix, res.as_str()),
                customer: customer.clone(),
                value,
                timestamp: hour.timestamp(),
                identifier: identifier.clone(),
            };
            if let Err(e) = provider.meter_event(&event).await {
                tracing::warn!(error = %e, %identifier, "reporting usage to Stripe failed; it is retried next round");
                break;
            }
            sent += 1;
        }
        sqlx::query("INSERT INTO meter_reports (owner_id, resource, hour, quantity, identifier) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
            .bind(owner)
            .bind(&resource)
            .bind(hour)
            .bind(value)
            .bind(&identifier)
            .execute(db)
            .await?;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fractions_carry_over_to_the_next_hour() {
        // 0.6 vCPU-minutes an hour: nothing, then 1 (1.2), then 0 (1.8), then 1 (2.4).
        let mut before = 0;
        let sent: Vec<i64> = (0..4).map(|_| { let u = units_in_hour(before, 600, 1_000); before += 600; u }).collect();
        assert_eq!(sent, vec![0, 1, 0, 1]);
    }

    #[test]
    fn the_identifier_names_customer_resource_and_hour() {
        let hour = DateTime::parse_from_rfc3339("2026-11-29T18:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(identifier("cus_123", Resource::Egress, hour), "cus_123:egress:1795975200");
    }

    proptest! {
        /// However a period's usage falls into hours, the units reported add up to the
        /// period's whole units, and none is negative.
        #[test]
        fn hours_add_up_to_the_period(hours in proptest::collection::vec(0i64..5_000_000, 0..200), d in prop_oneof![Just(1_000i64), Just(1_024), Just(1_000_000)]) {
            let mut before = 0;
            let mut total = 0;
            for during in &hours {
                let u = units_in_hour(before, *during, d);
                prop_assert!(u >= 0);
                total += u;
                before += during;
            }
            prop_assert_eq!(total, hours.iter().sum::<i64>() / d);
        }
    }
}
