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
//! A response body streamed after the handler returned (the later chunks of a server-rendered
//! page, the resources resolved meanwhile, live streams) is polled outside the request's task:
//! the auth middleware polls it inside the request's actor again (`polled_as`), sharing the
//! request's cell, so an administrator's request lifted to the platform stays lifted there too.

use sqlx::{postgres::PgPoolOptions, Executor, PgConnection};
use std::{
    future::Future,
    sync::{Arc, Mutex},
};
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

/// The actor of one request, shared by its handler and its streamed body: `act_as_platform`
/// in one is seen by the other.
#[derive(Debug, Clone)]
pub struct ActorCell(Arc<Mutex<Actor>>);

impl ActorCell {
    pub fn new(actor: Actor) -> Self {
        ActorCell(Arc::new(Mutex::new(actor)))
    }

    fn get(&self) -> Actor {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, actor: Actor) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = actor;
    }
}

tokio::task_local! {
    static ACTOR: ActorCell;
}

/// Runs `f` (a request) with the database seeing it as `actor`.
pub async fn acting_as<F: Future>(actor: Actor, f: F) -> F::Output {
    within(ActorCell::new(actor), f).await
}

/// Runs `f` with the database seeing it as the actor in `cell`.
pub async fn within<F: Future>(cell: ActorCell, f: F) -> F::Output {
    ACTOR.scope(cell, f).await
}

/// Calls `f` (one poll of a request's streamed body) as the actor in `cell`.
pub fn polled_as<R>(cell: &ActorCell, f: impl FnOnce() -> R) -> R {
    ACTOR.sync_scope(cell.clone(), f)
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
    ACTOR.try_with(ActorCell::get).unwrap_or(Actor::Platform)
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
