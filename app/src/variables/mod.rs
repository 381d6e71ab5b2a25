//! Variables: the `${{…}}` template language and deploy-time resolution.

pub mod resolve;
pub mod template;
