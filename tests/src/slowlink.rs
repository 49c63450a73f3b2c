//! A slow, lossy link: a network namespace joined to this one by a veth pair, shaped to
//! 64 kbit/s each way (`tc tbf`), 30 % of packets dropped each way (`nft numgen`), and
//! cut completely for 5 s every minute. One tablet inside it syncs a week of work to a
//! real server outside it; the figures are compared with a raw transfer of the same
//! bytes over the same link. Needs root, iproute2 and nftables (this kernel has no
//! netem). Used by `coopsync-slowlink` and the e2e test that runs it at CI size.

use std::{
    collections::{BTreeMap, HashSet},
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use sync_protocol::{
    chunk::verify_change_chunk,
    client::{SyncClient, Transport},
    messages::{SyncRequest, SyncResponse},
};

use crate::tablet::{HttpTransport, Tablet};

/// The shape of the link.
#[derive(Debug, Clone)]
pub struct Link {
    pub rate: String,
    pub loss_percent: u32,
    pub cut_every: Duration,
    pub cut_for: Duration,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            rate: "64kbit".into(),
            loss_percent: 30,
            cut_every: Duration::from_secs(60),
            cut_for: Duration::from_secs(5),
        }
    }
}

/// What the tablet reports when it is done.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TabletOutcome {
    pub payload_bytes: usize,
    pub changes: usize,
    pub bytes_up: usize,
    pub bytes_down: usize,
    pub requests: u64,
    pub failed_requests: u64,
    pub resent_acknowledged: u64,
    pub seconds: f64,
    pub heads: BTreeMap<String, Vec<String>>,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn sh(args: &[&str]) -> Result<(), String> {
    run(Command::new(args[0]).args(&args[1..]))
}

/// Whether this machine can build the link (root, ip, tc, nft).
pub fn available() -> Result<(), String> {
    for tool in ["ip", "tc", "nft"] {
        if Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err(format!("`{tool}` is not installed (iproute2, nftables)"));
        }
    }
    let probe = format!("cs-probe-{}", std::process::id());
    sh(&["ip", "netns", "add", &probe]).map_err(|e| format!("cannot create a netns: {e}"))?;
    let _ = sh(&["ip", "netns", "del", &probe]);
    Ok(())
}

/// The namespace and the veth pair; removed on drop.
pub struct Namespace {
    pub name: String,
    pub host_if: String,
    pub ns_if: String,
    pub host_ip: String,
    cut: Arc<AtomicBool>,
    cutter: Option<std::thread::JoinHandle<()>>,
}

impl Namespace {
    pub fn create(link: &Link) -> Result<Namespace, String> {
        let id = std::process::id() % 10_000;
        let subnet = 1 + id % 250;
        let ns = Namespace {
            name: format!("cs-slow-{id}"),
            host_if: format!("csh{id}"),
            ns_if: format!("csn{id}"),
            host_ip: format!("10.199.{subnet}.1"),
            cut: Arc::new(AtomicBool::new(false)),
            cutter: None,
        };
        let ns_ip = format!("10.199.{subnet}.2/30");
        let host_cidr = format!("{}/30", ns.host_ip);
        let (n, h, i) = (&ns.name, &ns.host_if, &ns.ns_if);
        sh(&["ip", "netns", "add", n])?;
        sh(&["ip", "link", "add", h, "type", "veth", "peer", "name", i])?;
        sh(&["ip", "link", "set", i, "netns", n])?;
        sh(&["ip", "addr", "add", &host_cidr, "dev", h])?;
        sh(&["ip", "link", "set", h, "up"])?;
        sh(&["ip", "-n", n, "addr", "add", &ns_ip, "dev", i])?;
        sh(&["ip", "-n", n, "link", "set", i, "up"])?;
        sh(&["ip", "-n", n, "link", "set", "lo", "up"])?;
        let tbf = |dev: &str, netns: Option<&str>| {
            let mut args = vec!["tc"];
            if let Some(netns) = netns {
                args = vec!["ip", "netns", "exec", netns, "tc"];
            }
            args.extend([
                "qdisc", "add", "dev", dev, "root", "tbf", "rate", &link.rate, "burst", "4kb",
                "latency", "500ms",
            ]);
            sh(&args)
        };
        tbf(h, None)?;
        tbf(i, Some(n))?;
        let rules = format!(
            "table inet slowlink {{\n\
             chain input {{ type filter hook input priority 0; policy accept; \
             iifname \"{i}\" numgen random mod 100 < {loss} drop; }}\n\
             chain output {{ type filter hook output priority 0; policy accept; \
             oifname \"{i}\" numgen random mod 100 < {loss} drop; }}\n}}\n",
            loss = link.loss_percent
        );
        nft(n, &rules)?;
        Ok(ns)
    }

