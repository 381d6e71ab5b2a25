use super::{mail::MailTransport, ratelimit::{AccountLimiter, LoginLimiter}, secretbox::SecretBox, Config};
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
    /// Registrations, reset requests and submissions, verification mails.
    pub account_limiter: Arc<AccountLimiter>,
    /// Live streams each user holds open (`ROUNDHOUSE_STREAMS_PER_USER`).
    pub streams: Arc<super::streams::StreamSlots>,
    /// Encrypts variable values at rest.
    pub secrets: Arc<SecretBox>,
    /// Status changes, log notifications and service routes of this replica.
    pub live: super::live::Live,
    /// Who may deploy, as the runtime's containment allows (set once the runtime has checked
    /// its sandbox at start).
    pub admission: Arc<std::sync::RwLock<Admission>>,
    /// The source kinds this replica's runtime cannot run, by name, with why (set by the
    /// server from `Runtime::supports` at start).
    pub refused_sources: Arc<std::sync::RwLock<Vec<(String, String)>>>,
    /// What keeps the runtime from doing its work now (a cluster that does not answer), for
    /// `/readyz`; `None` when nothing does.
    pub runtime_trouble: Arc<std::sync::RwLock<Option<String>>>,
    /// Whether Postgres answers (`db.rs`): while it does not, requests get 503 at once.
    pub db_health: Arc<super::db::DbHealth>,
    /// Stripe, when configured (None: the local ledger bills).
    pub payments: Option<Arc<dyn super::payments::PaymentProvider>>,
}

/// Who may deploy on this platform, given how the local runtime can contain what runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Every verified user: what runs is sandboxed (or runs elsewhere than this machine).
    Everyone,
    /// `ROUNDHOUSE_SANDBOX=off`: the explicit single-user mode, admins' projects only.
    AdminsOnly,
    /// The sandbox is required but cannot be set up on this machine: no one, for this reason.
    Nobody(String),
}

impl AppState {
    pub fn admission(&self) -> Admission {
        self.admission.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_admission(&self, admission: Admission) {
        *self.admission.write().unwrap_or_else(|e| e.into_inner()) = admission;
    }

    /// Why the runtime cannot run a source of this kind (its name), if it cannot.
    pub fn refused_source(&self, kind: &str) -> Option<String> {
        self.refused_sources.read().unwrap_or_else(|e| e.into_inner()).iter().find(|(k, _)| k == kind).map(|(_, why)| why.clone())
    }

    pub fn runtime_trouble(&self) -> Option<String> {
        self.runtime_trouble.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_runtime_trouble(&self, trouble: Option<String>) {
        *self.runtime_trouble.write().unwrap_or_else(|e| e.into_inner()) = trouble;
    }

    pub fn set_refused_sources(&self, refused: Vec<(String, String)>) {
        *self.refused_sources.write().unwrap_or_else(|e| e.into_inner()) = refused;
    }
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
        let account_limiter = Arc::new(AccountLimiter::new(config.account_actions_per_ip_per_hour));
        let streams = super::streams::StreamSlots::new(config.streams_per_user);
        AppState {
            leptos_options,
            db,
            config: Arc::new(config),
            mail,
            login_limiter,
            account_limiter,
            streams,
            secrets: Arc::new(secrets),
            live: Default::default(),
            admission: Arc::new(std::sync::RwLock::new(Admission::Everyone)),
            payments: None,
            db_health: Default::default(),
            refused_sources: Default::default(),
            runtime_trouble: Default::default(),
        }
    }
}

impl AppState {
    /// The same state billing through `payments`.
    pub fn with_payments(mut self, payments: Arc<dyn super::payments::PaymentProvider>) -> Self {
        self.payments = Some(payments);
        self
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
