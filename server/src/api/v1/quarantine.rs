//! `/api/v1/quarantine`: refused changes (list, one item, its bytes, release, dismiss);
//! `/api/v1/pending`: changes held for missing dependencies.

use actix_web::{HttpResponse, get, post, web};

use crate::{
    auth::Principal,
    body::ApiJson,
    db::write_transaction,
    error::{ApiError, ErrorBody},
    review::{
        pending::{self, PendingResponse},
        quarantine::{
            self, DismissRequest, QuarantineListResponse, QuarantineQuery, QuarantineResponse,
        },
    },
    state::AppState,
};

use super::numeric_id;

/// Refused changes the caller may see, newest first, open ones unless `status` says
/// otherwise.
#[utoipa::path(get, path = "/api/v1/quarantine", tag = "review", params(QuarantineQuery),
    security(("bearer" = [])),
    responses((status = 200, body = QuarantineListResponse),
              (status = 400, body = ErrorBody, description = "`invalid_query`, `invalid_cursor`"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[get("/quarantine")]
pub async fn list_quarantine(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<QuarantineQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let list = state
        .db
        .run(move |conn| quarantine::list(conn, &principal, &query))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One refused change: why, who sent it, when, and its decoded header.
#[utoipa::path(get, path = "/api/v1/quarantine/{id}", tag = "review",
    params(("id" = i64, Path, description = "Quarantine row id")),
    security(("bearer" = [])),
    responses((status = 200, body = QuarantineResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such row, or outside your scope")))]
#[get("/quarantine/{id}")]
pub async fn get_quarantined(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = numeric_id(&id, "quarantined change")?;
    let item = state
        .db
        .run(move |conn| quarantine::get(conn, &principal, id))
        .await?;
    Ok(HttpResponse::Ok().json(item))
}

/// The kept bytes of a refused change (the first 64 KiB), for a developer to inspect.
#[utoipa::path(get, path = "/api/v1/quarantine/{id}/bytes", tag = "review",
    params(("id" = i64, Path, description = "Quarantine row id")),
    security(("bearer" = [])),
    responses((status = 200, content_type = "application/octet-stream", description = "the raw bytes"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
#[get("/quarantine/{id}/bytes")]
pub async fn get_quarantined_bytes(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = numeric_id(&id, "quarantined change")?;
    let bytes = state
        .db
        .run(move |conn| quarantine::bytes(conn, &principal, id))
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"quarantine-{id}.automerge\""),
        ))
        .body(bytes))
}

/// Runs every check again now, under the change's original device and user; commits it
/// if it passes (changes held behind it apply with it), else answers why.
#[utoipa::path(post, path = "/api/v1/quarantine/{id}/release", tag = "review",
    params(("id" = i64, Path, description = "Quarantine row id")),
    security(("bearer" = [])),
    responses((status = 200, body = QuarantineResponse, description = "released: `decision_note` says applied or held"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`quarantine_decided`: released or dismissed already"),
              (status = 422, body = ErrorBody, description = "`validation_failed` with field code `still_refused` (and the change's error code in the message) or `not_releasable`")))]
#[post("/quarantine/{id}/release")]
pub async fn release_quarantined(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = numeric_id(&id, "quarantined change")?;
    let item = state
        .db
        .run(move |conn| write_transaction(conn, |conn| quarantine::release(conn, &principal, id)))
        .await?;
    Ok(HttpResponse::Ok().json(item))
}

/// Dismisses a refused change with a reason; the row and its bytes stay.
#[utoipa::path(post, path = "/api/v1/quarantine/{id}/dismiss", tag = "review",
    params(("id" = i64, Path, description = "Quarantine row id")),
    request_body = DismissRequest, security(("bearer" = [])),
    responses((status = 200, body = QuarantineResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`quarantine_decided`"),
              (status = 422, body = ErrorBody, description = "`validation_failed`: the reason is empty or too long")))]
#[post("/quarantine/{id}/dismiss")]
pub async fn dismiss_quarantined(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: ApiJson<DismissRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = body.parse()?;
    let id = numeric_id(&id, "quarantined change")?;
    let item = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| quarantine::dismiss(conn, &principal, id, &req))
        })
        .await?;
    Ok(HttpResponse::Ok().json(item))
}

/// Changes held for dependencies the server lacks, per device of the accounts the caller
/// manages (national admins: all): how many, since when, what they wait for, and which of
/// those are quarantined.
#[utoipa::path(get, path = "/api/v1/pending", tag = "review",
    security(("bearer" = [])),
    responses((status = 200, body = PendingResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
#[get("/pending")]
pub async fn list_pending(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let days = state.settings.pending_stale_days;
    let list = state
        .db
        .run(move |conn| pending::list(conn, &principal, days))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}
