//! The shape of a change's operations, checked before automerge applies it: operations a
//! correct Automerge client never writes (an insert on a map key, a list position inside
//! a map, a Table, a counter increment the record schemas have no use for, two concurrent
//! writes of one field inside one change) and objects nested deeper than any record
//! schema needs. automerge 0.12 accepts some of these and then fails later: a stored log
//! that no fresh device can load, a stack overflow in a walk over the document, a
//! conflict with a million values.

use std::{
    collections::HashMap,
    panic::{AssertUnwindSafe, catch_unwind},
};

use automerge::{ActorId, Automerge, Change, ObjType, ReadDoc, legacy};
use sync_protocol::ChangeError;

/// Deepest object a change may create, counting the document's root map as 0. The record
/// schemas need 3 (root -> `attendance` -> entry -> a text value); the rest is headroom.
pub const MAX_DEPTH: usize = 8;
/// Most operations one change may carry. A tablet's change is an edit of a record: ~250
/// operations for a 30-entry session written with default JavaScript types.
pub const MAX_OPS_PER_CHANGE: usize = 100_000;
/// Highest operation counter a document may reach. @automerge/automerge 3.5 cannot load a
/// document whose counters pass about 2^26; this stays well below.
pub const MAX_DOCUMENT_OPS: u64 = 1 << 24;
/// How far above its dependencies' highest operation a change may start. A correct client
/// starts exactly one above; the margin is for clients that reserve counters.
pub const START_OP_MARGIN: u64 = 1 << 16;
/// Latest change time accepted, in milliseconds since 1970 (the year 2100). Rust's
/// `commit()` stamps 0, so 0 is allowed; negative times are not.
pub const MAX_TIME_MS: i64 = 4_102_444_800_000;

type OpKey = (u64, ActorId);

fn op_key(id: &legacy::OpId) -> OpKey {
    (id.0, id.1.clone())
}

/// What is known of the objects changes refer to: those of the base document (looked up
/// once each) and those created by changes already accepted in this round.
#[derive(Default)]
pub struct Shapes {
    objects: HashMap<OpKey, (ObjType, usize)>,
}

fn unsupported(what: impl Into<String>) -> ChangeError {
    ChangeError::UnsupportedOperation(what.into())
}

impl Shapes {
    fn object(&mut self, base: &Automerge, obj: &legacy::ObjectId) -> Option<(ObjType, usize)> {
        let id = match obj {
            legacy::ObjectId::Root => return Some((ObjType::Map, 0)),
            legacy::ObjectId::Id(id) => id,
        };
        if let Some(known) = self.objects.get(&op_key(id)) {
            return Some(*known);
        }
        let ex = base
            .import_obj(&format!("{}@{}", id.0, id.1.to_hex_string()))
            .ok()?;
        let kind = base.object_type(&ex).ok()?;
        // `parents` walks up iteratively; the base was checked when it was stored, so it
        // is at most MAX_DEPTH deep.
        let depth = base.parents(&ex).ok()?.count();
        self.objects.insert(op_key(id), (kind, depth));
        Some((kind, depth))
    }

