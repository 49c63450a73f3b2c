//! `/healthz` (the process answers) and `/readyz` (the database answers too).

use actix_web::{HttpResponse, get, web};
use diesel::RunQueryDsl;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{error::ApiError, state::AppState};

#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`
    pub status: &'static str,
    pub version: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct ReadyResponse {
    /// `ready`
    pub status: &'static str,
    /// `sqlite` or `postgresql`
    pub database: &'static str,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, body = HealthResponse)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Readiness: the database answers a query.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = ReadyResponse),
              (status = 503, body = crate::error::ErrorBody, description = "`database_unavailable`")))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let database = state.db.backend().name();
    state
        .db
        .run(|conn| {
            diesel::sql_query("SELECT 1")
                .execute(conn)
                .map_err(|_| ApiError::DatabaseUnavailable)
        })
        .await?;
    Ok(HttpResponse::Ok().json(ReadyResponse {
        status: "ready",
        database,
    }))
}

/// Prometheus metrics for operators (not in the OpenAPI document: not for app authors).
/// Needs `Authorization: Bearer <metrics_token>`; without a configured token the route
/// does not exist (404), and no tablet token opens it.
#[get("/metrics")]
pub async fn metrics(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    use sha2::{Digest, Sha256};
    let token = &state.settings.metrics_token;
    if token.is_empty() {
        return Err(ApiError::NotFound("route"));
    }
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compared as digests, so the time taken says nothing about the token.
    if Sha256::digest(given.as_bytes()) != Sha256::digest(token.expose().as_bytes()) {
        return Err(ApiError::Unauthenticated);
    }
    let waits = state.db.waits();
    let snapshot = crate::metrics::Snapshot {
        pool: state.db.pool_state(),
        pool_waits: (
            waits.count.load(std::sync::atomic::Ordering::Relaxed),
            waits.micros.load(std::sync::atomic::Ordering::Relaxed),
            waits.slow.load(std::sync::atomic::Ordering::Relaxed),
            waits.failed.load(std::sync::atomic::Ordering::Relaxed),
        ),
        budget_in_use: state
            .body_budget
            .capacity()
            .saturating_sub(state.body_budget.available()),
        budget_capacity: state.body_budget.capacity(),
        cache: crate::records::doc_cache::stats(),
    };
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&snapshot)))
}
