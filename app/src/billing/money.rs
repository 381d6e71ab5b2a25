//! The money maths of billing, in integers only: usage quantities in whole units per minute,
//! prices in cents per unit and month, costs in cents rounded half up once per resource and
//! period (never per minute, so nothing is lost to rounding a minute at a time).
//!
//! A month of usage is 30 days = 43,200 minutes. Units:
//! - CPU: millicore-minutes (one vCPU busy for a minute = 1,000);
//! - memory and volumes: MiB-minutes (1 GB = 1,024 MiB);
//! - egress: bytes (1 GB = 10^9 bytes).

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Minutes in the month prices are quoted per.
pub const MONTH_MINUTES: i64 = 30 * 24 * 60;

/// What is metered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Cpu,
    Memory,
    Volume,
    Egress,
}

impl Resource {
    pub const ALL: [Resource; 4] = [Resource::Cpu, Resource::Memory, Resource::Volume, Resource::Egress];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Volume => "volume",
            Resource::Egress => "egress",
        }
    }

    pub fn parse(s: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            Resource::Cpu => "CPU",
            Resource::Memory => "Memory",
            Resource::Volume => "Volumes",
            Resource::Egress => "Egress",
        }
    }

    /// A quantity in words: `2.50 vCPU-hours`, `1.20 GB-hours`, `340 MB`.
    pub fn describe(self, quantity: i64) -> String {
        match self {
            Resource::Cpu => format!("{} vCPU-hours", hundredths(quantity, 1_000 * 60)),
            Resource::Memory | Resource::Volume => format!("{} GB-hours", hundredths(quantity, 1_024 * 60)),
            Resource::Egress if quantity >= 1_000_000_000 => format!("{} GB", hundredths(quantity, 1_000_000_000)),
            Resource::Egress => format!("{} MB", hundredths(quantity, 1_000_000)),
        }
    }
}

/// `n / d` with two decimals, rounded half up (n ≥ 0).
fn hundredths(n: i64, d: i64) -> String {
    let h = div_round(i128::from(n) * 100, i128::from(d));
    format!("{}.{:02}", h / 100, h % 100)
}

/// Prices in cents: per vCPU-month, per GB-month (memory, volumes), per GB (egress).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prices {
    pub cpu_vcpu_month_cents: i64,
    pub memory_gb_month_cents: i64,
    pub volume_gb_month_cents: i64,
    pub egress_gb_cents: i64,
}

impl Prices {
    /// The exact cost of `quantity` of `resource`, as a fraction of a cent: (numerator, denominator).
    fn fraction(&self, resource: Resource, quantity: i64) -> (i128, i128) {
        let q = i128::from(quantity.max(0));
        match resource {
            Resource::Cpu => (q * i128::from(self.cpu_vcpu_month_cents), 1_000 * i128::from(MONTH_MINUTES)),
            Resource::Memory => (q * i128::from(self.memory_gb_month_cents), 1_024 * i128::from(MONTH_MINUTES)),
            Resource::Volume => (q * i128::from(self.volume_gb_month_cents), 1_024 * i128::from(MONTH_MINUTES)),
            Resource::Egress => (q * i128::from(self.egress_gb_cents), 1_000_000_000),
        }
    }

    /// The cost in cents of `quantity` units of `resource`, rounded half up.
    pub fn cost(&self, resource: Resource, quantity: i64) -> i64 {
        let (n, d) = self.fraction(resource, quantity);
        i64::try_from(div_round(n, d)).unwrap_or(i64::MAX)
    }
}

/// `n / d` rounded half up, for n ≥ 0 and d > 0.
fn div_round(n: i128, d: i128) -> i128 {
    (n + d / 2) / d
}

/// A billing period: a calendar month in UTC, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    /// The period `t` falls in.
    pub fn containing(t: DateTime<Utc>) -> Period {
        let start = Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0).single().expect("the first of a month exists");
        let (y, m) = if t.month() == 12 { (t.year() + 1, 1) } else { (t.year(), t.month() + 1) };
        let end = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().expect("the first of a month exists");
        Period { start, end }
    }

    pub fn minutes(&self) -> i64 {
        (self.end - self.start).num_minutes()
    }

    /// Whole minutes of the period gone by at `now` (0 before it, all after it).
    pub fn elapsed_minutes(&self, now: DateTime<Utc>) -> i64 {
        (now.min(self.end) - self.start).num_minutes().clamp(0, self.minutes())
    }

    /// The fee for `part` of this period of a plan costing `monthly_cents` a month: prorated
    /// by time for a plan held for part of it (a plan change mid-period).
    pub fn prorate(&self, monthly_cents: i64, part: Duration) -> i64 {
        let part = part.num_minutes().clamp(0, self.minutes());
        i64::try_from(div_round(i128::from(monthly_cents) * i128::from(part), i128::from(self.minutes().max(1)))).unwrap_or(i64::MAX)
    }
}

