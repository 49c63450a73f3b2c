//! Registry imports as pages (national admins): upload a CSV or XLSX file (a plain
//! `multipart/form-data` form), read the dry run's report, apply it; the templates. The
//! jobs are `import::jobs`, the same as `/api/v1/imports`.

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use futures_util::StreamExt as _;
use maud::html;

use crate::{
    error::ApiError,
    import::{
        self, Kind,
        jobs::{self, JobStatus},
    },
    state::AppState,
    tabular::Format,
    web::{
        WebError,
        layout::{self, Section, csrf},
        ok,
        session::WebUser,
    },
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/imports", web::get().to(import_list))
        .route("/imports", web::post().to(upload))
        .route("/imports/templates/{kind}", web::get().to(template))
        .route("/imports/{id}", web::get().to(import_page))
        .route("/imports/{id}/apply", web::post().to(apply));
}

fn kind_name(lang: crate::web::i18n::Lang, k: Kind) -> &'static str {
    match k {
        Kind::Cooperatives => lang.t("Cooperatives", "សហគមន៍កសិកម្ម"),
        Kind::Members => lang.t("Members", "សមាជិក"),
    }
}

fn status_name(lang: crate::web::i18n::Lang, s: JobStatus) -> &'static str {
    match s {
        JobStatus::Checking => lang.t("checking (dry run)", "កំពុងពិនិត្យ"),
        JobStatus::Checked => lang.t("checked: ready to apply", "បានពិនិត្យ៖ អាចអនុវត្តបាន"),
        JobStatus::Applying => lang.t("applying", "កំពុងអនុវត្ត"),
        JobStatus::Applied => lang.t("applied", "បានអនុវត្ត"),
        JobStatus::Failed => lang.t("failed", "បរាជ័យ"),
        JobStatus::Interrupted => lang.t("interrupted: apply again", "ត្រូវបានរំខាន៖ អនុវត្តម្ដងទៀត"),
    }
}

async fn import_list(state: web::Data<AppState>, user: WebUser) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let p = user.principal.clone();
    let list = user.run(&state, move |conn| jobs::list(conn, &p)).await?;
    let body = html! {
        p.hint { (lang.t("Import the existing registry from a spreadsheet. The file is checked first (a dry run: nothing is created); read the report, then apply. Importing the same file again creates nothing twice.",
                         "នាំចូលបញ្ជីឈ្មោះពីសៀវភៅបញ្ជី។ ឯកសារត្រូវបានពិនិត្យជាមុនសិន (គ្មានអ្វីត្រូវបានបង្កើតទេ)។ អានរបាយការណ៍ រួចអនុវត្ត។")) }
        form.grid method="post" action="/imports" enctype="multipart/form-data" {
            (csrf(&user))
            (layout::select("kind", lang.t("What the file holds", "ឯកសារមាន"), &[
                ("cooperatives", kind_name(lang, Kind::Cooperatives)),
                ("members", kind_name(lang, Kind::Members)),
            ], Some("members")))
            label { span { (lang.t("File (CSV or XLSX)", "ឯកសារ (CSV ឬ XLSX)")) }
                input type="file" name="file" required accept=".csv,.xlsx,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"; }
            button type="submit" { (lang.t("Upload and check", "ផ្ទុកឡើង និងពិនិត្យ")) }
        }
        p { (lang.t("Templates:", "គំរូ៖")) " "
            a href="/imports/templates/cooperatives?format=xlsx" download { (kind_name(lang, Kind::Cooperatives)) " (XLSX)" } " · "
            a href="/imports/templates/members?format=xlsx" download { (kind_name(lang, Kind::Members)) " (XLSX)" } }
        @if list.is_empty() { (layout::empty(lang)) } @else {
            table {
                thead { tr {
                    th scope="col" { (lang.t("Uploaded", "បានផ្ទុកឡើង")) } th scope="col" { (lang.t("File", "ឯកសារ")) }
                    th scope="col" { (lang.t("Holds", "មាន")) } th scope="col" { (lang.t("Status", "ស្ថានភាព")) }
                    th.n scope="col" { (lang.t("Rows", "ជួរ")) } th.n scope="col" { (lang.t("Failed", "បរាជ័យ")) }
                    th.n scope="col" { (lang.t("Created", "បានបង្កើត")) }
                } }
                tbody { @for j in &list { tr {
                    td { a href={ "/imports/" (j.id) } { (lang.datetime(j.created_at)) } }
                    td { (j.file_name.as_deref().unwrap_or("—")) }
                    td { (kind_name(lang, j.kind)) } td { (status_name(lang, j.status)) }
                    td.n { (lang.int(j.report.rows as i64)) } td.n { (lang.int(j.report.failed as i64)) }
                    td.n { (lang.int(j.report.created as i64)) }
                } } }
            }
        }
    };
    Ok(ok(layout::page(
        &user,
        Section::Imports,
        lang.t("Imports", "នាំចូល"),
        None,
        body,
    )))
}

