//! The admin side at national scale (`coopsync-bench --admin`): the registry import of
//! 1,116 cooperatives and 60,000 members through the API while a tablet keeps syncing
//! (its sync latencies), the bytes a new tablet of one province then downloads, and every
//! report for a national and a provincial admin over 3,000 sessions and 90,000 attendance
//! rows (server time from the `Server-Timing` header, median of 5).

use std::time::{Duration, Instant};

use coopsync::db::{
    ConnectionFactory, DbConnection,
    schema::{attendance, cooperatives, documents, members, training_sessions},
};
use diesel::prelude::*;

use crate::{
    Backend,
    bench::{ServerProcess, bench_admin, bench_agent, bench_login},
};

#[derive(Debug, Clone, Default)]
pub struct AdminReport {
    pub backend: String,
    pub cooperatives: usize,
    pub members: usize,
    pub check_members_s: f64,
    pub import_cooperatives_s: f64,
    pub import_members_s: f64,
    pub syncs_during_import: usize,
    pub sync_p50_ms: f64,
    pub sync_p99_ms: f64,
    pub province_docs: usize,
    pub province_bytes: usize,
    pub attendance_rows: usize,
    /// (report, national ms, provincial ms)
    pub reports: Vec<(String, f64, f64)>,
    /// Duplicate detection for one member against the national registry: median and
    /// p99 of `records::duplicates::detect` (ms), what it adds to the push that carries it.
    pub detect_p50_ms: f64,
    pub detect_p99_ms: f64,
    /// `coopsync duplicates rescan` of every member (s), and the pairs it holds.
    pub rescan_s: f64,
    pub rescan_pairs: usize,
    /// (web page, national ms, provincial ms): server time, median of 5.
    pub pages: Vec<(String, f64, f64)>,
    /// Bytes of the dashboard's HTML on the wire (gzip), national admin.
    pub dashboard_bytes: usize,
    /// The dashboard's first load (its figures computed, not cached): national,
    /// provincial (ms).
    pub dashboard_cold_ms: (f64, f64),
}

/// A web app session of `user`: the cookie header its pages need.
fn web_session(addr: &str, user: &str) -> Result<String, String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build(),
    );
    let cookies = |r: &ureq::http::Response<ureq::Body>| -> Vec<String> {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
            .collect()
    };
    let page = agent
        .get(format!("{addr}/login"))
        .call()
        .map_err(|e| e.to_string())?;
    let jar = cookies(&page).join("; ");
    let html = page
        .into_body()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let at = html
        .find("name=\"_csrf\" value=\"")
        .ok_or("no CSRF field on the sign-in page")?
        + 20;
    let csrf: String = html[at..].chars().take_while(|c| *c != '"').collect();
    let body = format!(
        "_csrf={csrf}&username={user}&password={}",
        crate::bench::ADMIN_PASSWORD
    );
    let signed = agent
        .post(format!("{addr}/login"))
        .header("cookie", &jar)
        .header("content-type", "application/x-www-form-urlencoded")
        .send(body.as_bytes())
        .map_err(|e| e.to_string())?;
    if signed.status().as_u16() != 303 {
        return Err(format!("web sign-in of {user}: {}", signed.status()));
    }
    Ok(cookies(&signed).join("; "))
}

/// Server time (ms) and bytes on the wire (gzip) of one page.
fn page_ms(agent: &ureq::Agent, url: &str, cookie: &str) -> Result<(f64, usize), String> {
    let resp = agent
        .get(url)
        .header("cookie", cookie)
        .header("accept-encoding", "gzip")
        .call()
        .map_err(|e| e.to_string())?;
    if resp.status().as_u16() != 200 {
        return Err(format!("GET {url}: {}", resp.status()));
    }
    let ms = resp
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("dur=").nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0);
    let bytes = resp
        .into_body()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok((ms, bytes.len()))
}

