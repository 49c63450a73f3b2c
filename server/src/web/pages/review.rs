//! The review queues as pages: conflicts (values side by side, one click or a typed
//! value), duplicates (both people side by side, a merge form), validation flags,
//! quarantined changes (release or dismiss) and changes waiting for others. Every action
//! calls the `review::*` service its API twin calls, in a write transaction, and returns
//! to the queue saying what it did.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use diesel::prelude::*;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value as Json;

use super::{CsrfOnly, province_select, provinces};
use crate::{
    db::{DbConnection, schema::users, write_transaction},
    error::ApiError,
    review::{
        conflicts::{self, ConflictQuery, ResolveRequest},
        duplicates::{self, DuplicateQuery, MergeRequest, NotSameRequest},
        flags::{self, AcceptRequest, CorrectRequest, FlagQuery},
        pending,
        quarantine::{self, DismissRequest, QuarantineQuery},
    },
    state::AppState,
    web::{
        WebError,
        i18n::Lang,
        layout::{self, Section, csrf, url_with, value_text},
        ok,
        session::WebUser,
    },
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/review/conflicts", web::get().to(conflict_list))
        .route(
            "/review/conflicts/{id}/resolve",
            web::post().to(conflict_resolve),
        )
        .route("/review/duplicates", web::get().to(duplicate_list))
        .route("/review/duplicates/{id}", web::get().to(duplicate_page))
        .route(
            "/review/duplicates/{id}/merge",
            web::post().to(duplicate_merge),
        )
        .route(
            "/review/duplicates/{id}/not-same",
            web::post().to(duplicate_not_same),
        )
        .route("/review/merges/{id}/undo", web::post().to(merge_undo))
        .route("/review/flags", web::get().to(flag_list))
        .route("/review/flags/{id}/accept", web::post().to(flag_accept))
        .route("/review/flags/{id}/correct", web::post().to(flag_correct))
        .route("/review/quarantine", web::get().to(quarantine_list))
        .route(
            "/review/quarantine/{id}/release",
            web::post().to(quarantine_release),
        )
        .route(
            "/review/quarantine/{id}/dismiss",
            web::post().to(quarantine_dismiss),
        )
        .route("/review/waiting", web::get().to(waiting));
}

/// The message an action leaves on the page it returns to.
pub fn done_message(lang: Lang, code: &str) -> Option<&'static str> {
    Some(match code {
        "resolved" => lang.t(
            "Conflict resolved: the chosen value is a change every tablet will pull.",
            "បានដោះស្រាយ៖ តម្លៃដែលបានជ្រើសរើសនឹងទៅដល់ថេប្លេតទាំងអស់។",
        ),
        "merged" => lang.t(
            "Merged: the duplicate now points to the record kept; tablets will pull the change.",
            "បានបញ្ចូលគ្នា៖ កំណត់ត្រាស្ទួនចង្អុលទៅកំណត់ត្រាដែលបានរក្សាទុក។",
        ),
        "not_same" => lang.t(
            "Marked as two different people; the pair will not be proposed again unless one of them changes.",
            "បានកំណត់ថាជាមនុស្សពីរនាក់ផ្សេងគ្នា។",
        ),
        "unmerged" => lang.t(
            "Merge undone: both people are restored and the pair is open again.",
            "បានលុបការបញ្ចូលគ្នា៖ មនុស្សទាំងពីរត្រូវបានស្ដារឡើងវិញ។",
        ),
        "accepted" => lang.t(
            "Flag accepted: the value stays as it is, with your note.",
            "បានទទួលយក៖ តម្លៃនៅដដែល ជាមួយកំណត់សម្គាល់របស់អ្នក។",
        ),
        "corrected" => lang.t(
            "Value corrected: the correction is a change every tablet will pull.",
            "បានកែតម្រូវ៖ ការកែនឹងទៅដល់ថេប្លេតទាំងអស់។",
        ),
        "released" => lang.t(
            "Change released: it passed every check again and was applied (or waits for the changes it depends on).",
            "បានបញ្ចេញ៖ ការផ្លាស់ប្ដូរបានឆ្លងការត្រួតពិនិត្យ ហើយត្រូវបានអនុវត្ត។",
        ),
        "linked" => lang.t(
            "Linked: the attendance now counts for that member; tablets will pull the change.",
            "បានភ្ជាប់៖ វត្តមាននេះរាប់សម្រាប់សមាជិកនោះ។",
        ),
        "promoted" => lang.t(
            "Registered as a new member and linked; tablets will pull both changes.",
            "បានចុះឈ្មោះជាសមាជិកថ្មី ហើយបានភ្ជាប់។",
        ),
        "unlinked" => lang.t(
            "Undone: the attendance entry points at nobody again.",
            "បានលុបការភ្ជាប់៖ វត្តមាននេះលែងភ្ជាប់នឹងសមាជិកណាទៀតហើយ។",
        ),
        "dismissed" => lang.t(
            "Change dismissed: it stays on record with your reason and is never applied.",
            "បានបោះបង់៖ ការផ្លាស់ប្ដូរនៅតែត្រូវបានរក្សាទុក ប៉ុន្តែមិនត្រូវបានអនុវត្តទេ។",
        ),
        _ => return None,
    })
}

