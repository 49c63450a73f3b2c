//! Finding records: list and search cooperatives, members and sessions in the caller's
//! scope (a Khmer or Latin name, province, cooperative, programme, date), and one record
//! with its projected fields, open conflicts and flags. Reads the projection; the scope
//! condition is the documents' province and cooperative, as everywhere.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};
use utoipa::ToSchema;

use crate::domain::status::{ConflictStatus, FlagStatus};
use crate::{
    auth::Principal,
    db::{
        DbConnection,
        schema::{
            conflicts, cooperatives, documents, members, training_sessions, validation_flags,
        },
    },
    error::ApiError,
};

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordQuery {
    /// `member` (default), `cooperative` or `training_session`.
    #[serde(rename = "type")]
    pub doc_type: Option<String>,
    /// Part of a name, in Khmer or Latin letters (Latin: any case). Zero-width spaces
    /// and repeated spaces are ignored.
    pub q: Option<String>,
    pub province: Option<String>,
    /// Members and sessions of this cooperative.
    pub cooperative: Option<String>,
    /// Sessions of this programme (`think_coop`, `start_coop`, …).
    pub programme: Option<String>,
    /// Sessions scheduled on or after / before this date (`YYYY-MM-DD`).
    pub from: Option<String>,
    pub to: Option<String>,
    /// Members merged into another record (`merged_into` set) are left out of the list
    /// unless this is `true`: the survivor stands for them, as in reports and exports.
    /// Listed, they carry `merged_into`.
    pub include_merged: Option<bool>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordSummary {
    pub id: String,
    pub doc_type: String,
    /// The projected fields (names as in docs/sync-protocol.md).
    #[schema(value_type = Object)]
    pub fields: Map<String, Json>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordListResponse {
    pub records: Vec<RecordSummary>,
    /// Pass as `cursor` for the next page (records are sorted by id).
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordResponse {
    pub record: RecordSummary,
    pub province_code: Option<String>,
    /// Open conflicts: `{id, field}`.
    #[schema(value_type = Object)]
    pub open_conflicts: Vec<Json>,
    /// Open flags: `{id, code, field, message}`.
    #[schema(value_type = Object)]
    pub open_flags: Vec<Json>,
    /// The id asked for, when it is a member merged into this record: reads of a merged
    /// id answer with the survivor (`follow=false` answers the merged record itself).
    pub forwarded_from: Option<String>,
    /// Members merged into this one (merges not undone): `{member_id, merge_id, merged_at}`.
    #[schema(value_type = Object)]
    pub merged_records: Vec<Json>,
    /// For a merged member read with `follow=false`: its merge and the tablets' changes to
    /// it since (`{survivor_id, merge_id, merged_at, changes_after_merge}`): an edit made on
    /// a tablet that had not synced is kept on this record and shown here for review.
    #[schema(value_type = Object)]
    pub merge: Option<Json>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordGetQuery {
    /// Follow a merged member to its survivor (default true).
    pub follow: Option<bool>,
}

/// A row of the members' list.
type Row0 = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    NaiveDateTime,
);
/// A row of the cooperatives' list.
type Row1 = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    NaiveDateTime,
);
/// A row of the sessions' list.
type Row2 = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    NaiveDateTime,
);

/// A Khmer name column matching the pattern `p`, or `name_latin` matching it in any case:
/// the name search of members and cooperatives.
macro_rules! name_matches {
    ($khmer:expr, $p:expr) => {
        $khmer
            .like($p.clone())
            .escape('\\')
            .or(
                diesel::dsl::sql::<diesel::sql_types::Bool>("LOWER(name_latin) LIKE ")
                    .bind::<diesel::sql_types::Text, _>($p.clone())
                    .sql(" ESCAPE '\\'"),
            )
    };
}

/// The search text as stored names are compared: invisible characters dropped, spaces
/// collapsed (`domain::matching::clean`), Latin letters lower-cased.
fn normalise(q: &str) -> String {
    crate::domain::matching::clean(q).to_lowercase()
}

fn like(q: &str) -> String {
    let mut out = String::from("%");
    for c in q.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

use crate::db::utc;

pub fn list(
    conn: &mut DbConnection,
    principal: &Principal,
    q: &RecordQuery,
) -> Result<RecordListResponse, ApiError> {
    principal.require_admin()?;
    let limit = crate::api::v1::page_size(q.limit) as i64;
    let scope = principal.actor().scope();
    let text = q.q.as_deref().map(normalise).filter(|t| !t.is_empty());
    let pattern = text.as_deref().map(like);
    let after = q.cursor.clone().unwrap_or_default();
    // The documents in scope, by the one SQL form of the rule (`db::scoped!`).
    let in_scope = || {
        documents::table
            .select(documents::id)
            .filter(crate::db::scope_condition!(&scope))
    };
    let date = |d: &Option<String>, what: &str| -> Result<Option<String>, ApiError> {
        match d {
            Some(d) if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err() => Err(
                ApiError::bad_request("invalid_query", format!("{what} must be a date YYYY-MM-DD")),
            ),
            other => Ok(other.clone()),
        }
    };
    let (from, to) = (date(&q.from, "from")?, date(&q.to, "to")?);
    let records: Vec<RecordSummary> = match q.doc_type.as_deref().unwrap_or("member") {
        "member" => {
            let mut query = members::table
                .filter(members::id.gt(&after))
                .order(members::id)
                .limit(limit)
                .into_boxed();
            if !scope.all {
                query = query.filter(members::id.eq_any(in_scope()));
            }
            if let Some(p) = &pattern {
                query = query.filter(name_matches!(members::full_name_khmer, p));
            }
            if let Some(p) = &q.province {
                query = query.filter(members::province_code.eq(p.clone()));
            }
            if let Some(c) = &q.cooperative {
                query = query.filter(members::cooperative_id.eq(c.to_ascii_lowercase()));
            }
            if q.include_merged != Some(true) {
                query = query.filter(members::merged_into.is_null());
            }
            let rows: Vec<Row0> = query
                .select((
                    members::id,
                    members::full_name_khmer,
                    members::name_latin,
                    members::sex,
                    members::year_of_birth,
                    members::village,
                    members::cooperative_id,
                    members::province_code,
                    members::merged_into,
                    members::updated_at,
                ))
                .load(conn)?;
            rows.into_iter()
                .map(|(id, km, lat, sex, yob, village, coop, prov, merged, at)| {
                    let mut fields = json!({"full_name_khmer": km, "name_latin": lat,
                        "sex": sex, "year_of_birth": yob, "village": village,
                        "cooperative_id": coop, "province_code": prov})
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                    if let Some(m) = merged {
                        fields.insert("merged_into".into(), Json::String(m));
                    }
                    RecordSummary {
                        id,
                        doc_type: "member".into(),
                        fields,
                        updated_at: utc(at),
                    }
                })
                .collect()
        }
        "cooperative" => {
            let mut query = cooperatives::table
                .filter(cooperatives::id.gt(&after))
                .order(cooperatives::id)
                .limit(limit)
                .into_boxed();
            if !scope.all {
                query = query.filter(cooperatives::id.eq_any(in_scope()));
            }
            if let Some(p) = &pattern {
                query = query.filter(name_matches!(cooperatives::name_khmer, p));
            }
            if let Some(p) = &q.province {
                query = query.filter(cooperatives::province_code.eq(p.clone()));
            }
            let rows: Vec<Row1> = query
                .select((
                    cooperatives::id,
                    cooperatives::name_khmer,
                    cooperatives::name_latin,
                    cooperatives::province_code,
                    cooperatives::village,
                    cooperatives::status,
                    cooperatives::updated_at,
                ))
                .load(conn)?;
            rows.into_iter()
                .map(|(id, km, lat, prov, village, status, at)| RecordSummary {
                    id,
                    doc_type: "cooperative".into(),
                    fields: json!({"name_khmer": km, "name_latin": lat, "province_code": prov,
                        "village": village, "status": status})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                    updated_at: utc(at),
                })
                .collect()
        }
        "training_session" => {
            let mut query = training_sessions::table
                .filter(training_sessions::id.gt(&after))
                .order(training_sessions::id)
                .limit(limit)
                .into_boxed();
            if !scope.all {
                query = query.filter(training_sessions::id.eq_any(in_scope()));
            }
            if let Some(p) = &pattern {
                query = query.filter(
                    diesel::dsl::sql::<diesel::sql_types::Bool>("(LOWER(module) LIKE ")
                        .bind::<diesel::sql_types::Text, _>(p.clone())
                        .sql(" ESCAPE '\\' OR LOWER(location) LIKE ")
                        .bind::<diesel::sql_types::Text, _>(p.clone())
                        .sql(" ESCAPE '\\' OR LOWER(group_name) LIKE ")
                        .bind::<diesel::sql_types::Text, _>(p.clone())
                        .sql(" ESCAPE '\\')"),
                );
            }
            if let Some(p) = &q.province {
                query = query.filter(training_sessions::province_code.eq(p.clone()));
            }
            if let Some(c) = &q.cooperative {
                query = query.filter(training_sessions::cooperative_id.eq(c.to_ascii_lowercase()));
            }
            if let Some(p) = &q.programme {
                query = query.filter(training_sessions::programme.eq(p.clone()));
            }
            if let Some(f) = from {
                query = query.filter(training_sessions::scheduled_date.ge(f));
            }
            if let Some(t) = to {
                query = query.filter(training_sessions::scheduled_date.le(t));
            }
            let rows: Vec<Row2> = query
                .select((
                    training_sessions::id,
                    training_sessions::programme,
                    training_sessions::module,
                    training_sessions::scheduled_date,
                    training_sessions::province_code,
                    training_sessions::cooperative_id,
                    training_sessions::status,
                    training_sessions::updated_at,
                ))
                .load(conn)?;
            rows.into_iter()
                .map(
                    |(id, programme, module, date, prov, coop, status, at)| RecordSummary {
                        id,
                        doc_type: "training_session".into(),
                        fields: json!({"programme": programme, "module": module,
                        "scheduled_date": date, "province_code": prov,
                        "cooperative_id": coop, "status": status})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                        updated_at: utc(at),
                    },
                )
                .collect()
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "type must be member, cooperative or training_session",
            ));
        }
    };
    let next_cursor = (records.len() as i64 == limit)
        .then(|| records.last().map(|r| r.id.clone()))
        .flatten();
    Ok(RecordListResponse {
        records,
        next_cursor,
    })
}

