//! `/api/v1/conflicts`: the conflicts queue (list, one item, resolve).

use actix_web::{HttpResponse, get, post, web};

use crate::{
    auth::Principal,
    body::ApiJson,
    db::write_transaction,
    error::{ApiError, ErrorBody},
    review::conflicts::{
        self, ConflictListResponse, ConflictQuery, ConflictResponse, ResolveRequest,
    },
    state::AppState,
};

/// Conflicts the caller may see (admins: provincial admins their provinces), newest
/// first, open ones unless `status` says otherwise.
#[utoipa::path(get, path = "/api/v1/conflicts", tag = "review", params(ConflictQuery),
    security(("bearer" = [])),
    responses((status = 200, body = ConflictListResponse),
              (status = 400, body = ErrorBody, description = "`invalid_query`, `invalid_cursor`"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[get("/conflicts")]
pub async fn list_conflicts(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<ConflictQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let list = state
        .db
        .run(move |conn| conflicts::list(conn, &principal, &query))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One conflict: the record, the field, every concurrent value with its user, device
/// (national admins) and server receive time, the value shown now, and the resolution.
#[utoipa::path(get, path = "/api/v1/conflicts/{id}", tag = "review",
    params(("id" = i64, Path, description = "Conflict id")),
    security(("bearer" = [])),
    responses((status = 200, body = ConflictResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such conflict, or outside your scope")))]
#[get("/conflicts/{id}")]
pub async fn get_conflict(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = super::numeric_id(&id, "conflict")?;
    let item = state
        .db
        .run(move |conn| conflicts::get(conn, &principal, id))
        .await?;
    Ok(HttpResponse::Ok().json(item))
}

/// Resolves a conflict with `choice` (a candidate's index) or a typed `value`. The server
/// writes one change over every concurrent value; every tablet pulls it.
#[utoipa::path(post, path = "/api/v1/conflicts/{id}/resolve", tag = "review",
    params(("id" = i64, Path, description = "Conflict id")),
    request_body = ResolveRequest, security(("bearer" = [])),
    responses((status = 200, body = ConflictResponse),
              (status = 400, body = ErrorBody, description = "`unsupported_conflict`: not a field of a record or of an attendance entry"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such conflict, or outside your scope"),
              (status = 409, body = ErrorBody, description = "`conflict_not_open`: resolved or superseded already; `conflict_changed`: the chosen attendance entry is no longer one of the record's values"),
              (status = 422, body = ErrorBody, description = "`validation_failed`: no such choice, a typed value that breaks its field's rule, or a typed value for an attendance entry recorded twice (choose one)")))]
#[post("/conflicts/{id}/resolve")]
pub async fn resolve_conflict(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: ApiJson<ResolveRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = body.parse()?;
    let id = super::numeric_id(&id, "conflict")?;
    let app = state.clone();
    let item = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                conflicts::resolve(conn, &app.server_actor, &principal, id, &req)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(item))
}