async fn import_page(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let p = user.principal.clone();
    let j = user
        .run(&state, move |conn| jobs::get(conn, &p, &id))
        .await?;
    let r = &j.report;
    let busy = matches!(j.status, JobStatus::Checking | JobStatus::Applying);
    let body = html! {
        p.meta { (kind_name(lang, j.kind)) " · " (j.file_name.as_deref().unwrap_or("—")) " · " (lang.datetime(j.created_at)) " UTC" }
        p.done role="status" { strong { (status_name(lang, j.status)) }
            @if busy { " · " (lang.int(j.processed)) " / " (lang.int(j.total)) " · " a href={ "/imports/" (j.id) } { (lang.t("refresh", "ផ្ទុកឡើងវិញ")) } } }
        section.tiles {
            div.tile { span.big #import-rows { (lang.int(r.rows as i64)) } span { (lang.t("rows read", "ជួរបានអាន")) } }
            div.tile { span.big #import-valid { (lang.int(r.valid as i64)) } span { (lang.t("pass every check", "ឆ្លងការត្រួតពិនិត្យ")) } }
            div.tile { span.big #import-to-create { (lang.int(r.to_create as i64)) } span { (lang.t("to create", "នឹងបង្កើត")) } }
            div.tile { span.big { (lang.int(r.existing as i64)) } span { (lang.t("exist already", "មានរួចហើយ")) } }
            div.tile { span.big #import-failed { (lang.int(r.failed as i64)) } span { (lang.t("rows with errors", "ជួរមានកំហុស")) } }
            div.tile { span.big { (lang.int(r.created as i64)) } span { (lang.t("created", "បានបង្កើត")) } }
        }
        @if matches!(j.status, JobStatus::Checked | JobStatus::Interrupted) {
            form method="post" action={ "/imports/" (j.id) "/apply" } {
                (csrf(&user))
                button type="submit" data-confirm=(lang.t("Create the records now? Rows with errors are left out.", "បង្កើតកំណត់ត្រាឥឡូវនេះ?")) {
                    (lang.t("Apply: create the records", "អនុវត្ត៖ បង្កើតកំណត់ត្រា")) }
            }
        }
        @if !r.ignored_columns.is_empty() {
            p { (lang.t("Columns not imported (ignored):", "ជួរឈរមិនត្រូវបាននាំចូល៖")) " " (r.ignored_columns.join(", ")) }
        }
        @if !r.errors.is_empty() {
            h2 { (lang.t("Rows with errors", "ជួរមានកំហុស")) }
            table #import-errors {
                thead { tr { th.n scope="col" { (lang.t("Line", "ជួរ")) } th scope="col" { (lang.t("Column", "ជួរឈរ")) }
                             th scope="col" { (lang.t("Problem", "បញ្ហា")) } } }
                tbody { @for e in &r.errors { tr {
                    td.n { (lang.int(e.line as i64)) } td { (e.column.as_deref().unwrap_or("")) }
                    td { (e.message) " (" code { (e.code) } ")" }
                } } }
            }
        }
        @if !r.possible_duplicates.is_empty() {
            h2 { (lang.t("Possible duplicates", "ឈ្មោះស្ទួនដែលអាចមាន")) }
            table {
                thead { tr { th.n scope="col" { (lang.t("Line", "ជួរ")) } th scope="col" { (lang.t("Looks like", "ដូចនឹង")) }
                             th scope="col" { (lang.t("Why", "ហេតុអ្វី")) } } }
                tbody { @for d in &r.possible_duplicates { tr {
                    td.n { (lang.int(d.line as i64)) } td { code { (d.like) } } td { (d.reason) }
                } } }
            }
        }
        p { a href="/imports" { (lang.t("← All imports", "← ការនាំចូលទាំងអស់")) } }
    };
    let mut page = ok(layout::page(
        &user,
        Section::Imports,
        lang.t("Import", "នាំចូល"),
        None,
        body,
    ));
    if busy {
        // A dry run or an apply still running: the page reloads itself every 2 s until it
        // is done, so an admin watching it sees the result without clicking "refresh".
        page.headers_mut()
            .insert(header::REFRESH, header::HeaderValue::from_static("2"));
    }
    Ok(page)
}

/// One part of a `multipart/form-data` body: its name, file name and bytes.
struct Part<'a> {
    name: String,
    file_name: Option<String>,
    data: &'a [u8],
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The parts of a `multipart/form-data` body (RFC 7578), enough for a browser's form: a
/// part's `Content-Disposition` name and filename, and its bytes as sent.
fn parts<'a>(body: &'a [u8], boundary: &str) -> Vec<Part<'a>> {
    let delimiter = format!("--{boundary}");
    let mut out = Vec::new();
    let Some(mut at) = find(body, delimiter.as_bytes(), 0) else {
        return out;
    };
    loop {
        let start = at + delimiter.len();
        if body.get(start..start + 2) == Some(b"--") {
            break;
        }
        let Some(head_end) = find(body, b"\r\n\r\n", start) else {
            break;
        };
        let Some(next) = find(body, format!("\r\n{delimiter}").as_bytes(), head_end) else {
            break;
        };
        let head = String::from_utf8_lossy(&body[start..head_end]);
        let param = |key: &str| {
            let needle = format!("{key}=\"");
            head.find(&needle).and_then(|i| {
                let rest = &head[i + needle.len()..];
                rest.find('"').map(|j| rest[..j].to_string())
            })
        };
        if let Some(name) = param(" name") {
            out.push(Part {
                name,
                file_name: param("filename"),
                data: &body[head_end + 4..next],
            });
        }
        at = next + 2;
    }
    out
}

async fn upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: WebUser,
    mut payload: web::Payload,
) -> Result<HttpResponse, WebError> {
    let boundary = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.starts_with("multipart/form-data"))
        .and_then(|v| v.split("boundary=").nth(1))
        .map(|b| b.trim_matches('"').to_string())
        .ok_or_else(|| {
            user.fail(ApiError::bad_request(
                "invalid_form",
                "the upload must be a multipart/form-data form",
            ))
        })?;
    user.principal
        .require_national_admin()
        .map_err(|e| user.fail(e))?;
    let _slot = state
        .uploads
        .take(&user.principal.user_id, &user.principal.device_id)
        .await
        .map_err(|e| user.fail(e))?;
    // The form's other fields are a few hundred bytes on top of the file.
    let limit = state.settings.import_file_limit + 64 * 1024;
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            user.fail(ApiError::bad_request(
                "unreadable_body",
                "the upload broke off",
            ))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(user.fail(ApiError::PayloadTooLarge { limit }));
        }
        body.extend_from_slice(&chunk);
    }
    let parts = parts(&body, &boundary);
    let text = |n: &str| {
        parts
            .iter()
            .find(|p| p.name == n)
            .map(|p| String::from_utf8_lossy(p.data).into_owned())
            .unwrap_or_default()
    };
    user.check_csrf(&text("_csrf"))?;
    let kind = Kind::parse(&text("kind")).ok_or_else(|| {
        user.fail(ApiError::validation(
            "kind",
            "invalid",
            "choose cooperatives or members",
        ))
    })?;
    let file = parts
        .iter()
        .find(|p| p.name == "file")
        .ok_or_else(|| user.fail(ApiError::validation("file", "required", "choose a file")))?;
    let name = file
        .file_name
        .clone()
        .map(|n| n.chars().take(200).collect());
    let data = file.data.to_vec();
    drop(body);
    let (db, p) = (state.db.clone(), user.principal.clone());
    let job = web::block(move || jobs::start(&db, &p, kind, name, data))
        .await
        .map_err(|e| user.fail(e.into()))?
        .map_err(|e| user.fail(e))?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/imports/{}", job.id)))
        .finish())
}

