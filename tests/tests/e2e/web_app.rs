//! The admin web app (issue 16). In a real headless Chromium: a provincial admin's whole
//! day (resolve a conflict two tablets made and see them converge, merge a duplicate and
//! see the figure drop, accept a flag, link a walk-in to her record and register a guest, create an enumerator and revoke the tablet, download
//! an XLSX, switch to Khmer and find a member by a Khmer name), another province's admin
//! seeing none of it, and a national admin releasing a quarantined change; screenshots of
//! every page in English and Khmer. Over plain HTTP: CSRF, cookie flags, the CSP, session
//! expiry, names from tablets shown as text, shared sign-in throttling and page weight.

use std::collections::BTreeMap;

use coopsync_tests::{PASSWORD, TestApp, browser::Browser, dual_backend_tests, tablet::Tablet};
use serde_json::json;
use sync_protocol::documents::{Cooperative, Member, TrainingSession};

use super::duplicates::member;

fn sign_in(b: &Browser, app: &TestApp, username: &str) {
    b.goto(&app.url("/login"));
    b.fill("form", &[("username", username), ("password", PASSWORD)]);
    b.press("form button[type=submit]");
    // The password hash takes a moment: wait for the page after the sign-in.
    b.wait_for(|b| !b.url().contains("/login"));
}

/// Follows the navigation's link to `path` (checked to be there) and waits for the page.
fn nav(b: &Browser, app: &TestApp, path: &str) {
    b.find(&format!("nav a[href='{path}']"));
    b.goto(&app.url(path));
}

fn sign_out(b: &Browser, app: &TestApp) {
    b.goto(&app.url("/dashboard"));
    b.press("form[action='/logout'] button");
}

/// The row of the table inside `scope` whose text contains `text`.
fn row_with(b: &Browser, scope: &str, text: &str) -> coopsync_tests::browser::Element {
    b.all(&format!("{scope} tr"))
        .into_iter()
        .find(|r| b.text(r).contains(text))
        .unwrap_or_else(|| panic!("no row with {text:?} in {scope}: {}", b.text_of(scope)))
}

fn card_with(b: &Browser, text: &str) -> coopsync_tests::browser::Element {
    b.all("article.card")
        .into_iter()
        .find(|c| b.text(c).contains(text))
        .unwrap_or_else(|| panic!("no card with {text:?}: {}", b.text_of("main")))
}

fn digits(s: &str) -> i64 {
    // Khmer digits count too (០–៩).
    let ascii: String = s
        .chars()
        .filter_map(|c| match c {
            '0'..='9' => Some(c),
            '\u{17E0}'..='\u{17E9}' => char::from_u32(c as u32 - 0x17E0 + '0' as u32),
            _ => None,
        })
        .collect();
    ascii.parse().unwrap_or(-1)
}

fn village(t: &Tablet, coop: &str) -> Option<String> {
    Cooperative::read(t.client.doc(coop).unwrap()).0.village
}

fn shoot(b: &Browser, backend: &str, name: &str) {
    // Both backends draw the same pages; one set of screenshots is enough.
    if backend == "sqlite" {
        b.screenshot_full(name);
    }
}

