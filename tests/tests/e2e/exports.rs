//! Exports and pulls against an oracle of the caller's scope, the audit row of each
//! event, and backend equivalence: one recorded stream of changes into SQLite and into
//! PostgreSQL gives the same export of every table.

use std::collections::{BTreeMap, BTreeSet};

use coopsync::db::schema::{
    attendance, audit_log, conflicts, cooperatives, members, training_sessions, validation_flags,
};
use coopsync_tests::{Backend, TestApp, dual_backend_tests, notice, tablet::Tablet};
use diesel::prelude::*;
use sync_protocol::messages::SyncRequest;

const DATASETS: [&str; 6] = [
    "cooperatives",
    "members",
    "training_sessions",
    "attendance",
    "conflicts",
    "validation_flags",
];

/// A parsed CSV export: header and rows.
struct Csv {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    /// RFC 4180, as the server writes it (BOM, CRLF, quoted cells may hold newlines).
    fn parse(text: &str) -> Csv {
        let text = text
            .strip_prefix('\u{feff}')
            .expect("UTF-8 byte order mark");
        let mut records: Vec<Vec<String>> = Vec::new();
        let (mut record, mut cell) = (Vec::new(), String::new());
        let (mut quoted, mut chars) = (false, text.chars().peekable());
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => cell.push(c),
                (false, '"') => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut cell)),
                (false, '\r') => {}
                (false, '\n') => {
                    record.push(std::mem::take(&mut cell));
                    records.push(std::mem::take(&mut record));
                }
                (false, c) => cell.push(c),
            }
        }
        assert!(cell.is_empty() && record.is_empty(), "CSV ends with CRLF");
        let mut records = records.into_iter();
        let columns = records.next().expect("header row");
        let rows: Vec<Vec<String>> = records.collect();
        assert!(rows.iter().all(|r| r.len() == columns.len()), "ragged CSV");
        Csv { columns, rows }
    }

    fn column(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }

    fn keys(&self, name: &str) -> BTreeSet<String> {
        let i = self.column(name);
        self.rows.iter().map(|r| r[i].clone()).collect()
    }

    /// The rows without the given columns (server clock and serial ids, which no two
    /// servers share).
    fn without(&self, drop: &[&str]) -> Vec<Vec<String>> {
        let keep: Vec<usize> = (0..self.columns.len())
            .filter(|&i| !drop.contains(&self.columns[i].as_str()))
            .collect();
        self.rows
            .iter()
            .map(|r| keep.iter().map(|&i| r[i].clone()).collect())
            .collect()
    }
}

fn export(app: &TestApp, token: &str, dataset: &str) -> Csv {
    let r = app.get(&format!("/api/v1/exports/{dataset}"), Some(token));
    assert_eq!(r.status, 200, "export {dataset}: {}", r.body);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        r.header("content-disposition"),
        Some(format!("attachment; filename=\"{dataset}.csv\"").as_str())
    );
    Csv::parse(std::str::from_utf8(&r.raw).expect("UTF-8"))
}

/// What a scope may see, computed from the projection tables alone (not from the
/// server's `documents` scope columns): the oracle that exports and pulls must match.
struct Oracle {
    docs: BTreeSet<String>,
    cooperatives: BTreeSet<String>,
    members: BTreeSet<String>,
    sessions: BTreeSet<String>,
    attendance: BTreeSet<String>,
    conflict_docs: BTreeSet<String>,
    flag_docs: BTreeSet<String>,
}

