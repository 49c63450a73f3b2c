//! `/api/v1/records`: finding records, one record, an admin's correction, its history.

use actix_web::{HttpResponse, get, patch, web};

use crate::{
    auth::Principal,
    body::ApiJson,
    db::write_transaction,
    error::{ApiError, ErrorBody},
    records::{
        edit::{self, EditRequest, EditResponse},
        history::{self, HistoryQuery, HistoryResponse},
        read::{self, RecordListResponse, RecordQuery, RecordResponse},
    },
    state::AppState,
};

/// Sets fields of a record in the caller's scope (admins), validated like a tablet's
/// values, as one server change that every tablet pulls.
#[utoipa::path(patch, path = "/api/v1/records/{id}", tag = "review",
    params(("id" = String, Path, description = "Document id")),
    request_body = EditRequest, security(("bearer" = [])),
    responses((status = 200, body = EditResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "not an admin, or the edit would move the record out of your provinces"),
              (status = 404, body = ErrorBody, description = "no such record, or outside your scope"),
              (status = 409, body = ErrorBody, description = "`no_change`"),
              (status = 422, body = ErrorBody, description = "`validation_failed`: a field an admin cannot set (`not_allowed`), a value of no accepted kind, an attendance entry that does not exist, or a value that breaks its field's rule")))]
#[patch("/records/{id}")]
pub async fn edit_record(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: ApiJson<EditRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = body.parse()?;
    let id = id.into_inner();
    let app = state.clone();
    let done = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                edit::edit(conn, &app.server_actor, &principal, &id, &req)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(done))
}

/// Every change of a record, newest first: when the server received it, who wrote it
/// (a device's user, or an admin through a server change) and each field before and
/// after.
#[utoipa::path(get, path = "/api/v1/records/{id}/history", tag = "review",
    params(("id" = String, Path, description = "Document id"), HistoryQuery),
    security(("bearer" = [])),
    responses((status = 200, body = HistoryResponse),
              (status = 400, body = ErrorBody, description = "`invalid_cursor`"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such record, or outside your scope")))]
#[get("/records/{id}/history")]
pub async fn record_history(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let query = query.into_inner();
    let found = state
        .db
        .run(move |conn| history::history(conn, &principal, &id, &query))
        .await?;
    Ok(HttpResponse::Ok().json(found))
}

/// Records in the caller's scope (admins), by type, sorted by id: search by a Khmer or
/// Latin name, filter by province, cooperative, programme and date.
#[utoipa::path(get, path = "/api/v1/records", tag = "review", params(RecordQuery),
    security(("bearer" = [])),
    responses((status = 200, body = RecordListResponse),
              (status = 400, body = ErrorBody, description = "`invalid_query`"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[get("/records")]
pub async fn list_records(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<RecordQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let list = state
        .db
        .run(move |conn| read::list(conn, &principal, &query))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One record: its fields, open conflicts and open flags, and its merges. The id of a
/// member merged into another answers with the survivor (`forwarded_from` says so)
/// unless `follow=false`.
#[utoipa::path(get, path = "/api/v1/records/{id}", tag = "review",
    params(("id" = String, Path, description = "Document id"), read::RecordGetQuery),
    security(("bearer" = [])),
    responses((status = 200, body = RecordResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such record, or outside your scope")))]
#[get("/records/{id}")]
pub async fn get_record(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<read::RecordGetQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let query = query.into_inner();
    let found = state
        .db
        .run(move |conn| read::get(conn, &principal, &id, &query))
        .await?;
    Ok(HttpResponse::Ok().json(found))
}