/// What usage so far projects to for the whole period, at the same rate.
pub fn project(so_far_cents: i64, elapsed_minutes: i64, period_minutes: i64) -> i64 {
    if elapsed_minutes <= 0 {
        return so_far_cents;
    }
    i64::try_from(div_round(i128::from(so_far_cents) * i128::from(period_minutes), i128::from(elapsed_minutes))).unwrap_or(i64::MAX)
}

/// When the bill reaches `limit` if usage goes on at the rate so far: `now` when it has
/// already, None when it would not before the period ends (or nothing is used).
pub fn limit_reached_at(period: Period, now: DateTime<Utc>, fee_cents: i64, included_cents: i64, usage_cents: i64, limit_cents: i64) -> Option<DateTime<Utc>> {
    if Bill::new(fee_cents, included_cents, usage_cents).total_cents >= limit_cents {
        return Some(now);
    }
    let elapsed = period.elapsed_minutes(now);
    if usage_cents <= 0 || elapsed <= 0 {
        return None;
    }
    // The usage at which the bill is the limit, reached after usage × elapsed / so-far minutes.
    let needed = i128::from(limit_cents - fee_cents + included_cents.max(0));
    let minutes = (needed * i128::from(elapsed) + i128::from(usage_cents) - 1) / i128::from(usage_cents);
    let at = period.start + Duration::minutes(i64::try_from(minutes).ok()?);
    (at < period.end).then_some(at)
}

/// A period's bill: the plan's fee, then usage past what the plan includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bill {
    pub fee_cents: i64,
    pub usage_cents: i64,
    /// The plan's included usage used up (at most the usage).
    pub included_cents: i64,
    pub total_cents: i64,
}

impl Bill {
    pub fn new(fee_cents: i64, included_cents: i64, usage_cents: i64) -> Bill {
        let included = included_cents.clamp(0, usage_cents.max(0));
        Bill { fee_cents, usage_cents, included_cents: included, total_cents: fee_cents + usage_cents - included }
    }
}

/// Cents as dollars: `$12.34`.
pub fn dollars(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}${}.{:02}", c / 100, c % 100)
}