fn a_provincial_admins_day_in_the_browser(app: &TestApp) {
    let backend = if app.db.url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("p07", "provincial_admin", &["07"], &[]);
    app.create_user("p12", "provincial_admin", &["12"], &[]);
    app.create_user("tab.a", "enumerator", &["07"], &[]);
    app.create_user("tab.b", "enumerator", &["07"], &[]);
    let growing = app.create_user("growing", "enumerator", &["07"], &[]);
    let mut a = Tablet::new(app, "tab.a");
    let coop = a.create_cooperative("07", "Disputed");
    a.sync();
    let mut b = Tablet::new(app, "tab.b");
    b.sync();
    // A conflict: both tablets change the village offline.
    a.set(&coop, "village", "Kampong Trach");
    b.set(&coop, "village", "Prey Khmeng");
    // The same woman on both tablets, each with a session she attended.
    let first = member(
        &mut a,
        &coop,
        "សុខ ចាន់ថា",
        "Sok Chanthea",
        "female",
        1986,
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
    // A flag: more hours than planned for a walk-in.
    a.record_attendance(&s1, "walk-in-1", None, 9.0);
    // She comes once more, recorded as a walk-in (aged 40 in 2026).
    let her_walk_in = uuid::Uuid::new_v4().to_string();
    b.record_walk_in(&s2, &her_walk_in, "សុខ ចាន់ថា", "female", 40, "012 345 678");
    a.sync();
    b.sync();
    a.sync();
    // A change the server quarantines: a cooperative outside the enumerator's provinces.
    let mut g = Tablet::new(app, "growing");
    let far = g.create_cooperative("12", "Not yet mine");
    g.sync();

    let Some(br) = Browser::start("en") else {
        return;
    };
    // `/` sends a stranger to the sign-in page; it offers Khmer.
    br.goto(&app.url("/login?lang=km"));
    assert_eq!(br.script("return document.documentElement.lang"), "km");
    shoot(&br, backend, "km-01-sign-in");
    br.goto(&app.url("/login?lang=en"));
    br.goto(&app.url("/"));
    assert!(br.url().ends_with("/login"), "{}", br.url());
    assert_eq!(br.script("return document.documentElement.lang"), "en");
    shoot(&br, backend, "en-01-sign-in");
    // A wrong password says so and keeps the username.
    br.fill(
        "form",
        &[("username", "p07"), ("password", "not-the-password")],
    );
    br.press("form button[type=submit]");
    br.wait_for_text("[role=alert]", "Wrong username or password");
    sign_in(&br, app, "p07");
    assert!(br.url().ends_with("/dashboard"), "{}", br.url());
    assert_eq!(
        digits(&br.text_of("#people-trained")),
        4,
        "two records of her, her again as a walk-in, and a guest"
    );
    shoot(&br, backend, "en-02-dashboard");

    // Resolve the conflict with tablet b's value.
    nav(&br, app, "/review/conflicts");
    shoot(&br, backend, "en-03-conflicts");
    let row = row_with(&br, "article.card", "Prey Khmeng");
    let button = br.all_in(&row, "button").remove(0);
    br.click(&button);
    br.wait_for_text(".done", "Conflict resolved");
    a.sync();
    b.sync();
    assert_eq!(village(&a, &coop).as_deref(), Some("Prey Khmeng"));
    assert_eq!(village(&b, &coop).as_deref(), Some("Prey Khmeng"));
    assert_eq!(a.heads(&coop), b.heads(&coop), "the tablets converge");

    // Merge the duplicate, keeping the first record and the second's Latin spelling.
    nav(&br, app, "/review/duplicates");
    shoot(&br, backend, "en-04-duplicates");
    br.press("article.card h2 a");
    br.wait_for(|b| b.url().contains("/review/duplicates/"));
    // Keep the first record (the page keeps record A unless told otherwise).
    if let Some(link) = br.all(&format!("a[href$='keep={first}']")).pop() {
        br.click(&link);
        br.wait_for(|b| b.url().contains("keep="));
    }
    assert_eq!(
        br.find("input[name=survivor]").attr(&br, "value"),
        first,
        "the form keeps the first record"
    );
    let row = row_with(&br, "form[action$='/merge'] table", "Name (Latin)");
    let other_spelling = br
        .all_in(&row, "label")
        .into_iter()
        .find(|l| br.text(l).contains("Sokh Chantha"))
        .expect("the other record's spelling");
    br.click(&other_spelling);
    shoot(&br, backend, "en-05-duplicate-merge");
    br.press("form[action$='/merge'] button[type=submit]");
    br.wait_for_text(".done", "Merged");
    nav(&br, app, "/dashboard");
    assert_eq!(
        digits(&br.text_of("#people-trained")),
        3,
        "the merged woman counts once (and her walk-in entry apart)"
    );
    a.sync();
    assert_eq!(
        Member::read(a.client.doc(&again).unwrap())
            .0
            .merged_into
            .as_deref(),
        Some(first.as_str()),
        "the tablet pulls the merge"
    );
    assert_eq!(
        Member::read(a.client.doc(&first).unwrap())
            .0
            .name_latin
            .as_deref(),
        Some("Sokh Chantha"),
        "the chosen value is written onto the record kept"
    );
    // The search lists the kept record only; asked to, the merged one too, marked.
    br.goto(&app.url("/records?type=member&q=Sok"));
    assert!(
        br.all("#results span.tag").is_empty(),
        "{}",
        br.text_of("#results")
    );
    br.goto(&app.url("/records?type=member&q=Sok&include_merged=on"));
    assert_eq!(br.text_of("#results span.tag"), "merged");
    assert_eq!(
        br.all(&format!("#results a[href='/records/{again}?follow=false']"))
            .len(),
        1,
        "the merged record links to itself, not to the survivor"
    );
    shoot(&br, backend, "en-14-records-merged");

    // Accept the flag on the walk-in's hours.
    nav(&br, app, "/review/flags");
    shoot(&br, backend, "en-06-flags");
    let card = br
        .all("article.card")
        .into_iter()
        .find(|c| br.text(c).contains("Attendance walk-in- · Hours"))
        .expect("the hours flag");
    let note = br
        .all_in(&card, "form[action$='/accept'] input[name=note]")
        .remove(0);
    br.type_into(&note, "A long session: the promoter confirmed 9 hours");
    br.click(&br.all_in(&card, "form[action$='/accept'] button").remove(0));
    br.wait_for_text(".done", "Flag accepted");
    let p07 = app.login("p07").access;
    let accepted = app.get("/api/v1/flags?status=accepted", Some(&p07));
    assert_eq!(
        accepted.body["flags"][0]["note"],
        "A long session: the promoter confirmed 9 hours"
    );

    // Walk-ins: her entry is linked to her record; the guest is registered as a member.
    nav(&br, app, "/review/walk-ins");
    shoot(&br, backend, "en-15-walk-ins");
    let card = card_with(&br, "012 345 678");
    assert!(
        br.text(&card).contains("same phone number"),
        "{}",
        br.text(&card)
    );
    br.click(&br.all_in(&card, "form[action$='/link'] button").remove(0));
    br.wait_for_text(".done", "Linked");
    nav(&br, app, "/dashboard");
    assert_eq!(
        digits(&br.text_of("#people-trained")),
        2,
        "her walk-in entry counts as her"
    );
    nav(&br, app, "/review/walk-ins");
    let card = card_with(&br, "Guest farmer");
    br.click(&br.all_in(&card, "summary").remove(0));
    let khmer = br.all_in(&card, "input[name=full_name_khmer]").remove(0);
    br.type_into(&khmer, "ភ្ញៀវ កសិករ");
    shoot(&br, backend, "en-16-walk-in-register");
    br.click(
        &br.all_in(&card, "form[action$='/promote'] button")
            .remove(0),
    );
    br.wait_for_text(".done", "Registered as a new member");
    a.sync();
    let registered = TrainingSession::read(a.client.doc(&s1).unwrap())
        .0
        .attendance["walk-in-1"]
        .member_id
        .clone()
        .expect("the tablet pulls the link");
    assert_eq!(
        Member::read(a.client.doc(&registered).expect("and the new member"))
            .0
            .full_name_khmer
            .as_deref(),
        Some("ភ្ញៀវ កសិករ")
    );
    b.sync();
    assert_eq!(
        TrainingSession::read(b.client.doc(&s2).unwrap())
            .0
            .attendance[&her_walk_in]
            .member_id
            .as_deref(),
        Some(first.as_str())
    );

    // Create an enumerator; their tablet syncs; revoke it; the next sync is refused.
    nav(&br, app, "/accounts");
    br.fill(
        "form[action='/accounts']",
        &[
            ("username", "new.enum"),
            ("full_name", "Chea Dara"),
            ("password", "a-long-new-password"),
        ],
    );
    shoot(&br, backend, "en-07-accounts");
    br.press("form[action='/accounts'] button[type=submit]");
    br.wait_for_text(".done", "Account created");
    assert!(br.text_of("#user-new\\.enum").contains("Enumerator"));
    br.press("#user-new\\.enum a");
    br.wait_for(|b| b.url().contains("/accounts/"));
    assert_eq!(
        br.find("input[name=provinces][value='07']")
            .attr(&br, "checked"),
        "true",
        "the account page shows the assignment"
    );
    br.press("form[action$='/assignments'] button");
    br.wait_for_text(".done", "Assignments saved");
    let login = app.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": "new.enum", "password": "a-long-new-password",
                "device_id": uuid::Uuid::new_v4().to_string(), "device_name": "Kampot tablet 9"}),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.str("access_token");
    let device = login.str("device_id");
    let sync = |token: &str| {
        let t = coopsync_tests::tablet::HttpTransport::new(app, token).post(
            &sync_protocol::messages::SyncRequest {
                protocol_version: sync_protocol::PROTOCOL_VERSION,
                ..Default::default()
            },
        );
        t.0
    };
    assert_eq!(sync(&token), 200);
    nav(&br, app, "/devices");
    shoot(&br, backend, "en-08-devices");
    br.press(&format!("#device-{device} button"));
    br.accept_alert();
    br.wait_for_text(".done", "Device revoked");
    assert_eq!(sync(&token), 401, "a revoked tablet's sync is refused");

    // Download the members as XLSX in the browser and read it back.
    nav(&br, app, "/exports");
    shoot(&br, backend, "en-09-exports");
    br.press("a[href^='/exports/members?format=xlsx']");
    let file = br.wait_for_download(".xlsx");
    let mut book: calamine::Xlsx<_> = calamine::open_workbook(&file).expect("an XLSX workbook");
    use calamine::Reader as _;
    let sheet = book.worksheet_range("members").expect("a members sheet");
    let names: Vec<String> = sheet
        .rows()
        .map(|r| {
            r.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    assert!(names.iter().any(|r| r.contains("សុខ ចាន់ថា")), "{names:?}");

    // The record page with its history.
    br.goto(&app.url(&format!("/records/{coop}")));
    assert!(br.text_of("main").contains("Prey Khmeng"));
    assert!(br.text_of("ol.history").contains("admin decision"));
    shoot(&br, backend, "en-10-record");
    br.goto(&app.url("/review/quarantine"));
    shoot(&br, backend, "en-11-quarantine");
    br.goto(&app.url("/review/waiting"));
    shoot(&br, backend, "en-12-waiting");

    // Switch to Khmer (remembered for the user) and find her by a Khmer name.
    br.press("form[action='/language'] button");
    br.wait_for(|b| b.script("return document.documentElement.lang") == "km");
    br.goto(&app.url("/records"));
    br.fill("form[role=search]", &[("q", "ចាន់ថា")]);
    br.press("form[role=search] button");
    br.wait_for_text("#results", "សុខ ចាន់ថា");
    let results = br.text_of("#results");
    assert!(results.contains("សុខ ចាន់ថា"), "{results}");
    shoot(&br, backend, "km-10-records");
    br.goto(&app.url("/records?type=member&q=Sok&include_merged=on"));
    assert_eq!(br.text_of("#results span.tag"), "បានបញ្ចូលគ្នា");
    shoot(&br, backend, "km-14-records-merged");
    for (path, name) in [
        ("/dashboard", "km-02-dashboard"),
        ("/review/conflicts?status=all", "km-03-conflicts"),
        ("/review/duplicates?status=all", "km-04-duplicates"),
        (
            "/review/conflicts?status=resolved",
            "km-05-conflicts-resolved",
        ),
        ("/review/flags?status=all", "km-06-flags"),
        ("/accounts", "km-07-accounts"),
        ("/devices", "km-08-devices"),
        ("/exports", "km-09-exports"),
        ("/review/quarantine", "km-11-quarantine"),
        ("/review/waiting", "km-12-waiting"),
        ("/review/walk-ins?status=all", "km-15-walk-ins"),
    ] {
        br.goto(&app.url(path));
        assert_eq!(
            br.script("return document.documentElement.lang"),
            "km",
            "{path}"
        );
        shoot(&br, backend, name);
    }
    br.goto(&app.url(&format!("/records/{first}")));
    shoot(&br, backend, "km-13-record");
    // On a tablet held upright.
    br.resize(800, 1280);
    br.goto(&app.url("/dashboard"));
    shoot(&br, backend, "km-tablet-dashboard");
    br.resize(1366, 768);
    sign_out(&br, app);
    // Signing in again keeps Khmer: the choice is the user's, not the browser's.
    sign_in(&br, app, "p07");
    assert_eq!(br.script("return document.documentElement.lang"), "km");
    sign_out(&br, app);

    // Another province's admin sees none of it, by list or by direct URL.
    sign_in(&br, app, "p12");
    br.goto(&app.url("/review/conflicts?status=all"));
    assert!(br.all("article.card").is_empty(), "{}", br.text_of("main"));
    br.goto(&app.url("/review/duplicates?status=all"));
    assert!(br.all("article.card").is_empty(), "{}", br.text_of("main"));
    br.goto(&app.url("/review/flags?status=all"));
    assert!(br.all("article.card").is_empty(), "{}", br.text_of("main"));
    for path in [format!("/records/{coop}"), format!("/records/{first}")] {
        br.goto(&app.url(&path));
        assert!(
            br.text_of("main").contains("not_found"),
            "{path}: {}",
            br.text_of("main")
        );
    }
    assert_eq!(
        Web::new(app).get("/records?q=Sok", &[]).status,
        303,
        "pages need a session"
    );
    sign_out(&br, app);

    // The national admin releases the quarantined change once its sender may write there.
    sign_in(&br, app, "nat");
    // This browser was switched to Khmer; the national admin switches back to English.
    if br.script("return document.documentElement.lang") == "km" {
        br.press("form[action='/language'] button");
        br.wait_for(|b| b.script("return document.documentElement.lang") == "en");
    }
    assert_eq!(br.script("return document.documentElement.lang"), "en");
    let nat = app.login("nat").access;
    let r = app.send(
        "PUT",
        &format!("/api/v1/users/{growing}/assignments"),
        Some(&nat),
        &json!({"provinces": ["07", "12"]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    br.goto(&app.url("/review/quarantine"));
    let card = br
        .all("article.card")
        .into_iter()
        .find(|c| br.text(c).contains("out_of_scope"))
        .expect("the quarantined change");
    br.click(
        &br.all_in(&card, "form[action$='/release'] button")
            .remove(0),
    );
    br.wait_for_text(".done", "Change released");
    let rec = app.get(&format!("/api/v1/records/{far}"), Some(&nat));
    assert_eq!(
        rec.status, 200,
        "the released cooperative is stored: {}",
        rec.body
    );
    // The national admin imports cooperatives: upload, read the dry run, apply.
    let dir = coopsync_tests::TempDir::new();
    let csv = dir.path.join("registry.csv");
    std::fs::write(
        &csv,
        "registration_number,name_khmer,name_latin,province_code,status\n\
         WEB-001,សហគមន៍ ទឹកឈូ,Tuek Chhu,07,active\n\
         WEB-002,សហគមន៍ ព្រៃ,Prey,99,active\n\
         WEB-003,សហគមន៍ អូរ,Ou,12,active\n",
    )
    .unwrap();
    nav(&br, app, "/imports");
    let kind = br.find("select[name=kind] option[value=cooperatives]");
    br.click(&kind);
    let input = br.find("input[type=file]");
    br.type_into_file(&input, &csv.display().to_string());
    br.press("form[action='/imports'] button[type=submit]");
    br.wait_for_text("p.done", "checked");
    assert_eq!(digits(&br.text_of("#import-rows")), 3);
    assert_eq!(digits(&br.text_of("#import-failed")), 1);
    assert!(
        br.text_of("#import-errors").contains("province_code"),
        "{}",
        br.text_of("#import-errors")
    );
    shoot(&br, backend, "en-13-import-dry-run");
    br.press("form[action$='/apply'] button");
    br.accept_alert();
    for _ in 0..100 {
        if br.text_of("p.done").contains("applied") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        br.goto(&br.url());
    }
    br.wait_for_text("p.done", "applied");
    let coops = app.get("/api/v1/records?type=cooperative&q=Tuek", Some(&nat));
    assert_eq!(
        coops.body["records"].as_array().map(Vec::len),
        Some(1),
        "{}",
        coops.body
    );

    br.goto(&app.url("/audit"));
    let audit = br.text_of("main");
    for action in [
        "conflict.resolve",
        "duplicate.merge",
        "flag.accept",
        "user.create",
        "device.revoke",
        "quarantine.release",
    ] {
        assert!(audit.contains(action), "{action} in the audit log page");
    }
    shoot(&br, backend, "en-14-audit");
}

/// A cookie-keeping HTTP client that does not follow redirects.
struct Web<'a> {
    app: &'a TestApp,
    agent: ureq::Agent,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// Bytes on the wire (compressed when the server compressed them).
    len: usize,
}

impl Page {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of the first hidden `_csrf` field.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"_csrf\" value=\"")
            .expect("a CSRF field")
            + 20;
        self.body[at..].split('"').next().unwrap_or("").to_string()
    }
}

impl<'a> Web<'a> {
    fn new(app: &'a TestApp) -> Self {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .build(),
        );
        Web {
            app,
            agent,
            cookies: BTreeMap::new(),
        }
    }

    fn keep(&mut self, r: ureq::http::Response<ureq::Body>) -> Page {
        let status = r.status().as_u16();
        let headers: Vec<(String, String)> = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let pair = v.split(';').next().unwrap_or("");
                if let Some((name, value)) = pair.split_once('=') {
                    if value.is_empty() {
                        self.cookies.remove(name);
                    } else {
                        self.cookies.insert(name.into(), value.into());
                    }
                }
            }
        }
        let raw = r.into_body().read_to_vec().unwrap_or_default();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&raw).into_owned(),
            len: raw.len(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn get(&mut self, path: &str, extra: &[(&str, &str)]) -> Page {
        let mut r = self
            .agent
            .get(self.app.url(path))
            .header("cookie", self.cookie_header());
        for (k, v) in extra {
            r = r.header(*k, *v);
        }
        let r = r.call().expect("GET");
        self.keep(r)
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)], extra: &[(&str, &str)]) -> Page {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{k}={}", coopsync::web::layout::encode(v)))
            .collect();
        let mut r = self
            .agent
            .post(self.app.url(path))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in extra {
            r = r.header(*k, *v);
        }
        let r = r.send(body.join("&").as_bytes()).expect("POST");
        self.keep(r)
    }

    fn sign_in(&mut self, username: &str, extra: &[(&str, &str)]) -> Page {
        let page = self.get("/login", extra);
        let csrf = page.csrf();
        self.post(
            "/login",
            &[
                ("_csrf", &csrf),
                ("username", username),
                ("password", PASSWORD),
            ],
            extra,
        )
    }
}

