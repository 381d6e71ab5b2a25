//! Who a server function's request comes from: the user the server's auth middleware resolved
//! once (a request extension), required signed in or an admin.

use super::service::Authenticated;
use crate::error::AppError;
use http::request::Parts;
use leptos::prelude::use_context;

pub fn current() -> Option<Authenticated> {
    use_context::<Parts>()?.extensions.get::<Authenticated>().cloned()
}

pub fn require_user() -> Result<Authenticated, AppError> {
    current().ok_or(AppError::Unauthorized)
}

/// An administrator, signed in or with a full-scope token: a limited token of an admin's
/// (a CI's read token) carries none of the admin's powers.
pub fn require_admin() -> Result<Authenticated, AppError> {
    let auth = require_user()?;
    if !auth.user.is_admin() {
        return Err(AppError::forbidden("This page is for administrators."));
    }
    if auth.scope() != crate::auth::TokenScope::Full {
        return Err(AppError::forbidden("A limited API token cannot act as an administrator."));
    }
    // Admin pages see every tenant's rows (row-level security would show only the admin's).
    crate::infra::actor::act_as_platform();
    Ok(auth)
}
