//! The sync benchmark: the real `coopsync` binary on SQLite and on PostgreSQL, simulated
//! tablets over HTTP on loopback, and an in-process ceiling for the same work. Prints
//! figures; asserts nothing (see docs/performance.md).

use std::{
    path::{Path, PathBuf},
    process::Child,
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use sync_protocol::{client::SyncClient, documents::DocType, messages::DocChanges};

use crate::{Backend, TempDir, tablet::Tablet};

pub const ADMIN: &str = "bench.admin";
pub const ADMIN_PASSWORD: &str = "bench-admin-password";

/// Work sizes.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub cooperatives: usize,
    pub members: usize,
    pub sessions: usize,
    pub participants: usize,
    pub seed_tablets: usize,
    pub burst_tablets: usize,
    pub burst_changes: usize,
    /// Sizes (attendance entries) at which a push into one growing session is timed.
    pub large_document: Vec<usize>,
    /// Only the seed (`--seed`): its throughput with and without duplicate detection is
    /// compared by running it twice, the second time with
    /// `COOPSYNC_DUPLICATE_DETECTION=false` (issue 14).
    pub seed_only: bool,
}

impl Sizes {
    pub fn national() -> Self {
        Self {
            cooperatives: 1116,
            members: 60_000,
            sessions: 3000,
            participants: 30,
            seed_tablets: 8,
            burst_tablets: 300,
            burst_changes: 50,
            large_document: vec![30, 1000, 4000, 8000],
            seed_only: false,
        }
    }

    pub fn quick() -> Self {
        Self {
            cooperatives: 40,
            members: 1200,
            sessions: 60,
            participants: 30,
            seed_tablets: 4,
            burst_tablets: 30,
            burst_changes: 50,
            large_document: vec![30, 1000],
            seed_only: false,
        }
    }
}

/// A `coopsync serve` process with its own database.
pub struct ServerProcess {
    child: Child,
    pub addr: String,
    pub backend: Backend,
    pub url: String,
    _dir: TempDir,
    pg_db: Option<String>,
}

fn pg_base() -> String {
    std::env::var("COOPSYNC_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

impl ServerProcess {
    pub fn start(bin: &Path, backend: Backend) -> Result<Self, String> {
        let dir = TempDir::new();
        let (url, pg_db) = match backend {
            Backend::Sqlite => (dir.path.join("bench.db").display().to_string(), None),
            Backend::Postgres => {
                use diesel::{Connection, RunQueryDsl};
                let name = format!("coopsync_bench_{}", uuid::Uuid::new_v4().simple());
                let mut admin = diesel::PgConnection::establish(&format!("{}/postgres", pg_base()))
                    .map_err(|e| format!("PostgreSQL: {e}"))?;
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .map_err(|e| e.to_string())?;
                (format!("{}/{name}", pg_base()), Some(name))
            }
        };
        crate::process::user_add(
            bin,
            &dir.path,
            &url,
            ADMIN,
            ADMIN_PASSWORD,
            &["--role", "national_admin"],
        )?;
        let (child, addr) = crate::process::serve(bin, &dir.path, &url, "127.0.0.1:0")?;
        Ok(Self {
            child,
            addr,
            backend,
            url,
            _dir: dir,
            pg_db,
        })
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.child.id())).unwrap_or_default()
    }

    /// Peak resident set since the last reset, in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        self.proc_file("status")
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }

    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// User + system CPU seconds used so far.
    pub fn cpu_secs(&self) -> f64 {
        let stat = self.proc_file("stat");
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / 100.0
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(name) = &self.pg_db {
            use diesel::{Connection, RunQueryDsl};
            if let Ok(mut admin) =
                diesel::PgConnection::establish(&format!("{}/postgres", pg_base()))
            {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin);
            }
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build(),
    )
}

/// One phase's server-side cost.
#[derive(Debug, Clone, Default)]
pub struct PhaseCost {
    pub peak_rss_mb: f64,
    pub cpu_secs: f64,
}

fn measured<T>(server: &ServerProcess, f: impl FnOnce() -> T) -> (T, PhaseCost) {
    server.reset_peak();
    let cpu = server.cpu_secs();
    let out = f();
    (
        out,
        PhaseCost {
            peak_rss_mb: server.peak_rss_mb(),
            cpu_secs: server.cpu_secs() - cpu,
        },
    )
}

