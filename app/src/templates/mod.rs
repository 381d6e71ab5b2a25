//! The template format: what a template file (TOML, `version = 1`) holds — its metadata, the
//! inputs a user fills or the platform generates, and the services it creates. See
//! docs/templates.md for the format in full with a complete example.
//!
//! The types here are shared with the browser (the template page shows the services, inputs
//! and diagram); parsing, validation and generation run on the server.

pub mod admin;
pub mod admin_pages;
#[cfg(feature = "ssr")]
pub mod bundled;
#[cfg(feature = "ssr")]
pub mod compose;
#[cfg(feature = "ssr")]
pub mod deploy;
#[cfg(feature = "ssr")]
pub mod generate;
#[cfg(feature = "ssr")]
pub mod parse;
#[cfg(feature = "ssr")]
pub mod store;
pub mod validate;

pub mod pages;

use crate::{deployments::Deployment, error::AppError};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Where to deploy a template, and the user's inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TemplateDeployRequest {
    /// An existing project of yours; or leave it out and name a new one.
    pub project_id: Option<Uuid>,
    /// A new project's name (default: the template's name).
    pub project_name: Option<String>,
    /// The environment (default: production).
    pub environment_id: Option<Uuid>,
    /// Values for the template's inputs, by name. Generated inputs cannot be given.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
}

/// What a template deploy created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TemplateDeployment {
    pub project_id: Uuid,
    pub environment_id: Uuid,
    /// In the order they were deployed (everything a service needs comes before it).
    pub services: Vec<DeployedService>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeployedService {
    pub service_id: Uuid,
    pub name: String,
    pub deployment: Option<Deployment>,
    /// Why this service's deployment could not be queued (the others still were).
    pub error: Option<String>,
}

/// Where a template can go: each environment of each of the user's projects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployTarget {
    pub project_id: Uuid,
    pub project: String,
    pub environment_id: Uuid,
    pub environment: String,
}

#[server(endpoint = "deploy_targets")]
pub async fn deploy_targets() -> Result<Vec<DeployTarget>, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        deploy::targets(&request::state()?.db, auth.user.id).await
    })
    .await
}

/// Deploys a template from its deploy page (a form: `inputs[NAME]` fields), then opens the
/// project. `project_id` is one of the user's projects, `<project>/<environment>` for one of
/// its environments, or `new` (with `project_name`).
#[server(endpoint = "deploy_template")]
pub async fn deploy_template(
    slug: String,
    project_id: Option<String>,
    project_name: Option<String>,
    #[server(default)] inputs: BTreeMap<String, String>,
) -> Result<TemplateDeployment, AppError> {
    crate::infra::request::with_status(async move {
        use crate::infra::request;
        let auth = crate::auth::guard::require_user()?;
        let bad = || AppError::validation("project_id", "Choose one of your projects.");
        let (project_id, environment_id) = match project_id.as_deref().map(str::trim).filter(|p| !p.is_empty() && *p != "new") {
            None => (None, None),
            Some(target) => match target.split_once('/') {
                Some((p, e)) => (Some(Uuid::parse_str(p).map_err(|_| bad())?), Some(Uuid::parse_str(e).map_err(|_| bad())?)),
                None => (Some(Uuid::parse_str(target).map_err(|_| bad())?), None),
            },
        };
        let req = TemplateDeployRequest { project_id, project_name, environment_id, inputs };
        let state = request::state()?;
        let done = deploy::deploy(&state, &auth.user, &slug, &req).await?;
        leptos_axum::redirect(&format!("/projects/{}", done.project_id));
        Ok(done)
    })
    .await
}

/// The version of the format this platform reads.
pub const FORMAT_VERSION: u32 = 1;

/// One template file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The format's version (`1`).
    pub version: u32,
    pub template: Meta,
    /// What the user is asked for and what the platform generates, in the order shown. Every
    /// input becomes a shared variable of the environment, referred to as `${{shared.NAME}}`.
    #[serde(default)]
    pub inputs: Vec<Input>,
    pub services: Vec<ServiceSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub slug: String,
    pub name: String,
    pub summary: String,
    pub category: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// An inline SVG document or an https URL.
    #[serde(default)]
    pub logo: Option<String>,
    /// Markdown shown on the template's page.
    #[serde(default)]
    pub readme: String,
    #[serde(default)]
    pub links: Vec<Link>,
    /// The template's own version (of what it deploys), e.g. `"16"` or `"2.1.0"`.
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub label: String,
    pub url: String,
}

