//! Ingest of pushed changes. Untrusted bytes pass, in order: base64/hex, the chunk checks of
//! `sync_protocol::chunk` (type, length, checksum), parsing with panics caught, actor
//! ownership, document type and scope, and causal checks (dependencies, sequence number,
//! start op, referenced actors). What passes is applied to a copy of the document off the
//! async threads with panics caught, and kept only if the result still saves and loads.
//! Failures are quarantined with their raw bytes; the rest of the request proceeds.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    panic::{AssertUnwindSafe, catch_unwind},
};

use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc};
use chrono::NaiveDateTime;
use sync_protocol::{
    ChangeError,
    chunk::verify_change_chunk,
    documents::{DocType, doc_type_of},
    messages::{BlockedChange, ChangeEncoding, ChangeErrorReport, DocChanges, DocPushResult},
};

pub use super::Origin;
use super::{
    changed::{self, Changed},
    conflicts, doc_cache, projection,
    pull::{ScopeMove, record_moves},
    shape::{START_OP_MARGIN, Shapes},
    store::{self, ChangeRow, DocumentRow, NewQuarantine, PendingRow},
};
use crate::{
    auth::Principal,
    db::{DbConnection, now},
    error::ApiError,
};

/// A decoded change waiting to be applied.
#[derive(Clone)]
pub(crate) struct Candidate {
    /// Index in the request, or `None` for a change held from an earlier request.
    pub(crate) index: Option<usize>,
    pub(crate) hash: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) change: Change,
    pub(crate) origin: Origin,
}

/// State shared by all documents of one request.
#[derive(Default)]
pub struct Batch {
    /// Change rows waiting for sequence numbers, allocated once at the end.
    rows: Vec<ChangeRow>,
    /// Hashes applied in this request, with their document.
    seen: HashMap<String, String>,
    /// Origins of changes applied in this request (not yet in the change log).
    pub origins: HashMap<String, Origin>,
    /// Refused changes of all documents, stored together at the end (bounded).
    quarantine: Vec<NewQuarantine>,
    /// Changes (count, bytes) the device has held as pending, read once per request.
    held: Option<(i64, i64)>,
    /// Documents the device created in the last 24 hours, read once per request.
    created: Option<i64>,
}

/// New documents one enumerator's device may create in 24 hours: a province's whole
/// registry is ~2,500 members; a hostile device made 10,000 in 3.5 s. Admins' devices
/// (which seed and import) are not capped.
pub const MAX_NEW_DOCUMENTS_PER_DEVICE_PER_DAY: i64 = 5_000;

/// `missing_deps` of a change held because its member's cooperative has not arrived.
pub const AWAITS_COOPERATIVE: &str = "cooperative:";

/// Changes one device may have waiting for dependencies at once, and their bytes: a real
/// tablet has a few (a member pushed before its cooperative's batch); a hostile one
/// parked 21,299 rows (86 MB) for unknown documents from 1.6 MB on the wire.
pub const MAX_PENDING_PER_DEVICE: i64 = 2_000;
pub const MAX_PENDING_BYTES_PER_DEVICE: i64 = 32 * 1024 * 1024;

impl Batch {
    /// Whether the device may create one more document.
    fn may_create(
        &mut self,
        conn: &mut DbConnection,
        principal: &Principal,
    ) -> Result<bool, ApiError> {
        if principal.role != crate::domain::access::Role::Enumerator {
            return Ok(true);
        }
        if self.created.is_none() {
            let since = now() - chrono::Duration::hours(24);
            self.created = Some(store::documents_created_by(
                conn,
                &principal.device_id,
                since,
            )?);
        }
        Ok(self.created.unwrap_or(0) < MAX_NEW_DOCUMENTS_PER_DEVICE_PER_DAY)
    }

    fn held_by_device(
        &mut self,
        conn: &mut DbConnection,
        device_id: &str,
    ) -> Result<&mut (i64, i64), ApiError> {
        if self.held.is_none() {
            self.held = Some(store::pending_of_device(conn, device_id)?);
        }
        self.held
            .as_mut()
            .ok_or_else(|| ApiError::internal("set above"))
    }
}

fn type_rank(t: &str) -> u8 {
    match DocType::parse(t) {
        Some(DocType::Cooperative) => 0,
        Some(DocType::Member) => 1,
        Some(DocType::TrainingSession) => 2,
        None => 3,
    }
}