pub fn doc_type_name(lang: Lang, t: &str) -> &'static str {
    match t {
        "member" => lang.t("Member", "សមាជិក"),
        "cooperative" => lang.t("Cooperative", "សហគមន៍កសិកម្ម"),
        "training_session" => lang.t("Training session", "វគ្គបណ្តុះបណ្តាល"),
        _ => lang.t("Record", "កំណត់ត្រា"),
    }
}

/// A field's label (fields of the protocol; others shown as their name). An attendance
/// entry's field reads `Attendance <participant> · Hours`.
/// Whether a conflict's field is an attendance entry itself (recorded on two tablets at
/// once), not one of its fields.
fn is_entry(field: &str) -> bool {
    field
        .strip_prefix("attendance.")
        .is_some_and(|p| !p.contains('.'))
}

/// A conflicting value as a person reads it: an attendance entry as its fields in words
/// (`Hours: 3.5 · Status: partial`), anything else as itself.
fn candidate_text(lang: Lang, v: &Json) -> String {
    match v {
        Json::Object(fields) => fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "recorded_by" | "recorded_at"))
            .map(|(k, v)| format!("{}: {}", field_name(lang, k), value_text(v)))
            .collect::<Vec<_>>()
            .join(" · "),
        other => value_text(other),
    }
}

pub fn field_name(lang: Lang, f: &str) -> String {
    if let Some(rest) = f.strip_prefix("attendance.") {
        let (participant, field) = rest.rsplit_once('.').unwrap_or((rest, ""));
        let who = format!("{} {}", lang.t("Attendance", "វត្តមាន"), short(participant));
        return if field.is_empty() {
            who
        } else {
            format!("{who} · {}", field_name(lang, field))
        };
    }
    let label = match f {
        "full_name_khmer" => lang.t("Name (Khmer)", "ឈ្មោះ (ខ្មែរ)"),
        "name_latin" => lang.t("Name (Latin)", "ឈ្មោះ (ឡាតាំង)"),
        "name_khmer" => lang.t("Name (Khmer)", "ឈ្មោះ (ខ្មែរ)"),
        "sex" => lang.t("Sex", "ភេទ"),
        "year_of_birth" => lang.t("Year of birth", "ឆ្នាំកំណើត"),
        "phone" => lang.t("Phone", "លេខទូរស័ព្ទ"),
        "village" => lang.t("Village", "ភូមិ"),
        "commune" => lang.t("Commune", "ឃុំ"),
        "district" => lang.t("District", "ស្រុក"),
        "role" => lang.t("Role", "តួនាទី"),
        "joined_date" => lang.t("Joined", "ថ្ងៃចូលជាសមាជិក"),
        "cooperative_id" => lang.t("Cooperative", "សហគមន៍កសិកម្ម"),
        "province_code" => lang.t("Province", "ខេត្ត"),
        "status" => lang.t("Status", "ស្ថានភាព"),
        "hours" => lang.t("Hours", "ម៉ោង"),
        "name" => lang.t("Name", "ឈ្មោះ"),
        "age" => lang.t("Age", "អាយុ"),
        "member_id" => lang.t("Member", "សមាជិក"),
        "planned_hours" => lang.t("Planned hours", "ម៉ោងគ្រោងទុក"),
        "scheduled_date" => lang.t("Date", "កាលបរិច្ឆេទ"),
        "programme" => lang.t("Programme", "កម្មវិធី"),
        "topic" => lang.t("Topic", "ប្រធានបទ"),
        _ => return f.to_string(),
    };
    label.to_string()
}

/// Usernames of `ids` (ids a page shows are people; a name reads better than a UUID).
pub fn usernames(
    conn: &mut DbConnection,
    ids: Vec<String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    Ok(users::table
        .filter(users::id.eq_any(ids))
        .select((users::id, users::username))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect())
}

pub(crate) fn who(names: &BTreeMap<String, String>, id: Option<&str>) -> String {
    match id {
        Some(id) => names.get(id).cloned().unwrap_or_else(|| id.to_string()),
        None => "—".into(),
    }
}

fn record_link(lang: Lang, id: &str, doc_type: &str) -> Markup {
    html! { a href={ "/records/" (layout::encode(id)) } { (doc_type_name(lang, doc_type)) " " code { (short(id)) } } }
}

/// The first 8 characters of an id (the link carries the whole).
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

pub(crate) fn status_select(
    lang: Lang,
    options: &[(&str, &'static str, &'static str)],
    selected: Option<&str>,
) -> Markup {
    let opts: Vec<(&str, &str)> = options
        .iter()
        .map(|(v, en, km)| (*v, lang.t(en, km)))
        .collect();
    layout::select(
        "status",
        lang.t("Status", "ស្ថានភាព"),
        &opts,
        selected.or(Some("open")),
    )
}

pub(crate) fn filters(lang: Lang, action: &str, inner: Markup) -> Markup {
    html! {
        form.filters method="get" action=(action) {
            (inner)
            button type="submit" { (lang.t("Filter", "ច្រោះ")) }
        }
    }
}

