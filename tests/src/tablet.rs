//! A simulated tablet: the sync-protocol client over real HTTP (gzip bodies), with
//! helpers for the work of a training day.

use std::io::Write;

use automerge::transaction::Transactable;
use sync_protocol::{
    client::{SyncClient, SyncReport, Transport},
    documents::{AttendanceEntry, Cooperative, DocType, Member, TrainingSession},
    messages::{SyncRequest, SyncResponse},
};

use crate::{Session, TestApp};

/// Posts sync requests to a server, gzip-compressed.
pub struct HttpTransport {
    pub agent: ureq::Agent,
    pub url: String,
    pub token: String,
    /// Bytes sent and received on the wire (compressed bodies), for measurements.
    pub bytes_up: usize,
    pub bytes_down: usize,
    /// Sum of the `Server-Timing` durations of all responses, in ms.
    pub server_ms: f64,
    /// When set, every push the server answered with 200 is kept here (pull off, no
    /// cursor), so the same stream can be replayed into another server.
    pub recorded: Option<Vec<SyncRequest>>,
    /// Requests repeated after `503` (server busy).
    pub busy_retries: usize,
    /// When set, an expired access token is renewed with it (as a tablet does between
    /// long syncs) and the request repeated.
    pub refresh_token: Option<String>,
    /// Send bodies gzip-compressed (the default) or as plain JSON.
    pub gzip: bool,
}

impl HttpTransport {
    pub fn new(app: &TestApp, token: &str) -> Self {
        Self::to(app.agent.clone(), &app.addr, token)
    }

    /// A transport to the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn to(agent: ureq::Agent, base: &str, token: &str) -> Self {
        Self {
            agent,
            url: format!("{}/api/v1/sync", base.trim_end_matches('/')),
            token: token.to_string(),
            bytes_up: 0,
            bytes_down: 0,
            server_ms: 0.0,
            recorded: None,
            busy_retries: 0,
            refresh_token: None,
            gzip: true,
        }
    }

    /// Exchanges the refresh token for a new pair; false if there is none or it failed.
    pub fn renew(&mut self) -> bool {
        let Some(refresh) = self.refresh_token.clone() else {
            return false;
        };
        let url = self.url.replace("/api/v1/sync", "/api/v1/auth/refresh");
        // A busy server (503) is asked again, as for a sync request.
        let mut attempts = 0;
        let r = loop {
            let Ok(r) = self
                .agent
                .post(&url)
                .send_json(serde_json::json!({ "refresh_token": refresh }))
            else {
                return false;
            };
            match r.status().as_u16() {
                200 => break r,
                503 if self.wait_when_busy(&mut attempts) => {}
                _ => return false,
            }
        };
        let Ok(body) = r.into_body().read_json::<serde_json::Value>() else {
            return false;
        };
        match (
            body["access_token"].as_str(),
            body["refresh_token"].as_str(),
        ) {
            (Some(access), Some(refresh)) => {
                self.token = access.to_string();
                self.refresh_token = Some(refresh.to_string());
                true
            }
            _ => false,
        }
    }

    /// After a `503 server_busy`: waits and returns true if the request should be sent
    /// again, as a real tablet does after `Retry-After` (docs/sync-protocol.md), here
    /// shortened to keep tests fast and given up after 30 attempts.
    fn wait_when_busy(&mut self, attempts: &mut u32) -> bool {
        if *attempts >= 30 {
            return false;
        }
        *attempts += 1;
        self.busy_retries += 1;
        std::thread::sleep(std::time::Duration::from_millis(500));
        true
    }

    /// Sends a request and returns (status, body JSON); panics if the connection fails.
    pub fn post(&mut self, request: &SyncRequest) -> (u16, serde_json::Value) {
        self.try_post(request).expect("sync request")
    }

    /// Like `post`, with connection failures as errors (a server that was just killed).
    pub fn try_post(&mut self, request: &SyncRequest) -> Result<(u16, serde_json::Value), String> {
        let json = serde_json::to_vec(request).expect("serialize");
        let body = if self.gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&json).expect("gzip");
            gz.finish().expect("gzip")
        } else {
            json
        };
        self.bytes_up += body.len();
        let mut post = self
            .agent
            .post(&self.url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .header("accept-encoding", "gzip");
        if self.gzip {
            post = post.header("content-encoding", "gzip");
        }
        let response = post.send(&body[..]).map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        self.server_ms += response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("dur=").nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        let gzipped = response
            .headers()
            .get("content-encoding")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let raw = response
            .into_body()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .map_err(|e| e.to_string())?;
        // Decompressed here rather than by the HTTP client, so that `bytes_down` counts
        // what crossed the wire.
        self.bytes_down += raw.len();
        let json = if gzipped {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut out)
                .map_err(|e| e.to_string())?;
            out
        } else {
            raw
        };
        Ok((status, serde_json::from_slice(&json).unwrap_or_default()))
    }
}

