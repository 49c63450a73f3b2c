//! The conflicts queue: fields two devices set concurrently. An admin resolves one by
//! choosing a value (or typing one, validated like a tablet's): the server writes one
//! change whose dependencies are the document's current heads, so it supersedes every
//! concurrent value on every replica, and the conflict is marked resolved with who, when,
//! what and by which change. Nothing is deleted.

use automerge::transaction::Transactable;
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
        schema::{conflicts, documents},
    },
    domain::access::Role,
    error::{ApiError, FieldError},
    records::edit::{findings, locate, scalar},
    records::{self, CommitError},
};

pub use crate::domain::status::ConflictStatus;

/// One concurrent value.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Candidate {
    /// The value as JSON: for an attendance entry recorded on two tablets at once, an
    /// object of the entry's fields (`"<map>"` / `"<list>"` for any other object).
    #[schema(value_type = Object)]
    pub value: Json,
    pub change_hash: Option<String>,
    /// The user who wrote it (`None` when the server does not know the change).
    pub user_id: Option<String>,
    /// National admins only: device ids name other people's tablets.
    pub device_id: Option<String>,
    pub received_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Resolution {
    pub resolved_by: String,
    pub resolved_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub value: Json,
    /// The server change that wrote the value (tablets pull it like any change).
    pub change_hash: String,
}

