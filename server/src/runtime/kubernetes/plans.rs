//! What the Kubernetes runtime learns about a project from the platform's database: its slug
//! (its namespaces' names) and its owner's plan (their ResourceQuota).

use super::{manifests::Quota, ProjectFacts, Projects};
use sqlx::PgPool;
use uuid::Uuid;

pub struct PlanProjects(pub PgPool);

#[async_trait::async_trait]
impl Projects for PlanProjects {
    async fn project(&self, id: Uuid) -> anyhow::Result<ProjectFacts> {
        let (slug, services, replicas, cpu_millis, memory_mb, volume_gb): (String, i32, i32, i32, i32, i32) = sqlx::query_as(
            "SELECT p.slug, pl.max_services, pl.max_replicas, pl.max_cpu_millis, pl.max_memory_mb, pl.max_volume_gb
             FROM projects p JOIN users u ON u.id = p.owner_id JOIN plans pl ON pl.id = u.plan_id WHERE p.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.0)
        .await?
        .ok_or_else(|| anyhow::anyhow!("project {id} is gone"))?;
        Ok(ProjectFacts { slug, quota: Quota { services, replicas, cpu_millis, memory_mb, volume_gb } })
    }
}
