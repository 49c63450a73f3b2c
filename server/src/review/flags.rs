//! The validation-flags queue: values that break a rule, stored as the tablet sent them.
//! A flag keeps its identity (record, rule code, field). An admin **accepts** a flagged
//! value as it is (with a note; it stays accepted until the value changes) or
//! **corrects** it (a server change with the new value, validated like a tablet's, after
//! which the flag closes as `fixed` naming that change). Flags that a later tablet change
//! fixes close by themselves the same way. Nothing is deleted.

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
        schema::{documents, validation_flags},
    },
    error::ApiError,
    records::projection::field_value,
    records::{self, edit::EditRequest},
};

pub use crate::domain::status::FlagStatus;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlagResponse {
    pub id: i64,
    pub document_id: String,
    pub doc_type: String,
    pub province_code: Option<String>,
    /// The rule, e.g. `missing_required_field`, `hours_exceed_planned`.
    pub code: String,
    pub field: String,
    pub message: String,
    pub status: FlagStatus,
    pub detected_at: DateTime<Utc>,
    pub accepted_by: Option<String>,
    pub accepted_at: Option<DateTime<Utc>>,
    /// The value accepted (as text), while the flag is accepted.
    pub accepted_value: Option<String>,
    pub note: Option<String>,
    pub fixed_at: Option<DateTime<Utc>>,
    /// The change that fixed it, when known.
    pub fixed_by_change: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlagListResponse {
    pub flags: Vec<FlagResponse>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FlagQuery {
    /// `open` (default), `accepted`, `fixed` or `all`.
    pub status: Option<String>,
    pub province: Option<String>,
    pub doc_type: Option<String>,
    pub code: Option<String>,
    pub document_id: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// Why the value is right as it is (1 to 500 characters).
    pub note: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectRequest {
    /// The corrected value: a string, a number, `true`/`false` or `null`.
    #[schema(value_type = Object)]
    pub value: Json,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = validation_flags)]
struct Row {
    id: i64,
    document_id: String,
    code: String,
    field: String,
    message: String,
    detected_at: NaiveDateTime,
    status: String,
    accepted_by: Option<String>,
    accepted_at: Option<NaiveDateTime>,
    accepted_value: Option<String>,
    note: Option<String>,
    fixed_at: Option<NaiveDateTime>,
    fixed_by_change: Option<String>,
}

type Place = (String, Option<String>, Option<String>);

fn response(r: Row, place: Place) -> Result<FlagResponse, ApiError> {
    Ok(FlagResponse {
        id: r.id,
        document_id: r.document_id,
        doc_type: place.0,
        province_code: place.1,
        code: r.code,
        field: r.field,
        message: r.message,
        status: FlagStatus::parse(&r.status).ok_or_else(|| ApiError::internal("flag status"))?,
        detected_at: utc(r.detected_at),
        accepted_by: r.accepted_by,
        accepted_at: r.accepted_at.map(utc),
        accepted_value: r.accepted_value,
        note: r.note,
        fixed_at: r.fixed_at.map(utc),
        fixed_by_change: r.fixed_by_change,
    })
}

pub fn list(
    conn: &mut DbConnection,
    principal: &Principal,
    q: &FlagQuery,
) -> Result<FlagListResponse, ApiError> {
    principal.require_admin()?;
    let limit = crate::api::v1::page_size(q.limit) as i64;
    let mut query = validation_flags::table
        .inner_join(documents::table)
        .select((
            Row::as_select(),
            (
                documents::doc_type,
                documents::province_code,
                documents::cooperative_id,
            ),
        ))
        .order(validation_flags::id.desc())
        .limit(limit)
        .into_boxed();
    match q.status.as_deref() {
        None | Some("open") => {
            query = query.filter(validation_flags::status.eq(FlagStatus::Open.as_str()))
        }
        Some("all") => {}
        Some(s) => {
            let s = FlagStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "status must be open, accepted, fixed or all",
                )
            })?;
            query = query.filter(validation_flags::status.eq(s.as_str()));
        }
    }
    if let Some(p) = &q.province {
        query = query.filter(documents::province_code.eq(p.clone()));
    }
    if let Some(t) = &q.doc_type {
        query = query.filter(documents::doc_type.eq(t.clone()));
    }
    if let Some(c) = &q.code {
        query = query.filter(validation_flags::code.eq(c.clone()));
    }
    if let Some(d) = &q.document_id {
        query = query.filter(validation_flags::document_id.eq(d.to_ascii_lowercase()));
    }
    if let Some(before) = super::before_cursor(q.cursor.as_deref())? {
        query = query.filter(validation_flags::id.lt(before));
    }
    // The scope rule, in its SQL form (`db::scoped!`).
    let scope = principal.actor().scope();
    let query = crate::db::scoped!(query, &scope);
    let rows: Vec<(Row, Place)> = query.load(conn)?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|(r, _)| r.id.to_string()))
        .flatten();
    let flags = rows
        .into_iter()
        .filter(|(_, p)| principal.actor().sees(p.1.as_deref(), p.2.as_deref()))
        .map(|(r, p)| response(r, p))
        .collect::<Result<_, _>>()?;
    Ok(FlagListResponse { flags, next_cursor })
}

