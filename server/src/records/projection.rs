//! The relational projection: each document's merged state as rows of `cooperatives`,
//! `members`, `training_sessions` and `attendance`, plus its validation flags. A document
//! is re-projected whole when it changes (a record is small), or only the attendance
//! entries a push wrote (a session can grow large); flags that depend on other
//! records are refreshed when those records change, so the incremental result equals a
//! rebuild from the change log in any arrival order.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{Automerge, ReadDoc};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use sync_protocol::documents::{
    AttendanceEntry, Cooperative, DocType, Finding, Member, TrainingSession,
    without_double_findings,
};

use super::CommitError;
use crate::db::{
    DbConnection, now,
    schema::{attendance, cooperatives, documents, members, training_sessions, validation_flags},
};
use crate::domain::status::{ConflictStatus, FlagStatus};

use super::store;

/// Flags computed from other records; refreshed when those records change.
const CROSS_CODES: [&str; 3] = [
    "unknown_cooperative",
    "cooperative_outside_province",
    "unknown_participant",
];

fn current_year() -> i64 {
    use chrono::Datelike;
    i64::from(chrono::Utc::now().year())
}

/// The province and cooperative that decide who may see a document.
pub fn scope_of(
    conn: &mut DbConnection,
    doc_id: &str,
    doc_type: DocType,
    doc: &Automerge,
) -> Result<(Option<String>, Option<String>), CommitError> {
    Ok(match doc_type {
        DocType::Cooperative => (
            Cooperative::read(doc).0.province_code,
            Some(doc_id.to_string()),
        ),
        DocType::Member => {
            let m = Member::read(doc).0;
            // Any spelling of a UUID names the one cooperative it is (braces, `urn:uuid:`):
            // a look-up that missed would let the member's own province decide its scope.
            let cooperative = m.cooperative_id.as_deref().map(lenient_id);
            let coop_province = match &cooperative {
                Some(c) => cooperatives::table
                    .find(c)
                    .select(cooperatives::province_code)
                    .first::<Option<String>>(conn)
                    .optional()?
                    .flatten(),
                None => None,
            };
            (coop_province.or(m.province_code), cooperative)
        }
        DocType::TrainingSession => {
            let s = TrainingSession::read_header(doc).0;
            (s.province_code, s.cooperative_id.as_deref().map(lenient_id))
        }
    })
}

/// The province of a cooperative as the projection has it (`None`: unknown or unset).
pub fn cooperative_province(
    conn: &mut DbConnection,
    id: &str,
) -> Result<Option<String>, CommitError> {
    Ok(cooperatives::table
        .find(id)
        .select(cooperatives::province_code)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}

/// An id read from a document in its canonical spelling when it is a UUID in any
/// spelling, else as written (lower-cased): flagged by validation, never a second id.
pub fn lenient_id(s: &str) -> String {
    uuid::Uuid::parse_str(s.trim())
        .map(|u| u.hyphenated().to_string())
        .unwrap_or_else(|_| s.to_ascii_lowercase())
}

/// One projected attendance entry.
#[derive(Debug, Insertable)]
#[diesel(table_name = attendance)]
struct AttendanceRow<'a> {
    session_id: &'a str,
    participant_id: &'a str,
    member_id: Option<String>,
    name: Option<&'a str>,
    sex: Option<&'a str>,
    age: Option<i64>,
    phone: Option<&'a str>,
    status: Option<&'a str>,
    hours: Option<f64>,
    recorded_by: Option<&'a str>,
    recorded_at: Option<NaiveDateTime>,
}

impl<'a> AttendanceRow<'a> {
    fn new(session_id: &'a str, participant_id: &'a str, e: &'a AttendanceEntry) -> Self {
        AttendanceRow {
            session_id,
            participant_id,
            member_id: e.member_id.as_deref().map(lenient_id),
            name: e.name.as_deref(),
            sex: e.sex.as_deref(),
            age: e.age,
            phone: e.phone.as_deref(),
            status: e.status.as_deref(),
            hours: e.hours,
            recorded_by: e.recorded_by.as_deref(),
            recorded_at: ts(e.recorded_at_ms),
        }
    }
}

