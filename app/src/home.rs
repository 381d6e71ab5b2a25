//! Public pages: the landing page and the getting-started docs.

use leptos::prelude::*;
use leptos_meta::{Meta, Title};

#[component]
pub fn HomePage() -> impl IntoView {
    view! {
        <Title text="Roundhouse · deploy anything, watch it run"/>
        <Meta name="description" content="Roundhouse is a self-hostable platform-as-a-service: projects, services, variables, deploys, live logs and usage billing."/>
        <section class="mx-auto max-w-6xl px-4 pb-16 pt-20">
            <p class="text-sm font-semibold uppercase tracking-wider text-indigo-400">"Self-hostable platform-as-a-service"</p>
            <h1 class="mt-3 max-w-3xl text-4xl font-bold tracking-tight sm:text-5xl">
                "Push your code. Roundhouse builds it, runs it, and shows you everything."
            </h1>
            <p class="mt-5 max-w-2xl text-lg text-slate-400">
                "Create a project, add services from a template, an image or your own source, set variables, and press Deploy. "
                "Builds, logs, status and cost stream live to your dashboard. Run it on one machine, or on Kubernetes when you outgrow it."
            </p>
            <div class="mt-8 flex flex-wrap gap-3">
                <a href="/register" class="btn btn-primary">"Start for free"</a>
                <a href="/templates" class="btn btn-secondary">"Browse templates"</a>
            </div>
        </section>
        <section class="mx-auto grid max-w-6xl gap-4 px-4 pb-24 sm:grid-cols-3">
            <Feature title="Projects and environments" body="Group services into projects, with a production environment from the start and more on demand."/>
            <Feature title="Variables that reference each other" body="Shared values, generated secrets and references like ${{Postgres.DATABASE_URL}}, encrypted at rest."/>
            <Feature title="Live everything" body="Deployments move from queued to running while you watch; build and runtime logs stream as they happen."/>
            <Feature title="Templates" body="Databases, caches and starters in one click, from a catalogue anyone can browse."/>
            <Feature title="Pay for what runs" body="Plans with included usage and per-resource prices; limits checked before a deploy, not after."/>
            <Feature title="Yours to host" body="One binary and PostgreSQL. Health checks, metrics and JSON logs for operators."/>
        </section>
    }
}

#[component]
fn Feature(title: &'static str, body: &'static str) -> impl IntoView {
    view! {
        <div class="card">
            <h2 class="font-semibold">{title}</h2>
            <p class="mt-2 text-sm text-slate-400">{body}</p>
        </div>
    }
}

#[component]
pub fn DocsPage() -> impl IntoView {
    view! {
        <Title text="Docs · Roundhouse"/>
        <article class="prose-doc mx-auto max-w-3xl px-4 py-12">
            <h1>"Getting started"</h1>
            <ol>
                <li><a href="/register">"Create an account"</a>" and confirm your email address with the link we send you."</li>
                <li>"Open the "<a href="/dashboard">"dashboard"</a>" and create a project. It starts with a "<code>"production"</code>" environment; add more (staging, preview) from the project page."</li>
                <li>"Add services from the "<a href="/templates">"template catalogue"</a>", a container image or your own source, then deploy."</li>
            </ol>
            <h2>"The API"</h2>
            <p>
                "Everything the dashboard does is also available under "<code>"/api/v1"</code>". Create a personal token on your "
                <a href="/account">"account page"</a>" and send it as "<code>"Authorization: Bearer rhp_…"</code>". "
                "The OpenAPI document is at "<a href="/api/v1/openapi.json">"/api/v1/openapi.json"</a>"."
            </p>
            <pre><code>"curl -H \"Authorization: Bearer $ROUNDHOUSE_TOKEN\" http://127.0.0.1:3000/api/v1/projects"</code></pre>
            <h2>"Plans and limits"</h2>
            <p>"Each plan sets how many projects, services and replicas you can run. See "<a href="/pricing">"pricing"</a>"."</p>
        </article>
    }
}
