//! Accounts and devices as pages: the users an admin manages (create, deactivate or
//! reactivate, reset a password) and their devices (revoke a lost tablet), through the
//! `accounts` service and the password policy and hasher the API uses.

use actix_web::{HttpResponse, web};
use maud::html;
use serde::Deserialize;

use super::{CsrfOnly, provinces};
use crate::{
    accounts::{self, AssignmentsRequest, CreateUserRequest, UpdateUserRequest},
    auth::password,
    domain::access::Role,
    error::ApiError,
    state::AppState,
    web::{
        WebError,
        i18n::Lang,
        layout::{self, Section, csrf, url_with},
        ok,
        pages::review::short,
        session::WebUser,
    },
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/accounts", web::get().to(account_list))
        .route("/accounts", web::post().to(account_create))
        .route("/accounts/{id}", web::get().to(account_page))
        .route(
            "/accounts/{id}/assignments",
            web::post().to(account_assignments),
        )
        .route("/accounts/{id}/active", web::post().to(account_active))
        .route("/accounts/{id}/password", web::post().to(account_password))
        .route("/devices", web::get().to(device_list))
        .route("/devices/{id}/revoke", web::post().to(device_revoke));
}

fn done_message(lang: Lang, code: &str) -> Option<&'static str> {
    Some(match code {
        "created" => lang.t(
            "Account created: the person can sign in on a tablet with this username and password.",
            "បានបង្កើតគណនី៖ អ្នកនោះអាចចូលប្រើលើថេប្លេតបាន។",
        ),
        "deactivated" => lang.t(
            "Account deactivated: its tablets are signed out at once.",
            "បានបិទគណនី៖ ថេប្លេតរបស់វាត្រូវបានចាកចេញភ្លាម។",
        ),
        "activated" => lang.t("Account active again.", "គណនីដំណើរការវិញ។"),
        "password" => lang.t(
            "Password reset: the person signs in with the new one.",
            "បានកំណត់ពាក្យសម្ងាត់ថ្មី។",
        ),
        "assigned" => lang.t(
            "Assignments saved: the account's tablets get the new provinces' records at their next sync.",
            "បានរក្សាទុកការចាត់តាំង៖ ថេប្លេតនឹងទទួលកំណត់ត្រានៃខេត្តថ្មីនៅពេលធ្វើសមកាលកម្មបន្ទាប់។",
        ),
        "revoked" => lang.t(
            "Device revoked: its next sync is refused and it cannot sign in again.",
            "បានដកសិទ្ធិឧបករណ៍៖ ការធ្វើសមកាលកម្មបន្ទាប់របស់វានឹងត្រូវបដិសេធ។",
        ),
        _ => return None,
    })
}

/// A province's name in the page's language, from the provinces the admin sees (its code
/// when it is not among them).
fn province_name(lang: Lang, provs: &[(String, String, String)], code: &str) -> String {
    provs
        .iter()
        .find(|(c, _, _)| c == code)
        .map(|(_, latin, khmer)| {
            if lang == Lang::Km {
                khmer.clone()
            } else {
                latin.clone()
            }
        })
        .unwrap_or_else(|| code.to_string())
}

