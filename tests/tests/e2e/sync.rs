//! Sync end to end: tablets with real Automerge documents sync over HTTP; the server
//! merges, keeps every change, projects, records conflicts, and serves pulls by scope.

use std::collections::BTreeSet;

use automerge::{ReadDoc, transaction::Transactable};
use base64::Engine as _;
use coopsync::db::schema::{
    attendance, changes, conflicts, pending_changes, quarantine, training_sessions,
};
use coopsync_tests::{TestApp, dual_backend_tests, tablet::Tablet};
use diesel::prelude::*;
use serde_json::json;
use sync_protocol::{
    PROTOCOL_VERSION,
    messages::{DocChanges, SyncRequest},
};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// How many attendance rows the projection holds for a session.
pub fn attendance_rows(conn: &mut coopsync::db::DbConnection, session: &str) -> i64 {
    attendance::table
        .filter(attendance::session_id.eq(session))
        .count()
        .get_result(conn)
        .unwrap()
}

/// The fields of a document's open conflicts.
fn open_conflict_fields(conn: &mut coopsync::db::DbConnection, doc_id: &str) -> Vec<String> {
    conflicts::table
        .filter(conflicts::document_id.eq(doc_id))
        .filter(conflicts::status.eq("open"))
        .select(conflicts::field)
        .load(conn)
        .unwrap()
}

fn two_enumerators(app: &TestApp) -> (Tablet, Tablet) {
    app.create_user("enum.a", "enumerator", &["07"], &[]);
    app.create_user("enum.b", "enumerator", &["07"], &[]);
    (Tablet::new(app, "enum.a"), Tablet::new(app, "enum.b"))
}

fn offline_attendance_converges(app: &TestApp, a_first: bool) {
    let (mut a, mut b) = two_enumerators(app);
    let coop = a.create_cooperative("07", "Kampot Pepper");
    let session = a.create_session("07", &coop);
    a.sync();
    b.sync();
    assert!(b.client.doc(&session).is_some(), "b received the session");
    // Both offline: each records a different participant.
    let pa = uuid::Uuid::new_v4().to_string();
    let pb = uuid::Uuid::new_v4().to_string();
    a.record_attendance(&session, &pa, None, 6.0);
    b.record_attendance(&session, &pb, None, 3.5);
    if a_first {
        a.sync();
        b.sync();
    } else {
        b.sync();
        a.sync();
    }
    a.sync();
    b.sync();
    assert_eq!(a.heads(&session), b.heads(&session), "tablets converge");
    let mut conn = app.db.connect();
    let server = coopsync::records::store::find_document(&mut conn, &session)
        .unwrap()
        .unwrap();
    let server_doc = automerge::Automerge::load(&server.snapshot).unwrap();
    let mut server_heads = server_doc.get_heads();
    server_heads.sort();
    assert_eq!(server_heads, a.heads(&session), "server converges");
    let rows: Vec<(String, Option<f64>)> = attendance::table
        .filter(attendance::session_id.eq(&session))
        .select((attendance::participant_id, attendance::hours))
        .order(attendance::participant_id)
        .load(&mut conn)
        .unwrap();
    let mut expected = vec![(pa, Some(6.0)), (pb, Some(3.5))];
    expected.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(rows, expected);
}

fn two_tablets_take_attendance_offline_a_then_b(app: &TestApp) {
    offline_attendance_converges(app, true);
}

fn two_tablets_take_attendance_offline_b_then_a(app: &TestApp) {
    offline_attendance_converges(app, false);
}

fn same_field_on_two_tablets_is_one_conflict_with_both_authors(app: &TestApp) {
    let (mut a, mut b) = two_enumerators(app);
    let coop = a.create_cooperative("07", "Kampot Salt");
    let session = a.create_session("07", &coop);
    a.sync();
    b.sync();
    a.set(&session, "location", "Commune office");
    b.set(&session, "location", "Village school");
    a.sync();
    b.sync();
    a.sync();
    let winner = match a
        .client
        .doc(&session)
        .unwrap()
        .get(automerge::ROOT, "location")
        .unwrap()
    {
        Some((automerge::Value::Scalar(s), _)) => s.as_str().unwrap().to_string(),
        other => panic!("{other:?}"),
    };
    let mut conn = app.db.connect();
    let rows: Vec<(String, String, String, String)> = conflicts::table
        .filter(conflicts::document_id.eq(&session))
        .filter(conflicts::status.eq("open"))
        .select((
            conflicts::field,
            conflicts::candidates,
            conflicts::winner,
            conflicts::status,
        ))
        .load(&mut conn)
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "location");
    let candidates: serde_json::Value = serde_json::from_str(&rows[0].1).unwrap();
    let values: BTreeSet<&str> = candidates
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, BTreeSet::from(["Commune office", "Village school"]));
    let devices: BTreeSet<&str> = candidates
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        devices,
        BTreeSet::from([a.session.device_id.as_str(), b.session.device_id.as_str()])
    );
    let users: BTreeSet<&str> = candidates
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), 2);
    assert_eq!(rows[0].2, json!(winner).to_string());
    let projected: Option<String> = training_sessions::table
        .find(&session)
        .select(training_sessions::location)
        .first(&mut conn)
        .unwrap();
    assert_eq!(
        projected.as_deref(),
        Some(winner.as_str()),
        "projection shows the deterministic winner"
    );
    // Someone sets it again after seeing both: the conflict is settled.
    a.set(&session, "location", "Commune office");
    a.sync();
    assert_eq!(
        open_conflict_fields(&mut conn, &session),
        Vec::<String>::new()
    );
}

