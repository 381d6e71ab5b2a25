//! Usage reported to the payment provider as meter events (Stripe Billing Meters): one event
//! per account, resource and hour once the hour is over, in whole units of the meter, with the
//! identifier `customer:resource:hour-start` so that a retry — after a crash, a 429, a second
//! replica — is counted once by Stripe, and a `meter_reports` row so it is not sent again.

use super::money::{Period, Resource};
use crate::{
    error::AppResult,
    infra::{
        payments::{MeterEvent, ProviderError},
        AppState,
    },
};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// Stripe takes events up to 35 days old; this stays well inside.
const LOOKBACK_DAYS: i64 = 33;
/// Records of a minute may arrive after it: egress is flushed every minute, and the runtime's
/// samples become records up to an hour later (after a leader change).
const SETTLE: Duration = Duration::minutes(70);
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

/// Reports every settled hour not reported yet; answers how many events were sent. An event
/// Stripe refuses for good (a 4xx: no such meter, a bad customer) is recorded with the error
/// and not sent again; on any other failure (Stripe unreachable after the client's back-off)
/// the round stops, to go on from there next time.
pub async fn report_due(state: &AppState, now: DateTime<Utc>) -> AppResult<usize> {
    let (Some(provider), Some(stripe)) = (&state.payments, &state.config.stripe) else { return Ok(0) };
    let db = &state.db;
    let due: Vec<(Uuid, String, String, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT r.owner_id, u.stripe_customer_id, r.resource, date_trunc('hour', r.minute, 'UTC') AS hour, sum(r.quantity)::bigint
         FROM usage_records r JOIN users u ON u.id = r.owner_id
         WHERE u.stripe_customer_id IS NOT NULL AND r.minute >= $1 AND r.minute < date_trunc('hour', $2::timestamptz, 'UTC')
           AND NOT EXISTS (SELECT 1 FROM meter_reports m WHERE m.owner_id = r.owner_id AND m.resource = r.resource AND m.hour = date_trunc('hour', r.minute, 'UTC'))
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
        let mut error = None;
        if value > 0 {
            let event = MeterEvent {
                event_name: format!("{}{}", stripe.meter_prefix, res.as_str()),
                customer: customer.clone(),
                value,
                timestamp: hour.timestamp(),
                identifier: identifier.clone(),
            };
            match provider.meter_event(&event).await {
                Ok(()) => sent += 1,
                Err(ProviderError::Refused(why)) => {
                    tracing::error!(error = %why, %identifier, "Stripe refused a usage report; it is recorded and not sent again");
                    error = Some(why);
                }
                Err(e) => {
                    tracing::warn!(error = %e, %identifier, "reporting usage to Stripe failed; it is retried next round");
                    break;
                }
            }
        }
        sqlx::query("INSERT INTO meter_reports (owner_id, resource, hour, quantity, identifier, error) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")
            .bind(owner)
            .bind(&resource)
            .bind(hour)
            .bind(value)
            .bind(&identifier)
            .bind(error)
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