pub fn role_name(lang: Lang, role: Role) -> &'static str {
    match role {
        Role::Enumerator => lang.t("Enumerator", "អ្នកប្រមូលទិន្នន័យ"),
        Role::ProvincialAdmin => lang.t("Provincial admin", "អ្នកគ្រប់គ្រងថ្នាក់ខេត្ត"),
        Role::NationalAdmin => lang.t("National admin", "អ្នកគ្រប់គ្រងថ្នាក់ជាតិ"),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Paged {
    cursor: Option<String>,
    page: Option<usize>,
    done: Option<String>,
}

async fn account_list(
    state: web::Data<AppState>,
    user: WebUser,
    query: web::Query<Paged>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let q = query.into_inner();
    let (actor, cursor) = (user.principal.actor(), q.cursor.clone());
    let p = user.principal.clone();
    let ((views, next), provs) = user
        .run(&state, move |conn| {
            Ok((
                accounts::list_users(conn, &actor, cursor, 50)?,
                provinces(conn, &p)?,
            ))
        })
        .await?;
    let national = user.principal.role == Role::NationalAdmin;
    let body = html! {
        section {
            h2 { (lang.t("New account", "គណនីថ្មី")) }
            form.grid method="post" action="/accounts" {
                (csrf(&user))
                label { span { (lang.t("Username", "ឈ្មោះអ្នកប្រើ")) } input name="username" required pattern="[a-z0-9._-]{3,64}" autocomplete="off"; small { (lang.t("3–64 lowercase letters, digits, . _ -", "អក្សរតូច លេខ . _ - ពី ៣ ដល់ ៦៤")) } }
                label { span { (lang.t("Full name", "ឈ្មោះពេញ")) } input name="full_name" maxlength="200"; }
                label { span { (lang.t("Password", "ពាក្យសម្ងាត់")) } input name="password" type="password" required minlength="10" autocomplete="new-password"; small { (lang.t("At least 10 characters", "យ៉ាងហោចណាស់ ១០ តួ")) } }
                label { span { (lang.t("Role", "តួនាទី")) }
                    select name="role" {
                        option value="enumerator" { (role_name(lang, Role::Enumerator)) }
                        option value="provincial_admin" { (role_name(lang, Role::ProvincialAdmin)) }
                        @if national { option value="national_admin" { (role_name(lang, Role::NationalAdmin)) } }
                    }
                }
                fieldset {
                    legend { (lang.t("Provinces", "ខេត្ត")) }
                    @for (code, latin, khmer) in &provs {
                        label.check { input type="checkbox" name="provinces" value=(code) checked[provs.len() == 1]; " " (if lang == Lang::Km { khmer } else { latin }) }
                    }
                }
                button type="submit" { (lang.t("Create account", "បង្កើតគណនី")) }
            }
        }
        section {
            h2 { (lang.t("Accounts you manage", "គណនីដែលអ្នកគ្រប់គ្រង")) }
            table {
                thead { tr {
                    th scope="col" { (lang.t("Username", "ឈ្មោះអ្នកប្រើ")) } th scope="col" { (lang.t("Name", "ឈ្មោះ")) }
                    th scope="col" { (lang.t("Role", "តួនាទី")) } th scope="col" { (lang.t("Provinces", "ខេត្ត")) }
                    th scope="col" { (lang.t("Status", "ស្ថានភាព")) } th scope="col" { (lang.t("Actions", "សកម្មភាព")) }
                } }
                tbody { @for v in &views { tr id={ "user-" (v.user.username) } {
                    td { a href={ "/accounts/" (v.user.id) } { (v.user.username) } } td { (v.user.full_name.as_deref().unwrap_or("")) }
                    td { (role_name(lang, v.role)) }
                    td { (v.assignments.provinces.iter().map(|c| province_name(lang, &provs, c)).collect::<Vec<_>>().join(", ")) }
                    td { @if v.user.active { (lang.t("active", "សកម្ម")) } @else { span.tag { (lang.t("deactivated", "បានបិទ")) } } }
                    td { @if v.user.id != user.principal.user_id {
                        form.inline method="post" action={ "/accounts/" (v.user.id) "/active" } {
                            (csrf(&user))
                            input type="hidden" name="active" value=(if v.user.active { "false" } else { "true" });
                            button.secondary type="submit" { @if v.user.active { (lang.t("Deactivate", "បិទ")) } @else { (lang.t("Reactivate", "បើកវិញ")) } }
                        }
                        form.inline method="post" action={ "/accounts/" (v.user.id) "/password" } {
                            (csrf(&user))
                            label { span.sr { (lang.t("New password for", "ពាក្យសម្ងាត់ថ្មីសម្រាប់")) " " (v.user.username) }
                                input name="password" type="password" minlength="10" required autocomplete="new-password" placeholder=(lang.t("new password", "ពាក្យសម្ងាត់ថ្មី")); }
                            button.secondary type="submit" { (lang.t("Reset password", "កំណត់ពាក្យសម្ងាត់ថ្មី")) }
                        }
                    } }
                } } }
            }
            (layout::pager(lang, "/accounts", q.cursor.as_deref(), next.as_deref()))
        }
    };
    let done = q.done.as_deref().and_then(|d| done_message(lang, d));
    Ok(ok(layout::page(
        &user,
        Section::Accounts,
        lang.t("Accounts", "គណនី"),
        done,
        body,
    )))
}

async fn account_create(
    state: web::Data<AppState>,
    user: WebUser,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    let field = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    user.check_csrf(&field("_csrf"))?;
    let role = Role::parse(&field("role"))
        .ok_or_else(|| user.fail(ApiError::validation("role", "invalid", "choose a role")))?;
    let req = CreateUserRequest {
        username: field("username"),
        password: field("password"),
        role,
        full_name: Some(field("full_name")),
        provinces: form
            .iter()
            .filter(|(k, _)| k == "provinces")
            .map(|(_, v)| v.clone())
            .collect(),
        cooperatives: Vec::new(),
    };
    password::check_policy(&req.password).map_err(|e| user.fail(e))?;
    let hash = state
        .hasher
        .hash(req.password.clone())
        .await
        .map_err(|e| user.fail(e))?;
    let (actor, rid) = (user.principal.actor(), user.principal.request_id.clone());
    user.run(&state, move |conn| {
        accounts::create_user(conn, &actor, &req, &hash, rid.as_deref())
    })
    .await?;
    Ok(crate::web::done("/accounts", "created"))
}

#[derive(Debug, Deserialize)]
pub struct ActiveForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    active: bool,
}