/// What of a session decides its walk-ins (`records::walk_ins`).
fn session_keys(s: &TrainingSession) -> super::walk_ins::SessionKeys {
    super::walk_ins::SessionKeys::new(
        s.province_code.as_deref(),
        s.cooperative_id.as_deref().map(lenient_id),
        s.scheduled_date.as_deref(),
    )
}

fn ts(ms: Option<i64>) -> Option<NaiveDateTime> {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|d| d.naive_utc())
}

/// Writes the document's rows and its flags. `dependents` asks for the cross-record
/// flags of the records that point at this one to be recomputed too: needed only when
/// the document is new (they may have pointed at a record the server did not know) or a
/// cooperative changed province; an ordinary edit cannot change them, and skipping them
/// keeps an edit's cost independent of how many sessions a member attended.
///
/// `province` is the record's scope as stored (`documents.province_code`, written just
/// before): a member's duplicate candidates are looked up within it.
pub fn project(
    conn: &mut DbConnection,
    doc_id: &str,
    doc_type: DocType,
    doc: &Automerge,
    province: Option<&str>,
    dependents: bool,
    by: Option<&str>,
) -> Result<(), CommitError> {
    let at = now();
    let findings = match doc_type {
        DocType::Cooperative => {
            let (c, mut findings) = Cooperative::read(doc);
            findings.extend(c.validate());
            let findings = without_double_findings(findings);
            diesel::delete(cooperatives::table.find(doc_id)).execute(conn)?;
            diesel::insert_into(cooperatives::table)
                .values((
                    cooperatives::id.eq(doc_id),
                    cooperatives::name_khmer.eq(&c.name_khmer),
                    cooperatives::name_latin.eq(&c.name_latin),
                    cooperatives::registration_number.eq(&c.registration_number),
                    cooperatives::province_code.eq(&c.province_code),
                    cooperatives::district.eq(&c.district),
                    cooperatives::commune.eq(&c.commune),
                    cooperatives::village.eq(&c.village),
                    cooperatives::status.eq(&c.status),
                    cooperatives::established_date.eq(&c.established_date),
                    cooperatives::updated_at.eq(at),
                ))
                .execute(conn)?;
            findings
        }
        DocType::Member => {
            let (m, mut findings) = Member::read(doc);
            findings.extend(m.validate(current_year()));
            let findings = without_double_findings(findings);
            // Detection runs when the compared fields are new or changed (a role or
            // joining date edit proposes nothing new).
            let detect = super::duplicates::active();
            let before: Option<super::duplicates::Compared> = if detect {
                members::table
                    .find(doc_id)
                    .select(super::duplicates::compared_columns!())
                    .first(conn)
                    .optional()?
            } else {
                None
            };
            let cooperative_id = m.cooperative_id.as_deref().map(lenient_id);
            let after: super::duplicates::Compared = (
                doc_id.to_string(),
                cooperative_id.clone(),
                m.full_name_khmer.clone(),
                m.name_latin.clone(),
                m.sex.clone(),
                m.year_of_birth,
                m.phone.clone(),
                m.village.clone(),
            );
            let keys = crate::domain::matching::Prepared::of(&super::duplicates::person(&after));
            // Only the server's merge marks a record merged: a `merged_into` a tablet
            // wrote is kept in the document but not followed (it would let one tablet
            // fold a person into another in every report).
            let merged_into = match m.merged_into.as_deref().map(lenient_id) {
                Some(survivor) => {
                    use crate::db::schema::merges;
                    merges::table
                        .filter(merges::merged_id.eq(doc_id))
                        .filter(merges::survivor_id.eq(&survivor))
                        .filter(merges::undone_at.is_null())
                        .count()
                        .get_result::<i64>(conn)?
                        .gt(&0)
                        .then_some(survivor)
                }
                None => None,
            };
            diesel::delete(members::table.find(doc_id)).execute(conn)?;
            diesel::insert_into(members::table)
                .values((
                    members::id.eq(doc_id),
                    members::cooperative_id.eq(&cooperative_id),
                    members::full_name_khmer.eq(&m.full_name_khmer),
                    members::name_latin.eq(&m.name_latin),
                    members::sex.eq(&m.sex),
                    members::year_of_birth.eq(m.year_of_birth),
                    members::phone.eq(&m.phone),
                    members::province_code.eq(&m.province_code),
                    members::village.eq(&m.village),
                    members::role.eq(&m.role),
                    members::joined_date.eq(&m.joined_date),
                    members::updated_at.eq(at),
                    members::phone_key.eq(keys.phone()),
                    members::skeleton_key.eq(keys.skeleton()),
                    members::latin_key.eq(keys.latin()),
                    members::merged_into.eq(&merged_into),
                ))
                .execute(conn)?;
            if detect && before.as_ref() != Some(&after) {
                super::duplicates::detect_row(
                    conn,
                    &after,
                    &keys,
                    province,
                    merged_into.is_some(),
                )?;
            }
            findings
        }
        DocType::TrainingSession => {
            let (s, mut findings) = TrainingSession::read(doc);
            findings.extend(s.validate());
            let findings = without_double_findings(findings);
            diesel::delete(attendance::table.filter(attendance::session_id.eq(doc_id)))
                .execute(conn)?;
            diesel::delete(training_sessions::table.find(doc_id)).execute(conn)?;
            diesel::insert_into(training_sessions::table)
                .values((
                    training_sessions::id.eq(doc_id),
                    training_sessions::programme.eq(&s.programme),
                    training_sessions::module.eq(&s.module),
                    training_sessions::cooperative_id
                        .eq(s.cooperative_id.as_deref().map(lenient_id)),
                    training_sessions::group_name.eq(&s.group_name),
                    training_sessions::province_code.eq(&s.province_code),
                    training_sessions::location.eq(&s.location),
                    training_sessions::facilitators
                        .eq(serde_json::to_string(&s.facilitators).unwrap_or_else(|_| "[]".into())),
                    training_sessions::scheduled_date.eq(&s.scheduled_date),
                    training_sessions::start_time.eq(&s.start_time),
                    training_sessions::end_time.eq(&s.end_time),
                    training_sessions::planned_hours.eq(s.planned_hours),
                    training_sessions::status.eq(&s.status),
                    training_sessions::updated_at.eq(at),
                ))
                .execute(conn)?;
            // One statement per 100 entries: on PostgreSQL each statement is a round trip.
            let rows: Vec<AttendanceRow> = s
                .attendance
                .iter()
                .map(|(pid, e)| AttendanceRow::new(doc_id, pid, e))
                .collect();
            store::insert_chunked!(conn, attendance::table, rows);
            let entries: Vec<(&str, Option<&AttendanceEntry>)> = s
                .attendance
                .iter()
                .map(|(pid, e)| (pid.as_str(), Some(e)))
                .collect();
            super::walk_ins::project(conn, doc_id, &session_keys(&s), &entries, true)?;
            findings
        }
    };
    reconcile_flags(conn, doc_id, FlagScope::Own, &findings, Some(doc), by)?;
    refresh_cross_flags(conn, doc_id, doc_type, by)?;
    if dependents {
        refresh_dependents(conn, doc_id, doc_type, by)?;
    }
    Ok(())
}

