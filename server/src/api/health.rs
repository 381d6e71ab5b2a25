use app::infra::AppState;
use axum::{extract::State, http::StatusCode, Json};
use serde_json::{json, Value};

/// Alive: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready: the database answers and every migration this binary knows is applied.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let expected = crate::seed::MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).count() as i64;
    let applied: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&state.db)
        .await;
    match applied {
        Ok(n) if n >= expected => (StatusCode::OK, Json(json!({ "status": "ready", "migrations": n }))),
        Ok(n) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "migrating", "migrations": n, "expected": expected })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "database unavailable" })))
        }
    }
}
