//! Development helpers: the mail outbox page. Disabled outside dev mode, because mails hold
//! sign-in links.

use crate::error::AppError;
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct OutboxMail {
    pub id: Uuid,
    pub to_address: String,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

#[server(endpoint = "list_outbox")]
pub async fn list_outbox(to: Option<String>) -> Result<Vec<OutboxMail>, AppError> {
    crate::infra::request::with_status(async move {
        let state = crate::infra::request::state()?;
        if !state.config.is_dev() {
            return Err(AppError::not_found("Page"));
        }
        Ok(sqlx::query_as(
            "SELECT id, to_address, subject, body, created_at FROM mail_outbox
             WHERE ($1::text IS NULL OR lower(to_address) = lower($1)) ORDER BY created_at DESC LIMIT 100",
        )
        .bind(to.filter(|t| !t.trim().is_empty()))
        .fetch_all(&state.db)
        .await?)
    })
    .await
}

/// Splits a mail body into text and links, so links are clickable.
fn linkify(body: &str) -> Vec<(String, bool)> {
    let mut parts = Vec::new();
    for (i, line) in body.split('\n').enumerate() {
        if i > 0 {
            parts.push(("\n".to_string(), false));
        }
        let t = line.trim();
        if t.starts_with("http://") || t.starts_with("https://") {
            parts.push((t.to_string(), true));
        } else {
            parts.push((line.to_string(), false));
        }
    }
    parts
}

#[component]
pub fn OutboxPage() -> impl IntoView {
    let mails = Resource::new(|| (), |_| list_outbox(None));
    view! {
        <leptos_meta::Title text="Mail outbox · Roundhouse"/>
        <section class="mx-auto max-w-4xl px-4 py-10">
            <h1 class="text-2xl font-semibold">"Mail outbox"</h1>
            <p class="mt-1 text-sm text-slate-400">
                "Mail Roundhouse sent, newest first. Shown in dev mode only; set SMTP_URL to deliver for real."
            </p>
            <Suspense fallback=|| view! { <p class="mt-6 text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match mails.await {
                        Err(e) => {
                            // Outside dev mode the page does not exist (404), rather than say why.
                            crate::ui::respond_with_status(&e);
                            view! { <crate::ui::ErrorNote error=e/> }.into_any()
                        }
                        Ok(list) if list.is_empty() => view! {
                            <crate::ui::EmptyState title="No mail yet" body="Register an account and its verification mail appears here."/>
                        }.into_any(),
                        Ok(list) => view! {
                            <ul class="mt-6 space-y-4">
                                {list.into_iter().map(|m| view! {
                                    <li class="rounded-lg border border-slate-800 bg-slate-900 p-4" data-testid="mail">
                                        <div class="flex flex-wrap justify-between gap-2 text-sm">
                                            <span class="font-medium">{m.subject.clone()}</span>
                                            <span class="text-slate-400">"to " {m.to_address.clone()} " · " {m.created_at.format("%Y-%m-%d %H:%M:%S").to_string()}</span>
                                        </div>
                                        <pre class="mt-3 whitespace-pre-wrap break-all text-sm text-slate-300">
                                            {linkify(&m.body).into_iter().map(|(text, link)| if link {
                                                view! { <a class="text-indigo-400 underline" href=text.clone()>{text.clone()}</a> }.into_any()
                                            } else {
                                                view! { <span>{text}</span> }.into_any()
                                            }).collect_view()}
                                        </pre>
                                    </li>
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}
