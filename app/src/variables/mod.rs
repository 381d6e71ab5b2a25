//! Variables: per service and shared per environment, encrypted at rest, masked when secret.
//! `template` is the `${{…}}` language, `resolve` the deploy-time resolution.

pub mod resolve;
#[cfg(feature = "ssr")]
pub mod service;
pub mod template;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A variable as listed. `value` is absent for a secret until it is revealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Variable {
    pub id: Uuid,
    pub name: String,
    pub value: Option<String>,
    pub secret: bool,
    /// Absent for a shared variable of the environment.
    pub service_id: Option<Uuid>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SetVariable {
    /// The value; may contain references (`${{Postgres.DATABASE_URL}}`) and generators
    /// (`${{secret(32)}}`, run once now).
    pub value: String,
    /// Mask the value in lists. Values made by `secret()` are always secret.
    #[serde(default)]
    pub secret: bool,
}