impl Transport for HttpTransport {
    type Error = String;
    fn sync(&mut self, request: &SyncRequest) -> Result<SyncResponse, String> {
        let mut busy = 0;
        let (status, body) = loop {
            match self.try_post(request)? {
                (401, body) if body["error"]["code"] == "token_expired" && self.renew() => {}
                (503, _) if self.wait_when_busy(&mut busy) => {}
                other => break other,
            }
        };
        if status != 200 {
            return Err(format!("HTTP {status}: {body}"));
        }
        if let Some(recorded) = &mut self.recorded
            && !request.push.is_empty()
        {
            recorded.push(SyncRequest {
                cursor: None,
                pull: false,
                need_full_history: Vec::new(),
                ..request.clone()
            });
        }
        serde_json::from_value(body).map_err(|e| e.to_string())
    }
}

/// A signed-in tablet with its local documents.
pub struct Tablet {
    pub session: Session,
    pub client: SyncClient,
    pub transport: HttpTransport,
}

impl Tablet {
    pub fn new(app: &TestApp, username: &str) -> Self {
        let session = app.login(username);
        let mut transport = HttpTransport::new(app, &session.access);
        transport.refresh_token = Some(session.refresh.clone());
        Self {
            session,
            client: SyncClient::with_actor(automerge::ActorId::random()),
            transport,
        }
    }

    /// Signs in to the server at `base` on a new device.
    pub fn login(
        agent: &ureq::Agent,
        base: &str,
        username: &str,
        password: &str,
    ) -> Result<Self, String> {
        let device_id = uuid::Uuid::new_v4().to_string();
        let response = agent
            .post(format!("{}/api/v1/auth/login", base.trim_end_matches('/')))
            .send_json(serde_json::json!({
                "username": username, "password": password,
                "device_id": device_id, "device_name": "simulated tablet"
            }))
            .map_err(|e| e.to_string())?;
        if response.status().as_u16() != 200 {
            return Err(format!("login {username}: HTTP {}", response.status()));
        }
        let body: serde_json::Value = response
            .into_body()
            .read_json()
            .map_err(|e| e.to_string())?;
        let field = |k: &str| body[k].as_str().unwrap_or_default().to_string();
        let session = Session {
            access: field("access_token"),
            refresh: field("refresh_token"),
            user_id: field("user_id"),
            device_id: field("device_id"),
        };
        let mut transport = HttpTransport::to(agent.clone(), base, &session.access);
        transport.refresh_token = Some(session.refresh.clone());
        Ok(Self {
            session,
            client: SyncClient::with_actor(automerge::ActorId::random()),
            transport,
        })
    }

    pub fn sync(&mut self) -> SyncReport {
        self.client
            .sync(&mut self.transport)
            .expect("sync completes")
    }

    pub fn create_cooperative(&mut self, province: &str, name: &str) -> String {
        let coop = Cooperative {
            name_khmer: Some(format!("សហគមន៍ {name}")),
            name_latin: Some(name.to_string()),
            province_code: Some(province.to_string()),
            status: Some("active".into()),
            ..Cooperative::default()
        };
        self.client
            .create(DocType::Cooperative, |tx| coop.write(tx, true))
            .expect("create cooperative")
    }

    pub fn add_member(&mut self, cooperative_id: &str, name: &str, sex: &str) -> String {
        let m = Member {
            cooperative_id: Some(cooperative_id.to_string()),
            full_name_khmer: Some(name.to_string()),
            name_latin: Some(name.to_string()),
            sex: Some(sex.to_string()),
            year_of_birth: Some(1985),
            phone: Some("012 345 678".into()),
            role: Some("member".into()),
            ..Member::default()
        };
        self.client
            .create(DocType::Member, |tx| m.write(tx, true))
            .expect("create member")
    }

