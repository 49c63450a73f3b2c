//! The real `coopsync` program (its `cli::main`, built as `coopsync-cli`): `user add` reading the password from stdin, `migrate`,
//! and `serve` on the SQLite default, then sign-in over HTTP.

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Command, Stdio},
};

use coopsync_tests::{PASSWORD, TempDir};

/// The `coopsync` program, built by cargo for this crate (see src/bin/coopsync-cli.rs).
fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coopsync-cli"))
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn user_add_then_serve_then_login_on_the_sqlite_default() {
    let dir = TempDir::new();
    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(binary())
            .args(args)
            .current_dir(&dir.path)
            .env_remove("DATABASE_URL")
            .env_remove("COOPSYNC_DATABASE_URL")
            .env("COOPSYNC_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let migrate = run(&["migrate"], "");
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    assert!(String::from_utf8_lossy(&migrate.stderr).contains("applied"));
    let out = run(
        &[
            "user",
            "add",
            "--username",
            "first.admin",
            "--role",
            "national_admin",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("created user first.admin (national_admin)")
    );
    assert!(
        dir.path.join("coopsync.db").exists(),
        "default database file not created"
    );
    let weak = run(
        &[
            "user",
            "add",
            "--username",
            "weak",
            "--role",
            "enumerator",
            "--password-stdin",
        ],
        "short\n",
    );
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("at least"));
    let dup = run(
        &[
            "user",
            "add",
            "--username",
            "first.admin",
            "--role",
            "enumerator",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already taken"));

    let mut server = Killed(
        Command::new(binary())
            .args(["serve", "--bind", "127.0.0.1:0"])
            .current_dir(&dir.path)
            .env_remove("DATABASE_URL")
            .env("COOPSYNC_LOG", "warn")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = server.0.stderr.take().unwrap();
    let mut addr = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            addr = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    let addr = addr.expect("server printed its address");
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let health = agent.get(format!("{addr}/healthz")).call().unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let login = agent
        .post(format!("{addr}/api/v1/auth/login"))
        .send_json(serde_json::json!({
            "username": "first.admin", "password": PASSWORD,
            "device_id": uuid::Uuid::new_v4().to_string(), "device_name": "laptop"
        }))
        .unwrap();
    assert_eq!(login.status().as_u16(), 200);
    // Rebuilding the projection from the change log reports progress and succeeds.
    let rebuild = run(&["projection", "rebuild"], "");
    assert!(
        rebuild.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuild.stderr)
    );
    assert!(
        String::from_utf8_lossy(&rebuild.stderr)
            .contains("projection rebuilt from the change log: 0 documents")
    );
    // SIGTERM: graceful stop with exit code 0.
    let pid = server.0.id();
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = server.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// Logs of a real server at debug level, through sign-in, refresh, a sync with names and
/// phone numbers, and a quarantined change, contain no password, token, password hash,
/// name or phone number.
#[test]
fn logs_never_contain_secrets_names_or_phone_numbers() {
    use coopsync_tests::tablet::Tablet;
    let dir = TempDir::new();
    let add = Command::new(binary())
        .args([
            "user",
            "add",
            "--username",
            "log.admin",
            "--role",
            "national_admin",
            "--password-stdin",
        ])
        .current_dir(&dir.path)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin
        .as_ref()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(add.wait_with_output().unwrap().status.success());
    let mut server = Killed(
        Command::new(binary())
            .args(["serve", "--bind", "127.0.0.1:0"])
            .current_dir(&dir.path)
            .env_remove("DATABASE_URL")
            .env("COOPSYNC_LOG", "debug")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = server.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx.recv().unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut t = Tablet::login(&agent, &addr, "log.admin", PASSWORD).unwrap();
    let refreshed = agent
        .post(format!("{addr}/api/v1/auth/refresh"))
        .send_json(serde_json::json!({"refresh_token": t.session.refresh}))
        .unwrap();
    assert_eq!(refreshed.status().as_u16(), 200);
    let wrong = agent
        .post(format!("{addr}/api/v1/auth/login"))
        .send_json(
            serde_json::json!({"username": "log.admin", "password": "Wrong-Secret-Zebra",
            "device_id": uuid::Uuid::new_v4().to_string(), "device_name": "x"}),
        )
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let coop = t.create_cooperative("07", "Zzcooperativename");
    let member = t.add_member(&coop, "Qqfarmername", "female");
    t.set(&member, "phone", "012 987 654");
    t.sync();
    // A change the server quarantines (a wrong document type) carrying the name too.
    let bytes: Vec<String> = t
        .client
        .doc(&member)
        .unwrap()
        .get_changes(&[])
        .iter()
        .map(|c| hex::encode(c.raw_bytes()))
        .collect();
    let mut bad = sync_protocol::messages::SyncRequest {
        protocol_version: 1,
        push: vec![sync_protocol::messages::DocChanges {
            doc_id: member.clone(),
            doc_type: "cooperative".into(),
            changes: bytes,
        }],
        ..Default::default()
    };
    bad.encoding = sync_protocol::messages::ChangeEncoding::Hex;
    assert_eq!(t.transport.post(&bad).0, 200);
    let kill = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    server.0.wait().unwrap();
    let logs: Vec<String> = rx.try_iter().collect();
    let text = logs.join("\n");
    assert!(text.contains("request finished"), "the scan read real logs");
    // stderr is a pipe here, as under journald or a container runtime: no colour codes.
    assert!(!text.contains('\u{1b}'), "ANSI escape codes in a piped log");
    assert!(text.contains("sync"), "sync was logged");
    for secret in [
        PASSWORD,
        "Wrong-Secret-Zebra",
        "$argon2id",
        t.session.access.as_str(),
        t.session.refresh.as_str(),
        "Qqfarmername",
        "Zzcooperativename",
        "987 654",
        "987654",
    ] {
        assert!(!text.contains(secret), "logs contain `{secret}`");
    }
}
