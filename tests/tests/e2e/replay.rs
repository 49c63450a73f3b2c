//! Replay storm: the same batch sent 2–5 times at once, again after a server restart,
//! again in sequence, and again by a client that never saw its acknowledgements; every
//! change is stored exactly once and the projection does not move.

use coopsync::db::schema::{
    attendance, changes, conflicts, cooperatives, documents, members, pending_changes, quarantine,
    training_sessions, validation_flags,
};
use coopsync_tests::{Backend, TestApp, notice, tablet::HttpTransport, tablet::Tablet};
use diesel::prelude::*;
use serde_json::Value;
use sync_protocol::{PROTOCOL_VERSION, messages::SyncRequest};

/// Row counts of every table a push writes to.
fn counts(app: &TestApp) -> [i64; 10] {
    let mut c = app.db.connect();
    [
        changes::table.count().get_result(&mut c).unwrap(),
        documents::table.count().get_result(&mut c).unwrap(),
        cooperatives::table.count().get_result(&mut c).unwrap(),
        members::table.count().get_result(&mut c).unwrap(),
        training_sessions::table.count().get_result(&mut c).unwrap(),
        attendance::table.count().get_result(&mut c).unwrap(),
        conflicts::table.count().get_result(&mut c).unwrap(),
        validation_flags::table.count().get_result(&mut c).unwrap(),
        pending_changes::table.count().get_result(&mut c).unwrap(),
        quarantine::table.count().get_result(&mut c).unwrap(),
    ]
}

/// Sends `copies` copies of `request` at the same moment, each on its own connection;
/// returns the summed (applied, duplicates).
fn storm(app: &TestApp, token: &str, request: &SyncRequest, copies: usize) -> (u64, u64) {
    let barrier = std::sync::Barrier::new(copies);
    let responses: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..copies)
            .map(|_| {
                let (agent, addr, barrier) = (app.agent.clone(), app.addr.clone(), &barrier);
                scope.spawn(move || {
                    let mut transport = HttpTransport::to(agent, &addr, token);
                    barrier.wait();
                    transport.post(request)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (mut applied, mut duplicates) = (0, 0);
    for (status, body) in responses {
        assert_eq!(status, 200, "{body}");
        for doc in body["push"].as_array().unwrap() {
            assert!(
                doc["errors"].as_array().is_none_or(|e| e.is_empty()),
                "{body}"
            );
            assert!(doc["pending"].as_array().is_none_or(|p| p.is_empty()));
            applied += doc["applied"].as_u64().unwrap();
            duplicates += doc["duplicates"].as_u64().unwrap();
        }
    }
    (applied, duplicates)
}

fn replays_store_every_change_exactly_once(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend) else {
        notice("replay storm skipped: backend unavailable");
        return;
    };
    app.create_user("enum07", "enumerator", &["07"], &[]);
    let mut tablet = Tablet::new(&app, "enum07");
    let token = tablet.session.access.clone();
    let mut batches: Vec<(SyncRequest, u64)> = Vec::new();
    for copies in 2..=5 {
        let coop = tablet.create_cooperative("07", &format!("Replay {copies}"));
        let member = tablet.add_member(&coop, "Srey Pov", "female");
        let session = tablet.create_session("07", &coop);
        tablet.record_attendance(&session, "p1", Some(&member), 6.0);
        tablet.record_attendance(&session, "p2", None, 2.0);
        let ours = [&coop, &member, &session];
        let push: Vec<_> = tablet
            .client
            .undelivered_batches()
            .concat()
            .into_iter()
            .filter(|g| ours.contains(&&g.doc_id))
            .collect();
        let n: u64 = push.iter().map(|g| g.changes.len() as u64).sum();
        let request = SyncRequest {
            protocol_version: PROTOCOL_VERSION,
            encoding: tablet.client.encoding,
            push,
            pull: false,
            ..SyncRequest::default()
        };
        let (applied, duplicates) = storm(&app, &token, &request, copies);
        assert_eq!(
            applied, n,
            "{copies} concurrent copies: each change applied once"
        );
        assert_eq!(duplicates, n * (copies as u64 - 1));
        batches.push((request, n));
    }
    let total: u64 = batches.iter().map(|(_, n)| n).sum();
    let before = counts(&app);
    assert_eq!(
        before[0] as u64, total,
        "the change log holds each change once"
    );
    assert_eq!(&before[2..6], &[4, 4, 4, 8], "one row per record");

    app.restart();
    for (i, (request, n)) in batches.iter().enumerate() {
        let copies = 2 + i % 4;
        assert_eq!(storm(&app, &token, request, copies), (0, n * copies as u64));
        let mut transport = HttpTransport::new(&app, &token);
        for _ in 0..3 {
            let (status, body) = transport.post(request);
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["push"][0]["applied"], 0, "{body}");
        }
    }
    assert_eq!(
        counts(&app),
        before,
        "nothing moved after restart and replays"
    );

    // The tablet never saw an acknowledgement for any of it (they went to other
    // connections): its own sync sends everything again.
    tablet.transport = HttpTransport::new(&app, &token);
    let report = tablet.sync();
    assert!(report.pushed as u64 >= total, "{report:?}");
    assert_eq!(report.rejected, 0);
    assert_eq!(
        counts(&app),
        before,
        "a lost-ack replay by the client stores nothing"
    );
}

#[test]
fn sqlite_replays_store_every_change_exactly_once() {
    replays_store_every_change_exactly_once(Backend::Sqlite);
}

#[test]
fn postgres_replays_store_every_change_exactly_once() {
    replays_store_every_change_exactly_once(Backend::Postgres);
}