/// A conflict with everything an admin needs to decide.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConflictResponse {
    pub id: i64,
    pub document_id: String,
    /// `cooperative`, `member` or `training_session`.
    pub doc_type: String,
    pub province_code: Option<String>,
    /// Dotted path, e.g. `village` or `attendance.<participant>.hours`.
    pub field: String,
    pub status: ConflictStatus,
    pub candidates: Vec<Candidate>,
    /// The value the projection (and every replica) shows now: Automerge's
    /// deterministic pick among the candidates until resolved.
    #[schema(value_type = Object)]
    pub current_value: Json,
    pub detected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolution: Option<Resolution>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictListResponse {
    pub conflicts: Vec<ConflictResponse>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Filters of the list; every one optional.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConflictQuery {
    /// `open` (default), `resolved`, `superseded` or `all`.
    pub status: Option<String>,
    /// Two-digit province code.
    pub province: Option<String>,
    /// `cooperative`, `member` or `training_session`.
    pub doc_type: Option<String>,
    /// Only this record's conflicts.
    pub document_id: Option<String>,
    /// Detected on or after this date (`YYYY-MM-DD`).
    pub since: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

/// How an admin resolves a conflict: one of `choice` (an index into `candidates`) or
/// `value` (a typed value, validated like a tablet's).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub choice: Option<usize>,
    #[schema(value_type = Object)]
    pub value: Option<Json>,
}

type Row = (
    i64,
    String,
    String,
    String,
    String,
    String,
    NaiveDateTime,
    NaiveDateTime,
    Option<String>,
    Option<NaiveDateTime>,
    Option<String>,
    Option<String>,
);

type Place = (String, Option<String>, Option<String>);

fn response(row: Row, place: Place, principal: &Principal) -> Result<ConflictResponse, ApiError> {
    let (id, document_id, field, candidates, winner, status, detected, updated, by, at, res, hash) =
        row;
    let national = principal.role == Role::NationalAdmin;
    let candidates: Vec<Json> = serde_json::from_str(&candidates).map_err(ApiError::internal)?;
    let candidates = candidates
        .into_iter()
        .map(|c| Candidate {
            value: c["value"].clone(),
            change_hash: c["change_hash"].as_str().map(str::to_string),
            user_id: c["user_id"].as_str().map(str::to_string),
            device_id: national
                .then(|| c["device_id"].as_str().map(str::to_string))
                .flatten(),
            received_at: c["received_at"].as_str().map(str::to_string),
        })
        .collect();
    let resolution = match (by, at, res, hash) {
        (Some(by), Some(at), Some(value), Some(hash)) => Some(Resolution {
            resolved_by: by,
            resolved_at: utc(at),
            value: serde_json::from_str(&value).map_err(ApiError::internal)?,
            change_hash: hash,
        }),
        _ => None,
    };
    Ok(ConflictResponse {
        id,
        document_id,
        doc_type: place.0,
        province_code: place.1,
        field,
        status: ConflictStatus::parse(&status)
            .ok_or_else(|| ApiError::internal("unknown conflict status"))?,
        candidates,
        current_value: serde_json::from_str(&winner).map_err(ApiError::internal)?,
        detected_at: utc(detected),
        updated_at: utc(updated),
        resolution,
    })
}

macro_rules! columns {
    () => {
        (
            conflicts::id,
            conflicts::document_id,
            conflicts::field,
            conflicts::candidates,
            conflicts::winner,
            conflicts::status,
            conflicts::detected_at,
            conflicts::updated_at,
            conflicts::resolved_by,
            conflicts::resolved_at,
            conflicts::resolution,
            conflicts::resolution_change,
        )
    };
}

/// A page of the conflicts the admin may see, newest first.
pub fn list(
    conn: &mut DbConnection,
    principal: &Principal,
    q: &ConflictQuery,
) -> Result<ConflictListResponse, ApiError> {
    principal.require_admin()?;
    let limit = crate::api::v1::page_size(q.limit) as i64;
    let mut query = conflicts::table
        .inner_join(documents::table)
        .select((
            columns!(),
            (
                documents::doc_type,
                documents::province_code,
                documents::cooperative_id,
            ),
        ))
        .order(conflicts::id.desc())
        .limit(limit)
        .into_boxed();
    match q.status.as_deref() {
        None | Some("open") => {
            query = query.filter(conflicts::status.eq(ConflictStatus::Open.as_str()))
        }
        Some("all") => {}
        Some(s) => {
            let s = ConflictStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "status must be open, resolved, superseded or all",
                )
            })?;
            query = query.filter(conflicts::status.eq(s.as_str()));
        }
    }
    if let Some(p) = &q.province {
        query = query.filter(documents::province_code.eq(p.clone()));
    }
    if let Some(t) = &q.doc_type {
        query = query.filter(documents::doc_type.eq(t.clone()));
    }
    if let Some(d) = &q.document_id {
        query = query.filter(conflicts::document_id.eq(d.to_ascii_lowercase()));
    }
    if let Some(since) = &q.since {
        let day = chrono::NaiveDate::parse_from_str(since, "%Y-%m-%d").map_err(|_| {
            ApiError::bad_request("invalid_query", "since must be a date YYYY-MM-DD")
        })?;
        query = query.filter(conflicts::detected_at.ge(day.and_time(chrono::NaiveTime::MIN)));
    }
    if let Some(before) = super::before_cursor(q.cursor.as_deref())? {
        query = query.filter(conflicts::id.lt(before));
    }
    // The scope rule, as SQL on the record's province: provincial admins see records of
    // their provinces (the same condition as `Actor::sees` for their role).
    // The scope rule, in its SQL form (`db::scoped!`).
    let scope = principal.actor().scope();
    let query = crate::db::scoped!(query, &scope);
    let rows: Vec<(Row, Place)> = query.load(conn)?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|(r, _)| r.0.to_string()))
        .flatten();
    let conflicts = rows
        .into_iter()
        .filter(|(_, p)| principal.actor().sees(p.1.as_deref(), p.2.as_deref()))
        .map(|(r, p)| response(r, p, principal))
        .collect::<Result<_, _>>()?;
    Ok(ConflictListResponse {
        conflicts,
        next_cursor,
    })
}

/// One conflict, if the admin may see it (else `404`, as if it did not exist).
pub fn get(
    conn: &mut DbConnection,
    principal: &Principal,
    id: i64,
) -> Result<ConflictResponse, ApiError> {
    principal.require_admin()?;
    let (row, place) = load(conn, principal, id)?;
    response(row, place, principal)
}