/// Re-projects only `entries` of a session whose own fields did not change (see
/// `changed::Changed`): their attendance rows, their flags and their cross-record flags.
/// The cost of a push then follows the push, not the size of the session.
pub fn project_entries(
    conn: &mut DbConnection,
    doc_id: &str,
    doc: &Automerge,
    entries: &BTreeSet<String>,
    by: Option<&str>,
) -> Result<(), CommitError> {
    let (header, _) = TrainingSession::read_header(doc);
    let mut read = Vec::with_capacity(entries.len());
    let mut findings = Vec::new();
    for pid in entries {
        let (entry, mut f) = TrainingSession::read_entry(doc, pid);
        if let Some(e) = &entry {
            f.extend(e.validate(pid, header.planned_hours));
        }
        findings.extend(without_double_findings(f));
        read.push((pid.as_str(), entry));
    }
    let pids: Vec<&str> = read.iter().map(|(pid, _)| *pid).collect();
    diesel::delete(
        attendance::table
            .filter(attendance::session_id.eq(doc_id))
            .filter(attendance::participant_id.eq_any(&pids)),
    )
    .execute(conn)?;
    let rows: Vec<AttendanceRow> = read
        .iter()
        .filter_map(|(pid, e)| e.as_ref().map(|e| AttendanceRow::new(doc_id, pid, e)))
        .collect();
    let members: Vec<String> = rows.iter().filter_map(|r| r.member_id.clone()).collect();
    let known: BTreeSet<String> = members::table
        .filter(members::id.eq_any(&members))
        .select(members::id)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    for r in &rows {
        if r.member_id.as_ref().is_some_and(|m| !known.contains(m)) {
            findings.push(unknown_participant(r.participant_id));
        }
    }
    store::insert_chunked!(conn, attendance::table, rows);
    let written: Vec<(&str, Option<&AttendanceEntry>)> =
        read.iter().map(|(pid, e)| (*pid, e.as_ref())).collect();
    super::walk_ins::project(conn, doc_id, &session_keys(&header), &written, false)?;
    // Its flags, its own and cross-record ones, are all under `attendance.<pid>`.
    reconcile_flags(
        conn,
        doc_id,
        FlagScope::Entries(entries),
        &findings,
        Some(doc),
        by,
    )?;
    diesel::update(training_sessions::table.find(doc_id))
        .set(training_sessions::updated_at.eq(now()))
        .execute(conn)?;
    Ok(())
}

