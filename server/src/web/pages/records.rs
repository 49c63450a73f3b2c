//! Records as pages: search members, cooperatives and sessions by a name in Khmer or
//! Latin letters with filters, and a record's page with its fields, open conflicts and
//! flags, merges and history (`records::read` and `records::history`, as the API).

use actix_web::{HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value as Json;

use super::provinces;
use crate::{
    records::{
        history::{self, HistoryQuery},
        read::{self, RecordGetQuery, RecordQuery},
    },
    state::AppState,
    web::{
        WebError,
        i18n::Lang,
        layout::{self, Section, url_with, value_text},
        ok,
        pages::review::{doc_type_name, field_name, short},
        session::WebUser,
    },
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/records", web::get().to(search))
        .route("/records/{id}", web::get().to(record));
}

#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    #[serde(rename = "type")]
    doc_type: Option<String>,
    q: Option<String>,
    province: Option<String>,
    /// `on` (the checkbox): list members merged into another record too.
    include_merged: Option<String>,
    cursor: Option<String>,
}

/// The columns a list of each type shows.
fn columns(doc_type: &str) -> &'static [&'static str] {
    match doc_type {
        "cooperative" => &["name_khmer", "name_latin", "registration_number", "village"],
        "training_session" => &["programme", "topic", "scheduled_date", "status"],
        _ => &[
            "full_name_khmer",
            "name_latin",
            "sex",
            "year_of_birth",
            "village",
        ],
    }
}

fn cell(fields: &serde_json::Map<String, Json>, k: &str) -> String {
    fields.get(k).map(value_text).unwrap_or_else(|| "—".into())
}

async fn search(
    state: web::Data<AppState>,
    user: WebUser,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let q = query.into_inner();
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
    let doc_type = nonempty(&q.doc_type).unwrap_or_else(|| "member".into());
    let rq = RecordQuery {
        doc_type: Some(doc_type.clone()),
        q: nonempty(&q.q),
        province: nonempty(&q.province),
        include_merged: Some(q.include_merged.is_some()),
        cursor: nonempty(&q.cursor),
        limit: Some(50),
        ..Default::default()
    };
    let p = user.principal.clone();
    let (list, provs) = user
        .run(&state, move |conn| {
            Ok((read::list(conn, &p, &rq)?, provinces(conn, &p)?))
        })
        .await?;
    let cols = columns(&doc_type);
    let base = url_with(
        "/records",
        &[
            ("type", Some(&doc_type)),
            ("q", q.q.as_deref()),
            ("province", q.province.as_deref()),
            ("include_merged", q.include_merged.as_deref()),
        ],
    );
    let body = html! {
        form.filters role="search" method="get" action="/records" {
            label { span { (lang.t("Name (Khmer or Latin)", "ឈ្មោះ (ខ្មែរ ឬឡាតាំង)")) }
                input type="search" name="q" value=[q.q.as_deref()] autofocus; }
            (layout::select("type", lang.t("Record type", "ប្រភេទកំណត់ត្រា"), &[
                ("member", doc_type_name(lang, "member")),
                ("cooperative", doc_type_name(lang, "cooperative")),
                ("training_session", doc_type_name(lang, "training_session")),
            ], Some(&doc_type)))
            (super::province_select(lang, &provs, q.province.as_deref()))
            label.check { input type="checkbox" name="include_merged" checked[q.include_merged.is_some()];
                span { (lang.t("Include merged members", "រួមទាំងសមាជិកដែលបានបញ្ចូលគ្នា")) } }
            button type="submit" { (lang.t("Search", "ស្វែងរក")) }
        }
        @if list.records.is_empty() { (layout::empty(lang)) } @else {
            table #results {
                thead { tr {
                    @for c in cols { th scope="col" { (field_name(lang, c)) } }
                    th scope="col" { (lang.t("Updated", "បានកែប្រែ")) }
                } }
                tbody { @for r in &list.records { tr {
                    @for (i, c) in cols.iter().enumerate() {
                        td { @if i == 0 {
                            // A merged member's own page (its reads otherwise answer with
                            // the survivor), marked so it is not taken for a second person.
                            @if r.fields.contains_key("merged_into") {
                                a href={ "/records/" (r.id) "?follow=false" } { (cell(&r.fields, c)) }
                                " " span.tag { (lang.t("merged", "បានបញ្ចូលគ្នា")) }
                            } @else {
                                a href={ "/records/" (r.id) } { (cell(&r.fields, c)) }
                            }
                        } @else { (cell(&r.fields, c)) } }
                    }
                    td { (lang.date(r.updated_at.date_naive())) }
                } } }
            }
        }
        (layout::pager(lang, &base, q.cursor.as_deref(), list.next_cursor.as_deref()))
    };
    Ok(ok(layout::page(
        &user,
        Section::Records,
        lang.t("Records", "កំណត់ត្រា"),
        None,
        body,
    )))
}

#[derive(Debug, Default, Deserialize)]
pub struct RecordPageQuery {
    follow: Option<bool>,
    cursor: Option<String>,
}

