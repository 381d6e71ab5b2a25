//! The deploy page of a template: pick a project and environment (or a new project), fill the
//! inputs, deploy.

use super::*;
use crate::{
    catalogue::get_template,
    ui::ErrorNote,
};
use leptos_meta::Title;
use leptos_router::{components::Redirect, hooks::use_params_map};

#[component]
pub fn DeployTemplatePage() -> impl IntoView {
    let params = use_params_map();
    let slug = Memo::new(move |_| params.with(|p| p.get("slug").unwrap_or_default()));
    let template = Resource::new(move || slug.get(), get_template);
    let projects = Resource::new(|| (), |_| deploy_targets());
    let deploy = ServerAction::<DeployTemplate>::new();
    let value = deploy.value();
    view! {
        <section class="mx-auto max-w-3xl px-4 py-12">
            <Suspense fallback=|| view! { <p class="text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let (t, projects) = match (template.await, projects.await) {
                        (Err(e), _) | (_, Err(e)) => {
                            crate::ui::respond_with_status(&e);
                            return view! { <Title text="Deploy · Roundhouse"/><ErrorNote error=e/> }.into_any();
                        }
                        (Ok(t), Ok(p)) => (t, p),
                    };
                    let asked: Vec<Input> = t.spec.asked().cloned().collect();
                    let generated = t.spec.inputs.iter().filter(|i| i.is_generated()).count();
                    let local_ok = t.local_blockers.is_empty();
                    view! {
                        <Title text=format!("Deploy {} · Roundhouse", t.name)/>
                        <nav class="text-sm text-slate-400">
                            <a class="hover:underline" href="/templates">"Templates"</a> " / "
                            <a class="hover:underline" href=format!("/templates/{}", t.slug)>{t.name.clone()}</a> " / Deploy"
                        </nav>
                        <h1 class="mt-2 text-2xl font-semibold">{format!("Deploy {}", t.name)}</h1>
                        <p class="mt-1 text-sm text-slate-400">
                            {format!("Creates {} service{} with their variables, then deploys them in order.", t.spec.services.len(), if t.spec.services.len() == 1 { "" } else { "s" })}
                            {(generated > 0).then(|| format!(" {generated} secret value{} will be generated.", if generated == 1 { "" } else { "s" }))}
                        </p>
                        {(!local_ok).then(|| view! {
                            <p class="mt-4 rounded-lg border border-amber-800 bg-amber-950/50 p-3 text-sm text-amber-200" role="status">
                                "This platform's local runtime cannot run this template: " {t.local_blockers.join("; ")} "."
                            </p>
                        })}
                        <ActionForm action=deploy attr:class="card mt-6 grid gap-4" attr:data-testid="deploy-form">
                            <input type="hidden" name="slug" value=t.slug.clone()/>
                            <label>
                                <span class="block text-sm text-slate-300">"Project and environment"</span>
                                <select class="input" name="project_id">
                                    <option value="new">"A new project"</option>
                                    {projects.into_iter().map(|t| view! {
                                        <option value=format!("{}/{}", t.project_id, t.environment_id)>{format!("{} · {}", t.project, t.environment)}</option>
                                    }).collect_view()}
                                </select>
                            </label>
                            <label>
                                <span class="block text-sm text-slate-300">"New project's name"</span>
                                <input class="input" name="project_name" value=t.name.clone() maxlength="60"/>
                            </label>
                            {asked.into_iter().map(|i| {
                                let kind = match i.kind {
                                    Some(InputKind::Email) => "email",
                                    Some(InputKind::Url) => "url",
                                    Some(InputKind::Number) => "number",
                                    _ => "text",
                                };
                                let field = format!("inputs.{}", i.name);
                                let error = Signal::derive(move || match value.get() {
                                    Some(Err(e)) if e.field() == Some(field.as_str()) => Some(e.to_string()),
                                    _ => None,
                                });
                                view! {
                                    <label>
                                        <span class="block text-sm text-slate-300"><code>{i.name.clone()}</code>{i.required.then_some(" (required)")}</span>
                                        <input class="input" type=kind name=format!("inputs[{}]", i.name) value=i.default.clone().unwrap_or_default() required=i.required/>
                                        <span class="block text-xs text-slate-500">{i.description.clone()}</span>
                                        <span class="block text-sm text-rose-400" role="alert">{error}</span>
                                    </label>
                                }
                            }).collect_view()}
                            <button type="submit" class="btn btn-primary" disabled=move || deploy.pending().get() || !local_ok>
                                {move || if deploy.pending().get() { "Deploying…" } else { "Deploy" }}
                            </button>
                            <p class="text-sm text-rose-400" role="alert" data-testid="deploy-error">{move || match value.get() {
                                Some(Err(e)) if !e.field().is_some_and(|f| f.starts_with("inputs.")) => Some(e.to_string()),
                                _ => None,
                            }}</p>
                        </ActionForm>
                        {move || value.get().and_then(Result::ok).map(|d| view! { <Redirect path=format!("/projects/{}", d.project_id)/> })}
                    }.into_any()
                })}
            </Suspense>
        </section>
    }
}
