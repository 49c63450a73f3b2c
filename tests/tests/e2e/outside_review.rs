//! What an outside penetration battery broke (issue 11), one test each: a device taken
//! over by another account, an admin managing an enumerator whose cooperative lies in
//! another province, records served after a province was withdrawn, formula injection in
//! CSV exports, an existence oracle in the push answer, and a burst of gzip pushes
//! refused while the server had room.

use std::collections::BTreeSet;

use coopsync_tests::{TestApp, dual_backend_tests, tablet::Tablet};
use serde_json::json;
use sync_protocol::{
    PROTOCOL_VERSION,
    messages::{DocChanges, SyncRequest},
};

fn a_device_id_belongs_to_the_account_that_registered_it(app: &TestApp) {
    app.create_user("owner", "enumerator", &["07"], &[]);
    app.create_user("intruder", "enumerator", &["07"], &[]);
    let device = uuid::Uuid::new_v4().to_string();
    let owner = app.login_on("owner", &device);
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": "intruder", "password": coopsync_tests::PASSWORD,
                "device_id": device, "device_name": "stolen id"}),
    );
    assert_eq!(
        (r.status, r.code()),
        (409, "device_registered_to_another_account"),
        "{}",
        r.body
    );
    // The owner is still signed in, and still refreshes.
    assert_eq!(app.get("/api/v1/me", Some(&owner.access)).status, 200);
    let r = app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({"refresh_token": owner.refresh}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // The owner signing in again on the same device is fine.
    app.login_on("owner", &device);
}

fn a_provincial_admin_manages_only_accounts_wholly_inside_their_provinces(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    let mut nat = Tablet::new(app, "nat");
    let coop_12 = nat.create_cooperative("12", "Far away");
    nat.sync();
    let wide = app.create_user("wide", "enumerator", &["07"], &[&coop_12]);
    let narrow = app.create_user("narrow", "enumerator", &["07"], &[]);
    app.create_user("p07", "provincial_admin", &["07"], &[]);
    let admin = app.login("p07");
    let r = app.get(&format!("/api/v1/users/{wide}"), Some(&admin.access));
    assert_eq!(r.status, 404, "{}", r.body);
    let r = app.post(
        &format!("/api/v1/users/{wide}/password"),
        Some(&admin.access),
        &json!({"password": "taken-over-account"}),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = app.post(
        &format!("/api/v1/users/{narrow}/password"),
        Some(&admin.access),
        &json!({"password": "a-new-password-ok"}),
    );
    assert_eq!(r.status, 204, "{}", r.body);
}

fn pull(tablet: &mut Tablet, cursor: Option<String>, max: usize) -> serde_json::Value {
    let (status, body) = tablet.transport.post(&SyncRequest {
        protocol_version: PROTOCOL_VERSION,
        pull: true,
        cursor,
        max_pull_bytes: Some(max),
        ..SyncRequest::default()
    });
    assert_eq!(status, 200, "{body}");
    body["pull"].clone()
}

fn doc_ids(pull: &serde_json::Value) -> BTreeSet<String> {
    pull["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["doc_id"].as_str().unwrap().to_string())
        .collect()
}

fn records_owed_under_a_withdrawn_province_are_never_served(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    let enumerator = app.create_user("enum", "enumerator", &["07"], &[]);
    let mut nat = Tablet::new(app, "nat");
    let mut in_12 = BTreeSet::new();
    nat.create_cooperative("07", "Home");
    for i in 0..8 {
        let c = nat.create_cooperative("12", &format!("Twelve {i}"));
        in_12.insert(nat.add_member(&c, &format!("Member {i}"), "female"));
        in_12.insert(c);
    }
    nat.sync();
    let admin = app.login("nat");
    let assign = |provinces: serde_json::Value| {
        let r = app.send(
            "PUT",
            &format!("/api/v1/users/{enumerator}/assignments"),
            Some(&admin.access),
            &json!({ "provinces": provinces }),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    };
    let mut t = Tablet::new(app, "enum");
    let first = pull(&mut t, None, 1024 * 1024);
    let cursor = first["cursor"].as_str().unwrap().to_string();
    assign(json!(["07", "12"]));
    // A small page: most of 12's history is still owed.
    let page = pull(&mut t, Some(cursor.clone()), 1024);
    assert!(page["more"].as_bool().unwrap(), "{page}");
    let got = doc_ids(&page);
    assert!(!got.is_empty() && got.len() < in_12.len(), "{got:?}");
    assign(json!(["07"]));
    for cursor in [None, Some(cursor)] {
        let mut served = BTreeSet::new();
        let mut c = cursor;
        for _ in 0..50 {
            let p = pull(&mut t, c.clone(), 64 * 1024);
            served.extend(doc_ids(&p));
            c = Some(p["cursor"].as_str().unwrap().to_string());
            if !p["more"].as_bool().unwrap() {
                break;
            }
        }
        let leaked: Vec<&String> = served.intersection(&in_12).collect();
        assert!(
            leaked.is_empty(),
            "province 12 served after withdrawal: {leaked:?}"
        );
    }
}

fn csv_exports_never_hold_a_live_formula(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    let mut nat = Tablet::new(app, "nat");
    let names = [
        "=HYPERLINK(\"http://evil.example\",\"click\")",
        "@SUM(A1:A9)",
        "+cmd|' /C calc'!A0",
        "-2+3",
    ];
    for name in names {
        nat.create_cooperative("07", name);
    }
    nat.sync();
    let admin = app.login("nat");
    let r = app.get("/api/v1/exports/cooperatives", Some(&admin.access));
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.raw.clone()).unwrap();
    for line in text.lines().skip(1) {
        for cell in line.split(',') {
            let cell = cell.trim_matches('"');
            assert!(
                !(cell.starts_with(['=', '+', '@']) || cell.starts_with('-') && cell.contains('+')),
                "live formula in {line:?}"
            );
        }
    }
    assert!(text.contains("'=HYPERLINK("), "{text}");
    assert!(text.contains("'@SUM(A1:A9)"), "{text}");
}

fn a_record_out_of_scope_answers_the_same_whether_or_not_it_exists(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("e12", "enumerator", &["12"], &[]);
    let mut nat = Tablet::new(app, "nat");
    let coop = nat.create_cooperative("07", "Hidden");
    nat.sync();
    let history: Vec<String> = {
        use base64::Engine as _;
        nat.client
            .doc(&coop)
            .unwrap()
            .get_changes(&[])
            .iter()
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c.raw_bytes()))
            .collect()
    };
    let mut t = Tablet::new(app, "e12");
    for doc_type in ["cooperative", "member"] {
        let (status, body) = t.transport.post(&SyncRequest {
            protocol_version: PROTOCOL_VERSION,
            push: vec![DocChanges {
                doc_id: coop.clone(),
                doc_type: doc_type.into(),
                changes: history.clone(),
            }],
            ..SyncRequest::default()
        });
        assert_eq!(status, 200);
        let r = &body["push"][0];
        assert_eq!(r["duplicates"], 0, "{doc_type}: {r}");
        assert_eq!(r["errors"][0]["code"], "out_of_scope", "{doc_type}: {r}");
    }
}

