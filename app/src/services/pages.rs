use super::*;
use crate::{
    projects::Environment,
    ui::{field_error, form_error, Badge, ConfirmDialog, EmptyState, ErrorNote, Field, Tone},
};
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

pub(super) fn source_label(s: &Service) -> String {
    match s.source_kind {
        SourceKind::Database => format!("{} database", s.source),
        SourceKind::Upload if s.source.is_empty() => "no archive yet".into(),
        SourceKind::Upload => "uploaded archive".into(),
        _ => s.source.clone(),
    }
}

/// What the services card shows: the services, each one's newest deployment, and the links
/// between them.
pub type ServicesData = (Vec<Service>, Vec<crate::deployments::Deployment>, Vec<ServiceLink>);

/// The services card's resource, made by the page itself (not inside a suspended part of it),
/// so the server's value is the one the page hydrates with. Refetched when `create` saves and
/// when `tick` moves (live status).
pub fn services_resource(
    project_id: Memo<Option<Uuid>>,
    create: ServerAction<CreateService>,
    tick: ReadSignal<u32>,
) -> Resource<Result<ServicesData, AppError>> {
    Resource::new(
        move || (project_id.get(), create.version().get(), tick.get()),
        move |(project_id, ..)| async move {
            let project_id = project_id.ok_or_else(|| AppError::not_found("Project"))?;
            Ok::<_, AppError>((
                list_services(project_id).await?,
                crate::deployments::latest_deployments(project_id).await?,
                service_links(project_id).await?,
            ))
        },
    )
}

