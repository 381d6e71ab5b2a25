//! The audit log: every privileged, destructive or security-relevant action — who did it, to
//! what, when, from where. Append-only in the database (a trigger refuses UPDATE, DELETE and
//! TRUNCATE). Admins search all of it at `/admin/audit`; each user sees their own security log
//! (sign-ins, failed sign-ins on their account, passwords, tokens, reveals) on `/account`.

pub mod pages;
#[cfg(feature = "ssr")]
pub mod service;

#[cfg(feature = "ssr")]
pub use service::record;

use crate::error::AppError;
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The account that acted, if any (none: a stranger, Stripe, the platform).
    pub actor: Option<String>,
    pub action: String,
    pub target: String,
    /// The details, as compact JSON.
    pub details: String,
    pub ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub total: i64,
    pub offset: i64,
    pub page_size: i64,
}

/// The audit log, newest first, filtered by `q` (in the action, target, actor's email or
/// address), 50 at a time. Admins only.
#[server(endpoint = "admin_audit_log")]
pub async fn admin_audit_log(q: Option<String>, offset: Option<i64>) -> Result<AuditPage, AppError> {
    crate::infra::request::with_status(async move {
        crate::auth::guard::require_admin()?;
        service::search(&crate::infra::request::state()?.db, q.as_deref(), offset.unwrap_or(0)).await
    })
    .await
}

/// The signed-in user's own security log: what they did and what was tried on their account.
#[server(endpoint = "my_security_log")]
pub async fn my_security_log() -> Result<Vec<AuditEntry>, AppError> {
    crate::infra::request::with_status(async move {
        let auth = crate::auth::guard::require_user()?;
        service::of_user(&crate::infra::request::state()?.db, auth.user.id).await
    })
    .await
}
