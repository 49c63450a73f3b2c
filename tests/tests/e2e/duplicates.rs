//! Possible duplicates: the same woman registered on two tablets, once with a zero-width
//! space and another phone spelling, once in another cooperative by her phone; a husband
//! sharing her phone is not proposed; scope as everywhere. Then the decisions: a merge
//! that both tablets pull and that the people-trained figure follows (with attendance a
//! tablet recorded under the merged id while offline), its undo, and "not the same
//! person" remembered across a projection rebuild until a compared field changes.

use coopsync_tests::{TestApp, dual_backend_tests, tablet::Tablet};
use diesel::prelude::*;
use serde_json::{Value, json};
use sync_protocol::documents::{DocType, Member};

pub(crate) fn member(
    t: &mut Tablet,
    coop: &str,
    km: &str,
    latin: &str,
    sex: &str,
    yob: i64,
    phone: &str,
) -> String {
    let m = Member {
        cooperative_id: Some(coop.to_string()),
        full_name_khmer: Some(km.to_string()),
        name_latin: Some(latin.to_string()),
        sex: Some(sex.to_string()),
        year_of_birth: Some(yob),
        phone: Some(phone.to_string()),
        village: Some("Prey Khmeng".into()),
        role: Some("member".into()),
        ..Member::default()
    };
    t.client
        .create(DocType::Member, |tx| m.write(tx, true))
        .unwrap()
}

