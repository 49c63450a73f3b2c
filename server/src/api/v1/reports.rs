//! Programme figures for admins (JSON for charts and other systems, CSV and XLSX for
//! spreadsheets), scoped like everything else.

use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    api::download,
    auth::Principal,
    error::{ApiError, ErrorBody},
    export::{self, Filter},
    reports::{self, Report},
    state::AppState,
    tabular::{self, Format},
};

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// `json` (default), `csv` or `xlsx`.
    pub format: Option<String>,
    /// Only sessions (and cooperatives) of this province; required by
    /// `people_trained_by_cooperative`.
    pub province: Option<String>,
    /// Only sessions of this programme (`think_coop`, `start_coop`, `follow_up`).
    pub programme: Option<String>,
    /// Sessions scheduled on or after this day (`YYYY-MM-DD`).
    pub from: Option<String>,
    /// Sessions scheduled on or before this day (`YYYY-MM-DD`).
    pub to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportInfo {
    pub name: &'static str,
    pub description: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportList {
    pub reports: Vec<ReportInfo>,
}

/// The reports there are.
#[utoipa::path(get, path = "/api/v1/reports", tag = "reports",
    security(("bearer" = [])),
    responses((status = 200, body = ReportList),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[get("/reports")]
pub async fn list_reports(principal: Principal) -> Result<web::Json<ReportList>, ApiError> {
    principal.require_admin()?;
    Ok(web::Json(ReportList {
        reports: Report::ALL
            .into_iter()
            .map(|r| ReportInfo {
                name: r.as_str(),
                description: r.description(),
            })
            .collect(),
    }))
}

/// One report. JSON: `{report, filters, columns, rows: [{column: value}]}`; totals are
/// rows whose dimension columns say `all`. CSV and XLSX: the same columns and rows (the
/// download is written to the audit log). Definitions: docs/admin-guide.md, "Reports".
#[utoipa::path(get, path = "/api/v1/reports/{report}", tag = "reports",
    params(("report" = String, Path, description = "people_trained, people_trained_by_month, \
        people_trained_by_cooperative, sessions, sessions_by_month, cooperatives_reached, \
        age_bands"), ReportQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "the figures",
                content((Object = "application/json"), (String = "text/csv"),
                    (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))),
              (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
#[get("/reports/{report}")]
pub async fn get_report(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
    query: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let report = Report::parse(&path).ok_or(ApiError::NotFound("report"))?;
    let format = match query.format.as_deref() {
        None | Some("") | Some("json") => None,
        Some(f) => Some(Format::parse(f).ok_or_else(|| {
            ApiError::bad_request("invalid_query", "format must be json, csv or xlsx")
        })?),
    };
    let filter = Filter::parse(
        query.province.as_deref(),
        query.programme.as_deref(),
        query.from.as_deref(),
        query.to.as_deref(),
    )?;
    let (p, f) = (principal.clone(), filter.clone());
    let figures = state
        .db
        .run(move |conn| {
            let figures = reports::run(conn, &p, report, &f)?;
            if let Some(format) = format {
                export::audit(conn, &p, report.as_str(), "report", format, &f)?;
            }
            Ok(figures)
        })
        .await?;
    let Some(format) = format else {
        return Ok(HttpResponse::Ok().json(figures.to_json(&filter)));
    };
    Ok(download::stream(report.as_str(), format, move |out| {
        let mut sink = tabular::sink(format, out, report.as_str(), &figures.columns)?;
        for row in &figures.rows {
            sink.row(row)?;
        }
        sink.finish()?;
        Ok(())
    }))
}