/// A typed value from a form: a number where the field's values are numbers, `true` /
/// `false` where they are booleans, empty as `null`, else the text.
fn typed(raw: &str, like: &[&Json]) -> Json {
    let raw = raw.trim();
    if raw.is_empty() {
        return Json::Null;
    }
    if like.iter().any(|v| v.is_number()) {
        if let Ok(n) = raw.parse::<i64>() {
            return Json::from(n);
        }
        if let Some(n) = raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
        {
            return Json::Number(n);
        }
    }
    if like.iter().any(|v| v.is_boolean()) && (raw == "true" || raw == "false") {
        return Json::Bool(raw == "true");
    }
    Json::String(raw.to_string())
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub(crate) status: Option<String>,
    pub(crate) province: Option<String>,
    pub(crate) doc_type: Option<String>,
    pub(crate) cooperative: Option<String>,
    pub(crate) min_score: Option<String>,
    pub(crate) cursor: Option<String>,
    pub(crate) done: Option<String>,
}

/// The lowest-score filter of the ranked queues (duplicates, walk-ins), as typed.
pub(crate) fn min_score(user: &WebUser, q: &ListQuery) -> Result<Option<u32>, WebError> {
    opt(&q.min_score)
        .map(|s| {
            s.parse::<u32>().map_err(|_| {
                user.fail(ApiError::bad_request(
                    "invalid_query",
                    "min_score must be a whole number",
                ))
            })
        })
        .transpose()
}

pub(crate) fn opt(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

fn doc_type_select(lang: Lang, selected: Option<&str>) -> Markup {
    layout::select(
        "doc_type",
        lang.t("Record type", "ប្រភេទកំណត់ត្រា"),
        &[
            ("", lang.t("All", "ទាំងអស់")),
            ("member", doc_type_name(lang, "member")),
            ("cooperative", doc_type_name(lang, "cooperative")),
            ("training_session", doc_type_name(lang, "training_session")),
        ],
        selected,
    )
}

// ---------------------------------------------------------------- conflicts

async fn conflict_list(
    state: web::Data<AppState>,
    user: WebUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let q = query.into_inner();
    let cq = ConflictQuery {
        status: opt(&q.status),
        province: opt(&q.province),
        doc_type: opt(&q.doc_type),
        cursor: opt(&q.cursor),
        ..Default::default()
    };
    let p = user.principal.clone();
    let (list, provs, names) = user
        .run(&state, move |conn| {
            let list = conflicts::list(conn, &p, &cq)?;
            let ids = list
                .conflicts
                .iter()
                .flat_map(|c| c.candidates.iter().filter_map(|v| v.user_id.clone()))
                .collect();
            Ok((list, provinces(conn, &p)?, usernames(conn, ids)?))
        })
        .await?;
    let base = url_with(
        "/review/conflicts",
        &[
            ("status", q.status.as_deref()),
            ("province", q.province.as_deref()),
            ("doc_type", q.doc_type.as_deref()),
        ],
    );
    let body = html! {
        p.hint { (lang.t("Two tablets changed the same field while offline. Every tablet shows the same value for now; choose the right one, or type it.",
                         "ថេប្លេតពីរបានកែវាលតែមួយ ខណៈគ្មានអ៊ីនធឺណិត។ សូមជ្រើសរើសតម្លៃត្រឹមត្រូវ ឬវាយបញ្ចូល។")) }
        (filters(lang, "/review/conflicts", html! {
            (status_select(lang, &[("open", "Open", "មិនទាន់ដោះស្រាយ"), ("resolved", "Resolved", "បានដោះស្រាយ"),
                                   ("superseded", "Superseded", "ត្រូវបានជំនួស"), ("all", "All", "ទាំងអស់")], q.status.as_deref()))
            (province_select(lang, &provs, q.province.as_deref()))
            (doc_type_select(lang, q.doc_type.as_deref()))
        }))
        @if list.conflicts.is_empty() { (layout::empty(lang)) }
        @for c in &list.conflicts {
            article.card id={ "conflict-" (c.id) } {
                h2 { (record_link(lang, &c.document_id, &c.doc_type)) " · " (field_name(lang, &c.field)) }
                p.meta { (lang.t("Detected", "បានរកឃើញ")) " " (lang.datetime(c.detected_at)) " UTC · " (c.status.as_str()) }
                table.side {
                    thead { tr { th scope="col" { (lang.t("Value", "តម្លៃ")) } th scope="col" { (lang.t("Entered by", "បញ្ចូលដោយ")) }
                                 th scope="col" { (lang.t("Received", "បានទទួល")) } th scope="col" { span.sr { (lang.t("Action", "សកម្មភាព")) } } } }
                    tbody {
                        @for (i, v) in c.candidates.iter().enumerate() {
                            tr {
                                td.value { (candidate_text(lang, &v.value)) @if v.value == c.current_value { " " span.tag { (lang.t("shown now", "កំពុងបង្ហាញ")) } } }
                                td { (who(&names, v.user_id.as_deref())) }
                                td { (v.received_at.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                                        .map_or_else(|| "—".to_string(), |t| format!("{} UTC", lang.datetime(t.to_utc())))) }
                                td { @if c.status.as_str() == "open" {
                                    form method="post" action={ "/review/conflicts/" (c.id) "/resolve" } {
                                        (csrf(&user))
                                        input type="hidden" name="choice" value=(i);
                                        button type="submit" { @if is_entry(&c.field) { (lang.t("Keep this entry", "រក្សាទុកកំណត់ត្រានេះ")) } @else { (lang.t("Use this value", "ប្រើតម្លៃនេះ")) } }
                                    }
                                } }
                            }
                        }
                    }
                }
                @if let Some(r) = &c.resolution {
                    p.resolved { (lang.t("Resolved as", "បានដោះស្រាយជា")) " " strong { (candidate_text(lang, &r.value)) } " · " (lang.datetime(r.resolved_at)) " UTC" }
                }
                @if c.status.as_str() == "open" && is_entry(&c.field) {
                    p.hint { (lang.t("The same person's attendance was recorded on two tablets. Keep one of the entries; every tablet then holds that one.",
                                     "វត្តមានរបស់មនុស្សតែមួយត្រូវបានកត់ត្រានៅលើថេប្លេតពីរ។ សូមរក្សាទុកកំណត់ត្រាមួយ។ បន្ទាប់មក ថេប្លេតទាំងអស់នឹងមានកំណត់ត្រានោះ។")) }
                } @else if c.status.as_str() == "open" {
                    form.inline method="post" action={ "/review/conflicts/" (c.id) "/resolve" } {
                        (csrf(&user))
                        label { span { (lang.t("Or type the right value", "ឬវាយបញ្ចូលតម្លៃត្រឹមត្រូវ")) }
                            input name="value" required; }
                        button type="submit" { (lang.t("Save value", "រក្សាទុកតម្លៃ")) }
                    }
                }
            }
        }
        (layout::pager(lang, &base, q.cursor.as_deref(), list.next_cursor.as_deref()))
    };
    let done = q.done.as_deref().and_then(|d| done_message(lang, d));
    Ok(ok(layout::page(
        &user,
        Section::Conflicts,
        lang.t("Conflicts", "ទិន្នន័យផ្ទុយគ្នា"),
        done,
        body,
    )))
}

#[derive(Debug, Deserialize)]
pub struct ResolveForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    choice: Option<usize>,
    value: Option<String>,
}