const PROVINCES: [&str; 25] = [
    "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25",
];

/// The seeding tablet responsible for a province: each owns whole provinces, as field
/// teams do, so no tablet pulls another's work back during the seed.
fn tablet_for_province(index: usize, tablets: usize) -> usize {
    index % tablets
}

/// A member's name from small pools of Khmer family and given names (with their usual
/// romanisation), so a cooperative has the odd namesake, as a real one does; each member
/// also has her own phone and year of birth, so duplicate detection proposes what it
/// would on real data, not every pair of a cooperative.
fn person_name(c: usize, m: usize) -> (String, String) {
    const FAMILY: [(&str, &str); 12] = [
        ("សុខ", "Sok"),
        ("ចាន់", "Chan"),
        ("ហេង", "Heng"),
        ("លី", "Ly"),
        ("ម៉ៅ", "Mao"),
        ("សៀង", "Sieng"),
        ("ឈឹម", "Chhim"),
        ("ពៅ", "Pov"),
        ("កែវ", "Keo"),
        ("នួន", "Nuon"),
        ("យឹម", "Yim"),
        ("ទេព", "Tep"),
    ];
    const GIVEN: [(&str, &str); 16] = [
        ("ចាន់ថា", "Chanthea"),
        ("សុភា", "Sophea"),
        ("ស្រីពៅ", "Sreypov"),
        ("ដារ៉ា", "Dara"),
        ("សុផល", "Sophal"),
        ("វណ្ណា", "Vanna"),
        ("បុប្ផា", "Bopha"),
        ("រតនា", "Ratana"),
        ("សំណាង", "Samnang"),
        ("ធារី", "Theary"),
        ("ពិសី", "Pisey"),
        ("វិចិត្រ", "Vichet"),
        ("សុគន្ធា", "Sokunthea"),
        ("ចន្ទ្រា", "Chantrea"),
        ("រស្មី", "Reaksmey"),
        ("គឹមហុង", "Kimhong"),
    ];
    let (fk, fl) = FAMILY[(c * 5 + m * 7) % FAMILY.len()];
    let (gk, gl) = GIVEN[(c * 3 + m * 11) % GIVEN.len()];
    (format!("{fk} {gk}"), format!("{fl} {gl}"))
}

/// Builds the national data set on `tablets` offline tablets (no network yet).
fn generate(tablets: &mut [Tablet], sizes: &Sizes) -> Vec<String> {
    let n = tablets.len();
    let mut coops = Vec::new();
    for c in 0..sizes.cooperatives {
        let p = c % PROVINCES.len();
        let t = &mut tablets[tablet_for_province(p, n)];
        let province = PROVINCES[p];
        let coop = t.create_cooperative(province, &format!("Cooperative {c}"));
        let members_here = sizes.members / sizes.cooperatives
            + usize::from(c < sizes.members % sizes.cooperatives);
        let members: Vec<String> = (0..members_here)
            .map(|m| {
                let (khmer, latin) = person_name(c, m);
                t.add_person(
                    &coop,
                    (&khmer, &latin),
                    if m % 2 == 0 { "female" } else { "male" },
                    1950 + ((c * 7 + m * 13) % 55) as i64,
                    &format!("0{}{:03}{:04}", 10 + c % 90, c % 1000, m % 10_000),
                )
            })
            .collect();
        let sessions_here = sizes.sessions / sizes.cooperatives
            + usize::from(c < sizes.sessions % sizes.cooperatives);
        for _ in 0..sessions_here {
            let session = t.create_session(province, &coop);
            for p in 0..sizes.participants.min(members.len().max(1)) {
                match members.get(p) {
                    Some(m) => t.record_attendance(&session, m, Some(m), 6.0),
                    None => {
                        t.record_attendance(&session, &uuid::Uuid::new_v4().to_string(), None, 6.0)
                    }
                }
            }
        }
        coops.push(coop);
    }
    coops
}

fn count_changes(client: &SyncClient) -> usize {
    client
        .docs()
        .map(|(_, (_, d))| d.get_changes(&[]).len())
        .sum()
}

