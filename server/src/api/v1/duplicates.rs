//! `/api/v1/duplicates` and `/api/v1/merges`: the possible-duplicates queue (list, one
//! pair, merge, not the same person) and undoing a merge.

use actix_web::{HttpResponse, get, post, web};

use crate::{
    auth::Principal,
    body::ApiJson,
    db::write_transaction,
    error::{ApiError, ErrorBody},
    review::duplicates::{
        self, DuplicateCandidate, DuplicateListResponse, DuplicateQuery, MergeRequest,
        MergeResponse, NotSameRequest,
    },
    state::AppState,
};

/// Pairs of members that may be the same person, found as records arrive, best score
/// first, each with the rules that matched and both records side by side
/// (docs/duplicates.md). Open pairs unless `status` says otherwise; both members of a
/// pair are in the caller's scope.
#[utoipa::path(get, path = "/api/v1/duplicates", tag = "review", params(DuplicateQuery),
    security(("bearer" = [])),
    responses((status = 200, body = DuplicateListResponse),
              (status = 400, body = ErrorBody, description = "`invalid_query`, `invalid_cursor`"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[get("/duplicates")]
pub async fn list_duplicates(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<DuplicateQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let list = state
        .db
        .run(move |conn| duplicates::list(conn, &principal, &query))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One pair.
#[utoipa::path(get, path = "/api/v1/duplicates/{id}", tag = "review",
    params(("id" = String, Path, description = "Pair id")),
    security(("bearer" = [])),
    responses((status = 200, body = DuplicateCandidate), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such pair, or outside your scope")))]
#[get("/duplicates/{id}")]
pub async fn get_duplicate(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let item = state
        .db
        .run(move |conn| duplicates::get(conn, &principal, &id))
        .await?;
    Ok(HttpResponse::Ok().json(item))
}

/// Merges a pair: `survivor` survives; the other record is marked `merged_into` it (a
/// server change; its document and history stay), and the fields named in `take` are
/// written onto the survivor from the other record (a second server change). Tablets
/// pull both. Answers the merge, whose id undoes it.
#[utoipa::path(post, path = "/api/v1/duplicates/{id}/merge", tag = "review",
    params(("id" = String, Path, description = "Pair id")),
    request_body = MergeRequest, security(("bearer" = [])),
    responses((status = 200, body = MergeResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such pair, or outside your scope"),
              (status = 409, body = ErrorBody, description = "`pair_not_open`: decided already; `already_merged`: one of the two is merged into a third record; `has_merged_records`: the record that would be merged is itself a survivor of other merges"),
              (status = 422, body = ErrorBody, description = "`validation_failed`: the survivor is not one of the pair (`not_in_pair`), or a field that cannot be taken (`not_allowed`)")))]
#[post("/duplicates/{id}/merge")]
pub async fn merge_duplicate(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: ApiJson<MergeRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = body.parse()?;
    let id = id.into_inner();
    let app = state.clone();
    let done = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                duplicates::merge(conn, &app.server_actor, &principal, &id, &req)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(done))
}

/// Says the two are different people: the pair closes and is not proposed again unless
/// one of them changes a compared field (name, phone, sex, year of birth, village,
/// cooperative).
#[utoipa::path(post, path = "/api/v1/duplicates/{id}/not-same", tag = "review",
    params(("id" = String, Path, description = "Pair id")),
    request_body = NotSameRequest, security(("bearer" = [])),
    responses((status = 200, body = DuplicateCandidate), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such pair, or outside your scope"),
              (status = 409, body = ErrorBody, description = "`pair_not_open`: decided already"),
              (status = 422, body = ErrorBody, description = "`validation_failed`: a note over 500 characters")))]
#[post("/duplicates/{id}/not-same")]
pub async fn not_same_duplicate(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: ApiJson<NotSameRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = body.parse()?;
    let id = id.into_inner();
    let item = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                duplicates::not_same(conn, &principal, &id, &req)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(item))
}

/// Undoes a merge: server changes clear the `merged_into` mark and put back the
/// survivor's values from before the merge for the fields it took; the pair is open again.
#[utoipa::path(post, path = "/api/v1/merges/{id}/undo", tag = "review",
    params(("id" = String, Path, description = "Merge id")),
    security(("bearer" = [])),
    responses((status = 200, body = MergeResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such merge, or outside your scope"),
              (status = 409, body = ErrorBody, description = "`merge_undone`: undone already")))]
#[post("/merges/{id}/undo")]
pub async fn undo_merge(
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
                duplicates::undo(conn, &app.server_actor, &principal, &id)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(done))
}
