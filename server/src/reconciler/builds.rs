//! Build retention: builds take disk, one per deployment, and a tenant can deploy all day. Each
//! service keeps the builds of its newest `ROUNDHOUSE_BUILDS_KEPT` deployments that have one
//! (what it rolls back to without building again). Builds in use are kept whatever their age:
//! of deployments queued, building, deploying or running, with an instance still up, or changed
//! within the last hour (a rollback just queued, a build just finished). Everything else the
//! runtime holds is removed, failed and cancelled builds included; each is checked once more
//! against the database right before it goes, and is out of reach the moment it goes, so a
//! deployment queued meanwhile either keeps it or finds it gone — and then builds an uploaded
//! archive again, or fails with why for a git or folder source (which has moved on since).

use super::Reconciler;
use std::collections::HashSet;
use uuid::Uuid;

const IN_USE: &str = "d.status IN ('queued', 'building', 'deploying', 'running') OR d.updated_at > now() - interval '1 hour'";

/// The deployments whose builds stay, with the builds they point at.
fn protected() -> String {
    format!(
        "SELECT d.id, d.artifact FROM deployments d
         WHERE {IN_USE}
            OR EXISTS (SELECT 1 FROM instances i WHERE i.deployment_id = d.id AND i.state <> 'stopped')
            OR d.id IN (SELECT id FROM (
                   SELECT id, row_number() OVER (PARTITION BY service_id ORDER BY number DESC) AS newest
                   FROM deployments WHERE artifact IS NOT NULL) ranked
               WHERE newest <= $1)"
    )
}

/// Whether one build is still unwanted, checked right before it is removed.
fn still_unwanted() -> String {
    format!("SELECT NOT EXISTS (SELECT 1 FROM deployments d WHERE (d.id = $1 OR d.artifact = $2) AND ({IN_USE}))")
}

impl Reconciler {
    /// Removes the builds no deployment wants any more; answers how many. Runs on the leader
    /// (the replica whose runtime holds the builds), off its loop.
    pub async fn prune_builds(&self) -> anyhow::Result<usize> {
        let db = &self.state.db;
        let held = self.runtime.builds().await.map_err(|e| anyhow::anyhow!("{} {}", e.user, e.internal.unwrap_or_default()))?;
        if held.is_empty() {
            return Ok(0);
        }
        let rows: Vec<(Uuid, Option<String>)> =
            sqlx::query_as(&protected()).bind(i64::from(self.state.config.builds_kept)).fetch_all(db).await?;
        let ids: HashSet<Uuid> = rows.iter().map(|r| r.0).collect();
        let artifacts: HashSet<&str> = rows.iter().filter_map(|r| r.1.as_deref()).collect();
        let mut removed = 0;
        for (id, artifact) in held {
            if ids.contains(&id) || artifacts.contains(artifact.as_str()) {
                continue;
            }
            let unwanted: bool = sqlx::query_scalar(&still_unwanted()).bind(id).bind(&artifact).fetch_one(db).await?;
            if !unwanted {
                continue;
            }
            if let Err(e) = self.runtime.remove_build(&artifact).await {
                tracing::warn!(error = %e, detail = e.internal.as_deref().unwrap_or(""), deployment_id = %id, "removing an old build failed");
                continue;
            }
            // Deployments no longer point at it (one queued since keeps its pointer, and finds
            // the build gone).
            sqlx::query("UPDATE deployments SET artifact = NULL WHERE artifact = $1 AND status NOT IN ('queued', 'building', 'deploying', 'running')")
                .bind(&artifact)
                .execute(db)
                .await?;
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(removed, "old builds removed");
            metrics::counter!("roundhouse_builds_pruned_total").increment(removed as u64);
        }
        Ok(removed)
    }
}
