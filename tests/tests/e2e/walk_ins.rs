//! Walk-ins: people recorded at sessions by name, sex, age and phone, with no member
//! record. A tablet offline at two sessions records the same woman a member already is
//! (a zero-width space, her phone in international form) and a man twice who is nobody's
//! member yet. The provincial admin sees them with the member each may be (another
//! province sees none), links her, promotes him (the second entry then proposes the new
//! record), undoes a link; the tablets pull every decision, the people-trained figure
//! follows each step, and a rebuild or a rescan keeps the decisions.

use coopsync::records::walk_ins::walk_in_id;
use coopsync_tests::{TestApp, dual_backend_tests, tablet::Tablet};
use serde_json::{Value, json};
use sync_protocol::documents::TrainingSession;

use crate::duplicates::{audits, member, people_trained_in_07};

fn linked_member(t: &Tablet, session: &str, participant: &str) -> Option<String> {
    let (s, _) = TrainingSession::read(t.client.doc(session).expect("the tablet has the session"));
    s.attendance
        .get(participant)
        .expect("the entry is kept")
        .member_id
        .clone()
}

fn walk_ins(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let r = app.get(&format!("/api/v1/walk-ins{query}"), Some(token));
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["walk_ins"].as_array().unwrap().clone()
}

fn a_walk_in_is_linked_or_promoted_and_the_figures_follow(app: &TestApp) {
    app.create_user("prov07", "provincial_admin", &["07"], &[]);
    app.create_user("prov12", "provincial_admin", &["12"], &[]);
    app.create_user("enum07a", "enumerator", &["07"], &[]);
    app.create_user("enum07b", "enumerator", &["07"], &[]);
    let mut a = Tablet::new(app, "enum07a");
    let coop = a.create_cooperative("07", "Ou Krang");
    let sokha = member(
        &mut a,
        &coop,
        "សុខ ចាន់ថា",
        "Sok Chanthea",
        "female",
        1990,
        "012 345 678",
    );
    let s1 = a.create_session("07", &coop);
    a.record_attendance(&s1, &sokha, Some(&sokha), 6.0);
    a.sync();
    let mut b = Tablet::new(app, "enum07b");
    b.sync();
    // Offline at two sessions in 2026: she comes as a walk-in (typed with a zero-width
    // space, aged 36); a man twice; a woman whose name is typed in Latin letters.
    let s2 = b.create_session("07", &coop);
    let s3 = b.create_session("07", &coop);
    let [her, him, him_again, latin] = [(); 4].map(|_| uuid::Uuid::new_v4().to_string());
    b.record_walk_in(&s2, &her, "សុខ\u{200b}ចាន់ថា", "female", 36, "+85512345678");
    b.record_walk_in(&s2, &him, "ម៉ៅ សុផល", "male", 40, "097 111 2222");
    b.record_walk_in(&s2, &latin, "Chan Dara", "female", 30, "011 987 654");
    b.record_walk_in(&s3, &him_again, "ម៉ៅ សុផល", "male", 40, "097 111 2222");
    b.sync();
    a.sync();

    let p07 = app.login("prov07").access;
    assert_eq!(
        people_trained_in_07(app, &p07),
        5,
        "every walk-in is a person"
    );
    let open = walk_ins(app, &p07, "");
    assert_eq!(open.len(), 4, "{open:#?}");
    let first = &open[0];
    assert_eq!(
        first["id"],
        json!(walk_in_id(&s2, &her)),
        "best candidate first"
    );
    assert_eq!(first["entry"]["phone"], json!("+85512345678"));
    assert_eq!(first["session"]["id"], json!(s2));
    let candidate = &first["candidates"][0];
    assert_eq!(candidate["member"]["id"], json!(sokha));
    assert!(candidate["score"].as_u64().unwrap() >= 60, "{candidate}");
    let rules: Vec<&str> = candidate["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"same phone number"), "{rules:?}");
    assert!(rules.contains(&"same Khmer name"), "{rules:?}");
    for w in &open[1..] {
        assert!(w["candidates"].as_array().unwrap().is_empty(), "{w}");
        assert_eq!(w["score"], json!(0));
    }
    assert_eq!(walk_ins(app, &p07, "?min_score=60").len(), 1);
    let paged = app.get("/api/v1/walk-ins?limit=3", Some(&p07));
    let cursor = paged.body["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(
        walk_ins(app, &p07, &format!("?limit=3&cursor={cursor}")).len(),
        1
    );

    // Another province sees none; an enumerator nothing.
    let p12 = app.login("prov12").access;
    assert!(walk_ins(app, &p12, "").is_empty());
    let her_id = walk_in_id(&s2, &her);
    let url = |id: &str, what: &str| format!("/api/v1/walk-ins/{id}{what}");
    assert_eq!(app.get(&url(&her_id, ""), Some(&p12)).status, 404);
    let link = json!({"member_id": sokha});
    assert_eq!(
        app.post(&url(&her_id, "/link"), Some(&p12), &link).status,
        404
    );
    let e = app.login("enum07a").access;
    assert_eq!(app.get("/api/v1/walk-ins", Some(&e)).status, 403);

    // Linked: the tablets pull the entry's member; she is counted once.
    let r = app.post(&url(&her_id, "/link"), Some(&p07), &link);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["walk_in"]["status"], json!("linked"));
    assert_eq!(r.body["walk_in"]["entry"]["member_id"], json!(sokha));
    assert_eq!(
        r.body["walk_in"]["entry"]["name"],
        json!("សុខ\u{200b}ចាន់ថា"),
        "kept as recorded"
    );
    assert_eq!(r.body["change_hashes"].as_array().unwrap().len(), 1);
    assert_eq!(people_trained_in_07(app, &p07), 4);
    b.sync();
    a.sync();
    assert_eq!(
        linked_member(&b, &s2, &her).as_deref(),
        Some(sokha.as_str())
    );
    assert_eq!(
        linked_member(&a, &s2, &her).as_deref(),
        Some(sokha.as_str())
    );
    let r = app.post(&url(&her_id, "/link"), Some(&p07), &link);
    assert_eq!(
        (r.status, r.code()),
        (409, "walk_in_not_open"),
        "{}",
        r.body
    );

    // Refused: a member that does not exist; a Latin name with no Khmer one given.
    let him_id = walk_in_id(&s2, &him);
    let r = app.post(
        &url(&him_id, "/link"),
        Some(&p07),
        &json!({"member_id": uuid::Uuid::new_v4().to_string()}),
    );
    assert_eq!(
        (r.status, r.code()),
        (422, "validation_failed"),
        "{}",
        r.body
    );
    let latin_id = walk_in_id(&s2, &latin);
    let r = app.post(&url(&latin_id, "/promote"), Some(&p07), &json!({}));
    assert_eq!(
        (r.status, r.code()),
        (422, "validation_failed"),
        "{}",
        r.body
    );
    assert_eq!(
        r.body["error"]["fields"][0]["field"],
        json!("full_name_khmer"),
        "{}",
        r.body
    );

    // Promoted: a member record made from the entry, linked; his second entry now
    // proposes the new record, and is linked to it.
    let r = app.post(&url(&him_id, "/promote"), Some(&p07), &json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["member_created"], json!(true));
    assert_eq!(r.body["change_hashes"].as_array().unwrap().len(), 2);
    let new = r.body["member_id"].as_str().unwrap().to_string();
    let rec = app.get(&format!("/api/v1/records/{new}"), Some(&p07));
    assert_eq!(rec.status, 200, "{}", rec.body);
    let fields = &rec.body["record"]["fields"];
    assert_eq!(fields["full_name_khmer"], json!("ម៉ៅ សុផល"), "{}", rec.body);
    assert_eq!(
        fields["year_of_birth"],
        json!("1986"),
        "fields read as text"
    );
    assert_eq!(fields["cooperative_id"], json!(coop));
    assert_eq!(fields["sex"], json!("male"));
    let again_id = walk_in_id(&s3, &him_again);
    let w = app.get(&url(&again_id, ""), Some(&p07));
    assert_eq!(
        w.body["candidates"][0]["member"]["id"],
        json!(new),
        "{}",
        w.body
    );
    let r = app.post(
        &url(&again_id, "/link"),
        Some(&p07),
        &json!({"member_id": new}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        people_trained_in_07(app, &p07),
        3,
        "she, he, and the Latin name"
    );
    a.sync();
    assert!(
        a.client.doc(&new).is_some(),
        "the tablet pulled the new member"
    );
    assert_eq!(
        linked_member(&a, &s3, &him_again).as_deref(),
        Some(new.as_str())
    );

    // Undone: the entry points at nobody again, on every tablet; counted apart again.
    let r = app.post(&url(&her_id, "/undo"), Some(&p07), &Value::Null);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["walk_in"]["status"], json!("open"));
    assert_eq!(people_trained_in_07(app, &p07), 4);
    b.sync();
    assert_eq!(linked_member(&b, &s2, &her), None);
    let r = app.post(&url(&her_id, "/undo"), Some(&p07), &Value::Null);
    assert_eq!(
        (r.status, r.code()),
        (409, "walk_in_not_decided"),
        "{}",
        r.body
    );

    // Decisions are kept across a rebuild of the projection and a rescan.
    let report = coopsync::records::projection::rebuild(&mut app.db.connect(), |_, _| {}).unwrap();
    assert!(report.skipped.is_empty());
    let rescan = coopsync::records::duplicates::rescan(&mut app.db.connect(), |_, _| {}).unwrap();
    assert_eq!(rescan.walk_ins.walk_ins, 2, "{rescan:?}");
    let status_of = |list: Vec<Value>| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = list
            .iter()
            .map(|w| {
                (
                    w["id"].as_str().unwrap().to_string(),
                    w["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let mut expected = vec![
        (her_id.clone(), "open".to_string()),
        (him_id.clone(), "promoted".to_string()),
        (again_id.clone(), "linked".to_string()),
        (latin_id.clone(), "open".to_string()),
    ];
    expected.sort();
    assert_eq!(status_of(walk_ins(app, &p07, "?status=all")), expected);
    assert_eq!(
        walk_ins(app, &p07, "")[0]["candidates"][0]["member"]["id"],
        json!(sokha),
        "still proposed after the undo"
    );
    assert_eq!(people_trained_in_07(app, &p07), 4);

    // One audit row per decision.
    assert_eq!(audits(app, "walk_in.link"), 2);
    assert_eq!(audits(app, "walk_in.promote"), 1);
    assert_eq!(audits(app, "walk_in.unlink"), 1);
}

dual_backend_tests!(a_walk_in_is_linked_or_promoted_and_the_figures_follow);