async fn conflict_resolve(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<ResolveForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    let to = "/review/conflicts";
    user.act(&state, &form.csrf, to, "resolved", move |conn, p, actor| {
        let id = crate::api::v1::numeric_id(&id, "conflict")?;
        let req = match (form.choice, form.value) {
            (Some(choice), _) => ResolveRequest {
                choice: Some(choice),
                value: None,
            },
            (None, Some(raw)) => {
                let c = conflicts::get(conn, p, id)?;
                let like: Vec<&Json> = c.candidates.iter().map(|v| &v.value).collect();
                ResolveRequest {
                    choice: None,
                    value: Some(typed(&raw, &like)),
                }
            }
            (None, None) => {
                return Err(ApiError::validation(
                    "value",
                    "required",
                    "choose a value or type one",
                ));
            }
        };
        conflicts::resolve(conn, actor, p, id, &req)
    })
    .await
}

// ---------------------------------------------------------------- duplicates

/// Names of cooperatives (Khmer where known), for pages that show a cooperative id.
pub fn cooperative_names(
    conn: &mut DbConnection,
    ids: Vec<String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    use crate::db::schema::cooperatives;
    Ok(cooperatives::table
        .filter(cooperatives::id.eq_any(ids))
        .select((
            cooperatives::id,
            cooperatives::name_khmer,
            cooperatives::name_latin,
        ))
        .load::<(String, Option<String>, Option<String>)>(conn)?
        .into_iter()
        .filter_map(|(id, km, latin)| km.or(latin).map(|n| (id, n)))
        .collect())
}

fn side_value(
    side: &duplicates::DuplicateSide,
    field: &str,
    coops: &BTreeMap<String, String>,
) -> String {
    let v = match field {
        "full_name_khmer" => side.full_name_khmer.clone(),
        "name_latin" => side.name_latin.clone(),
        "sex" => side.sex.clone(),
        "year_of_birth" => side.year_of_birth.map(|y| y.to_string()),
        "phone" => side.phone.clone(),
        "village" => side.village.clone(),
        "role" => side.role.clone(),
        "joined_date" => side.joined_date.clone(),
        "cooperative_id" => side
            .cooperative_id
            .as_ref()
            .map(|id| coops.get(id).cloned().unwrap_or_else(|| id.clone())),
        _ => None,
    };
    v.unwrap_or_else(|| "—".into())
}

const SIDE_FIELDS: [&str; 9] = [
    "full_name_khmer",
    "name_latin",
    "sex",
    "year_of_birth",
    "phone",
    "village",
    "cooperative_id",
    "role",
    "joined_date",
];