/// Ingests all groups in one transaction (the caller's). Cooperatives go first so that
/// members and sessions in the same request find them; within a type, documents are
/// locked in id order so concurrent requests cannot deadlock.
pub fn ingest(
    conn: &mut DbConnection,
    principal: &Principal,
    groups: &[DocChanges],
    encoding: ChangeEncoding,
) -> Result<Vec<DocPushResult>, ApiError> {
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| {
        (type_rank(&groups[a].doc_type), &groups[a].doc_id)
            .cmp(&(type_rank(&groups[b].doc_type), &groups[b].doc_id))
    });
    let mut results = vec![DocPushResult::default(); groups.len()];
    let mut batch = Batch::default();
    for i in order {
        results[i] = ingest_document(conn, principal, &groups[i], encoding, &mut batch)?;
    }
    super::quarantine::store(conn, principal, std::mem::take(&mut batch.quarantine))?;
    batch.flush(conn)?;
    Ok(results)
}

impl Batch {
    /// Gives the request's applied changes their sequence numbers (in one block, under the
    /// counter's row lock, so sequence order is commit order) and writes them to the log.
    pub(crate) fn flush(&mut self, conn: &mut DbConnection) -> Result<(), ApiError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let first = store::allocate_seqs(conn, self.rows.len() as i64)?;
        let mut last_by_doc: HashMap<String, i64> = HashMap::new();
        for (i, row) in self.rows.iter_mut().enumerate() {
            row.seq = first + i as i64;
            last_by_doc.insert(row.document_id.clone(), row.seq);
        }
        store::insert_changes(conn, &self.rows)?;
        for (doc_id, seq) in last_by_doc {
            use crate::db::schema::documents;
            use diesel::prelude::*;
            diesel::update(documents::table.find(&doc_id))
                .set(documents::last_seq.eq(seq))
                .execute(conn)?;
        }
        self.rows.clear();
        Ok(())
    }
}

struct DocOutcome {
    result: DocPushResult,
    quarantine: Vec<NewQuarantine>,
}

impl DocOutcome {
    fn reject(
        &mut self,
        principal: &Principal,
        doc: &DocChanges,
        index: Option<usize>,
        hash: Option<String>,
        bytes: Option<Vec<u8>>,
        error: &ChangeError,
    ) {
        if let Some(index) = index {
            self.result.errors.push(ChangeErrorReport {
                index,
                hash: hash.clone(),
                code: error.code().to_string(),
                message: error.to_string(),
            });
        }
        self.quarantine.push(NewQuarantine {
            received_at: now(),
            device_id: principal.device_id.clone(),
            user_id: principal.user_id.clone(),
            document_id: Some(doc.doc_id.clone()),
            doc_type: Some(doc.doc_type.clone()),
            hash,
            code: error.code().to_string(),
            reason: error.to_string(),
            bytes,
            original_size: None,
            bytes_sha256: None,
        });
    }
}

/// The database-free core of a push, for the fuzz targets and their fixtures: decode,
/// verify and parse each change, order and check them against `base`, and apply what
/// passes exactly as a push does. Returns the resulting document and how many changes
/// it took.
pub fn verify_and_apply(
    base: &Automerge,
    encoded: &[String],
    encoding: ChangeEncoding,
) -> (Automerge, usize) {
    let origin = Origin {
        device_id: String::new(),
        user_id: String::new(),
        received_at: NaiveDateTime::default(),
    };
    let mut candidates: Vec<Candidate> = Vec::new();
    for (index, text) in encoded.iter().enumerate() {
        let Some(bytes) = encoding.decode(text) else {
            continue;
        };
        let Ok(hash) = verify_change_chunk(&bytes).map(hex::encode) else {
            continue;
        };
        if candidates.iter().any(|c| c.hash == hash) {
            continue;
        }
        if let Ok(change) = parse_change(&bytes) {
            candidates.push(Candidate {
                index: Some(index),
                hash,
                bytes,
                change,
                origin: origin.clone(),
            });
        }
    }
    let plan = plan(base, candidates);
    let result = apply_verified(base, plan.ready);
    (result.doc, result.applied.len())
}

