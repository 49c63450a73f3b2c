//! Running the `coopsync` program as a separate process: `user add` with the password on
//! stdin, and `serve` with the address it printed. Used by the crash, multi-server and
//! benchmark runs, which need a real process to kill, share or measure.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, Command, Stdio},
};

/// `coopsync user add` against `url`, run in `dir`; an error carries the exit status and
/// what the program printed.
pub fn user_add(
    bin: &Path,
    dir: &Path,
    url: &str,
    username: &str,
    password: &str,
    role_and_scope: &[&str],
) -> Result<(), String> {
    let mut child = Command::new(bin)
        .args(["user", "add", "--username", username, "--password-stdin"])
        .args(role_and_scope)
        .current_dir(dir)
        .env("COOPSYNC_DATABASE_URL", url)
        .env("COOPSYNC_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    writeln!(stdin, "{password}").map_err(|e| e.to_string())?;
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "user add {username}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `coopsync serve --bind BIND` against `url`; returns the process and the address it
/// printed (`http://…`). Its stderr keeps being drained so it never blocks on a full pipe.
pub fn serve(bin: &Path, dir: &Path, url: &str, bind: &str) -> Result<(Child, String), String> {
    let mut child = Command::new(bin)
        .args(["serve", "--bind", bind])
        .current_dir(dir)
        .env("COOPSYNC_DATABASE_URL", url)
        .env("COOPSYNC_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let addr = lines.by_ref().map_while(Result::ok).find_map(|l| {
        l.split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string)
    });
    std::thread::spawn(move || for _ in lines {});
    match addr {
        Some(addr) => Ok((child, addr)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err("the server exited before listening".into())
        }
    }
}

/// A process's peak resident set (`VmHWM`), in MB; 0 if it cannot be read.
pub fn vm_hwm_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
