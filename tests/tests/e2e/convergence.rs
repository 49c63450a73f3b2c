//! Property test: random edits on several tablets, delivered in random order with random
//! duplicate re-sends, interleaved with an admin's resolutions and corrections (server
//! changes), always converge — every tablet and the server end with the same heads — and
//! the incrementally maintained projection equals a rebuild from the log.
//! Also: many tablets writing one document at once lose nothing.

use base64::Engine as _;
use coopsync_tests::{TestApp, dual_backend_tests, tablet::Tablet};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};
use sync_protocol::{
    PROTOCOL_VERSION,
    messages::{DocChanges, SyncRequest},
};

#[derive(Debug, Clone)]
enum Step {
    SetLocation {
        tablet: usize,
        value: u8,
    },
    Attend {
        tablet: usize,
        participant: u8,
        hours: u8,
    },
    Sync {
        tablet: usize,
    },
    Resend {
        tablet: usize,
    },
    /// An admin resolves the session's oldest open conflict with one of its values.
    AdminResolve {
        choice: u8,
    },
    /// An admin corrects a field of the session (a server change).
    AdminEdit {
        value: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..3usize, 0..4u8).prop_map(|(tablet, value)| Step::SetLocation { tablet, value }),
        (0..3usize, 0..6u8, 1..8u8).prop_map(|(tablet, participant, hours)| Step::Attend {
            tablet,
            participant,
            hours
        }),
        (0..3usize).prop_map(|tablet| Step::Sync { tablet }),
        (0..3usize).prop_map(|tablet| Step::Resend { tablet }),
        (0..2u8).prop_map(|choice| Step::AdminResolve { choice }),
        (0..4u8).prop_map(|value| Step::AdminEdit { value }),
    ]
}

/// Pushes every change the tablet has, already delivered or not (a lost-ack replay).
fn resend_all(t: &mut Tablet, doc_id: &str) {
    let changes: Vec<String> = t
        .client
        .doc(doc_id)
        .unwrap()
        .get_changes(&[])
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c.raw_bytes()))
        .collect();
    let (status, body) = t.transport.post(&SyncRequest {
        protocol_version: PROTOCOL_VERSION,
        push: vec![DocChanges {
            doc_id: doc_id.into(),
            doc_type: "training_session".into(),
            changes,
        }],
        pull: false,
        ..SyncRequest::default()
    });
    assert_eq!(status, 200, "{body}");
    assert!(
        body["push"][0]["errors"]
            .as_array()
            .is_none_or(|e| e.is_empty()),
        "{body}"
    );
}

