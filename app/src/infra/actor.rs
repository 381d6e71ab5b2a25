//! Who the database serves: each time the platform's pool hands out a connection for a
//! signed-in user's request, it switches the connection to the role `roundhouse_tenant` with
//! the user's id in `roundhouse.actor`, where row-level security (migration `20261130000220`)
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
    /// The role and the value of `roundhouse.actor` (the migration's `rh_actor` reads it).
    fn settings(self) -> (&'static str, String) {
        match self {
            Actor::Platform => ("none", String::new()),
            Actor::User(id) => ("roundhouse_tenant", id.to_string()),
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
/// administrator, once checked. Outside a request it changes nothing (that is the platform).
pub fn act_as_platform() {
    let _ = ACTOR.try_with(|a| a.set(Actor::Platform));
}

/// The actor of the running task: the platform outside any request.
pub fn current() -> Actor {
    ACTOR.try_with(Cell::get).unwrap_or(Actor::Platform)
}

/// The platform's pool: every connection, new or reused, is told the current actor before it is
/// handed out (one round trip), so none carries an earlier request's actor into another.
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .after_connect(|conn, _| Box::pin(async move { tell(conn).await }))
        .before_acquire(|conn, _| Box::pin(async move { tell(conn).await.map(|()| true) }))
}

async fn tell(conn: &mut PgConnection) -> sqlx::Result<()> {
    let (role, actor) = current().settings();
    let query = sqlx::query("SELECT set_config('role', $1, false), set_config('roundhouse.actor', $2, false)").bind(role).bind(actor);
    conn.execute(query).await.map(|_| ())
}
