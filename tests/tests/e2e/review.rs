//! Review queues (issue 13): an admin resolves a conflict two tablets made, the decision is
//! a server change every tablet pulls, and nothing is lost or hidden afterwards.

use coopsync_tests::{TestApp, dual_backend_tests, tablet::Tablet};
use serde_json::json;
use sync_protocol::documents::Cooperative;

fn village(t: &Tablet, coop: &str) -> Option<String> {
    Cooperative::read(t.client.doc(coop).unwrap()).0.village
}

fn a_conflict_resolved_by_an_admin_reaches_every_tablet(app: &TestApp) {
    use coopsync::db::schema::{audit_log, changes, cooperatives};
    use diesel::prelude::*;
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("p07", "provincial_admin", &["07"], &[]);
    app.create_user("p12", "provincial_admin", &["12"], &[]);
    for u in ["tab.a", "tab.b", "tab.c"] {
        app.create_user(u, "enumerator", &["07"], &[]);
    }
    let mut nat = Tablet::new(app, "nat");
    let coop = nat.create_cooperative("07", "Disputed");
    nat.sync();
    let (mut a, mut b, mut c) = (
        Tablet::new(app, "tab.a"),
        Tablet::new(app, "tab.b"),
        Tablet::new(app, "tab.c"),
    );
    for t in [&mut a, &mut b, &mut c] {
        t.sync();
    }
    a.set(&coop, "village", "Kampong Trach");
    b.set(&coop, "village", "Prey Khmeng");
    a.sync();
    b.sync();
    // Tablet c takes both values, then goes offline for the resolution.
    c.sync();

    let p07 = app.login("p07");
    let list = app.get("/api/v1/conflicts", Some(&p07.access));
    assert_eq!(list.status, 200, "{}", list.body);
    let items = list.body["conflicts"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{}", list.body);
    let conflict = &items[0];
    assert_eq!(conflict["document_id"], coop.as_str());
    assert_eq!(conflict["field"], "village");
    assert_eq!(conflict["status"], "open");
    let values: Vec<&str> = conflict["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert_eq!(values.len(), 2);
    assert!(values.contains(&"Kampong Trach") && values.contains(&"Prey Khmeng"));
    for cand in conflict["candidates"].as_array().unwrap() {
        assert!(
            cand["user_id"].is_string() && cand["received_at"].is_string(),
            "{cand}"
        );
        assert!(
            cand["device_id"].is_null(),
            "device ids only for national admins"
        );
    }
    let id = conflict["id"].as_i64().unwrap();

    // Another province's admin does not see it, by list or by id.
    let p12 = app.login("p12");
    let other = app.get("/api/v1/conflicts", Some(&p12.access));
    assert_eq!(other.body["conflicts"], json!([]));
    assert_eq!(
        app.get(&format!("/api/v1/conflicts/{id}"), Some(&p12.access))
            .status,
        404
    );
    let r = app.post(
        &format!("/api/v1/conflicts/{id}/resolve"),
        Some(&p12.access),
        &json!({"choice": 0}),
    );
    assert_eq!(r.status, 404);

    // Resolved with the second tablet's value.
    let choice = values.iter().position(|v| *v == "Prey Khmeng").unwrap();
    let r = app.post(
        &format!("/api/v1/conflicts/{id}/resolve"),
        Some(&p07.access),
        &json!({ "choice": choice }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "resolved");
    assert_eq!(r.body["resolution"]["value"], "Prey Khmeng");
    assert_eq!(r.body["resolution"]["resolved_by"], p07.user_id.as_str());
    let hash = r.body["resolution"]["change_hash"]
        .as_str()
        .unwrap()
        .to_string();
    // Twice is a clear 409.
    let again = app.post(
        &format!("/api/v1/conflicts/{id}/resolve"),
        Some(&p07.access),
        &json!({ "choice": choice }),
    );
    assert_eq!((again.status, again.code()), (409, "conflict_not_open"));

    // Both tablets pull the server's change and show the chosen value.
    a.sync();
    b.sync();
    assert_eq!(village(&a, &coop).as_deref(), Some("Prey Khmeng"));
    assert_eq!(village(&b, &coop).as_deref(), Some("Prey Khmeng"));
    assert_eq!(a.heads(&coop), b.heads(&coop));
    let open = app.get("/api/v1/conflicts", Some(&p07.access));
    assert_eq!(open.body["conflicts"], json!([]));
    let resolved = app.get("/api/v1/conflicts?status=resolved", Some(&p07.access));
    assert_eq!(resolved.body["conflicts"][0]["id"], id);
    let mut conn = app.db.connect();
    let (device, user): (String, String) = changes::table
        .filter(changes::hash.eq(&hash))
        .select((changes::device_id, changes::user_id))
        .first(&mut conn)
        .unwrap();
    assert_eq!(
        (device.as_str(), user.as_str()),
        ("server", p07.user_id.as_str())
    );
    // The export and a rebuild agree with the tablets.
    let csv = app.get("/api/v1/exports/cooperatives", Some(&p07.access));
    assert!(String::from_utf8_lossy(&csv.raw).contains("Prey Khmeng"));
    coopsync::records::projection::rebuild(&mut conn, |_, _| {}).unwrap();
    let projected: Option<String> = cooperatives::table
        .find(&coop)
        .select(cooperatives::village)
        .first(&mut conn)
        .unwrap();
    assert_eq!(projected.as_deref(), Some("Prey Khmeng"));
    let after_rebuild = app.get("/api/v1/conflicts?status=resolved", Some(&p07.access));
    assert_eq!(
        after_rebuild.body["conflicts"][0]["id"], id,
        "the decision survives a rebuild"
    );
    assert_eq!(
        app.get("/api/v1/conflicts", Some(&p07.access)).body["conflicts"],
        json!([])
    );

    // Tablet c edited offline without the resolution: a new conflict opens, nothing is
    // silently won or lost.
    c.set(&coop, "village", "Kampot town");
    c.sync();
    let reopened = app.get("/api/v1/conflicts", Some(&p07.access));
    let items = reopened.body["conflicts"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", reopened.body);
    assert_ne!(items[0]["id"], id);
    let values: Vec<&str> = items[0]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert!(
        values.contains(&"Kampot town") && values.contains(&"Prey Khmeng"),
        "{values:?}"
    );

    let audits: i64 = audit_log::table
        .filter(audit_log::action.eq("conflict.resolve"))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(
        audits, 1,
        "one audit row per resolution (refused attempts write none)"
    );
}

fn a_typed_resolution_is_validated_like_a_tablets_value(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("tab.x", "enumerator", &["07"], &[]);
    let mut nat = Tablet::new(app, "nat");
    let coop = nat.create_cooperative("07", "Typed");
    nat.sync();
    let mut x = Tablet::new(app, "tab.x");
    x.sync();
    nat.set(&coop, "status", "registered");
    x.set(&coop, "status", "dissolved");
    nat.sync();
    x.sync();
    let admin = app.login("nat");
    let list = app.get("/api/v1/conflicts", Some(&admin.access));
    let id = list.body["conflicts"][0]["id"].as_i64().unwrap();
    // National admins see the devices.
    assert!(list.body["conflicts"][0]["candidates"][0]["device_id"].is_string());
    let bad = app.post(
        &format!("/api/v1/conflicts/{id}/resolve"),
        Some(&admin.access),
        &json!({"value": "not-a-status"}),
    );
    assert_eq!(
        (bad.status, bad.code()),
        (422, "validation_failed"),
        "{}",
        bad.body
    );
    let neither = app.post(
        &format!("/api/v1/conflicts/{id}/resolve"),
        Some(&admin.access),
        &json!({}),
    );
    assert_eq!(neither.status, 422);
    let still = app.get(&format!("/api/v1/conflicts/{id}"), Some(&admin.access));
    assert_eq!(
        still.body["status"], "open",
        "a refused resolution changes nothing"
    );
    let ok = app.post(
        &format!("/api/v1/conflicts/{id}/resolve"),
        Some(&admin.access),
        &json!({"value": "inactive"}),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    x.sync();
    assert_eq!(
        Cooperative::read(x.client.doc(&coop).unwrap())
            .0
            .status
            .as_deref(),
        Some("inactive")
    );
}

fn quarantined_changes_are_released_when_they_pass_and_dismissed_with_a_reason(app: &TestApp) {
    use base64::Engine as _;
    use coopsync::db::schema::{audit_log, cooperatives, pending_changes, quarantine};
    use diesel::prelude::*;
    app.create_user("nat", "national_admin", &[], &[]);
    let enumerator = app.create_user("growing", "enumerator", &["07"], &[]);
    let mut t = Tablet::new(app, "growing");
    // A cooperative in 12, outside the enumerator's scope, and an edit made on top of it.
    let coop = t.create_cooperative("12", "Not yet mine");
    t.sync();
    t.set(&coop, "village", "Edited after");
    t.sync();
    let mut conn = app.db.connect();
    let held: i64 = pending_changes::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(held, 1, "the edit waits behind the quarantined change");
    // A damaged change too, to dismiss.
    let (status, _) = t.transport.post(&sync_protocol::messages::SyncRequest {
        protocol_version: sync_protocol::PROTOCOL_VERSION,
        push: vec![sync_protocol::messages::DocChanges {
            doc_id: uuid::Uuid::new_v4().to_string(),
            doc_type: "member".into(),
            changes: vec![base64::engine::general_purpose::STANDARD.encode(b"not a change at all")],
        }],
        ..Default::default()
    });
    assert_eq!(status, 200);

    let admin = app.login("nat");
    let list = app.get("/api/v1/quarantine", Some(&admin.access));
    assert_eq!(list.status, 200, "{}", list.body);
    let items = list.body["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{}", list.body);
    let scope = items.iter().find(|i| i["code"] == "out_of_scope").unwrap();
    let junk = items.iter().find(|i| i["code"] != "out_of_scope").unwrap();
    assert_eq!(scope["document_id"], coop.as_str());
    assert_eq!(scope["header"]["seq"], 1);
    assert!(scope["header"]["operations"].as_u64().unwrap() > 0);
    let (sid, jid) = (scope["id"].as_i64().unwrap(), junk["id"].as_i64().unwrap());
    let raw = app.get(
        &format!("/api/v1/quarantine/{sid}/bytes"),
        Some(&admin.access),
    );
    assert_eq!(raw.status, 200);
    assert_eq!(&raw.raw[..4], &[0x85, 0x6f, 0x4a, 0x83]);

    // The waiting-changes queue shows the held edit and that it waits on the quarantined
    // change.
    let waiting = app.get("/api/v1/pending", Some(&admin.access));
    assert_eq!(waiting.status, 200, "{}", waiting.body);
    let device = &waiting.body["devices"][0];
    assert_eq!(device["held"], 1, "{}", waiting.body);
    assert_eq!(device["stale"], false);
    assert_eq!(device["documents"][0]["document_id"], coop.as_str());
    assert_eq!(
        device["documents"][0]["quarantined"][0], scope["hash"],
        "{}",
        waiting.body
    );
    // Still out of scope: the answer says why, and nothing changes.
    let r = app.post(
        &format!("/api/v1/quarantine/{sid}/release"),
        Some(&admin.access),
        &json!({}),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["fields"][0]["code"], "still_refused");
    assert!(
        r.body["error"]["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("out_of_scope")
    );
    let rows: i64 = quarantine::table.count().get_result(&mut conn).unwrap();
    assert_eq!(rows, 2, "a failed release adds no row");

    // The enumerator is given province 12: the release passes, and the held edit with it.
    let r = app.send(
        "PUT",
        &format!("/api/v1/users/{enumerator}/assignments"),
        Some(&admin.access),
        &json!({"provinces": ["07", "12"]}),
    );
    assert_eq!(r.status, 200);
    let r = app.post(
        &format!("/api/v1/quarantine/{sid}/release"),
        Some(&admin.access),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "released");
    assert_eq!(r.body["decided_by"], admin.user_id.as_str());
    let village: Option<String> = cooperatives::table
        .find(&coop)
        .select(cooperatives::village)
        .first(&mut conn)
        .unwrap();
    assert_eq!(
        village.as_deref(),
        Some("Edited after"),
        "the held edit applied with it"
    );
    let held: i64 = pending_changes::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(held, 0);
    let again = app.post(
        &format!("/api/v1/quarantine/{sid}/release"),
        Some(&admin.access),
        &json!({}),
    );
    assert_eq!((again.status, again.code()), (409, "quarantine_decided"));

    // The damaged one is dismissed with a reason; it stays.
    let empty = app.post(
        &format!("/api/v1/quarantine/{jid}/dismiss"),
        Some(&admin.access),
        &json!({"reason": " "}),
    );
    assert_eq!(empty.status, 422);
    let r = app.post(
        &format!("/api/v1/quarantine/{jid}/dismiss"),
        Some(&admin.access),
        &json!({"reason": "test bytes from a broken build of the app"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "dismissed");
    assert_eq!(
        app.get("/api/v1/quarantine", Some(&admin.access)).body["items"],
        json!([])
    );
    let all = app.get("/api/v1/quarantine?status=all", Some(&admin.access));
    assert_eq!(
        all.body["items"].as_array().unwrap().len(),
        2,
        "nothing is deleted"
    );
    for (action, n) in [("quarantine.release", 1), ("quarantine.dismiss", 1)] {
        let count: i64 = audit_log::table
            .filter(audit_log::action.eq(action))
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(count, n, "{action}");
    }
    // The tablet, now in 12's scope, keeps syncing normally.
    t.sync();
}

fn an_admin_correction_reaches_the_tablets_and_is_validated(app: &TestApp) {
    use coopsync::db::schema::audit_log;
    use diesel::prelude::*;
    app.create_user("p07", "provincial_admin", &["07"], &[]);
    app.create_user("p12", "provincial_admin", &["12"], &[]);
    app.create_user("tab.e", "enumerator", &["07"], &[]);
    let mut t = Tablet::new(app, "tab.e");
    let coop = t.create_cooperative("07", "Typo coop");
    let session = t.create_session("07", &coop);
    t.record_attendance(&session, "p1", None, 6.0);
    t.sync();
    let admin = app.login("p07");
    let path = format!("/api/v1/records/{coop}");
    let r = app.send(
        "PATCH",
        &path,
        Some(&admin.access),
        &json!({"fields": {"village": "Prey Khmeng", "name_latin": "Fixed coop"}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["change_hash"].is_string());
    let r = app.send(
        "PATCH",
        &format!("/api/v1/records/{session}"),
        Some(&admin.access),
        &json!({"fields": {"attendance.p1.hours": 4.5, "attendance.p1.status": "partial"}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    t.sync();
    let c = Cooperative::read(t.client.doc(&coop).unwrap()).0;
    assert_eq!(
        (c.village.as_deref(), c.name_latin.as_deref()),
        (Some("Prey Khmeng"), Some("Fixed coop"))
    );
    let (s, _) = sync_protocol::documents::TrainingSession::read(t.client.doc(&session).unwrap());
    assert_eq!(s.attendance["p1"].hours, Some(4.5));
    // Refused: a field that is not one, a value breaking its rule, another province's
    // record, a move out of the admin's provinces.
    for (body, status) in [
        (json!({"fields": {"type": "member"}}), 422),
        (json!({"fields": {"status": "not-a-status"}}), 422),
        (json!({"fields": {"province_code": "12"}}), 403),
        (json!({"fields": {}}), 422),
    ] {
        let r = app.send("PATCH", &path, Some(&admin.access), &body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
    }
    let other = app.login("p12");
    assert_eq!(
        app.send(
            "PATCH",
            &path,
            Some(&other.access),
            &json!({"fields": {"village": "X"}})
        )
        .status,
        404
    );
    let c = Cooperative::read(t.client.doc(&coop).unwrap()).0;
    assert_eq!(c.province_code.as_deref(), Some("07"));
    let audits: Vec<String> = audit_log::table
        .filter(audit_log::action.eq("record.edit"))
        .select(audit_log::details)
        .load(&mut app.db.connect())
        .unwrap();
    assert_eq!(audits.len(), 2, "one row per edit, none for refused ones");
    assert!(
        !audits.iter().any(|d| d.contains("Prey Khmeng")),
        "no values in the audit"
    );
}

fn a_records_history_reads_in_words_for_three_devices_and_an_admin(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    for u in ["dev.one", "dev.two", "dev.three"] {
        app.create_user(u, "enumerator", &["07"], &[]);
    }
    let mut one = Tablet::new(app, "dev.one");
    let coop = one.create_cooperative("07", "History coop");
    one.set(&coop, "village", "Kampong Trach");
    one.sync();
    let mut two = Tablet::new(app, "dev.two");
    two.sync();
    two.set(&coop, "village", "Prey Khmeng");
    two.sync();
    let mut three = Tablet::new(app, "dev.three");
    three.sync();
    // A plain JS-style text edit is read whole, too.
    three
        .client
        .edit(&coop, |tx| {
            use automerge::transaction::Transactable;
            let text = tx.put_object(automerge::ROOT, "district", automerge::ObjType::Text)?;
            tx.splice_text(&text, 0, 0, "Kampot")
        })
        .unwrap();
    three.sync();
    let admin = app.login("nat");
    let r = app.send(
        "PATCH",
        &format!("/api/v1/records/{coop}"),
        Some(&admin.access),
        &json!({"fields": {"village": "Chhuk"}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let h = app.get(
        &format!("/api/v1/records/{coop}/history"),
        Some(&admin.access),
    );
    assert_eq!(h.status, 200, "{}", h.body);
    let entries = h.body["entries"].as_array().unwrap();
    let said: Vec<String> = entries
        .iter()
        .flat_map(|e| {
            let who = e["author"].as_str().unwrap().to_string();
            e["fields"].as_array().unwrap().iter().map(move |f| {
                format!(
                    "{who} {}: {} -> {}",
                    f["field"].as_str().unwrap(),
                    f["old"],
                    f["new"]
                )
            })
        })
        .collect();
    // Newest first.
    assert_eq!(
        said[0], "server village: \"Prey Khmeng\" -> \"Chhuk\"",
        "{said:#?}"
    );
    assert!(
        said.contains(&"device district: null -> \"Kampot\"".to_string()),
        "{said:#?}"
    );
    assert!(
        said.contains(&"device village: \"Kampong Trach\" -> \"Prey Khmeng\"".to_string()),
        "{said:#?}"
    );
    assert!(
        said.contains(&"device village: null -> \"Kampong Trach\"".to_string()),
        "{said:#?}"
    );
    assert_eq!(entries[0]["user_id"], admin.user_id.as_str());
    let users: std::collections::BTreeSet<&str> = entries
        .iter()
        .map(|e| e["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), 4, "three devices' users and the admin");
    assert!(
        entries.iter().skip(1).all(|e| e["device_id"].is_string()),
        "national admins see devices"
    );
    // Paging.
    let page = app.get(
        &format!("/api/v1/records/{coop}/history?limit=2"),
        Some(&admin.access),
    );
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = app.get(
        &format!("/api/v1/records/{coop}/history?limit=50&cursor={cursor}"),
        Some(&admin.access),
    );
    assert_eq!(
        page.body["entries"].as_array().unwrap().len()
            + rest.body["entries"].as_array().unwrap().len(),
        entries.len()
    );
}

fn flags_are_accepted_corrected_and_fixed_and_keep_their_identity(app: &TestApp) {
    use coopsync::db::schema::audit_log;
    use diesel::prelude::*;
    app.create_user("p07", "provincial_admin", &["07"], &[]);
    app.create_user("tab.f", "enumerator", &["07"], &[]);
    let mut t = Tablet::new(app, "tab.f");
    let coop = t.create_cooperative("07", "Flagged");
    t.set(&coop, "status", "bogus");
    let session = t.create_session("07", &coop);
    t.record_attendance(&session, "p1", None, 8.0);
    t.record_attendance(&session, "p2", None, 9.0);
    t.sync();
    let admin = app.login("p07");
    let flags = |status: &str| {
        app.get(
            &format!("/api/v1/flags?status={status}"),
            Some(&admin.access),
        )
        .body["flags"]
            .as_array()
            .unwrap()
            .clone()
    };
    let find = |list: &[serde_json::Value], field: &str| {
        list.iter().find(|f| f["field"] == field).cloned()
    };
    let open = flags("open");
    let p1 = find(&open, "attendance.p1.hours").expect("p1 flagged");
    let p2 = find(&open, "attendance.p2.hours").expect("p2 flagged");
    let status = find(&open, "status").expect("status flagged");
    assert_eq!(p1["code"], "hours_exceed_planned");

    // Accept p1's 8 hours: the training ran long.
    let r = app.post(
        &format!("/api/v1/flags/{}/accept", p1["id"]),
        Some(&admin.access),
        &json!({"note": "the training ran two hours long"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "accepted");
    assert_eq!(r.body["accepted_value"], "8");
    let mut conn = app.db.connect();
    coopsync::records::projection::rebuild(&mut conn, |_, _| {}).unwrap();
    let accepted = flags("accepted");
    assert_eq!(
        accepted.len(),
        1,
        "accepted stays accepted across a rebuild"
    );
    assert_eq!(accepted[0]["id"], p1["id"], "the same flag, by identity");

    // Correct the cooperative's status: a server change the tablet pulls; the flag closes
    // naming it.
    let r = app.post(
        &format!("/api/v1/flags/{}/correct", status["id"]),
        Some(&admin.access),
        &json!({"value": "active"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "fixed");
    assert!(r.body["fixed_by_change"].is_string());
    t.sync();
    assert_eq!(
        Cooperative::read(t.client.doc(&coop).unwrap())
            .0
            .status
            .as_deref(),
        Some("active")
    );

    // The tablet fixes p2 itself; and changes p1 away from the accepted value.
    t.record_attendance(&session, "p2", None, 5.0);
    t.record_attendance(&session, "p1", None, 7.0);
    t.sync();
    let all = flags("all");
    let p2_now = find(&all, "attendance.p2.hours").unwrap();
    assert_eq!(p2_now["id"], p2["id"]);
    assert_eq!(p2_now["status"], "fixed", "{p2_now}");
    assert!(p2_now["fixed_by_change"].is_string());
    let p1_now = find(&all, "attendance.p1.hours").unwrap();
    assert_eq!(p1_now["id"], p1["id"]);
    assert_eq!(
        p1_now["status"], "open",
        "a changed value is open again: {p1_now}"
    );
    let again = app.post(
        &format!("/api/v1/flags/{}/correct", status["id"]),
        Some(&admin.access),
        &json!({"value": "active"}),
    );
    assert_eq!((again.status, again.code()), (409, "flag_not_open"));
    for (action, n) in [("flag.accept", 1), ("flag.correct", 1), ("record.edit", 0)] {
        let count: i64 = audit_log::table
            .filter(audit_log::action.eq(action))
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(count, n, "{action}");
    }
}

fn records_are_found_by_khmer_or_latin_name_within_scope(app: &TestApp) {
    app.create_user("p07", "provincial_admin", &["07"], &[]);
    app.create_user("p12", "provincial_admin", &["12"], &[]);
    app.create_user("tab.s", "enumerator", &["07"], &[]);
    let mut t = Tablet::new(app, "tab.s");
    let coop = t.create_cooperative("07", "Search coop");
    let m1 = t.add_member(&coop, "សុខ ចាន់ថា", "female");
    t.set(&m1, "name_latin", "Sok Chanthea");
    let m2 = t.add_member(&coop, "ម៉ៅ សុភា", "female");
    t.set(&m2, "name_latin", "Mao Sophea");
    t.sync();
    let admin = app.login("p07");
    let find = |q: &str, token: &str| -> Vec<String> {
        let url = format!("/api/v1/records?type=member&q={}", pct(q));
        let r = app.get(&url, Some(token));
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(find("ចាន់ថា", &admin.access), std::slice::from_ref(&m1));
    // A zero-width space typed into the search is ignored; Latin in any case.
    assert_eq!(
        find("សុខ\u{200b} ចាន់", &admin.access),
        std::slice::from_ref(&m1)
    );
    assert_eq!(find("SOPHEA", &admin.access), std::slice::from_ref(&m2));
    assert_eq!(find("", &admin.access).len(), 2);
    let other = app.login("p12");
    assert!(
        find("Sok", &other.access).is_empty(),
        "another province finds nothing"
    );
    let one = app.get(&format!("/api/v1/records/{m1}"), Some(&admin.access));
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.body["record"]["fields"]["full_name_khmer"], "សុខ ចាន់ថា");
    assert_eq!(
        app.get(&format!("/api/v1/records/{m1}"), Some(&other.access))
            .status,
        404
    );
    let coops = app.get(
        "/api/v1/records?type=cooperative&q=search",
        Some(&admin.access),
    );
    assert_eq!(coops.body["records"][0]["id"], coop.as_str());
}

/// Percent-encodes a query value (UTF-8 bytes).
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A list field (a session's facilitators) is corrected as a whole list: the admin's list
/// replaces the tablet's on every replica and in the projection.
fn an_admin_replaces_a_sessions_facilitators_as_a_whole_list(app: &TestApp) {
    use coopsync::db::schema::training_sessions;
    use diesel::prelude::*;
    app.create_user("p07", "provincial_admin", &["07"], &[]);
    app.create_user("tab.e", "enumerator", &["07"], &[]);
    let mut t = Tablet::new(app, "tab.e");
    let coop = t.create_cooperative("07", "List coop");
    let session = t.create_session("07", &coop);
    t.sync();
    let admin = app.login("p07");
    let path = format!("/api/v1/records/{session}");
    let list = json!(["Sok Dara", "ចាន់ ធីតា"]);
    let r = app.send(
        "PATCH",
        &path,
        Some(&admin.access),
        &json!({"fields": {"facilitators": list}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    t.sync();
    let (s, _) = sync_protocol::documents::TrainingSession::read(t.client.doc(&session).unwrap());
    assert_eq!(s.facilitators, vec!["Sok Dara", "ចាន់ ធីតា"]);
    let stored: String = training_sessions::table
        .find(&session)
        .select(training_sessions::facilitators)
        .first(&mut app.db.connect())
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored, list, "the projection shows the admin's list");
    // Refused with the field named: not a list, an empty name, a list that is too long.
    let long: Vec<String> = (0..51).map(|i| format!("F{i}")).collect();
    for bad in [json!("Sok Dara"), json!(["Sok Dara", " "]), json!(long)] {
        let r = app.send(
            "PATCH",
            &path,
            Some(&admin.access),
            &json!({"fields": {"facilitators": bad}}),
        );
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
        assert!(r.body.to_string().contains("facilitators"), "{}", r.body);
    }
}

/// Two tablets record the same person's attendance offline: one entry each, a conflict on
/// the entry itself. The admin sees both entries' fields and keeps one; every tablet and
/// the projection then hold that entry, and a typed value is refused with a clear reason.
fn an_attendance_entry_recorded_on_two_tablets_is_resolved_by_choosing_one(app: &TestApp) {
    use coopsync::db::schema::attendance;
    use diesel::prelude::*;
    app.create_user("p07", "provincial_admin", &["07"], &[]);
    let (mut a, mut b, session) = coopsync_tests::tablet::attendance_recorded_twice(app, "p1");
    let admin = app.login("p07");
    let list = app.get("/api/v1/conflicts", Some(&admin.access));
    let items = list.body["conflicts"].as_array().unwrap().clone();
    let conflict = items
        .iter()
        .find(|c| c["field"] == "attendance.p1")
        .unwrap_or_else(|| panic!("no entry conflict: {}", list.body));
    let candidates = conflict["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 2, "{conflict}");
    let hours: Vec<f64> = candidates
        .iter()
        .map(|c| c["value"]["hours"].as_f64().expect("the entry's fields"))
        .collect();
    let pick = hours.iter().position(|h| *h == 3.5).unwrap();
    let path = format!("/api/v1/conflicts/{}/resolve", conflict["id"]);
    let typed = app.send(
        "POST",
        &path,
        Some(&admin.access),
        &json!({"value": {"hours": 1}}),
    );
    assert_eq!(typed.status, 422, "{}", typed.body);
    let r = app.send("POST", &path, Some(&admin.access), &json!({"choice": pick}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "resolved");
    for t in [&mut a, &mut b] {
        t.sync();
        let (s, _) =
            sync_protocol::documents::TrainingSession::read(t.client.doc(&session).unwrap());
        assert_eq!(s.attendance["p1"].hours, Some(3.5));
        assert_eq!(s.attendance["p1"].status.as_deref(), Some("partial"));
        assert_eq!(
            s.attendance["p1"].recorded_at_ms,
            Some(1_795_000_000_000),
            "types kept"
        );
    }
    let projected: Option<f64> = attendance::table
        .filter(attendance::session_id.eq(&session))
        .filter(attendance::participant_id.eq("p1"))
        .select(attendance::hours)
        .first(&mut app.db.connect())
        .unwrap();
    assert_eq!(projected, Some(3.5));
    let open = app.get("/api/v1/conflicts", Some(&admin.access));
    assert_eq!(
        open.body["conflicts"].as_array().unwrap().len(),
        0,
        "{}",
        open.body
    );
    let again = app.send("POST", &path, Some(&admin.access), &json!({"choice": pick}));
    assert_eq!(again.status, 409, "{}", again.body);
}

dual_backend_tests!(
    an_attendance_entry_recorded_on_two_tablets_is_resolved_by_choosing_one,
    an_admin_replaces_a_sessions_facilitators_as_a_whole_list,
    records_are_found_by_khmer_or_latin_name_within_scope,
    flags_are_accepted_corrected_and_fixed_and_keep_their_identity,
    a_records_history_reads_in_words_for_three_devices_and_an_admin,
    an_admin_correction_reaches_the_tablets_and_is_validated,
    quarantined_changes_are_released_when_they_pass_and_dismissed_with_a_reason,
    a_conflict_resolved_by_an_admin_reaches_every_tablet,
    a_typed_resolution_is_validated_like_a_tablets_value,
);
