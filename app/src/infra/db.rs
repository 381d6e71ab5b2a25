//! Whether Postgres can be reached, as this replica sees it. A watchdog pings it every second
//! on a connection of its own (started by the first request), so a busy pool is never taken
//! for an outage; after three failed pings in a row it counts as away, and requests that need
//! it are answered at once with 503 and `Retry-After` instead of each waiting out the pool's
//! connect timeout. Everything resumes by itself at the first ping that succeeds.

use sqlx::{Connection, PgConnection, PgPool};
use std::{
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

/// How often the watchdog pings, how long a ping (connecting included) may take, and how many
/// must fail in a row before Postgres counts as away.
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_WITHIN: Duration = Duration::from_secs(2);
const FAILURES_FOR_AWAY: u32 = 3;
/// What clients are told to wait before trying again.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Postgres is away or restarting (a connection failed, it is shutting down or starting, it
/// refuses connections for now), rather than refusing what was sent.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(d) => match d.code().as_deref() {
            // Connection exceptions; shutting down (admin, crash) or starting; too many connections.
            Some(c) if c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "53300") => true,
            // The database refuses connections for now (ALLOW_CONNECTIONS false during a
            // restore or a failover); the same code means other things, hence the message.
            Some("55000") => d.message().contains("not currently accepting connections"),
            _ => false,
        },
        _ => false,
    }
}

#[derive(Default)]
pub struct DbHealth {
    /// Since when, and why, Postgres has been away (None: it answers).
    away: Mutex<Option<(Instant, String)>>,
    watchdog: OnceLock<()>,
}

impl DbHealth {
    /// Why Postgres is away and for how long, if it is.
    pub fn away(&self) -> Option<(Duration, String)> {
        self.away.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(since, why)| (since.elapsed(), why.clone()))
    }

    fn set(&self, outcome: Result<(), String>) {
        let mut away = self.away.lock().unwrap_or_else(|e| e.into_inner());
        match (outcome, away.is_some()) {
            (Ok(()), true) => {
                tracing::info!("the database answers again");
                *away = None;
            }
            (Err(why), false) => {
                tracing::error!(error = %why, "the database is unreachable: requests get 503 until it is back");
                *away = Some((Instant::now(), why));
            }
            _ => {}
        }
    }

    /// Starts pinging the database of `db` once a second, once per state.
    pub fn watch(self: &std::sync::Arc<Self>, db: &PgPool) {
        if self.watchdog.set(()).is_err() {
            return;
        }
        let (health, options) = (std::sync::Arc::downgrade(self), db.connect_options());
        tokio::spawn(async move {
            let mut conn: Option<PgConnection> = None;
            let mut failures = 0u32;
            loop {
                let ping = async {
                    if conn.is_none() {
                        conn = Some(PgConnection::connect_with(&options).await.map_err(|e| e.to_string())?);
                    }
                    let c = conn.as_mut().expect("connected just above");
                    sqlx::query("SELECT 1").execute(c).await.map(|_| ()).map_err(|e| e.to_string())
                };
                let outcome = match tokio::time::timeout(PING_WITHIN, ping).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer within {}s", PING_WITHIN.as_secs())),
                };
                if outcome.is_err() {
                    // A broken connection is opened afresh next time.
                    conn = None;
                    failures += 1;
                } else {
                    failures = 0;
                }
                // The state is gone (a test's app ended): so is the watchdog.
                let Some(health) = health.upgrade() else { return };
                match outcome {
                    Ok(()) => health.set(Ok(())),
                    Err(why) if failures >= FAILURES_FOR_AWAY => health.set(Err(why)),
                    Err(_) => {}
                }
                drop(health);
                tokio::time::sleep(PING_EVERY).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn away_is_set_once_and_cleared_when_it_answers() {
        let h = DbHealth::default();
        assert!(h.away().is_none());
        h.set(Err("connection refused".into()));
        h.set(Err("still refused".into()));
        assert_eq!(h.away().map(|(_, why)| why).as_deref(), Some("connection refused"), "the first reason is kept");
        h.set(Ok(()));
        assert!(h.away().is_none());
    }
}
