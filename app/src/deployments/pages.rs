//! The deployment page (phases, events, live logs) and the deployments card of a service page.

use super::*;
use crate::ui::{format_time, Badge, ErrorNote, Tone};
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

fn tone(s: Status) -> Tone {
    match s {
        Status::Running => Tone::Good,
        Status::Queued | Status::Building | Status::Deploying => Tone::Accent,
        Status::Failed | Status::Crashed => Tone::Bad,
        Status::Cancelled | Status::Removed => Tone::Neutral,
    }
}

/// A deployment status badge.
#[component]
pub fn StatusBadge(status: Status) -> impl IntoView {
    view! { <span data-testid="status"><Badge tone=tone(status)>{status.as_str()}</Badge></span> }
}

/// Calls `on_event` for every server-sent event named `name` at `url`, while the component lives.
pub fn use_event_source(url: String, names: &'static [&'static str], on_event: impl Fn(&str, String) + 'static) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::{closure::Closure, JsCast};
        type Opened = Option<(web_sys::EventSource, Vec<Closure<dyn Fn(web_sys::MessageEvent)>>)>;
        // Opened on the next frame, once the page has hydrated: an event handled while a
        // suspended part of the page is still hydrating (the stream's first `resync` comes at
        // once) would be lost, and the page would stay as the server rendered it.
        let opened: std::rc::Rc<std::cell::RefCell<Opened>> = Default::default();
        let closed = std::rc::Rc::new(std::cell::Cell::new(false));
        let on_event = std::rc::Rc::new(on_event);
        let (slot, gone) = (opened.clone(), closed.clone());
        request_animation_frame(move || {
            if gone.get() {
                return;
            }
            let Ok(source) = web_sys::EventSource::new(&url) else { return };
            let mut closures = Vec::new();
            for name in names {
                let f = on_event.clone();
                let n = name.to_string();
                let cb = Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                    f(&n, e.data().as_string().unwrap_or_default());
                });
                let _ = source.add_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
                closures.push(cb);
            }
            *slot.borrow_mut() = Some((source, closures));
        });
        let held = send_wrapper::SendWrapper::new((opened, closed));
        on_cleanup(move || {
            held.1.set(true);
            if let Some((source, _)) = held.0.borrow_mut().take() {
                source.close();
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (url, names, on_event);
    }
}

/// Deploy button and history, on a service page. Updates live.
#[component]
pub fn DeploymentsCard(service_id: Uuid, project_id: Uuid) -> impl IntoView {
    let deploy = ServerAction::<DeployService>::new();
    let act = ServerAction::<DeploymentAction>::new();
    let (tick, set_tick) = signal(0u32);
    let deployments = Resource::new(
        move || (deploy.version().get(), act.version().get(), tick.get()),
        move |_| list_deployments(service_id),
    );
    use_event_source(format!("/api/v1/projects/{project_id}/events"), &["status", "resync"], move |_, data| {
        let relevant = serde_json::from_str::<StatusChange>(&data).map(|c| c.service_id == service_id).unwrap_or(true);
        if relevant {
            set_tick.update(|t| *t += 1);
        }
    });
    let deploy_error = move || deploy.value().get().and_then(|r| r.err()).map(|e| e.to_string());
    let act_error = move || act.value().get().and_then(|r| r.err()).map(|e| e.to_string());
    view! {
        <div class="card">
            <div class="flex items-center justify-between gap-3">
                <h2 class="font-medium">"Deployments"</h2>
                <ActionForm action=deploy>
                    <input type="hidden" name="service_id" value=service_id.to_string()/>
                    <button type="submit" class="btn btn-primary" data-testid="deploy" disabled=move || deploy.pending().get()>
                        {move || if deploy.pending().get() { "Deploying…" } else { "Deploy" }}
                    </button>
                </ActionForm>
            </div>
            <p class="mt-2 whitespace-pre-wrap text-sm text-rose-400" role="alert">{deploy_error}</p>
            <p class="text-sm text-rose-400" role="alert">{act_error}</p>
            <Transition fallback=|| view! { <p class="mt-3 text-slate-400">"Loading deployments…"</p> }>
                {move || Suspend::new(async move {
                    match deployments.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <p class="mt-4 text-sm text-slate-500">"Not deployed yet. Press Deploy to build and start it."</p>
                        }.into_any(),
                        Ok(list) => view! {
                            <ul class="mt-3 divide-y divide-slate-800" data-testid="deployments">
                                {list.into_iter().map(|d| view! { <DeploymentRow d act/> }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}

#[component]
fn DeploymentRow(d: Deployment, act: ServerAction<DeploymentAction>) -> impl IntoView {
    let can_rollback = d.running_at.is_some() && d.status != Status::Running;
    let id = d.id.to_string();
    view! {
        <li class="flex flex-wrap items-center justify-between gap-2 py-2">
            <div class="min-w-0">
                <a class="font-medium hover:text-indigo-300" href=format!("/deployments/{}", d.id)>{format!("#{}", d.number)}</a>
                " " <StatusBadge status=d.status/>
                <span class="ml-2 text-xs text-slate-500">{d.trigger.as_str()} " · " {format_time(d.created_at)}</span>
                <p class="truncate text-sm text-slate-400">{d.reason.clone()}</p>
            </div>
            {can_rollback.then(|| view! {
                <ActionForm action=act>
                    <input type="hidden" name="id" value=id.clone()/>
                    <input type="hidden" name="action" value="rollback"/>
                    <button type="submit" class="btn btn-ghost text-sm">"Roll back to this"</button>
                </ActionForm>
            })}
        </li>
    }
}

/// CPU and memory of a service over the last hour, as two sparklines.
#[component]
pub fn MetricsCard(service_id: Uuid) -> impl IntoView {
    let metrics = Resource::new(|| (), move |_| service_metrics(service_id));
    view! {
        <div class="card">
            <h2 class="font-medium">"Usage (last hour)"</h2>
            <Transition fallback=|| view! { <p class="mt-3 text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match metrics.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(points) if points.is_empty() => view! {
                            <p class="mt-3 text-sm text-slate-500">"No samples yet: usage is sampled every 5 seconds while the service runs."</p>
                        }.into_any(),
                        Ok(points) => {
                            let cpu: Vec<f64> = points.iter().map(|p| p.cpu_percent as f64).collect();
                            let mem: Vec<f64> = points.iter().map(|p| p.memory_bytes as f64 / 1_048_576.0).collect();
                            let last = points.last().cloned();
                            view! {
                                <div class="mt-3 grid gap-4 sm:grid-cols-2" data-testid="metrics">
                                    <Sparkline label="CPU" values=cpu unit="%" current=last.as_ref().map(|p| format!("{:.1}%", p.cpu_percent)).unwrap_or_default()/>
                                    <Sparkline label="Memory" values=mem unit="MB" current=last.as_ref().map(|p| format!("{:.1} MB", p.memory_bytes as f64 / 1_048_576.0)).unwrap_or_default()/>
                                </div>
                            }.into_any()
                        }
                    }
                })}
            </Transition>
        </div>
    }
}

#[component]
fn Sparkline(label: &'static str, values: Vec<f64>, unit: &'static str, current: String) -> impl IntoView {
    let max = values.iter().cloned().fold(0.0_f64, f64::max).max(1e-9);
    let n = values.len().max(2) as f64 - 1.0;
    let points: String = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 / n * 200.0, 48.0 - v / max * 44.0))
        .collect::<Vec<_>>()
        .join(" ");
    view! {
        <figure>
            <figcaption class="flex justify-between text-sm text-slate-400"><span>{label}</span><span class="text-slate-200">{current}</span></figcaption>
            <svg viewBox="0 0 200 50" class="mt-1 h-16 w-full" role="img" aria-label=format!("{label} over the last hour, peak {max:.1} {unit}")>
                <polyline points=points fill="none" stroke="currentColor" stroke-width="1.5" class="text-indigo-400"/>
            </svg>
        </figure>
    }
}

const PHASES: [Status; 4] = [Status::Queued, Status::Building, Status::Deploying, Status::Running];

#[component]
pub fn DeploymentPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|p| p.get("id").and_then(|s| Uuid::parse_str(&s).ok())));
    let (tick, set_tick) = signal(0u32);
    let act = ServerAction::<DeploymentAction>::new();
    let detail = Resource::new(
        move || (id.get(), tick.get(), act.version().get()),
        |(id, _, _)| async move {
            match id {
                Some(id) => get_deployment(id).await,
                None => Err(AppError::not_found("Deployment")),
            }
        },
    );
    view! {
        <section class="mx-auto max-w-6xl px-4 py-10">
            <Transition fallback=|| view! { <p class="text-slate-400">"Loading deployment…"</p> }>
                {move || Suspend::new(async move {
                    match detail.await {
                        Err(e) => {
                            crate::ui::respond_with_status(&e);
                            view! { <Title text="Deployment · Roundhouse"/><ErrorNote error=e/> }.into_any()
                        }
                        Ok(d) => view! { <DeploymentView d act/> }.into_any(),
                    }
                })}
            </Transition>
            {move || id.get().map(|id| view! { <LogViewer id on_status=move || set_tick.update(|t| *t += 1)/> })}
        </section>
    }
}