/// Issue 11: a session quarantined `out_of_scope` (province "7" from an enumerator of
/// "07") held the tablet's next change, the fix, as pending for ever with nobody told.
fn a_change_held_behind_a_quarantined_one_is_reported_as_blocked(app: &TestApp) {
    use base64::Engine as _;
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("enum7", "enumerator", &["07"], &[]);
    let mut nat = Tablet::new(app, "nat");
    let coop = nat.create_cooperative("07", "Home");
    nat.sync();
    let mut t = Tablet::new(app, "enum7");
    let session = t.create_session("7", &coop);
    t.set(&session, "province_code", "07");
    let history: Vec<(String, String)> = t
        .client
        .doc(&session)
        .unwrap()
        .get_changes(&[])
        .iter()
        .map(|c| {
            (
                c.hash().to_string(),
                base64::engine::general_purpose::STANDARD.encode(c.raw_bytes()),
            )
        })
        .collect();
    let mut push = |change: &str| {
        let (status, body) = t.transport.post(&SyncRequest {
            protocol_version: PROTOCOL_VERSION,
            push: vec![DocChanges {
                doc_id: session.clone(),
                doc_type: "training_session".into(),
                changes: vec![change.to_string()],
            }],
            ..SyncRequest::default()
        });
        assert_eq!(status, 200, "{body}");
        body["push"][0].clone()
    };
    let r = push(&history[0].1);
    assert_eq!(r["errors"][0]["code"], "out_of_scope", "{r}");
    for attempt in 0..2 {
        let r = push(&history[1].1);
        assert_eq!(
            r["pending"],
            json!([history[1].0]),
            "attempt {attempt}: {r}"
        );
        assert_eq!(r["blocked"][0]["hash"], history[1].0.as_str(), "{r}");
        assert_eq!(r["blocked"][0]["code"], "dependency_quarantined", "{r}");
        assert_eq!(r["blocked"][0]["quarantined"], json!([history[0].0]), "{r}");
    }
}

