//! Downloads and the audit log as pages: every dataset and report as CSV or XLSX with
//! the filters the API takes (the download is the API's own `download_dataset`, so it is
//! scoped and audited the same), and the audit log for national admins.

use actix_web::{HttpResponse, web};
use maud::html;
use serde::Deserialize;

use super::{province_select, provinces};
use crate::{
    api::v1::exports::download_dataset,
    db::{models::AuditEntry, utc},
    domain::access::Role,
    error::ApiError,
    export::{Dataset, ExportQuery},
    state::AppState,
    web::{
        WebError,
        layout::{self, Section, url_with},
        ok,
        pages::review::short,
        session::WebUser,
    },
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/exports", web::get().to(exports_page))
        .route("/exports/{dataset}", web::get().to(download))
        .route("/audit", web::get().to(audit_page));
}

fn dataset_name(lang: crate::web::i18n::Lang, d: Dataset) -> &'static str {
    match d {
        Dataset::Cooperatives => lang.t("Cooperatives", "សហគមន៍កសិកម្ម"),
        Dataset::Members => lang.t("Members", "សមាជិក"),
        Dataset::TrainingSessions => lang.t("Training sessions", "វគ្គបណ្តុះបណ្តាល"),
        Dataset::Attendance => lang.t("Attendance", "វត្តមាន"),
        Dataset::Conflicts => lang.t("Conflicts", "ទិន្នន័យផ្ទុយគ្នា"),
        Dataset::ValidationFlags => lang.t("Validation flags", "ការព្រមាន"),
        Dataset::Audit => lang.t("Audit log", "កំណត់ហេតុសវនកម្ម"),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct FilterQuery {
    province: Option<String>,
    programme: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

async fn exports_page(
    state: web::Data<AppState>,
    user: WebUser,
    query: web::Query<FilterQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let q = query.into_inner();
    let p = user.principal.clone();
    let provs = user.run(&state, move |conn| provinces(conn, &p)).await?;
    let filters = [
        ("province", q.province.as_deref()),
        ("programme", q.programme.as_deref()),
        ("from", q.from.as_deref()),
        ("to", q.to.as_deref()),
    ];
    let link = |path: &str, format: &str| {
        let mut params = vec![("format", Some(format))];
        params.extend(filters.iter().copied());
        url_with(path, &params)
    };
    let datasets: Vec<Dataset> = Dataset::ALL
        .into_iter()
        .filter(|d| *d != Dataset::Audit || user.principal.role == Role::NationalAdmin)
        .collect();
    let body = html! {
        p.hint { (lang.t("Choose the filters, then download. Spreadsheets open in Excel or LibreOffice; every download is written to the audit log.",
                         "ជ្រើសរើសតម្រង រួចទាញយក។ ការទាញយកនីមួយៗត្រូវបានកត់ត្រាក្នុងកំណត់ហេតុសវនកម្ម។")) }
        form.filters method="get" action="/exports" {
            (province_select(lang, &provs, q.province.as_deref()))
            (layout::select("programme", lang.t("Programme", "កម្មវិធី"),
                &[("", lang.t("All programmes", "គ្រប់កម្មវិធី")), ("think_coop", "Think.Coop"),
                  ("start_coop", "Start.Coop"), ("follow_up", lang.t("Follow-up", "ការតាមដាន"))],
                q.programme.as_deref()))
            label { span { (lang.t("From", "ពី")) } input type="date" name="from" value=[q.from.as_deref()]; }
            label { span { (lang.t("To", "ដល់")) } input type="date" name="to" value=[q.to.as_deref()]; }
            button type="submit" { (lang.t("Apply filters", "អនុវត្តតម្រង")) }
        }
        table {
            thead { tr { th scope="col" { (lang.t("Table", "តារាង")) } th scope="col" { (lang.t("Download", "ទាញយក")) } } }
            tbody {
                @for d in &datasets { tr {
                    td { (dataset_name(lang, *d)) }
                    td {
                        a.button href=(link(&format!("/exports/{}", d.as_str()), "xlsx")) download { "XLSX" } " "
                        a.button.secondary href=(link(&format!("/exports/{}", d.as_str()), "csv")) download { "CSV" }
                    }
                } }
            }
        }
    };
    Ok(ok(layout::page(
        &user,
        Section::Exports,
        lang.t("Exports", "នាំចេញ"),
        None,
        body,
    )))
}

async fn download(
    state: web::Data<AppState>,
    user: WebUser,
    dataset: web::Path<String>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, WebError> {
    download_dataset(&state, user.principal.clone(), &dataset, &query)
        .await
        .map_err(|e| user.fail(e))
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditPageQuery {
    cursor: Option<String>,
}

async fn audit_page(
    state: web::Data<AppState>,
    user: WebUser,
    query: web::Query<AuditPageQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    user.principal
        .require_national_admin()
        .map_err(|e| user.fail(e))?;
    let before = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            user.fail(ApiError::bad_request(
                "invalid_cursor",
                "the cursor is invalid",
            ))
        })?),
        None => None,
    };
    const LIMIT: i64 = 50;
    let entries = user
        .run(&state, move |conn| {
            Ok(AuditEntry::page(conn, before, LIMIT)?)
        })
        .await?;
    let next = (entries.len() as i64 == LIMIT)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    let body = html! {
        table {
            thead { tr {
                th scope="col" { (lang.t("When (UTC)", "ពេលវេលា (UTC)")) } th scope="col" { (lang.t("Who", "អ្នកណា")) }
                th scope="col" { (lang.t("Action", "សកម្មភាព")) } th scope="col" { (lang.t("Target", "គោលដៅ")) }
                th scope="col" { (lang.t("Outcome", "លទ្ធផល")) } th scope="col" { (lang.t("Details", "ព័ត៌មានលម្អិត")) }
            } }
            tbody { @for e in &entries { tr {
                td { (lang.datetime(utc(e.occurred_at))) }
                td { code { (e.actor_user_id.as_deref().map(short).unwrap_or("—")) } }
                td { code { (e.action) } }
                td { (e.target_type.as_deref().unwrap_or("")) " " code { (e.target_id.as_deref().map(short).unwrap_or("")) } }
                td { (e.outcome) }
                td.details { (e.details) }
            } } }
        }
        (layout::pager(lang, "/audit", query.cursor.as_deref(), next.as_deref()))
    };
    Ok(ok(layout::page(
        &user,
        Section::Audit,
        lang.t("Audit log", "កំណត់ហេតុសវនកម្ម"),
        None,
        body,
    )))
}
