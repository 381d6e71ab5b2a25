//! `/admin/revenue`: monthly recurring revenue, paying accounts, plan mix, churn, and what was
//! invoiced and paid — figures and server-drawn charts.

use super::{money::dollars, *};
use crate::ui::{Bar, BarChart, ErrorNote};
use leptos_meta::Title;

#[component]
pub fn AdminRevenuePage() -> impl IntoView {
    let revenue = leptos::prelude::Resource::new(|| (), |_| admin_revenue());
    view! {
        <Title text="Revenue · Admin · Roundhouse"/>
        <section class="mx-auto max-w-6xl px-4 py-10">
            <h1 class="text-2xl font-semibold">"Admin"</h1>
            <crate::templates::admin_pages::AdminNav current="Revenue"/>
            <Suspense fallback=|| view! { <p class="mt-6 text-slate-400">"Loading revenue…"</p> }>
                {move || Suspend::new(async move {
                    match revenue.await {
                        Err(e) => {
                            crate::ui::respond_with_status(&e);
                            view! { <ErrorNote error=e/> }.into_any()
                        }
                        Ok(r) => view! { <RevenueView r/> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

fn month(m: &RevenueMonth) -> String {
    m.month.format("%b %Y").to_string()
}

fn percent(permille: i64) -> String {
    format!("{}.{} %", permille / 10, permille % 10)
}

#[component]
fn RevenueView(r: Revenue) -> impl IntoView {
    let arpa = if r.paying_accounts > 0 { r.mrr_cents / r.paying_accounts } else { 0 };
    let first = r.months.first().map(month).unwrap_or_default();
    let last = r.months.last().map(month).unwrap_or_default();
    let mrr_bars: Vec<Bar> = r.months.iter().map(|m| Bar { key: m.month.format("%Y-%m").to_string(), value: m.mrr_cents, title: format!("{}: {} MRR, {} paying", month(m), dollars(m.mrr_cents), m.paying_accounts) }).collect();
    let churn_bars: Vec<Bar> = r.months.iter().map(|m| Bar { key: m.month.format("%Y-%m").to_string(), value: m.churn_permille, title: format!("{}: {} churned ({})", month(m), m.churned, percent(m.churn_permille)) }).collect();
    let months = r.months.clone();
    let customers = r.customers.clone();
    view! {
        <div class="mt-6 grid gap-4 sm:grid-cols-3">
            <div class="card"><p class="text-sm text-slate-400">"Monthly recurring revenue"</p><p class="mt-1 text-2xl font-semibold" data-testid="mrr">{dollars(r.mrr_cents)}</p></div>
            <div class="card"><p class="text-sm text-slate-400">"Paying accounts"</p><p class="mt-1 text-2xl font-semibold" data-testid="paying">{format!("{} of {}", r.paying_accounts, r.accounts)}</p></div>
            <div class="card"><p class="text-sm text-slate-400">"Revenue per paying account"</p><p class="mt-1 text-2xl font-semibold">{dollars(arpa)}</p></div>
        </div>
        <div class="mt-6 grid gap-6 lg:grid-cols-2">
            <div class="card">
                <h2 class="font-medium">"MRR by month"</h2>
                <BarChart bars=mrr_bars aria=format!("Monthly recurring revenue from {first} to {last}") testid="mrr-chart" first=first.clone() last=last.clone()/>
            </div>
            <div class="card">
                <h2 class="font-medium">"Churn by month"</h2>
                <p class="text-sm text-slate-400">"Accounts that left a paid plan for a free one, against those paying at the month's start."</p>
                <BarChart bars=churn_bars aria=format!("Churn per month from {first} to {last}") testid="churn-chart" first last/>
            </div>
        </div>
        <div class="mt-6 grid gap-6 lg:grid-cols-2">
            <div class="card" data-testid="plan-mix">
                <h2 class="font-medium">"Plan mix"</h2>
                <table class="table mt-3">
                    <thead><tr><th>"Plan"</th><th class="text-right">"Accounts"</th><th class="text-right">"MRR"</th></tr></thead>
                    <tbody>
                        {r.plan_mix.into_iter().map(|p| view! {
                            <tr data-plan=p.plan.clone()><td>{p.plan.clone()}</td><td class="text-right">{p.accounts}</td><td class="text-right">{dollars(p.mrr_cents)}</td></tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
            <div class="card" data-testid="revenue-months">
                <h2 class="font-medium">"Invoiced and paid"</h2>
                <table class="table mt-3">
                    <thead><tr><th>"Month"</th><th class="text-right">"MRR"</th><th class="text-right">"Churn"</th><th class="text-right">"Invoiced"</th><th class="text-right">"Paid"</th></tr></thead>
                    <tbody>
                        {months.into_iter().rev().map(|m| view! {
                            <tr data-month=m.month.format("%Y-%m").to_string()>
                                <td>{month(&m)}</td><td class="text-right">{dollars(m.mrr_cents)}</td>
                                <td class="text-right">{format!("{} ({})", m.churned, percent(m.churn_permille))}</td>
                                <td class="text-right">{dollars(m.invoiced_cents)}</td><td class="text-right">{dollars(m.paid_cents)}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        </div>
        <div class="card mt-6" data-testid="customers">
            <h2 class="font-medium">"Customers"</h2>
            {if customers.is_empty() {
                view! { <p class="mt-2 text-sm text-slate-400">"No account is on a paid plan yet."</p> }.into_any()
            } else {
                view! {
                    <table class="table mt-3">
                        <thead><tr><th>"Account"</th><th>"Plan"</th><th>"Since"</th><th>"Stripe"</th><th>"Standing"</th><th class="text-right">"MRR"</th></tr></thead>
                        <tbody>
                            {customers.into_iter().map(|c| {
                                let standing = match (&c.past_due_since, &c.subscription_status) {
                                    (Some(since), _) => format!("past due since {}", since.format("%b %-d")),
                                    (None, Some(s)) => s.clone(),
                                    (None, None) => "local ledger".into(),
                                };
                                view! {
                                    <tr data-customer=c.email.clone()>
                                        <td class="text-sm">{c.email.clone()}</td><td>{c.plan.clone()}</td>
                                        <td class="text-sm">{c.since.map(|s| s.format("%b %-d, %Y").to_string()).unwrap_or_else(|| "sign-up".into())}</td>
                                        <td class="text-xs text-slate-400">{c.stripe_customer_id.clone().unwrap_or_default()}</td>
                                        <td class="text-sm">{standing}</td>
                                        <td class="text-right">{dollars(c.monthly_fee_cents)}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </div>
    }
}
