//! `/healthz` (the process answers) and `/readyz` (the database answers too).

use actix_web::{HttpResponse, get, web};
use diesel::RunQueryDsl;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{error::ApiError, startup::AppState};

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
