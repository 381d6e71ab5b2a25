//! Roundhouse: the Leptos application shared by the server (SSR, server functions) and the
//! browser (hydration). Grouped by domain; server-only code sits behind the `ssr` feature.

#![recursion_limit = "256"]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod catalogue;
pub mod deployments;
pub mod devtools;
pub mod domain;
pub mod error;
pub mod graph;
pub mod home;
#[cfg(feature = "ssr")]
pub mod infra;
pub mod projects;
pub mod services;
pub mod templates;
pub mod ui;
pub mod variables;

use auth::{use_session, Login, Logout, Register, Session, User};
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, SsrMode,
};

/// The HTML document. On the server it also sets the Content-Security-Policy with a fresh
/// nonce for the hydration script. Detail pages render in `SsrMode::Async` so their
/// status (404 for a missing template or someone else's project) is known before headers go out.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    // The bundle under its content-hashed names (infra/assets.rs): cached by browsers for good.
    #[cfg(feature = "ssr")]
    let (hydration, stylesheet) = {
        let names = infra::assets::names(&options.site_root, &options.site_pkg_dir);
        let mut hydration = options.clone();
        hydration.output_name = names.bundle.clone().into();
        (hydration, format!("/{}/{}", options.site_pkg_dir, names.css))
    };
    #[cfg(not(feature = "ssr"))]
    let (hydration, stylesheet) = (options.clone(), "/pkg/roundhouse.css".to_string());
    #[cfg(feature = "ssr")]
    {
        leptos::nonce::provide_nonce();
        if let (Some(nonce), Some(res)) =
            (leptos::nonce::use_nonce(), use_context::<leptos_axum::ResponseOptions>())
        {
            let csp = format!(
                "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
                 style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
                 font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
            );
            if let Ok(value) = http::HeaderValue::from_str(&csp) {
                res.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
            }
        }
    }
    view! {
        <!DOCTYPE html>
        <html lang="en" class="dark">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="dark"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <link rel="stylesheet" id="leptos" href=stylesheet/>
                <HydrationScripts options=hydration/>
                <MetaTags/>
            </head>
            <body class="min-h-screen bg-slate-950 text-slate-100 antialiased">
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    ui::Toasts::provide();
    let login = ServerAction::<Login>::new();
    let logout = ServerAction::<Logout>::new();
    let register = ServerAction::<Register>::new();
    let me = Resource::new(
        move || (login.version().get(), logout.version().get(), register.version().get()),
        |_| auth::get_me(),
    );
    provide_context(Session { login, logout, register, me });
    // Effects run only in the browser, after hydration: mark the page interactive (browser
    // tests wait for it; CSS could use it too).
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Title formatter=|t: String| if t.is_empty() { "Roundhouse".to_string() } else { t }/>
        <Router>
            <Nav/>
            <main id="main">
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=home::HomePage/>
                    <Route path=path!("/docs") view=home::DocsPage/>
                    <Route path=path!("/pricing") view=catalogue::pages::PricingPage/>
                    <Route path=path!("/templates") view=catalogue::pages::TemplatesPage/>
                    <Route path=path!("/templates/:slug") view=catalogue::pages::TemplatePage ssr=SsrMode::Async/>
                    <Route path=path!("/templates/:slug/deploy") view=templates::pages::DeployTemplatePage ssr=SsrMode::Async/>
                    <Route path=path!("/login") view=auth::pages::LoginPage/>
                    <Route path=path!("/register") view=auth::pages::RegisterPage/>
                    <Route path=path!("/verify") view=auth::pages::VerifyPage/>
                    <Route path=path!("/forgot") view=auth::pages::ForgotPage/>
                    <Route path=path!("/reset") view=auth::pages::ResetPage/>
                    <Route path=path!("/account") view=auth::pages::AccountPage/>
                    <Route path=path!("/dashboard") view=projects::pages::DashboardPage/>
                    <Route path=path!("/billing") view=billing::pages::BillingPage ssr=SsrMode::Async/>
                    <Route path=path!("/billing/invoices/:id") view=billing::ledger_pages::InvoicePage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/invoices") view=billing::ledger_pages::AdminInvoicesPage/>
                    <Route path=path!("/admin/revenue") view=billing::revenue_pages::AdminRevenuePage ssr=SsrMode::Async/>
                    <Route path=path!("/projects/:id") view=projects::pages::ProjectPage ssr=SsrMode::Async/>
                    <Route path=path!("/services/:id") view=services::pages::ServicePage ssr=SsrMode::Async/>
                    <Route path=path!("/deployments/:id") view=deployments::pages::DeploymentPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin") view=admin::pages::AdminPage/>
                    <Route path=path!("/admin/audit") view=audit::pages::AdminAuditPage/>
                    <Route path=path!("/admin/platform") view=admin::platform_pages::AdminPlatformPage/>
                    <Route path=path!("/admin/users/:id") view=admin::inspect_pages::AdminUserPage/>
                    <Route path=path!("/admin/deployments") view=admin::inspect_pages::AdminDeploymentsPage/>
                    <Route path=path!("/admin/deployments/:id") view=admin::inspect_pages::AdminDeploymentPage/>
                    <Route path=path!("/admin/templates") view=templates::admin_pages::AdminTemplatesPage/>
                    <Route path=path!("/admin/templates/new") view=templates::admin_pages::AdminNewTemplatePage/>
                    <Route path=path!("/admin/templates/:slug") view=templates::admin_pages::AdminTemplateEditPage ssr=SsrMode::Async/>
                    <Route path=path!("/dev/mail") view=devtools::OutboxPage ssr=SsrMode::Async/>
                </Routes>
            </main>
            <ui::ToastRegion/>
        </Router>
    }
}

