//! The tablet simulator: N tablets doing a training day's work against a running server
//! over real HTTP — register a cooperative and its members, schedule a session, take
//! attendance, correct a record offline — then sync. Used by `coopsync-sim`, the tests
//! and the benchmarks.

use std::time::{Duration, Instant};

use crate::tablet::Tablet;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub base_url: String,
    /// A national admin, used to create the enumerator accounts.
    pub admin_username: String,
    pub admin_password: String,
    pub tablets: usize,
    pub members_per_tablet: usize,
    pub province: String,
    /// Prefix for the enumerator accounts the simulator creates.
    pub user_prefix: String,
}

#[derive(Debug, Clone, Default)]
pub struct SimReport {
    pub tablets: usize,
    pub documents: usize,
    pub changes_pushed: u64,
    pub requests: u64,
    pub rejected: u64,
    pub bytes_up: usize,
    pub bytes_down: usize,
    pub elapsed: Duration,
}

/// Password given to the simulated enumerators.
pub const SIM_PASSWORD: &str = "simulated-tablet-password";

fn admin_token(agent: &ureq::Agent, cfg: &SimConfig) -> Result<String, String> {
    let r = agent
        .post(format!("{}/api/v1/auth/login", cfg.base_url))
        .send_json(serde_json::json!({
            "username": cfg.admin_username, "password": cfg.admin_password,
            "device_id": uuid::Uuid::new_v4().to_string(), "device_name": "simulator"
        }))
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let body: serde_json::Value = r.into_body().read_json().map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("admin login: HTTP {status} {body}"));
    }
    Ok(body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Creates the accounts, then runs every tablet's day in its own thread.
pub fn run(cfg: &SimConfig) -> Result<SimReport, String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build(),
    );
    let token = admin_token(&agent, cfg)?;
    for i in 0..cfg.tablets {
        let r = agent
            .post(format!("{}/api/v1/users", cfg.base_url))
            .header("authorization", format!("Bearer {token}"))
            .send_json(serde_json::json!({
                "username": format!("{}{i}", cfg.user_prefix), "password": SIM_PASSWORD,
                "role": "enumerator", "provinces": [cfg.province]
            }))
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        if status != 201 && status != 409 {
            return Err(format!("creating enumerator {i}: HTTP {status}"));
        }
    }
    let started = Instant::now();
    let results: Vec<Result<SimReport, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cfg.tablets)
            .map(|i| {
                let agent = agent.clone();
                scope.spawn(move || tablet_day(&agent, cfg, i))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("tablet thread panicked".into()))
            })
            .collect()
    });
    let mut total = SimReport {
        tablets: cfg.tablets,
        elapsed: started.elapsed(),
        ..SimReport::default()
    };
    for r in results {
        let r = r?;
        total.documents += r.documents;
        total.changes_pushed += r.changes_pushed;
        total.requests += r.requests;
        total.rejected += r.rejected;
        total.bytes_up += r.bytes_up;
        total.bytes_down += r.bytes_down;
    }
    Ok(total)
}

fn tablet_day(agent: &ureq::Agent, cfg: &SimConfig, i: usize) -> Result<SimReport, String> {
    let mut t = Tablet::login(
        agent,
        &cfg.base_url,
        &format!("{}{i}", cfg.user_prefix),
        SIM_PASSWORD,
    )?;
    // Offline: the whole day's work.
    let coop = t.create_cooperative(&cfg.province, &format!("Simulated cooperative {i}"));
    let members: Vec<String> = (0..cfg.members_per_tablet)
        .map(|m| {
            t.add_member(
                &coop,
                &format!("Member {i}-{m}"),
                if m % 2 == 0 { "female" } else { "male" },
            )
        })
        .collect();
    let session = t.create_session(&cfg.province, &coop);
    for (m, member) in members.iter().enumerate() {
        let hours = if m % 7 == 0 { 3.0 } else { 6.0 };
        t.record_attendance(&session, member, Some(member), hours);
    }
    if let Some(first) = members.first() {
        t.set(first, "phone", "097 555 0101");
    }
    t.set(&session, "status", "held");
    // Back in coverage.
    let report = t.client.sync(&mut t.transport).map_err(|e| e.to_string())?;
    Ok(SimReport {
        tablets: 1,
        documents: members.len() + 2,
        changes_pushed: u64::from(report.pushed),
        requests: u64::from(report.requests),
        rejected: u64::from(report.rejected),
        bytes_up: t.transport.bytes_up,
        bytes_down: t.transport.bytes_down,
        elapsed: Duration::ZERO,
    })
}
