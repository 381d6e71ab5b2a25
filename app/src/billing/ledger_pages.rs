//! The local ledger's pages: changing plan and the invoice list (on `/billing`), an invoice as
//! a printable page, and the admins' invoices with "mark paid".

use super::{money::dollars, *};
use crate::ui::{format_time, Badge, ErrorNote, Tone};
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

/// The plans to move to, and this account's invoices.
#[component]
pub fn PlanAndInvoices(
    current: String,
    change: ServerAction<ChangePlan>,
    plans: leptos::prelude::Resource<Result<Vec<crate::catalogue::Plan>, AppError>>,
    invoices: leptos::prelude::Resource<Result<Vec<InvoiceSummary>, AppError>>,
    status: PaymentStatus,
) -> impl IntoView {
    let portal = ServerAction::<BillingPortal>::new();
    let how = if status.provider {
        "A paid plan is bought through Stripe's checkout; a subscription is changed or cancelled in Stripe's portal (Manage billing)."
    } else {
        "A change takes effect now; this period's invoice charges each plan for the time you held it."
    };
    view! {
        <div class="mt-6 grid gap-6 lg:grid-cols-2">
            <div class="card" data-testid="change-plan">
                <div class="flex items-center justify-between gap-2">
                    <h2 class="font-medium">"Plan"</h2>
                    {status.has_customer.then(|| view! {
                        <ActionForm action=portal>
                            <button type="submit" class="btn btn-secondary" data-testid="manage-billing">"Manage billing"</button>
                        </ActionForm>
                    })}
                </div>
                <p class="mt-1 text-sm text-slate-400">{how}</p>
                <p class="mt-2 text-sm text-rose-400" role="alert">{move || portal.value().get().and_then(Result::err).map(|e| e.to_string())}</p>
                <Suspense fallback=|| ()>
                    {move || {
                        let current = current.clone();
                        Suspend::new(async move {
                            match plans.await {
                                Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                                Ok(plans) => view! {
                                    <div class="mt-3 flex flex-wrap gap-2">
                                        {plans.into_iter().map(|p| {
                                            let here = p.id == current;
                                            view! {
                                                <ActionForm action=change>
                                                    <input type="hidden" name="plan_id" value=p.id.clone()/>
                                                    <button type="submit" class=if here { "btn btn-secondary" } else { "btn btn-ghost" } disabled=here data-plan=p.id.clone()>
                                                        {format!("{} · {}/month{}", p.name, dollars(p.monthly_fee_cents.into()), if here { " (yours)" } else { "" })}
                                                    </button>
                                                </ActionForm>
                                            }
                                        }).collect_view()}
                                    </div>
                                }.into_any(),
                            }
                        })
                    }}
                </Suspense>
                <p class="mt-2 text-sm text-rose-400" role="alert">{move || change.value().get().and_then(Result::err).map(|e| e.to_string())}</p>
            </div>
            <div class="card" data-testid="invoices">
                <h2 class="font-medium">"Invoices"</h2>
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        match invoices.await {
                            Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                            Ok(list) if list.is_empty() => view! { <p class="mt-2 text-sm text-slate-400">"None yet: a period's invoice is issued when it ends."</p> }.into_any(),
                            Ok(list) => view! { <InvoiceTable list admin=false/> }.into_any(),
                        }
                    })}
                </Suspense>
            </div>
        </div>
    }
}

fn status_badge(status: &str) -> impl IntoView {
    let tone = match status {
        "paid" => Tone::Good,
        "open" => Tone::Warn,
        _ => Tone::Neutral,
    };
    let label = status.to_string();
    view! { <Badge tone>{label}</Badge> }
}