fn the_same_farmer_registered_twice_is_proposed_with_its_reasons(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("prov07", "provincial_admin", &["07"], &[]);
    app.create_user("prov12", "provincial_admin", &["12"], &[]);
    app.create_user("enum07a", "enumerator", &["07"], &[]);
    app.create_user("enum07b", "enumerator", &["07"], &[]);
    let mut a = Tablet::new(app, "enum07a");
    let coop = a.create_cooperative("07", "Ou Krang");
    let other_coop = a.create_cooperative("07", "Tuek Chhu");
    let first = member(
        &mut a,
        &coop,
        "សុខ ចាន់ថា",
        "Sok Chanthea",
        "female",
        1986,
        "012 345 678",
    );
    let husband = member(
        &mut a,
        &coop,
        "ហេង សុភា",
        "Heng Sophea",
        "male",
        1980,
        "012 345 678",
    );
    for i in 0..5 {
        member(
            &mut a,
            &coop,
            &format!("ស្រី {i}"),
            &format!("Srey {i}"),
            "female",
            1990 + i,
            &format!("097 000 00{i}"),
        );
    }
    a.sync();
    let mut b = Tablet::new(app, "enum07b");
    b.sync();
    let again = member(
        &mut b,
        &coop,
        "សុខ\u{200b}  ចាន់ថា",
        "Sokh Chantha",
        "female",
        1987,
        "+855 12 345 678",
    );
    let elsewhere = member(
        &mut b,
        &other_coop,
        "ចាន់ថា សុខ",
        "Chanthea Sok",
        "female",
        1986,
        "85512345678",
    );
    b.sync();

    let p07 = app.login("prov07").access;
    let r = app.get("/api/v1/duplicates", Some(&p07));
    assert_eq!(r.status, 200, "{}", r.body);
    let pairs: Vec<(String, String, u64, String)> = r.body["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["a"]["id"].as_str().unwrap().to_string(),
                c["b"]["id"].as_str().unwrap().to_string(),
                c["score"].as_u64().unwrap(),
                c["explanation"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let has = |x: &str, y: &str| {
        pairs
            .iter()
            .find(|(a, b, _, _)| (a == x && b == y) || (a == y && b == x))
    };
    let (_, _, score, why) = has(&first, &again).unwrap_or_else(|| panic!("{pairs:?}"));
    assert_eq!(*score, 100, "{why}");
    assert!(
        why.starts_with("same Khmer name (40) + same phone number (35)"),
        "{why}"
    );
    let (_, _, _, why) = has(&first, &elsewhere).unwrap_or_else(|| panic!("{pairs:?}"));
    assert!(why.contains("same phone number"), "{why}");
    assert!(has(&again, &elsewhere).is_some());
    assert!(has(&first, &husband).is_none(), "sex disagrees: {pairs:?}");
    assert_eq!(pairs.len(), 3, "{pairs:?}");
    // Sorted best first.
    assert!(pairs.windows(2).all(|w| w[0].2 >= w[1].2));

    let r = app.get(
        &format!("/api/v1/duplicates?cooperative={coop}&min_score=95"),
        Some(&p07),
    );
    assert_eq!(
        r.body["candidates"].as_array().unwrap().len(),
        1,
        "{}",
        r.body
    );

    let p12 = app.login("prov12").access;
    let r = app.get("/api/v1/duplicates", Some(&p12));
    assert_eq!(
        r.body["candidates"].as_array().unwrap().len(),
        0,
        "another province sees none"
    );
    let nat = app.login("nat").access;
    let r = app.get("/api/v1/duplicates?province=07", Some(&nat));
    assert_eq!(r.body["candidates"].as_array().unwrap().len(), 3);
    let r = app.get("/api/v1/duplicates?province=12", Some(&nat));
    assert_eq!(r.body["candidates"].as_array().unwrap().len(), 0);
    // Pages: two of three, then the last.
    let r = app.get("/api/v1/duplicates?limit=2", Some(&nat));
    assert_eq!(r.body["candidates"].as_array().unwrap().len(), 2);
    let cursor = r.body["next_cursor"].as_str().unwrap().to_string();
    let r = app.get(
        &format!("/api/v1/duplicates?limit=2&cursor={cursor}"),
        Some(&nat),
    );
    assert_eq!(
        r.body["candidates"].as_array().unwrap().len(),
        1,
        "{}",
        r.body
    );
    assert!(r.body["next_cursor"].is_null());
    let e = app.login("enum07a").access;
    assert_eq!(app.get("/api/v1/duplicates", Some(&e)).status, 403);
}

pub(crate) fn people_trained_in_07(app: &TestApp, token: &str) -> i64 {
    let r = app.get("/api/v1/reports/people_trained?province=07", Some(token));
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["province_code"] == "07" && row["programme"] == "all")
        .map(|row| row["people"].as_i64().unwrap())
        .unwrap_or(0)
}

fn open_pairs(app: &TestApp, token: &str) -> Vec<Value> {
    let r = app.get("/api/v1/duplicates", Some(token));
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["candidates"].as_array().unwrap().clone()
}

fn merged_into(t: &Tablet, id: &str) -> Option<String> {
    Member::read(t.client.doc(id).expect("the tablet has the member"))
        .0
        .merged_into
}

pub(crate) fn audits(app: &TestApp, action: &str) -> i64 {
    use coopsync::db::schema::audit_log;
    audit_log::table
        .filter(audit_log::action.eq(action))
        .count()
        .get_result(&mut app.db.connect())
        .unwrap()
}

fn a_merge_reaches_the_tablets_counts_her_once_and_undoes_exactly(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("prov07", "provincial_admin", &["07"], &[]);
    app.create_user("prov12", "provincial_admin", &["12"], &[]);
    app.create_user("enum07a", "enumerator", &["07"], &[]);
    app.create_user("enum07b", "enumerator", &["07"], &[]);
    let mut a = Tablet::new(app, "enum07a");
    let coop = a.create_cooperative("07", "Ou Krang");
    a.sync();
    let mut b = Tablet::new(app, "enum07b");
    b.sync();
    // Offline on both tablets: the same woman, typed two ways; her husband and her
    // daughter share her phone (not proposed).
    let first = member(
        &mut a,
        &coop,
        "សុខ ចាន់ថា",
        "Sok Chanthea",
        "female",
        1986,
        "012 345 678",
    );
    member(
        &mut a,
        &coop,
        "ហេង សុភា",
        "Heng Sophea",
        "male",
        1984,
        "012 345 678",
    );
    let daughter = member(
        &mut a,
        &coop,
        "សុខ ស្រីពៅ",
        "Sok Sreypov",
        "female",
        2007,
        "012 345 678",
    );
    let again = member(
        &mut b,
        &coop,
        "សុខ\u{200b}  ចាន់ថា",
        "Sokh Chantha",
        "female",
        1987,
        "+85512345678",
    );
    let s1 = a.create_session("07", &coop);
    a.record_attendance(&s1, &first, Some(&first), 6.0);
    let s2 = b.create_session("07", &coop);
    b.record_attendance(&s2, &again, Some(&again), 6.0);
    a.sync();
    b.sync();
    a.sync();

    let p07 = app.login("prov07").access;
    let pairs = open_pairs(app, &p07);
    assert_eq!(pairs.len(), 1, "one candidate: {pairs:#?}");
    let pair = &pairs[0];
    let ids = [
        pair["a"]["id"].as_str().unwrap(),
        pair["b"]["id"].as_str().unwrap(),
    ];
    assert!(ids.contains(&first.as_str()) && ids.contains(&again.as_str()));
    assert!(
        pair["differing"]
            .as_array()
            .unwrap()
            .contains(&json!("name_latin"))
    );
    let pair_id = pair["id"].as_str().unwrap().to_string();
    let p12 = app.login("prov12").access;
    assert!(
        open_pairs(app, &p12).is_empty(),
        "another province sees none"
    );
    assert_eq!(
        people_trained_in_07(app, &p07),
        2,
        "counted twice before the merge"
    );

    // Offline during the merge: tablet b records her attendance under the id it knows
    // and corrects her village.
    let s3 = b.create_session("07", &coop);
    b.record_attendance(&s3, &again, Some(&again), 6.0);
    b.set(&again, "village", "Kampong Bay");

    // A tablet cannot merge by writing the mark itself: it is kept, not followed.
    a.set(&daughter, "merged_into", &first);
    a.sync();
    let r = app.get(&format!("/api/v1/records/{daughter}"), Some(&p07));
    assert_eq!(r.body["record"]["id"], json!(daughter), "{}", r.body);
    assert!(r.body["forwarded_from"].is_null());

    // Refused decisions.
    let e = app.login("enum07a").access;
    let url = format!("/api/v1/duplicates/{pair_id}/merge");
    assert_eq!(
        app.post(&url, Some(&e), &json!({"survivor": first})).status,
        403
    );
    assert_eq!(
        app.post(&url, Some(&p12), &json!({"survivor": first}))
            .status,
        404
    );
    let r = app.post(&url, Some(&p07), &json!({"survivor": coop}));
    assert_eq!(
        (r.status, r.code()),
        (422, "validation_failed"),
        "{}",
        r.body
    );
    let r = app.post(
        &url,
        Some(&p07),
        &json!({"survivor": first, "take": ["merged_into"]}),
    );
    assert_eq!(r.status, 422, "{}", r.body);

    let r = app.post(
        &url,
        Some(&p07),
        &json!({"survivor": first, "take": ["name_latin", "phone"]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let merge_id = r.body["merge_id"].as_str().unwrap().to_string();
    assert_eq!(r.body["fields_taken"], json!(["name_latin", "phone"]));
    assert_eq!(r.body["change_hashes"].as_array().unwrap().len(), 2);
    let r = app.post(&url, Some(&p07), &json!({"survivor": first}));
    assert_eq!((r.status, r.code()), (409, "pair_not_open"));
    assert!(open_pairs(app, &p07).is_empty());
    assert_eq!(
        people_trained_in_07(app, &p07),
        1,
        "counted once after the merge"
    );

    // Both tablets pull the mark and the survivor's new value; b's offline work is kept.
    a.sync();
    b.sync();
    for t in [&a, &b] {
        assert_eq!(merged_into(t, &again).as_deref(), Some(first.as_str()));
        let survivor = Member::read(t.client.doc(&first).unwrap()).0;
        assert_eq!(survivor.name_latin.as_deref(), Some("Sokh Chantha"));
    }
    assert_eq!(
        people_trained_in_07(app, &p07),
        1,
        "the offline attendance counts for the survivor"
    );
    let r = app.get("/api/v1/exports/attendance?province=07", Some(&p07));
    assert_eq!(r.status, 200);
    let csv = String::from_utf8_lossy(&r.raw).to_string();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(
        rows.iter()
            .all(|l| l.split(',').nth(3) == Some(first.as_str())),
        "person_id is the survivor: {csv}"
    );

    // The old id reads as the survivor and says so; the merged record itself shows the
    // tablet's edit made after the merge.
    let r = app.get(&format!("/api/v1/records/{again}"), Some(&p07));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["record"]["id"], json!(first));
    assert_eq!(r.body["forwarded_from"], json!(again));
    assert_eq!(r.body["merged_records"][0]["member_id"], json!(again));
    let r = app.get(&format!("/api/v1/records/{again}?follow=false"), Some(&p07));
    assert_eq!(r.body["record"]["fields"]["merged_into"], json!(first));
    assert_eq!(r.body["record"]["fields"]["village"], json!("Kampong Bay"));
    assert!(
        r.body["merge"]["changes_after_merge"].as_i64().unwrap() >= 1,
        "{}",
        r.body
    );

    // The search lists her once (the survivor); asked to, it lists the merged record too,
    // marked.
    let search = |extra: &str| {
        let r = app.get(
            &format!("/api/v1/records?type=member&q=Sok{extra}"),
            Some(&p07),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["records"].as_array().unwrap().clone()
    };
    let listed = search("");
    let ids: Vec<&str> = listed.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&first.as_str()), "{listed:#?}");
    assert!(!ids.contains(&again.as_str()), "{listed:#?}");
    let listed = search("&include_merged=true");
    let merged = listed
        .iter()
        .find(|r| r["id"] == json!(again))
        .expect("listed when asked");
    assert_eq!(merged["fields"]["merged_into"], json!(first));

    // After the merge tablet a corrects the survivor's phone: the undo must not lose it.
    a.set(&first, "phone", "011 222 333");
    a.sync();

    // Undo: both people as before (but for the phone edited since), counted twice again,
    // the pair open again.
    let r = app.post(
        &format!("/api/v1/merges/{merge_id}/undo"),
        Some(&p12),
        &json!({}),
    );
    assert_eq!(r.status, 404, "outside the scope");
    let r = app.post(
        &format!("/api/v1/merges/{merge_id}/undo"),
        Some(&p07),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["fields_kept"], json!(["phone"]), "{}", r.body);
    let r = app.post(
        &format!("/api/v1/merges/{merge_id}/undo"),
        Some(&p07),
        &json!({}),
    );
    assert_eq!((r.status, r.code()), (409, "merge_undone"));
    assert_eq!(people_trained_in_07(app, &p07), 2);
    a.sync();
    b.sync();
    for t in [&a, &b] {
        assert_eq!(merged_into(t, &again), None);
        let survivor = Member::read(t.client.doc(&first).unwrap()).0;
        assert_eq!(survivor.name_latin.as_deref(), Some("Sok Chanthea"));
        assert_eq!(
            survivor.phone.as_deref(),
            Some("011 222 333"),
            "the later edit stands"
        );
    }
    assert_eq!(open_pairs(app, &p07).len(), 1);
    assert_eq!(audits(app, "duplicate.merge"), 1);
    assert_eq!(audits(app, "duplicate.unmerge"), 1);
}

fn not_the_same_person_is_remembered_until_a_compared_field_changes(app: &TestApp) {
    app.create_user("prov07", "provincial_admin", &["07"], &[]);
    app.create_user("enum07a", "enumerator", &["07"], &[]);
    let mut a = Tablet::new(app, "enum07a");
    let coop = a.create_cooperative("07", "Ou Krang");
    // Namesakes in one cooperative, a year apart: proposed, and they are two women.
    let x = member(
        &mut a,
        &coop,
        "ស្រី ពៅ",
        "Srey Pov",
        "female",
        1990,
        "011 222 333",
    );
    member(
        &mut a,
        &coop,
        "ស្រី ពៅ",
        "Srey Pov",
        "female",
        1991,
        "092 888 777",
    );
    a.sync();
    let p07 = app.login("prov07").access;
    let pairs = open_pairs(app, &p07);
    assert_eq!(pairs.len(), 1, "{pairs:#?}");
    let pair_id = pairs[0]["id"].as_str().unwrap().to_string();
    let r = app.post(
        &format!("/api/v1/duplicates/{pair_id}/not-same"),
        Some(&p07),
        &json!({"note": "mother-in-law and daughter-in-law"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "not_same");
    assert!(open_pairs(app, &p07).is_empty());
    assert_eq!(audits(app, "duplicate.not_same"), 1);

    // A rebuild of the projection keeps the decision; an edit of another field too.
    let report = coopsync::records::projection::rebuild(&mut app.db.connect(), |_, _| {}).unwrap();
    assert!(report.skipped.is_empty());
    a.set(&x, "role", "treasurer");
    a.sync();
    assert!(
        open_pairs(app, &p07).is_empty(),
        "remembered across a rebuild"
    );
    let r = app.get("/api/v1/duplicates?status=not_same", Some(&p07));
    assert_eq!(r.body["candidates"].as_array().unwrap().len(), 1);

    // A compared field changes: proposed again.
    a.set(&x, "village", "Trapeang Thom");
    a.sync();
    let pairs = open_pairs(app, &p07);
    assert_eq!(
        pairs.len(),
        1,
        "proposed again after a compared field changed"
    );
    assert_eq!(pairs[0]["id"], json!(pair_id));
}

dual_backend_tests!(
    the_same_farmer_registered_twice_is_proposed_with_its_reasons,
    a_merge_reaches_the_tablets_counts_her_once_and_undoes_exactly,
    not_the_same_person_is_remembered_until_a_compared_field_changes
);