/// The same change bytes pushed for a second document: two documents created by one
/// installation with the same actor, second and fields have identical first changes.
/// The change log keeps a change once, so the second document could never be built.
fn collision() -> ChangeError {
    ChangeError::Rejected(
        "this exact change is already stored for another document; write something of the \
         document's own (such as its id) in its first change"
            .into(),
    )
}

fn parse_change(bytes: &[u8]) -> Result<Change, ChangeError> {
    match catch_unwind(|| Change::try_from(bytes)) {
        Ok(Ok(change)) => Ok(change),
        Ok(Err(e)) => Err(ChangeError::Malformed(e.to_string())),
        Err(_) => Err(ChangeError::Malformed(
            "the change could not be parsed".into(),
        )),
    }
}

fn ingest_document(
    conn: &mut DbConnection,
    principal: &Principal,
    group: &DocChanges,
    encoding: ChangeEncoding,
    batch: &mut Batch,
) -> Result<DocPushResult, ApiError> {
    let mut out = DocOutcome {
        result: DocPushResult {
            doc_id: group.doc_id.clone(),
            ..DocPushResult::default()
        },
        quarantine: Vec::new(),
    };
    let received_at = now();
    let origin = Origin {
        device_id: principal.device_id.clone(),
        user_id: principal.user_id.clone(),
        received_at,
    };

    // Decode and verify every change; duplicates are counted, not errors.
    let mut incoming: Vec<Candidate> = Vec::new();
    for (index, encoded) in group.changes.iter().enumerate() {
        let bytes = match encoding.decode(encoded) {
            Some(b) => b,
            None => {
                let raw = encoded.as_bytes()[..encoded.len().min(4096)].to_vec();
                out.reject(
                    principal,
                    group,
                    Some(index),
                    None,
                    Some(raw),
                    &ChangeError::InvalidEncoding,
                );
                continue;
            }
        };
        let hash = match verify_change_chunk(&bytes) {
            Ok(h) => hex::encode(h),
            Err(e) => {
                out.reject(principal, group, Some(index), None, Some(bytes), &e);
                continue;
            }
        };
        match batch.seen.get(&hash) {
            Some(doc) if *doc != group.doc_id.to_ascii_lowercase() => {
                out.reject(
                    principal,
                    group,
                    Some(index),
                    Some(hash),
                    Some(bytes),
                    &collision(),
                );
                continue;
            }
            Some(_) => {
                out.result.duplicates += 1;
                continue;
            }
            None if incoming.iter().any(|c| c.hash == hash) => {
                out.result.duplicates += 1;
                continue;
            }
            None => {}
        }
        match parse_change(&bytes) {
            Ok(change) => incoming.push(Candidate {
                index: Some(index),
                hash,
                bytes,
                change,
                origin: origin.clone(),
            }),
            Err(e) => out.reject(principal, group, Some(index), Some(hash), Some(bytes), &e),
        }
    }

    // A group-level problem quarantines every change of the group.
    let group_error = match (
        sync_protocol::ids::canonical_id(&group.doc_id),
        DocType::parse(&group.doc_type),
    ) {
        (None, _) => Some(ChangeError::Malformed(
            "doc_id must be a lower-case hyphenated UUID (36 characters)".into(),
        )),
        (_, None) => Some(ChangeError::UnknownDocumentType),
        _ => None,
    };
    if let Some(e) = group_error {
        for c in incoming {
            out.reject(principal, group, c.index, Some(c.hash), Some(c.bytes), &e);
        }
        return finish(batch, out);
    }
    let doc_type =
        DocType::parse(&group.doc_type).ok_or_else(|| ApiError::internal("checked above"))?;
    let doc_id = group.doc_id.to_ascii_lowercase();

    // Everything below is decided under the document's lock: a copy of this batch sent
    // at once (a retry after a timeout on a bad link) must see what the other stored,
    // not what was there before it waited.
    let row = store::lock_document(conn, &doc_id)?;
    if let Some(row) = &row {
        // Scope first: a device learns nothing of a record it may not see, not even its
        // type or that a change of it is already stored.
        let error = if !principal
            .actor()
            .sees(row.province_code.as_deref(), row.cooperative_id.as_deref())
            && !awaits_cooperative(conn, row)?
        {
            Some(ChangeError::OutOfScope)
        } else if row.doc_type != doc_type.as_str() {
            Some(ChangeError::WrongDocumentType {
                expected: row.doc_type.clone(),
                actual: doc_type.as_str().to_string(),
            })
        } else {
            None
        };
        if let Some(e) = error {
            for c in incoming {
                out.reject(principal, group, c.index, Some(c.hash), Some(c.bytes), &e);
            }
            return finish(batch, out);
        }
    }

    let hashes: Vec<String> = incoming.iter().map(|c| c.hash.clone()).collect();
    let mut known = store::known_hashes(conn, &hashes)?;
    let held_known = store::pending_hashes(conn, &hashes)?;
    // Re-sent changes that are still held: named in `pending` again if they stay held,
    // so a client tracking its held changes does not lose them.
    let resent_held: HashSet<String> = held_known
        .iter()
        .filter(|(_, d)| **d == doc_id)
        .map(|(h, _)| h.clone())
        .collect();
    known.extend(held_known);
    let mut fresh = Vec::with_capacity(incoming.len());
    for c in incoming {
        match known.get(&c.hash) {
            None => fresh.push(c),
            Some(doc) if *doc == doc_id => out.result.duplicates += 1,
            Some(_) => out.reject(
                principal,
                group,
                c.index,
                Some(c.hash),
                Some(c.bytes),
                &collision(),
            ),
        }
    }
    let incoming = fresh;

    // Actor ids are bound to the device that first used them.
    let actor_ids: Vec<String> = incoming
        .iter()
        .map(|c| c.change.actor_id().to_hex_string())
        .collect();
    let mut owners = store::actor_owners(conn, &actor_ids)?;
    let mut accepted = Vec::new();
    for c in incoming {
        match owners.get(&c.change.actor_id().to_hex_string()) {
            // The same user on another device: an app reinstalled (new device id) that
            // kept its actor id. One code and one instruction for it: take a new actor.
            Some((device, user))
                if *device != principal.device_id && *user == principal.user_id =>
            {
                out.reject(
                    principal,
                    group,
                    c.index,
                    Some(c.hash),
                    Some(c.bytes),
                    &ChangeError::ActorReused,
                )
            }
            Some((device, _)) if *device != principal.device_id => out.reject(
                principal,
                group,
                c.index,
                Some(c.hash),
                Some(c.bytes),
                &ChangeError::ForeignActor,
            ),
            _ => accepted.push(c),
        }
    }
    let mut incoming = accepted;

    if row.is_none() && !incoming.is_empty() && !batch.may_create(conn, principal)? {
        let e = ChangeError::TooManyNewDocuments(MAX_NEW_DOCUMENTS_PER_DEVICE_PER_DAY as usize);
        for c in incoming {
            out.reject(principal, group, c.index, Some(c.hash), Some(c.bytes), &e);
        }
        return finish(batch, out);
    }
    let base = match &row {
        Some(r) => match doc_cache::get(&doc_id, &r.heads) {
            Some(doc) => doc,
            None => load_snapshot(&r.snapshot)?,
        },
        None => Automerge::new(),
    };

    // Changes held from earlier requests join this round.
    let held = store::pending_for_document(conn, &doc_id)?;
    let mut held_hashes = HashSet::new();
    for p in &held {
        if let Ok(change) = parse_change(&p.bytes) {
            held_hashes.insert(p.hash.clone());
            incoming.push(Candidate {
                index: None,
                hash: p.hash.clone(),
                bytes: p.bytes.clone(),
                change,
                origin: Origin {
                    device_id: p.device_id.clone(),
                    user_id: p.user_id.clone(),
                    received_at: p.received_at,
                },
            });
        }
    }

    let plan = plan(&base, incoming);
    for (c, e) in plan.rejected {
        out.reject(principal, group, c.index, Some(c.hash), Some(c.bytes), &e);
    }
    let Applied {
        doc,
        applied,
        failed,
        saved,
    } = apply_verified(&base, plan.ready);
    for (c, e) in failed {
        out.reject(principal, group, c.index, Some(c.hash), Some(c.bytes), &e);
    }

    // The result must still be a document of the declared type, within the caller's scope.
    let mut applied = applied;
    let mut doc = doc;
    // Kept for the document row below: reading a record walks all of it (a session with
    // thousands of attendance entries), once per push is enough.
    let mut scope = None;
    // A new member of a cooperative the server lacks: the cooperative's id, and the
    // changes held for it.
    let mut awaiting: Option<String> = None;
    let mut waiting: Vec<Candidate> = Vec::new();
    if !applied.is_empty() {
        let error = match doc_type_of(&doc) {
            Some(t) if t == doc_type => {
                let (province, cooperative) = projection::scope_of(conn, &doc_id, doc_type, &doc)?;
                scope = Some((province.clone(), cooperative.clone()));
                // Where the server places the cooperative: a record reached only through
                // a cooperative assignment must stay in that cooperative's province.
                // Looked up only when it can decide: most writes are in the author's own
                // provinces (or by an admin), and then the cooperative's province does not
                // matter.
                let actor = principal.actor();
                let visible = if actor.may_place(province.as_deref(), None, None) {
                    true
                } else {
                    let cooperative_province = match (doc_type, &row) {
                        (DocType::Cooperative, Some(r)) => r.province_code.clone(),
                        (DocType::Cooperative, None) => None,
                        _ => match cooperative.as_deref() {
                            Some(c) => projection::cooperative_province(conn, c)?,
                            None => None,
                        },
                    };
                    actor.may_place(
                        province.as_deref(),
                        cooperative.as_deref(),
                        cooperative_province.as_deref(),
                    )
                };
                // A new member of a cooperative the server has not received yet (it is in
                // a later batch of the same week offline) is kept; its scope follows
                // when the cooperative arrives (`store::rescope_members`).
                let awaits_cooperative = doc_type == DocType::Member
                    && row.is_none()
                    && province.is_none()
                    && match cooperative.as_deref() {
                        Some(c) => !store::document_exists(conn, c)?,
                        None => false,
                    };
                if !visible && awaits_cooperative {
                    // Its scope cannot be decided yet: held, not applied, until the
                    // cooperative arrives; then checked against its author's scope
                    // (`release_waiting_members`).
                    awaiting = cooperative.clone();
                }
                (!visible && !awaits_cooperative).then_some(ChangeError::OutOfScope)
            }
            Some(t) => Some(ChangeError::WrongDocumentType {
                expected: doc_type.as_str().to_string(),
                actual: t.as_str().to_string(),
            }),
            None => Some(ChangeError::UnknownDocumentType),
        };
        if let Some(e) = error {
            for c in applied.drain(..) {
                out.reject(principal, group, c.index, Some(c.hash), Some(c.bytes), &e);
            }
            doc = base.clone();
        }
        if awaiting.is_some() {
            waiting = std::mem::take(&mut applied);
            doc = base.clone();
        }
    }
    // Only written when something was applied, and then `saved` is `doc` saved.
    let saved = saved.filter(|_| !applied.is_empty());

    // Held changes that were applied or rejected leave the pending table.
    let leaving: Vec<String> = applied
        .iter()
        .filter(|c| c.index.is_none())
        .map(|c| c.hash.clone())
        .chain(
            out.quarantine
                .iter()
                .filter_map(|q| q.hash.clone())
                .filter(|h| held_hashes.contains(h)),
        )
        .collect();
    store::delete_pending(conn, &leaving)?;

    report_blocked(conn, &plan.pending, &resent_held, &mut out.result)?;
    // New changes to hold: those missing dependencies, and a new member's changes while
    // its cooperative is missing; each within the device's cap.
    let mut to_hold: Vec<(&Candidate, String)> = Vec::new();
    for (c, missing) in &plan.pending {
        if c.index.is_none() && resent_held.contains(&c.hash) {
            out.result.pending.push(c.hash.clone());
        }
        if c.index.is_some() {
            let missing = missing.iter().map(|h| h.to_string()).collect::<Vec<_>>();
            to_hold.push((c, missing.join(",")));
        }
    }
    if let Some(coop) = &awaiting {
        for c in &waiting {
            if c.index.is_none() {
                out.result.pending.push(c.hash.clone()); // already held
            } else {
                to_hold.push((c, format!("{AWAITS_COOPERATIVE}{coop}")));
            }
        }
    }
    let mut new_pending = Vec::new();
    for (c, missing_deps) in to_hold {
        let held = batch.held_by_device(conn, &principal.device_id)?;
        if held.0 + 1 > MAX_PENDING_PER_DEVICE
            || held.1 + c.bytes.len() as i64 > MAX_PENDING_BYTES_PER_DEVICE
        {
            out.reject(
                principal,
                group,
                c.index,
                Some(c.hash.clone()),
                Some(c.bytes.clone()),
                &ChangeError::TooManyPending(MAX_PENDING_PER_DEVICE as usize),
            );
            continue;
        }
        *held = (held.0 + 1, held.1 + c.bytes.len() as i64);
        out.result.pending.push(c.hash.clone());
        new_pending.push(PendingRow {
            hash: c.hash.clone(),
            document_id: doc_id.clone(),
            doc_type: doc_type.as_str().to_string(),
            device_id: c.origin.device_id.clone(),
            user_id: c.origin.user_id.clone(),
            received_at: c.origin.received_at,
            missing_deps,
            bytes: c.bytes.clone(),
        });
        bind_actor_once(
            conn,
            &c.change.actor_id().to_hex_string(),
            &mut owners,
            Applier {
                device_id: &principal.device_id,
                user_id: &principal.user_id,
            },
        )?;
    }
    store::insert_pending(conn, &new_pending)?;

    if !applied.is_empty() {
        out.result.applied = applied.len() as u32;
        store_applied(
            conn,
            Applier {
                device_id: &principal.device_id,
                user_id: &principal.user_id,
            },
            &doc_id,
            doc_type,
            row.as_ref(),
            doc,
            saved,
            &applied,
            scope,
            &mut owners,
            encoding,
            batch,
        )?;
    }
    finish(batch, out)
}