/// Results for one backend.
#[derive(Debug, Clone, Default)]
pub struct BackendReport {
    pub backend: &'static str,
    pub seed_changes: usize,
    pub seed_secs: f64,
    pub seed_cost: PhaseCost,
    pub ceiling_changes_per_sec: f64,
    pub burst_secs: f64,
    pub burst_p50_ms: f64,
    pub burst_p99_ms: f64,
    pub burst_cost: PhaseCost,
    pub incremental_national_ms: f64,
    pub incremental_empty_ms: f64,
    pub incremental_requests: u32,
    pub incremental_bytes_up: usize,
    pub incremental_bytes_down: usize,
    pub up_per_member: f64,
    pub up_per_attendance: f64,
    pub down_per_member: f64,
    pub down_per_attendance: f64,
    /// (entries in the session, median server ms of a push of one more entry).
    pub large_document_ms: Vec<(usize, f64)>,
}

/// The benchmark's HTTP agent (long timeout, statuses as values).
pub fn bench_agent() -> ureq::Agent {
    agent()
}

/// The benchmark admin, signed in on a new device.
pub fn bench_admin(agent: &ureq::Agent, addr: &str) -> Result<Tablet, String> {
    Tablet::login(agent, addr, ADMIN, ADMIN_PASSWORD)
}

/// Creates an enumerator assigned to one cooperative (the benchmark's password).
pub fn bench_enumerator(
    agent: &ureq::Agent,
    addr: &str,
    token: &str,
    user: &str,
    cooperative: &str,
) -> Result<(), String> {
    create_enumerator(agent, addr, token, user, cooperative)
}

/// Signs a benchmark account in on a new device.
pub fn bench_login(agent: &ureq::Agent, addr: &str, user: &str) -> Result<Tablet, String> {
    Tablet::login(agent, addr, user, ADMIN_PASSWORD)
}

fn admin_token(agent: &ureq::Agent, addr: &str) -> Result<String, String> {
    let t = Tablet::login(agent, addr, ADMIN, ADMIN_PASSWORD)?;
    Ok(t.session.access)
}

fn create_enumerator(
    agent: &ureq::Agent,
    addr: &str,
    token: &str,
    name: &str,
    coop: &str,
) -> Result<(), String> {
    create_account(
        agent,
        addr,
        token,
        serde_json::json!({
            "username": name, "password": ADMIN_PASSWORD, "role": "enumerator", "cooperatives": [coop]
        }),
    )
}

fn create_account(
    agent: &ureq::Agent,
    addr: &str,
    token: &str,
    body: serde_json::Value,
) -> Result<(), String> {
    let r = agent
        .post(format!("{addr}/api/v1/users"))
        .header("authorization", format!("Bearer {token}"))
        .send_json(body)
        .map_err(|e| e.to_string())?;
    if r.status().as_u16() != 201 {
        return Err(format!("create account: HTTP {}", r.status()));
    }
    Ok(())
}

/// How many times the incremental sync is repeated; its median is reported (one ~5 ms
/// request on a shared machine moves by ±30% from run to run).
const INCREMENTAL_REPEATS: usize = 45;

