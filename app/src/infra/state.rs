use super::{mail::MailTransport, ratelimit::LoginLimiter, secretbox::SecretBox, Config};
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use sqlx::PgPool;
use std::sync::Arc;

/// Everything a request handler or server function needs, cheap to clone. Infrastructure
/// sits behind traits so tests and other deployments swap implementations, not code paths.
#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub db: PgPool,
    pub config: Arc<Config>,
    pub mail: Arc<dyn MailTransport>,
    pub login_limiter: Arc<LoginLimiter>,
    /// Encrypts variable values at rest.
    pub secrets: Arc<SecretBox>,
    /// Status changes, log notifications and service routes of this replica.
    pub live: super::live::Live,
}

impl AppState {
    pub fn new(
        leptos_options: LeptosOptions,
        db: PgPool,
        config: Config,
        mail: Arc<dyn MailTransport>,
        secrets: SecretBox,
    ) -> Self {
        let login_limiter = Arc::new(LoginLimiter::new(
            config.login_per_ip_per_minute,
            config.login_per_account_per_minute,
        ));
        AppState { leptos_options, db, config: Arc::new(config), mail, login_limiter, secrets: Arc::new(secrets), live: Default::default() }
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