fn random_delivery_converges_and_matches_a_rebuild(app: &TestApp) {
    for name in ["tab0", "tab1", "tab2"] {
        app.create_user(name, "enumerator", &["07"], &[]);
    }
    app.create_user("prop.admin", "provincial_admin", &["07"], &[]);
    let admin = app.login("prop.admin");
    let tablets = std::cell::RefCell::new(vec![
        Tablet::new(app, "tab0"),
        Tablet::new(app, "tab1"),
        Tablet::new(app, "tab2"),
    ]);
    let cases = std::env::var("COOPSYNC_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(step(), 5..25), |steps| {
            let mut ts = tablets.borrow_mut();
            let coop = ts[0].create_cooperative("07", "Prop");
            let session = ts[0].create_session("07", &coop);
            for t in ts.iter_mut() {
                t.sync();
            }
            let participants: Vec<String> =
                (0..6).map(|_| uuid::Uuid::new_v4().to_string()).collect();
            for s in &steps {
                match s {
                    Step::SetLocation { tablet, value } => {
                        ts[*tablet].set(&session, "location", &format!("L{value}"))
                    }
                    Step::Attend {
                        tablet,
                        participant,
                        hours,
                    } => ts[*tablet].record_attendance(
                        &session,
                        &participants[*participant as usize],
                        None,
                        f64::from(*hours),
                    ),
                    Step::Sync { tablet } => {
                        ts[*tablet].sync();
                    }
                    Step::Resend { tablet } => resend_all(&mut ts[*tablet], &session),
                    Step::AdminResolve { choice } => {
                        let open = app.get(
                            &format!("/api/v1/conflicts?document_id={session}"),
                            Some(&admin.access),
                        );
                        if let Some(c) = open.body["conflicts"].as_array().and_then(|c| c.last()) {
                            let n = c["candidates"].as_array().map_or(1, Vec::len);
                            let r = app.post(
                                &format!("/api/v1/conflicts/{}/resolve", c["id"]),
                                Some(&admin.access),
                                &serde_json::json!({"choice": (*choice as usize) % n}),
                            );
                            prop_assert!(
                                r.status == 200 || r.code() == "unsupported_conflict",
                                "{}",
                                r.body
                            );
                        }
                    }
                    Step::AdminEdit { value } => {
                        let r = app.send(
                            "PATCH",
                            &format!("/api/v1/records/{session}"),
                            Some(&admin.access),
                            &serde_json::json!({"fields": {"location": format!("A{value}")}}),
                        );
                        // The same value again changes nothing: 409 `no_change`.
                        prop_assert!(r.status == 200 || r.code() == "no_change", "{}", r.body);
                    }
                }
            }
            for _ in 0..2 {
                for t in ts.iter_mut() {
                    t.sync();
                }
            }
            let heads = ts[0].heads(&session);
            for t in ts.iter() {
                prop_assert_eq!(&t.heads(&session), &heads);
            }
            let mut conn = app.db.connect();
            let row = coopsync::records::store::find_document(&mut conn, &session)
                .unwrap()
                .unwrap();
            let mut server_heads = automerge::Automerge::load(&row.snapshot)
                .unwrap()
                .get_heads();
            server_heads.sort();
            prop_assert_eq!(server_heads, heads);
            Ok(())
        })
        .unwrap();
    let open_conflicts = || {
        use coopsync::db::schema::conflicts;
        use diesel::prelude::*;
        conflicts::table
            .filter(conflicts::status.eq_any(["open", "resolved"]))
            .order((conflicts::document_id, conflicts::field, conflicts::status))
            .select((conflicts::document_id, conflicts::field, conflicts::status))
            .load::<(String, String, String)>(&mut app.db.connect())
            .unwrap()
    };
    let before = crate::sync::snapshot_projection(app);
    let conflicts_before = open_conflicts();
    let mut conn = app.db.connect();
    coopsync::records::projection::rebuild(&mut conn, |_, _| {}).unwrap();
    assert_eq!(crate::sync::snapshot_projection(app), before);
    assert_eq!(
        open_conflicts(),
        conflicts_before,
        "open and resolved conflicts survive a rebuild"
    );
}