async fn apply(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<super::CsrfOnly>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    let (db, actor, p) = (
        state.db.clone(),
        state.server_actor.clone(),
        user.principal.clone(),
    );
    let id = id.into_inner();
    let to = format!("/imports/{id}");
    web::block(move || jobs::apply(&db, &actor, &p, &id))
        .await
        .map_err(|e| user.fail(e.into()))?
        .map_err(|e| user.fail(e))?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish())
}

async fn template(user: WebUser, kind: web::Path<String>) -> Result<HttpResponse, WebError> {
    let kind = Kind::parse(&kind).ok_or_else(|| user.fail(ApiError::NotFound("import kind")))?;
    let name = format!("{}-template", kind.as_str());
    Ok(crate::api::download::stream(
        &name,
        Format::Xlsx,
        move |out| import::template(kind, Format::Xlsx, out),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browsers_multipart_form_is_read() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\ntok\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"reg.csv\"\r\n\
Content-Type: text/csv\r\n\r\na,b\r\n1,2\r\n\r\n--XyZ--\r\n";
        let p = parts(body, "XyZ");
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].name.as_str(), p[0].data), ("_csrf", &b"tok"[..]));
        assert_eq!(p[1].file_name.as_deref(), Some("reg.csv"));
        assert_eq!(p[1].data, b"a,b\r\n1,2\r\n");
        assert!(parts(b"garbage", "XyZ").is_empty());
    }
}