fn forms_need_their_token_cookies_are_strict_and_names_stay_text(app: &TestApp) {
    use coopsync::db::schema::{audit_log, web_sessions};
    use diesel::prelude::*;
    app.create_user("p07", "provincial_admin", &["07"], &[]);
    app.create_user("tab.x", "enumerator", &["07"], &[]);
    let mut t = Tablet::new(app, "tab.x");
    let coop = t.create_cooperative("07", "Hostile names");
    let script = member(
        &mut t,
        &coop,
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(2)>",
        "female",
        1990,
        "012 999 888",
    );
    member(
        &mut t,
        &coop,
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(2)>",
        "female",
        1990,
        "012 999 888",
    );
    t.sync();
    let mut u = Tablet::new(app, "tab.x");
    u.sync();
    t.set(&coop, "village", "<b onmouseover=alert(3)>v</b>");
    u.set(&coop, "village", "plain");
    t.sync();
    u.sync();

    let mut web = Web::new(app);
    // The sign-in page: CSP, a strict form cookie, no inline script anywhere.
    let login = web.get("/login", &[]);
    assert_eq!(login.status, 200);
    let csp = login.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(login.header("x-content-type-options"), Some("nosniff"));
    for c in login.set_cookies() {
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
        assert!(!c.contains("Secure"), "plain HTTP: {c}");
    }
    assert!(
        !login.body.contains("<script>") && !login.body.contains("onclick"),
        "no inline script"
    );
    // A sign-in posted without its token is refused, and so is one with a made-up token.
    let bad = web.post(
        "/login",
        &[("username", "p07"), ("password", PASSWORD)],
        &[],
    );
    assert_eq!(bad.status, 403, "{}", bad.body);
    assert!(bad.body.contains("csrf_failed"));
    let bad = web.post(
        "/login",
        &[
            ("_csrf", "forged"),
            ("username", "p07"),
            ("password", PASSWORD),
        ],
        &[],
    );
    assert_eq!(bad.status, 403);
    // Over TLS (a proxy saying so) the cookies are Secure.
    let mut tls = Web::new(app);
    let signed = tls.sign_in("p07", &[("x-forwarded-proto", "https")]);
    assert_eq!(signed.status, 303, "{}", signed.body);
    for c in signed.set_cookies() {
        assert!(
            c.contains("Secure") && c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
    }
    // Over plain HTTP: a session cookie with the flags, and the dashboard.
    let signed = web.sign_in("p07", &[]);
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(signed.header("location"), Some("/dashboard"));
    let session = signed
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("coopsync_session="))
        .expect("a session cookie")
        .to_string();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let dash = web.get("/dashboard", &[]);
    assert_eq!(dash.status, 200, "{}", dash.body);
    assert!(dash.header("content-security-policy").is_some());

    // Every action refuses a form without the session's token, and nothing changes.
    let conflicts = web.get("/review/conflicts", &[]);
    let at = conflicts
        .body
        .find("/review/conflicts/")
        .expect("a conflict form")
        + 18;
    let id: String = conflicts.body[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let path = format!("/review/conflicts/{id}/resolve");
    let refused = web.post(&path, &[("choice", "0")], &[]);
    assert_eq!(refused.status, 403, "{}", refused.body);
    let refused = web.post(&path, &[("_csrf", "not-the-token"), ("choice", "0")], &[]);
    assert_eq!(refused.status, 403);
    let p07 = app.login("p07").access;
    assert_eq!(
        app.get("/api/v1/conflicts", Some(&p07)).body["conflicts"][0]["status"],
        "open",
        "a refused form changes nothing"
    );
    for path in [
        "/logout",
        "/language",
        "/accounts",
        "/devices/x/revoke",
        "/review/flags/1/accept",
        "/review/quarantine/1/release",
    ] {
        let r = web.post(path, &[("lang", "km")], &[]);
        assert_eq!(r.status, 403, "{path} without a token: {}", r.body);
    }

    // Names typed on a tablet are text on every page that shows them.
    let token = conflicts.csrf();
    for path in [
        "/review/conflicts".to_string(),
        "/review/duplicates".to_string(),
        format!("/records?q={}", coopsync::web::layout::encode("<script>")),
        format!("/records/{script}"),
        format!("/records/{coop}"),
        "/dashboard".to_string(),
    ] {
        let page = web.get(&path, &[]);
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        for raw in ["<script>alert", "<img src=x", "<b onmouseover"] {
            assert!(!page.body.contains(raw), "{path} shows {raw:?} as markup");
        }
        assert!(!page.body.contains("<script>"), "{path}: no inline script");
    }
    let dup = web.get("/review/duplicates", &[]);
    assert!(
        dup.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "shown escaped"
    );
    let rec = web.get(&format!("/records/{script}"), &[]);
    assert!(
        rec.body
            .contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;")
            || rec
                .body
                .contains("\"&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "{}",
        rec.body
    );

    // With the token, the action works and is audited like its API twin.
    let done = web.post(&path, &[("_csrf", &token), ("choice", "0")], &[]);
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.header("location"),
        Some("/review/conflicts?done=resolved")
    );
    let mut conn = app.db.connect();
    let audited: i64 = audit_log::table
        .filter(audit_log::action.eq("conflict.resolve"))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(audited, 1);

    // Idle expiry: a session unused past the limit sends the next page to sign-in.
    diesel::update(web_sessions::table)
        .set(web_sessions::last_seen_at.eq(coopsync::db::now() - chrono::Duration::minutes(31)))
        .execute(&mut conn)
        .unwrap();
    let expired = web.get("/dashboard", &[]);
    assert_eq!(expired.status, 303);
    assert_eq!(expired.header("location"), Some("/login?next=%2Fdashboard"));
    // Absolute expiry: however busy, a session ends after its hours.
    let mut busy = Web::new(app);
    assert_eq!(busy.sign_in("p07", &[]).status, 303);
    diesel::update(web_sessions::table.filter(web_sessions::ended_at.is_null()))
        .set(web_sessions::created_at.eq(coopsync::db::now() - chrono::Duration::hours(13)))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(busy.get("/dashboard", &[]).status, 303);

    // Sign-out ends the session on the server (a copied cookie stops working).
    let mut again = Web::new(app);
    assert_eq!(again.sign_in("p07", &[]).status, 303);
    let mut thief = Web::new(app);
    thief.cookies = again.cookies.clone();
    let page = again.get("/dashboard", &[]);
    let out = again.post("/logout", &[("_csrf", &page.csrf())], &[]);
    assert_eq!(out.status, 303);
    assert_eq!(
        thief.get("/dashboard", &[]).status,
        303,
        "a signed-out session is dead"
    );

    // Another province's admin: the same pages answer 404 for these records.
    app.create_user("p12", "provincial_admin", &["12"], &[]);
    let mut other = Web::new(app);
    assert_eq!(other.sign_in("p12", &[]).status, 303);
    for path in [format!("/records/{coop}"), format!("/records/{script}")] {
        let page = other.get(&path, &[]);
        assert_eq!(page.status, 404, "{path}: {}", page.body);
        assert!(!page.body.contains("Hostile names") && !page.body.contains("012 999 888"));
    }
    let list = other.get("/review/conflicts?status=all", &[]);
    assert_eq!(list.status, 200);
    assert!(
        !list.body.contains("/resolve"),
        "no conflict of 07 is listed"
    );

    // The web app is for admins: an enumerator signs in but gets no pages.
    let mut field = Web::new(app);
    assert_eq!(field.sign_in("tab.x", &[]).status, 303);
    assert_eq!(field.get("/dashboard", &[]).status, 403);
}

fn sign_in_throttling_is_shared_with_the_api(backend: coopsync_tests::Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.login_max_failures_per_account = 3) else {
        return coopsync_tests::notice("test skipped: backend unavailable");
    };
    let app = &app;
    app.create_user("p07", "provincial_admin", &["07"], &[]);
    let mut web = Web::new(app);
    for _ in 0..3 {
        let page = web.get("/login", &[]);
        let r = web.post(
            "/login",
            &[
                ("_csrf", &page.csrf()),
                ("username", "p07"),
                ("password", "wrong-password"),
            ],
            &[],
        );
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.body.contains("Wrong username or password"));
    }
    // The API's own sign-in is now refused too: one count for both doors.
    let api = app.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": "p07", "password": PASSWORD,
                "device_id": uuid::Uuid::new_v4().to_string(), "device_name": "x"}),
    );
    assert_eq!((api.status, api.code()), (429, "too_many_login_attempts"));
    let page = web.get("/login", &[]);
    let r = web.post(
        "/login",
        &[
            ("_csrf", &page.csrf()),
            ("username", "p07"),
            ("password", PASSWORD),
        ],
        &[],
    );
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
}

