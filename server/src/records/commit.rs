//! The one write path: `commit` takes the changes of one document, by any author (a
//! tablet's push, or the server writing for an admin: a resolution, a correction, a
//! merge, an import, a released quarantined change), and under the document's lock checks
//! scope, type and actor ownership, verifies them on a copy (`verify`), holds what waits
//! for dependencies, and stores what applies: the change log (sequence numbers at
//! `Batch::flush`), the snapshot, scope moves, projection, conflicts and the cache, in the
//! caller's transaction. Refused changes are quarantined; the rest of the batch proceeds.

use std::collections::{BTreeSet, HashMap, HashSet};

use automerge::{Automerge, ChangeHash};
use sync_protocol::{
    ChangeError,
    documents::{DocType, doc_type_of},
    messages::{BlockedChange, ChangeErrorReport, DocPushResult},
};

use super::{
    CommitError, Origin, SERVER_DEVICE,
    changed::{self, Changed},
    conflicts, doc_cache,
    moves::{ScopeMove, record_moves},
    projection,
    store::{self, ChangeRow, DocumentRow, NewQuarantine, PendingRow},
    verify::{Applied, Candidate, apply_verified, parse_change, plan, stored_doc},
};
use crate::{
    auth::Principal,
    db::{DbConnection, now},
    domain::access::{Actor, Role},
};

/// Who writes the changes being committed.
#[derive(Debug, Clone, Copy)]
pub enum Author<'a> {
    /// A device pushing: its account's scope and role decide what it may write, and its
    /// actor ids are bound to it.
    Device(&'a Principal),
    /// The server writing for an admin (recorded with the admin's user id and the device
    /// name `server`). The service that decided the admin may do it checked the scope
    /// already; its changes are verified like a device's.
    Server { admin_user_id: &'a str },
}

impl Author<'_> {
    pub fn device_id(&self) -> &str {
        match self {
            Author::Device(p) => &p.device_id,
            Author::Server { .. } => SERVER_DEVICE,
        }
    }

    pub fn user_id(&self) -> &str {
        match self {
            Author::Device(p) => &p.user_id,
            Author::Server { admin_user_id } => admin_user_id,
        }
    }

    /// The access rule's actor of a device; `None` for the server, whose admin's
    /// permission was decided by the calling service.
    fn actor(&self) -> Option<Actor> {
        match self {
            Author::Device(p) => Some(p.actor()),
            Author::Server { .. } => None,
        }
    }

    /// Who a change is recorded as having arrived from, now.
    pub fn origin(&self) -> Origin {
        Origin {
            device_id: self.device_id().to_string(),
            user_id: self.user_id().to_string(),
            received_at: now(),
        }
    }
}

