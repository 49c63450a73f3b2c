//! The possible-duplicates queue: pairs of members that may be one farmer, found as
//! records arrive (`records::duplicates`), with their score, the rules that matched and both
//! records side by side. An admin **merges** a pair (one record survives; the other is
//! marked `merged_into` the survivor by a server change and keeps its document and
//! history; chosen fields of the duplicate are written onto the survivor by a second
//! server change), says they are **not the same person** (remembered until one of them
//! changes a compared field), or **undoes** a merge (server changes that clear the mark
//! and put the survivor's earlier values back). Scoped and audited like the other queues.

use std::collections::BTreeMap;

use automerge::{ROOT, ReadDoc, ScalarValue, Value, transaction::Transactable};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use utoipa::ToSchema;

use super::utc;
use crate::{
    audit::AuditEvent,
    auth::Principal,
    db::{
        DbConnection, now,
        schema::{documents, duplicate_pairs, members, merges},
    },
    domain::status::PairStatus,
    error::{ApiError, FieldError},
    records::{self, edit::scalar},
};

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DuplicateQuery {
    /// `open` (default), `merged`, `not_same` or `all`.
    pub status: Option<String>,
    /// Pairs in this province.
    pub province: Option<String>,
    /// Pairs with a member of this cooperative.
    pub cooperative: Option<String>,
    /// Lowest score shown (default 0: every stored pair reached the proposal threshold).
    pub min_score: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–500, default 50.
    pub limit: Option<usize>,
}

