//! Accounts: registration, sign-in, sessions, email verification, password reset, profile and
//! personal API tokens.

#[cfg(feature = "ssr")]
pub mod guard;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod service;
mod session;

pub use session::{use_session, Session};

use crate::error::AppError;
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Result<Self, AppError> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            _ => Err(AppError::validation("role", "Role must be user or admin.")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub plan_id: String,
    pub email_verified: bool,
    pub suspended: bool,
    pub created_at: DateTime<Utc>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// What an API token may do. Ordered: each allows what the one before it does, and more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, sqlx::Type))]
#[cfg_attr(feature = "ssr", sqlx(type_name = "text", rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Reads only (GET).
    Read,
    /// Reads, and deploys: new deployments, rollbacks, restarts, cancels, source uploads.
    Deploy,
    /// Everything the account may do.
    Full,
}

impl TokenScope {
    pub const ALL: [TokenScope; 3] = [TokenScope::Read, TokenScope::Deploy, TokenScope::Full];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Deploy => "deploy",
            TokenScope::Full => "full",
        }
    }

    pub fn parse(s: &str) -> Result<Self, AppError> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s.trim())
            .ok_or_else(|| AppError::validation("scope", "The scope must be read, deploy or full."))
    }

    /// Whether a request (`method`, path under `/api/v1`, or a server function's path) is
    /// within this scope.
    pub fn allows(self, method: &str, path: &str) -> bool {
        let safe = matches!(method, "GET" | "HEAD" | "OPTIONS");
        match self {
            TokenScope::Full => true,
            TokenScope::Read => safe,
            TokenScope::Deploy => safe || (method == "POST" && is_deploy_action(path)),
        }
    }
}

/// The REST routes that deploy: `POST /services/{id}/deployments`, `POST /services/{id}/source`,
/// `POST /deployments/{id}/{rollback,restart,cancel,redeploy}`.
fn is_deploy_action(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/v1/") else { return false };
    let parts: Vec<&str> = rest.split('/').collect();
    matches!(parts.as_slice(), ["services", _, "deployments" | "source"] | ["deployments", _, "rollback" | "restart" | "cancel" | "redeploy"])
}

/// A personal API token as listed: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, sqlx::FromRow))]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the token, to tell tokens apart.
    pub prefix: String,
    pub scope: TokenScope,
    /// When it stops working (none: when it is revoked).
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A token just created: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CreatedApiToken {
    #[serde(flatten)]
    pub token: ApiToken,
    pub secret: String,
}

// ---------------------------------------------------------------------------------------------
// Server functions: authenticate, take state, call the service, map the result.

#[server(endpoint = "get_me")]
pub async fn get_me() -> Result<Option<User>, AppError> {
    crate::infra::request::with_status(async move {
        Ok(crate::auth::guard::current().map(|a| a.user))
    })
    .await
}

#[server(endpoint = "register")]
pub async fn register(
    name: String,
    email: String,
    password: String,
    next: Option<String>,
) -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let state = request::state()?;
        let input = service::RegisterInput::parse(&name, &email, &password)?;
        let user = service::register(&state, &request::client_ip(), input).await?;
        let token = service::create_session(&state.db, user.id, service::SessionKind::Browser, request::user_agent(), &request::client_ip()).await?;
        request::set_cookie(service::session_cookie(&state.config, &token));
        leptos_axum::redirect(&crate::domain::safe_next_path(next.as_deref()));
        Ok(())
    })
    .await
}

#[server(endpoint = "login")]
pub async fn login(email: String, password: String, next: Option<String>) -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let state = request::state()?;
        let (_, token) = service::login(&state, &request::client_ip(), &email, &password, service::SessionKind::Browser, request::user_agent()).await?;
        request::set_cookie(service::session_cookie(&state.config, &token));
        leptos_axum::redirect(&crate::domain::safe_next_path(next.as_deref()));
        Ok(())
    })
    .await
}

#[server(endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let state = request::state()?;
        if let Some(auth) = crate::auth::guard::current() {
            service::end_authentication(&state.db, &auth).await?;
        }
        request::set_cookie(service::clear_session_cookie(&state.config));
        leptos_axum::redirect("/");
        Ok(())
    })
    .await
}

#[server(endpoint = "verify_email")]
pub async fn verify_email(token: String) -> Result<User, AppError> {
    crate::infra::request::with_status(async move {
        let state = crate::infra::request::state()?;
        service::verify_email(&state.db, &token).await
    })
    .await
}

#[server(endpoint = "resend_verification")]
pub async fn resend_verification() -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let state = request::state()?;
        service::resend_verification(&state, &request::client_ip(), &auth.user).await
    })
    .await
}

#[server(endpoint = "request_password_reset")]
pub async fn request_password_reset(email: String) -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        let state = crate::infra::request::state()?;
        service::request_password_reset(&state, &crate::infra::request::client_ip(), &email).await
    })
    .await
}

#[server(endpoint = "reset_password")]
pub async fn reset_password(token: String, password: String) -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        let state = crate::infra::request::state()?;
        service::reset_password(&state, &crate::infra::request::client_ip(), &token, &password).await
    })
    .await
}

#[server(endpoint = "update_profile")]
pub async fn update_profile(name: String) -> Result<User, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let state = request::state()?;
        service::update_profile(&state.db, auth.user.id, &name).await
    })
    .await
}

#[server(endpoint = "change_password")]
pub async fn change_password(current_password: String, new_password: String) -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let state = request::state()?;
        service::change_password(&state.db, &auth, &current_password, &new_password, &request::client_ip()).await
    })
    .await
}

#[server(endpoint = "list_tokens")]
pub async fn list_tokens() -> Result<Vec<ApiToken>, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::list_tokens(&request::state()?.db, auth.user.id).await
    })
    .await
}

#[server(endpoint = "create_token")]
pub async fn create_token(name: String, scope: Option<String>, expires_in_days: Option<String>) -> Result<CreatedApiToken, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let new = service::NewToken::parse(&name, scope.as_deref(), expires_in_days.as_deref())?;
        service::create_token(&request::state()?.db, &auth, new, &request::client_ip()).await
    })
    .await
}

#[server(endpoint = "revoke_token")]
pub async fn revoke_token(id: Uuid) -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        service::revoke_token(&request::state()?.db, auth.user.id, id, &request::client_ip()).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_allows_its_own_and_narrower_requests_only() {
        use TokenScope::*;
        assert!(Read.allows("GET", "/api/v1/projects") && !Read.allows("POST", "/api/v1/projects"));
        assert!(!Read.allows("POST", "/api/create_project"), "server functions are POSTs");
        assert!(Deploy.allows("POST", "/api/v1/services/abc/deployments"));
        assert!(Deploy.allows("POST", "/api/v1/deployments/abc/rollback"));
        assert!(Deploy.allows("POST", "/api/v1/services/abc/source"));
        assert!(!Deploy.allows("PUT", "/api/v1/services/abc/variables/X"));
        assert!(!Deploy.allows("DELETE", "/api/v1/services/abc"));
        assert!(!Deploy.allows("POST", "/api/v1/tokens"));
        assert!(!Deploy.allows("POST", "/api/v1/services/abc/deployments/extra"));
        assert!(!Deploy.allows("POST", "/api/v1/deployments/abc/reveal"));
        assert!(Full.allows("DELETE", "/api/v1/services/abc"));
        assert!(Read < Deploy && Deploy < Full);
    }
}
