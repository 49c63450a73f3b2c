//! `/api/v1/walk-ins`: attendance of people with no member record (list, one, link to a
//! member, promote to a new member, undo).

use actix_web::{HttpResponse, get, post, web};

use crate::{
    auth::Principal,
    body::ApiJson,
    db::write_transaction,
    error::{ApiError, ErrorBody},
    review::walk_ins::{
        self, LinkRequest, PromoteRequest, WalkIn, WalkInDecision, WalkInListResponse, WalkInQuery,
    },
    state::AppState,
};

/// Walk-ins: attendance entries of people with no member record, at sessions in the
/// caller's scope, each with the members it may be (scored by the duplicate rules,
/// docs/duplicates.md#walk-ins), best candidate first. Open ones unless `status` says
/// otherwise.
#[utoipa::path(get, path = "/api/v1/walk-ins", tag = "review", params(WalkInQuery),
    security(("bearer" = [])),
    responses((status = 200, body = WalkInListResponse),
              (status = 400, body = ErrorBody, description = "`invalid_query`, `invalid_cursor`"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[get("/walk-ins")]
pub async fn list_walk_ins(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<WalkInQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let list = state
        .db
        .run(move |conn| walk_ins::list(conn, &principal, &query))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One walk-in.
#[utoipa::path(get, path = "/api/v1/walk-ins/{id}", tag = "review",
    params(("id" = String, Path, description = "Walk-in id")),
    security(("bearer" = [])),
    responses((status = 200, body = WalkIn), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such walk-in, or outside your scope")))]
#[get("/walk-ins/{id}")]
pub async fn get_walk_in(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let item = state
        .db
        .run(move |conn| walk_ins::get(conn, &principal, &id))
        .await?;
    Ok(HttpResponse::Ok().json(item))
}

const DECIDE_ERRORS: &str = "`walk_in_not_open`: linked or promoted already (undo first); `walk_in_changed`: the entry is gone from the session";

/// Links the walk-in to an existing member: a server change sets the entry's
/// `member_id` (tablets pull it); reports count the attendance for that member from then
/// on. The entry keeps what it was recorded with.
#[utoipa::path(post, path = "/api/v1/walk-ins/{id}/link", tag = "review",
    params(("id" = String, Path, description = "Walk-in id")),
    request_body = LinkRequest, security(("bearer" = [])),
    responses((status = 200, body = WalkInDecision), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such walk-in, or outside your scope"),
              (status = 409, body = ErrorBody, description = DECIDE_ERRORS),
              (status = 422, body = ErrorBody, description = "`validation_failed`: `member_id` names no member in your scope (`unknown_member`)")))]
#[post("/walk-ins/{id}/link")]
pub async fn link_walk_in(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: ApiJson<LinkRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = body.parse()?;
    let id = id.into_inner();
    let app = state.clone();
    let done = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                walk_ins::link(conn, &app.server_actor, &principal, &id, &req)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(done))
}

/// Registers the walk-in as a new member: a server change creates the member record
/// from the entry (each field overridable in the body; validated like a tablet's member),
/// a second links the entry to it. Tablets pull both.
#[utoipa::path(post, path = "/api/v1/walk-ins/{id}/promote", tag = "review",
    params(("id" = String, Path, description = "Walk-in id")),
    request_body = PromoteRequest, security(("bearer" = [])),
    responses((status = 200, body = WalkInDecision), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such walk-in, or outside your scope"),
              (status = 409, body = ErrorBody, description = DECIDE_ERRORS),
              (status = 422, body = ErrorBody, description = "`validation_failed`: the member would break a rule (e.g. `full_name_khmer` `missing_required_field` for a name typed in Latin letters; `cooperative_id` `required` or `unknown_cooperative`)")))]
#[post("/walk-ins/{id}/promote")]
pub async fn promote_walk_in(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: ApiJson<PromoteRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = body.parse()?;
    let id = id.into_inner();
    let app = state.clone();
    let done = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                walk_ins::promote(conn, &app.server_actor, &principal, &id, &req)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(done))
}

/// Undoes a link or a promotion: a server change clears the entry's `member_id`; the
/// walk-in is open again. A member record a promotion created is kept.
#[utoipa::path(post, path = "/api/v1/walk-ins/{id}/undo", tag = "review",
    params(("id" = String, Path, description = "Walk-in id")),
    security(("bearer" = [])),
    responses((status = 200, body = WalkInDecision), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such walk-in, or outside your scope"),
              (status = 409, body = ErrorBody, description = "`walk_in_not_decided`: it is open; `walk_in_changed`: a tablet has set another member on the entry since")))]
#[post("/walk-ins/{id}/undo")]
pub async fn undo_walk_in(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let app = state.clone();
    let done = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                walk_ins::undo(conn, &app.server_actor, &principal, &id)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(done))
}
