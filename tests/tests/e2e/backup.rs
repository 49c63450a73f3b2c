//! The restore drill: `coopsync backup` while tablets push, a fresh server on the copy,
//! `projection rebuild`, every change acknowledged before the backup present, and the
//! tablets then sync against the restored server and converge. A tablet whose changes
//! were acknowledged after the backup is told the server was restored (`pull.resync`)
//! and pushes them again.

use std::{collections::BTreeSet, path::Path, process::Command};

use coopsync::{config::Secret, db::ConnectionFactory, db::schema::changes};
use coopsync_tests::{Backend, TempDir, TestApp, notice, tablet::Tablet};
use diesel::prelude::*;

fn hashes(conn: &mut coopsync::db::DbConnection) -> BTreeSet<String> {
    changes::table
        .select(changes::hash)
        .load::<String>(conn)
        .unwrap()
        .into_iter()
        .collect()
}

#[test]
fn a_backup_taken_while_tablets_push_restores_and_the_tablets_converge() {
    let Some(live) = TestApp::spawn(Backend::Sqlite) else {
        return;
    };
    live.create_user("field.a", "enumerator", &["07"], &[]);
    live.create_user("field.b", "enumerator", &["07"], &[]);
    let mut a = Tablet::new(&live, "field.a");
    let mut b = Tablet::new(&live, "field.b");
    let coop = a.create_cooperative("07", "Backed up");
    for i in 0..5 {
        a.add_member(&coop, &format!("Before {i}"), "female");
    }
    a.sync();
    b.sync();

    let dir = TempDir::new();
    let copy = dir.path.join("backup.db");
    let bin = Path::new(env!("CARGO_BIN_EXE_coopsync-cli"));
    let acknowledged_before = hashes(&mut live.db.connect());
    // The backup runs while tablet a keeps pushing.
    let output = std::thread::scope(|s| {
        let pusher = s.spawn(|| {
            for i in 0..20 {
                a.add_member(&coop, &format!("During {i}"), "male");
                a.sync();
            }
        });
        let output = Command::new(bin)
            .args(["backup", "--out"])
            .arg(&copy)
            .env("COOPSYNC_DATABASE_URL", &live.db.url)
            .env("COOPSYNC_LOG", "warn")
            .output()
            .unwrap();
        pusher.join().unwrap();
        output
    });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Acknowledged after the backup: the restored server cannot have these.
    for i in 0..5 {
        a.add_member(&coop, &format!("After {i}"), "female");
    }
    a.sync();
    let everything_live = hashes(&mut live.db.connect());
    drop(live);

    let url = copy.display().to_string();
    let restored = TestApp::spawn_with(Backend::Sqlite, |s| s.database_url = Secret::new(&url))
        .expect("a server on the backup");
    let mut conn = ConnectionFactory::new(&url).connect().unwrap();
    let report = coopsync::records::projection::rebuild(&mut conn, |_, _| {}).unwrap();
    assert!(report.skipped.is_empty() && report.from_snapshot.is_empty());
    let in_copy = hashes(&mut conn);
    let missing: Vec<&String> = acknowledged_before.difference(&in_copy).collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, missing: {missing:?}"
    );
    let lacking = everything_live.difference(&in_copy).count();
    assert!(
        lacking >= 5,
        "the copy predates the last pushes ({lacking} missing)"
    );

    // The tablets move to the restored server (same accounts, keys and devices).
    for t in [&mut a, &mut b] {
        t.transport.url = format!("{}/api/v1/sync", restored.addr);
    }
    let ra = a.sync();
    let rb = b.sync();
    notice(&format!(
        "restore drill: backup of {} changes, {lacking} acknowledged after it; tablet a resynced {}x and pushed {} changes again; tablet b pulled {}",
        in_copy.len(),
        ra.resyncs,
        ra.pushed,
        rb.pulled
    ));
    assert!(ra.resyncs >= 1, "{ra:?}");
    assert_eq!(
        hashes(&mut conn),
        everything_live,
        "the restored server has every change again"
    );
    let ids_a: BTreeSet<String> = a.client.docs().map(|(id, _)| id.clone()).collect();
    let ids_b: BTreeSet<String> = b.client.docs().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids_a, ids_b);
    for id in &ids_a {
        assert_eq!(a.heads(id), b.heads(id), "{id}");
    }
}
