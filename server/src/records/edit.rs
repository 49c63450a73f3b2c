//! An admin's correction of a record: any field of a record in scope (or of one of a
//! session's attendance entries), validated like a tablet's value, written as one server
//! change that every tablet pulls.

use std::collections::BTreeMap;

use automerge::{Automerge, ObjType, ROOT, ReadDoc, ScalarValue, Value, transaction::Transactable};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sync_protocol::documents::{Cooperative, DocType, Finding, Member, TrainingSession};
use utoipa::ToSchema;

use crate::{
    audit::AuditEvent,
    auth::Principal,
    db::{DbConnection, schema::documents},
    error::{ApiError, FieldError},
    records::projection,
};

/// A member's fields an admin may set (and a merge may take from the other record).
pub const MEMBER_FIELDS: [&str; 10] = [
    "cooperative_id",
    "full_name_khmer",
    "name_latin",
    "sex",
    "year_of_birth",
    "phone",
    "province_code",
    "village",
    "role",
    "joined_date",
];

/// The fields an admin may set, per record type (the schemas of docs/sync-protocol.md;
/// `type`, `id` and `schema_version` are the record's identity and never edited).
fn editable(doc_type: DocType, field: &str) -> bool {
    const COOPERATIVE: [&str; 9] = [
        "name_khmer",
        "name_latin",
        "registration_number",
        "province_code",
        "district",
        "commune",
        "village",
        "status",
        "established_date",
    ];
    const SESSION: [&str; 11] = [
        "programme",
        "module",
        "cooperative_id",
        "group_name",
        "province_code",
        "location",
        "scheduled_date",
        "start_time",
        "end_time",
        "planned_hours",
        "status",
    ];
    const ENTRY: [&str; 8] = [
        "member_id",
        "name",
        "sex",
        "age",
        "phone",
        "status",
        "hours",
        "recorded_by",
    ];
    if list_field(doc_type, field) {
        return true;
    }
    match doc_type {
        DocType::Cooperative => COOPERATIVE.contains(&field),
        DocType::Member => MEMBER_FIELDS.contains(&field),
        DocType::TrainingSession => match field.strip_prefix("attendance.") {
            Some(rest) => rest
                .rsplit_once('.')
                .is_some_and(|(_, key)| ENTRY.contains(&key)),
            None => SESSION.contains(&field),
        },
    }
}

/// The list fields an admin may set, as a whole list of strings (a session's
/// `facilitators`): the admin's list replaces the record's on every replica.
fn list_field(doc_type: DocType, field: &str) -> bool {
    doc_type == DocType::TrainingSession && field == "facilitators"
}

/// A value an admin sets: one scalar, or a whole list of strings.
enum NewValue {
    Scalar(ScalarValue),
    Strings(Vec<String>),
}

/// Fields to set, by name (`village`) or, for a session's attendance entry, by dotted
/// path (`attendance.<participant>.hours`). Values are strings, numbers, `true`/`false`
/// or `null`; a list field (`facilitators`) takes an array of strings, which replaces
/// the whole list.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    #[schema(value_type = Object)]
    pub fields: BTreeMap<String, Json>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EditResponse {
    pub document_id: String,
    pub doc_type: String,
    /// The server change tablets will pull.
    pub change_hash: String,
    pub fields: Vec<String>,
}

/// Sets `req.fields` of `doc_id` as the admin `principal`, through one server change by
/// `actor`. The record must be in the admin's scope before and after (a provincial admin
/// cannot move it out of their provinces). Runs in the caller's transaction.
pub fn edit(
    conn: &mut DbConnection,
    actor: &automerge::ActorId,
    principal: &Principal,
    doc_id: &str,
    req: &EditRequest,
) -> Result<EditResponse, ApiError> {
    edit_as(conn, actor, principal, doc_id, req, "record.edit")
}