/// One member of a pair, as it is now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DuplicateSide {
    pub id: String,
    pub cooperative_id: Option<String>,
    pub province_code: Option<String>,
    pub full_name_khmer: Option<String>,
    pub name_latin: Option<String>,
    pub sex: Option<String>,
    pub year_of_birth: Option<i64>,
    pub phone: Option<String>,
    pub village: Option<String>,
    pub role: Option<String>,
    pub joined_date: Option<String>,
    /// Set when this member has been merged into another.
    pub merged_into: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MatchedRule {
    pub field: String,
    pub rule: String,
    pub points: i32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DuplicateCandidate {
    /// The pair's id (the same two members are always the same id).
    pub id: String,
    pub status: PairStatus,
    pub score: u32,
    pub rules: Vec<MatchedRule>,
    /// The rules in words: `same Khmer name (50) + same phone number (35) = 85`.
    pub explanation: String,
    pub province_code: Option<String>,
    /// The fields whose values differ between `a` and `b` (what a merge chooses between).
    pub differing: Vec<String>,
    pub a: DuplicateSide,
    pub b: DuplicateSide,
    pub found_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// The merge (while the pair is merged), for undoing it.
    pub merge_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DuplicateListResponse {
    pub candidates: Vec<DuplicateCandidate>,
    pub next_cursor: Option<String>,
}

/// A merge: `survivor` is one of the pair; `take` names the fields whose value is taken
/// from the other record (the duplicate), every other field keeps the survivor's value.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    pub survivor: String,
    #[serde(default)]
    pub take: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotSameRequest {
    /// Why (optional, up to 500 characters; kept in the audit log).
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MergeResponse {
    pub merge_id: String,
    pub pair_id: Option<String>,
    pub survivor_id: String,
    pub merged_id: String,
    /// The fields written onto the survivor from the duplicate.
    pub fields_taken: Vec<String>,
    pub merged_by: String,
    pub merged_at: DateTime<Utc>,
    pub undone_by: Option<String>,
    pub undone_at: Option<DateTime<Utc>>,
    /// On undo: fields the merge took that were edited since, left as they are (an undo
    /// restores a field only while it still holds the value the merge wrote).
    pub fields_kept: Vec<String>,
    /// The server changes of the action (tablets pull them).
    pub change_hashes: Vec<String>,
}

/// The fields a merge may take from the duplicate: the member fields an admin may set
/// (`merged_into` is the merge's own mark).
const MERGEABLE: &[&str] = &records::edit::MEMBER_FIELDS;

type SideRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(crate) fn sides(
    conn: &mut DbConnection,
    ids: &[&String],
) -> Result<BTreeMap<String, DuplicateSide>, ApiError> {
    let rows: Vec<SideRow> = members::table
        .filter(members::id.eq_any(ids))
        .select((
            members::id,
            members::cooperative_id,
            members::full_name_khmer,
            members::name_latin,
            members::sex,
            members::year_of_birth,
            members::phone,
            members::village,
            members::role,
            members::joined_date,
            members::merged_into,
        ))
        .load(conn)?;
    let provinces: BTreeMap<String, Option<String>> = documents::table
        .filter(documents::id.eq_any(ids))
        .select((documents::id, documents::province_code))
        .load::<(String, Option<String>)>(conn)?
        .into_iter()
        .collect();
    Ok(rows
        .into_iter()
        .map(|r| {
            let side = DuplicateSide {
                province_code: provinces.get(&r.0).cloned().flatten(),
                id: r.0.clone(),
                cooperative_id: r.1,
                full_name_khmer: r.2,
                name_latin: r.3,
                sex: r.4,
                year_of_birth: r.5,
                phone: r.6,
                village: r.7,
                role: r.8,
                joined_date: r.9,
                merged_into: r.10,
            };
            (r.0, side)
        })
        .collect())
}

fn differing(a: &DuplicateSide, b: &DuplicateSide) -> Vec<String> {
    let pairs: [(&str, Option<String>, Option<String>); 10] = [
        (
            "cooperative_id",
            a.cooperative_id.clone(),
            b.cooperative_id.clone(),
        ),
        (
            "full_name_khmer",
            a.full_name_khmer.clone(),
            b.full_name_khmer.clone(),
        ),
        ("name_latin", a.name_latin.clone(), b.name_latin.clone()),
        ("sex", a.sex.clone(), b.sex.clone()),
        (
            "year_of_birth",
            a.year_of_birth.map(|y| y.to_string()),
            b.year_of_birth.map(|y| y.to_string()),
        ),
        ("phone", a.phone.clone(), b.phone.clone()),
        (
            "province_code",
            a.province_code.clone(),
            b.province_code.clone(),
        ),
        ("village", a.village.clone(), b.village.clone()),
        ("role", a.role.clone(), b.role.clone()),
        ("joined_date", a.joined_date.clone(), b.joined_date.clone()),
    ];
    pairs
        .into_iter()
        .filter(|(_, x, y)| x != y)
        .map(|(f, _, _)| f.to_string())
        .collect()
}

type PairRow = (
    String,
    String,
    String,
    Option<String>,
    i64,
    String,
    String,
    NaiveDateTime,
    Option<String>,
    Option<NaiveDateTime>,
);

macro_rules! pair_columns {
    () => {
        (
            duplicate_pairs::id,
            duplicate_pairs::a_id,
            duplicate_pairs::b_id,
            duplicate_pairs::province_code,
            duplicate_pairs::score,
            duplicate_pairs::rules,
            duplicate_pairs::status,
            duplicate_pairs::found_at,
            duplicate_pairs::decided_by,
            duplicate_pairs::decided_at,
        )
    };
}

/// The rules in words: `same Khmer name (40) + same phone number (35) = 75`.
pub(crate) fn explain(rules: &[MatchedRule], score: u32) -> String {
    let mut explanation = rules
        .iter()
        .map(|m| format!("{} ({})", m.rule, m.points))
        .collect::<Vec<_>>()
        .join(" + ");
    explanation.push_str(&format!(" = {score}"));
    explanation
}

fn candidate(
    conn: &mut DbConnection,
    r: PairRow,
    side: &BTreeMap<String, DuplicateSide>,
) -> Result<Option<DuplicateCandidate>, ApiError> {
    let (Some(a), Some(b)) = (side.get(&r.1), side.get(&r.2)) else {
        return Ok(None);
    };
    let rules: Vec<MatchedRule> = serde_json::from_str(&r.5).map_err(ApiError::internal)?;
    let score = u32::try_from(r.4).unwrap_or_default();
    let explanation = explain(&rules, score);
    let status = PairStatus::parse(&r.6).ok_or_else(|| ApiError::internal("pair status"))?;
    let merge_id = if status == PairStatus::Merged {
        merges::table
            .filter(merges::pair_id.eq(&r.0))
            .filter(merges::undone_at.is_null())
            .select(merges::id)
            .first::<String>(conn)
            .optional()?
    } else {
        None
    };
    Ok(Some(DuplicateCandidate {
        id: r.0,
        status,
        score,
        rules,
        explanation,
        province_code: r.3,
        differing: differing(a, b),
        a: a.clone(),
        b: b.clone(),
        found_at: utc(r.7),
        decided_by: r.8,
        decided_at: r.9.map(utc),
        merge_id,
    }))
}

/// Pairs in the caller's scope (both members visible to them), best score first.
pub fn list(
    conn: &mut DbConnection,
    principal: &Principal,
    q: &DuplicateQuery,
) -> Result<DuplicateListResponse, ApiError> {
    principal.require_admin()?;
    let scope = principal.actor().scope();
    let limit = crate::api::v1::page_size(q.limit);
    let status = match q.status.as_deref().unwrap_or("open") {
        "all" => None,
        s => Some(PairStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "status is one of open, merged, not_same, all",
            )
        })?),
    };
    let mut query = duplicate_pairs::table.select(pair_columns!()).into_boxed();
    if let Some(s) = status {
        query = query.filter(duplicate_pairs::status.eq(s.as_str()));
    }
    if status == Some(PairStatus::Open) {
        // A pair with a member merged since (into a third) is no longer a question.
        // NOT EXISTS per side (an index probe each), not `<> ALL (subquery)`, which
        // PostgreSQL runs as a scan of every merged member for every pair.
        macro_rules! not_merged {
            ($side:expr) => {
                diesel::dsl::not(diesel::dsl::exists(
                    members::table
                        .filter(members::id.eq($side))
                        .filter(members::merged_into.is_not_null()),
                ))
            };
        }
        query = query
            .filter(not_merged!(duplicate_pairs::a_id))
            .filter(not_merged!(duplicate_pairs::b_id));
    }
    if !scope.all {
        // A pair lies in one province (detection compares members of the same province):
        // the admin's provinces select the candidates by index before the rule's exact
        // test on both members.
        // One province as `=`, not `= ANY(…)`: with `=` PostgreSQL's generic plan walks
        // that province's pairs in score order (`duplicate_pairs_list`); with `ANY` it
        // walked the national ranking, filtering (0.5–4 s when the province's pairs rank
        // low).
        let provinces: Vec<String> = scope.provinces.iter().cloned().collect();
        query = match provinces.as_slice() {
            [one] => query.filter(duplicate_pairs::province_code.eq(one.clone())),
            _ => query.filter(duplicate_pairs::province_code.eq_any(provinces)),
        };
        let visible = || {
            documents::table
                .select(documents::id)
                .filter(crate::db::scope_condition!(&scope))
        };
        query = query
            .filter(duplicate_pairs::a_id.eq_any(visible()))
            .filter(duplicate_pairs::b_id.eq_any(visible()));
    }
    if let Some(p) = &q.province {
        query = query.filter(duplicate_pairs::province_code.eq(p.clone()));
    }
    if let Some(c) = &q.cooperative {
        let c = c.to_ascii_lowercase();
        let of_coop = members::table
            .filter(members::cooperative_id.eq(c))
            .select(members::id);
        query = query.filter(
            duplicate_pairs::a_id
                .eq_any(of_coop.clone())
                .or(duplicate_pairs::b_id.eq_any(of_coop)),
        );
    }
    if let Some(m) = q.min_score {
        query = query.filter(duplicate_pairs::score.ge(i64::from(m)));
    }
    if let Some(c) = &q.cursor {
        let (score, id) = super::score_cursor(c)?;
        query = query.filter(
            duplicate_pairs::score.lt(score).or(duplicate_pairs::score
                .eq(score)
                .and(duplicate_pairs::id.gt(id))),
        );
    }
    let rows: Vec<PairRow> = query
        .order((duplicate_pairs::score.desc(), duplicate_pairs::id.asc()))
        .limit(limit as i64 + 1)
        .load(conn)?;
    let more = rows.len() > limit;
    let rows: Vec<PairRow> = rows.into_iter().take(limit).collect();
    let next_cursor = more
        .then(|| rows.last().map(|r| format!("{}.{}", r.4, r.0)))
        .flatten();
    let ids: Vec<&String> = rows.iter().flat_map(|r| [&r.1, &r.2]).collect();
    let side = sides(conn, &ids)?;
    let mut candidates = Vec::with_capacity(rows.len());
    for r in rows {
        if let Some(c) = candidate(conn, r, &side)? {
            candidates.push(c);
        }
    }
    Ok(DuplicateListResponse {
        candidates,
        next_cursor,
    })
}

