//! `/admin/platform`: the platform at a glance, charts drawn on the server.

use super::platform::*;
use crate::{
    templates::admin_pages::AdminNav,
    ui::{Badge, Bar, BarChart, ErrorNote, Tone},
};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
fn Figure(label: &'static str, value: String, testid: &'static str) -> impl IntoView {
    view! {
        <div class="card">
            <div class="text-sm text-slate-400">{label}</div>
            <div class="mt-1 text-2xl font-semibold" data-testid=testid>{value}</div>
        </div>
    }
}

#[component]
pub fn AdminPlatformPage() -> impl IntoView {
    let stats = Resource::new(|| (), |_| admin_platform());
    view! {
        <Title text="Platform · Admin · Roundhouse"/>
        <section class="mx-auto max-w-6xl px-4 py-10">
            <h1 class="text-2xl font-semibold">"Admin"</h1>
            <AdminNav current="Platform"/>
            <Transition fallback=|| view! { <p class="mt-6 text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match stats.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(s) => view! { <Stats s/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn Stats(s: PlatformStats) -> impl IntoView {
    let rate = s.failure_rate().map_or("—".to_string(), |r| format!("{r:.1} %"));
    let first = s.days.first().map(|d| d.day.format("%b %-d").to_string()).unwrap_or_default();
    let last = s.days.last().map(|d| d.day.format("%b %-d").to_string()).unwrap_or_default();
    let bars = |f: fn(&Day) -> i64, what: &'static str| -> Vec<Bar> {
        s.days.iter().map(|d| Bar { key: d.day.to_string(), value: f(d), title: format!("{}: {} {what}", d.day.format("%b %-d"), f(d)) }).collect()
    };
    let deployments = bars(|d| d.deployments, "deployments");
    let failed = bars(|d| d.failed, "failed or crashed");
    let signups = bars(|d| d.signups, "sign-ups");
    view! {
        <div class="mt-6 flex flex-wrap items-center gap-2" data-testid="health">
            {if s.sandbox_ok {
                view! { <Badge tone=Tone::Good>{format!("sandbox {}", s.sandbox)}</Badge> }.into_any()
            } else {
                view! { <Badge tone=Tone::Bad>{format!("sandbox unavailable: {}", s.sandbox)}</Badge> }.into_any()
            }}
            {match s.database_away_secs {
                None => view! { <Badge tone=Tone::Good>"database answers"</Badge> }.into_any(),
                Some(secs) => view! { <Badge tone=Tone::Bad>{format!("database unreachable for {secs}s")}</Badge> }.into_any(),
            }}
        </div>
        <div class="mt-6 grid gap-4 sm:grid-cols-3 lg:grid-cols-6">
            <Figure label="Reconciler queue" value=s.queue.to_string() testid="queue"/>
            <Figure label="Stuck past deadline" value=s.stuck.to_string() testid="stuck"/>
            <Figure label="Active services" value=s.active_services.to_string() testid="active-services"/>
            <Figure label="Failure rate (30 days)" value=rate testid="failure-rate"/>
            <Figure label="Users" value=s.users.to_string() testid="users"/>
            <Figure label="Projects" value=s.projects.to_string() testid="projects"/>
        </div>
        <div class="card mt-6">
            <h2 class="font-medium">"Deployments per day"</h2>
            <BarChart bars=deployments aria=format!("Deployments per day from {first} to {last}") testid="deployments-chart" first=first.clone() last=last.clone()/>
            <h2 class="mt-6 font-medium">"Failed or crashed per day"</h2>
            <BarChart bars=failed aria=format!("Failed or crashed deployments per day from {first} to {last}") testid="failures-chart" first=first.clone() last=last.clone()/>
            <h2 class="mt-6 font-medium">"Sign-ups per day"</h2>
            <BarChart bars=signups aria=format!("Sign-ups per day from {first} to {last}") testid="signups-chart" first last/>
        </div>
    }
}
