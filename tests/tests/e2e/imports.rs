//! Bulk import of the registry: a members file with 3 bad rows among 100 → the dry run
//! names exactly those 3 lines; apply → 97 records that a tablet of the province pulls;
//! the same file again → nothing new; the same rows as XLSX → the same records. Through
//! the API (upload, poll, apply) and the command line.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use coopsync::tabular::{self, Format, Kind, Value as Cell, col};
use coopsync_tests::{TestApp, dual_backend_tests, tablet::Tablet};
use serde_json::Value;
use sync_protocol::documents::{DocType, Member};

use crate::reports::{read_csv, read_xlsx, xlsx_text};

const COOPS: &str = "\u{feff}registration_number,name_khmer,name_latin,province_code,status,village\r\n\
KPT-001,សហគមន៍ អូរក្រាំង,Ou Krang,07,active,Prey Khmeng\r\n\
PNP-001,សហគមន៍ ព្រែកលៀប,Prek Leap,12,active,\r\n\
KPT-002,សហគមន៍ ទឹកឈូ,Tuek Chhu,07,registered,\r\n";

const BAD: [usize; 3] = [10, 50, 90];

/// 100 member rows; rows 10, 50 and 90 are bad (a sex that is not one, a year that is not
/// a number, a cooperative that is not registered); row 21 is row 20's woman typed again
/// with a zero-width space in her name and another phone (a possible duplicate by the
/// duplicate rules, still created: its natural key differs).
fn member_rows() -> Vec<[String; 7]> {
    (0..100)
        .map(|i| {
            let coop = match i {
                90 => "NOPE-9",
                21 => "PNP-001",
                _ if i % 3 == 2 => "PNP-001",
                _ => "KPT-001",
            };
            let name = if i == 21 {
                "សុខ ចាន់ថា 20".to_string()
            } else {
                format!("សុខ ចាន់ថា {i}")
            };
            let sex = match i {
                10 => "F?",
                _ if i % 2 == 0 || i == 21 => "female",
                _ => "male",
            };
            let year = if i == 50 {
                "19x6".to_string()
            } else {
                (1970 + i % 30).to_string()
            };
            [
                coop.to_string(),
                name,
                format!("Sok Chanthea {i}"),
                sex.to_string(),
                year,
                format!("012 {i:06}"),
                "member".to_string(),
            ]
        })
        .collect()
}

const MEMBER_COLUMNS: [&str; 7] = [
    "លេខចុះបញ្ជីសហគមន៍ (cooperative_registration_number)",
    "full_name_khmer",
    "name_latin",
    "ភេទ",
    "year_of_birth",
    "phone",
    "role",
];

fn members_csv() -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(MEMBER_COLUMNS).unwrap();
    for r in member_rows() {
        w.write_record(&r).unwrap();
    }
    w.into_inner().unwrap()
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The same rows as XLSX, years as number cells (as a spreadsheet holds them).
fn members_xlsx() -> Vec<u8> {
    let out = Shared::default();
    let columns: Vec<_> = MEMBER_COLUMNS
        .iter()
        .map(|c| {
            let kind = if *c == "year_of_birth" {
                Kind::Integer
            } else {
                Kind::Text
            };
            col(c, kind)
        })
        .collect();
    let mut sink = tabular::sink(Format::Xlsx, out.clone(), "members", &columns).unwrap();
    for r in member_rows() {
        let cells: Vec<Cell> = r
            .iter()
            .enumerate()
            .map(|(i, v)| match (i, v.parse::<i64>()) {
                (4, Ok(y)) => Cell::Int(y),
                _ => Cell::Text(v.clone()),
            })
            .collect();
        sink.row(&cells).unwrap();
    }
    sink.finish().unwrap();
    out.0.lock().unwrap().clone()
}

fn upload(app: &TestApp, token: &str, kind: &str, file: &[u8]) -> Value {
    let r = app.post_bytes(
        &format!("/api/v1/imports/{kind}?file_name=registry"),
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "application/octet-stream"),
        ],
        file,
    );
    assert_eq!(r.status, 202, "upload {kind}: {}", r.body);
    wait(app, token, r.body["id"].as_str().unwrap())
}

