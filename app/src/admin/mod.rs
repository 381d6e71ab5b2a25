//! The admin panel: users (search, role, suspension, a page per user), deployments across the
//! platform, the audit log. Every action is audited.

pub mod inspect;
pub mod inspect_pages;
#[cfg(feature = "ssr")]
pub mod inspect_service;
pub mod pages;
pub mod platform;
pub mod platform_pages;
#[cfg(feature = "ssr")]
pub mod service;

use crate::{auth::User, error::AppError};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AdminUser {
    #[serde(flatten)]
    pub user: User,
    pub project_count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPage {
    pub users: Vec<AdminUser>,
    pub total: i64,
}

#[server(endpoint = "admin_list_users")]
pub async fn admin_list_users(q: Option<String>, offset: Option<i64>) -> Result<UserPage, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        crate::auth::guard::require_admin()?;
        service::list_users(&request::state()?.db, q.as_deref(), offset.unwrap_or(0)).await
    })
    .await
}

#[server(endpoint = "admin_set_role")]
pub async fn admin_set_role(user_id: Uuid, role: String) -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_admin()?;
        let role = crate::auth::Role::parse(&role)?;
        service::set_role(&request::state()?.db, &auth.user, user_id, role, &request::client_ip()).await
    })
    .await
}

#[server(endpoint = "admin_set_suspended")]
pub async fn admin_set_suspended(user_id: Uuid, suspended: bool) -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_admin()?;
        service::set_suspended(&request::state()?.db, &auth.user, user_id, suspended, &request::client_ip()).await
    })
    .await
}
