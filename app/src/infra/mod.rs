//! Server-only infrastructure: configuration, application state, crypto helpers, mail and
//! rate limiting. Nothing here is compiled into the WebAssembly bundle.

pub mod actor;
pub mod assets;
pub mod config;
pub mod crypto;
pub mod db;
pub mod live;
pub mod mail;
pub mod payments;
pub mod ratelimit;
pub mod secretbox;
pub mod request;
pub mod state;
pub mod streams;

pub use config::{Addressing, Config, RuntimeKind, SandboxMode, TrustProxy};
pub use state::{Admission, AppState};