fn raw_push(doc_id: &str, doc_type: &str, changes: Vec<String>) -> SyncRequest {
    SyncRequest {
        protocol_version: PROTOCOL_VERSION,
        push: vec![DocChanges {
            doc_id: doc_id.to_string(),
            doc_type: doc_type.to_string(),
            changes,
        }],
        pull: false,
        ..SyncRequest::default()
    }
}

fn change_bytes(tablet: &Tablet, doc_id: &str) -> Vec<Vec<u8>> {
    tablet
        .client
        .doc(doc_id)
        .unwrap()
        .get_changes(&[])
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect()
}

/// A document's whole history as a push would carry it (base64).
fn history_b64(tablet: &Tablet, doc_id: &str) -> Vec<String> {
    change_bytes(tablet, doc_id)
        .iter()
        .map(|c| b64(c))
        .collect()
}

fn the_same_batch_pushed_three_times_is_stored_once(app: &TestApp) {
    let (mut a, _) = two_enumerators(app);
    let coop = a.create_cooperative("07", "Triple");
    a.set(&coop, "village", "Trapeang");
    a.set(&coop, "commune", "Kampong Kraeng");
    let changes: Vec<String> = history_b64(&a, &coop);
    assert_eq!(changes.len(), 3);
    let request = raw_push(&coop, "cooperative", changes);
    let mut results = Vec::new();
    for _ in 0..3 {
        let (status, body) = a.transport.post(&request);
        assert_eq!(status, 200, "{body}");
        results.push((
            body["push"][0]["applied"].as_u64().unwrap(),
            body["push"][0]["duplicates"].as_u64().unwrap(),
        ));
    }
    assert_eq!(results, vec![(3, 0), (0, 3), (0, 3)]);
    let mut conn = app.db.connect();
    let stored: i64 = changes::table
        .filter(changes::document_id.eq(&coop))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(stored, 3);
}

