//! Services: what runs in an environment — its source and its settings. Every query reaches a
//! service through its project, scoped by the project's owner.

#[cfg(feature = "ssr")]
pub mod service;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A local directory (local runtime).
    Directory,
    /// A git URL, cloned at deploy (`file://` and local paths work offline).
    Git,
    /// A container image (Kubernetes runtime).
    Image,
    /// A database engine run by the platform: `postgres` or `redis`.
    Database,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Directory => "directory",
            SourceKind::Git => "git",
            SourceKind::Image => "image",
            SourceKind::Database => "database",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "directory" => SourceKind::Directory,
            "git" => SourceKind::Git,
            "image" => SourceKind::Image,
            "database" => SourceKind::Database,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on_failure",
            RestartPolicy::Never => "never",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "always" => RestartPolicy::Always,
            "on_failure" => RestartPolicy::OnFailure,
            "never" => RestartPolicy::Never,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Service {
    pub id: Uuid,
    pub project_id: Uuid,
    pub environment_id: Uuid,
    pub environment: String,
    pub name: String,
    pub source_kind: SourceKind,
    pub source: String,
    pub build_command: Option<String>,
    pub start_command: Option<String>,
    pub port: Option<u16>,
    pub replicas: i32,
    pub cpu_millis: i32,
    pub memory_mb: i32,
    pub healthcheck_path: Option<String>,
    pub healthcheck_timeout_secs: i32,
    pub restart_policy: RestartPolicy,
    pub restart_max: i32,
    pub volume_path: Option<String>,
    pub cron_schedule: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Settings to create a service with, or to change (absent fields stay as they are; an empty
/// string clears an optional setting).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ServiceInput {
    pub name: Option<String>,
    /// The environment to create the service in (default: production). Create only.
    pub environment_id: Option<Uuid>,
    pub source_kind: Option<SourceKind>,
    pub source: Option<String>,
    pub build_command: Option<String>,
    pub start_command: Option<String>,
    pub port: Option<u32>,
    pub replicas: Option<i32>,
    pub cpu_millis: Option<i32>,
    pub memory_mb: Option<i32>,
    pub healthcheck_path: Option<String>,
    pub healthcheck_timeout_secs: Option<i32>,
    pub restart_policy: Option<RestartPolicy>,
    pub restart_max: Option<i32>,
    pub volume_path: Option<String>,
    pub cron_schedule: Option<String>,
}
