//! A sync client for tablets and simulators: keeps Automerge documents and its server
//! state (cursor, changes the server acknowledged), and performs a complete sync in
//! bounded batches over any transport the caller supplies (HTTP in practice).
//!
//! Durability rule: a change counts as delivered only when a successful response lists
//! it as applied, duplicate or pending. A batch lost on a cut connection is sent again;
//! the server ignores changes it already has.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use automerge::{
    ActorId, Automerge, AutomergeError, Change, ChangeHash, ReadDoc, transaction::CommitOptions,
    transaction::Transaction,
};

use crate::{
    PROTOCOL_VERSION,
    documents::DocType,
    messages::{ChangeEncoding, DEFAULT_BATCH_BYTES, DocChanges, SyncRequest, SyncResponse},
};

/// Sends one sync request body (JSON) and returns the response body.
pub trait Transport {
    type Error: std::fmt::Display;
    fn sync(&mut self, request: &SyncRequest) -> Result<SyncResponse, Self::Error>;
}

/// A change the server refused, kept for the app to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub doc_id: String,
    pub hash: Option<String>,
    pub code: String,
    pub message: String,
}

/// Counts from one complete sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub requests: u32,
    /// Times the server said it was restored from a backup (`pull.resync`).
    pub resyncs: u32,
    pub pushed: u32,
    pub pulled: u32,
    pub removed: u32,
    pub rejected: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("transport: {0}")]
    Transport(String),
    #[error("the server sent a change that is not valid: {0}")]
    BadServerChange(String),
    #[error("sync did not finish within {0} requests")]
    TooManyRounds(u32),
}

/// One tablet's documents and sync state.
#[derive(Default)]
pub struct SyncClient {
    /// The actor id of this installation: fresh after every reinstall, never shared.
    actor: Option<ActorId>,
    docs: BTreeMap<String, (DocType, Automerge)>,
    cursor: Option<String>,
    delivered: HashSet<ChangeHash>,
    /// Per document, heads at which every change had been delivered: the next batches
    /// start there instead of walking the whole history (all changes of a session of
    /// 8,000 entries take ~50 ms to list, twice per request).
    synced: HashMap<String, Vec<ChangeHash>>,
    rejected: Vec<Rejected>,
    /// Bound on the change bytes of one request.
    pub batch_bytes: usize,
    /// How change bytes travel (hex by default; after gzip hex and base64 are within a
    /// few percent of each other).
    pub encoding: ChangeEncoding,
}

impl SyncClient {
    pub fn new() -> Self {
        Self {
            batch_bytes: DEFAULT_BATCH_BYTES,
            encoding: ChangeEncoding::Hex,
            ..Self::default()
        }
    }

    /// A client whose local edits are made by `actor`.
    pub fn with_actor(actor: ActorId) -> Self {
        Self {
            actor: Some(actor),
            ..Self::new()
        }
    }

    fn actor(&mut self) -> ActorId {
        self.actor.get_or_insert_with(ActorId::random).clone()
    }

    /// Creates a document of `doc_type` with a fresh id; `f` writes its first fields.
    pub fn create(
        &mut self,
        doc_type: DocType,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<(), AutomergeError>,
    ) -> Result<String, AutomergeError> {
        let id = crate::ids::DocumentId::new().to_string();
        let doc = Automerge::new().with_actor(self.actor());
        self.docs.insert(id.clone(), (doc_type, doc));
        // The id in the first change makes that change the document's own: one actor
        // creating two records with the same fields in the same second would otherwise
        // make byte-identical first changes, which the server keeps only once.
        let own = id.clone();
        self.edit(&id, move |tx| {
            automerge::transaction::Transactable::put(tx, automerge::ROOT, "id", own.as_str())?;
            f(tx)
        })?;
        Ok(id)
    }