fn children_before_parents_are_held_then_applied(app: &TestApp) {
    let (mut a, _) = two_enumerators(app);
    let coop = a.create_cooperative("07", "Out of order");
    a.set(&coop, "village", "One");
    a.set(&coop, "village", "Two");
    let bytes = change_bytes(&a, &coop);
    let (status, body) = a.transport.post(&raw_push(
        &coop,
        "cooperative",
        vec![b64(&bytes[2]), b64(&bytes[1])],
    ));
    assert_eq!(status, 200);
    assert_eq!(body["push"][0]["applied"], 0);
    assert_eq!(
        body["push"][0]["pending"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    let mut conn = app.db.connect();
    let held: i64 = pending_changes::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(held, 2);
    let (_, body) = a
        .transport
        .post(&raw_push(&coop, "cooperative", vec![b64(&bytes[0])]));
    assert_eq!(
        body["push"][0]["applied"], 3,
        "the parent unblocks its children: {body}"
    );
    let held: i64 = pending_changes::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(held, 0);
    let logged: i64 = changes::table.count().get_result(&mut conn).unwrap();
    assert_eq!(logged, 3);
    let village: Option<String> = coopsync::db::schema::cooperatives::table
        .find(&coop)
        .select(coopsync::db::schema::cooperatives::village)
        .first(&mut conn)
        .unwrap();
    assert_eq!(village.as_deref(), Some("Two"));
}

/// A large change, so that automerge's `bytes()` gives a compressed chunk.
fn compressed_chunk() -> Vec<u8> {
    let mut doc = automerge::AutoCommit::new();
    doc.put(automerge::ROOT, "type", "cooperative").unwrap();
    doc.put(automerge::ROOT, "name_latin", "x".repeat(4000))
        .unwrap();
    doc.commit();
    let mut change = doc.get_changes(&[])[0].clone();
    let bytes = change.bytes().to_vec();
    assert_eq!(bytes[8], 2, "expected a compressed chunk");
    bytes
}

fn bad_changes_are_quarantined_and_the_good_ones_applied(app: &TestApp) {
    let (mut a, mut b) = two_enumerators(app);
    let coop = a.create_cooperative("07", "Good one");
    let good = change_bytes(&a, &coop)[0].clone();
    let mut bad_checksum = good.clone();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] ^= 0x55;
    let truncated = good[..good.len() - 5].to_vec();
    let request = raw_push(
        &coop,
        "cooperative",
        vec![
            "%%% not base64 %%%".into(),
            b64(b"random bytes that are not automerge"),
            b64(&truncated),
            b64(&bad_checksum),
            b64(&compressed_chunk()),
            b64(&good),
        ],
    );
    let (status, body) = a.transport.post(&request);
    assert_eq!(status, 200, "{body}");
    let result = &body["push"][0];
    assert_eq!(result["applied"], 1, "{body}");
    let codes: Vec<(u64, &str)> = result["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (0, "invalid_encoding"),
            (1, "malformed_change"),
            (2, "truncated_change"),
            (3, "checksum_mismatch"),
            (4, "compressed_change"),
        ]
    );
    // Wrong document type: a session's changes sent as a member.
    let session = a.create_session("07", &coop);
    let session_changes: Vec<String> = history_b64(&a, &session);
    let (_, body) = a
        .transport
        .post(&raw_push(&session, "member", session_changes));
    assert_eq!(
        body["push"][0]["errors"][0]["code"], "wrong_document_type",
        "{body}"
    );
    // Another device's actor id: b replays a change made with a's actor.
    let other = a.create_cooperative("07", "Stolen actor");
    a.sync();
    a.set(&other, "village", "After");
    let last_change = change_bytes(&a, &other).pop().unwrap();
    let (_, body) = b
        .transport
        .post(&raw_push(&other, "cooperative", vec![b64(&last_change)]));
    assert_eq!(
        body["push"][0]["errors"][0]["code"], "foreign_actor",
        "{body}"
    );
    // A record outside the enumerator's provinces.
    let outside = b.create_cooperative("12", "Phnom Penh coop");
    let outside_changes: Vec<String> = history_b64(&b, &outside);
    let (_, body) = b
        .transport
        .post(&raw_push(&outside, "cooperative", outside_changes));
    assert_eq!(
        body["push"][0]["errors"][0]["code"], "out_of_scope",
        "{body}"
    );
    // All of it is kept in quarantine with its bytes; none of it reached the change log.
    let mut conn = app.db.connect();
    let q: Vec<(String, Option<Vec<u8>>)> = quarantine::table
        .select((quarantine::code, quarantine::bytes))
        .load(&mut conn)
        .unwrap();
    assert_eq!(
        q.len(),
        8,
        "{:?}",
        q.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    assert!(
        q.iter()
            .all(|(_, bytes)| bytes.as_ref().is_some_and(|b| !b.is_empty()))
    );
    let out_of_scope_logged: i64 = changes::table
        .filter(changes::document_id.eq(&outside))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(out_of_scope_logged, 0);
}

fn a_current_device_pulls_exactly_the_new_changes_in_its_scope(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("kampot", "enumerator", &["07"], &[]);
    let mut admin = Tablet::new(app, "nat");
    let mut reader = Tablet::new(app, "kampot");
    let mut ids_07 = Vec::new();
    for i in 0..40 {
        let province = if i % 2 == 0 { "07" } else { "12" };
        let id = admin.create_cooperative(province, &format!("Coop {i}"));
        if province == "07" {
            ids_07.push(id);
        }
    }
    admin.sync();
    reader.sync();
    assert_eq!(reader.client.docs().count(), 20, "only province 07");
    // Five new changes in scope and five outside it.
    let all: Vec<String> = admin.client.docs().map(|(id, _)| id.clone()).collect();
    let mut in_scope_hashes = BTreeSet::new();
    let mut edited = 0;
    for id in all {
        let in_07 = ids_07.contains(&id);
        admin.set(&id, "village", "Edited");
        if in_07 && edited < 5 {
            in_scope_hashes.insert(admin.client.doc(&id).unwrap().get_heads()[0].to_string());
            edited += 1;
        } else if !in_07 && edited >= 5 {
            // outside scope: fine to edit
        }
        if in_scope_hashes.len() == 5 && edited == 5 {
            break;
        }
    }
    // Add five out-of-scope edits explicitly.
    let outside: Vec<String> = admin
        .client
        .docs()
        .map(|(id, _)| id.clone())
        .filter(|id| !ids_07.contains(id))
        .take(5)
        .collect();
    for id in &outside {
        admin.set(id, "village", "Elsewhere");
    }
    admin.sync();
    let request = SyncRequest {
        protocol_version: PROTOCOL_VERSION,
        cursor: reader.client.cursor().map(str::to_string),
        pull: true,
        ..SyncRequest::default()
    };
    let (status, body) = reader.transport.post(&request);
    assert_eq!(status, 200);
    let pulled: Vec<&serde_json::Value> = body["pull"]["docs"].as_array().unwrap().iter().collect();
    let mut hashes = BTreeSet::new();
    for doc in &pulled {
        assert!(
            ids_07.contains(&doc["doc_id"].as_str().unwrap().to_string()),
            "out of scope doc pulled"
        );
        for c in doc["changes"].as_array().unwrap() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(c.as_str().unwrap())
                .unwrap();
            hashes.insert(
                automerge::Change::try_from(&bytes[..])
                    .unwrap()
                    .hash()
                    .to_string(),
            );
        }
    }
    assert_eq!(hashes, in_scope_hashes);
    assert_eq!(body["pull"]["more"], false);
    // The reader's own changes are never echoed back.
    let mine = reader
        .client
        .docs()
        .next()
        .map(|(id, _)| id.clone())
        .unwrap();
    reader.set(&mine, "commune", "Mine");
    reader.sync();
    let (_, body) = reader.transport.post(&SyncRequest {
        protocol_version: PROTOCOL_VERSION,
        cursor: reader.client.cursor().map(str::to_string),
        pull: true,
        ..SyncRequest::default()
    });
    assert_eq!(body["pull"]["docs"].as_array().unwrap().len(), 0, "{body}");
}

