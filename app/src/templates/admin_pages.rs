//! The admin's template pages: the list (publish, feature, deploy counts), the editor with
//! every kept version, and a new template written or imported from a compose file.

use super::admin::*;
use crate::ui::{format_time, Badge, EmptyState, ErrorNote, Tone};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

/// What a new template's editor starts with: the smallest valid template.
const STARTER: &str = r#"version = 1

[template]
slug = "my-template"
name = "My template"
summary = "What it deploys, in one line."
category = "starters"
tags = []
readme = """
# My template
"""

[[services]]
name = "db"
source = { kind = "database", engine = "postgres" }
"#;

/// The admin panel's sections.
#[component]
pub fn AdminNav(current: &'static str) -> impl IntoView {
    let link = move |href: &'static str, label: &'static str| {
        let on = current == label;
        view! { <a class=if on { "nav-link font-semibold text-white" } else { "nav-link" } href=href aria-current=on.then_some("page")>{label}</a> }
    };
    view! {
        <nav class="mt-4 flex gap-4 border-b border-slate-800 pb-2 text-sm" aria-label="Admin">
            {link("/admin/platform", "Platform")}
            {link("/admin", "Users")}
            {link("/admin/deployments", "Deployments")}
            {link("/admin/templates", "Templates")}
            {link("/admin/invoices", "Invoices")}
            {link("/admin/revenue", "Revenue")}
            {link("/admin/audit", "Audit log")}
        </nav>
    }
}