/// The pair as a card; `keep` (for the decision form) is the side to keep, `a` or `b`.
fn pair_card(
    lang: Lang,
    user: &WebUser,
    c: &duplicates::DuplicateCandidate,
    keep: Option<&str>,
    coops: &BTreeMap<String, String>,
) -> Markup {
    let with_form = keep.is_some();
    let open = c.status.as_str() == "open";
    html! {
        article.card id={ "pair-" (c.id) } {
            h2 {
                a href={ "/review/duplicates/" (c.id) } {
                    (c.a.full_name_khmer.as_deref().or(c.a.name_latin.as_deref()).unwrap_or("—"))
                    " ↔ "
                    (c.b.full_name_khmer.as_deref().or(c.b.name_latin.as_deref()).unwrap_or("—"))
                }
                " " span.score { (lang.t("score", "ពិន្ទុ")) " " (lang.int(i64::from(c.score))) }
            }
            p.meta { (c.explanation) }
            @if with_form && open {
                form method="post" action={ "/review/duplicates/" (c.id) "/merge" } {
                    (csrf(user))
                    input type="hidden" name="survivor" value=(if keep == Some("b") { &c.b.id } else { &c.a.id });
                    (pair_table(lang, c, keep, coops))
                    p.hint { (lang.t("For each field that differs, the kept record's value is chosen; pick the other where it is right. The other record is marked as merged into it; nothing is deleted and the merge can be undone.",
                                     "ជ្រើសរើសកំណត់ត្រាដែលត្រូវរក្សាទុក និងតម្លៃសម្រាប់វាលនីមួយៗដែលខុសគ្នា។ គ្មានអ្វីត្រូវបានលុបទេ ហើយអាចលុបការបញ្ចូលគ្នាវិញបាន។")) }
                    button type="submit" { (lang.t("Merge into one person", "បញ្ចូលជាមនុស្សតែមួយ")) }
                }
                form.inline method="post" action={ "/review/duplicates/" (c.id) "/not-same" } {
                    (csrf(user))
                    label { span { (lang.t("Note (optional)", "កំណត់សម្គាល់ (ស្រេចចិត្ត)")) } input name="note" maxlength="500"; }
                    button.secondary type="submit" { (lang.t("Not the same person", "មិនមែនជាមនុស្សតែមួយ")) }
                }
            } @else {
                (pair_table(lang, c, None, coops))
                @if open {
                    p { a href={ "/review/duplicates/" (c.id) } { (lang.t("Review and decide →", "ពិនិត្យ និងសម្រេច →")) } }
                }
                @if let Some(m) = &c.merge_id {
                    form method="post" action={ "/review/merges/" (m) "/undo" } {
                        (csrf(user))
                        button.secondary type="submit" data-confirm=(lang.t("Undo this merge?", "លុបការបញ្ចូលគ្នានេះ?")) { (lang.t("Undo merge", "លុបការបញ្ចូលគ្នា")) }
                    }
                }
            }
        }
    }
}