/// Who wrote changes being stored: the device and user recorded with each change (for a
/// server change: the server's device name and the admin acting).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Applier<'a> {
    pub device_id: &'a str,
    pub user_id: &'a str,
}

/// The one write path's second half, for pushes and server changes alike: `applied`
/// (verified on a copy, giving `doc` and its saved bytes) go to the change log (sequence
/// numbers at `Batch::flush`), the document row and snapshot are saved, scope moves are
/// recorded for the devices they concern, the projection and conflicts are brought up to
/// date, the cache is refreshed, and members waiting for a cooperative that now has a
/// province are released.
#[allow(clippy::too_many_arguments, reason = "the parts of one commit, named")]
pub(crate) fn store_applied(
    conn: &mut DbConnection,
    who: Applier<'_>,
    doc_id: &str,
    doc_type: DocType,
    row: Option<&DocumentRow>,
    doc: Automerge,
    saved: Option<Vec<u8>>,
    applied: &[Candidate],
    scope: Option<(Option<String>, Option<String>)>,
    owners: &mut HashMap<String, (String, String)>,
    encoding: ChangeEncoding,
    batch: &mut Batch,
) -> Result<(), ApiError> {
    let doc_id = doc_id.to_string();
    {
        for c in applied {
            if c.index.is_some() {
                bind_actor_once(conn, &c.change.actor_id().to_hex_string(), owners, who)?;
            }
            batch.seen.insert(c.hash.clone(), doc_id.clone());
            batch.origins.insert(c.hash.clone(), c.origin.clone());
            batch.rows.push(ChangeRow {
                seq: 0,
                hash: c.hash.clone(),
                document_id: doc_id.clone(),
                actor: c.change.actor_id().to_hex_string(),
                actor_seq: c.change.seq() as i64,
                device_id: c.origin.device_id.clone(),
                user_id: c.origin.user_id.clone(),
                received_at: c.origin.received_at,
                device_time: c.change.timestamp(),
                bytes: c.bytes.clone(),
            });
        }
        let (province, cooperative) = match scope {
            Some(scope) => scope,
            None => projection::scope_of(conn, &doc_id, doc_type, &doc)?,
        };
        let at = now();
        let mut heads: Vec<String> = doc.get_heads().iter().map(|h| h.to_string()).collect();
        heads.sort();
        let doc_row = DocumentRow {
            id: doc_id.clone(),
            doc_type: doc_type.as_str().to_string(),
            province_code: province,
            cooperative_id: cooperative,
            snapshot: saved.unwrap_or_else(|| doc.save()),
            heads: heads.join(","),
            change_count: row.map(|r| r.change_count).unwrap_or(0) + applied.len() as i64,
            last_seq: row.map(|r| r.last_seq).unwrap_or(0),
            created_at: row.map(|r| r.created_at).unwrap_or(at),
            updated_at: at,
            created_by_device: row.is_none().then(|| who.device_id.to_string()),
        };
        if row.is_none()
            && let Some(n) = batch.created.as_mut()
        {
            *n += 1;
        }
        store::save_document(conn, &doc_row, row.is_some())?;
        // Devices that already pulled past a document's changes would never get it when
        // it enters their scope later, nor learn that it left: both are recorded for them.
        let mut moves = Vec::new();
        if let Some(old) = row
            && (old.province_code != doc_row.province_code
                || old.cooperative_id != doc_row.cooperative_id)
        {
            moves.push(ScopeMove {
                doc_id: doc_id.clone(),
                before: (old.province_code.clone(), old.cooperative_id.clone()),
                after: (
                    doc_row.province_code.clone(),
                    doc_row.cooperative_id.clone(),
                ),
            });
        }
        if let (DocType::Cooperative, Some(p)) = (doc_type, &doc_row.province_code) {
            for (member, before) in store::rescope_members(conn, &doc_id, p)? {
                moves.push(ScopeMove {
                    doc_id: member,
                    before: (before, Some(doc_id.clone())),
                    after: (Some(p.clone()), Some(doc_id.clone())),
                });
            }
        }
        record_moves(conn, &moves)?;
        let dependents = match row {
            None => true,
            Some(old) => {
                doc_type == DocType::Cooperative && old.province_code != doc_row.province_code
            }
        };
        // A new document (or a cooperative that moved) is projected whole anyway: no need
        // to find out which entries its changes wrote.
        let changed = if dependents {
            Changed::Everything
        } else {
            changed::changed(doc_type, &doc, applied.iter().map(|c| &c.change))
        };
        // The change a fixed flag is closed by: the last one applied here.
        let by = applied.last().map(|c| c.hash.as_str());
        match &changed {
            Changed::Entries(entries) => {
                projection::project_entries(conn, &doc_id, &doc, entries, by)?
            }
            Changed::Everything => projection::project(
                conn,
                &doc_id,
                doc_type,
                &doc,
                doc_row.province_code.as_deref(),
                dependents,
                by,
            )?,
        }
        conflicts::record(conn, &doc_id, &doc, &batch.origins, &changed)?;
        let placed = doc_type == DocType::Cooperative && doc_row.province_code.is_some();
        doc_cache::put(&doc_id, doc_row.heads, doc, doc_row.snapshot.len());
        if placed {
            release_waiting_members(conn, &doc_id, encoding, batch)?;
        }
    }
    Ok(())
}