/// [`edit`], audited as `action` (a flag's correction is one action: `flag.correct`).
pub fn edit_as(
    conn: &mut DbConnection,
    actor: &automerge::ActorId,
    principal: &Principal,
    doc_id: &str,
    req: &EditRequest,
    action: &str,
) -> Result<EditResponse, ApiError> {
    use diesel::prelude::*;
    principal.require_admin()?;
    let doc_id = doc_id.to_ascii_lowercase();
    let place: Option<(String, Option<String>, Option<String>)> = documents::table
        .find(&doc_id)
        .select((
            documents::doc_type,
            documents::province_code,
            documents::cooperative_id,
        ))
        .first(conn)
        .optional()?;
    let doc_type = match place {
        Some((t, p, c)) if principal.actor().sees(p.as_deref(), c.as_deref()) => t,
        _ => return Err(ApiError::NotFound("record")),
    };
    let doc_type = DocType::parse(&doc_type).ok_or(ApiError::NotFound("record"))?;
    if req.fields.is_empty() || req.fields.len() > 50 {
        return Err(ApiError::validation(
            "fields",
            "invalid",
            "give 1 to 50 fields",
        ));
    }
    let mut values = Vec::new();
    let mut problems = Vec::new();
    for (field, value) in &req.fields {
        if !editable(doc_type, field) {
            problems.push(FieldError::new(
                field,
                "not_allowed",
                format!(
                    "`{field}` is not a field an admin can set on a {}",
                    doc_type.as_str()
                ),
            ));
            continue;
        }
        if list_field(doc_type, field) {
            match strings(value) {
                Some(list) => values.push((field.clone(), NewValue::Strings(list))),
                None => problems.push(FieldError::new(
                    field,
                    "invalid",
                    format!("`{field}` is a list of at most 50 non-empty strings"),
                )),
            }
            continue;
        }
        match scalar(value) {
            Ok(v) => values.push((field.clone(), NewValue::Scalar(v))),
            Err(_) => problems.push(FieldError::new(
                field,
                "invalid",
                "a value is a string, a number, true/false or null",
            )),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    let committed = super::change(conn, actor, &principal.user_id, &doc_id, |tx, base| {
        for (field, value) in &values {
            let (obj, key) = locate(base, field)
                .map_err(|_| automerge::AutomergeError::InvalidObjId(field.clone()))?;
            match value {
                NewValue::Scalar(v) => tx.put(&obj, key.as_str(), v.clone())?,
                NewValue::Strings(list) => {
                    // A new list object: the admin's list replaces every replica's,
                    // whatever a tablet inserted into the old one.
                    let new = tx.put_object(&obj, key.as_str(), ObjType::List)?;
                    for (i, item) in list.iter().enumerate() {
                        tx.insert(&new, i, ScalarValue::Str(item.as_str().into()))?;
                    }
                }
            }
        }
        Ok(())
    });
    let committed = match committed {
        Ok(c) => c,
        Err(super::CommitError::Edit(_)) => {
            return Err(ApiError::validation(
                "fields",
                "unknown_entry",
                "an attendance entry named in the fields does not exist",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // Validated like a tablet's values: a value that breaks its field's rule is refused
    // and the transaction rolls the change back.
    let doc = &committed.doc;
    let broken: Vec<FieldError> = findings(doc_type, doc)
        .into_iter()
        .filter(|f| req.fields.contains_key(&f.field))
        .map(|f| FieldError::new(&f.field, &f.code, f.message))
        .collect();
    if !broken.is_empty() {
        return Err(ApiError::Validation(broken));
    }
    // And still in the admin's scope afterwards.
    let (p, c) = projection::scope_of(conn, &doc_id, doc_type, doc)?;
    if !principal
        .actor()
        .may_place(p.as_deref(), c.as_deref(), None)
    {
        return Err(ApiError::forbidden(
            "this change would move the record out of your provinces",
        ));
    }
    let fields: Vec<String> = req.fields.keys().cloned().collect();
    AuditEvent {
        actor_user_id: Some(&principal.user_id),
        device_id: Some(&principal.device_id),
        action,
        target_type: Some(doc_type.as_str()),
        target_id: Some(&doc_id),
        outcome: "success",
        request_id: principal.request_id.as_deref(),
        // Field names only: values may be names or phone numbers.
        details: Some(serde_json::json!({"fields": fields, "change_hash": committed.hash})),
    }
    .record(conn)?;
    Ok(EditResponse {
        document_id: doc_id,
        doc_type: doc_type.as_str().to_string(),
        change_hash: committed.hash,
        fields,
    })
}

/// A JSON array of at most 50 non-empty strings (trimmed), as a list field's value.
fn strings(value: &Json) -> Option<Vec<String>> {
    let items = value.as_array()?;
    if items.len() > 50 {
        return None;
    }
    items
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.chars().count() <= 200)
                .map(str::to_string)
        })
        .collect()
}

/// The JSON value as the canonical Automerge scalar of the schemas (strings as Str,
/// whole numbers as Int, others as F64).
pub fn scalar(value: &Json) -> Result<ScalarValue, ApiError> {
    Ok(match value {
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::Number(n) if n.is_i64() => ScalarValue::Int(n.as_i64().unwrap_or_default()),
        Json::Number(n) => ScalarValue::F64(n.as_f64().unwrap_or_default()),
        Json::Null => ScalarValue::Null,
        _ => {
            return Err(ApiError::validation(
                "value",
                "invalid",
                "a resolution is a string, a number, true/false or null",
            ));
        }
    })
}

/// The object and key of a conflict's field: a field of the record (`village`) or of an
/// attendance entry (`attendance.<participant>.hours`).
pub fn locate(doc: &Automerge, field: &str) -> Result<(automerge::ObjId, String), ApiError> {
    let unsupported = || {
        ApiError::bad_request(
            "unsupported_conflict",
            "only conflicts on a field of a record or of an attendance entry can be resolved here",
        )
    };
    match field.split_once('.') {
        None => Ok((ROOT, field.to_string())),
        Some(("attendance", rest)) => {
            let (pid, key) = rest.rsplit_once('.').ok_or_else(unsupported)?;
            let att = match doc.get(ROOT, "attendance") {
                Ok(Some((Value::Object(ObjType::Map), id))) => id,
                _ => return Err(unsupported()),
            };
            match doc.get(&att, pid) {
                Ok(Some((Value::Object(ObjType::Map), entry))) => Ok((entry, key.to_string())),
                _ => Err(unsupported()),
            }
        }
        Some(_) => Err(unsupported()),
    }
}

pub fn findings(doc_type: DocType, doc: &Automerge) -> Vec<Finding> {
    let year = chrono::Datelike::year(&Utc::now()) as i64;
    match doc_type {
        DocType::Cooperative => {
            let (c, mut f) = Cooperative::read(doc);
            f.extend(c.validate());
            f
        }
        DocType::Member => {
            let (m, mut f) = Member::read(doc);
            f.extend(m.validate(year));
            f
        }
        DocType::TrainingSession => {
            let (s, mut f) = TrainingSession::read(doc);
            f.extend(s.validate());
            f
        }
    }
}