#[component]
fn InvoiceTable(list: Vec<InvoiceSummary>, admin: bool, #[prop(optional)] mark: Option<ServerAction<AdminMarkInvoicePaid>>) -> impl IntoView {
    view! {
        <table class="table mt-3">
            <thead><tr>
                <th>"Invoice"</th>{admin.then(|| view! { <th>"Customer"</th> })}<th>"Period"</th><th>"Status"</th><th class="text-right">"Total"</th>
                {admin.then(|| view! { <th></th> })}
            </tr></thead>
            <tbody>
                {list.into_iter().map(|i| view! {
                    <tr data-invoice=i.number.clone()>
                        <td><a class="hover:underline" href=format!("/billing/invoices/{}", i.id)>{i.number.clone()}</a></td>
                        {admin.then(|| view! { <td class="text-sm">{i.customer.clone()}</td> })}
                        <td class="text-sm">{i.period_start.format("%B %Y").to_string()}</td>
                        <td>{status_badge(&i.status)}</td>
                        <td class="text-right">{dollars(i.total_cents)}
                            {i.hosted_url.clone().map(|u| view! { <a class="ml-2 text-xs text-sky-400 hover:underline" href=u rel="noopener noreferrer" target="_blank">"on Stripe"</a> })}
                        </td>
                        {mark.filter(|_| i.status == "open").map(|mark| view! {
                            <td><ActionForm action=mark>
                                <input type="hidden" name="id" value=i.id.to_string()/>
                                <button type="submit" class="btn btn-secondary">"Mark paid"</button>
                            </ActionForm></td>
                        })}
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// An invoice, laid out to print.
#[component]
pub fn InvoicePage() -> impl IntoView {
    let params = use_params_map();
    let invoice = leptos::prelude::Resource::new(
        move || params.with(|p| p.get("id").and_then(|s| Uuid::parse_str(&s).ok())),
        |id| async move {
            match id {
                Some(id) => get_invoice(id).await,
                None => Err(AppError::not_found("Invoice")),
            }
        },
    );
    view! {
        <section class="mx-auto max-w-3xl px-4 py-10 print:py-0">
            <Suspense fallback=|| view! { <p class="text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match invoice.await {
                        Err(e) => {
                            crate::ui::respond_with_status(&e);
                            view! { <Title text="Invoice · Roundhouse"/><ErrorNote error=e/> }.into_any()
                        }
                        Ok(inv) => {
                            let i = inv.summary.clone();
                            view! {
                                <Title text=format!("Invoice {} · Roundhouse", i.number)/>
                                <div class="card print:border-0" data-testid="invoice">
                                    <div class="flex flex-wrap items-start justify-between gap-4">
                                        <div>
                                            <p class="text-sm text-slate-400">"Roundhouse"</p>
                                            <h1 class="text-2xl font-semibold">{format!("Invoice {}", i.number)}</h1>
                                            <p class="mt-1 text-sm text-slate-400">{format!("{} · {}", i.customer, i.period_start.format("%B %Y"))}</p>
                                        </div>
                                        <div class="text-right text-sm">
                                            {status_badge(&i.status)}
                                            <p class="mt-1 text-slate-400">{format!("Issued {}", format_time(i.issued_at))}</p>
                                            {i.paid_at.map(|at| view! { <p class="text-slate-400">{format!("Paid {}", format_time(at))}</p> })}
                                        </div>
                                    </div>
                                    <table class="table mt-6">
                                        <thead><tr><th>"Description"</th><th class="text-right">"Amount"</th></tr></thead>
                                        <tbody>
                                            {inv.lines.iter().map(|l| view! {
                                                <tr><td>{l.description.clone()}</td><td class="text-right">{dollars(l.amount_cents)}</td></tr>
                                            }).collect_view()}
                                        </tbody>
                                        <tfoot><tr><th>"Total"</th><th class="text-right" data-testid="invoice-total">{dollars(i.total_cents)}</th></tr></tfoot>
                                    </table>
                                    <p class="mt-6 text-xs text-slate-500 print:hidden">"Print this page (Ctrl+P) for a paper or PDF copy."</p>
                                </div>
                            }.into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
}

/// Every account's invoices, with "mark paid" for open ones.
#[component]
pub fn AdminInvoicesPage() -> impl IntoView {
    let mark = ServerAction::<AdminMarkInvoicePaid>::new();
    let invoices = leptos::prelude::Resource::new(move || mark.version().get(), |_| admin_list_invoices());
    view! {
        <Title text="Invoices · Admin · Roundhouse"/>
        <section class="mx-auto max-w-6xl px-4 py-10">
            <h1 class="text-2xl font-semibold">"Admin"</h1>
            <crate::templates::admin_pages::AdminNav current="Invoices"/>
            <p class="mt-2 text-sm text-rose-400" role="alert">{move || mark.value().get().and_then(Result::err).map(|e| e.to_string())}</p>
            <Transition fallback=|| view! { <p class="mt-6 text-slate-400">"Loading invoices…"</p> }>
                {move || Suspend::new(async move {
                    match invoices.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(list) if list.is_empty() => view! { <p class="mt-4 text-sm text-slate-400">"No invoices yet: they are issued when a period ends."</p> }.into_any(),
                        Ok(list) => view! { <div data-testid="admin-invoices"><InvoiceTable list admin=true mark=mark/></div> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}
