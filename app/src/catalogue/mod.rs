//! The public catalogue: plans (the pricing page) and templates.

pub mod pages;
#[cfg(feature = "ssr")]
pub mod service;

use crate::error::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, sqlx::FromRow))]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub tagline: String,
    pub monthly_fee_cents: i32,
    pub included_usage_cents: i32,
    pub cpu_vcpu_month_cents: i32,
    pub memory_gb_month_cents: i32,
    pub volume_gb_month_cents: i32,
    pub egress_gb_cents: i32,
    pub max_projects: i32,
    pub max_services: i32,
    pub max_replicas: i32,
    pub max_memory_mb: i32,
    pub max_cpu_millis: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, sqlx::FromRow))]
pub struct TemplateSummary {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub summary: String,
    pub category: String,
    pub tags: Vec<String>,
    pub deploy_count: i32,
    pub featured: bool,
}

/// One page of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TemplatePage {
    pub templates: Vec<TemplateSummary>,
    /// Templates matching the query, on every page.
    pub total: i64,
    pub page: u32,
    pub per_page: u32,
}

impl TemplatePage {
    pub fn pages(&self) -> u32 {
        (self.total.max(0) as u64).div_ceil(u64::from(self.per_page.max(1))) as u32
    }
}

/// A template as its page shows it: the whole format ([`crate::templates::Spec`]) and what the
/// platform makes of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Template {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub summary: String,
    pub category: String,
    pub tags: Vec<String>,
    pub deploy_count: i32,
    pub featured: bool,
    /// The stored version of the template (a new one on every change).
    pub version: i32,
    /// The template file's content (see docs/templates.md).
    #[cfg_attr(feature = "ssr", schema(value_type = Object))]
    pub spec: crate::templates::Spec,
    /// The README rendered to HTML (raw HTML in it is shown as text).
    pub readme_html: String,
    /// The runtimes that can run it.
    #[cfg_attr(feature = "ssr", schema(value_type = Vec<String>))]
    pub runtimes: Vec<crate::templates::RuntimeKind>,
    /// Why the local runtime cannot run it (empty when it can).
    pub local_blockers: Vec<String>,
    /// The first public plan with room for it (services, replicas, memory), if any.
    pub plan: Option<String>,
}

/// How the catalogue is filtered, ordered and paged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct TemplateQuery {
    /// Words to find (full-text: name, tags, category, summary, README; word prefixes match).
    pub q: Option<String>,
    pub category: Option<String>,
    /// `popular` (default: featured, then most deployed), `name` or `new`.
    pub sort: Option<String>,
    /// The page, from 1.
    pub page: Option<u32>,
    /// Templates per page (1–100, default 24).
    pub per_page: Option<u32>,
}

#[server(endpoint = "list_plans")]
pub async fn list_plans() -> Result<Vec<Plan>, AppError> {
    crate::infra::request::with_status(async move {
        service::list_plans(&crate::infra::request::state()?.db).await
    })
    .await
}

#[server(endpoint = "list_templates")]
pub async fn list_templates(query: TemplateQuery) -> Result<TemplatePage, AppError> {
    crate::infra::request::with_status(async move {
        service::list_templates(&crate::infra::request::state()?.db, &query).await
    })
    .await
}

#[server(endpoint = "list_categories")]
pub async fn list_categories() -> Result<Vec<String>, AppError> {
    crate::infra::request::with_status(async move {
        service::list_categories(&crate::infra::request::state()?.db).await
    })
    .await
}

#[server(endpoint = "get_template")]
pub async fn get_template(slug: String) -> Result<Template, AppError> {
    crate::infra::request::with_status(async move {
        service::get_template(&crate::infra::request::state()?.db, &slug).await
    })
    .await
}

/// `1234` cents → `$12.34`; whole dollars drop the cents.
pub fn format_dollars(cents: i32) -> String {
    if cents % 100 == 0 {
        format!("${}", cents / 100)
    } else {
        format!("${}.{:02}", cents / 100, cents % 100)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dollars_are_formatted_for_people() {
        assert_eq!(super::format_dollars(0), "$0");
        assert_eq!(super::format_dollars(2000), "$20");
        assert_eq!(super::format_dollars(25), "$0.25");
        assert_eq!(super::format_dollars(1005), "$10.05");
    }
}
