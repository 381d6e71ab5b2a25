//! The admin's pages for looking into an account (`/admin/users/:id`), deployments across the
//! platform (`/admin/deployments`) and one deployment (`/admin/deployments/:id`).

use super::inspect::*;
use crate::{
    deployments::pages::StatusBadge,
    templates::admin_pages::AdminNav,
    ui::{format_time, Badge, EmptyState, ErrorNote, Tone},
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};
use uuid::Uuid;

fn id_param(name: &'static str) -> Memo<Option<Uuid>> {
    let params = use_params_map();
    Memo::new(move |_| params.with(|p| p.get(name).and_then(|v| v.parse().ok())))
}

#[component]
fn DeploymentRows(deployments: Vec<DeploymentListing>, with_owner: bool) -> impl IntoView {
    view! {
        <table class="table mt-2" data-testid="deployments">
            <thead><tr>
                <th>"Deployment"</th>{with_owner.then(|| view! { <th>"Owner"</th> })}<th>"Status"</th><th>"Reason"</th><th>"Created"</th>
            </tr></thead>
            <tbody>
                {deployments.into_iter().map(|d| view! {
                    <tr data-id=d.id.to_string()>
                        <td><a class="text-indigo-400 hover:underline" href=format!("/admin/deployments/{}", d.id)>
                            {format!("{} / {} #{}", d.project, d.service, d.number)}
                        </a></td>
                        {with_owner.then(|| view! { <td>{d.owner.clone()}</td> })}
                        <td><StatusBadge status=d.status/></td>
                        <td class="max-w-md truncate" title=d.reason.clone()>{d.reason.clone()}</td>
                        <td class="whitespace-nowrap">{format_time(d.created_at)}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
pub fn AdminDeploymentsPage() -> impl IntoView {
    let query = use_query_map();
    let state = Memo::new(move |_| query.with(|q| q.get("state")));
    let page = Resource::new(move || state.get(), admin_deployments);
    let current = move || DeploymentFilter::parse(state.get().as_deref()).unwrap_or(DeploymentFilter::All);
    view! {
        <Title text="Deployments · Admin · Roundhouse"/>
        <section class="mx-auto max-w-6xl px-4 py-10">
            <h1 class="text-2xl font-semibold">"Admin"</h1>
            <AdminNav current="Deployments"/>
            <h2 class="mt-6 text-lg font-medium">"Deployments across the platform"</h2>
            <nav class="mt-3 flex flex-wrap gap-2" aria-label="Filter by state">
                {DeploymentFilter::ALL.into_iter().map(|f| view! {
                    <a class=move || if current() == f { "btn btn-secondary" } else { "btn btn-ghost" }
                        href=format!("/admin/deployments?state={}", f.as_str())
                        aria-current=move || (current() == f).then_some("page")>{f.as_str()}</a>
                }).collect_view()}
            </nav>
            <Transition fallback=|| view! { <p class="mt-6 text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(p) if p.deployments.is_empty() => view! { <EmptyState title="None" body="No deployment is in this state."/> }.into_any(),
                        Ok(p) => view! {
                            <p class="mt-4 text-sm text-slate-400">{format!("{} in all; the newest {} shown", p.total, p.deployments.len())}</p>
                            <div class="overflow-x-auto"><DeploymentRows deployments=p.deployments with_owner=true/></div>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
pub fn AdminUserPage() -> impl IntoView {
    let id = id_param("id");
    let detail = Resource::new(move || id.get(), |id| async move {
        match id {
            Some(id) => admin_user_detail(id).await,
            None => Err(crate::error::AppError::not_found("User")),
        }
    });
    view! {
        <Title text="User · Admin · Roundhouse"/>
        <section class="mx-auto max-w-6xl px-4 py-10">
            <h1 class="text-2xl font-semibold">"Admin"</h1>
            <AdminNav current="Users"/>
            <Transition fallback=|| view! { <p class="mt-6 text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match detail.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(d) => view! { <UserDetail d/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn UserDetail(d: UserInspection) -> impl IntoView {
    let u = d.user.clone();
    view! {
        <div class="mt-6 flex flex-wrap items-center gap-2" data-testid="user-detail">
            <h2 class="text-xl font-medium">{u.name.clone()}</h2>
            <span class="text-slate-400">{u.email.clone()}</span>
            {u.is_admin().then(|| view! { <Badge tone=Tone::Accent>"admin"</Badge> })}
            {if u.suspended { view! { <Badge tone=Tone::Bad>"suspended"</Badge> }.into_any() }
             else if u.email_verified { view! { <Badge tone=Tone::Good>"active"</Badge> }.into_any() }
             else { view! { <Badge tone=Tone::Warn>"unverified"</Badge> }.into_any() }}
            <Badge tone=Tone::Neutral>{format!("{} plan", u.plan_id)}</Badge>
        </div>
        <p class="mt-1 text-sm text-slate-400">
            {format!("Joined {} · bill so far this period {}", format_time(u.created_at), crate::billing::money::dollars(d.bill_cents))}
            " · "<a class="text-indigo-400 hover:underline" href=format!("/admin/audit?q=user:{}", u.id)>"audit log"</a>
        </p>
        <div class="mt-6 grid gap-6 lg:grid-cols-2">
            <div class="card">
                <h3 class="font-medium">{format!("Projects ({})", d.projects.len())}</h3>
                {if d.projects.is_empty() { view! { <p class="mt-2 text-sm text-slate-400">"None."</p> }.into_any() } else { view! {
                    <ul class="mt-2 space-y-1 text-sm" data-testid="projects">
                        {d.projects.into_iter().map(|p| view! {
                            <li>{p.name}<span class="text-slate-400">{format!(" — {} service{}, since {}", p.services, if p.services == 1 { "" } else { "s" }, p.created_at.format("%Y-%m-%d"))}</span></li>
                        }).collect_view()}
                    </ul>
                }.into_any() }}
            </div>
            <div class="card">
                <h3 class="font-medium">{format!("Signed in ({} session{})", d.sessions.len(), if d.sessions.len() == 1 { "" } else { "s" })}</h3>
                <ul class="mt-2 space-y-1 text-sm" data-testid="sessions">
                    {d.sessions.into_iter().map(|s| view! {
                        <li>{format!("{} · {} · last seen {}", s.kind, s.ip.unwrap_or_default(), format_time(s.last_seen_at))}
                            <div class="truncate text-xs text-slate-500">{s.user_agent.unwrap_or_default()}</div></li>
                    }).collect_view()}
                </ul>
                <h3 class="mt-4 font-medium">{format!("API tokens ({})", d.tokens.len())}</h3>
                <ul class="mt-2 space-y-1 text-sm" data-testid="tokens">
                    {d.tokens.into_iter().map(|t| view! {
                        <li>{t.name}<code class="ml-2 text-xs">{t.prefix}"…"</code>
                            <span class="text-slate-400">{format!(" — last used {}", t.last_used_at.map(format_time).unwrap_or_else(|| "never".into()))}</span></li>
                    }).collect_view()}
                </ul>
            </div>
        </div>
        <h3 class="mt-8 font-medium">"Latest deployments"</h3>
        {if d.deployments.is_empty() { view! { <p class="mt-2 text-sm text-slate-400">"None yet."</p> }.into_any() } else {
            view! { <div class="overflow-x-auto"><DeploymentRows deployments=d.deployments with_owner=false/></div> }.into_any()
        }}
    }
}

#[component]
pub fn AdminDeploymentPage() -> impl IntoView {
    let id = id_param("id");
    let view_ = Resource::new(move || id.get(), |id| async move {
        match id {
            Some(id) => admin_deployment(id).await,
            None => Err(crate::error::AppError::not_found("Deployment")),
        }
    });
    view! {
        <Title text="Deployment · Admin · Roundhouse"/>
        <section class="mx-auto max-w-6xl px-4 py-10">
            <h1 class="text-2xl font-semibold">"Admin"</h1>
            <AdminNav current="Deployments"/>
            <Transition fallback=|| view! { <p class="mt-6 text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match view_.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(v) => {
                            let d = v.detail.clone();
                            view! {
                                <div class="mt-6 flex flex-wrap items-center gap-3">
                                    <h2 class="text-xl font-medium">{format!("{} / {} #{}", d.project_name, d.service_name, d.deployment.number)}</h2>
                                    <StatusBadge status=d.deployment.status/>
                                </div>
                                <p class="mt-1 text-sm text-slate-400">
                                    "Owner "<a class="text-indigo-400 hover:underline" href=format!("/admin/users/{}", v.owner_id)>{v.owner.clone()}</a>
                                    {format!(" · {} · created {}", d.deployment.reason, format_time(d.deployment.created_at))}
                                </p>
                                <p class="mt-1 text-xs text-slate-500">"Secrets were masked in these logs when they were captured; admins cannot reveal a tenant's variables. This look is recorded in the audit log."</p>
                                <h3 class="mt-6 font-medium">"Events"</h3>
                                <ol class="mt-2 space-y-1 text-sm" data-testid="events">
                                    {d.events.into_iter().map(|e| view! {
                                        <li><span class="text-slate-400">{format_time(e.at)}</span>" "<strong>{e.status.as_str()}</strong>" — "{e.reason}</li>
                                    }).collect_view()}
                                </ol>
                                <h3 class="mt-6 font-medium">{format!("Logs (the newest {})", v.logs.len())}</h3>
                                <pre class="mt-2 max-h-[32rem] overflow-auto rounded bg-slate-950 p-3 text-xs" data-testid="logs">
                                    {v.logs.into_iter().map(|l| format!("{} [{}] {}\n", l.at.format("%H:%M:%S"), l.stream.as_str(), l.line)).collect::<String>()}
                                </pre>
                            }.into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}