async fn account_active(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<ActiveForm>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    let (actor, rid, active) = (
        user.principal.actor(),
        user.principal.request_id.clone(),
        form.active,
    );
    let req = UpdateUserRequest {
        active: Some(active),
        ..Default::default()
    };
    user.run(&state, move |conn| {
        accounts::update_user(conn, &actor, &id, &req, rid.as_deref())
    })
    .await?;
    Ok(crate::web::done(
        "/accounts",
        if active { "activated" } else { "deactivated" },
    ))
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

async fn account_password(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    let id = id.into_inner();
    let actor = user.principal.actor();
    {
        // Authorize before spending a hash on it, as the API does.
        let (actor, id) = (actor.clone(), id.clone());
        user.run(&state, move |conn| {
            accounts::check_can_reset(conn, &actor, &id)
        })
        .await?;
    }
    password::check_policy(&form.password).map_err(|e| user.fail(e))?;
    let hash = state
        .hasher
        .hash(form.password.clone())
        .await
        .map_err(|e| user.fail(e))?;
    let rid = user.principal.request_id.clone();
    user.run(&state, move |conn| {
        accounts::reset_password(conn, &actor, &id, &hash, rid.as_deref())
    })
    .await?;
    Ok(crate::web::done("/accounts", "password"))
}

const DEVICES_PER_PAGE: usize = 50;

async fn device_list(
    state: web::Data<AppState>,
    user: WebUser,
    query: web::Query<Paged>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let q = query.into_inner();
    let actor = user.principal.actor();
    let (devices, names) = user
        .run(&state, move |conn| {
            let mut devices = accounts::list_devices(conn, &actor)?;
            devices.sort_by_key(|d| std::cmp::Reverse(d.last_seen_at));
            let ids = devices.iter().map(|d| d.user_id.clone()).collect();
            let names = crate::web::pages::review::usernames(conn, ids)?;
            Ok((devices, names))
        })
        .await?;
    let page = q.page.unwrap_or(0);
    let shown: Vec<_> = devices
        .iter()
        .skip(page * DEVICES_PER_PAGE)
        .take(DEVICES_PER_PAGE)
        .collect();
    let more = devices.len() > (page + 1) * DEVICES_PER_PAGE;
    let body = html! {
        p.hint { (lang.t("A lost or stolen tablet: revoke it. Its next sync is refused and it cannot sign in again; what it already sent is kept.",
                         "ថេប្លេតដែលបាត់ ឬត្រូវគេលួច៖ ដកសិទ្ធិវា។ វានឹងមិនអាចធ្វើសមកាលកម្ម ឬចូលប្រើបានទៀតទេ។")) }
        @if shown.is_empty() { (layout::empty(lang)) } @else {
            table {
                thead { tr {
                    th scope="col" { (lang.t("Device", "ឧបករណ៍")) } th scope="col" { (lang.t("User", "អ្នកប្រើ")) }
                    th scope="col" { (lang.t("Last seen", "ឃើញចុងក្រោយ")) } th scope="col" { (lang.t("Status", "ស្ថានភាព")) }
                    th scope="col" { (lang.t("Action", "សកម្មភាព")) }
                } }
                tbody { @for d in &shown { tr id={ "device-" (d.id) } {
                    td { (d.name) " " code { (short(&d.id)) } }
                    td { (names.get(&d.user_id).map(String::as_str).unwrap_or("—")) }
                    td { (lang.datetime(crate::db::utc(d.last_seen_at))) " UTC" }
                    td { @if d.revoked_at.is_some() { span.tag { (lang.t("revoked", "បានដកសិទ្ធិ")) } } @else { (lang.t("active", "សកម្ម")) } }
                    td { @if d.revoked_at.is_none() && d.id != user.principal.device_id {
                        form method="post" action={ "/devices/" (d.id) "/revoke" } {
                            (csrf(&user))
                            button.danger type="submit" data-confirm=(lang.t("Revoke this device? It will not sync again.", "ដកសិទ្ធិឧបករណ៍នេះ?")) { (lang.t("Revoke", "ដកសិទ្ធិ")) }
                        }
                    } }
                } } }
            }
        }
        nav.pager {
            @if page > 0 { a href=(url_with("/devices", &[("page", Some(&(page - 1).to_string()))])) { (lang.t("« Previous page", "« ទំព័រមុន")) } }
            @if more { a rel="next" href=(url_with("/devices", &[("page", Some(&(page + 1).to_string()))])) { (lang.t("Next page »", "ទំព័របន្ទាប់ »")) } }
        }
    };
    let done = q.done.as_deref().and_then(|d| done_message(lang, d));
    Ok(ok(layout::page(
        &user,
        Section::Devices,
        lang.t("Devices", "ឧបករណ៍"),
        done,
        body,
    )))
}

async fn device_revoke(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    let (actor, rid) = (user.principal.actor(), user.principal.request_id.clone());
    user.run(&state, move |conn| {
        accounts::revoke_device(conn, &actor, &id, rid.as_deref())
    })
    .await?;
    Ok(crate::web::done("/devices", "revoked"))
}

async fn account_page(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    query: web::Query<Paged>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let (actor, p) = (user.principal.actor(), user.principal.clone());
    let (v, provs) = user
        .run(&state, move |conn| {
            Ok((accounts::get_user(conn, &actor, &id)?, provinces(conn, &p)?))
        })
        .await?;
    let own = v.user.id == user.principal.user_id;
    let body = html! {
        p.meta { (role_name(lang, v.role)) " · " (v.user.full_name.as_deref().unwrap_or(""))
            " · " @if v.user.active { (lang.t("active", "សកម្ម")) } @else { (lang.t("deactivated", "បានបិទ")) } }
        @if !own && v.role != Role::NationalAdmin {
            section {
                h2 { (lang.t("Provinces", "ខេត្ត")) }
                form.grid method="post" action={ "/accounts/" (v.user.id) "/assignments" } {
                    (csrf(&user))
                    fieldset {
                        legend { (lang.t("Provinces this account works in", "ខេត្តដែលគណនីនេះធ្វើការ")) }
                        @for (code, latin, khmer) in &provs {
                            label.check { input type="checkbox" name="provinces" value=(code) checked[v.assignments.provinces.contains(code)];
                                " " (if lang == Lang::Km { khmer } else { latin }) }
                        }
                    }
                    @for c in &v.assignments.cooperatives { input type="hidden" name="cooperatives" value=(c); }
                    button type="submit" { (lang.t("Save assignments", "រក្សាទុកការចាត់តាំង")) }
                }
                @if !v.assignments.cooperatives.is_empty() {
                    p.hint { (lang.t("Also assigned to cooperatives (kept):", "ក៏ត្រូវបានចាត់តាំងទៅសហគមន៍ (រក្សាទុក)៖")) " "
                        @for c in &v.assignments.cooperatives { a href={ "/records/" (c) } { code { (short(c)) } } " " } }
                }
            }
        }
        p { a href="/accounts" { (lang.t("← All accounts", "← គណនីទាំងអស់")) } }
    };
    let done = query.done.as_deref().and_then(|d| done_message(lang, d));
    Ok(ok(layout::page(
        &user,
        Section::Accounts,
        &v.user.username,
        done,
        body,
    )))
}

async fn account_assignments(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    let all = |k: &str| -> Vec<String> {
        form.iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect()
    };
    user.check_csrf(&all("_csrf").pop().unwrap_or_default())?;
    let req = AssignmentsRequest {
        provinces: all("provinces"),
        cooperatives: all("cooperatives"),
    };
    let (actor, rid, id) = (
        user.principal.actor(),
        user.principal.request_id.clone(),
        id.into_inner(),
    );
    let to = format!("/accounts/{id}");
    user.run(&state, move |conn| {
        accounts::set_assignments(conn, &actor, &id, &req, rid.as_deref())
    })
    .await?;
    Ok(crate::web::done(&to, "assigned"))
}