    /// Cuts the link completely for `cut_for` every `cut_every` until dropped.
    pub fn start_cuts(&mut self, link: &Link) {
        let (ns, i, stop) = (self.name.clone(), self.ns_if.clone(), self.cut.clone());
        let (every, length) = (link.cut_every, link.cut_for);
        self.cutter = Some(std::thread::spawn(move || {
            let cut = format!(
                "table inet cut {{\n\
                 chain input {{ type filter hook input priority -10; policy accept; iifname \"{i}\" drop; }}\n\
                 chain output {{ type filter hook output priority -10; policy accept; oifname \"{i}\" drop; }}\n}}\n"
            );
            let sleep = |d: Duration| {
                let until = Instant::now() + d;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            };
            loop {
                sleep(every.saturating_sub(length));
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let _ = nft(&ns, &cut);
                sleep(length);
                let _ = sh(&[
                    "ip", "netns", "exec", &ns, "nft", "delete", "table", "inet", "cut",
                ]);
            }
        }));
    }

    /// Bytes sent and received by the tablet's interface (TCP/IP headers and
    /// retransmissions included: what crossed the link).
    pub fn counters(&self) -> (u64, u64) {
        let read = |what: &str| {
            Command::new("ip")
                .args(["netns", "exec", &self.name, "cat"])
                .arg(format!("/sys/class/net/{}/statistics/{what}", self.ns_if))
                .output()
                .ok()
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
                .unwrap_or(0)
        };
        (read("tx_bytes"), read("rx_bytes"))
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.cut.store(true, Ordering::Relaxed);
        if let Some(t) = self.cutter.take() {
            let _ = t.join();
        }
        let _ = sh(&["ip", "netns", "del", &self.name]);
        let _ = sh(&["ip", "link", "del", &self.host_if]);
    }
}

fn nft(ns: &str, rules: &str) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(rules.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("nft: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// A week of one enumerator's work, offline, until its changes reach `payload_bytes`:
/// each day new members, a training session and its attendance, and a few corrections.
pub fn week_of_work(t: &mut Tablet, payload_bytes: usize) {
    let coop = t.create_cooperative("07", "Slow link cooperative");
    let mut day = 0;
    while payload(&t.client) < payload_bytes {
        day += 1;
        let members: Vec<String> = (0..10)
            .map(|m| t.add_member(&coop, &format!("Member {day}-{m}"), "female"))
            .collect();
        let session = t.create_session("07", &coop);
        for (m, member) in members.iter().enumerate() {
            t.record_attendance(&session, &format!("m{m}"), Some(member), 6.0);
        }
        for g in 0..20 {
            t.record_attendance(&session, &format!("g{g}"), None, 3.0);
        }
        t.set(&session, "status", "held");
        t.set(&members[0], "village", &format!("Village {day}"));
    }
}

fn payload(client: &SyncClient) -> usize {
    client
        .docs()
        .map(|(_, (_, d))| {
            d.get_changes(&[])
                .iter()
                .map(|c| c.raw_bytes().len())
                .sum::<usize>()
        })
        .sum()
}

/// A transport that counts failures and re-sends of changes whose acknowledgement the
/// tablet already received (the inner transport renews an expired token).
struct Counting<'a> {
    http: &'a mut HttpTransport,
    acked: HashSet<[u8; 32]>,
    requests: u64,
    failed: u64,
    resent_acknowledged: u64,
}

impl Transport for Counting<'_> {
    type Error = String;
    fn sync(&mut self, request: &SyncRequest) -> Result<SyncResponse, String> {
        let hashes: Vec<[u8; 32]> = request
            .push
            .iter()
            .flat_map(|g| g.changes.iter())
            .filter_map(|c| request.encoding.decode(c))
            .filter_map(|b| verify_change_chunk(&b).ok())
            .collect();
        self.resent_acknowledged +=
            hashes.iter().filter(|h| self.acked.contains(*h)).count() as u64;
        self.requests += 1;
        match Transport::sync(&mut *self.http, request) {
            Ok(response) => {
                self.acked.extend(hashes);
                Ok(response)
            }
            Err(e) => {
                self.failed += 1;
                Err(e)
            }
        }
    }
}