/// Sixteen tablets write attendance into one session document at the same moment, over
/// several rounds; every acknowledged change is in the log and everyone converges.
fn sixteen_tablets_writing_one_document_at_once_lose_nothing(app: &TestApp) {
    let n = 16;
    for i in 0..n {
        app.create_user(&format!("crowd{i}"), "enumerator", &["07"], &[]);
    }
    let mut tablets: Vec<Tablet> = (0..n)
        .map(|i| Tablet::new(app, &format!("crowd{i}")))
        .collect();
    let coop = tablets[0].create_cooperative("07", "Crowd");
    let session = tablets[0].create_session("07", &coop);
    tablets[0].sync();
    for t in tablets.iter_mut() {
        t.sync();
    }
    let rounds = std::env::var("COOPSYNC_CONCURRENCY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let started = std::time::Instant::now();
    for round in 0..rounds {
        let session = session.as_str();
        std::thread::scope(|scope| {
            for t in tablets.iter_mut() {
                scope.spawn(move || {
                    let p = uuid::Uuid::new_v4().to_string();
                    t.record_attendance(session, &p, None, (round % 6 + 1) as f64);
                    t.sync();
                });
            }
        });
    }
    for t in tablets.iter_mut() {
        t.sync();
    }
    let heads = tablets[0].heads(&session);
    for t in &tablets {
        assert_eq!(t.heads(&session), heads);
    }
    let entries =
        sync_protocol::documents::TrainingSession::read(tablets[0].client.doc(&session).unwrap())
            .0
            .attendance
            .len();
    assert_eq!(entries, n * rounds);
    let mut conn = app.db.connect();
    let projected = crate::sync::attendance_rows(&mut conn, &session);
    assert_eq!(projected as usize, n * rounds);
    // Figures for docs/reliability.md when run at the long size.
    let busy: usize = tablets.iter().map(|t| t.transport.busy_retries).sum();
    eprintln!(
        "{n} tablets x {rounds} rounds on one document: {:.0} s, {busy} requests repeated after 503",
        started.elapsed().as_secs_f64()
    );
}

dual_backend_tests!(
    random_delivery_converges_and_matches_a_rebuild,
    sixteen_tablets_writing_one_document_at_once_lose_nothing,
);

/// Two server processes on one PostgreSQL database, as behind a load balancer: the
/// signing key is shared through the database, tablets alternate between the servers
/// while writing one session concurrently, and nothing is lost or duplicated.
#[test]
fn two_server_processes_on_one_postgresql_lose_nothing() {
    let Some(db) = coopsync_tests::TestDb::create(coopsync_tests::Backend::Postgres) else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_coopsync-cli");
    let dir = coopsync_tests::TempDir::new();
    let bin = std::path::Path::new(bin);
    for i in 0..6 {
        let scope = ["--role", "enumerator", "--province", "07"];
        coopsync_tests::process::user_add(
            bin,
            &dir.path,
            &db.url,
            &format!("lb{i}"),
            coopsync_tests::PASSWORD,
            &scope,
        )
        .unwrap();
    }
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let start = || {
        let (child, addr) =
            coopsync_tests::process::serve(bin, &dir.path, &db.url, "127.0.0.1:0").unwrap();
        (Server(child), addr)
    };
    let (_a, addr_a) = start();
    let (_b, addr_b) = start();
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    // Signed in on A, syncing through both: the token must be valid on B too.
    let mut tablets: Vec<Tablet> = (0..6)
        .map(|i| {
            Tablet::login(&agent, &addr_a, &format!("lb{i}"), coopsync_tests::PASSWORD).unwrap()
        })
        .collect();
    let coop = tablets[0].create_cooperative("07", "Load balanced");
    let session = tablets[0].create_session("07", &coop);
    tablets[0].sync();
    let transports = |t: &Tablet| {
        (
            coopsync_tests::tablet::HttpTransport::to(agent.clone(), &addr_a, &t.session.access),
            coopsync_tests::tablet::HttpTransport::to(agent.clone(), &addr_b, &t.session.access),
        )
    };
    let rounds = 4;
    for round in 0..rounds {
        let session = session.as_str();
        std::thread::scope(|s| {
            for (i, t) in tablets.iter_mut().enumerate() {
                let (mut via_a, mut via_b) = transports(t);
                s.spawn(move || {
                    // Each tablet alternates servers from round to round.
                    let transport = if (i + round) % 2 == 0 {
                        &mut via_a
                    } else {
                        &mut via_b
                    };
                    t.client.sync(transport).unwrap();
                    t.record_attendance(session, &uuid::Uuid::new_v4().to_string(), None, 6.0);
                    t.client.sync(transport).unwrap();
                });
            }
        });
    }
    for t in tablets.iter_mut() {
        let (mut via_a, mut via_b) = transports(t);
        t.client.sync(&mut via_b).unwrap();
        t.client.sync(&mut via_a).unwrap();
    }
    let heads = tablets[0].heads(&session);
    for t in &tablets {
        assert_eq!(t.heads(&session), heads);
    }
    let attendance =
        sync_protocol::documents::TrainingSession::read(tablets[0].client.doc(&session).unwrap())
            .0
            .attendance
            .len();
    assert_eq!(attendance, 6 * rounds);
    use coopsync::db::schema::changes;
    use diesel::prelude::*;
    let mut conn = db.connect();
    let rows: i64 = changes::table.count().get_result(&mut conn).unwrap();
    // 1 cooperative + 1 session creation + one attendance change per tablet per round.
    assert_eq!(
        rows,
        2 + 6 * rounds as i64,
        "hash and seq are unique columns, so the count is exact"
    );
}

/// Server changes from two server processes on one PostgreSQL writing the same document
/// at once: each process has its own actor, the document lock serialises the commits,
/// and each actor's sequence numbers on the document run 1, 2, 3 … without a gap or a
/// repeat; a tablet then converges on the result.
#[test]
fn two_server_processes_write_one_document_with_correct_sequence_numbers() {
    let Some(db) = coopsync_tests::TestDb::create(coopsync_tests::Backend::Postgres) else {
        return;
    };
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_coopsync-cli"));
    let dir = coopsync_tests::TempDir::new();
    for (user, role) in [("two.nat", "national_admin"), ("two.tab", "enumerator")] {
        let mut args = vec!["--role", role];
        if role == "enumerator" {
            args.extend(["--province", "07"]);
        }
        coopsync_tests::process::user_add(
            bin,
            &dir.path,
            &db.url,
            user,
            coopsync_tests::PASSWORD,
            &args,
        )
        .unwrap();
    }
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let start = || {
        let (child, addr) =
            coopsync_tests::process::serve(bin, &dir.path, &db.url, "127.0.0.1:0").unwrap();
        (Server(child), addr)
    };
    let (_a, addr_a) = start();
    let (_b, addr_b) = start();
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut tablet = Tablet::login(&agent, &addr_a, "two.tab", coopsync_tests::PASSWORD).unwrap();
    let coop = tablet.create_cooperative("07", "Written twice");
    tablet.sync();
    let admin = Tablet::login(&agent, &addr_a, "two.nat", coopsync_tests::PASSWORD).unwrap();
    let token = admin.session.access.clone();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (agent, coop, token) = (agent.clone(), &coop, &token);
                let addr = if i % 2 == 0 { &addr_a } else { &addr_b };
                s.spawn(move || {
                    (0..5)
                        .map(|j| {
                            agent
                                .patch(format!("{addr}/api/v1/records/{coop}"))
                                .header("authorization", format!("Bearer {token}"))
                                .send_json(
                                    serde_json::json!({"fields": {"village": format!("v{i}-{j}")}}),
                                )
                                .unwrap()
                                .status()
                                .as_u16()
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    use coopsync::db::schema::changes;
    use diesel::prelude::*;
    let mut conn = db.connect();
    let rows: Vec<(String, i64)> = changes::table
        .filter(changes::document_id.eq(&coop))
        .filter(changes::device_id.eq("server"))
        .order(changes::seq)
        .select((changes::actor, changes::actor_seq))
        .load(&mut conn)
        .unwrap();
    assert_eq!(rows.len(), 40);
    let mut by_actor: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for (actor, seq) in rows {
        by_actor.entry(actor).or_default().push(seq);
    }
    assert_eq!(by_actor.len(), 2, "one actor per server process");
    for (actor, seqs) in &by_actor {
        let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
        assert_eq!(seqs, &expected, "actor {actor}");
    }
    // A tablet converges on what the server holds.
    let mut via_b =
        coopsync_tests::tablet::HttpTransport::to(agent.clone(), &addr_b, &tablet.session.access);
    tablet.client.sync(&mut via_b).unwrap();
    let village = sync_protocol::documents::Cooperative::read(tablet.client.doc(&coop).unwrap())
        .0
        .village;
    let (projected,): (Option<String>,) = coopsync::db::schema::cooperatives::table
        .find(&coop)
        .select((coopsync::db::schema::cooperatives::village,))
        .first(&mut conn)
        .unwrap();
    assert_eq!(village, projected);
    assert!(village.is_some_and(|v| v.starts_with('v')));
}