fn fields_table(lang: Lang, fields: &serde_json::Map<String, Json>) -> Markup {
    html! {
        table.fields {
            tbody { @for (k, v) in fields {
                // The id is in the page's header; the type and schema version are the
                // protocol's, not the admin's.
                @if !matches!(k.as_str(), "attendance" | "id" | "type" | "schema_version") {
                    tr { th scope="row" { (field_name(lang, k)) } td {
                        @match (k.as_str(), v) {
                            ("cooperative_id" | "member_id" | "merged_into", Json::String(id)) => a href={ "/records/" (id) } { code { (short(id)) } },
                            _ => (value_text(v)),
                        }
                    } }
                }
            } }
        }
        @if let Some(Json::Object(att)) = fields.get("attendance") {
            h2 { (lang.t("Attendance", "វត្តមាន")) " (" (lang.int(att.len() as i64)) ")" }
            table {
                thead { tr {
                    th scope="col" { (lang.t("Participant", "អ្នកចូលរួម")) } th scope="col" { (lang.t("Status", "ស្ថានភាព")) }
                    th.n scope="col" { (lang.t("Hours", "ម៉ោង")) } th scope="col" { (lang.t("Member record", "កំណត់ត្រាសមាជិក")) }
                } }
                tbody { @for (pid, e) in att { tr {
                    td { (e.get("name").map(value_text).unwrap_or_else(|| short(pid).to_string())) }
                    td { (e.get("status").map(value_text).unwrap_or_default()) }
                    td.n { (e.get("hours").map(value_text).unwrap_or_default()) }
                    td { @if let Some(Json::String(m)) = e.get("member_id") { a href={ "/records/" (m) } { code { (short(m)) } } } }
                } } }
            }
        }
    }
}

async fn record(
    state: web::Data<AppState>,
    user: WebUser,
    id: web::Path<String>,
    query: web::Query<RecordPageQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let q = query.into_inner();
    let p = user.principal.clone();
    let (follow, cursor) = (q.follow, q.cursor.clone());
    let (rec, hist) = user
        .run(&state, move |conn| {
            let rec = read::get(conn, &p, &id, &RecordGetQuery { follow })?;
            let hist = history::history(
                conn,
                &p,
                &rec.record.id,
                &HistoryQuery {
                    cursor,
                    limit: Some(20),
                },
            )?;
            Ok((rec, hist))
        })
        .await?;
    let r = &rec.record;
    let name = r
        .fields
        .get("full_name_khmer")
        .or_else(|| r.fields.get("name_khmer"))
        .or_else(|| r.fields.get("topic"))
        .map(value_text)
        .unwrap_or_else(|| short(&r.id).to_string());
    let body = html! {
        p.meta { (doc_type_name(lang, &r.doc_type)) " · " code { (r.id) } " · " (lang.t("updated", "បានកែប្រែ")) " " (lang.datetime(r.updated_at)) " UTC" }
        @if let Some(from) = &rec.forwarded_from {
            p.done role="status" { (lang.t("This person was merged; you are seeing the record kept.", "មនុស្សនេះត្រូវបានបញ្ចូលគ្នា។ អ្នកកំពុងមើលកំណត់ត្រាដែលបានរក្សាទុក។")) " "
                a href={ "/records/" (from) "?follow=false" } { (lang.t("See the merged record", "មើលកំណត់ត្រាដែលបានបញ្ចូល")) } }
        }
        @if let Some(m) = &rec.merge {
            p.done role="status" { (lang.t("Merged into", "បានបញ្ចូលទៅក្នុង")) " "
                @if let Some(Json::String(s)) = m.get("survivor_id") { a href={ "/records/" (s) } { code { (short(s)) } } }
                @if let Some(Json::Array(c)) = m.get("changes_after_merge") { @if !c.is_empty() {
                    " · " (lang.int(c.len() as i64)) " " (lang.t("tablet changes since the merge", "ការផ្លាស់ប្ដូរពីថេប្លេតចាប់តាំងពីការបញ្ចូលគ្នា"))
                } }
            }
        }
        @if !rec.open_conflicts.is_empty() || !rec.open_flags.is_empty() {
            ul.alerts {
                @if !rec.open_conflicts.is_empty() { li { a href=(url_with("/review/conflicts", &[])) { (lang.int(rec.open_conflicts.len() as i64)) " " (lang.t("open conflicts", "ទិន្នន័យផ្ទុយគ្នាមិនទាន់ដោះស្រាយ")) } } }
                @if !rec.open_flags.is_empty() { li { a href="/review/flags" { (lang.int(rec.open_flags.len() as i64)) " " (lang.t("open flags", "ការព្រមានមិនទាន់ដោះស្រាយ")) } } }
            }
        }
        (fields_table(lang, &r.fields))
        @if !rec.merged_records.is_empty() {
            h2 { (lang.t("Records merged into this one", "កំណត់ត្រាដែលបានបញ្ចូលទៅក្នុងនេះ")) }
            ul { @for m in &rec.merged_records {
                @if let Some(Json::String(mid)) = m.get("member_id") { li { a href={ "/records/" (mid) "?follow=false" } { code { (short(mid)) } } } }
            } }
        }
        h2 { (lang.t("History", "ប្រវត្តិ")) }
        @if hist.entries.is_empty() { (layout::empty(lang)) }
        ol.history { @for e in &hist.entries {
            li {
                p.meta { (lang.datetime(e.received_at)) " UTC · "
                    @if e.author == "server" { (lang.t("admin decision", "ការសម្រេចរបស់អ្នកគ្រប់គ្រង")) } @else { (lang.t("tablet", "ថេប្លេត")) } }
                @if e.fields.is_empty() { p { (lang.t("(no field changed)", "(គ្មានវាលត្រូវបានផ្លាស់ប្ដូរ)")) } } @else {
                    table.diff { tbody { @for f in &e.fields { tr {
                        th scope="row" { (field_name(lang, &f.field)) }
                        td.old { (value_text(&f.old)) } td { "→" } td.new { (value_text(&f.new)) }
                    } } } }
                }
            }
        } }
        (layout::pager(lang, &format!("/records/{}", r.id), q.cursor.as_deref(), hist.next_cursor.as_deref()))
    };
    Ok(ok(layout::page(&user, Section::Records, &name, None, body)))
}
