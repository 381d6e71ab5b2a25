//! Templates in the database: the bundled catalogue written at start, admins' templates, and
//! every version kept.

use super::{
    admin::{AdminTemplate, ComposeImport, Origin, Saved, TemplateSource, TemplateVersion},
    bundled, parse, Spec,
};
use crate::{
    audit,
    auth::User,
    error::{AppError, AppResult},
};
use chrono::{DateTime, Utc};
use sqlx::{types::Json, PgPool};
use uuid::Uuid;

/// Templates shown first in the catalogue when they are first written (admins change this).
const FEATURED: &[&str] = &["postgresql", "redis", "production-app"];

/// Writes every bundled template: new ones are added (published), changed ones get a new
/// version, unchanged ones are left alone, and templates made by admins are never touched.
/// Returns how many were added or changed.
pub async fn sync_bundled(db: &PgPool) -> anyhow::Result<usize> {
    let specs = bundled::all().map_err(anyhow::Error::msg)?;
    let texts = bundled::files();
    let mut changed = 0;
    for (spec, (_, text)) in specs.iter().zip(&texts) {
        if let Some(id) = upsert(db, spec, text).await? {
            tracing::info!(template = %spec.template.slug, %id, "bundled template written");
            changed += 1;
        }
    }
    Ok(changed)
}

/// Inserts or updates one bundled template; the id when it was written.
async fn upsert(db: &PgPool, spec: &Spec, text: &str) -> anyhow::Result<Option<Uuid>> {
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
    sqlx::query("INSERT INTO template_versions (template_id, version, spec, source) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
        .bind(id)
        .bind(version)
        .bind(Json(spec))
        .bind(text)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(id))
}

const ADMIN_COLUMNS: &str = "t.slug, t.name, t.category, t.origin, t.published, t.featured, t.version, t.deploy_count, t.updated_at,
     (SELECT count(*) FROM template_deploys d WHERE d.template_id = t.id) AS deploys";

#[derive(sqlx::FromRow)]
struct AdminRow {
    slug: String,
    name: String,
    category: String,
    origin: String,
    published: bool,
    featured: bool,
    version: i32,
    deploy_count: i32,
    updated_at: DateTime<Utc>,
    deploys: i64,
}

impl From<AdminRow> for AdminTemplate {
    fn from(r: AdminRow) -> Self {
        AdminTemplate {
            origin: Origin::parse(&r.origin).unwrap_or(Origin::Admin),
            slug: r.slug,
            name: r.name,
            category: r.category,
            published: r.published,
            featured: r.featured,
            version: r.version,
            deploy_count: r.deploy_count,
            deploys: r.deploys,
            updated_at: r.updated_at,
        }
    }
}

/// Every template, published or not, for the admin panel.
pub async fn list_all(db: &PgPool) -> AppResult<Vec<AdminTemplate>> {
    let rows: Vec<AdminRow> = sqlx::query_as(&format!("SELECT {ADMIN_COLUMNS} FROM templates t ORDER BY lower(t.name), t.slug"))
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The text of a template's version (the current one by default) and every version kept.
pub async fn source(db: &PgPool, slug: &str, version: Option<i32>) -> AppResult<TemplateSource> {
    let row: AdminRow = sqlx::query_as(&format!("SELECT {ADMIN_COLUMNS} FROM templates t WHERE t.slug = $1"))
        .bind(slug)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| AppError::not_found("Template"))?;
    let template: AdminTemplate = row.into();
    let shown_version = version.unwrap_or(template.version);
    let (Json(spec), text): (Json<Spec>, Option<String>) = sqlx::query_as(
        "SELECT v.spec, v.source FROM template_versions v JOIN templates t ON t.id = v.template_id
         WHERE t.slug = $1 AND v.version = $2",
    )
    .bind(slug)
    .bind(shown_version)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| AppError::not_found("Template version"))?;
    let source = match text {
        Some(text) => text,
        None => to_toml(&spec)?,
    };
    let versions = sqlx::query_as::<_, (i32, DateTime<Utc>, Option<String>, i64)>(
        "SELECT v.version, v.created_at, u.email,
                (SELECT count(*) FROM template_deploys d WHERE d.template_id = v.template_id AND d.version = v.version)
         FROM template_versions v JOIN templates t ON t.id = v.template_id LEFT JOIN users u ON u.id = v.created_by
         WHERE t.slug = $1 ORDER BY v.version DESC",
    )
    .bind(slug)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|(version, created_at, created_by, deploys)| TemplateVersion { version, created_at, created_by, deploys })
    .collect();
    Ok(TemplateSource { template, shown_version, source, versions })
}

/// A spec as template text (for versions stored before their text was kept).
fn to_toml(spec: &Spec) -> AppResult<String> {
    toml::to_string(spec).map_err(|e| {
        tracing::error!(error = %e, slug = %spec.template.slug, "a stored template cannot be written as TOML");
        AppError::Internal
    })
}

