//! Issue 12's closing check, in one run against a real `coopsync serve` process: every
//! hostile case, 1,000 damaged changes, 2,001 orphans and 300 re-sealed mutations, then:
//! the server is up, its resident memory is back within 50 MB of where it started, the
//! database grew by no more than the stated bound per request, `projection rebuild`
//! completes, and every stored record loads from its change log in Rust and in
//! @automerge/automerge (the library tablets run), and takes a further edit in both.

use std::{io::Write as _, path::Path, process::Command, time::Duration};

use automerge::{AutoCommit, Automerge, Change, ROOT, transaction::Transactable};
use coopsync::db::schema::{changes, documents};
use coopsync_tests::{Backend, PASSWORD, TempDir, TestDb, notice, tablet::Tablet};

use super::hostile::{b64, push};

use diesel::prelude::*;

/// What one request may add to the database at most: 256 quarantine rows of 64 KiB and a
/// summary row, audit and index overhead, and 2,000 held changes only once per device.
const MAX_GROWTH_PER_REQUEST: u64 = 17 * 1024 * 1024;

fn vm_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn db_bytes(path: &str) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{path}{s}")).ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn after_the_hostile_battery_every_record_loads_in_rust_and_javascript() {
    let Some(db) = TestDb::create(Backend::Sqlite) else {
        return;
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_coopsync-cli"));
    let dir = TempDir::new();
    coopsync_tests::process::user_add(
        bin,
        &dir.path,
        &db.url,
        "hostile.one",
        PASSWORD,
        &["--role", "enumerator", "--province", "07"],
    )
    .unwrap();
    let (mut child, addr) = coopsync_tests::process::serve(bin, &dir.path, &db.url, "127.0.0.1:0")
        .expect("server starts");
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build(),
    );
    let mut t = Tablet::login(&agent, &addr, "hostile.one", PASSWORD).unwrap();
    // Some ordinary work first, so there are real records to check.
    let coop = t.create_cooperative("07", "Real work");
    t.add_member(&coop, "Real member", "female");
    t.sync();
    std::thread::sleep(Duration::from_millis(300));
    let idle = vm_rss_mb(child.id());
    let size_before = db_bytes(&db.url);
    let mut requests = 0u64;

    // Every crafted case, each on a fresh document.
    let (_, all) = super::hostile_shapes::cases(0xc0);
    for i in 0..all.len() {
        let (first, mut all) = super::hostile_shapes::cases(0xc1 + i as u8);
        let case = all.swap_remove(i);
        let id = uuid::Uuid::new_v4().to_string();
        push(&mut t, &id, "cooperative", &[first.clone(), case.second]);
        requests += 1;
    }
    // 1,000 damaged changes in one request, and 2,001 orphans in another.
    let (first, _) = super::hostile_shapes::cases(0xd0);
    let damaged = super::hostile_shapes::damaged_changes(&first, 1000);
    push(
        &mut t,
        &uuid::Uuid::new_v4().to_string(),
        "cooperative",
        &damaged,
    );
    let orphans = super::hostile_shapes::orphan_changes(&first, 2001);
    push(
        &mut t,
        &uuid::Uuid::new_v4().to_string(),
        "cooperative",
        &orphans,
    );
    requests += 2;
    // 300 re-sealed mutations of a real history, 10 per request.
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "type", "cooperative").unwrap();
    doc.put(ROOT, "id", "mutated").unwrap();
    doc.put(ROOT, "province_code", "07").unwrap();
    doc.commit();
    let target = uuid::Uuid::new_v4().to_string();
    let base = doc.get_changes(&[])[0].raw_bytes().to_vec();
    push(&mut t, &target, "cooperative", std::slice::from_ref(&base));
    for i in 0..5 {
        doc.put(ROOT, "village", format!("v{i}")).unwrap();
        doc.commit();
    }
    let templates: Vec<Vec<u8>> = doc
        .get_changes(&[])
        .iter()
        .skip(1)
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..30 {
        let batch: Vec<Vec<u8>> = (0..10)
            .map(|_| {
                let mut b = templates[(next() % templates.len() as u64) as usize].clone();
                let pos = 9 + (next() as usize % (b.len() - 9));
                b[pos] ^= 1 << (next() % 8);
                sync_protocol::chunk::seal(&mut b);
                b
            })
            .collect();
        push(&mut t, &target, "cooperative", &batch);
        requests += 1;
    }

    // The server is up and its memory came back.
    let health = agent.get(format!("{addr}/readyz")).call().unwrap();
    assert_eq!(health.status().as_u16(), 200);
    std::thread::sleep(Duration::from_millis(500));
    let after = vm_rss_mb(child.id());
    let grown = db_bytes(&db.url).saturating_sub(size_before);
    notice(&format!(
        "hostile battery: {requests} requests; RSS {idle:.0} MB before, {after:.0} MB after; database +{} KiB ({} KiB per request, bound {} KiB)",
        grown / 1024,
        grown / 1024 / requests,
        MAX_GROWTH_PER_REQUEST / 1024
    ));
    assert!(
        after < idle + 50.0,
        "RSS {after:.0} MB after, {idle:.0} MB before"
    );
    assert!(grown <= MAX_GROWTH_PER_REQUEST * requests);
    let _ = child.kill();
    let _ = child.wait();

    // `projection rebuild` completes.
    let rebuild = Command::new(bin)
        .args(["projection", "rebuild"])
        .current_dir(&dir.path)
        .env("COOPSYNC_DATABASE_URL", &db.url)
        .env("COOPSYNC_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        rebuild.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuild.stdout)
    );

    // Every stored record, from its change log, in Rust...
    let mut conn = db.connect();
    let docs: Vec<(String, String)> = documents::table
        .select((documents::id, documents::heads))
        .load(&mut conn)
        .unwrap();
    let mut dump = serde_json::Map::new();
    for (id, heads) in &docs {
        let logged: Vec<Vec<u8>> = changes::table
            .filter(changes::document_id.eq(id))
            .order(changes::seq)
            .select(changes::bytes)
            .load(&mut conn)
            .unwrap();
        let mut rebuilt = Automerge::new();
        rebuilt
            .apply_changes(
                logged
                    .iter()
                    .map(|b| Change::try_from(&b[..]).unwrap())
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        let mut edit = AutoCommit::load(&rebuilt.save()).unwrap();
        edit.put(ROOT, "load_check", "ok").unwrap();
        edit.commit();
        dump.insert(
            id.clone(),
            serde_json::json!({
                "heads": heads.split(',').filter(|h| !h.is_empty()).collect::<Vec<_>>(),
                "changes": logged.iter().map(|b| b64(b)).collect::<Vec<_>>(),
            }),
        );
    }
    assert!(docs.len() > 10, "{} records", docs.len());
    // ...and in @automerge/automerge.
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/js-client");
    let node = Command::new("node").arg("--version").output();
    if node.is_err() {
        notice("node is not installed: the @automerge/automerge half of the load check is SKIPPED");
        return;
    }
    if !js.join("node_modules/@automerge/automerge").exists() {
        let npm = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&js)
            .status();
        if !npm.is_ok_and(|s| s.success()) {
            notice("npm ci failed: the @automerge/automerge half of the load check is SKIPPED");
            return;
        }
    }
    let dump_path = dir.path.join("dump.json");
    std::fs::File::create(&dump_path)
        .unwrap()
        .write_all(serde_json::Value::Object(dump).to_string().as_bytes())
        .unwrap();
    let out = Command::new("node")
        .arg(js.join("load-check.mjs"))
        .arg(&dump_path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    notice(&format!(
        "@automerge/automerge load check: {}",
        report.trim()
    ));
    assert!(
        out.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
