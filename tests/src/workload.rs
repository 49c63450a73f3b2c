//! The reference sync server's own workload as a benchmark phase (issue 17): T tablets ×
//! D documents × 50 offline edits, half training sessions with 30 attendance entries
//! edited field by field, half members with Khmer names; all tablets connect at once.
//! Written either as @automerge/automerge writes by default (strings as Text objects,
//! one operation per character; numbers as F64) or with the canonical types the protocol
//! recommends (Str scalars). Bodies gzip or plain. Prints wall time, documents/s, server
//! CPU ms per document, 503 answers, tablet completion p50/p99 and peak RSS.

use std::time::Instant;

use automerge::{ObjType, ROOT, ReadDoc, ScalarValue, transaction::Transactable};
use sync_protocol::documents::DocType;

use crate::{Backend, bench::ServerProcess, tablet::Tablet};

/// One cell of the grid.
#[derive(Debug, Clone)]
pub struct WorkloadRow {
    pub backend: &'static str,
    pub tablets: usize,
    pub docs: usize,
    pub gzip: bool,
    pub canonical: bool,
    pub wall_secs: f64,
    pub cpu_ms_per_doc: f64,
    pub busy: usize,
    pub p50_secs: f64,
    pub p99_secs: f64,
    pub peak_rss_mb: f64,
}

const KHMER: [&str; 6] = [
    "សុខ ចាន់ថា",
    "ស្រី ពៅ",
    "ចាន់ ដារ៉ា",
    "ម៉ៅ សុភា",
    "គឹម ស្រីនាង",
    "ហេង សំណាង",
];

/// A string field as a JS app writes it by default (a Text object) or canonically (Str).
fn put_str(
    tx: &mut automerge::transaction::Transaction<'_>,
    obj: &automerge::ObjId,
    key: &str,
    value: &str,
    canonical: bool,
) -> Result<(), automerge::AutomergeError> {
    if canonical {
        tx.put(obj, key, ScalarValue::Str(value.into()))
    } else {
        let text = tx.put_object(obj, key, ObjType::Text)?;
        tx.splice_text(&text, 0, 0, value)
    }
}

fn make_docs(t: &mut Tablet, docs: usize, canonical: bool, coop: &str) {
    for d in 0..docs {
        if d % 2 == 0 {
            let s = t
                .client
                .create(DocType::TrainingSession, |tx| {
                    tx.put(ROOT, "type", "training_session")?;
                    tx.put(ROOT, "schema_version", 1_i64)?;
                    put_str(tx, &ROOT, "programme", "think_coop", canonical)?;
                    put_str(tx, &ROOT, "province_code", "07", canonical)?;
                    put_str(tx, &ROOT, "cooperative_id", coop, canonical)?;
                    put_str(tx, &ROOT, "scheduled_date", "2026-11-20", canonical)?;
                    tx.put(ROOT, "planned_hours", 6.0_f64)?;
                    put_str(tx, &ROOT, "status", "held", canonical)?;
                    tx.put_object(ROOT, "attendance", ObjType::Map)?;
                    Ok(())
                })
                .expect("create session");
            for e in 0..49 {
                let pid = format!("p{}", e % 30);
                t.client
                    .edit(&s, |tx| {
                        let (_, att) = tx
                            .get(ROOT, "attendance")?
                            .ok_or(automerge::AutomergeError::InvalidObjId("attendance".into()))?;
                        let entry = tx.put_object(&att, pid.as_str(), ObjType::Map)?;
                        put_str(tx, &entry, "status", "present", canonical)?;
                        tx.put(&entry, "hours", 6.0_f64)?;
                        put_str(tx, &entry, "name", KHMER[e % 6], canonical)?;
                        put_str(tx, &entry, "sex", "female", canonical)?;
                        put_str(tx, &entry, "recorded_by", "user-1", canonical)?;
                        tx.put(
                            &entry,
                            "recorded_at",
                            ScalarValue::Timestamp(1_795_000_000_000),
                        )
                    })
                    .expect("edit session");
            }
        } else {
            let m = t
                .client
                .create(DocType::Member, |tx| {
                    tx.put(ROOT, "type", "member")?;
                    tx.put(ROOT, "schema_version", 1_i64)?;
                    put_str(tx, &ROOT, "full_name_khmer", KHMER[d % 6], canonical)?;
                    put_str(tx, &ROOT, "name_latin", &format!("Member {d}"), canonical)?;
                    put_str(tx, &ROOT, "sex", "female", canonical)?;
                    tx.put(ROOT, "year_of_birth", 1980.0_f64)?;
                    put_str(tx, &ROOT, "cooperative_id", coop, canonical)?;
                    put_str(tx, &ROOT, "role", "member", canonical)?;
                    Ok(())
                })
                .expect("create member");
            for e in 0..49 {
                t.client
                    .edit(&m, |tx| {
                        put_str(tx, &ROOT, "village", &format!("Village {e}"), canonical)
                    })
                    .expect("edit member");
            }
        }
    }
}