/// Reads and validates a template text; every problem is in the error, one per line.
fn read(text: &str) -> AppResult<Spec> {
    parse::read(text, &bundled::samples()).map_err(|e| match e {
        parse::Invalid::Syntax(m) => AppError::validation("source", format!("This is not a template file: {m}")),
        parse::Invalid::Rules(problems) => AppError::validation(
            "source",
            format!("Fix these and save again:\n{}", problems.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n")),
        ),
    })
}

/// Creates a template (`existing` none; it starts unpublished) or saves the text as a new
/// version of `existing`. An edited bundled template becomes the admin's: the bundled
/// catalogue no longer rewrites it.
pub async fn save(db: &PgPool, actor: &User, existing: Option<&str>, text: &str, base_version: Option<i32>, ip: &str) -> AppResult<Saved> {
    let spec = read(text)?;
    let m = &spec.template;
    let mut tx = db.begin().await?;
    let (id, version, changed) = match existing {
        None if m.slug == "new" => return Err(AppError::validation("source", "The slug \"new\" is taken by the admin panel; choose another.")),
        None => {
            let id: Option<Uuid> = sqlx::query_scalar(
                "INSERT INTO templates (slug, name, summary, description, category, tags, keywords, readme, spec, origin, published, featured)
                 VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, 'admin', false, false)
                 ON CONFLICT (slug) DO NOTHING RETURNING id",
            )
            .bind(&m.slug)
            .bind(&m.name)
            .bind(&m.summary)
            .bind(&m.category)
            .bind(&m.tags)
            .bind(m.tags.join(" "))
            .bind(&m.readme)
            .bind(Json(&spec))
            .fetch_optional(&mut *tx)
            .await?;
            let id = id.ok_or_else(|| AppError::conflict("source", format!("A template with the slug {:?} exists: edit it, or choose another slug.", m.slug)))?;
            (id, 1, true)
        }
        Some(slug) => {
            if m.slug != slug {
                return Err(AppError::validation(
                    "source",
                    format!("This template's slug is {slug:?}; a slug cannot change (create a new template for {:?}).", m.slug),
                ));
            }
            let (id, version, Json(current)): (Uuid, i32, Json<Spec>) =
                sqlx::query_as("SELECT id, version, spec FROM templates WHERE slug = $1 FOR UPDATE")
                    .bind(slug)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| AppError::not_found("Template"))?;
            if base_version.is_some_and(|b| b != version) {
                return Err(AppError::conflict(
                    "source",
                    format!("This template was saved as version {version} since you opened it: open the current version, then make your change again."),
                ));
            }
            let same_text: bool = sqlx::query_scalar(
                "SELECT coalesce(source = $3, false) FROM template_versions WHERE template_id = $1 AND version = $2",
            )
            .bind(id)
            .bind(version)
            .bind(text)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(false);
            if current == spec && same_text {
                return Ok(Saved { slug: slug.to_string(), version, changed: false });
            }
            let version: i32 = sqlx::query_scalar(
                "UPDATE templates SET name = $2, summary = $3, description = $3, category = $4, tags = $5, keywords = $6,
                        readme = $7, spec = $8, origin = 'admin', version = version + 1, updated_at = now()
                 WHERE id = $1 RETURNING version",
            )
            .bind(id)
            .bind(&m.name)
            .bind(&m.summary)
            .bind(&m.category)
            .bind(&m.tags)
            .bind(m.tags.join(" "))
            .bind(&m.readme)
            .bind(Json(&spec))
            .fetch_one(&mut *tx)
            .await?;
            (id, version, true)
        }
    };
    sqlx::query("INSERT INTO template_versions (template_id, version, spec, source, created_by) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(version)
        .bind(Json(&spec))
        .bind(text)
        .bind(actor.id)
        .execute(&mut *tx)
        .await?;
    let action = if existing.is_some() { "template.update" } else { "template.create" };
    audit::record(&mut *tx, Some(actor.id), action, &format!("template:{}", m.slug), serde_json::json!({ "version": version }), ip).await?;
    tx.commit().await?;
    Ok(Saved { slug: m.slug.clone(), version, changed })
}

/// Publishes/unpublishes and features/unfeatures a template; a flag left out is kept.
pub async fn set_flags(db: &PgPool, actor: &User, slug: &str, published: Option<bool>, featured: Option<bool>, ip: &str) -> AppResult<()> {
    if published.is_none() && featured.is_none() {
        return Err(AppError::validation("published", "Say what to change: published or featured."));
    }
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE templates SET published = coalesce($2, published), featured = coalesce($3, featured), updated_at = now() WHERE slug = $1",
    )
    .bind(slug)
    .bind(published)
    .bind(featured)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::not_found("Template"));
    }
    audit::record(
        &mut *tx,
        Some(actor.id),
        "template.flags",
        &format!("template:{slug}"),
        serde_json::json!({ "published": published, "featured": featured }),
        ip,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Converts a compose file into template text for the editor; nothing is saved.
pub fn import_compose(compose: &str, slug: &str, name: &str) -> AppResult<ComposeImport> {
    if compose.trim().is_empty() {
        return Err(AppError::validation("compose", "Paste a docker-compose file."));
    }
    if compose.len() > parse::MAX_FILE_BYTES {
        return Err(AppError::validation("compose", format!("A compose file is at most {} KB.", parse::MAX_FILE_BYTES / 1024)));
    }
    let slug = slug.trim();
    if !super::validate::is_slug(slug) {
        return Err(AppError::validation("slug", "A slug is lower-case letters, digits and dashes, starting with a letter or digit."));
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 80 {
        return Err(AppError::validation("name", "Name the template (at most 80 characters)."));
    }
    let imported = super::compose::import(compose, slug, name).map_err(|e| AppError::validation("compose", e))?;
    let source = to_toml(&imported.spec)?;
    let problems = super::validate::validate(&imported.spec, &bundled::samples()).iter().map(ToString::to_string).collect();
    Ok(ComposeImport { source, not_carried_over: imported.report, problems })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_bundled_template_survives_being_written_as_toml() {
        for spec in super::bundled::all().unwrap() {
            let text = super::to_toml(&spec).unwrap();
            let back: super::Spec = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", spec.template.slug));
            assert_eq!(back, spec, "{}", spec.template.slug);
        }
    }
}
