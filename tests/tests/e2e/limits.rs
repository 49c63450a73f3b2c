//! Body limits, content types, encodings and the body read timeout.

use std::io::{Read, Write};

use coopsync_tests::{Backend, TestApp};

fn post_raw(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let r = app.post_bytes(path, headers, &body);
    (r.status, r.body)
}

#[test]
fn oversized_malformed_and_mislabelled_bodies_get_their_codes() {
    let Some(app) = TestApp::spawn(Backend::Sqlite) else {
        return;
    };
    let login = "/api/v1/auth/login";
    let json = [("content-type", "application/json")];
    let big = format!("{{\"username\": \"{}\"}}", "a".repeat(70 * 1024)).into_bytes();
    let (s, b) = post_raw(&app, login, &json, big.clone());
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (s, b) = post_raw(
        &app,
        login,
        &[("content-type", "text/plain")],
        b"{}".to_vec(),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let (s, b) = post_raw(
        &app,
        login,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "br"),
        ],
        b"{}".to_vec(),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes();
    let (s, b) = post_raw(&app, login, &json, deep);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    // A small gzip body that inflates past the limit.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![b' '; 4 * 1024 * 1024]).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 64 * 1024);
    let (s, b) = post_raw(
        &app,
        login,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        bomb,
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    // A gzip body within the limit is accepted and parsed.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(br#"{"username":"x","password":"y","device_id":"bad","device_name":"z"}"#)
        .unwrap();
    let (s, b) = post_raw(
        &app,
        login,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        enc.finish().unwrap(),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (422, Some("validation_failed"))
    );
}

fn raw_exchange(addr: &str, request: &[u8], stall_after: Option<usize>) -> String {
    let host = addr.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    match stall_after {
        Some(n) => stream.write_all(&request[..n]).unwrap(),
        None => stream.write_all(request).unwrap(),
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

#[test]
fn a_body_that_stalls_gets_408_and_a_chunked_oversized_body_413() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| s.body_read_timeout_secs = 1) else {
        return;
    };
    let body = br#"{"username":"x","password":"y","device_id":"d","device_name":"n"}"#;
    let request = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut full = request.clone().into_bytes();
    full.extend_from_slice(body);
    let response = raw_exchange(&app.addr, &full, Some(request.len() + 10));
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("request_timeout"), "{response}");
    // Chunked, no Content-Length: the limit still holds while streaming.
    let mut chunked = b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..80 {
        chunked.extend_from_slice(format!("{:x}\r\n", 1024).as_bytes());
        chunked.extend_from_slice(&[b' '; 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let response = raw_exchange(&app.addr, &chunked, None);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
}

/// A JSON body of exactly `size` bytes: an empty object padded with spaces.
fn padded(size: usize) -> Vec<u8> {
    let mut body = b"{}".to_vec();
    body.resize(size, b' ');
    body
}

fn chunked_request(path: &str, token: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for piece in body.chunks(16 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// Every operation with a request body (read from the OpenAPI document, so a new one
/// is covered without editing this test) at its limit − 1, limit and limit + 1 bytes,
/// with a Content-Length and chunked: only limit + 1 is refused, always with 413.
#[test]
fn every_body_at_limit_minus_one_limit_and_limit_plus_one() {
    // Import uploads have their own limit (32 MiB by default), made small here.
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| s.import_file_limit = 256 * 1024)
    else {
        return;
    };
    let nat = app.create_user("nat", "national_admin", &[], &[]);
    let token = app.login("nat").access;
    let doc = app.get("/api/v1/openapi.json", None).body;
    let mut checked = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("requestBody").is_none() {
                continue;
            }
            let path = path.replace("{id}", &nat).replace("{kind}", "members");
            let limit = if path.ends_with("/sync") {
                app.settings.sync_body_limit
            } else if path.starts_with("/api/v1/imports/") {
                app.settings.import_file_limit
            } else {
                app.settings.json_body_limit
            };
            for size in [limit - 1, limit, limit + 1] {
                let body = padded(size);
                let auth = format!("Bearer {token}");
                let mut req = match method.as_str() {
                    "post" => app.agent.post(app.url(&path)),
                    "put" => app.agent.put(app.url(&path)),
                    "patch" => app.agent.patch(app.url(&path)),
                    other => panic!("{other} with a body"),
                };
                req = req
                    .header("authorization", &auth)
                    .header("content-type", "application/json");
                let with_length = req.send(&body[..]).expect("answered").status().as_u16();
                let chunked = if method == "post" {
                    status_of(&raw_exchange(
                        &app.addr,
                        &chunked_request(&path, &token, &body),
                        None,
                    ))
                } else {
                    with_length
                };
                for (how, status) in [("Content-Length", with_length), ("chunked", chunked)] {
                    if size > limit {
                        assert_eq!(status, 413, "{method} {path} {size} B ({how})");
                    } else {
                        assert!(
                            status != 413 && status < 500,
                            "{method} {path} {size} B ({how}): {status}"
                        );
                    }
                }
            }
            checked.push(format!("{method} {path}"));
        }
    }
    assert!(checked.len() >= 7, "{checked:?}");
    coopsync_tests::notice(&format!(
        "body limits: {} operations × (limit−1, limit, limit+1) × (Content-Length, chunked)",
        checked.len()
    ));
}

/// A sync body whose gzip inflates to exactly the decompressed limit is read; one byte
/// more is 413. 2,000 headers or a 1 MiB header get 431 (actix-http's header buffer bound), not a hang.
#[test]
fn inflated_sync_bodies_and_header_floods_get_their_documented_status() {
    let Some(app) = TestApp::spawn(Backend::Sqlite) else {
        return;
    };
    app.create_user("nat", "national_admin", &[], &[]);
    let token = app.login("nat").access;
    let limit = app.settings.sync_decompressed_limit;
    let auth = format!("Bearer {token}");
    for (size, expect_413) in [(limit, false), (limit + 1, true)] {
        let mut body = br#"{"protocol_version":1,"pull":false}"#.to_vec();
        body.resize(size, b' ');
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&body).unwrap();
        let (status, body) = post_raw(
            &app,
            "/api/v1/sync",
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            enc.finish().unwrap(),
        );
        if expect_413 {
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (413, Some("payload_too_large"))
            );
        } else {
            assert_eq!(status, 200, "{body}");
        }
    }
    let mut many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..2000 {
        many.extend_from_slice(format!("X-Filler-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let response = raw_exchange(&app.addr, &many, None);
    assert_eq!(status_of(&response), 431, "2,000 headers: {response}");
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    let response = raw_exchange(&app.addr, huge.as_bytes(), None);
    assert_eq!(status_of(&response), 431, "a 1 MiB header: {response}");
    assert_eq!(app.get("/healthz", None).status, 200);
}