/// One pair the caller may see (both members in scope).
pub fn get(
    conn: &mut DbConnection,
    principal: &Principal,
    id: &str,
) -> Result<DuplicateCandidate, ApiError> {
    principal.require_admin()?;
    let row: PairRow = duplicate_pairs::table
        .find(id)
        .select(pair_columns!())
        .first(conn)
        .optional()?
        .ok_or(ApiError::NotFound("duplicate pair"))?;
    require_visible(conn, principal, &[&row.1, &row.2], "duplicate pair")?;
    let side = sides(conn, &[&row.1, &row.2])?;
    candidate(conn, row, &side)?.ok_or(ApiError::NotFound("duplicate pair"))
}

/// Both records exist and are in the caller's scope (else 404: outside the scope a
/// record is not named).
pub(crate) fn require_visible(
    conn: &mut DbConnection,
    principal: &Principal,
    ids: &[&String],
    what: &'static str,
) -> Result<(), ApiError> {
    let places: Vec<(Option<String>, Option<String>)> = documents::table
        .filter(documents::id.eq_any(ids))
        .select((documents::province_code, documents::cooperative_id))
        .load(conn)?;
    let actor = principal.actor();
    if places.len() != ids.len()
        || !places
            .iter()
            .all(|(p, c)| actor.sees(p.as_deref(), c.as_deref()))
    {
        return Err(ApiError::NotFound(what));
    }
    Ok(())
}

