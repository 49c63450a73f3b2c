//! Registry imports for national admins: upload a file (its dry run starts at once),
//! read the report, apply it; a template to fill in.

use actix_web::{HttpResponse, get, post, web};
use futures_util::StreamExt as _;
use serde::Deserialize;

use crate::{
    api::download,
    auth::Principal,
    error::{ApiError, ErrorBody},
    import::{
        self, Kind,
        jobs::{self, Job},
    },
    state::AppState,
    tabular::Format,
};

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name, shown in the job list.
    pub file_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TemplateQuery {
    /// `xlsx` (default) or `csv`.
    pub format: Option<String>,
}

fn kind_of(raw: &str) -> Result<Kind, ApiError> {
    Kind::parse(raw).ok_or(ApiError::NotFound("import kind"))
}

/// Upload a registry file (CSV UTF-8 or XLSX, as the body; at most `import_file_limit`,
/// 32 MiB by default) of
/// `cooperatives` or `members`. Answers `202` with the job, whose dry run (every row
/// checked, nothing created) runs at once: poll `GET /api/v1/imports/{id}` until its
/// status is `checked`, read its report, then apply. Columns: docs/admin-guide.md.
#[utoipa::path(post, path = "/api/v1/imports/{kind}", tag = "imports",
    params(("kind" = String, Path, description = "cooperatives or members"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "the file: CSV (UTF-8) or XLSX"),
    security(("bearer" = [])),
    responses((status = 202, body = Job),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
#[post("/imports/{kind}")]
pub async fn upload_import(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
    query: web::Query<UploadQuery>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    principal.require_national_admin()?;
    let kind = kind_of(&path)?;
    let _slot = state
        .uploads
        .take(&principal.user_id, &principal.device_id)
        .await?;
    let mut file = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_request("unreadable_body", "the upload broke off"))?;
        let limit = state.settings.import_file_limit;
        if file.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        file.extend_from_slice(&chunk);
    }
    let name = query
        .file_name
        .clone()
        .map(|n| n.chars().take(200).collect());
    let db = state.db.clone();
    let job = web::block(move || jobs::start(&db, &principal, kind, name, file)).await??;
    Ok(HttpResponse::Accepted().json(job))
}

/// The latest 50 imports, newest first.
#[utoipa::path(get, path = "/api/v1/imports", tag = "imports",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<Job>),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[get("/imports")]
pub async fn list_imports(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<web::Json<Vec<Job>>, ApiError> {
    principal.require_national_admin()?;
    Ok(web::Json(
        state
            .db
            .run(move |conn| jobs::list(conn, &principal))
            .await?,
    ))
}

/// One import: status, progress (`processed` of `total`) and the row report.
#[utoipa::path(get, path = "/api/v1/imports/{id}", tag = "imports",
    params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Job),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
#[get("/imports/{id}")]
pub async fn get_import(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
) -> Result<web::Json<Job>, ApiError> {
    principal.require_national_admin()?;
    let id = path.into_inner();
    Ok(web::Json(
        state
            .db
            .run(move |conn| jobs::get(conn, &principal, &id))
            .await?,
    ))
}

/// Apply a checked import: its file is checked again and every valid row that is not
/// yet a record is created as a server change (tablets pull them). Answers `202`; poll
/// the job for progress. Applying again creates nothing new. `409 import_not_ready`
/// while it is checking or applying, or if the file could not be read.
#[utoipa::path(post, path = "/api/v1/imports/{id}/apply", tag = "imports",
    params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 202, body = Job),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/imports/{id}/apply")]
pub async fn apply_import(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_national_admin()?;
    let id = path.into_inner();
    let (db, actor) = (state.db.clone(), state.server_actor.clone());
    let job = web::block(move || jobs::apply(&db, &actor, &principal, &id)).await??;
    Ok(HttpResponse::Accepted().json(job))
}

/// A template to fill in: the header (`Khmer label (key)`) and an example row.
#[utoipa::path(get, path = "/api/v1/imports/templates/{kind}", tag = "imports",
    params(("kind" = String, Path, description = "cooperatives or members"), TemplateQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "the template",
                content((Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
                    (String = "text/csv"))),
              (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
#[get("/imports/templates/{kind}")]
pub async fn import_template(
    principal: Principal,
    path: web::Path<String>,
    query: web::Query<TemplateQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let kind = kind_of(&path)?;
    let format = match query.format.as_deref() {
        None | Some("") => Format::Xlsx,
        Some(f) => Format::parse(f)
            .ok_or_else(|| ApiError::bad_request("invalid_query", "format must be xlsx or csv"))?,
    };
    let name = format!("{}-template", kind.as_str());
    Ok(download::stream(&name, format, move |out| {
        import::template(kind, format, out)
    }))
}