fn load(conn: &mut DbConnection, principal: &Principal, id: i64) -> Result<(Row, Place), ApiError> {
    let found: Option<(Row, Place)> = conflicts::table
        .inner_join(documents::table)
        .filter(conflicts::id.eq(id))
        .select((
            columns!(),
            (
                documents::doc_type,
                documents::province_code,
                documents::cooperative_id,
            ),
        ))
        .first(conn)
        .optional()?;
    match found {
        Some((row, place))
            if principal
                .actor()
                .sees(place.1.as_deref(), place.2.as_deref()) =>
        {
            Ok((row, place))
        }
        _ => Err(ApiError::NotFound("conflict")),
    }
}

/// Resolves conflict `id` with a candidate's value or a typed one, as the admin
/// `principal`, through a server change by `actor`. Runs in the caller's transaction.
pub fn resolve(
    conn: &mut DbConnection,
    actor: &automerge::ActorId,
    principal: &Principal,
    id: i64,
    req: &ResolveRequest,
) -> Result<ConflictResponse, ApiError> {
    principal.require_admin()?;
    let (row, _) = load(conn, principal, id)?;
    if row.5 != ConflictStatus::Open.as_str() {
        return Err(ApiError::Conflict {
            code: "conflict_not_open",
            message: format!(
                "this conflict is {} already; a later concurrent edit opens a new one",
                row.5
            ),
        });
    }
    let mut chosen_hash = None;
    let value = match (req.choice, &req.value) {
        (Some(i), None) => {
            let candidates: Vec<Json> = serde_json::from_str(&row.3).map_err(ApiError::internal)?;
            let c = candidates.get(i).ok_or_else(|| {
                ApiError::validation("choice", "invalid", "no candidate has this index")
            })?;
            chosen_hash = c["change_hash"].as_str().map(str::to_string);
            c["value"].clone()
        }
        (None, Some(v)) => v.clone(),
        _ => {
            return Err(ApiError::validation(
                "choice",
                "required",
                "give exactly one of `choice` and `value`",
            ));
        }
    };
    let field = row.2.clone();
    let document_id = row.1.clone();
    // An attendance entry recorded on two tablets at once (two maps for one participant):
    // resolved by choosing one entry, copied whole into a new entry over both.
    if let Some(participant) = field
        .strip_prefix("attendance.")
        .filter(|p| !p.contains('.'))
    {
        let Some(hash) = chosen_hash.filter(|_| req.value.is_none()) else {
            return Err(ApiError::validation(
                "value",
                "invalid",
                "an attendance entry recorded twice is resolved by choosing one of the entries \
                 (`choice`); correct its fields afterwards",
            ));
        };
        let committed =
            records::change(conn, actor, &principal.user_id, &document_id, |tx, base| {
                copy_entry(tx, base, participant, &hash)
            });
        let committed = match committed {
            Ok(c) => c,
            Err(CommitError::Edit(_)) => {
                return Err(ApiError::Conflict {
                    code: "conflict_changed",
                    message: "the chosen entry is no longer one of the record's values; reload \
                              the conflict"
                        .into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        return decided(conn, principal, id, req, &row, &value, &committed);
    }
    let scalar_value = scalar(&value)?;
    let committed = records::change(conn, actor, &principal.user_id, &document_id, |tx, base| {
        let (obj, key) = match locate(base, &field) {
            Ok(found) => found,
            Err(_) => return Err(automerge::AutomergeError::InvalidObjId(field.clone())),
        };
        // Delete, then put: the put is a new operation over every concurrent value. A
        // plain put of a value equal to the current winner would only delete the others
        // (automerge keeps the winner's operation), and a tablet that edited the field
        // offline meanwhile would then win silently instead of opening a new conflict.
        tx.delete(&obj, key.as_str())?;
        tx.put(&obj, key.as_str(), scalar_value.clone())
    });
    let committed = match committed {
        Ok(c) => c,
        Err(CommitError::Edit(_)) => {
            return Err(ApiError::bad_request(
                "unsupported_conflict",
                "only conflicts on a field of a record or of an attendance entry can be resolved here",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // Validated like a tablet's value: a typed value that breaks a rule of its field is
    // refused (the transaction rolls the change back).
    let (doc_type, doc) = (committed.doc_type, &committed.doc);
    let broken: Vec<FieldError> = findings(doc_type, doc)
        .into_iter()
        .filter(|f| f.field == field)
        .map(|f| FieldError::new("value", &f.code, f.message))
        .collect();
    if req.value.is_some() && !broken.is_empty() {
        return Err(ApiError::Validation(broken));
    }
    decided(conn, principal, id, req, &row, &value, &committed)
}

/// Marks conflict `id` resolved by the server change `committed` with `value`, audits the
/// decision and answers the conflict as it now stands.
fn decided(
    conn: &mut DbConnection,
    principal: &Principal,
    id: i64,
    req: &ResolveRequest,
    row: &Row,
    value: &Json,
    committed: &records::Committed,
) -> Result<ConflictResponse, ApiError> {
    let at = now();
    diesel::update(conflicts::table.find(id))
        .set((
            conflicts::status.eq(ConflictStatus::Resolved.as_str()),
            conflicts::resolved_by.eq(&principal.user_id),
            conflicts::resolved_at.eq(at),
            conflicts::resolution.eq(value.to_string()),
            conflicts::resolution_change.eq(&committed.hash),
            conflicts::updated_at.eq(at),
        ))
        .execute(conn)?;
    AuditEvent {
        actor_user_id: Some(&principal.user_id),
        device_id: Some(&principal.device_id),
        action: "conflict.resolve",
        target_type: Some("conflict"),
        target_id: Some(&id.to_string()),
        outcome: "success",
        request_id: principal.request_id.as_deref(),
        details: Some(serde_json::json!({
            "document_id": row.1, "field": row.2, "change_hash": committed.hash,
            "chosen": req.choice, "typed": req.value.is_some(),
        })),
    }
    .record(conn)?;
    let (row, place) = load(conn, principal, id)?;
    response(row, place, principal)
}

/// Writes, over every concurrent entry of `participant`, a new entry with the fields of
/// the one written by the change `hash` (scalars with their own types, text as a string).
fn copy_entry(
    tx: &mut automerge::transaction::Transaction<'_>,
    base: &automerge::Automerge,
    participant: &str,
    hash: &str,
) -> Result<(), automerge::AutomergeError> {
    use automerge::{ObjType, ROOT, ReadDoc, ScalarValue, Value};
    let missing = || automerge::AutomergeError::InvalidObjId(participant.to_string());
    let Some((Value::Object(ObjType::Map), att)) = base.get(ROOT, "attendance")? else {
        return Err(missing());
    };
    let chosen = base
        .get_all(&att, participant)?
        .into_iter()
        .find(|(v, id)| {
            matches!(v, Value::Object(ObjType::Map))
                && base
                    .hash_for_opid(id)
                    .is_some_and(|h| h.to_string() == hash)
        })
        .map(|(_, id)| id)
        .ok_or_else(missing)?;
    let mut fields = Vec::new();
    for key in base.keys(&chosen) {
        match base.get(&chosen, key.as_str())? {
            Some((Value::Scalar(v), _)) => fields.push((key, v.into_owned())),
            Some((Value::Object(ObjType::Text), t)) => {
                fields.push((key, ScalarValue::Str(base.text(&t)?.into())))
            }
            _ => {}
        }
    }
    // Delete, then a new map: a new operation over every concurrent entry, so a tablet
    // that records this participant again offline opens a new conflict.
    tx.delete(&att, participant)?;
    let entry = tx.put_object(&att, participant, ObjType::Map)?;
    for (key, v) in fields {
        tx.put(&entry, key.as_str(), v)?;
    }
    Ok(())
}
