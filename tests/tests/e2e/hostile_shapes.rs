//! Hostile changes with valid checksums that an outside battery got through (issue 12):
//! nesting that overflowed the server's stack, start ops and times that leave a record no
//! tablet can load or edit, operations no correct client writes (an insert on a map key,
//! a list position in a map, a Table, a counter), an operation-count bomb and
//! non-canonical ids. Each is refused with its code; afterwards the server is up, the
//! record loads from its stored change log from scratch and takes an ordinary edit.
//!
//! The crafted histories are also kept in `fuzz/fixtures/change_apply/hostile-*`
//! (`COOPSYNC_WRITE_FIXTURES=1` rewrites them), so the fuzz replay covers them for good.

use std::num::NonZeroU64;

use automerge::{
    ActorId, AutoCommit, Automerge, Change, ObjType, ROOT, ReadDoc, ScalarValue, legacy,
    transaction::Transactable,
};
use coopsync::db::schema::{changes, documents};
use coopsync_tests::{TestApp, dual_backend_tests, tablet::Tablet};

use super::hostile::{craft, push};
use diesel::prelude::*;
use sync_protocol::{
    PROTOCOL_VERSION,
    messages::{DocChanges, SyncRequest},
};

fn actor(n: u8) -> ActorId {
    ActorId::from(vec![n; 16])
}

/// A cooperative's first change, made by `actor`.
fn base_doc(actor: ActorId) -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(actor);
    doc.put(ROOT, "type", "cooperative").unwrap();
    doc.put(ROOT, "name_latin", "Target").unwrap();
    doc.put(ROOT, "province_code", "07").unwrap();
    doc.put(ROOT, "status", "active").unwrap();
    doc.commit();
    doc
}

fn last(doc: &mut AutoCommit) -> Change {
    doc.get_last_local_change().unwrap().clone()
}

/// One case: its name, and the change to push after the base document's first change.
pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) code: &'static str,
    pub(super) second: Vec<u8>,
}

/// Every case, crafted on a base document of its own actor (`seed`): the same first
/// change pushed for two documents would be refused as a collision.
/// `n` copies of `first` with a damaged byte and a distinct tail: each refused with its
/// own hash (checksum mismatch).
pub(super) fn damaged_changes(first: &[u8], n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut b = first.to_vec();
            let len = b.len();
            b[len - 1 - (i as usize % 8)] ^= 0x55;
            b.extend_from_slice(&i.to_le_bytes());
            b
        })
        .collect()
}

/// `n` distinct changes made from `first`, each depending on a change nobody has.
pub(super) fn orphan_changes(first: &[u8], n: u32) -> Vec<Vec<u8>> {
    let template = Change::try_from(first).unwrap();
    (0..n)
        .map(|i| {
            craft(&template, |c| {
                let mut h = [0u8; 32];
                h[..4].copy_from_slice(&i.to_le_bytes());
                c.deps = vec![automerge::ChangeHash(h)];
                c.message = Some(format!("orphan {i}"));
            })
        })
        .collect()
}

