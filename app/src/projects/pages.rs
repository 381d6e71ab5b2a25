use super::*;
use crate::ui::{field_error, form_error, Badge, ConfirmDialog, EmptyState, ErrorNote, Field, Tone};
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

#[component]
pub fn DashboardPage() -> impl IntoView {
    let create = ServerAction::<CreateProject>::new();
    let delete = ServerAction::<DeleteProject>::new();
    let projects = Resource::new(move || (create.version().get(), delete.version().get()), |_| list_projects());
    let value = create.value();
    let session = crate::auth::use_session();
    view! {
        <Title text="Dashboard · Roundhouse"/>
        <section class="mx-auto max-w-6xl px-4 py-10">
            <div class="flex flex-wrap items-end justify-between gap-4">
                <div>
                    <h1 class="text-2xl font-semibold">"Projects"</h1>
                    <p class="text-sm text-slate-400">"Each project holds environments and the services that run in them."</p>
                </div>
            </div>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match session.me.await {
                        Ok(Some(user)) if !user.email_verified => view! {
                            <div class="mt-6 rounded-lg border border-amber-800 bg-amber-950/50 p-4 text-sm text-amber-200" role="status">
                                "Confirm your email address to create projects. We sent a link to " {user.email} ". "
                                <a class="underline" href="/account">"Send it again"</a>
                            </div>
                        }.into_any(),
                        _ => ().into_any(),
                    }
                })}
            </Suspense>
            <div class="card mt-6">
                <h2 class="font-medium">"New project"</h2>
                <ActionForm action=create attr:class="mt-3 grid gap-3 sm:grid-cols-[1fr_2fr_auto] sm:items-start">
                    <Field label="Name" name="name" placeholder="my-shop" required=true error=field_error(value, "name")/>
                    <Field label="Description (optional)" name="description" placeholder="What it is for" error=field_error(value, "description")/>
                    <button type="submit" class="btn btn-primary sm:mt-6" disabled=move || create.pending().get()>
                        {move || if create.pending().get() { "Creating…" } else { "Create project" }}
                    </button>
                </ActionForm>
                <p class="mt-2 text-sm text-rose-400" role="alert">{form_error(value, &["name", "description"])}</p>
            </div>
            <Transition fallback=|| view! { <p class="mt-6 text-slate-400">"Loading projects…"</p> }>
                {move || Suspend::new(async move {
                    match projects.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <EmptyState title="No projects yet" body="Create your first project above; it starts with a production environment."/>
                        }.into_any(),
                        Ok(list) => view! {
                            <ul class="mt-6 grid gap-4 sm:grid-cols-2 lg:grid-cols-3" data-testid="project-list">
                                {list.into_iter().map(|p| view! {
                                    <li class="card flex flex-col">
                                        <a href=format!("/projects/{}", p.id) class="text-lg font-medium hover:text-indigo-300">{p.name.clone()}</a>
                                        <p class="mt-1 line-clamp-2 text-sm text-slate-400">{
                                            if p.description.is_empty() { "No description".to_string() } else { p.description.clone() }
                                        }</p>
                                        <div class="mt-auto flex items-center gap-2 pt-4 text-xs text-slate-500">
                                            <Badge tone=Tone::Neutral>{format!("{} environment{}", p.environment_count, if p.environment_count == 1 { "" } else { "s" })}</Badge>
                                            <span>"updated " {crate::ui::format_time(p.updated_at)}</span>
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
pub fn ProjectPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|p| p.get("id").and_then(|s| Uuid::parse_str(&s).ok())));
    let update = ServerAction::<UpdateProject>::new();
    let create_env = ServerAction::<CreateEnvironment>::new();
    let delete_env = ServerAction::<DeleteEnvironment>::new();
    let delete = ServerAction::<DeleteProject>::new();
    let project = Resource::new(
        move || (id.get(), update.version().get(), create_env.version().get(), delete_env.version().get()),
        |(id, ..)| async move {
            match id {
                Some(id) => get_project(id).await,
                None => Err(AppError::not_found("Project")),
            }
        },
    );
    // Made here, beside the project's, not inside its suspended view: a resource made inside a
    // suspended part may not hydrate with the server's value.
    let create_service = ServerAction::<crate::services::CreateService>::new();
    let (tick, set_tick) = signal(0u32);
    let services = crate::services::pages::services_resource(id, create_service, tick);
    let toasts = crate::ui::use_toasts();
    Effect::new(move |_| {
        if matches!(update.value().get(), Some(Ok(_))) {
            toasts.show("Project saved");
        }
    });
    view! {
        <section class="mx-auto max-w-6xl px-4 py-10">
            <Transition fallback=|| view! { <p class="text-slate-400">"Loading project…"</p> }>
                {move || Suspend::new(async move {
                    match project.await {
                        Err(e) => {
                            crate::ui::respond_with_status(&e);
                            view! { <Title text="Project · Roundhouse"/><ErrorNote error=e/> }.into_any()
                        }
                        Ok(p) => view! { <ProjectView project=p update create_env delete_env delete services create_service set_tick/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn ProjectView(
    project: Project,
    update: ServerAction<UpdateProject>,
    create_env: ServerAction<CreateEnvironment>,
    delete_env: ServerAction<DeleteEnvironment>,
    delete: ServerAction<DeleteProject>,
    services: Resource<Result<crate::services::pages::ServicesData, AppError>>,
    create_service: ServerAction<crate::services::CreateService>,
    set_tick: WriteSignal<u32>,
) -> impl IntoView {
    let update_value = update.value();
    let env_value = create_env.value();
    let id = project.id.to_string();
    let (id_delete, id_envs, id_new_env, id_update) = (id.clone(), id.clone(), id.clone(), id);
    view! {
        <Title text=format!("{} · Roundhouse", project.name)/>
        <nav class="text-sm text-slate-400" aria-label="Breadcrumb">
            <a href="/dashboard" class="hover:underline">"Projects"</a> " / " {project.name.clone()}
        </nav>
        <div class="mt-2 flex flex-wrap items-start justify-between gap-4">
            <div>
                <h1 class="text-2xl font-semibold" data-testid="project-name">{project.name.clone()}</h1>
                <p class="text-sm text-slate-400">{if project.description.is_empty() { "No description".to_string() } else { project.description.clone() }}</p>
            </div>
            <ConfirmDialog label="Delete project" question=format!("Delete \"{}\" and everything in it? This cannot be undone.", project.name)>
                <ActionForm action=delete>
                    <input type="hidden" name="id" value=id_delete/>
                    <button type="submit" class="btn btn-danger">"Delete for good"</button>
                </ActionForm>
            </ConfirmDialog>
        </div>
        <p class="mt-2 text-sm text-rose-400" role="alert">{move || delete.value().get().and_then(Result::err).map(|e| e.to_string())}</p>

        <div class="mt-8 grid gap-6 lg:grid-cols-3">
            <div class="space-y-6 lg:col-span-2">
                <crate::services::pages::ServicesCard project_id=project.id environments=project.environments.clone() services create=create_service set_tick/>
                <div class="card">
                    <h2 class="font-medium">"Environments"</h2>
                    <ul class="mt-3 divide-y divide-slate-800" data-testid="environments">
                        {project.environments.clone().into_iter().map(|env| {
                            let is_prod = env.name == "production";
                            let project_id = id_envs.clone();
                            view! {
                                <li class="flex items-center justify-between py-2">
                                    <span class="flex items-center gap-2">
                                        {env.name.clone()}
                                        {is_prod.then(|| view! { <Badge tone=Tone::Accent>"default"</Badge> })}
                                    </span>
                                    {(!is_prod).then(|| view! {
                                        <ActionForm action=delete_env>
                                            <input type="hidden" name="project_id" value=project_id/>
                                            <input type="hidden" name="environment_id" value=env.id.to_string()/>
                                            <button type="submit" class="btn btn-ghost text-rose-300">"Remove"</button>
                                        </ActionForm>
                                    })}
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                    <ActionForm action=create_env attr:class="mt-4 flex flex-wrap items-start gap-3">
                        <input type="hidden" name="project_id" value=id_new_env/>
                        <div class="min-w-48 flex-1">
                            <Field label="New environment" name="name" placeholder="staging" required=true error=field_error(env_value, "name")/>
                        </div>
                        <button type="submit" class="btn btn-secondary mt-6">"Add environment"</button>
                    </ActionForm>
                    <p class="mt-2 text-sm text-rose-400" role="alert">{form_error(env_value, &["name"])}</p>
                </div>
            </div>
            <div class="card h-fit">
                <h2 class="font-medium">"Settings"</h2>
                <ActionForm action=update attr:class="mt-3 space-y-4">
                    <input type="hidden" name="id" value=id_update/>
                    <Field label="Name" name="name" value=project.name.clone() required=true error=field_error(update_value, "name")/>
                    <Field label="Description" name="description" value=project.description.clone() error=field_error(update_value, "description")/>
                    <p class="text-sm text-rose-400" role="alert">{form_error(update_value, &["name", "description"])}</p>
                    <button type="submit" class="btn btn-primary">"Save"</button>
                </ActionForm>
                <p class="mt-4 text-xs text-slate-500">"Created " {crate::ui::format_time(project.created_at)}</p>
            </div>
        </div>
    }
}