    /// Edits a document in one local change stamped with the device clock (informative
    /// only: the server orders by its own sequence, never by device time).
    pub fn edit(
        &mut self,
        doc_id: &str,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<(), AutomergeError>,
    ) -> Result<(), AutomergeError> {
        let actor = self.actor();
        let Some((_, doc)) = self.docs.get_mut(doc_id) else {
            return Err(AutomergeError::Fail);
        };
        doc.set_actor(actor);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        doc.transact_with(|_| CommitOptions::default().with_time(now), |tx| f(tx))
            .map(|_| ())
            .map_err(|failure| failure.error)
    }

    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    pub fn docs(&self) -> impl Iterator<Item = (&String, &(DocType, Automerge))> {
        self.docs.iter()
    }

    pub fn doc(&self, id: &str) -> Option<&Automerge> {
        self.docs.get(id).map(|(_, d)| d)
    }

    pub fn doc_mut(&mut self, id: &str) -> Option<&mut Automerge> {
        // The caller may make it anything: its next batches walk all of it again.
        self.synced.remove(id);
        self.docs.get_mut(id).map(|(_, d)| d)
    }

    /// Adds a document made or loaded locally.
    pub fn insert(&mut self, id: &str, doc_type: DocType, doc: Automerge) {
        self.synced.remove(id);
        self.docs.insert(id.to_string(), (doc_type, doc));
    }

    pub fn rejected(&self) -> &[Rejected] {
        &self.rejected
    }

    /// Changes not yet acknowledged by the server, grouped into batches of at most
    /// `batch_bytes` (a single larger change goes alone).
    pub fn undelivered_batches(&self) -> Vec<Vec<DocChanges>> {
        let mut batches: Vec<Vec<DocChanges>> = Vec::new();
        let mut current: Vec<DocChanges> = Vec::new();
        let mut size = 0usize;
        // Cooperatives first, then members, then sessions: when a long week goes up in
        // several batches, the server learns a cooperative's province before the members
        // and sessions that take their scope from it.
        let mut order: Vec<(&String, &(DocType, Automerge))> = self.docs.iter().collect();
        order.sort_by_key(|(id, (doc_type, _))| (doc_type.push_rank(), *id));
        for (id, (doc_type, doc)) in order {
            let mut group = DocChanges {
                doc_id: id.clone(),
                doc_type: doc_type.as_str().to_string(),
                changes: Vec::new(),
            };
            let since = self.synced.get(id).map_or(&[][..], Vec::as_slice);
            for change in doc.get_changes(since) {
                if self.delivered.contains(&change.hash()) {
                    continue;
                }
                let bytes = change.raw_bytes();
                if size + bytes.len() > self.batch_bytes && size > 0 {
                    if !group.changes.is_empty() {
                        current.push(std::mem::replace(
                            &mut group,
                            DocChanges {
                                doc_id: id.clone(),
                                doc_type: doc_type.as_str().to_string(),
                                changes: Vec::new(),
                            },
                        ));
                    }
                    batches.push(std::mem::take(&mut current));
                    size = 0;
                }
                size += bytes.len();
                group.changes.push(self.encoding.encode(bytes));
            }
            if !group.changes.is_empty() {
                current.push(group);
            }
        }
        if !current.is_empty() {
            batches.push(current);
        }
        batches
    }

