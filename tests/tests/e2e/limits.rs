//! Body limits, content types, encodings and the body read timeout.

use std::io::{Read, Write};

use coopsync_tests::{Backend, TestApp};

fn post_raw(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut req = app.agent.post(app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send(&body[..]).expect("request");
    let status = resp.status().as_u16();
    let body = resp.into_body().read_to_vec().unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or_default())
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
