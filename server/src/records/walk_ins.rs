//! Walk-ins found as sessions are projected: an attendance entry of someone with no
//! member record (a `name`, no `member_id`) is kept in `walk_ins` with the members of its
//! province it may be (scored by the duplicate rules, `domain::matching`, against the
//! members sharing a block with it), for an admin to link it to one of them or promote it
//! to a new member (`review::walk_ins`). The list learns of members both ways: a new
//! walk-in is scored when its session is projected; a member registered or changed later
//! is scored against the open walk-ins sharing its blocks (`member_changed`). Entries are
//! rescored only when their compared fields change (a fingerprint), so a session's
//! attendance edited field by field costs one indexed look-up per projection.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{Datelike, NaiveDate};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use sync_protocol::documents::AttendanceEntry;

use super::CommitError;
use super::duplicates::{self, block_members, person};
use crate::{
    db::{
        DbConnection, now,
        schema::{attendance, training_sessions, walk_ins},
    },
    domain::{
        matching::{self, Person, Prepared, Score},
        status::WalkInStatus,
    },
};

/// How many candidate members a walk-in keeps (best first).
pub const KEPT_CANDIDATES: usize = 5;

/// The walk-in's id: one attendance entry is always the same walk-in.
pub fn walk_in_id(session_id: &str, participant_id: &str) -> String {
    const WALK_INS: uuid::Uuid = uuid::Uuid::from_u128(0x7c1e_52a9_3d84_4f0b_a6e2_19c5_8b3f_d041);
    uuid::Uuid::new_v5(
        &WALK_INS,
        format!("{session_id}\n{participant_id}").as_bytes(),
    )
    .to_string()
}

/// One stored candidate: a member the walk-in may be, with the score and its rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredCandidate {
    pub member_id: String,
    pub score: u32,
    pub rules: serde_json::Value,
}

/// What of a session decides its walk-ins: its province (the list's scope and the
/// members compared), its cooperative, its year (age → year of birth).
#[derive(Debug, Clone)]
pub struct SessionKeys {
    pub province: Option<String>,
    pub cooperative: Option<String>,
    pub year: Option<i64>,
}

impl SessionKeys {
    pub fn new(province: Option<&str>, cooperative: Option<String>, date: Option<&str>) -> Self {
        SessionKeys {
            province: province.map(str::to_string),
            cooperative,
            year: date
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                .map(|d| i64::from(d.year())),
        }
    }
}

/// An entry is a walk-in when it names a person and points at no member.
fn walk_in_person(e: &AttendanceEntry, keys: &SessionKeys) -> Option<Prepared> {
    if e.member_id.is_some() || e.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return None;
    }
    Some(Prepared::of(&Person::walk_in(
        e.name.as_deref(),
        e.sex.as_deref(),
        e.age,
        e.phone.as_deref(),
        keys.cooperative.as_deref(),
        keys.year,
    )))
}

/// The members of the walk-in's province it may be, best first.
fn candidates_for(
    conn: &mut DbConnection,
    me: &Prepared,
    province: Option<&str>,
) -> Result<Vec<StoredCandidate>, CommitError> {
    let Some(province) = province else {
        return Ok(Vec::new());
    };
    let mut out: Vec<StoredCandidate> = block_members(conn, me, None, province)?
        .values()
        .filter_map(|m| {
            let s = matching::score_prepared(me, &Prepared::of(&person(m)));
            (s.points >= matching::PROPOSE_AT).then(|| stored(&m.0, &s))
        })
        .collect();
    sort(&mut out);
    Ok(out)
}

fn stored(member_id: &str, s: &Score) -> StoredCandidate {
    StoredCandidate {
        member_id: member_id.to_string(),
        score: s.points,
        rules: duplicates::rules_value(s),
    }
}

fn sort(c: &mut Vec<StoredCandidate>) {
    c.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then_with(|| a.member_id.cmp(&b.member_id))
    });
    c.truncate(KEPT_CANDIDATES);
}

fn best(c: &[StoredCandidate]) -> i64 {
    c.first().map_or(0, |c| i64::from(c.score))
}

