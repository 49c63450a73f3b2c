//! `/api/v1/flags`: the validation-flags queue (list, one item, accept, correct).

use actix_web::{HttpResponse, get, post, web};

use super::numeric_id;
use crate::{
    auth::Principal,
    body::ApiJson,
    db::write_transaction,
    error::{ApiError, ErrorBody},
    review::flags::{
        self, AcceptRequest, CorrectRequest, FlagListResponse, FlagQuery, FlagResponse,
    },
    state::AppState,
};

/// Flags the caller may see, newest first, open ones unless `status` says otherwise.
#[utoipa::path(get, path = "/api/v1/flags", tag = "review", params(FlagQuery),
    security(("bearer" = [])),
    responses((status = 200, body = FlagListResponse),
              (status = 400, body = ErrorBody, description = "`invalid_query`, `invalid_cursor`"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[get("/flags")]
pub async fn list_flags(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<FlagQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let list = state
        .db
        .run(move |conn| flags::list(conn, &principal, &query))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(get, path = "/api/v1/flags/{id}", tag = "review",
    params(("id" = i64, Path, description = "Flag id")), security(("bearer" = [])),
    responses((status = 200, body = FlagResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/flags/{id}")]
pub async fn get_flag(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = numeric_id(&id, "flag")?;
    let item = state
        .db
        .run(move |conn| flags::get(conn, &principal, id))
        .await?;
    Ok(HttpResponse::Ok().json(item))
}

/// Accepts the flagged value as it is, with a note; it stays accepted until the value
/// changes.
#[utoipa::path(post, path = "/api/v1/flags/{id}/accept", tag = "review",
    params(("id" = i64, Path, description = "Flag id")), request_body = AcceptRequest,
    security(("bearer" = [])),
    responses((status = 200, body = FlagResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`flag_not_open`"),
              (status = 422, body = ErrorBody, description = "`validation_failed`: the note")))]
#[post("/flags/{id}/accept")]
pub async fn accept_flag(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: ApiJson<AcceptRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = body.parse()?;
    let id = numeric_id(&id, "flag")?;
    let item = state
        .db
        .run(move |conn| write_transaction(conn, |conn| flags::accept(conn, &principal, id, &req)))
        .await?;
    Ok(HttpResponse::Ok().json(item))
}

/// Corrects the flagged field with a new value (a server change, validated like a
/// tablet's); the flag closes as fixed by that change.
#[utoipa::path(post, path = "/api/v1/flags/{id}/correct", tag = "review",
    params(("id" = i64, Path, description = "Flag id")), request_body = CorrectRequest,
    security(("bearer" = [])),
    responses((status = 200, body = FlagResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`flag_not_open`, `no_change`"),
              (status = 422, body = ErrorBody, description = "`validation_failed`: a value that breaks the rule, or a field an admin cannot set")))]
#[post("/flags/{id}/correct")]
pub async fn correct_flag(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: ApiJson<CorrectRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = body.parse()?;
    let id = numeric_id(&id, "flag")?;
    let app = state.clone();
    let item = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                flags::correct(conn, &app.server_actor, &principal, id, &req)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(item))
}