/// Polls a job until it is no longer checking or applying.
fn wait(app: &TestApp, token: &str, id: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let job = app.get(&format!("/api/v1/imports/{id}"), Some(token)).body;
        let status = job["status"].as_str().unwrap_or("").to_string();
        if status != "checking" && status != "applying" {
            return job;
        }
        assert!(Instant::now() < until, "import {id} still {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn apply(app: &TestApp, token: &str, id: &str) -> Value {
    let r = app.post(
        &format!("/api/v1/imports/{id}/apply"),
        Some(token),
        &Value::Null,
    );
    assert_eq!(r.status, 202, "apply: {}", r.body);
    let job = wait(app, token, id);
    assert_eq!(job["status"], "applied", "{job}");
    job
}

fn lines_with_errors(job: &Value) -> Vec<u64> {
    let mut lines: Vec<u64> = job["report"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    lines.dedup();
    lines
}

fn the_registry_imports_once_and_reaches_the_tablets(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("prov07", "provincial_admin", &["07"], &[]);
    app.create_user("enum07", "enumerator", &["07"], &[]);
    let nat = app.login("nat").access;

    // The template: Khmer labels with their keys, an example row.
    let t = app.get("/api/v1/imports/templates/members", Some(&nat));
    assert_eq!(t.status, 200);
    let (_, rows) = read_xlsx(&t.raw);
    let header: Vec<String> = rows[0].iter().map(xlsx_text).collect();
    assert!(
        header.contains(&"ឈ្មោះពេញ (ខ្មែរ) (full_name_khmer)".to_string()),
        "{header:?}"
    );
    assert_eq!(rows.len(), 2, "header and one example row");
    let t = read_csv(
        &app.get(
            "/api/v1/imports/templates/cooperatives?format=csv",
            Some(&nat),
        )
        .raw,
    );
    assert_eq!(t.len(), 2);

    // Provincial admins do not import.
    let p07 = app.login("prov07").access;
    let r = app.post_bytes(
        "/api/v1/imports/cooperatives",
        &[("authorization", &format!("Bearer {p07}"))],
        COOPS.as_bytes(),
    );
    assert_eq!((r.status, r.code()), (403, "forbidden"));

    let coops = upload(app, &nat, "cooperatives", COOPS.as_bytes());
    assert_eq!(coops["status"], "checked", "{coops}");
    assert_eq!(coops["report"]["to_create"], 3, "{coops}");
    let coops = apply(app, &nat, coops["id"].as_str().unwrap());
    assert_eq!(coops["report"]["created"], 3, "{coops}");

    // Members: the dry run names exactly the 3 bad lines (header = line 1).
    let file = members_csv();
    let job = upload(app, &nat, "members", &file);
    assert_eq!(job["status"], "checked", "{job}");
    let expected_lines: Vec<u64> = BAD.iter().map(|i| *i as u64 + 2).collect();
    assert_eq!(lines_with_errors(&job), expected_lines, "{}", job["report"]);
    let codes: Vec<&str> = job["report"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"unknown_cooperative") && codes.contains(&"invalid_number"),
        "{codes:?}"
    );
    let report = &job["report"];
    assert_eq!(
        (
            &report["rows"],
            &report["valid"],
            &report["failed"],
            &report["to_create"]
        ),
        (&100.into(), &97.into(), &3.into(), &97.into())
    );
    let dups = report["possible_duplicates"].as_array().unwrap();
    assert_eq!(
        dups.len(),
        1,
        "{} possible duplicates, first {:?}",
        dups.len(),
        dups.first()
    );
    assert_eq!(
        (&dups[0]["line"], &dups[0]["like"]),
        (&23.into(), &"line:22".into())
    );
    // Nothing exists before applying.
    let r = app.get("/api/v1/records?type=member&limit=500", Some(&nat));
    assert_eq!(r.body["records"].as_array().unwrap().len(), 0);

    // Two admins press apply at the same moment: one starts it, the other is told.
    let id = job["id"].as_str().unwrap().to_string();
    let mut answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let press = || {
            let r = app.post(
                &format!("/api/v1/imports/{id}/apply"),
                Some(&nat),
                &Value::Null,
            );
            (r.status, r.code().to_string())
        };
        let (a, b) = (s.spawn(press), s.spawn(press));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    answers.sort();
    assert_eq!(
        answers,
        [(202, String::new()), (409, "import_not_ready".to_string())]
    );
    let done = wait(app, &nat, &id);
    assert_eq!(done["status"], "applied", "{done}");
    assert_eq!(done["report"]["created"], 97, "{done}");
    assert_eq!(
        (&done["processed"], &done["total"]),
        (&97.into(), &97.into())
    );

    // A tablet of Kampot pulls Kampot's imported members, and only those.
    let mut tablet = Tablet::new(app, "enum07");
    tablet.sync();
    let kampot: Vec<Member> = tablet
        .client
        .docs()
        .filter(|(_, (t, _))| *t == DocType::Member)
        .map(|(id, (_, d))| {
            // Each imported document carries its own id at the root, as a tablet's does.
            use automerge::ReadDoc;
            let own = d
                .get(automerge::ROOT, "id")
                .unwrap()
                .map(|(v, _)| v.to_string());
            assert_eq!(own.as_deref(), Some(format!("\"{id}\"").as_str()));
            Member::read(d).0
        })
        .collect();
    let expected = member_rows()
        .iter()
        .enumerate()
        .filter(|(i, r)| r[0] == "KPT-001" && !BAD.contains(i))
        .count();
    assert_eq!(kampot.len(), expected);
    assert!(kampot.iter().all(|m| {
        m.full_name_khmer
            .as_deref()
            .unwrap_or("")
            .starts_with("សុខ ចាន់ថា")
    }));
    let coops_pulled = tablet
        .client
        .docs()
        .filter(|(_, (t, _))| *t == DocType::Cooperative)
        .count();
    assert_eq!(coops_pulled, 2, "Kampot's two cooperatives");

    // The same file again, and the same rows as XLSX: nothing new.
    for (what, file) in [("CSV again", members_csv()), ("XLSX", members_xlsx())] {
        let again = upload(app, &nat, "members", &file);
        assert_eq!(
            lines_with_errors(&again),
            expected_lines,
            "{what}: {}",
            again["report"]
        );
        assert_eq!(
            (&again["report"]["to_create"], &again["report"]["existing"]),
            (&0.into(), &97.into()),
            "{what}: {}",
            again["report"]
        );
        let again = apply(app, &nat, again["id"].as_str().unwrap());
        assert_eq!(again["report"]["created"], 0, "{what}");
    }
    let list = app.get("/api/v1/imports", Some(&nat));
    assert_eq!(list.body.as_array().unwrap().len(), 4);

    // A file that is not a registry: a clear report, and it cannot be applied.
    let junk = upload(app, &nat, "members", b"\xff\xfe\x00garbage");
    assert_eq!(junk["status"], "failed");
    assert_eq!(junk["report"]["errors"][0]["code"], "unreadable_file");
    let r = app.post(
        &format!("/api/v1/imports/{}/apply", junk["id"].as_str().unwrap()),
        Some(&nat),
        &Value::Null,
    );
    assert_eq!((r.status, r.code()), (409, "import_not_ready"));
    let stray = format!(
        "cooperative_id,full_name_khmer,sex,role\r\n{},សុខ,female,member\r\n",
        uuid::Uuid::new_v4()
    );
    let stray = upload(app, &nat, "members", stray.as_bytes());
    assert_eq!(
        stray["report"]["errors"][0]["code"], "unknown_cooperative",
        "{stray}"
    );
    assert_eq!(stray["report"]["to_create"], 0);
    let no_header = upload(app, &nat, "members", b"name,sex\r\nx,female\r\n");
    assert_eq!(no_header["report"]["errors"][0]["code"], "missing_column");

    // The command line: a dry run of the same file names the same lines, creates nothing.
    let dir = coopsync_tests::TempDir::new();
    let path = dir.path.join("members.csv");
    std::fs::write(&path, members_csv()).unwrap();
    let out = std::process::Command::new(Path::new(env!("CARGO_BIN_EXE_coopsync-cli")))
        .args(["import", "members"])
        .arg(&path)
        .args(["--dry-run", "--as", "nat"])
        .env("COOPSYNC_DATABASE_URL", &app.db.url)
        .env("COOPSYNC_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for line in &expected_lines {
        assert!(stderr.contains(&format!("line {line}, ")), "{stderr}");
    }
    assert!(stderr.contains("0 new, 97 already imported"), "{stderr}");
}

dual_backend_tests!(the_registry_imports_once_and_reaches_the_tablets);
