//! Templates in the admin panel: every template (published or not) with its deploy counts,
//! creating and editing one as a TOML file (validated before anything is written; every edit
//! is a new version and the old ones are kept), publishing, featuring, and importing a compose
//! file into the editor. Every change is audited.

use crate::error::AppError;
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Where a template came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Shipped in the repository's `templates/`; rewritten when its file changes.
    Bundled,
    /// Made, imported or edited by an admin; the bundled catalogue never touches it.
    Admin,
}

impl Origin {
    pub fn parse(s: &str) -> Option<Origin> {
        match s {
            "bundled" => Some(Origin::Bundled),
            "admin" => Some(Origin::Admin),
            _ => None,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Origin::Bundled => "bundled",
            Origin::Admin => "admin",
        }
    }
}

/// A row of the admin's template list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminTemplate {
    pub slug: String,
    pub name: String,
    pub category: String,
    pub origin: Origin,
    pub published: bool,
    pub featured: bool,
    pub version: i32,
    /// Distinct users who deployed it (what the catalogue sorts by).
    pub deploy_count: i32,
    /// Every deploy, repeats included.
    pub deploys: i64,
    pub updated_at: DateTime<Utc>,
}

/// One kept version of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateVersion {
    pub version: i32,
    pub created_at: DateTime<Utc>,
    /// Who saved it (none for the bundled catalogue).
    pub created_by: Option<String>,
    pub deploys: i64,
}

/// A template as the editor shows it: one version's text and every version kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSource {
    pub template: AdminTemplate,
    /// The version shown (the current one unless another was asked for).
    pub shown_version: i32,
    /// The TOML text of that version.
    pub source: String,
    /// Newest first.
    pub versions: Vec<TemplateVersion>,
}

/// What saving a template did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub slug: String,
    pub version: i32,
    /// False when the text was the current version's already (nothing was written).
    pub changed: bool,
}

/// A compose file converted into the template format, for the admin to review and save.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposeImport {
    pub source: String,
    /// What the format cannot hold, per service: never silently dropped.
    pub not_carried_over: Vec<String>,
    /// What still has to be fixed before the template can be saved.
    pub problems: Vec<String>,
}

#[server(endpoint = "admin_list_templates")]
pub async fn admin_list_templates() -> Result<Vec<AdminTemplate>, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        crate::auth::guard::require_admin()?;
        super::store::list_all(&request::state()?.db).await
    })
    .await
}

#[server(endpoint = "admin_template_source")]
pub async fn admin_template_source(slug: String, version: Option<i32>) -> Result<TemplateSource, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        crate::auth::guard::require_admin()?;
        super::store::source(&request::state()?.db, &slug, version).await
    })
    .await
}

/// Creates a template (`slug` empty: it starts unpublished) or saves a new version of the
/// template `slug`. The text must be a valid template; nothing is written otherwise.
/// `base_version`: the version the editor started from; if another admin saved since, the
/// save is refused (409) rather than silently replacing their version.
#[server(endpoint = "admin_save_template")]
pub async fn admin_save_template(slug: Option<String>, source: String, base_version: Option<i32>) -> Result<Saved, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_admin()?;
        let existing = slug.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let saved = super::store::save(&request::state()?.db, &auth.user, existing, &source, base_version, &request::client_ip()).await?;
        if existing.is_none() {
            leptos_axum::redirect(&format!("/admin/templates/{}", saved.slug));
        }
        Ok(saved)
    })
    .await
}

/// Publishes or unpublishes, features or unfeatures a template (a flag left out is kept).
#[server(endpoint = "admin_set_template_flags")]
pub async fn admin_set_template_flags(slug: String, published: Option<bool>, featured: Option<bool>) -> Result<(), AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_admin()?;
        super::store::set_flags(&request::state()?.db, &auth.user, &slug, published, featured, &request::client_ip()).await
    })
    .await
}

/// Converts a docker-compose file (Coolify's or Dokploy's conventions) into a template text,
/// with what could not be carried over and what must still be fixed. Nothing is saved.
#[server(endpoint = "admin_import_compose")]
pub async fn admin_import_compose(compose: String, slug: String, name: String) -> Result<ComposeImport, AppError> {
    crate::infra::request::with_status(async move {
        crate::auth::guard::require_admin()?;
        super::store::import_compose(&compose, &slug, &name)
    })
    .await
}