    /// Registers a member with her own name, year of birth and phone (the benchmark's
    /// national data: `add_member` gives everyone one phone and one year).
    pub fn add_person(
        &mut self,
        cooperative_id: &str,
        (khmer, latin): (&str, &str),
        sex: &str,
        year_of_birth: i64,
        phone: &str,
    ) -> String {
        let m = Member {
            cooperative_id: Some(cooperative_id.to_string()),
            full_name_khmer: Some(khmer.to_string()),
            name_latin: Some(latin.to_string()),
            sex: Some(sex.to_string()),
            year_of_birth: Some(year_of_birth),
            phone: Some(phone.to_string()),
            role: Some("member".into()),
            ..Member::default()
        };
        self.client
            .create(DocType::Member, |tx| m.write(tx, true))
            .expect("create member")
    }

    pub fn create_session(&mut self, province: &str, cooperative_id: &str) -> String {
        let s = TrainingSession {
            programme: Some("think_coop".into()),
            module: Some("Basics of cooperation".into()),
            cooperative_id: Some(cooperative_id.to_string()),
            province_code: Some(province.to_string()),
            location: Some("Pagoda hall".into()),
            facilitators: vec!["Promoter 1".into()],
            scheduled_date: Some("2026-11-20".into()),
            start_time: Some("08:00".into()),
            end_time: Some("14:00".into()),
            planned_hours: Some(6.0),
            status: Some("scheduled".into()),
            ..TrainingSession::default()
        };
        self.client
            .create(DocType::TrainingSession, |tx| s.write(tx, true))
            .expect("create session")
    }

    pub fn record_attendance(
        &mut self,
        session_id: &str,
        participant: &str,
        member_id: Option<&str>,
        hours: f64,
    ) {
        let entry = AttendanceEntry {
            status: Some(if hours >= 6.0 { "present" } else { "partial" }.into()),
            hours: Some(hours),
            member_id: member_id.map(str::to_string),
            name: member_id.is_none().then(|| "Guest farmer".to_string()),
            sex: member_id.is_none().then(|| "female".to_string()),
            recorded_by: Some(self.session.user_id.clone()),
            recorded_at_ms: Some(1_795_000_000_000),
            ..AttendanceEntry::default()
        };
        self.client
            .edit(session_id, |tx| {
                TrainingSession::write_attendance(tx, participant, &entry)
            })
            .expect("record attendance");
    }

    /// Records a walk-in: someone with no member record, by name, sex, age and phone.
    pub fn record_walk_in(
        &mut self,
        session_id: &str,
        participant: &str,
        name: &str,
        sex: &str,
        age: i64,
        phone: &str,
    ) {
        let entry = AttendanceEntry {
            status: Some("present".into()),
            hours: Some(6.0),
            name: Some(name.to_string()),
            sex: Some(sex.to_string()),
            age: Some(age),
            phone: Some(phone.to_string()),
            recorded_by: Some(self.session.user_id.clone()),
            recorded_at_ms: Some(1_795_000_000_000),
            ..AttendanceEntry::default()
        };
        self.client
            .edit(session_id, |tx| {
                TrainingSession::write_attendance(tx, participant, &entry)
            })
            .expect("record a walk-in");
    }

    /// Sets a top-level string field in canonical form.
    pub fn set(&mut self, doc_id: &str, field: &str, value: &str) {
        self.client
            .edit(doc_id, |tx| {
                tx.put(
                    automerge::ROOT,
                    field,
                    automerge::ScalarValue::Str(value.into()),
                )
            })
            .expect("edit");
    }

    pub fn heads(&self, doc_id: &str) -> Vec<automerge::ChangeHash> {
        let mut h = self.client.doc(doc_id).expect("doc present").get_heads();
        h.sort();
        h
    }
}

/// Two enumerators of province 07 (`tab.a`, `tab.b`) both take the attendance of
/// `participant` in one session while offline (6 and 3.5 hours), then sync: a conflict on
/// the attendance entry itself. Returns both tablets and the session id.
pub fn attendance_recorded_twice(app: &TestApp, participant: &str) -> (Tablet, Tablet, String) {
    for u in ["tab.a", "tab.b"] {
        app.create_user(u, "enumerator", &["07"], &[]);
    }
    let mut a = Tablet::new(app, "tab.a");
    let coop = a.create_cooperative("07", "Twice recorded");
    let session = a.create_session("07", &coop);
    a.sync();
    let mut b = Tablet::new(app, "tab.b");
    b.sync();
    a.record_attendance(&session, participant, None, 6.0);
    b.record_attendance(&session, participant, None, 3.5);
    a.sync();
    b.sync();
    a.sync();
    (a, b, session)
}