#[component]
fn DeploymentView(d: DeploymentDetail, act: ServerAction<DeploymentAction>) -> impl IntoView {
    let dep = d.deployment.clone();
    let reached: Vec<Status> = d.events.iter().map(|e| e.status).collect();
    let action_button = move |action: &'static str, label: &'static str, id: Uuid| {
        view! {
            <ActionForm action=act>
                <input type="hidden" name="id" value=id.to_string()/>
                <input type="hidden" name="action" value=action/>
                <button type="submit" class="btn btn-ghost" data-action=action>{label}</button>
            </ActionForm>
        }
    };
    let mut actions = Vec::new();
    if dep.status.in_progress() {
        actions.push(action_button("cancel", "Cancel", dep.id));
    }
    if dep.status == Status::Running {
        actions.push(action_button("restart", "Restart", dep.id));
        actions.push(action_button("stop", "Stop", dep.id));
    }
    if dep.running_at.is_some() && dep.status != Status::Running {
        actions.push(action_button("rollback", "Roll back to this", dep.id));
    }
    actions.push(action_button("redeploy", "Redeploy", dep.id));
    let act_error = move || act.value().get().and_then(|r| r.err()).map(|e| e.to_string());
    view! {
        <Title text=format!("#{} {} · Roundhouse", dep.number, d.service_name)/>
        <nav class="text-sm text-slate-400" aria-label="Breadcrumb">
            <a href="/dashboard" class="hover:underline">"Projects"</a> " / "
            <a href=format!("/projects/{}", d.project_id) class="hover:underline">{d.project_name.clone()}</a> " / "
            <a href=format!("/services/{}", dep.service_id) class="hover:underline">{d.service_name.clone()}</a> " / "
            {format!("deployment #{}", dep.number)}
        </nav>
        <div class="mt-2 flex flex-wrap items-start justify-between gap-4">
            <div>
                <h1 class="text-2xl font-semibold">{format!("Deployment #{}", dep.number)} " " <StatusBadge status=dep.status/></h1>
                <p class="mt-1 text-sm text-slate-400" data-testid="reason">{dep.reason.clone()}</p>
                {(dep.status == Status::Running).then(|| view! {
                    <p class="mt-1 text-sm"><a class="text-indigo-300 hover:underline" href=d.public_url.clone() target="_blank" rel="noopener" data-testid="public-url">{d.public_url.clone()}</a></p>
                })}
            </div>
            <div class="flex flex-wrap gap-2">{actions}</div>
        </div>
        <p class="mt-2 text-sm text-rose-400" role="alert">{act_error}</p>
        <ol class="mt-6 grid grid-cols-4 gap-2" aria-label="Phases" data-testid="phases">
            {PHASES.into_iter().map(|p| {
                let done = reached.contains(&p);
                let current = dep.status == p;
                let class = if current && p != Status::Running {
                    "rounded-lg border border-sky-700 bg-sky-950/40 px-3 py-2 text-sm text-sky-200 animate-pulse"
                } else if done {
                    "rounded-lg border border-emerald-800 bg-emerald-950/30 px-3 py-2 text-sm text-emerald-200"
                } else {
                    "rounded-lg border border-slate-800 px-3 py-2 text-sm text-slate-500"
                };
                view! { <li class=class aria-current=current.then_some("step")>{p.as_str()}</li> }
            }).collect_view()}
        </ol>
        <details class="mt-4">
            <summary class="cursor-pointer text-sm text-slate-400">"Events"</summary>
            <ul class="mt-2 space-y-1 text-sm">
                {d.events.iter().map(|e| view! {
                    <li><span class="text-slate-500">{format_time(e.at)}</span> " " <b>{e.status.as_str()}</b> " — " {e.reason.clone()}</li>
                }).collect_view()}
            </ul>
        </details>
    }
}

