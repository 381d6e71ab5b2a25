//! `/billing`: the plan, usage and cost so far, the projected bill, a chart of each day's cost,
//! and what each resource and service used. The service page shows its own share.

use super::{money::dollars, *};
use crate::ui::{format_time, ErrorNote};
use leptos_meta::Title;

#[component]
pub fn BillingPage() -> impl IntoView {
    let set = ServerAction::<SetLimits>::new();
    // The whole page follows a plan change.
    let change = ServerAction::<ChangePlan>::new();
    // Usage, the bill and its projection read again every 30 s while the page is open.
    let (tick, set_tick) = signal(0u32);
    let report = leptos::prelude::Resource::new(move || (set.version().get(), change.version().get(), tick.get()), |_| get_usage());
    Effect::new(move |_| {
        if let Ok(every) = set_interval_with_handle(move || set_tick.update(|t| *t += 1), std::time::Duration::from_secs(30)) {
            on_cleanup(move || every.clear());
        }
    });
    let limits = leptos::prelude::Resource::new(move || set.version().get(), |_| get_limits());
    // Made here, not inside the report's suspended view, so they hydrate with the server's values.
    let plans = leptos::prelude::Resource::new(|| (), |_| crate::catalogue::list_plans());
    let invoices = leptos::prelude::Resource::new(|| (), |_| list_invoices());
    let payment = leptos::prelude::Resource::new(|| (), |_| get_payment_status());
    view! {
        <Title text="Billing · Roundhouse"/>
        <section class="mx-auto max-w-6xl px-4 py-10">
            <h1 class="text-2xl font-semibold">"Billing"</h1>
            // Why everything stopped comes first.
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    limits.await.ok().and_then(|l| l.stopped_at).map(|at| view! {
                        <p class="mt-4 rounded-lg border border-rose-800 bg-rose-950/50 p-3 text-sm text-rose-200" role="alert" data-testid="limit-stopped">
                            {format!("Your services were stopped at {}: this period's bill reached your hard usage limit. Raise or remove it below to start them again.", format_time(at))}
                        </p>
                    })
                })}
            </Suspense>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move { payment.await.ok().map(|p| view! { <PaymentBanner p/> }) })}
            </Suspense>
            <Transition fallback=|| view! { <p class="mt-6 text-slate-400">"Loading usage…"</p> }>
                {move || Suspend::new(async move {
                    match report.await {
                        Err(e) => {
                            crate::ui::respond_with_status(&e);
                            view! { <ErrorNote error=e/> }.into_any()
                        }
                        Ok(r) => {
                            let current = r.plan.id.clone();
                            let status = payment.await.unwrap_or_default();
                            view! { <Report r/><super::ledger_pages::PlanAndInvoices current change plans invoices status/> }.into_any()
                        }
                    }
                })}
            </Transition>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match limits.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(l) => view! { <LimitsCard limits=l set/> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// Why a payment matters now: overdue (and when services stop), or services stopped for it.
#[component]
fn PaymentBanner(p: PaymentStatus) -> impl IntoView {
    let text = match (p.stopped_at, p.past_due_since, p.stops_at) {
        (Some(at), _, _) => Some(format!("Your services were stopped at {}: a payment is overdue. Pay the open invoice (Manage billing) and they start again.", format_time(at))),
        (None, Some(since), Some(stop)) => Some(format!("A payment failed on {}. Pay it before {} or your services stop.", format_time(since), format_time(stop))),
        _ => None,
    };
    text.map(|t| view! {
        <p class="mt-4 rounded-lg border border-amber-800 bg-amber-950/50 p-3 text-sm text-amber-200" role="alert" data-testid="payment-due">{t}</p>
    })
}

#[component]
fn Figure(label: &'static str, value: String, note: String, testid: &'static str) -> impl IntoView {
    view! {
        <div class="card" data-testid=testid>
            <p class="text-sm text-slate-400">{label}</p>
            <p class="mt-1 text-2xl font-semibold">{value}</p>
            <p class="mt-1 text-xs text-slate-500">{note}</p>
        </div>
    }
}

#[component]
fn Report(r: UsageReport) -> impl IntoView {
    let period = format!("{} – {}", r.period_start.format("%b %-d"), (r.period_end - chrono::Duration::days(1)).format("%b %-d, %Y"));
    let plan_note = format!("{} a month, {} of usage included", dollars(r.plan.monthly_fee_cents), dollars(r.plan.included_usage_cents));
    view! {
        <p class="mt-1 text-sm text-slate-400">
            {format!("{} plan · this period: {period} · as of {}", r.plan.name, format_time(r.as_of))}
            " · " <a class="text-indigo-300 hover:underline" href="/pricing">"Plans and prices"</a>
        </p>
        <div class="mt-6 grid gap-4 sm:grid-cols-2 lg:grid-cols-4">
            <Figure label="Usage so far" value=dollars(r.usage_cents) note=format!("{} covered by the plan", dollars(r.bill.included_cents)) testid="usage-so-far"/>
            <Figure label="Bill so far" value=dollars(r.bill.total_cents) note=plan_note testid="bill-so-far"/>
            <Figure label="Projected for the period" value=dollars(r.projected.total_cents)
                note=match r.hard_limit_reached_at {
                    Some(at) if at <= r.as_of => "the hard limit is reached".to_string(),
                    Some(at) => format!("hard limit reached {} at this rate", at.format("%b %-d, %H:%M UTC")),
                    None => format!("usage at this rate: {}", dollars(r.projected.usage_cents)),
                } testid="projected"/>
            <Figure label="Plan" value=r.plan.name.clone() note="Usage is billed by the minute.".to_string() testid="plan"/>
        </div>
        <div class="card mt-6">
            <h2 class="font-medium">"Cost per day"</h2>
            <DayChart days=r.days.clone()/>
        </div>
        <div class="mt-6 grid gap-6 lg:grid-cols-2">
            <div class="card">
                <h2 class="font-medium">"By resource"</h2>
                <table class="table mt-3" data-testid="by-resource">
                    <thead><tr><th>"Resource"</th><th>"Used"</th><th class="text-right">"Cost"</th></tr></thead>
                    <tbody>
                        {r.resources.iter().map(|u| view! {
                            <tr data-resource=u.resource.as_str()>
                                <td>{u.resource.label()}</td><td>{u.description.clone()}</td><td class="text-right">{dollars(u.cost_cents)}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
            <div class="card">
                <h2 class="font-medium">"By service"</h2>
                {if r.services.is_empty() {
                    view! { <p class="mt-3 text-sm text-slate-400">"Nothing has run this period yet."</p> }.into_any()
                } else {
                    view! {
                        <table class="table mt-3" data-testid="by-service">
                            <thead><tr><th>"Service"</th><th class="text-right">"Cost"</th></tr></thead>
                            <tbody>
                                {r.services.iter().map(|s| view! {
                                    <tr data-service=s.service.clone()>
                                        <td>
                                            <a class="hover:underline" href=format!("/services/{}", s.service_id)>{s.service.clone()}</a>
                                            <span class="text-xs text-slate-500">{format!(" · {}", s.project)}</span>
                                        </td>
                                        <td class="text-right">{dollars(s.cost_cents)}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }}
            </div>
        </div>
    }
}

fn amount(cents: Option<i64>) -> String {
    cents.map(|c| format!("{}.{:02}", c / 100, c % 100)).unwrap_or_default()
}

/// The spend limits, and the stop the hard limit holds.
#[component]
fn LimitsCard(limits: Limits, set: ServerAction<SetLimits>) -> impl IntoView {
    view! {
        <div class="card mt-6" data-testid="limits">
            <h2 class="font-medium">"Usage limits"</h2>
            <p class="mt-1 text-sm text-slate-400">
                "On this period's bill so far, plan fee included. The soft limit sends an email. The hard limit sends emails at 75 % and 90 %, and at 100 % stops every service until you raise or remove it (they start again by themselves)."
            </p>
            <ActionForm action=set attr:class="mt-3 grid gap-3 sm:grid-cols-3">
                <label class="space-y-1">
                    <span class="block text-sm font-medium text-slate-300">"Soft limit ($)"</span>
                    <input class="input" name="soft_limit" inputmode="decimal" placeholder="none" value=amount(limits.soft_limit_cents)/>
                </label>
                <label class="space-y-1">
                    <span class="block text-sm font-medium text-slate-300">"Hard limit ($)"</span>
                    <input class="input" name="hard_limit" inputmode="decimal" placeholder="none" value=amount(limits.hard_limit_cents)/>
                </label>
                <div class="flex items-end">
                    <button type="submit" class="btn btn-primary" disabled=move || set.pending().get()>"Save limits"</button>
                </div>
                <p class="text-sm text-rose-400 sm:col-span-3" role="alert">
                    {move || set.value().get().and_then(Result::err).map(|e| e.to_string())}
                </p>
            </ActionForm>
        </div>
    }
}

/// Bars of each day's cost, drawn on the server.
#[component]
fn DayChart(days: Vec<DayCost>) -> impl IntoView {
    let max = days.iter().map(|d| d.cost_cents).max().unwrap_or(0);
    let first = days.first().map(|d| d.day.format("%b %-d").to_string());
    let bars = days
        .iter()
        .map(|d| crate::ui::Bar { key: d.day.format("%Y-%m-%d").to_string(), value: d.cost_cents, title: format!("{}: {}", d.day.format("%b %-d"), dollars(d.cost_cents)) })
        .collect();
    view! {
        <crate::ui::BarChart bars aria=format!("Cost per day; the highest day {}", dollars(max)) testid="day-chart" slots=28 first=first.unwrap_or_default() last=format!("max {}", dollars(max))/>
    }
}

fn bytes(b: i64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.0} MB", b as f64 / f64::from(1u32 << 20)),
        b => format!("{} KB", (b + 1023) / 1024),
    }
}

/// A service's usage and cost this period, on its page.
#[component]
pub fn ServiceUsageCard(service_id: Uuid) -> impl IntoView {
    let usage = leptos::prelude::Resource::new(move || service_id, get_service_usage);
    view! {
        <div class="card" data-testid="service-usage">
            <h2 class="font-medium">"Usage this period"</h2>
            <Suspense fallback=|| view! { <p class="mt-2 text-sm text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match usage.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(u) if u.resources.is_empty() && u.volume.is_none() => view! { <p class="mt-2 text-sm text-slate-400">"Nothing used yet this period."</p> }.into_any(),
                        Ok(u) => view! {
                            <p class="mt-1 text-2xl font-semibold">{dollars(u.cost_cents)}</p>
                            {u.volume.clone().map(|v| {
                                let over = v.bytes > i64::from(v.limit_gb) * 1024 * 1024 * 1024;
                                view! {
                                    <p class=if over { "mt-1 text-sm text-amber-300" } else { "mt-1 text-sm text-slate-400" } data-testid="volume-size">
                                        {format!("Volume: {} of the {} plan's {} GB{}", bytes(v.bytes), v.plan, v.limit_gb, if over { " — over it: delete files or upgrade" } else { "" })}
                                    </p>
                                }
                            })}
                            <ul class="mt-2 space-y-1 text-sm text-slate-300">
                                {u.resources.into_iter().map(|r| view! {
                                    <li class="flex justify-between gap-4"><span>{format!("{}: {}", r.resource.label(), r.description)}</span><span>{dollars(r.cost_cents)}</span></li>
                                }).collect_view()}
                            </ul>
                            <a class="mt-2 inline-block text-sm text-indigo-300 hover:underline" href="/billing">"All usage"</a>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}
