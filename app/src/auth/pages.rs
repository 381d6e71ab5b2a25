use super::*;
use crate::ui::{adopt_url_error, field_error, form_error, Badge, ConfirmDialog, EmptyState, ErrorNote, Field, Tone};
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
fn AuthCard(title: &'static str, subtitle: &'static str, children: Children) -> impl IntoView {
    view! {
        <section class="mx-auto max-w-md px-4 py-16">
            <h1 class="text-2xl font-semibold">{title}</h1>
            <p class="mt-1 text-sm text-slate-400">{subtitle}</p>
            <div class="card mt-6">{children()}</div>
        </section>
    }
}

fn query(name: &'static str) -> Memo<Option<String>> {
    let q = use_query_map();
    Memo::new(move |_| q.with(|q| q.get(name)))
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let session = use_session();
    let next = query("next");
    adopt_url_error(session.login);
    let value = session.login.value();
    view! {
        <Title text="Sign in · Roundhouse"/>
        <AuthCard title="Sign in" subtitle="Welcome back.">
            <ActionForm action=session.login attr:class="space-y-4">
                <input type="hidden" name="next" value=move || next.get().unwrap_or_default()/>
                <Field label="Email" name="email" input_type="email" autocomplete="email" required=true error=field_error(value, "email")/>
                <Field label="Password" name="password" input_type="password" autocomplete="current-password" required=true error=field_error(value, "password")/>
                <p class="text-sm text-rose-400" role="alert">{form_error(value, &["email", "password"])}</p>
                <button type="submit" class="btn btn-primary w-full" disabled=move || session.login.pending().get()>
                    {move || if session.login.pending().get() { "Signing in…" } else { "Sign in" }}
                </button>
            </ActionForm>
            <div class="mt-4 flex justify-between text-sm">
                <a class="text-indigo-400 hover:underline" href="/forgot">"Forgot your password?"</a>
                <a class="text-indigo-400 hover:underline" href="/register">"Create an account"</a>
            </div>
        </AuthCard>
    }
}

#[component]
pub fn RegisterPage() -> impl IntoView {
    let session = use_session();
    let next = query("next");
    adopt_url_error(session.register);
    let value = session.register.value();
    view! {
        <Title text="Create an account · Roundhouse"/>
        <AuthCard title="Create your account" subtitle="Free to start. No card needed.">
            <ActionForm action=session.register attr:class="space-y-4">
                <input type="hidden" name="next" value=move || next.get().unwrap_or_default()/>
                <Field label="Name" name="name" autocomplete="name" required=true error=field_error(value, "name")/>
                <Field label="Email" name="email" input_type="email" autocomplete="email" required=true error=field_error(value, "email")/>
                <Field label="Password" name="password" input_type="password" autocomplete="new-password" required=true
                    hint="At least 10 characters." error=field_error(value, "password")/>
                <p class="text-sm text-rose-400" role="alert">{form_error(value, &["name", "email", "password"])}</p>
                <button type="submit" class="btn btn-primary w-full" disabled=move || session.register.pending().get()>
                    {move || if session.register.pending().get() { "Creating…" } else { "Create account" }}
                </button>
            </ActionForm>
            <p class="mt-4 text-sm text-slate-400">
                "Already have an account? " <a class="text-indigo-400 hover:underline" href="/login">"Sign in"</a>
            </p>
        </AuthCard>
    }
}

#[component]
pub fn VerifyPage() -> impl IntoView {
    let token = query("token");
    let verify = ServerAction::<VerifyEmail>::new();
    let session = use_session();
    let value = verify.value();
    // Refresh the signed-in user once verified, so banners disappear.
    Effect::new(move |_| {
        if matches!(value.get(), Some(Ok(_))) {
            session.me.refetch();
        }
    });
    view! {
        <Title text="Confirm your email · Roundhouse"/>
        <AuthCard title="Confirm your email" subtitle="One click and your account is ready to deploy.">
            {move || match value.get() {
                Some(Ok(user)) => view! {
                    <p class="text-emerald-300" data-testid="verified">"Thanks, " {user.name} ". Your email address " {user.email} " is confirmed."</p>
                    <a class="btn btn-primary mt-4" href="/dashboard">"Go to your dashboard"</a>
                }.into_any(),
                _ => view! {
                    <ActionForm action=verify attr:class="space-y-4">
                        <input type="hidden" name="token" value=move || token.get().unwrap_or_default()/>
                        <p class="text-sm text-rose-400" role="alert">{form_error(value, &[])}</p>
                        <button type="submit" class="btn btn-primary w-full">"Confirm my email address"</button>
                    </ActionForm>
                }.into_any(),
            }}
        </AuthCard>
    }
}

