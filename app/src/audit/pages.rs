//! The admin's audit log page and a user's own security log.

use super::*;
use crate::ui::{format_time, EmptyState, ErrorNote};
use leptos_meta::Title;
use leptos_router::{components::Form, hooks::use_query_map};

/// What an action means, for people.
fn describe(action: &str) -> &str {
    match action {
        "auth.sign_in" => "Signed in",
        "auth.sign_in_failed" => "Failed sign-in",
        "auth.password_change" => "Password changed",
        "auth.password_reset" => "Password reset by mail",
        "token.create" => "API token created",
        "token.revoke" => "API token revoked",
        "variable.reveal" => "Secret revealed",
        "plan.change" => "Plan changed",
        "user.role" => "Role changed",
        "user.suspend" => "Suspended",
        "user.unsuspend" => "Unsuspended",
        "project.delete" => "Project deleted",
        "environment.delete" => "Environment deleted",
        "service.delete" => "Service deleted",
        other => other,
    }
}

#[component]
pub fn AdminAuditPage() -> impl IntoView {
    let query = use_query_map();
    let q = Memo::new(move |_| query.with(|q| q.get("q")));
    let offset = Memo::new(move |_| query.with(|q| q.get("offset").and_then(|o| o.parse::<i64>().ok())));
    let page = Resource::new(move || (q.get(), offset.get()), |(q, offset)| admin_audit_log(q, offset));
    // A link to another page of the same search.
    let link = move |offset: i64| {
        let q = q.get().unwrap_or_default();
        format!("/admin/audit?q={}&offset={offset}", crate::domain::url_encode(&q))
    };
    view! {
        <Title text="Audit log · Admin · Roundhouse"/>
        <section class="mx-auto max-w-6xl px-4 py-10">
            <h1 class="text-2xl font-semibold">"Admin"</h1>
            <crate::templates::admin_pages::AdminNav current="Audit log"/>
            <h2 class="mt-6 text-lg font-medium">"Audit log"</h2>
            <p class="mt-1 text-sm text-slate-400">"Every privileged or destructive action, and every sign-in. Nothing here can be changed or deleted."</p>
            <Form method="GET" action="" attr:class="mt-3 flex gap-3" attr:role="search">
                <input class="input max-w-sm" type="search" name="q" placeholder="Action, target, email or address" value=move || q.get().unwrap_or_default()/>
                <button class="btn btn-secondary" type="submit">"Search"</button>
            </Form>
            <Transition fallback=|| view! { <p class="mt-6 text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(p) if p.entries.is_empty() => view! { <EmptyState title="Nothing matches" body="Try another search."/> }.into_any(),
                        Ok(p) => {
                            let shown = format!("{}–{} of {}", p.offset + 1, p.offset + p.entries.len() as i64, p.total);
                            let prev = (p.offset > 0).then(|| link((p.offset - p.page_size).max(0)));
                            let next = (p.offset + p.page_size < p.total).then(|| link(p.offset + p.page_size));
                            view! {
                                <p class="mt-4 text-sm text-slate-400">{shown}</p>
                                <div class="overflow-x-auto">
                                    <AuditTable entries=p.entries with_actor=true/>
                                </div>
                                <nav class="mt-4 flex gap-3" aria-label="Pages">
                                    {prev.map(|href| view! { <a class="btn btn-ghost" href=href>"Newer"</a> })}
                                    {next.map(|href| view! { <a class="btn btn-ghost" href=href>"Older"</a> })}
                                </nav>
                            }.into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn AuditTable(entries: Vec<AuditEntry>, with_actor: bool) -> impl IntoView {
    view! {
        <table class="table mt-2" data-testid="audit">
            <thead><tr>
                <th>"When"</th><th>"What"</th>{with_actor.then(|| view! { <th>"Who"</th> })}<th>"Target"</th><th>"From"</th><th>"Details"</th>
            </tr></thead>
            <tbody>
                {entries.into_iter().map(|e| view! {
                    <tr data-action=e.action.clone()>
                        <td class="whitespace-nowrap">{format_time(e.at)}</td>
                        <td>{describe(&e.action).to_string()}</td>
                        {with_actor.then(|| view! { <td>{e.actor.clone().unwrap_or_else(|| "—".into())}</td> })}
                        <td><code class="text-xs">{e.target.clone()}</code></td>
                        <td>{e.ip.clone().unwrap_or_default()}</td>
                        <td><code class="text-xs text-slate-400">{if e.details == "{}" { String::new() } else { e.details.clone() }}</code></td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// The account page's security log: sign-ins (and attempts) on the account, passwords,
/// tokens, reveals.
#[component]
pub fn SecurityLog() -> impl IntoView {
    let entries = Resource::new(|| (), |_| my_security_log());
    view! {
        <div class="card">
            <h2 class="text-lg font-medium">"Security log"</h2>
            <p class="mt-1 text-sm text-slate-400">"Sign-ins and failed attempts on your account, password changes, API tokens and revealed secrets — the latest 50."</p>
            <Transition fallback=|| view! { <p class="mt-4 text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match entries.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(list) if list.is_empty() => view! { <p class="mt-4 text-sm text-slate-400">"Nothing yet."</p> }.into_any(),
                        Ok(list) => view! { <div class="overflow-x-auto"><AuditTable entries=list with_actor=false/></div> }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}