/// The two members of an open pair the caller may decide on.
fn open_pair(
    conn: &mut DbConnection,
    principal: &Principal,
    pair_id: &str,
) -> Result<(String, String), ApiError> {
    principal.require_admin()?;
    let (a, b, status): (String, String, String) = duplicate_pairs::table
        .find(pair_id)
        .select((
            duplicate_pairs::a_id,
            duplicate_pairs::b_id,
            duplicate_pairs::status,
        ))
        .first(conn)
        .optional()?
        .ok_or(ApiError::NotFound("duplicate pair"))?;
    require_visible(conn, principal, &[&a, &b], "duplicate pair")?;
    if status != PairStatus::Open.as_str() {
        return Err(ApiError::Conflict {
            code: "pair_not_open",
            message: format!("this pair is {status} already"),
        });
    }
    Ok((a, b))
}

/// A root field of a document as JSON (absent: null), for keeping and restoring it.
fn field_json(doc: &automerge::Automerge, field: &str) -> Json {
    match doc.get(ROOT, field) {
        Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
            ScalarValue::Str(s) => Json::String(s.to_string()),
            ScalarValue::Int(i) => Json::from(*i),
            ScalarValue::Uint(u) => Json::from(*u),
            ScalarValue::F64(f) => Json::from(*f),
            ScalarValue::Boolean(b) => Json::Bool(*b),
            _ => Json::Null,
        },
        Ok(Some((Value::Object(automerge::ObjType::Text), id))) => {
            doc.text(&id).map(Json::String).unwrap_or(Json::Null)
        }
        _ => Json::Null,
    }
}

