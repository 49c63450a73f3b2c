//! What a push changed inside a document, so that the work after a merge (projection,
//! conflict scan) covers only that part: a session that has grown to thousands of
//! attendance entries would otherwise be read whole on every push to it.

use std::{
    collections::BTreeSet,
    panic::{AssertUnwindSafe, catch_unwind},
};

use automerge::{Automerge, Change, ObjId, Prop, ReadDoc, legacy};
use sync_protocol::documents::DocType;

/// Above this many touched entries the whole document is re-read: cheaper than one
/// statement per entry, and the push already costs in proportion to its size.
const MAX_ENTRIES: usize = 256;

/// The part of a document that the applied changes may have altered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Anything: re-read the whole document.
    Everything,
    /// Only these attendance entries of a training session (participant ids); the
    /// session's own fields are untouched.
    Entries(BTreeSet<String>),
}

/// Where `changes` (already applied to `doc`) wrote. Only training sessions are narrowed:
/// other records are a few fields. Anything unexpected (an operation on the session's
/// own fields, an object the document cannot place) means `Everything`.
pub fn changed<'a>(
    doc_type: DocType,
    doc: &Automerge,
    changes: impl IntoIterator<Item = &'a Change>,
) -> Changed {
    if doc_type != DocType::TrainingSession {
        return Changed::Everything;
    }
    // automerge is not trusted not to panic on a document built from client bytes.
    catch_unwind(AssertUnwindSafe(|| entries(doc, changes)))
        .ok()
        .flatten()
        .filter(|e| e.len() <= MAX_ENTRIES)
        // Flags and conflicts name fields by dotted path: `attendance.a.b` could be entry
        // `a.b` or field `b` of entry `a`, so such ids cannot be narrowed safely.
        .filter(|e| e.iter().all(|pid| !pid.contains('.')))
        .map_or(Changed::Everything, Changed::Entries)
}

fn entries<'a>(
    doc: &Automerge,
    changes: impl IntoIterator<Item = &'a Change>,
) -> Option<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for change in changes {
        for op in change.decode().operations {
            let path = match &op.obj {
                legacy::ObjectId::Root => Vec::new(),
                legacy::ObjectId::Id(legacy::OpId(counter, actor)) => {
                    let obj: ObjId = doc
                        .import_obj(&format!("{counter}@{}", actor.to_hex_string()))
                        .ok()?;
                    doc.parents(&obj).ok()?.path()
                }
            };
            let mut props = path.into_iter().map(|(_, prop)| prop);
            let pid = match (props.next(), &op.key) {
                // An operation on the session's own fields (or on `attendance` itself).
                (None, _) => return None,
                (Some(Prop::Map(top)), legacy::Key::Map(key)) if top == "attendance" => {
                    match props.next() {
                        Some(Prop::Map(pid)) => pid,
                        Some(Prop::Seq(_)) => return None,
                        None => key.to_string(),
                    }
                }
                (Some(Prop::Map(top)), legacy::Key::Seq(_)) if top == "attendance" => {
                    match props.next() {
                        Some(Prop::Map(pid)) => pid,
                        _ => return None,
                    }
                }
                _ => return None,
            };
            out.insert(pid);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use automerge::{ROOT, transaction::Transactable};
    use sync_protocol::documents::{AttendanceEntry, TrainingSession};

    use super::*;

    fn entry() -> AttendanceEntry {
        AttendanceEntry {
            status: Some("present".into()),
            ..AttendanceEntry::default()
        }
    }

    /// The changes `edit` makes to a copy of `doc`, applied to it, and what they touched.
    fn touched(
        doc: &mut Automerge,
        doc_type: DocType,
        edit: impl FnOnce(&mut Automerge),
    ) -> Changed {
        let before = doc.get_heads();
        let mut fork = doc.fork();
        edit(&mut fork);
        let changes: Vec<Change> = fork.get_changes(&before);
        doc.apply_changes(changes.clone()).unwrap();
        changed(doc_type, doc, &changes)
    }

    #[test]
    fn names_the_entries_a_change_wrote_and_nothing_narrower_than_the_truth() {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        TrainingSession::default().write(&mut tx, true).unwrap();
        TrainingSession::write_attendance(&mut tx, "a", &entry()).unwrap();
        tx.commit();
        let session = DocType::TrainingSession;

        // A new entry (a put on `attendance`) and a field of an existing one.
        let got = touched(&mut doc, session, |d| {
            let mut tx = d.transaction();
            TrainingSession::write_attendance(&mut tx, "b", &entry()).unwrap();
            let (_, att) = tx.get(ROOT, "attendance").unwrap().unwrap();
            let (_, a) = tx.get(&att, "a").unwrap().unwrap();
            tx.put(&a, "hours", 2.0).unwrap();
            tx.commit();
        });
        assert_eq!(got, Changed::Entries(["a".into(), "b".into()].into()));

        // An entry removed.
        let got = touched(&mut doc, session, |d| {
            let mut tx = d.transaction();
            let (_, att) = tx.get(ROOT, "attendance").unwrap().unwrap();
            tx.delete(&att, "a").unwrap();
            tx.commit();
        });
        assert_eq!(got, Changed::Entries(["a".into()].into()));

        // The session's own fields, alone or with an entry: everything.
        let got = touched(&mut doc, session, |d| {
            let mut tx = d.transaction();
            TrainingSession::write_attendance(&mut tx, "c", &entry()).unwrap();
            tx.put(ROOT, "planned_hours", 3.0).unwrap();
            tx.commit();
        });
        assert_eq!(got, Changed::Everything);

        // An id with a dot is ambiguous in the dotted field paths: everything.
        let got = touched(&mut doc, session, |d| {
            let mut tx = d.transaction();
            TrainingSession::write_attendance(&mut tx, "x.status", &entry()).unwrap();
            tx.commit();
        });
        assert_eq!(got, Changed::Everything);

        // Other record types are never narrowed.
        let got = touched(&mut doc, DocType::Member, |d| {
            let mut tx = d.transaction();
            TrainingSession::write_attendance(&mut tx, "d", &entry()).unwrap();
            tx.commit();
        });
        assert_eq!(got, Changed::Everything);
    }
}
