//! Templates in the database: the bundled catalogue written at start, and versions kept.

use super::{bundled, Spec};
use sqlx::{types::Json, PgPool};
use uuid::Uuid;

/// Templates shown first in the catalogue when they are first written (admins change this).
const FEATURED: &[&str] = &["postgresql", "redis", "production-app"];

/// Writes every bundled template: new ones are added (published), changed ones get a new
/// version, unchanged ones are left alone, and templates made by admins are never touched.
/// Returns how many were added or changed.
pub async fn sync_bundled(db: &PgPool) -> anyhow::Result<usize> {
    let specs = bundled::all().map_err(anyhow::Error::msg)?;
    let mut changed = 0;
    for spec in &specs {
        if let Some(id) = upsert(db, spec).await? {
            tracing::info!(template = %spec.template.slug, %id, "bundled template written");
            changed += 1;
        }
    }
    Ok(changed)
}

/// Inserts or updates one bundled template; the id when it was written.
async fn upsert(db: &PgPool, spec: &Spec) -> anyhow::Result<Option<Uuid>> {
    let m = &spec.template;
    let mut tx = db.begin().await?;
    let row: Option<(Uuid, i32)> = sqlx::query_as(
        "INSERT INTO templates (slug, name, summary, description, category, tags, keywords, readme, spec, origin, published, featured)
         VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, 'bundled', true, $9)
         ON CONFLICT (slug) DO UPDATE SET
             name = EXCLUDED.name, summary = EXCLUDED.summary, description = EXCLUDED.description,
             category = EXCLUDED.category, tags = EXCLUDED.tags, keywords = EXCLUDED.keywords,
             readme = EXCLUDED.readme, spec = EXCLUDED.spec, version = templates.version + 1, updated_at = now()
           WHERE templates.origin = 'bundled' AND templates.spec IS DISTINCT FROM EXCLUDED.spec
         RETURNING id, version",
    )
    .bind(&m.slug)
    .bind(&m.name)
    .bind(&m.summary)
    .bind(&m.category)
    .bind(&m.tags)
    .bind(m.tags.join(" "))
    .bind(&m.readme)
    .bind(Json(spec))
    .bind(FEATURED.contains(&m.slug.as_str()))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, version)) = row else { return Ok(None) };
    sqlx::query("INSERT INTO template_versions (template_id, version, spec) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(id)
        .bind(version)
        .bind(Json(spec))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(id))
}