/// Live logs: stored lines, then new ones as they come (server-sent events). Follow keeps the
/// newest line in view; search filters what is shown; download gets the whole log as text.
#[component]
fn LogViewer(id: Uuid, on_status: impl Fn() + Clone + 'static) -> impl IntoView {
    const KEEP: usize = 20_000;
    let (lines, set_lines) = signal(Vec::<LogLine>::new());
    let (follow, set_follow) = signal(true);
    let (search, set_search) = signal(String::new());
    let (connected, set_connected) = signal(false);
    let pane = NodeRef::<leptos::html::Div>::new();
    let first_status = std::cell::Cell::new(true);
    use_event_source(format!("/api/v1/deployments/{id}/logs?follow=true"), &["line", "status"], move |name, data| {
        set_connected.set(true);
        match name {
            "line" => {
                if let Ok(line) = serde_json::from_str::<LogLine>(&data) {
                    set_lines.update(|v| {
                        v.push(line);
                        if v.len() > KEEP {
                            v.drain(..v.len() - KEEP);
                        }
                    });
                }
            }
            _ => {
                // The first status event is the current one; later ones are changes.
                if !first_status.replace(false) {
                    on_status();
                }
            }
        }
    });
    Effect::new(move |_| {
        lines.track();
        if follow.get_untracked() {
            if let Some(el) = pane.get() {
                el.set_scroll_top(el.scroll_height());
            }
        }
    });
    let shown = move || {
        let q = search.get().to_lowercase();
        lines.with(|v| v.iter().filter(|l| q.is_empty() || l.line.to_lowercase().contains(&q)).cloned().collect::<Vec<_>>())
    };
    view! {
        <div class="card mt-6">
            <div class="flex flex-wrap items-center justify-between gap-3">
                <h2 class="font-medium">"Logs" <span class="ml-2 text-xs text-slate-500" data-testid="log-state">
                    {move || if connected.get() { "live" } else { "connecting…" }}</span></h2>
                <div class="flex flex-wrap items-center gap-3 text-sm">
                    <input class="input w-48" type="search" placeholder="Search logs" aria-label="Search logs"
                        on:input=move |e| set_search.set(event_target_value(&e)) prop:value=search/>
                    <label class="flex items-center gap-1 text-slate-300">
                        <input type="checkbox" prop:checked=follow on:change=move |e| set_follow.set(event_target_checked(&e))/> "Follow"
                    </label>
                    <a class="btn btn-ghost" href=format!("/api/v1/deployments/{id}/logs?format=text") download>"Download"</a>
                </div>
            </div>
            <div node_ref=pane class="mt-3 h-96 overflow-auto rounded-lg bg-black/60 p-3 font-mono text-xs leading-5" data-testid="logs" role="log" aria-live="polite">
                <noscript><p class="text-slate-400">"Live logs need JavaScript. "<a class="underline" href=format!("/api/v1/deployments/{id}/logs?format=text")>"Read the stored logs as text."</a></p></noscript>
                <For each=shown key=|l| l.id let:l>
                    <div class=match l.stream { Stream::Stderr => "text-rose-300", Stream::System => "text-sky-300", Stream::Build => "text-amber-200", Stream::Stdout => "text-slate-200" }>
                        <span class="select-none text-slate-600">{l.at.format("%H:%M:%S%.3f").to_string()} " "</span>{l.line}
                    </div>
                </For>
            </div>
        </div>
    }
}