/// The web app's pages at this scale, national and provincial admin.
fn pages(addr: &str, report: &mut AdminReport) -> Result<(), String> {
    let agent = bench_agent();
    let national = web_session(addr, crate::bench::ADMIN)?;
    let provincial = web_session(addr, "bench.prov07")?;
    let dashboard = format!("{addr}/dashboard");
    report.dashboard_cold_ms = (
        page_ms(&agent, &dashboard, &national)?.0,
        page_ms(&agent, &dashboard, &provincial)?.0,
    );
    // Medians of 5 after the first load: the dashboard's figures come from the cache
    // while the change log stands still.
    for path in [
        "/dashboard",
        "/records",
        "/records?q=%E1%9E%85%E1%9E%B6%E1%9E%93%E1%9F%8B%E1%9E%90%E1%9E%B6",
        "/records?q=Chanthea",
        "/review/duplicates",
        "/review/conflicts",
        "/review/flags",
        "/accounts",
        "/devices",
    ] {
        let url = format!("{addr}{path}");
        let median = |cookie: &str| -> Result<(f64, usize), String> {
            let mut ms = Vec::new();
            let mut bytes = 0;
            for _ in 0..5 {
                let (t, b) = page_ms(&agent, &url, cookie)?;
                ms.push(t);
                bytes = b;
            }
            ms.sort_by(f64::total_cmp);
            Ok((ms[2], bytes))
        };
        let (n, bytes) = median(&national)?;
        if path == "/dashboard" {
            report.dashboard_bytes = bytes;
        }
        report
            .pages
            .push((path.to_string(), n, median(&provincial)?.0));
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

const PROVINCES: [&str; 25] = [
    "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25",
];

fn registry(coops: usize, members: usize) -> (String, String) {
    let mut c = String::from("registration_number,name_khmer,name_latin,province_code,status\n");
    for i in 0..coops {
        c.push_str(&format!(
            "REG-{i:05},សហគមន៍ {i},Cooperative {i},{},active\n",
            PROVINCES[i % PROVINCES.len()]
        ));
    }
    let mut m = String::from(
        "cooperative_registration_number,full_name_khmer,name_latin,sex,year_of_birth,phone,role\n",
    );
    for i in 0..members {
        m.push_str(&format!(
            "REG-{:05},សុខ ចាន់ថា {i},Sok Chanthea {i},{},{},012 {i:06},member\n",
            i % coops,
            if i % 5 < 3 { "female" } else { "male" },
            1960 + i % 45
        ));
    }
    (c, m)
}

fn http_json(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: &str,
    body: Option<&[u8]>,
) -> Result<(serde_json::Value, f64), String> {
    let auth = format!("Bearer {token}");
    let resp = match (method, body) {
        ("POST", Some(b)) if b.starts_with(b"{") => agent
            .post(url)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .send(b),
        ("POST", Some(b)) => agent.post(url).header("authorization", &auth).send(b),
        ("POST", None) => agent.post(url).header("authorization", &auth).send_empty(),
        _ => agent.get(url).header("authorization", &auth).call(),
    }
    .map_err(|e| e.to_string())?;
    let server_ms = resp
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("dur=").nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0);
    let status = resp.status().as_u16();
    let text = resp
        .into_body()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| e.to_string())?;
    if status >= 400 {
        return Err(format!("{method} {url}: {status} {text}"));
    }
    Ok((serde_json::from_str(&text).unwrap_or_default(), server_ms))
}