/// Issue 11: a reinstalled app (a new device id) that kept its actor id got
/// `foreign_actor` while the protocol said `actor_reused`. Both now say: take a new actor.
fn a_reinstalled_app_reusing_its_actor_is_told_actor_reused(app: &TestApp) {
    use base64::Engine as _;
    app.create_user("sokun", "enumerator", &["07"], &[]);
    app.create_user("other", "enumerator", &["07"], &[]);
    let mut before = Tablet::new(app, "sokun");
    let coop = before.create_cooperative("07", "Mine");
    before.sync();
    before.set(&coop, "village", "After the reinstall");
    let change = before
        .client
        .doc(&coop)
        .unwrap()
        .get_last_local_change()
        .unwrap()
        .raw_bytes()
        .to_vec();
    let body = |t: &mut Tablet| {
        let (status, body) = t.transport.post(&SyncRequest {
            protocol_version: PROTOCOL_VERSION,
            push: vec![DocChanges {
                doc_id: coop.clone(),
                doc_type: "cooperative".into(),
                changes: vec![base64::engine::general_purpose::STANDARD.encode(&change)],
            }],
            ..SyncRequest::default()
        });
        assert_eq!(status, 200);
        body["push"][0]["errors"][0]["code"].clone()
    };
    let mut reinstalled = Tablet::new(app, "sokun");
    assert_eq!(body(&mut reinstalled), "actor_reused");
    let mut stranger = Tablet::new(app, "other");
    assert_eq!(body(&mut stranger), "foreign_actor");
}

/// Issue 11, protocol items: a sync body that is not declared JSON is 415 as documented;
/// a malformed `need_full_history` entry is refused before the push is stored; a 60 KB
/// "name" is flagged `too_long`.
fn sync_requests_are_held_to_the_documented_contract(app: &TestApp) {
    use coopsync::db::schema::validation_flags;
    use diesel::prelude::*;
    app.create_user("nat", "national_admin", &[], &[]);
    let s = app.login("nat");
    let auth = format!("Bearer {}", s.access);
    let body = br#"{"protocol_version":1,"pull":true}"#;
    for headers in [
        vec![
            ("authorization", auth.as_str()),
            ("content-type", "text/plain"),
        ],
        vec![("authorization", auth.as_str())],
    ] {
        let r = app.post_bytes("/api/v1/sync", &headers, body);
        assert_eq!(
            (r.status, r.code()),
            (415, "unsupported_media_type"),
            "{headers:?}"
        );
    }
    let mut t = Tablet::new(app, "nat");
    let coop = t.create_cooperative("07", &"ស".repeat(20_000));
    let (status, body) = t.transport.post(&SyncRequest {
        protocol_version: PROTOCOL_VERSION,
        pull: true,
        need_full_history: vec!["not-a-uuid".into()],
        ..SyncRequest::default()
    });
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_document_id");
    t.sync();
    let flags: Vec<(String, String)> = validation_flags::table
        .filter(validation_flags::document_id.eq(&coop))
        .select((validation_flags::code, validation_flags::field))
        .load(&mut app.db.connect())
        .unwrap();
    assert!(
        flags.contains(&("too_long".to_string(), "name_latin".to_string())),
        "{flags:?}"
    );
}

