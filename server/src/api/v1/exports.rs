//! CSV exports of the projected tables, for admins, scoped like everything else.

use actix_web::{HttpResponse, get, http::header, web};

use crate::{
    auth::Principal,
    error::{ApiError, ErrorBody},
    export::{self, Dataset},
    state::AppState,
};

/// One table as CSV (UTF-8 with a byte order mark, CRLF line ends, a header row).
/// Datasets: `cooperatives`, `members`, `training_sessions`, `attendance`, `conflicts`,
/// `validation_flags`. National admins get every row, provincial admins the rows of
/// their provinces; each download is written to the audit log.
#[utoipa::path(get, path = "/api/v1/exports/{dataset}", tag = "exports",
    params(("dataset" = String, Path, description = "which table to export")),
    security(("bearer" = [])),
    responses((status = 200, description = "the table as CSV", content_type = "text/csv"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
#[get("/exports/{dataset}")]
pub async fn export_dataset(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let dataset = Dataset::parse(&path).ok_or(ApiError::NotFound("dataset"))?;
    let table = state
        .db
        .run(move |conn| export::export(conn, &principal, dataset))
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}.csv\"", dataset.as_str()),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(table.to_csv()))
}
