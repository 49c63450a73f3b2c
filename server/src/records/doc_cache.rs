//! Recently merged large documents, kept in memory so that the next push to a busy
//! document (a session that sixteen tablets fill at once) starts from it instead of
//! loading the stored snapshot again: loading costs in proportion to the document, about
//! 90 ms at 8,000 attendance entries, against 2 ms for a copy.
//!
//! An entry is used only when its heads equal the stored row's, so it can never stand in
//! for another state of the document: a transaction that rolls back after `put`, or a
//! second server process writing the same database, leaves heads that do not match.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

use automerge::Automerge;

/// Smaller snapshots load in about a millisecond: not worth the memory.
const MIN_SNAPSHOT_BYTES: usize = 32 * 1024;
/// Total size of the cached documents' snapshots. A loaded document takes about four
/// times its snapshot in memory (10 copies of a 189 KB session of 8,000 entries: 7.6 MB),
/// so this holds the cache near 32 MB against the 150 MB the server aims to stay under.
const BUDGET_BYTES: usize = 8 * 1024 * 1024;

struct Entry {
    heads: String,
    doc: Automerge,
    size: usize,
    used: u64,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Entry>,
    bytes: usize,
    clock: u64,
}

/// Look-ups that found the document at the asked heads, and those that did not, for
/// `/metrics`. Process-wide like the cache itself.
static HITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static MISSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// (hits, misses) since the process started.
pub fn stats() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (HITS.load(Relaxed), MISSES.load(Relaxed))
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// A copy of the document `doc_id` as it is at `heads` (the stored row's), if cached.
pub fn get(doc_id: &str, heads: &str) -> Option<Automerge> {
    let found = lookup(doc_id, heads);
    let counter = if found.is_some() { &HITS } else { &MISSES };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    found
}

fn lookup(doc_id: &str, heads: &str) -> Option<Automerge> {
    let mut cache = cache().lock().ok()?;
    cache.clock += 1;
    let clock = cache.clock;
    let entry = cache.entries.get_mut(doc_id)?;
    if entry.heads != heads {
        return None;
    }
    entry.used = clock;
    Some(entry.doc.clone())
}

/// Keeps `doc` (at `heads`, stored with a snapshot of `snapshot_bytes`), evicting the
/// least recently used documents beyond the budget.
pub fn put(doc_id: &str, heads: String, doc: Automerge, snapshot_bytes: usize) {
    let Ok(mut cache) = cache().lock() else {
        return;
    };
    if let Some(old) = cache.entries.remove(doc_id) {
        cache.bytes -= old.size;
    }
    if !(MIN_SNAPSHOT_BYTES..=BUDGET_BYTES).contains(&snapshot_bytes) {
        return;
    }
    while cache.bytes + snapshot_bytes > BUDGET_BYTES {
        let Some(oldest) = cache
            .entries
            .iter()
            .min_by_key(|(_, e)| e.used)
            .map(|(id, _)| id.clone())
        else {
            break;
        };
        if let Some(e) = cache.entries.remove(&oldest) {
            cache.bytes -= e.size;
        }
    }
    cache.clock += 1;
    let used = cache.clock;
    cache.bytes += snapshot_bytes;
    cache.entries.insert(
        doc_id.to_string(),
        Entry {
            heads,
            doc,
            size: snapshot_bytes,
            used,
        },
    );
}

#[cfg(test)]
mod tests {
    use automerge::{ROOT, transaction::Transactable};

    use super::*;

    fn doc_of(size: usize) -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "x", "y".repeat(size)).unwrap();
        tx.commit();
        doc
    }

    #[test]
    fn serves_only_the_heads_it_holds_and_stays_within_its_budget() {
        let doc = doc_of(10);
        put("cache-a", "h1".into(), doc.clone(), MIN_SNAPSHOT_BYTES);
        assert!(get("cache-a", "h1").is_some());
        assert!(
            get("cache-a", "h2").is_none(),
            "another state of the document"
        );
        put(
            "cache-small",
            "h1".into(),
            doc.clone(),
            MIN_SNAPSHOT_BYTES - 1,
        );
        assert!(
            get("cache-small", "h1").is_none(),
            "small documents are not kept"
        );
        // Filling the budget evicts the least recently used.
        let n = BUDGET_BYTES / MIN_SNAPSHOT_BYTES;
        for i in 0..n {
            put(
                &format!("cache-fill-{i}"),
                "h".into(),
                doc.clone(),
                MIN_SNAPSHOT_BYTES,
            );
        }
        assert!(get("cache-a", "h1").is_none());
        assert!(get(&format!("cache-fill-{}", n - 1), "h").is_some());
        assert!(cache().lock().unwrap().bytes <= BUDGET_BYTES);
    }
}