fn oracle(app: &TestApp, provinces: &[&str], coops: &[&str], all: bool) -> Oracle {
    let mut conn = app.db.connect();
    let in_p = |p: &Option<String>| all || p.as_deref().is_some_and(|p| provinces.contains(&p));
    let in_c = |c: &Option<String>| c.as_deref().is_some_and(|c| coops.contains(&c));
    let coop_rows: Vec<(String, Option<String>)> = cooperatives::table
        .select((cooperatives::id, cooperatives::province_code))
        .load(&mut conn)
        .unwrap();
    let coop_province: BTreeMap<String, Option<String>> = coop_rows.iter().cloned().collect();
    let cooperatives: BTreeSet<String> = coop_rows
        .into_iter()
        .filter(|(id, p)| in_p(p) || coops.contains(&id.as_str()))
        .map(|(id, _)| id)
        .collect();
    let members: BTreeSet<String> = members::table
        .select((members::id, members::province_code, members::cooperative_id))
        .load::<(String, Option<String>, Option<String>)>(&mut conn)
        .unwrap()
        .into_iter()
        .filter(|(_, p, c)| {
            in_p(p) || in_c(c) || c.as_ref().is_some_and(|c| in_p(&coop_province[c]))
        })
        .map(|(id, _, _)| id)
        .collect();
    let sessions: BTreeSet<String> = training_sessions::table
        .select((
            training_sessions::id,
            training_sessions::province_code,
            training_sessions::cooperative_id,
        ))
        .load::<(String, Option<String>, Option<String>)>(&mut conn)
        .unwrap()
        .into_iter()
        .filter(|(_, p, c)| in_p(p) || in_c(c))
        .map(|(id, _, _)| id)
        .collect();
    let attendance: BTreeSet<String> = attendance::table
        .select((attendance::session_id, attendance::participant_id))
        .load::<(String, String)>(&mut conn)
        .unwrap()
        .into_iter()
        .filter(|(s, _)| sessions.contains(s))
        .map(|(s, p)| format!("{s}/{p}"))
        .collect();
    let docs: BTreeSet<String> = cooperatives
        .iter()
        .chain(&members)
        .chain(&sessions)
        .cloned()
        .collect();
    let conflict_docs = conflicts::table
        .select(conflicts::document_id)
        .load::<String>(&mut conn)
        .unwrap()
        .into_iter()
        .filter(|d| docs.contains(d))
        .collect();
    let flag_docs = validation_flags::table
        .select(validation_flags::document_id)
        .load::<String>(&mut conn)
        .unwrap()
        .into_iter()
        .filter(|d| docs.contains(d))
        .collect();
    Oracle {
        docs,
        cooperatives,
        members,
        sessions,
        attendance,
        conflict_docs,
        flag_docs,
    }
}

fn attendance_keys(csv: &Csv) -> BTreeSet<String> {
    let (s, p) = (csv.column("session_id"), csv.column("participant_id"));
    csv.rows
        .iter()
        .map(|r| format!("{}/{}", r[s], r[p]))
        .collect()
}

fn assert_export_matches(app: &TestApp, token: &str, expected: &Oracle, who: &str) {
    let got = |d: &str| export(app, token, d);
    assert_eq!(
        got("cooperatives").keys("id"),
        expected.cooperatives,
        "{who}"
    );
    assert_eq!(got("members").keys("id"), expected.members, "{who}");
    assert_eq!(
        got("training_sessions").keys("id"),
        expected.sessions,
        "{who}"
    );
    assert_eq!(
        attendance_keys(&got("attendance")),
        expected.attendance,
        "{who}"
    );
    assert_eq!(
        got("conflicts").keys("document_id"),
        expected.conflict_docs,
        "{who}"
    );
    assert_eq!(
        got("validation_flags").keys("document_id"),
        expected.flag_docs,
        "{who}"
    );
}

fn audit_count(app: &TestApp, action: &str) -> i64 {
    audit_log::table
        .filter(audit_log::action.eq(action))
        .count()
        .get_result(&mut app.db.connect())
        .unwrap()
}

/// Two provinces of work with a conflict and an invalid value in each, synced by two
/// enumerators (and a second tablet in 07 that edits concurrently).
fn training_day(tablets: &mut [Tablet; 3]) -> [String; 2] {
    let [t07, t07b, t12] = tablets;
    let mut coops = Vec::new();
    for (t, province) in [(&mut *t07, "07"), (&mut *t12, "12")] {
        let coop = t.create_cooperative(province, &format!("Rice {province}"));
        let m1 = t.add_member(&coop, "Sok, Dara", "female");
        t.add_member(&coop, "Chan \"Pov\"", "x");
        let session = t.create_session(province, &coop);
        t.record_attendance(&session, "p1", Some(&m1), 6.0);
        t.record_attendance(&session, "p2", None, 3.5);
        t.sync();
        coops.push(coop);
    }
    t07b.sync();
    t07.set(&coops[0], "name_latin", "Rice Kampot");
    t07b.set(&coops[0], "name_latin", "Kampot Rice");
    t07.sync();
    t07b.sync();
    t12.set(&coops[1], "status", "not-a-status");
    t12.sync();
    [coops[0].clone(), coops[1].clone()]
}

