//! Reference data: Cambodia's capital and 24 provinces.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    auth::Principal,
    db::models::Province,
    error::{ApiError, ErrorBody},
    state::AppState,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct ProvinceResponse {
    /// Stable two-digit code, e.g. `07`.
    pub code: String,
    /// ISO 3166-2 code, e.g. `KH-7`.
    pub iso_code: String,
    pub name_latin: String,
    pub name_khmer: String,
    /// `capital` or `province`.
    pub kind: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProvinceListResponse {
    pub provinces: Vec<ProvinceResponse>,
}

/// All 25 provinces with codes and names in Latin and Khmer script.
#[utoipa::path(get, path = "/api/v1/provinces", tag = "reference", security(("bearer" = [])),
    responses((status = 200, body = ProvinceListResponse), (status = 401, body = ErrorBody)))]
#[get("/provinces")]
pub async fn list_provinces(
    state: web::Data<AppState>,
    _principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let provinces = state.db.run(|conn| Ok(Province::all(conn)?)).await?;
    Ok(HttpResponse::Ok().json(ProvinceListResponse {
        provinces: provinces
            .into_iter()
            .map(|p| ProvinceResponse {
                code: p.code,
                iso_code: p.iso_code,
                name_latin: p.name_latin,
                name_khmer: p.name_khmer,
                kind: p.kind,
            })
            .collect(),
    }))
}
