//! The fuzz targets' inputs kept in `fuzz/fixtures/` (crashes the fuzzers found, and real
//! tablet uploads as seeds) replayed as ordinary tests: through the function the fuzz
//! targets call, and as request bodies to a real server. Also a proptest smoke run of the
//! change_apply target, so every CI run fuzzes a little on stable Rust.

use std::path::PathBuf;

use automerge::Automerge;
use coopsync::sync::ingest::verify_and_apply;
use coopsync_tests::{TestApp, dual_backend_tests, notice};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};
use sync_protocol::{
    PROTOCOL_VERSION,
    chunk::split_and_seal,
    client::SyncClient,
    documents::{AttendanceEntry, DocType, Member, TrainingSession},
    messages::{ChangeEncoding, DocChanges, SyncRequest},
};

fn fixtures(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/fixtures")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .filter(|(name, _)| !name.starts_with('.') && name != "README.md")
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
    out
}

/// What the change_apply target does; panics (fails the test) where the target would.
fn change_apply(data: &[u8]) -> (Vec<String>, usize) {
    let encoded: Vec<String> = split_and_seal(data).iter().map(hex::encode).collect();
    let (doc, applied) = verify_and_apply(&Automerge::new(), &encoded, ChangeEncoding::Hex);
    let loaded = Automerge::load(&doc.save()).expect("the result loads");
    let (mut a, mut b) = (doc.get_heads(), loaded.get_heads());
    a.sort();
    b.sort();
    assert_eq!(a, b, "the result loads with the same heads");
    (encoded, applied)
}

fn post_raw(app: &TestApp, token: &str, body: &[u8]) -> u16 {
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    app.post_bytes("/api/v1/sync", &headers, body).status
}

fn fuzz_fixtures_replay_without_panics_or_server_errors(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    let token = app.login("nat").access;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for (name, body) in fixtures("sync_request") {
        if let Ok(request) = serde_json::from_slice::<SyncRequest>(&body) {
            for group in &request.push {
                verify_and_apply(&Automerge::new(), &group.changes, request.encoding);
            }
        }
        let status = post_raw(app, &token, &body);
        assert!(status < 500, "{name}: HTTP {status}");
        *statuses.entry(status).or_default() += 1;
    }
    for (name, data) in fixtures("change_apply") {
        let (encoded, applied) = change_apply(&data);
        let request = SyncRequest {
            protocol_version: PROTOCOL_VERSION,
            encoding: ChangeEncoding::Hex,
            push: vec![DocChanges {
                doc_id: uuid::Uuid::new_v4().to_string(),
                doc_type: "member".into(),
                changes: encoded,
            }],
            pull: false,
            ..SyncRequest::default()
        };
        let status = post_raw(app, &token, &serde_json::to_vec(&request).unwrap());
        assert!(
            status < 500,
            "{name}: HTTP {status} ({applied} applied in-process)"
        );
        *statuses.entry(status).or_default() += 1;
    }
    assert_eq!(app.get("/readyz", None).status, 200);
    notice(&format!("fuzz fixtures replayed: statuses {statuses:?}"));
}

dual_backend_tests!(fuzz_fixtures_replay_without_panics_or_server_errors);

/// A member and a training session with attendance, as one tablet records them.
fn real_histories() -> Vec<Vec<u8>> {
    let mut client = SyncClient::new();
    let member = client
        .create(DocType::Member, |tx| {
            Member {
                cooperative_id: Some(uuid::Uuid::new_v4().to_string()),
                full_name_khmer: Some("សុខ ដារា".into()),
                sex: Some("female".into()),
                year_of_birth: Some(1984),
                role: Some("member".into()),
                ..Member::default()
            }
            .write(tx, true)
        })
        .unwrap();
    let session = client
        .create(DocType::TrainingSession, |tx| {
            TrainingSession {
                programme: Some("think_coop".into()),
                planned_hours: Some(6.0),
                ..TrainingSession::default()
            }
            .write(tx, true)
        })
        .unwrap();
    for i in 0..3 {
        let entry = AttendanceEntry {
            member_id: Some(member.clone()),
            hours: Some(f64::from(i) + 1.0),
            ..AttendanceEntry::default()
        };
        client
            .edit(&session, |tx| {
                TrainingSession::write_attendance(tx, &format!("p{i}"), &entry)
            })
            .unwrap();
    }
    client
        .docs()
        .map(|(_, (_, doc))| {
            doc.get_changes(&[])
                .iter()
                .flat_map(|c| c.raw_bytes().to_vec())
                .collect()
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

#[test]
fn change_apply_survives_random_mutations_of_real_histories() {
    let histories = real_histories();
    let cases = std::env::var("COOPSYNC_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mutation = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ];
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let applied_any = std::cell::Cell::new(0usize);
    runner
        .run(
            &(0..histories.len(), prop::collection::vec(mutation, 1..6)),
            |(which, mutations)| {
                let mut data = histories[which].clone();
                for m in mutations {
                    let len = data.len().max(1);
                    match m {
                        Mutation::Set(i, b) if !data.is_empty() => data[i % len] = b,
                        Mutation::Insert(i, b) => data.insert(i % (data.len() + 1), b),
                        Mutation::Remove(i) if !data.is_empty() => {
                            data.remove(i % len);
                        }
                        Mutation::Truncate(i) => data.truncate(i % len),
                        _ => {}
                    }
                }
                let (_, applied) = change_apply(&data);
                applied_any.set(applied_any.get() + applied);
                Ok(())
            },
        )
        .unwrap();
    // Mutations land in one change of several; the others still apply, which shows the
    // inputs reached automerge rather than stopping at the checksum.
    assert!(applied_any.get() > 0);
    notice(&format!(
        "change_apply proptest smoke: {cases} mutated histories, {} changes applied, 0 panics",
        applied_any.get()
    ));
}