/// The tablet side, run inside the namespace: sign in, do a week's work offline, sync
/// until everything is delivered, retrying through drops and cuts with smaller batches.
pub fn tablet(
    base: &str,
    username: &str,
    password: &str,
    payload_bytes: usize,
) -> Result<TabletOutcome, String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_global(Some(Duration::from_secs(240)))
            .build(),
    );
    let started = Instant::now();
    let mut t = loop {
        match Tablet::login(&agent, base, username, password) {
            Ok(t) => break t,
            Err(_) if started.elapsed() < Duration::from_secs(600) => {
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(e) => return Err(format!("sign-in never got through: {e}")),
        }
    };
    week_of_work(&mut t, payload_bytes);
    let payload_bytes = payload(&t.client);
    let changes: usize = t
        .client
        .docs()
        .map(|(_, (_, d))| d.get_changes(&[]).len())
        .sum();
    // Small batches on a slow link: a batch must arrive within the server's body timeout.
    t.client.batch_bytes = 16 * 1024;
    let synced = Instant::now();
    let mut counting = Counting {
        http: &mut t.transport,
        acked: HashSet::new(),
        requests: 0,
        failed: 0,
        resent_acknowledged: 0,
    };
    loop {
        match t.client.sync(&mut counting) {
            Ok(_) if t.client.undelivered_batches().is_empty() => break,
            Ok(_) => {}
            Err(_) if synced.elapsed() < Duration::from_secs(6 * 3600) => {
                t.client.batch_bytes = (t.client.batch_bytes / 2).max(4 * 1024);
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(format!("gave up after 6 h: {e}")),
        }
    }
    let seconds = synced.elapsed().as_secs_f64();
    let (requests, failed, resent) = (
        counting.requests,
        counting.failed,
        counting.resent_acknowledged,
    );
    let heads = t
        .client
        .docs()
        .map(|(id, (_, d))| {
            let mut h: Vec<String> = d.get_heads().iter().map(|h| h.to_string()).collect();
            h.sort();
            (id.clone(), h)
        })
        .collect();
    Ok(TabletOutcome {
        payload_bytes,
        changes,
        bytes_up: t.transport.bytes_up,
        bytes_down: t.transport.bytes_down,
        requests,
        failed_requests: failed,
        resent_acknowledged: resent,
        seconds,
        heads,
    })
}

/// Sends `bytes` raw bytes to `to` in 16 KiB pieces (the tablet's batch size), each on
/// its own connection and acknowledged by the receiver, retrying a piece until it is.
pub fn raw_send(to: &str, bytes: usize) -> Result<f64, String> {
    let started = Instant::now();
    let mut sent_ok = 0usize;
    while sent_ok < bytes {
        let attempt = (|| -> std::io::Result<usize> {
            let mut s = TcpStream::connect_timeout(
                &to.parse().map_err(std::io::Error::other)?,
                Duration::from_secs(20),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(240)))?;
            s.set_write_timeout(Some(Duration::from_secs(240)))?;
            let n = (bytes - sent_ok).min(16 * 1024);
            s.write_all(&(n as u64).to_be_bytes())?;
            let chunk = vec![0x5a_u8; 16 * 1024];
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk.len());
                s.write_all(&chunk[..k])?;
                left -= k;
            }
            let mut ack = [0u8; 8];
            s.read_exact(&mut ack)?;
            Ok(u64::from_be_bytes(ack) as usize)
        })();
        match attempt {
            Ok(n) => sent_ok += n,
            Err(_) if started.elapsed() < Duration::from_secs(6 * 3600) => {
                std::thread::sleep(Duration::from_secs(1))
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The receiving end of `raw_send`: acknowledges each complete transfer with its length.
pub fn raw_sink(listener: TcpListener) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = stream;
                let _ = s.set_read_timeout(Some(Duration::from_secs(240)));
                let mut len = [0u8; 8];
                if s.read_exact(&mut len).is_err() {
                    return;
                }
                let n = u64::from_be_bytes(len) as usize;
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = 0;
                while got < n {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => got += k,
                    }
                }
                let _ = s.write_all(&(n as u64).to_be_bytes());
            });
        }
    });
}

/// A child process killed when dropped, also when the orchestrator panics.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the tablet writes its outcome.
pub fn outcome_path(dir: &Path) -> PathBuf {
    dir.join("tablet-outcome.json")
}
