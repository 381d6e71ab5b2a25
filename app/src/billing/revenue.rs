//! The admins' view of revenue: monthly recurring revenue (the plan fees of the accounts on a
//! paid plan, as they stood at each month's end), the plan mix, churn (accounts that left a paid
//! plan for a free one, against the paying accounts at the month's start), and what was invoiced
//! and paid per month. Plans held in the past are rebuilt from `plan_changes`.

use super::{Customer, PlanShare, Revenue, RevenueMonth};
use crate::error::AppResult;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use sqlx::PgPool;

/// How many months the charts go back (the current one included).
const MONTHS: i64 = 6;

fn month_start(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0).single().unwrap_or(t)
}

/// Per-month churn in tenths of a percent: churned / paying at the start, 0 when none paid.
pub fn churn_permille(churned: i64, paying_at_start: i64) -> i64 {
    if paying_at_start <= 0 {
        return 0;
    }
    (churned * 1000 + paying_at_start / 2) / paying_at_start
}

pub async fn report(db: &PgPool, now: DateTime<Utc>) -> AppResult<Revenue> {
    // One month more than shown: the paying accounts at the first shown month's start.
    let from = month_start(now) - chrono::Months::new(MONTHS as u32);
    let series: Vec<(DateTime<Utc>, i64, i64)> = sqlx::query_as(
        "WITH months AS (SELECT m FROM generate_series($1::timestamptz, date_trunc('month', $2::timestamptz, 'UTC'), interval '1 month') AS m),
              ends AS (SELECT m, least(m + interval '1 month', $2) AS t FROM months),
              held AS (
                SELECT e.m, u.id, coalesce(
                    (SELECT c.to_plan FROM plan_changes c WHERE c.user_id = u.id AND c.at < e.t ORDER BY c.at DESC, c.id DESC LIMIT 1),
                    (SELECT c.from_plan FROM plan_changes c WHERE c.user_id = u.id AND c.at >= e.t ORDER BY c.at, c.id LIMIT 1),
                    u.plan_id) AS plan_id
                FROM ends e JOIN users u ON u.created_at < e.t)
         SELECT m.m, coalesce(sum(p.monthly_fee_cents) FILTER (WHERE p.monthly_fee_cents > 0), 0)::bigint,
                count(h.id) FILTER (WHERE p.monthly_fee_cents > 0)
         FROM months m LEFT JOIN held h ON h.m = m.m LEFT JOIN plans p ON p.id = h.plan_id
         GROUP BY m.m ORDER BY m.m",
    )
    .bind(from)
    .bind(now)
    .fetch_all(db)
    .await?;
    let churn: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT date_trunc('month', c.at, 'UTC'), count(DISTINCT c.user_id) FROM plan_changes c
         JOIN plans f ON f.id = c.from_plan JOIN plans t ON t.id = c.to_plan
         WHERE f.monthly_fee_cents > 0 AND t.monthly_fee_cents = 0 AND c.at >= $1 GROUP BY 1",
    )
    .bind(from)
    .fetch_all(db)
    .await?;
    let invoiced: Vec<(DateTime<Utc>, i64, i64)> = sqlx::query_as(
        "SELECT date_trunc('month', period_start, 'UTC'), coalesce(sum(total_cents), 0)::bigint,
                coalesce(sum(total_cents) FILTER (WHERE status = 'paid'), 0)::bigint
         FROM invoices WHERE status <> 'void' AND period_start >= $1 GROUP BY 1",
    )
    .bind(from)
    .fetch_all(db)
    .await?;
    let mut months = Vec::new();
    for pair in series.windows(2) {
        let ((_, _, paying_before), (m, mrr, paying)) = (pair[0], pair[1]);
        let churned = churn.iter().find(|c| c.0 == m).map_or(0, |c| c.1);
        let (inv, paid) = invoiced.iter().find(|i| i.0 == m).map_or((0, 0), |i| (i.1, i.2));
        months.push(RevenueMonth {
            month: m,
            mrr_cents: mrr,
            paying_accounts: paying,
            churned,
            churn_permille: churn_permille(churned, paying_before),
            invoiced_cents: inv,
            paid_cents: paid,
        });
    }
    let plan_mix: Vec<PlanShare> = sqlx::query_as::<_, (String, i64, i64)>(
        "SELECT p.name, count(u.id), coalesce(sum(p.monthly_fee_cents) FILTER (WHERE u.id IS NOT NULL), 0)::bigint FROM plans p LEFT JOIN users u ON u.plan_id = p.id
         GROUP BY p.id, p.name, p.sort_order ORDER BY p.sort_order",
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|(plan, accounts, mrr_cents)| PlanShare { plan, accounts, mrr_cents })
    .collect();
    let customers: Vec<Customer> = sqlx::query_as(
        "SELECT u.email, p.name AS plan, p.monthly_fee_cents::bigint AS monthly_fee_cents,
                (SELECT max(c.at) FROM plan_changes c WHERE c.user_id = u.id) AS since,
                u.stripe_customer_id, u.subscription_status, u.past_due_since
         FROM users u JOIN plans p ON p.id = u.plan_id
         WHERE p.monthly_fee_cents > 0 OR u.stripe_customer_id IS NOT NULL
         ORDER BY p.monthly_fee_cents DESC, u.email LIMIT 200",
    )
    .fetch_all(db)
    .await?;
    let accounts = plan_mix.iter().map(|p| p.accounts).sum();
    let now_month = months.last().cloned();
    Ok(Revenue {
        mrr_cents: plan_mix.iter().map(|p| p.mrr_cents).sum(),
        paying_accounts: now_month.as_ref().map_or(0, |m| m.paying_accounts),
        accounts,
        plan_mix,
        months,
        customers,
    })
}

#[cfg(test)]
mod tests {
    use super::churn_permille;

    #[test]
    fn churn_is_against_the_paying_accounts_at_the_start_rounded_half_up() {
        assert_eq!(churn_permille(1, 3), 333);
        assert_eq!(churn_permille(2, 3), 667);
        assert_eq!(churn_permille(0, 10), 0);
        assert_eq!(churn_permille(1, 0), 0, "no paying accounts: nothing to churn from");
    }
}