pub(super) fn cases(seed: u8) -> (Vec<u8>, Vec<Case>) {
    let a = actor(seed);
    let mut doc = base_doc(a.clone());
    let first = doc.get_changes(&[])[0].clone();
    // A legitimate second change, the template of most forgeries.
    let mut fork = doc.fork().with_actor(a.clone());
    fork.put(ROOT, "village", "Real").unwrap();
    fork.commit();
    let second = last(&mut fork);

    let mut out = Vec::new();

    // 1. A thousand nested maps: the server's own conflict scan recursed and overflowed.
    let mut deep = doc.fork().with_actor(a.clone());
    let mut obj = ROOT;
    for i in 0..1000 {
        obj = deep
            .put_object(&obj, format!("n{i}"), ObjType::Map)
            .unwrap();
    }
    deep.commit();
    out.push(Case {
        name: "deep-nesting",
        code: "too_deeply_nested",
        second: last(&mut deep).raw_bytes().to_vec(),
    });

    // 2. start_op = u32::MAX, and a time no later edit can be encoded after.
    out.push(Case {
        name: "start-op-max",
        code: "rejected_change",
        second: craft(&second, |c| {
            c.start_op = NonZeroU64::new(u64::from(u32::MAX)).unwrap();
        }),
    });
    out.push(Case {
        name: "time-min",
        code: "rejected_change",
        second: craft(&second, |c| c.time = i64::MIN),
    });

    // 3. An insert on a map key; a list position used as a key of the root map.
    out.push(Case {
        name: "insert-on-map-key",
        code: "unsupported_operation",
        second: craft(&second, |c| c.operations[0].insert = true),
    });
    out.push(Case {
        name: "seq-key-in-map",
        code: "unsupported_operation",
        second: craft(&second, |c| {
            c.operations[0].key =
                legacy::Key::Seq(legacy::ElementId::Id(legacy::OpId(1, a.clone())));
        }),
    });

    // 4. Operation-count bombs: one change over the per-change cap, and many concurrent
    // writes of one field inside one change (the conflict with a million values).
    out.push(Case {
        name: "op-count-bomb",
        code: "too_many_operations",
        second: craft(&second, |c| {
            let op = c.operations[0].clone();
            c.operations = vec![op; 100_001];
        }),
    });
    out.push(Case {
        name: "concurrent-puts-in-one-change",
        code: "unsupported_operation",
        second: craft(&second, |c| {
            let op = c.operations[0].clone();
            c.operations = (0..1000)
                .map(|i| legacy::Op {
                    action: legacy::OpType::Put(ScalarValue::Str(format!("v{i}").into())),
                    ..op.clone()
                })
                .collect();
        }),
    });

    // 5. A Table object, a counter increment, a dependency listed twice.
    let mut table = doc.fork().with_actor(a.clone());
    table.put_object(ROOT, "t", ObjType::Table).unwrap();
    table.commit();
    out.push(Case {
        name: "table-object",
        code: "unsupported_operation",
        second: last(&mut table).raw_bytes().to_vec(),
    });
    out.push(Case {
        name: "increment",
        code: "unsupported_operation",
        second: craft(&second, |c| {
            c.operations[0].action = legacy::OpType::Increment(1);
        }),
    });
    out.push(Case {
        name: "duplicate-deps",
        code: "rejected_change",
        second: craft(&second, |c| {
            let d = c.deps[0];
            c.deps = vec![d, d];
        }),
    });
    // 6. The actor's own op ids again, with no dependencies to show it.
    out.push(Case {
        name: "own-op-ids-without-deps",
        code: "rejected_change",
        second: craft(&second, |c| {
            c.deps.clear();
            c.start_op = NonZeroU64::new(1).unwrap();
        }),
    });
    (first.raw_bytes().to_vec(), out)
}

/// Keeps the crafted histories as fuzz fixtures (first change followed by the crafted
/// one), when asked to.
fn write_fixtures(first: &[u8], cases: &[Case]) {
    if std::env::var("COOPSYNC_WRITE_FIXTURES").as_deref() != Ok("1") {
        return;
    }
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fixtures/change_apply");
    for case in cases {
        let mut bytes = first.to_vec();
        bytes.extend_from_slice(&case.second);
        std::fs::write(dir.join(format!("hostile-{}", case.name)), bytes).unwrap();
    }
}

/// The stored change log of `doc_id` applied from scratch, one change per call as a new
/// tablet applying its first pull would.
fn rebuild_from_log(app: &TestApp, doc_id: &str) -> Automerge {
    let mut conn = app.db.connect();
    let logged: Vec<Vec<u8>> = changes::table
        .filter(changes::document_id.eq(doc_id))
        .order(changes::seq)
        .select(changes::bytes)
        .load(&mut conn)
        .unwrap();
    let mut doc = Automerge::new();
    for bytes in logged {
        doc.apply_changes(vec![Change::try_from(&bytes[..]).unwrap()])
            .unwrap();
    }
    let snapshot: Vec<u8> = documents::table
        .find(doc_id)
        .select(documents::snapshot)
        .first(&mut conn)
        .unwrap();
    let stored = Automerge::load(&snapshot).unwrap();
    let (mut x, mut y) = (doc.get_heads(), stored.get_heads());
    x.sort();
    y.sort();
    assert_eq!(x, y, "the change log and the snapshot agree");
    doc
}

