//! Programme figures from a hand-countable set made by real tablets: 3 provinces, 3
//! programmes, 17 women and 12 men trained (one of them a walk-in with no member record,
//! one member who only attended a cancelled session and must not count). The same
//! numbers in JSON, CSV and XLSX, on both backends; a provincial admin's figures cover
//! only their province.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
use coopsync_tests::{TestApp, dual_backend_tests, tablet::Tablet};
use serde_json::Value;

/// One province's tablet work: a cooperative (and one more with no sessions in 07),
/// members, sessions with attendance.
struct Seeded;

fn member_sessions(t: &mut Tablet, province: &str, women: usize, men: usize) -> Vec<String> {
    let coop = t.create_cooperative(province, &format!("Coop {province}"));
    let mut members = Vec::new();
    for i in 0..women {
        members.push(t.add_member(&coop, &format!("Srey {province}-{i}"), "female"));
    }
    for i in 0..men {
        members.push(t.add_member(&coop, &format!("Bros {province}-{i}"), "male"));
    }
    members.insert(0, coop);
    members
}

fn session(
    t: &mut Tablet,
    province: &str,
    coop: &str,
    programme: &str,
    date: &str,
    status: &str,
) -> String {
    let s = t.create_session(province, coop);
    t.set(&s, "programme", programme);
    t.set(&s, "scheduled_date", date);
    t.set(&s, "status", status);
    s
}

impl Seeded {
    fn make(app: &TestApp) {
        for p in ["07", "12", "03"] {
            app.create_user(&format!("enum{p}"), "enumerator", &[p], &[]);
        }
        app.create_user("nat", "national_admin", &[], &[]);
        app.create_user("prov07", "provincial_admin", &["07"], &[]);

        // Kampot (07): 5 women and 3 men in Think.Coop; 3 of the women and a walk-in
        // woman (partial, 3 h) in Start.Coop; a woman who only attended a cancelled
        // session; a second cooperative never reached.
        let mut t = Tablet::new(app, "enum07");
        let ids = member_sessions(&mut t, "07", 6, 3);
        let (coop, women, men) = (&ids[0], &ids[1..7], &ids[7..]);
        t.create_cooperative("07", "Coop 07 unreached");
        let s1 = session(&mut t, "07", coop, "think_coop", "2026-03-10", "held");
        for m in women[..5].iter().chain(men) {
            t.record_attendance(&s1, m, Some(m), 6.0);
        }
        let s2 = session(&mut t, "07", coop, "start_coop", "2026-04-15", "held");
        for m in &women[..3] {
            t.record_attendance(&s2, m, Some(m), 6.0);
        }
        let walk_in = uuid::Uuid::new_v4().to_string();
        t.record_attendance(&s2, &walk_in, None, 3.0);
        let s3 = session(&mut t, "07", coop, "think_coop", "2026-04-20", "scheduled");
        t.record_attendance(&s3, &women[5], Some(&women[5]), 6.0);
        t.set(&s3, "status", "cancelled");
        t.sync();

        // Phnom Penh (12): 6 women and 5 men in one held session; a planned follow-up.
        let mut t = Tablet::new(app, "enum12");
        let ids = member_sessions(&mut t, "12", 6, 5);
        let s4 = session(&mut t, "12", &ids[0], "think_coop", "2026-05-01", "held");
        for m in &ids[1..] {
            t.record_attendance(&s4, m, Some(m), 6.0);
        }
        session(
            &mut t,
            "12",
            &ids[0],
            "follow_up",
            "2026-12-01",
            "scheduled",
        );
        t.sync();

        // Kampong Cham (03): 5 women and 4 men in a follow-up.
        let mut t = Tablet::new(app, "enum03");
        let ids = member_sessions(&mut t, "03", 5, 4);
        let s6 = session(&mut t, "03", &ids[0], "follow_up", "2026-06-02", "held");
        for m in &ids[1..] {
            t.record_attendance(&s6, m, Some(m), 6.0);
        }
        t.sync();
    }
}

fn report(app: &TestApp, token: &str, name: &str, query: &str) -> Value {
    let r = app.get(&format!("/api/v1/reports/{name}?{query}"), Some(token));
    assert_eq!(r.status, 200, "{name}?{query}: {}", r.body);
    r.body
}

/// The row whose listed columns have the listed values.
fn row<'a>(figures: &'a Value, keys: &[(&str, &str)]) -> &'a Value {
    figures["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| keys.iter().all(|(k, v)| r[*k] == *v))
        .unwrap_or_else(|| panic!("no row {keys:?} in {figures}"))
}

