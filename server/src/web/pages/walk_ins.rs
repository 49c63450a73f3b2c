//! The walk-ins queue as a page: each person recorded at a session with no member record,
//! as the enumerator typed her, beside the members she may be (one button each to link
//! her), a form to register her as a new member (her fields prefilled from the entry),
//! and undo for a decision. Every action calls the `review::walk_ins` service its API
//! twin calls.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use diesel::prelude::*;
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    CsrfOnly, province_select, provinces,
    review::{
        ListQuery, cooperative_names, done_message, filters, min_score, opt, short, status_select,
    },
};
use crate::{
    db::{DbConnection, schema::cooperatives},
    domain::{matching::Person, status::WalkInStatus},
    error::ApiError,
    records::walk_ins::SessionKeys,
    review::walk_ins::{self, LinkRequest, PromoteRequest, WalkIn, WalkInQuery},
    state::AppState,
    web::{
        WebError,
        i18n::Lang,
        layout::{self, Section, csrf, url_with},
        ok,
        session::WebUser,
    },
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/review/walk-ins", web::get().to(list))
        .route("/review/walk-ins/{id}/link", web::post().to(link))
        .route("/review/walk-ins/{id}/promote", web::post().to(promote))
        .route("/review/walk-ins/{id}/undo", web::post().to(undo));
}

fn sex_name(lang: Lang, s: Option<&str>) -> &'static str {
    match s {
        Some("female") => lang.t("woman", "ស្រី"),
        Some("male") => lang.t("man", "ប្រុស"),
        Some("other") => lang.t("other", "ផ្សេងទៀត"),
        _ => "—",
    }
}

/// Cooperatives of the province of each session with none (to choose the one a new
/// member joins), as `(id, name)`.
fn cooperatives_of(
    conn: &mut DbConnection,
    provinces: Vec<String>,
) -> Result<BTreeMap<String, Vec<(String, String)>>, ApiError> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    if provinces.is_empty() {
        return Ok(out);
    }
    // id, province, Khmer name, Latin name.
    type Row = (String, Option<String>, Option<String>, Option<String>);
    let rows: Vec<Row> = cooperatives::table
        .filter(cooperatives::province_code.eq_any(provinces))
        .select((
            cooperatives::id,
            cooperatives::province_code,
            cooperatives::name_khmer,
            cooperatives::name_latin,
        ))
        .order(cooperatives::name_latin.asc())
        .limit(2_000)
        .load(conn)?;
    for (id, province, km, latin) in rows {
        if let Some(p) = province {
            let name = km.or(latin).unwrap_or_else(|| id.clone());
            out.entry(p).or_default().push((id, name));
        }
    }
    Ok(out)
}

