//! A record's history: every change, newest first, with when the server received it,
//! who wrote it (a device's user, or an admin through a server change), and per field
//! the value before and after, in words a person reads (`village: "Kampong Trach" ->
//! "Prey Khmeng"`), computed from the change log with Automerge's diff between each
//! change's dependencies and the change itself.

use std::collections::BTreeMap;

use automerge::{Automerge, ObjType, Patch, PatchAction, Prop, ReadDoc, Value};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use utoipa::ToSchema;

use super::SERVER_DEVICE;
use crate::{
    auth::Principal,
    db::{DbConnection, schema::changes},
    domain::access::Role,
    error::ApiError,
};

/// One field a change set.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldChange {
    /// Dotted path, e.g. `village` or `attendance.<participant>.hours`.
    pub field: String,
    #[schema(value_type = Object)]
    pub old: Json,
    #[schema(value_type = Object)]
    pub new: Json,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub seq: i64,
    pub hash: String,
    pub received_at: DateTime<Utc>,
    pub user_id: String,
    /// `device` (a tablet's push) or `server` (an admin's decision or correction).
    pub author: String,
    /// National admins only.
    pub device_id: Option<String>,
    pub fields: Vec<FieldChange>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryResponse {
    pub document_id: String,
    pub doc_type: String,
    pub entries: Vec<HistoryEntry>,
    /// Pass as `cursor` for older entries; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

fn render(
    doc: &Automerge,
    value: &Value<'_>,
    obj: &automerge::ObjId,
    heads: &[automerge::ChangeHash],
) -> Json {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            automerge::ScalarValue::Str(s) => Json::String(s.to_string()),
            automerge::ScalarValue::Int(i) => Json::from(*i),
            automerge::ScalarValue::Uint(u) => Json::from(*u),
            automerge::ScalarValue::F64(f) => {
                serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number)
            }
            automerge::ScalarValue::Boolean(b) => Json::Bool(*b),
            automerge::ScalarValue::Timestamp(t) => chrono::DateTime::from_timestamp_millis(*t)
                .map_or(Json::Null, |d| Json::String(d.to_rfc3339())),
            automerge::ScalarValue::Null => Json::Null,
            other => Json::String(other.to_string()),
        },
        Value::Object(ObjType::Text) => doc.text_at(obj, heads).map_or(Json::Null, Json::String),
        Value::Object(ObjType::Map | ObjType::Table) => Json::String("<new entry>".into()),
        Value::Object(ObjType::List) => Json::String("<list>".into()),
    }
}

fn path_of(patch: &Patch) -> Vec<String> {
    patch
        .path
        .iter()
        .map(|(_, p)| match p {
            Prop::Map(k) => k.to_string(),
            Prop::Seq(i) => i.to_string(),
        })
        .collect()
}

/// The value at `key` of `obj` as it was at `heads`.
fn value_before(
    doc: &Automerge,
    obj: &automerge::ObjId,
    key: &str,
    heads: &[automerge::ChangeHash],
) -> Json {
    doc.get_at(obj, key, heads)
        .ok()
        .flatten()
        .map_or(Json::Null, |(v, id)| render(doc, &v, &id, heads))
}

/// What one change did, field by field.
fn fields_of(doc: &Automerge, change: &automerge::Change) -> Vec<FieldChange> {
    let before = change.deps().to_vec();
    let after = vec![change.hash()];
    let mut out: BTreeMap<String, FieldChange> = BTreeMap::new();
    for patch in doc.diff(&before, &after) {
        let mut path = path_of(&patch);
        let (field, old, new) = match &patch.action {
            PatchAction::PutMap { key, value, .. } => {
                path.push(key.clone());
                let old = value_before(doc, &patch.obj, key, &before);
                (path.join("."), old, render(doc, &value.0, &value.1, &after))
            }
            PatchAction::DeleteMap { key } => {
                path.push(key.clone());
                let old = value_before(doc, &patch.obj, key, &before);
                (path.join("."), old, Json::Null)
            }
            // Edits inside a text or a list: the field is the object itself.
            _ => {
                let old = doc
                    .text_at(&patch.obj, &before)
                    .map_or_else(|_| Json::Null, Json::String);
                let new = doc
                    .text_at(&patch.obj, &after)
                    .map_or_else(|_| Json::Null, Json::String);
                (path.join("."), old, new)
            }
        };
        // A text created and filled in one change: one entry with its final text.
        out.entry(field.clone())
            .and_modify(|f| f.new = new.clone())
            .or_insert(FieldChange { field, old, new });
    }
    out.into_values().filter(|f| f.old != f.new).collect()
}

/// The history of `doc_id`, newest first, if the caller may see the record.
pub fn history(
    conn: &mut DbConnection,
    principal: &Principal,
    doc_id: &str,
    q: &HistoryQuery,
) -> Result<HistoryResponse, ApiError> {
    principal.require_admin()?;
    let doc_id = doc_id.to_ascii_lowercase();
    let row = crate::records::store::find_document(conn, &doc_id)?
        .filter(|r| {
            principal
                .actor()
                .sees(r.province_code.as_deref(), r.cooperative_id.as_deref())
        })
        .ok_or(ApiError::NotFound("record"))?;
    let limit = crate::api::v1::page_size(q.limit) as i64;
    let mut query = changes::table
        .filter(changes::document_id.eq(&doc_id))
        .order(changes::seq.desc())
        .limit(limit)
        .select((
            changes::seq,
            changes::hash,
            changes::received_at,
            changes::user_id,
            changes::device_id,
            changes::bytes,
        ))
        .into_boxed();
    if let Some(c) = &q.cursor {
        let before: i64 = c
            .parse()
            .map_err(|_| ApiError::bad_request("invalid_cursor", "the cursor is invalid"))?;
        query = query.filter(changes::seq.lt(before));
    }
    let rows: Vec<(i64, String, chrono::NaiveDateTime, String, String, Vec<u8>)> =
        query.load(conn)?;
    let doc = super::verify::load_snapshot(&row.snapshot)?;
    let national = principal.role == Role::NationalAdmin;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.0.to_string()))
        .flatten();
    let mut entries = Vec::with_capacity(rows.len());
    for (seq, hash, received, user_id, device_id, bytes) in rows {
        let fields = match automerge::Change::try_from(&bytes[..]) {
            Ok(change) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fields_of(&doc, &change)))
                    .unwrap_or_default()
            }
            Err(_) => Vec::new(),
        };
        entries.push(HistoryEntry {
            seq,
            hash,
            received_at: DateTime::from_naive_utc_and_offset(received, Utc),
            author: if device_id == SERVER_DEVICE {
                "server"
            } else {
                "device"
            }
            .into(),
            device_id: (national && device_id != SERVER_DEVICE).then_some(device_id),
            user_id,
            fields,
        });
    }
    Ok(HistoryResponse {
        document_id: doc_id,
        doc_type: row.doc_type,
        entries,
        next_cursor,
    })
}
