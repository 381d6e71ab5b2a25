//! The small UI kit every page uses: form fields with errors, buttons (CSS classes in
//! style/tailwind.css), badges, empty states, confirm dialogs, toasts and error notes.

use crate::error::AppError;
use leptos::{prelude::*, server::ServerActionError, server_fn::error::ServerFnUrlError};

/// Shows on this page the error a form submitted without JavaScript came back with (the
/// server redirects back with `?__path=…&__err=…`). Actions made inside the router read it
/// themselves; the session's (sign-in, registration) are made above the router and do not.
pub fn adopt_url_error<S>(action: ServerAction<S>)
where
    S: leptos::server_fn::ServerFn<Error = AppError> + Clone + Send + Sync + 'static,
    S::Output: Send + Sync + 'static,
{
    let Some(error) = use_context::<ServerActionError>().filter(|e| e.path() == S::PATH) else { return };
    if action.value().with_untracked(Option::is_none) {
        action.value().set(Some(Err(ServerFnUrlError::<AppError>::decode_err(error.err()))));
    }
}

/// The error of a field from an action's last result.
pub fn field_error<T, S>(value: S, field: &'static str) -> Signal<Option<String>>
where
    T: Send + Sync + 'static,
    S: With<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
{
    Signal::derive(move || {
        value.with(|v| match v {
            Some(Err(e)) if e.field() == Some(field) => Some(e.to_string()),
            _ => None,
        })
    })
}

/// The error of an action's last result that is not about one of `fields`.
pub fn form_error<T, S>(value: S, fields: &'static [&'static str]) -> Signal<Option<String>>
where
    T: Send + Sync + 'static,
    S: With<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
{
    Signal::derive(move || {
        value.with(|v| match v {
            Some(Err(e)) if !e.field().is_some_and(|f| fields.contains(&f)) => Some(e.to_string()),
            _ => None,
        })
    })
}