/// One cell: a fresh server, `tablets` enumerators (one cooperative each) with `docs`
/// documents each, all syncing at once.
#[allow(clippy::too_many_arguments, reason = "one grid cell, named")]
pub fn run_cell(
    bin: &std::path::Path,
    backend: Backend,
    tablets: usize,
    docs: usize,
    gzip: bool,
    canonical: bool,
) -> Result<WorkloadRow, String> {
    let server = ServerProcess::start(bin, backend)?;
    let agent = crate::bench::bench_agent();
    let mut admin = crate::bench::bench_admin(&agent, &server.addr)?;
    let token = admin.session.access.clone();
    // One cooperative per tablet: each tablet sees its own documents only, as in the
    // reference workload (every client syncs its own documents), so no tablet waits to
    // pull the others' work.
    let coops: Vec<String> = (0..tablets)
        .map(|i| admin.create_cooperative("07", &format!("Workload {i}")))
        .collect();
    admin.sync();
    let mut ts = Vec::with_capacity(tablets);
    for (i, coop) in coops.iter().enumerate() {
        let user = format!("wl.{i}");
        crate::bench::bench_enumerator(&agent, &server.addr, &token, &user, coop)?;
        let mut t = crate::bench::bench_login(&agent, &server.addr, &user)?;
        t.sync();
        t.transport.gzip = gzip;
        t.client.batch_bytes = 4 * 1024 * 1024;
        make_docs(&mut t, docs, canonical, coop);
        ts.push(t);
    }
    let barrier = std::sync::Barrier::new(tablets);
    server.reset_peak();
    let cpu = server.cpu_secs();
    let started = Instant::now();
    let done: Vec<(f64, usize, f64, u32)> = std::thread::scope(|s| {
        let handles: Vec<_> = ts
            .iter_mut()
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let begun = Instant::now();
                    t.transport.server_ms = 0.0;
                    let report = t.sync();
                    (
                        begun.elapsed().as_secs_f64(),
                        t.transport.busy_retries,
                        t.transport.server_ms / 1000.0,
                        report.requests,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((0.0, 0, 0.0, 0)))
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let cpu = server.cpu_secs() - cpu;
    let mut times: Vec<f64> = done.iter().map(|d| d.0).collect();
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    // Where a tablet's wait goes: inside the server (its `Server-Timing`) or before it.
    let mut inside: Vec<f64> = done.iter().map(|d| d.2).collect();
    inside.sort_by(f64::total_cmp);
    eprintln!(
        "bench: workload {tablets} x {docs}: tablet p50 {:.2} s, of it in the server p50 {:.2} s, {} requests",
        pick(0.5),
        inside[inside.len() / 2],
        done.iter().map(|d| d.3).sum::<u32>()
    );
    Ok(WorkloadRow {
        backend: match backend {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        },
        tablets,
        docs,
        gzip,
        canonical,
        wall_secs: wall,
        cpu_ms_per_doc: cpu * 1000.0 / (tablets * docs) as f64,
        busy: done.iter().map(|d| d.1).sum(),
        p50_secs: pick(0.5),
        p99_secs: pick(0.99),
        peak_rss_mb: server.peak_rss_mb(),
    })
}

pub fn table(rows: &[WorkloadRow]) -> String {
    let mut out = String::from(
        "reference workload (T tablets x D docs x 50 edits, all at once)\n\
         backend     T x D    body   types      wall s   docs/s  CPU ms/doc  503s  p50 s  p99 s  RSS MB\n",
    );
    for r in rows {
        out += &format!(
            "{:<10} {:>4} x {:<3} {:<6} {:<10} {:>6.2} {:>8.0} {:>11.2} {:>5} {:>6.2} {:>6.2} {:>7.0}\n",
            r.backend,
            r.tablets,
            r.docs,
            if r.gzip { "gzip" } else { "plain" },
            if r.canonical {
                "canonical"
            } else {
                "js-default"
            },
            r.wall_secs,
            (r.tablets * r.docs) as f64 / r.wall_secs.max(1e-9),
            r.cpu_ms_per_doc,
            r.busy,
            r.p50_secs,
            r.p99_secs,
            r.peak_rss_mb
        );
    }
    out
}
