//! Ingest of pushed changes, the protocol edge of the write path. Untrusted bytes pass, in
//! order: base64/hex, the chunk checks of `sync_protocol::chunk` (type, length, checksum),
//! parsing with panics caught, the document id and type named; then `records::commit`
//! decides under the document's lock (scope, type, actor ownership, causal checks,
//! verification on a copy) and stores. Failures are quarantined with their raw bytes;
//! the rest of the request proceeds.

use automerge::Automerge;
use chrono::NaiveDateTime;
use sync_protocol::{
    ChangeError,
    chunk::verify_change_chunk,
    documents::DocType,
    messages::{ChangeEncoding, DocChanges, DocPushResult},
};

use crate::{
    auth::Principal,
    db::DbConnection,
    error::ApiError,
    records::{
        self, Author, Batch, Origin, Outcome,
        commit::collision,
        verify::{Candidate, apply_verified, parse_change, plan},
    },
};

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

fn ingest_document(
    conn: &mut DbConnection,
    principal: &Principal,
    group: &DocChanges,
    encoding: ChangeEncoding,
    batch: &mut Batch,
) -> Result<DocPushResult, ApiError> {
    let author = Author::Device(principal);
    let mut out = Outcome::new(&group.doc_id, &group.doc_type);
    let origin = author.origin();

    // Decode and verify every change; duplicates are counted, not errors.
    let mut incoming: Vec<Candidate> = Vec::new();
    for (index, encoded) in group.changes.iter().enumerate() {
        let bytes = match encoding.decode(encoded) {
            Some(b) => b,
            None => {
                let raw = encoded.as_bytes()[..encoded.len().min(4096)].to_vec();
                out.reject(
                    author,
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
                out.reject(author, Some(index), None, Some(bytes), &e);
                continue;
            }
        };
        match batch.applied_to(&hash) {
            Some(doc) if *doc != group.doc_id.to_ascii_lowercase() => {
                out.reject(author, Some(index), Some(hash), Some(bytes), &collision());
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
            Err(e) => out.reject(author, Some(index), Some(hash), Some(bytes), &e),
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
            out.reject(author, c.index, Some(c.hash), Some(c.bytes), &e);
        }
        return Ok(out.finish(batch));
    }
    let doc_type =
        DocType::parse(&group.doc_type).ok_or_else(|| ApiError::internal("checked above"))?;
    let doc_id = group.doc_id.to_ascii_lowercase();
    records::commit(conn, author, &doc_id, doc_type, incoming, &mut out, batch)?;
    Ok(out.finish(batch))
}