#[component]
pub fn Field(
    #[prop(into)] label: String,
    #[prop(into)] name: String,
    #[prop(into, default = "text".to_string())] input_type: String,
    #[prop(into, optional)] value: Option<String>,
    #[prop(into, optional)] placeholder: Option<String>,
    #[prop(into, optional)] autocomplete: Option<String>,
    #[prop(into, optional)] hint: Option<String>,
    #[prop(optional)] required: bool,
    #[prop(into, optional)] error: Option<Signal<Option<String>>>,
) -> impl IntoView {
    let id = format!("field-{name}");
    let error_id = format!("{id}-error");
    let error = error.unwrap_or_else(|| Signal::derive(|| None));
    view! {
        <div class="space-y-1">
            <label for=id.clone() class="block text-sm font-medium text-slate-300">{label}</label>
            <input
                id=id
                name=name
                type=input_type
                value=value
                placeholder=placeholder
                autocomplete=autocomplete
                required=required
                aria-invalid=move || if error.get().is_some() { "true" } else { "false" }
                aria-describedby=error_id.clone()
                class="input"
            />
            {hint.map(|h| view! { <p class="text-xs text-slate-500">{h}</p> })}
            <p id=error_id class="text-sm text-rose-400" role="alert">{move || error.get()}</p>
        </div>
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Neutral,
    Good,
    Warn,
    Bad,
    Accent,
}

#[component]
pub fn Badge(tone: Tone, children: Children) -> impl IntoView {
    let class = match tone {
        Tone::Neutral => "badge bg-slate-800 text-slate-300",
        Tone::Good => "badge bg-emerald-950 text-emerald-300 ring-emerald-800",
        Tone::Warn => "badge bg-amber-950 text-amber-300 ring-amber-800",
        Tone::Bad => "badge bg-rose-950 text-rose-300 ring-rose-800",
        Tone::Accent => "badge bg-indigo-950 text-indigo-300 ring-indigo-800",
    };
    view! { <span class=class.to_string()>{children()}</span> }
}

#[component]
pub fn EmptyState(
    #[prop(into)] title: String,
    #[prop(into)] body: String,
    #[prop(optional)] children: Option<Children>,
) -> impl IntoView {
    view! {
        <div class="mt-6 rounded-xl border border-dashed border-slate-700 px-6 py-12 text-center">
            <h3 class="text-lg font-medium text-slate-200">{title}</h3>
            <p class="mt-1 text-sm text-slate-400">{body}</p>
            {children.map(|c| view! { <div class="mt-4">{c()}</div> })}
        </div>
    }
}

/// Shows an error: a sign-in prompt for 401, the message otherwise.
#[component]
pub fn ErrorNote(error: AppError) -> impl IntoView {
    match error {
        AppError::Unauthorized => view! {
            <div class="mt-6 rounded-lg border border-slate-700 bg-slate-900 p-4 text-slate-300" role="alert">
                "Please " <a class="text-indigo-400 underline" href="/login">"sign in"</a> " to continue."
            </div>
        }
        .into_any(),
        other => view! {
            <div class="mt-6 rounded-lg border border-rose-900 bg-rose-950/50 p-4 text-rose-200" role="alert">
                {other.to_string()}
            </div>
        }
        .into_any(),
    }
}

/// A confirmation step that works without JavaScript: the destructive form is inside a
/// disclosure the user opens first.
#[component]
pub fn ConfirmDialog(
    #[prop(into)] label: String,
    #[prop(into)] question: String,
    children: Children,
) -> impl IntoView {
    view! {
        <details class="group relative inline-block">
            <summary class="btn btn-danger list-none cursor-pointer">{label}</summary>
            <div role="dialog" aria-modal="false" class="absolute right-0 z-20 mt-2 w-72 rounded-lg border border-slate-700 bg-slate-900 p-4 shadow-xl">
                <p class="text-sm text-slate-300">{question}</p>
                <div class="mt-3 flex justify-end gap-2">{children()}</div>
            </div>
        </details>
    }
}

/// Toasts: short confirmations after an action, announced to screen readers.
#[derive(Clone, Copy)]
pub struct Toasts(RwSignal<Vec<(u64, String)>>);

impl Toasts {
    pub fn provide() -> Self {
        let t = Toasts(RwSignal::new(Vec::new()));
        provide_context(t);
        t
    }

    pub fn show(&self, message: impl Into<String>) {
        let list = self.0;
        let id = list.with_untracked(|l| l.last().map(|(i, _)| i + 1).unwrap_or(0));
        list.update(|l| l.push((id, message.into())));
        set_timeout(move || list.update(|l| l.retain(|(i, _)| *i != id)), std::time::Duration::from_secs(4));
    }
}

pub fn use_toasts() -> Toasts {
    use_context::<Toasts>().unwrap_or_else(Toasts::provide)
}

#[component]
pub fn ToastRegion() -> impl IntoView {
    let toasts = use_toasts();
    view! {
        <div class="pointer-events-none fixed bottom-4 right-4 z-50 space-y-2" aria-live="polite">
            <For each=move || toasts.0.get() key=|(id, _)| *id let:toast>
                <div class="pointer-events-auto rounded-lg border border-emerald-800 bg-emerald-950 px-4 py-2 text-sm text-emerald-200 shadow-lg" role="status">
                    {toast.1}
                </div>
            </For>
        </div>
    }
}

/// During server rendering, answers the page with the error's status (a missing or foreign
/// project is a real 404). Does nothing in the browser.
pub fn respond_with_status(error: &AppError) {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.set_status(http::StatusCode::from_u16(error.status()).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR));
    }
    #[cfg(not(feature = "ssr"))]
    let _ = error;
}

pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// One bar of a [`BarChart`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// A key for tests and styling (`data-key`).
    pub key: String,
    pub value: i64,
    /// What hovering the bar says.
    pub title: String,
}

/// Bars drawn on the server as SVG (no chart library in the bundle): `first` and `last` label
/// the axis ends; `aria` says what the chart shows; `slots` keeps room for that many bars (a
/// month's days while the month is young).
#[component]
pub fn BarChart(
    bars: Vec<Bar>,
    aria: String,
    testid: &'static str,
    #[prop(optional)] first: Option<String>,
    #[prop(optional)] last: Option<String>,
    #[prop(optional)] slots: Option<usize>,
) -> impl IntoView {
    const W: i64 = 720;
    const H: i64 = 140;
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1);
    let slot = W / (bars.len().max(slots.unwrap_or(0)).max(1) as i64);
    let drawn = bars
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let h = if b.value <= 0 { 1 } else { (b.value * (H - 20) / max).max(2) };
            view! {
                <rect class="fill-indigo-500" x=i as i64 * slot + 2 y=H - 16 - h width=(slot - 4).max(2) height=h data-key=b.key>
                    <title>{b.title}</title>
                </rect>
            }
        })
        .collect_view();
    view! {
        <svg class="mt-3 w-full max-w-full" viewBox=format!("0 0 {W} {H}") role="img" aria-label=aria data-testid=testid>
            <line x1="0" y1=H - 15 x2=W y2=H - 15 class="stroke-slate-700"/>
            {drawn}
            <text x="0" y=H - 2 class="fill-slate-500 text-[10px]">{first}</text>
            <text x=W y=H - 2 text-anchor="end" class="fill-slate-500 text-[10px]">{last}</text>
        </svg>
    }
}