/// State shared by all documents of one request (one transaction).
#[derive(Default)]
pub struct Batch {
    /// Change rows waiting for sequence numbers, allocated once at the end.
    rows: Vec<ChangeRow>,
    /// Hashes applied in this request, with their document.
    seen: HashMap<String, String>,
    /// Origins of changes applied in this request (not yet in the change log).
    pub origins: HashMap<String, Origin>,
    /// Refused changes of all documents, stored together at the end (bounded).
    pub quarantine: Vec<NewQuarantine>,
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
    /// Whether the author may create one more document: enumerators' devices are capped.
    fn may_create(
        &mut self,
        conn: &mut DbConnection,
        author: Author<'_>,
    ) -> Result<bool, CommitError> {
        let Author::Device(principal) = author else {
            return Ok(true);
        };
        if principal.role != Role::Enumerator {
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
    ) -> Result<&mut (i64, i64), CommitError> {
        let held = match self.held {
            Some(held) => held,
            None => store::pending_of_device(conn, device_id)?,
        };
        Ok(self.held.insert(held))
    }

    /// The document a change was applied to earlier in this request, if it was.
    pub fn applied_to(&self, hash: &str) -> Option<&String> {
        self.seen.get(hash)
    }

    /// Gives the request's applied changes their sequence numbers (in one block, under the
    /// counter's row lock, so sequence order is commit order) and writes them to the log.
    pub fn flush(&mut self, conn: &mut DbConnection) -> Result<(), CommitError> {
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

/// What became of one document's changes: the protocol's per-document result (applied,
/// duplicates, held, blocked, errors by index) and the refused changes to quarantine.
pub struct Outcome {
    /// The document id and type as the author named them (quarantine keeps them so).
    doc_id: String,
    doc_type: String,
    pub result: DocPushResult,
    quarantine: Vec<NewQuarantine>,
}

impl Outcome {
    pub fn new(doc_id: &str, doc_type: &str) -> Self {
        Self {
            doc_id: doc_id.to_string(),
            doc_type: doc_type.to_string(),
            result: DocPushResult {
                doc_id: doc_id.to_string(),
                ..DocPushResult::default()
            },
            quarantine: Vec::new(),
        }
    }

    /// Refuses one change: reported under its index in the request (a change held from
    /// an earlier request has none) and quarantined with its bytes.
    pub fn reject(
        &mut self,
        author: Author<'_>,
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
            device_id: author.device_id().to_string(),
            user_id: author.user_id().to_string(),
            document_id: Some(self.doc_id.clone()),
            doc_type: Some(self.doc_type.clone()),
            hash,
            code: error.code().to_string(),
            reason: error.to_string(),
            bytes,
            original_size: None,
            bytes_sha256: None,
        });
    }

    /// Hands the refused changes to the batch (stored together, bounded, at the end of the
    /// request) and returns the document's result.
    pub fn finish(self, batch: &mut Batch) -> DocPushResult {
        batch.quarantine.extend(self.quarantine);
        self.result
    }
}

/// The same change bytes pushed for a second document: two documents created by one
/// installation with the same actor, second and fields have identical first changes.
/// The change log keeps a change once, so the second document could never be built.
pub fn collision() -> ChangeError {
    ChangeError::Rejected(
        "this exact change is already stored for another document; write something of the \
         document's own (such as its id) in its first change"
            .into(),
    )
}

/// Commits `incoming` (decoded, checksummed and parsed changes of the document `doc_id`
/// of type `doc_type`, duplicates within the request removed) by `author`, in the
/// caller's transaction. What is refused goes into `out` (and from there to quarantine);
/// what waits for dependencies is held; what applies is stored. Changes held for this
/// document from earlier requests join in.
pub fn commit(
    conn: &mut DbConnection,
    author: Author<'_>,
    doc_id: &str,
    doc_type: DocType,
    incoming: Vec<Candidate>,
    out: &mut Outcome,
    batch: &mut Batch,
) -> Result<(), CommitError> {
    let doc_id = doc_id.to_string();
    // Everything below is decided under the document's lock: a copy of this batch sent
    // at once (a retry after a timeout on a bad link) must see what the other stored,
    // not what was there before it waited.
    let row = store::lock_document(conn, &doc_id)?;
    if let Some(row) = &row {
        // Scope first: a device learns nothing of a record it may not see, not even its
        // type or that a change of it is already stored.
        let error = if author
            .actor()
            .is_some_and(|a| !a.sees(row.province_code.as_deref(), row.cooperative_id.as_deref()))
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
                out.reject(author, c.index, Some(c.hash), Some(c.bytes), &e);
            }
            return Ok(());
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
            Some(_) => out.reject(author, c.index, Some(c.hash), Some(c.bytes), &collision()),
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
            Some((device, user)) if device != author.device_id() && user == author.user_id() => out
                .reject(
                    author,
                    c.index,
                    Some(c.hash),
                    Some(c.bytes),
                    &ChangeError::ActorReused,
                ),
            Some((device, _)) if device != author.device_id() => out.reject(
                author,
                c.index,
                Some(c.hash),
                Some(c.bytes),
                &ChangeError::ForeignActor,
            ),
            _ => accepted.push(c),
        }
    }
    let mut incoming = accepted;

    if row.is_none() && !incoming.is_empty() && !batch.may_create(conn, author)? {
        let e = ChangeError::TooManyNewDocuments(MAX_NEW_DOCUMENTS_PER_DEVICE_PER_DAY as usize);
        for c in incoming {
            out.reject(author, c.index, Some(c.hash), Some(c.bytes), &e);
        }
        return Ok(());
    }
    let base = match &row {
        Some(r) => stored_doc(r)?,
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
        out.reject(author, c.index, Some(c.hash), Some(c.bytes), &e);
    }
    let Applied {
        doc,
        applied,
        failed,
        saved,
    } = apply_verified(&base, plan.ready);
    for (c, e) in failed {
        out.reject(author, c.index, Some(c.hash), Some(c.bytes), &e);
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
                let visible = if let Some(actor) = author.actor()
                    && !actor.may_place(province.as_deref(), None, None)
                {
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
                } else {
                    true
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
                out.reject(author, c.index, Some(c.hash), Some(c.bytes), &e);
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
        let held = batch.held_by_device(conn, author.device_id())?;
        if held.0 + 1 > MAX_PENDING_PER_DEVICE
            || held.1 + c.bytes.len() as i64 > MAX_PENDING_BYTES_PER_DEVICE
        {
            out.reject(
                author,
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
            author,
        )?;
    }
    store::insert_pending(conn, &new_pending)?;

    if !applied.is_empty() {
        out.result.applied = applied.len() as u32;
        store_applied(
            conn,
            author,
            &doc_id,
            doc_type,
            row.as_ref(),
            doc,
            saved,
            &applied,
            scope,
            &mut owners,
            batch,
        )?;
    }
    Ok(())
}

/// The one write path's second half, for pushes and server changes alike: `applied`
/// (verified on a copy, giving `doc` and its saved bytes) go to the change log (sequence
/// numbers at `Batch::flush`), the document row and snapshot are saved, scope moves are
/// recorded for the devices they concern, the projection and conflicts are brought up to
/// date, the cache is refreshed, and members waiting for a cooperative that now has a
/// province are released.
#[allow(clippy::too_many_arguments, reason = "the parts of one commit, named")]
fn store_applied(
    conn: &mut DbConnection,
    who: Author<'_>,
    doc_id: &str,
    doc_type: DocType,
    row: Option<&DocumentRow>,
    doc: Automerge,
    saved: Option<Vec<u8>>,
    applied: &[Candidate],
    scope: Option<(Option<String>, Option<String>)>,
    owners: &mut HashMap<String, (String, String)>,
    batch: &mut Batch,
) -> Result<(), CommitError> {
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
            created_by_device: row.is_none().then(|| who.device_id().to_string()),
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
            release_waiting_members(conn, &doc_id, batch)?;
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
    batch: &mut Batch,
) -> Result<(), CommitError> {
    let marker = format!("{AWAITS_COOPERATIVE}{cooperative}");
    for (member, user_id, device_id) in store::pending_awaiting(conn, &marker)? {
        let Some(author) = crate::auth::principal_of(conn, &user_id, &device_id)? else {
            continue; // the author's account is gone: the changes stay held for an admin
        };
        let mut out = Outcome::new(&member, DocType::Member.as_str());
        commit(
            conn,
            Author::Device(&author),
            &member,
            DocType::Member,
            Vec::new(),
            &mut out,
            batch,
        )?;
        out.finish(batch);
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
) -> Result<(), CommitError> {
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

/// A member stored before its cooperative reached the server: it has no province yet,
/// so scope cannot be decided; it stays editable until the cooperative arrives.
fn awaits_cooperative(
    conn: &mut DbConnection,
    row: &store::DocumentRow,
) -> Result<bool, CommitError> {
    Ok(row.doc_type == DocType::Member.as_str()
        && row.province_code.is_none()
        && match row.cooperative_id.as_deref() {
            Some(c) => !store::document_exists(conn, c)?,
            None => false,
        })
}

/// Binds a new actor to its author (a device, or the server's device name), once:
/// `owners` holds every actor already bound (loaded for this document's changes, then
/// extended here).
fn bind_actor_once(
    conn: &mut DbConnection,
    actor: &str,
    owners: &mut HashMap<String, (String, String)>,
    who: Author<'_>,
) -> Result<(), CommitError> {
    if owners.contains_key(actor) {
        return Ok(());
    }
    store::bind_actor(conn, actor, who.device_id(), who.user_id())?;
    owners.insert(
        actor.to_string(),
        (who.device_id().to_string(), who.user_id().to_string()),
    );
    Ok(())
}
