//! Prometheus metrics at `GET /metrics` (text exposition format 0.0.4), for operators:
//! requests by route and status with latency histograms, sync changes by outcome, sync
//! body bytes, database pool use and waits, the body budget in use, document cache hits.
//! Served only with `Authorization: Bearer <metrics_token>`; with no token set the route
//! answers 404, and tablets' access tokens never open it. Routes are the matched
//! patterns (`/api/v1/users/{id}`), never paths, so ids stay out of the labels.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use sync_protocol::messages::DocPushResult;

/// Latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// What the server counts while it runs.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    applied: AtomicU64,
    duplicates: AtomicU64,
    pending: AtomicU64,
    quarantined: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// Gauges read when the metrics are scraped.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub pool: crate::db::PoolState,
    pub pool_waits: (u64, u64, u64, u64),
    pub budget_in_use: usize,
    pub budget_capacity: usize,
    pub cache: (u64, u64),
}

impl Metrics {
    /// One finished request: its route pattern (`unmatched` when none), method, status
    /// and time.
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((route.to_string(), method.to_string(), status))
                .or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(route.to_string()).or_default();
            for (i, le) in BUCKETS.iter().enumerate() {
                if seconds <= *le {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }

    /// One sync request's push outcome and body sizes (decoded request, JSON response).
    pub fn sync(&self, push: &[DocPushResult], bytes_in: usize, bytes_out: usize) {
        for r in push {
            self.applied.fetch_add(u64::from(r.applied), Relaxed);
            self.duplicates.fetch_add(u64::from(r.duplicates), Relaxed);
            self.pending.fetch_add(r.pending.len() as u64, Relaxed);
            self.quarantined.fetch_add(r.errors.len() as u64, Relaxed);
        }
        self.bytes_in.fetch_add(bytes_in as u64, Relaxed);
        self.bytes_out.fetch_add(bytes_out as u64, Relaxed);
    }

    /// The exposition text.
    pub fn render(&self, now: &Snapshot) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP coopsync_http_requests_total Requests answered, by route pattern, method and status.\n# TYPE coopsync_http_requests_total counter"
        );
        if let Ok(r) = self.requests.lock() {
            for ((route, method, status), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "coopsync_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP coopsync_http_request_duration_seconds Time from request to response, by route pattern.\n# TYPE coopsync_http_request_duration_seconds histogram"
        );
        if let Ok(l) = self.latency.lock() {
            for (route, h) in l.iter() {
                let route = escape(route);
                for (i, le) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "coopsync_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "coopsync_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\ncoopsync_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\ncoopsync_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    h.count, h.sum, h.count
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP coopsync_sync_changes_total Pushed changes by outcome.\n# TYPE coopsync_sync_changes_total counter"
        );
        for (outcome, n) in [
            ("applied", &self.applied),
            ("duplicate", &self.duplicates),
            ("pending", &self.pending),
            ("quarantined", &self.quarantined),
        ] {
            let _ = writeln!(
                out,
                "coopsync_sync_changes_total{{outcome=\"{outcome}\"}} {}",
                n.load(Relaxed)
            );
        }
        let (waits, micros, slow, failed) = now.pool_waits;
        let _ = write!(
            out,
            "# HELP coopsync_sync_bytes_total Sync bodies: requests after decompression (in), JSON responses before compression (out).\n# TYPE coopsync_sync_bytes_total counter\n\
             coopsync_sync_bytes_total{{direction=\"in\"}} {}\ncoopsync_sync_bytes_total{{direction=\"out\"}} {}\n\
             # HELP coopsync_db_pool_connections Database pool connections.\n# TYPE coopsync_db_pool_connections gauge\n\
             coopsync_db_pool_connections{{state=\"open\"}} {}\ncoopsync_db_pool_connections{{state=\"idle\"}} {}\ncoopsync_db_pool_connections{{state=\"max\"}} {}\n\
             # HELP coopsync_db_pool_waits_total Connection check-outs, those that waited 10 ms or more, and those that timed out.\n# TYPE coopsync_db_pool_waits_total counter\n\
             coopsync_db_pool_waits_total{{kind=\"all\"}} {waits}\ncoopsync_db_pool_waits_total{{kind=\"slow\"}} {slow}\ncoopsync_db_pool_waits_total{{kind=\"timed_out\"}} {failed}\n\
             # HELP coopsync_db_pool_wait_seconds_total Time spent waiting for a connection.\n# TYPE coopsync_db_pool_wait_seconds_total counter\n\
             coopsync_db_pool_wait_seconds_total {}\n\
             # HELP coopsync_body_budget_bytes Request-body memory budget: in use and capacity.\n# TYPE coopsync_body_budget_bytes gauge\n\
             coopsync_body_budget_bytes{{state=\"in_use\"}} {}\ncoopsync_body_budget_bytes{{state=\"capacity\"}} {}\n\
             # HELP coopsync_doc_cache_lookups_total Document cache look-ups by result.\n# TYPE coopsync_doc_cache_lookups_total counter\n\
             coopsync_doc_cache_lookups_total{{result=\"hit\"}} {}\ncoopsync_doc_cache_lookups_total{{result=\"miss\"}} {}\n",
            self.bytes_in.load(Relaxed),
            self.bytes_out.load(Relaxed),
            now.pool.connections,
            now.pool.idle,
            now.pool.max,
            micros as f64 / 1e6,
            now.budget_in_use,
            now.budget_capacity,
            now.cache.0,
            now.cache.1,
        );
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