/// Issue 11: an enumerator assigned one cooperative moved it from 12 to 05 (applied; 12's
/// admin lost it) and created a session in 05. Writes through a cooperative assignment
/// stay in the cooperative's province.
fn a_cooperative_assignment_cannot_move_records_out_of_their_province(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    let mut nat = Tablet::new(app, "nat");
    let coop = nat.create_cooperative("12", "Twelve");
    nat.sync();
    app.create_user("assigned", "enumerator", &["07"], &[&coop]);
    let mut t = Tablet::new(app, "assigned");
    t.sync();
    t.set(&coop, "village", "Edited in place");
    let r = t.sync();
    assert!(
        t.client.rejected().is_empty(),
        "an edit in place applies: {r:?}"
    );
    t.set(&coop, "province_code", "05");
    let in_05 = t.create_session("05", &coop);
    let in_12 = t.create_session("12", &coop);
    t.sync();
    let rejected: Vec<(String, String)> = t
        .client
        .rejected()
        .iter()
        .map(|r| (r.doc_id.clone(), r.code.clone()))
        .collect();
    assert!(
        rejected.contains(&(coop.clone(), "out_of_scope".into())),
        "{rejected:?}"
    );
    assert!(
        rejected.contains(&(in_05.clone(), "out_of_scope".into())),
        "{rejected:?}"
    );
    assert!(!rejected.iter().any(|(d, _)| *d == in_12), "{rejected:?}");
    // The province admin of 12 still has the cooperative.
    app.create_user("p12", "provincial_admin", &["12"], &[]);
    let admin = app.login("p12");
    let csv = app.get("/api/v1/exports/cooperatives", Some(&admin.access));
    assert!(String::from_utf8_lossy(&csv.raw).contains(&coop));
}

/// Issue 11: device ids (national admins' included) reached provincial admins through the
/// conflicts export.
fn conflict_exports_name_devices_only_to_national_admins(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("p07", "provincial_admin", &["07"], &[]);
    app.create_user("one07", "enumerator", &["07"], &[]);
    let mut nat = Tablet::new(app, "nat");
    let coop = nat.create_cooperative("07", "Shared");
    nat.sync();
    let mut t = Tablet::new(app, "one07");
    t.sync();
    nat.set(&coop, "village", "National's value");
    t.set(&coop, "village", "Enumerator's value");
    nat.sync();
    t.sync();
    let export = |who: &str| {
        let s = app.login(who);
        let r = app.get("/api/v1/exports/conflicts", Some(&s.access));
        assert_eq!(r.status, 200);
        String::from_utf8(r.raw).unwrap()
    };
    let national = export("nat");
    assert!(
        national.contains("village") && national.contains("device_id"),
        "{national}"
    );
    let provincial = export("p07");
    assert!(provincial.contains("village"), "{provincial}");
    assert!(!provincial.contains("device_id"), "{provincial}");
    assert!(!provincial.contains(&nat.session.device_id), "{provincial}");
}

/// Issue 11: an enumerator of 23 pushed a member naming a cooperative the server did not
/// have; when a 07 tablet pushed that cooperative the member became a 07 record written
/// by the 23 tablet. It is now held until the cooperative arrives, then checked against
/// its author's scope.
fn a_member_waiting_for_its_cooperative_is_checked_against_its_author(app: &TestApp) {
    use coopsync::db::schema::{documents, members, pending_changes, quarantine};
    use diesel::prelude::*;
    app.create_user("far23", "enumerator", &["23"], &[]);
    app.create_user("home07", "enumerator", &["07"], &[]);
    app.create_user("also07", "enumerator", &["07"], &[]);
    let mut home = Tablet::new(app, "home07");
    let mut far = Tablet::new(app, "far23");
    let mut also = Tablet::new(app, "also07");
    // The cooperative exists on the 07 tablet only, for now.
    let coop = home.create_cooperative("07", "Arrives later");
    let intruder = far.add_member(&coop, "Pushed from 23", "female");
    let neighbour = also.add_member(&coop, "Pushed from 07", "male");
    far.sync();
    also.sync();
    let mut conn = app.db.connect();
    let held: i64 = pending_changes::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(held, 2, "both held until the cooperative arrives");
    home.sync();
    let projected: Vec<String> = members::table.select(members::id).load(&mut conn).unwrap();
    assert_eq!(
        projected,
        [neighbour],
        "only the 07 author's member applies"
    );
    let stored: i64 = documents::table
        .filter(documents::id.eq(&intruder))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(stored, 0);
    let q: Vec<(Option<String>, String)> = quarantine::table
        .select((quarantine::document_id, quarantine::code))
        .load(&mut conn)
        .unwrap();
    assert!(
        q.contains(&(Some(intruder.clone()), "out_of_scope".into())),
        "{q:?}"
    );
    let held: i64 = pending_changes::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(held, 0);
}

