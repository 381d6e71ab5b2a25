use app::infra::{Admission, AppState};
use axum::{extract::State, http::StatusCode, Json};
use serde_json::{json, Value};

/// Alive: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// What containment allows, as `/readyz` reports it.
fn sandbox(state: &AppState) -> Value {
    match state.admission() {
        Admission::Everyone => json!({ "status": "ok" }),
        Admission::AdminsOnly => json!({ "status": "off", "detail": "ROUNDHOUSE_SANDBOX=off: only admins' projects deploy" }),
        Admission::Nobody(why) => json!({ "status": "unavailable", "detail": why }),
    }
}

/// Ready: the database answers, every migration this binary knows is applied, and what
/// tenants deploy can be contained (unless the operator switched the sandbox off).
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if let Admission::Nobody(_) = state.admission() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "sandbox unavailable", "sandbox": sandbox(&state) })));
    }
    // The cause is in the platform's log: what the server said (host names, roles) is not for
    // anyone who can reach this address.
    if let Some((for_how_long, _)) = state.db_health.away() {
        let detail = format!("unreachable for {}s", for_how_long.as_secs());
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "database unavailable", "detail": detail })));
    }
    let expected = crate::seed::MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).count() as i64;
    let applied: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&state.db)
        .await;
    match applied {
        // A runtime in trouble (a cluster that does not answer) is reported, not failed on: the
        // pages, the API and what already runs are fine, and taking every replica out of its
        // load balancer would take them down too.
        Ok(n) if n >= expected => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "migrations": n, "sandbox": sandbox(&state), "runtime": state.runtime_trouble().map_or(json!({ "status": "ok" }), |why| json!({ "status": "unavailable", "detail": why })) })),
        ),
        Ok(n) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "migrating", "migrations": n, "expected": expected })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "database unavailable", "detail": "the readiness query failed" })))
        }
    }
}