fn exports_and_pulls_hold_exactly_the_callers_scope(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("prov07", "provincial_admin", &["07"], &[]);
    app.create_user("enum07", "enumerator", &["07"], &[]);
    app.create_user("enum12", "enumerator", &["12"], &[]);
    let mut tablets = [
        Tablet::new(app, "enum07"),
        Tablet::new(app, "enum07"),
        Tablet::new(app, "enum12"),
    ];
    let [_, coop12] = training_day(&mut tablets);
    // Someone assigned to one cooperative of province 12 and nothing else.
    app.create_user("coop12", "enumerator", &[], &[&coop12]);

    let nat = app.login("nat").access;
    let everything = oracle(app, &[], &[], true);
    assert!(
        everything.conflict_docs.len() == 1 && everything.flag_docs.len() >= 3,
        "the scenario made a conflict and flags: {:?} {:?}",
        everything.conflict_docs,
        everything.flag_docs
    );
    assert_export_matches(app, &nat, &everything, "national admin");
    let in_07 = oracle(app, &["07"], &[], false);
    assert!(in_07.members.len() == 2 && in_07.cooperatives.len() == 1);
    assert_export_matches(
        app,
        &app.login("prov07").access,
        &in_07,
        "provincial admin 07",
    );

    for who in ["enum07", "coop12"] {
        let token = app.login(who).access;
        let r = app.get("/api/v1/exports/members", Some(&token));
        assert_eq!(
            (r.status, r.code()),
            (403, "forbidden"),
            "{who} may not export"
        );
    }
    let r = app.get("/api/v1/exports/users", Some(&nat));
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = app.get("/api/v1/exports/members", None);
    assert_eq!(r.status, 401);

    // Pulls: a fresh tablet of each scope ends with exactly the oracle's documents.
    for (who, provinces, coops) in [
        ("enum07", &["07"][..], &[][..]),
        ("enum12", &["12"][..], &[][..]),
        ("coop12", &[][..], &[coop12.as_str()][..]),
    ] {
        let mut fresh = Tablet::new(app, who);
        fresh.sync();
        let pulled: BTreeSet<String> = fresh.client.docs().map(|(id, _)| id.clone()).collect();
        let expected = oracle(app, provinces, coops, false).docs;
        assert!(!expected.is_empty(), "{who}: the oracle sees something");
        assert_eq!(pulled, expected, "{who}: pulled documents = the oracle's");
    }
}

fn every_event_has_exactly_one_audit_row(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("enum07", "enumerator", &["07"], &[]);
    let nat = app.login("nat").access;
    let exports = audit_count(app, "export");
    for d in DATASETS {
        export(app, &nat, d);
    }
    assert_eq!(audit_count(app, "export") - exports, DATASETS.len() as i64);
    let r = app.get("/api/v1/exports/members", Some(&app.login("enum07").access));
    assert_eq!(r.status, 403);
    assert_eq!(audit_count(app, "export") - exports, DATASETS.len() as i64);

    // Every admin action and session event: exactly one row each.
    let target = app.login("enum07");
    let id = target.user_id.clone();
    let actions: [(&str, &str, String, serde_json::Value); 6] = [
        (
            "user.update",
            "PATCH",
            format!("/api/v1/users/{id}"),
            serde_json::json!({"full_name": "Srey Mom"}),
        ),
        (
            "user.assignments",
            "PUT",
            format!("/api/v1/users/{id}/assignments"),
            serde_json::json!({"provinces": ["07"], "cooperatives": []}),
        ),
        (
            "user.reset_password",
            "POST",
            format!("/api/v1/users/{id}/password"),
            serde_json::json!({"password": coopsync_tests::PASSWORD}),
        ),
        (
            "device.revoke",
            "POST",
            format!("/api/v1/devices/{}/revoke", target.device_id),
            serde_json::json!({}),
        ),
        (
            "auth.refresh",
            "POST",
            "/api/v1/auth/refresh".into(),
            serde_json::json!({"refresh_token": app.login("nat").refresh}),
        ),
        (
            "auth.logout",
            "POST",
            "/api/v1/auth/logout".into(),
            serde_json::json!({}),
        ),
    ];
    for (action, method, path, body) in actions {
        let before = audit_count(app, action);
        let token = if action == "auth.refresh" {
            None
        } else {
            Some(nat.as_str())
        };
        let r = app.send(method, &path, token, &body);
        assert!(r.status < 300, "{action}: {} {}", r.status, r.body);
        assert_eq!(audit_count(app, action) - before, 1, "{action}");
    }

    // Each request of a sync (push, pull, or both) is one `sync` row; a replay of a
    // batch is a request too; a request that quarantined changes adds one row.
    let mut t = Tablet::new(app, "enum07");
    t.transport.recorded = Some(Vec::new());
    let coop = t.create_cooperative("07", "Audit coop");
    t.add_member(&coop, "Srey", "female");
    let before = audit_count(app, "sync");
    let report = t.sync();
    let requests = audit_count(app, "sync") - before;
    assert!(requests >= 1);
    assert_eq!(requests, i64::from(report.requests), "one row per request");
    let push = t.transport.recorded.take().unwrap().remove(0);
    let before = audit_count(app, "sync");
    let (status, _) = t.transport.post(&push);
    assert_eq!(status, 200);
    assert_eq!(audit_count(app, "sync") - before, 1, "a replay is one row");

    let outside = t.create_cooperative("12", "Not mine");
    let (q, s) = (
        audit_count(app, "sync.quarantine"),
        audit_count(app, "sync"),
    );
    t.sync();
    assert!(t.client.rejected().iter().any(|r| r.doc_id == outside));
    let quarantined = t.client.rejected().len() as i64;
    // One `sync.quarantine` row per request that refused anything, counting them all.
    let rows: Vec<String> = audit_log::table
        .filter(audit_log::action.eq("sync.quarantine"))
        .order(audit_log::id)
        .select(audit_log::details)
        .load(&mut app.db.connect())
        .unwrap();
    let new_rows = &rows[q as usize..];
    assert!(!new_rows.is_empty() && new_rows.len() as i64 <= quarantined);
    let refused: i64 = new_rows
        .iter()
        .map(|d| {
            serde_json::from_str::<serde_json::Value>(d).unwrap()["refused"]
                .as_i64()
                .unwrap()
        })
        .sum();
    assert_eq!(refused, quarantined);
    assert!(audit_count(app, "sync") - s >= 1);
}