/// The services of a project, by environment, with the form to add one.
#[component]
pub fn ServicesCard(
    project_id: Uuid,
    environments: Vec<Environment>,
    services: Resource<Result<ServicesData, AppError>>,
    create: ServerAction<CreateService>,
    set_tick: WriteSignal<u32>,
) -> impl IntoView {
    crate::deployments::pages::use_event_source(format!("/api/v1/projects/{project_id}/events"), &["status", "resync"], move |_, _| {
        set_tick.update(|t| *t += 1)
    });
    // While a deployment is on its way, the card also reads again every few seconds: progress
    // shows even when the live stream cannot be heard (a proxy that buffers it, a lost event).
    Effect::new(move |_| {
        let moving = services.with(|s| matches!(s, Some(Ok((_, latest, _))) if latest.iter().any(|d| d.status.in_progress())));
        if moving {
            set_timeout(move || set_tick.update(|t| *t += 1), std::time::Duration::from_secs(3));
        }
    });
    let value = create.value();
    view! {
        <div class="card">
            <h2 class="font-medium">"Services"</h2>
            <Transition fallback=|| view! { <p class="mt-3 text-slate-400">"Loading services…"</p> }>
                {move || Suspend::new(async move {
                    match services.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok((list, _, _)) if list.is_empty() => view! {
                            <EmptyState title="No services yet" body="Add one below: a directory or git repository with your code, a container image, or a database."/>
                        }.into_any(),
                        Ok((list, latest, links)) => view! {
                            <super::canvas::StackProgress services=list.clone() latest=latest.clone()/>
                            <super::canvas::Canvas services=list.clone() latest=latest.clone() links/>
                            <ul class="mt-3 divide-y divide-slate-800" data-testid="services">
                                {list.into_iter().map(|s| {
                                    let status = latest.iter().find(|d| d.service_id == s.id).map(|d| d.status);
                                    view! {
                                    <li class="flex flex-wrap items-center justify-between gap-2 py-2" data-service=s.name.clone()>
                                        <span class="flex items-center gap-2">
                                            <a class="font-medium hover:text-indigo-300" href=format!("/services/{}", s.id)>{s.name.clone()}</a>
                                            {match status {
                                                Some(st) => view! { <crate::deployments::pages::StatusBadge status=st/> }.into_any(),
                                                None => view! { <span class="text-xs text-slate-500">"not deployed"</span> }.into_any(),
                                            }}
                                        </span>
                                        <span class="flex items-center gap-2 text-sm text-slate-400">
                                            <code class="max-w-64 truncate">{source_label(&s)}</code>
                                            <Badge tone=Tone::Neutral>{s.source_kind.as_str()}</Badge>
                                            <Badge tone=Tone::Accent>{s.environment.clone()}</Badge>
                                        </span>
                                    </li>
                                }}).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
            <h3 class="mt-6 text-sm font-medium text-slate-300">"Add a service"</h3>
            <ActionForm action=create attr:class="mt-2 grid gap-3 sm:grid-cols-2">
                <input type="hidden" name="project_id" value=project_id.to_string()/>
                <Field label="Name" name="name" placeholder="web" required=true error=field_error(value, "name")/>
                <label class="space-y-1">
                    <span class="block text-sm font-medium text-slate-300">"Environment"</span>
                    <select class="input" name="environment_id">
                        {environments.into_iter().map(|e| view! { <option value=e.id.to_string()>{e.name}</option> }).collect_view()}
                    </select>
                </label>
                <label class="space-y-1">
                    <span class="block text-sm font-medium text-slate-300">"Source"</span>
                    <select class="input" name="source_kind">
                        <option value="upload">"Upload an archive (.tar.gz)"</option>
                        <option value="git">"Git repository (https or ssh)"</option>
                        <option value="database">"Database (postgres or redis)"</option>
                        <option value="image">"Container image (Kubernetes)"</option>
                        <option value="directory">"Directory on this machine (admins)"</option>
                    </select>
                    <p class="text-sm text-rose-400">{field_error(value, "source_kind")}</p>
                </label>
                <Field label="Git URL, engine, image or path" name="source" placeholder="https://…/repo.git, postgres, nginx:1.27 (empty for an upload)"
                    hint="An upload service gets its code from the archive you upload on its page." error=field_error(value, "source")/>
                <Field label="Port (optional)" name="port" input_type="number" placeholder="8080" error=field_error(value, "port")/>
                <div class="flex items-end">
                    <button type="submit" class="btn btn-primary" disabled=move || create.pending().get()>"Add service"</button>
                </div>
            </ActionForm>
            <p class="mt-2 text-sm text-rose-400" role="alert">{form_error(value, &["name", "source_kind", "source", "port"])}</p>
        </div>
    }
}

#[component]
pub fn ServicePage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|p| p.get("id").and_then(|s| Uuid::parse_str(&s).ok())));
    let update = ServerAction::<UpdateService>::new();
    let service = Resource::new(
        move || (id.get(), update.version().get()),
        |(id, _)| async move {
            match id {
                Some(id) => get_service(id).await,
                None => Err(AppError::not_found("Service")),
            }
        },
    );
    let toasts = crate::ui::use_toasts();
    Effect::new(move |_| {
        if matches!(update.value().get(), Some(Ok(_))) {
            toasts.show("Settings saved");
        }
    });
    view! {
        <section class="mx-auto max-w-6xl px-4 py-10">
            <Transition fallback=|| view! { <p class="text-slate-400">"Loading service…"</p> }>
                {move || Suspend::new(async move {
                    match service.await {
                        Err(e) => {
                            crate::ui::respond_with_status(&e);
                            view! { <Title text="Service · Roundhouse"/><ErrorNote error=e/> }.into_any()
                        }
                        Ok(s) => view! { <ServiceView service=s update/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn ServiceView(service: Service, update: ServerAction<UpdateService>) -> impl IntoView {
    let delete = ServerAction::<DeleteService>::new();
    let value = update.value();
    let id = service.id;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    view! {
        <Title text=format!("{} · Roundhouse", service.name)/>
        <nav class="text-sm text-slate-400" aria-label="Breadcrumb">
            <a href="/dashboard" class="hover:underline">"Projects"</a> " / "
            <a href=format!("/projects/{}", service.project_id) class="hover:underline">{service.project.clone()}</a> " / "
            {service.environment.clone()} " / " {service.name.clone()}
        </nav>
        <div class="mt-2 flex flex-wrap items-start justify-between gap-4">
            <div>
                <h1 class="text-2xl font-semibold" data-testid="service-name">{service.name.clone()}</h1>
                <p class="mt-1 flex items-center gap-2 text-sm text-slate-400">
                    <Badge tone=Tone::Neutral>{service.source_kind.as_str()}</Badge>
                    // An upload service's archive is shown (and kept current) in its own card.
                    {(service.source_kind != SourceKind::Upload).then(|| view! { <code>{source_label(&service)}</code> })}
                </p>
            </div>
            <ConfirmDialog label="Remove service" question=format!("Remove \"{}\" and its variables?", service.name)>
                <ActionForm action=delete>
                    <input type="hidden" name="id" value=id.to_string()/>
                    <button type="submit" class="btn btn-danger">"Remove for good"</button>
                </ActionForm>
            </ConfirmDialog>
        </div>
        <div class="mt-8 grid gap-6 lg:grid-cols-5">
            <div class="space-y-6 lg:col-span-3">
                {(service.source_kind == SourceKind::Upload).then(|| view! { <SourceArchiveCard service_id=id/> })}
                <crate::deployments::pages::DeploymentsCard service_id=id project_id=service.project_id/>
                <VariablesCard service_id=id/>
                <crate::deployments::pages::MetricsCard service_id=id/>
                <crate::billing::pages::ServiceUsageCard service_id=id/>
            </div>
            <div class="card lg:col-span-2">
                <h2 class="font-medium">"Settings"</h2>
                <ActionForm action=update attr:class="mt-3 grid gap-3 sm:grid-cols-2">
                    <input type="hidden" name="id" value=id.to_string()/>
                    <Field label="Name" name="name" value=service.name.clone() required=true error=field_error(value, "name")/>
                    {if service.source_kind == SourceKind::Upload {
                        // Changed by uploading an archive, not here.
                        view! { <input type="hidden" name="source" value=""/> }.into_any()
                    } else {
                        view! { <Field label="Source" name="source" value=service.source.clone() required=true error=field_error(value, "source")/> }.into_any()
                    }}
                    <Field label="Build command" name="build_command" value=opt(&service.build_command) placeholder="detected from the source" error=field_error(value, "build_command")/>
                    <Field label="Start command" name="start_command" value=opt(&service.start_command) placeholder="detected from the source" error=field_error(value, "start_command")/>
                    <Field label="Port" name="port" input_type="number" value=service.port.map(|p| p.to_string()).unwrap_or_default() error=field_error(value, "port")/>
                    <Field label="Replicas" name="replicas" input_type="number" value=service.replicas.to_string() error=field_error(value, "replicas")/>
                    <Field label="CPU (millicores)" name="cpu_millis" input_type="number" value=service.cpu_millis.to_string() error=field_error(value, "cpu_millis")/>
                    <Field label="Memory (MB)" name="memory_mb" input_type="number" value=service.memory_mb.to_string() error=field_error(value, "memory_mb")/>
                    <Field label="Health-check path" name="healthcheck_path" value=opt(&service.healthcheck_path) placeholder="/health" error=field_error(value, "healthcheck_path")/>
                    <Field label="Health-check timeout (s)" name="healthcheck_timeout_secs" input_type="number" value=service.healthcheck_timeout_secs.to_string() error=field_error(value, "healthcheck_timeout_secs")/>
                    <label class="space-y-1">
                        <span class="block text-sm font-medium text-slate-300">"Restart policy"</span>
                        <select class="input" name="restart_policy">
                            {[(RestartPolicy::OnFailure, "On failure"), (RestartPolicy::Always, "Always"), (RestartPolicy::Never, "Never")].into_iter().map(|(p, l)| {
                                view! { <option value=p.as_str() selected=service.restart_policy == p>{l}</option> }
                            }).collect_view()}
                        </select>
                    </label>
                    <Field label="Restart limit" name="restart_max" input_type="number" value=service.restart_max.to_string() error=field_error(value, "restart_max")/>
                    <Field label="Process limit" name="max_processes" input_type="number" value=service.max_processes.to_string()
                        hint="Processes and threads at once (16–4096)" error=field_error(value, "max_processes")/>
                    <Field label="Volume mount path" name="volume_path" value=opt(&service.volume_path) placeholder="/data" error=field_error(value, "volume_path")/>
                    <Field label="Cron schedule" name="cron_schedule" value=opt(&service.cron_schedule) placeholder="*/15 * * * *" error=field_error(value, "cron_schedule")/>
                    <Field label="Pre-deploy command" name="pre_deploy_command" value=opt(&service.pre_deploy_command) placeholder="python manage.py migrate" error=field_error(value, "pre_deploy_command")/>
                    <p class="text-sm text-rose-400 sm:col-span-2" role="alert">{form_error(value, &[
                        "name", "source", "build_command", "start_command", "port", "replicas", "cpu_millis", "memory_mb",
                        "healthcheck_path", "healthcheck_timeout_secs", "restart_max", "max_processes", "volume_path", "cron_schedule", "pre_deploy_command",
                    ])}</p>
                    <div><button type="submit" class="btn btn-primary">"Save settings"</button></div>
                </ActionForm>
            </div>
        </div>
    }
}

#[component]
fn VariablesCard(service_id: Uuid) -> impl IntoView {
    let set = ServerAction::<SetVariable>::new();
    let delete = ServerAction::<DeleteVariable>::new();
    let variables = Resource::new(move || (set.version().get(), delete.version().get()), move |_| list_variables(service_id));
    let value = set.value();
    view! {
        <div class="card">
            <h2 class="font-medium">"Variables"</h2>
            <p class="mt-1 text-sm text-slate-400">
                "Reference other values with " <code>"${{Service.NAME}}"</code> ", " <code>"${{shared.NAME}}"</code> " or "
                <code>"${{NAME}}"</code> "; generate with " <code>"${{secret(32)}}"</code> " or " <code>"${{randomInt(1, 100)}}"</code>
                ". Values are encrypted; secrets stay hidden until you reveal them."
            </p>
            <Transition fallback=|| view! { <p class="mt-3 text-slate-400">"Loading variables…"</p> }>
                {move || Suspend::new(async move {
                    match variables.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(list) if list.is_empty() => view! { <p class="mt-4 text-sm text-slate-500">"No variables yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <table class="table mt-4" data-testid="variables">
                                <thead><tr><th>"Name"</th><th>"Value"</th><th></th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|v| view! { <VariableRow service_id variable=v delete/> }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                    }
                })}
            </Transition>
            <ActionForm action=set attr:class="mt-4 grid gap-3 sm:grid-cols-[1fr_2fr]">
                <input type="hidden" name="service_id" value=service_id.to_string()/>
                <Field label="Name" name="name" placeholder="DATABASE_URL" required=true error=field_error(value, "name")/>
                <Field label="Value" name="value" placeholder="${{Postgres.DATABASE_URL}}" error=field_error(value, "value")/>
                <label class="flex items-center gap-2 text-sm text-slate-300">
                    <input type="checkbox" name="secret" value="true"/> "Secret (hide the value)"
                </label>
                <div class="sm:text-right"><button type="submit" class="btn btn-primary">"Save variable"</button></div>
            </ActionForm>
            <p class="mt-2 text-sm text-rose-400" role="alert">{form_error(value, &["name", "value"])}</p>
        </div>
    }
}

#[component]
fn VariableRow(service_id: Uuid, variable: Variable, delete: ServerAction<DeleteVariable>) -> impl IntoView {
    let reveal = ServerAction::<RevealVariable>::new();
    let name = variable.name.clone();
    let shown = move || reveal.value().get().and_then(Result::ok);
    let masked = variable.value.is_none();
    let plain = variable.value.clone().unwrap_or_default();
    let (name_reveal, name_delete) = (name.clone(), name.clone());
    view! {
        <tr data-variable=name.clone()>
            <td><code>{name.clone()}</code>{variable.secret.then(|| view! { " " <Badge tone=Tone::Warn>"secret"</Badge> })}</td>
            <td class="max-w-xs break-all">
                {move || match (masked, shown()) {
                    (false, _) => view! { <code>{plain.clone()}</code> }.into_any(),
                    (true, Some(v)) => view! { <code data-testid="revealed">{v}</code> }.into_any(),
                    (true, None) => view! { <span class="tracking-widest text-slate-500">"••••••"</span> }.into_any(),
                }}
            </td>
            <td class="whitespace-nowrap text-right">
                {masked.then(|| view! {
                    <ActionForm action=reveal attr:class="inline">
                        <input type="hidden" name="service_id" value=service_id.to_string()/>
                        <input type="hidden" name="name" value=name_reveal.clone()/>
                        <button type="submit" class="btn btn-ghost">"Reveal"</button>
                    </ActionForm>
                })}
                <ActionForm action=delete attr:class="inline">
                    <input type="hidden" name="service_id" value=service_id.to_string()/>
                    <input type="hidden" name="name" value=name_delete.clone()/>
                    <button type="submit" class="btn btn-ghost text-rose-300">"Delete"</button>
                </ActionForm>
            </td>
        </tr>
    }
}

fn human_bytes(n: i64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KB", n as f64 / (1 << 10) as f64),
        n => format!("{n} bytes"),
    }
}

/// The archive an upload service deploys from, and the control to upload a new one (with
/// its progress).
#[component]
fn SourceArchiveCard(service_id: Uuid) -> impl IntoView {
    let (version, set_version) = signal(0u32);
    let current = Resource::new(move || version.get(), move |_| current_upload(service_id));
    let (progress, set_progress) = signal(None::<u32>);
    let (message, set_message) = signal(None::<Result<String, String>>);
    let input = NodeRef::<leptos::html::Input>::new();
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        send_archive(service_id, input, set_progress, set_message, set_version);
        #[cfg(not(feature = "hydrate"))]
        let _ = (input, set_progress, set_message, set_version);
    };
    view! {
        <div class="card" data-testid="source-archive">
            <h2 class="font-medium">"Source archive"</h2>
            <p class="mt-1 text-sm text-slate-400">
                "Upload a " <code>".tar.gz"</code> " of your code, e.g. " <code>"tar czf app.tar.gz -C path/to/app ."</code>
                ". The next deployment builds it."
            </p>
            <Transition fallback=|| view! { <p class="mt-3 text-sm text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match current.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(None) => view! { <p class="mt-3 text-sm text-amber-300" data-testid="no-archive">"No archive yet: upload one to deploy."</p> }.into_any(),
                        Ok(Some(u)) => view! {
                            <p class="mt-3 text-sm text-slate-300" data-testid="current-archive">
                                {format!("Current archive: {} entries, {}, uploaded {} — sha256 ", u.files, human_bytes(u.size_bytes), u.created_at.format("%Y-%m-%d %H:%M UTC"))}
                                <code>{u.sha256.chars().take(12).collect::<String>()}</code>
                            </p>
                        }.into_any(),
                    }
                })}
            </Transition>
            <form class="mt-3 flex flex-wrap items-center gap-3" on:submit=on_submit>
                <input node_ref=input type="file" name="archive" accept=".tar.gz,.tgz,application/gzip" required=true
                    class="text-sm text-slate-300 file:btn file:btn-ghost" aria-label="Source archive (.tar.gz)"/>
                <button type="submit" class="btn btn-primary" disabled=move || progress.get().is_some()>
                    {move || match progress.get() { Some(p) => format!("Uploading… {p}%"), None => "Upload".to_string() }}
                </button>
            </form>
            {move || progress.get().map(|p| view! {
                <div class="mt-2 h-1.5 w-full rounded bg-slate-800" role="progressbar" aria-valuenow=p aria-valuemin="0" aria-valuemax="100">
                    <div class="h-1.5 rounded bg-indigo-500" style=format!("width: {p}%")></div>
                </div>
            })}
            {move || message.get().map(|m| match m {
                Ok(text) => view! { <p class="mt-2 text-sm text-emerald-300" role="status" data-testid="upload-ok">{text}</p> }.into_any(),
                Err(text) => view! { <p class="mt-2 text-sm text-rose-400" role="alert" data-testid="upload-error">{text}</p> }.into_any(),
            })}
        </div>
    }
}

/// Sends the chosen file with `XMLHttpRequest`, which (unlike `fetch`) reports upload progress.
#[cfg(feature = "hydrate")]
fn send_archive(
    service_id: Uuid,
    input: NodeRef<leptos::html::Input>,
    set_progress: WriteSignal<Option<u32>>,
    set_message: WriteSignal<Option<Result<String, String>>>,
    set_version: WriteSignal<u32>,
) {
    use wasm_bindgen::{closure::Closure, JsCast};
    let Some(file) = input.get_untracked().and_then(|el| el.files()).and_then(|f| f.get(0)) else {
        set_message.set(Some(Err("Choose a .tar.gz file first.".into())));
        return;
    };
    let Ok(xhr) = web_sys::XmlHttpRequest::new() else { return };
    if xhr.open("POST", &format!("/api/v1/services/{service_id}/source")).is_err()
        || xhr.set_request_header("Content-Type", "application/gzip").is_err()
    {
        return;
    }
    set_message.set(None);
    set_progress.set(Some(0));
    let on_progress = Closure::<dyn Fn(web_sys::ProgressEvent)>::new(move |e: web_sys::ProgressEvent| {
        if e.length_computable() && e.total() > 0.0 {
            set_progress.set(Some((e.loaded() / e.total() * 100.0).min(100.0) as u32));
        }
    });
    if let Ok(upload) = xhr.upload() {
        upload.set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
    }
    on_progress.forget();
    let done = xhr.clone();
    let on_done = Closure::once_into_js(move || {
        set_progress.set(None);
        let status = done.status().unwrap_or(0);
        let text = done.response_text().ok().flatten().unwrap_or_default();
        if (200..300).contains(&status) {
            set_message.set(Some(Ok("Uploaded. Press Deploy to build and run it.".into())));
            set_version.update(|v| *v += 1);
        } else {
            let reason = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("The upload failed ({status})."));
            set_message.set(Some(Err(reason)));
        }
    });
    xhr.set_onloadend(Some(on_done.unchecked_ref()));
    if xhr.send_with_opt_blob(Some(&file)).is_err() {
        set_progress.set(None);
        set_message.set(Some(Err("The upload could not be sent.".into())));
    }
}