/// Members held because this cooperative had not arrived: each is now pushed again as
/// its author (the user and device that sent it), so it is applied only if it lies in
/// that author's scope, and quarantined `out_of_scope` otherwise. A member sent by a
/// province-23 tablet for a cooperative that a 07 tablet pushes later never becomes a
/// 07 record written by the 23 tablet.
fn release_waiting_members(
    conn: &mut DbConnection,
    cooperative: &str,
    encoding: ChangeEncoding,
    batch: &mut Batch,
) -> Result<(), ApiError> {
    let marker = format!("{AWAITS_COOPERATIVE}{cooperative}");
    for (member, user_id, device_id) in store::pending_awaiting(conn, &marker)? {
        let Some(author) = crate::auth::principal_of(conn, &user_id, &device_id)? else {
            continue; // the author's account is gone: the changes stay held for an admin
        };
        let group = DocChanges {
            doc_id: member,
            doc_type: DocType::Member.as_str().to_string(),
            changes: Vec::new(),
        };
        ingest_document(conn, &author, &group, encoding, batch)?;
    }
    Ok(())
}

/// Names in `result.blocked` the held changes of this push (new or re-sent) that wait on
/// a quarantined change, directly or through other held changes: without it a tablet
/// would wait for ever on a dependency that only an admin can release.
fn report_blocked(
    conn: &mut DbConnection,
    pending: &[(Candidate, Vec<ChangeHash>)],
    resent_held: &HashSet<String>,
    result: &mut DocPushResult,
) -> Result<(), ApiError> {
    if pending.is_empty() {
        return Ok(());
    }
    let missing: Vec<String> = pending
        .iter()
        .flat_map(|(_, m)| m.iter().map(|h| h.to_string()))
        .collect();
    let quarantined = store::quarantined_hashes(conn, &missing)?;
    // hash -> quarantined changes it waits on; grown until nothing changes, so a chain of
    // held changes behind one quarantined change is blocked all along.
    let mut blocked: HashMap<String, BTreeSet<String>> = HashMap::new();
    loop {
        let mut grew = false;
        for (c, missing) in pending {
            let mut by: BTreeSet<String> = BTreeSet::new();
            for m in missing.iter().map(|h| h.to_string()) {
                if quarantined.contains(&m) {
                    by.insert(m);
                } else if let Some(q) = blocked.get(&m) {
                    by.extend(q.iter().cloned());
                }
            }
            if !by.is_empty() && blocked.get(&c.hash) != Some(&by) {
                blocked.insert(c.hash.clone(), by);
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    for (c, _) in pending {
        if (c.index.is_some() || resent_held.contains(&c.hash))
            && let Some(by) = blocked.get(&c.hash)
        {
            result.blocked.push(BlockedChange {
                hash: c.hash.clone(),
                quarantined: by.iter().cloned().collect(),
                code: "dependency_quarantined".into(),
                message: "this change depends on a change the server quarantined; it is kept \
                          and applies if an admin releases that change"
                    .into(),
            });
        }
    }
    Ok(())
}

/// Binds a new actor to the sending device, once: `owners` holds every actor already
/// bound (loaded for this document's changes, then extended here).
/// A member stored before its cooperative reached the server: it has no province yet,
/// so scope cannot be decided; it stays editable until the cooperative arrives.
fn awaits_cooperative(conn: &mut DbConnection, row: &store::DocumentRow) -> Result<bool, ApiError> {
    Ok(row.doc_type == DocType::Member.as_str()
        && row.province_code.is_none()
        && match row.cooperative_id.as_deref() {
            Some(c) => !store::document_exists(conn, c)?,
            None => false,
        })
}

fn bind_actor_once(
    conn: &mut DbConnection,
    actor: &str,
    owners: &mut HashMap<String, (String, String)>,
    who: Applier<'_>,
) -> Result<(), ApiError> {
    if owners.contains_key(actor) {
        return Ok(());
    }
    store::bind_actor(conn, actor, who.device_id, who.user_id)?;
    owners.insert(
        actor.to_string(),
        (who.device_id.to_string(), who.user_id.to_string()),
    );
    Ok(())
}

/// Hands the document's refused changes to the request's batch (stored, bounded, at the
/// end of the request: `quarantine::store`) and returns the document's result.
fn finish(batch: &mut Batch, out: DocOutcome) -> Result<DocPushResult, ApiError> {
    batch.quarantine.extend(out.quarantine);
    Ok(out.result)
}

/// Loads a stored snapshot; a stored document that fails to load is a server bug, never
/// something a client can cause (results are verified before they are stored).
pub fn load_snapshot(bytes: &[u8]) -> Result<Automerge, ApiError> {
    match catch_unwind(|| Automerge::load(bytes)) {
        Ok(Ok(doc)) => Ok(doc),
        Ok(Err(e)) => Err(ApiError::internal(format!(
            "stored document does not load: {e}"
        ))),
        Err(_) => Err(ApiError::internal("stored document load panicked")),
    }
}

struct Plan {
    ready: Vec<Candidate>,
    pending: Vec<(Candidate, Vec<ChangeHash>)>,
    rejected: Vec<(Candidate, ChangeError)>,
}

/// Orders candidates causally and checks each against the document before automerge sees
/// it: crafted sequence numbers, start ops and actor references make automerge 0.12 panic
/// or corrupt the document.
fn plan(base: &Automerge, candidates: Vec<Candidate>) -> Plan {
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
struct Applied {
    doc: Automerge,
    applied: Vec<Candidate>,
    failed: Vec<(Candidate, ChangeError)>,
    /// `doc` saved, when anything was applied (the verification saved it already).
    saved: Option<Vec<u8>>,
}

/// Applies on a copy, in one call when all goes well; otherwise change by change to find
/// the culprits. A result is kept only if it saves, loads back with the same heads, and
/// misses no dependency.
fn apply_verified(base: &Automerge, ready: Vec<Candidate>) -> Applied {
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

pub(crate) fn try_apply(
    base: &Automerge,
    changes: Vec<Change>,
) -> Result<(Automerge, Vec<u8>), String> {
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