fn hostile_shapes_are_refused_and_the_record_stays_usable(app: &TestApp) {
    app.create_user("attacker", "enumerator", &["07"], &[]);
    let mut t = Tablet::new(app, "attacker");
    let (first, all) = cases(0xa0);
    write_fixtures(&first, &all);
    for i in 0..all.len() {
        let (first, mut all) = cases(0xa1 + i as u8);
        let case = all.swap_remove(i);
        let doc_id = uuid::Uuid::new_v4().to_string();
        let r = push(&mut t, &doc_id, "cooperative", std::slice::from_ref(&first));
        assert_eq!(r["applied"], 1, "{}: {r}", case.name);
        let r = push(
            &mut t,
            &doc_id,
            "cooperative",
            std::slice::from_ref(&case.second),
        );
        assert_eq!(r["applied"], 0, "{}: {r}", case.name);
        assert_eq!(r["errors"][0]["code"], case.code, "{}: {r}", case.name);
        assert_eq!(app.get("/healthz", None).status, 200, "{}", case.name);

        // The record loads from its log from scratch and takes an ordinary edit, and the
        // server takes that edit.
        let rebuilt = rebuild_from_log(app, &doc_id);
        let mut next = AutoCommit::load(&rebuilt.save())
            .unwrap()
            .with_actor(ActorId::random());
        next.put(ROOT, "village", "after").unwrap();
        next.commit();
        let edit = next.get_last_local_change().unwrap().raw_bytes().to_vec();
        let r = push(&mut t, &doc_id, "cooperative", &[edit]);
        assert_eq!(r["applied"], 1, "{}: {r}", case.name);
        let doc = rebuild_from_log(app, &doc_id);
        assert_eq!(
            doc.get(ROOT, "village")
                .unwrap()
                .map(|(v, _)| v.to_string()),
            Some("\"after\"".to_string()),
            "{}",
            case.name
        );
    }
    // Syncing normally still works.
    t.sync();
}

fn non_canonical_ids_are_refused_or_read_as_the_one_id(app: &TestApp) {
    app.create_user("e07", "enumerator", &["07"], &[]);
    app.create_user("e12", "enumerator", &["12"], &[]);
    let mut t07 = Tablet::new(app, "e07");
    let mut t12 = Tablet::new(app, "e12");
    let id = uuid::Uuid::new_v4();
    let mut coop = AutoCommit::new();
    coop.put(ROOT, "type", "cooperative").unwrap();
    coop.put(ROOT, "name_latin", "Twelve").unwrap();
    coop.put(ROOT, "province_code", "12").unwrap();
    coop.commit();
    let change = coop.get_changes(&[])[0].raw_bytes().to_vec();
    for spelling in [
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
        id.simple().to_string(),
    ] {
        let r = push(
            &mut t12,
            &spelling,
            "cooperative",
            std::slice::from_ref(&change),
        );
        assert_eq!(
            r["errors"][0]["code"], "malformed_change",
            "{spelling}: {r}"
        );
    }
    let r = push(&mut t12, &id.to_string(), "cooperative", &[change]);
    assert_eq!(r["applied"], 1, "{r}");
    let mut conn = app.db.connect();
    let rows: i64 = documents::table.count().get_result(&mut conn).unwrap();
    assert_eq!(rows, 1, "one UUID, one record");

    // A province-07 member naming the province-12 cooperative in braces is the 12
    // cooperative's member: out of the 07 enumerator's scope.
    let mut member = AutoCommit::new();
    member.put(ROOT, "type", "member").unwrap();
    member.put(ROOT, "full_name", "Braces").unwrap();
    member.put(ROOT, "province_code", "07").unwrap();
    member
        .put(ROOT, "cooperative_id", format!("{{{id}}}"))
        .unwrap();
    member.commit();
    let m = member.get_changes(&[])[0].raw_bytes().to_vec();
    let r = push(&mut t07, &uuid::Uuid::new_v4().to_string(), "member", &[m]);
    assert_eq!(r["errors"][0]["code"], "out_of_scope", "{r}");
}

