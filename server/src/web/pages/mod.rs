//! The web app's pages and the routes to them; sign-in, sign-out and the language switch
//! live here, each area of the app in its own module.

pub mod accounts;
pub mod dashboard;
pub mod exports;
pub mod imports;
pub mod records;
pub mod review;
pub mod walk_ins;

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, http::header, web};
use maud::html;
use serde::Deserialize;

use super::{
    WebError, error_detail,
    i18n::Lang,
    layout,
    session::{self, WebUser},
};
use crate::{error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(login_page))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/language", web::post().to(language))
        .configure(dashboard::configure)
        .configure(review::configure)
        .configure(walk_ins::configure)
        .configure(records::configure)
        .configure(accounts::configure)
        .configure(exports::configure)
        .configure(imports::configure);
}

/// The provinces `principal` sees (`code`, Latin name, Khmer name), for filters.
pub fn provinces(
    conn: &mut crate::db::DbConnection,
    principal: &crate::auth::Principal,
) -> Result<Vec<(String, String, String)>, ApiError> {
    let scope = principal.actor().scope();
    Ok(crate::db::models::Province::all(conn)?
        .into_iter()
        .filter(|p| scope.sees(Some(&p.code), None))
        .map(|p| (p.code, p.name_latin, p.name_khmer))
        .collect())
}

/// A province filter (the provinces the user sees).
pub fn province_select(
    lang: Lang,
    provinces: &[(String, String, String)],
    selected: Option<&str>,
) -> maud::Markup {
    html! {
        label { span { (lang.t("Province", "ខេត្ត")) }
            select name="province" {
                option value="" { (lang.t("All my provinces", "ខេត្តទាំងអស់របស់ខ្ញុំ")) }
                @for (code, latin, khmer) in provinces {
                    option value=(code) selected[selected == Some(code.as_str())] {
                        (if lang == Lang::Km && !khmer.is_empty() { khmer } else { latin })
                    }
                }
            }
        }
    }
}

/// Every form's CSRF field (missing counts as wrong: a 403, not a 400).
#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    #[serde(rename = "_csrf", default)]
    pub csrf: String,
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    lang: Option<String>,
}

/// Only a path on this site is a place to go back to after signing in.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/dashboard".into(),
    }
}

fn login_form(
    lang: Lang,
    token: &str,
    next: &str,
    username: &str,
    error: Option<&ApiError>,
) -> maud::Markup {
    let other = lang.other();
    layout::bare(
        lang,
        lang.t("Sign in", "ចូលប្រើ"),
        html! {
            p.lead { (lang.t("Training records of Cambodia's agricultural cooperatives, for DACP's national and provincial admins.",
                              "កំណត់ត្រាបណ្តុះបណ្តាលរបស់សហគមន៍កសិកម្មកម្ពុជា សម្រាប់អ្នកគ្រប់គ្រងថ្នាក់ជាតិ និងថ្នាក់ខេត្តនៃ នាយកដ្ឋានអភិវឌ្ឍន៍សហគមន៍កសិកម្ម។")) }
            @if let Some(e) = error {
                div.error role="alert" {
                    p { strong { (super::error_title(lang, e)) } }
                    (error_detail(e))
                }
            }
            form.stack method="post" action="/login" {
                input type="hidden" name="_csrf" value=(token);
                input type="hidden" name="next" value=(next);
                label { span { (lang.t("Username", "ឈ្មោះអ្នកប្រើ")) }
                    input name="username" autocomplete="username" required autofocus value=(username); }
                label { span { (lang.t("Password", "ពាក្យសម្ងាត់")) }
                    input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { (lang.t("Sign in", "ចូលប្រើ")) }
            }
            p { a href=(layout::url_with("/login", &[("next", Some(next)), ("lang", Some(other.code()))])) lang=(other.code()) { (other.name()) } }
        },
    )
}

async fn login_page(
    req: HttpRequest,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, WebError> {
    let chosen = query.lang.as_deref().and_then(Lang::parse);
    let lang = chosen.unwrap_or_else(|| session::anonymous_lang(&req));
    let token = session::random_token().map_err(|e| WebError::Api(e, lang))?;
    let next = safe_next(query.next.as_deref());
    let mut res = HttpResponse::Ok();
    res.content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .append_header((
            header::SET_COOKIE,
            session::set_cookie(&req, session::LOGIN_CSRF_COOKIE, &token, None),
        ));
    if let Some(l) = chosen {
        res.append_header((
            header::SET_COOKIE,
            session::set_cookie(&req, session::LANG_COOKIE, l.code(), Some(365 * 86400)),
        ));
    }
    Ok(res.body(login_form(lang, &token, &next, "", None).into_string()))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, WebError> {
    let lang = session::anonymous_lang(&req);
    let form = form.into_inner();
    let expected = session::cookie(&req, session::LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::constant_time_eq(form.csrf.as_bytes(), expected.as_bytes())
    {
        return Err(WebError::Csrf(lang));
    }
    let next = safe_next(form.next.as_deref());
    match session::sign_in(&state, &req, &form.username, form.password).await {
        Ok((token, device_id)) => Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, next))
            .append_header((
                header::SET_COOKIE,
                session::set_cookie(&req, session::SESSION_COOKIE, &token, None),
            ))
            .append_header((
                header::SET_COOKIE,
                session::set_cookie(&req, session::BROWSER_COOKIE, &device_id, Some(365 * 86400)),
            ))
            .append_header((
                header::SET_COOKIE,
                session::set_cookie(&req, session::LOGIN_CSRF_COOKIE, "", Some(0)),
            ))
            .finish()),
        Err(e) => {
            // The form again, with what went wrong and the username kept.
            use actix_web::ResponseError;
            let status = e.status_code();
            let mut res = HttpResponse::build(status);
            res.content_type("text/html; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, "no-store"));
            if let ApiError::TooManyLoginAttempts { retry_after_secs } = &e {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            let page = login_form(lang, &expected, &next, form.username.trim(), Some(&e));
            Ok(res.body(page.into_string()))
        }
    }
}

async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: WebUser,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    session::sign_out(&state, &user)
        .await
        .map_err(|e| user.fail(e))?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/login"))
        .append_header((
            header::SET_COOKIE,
            session::set_cookie(&req, session::SESSION_COOKIE, "", Some(0)),
        ))
        .finish())
}

#[derive(Debug, Deserialize)]
pub struct LanguageForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    lang: String,
}

async fn language(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: WebUser,
    form: web::Form<LanguageForm>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    let lang = Lang::parse(&form.lang).ok_or_else(|| {
        user.fail(ApiError::bad_request(
            "invalid_form",
            "lang must be en or km",
        ))
    })?;
    let uid = user.principal.user_id.clone();
    user.run(&state, move |conn| session::set_language(conn, &uid, lang))
        .await?;
    // Back to the page the switch was on (same site only).
    let back = req
        .headers()
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| {
            let host = req.connection_info().host().to_string();
            r.split_once(&host).map(|(_, path)| path.to_string())
        });
    Ok(HttpResponse::build(StatusCode::SEE_OTHER)
        .insert_header((header::LOCATION, safe_next(back.as_deref())))
        .append_header((
            header::SET_COOKIE,
            session::set_cookie(&req, session::LANG_COOKIE, lang.code(), Some(365 * 86400)),
        ))
        .finish())
}
