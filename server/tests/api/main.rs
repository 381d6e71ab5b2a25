//! Integration tests: the real router against a real PostgreSQL, one fresh database per test
//! (`#[sqlx::test]`), with migrations applied.

mod helpers;

mod admin;
mod audit;
mod auth;
mod billing;
mod catalogue;
mod deploys;
mod git_sources;
mod hostile;
mod live;
mod logs;
mod mail;
mod pages;
mod projects;
mod revenue;
mod row_security;
mod proxy_headers;
mod public_pages;
mod services;
mod sources;
mod stripe;
mod template_admin;
mod templates;
mod tenancy;
mod unavailable;