fn card(
    lang: Lang,
    user: &WebUser,
    w: &WalkIn,
    coops: &BTreeMap<String, String>,
    choices: &BTreeMap<String, Vec<(String, String)>>,
    names: &BTreeMap<String, String>,
) -> Markup {
    let name = w.entry.name.as_deref().unwrap_or("—");
    let coop = w
        .session
        .cooperative_id
        .as_ref()
        .map(|c| {
            coops
                .get(c)
                .cloned()
                .unwrap_or_else(|| short(c).to_string())
        })
        .or_else(|| w.session.group_name.clone())
        .unwrap_or_else(|| "—".into());
    let date = w
        .session
        .scheduled_date
        .as_deref()
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map(|d| lang.date(d))
        .unwrap_or_else(|| "—".into());
    let guess = Person::walk_in(
        w.entry.name.as_deref(),
        w.entry.sex.as_deref(),
        w.entry.age,
        w.entry.phone.as_deref(),
        None,
        SessionKeys::new(None, None, w.session.scheduled_date.as_deref()).year,
    );
    let open = w.status == WalkInStatus::Open;
    html! {
        article.card id={ "walk-in-" (w.id) } {
            h2 {
                (name)
                @if w.score > 0 { " " span.score { (lang.t("best match", "ត្រូវគ្នាបំផុត")) " " (lang.int(i64::from(w.score))) } }
            }
            p.meta {
                (sex_name(lang, w.entry.sex.as_deref()))
                @if let Some(age) = w.entry.age { " · " (lang.t("age", "អាយុ")) " " (lang.int(age)) }
                @if let Some(phone) = &w.entry.phone { " · " (phone) }
                " · " (lang.t("session of", "វគ្គថ្ងៃ")) " "
                a href={ "/records/" (layout::encode(&w.session.id)) } { (date) }
                " · " (coop)
            }
            @if !open {
                p {
                    @if w.status == WalkInStatus::Promoted { (lang.t("Registered as a new member:", "បានចុះឈ្មោះជាសមាជិកថ្មី៖")) }
                    @else { (lang.t("Linked to member", "បានភ្ជាប់ទៅសមាជិក")) }
                    " "
                    @if let Some(m) = &w.member_id {
                        a href={ "/records/" (layout::encode(m)) } {
                            @if let Some(n) = names.get(m) { (n) } @else { code { (short(m)) } }
                        }
                    }
                }
                form method="post" action={ "/review/walk-ins/" (w.id) "/undo" } {
                    (csrf(user))
                    button.secondary type="submit" data-confirm=(lang.t("Undo this decision?", "លុបការសម្រេចនេះ?")) { (lang.t("Undo", "លុបវិញ")) }
                }
            } @else {
                @if w.candidates.is_empty() {
                    p.hint { (lang.t("No member of this province looks like this person.", "គ្មានសមាជិកក្នុងខេត្តនេះដែលដូចមនុស្សនេះទេ។")) }
                } @else {
                    table.side {
                        thead { tr {
                            th scope="col" { (lang.t("May be this member", "សមាជិកដែលអាចជា")) }
                            th scope="col" { (lang.t("Sex", "ភេទ")) }
                            th scope="col" { (lang.t("Year of birth", "ឆ្នាំកំណើត")) }
                            th scope="col" { (lang.t("Phone", "លេខទូរស័ព្ទ")) }
                            th scope="col" { (lang.t("Cooperative", "សហគមន៍កសិកម្ម")) }
                            th scope="col" { (lang.t("Why", "មូលហេតុ")) }
                            th scope="col" {}
                        } }
                        tbody {
                            @for c in &w.candidates {
                                tr {
                                    td {
                                        a href={ "/records/" (layout::encode(&c.member.id)) } {
                                            (c.member.full_name_khmer.as_deref().unwrap_or("—"))
                                        }
                                        @if let Some(l) = &c.member.name_latin { br; small { (l) } }
                                    }
                                    td { (sex_name(lang, c.member.sex.as_deref())) }
                                    td { (c.member.year_of_birth.map(|y| lang.digits(&y.to_string())).unwrap_or_else(|| "—".into())) }
                                    td { (c.member.phone.as_deref().unwrap_or("—")) }
                                    td { (c.member.cooperative_id.as_ref().map(|i| coops.get(i).cloned().unwrap_or_else(|| short(i).to_string())).unwrap_or_else(|| "—".into())) }
                                    td { small { (c.explanation) } }
                                    td {
                                        form method="post" action={ "/review/walk-ins/" (w.id) "/link" } {
                                            (csrf(user))
                                            input type="hidden" name="member_id" value=(c.member.id);
                                            button type="submit" { (lang.t("Same person: link", "មនុស្សតែមួយ៖ ភ្ជាប់")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                details {
                    summary { (lang.t("Register as a new member", "ចុះឈ្មោះជាសមាជិកថ្មី")) }
                    form.grid method="post" action={ "/review/walk-ins/" (w.id) "/promote" } {
                        (csrf(user))
                        label { span { (lang.t("Name (Khmer)", "ឈ្មោះ (ខ្មែរ)")) } input name="full_name_khmer" value=[guess.name_khmer.as_deref()] required; }
                        label { span { (lang.t("Name (Latin)", "ឈ្មោះ (ឡាតាំង)")) } input name="name_latin" value=[guess.name_latin.as_deref()]; }
                        (layout::select("sex", lang.t("Sex", "ភេទ"), &[
                            ("female", lang.t("woman", "ស្រី")), ("male", lang.t("man", "ប្រុស")), ("other", lang.t("other", "ផ្សេងទៀត")),
                        ], guess.sex.as_deref()))
                        label { span { (lang.t("Year of birth", "ឆ្នាំកំណើត")) } input type="number" name="year_of_birth" min="1900" max="2100" value=[guess.year_of_birth]; }
                        label { span { (lang.t("Village", "ភូមិ")) } input name="village"; }
                        @if w.session.cooperative_id.is_none() {
                            @let options: Vec<(&str, &str)> = w.session.province_code.as_ref()
                                .and_then(|p| choices.get(p))
                                .map(|v| v.iter().map(|(i, n)| (i.as_str(), n.as_str())).collect())
                                .unwrap_or_default();
                            (layout::select("cooperative_id", lang.t("Cooperative", "សហគមន៍កសិកម្ម"), &options, None))
                        }
                        button type="submit" { (lang.t("Register and link", "ចុះឈ្មោះ និងភ្ជាប់")) }
                    }
                }
            }
        }
    }
}

async fn list(
    state: web::Data<AppState>,
    user: WebUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let q = query.into_inner();
    let min_score = min_score(&user, &q)?;
    let wq = WalkInQuery {
        status: opt(&q.status),
        province: opt(&q.province),
        cooperative: opt(&q.cooperative),
        min_score,
        cursor: opt(&q.cursor),
        limit: Some(20),
    };
    let p = user.principal.clone();
    let (list, provs, coops, (choices, names)) = user
        .run(&state, move |conn| {
            let list = walk_ins::list(conn, &p, &wq)?;
            let ids = list
                .walk_ins
                .iter()
                .flat_map(|w| {
                    std::iter::once(w.session.cooperative_id.clone())
                        .chain(w.candidates.iter().map(|c| c.member.cooperative_id.clone()))
                })
                .flatten()
                .collect();
            let without: Vec<String> = list
                .walk_ins
                .iter()
                .filter(|w| w.session.cooperative_id.is_none())
                .filter_map(|w| w.session.province_code.clone())
                .collect();
            // The members decided walk-ins point at, by name.
            let linked: Vec<&String> = list
                .walk_ins
                .iter()
                .filter_map(|w| w.member_id.as_ref())
                .collect();
            let names: BTreeMap<String, String> = crate::review::duplicates::sides(conn, &linked)?
                .into_iter()
                .filter_map(|(id, m)| m.full_name_khmer.or(m.name_latin).map(|n| (id, n)))
                .collect();
            Ok((
                list,
                provinces(conn, &p)?,
                cooperative_names(conn, ids)?,
                (cooperatives_of(conn, without)?, names),
            ))
        })
        .await?;
    let base = url_with(
        "/review/walk-ins",
        &[
            ("status", q.status.as_deref()),
            ("province", q.province.as_deref()),
            ("min_score", q.min_score.as_deref()),
        ],
    );
    let body = html! {
        p.hint { (lang.t("People recorded at a session who have no member record. Link each to the member they are, or register them as a new member; until then reports count each entry as a person of its own. Likeliest matches first.",
                         "អ្នកដែលបានកត់ត្រាវត្តមាននៅវគ្គបណ្ដុះបណ្ដាល ប៉ុន្តែមិនទាន់មានកំណត់ត្រាសមាជិក។ ភ្ជាប់ម្នាក់ៗទៅសមាជិកដែលត្រូវ ឬចុះឈ្មោះជាសមាជិកថ្មី។")) }
        (filters(lang, "/review/walk-ins", html! {
            (status_select(lang, &[("open", "Open", "មិនទាន់សម្រេច"), ("linked", "Linked", "បានភ្ជាប់"),
                                   ("promoted", "Registered", "បានចុះឈ្មោះ"), ("all", "All", "ទាំងអស់")], q.status.as_deref()))
            (province_select(lang, &provs, q.province.as_deref()))
            label { span { (lang.t("Lowest score", "ពិន្ទុទាបបំផុត")) } input type="number" name="min_score" min="0" max="100" value=[q.min_score.as_deref()]; }
        }))
        @if list.walk_ins.is_empty() { (layout::empty(lang)) }
        @for w in &list.walk_ins { (card(lang, &user, w, &coops, &choices, &names)) }
        (layout::pager(lang, &base, q.cursor.as_deref(), list.next_cursor.as_deref()))
    };
    let done = q.done.as_deref().and_then(|d| done_message(lang, d));
    Ok(ok(layout::page(
        &user,
        Section::WalkIns,
        lang.t("Walk-ins", "អ្នកចូលរួមក្រៅបញ្ជី"),
        done,
        body,
    )))
}

#[derive(Debug, Deserialize)]
pub struct LinkForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    member_id: String,
}

async fn link(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<LinkForm>,
) -> Result<HttpResponse, WebError> {
    let req = LinkRequest {
        member_id: form.member_id.clone(),
    };
    user.act(
        &state,
        &form.csrf,
        "/review/walk-ins",
        "linked",
        move |conn, p, actor| walk_ins::link(conn, actor, p, &id, &req),
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct PromoteForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    full_name_khmer: String,
    #[serde(default)]
    name_latin: String,
    #[serde(default)]
    sex: String,
    #[serde(default)]
    year_of_birth: String,
    #[serde(default)]
    village: String,
    #[serde(default)]
    cooperative_id: String,
}

async fn promote(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<PromoteForm>,
) -> Result<HttpResponse, WebError> {
    let f = form.into_inner();
    let given = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let year_of_birth = match given(&f.year_of_birth) {
        Some(y) => Some(y.parse::<i64>().map_err(|_| {
            user.fail(ApiError::validation(
                "year_of_birth",
                "invalid",
                "the year of birth is a whole number",
            ))
        })?),
        None => None,
    };
    let req = PromoteRequest {
        cooperative_id: given(&f.cooperative_id),
        full_name_khmer: given(&f.full_name_khmer),
        name_latin: given(&f.name_latin),
        sex: given(&f.sex),
        year_of_birth,
        village: given(&f.village),
        role: None,
    };
    user.act(
        &state,
        &f.csrf,
        "/review/walk-ins",
        "promoted",
        move |conn, p, actor| walk_ins::promote(conn, actor, p, &id, &req),
    )
    .await
}

async fn undo(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, WebError> {
    let to = "/review/walk-ins?status=all";
    user.act(&state, &form.csrf, to, "unlinked", move |conn, p, actor| {
        walk_ins::undo(conn, actor, p, &id)
    })
    .await
}
