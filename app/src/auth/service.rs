//! Account logic shared by server functions and the REST API.

use super::{ApiToken, CreatedApiToken, Role, TokenScope, User};
use crate::{
    domain::{DisplayName, Email, Password, TokenName},
    error::{AppError, AppResult},
    infra::{crypto, mail, ratelimit::AccountAction, AppState, Config},
};
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

pub const SESSION_DAYS: i64 = 30;
pub const API_TOKEN_PREFIX: &str = "rhp_";
pub const SESSION_TOKEN_PREFIX: &str = "rhs_";
const VERIFY_HOURS: i64 = 48;
const RESET_MINUTES: i64 = 60;

/// Who is making a request, resolved once by the server's auth middleware.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub via: AuthVia,
}

#[derive(Debug, Clone)]
pub enum AuthVia {
    Session { token_hash: Vec<u8> },
    ApiToken { id: Uuid, scope: TokenScope, expires_at: Option<DateTime<Utc>> },
}

impl Authenticated {
    /// What this caller may do: a session all the account may, a token its scope.
    pub fn scope(&self) -> TokenScope {
        match &self.via {
            AuthVia::Session { .. } => TokenScope::Full,
            AuthVia::ApiToken { scope, .. } => *scope,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum SessionKind {
    Browser,
    Api,
}

impl SessionKind {
    fn as_str(self) -> &'static str {
        match self {
            SessionKind::Browser => "browser",
            SessionKind::Api => "api",
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: Uuid,
    email: String,
    name: String,
    role: String,
    plan_id: String,
    email_verified_at: Option<DateTime<Utc>>,
    suspended_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

pub(crate) const USER_COLUMNS: &str =
    "u.id, u.email, u.name, u.role, u.plan_id, u.email_verified_at, u.suspended_at, u.created_at";

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            email: r.email,
            name: r.name,
            role: if r.role == "admin" { Role::Admin } else { Role::User },
            plan_id: r.plan_id,
            email_verified: r.email_verified_at.is_some(),
            suspended: r.suspended_at.is_some(),
            created_at: r.created_at,
        }
    }
}

pub async fn find_user(db: &PgPool, id: Uuid) -> AppResult<User> {
    let row: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.map(User::from).ok_or_else(|| AppError::not_found("User"))
}

// ---------------------------------------------------------------------------------------------
// Registration and sign-in

pub struct RegisterInput {
    pub name: DisplayName,
    pub email: Email,
    pub password: Password,
}

impl RegisterInput {
    pub fn parse(name: &str, email: &str, password: &str) -> AppResult<Self> {
        Ok(RegisterInput {
            name: DisplayName::parse(name)?,
            email: Email::parse(email)?,
            password: Password::parse(password)?,
        })
    }
}

/// Refuses an account action over its rate limit (per client address, per target).
fn limit(state: &AppState, action: AccountAction, ip: &str, target: &str) -> AppResult<()> {
    state.account_limiter.check(action, ip, target).map_err(|wait| {
        tracing::warn!(ip, ?action, "account action rate limited");
        AppError::RateLimited { retry_after_secs: wait.as_secs().max(1) }
    })
}

pub async fn register(state: &AppState, ip: &str, input: RegisterInput) -> AppResult<User> {
    limit(state, AccountAction::Register, ip, input.email.as_str())?;
    let hash = hash_password_off_thread(input.password).await?;
    let row: Result<UserRow, sqlx::Error> = sqlx::query_as(&format!(
        "INSERT INTO users AS u (email, name, password_hash) VALUES ($1, $2, $3) RETURNING {USER_COLUMNS}"
    ))
    .bind(input.email.as_str())
    .bind(input.name.as_str())
    .bind(hash)
    .fetch_one(&state.db)
    .await;
    let user: User = match row {
        Ok(row) => row.into(),
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("users_email_key") => {
            return Err(AppError::conflict("email", "An account with this email already exists. Sign in instead?"));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(user_id = %user.id, "user registered");
    send_verification(state, &user).await?;
    Ok(user)
}

async fn hash_password_off_thread(password: Password) -> AppResult<String> {
    // argon2 is deliberately slow; keep it off the async workers.
    tokio::task::spawn_blocking(move || crypto::hash_password(password.expose()))
        .await
        .context("password hashing task")?
        .map_err(AppError::from)
}

/// Checks the rate limits, then the credentials. Wrong email and wrong password get the same
/// answer and take the same time.
pub async fn login(
    state: &AppState,
    ip: &str,
    email: &str,
    password: &str,
    kind: SessionKind,
    user_agent: Option<String>,
) -> AppResult<(User, String)> {
    let email_key = email.trim().to_lowercase();
    if let Err(wait) = state.login_limiter.check(ip, &email_key) {
        tracing::warn!(ip, "sign-in rate limited");
        return Err(AppError::RateLimited { retry_after_secs: wait.as_secs().max(1) });
    }
    if email_key.is_empty() || password.is_empty() {
        return Err(AppError::validation("email", "Enter your email and password."));
    }
    #[derive(sqlx::FromRow)]
    struct Creds {
        id: Uuid,
        password_hash: String,
        suspended_at: Option<DateTime<Utc>>,
    }
    let creds: Option<Creds> =
        sqlx::query_as("SELECT id, password_hash, suspended_at FROM users WHERE lower(email) = $1")
            .bind(&email_key)
            .fetch_optional(&state.db)
            .await?;
    let hash = creds.as_ref().map(|c| c.password_hash.clone()).unwrap_or_else(|| crypto::dummy_password_hash().to_string());
    let password = password.to_string();
    let ok = tokio::task::spawn_blocking(move || crypto::verify_password(&password, &hash))
        .await
        .context("password verification task")?;
    let creds = match creds {
        Some(c) if ok => c,
        other => {
            // On the account's own security log when there is one; else under the address tried.
            let target = match &other {
                Some(c) => format!("user:{}", c.id),
                // Only a well-formed address is kept (bounded, no control characters).
                None => match Email::parse(&email_key) {
                    Ok(e) => format!("email:{}", e.as_str()),
                    Err(_) => "email:(not an address)".to_string(),
                },
            };
            crate::audit::record(&state.db, None, "auth.sign_in_failed", &target, serde_json::json!({}), ip).await?;
            return Err(AppError::InvalidCredentials);
        }
    };
    if creds.suspended_at.is_some() {
        return Err(AppError::forbidden("This account is suspended. Contact the platform administrators."));
    }
    let token = create_session(&state.db, creds.id, kind, user_agent, ip).await?;
    crate::audit::record(&state.db, Some(creds.id), "auth.sign_in", &format!("user:{}", creds.id), serde_json::json!({ "via": kind.as_str() }), ip).await?;
    let user = find_user(&state.db, creds.id).await?;
    tracing::info!(user_id = %user.id, kind = kind.as_str(), "signed in");
    Ok((user, token))
}

pub async fn create_session(
    db: &PgPool,
    user_id: Uuid,
    kind: SessionKind,
    user_agent: Option<String>,
    ip: &str,
) -> AppResult<String> {
    let token = crypto::new_token(SESSION_TOKEN_PREFIX);
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, kind, user_agent, ip, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(crypto::hash_token(&token))
    .bind(user_id)
    .bind(kind.as_str())
    .bind(user_agent)
    .bind(ip)
    .bind(Utc::now() + Duration::days(SESSION_DAYS))
    .execute(db)
    .await?;
    Ok(token)
}

/// Ends what authenticated this request: the session is deleted; an API token is left alone
/// (revoke it explicitly).
pub async fn end_authentication(db: &PgPool, auth: &Authenticated) -> AppResult<()> {
    if let AuthVia::Session { token_hash } = &auth.via {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(db).await?;
    }
    Ok(())
}

/// Whether what authenticated a request still would: the session or token exists (it was not
/// signed out, revoked or ended by a password change) and the user is not suspended. Long-lived
/// streams ask this now and then, and end when it is no longer so.
pub async fn still_authenticated(db: &PgPool, auth: &Authenticated) -> AppResult<bool> {
    let alive: Option<bool> = match &auth.via {
        AuthVia::Session { token_hash } => sqlx::query_scalar(
            "SELECT true FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > now() AND u.suspended_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(db)
        .await?,
        AuthVia::ApiToken { id, .. } => {
            sqlx::query_scalar(
                "SELECT true FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.id = $1 AND u.suspended_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())",
            )
                .bind(id)
                .fetch_optional(db)
                .await?
        }
    };
    Ok(alive.unwrap_or(false))
}

/// Resolves a session token (a browser's cookie) to its user; anything else — an API token
/// above all — is no session.
pub async fn authenticate_session(db: &PgPool, token: &str) -> AppResult<Option<Authenticated>> {
    if !token.starts_with(SESSION_TOKEN_PREFIX) {
        return Ok(None);
    }
    authenticate(db, token).await
}

/// Resolves a bearer or cookie token to its user. Expired sessions, revoked tokens and
/// suspended users resolve to nothing.
pub async fn authenticate(db: &PgPool, token: &str) -> AppResult<Option<Authenticated>> {
    let token_hash = crypto::hash_token(token);
    if token.starts_with(API_TOKEN_PREFIX) {
        #[derive(sqlx::FromRow)]
        struct Row {
            token_id: Uuid,
            token_scope: TokenScope,
            token_expires_at: Option<DateTime<Utc>>,
            #[sqlx(flatten)]
            user: UserRow,
        }
        let row: Option<Row> = sqlx::query_as(&format!(
            "UPDATE api_tokens t SET last_used_at = now() FROM users u
             WHERE t.token_hash = $1 AND u.id = t.user_id AND u.suspended_at IS NULL
               AND (t.expires_at IS NULL OR t.expires_at > now())
             RETURNING t.id AS token_id, t.scope AS token_scope, t.expires_at AS token_expires_at, {USER_COLUMNS}"
        ))
        .bind(&token_hash)
        .fetch_optional(db)
        .await?;
        Ok(row.map(|r| Authenticated {
            user: r.user.into(),
            via: AuthVia::ApiToken { id: r.token_id, scope: r.token_scope, expires_at: r.token_expires_at },
        }))
    } else {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "UPDATE sessions s SET last_seen_at = now() FROM users u
             WHERE s.token_hash = $1 AND s.expires_at > now() AND u.id = s.user_id AND u.suspended_at IS NULL
             RETURNING {USER_COLUMNS}"
        ))
        .bind(&token_hash)
        .fetch_optional(db)
        .await?;
        Ok(row.map(|r| Authenticated { user: r.into(), via: AuthVia::Session { token_hash } }))
    }
}

pub fn session_cookie(config: &Config, token: &str) -> String {
    let secure = if config.secure_cookies() { "; Secure" } else { "" };
    format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        config.session_cookie_name(),
        SESSION_DAYS * 24 * 3600
    )
}

pub fn clear_session_cookie(config: &Config) -> String {
    let secure = if config.secure_cookies() { "; Secure" } else { "" };
    format!("{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}", config.session_cookie_name())
}

/// Reads the session token from a `Cookie` header value.
/// The session token in a `Cookie` header, under `name` (`Config::session_cookie_name`): over
/// https only the `__Host-` cookie counts.
pub fn session_token_from_cookie_header<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Mail links

async fn issue_email_token(db: &PgPool, user_id: Uuid, purpose: &str, valid_for: Duration) -> AppResult<String> {
    let token = crypto::new_token("");
    let mut tx = db.begin().await?;
    // Only the newest link of a kind works.
    sqlx::query("DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2")
        .bind(user_id)
        .bind(purpose)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO email_tokens (token_hash, user_id, purpose, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(crypto::hash_token(&token))
        .bind(user_id)
        .bind(purpose)
        .bind(Utc::now() + valid_for)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(token)
}

/// Marks a mail link used and returns its user, or explains why it cannot be used.
async fn consume_email_token(tx: &mut sqlx::PgConnection, token: &str, purpose: &str) -> AppResult<Uuid> {
    #[derive(sqlx::FromRow)]
    struct Row {
        user_id: Uuid,
        expires_at: DateTime<Utc>,
        used_at: Option<DateTime<Utc>>,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT user_id, expires_at, used_at FROM email_tokens WHERE token_hash = $1 AND purpose = $2 FOR UPDATE",
    )
    .bind(crypto::hash_token(token.trim()))
    .bind(purpose)
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or_else(|| AppError::validation("token", "This link is not valid. Ask for a new one."))?;
    if row.used_at.is_some() {
        return Err(AppError::validation("token", "This link has already been used."));
    }
    if row.expires_at < Utc::now() {
        return Err(AppError::validation("token", "This link has expired. Ask for a new one."));
    }
    sqlx::query("UPDATE email_tokens SET used_at = now() WHERE token_hash = $1")
        .bind(crypto::hash_token(token.trim()))
        .execute(&mut *tx)
        .await?;
    Ok(row.user_id)
}

pub async fn send_verification(state: &AppState, user: &User) -> AppResult<()> {
    if user.email_verified {
        return Err(AppError::validation("email", "Your email address is already verified."));
    }
    let token = issue_email_token(&state.db, user.id, "verify", Duration::hours(VERIFY_HOURS)).await?;
    let link = format!("{}/verify?token={token}", state.config.public_url);
    let body = format!(
        "Hi {},\n\nConfirm your email address for Roundhouse by opening this link:\n\n{link}\n\nThe link works for {VERIFY_HOURS} hours. If you did not create an account, ignore this mail.\n",
        user.name
    );
    mail::send(&state.db, state.mail.as_ref(), mail::Mail { to: user.email.clone(), subject: "Confirm your email address".into(), body })
        .await?;
    Ok(())
}

pub async fn verify_email(db: &PgPool, token: &str) -> AppResult<User> {
    // The link names the account, whoever the browser is signed in as.
    crate::infra::actor::act_as_platform();
    let mut tx = db.begin().await?;
    let user_id = consume_email_token(&mut tx, token, "verify").await?;
    sqlx::query("UPDATE users SET email_verified_at = coalesce(email_verified_at, now()), updated_at = now() WHERE id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    find_user(db, user_id).await
}

/// The verification mail again, for a signed-in user who asks.
pub async fn resend_verification(state: &AppState, ip: &str, user: &User) -> AppResult<()> {
    limit(state, AccountAction::ResendVerification, ip, &user.email)?;
    send_verification(state, user).await
}

/// Always answers the same for a well-formed address, at once, so neither the answer nor its
/// timing tells who has an account: the link is made and mailed in the background. Past the
/// address's hourly limit nothing is sent, but the answer is the same — a stranger asking
/// again and again must not lock the owner out of resetting their own password.
pub async fn request_password_reset(state: &AppState, ip: &str, email: &str) -> AppResult<()> {
    let email = Email::parse(email)?;
    // The client's own limit is answered (it is about them); the address's is not.
    state.account_limiter.check_client(AccountAction::ResetRequest, ip).map_err(|wait| {
        tracing::warn!(ip, "password reset requests rate limited");
        AppError::RateLimited { retry_after_secs: wait.as_secs().max(1) }
    })?;
    if state.account_limiter.check_target(AccountAction::ResetRequest, email.as_str()).is_err() {
        tracing::warn!(ip, "password reset mails to one address rate limited: none sent");
        return Ok(());
    }
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = mail_reset_link(&state, &email).await {
            tracing::warn!(error = %e, "mailing a password reset link failed");
        }
    });
    Ok(())
}

async fn mail_reset_link(state: &AppState, email: &Email) -> AppResult<()> {
    let user: Option<UserRow> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users u WHERE lower(u.email) = $1 AND u.suspended_at IS NULL"
    ))
    .bind(email.as_str())
    .fetch_optional(&state.db)
    .await?;
    let Some(user) = user.map(User::from) else {
        tracing::info!("password reset asked for an unknown address");
        return Ok(());
    };
    let token = issue_email_token(&state.db, user.id, "reset", Duration::minutes(RESET_MINUTES)).await?;
    let link = format!("{}/reset?token={token}", state.config.public_url);
    let body = format!(
        "Hi {},\n\nSomeone asked to reset the password of your Roundhouse account. To choose a new password, open:\n\n{link}\n\nThe link works for {RESET_MINUTES} minutes. If it was not you, ignore this mail; your password stays as it is.\n",
        user.name
    );
    mail::send(&state.db, state.mail.as_ref(), mail::Mail { to: user.email, subject: "Reset your password".into(), body }).await?;
    Ok(())
}