fn unknown_participant(pid: &str) -> Finding {
    Finding::new(
        "unknown_participant",
        format!("attendance.{pid}.member_id"),
        "attendance recorded for a member the server does not know",
    )
}

/// Which of a document's stored flags one projection step recomputes.
enum FlagScope<'a> {
    /// The record's own flags (every code but the cross-record ones).
    Own,
    /// Everything at or below `attendance.<pid>` for these entries.
    Entries(&'a BTreeSet<String>),
    /// The cross-record flags.
    Cross,
}

impl FlagScope<'_> {
    fn covers(&self, code: &str, field: &str) -> bool {
        match self {
            FlagScope::Own => !CROSS_CODES.contains(&code),
            FlagScope::Cross => CROSS_CODES.contains(&code),
            FlagScope::Entries(pids) => field.strip_prefix("attendance.").is_some_and(|rest| {
                pids.iter().any(|p| {
                    rest.strip_prefix(p.as_str())
                        .is_some_and(|r| r.is_empty() || r.starts_with('.'))
                })
            }),
        }
    }
}

/// A field's current value as text, to tell whether an accepted flag's value changed.
pub fn field_value(doc: &Automerge, field: &str) -> Option<String> {
    let (obj, key) = match field.split_once('.') {
        None => (automerge::ROOT, field.to_string()),
        Some(("attendance", rest)) => {
            let (pid, key) = rest.rsplit_once('.')?;
            let att = match doc.get(automerge::ROOT, "attendance").ok()?? {
                (automerge::Value::Object(automerge::ObjType::Map), id) => id,
                _ => return None,
            };
            match doc.get(&att, pid).ok()?? {
                (automerge::Value::Object(automerge::ObjType::Map), id) => (id, key.to_string()),
                _ => return None,
            }
        }
        Some(_) => return None,
    };
    match doc.get(&obj, key.as_str()).ok()?? {
        (automerge::Value::Object(automerge::ObjType::Text), id) => doc.text(&id).ok(),
        (automerge::Value::Scalar(v), _) => Some(match v.as_ref() {
            automerge::ScalarValue::Str(s) => s.to_string(),
            automerge::ScalarValue::F64(f) => f.to_string(),
            automerge::ScalarValue::Int(i) => i.to_string(),
            automerge::ScalarValue::Uint(u) => u.to_string(),
            automerge::ScalarValue::Boolean(b) => b.to_string(),
            automerge::ScalarValue::Timestamp(t) => t.to_string(),
            automerge::ScalarValue::Null => "null".to_string(),
            other => other.to_string(),
        }),
        (automerge::Value::Object(t), _) => Some(format!("<{t}>")),
    }
}