/// Uploads, waits for the dry run, applies, waits; answers (check s, apply s). `during`
/// runs between polls while applying.
fn import(
    agent: &ureq::Agent,
    addr: &str,
    token: &str,
    kind: &str,
    file: &str,
    mut during: impl FnMut(),
) -> Result<(f64, f64), String> {
    let started = Instant::now();
    let (job, _) = http_json(
        agent,
        "POST",
        &format!("{addr}/api/v1/imports/{kind}"),
        token,
        Some(file.as_bytes()),
    )?;
    let id = job["id"].as_str().ok_or("no job id")?.to_string();
    let wait = |during: &mut dyn FnMut()| -> Result<serde_json::Value, String> {
        loop {
            let (job, _) = http_json(
                agent,
                "GET",
                &format!("{addr}/api/v1/imports/{id}"),
                token,
                None,
            )?;
            match job["status"].as_str() {
                Some("checking") | Some("applying") => during(),
                _ => return Ok(job),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let checked = wait(&mut || {})?;
    if checked["status"] != "checked" || checked["report"]["failed"] != 0 {
        return Err(format!("{kind} import check: {}", checked["report"]));
    }
    let check_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    http_json(
        agent,
        "POST",
        &format!("{addr}/api/v1/imports/{id}/apply"),
        token,
        None,
    )?;
    let done = wait(&mut during)?;
    if done["status"] != "applied" {
        return Err(format!("{kind} import: {done}"));
    }
    Ok((check_s, started.elapsed().as_secs_f64()))
}

/// 3,000 held sessions of 30 present members each, straight into the projection (the
/// reports read nothing else).
fn fill_sessions(url: &str, sessions: usize, per_session: usize) -> Result<usize, String> {
    let mut conn = ConnectionFactory::new(url)
        .connect()
        .map_err(|e| e.to_string())?;
    let coops: Vec<(String, Option<String>)> = cooperatives::table
        .select((cooperatives::id, cooperatives::province_code))
        .order(cooperatives::id)
        .load(&mut conn)
        .map_err(|e| e.to_string())?;
    let mut by_coop: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (id, coop) in members::table
        .select((members::id, members::cooperative_id))
        .load::<(String, Option<String>)>(&mut conn)
        .map_err(|e| e.to_string())?
    {
        by_coop
            .entry(coop.unwrap_or_default())
            .or_default()
            .push(id);
    }
    let now = chrono::Utc::now().naive_utc();
    let mut rows = 0;
    macro_rules! fill {
        ($c:expr) => {{
            $c.transaction::<_, diesel::result::Error, _>(|c| {
                for s in 0..sessions {
                    let (coop, province) = &coops[s % coops.len()];
                    let id = uuid::Uuid::new_v4().to_string();
                    let date = format!("2026-{:02}-{:02}", 1 + s % 12, 1 + s % 28);
                    diesel::insert_into(documents::table)
                        .values((
                            documents::id.eq(&id),
                            documents::doc_type.eq("training_session"),
                            documents::province_code.eq(province),
                            documents::cooperative_id.eq(coop),
                            documents::snapshot.eq(Vec::<u8>::new()),
                            documents::heads.eq(""),
                            documents::change_count.eq(0i64),
                            documents::last_seq.eq(0i64),
                            documents::created_at.eq(now),
                            documents::updated_at.eq(now),
                        ))
                        .execute(c)?;
                    diesel::insert_into(training_sessions::table)
                        .values((
                            training_sessions::id.eq(&id),
                            training_sessions::programme.eq([
                                "think_coop",
                                "start_coop",
                                "follow_up",
                            ][s % 3]),
                            training_sessions::cooperative_id.eq(coop),
                            training_sessions::province_code.eq(province),
                            training_sessions::facilitators.eq("[]"),
                            training_sessions::scheduled_date.eq(date),
                            training_sessions::planned_hours.eq(6.0),
                            training_sessions::status.eq("held"),
                            training_sessions::updated_at.eq(now),
                        ))
                        .execute(c)?;
                    let people = by_coop.get(coop).cloned().unwrap_or_default();
                    let entries: Vec<_> = people
                        .iter()
                        .take(per_session)
                        .map(|m| {
                            (
                                attendance::session_id.eq(id.clone()),
                                attendance::participant_id.eq(m.clone()),
                                attendance::member_id.eq(Some(m.clone())),
                                attendance::status.eq(Some("present")),
                                attendance::hours.eq(Some(6.0)),
                            )
                        })
                        .collect();
                    rows += entries.len();
                    diesel::insert_into(attendance::table)
                        .values(entries)
                        .execute(c)?;
                }
                Ok(())
            })
        }};
    }
    match &mut conn {
        DbConnection::Sqlite(c) => fill!(c),
        DbConnection::Postgresql(c) => fill!(c),
    }
    .map_err(|e| e.to_string())?;
    Ok(rows)
}

pub fn run(bin: &std::path::Path, backend: Backend, quick: bool) -> Result<AdminReport, String> {
    let (n_coops, n_members, n_sessions) = if quick {
        (40, 1_200, 100)
    } else {
        (1_116, 60_000, 3_000)
    };
    let server = ServerProcess::start(bin, backend)?;
    let agent = bench_agent();
    let addr = server.addr.clone();
    let admin = bench_admin(&agent, &addr)?;
    let token = admin.session.access.clone();
    for (name, role) in [
        ("bench.enum07", "enumerator"),
        ("bench.prov07", "provincial_admin"),
    ] {
        http_json(
            &agent,
            "POST",
            &format!("{addr}/api/v1/users"),
            &token,
            Some(
                serde_json::json!({"username": name, "password": crate::bench::ADMIN_PASSWORD,
                    "role": role, "provinces": ["07"]})
                .to_string()
                .as_bytes(),
            ),
        )
        .map_err(|e| format!("create {name}: {e}"))?;
    }
    let (coops_csv, members_csv) = registry(n_coops, n_members);
    let mut report = AdminReport {
        backend: backend_name(backend).into(),
        cooperatives: n_coops,
        members: n_members,
        ..AdminReport::default()
    };
    report.import_cooperatives_s =
        import(&agent, &addr, &token, "cooperatives", &coops_csv, || {})?.1;
    // A tablet of province 07 syncs (one new record, then pull) over and over while the
    // members import.
    let mut tablet = bench_login(&agent, &addr, "bench.enum07")?;
    let mut latencies = Vec::new();
    let coop = tablet.create_cooperative("07", "Tablet cooperative");
    tablet.sync();
    let (check_s, import_s) = import(&agent, &addr, &token, "members", &members_csv, || {
        tablet.add_member(&coop, "Srey Tablet", "female");
        let started = Instant::now();
        tablet.sync();
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    })?;
    latencies.sort_by(f64::total_cmp);
    report.check_members_s = check_s;
    report.import_members_s = import_s;
    report.syncs_during_import = latencies.len();
    report.sync_p50_ms = percentile(&latencies, 0.5);
    report.sync_p99_ms = percentile(&latencies, 0.99);

    // A new tablet of the province downloads its share.
    let mut fresh = bench_login(&agent, &addr, "bench.enum07")?;
    fresh.sync();
    report.province_docs = fresh.client.docs().count();
    report.province_bytes = fresh.transport.bytes_down;

    detection(&server.url, &mut report)?;
    report.attendance_rows = fill_sessions(&server.url, n_sessions, 30)?;
    let prov = bench_login(&agent, &addr, "bench.prov07")?.session.access;
    for r in coopsync::reports::Report::ALL {
        let query = if r == coopsync::reports::Report::PeopleTrainedByCooperative {
            "?province=07"
        } else {
            ""
        };
        let url = format!("{addr}/api/v1/reports/{}{query}", r.as_str());
        let median = |token: &str| -> Result<f64, String> {
            let mut ms = Vec::new();
            for _ in 0..5 {
                ms.push(http_json(&agent, "GET", &url, token, None)?.1);
            }
            ms.sort_by(f64::total_cmp);
            Ok(ms[2])
        };
        report
            .reports
            .push((r.as_str().to_string(), median(&token)?, median(&prov)?));
    }
    pages(&addr, &mut report)?;
    Ok(report)
}

/// Times detection for 200 members spread over the registry (each in a transaction that
/// is rolled back, so the measured state stays the national one), then a full rescan.
fn detection(url: &str, report: &mut AdminReport) -> Result<(), String> {
    let mut conn = ConnectionFactory::new(url)
        .connect()
        .map_err(|e| e.to_string())?;
    let ids: Vec<String> = members::table
        .select(members::id)
        .order(members::id)
        .load(&mut conn)
        .map_err(|e| e.to_string())?;
    let step = (ids.len() / 200).max(1);
    let mut ms = Vec::new();
    for id in ids.iter().step_by(step).take(200) {
        let started = Instant::now();
        let _ = coopsync::db::write_transaction(&mut conn, |c| {
            coopsync::records::duplicates::detect(c, id)?;
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
            Err::<(), _>(coopsync::error::ApiError::internal(
                "rolled back on purpose",
            ))
        });
    }
    ms.sort_by(f64::total_cmp);
    report.detect_p50_ms = percentile(&ms, 0.5);
    report.detect_p99_ms = percentile(&ms, 0.99);
    let started = Instant::now();
    let rescan = coopsync::db::write_transaction(&mut conn, |c| {
        coopsync::records::duplicates::rescan(c, |_, _| {})
    })
    .map_err(|e| e.to_string())?;
    report.rescan_s = started.elapsed().as_secs_f64();
    report.rescan_pairs = rescan.pairs;
    Ok(())
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    }
}

pub fn table(reports: &[AdminReport]) -> String {
    let mut out = String::from("| | ");
    out.push_str(
        &reports
            .iter()
            .map(|r| r.backend.clone())
            .collect::<Vec<_>>()
            .join(" | "),
    );
    out.push_str(" |\n|---|");
    out.push_str(&"---|".repeat(reports.len()));
    out.push('\n');
    let mut row = |label: &str, f: &dyn Fn(&AdminReport) -> String| {
        out.push_str(&format!(
            "| {label} | {} |\n",
            reports.iter().map(f).collect::<Vec<_>>().join(" | ")
        ));
    };
    row("import: cooperatives applied (s)", &|r| {
        format!("{} in {:.1}", r.cooperatives, r.import_cooperatives_s)
    });
    row("import: members dry run (s)", &|r| {
        format!("{:.1}", r.check_members_s)
    });
    row("import: members applied (s)", &|r| {
        format!("{} in {:.1}", r.members, r.import_members_s)
    });
    row("tablet syncs during the import: p50 / p99 (ms)", &|r| {
        format!(
            "{:.0} / {:.0} ({} syncs)",
            r.sync_p50_ms, r.sync_p99_ms, r.syncs_during_import
        )
    });
    row("new tablet of province 07: documents, bytes down", &|r| {
        format!(
            "{}, {:.0} KB",
            r.province_docs,
            r.province_bytes as f64 / 1e3
        )
    });
    row("duplicate detection for one member: p50 / p99 (ms)", &|r| {
        format!("{:.2} / {:.2}", r.detect_p50_ms, r.detect_p99_ms)
    });
    row("duplicates rescan of every member (s), pairs", &|r| {
        format!("{:.1}, {}", r.rescan_s, r.rescan_pairs)
    });
    row("attendance rows for the reports", &|r| {
        r.attendance_rows.to_string()
    });
    let names: Vec<String> = reports
        .first()
        .map(|r| r.reports.iter().map(|(n, _, _)| n.clone()).collect())
        .unwrap_or_default();
    for (i, name) in names.iter().enumerate() {
        row(&format!("report {name}: national / province (ms)"), &|r| {
            r.reports
                .get(i)
                .map(|(_, n, p)| format!("{n:.1} / {p:.1}"))
                .unwrap_or_default()
        });
    }
    row(
        "web dashboard, first load (figures computed): national / province (ms)",
        &|r| {
            format!(
                "{:.1} / {:.1}",
                r.dashboard_cold_ms.0, r.dashboard_cold_ms.1
            )
        },
    );
    row("web dashboard HTML on the wire (gzip, KB)", &|r| {
        format!("{:.1}", r.dashboard_bytes as f64 / 1e3)
    });
    let pages: Vec<String> = reports
        .first()
        .map(|r| r.pages.iter().map(|(n, _, _)| n.clone()).collect())
        .unwrap_or_default();
    for (i, name) in pages.iter().enumerate() {
        row(
            &format!("web page `{name}`: national / province (ms)"),
            &|r| {
                r.pages
                    .get(i)
                    .map(|(_, n, p)| format!("{n:.1} / {p:.1}"))
                    .unwrap_or_default()
            },
        );
    }
    out
}