/// Sets the new password and ends every session and API token of the account. The link is
/// checked before the (deliberately slow) hashing, so a made-up token costs the platform nothing.
pub async fn reset_password(state: &AppState, ip: &str, token: &str, password: &str) -> AppResult<()> {
    limit(state, AccountAction::ResetSubmit, ip, "")?;
    let db = &state.db;
    let password = Password::parse(password)?;
    // The link names the account, whoever the browser is signed in as: its tokens must go
    // even when the request comes with another account's session.
    crate::infra::actor::act_as_platform();
    let mut tx = db.begin().await?;
    let user_id = consume_email_token(&mut tx, token, "reset").await?;
    let hash = hash_password_off_thread(password).await?;
    // Following a mailed link proves the address too.
    sqlx::query(
        "UPDATE users SET password_hash = $2, email_verified_at = coalesce(email_verified_at, now()), updated_at = now() WHERE id = $1",
    )
    .bind(user_id)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
    // Whoever had the old password may have made tokens with it.
    sqlx::query("DELETE FROM api_tokens WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
    crate::audit::record(&mut *tx, Some(user_id), "auth.password_reset", &format!("user:{user_id}"), serde_json::json!({}), ip).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user_id, "password reset");
    Ok(())
}

pub async fn change_password(db: &PgPool, auth: &Authenticated, current: &str, new: &str, ip: &str) -> AppResult<()> {
    let new = Password::parse(new).map_err(|e| match e {
        AppError::Validation { message, .. } => AppError::validation("new_password", message),
        other => other,
    })?;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(auth.user.id)
        .fetch_one(db)
        .await?;
    let current = current.to_string();
    let ok = tokio::task::spawn_blocking(move || crypto::verify_password(&current, &hash))
        .await
        .context("password verification task")?;
    if !ok {
        return Err(AppError::validation("current_password", "Your current password is not correct."));
    }
    let new_hash = hash_password_off_thread(new).await?;
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1")
        .bind(auth.user.id)
        .bind(new_hash)
        .execute(&mut *tx)
        .await?;
    // Sign out everywhere else.
    let keep: Vec<u8> = match &auth.via {
        AuthVia::Session { token_hash } => token_hash.clone(),
        AuthVia::ApiToken { .. } => Vec::new(),
    };
    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
        .bind(auth.user.id)
        .bind(keep)
        .execute(&mut *tx)
        .await?;
    // Tokens made by whoever knew the old password end too (the one in use included).
    sqlx::query("DELETE FROM api_tokens WHERE user_id = $1").bind(auth.user.id).execute(&mut *tx).await?;
    let user = auth.user.id;
    crate::audit::record(&mut *tx, Some(user), "auth.password_change", &format!("user:{user}"), serde_json::json!({}), ip).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn update_profile(db: &PgPool, user_id: Uuid, name: &str) -> AppResult<User> {
    let name = DisplayName::parse(name)?;
    let row: UserRow = sqlx::query_as(&format!(
        "UPDATE users u SET name = $2, updated_at = now() WHERE u.id = $1 RETURNING {USER_COLUMNS}"
    ))
    .bind(user_id)
    .bind(name.as_str())
    .fetch_one(db)
    .await?;
    Ok(row.into())
}

// ---------------------------------------------------------------------------------------------
// Personal API tokens

pub async fn list_tokens(db: &PgPool, user_id: Uuid) -> AppResult<Vec<ApiToken>> {
    Ok(sqlx::query_as(
        "SELECT id, name, prefix, scope, expires_at, created_at, last_used_at FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

pub const MAX_TOKENS_PER_USER: i64 = 50;

/// The longest a token may be given to live, in days.
pub const MAX_TOKEN_DAYS: u32 = 365;

/// What a new token is asked to be.
pub struct NewToken {
    pub name: String,
    pub scope: TokenScope,
    /// None: until revoked.
    pub expires_in_days: Option<u32>,
}

impl NewToken {
    /// From a form or request: scope defaults to `full`; an empty expiry means none.
    pub fn parse(name: &str, scope: Option<&str>, expires_in_days: Option<&str>) -> AppResult<Self> {
        let scope = match scope.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => TokenScope::parse(s)?,
            None => TokenScope::Full,
        };
        let expires_in_days = match expires_in_days.map(str::trim).filter(|s| !s.is_empty() && *s != "never") {
            None => None,
            Some(d) => match d.parse::<u32>() {
                Ok(n) if (1..=MAX_TOKEN_DAYS).contains(&n) => Some(n),
                _ => return Err(AppError::validation("expires_in_days", format!("A token lives 1 to {MAX_TOKEN_DAYS} days, or until revoked."))),
            },
        };
        Ok(NewToken { name: name.to_string(), scope, expires_in_days })
    }
}

/// Makes a token for the caller. A token can make tokens only within what it has: no wider
/// scope, and none that outlives it.
pub async fn create_token(db: &PgPool, caller: &Authenticated, new: NewToken, ip: &str) -> AppResult<CreatedApiToken> {
    let user_id = caller.user.id;
    let name = TokenName::parse(&new.name)?;
    if new.scope > caller.scope() {
        return Err(AppError::forbidden(format!("A {} token cannot make a {} token.", caller.scope().as_str(), new.scope.as_str())));
    }
    let expires_at = new.expires_in_days.map(|d| Utc::now() + Duration::days(i64::from(d)));
    if let AuthVia::ApiToken { expires_at: Some(own), .. } = &caller.via {
        if expires_at.is_none_or(|e| e > *own) {
            return Err(AppError::validation("expires_in_days", format!("This token expires {}; a token it makes cannot outlive it.", own.format("%Y-%m-%d"))));
        }
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(db)
        .await?;
    if count >= MAX_TOKENS_PER_USER {
        return Err(AppError::validation("name", format!("You have {count} tokens; revoke one you no longer use first.")));
    }
    let secret = crypto::new_token(API_TOKEN_PREFIX);
    let prefix: String = secret.chars().take(API_TOKEN_PREFIX.len() + 6).collect();
    let token: ApiToken = sqlx::query_as(
        "INSERT INTO api_tokens (user_id, name, token_hash, prefix, scope, expires_at) VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, name, prefix, scope, expires_at, created_at, last_used_at",
    )
    .bind(user_id)
    .bind(name.as_str())
    .bind(crypto::hash_token(&secret))
    .bind(prefix)
    .bind(new.scope)
    .bind(expires_at)
    .fetch_one(db)
    .await?;
    let details = serde_json::json!({ "name": token.name, "prefix": token.prefix, "scope": new.scope.as_str(), "expires_at": expires_at });
    crate::audit::record(db, Some(user_id), "token.create", &format!("token:{}", token.id), details, ip).await?;
    Ok(CreatedApiToken { token, secret })
}

pub async fn revoke_token(db: &PgPool, user_id: Uuid, id: Uuid, ip: &str) -> AppResult<()> {
    let name: Option<String> = sqlx::query_scalar("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2 RETURNING name")
        .bind(id)
        .bind(user_id)
        .fetch_optional(db)
        .await?;
    let Some(name) = name else {
        return Err(AppError::not_found("Token"));
    };
    crate::audit::record(db, Some(user_id), "token.revoke", &format!("token:{id}"), serde_json::json!({ "name": name }), ip).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_token_is_read_from_among_other_cookies() {
        assert_eq!(session_token_from_cookie_header("a=1; rh_session=rhs_abc; b=2", "rh_session"), Some("rhs_abc"));
        assert_eq!(session_token_from_cookie_header("rh_session=", "rh_session"), None);
        assert_eq!(session_token_from_cookie_header("other=1", "rh_session"), None);
        // Over https a plain cookie (which a parent-domain cookie could be) is not the session.
        let tossed = "rh_session=rhs_tossed; __Host-rh_session=rhs_real";
        assert_eq!(session_token_from_cookie_header(tossed, "__Host-rh_session"), Some("rhs_real"));
        assert_eq!(session_token_from_cookie_header("rh_session=rhs_tossed", "__Host-rh_session"), None);
    }

    #[test]
    fn session_cookies_are_http_only_lax_and_secure_behind_https() {
        let mut config = Config::for_tests("postgres://x");
        let c = session_cookie(&config, "rhs_t");
        assert!(c.starts_with("rh_session=rhs_t;"));
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && !c.contains("Secure"));
        config.public_url = "https://roundhouse.example".into();
        assert!(session_cookie(&config, "rhs_t").ends_with("; Secure"));
    }
}