/// Brings the stored flags in `scope` in line with `findings`, keeping each flag's
/// identity (document, code, field): a flag still found stays (an accepted one stays
/// accepted while its value is the one accepted, else it opens again); a flag no longer
/// found is closed as `fixed`, naming the change `by` when known; a new one is inserted.
/// Nothing is deleted, so decisions attached to flags survive projections and rebuilds.
fn reconcile_flags(
    conn: &mut DbConnection,
    doc_id: &str,
    scope: FlagScope<'_>,
    findings: &[Finding],
    doc: Option<&Automerge>,
    by: Option<&str>,
) -> Result<(), CommitError> {
    let at = now();
    let mut wanted: BTreeMap<(String, String), String> = BTreeMap::new();
    for f in findings {
        wanted
            .entry((f.code.clone(), f.field.clone()))
            .or_insert_with(|| f.message.clone());
    }
    type Stored = (i64, String, String, String, String, Option<String>);
    let stored: Vec<Stored> = validation_flags::table
        .filter(validation_flags::document_id.eq(doc_id))
        .select((
            validation_flags::id,
            validation_flags::code,
            validation_flags::field,
            validation_flags::message,
            validation_flags::status,
            validation_flags::accepted_value,
        ))
        .order(validation_flags::id)
        .load(conn)?;
    for (id, code, field, message, status, accepted_value) in stored {
        if !scope.covers(&code, &field) {
            continue;
        }
        let flag = validation_flags::table.find(id);
        match wanted.remove(&(code.clone(), field.clone())) {
            Some(new_message) => {
                let value_changed = match (doc, &accepted_value) {
                    (Some(doc), Some(v)) => field_value(doc, &field).as_deref() != Some(v.as_str()),
                    _ => false,
                };
                if status == FlagStatus::Fixed.as_str()
                    || (status == FlagStatus::Accepted.as_str() && value_changed)
                {
                    diesel::update(flag)
                        .set((
                            validation_flags::status.eq(FlagStatus::Open.as_str()),
                            validation_flags::message.eq(&new_message),
                            validation_flags::detected_at.eq(at),
                            validation_flags::accepted_by.eq(None::<String>),
                            validation_flags::accepted_at.eq(None::<NaiveDateTime>),
                            validation_flags::accepted_value.eq(None::<String>),
                            validation_flags::fixed_at.eq(None::<NaiveDateTime>),
                            validation_flags::fixed_by_change.eq(None::<String>),
                        ))
                        .execute(conn)?;
                } else if message != new_message {
                    diesel::update(flag)
                        .set(validation_flags::message.eq(&new_message))
                        .execute(conn)?;
                }
            }
            None if status != FlagStatus::Fixed.as_str() => {
                diesel::update(flag)
                    .set((
                        validation_flags::status.eq(FlagStatus::Fixed.as_str()),
                        validation_flags::fixed_at.eq(at),
                        validation_flags::fixed_by_change.eq(by),
                    ))
                    .execute(conn)?;
            }
            None => {}
        }
    }
    for ((code, field), message) in wanted {
        diesel::insert_into(validation_flags::table)
            .values((
                validation_flags::document_id.eq(doc_id),
                validation_flags::code.eq(&code),
                validation_flags::field.eq(&field),
                validation_flags::message.eq(&message),
                validation_flags::detected_at.eq(at),
                validation_flags::status.eq(FlagStatus::Open.as_str()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Recomputes the flags of `doc_id` that depend on other records.
pub fn refresh_cross_flags(
    conn: &mut DbConnection,
    doc_id: &str,
    doc_type: DocType,
    by: Option<&str>,
) -> Result<(), CommitError> {
    let mut findings = Vec::new();
    let coop_province =
        |conn: &mut DbConnection, id: &str| -> QueryResult<Option<Option<String>>> {
            cooperatives::table
                .find(id)
                .select(cooperatives::province_code)
                .first::<Option<String>>(conn)
                .optional()
        };
    match doc_type {
        DocType::Cooperative => {}
        DocType::Member => {
            let row: Option<(Option<String>, Option<String>)> = members::table
                .find(doc_id)
                .select((members::cooperative_id, members::province_code))
                .first(conn)
                .optional()?;
            if let Some((Some(coop), province)) = row {
                match coop_province(conn, &coop)? {
                    None => findings.push(Finding::new(
                        "unknown_cooperative",
                        "cooperative_id",
                        "the cooperative is not known to the server",
                    )),
                    Some(Some(cp)) if province.as_ref().is_some_and(|p| *p != cp) => {
                        findings.push(Finding::new(
                            "cooperative_outside_province",
                            "province_code",
                            format!(
                                "the member lives in province {}, the cooperative is in {cp}",
                                province.unwrap_or_default()
                            ),
                        ))
                    }
                    _ => {}
                }
            }
        }
        DocType::TrainingSession => {
            let coop: Option<Option<String>> = training_sessions::table
                .find(doc_id)
                .select(training_sessions::cooperative_id)
                .first(conn)
                .optional()?;
            if let Some(Some(coop)) = coop
                && coop_province(conn, &coop)?.is_none()
            {
                findings.push(Finding::new(
                    "unknown_cooperative",
                    "cooperative_id",
                    "the cooperative is not known to the server",
                ));
            }
            // A left join from the session's own rows: one primary-key probe per
            // participant. (`members.id = ANY($1)` was planned as a full scan of members
            // on PostgreSQL right after a bulk load: 15+ ms per session.)
            let participants: Vec<(String, Option<String>)> = attendance::table
                .left_join(members::table.on(members::id.nullable().eq(attendance::member_id)))
                .filter(attendance::session_id.eq(doc_id))
                .filter(attendance::member_id.is_not_null())
                .select((attendance::participant_id, members::id.nullable()))
                .load(conn)?;
            for (pid, member) in participants {
                if member.is_none() {
                    findings.push(unknown_participant(&pid));
                }
            }
        }
    }
    reconcile_flags(conn, doc_id, FlagScope::Cross, &findings, None, by)
}

/// Refreshes the cross-record flags of records that point at `doc_id`.
fn refresh_dependents(
    conn: &mut DbConnection,
    doc_id: &str,
    doc_type: DocType,
    by: Option<&str>,
) -> Result<(), CommitError> {
    match doc_type {
        DocType::Cooperative => {
            let member_ids: Vec<String> = members::table
                .filter(members::cooperative_id.eq(doc_id))
                .select(members::id)
                .load(conn)?;
            for id in member_ids {
                refresh_cross_flags(conn, &id, DocType::Member, by)?;
            }
            let session_ids: Vec<String> = training_sessions::table
                .filter(training_sessions::cooperative_id.eq(doc_id))
                .select(training_sessions::id)
                .load(conn)?;
            for id in session_ids {
                refresh_cross_flags(conn, &id, DocType::TrainingSession, by)?;
            }
        }
        DocType::Member => {
            let sessions: Vec<String> = attendance::table
                .filter(attendance::member_id.eq(doc_id))
                .select(attendance::session_id)
                .distinct()
                .load(conn)?;
            for id in sessions {
                refresh_cross_flags(conn, &id, DocType::TrainingSession, by)?;
            }
        }
        DocType::TrainingSession => {}
    }
    Ok(())
}

/// Rebuilds every projection table (and the conflict list) from the change log alone.
/// `progress` is called with (done, total).
/// What a rebuild did: every document is projected from its change log applied from
/// scratch; one whose log does not apply (a log stored before the change checks refused
/// such operations) is projected from its stored snapshot and named here, and one that
/// has neither is skipped and named, so one bad record never stops the rest.
#[derive(Debug, Default)]
pub struct RebuildReport {
    pub total: usize,
    pub from_snapshot: Vec<(String, String)>,
    pub skipped: Vec<(String, String)>,
}

/// The document built from its change log from scratch, as a new device would.
fn from_log(rows: &[super::store::ChangeRow]) -> Result<Automerge, String> {
    let changes = rows
        .iter()
        .map(|r| automerge::Change::try_from(&r.bytes[..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("a change log entry does not parse: {e}"))?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut doc = Automerge::new();
        doc.apply_changes(changes).map(|_| doc)
    }))
    .map_err(|_| "applying the change log panicked".to_string())?
    .map_err(|e| format!("the change log does not apply: {e}"))
}

pub fn rebuild(
    conn: &mut DbConnection,
    mut progress: impl FnMut(usize, usize),
) -> Result<RebuildReport, CommitError> {
    let docs: Vec<(String, String, Option<String>)> = documents::table
        .select((documents::id, documents::doc_type, documents::province_code))
        .load(conn)?;
    let mut ordered: Vec<(DocType, String, Option<String>)> = docs
        .into_iter()
        .filter_map(|(id, t, p)| DocType::parse(&t).map(|t| (t, id, p)))
        .collect();
    // Cooperatives first, so cross-record flags see their targets.
    ordered.sort();
    let mut report = RebuildReport {
        total: ordered.len(),
        ..RebuildReport::default()
    };
    // Detection is paused: the pairs and their decisions are not a projection and are
    // kept as they are (`coopsync duplicates rescan` checks them against the members).
    super::duplicates::paused(|| rebuild_all(conn, &ordered, &mut report, &mut progress))?;
    Ok(report)
}

fn rebuild_all(
    conn: &mut DbConnection,
    ordered: &[(DocType, String, Option<String>)],
    report: &mut RebuildReport,
    progress: &mut impl FnMut(usize, usize),
) -> Result<(), CommitError> {
    use crate::db::schema::conflicts;
    crate::db::write_transaction(conn, |conn| {
        // Flags are reconciled, not deleted: decisions attached to them (accepted) and
        // their history (fixed) survive a rebuild.
        diesel::delete(attendance::table).execute(conn)?;
        diesel::delete(training_sessions::table).execute(conn)?;
        diesel::delete(members::table).execute(conn)?;
        diesel::delete(cooperatives::table).execute(conn)?;
        diesel::delete(
            conflicts::table.filter(conflicts::status.ne(ConflictStatus::Resolved.as_str())),
        )
        .execute(conn)?;
        for (i, (doc_type, id, province)) in ordered.iter().enumerate() {
            let rows = super::store::document_changes(conn, id)?;
            let doc = match from_log(&rows) {
                Ok(doc) => doc,
                Err(why) => {
                    let snapshot = super::store::find_document(conn, id)?
                        .map(|d| super::verify::load_snapshot(&d.snapshot));
                    match snapshot {
                        Some(Ok(doc)) => {
                            report.from_snapshot.push((id.clone(), why));
                            doc
                        }
                        _ => {
                            report.skipped.push((id.clone(), why));
                            progress(i + 1, report.total);
                            continue;
                        }
                    }
                }
            };
            project(conn, id, *doc_type, &doc, province.as_deref(), true, None)?;
            super::conflicts::record(
                conn,
                id,
                &doc,
                &Default::default(),
                &super::changed::Changed::Everything,
            )?;
            progress(i + 1, report.total);
        }
        Ok::<_, CommitError>(())
    })
}
