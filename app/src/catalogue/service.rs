use super::{Plan, Template, TemplateQuery, TemplateService, TemplateSummary, TemplateVariable};
use crate::error::{AppError, AppResult};
use sqlx::{types::Json, PgPool};
use uuid::Uuid;

pub async fn list_plans(db: &PgPool) -> AppResult<Vec<Plan>> {
    Ok(sqlx::query_as(
        "SELECT id, name, tagline, monthly_fee_cents, included_usage_cents, cpu_vcpu_month_cents,
                memory_gb_month_cents, volume_gb_month_cents, egress_gb_cents, max_projects,
                max_services, max_replicas, max_memory_mb
         FROM plans WHERE public ORDER BY sort_order",
    )
    .fetch_all(db)
    .await?)
}

pub async fn list_templates(db: &PgPool, query: &TemplateQuery) -> AppResult<Vec<TemplateSummary>> {
    let order = match query.sort.as_deref().unwrap_or("popular") {
        "popular" => "featured DESC, deploy_count DESC, name",
        "name" => "lower(name)",
        "new" => "created_at DESC",
        other => return Err(AppError::validation("sort", format!("Sort by popular, name or new, not {other:?}."))),
    };
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 100) {
        return Err(AppError::validation("q", "Search for at most 100 characters."));
    }
    // ILIKE metacharacters in the search are matched literally.
    let pattern = q.map(|q| format!("%{}%", q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
    let category = query.category.as_deref().filter(|c| !c.is_empty());
    Ok(sqlx::query_as(&format!(
        "SELECT id, slug, name, summary, category, deploy_count, featured FROM templates
         WHERE published
           AND ($1::text IS NULL OR name ILIKE $1 OR summary ILIKE $1 OR description ILIKE $1)
           AND ($2::text IS NULL OR category = $2)
         ORDER BY {order}"
    ))
    .bind(pattern)
    .bind(category)
    .fetch_all(db)
    .await?)
}

pub async fn list_categories(db: &PgPool) -> AppResult<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT DISTINCT category FROM templates WHERE published ORDER BY category")
        .fetch_all(db)
        .await?)
}

pub async fn get_template(db: &PgPool, slug: &str) -> AppResult<Template> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        slug: String,
        name: String,
        summary: String,
        description: String,
        category: String,
        services: Json<Vec<TemplateService>>,
        variables: Json<Vec<TemplateVariable>>,
        cpu_millis: i32,
        memory_mb: i32,
        deploy_count: i32,
        featured: bool,
    }
    let row: Row = sqlx::query_as(
        "SELECT id, slug, name, summary, description, category, services, variables, cpu_millis, memory_mb,
                deploy_count, featured
         FROM templates WHERE slug = $1 AND published",
    )
    .bind(slug)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| AppError::not_found("Template"))?;
    Ok(Template {
        id: row.id,
        slug: row.slug,
        name: row.name,
        summary: row.summary,
        description: row.description,
        category: row.category,
        services: row.services.0,
        variables: row.variables.0,
        cpu_millis: row.cpu_millis,
        memory_mb: row.memory_mb,
        deploy_count: row.deploy_count,
        featured: row.featured,
    })
}