dual_backend_tests!(
    a_member_waiting_for_its_cooperative_is_checked_against_its_author,
    conflict_exports_name_devices_only_to_national_admins,
    a_cooperative_assignment_cannot_move_records_out_of_their_province,
    sync_requests_are_held_to_the_documented_contract,
    a_reinstalled_app_reusing_its_actor_is_told_actor_reused,
    a_change_held_behind_a_quarantined_one_is_reported_as_blocked,
    a_device_id_belongs_to_the_account_that_registered_it,
    a_provincial_admin_manages_only_accounts_wholly_inside_their_provinces,
    records_owed_under_a_withdrawn_province_are_never_served,
    csv_exports_never_hold_a_live_formula,
    a_record_out_of_scope_answers_the_same_whether_or_not_it_exists,
    sixteen_gzip_pushes_of_twenty_sessions_all_succeed,
);

/// Issue 17: hex + gzip bodies of ~20 session documents inflate past the body budget's
/// first guess (8x). The budget took the whole 16 MiB decoded limit at once and refused
/// all but ~3 such requests with 503 while the server sat idle; now it grows step by step
/// and waits in line.
fn sixteen_gzip_pushes_of_twenty_sessions_all_succeed(app: &TestApp) {
    use std::io::Write as _;
    use sync_protocol::messages::ChangeEncoding;
    const TABLETS: usize = 16;
    app.create_user("nat", "national_admin", &[], &[]);
    let mut nat = Tablet::new(app, "nat");
    let coop = nat.create_cooperative("07", "Burst");
    nat.sync();
    let mut tablets: Vec<Tablet> = (0..TABLETS)
        .map(|i| {
            let name = format!("enum{i}");
            app.create_user(&name, "enumerator", &["07"], &[]);
            Tablet::new(app, &name)
        })
        .collect();
    let mut requests = Vec::new();
    for t in &mut tablets {
        let mut push = Vec::new();
        for _ in 0..20 {
            let s = t.create_session("07", &coop);
            for p in 0..30 {
                t.record_attendance(&s, &format!("p{p}"), None, 6.0);
            }
            push.push(DocChanges {
                doc_id: s.clone(),
                doc_type: "training_session".into(),
                changes: t
                    .client
                    .doc(&s)
                    .unwrap()
                    .get_changes(&[])
                    .iter()
                    .map(|c| hex::encode(c.raw_bytes()))
                    .collect(),
            });
        }
        requests.push(SyncRequest {
            protocol_version: PROTOCOL_VERSION,
            encoding: ChangeEncoding::Hex,
            push,
            ..SyncRequest::default()
        });
    }
    // The premise: such a body inflates past the first guess.
    let json = serde_json::to_vec(&requests[0]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).unwrap();
    let wire = gz.finish().unwrap().len();
    assert!(
        json.len() > 8 * wire && 8 * wire > 64 * 1024,
        "{} bytes inflate from {wire}",
        json.len()
    );
    let barrier = std::sync::Barrier::new(TABLETS);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = tablets
            .iter_mut()
            .zip(&requests)
            .map(|(t, r)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let status = t.transport.try_post(r).map(|(status, _)| status);
                    // try_post repeats a 503; none may have been needed.
                    status.map(|s| if t.transport.busy_retries > 0 { 503 } else { s })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

/// Issue 11: 17 uploads trickling one byte a second filled the body budget and every
/// other user's sync and sign-in answered 503 for up to a minute. Now one account has at
/// most 4 uploads in flight (the rest wait, then 429) and a body slower than the minimum
/// rate is cut off (408) after its grace period.
fn fifty_slow_uploads_from_one_account_do_not_starve_other_users() {
    use std::io::{Read as _, Write as _};
    for backend in [
        coopsync_tests::Backend::Sqlite,
        coopsync_tests::Backend::Postgres,
    ] {
        let Some(app) = TestApp::spawn_with(backend, |s| s.body_min_rate_grace_secs = 3) else {
            continue;
        };
        app.create_user("slowloris", "enumerator", &["07"], &[]);
        app.create_user("victim", "enumerator", &["07"], &[]);
        app.create_user("newcomer", "enumerator", &["07"], &[]);
        let attackers: Vec<String> = (0..5).map(|_| app.login("slowloris").access).collect();
        let addr = app
            .url("")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let mut victim = Tablet::new(&app, "victim");
        let coop = victim.create_cooperative("07", "Busy day");
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (latencies, slow_statuses) = std::thread::scope(|s| {
            let slow: Vec<_> = (0..50)
                .map(|i| {
                    let (addr, token, stop) = (&addr, &attackers[i % 5], &stop);
                    s.spawn(move || {
                        let mut c = std::net::TcpStream::connect(addr).unwrap();
                        c.set_read_timeout(Some(std::time::Duration::from_secs(1)))
                            .unwrap();
                        write!(
                            c,
                            "POST /api/v1/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                             Content-Type: application/json\r\nContent-Length: 4194304\r\n\r\n"
                        )
                        .unwrap();
                        let mut answer = Vec::new();
                        for _ in 0..40 {
                            if stop.load(std::sync::atomic::Ordering::Relaxed)
                                || c.write_all(b" ").is_err()
                            {
                                break;
                            }
                            let mut buf = [0u8; 512];
                            match c.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    answer.extend_from_slice(&buf[..n]);
                                    break;
                                }
                                Err(_) => {}
                            }
                        }
                        String::from_utf8_lossy(&answer)
                            .split_whitespace()
                            .nth(1)
                            .unwrap_or("none")
                            .to_string()
                    })
                })
                .collect();
            std::thread::sleep(std::time::Duration::from_millis(500));
            let mut latencies = Vec::new();
            for i in 0..20 {
                victim.set(&coop, "village", &format!("edit {i}"));
                let started = std::time::Instant::now();
                victim.sync();
                latencies.push(started.elapsed().as_secs_f64());
                assert_eq!(victim.transport.busy_retries, 0, "victim told busy");
                if i == 10 {
                    let started = std::time::Instant::now();
                    app.login("newcomer");
                    latencies.push(started.elapsed().as_secs_f64());
                }
                // Spread over the slow uploads' whole life (cut off, queued, refused).
                std::thread::sleep(std::time::Duration::from_millis(600));
            }
            let statuses: Vec<String> = slow.into_iter().map(|h| h.join().unwrap()).collect();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (latencies, statuses)
        });
        let mut sorted = latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = sorted[sorted.len() - 1];
        coopsync_tests::notice(&format!(
            "{backend:?}: 50 slow uploads from one account: other user's 20 syncs and a sign-in p50 {:.3} s, p99 {p99:.3} s; slow uploads answered {:?}",
            sorted[sorted.len() / 2],
            slow_statuses.iter().fold(
                std::collections::BTreeMap::<&str, usize>::new(),
                |mut m, s| {
                    *m.entry(s.as_str()).or_default() += 1;
                    m
                }
            )
        ));
        assert!(p99 < 5.0, "{latencies:?}");
        assert!(
            slow_statuses.iter().all(|s| s == "408" || s == "429"),
            "{slow_statuses:?}"
        );
    }
}