#[component]
pub fn ForgotPage() -> impl IntoView {
    let request = ServerAction::<RequestPasswordReset>::new();
    let value = request.value();
    view! {
        <Title text="Reset your password · Roundhouse"/>
        <AuthCard title="Reset your password" subtitle="We will mail you a link to choose a new one.">
            {move || match value.get() {
                Some(Ok(())) => view! {
                    <p class="text-emerald-300" role="status">"If an account uses that address, a reset link is on its way. It works for an hour."</p>
                }.into_any(),
                _ => view! {
                    <ActionForm action=request attr:class="space-y-4">
                        <Field label="Email" name="email" input_type="email" autocomplete="email" required=true error=field_error(value, "email")/>
                        <p class="text-sm text-rose-400" role="alert">{form_error(value, &["email"])}</p>
                        <button type="submit" class="btn btn-primary w-full">"Send the link"</button>
                    </ActionForm>
                }.into_any(),
            }}
        </AuthCard>
    }
}

#[component]
pub fn ResetPage() -> impl IntoView {
    let token = query("token");
    let reset = ServerAction::<ResetPassword>::new();
    let value = reset.value();
    view! {
        <Title text="Choose a new password · Roundhouse"/>
        <AuthCard title="Choose a new password" subtitle="You will be signed out everywhere else.">
            {move || match value.get() {
                Some(Ok(())) => view! {
                    <p class="text-emerald-300" role="status">"Your password is changed."</p>
                    <a class="btn btn-primary mt-4" href="/login">"Sign in"</a>
                }.into_any(),
                _ => view! {
                    <ActionForm action=reset attr:class="space-y-4">
                        <input type="hidden" name="token" value=move || token.get().unwrap_or_default()/>
                        <Field label="New password" name="password" input_type="password" autocomplete="new-password" required=true
                            hint="At least 10 characters." error=field_error(value, "password")/>
                        <p class="text-sm text-rose-400" role="alert">{form_error(value, &["password"])}</p>
                        <button type="submit" class="btn btn-primary w-full">"Set password"</button>
                    </ActionForm>
                }.into_any(),
            }}
        </AuthCard>
    }
}

