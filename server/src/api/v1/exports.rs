//! Exports of the projected tables as CSV or XLSX, for admins, scoped like everything
//! else and streamed.

use actix_web::{HttpResponse, get, web};

use crate::{
    api::download,
    auth::Principal,
    error::{ApiError, ErrorBody},
    export::{self, Dataset, ExportQuery},
    state::AppState,
    tabular,
};

/// One table as CSV (UTF-8 with a byte order mark, CRLF line ends, a header row) or XLSX
/// (one sheet named after the dataset, header frozen, dates and numbers typed, text
/// always as text). Datasets: `cooperatives`, `members`, `training_sessions`,
/// `attendance`, `conflicts`, `validation_flags`, and `audit` (national admins only).
/// National admins get every row, provincial admins the rows of their provinces; each
/// download is written to the audit log with its filters.
#[utoipa::path(get, path = "/api/v1/exports/{dataset}", tag = "exports",
    params(("dataset" = String, Path, description = "which table to export"), ExportQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "the table as CSV or XLSX",
                content((String = "text/csv"),
                    (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))),
              (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
#[get("/exports/{dataset}")]
pub async fn export_dataset(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    download_dataset(&state, principal, &path, &query).await
}

/// The download of `dataset` for `principal` (authorized, audited, streamed): the API's
/// route and the web app's download link are this one function.
pub async fn download_dataset(
    state: &AppState,
    principal: Principal,
    dataset: &str,
    query: &ExportQuery,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let dataset = Dataset::parse(dataset).ok_or(ApiError::NotFound("dataset"))?;
    export::authorize(&principal, dataset)?;
    let (format, filter) = (query.format()?, query.filter()?);
    let (p, f) = (principal.clone(), filter.clone());
    state
        .db
        .run(move |conn| export::audit(conn, &p, dataset.as_str(), "dataset", format, &f))
        .await?;
    let db = state.db.clone();
    Ok(download::stream(dataset.as_str(), format, move |out| {
        let mut out = Some(out);
        export::write(&db, &principal, dataset, &filter, &mut |columns| {
            let out = out
                .take()
                .ok_or_else(|| std::io::Error::other("the sink was made twice"))?;
            tabular::sink(format, out, dataset.as_str(), columns)
        })
        .map(|_| ())
    }))
}
