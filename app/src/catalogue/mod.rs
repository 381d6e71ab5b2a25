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
}

/// One service a template creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TemplateService {
    pub name: String,
    pub source: String,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub engine: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub build: Option<String>,
    #[serde(default)]
    pub volume: Option<String>,
    #[serde(default)]
    pub healthcheck: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TemplateVariable {
    pub service: String,
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, sqlx::FromRow))]
pub struct TemplateSummary {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub summary: String,
    pub category: String,
    pub deploy_count: i32,
    pub featured: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Template {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub summary: String,
    pub description: String,
    pub category: String,
    pub services: Vec<TemplateService>,
    pub variables: Vec<TemplateVariable>,
    pub cpu_millis: i32,
    pub memory_mb: i32,
    pub deploy_count: i32,
    pub featured: bool,
}

/// How the catalogue is filtered and ordered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
pub struct TemplateQuery {
    /// Words to find in the name or summary.
    pub q: Option<String>,
    pub category: Option<String>,
    /// `popular` (default), `name` or `new`.
    pub sort: Option<String>,
}

#[server(endpoint = "list_plans")]
pub async fn list_plans() -> Result<Vec<Plan>, AppError> {
    crate::infra::request::with_status(async move {
        service::list_plans(&crate::infra::request::state()?.db).await
    })
    .await
}

#[server(endpoint = "list_templates")]
pub async fn list_templates(query: TemplateQuery) -> Result<Vec<TemplateSummary>, AppError> {
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
