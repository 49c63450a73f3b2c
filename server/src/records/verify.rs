//! Verification of changes before they are committed: parse with panics caught, order
//! causally, check each against the document (sequence numbers, start ops, referenced
//! actors, operation shapes) before automerge sees it, and apply on a copy that must still
//! save and load with the same heads. Crafted changes make automerge 0.12 panic or
//! corrupt a document (docs/reliability.md); nothing reaches a stored record unchecked.

use std::{
    collections::HashMap,
    panic::{AssertUnwindSafe, catch_unwind},
};

use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc};
use sync_protocol::ChangeError;

use super::{
    CommitError, Origin,
    shape::{START_OP_MARGIN, Shapes},
};

/// A decoded change waiting to be applied.
#[derive(Clone)]
pub struct Candidate {
    /// Index in the request, or `None` for a change held from an earlier request.
    pub index: Option<usize>,
    pub hash: String,
    pub bytes: Vec<u8>,
    pub change: Change,
    pub origin: Origin,
}

/// Parses a change's bytes (already checked by `sync_protocol::chunk`), panics caught.
pub fn parse_change(bytes: &[u8]) -> Result<Change, ChangeError> {
    match catch_unwind(|| Change::try_from(bytes)) {
        Ok(Ok(change)) => Ok(change),
        Ok(Err(e)) => Err(ChangeError::Malformed(e.to_string())),
        Err(_) => Err(ChangeError::Malformed(
            "the change could not be parsed".into(),
        )),
    }
}

/// The stored document of `row`: the cached copy when its heads are the row's, else its
/// snapshot loaded.
pub fn stored_doc(row: &super::store::DocumentRow) -> Result<Automerge, CommitError> {
    match super::doc_cache::get(&row.id, &row.heads) {
        Some(doc) => Ok(doc),
        None => load_snapshot(&row.snapshot),
    }
}

/// Loads a stored snapshot; a stored document that fails to load is a server bug, never
/// something a client can cause (results are verified before they are stored).
pub fn load_snapshot(bytes: &[u8]) -> Result<Automerge, CommitError> {
    match catch_unwind(|| Automerge::load(bytes)) {
        Ok(Ok(doc)) => Ok(doc),
        Ok(Err(e)) => Err(CommitError::Internal(format!(
            "stored document does not load: {e}"
        ))),
        Err(_) => Err(CommitError::Internal(
            "stored document load panicked".into(),
        )),
    }
}

pub struct Plan {
    pub ready: Vec<Candidate>,
    pub pending: Vec<(Candidate, Vec<ChangeHash>)>,
    pub rejected: Vec<(Candidate, ChangeError)>,
}

/// Orders candidates causally and checks each against the document before automerge sees
/// it: crafted sequence numbers, start ops and actor references make automerge 0.12 panic
/// or corrupt the document.
pub fn plan(base: &Automerge, candidates: Vec<Candidate>) -> Plan {
    let mut actor_seq: HashMap<ActorId, u64> = HashMap::new();
    let mut actor_max: HashMap<ActorId, u64> = HashMap::new();
    let mut max_op: HashMap<ChangeHash, u64> = HashMap::new();
    for meta in base.get_changes_meta(&[]) {
        let actor = meta.actor.clone().into_owned();
        let top = actor_max.entry(actor.clone()).or_insert(0);
        *top = (*top).max(meta.max_op);
        let seq = actor_seq.entry(actor).or_insert(0);
        *seq = (*seq).max(meta.seq);
        max_op.insert(meta.hash, meta.max_op);
    }
    let mut ready = Vec::new();
    let mut rejected = Vec::new();
    let mut shapes = Shapes::default();
    let mut remaining = candidates;
    loop {
        let mut progressed = false;
        let mut next = Vec::new();
        for c in remaining {
            if !c.change.deps().iter().all(|d| max_op.contains_key(d)) {
                next.push(c);
                continue;
            }
            progressed = true;
            match check(&c.change, &actor_seq, &max_op)
                .and_then(|()| own_ops_above(&c.change, &actor_max))
                .and_then(|()| shapes.check(base, &c.change))
            {
                Ok(()) => {
                    actor_seq.insert(c.change.actor_id().clone(), c.change.seq());
                    actor_max.insert(c.change.actor_id().clone(), c.change.max_op());
                    max_op.insert(c.change.hash(), c.change.max_op());
                    ready.push(c);
                }
                Err(e) => rejected.push((c, e)),
            }
        }
        remaining = next;
        if !progressed || remaining.is_empty() {
            break;
        }
    }
    let pending = remaining
        .into_iter()
        .map(|c| {
            let missing = c
                .change
                .deps()
                .iter()
                .filter(|d| !max_op.contains_key(d))
                .copied()
                .collect();
            (c, missing)
        })
        .collect();
    Plan {
        ready,
        pending,
        rejected,
    }
}