dual_backend_tests!(
    exports_and_pulls_hold_exactly_the_callers_scope,
    every_event_has_exactly_one_audit_row,
);

fn set_up_users(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("enum07", "enumerator", &["07"], &[]);
    app.create_user("enum12", "enumerator", &["12"], &[]);
}

/// Conflict candidates name the device, user and arrival time on the server that
/// received them; those differ between two servers, the values and hashes must not.
fn server_neutral(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|row| {
            row.into_iter()
                .map(
                    |cell| match serde_json::from_str::<serde_json::Value>(&cell) {
                        Ok(serde_json::Value::Array(mut items)) => {
                            for item in &mut items {
                                if let Some(o) = item.as_object_mut() {
                                    for k in ["device_id", "user_id", "received_at"] {
                                        o.remove(k);
                                    }
                                }
                            }
                            serde_json::Value::Array(items).to_string()
                        }
                        _ => cell,
                    },
                )
                .collect()
        })
        .collect()
}

#[test]
fn one_recorded_stream_gives_identical_exports_on_sqlite_and_postgresql() {
    let Some(pg) = TestApp::spawn(Backend::Postgres) else {
        notice("backend equivalence skipped: PostgreSQL unavailable");
        return;
    };
    let recorder = TestApp::spawn(Backend::Sqlite).expect("SQLite");
    set_up_users(&recorder);
    let mut tablets = [
        Tablet::new(&recorder, "enum07"),
        Tablet::new(&recorder, "enum07"),
        Tablet::new(&recorder, "enum12"),
    ];
    for t in &mut tablets {
        t.transport.recorded = Some(Vec::new());
    }
    training_day(&mut tablets);
    // Requests are replayed per tablet in the order each sent them; tablets' streams are
    // independent except through pulls, which the replay does not need.
    let stream: Vec<(usize, SyncRequest)> = tablets
        .iter_mut()
        .enumerate()
        .flat_map(|(i, t)| {
            let recorded = t.transport.recorded.take().unwrap();
            recorded.into_iter().map(move |r| (i, r))
        })
        .collect();
    assert!(stream.len() >= 5, "recorded {} pushes", stream.len());

    let sqlite = TestApp::spawn(Backend::Sqlite).expect("SQLite");
    let mut exports = Vec::new();
    for app in [&sqlite, &pg] {
        set_up_users(app);
        let mut devices: Vec<coopsync_tests::tablet::HttpTransport> =
            ["enum07", "enum07", "enum12"]
                .iter()
                .map(|u| coopsync_tests::tablet::HttpTransport::new(app, &app.login(u).access))
                .collect();
        for (i, request) in &stream {
            let (status, body) = devices[*i].post(request);
            assert_eq!(status, 200, "{body}");
            assert!(
                body["push"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|d| d["errors"].as_array().is_none_or(|e| e.is_empty())),
                "replay accepted without errors: {body}"
            );
        }
        let nat = app.login("nat").access;
        let tables: Vec<(&str, Csv)> = DATASETS
            .iter()
            .map(|d| (*d, export(app, &nat, d)))
            .collect();
        exports.push(tables);
    }
    let clock_and_serials = ["updated_at", "detected_at", "id"];
    for ((dataset, a), (_, b)) in exports[0].iter().zip(&exports[1]) {
        assert!(!a.rows.is_empty(), "{dataset} has rows to compare");
        assert_eq!(a.columns, b.columns, "{dataset} columns");
        let drop: &[&str] = if matches!(*dataset, "conflicts" | "validation_flags") {
            &clock_and_serials
        } else {
            &clock_and_serials[..2]
        };
        assert_eq!(
            server_neutral(a.without(drop)),
            server_neutral(b.without(drop)),
            "{dataset}: SQLite and PostgreSQL exports differ"
        );
    }
}
