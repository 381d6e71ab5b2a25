//! Migrations and first-run data. Plans and the first templates come with the migrations;
//! in dev mode a first admin is generated here, its password printed once and kept in the
//! data folder (never hard-coded).

use anyhow::Context;
use app::infra::{crypto, AppState};
use std::path::Path;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub async fn migrate(db: &sqlx::PgPool) -> anyhow::Result<()> {
    // The migrator takes a Postgres advisory lock, so replicas starting together are safe.
    MIGRATOR.run(db).await.context("applying database migrations")
}

/// Writes the bundled template catalogue (`templates/`): new and changed templates.
pub async fn templates(db: &sqlx::PgPool) -> anyhow::Result<()> {
    let changed = app::templates::store::sync_bundled(db).await.context("writing the bundled templates")?;
    if changed > 0 {
        tracing::info!(changed, "bundled templates written");
    }
    Ok(())
}

/// Creates the dev admin when the platform has no admin yet. Returns the credentials when
/// they were just created.
pub async fn dev_admin(state: &AppState) -> anyhow::Result<Option<(String, String)>> {
    if !state.config.is_dev() {
        return Ok(None);
    }
    let has_admin: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')")
        .fetch_one(&state.db)
        .await
        .context("looking for an admin")?;
    let file = state.config.data_dir.join("dev-admin.txt");
    if has_admin {
        if file.exists() {
            tracing::info!(credentials = %file.display(), "dev admin exists");
        }
        return Ok(None);
    }
    let email = state.config.dev_admin_email.clone();
    let password = crypto::new_password();
    let hash = crypto::hash_password(&password)?;
    sqlx::query(
        "INSERT INTO users (email, name, password_hash, role, plan_id, email_verified_at)
         VALUES ($1, 'Dev Admin', $2, 'admin', 'pro', now())
         ON CONFLICT (lower(email)) DO UPDATE SET role = 'admin', password_hash = EXCLUDED.password_hash, suspended_at = NULL",
    )
    .bind(&email)
    .bind(hash)
    .execute(&state.db)
    .await
    .context("creating the dev admin")?;
    write_private(&file, &format!("email: {email}\npassword: {password}\n"))?;
    Ok(Some((email, password)))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