/// One record in the caller's scope, with its open conflicts and flags.
pub fn get(
    conn: &mut DbConnection,
    principal: &Principal,
    id: &str,
    q: &RecordGetQuery,
) -> Result<RecordResponse, ApiError> {
    principal.require_admin()?;
    let asked = id.to_ascii_lowercase();
    let id = if q.follow.unwrap_or(true) {
        crate::review::duplicates::survivor_of(conn, &asked)?
    } else {
        asked.clone()
    };
    let row = crate::records::store::find_document(conn, &id)?
        .filter(|r| {
            principal
                .actor()
                .sees(r.province_code.as_deref(), r.cooperative_id.as_deref())
        })
        .ok_or(ApiError::NotFound("record"))?;
    let doc = crate::records::verify::load_snapshot(&row.snapshot)?;
    let mut fields = Map::new();
    for key in automerge::ReadDoc::keys(&doc, automerge::ROOT) {
        if key == "attendance" {
            continue;
        }
        if let Some(v) = crate::records::projection::field_value(&doc, &key) {
            fields.insert(key, Json::String(v));
        }
    }
    if row.doc_type == "training_session" {
        let n = sync_protocol::documents::TrainingSession::read(&doc)
            .0
            .attendance
            .len();
        fields.insert("attendance_entries".into(), Json::from(n));
    }
    let open_conflicts: Vec<Json> = conflicts::table
        .filter(conflicts::document_id.eq(&id))
        .filter(conflicts::status.eq(ConflictStatus::Open.as_str()))
        .select((conflicts::id, conflicts::field))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .map(|(i, f)| json!({"id": i, "field": f}))
        .collect();
    let open_flags: Vec<Json> = validation_flags::table
        .filter(validation_flags::document_id.eq(&id))
        .filter(validation_flags::status.eq(FlagStatus::Open.as_str()))
        .select((
            validation_flags::id,
            validation_flags::code,
            validation_flags::field,
            validation_flags::message,
        ))
        .load::<(i64, String, String, String)>(conn)?
        .into_iter()
        .map(|(i, c, f, m)| json!({"id": i, "code": c, "field": f, "message": m}))
        .collect();
    let (merged_records, merge) = merges_of(conn, &id)?;
    Ok(RecordResponse {
        forwarded_from: (asked != id).then_some(asked),
        merged_records,
        merge,
        record: RecordSummary {
            id,
            doc_type: row.doc_type,
            fields,
            updated_at: utc(row.updated_at),
        },
        province_code: row.province_code,
        open_conflicts,
        open_flags,
    })
}

