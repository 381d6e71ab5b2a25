use super::*;
use crate::ui::{Badge, EmptyState, ErrorNote, Tone};
use leptos_meta::Title;
use leptos_router::{components::Form, hooks::use_query_map};

#[component]
pub fn AdminPage() -> impl IntoView {
    let query = use_query_map();
    let q = Memo::new(move |_| query.with(|q| q.get("q")));
    let set_role = ServerAction::<AdminSetRole>::new();
    let set_suspended = ServerAction::<AdminSetSuspended>::new();
    let users = Resource::new(
        move || (q.get(), set_role.version().get(), set_suspended.version().get()),
        |(q, ..)| admin_list_users(q, None),
    );
    let action_error = Signal::derive(move || {
        set_role.value().get().and_then(Result::err).or_else(|| set_suspended.value().get().and_then(Result::err))
    });
    view! {
        <Title text="Admin · Roundhouse"/>
        <section class="mx-auto max-w-6xl px-4 py-10">
            <h1 class="text-2xl font-semibold">"Admin"</h1>
            <crate::templates::admin_pages::AdminNav current="Users"/>
            <h2 class="mt-6 text-lg font-medium">"Users"</h2>
            <Form method="GET" action="" attr:class="mt-3 flex gap-3" attr:role="search">
                <input class="input max-w-sm" type="search" name="q" placeholder="Search email or name" value=move || q.get().unwrap_or_default()/>
                <button class="btn btn-secondary" type="submit">"Search"</button>
            </Form>
            <p class="mt-2 text-sm text-rose-400" role="alert">{move || action_error.get().map(|e| e.to_string())}</p>
            <Transition fallback=|| view! { <p class="mt-6 text-slate-400">"Loading users…"</p> }>
                {move || Suspend::new(async move {
                    match users.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(page) if page.users.is_empty() => view! {
                            <EmptyState title="No users match" body="Try another search."/>
                        }.into_any(),
                        Ok(page) => view! {
                            <p class="mt-4 text-sm text-slate-400">{format!("{} user{}", page.total, if page.total == 1 { "" } else { "s" })}</p>
                            <div class="overflow-x-auto">
                            <table class="table mt-2" data-testid="users">
                                <thead><tr><th>"User"</th><th>"Role"</th><th>"Status"</th><th>"Projects"</th><th>"Joined"</th><th>"Actions"</th></tr></thead>
                                <tbody>
                                    {page.users.into_iter().map(|u| {
                                        let id = u.user.id.to_string();
                                        let suspended = u.user.suspended;
                                        let other_role = if u.user.is_admin() { "user" } else { "admin" };
                                        let id2 = id.clone();
                                        view! {
                                            <tr data-email=u.user.email.clone()>
                                                <td><a class="font-medium text-indigo-300 hover:underline" href=format!("/admin/users/{}", u.user.id)>{u.user.name.clone()}</a><div class="text-xs text-slate-400">{u.user.email.clone()}</div></td>
                                                <td>{if u.user.is_admin() { view! { <Badge tone=Tone::Accent>"admin"</Badge> }.into_any() } else { view! { <Badge tone=Tone::Neutral>"user"</Badge> }.into_any() }}</td>
                                                <td>{if suspended {
                                                    view! { <Badge tone=Tone::Bad>"suspended"</Badge> }.into_any()
                                                } else if u.user.email_verified {
                                                    view! { <Badge tone=Tone::Good>"active"</Badge> }.into_any()
                                                } else {
                                                    view! { <Badge tone=Tone::Warn>"unverified"</Badge> }.into_any()
                                                }}</td>
                                                <td>{u.project_count}</td>
                                                <td>{u.user.created_at.format("%Y-%m-%d").to_string()}</td>
                                                <td>
                                                    <div class="flex flex-wrap gap-2">
                                                        <ActionForm action=set_role>
                                                            <input type="hidden" name="user_id" value=id2/>
                                                            <input type="hidden" name="role" value=other_role/>
                                                            <button type="submit" class="btn btn-ghost">{format!("Make {other_role}")}</button>
                                                        </ActionForm>
                                                        <ActionForm action=set_suspended>
                                                            <input type="hidden" name="user_id" value=id/>
                                                            <input type="hidden" name="suspended" value=if suspended { "false" } else { "true" }/>
                                                            <button type="submit" class=(if suspended { "btn btn-secondary" } else { "btn btn-danger" }).to_string()>
                                                                {if suspended { "Unsuspend" } else { "Suspend" }}
                                                            </button>
                                                        </ActionForm>
                                                    </div>
                                                </td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                            </div>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}
