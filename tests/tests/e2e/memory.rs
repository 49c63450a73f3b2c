//! Memory under the largest bodies: 20 uploads at the body limit at once (uncompressed,
//! and gzip inflating to the decompressed limit) against a real server process; its peak
//! resident set is read from /proc and must stay under a stated bound.

use std::{path::Path, time::Duration};

use coopsync_tests::{Backend, PASSWORD, TempDir, TestDb, notice};

const UPLOADS: usize = 20;

/// A sync body of exactly `size` bytes holding one oversized "change" (hex), as a
/// broken or hostile client might send: it is read whole, then refused per change.
fn max_size_push(size: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"protocol_version":1,"encoding":"hex","pull":false,"push":[{{"doc_id":"{}","doc_type":"member","changes":[""#,
        uuid::Uuid::new_v4()
    );
    let tail = r#""]}]}"#;
    let mut body = head.into_bytes();
    let hex_len = (size - body.len() - tail.len()) & !1;
    body.extend(std::iter::repeat_n(b'a', hex_len));
    body.extend_from_slice(tail.as_bytes());
    body.resize(size, b' ');
    body
}

fn gzip_bomb(inflated: usize) -> Vec<u8> {
    use std::io::Write;
    let mut body = br#"{"protocol_version":1,"pull":false}"#.to_vec();
    body.resize(inflated, b' ');
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&body).unwrap();
    enc.finish().unwrap()
}

#[test]
fn twenty_maximum_size_uploads_at_once_keep_memory_bounded() {
    let Some(db) = TestDb::create(Backend::Sqlite) else {
        return;
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_coopsync-cli"));
    let dir = TempDir::new();
    // Five accounts, two devices each, two uploads per device: one account has at most 4
    // in flight (`uploads_per_account`), a device 2, and this test is about the body
    // budget under 20 at once.
    for i in 0..5 {
        coopsync_tests::process::user_add(
            bin,
            &dir.path,
            &db.url,
            &format!("mem.admin{i}"),
            PASSWORD,
            &["--role", "national_admin"],
        )
        .unwrap();
    }
    let (mut child, addr) = coopsync_tests::process::serve(bin, &dir.path, &db.url, "127.0.0.1:0")
        .expect("server starts");
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build(),
    );
    // Two devices per account: a device has at most 2 uploads in flight.
    let tokens: Vec<String> = (0..10)
        .map(|i| {
            let login: serde_json::Value = agent
                .post(format!("{addr}/api/v1/auth/login"))
                .send_json(
                    serde_json::json!({"username": format!("mem.admin{}", i % 5),
                    "password": PASSWORD,
                    "device_id": uuid::Uuid::new_v4().to_string(), "device_name": "mem"}),
                )
                .unwrap()
                .into_body()
                .read_json()
                .unwrap();
            login["access_token"].as_str().unwrap().to_string()
        })
        .collect();
    let idle = coopsync_tests::process::vm_hwm_mb(child.id());
    let settings = coopsync::config::Settings::default();
    let plain = max_size_push(settings.sync_body_limit);
    let bomb = gzip_bomb(settings.sync_decompressed_limit);
    let barrier = std::sync::Barrier::new(UPLOADS);
    let statuses: Vec<(u16, u16)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..UPLOADS)
            .map(|i| {
                let (agent, addr, token) = (agent.clone(), &addr, &tokens[i % 10]);
                let (plain, bomb, barrier) = (&plain, &bomb, &barrier);
                s.spawn(move || {
                    let post = |body: &[u8], gzip: bool| {
                        let mut req = agent
                            .post(format!("{addr}/api/v1/sync"))
                            .header("authorization", format!("Bearer {token}"))
                            .header("content-type", "application/json");
                        if gzip {
                            req = req.header("content-encoding", "gzip");
                        }
                        req.send(body).expect("answered").status().as_u16()
                    };
                    barrier.wait();
                    (post(plain, false), post(bomb, true))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let peak = coopsync_tests::process::vm_hwm_mb(child.id());
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(alive, "the server survived");
    // Plain bodies wait their turn in the budget and all get through; a gzip body that
    // inflates far past its guess gets more only if it is free, else 503 `server_busy`.
    let bombs_busy = statuses.iter().filter(|(_, b)| *b == 503).count();
    for (plain, bomb) in &statuses {
        assert_eq!(*plain, 200, "{statuses:?}");
        assert!(*bomb == 200 || *bomb == 503, "{statuses:?}");
    }
    assert!(
        bombs_busy < UPLOADS,
        "some inflating bodies got through: {statuses:?}"
    );
    notice(&format!(
        "{UPLOADS} concurrent {} MiB pushes then {} MiB gzip bodies: peak RSS {peak:.0} MB (idle {idle:.0} MB); {bombs_busy} inflating bodies told server_busy",
        settings.sync_body_limit >> 20,
        settings.sync_decompressed_limit >> 20,
    ));
    // The bound: the body budget twice (bodies, and the requests parsed from them) over
    // the idle server, plus working room; without the budget this run peaked at 346 MB.
    let bound = idle + 2.0 * settings.body_memory_budget as f64 / 1_048_576.0 + 48.0;
    assert!(peak < bound, "peak RSS {peak:.0} MB ≥ bound {bound:.0} MB");
}
