//! Who the database serves: each time the platform's pool hands out a connection for a
//! signed-in user's request, it switches the connection to this database's tenant role
//! (`rh_tenant_role()`) with the user's id in `roundhouse.actor`, where row-level security (migration `20261130000220`)
//! shows only that user's rows — a second wall under the owner filters every query has already.
//! For anything else it switches back to the login role, to which no policy applies.
//!
//! The actor lives in a task-local for the length of a signed-in user's request (the auth
//! middleware enters it). Everything else is the platform: work outside any request (the
//! reconciler, metering, maintenance), an administrator once `require_admin` has let them in,
//! and requests from no one — what those reach acts on accounts by design (sign-up, a password
//! reset revoking a user's tokens, a payment webhook), on rows named by a checked token.
//!
//! A response body streamed after the handler returned (server-rendered pages, SSE) is polled
//! outside the request's task-local, so it reads as the platform; the owner filters of the
//! queries it runs are its only wall.

use sqlx::{postgres::PgPoolOptions, Executor, PgConnection};
use std::{cell::Cell, future::Future};
use uuid::Uuid;

/// Whose rows a query may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// Every row: the platform's own work and administrators.
    Platform,
    /// That user's rows only.
    User(Uuid),
}

impl Actor {
    /// Switches a connection to this actor. The platform's statement names nothing a
    /// migration creates: it also runs on the connections that migrate.
    fn switch(self) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        match self {
            Actor::Platform => sqlx::query("SELECT set_config('role', 'none', false), set_config('roundhouse.actor', '', false)"),
            Actor::User(id) => {
                sqlx::query("SELECT set_config('role', rh_tenant_role(), false), set_config('roundhouse.actor', $1, false)").bind(id.to_string())
            }
        }
    }
}

tokio::task_local! {
    static ACTOR: Cell<Actor>;
}

/// Runs `f` (a request) with the database seeing it as `actor`.
pub async fn acting_as<F: Future>(actor: Actor, f: F) -> F::Output {
    ACTOR.scope(Cell::new(actor), f).await
}

/// From here to the end of the request, the database sees every tenant's rows: for an
/// administrator, once checked, and for a flow acting on the account a checked link names
/// (a password reset), whoever the request is signed in as. Outside a request it changes
/// nothing (that is the platform).
pub fn act_as_platform() {
    let _ = ACTOR.try_with(|a| a.set(Actor::Platform));
}

/// The actor of the running task: the platform outside any request.
pub fn current() -> Actor {
    ACTOR.try_with(Cell::get).unwrap_or(Actor::Platform)
}

/// The platform's pool: every connection, new or reused, is told the current actor before it is
/// handed out, so none carries an earlier request's actor into another. That statement is the
/// check that an idle connection still works (a failing one is closed and replaced), so sqlx's
/// own ping before each acquire is off: one round trip, not two.
///
/// `Pool::try_acquire` and `try_begin` skip `before_acquire`: never use them on this pool.
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .test_before_acquire(false)
        .after_connect(|conn, _| Box::pin(async move { tell(conn).await }))
        .before_acquire(|conn, _| Box::pin(async move { tell(conn).await.map(|()| true) }))
}

async fn tell(conn: &mut PgConnection) -> sqlx::Result<()> {
    conn.execute(current().switch()).await.map(|_| ())
}