fn counts(r: &Value) -> (i64, i64, i64) {
    (
        r["women"].as_i64().unwrap(),
        r["men"].as_i64().unwrap(),
        r["people"].as_i64().unwrap(),
    )
}

/// The JSON rows as text cells, as the CSV writes them.
fn as_cells(figures: &Value) -> Vec<Vec<String>> {
    let columns: Vec<&str> = figures["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let mut out = vec![columns.iter().map(|c| c.to_string()).collect()];
    for r in figures["rows"].as_array().unwrap() {
        out.push(
            columns
                .iter()
                .map(|c| match &r[*c] {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                        (Some(i), _) => i.to_string(),
                        (None, Some(f)) => number_text(f),
                        _ => n.to_string(),
                    },
                    other => other.to_string(),
                })
                .collect(),
        );
    }
    out
}

/// A number as the CSV writes it (Rust's shortest form: `69`, `0.5862`).
fn number_text(f: f64) -> String {
    f.to_string()
}

pub fn read_csv(raw: &[u8]) -> Vec<Vec<String>> {
    let text = std::str::from_utf8(raw).expect("UTF-8");
    let text = text.strip_prefix('\u{feff}').expect("byte order mark");
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// The first sheet's cells as text (numbers as JSON would print them), with the cell
/// types seen in each column.
pub fn read_xlsx(raw: &[u8]) -> (String, Vec<Vec<Data>>) {
    let mut book: Xlsx<_> = open_workbook_from_rs(Cursor::new(raw.to_vec())).expect("an XLSX");
    let name = book.sheet_names()[0].clone();
    let range = book.worksheet_range(&name).expect("the sheet");
    let rows = range.rows().map(|r| r.to_vec()).collect();
    (name, rows)
}

pub fn xlsx_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Float(f) => number_text(*f),
        Data::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn figures_are_hand_counted_in_json_csv_and_xlsx(app: &TestApp) {
    Seeded::make(app);
    let nat = app.login("nat").access;
    let all = report(app, &nat, "people_trained", "");

    let total = row(&all, &[("province_code", "all"), ("programme", "all")]);
    assert_eq!(counts(total), (17, 12, 29), "everyone trained: {total}");
    assert_eq!(total["women_share"], serde_json::json!(0.5862));
    let kampot = row(&all, &[("province_code", "07"), ("programme", "all")]);
    assert_eq!(counts(kampot), (6, 3, 9), "Kampot counts each person once");
    assert_eq!(kampot["province_name"], "Kampot");
    let cells = [
        ("07", "think_coop", (5, 3, 8)),
        ("07", "start_coop", (4, 0, 4)),
        ("12", "think_coop", (6, 5, 11)),
        ("03", "follow_up", (5, 4, 9)),
    ];
    for (p, prog, expected) in cells {
        let r = row(&all, &[("province_code", p), ("programme", prog)]);
        assert_eq!(counts(r), expected, "{p} {prog}");
    }
    let think = row(
        &all,
        &[("province_code", "all"), ("programme", "think_coop")],
    );
    assert_eq!(counts(think), (11, 8, 19));
    // 4 cells + 3 province totals + 3 programme totals + the total; nothing from the
    // cancelled session or the planned follow-up.
    assert_eq!(all["rows"].as_array().unwrap().len(), 11, "{all}");

    // A date range: from April, the Think.Coop session of March drops out.
    let april = report(app, &nat, "people_trained", "from=2026-04-01&to=2026-12-31");
    let r = row(&april, &[("province_code", "07"), ("programme", "all")]);
    assert_eq!(counts(r), (4, 0, 4));
    let r = row(&april, &[("province_code", "all"), ("programme", "all")]);
    assert_eq!(counts(r), (15, 9, 24));

    // Sessions, hours, average attendance.
    let s = report(app, &nat, "sessions", "");
    let r = row(&s, &[("province_code", "07")]);
    assert_eq!(
        (&r["sessions"], &r["held"], &r["cancelled"], &r["planned"]),
        (&3.into(), &2.into(), &1.into(), &0.into())
    );
    assert_eq!(
        r["hours_delivered"],
        serde_json::json!(69.0),
        "8x6 + 3x6 + 3"
    );
    assert_eq!(r["average_attendance"], serde_json::json!(6.0));
    let r = row(&s, &[("province_code", "12")]);
    assert_eq!((&r["planned"], &r["held"]), (&1.into(), &1.into()));
    let r = row(&s, &[("province_code", "all")]);
    assert_eq!(r["hours_delivered"], serde_json::json!(189.0));
    assert_eq!(
        r["average_attendance"],
        serde_json::json!(8.0),
        "32 entries / 4 held"
    );
    assert_eq!(r["sessions"], 6);

    let reached = report(app, &nat, "cooperatives_reached", "");
    let r = row(&reached, &[("province_code", "07")]);
    assert_eq!(
        (&r["cooperatives_registered"], &r["cooperatives_reached"]),
        (&2.into(), &1.into())
    );
    let r = row(&reached, &[("province_code", "all")]);
    assert_eq!(
        (
            &r["cooperatives_registered"],
            &r["cooperatives_reached"],
            &r["reached_share"]
        ),
        (&4.into(), &3.into(), &serde_json::json!(0.75))
    );

    // Members were born in 1985: 41 at the end of 2026; the walk-in's age is unknown.
    let ages = report(app, &nat, "age_bands", "to=2026-12-31");
    assert_eq!(counts(row(&ages, &[("age_band", "35_44")])), (16, 12, 28));
    assert_eq!(counts(row(&ages, &[("age_band", "unknown")])), (1, 0, 1));
    assert_eq!(counts(row(&ages, &[("age_band", "all")])), (17, 12, 29));

    let months = report(app, &nat, "people_trained_by_month", "");
    let r = row(&months, &[("month", "2026-04"), ("programme", "all")]);
    assert_eq!(counts(r), (4, 0, 4));
    assert_eq!(counts(row(&months, &[("month", "all")])), (17, 12, 29));

    let r = app.get("/api/v1/reports/people_trained_by_cooperative", Some(&nat));
    assert_eq!((r.status, r.code()), (400, "province_required"));
    let by_coop = report(app, &nat, "people_trained_by_cooperative", "province=07");
    let rows = by_coop["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "one cooperative and the total: {by_coop}");
    assert_eq!(rows[0]["cooperative_name"], "Coop 07");
    assert_eq!(counts(&rows[0]), (6, 3, 9));

    // The same figures as CSV and XLSX.
    for name in ["people_trained", "sessions", "cooperatives_reached"] {
        let json = report(app, &nat, name, "");
        let expected = as_cells(&json);
        let csv = app.get(&format!("/api/v1/reports/{name}?format=csv"), Some(&nat));
        assert_eq!(csv.status, 200);
        assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
        assert_eq!(read_csv(&csv.raw), expected, "{name} as CSV");
        let xlsx = app.get(&format!("/api/v1/reports/{name}?format=xlsx"), Some(&nat));
        assert_eq!(xlsx.status, 200);
        assert_eq!(
            xlsx.header("content-disposition"),
            Some(format!("attachment; filename=\"{name}.xlsx\"").as_str())
        );
        let (sheet, rows) = read_xlsx(&xlsx.raw);
        assert_eq!(sheet, name);
        let text: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.iter().map(xlsx_text).collect())
            .collect();
        assert_eq!(text, expected, "{name} as XLSX");
        // Counts are number cells, not text.
        let people = expected[0]
            .iter()
            .position(|c| c == "people" || c == "sessions" || c == "cooperatives_registered")
            .unwrap();
        assert!(
            rows[1..]
                .iter()
                .all(|r| matches!(r[people], Data::Float(_)))
        );
    }

    // A provincial admin's figures are their province's only.
    let p07 = app.login("prov07").access;
    let theirs = report(app, &p07, "people_trained", "");
    assert_eq!(
        counts(row(
            &theirs,
            &[("province_code", "all"), ("programme", "all")]
        )),
        (6, 3, 9)
    );
    assert!(
        theirs["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["province_code"] == "07" || r["province_code"] == "all"),
        "{theirs}"
    );
    let reached = report(app, &p07, "cooperatives_reached", "");
    let r = row(&reached, &[("province_code", "all")]);
    assert_eq!(r["cooperatives_registered"], 2);
    let asked_other = report(app, &p07, "people_trained", "province=12");
    assert_eq!(
        asked_other["rows"].as_array().unwrap().len(),
        0,
        "{asked_other}"
    );

    // Enumerators get none; bad filters get a clear error.
    let e = app.login("enum07").access;
    assert_eq!(
        app.get("/api/v1/reports/people_trained", Some(&e)).status,
        403
    );
    let r = app.get("/api/v1/reports/people_trained?from=2026-13-01", Some(&nat));
    assert_eq!((r.status, r.code()), (400, "invalid_query"));
    let r = app.get("/api/v1/reports/people_trained?format=pdf", Some(&nat));
    assert_eq!((r.status, r.code()), (400, "invalid_query"));
    let r = app.get("/api/v1/reports/nothing", Some(&nat));
    assert_eq!(r.status, 404);
    let list = app.get("/api/v1/reports", Some(&nat));
    assert_eq!(list.body["reports"].as_array().unwrap().len(), 7);
}

dual_backend_tests!(figures_are_hand_counted_in_json_csv_and_xlsx);