/// Both people side by side. With `keep` (`a` or `b`), the decision's choices: which
/// record is kept (a link: the page again keeping the other) and, for each field that
/// differs, which value, the kept record's chosen unless the admin picks the other.
fn pair_table(
    lang: Lang,
    c: &duplicates::DuplicateCandidate,
    keep: Option<&str>,
    coops: &BTreeMap<String, String>,
) -> Markup {
    let form = keep.is_some();
    html! {
        table.side {
            thead { tr {
                th scope="col" { (lang.t("Field", "វាល")) }
                th scope="col" { (lang.t("Record A", "កំណត់ត្រា ក")) " " a href={ "/records/" (c.a.id) } { code { (short(&c.a.id)) } } }
                th scope="col" { (lang.t("Record B", "កំណត់ត្រា ខ")) " " a href={ "/records/" (c.b.id) } { code { (short(&c.b.id)) } } }
            } }
            tbody {
                @if form {
                    tr.keep {
                        th scope="row" { (lang.t("Record kept", "កំណត់ត្រាដែលរក្សាទុក")) }
                        @for (side, key) in [(&c.a, "a"), (&c.b, "b")] {
                            td { @if keep == Some(key) { strong { "✓ " (lang.t("kept", "រក្សាទុក")) } } @else {
                                a.keep-other href={ "/review/duplicates/" (c.id) "?keep=" (side.id) } { (lang.t("keep this one instead", "រក្សាកំណត់ត្រានេះជំនួសវិញ")) }
                            } }
                        }
                    }
                }
                @for f in SIDE_FIELDS {
                    @let differs = c.differing.iter().any(|d| d == f);
                    tr.differs[differs] {
                        th scope="row" { (field_name(lang, f)) }
                        @for (side, key) in [(&c.a, "a"), (&c.b, "b")] {
                            td {
                                @if form && differs {
                                    label { input type="radio" name={ "f_" (f) } value=(key) checked[Some(key) == keep]; " " (side_value(side, f, coops)) }
                                } @else {
                                    (side_value(side, f, coops))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn duplicate_list(
    state: web::Data<AppState>,
    user: WebUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let q = query.into_inner();
    let min_score = min_score(&user, &q)?;
    let dq = DuplicateQuery {
        status: opt(&q.status),
        province: opt(&q.province),
        cooperative: opt(&q.cooperative),
        min_score,
        cursor: opt(&q.cursor),
        limit: Some(20),
    };
    let p = user.principal.clone();
    let (list, provs, coops) = user
        .run(&state, move |conn| {
            let list = duplicates::list(conn, &p, &dq)?;
            let ids = list
                .candidates
                .iter()
                .flat_map(|c| [c.a.cooperative_id.clone(), c.b.cooperative_id.clone()])
                .flatten()
                .collect();
            Ok((list, provinces(conn, &p)?, cooperative_names(conn, ids)?))
        })
        .await?;
    let base = url_with(
        "/review/duplicates",
        &[
            ("status", q.status.as_deref()),
            ("province", q.province.as_deref()),
            ("min_score", q.min_score.as_deref()),
        ],
    );
    let body = html! {
        p.hint { (lang.t("Members who may be the same person, found by name (Khmer or Latin), phone, year of birth, cooperative and village. Highest score first.",
                         "សមាជិកដែលអាចជាមនុស្សតែមួយ រកឃើញតាមឈ្មោះ លេខទូរស័ព្ទ ឆ្នាំកំណើត សហគមន៍ និងភូមិ។ ពិន្ទុខ្ពស់បំផុតមុនគេ។")) }
        (filters(lang, "/review/duplicates", html! {
            (status_select(lang, &[("open", "Open", "មិនទាន់សម្រេច"), ("merged", "Merged", "បានបញ្ចូលគ្នា"),
                                   ("not_same", "Not the same", "មិនមែនតែមួយ"), ("all", "All", "ទាំងអស់")], q.status.as_deref()))
            (province_select(lang, &provs, q.province.as_deref()))
            label { span { (lang.t("Lowest score", "ពិន្ទុទាបបំផុត")) } input type="number" name="min_score" min="0" max="200" value=[q.min_score.as_deref()]; }
        }))
        @if list.candidates.is_empty() { (layout::empty(lang)) }
        @for c in &list.candidates { (pair_card(lang, &user, c, None, &coops)) }
        (layout::pager(lang, &base, q.cursor.as_deref(), list.next_cursor.as_deref()))
    };
    let done = q.done.as_deref().and_then(|d| done_message(lang, d));
    Ok(ok(layout::page(
        &user,
        Section::Duplicates,
        lang.t("Possible duplicates", "ឈ្មោះស្ទួនដែលអាចមាន"),
        done,
        body,
    )))
}

#[derive(Debug, Default, Deserialize)]
pub struct PairQuery {
    /// The id of the record to keep (default: the first of the pair).
    keep: Option<String>,
}

async fn duplicate_page(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    query: web::Query<PairQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let p = user.principal.clone();
    let (c, coops) = user
        .run(&state, move |conn| {
            let c = duplicates::get(conn, &p, &id)?;
            let ids = [c.a.cooperative_id.clone(), c.b.cooperative_id.clone()]
                .into_iter()
                .flatten()
                .collect();
            let names = cooperative_names(conn, ids)?;
            Ok((c, names))
        })
        .await?;
    let keep = if query.keep.as_deref() == Some(c.b.id.as_str()) {
        "b"
    } else {
        "a"
    };
    let body = html! {
        (pair_card(lang, &user, &c, Some(keep), &coops))
        p { a href="/review/duplicates" { (lang.t("← Back to the list", "← ត្រឡប់ទៅបញ្ជី")) } }
    };
    Ok(ok(layout::page(
        &user,
        Section::Duplicates,
        lang.t("Same person?", "មនុស្សតែមួយ?"),
        None,
        body,
    )))
}

async fn duplicate_merge(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    user.check_csrf(&field("_csrf").unwrap_or_default())?;
    let survivor = field("survivor").ok_or_else(|| {
        user.fail(ApiError::validation(
            "survivor",
            "required",
            "choose the record to keep",
        ))
    })?;
    let (app, p, pair_id) = (state.clone(), user.principal.clone(), id.into_inner());
    // A field is taken from the duplicate where the admin chose the side not kept.
    let chosen: Vec<(String, String)> = form
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("f_").map(|f| (f.to_string(), v.clone())))
        .collect();
    user.run(&state, move |conn| {
        let c = duplicates::get(conn, &p, &pair_id)?;
        let survivor_side = if survivor == c.a.id { "a" } else { "b" };
        let take = chosen
            .into_iter()
            .filter(|(_, side)| side != survivor_side)
            .map(|(f, _)| f)
            .collect();
        let req = MergeRequest { survivor, take };
        write_transaction(conn, |conn| {
            duplicates::merge(conn, &app.server_actor, &p, &pair_id, &req)
        })
    })
    .await?;
    Ok(crate::web::done("/review/duplicates", "merged"))
}

#[derive(Debug, Deserialize)]
pub struct NoteForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

async fn duplicate_not_same(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<NoteForm>,
) -> Result<HttpResponse, WebError> {
    let note = Some(form.note.trim().to_string()).filter(|n| !n.is_empty());
    let to = "/review/duplicates";
    user.act(&state, &form.csrf, to, "not_same", move |conn, p, _| {
        duplicates::not_same(conn, p, &id, &NotSameRequest { note })
    })
    .await
}

async fn merge_undo(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, WebError> {
    let to = "/review/duplicates?status=all";
    user.act(&state, &form.csrf, to, "unmerged", move |conn, p, actor| {
        duplicates::undo(conn, actor, p, &id)
    })
    .await
}

// ---------------------------------------------------------------- flags

async fn flag_list(
    state: web::Data<AppState>,
    user: WebUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let q = query.into_inner();
    let fq = FlagQuery {
        status: opt(&q.status),
        province: opt(&q.province),
        doc_type: opt(&q.doc_type),
        cursor: opt(&q.cursor),
        ..Default::default()
    };
    let p = user.principal.clone();
    let (list, provs) = user
        .run(&state, move |conn| {
            Ok((flags::list(conn, &p, &fq)?, provinces(conn, &p)?))
        })
        .await?;
    let base = url_with(
        "/review/flags",
        &[
            ("status", q.status.as_deref()),
            ("province", q.province.as_deref()),
            ("doc_type", q.doc_type.as_deref()),
        ],
    );
    let body = html! {
        p.hint { (lang.t("Values that break a rule (a required field missing, more hours than planned…). Accept a value that is right as it is, or correct it.",
                         "តម្លៃដែលខុសច្បាប់។ ទទួលយកតម្លៃដែលត្រឹមត្រូវ ឬកែវា។")) }
        (filters(lang, "/review/flags", html! {
            (status_select(lang, &[("open", "Open", "មិនទាន់ដោះស្រាយ"), ("accepted", "Accepted", "បានទទួលយក"),
                                   ("fixed", "Fixed", "បានកែ"), ("all", "All", "ទាំងអស់")], q.status.as_deref()))
            (province_select(lang, &provs, q.province.as_deref()))
            (doc_type_select(lang, q.doc_type.as_deref()))
        }))
        @if list.flags.is_empty() { (layout::empty(lang)) }
        @for f in &list.flags {
            article.card id={ "flag-" (f.id) } {
                h2 { (record_link(lang, &f.document_id, &f.doc_type)) " · " (field_name(lang, &f.field)) }
                p { (f.message) " (" code { (f.code) } ")" }
                p.meta { (lang.t("Detected", "បានរកឃើញ")) " " (lang.datetime(f.detected_at)) " UTC · " (f.status.as_str()) }
                @if let Some(note) = &f.note { p.resolved { (lang.t("Note", "កំណត់សម្គាល់")) ": " (note) } }
                @if f.status.as_str() == "open" {
                    form.inline method="post" action={ "/review/flags/" (f.id) "/accept" } {
                        (csrf(&user))
                        label { span { (lang.t("Why the value is right", "ហេតុអ្វីតម្លៃនេះត្រឹមត្រូវ")) } input name="note" required maxlength="500"; }
                        button type="submit" { (lang.t("Accept", "ទទួលយក")) }
                    }
                    form.inline method="post" action={ "/review/flags/" (f.id) "/correct" } {
                        (csrf(&user))
                        label { span { (lang.t("Correct value", "តម្លៃត្រឹមត្រូវ")) } input name="value"; }
                        button.secondary type="submit" { (lang.t("Correct", "កែតម្រូវ")) }
                    }
                }
            }
        }
        (layout::pager(lang, &base, q.cursor.as_deref(), list.next_cursor.as_deref()))
    };
    let done = q.done.as_deref().and_then(|d| done_message(lang, d));
    Ok(ok(layout::page(
        &user,
        Section::Flags,
        lang.t("Validation flags", "ការព្រមាន"),
        done,
        body,
    )))
}

async fn flag_accept(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<NoteForm>,
) -> Result<HttpResponse, WebError> {
    let note = form.note.clone();
    user.act(
        &state,
        &form.csrf,
        "/review/flags",
        "accepted",
        move |conn, p, _| {
            let id = crate::api::v1::numeric_id(&id, "flag")?;
            flags::accept(conn, p, id, &AcceptRequest { note })
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct ValueForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    value: String,
}

async fn flag_correct(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<ValueForm>,
) -> Result<HttpResponse, WebError> {
    let raw = form.value.clone();
    user.act(
        &state,
        &form.csrf,
        "/review/flags",
        "corrected",
        move |conn, p, actor| {
            let id = crate::api::v1::numeric_id(&id, "flag")?;
            // Numbers where the field holds numbers (hours, year of birth), else the text.
            let f = flags::get(conn, p, id)?;
            let numeric = matches!(
                f.field.rsplit('.').next(),
                Some("hours" | "planned_hours" | "year_of_birth" | "age")
            );
            let like = if numeric { vec![Json::from(0)] } else { vec![] };
            let value = typed(&raw, &like.iter().collect::<Vec<_>>());
            flags::correct(conn, actor, p, id, &CorrectRequest { value })
        },
    )
    .await
}

// ---------------------------------------------------------------- quarantine

async fn quarantine_list(
    state: web::Data<AppState>,
    user: WebUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let q = query.into_inner();
    let qq = QuarantineQuery {
        status: opt(&q.status),
        cursor: opt(&q.cursor),
        ..Default::default()
    };
    let p = user.principal.clone();
    let (list, names) = user
        .run(&state, move |conn| {
            let list = quarantine::list(conn, &p, &qq)?;
            let ids = list.items.iter().map(|i| i.user_id.clone()).collect();
            Ok((list, usernames(conn, ids)?))
        })
        .await?;
    let base = url_with("/review/quarantine", &[("status", q.status.as_deref())]);
    let body = html! {
        p.hint { (lang.t("Changes the server refused (out of scope, a rule broken, malformed). Release one to check it again and apply it, or dismiss it with a reason; it is never deleted.",
                         "ការផ្លាស់ប្ដូរដែលម៉ាស៊ីនមេបានបដិសេធ។ បញ្ចេញវាដើម្បីពិនិត្យម្ដងទៀត ឬបោះបង់វាដោយមានហេតុផល។")) }
        (filters(lang, "/review/quarantine", html! {
            (status_select(lang, &[("open", "Open", "មិនទាន់សម្រេច"), ("released", "Released", "បានបញ្ចេញ"),
                                   ("dismissed", "Dismissed", "បានបោះបង់"), ("all", "All", "ទាំងអស់")], q.status.as_deref()))
        }))
        @if list.items.is_empty() { (layout::empty(lang)) }
        @for i in &list.items {
            article.card id={ "quarantine-" (i.id) } {
                h2 {
                    @match (&i.document_id, &i.doc_type) {
                        (Some(d), Some(t)) => (record_link(lang, d, t)),
                        _ => (lang.t("A change", "ការផ្លាស់ប្ដូរមួយ")),
                    }
                    " · " code { (i.code) }
                }
                p { (i.reason) }
                p.meta { (lang.t("From", "ពី")) " " (who(&names, Some(&i.user_id))) " · " (lang.t("received", "បានទទួល")) " " (lang.datetime(i.received_at)) " UTC · " (i.status.as_str())
                    @if let Some(h) = &i.header { " · " (lang.int(h.operations as i64)) " " (lang.t("operations", "ប្រតិបត្តិការ")) } }
                @if let Some(n) = &i.decision_note { p.resolved { (n) } }
                @if i.status.as_str() == "open" {
                    form.inline method="post" action={ "/review/quarantine/" (i.id) "/release" } {
                        (csrf(&user))
                        button type="submit" { (lang.t("Release", "បញ្ចេញ")) }
                    }
                    form.inline method="post" action={ "/review/quarantine/" (i.id) "/dismiss" } {
                        (csrf(&user))
                        label { span { (lang.t("Reason", "ហេតុផល")) } input name="note" required maxlength="500"; }
                        button.secondary type="submit" { (lang.t("Dismiss", "បោះបង់")) }
                    }
                }
            }
        }
        (layout::pager(lang, &base, q.cursor.as_deref(), list.next_cursor.as_deref()))
    };
    let done = q.done.as_deref().and_then(|d| done_message(lang, d));
    Ok(ok(layout::page(
        &user,
        Section::Quarantine,
        lang.t("Quarantined changes", "ការផ្លាស់ប្ដូរដែលបានឃាត់"),
        done,
        body,
    )))
}

async fn quarantine_release(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, WebError> {
    let to = "/review/quarantine";
    user.act(&state, &form.csrf, to, "released", move |conn, p, _| {
        let id = crate::api::v1::numeric_id(&id, "quarantined change")?;
        quarantine::release(conn, p, id)
    })
    .await
}

async fn quarantine_dismiss(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    form: web::Form<NoteForm>,
) -> Result<HttpResponse, WebError> {
    let reason = form.note.clone();
    let to = "/review/quarantine";
    user.act(&state, &form.csrf, to, "dismissed", move |conn, p, _| {
        let id = crate::api::v1::numeric_id(&id, "quarantined change")?;
        quarantine::dismiss(conn, p, id, &DismissRequest { reason })
    })
    .await
}

// ---------------------------------------------------------------- waiting

async fn waiting(state: web::Data<AppState>, user: WebUser) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let days = state.settings.pending_stale_days;
    let p = user.principal.clone();
    let (list, names) = user
        .run(&state, move |conn| {
            let list = pending::list(conn, &p, days)?;
            let ids = list.devices.iter().map(|d| d.user_id.clone()).collect();
            Ok((list, usernames(conn, ids)?))
        })
        .await?;
    let body = html! {
        p.hint { (lang.t("Changes a tablet sent before the changes they build on. They apply by themselves when those arrive; a quarantined one must be released first.",
                         "ការផ្លាស់ប្ដូរដែលកំពុងរង់ចាំការផ្លាស់ប្ដូរមុនៗ។ វានឹងត្រូវបានអនុវត្តដោយខ្លួនឯងនៅពេលវាមកដល់។")) }
        @if list.devices.is_empty() { (layout::empty(lang)) } @else {
            table {
                thead { tr {
                    th scope="col" { (lang.t("User", "អ្នកប្រើ")) } th scope="col" { (lang.t("Device", "ឧបករណ៍")) }
                    th.n scope="col" { (lang.t("Changes waiting", "ការផ្លាស់ប្ដូរកំពុងរង់ចាំ")) }
                    th scope="col" { (lang.t("Oldest", "ចាស់បំផុត")) } th scope="col" { (lang.t("Records", "កំណត់ត្រា")) }
                } }
                tbody { @for d in &list.devices { tr.stale[d.stale] {
                    td { (who(&names, Some(&d.user_id))) } td { code { (short(&d.device_id)) } }
                    td.n { (lang.int(d.held as i64)) }
                    td { (lang.datetime(d.oldest)) @if d.stale { " " span.tag { (lang.t("stale", "យូរពេក")) } } }
                    td { @for doc in &d.documents {
                        (record_link(lang, &doc.document_id, &doc.doc_type))
                        @if !doc.quarantined.is_empty() { " " a.tag href="/review/quarantine" { (lang.t("waits for a quarantined change", "រង់ចាំការផ្លាស់ប្ដូរដែលបានឃាត់")) } }
                        br;
                    } }
                } } }
            }
        }
    };
    Ok(ok(layout::page(
        &user,
        Section::Waiting,
        lang.t("Waiting changes", "ការផ្លាស់ប្ដូរកំពុងរង់ចាំ"),
        None,
        body,
    )))
}