fn the_projection_equals_a_rebuild_from_the_change_log(app: &TestApp) {
    let (mut a, mut b) = two_enumerators(app);
    let coop = a.create_cooperative("07", "Rebuild");
    let m1 = a.add_member(&coop, "Sokha", "female");
    let session = a.create_session("07", &coop);
    a.record_attendance(&session, &m1, Some(&m1), 6.0);
    a.record_attendance(
        &session,
        &uuid::Uuid::new_v4().to_string(),
        Some(&uuid::Uuid::new_v4().to_string()),
        9.0,
    );
    a.sync();
    b.sync();
    b.set(&session, "location", "B's place");
    a.set(&session, "location", "A's place");
    b.add_member(&coop, "Dara", "male");
    b.sync();
    a.sync();
    let before = snapshot_projection(app);
    assert!(
        before.contains("hours_exceed_planned"),
        "validation flags are part of the projection"
    );
    assert!(before.contains("unknown_participant"));
    let mut conn = app.db.connect();
    let report = coopsync::records::projection::rebuild(&mut conn, |_, _| {}).unwrap();
    assert_eq!(
        (
            report.total,
            report.from_snapshot.len(),
            report.skipped.len()
        ),
        (4, 0, 0)
    );
    assert_eq!(snapshot_projection(app), before);

    // A record whose stored log no longer applies from scratch (here: a damaged log
    // entry) is projected from its snapshot and named; the rest are rebuilt as usual.
    use coopsync::db::schema::changes;
    let (hash, doc): (String, String) = changes::table
        .order(changes::seq.desc())
        .select((changes::hash, changes::document_id))
        .first(&mut conn)
        .unwrap();
    diesel::update(changes::table.filter(changes::hash.eq(&hash)))
        .set(changes::bytes.eq(vec![0x85u8, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, 0]))
        .execute(&mut conn)
        .unwrap();
    let report = coopsync::records::projection::rebuild(&mut conn, |_, _| {}).unwrap();
    assert_eq!(report.total, 4);
    assert_eq!(
        report
            .from_snapshot
            .iter()
            .map(|(d, _)| d.clone())
            .collect::<Vec<_>>(),
        [doc]
    );
    assert!(report.skipped.is_empty());
    assert_eq!(snapshot_projection(app), before);
}