/// A value the template needs: typed in by the user, or generated once at deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A variable name (`ADMIN_EMAIL`); the shared variable it becomes.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// What the user types (absent for generated values).
    #[serde(default, rename = "type")]
    pub kind: Option<InputKind>,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    /// How the value is generated: set for generated values, which are not asked for.
    #[serde(default)]
    pub generate: Option<Generate>,
    /// Keep the value masked (generated values always are).
    #[serde(default)]
    pub secret: bool,
}

impl Input {
    pub fn is_generated(&self) -> bool {
        self.generate.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    String,
    Email,
    Url,
    Number,
    Boolean,
}

/// A generated value. Lengths are in characters (bytes before encoding for `base64`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Generate {
    /// Letters and digits (safe inside URLs and connection strings).
    Password {
        #[serde(default = "default_length")]
        length: u32,
    },
    Hex {
        #[serde(default = "default_length")]
        length: u32,
    },
    Base64 {
        #[serde(default = "default_length")]
        length: u32,
    },
    Alnum {
        #[serde(default = "default_length")]
        length: u32,
    },
    Uuid,
    Int {
        min: i64,
        max: i64,
    },
    /// A lower-case user name: a letter and then letters and digits.
    Username {
        #[serde(default = "default_username_length")]
        length: u32,
    },
    /// An HS256 JSON Web Token signed with another input (the secret), whose claims are
    /// `claims` plus `iat` (now) and `exp` (now + `valid_days`).
    Jwt {
        secret: String,
        #[serde(default)]
        claims: BTreeMap<String, serde_json::Value>,
        #[serde(default = "default_jwt_days")]
        valid_days: u32,
    },
    /// A port number from the unprivileged range (10000–60999).
    Port,
}

fn default_length() -> u32 {
    32
}
fn default_username_length() -> u32 {
    12
}
fn default_jwt_days() -> u32 {
    3650
}

/// One service a template creates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    pub source: Source,
    /// Run in the build directory before the service starts (e.g. `npm ci`).
    #[serde(default)]
    pub build: Option<String>,
    #[serde(default)]
    pub start: Option<String>,
    /// Run once before each deployment takes traffic (e.g. migrations).
    #[serde(default)]
    pub pre_deploy: Option<String>,
    /// The port the service listens on (given to it as `$PORT` where it reads one).
    #[serde(default)]
    pub port: Option<u16>,
    /// Variables, with `${{Service.VAR}}`, `${{shared.NAME}}` and `${{VAR}}` references.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub domains: Vec<Domain>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub files: Vec<File>,
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default)]
    pub depends_on: Vec<Dependency>,
    #[serde(default = "one")]
    pub replicas: u32,
    /// A five-field cron schedule: the service is a job run on schedule, not a server.
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub restart: Option<Restart>,
    #[serde(default)]
    pub cpu_millis: Option<u32>,
    #[serde(default)]
    pub memory_mb: Option<u32>,
}

fn one() -> u32 {
    1
}

/// Where a service's code comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// A container image (`image`, `tag`): needs an image-capable runtime (Kubernetes).
    Image {
        image: String,
        #[serde(default = "latest")]
        tag: String,
    },
    /// A git repository, optionally a folder of it.
    Git {
        repo: String,
        #[serde(default)]
        branch: Option<String>,
        #[serde(default)]
        dir: Option<String>,
    },
    /// A database the platform runs (`postgres`, `redis`).
    Database { engine: String },
    /// A sample app bundled with the platform (`templates/samples/<name>`).
    Sample { name: String },
}

fn latest() -> String {
    "latest".into()
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Image { image, tag } => format!("image {image}:{tag}"),
            Source::Git { repo, dir: Some(dir), .. } => format!("git {repo} ({dir})"),
            Source::Git { repo, .. } => format!("git {repo}"),
            Source::Database { engine } => format!("{engine} database"),
            Source::Sample { name } => format!("sample app {name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// The port traffic for this domain goes to (default: the service's port).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "root_path")]
    pub path: String,
}

fn root_path() -> String {
    "/".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub mount: String,
    #[serde(default = "one")]
    pub size_gb: u32,
}

/// A file written into the service's filesystem before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub path: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    /// An HTTP path that answers 2xx when the service is ready.
    #[serde(default)]
    pub http: Option<String>,
    /// Or a command that exits 0 when the service is healthy.
    #[serde(default)]
    pub exec: Option<Vec<String>>,
    #[serde(default = "default_interval")]
    pub interval_secs: u32,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u32,
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_interval() -> u32 {
    10
}
fn default_timeout() -> u32 {
    30
}
fn default_retries() -> u32 {
    3
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    pub service: String,
    #[serde(default)]
    pub condition: Condition,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The dependency's deployment has started.
    #[default]
    Started,
    /// The dependency passes its health check (is running).
    Healthy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}

/// The runtimes a platform can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    Local,
    Kubernetes,
}