/// Dollars as typed (`12`, `12.5`, `$12.50`) into cents, without floats; `None` if it is not
/// an amount of at most two decimals.
pub fn parse_dollars(s: &str) -> Option<i64> {
    let s = s.trim().trim_start_matches('$').replace(',', "");
    let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
    if whole.is_empty() && frac.is_empty() || whole.len() > 9 || frac.len() > 2 {
        return None;
    }
    if !whole.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    Some(whole * 100 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PRICES: Prices = Prices { cpu_vcpu_month_cents: 2_000, memory_gb_month_cents: 1_000, volume_gb_month_cents: 15, egress_gb_cents: 5 };

    #[test]
    fn a_whole_month_of_a_unit_costs_its_price() {
        assert_eq!(PRICES.cost(Resource::Cpu, 1_000 * MONTH_MINUTES), 2_000, "one vCPU for a month");
        assert_eq!(PRICES.cost(Resource::Memory, 1_024 * MONTH_MINUTES), 1_000, "one GB for a month");
        assert_eq!(PRICES.cost(Resource::Volume, 10 * 1_024 * MONTH_MINUTES), 150, "ten GB of volume");
        assert_eq!(PRICES.cost(Resource::Egress, 3_000_000_000), 15, "three GB out");
    }

    #[test]
    fn costs_round_half_up_once() {
        // 512 MiB for an hour: 1000 × 512 × 60 / (1024 × 43200) = 0.694… cents → 1.
        assert_eq!(PRICES.cost(Resource::Memory, 512 * 60), 1);
        // Half a cent of egress (10^8 bytes) rounds up; just under it rounds down.
        assert_eq!(PRICES.cost(Resource::Egress, 100_000_000), 1);
        assert_eq!(PRICES.cost(Resource::Egress, 99_999_999), 0);
        assert_eq!(PRICES.cost(Resource::Cpu, 0), 0);
        assert_eq!(PRICES.cost(Resource::Cpu, -5), 0, "no negative usage");
    }

    #[test]
    fn periods_are_calendar_months() {
        let t = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        let p = Period::containing(t);
        assert_eq!(p.start, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        assert_eq!(p.end, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(p.minutes(), 31 * 24 * 60);
        let feb = Period::containing(Utc.with_ymd_and_hms(2028, 2, 29, 12, 0, 0).unwrap());
        assert_eq!(feb.minutes(), 29 * 24 * 60, "a leap February");
        assert_eq!(p.elapsed_minutes(p.start - Duration::days(1)), 0);
        assert_eq!(p.elapsed_minutes(p.end + Duration::days(1)), p.minutes());
    }

    #[test]
    fn a_plan_held_for_part_of_a_period_is_prorated_by_time() {
        let p = Period::containing(Utc.with_ymd_and_hms(2026, 11, 10, 0, 0, 0).unwrap());
        assert_eq!(p.prorate(2_000, Duration::days(15)), 1_000, "half of November");
        assert_eq!(p.prorate(500, Duration::days(30)), 500);
        assert_eq!(p.prorate(500, Duration::days(40)), 500, "never more than the period");
        // Hobby for 10 days, then Pro for 20: 500 × 1/3 + 2000 × 2/3.
        assert_eq!(p.prorate(500, Duration::days(10)) + p.prorate(2_000, Duration::days(20)), 167 + 1_333);
    }

    #[test]
    fn included_usage_covers_usage_up_to_its_amount() {
        assert_eq!(Bill::new(500, 500, 320), Bill { fee_cents: 500, usage_cents: 320, included_cents: 320, total_cents: 500 });
        assert_eq!(Bill::new(500, 500, 820).total_cents, 820);
        assert_eq!(Bill::new(0, 100, 99).total_cents, 0, "Free: the dollar of credit covers it");
        assert_eq!(Bill::new(0, 100, 250).total_cents, 150);
    }

    #[test]
    fn typed_dollars_become_cents_without_floats() {
        assert_eq!(parse_dollars("12"), Some(1_200));
        assert_eq!(parse_dollars("$12.5"), Some(1_250));
        assert_eq!(parse_dollars(" 1,000.05 "), Some(100_005));
        assert_eq!(parse_dollars(".99"), Some(99));
        for bad in ["", ".", "1.234", "-5", "1e3", "twelve", "1.2.3", "9999999999"] {
            assert_eq!(parse_dollars(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn money_reads_as_dollars() {
        assert_eq!(dollars(0), "$0.00");
        assert_eq!(dollars(1_234), "$12.34");
        assert_eq!(dollars(-5), "-$0.05");
        assert_eq!(Resource::Cpu.describe(1_000 * 90), "1.50 vCPU-hours");
        assert_eq!(Resource::Egress.describe(2_500_000), "2.50 MB");
    }

    proptest! {
        #[test]
        fn cost_grows_with_usage_and_splitting_loses_at_most_rounding(a in 0i64..10_000_000_000, b in 0i64..10_000_000_000, r in 0usize..4) {
            let r = Resource::ALL[r];
            let whole = PRICES.cost(r, a + b);
            prop_assert!(PRICES.cost(r, a) <= whole);
            let split = PRICES.cost(r, a) + PRICES.cost(r, b);
            prop_assert!((split - whole).abs() <= 1, "{split} vs {whole}");
        }

        #[test]
        fn a_projection_never_shrinks_and_is_exact_at_the_end(cost in 0i64..1_000_000_000, elapsed in 1i64..44_640, period in 40_320i64..44_640) {
            let elapsed = elapsed.min(period);
            let p = project(cost, elapsed, period);
            prop_assert!(p >= cost);
            prop_assert_eq!(project(cost, period, period), cost);
        }

        #[test]
        fn a_bill_is_never_below_its_fee_nor_above_fee_plus_usage(fee in 0i64..100_000, included in 0i64..100_000, usage in 0i64..10_000_000) {
            let bill = Bill::new(fee, included, usage);
            prop_assert!(bill.total_cents >= fee);
            prop_assert!(bill.total_cents <= fee + usage);
            prop_assert_eq!(bill.total_cents, fee + (usage - included).max(0));
        }
    }

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn the_limit_is_reached_when_the_rate_so_far_says_and_not_after_the_period() {
        let p = Period::containing(at(2026, 11, 11));
        let now = at(2026, 11, 11); // 10 days of 30 gone
        // $2 of usage in 10 days (20 cents a day), Hobby: $5 fee, $5 included. A $10 limit is
        // reached at $10 of usage: day 50 — not this period.
        assert_eq!(limit_reached_at(p, now, 500, 500, 200, 1000), None);
        // $6 of usage so far (60 cents a day); the bill reaches $7 at $7 of usage: day 11 16:00.
        assert_eq!(limit_reached_at(p, now, 500, 500, 600, 700), Some(at(2026, 11, 12) + Duration::hours(16)));
        // Already past it: now.
        assert_eq!(limit_reached_at(p, now, 500, 500, 1300, 700), Some(now));
        // Nothing used yet: no date.
        assert_eq!(limit_reached_at(p, now, 0, 100, 0, 500), None);
    }
}