/// Every projection table as text, ids and values only (no timestamps of projection).
pub fn snapshot_projection(app: &TestApp) -> String {
    use coopsync::db::schema::*;
    let mut conn = app.db.connect();
    let mut out = String::new();
    let coops: Vec<(String, Option<String>, Option<String>, Option<String>)> = cooperatives::table
        .order(cooperatives::id)
        .select((
            cooperatives::id,
            cooperatives::name_latin,
            cooperatives::province_code,
            cooperatives::village,
        ))
        .load(&mut conn)
        .unwrap();
    out += &format!("{coops:?}\n");
    let members: Vec<(String, Option<String>, Option<String>, Option<String>)> = members::table
        .order(members::id)
        .select((
            members::id,
            members::cooperative_id,
            members::full_name_khmer,
            members::sex,
        ))
        .load(&mut conn)
        .unwrap();
    out += &format!("{members:?}\n");
    let sessions: Vec<(String, Option<String>, Option<String>, Option<f64>)> =
        training_sessions::table
            .order(training_sessions::id)
            .select((
                training_sessions::id,
                training_sessions::location,
                training_sessions::status,
                training_sessions::planned_hours,
            ))
            .load(&mut conn)
            .unwrap();
    out += &format!("{sessions:?}\n");
    let att: Vec<(String, String, Option<String>, Option<f64>, Option<String>)> = attendance::table
        .order((attendance::session_id, attendance::participant_id))
        .select((
            attendance::session_id,
            attendance::participant_id,
            attendance::member_id,
            attendance::hours,
            attendance::status,
        ))
        .load(&mut conn)
        .unwrap();
    out += &format!("{att:?}\n");
    let mut flags: Vec<(String, String, String)> = validation_flags::table
        .select((
            validation_flags::document_id,
            validation_flags::code,
            validation_flags::field,
        ))
        .load(&mut conn)
        .unwrap();
    flags.sort();
    out += &format!("{flags:?}\n");
    let mut open: Vec<(String, String, String)> = conflicts::table
        .filter(conflicts::status.eq("open"))
        .select((conflicts::document_id, conflicts::field, conflicts::winner))
        .load(&mut conn)
        .unwrap();
    open.sort();
    out += &format!("{open:?}\n");
    out
}

fn scope_growth_backfills_and_shrinking_removes(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    let enumerator = app.create_user("mover", "enumerator", &["07"], &[]);
    let mut admin = Tablet::new(app, "nat");
    let mut coops_12 = BTreeSet::new();
    let mut coops_07 = BTreeSet::new();
    for i in 0..6 {
        coops_07.insert(admin.create_cooperative("07", &format!("K{i}")));
        coops_12.insert(admin.create_cooperative("12", &format!("P{i}")));
    }
    admin.sync();
    let mut t = Tablet::new(app, "mover");
    t.sync();
    let have: BTreeSet<String> = t.client.docs().map(|(id, _)| id.clone()).collect();
    assert_eq!(have, coops_07);
    // Grow: add province 12. The next sync brings their whole history.
    let admin_session = app.login("nat");
    let r = app.send(
        "PUT",
        &format!("/api/v1/users/{enumerator}/assignments"),
        Some(&admin_session.access),
        &json!({"provinces": ["07", "12"]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    t.sync();
    let have: BTreeSet<String> = t.client.docs().map(|(id, _)| id.clone()).collect();
    assert_eq!(have, coops_07.union(&coops_12).cloned().collect());
    for id in &coops_12 {
        let (name, _) = sync_protocol::documents::Cooperative::read(t.client.doc(id).unwrap());
        assert!(name.name_latin.unwrap().starts_with('P'));
    }
    // Shrink: only 12 now. The device is told which documents left.
    let r = app.send(
        "PUT",
        &format!("/api/v1/users/{enumerator}/assignments"),
        Some(&admin_session.access),
        &json!({"provinces": ["12"]}),
    );
    assert_eq!(r.status, 200);
    let report = t.sync();
    assert_eq!(report.removed, 6);
    let have: BTreeSet<String> = t.client.docs().map(|(id, _)| id.clone()).collect();
    assert_eq!(have, coops_12);
}

fn unsupported_version_and_bad_cursor_get_clear_errors(app: &TestApp) {
    let (mut a, _) = two_enumerators(app);
    let (status, body) = a.transport.post(&SyncRequest {
        protocol_version: 99,
        ..SyncRequest::default()
    });
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("unsupported_protocol_version"))
    );
    let (status, body) = a.transport.post(&SyncRequest {
        protocol_version: PROTOCOL_VERSION,
        cursor: Some("forged".into()),
        pull: true,
        ..SyncRequest::default()
    });
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_cursor"))
    );
    // Hex and base64 are both accepted, each checked in its own alphabet.
    let coop = a.create_cooperative("07", "Hex");
    let bytes = change_bytes(&a, &coop).remove(0);
    let mut hex_request = raw_push(&coop, "cooperative", vec![hex::encode(&bytes), b64(&bytes)]);
    hex_request.encoding = sync_protocol::messages::ChangeEncoding::Hex;
    let (status, body) = a.transport.post(&hex_request);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["push"][0]["applied"], 1, "{body}");
    assert_eq!(
        body["push"][0]["errors"][0]["code"], "invalid_encoding",
        "{body}"
    );
}