#[component]
pub fn AdminTemplatesPage() -> impl IntoView {
    let flags = ServerAction::<AdminSetTemplateFlags>::new();
    let templates = Resource::new(move || flags.version().get(), |_| admin_list_templates());
    view! {
        <Title text="Templates · Admin · Roundhouse"/>
        <section class="mx-auto max-w-6xl px-4 py-10">
            <div class="flex flex-wrap items-center gap-3">
                <h1 class="text-2xl font-semibold">"Admin"</h1>
                <a class="btn btn-primary ml-auto" href="/admin/templates/new">"New template"</a>
            </div>
            <AdminNav current="Templates"/>
            <p class="mt-2 text-sm text-rose-400" role="alert">{move || flags.value().get().and_then(Result::err).map(|e| e.to_string())}</p>
            <Transition fallback=|| view! { <p class="mt-6 text-slate-400">"Loading templates…"</p> }>
                {move || Suspend::new(async move {
                    match templates.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(list) if list.is_empty() => view! { <EmptyState title="No templates" body="Write one, or import a compose file."/> }.into_any(),
                        Ok(list) => view! {
                            <div class="overflow-x-auto">
                            <table class="table mt-4" data-testid="admin-templates">
                                <thead><tr>
                                    <th>"Template"</th><th>"Origin"</th><th>"Version"</th><th>"Status"</th>
                                    <th title="Distinct users who deployed it / every deploy">"Deploys"</th><th>"Updated"</th><th>"Actions"</th>
                                </tr></thead>
                                <tbody>
                                    {list.into_iter().map(|t| view! { <TemplateRow t flags/> }).collect_view()}
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

#[component]
fn TemplateRow(t: AdminTemplate, flags: ServerAction<AdminSetTemplateFlags>) -> impl IntoView {
    let flag_form = move |slug: String, field: &'static str, value: bool, label: &'static str, class: &'static str| view! {
        <ActionForm action=flags>
            <input type="hidden" name="slug" value=slug/>
            <input type="hidden" name=field value=value.to_string()/>
            <button type="submit" class=class>{label}</button>
        </ActionForm>
    };
    view! {
        <tr data-slug=t.slug.clone()>
            <td>
                <a class="font-medium hover:underline" href=format!("/admin/templates/{}", t.slug)>{t.name.clone()}</a>
                <div class="text-xs text-slate-400">{format!("{} · {}", t.slug, t.category)}</div>
            </td>
            <td><Badge tone=Tone::Neutral>{t.origin.label()}</Badge></td>
            <td>{format!("v{}", t.version)}</td>
            <td class="space-x-1">
                {if t.published { view! { <Badge tone=Tone::Good>"published"</Badge> }.into_any() } else { view! { <Badge tone=Tone::Warn>"draft"</Badge> }.into_any() }}
                {t.featured.then(|| view! { <Badge tone=Tone::Accent>"featured"</Badge> })}
            </td>
            <td>{format!("{} / {}", t.deploy_count, t.deploys)}</td>
            <td class="text-sm text-slate-400">{format_time(t.updated_at)}</td>
            <td>
                <div class="flex flex-wrap gap-2">
                    {flag_form(t.slug.clone(), "published", !t.published, if t.published { "Unpublish" } else { "Publish" }, if t.published { "btn btn-ghost" } else { "btn btn-secondary" })}
                    {flag_form(t.slug.clone(), "featured", !t.featured, if t.featured { "Unfeature" } else { "Feature" }, "btn btn-ghost")}
                </div>
            </td>
        </tr>
    }
}

/// The editor: a template's text, saved as a new version; older versions can be opened and
/// saved again to restore them.
#[component]
pub fn AdminTemplateEditPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let slug = Memo::new(move |_| params.with(|p| p.get("slug").unwrap_or_default()));
    let version = Memo::new(move |_| query.with(|q| q.get("version").and_then(|v| v.parse::<i32>().ok())));
    let save = ServerAction::<AdminSaveTemplate>::new();
    let source = Resource::new(move || (slug.get(), version.get(), save.version().get()), |(slug, version, _)| admin_template_source(slug, version));
    view! {
        <Title text=move || format!("{} · Templates · Admin · Roundhouse", slug.get())/>
        <section class="mx-auto max-w-6xl px-4 py-10">
            <nav class="text-sm text-slate-400"><a class="hover:underline" href="/admin/templates">"Templates"</a> " / " {move || slug.get()}</nav>
            <Suspense fallback=|| view! { <p class="mt-6 text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let s = match source.await {
                        Err(e) => {
                            crate::ui::respond_with_status(&e);
                            return view! { <ErrorNote error=e/> }.into_any();
                        }
                        Ok(s) => s,
                    };
                    let t = s.template.clone();
                    let old = s.shown_version != t.version;
                    let catalogue_href = format!("/templates/{}", t.slug);
                    let (slug, current) = (t.slug.clone(), t.version);
                    let versions = s.versions.iter().map(|v| {
                                        let here = v.version == s.shown_version;
                                        view! {
                                            <li class=if here { "rounded border border-indigo-700 p-2" } else { "rounded border border-slate-800 p-2" }>
                                                <a class="font-medium hover:underline" href=format!("/admin/templates/{slug}?version={}", v.version)>
                                                    {format!("v{}", v.version)}{(v.version == current).then_some(" (current)")}
                                                </a>
                                                <div class="text-xs text-slate-400">{format_time(v.created_at)}" · "{v.created_by.clone().unwrap_or_else(|| "bundled".into())}</div>
                                                <div class="text-xs text-slate-500">{format!("{} deploys", v.deploys)}</div>
                                            </li>
                                        }
                                    }).collect_view();
                    view! {
                        <div class="mt-2 flex flex-wrap items-center gap-3">
                            <h1 class="text-2xl font-semibold">{t.name.clone()}</h1>
                            <Badge tone=Tone::Neutral>{t.origin.label()}</Badge>
                            {if t.published { view! { <Badge tone=Tone::Good>"published"</Badge> }.into_any() } else { view! { <Badge tone=Tone::Warn>"draft"</Badge> }.into_any() }}
                            {t.published.then(|| view! { <a class="ml-auto text-sm text-indigo-300 hover:underline" href=catalogue_href>"Open in the catalogue"</a> })}
                        </div>
                        {(t.origin == Origin::Bundled).then(|| view! {
                            <p class="mt-2 text-sm text-slate-400">"Shipped with the platform. Saving an edit makes it an admin template: the bundled file no longer updates it."</p>
                        })}
                        <div class="mt-6 grid gap-6 lg:grid-cols-[1fr_16rem]">
                            <ActionForm action=save attr:class="grid gap-3" attr:data-testid="template-editor">
                                {old.then(|| view! {
                                    <p class="rounded-lg border border-amber-800 bg-amber-950/50 p-3 text-sm text-amber-200" role="status">
                                        {format!("You are looking at version {} (the current one is {}). Saving it makes it the current version again.", s.shown_version, t.version)}
                                    </p>
                                })}
                                <input type="hidden" name="slug" value=slug.clone()/>
                                <input type="hidden" name="base_version" value=current.to_string()/>
                                <label for="template-source" class="text-sm text-slate-300">{format!("Template file (version {})", s.shown_version)}</label>
                                <textarea id="template-source" class="input min-h-[32rem] font-mono text-xs" name="source" spellcheck="false">{s.source.clone()}</textarea>
                                <SaveResult save/>
                                <div><button type="submit" class="btn btn-primary" disabled=move || save.pending().get()>
                                    {move || if save.pending().get() { "Saving…" } else if old { "Restore this version" } else { "Save as a new version" }}
                                </button></div>
                            </ActionForm>
                            <aside>
                                <h2 class="text-sm font-medium text-slate-300">"Versions"</h2>
                                <ol class="mt-2 space-y-2 text-sm" data-testid="versions">
                                    {versions}
                                </ol>
                            </aside>
                        </div>
                    }.into_any()
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn SaveResult(save: ServerAction<AdminSaveTemplate>) -> impl IntoView {
    move || match save.value().get() {
        Some(Err(e)) => view! { <pre class="whitespace-pre-wrap text-sm text-rose-400" role="alert" data-testid="save-error">{e.to_string()}</pre> }.into_any(),
        Some(Ok(s)) if s.changed => view! { <p class="text-sm text-emerald-400" role="status">{format!("Saved as version {}.", s.version)}</p> }.into_any(),
        Some(Ok(_)) => view! { <p class="text-sm text-slate-400" role="status">"Nothing changed."</p> }.into_any(),
        None => ().into_any(),
    }
}

/// A new template: written here, or converted from a compose file first.
#[component]
pub fn AdminNewTemplatePage() -> impl IntoView {
    let save = ServerAction::<AdminSaveTemplate>::new();
    let import = ServerAction::<AdminImportCompose>::new();
    let (text, set_text) = signal(STARTER.to_string());
    Effect::new(move |_| {
        if let Some(Ok(done)) = import.value().get() {
            set_text.set(done.source);
        }
    });
    view! {
        <Title text="New template · Admin · Roundhouse"/>
        <section class="mx-auto max-w-6xl px-4 py-10">
            <nav class="text-sm text-slate-400"><a class="hover:underline" href="/admin/templates">"Templates"</a> " / New"</nav>
            <h1 class="mt-2 text-2xl font-semibold">"New template"</h1>
            <p class="mt-1 text-sm text-slate-400">
                "Write the template file (the format is in " <a class="text-indigo-300 hover:underline" href="/docs#templates">"the docs"</a>
                "), or convert a docker-compose file first. A new template starts as a draft: publish it from the list."
            </p>
            <div class="mt-6 grid gap-6 lg:grid-cols-2">
                <ActionForm action=save attr:class="grid gap-3" attr:data-testid="template-editor">
                    <label for="template-source" class="text-sm text-slate-300">"Template file"</label>
                    <textarea id="template-source" class="input min-h-[32rem] font-mono text-xs" name="source" spellcheck="false"
                        prop:value=move || text.get() on:input=move |ev| set_text.set(event_target_value(&ev))>{STARTER}</textarea>
                    <SaveResult save/>
                    <div><button type="submit" class="btn btn-primary" disabled=move || save.pending().get()>
                        {move || if save.pending().get() { "Creating…" } else { "Create template" }}
                    </button></div>
                </ActionForm>
                <ActionForm action=import attr:class="card grid content-start gap-3" attr:data-testid="compose-import">
                    <h2 class="font-medium">"Import a docker-compose file"</h2>
                    <p class="text-sm text-slate-400">
                        "Coolify's and Dokploy's conventions are understood: " <code>"${X:-default}"</code> ", " <code>"SERVICE_PASSWORD_X"</code> ", "
                        <code>"${password:32}"</code> " and the like become inputs and generated values. What a template cannot hold is listed, not dropped."
                    </p>
                    <label><span class="block text-sm text-slate-300">"Slug"</span><input class="input" name="slug" required pattern="[a-z0-9][a-z0-9-]*" maxlength="63"/></label>
                    <label><span class="block text-sm text-slate-300">"Name"</span><input class="input" name="name" required maxlength="80"/></label>
                    <label><span class="block text-sm text-slate-300">"docker-compose.yml"</span>
                        <textarea class="input min-h-[12rem] font-mono text-xs" name="compose" required spellcheck="false"></textarea></label>
                    <div><button type="submit" class="btn btn-secondary" disabled=move || import.pending().get()>
                        {move || if import.pending().get() { "Converting…" } else { "Convert into the editor" }}
                    </button></div>
                    {move || match import.value().get() {
                        Some(Err(e)) => view! { <p class="text-sm text-rose-400" role="alert">{e.to_string()}</p> }.into_any(),
                        Some(Ok(done)) => view! { <ImportReport done/> }.into_any(),
                        None => ().into_any(),
                    }}
                </ActionForm>
            </div>
        </section>
    }
}

#[component]
fn ImportReport(done: ComposeImport) -> impl IntoView {
    view! {
        <div class="grid gap-2 text-sm" data-testid="import-report" role="status">
            <p class="text-emerald-400">"Converted: the template is in the editor."</p>
            {(!done.not_carried_over.is_empty()).then(|| view! {
                <div>
                    <p class="text-amber-300">"Not carried over:"</p>
                    <ul class="list-disc pl-5 text-slate-300">{done.not_carried_over.into_iter().map(|r| view! { <li>{r}</li> }).collect_view()}</ul>
                </div>
            })}
            {(!done.problems.is_empty()).then(|| view! {
                <div>
                    <p class="text-rose-300">"Fix before saving:"</p>
                    <ul class="list-disc pl-5 text-slate-300">{done.problems.into_iter().map(|r| view! { <li>{r}</li> }).collect_view()}</ul>
                </div>
            })}
        </div>
    }
}
