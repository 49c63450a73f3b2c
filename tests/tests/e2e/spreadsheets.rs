//! Exports as spreadsheets: read back with `calamine` (XLSX) and the `csv` crate, a
//! tablet-entered formula never runs (neutralised in CSV, a string cell in XLSX), Khmer
//! text survives, cells are typed, filters select what they say; and memory stays flat
//! while a real server process streams 100,000 attendance rows.

use std::{io::Cursor, path::Path, time::Duration};

use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
use coopsync::db::schema::{attendance, documents, training_sessions};
use coopsync_tests::{
    Backend, PASSWORD, TempDir, TestApp, TestDb, dual_backend_tests, notice, tablet::Tablet,
};
use diesel::prelude::*;
use sync_protocol::documents::{DocType, Member};

use crate::reports::{read_csv, read_xlsx};

const RISKY: [&str; 6] = [
    "=HYPERLINK(\"http://evil.example\",\"click\")",
    "@SUM(A1:A9)",
    "+cmd|' /C calc'!A0",
    "-2+3",
    "\t=1+1",
    "\r=1+1",
];
const KHMER: &str = "សុខ ចាន់ថា";

fn column(rows: &[Vec<String>], name: &str) -> usize {
    rows[0]
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

fn get(app: &TestApp, token: &str, path: &str) -> Vec<u8> {
    let r = app.get(path, Some(token));
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.raw
}

fn formulas_never_run_and_khmer_survives(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("enum07", "enumerator", &["07"], &[]);
    let mut t = Tablet::new(app, "enum07");
    let coop = t.create_cooperative("07", "Coop");
    let mut ids = Vec::new();
    for (i, risky) in RISKY.iter().enumerate() {
        let m = Member {
            cooperative_id: Some(coop.clone()),
            full_name_khmer: Some(format!("{KHMER} {i}")),
            name_latin: Some(risky.to_string()),
            sex: Some("female".into()),
            year_of_birth: Some(1990),
            village: Some(risky.to_string()),
            role: Some("member".into()),
            joined_date: Some("2025-02-28".into()),
            ..Member::default()
        };
        ids.push(
            t.client
                .create(DocType::Member, |tx| m.write(tx, true))
                .unwrap(),
        );
    }
    t.sync();
    let nat = app.login("nat").access;

    let csv = read_csv(&get(app, &nat, "/api/v1/exports/members"));
    let (latin, khmer) = (column(&csv, "name_latin"), column(&csv, "full_name_khmer"));
    let mut seen: Vec<&str> = csv[1..].iter().map(|r| r[latin].as_str()).collect();
    seen.sort();
    // Names are stored trimmed (the projection drops leading white space), so the tab
    // and carriage-return cases arrive as `=1+1`.
    let mut expected: Vec<String> = RISKY.iter().map(|r| format!("'{}", r.trim())).collect();
    expected.sort();
    assert_eq!(
        seen, expected,
        "every risky cell starts with a quote in CSV"
    );
    assert!(
        csv[1..].iter().all(|r| r[khmer].starts_with(KHMER)),
        "Khmer intact in CSV"
    );
    let village = column(&csv, "village");
    assert!(
        csv[1..].iter().all(|r| r[village].starts_with('\'')),
        "{csv:?}"
    );

    let raw = get(app, &nat, "/api/v1/exports/members?format=xlsx");
    let mut book: Xlsx<_> = open_workbook_from_rs(Cursor::new(raw.clone())).unwrap();
    let formulas = book.worksheet_formula("members").unwrap();
    assert!(
        formulas.used_cells().all(|(_, _, f)| f.is_empty()),
        "no formula cells in the XLSX"
    );
    let (sheet, rows) = read_xlsx(&raw);
    assert_eq!(sheet, "members");
    let header: Vec<String> = rows[0].iter().map(|c| c.to_string()).collect();
    let at = |name: &str| header.iter().position(|c| c == name).unwrap();
    let mut texts: Vec<String> = rows[1..]
        .iter()
        .map(|r| match &r[at("name_latin")] {
            Data::String(s) => s.clone(),
            other => panic!("name_latin is a string cell, not {other:?}"),
        })
        .collect();
    texts.sort();
    let mut raw_risky: Vec<String> = RISKY.iter().map(|r| r.trim().to_string()).collect();
    raw_risky.sort();
    assert_eq!(texts, raw_risky, "XLSX keeps the text as entered, as text");
    for r in &rows[1..] {
        assert!(matches!(&r[at("full_name_khmer")], Data::String(s) if s.starts_with(KHMER)));
        assert!(
            matches!(r[at("year_of_birth")], Data::Float(y) if y == 1990.0),
            "a number"
        );
        match &r[at("joined_date")] {
            Data::DateTime(d) => {
                assert!(d.is_datetime());
                assert_eq!(d.as_f64(), 45716.0, "2025-02-28 as an Excel day");
            }
            other => panic!("joined_date is a date cell, not {other:?}"),
        }
        assert!(matches!(r[at("updated_at")], Data::DateTime(_)));
    }
    assert_eq!(rows.len(), RISKY.len() + 1);
}

fn filters_select_what_they_say(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("prov07", "provincial_admin", &["07"], &[]);
    for p in ["07", "12"] {
        app.create_user(&format!("enum{p}"), "enumerator", &[p], &[]);
    }
    let mut sessions = Vec::new();
    for p in ["07", "12"] {
        let mut t = Tablet::new(app, &format!("enum{p}"));
        let coop = t.create_cooperative(p, "Coop");
        let m = t.add_member(&coop, "Srey", "female");
        for (programme, date) in [("think_coop", "2026-03-01"), ("start_coop", "2026-05-01")] {
            let s = t.create_session(p, &coop);
            t.set(&s, "programme", programme);
            t.set(&s, "scheduled_date", date);
            t.record_attendance(&s, &m, Some(&m), 6.0);
            sessions.push((p, programme, date, s));
        }
        t.sync();
    }
    let nat = app.login("nat").access;
    let ids = |path: &str, col: &str| -> Vec<String> {
        let rows = read_csv(&get(app, &nat, path));
        let i = column(&rows, col);
        let mut v: Vec<String> = rows[1..].iter().map(|r| r[i].clone()).collect();
        v.sort();
        v
    };
    let expect = |pred: &dyn Fn(&str, &str, &str) -> bool| -> Vec<String> {
        let mut v: Vec<String> = sessions
            .iter()
            .filter(|(p, g, d, _)| pred(p, g, d))
            .map(|(_, _, _, s)| s.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ids(
            "/api/v1/exports/training_sessions?programme=start_coop",
            "id"
        ),
        expect(&|_, g, _| g == "start_coop")
    );
    assert_eq!(
        ids(
            "/api/v1/exports/attendance?province=12&from=2026-04-01&to=2026-06-30",
            "session_id"
        ),
        expect(&|p, _, d| p == "12" && d >= "2026-04-01")
    );
    assert_eq!(
        ids("/api/v1/exports/training_sessions?to=2026-03-31", "id"),
        expect(&|_, _, d| d <= "2026-03-31")
    );
    // A provincial admin asking for another province gets nothing of it.
    let p07 = app.login("prov07").access;
    let rows = read_csv(&get(app, &p07, "/api/v1/exports/members?province=12"));
    assert_eq!(rows.len(), 1, "only the header");
    let r = app.get("/api/v1/exports/members?from=yesterday", Some(&nat));
    assert_eq!((r.status, r.code()), (400, "invalid_query"));
    let r = app.get("/api/v1/exports/members?format=ods", Some(&nat));
    assert_eq!((r.status, r.code()), (400, "invalid_query"));

    // The audit log: national admins only, and it lists the exports just made with
    // their filters.
    let r = app.get("/api/v1/exports/audit", Some(&p07));
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let audit = read_csv(&get(app, &nat, "/api/v1/exports/audit?format=csv"));
    let (action, details) = (column(&audit, "action"), column(&audit, "details"));
    let exports: Vec<&Vec<String>> = audit[1..]
        .iter()
        .filter(|r| r[action] == "export")
        .collect();
    assert!(exports.len() >= 4, "{exports:?}");
    assert!(
        exports
            .iter()
            .any(|r| r[details].contains("\"programme\":\"start_coop\""))
    );
}

dual_backend_tests!(
    formulas_never_run_and_khmer_survives,
    filters_select_what_they_say
);

const SESSIONS: usize = 3_000;
const PER_SESSION: usize = 34;

/// 3,000 sessions × 34 entries = 102,000 attendance rows, straight into the projection
/// (an export reads only the projection).
fn fill(db: &TestDb) {
    let coopsync::db::DbConnection::Sqlite(mut conn) = db.connect() else {
        panic!("an SQLite database");
    };
    let now = chrono::Utc::now().naive_utc();
    conn.transaction::<_, diesel::result::Error, _>(|conn| {
        for s in 0..SESSIONS {
            let id = uuid::Uuid::new_v4().to_string();
            diesel::insert_into(documents::table)
                .values((
                    documents::id.eq(&id),
                    documents::doc_type.eq("training_session"),
                    documents::province_code.eq("07"),
                    documents::snapshot.eq(Vec::<u8>::new()),
                    documents::heads.eq(""),
                    documents::change_count.eq(0i64),
                    documents::last_seq.eq(0i64),
                    documents::created_at.eq(now),
                    documents::updated_at.eq(now),
                ))
                .execute(conn)?;
            diesel::insert_into(training_sessions::table)
                .values((
                    training_sessions::id.eq(&id),
                    training_sessions::programme.eq("think_coop"),
                    training_sessions::province_code.eq("07"),
                    training_sessions::facilitators.eq("[]"),
                    training_sessions::scheduled_date.eq("2026-03-01"),
                    training_sessions::status.eq("held"),
                    training_sessions::updated_at.eq(now),
                ))
                .execute(conn)?;
            let rows: Vec<_> = (0..PER_SESSION)
                .map(|i| {
                    (
                        attendance::session_id.eq(id.clone()),
                        attendance::participant_id.eq(uuid::Uuid::new_v4().to_string()),
                        attendance::name.eq(Some(format!("{KHMER} {s}-{i}"))),
                        attendance::sex.eq(Some("female")),
                        attendance::age.eq(Some(30i64 + i as i64)),
                        attendance::phone.eq(Some("012 345 678")),
                        attendance::status.eq(Some("present")),
                        attendance::hours.eq(Some(6.0)),
                        attendance::recorded_at.eq(Some(now)),
                    )
                })
                .collect();
            diesel::insert_into(attendance::table)
                .values(rows)
                .execute(conn)?;
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn exporting_100000_attendance_rows_keeps_memory_flat() {
    let Some(db) = TestDb::create(Backend::Sqlite) else {
        return;
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_coopsync-cli"));
    let dir = TempDir::new();
    coopsync_tests::process::user_add(
        bin,
        &dir.path,
        &db.url,
        "big.admin",
        PASSWORD,
        &["--role", "national_admin"],
    )
    .unwrap();
    let (mut child, addr) =
        coopsync_tests::process::serve(bin, &dir.path, &db.url, "127.0.0.1:0").unwrap();
    fill(&db);
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build(),
    );
    let login: serde_json::Value = agent
        .post(format!("{addr}/api/v1/auth/login"))
        .send_json(
            serde_json::json!({"username": "big.admin", "password": PASSWORD,
            "device_id": uuid::Uuid::new_v4().to_string(), "device_name": "office"}),
        )
        .unwrap()
        .into_body()
        .read_json()
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_string();
    let download = |format: &str| -> (Vec<u8>, f64) {
        let started = std::time::Instant::now();
        let body = agent
            .get(format!("{addr}/api/v1/exports/attendance?format={format}"))
            .header("authorization", format!("Bearer {token}"))
            .call()
            .unwrap()
            .into_body()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap();
        (body, started.elapsed().as_secs_f64())
    };
    let idle = coopsync_tests::process::vm_hwm_mb(child.id());
    let (csv, csv_s) = download("csv");
    let after_csv = coopsync_tests::process::vm_hwm_mb(child.id());
    let (xlsx, xlsx_s) = download("xlsx");
    let after_xlsx = coopsync_tests::process::vm_hwm_mb(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let rows = SESSIONS * PER_SESSION;
    assert_eq!(read_csv(&csv).len(), rows + 1, "every row in the CSV");
    let (_, sheet) = read_xlsx(&xlsx);
    assert_eq!(sheet.len(), rows + 1, "every row in the XLSX");
    notice(&format!(
        "export of {rows} attendance rows: CSV {:.1} MB in {csv_s:.1} s, XLSX {:.1} MB in {xlsx_s:.1} s; \
         peak RSS idle {idle:.0} MB, after CSV {after_csv:.0} MB, after XLSX {after_xlsx:.0} MB",
        csv.len() as f64 / 1e6,
        xlsx.len() as f64 / 1e6,
    ));
    assert!(
        after_xlsx - idle <= 50.0,
        "streamed exports stay within 50 MB of idle: {idle:.0} → {after_csv:.0} → {after_xlsx:.0} MB"
    );
}