    /// Checks `change` against the base document and the changes accepted before it, and
    /// remembers the objects it creates.
    pub fn check(&mut self, base: &Automerge, change: &Change) -> Result<(), ChangeError> {
        if change.len() > MAX_OPS_PER_CHANGE {
            return Err(ChangeError::TooManyOperations(format!(
                "the change has {} operations; at most {MAX_OPS_PER_CHANGE} are accepted",
                change.len()
            )));
        }
        if change.max_op() > MAX_DOCUMENT_OPS {
            return Err(ChangeError::TooManyOperations(format!(
                "the document would pass {MAX_DOCUMENT_OPS} operations"
            )));
        }
        if !(0..=MAX_TIME_MS).contains(&change.timestamp()) {
            return Err(ChangeError::Rejected(format!(
                "time {} is outside 0..={MAX_TIME_MS} milliseconds since 1970",
                change.timestamp()
            )));
        }
        let mut deps = change.deps().to_vec();
        deps.sort();
        deps.dedup();
        if deps.len() != change.deps().len() {
            return Err(ChangeError::Rejected("a dependency is listed twice".into()));
        }
        if change.actor_id().to_bytes().is_empty() || change.actor_id().to_bytes().len() > 32 {
            return Err(ChangeError::Rejected(
                "an actor id must have 1 to 32 bytes".into(),
            ));
        }
        let decoded = catch_unwind(AssertUnwindSafe(|| change.decode()))
            .map_err(|_| ChangeError::Malformed("the operations could not be decoded".into()))?;
        let mut made: HashMap<OpKey, (ObjType, usize)> = HashMap::new();
        // The latest value this change wrote to each field (`None` after a delete), so
        // that a later operation on the same field must supersede it, as a correct
        // client's transaction always does: one change leaves at most one value per field.
        let mut last_write: HashMap<(Option<OpKey>, FieldKey), Option<OpKey>> = HashMap::new();
        for (i, op) in decoded.operations.iter().enumerate() {
            let id: OpKey = (
                change.start_op().get() + i as u64,
                change.actor_id().clone(),
            );
            let here = match &op.obj {
                legacy::ObjectId::Id(o) => made.get(&op_key(o)).copied(),
                legacy::ObjectId::Root => None,
            };
            let (kind, depth) = match here {
                Some(found) => found,
                None => self.object(base, &op.obj).ok_or_else(|| {
                    ChangeError::Rejected("an operation refers to an unknown object".into())
                })?,
            };
            let field = match (kind, &op.key, op.insert) {
                (ObjType::Table, _, _) => return Err(unsupported("Table objects are not used")),
                (ObjType::Map, legacy::Key::Map(k), false) => FieldKey::Map(k.to_string()),
                (ObjType::Map, legacy::Key::Map(_), true) => {
                    return Err(unsupported("an insert on a map key"));
                }
                (ObjType::Map, legacy::Key::Seq(_), _) => {
                    return Err(unsupported("a list position used as a map key"));
                }
                (ObjType::List | ObjType::Text, legacy::Key::Map(_), _) => {
                    return Err(unsupported("a map key used in a list or text"));
                }
                (
                    ObjType::List | ObjType::Text,
                    legacy::Key::Seq(legacy::ElementId::Head),
                    false,
                ) => {
                    return Err(unsupported("an update of the head of a list"));
                }
                (ObjType::List | ObjType::Text, legacy::Key::Seq(_), true) => FieldKey::Inserted,
                (
                    ObjType::List | ObjType::Text,
                    legacy::Key::Seq(legacy::ElementId::Id(e)),
                    false,
                ) => FieldKey::Element(op_key(e)),
            };
            match &op.action {
                legacy::OpType::Increment(_) => {
                    return Err(unsupported("counters are not used by any record"));
                }
                legacy::OpType::Make(ObjType::Table) => {
                    return Err(unsupported("Table objects are not used"));
                }
                legacy::OpType::Make(t) => {
                    if depth + 1 > MAX_DEPTH {
                        return Err(ChangeError::TooDeep(MAX_DEPTH));
                    }
                    made.insert(id.clone(), (*t, depth + 1));
                }
                legacy::OpType::MarkBegin(_) | legacy::OpType::MarkEnd(_)
                    if kind != ObjType::Text =>
                {
                    return Err(unsupported("marks outside text"));
                }
                _ => {}
            }
            if field != FieldKey::Inserted {
                let obj = match &op.obj {
                    legacy::ObjectId::Root => None,
                    legacy::ObjectId::Id(o) => Some(op_key(o)),
                };
                let written = (!matches!(op.action, legacy::OpType::Delete)).then(|| id.clone());
                if let Some(Some(previous)) = last_write.insert((obj, field), written)
                    && !op.pred.iter().any(|p| op_key(p) == previous)
                {
                    return Err(unsupported(
                        "two concurrent writes of one field inside one change",
                    ));
                }
            }
        }
        self.objects.extend(made);
        Ok(())
    }
}

/// A field of an object, for spotting two writes of it in one change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FieldKey {
    Map(String),
    Element(OpKey),
    /// A new list element: never written twice.
    Inserted,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use automerge::{AutoCommit, ROOT, transaction::Transactable};

    use super::*;

    fn last_change(doc: &mut AutoCommit) -> Change {
        doc.commit();
        doc.get_changes(&[]).last().cloned().unwrap()
    }

    #[test]
    fn ordinary_edits_pass_and_deep_nesting_is_refused() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "type", "training_session").unwrap();
        let att = doc.put_object(ROOT, "attendance", ObjType::Map).unwrap();
        let entry = doc.put_object(&att, "p1", ObjType::Map).unwrap();
        doc.put_object(&entry, "name", ObjType::Text).unwrap();
        let first = last_change(&mut doc);
        let base = Automerge::new();
        assert!(Shapes::default().check(&base, &first).is_ok());

        let mut deep = AutoCommit::new();
        let mut obj = ROOT;
        for i in 0..=MAX_DEPTH {
            obj = deep
                .put_object(&obj, format!("k{i}"), ObjType::Map)
                .unwrap();
        }
        let change = last_change(&mut deep);
        assert_eq!(
            Shapes::default().check(&base, &change),
            Err(ChangeError::TooDeep(MAX_DEPTH))
        );
    }

    #[test]
    fn delete_then_put_of_one_field_in_one_change_is_accepted() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "village", "a").unwrap();
        doc.commit();
        let first = doc.get_changes(&[])[0].clone();
        let mut base = Automerge::new();
        base.apply_changes(vec![first]).unwrap();
        doc.delete(ROOT, "village").unwrap();
        doc.put(ROOT, "village", "b").unwrap();
        doc.put(ROOT, "village", "c").unwrap();
        let second = last_change(&mut doc);
        assert!(Shapes::default().check(&base, &second).is_ok());
    }

    #[test]
    fn counters_and_tables_are_refused() {
        let base = Automerge::new();
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "n", automerge::ScalarValue::counter(1))
            .unwrap();
        doc.commit();
        doc.increment(ROOT, "n", 2).unwrap();
        let changes = doc.get_changes(&[]);
        let mut shapes = Shapes::default();
        assert!(shapes.check(&base, &changes[0]).is_ok());
        let mut applied = Automerge::new();
        applied.apply_changes(vec![changes[0].clone()]).unwrap();
        assert_eq!(
            shapes.check(&applied, &changes[1]).unwrap_err().code(),
            "unsupported_operation"
        );

        let mut table = AutoCommit::new();
        table.put_object(ROOT, "t", ObjType::Table).unwrap();
        let change = last_change(&mut table);
        assert_eq!(
            Shapes::default().check(&base, &change).unwrap_err().code(),
            "unsupported_operation"
        );
    }
}
