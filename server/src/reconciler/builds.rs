//! Build retention: builds take disk, one per deployment, and a tenant can deploy all day. Each
//! service keeps the builds of its newest `ROUNDHOUSE_BUILDS_KEPT` deployments that have one
//! (what it can roll back to without building again); builds in use — of deployments queued,
//! building, deploying or running, or with an instance still up — are kept whatever their age.
//! Everything else the runtime holds is removed, failed and cancelled builds included, and
//! deployments whose build went forget it: a rollback to one of them builds its source again.

use super::Reconciler;
use std::collections::HashSet;
use uuid::Uuid;

/// Every artifact still wanted, and the deployments whose builds may be under way.
const WANTED: &str = "
    WITH ranked AS (
        SELECT d.id, d.artifact, d.status,
               row_number() OVER (PARTITION BY d.service_id ORDER BY d.number DESC) AS newest
        FROM deployments d WHERE d.artifact IS NOT NULL
    )
    SELECT artifact FROM ranked r
    WHERE newest <= $1
       OR status IN ('queued', 'building', 'deploying', 'running')
       OR EXISTS (SELECT 1 FROM instances i WHERE i.deployment_id = r.id AND i.state <> 'stopped')";
const BUILDING: &str = "SELECT id FROM deployments WHERE status IN ('queued', 'building', 'deploying')";

impl Reconciler {
    /// Removes the builds no deployment wants any more; answers how many. Runs on the leader
    /// (the replica whose runtime holds the builds).
    pub async fn prune_builds(&self) -> anyhow::Result<usize> {
        let db = &self.state.db;
        let keep: HashSet<String> =
            sqlx::query_scalar(WANTED).bind(i64::from(self.state.config.builds_kept)).fetch_all(db).await?.into_iter().collect();
        let building: HashSet<Uuid> = sqlx::query_scalar(BUILDING).fetch_all(db).await?.into_iter().collect();
        let recorded: HashSet<String> =
            sqlx::query_scalar("SELECT DISTINCT artifact FROM deployments WHERE artifact IS NOT NULL").fetch_all(db).await?.into_iter().collect();
        let dropped: Vec<String> = recorded.difference(&keep).cloned().collect();
        let removed = self.runtime.prune_builds(&keep, &building).await.map_err(anyhow::Error::msg)?;
        // Deployments no longer point at what is gone. Only at what was looked at: a build
        // recorded since is not touched, and a deployment queued since with a dropped build
        // (a rollback) keeps it and, finding it gone, builds its source again.
        sqlx::query(
            "UPDATE deployments SET artifact = NULL
             WHERE artifact = ANY($1) AND status NOT IN ('queued', 'building', 'deploying', 'running')",
        )
        .bind(&dropped)
        .execute(db)
        .await?;
        if removed > 0 {
            tracing::info!(removed, "old builds removed");
            metrics::counter!("roundhouse_builds_pruned_total").increment(removed as u64);
        }
        Ok(removed)
    }
}
