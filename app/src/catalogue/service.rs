use super::{Plan, Template, TemplatePage, TemplateQuery};
use crate::templates::Spec;
use crate::error::{AppError, AppResult};
use sqlx::{types::Json, PgPool};
use uuid::Uuid;

pub async fn list_plans(db: &PgPool) -> AppResult<Vec<Plan>> {
    Ok(sqlx::query_as(
        "SELECT id, name, tagline, monthly_fee_cents, included_usage_cents, cpu_vcpu_month_cents,
                memory_gb_month_cents, volume_gb_month_cents, egress_gb_cents, max_projects,
                max_services, max_replicas, max_memory_mb, max_cpu_millis
         FROM plans WHERE public ORDER BY sort_order",
    )
    .fetch_all(db)
    .await?)
}

/// Search words as a prefix query (`postg ser` → `postg:* & ser:*`): only letters and digits
/// of the search reach `to_tsquery`, so no search can be a syntax error.
fn prefix_query(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(10)
        .map(|w| format!("{}:*", w.to_lowercase()))
        .collect();
    (!words.is_empty()).then(|| words.join(" & "))
}

pub async fn list_templates(db: &PgPool, query: &TemplateQuery) -> AppResult<TemplatePage> {
    let order = match query.sort.as_deref().unwrap_or("popular") {
        "popular" => "featured DESC, deploy_count DESC, lower(name)",
        "name" => "lower(name)",
        "new" => "created_at DESC, lower(name)",
        other => return Err(AppError::validation("sort", format!("Sort by popular, name or new, not {other:?}."))),
    };
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 100) {
        return Err(AppError::validation("q", "Search for at most 100 characters."));
    }
    let per_page = query.per_page.unwrap_or(24);
    if !(1..=100).contains(&per_page) {
        return Err(AppError::validation("per_page", "Show 1–100 templates per page."));
    }
    let page = query.page.unwrap_or(1);
    if !(1..=10_000).contains(&page) {
        return Err(AppError::validation("page", "Pages start at 1."));
    }
    let tsquery = match q.map(prefix_query) {
        // A search of only punctuation matches nothing rather than everything.
        Some(None) => return Ok(TemplatePage { templates: vec![], total: 0, page, per_page }),
        Some(Some(t)) => Some(t),
        None => None,
    };
    let category = query.category.as_deref().filter(|c| !c.is_empty());
    let filter = "published
           AND ($1::text IS NULL OR search @@ to_tsquery('english', $1))
           AND ($2::text IS NULL OR category = $2)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM templates WHERE {filter}"))
        .bind(&tsquery)
        .bind(category)
        .fetch_one(db)
        .await?;
    let templates = sqlx::query_as(&format!(
        "SELECT id, slug, name, summary, category, tags, deploy_count, featured FROM templates
         WHERE {filter}
         ORDER BY {order}, slug
         LIMIT $3 OFFSET $4"
    ))
    .bind(&tsquery)
    .bind(category)
    .bind(i64::from(per_page))
    .bind(i64::from(page - 1) * i64::from(per_page))
    .fetch_all(db)
    .await?;
    Ok(TemplatePage { templates, total, page, per_page })
}

pub async fn list_categories(db: &PgPool) -> AppResult<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT DISTINCT category FROM templates WHERE published ORDER BY category")
        .fetch_all(db)
        .await?)
}

/// Markdown to HTML for a README: raw HTML in it is shown as text, never run, and links and
/// images go only to http(s), mail or relative addresses.
pub fn render_markdown(md: &str) -> String {
    use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag};
    fn safe(url: CowStr<'_>) -> CowStr<'_> {
        let lower = url.trim().to_ascii_lowercase();
        let ok = ["http://", "https://", "mailto:", "/", "#"].iter().any(|p| lower.starts_with(p))
            || !lower.contains(':');
        if ok { url } else { CowStr::Borrowed("#") }
    }
    let parser = Parser::new_ext(md, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(|e| match e {
        Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => Event::Start(Tag::Link { link_type, dest_url: safe(dest_url), title, id }),
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => Event::Start(Tag::Image { link_type, dest_url: safe(dest_url), title, id }),
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, parser);
    out
}

pub async fn get_template(db: &PgPool, slug: &str) -> AppResult<Template> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        slug: String,
        name: String,
        summary: String,
        category: String,
        tags: Vec<String>,
        deploy_count: i32,
        featured: bool,
        version: i32,
        spec: Json<Spec>,
    }
    let row: Row = sqlx::query_as(
        "SELECT id, slug, name, summary, category, tags, deploy_count, featured, version, spec
         FROM templates WHERE slug = $1 AND published",
    )
    .bind(slug)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| AppError::not_found("Template"))?;
    let spec = row.spec.0;
    let needs = spec.needs_of_plan();
    let plan: Option<String> = sqlx::query_scalar(
        "SELECT name FROM plans WHERE public AND max_services >= $1 AND max_replicas >= $2 AND max_memory_mb >= $3
         ORDER BY sort_order LIMIT 1",
    )
    .bind(needs.services as i32)
    .bind(needs.replicas as i32)
    .bind(spec.services.iter().map(|s| s.memory_mb.unwrap_or(512)).max().unwrap_or(512) as i32)
    .fetch_optional(db)
    .await?;
    Ok(Template {
        id: row.id,
        slug: row.slug,
        name: row.name,
        summary: row.summary,
        category: row.category,
        tags: row.tags,
        deploy_count: row.deploy_count,
        featured: row.featured,
        version: row.version,
        readme_html: render_markdown(&spec.template.readme),
        runtimes: spec.runtimes(),
        local_blockers: spec.local_blockers(),
        plan,
        spec,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn searches_become_prefix_queries_of_words_only() {
        assert_eq!(super::prefix_query("postg").as_deref(), Some("postg:*"));
        assert_eq!(super::prefix_query("Node & !express|'x'").as_deref(), Some("node:* & express:* & x:*"));
        assert_eq!(super::prefix_query("&|!():*"), None);
    }

    #[test]
    fn raw_html_in_a_readme_is_text() {
        let html = super::render_markdown("# Hi\n\n<script>alert(1)</script>\n\n[x](JavaScript:alert(1)) [y](https://example.com) <img src=x onerror=alert(1)>");
        assert!(html.contains("<h1>Hi</h1>"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(!html.to_lowercase().contains("javascript:alert"), "{html}");
        assert!(html.contains(r#"<a href="https://example.com">y</a>"#), "{html}");
    }
}
