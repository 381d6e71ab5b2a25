//! Sign-in state in the page: the sign-in, sign-out and registration actions and the current
//! user, provided once by `App` and used by the navigation and the auth pages.

use super::{Login, Logout, Register, User};
use crate::error::AppError;
use leptos::prelude::*;

/// Sign-in state shared by the navigation and the auth pages: the actions bump the user
/// resource when they complete.
#[derive(Clone, Copy)]
pub struct Session {
    pub login: ServerAction<Login>,
    pub logout: ServerAction<Logout>,
    pub register: ServerAction<Register>,
    pub me: Resource<Result<Option<User>, AppError>>,
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}

