//! What a period's invoice says: the plan fee (prorated by time for each plan held during the
//! period), each resource's usage, and the usage the plans include, as lines in cents.

use super::{
    money::{dollars, Period},
    ResourceUsage,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A plan held for part of (or all of) a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSpan {
    pub plan: String,
    pub monthly_fee_cents: i64,
    pub included_usage_cents: i64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Line {
    pub description: String,
    pub amount_cents: i64,
}

/// The lines of a period's invoice; their sum is its total.
pub fn lines(period: Period, spans: &[PlanSpan], usage: &[ResourceUsage]) -> Vec<Line> {
    let whole = |s: &PlanSpan| s.from <= period.start && s.to >= period.end;
    let mut out = Vec::new();
    let mut included = 0;
    for s in spans.iter().filter(|s| s.to > s.from) {
        let fee = period.prorate(s.monthly_fee_cents, s.to - s.from);
        included += period.prorate(s.included_usage_cents, s.to - s.from);
        let when = if whole(s) {
            format!("{} – {}", period.start.format("%b %-d"), (period.end - chrono::Duration::days(1)).format("%b %-d, %Y"))
        } else {
            format!("{} – {}, prorated", s.from.format("%b %-d %H:%M"), s.to.format("%b %-d %H:%M"))
        };
        out.push(Line { description: format!("{} plan ({when})", s.plan), amount_cents: fee });
    }
    let mut used = 0;
    for u in usage.iter().filter(|u| u.quantity > 0) {
        out.push(Line { description: format!("{}: {}", u.resource.label(), u.description), amount_cents: u.cost_cents });
        used += u.cost_cents;
    }
    let credit = included.min(used);
    if credit > 0 {
        out.push(Line { description: format!("Usage included in the plan (up to {})", dollars(included)), amount_cents: -credit });
    }
    out
}

pub fn total(lines: &[Line]) -> i64 {
    lines.iter().map(|l| l.amount_cents).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::money::Resource;
    use chrono::TimeZone;

    fn period() -> Period {
        Period::containing(Utc.with_ymd_and_hms(2026, 11, 15, 0, 0, 0).unwrap())
    }

    fn span(plan: &str, fee: i64, from_day: u32, to: DateTime<Utc>) -> PlanSpan {
        PlanSpan { plan: plan.into(), monthly_fee_cents: fee, included_usage_cents: fee, from: Utc.with_ymd_and_hms(2026, 11, from_day, 0, 0, 0).unwrap(), to }
    }

    fn usage(cents: i64) -> Vec<ResourceUsage> {
        vec![ResourceUsage { resource: Resource::Memory, quantity: 1, description: "x GB-hours".into(), cost_cents: cents }]
    }

    #[test]
    fn a_whole_period_on_one_plan_is_its_fee_plus_usage_past_what_it_includes() {
        let p = period();
        let l = lines(p, &[span("Hobby", 500, 1, p.end)], &usage(820));
        assert_eq!(l[0], Line { description: "Hobby plan (Nov 1 – Nov 30, 2026)".into(), amount_cents: 500 });
        assert_eq!(l.last().unwrap().amount_cents, -500, "the included $5");
        assert_eq!(total(&l), 820);
        assert_eq!(total(&lines(p, &[span("Hobby", 500, 1, p.end)], &usage(120))), 500, "usage under the included amount costs nothing more");
        assert_eq!(total(&lines(p, &[span("Free", 0, 1, p.end)], &[])), 0);
    }

    #[test]
    fn a_plan_change_mid_period_prorates_fees_and_included_usage_by_time() {
        let p = period();
        let change = Utc.with_ymd_and_hms(2026, 11, 11, 0, 0, 0).unwrap();
        // Hobby for 10 days, Pro for 20: fees 167 + 1333; included the same.
        let l = lines(p, &[span("Hobby", 500, 1, change), span("Pro", 2_000, 11, p.end)], &usage(3_000));
        assert_eq!(l[0].amount_cents, 167);
        assert_eq!(l[1].amount_cents, 1_333);
        assert!(l[1].description.contains("prorated"), "{}", l[1].description);
        assert_eq!(total(&l), 167 + 1_333 + 3_000 - 1_500);
    }
}
