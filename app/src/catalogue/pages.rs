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
                <li>{format!("{} projects, {} services per project", plan.max_projects, plan.max_services)}</li>
                <li>{format!("Up to {} replica{} per service", plan.max_replicas, if plan.max_replicas == 1 { "" } else { "s" })}</li>
                <li>{format!("Up to {} vCPU and {} GB memory per service", f64::from(plan.max_cpu_millis) / 1000.0, f64::from(plan.max_memory_mb) / 1024.0)}</li>
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
        query.with(|q| TemplateQuery {
            q: q.get("q"),
            category: q.get("category"),
            sort: q.get("sort"),
            page: q.get("page").and_then(|p| p.parse().ok()),
            per_page: None,
        })
    });
    let templates = Resource::new(move || filter.get(), list_templates);
    let categories = Resource::new(|| (), |_| list_categories());
    view! {
        <Title text="Templates · Roundhouse"/>
        <Meta name="description" content="Deploy databases, caches, starters and whole app stacks in one click."/>
        <Meta property="og:title" content="Templates · Roundhouse"/>
        <Meta property="og:description" content="Deploy databases, caches, starters and whole app stacks in one click."/>
        <section class="mx-auto max-w-6xl px-4 py-14">
            <h1 class="text-3xl font-bold tracking-tight">"Templates"</h1>
            <p class="mt-2 text-slate-400">"Databases, caches, starters and whole stacks, ready to deploy into a project."</p>
            <Form method="GET" action="" attr:class="mt-6 flex flex-wrap items-end gap-3" attr:role="search">
                <label class="flex-1 min-w-56">
                    <span class="block text-sm text-slate-300">"Search"</span>
                    <input class="input" type="search" name="q" placeholder="postgres, node, analytics…" value=move || filter.get().q.unwrap_or_default()/>
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
                        Ok(page) if page.templates.is_empty() => view! {
                            <EmptyState title="No templates match" body="Try another search or category."/>
                        }.into_any(),
                        Ok(page) => {
                            let f = filter.get_untracked();
                            view! {
                                <p class="mt-6 text-sm text-slate-400" data-testid="template-count">
                                    {format!("{} template{}", page.total, if page.total == 1 { "" } else { "s" })}
                                </p>
                                <ul class="mt-3 grid gap-4 sm:grid-cols-2 lg:grid-cols-3" data-testid="template-list">
                                    {page.templates.iter().cloned().map(|t| view! { <TemplateCard t/> }).collect_view()}
                                </ul>
                                <Pager page=page.page pages=page.pages() query=f/>
                            }.into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn TemplateCard(t: TemplateSummary) -> impl IntoView {
    view! {
        <li class="card">
            <div class="flex items-center justify-between gap-2">
                <a class="text-lg font-medium hover:text-indigo-300" href=format!("/templates/{}", t.slug)>{t.name.clone()}</a>
                {t.featured.then(|| view! { <Badge tone=Tone::Accent>"featured"</Badge> })}
            </div>
            <p class="mt-1 text-sm text-slate-400">{t.summary.clone()}</p>
            <div class="mt-4 flex flex-wrap items-center gap-2 text-xs text-slate-500">
                <Badge tone=Tone::Neutral>{t.category.clone()}</Badge>
                <span>{format!("{} deploys", t.deploy_count)}</span>
            </div>
        </li>
    }
}

/// Previous / next links that keep the search, category and sort.
#[component]
fn Pager(page: u32, pages: u32, query: TemplateQuery) -> impl IntoView {
    let href = move |p: u32| {
        let mut parts = vec![];
        for (k, v) in [("q", &query.q), ("category", &query.category), ("sort", &query.sort)] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", crate::domain::url_encode(v)));
            }
        }
        parts.push(format!("page={p}"));
        format!("/templates?{}", parts.join("&"))
    };
    (pages > 1).then(|| view! {
        <nav class="mt-8 flex items-center justify-between text-sm" aria-label="Pages">
            {(page > 1).then(|| view! { <a class="btn btn-secondary" rel="prev" href=href(page - 1)>"← Previous"</a> })}
            <span class="text-slate-400">{format!("Page {page} of {pages}")}</span>
            {(page < pages).then(|| view! { <a class="btn btn-secondary" rel="next" href=href(page + 1)>"Next →"</a> })}
        </nav>
    })
}

#[component]
pub fn TemplatePage() -> impl IntoView {
    let params = use_params_map();
    let slug = Memo::new(move |_| params.with(|p| p.get("slug").unwrap_or_default()));
    let template = Resource::new(move || slug.get(), get_template);
    let session = crate::auth::use_session();
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

/// The template's services as a graph: an arrow from a service to each one it needs.
pub fn template_graph(spec: &crate::templates::Spec) -> (Vec<crate::graph::Node>, Vec<(usize, usize)>) {
    let index = |name: &str| spec.services.iter().position(|s| s.name == name);
    let nodes = spec
        .services
        .iter()
        .map(|s| crate::graph::Node { name: s.name.clone(), detail: s.source.describe(), href: None, dot: None })
        .collect();
    let edges = spec
        .services
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.needs().into_iter().filter_map(move |n| index(&n).map(|j| (i, j))))
        .collect();
    (nodes, edges)
}

