//! `/api/v1/duplicates`: possible duplicate members in the caller's scope (read-only).

use actix_web::{HttpResponse, get, web};

use crate::{
    auth::Principal,
    error::{ApiError, ErrorBody},
    review::duplicates::{self, DuplicateListResponse, DuplicateQuery},
    state::AppState,
};

/// Pairs of members that may be the same person, best score first, each with the rules
/// that matched (docs/duplicates.md). Found when asked, within blocks (same cooperative,
/// same phone, same Khmer skeleton in one province). National admins name a province or
/// a cooperative (`400 province_required` otherwise).
#[utoipa::path(get, path = "/api/v1/duplicates", tag = "review", params(DuplicateQuery),
    security(("bearer" = [])),
    responses((status = 200, body = DuplicateListResponse),
              (status = 400, body = ErrorBody, description = "`province_required`"),
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