/// A device that pulled before a document entered its scope, and so is past that
/// document's changes, still gets its whole history: a member that arrived before its
/// cooperative, and a training session edited into the device's province.
fn documents_entering_a_scope_reach_devices_that_already_pulled(app: &TestApp) {
    let (mut a, mut b) = two_enumerators(app);
    let coop = a.create_cooperative("07", "Arrives second");
    let member = a.add_member(&coop, "Arrives first", "female");
    a.set(&member, "phone", "097 111 2222");
    let (status, _) = a
        .transport
        .post(&raw_push(&member, "member", history_b64(&a, &member)));
    assert_eq!(status, 200);
    // b's cursor passes the member's changes while nobody in 07 may see it yet.
    b.sync();
    assert!(b.client.doc(&member).is_none());
    a.sync();
    b.sync();
    let got = b
        .client
        .doc(&member)
        .expect("b has the member once its cooperative came");
    assert_eq!(
        sync_protocol::documents::Member::read(got)
            .0
            .phone
            .as_deref(),
        Some("097 111 2222"),
        "with its whole history"
    );

    app.create_user("nat", "national_admin", &[], &[]);
    let mut admin = Tablet::new(app, "nat");
    let far = admin.create_cooperative("12", "Far away");
    let session = admin.create_session("12", &far);
    for _ in 0..3 {
        let p = uuid::Uuid::new_v4().to_string();
        admin.record_attendance(&session, &p, None, 2.0);
    }
    admin.sync();
    b.sync();
    assert!(b.client.doc(&session).is_none(), "province 12 is not b's");
    admin.set(&session, "province_code", "07");
    admin.sync();
    b.sync();
    let got = b
        .client
        .doc(&session)
        .expect("b has the session moved into 07");
    let s = sync_protocol::documents::TrainingSession::read(got).0;
    assert_eq!(
        (s.province_code.as_deref(), s.attendance.len()),
        (Some("07"), 3)
    );
    assert_eq!(b.heads(&session), admin.heads(&session));
}

/// The other direction: a record edited out of a device's scope (not by a change of the
/// device's assignments) is named in `removed` once, and the device deletes its copy;
/// moved back, it returns with its whole history.
fn documents_moved_out_of_a_scope_are_removed_from_devices_that_had_them(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("enum.b", "enumerator", &["07"], &[]);
    let mut admin = Tablet::new(app, "nat");
    let mut b = Tablet::new(app, "enum.b");
    let coop = admin.create_cooperative("07", "Stays");
    let session = admin.create_session("07", &coop);
    admin.record_attendance(&session, &uuid::Uuid::new_v4().to_string(), None, 6.0);
    let moving = admin.create_cooperative("07", "Moves");
    let member = admin.add_member(&moving, "Follows", "male");
    admin.sync();
    b.sync();
    for id in [&coop, &session, &moving, &member] {
        assert!(b.client.doc(id).is_some());
    }

    admin.set(&session, "province_code", "12");
    admin.set(&moving, "province_code", "12");
    admin.sync();
    let report = b.sync();
    assert_eq!(
        report.removed, 3,
        "the session, the cooperative and its member"
    );
    for id in [&session, &moving, &member] {
        assert!(b.client.doc(id).is_none(), "{id} left 07");
    }
    assert!(b.client.doc(&coop).is_some());
    assert_eq!(b.sync().removed, 0, "named once");

    admin.set(&session, "province_code", "07");
    admin.record_attendance(&session, &uuid::Uuid::new_v4().to_string(), None, 6.0);
    admin.sync();
    b.sync();
    let got = b.client.doc(&session).expect("back in 07");
    let s = sync_protocol::documents::TrainingSession::read(got).0;
    assert_eq!(s.attendance.len(), 2);
    assert_eq!(b.heads(&session), admin.heads(&session));
}

/// A long offline week goes up in several batches, documents in id order: a member can
/// arrive before its cooperative. It must still be visible to its province.
fn a_member_pushed_before_its_cooperative_is_visible_to_the_province(app: &TestApp) {
    let (mut a, mut b) = two_enumerators(app);
    let coop = a.create_cooperative("07", "Arrives second");
    let member = a.add_member(&coop, "Arrives first", "female");
    let (status, body) = a
        .transport
        .post(&raw_push(&member, "member", history_b64(&a, &member)));
    // Held until its cooperative arrives: only then can its scope be decided.
    assert_eq!(
        (status, body["push"][0]["applied"].as_u64()),
        (200, Some(0)),
        "{body}"
    );
    assert_eq!(body["push"][0]["pending"].as_array().map(Vec::len), Some(1));
    let (status, _) = a
        .transport
        .post(&raw_push(&coop, "cooperative", history_b64(&a, &coop)));
    assert_eq!(status, 200);
    b.sync();
    assert!(b.client.doc(&coop).is_some(), "b has the cooperative");
    assert!(
        b.client.doc(&member).is_some(),
        "b has the member that came first"
    );
    app.create_user("prov07", "provincial_admin", &["07"], &[]);
    let r = app.get("/api/v1/exports/members", Some(&app.login("prov07").access));
    assert_eq!(r.status, 200);
    assert!(
        String::from_utf8_lossy(&r.raw).contains(&member),
        "in the province's export"
    );
}

