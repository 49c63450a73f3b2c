//! Crash safety: tablets sync continuously while the real server process is killed with
//! SIGKILL at random moments and restarted. Afterwards every change a tablet holds (so
//! every change the server ever acknowledged) is in the change log exactly once, every
//! tablet converges with the server, and the projection equals a rebuild from the log
//! (no push was half applied). Kills: `COOPSYNC_CRASH_KILLS` (default 50). The same loop
//! with SIGTERM checks graceful shutdown during uploads (`COOPSYNC_TERM_STOPS`, default 10).

use std::{
    path::Path,
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use coopsync_tests::{Backend, PASSWORD, TempDir, TestDb, tablet::Tablet};
use diesel::prelude::*;

const TABLETS: usize = 3;

/// Starts a server and waits until it answers: it says "listening" once bound, a moment
/// before its signal handlers are installed, and a SIGTERM in between is the default
/// action (killed), not the graceful stop this test is about.
fn spawn_server(bin: &str, dir: &TempDir, url: &str, bind: &str) -> (Child, String) {
    let (child, addr) =
        coopsync_tests::process::serve(Path::new(bin), &dir.path, url, bind).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ureq::get(format!("{addr}/healthz")).call().is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not answer"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, addr)
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    Kill,
    Term,
}

fn crash_loop(backend: Backend, how: Stop) {
    let Some(db) = TestDb::create(backend) else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_coopsync-cli");
    let dir = TempDir::new();
    for i in 0..TABLETS {
        let user = format!("crash{i}");
        let scope = ["--role", "enumerator", "--province", "07"];
        coopsync_tests::process::user_add(
            Path::new(bin),
            &dir.path,
            &db.url,
            &user,
            PASSWORD,
            &scope,
        )
        .unwrap();
    }
    let (first, addr) = spawn_server(bin, &dir, &db.url, "127.0.0.1:0");
    let bind = addr.trim_start_matches("http://").to_string();
    let server = Arc::new(std::sync::Mutex::new(first));
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build(),
    );
    let mut tablets: Vec<Tablet> = (0..TABLETS)
        .map(|i| Tablet::login(&agent, &addr, &format!("crash{i}"), PASSWORD).unwrap())
        .collect();
    let coop = tablets[0].create_cooperative("07", "Crash");
    let sessions: Vec<String> = tablets
        .iter_mut()
        .map(|t| t.create_session("07", &coop))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let (variable, default) = match how {
        Stop::Kill => ("COOPSYNC_CRASH_KILLS", 50),
        Stop::Term => ("COOPSYNC_TERM_STOPS", 10),
    };
    let kills: usize = std::env::var(variable)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    std::thread::scope(|s| {
        for (t, session) in tablets.iter_mut().zip(&sessions) {
            let stop = stop.clone();
            let acknowledged = acknowledged.clone();
            s.spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    t.record_attendance(
                        session,
                        &uuid::Uuid::new_v4().to_string(),
                        None,
                        f64::from(n % 6 + 1),
                    );
                    n += 1;
                    // A cut connection is an error; the changes stay undelivered and go
                    // again with the next sync.
                    if let Ok(report) = t.client.sync(&mut t.transport) {
                        acknowledged.fetch_add(report.pushed as usize, Ordering::SeqCst);
                    } else {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            });
        }
        // The killer: SIGKILL at pseudo-random moments, restart on the same address. If it
        // fails (a restart that does not come up), the tablets must stop too: a panic here
        // then fails the test instead of leaving their threads retrying for ever.
        struct StopOnExit<'a>(&'a AtomicBool);
        impl Drop for StopOnExit<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop_tablets = StopOnExit(&stop);
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..kills {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            std::thread::sleep(Duration::from_millis(30 + state % 250));
            let mut guard = server.lock().unwrap();
            match how {
                Stop::Kill => guard.kill().unwrap(),
                Stop::Term => {
                    // Graceful: in-flight requests finish (or are never acknowledged).
                    let term = Command::new("kill")
                        .args(["-TERM", &guard.id().to_string()])
                        .status()
                        .unwrap();
                    assert!(term.success());
                }
            }
            let status = guard.wait().unwrap();
            if let Stop::Term = how {
                assert!(status.success(), "graceful stop exits 0: {status:?}");
            }
            let (next, _) = spawn_server(bin, &dir, &db.url, &bind);
            *guard = next;
        }
        stop.store(true, Ordering::SeqCst);
    });
    // Server up: every tablet finishes its sync.
    for t in tablets.iter_mut() {
        t.sync();
        t.sync();
    }
    use coopsync::db::schema::changes;
    let mut conn = db.connect();
    let logged: std::collections::HashSet<String> = changes::table
        .select(changes::hash)
        .load::<String>(&mut conn)
        .unwrap()
        .into_iter()
        .collect();
    let mut local = 0usize;
    for t in &tablets {
        for (_, (_, doc)) in t.client.docs() {
            for c in doc.get_changes(&[]) {
                local += 1;
                assert!(
                    logged.contains(&c.hash().to_string()),
                    "a change the tablet holds is missing from the log"
                );
            }
        }
    }
    assert!(
        local >= logged.len(),
        "every logged change reached the tablets that share it"
    );
    for (t, session) in tablets.iter().zip(&sessions) {
        let entries =
            sync_protocol::documents::TrainingSession::read(t.client.doc(session).unwrap())
                .0
                .attendance
                .len() as i64;
        let rows = crate::sync::attendance_rows(&mut conn, session);
        assert_eq!(
            rows, entries,
            "projection of a session lost or half applied"
        );
        for other in &tablets {
            assert_eq!(other.heads(session), t.heads(session), "tablets converge");
        }
    }
    let acked = acknowledged.load(Ordering::SeqCst);
    assert!(
        acked > kills / 2,
        "tablets kept syncing through the kills: {acked} changes acknowledged"
    );
    coopsync_tests::notice(&format!(
        "crash safety ({backend:?}, {how:?}): {kills} stops, {acked} changes acknowledged meanwhile, {} in the log, 0 lost",
        logged.len()
    ));
    let _ = server.lock().map(|mut s| {
        let _ = s.kill();
        let _ = s.wait();
    });
}

#[test]
fn sqlite_sigkill_loses_no_acknowledged_change() {
    crash_loop(Backend::Sqlite, Stop::Kill);
}

#[test]
fn postgres_sigkill_loses_no_acknowledged_change() {
    crash_loop(Backend::Postgres, Stop::Kill);
}

#[test]
fn sqlite_sigterm_during_uploads_loses_nothing_and_tablets_resume() {
    crash_loop(Backend::Sqlite, Stop::Term);
}

#[test]
fn postgres_sigterm_during_uploads_loses_nothing_and_tablets_resume() {
    crash_loop(Backend::Postgres, Stop::Term);
}