impl RuntimeKind {
    pub fn label(self) -> &'static str {
        match self {
            RuntimeKind::Local => "Local",
            RuntimeKind::Kubernetes => "Kubernetes",
        }
    }
}

/// The database engines the platform runs itself.
pub const DATABASE_ENGINES: &[&str] = &["postgres", "redis"];

impl ServiceSpec {
    /// Why the local runtime cannot run this service as the template describes it, if it
    /// cannot (what the platform does not do yet is said plainly, never silently dropped).
    pub fn local_blocker(&self) -> Option<String> {
        let n = &self.name;
        match &self.source {
            Source::Image { image, tag } => return Some(format!("{n} runs the image {image}:{tag}, which needs an image-capable runtime (Kubernetes)")),
            Source::Git { dir: Some(_), .. } | Source::Git { branch: Some(_), .. } => {
                return Some(format!("{n} builds a folder or branch of its repository; the local runtime clones the default branch's root"))
            }
            _ => {}
        }
        if self.volumes.len() > 1 {
            return Some(format!("{n} mounts {} volumes; the local runtime gives a service one", self.volumes.len()));
        }
        if !self.files.is_empty() {
            return Some(format!("{n} writes files into its filesystem, which the local runtime does not do yet"));
        }
        if self.healthcheck.as_ref().is_some_and(|h| h.exec.is_some()) {
            return Some(format!("{n} has a command health check; the local runtime checks HTTP paths and listening ports"));
        }
        if self.domains.iter().any(|d| d.port.is_some_and(|p| Some(p) != self.port) || d.path != "/") {
            return Some(format!("{n} routes a domain to another port or path; the local runtime routes one domain to the service's port"));
        }
        None
    }

    /// The services this one refers to in its variables or depends on.
    pub fn needs(&self) -> std::collections::BTreeSet<String> {
        let mut out: std::collections::BTreeSet<String> = self.depends_on.iter().map(|d| d.service.clone()).collect();
        use crate::variables::template::{references, Reference};
        for value in self.env.values() {
            for r in references(value).unwrap_or_default() {
                if let Reference::Service { service, .. } = r {
                    out.insert(service);
                }
            }
        }
        out.remove(&self.name);
        out
    }
}

impl Spec {
    /// The runtimes that can run every service of the template.
    pub fn runtimes(&self) -> Vec<RuntimeKind> {
        let mut out = vec![];
        if self.local_blockers().is_empty() {
            out.push(RuntimeKind::Local);
        }
        out.push(RuntimeKind::Kubernetes);
        out
    }

    pub fn local_blockers(&self) -> Vec<String> {
        self.services.iter().filter_map(ServiceSpec::local_blocker).collect()
    }

    /// The inputs a user is asked for (not generated).
    pub fn asked(&self) -> impl Iterator<Item = &Input> {
        self.inputs.iter().filter(|i| !i.is_generated())
    }

    /// What the template asks of a plan: services, the largest replica count, and memory.
    pub fn needs_of_plan(&self) -> PlanNeeds {
        PlanNeeds {
            services: self.services.len() as u32,
            replicas: self.services.iter().map(|s| s.replicas).max().unwrap_or(1),
            memory_mb: self.services.iter().map(|s| s.memory_mb.unwrap_or(512) * s.replicas).sum(),
        }
    }

    /// Services in an order where everything a service needs comes before it (the order to
    /// deploy in); `None` if the needs form a cycle.
    pub fn deploy_order(&self) -> Option<Vec<&ServiceSpec>> {
        let mut done: Vec<&ServiceSpec> = Vec::with_capacity(self.services.len());
        let mut left: Vec<&ServiceSpec> = self.services.iter().collect();
        while !left.is_empty() {
            let before = left.len();
            let mut i = 0;
            while i < left.len() {
                let ready = left[i].needs().iter().all(|n| done.iter().any(|d| &d.name == n) || !self.services.iter().any(|s| &s.name == n));
                if ready {
                    done.push(left.remove(i));
                } else {
                    i += 1;
                }
            }
            if left.len() == before {
                return None;
            }
        }
        Some(done)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanNeeds {
    pub services: u32,
    pub replicas: u32,
    pub memory_mb: u32,
}