    /// Syncs until nothing is left to push and the server has nothing more to send.
    pub fn sync<T: Transport>(&mut self, transport: &mut T) -> Result<SyncReport, ClientError> {
        let mut report = SyncReport::default();
        let mut need_full: BTreeSet<String> = BTreeSet::new();
        let max_rounds = 10_000;
        loop {
            let batch = self
                .undelivered_batches()
                .into_iter()
                .next()
                .unwrap_or_default();
            let request = SyncRequest {
                protocol_version: PROTOCOL_VERSION,
                encoding: self.encoding,
                cursor: self.cursor.clone(),
                push: batch,
                pull: true,
                max_pull_bytes: Some(self.batch_bytes),
                need_full_history: std::mem::take(&mut need_full).into_iter().collect(),
            };
            let response = transport
                .sync(&request)
                .map_err(|e| ClientError::Transport(e.to_string()))?;
            report.requests += 1;
            self.absorb_push_result(&request, &response, &mut report);
            let more = match response.pull {
                Some(pull) => {
                    if pull.resync {
                        // The server was restored from a backup and may lack changes it
                        // once acknowledged: every change this installation made goes
                        // again (those it has come back as duplicates). Other devices'
                        // changes are theirs to send: relayed by this one, their actor
                        // could be bound to the wrong device.
                        let own = self.actor();
                        for (_, doc) in self.docs.values() {
                            for change in doc.get_changes(&[]) {
                                if *change.actor_id() == own {
                                    self.delivered.remove(&change.hash());
                                }
                            }
                        }
                        self.synced.clear();
                        report.resyncs += 1;
                    }
                    for doc_id in &pull.removed {
                        self.docs.remove(doc_id);
                        self.synced.remove(doc_id);
                        report.removed += 1;
                    }
                    for group in pull.docs {
                        report.pulled += group.changes.len() as u32;
                        if self.apply_pulled(&group)? {
                            need_full.insert(group.doc_id.clone());
                        }
                    }
                    self.cursor = Some(pull.cursor);
                    pull.more
                }
                None => false,
            };
            let nothing_to_push = self.undelivered_batches().is_empty();
            if !more && nothing_to_push && need_full.is_empty() {
                for (id, (_, doc)) in &self.docs {
                    self.synced.insert(id.clone(), doc.get_heads());
                }
                return Ok(report);
            }
            if report.requests >= max_rounds {
                return Err(ClientError::TooManyRounds(max_rounds));
            }
        }
    }

    fn absorb_push_result(
        &mut self,
        request: &SyncRequest,
        response: &SyncResponse,
        report: &mut SyncReport,
    ) {
        for (group, result) in request.push.iter().zip(&response.push) {
            let failed: HashSet<usize> = result.errors.iter().map(|e| e.index).collect();
            for (i, encoded) in group.changes.iter().enumerate() {
                let Some(bytes) = request.encoding.decode(encoded) else {
                    continue;
                };
                let Ok(change) = Change::try_from(&bytes[..]) else {
                    continue;
                };
                // Rejected changes are marked too: resending them cannot succeed.
                self.delivered.insert(change.hash());
                if !failed.contains(&i) {
                    report.pushed += 1;
                }
            }
            for e in &result.errors {
                report.rejected += 1;
                self.rejected.push(Rejected {
                    doc_id: group.doc_id.clone(),
                    hash: e.hash.clone(),
                    code: e.code.clone(),
                    message: e.message.clone(),
                });
            }
        }
    }

    /// Applies pulled changes; returns true when the document still misses dependencies.
    fn apply_pulled(&mut self, group: &DocChanges) -> Result<bool, ClientError> {
        let doc_type = DocType::parse(&group.doc_type)
            .ok_or_else(|| ClientError::BadServerChange(format!("type {}", group.doc_type)))?;
        let mut changes = Vec::with_capacity(group.changes.len());
        for encoded in &group.changes {
            let bytes = self
                .encoding
                .decode(encoded)
                .ok_or_else(|| ClientError::BadServerChange("not valid in the encoding".into()))?;
            let change = Change::try_from(&bytes[..])
                .map_err(|e| ClientError::BadServerChange(e.to_string()))?;
            self.delivered.insert(change.hash());
            changes.push(change);
        }
        let (_, doc) = self
            .docs
            .entry(group.doc_id.clone())
            .or_insert_with(|| (doc_type, Automerge::new()));
        doc.apply_changes(changes)
            .map_err(|e| ClientError::BadServerChange(e.to_string()))?;
        Ok(!doc.get_missing_deps(&[]).is_empty())
    }
}
