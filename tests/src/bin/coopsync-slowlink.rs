//! `coopsync-slowlink`: one tablet syncs a week of work to a real server through a slow,
//! lossy, regularly cut link (a network namespace; see docs/reliability.md). Needs root,
//! iproute2 and nftables.
//!
//! ```text
//! coopsync-slowlink [--kib 1024] [--loss 30] [--rate 64kbit] [--cut-every 60] [--cut-for 5]
//! ```
//! Exit status 0: everything delivered, nothing acknowledged was re-sent, the server's
//! copy is identical; 1: not; 2: this machine cannot build the link.

use std::{net::TcpListener, time::Duration};

use coopsync_tests::{
    PASSWORD, TempDir, TestDb,
    slowlink::{self, Link, Namespace, TabletOutcome},
};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("tablet") => return tablet_mode(&args),
        Some("raw") => {
            let to = arg(&args, "--to").unwrap_or_default();
            let bytes = arg(&args, "--bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            return match slowlink::raw_send(&to, bytes) {
                Ok(secs) => {
                    println!("{secs}");
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("raw transfer failed: {e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let num = |name: &str, default: u64| {
        arg(&args, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let link = Link {
        rate: arg(&args, "--rate").unwrap_or_else(|| "64kbit".into()),
        loss_percent: num("--loss", 30) as u32,
        cut_every: Duration::from_secs(num("--cut-every", 60)),
        cut_for: Duration::from_secs(num("--cut-for", 5)),
    };
    let kib = num("--kib", 1024) as usize;
    if let Err(e) = slowlink::available() {
        eprintln!("coopsync-slowlink: skipped: {e}");
        return std::process::ExitCode::from(2);
    }
    match orchestrate(&link, kib) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("coopsync-slowlink: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn tablet_mode(args: &[String]) -> std::process::ExitCode {
    let get = |n: &str| arg(args, n).unwrap_or_default();
    let password = std::env::var("COOPSYNC_SLOWLINK_PASSWORD").unwrap_or_default();
    let kib: usize = get("--kib").parse().unwrap_or(64);
    match slowlink::tablet(&get("--server"), &get("--username"), &password, kib * 1024) {
        Ok(outcome) => {
            let json = serde_json::to_vec(&outcome).unwrap_or_default();
            if std::fs::write(get("--out"), json).is_err() {
                return std::process::ExitCode::FAILURE;
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tablet: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn orchestrate(link: &Link, kib: usize) -> Result<bool, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let server_bin = me.with_file_name("coopsync-cli");
    let server_bin = if server_bin.exists() {
        server_bin
    } else {
        me.with_file_name("coopsync")
    };
    let db = TestDb::create(coopsync_tests::Backend::Sqlite).ok_or("no SQLite")?;
    let dir = TempDir::new();
    coopsync_tests::process::user_add(
        &server_bin,
        &dir.path,
        &db.url,
        "slow.enum",
        PASSWORD,
        &["--role", "enumerator", "--province", "07"],
    )?;
    let mut ns = Namespace::create(link)?;
    let (server, addr) = coopsync_tests::process::serve(
        &server_bin,
        &dir.path,
        &db.url,
        &format!("{}:0", ns.host_ip),
    )?;
    let server = slowlink::KillOnDrop(server);
    let result = (|| -> Result<bool, String> {
        ns.start_cuts(link);
        let out = slowlink::outcome_path(&dir.path);
        let before = ns.counters();
        let status = ns
            .command(&me)
            .args([
                "tablet",
                "--server",
                &addr,
                "--username",
                "slow.enum",
                "--kib",
                &kib.to_string(),
            ])
            .arg("--out")
            .arg(&out)
            .env("COOPSYNC_SLOWLINK_PASSWORD", PASSWORD)
            .status()
            .map_err(|e| e.to_string())?;
        let after = ns.counters();
        if !status.success() {
            return Err(format!("the tablet did not finish: {status}"));
        }
        let outcome: TabletOutcome =
            serde_json::from_slice(&std::fs::read(&out).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        let identical = server_copy_matches(&addr, &outcome)?;
        let (held, quarantined) = held_and_quarantined(&db).map_err(|e| e.to_string())?;
        let sink = TcpListener::bind(format!("{}:0", ns.host_ip)).map_err(|e| e.to_string())?;
        let sink_addr = sink.local_addr().map_err(|e| e.to_string())?.to_string();
        slowlink::raw_sink(sink);
        let raw = ns
            .command(&me)
            .args([
                "raw",
                "--to",
                &sink_addr,
                "--bytes",
                &outcome.bytes_up.to_string(),
            ])
            .output()
            .map_err(|e| e.to_string())?;
        let raw_secs: f64 = String::from_utf8_lossy(&raw.stdout)
            .trim()
            .parse()
            .map_err(|_| "raw transfer failed".to_string())?;
        let wire = (after.0 - before.0) + (after.1 - before.1);
        println!(
            "slow link: {} each way, {} % loss each way, cut {} s every {} s",
            link.rate,
            link.loss_percent,
            link.cut_for.as_secs(),
            link.cut_every.as_secs()
        );
        println!("| figure | value |\n|---|---|");
        println!(
            "| changes (payload) | {} ({:.0} KiB) |",
            outcome.changes,
            outcome.payload_bytes as f64 / 1024.0
        );
        println!("| sync time | {:.0} s |", outcome.seconds);
        println!(
            "| raw transfer of the same {} KiB (16 KiB pieces) | {raw_secs:.0} s |",
            outcome.bytes_up / 1024
        );
        println!(
            "| sync / raw | {:.2}× |",
            outcome.seconds / raw_secs.max(0.001)
        );
        println!(
            "| HTTP bodies up / down | {:.0} / {:.0} KiB |",
            outcome.bytes_up as f64 / 1024.0,
            outcome.bytes_down as f64 / 1024.0
        );
        println!(
            "| bytes on the link (both ways, headers and retransmissions) / payload | {:.2} |",
            wire as f64 / outcome.payload_bytes as f64
        );
        println!(
            "| requests (failed) | {} ({}) |",
            outcome.requests, outcome.failed_requests
        );
        println!(
            "| acknowledged changes sent again | {} |",
            outcome.resent_acknowledged
        );
        println!("| changes held or quarantined on the server | {held} / {quarantined} |");
        println!("| server copy identical | {identical} |");
        Ok(identical && outcome.resent_acknowledged == 0 && held + quarantined == 0)
    })();
    drop(server);
    drop(ns);
    result
}

fn held_and_quarantined(db: &TestDb) -> diesel::QueryResult<(i64, i64)> {
    use coopsync::db::schema::{pending_changes, quarantine};
    use diesel::prelude::*;
    let mut c = db.connect();
    Ok((
        pending_changes::table.count().get_result(&mut c)?,
        quarantine::table.count().get_result(&mut c)?,
    ))
}

/// Signs in from outside the namespace as a new device, pulls everything, and compares
/// every document's heads with the tablet's.
fn server_copy_matches(addr: &str, outcome: &TabletOutcome) -> Result<bool, String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build(),
    );
    let mut fresh = coopsync_tests::tablet::Tablet::login(&agent, addr, "slow.enum", PASSWORD)?;
    fresh
        .client
        .sync(&mut fresh.transport)
        .map_err(|e| e.to_string())?;
    let mut same = fresh.client.docs().count() == outcome.heads.len();
    if !same {
        eprintln!(
            "documents: server {}, tablet {}",
            fresh.client.docs().count(),
            outcome.heads.len()
        );
    }
    for (id, heads) in &outcome.heads {
        let mut theirs: Vec<String> = fresh
            .client
            .doc(id)
            .map(|d| d.get_heads().iter().map(|h| h.to_string()).collect())
            .unwrap_or_default();
        theirs.sort();
        if &theirs != heads {
            eprintln!("{id}: server {theirs:?}, tablet {heads:?}");
            same = false;
        }
    }
    Ok(same)
}
