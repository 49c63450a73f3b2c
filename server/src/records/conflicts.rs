//! Conflicts: after a merge, every field that holds more than one concurrent value is
//! recorded for an admin, with each value's device, user and receive time, and the value
//! Automerge picked deterministically (which the projection shows).

use std::collections::{BTreeMap, HashMap};

use automerge::{Automerge, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use diesel::prelude::*;
use serde_json::{Value as Json, json};

use super::CommitError;
use super::{Origin, changed::Changed, store};
use crate::db::{DbConnection, now, schema::conflicts};
use crate::domain::status::ConflictStatus;

fn render(doc: &Automerge, value: &Value<'_>, id: &ObjId) -> Json {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => json!(s.as_str()),
            ScalarValue::Int(i) => json!(i),
            ScalarValue::Uint(u) => json!(u),
            ScalarValue::F64(f) => json!(f),
            ScalarValue::Boolean(b) => json!(b),
            ScalarValue::Timestamp(t) => chrono::DateTime::from_timestamp_millis(*t)
                .map(|d| json!(d.to_rfc3339()))
                .unwrap_or(Json::Null),
            ScalarValue::Null => Json::Null,
            other => json!(other.to_string()),
        },
        Value::Object(ObjType::Text) => json!(doc.text(id).unwrap_or_default()),
        // An attendance entry recorded on two tablets at once: its fields, so an admin
        // can tell the two apart (a field that is itself an object stays a marker).
        Value::Object(ObjType::Map) => Json::Object(
            doc.keys(id)
                .take(MAX_ENTRY_FIELDS)
                .filter_map(|key| {
                    let (v, vid) = doc.get(id, key.as_str()).ok().flatten()?;
                    let v = match v {
                        Value::Object(ObjType::Text) | Value::Scalar(_) => render(doc, &v, &vid),
                        Value::Object(t) => json!(format!("<{t}>")),
                    };
                    Some((key, v))
                })
                .collect(),
        ),
        Value::Object(t) => json!(format!("<{t}>")),
    }
}

/// Most fields shown of a conflicting map (an attendance entry has nine).
const MAX_ENTRY_FIELDS: usize = 32;

struct Found {
    field: String,
    /// (value, change hash) per concurrent value.
    values: Vec<(Json, Option<String>)>,
    winner: Json,
}

/// Most concurrent values kept for one field; more than a handful of devices writing one
/// field at once is not a review an admin can do, and a crafted push can make thousands.
pub const MAX_CONFLICT_VALUES: usize = 16;
/// Deepest level the scan descends to (the change checks refuse deeper documents; this
/// keeps the walk bounded whatever the document).
const MAX_SCAN_DEPTH: usize = super::shape::MAX_DEPTH;

fn scan(doc: &Automerge, obj: &ObjId, prefix: &str, out: &mut Vec<Found>) {
    let mut stack: Vec<(ObjId, String, String, usize)> = doc
        .keys(obj)
        .map(|k| (obj.clone(), k, prefix.to_string(), 0))
        .collect();
    stack.reverse();
    walk(doc, stack, out);
}

/// The conflicts at `key` of `obj` and, if its value is a map, below it.
fn scan_key(doc: &Automerge, obj: &ObjId, key: &str, prefix: &str, out: &mut Vec<Found>) {
    walk(
        doc,
        vec![(obj.clone(), key.to_string(), prefix.to_string(), 0)],
        out,
    );
}

/// Depth-first over (object, key) pairs with an explicit stack: a document nested a
/// thousand maps deep must not overflow the thread's stack.
fn walk(doc: &Automerge, mut stack: Vec<(ObjId, String, String, usize)>, out: &mut Vec<Found>) {
    while let Some((obj, key, prefix, depth)) = stack.pop() {
        let field = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let all = doc.get_all(&obj, key.as_str()).unwrap_or_default();
        if all.len() > 1 {
            let values = all
                .iter()
                .take(MAX_CONFLICT_VALUES)
                .map(|(v, id)| {
                    (
                        render(doc, v, id),
                        doc.hash_for_opid(id).map(|h| h.to_string()),
                    )
                })
                .collect();
            let winner = doc
                .get(&obj, key.as_str())
                .ok()
                .flatten()
                .map(|(v, id)| render(doc, &v, &id))
                .unwrap_or(Json::Null);
            out.push(Found {
                field: field.clone(),
                values,
                winner,
            });
        }
        // Descend into nested maps (attendance entries); lists hold no per-field conflicts
        // worth an admin's time.
        if depth < MAX_SCAN_DEPTH
            && let Ok(Some((Value::Object(ObjType::Map), child))) = doc.get(&obj, key.as_str())
        {
            let mut keys: Vec<String> = doc.keys(&child).collect();
            keys.reverse();
            for k in keys {
                stack.push((child.clone(), k, field.clone(), depth + 1));
            }
        }
    }
}