/// Walk-ins' candidates by the walk-in's fingerprint and province: entries that agree in
/// every compared field (a session's namesakes of one sex with no age or phone) have the
/// same candidates, so their blocks are read and scored once. Lives for one `project`
/// call or one rescan, in which no member changes.
type Scored = HashMap<(String, Option<String>), std::rc::Rc<Vec<StoredCandidate>>>;

/// Writes one walk-in, found now or found again with changed fields (rescored; a
/// decided one whose entry is a walk-in again, its link cleared, is open again).
#[allow(
    clippy::too_many_arguments,
    reason = "one walk-in and the session's memo"
)]
fn upsert(
    conn: &mut DbConnection,
    session_id: &str,
    participant_id: &str,
    keys: &SessionKeys,
    me: &Prepared,
    print: String,
    existing: bool,
    scored: &mut Scored,
) -> Result<i64, CommitError> {
    let memo = (print.clone(), keys.province.clone());
    let candidates = match scored.get(&memo) {
        Some(c) => c.clone(),
        None => {
            let c = std::rc::Rc::new(candidates_for(conn, me, keys.province.as_deref())?);
            scored.insert(memo, c.clone());
            c
        }
    };
    let id = walk_in_id(session_id, participant_id);
    let at = now();
    let json =
        serde_json::to_string(&*candidates).map_err(|e| CommitError::Internal(e.to_string()))?;
    if existing {
        diesel::update(walk_ins::table.find(&id))
            .set((
                walk_ins::province_code.eq(&keys.province),
                walk_ins::cooperative_id.eq(&keys.cooperative),
                walk_ins::phone_key.eq(me.phone()),
                walk_ins::skeleton_key.eq(me.skeleton()),
                walk_ins::fingerprint.eq(&print),
                walk_ins::score.eq(best(&candidates)),
                walk_ins::candidates.eq(&json),
                walk_ins::status.eq(WalkInStatus::Open.as_str()),
                walk_ins::member_id.eq(None::<String>),
                walk_ins::decided_by.eq(None::<String>),
                walk_ins::decided_at.eq(None::<chrono::NaiveDateTime>),
                walk_ins::updated_at.eq(at),
            ))
            .execute(conn)?;
    } else {
        diesel::insert_into(walk_ins::table)
            .values((
                walk_ins::id.eq(&id),
                walk_ins::session_id.eq(session_id),
                walk_ins::participant_id.eq(participant_id),
                walk_ins::province_code.eq(&keys.province),
                walk_ins::cooperative_id.eq(&keys.cooperative),
                walk_ins::phone_key.eq(me.phone()),
                walk_ins::skeleton_key.eq(me.skeleton()),
                walk_ins::fingerprint.eq(&print),
                walk_ins::score.eq(best(&candidates)),
                walk_ins::candidates.eq(&json),
                walk_ins::status.eq(WalkInStatus::Open.as_str()),
                walk_ins::found_at.eq(at),
                walk_ins::updated_at.eq(at),
            ))
            .execute(conn)?;
    }
    Ok(best(&candidates))
}

