//! The admin web app: server-rendered pages (maud) over the same services the API calls,
//! served by `coopsync serve` at `/`, with its assets (CSS, a few lines of JS, the Khmer
//! webfont) embedded in the binary. Why this shape: docs/architecture.md, "Web app".

pub mod charts;
pub mod i18n;
pub mod layout;
pub mod pages;
pub mod session;

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{StatusCode, header},
    middleware::Next,
    web,
};
use maud::{Markup, html};

use crate::error::ApiError;
use i18n::Lang;

/// The Content-Security-Policy of every page: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; font-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// What a page request can fail with. The status of an `Api` error is `ApiError`'s own
/// (`error.rs` stays the one map from error to status); this only draws it as a page.
#[derive(Debug)]
pub enum WebError {
    /// No live session: go to the sign-in page, then back to this path.
    SignIn(String),
    /// A form without this session's CSRF token.
    Csrf(Lang),
    Api(ApiError, Lang),
}

impl std::fmt::Display for WebError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebError::SignIn(_) => f.write_str("sign in first"),
            WebError::Csrf(_) => f.write_str("the form's CSRF token is missing or wrong"),
            WebError::Api(e, _) => e.fmt(f),
        }
    }
}

/// The words for an error code on a page; the API's message (English) is shown beneath.
fn error_title(lang: Lang, e: &ApiError) -> &'static str {
    match e.code() {
        "not_found" => lang.t("Not found", "រកមិនឃើញ"),
        "forbidden" => lang.t("Not allowed", "មិនមានសិទ្ធិ"),
        "invalid_credentials" => lang.t("Wrong username or password", "ឈ្មោះអ្នកប្រើ ឬពាក្យសម្ងាត់មិនត្រឹមត្រូវ"),
        "too_many_login_attempts" => lang.t(
            "Too many failed sign-ins; wait and try again",
            "ព្យាយាមចូលខុសច្រើនដងពេក សូមរង់ចាំ",
        ),
        "validation_failed" => lang.t("Check what you typed", "សូមពិនិត្យអ្វីដែលបានវាយបញ្ចូល"),
        "account_disabled" => lang.t("This account is deactivated", "គណនីនេះត្រូវបានបិទ"),
        _ if e.status_code().is_server_error() => {
            lang.t("Something went wrong", "មានបញ្ហាមួយបានកើតឡើង")
        }
        _ => lang.t("This could not be done", "មិនអាចធ្វើបានទេ"),
    }
}

/// An error's explanation: the API's message and, for a validation error, each field.
pub fn error_detail(e: &ApiError) -> Markup {
    html! {
        @if e.status_code().is_server_error() {
            p { "Error code: " code { (e.code()) } }
        } @else {
            p { (e.to_string()) " (" code { (e.code()) } ")" }
            @if let ApiError::Validation(fields) = e {
                ul { @for f in fields { li { code { (f.field) } ": " (f.message) } } }
            }
        }
    }
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebError::SignIn(_) => StatusCode::SEE_OTHER,
            WebError::Csrf(_) => StatusCode::FORBIDDEN,
            WebError::Api(e, _) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (lang, title, body) = match self {
            WebError::SignIn(next) => {
                return HttpResponse::SeeOther()
                    .insert_header((
                        header::LOCATION,
                        layout::url_with("/login", &[("next", Some(next))]),
                    ))
                    .finish();
            }
            WebError::Csrf(lang) => (
                *lang,
                lang.t("This form has expired", "ទម្រង់នេះផុតកំណត់ហើយ"),
                html! { p { (lang.t("Go back, reload the page and try again.", "សូមត្រឡប់ក្រោយ ផ្ទុកទំព័រឡើងវិញ ហើយព្យាយាមម្ដងទៀត។")) " (" code { "csrf_failed" } ")" } },
            ),
            WebError::Api(e, lang) => {
                // Logged once by the API's own mapping (a 500's cause included).
                let _ = e.error_response();
                (*lang, error_title(*lang, e), error_detail(e))
            }
        };
        let page = layout::bare(
            lang,
            title,
            html! {
                (body)
                p { a href="/dashboard" { (lang.t("Back to the dashboard", "ត្រឡប់ទៅផ្ទាំងសង្ខេប")) } }
            },
        );
        html_response(self.status_code(), page)
    }
}

pub fn html_response(status: StatusCode, page: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(page.into_string())
}

pub fn ok(page: Markup) -> HttpResponse {
    html_response(StatusCode::OK, page)
}

/// After an action: back to `to` (303, so a reload does not post again) with the
/// message of what was done.
pub fn done(to: &str, what: &str) -> HttpResponse {
    let join = if to.contains('?') { '&' } else { '?' };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("{to}{join}done={what}")))
        .finish()
}

/// Adds the security headers to every response that is not the API's or the sync
/// protocol's (pages, assets, redirects and the fallback alike).
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let api = req.path().starts_with("/api/");
    let mut res = next.call(req).await?;
    if !api {
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static(CSP),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            header::HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            header::HeaderValue::from_static("same-origin"),
        );
        h.insert(
            header::X_FRAME_OPTIONS,
            header::HeaderValue::from_static("DENY"),
        );
    }
    Ok(res)
}

/// The embedded assets: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/app.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../assets/icon.svg"),
    ),
    (
        "noto-sans-khmer-400.woff2",
        "font/woff2",
        include_bytes!("../../assets/fonts/noto-sans-khmer-khmer-400-normal.woff2"),
    ),
    (
        "noto-sans-khmer-700.woff2",
        "font/woff2",
        include_bytes!("../../assets/fonts/noto-sans-khmer-khmer-700-normal.woff2"),
    ),
    (
        "OFL.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/fonts/OFL.txt"),
    ),
];

async fn asset(name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(n, _, _)| *n == name.as_str()) {
        Some((_, kind, bytes)) => HttpResponse::Ok()
            .content_type(*kind)
            // URLs carry the version, so a long life is safe.
            .insert_header((header::CACHE_CONTROL, "public, max-age=604800, immutable"))
            .body(*bytes),
        None => crate::error::envelope(StatusCode::NOT_FOUND, "not_found", "no such asset"),
    }
}

/// `/` : the dashboard when signed in, else the sign-in page.
async fn root(req: HttpRequest) -> HttpResponse {
    let to = if session::cookie(&req, session::SESSION_COOKIE).is_some() {
        "/dashboard"
    } else {
        "/login"
    };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

/// The web app's routes (none under `/api/`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::FormConfig::default()
            .limit(64 * 1024)
            .error_handler(|err, req| {
                let lang = session::anonymous_lang(req);
                WebError::Api(
                    ApiError::bad_request("invalid_form", format!("the form is not valid: {err}")),
                    lang,
                )
                .into()
            }),
    )
    .route("/", web::get().to(root))
    .route("/assets/{name}", web::get().to(asset))
    .configure(pages::configure);
}