#[test]
fn both_fifty_slow_uploads_from_one_account_do_not_starve_other_users() {
    fifty_slow_uploads_from_one_account_do_not_starve_other_users();
}

/// Issue 11: `/metrics` in the Prometheus format, behind its own token, never open to
/// tablets; 404 when no token is configured.
#[test]
fn metrics_are_served_only_with_the_metrics_token() {
    let Some(closed) = TestApp::spawn(coopsync_tests::Backend::Sqlite) else {
        return;
    };
    assert_eq!(closed.get("/metrics", None).status, 404);
    drop(closed);
    let token = "metrics-token-0123456789abcdef";
    let Some(app) = TestApp::spawn_with(coopsync_tests::Backend::Sqlite, |s| {
        s.metrics_token = coopsync::config::Secret::new(token)
    }) else {
        return;
    };
    app.create_user("scraped", "enumerator", &["07"], &[]);
    let mut t = Tablet::new(&app, "scraped");
    t.create_cooperative("07", "Counted");
    t.sync();
    assert_eq!(app.get("/metrics", None).status, 401);
    assert_eq!(app.get("/metrics", Some(&t.session.access)).status, 401);
    let r = app.get("/metrics", Some(token));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(r.raw).unwrap();
    for needle in [
        "coopsync_http_requests_total{route=\"/api/v1/sync\",method=\"POST\",status=\"200\"}",
        "coopsync_http_request_duration_seconds_bucket{route=\"/api/v1/sync\",le=\"+Inf\"}",
        "coopsync_sync_changes_total{outcome=\"applied\"} 1",
        "coopsync_db_pool_connections{state=\"max\"} 4",
        "coopsync_body_budget_bytes{state=\"capacity\"} 67108864",
        "coopsync_doc_cache_lookups_total{result=\"miss\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    // Paths never become labels: ids stay out of the metrics.
    assert!(!text.contains(&t.session.user_id));
}