/// A tablet with a current cursor makes five edits and syncs once, `INCREMENTAL_REPEATS`
/// times; returns (median server ms from `Server-Timing`, requests, bytes up, bytes down),
/// the last three of the final round (they do not vary).
fn incremental(
    agent: &ureq::Agent,
    addr: &str,
    enumerator: &str,
) -> Result<(f64, u32, usize, usize), String> {
    let mut t = Tablet::login(agent, addr, enumerator, ADMIN_PASSWORD)?;
    t.sync();
    let members: Vec<String> = t
        .client
        .docs()
        .filter(|(_, (ty, _))| *ty == DocType::Member)
        .map(|(id, _)| id.clone())
        .take(5)
        .collect();
    let mut times = Vec::with_capacity(INCREMENTAL_REPEATS);
    let mut last = (0, 0, 0);
    for round in 0..INCREMENTAL_REPEATS {
        for m in &members {
            t.set(m, "phone", &format!("097 000 {round:04}"));
        }
        let (up, down, server) = (
            t.transport.bytes_up,
            t.transport.bytes_down,
            t.transport.server_ms,
        );
        let report = t.sync();
        times.push(t.transport.server_ms - server);
        last = (
            report.requests,
            t.transport.bytes_up - up,
            t.transport.bytes_down - down,
        );
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok((percentile(&times, 0.5), last.0, last.1, last.2))
}

/// Wire cost per member registration and per attendance record, up and down.
fn wire_costs(
    agent: &ureq::Agent,
    addr: &str,
    token: &str,
) -> Result<(f64, f64, f64, f64), String> {
    let mut a = Tablet::login(agent, addr, ADMIN, ADMIN_PASSWORD)?;
    let coop = a.create_cooperative("07", "Wire");
    a.sync();
    create_enumerator(agent, addr, token, "wire.reader", &coop)?;
    let mut b = Tablet::login(agent, addr, "wire.reader", ADMIN_PASSWORD)?;
    b.sync();
    let members: Vec<String> = (0..200)
        .map(|i| a.add_member(&coop, &format!("W{i}"), "female"))
        .collect();
    let up0 = a.transport.bytes_up;
    a.sync();
    let up_member = (a.transport.bytes_up - up0) as f64 / 200.0;
    let down0 = b.transport.bytes_down;
    b.sync();
    let down_member = (b.transport.bytes_down - down0) as f64 / 200.0;
    let session = a.create_session("07", &coop);
    a.sync();
    b.sync();
    for m in members.iter().take(30) {
        a.record_attendance(&session, m, Some(m), 6.0);
    }
    let up0 = a.transport.bytes_up;
    a.sync();
    let up_att = (a.transport.bytes_up - up0) as f64 / 30.0;
    let down0 = b.transport.bytes_down;
    b.sync();
    let down_att = (b.transport.bytes_down - down0) as f64 / 30.0;
    Ok((up_member, up_att, down_member, down_att))
}

/// How many single-entry pushes are timed at each size of the large document.
const LARGE_DOCUMENT_REPEATS: usize = 9;

/// One session grows to each of `sizes` attendance entries (16 tablets' worth of a long
/// course, or a crowd on one document); at each size a tablet records one more entry and
/// syncs, `LARGE_DOCUMENT_REPEATS` times. Returns the median server ms per size: the cost
/// of a push should not grow with the document.
fn large_document(
    agent: &ureq::Agent,
    addr: &str,
    sizes: &[usize],
) -> Result<Vec<(usize, f64)>, String> {
    let mut t = Tablet::login(agent, addr, ADMIN, ADMIN_PASSWORD)?;
    let coop = t.create_cooperative("07", "Large");
    let session = t.create_session("07", &coop);
    let mut entries = 0;
    let mut out = Vec::new();
    for &size in sizes {
        while entries < size {
            t.record_attendance(&session, &uuid::Uuid::new_v4().to_string(), None, 6.0);
            entries += 1;
        }
        t.sync();
        let mut times = Vec::with_capacity(LARGE_DOCUMENT_REPEATS);
        for _ in 0..LARGE_DOCUMENT_REPEATS {
            t.record_attendance(&session, &uuid::Uuid::new_v4().to_string(), None, 5.0);
            entries += 1;
            let server = t.transport.server_ms;
            t.sync();
            times.push(t.transport.server_ms - server);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        out.push((size, percentile(&times, 0.5)));
    }
    Ok(out)
}

/// The same changes ingested in this process, without HTTP: decode, verify, apply,
/// project, commit, in the batches the tablets sent, one thread per tablet as in the
/// end-to-end run.
fn ceiling(backend: Backend, per_tablet: &[Vec<Vec<DocChanges>>]) -> Result<f64, String> {
    use coopsync::{
        auth::Principal,
        db::write_transaction,
        domain::access::{Assignments, Role},
    };
    let db = crate::TestDb::create(backend).ok_or("backend unavailable")?;
    let mut settings = crate::test_settings(&db.url);
    settings.database_pool_size = per_tablet.len() as u32 + 1;
    let database = coopsync::startup::open_database(&settings).map_err(|e| e.to_string())?;
    let changes: usize = per_tablet
        .iter()
        .flatten()
        .flatten()
        .map(|g| g.changes.len())
        .sum();
    let started = Instant::now();
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = per_tablet
            .iter()
            .enumerate()
            .map(|(i, batches)| {
                let database = database.clone();
                s.spawn(move || {
                    let mut conn = database.get().map_err(|e| e.to_string())?;
                    let principal = Principal {
                        user_id: "ceiling".into(),
                        role: Role::NationalAdmin,
                        device_id: format!("ceiling-device-{i}"),
                        assignments: Assignments::default(),
                        request_id: None,
                    };
                    for batch in batches {
                        write_transaction(&mut conn, |c| {
                            coopsync::sync::ingest::ingest(
                                c,
                                &principal,
                                batch,
                                sync_protocol::messages::ChangeEncoding::Hex,
                            )
                        })
                        .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("panicked".into())))
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(changes as f64 / started.elapsed().as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn run_backend(
    bin: &Path,
    backend: Backend,
    sizes: &Sizes,
    log: &mut dyn FnMut(&str),
) -> Result<BackendReport, String> {
    let name = match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    let mut report = BackendReport {
        backend: name,
        ..BackendReport::default()
    };
    let agent = agent();

    // Incremental and wire costs on an empty server first.
    if !sizes.seed_only {
        let server = ServerProcess::start(bin, backend)?;
        let token = admin_token(&agent, &server.addr)?;
        let mut seed = Tablet::login(&agent, &server.addr, ADMIN, ADMIN_PASSWORD)?;
        let coop = seed.create_cooperative("07", "Small");
        for i in 0..54 {
            seed.add_member(&coop, &format!("S{i}"), "male");
        }
        seed.sync();
        create_enumerator(&agent, &server.addr, &token, "inc.empty", &coop)?;
        let (ms, _, _, _) = incremental(&agent, &server.addr, "inc.empty")?;
        report.incremental_empty_ms = ms;
        let (um, ua, dm, da) = wire_costs(&agent, &server.addr, &token)?;
        (
            report.up_per_member,
            report.up_per_attendance,
            report.down_per_member,
            report.down_per_attendance,
        ) = (um, ua, dm, da);
        log(&format!("{name}: empty-server incremental sync {ms:.1} ms"));
        report.large_document_ms = large_document(&agent, &server.addr, &sizes.large_document)?;
        log(&format!(
            "{name}: one large session, push of one entry: {:?} (entries, server ms)",
            report.large_document_ms
        ));
    }

    let server = ServerProcess::start(bin, backend)?;
    let token = admin_token(&agent, &server.addr)?;
    log(&format!("{name}: generating the national data set offline"));
    let mut tablets = Vec::new();
    for k in 0..sizes.seed_tablets {
        let provinces: Vec<&str> = (0..PROVINCES.len())
            .filter(|p| tablet_for_province(*p, sizes.seed_tablets) == k)
            .map(|p| PROVINCES[p])
            .collect();
        let user = format!("seed.{k}");
        create_account(
            &agent,
            &server.addr,
            &token,
            serde_json::json!({
                "username": user, "password": ADMIN_PASSWORD, "role": "enumerator", "provinces": provinces
            }),
        )?;
        tablets.push(Tablet::login(&agent, &server.addr, &user, ADMIN_PASSWORD)?);
    }
    let coops = generate(&mut tablets, sizes);
    report.seed_changes = tablets.iter().map(|t| count_changes(&t.client)).sum();
    let batches: Vec<Vec<Vec<DocChanges>>> = tablets
        .iter()
        .map(|t| t.client.undelivered_batches())
        .collect();
    log(&format!(
        "{name}: seeding {} changes through sync with {} tablets",
        report.seed_changes,
        tablets.len()
    ));
    let (secs, cost) = measured(&server, || {
        let started = Instant::now();
        std::thread::scope(|s| {
            for t in tablets.iter_mut() {
                s.spawn(move || t.sync());
            }
        });
        started.elapsed().as_secs_f64()
    });
    report.seed_secs = secs;
    report.seed_cost = cost;
    if sizes.seed_only {
        log(&format!("{name}: seeded in {secs:.1} s"));
        return Ok(report);
    }
    log(&format!(
        "{name}: seeded in {secs:.1} s; measuring the in-process ceiling"
    ));
    report.ceiling_changes_per_sec = ceiling(backend, &batches)?;

    // Incremental sync against the national-scale server.
    create_enumerator(&agent, &server.addr, &token, "inc.national", &coops[0])?;
    let (ms, requests, up, down) = incremental(&agent, &server.addr, "inc.national")?;
    report.incremental_national_ms = ms;
    report.incremental_requests = requests;
    report.incremental_bytes_up = up;
    report.incremental_bytes_down = down;

    // The training-day burst: enumerators, each assigned to one cooperative and synced
    // before the day (a current cursor), each then pushing one session's attendance.
    log(&format!(
        "{name}: preparing {} burst tablets",
        sizes.burst_tablets
    ));
    let mut burst: Vec<Tablet> = Vec::new();
    for i in 0..sizes.burst_tablets {
        let user = format!("burst.{i}");
        create_enumerator(&agent, &server.addr, &token, &user, &coops[i % coops.len()])?;
        let mut t = Tablet::login(&agent, &server.addr, &user, ADMIN_PASSWORD)?;
        t.sync();
        burst.push(t);
    }
    for (i, t) in burst.iter_mut().enumerate() {
        let province = PROVINCES[(i % coops.len()) % PROVINCES.len()];
        let session = t.create_session(province, &coops[i % coops.len()]);
        let participants: Vec<String> = (0..sizes.participants)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        for p in &participants {
            t.record_attendance(&session, p, None, 6.0);
        }
        let extra = sizes.burst_changes.saturating_sub(sizes.participants + 1);
        for k in 0..extra {
            t.record_attendance(&session, &participants[k % participants.len()], None, 5.0);
        }
    }
    let barrier = Arc::new(Barrier::new(burst.len()));
    let (latencies, cost) = measured(&server, || {
        let started = Instant::now();
        let mut lat: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = burst
                .iter_mut()
                .map(|t| {
                    let barrier = barrier.clone();
                    s.spawn(move || {
                        barrier.wait();
                        let t0 = Instant::now();
                        t.sync();
                        t0.elapsed().as_secs_f64() * 1000.0
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(f64::NAN))
                .collect()
        });
        lat.sort_by(|a, b| a.total_cmp(b));
        (started.elapsed().as_secs_f64(), lat)
    });
    report.burst_secs = latencies.0;
    report.burst_p50_ms = percentile(&latencies.1, 0.5);
    report.burst_p99_ms = percentile(&latencies.1, 0.99);
    report.burst_cost = cost;
    Ok(report)
}

/// One row's cells, one column per backend.
fn cells(reports: &[BackendReport], f: &dyn Fn(&BackendReport) -> String) -> String {
    reports
        .iter()
        .map(|r| format!("{:>16}", f(r)))
        .collect::<Vec<_>>()
        .join("")
}

/// The table printed at the end.
/// The seed's figures alone (`--seed`).
pub fn seed_table(reports: &[BackendReport], sizes: &Sizes) -> String {
    let detection = std::env::var("COOPSYNC_DUPLICATE_DETECTION").unwrap_or_else(|_| "true".into());
    let mut out = format!(
        "seed: {} coops, {} members, {} sessions x {}, {} tablets, duplicate detection {detection}\n",
        sizes.cooperatives, sizes.members, sizes.sessions, sizes.participants, sizes.seed_tablets
    );
    out +=
        "backend     changes   wall s   changes/s   server CPU s   CPU ms/change   peak RSS MB\n";
    for r in reports {
        out += &format!(
            "{:<10}{:>9}{:>9.1}{:>12.0}{:>15.2}{:>16.3}{:>14.0}\n",
            r.backend,
            r.seed_changes,
            r.seed_secs,
            r.seed_changes as f64 / r.seed_secs,
            r.seed_cost.cpu_secs,
            1000.0 * r.seed_cost.cpu_secs / r.seed_changes as f64,
            r.seed_cost.peak_rss_mb
        );
    }
    out
}

pub fn table(reports: &[BackendReport], sizes: &Sizes) -> String {
    let mut out = String::new();
    let col = |f: &dyn Fn(&BackendReport) -> String| cells(reports, f);
    out += &format!("{:<58}{}\n", "figure", col(&|r| r.backend.to_string()));
    let mut row = |label: &str, f: &dyn Fn(&BackendReport) -> String| {
        out += &format!("{label:<58}{}\n", col(f));
    };
    row(
        &format!(
            "seed: {} coops, {} members, {} sessions x {}",
            sizes.cooperatives, sizes.members, sizes.sessions, sizes.participants
        ),
        &|r| format!("{} chg", r.seed_changes),
    );
    row("seed: wall time (s)", &|r| format!("{:.1}", r.seed_secs));
    row("seed: end-to-end changes/s (HTTP in -> committed)", &|r| {
        format!("{:.0}", r.seed_changes as f64 / r.seed_secs)
    });
    row(
        "ceiling: in-process changes/s (decode+apply+project)",
        &|r| format!("{:.0}", r.ceiling_changes_per_sec),
    );
    row("seed: end-to-end / ceiling", &|r| {
        format!(
            "{:.0}%",
            100.0 * r.seed_changes as f64 / r.seed_secs / r.ceiling_changes_per_sec
        )
    });
    row("seed: server peak RSS (MB)", &|r| {
        format!("{:.0}", r.seed_cost.peak_rss_mb)
    });
    row("seed: server CPU (s)", &|r| {
        format!("{:.1}", r.seed_cost.cpu_secs)
    });
    row(
        &format!(
            "burst: {} tablets x {} changes, all done (s)",
            sizes.burst_tablets, sizes.burst_changes
        ),
        &|r| format!("{:.2}", r.burst_secs),
    );
    row("burst: request latency p50 (ms)", &|r| {
        format!("{:.0}", r.burst_p50_ms)
    });
    row("burst: request latency p99 (ms)", &|r| {
        format!("{:.0}", r.burst_p99_ms)
    });
    row("burst: server peak RSS (MB)", &|r| {
        format!("{:.0}", r.burst_cost.peak_rss_mb)
    });
    row("burst: server CPU (s)", &|r| {
        format!("{:.1}", r.burst_cost.cpu_secs)
    });
    row(
        "incremental 5 changes, national server: server ms (median)",
        &|r| format!("{:.1}", r.incremental_national_ms),
    );
    row(
        "incremental 5 changes, empty server: server ms (median)",
        &|r| format!("{:.1}", r.incremental_empty_ms),
    );
    row("incremental: national / empty", &|r| {
        format!("{:.2}x", r.incremental_national_ms / r.incremental_empty_ms)
    });
    row("incremental: requests", &|r| {
        r.incremental_requests.to_string()
    });
    row("incremental: bytes up / down", &|r| {
        format!("{} / {}", r.incremental_bytes_up, r.incremental_bytes_down)
    });
    row("bytes up per member registration (gzip, batched)", &|r| {
        format!("{:.0}", r.up_per_member)
    });
    row("bytes up per attendance record (gzip, batched)", &|r| {
        format!("{:.0}", r.up_per_attendance)
    });
    row("bytes down per member registration", &|r| {
        format!("{:.0}", r.down_per_member)
    });
    row("bytes down per attendance record", &|r| {
        format!("{:.0}", r.down_per_attendance)
    });
    out + &large_document_table(reports, sizes)
}

/// The rows of the large-document phase (also printed alone by `--large-document`).
pub fn large_document_table(reports: &[BackendReport], sizes: &Sizes) -> String {
    let mut out = String::new();
    let col = |f: &dyn Fn(&BackendReport) -> String| cells(reports, f);
    let mut row = |label: &str, f: &dyn Fn(&BackendReport) -> String| {
        out += &format!("{label:<58}{}\n", col(f));
    };
    for (i, size) in sizes.large_document.iter().enumerate() {
        row(
            &format!("one session of {size} entries: push 1 entry, server ms"),
            &|r| {
                r.large_document_ms
                    .get(i)
                    .map(|(_, ms)| format!("{ms:.1}"))
                    .unwrap_or_default()
            },
        );
    }
    row("one session: largest / smallest", &|r| match (
        r.large_document_ms.first(),
        r.large_document_ms.last(),
    ) {
        (Some((_, a)), Some((_, b))) if *a > 0.0 => format!("{:.2}x", b / a),
        _ => String::new(),
    });
    out
}

/// Only the large-document phase, on a fresh server.
pub fn run_large_document(
    bin: &Path,
    backend: Backend,
    sizes: &Sizes,
) -> Result<BackendReport, String> {
    let server = ServerProcess::start(bin, backend)?;
    Ok(BackendReport {
        backend: match backend {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        },
        large_document_ms: large_document(&agent(), &server.addr, &sizes.large_document)?,
        ..BackendReport::default()
    })
}

/// The `coopsync` binary next to the running executable, or this crate's copy of it.
pub fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let server = dir.join("coopsync");
    if server.exists() {
        server
    } else {
        dir.join("coopsync-cli")
    }
}