#[component]
pub fn AccountPage() -> impl IntoView {
    let session = use_session();
    view! {
        <Title text="Account · Roundhouse"/>
        <section class="mx-auto max-w-3xl space-y-8 px-4 py-10">
            <h1 class="text-2xl font-semibold">"Account"</h1>
            <Suspense fallback=|| view! { <p class="text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match session.me.await {
                        Ok(Some(user)) => view! { <AccountDetails user/> <crate::audit::pages::SecurityLog/> }.into_any(),
                        Ok(None) => view! { <ErrorNote error=AppError::Unauthorized/> }.into_any(),
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn AccountDetails(user: User) -> impl IntoView {
    let session = use_session();
    let toasts = crate::ui::use_toasts();
    let profile = ServerAction::<UpdateProfile>::new();
    let password = ServerAction::<ChangePassword>::new();
    let resend = ServerAction::<ResendVerification>::new();
    let profile_value = profile.value();
    let password_value = password.value();
    Effect::new(move |_| {
        if matches!(profile_value.get(), Some(Ok(_))) {
            toasts.show("Profile saved");
            session.me.refetch();
        }
    });
    Effect::new(move |_| {
        if matches!(password_value.get(), Some(Ok(()))) {
            toasts.show("Password changed; other sessions were signed out");
        }
    });
    view! {
        <div class="card space-y-4">
            <div class="flex flex-wrap items-center gap-2">
                <h2 class="text-lg font-medium">"Profile"</h2>
                {if user.email_verified {
                    view! { <Badge tone=Tone::Good>"email verified"</Badge> }.into_any()
                } else {
                    view! { <Badge tone=Tone::Warn>"email not verified"</Badge> }.into_any()
                }}
                {user.is_admin().then(|| view! { <Badge tone=Tone::Accent>"admin"</Badge> })}
                <Badge tone=Tone::Neutral>{format!("{} plan", user.plan_id)}</Badge>
            </div>
            <p class="text-sm text-slate-400">{user.email.clone()}</p>
            {(!user.email_verified).then(|| view! {
                <ActionForm action=resend attr:class="flex flex-wrap items-center gap-3">
                    <button type="submit" class="btn btn-secondary">"Send the verification mail again"</button>
                    <span class="text-sm text-slate-400" role="status">{move || match resend.value().get() {
                        Some(Ok(())) => "Sent. Check your inbox.".to_string(),
                        Some(Err(e)) => e.to_string(),
                        None => String::new(),
                    }}</span>
                </ActionForm>
            })}
            <ActionForm action=profile attr:class="space-y-4">
                <Field label="Name" name="name" value=user.name.clone() required=true error=field_error(profile_value, "name")/>
                <button type="submit" class="btn btn-primary">"Save profile"</button>
            </ActionForm>
        </div>
        <div class="card">
            <h2 class="text-lg font-medium">"Password"</h2>
            <ActionForm action=password attr:class="mt-4 space-y-4">
                <Field label="Current password" name="current_password" input_type="password" autocomplete="current-password" required=true
                    error=field_error(password_value, "current_password")/>
                <Field label="New password" name="new_password" input_type="password" autocomplete="new-password" required=true
                    hint="At least 10 characters." error=field_error(password_value, "new_password")/>
                <p class="text-sm text-rose-400" role="alert">{form_error(password_value, &["current_password", "new_password"])}</p>
                <button type="submit" class="btn btn-secondary">"Change password"</button>
            </ActionForm>
        </div>
        <TokensCard/>
    }
}

#[component]
fn TokensCard() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let tokens = Resource::new(move || (create.version().get(), revoke.version().get()), |_| list_tokens());
    let created = create.value();
    view! {
        <div class="card">
            <h2 class="text-lg font-medium">"API tokens"</h2>
            <p class="mt-1 text-sm text-slate-400">
                "Personal tokens for the CLI and automation. Send one as " <code>"Authorization: Bearer …"</code> "."
            </p>
            <ActionForm action=create attr:class="mt-4 flex flex-wrap items-start gap-3">
                <div class="min-w-48 flex-1">
                    <Field label="Token name" name="name" placeholder="laptop CLI" required=true error=field_error(created, "name")/>
                </div>
                <label class="block">
                    <span class="block text-sm font-medium text-slate-300">"Scope"</span>
                    <select class="input mt-1" name="scope">
                        <option value="full">"Full access"</option>
                        <option value="deploy">"Deploy (read and deploy)"</option>
                        <option value="read">"Read only"</option>
                    </select>
                </label>
                <label class="block">
                    <span class="block text-sm font-medium text-slate-300">"Expires"</span>
                    <select class="input mt-1" name="expires_in_days">
                        <option value="">"Never (until revoked)"</option>
                        <option value="7">"In 7 days"</option>
                        <option value="30">"In 30 days"</option>
                        <option value="90">"In 90 days"</option>
                        <option value="365">"In a year"</option>
                    </select>
                </label>
                <button type="submit" class="btn btn-primary mt-6">"Create token"</button>
            </ActionForm>
            <p class="mt-2 text-sm text-rose-400" role="alert">{form_error(created, &["name"])}</p>
            {move || created.get().and_then(Result::ok).map(|t| view! {
                <div class="mt-4 rounded-lg border border-emerald-800 bg-emerald-950/60 p-4" data-testid="new-token">
                    <p class="text-sm text-emerald-200">"Copy your new token now. It will not be shown again."</p>
                    <code class="mt-2 block break-all rounded bg-slate-950 p-2 text-sm">{t.secret}</code>
                </div>
            })}
            <Transition fallback=|| view! { <p class="mt-4 text-slate-400">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match tokens.await {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <EmptyState title="No tokens" body="Create one to use the API."/>
                        }.into_any(),
                        Ok(list) => view! {
                            <table class="table mt-4">
                                <thead><tr><th>"Name"</th><th>"Token"</th><th>"Scope"</th><th>"Expires"</th><th>"Created"</th><th>"Last used"</th><th></th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|t| view! {
                                        <tr>
                                            <td>{t.name.clone()}</td>
                                            <td><code>{t.prefix.clone()} "…"</code></td>
                                            <td>{t.scope.as_str()}</td>
                                            <td>{t.expires_at.map(crate::ui::format_time).unwrap_or_else(|| "never".into())}</td>
                                            <td>{crate::ui::format_time(t.created_at)}</td>
                                            <td>{t.last_used_at.map(crate::ui::format_time).unwrap_or_else(|| "never".into())}</td>
                                            <td class="text-right">
                                                <ConfirmDialog label="Revoke" question=format!("Revoke \"{}\"? Programs using it stop working.", t.name)>
                                                    <ActionForm action=revoke>
                                                        <input type="hidden" name="id" value=t.id.to_string()/>
                                                        <button type="submit" class="btn btn-danger">"Revoke token"</button>
                                                    </ActionForm>
                                                </ConfirmDialog>
                                            </td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}