/// Brings the session's walk-ins up to date with the entries just projected: `entries`
/// are the entries written (`None`: removed); with `whole`, they are all of the session's
/// and a stored walk-in not among them was removed. An open walk-in whose entry now
/// points at a member (a tablet linked it) or is gone is withdrawn; a decided one stays
/// (its decision is history), unless its entry is a walk-in again (its link cleared),
/// when it is open again.
pub(crate) fn project(
    conn: &mut DbConnection,
    session_id: &str,
    keys: &SessionKeys,
    entries: &[(&str, Option<&AttendanceEntry>)],
    whole: bool,
) -> Result<(), CommitError> {
    if !duplicates::active() {
        return Ok(());
    }
    type Stored = (String, String, String, Option<String>, Option<String>);
    // All of the session's stored walk-ins (a few rows; one statement of a fixed shape,
    // so its prepared statement is cached), then those of `entries` when not `whole`.
    let wanted: Option<HashSet<&str>> = (!whole).then(|| entries.iter().map(|(p, _)| *p).collect());
    let stored: HashMap<String, Stored> = walk_ins::table
        .filter(walk_ins::session_id.eq(session_id))
        .select((
            walk_ins::participant_id,
            walk_ins::status,
            walk_ins::fingerprint,
            walk_ins::province_code,
            walk_ins::cooperative_id,
        ))
        .load::<Stored>(conn)?
        .into_iter()
        .filter(|r| wanted.as_ref().is_none_or(|w| w.contains(r.0.as_str())))
        .map(|r| (r.0.clone(), r))
        .collect();
    let mut withdrawn: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut scored = Scored::new();
    for (pid, entry) in entries {
        seen.insert(pid);
        let me = entry.and_then(|e| walk_in_person(e, keys));
        let known = stored.get(*pid);
        match (me, known) {
            (Some(me), None) => {
                let print = matching::fingerprint(&me);
                upsert(conn, session_id, pid, keys, &me, print, false, &mut scored)?;
            }
            (Some(me), Some((_, status, print, province, coop))) => {
                let mine = matching::fingerprint(&me);
                let unchanged =
                    *print == mine && *province == keys.province && *coop == keys.cooperative;
                if !unchanged || status != WalkInStatus::Open.as_str() {
                    upsert(conn, session_id, pid, keys, &me, mine, true, &mut scored)?;
                }
            }
            (None, Some((_, status, ..))) if status == WalkInStatus::Open.as_str() => {
                withdrawn.push(walk_in_id(session_id, pid));
            }
            (None, _) => {}
        }
    }
    if whole {
        for (pid, (_, status, ..)) in &stored {
            if !seen.contains(pid.as_str()) && status == WalkInStatus::Open.as_str() {
                withdrawn.push(walk_in_id(session_id, pid));
            }
        }
    }
    if !withdrawn.is_empty() {
        diesel::delete(walk_ins::table.filter(walk_ins::id.eq_any(&withdrawn))).execute(conn)?;
    }
    Ok(())
}