/// A week offline pushed in many small batches (a slow link): every change arrives, and
/// another tablet of the province ends with the same documents.
fn a_long_week_in_small_batches_arrives_whole(app: &TestApp) {
    let (mut a, mut b) = two_enumerators(app);
    coopsync_tests::slowlink::week_of_work(&mut a, 32 * 1024);
    let total: usize = a
        .client
        .docs()
        .map(|(_, (_, d))| d.get_changes(&[]).len())
        .sum();
    a.client.batch_bytes = 16 * 1024;
    let report = a.sync();
    assert!(report.requests > 2, "{report:?}");
    let mut conn = app.db.connect();
    let stored: i64 = changes::table.count().get_result(&mut conn).unwrap();
    let held: i64 = pending_changes::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!((stored as usize, held), (total, 0), "{report:?}");
    b.sync();
    for (id, _) in a.client.docs() {
        assert_eq!(b.heads(id), a.heads(id), "{id}");
    }
}

/// Two documents whose first changes are byte-identical (same actor, second and fields:
/// a client that does not write the id) cannot both be built from a log that keeps a
/// change once; the second is refused with a message that says why, never silently
/// counted as a duplicate.
fn identical_first_changes_in_two_documents_are_refused_not_swallowed(app: &TestApp) {
    use automerge::{
        ActorId, Automerge,
        transaction::{CommitOptions, Transactable},
    };
    let (mut a, _) = two_enumerators(app);
    let actor = ActorId::random();
    let first_change = || {
        let mut doc = Automerge::new().with_actor(actor.clone());
        doc.transact_with(
            |_| CommitOptions::default().with_time(1_795_000_000),
            |tx| {
                tx.put(automerge::ROOT, "type", "cooperative")?;
                tx.put(automerge::ROOT, "schema_version", 1)?;
                tx.put(automerge::ROOT, "province_code", "07")
            },
        )
        .unwrap();
        b64(doc.get_changes(&[])[0].raw_bytes())
    };
    let (one, two) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    assert_eq!(first_change(), first_change(), "the same bytes");
    let (status, body) = a
        .transport
        .post(&raw_push(&one, "cooperative", vec![first_change()]));
    assert_eq!(
        (status, body["push"][0]["applied"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    for _ in 0..2 {
        let (status, body) = a
            .transport
            .post(&raw_push(&two, "cooperative", vec![first_change()]));
        assert_eq!(status, 200);
        assert_eq!(
            body["push"][0]["errors"][0]["code"], "rejected_change",
            "{body}"
        );
        assert!(
            body["push"][0]["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("another document")
        );
    }
    let (status, body) = a
        .transport
        .post(&raw_push(&one, "cooperative", vec![first_change()]));
    assert_eq!(
        (status, body["push"][0]["duplicates"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
}

/// After the first push, a push that writes only attendance entries re-projects only
/// those entries (`changed::Changed`); the result must still equal a rebuild from the
/// log: rows, flags (own and cross-record) and conflicts, with participant ids that hold
/// LIKE wildcards next to ids they would match.
fn editing_some_entries_of_a_session_projects_like_a_rebuild(app: &TestApp) {
    let (mut a, mut b) = two_enumerators(app);
    let coop = a.create_cooperative("07", "Entries");
    let member = a.add_member(&coop, "Sok", "female");
    let session = a.create_session("07", &coop);
    for i in 0..20 {
        a.record_attendance(&session, &format!("guest-{i:02}"), None, 6.0);
    }
    // Both over the planned 6 hours: one flag each.
    a.record_attendance(&session, "p%", None, 9.0);
    a.record_attendance(&session, "pX", None, 9.0);
    a.sync();
    b.sync();
    // Offline on both tablets: the same entry changed twice (a conflict), a wildcard id
    // corrected, a member and an unknown member recorded, an entry removed.
    a.record_attendance(&session, "guest-03", None, 2.0);
    b.record_attendance(&session, "guest-03", None, 4.0);
    a.record_attendance(&session, "p%", None, 5.0);
    let ghost = uuid::Uuid::new_v4().to_string();
    b.record_attendance(&session, &member, Some(&member), 6.0);
    b.record_attendance(&session, "ghost", Some(&ghost), 6.0);
    a.client
        .edit(&session, |tx| {
            let (_, att) = tx.get(automerge::ROOT, "attendance")?.expect("attendance");
            tx.delete(&att, "guest-07")
        })
        .unwrap();
    a.sync();
    b.sync();
    a.sync();
    assert_eq!(a.heads(&session), b.heads(&session));

    let flags = |app: &TestApp| -> BTreeSet<(String, String)> {
        use coopsync::db::schema::validation_flags;
        let mut conn = app.db.connect();
        // The flags that stand now: a fixed one stays, closed, naming the change.
        validation_flags::table
            .filter(validation_flags::document_id.eq(&session))
            .filter(validation_flags::status.ne("fixed"))
            .select((validation_flags::field, validation_flags::code))
            .load::<(String, String)>(&mut conn)
            .unwrap()
            .into_iter()
            .collect()
    };
    let got = flags(app);
    assert!(got.contains(&("attendance.pX.hours".into(), "hours_exceed_planned".into())));
    assert!(
        !got.iter().any(|(f, _)| f.starts_with("attendance.p%.")),
        "{got:?}"
    );
    assert!(got.contains(&(
        "attendance.ghost.member_id".into(),
        "unknown_participant".into()
    )));
    let mut conn = app.db.connect();
    assert_eq!(attendance_rows(&mut conn, &session), 20 + 2 + 2 - 1);
    let open = open_conflict_fields(&mut conn, &session);
    assert!(
        open.iter().any(|f| f.starts_with("attendance.guest-03")),
        "{open:?}"
    );

    // A later write over the conflict settles it, through the same narrow path.
    a.record_attendance(&session, "guest-03", None, 3.0);
    a.sync();
    let before = snapshot_projection(app);
    coopsync::records::projection::rebuild(&mut conn, |_, _| {}).unwrap();
    assert_eq!(snapshot_projection(app), before);
    assert_eq!(
        open_conflict_fields(&mut conn, &session),
        Vec::<String>::new()
    );
}

dual_backend_tests!(
    editing_some_entries_of_a_session_projects_like_a_rebuild,
    identical_first_changes_in_two_documents_are_refused_not_swallowed,
    a_long_week_in_small_batches_arrives_whole,
    a_member_pushed_before_its_cooperative_is_visible_to_the_province,
    documents_entering_a_scope_reach_devices_that_already_pulled,
    documents_moved_out_of_a_scope_are_removed_from_devices_that_had_them,
    two_tablets_take_attendance_offline_a_then_b,
    two_tablets_take_attendance_offline_b_then_a,
    same_field_on_two_tablets_is_one_conflict_with_both_authors,
    the_same_batch_pushed_three_times_is_stored_once,
    children_before_parents_are_held_then_applied,
    bad_changes_are_quarantined_and_the_good_ones_applied,
    a_current_device_pulls_exactly_the_new_changes_in_its_scope,
    the_projection_equals_a_rebuild_from_the_change_log,
    scope_growth_backfills_and_shrinking_removes,
    unsupported_version_and_bad_cursor_get_clear_errors,
    simulated_training_day_arrives_whole,
);

/// The simulator's training day, small: every tablet's work arrives whole.
fn simulated_training_day_arrives_whole(app: &TestApp) {
    use coopsync::db::schema::{members, training_sessions};
    app.create_user("sim.admin", "national_admin", &[], &[]);
    let cfg = coopsync_tests::sim::SimConfig {
        base_url: app.addr.clone(),
        admin_username: "sim.admin".into(),
        admin_password: coopsync_tests::PASSWORD.into(),
        tablets: 4,
        members_per_tablet: 12,
        province: "07".into(),
        user_prefix: "sim.enum".into(),
    };
    let report = coopsync_tests::sim::run(&cfg).unwrap();
    assert_eq!(report.rejected, 0);
    assert_eq!(report.documents, 4 * 14);
    let mut conn = app.db.connect();
    let m: i64 = members::table.count().get_result(&mut conn).unwrap();
    let held: i64 = training_sessions::table
        .filter(training_sessions::status.eq("held"))
        .count()
        .get_result(&mut conn)
        .unwrap();
    let att: i64 = attendance::table.count().get_result(&mut conn).unwrap();
    assert_eq!((m, held, att), (48, 4, 48));
    let logged: i64 = changes::table.count().get_result(&mut conn).unwrap();
    assert_eq!(logged as u64, report.changes_pushed);
}