fn a_first_visit_weighs_under_200_kb(app: &TestApp) {
    use std::io::Read as _;
    app.create_user("p07", "provincial_admin", &["07"], &[]);
    let mut web = Web::new(app);
    assert_eq!(web.sign_in("p07", &[("accept-language", "km")]).status, 303);
    let dash = web.get("/dashboard", &[("accept-encoding", "gzip")]);
    assert_eq!(dash.status, 200);
    assert_eq!(dash.header("content-encoding"), Some("gzip"));
    let html_bytes = dash.len;
    // The assets a Khmer page loads: stylesheet, script, icon, one weight of the font.
    let mut total = html_bytes;
    for asset in [
        "style.css",
        "app.js",
        "icon.svg",
        "noto-sans-khmer-400.woff2",
    ] {
        let r = app
            .agent
            .get(app.url(&format!("/assets/{asset}?v=x")))
            .header("accept-encoding", "gzip")
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{asset}");
        assert!(
            r.headers()
                .get("cache-control")
                .is_some_and(|v| v.to_str().unwrap_or("").contains("max-age"))
        );
        let mut bytes = Vec::new();
        r.into_body().into_reader().read_to_end(&mut bytes).unwrap();
        total += bytes.len();
    }
    println!("first visit to the dashboard: {total} bytes (html {html_bytes})");
    assert!(total < 200 * 1024, "{total} bytes");
}

