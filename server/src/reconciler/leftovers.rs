//! What outlives a deleted service or environment in the runtime — a volume, a cluster's
//! namespace — is removed once the platform no longer has it. The database says what exists;
//! whatever the runtime holds for anything else is a leftover. Nothing is removed when the
//! database cannot be asked.

use crate::runtime::Runtime;
use sqlx::PgPool;
use uuid::Uuid;

/// What was removed: volumes, environments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub volumes: usize,
    pub environments: usize,
}

/// Removes the volumes (of `volumes`, as the runtime measured them) of services that are gone,
/// and what the runtime holds for environments that are gone.
pub async fn remove(db: &PgPool, runtime: &dyn Runtime, volumes: &[(Uuid, u64)]) -> anyhow::Result<Removed> {
    let mut removed = Removed::default();
    let held: Vec<Uuid> = volumes.iter().map(|(id, _)| *id).collect();
    let existing: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM services WHERE id = ANY($1)").bind(&held).fetch_all(db).await?;
    for id in held.iter().filter(|id| !existing.contains(id)) {
        match runtime.remove_volume(*id).await {
            Ok(()) => removed.volumes += 1,
            Err(e) => tracing::warn!(service = %id, "{}", e.shown()),
        }
    }
    let environments = runtime.environments().await.map_err(|e| anyhow::anyhow!(e.shown()))?;
    let existing: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM environments WHERE id = ANY($1)").bind(&environments).fetch_all(db).await?;
    for id in environments.iter().filter(|id| !existing.contains(id)) {
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