/// The stored conflict fields a scan covers: `None` for all of them, else the fields at
/// or below these prefixes.
struct Covered(Option<Vec<String>>);

impl Covered {
    fn covers(&self, field: &str) -> bool {
        self.0.as_ref().is_none_or(|prefixes| {
            prefixes.iter().any(|p| {
                field
                    .strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
        })
    }
}

/// The conflicts in the part of the document that `changed` covers, and which stored
/// fields that part includes: a conflict can only appear or settle where a change wrote.
fn scan_changed(doc: &Automerge, changed: &Changed) -> (Vec<Found>, Covered) {
    let mut found = Vec::new();
    let attendance = match doc.get(ROOT, "attendance") {
        Ok(Some((Value::Object(ObjType::Map), id))) => Some(id),
        _ => None,
    };
    match (changed, attendance) {
        (Changed::Entries(entries), Some(att)) => {
            for pid in entries {
                scan_key(doc, &att, pid, "attendance", &mut found);
            }
            let prefixes = entries.iter().map(|p| format!("attendance.{p}")).collect();
            (found, Covered(Some(prefixes)))
        }
        _ => {
            scan(doc, &ROOT, "", &mut found);
            (found, Covered(None))
        }
    }
}

/// Brings the document's open conflicts in line with its current state, in the part of it
/// that `changed` covers.
pub fn record(
    conn: &mut DbConnection,
    doc_id: &str,
    doc: &Automerge,
    batch_origins: &HashMap<String, Origin>,
    changed: &Changed,
) -> Result<(), CommitError> {
    let (found, covered) = scan_changed(doc, changed);
    let wanted: Vec<String> = found
        .iter()
        .flat_map(|f| f.values.iter().filter_map(|(_, h)| h.clone()))
        .filter(|h| !batch_origins.contains_key(h))
        .collect();
    let stored = store::change_origins(conn, &wanted)?;
    let at = now();
    let existing: BTreeMap<String, i64> = conflicts::table
        .filter(conflicts::document_id.eq(doc_id))
        .filter(conflicts::status.eq(ConflictStatus::Open.as_str()))
        .select((conflicts::field, conflicts::id))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .filter(|(field, _)| covered.covers(field))
        .collect();
    for f in &found {
        let candidates: Vec<Json> = f
            .values
            .iter()
            .map(|(value, hash)| {
                let origin = hash.as_ref().and_then(|h| {
                    batch_origins
                        .get(h)
                        .map(|o| (o.device_id.clone(), o.user_id.clone(), o.received_at))
                        .or_else(|| stored.get(h).cloned())
                });
                match origin {
                    Some((device, user, received)) => json!({
                        "value": value, "change_hash": hash, "device_id": device, "user_id": user,
                        "received_at": crate::db::utc(received).to_rfc3339(),
                    }),
                    None => json!({"value": value, "change_hash": hash}),
                }
            })
            .collect();
        let candidates = Json::Array(candidates).to_string();
        let winner = f.winner.to_string();
        match existing.get(&f.field) {
            Some(id) => {
                diesel::update(conflicts::table.find(id))
                    .set((
                        conflicts::candidates.eq(&candidates),
                        conflicts::winner.eq(&winner),
                        conflicts::updated_at.eq(at),
                    ))
                    .execute(conn)?;
            }
            None => {
                diesel::insert_into(conflicts::table)
                    .values((
                        conflicts::document_id.eq(doc_id),
                        conflicts::field.eq(&f.field),
                        conflicts::candidates.eq(&candidates),
                        conflicts::winner.eq(&winner),
                        conflicts::status.eq(ConflictStatus::Open.as_str()),
                        conflicts::detected_at.eq(at),
                        conflicts::updated_at.eq(at),
                    ))
                    .execute(conn)?;
            }
        }
    }
    // A later write over all concurrent values settles the field.
    for (field, id) in existing {
        if !found.iter().any(|f| f.field == field) {
            diesel::update(conflicts::table.find(id))
                .set((
                    conflicts::status.eq(ConflictStatus::Superseded.as_str()),
                    conflicts::updated_at.eq(at),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}