/// The merges a record takes part in: the members merged into it, and (for a merged
/// member) its own merge with the count of tablet changes it received since.
fn merges_of(conn: &mut DbConnection, id: &str) -> Result<(Vec<Json>, Option<Json>), ApiError> {
    use crate::db::schema::{changes, merges};
    let into: Vec<Json> = merges::table
        .filter(merges::survivor_id.eq(id))
        .filter(merges::undone_at.is_null())
        .select((merges::merged_id, merges::id, merges::merged_at))
        .order(merges::merged_at)
        .load::<(String, String, NaiveDateTime)>(conn)?
        .into_iter()
        .map(|(m, i, at)| json!({"member_id": m, "merge_id": i, "merged_at": utc(at)}))
        .collect();
    let own: Option<(String, String, NaiveDateTime)> = merges::table
        .filter(merges::merged_id.eq(id))
        .filter(merges::undone_at.is_null())
        .select((merges::survivor_id, merges::id, merges::merged_at))
        .first(conn)
        .optional()?;
    let merge = match own {
        None => None,
        Some((survivor, merge_id, at)) => {
            let after: i64 = changes::table
                .filter(changes::document_id.eq(id))
                .filter(changes::received_at.gt(at))
                .filter(changes::device_id.ne(crate::records::SERVER_DEVICE))
                .count()
                .get_result(conn)?;
            Some(json!({
                "survivor_id": survivor, "merge_id": merge_id, "merged_at": utc(at),
                "changes_after_merge": after,
            }))
        }
    };
    Ok((into, merge))
}