/// An actor's operation ids only grow: a change whose ops start at or below the actor's
/// own earlier ones reuses their ids (possible with `deps = []`, which the dependency
/// check cannot see) and makes the document's history ambiguous.
fn own_ops_above(change: &Change, actor_max: &HashMap<ActorId, u64>) -> Result<(), ChangeError> {
    match actor_max.get(change.actor_id()) {
        Some(&top) if change.start_op().get() <= top => Err(ChangeError::Rejected(format!(
            "start op {} is not above this actor's own earlier operations ({top})",
            change.start_op()
        ))),
        _ => Ok(()),
    }
}

fn check(
    change: &Change,
    actor_seq: &HashMap<ActorId, u64>,
    max_op: &HashMap<ChangeHash, u64>,
) -> Result<(), ChangeError> {
    let expected = actor_seq.get(change.actor_id()).copied().unwrap_or(0) + 1;
    if change.seq() < expected {
        return Err(ChangeError::ActorReused);
    }
    if change.seq() > expected {
        return Err(ChangeError::Rejected(format!(
            "sequence number {} skips {expected}",
            change.seq()
        )));
    }
    let deps_max = change
        .deps()
        .iter()
        .filter_map(|d| max_op.get(d))
        .max()
        .copied()
        .unwrap_or(0);
    if change.start_op().get() <= deps_max {
        return Err(ChangeError::Rejected(format!(
            "start op {} is not above its dependencies' {deps_max}",
            change.start_op()
        )));
    }
    // A correct client starts one above its dependencies; far above makes a document
    // that @automerge/automerge cannot load or that no later edit can follow.
    if change.start_op().get() > deps_max + 1 + START_OP_MARGIN {
        return Err(ChangeError::Rejected(format!(
            "start op {} is far above its dependencies' {deps_max}",
            change.start_op()
        )));
    }
    if let Some(unknown) = change
        .other_actor_ids()
        .iter()
        .find(|a| !actor_seq.contains_key(*a))
    {
        return Err(ChangeError::Rejected(format!(
            "references unknown actor {unknown}"
        )));
    }
    Ok(())
}

/// What `apply_verified` did.
pub struct Applied {
    pub doc: Automerge,
    pub applied: Vec<Candidate>,
    pub failed: Vec<(Candidate, ChangeError)>,
    /// `doc` saved, when anything was applied (the verification saved it already).
    pub saved: Option<Vec<u8>>,
}

/// Applies on a copy, in one call when all goes well; otherwise change by change to find
/// the culprits. A result is kept only if it saves, loads back with the same heads, and
/// misses no dependency.
pub fn apply_verified(base: &Automerge, ready: Vec<Candidate>) -> Applied {
    if ready.is_empty() {
        return Applied {
            doc: base.clone(),
            applied: Vec::new(),
            failed: Vec::new(),
            saved: None,
        };
    }
    let changes: Vec<Change> = ready.iter().map(|c| c.change.clone()).collect();
    if let Ok((doc, saved)) = try_apply(base, changes) {
        return Applied {
            doc,
            applied: ready,
            failed: Vec::new(),
            saved: Some(saved),
        };
    }
    let mut doc = base.clone();
    let mut saved = None;
    let mut applied = Vec::new();
    let mut failed = Vec::new();
    for c in ready {
        match try_apply(&doc, vec![c.change.clone()]) {
            Ok((next, bytes)) => {
                doc = next;
                saved = Some(bytes);
                applied.push(c);
            }
            Err(reason) => failed.push((c, ChangeError::Rejected(reason))),
        }
    }
    Applied {
        doc,
        applied,
        failed,
        saved,
    }
}

pub fn try_apply(base: &Automerge, changes: Vec<Change>) -> Result<(Automerge, Vec<u8>), String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut doc = base.clone();
        doc.apply_changes(changes).map_err(|e| e.to_string())?;
        if !doc.get_missing_deps(&[]).is_empty() {
            return Err("a dependency was rejected".to_string());
        }
        let saved = doc.save();
        let loaded = Automerge::load(&saved).map_err(|e| format!("result does not load: {e}"))?;
        let (mut a, mut b) = (doc.get_heads(), loaded.get_heads());
        a.sort();
        b.sort();
        if a != b {
            return Err("result loads with different heads".to_string());
        }
        Ok((doc, saved))
    }));
    match outcome {
        Ok(result) => result,
        Err(_) => Err("automerge panicked on this change".to_string()),
    }
}