/// A member was written with these keys: the open walk-ins of its province sharing a
/// block with it are scored against it, and it joins (or leaves) their candidates.
pub(crate) fn member_changed(
    conn: &mut DbConnection,
    member_id: &str,
    member: &Prepared,
    province: &str,
    merged: bool,
) -> Result<(), CommitError> {
    // A walk-in shares a block with the member by its phone or its Khmer skeleton. Not by
    // the cooperative alone: a walk-in has no village, so without a shared name key or
    // phone it scores at most 50 against a member of its cooperative (romanised name 25,
    // cooperative 10, year of birth 15), below the threshold
    // (`matching::tests::a_walk_in_needs_a_phone_or_a_khmer_name_key`). One statement per
    // key, each a look-up by its own index: with the keys in one `OR` next to the status
    // and province, SQLite read every open walk-in of the province by `walk_ins_list`.
    // A block of more than `matching::MAX_BLOCK` open walk-ins is skipped, as
    // `duplicates::block_members` skips one of members.
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    macro_rules! block {
        ($key:expr) => {
            walk_ins::table
                .inner_join(
                    attendance::table.on(attendance::session_id
                        .eq(walk_ins::session_id)
                        .and(attendance::participant_id.eq(walk_ins::participant_id))),
                )
                .inner_join(
                    training_sessions::table.on(training_sessions::id.eq(walk_ins::session_id)),
                )
                .filter($key)
                .filter(walk_ins::status.eq(WalkInStatus::Open.as_str()))
                .filter(walk_ins::province_code.eq(province))
                .select((
                    walk_ins::id,
                    walk_ins::candidates,
                    attendance::name,
                    attendance::sex,
                    attendance::age,
                    attendance::phone,
                    walk_ins::cooperative_id,
                    training_sessions::scheduled_date,
                ))
                .limit(matching::MAX_BLOCK as i64 + 1)
        };
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut ids: HashSet<String> = HashSet::new();
    let mut take = |block: Vec<Row>| {
        if block.len() <= matching::MAX_BLOCK {
            for r in block {
                if ids.insert(r.0.clone()) {
                    rows.push(r);
                }
            }
        }
    };
    if let Some(p) = member.phone() {
        take(block!(walk_ins::phone_key.eq(p)).load(conn)?);
    }
    if let Some(k) = member.skeleton() {
        take(block!(walk_ins::skeleton_key.eq(k)).load(conn)?);
    }
    for (id, json, name, sex, age, phone, coop, date) in rows {
        let keys = SessionKeys::new(None, coop, date.as_deref());
        let me = Prepared::of(&Person::walk_in(
            name.as_deref(),
            sex.as_deref(),
            age,
            phone.as_deref(),
            keys.cooperative.as_deref(),
            keys.year,
        ));
        let mut candidates: Vec<StoredCandidate> =
            serde_json::from_str(&json).map_err(|e| CommitError::Internal(e.to_string()))?;
        let before = candidates.len();
        candidates.retain(|c| c.member_id != member_id);
        let s = matching::score_prepared(&me, member);
        let joins = !merged && s.points >= matching::PROPOSE_AT;
        if joins {
            candidates.push(stored(member_id, &s));
            sort(&mut candidates);
        } else if candidates.len() == before {
            continue;
        }
        diesel::update(walk_ins::table.find(&id))
            .set((
                walk_ins::score.eq(best(&candidates)),
                walk_ins::candidates.eq(serde_json::to_string(&candidates)
                    .map_err(|e| CommitError::Internal(e.to_string()))?),
                walk_ins::updated_at.eq(now()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// What a rescan of the walk-ins did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WalkInRescan {
    /// Walk-in entries scored.
    pub walk_ins: usize,
    /// Of them, with at least one candidate member.
    pub with_candidates: usize,
    /// Open walk-ins whose entry is no longer a walk-in.
    pub withdrawn: usize,
}

/// Every walk-in entry scored afresh against the members as they are (after an upgrade,
/// an import, or to check).
pub fn rescan(conn: &mut DbConnection) -> Result<WalkInRescan, CommitError> {
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = attendance::table
        .inner_join(training_sessions::table)
        .filter(attendance::member_id.is_null())
        .filter(attendance::name.is_not_null())
        .select((
            attendance::session_id,
            attendance::participant_id,
            attendance::name,
            attendance::sex,
            attendance::age,
            attendance::phone,
            training_sessions::province_code,
            training_sessions::cooperative_id,
            training_sessions::scheduled_date,
        ))
        .load(conn)?;
    let known: BTreeMap<String, String> = walk_ins::table
        .select((walk_ins::id, walk_ins::status))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect();
    let mut report = WalkInRescan::default();
    let mut seen = HashSet::new();
    let mut scored = Scored::new();
    for (session, pid, name, sex, age, phone, province, coop, date) in rows {
        let keys = SessionKeys::new(province.as_deref(), coop, date.as_deref());
        let entry = AttendanceEntry {
            name,
            sex,
            age,
            phone,
            ..Default::default()
        };
        let Some(me) = walk_in_person(&entry, &keys) else {
            continue;
        };
        let id = walk_in_id(&session, &pid);
        let print = matching::fingerprint(&me);
        let existing = known.contains_key(&id);
        let score = upsert(
            conn,
            &session,
            &pid,
            &keys,
            &me,
            print,
            existing,
            &mut scored,
        )?;
        report.walk_ins += 1;
        if score > 0 {
            report.with_candidates += 1;
        }
        seen.insert(id);
    }
    let stale: Vec<&String> = known
        .iter()
        .filter(|(id, status)| *status == WalkInStatus::Open.as_str() && !seen.contains(*id))
        .map(|(id, _)| id)
        .collect();
    report.withdrawn = stale.len();
    for chunk in stale.chunks(500) {
        diesel::delete(walk_ins::table.filter(walk_ins::id.eq_any(chunk))).execute(conn)?;
    }
    Ok(report)
}