#[component]
fn TemplateDetail(template: Template, signed_in: bool) -> impl IntoView {
    let deploy = format!("/templates/{}/deploy", template.slug);
    let spec = template.spec.clone();
    let (nodes, edges) = template_graph(&spec);
    let asked: Vec<_> = spec.asked().cloned().collect();
    let generated: Vec<_> = spec.inputs.iter().filter(|i| i.is_generated()).map(|i| i.name.clone()).collect();
    let title = format!("{} template · Roundhouse", template.name);
    view! {
        <Title text=title.clone()/>
        <Meta name="description" content=template.summary.clone()/>
        <Meta property="og:title" content=title/>
        <Meta property="og:description" content=template.summary.clone()/>
        <Meta property="og:type" content="website"/>
        <nav class="text-sm text-slate-400"><a class="hover:underline" href="/templates">"Templates"</a> " / " {template.name.clone()}</nav>
        <div class="mt-2 flex flex-wrap items-start justify-between gap-4">
            <div>
                <h1 class="text-3xl font-bold">{template.name.clone()}</h1>
                <p class="mt-1 text-slate-400">{template.summary.clone()}</p>
            </div>
            {if signed_in {
                view! { <a class="btn btn-primary" href=deploy.clone() data-testid="deploy-template">"Deploy"</a> }.into_any()
            } else {
                view! {
                    <a class="btn btn-primary" href=format!("/register?next={deploy}") data-testid="deploy-template">"Deploy"</a>
                }.into_any()
            }}
        </div>
        <div class="mt-4 flex flex-wrap gap-2 text-sm">
            <Badge tone=Tone::Neutral>{template.category.clone()}</Badge>
            {template.tags.iter().map(|t| view! { <Badge tone=Tone::Neutral>{format!("#{t}")}</Badge> }).collect_view()}
            <Badge tone=Tone::Neutral>{format!("{} deploys", template.deploy_count)}</Badge>
            {spec.template.version.clone().map(|v| view! { <Badge tone=Tone::Neutral>{format!("version {v}")}</Badge> })}
        </div>
        <dl class="mt-6 grid grid-cols-[10rem_1fr] gap-y-2 text-sm">
            <dt class="text-slate-400">"Runs on"</dt>
            <dd data-testid="runtimes">{template.runtimes.iter().map(|r| r.label()).collect::<Vec<_>>().join(", ")}</dd>
            {(!template.local_blockers.is_empty()).then(|| view! {
                <dt class="text-slate-400">"Not on the local runtime"</dt>
                <dd>{template.local_blockers.join("; ")}</dd>
            })}
            <dt class="text-slate-400">"Plan"</dt>
            <dd>{template.plan.clone().map(|p| format!("{p} or above")).unwrap_or_else(|| "larger than any plan offered".into())}</dd>
        </dl>
        <h2 class="mt-10 text-xl font-semibold">"Services"</h2>
        <div class="mt-3 overflow-x-auto rounded-xl border border-slate-800 bg-slate-950/50 p-4" data-testid="template-graph">
            <crate::graph::ServiceGraph nodes edges label=format!("The services of {}", template.name)/>
        </div>
        <ul class="mt-4 space-y-3">
            {spec.services.clone().into_iter().map(|s| view! {
                <li class="card">
                    <div class="flex flex-wrap items-center gap-2">
                        <span class="font-medium">{s.name.clone()}</span>
                        <Badge tone=Tone::Accent>{s.source.describe()}</Badge>
                        {s.port.map(|p| view! { <Badge tone=Tone::Neutral>{format!("port {p}")}</Badge> })}
                        {s.cron.clone().map(|c| view! { <Badge tone=Tone::Neutral>{format!("cron {c}")}</Badge> })}
                        {(s.replicas > 1).then(|| view! { <Badge tone=Tone::Neutral>{format!("{} replicas", s.replicas)}</Badge> })}
                    </div>
                    <dl class="mt-2 grid grid-cols-[8rem_1fr] gap-y-1 text-sm text-slate-400">
                        {s.build.clone().map(|v| view! { <dt>"Build"</dt><dd><code>{v}</code></dd> })}
                        {s.start.clone().map(|v| view! { <dt>"Start"</dt><dd><code>{v}</code></dd> })}
                        {(!s.volumes.is_empty()).then(|| view! { <dt>"Volumes"</dt><dd><code>{s.volumes.iter().map(|v| v.mount.clone()).collect::<Vec<_>>().join(", ")}</code></dd> })}
                        {(!s.env.is_empty()).then(|| view! { <dt>"Variables"</dt><dd><code>{s.env.keys().cloned().collect::<Vec<_>>().join(", ")}</code></dd> })}
                    </dl>
                </li>
            }).collect_view()}
        </ul>
        <h2 class="mt-10 text-xl font-semibold">"You will be asked for"</h2>
        {if asked.is_empty() {
            view! { <p class="mt-2 text-sm text-slate-400">"Nothing: everything is generated or preset."</p> }.into_any()
        } else {
            view! {
                <table class="table mt-3">
                    <thead><tr><th>"Input"</th><th>"About"</th><th>"Default"</th></tr></thead>
                    <tbody>
                        {asked.into_iter().map(|i| view! {
                            <tr>
                                <td><code>{i.name.clone()}</code>{i.required.then_some(" (required)")}</td>
                                <td>{i.description.clone()}</td>
                                <td>{i.default.clone().unwrap_or_default()}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        }}
        {(!generated.is_empty()).then(|| view! {
            <p class="mt-3 text-sm text-slate-400">"Generated for you, kept secret: " <code>{generated.join(", ")}</code></p>
        })}
        {(!template.readme_html.is_empty()).then(|| view! {
            <h2 class="mt-10 text-xl font-semibold">"About"</h2>
            <article class="prose mt-3" inner_html=template.readme_html.clone()></article>
        })}
        {(!spec.template.links.is_empty()).then(|| view! {
            <ul class="mt-6 flex flex-wrap gap-4 text-sm">
                {spec.template.links.iter().map(|l| view! { <li><a class="text-indigo-300 hover:underline" rel="nofollow noopener" href=l.url.clone()>{l.label.clone()}</a></li> }).collect_view()}
            </ul>
        })}
    }
}