fn quarantine_and_pending_are_bounded_per_request_and_device(app: &TestApp) {
    use base64::Engine as _;
    use coopsync::db::schema::{audit_log, pending_changes, quarantine};
    app.create_user("flooder", "enumerator", &["07"], &[]);
    let mut t = Tablet::new(app, "flooder");
    let doc_id = uuid::Uuid::new_v4().to_string();
    // 1,000 damaged changes in one request: each is answered, at most 256 are stored
    // (plus one summary row), and the request writes one audit row.
    let (first, _) = cases(0xb0);
    let damaged = damaged_changes(&first, 1000);
    let r = push(&mut t, &doc_id, "cooperative", &damaged);
    assert_eq!(
        r["errors"].as_array().unwrap().len(),
        1000,
        "every change is answered"
    );
    let mut conn = app.db.connect();
    let rows: i64 = quarantine::table.count().get_result(&mut conn).unwrap();
    assert_eq!(rows, 257, "256 stored and one summary");
    let overflow: i64 = quarantine::table
        .filter(quarantine::code.eq("quarantine_overflow"))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(overflow, 1);
    let audits: i64 = audit_log::table
        .filter(audit_log::action.eq("sync.quarantine"))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(audits, 1);

    // An oversized "change" keeps a 64 KiB prefix, its size and digest.
    let big = vec![0x85u8; 1_500_000];
    push(&mut t, &doc_id, "cooperative", &[big]);
    let (size, stored): (Option<i64>, Option<Vec<u8>>) = quarantine::table
        .filter(quarantine::code.eq("change_too_large"))
        .select((quarantine::original_size, quarantine::bytes))
        .first(&mut conn)
        .unwrap();
    assert_eq!(size, Some(1_500_000));
    assert_eq!(stored.unwrap().len(), 64 * 1024);

    // Changes waiting on dependencies nobody has: 2,000 per device, then too_many_pending.
    let orphans: Vec<String> = orphan_changes(&first, 2001)
        .iter()
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
        .collect();
    let (status, body) = t.transport.post(&SyncRequest {
        protocol_version: PROTOCOL_VERSION,
        push: vec![DocChanges {
            doc_id: uuid::Uuid::new_v4().to_string(),
            doc_type: "cooperative".into(),
            changes: orphans,
        }],
        ..SyncRequest::default()
    });
    assert_eq!(status, 200);
    let r = &body["push"][0];
    assert_eq!(
        r["pending"].as_array().unwrap().len(),
        2000,
        "{}",
        r["errors"]
    );
    assert_eq!(
        r["errors"][0]["code"], "too_many_pending",
        "{}",
        r["errors"]
    );
    let held: i64 = pending_changes::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(held, 2000);
}

/// An enumerator's device creates at most 5,000 records a day (a hostile one made 10,000 in
/// 3.5 s); the day's count is read from `documents.created_by_device`.
fn new_documents_per_enumerator_device_are_capped(app: &TestApp) {
    app.create_user("creator", "enumerator", &["07"], &[]);
    let mut t = Tablet::new(app, "creator");
    let coop = t.create_cooperative("07", "Mine");
    t.sync();
    let mut conn = app.db.connect();
    let now = chrono::Utc::now().naive_utc();
    let rows: Vec<_> = (0..4999)
        .map(|_| {
            (
                documents::id.eq(uuid::Uuid::new_v4().to_string()),
                documents::doc_type.eq("cooperative"),
                documents::province_code.eq(Some("07")),
                documents::snapshot.eq(Vec::<u8>::new()),
                documents::heads.eq(""),
                documents::change_count.eq(0i64),
                documents::last_seq.eq(0i64),
                documents::created_at.eq(now),
                documents::updated_at.eq(now),
                documents::created_by_device.eq(Some(t.session.device_id.clone())),
            )
        })
        .collect();
    conn.transaction::<_, diesel::result::Error, _>(|conn| {
        for row in rows {
            diesel::insert_into(documents::table)
                .values(row)
                .execute(conn)?;
        }
        Ok(())
    })
    .unwrap();
    // 4,999 made today plus the cooperative: the next new record is refused, an edit of
    // an existing one is not.
    let extra = t.create_cooperative("07", "One too many");
    t.set(&coop, "village", "Still editable");
    t.sync();
    let rejected: Vec<(String, String)> = t
        .client
        .rejected()
        .iter()
        .map(|r| (r.doc_id.clone(), r.code.clone()))
        .collect();
    assert_eq!(rejected, [(extra, "too_many_new_documents".to_string())]);
}

dual_backend_tests!(
    new_documents_per_enumerator_device_are_capped,
    quarantine_and_pending_are_bounded_per_request_and_device,
    hostile_shapes_are_refused_and_the_record_stays_usable,
    non_canonical_ids_are_refused_or_read_as_the_one_id,
);
