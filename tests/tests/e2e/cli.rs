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