/// Puts `value` at a root field, or deletes the field for null.
fn put_or_delete(
    tx: &mut automerge::transaction::Transaction<'_>,
    base: &automerge::Automerge,
    field: &str,
    value: &Json,
) -> Result<(), automerge::AutomergeError> {
    if value.is_null() {
        if base.get(ROOT, field)?.is_some() {
            tx.delete(ROOT, field)?;
        }
        return Ok(());
    }
    let v = scalar(value).map_err(|_| automerge::AutomergeError::InvalidObjId(field.into()))?;
    tx.put(ROOT, field, v)
}

/// Merges the pair `pair_id`: `req.survivor` survives, the other is marked merged into it.
pub fn merge(
    conn: &mut DbConnection,
    actor: &automerge::ActorId,
    principal: &Principal,
    pair_id: &str,
    req: &MergeRequest,
) -> Result<MergeResponse, ApiError> {
    let (a, b) = open_pair(conn, principal, pair_id)?;
    let survivor = req.survivor.to_ascii_lowercase();
    let merged = if survivor == a {
        b
    } else if survivor == b {
        a
    } else {
        return Err(ApiError::validation(
            "survivor",
            "not_in_pair",
            "the survivor is one of the pair's two members",
        ));
    };
    let mut problems = Vec::new();
    for f in &req.take {
        if !MERGEABLE.contains(&f.as_str()) {
            problems.push(FieldError::new(
                "take",
                "not_allowed",
                format!("`{f}` is not a member field a merge can take"),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    // Marked first: the survivor's new values are projected within the merge, and the
    // detection that follows must find the pair decided, not open (it would withdraw it).
    diesel::update(duplicate_pairs::table.find(pair_id))
        .set((
            duplicate_pairs::status.eq(PairStatus::Merged.as_str()),
            duplicate_pairs::decided_by.eq(&principal.user_id),
            duplicate_pairs::decided_at.eq(now()),
            duplicate_pairs::updated_at.eq(now()),
        ))
        .execute(conn)?;
    merge_members(
        conn,
        actor,
        principal,
        Some(pair_id),
        &survivor,
        &merged,
        &req.take,
    )
}

/// The merge itself (a pair's, or a walk-in's promotion): two server changes and the
/// `merges` row that undoes them.
fn merge_members(
    conn: &mut DbConnection,
    actor: &automerge::ActorId,
    principal: &Principal,
    pair_id: Option<&str>,
    survivor: &str,
    merged: &str,
    take: &[String],
) -> Result<MergeResponse, ApiError> {
    let marks: Vec<(String, Option<String>)> = members::table
        .filter(members::id.eq_any([survivor, merged]))
        .select((members::id, members::merged_into))
        .load(conn)?;
    if marks.iter().any(|(_, m)| m.is_some()) {
        return Err(ApiError::Conflict {
            code: "already_merged",
            message:
                "one of these records has been merged into another already; undo that merge first"
                    .into(),
        });
    }
    // One step from any id to its person: a record others were merged into is merged only
    // after those merges are undone (reports and exports follow one `merged_into`).
    let into_duplicate: i64 = members::table
        .filter(members::merged_into.eq(merged))
        .count()
        .get_result(conn)?;
    if into_duplicate > 0 {
        return Err(ApiError::Conflict {
            code: "has_merged_records",
            message: "other records were merged into this one: keep it as the survivor, or undo those merges first"
                .into(),
        });
    }
    let (_, duplicate) = records::current(conn, merged)?;
    let (_, kept) = records::current(conn, survivor)?;
    let mut taken: Vec<(String, Json)> = Vec::new();
    let mut previous = serde_json::Map::new();
    for f in take {
        let (new, old) = (field_json(&duplicate, f), field_json(&kept, f));
        if new != old {
            // What the survivor had, and what the merge wrote: an undo restores the one
            // only while the field still holds the other.
            previous.insert(
                f.clone(),
                serde_json::json!({"before": old, "written": new.clone()}),
            );
            taken.push((f.clone(), new));
        }
    }
    // The merge row first: the projection follows a `merged_into` only when a merge
    // not undone says so.
    let id = uuid::Uuid::new_v4().to_string();
    let at = now();
    diesel::insert_into(merges::table)
        .values((
            merges::id.eq(&id),
            merges::pair_id.eq(pair_id),
            merges::survivor_id.eq(survivor),
            merges::merged_id.eq(merged),
            merges::previous.eq(Json::Object(previous).to_string()),
            merges::merged_by.eq(&principal.user_id),
            merges::merged_at.eq(at),
        ))
        .execute(conn)?;
    let mut hashes = Vec::new();
    let mark = records::change(conn, actor, &principal.user_id, merged, |tx, _| {
        tx.put(ROOT, "merged_into", ScalarValue::Str(survivor.into()))
    })?;
    hashes.push(mark.hash);
    if !taken.is_empty() {
        let written = records::change(conn, actor, &principal.user_id, survivor, |tx, base| {
            for (f, v) in &taken {
                put_or_delete(tx, base, f, v)?;
            }
            Ok(())
        })?;
        hashes.push(written.hash);
    }
    let fields_taken: Vec<String> = taken.iter().map(|(f, _)| f.clone()).collect();
    AuditEvent {
        actor_user_id: Some(&principal.user_id),
        device_id: Some(&principal.device_id),
        action: "duplicate.merge",
        target_type: Some("member"),
        target_id: Some(merged),
        outcome: "success",
        request_id: principal.request_id.as_deref(),
        // Field names only: values may be names or phone numbers.
        details: Some(serde_json::json!({
            "merge_id": id, "pair_id": pair_id, "survivor_id": survivor,
            "fields_taken": fields_taken, "change_hashes": hashes,
        })),
    }
    .record(conn)?;
    Ok(MergeResponse {
        merge_id: id,
        pair_id: pair_id.map(str::to_string),
        survivor_id: survivor.to_string(),
        merged_id: merged.to_string(),
        fields_taken,
        merged_by: principal.user_id.clone(),
        merged_at: utc(at),
        undone_by: None,
        undone_at: None,
        fields_kept: Vec::new(),
        change_hashes: hashes,
    })
}

/// A field's entry in `merges.previous`: `(before, written)`. Merges recorded before the
/// written value was kept hold the earlier value alone (`written` unknown: restored as
/// it was, whatever the field holds now).
fn previous_entry(v: &Json) -> (Json, Option<Json>) {
    match v {
        Json::Object(o) if o.contains_key("before") => (
            o.get("before").cloned().unwrap_or(Json::Null),
            o.get("written").cloned(),
        ),
        other => (other.clone(), None),
    }
}

/// Undoes a merge: the mark is cleared and the survivor's fields taken from the duplicate
/// get their earlier values back (both server changes); the pair is open again.
pub fn undo(
    conn: &mut DbConnection,
    actor: &automerge::ActorId,
    principal: &Principal,
    merge_id: &str,
) -> Result<MergeResponse, ApiError> {
    principal.require_admin()?;
    type MergeRow = (
        Option<String>,
        String,
        String,
        String,
        String,
        NaiveDateTime,
        Option<NaiveDateTime>,
    );
    let row: MergeRow = merges::table
        .find(merge_id)
        .select((
            merges::pair_id,
            merges::survivor_id,
            merges::merged_id,
            merges::previous,
            merges::merged_by,
            merges::merged_at,
            merges::undone_at,
        ))
        .first(conn)
        .optional()?
        .ok_or(ApiError::NotFound("merge"))?;
    let (pair_id, survivor, merged, previous, merged_by, merged_at, undone_at) = row;
    require_visible(conn, principal, &[&survivor, &merged], "merge")?;
    if undone_at.is_some() {
        return Err(ApiError::Conflict {
            code: "merge_undone",
            message: "this merge has been undone already".into(),
        });
    }
    let previous: serde_json::Map<String, Json> =
        serde_json::from_str(&previous).map_err(ApiError::internal)?;
    let mut hashes = Vec::new();
    let clear = records::change(conn, actor, &principal.user_id, &merged, |tx, base| {
        put_or_delete(tx, base, "merged_into", &Json::Null)
    })?;
    hashes.push(clear.hash);
    let mut kept = Vec::new();
    if !previous.is_empty() {
        let restored = records::change(conn, actor, &principal.user_id, &survivor, |tx, base| {
            for (f, v) in &previous {
                let (before, written) = previous_entry(v);
                // Edited since the merge (a tablet, an admin): that edit stands.
                if written.is_some_and(|w| field_json(base, f) != w) {
                    kept.push(f.clone());
                    continue;
                }
                put_or_delete(tx, base, f, &before)?;
            }
            Ok(())
        });
        match restored {
            Ok(c) => hashes.push(c.hash),
            // Every field was edited since: nothing to restore.
            Err(records::CommitError::Unchanged) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let at = now();
    diesel::update(merges::table.find(merge_id))
        .set((
            merges::undone_by.eq(&principal.user_id),
            merges::undone_at.eq(at),
        ))
        .execute(conn)?;
    if let Some(p) = &pair_id {
        diesel::update(duplicate_pairs::table.find(p))
            .set((
                duplicate_pairs::status.eq(PairStatus::Open.as_str()),
                duplicate_pairs::decided_by.eq(None::<String>),
                duplicate_pairs::decided_at.eq(None::<NaiveDateTime>),
                duplicate_pairs::updated_at.eq(at),
            ))
            .execute(conn)?;
    }
    AuditEvent {
        actor_user_id: Some(&principal.user_id),
        device_id: Some(&principal.device_id),
        action: "duplicate.unmerge",
        target_type: Some("member"),
        target_id: Some(&merged),
        outcome: "success",
        request_id: principal.request_id.as_deref(),
        details: Some(serde_json::json!({
            "merge_id": merge_id, "pair_id": pair_id, "survivor_id": survivor,
            "fields_kept": kept, "change_hashes": hashes,
        })),
    }
    .record(conn)?;
    Ok(MergeResponse {
        merge_id: merge_id.to_string(),
        pair_id,
        survivor_id: survivor,
        merged_id: merged,
        fields_taken: previous.keys().cloned().collect(),
        merged_by,
        merged_at: utc(merged_at),
        undone_by: Some(principal.user_id.clone()),
        undone_at: Some(utc(at)),
        fields_kept: kept,
        change_hashes: hashes,
    })
}

/// "Not the same person": the pair is closed and not proposed again while both members'
/// compared fields stay as they are.
pub fn not_same(
    conn: &mut DbConnection,
    principal: &Principal,
    pair_id: &str,
    req: &NotSameRequest,
) -> Result<DuplicateCandidate, ApiError> {
    let (a, b) = open_pair(conn, principal, pair_id)?;
    if let Some(n) = &req.note
        && n.chars().count() > 500
    {
        return Err(ApiError::validation(
            "note",
            "too_long",
            "a note is at most 500 characters",
        ));
    }
    diesel::update(duplicate_pairs::table.find(pair_id))
        .set((
            duplicate_pairs::status.eq(PairStatus::NotSame.as_str()),
            duplicate_pairs::decided_by.eq(&principal.user_id),
            duplicate_pairs::decided_at.eq(now()),
            duplicate_pairs::updated_at.eq(now()),
        ))
        .execute(conn)?;
    AuditEvent {
        actor_user_id: Some(&principal.user_id),
        device_id: Some(&principal.device_id),
        action: "duplicate.not_same",
        target_type: Some("member"),
        target_id: Some(&a),
        outcome: "success",
        request_id: principal.request_id.as_deref(),
        details: Some(serde_json::json!({"pair_id": pair_id, "other_id": b, "note": req.note})),
    }
    .record(conn)?;
    get(conn, principal, pair_id)
}

/// The survivor a member id answers for now: itself, or the member it was merged into
/// (followed through at most 8 merges).
pub fn survivor_of(conn: &mut DbConnection, id: &str) -> Result<String, ApiError> {
    let mut current = id.to_string();
    for _ in 0..8 {
        let next: Option<Option<String>> = members::table
            .find(&current)
            .select(members::merged_into)
            .first(conn)
            .optional()?;
        match next.flatten() {
            Some(n) if n != current => current = n,
            _ => break,
        }
    }
    Ok(current)
}