#[component]
fn Nav() -> impl IntoView {
    let session = use_session();
    let (open, set_open) = signal(false);
    view! {
        <header class="border-b border-slate-800 bg-slate-950/80 backdrop-blur">
            <nav class="mx-auto flex max-w-6xl flex-wrap items-center gap-x-6 gap-y-2 px-4 py-3" aria-label="Main">
                <a href="/" class="flex items-center gap-2 font-semibold tracking-tight">
                    <span class="inline-block h-6 w-6 rounded-full border-4 border-indigo-500"></span>
                    "Roundhouse"
                </a>
                <button
                    class="ml-auto rounded p-2 text-slate-300 sm:hidden"
                    aria-label="Menu"
                    on:click=move |_| set_open.update(|o| *o = !*o)
                >"☰"</button>
                <div class=move || format!(
                    "w-full flex-col gap-3 sm:flex sm:w-auto sm:flex-1 sm:flex-row sm:items-center {}",
                    if open.get() { "flex" } else { "hidden" }
                )>
                    <a class="nav-link" href="/templates">"Templates"</a>
                    <a class="nav-link" href="/pricing">"Pricing"</a>
                    <a class="nav-link" href="/docs">"Docs"</a>
                    <div class="flex flex-col gap-3 sm:ml-auto sm:flex-row sm:items-center">
                        <Transition fallback=|| ()>
                            {move || Suspend::new(async move {
                                match session.me.await {
                                    Ok(Some(user)) => view! { <UserMenu user/> }.into_any(),
                                    _ => view! {
                                        <a class="nav-link" href="/login">"Sign in"</a>
                                        <a class="btn btn-primary" href="/register">"Get started"</a>
                                    }.into_any(),
                                }
                            })}
                        </Transition>
                    </div>
                </div>
            </nav>
        </header>
    }
}

#[component]
fn UserMenu(user: User) -> impl IntoView {
    let session = use_session();
    view! {
        <a class="nav-link" href="/dashboard">"Dashboard"</a>
        <a class="nav-link" href="/billing">"Billing"</a>
        {user.is_admin().then(|| view! { <a class="nav-link" href="/admin">"Admin"</a> })}
        <a class="nav-link" href="/account" title=user.email.clone()>{user.name.clone()}</a>
        <ActionForm action=session.logout>
            <button type="submit" class="btn btn-ghost" data-testid="sign-out">"Sign out"</button>
        </ActionForm>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found · Roundhouse"/>
        <section class="mx-auto max-w-xl px-4 py-24 text-center">
            <p class="text-sm font-semibold text-indigo-400">"404"</p>
            <h1 class="mt-2 text-3xl font-semibold">"This page does not exist"</h1>
            <p class="mt-2 text-slate-400">"The address may be mistyped, or the page may have moved."</p>
            <a href="/" class="btn btn-primary mt-6">"Back home"</a>
        </section>
    }
}
