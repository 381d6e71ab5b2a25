use super::*;
use crate::ui::{Badge, EmptyState, ErrorNote, Tone};
use leptos_meta::{Meta, Title};
use leptos_router::{components::Form, hooks::{use_params_map, use_query_map}};

#[component]
pub fn PricingPage() -> impl IntoView {
    let plans = Resource::new(|| (), |_| list_plans());
    view! {
        <Title text="Pricing · Roundhouse"/>
        <Meta name="description" content="Roundhouse plans: a monthly fee with included usage, then per-resource prices."/>
        <section class="mx-auto max-w-6xl px-4 py-14">
            <h1 class="text-3xl font-bold tracking-tight">"Pricing"</h1>
            <p class="mt-2 max-w-2xl text-slate-400">
                "Every plan includes usage up to its allowance. Past that you pay for the CPU, memory, volumes and egress your services actually use, by the minute."
            </p>
            <Suspense fallback=|| view! { <p class="mt-8 text-slate-400">"Loading plans…"</p> }>
                {move || Suspend::new(async move {
                    match plans.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(plans) => view! {
                            <div class="mt-10 grid gap-6 md:grid-cols-3">
                                {plans.into_iter().map(|p| view! { <PlanCard plan=p/> }).collect_view()}
                            </div>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn PlanCard(plan: Plan) -> impl IntoView {
    let highlight = plan.id == "hobby";
    view! {
        <div class=if highlight { "card ring-2 ring-indigo-500" } else { "card" } data-testid="plan">
            <div class="flex items-center justify-between">
                <h2 class="text-xl font-semibold">{plan.name.clone()}</h2>
                {highlight.then(|| view! { <Badge tone=Tone::Accent>"popular"</Badge> })}
            </div>
            <p class="mt-1 text-sm text-slate-400">{plan.tagline.clone()}</p>
            <p class="mt-4">
                <span class="text-4xl font-bold">{format_dollars(plan.monthly_fee_cents)}</span>
                <span class="text-slate-400">" / month"</span>
            </p>
            <p class="text-sm text-slate-400">{format_dollars(plan.included_usage_cents)} " of usage included"</p>
            <ul class="mt-6 space-y-2 text-sm">
                <li>{format!("{} projects, {} services", plan.max_projects, plan.max_services)}</li>
                <li>{format!("Up to {} replica{} per service", plan.max_replicas, if plan.max_replicas == 1 { "" } else { "s" })}</li>
                <li>{format!("Up to {} GB memory per service", f64::from(plan.max_memory_mb) / 1024.0)}</li>
            </ul>
            <dl class="mt-6 grid grid-cols-2 gap-y-1 border-t border-slate-800 pt-4 text-sm">
                <dt class="text-slate-400">"vCPU"</dt><dd class="text-right">{format_dollars(plan.cpu_vcpu_month_cents)} " / month"</dd>
                <dt class="text-slate-400">"Memory"</dt><dd class="text-right">{format_dollars(plan.memory_gb_month_cents)} " / GB / month"</dd>
                <dt class="text-slate-400">"Volumes"</dt><dd class="text-right">{format_dollars(plan.volume_gb_month_cents)} " / GB / month"</dd>
                <dt class="text-slate-400">"Egress"</dt><dd class="text-right">{format_dollars(plan.egress_gb_cents)} " / GB"</dd>
            </dl>
            <a href="/register" class=if highlight { "btn btn-primary mt-6 w-full" } else { "btn btn-secondary mt-6 w-full" }>
                {if plan.monthly_fee_cents == 0 { "Start free" } else { "Choose " }}
                {if plan.monthly_fee_cents == 0 { String::new() } else { plan.name.clone() }}
            </a>
        </div>
    }
}

#[component]
pub fn TemplatesPage() -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| {
        query.with(|q| TemplateQuery { q: q.get("q"), category: q.get("category"), sort: q.get("sort") })
    });
    let templates = Resource::new(move || filter.get(), list_templates);
    let categories = Resource::new(|| (), |_| list_categories());
    view! {
        <Title text="Templates · Roundhouse"/>
        <Meta name="description" content="Deploy databases, caches and starter apps in one click."/>
        <section class="mx-auto max-w-6xl px-4 py-14">
            <h1 class="text-3xl font-bold tracking-tight">"Templates"</h1>
            <p class="mt-2 text-slate-400">"Databases, caches and starters, ready to deploy into a project."</p>
            <Form method="GET" action="" attr:class="mt-6 flex flex-wrap items-end gap-3" attr:role="search">
                <label class="flex-1 min-w-56">
                    <span class="block text-sm text-slate-300">"Search"</span>
                    <input class="input" type="search" name="q" placeholder="postgres, node, static…" value=move || filter.get().q.unwrap_or_default()/>
                </label>
                <label>
                    <span class="block text-sm text-slate-300">"Category"</span>
                    <select class="input" name="category">
                        <option value="">"All"</option>
                        <Suspense fallback=|| ()>
                            {move || Suspend::new(async move {
                                let selected = filter.get_untracked().category.unwrap_or_default();
                                categories.await.unwrap_or_default().into_iter().map(|c| {
                                    let is_selected = c == selected;
                                    view! { <option value=c.clone() selected=is_selected>{c.clone()}</option> }
                                }).collect_view()
                            })}
                        </Suspense>
                    </select>
                </label>
                <label>
                    <span class="block text-sm text-slate-300">"Sort"</span>
                    <select class="input" name="sort">
                        {[("popular", "Most popular"), ("name", "Name"), ("new", "Newest")].into_iter().map(|(v, l)| {
                            view! { <option value=v selected=move || filter.get().sort.as_deref().unwrap_or("popular") == v>{l}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <button type="submit" class="btn btn-secondary">"Apply"</button>
            </Form>
            <Transition fallback=|| view! { <p class="mt-8 text-slate-400">"Loading templates…"</p> }>
                {move || Suspend::new(async move {
                    match templates.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <EmptyState title="No templates match" body="Try another search or category."/>
                        }.into_any(),
                        Ok(list) => view! {
                            <ul class="mt-8 grid gap-4 sm:grid-cols-2 lg:grid-cols-3" data-testid="template-list">
                                {list.into_iter().map(|t| view! {
                                    <li class="card">
                                        <div class="flex items-center justify-between gap-2">
                                            <a class="text-lg font-medium hover:text-indigo-300" href=format!("/templates/{}", t.slug)>{t.name.clone()}</a>
                                            {t.featured.then(|| view! { <Badge tone=Tone::Accent>"featured"</Badge> })}
                                        </div>
                                        <p class="mt-1 text-sm text-slate-400">{t.summary.clone()}</p>
                                        <div class="mt-4 flex items-center gap-2 text-xs text-slate-500">
                                            <Badge tone=Tone::Neutral>{t.category.clone()}</Badge>
                                            <span>{format!("{} deploys", t.deploy_count)}</span>
                                        </div>
                                    </li>
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
pub fn TemplatePage() -> impl IntoView {
    let params = use_params_map();
    let slug = Memo::new(move |_| params.with(|p| p.get("slug").unwrap_or_default()));
    let template = Resource::new(move || slug.get(), get_template);
    let session = crate::use_session();
    view! {
        <section class="mx-auto max-w-4xl px-4 py-14">
            <Suspense fallback=|| view! { <p class="text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let signed_in = matches!(session.me.await, Ok(Some(_)));
                    match template.await {
                        Err(e) => {
                            crate::ui::respond_with_status(&e);
                            view! { <Title text="Template · Roundhouse"/><ErrorNote error=e/> }.into_any()
                        }
                        Ok(t) => view! { <TemplateDetail template=t signed_in/> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn TemplateDetail(template: Template, signed_in: bool) -> impl IntoView {
    let next = format!("/templates/{}", template.slug);
    view! {
        <Title text=format!("{} template · Roundhouse", template.name)/>
        <Meta name="description" content=template.summary.clone()/>
        <nav class="text-sm text-slate-400"><a class="hover:underline" href="/templates">"Templates"</a> " / " {template.name.clone()}</nav>
        <div class="mt-2 flex flex-wrap items-start justify-between gap-4">
            <div>
                <h1 class="text-3xl font-bold">{template.name.clone()}</h1>
                <p class="mt-1 text-slate-400">{template.summary.clone()}</p>
            </div>
            {if signed_in {
                view! {
                    <div class="text-right">
                        <button class="btn btn-primary" disabled=true>"Deploy"</button>
                        <p class="mt-1 max-w-xs text-xs text-slate-500">"One-click deploys arrive with the deploy engine."</p>
                    </div>
                }.into_any()
            } else {
                view! {
                    <a class="btn btn-primary" href=format!("/login?next={next}")>"Sign in to deploy"</a>
                }.into_any()
            }}
        </div>
        <p class="mt-6 text-slate-300">{template.description.clone()}</p>
        <div class="mt-4 flex flex-wrap gap-2 text-sm">
            <Badge tone=Tone::Neutral>{template.category.clone()}</Badge>
            <Badge tone=Tone::Neutral>{format!("{} vCPU", f64::from(template.cpu_millis) / 1000.0)}</Badge>
            <Badge tone=Tone::Neutral>{format!("{} MB memory", template.memory_mb)}</Badge>
            <Badge tone=Tone::Neutral>{format!("{} deploys", template.deploy_count)}</Badge>
        </div>
        <h2 class="mt-10 text-xl font-semibold">"Services"</h2>
        <ul class="mt-3 space-y-3">
            {template.services.clone().into_iter().map(|s| view! {
                <li class="card">
                    <div class="flex flex-wrap items-center gap-2">
                        <span class="font-medium">{s.name.clone()}</span>
                        <Badge tone=Tone::Accent>{s.source.clone()}</Badge>
                        {s.port.map(|p| view! { <Badge tone=Tone::Neutral>{format!("port {p}")}</Badge> })}
                    </div>
                    <dl class="mt-2 grid grid-cols-[8rem_1fr] gap-y-1 text-sm text-slate-400">
                        {s.image.clone().map(|v| view! { <dt>"Image"</dt><dd><code>{v}</code></dd> })}
                        {s.engine.clone().map(|v| view! { <dt>"Engine"</dt><dd>{v}</dd> })}
                        {s.build.clone().map(|v| view! { <dt>"Build"</dt><dd><code>{v}</code></dd> })}
                        {s.start.clone().map(|v| view! { <dt>"Start"</dt><dd><code>{v}</code></dd> })}
                        {s.volume.clone().map(|v| view! { <dt>"Volume"</dt><dd><code>{v}</code></dd> })}
                        {s.healthcheck.clone().map(|v| view! { <dt>"Health check"</dt><dd><code>{v}</code></dd> })}
                    </dl>
                </li>
            }).collect_view()}
        </ul>
        <h2 class="mt-10 text-xl font-semibold">"Variables"</h2>
        {if template.variables.is_empty() {
            view! { <p class="mt-2 text-sm text-slate-400">"This template sets no variables."</p> }.into_any()
        } else {
            view! {
                <table class="table mt-3">
                    <thead><tr><th>"Service"</th><th>"Name"</th><th>"Value"</th><th>"About"</th></tr></thead>
                    <tbody>
                        {template.variables.clone().into_iter().map(|v| view! {
                            <tr><td>{v.service.clone()}</td><td><code>{v.name.clone()}</code></td><td><code>{v.value.clone()}</code></td><td>{v.description.clone()}</td></tr>
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        }}
    }
}
