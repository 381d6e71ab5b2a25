//! Whether Postgres can be reached, as this replica sees it. A watchdog pings it every second
//! (started by the first request); while it is away, requests that need it are answered at once
//! with 503 and `Retry-After` instead of each waiting out the pool's connect timeout, and
//! everything resumes by itself when it is back.

use sqlx::PgPool;
use std::{
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

/// How often the watchdog pings, and how long a ping may take before Postgres counts as away.
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_WITHIN: Duration = Duration::from_secs(1);
/// What clients are told to wait before trying again.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Postgres is away or restarting (a connection failed, it is shutting down or starting, it
/// refuses connections for now), rather than refusing what was sent.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        // 08: connection exception; 57P0x: shutting down, starting; 55000: the database does
        // not accept connections now; 53300: too many connections.
        sqlx::Error::Database(d) => d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "55000" || c == "53300"),
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

    /// Starts pinging `db` once a second, once per state.
    pub fn watch(self: &std::sync::Arc<Self>, db: &PgPool) {
        if self.watchdog.set(()).is_err() {
            return;
        }
        let (health, db) = (std::sync::Arc::downgrade(self), db.clone());
        tokio::spawn(async move {
            loop {
                let outcome = match tokio::time::timeout(PING_WITHIN, sqlx::query("SELECT 1").execute(&db)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) if is_unavailable(&e) => Err(e.to_string()),
                    Ok(Err(_)) => Ok(()),
                    Err(_) => Err(format!("no answer within {}s", PING_WITHIN.as_secs())),
                };
                // The state is gone (a test's app ended): so is the watchdog.
                let Some(health) = health.upgrade() else { return };
                health.set(outcome);
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