fn load(conn: &mut DbConnection, principal: &Principal, id: i64) -> Result<(Row, Place), ApiError> {
    principal.require_admin()?;
    let found: Option<(Row, Place)> = validation_flags::table
        .inner_join(documents::table)
        .filter(validation_flags::id.eq(id))
        .select((
            Row::as_select(),
            (
                documents::doc_type,
                documents::province_code,
                documents::cooperative_id,
            ),
        ))
        .first(conn)
        .optional()?;
    match found {
        Some((r, p)) if principal.actor().sees(p.1.as_deref(), p.2.as_deref()) => Ok((r, p)),
        _ => Err(ApiError::NotFound("flag")),
    }
}

pub fn get(
    conn: &mut DbConnection,
    principal: &Principal,
    id: i64,
) -> Result<FlagResponse, ApiError> {
    let (r, p) = load(conn, principal, id)?;
    response(r, p)
}

fn require_open(r: &Row) -> Result<(), ApiError> {
    if r.status == FlagStatus::Open.as_str() {
        Ok(())
    } else {
        Err(ApiError::Conflict {
            code: "flag_not_open",
            message: format!("this flag is {} already", r.status),
        })
    }
}

fn audit(
    conn: &mut DbConnection,
    principal: &Principal,
    action: &str,
    r: &Row,
) -> Result<(), ApiError> {
    AuditEvent {
        actor_user_id: Some(&principal.user_id),
        device_id: Some(&principal.device_id),
        action,
        target_type: Some("flag"),
        target_id: Some(&r.id.to_string()),
        outcome: "success",
        request_id: principal.request_id.as_deref(),
        details: Some(
            serde_json::json!({"document_id": r.document_id, "code": r.code, "field": r.field}),
        ),
    }
    .record(conn)?;
    Ok(())
}

/// Accepts the flagged value as it is; the flag stays accepted until the value changes.
pub fn accept(
    conn: &mut DbConnection,
    principal: &Principal,
    id: i64,
    req: &AcceptRequest,
) -> Result<FlagResponse, ApiError> {
    let note = req.note.trim();
    if note.is_empty() || note.chars().count() > 500 {
        return Err(ApiError::validation(
            "note",
            "invalid",
            "the note must have 1 to 500 characters",
        ));
    }
    let (r, _) = load(conn, principal, id)?;
    require_open(&r)?;
    let (_, doc) = records::current(conn, &r.document_id)?;
    let at = now();
    diesel::update(validation_flags::table.find(id))
        .set((
            validation_flags::status.eq(FlagStatus::Accepted.as_str()),
            validation_flags::accepted_by.eq(&principal.user_id),
            validation_flags::accepted_at.eq(at),
            validation_flags::accepted_value.eq(field_value(&doc, &r.field)),
            validation_flags::note.eq(note),
        ))
        .execute(conn)?;
    audit(conn, principal, "flag.accept", &r)?;
    get(conn, principal, id)
}

/// Corrects the flagged field with a server change (validated like a tablet's value);
/// the projection then closes the flag as fixed by that change.
pub fn correct(
    conn: &mut DbConnection,
    actor: &automerge::ActorId,
    principal: &Principal,
    id: i64,
    req: &CorrectRequest,
) -> Result<FlagResponse, ApiError> {
    let (r, _) = load(conn, principal, id)?;
    require_open(&r)?;
    let edit = EditRequest {
        fields: [(r.field.clone(), req.value.clone())].into_iter().collect(),
    };
    records::edit::edit_as(
        conn,
        actor,
        principal,
        &r.document_id,
        &edit,
        "flag.correct",
    )?;
    get(conn, principal, id)
}
