//! Leptos spawns the futures of server-rendered pages (resources, streaming) as tasks of their
//! own, which would lose the request's database actor (`app::infra::actor`): every page load
//! would read as the platform, past row-level security. This executor hands a spawned future
//! the actor of the task that spawned it, so a page rendered for a user queries as that user,
//! as its server functions and REST calls do.

use any_spawner::{CustomExecutor, Executor, PinnedFuture, PinnedLocalFuture};
use app::infra::actor;

struct ActorKeeping;

impl CustomExecutor for ActorKeeping {
    fn spawn(&self, fut: PinnedFuture<()>) {
        tokio::spawn(actor::acting_as(actor::current(), fut));
    }

    fn spawn_local(&self, fut: PinnedLocalFuture<()>) {
        tokio::task::spawn_local(actor::acting_as(actor::current(), fut));
    }

    fn poll_local(&self) {}
}

/// Installs it, once per process, before Leptos would install its plain Tokio one.
pub fn init() {
    // Already set is expected from the second router on (tests build many); set to another
    // executor first would mean page loads run past the wall: say so.
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if Executor::init_custom_executor(ActorKeeping).is_err() {
            tracing::error!("another executor was installed before Roundhouse's: server-rendered pages run as the platform");
        }
    });
}
