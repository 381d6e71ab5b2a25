//! What outlives a deleted service or environment in the runtime — a volume, a cluster's
//! namespace — is removed once the platform no longer has it. The database says what exists;
//! whatever the runtime holds for anything else is a leftover. Because removing is for good,
//! it is careful:
//! - the database is read with row-level security off, so a login role the policies would
//!   filter makes the read fail rather than come back short (and nothing is removed);
//! - a leftover is removed only when two passes in a row (minutes apart) found it missing, so
//!   one odd answer removes nothing.

use crate::runtime::Runtime;
use sqlx::PgPool;
use std::{collections::HashSet, sync::Mutex};
use uuid::Uuid;

/// What a pass removed: volumes, environments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub volumes: usize,
    pub environments: usize,
}

/// The leftovers the last pass found, removed if the next finds them again.
#[derive(Default)]
pub struct Leftovers {
    suspects: Mutex<HashSet<Uuid>>,
}

/// Of `ids`, those the table `table` has (read with row-level security off).
async fn existing(db: &PgPool, table: &str, ids: &[Uuid]) -> anyhow::Result<HashSet<Uuid>> {
    let mut tx = db.begin().await?;
    sqlx::query("SET LOCAL row_security = off").execute(&mut *tx).await?;
    let found: Vec<Uuid> = sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE id = ANY($1)")).bind(ids).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(found.into_iter().collect())
}

impl Leftovers {
    /// One pass: finds the volumes (of `volumes`, as the runtime measured them) of services that
    /// are gone and what the runtime holds for environments that are gone, and removes those
    /// the pass before found too.
    pub async fn pass(&self, db: &PgPool, runtime: &dyn Runtime, volumes: &[(Uuid, u64)]) -> anyhow::Result<Removed> {
        let held: Vec<Uuid> = volumes.iter().map(|(id, _)| *id).collect();
        let services = existing(db, "services", &held).await?;
        let environments = runtime.environments().await.map_err(|e| anyhow::anyhow!(e.shown()))?;
        let live = existing(db, "environments", &environments).await?;
        let gone_volumes: Vec<Uuid> = held.into_iter().filter(|id| !services.contains(id)).collect();
        let gone_environments: Vec<Uuid> = environments.into_iter().filter(|id| !live.contains(id)).collect();
        let confirmed = {
            let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
            let now: HashSet<Uuid> = gone_volumes.iter().chain(&gone_environments).copied().collect();
            let confirmed: HashSet<Uuid> = now.intersection(&suspects).copied().collect();
            *suspects = now;
            confirmed
        };
        let mut removed = Removed::default();
        for id in gone_volumes.iter().filter(|id| confirmed.contains(id)) {
            match runtime.remove_volume(*id).await {
                Ok(()) => removed.volumes += 1,
                Err(e) => tracing::warn!(service = %id, "{}", e.shown()),
            }
        }
        for id in gone_environments.iter().filter(|id| confirmed.contains(id)) {
            match runtime.remove_environment(*id).await {
                Ok(()) => removed.environments += 1,
                Err(e) => tracing::warn!(environment = %id, "{}", e.shown()),
            }
        }
        if removed != Removed::default() {
            tracing::info!(volumes = removed.volumes, environments = removed.environments, "removed what deleted services and environments left");
        }
        Ok(removed)
    }
}