/// The same person's attendance taken on two tablets: the conflicts page shows each entry's
/// fields in words (in English and Khmer), offers no typed value, and keeping one entry
/// reaches both tablets.
fn an_attendance_entry_recorded_twice_is_kept_from_the_conflicts_page(app: &TestApp) {
    let backend = if app.db.url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    app.create_user("p07", "provincial_admin", &["07"], &[]);
    let (mut a, mut b, session) = coopsync_tests::tablet::attendance_recorded_twice(app, "guest-1");

    let Some(br) = Browser::start("en") else {
        return;
    };
    sign_in(&br, app, "p07");
    nav(&br, app, "/review/conflicts");
    let card = card_with(&br, "Hours: 3.5");
    assert!(br.text(&card).contains("Hours: 6"), "{}", br.text(&card));
    assert!(
        br.text(&card).contains("Keep this entry"),
        "{}",
        br.text(&card)
    );
    assert!(
        br.all_in(&card, "input[name=value]").is_empty(),
        "no typed value for an entry"
    );
    shoot(&br, backend, "en-17-conflict-entry");
    br.press("form[action='/language'] button");
    br.wait_for(|b| b.script("return document.documentElement.lang") == "km");
    br.goto(&app.url("/review/conflicts"));
    assert!(br.text_of("main").contains("ម៉ោង"), "{}", br.text_of("main"));
    shoot(&br, backend, "km-17-conflict-entry");
    br.press("form[action='/language'] button");
    br.wait_for(|b| b.script("return document.documentElement.lang") == "en");
    br.goto(&app.url("/review/conflicts"));
    let row = row_with(&br, "article.card", "Hours: 3.5");
    let button = br.all_in(&row, "button").remove(0);
    br.click(&button);
    br.wait_for_text(".done", "Conflict resolved");
    for t in [&mut a, &mut b] {
        t.sync();
        let (s, _) = TrainingSession::read(t.client.doc(&session).unwrap());
        assert_eq!(s.attendance["guest-1"].hours, Some(3.5));
    }
    assert_eq!(a.heads(&session), b.heads(&session), "the tablets converge");
}

dual_backend_tests!(
    an_attendance_entry_recorded_twice_is_kept_from_the_conflicts_page,
    a_provincial_admins_day_in_the_browser,
    forms_need_their_token_cookies_are_strict_and_names_stay_text,
    a_first_visit_weighs_under_200_kb,
);

mod throttling {
    #[test]
    fn sqlite_sign_in_throttling_is_shared_with_the_api() {
        super::sign_in_throttling_is_shared_with_the_api(coopsync_tests::Backend::Sqlite)
    }
    #[test]
    fn postgres_sign_in_throttling_is_shared_with_the_api() {
        super::sign_in_throttling_is_shared_with_the_api(coopsync_tests::Backend::Postgres)
    }
}
