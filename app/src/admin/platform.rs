//! The platform at a glance for admins (`/admin/platform`): whether what runs can be contained
//! and the database answers, the reconciler's queue, deployments per day with their failure
//! rate, active services, and sign-ups per day over the last 30 days.

use crate::error::AppError;
use chrono::NaiveDate;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// One day of the last 30.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Day {
    pub day: NaiveDate,
    pub deployments: i64,
    /// Of those that finished that day, how many failed or crashed.
    pub failed: i64,
    pub signups: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformStats {
    /// "ok", "off" (single-user mode) or why nothing can deploy.
    pub sandbox: String,
    pub sandbox_ok: bool,
    /// Seconds the database has been unreachable, if it is.
    pub database_away_secs: Option<u64>,
    /// Deployments queued, building or deploying.
    pub queue: i64,
    /// Deployments building or deploying past their deadline.
    pub stuck: i64,
    pub active_services: i64,
    pub users: i64,
    pub projects: i64,
    pub days: Vec<Day>,
}

impl PlatformStats {
    /// Failed or crashed against all deployments of the period, in percent.
    pub fn failure_rate(&self) -> Option<f64> {
        let (all, failed) = self.days.iter().fold((0, 0), |(a, f), d| (a + d.deployments, f + d.failed));
        (all > 0).then(|| failed as f64 * 100.0 / all as f64)
    }
}

#[server(endpoint = "admin_platform")]
pub async fn admin_platform() -> Result<PlatformStats, AppError> {
    crate::infra::request::with_status(async move {
        crate::auth::guard::require_admin()?;
        ssr::stats(&crate::infra::request::state()?).await
    })
    .await
}

#[cfg(feature = "ssr")]
mod ssr {
    use super::*;
    use crate::{
        error::AppResult,
        infra::{Admission, AppState},
    };

    pub async fn stats(state: &AppState) -> AppResult<PlatformStats> {
        let db = &state.db;
        let (sandbox, sandbox_ok) = match state.admission() {
            Admission::Everyone => ("ok".to_string(), true),
            Admission::AdminsOnly => ("off: single-user mode, only admins' projects deploy".to_string(), true),
            Admission::Nobody(why) => (why, false),
        };
        let (queue, stuck, active_services, users, projects): (i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM deployments WHERE status IN ('queued', 'building', 'deploying')),
                    (SELECT count(*) FROM deployments WHERE status IN ('building', 'deploying') AND deadline < now()),
                    (SELECT count(DISTINCT service_id) FROM deployments WHERE status = 'running'),
                    (SELECT count(*) FROM users),
                    (SELECT count(*) FROM projects)",
        )
        .fetch_one(db)
        .await?;
        let days: Vec<(NaiveDate, i64, i64, i64)> = sqlx::query_as(
            "WITH days AS (SELECT generate_series((now() AT TIME ZONE 'UTC')::date - 29, (now() AT TIME ZONE 'UTC')::date, interval '1 day')::date AS day)
             SELECT d.day,
                    (SELECT count(*) FROM deployments x WHERE (x.created_at AT TIME ZONE 'UTC')::date = d.day),
                    (SELECT count(*) FROM deployments x WHERE (x.created_at AT TIME ZONE 'UTC')::date = d.day AND x.status IN ('failed', 'crashed')),
                    (SELECT count(*) FROM users u WHERE (u.created_at AT TIME ZONE 'UTC')::date = d.day)
             FROM days d ORDER BY d.day",
        )
        .fetch_all(db)
        .await?;
        Ok(PlatformStats {
            sandbox,
            sandbox_ok,
            database_away_secs: state.db_health.away().map(|(d, _)| d.as_secs()),
            queue,
            stuck,
            active_services,
            users,
            projects,
            days: days.into_iter().map(|(day, deployments, failed, signups)| Day { day, deployments, failed, signups }).collect(),
        })
    }
}
