//! The project canvas (services as cards with arrows for what they use) and the progress of a
//! whole stack's deployments: one view of which services run, which are on their way, and
//! which failed and why.

use super::{pages::source_label, Service, ServiceLink};
use crate::deployments::{Deployment, Status};
use leptos::prelude::*;
use uuid::Uuid;

/// How the newest deployments of a project's services stand: a bar and counts, and each
/// failure with its service, reason and a link to its logs. Live with the canvas.
#[component]
pub fn StackProgress(services: Vec<Service>, latest: Vec<Deployment>) -> impl IntoView {
    let newest: Vec<(&Service, &Deployment)> =
        services.iter().filter_map(|s| latest.iter().find(|d| d.service_id == s.id).map(|d| (s, d))).collect();
    if newest.is_empty() {
        return ().into_any();
    }
    let count = |f: fn(Status) -> bool| newest.iter().filter(|(_, d)| f(d.status)).count();
    let running = count(|s| s == Status::Running);
    let moving = count(|s| s.in_progress());
    let broken = count(|s| matches!(s, Status::Failed | Status::Crashed));
    let total = services.len();
    let width = |n: usize| format!("width: {}%", n * 100 / total.max(1));
    let failures: Vec<(String, Uuid, String, String)> = newest
        .iter()
        .filter(|(_, d)| matches!(d.status, Status::Failed | Status::Crashed))
        .map(|(s, d)| (s.name.clone(), d.id, d.status.as_str().to_string(), d.reason.clone()))
        .collect();
    let summary = {
        let mut parts = vec![format!("{running} of {total} running")];
        if moving > 0 {
            parts.push(format!("{moving} deploying"));
        }
        if broken > 0 {
            parts.push(format!("{broken} failed"));
        }
        parts.join(" · ")
    };
    view! {
        <div class="mt-3" data-testid="stack-progress" role="status" aria-live="polite">
            <div class="flex h-2 overflow-hidden rounded-full bg-slate-800" aria-hidden="true">
                <div class="bg-emerald-500" style=width(running)></div>
                <div class="animate-pulse bg-indigo-500" style=width(moving)></div>
                <div class="bg-rose-500" style=width(broken)></div>
            </div>
            <p class="mt-1 text-sm text-slate-400">{summary}</p>
            {(!failures.is_empty()).then(|| view! {
                <ul class="mt-1 space-y-1 text-sm">
                    {failures.into_iter().map(|(name, id, status, reason)| view! {
                        <li data-failed=name.clone()>
                            <a class="font-medium text-rose-300 hover:underline" href=format!("/deployments/{id}")>{name.clone()}</a>
                            <span class="text-slate-400">{format!(" {status}: {reason}")}</span>
                        </li>
                    }).collect_view()}
                </ul>
            })}
        </div>
    }
    .into_any()
}

/// The project canvas: each environment's services as cards (status dot, source), with an
/// arrow from a service to each one its variables refer to. Live with the list (the same
/// status stream refetches both); on a phone the list below stands in for it.
#[component]
pub fn Canvas(services: Vec<Service>, latest: Vec<Deployment>, links: Vec<ServiceLink>) -> impl IntoView {
    let mut environments: Vec<(Uuid, String)> = services.iter().map(|s| (s.environment_id, s.environment.clone())).collect();
    environments.dedup();
    environments.sort_by_key(|(_, name)| (name != "production", name.clone()));
    environments.dedup();
    environments
        .into_iter()
        .map(|(env, env_name)| {
            let here: Vec<&Service> = services.iter().filter(|s| s.environment_id == env).collect();
            let nodes = here
                .iter()
                .map(|s| {
                    let status = latest.iter().find(|d| d.service_id == s.id).map(|d| d.status.as_str());
                    crate::graph::Node {
                        name: s.name.clone(),
                        detail: format!("{} · {}", source_label(s), status.unwrap_or("not deployed")),
                        href: Some(format!("/services/{}", s.id)),
                        dot: Some(format!("dot-{}", status.unwrap_or("none"))),
                    }
                })
                .collect();
            let index = |id: Uuid| here.iter().position(|s| s.id == id);
            let edges = links.iter().filter_map(|l| Some((index(l.from)?, index(l.to)?))).collect();
            view! {
                <div class="mt-3 hidden overflow-x-auto rounded-xl border border-slate-800 bg-slate-950/50 p-4 sm:block" data-testid="canvas" data-environment=env_name.clone()>
                    <p class="mb-2 text-xs uppercase tracking-wide text-slate-500">{env_name.clone()}</p>
                    <crate::graph::ServiceGraph nodes edges label=format!("Services of the {env_name} environment")/>
                </div>
            }
        })
        .collect_view()
}

